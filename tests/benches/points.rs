//! Points throughput, side by side with what a team would otherwise build
//! a points balance on (a Redis counter with a Lua check-and-decrement),
//! in one process:
//!
//! - `complete+award`: `CompleteTask` through the gateway on fresh tasks;
//!   each completion awards its points through the in-process mesh with the
//!   key `task-completed:<id>` (wallet write plus ledger entry);
//! - `retried complete`: `CompleteTask` again on completed tasks: the award
//!   is looked up by its key and not made again;
//! - `redeem, 1 wallet`: `--concurrency` callers redeeming a 1-point reward
//!   from one user's wallet through the gateway (every write contends);
//! - `redis lua redeem`: the same contention on a Redis balance, one Lua
//!   script per redemption (idempotency key SET NX, balance check,
//!   DECRBY, ledger RPUSH), on a local `redis-server`.
//!
//! `cargo bench -p focusforge-tests --bench points -- --seconds 5 --concurrency 16`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use focusforge_auth::{KeyMaterial, Minter};
use focusforge_core::UserId;
use focusforge_proto::gamification::v1::gamification_service_client::GamificationServiceClient;
use focusforge_proto::gamification::v1::{CreateRewardRequest, RedeemRequest};
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_proto::tasks::v1::{CompleteTaskRequest, CreateTaskRequest};
use focusforge_server::Config;
use tokio::net::TcpListener;
use tonic::transport::Channel;

const SECRET: &str = "benchmark-secret-0123456789abcdef0123456789";

fn arg(name: &str, default: u64) -> u64 {
    let argv: Vec<String> = std::env::args().collect();
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn token(user: &str) -> String {
    Minter::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None)
        .expect("minter")
        .mint(&UserId::parse(user).expect("user"), 3600)
        .expect("mint")
}

fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("value"),
    );
    req
}

struct Report {
    calls: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Report {
    fn print(mut self, name: &str) {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
            self.latencies_us.get(i).copied().unwrap_or_default()
        };
        println!(
            "{name:<20} {:>10.0} {:>9} {:>9} {:>7}",
            self.calls as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            self.errors,
        );
    }
}

