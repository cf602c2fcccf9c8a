//! A worker process killed with SIGKILL in the middle of a job: the job
//! is delivered again after the visibility timeout and completed by
//! another worker, and its effect, keyed by the idempotency key, happens
//! once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use focusforge_cache::testing::RedisServer;
use focusforge_core::SystemClock;
use focusforge_jobs::{
    Handler, Handlers, JobContext, JobError, JobState, Jobs, Worker, WorkerSettings,
};
use rusqlite::{Connection, params};

use crate::support::{eventually, redis_queue, spec, user};

const PREFIX: &str = "crash:jobs";

/// Applies a transfer once per idempotency key: the effect is a row in an
/// SQLite file both processes share.
struct Transfer {
    effects: PathBuf,
    /// Signal the parent and then hang, as a job stuck mid-way would.
    hang_after: Option<PathBuf>,
    replays: Arc<AtomicU32>,
    worker: String,
}

fn effects_db(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("effects db");
    conn.busy_timeout(Duration::from_secs(5)).expect("timeout");
    conn.execute_batch("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, worker TEXT)")
        .expect("schema");
    conn
}

#[async_trait]
impl Handler for Transfer {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let key = ctx
            .job
            .spec
            .idempotency_key
            .clone()
            .ok_or_else(|| JobError::new("invalid_argument", "no idempotency key"))?;
        let applied = effects_db(&self.effects)
            .execute(
                "INSERT OR IGNORE INTO effects (key, worker) VALUES (?1, ?2)",
                params![key, self.worker],
            )
            .map_err(|e| JobError::new("unavailable", e.to_string()))?;
        if applied == 0 {
            self.replays.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(marker) = &self.hang_after {
            std::fs::write(marker, b"applied").expect("marker");
            tokio::time::sleep(Duration::from_secs(300)).await;
        }
        Ok(())
    }
}

fn worker_settings(name: &str, visibility: Duration) -> WorkerSettings {
    WorkerSettings {
        name: name.into(),
        concurrency: 2,
        visibility,
        poll: Duration::from_millis(20),
        recover_every: Duration::from_millis(100),
        ..WorkerSettings::default()
    }
}

/// The child process of `a_job_survives_its_worker_being_killed`.
#[tokio::test]
#[ignore = "run as a child process by a_job_survives_its_worker_being_killed"]
async fn crash_child_worker() {
    let url = std::env::var("FF_CRASH_REDIS").expect("FF_CRASH_REDIS");
    let dir = PathBuf::from(std::env::var_os("FF_CRASH_DIR").expect("FF_CRASH_DIR"));
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let server = RedisServerRef(port);
    let jobs = Jobs::new(Arc::new(server.queue()), Arc::new(SystemClock));
    let mut handlers = Handlers::new();
    handlers.register(
        "transfer",
        Arc::new(Transfer {
            effects: dir.join("effects.db"),
            hang_after: Some(dir.join("applied")),
            replays: Arc::default(),
            worker: "doomed".into(),
        }),
    );
    let _worker = Worker::spawn(
        jobs,
        handlers,
        // Long enough that a stalled heartbeat on a busy machine does not
        // let the doomed worker's lease lapse before it is killed.
        worker_settings("doomed", Duration::from_secs(3)),
    );
    tokio::time::sleep(Duration::from_secs(300)).await;
}

/// A queue on a server started by another process.
struct RedisServerRef(u16);

impl RedisServerRef {
    fn queue(&self) -> focusforge_jobs::RedisQueue {
        focusforge_jobs::RedisQueue::new(&focusforge_jobs::RedisQueueSettings {
            url: format!("redis://127.0.0.1:{}", self.0),
            prefix: PREFIX.into(),
            ..Default::default()
        })
        .expect("queue")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_its_worker_being_killed() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = Jobs::new(
        Arc::new(redis_queue(&server, PREFIX)),
        Arc::new(SystemClock),
    );
    let mut s = spec("transfer", "alice");
    s.idempotency_key = Some("transfer-42".into());
    let id = jobs.enqueue(s.clone()).await.expect("enqueue").id;
    assert_eq!(
        jobs.enqueue(s).await.expect("again").id,
        id,
        "enqueued once"
    );

    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--ignored", "--exact", "crash::crash_child_worker"])
        .env("FF_CRASH_REDIS", server.url())
        .env("FF_CRASH_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the worker");
    let marker = dir.path().join("applied");
    eventually(60, "the child applied the transfer", || async {
        marker.exists()
    })
    .await;
    let alice = user("alice");
    let job = jobs.get(&alice, &id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.worker.as_deref(), Some("doomed"));
    child.kill().expect("kill -9");
    child.wait().expect("wait");

    let replays = Arc::new(AtomicU32::new(0));
    let mut handlers = Handlers::new();
    handlers.register(
        "transfer",
        Arc::new(Transfer {
            effects: dir.path().join("effects.db"),
            hang_after: None,
            replays: replays.clone(),
            worker: "survivor".into(),
        }),
    );
    let started = std::time::Instant::now();
    let worker = Worker::spawn(
        jobs.clone(),
        handlers,
        worker_settings("survivor", Duration::from_secs(5)),
    );
    eventually(30, "another worker completed the job", || async {
        jobs.get(&alice, &id)
            .await
            .expect("get")
            .expect("job")
            .state
            == JobState::Succeeded
    })
    .await;
    println!(
        "redelivered and completed {:?} after the kill",
        started.elapsed()
    );
    worker.shutdown(Duration::from_secs(5)).await;

    let job = jobs.get(&alice, &id).await.expect("get").expect("job");
    assert_eq!(job.attempts, 2, "delivered twice");
    assert_eq!(job.worker.as_deref(), Some("survivor"));
    assert_eq!(
        replays.load(Ordering::SeqCst),
        1,
        "the survivor saw the effect applied"
    );
    let effects: Vec<(String, String)> = effects_db(&dir.path().join("effects.db"))
        .prepare("SELECT key, worker FROM effects")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        effects,
        [("transfer-42".to_owned(), "doomed".to_owned())],
        "applied exactly once"
    );
    let stats = jobs.stats(&alice).await.expect("stats");
    assert_eq!(stats.count(JobState::Succeeded), 1);
    assert_eq!(stats.count(JobState::Running), 0);
}
