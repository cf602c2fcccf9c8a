//! The same semantics on every backend, under a test clock.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Duration as Span;
use focusforge_core::{Priority, RetryPolicy};
use focusforge_jobs::{JobFilter, JobState, Queue, QueueError, Settle};

use crate::support::{Backend, embedded, redis, spec, t0, user};

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod embedded_backend {
            $(#[tokio::test] async fn $name() { super::$name(super::embedded()).await; })*
        }
        mod redis_backend {
            $(#[tokio::test] async fn $name() { super::$name(super::redis()).await; })*
        }
    };
}

on_both!(
    a_job_is_delivered_once_and_settled,
    priority_then_due_time_then_age,
    backoff_follows_the_policy_then_dead_letters,
    non_retryable_errors_fail_at_once,
    an_expired_lease_is_delivered_again,
    workers_that_keep_dying_dead_letter_the_job,
    idempotency_keys_return_the_first_job,
    cancellation_of_queued_and_running_jobs,
    listing_pages_newest_first_with_filters,
    listing_pages_through_a_crowd_in_one_millisecond,
    finished_jobs_are_forgotten_after_retention,
    bad_specs_name_the_field,
    payloads_round_trip_unchanged,
    skipped_kinds_are_left_for_later,
);

fn ms(n: i64) -> Span {
    Span::milliseconds(n)
}

async fn take(q: &dyn Queue, at: chrono::DateTime<chrono::Utc>) -> Option<focusforge_jobs::Lease> {
    q.reserve("w1", at, at + Span::seconds(30), &[])
        .await
        .expect("reserve")
}

async fn a_job_is_delivered_once_and_settled(b: Backend) {
    let q = &*b.queue;
    let alice = user("alice");
    let id = q
        .enqueue(spec("mail", "alice"), t0())
        .await
        .expect("enqueue")
        .id;
    let job = q.get(&alice, &id).await.expect("get").expect("exists");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.attempts, 0);

    let lease = take(q, t0()).await.expect("due now");
    assert_eq!(lease.job.id, id);
    assert_eq!(lease.job.state, JobState::Running);
    assert_eq!(lease.job.attempts, 1);
    assert_eq!(lease.job.worker.as_deref(), Some("w1"));
    assert!(
        take(q, t0()).await.is_none(),
        "a leased job is not delivered twice"
    );

    let stats = q.stats(&alice).await.expect("stats");
    assert_eq!(stats.count(JobState::Running), 1);
    assert_eq!(stats.count(JobState::Queued), 0);

    let state = q
        .settle(&lease, Settle::Succeeded, None, t0() + ms(5))
        .await
        .expect("settle");
    assert_eq!(state, JobState::Succeeded);
    let job = q.get(&alice, &id).await.expect("get").expect("exists");
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.finished_at, Some(t0() + ms(5)));
    assert!(matches!(
        q.settle(&lease, Settle::Succeeded, None, t0()).await,
        Err(QueueError::LeaseLost)
    ));
    let stats = q.stats(&alice).await.expect("stats");
    assert_eq!(stats.count(JobState::Succeeded), 1);
    assert_eq!(stats.count(JobState::Running), 0);
    assert_eq!(stats.by_kind["mail"][&JobState::Succeeded], 1);
    assert_eq!(
        q.stats(&user("bob"))
            .await
            .expect("stats")
            .count(JobState::Succeeded),
        0
    );
}

