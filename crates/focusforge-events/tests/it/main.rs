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
    assert_eq!(log.head(&alice).await.expect("head"), "0");
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
    assert_eq!(log.head(&alice).await.expect("head"), ids[4]);
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
    assert_ne!(head, "0");
    assert!(
        log.read(&bob, Some(&head), 10)
            .await
            .expect("read")
            .gap
            .is_none()
    );
    // An id past every one handed out (a replaced file) resumes from the
    // newest rather than waiting below it forever.
    let past = log.read(&alice, Some("999999"), 10).await.expect("read");
    let resume = past.gap.expect("a gap");
    assert!(resume.parse::<i64>().expect("an id") >= ids[9].parse::<i64>().expect("an id"));
    let next = log.append(&alice, t(20), vec![42]).await.expect("append");
    let read = log.read(&alice, Some(&resume), 10).await.expect("read");
    assert_eq!(
        read.events[0].id, next,
        "the next event comes after the resume id"
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

mod redis {
    //! The Redis log on a real `redis-server`.

    use std::sync::Arc;
    use std::time::Duration;

    use focusforge_cache::testing::RedisServer;
    use focusforge_core::ManualClock;
    use focusforge_events::{EventError, EventLog, Events, RedisLog, RedisLogSettings};

    use super::{bodies, t, user};

    fn log(server: &RedisServer, prefix: &str, retention: Duration, per_user: usize) -> RedisLog {
        RedisLog::new(RedisLogSettings {
            url: server.url(),
            pool_size: 4,
            timeout: Duration::from_secs(5),
            prefix: prefix.into(),
            retention,
            per_user,
        })
        .expect("log")
    }

    #[tokio::test]
    async fn events_come_back_in_order_per_user_from_any_id() {
        let server = RedisServer::start();
        let log = log(&server, "t1", Duration::from_secs(3600), 100);
        let (alice, bob) = (user("alice"), user("bob"));
        assert_eq!(log.head(&alice).await.expect("head"), "0-0");
        let mut ids = Vec::new();
        for i in 0..5u8 {
            ids.push(
                log.append(&alice, t(i.into()), vec![i, 0, 255])
                    .await
                    .expect("append"),
            );
            log.append(&bob, t(i.into()), vec![100 + i])
                .await
                .expect("append");
        }
        let all = log.read(&alice, None, 10).await.expect("read");
        assert_eq!(bodies(&all).len(), 5);
        assert_eq!(all.events[2].body, [2, 0, 255], "bodies are binary-safe");
        assert_eq!(all.events[2].at, t(2));
        let rest = log.read(&alice, Some(&ids[1]), 2).await.expect("read");
        assert_eq!(bodies(&rest), [[2, 0, 255], [3, 0, 255]]);
        assert_eq!(log.head(&alice).await.expect("head"), ids[4]);
        assert!(
            log.read(&alice, Some(&ids[4]), 10)
                .await
                .expect("read")
                .events
                .is_empty()
        );
        let theirs = log.read(&bob, None, 10).await.expect("read");
        assert_eq!(bodies(&theirs), [[100], [101], [102], [103], [104]]);
        for bad in ["", "x", "1-", "-1", "1-2-3", "１-2"] {
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
    async fn the_per_user_cap_and_the_retention_leave_a_gap_a_read_reports() {
        let server = RedisServer::start();
        let capped = log(&server, "t2", Duration::from_secs(3600), 4);
        let alice = user("alice");
        let mut ids = Vec::new();
        for i in 0..10u8 {
            ids.push(capped.append(&alice, t(0), vec![i]).await.expect("append"));
        }
        assert_eq!(
            bodies(&capped.read(&alice, None, 10).await.expect("read")),
            [[6], [7], [8], [9]]
        );
        let gap = capped.read(&alice, Some(&ids[2]), 10).await.expect("read");
        assert_eq!(gap.gap.as_deref(), Some(ids[5].as_str()));
        let resumed = capped
            .read(&alice, gap.gap.as_deref(), 10)
            .await
            .expect("read");
        assert_eq!(resumed.events[0].body, [6], "the oldest kept comes next");
        assert!(
            capped
                .read(&alice, Some(&ids[5]), 10)
                .await
                .expect("read")
                .gap
                .is_none()
        );

        let short = log(&server, "t3", Duration::from_millis(300), 100);
        let old = short.append(&alice, t(0), vec![1]).await.expect("append");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let new = short.append(&alice, t(1), vec![2]).await.expect("append");
        // The old one expired with the quiet stream, and the new stream
        // starts after it: nothing was lost after `old`.
        let read = short.read(&alice, Some(&old), 10).await.expect("read");
        assert!(read.gap.is_none(), "{read:?}");
        assert_eq!(read.events.len(), 1);
        assert_eq!(read.events[0].id, new);
        // Two more, then the stream expires: a client that saw only the
        // first of them has lost the second.
        let seen = short.append(&alice, t(2), vec![3]).await.expect("append");
        let lost = short.append(&alice, t(3), vec![4]).await.expect("append");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let gone = short.read(&alice, Some(&seen), 10).await.expect("read");
        assert_eq!(gone.gap.as_deref(), Some(lost.as_str()), "{gone:?}");
        let resumed = short.read(&alice, Some(&lost), 10).await.expect("read");
        assert!(resumed.gap.is_none() && resumed.events.is_empty());
        assert!(
            short
                .read(&alice, Some("0-0"), 10)
                .await
                .expect("read")
                .gap
                .is_none()
        );
    }

    #[tokio::test]
    async fn an_append_on_one_replica_wakes_the_subscribers_of_another() {
        let server = RedisServer::start();
        let clock = Arc::new(ManualClock::new(t(0)));
        let here = Events::new(
            Arc::new(log(&server, "t4", Duration::from_secs(60), 100)),
            clock.clone(),
        );
        let there = Events::new(
            Arc::new(log(&server, "t4", Duration::from_secs(60), 100)),
            clock,
        );
        let watcher = here.watch(Duration::from_millis(20));
        let alice = user("alice");
        let sub = here.subscribe(&alice).expect("subscribe");
        tokio::time::sleep(Duration::from_millis(60)).await;
        let woken = sub.changed();
        let id = there
            .publish(&alice, b"from another replica".to_vec())
            .await
            .expect("published");
        tokio::time::timeout(Duration::from_secs(5), woken)
            .await
            .expect("the other replica's append wakes this one's subscriber");
        let read = here.log().read(&alice, None, 10).await.expect("read");
        assert_eq!(read.events[0].id, id);
        watcher.abort();
    }
}
