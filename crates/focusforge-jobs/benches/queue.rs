//! Job throughput and enqueue-to-start latency, Redis against the embedded
//! queue, with 1 and 8 workers, next to a bare Redis list (LPUSH and
//! BLMOVE, no leases, retries or bookkeeping) as the floor a hand-rolled
//! queue would give.
//!
//! `cargo bench -p focusforge-jobs --bench queue` (needs `redis-server`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_redis::redis;
use focusforge_cache::testing::RedisServer;
use focusforge_core::{SystemClock, UserId};
use focusforge_jobs::{
    EmbeddedQueue, Handler, Handlers, JobContext, JobError, JobSpec, Jobs, Queue, RedisQueue,
    RedisQueueSettings, Worker, WorkerSettings,
};

const THROUGHPUT_JOBS: usize = 4_000;
const LATENCY_JOBS: usize = 400;
const LATENCY_GAP: Duration = Duration::from_millis(3);

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Counts jobs and, for latency runs, how long each waited to start.
#[derive(Default)]
struct Probe {
    done: AtomicUsize,
    waits: Mutex<Vec<u64>>,
}

#[async_trait]
impl Handler for Probe {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        if let Some(at) = ctx
            .job
            .spec
            .payload
            .get("enqueued_us")
            .and_then(|v| v.as_u64())
        {
            let wait = micros_now().saturating_sub(at);
            self.waits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(wait);
        }
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn user() -> UserId {
    UserId::parse("bench").unwrap_or_else(|_| unreachable!("valid user id"))
}

fn workers(jobs: &Jobs, probe: &Arc<Probe>, n: usize) -> Vec<Worker> {
    (0..n)
        .map(|i| {
            let mut handlers = Handlers::new();
            handlers.register("bench", probe.clone());
            Worker::spawn(
                jobs.clone(),
                handlers,
                WorkerSettings {
                    name: format!("bench-{i}"),
                    concurrency: 1,
                    per_kind: HashMap::new(),
                    poll: Duration::from_millis(50),
                    ..WorkerSettings::default()
                },
            )
        })
        .collect()
}

async fn wait_for(probe: &Probe, n: usize) {
    while probe.done.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Jobs per second draining a full queue.
async fn throughput(queue: Arc<dyn Queue>, n_workers: usize) -> f64 {
    let jobs = Jobs::new(queue, Arc::new(SystemClock));
    for _ in 0..THROUGHPUT_JOBS {
        jobs.enqueue(JobSpec::new("bench", user(), serde_json::json!({})))
            .await
            .unwrap_or_else(|e| panic!("enqueue: {e}"));
    }
    let probe = Arc::new(Probe::default());
    let start = Instant::now();
    let running = workers(&jobs, &probe, n_workers);
    wait_for(&probe, THROUGHPUT_JOBS).await;
    let rate = THROUGHPUT_JOBS as f64 / start.elapsed().as_secs_f64();
    for w in running {
        w.shutdown(Duration::from_secs(5)).await;
    }
    rate
}

/// Enqueue-to-start p50 and p99 in milliseconds, jobs arriving one by one.
async fn latency(queue: Arc<dyn Queue>, n_workers: usize) -> (f64, f64) {
    let jobs = Jobs::new(queue, Arc::new(SystemClock));
    let probe = Arc::new(Probe::default());
    let running = workers(&jobs, &probe, n_workers);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..LATENCY_JOBS {
        let payload = serde_json::json!({"enqueued_us": micros_now()});
        jobs.enqueue(JobSpec::new("bench", user(), payload))
            .await
            .unwrap_or_else(|e| panic!("enqueue: {e}"));
        tokio::time::sleep(LATENCY_GAP).await;
    }
    wait_for(&probe, LATENCY_JOBS).await;
    for w in running {
        w.shutdown(Duration::from_secs(5)).await;
    }
    let mut waits = probe
        .waits
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    waits.sort_unstable();
    let pick = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    (pick(0.50), pick(0.99))
}

/// A bare Redis list: producers LPUSH, `n` consumers BLMOVE into a
/// processing list and LREM when done.
async fn bare_list_throughput(url: &str, n_workers: usize) -> f64 {
    let pool = deadpool_redis::Config::from_url(url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap_or_else(|e| panic!("pool: {e}"));
    let mut conn = pool.get().await.unwrap_or_else(|e| panic!("conn: {e}"));
    let key = format!("bare:{n_workers}");
    for i in 0..THROUGHPUT_JOBS {
        let body = serde_json::json!({"id": i, "kind": "bench"}).to_string();
        redis::cmd("LPUSH")
            .arg(&key)
            .arg(body)
            .query_async::<()>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("lpush: {e}"));
    }
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..n_workers {
        let pool = pool.clone();
        let done = done.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap_or_else(|e| panic!("conn: {e}"));
            let processing = format!("{key}:processing:{w}");
            loop {
                let item: Option<String> = redis::cmd("BLMOVE")
                    .arg(&key)
                    .arg(&processing)
                    .arg("RIGHT")
                    .arg("LEFT")
                    .arg(0.05)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("blmove: {e}"));
                let Some(item) = item else { break };
                redis::cmd("LREM")
                    .arg(&processing)
                    .arg(1)
                    .arg(item)
                    .query_async::<()>(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("lrem: {e}"));
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    assert_eq!(done.load(Ordering::SeqCst), THROUGHPUT_JOBS);
    THROUGHPUT_JOBS as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "job queue: {THROUGHPUT_JOBS} no-op jobs drained for throughput; {LATENCY_JOBS} jobs \
         arriving every {} ms for latency; {cpus} CPUs",
        LATENCY_GAP.as_millis()
    );
    println!(
        "{:<34} {:>8} {:>12} {:>10} {:>10}",
        "backend", "workers", "jobs/s", "p50 ms", "p99 ms"
    );
    runtime.block_on(async {
        let mut run = 0;
        for n in [1usize, 8] {
            for backend in ["redis", "embedded"] {
                run += 1;
                let make = || -> Arc<dyn Queue> {
                    match backend {
                        "redis" => Arc::new(
                            RedisQueue::new(&RedisQueueSettings {
                                url: server.url(),
                                prefix: format!("bench:{run}:{}", rand_suffix()),
                                ..RedisQueueSettings::default()
                            })
                            .unwrap_or_else(|e| panic!("redis queue: {e}")),
                        ),
                        _ => Arc::new(
                            EmbeddedQueue::open(
                                &dir.path().join(format!("jobs-{run}-{}.db", rand_suffix())),
                            )
                            .unwrap_or_else(|e| panic!("embedded queue: {e}")),
                        ),
                    }
                };
                let rate = throughput(make(), n).await;
                let (p50, p99) = latency(make(), n).await;
                println!(
                    "{:<34} {:>8} {:>12.0} {:>10.2} {:>10.2}",
                    format!("focusforge {backend}"),
                    n,
                    rate,
                    p50,
                    p99
                );
            }
            let bare = bare_list_throughput(&server.url(), n).await;
            println!(
                "{:<34} {:>8} {:>12.0} {:>10} {:>10}",
                "bare redis list (LPUSH/BLMOVE)", n, bare, "-", "-"
            );
        }
    });
}

fn rand_suffix() -> u64 {
    micros_now()
}
