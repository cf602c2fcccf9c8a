//! The embedded event log on a real SQLite file, and the handle's wake-ups.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use focusforge_core::{ManualClock, UserId};
use focusforge_events::{EmbeddedLog, EventError, EventLog, Events, MAX_SUBSCRIPTIONS_PER_USER};

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user")
}

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
}

fn bodies(read: &focusforge_events::Read) -> Vec<&[u8]> {
    read.events.iter().map(|e| e.body.as_slice()).collect()
}

#[tokio::test]
async fn events_come_back_in_order_per_user_from_any_id() {
    let dir = tempfile::tempdir().expect("dir");
    let log = EmbeddedLog::open(&dir.path().join("events.sqlite")).expect("open");
    let (alice, bob) = (user("alice"), user("bob"));
    assert_eq!(log.head(&alice).await.expect("head"), None);
    let mut ids = Vec::new();
    for i in 0..5u8 {
        ids.push(
            log.append(&alice, t(i.into()), vec![i])
                .await
                .expect("append"),
        );
        log.append(&bob, t(i.into()), vec![100 + i])
            .await
            .expect("append");
    }
    let all = log.read(&alice, None, 10).await.expect("read");
    assert_eq!(bodies(&all), [[0], [1], [2], [3], [4]]);
    assert_eq!(all.events[2].at, t(2));
    let rest = log.read(&alice, Some(&ids[1]), 2).await.expect("read");
    assert_eq!(bodies(&rest), [[2], [3]], "after an id, at most the limit");
    assert_eq!(log.head(&alice).await.expect("head"), Some(ids[4].clone()));
    let none = log.read(&alice, Some(&ids[4]), 10).await.expect("read");
    assert!(none.events.is_empty() && none.gap.is_none());
    let theirs = log.read(&bob, None, 10).await.expect("read");
    assert_eq!(bodies(&theirs), [[100], [101], [102], [103], [104]]);
    for bad in ["", "x", "-1", "99999999999999999999999"] {
        assert!(
            matches!(
                log.read(&alice, Some(bad), 1).await,
                Err(EventError::BadId(_))
            ),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn trimming_leaves_a_gap_that_a_read_reports() {
    let dir = tempfile::tempdir().expect("dir");
    let log = EmbeddedLog::open(&dir.path().join("events.sqlite")).expect("open");
    let (alice, bob) = (user("alice"), user("bob"));
    let mut ids = Vec::new();
    for i in 0..10u8 {
        ids.push(
            log.append(&alice, t(i.into()), vec![i])
                .await
                .expect("append"),
        );
    }
    log.append(&bob, t(0), vec![1]).await.expect("append");
    // Before t(3) by age; bob's one event too.
    assert_eq!(log.trim(t(3), 100).await.expect("trim"), 4);
    let gap = log.read(&alice, Some(&ids[0]), 10).await.expect("read");
    assert_eq!(gap.gap.as_deref(), Some(ids[2].as_str()));
    assert!(gap.events.is_empty());
    let resumed = log
        .read(&alice, gap.gap.as_deref(), 10)
        .await
        .expect("read");
    assert_eq!(bodies(&resumed).len(), 7, "the oldest kept comes next");
    assert_eq!(resumed.events[0].body, [3]);
    // Beyond the newest 4 of a user.
    assert_eq!(log.trim(t(0), 4).await.expect("trim"), 3);
    let read = log.read(&alice, None, 10).await.expect("read");
    assert_eq!(bodies(&read), [[6], [7], [8], [9]]);
    assert!(
        log.read(&alice, Some(&ids[4]), 10)
            .await
            .expect("read")
            .gap
            .is_some()
    );
    assert!(
        log.read(&alice, Some(&ids[5]), 10)
            .await
            .expect("read")
            .gap
            .is_none()
    );
    // A user whose every event went still has a head, so a subscriber from
    // now on is not told of a gap.
    let head = log.head(&bob).await.expect("head");
    assert!(head.is_some());
    assert!(
        log.read(&bob, head.as_deref(), 10)
            .await
            .expect("read")
            .gap
            .is_none()
    );
}

#[tokio::test]
async fn the_log_is_shared_by_two_handles_on_one_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("events.sqlite");
    let clock = Arc::new(ManualClock::new(t(0)));
    let here = Events::new(
        Arc::new(EmbeddedLog::open(&path).expect("open")),
        clock.clone(),
    );
    let there = Events::new(Arc::new(EmbeddedLog::open(&path).expect("open")), clock);
    let watcher = here.watch(Duration::from_millis(20));
    let alice = user("alice");
    let sub = here.subscribe(&alice).expect("subscribe");
    // Let the watcher take its starting point.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let woken = sub.changed();
    let id = there
        .publish(&alice, b"from the worker".to_vec())
        .await
        .expect("published");
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("another handle's append wakes this one's subscriber");
    let read = here.log().read(&alice, None, 10).await.expect("read");
    assert_eq!(read.events[0].id, id);
    assert_eq!(read.events[0].body, b"from the worker");
    watcher.abort();
}

#[tokio::test]
async fn a_publish_wakes_only_that_users_subscribers_and_subscriptions_are_bounded() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(ManualClock::new(t(0)));
    let events = Events::new(
        Arc::new(EmbeddedLog::open(&dir.path().join("e.sqlite")).expect("open")),
        clock,
    );
    let (alice, bob) = (user("alice"), user("bob"));
    let a = events.subscribe(&alice).expect("subscribe");
    let b = events.subscribe(&bob).expect("subscribe");
    let (wa, wb) = (a.changed(), b.changed());
    events.publish(&alice, vec![1]).await.expect("published");
    tokio::time::timeout(Duration::from_secs(1), wa)
        .await
        .expect("alice woken");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), wb)
            .await
            .is_err(),
        "bob is not woken by alice's event"
    );
    let mut held = vec![a];
    while held.len() < MAX_SUBSCRIPTIONS_PER_USER {
        held.push(events.subscribe(&alice).expect("within the bound"));
    }
    assert!(events.subscribe(&alice).is_err(), "one past the bound");
    held.pop();
    assert!(
        events.subscribe(&alice).is_ok(),
        "a closed one frees its place"
    );
}
