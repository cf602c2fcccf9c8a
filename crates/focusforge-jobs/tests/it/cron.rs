//! Recurring jobs under a test clock.

use std::sync::Arc;

use chrono::{Duration as Span, TimeZone, Utc};
use focusforge_core::{Error, ManualClock};
use focusforge_jobs::{JobState, Jobs, Overlap, Schedule, Scheduler, Settle};

use crate::support::{embedded, spec, user};

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("time")
}

#[tokio::test]
async fn schedules_fire_in_their_time_zone_across_dst() {
    let b = embedded();
    let clock = ManualClock::new(at(2027, 3, 12, 12, 0));
    let jobs = Jobs::new(b.queue.clone(), Arc::new(clock.clone()));
    let daily = Schedule::new(
        "standup",
        "0 9 * * *",
        "America/New_York",
        spec("notify", "alice"),
        Overlap::QueueOne,
    )
    .expect("schedule");
    let mut scheduler = Scheduler::new(jobs.clone(), vec![daily]);
    assert!(
        scheduler.tick().await.expect("tick").is_empty(),
        "nothing due yet"
    );

    // 09:00 in New York is 14:00 UTC before the switch to daylight time
    // (14 March 2027) and 13:00 UTC after it.
    let mut fired = Vec::new();
    for day in 13..=15 {
        clock.set(at(2027, 3, day, 23, 0));
        for f in scheduler.tick().await.expect("tick") {
            let id = f.job.clone().expect("enqueued");
            let job = jobs
                .get(&user("alice"), &id)
                .await
                .expect("get")
                .expect("job");
            assert_eq!(job.run_at, f.at);
            // Finish it so the overlap policy does not interfere.
            let lease = b
                .queue
                .reserve("w", f.at, f.at + Span::seconds(30), &[])
                .await
                .expect("reserve")
                .expect("due");
            b.queue
                .settle(&lease, Settle::Succeeded, None, f.at)
                .await
                .expect("settle");
            fired.push(f.at);
        }
    }
    assert_eq!(
        fired,
        [
            at(2027, 3, 13, 14, 0),
            at(2027, 3, 14, 13, 0),
            at(2027, 3, 15, 13, 0)
        ]
    );
}

#[tokio::test]
async fn missed_occurrences_collapse_into_one_firing() {
    let b = embedded();
    let clock = ManualClock::new(at(2026, 11, 26, 10, 0));
    let jobs = Jobs::new(b.queue.clone(), Arc::new(clock.clone()));
    let every_5 = Schedule::new(
        "sweep",
        "*/5 * * * *",
        "UTC",
        spec("sweep", "system"),
        Overlap::Skip,
    )
    .expect("schedule");
    let mut scheduler = Scheduler::new(jobs, vec![every_5]);
    clock.set(at(2026, 11, 26, 10, 32));
    let fired = scheduler.tick().await.expect("tick");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].at, at(2026, 11, 26, 10, 30));
    assert!(scheduler.tick().await.expect("tick").is_empty());
}

#[tokio::test]
async fn overlap_skip_and_queue_one() {
    let b = embedded();
    let clock = ManualClock::new(at(2026, 11, 26, 10, 0));
    let jobs = Jobs::new(b.queue.clone(), Arc::new(clock.clone()));
    let skip = Schedule::new(
        "skipper",
        "* * * * *",
        "UTC",
        spec("slow-skip", "system"),
        Overlap::Skip,
    )
    .expect("schedule");
    let queue_one = Schedule::new(
        "queuer",
        "* * * * *",
        "UTC",
        spec("slow-queue", "system"),
        Overlap::QueueOne,
    )
    .expect("schedule");
    let mut scheduler = Scheduler::new(jobs.clone(), vec![skip, queue_one]);
    let minute = |m: u32| at(2026, 11, 26, 10, m);

    // 10:01: both fire; a worker takes both jobs and keeps running them.
    clock.set(minute(1));
    let fired = scheduler.tick().await.expect("tick");
    assert!(fired.iter().all(|f| f.job.is_some()), "{fired:?}");
    let mut leases = Vec::new();
    while let Some(l) = b
        .queue
        .reserve("w", minute(1), minute(30), &[])
        .await
        .expect("reserve")
    {
        leases.push(l);
    }
    assert_eq!(leases.len(), 2);

    // 10:02: the skipper skips; the queuer queues one behind the running job.
    clock.set(minute(2));
    let fired = scheduler.tick().await.expect("tick");
    let by = |name: &str| {
        fired
            .iter()
            .find(|f| f.schedule == name)
            .expect("fired")
            .clone()
    };
    assert_eq!(by("skipper").job, None);
    let queued = by("queuer").job.expect("queued one");

    // 10:03: the queued one has not started: both skip.
    clock.set(minute(3));
    let fired = scheduler.tick().await.expect("tick");
    assert!(fired.iter().all(|f| f.job.is_none()), "{fired:?}");

    // The first runs finish; 10:04 fires the skipper again, the queuer
    // still has its queued run waiting.
    for l in &leases {
        b.queue
            .settle(l, Settle::Succeeded, None, minute(3))
            .await
            .expect("settle");
    }
    clock.set(minute(4));
    let fired = scheduler.tick().await.expect("tick");
    assert!(by_name(&fired, "skipper").job.is_some());
    assert!(by_name(&fired, "queuer").job.is_none());
    let job = jobs
        .get(&user("system"), &queued)
        .await
        .expect("get")
        .expect("job");
    assert_eq!(job.state, JobState::Queued);
}

fn by_name(fired: &[focusforge_jobs::Firing], name: &str) -> focusforge_jobs::Firing {
    fired
        .iter()
        .find(|f| f.schedule == name)
        .expect("fired")
        .clone()
}

#[tokio::test]
async fn two_schedulers_fire_each_occurrence_once() {
    let b = embedded();
    let clock = ManualClock::new(at(2026, 11, 26, 10, 0));
    let jobs = Jobs::new(b.queue.clone(), Arc::new(clock.clone()));
    let make = || {
        Schedule::new(
            "hourly",
            "0 * * * *",
            "Europe/Berlin",
            spec("report", "system"),
            Overlap::QueueOne,
        )
        .expect("schedule")
    };
    let mut a = Scheduler::new(jobs.clone(), vec![make()]);
    let mut b2 = Scheduler::new(jobs.clone(), vec![make()]);
    clock.set(at(2026, 11, 26, 11, 0));
    let x = a.tick().await.expect("tick");
    let y = b2.tick().await.expect("tick");
    assert_eq!(x[0].job, y[0].job, "the same job");
    let stats = jobs.stats(&user("system")).await.expect("stats");
    assert_eq!(stats.count(JobState::Queued), 1);
}

#[test]
fn bad_schedules_name_the_field() {
    let cases = [
        ("Bad Name", "* * * * *", "UTC", "name"),
        ("ok", "61 * * * *", "UTC", "expression"),
        ("ok", "every day", "UTC", "expression"),
        ("ok", "* * * * *", "Mars/Olympus", "timezone"),
    ];
    for (name, expr, tz, field) in cases {
        match Schedule::new(name, expr, tz, spec("x", "system"), Overlap::Skip) {
            Err(Error::InvalidArgument(v)) => {
                assert!(v.iter().any(|v| v.field == field), "{field}: {v:?}")
            }
            other => panic!("{field}: expected invalid, got {other:?}"),
        }
    }
}
