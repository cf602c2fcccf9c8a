//! What an operator reads: per-method metrics, and where they are served.

use bytes::Bytes;
use focusforge_proto::tasks::v1::{GetTaskRequest, ListTasksRequest};
use http::Request;
use http_body_util::{BodyExt, Full};

use crate::harness::{Http, Server, authed, config, send};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("set-up");
    let res = send(addr, req, Http::V1).await;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn every_call_is_counted_by_method_and_code_with_its_latency() {
    let server = Server::start().await;
    let mut tasks = server.tasks().await;
    for _ in 0..3 {
        tasks
            .list_tasks(authed("ada", ListTasksRequest::default()))
            .await
            .expect("list");
    }
    let missing = tasks
        .get_task(authed("ada", GetTaskRequest { id: "nope".into() }))
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (status, text) = get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    let list = r#"method="/focusforge.tasks.v1.TaskService/ListTasks",code="OK""#;
    let count = |labels: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "focusforge_rpc_duration_seconds_count{{{labels}}} "
                ))
            })
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no count for {labels} in\n{text}"))
    };
    assert_eq!(count(list), 3);
    assert_eq!(
        count(r#"method="/focusforge.tasks.v1.TaskService/GetTask",code="NOT_FOUND""#),
        1
    );
    let inf = format!("focusforge_rpc_duration_seconds_bucket{{{list},le=\"+Inf\"}} 3");
    assert!(text.contains(&inf), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn metrics_on_their_own_listener_are_not_on_the_public_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.metrics_listen = "127.0.0.1:0".into();
    let server = Server::start_in(dir, cfg).await;
    let metrics = server.metrics_addr().expect("a metrics listener");
    assert_ne!(metrics.port(), server.addr.port());

    let (status, text) = get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("focusforge_gateway_connections "), "{text}");
    let (status, _) = get(server.addr, "/metrics").await;
    assert_eq!(status, 404, "the public port no longer answers /metrics");
    let (status, _) = get(metrics, "/other").await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn without_a_listener_of_their_own_metrics_are_for_this_host_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    // A proxy on this host forwards for clients elsewhere.
    cfg.connections.trusted_proxies = vec!["127.0.0.1".into()];
    let server = Server::start_in(dir, cfg).await;
    let (status, _) = get(server.addr, "/metrics").await;
    assert_eq!(status, 200, "a client on this host");
    let req = Request::get(format!("http://{}/metrics", server.addr))
        .header("x-forwarded-for", "203.0.113.5")
        .body(Full::new(Bytes::new()))
        .expect("set-up");
    let res = send(server.addr, req, Http::V1).await;
    assert_eq!(res.status(), 404, "a client elsewhere, through the proxy");
    server.stop().await;
}