async fn priority_then_due_time_then_age(b: Backend) {
    let q = &*b.queue;
    let enqueue = |kind: &'static str, priority: Priority, delay_ms: i64, at_ms: i64| {
        let mut s = spec(kind, "alice");
        s.priority = priority;
        if delay_ms > 0 {
            s.run_at = Some(t0() + ms(delay_ms));
        }
        let q = b.queue.clone();
        async move { q.enqueue(s, t0() + ms(at_ms)).await.expect("enqueue") }
    };
    enqueue("old-background", Priority::Background, 0, 0).await;
    enqueue("medium-first", Priority::Medium, 0, 1).await;
    enqueue("medium-second", Priority::Medium, 0, 2).await;
    enqueue("critical-later", Priority::Critical, 10_000, 3).await;
    enqueue("critical", Priority::Critical, 0, 4).await;
    let mut order = Vec::new();
    while let Some(l) = take(q, t0() + ms(1_000)).await {
        order.push(l.job.spec.kind.clone());
    }
    assert_eq!(
        order,
        [
            "critical",
            "medium-first",
            "medium-second",
            "old-background"
        ]
    );
    assert!(take(q, t0() + ms(9_999)).await.is_none(), "not due yet");
    let l = take(q, t0() + ms(10_000)).await.expect("due");
    assert_eq!(l.job.spec.kind, "critical-later");
}

async fn backoff_follows_the_policy_then_dead_letters(b: Backend) {
    let q = &*b.queue;
    let mut s = spec("sync", "alice");
    s.retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_secs(2),
        multiplier: 3.0,
        max_delay: Duration::from_secs(60),
        jitter: 0.5,
        non_retryable: vec![],
    };
    let id = q.enqueue(s, t0()).await.expect("enqueue").id;
    let mut now = t0();
    // sample 0.2 with jitter 0.5: each delay is 90% of 2 s, then 6 s.
    for (attempt, delay) in [(1u32, 1_800i64), (2, 5_400)] {
        let lease = take(q, now).await.expect("due");
        assert_eq!(lease.job.attempts, attempt);
        let how = Settle::after_failure(&lease.job, "unavailable", now, 0.2);
        assert_eq!(how, Settle::Retry(now + ms(delay)));
        let state = q
            .settle(&lease, how, Some("unavailable: upstream down"), now)
            .await
            .expect("settle");
        assert_eq!(state, JobState::Queued);
        assert!(take(q, now + ms(delay - 1)).await.is_none(), "too early");
        now += ms(delay);
    }
    let lease = take(q, now).await.expect("third attempt");
    assert_eq!(lease.job.attempts, 3);
    let how = Settle::after_failure(&lease.job, "unavailable", now, 0.2);
    assert_eq!(how, Settle::Dead);
    q.settle(&lease, how, Some("unavailable: still down"), now)
        .await
        .expect("settle");
    let job = q.get(&user("alice"), &id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.attempts, 3);
    assert_eq!(job.last_error.as_deref(), Some("unavailable: still down"));
    assert!(take(q, now + Span::days(1)).await.is_none());
    assert_eq!(
        q.stats(&user("alice"))
            .await
            .expect("stats")
            .count(JobState::Dead),
        1
    );
}

async fn non_retryable_errors_fail_at_once(b: Backend) {
    let q = &*b.queue;
    q.enqueue(spec("sync", "alice"), t0())
        .await
        .expect("enqueue");
    let lease = take(q, t0()).await.expect("due");
    let how = Settle::after_failure(&lease.job, "invalid_argument", t0(), 0.0);
    assert_eq!(how, Settle::Failed);
    let state = q
        .settle(&lease, how, Some("bad"), t0())
        .await
        .expect("settle");
    assert_eq!(state, JobState::Failed);
}

