use std::sync::Arc;

use focusforge_core::{Clock, ManualClock, UserId};
use focusforge_store::conformance::epoch;
use focusforge_store::{DocumentStore, NewDocument, SharedStore, SqliteStore};
use serde_json::json;
use tempfile::TempDir;

async fn sqlite_store(clock: ManualClock) -> (SharedStore, TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("store.db"), Arc::new(clock)).expect("open");
    (Arc::new(store), dir)
}

focusforge_store::document_store_conformance!(sqlite_store);

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(epoch()));
    let alice = UserId::parse("alice").expect("user");
    {
        let store = SqliteStore::open(&path, clock.clone()).expect("open");
        store
            .insert(
                "tasks",
                NewDocument {
                    id: "t1".into(),
                    user_id: alice.clone(),
                    body: json!({"title": "persist me"}),
                    expires_at: None,
                },
            )
            .await
            .expect("insert");
    }
    let store = SqliteStore::open(&path, clock).expect("reopen");
    let got = store
        .get("tasks", &alice, "t1")
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(got.body["title"], "persist me");
}
