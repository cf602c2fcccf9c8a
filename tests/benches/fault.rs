//! Faults injected into running `focusforge` processes, with every
//! acknowledged write checked afterwards.
//!
//! - `kill9`: `--clients` writers create tasks (each with a request id) as
//!   fast as they can; the server is killed with SIGKILL mid-burst and
//!   started again on the same data directory (the embedded SQLite store).
//!   Every acknowledged task must be there after the restart, and each
//!   write retried with its request id must give back the task the first
//!   acknowledgement named (no second task). Repeated `--rounds` times.
//! - `upstream`: a gateway in front of a tasks process; the tasks process is
//!   killed and restarted on its data directory while clients call through
//!   the gateway. Calls meanwhile must be UNAVAILABLE (no other error), the
//!   gateway's health must say NOT_SERVING for the service, and both must
//!   recover without restarting the gateway; acknowledged writes are checked
//!   as above.
//!
//! - `redis`: plans (one task-creating action each, with a request id) are
//!   created through a server whose job queue is in Redis; Redis is killed
//!   with SIGKILL in the middle and started again on its append-only file.
//!   Every acknowledged plan must finish, its action must have run once (one
//!   task with its title, not two), and no job may be lost.
//!
//! `cargo build && cargo bench -p focusforge-tests --bench fault -- kill9 --rounds 5`
//! (and `upstream`, `redis`); exits non-zero when a write is lost or doubled.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use focusforge_auth::{KeyMaterial, Minter};
use focusforge_core::UserId;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_proto::tasks::v1::{CreateTaskRequest, GetTaskRequest};
use focusforge_tests::{arg, focusforge_binary, free_port};
use tokio::sync::Mutex;
use tonic::transport::Channel;

const SECRET: &str = "benchmark-secret-0123456789abcdef0123456789";

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &std::path::Path, dir: &std::path::Path, port: u16, env: &[(&str, String)]) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env("FOCUSFORGE_DATA_DIR", dir)
        .env("FOCUSFORGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FOCUSFORGE_JWT_SECRET", SECRET)
        .env("FOCUSFORGE_LLM_BACKEND", "none")
        .env("FOCUSFORGE_WEB_DIR", "")
        .env("FOCUSFORGE_LOG_LEVEL", "error")
        .env("FOCUSFORGE_RATE_LIMITS_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().expect("start focusforge"),
    }
}

async fn healthy(port: u16, service: &str) -> bool {
    let Ok(ch) = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect()
        .await
    else {
        return false;
    };
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    matches!(
        h.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await,
        Ok(r) if r.get_ref().status == 1
    )
}