async fn an_expired_lease_is_delivered_again(b: Backend) {
    let q = &*b.queue;
    let id = q
        .enqueue(spec("sync", "alice"), t0())
        .await
        .expect("enqueue")
        .id;
    let first = q
        .reserve("w1", t0(), t0() + Span::seconds(30), &[])
        .await
        .expect("reserve")
        .expect("due");
    let forget = t0() - Span::days(7);
    // A heartbeat pushes the expiry out.
    assert!(
        !q.extend(&first, t0() + Span::seconds(40))
            .await
            .expect("extend")
    );
    assert_eq!(
        q.recover(t0() + Span::seconds(39), forget)
            .await
            .expect("recover"),
        0
    );
    assert_eq!(
        q.recover(t0() + Span::seconds(40), forget)
            .await
            .expect("recover"),
        1
    );
    let second = q
        .reserve(
            "w2",
            t0() + Span::seconds(41),
            t0() + Span::seconds(71),
            &[],
        )
        .await
        .expect("reserve")
        .expect("delivered again");
    assert_eq!(second.job.id, id);
    assert_eq!(second.job.attempts, 2);
    // The first worker lost its lease: it can neither extend nor settle.
    assert!(matches!(
        q.extend(&first, t0() + Span::seconds(90)).await,
        Err(QueueError::LeaseLost)
    ));
    assert!(matches!(
        q.settle(&first, Settle::Succeeded, None, t0()).await,
        Err(QueueError::LeaseLost)
    ));
    q.settle(&second, Settle::Succeeded, None, t0() + Span::seconds(42))
        .await
        .expect("settle");
    let job = q.get(&user("alice"), &id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.worker.as_deref(), Some("w2"));
}

async fn workers_that_keep_dying_dead_letter_the_job(b: Backend) {
    let q = &*b.queue;
    let mut s = spec("poison", "alice");
    s.retry.max_attempts = 2;
    let id = q.enqueue(s, t0()).await.expect("enqueue").id;
    let forget = t0() - Span::days(7);
    let mut now = t0();
    for _ in 0..2 {
        take(q, now).await.expect("delivered");
        now += Span::seconds(31);
        assert_eq!(q.recover(now, forget).await.expect("recover"), 1);
    }
    let job = q.get(&user("alice"), &id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Dead);
    assert!(job.last_error.expect("error").contains("stopped answering"));
}

async fn idempotency_keys_return_the_first_job(b: Backend) {
    let q = &*b.queue;
    let mut s = spec("mail", "alice");
    s.idempotency_key = Some("welcome".into());
    let first = q.enqueue(s.clone(), t0()).await.expect("enqueue");
    assert!(first.created);
    let again = q.enqueue(s.clone(), t0()).await.expect("enqueue");
    assert_eq!(again.id, first.id);
    assert!(!again.created);
    // Keys are per user.
    let mut other = s.clone();
    other.user = user("bob");
    let bobs = q.enqueue(other, t0()).await.expect("enqueue");
    assert!(bobs.created);
    assert_ne!(bobs.id, first.id);
    // Users whose names could make keys collide.
    let mut tricky = s;
    tricky.user = user("alice:welcome");
    tricky.idempotency_key = Some("x".into());
    assert!(q.enqueue(tricky, t0()).await.expect("enqueue").created);
    let stats = q.stats(&user("alice")).await.expect("stats");
    assert_eq!(stats.count(JobState::Queued), 1);
}

async fn cancellation_of_queued_and_running_jobs(b: Backend) {
    let q = &*b.queue;
    let alice = user("alice");
    let queued = q
        .enqueue(spec("a", "alice"), t0())
        .await
        .expect("enqueue")
        .id;
    let running = q
        .enqueue(spec("b", "alice"), t0() + ms(1))
        .await
        .expect("enqueue")
        .id;
    // Someone else's job is not there for bob.
    assert!(matches!(
        q.cancel(&user("bob"), &queued, t0()).await,
        Err(QueueError::NotFound)
    ));
    assert!(q.get(&user("bob"), &queued).await.expect("get").is_none());

    let job = q.cancel(&alice, &queued, t0()).await.expect("cancel");
    assert_eq!(job.state, JobState::Cancelled);
    let lease = take(q, t0() + ms(1)).await.expect("the other job");
    assert_eq!(lease.job.id, running);
    assert!(
        take(q, t0() + ms(1)).await.is_none(),
        "the cancelled job is never delivered"
    );

    let job = q.cancel(&alice, &running, t0()).await.expect("cancel");
    assert_eq!(job.state, JobState::Running);
    assert!(job.cancel_requested);
    assert!(
        q.extend(&lease, t0() + Span::seconds(30))
            .await
            .expect("extend"),
        "the heartbeat hears it"
    );
    // However the handler ends (other than success), the job is cancelled.
    let state = q
        .settle(
            &lease,
            Settle::Retry(t0() + Span::seconds(1)),
            Some("stopped"),
            t0(),
        )
        .await
        .expect("settle");
    assert_eq!(state, JobState::Cancelled);
    let stats = q.stats(&alice).await.expect("stats");
    assert_eq!(stats.count(JobState::Cancelled), 2);
    assert_eq!(
        stats.count(JobState::Queued) + stats.count(JobState::Running),
        0
    );
    // Cancelling a finished job changes nothing.
    let job = q.cancel(&alice, &queued, t0()).await.expect("cancel");
    assert_eq!(job.state, JobState::Cancelled);
}

