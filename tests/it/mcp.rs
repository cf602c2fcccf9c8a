//! The tool registry through the gateway: McpService over gRPC, and the
//! MCP endpoint's authentication over HTTP.

use bytes::Bytes;
use focusforge_proto::mcp::v1::{
    CallToolRequest, GetStatusRequest, ListToolsRequest, ToolCategory,
};
use http::Request;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::{Http, Server, authed, config, send, token};

async fn call(
    server: &Server,
    user: &str,
    name: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, tonic::Status> {
    let r = server
        .mcp()
        .await
        .call_tool(authed(
            user,
            CallToolRequest {
                name: name.into(),
                arguments_json: args.to_string(),
            },
        ))
        .await?
        .into_inner();
    let result: serde_json::Value = serde_json::from_str(&r.result_json).expect("result json");
    let text: serde_json::Value = serde_json::from_str(&r.text).expect("text json");
    assert_eq!(result, text, "the text is the same JSON");
    Ok(result)
}

#[tokio::test]
async fn tools_run_for_the_caller_through_the_mesh() {
    // No in-process workers: `planner.execute_ready` is what runs the plan.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.jobs.workers = 0;
    let server = Server::start_in(dir, cfg).await;
    let mut mcp = server.mcp().await;
    let all = mcp
        .list_tools(authed("alice", ListToolsRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .tools;
    // The tools of the build's services: the engine's 15, mood's 2,
    // gamification's 3, focus's 6, calendar's 4, analytics' 1 and
    // integrations' 4, the orchestrator's 4.
    assert_eq!(all.len(), 39);
    let tasks = mcp
        .list_tools(authed(
            "alice",
            ListToolsRequest {
                category: ToolCategory::Tasks as i32,
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .tools;
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tasks.complete",
            "tasks.create",
            "tasks.get",
            "tasks.list",
            "tasks.start"
        ]
    );
    let schema: serde_json::Value =
        serde_json::from_str(&tasks[1].input_schema_json).expect("schema");
    assert_eq!(schema["required"], serde_json::json!(["title"]));

    let created = call(
        &server,
        "alice",
        "tasks.create",
        serde_json::json!({"title": "Tool-made", "tags": ["mcp"]}),
    )
    .await
    .expect("create");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["status"], "pending");
    let started = call(
        &server,
        "alice",
        "tasks.start",
        serde_json::json!({"id": id}),
    )
    .await
    .expect("start");
    assert_eq!(started["status"], "in_progress");
    // The tool acts for its caller only.
    let theirs = call(&server, "bob", "tasks.get", serde_json::json!({"id": id}))
        .await
        .expect_err("not bob's");
    assert_eq!(theirs.code(), Code::NotFound);
    let bobs = call(&server, "bob", "tasks.list", serde_json::json!({}))
        .await
        .expect("list");
    assert_eq!(bobs["tasks"], serde_json::json!([]));

    let breakdown = call(
        &server,
        "alice",
        "ai.break_down_task",
        serde_json::json!({"title": "Plan the offsite"}),
    )
    .await
    .expect("breakdown");
    assert!(!breakdown["blocks"].as_array().expect("blocks").is_empty());

    let plan = call(
        &server,
        "alice",
        "planner.plan",
        serde_json::json!({"actions": [{"key": "t", "type": "task_management", "params": {"op": "create", "title": "Planned by a tool"}}]}),
    )
    .await
    .expect("plan");
    let ran = call(
        &server,
        "alice",
        "planner.execute_ready",
        serde_json::json!({"plan_id": plan["id"]}),
    )
    .await
    .expect("execute");
    assert_eq!(ran["actions"][0]["key"], "t", "{ran}");
    assert_eq!(ran["actions"][0]["status"], "succeeded", "{ran}");
    let listed = call(
        &server,
        "alice",
        "planner.list",
        serde_json::json!({"plan_id": plan["id"]}),
    )
    .await
    .expect("list");
    assert_eq!(
        listed["actions"][0]["status"], "succeeded",
        "{ran} {listed}"
    );
    server.stop().await;
}

#[tokio::test]
async fn errors_say_which_tool_argument_or_service() {
    let server = Server::start().await;
    let unknown = call(&server, "alice", "tasks.destroy", serde_json::json!({}))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let invalid = call(
        &server,
        "alice",
        "tasks.create",
        serde_json::json!({"title": "", "colour": 1}),
    )
    .await
    .expect_err("invalid");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let fields: Vec<String> = invalid
        .get_details_bad_request()
        .expect("details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["arguments.title", "arguments.colour"]);
    let not_json = server
        .mcp()
        .await
        .call_tool(authed(
            "alice",
            CallToolRequest {
                name: "tasks.list".into(),
                arguments_json: "{".into(),
            },
        ))
        .await
        .expect_err("not json");
    assert_eq!(not_json.code(), Code::InvalidArgument);
    let mood = call(
        &server,
        "alice",
        "mood.log",
        serde_json::json!({"score": 6}),
    )
    .await
    .expect_err("out of range");
    assert_eq!(mood.code(), Code::InvalidArgument);
    let unauthenticated = server
        .mcp()
        .await
        .list_tools(tonic::Request::new(ListToolsRequest::default()))
        .await
        .expect_err("no token");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn status_follows_what_is_deployed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.services = vec!["tasks".into(), "mcp".into()];
    let server = Server::start_in(dir, cfg).await;
    let status = server
        .mcp()
        .await
        .get_status(authed("alice", GetStatusRequest {}))
        .await
        .expect("status")
        .into_inner()
        .tools;
    assert_eq!(status.len(), 39);
    for s in &status {
        let expect = s.name.starts_with("tasks.");
        assert_eq!(s.available, expect, "{s:?}");
        if !expect {
            assert!(s.detail.contains("not deployed here"), "{s:?}");
        }
    }
    let chains = call(
        &server,
        "alice",
        "ai.analyze_task",
        serde_json::json!({"title": "x"}),
    )
    .await
    .expect_err("no chain service here");
    assert_eq!(chains.code(), Code::Unavailable);
    call(
        &server,
        "alice",
        "tasks.create",
        serde_json::json!({"title": "still works"}),
    )
    .await
    .expect("tasks are deployed");
    server.stop().await;
}

#[tokio::test]
async fn the_mcp_endpoint_wants_a_valid_bearer_token() {
    let server = Server::start().await;
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    });
    let post = |auth: Option<String>| {
        let mut req = Request::post(format!("http://{}/mcp", server.addr))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.body(Full::new(Bytes::from(init.to_string())))
            .expect("request")
    };
    for (auth, http) in [(None, Http::V1), (Some("Bearer nope".to_owned()), Http::V2)] {
        let res = send(server.addr, post(auth), http).await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
    }
    let res = send(
        server.addr,
        post(Some(format!("Bearer {}", token("alice")))),
        Http::V1,
    )
    .await;
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let reply: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reply["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(reply["result"]["serverInfo"]["name"], "focusforge");

    // A refused request whose body arrives late still leaves its HTTP/1.1
    // connection open for the next request.
    let mut conn = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let body = init.to_string();
    let head = |auth: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\n{auth}content-length: {}\r\n\r\n",
            server.addr,
            body.len()
        )
    };
    conn.write_all(head("").as_bytes()).await.expect("head");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    conn.write_all(body.as_bytes()).await.expect("body");
    let first = read_response(&mut conn).await;
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    let auth = format!("authorization: Bearer {}\r\n", token("alice"));
    conn.write_all(format!("{}{body}", head(&auth)).as_bytes())
        .await
        .expect("second request");
    let second = read_response(&mut conn).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    server.stop().await;
}

/// Reads one HTTP/1.1 response with a content-length body.
async fn read_response(conn: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), conn.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed after {} bytes: {text}", buf.len());
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn browsers_may_call_the_mcp_endpoint_from_configured_origins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.cors_origins = vec!["https://agent.example".into()];
    let server = Server::start_in(dir, cfg).await;
    let preflight = Request::options(format!("http://{}/mcp", server.addr))
        .header("origin", "https://agent.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,mcp-protocol-version",
        )
        .body(Full::new(Bytes::new()))
        .expect("request");
    let res = send(server.addr, preflight, Http::V1).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://agent.example"
    );
    let refused = Request::post(format!("http://{}/mcp", server.addr))
        .header("origin", "https://agent.example")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    let res = send(server.addr, refused, Http::V1).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://agent.example"
    );
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii");
    assert!(exposed.contains("www-authenticate"), "{exposed}");
    server.stop().await;
}
