use focusforge_proto::focus::v1::focus_service_client::FocusServiceClient;
use focusforge_proto::gamification::v1::gamification_service_client::GamificationServiceClient;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Buf, Bytes};
use focusforge_auth::{Claims, KeyMaterial, Minter};
use focusforge_proto::chain::v1::chain_service_client::ChainServiceClient;
use focusforge_proto::jobs::v1::job_service_client::JobServiceClient;
use focusforge_proto::mcp::v1::mcp_service_client::McpServiceClient;
use focusforge_proto::memory::v1::memory_service_client::MemoryServiceClient;
use focusforge_proto::planner::v1::planner_service_client::PlannerServiceClient;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_proto::users::v1::user_service_client::UserServiceClient;
use focusforge_server::{Config, Running};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

static LOGS: Once = Once::new();

/// A test configuration: a fresh data directory and a known secret.
pub fn config(dir: &TempDir) -> Config {
    // Quiet by default; RUST_LOG=info shows the servers' logs.
    LOGS.call_once(|| focusforge_telemetry::init(focusforge_telemetry::LogFormat::Human, "warn"));
    Config {
        data_dir: dir.path().to_path_buf(),
        models_dir: models_dir(),
        listen: "127.0.0.1:0".into(),
        auth: focusforge_server::config::AuthConfig {
            jwt_secret: Some(SECRET.into()),
            ..Default::default()
        },
        // Tests that need the language model ask for it.
        llm: focusforge_server::config::LlmConfig {
            backend: "none".into(),
            ..Default::default()
        },
        ..Config::default()
    }
}

/// FOCUSFORGE_MODELS_DIR (scripts/test sets it), else ./models at the
/// workspace root; `scripts/fetch-models DIR` fills it.
pub fn models_dir() -> std::path::PathBuf {
    std::env::var_os("FOCUSFORGE_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"))
}

/// A FocusForge process started in this test process.
pub struct Server {
    pub addr: SocketAddr,
    pub dir: TempDir,
    running: Running,
}

impl Server {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(&dir);
        Self::start_in(dir, cfg).await
    }

    pub async fn start_in(dir: TempDir, cfg: Config) -> Self {
        Self::start_with_clock(dir, cfg, std::sync::Arc::new(focusforge_core::SystemClock)).await
    }

    /// A server whose services, store and job queue read `clock`.
    pub async fn start_with_clock(
        dir: TempDir,
        cfg: Config,
        clock: std::sync::Arc<dyn focusforge_core::Clock>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let running = focusforge_server::start_with_clock(&cfg, listener, clock)
            .await
            .expect("start");
        Self {
            addr: running.local_addr,
            dir,
            running,
        }
    }

    /// Stops the server and hands back its data directory.
    pub async fn stop(self) -> TempDir {
        self.running.shutdown().await;
        self.dir
    }

    /// Where `GET /metrics` is served when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.running.metrics_addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn tasks(&self) -> TaskServiceClient<Channel> {
        TaskServiceClient::new(self.channel().await)
    }

    pub async fn memory(&self) -> MemoryServiceClient<Channel> {
        MemoryServiceClient::new(self.channel().await)
    }

    pub async fn chain(&self) -> ChainServiceClient<Channel> {
        ChainServiceClient::new(self.channel().await)
    }

    pub async fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel().await)
    }

    pub async fn planner(&self) -> PlannerServiceClient<Channel> {
        PlannerServiceClient::new(self.channel().await)
    }

    pub async fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel().await)
    }

    pub async fn game(&self) -> GamificationServiceClient<Channel> {
        GamificationServiceClient::new(self.channel().await)
    }

    pub async fn focus(&self) -> FocusServiceClient<Channel> {
        FocusServiceClient::new(self.channel().await)
    }

    pub async fn calendar(
        &self,
    ) -> focusforge_proto::calendar::v1::calendar_service_client::CalendarServiceClient<Channel>
    {
        focusforge_proto::calendar::v1::calendar_service_client::CalendarServiceClient::new(
            self.channel().await,
        )
    }

    pub async fn analytics(
        &self,
    ) -> focusforge_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient<Channel>
    {
        focusforge_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient::new(
            self.channel().await,
        )
    }

    pub async fn mood(&self) -> MoodServiceClient<Channel> {
        MoodServiceClient::new(self.channel().await)
    }

    pub async fn mcp(&self) -> McpServiceClient<Channel> {
        McpServiceClient::new(self.channel().await)
    }
}

