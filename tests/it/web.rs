//! The web app on the gateway's port: its files at `/`, and the sign-in
//! helper that mints a token only on the generated dev secret, for a
//! browser on this machine.

use bytes::Bytes;
use focusforge_proto::tasks::v1::ListTasksRequest;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::harness::{Http, Server, bearer, config, send};

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn call(server: &Server, method: Method, path: &str, host: &str, body: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", server.addr))
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let res = send(server.addr, req, Http::V1).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

fn built_app(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("assets")).expect("mkdir");
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>FocusForge</title>",
    )
    .expect("index");
    std::fs::write(dir.join("assets/app-1a2b.js"), "console.log(1)").expect("asset");
}

/// A server on the generated dev secret (no configured key).
async fn dev_server(web: Option<&std::path::Path>) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.auth.jwt_secret = None;
    cfg.web_dir = web.map(std::path::Path::to_path_buf).unwrap_or_default();
    Server::start_in(dir, cfg).await
}

#[tokio::test]
async fn the_app_is_served_at_the_root_with_its_routes_and_a_strict_policy() {
    let web = tempfile::tempdir().expect("tempdir");
    built_app(web.path());
    let server = dev_server(Some(web.path())).await;
    let host = server.addr.to_string();

    let index = call(&server, Method::GET, "/", &host, "").await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.text().contains("<title>FocusForge</title>"));
    assert!(index.header("content-type").starts_with("text/html"));
    assert!(
        index
            .header("content-security-policy")
            .contains("default-src 'self'")
    );
    assert_eq!(index.header("x-content-type-options"), "nosniff");
    assert_eq!(index.header("cache-control"), "no-cache");

    // The app's own routes reload into the app.
    let route = call(&server, Method::GET, "/calendar/week", &host, "").await;
    assert_eq!(route.status, StatusCode::OK);
    assert_eq!(route.body, index.body);

    let asset = call(&server, Method::GET, "/assets/app-1a2b.js", &host, "").await;
    assert_eq!(asset.status, StatusCode::OK);
    assert_eq!(asset.text(), "console.log(1)");
    assert!(asset.header("cache-control").contains("immutable"));

    // Nothing outside the directory.
    let escape = call(&server, Method::GET, "/../../../etc/passwd", &host, "").await;
    assert!(!escape.text().contains("root:"), "{}", escape.text());
    let encoded = call(&server, Method::GET, "/%2e%2e/%2e%2e/etc/passwd", &host, "").await;
    assert!(!encoded.text().contains("root:"), "{}", encoded.text());

    // gRPC still works next to the files.
    let res = call(
        &server,
        Method::POST,
        "/focusforge.tasks.v1.TaskService/ListTasks",
        &host,
        "{}",
    )
    .await;
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "Connect JSON without a token"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_a_build_the_root_says_how_to_make_one() {
    let missing = tempfile::tempdir().expect("tempdir");
    let server = dev_server(Some(&missing.path().join("dist"))).await;
    let res = call(&server, Method::GET, "/", &server.addr.to_string(), "").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.text().contains("npm run build"), "{}", res.text());
    server.stop().await;
}

#[tokio::test]
async fn the_dev_sign_in_mints_a_working_token_only_for_this_machine() {
    let server = dev_server(None).await;
    let host = server.addr.to_string();

    let probe = call(&server, Method::GET, "/dev/token", &host, "").await;
    assert_eq!(probe.json(), json!({ "available": true }));

    let minted = call(
        &server,
        Method::POST,
        "/dev/token",
        &host,
        r#"{"user":"ada"}"#,
    )
    .await;
    assert_eq!(minted.status, StatusCode::OK, "{}", minted.text());
    let token = minted.json()["token"].as_str().expect("token").to_owned();
    let mut tasks = server.tasks().await;
    tasks
        .list_tasks(bearer(&token, ListTasksRequest::default()))
        .await
        .expect("the minted token is taken");

    let bad = call(
        &server,
        Method::POST,
        "/dev/token",
        &host,
        r#"{"user":"not a user!"}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["field"], "user");
    let none = call(&server, Method::POST, "/dev/token", &host, "nonsense").await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    let huge = format!(r#"{{"user":"{}"}}"#, "a".repeat(10_000));
    let huge = call(&server, Method::POST, "/dev/token", &host, &huge).await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);

    // A page elsewhere that rebinds its name to 127.0.0.1 names its own host.
    let rebound = call(
        &server,
        Method::POST,
        "/dev/token",
        "evil.example:8080",
        r#"{"user":"ada"}"#,
    )
    .await;
    assert_eq!(rebound.status, StatusCode::FORBIDDEN);
    assert!(rebound.json().get("token").is_none());
    let probe = call(&server, Method::GET, "/dev/token", "evil.example", "").await;
    assert_eq!(probe.json(), json!({ "available": false }));
    server.stop().await;
}

#[tokio::test]
async fn with_a_configured_key_the_dev_sign_in_mints_nothing() {
    // The harness's configuration has a JWT secret: a deployment's key.
    let server = Server::start().await;
    let host = server.addr.to_string();
    let probe = call(&server, Method::GET, "/dev/token", &host, "").await;
    assert_eq!(probe.json(), json!({ "available": false }));
    let res = call(
        &server,
        Method::POST,
        "/dev/token",
        &host,
        r#"{"user":"ada"}"#,
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.json().get("token").is_none());
    server.stop().await;
}
