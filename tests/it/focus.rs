//! The Focus service through the gateway with a manual clock: a session
//! completes by itself at its end without its pause, earns its points once
//! and counts for the streak, achievements and its task; an abandoned one
//! earns nothing; streaks across a time-zone day boundary and a
//! daylight-saving change, with a bought freeze for a missed day; wrong
//! states and bad input; isolation.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use focusforge_core::ManualClock;
use focusforge_proto::focus::v1::{
    AbandonSessionRequest, CompleteSessionRequest, GetCurrentSessionRequest, GetFocusStatsRequest,
    GetSessionRequest, ListSessionsRequest, PauseSessionRequest, ResumeSessionRequest, SessionKind,
    SessionState, StartSessionRequest,
};
use focusforge_proto::gamification::v1::RedeemRequest;
use focusforge_proto::tasks::v1::{CreateTaskRequest, GetTaskRequest};
use focusforge_proto::users::v1::{Preferences, Profile, UpdateProfileRequest};
use prost_types::FieldMask;
use tonic::Code;

use crate::game::progress;
use crate::harness::{Server, authed, config, eventually};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

async fn start(dir: tempfile::TempDir, at: &str) -> (Server, Arc<ManualClock>) {
    let mut cfg = config(&dir);
    crate::game::round_points(&mut cfg);
    let clock = Arc::new(ManualClock::new(t(at)));
    (
        Server::start_with_clock(dir, cfg, clock.clone()).await,
        clock,
    )
}

