//! Sustained mixed load through the gateway: `--clients` users at once
//! (64 by default), each its own user with its own HTTP/2 connection and an
//! open `Subscribe` stream, for `--seconds` (600 by default), against a
//! `focusforge serve` process started from `--bin` on a fresh data
//! directory (the embedded default, rules backend for the chains).
//!
//! Each client loops over task CRUD (create, get, update with a field mask,
//! list), memory (remember short-term; every 4th round a semantic memory and
//! a hybrid search, which embed with the local model), a breakdown from the
//! chain, and every 4th round a plan, a mood and a focus session started and
//! completed. Reported: calls/s, p50/p99/p99.9 per call and overall, errors
//! by code (goal 0), events received, and the server's RSS after warm-up
//! and at the end (goal: within 10 %).
//!
//! `cargo build --release && cargo bench -p focusforge-tests --bench load -- --seconds 600`
//! exits non-zero on any error; scripts/test runs a short one.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use focusforge_auth::{KeyMaterial, Minter};
use focusforge_core::UserId;
use focusforge_proto::chain::v1::chain_service_client::ChainServiceClient;
use focusforge_proto::chain::v1::{BreakDownTaskRequest, TaskInput};
use focusforge_proto::events::v1::SubscribeRequest;
use focusforge_proto::events::v1::event_service_client::EventServiceClient;
use focusforge_proto::focus::v1::focus_service_client::FocusServiceClient;
use focusforge_proto::focus::v1::{CompleteSessionRequest, SessionKind, StartSessionRequest};
use focusforge_proto::memory::v1::memory_service_client::MemoryServiceClient;
use focusforge_proto::memory::v1::{
    MemoryTier, RememberRequest, SearchMemoriesRequest, SearchMode,
};
use focusforge_proto::mood::v1::LogMoodRequest;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use focusforge_proto::planner::v1::planner_service_client::PlannerServiceClient;
use focusforge_proto::planner::v1::{ActionSpec, ActionType, CreatePlanRequest};
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_proto::tasks::v1::{
    CreateTaskRequest, GetTaskRequest, ListTasksRequest, Task, UpdateTaskRequest,
};
use focusforge_tests::{arg, focusforge_binary, free_port, rss_kib};
use tokio::sync::Mutex;
use tonic::transport::Channel;

const SECRET: &str = "benchmark-secret-0123456789abcdef0123456789";

fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("value"),
    );
    req.set_timeout(Duration::from_secs(30));
    req
}

#[derive(Default)]
struct Stats {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    errors: BTreeMap<String, u64>,
}

