//! What a hostile or broken client sends: malformed frames on every
//! surface, oversized headers, bodies that never finish, unknown methods,
//! and random messages to every method of every contract. The goal: each
//! gets a clear status quickly, nothing panics, nothing hangs, and the
//! server answers a good call afterwards.

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use focusforge_proto::tasks::v1::ListTasksRequest;
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use tokio::net::TcpStream;

use crate::harness::{Http, Server, authed, config, token};

/// Panics raised in the product's code (not in tests) since start.
static PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

fn count_panics() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info.location().is_some_and(|l| {
                let f = l.file();
                (f.starts_with("crates/") || f.starts_with("gateway/")) && !f.contains("/tests")
            });
            if ours {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// What came back: the HTTP status, and the gRPC or Connect status found in
/// headers, trailers, a gRPC-web trailer frame or a Connect error body.
#[derive(Debug)]
struct Outcome {
    http: u16,
    status: Option<String>,
}

const CALL_LIMIT: Duration = Duration::from_secs(10);

async fn raw(
    addr: std::net::SocketAddr,
    http: Http,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&str, String)],
) -> Outcome {
    let mut req = Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .header("authorization", format!("Bearer {}", token("mallory")));
    for (k, v) in extra {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let work = async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let io = TokioIo::new(stream);
        let res = match http {
            Http::V1 => {
                let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
                tokio::spawn(conn);
                s.send_request(req).await.ok()?
            }
            Http::V2 => {
                let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                s.send_request(req).await.ok()?
            }
        };
        let code = res.status().as_u16();
        let mut status = header(res.headers(), "grpc-status");
        // The answer's own encoding, which need not be the request's.
        let answer_type = header(res.headers(), "content-type").unwrap_or_default();
        let collected = res.into_body().collect().await.ok();
        if let Some(c) = collected {
            if status.is_none()
                && let Some(t) = c.trailers()
            {
                status = header(t, "grpc-status");
            }
            let body = c.to_bytes();
            if status.is_none() {
                status = status_in_body(&answer_type, &body);
            }
        }
        Some(Outcome { http: code, status })
    };
    match tokio::time::timeout(CALL_LIMIT, work).await {
        Ok(Some(outcome)) => outcome,
        // The server closed or reset the connection: an answer, if a curt one.
        Ok(None) => Outcome {
            http: 0,
            status: Some("connection closed".into()),
        },
        Err(_) => panic!("{path} ({content_type}): no answer within {CALL_LIMIT:?}"),
    }
}

fn header(h: &http::HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A status inside the body: gRPC-web trailer frames (binary or text), or
/// a Connect error (unary JSON body, or the end-of-stream envelope).
fn status_in_body(content_type: &str, body: &[u8]) -> Option<String> {
    let raw: Vec<u8> = if content_type.starts_with("application/grpc-web-text") {
        let clean: Vec<u8> = body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        clean
            .chunks(4)
            .flat_map(|q| STANDARD.decode(q).unwrap_or_default())
            .collect()
    } else {
        body.to_vec()
    };
    let text = String::from_utf8_lossy(&raw);
    if let Some(at) = text.find("grpc-status:") {
        let rest = &text[at + "grpc-status:".len()..];
        return Some(
            rest.split("\r\n")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        );
    }
    if let Some(at) = text.find("\"code\"") {
        return Some(text[at..].chars().take(60).collect());
    }
    None
}

fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Bodies no client should send, by name.
fn malformed_frames() -> Vec<(&'static str, Vec<u8>)> {
    let good = ListTasksRequest::default().encode_to_vec();
    vec![
        (
            "length prefix past the body",
            [&[0u8, 0, 0, 0, 100][..], b"abc"].concat(),
        ),
        ("0xFFFFFFFF length", vec![0, 0xff, 0xff, 0xff, 0xff, 1, 2]),
        ("compressed flag without an encoding", frame(1, &[8, 1])),
        ("truncated frame header", vec![0, 0, 0]),
        (
            "two messages to a unary method",
            [frame(0, &good), frame(0, &good)].concat(),
        ),
        ("not protobuf", frame(0, &[0xff; 16])),
        (
            "a trailer flag from the client",
            frame(0x80, b"grpc-status: 0\r\n"),
        ),
        ("empty body", Vec::new()),
    ]
}

const LIST: &str = "/focusforge.tasks.v1.TaskService/ListTasks";

fn is_clear(outcome: &Outcome) -> bool {
    match &outcome.status {
        // A status a client can act on; UNKNOWN is what a panic or a lost
        // answer looks like.
        Some(s) => !s.trim().eq("2"),
        // Plain HTTP refusals (400, 413, 415, 431) are clear too.
        None => (400..500).contains(&outcome.http),
    }
}

async fn still_serves(server: &Server) {
    server
        .tasks()
        .await
        .list_tasks(authed("ada", ListTasksRequest::default()))
        .await
        .expect("a good call after the abuse");
}

fn quiet(dir: &tempfile::TempDir) -> focusforge_server::config::Config {
    let mut cfg = config(dir);
    cfg.rate_limits.enabled = Some(false);
    cfg.connections.body_read_timeout_ms = 500;
    cfg
}

async fn start_quiet() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = quiet(&dir);
    Server::start_in(dir, cfg).await
}