#[tokio::test]
async fn a_session_completes_by_itself_and_earns_once() {
    let (server, clock) = start(
        tempfile::tempdir().expect("tempdir"),
        "2026-03-02T09:00:00Z",
    )
    .await;
    let mut focus = server.focus().await;
    let task = server
        .tasks()
        .await
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "draft the chapter".into(),
                estimated_pomodoros: 4,
                ..Default::default()
            },
        ))
        .await
        .expect("task")
        .into_inner()
        .task
        .expect("task");
    let s = focus
        .start_session(authed(
            "alice",
            StartSessionRequest {
                kind: SessionKind::Focus as i32,
                task_id: task.id.clone(),
                planned_minutes: 25,
                request_id: "tap-1".into(),
            },
        ))
        .await
        .expect("start")
        .into_inner()
        .session
        .expect("session");
    clock.advance(Duration::minutes(10));
    focus
        .pause_session(authed(
            "alice",
            PauseSessionRequest {
                id: s.id.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .expect("pause");
    let e = focus
        .pause_session(authed(
            "alice",
            PauseSessionRequest {
                id: s.id.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("pause twice");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("paused"), "{}", e.message());
    clock.advance(Duration::minutes(5));
    let resumed = focus
        .resume_session(authed(
            "alice",
            ResumeSessionRequest {
                id: s.id.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .expect("resume")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(
        resumed.planned_end_time.map(|t| t.seconds),
        Some(t("2026-03-02T09:30:00Z").timestamp())
    );
    // Past the planned end: nobody calls; the timer job completes it.
    clock.advance(Duration::minutes(16));
    let server_ref = &server;
    eventually(
        "the timer completed the session and its points arrived",
        || async move { progress(server_ref, "alice").await.focus_sessions_completed == 1 },
    )
    .await;
    let done = focus
        .get_session(authed("alice", GetSessionRequest { id: s.id.clone() }))
        .await
        .expect("get")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(done.state, SessionState::Completed as i32);
    assert!(done.completed_by_timer);
    assert_eq!(
        done.end_time.map(|t| t.seconds),
        Some(t("2026-03-02T09:30:00Z").timestamp())
    );
    assert_eq!(done.focused_seconds, 25 * 60);
    let p = progress(&server, "alice").await;
    // 25 minutes at one point per 5, the streak's first day.
    assert_eq!((p.balance, p.focus_minutes), (5, 25));
    assert_eq!(p.streak.as_ref().map(|s| s.current_days), Some(1));
    // The task counts the session.
    let task = server
        .tasks()
        .await
        .get_task(authed(
            "alice",
            GetTaskRequest {
                id: task.id.clone(),
            },
        ))
        .await
        .expect("task")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(
        (
            task.completed_pomodoros,
            task.focus_minutes,
            task.estimated_pomodoros
        ),
        (1, 25, 4)
    );

    // The next proposal is a short break; an abandoned focus session earns nothing.
    let current = focus
        .get_current_session(authed("alice", GetCurrentSessionRequest {}))
        .await
        .expect("current")
        .into_inner();
    assert!(current.session.is_none());
    assert_eq!(
        current.next.map(|n| n.kind),
        Some(SessionKind::ShortBreak as i32)
    );
    let s2 = focus
        .start_session(authed(
            "alice",
            StartSessionRequest {
                planned_minutes: 25,
                ..Default::default()
            },
        ))
        .await
        .expect("start")
        .into_inner()
        .session
        .expect("session");
    clock.advance(Duration::minutes(20));
    focus
        .abandon_session(authed(
            "alice",
            AbandonSessionRequest {
                id: s2.id.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .expect("abandon");
    clock.advance(Duration::minutes(30));
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let p = progress(&server, "alice").await;
    assert_eq!((p.balance, p.focus_sessions_completed), (5, 1));
    let stats = focus
        .get_focus_stats(authed(
            "alice",
            GetFocusStatsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: t("2026-03-02T00:00:00Z").timestamp(),
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: t("2026-03-03T00:00:00Z").timestamp(),
                    nanos: 0,
                }),
            },
        ))
        .await
        .expect("stats")
        .into_inner()
        .stats
        .expect("stats");
    assert_eq!(
        (
            stats.focus_sessions_completed,
            stats.focus_sessions_abandoned,
            stats.focus_minutes
        ),
        (1, 1, 25)
    );
    assert_eq!(
        stats
            .tasks
            .first()
            .map(|t| (t.estimated_pomodoros, t.completed_sessions)),
        Some((4, 1))
    );

    // Bob sees none of it.
    let e = focus
        .get_session(authed("bob", GetSessionRequest { id: s.id.clone() }))
        .await
        .expect_err("isolation");
    assert_eq!(e.code(), Code::NotFound);
    for id in [&s.id, &s2.id] {
        let e = focus
            .complete_session(authed(
                "bob",
                CompleteSessionRequest {
                    id: id.clone(),
                    request_id: String::new(),
                },
            ))
            .await
            .expect_err("isolation");
        assert_eq!(e.code(), Code::NotFound);
    }
    let listed = focus
        .list_sessions(authed("bob", ListSessionsRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .sessions;
    assert!(listed.is_empty());
    // Bad input.
    let e = focus
        .start_session(authed(
            "alice",
            StartSessionRequest {
                planned_minutes: 241,
                ..Default::default()
            },
        ))
        .await
        .expect_err("too long");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("planned_minutes"), "{}", e.message());
    let e = focus
        .start_session(authed(
            "alice",
            StartSessionRequest {
                task_id: "nope".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("unknown task");
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn streaks_cross_a_daylight_saving_change_and_a_freeze_covers_a_missed_day() {
    // New York moves to summer time on Sunday 2026-03-08 at 02:00.
    let (server, clock) = start(
        tempfile::tempdir().expect("tempdir"),
        "2026-03-05T14:00:00Z",
    )
    .await;
    server
        .users()
        .await
        .update_profile(authed(
            "dana",
            UpdateProfileRequest {
                profile: Some(Profile {
                    preferences: Some(Preferences {
                        timezone: "America/New_York".into(),
                        day_start_hour: 4,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec![
                        "preferences.timezone".into(),
                        "preferences.day_start_hour".into(),
                    ],
                }),
            },
        ))
        .await
        .expect("profile");
    let mut focus = server.focus().await;
    let mut session = async |minutes: i32| {
        let s = focus
            .start_session(authed(
                "dana",
                StartSessionRequest {
                    planned_minutes: minutes,
                    ..Default::default()
                },
            ))
            .await
            .expect("start")
            .into_inner()
            .session
            .expect("session");
        clock.advance(Duration::minutes(i64::from(minutes)));
        // At its end: the first read finds it completed by the clock.
        let done = focus
            .get_session(authed("dana", GetSessionRequest { id: s.id }))
            .await
            .expect("get")
            .into_inner()
            .session
            .expect("session");
        assert_eq!(done.state, SessionState::Completed as i32);
    };
    // Thursday the 5th, 09:00 in New York: 100 points' worth of focus (500 minutes).
    for _ in 0..3 {
        session(200).await;
    }
    let mut moods = server.mood().await;
    let log = |score: i32| {
        authed(
            "dana",
            focusforge_proto::mood::v1::LogMoodRequest {
                score,
                ..Default::default()
            },
        )
    };
    moods.log_mood(log(5)).await.expect("mood");
    // 02:30 on Friday the 6th in New York is before the day start (04:00):
    // it still counts for Thursday.
    clock.set(t("2026-03-06T07:30:00Z"));
    session(25).await;
    assert_eq!(
        progress(&server, "dana")
            .await
            .streak
            .map(|s| s.current_days),
        Some(1)
    );
    // Friday 10:00: the second day.
    clock.set(t("2026-03-06T15:00:00Z"));
    session(25).await;
    moods.log_mood(log(3)).await.expect("mood");
    let p = progress(&server, "dana").await;
    assert_eq!(p.streak.as_ref().map(|s| s.current_days), Some(2));
    // A freeze bought with points.
    server
        .game()
        .await
        .redeem(authed(
            "dana",
            RedeemRequest {
                item_id: "streak-freeze".into(),
                request_id: "buy".into(),
            },
        ))
        .await
        .expect("buy a freeze");
    // Saturday missed. Sunday 23:30 summer time (03:30 UTC on Monday) is Sunday.
    clock.set(t("2026-03-09T03:30:00Z"));
    session(25).await;
    let p = progress(&server, "dana").await;
    let streak = p.streak.expect("streak");
    assert_eq!(streak.current_days, 3, "{streak:?}");
    assert_eq!(streak.last_active_day, "2026-03-08");
    assert_eq!(streak.frozen_days, vec!["2026-03-07".to_owned()]);
    assert_eq!(streak.freezes_available, 0);
    // Mood against the day's focus minutes (600, 50 and 25 on the days of
    // moods 5, 3 and 1), read by the Mood service from the Focus service.
    moods.log_mood(log(1)).await.expect("mood");
    let patterns = moods
        .get_mood_patterns(authed(
            "dana",
            focusforge_proto::mood::v1::GetMoodPatternsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: t("2026-03-01T00:00:00Z").timestamp(),
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: t("2026-03-10T00:00:00Z").timestamp(),
                    nanos: 0,
                }),
            },
        ))
        .await
        .expect("patterns")
        .into_inner()
        .patterns
        .expect("patterns");
    let focus = patterns.with_focus_minutes.expect("focus correlation");
    assert_eq!(focus.days, 3, "{focus:?}");
    assert!(focus.r > 0.5, "{focus:?}");
    server.stop().await;
}