/// A `focusforge serve` run with every secret set, JSON logs at debug, and
/// calls that use them (a failed OpenAI call, a Redis that refuses
/// connections): no secret appears in the log, and every line logged for a
/// request names its request id and trace id.
#[tokio::test]
async fn json_logs_name_each_request_and_never_a_secret() {
    use std::process::{Command, Stdio};
    const SECRETS: [&str; 6] = [
        "jwt-secret-for-the-log-test-0123456789abcdef",
        "mesh-secret-for-the-log-test-0123456789abcdef",
        "sk-openai-key-for-the-log-test",
        "redis-password-for-the-log-test",
        "google-client-secret-for-the-log-test",
        // 32 bytes, base64.
        "c3BvdGlmeS10b2tlbi1rZXktMzItYnl0ZXMtbG9uZyE=",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let toml = format!(
        "[service.integrations]\nspotify_client_id = \"client\"\nspotify_redirect_uri = \"http://127.0.0.1/cb\"\nspotify_token_key = \"{}\"\n\
         [service.calendar.google]\nclient_id = \"google-client\"\nclient_secret = \"{}\"\nredirect_uri = \"http://127.0.0.1/g\"\ntoken_key = \"{}\"\n",
        SECRETS[5], SECRETS[4], SECRETS[5]
    );
    std::fs::write(dir.path().join("focusforge.toml"), toml).expect("config");
    let exe = std::env::current_exe().expect("test binary");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("focusforge"))
        .expect("target directory");
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(dir.path().join("focusforge.toml"))
        .arg("serve")
        .env("FOCUSFORGE_DATA_DIR", dir.path())
        .env("FOCUSFORGE_MODELS_DIR", crate::harness::models_dir())
        .env("FOCUSFORGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FOCUSFORGE_LOG_FORMAT", "json")
        .env("FOCUSFORGE_LOG_LEVEL", "debug")
        .env("FOCUSFORGE_JWT_SECRET", SECRETS[0])
        .env("FOCUSFORGE_MESH_SECRET", SECRETS[1])
        .env("FOCUSFORGE_LLM_BACKEND", "openai")
        .env(
            "FOCUSFORGE_OPENAI_BASE_URL",
            format!("http://127.0.0.1:{closed}/v1"),
        )
        .env("FOCUSFORGE_OPENAI_API_KEY", SECRETS[2])
        .env(
            "FOCUSFORGE_REDIS_URL",
            format!("redis://:{}@127.0.0.1:{closed}/0", SECRETS[3]),
        )
        .env("FOCUSFORGE_WEB_DIR", "")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn focusforge");
    let url = format!("http://127.0.0.1:{port}");
    let mut channel = None;
    for _ in 0..600 {
        if let Ok(c) = tonic::transport::Channel::from_shared(url.clone())
            .expect("uri")
            .connect()
            .await
        {
            channel = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let channel = channel.expect("the server came up");
    let token = focusforge_auth::Minter::new(
        &focusforge_auth::KeyMaterial::Hs256(SECRETS[0].as_bytes().to_vec()),
        None,
    )
    .expect("minter")
    .mint(&focusforge_core::UserId::parse("ada").expect("user"), 600)
    .expect("token");
    let mut tasks =
        focusforge_proto::tasks::v1::task_service_client::TaskServiceClient::new(channel.clone());
    let created = tasks
        .create_task(crate::harness::bearer(
            &token,
            focusforge_proto::tasks::v1::CreateTaskRequest {
                title: "Write the quarterly report".into(),
                ..Default::default()
            },
        ))
        .await;
    assert!(created.is_ok(), "{created:?}");
    // The chain tries OpenAI (refused) and falls back to its rules.
    let mut chain =
        focusforge_proto::chain::v1::chain_service_client::ChainServiceClient::new(channel.clone());
    let _ = chain
        .break_down_task(crate::harness::bearer(
            &token,
            focusforge_proto::chain::v1::BreakDownTaskRequest {
                task: Some(focusforge_proto::chain::v1::TaskInput {
                    title: "Plan the team offsite".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await;
    let _ = tasks
        .get_task(crate::harness::bearer(
            "not-a-token",
            focusforge_proto::tasks::v1::GetTaskRequest { id: "x".into() },
        ))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).expect("log");
    for secret in SECRETS {
        assert!(!text.contains(secret), "a secret in the log: {secret}");
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let calls: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "rpc").collect();
    assert!(calls.len() >= 3, "{} call lines in\n{text}", calls.len());
    for line in &calls {
        let (rid, tid) = (line["request_id"].as_str(), line["trace_id"].as_str());
        assert!(rid.is_some_and(|r| !r.is_empty()), "no request id: {line}");
        assert!(tid.is_some_and(|t| t.len() == 32), "no trace id: {line}");
    }
    // Lines logged while serving a request, by any crate, carry its ids too.
    let inside: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] != "rpc" && l.get("request_id").is_some())
        .collect();
    assert!(
        !inside.is_empty(),
        "no line logged inside a request names it"
    );
    for line in inside {
        assert!(
            line["trace_id"].as_str().is_some_and(|t| t.len() == 32),
            "{line}"
        );
    }
}

#[tokio::test]
async fn finished_jobs_are_counted_by_kind_and_state() {
    use focusforge_proto::planner::v1::{ActionSpec, ActionType, CreatePlanRequest};
    let server = Server::start().await;
    server
        .planner()
        .await
        .create_plan(authed(
            "ada",
            CreatePlanRequest {
                title: "one action".into(),
                actions: vec![ActionSpec {
                    key: "a".into(),
                    r#type: ActionType::TaskManagement as i32,
                    params_json: r#"{"op":"create","title":"planned"}"#.into(),
                    ..Default::default()
                }],
                request_id: String::new(),
            },
        ))
        .await
        .expect("plan");
    let line = r#"focusforge_jobs_finished_total{kind="planner.advance",state="succeeded"} "#;
    crate::harness::eventually("the plan's job is counted", || async {
        let (_, text) = get(server.addr, "/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 1)
    })
    .await;
    server.stop().await;
}
