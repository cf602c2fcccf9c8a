use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use focusforge_proto::tasks::v1::{
    CreateTaskRequest, CreateTaskResponse, GetTaskRequest, ListTasksRequest,
};
use focusforge_proto::users::v1::GetProfileRequest;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

use crate::harness::{Http, Server, authed, config, eventually, grpc_web, token};

const CHAIN: &str = "focusforge.chain.v1.ChainService";
const MEMORY: &str = "focusforge.memory.v1.MemoryService";
const TASKS: &str = "focusforge.tasks.v1.TaskService";
const USERS: &str = "focusforge.users.v1.UserService";
const PLANNER: &str = "focusforge.planner.v1.PlannerService";
const JOBS: &str = "focusforge.jobs.v1.JobService";
const MCP: &str = "focusforge.mcp.v1.McpService";
const MOOD: &str = "focusforge.mood.v1.MoodService";
const GAME: &str = "focusforge.gamification.v1.GamificationService";
const FOCUS: &str = "focusforge.focus.v1.FocusService";
const CALENDAR: &str = "focusforge.calendar.v1.CalendarService";
const ANALYTICS: &str = "focusforge.analytics.v1.AnalyticsService";
const INTEGRATIONS: &str = "focusforge.integrations.v1.IntegrationService";
const EVENTS: &str = "focusforge.events.v1.EventService";
const ORCHESTRATOR: &str = "focusforge.orchestrator.v1.OrchestratorService";

/// An address nothing listens on.
async fn dead_address() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

async fn gateway(upstreams: BTreeMap<String, String>) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.services = vec![];
    cfg.upstreams = upstreams;
    cfg.connect_timeout_ms = 1000;
    Server::start_in(dir, cfg).await
}

async fn health(server: &Server, service: &str) -> Result<i32, tonic::Status> {
    let mut client = HealthClient::new(server.channel().await);
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
}