async fn wait_healthy(port: u16, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !healthy(port, service).await {
        assert!(Instant::now() < deadline, "not serving on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("value"),
    );
    req.set_timeout(Duration::from_secs(5));
    req
}

/// Acknowledged writes: request id -> the task id the server answered.
type Acked = Arc<Mutex<BTreeMap<String, String>>>;

#[derive(Default)]
struct Tally {
    sent: u64,
    unavailable: u64,
    other_errors: BTreeMap<String, u64>,
}

/// Writers creating tasks with request ids until `stop`.
async fn writers(
    port: u16,
    clients: usize,
    token: String,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
    round: usize,
) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut handles = Vec::new();
    for c in 0..clients {
        let (token, acked, stop, tally) =
            (token.to_owned(), acked.clone(), stop.clone(), tally.clone());
        handles.push(tokio::spawn(async move {
            let url = format!("http://127.0.0.1:{port}");
            let channel = Channel::from_shared(url).expect("uri").connect_lazy();
            let mut tasks = TaskServiceClient::new(channel);
            let mut n = 0u64;
            loop {
                let request_id = format!("r{round}-c{c}-{n}");
                let req = CreateTaskRequest {
                    title: format!("Task {request_id}"),
                    request_id: request_id.clone(),
                    ..Default::default()
                };
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let res = tasks.create_task(authed(&token, req)).await;
                let mut t = tally.lock().await;
                t.sent += 1;
                match res {
                    Ok(r) => {
                        if let Some(task) = r.into_inner().task {
                            acked.lock().await.insert(request_id, task.id);
                        }
                        n += 1;
                    }
                    Err(e) if e.code() == tonic::Code::Unavailable => {
                        t.unavailable += 1;
                        drop(t);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => {
                        *t.other_errors.entry(format!("{:?}", e.code())).or_default() += 1;
                        drop(t);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    Arc::try_unwrap(tally)
        .map(Mutex::into_inner)
        .unwrap_or_default()
}

/// Every acknowledged write is there, and a retry with its request id gives
/// back the same task: (lost, doubled).
async fn verify(port: u16, token: &str, acked: &BTreeMap<String, String>) -> (u64, u64) {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut tasks = TaskServiceClient::new(channel);
    let (mut lost, mut doubled) = (0, 0);
    for (request_id, id) in acked {
        let got = tasks
            .get_task(authed(token, GetTaskRequest { id: id.clone() }))
            .await;
        if got.is_err() {
            lost += 1;
            eprintln!("lost: {request_id} -> {id}: {:?}", got.err());
            continue;
        }
        let again = tasks
            .create_task(authed(
                token,
                CreateTaskRequest {
                    title: format!("Task {request_id}"),
                    request_id: request_id.clone(),
                    ..Default::default()
                },
            ))
            .await;
        match again {
            Ok(r) if r.get_ref().task.as_ref().map(|t| &t.id) == Some(id) => {}
            other => {
                doubled += 1;
                eprintln!("retry of {request_id} did not give back {id}: {other:?}");
            }
        }
    }
    (lost, doubled)
}

fn token(user: &str) -> String {
    Minter::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None)
        .expect("minter")
        .mint(&UserId::parse(user).expect("user"), 24 * 3600)
        .expect("token")
}

async fn kill9(bin: &std::path::Path, rounds: usize, clients: usize) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let token = token("fault-writer");
    let acked: Acked = Arc::default();
    let mut ok = true;
    for round in 0..rounds {
        let mut server = spawn(bin, dir.path(), port, &[]);
        wait_healthy(port, "").await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let burst = tokio::spawn(writers(
            port,
            clients,
            token.clone(),
            acked.clone(),
            stop.clone(),
            round,
        ));
        // Let the burst run, then kill the server in the middle of it.
        tokio::time::sleep(Duration::from_millis(1500 + 300 * round as u64)).await;
        let before = acked.lock().await.len();
        let _ = server.child.kill(); // SIGKILL
        let _ = server.child.wait();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let tally = burst.await.unwrap_or_default();
        drop(server);
        let server = spawn(bin, dir.path(), port, &[]);
        wait_healthy(port, "").await;
        let all = acked.lock().await.clone();
        let (lost, doubled) = verify(port, &token, &all).await;
        println!(
            "kill9 round {}: {} writes acknowledged before the kill ({} in all so far), {} sent, lost {lost}, doubled {doubled}, errors other than UNAVAILABLE {:?}",
            round + 1,
            before,
            all.len(),
            tally.sent,
            tally.other_errors
        );
        ok &= lost == 0 && doubled == 0;
        drop(server);
    }
    ok
}

async fn upstream(bin: &std::path::Path, clients: usize) -> bool {
    let tasks_dir = tempfile::tempdir().expect("tempdir");
    let gw_dir = tempfile::tempdir().expect("tempdir");
    let (tasks_port, gw_port) = (free_port(), free_port());
    const TASKS: &str = "focusforge.tasks.v1.TaskService";
    let mesh = [("FOCUSFORGE_ACCEPT_MESH_TOKENS", "true".to_owned())];
    let mut tasks = spawn(
        bin,
        tasks_dir.path(),
        tasks_port,
        &[mesh[0].clone(), ("FOCUSFORGE_SERVICES", "tasks".into())],
    );
    let gateway = spawn(
        bin,
        gw_dir.path(),
        gw_port,
        &[
            ("FOCUSFORGE_SERVICES", String::new()),
            (
                "FOCUSFORGE_UPSTREAMS",
                format!("{TASKS}=http://127.0.0.1:{tasks_port}"),
            ),
            ("FOCUSFORGE_CONNECT_TIMEOUT_MS", "500".into()),
        ],
    );
    wait_healthy(tasks_port, "").await;
    wait_healthy(gw_port, TASKS).await;
    let token = token("fault-upstream");
    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burst = tokio::spawn(writers(
        gw_port,
        clients,
        token.clone(),
        acked.clone(),
        stop.clone(),
        0,
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = tasks.child.kill();
    let _ = tasks.child.wait();
    let killed = Instant::now();
    // Health at the gateway says so.
    let mut not_serving_seen = false;
    for _ in 0..50 {
        if !healthy(gw_port, TASKS).await {
            not_serving_seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(tasks);
    let _tasks = spawn(
        bin,
        tasks_dir.path(),
        tasks_port,
        &[mesh[0].clone(), ("FOCUSFORGE_SERVICES", "tasks".into())],
    );
    wait_healthy(gw_port, TASKS).await;
    let recovered = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let tally = burst.await.unwrap_or_default();
    let all = acked.lock().await.clone();
    let (lost, doubled) = verify(gw_port, &token, &all).await;
    println!(
        "upstream: {} acknowledged, {} sent, {} UNAVAILABLE while the upstream was away, other errors {:?}, gateway health NOT_SERVING seen: {not_serving_seen}, serving again {:.1} s after the kill (gateway not restarted), lost {lost}, doubled {doubled}",
        all.len(),
        tally.sent,
        tally.unavailable,
        tally.other_errors,
        recovered.as_secs_f64()
    );
    drop(gateway);
    lost == 0 && doubled == 0 && tally.other_errors.is_empty() && not_serving_seen
}

async fn redis(bin: &std::path::Path, plans: usize) -> bool {
    use focusforge_proto::planner::v1::planner_service_client::PlannerServiceClient;
    use focusforge_proto::planner::v1::{
        ActionSpec, ActionType, CreatePlanRequest, GetPlanRequest,
    };
    use focusforge_proto::tasks::v1::ListTasksRequest;
    let aof = tempfile::tempdir().expect("tempdir");
    let mut redis = focusforge_cache::testing::RedisServer::start_persistent(aof.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _server = spawn(
        bin,
        dir.path(),
        port,
        &[("FOCUSFORGE_REDIS_URL", redis.url())],
    );
    wait_healthy(port, "").await;
    let token = token("fault-redis");
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut planner = PlannerServiceClient::new(channel.clone());
    let mut acked = Vec::new();
    let mut refused = BTreeMap::<String, u64>::new();
    for i in 0..plans {
        if i == plans / 3 {
            redis.kill();
        }
        if i == 2 * plans / 3 {
            redis.restart();
        }
        let req = CreatePlanRequest {
            title: format!("plan {i}"),
            actions: vec![ActionSpec {
                key: "create".into(),
                r#type: ActionType::TaskManagement as i32,
                params_json: format!(r#"{{"op":"create","title":"Planned {i}"}}"#),
                ..Default::default()
            }],
            request_id: format!("plan-{i}"),
        };
        match planner.create_plan(authed(&token, req)).await {
            Ok(r) => {
                if let Some(plan) = r.into_inner().plan {
                    acked.push((i, plan.id));
                }
            }
            Err(e) => *refused.entry(format!("{:?}", e.code())).or_default() += 1,
        }
    }
    // Every acknowledged plan finishes, within a minute of Redis being back.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut unfinished: Vec<(usize, String)> = acked.clone();
    while !unfinished.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (i, id) in unfinished {
            let done = planner
                .get_plan(authed(
                    &token,
                    GetPlanRequest {
                        plan_id: id.clone(),
                    },
                ))
                .await
                .ok()
                .and_then(|p| p.into_inner().plan)
                .is_some_and(|p| p.done);
            if !done {
                still.push((i, id));
            }
        }
        unfinished = still;
        if !unfinished.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Each action ran once: one task per acknowledged plan's title.
    let mut tasks = TaskServiceClient::new(channel);
    let mut titles = BTreeMap::<String, u64>::new();
    let mut page = String::new();
    loop {
        let r = tasks
            .list_tasks(authed(
                &token,
                ListTasksRequest {
                    page_size: 200,
                    page_token: page.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        for t in r.tasks {
            *titles.entry(t.title).or_default() += 1;
        }
        if r.next_page_token.is_empty() {
            break;
        }
        page = r.next_page_token;
    }
    let lost = unfinished.len();
    let twice = acked
        .iter()
        .filter(|(i, _)| titles.get(&format!("Planned {i}")).copied().unwrap_or(0) > 1)
        .count();
    let never_ran = acked
        .iter()
        .filter(|(i, _)| !titles.contains_key(&format!("Planned {i}")))
        .count();
    println!(
        "redis: {plans} plans sent, Redis killed after {} and back after {}; {} acknowledged, refused {refused:?}; unfinished after 90 s {lost}, actions never run {never_ran}, run twice {twice}",
        plans / 3,
        2 * plans / 3,
        acked.len()
    );
    lost == 0 && twice == 0 && never_ran == 0
}

#[tokio::main]
async fn main() {
    let bin = arg("--bin").map_or_else(focusforge_binary, std::path::PathBuf::from);
    let clients: usize = arg("--clients").and_then(|v| v.parse().ok()).unwrap_or(16);
    let rounds: usize = arg("--rounds").and_then(|v| v.parse().ok()).unwrap_or(3);
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a == "kill9" || a == "upstream" || a == "redis")
        .collect();
    let which = if which.is_empty() {
        vec![
            "kill9".to_owned(),
            "upstream".to_owned(),
            "redis".to_owned(),
        ]
    } else {
        which
    };
    let mut ok = true;
    for scenario in which {
        ok &= match scenario.as_str() {
            "kill9" => kill9(&bin, rounds, clients).await,
            "redis" => redis(&bin, 150).await,
            _ => upstream(&bin, clients).await,
        };
    }
    if !ok {
        std::process::exit(1);
    }
}
