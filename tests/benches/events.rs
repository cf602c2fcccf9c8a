//! Event delivery latency: how long after a write its event reaches a
//! subscriber, with 1,000 users each holding an open `Subscribe` stream
//! (over 10 HTTP/2 connections) through the gateway on loopback.
//!
//! - `in process`: the write (`CreateTask`) goes to the process the
//!   subscribers are on, which wakes them at once;
//! - `across processes`: a second process on the same data directory takes
//!   the writes (as `focusforge worker` does), and the subscribers' process
//!   finds them in the shared embedded log;
//! - `redis, same replica` and `redis, across replicas`: the same with the
//!   log in Redis and two replicas with data directories of their own;
//! - beside them, what a client without the stream would do: poll
//!   `ListTasks` (newest first, one task) every 100 ms until the new task
//!   shows.
//!
//! Latency is from sending the write to the subscriber reading the event.
//! `cargo bench -p focusforge-tests --bench events -- --writes 300`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use focusforge_auth::{KeyMaterial, Minter};
use focusforge_core::UserId;
use focusforge_proto::events::v1::event::Payload;
use focusforge_proto::events::v1::event_service_client::EventServiceClient;
use focusforge_proto::events::v1::{SubscribeRequest, subscribe_response::Kind};
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_proto::tasks::v1::{CreateTaskRequest, ListTasksRequest};
use focusforge_server::Config;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::Channel;

const SECRET: &str = "benchmark-secret-0123456789abcdef0123456789";
const USERS: usize = 1_000;
const CONNECTIONS: usize = 10;

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

fn config(dir: &std::path::Path, services: &[&str]) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        services: services.iter().map(|s| (*s).to_owned()).collect(),
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
    }
}

async fn start(cfg: &Config) -> (focusforge_server::Running, Vec<Channel>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let running = focusforge_server::start(cfg, listener)
        .await
        .expect("start");
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(
            Channel::from_shared(format!("http://{}", running.local_addr))
                .expect("uri")
                .connect()
                .await
                .expect("connect"),
        );
    }
    (running, channels)
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn report(name: &str, v: &[Duration]) {
    println!(
        "{name}: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} events)",
        pct(v.to_vec(), 0.50),
        pct(v.to_vec(), 0.99),
        pct(v.to_vec(), 1.0),
        v.len()
    );
}

/// Titles of created tasks as their events arrive, with the time.
type Arrivals = mpsc::UnboundedReceiver<(String, Instant)>;

async fn subscribe_all(channels: &[Channel], tokens: &[String]) -> Arrivals {
    let (tx, rx) = mpsc::unbounded_channel();
    let ready = Arc::new(tokio::sync::Barrier::new(tokens.len() + 1));
    for (i, token) in tokens.iter().enumerate() {
        let mut client = EventServiceClient::new(channels[i % channels.len()].clone());
        let (token, tx, ready) = (token.clone(), tx.clone(), ready.clone());
        tokio::spawn(async move {
            let mut stream = client
                .subscribe(authed(&token, SubscribeRequest::default()))
                .await
                .expect("subscribe")
                .into_inner();
            ready.wait().await;
            while let Ok(Some(message)) = stream.message().await {
                if let Some(Kind::Event(e)) = message.kind
                    && let Some(Payload::Task(t)) = e.payload
                {
                    let _ = tx.send((t.title, Instant::now()));
                }
            }
        });
    }
    ready.wait().await;
    rx
}

