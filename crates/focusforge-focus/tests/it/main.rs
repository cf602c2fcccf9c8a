//! The focus domain on a real embedded store with a manual clock: the
//! server's time, pauses and their budget, one open session per user,
//! idempotent commands, wrong states, stats in the user's days.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use focusforge_core::{Error, ManualClock, UserId};
use focusforge_focus::domain::{Command, Kind, Prefs, State};
use focusforge_focus::{Focus, Settings};
use focusforge_gamification::streak::Calendar;
use focusforge_store::SqliteStore;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

fn focus(dir: &tempfile::TempDir) -> (Focus, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t("2026-03-02T09:00:00Z")));
    let store = SqliteStore::open(&dir.path().join("s.db"), clock.clone()).expect("store");
    let focus = Focus::new(Arc::new(store), clock.clone(), Settings::default());
    (focus, clock)
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user")
}

#[tokio::test]
async fn a_session_completes_by_itself_at_its_end_without_its_pause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (focus, clock) = focus(&dir);
    let alice = user("alice");
    let prefs = Prefs::default();
    let s = focus
        .start(&alice, Kind::Focus, None, 0, "", &prefs)
        .await
        .expect("start")
        .session;
    assert_eq!(s.body.planned_minutes, 25);
    clock.advance(Duration::minutes(10));
    focus
        .command(&alice, &s.id, Command::Pause, "")
        .await
        .expect("pause");
    clock.advance(Duration::minutes(4));
    focus
        .command(&alice, &s.id, Command::Resume, "")
        .await
        .expect("resume");
    // 28 minutes in, four of them paused: it still runs until 29.
    clock.advance(Duration::minutes(14));
    let o = focus.get(&alice, &s.id).await.expect("tick");
    assert_eq!(o.session.body.state, State::Running);
    assert!(!o.completed);
    clock.advance(Duration::minutes(2));
    let o = focus.get(&alice, &s.id).await.expect("tick");
    assert!(o.completed);
    assert!(o.session.body.by_timer);
    assert_eq!(o.session.ended_at(), Some(t("2026-03-02T09:29:00Z")));
    assert_eq!(o.session.focused_minutes(), 25);
    // Completed once: a second tick changes nothing.
    assert!(!focus.get(&alice, &s.id).await.expect("tick").completed);
}

#[tokio::test]
async fn one_open_session_per_user_and_commands_in_the_wrong_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (focus, _clock) = focus(&dir);
    let alice = user("alice");
    let prefs = Prefs::default();
    let s = focus
        .start(&alice, Kind::Focus, None, 30, "start-1", &prefs)
        .await
        .expect("start")
        .session;
    // The same request id: the same session.
    let again = focus
        .start(&alice, Kind::Focus, None, 30, "start-1", &prefs)
        .await
        .expect("retry");
    assert_eq!(again.session.id, s.id);
    let e = focus
        .start(&alice, Kind::Focus, None, 30, "start-2", &prefs)
        .await
        .expect_err("second");
    assert!(
        matches!(&e, Error::FailedPrecondition(m) if m.contains("running")),
        "{e:?}"
    );
    // Bob is not blocked, and cannot see Alice's session.
    focus
        .start(&user("bob"), Kind::Focus, None, 30, "", &prefs)
        .await
        .expect("bob");
    let e = focus.get(&user("bob"), &s.id).await.expect_err("isolation");
    assert!(matches!(e, Error::NotFound(_)));
    let e = focus
        .command(&alice, &s.id, Command::Resume, "")
        .await
        .expect_err("resume");
    assert!(
        matches!(&e, Error::FailedPrecondition(m) if m.contains("running")),
        "{e:?}"
    );
    focus
        .command(&alice, &s.id, Command::Pause, "p1")
        .await
        .expect("pause");
    // A retried pause is answered, not refused.
    focus
        .command(&alice, &s.id, Command::Pause, "p1")
        .await
        .expect("retried pause");
    focus
        .command(&alice, &s.id, Command::Abandon, "")
        .await
        .expect("abandon");
    let e = focus
        .command(&alice, &s.id, Command::Complete, "")
        .await
        .expect_err("done");
    assert!(
        matches!(&e, Error::FailedPrecondition(m) if m.contains("abandoned")),
        "{e:?}"
    );
    // Abandoned: a new one may start.
    focus
        .start(&alice, Kind::ShortBreak, None, 0, "", &prefs)
        .await
        .expect("break");
    let e = focus
        .start(&alice, Kind::Focus, None, 241, "", &prefs)
        .await
        .expect_err("too long");
    assert!(matches!(e, Error::InvalidArgument(v) if v[0].field == "planned_minutes"));
}

#[tokio::test]
async fn a_pause_past_its_budget_ends_by_itself_and_a_long_break_follows_every_fourth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (focus, clock) = focus(&dir);
    let alice = user("alice");
    let prefs = Prefs {
        long_break_every: 2,
        calendar: Calendar::default(),
        ..Prefs::default()
    };
    let s = focus
        .start(&alice, Kind::Focus, None, 25, "", &prefs)
        .await
        .expect("start")
        .session;
    focus
        .command(&alice, &s.id, Command::Pause, "")
        .await
        .expect("pause");
    clock.advance(Duration::minutes(60));
    // Paused for 10 (the budget), then ran on for 25: completed at 35.
    let o = focus.get(&alice, &s.id).await.expect("tick");
    assert!(o.completed);
    assert_eq!(o.session.ended_at(), Some(t("2026-03-02T09:35:00Z")));
    let next = focus
        .next(&alice, Some(Kind::Focus), &prefs)
        .await
        .expect("next");
    assert_eq!(
        (next.kind, next.focus_sessions_today),
        (Kind::ShortBreak, 1)
    );
    let s = focus
        .start(&alice, Kind::Focus, None, 25, "", &prefs)
        .await
        .expect("start")
        .session;
    focus
        .command(&alice, &s.id, Command::Complete, "")
        .await
        .expect("complete");
    let next = focus
        .next(&alice, Some(Kind::Focus), &prefs)
        .await
        .expect("next");
    assert_eq!((next.kind, next.focus_sessions_today), (Kind::LongBreak, 2));
    let stats = focus
        .stats(
            &alice,
            t("2026-03-01T00:00:00Z"),
            t("2026-03-03T00:00:00Z"),
            &Calendar::default(),
        )
        .await
        .expect("stats");
    assert_eq!(stats.focus_completed, 2);
    assert_eq!(stats.focus_minutes, 25);
}