#[tokio::test]
async fn malformed_frames_get_a_clear_status_on_every_surface() {
    count_panics();
    let server = start_quiet().await;
    let before = PANICS.load(Ordering::SeqCst);
    let mut unclear = Vec::new();
    for (what, body) in malformed_frames() {
        let surfaces: Vec<(&str, Http, &str, Vec<u8>)> = vec![
            ("grpc", Http::V2, "application/grpc", body.clone()),
            (
                "grpc-web",
                Http::V1,
                "application/grpc-web+proto",
                body.clone(),
            ),
            (
                "grpc-web-text",
                Http::V1,
                "application/grpc-web-text",
                STANDARD.encode(&body).into_bytes(),
            ),
            (
                "connect stream",
                Http::V1,
                "application/connect+proto",
                body.clone(),
            ),
        ];
        for (surface, http, ct, body) in surfaces {
            // A server stream that ends (a subscription would rightly stay open).
            let path = if surface == "connect stream" {
                "/focusforge.chain.v1.ChainService/StreamTaskBreakdown"
            } else {
                LIST
            };
            let out = raw(server.addr, http, path, ct, body, &[]).await;
            if !is_clear(&out) {
                unclear.push(format!("{what} over {surface}: {out:?}"));
            }
        }
    }
    // Text that is not base64 at all, and base64 cut in the middle.
    for (what, text) in [
        ("not base64", b"!!!!not*base64".to_vec()),
        ("bad padding", b"AAAAA=A".to_vec()),
        ("cut quad", b"AAAAAA".to_vec()),
    ] {
        let out = raw(
            server.addr,
            Http::V1,
            LIST,
            "application/grpc-web-text",
            text,
            &[],
        )
        .await;
        if !is_clear(&out) {
            unclear.push(format!("{what}: {out:?}"));
        }
    }
    // Connect JSON that is not JSON, nested past any sane depth, or the
    // wrong shape.
    for (what, body) in [
        ("truncated json", b"{\"title\":".to_vec()),
        ("deep nesting", "[".repeat(100_000).into_bytes()),
        ("wrong type", br#"{"pageSize":"many"}"#.to_vec()),
        ("not utf-8", vec![b'{', 0xff, 0xfe, b'}']),
    ] {
        let out = raw(server.addr, Http::V1, LIST, "application/json", body, &[]).await;
        if !is_clear(&out) {
            unclear.push(format!("{what}: {out:?}"));
        }
    }
    assert!(
        unclear.is_empty(),
        "unclear answers:\n{}",
        unclear.join("\n")
    );
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        before,
        "a panic in the product"
    );
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_services_methods_and_paths_are_unimplemented() {
    let server = start_quiet().await;
    let body = frame(0, &[]);
    for path in [
        "/nope.v1.Nothing/Call",
        "/focusforge.tasks.v1.TaskService/NoSuchMethod",
        "/focusforge.tasks.v1.TaskService/",
        "/just-one-segment",
        "/a/b/c",
        "/%00%ff/%2e%2e",
    ] {
        for http in [Http::V1, Http::V2] {
            let ct = match http {
                Http::V1 => "application/grpc-web+proto",
                Http::V2 => "application/grpc",
            };
            let out = raw(server.addr, http, path, ct, body.clone(), &[]).await;
            assert_eq!(out.status.as_deref(), Some("12"), "{path}: {out:?}");
        }
    }
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused_and_the_server_carries_on() {
    let server = start_quiet().await;
    let big = "x".repeat(1024 * 1024);
    for (http, ct) in [
        (Http::V1, "application/grpc-web+proto"),
        (Http::V2, "application/grpc"),
    ] {
        let out = raw(
            server.addr,
            http,
            LIST,
            ct,
            frame(0, &[]),
            &[("x-padding", big.clone())],
        )
        .await;
        let refused = out.status.as_deref() == Some("connection closed")
            || out.http == 431
            || out.http == 400;
        assert!(refused, "a 1 MiB header: {out:?}");
    }
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_cut_and_gives_its_place_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = quiet(&dir);
    cfg.connections.max_calls_in_flight = 4;
    let server = Server::start_in(dir, cfg).await;

    for (http, ct) in [
        (Http::V2, "application/grpc"),
        (Http::V1, "application/grpc-web+proto"),
    ] {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
        // Half a frame header, then nothing.
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(&[0, 0, 0]))))
            .await
            .expect("set-up");
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let req = Request::post(format!("http://{}{LIST}", server.addr))
            .header("content-type", ct)
            .header("te", "trailers")
            .header("authorization", format!("Bearer {}", token("slow")))
            .body(body)
            .expect("set-up");
        let stream = TcpStream::connect(server.addr).await.expect("set-up");
        let io = TokioIo::new(stream);
        let started = std::time::Instant::now();
        let answer = async {
            match http {
                Http::V2 => {
                    let (mut s, conn) =
                        hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                            .await
                            .expect("set-up");
                    tokio::spawn(conn);
                    let res = s.send_request(req).await;
                    match res {
                        Ok(res) => {
                            let h = header(res.headers(), "grpc-status");
                            let c = res.into_body().collect().await.ok();
                            h.or_else(|| {
                                c.and_then(|c| c.trailers().and_then(|t| header(t, "grpc-status")))
                            })
                        }
                        Err(_) => Some("reset".into()),
                    }
                }
                Http::V1 => {
                    let (mut s, conn) = hyper::client::conn::http1::handshake(io)
                        .await
                        .expect("set-up");
                    tokio::spawn(conn);
                    match s.send_request(req).await {
                        Ok(res) => {
                            let h = header(res.headers(), "grpc-status");
                            let c = res.into_body().collect().await.ok().map(|c| c.to_bytes());
                            h.or_else(|| c.and_then(|b| status_in_body(ct, &b)))
                        }
                        Err(_) => Some("closed".into()),
                    }
                }
            }
        };
        let status = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("the stalled call is answered, not left hanging");
        assert!(status.is_some(), "{ct}: a status");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cut after the body timeout, not a long wait: {:?}",
            started.elapsed()
        );
        drop(tx);
    }
    crate::harness::eventually("places in flight given back", || async {
        let req = Request::get(format!("http://{}/metrics", server.addr))
            .body(Full::new(Bytes::new()))
            .expect("set-up");
        let res = crate::harness::send(server.addr, req, Http::V1).await;
        let text = res.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&text).contains("focusforge_gateway_in_flight 0\n")
    })
    .await;
    still_serves(&server).await;
    server.stop().await;
}

