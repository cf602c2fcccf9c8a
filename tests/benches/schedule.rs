//! Auto-scheduling time: 200 tasks of 4 blocks (10-20 minutes each) into a
//! 14-day horizon of 08:00-20:00 days with 150 busy events (100 single, 50
//! recurring: daily stand-ups, weekly meetings), then a reschedule after one
//! new event over a placed block. The tasks hold more work than the free
//! time: the ones that do not fit are reported with their reasons.
//!
//! - `scheduler`: the placement function alone (`schedule::schedule`), the
//!   median of `--runs` runs;
//! - `AutoSchedule RPC`: the whole call through the gateway on the embedded
//!   store: reading the tasks from the Task service and the events, placing,
//!   and writing every focus block as an event (the first call creates
//!   them, the reschedule moves what conflicts).
//!
//! `cargo bench -p focusforge-tests --bench schedule -- --runs 20`

use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Span, Utc};
use focusforge_auth::{KeyMaterial, Minter};
use focusforge_calendar::schedule::{self, BlockIn, Busy, Existing, Hours, Input, TaskIn};
use focusforge_core::UserId;
use focusforge_proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use focusforge_proto::calendar::v1::{AutoScheduleRequest, CreateEventRequest, Event};
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_proto::tasks::v1::{CreateTaskRequest, TaskPriority, WorkBlock};
use focusforge_proto::users::v1::user_service_client::UserServiceClient;
use focusforge_proto::users::v1::{Preferences, Profile, UpdateProfileRequest};
use focusforge_server::Config;
use tokio::net::TcpListener;
use tonic::transport::Channel;

const SECRET: &str = "benchmark-secret-0123456789abcdef0123456789";
const TASKS: usize = 200;
const BLOCKS: usize = 4;

fn arg(name: &str, default: u64) -> u64 {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("value"),
    );
    req
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

/// A deterministic pseudo-random sequence.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// The 150 busy events: (title, start, end, rrule): 100 single meetings of
/// 15-30 minutes, 25 daily stand-ups for a week, 25 weekly meetings for two
/// weeks.
fn events(now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>, DateTime<Utc>, String)> {
    let mut r = Lcg(7);
    let day0 = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let slot = |r: &mut Lcg, days: u64| {
        day0 + Span::days(r.next(days) as i64) + Span::minutes(8 * 60 + 15 * r.next(46) as i64)
    };
    let mut out = Vec::new();
    for i in 0..100 {
        let start = slot(&mut r, 14);
        let minutes = 15 + 15 * r.next(2) as i64;
        out.push((
            format!("meeting {i}"),
            start,
            start + Span::minutes(minutes),
            String::new(),
        ));
    }
    for i in 0..25 {
        let start = slot(&mut r, 3);
        out.push((
            format!("stand-up {i}"),
            start,
            start + Span::minutes(15),
            "FREQ=DAILY;COUNT=5".into(),
        ));
    }
    for i in 0..25 {
        let start = slot(&mut r, 7);
        out.push((
            format!("weekly {i}"),
            start,
            start + Span::minutes(30),
            "FREQ=WEEKLY;COUNT=2".into(),
        ));
    }
    out
}

/// Title, priority (0-3), deadline, block minutes.
type TaskSpec = (String, u8, Option<DateTime<Utc>>, Vec<i64>);

fn tasks(now: DateTime<Utc>) -> Vec<TaskSpec> {
    let mut r = Lcg(11);
    (0..TASKS)
        .map(|i| {
            let due = (r.next(3) > 0).then(|| now + Span::hours(24 + r.next(13 * 24) as i64));
            let blocks = (0..BLOCKS).map(|_| 10 + 5 * r.next(3) as i64).collect();
            (format!("task {i}"), r.next(4) as u8, due, blocks)
        })
        .collect()
}

/// 08:00-20:00 UTC, every day.
fn hours() -> Hours {
    Hours {
        tz: chrono_tz::UTC,
        start_minute: 8 * 60,
        end_minute: 20 * 60,
        days: vec![1, 2, 3, 4, 5, 6, 7],
    }
}