/// Runs `call` from `concurrency` callers for `seconds`; `call` returns
/// whether the call did what was expected.
async fn run<F, Fut>(concurrency: usize, seconds: u64, call: F) -> Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let call = call.clone();
        workers.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0, 0);
            while Instant::now() < until {
                let t = Instant::now();
                if call(w * 1_000_000 + i).await {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut r = Report {
        calls: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for w in workers {
        let (lat, errors) = w.await.expect("worker");
        r.calls += lat.len();
        r.errors += errors;
        r.latencies_us.extend(lat);
    }
    r.elapsed = started.elapsed();
    r
}

async fn new_task(tasks: &mut TaskServiceClient<Channel>, token: &str) -> String {
    tasks
        .create_task(authed(
            token,
            CreateTaskRequest {
                title: "benchmark task".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task")
        .id
}

#[tokio::main]
async fn main() {
    let seconds = arg("--seconds", 5);
    let concurrency = arg("--concurrency", 16) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        log_level: "error".into(),
        auth: focusforge_server::config::AuthConfig {
            jwt_secret: Some(SECRET.into()),
            ..Default::default()
        },
        ..Config::default()
    };
    cfg.llm.backend = "none".into();
    cfg.services = ["tasks", "users", "gamification", "jobs"]
        .map(String::from)
        .to_vec();
    // One completed task funds the redemptions.
    cfg.service.insert(
        "gamification".into(),
        toml::from_str("task_points = 10000000").expect("settings"),
    );
    let serve =
        focusforge_server::start(&cfg, TcpListener::bind("127.0.0.1:0").await.expect("bind"))
            .await
            .expect("start");
    let channel = Channel::from_shared(format!("http://{}", serve.local_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    println!(
        "{concurrency} callers, {seconds} s each, {} cores; latency in microseconds",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<20} {:>10} {:>9} {:>9} {:>7}",
        "path", "calls/s", "p50", "p99", "errors"
    );

    // Completions on fresh tasks: the tasks are created first.
    let awarder = Arc::new(token("awarder"));
    let mut tasks = TaskServiceClient::new(channel.clone());
    let per_caller = 400;
    let mut ids = Vec::new();
    for _ in 0..concurrency * per_caller {
        ids.push(new_task(&mut tasks, &awarder).await);
    }
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let (ch, tk, ix, nx) = (channel.clone(), awarder.clone(), ids.clone(), next.clone());
    run(concurrency, seconds, move |_| {
        let (mut tasks, token, ids, next) = (
            TaskServiceClient::new(ch.clone()),
            tk.clone(),
            ix.clone(),
            nx.clone(),
        );
        async move {
            let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return false;
            };
            tasks
                .complete_task(authed(
                    &token,
                    CompleteTaskRequest {
                        id: id.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .is_ok()
        }
    })
    .await
    .print("complete+award");
    let done = next.load(Ordering::Relaxed).min(ids.len());
    let (ch, tk, ix) = (channel.clone(), awarder.clone(), ids.clone());
    run(concurrency, seconds, move |i| {
        let (mut tasks, token, ids) = (TaskServiceClient::new(ch.clone()), tk.clone(), ix.clone());
        async move {
            let id = ids[i % done.max(1)].clone();
            let r = tasks
                .complete_task(authed(
                    &token,
                    CompleteTaskRequest {
                        id,
                        ..Default::default()
                    },
                ))
                .await;
            matches!(r, Err(s) if s.code() == tonic::Code::FailedPrecondition)
        }
    })
    .await
    .print("retried complete");

    // One wallet, every caller redeeming from it.
    let spender = token("spender");
    let funding = new_task(&mut tasks, &spender).await;
    tasks
        .complete_task(authed(
            &spender,
            CompleteTaskRequest {
                id: funding,
                ..Default::default()
            },
        ))
        .await
        .expect("fund");
    let reward = GamificationServiceClient::new(channel.clone())
        .create_reward(authed(
            &spender,
            CreateRewardRequest {
                name: "a minute off".into(),
                description: String::new(),
                cost: 1,
            },
        ))
        .await
        .expect("reward")
        .into_inner()
        .reward
        .expect("reward")
        .id;
    let (ch, tk) = (channel.clone(), Arc::new(spender));
    run(concurrency, seconds, move |i| {
        let (mut game, token, item) = (
            GamificationServiceClient::new(ch.clone()),
            tk.clone(),
            reward.clone(),
        );
        async move {
            game.redeem(authed(
                &token,
                RedeemRequest {
                    item_id: item,
                    request_id: format!("r{i}"),
                },
            ))
            .await
            .is_ok()
        }
    })
    .await
    .print("redeem, 1 wallet");

    // The same contention on Redis.
    match redis_server() {
        Some((child, url)) => {
            redis_redeem(&url, concurrency, seconds)
                .await
                .print("redis lua redeem");
            let mut child = child;
            let _ = child.kill();
        }
        None => println!("redis lua redeem     (no redis-server on PATH)"),
    }
    serve.shutdown().await;
}

fn redis_server() -> Option<(std::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, format!("redis://127.0.0.1:{port}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

const REDEEM: &str = r#"
if redis.call('SET', KEYS[3], 1, 'NX') == false then return -1 end
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost = tonumber(ARGV[1])
if balance < cost then redis.call('DEL', KEYS[3]) return 0 end
local after = redis.call('DECRBY', KEYS[1], cost)
redis.call('RPUSH', KEYS[2], ARGV[2] .. ':' .. after)
return 1
"#;

async fn redis_redeem(url: &str, concurrency: usize, seconds: u64) -> Report {
    let pool = deadpool_redis::Config::from_url(url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("pool");
    {
        let mut c = pool.get().await.expect("conn");
        let _: () = redis::cmd("SET")
            .arg("balance")
            .arg(10_000_000)
            .query_async(&mut c)
            .await
            .expect("seed");
    }
    let script = Arc::new(redis::Script::new(REDEEM));
    run(concurrency, seconds, move |i| {
        let (pool, script) = (pool.clone(), script.clone());
        async move {
            let Ok(mut c) = pool.get().await else {
                return false;
            };
            let r: redis::RedisResult<i64> = script
                .key("balance")
                .key("ledger")
                .key(format!("redeem:r{i}"))
                .arg(1)
                .arg(format!("r{i}"))
                .invoke_async(&mut c)
                .await;
            matches!(r, Ok(1))
        }
    })
    .await
}
