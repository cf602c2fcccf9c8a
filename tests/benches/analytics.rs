//! Analytics over a heavy user's year: 3,000 tasks (2,400 completed, with
//! estimates), 8,000 focus sessions (about 15 % abandoned), 1,500 moods and
//! the 10,000-odd ledger entries their awards made, seeded through the
//! gateway with a manual clock, in Europe/Berlin; then `GetReport` through
//! the gateway, a mix of ranges and buckets (the year by month, by week,
//! the last 90 days by day, the last 30 days by day):
//!
//! - `warm`: the user's facts are in the service's cache and each call
//!   catches up on what was written since the last (the usual call);
//! - `cold`: every call reads the user's whole range again (the first
//!   call of a user, or the first after `refresh_secs`);
//! - `List RPCs`: what a client without the service would do: page
//!   through ListTasks, ListSessions, ListMoods and ListLedgerEntries for
//!   the year (one run: reading alone, nothing computed).
//!
//! On the embedded store, then on MongoDB when `FOCUSFORGE_TEST_MONGODB_URI`
//! is set: the seeded documents are copied into a fresh database (seeding
//! through the gateway again would take a MongoDB-wire test server most of
//! an hour), and the same calls are measured against a server on it.
//!
//! `cargo bench -p focusforge-tests --bench analytics -- --runs 20`

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Span, Utc};
use focusforge_auth::{KeyMaterial, Minter};
use focusforge_core::{ManualClock, UserId};
use focusforge_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use focusforge_proto::analytics::v1::{Bucket, GetReportRequest, Report};
use focusforge_proto::focus::v1::focus_service_client::FocusServiceClient;
use focusforge_proto::focus::v1::{
    AbandonSessionRequest, CompleteSessionRequest, ListSessionsRequest, SessionKind,
    StartSessionRequest,
};
use focusforge_proto::gamification::v1::ListLedgerEntriesRequest;
use focusforge_proto::gamification::v1::gamification_service_client::GamificationServiceClient;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use focusforge_proto::mood::v1::{ListMoodsRequest, LogMoodRequest};
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_proto::tasks::v1::{
    CompleteTaskRequest, CreateTaskRequest, ListTasksRequest, StartTaskRequest,
};
use focusforge_proto::users::v1::user_service_client::UserServiceClient;
use focusforge_proto::users::v1::{Preferences, Profile, UpdateProfileRequest};
use focusforge_server::Config;
use tokio::net::TcpListener;
use tonic::transport::Channel;

const SECRET: &str = "benchmark-secret-0123456789abcdef0123456789";
const DAYS: i64 = 365;
const TASKS: usize = 3_000;
const SESSIONS: usize = 8_000;
const MOODS: usize = 1_500;

