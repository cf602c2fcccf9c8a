//! The Connect protocol on the gateway's port, spoken by hand over HTTP/1.1
//! and HTTP/2 as the protocol's specification writes its examples.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bytes::{Buf, Bytes};
use focusforge_proto::tasks::v1::{GetTaskRequest, GetTaskResponse};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use prost::Message;
use serde_json::{Value, json};

use crate::harness::{Http, Server, config, send, token};

const CREATE: &str = "/focusforge.tasks.v1.TaskService/CreateTask";
const GET: &str = "/focusforge.tasks.v1.TaskService/GetTask";
const BREAKDOWN: &str = "/focusforge.chain.v1.ChainService/StreamTaskBreakdown";
const SUBSCRIBE: &str = "/focusforge.events.v1.EventService/Subscribe";

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The envelopes of a streaming answer: (flags, message).
    fn envelopes(&self) -> Vec<(u8, Bytes)> {
        let mut raw = self.body.clone();
        let mut out = Vec::new();
        while !raw.is_empty() {
            assert!(raw.len() >= 5, "truncated envelope: {raw:?}");
            let flags = raw[0];
            let len = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
            raw.advance(5);
            out.push((flags, raw.split_to(len)));
        }
        out
    }
}

async fn call(
    server: &Server,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
    http: Http,
) -> Answer {
    let mut req =
        Request::post(format!("http://{}{path}", server.addr)).header("content-type", content_type);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).expect("request");
    let res = send(server.addr, req, http).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

