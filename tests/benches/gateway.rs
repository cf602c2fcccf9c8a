//! Gateway overhead, side by side with a plain tonic server (what a Rust
//! team would otherwise run), over the same services and the same embedded
//! store, in one process:
//!
//! - `tonic direct`: `tonic::transport::Server` serving the service routes;
//! - `focusforge serve`: the same routes behind the FocusForge gateway front
//!   (token check at the gateway and again in the service, request ids,
//!   deadlines, frame-size checks);
//! - `gateway -> node`: a `focusforge gateway` routing over HTTP/2 to a
//!   `focusforge serve` node (one extra network hop, as in a mesh);
//! - `grpc-web h1`: gRPC-web over HTTP/1.1 keep-alive connections to
//!   `focusforge serve` (the browser path);
//! - `mesh in-process`: the service kit's in-process connection
//!   (`focusforge_mesh::Conn::local`) to the same routes, as one service
//!   calls another in the same process: the service's interceptor and
//!   codec, no TCP and no HTTP/2. `tonic direct` and `focusforge serve` are
//!   the loopback alternatives (a service calling its own process's port).
//!
//! Each runs GetTask from `--concurrency` callers for `--seconds` and prints
//! throughput and latency percentiles.
//!
//! `cargo bench -p focusforge-tests --bench gateway -- --seconds 5 --concurrency 16`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use focusforge_auth::{KeyMaterial, Minter, Verifier};
use focusforge_core::UserId;
use focusforge_mesh::Conn;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_proto::tasks::v1::{CreateTaskRequest, GetTaskRequest};
use focusforge_server::Config;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;

const SECRET: &str = "benchmark-secret-0123456789abcdef0123456789";

struct Args {
    seconds: u64,
    concurrency: usize,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        concurrency: 16,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).and_then(|v| v.parse().ok());
        match (argv[i].as_str(), next) {
            ("--seconds", Some(n)) => a.seconds = n,
            ("--concurrency", Some(n)) => a.concurrency = n as usize,
            _ => {}
        }
        i += 1;
    }
    a
}

fn config(dir: &tempfile::TempDir) -> Config {
    Config {
        data_dir: dir.path().to_path_buf(),
        models_dir: std::env::var_os("FOCUSFORGE_MODELS_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
            }),
        listen: "127.0.0.1:0".into(),
        log_level: "error".into(),
        auth: focusforge_server::config::AuthConfig {
            jwt_secret: Some(SECRET.into()),
            ..Default::default()
        },
        ..Config::default()
    }
}

fn token() -> String {
    let minter =
        Minter::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None).expect("minter");
    minter
        .mint(&UserId::parse("bench").expect("user"), 3600)
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
    name: &'static str,
    calls: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Report {
    fn print(&mut self) {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
            self.latencies_us.get(i).copied().unwrap_or_default()
        };
        println!(
            "{:<18} {:>10.0} {:>9} {:>9} {:>9} {:>7}",
            self.name,
            self.calls as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(0.999),
            self.errors,
        );
    }
}

async fn run_grpc(name: &'static str, addr: SocketAddr, id: &str, a: &Args) -> Report {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    run_conn(name, Conn::remote(channel), id, a).await
}