async fn listing_pages_newest_first_with_filters(b: Backend) {
    let q = &*b.queue;
    let alice = user("alice");
    let mut ids = Vec::new();
    for i in 0..25i64 {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        // Pairs share a millisecond so ties break on the id.
        ids.push(
            q.enqueue(spec(kind, "alice"), t0() + ms(i / 2))
                .await
                .expect("enqueue")
                .id,
        );
    }
    q.enqueue(spec("even", "bob"), t0()).await.expect("enqueue");
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = q
            .list(&alice, &JobFilter::default(), 10, after.as_ref())
            .await
            .expect("list");
        assert!(page.len() <= 10);
        seen.extend(page.into_iter().map(|j| j.id));
        match next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25, "every job once: {seen:?}");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
    let created: Vec<_> = {
        let mut v = Vec::new();
        for id in &seen {
            v.push(
                q.get(&alice, id)
                    .await
                    .expect("get")
                    .expect("job")
                    .created_at,
            );
        }
        v
    };
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let filter = JobFilter {
        kind: Some("odd".into()),
        states: vec![JobState::Queued],
    };
    let (odd, next) = q.list(&alice, &filter, 100, None).await.expect("list");
    assert_eq!(odd.len(), 12);
    assert!(next.is_none());
    assert!(odd.iter().all(|j| j.spec.kind == "odd"));
    let done = JobFilter {
        states: vec![JobState::Succeeded],
        kind: None,
    };
    assert!(
        q.list(&alice, &done, 10, None)
            .await
            .expect("list")
            .0
            .is_empty()
    );
}

async fn listing_pages_through_a_crowd_in_one_millisecond(b: Backend) {
    let q = &*b.queue;
    let alice = user("alice");
    // Two rare jobs first, then far more than one read's worth of others,
    // all created in the same millisecond.
    let mut rare = Vec::new();
    for _ in 0..2 {
        rare.push(
            q.enqueue(spec("rare", "alice"), t0())
                .await
                .expect("enqueue")
                .id,
        );
    }
    for _ in 0..150 {
        q.enqueue(spec("common", "alice"), t0())
            .await
            .expect("enqueue");
    }
    let filter = JobFilter {
        kind: Some("rare".into()),
        states: Vec::new(),
    };
    let (found, next) = q.list(&alice, &filter, 10, None).await.expect("list");
    let mut found: Vec<_> = found.into_iter().map(|j| j.id).collect();
    found.sort();
    rare.sort();
    assert_eq!(found, rare, "the filter reaches past the crowd");
    assert!(next.is_none());
    for size in [7, 70] {
        let mut seen = HashSet::new();
        let mut after = None;
        loop {
            let (page, next) = q
                .list(&alice, &JobFilter::default(), size, after.as_ref())
                .await
                .expect("list");
            assert!(page.len() <= size);
            for j in page {
                assert!(seen.insert(j.id), "listed once");
            }
            match next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 152, "pages of {size} list every job");
    }
}