/// A small, seeded generator of hostile field values.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize].clone()
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn string(&mut self) -> String {
        let n = self.next();
        self.pick(&[
            String::new(),
            "a".into(),
            " ".into(),
            "x".repeat(10_000),
            "\u{0}\u{202e}\u{feff}ñ😀".into(),
            "../../etc/passwd".into(),
            "'; DROP TABLE tasks; --".into(),
            "$where".into(),
            "{\"$gt\":\"\"}".into(),
            "2026-13-45T25:61:61Z".into(),
            "9999-12-31T23:59:59Z".into(),
            "0001-01-01T00:00:00Z".into(),
            "Europe/Nowhere".into(),
            "-1".into(),
            "NaN".into(),
            format!("id-{n}"),
            "https://example.com/\u{0}".into(),
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:x\r\nEND:VCALENDAR".into(),
        ])
    }

    fn value(&mut self, field: &FieldDescriptor, depth: usize) -> Option<Value> {
        Some(match field.kind() {
            Kind::String => Value::String(self.string()),
            Kind::Bytes => Value::Bytes(Bytes::from(vec![0xffu8; (self.next() % 64) as usize])),
            Kind::Bool => Value::Bool(self.chance(50)),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                let r = self.next() as i32;
                Value::I32(self.pick(&[0, -1, 1, i32::MAX, i32::MIN, 1_000_000, r]))
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                Value::I64(self.pick(&[0, -1, 1, i64::MAX, i64::MIN, 253_402_300_800]))
            }
            Kind::Uint32 | Kind::Fixed32 => Value::U32(self.pick(&[0, 1, u32::MAX, 100_000])),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(self.pick(&[0, 1, u64::MAX, 1 << 40])),
            Kind::Float => Value::F32(self.pick(&[0.0, -0.0, f32::NAN, f32::INFINITY, -1.0, 1e30])),
            Kind::Double => Value::F64(self.pick(&[0.0, f64::NAN, f64::NEG_INFINITY, -1.0, 1e300])),
            Kind::Enum(e) => {
                let known: Vec<i32> = e.values().map(|v| v.number()).collect();
                if self.chance(20) {
                    Value::EnumNumber(999)
                } else {
                    Value::EnumNumber(self.pick(&known))
                }
            }
            Kind::Message(m) => {
                if depth >= 3 {
                    return None;
                }
                Value::Message(self.message(&m, depth + 1))
            }
        })
    }

    fn message(&mut self, desc: &MessageDescriptor, depth: usize) -> DynamicMessage {
        let mut msg = DynamicMessage::new(desc.clone());
        for field in desc.fields() {
            if !self.chance(70) {
                continue;
            }
            if field.is_map() {
                continue;
            }
            if field.is_list() {
                let n = if self.chance(5) { 300 } else { self.next() % 4 };
                let items: Vec<Value> = (0..n).filter_map(|_| self.value(&field, depth)).collect();
                msg.set_field(&field, Value::List(items));
            } else if let Some(v) = self.value(&field, depth) {
                msg.set_field(&field, v);
            }
        }
        msg
    }
}

