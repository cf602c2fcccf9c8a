//! Workers on real time against both backends: caps, priority under load,
//! retries, cancellation, and Redis going away and coming back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use focusforge_cache::testing::RedisServer;
use focusforge_core::{Priority, SystemClock};
use focusforge_jobs::{
    EmbeddedQueue, Handler, Handlers, JobContext, JobError, JobFilter, JobState, Jobs,
    ResilientQueue, Worker, WorkerSettings,
};

use crate::support::{Backend, embedded, eventually, fast_retry, redis, redis_queue, spec, user};

fn settings(concurrency: usize) -> WorkerSettings {
    WorkerSettings {
        name: "test-worker".into(),
        concurrency,
        per_kind: HashMap::new(),
        skip_kinds: Vec::new(),
        visibility: Duration::from_secs(5),
        poll: Duration::from_millis(20),
        recover_every: Duration::from_millis(200),
        retention: Duration::from_secs(3600),
    }
}

/// Counts jobs running at once, overall and per kind, and keeps the peaks.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
    kinds: Mutex<HashMap<String, (usize, usize)>>,
    done: Mutex<Vec<String>>,
}

#[async_trait]
impl Handler for Gauge {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        {
            let mut kinds = self.kinds.lock().expect("lock");
            let k = kinds.entry(ctx.job.spec.kind.clone()).or_default();
            k.0 += 1;
            k.1 = k.1.max(k.0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        {
            let mut kinds = self.kinds.lock().expect("lock");
            if let Some(k) = kinds.get_mut(&ctx.job.spec.kind) {
                k.0 -= 1;
            }
        }
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.done.lock().expect("lock").push(ctx.job.id.clone());
        Ok(())
    }
}

async fn caps_are_never_exceeded(b: Backend) {
    let gauge = Arc::new(Gauge::default());
    let mut handlers = Handlers::new();
    handlers.register("capped", gauge.clone());
    handlers.register("free", gauge.clone());
    let jobs = Jobs::new(b.queue.clone(), Arc::new(SystemClock));
    for i in 0..300 {
        let kind = if i % 3 == 0 { "capped" } else { "free" };
        jobs.enqueue(spec(kind, "alice")).await.expect("enqueue");
    }
    let mut s = settings(8);
    s.per_kind.insert("capped".into(), 2);
    let worker = Worker::spawn(jobs.clone(), handlers, s);
    eventually(60, "all jobs done", || async {
        gauge.done.lock().expect("lock").len() == 300
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    let peak = gauge.peak.load(Ordering::SeqCst);
    let capped_peak = gauge.kinds.lock().expect("lock")["capped"].1;
    println!(
        "{}: peak {peak} running (cap 8), capped kind peak {capped_peak} (cap 2)",
        b.queue.backend()
    );
    assert!(peak <= 8, "global cap exceeded: {peak}");
    assert!(capped_peak <= 2, "per-kind cap exceeded: {capped_peak}");
    assert!(peak > 2, "jobs ran concurrently: {peak}");
    let done = gauge.done.lock().expect("lock").clone();
    assert_eq!(
        done.iter().collect::<HashSet<_>>().len(),
        300,
        "each job ran once"
    );
    let stats = jobs.stats(&user("alice")).await.expect("stats");
    assert_eq!(stats.count(JobState::Succeeded), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_caps_are_never_exceeded() {
    caps_are_never_exceeded(embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_caps_are_never_exceeded() {
    caps_are_never_exceeded(redis()).await;
}

/// Records the order jobs start in.
struct Order(Mutex<Vec<String>>);

#[async_trait]
impl Handler for Order {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        self.0.lock().expect("lock").push(ctx.job.spec.kind.clone());
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    }
}

async fn a_critical_job_overtakes_a_flood(b: Backend) {
    let order = Arc::new(Order(Mutex::new(Vec::new())));
    let mut handlers = Handlers::new();
    handlers.register("flood", order.clone());
    handlers.register("urgent", order.clone());
    let jobs = Jobs::new(b.queue.clone(), Arc::new(SystemClock));
    for _ in 0..400 {
        let mut s = spec("flood", "alice");
        s.priority = Priority::Background;
        jobs.enqueue(s).await.expect("enqueue");
    }
    let worker = Worker::spawn(jobs.clone(), handlers, settings(1));
    eventually(30, "the flood started", || async {
        order.0.lock().expect("lock").len() >= 20
    })
    .await;
    let mut urgent = spec("urgent", "alice");
    urgent.priority = Priority::Critical;
    jobs.enqueue(urgent).await.expect("enqueue");
    // Counted once the job is queued: any job started later was taken
    // after it existed, except the one the worker may hold already.
    let before = order.0.lock().expect("lock").len();
    eventually(30, "the urgent job ran", || async {
        order.0.lock().expect("lock").iter().any(|k| k == "urgent")
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    let order = order.0.lock().expect("lock").clone();
    let at = order.iter().position(|k| k == "urgent").expect("ran");
    println!(
        "{}: urgent job enqueued after {before} starts, started as number {}",
        b.queue.backend(),
        at + 1
    );
    assert!(
        at <= before + 1,
        "started {} jobs after being enqueued",
        at - before
    );
    assert!(order.len() < 400, "it did not wait for the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_critical_job_overtakes_a_flood() {
    a_critical_job_overtakes_a_flood(embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_critical_job_overtakes_a_flood() {
    a_critical_job_overtakes_a_flood(redis()).await;
}

/// Fails the first `fail` deliveries of each job, then succeeds.
struct Flaky {
    fail: u32,
    kind: &'static str,
}

#[async_trait]
impl Handler for Flaky {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        if ctx.job.attempts <= self.fail {
            return Err(JobError::new(
                self.kind,
                format!("attempt {}", ctx.job.attempts),
            ));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_retry_then_dead_letter() {
    let b = redis();
    let mut handlers = Handlers::new();
    handlers.register(
        "flaky",
        Arc::new(Flaky {
            fail: 2,
            kind: "unavailable",
        }),
    );
    handlers.register(
        "doomed",
        Arc::new(Flaky {
            fail: 99,
            kind: "unavailable",
        }),
    );
    handlers.register(
        "invalid",
        Arc::new(Flaky {
            fail: 99,
            kind: "invalid_argument",
        }),
    );
    let jobs = Jobs::new(b.queue.clone(), Arc::new(SystemClock));
    let mut ids = HashMap::new();
    for kind in ["flaky", "doomed", "invalid", "unknown"] {
        let mut s = spec(kind, "alice");
        s.retry = fast_retry(3);
        ids.insert(kind, jobs.enqueue(s).await.expect("enqueue").id);
    }
    let worker = Worker::spawn(jobs.clone(), handlers, settings(4));
    let alice = user("alice");
    eventually(30, "every job finished", || async {
        let (all, _) = jobs
            .list(&alice, &JobFilter::default(), 10, None)
            .await
            .expect("list");
        all.iter().all(|j| j.state.is_terminal())
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    let get = |kind: &str| {
        let id = ids[kind].clone();
        let jobs = jobs.clone();
        let alice = alice.clone();
        async move { jobs.get(&alice, &id).await.expect("get").expect("job") }
    };
    let flaky = get("flaky").await;
    assert_eq!((flaky.state, flaky.attempts), (JobState::Succeeded, 3));
    let doomed = get("doomed").await;
    assert_eq!((doomed.state, doomed.attempts), (JobState::Dead, 3));
    assert_eq!(doomed.last_error.as_deref(), Some("unavailable: attempt 3"));
    let invalid = get("invalid").await;
    assert_eq!((invalid.state, invalid.attempts), (JobState::Failed, 1));
    let unknown = get("unknown").await;
    assert_eq!(
        unknown.state,
        JobState::Dead,
        "no handler anywhere: dead-lettered"
    );
    assert!(unknown.last_error.expect("error").contains("no handler"));
}

/// Works until cancelled.
struct Patient;

#[async_trait]
impl Handler for Patient {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        tokio::select! {
            () = ctx.cancelled() => Err(JobError::cancelled()),
            () = tokio::time::sleep(Duration::from_secs(60)) => Ok(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_stops_when_cancelled() {
    for b in [embedded(), redis()] {
        let mut handlers = Handlers::new();
        handlers.register("patient", Arc::new(Patient));
        let jobs = Jobs::new(b.queue.clone(), Arc::new(SystemClock));
        let id = jobs
            .enqueue(spec("patient", "alice"))
            .await
            .expect("enqueue")
            .id;
        let mut s = settings(2);
        s.visibility = Duration::from_millis(300);
        let worker = Worker::spawn(jobs.clone(), handlers, s);
        let alice = user("alice");
        eventually(10, "running", || async {
            jobs.get(&alice, &id)
                .await
                .expect("get")
                .expect("job")
                .state
                == JobState::Running
        })
        .await;
        jobs.cancel(&alice, &id).await.expect("cancel");
        eventually(10, "cancelled", || async {
            jobs.get(&alice, &id)
                .await
                .expect("get")
                .expect("job")
                .state
                == JobState::Cancelled
        })
        .await;
        worker.shutdown(Duration::from_secs(5)).await;
    }
}

/// Records which jobs ran.
#[derive(Default)]
struct Seen(Mutex<HashSet<String>>);

#[async_trait]
impl Handler for Seen {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.0.lock().expect("lock").insert(ctx.job.id.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_job_is_lost_when_redis_dies_and_comes_back() {
    let aof = tempfile::tempdir().expect("tempdir");
    let mut server = RedisServer::start_persistent(aof.path());
    let file = tempfile::tempdir().expect("tempdir");
    let queue = Arc::new(ResilientQueue::new(
        redis_queue(&server, "restart:jobs"),
        EmbeddedQueue::open(&file.path().join("jobs.db")).expect("open"),
    ));
    let jobs = Jobs::new(queue.clone(), Arc::new(SystemClock));
    let seen = Arc::new(Seen::default());
    let mut handlers = Handlers::new();
    handlers.register("work", seen.clone());
    let mut s = settings(4);
    s.visibility = Duration::from_secs(2);
    let worker = Worker::spawn(jobs.clone(), handlers, s);

    let mut ids = HashSet::new();
    for i in 0..300 {
        if i == 100 {
            server.kill();
        }
        if i == 200 {
            server.restart();
        }
        ids.insert(
            jobs.enqueue(spec("work", "alice"))
                .await
                .expect("enqueue never fails")
                .id,
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(ids.len(), 300);
    let spilled = queue.spilled();
    assert!(
        spilled >= 100,
        "jobs enqueued while redis was down went to the file: {spilled}"
    );
    eventually(60, "every job ran", || async {
        seen.0.lock().expect("lock").len() == 300
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await;
    assert_eq!(*seen.0.lock().expect("lock"), ids);
    let alice = user("alice");
    eventually(20, "every job settled", || async {
        jobs.stats(&alice)
            .await
            .is_ok_and(|s| s.count(JobState::Succeeded) == 300)
    })
    .await;
    println!("redis restart: 300 jobs, {spilled} spilled to the embedded queue, all succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sharing_a_queue_take_only_the_kinds_they_run() {
    for b in [embedded(), redis()] {
        let jobs = Jobs::new(b.queue.clone(), Arc::new(SystemClock));
        let alice = user("alice");
        let mut ids = Vec::new();
        for i in 0..20 {
            let kind = if i % 2 == 0 { "timer" } else { "award" };
            ids.push(jobs.enqueue(spec(kind, "alice")).await.expect("enqueue").id);
        }
        // Two processes of a mesh: each runs one kind and leaves the other.
        let spawn = |mine: &str, theirs: &str| {
            let gauge = Arc::new(Gauge::default());
            let mut handlers = Handlers::new();
            handlers.register(mine, gauge.clone());
            let mut s = settings(4);
            s.skip_kinds = vec![theirs.to_owned()];
            (gauge, Worker::spawn(jobs.clone(), handlers, s))
        };
        let (timers, a) = spawn("timer", "award");
        let (awards, b2) = spawn("award", "timer");
        eventually(30, "every job done", || async {
            timers.done.lock().expect("lock").len() + awards.done.lock().expect("lock").len() == 20
        })
        .await;
        for id in &ids {
            let job = jobs.get(&alice, id).await.expect("get").expect("job");
            assert_eq!(
                job.state,
                JobState::Succeeded,
                "no job failed for want of a handler"
            );
        }
        assert_eq!(timers.done.lock().expect("lock").len(), 10);
        assert_eq!(awards.done.lock().expect("lock").len(), 10);
        a.shutdown(Duration::from_secs(5)).await;
        b2.shutdown(Duration::from_secs(5)).await;
    }
}