async fn finished_jobs_are_forgotten_after_retention(b: Backend) {
    let q = &*b.queue;
    let alice = user("alice");
    let mut s = spec("mail", "alice");
    s.idempotency_key = Some("once".into());
    let id = q.enqueue(s.clone(), t0()).await.expect("enqueue").id;
    let lease = take(q, t0()).await.expect("due");
    q.settle(&lease, Settle::Succeeded, None, t0())
        .await
        .expect("settle");
    q.recover(t0() + Span::days(1), t0())
        .await
        .expect("recover");
    assert!(
        q.get(&alice, &id).await.expect("get").is_some(),
        "kept within retention"
    );
    q.recover(t0() + Span::days(8), t0() + Span::days(1))
        .await
        .expect("recover");
    assert!(
        q.get(&alice, &id).await.expect("get").is_none(),
        "forgotten"
    );
    assert_eq!(
        q.stats(&alice)
            .await
            .expect("stats")
            .count(JobState::Succeeded),
        0
    );
    assert!(
        q.list(&alice, &JobFilter::default(), 10, None)
            .await
            .expect("list")
            .0
            .is_empty()
    );
    // Its idempotency key is free again.
    assert!(
        q.enqueue(s, t0() + Span::days(8))
            .await
            .expect("enqueue")
            .created
    );
}

async fn bad_specs_name_the_field(b: Backend) {
    let q = &*b.queue;
    let cases = [
        ("Bad Kind", None, 3, "kind"),
        ("ok", Some(String::new()), 3, "idempotency_key"),
        ("ok", None, 0, "retry.max_attempts"),
    ];
    for (kind, key, attempts, field) in cases {
        let mut s = spec(kind, "alice");
        s.idempotency_key = key;
        s.retry.max_attempts = attempts;
        match q.enqueue(s, t0()).await {
            Err(QueueError::Invalid(e)) => {
                assert!(e.1.iter().any(|v| v.field == field), "{field}: {e}")
            }
            other => panic!("{field}: expected an invalid spec, got {other:?}"),
        }
    }
    let mut big = spec("ok", "alice");
    big.payload = serde_json::json!({"blob": "x".repeat(300 * 1024)});
    assert!(matches!(
        q.enqueue(big, t0()).await,
        Err(QueueError::Invalid(_))
    ));
    assert!(take(q, t0()).await.is_none(), "nothing was queued");
}

async fn payloads_round_trip_unchanged(b: Backend) {
    let q = &*b.queue;
    let mut s = spec("echo", "alice");
    s.payload = serde_json::json!({
        "empty_list": [], "empty_map": {}, "big": 9_007_199_254_740_993u64,
        "text": "naïve ✓ \"quoted\"", "nested": [[1, 2], {"a": null}]
    });
    let id = q.enqueue(s.clone(), t0()).await.expect("enqueue").id;
    let lease = take(q, t0()).await.expect("due");
    assert_eq!(lease.job.spec, s);
    let job = q.get(&user("alice"), &id).await.expect("get").expect("job");
    assert_eq!(job.spec.payload, s.payload);
}

async fn skipped_kinds_are_left_for_later(b: Backend) {
    let q = &*b.queue;
    q.enqueue(spec("capped", "alice"), t0())
        .await
        .expect("enqueue");
    q.enqueue(spec("free", "alice"), t0() + ms(1))
        .await
        .expect("enqueue");
    let lease = q
        .reserve(
            "w1",
            t0() + ms(2),
            t0() + Span::seconds(30),
            &["capped".to_owned()],
        )
        .await
        .expect("reserve")
        .expect("the other kind");
    assert_eq!(lease.job.spec.kind, "free");
    assert!(
        q.reserve(
            "w1",
            t0() + ms(2),
            t0() + Span::seconds(30),
            &["capped".to_owned()]
        )
        .await
        .expect("reserve")
        .is_none()
    );
    assert_eq!(
        take(q, t0() + ms(2))
            .await
            .expect("now it is taken")
            .job
            .spec
            .kind,
        "capped"
    );
}
