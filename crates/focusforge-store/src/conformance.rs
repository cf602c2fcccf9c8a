//! The conformance suite of the [`DocumentStore`] port, written once and run
//! against every backend. A backend's test module invokes
//! [`document_store_conformance!`](crate::document_store_conformance) with a
//! factory `async fn(ManualClock) -> (SharedStore, Guard)` that returns an
//! empty store reading time from the given clock; the guard keeps whatever
//! the store needs (a temporary directory, a server) alive for the test.

use chrono::{DateTime, Duration, Utc};
pub use focusforge_core::ManualClock;
use serde_json::json;

use crate::{
    Cursor, DocumentStore, Filter, NewDocument, Order, Precondition, Query, SortKey, StoreError,
    UserId,
};

/// Generates one `#[tokio::test]` per conformance case.
#[macro_export]
macro_rules! document_store_conformance {
    ($factory:path) => {
        $crate::document_store_conformance!(@cases $factory;
            insert_then_get,
            reads_are_scoped_by_user,
            duplicate_insert_is_rejected,
            replace_bumps_version_and_honours_preconditions,
            delete_honours_preconditions,
            expired_documents_are_never_returned,
            expired_ids_can_be_reused,
            purge_removes_only_expired,
            filters_select_by_field,
            created_between_selects_by_time,
            updated_between_selects_by_last_write,
            time_ranges_include_their_lower_bound,
            scan_returns_every_match_up_to_its_limit,
            changes_visit_every_changed_document_once,
            pagination_visits_every_document_once,
            pagination_ascending_by_updated_at,
            delete_many_is_scoped,
            rejects_malformed_requests,
            concurrent_conditional_writes_let_exactly_one_win,
            concurrent_inserts_over_an_expired_id_let_exactly_one_win,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let clock = $crate::conformance::ManualClock::new($crate::conformance::epoch());
                let (store, _guard) = $factory(clock.clone()).await;
                $crate::conformance::$case(store.as_ref(), &clock).await;
            }
        )*
    };
}

/// The instant every case's clock starts at: far in the future, so a
/// backend's own expiry sweeper (MongoDB's TTL monitor runs on the wall
/// clock) never removes a document a case still expects to see.
pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(4_102_444_800, 0).unwrap_or_default()
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap_or_else(|e| panic!("bad test user {name}: {e}"))
}

fn doc(user_name: &str, id: &str, body: serde_json::Value) -> NewDocument {
    NewDocument {
        id: id.to_owned(),
        user_id: user(user_name),
        body,
        expires_at: None,
    }
}

async fn must_insert(store: &dyn DocumentStore, c: &str, d: NewDocument) -> crate::Document {
    store
        .insert(c, d)
        .await
        .unwrap_or_else(|e| panic!("insert failed: {e}"))
}

fn all(limit: usize) -> Query {
    Query {
        limit,
        ..Query::default()
    }
}

pub async fn insert_then_get(store: &dyn DocumentStore, clock: &ManualClock) {
    let body = json!({"title": "write report", "n": 3, "tags": ["a", "b"], "nested": {"x": true}});
    let inserted = must_insert(store, "tasks", doc("alice", "t1", body.clone())).await;
    assert_eq!(inserted.version, 1);
    assert_eq!(inserted.created_at, clock.now_for_tests());
    let got = store.get("tasks", &user("alice"), "t1").await.expect("get");
    let got = got.expect("document should exist");
    assert_eq!(got.body, body);
    assert_eq!(got.id, "t1");
    assert_eq!(got.user_id, user("alice"));
    assert_eq!(got.version, 1);
    assert_eq!(got.created_at, inserted.created_at);
    assert!(
        store
            .get("tasks", &user("alice"), "t2")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get("other", &user("alice"), "t1")
            .await
            .expect("get")
            .is_none()
    );
}

