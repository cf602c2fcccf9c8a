//! The gamification domain on a real embedded store with a manual clock:
//! awards counted once, redemptions that never overspend under real
//! concurrency, a crash between the wallet and the ledger, streaks across
//! a time-zone day boundary and a daylight-saving change, freezes.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use focusforge_core::{Error, ManualClock, UserId};
use focusforge_gamification::domain::{
    CompletedSession, CompletedTask, Priority, Reason, UserDays,
};
use focusforge_gamification::streak::Calendar;
use focusforge_gamification::{Game, Settings};
use focusforge_store::{DocumentStore, SqliteStore};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

fn game(dir: &tempfile::TempDir, start: &str) -> (Game, Arc<ManualClock>, Arc<SqliteStore>) {
    let clock = Arc::new(ManualClock::new(t(start)));
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("s.db"), clock.clone()).expect("store"));
    let game = Game::new(store.clone(), clock.clone(), Settings::default());
    (game, clock, store)
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user")
}

fn task(id: &str, at: DateTime<Utc>) -> CompletedTask {
    CompletedTask {
        id: id.into(),
        title: format!("task {id}"),
        priority: Priority::Medium,
        estimated_minutes: 0,
        due_at: None,
        completed_at: at,
    }
}

fn session(id: &str, minutes: i64, at: DateTime<Utc>) -> CompletedSession {
    CompletedSession {
        id: id.into(),
        minutes,
        ended_at: at,
    }
}

#[tokio::test]
async fn a_cause_is_awarded_once_however_often_it_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (game, _, _) = game(&dir, "2026-03-02T10:00:00Z");
    let alice = user("alice");
    let days = UserDays::default();
    let first = game
        .task_completed(&alice, &task("t1", t("2026-03-02T10:00:00Z")), &days)
        .await
        .expect("award");
    assert!(!first.already);
    let t1 = task("t1", t("2026-03-02T10:00:00Z"));
    let again =
        futures::future::join_all((0..8).map(|_| game.task_completed(&alice, &t1, &days))).await;
    assert!(again.iter().all(|r| r.as_ref().expect("award").already));
    let p = game.progress(&alice, &days).await.expect("progress");
    let ledger = game.ledger(&alice, 100, "", false).await.expect("ledger");
    let task_entries = ledger
        .entries
        .iter()
        .filter(|e| e.reason == Reason::TaskCompleted)
        .count();
    assert_eq!(task_entries, 1);
    assert_eq!(p.tasks_completed, 1);
    // The balance is the ledger's sum.
    assert_eq!(
        p.balance,
        ledger.entries.iter().map(|e| e.points).sum::<i64>()
    );
    // Bob's wallet is his own.
    let bob = game.progress(&user("bob"), &days).await.expect("bob");
    assert_eq!(bob.balance, 0);
}

#[tokio::test]
async fn fifty_concurrent_redemptions_of_a_balance_for_ten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (game, _, _) = game(&dir, "2026-03-02T10:00:00Z");
    let alice = user("alice");
    let days = UserDays::default();
    game.adjust(&alice, 100, "start", "seed", &days)
        .await
        .expect("seed");
    let reward = game
        .create_reward(&alice, "Coffee".into(), String::new(), 10)
        .await
        .expect("reward");
    let results = futures::future::join_all((0..50).map(|i| {
        let game = game.clone();
        let alice = alice.clone();
        let id = reward.id.clone();
        tokio::spawn(async move { game.redeem(&alice, &id, &format!("r{i}")).await })
    }))
    .await;
    let ok = results
        .iter()
        .filter(|r| r.as_ref().expect("join").is_ok())
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r.as_ref().expect("join"), Err(Error::FailedPrecondition(_))))
        .count();
    assert_eq!((ok, refused), (10, 40));
    let p = game.progress(&alice, &days).await.expect("progress");
    assert_eq!(p.balance, 0);
    let spends = game.ledger(&alice, 100, "", true).await.expect("inventory");
    assert_eq!(spends.entries.len(), 10);
}

#[tokio::test]
async fn a_crash_between_the_wallet_and_the_ledger_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (game, _, store) = game(&dir, "2026-03-02T10:00:00Z");
    let alice = user("alice");
    let days = UserDays::default();
    let awarded = game
        .task_completed(&alice, &task("t1", t("2026-03-02T10:00:00Z")), &days)
        .await
        .expect("award");
    // As if the process died after the wallet write: its entries are not in
    // the ledger.
    for e in &awarded.entries {
        store
            .delete(
                "game_ledger",
                &alice,
                &format!("{:012}", e.seq),
                focusforge_store::Precondition::None,
            )
            .await
            .expect("delete");
    }
    let ledger = game.ledger(&alice, 100, "", false).await.expect("ledger");
    assert_eq!(ledger.entries.len(), awarded.entries.len());
    // A retry after the crash finds the cause applied.
    let again = game
        .task_completed(&alice, &task("t1", t("2026-03-02T10:00:00Z")), &days)
        .await
        .expect("retry");
    assert!(again.already);
    assert_eq!(again.progress.balance, awarded.progress.balance);
}