fn arg(name: &str) -> Option<String> {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .cloned()
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

struct Bench {
    channel: Channel,
    token: String,
    clock: Arc<ManualClock>,
    start: DateTime<Utc>,
    _running: focusforge_server::Running,
    dir: tempfile::TempDir,
}

async fn server(seeded: Option<&std::path::Path>, mongodb: Option<(&str, &str)>) -> Bench {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut service = std::collections::BTreeMap::new();
    let table: toml::Table = toml::from_str("refresh_secs = 1").expect("settings");
    service.insert("analytics".to_owned(), table);
    let mut cfg = Config {
        data_dir: seeded.unwrap_or(dir.path()).to_path_buf(),
        services: [
            "tasks",
            "users",
            "focus",
            "mood",
            "gamification",
            "analytics",
        ]
        .map(String::from)
        .to_vec(),
        listen: "127.0.0.1:0".into(),
        auth: focusforge_server::config::AuthConfig {
            jwt_secret: Some(SECRET.into()),
            ..Default::default()
        },
        llm: focusforge_server::config::LlmConfig {
            backend: "none".into(),
            ..Default::default()
        },
        service: service.into_iter().collect(),
        ..Config::default()
    };
    if let Some((uri, database)) = mongodb {
        cfg.mongodb.uri = Some(uri.to_owned());
        cfg.mongodb.database = database.to_owned();
    }
    let start: DateTime<Utc> = "2025-12-01T06:00:00Z".parse().expect("time");
    let clock = Arc::new(ManualClock::new(start));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let running = focusforge_server::start_with_clock(&cfg, listener, clock.clone())
        .await
        .expect("start");
    let channel = Channel::from_shared(format!("http://{}", running.local_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let token = Minter::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None)
        .expect("minter")
        .mint(&UserId::parse("heavy").expect("user"), 24 * 3600)
        .expect("mint");
    Bench {
        channel,
        token,
        clock,
        start,
        _running: running,
        dir,
    }
}

/// The collections the seeded services wrote.
const COLLECTIONS: &[&str] = &[
    "tasks",
    "focus_sessions",
    "focus_current",
    "mood_logs",
    "game_wallets",
    "game_ledger",
    "user_profiles",
];

/// Copies the heavy user's documents from the embedded store in `dir`
/// into `database`, each written once at its last write time, by 16
/// writers at once. A changed document's creation time moves to its last
/// write (a task may count as created on the day it was completed); the
/// records read, and so the work measured, are the same.
async fn copy_to_mongodb(dir: &std::path::Path, uri: &str, database: &str) -> usize {
    use focusforge_store::{DocumentStore, MongoSettings, MongoStore, NewDocument};
    use futures::StreamExt;
    let sqlite = Arc::new(
        focusforge_store::SqliteStore::open(
            &dir.join(focusforge_server::STORE_FILE),
            Arc::new(ManualClock::new(Utc::now())),
        )
        .expect("open the seeded store"),
    ) as focusforge_store::SharedStore;
    let user = UserId::parse("heavy").expect("user");
    let far: DateTime<Utc> = "2100-01-01T00:00:00Z".parse().expect("time");
    let mut docs = Vec::new();
    for collection in COLLECTIONS {
        let mut reader =
            focusforge_store::changes(sqlite.clone(), collection, &user, DateTime::UNIX_EPOCH, far);
        while let Some(batch) = reader.next_batch().await.expect("read") {
            docs.extend(batch.into_iter().map(|d| (*collection, d)));
        }
    }
    const WRITERS: usize = 16;
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let mongo = MongoStore::connect(
            &MongoSettings {
                uri: uri.to_owned(),
                database: database.to_owned(),
                ..MongoSettings::default()
            },
            clock.clone(),
        )
        .await
        .expect("mongodb");
        writers.push((clock, mongo));
    }
    let mut shares: Vec<Vec<_>> = (0..WRITERS).map(|_| Vec::new()).collect();
    for (i, d) in docs.into_iter().enumerate() {
        shares[i % WRITERS].push(d);
    }
    let copied: usize = futures::stream::iter(writers.into_iter().zip(shares))
        .map(|((clock, mongo), share)| {
            let user = user.clone();
            async move {
                for (collection, doc) in &share {
                    clock.set(doc.updated_at);
                    // Copied already by an earlier, interrupted run.
                    if mongo
                        .get(collection, &user, &doc.id)
                        .await
                        .expect("get")
                        .is_some()
                    {
                        continue;
                    }
                    match mongo
                        .insert(
                            collection,
                            NewDocument {
                                id: doc.id.clone(),
                                user_id: user.clone(),
                                body: doc.body.clone(),
                                expires_at: doc.expires_at,
                            },
                        )
                        .await
                    {
                        Ok(_) | Err(focusforge_store::StoreError::AlreadyExists) => {}
                        Err(e) => panic!("insert: {e}"),
                    }
                }
                share.len()
            }
        })
        .buffer_unordered(WRITERS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum();
    copied
}

/// A year of work, day by day: sessions back to back from 07:00 local,
/// tasks created and most completed through the day, moods in between.
async fn seed(b: &Bench) {
    UserServiceClient::new(b.channel.clone())
        .update_profile(authed(
            &b.token,
            UpdateProfileRequest {
                profile: Some(Profile {
                    preferences: Some(Preferences {
                        timezone: "Europe/Berlin".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["preferences.timezone".into()],
                }),
            },
        ))
        .await
        .expect("profile");
    let mut tasks = TaskServiceClient::new(b.channel.clone());
    let mut focus = FocusServiceClient::new(b.channel.clone());
    let mut mood = MoodServiceClient::new(b.channel.clone());
    let mut r = Lcg(11);
    let (mut t_done, mut s_done, mut m_done) = (0, 0, 0);
    let began = Instant::now();
    for day in 0..DAYS {
        let t_goal = TASKS * (day as usize + 1) / DAYS as usize;
        let s_goal = SESSIONS * (day as usize + 1) / DAYS as usize;
        let m_goal = MOODS * (day as usize + 1) / DAYS as usize;
        b.clock.set(b.start + Span::days(day));
        let mut open: Vec<String> = Vec::new();
        while s_done < s_goal || t_done < t_goal || m_done < m_goal {
            if t_done < t_goal {
                let id = tasks
                    .create_task(authed(
                        &b.token,
                        CreateTaskRequest {
                            title: format!("task {t_done}"),
                            estimated_minutes: 15 + 15 * r.next(8) as i32,
                            ..Default::default()
                        },
                    ))
                    .await
                    .expect("task")
                    .into_inner()
                    .task
                    .expect("task")
                    .id;
                tasks
                    .start_task(authed(&b.token, StartTaskRequest { id: id.clone() }))
                    .await
                    .expect("start");
                t_done += 1;
                if r.next(5) > 0 {
                    open.push(id);
                }
            }
            if s_done < s_goal {
                let id = focus
                    .start_session(authed(
                        &b.token,
                        StartSessionRequest {
                            kind: SessionKind::Focus as i32,
                            planned_minutes: 25,
                            ..Default::default()
                        },
                    ))
                    .await
                    .expect("session")
                    .into_inner()
                    .session
                    .expect("session")
                    .id;
                b.clock.advance(Span::minutes(5 + r.next(19) as i64));
                if r.next(100) < 15 {
                    focus
                        .abandon_session(authed(
                            &b.token,
                            AbandonSessionRequest {
                                id,
                                ..Default::default()
                            },
                        ))
                        .await
                        .expect("abandon");
                } else {
                    focus
                        .complete_session(authed(
                            &b.token,
                            CompleteSessionRequest {
                                id,
                                ..Default::default()
                            },
                        ))
                        .await
                        .expect("complete");
                }
                s_done += 1;
            }
            if let Some(id) = open.pop() {
                tasks
                    .complete_task(authed(
                        &b.token,
                        CompleteTaskRequest {
                            id,
                            ..Default::default()
                        },
                    ))
                    .await
                    .expect("complete task");
            }
            if m_done < m_goal {
                mood.log_mood(authed(
                    &b.token,
                    LogMoodRequest {
                        score: 1 + r.next(5) as i32,
                        ..Default::default()
                    },
                ))
                .await
                .expect("mood");
                m_done += 1;
            }
        }
        if day % 73 == 72 {
            eprintln!(
                "  seeded day {} of {DAYS} ({:.0} s)",
                day + 1,
                began.elapsed().as_secs_f64()
            );
        }
    }
}

async fn report(b: &Bench, from: DateTime<Utc>, to: DateTime<Utc>, bucket: Bucket) -> Report {
    AnalyticsServiceClient::new(b.channel.clone())
        .get_report(authed(
            &b.token,
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

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

/// Pages through a list RPC, returning how many records it read.
async fn list_everything(b: &Bench) -> usize {
    let mut n = 0;
    let mut tasks = TaskServiceClient::new(b.channel.clone());
    let mut token = String::new();
    loop {
        let p = tasks
            .list_tasks(authed(
                &b.token,
                ListTasksRequest {
                    page_size: 200,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        n += p.tasks.len();
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
    }
    let mut focus = FocusServiceClient::new(b.channel.clone());
    token.clear();
    loop {
        let p = focus
            .list_sessions(authed(
                &b.token,
                ListSessionsRequest {
                    page_size: 100,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        n += p.sessions.len();
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
    }
    let mut mood = MoodServiceClient::new(b.channel.clone());
    token.clear();
    loop {
        let p = mood
            .list_moods(authed(
                &b.token,
                ListMoodsRequest {
                    page_size: 200,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        n += p.entries.len();
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
    }
    let mut game = GamificationServiceClient::new(b.channel.clone());
    token.clear();
    loop {
        let p = game
            .list_ledger_entries(authed(
                &b.token,
                ListLedgerEntriesRequest {
                    page_size: 100,
                    page_token: token.clone(),
                },
            ))
            .await
            .expect("list")
            .into_inner();
        n += p.entries.len();
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
    }
    n
}

/// The calls measured, on a server holding the seeded year.
async fn measure(name: &str, b: &Bench, runs: usize) {
    let end = b.start + Span::days(DAYS);
    b.clock.set(end + Span::hours(1));
    let queries = [
        (b.start, end, Bucket::Month),
        (b.start, end, Bucket::Week),
        (end - Span::days(90), end, Bucket::Day),
        (end - Span::days(30), end, Bucket::Day),
    ];
    let t = Instant::now();
    let year = report(b, b.start, end, Bucket::Month).await;
    let first = t.elapsed();
    let total = year.total.expect("total");
    println!(
        "{name}: read {} tasks, {} sessions, {} moods, {} ledger entries; {} created, {} completed, {:.0} focus minutes, estimate ratio median {:.2} (n {}), best hours {:?}, in {:.1} ms",
        year.tasks_read,
        year.sessions_read,
        year.moods_read,
        year.ledger_entries_read,
        total.tasks_created,
        total.tasks_completed,
        total.focus_minutes_completed,
        total
            .estimate_accuracy
            .map(|e| e.median)
            .unwrap_or_default(),
        total.estimate_accuracy.map(|e| e.n).unwrap_or_default(),
        year.best_hours,
        first.as_secs_f64() * 1000.0
    );
    assert!(year.tasks_read as usize >= TASKS && year.sessions_read as usize >= SESSIONS);
    assert!(year.moods_read as usize >= MOODS);
    println!(
        "{name}: {} records held, time zone {}",
        year.tasks_read + year.sessions_read + year.moods_read + year.ledger_entries_read,
        year.time_zone
    );

    let mut warm = Vec::new();
    let mut cold = Vec::new();
    for i in 0..runs {
        let (from, to, bucket) = queries[i % queries.len()];
        // Within the refresh interval: a catch-up read.
        b.clock.advance(Span::milliseconds(200));
        let t = Instant::now();
        report(b, from, to, bucket).await;
        warm.push(t.elapsed());
        // Past it: a full read of the range's records.
        b.clock.advance(Span::seconds(2));
        let t = Instant::now();
        report(b, b.start, to, bucket).await;
        cold.push(t.elapsed());
        b.clock.advance(Span::milliseconds(200));
        report(b, b.start, end, Bucket::Month).await;
    }
    println!(
        "{name}: GetReport warm  p50 {:.1} ms  p90 {:.1} ms  ({runs} runs)",
        pct(warm.clone(), 0.5),
        pct(warm, 0.9)
    );
    println!(
        "{name}: GetReport cold  p50 {:.1} ms  p90 {:.1} ms  ({runs} runs)",
        pct(cold.clone(), 0.5),
        pct(cold, 0.9)
    );
    let t = Instant::now();
    let n = list_everything(b).await;
    println!(
        "{name}: List RPCs, every record of the year: {n} records in {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
}

#[tokio::main]
async fn main() {
    let runs: usize = arg("--runs").and_then(|r| r.parse().ok()).unwrap_or(20);
    // `--seeded DIR`: the data directory of an earlier run's seeding.
    let seeded = arg("--seeded").map(std::path::PathBuf::from);
    let b = server(seeded.as_deref(), None).await;
    if seeded.is_none() {
        let began = Instant::now();
        seed(&b).await;
        eprintln!("seeded in {:.0} s", began.elapsed().as_secs_f64());
    }
    let data = seeded.unwrap_or_else(|| b.dir.path().to_path_buf());
    if !std::env::args().any(|a| a == "--no-copy") {
        measure("sqlite", &b, runs).await;
    }
    let Ok(uri) = std::env::var("FOCUSFORGE_TEST_MONGODB_URI") else {
        println!("mongodb: skipped (FOCUSFORGE_TEST_MONGODB_URI is not set)");
        return;
    };
    // `--mongodb-database NAME` resumes an interrupted copy.
    let database = arg("--mongodb-database").unwrap_or_else(|| {
        format!(
            "bench_analytics_{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
        )
    });
    let began = Instant::now();
    // `--no-copy`: measure what an earlier copy left in the database.
    let copied = if std::env::args().any(|a| a == "--no-copy") {
        0
    } else {
        copy_to_mongodb(&data, &uri, &database).await
    };
    eprintln!(
        "copied {copied} documents to mongodb in {:.0} s",
        began.elapsed().as_secs_f64()
    );
    let m = server(None, Some((&uri, &database))).await;
    measure("mongodb", &m, runs).await;
}