fn envelope(flags: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[tokio::test]
async fn unary_calls_in_json_and_binary_over_http1_and_http2() {
    let server = Server::start().await;
    let auth = format!("Bearer {}", token("alice"));
    for http in [Http::V1, Http::V2] {
        // The shape of the specification's first example: a JSON body, a
        // JSON answer, no envelope.
        let created = call(
            &server,
            CREATE,
            "application/json",
            json!({"title": format!("connect {http:?}"), "tags": ["web"], "estimatedMinutes": 25})
                .to_string(),
            &[
                ("authorization", &auth),
                ("connect-protocol-version", "1"),
                ("x-request-id", "connect-42"),
            ],
            http,
        )
        .await;
        assert_eq!(created.status, StatusCode::OK, "{:?}", created.body);
        assert_eq!(created.header("content-type"), "application/json");
        assert_eq!(created.header("x-request-id"), "connect-42");
        let task = &created.json()["task"];
        assert_eq!(task["title"], json!(format!("connect {http:?}")));
        assert_eq!(task["tags"], json!(["web"]));
        assert_eq!(task["estimatedMinutes"], json!(25));
        assert_eq!(task["status"], json!("TASK_STATUS_PENDING"), "{task}");
        let id = task["id"].as_str().expect("id").to_owned();

        // The same task through the binary codec.
        let get = GetTaskRequest { id: id.clone() };
        let got = call(
            &server,
            GET,
            "application/proto",
            get.encode_to_vec(),
            &[("authorization", &auth)],
            http,
        )
        .await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.header("content-type"), "application/proto");
        let got = GetTaskResponse::decode(got.body).expect("decode");
        assert_eq!(got.task.expect("task").id, id);
        assert!(
            !created.header("x-request-id").is_empty(),
            "every answer has a request id"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn errors_are_connect_json_with_the_same_codes_and_details() {
    let server = Server::start().await;
    let auth = format!("Bearer {}", token("alice"));

    let none = call(
        &server,
        CREATE,
        "application/json",
        "{\"title\":\"x\"}",
        &[],
        Http::V1,
    )
    .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.header("content-type"), "application/json");
    assert_eq!(none.json()["code"], json!("unauthenticated"));
    assert!(!none.header("x-request-id").is_empty());

    // A field violation: the code, the message, and google.rpc.BadRequest
    // both as bytes and readable.
    let bad = call(
        &server,
        CREATE,
        "application/json",
        "{\"title\":\"   \"}",
        &[("authorization", &auth)],
        Http::V1,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let error = bad.json();
    assert_eq!(error["code"], json!("invalid_argument"));
    assert_eq!(error["message"], json!("invalid title"));
    let detail = error["details"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|d| d["type"] == json!("google.rpc.BadRequest"))
        })
        .unwrap_or_else(|| panic!("no BadRequest in {error}"));
    let value = STANDARD_NO_PAD
        .decode(detail["value"].as_str().expect("value"))
        .expect("unpadded base64");
    let decoded = tonic_types::pb::BadRequest::decode(value.as_slice()).expect("BadRequest");
    assert_eq!(decoded.field_violations[0].field, "title");
    assert_eq!(
        detail["debug"]["fieldViolations"][0]["field"],
        json!("title")
    );

    // A body that is not the request message names what is wrong.
    let typo = call(
        &server,
        CREATE,
        "application/json",
        "{\"titel\":\"x\"}",
        &[("authorization", &auth)],
        Http::V1,
    )
    .await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST);
    let message = typo.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("focusforge.tasks.v1.CreateTaskRequest") && message.contains("titel"),
        "{message}"
    );
    let broken = call(
        &server,
        CREATE,
        "application/json",
        "{\"title\":",
        &[("authorization", &auth)],
        Http::V1,
    )
    .await;
    assert_eq!(broken.json()["code"], json!("invalid_argument"));

    // Another user's task is not found, with its HTTP status.
    let theirs = call(
        &server,
        CREATE,
        "application/json",
        "{\"title\":\"bob's\"}",
        &[("authorization", &format!("Bearer {}", token("bob")))],
        Http::V1,
    )
    .await;
    let id = theirs.json()["task"]["id"].as_str().expect("id").to_owned();
    let missing = call(
        &server,
        GET,
        "application/json",
        json!({"id": id}).to_string(),
        &[("authorization", &auth)],
        Http::V1,
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{:?}", missing.body);
    assert_eq!(missing.json()["code"], json!("not_found"));

    let unknown = call(
        &server,
        "/focusforge.tasks.v1.TaskService/Nope",
        "application/json",
        "{}",
        &[("authorization", &auth)],
        Http::V1,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(unknown.json()["code"], json!("unimplemented"));

    for (name, value) in [
        ("connect-protocol-version", "2"),
        ("connect-timeout-ms", "soon"),
        ("connect-timeout-ms", "12345678901"),
    ] {
        let res = call(
            &server,
            CREATE,
            "application/json",
            "{\"title\":\"x\"}",
            &[("authorization", &auth), (name, value)],
            Http::V1,
        )
        .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{name}: {value}");
        let message = res.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(name), "{message}");
    }
    let gzip = call(
        &server,
        CREATE,
        "application/json",
        "{\"title\":\"x\"}",
        &[("authorization", &auth), ("content-encoding", "gzip")],
        Http::V1,
    )
    .await;
    assert_eq!(gzip.json()["code"], json!("unimplemented"));

    // The gateway's message limit holds for Connect bodies too.
    let big = format!(
        "{{\"title\":\"x\",\"description\":\"{}\"}}",
        "a".repeat(5 << 20)
    );
    let over = call(
        &server,
        CREATE,
        "application/json",
        big,
        &[("authorization", &auth)],
        Http::V2,
    )
    .await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    assert!(
        over.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limit"),
        "{:?}",
        over.body
    );
    server.stop().await;
}