pub async fn reads_are_scoped_by_user(store: &dyn DocumentStore, _clock: &ManualClock) {
    must_insert(
        store,
        "tasks",
        doc("alice", "t1", json!({"owner": "alice"})),
    )
    .await;
    let bob = user("bob");
    assert!(store.get("tasks", &bob, "t1").await.expect("get").is_none());
    assert!(matches!(
        store
            .replace("tasks", &bob, "t1", json!({}), None, Precondition::None)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete("tasks", &bob, "t1", Precondition::None).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        store
            .find("tasks", &bob, &all(10))
            .await
            .expect("find")
            .documents
            .is_empty()
    );
    // The same id may exist for two users without either seeing the other's.
    must_insert(store, "tasks", doc("bob", "t1", json!({"owner": "bob"}))).await;
    let a = store
        .get("tasks", &user("alice"), "t1")
        .await
        .expect("get")
        .expect("alice's");
    let b = store
        .get("tasks", &bob, "t1")
        .await
        .expect("get")
        .expect("bob's");
    assert_eq!(a.body["owner"], "alice");
    assert_eq!(b.body["owner"], "bob");
}

pub async fn duplicate_insert_is_rejected(store: &dyn DocumentStore, _clock: &ManualClock) {
    must_insert(store, "tasks", doc("alice", "t1", json!({"v": 1}))).await;
    let again = store
        .insert("tasks", doc("alice", "t1", json!({"v": 2})))
        .await;
    assert!(matches!(again, Err(StoreError::AlreadyExists)), "{again:?}");
    let kept = store
        .get("tasks", &user("alice"), "t1")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(
        kept.body["v"], 1,
        "a rejected insert must not change the document"
    );
}

pub async fn replace_bumps_version_and_honours_preconditions(
    store: &dyn DocumentStore,
    clock: &ManualClock,
) {
    let alice = user("alice");
    let first = must_insert(store, "tasks", doc("alice", "t1", json!({"v": 1}))).await;
    clock.advance(Duration::seconds(5));
    let second = store
        .replace(
            "tasks",
            &alice,
            "t1",
            json!({"v": 2}),
            None,
            Precondition::Version(1),
        )
        .await
        .expect("conditional replace at the current version");
    assert_eq!(second.version, 2);
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(second.updated_at, first.created_at + Duration::seconds(5));

    let stale = store
        .replace(
            "tasks",
            &alice,
            "t1",
            json!({"v": 3}),
            None,
            Precondition::Version(1),
        )
        .await;
    assert!(
        matches!(
            stale,
            Err(StoreError::VersionMismatch {
                expected: 1,
                actual: 2
            })
        ),
        "{stale:?}"
    );
    let third = store
        .replace(
            "tasks",
            &alice,
            "t1",
            json!({"v": 3}),
            None,
            Precondition::None,
        )
        .await
        .expect("unconditional replace");
    assert_eq!(third.version, 3);
    let got = store
        .get("tasks", &alice, "t1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.body["v"], 3);
    assert_eq!(got.version, 3);
    assert!(matches!(
        store
            .replace("tasks", &alice, "nope", json!({}), None, Precondition::None)
            .await,
        Err(StoreError::NotFound)
    ));
}

pub async fn delete_honours_preconditions(store: &dyn DocumentStore, _clock: &ManualClock) {
    let alice = user("alice");
    must_insert(store, "tasks", doc("alice", "t1", json!({}))).await;
    assert!(matches!(
        store
            .delete("tasks", &alice, "t1", Precondition::Version(7))
            .await,
        Err(StoreError::VersionMismatch {
            expected: 7,
            actual: 1
        })
    ));
    assert!(
        store
            .get("tasks", &alice, "t1")
            .await
            .expect("get")
            .is_some()
    );
    store
        .delete("tasks", &alice, "t1", Precondition::Version(1))
        .await
        .expect("delete");
    assert!(
        store
            .get("tasks", &alice, "t1")
            .await
            .expect("get")
            .is_none()
    );
    assert!(matches!(
        store
            .delete("tasks", &alice, "t1", Precondition::None)
            .await,
        Err(StoreError::NotFound)
    ));
}

pub async fn expired_documents_are_never_returned(store: &dyn DocumentStore, clock: &ManualClock) {
    let alice = user("alice");
    let mut d = doc("alice", "m1", json!({"kind": "note"}));
    d.expires_at = Some(clock.now_for_tests() + Duration::hours(1));
    must_insert(store, "memory", d).await;
    must_insert(store, "memory", doc("alice", "m2", json!({"kind": "note"}))).await;

    clock.advance(Duration::minutes(59));
    assert!(
        store
            .get("memory", &alice, "m1")
            .await
            .expect("get")
            .is_some()
    );
    clock.advance(Duration::minutes(1));
    // Not swept yet, but expired: invisible to every read and write.
    assert!(
        store
            .get("memory", &alice, "m1")
            .await
            .expect("get")
            .is_none()
    );
    let page = store.find("memory", &alice, &all(10)).await.expect("find");
    let ids: Vec<_> = page.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["m2"]);
    assert!(matches!(
        store
            .replace("memory", &alice, "m1", json!({}), None, Precondition::None)
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .delete_many("memory", &alice, &[Filter::eq("kind", "note")])
            .await
            .expect("dm"),
        1,
        "only live documents count"
    );
}

pub async fn expired_ids_can_be_reused(store: &dyn DocumentStore, clock: &ManualClock) {
    let alice = user("alice");
    let mut d = doc("alice", "m1", json!({"gen": 1}));
    d.expires_at = Some(clock.now_for_tests() + Duration::seconds(10));
    must_insert(store, "memory", d).await;
    clock.advance(Duration::seconds(11));
    let again = must_insert(store, "memory", doc("alice", "m1", json!({"gen": 2}))).await;
    assert_eq!(again.version, 1);
    let got = store
        .get("memory", &alice, "m1")
        .await
        .expect("get")
        .expect("new one");
    assert_eq!(got.body["gen"], 2);
    assert_eq!(got.expires_at, None);
}

pub async fn purge_removes_only_expired(store: &dyn DocumentStore, clock: &ManualClock) {
    for (i, ttl) in [Some(1), Some(100), None].into_iter().enumerate() {
        let mut d = doc("alice", &format!("m{i}"), json!({}));
        d.expires_at = ttl.map(|s| clock.now_for_tests() + Duration::seconds(s));
        must_insert(store, "memory", d).await;
    }
    clock.advance(Duration::seconds(2));
    assert_eq!(store.purge_expired().await.expect("purge"), 1);
    assert_eq!(store.purge_expired().await.expect("purge"), 0);
    let left = store
        .find("memory", &user("alice"), &all(10))
        .await
        .expect("find");
    assert_eq!(left.documents.len(), 2);
}

async fn ids_matching(store: &dyn DocumentStore, filters: Vec<Filter>) -> Vec<String> {
    let q = Query {
        filters,
        limit: 100,
        order: Order {
            key: SortKey::CreatedAt,
            descending: false,
        },
        after: None,
    };
    let page = store.find("tasks", &user("alice"), &q).await.expect("find");
    let mut ids: Vec<String> = page.documents.into_iter().map(|d| d.id).collect();
    ids.sort();
    ids
}

pub async fn filters_select_by_field(store: &dyn DocumentStore, _clock: &ManualClock) {
    let rows = [
        (
            "a",
            json!({"status": "pending", "prio": 1, "due": 100, "tags": ["x", "y"], "done": false}),
        ),
        (
            "b",
            json!({"status": "done", "prio": 2, "due": 200, "tags": ["y"], "done": true}),
        ),
        (
            "c",
            json!({"status": "pending", "prio": 3, "tags": [], "done": false}),
        ),
        (
            "d",
            json!({"status": "active", "prio": 2, "due": 300, "tags": ["x"], "done": false}),
        ),
    ];
    for (id, body) in rows {
        must_insert(store, "tasks", doc("alice", id, body)).await;
    }
    must_insert(
        store,
        "tasks",
        doc("bob", "e", json!({"status": "pending"})),
    )
    .await;
    let ids = |filters: Vec<Filter>| ids_matching(store, filters);
    assert_eq!(ids(vec![Filter::eq("status", "pending")]).await, ["a", "c"]);
    assert_eq!(ids(vec![Filter::eq("prio", 2)]).await, ["b", "d"]);
    assert_eq!(ids(vec![Filter::eq("done", true)]).await, ["b"]);
    assert_eq!(
        ids(vec![Filter::In(
            "status".into(),
            vec![json!("done"), json!("active")]
        )])
        .await,
        ["b", "d"]
    );
    assert!(
        ids(vec![Filter::In("status".into(), vec![])])
            .await
            .is_empty()
    );
    assert_eq!(
        ids(vec![Filter::Contains("tags".into(), json!("x"))]).await,
        ["a", "d"]
    );
    let due = |gte, lt| Filter::Range {
        field: "due".into(),
        gte,
        lt,
    };
    assert_eq!(ids(vec![due(Some(200), None)]).await, ["b", "d"]);
    assert_eq!(ids(vec![due(None, Some(200))]).await, ["a"]);
    assert_eq!(ids(vec![due(Some(100), Some(300))]).await, ["a", "b"]);
    assert_eq!(
        ids(vec![Filter::eq("due", serde_json::Value::Null)]).await,
        ["c"]
    );
    assert_eq!(
        ids(vec![
            Filter::eq("status", "pending"),
            Filter::Contains("tags".into(), json!("y"))
        ])
        .await,
        ["a"]
    );
}

pub async fn created_between_selects_by_time(store: &dyn DocumentStore, clock: &ManualClock) {
    let start = clock.now_for_tests();
    for id in ["a", "b", "c"] {
        must_insert(store, "mood", doc("alice", id, json!({}))).await;
        clock.advance(Duration::hours(1));
    }
    let q = Query {
        filters: vec![Filter::CreatedBetween {
            gte: Some(start + Duration::minutes(30)),
            lt: Some(start + Duration::hours(2)),
        }],
        limit: 10,
        ..Query::default()
    };
    let page = store.find("mood", &user("alice"), &q).await.expect("find");
    let ids: Vec<_> = page.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["b"]);
}

pub async fn updated_between_selects_by_last_write(store: &dyn DocumentStore, clock: &ManualClock) {
    let start = clock.now_for_tests();
    for id in ["a", "b", "c"] {
        must_insert(store, "mood", doc("alice", id, json!({}))).await;
    }
    clock.advance(Duration::hours(2));
    store
        .replace(
            "mood",
            &user("alice"),
            "b",
            json!({"x": 1}),
            None,
            Precondition::None,
        )
        .await
        .expect("replace");
    let filters = vec![Filter::UpdatedBetween {
        gte: Some(start + Duration::hours(1)),
        lt: Some(start + Duration::hours(3)),
    }];
    let q = Query {
        filters: filters.clone(),
        limit: 10,
        ..Query::default()
    };
    let page = store.find("mood", &user("alice"), &q).await.expect("find");
    let ids: Vec<_> = page.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["b"]);
    let scan = store
        .scan("mood", &user("alice"), &filters, 10)
        .await
        .expect("scan");
    let ids: Vec<_> = scan.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["b"]);
}