async fn measure(
    name: &str,
    writer: &[Channel],
    tokens: &[String],
    arrivals: &mut Arrivals,
    writes: usize,
) {
    let mut latencies = Vec::new();
    let mut early: HashMap<String, Instant> = HashMap::new();
    let mut tasks = TaskServiceClient::new(writer[0].clone());
    for i in 0..writes {
        let title = format!("{name} {i}");
        let token = &tokens[(i * 37) % tokens.len()];
        // Writes come at no particular moment of the watcher's beat.
        tokio::time::sleep(Duration::from_millis((i as u64 * 37) % 100)).await;
        let sent = Instant::now();
        tasks
            .create_task(authed(
                token,
                CreateTaskRequest {
                    title: title.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create");
        let arrived = loop {
            if let Some(at) = early.remove(&title) {
                break at;
            }
            let (got, at) = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                .await
                .expect("the event within 10 s")
                .expect("subscribers");
            if got == title {
                break at;
            }
            early.insert(got, at);
        };
        latencies.push(arrived.saturating_duration_since(sent));
    }
    report(name, &latencies);
}

async fn polling(channel: &Channel, token: &str, writes: usize) {
    let mut latencies = Vec::new();
    let mut tasks = TaskServiceClient::new(channel.clone());
    for i in 0..writes {
        let title = format!("polled {i}");
        let mut writer = tasks.clone();
        let (t, tok) = (title.clone(), token.to_owned());
        // The poller keeps its own 100 ms beat; the write lands anywhere in it.
        let offset = Duration::from_millis((i as u64 * 37) % 100);
        let mut beat = tokio::time::interval(Duration::from_millis(100));
        beat.tick().await;
        let sent = Instant::now() + offset;
        let write = tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            writer
                .create_task(authed(
                    &tok,
                    CreateTaskRequest {
                        title: t,
                        ..Default::default()
                    },
                ))
                .await
                .expect("create");
        });
        loop {
            let newest = tasks
                .list_tasks(authed(
                    token,
                    ListTasksRequest {
                        page_size: 1,
                        ..Default::default()
                    },
                ))
                .await
                .expect("list")
                .into_inner()
                .tasks;
            if newest.first().is_some_and(|t| t.title == title) {
                break;
            }
            beat.tick().await;
        }
        latencies.push(Instant::now().saturating_duration_since(sent));
        write.await.expect("write");
    }
    report("polling ListTasks every 100 ms (one user)", &latencies);
}

#[tokio::main]
async fn main() {
    let writes: usize = arg("--writes").and_then(|r| r.parse().ok()).unwrap_or(300);
    let minter =
        Minter::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None).expect("minter");
    let tokens: Vec<String> = (0..USERS)
        .map(|i| {
            minter
                .mint(&UserId::parse(&format!("user{i:04}")).expect("user"), 3600)
                .expect("mint")
        })
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let (_subscribers, channels) = start(&config(dir.path(), &["tasks", "events"])).await;
    let began = Instant::now();
    let mut arrivals = subscribe_all(&channels, &tokens).await;
    println!(
        "{USERS} subscribers open over {CONNECTIONS} connections in {:.0} ms",
        began.elapsed().as_secs_f64() * 1000.0
    );
    measure("in process", &channels, &tokens, &mut arrivals, writes).await;
    let (_writer, writer) = start(&config(dir.path(), &["tasks"])).await;
    measure("across processes", &writer, &tokens, &mut arrivals, writes).await;
    polling(&channels[0], &tokens[0], writes.min(100)).await;

    // Through Redis: two replicas with data directories of their own.
    let redis = focusforge_cache::testing::RedisServer::start();
    let with_redis = |dir: &std::path::Path, services: &[&str]| {
        let mut cfg = config(dir, services);
        cfg.redis.url = Some(redis.url());
        cfg
    };
    let (one, two) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (_first, first) = start(&with_redis(one.path(), &["tasks", "events"])).await;
    let mut arrivals = subscribe_all(&first, &tokens).await;
    measure(
        "redis, same replica",
        &first,
        &tokens,
        &mut arrivals,
        writes,
    )
    .await;
    let (_second, second) = start(&with_redis(two.path(), &["tasks"])).await;
    measure(
        "redis, across replicas",
        &second,
        &tokens,
        &mut arrivals,
        writes,
    )
    .await;
}
