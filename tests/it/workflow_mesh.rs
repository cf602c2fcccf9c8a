//! A real mesh: one `focusforge serve` process per service plus a gateway,
//! each on its own port, sharing MongoDB (SecantusDB) and Redis. The
//! workflows and a subscription go through the gateway over gRPC and
//! gRPC-web; then the chain process is killed and task creation goes on
//! with the chain step reported unavailable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use focusforge_proto::events::v1::{EventType, SubscribeRequest, subscribe_response::Kind};
use focusforge_proto::mood::v1::ListMoodsRequest;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use focusforge_proto::orchestrator::v1 as pb;
use focusforge_proto::orchestrator::v1::orchestrator_service_client::OrchestratorServiceClient;
use focusforge_proto::planner::v1::planner_service_client::PlannerServiceClient;
use focusforge_proto::planner::v1::{ActionStatus, GetPlanRequest};
use focusforge_proto::tasks::v1::ListTasksRequest;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use http_body_util::Full;
use prost::Message;
use tonic::transport::Channel;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;

use crate::backends::mongo_uri;
use crate::harness::{Http, SECRET, authed, bearer, models_dir, send, token};
use crate::orchestrator::report_request;

/// The binary `cargo test` built beside this test binary.
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("focusforge"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} is missing: `cargo test --workspace` builds it",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One process of the mesh; killed when dropped.
struct Node {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

struct Mesh {
    database: String,
    redis: String,
    /// The test's OTLP receiver, where every node sends its spans.
    otlp: String,
    /// Every service's full name and its node's port.
    ports: BTreeMap<&'static str, u16>,
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

impl Mesh {
    /// Starts a node running `services` (short names), with every other
    /// service of `ports` as an upstream.
    fn start(&self, services: &[&str], port: u16) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut toml = format!(
            "listen = {}\ndata_dir = {}\nmodels_dir = {}\nservices = [{}]\nlog_level = {}\n",
            quote(&format!("127.0.0.1:{port}")),
            quote(&dir.path().display().to_string()),
            quote(&models_dir().display().to_string()),
            services
                .iter()
                .map(|s| quote(s))
                .collect::<Vec<_>>()
                .join(", "),
            quote(&std::env::var("FOCUSFORGE_MESH_LOG").unwrap_or_else(|_| "warn".into())),
        );
        toml.push_str("connect_timeout_ms = 1000\n");
        toml.push_str(&format!("otlp_endpoint = {}\n", quote(&self.otlp)));
        toml.push_str("[upstreams]\n");
        for (name, p) in &self.ports {
            if *p != port {
                toml.push_str(&format!(
                    "{} = {}\n",
                    quote(name),
                    quote(&format!("http://127.0.0.1:{p}"))
                ));
            }
        }
        toml.push_str(&format!(
            "[auth]\njwt_secret = {}\naccept_mesh_tokens = {}\n[mongodb]\nuri = {}\ndatabase = {}\n[redis]\nurl = {}\n[llm]\nbackend = \"none\"\n[jobs]\nworkers = 2\n",
            quote(SECRET),
            // The nodes are called by each other's components; the front
            // gateway is not.
            !services.is_empty(),
            quote(&mongo_uri()),
            quote(&self.database),
            quote(&self.redis),
        ));
        let file = dir.path().join("focusforge.toml");
        std::fs::write(&file, toml).expect("config");
        // No services: the gateway alone.
        let role = if services.is_empty() {
            "gateway"
        } else {
            "serve"
        };
        let child = Command::new(binary())
            .arg("--config")
            .arg(&file)
            .arg(role)
            .env_remove("FOCUSFORGE_TEST_MONGODB_URI")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn focusforge");
        Node {
            child,
            port,
            _dir: dir,
        }
    }
}

/// An OTLP/gRPC trace receiver on loopback, keeping every span it is sent
/// with its process's `service.name`.
struct Receiver {
    url: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<(String, SpanRecord)>>>,
}

#[derive(Clone, Debug)]
struct SpanRecord {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    name: String,
}

struct Collect(std::sync::Arc<std::sync::Mutex<Vec<(String, SpanRecord)>>>);

#[tonic::async_trait]
impl TraceService for Collect {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().expect("spans");
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push((
                    service.clone(),
                    SpanRecord {
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent: span.parent_span_id,
                        name: span.name,
                    },
                ));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let service = TraceServiceServer::new(Collect(spans.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self { url, spans }
    }

    /// Waits until one trace holds a server span of each (process, method),
    /// each process's span a descendant of the front gateway's.
    async fn one_trace_across(&self, want: &[(&str, &str)]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans.lock().expect("spans").clone();
            let root = spans
                .iter()
                .find(|(svc, s)| svc == want[0].0 && s.name == want[0].1);
            if let Some((_, root)) = root {
                let trace: Vec<&(String, SpanRecord)> = spans
                    .iter()
                    .filter(|(_, s)| s.trace_id == root.trace_id)
                    .collect();
                let by_id: BTreeMap<&[u8], &SpanRecord> = trace
                    .iter()
                    .map(|(_, s)| (s.span_id.as_slice(), s))
                    .collect();
                let descends = |s: &SpanRecord| {
                    let mut at = s;
                    for _ in 0..64 {
                        if at.span_id == root.span_id {
                            return true;
                        }
                        match by_id.get(at.parent.as_slice()) {
                            Some(p) => at = p,
                            None => return false,
                        }
                    }
                    false
                };
                let missing: Vec<&(&str, &str)> = want
                    .iter()
                    .filter(|(svc, name)| {
                        !trace
                            .iter()
                            .any(|(s, span)| s == svc && span.name == *name && descends(span))
                    })
                    .collect();
                if missing.is_empty() {
                    // The trace as the receiver has it (shown with --nocapture).
                    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                    println!("trace {}:", hex(&root.trace_id));
                    for (svc, span) in &trace {
                        println!(
                            "  {svc:<26} {:<70} span {} parent {}",
                            span.name,
                            hex(&span.span_id),
                            hex(&span.parent)
                        );
                    }
                    return;
                }
                if std::time::Instant::now() > deadline {
                    let seen: Vec<String> = trace
                        .iter()
                        .map(|(s, span)| format!("{s} {}", span.name))
                        .collect();
                    panic!("the trace lacks {missing:?}; it has {seen:#?}");
                }
            } else if std::time::Instant::now() > deadline {
                let seen: Vec<String> = spans
                    .iter()
                    .take(50)
                    .map(|(s, span)| format!("{s} {}", span.name))
                    .collect();
                panic!(
                    "no {} span from {}; spans seen: {seen:#?}",
                    want[0].1, want[0].0
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn ready(node: &Node, service: &str) {
    for _ in 0..600 {
        if let Ok(channel) = Channel::from_shared(node.url())
            .expect("uri")
            .connect()
            .await
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            if let Ok(r) = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                && r.into_inner().status == 1
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{service} on {} did not become ready", node.url());
}

#[tokio::test]
async fn the_workflows_run_across_one_process_per_service_and_survive_the_chain_going_down() {
    let redis = focusforge_cache::testing::RedisServer::start();
    // Short name, full name; planner and jobs share a process.
    let layout: &[(&[&str], &[&'static str])] = &[
        (&["tasks"], &["focusforge.tasks.v1.TaskService"]),
        (&["users"], &["focusforge.users.v1.UserService"]),
        (&["memory"], &["focusforge.memory.v1.MemoryService"]),
        (&["chain"], &["focusforge.chain.v1.ChainService"]),
        (
            &["planner", "jobs"],
            &[
                "focusforge.planner.v1.PlannerService",
                "focusforge.jobs.v1.JobService",
            ],
        ),
        (&["mood"], &["focusforge.mood.v1.MoodService"]),
        (
            &["gamification"],
            &["focusforge.gamification.v1.GamificationService"],
        ),
        (&["focus"], &["focusforge.focus.v1.FocusService"]),
        (&["calendar"], &["focusforge.calendar.v1.CalendarService"]),
        (
            &["analytics"],
            &["focusforge.analytics.v1.AnalyticsService"],
        ),
        (
            &["integrations"],
            &["focusforge.integrations.v1.IntegrationService"],
        ),
        (
            &["orchestrator"],
            &["focusforge.orchestrator.v1.OrchestratorService"],
        ),
        (&["events"], &["focusforge.events.v1.EventService"]),
    ];
    let mut ports = BTreeMap::new();
    let mut plan = Vec::new();
    for (shorts, names) in layout {
        let port = free_port();
        for n in *names {
            ports.insert(*n, port);
        }
        plan.push((*shorts, names[0], port));
    }
    let receiver = Receiver::start().await;
    let mesh = Mesh {
        database: format!("ff_mesh_{}", std::process::id()),
        redis: redis.url(),
        otlp: receiver.url.clone(),
        ports,
    };
    let mut nodes = BTreeMap::new();
    for (shorts, name, port) in &plan {
        nodes.insert(shorts[0], (mesh.start(shorts, *port), *name));
    }
    let gateway = mesh.start(&[], free_port());
    for (node, name) in nodes.values() {
        ready(node, name).await;
    }
    ready(&gateway, "").await;
    let channel = Channel::from_shared(gateway.url())
        .expect("uri")
        .connect()
        .await
        .expect("gateway");

    // A mesh token: a node takes it from another node's component, the
    // front gateway from no one.
    let key = focusforge_auth::MeshKey::derived(SECRET.as_bytes()).expect("mesh key");
    let ada = focusforge_core::UserId::parse("ada").expect("user");
    let mesh_token = key.mint(&ada, "planner").expect("mint");
    let mood_node = Channel::from_shared(nodes["mood"].0.url())
        .expect("uri")
        .connect()
        .await
        .expect("mood node");
    MoodServiceClient::new(mood_node)
        .list_moods(bearer(&mesh_token, ListMoodsRequest::default()))
        .await
        .expect("a node takes a mesh token");
    let err = MoodServiceClient::new(channel.clone())
        .list_moods(bearer(&mesh_token, ListMoodsRequest::default()))
        .await
        .expect_err("the front gateway refuses it");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut orch = OrchestratorServiceClient::new(channel.clone());

    // A browser's subscription, over gRPC-web through the gateway.
    let payload = SubscribeRequest::default().encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    let req = http::Request::post(format!(
        "{}/focusforge.events.v1.EventService/Subscribe",
        gateway.url()
    ))
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .header("authorization", format!("Bearer {}", token("ada")))
    .body(Full::new(Bytes::from(framed)))
    .expect("request");
    let res = send(gateway.addr(), req, Http::V1).await;
    assert_eq!(res.status(), 200);
    let mut stream = res.into_body();

    // Create, over gRPC, every step on another process.
    let created = orch
        .create_task_enhanced(authed(
            "ada",
            report_request("Write the quarterly sales report", "mesh-1"),
        ))
        .await
        .expect("create through the mesh")
        .into_inner();
    let task = created.task.clone().expect("task");
    assert!(task.blocks.len() >= 2, "{:?}", created.steps);
    for (name, want) in [
        ("memory.context", pb::StepOutcome::Ran),
        ("chain.breakdown", pb::StepOutcome::FellBack),
        ("tasks.create", pb::StepOutcome::Ran),
        ("planner.follow_ups", pb::StepOutcome::Ran),
        ("memory.insight", pb::StepOutcome::Ran),
    ] {
        let step = created.steps.iter().find(|s| s.name == name).expect(name);
        assert_eq!(step.outcome(), want, "{name}: {step:?}");
    }
    receiver
        .one_trace_across(&[
            (
                "focusforge-gateway",
                "/focusforge.orchestrator.v1.OrchestratorService/CreateTaskEnhanced",
            ),
            (
                "focusforge-orchestrator",
                "/focusforge.orchestrator.v1.OrchestratorService/CreateTaskEnhanced",
            ),
            (
                "focusforge-chain",
                "/focusforge.chain.v1.ChainService/BreakDownTask",
            ),
            (
                "focusforge-memory",
                "/focusforge.memory.v1.MemoryService/GetUserContext",
            ),
            (
                "focusforge-tasks",
                "/focusforge.tasks.v1.TaskService/CreateTask",
            ),
        ])
        .await;
    let retried = orch
        .create_task_enhanced(authed(
            "ada",
            report_request("Write the quarterly sales report", "mesh-1"),
        ))
        .await
        .expect("retry")
        .into_inner();
    assert!(retried.replayed);
    assert_eq!(retried.task.map(|t| t.id), Some(task.id.clone()));

    // The event of the creation reaches the browser.
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &focusforge_proto::events::v1::Event| e.r#type() == EventType::TaskCreated)
    {
        let got = tokio::time::timeout(
            Duration::from_secs(15),
            crate::events::web_messages(&mut stream, 1),
        )
        .await
        .expect("an event through the gateway in time");
        seen.extend(got.into_iter().filter_map(|m| match m.kind {
            Some(Kind::Event(e)) => Some(e),
            _ => None,
        }));
    }

    // The planner process ran the calendar action on the calendar process.
    let planner = PlannerServiceClient::new(channel.clone());
    let mut schedule = None;
    for _ in 0..300 {
        let plan = planner
            .clone()
            .get_plan(authed(
                "ada",
                GetPlanRequest {
                    plan_id: created.plan_id.clone(),
                },
            ))
            .await
            .expect("plan")
            .into_inner()
            .plan
            .expect("plan");
        schedule = plan
            .actions
            .into_iter()
            .find(|a| a.spec.as_ref().is_some_and(|s| s.key == "schedule"));
        if schedule
            .as_ref()
            .is_some_and(|a| a.status() == ActionStatus::Succeeded)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        schedule.as_ref().map(|a| a.status()),
        Some(ActionStatus::Succeeded),
        "{schedule:?}"
    );

    // Complete with a proof: verdict, points once.
    let proof = "Wrote the quarterly sales report: summarised the figures per region, compared them with the plan and drafted three recommendations for the board in the shared document";
    let done = orch
        .complete_task_enhanced(authed(
            "ada",
            pb::CompleteTaskEnhancedRequest {
                task_id: task.id.clone(),
                proof: proof.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("complete through the mesh")
        .into_inner();
    assert!(done.completed, "{:?}", done.steps);
    assert!(done.points_awarded > 0, "{:?}", done.steps);
    let again = orch
        .complete_task_enhanced(authed(
            "ada",
            pb::CompleteTaskEnhancedRequest {
                task_id: task.id.clone(),
                proof: proof.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("again")
        .into_inner();
    assert_eq!(again.balance, done.balance, "points once");

    // The chain process goes down: tasks are still created, and the report
    // says which step could not run and why.
    drop(nodes.remove("chain"));
    let without = orch
        .create_task_enhanced(authed("ada", report_request("Review the hiring plan", "")))
        .await
        .expect("create without the chain")
        .into_inner();
    let step = without
        .steps
        .iter()
        .find(|s| s.name == "chain.breakdown")
        .expect("step");
    assert_eq!(step.outcome(), pb::StepOutcome::Failed);
    assert_eq!(step.status, "UNAVAILABLE", "{step:?}");
    assert_eq!(step.service, "focusforge.chain.v1.ChainService");
    assert_eq!(
        without.task.as_ref().map(|t| t.title.as_str()),
        Some("Review the hiring plan")
    );
    let titles: Vec<String> = TaskServiceClient::new(channel)
        .list_tasks(authed("ada", ListTasksRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| t.title)
        .collect();
    assert_eq!(titles.len(), 2, "{titles:?}");
    drop(gateway);
}