/// A range starting at a document's very millisecond holds it, and one
/// ending there does not, through `find` and `scan`, by creation and by
/// last write.
pub async fn time_ranges_include_their_lower_bound(store: &dyn DocumentStore, clock: &ManualClock) {
    let mut at = Vec::new();
    for id in ["a", "b", "c", "d"] {
        at.push(clock.now_for_tests());
        must_insert(store, "tasks", doc("alice", id, json!({}))).await;
        clock.advance(Duration::milliseconds(1));
    }
    let ranges = [
        Filter::CreatedBetween {
            gte: Some(at[1]),
            lt: Some(at[3]),
        },
        Filter::UpdatedBetween {
            gte: Some(at[1]),
            lt: Some(at[3]),
        },
    ];
    for range in ranges {
        let q = Query {
            filters: vec![range.clone()],
            limit: 10,
            ..Query::default()
        };
        let page = store.find("tasks", &user("alice"), &q).await.expect("find");
        let ids: Vec<_> = page.documents.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"], "{range:?} through find");
        let scan = store
            .scan("tasks", &user("alice"), std::slice::from_ref(&range), 10)
            .await
            .expect("scan");
        let mut ids: Vec<_> = scan.documents.iter().map(|d| d.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["b", "c"], "{range:?} through scan");
    }
}