impl Stats {
    fn record<T>(&mut self, what: &'static str, started: Instant, res: &Result<T, tonic::Status>) {
        self.latencies
            .entry(what)
            .or_default()
            .push(started.elapsed());
        if let Err(e) = res {
            *self
                .errors
                .entry(format!("{what}: {:?}", e.code()))
                .or_default() += 1;
            if self.errors.values().sum::<u64>() <= 5 {
                eprintln!("{what}: {e:?}");
            }
        }
    }
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

struct Clients {
    tasks: TaskServiceClient<Channel>,
    memory: MemoryServiceClient<Channel>,
    chain: ChainServiceClient<Channel>,
    planner: PlannerServiceClient<Channel>,
    mood: MoodServiceClient<Channel>,
    focus: FocusServiceClient<Channel>,
}

macro_rules! call {
    ($stats:expr, $what:literal, $fut:expr) => {{
        let started = Instant::now();
        let res = $fut.await;
        $stats.record($what, started, &res);
        res.ok().map(|r| r.into_inner())
    }};
}

async fn round(c: &mut Clients, token: &str, n: u64, stats: &mut Stats) {
    let created = call!(
        stats,
        "CreateTask",
        c.tasks.create_task(authed(
            token,
            CreateTaskRequest {
                title: format!("Write section {n} of the quarterly report"),
                description: "Draft, then review the figures".into(),
                estimated_minutes: 50,
                ..Default::default()
            },
        ))
    );
    if let Some(task) = created.and_then(|r| r.task) {
        call!(
            stats,
            "GetTask",
            c.tasks.get_task(authed(
                token,
                GetTaskRequest {
                    id: task.id.clone()
                }
            ))
        );
        call!(
            stats,
            "UpdateTask",
            c.tasks.update_task(authed(
                token,
                UpdateTaskRequest {
                    task: Some(Task {
                        id: task.id.clone(),
                        title: format!("Write and check section {n}"),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["title".into()],
                    }),
                    expected_version: 0,
                },
            ))
        );
    }
    call!(
        stats,
        "ListTasks",
        c.tasks.list_tasks(authed(
            token,
            ListTasksRequest {
                page_size: 20,
                ..Default::default()
            },
        ))
    );
    let semantic = n.is_multiple_of(4);
    call!(
        stats,
        "Remember",
        c.memory.remember(authed(
            token,
            RememberRequest {
                tier: if semantic {
                    MemoryTier::Semantic
                } else {
                    MemoryTier::ShortTerm
                } as i32,
                kind: "note".into(),
                content: format!("Round {n}: I work best on reports before lunch"),
                ..Default::default()
            },
        ))
    );
    call!(
        stats,
        "BreakDownTask",
        c.chain.break_down_task(authed(
            token,
            BreakDownTaskRequest {
                task: Some(TaskInput {
                    title: format!("Prepare the onboarding guide, part {}", n % 7),
                    available_minutes: 120,
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
    );
    if semantic {
        call!(
            stats,
            "SearchMemories",
            c.memory.search_memories(authed(
                token,
                SearchMemoriesRequest {
                    query: "when do I write reports best".into(),
                    top_k: 5,
                    mode: SearchMode::Hybrid as i32,
                },
            ))
        );
        call!(
            stats,
            "CreatePlan",
            c.planner.create_plan(authed(
                token,
                CreatePlanRequest {
                    title: format!("plan {n}"),
                    actions: vec![ActionSpec {
                        key: "create".into(),
                        r#type: ActionType::TaskManagement as i32,
                        params_json: serde_json::json!({
                            "op": "create", "title": format!("Planned follow-up {n}")
                        })
                        .to_string(),
                        ..Default::default()
                    }],
                    request_id: String::new(),
                },
            ))
        );
        call!(
            stats,
            "LogMood",
            c.mood.log_mood(authed(
                token,
                LogMoodRequest {
                    score: (n % 5 + 1) as i32,
                    energy: (n % 5 + 1) as i32,
                    ..Default::default()
                },
            ))
        );
        let session = call!(
            stats,
            "StartSession",
            c.focus.start_session(authed(
                token,
                StartSessionRequest {
                    kind: SessionKind::Focus as i32,
                    planned_minutes: 25,
                    ..Default::default()
                },
            ))
        );
        if let Some(s) = session.and_then(|s| s.session) {
            call!(
                stats,
                "CompleteSession",
                c.focus.complete_session(authed(
                    token,
                    CompleteSessionRequest {
                        id: s.id,
                        request_id: String::new(),
                    },
                ))
            );
        }
    }
}

fn start_server(bin: &std::path::Path, dir: &std::path::Path, port: u16) -> Child {
    Command::new(bin)
        .arg("serve")
        .env("FOCUSFORGE_DATA_DIR", dir)
        .env("FOCUSFORGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FOCUSFORGE_JWT_SECRET", SECRET)
        .env("FOCUSFORGE_LLM_BACKEND", "none")
        .env("FOCUSFORGE_WEB_DIR", "")
        .env("FOCUSFORGE_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start focusforge")
}

#[tokio::main]
async fn main() {
    let clients: usize = arg("--clients").and_then(|v| v.parse().ok()).unwrap_or(64);
    let seconds: u64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(600);
    let bin = arg("--bin").map_or_else(focusforge_binary, std::path::PathBuf::from);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut server = start_server(&bin, dir.path(), port);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        if let Ok(ch) = Channel::from_shared(url.clone())
            .expect("uri")
            .connect()
            .await
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
            if health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok()
            {
                break ch;
            }
        }
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(first);
    let minter =
        Minter::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None).expect("minter");
    let stats = Arc::new(Mutex::new(Stats::default()));
    let events = Arc::new(AtomicU64::new(0));
    let rounds = Arc::new(AtomicU64::new(0));
    let warm = Duration::from_secs((seconds / 20).clamp(2, 30));
    let start = Instant::now();
    let stop_at = start + Duration::from_secs(seconds);
    let mut handles = Vec::new();
    for i in 0..clients {
        let user = UserId::parse(&format!("load-user-{i}")).expect("user");
        let token = minter.mint(&user, 24 * 3600).expect("token");
        let channel = Channel::from_shared(url.clone())
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        let (stats, events, rounds) = (stats.clone(), events.clone(), rounds.clone());
        handles.push(tokio::spawn(async move {
            let mut sub = EventServiceClient::new(channel.clone());
            let mut req = tonic::Request::new(SubscribeRequest::default());
            req.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("value"),
            );
            let stream = sub.subscribe(req).await;
            let listener = stream.ok().map(|s| {
                let events = events.clone();
                tokio::spawn(async move {
                    let mut s = s.into_inner();
                    while let Ok(Some(_)) = s.message().await {
                        events.fetch_add(1, Ordering::Relaxed);
                    }
                })
            });
            let mut c = Clients {
                tasks: TaskServiceClient::new(channel.clone()),
                memory: MemoryServiceClient::new(channel.clone()),
                chain: ChainServiceClient::new(channel.clone()),
                planner: PlannerServiceClient::new(channel.clone()),
                mood: MoodServiceClient::new(channel.clone()),
                focus: FocusServiceClient::new(channel),
            };
            let mut n = i as u64;
            let mut local = Stats::default();
            while Instant::now() < stop_at {
                let measuring = Instant::now() >= start + warm;
                let mut s = Stats::default();
                round(&mut c, &token, n, &mut s).await;
                if measuring {
                    for (k, v) in s.latencies {
                        local.latencies.entry(k).or_default().extend(v);
                    }
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
                for (k, v) in s.errors {
                    *local.errors.entry(k).or_default() += v;
                }
                n += clients as u64;
            }
            if let Some(l) = listener {
                l.abort();
            }
            let mut all = stats.lock().await;
            for (k, v) in local.latencies {
                all.latencies.entry(k).or_default().extend(v);
            }
            for (k, v) in local.errors {
                *all.errors.entry(k).or_default() += v;
            }
        }));
    }
    tokio::time::sleep(warm).await;
    let rss_start = rss_kib(server.id());
    let mut rss_peak = rss_start;
    while Instant::now() < stop_at {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_peak = rss_peak.max(rss_kib(server.id()));
    }
    for h in handles {
        let _ = h.await;
    }
    let rss_end = rss_kib(server.id());
    let measured = (seconds as f64 - warm.as_secs_f64()).max(1.0);
    let mut stats = stats.lock().await;
    let mut all: Vec<Duration> = stats.latencies.values().flatten().copied().collect();
    all.sort();
    println!(
        "load: {clients} clients, {seconds} s ({} s warm-up not measured), binary {}",
        warm.as_secs(),
        bin.display()
    );
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9}",
        "call", "calls", "p50 ms", "p99 ms", "p99.9 ms"
    );
    for (name, v) in stats.latencies.iter_mut() {
        v.sort();
        println!(
            "{name:<16} {:>9} {:>9.2} {:>9.2} {:>9.2}",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 0.999)
        );
    }
    let errors: u64 = stats.errors.values().sum();
    println!(
        "{:<16} {:>9} {:>9.2} {:>9.2} {:>9.2}",
        "all",
        all.len(),
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&all, 0.999)
    );
    println!(
        "calls/s {:.0}, rounds {}, events received {}, errors {errors} {:?}",
        all.len() as f64 / measured,
        rounds.load(Ordering::Relaxed),
        events.load(Ordering::Relaxed),
        stats.errors
    );
    let growth = if rss_start > 0 {
        (rss_end as f64 / rss_start as f64 - 1.0) * 100.0
    } else {
        0.0
    };
    println!(
        "server RSS: {} MiB after warm-up, {} MiB at the end ({growth:+.1} %), peak {} MiB",
        rss_start / 1024,
        rss_end / 1024,
        rss_peak / 1024
    );
    let _ = server.kill();
    let _ = server.wait();
    if errors > 0 {
        std::process::exit(1);
    }
}