#[tokio::test]
async fn a_server_stream_arrives_in_envelopes_and_ends_with_its_status() {
    let server = Server::start().await;
    let auth = format!("Bearer {}", token("alice"));
    let request = json!({"task": {"title": "Write the quarterly sales report"}}).to_string();
    for http in [Http::V1, Http::V2] {
        let res = call(
            &server,
            BREAKDOWN,
            "application/connect+json",
            envelope(0, request.as_bytes()),
            &[("authorization", &auth), ("connect-protocol-version", "1")],
            http,
        )
        .await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.header("content-type"), "application/connect+json");
        let envelopes = res.envelopes();
        let (last, rest) = envelopes.split_last().expect("an end of stream");
        assert_eq!(last.0, 0x02, "the last envelope ends the stream");
        let end: Value = serde_json::from_slice(&last.1).expect("end JSON");
        assert!(end.get("error").is_none(), "{end}");
        let messages: Vec<Value> = rest
            .iter()
            .map(|(flags, m)| {
                assert_eq!(*flags, 0);
                serde_json::from_slice(m).expect("message JSON")
            })
            .collect();
        // Each block on its own, then the result holding them all.
        let blocks: Vec<&Value> = messages.iter().filter_map(|m| m.get("block")).collect();
        let result = messages
            .last()
            .and_then(|m| m.get("result"))
            .expect("result last");
        let kept = result["blocks"].as_array().cloned().unwrap_or_default();
        assert!(kept.len() >= 3, "{result}");
        assert!(
            kept.iter()
                .all(|b| b["title"].as_str().is_some_and(|t| !t.is_empty())),
            "{result}"
        );
        let titles = |list: &[&Value]| -> Vec<String> {
            list.iter().map(|b| b["title"].to_string()).collect()
        };
        assert_eq!(
            titles(&blocks),
            titles(&kept.iter().collect::<Vec<_>>()),
            "the result holds the streamed blocks: {messages:?}"
        );
    }

    // An error before the stream: still HTTP 200, one end-of-stream
    // envelope that carries it.
    let res = call(
        &server,
        BREAKDOWN,
        "application/connect+json",
        envelope(0, request.as_bytes()),
        &[],
        Http::V1,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    let envelopes = res.envelopes();
    assert_eq!(envelopes.len(), 1);
    assert_eq!(envelopes[0].0, 0x02);
    let end: Value = serde_json::from_slice(&envelopes[0].1).expect("end JSON");
    assert_eq!(end["error"]["code"], json!("unauthenticated"));

    // A unary content type on a streaming method is refused, and so is a
    // malformed envelope.
    let unary = call(
        &server,
        BREAKDOWN,
        "application/json",
        request.clone(),
        &[("authorization", &auth)],
        Http::V1,
    )
    .await;
    assert_eq!(unary.json()["code"], json!("unimplemented"));
    let mut past = envelope(0, request.as_bytes());
    past[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
    let res = call(
        &server,
        BREAKDOWN,
        "application/connect+json",
        past,
        &[("authorization", &auth)],
        Http::V1,
    )
    .await;
    let end: Value = serde_json::from_slice(&res.envelopes()[0].1).expect("end JSON");
    assert_eq!(end["error"]["code"], json!("invalid_argument"), "{end}");
    server.stop().await;
}

#[tokio::test]
async fn connect_timeout_ms_is_the_calls_deadline() {
    let server = Server::start().await;
    let auth = format!("Bearer {}", token("alice"));
    // An event subscription stays open until its deadline.
    let started = std::time::Instant::now();
    let res = call(
        &server,
        SUBSCRIBE,
        "application/connect+proto",
        envelope(0, &[]),
        &[("authorization", &auth), ("connect-timeout-ms", "400")],
        Http::V2,
    )
    .await;
    let waited = started.elapsed();
    let envelopes = res.envelopes();
    let (flags, end) = envelopes.last().expect("end");
    assert_eq!(*flags, 0x02);
    let end: Value = serde_json::from_slice(end).expect("end JSON");
    assert_eq!(end["error"]["code"], json!("deadline_exceeded"), "{end}");
    assert!(
        waited >= std::time::Duration::from_millis(400),
        "ended after {waited:?}, before its deadline"
    );
    server.stop().await;
}

#[tokio::test]
async fn cors_lets_browsers_send_connect_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.cors_origins = vec!["https://app.example".into()];
    let server = Server::start_in(dir, cfg).await;
    let req = Request::options(format!("http://{}{CREATE}", server.addr))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,connect-protocol-version,connect-timeout-ms,authorization",
        )
        .body(Full::new(Bytes::new()))
        .expect("request");
    let res = send(server.addr, req, Http::V1).await;
    assert!(res.status().is_success());
    let allowed = res
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for name in [
        "connect-protocol-version",
        "connect-timeout-ms",
        "authorization",
    ] {
        assert!(allowed.contains(name), "{name} not allowed: {allowed}");
    }
    let auth = format!("Bearer {}", token("alice"));
    let res = call(
        &server,
        CREATE,
        "application/json",
        "{\"title\":\"from a browser\"}",
        &[("authorization", &auth), ("origin", "https://app.example")],
        Http::V1,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.header("access-control-allow-origin"),
        "https://app.example"
    );
    let exposed = res.header("access-control-expose-headers");
    assert!(exposed.contains("x-request-id"), "{exposed}");
    server.stop().await;
}
