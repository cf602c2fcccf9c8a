use std::sync::Arc;
use std::time::Duration;

use bson::{Document as BsonDoc, doc};
use focusforge_core::{ManualClock, UserId};
use focusforge_store::conformance::epoch;
use focusforge_store::{
    Collection, DocumentStore, MongoSettings, MongoStore, NewDocument, SharedStore, StoreError,
};
use futures::TryStreamExt;
use serde_json::json;

/// The MongoDB-wire-compatible server the suite runs against.
fn uri() -> String {
    std::env::var("FOCUSFORGE_TEST_MONGODB_URI").unwrap_or_else(|_| {
        panic!(
            "FOCUSFORGE_TEST_MONGODB_URI is not set. These tests need a MongoDB-wire-compatible \
             server: `pip install SecantusDB==0.7.0b3`, start `secantusd-py --host 127.0.0.1 \
             --port 27017 --storage-path /tmp/secantus`, and set \
             FOCUSFORGE_TEST_MONGODB_URI=mongodb://127.0.0.1:27017 (scripts/test does this)"
        )
    })
}

fn settings(database: String) -> MongoSettings {
    MongoSettings {
        uri: uri(),
        database,
        ..MongoSettings::default()
    }
}

/// A database of its own per test, so cases run in parallel.
fn fresh_database() -> String {
    format!("ff_test_{:016x}", rand::random::<u64>())
}

async fn mongo_store(clock: ManualClock) -> (SharedStore, ()) {
    let store = MongoStore::connect(&settings(fresh_database()), Arc::new(clock))
        .await
        .expect("connect");
    (Arc::new(store), ())
}

focusforge_store::document_store_conformance!(mongo_store);

/// Collections as services declare them.
const DECLARED: &[Collection] = &[
    Collection {
        name: "tasks",
        indexes: &["body.status", "body.priority", "body.due_at", "body.tags"],
    },
    Collection {
        name: "mood_logs",
        indexes: &["body.at"],
    },
];

#[tokio::test]
async fn start_up_creates_the_design_collections_with_their_indexes_idempotently() {
    let database = fresh_database();
    let store = MongoStore::connect(
        &settings(database.clone()),
        Arc::new(ManualClock::new(epoch())),
    )
    .await
    .expect("connect")
    .with_collections(DECLARED.to_vec());
    store.ensure_indexes().await.expect("indexes");
    store.ensure_indexes().await.expect("indexes again");

    let client = mongodb::Client::with_uri_str(uri()).await.expect("client");
    let db = client.database(&database);
    let mut names = db.list_collection_names().await.expect("names");
    names.sort();
    for Collection { name, .. } in DECLARED {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    let indexes: Vec<mongodb::IndexModel> = db
        .collection::<BsonDoc>("tasks")
        .list_indexes()
        .await
        .expect("list")
        .try_collect()
        .await
        .expect("collect");
    let ttl = indexes
        .iter()
        .find(|i| i.keys == doc! { "expires_at": 1 })
        .expect("a TTL index on expires_at");
    assert_eq!(
        ttl.options.as_ref().and_then(|o| o.expire_after),
        Some(Duration::ZERO)
    );
    for keys in [
        doc! { "user_id": 1, "created_at": -1, "doc_id": -1 },
        doc! { "user_id": 1, "body.status": 1 },
    ] {
        assert!(
            indexes.iter().any(|i| i.keys == keys),
            "missing index {keys}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_backend_error_within_the_timeout() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = dead.local_addr().expect("addr");
    drop(dead);
    let settings = MongoSettings {
        uri: format!("mongodb://{addr}/?directConnection=true"),
        timeout: Duration::from_millis(300),
        ..MongoSettings::default()
    };
    let store = MongoStore::connect(&settings, Arc::new(ManualClock::new(epoch())))
        .await
        .expect("lazy");
    let alice = UserId::parse("alice").expect("user");
    let err = store
        .get("tasks", &alice, "t1")
        .await
        .expect_err("unreachable");
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    let domain = err.into_domain("task");
    assert!(
        matches!(domain, focusforge_core::Error::Unavailable(_)),
        "{domain:?}"
    );
    let new = NewDocument {
        id: "t1".into(),
        user_id: alice,
        body: json!({}),
        expires_at: None,
    };
    assert!(matches!(
        store.insert("tasks", new).await,
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test]
async fn malformed_uris_are_refused_at_once() {
    for uri in ["http://localhost", "mongodb://", "mongodb://host:notaport"] {
        let settings = MongoSettings {
            uri: uri.into(),
            ..MongoSettings::default()
        };
        let result = MongoStore::connect(&settings, Arc::new(ManualClock::new(epoch()))).await;
        assert!(matches!(result, Err(StoreError::InvalidQuery(_))), "{uri}");
    }
}