async fn reflected_services(server: &Server) -> Vec<String> {
    let mut client = ServerReflectionClient::new(server.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::once(req))
        .await
        .expect("reflection")
        .into_inner();
    match stream
        .next()
        .await
        .expect("one reply")
        .expect("ok")
        .message_response
    {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

#[tokio::test]
async fn a_single_process_reports_health_and_reflection_for_each_service() {
    let server = Server::start().await;
    for service in [
        "",
        CHAIN,
        MEMORY,
        TASKS,
        USERS,
        PLANNER,
        JOBS,
        MCP,
        MOOD,
        GAME,
        FOCUS,
        CALENDAR,
        ANALYTICS,
        INTEGRATIONS,
        EVENTS,
        ORCHESTRATOR,
    ] {
        assert_eq!(
            health(&server, service).await.expect("check"),
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    let unknown = health(&server, "focusforge.nope.v1.Nope")
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let names = reflected_services(&server).await;
    assert_eq!(
        names,
        [
            ANALYTICS,
            CALENDAR,
            CHAIN,
            EVENTS,
            FOCUS,
            GAME,
            INTEGRATIONS,
            JOBS,
            MCP,
            MEMORY,
            MOOD,
            ORCHESTRATOR,
            PLANNER,
            TASKS,
            USERS,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn the_gateway_routes_to_remote_services_and_reports_their_health() {
    let tasks_node = {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(&dir);
        cfg.services = vec!["tasks".into()];
        Server::start_in(dir, cfg).await
    };
    let upstreams = BTreeMap::from([
        (TASKS.to_owned(), tasks_node.url()),
        (USERS.to_owned(), dead_address().await),
    ]);
    let gw = gateway(upstreams).await;

    // Native gRPC through the gateway lands on the tasks node.
    let created = gw
        .tasks()
        .await
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "via the mesh".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create through gateway")
        .into_inner()
        .task
        .expect("task");
    let direct = tasks_node
        .tasks()
        .await
        .get_task(authed(
            "alice",
            GetTaskRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .expect("visible on the node");
    assert_eq!(
        direct.into_inner().task.expect("task").title,
        "via the mesh"
    );

    // gRPC-web is translated at the gateway and streamed through.
    let auth = format!("Bearer {}", token("alice"));
    let req = CreateTaskRequest {
        title: "web via mesh".into(),
        ..Default::default()
    };
    let res = grpc_web(
        gw.addr,
        "/focusforge.tasks.v1.TaskService/CreateTask",
        &req,
        true,
        Http::V1,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(res.grpc_status(), Some("0"), "{res:?}");
    let task = CreateTaskResponse::decode(res.messages[0].clone())
        .expect("decode")
        .task
        .expect("task");
    assert_eq!(task.title, "web via mesh");

    // Health through the gateway reflects each upstream.
    assert_eq!(
        health(&gw, TASKS).await.expect("check"),
        ServingStatus::Serving as i32
    );
    assert_eq!(
        health(&gw, USERS).await.expect("check"),
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        health(&gw, "").await.expect("check"),
        ServingStatus::Serving as i32
    );
    let names = reflected_services(&gw).await;
    assert!(
        names.contains(&TASKS.to_owned()) && names.contains(&USERS.to_owned()),
        "{names:?}"
    );

    // An unreachable upstream is UNAVAILABLE, and answered inside the deadline.
    let mut req = authed("alice", GetProfileRequest {});
    req.set_timeout(Duration::from_secs(3));
    let err = gw
        .users()
        .await
        .get_profile(req)
        .await
        .expect_err("dead upstream");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // The node goes away: UNAVAILABLE. It comes back on the same address: served again.
    let addr = tasks_node.addr;
    let dir = tasks_node.stop().await;
    let err = gw
        .tasks()
        .await
        .list_tasks(authed("alice", ListTasksRequest::default()))
        .await
        .expect_err("node down");
    assert_eq!(err.code(), Code::Unavailable);
    let mut cfg = config(&dir);
    cfg.services = vec!["tasks".into()];
    let listener = TcpListener::bind(addr)
        .await
        .expect("rebind the node's address");
    let node = focusforge_server::start(&cfg, listener)
        .await
        .expect("restart node");
    let mut client = gw.tasks().await;
    eventually("the gateway to reconnect", || {
        let mut client = client.clone();
        async move {
            client
                .list_tasks(authed("alice", ListTasksRequest::default()))
                .await
                .is_ok()
        }
    })
    .await;
    let listed = client
        .list_tasks(authed("alice", ListTasksRequest::default()))
        .await
        .expect("list");
    assert_eq!(
        listed.into_inner().tasks.len(),
        2,
        "the node's data survived its restart"
    );
    node.shutdown().await;
    gw.stop().await;
}

/// An HTTP/2 server that records each request's headers and never answers.
async fn black_hole() -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    record.lock().expect("lock").push(req.headers().clone());
                    async move {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn deadlines_and_metadata_propagate_to_upstreams() {
    let (uri, seen) = black_hole().await;
    let gw = gateway(BTreeMap::from([(TASKS.to_owned(), uri)])).await;
    // Raw gRPC-web, so the only clock running is the gateway's (a tonic
    // client would enforce the same grpc-timeout itself and race it).
    let auth = format!("Bearer {}", token("alice"));
    let res = grpc_web(
        gw.addr,
        "/focusforge.tasks.v1.TaskService/ListTasks",
        &ListTasksRequest::default(),
        false,
        Http::V2,
        &[
            ("authorization", &auth),
            ("grpc-timeout", "2S"),
            ("x-tenant", "acme"),
        ],
    )
    .await;
    assert_eq!(res.grpc_status(), Some("4"), "deadline exceeded: {res:?}");

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    let headers = &seen[0];
    let timeout = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .expect("grpc-timeout forwarded");
    let timeout = focusforge_gateway::parse_grpc_timeout(timeout).expect("valid timeout");
    assert!(timeout <= Duration::from_secs(2), "{timeout:?}");
    assert_eq!(
        headers.get("x-tenant").map(|v| v.as_bytes()),
        Some(&b"acme"[..])
    );
    assert!(
        headers.get("authorization").is_some(),
        "the token travels on so the service can verify it"
    );
    assert!(
        headers.get("x-request-id").is_some(),
        "the request id travels on"
    );
    gw.stop().await;
}