pub async fn scan_returns_every_match_up_to_its_limit(
    store: &dyn DocumentStore,
    clock: &ManualClock,
) {
    let alice = user("alice");
    for i in 0..12 {
        let status = if i % 3 == 0 { "done" } else { "open" };
        must_insert(
            store,
            "tasks",
            doc(
                "alice",
                &format!("t{i:02}"),
                json!({"status": status, "i": i}),
            ),
        )
        .await;
        clock.advance(Duration::milliseconds(1));
    }
    must_insert(store, "tasks", doc("bob", "b0", json!({"status": "done"}))).await;
    store
        .insert(
            "tasks",
            NewDocument {
                expires_at: Some(clock.now_for_tests()),
                ..doc("alice", "gone", json!({"status": "done"}))
            },
        )
        .await
        .expect("insert expiring");
    let done = [Filter::eq("status", "done")];
    let scan = store.scan("tasks", &alice, &done, 100).await.expect("scan");
    let mut ids: Vec<_> = scan.documents.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["t00", "t03", "t06", "t09"],
        "only alice's live matches"
    );
    assert!(!scan.truncated);
    let all_of_them = store.scan("tasks", &alice, &[], 12).await.expect("scan");
    assert_eq!(all_of_them.documents.len(), 12);
    assert!(!all_of_them.truncated, "exactly the limit is not truncated");
    let cut = store.scan("tasks", &alice, &[], 5).await.expect("scan");
    assert_eq!(cut.documents.len(), 5);
    assert!(cut.truncated);
    for limit in [0, crate::MAX_SCAN + 1] {
        assert!(matches!(
            store.scan("tasks", &alice, &[], limit).await,
            Err(StoreError::InvalidQuery(_))
        ));
    }
    assert!(matches!(
        store
            .scan("tasks", &alice, &[Filter::eq("a') OR 1=1 --", "x")], 5)
            .await,
        Err(StoreError::InvalidQuery(_))
    ));
}