async fn run_conn(name: &'static str, channel: Conn, id: &str, a: &Args) -> Report {
    let token = Arc::new(token());
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (mut client, token, id) = (
            TaskServiceClient::new(channel.clone()),
            token.clone(),
            id.to_owned(),
        );
        workers.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0);
            while Instant::now() < deadline {
                let t = Instant::now();
                match client
                    .get_task(authed(&token, GetTaskRequest { id: id.clone() }))
                    .await
                {
                    Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    collect(name, started, workers).await
}

async fn run_grpc_web(name: &'static str, addr: SocketAddr, id: &str, a: &Args) -> Report {
    let token = Arc::new(token());
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let started = Instant::now();
    let payload = GetTaskRequest { id: id.to_owned() }.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    let framed = Bytes::from(framed);
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (token, framed) = (token.clone(), framed.clone());
        workers.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("h1");
            tokio::spawn(conn);
            let (mut lat, mut errors) = (Vec::new(), 0);
            while Instant::now() < deadline {
                let t = Instant::now();
                let req = http::Request::post(format!(
                    "http://{addr}/focusforge.tasks.v1.TaskService/GetTask"
                ))
                .header("content-type", "application/grpc-web+proto")
                .header("x-grpc-web", "1")
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(framed.clone()))
                .expect("request");
                let ok = match sender.send_request(req).await {
                    Ok(res) => res
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().ends_with(b"grpc-status:0\r\n"))
                        .unwrap_or(false),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    collect(name, started, workers).await
}

async fn collect(
    name: &'static str,
    started: Instant,
    workers: Vec<tokio::task::JoinHandle<(Vec<u64>, usize)>>,
) -> Report {
    let mut report = Report {
        name,
        calls: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for w in workers {
        let (lat, errors) = w.await.expect("worker");
        report.calls += lat.len();
        report.errors += errors;
        report.latencies_us.extend(lat);
    }
    report.elapsed = started.elapsed();
    report
}

async fn create_task(addr: SocketAddr) -> String {
    let mut client = TaskServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let req = CreateTaskRequest {
        title: "benchmark task".into(),
        ..Default::default()
    };
    client
        .create_task(authed(&token(), req))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task")
        .id
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir);

    // focusforge serve: the gateway front over in-process routes.
    let serve =
        focusforge_server::start(&cfg, TcpListener::bind("127.0.0.1:0").await.expect("bind"))
            .await
            .expect("start");
    let serve_addr = serve.local_addr;

    // tonic direct: the same routes and the same database file, no gateway.
    let backends = focusforge_server::Backends::open(&cfg)
        .await
        .expect("backends");
    let verifier = Arc::new(
        Verifier::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None).expect("verifier"),
    );
    let routes = focusforge_server::service_routes(&cfg, &backends, verifier)
        .await
        .expect("routes")
        .routes;
    let in_process = Conn::local(routes.clone());
    let direct = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let direct_addr = direct.local_addr().expect("addr");
    tokio::spawn(
        // Nagle off on accepted sockets, as the gateway has it.
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(direct).with_nodelay(Some(true)),
            ),
    );

    // gateway -> node: a gateway process routing to the serve node.
    let gw_dir = tempfile::tempdir().expect("tempdir");
    let mut gw_cfg = config(&gw_dir);
    gw_cfg.services = vec![];
    gw_cfg.upstreams = BTreeMap::from([(
        "focusforge.tasks.v1.TaskService".to_owned(),
        format!("http://{serve_addr}"),
    )]);
    let gateway = focusforge_server::start(
        &gw_cfg,
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    )
    .await
    .expect("gateway");

    let id = create_task(serve_addr).await;
    println!(
        "GetTask, {} callers, {} s each, {} cores; latency in microseconds",
        a.concurrency,
        a.seconds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<18} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "path", "calls/s", "p50", "p99", "p99.9", "errors"
    );
    // Warm every path (connections, allocator, SQLite page cache) first.
    let warm = Args {
        seconds: 1,
        concurrency: a.concurrency,
    };
    for addr in [direct_addr, serve_addr, gateway.local_addr] {
        run_grpc("warm-up", addr, &id, &warm).await;
    }
    run_grpc_web("warm-up", serve_addr, &id, &warm).await;
    run_conn("warm-up", in_process.clone(), &id, &warm).await;
    run_grpc("tonic direct", direct_addr, &id, &a).await.print();
    run_grpc("focusforge serve", serve_addr, &id, &a)
        .await
        .print();
    run_grpc("gateway -> node", gateway.local_addr, &id, &a)
        .await
        .print();
    run_grpc_web("grpc-web h1", serve_addr, &id, &a)
        .await
        .print();
    run_conn("mesh in-process", in_process, &id, &a)
        .await
        .print();
    gateway.shutdown().await;
    serve.shutdown().await;
}