#[tokio::test]
async fn streaks_follow_local_days_across_a_daylight_saving_change() {
    // New York moves to summer time on 2026-03-08 at 02:00.
    let dir = tempfile::tempdir().expect("tempdir");
    let (game, clock, _) = game(&dir, "2026-03-07T04:30:00Z");
    let alice = user("alice");
    let days = UserDays {
        calendar: Calendar {
            tz: chrono_tz::America::New_York,
            day_start_hour: 0,
            rest_days: Vec::new(),
        },
        daily_goal_minutes: 0,
    };
    // 23:30 on the 6th in New York (04:30 UTC on the 7th) counts for the 6th.
    game.session_completed(&alice, &session("s1", 25, t("2026-03-07T04:30:00Z")), &days)
        .await
        .expect("award");
    // 00:30 on the 7th in New York: a new day.
    clock.set(t("2026-03-07T05:30:00Z"));
    let p = game
        .session_completed(&alice, &session("s2", 25, t("2026-03-07T05:30:00Z")), &days)
        .await
        .expect("award")
        .progress;
    assert_eq!(p.streak.current, 2);
    // 23:30 on the 8th (summer time, UTC-4) is 03:30 UTC on the 9th.
    clock.set(t("2026-03-09T03:30:00Z"));
    let p = game
        .session_completed(&alice, &session("s3", 25, t("2026-03-09T03:30:00Z")), &days)
        .await
        .expect("award")
        .progress;
    assert_eq!(p.streak.current, 3);
    assert_eq!(
        p.streak.last_active.map(|d| d.to_string()).as_deref(),
        Some("2026-03-08")
    );
    // A three-day streak is a milestone.
    let ledger = game.ledger(&alice, 100, "", false).await.expect("ledger");
    assert!(
        ledger
            .entries
            .iter()
            .any(|e| e.reason == Reason::StreakMilestone)
    );
}

#[tokio::test]
async fn a_bought_freeze_covers_a_missed_day_and_a_rest_day_costs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (game, clock, _) = game(&dir, "2026-03-02T09:00:00Z");
    let alice = user("alice");
    // Sundays are rest days; 2026-03-08 is a Sunday.
    let days = UserDays {
        calendar: Calendar {
            rest_days: vec![7],
            ..Calendar::default()
        },
        daily_goal_minutes: 0,
    };
    game.adjust(&alice, 50, "seed", "seed", &days)
        .await
        .expect("seed");
    game.redeem(&alice, "streak-freeze", "buy")
        .await
        .expect("freeze");
    let at = t("2026-03-06T09:00:00Z"); // Friday
    game.task_completed(&alice, &task("fri", at), &days)
        .await
        .expect("fri");
    // Saturday missed (the freeze), Sunday rest, Monday active.
    clock.set(t("2026-03-09T09:00:00Z"));
    let p = game
        .task_completed(&alice, &task("mon", t("2026-03-09T09:00:00Z")), &days)
        .await
        .expect("mon")
        .progress;
    assert_eq!(p.streak.current, 2);
    assert_eq!(p.streak.freezes, 0);
    assert_eq!(
        p.streak
            .frozen
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>(),
        ["2026-03-07"]
    );
    // Without a freeze, two missed working days end it.
    clock.set(t("2026-03-12T09:00:00Z"));
    let p = game.progress(&alice, &days).await.expect("progress");
    assert_eq!(p.streak.current, 0);
    let _ = Duration::days(1);
}

#[tokio::test]
async fn the_daily_goal_pays_once_a_day_and_bad_input_names_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (game, _, _) = game(&dir, "2026-03-02T09:00:00Z");
    let alice = user("alice");
    let days = UserDays {
        daily_goal_minutes: 50,
        ..UserDays::default()
    };
    for (i, m) in [25, 25, 25].into_iter().enumerate() {
        game.session_completed(
            &alice,
            &session(&format!("s{i}"), m, t("2026-03-02T09:00:00Z")),
            &days,
        )
        .await
        .expect("session");
    }
    let ledger = game.ledger(&alice, 100, "", false).await.expect("ledger");
    let goals = ledger
        .entries
        .iter()
        .filter(|e| e.reason == Reason::DailyGoalReached)
        .count();
    assert_eq!(goals, 1);
    let field = |e: Error| match e {
        Error::InvalidArgument(v) => v[0].field.clone(),
        other => panic!("expected invalid argument, got {other:?}"),
    };
    let e = game
        .adjust(&alice, 10_000_000, "x", "k", &days)
        .await
        .expect_err("huge");
    assert_eq!(field(e), "adjustment.points");
    let e = game
        .create_reward(&alice, "x".into(), String::new(), 0)
        .await
        .expect_err("free");
    assert_eq!(field(e), "cost");
    let e = game
        .create_reward(&alice, "x".into(), String::new(), 10_001)
        .await
        .expect_err("cap");
    assert_eq!(field(e), "cost");
    let e = game
        .redeem(&alice, "no-such-item", "")
        .await
        .expect_err("unknown");
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
}
