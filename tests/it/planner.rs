//! Plans and jobs through the gateway: the in-process workers run plans,
//! JobService shows the jobs, and a restart resumes a plan.

use std::time::Duration;

use focusforge_cache::testing::RedisServer;
use focusforge_proto::common::v1::{Priority, RetryPolicy};
use focusforge_proto::jobs::v1::{
    CancelJobRequest, GetJobRequest, GetJobStatsRequest, JobState, ListJobsRequest,
    ListJobsResponse,
};
use focusforge_proto::planner::v1::{
    ActionSpec, ActionStatus, ActionType, CancelActionRequest, CreatePlanRequest,
    ExecuteReadyRequest, GetActionRequest, GetPlanRequest, ListActionsRequest, ListActionsResponse,
    Plan,
};
use focusforge_proto::tasks::v1::GetTaskRequest;
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::{Http, Server, authed, config, grpc_web, token};

fn task_action(key: &str, params: serde_json::Value, deps: &[&str]) -> ActionSpec {
    ActionSpec {
        key: key.into(),
        r#type: ActionType::TaskManagement as i32,
        params_json: params.to_string(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

fn report_plan() -> CreatePlanRequest {
    CreatePlanRequest {
        title: "ship the report".into(),
        actions: vec![
            task_action(
                "finish",
                serde_json::json!({"op": "complete", "task_id": "${create.id}", "proof": "sent it"}),
                &["start"],
            ),
            task_action(
                "start",
                serde_json::json!({"op": "start", "task_id": "${create.id}"}),
                &["create"],
            ),
            task_action(
                "create",
                serde_json::json!({"op": "create", "title": "Quarterly report", "priority": "high"}),
                &[],
            ),
        ],
        request_id: String::new(),
    }
}

/// A server whose in-process workers are off, so only ExecuteReady runs plans.
async fn server_without_workers() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.jobs.workers = 0;
    Server::start_in(dir, cfg).await
}

async fn wait_for_plan(server: &Server, user: &str, id: &str, what: &str) -> Plan {
    let mut planner = server.planner().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let plan = planner
            .get_plan(authed(user, GetPlanRequest { plan_id: id.into() }))
            .await
            .expect("get plan")
            .into_inner()
            .plan
            .expect("plan");
        if plan.done {
            return plan;
        }
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_workers_run_a_plan_in_dependency_order() {
    let server = Server::start().await;
    let mut planner = server.planner().await;
    let plan = planner
        .create_plan(authed("alice", report_plan()))
        .await
        .expect("create")
        .into_inner()
        .plan
        .expect("plan");
    let plan = wait_for_plan(&server, "alice", &plan.id, "the workers run the plan").await;
    let by_key = |k: &str| {
        plan.actions
            .iter()
            .find(|a| a.spec.as_ref().expect("spec").key == k)
            .expect("action")
            .clone()
    };
    for k in ["create", "start", "finish"] {
        assert_eq!(
            by_key(k).status,
            ActionStatus::Succeeded as i32,
            "{k}: {:?}",
            by_key(k)
        );
    }
    let started = |k: &str| by_key(k).start_time.expect("started");
    let (c, s, f) = (started("create"), started("start"), started("finish"));
    assert!(
        (c.seconds, c.nanos) <= (s.seconds, s.nanos)
            && (s.seconds, s.nanos) <= (f.seconds, f.nanos)
    );
    let output: serde_json::Value =
        serde_json::from_str(&by_key("create").output_json).expect("output json");
    let task = server
        .tasks()
        .await
        .get_task(authed(
            "alice",
            GetTaskRequest {
                id: output["id"].as_str().expect("id").into(),
            },
        ))
        .await
        .expect("task")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(task.completion_proof, "sent it");

    // The jobs that advanced it are the caller's, and only the caller's.
    // The worker settles the job that finished the plan just after the
    // plan is done, so the test waits for that.
    let mut jobs = server.jobs().await;
    let mut listed = ListJobsResponse::default();
    for _ in 0..600 {
        listed = jobs
            .list_jobs(authed(
                "alice",
                ListJobsRequest {
                    kind: "planner.advance".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list jobs")
            .into_inner();
        if listed
            .jobs
            .iter()
            .any(|j| j.state == JobState::Succeeded as i32)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listed.jobs.iter().all(|j| j.kind == "planner.advance"));
    let done = listed
        .jobs
        .iter()
        .find(|j| j.state == JobState::Succeeded as i32)
        .expect("a finished job");
    let payload: serde_json::Value = serde_json::from_str(&done.payload_json).expect("payload");
    assert_eq!(payload["plan_id"], plan.id);
    let stats = jobs
        .get_job_stats(authed("alice", GetJobStatsRequest {}))
        .await
        .expect("stats")
        .into_inner();
    assert!(stats.total.expect("total").succeeded >= 1);
    assert!(stats.by_kind["planner.advance"].succeeded >= 1);
    let theirs = jobs
        .get_job(authed(
            "bob",
            GetJobRequest {
                id: done.id.clone(),
            },
        ))
        .await
        .expect_err("not bob's");
    assert_eq!(theirs.code(), Code::NotFound);
    let cancel = jobs
        .cancel_job(authed(
            "bob",
            CancelJobRequest {
                id: done.id.clone(),
            },
        ))
        .await
        .expect_err("not bob's");
    assert_eq!(cancel.code(), Code::NotFound);
    let bobs = jobs
        .get_job_stats(authed("bob", GetJobStatsRequest {}))
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(bobs.total.expect("total").succeeded, 0);
    let unauthenticated = jobs
        .list_jobs(tonic::Request::new(ListJobsRequest::default()))
        .await
        .expect_err("no token");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn execute_ready_runs_now_and_cancel_cascades() {
    let server = server_without_workers().await;
    let mut planner = server.planner().await;
    let mut request = report_plan();
    request.actions.push(ActionSpec {
        key: "celebrate".into(),
        r#type: ActionType::Notification as i32,
        priority: Priority::Low as i32,
        depends_on: vec!["finish".into()],
        ..Default::default()
    });
    let plan = planner
        .create_plan(authed("alice", request))
        .await
        .expect("create")
        .into_inner()
        .plan
        .expect("plan");
    let (_, cancelled) = {
        let r = planner
            .cancel_action(authed(
                "alice",
                CancelActionRequest {
                    plan_id: plan.id.clone(),
                    key: "start".into(),
                    reason: "not today".into(),
                },
            ))
            .await
            .expect("cancel")
            .into_inner();
        (r.plan, r.cancelled_keys)
    };
    let mut cancelled = cancelled;
    cancelled.sort();
    assert_eq!(cancelled, ["celebrate", "finish", "start"]);

    let ran = planner
        .execute_ready(authed("alice", ExecuteReadyRequest::default()))
        .await
        .expect("execute")
        .into_inner()
        .actions;
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].spec.as_ref().expect("spec").key, "create");
    assert_eq!(ran[0].status, ActionStatus::Succeeded as i32);

    let finish = planner
        .get_action(authed(
            "alice",
            GetActionRequest {
                plan_id: plan.id.clone(),
                key: "finish".into(),
            },
        ))
        .await
        .expect("get action")
        .into_inner()
        .action
        .expect("action");
    assert_eq!(finish.status, ActionStatus::Cancelled as i32);
    assert!(
        finish.cancel_reason.contains("start"),
        "{}",
        finish.cancel_reason
    );

    let cancelled_only = planner
        .list_actions(authed(
            "alice",
            ListActionsRequest {
                statuses: vec![ActionStatus::Cancelled as i32],
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(cancelled_only.actions.len(), 3);
    let others = planner
        .list_actions(authed("bob", ListActionsRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert!(
        others.actions.is_empty(),
        "bob sees none of alice's actions"
    );
    let missing = planner
        .get_plan(authed(
            "bob",
            GetPlanRequest {
                plan_id: plan.id.clone(),
            },
        ))
        .await
        .expect_err("not bob's");
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn bad_plans_name_the_offending_actions() {
    let server = server_without_workers().await;
    let mut planner = server.planner().await;
    let op = serde_json::json!({"op": "get", "task_id": "x"});
    let cases: Vec<(Vec<ActionSpec>, &str, &str)> = vec![
        (
            vec![
                task_action("a", op.clone(), &["b"]),
                task_action("b", op.clone(), &["a"]),
            ],
            "actions",
            "a, b",
        ),
        (
            vec![task_action("a", op.clone(), &["ghost"])],
            "actions[a].depends_on",
            "ghost",
        ),
        (
            vec![ActionSpec {
                key: "a".into(),
                ..Default::default()
            }],
            "actions[0].type",
            "specified",
        ),
        (
            vec![ActionSpec {
                key: "a".into(),
                r#type: ActionType::Memory as i32,
                params_json: "[1, 2]".into(),
                ..Default::default()
            }],
            "actions[0].params_json",
            "object",
        ),
        (
            vec![ActionSpec {
                key: "a".into(),
                r#type: ActionType::Memory as i32,
                retry: Some(RetryPolicy {
                    max_attempts: 500,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            "actions[a].retry.max_attempts",
            "1-100",
        ),
        (vec![], "actions", "empty"),
    ];
    for (actions, field, mentions) in cases {
        let err = planner
            .create_plan(authed(
                "alice",
                CreatePlanRequest {
                    title: String::new(),
                    actions,
                    request_id: String::new(),
                },
            ))
            .await
            .expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        let violations = err
            .get_details_bad_request()
            .expect("bad request details")
            .field_violations;
        assert_eq!(violations[0].field, field, "{violations:?}");
        assert!(
            violations[0].description.contains(mentions),
            "{violations:?}"
        );
    }
    let err = planner
        .list_actions(authed(
            "alice",
            ListActionsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn planner_calls_work_over_grpc_web() {
    let server = server_without_workers().await;
    server
        .planner()
        .await
        .create_plan(authed("alice", report_plan()))
        .await
        .expect("create");
    let auth = format!("Bearer {}", token("alice"));
    let res = grpc_web(
        server.addr,
        "/focusforge.planner.v1.PlannerService/ListActions",
        &ListActionsRequest::default(),
        true,
        Http::V1,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(res.grpc_status(), Some("0"), "{res:?}");
    let list = ListActionsResponse::decode(res.messages[0].clone()).expect("decode");
    assert_eq!(list.actions.len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_resumes_a_waiting_plan() {
    let server = Server::start().await;
    let mut later = task_action(
        "later",
        serde_json::json!({"op": "create", "title": "Later"}),
        &[],
    );
    let due = std::time::SystemTime::now() + Duration::from_millis(1500);
    later.not_before = Some(prost_types::Timestamp::from(due));
    let plan = server
        .planner()
        .await
        .create_plan(authed(
            "alice",
            CreatePlanRequest {
                title: "later".into(),
                actions: vec![later],
                request_id: String::new(),
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .plan
        .expect("plan");
    assert_eq!(plan.actions[0].status, ActionStatus::Pending as i32);
    let dir = server.stop().await;
    let cfg = config(&dir);
    let server = Server::start_in(dir, cfg).await;
    let plan = wait_for_plan(
        &server,
        "alice",
        &plan.id,
        "the restarted server runs the plan",
    )
    .await;
    assert_eq!(plan.actions[0].status, ActionStatus::Succeeded as i32);
    let started = plan.actions[0].start_time.expect("started");
    let due = prost_types::Timestamp::from(due);
    assert!(
        (started.seconds, started.nanos) >= (due.seconds, due.nanos),
        "not before its time"
    );
    server.stop().await;
}

#[tokio::test]
async fn plans_run_on_the_redis_queue() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.redis.url = Some(redis.url());
    let server = Server::start_in(dir, cfg).await;
    let plan = server
        .planner()
        .await
        .create_plan(authed("alice", report_plan()))
        .await
        .expect("create")
        .into_inner()
        .plan
        .expect("plan");
    let plan = wait_for_plan(&server, "alice", &plan.id, "the plan runs through redis").await;
    assert!(
        plan.actions
            .iter()
            .all(|a| a.status == ActionStatus::Succeeded as i32)
    );
    // The job went through Redis, not the embedded file.
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "--scan",
            "--pattern",
            "focusforge:jobs:job:*",
        ])
        .output()
        .expect("redis-cli");
    assert!(
        !String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "no job keys in redis"
    );
    server.stop().await;
}