fn minter() -> Minter {
    Minter::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None).expect("minter")
}

pub fn token(user: &str) -> String {
    let user = focusforge_core::UserId::parse(user).expect("user");
    minter().mint(&user, 3600).expect("mint")
}

pub fn token_with(claims: &Claims) -> String {
    minter().mint_claims(claims).expect("mint")
}

/// A request carrying `user`'s bearer token.
pub fn authed<T>(user: &str, msg: T) -> tonic::Request<T> {
    bearer(&token(user), msg)
}

pub fn bearer<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let value = format!("Bearer {token}").parse().expect("header value");
    req.metadata_mut().insert("authorization", value);
    req
}

/// What a gRPC-web call returned, with its frames taken apart.
#[derive(Debug)]
pub struct WebResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub messages: Vec<Bytes>,
    /// Trailers from the trailer frame, or from the headers of a
    /// trailers-only response.
    pub trailers: Vec<(String, String)>,
    pub trailer_frame: bool,
}

impl WebResponse {
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn grpc_status(&self) -> Option<&str> {
        self.trailer("grpc-status")
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Http {
    V1,
    V2,
}

/// One gRPC-web call with a single message, binary or text encoded.
pub async fn grpc_web(
    addr: SocketAddr,
    path: &str,
    message: &impl prost::Message,
    text: bool,
    http: Http,
    headers: &[(&str, &str)],
) -> WebResponse {
    let payload = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    let (content_type, body) = if text {
        (
            "application/grpc-web-text",
            STANDARD.encode(&framed).into_bytes(),
        )
    } else {
        ("application/grpc-web+proto", framed)
    };
    let mut req = Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("accept", content_type)
        .header("x-grpc-web", "1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let res = send(addr, req, http).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let raw = if text {
        decode_text(&body)
    } else {
        body.to_vec()
    };
    parse_frames(status, headers, &raw)
}

/// Sends a request over a fresh HTTP/1.1 or HTTP/2 (prior knowledge) connection.
pub async fn send(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
    http: Http,
) -> http::Response<hyper::body::Incoming> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let io = TokioIo::new(stream);
    match http {
        Http::V1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.expect("h1");
            tokio::spawn(conn);
            sender.send_request(req).await.expect("send")
        }
        Http::V2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("h2");
            tokio::spawn(conn);
            sender.send_request(req).await.expect("send")
        }
    }
}

/// grpc-web-text bodies may be several base64 strings back to back, each
/// padded; decoding four characters at a time handles both forms.
fn decode_text(body: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    clean
        .chunks(4)
        .flat_map(|quad| STANDARD.decode(quad).expect("base64 quad"))
        .collect()
}

fn parse_frames(status: StatusCode, headers: HeaderMap, mut raw: &[u8]) -> WebResponse {
    let mut messages = Vec::new();
    let mut trailers = Vec::new();
    let mut trailer_frame = false;
    while raw.len() >= 5 {
        let flag = raw[0];
        let len = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
        raw.advance(5);
        let data = &raw[..len];
        if flag & 0x80 != 0 {
            trailer_frame = true;
            for line in String::from_utf8_lossy(data)
                .split("\r\n")
                .filter(|l| !l.is_empty())
            {
                if let Some((k, v)) = line.split_once(':') {
                    trailers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
        } else {
            messages.push(Bytes::copy_from_slice(data));
        }
        raw.advance(len);
    }
    assert!(raw.is_empty(), "trailing bytes after the last frame");
    if !trailer_frame {
        for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
            if let Some(v) = headers.get(name) {
                trailers.push((name.to_owned(), v.to_str().unwrap_or_default().to_owned()));
            }
        }
    }
    WebResponse {
        status,
        headers,
        messages,
        trailers,
        trailer_frame,
    }
}

/// Polls until `f` succeeds or the time is up; for state that settles asynchronously.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
