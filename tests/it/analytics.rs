//! The Analytics service over seeded work: three and a half weeks of a
//! user in New York across the switch to daylight saving time (tasks with
//! estimates, focus sessions completed and abandoned, moods, the points
//! they earned), every figure checked against the same figures computed
//! here from what the test did; a report kept up to date as work is added,
//! deletions dropped at the next full read; bad input; isolation; both
//! store backends.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use focusforge_core::ManualClock;
use focusforge_proto::analytics::v1::{Bucket, GetReportRequest, Report};
use focusforge_proto::focus::v1::{
    AbandonSessionRequest, CompleteSessionRequest, SessionKind, StartSessionRequest,
};
use focusforge_proto::gamification::v1::ListLedgerEntriesRequest;
use focusforge_proto::mood::v1::{DeleteMoodRequest, LogMoodRequest};
use focusforge_proto::tasks::v1::{
    CompleteTaskRequest, CreateTaskRequest, GetTaskRequest, StartTaskRequest,
};
use focusforge_proto::users::v1::{Preferences, Profile, UpdateProfileRequest};
use prost_types::{FieldMask, Timestamp};
use tonic::Code;

use crate::harness::{Server, authed, config, eventually};

const ZONE: &str = "America/New_York";
const DAYS: u32 = 24;

fn ts(t: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn from_ts(t: Option<Timestamp>) -> DateTime<Utc> {
    let t = t.expect("timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("time")
}

fn tz() -> Tz {
    ZONE.parse().expect("zone")
}

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 1).expect("date")
}

/// A local wall-clock time of day `i` of the seeded range, as an instant.
fn at(i: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    let day = first_day() + Duration::days(i64::from(i));
    tz().from_local_datetime(&day.and_hms_opt(hour, minute, 0).expect("time"))
        .single()
        .expect("an unambiguous local time")
        .with_timezone(&Utc)
}

/// What the test did, by local day, to compute the expected figures from.
#[derive(Default, Debug, Clone)]
struct Day {
    created: u32,
    created_completed: u32,
    completed: u32,
    ratios: Vec<f64>,
    sessions_completed: u32,
    minutes_completed: f64,
    sessions_abandoned: u32,
    minutes_abandoned: f64,
    moods: Vec<i32>,
}

#[derive(Default)]
struct Model {
    days: BTreeMap<NaiveDate, Day>,
    /// Completed focus sessions by local start hour: (count, minutes).
    hours: BTreeMap<u32, (u32, f64)>,
    abandoned_hours: BTreeMap<u32, u32>,
    moods: Vec<String>,
}

fn local_day(t: DateTime<Utc>) -> NaiveDate {
    tz().from_utc_datetime(&t.naive_utc()).date_naive()
}

struct Seeder<'a> {
    server: &'a Server,
    clock: &'a ManualClock,
    user: &'a str,
    model: Model,
}