fn pure_input(now: DateTime<Utc>) -> Input {
    let horizon_end = now + Span::days(14);
    let mut busy = Vec::new();
    for (title, s, e, rule) in events(now) {
        let f = focusforge_calendar::event::EventFields {
            title: title.clone(),
            description: String::new(),
            location: String::new(),
            when: focusforge_calendar::event::When::Timed { start: s, end: e },
            tz: "UTC".into(),
            rrule: rule,
            exdates: Vec::new(),
            busy: true,
        };
        for (s, e) in f.occurrences(now, horizon_end) {
            busy.push(Busy {
                start: s,
                end: e,
                title: title.clone(),
            });
        }
    }
    Input {
        now,
        horizon_end,
        hours: hours(),
        buffer_minutes: 0,
        busy,
        tasks: tasks(now)
            .into_iter()
            .enumerate()
            .map(|(i, (title, priority, due, blocks))| TaskIn {
                id: format!("t{i:03}"),
                title,
                priority,
                due,
                earliest: None,
                min_chunk: 0,
                created: now,
                blocks: blocks
                    .into_iter()
                    .enumerate()
                    .map(|(b, minutes)| BlockIn {
                        id: format!("b{b}"),
                        minutes,
                    })
                    .collect(),
            })
            .collect(),
        existing: Vec::new(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pure(runs: u64) {
    let now: DateTime<Utc> = "2026-12-07T07:00:00Z".parse().expect("time");
    let input = pure_input(now);
    let mut times = Vec::new();
    let mut out = schedule::schedule(&input);
    for _ in 0..runs {
        let t = Instant::now();
        out = schedule::schedule(&input);
        times.push(t.elapsed());
    }
    let first = median(times);
    let placed = out.placed.len();
    let unplaced = out.unplaced.len();
    let mut why = std::collections::BTreeMap::new();
    for u in &out.unplaced {
        *why.entry(format!("{:?}", u.why)).or_insert(0) += 1;
    }
    if let Some(u) = out.unplaced.first() {
        println!(
            "unscheduled by reason: {why:?}; e.g. {}: {}",
            u.title, u.detail
        );
    }
    // One new event over the first placed block.
    let mut again = input.clone();
    again.existing = out
        .placed
        .iter()
        .enumerate()
        .map(|(n, p)| Existing {
            event_id: format!("e{n}"),
            task_id: p.task_id.clone(),
            block_id: p.block_id.clone(),
            start: p.start,
            end: p.end,
        })
        .collect();
    let hit = &out.placed[placed / 2];
    again.busy.push(Busy {
        start: hit.start,
        end: hit.start + Span::minutes(5),
        title: "new event".into(),
    });
    let mut times = Vec::new();
    let mut re = schedule::schedule(&again);
    for _ in 0..runs {
        let t = Instant::now();
        re = schedule::schedule(&again);
        times.push(t.elapsed());
    }
    let moved = re
        .placed
        .iter()
        .filter(|p| matches!(p.change, schedule::Change::Moved { .. }))
        .count();
    println!(
        "{:<28} {:>10.2} ms  ({} busy occurrences; {placed} pieces placed, {unplaced} tasks unscheduled)",
        "scheduler: schedule",
        first.as_secs_f64() * 1e3,
        input.busy.len(),
    );
    println!(
        "{:<28} {:>10.2} ms  ({moved} moved, {} kept)",
        "scheduler: reschedule",
        median(times).as_secs_f64() * 1e3,
        re.placed.len() - moved,
    );
}

async fn rpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config {
        data_dir: dir.path().to_path_buf(),
        // What auto-scheduling reads: no models needed.
        services: vec!["tasks".into(), "users".into(), "calendar".into()],
        listen: "127.0.0.1:0".into(),
        auth: focusforge_server::config::AuthConfig {
            jwt_secret: Some(SECRET.into()),
            ..Default::default()
        },
        llm: focusforge_server::config::LlmConfig {
            backend: "none".into(),
            ..Default::default()
        },
        ..Config::default()
    };
    let now: DateTime<Utc> = "2026-12-07T07:00:00Z".parse().expect("time");
    let clock = std::sync::Arc::new(focusforge_core::ManualClock::new(now));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let running = focusforge_server::start_with_clock(&cfg, listener, clock)
        .await
        .expect("start");
    let channel = Channel::from_shared(format!("http://{}", running.local_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let token = Minter::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None)
        .expect("minter")
        .mint(&UserId::parse("bench").expect("user"), 3600)
        .expect("mint");
    let h = hours();
    UserServiceClient::new(channel.clone())
        .update_profile(authed(
            &token,
            UpdateProfileRequest {
                profile: Some(Profile {
                    preferences: Some(Preferences {
                        work_start_minute: h.start_minute as i32,
                        work_end_minute: h.end_minute as i32,
                        working_days: h.days.iter().map(|d| i32::from(*d)).collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec![
                        "preferences.work_start_minute".into(),
                        "preferences.work_end_minute".into(),
                        "preferences.working_days".into(),
                    ],
                }),
            },
        ))
        .await
        .expect("profile");
    let mut cal = CalendarServiceClient::new(channel.clone());
    let mut tasks_client = TaskServiceClient::new(channel);
    for (title, s, e, rule) in events(now) {
        cal.create_event(authed(
            &token,
            CreateEventRequest {
                event: Some(Event {
                    title,
                    start_time: ts(s),
                    end_time: ts(e),
                    time_zone: "UTC".into(),
                    rrule: rule,
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("event");
    }
    for (title, priority, due, blocks) in tasks(now) {
        tasks_client
            .create_task(authed(
                &token,
                CreateTaskRequest {
                    title,
                    priority: match priority {
                        0 => TaskPriority::Low,
                        1 => TaskPriority::Medium,
                        2 => TaskPriority::High,
                        _ => TaskPriority::Urgent,
                    } as i32,
                    due_time: due.and_then(ts),
                    blocks: blocks
                        .into_iter()
                        .enumerate()
                        .map(|(i, m)| WorkBlock {
                            title: format!("part {i}"),
                            minutes: m as i32,
                            order: i as i32,
                            done: false,
                            id: String::new(),
                        })
                        .collect(),
                    ..Default::default()
                },
            ))
            .await
            .expect("task");
    }
    let req = || AutoScheduleRequest {
        horizon_days: 14,
        buffer_minutes: 0,
        dry_run: false,
    };
    let t = Instant::now();
    let first = cal
        .auto_schedule(authed(&token, req()))
        .await
        .expect("schedule")
        .into_inner();
    let first_time = t.elapsed();
    let hit = &first.placements[first.placements.len() / 2];
    let start = hit.start_time.expect("start");
    cal.create_event(authed(
        &token,
        CreateEventRequest {
            event: Some(Event {
                title: "new event".into(),
                start_time: Some(start),
                end_time: Some(prost_types::Timestamp {
                    seconds: start.seconds + 300,
                    nanos: 0,
                }),
                time_zone: "UTC".into(),
                ..Default::default()
            }),
        },
    ))
    .await
    .expect("new event");
    let t = Instant::now();
    let re = cal
        .auto_schedule(authed(&token, req()))
        .await
        .expect("reschedule")
        .into_inner();
    let re_time = t.elapsed();
    println!(
        "{:<28} {:>10.2} ms  ({} blocks written, {} tasks unscheduled)",
        "AutoSchedule RPC: schedule",
        first_time.as_secs_f64() * 1e3,
        first.added,
        first.unscheduled.len(),
    );
    println!(
        "{:<28} {:>10.2} ms  ({} moved, {} kept)",
        "AutoSchedule RPC: reschedule",
        re_time.as_secs_f64() * 1e3,
        re.moved,
        re.kept,
    );
    running.shutdown().await;
}

#[tokio::main]
async fn main() {
    let runs = arg("--runs", 20).max(1);
    println!("{TASKS} tasks x {BLOCKS} blocks, 14 days, 150 busy events (50 recurring)");
    pure(runs);
    rpc().await;
}