/// The windowed reader: windows split when a scan is truncated, and more
/// documents than a batch written in one millisecond still come once each.
pub async fn changes_visit_every_changed_document_once(
    store: &dyn DocumentStore,
    clock: &ManualClock,
) {
    let start = clock.now_for_tests();
    let mut expected = Vec::new();
    for i in 0..40 {
        let id = format!("d{i:02}");
        must_insert(store, "tasks", doc("alice", &id, json!({"i": i}))).await;
        expected.push(id);
        // Eight in one millisecond, then gaps of minutes to days.
        if i >= 8 {
            clock.advance(Duration::minutes(37 * i64::from(i)));
        }
    }
    must_insert(store, "tasks", doc("bob", "b0", json!({}))).await;
    let mut seen = Vec::new();
    let mut changes = crate::changes(
        store,
        "tasks",
        &user("alice"),
        start,
        clock.now_for_tests() + Duration::seconds(1),
    )
    .batch(5);
    let mut batches = 0;
    while let Some(batch) = changes.next_batch().await.expect("batch") {
        assert!(!batch.is_empty());
        batches += 1;
        seen.extend(batch.into_iter().map(|d| d.id));
    }
    seen.sort();
    assert_eq!(seen, expected, "every changed document once, only alice's");
    assert!(batches >= 8, "forty documents in batches of at most five");
}

pub async fn pagination_visits_every_document_once(store: &dyn DocumentStore, clock: &ManualClock) {
    // Several documents share a timestamp so the id tie-break matters.
    for i in 0..23 {
        must_insert(
            store,
            "tasks",
            doc("alice", &format!("t{i:02}"), json!({"i": i})),
        )
        .await;
        if i % 3 == 0 {
            clock.advance(Duration::milliseconds(1));
        }
    }
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let q = Query {
            limit: 5,
            order: Order {
                key: SortKey::CreatedAt,
                descending: true,
            },
            after: after.clone(),
            ..Query::default()
        };
        let page = store.find("tasks", &user("alice"), &q).await.expect("find");
        pages += 1;
        assert!(page.documents.len() <= 5);
        seen.extend(page.documents.iter().map(|d| (d.created_at, d.id.clone())));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages < 10, "pagination does not terminate");
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 23);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first, ties by id descending");
    sorted.dedup();
    assert_eq!(sorted.len(), 23, "no document twice");
}

pub async fn pagination_ascending_by_updated_at(store: &dyn DocumentStore, clock: &ManualClock) {
    let alice = user("alice");
    for id in ["a", "b", "c"] {
        must_insert(store, "tasks", doc("alice", id, json!({}))).await;
        clock.advance(Duration::seconds(1));
    }
    store
        .replace(
            "tasks",
            &alice,
            "a",
            json!({"x": 1}),
            None,
            Precondition::None,
        )
        .await
        .expect("r");
    let q = |after| Query {
        limit: 2,
        order: Order {
            key: SortKey::UpdatedAt,
            descending: false,
        },
        after,
        ..Query::default()
    };
    let first = store.find("tasks", &alice, &q(None)).await.expect("find");
    let ids: Vec<_> = first.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["b", "c"]);
    let second = store
        .find("tasks", &alice, &q(first.next))
        .await
        .expect("find");
    let ids: Vec<_> = second.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["a"]);
    assert!(second.next.is_none());
}