impl Seeder<'_> {
    fn day(&mut self, t: DateTime<Utc>) -> &mut Day {
        self.model.days.entry(local_day(t)).or_default()
    }

    async fn task(&mut self, title: &str, estimate: i32) -> String {
        let now = focusforge_core::Clock::now(self.clock);
        self.day(now).created += 1;
        self.server
            .tasks()
            .await
            .create_task(authed(
                self.user,
                CreateTaskRequest {
                    title: title.into(),
                    estimated_minutes: estimate,
                    ..Default::default()
                },
            ))
            .await
            .expect("create task")
            .into_inner()
            .task
            .expect("task")
            .id
    }

    async fn start_task(&mut self, id: &str) {
        self.server
            .tasks()
            .await
            .start_task(authed(self.user, StartTaskRequest { id: id.into() }))
            .await
            .expect("start task");
    }

    /// Completes a task created on `created_on`; `ratio` is the actual
    /// over estimated minutes the test expects for it.
    async fn complete(&mut self, id: &str, created_on: DateTime<Utc>, ratio: f64) {
        self.server
            .tasks()
            .await
            .complete_task(authed(
                self.user,
                CompleteTaskRequest {
                    id: id.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("complete task");
        let now = focusforge_core::Clock::now(self.clock);
        self.day(created_on).created_completed += 1;
        let d = self.day(now);
        d.completed += 1;
        d.ratios.push(ratio);
    }

    /// A focus session of `minutes`, completed or abandoned at its end.
    async fn session(&mut self, task: &str, minutes: i64, complete: bool) {
        let start = focusforge_core::Clock::now(self.clock);
        let mut focus = self.server.focus().await;
        let id = focus
            .start_session(authed(
                self.user,
                StartSessionRequest {
                    kind: SessionKind::Focus as i32,
                    task_id: task.into(),
                    planned_minutes: 50,
                    ..Default::default()
                },
            ))
            .await
            .expect("start session")
            .into_inner()
            .session
            .expect("session")
            .id;
        self.clock.advance(Duration::minutes(minutes));
        let hour = tz().from_utc_datetime(&start.naive_utc()).hour();
        if complete {
            focus
                .complete_session(authed(
                    self.user,
                    CompleteSessionRequest {
                        id,
                        ..Default::default()
                    },
                ))
                .await
                .expect("complete session");
            let d = self.day(start);
            d.sessions_completed += 1;
            d.minutes_completed += minutes as f64;
            let h = self.model.hours.entry(hour).or_default();
            h.0 += 1;
            h.1 += minutes as f64;
        } else {
            focus
                .abandon_session(authed(
                    self.user,
                    AbandonSessionRequest {
                        id,
                        ..Default::default()
                    },
                ))
                .await
                .expect("abandon session");
            let d = self.day(start);
            d.sessions_abandoned += 1;
            d.minutes_abandoned += minutes as f64;
            *self.model.abandoned_hours.entry(hour).or_default() += 1;
        }
    }

    async fn mood(&mut self, score: i32) {
        let id = self
            .server
            .mood()
            .await
            .log_mood(authed(
                self.user,
                LogMoodRequest {
                    score,
                    ..Default::default()
                },
            ))
            .await
            .expect("log mood")
            .into_inner()
            .entry
            .expect("entry")
            .id;
        self.model.moods.push(id);
        let now = focusforge_core::Clock::now(self.clock);
        self.day(now).moods.push(score);
    }
}

async fn set_zone(server: &Server, user: &str) {
    server
        .users()
        .await
        .update_profile(authed(
            user,
            UpdateProfileRequest {
                profile: Some(Profile {
                    preferences: Some(Preferences {
                        timezone: ZONE.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["preferences.timezone".into()],
                }),
            },
        ))
        .await
        .expect("profile");
}

/// Each day: a 30-minute task worked in one 25-minute session from 09:00;
/// on even days a 60-minute task started at 11:00 and done 90 minutes
/// later without a session; a second session at 13:00 on days whose mood
/// is good; a session abandoned after 10 minutes at 15:00 every third day;
/// a task left open on odd days; a mood at 21:30 (the next day in UTC) cycling 2, 3, 4, 5.
async fn seed(server: &Server, clock: &ManualClock, user: &str) -> Model {
    set_zone(server, user).await;
    let mut s = Seeder {
        server,
        clock,
        user,
        model: Model::default(),
    };
    for i in 0..DAYS {
        let score = 2 + (i % 4) as i32;
        clock.set(at(i, 9, 0));
        let a = s.task(&format!("write section {i}"), 30).await;
        s.start_task(&a).await;
        s.session(&a, 25, true).await;
        let id = a.clone();
        eventually("the session's minutes on its task", || async {
            server
                .tasks()
                .await
                .get_task(authed(user, GetTaskRequest { id: id.clone() }))
                .await
                .map(|t| t.into_inner().task.expect("task").focus_minutes == 25)
                .unwrap_or(false)
        })
        .await;
        s.complete(&a, at(i, 9, 0), 25.0 / 30.0).await;
        if i % 2 == 0 {
            clock.set(at(i, 11, 0));
            let b = s.task(&format!("review {i}"), 60).await;
            s.start_task(&b).await;
            clock.advance(Duration::minutes(90));
            s.complete(&b, at(i, 11, 0), 1.5).await;
        }
        if score >= 4 {
            clock.set(at(i, 13, 0));
            s.session("", 25, true).await;
        }
        if i % 3 == 0 {
            clock.set(at(i, 15, 0));
            s.session("", 10, false).await;
        }
        if i % 2 == 1 {
            clock.set(at(i, 17, 0));
            s.task(&format!("someday {i}"), 45).await;
        }
        clock.set(at(i, 21, 30));
        s.mood(score).await;
    }
    s.model
}

async fn report(
    server: &Server,
    user: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
) -> Report {
    server
        .analytics()
        .await
        .get_report(authed(
            user,
            GetReportRequest {
                start_time: ts(from),
                end_time: ts(to),
                bucket: bucket as i32,
            },
        ))
        .await
        .expect("report")
        .into_inner()
        .report
        .expect("report")
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    (q(0.25), q(0.5), q(0.75))
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-6, "{what}: {a} against {b}");
}

/// The figures of a set of days, as the test computes them.
fn expect_figures(days: &[&Day], got: &focusforge_proto::analytics::v1::Figures, what: &str) {
    let sum = |f: fn(&Day) -> u32| days.iter().map(|d| f(d)).sum::<u32>();
    assert_eq!(
        got.tasks_created as u32,
        sum(|d| d.created),
        "{what}: created"
    );
    assert_eq!(
        got.tasks_completed as u32,
        sum(|d| d.completed),
        "{what}: completed"
    );
    let rate = got.completion_rate.expect("rate");
    assert_eq!(rate.n as u32, sum(|d| d.created), "{what}: rate basis");
    if rate.n > 0 {
        close(
            rate.value,
            f64::from(sum(|d| d.created_completed)) / f64::from(sum(|d| d.created)),
            &format!("{what}: completion rate"),
        );
    }
    assert_eq!(
        got.focus_sessions_completed as u32,
        sum(|d| d.sessions_completed),
        "{what}"
    );
    assert_eq!(
        got.focus_sessions_abandoned as u32,
        sum(|d| d.sessions_abandoned),
        "{what}"
    );
    close(
        got.focus_minutes_completed,
        days.iter().map(|d| d.minutes_completed).sum(),
        &format!("{what}: focus minutes"),
    );
    close(
        got.focus_minutes_abandoned,
        days.iter().map(|d| d.minutes_abandoned).sum(),
        &format!("{what}: abandoned minutes"),
    );
    let ratios: Vec<f64> = days.iter().flat_map(|d| d.ratios.clone()).collect();
    let e = got.estimate_accuracy.expect("accuracy");
    assert_eq!(e.n as usize, ratios.len(), "{what}: accuracy basis");
    if !ratios.is_empty() {
        let (p25, median, p75) = quartiles(ratios);
        close(e.p25, p25, &format!("{what}: p25"));
        close(e.median, median, &format!("{what}: median"));
        close(e.p75, p75, &format!("{what}: p75"));
    }
    let moods: Vec<i32> = days.iter().flat_map(|d| d.moods.clone()).collect();
    assert_eq!(got.mood_entries as usize, moods.len(), "{what}: moods");
    if !moods.is_empty() {
        close(
            got.mood_average,
            f64::from(moods.iter().sum::<i32>()) / moods.len() as f64,
            &format!("{what}: mood average"),
        );
    }
}

fn pearson(pairs: &[(f64, f64)]) -> f64 {
    let n = pairs.len() as f64;
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = pairs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let vx: f64 = pairs.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let vy: f64 = pairs.iter().map(|(_, y)| (y - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

/// Points earned per local day, from the ledger itself.
async fn earned_by_day(server: &Server, user: &str) -> BTreeMap<NaiveDate, (i64, u32)> {
    let mut out: BTreeMap<NaiveDate, (i64, u32)> = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = server
            .game()
            .await
            .list_ledger_entries(authed(
                user,
                ListLedgerEntriesRequest {
                    page_size: 100,
                    page_token: token.clone(),
                },
            ))
            .await
            .expect("ledger")
            .into_inner();
        for e in page.entries {
            if e.points > 0 {
                let d = out.entry(local_day(from_ts(e.create_time))).or_default();
                d.0 += e.points;
                d.1 += 1;
            }
        }
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn start(
    cfg_dir: tempfile::TempDir,
    mut cfg: focusforge_server::Config,
) -> (Server, Arc<ManualClock>) {
    let table: toml::Table = toml::from_str("refresh_secs = 60").expect("settings");
    cfg.service.insert("analytics".into(), table);
    let clock = Arc::new(ManualClock::new(at(0, 8, 0)));
    (
        Server::start_with_clock(cfg_dir, cfg, clock.clone()).await,
        clock,
    )
}

async fn figures_match_what_was_done(server: &Server, clock: &ManualClock) {
    let model = seed(server, clock, "alice").await;
    let (from, to) = (at(0, 0, 0), at(DAYS, 0, 0));
    clock.set(to + Duration::hours(2));

    let daily = report(server, "alice", from, to, Bucket::Day).await;
    assert_eq!(daily.time_zone, ZONE);
    assert_eq!(daily.periods.len(), DAYS as usize, "one period a local day");
    let empty = Day::default();
    for (i, p) in daily.periods.iter().enumerate() {
        let day = first_day() + Duration::days(i as i64);
        assert_eq!(p.label, day.format("%Y-%m-%d").to_string());
        assert_eq!(from_ts(p.start_time), at(i as u32, 0, 0), "local midnight");
        let d = model.days.get(&day).unwrap_or(&empty);
        expect_figures(&[d], p.figures.as_ref().expect("figures"), &p.label);
    }
    // The day of the switch to summer time has 23 hours.
    let switch = &daily.periods[7];
    assert_eq!(switch.label, "2026-03-08");
    assert_eq!(
        from_ts(switch.end_time) - from_ts(switch.start_time),
        Duration::hours(23)
    );
    let all: Vec<&Day> = model.days.values().collect();
    expect_figures(&all, daily.total.as_ref().expect("total"), "total");

    // Weeks are ISO weeks cut at the range's ends.
    let weekly = report(server, "alice", from, to, Bucket::Week).await;
    let labels: Vec<_> = weekly.periods.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        ["2026-W09", "2026-W10", "2026-W11", "2026-W12", "2026-W13"]
    );
    for p in &weekly.periods {
        let (a, b) = (
            local_day(from_ts(p.start_time)),
            local_day(from_ts(p.end_time) - Duration::seconds(1)),
        );
        let days: Vec<&Day> = model.days.range(a..=b).map(|(_, d)| d).collect();
        expect_figures(&days, p.figures.as_ref().expect("figures"), &p.label);
    }

    // Points: every award of the ledger, by the day it was made.
    let earned = earned_by_day(server, "alice").await;
    for (i, p) in daily.periods.iter().enumerate() {
        let day = first_day() + Duration::days(i as i64);
        let (points, n) = earned.get(&day).copied().unwrap_or_default();
        let f = p.figures.as_ref().expect("figures");
        assert_eq!(
            (f.points_earned, f.points_earned_entries as u32),
            (points, n),
            "{}",
            p.label
        );
    }
    let total = daily.total.as_ref().expect("total");
    assert!(total.points_earned > 0);

    // Hours: 09:00 every day, 13:00 on good days; 15:00 abandons.
    for h in &daily.hours {
        let (n, minutes) = model
            .hours
            .get(&(h.hour as u32))
            .copied()
            .unwrap_or_default();
        assert_eq!(h.sessions_completed as u32, n, "hour {}", h.hour);
        close(h.focus_minutes_completed, minutes, "hour minutes");
        assert_eq!(
            h.sessions_abandoned as u32,
            model
                .abandoned_hours
                .get(&(h.hour as u32))
                .copied()
                .unwrap_or_default()
        );
    }
    assert_eq!(daily.best_hours, [9, 13], "the most focus minutes first");

    // Mood against productivity: every day has both.
    let pairs: Vec<(f64, f64)> = model
        .days
        .values()
        .map(|d| (f64::from(d.moods[0]), d.minutes_completed))
        .collect();
    let m = daily.mood_productivity.as_ref().expect("mood");
    assert_eq!(m.days_with_mood_and_work as u32, DAYS);
    let f = m.with_focus_minutes.expect("focus correlation");
    assert!(f.reported);
    close(f.r, pearson(&pairs), "mood against focus minutes");
    assert!(f.r > 0.5, "good days had a second session");
    let kinds: Vec<_> = daily.insights.iter().map(|i| i.kind.as_str()).collect();
    for kind in ["best_hours", "estimates", "completion", "mood", "streak"] {
        assert!(kinds.contains(&kind), "an insight on {kind}: {kinds:?}");
    }
    let best = daily
        .insights
        .iter()
        .find(|i| i.kind == "best_hours")
        .expect("best");
    assert!(best.text.contains("09:00 and 13:00"), "{}", best.text);
    let streak = daily.streaks.as_ref().expect("streaks");
    let progress = crate::game::progress(server, "alice").await;
    let kept = progress.streak.expect("streak");
    assert_eq!(
        (streak.current_days, streak.longest_days),
        (kept.current_days, kept.longest_days)
    );
    assert!(streak.longest_days >= 1);
    assert!(daily.unavailable_services.is_empty());
    assert_eq!(daily.moods_read as u32, DAYS);

    // With too few days the correlation is not reported.
    let short = report(server, "alice", from, at(6, 0, 0), Bucket::Day).await;
    let c = short
        .mood_productivity
        .as_ref()
        .expect("mood")
        .with_focus_minutes
        .expect("correlation");
    assert!(!c.reported && c.days == 6 && c.r == 0.0);

    // New work shows at once; a deleted mood at the next full read.
    clock.set(at(DAYS, 9, 0));
    let mut s = Seeder {
        server,
        clock,
        user: "alice",
        model: Model::default(),
    };
    let t = s.task("one more", 20).await;
    s.start_task(&t).await;
    clock.advance(Duration::minutes(40));
    s.complete(&t, at(DAYS, 9, 0), 2.0).await;
    let later = report(server, "alice", from, at(DAYS + 1, 0, 0), Bucket::Day).await;
    let last = later
        .periods
        .last()
        .expect("period")
        .figures
        .expect("figures");
    assert_eq!(
        (last.tasks_created, last.tasks_completed),
        (1, 1),
        "caught up"
    );
    let before = later.total.as_ref().expect("total").mood_entries;
    server
        .mood()
        .await
        .delete_mood(authed(
            "alice",
            DeleteMoodRequest {
                id: model.moods[0].clone(),
            },
        ))
        .await
        .expect("delete");
    clock.advance(Duration::seconds(61));
    let after = report(server, "alice", from, at(DAYS + 1, 0, 0), Bucket::Day).await;
    assert_eq!(
        after.total.as_ref().expect("total").mood_entries,
        before - 1
    );

    // Another user sees nothing of alice's.
    let bob = report(server, "bob", from, to, Bucket::Month).await;
    let t = bob.total.as_ref().expect("total");
    assert_eq!(
        (t.tasks_created, t.focus_sessions_completed, t.mood_entries),
        (0, 0, 0)
    );
    assert_eq!(bob.tasks_read + bob.sessions_read + bob.moods_read, 0);
    assert_eq!(bob.time_zone, "UTC");
}

#[tokio::test]
async fn figures_match_what_was_done_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir);
    let (server, clock) = start(dir, cfg).await;
    figures_match_what_was_done(&server, &clock).await;
    server.stop().await;
}

#[tokio::test]
async fn figures_match_what_was_done_on_mongodb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.mongodb.uri = Some(crate::backends::mongo_uri());
    cfg.mongodb.database = format!("analytics_{}", crate::game::nanos());
    let (server, clock) = start(dir, cfg).await;
    figures_match_what_was_done(&server, &clock).await;
    server.stop().await;
}

#[tokio::test]
async fn bad_ranges_are_refused_naming_the_field() {
    let server = Server::start().await;
    let now = Utc::now();
    let cases = [
        (ts(now), ts(now - Duration::days(1)), 0, "end_time"),
        (ts(now - Duration::days(401)), ts(now), 0, "end_time"),
        (ts(now - Duration::days(1)), ts(now), 9, "bucket"),
        (
            Some(Timestamp {
                seconds: -5,
                nanos: 0,
            }),
            ts(now),
            0,
            "start_time",
        ),
    ];
    for (start_time, end_time, bucket, field) in cases {
        let err = server
            .analytics()
            .await
            .get_report(authed(
                "alice",
                GetReportRequest {
                    start_time,
                    end_time,
                    bucket,
                },
            ))
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let err = server
        .analytics()
        .await
        .get_report(tonic::Request::new(GetReportRequest::default()))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    // The default range: the last 30 days, by day.
    let r = server
        .analytics()
        .await
        .get_report(authed("alice", GetReportRequest::default()))
        .await
        .expect("default")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(
        from_ts(r.end_time) - from_ts(r.start_time),
        Duration::days(30)
    );
    assert!((30..=31).contains(&r.periods.len()));
    server.stop().await;
}

#[tokio::test]
async fn services_not_deployed_are_named_and_the_rest_still_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.services.retain(|s| s != "mood" && s != "gamification");
    let server = Server::start_in(dir, cfg).await;
    server
        .tasks()
        .await
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "counted".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("task");
    let r = server
        .analytics()
        .await
        .get_report(authed("alice", GetReportRequest::default()))
        .await
        .expect("report")
        .into_inner()
        .report
        .expect("report");
    assert_eq!(r.total.as_ref().expect("total").tasks_created, 1);
    assert_eq!(
        r.unavailable_services,
        [
            "focusforge.mood.v1.MoodService",
            "focusforge.gamification.v1.GamificationService"
        ]
    );
    assert!(r.streaks.is_none());
    server.stop().await;
}