#[tokio::test]
async fn random_messages_to_every_method_of_every_contract_get_a_clear_status() {
    count_panics();
    let server = start_quiet().await;
    let mut pool = DescriptorPool::new();
    pool.decode_file_descriptor_set(focusforge_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptors");
    // More with FOCUSFORGE_FUZZ_CASES for a longer run.
    let cases: u64 = std::env::var("FOCUSFORGE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let before = PANICS.load(Ordering::SeqCst);
    let mut unclear = Vec::new();
    let mut calls = 0;
    let mut methods = 0;
    for service in pool
        .services()
        .filter(|s| s.full_name().starts_with("focusforge."))
    {
        for method in service.methods() {
            methods += 1;
            let path = format!("/{}/{}", service.full_name(), method.name());
            for case in 0..cases {
                let mut noise = Noise(0x9E37_79B9_7F4A_7C15 ^ ((calls as u64 + 1) * 7919 + case));
                let msg = noise.message(&method.input(), 0);
                let out = raw(
                    server.addr,
                    Http::V2,
                    &path,
                    "application/grpc",
                    frame(0, &msg.encode_to_vec()),
                    &[("grpc-timeout", "3S".into())],
                )
                .await;
                calls += 1;
                if !is_clear(&out) {
                    unclear.push(format!("{path} case {case}: {out:?}"));
                }
            }
        }
    }
    assert!(
        methods > 50,
        "only {methods} methods found in the contracts"
    );
    assert!(
        unclear.is_empty(),
        "{} of {calls} calls unclear:\n{}",
        unclear.len(),
        unclear.join("\n")
    );
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        before,
        "a panic in the product"
    );
    still_serves(&server).await;
    server.stop().await;
}