pub async fn delete_many_is_scoped(store: &dyn DocumentStore, _clock: &ManualClock) {
    for (owner, id, tier) in [
        ("alice", "1", "short"),
        ("alice", "2", "short"),
        ("alice", "3", "long"),
        ("bob", "4", "short"),
    ] {
        must_insert(store, "memory", doc(owner, id, json!({"tier": tier}))).await;
    }
    let n = store
        .delete_many("memory", &user("alice"), &[Filter::eq("tier", "short")])
        .await;
    assert_eq!(n.expect("delete_many"), 2);
    let alice_left = store
        .find("memory", &user("alice"), &all(10))
        .await
        .expect("find");
    assert_eq!(alice_left.documents.len(), 1);
    let bob_left = store
        .find("memory", &user("bob"), &all(10))
        .await
        .expect("find");
    assert_eq!(
        bob_left.documents.len(),
        1,
        "another user's documents are untouched"
    );
}

pub async fn rejects_malformed_requests(store: &dyn DocumentStore, _clock: &ManualClock) {
    let alice = user("alice");
    assert!(matches!(
        store
            .insert("tasks", doc("alice", "x", json!([1, 2])))
            .await,
        Err(StoreError::InvalidQuery(_))
    ));
    assert!(matches!(
        store.insert("Bad Name", doc("alice", "x", json!({}))).await,
        Err(StoreError::InvalidQuery(_))
    ));
    let injection = Query {
        filters: vec![Filter::eq("status') OR 1=1 --", "x")],
        limit: 10,
        ..Query::default()
    };
    assert!(matches!(
        store.find("tasks", &alice, &injection).await,
        Err(StoreError::InvalidQuery(_))
    ));
    assert!(matches!(
        store.find("tasks", &alice, &all(0)).await,
        Err(StoreError::InvalidQuery(_))
    ));
    assert!(matches!(
        store
            .find("tasks", &alice, &all(Query::MAX_LIMIT + 1))
            .await,
        Err(StoreError::InvalidQuery(_))
    ));
}

pub async fn concurrent_conditional_writes_let_exactly_one_win(
    store: &dyn DocumentStore,
    _clock: &ManualClock,
) {
    let alice = user("alice");
    must_insert(store, "tasks", doc("alice", "t", json!({"n": 0}))).await;
    let writes = (1..=16).map(|n| {
        let alice = alice.clone();
        async move {
            store
                .replace(
                    "tasks",
                    &alice,
                    "t",
                    json!({"n": n}),
                    None,
                    Precondition::Version(1),
                )
                .await
        }
    });
    let results = futures::future::join_all(writes).await;
    let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(wins.len(), 1, "exactly one conditional write wins");
    for lost in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(
                lost,
                Err(StoreError::VersionMismatch {
                    expected: 1,
                    actual: 2
                })
            ),
            "{lost:?}"
        );
    }
    let got = store
        .get("tasks", &alice, "t")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.version, 2);
    assert_eq!(got.body, wins[0].body, "the stored body is the winner's");
}

/// Inserts racing to reuse an expired document's id: one wins, the rest
/// are told the id is taken, and the winner's document stays.
pub async fn concurrent_inserts_over_an_expired_id_let_exactly_one_win(
    store: &dyn DocumentStore,
    clock: &ManualClock,
) {
    let alice = user("alice");
    store
        .insert(
            "tasks",
            NewDocument {
                expires_at: Some(clock.now_for_tests() + Duration::seconds(1)),
                ..doc("alice", "t", json!({"n": 0}))
            },
        )
        .await
        .expect("insert expiring");
    clock.advance(Duration::seconds(2));
    let inserts = (1..=8).map(|n| store.insert("tasks", doc("alice", "t", json!({"n": n}))));
    let results = futures::future::join_all(inserts).await;
    let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(wins.len(), 1, "exactly one insert wins: {results:?}");
    for lost in results.iter().filter(|r| r.is_err()) {
        assert!(matches!(lost, Err(StoreError::AlreadyExists)), "{lost:?}");
    }
    let got = store
        .get("tasks", &alice, "t")
        .await
        .expect("get")
        .expect("the winner's document stays");
    assert_eq!(got.body, wins[0].body);
    assert_eq!(got.version, 1);
}

trait NowForTests {
    fn now_for_tests(&self) -> DateTime<Utc>;
}

impl NowForTests for ManualClock {
    fn now_for_tests(&self) -> DateTime<Utc> {
        focusforge_core::Clock::now(self)
    }
}
