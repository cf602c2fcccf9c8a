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

#[tokio::test]
async fn concurrent_conditional_writes_let_exactly_one_win() {
    let (store, _dir) = sqlite_store(ManualClock::new(epoch())).await;
    let alice = UserId::parse("alice").expect("user");
    store
        .insert(
            "tasks",
            NewDocument {
                id: "t".into(),
                user_id: alice.clone(),
                body: json!({"n": 0}),
                expires_at: None,
            },
        )
        .await
        .expect("insert");
    let mut handles = Vec::new();
    for n in 1..=16 {
        let (store, alice) = (store.clone(), alice.clone());
        handles.push(tokio::spawn(async move {
            store
                .replace(
                    "tasks",
                    &alice,
                    "t",
                    json!({"n": n}),
                    None,
                    focusforge_store::Precondition::Version(1),
                )
                .await
                .is_ok()
        }));
    }
    let mut wins = 0;
    for h in handles {
        wins += usize::from(h.await.expect("join"));
    }
    assert_eq!(wins, 1);
    let got = store
        .get("tasks", &alice, "t")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.version, 2);
}
