use bytes::Bytes;
use focusforge_proto::tasks::v1::{
    CreateTaskRequest, CreateTaskResponse, GetTaskRequest, GetTaskResponse,
};
use http::Request;
use http_body_util::Full;
use prost::Message;

use crate::harness::{Http, Server, config, grpc_web, send, token};

const CREATE: &str = "/focusforge.tasks.v1.TaskService/CreateTask";
const GET: &str = "/focusforge.tasks.v1.TaskService/GetTask";

#[tokio::test]
async fn grpc_web_binary_and_text_over_http1_and_http2() {
    let server = Server::start().await;
    let auth = format!("Bearer {}", token("alice"));
    for (text, http) in [
        (false, Http::V1),
        (true, Http::V1),
        (false, Http::V2),
        (true, Http::V2),
    ] {
        let title = format!("web task text={text} {http:?}");
        let req = CreateTaskRequest {
            title: title.clone(),
            ..Default::default()
        };
        let res = grpc_web(
            server.addr,
            CREATE,
            &req,
            text,
            http,
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(res.status, 200);
        let content_type = res
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let expected = if text {
            "application/grpc-web-text"
        } else {
            "application/grpc-web+proto"
        };
        assert!(content_type.starts_with(expected), "{content_type}");
        assert!(
            res.trailer_frame,
            "a successful call ends with a trailer frame"
        );
        assert_eq!(res.grpc_status(), Some("0"), "{res:?}");
        assert_eq!(res.messages.len(), 1);
        let created = CreateTaskResponse::decode(res.messages[0].clone())
            .expect("decode")
            .task
            .expect("task");
        assert_eq!(created.title, title);

        // And the task is readable over native gRPC-web GetTask too.
        let get = GetTaskRequest {
            id: created.id.clone(),
        };
        let res = grpc_web(
            server.addr,
            GET,
            &get,
            text,
            http,
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(res.grpc_status(), Some("0"));
        let got = GetTaskResponse::decode(res.messages[0].clone())
            .expect("decode")
            .task
            .expect("task");
        assert_eq!(got.id, created.id);
    }
    server.stop().await;
}

#[tokio::test]
async fn grpc_web_errors_carry_status_and_details() {
    let server = Server::start().await;
    let req = CreateTaskRequest {
        title: "no token".into(),
        ..Default::default()
    };
    let res = grpc_web(server.addr, CREATE, &req, false, Http::V1, &[]).await;
    assert_eq!(res.grpc_status(), Some("16"), "unauthenticated: {res:?}");
    assert!(res.messages.is_empty());

    let auth = format!("Bearer {}", token("alice"));
    let req = CreateTaskRequest {
        title: String::new(),
        ..Default::default()
    };
    let res = grpc_web(
        server.addr,
        CREATE,
        &req,
        true,
        Http::V1,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(res.grpc_status(), Some("3"), "invalid argument: {res:?}");
    assert!(
        res.trailer("grpc-status-details-bin").is_some(),
        "field violations travel as details"
    );
    assert_eq!(
        res.trailer("grpc-message"),
        Some("invalid%20title"),
        "percent-encoded per the spec"
    );

    let res = grpc_web(
        server.addr,
        "/focusforge.nothing.v1.Nope/Call",
        &req,
        false,
        Http::V1,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(
        res.grpc_status(),
        Some("12"),
        "unknown services are unimplemented"
    );
    server.stop().await;
}

#[tokio::test]
async fn request_ids_are_added_or_echoed() {
    let server = Server::start().await;
    let auth = format!("Bearer {}", token("alice"));
    let req = CreateTaskRequest {
        title: "ids".into(),
        ..Default::default()
    };
    let res = grpc_web(
        server.addr,
        CREATE,
        &req,
        false,
        Http::V1,
        &[("authorization", &auth)],
    )
    .await;
    let generated = res.headers.get("x-request-id").expect("generated id");
    assert_eq!(generated.len(), 36, "a uuid");
    let res = grpc_web(
        server.addr,
        CREATE,
        &req,
        false,
        Http::V1,
        &[
            ("authorization", &auth),
            ("x-request-id", "client-chosen-42"),
        ],
    )
    .await;
    assert_eq!(
        res.headers.get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"client-chosen-42"[..])
    );
    server.stop().await;
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.cors_origins = vec!["https://app.example".into()];
    let server = Server::start_in(dir, cfg).await;
    let preflight = |origin: &'static str| {
        Request::options(format!("http://{}{CREATE}", server.addr))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-grpc-web,authorization",
            )
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let ok = send(server.addr, preflight("https://app.example"), Http::V1).await;
    assert!(ok.status().is_success());
    let h = ok.headers();
    assert_eq!(
        h.get("access-control-allow-origin").map(|v| v.as_bytes()),
        Some(&b"https://app.example"[..])
    );
    let allowed = h
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-grpc-web"),
        "{allowed}"
    );

    let denied = send(server.addr, preflight("https://evil.example"), Http::V1).await;
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let auth = format!("Bearer {}", token("alice"));
    let req = CreateTaskRequest {
        title: "from the browser".into(),
        ..Default::default()
    };
    let res = grpc_web(
        server.addr,
        CREATE,
        &req,
        false,
        Http::V1,
        &[("authorization", &auth), ("origin", "https://app.example")],
    )
    .await;
    assert_eq!(res.grpc_status(), Some("0"));
    let exposed = res
        .headers
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(exposed.contains(name), "{name} must be exposed: {exposed}");
    }
    server.stop().await;
}
