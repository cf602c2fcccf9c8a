//! The orchestrator's workflows through the gateway, in one process: what
//! each step did, idempotent retries, the follow-up plan carried out at the
//! times it names (a reminder on the event stream, a focus session), proofs
//! that keep a task open, points once, the day plan, and the MCP tools.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use focusforge_core::ManualClock;
use focusforge_proto::calendar::v1 as cal;
use focusforge_proto::chain::v1::ProofVerdict;
use focusforge_proto::events::v1::event_service_client::EventServiceClient;
use focusforge_proto::events::v1::{
    EventType, SubscribeRequest, event::Payload, subscribe_response::Kind,
};
use focusforge_proto::focus::v1::GetCurrentSessionRequest;
use focusforge_proto::mcp::v1::CallToolRequest;
use focusforge_proto::mood::v1::LogMoodRequest;
use focusforge_proto::orchestrator::v1 as pb;
use focusforge_proto::orchestrator::v1::orchestrator_service_client::OrchestratorServiceClient;
use focusforge_proto::planner::v1::{ActionStatus, ExecuteReadyRequest, GetPlanRequest};
use focusforge_proto::tasks::v1::{CreateTaskRequest, ListTasksRequest, TaskPriority, TaskStatus};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::harness::{Server, authed, config, eventually};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

async fn orchestrator(server: &Server) -> OrchestratorServiceClient<Channel> {
    OrchestratorServiceClient::new(server.channel().await)
}

fn outcome(steps: &[pb::Step], name: &str) -> pb::StepOutcome {
    steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}: {steps:?}"))
        .outcome()
}

pub fn report_request(title: &str, key: &str) -> pb::CreateTaskEnhancedRequest {
    pb::CreateTaskEnhancedRequest {
        title: title.into(),
        description: "Summarise the quarter's sales figures, compare them with the plan and draft three recommendations for the board".into(),
        estimated_minutes: 120,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_task_created_with_ai_is_scheduled_reminded_and_focused_on_at_its_first_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir);
    // A Wednesday, before the working day (09:00-17:00 UTC by default).
    let clock = Arc::new(ManualClock::new(t("2026-12-02T07:00:00Z")));
    let server = Server::start_with_clock(dir, cfg, clock.clone()).await;
    let mut events = EventServiceClient::new(server.channel().await)
        .subscribe(authed("ada", SubscribeRequest::default()))
        .await
        .expect("subscribe")
        .into_inner();
    let mut orch = orchestrator(&server).await;

    let first = orch
        .create_task_enhanced(authed(
            "ada",
            report_request("Write the quarterly sales report", "report-1"),
        ))
        .await
        .expect("create")
        .into_inner();
    let task = first.task.clone().expect("task");
    assert!(!first.replayed);
    assert!(task.blocks.len() >= 2, "{:?}", task.blocks);
    assert_eq!(
        task.blocks.iter().map(|b| &b.title).collect::<Vec<_>>(),
        first.breakdown.iter().map(|b| &b.title).collect::<Vec<_>>(),
        "the task holds the breakdown's blocks"
    );
    assert!(first.breakdown.iter().all(|b| !b.done_when.is_empty()));
    let analysis = first.analysis.clone().expect("analysis");
    assert!(analysis.complexity >= 1 && !analysis.first_step.is_empty());
    // No model here: the chains' rules answered, and said so.
    assert_eq!(
        outcome(&first.steps, "memory.context"),
        pb::StepOutcome::Ran
    );
    assert_eq!(
        outcome(&first.steps, "chain.analysis"),
        pb::StepOutcome::FellBack
    );
    assert_eq!(
        outcome(&first.steps, "chain.breakdown"),
        pb::StepOutcome::FellBack
    );
    assert_eq!(outcome(&first.steps, "tasks.create"), pb::StepOutcome::Ran);
    assert_eq!(
        outcome(&first.steps, "planner.follow_ups"),
        pb::StepOutcome::Ran
    );
    assert_eq!(
        outcome(&first.steps, "memory.insight"),
        pb::StepOutcome::Ran
    );
    assert!(first.insight.contains("complexity"), "{}", first.insight);
    assert!(!first.plan_id.is_empty());

    // A retry with the key: the same answer, nothing made twice.
    let again = orch
        .create_task_enhanced(authed(
            "ada",
            report_request("Write the quarterly sales report", "report-1"),
        ))
        .await
        .expect("retry")
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.task.as_ref().map(|t| &t.id), Some(&task.id));
    assert_eq!(again.plan_id, first.plan_id);
    let listed = server
        .tasks()
        .await
        .list_tasks(authed("ada", ListTasksRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .tasks;
    assert_eq!(listed.len(), 1, "one task, whatever the retries");
    // The key for another request is refused, naming the field.
    let err = orch
        .create_task_enhanced(authed("ada", report_request("Something else", "report-1")))
        .await
        .expect_err("another request");
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    assert_eq!(fields, vec!["idempotency_key"]);
    // Another user's key space is their own.
    let other = orch
        .create_task_enhanced(authed(
            "bob",
            report_request("Plan the team offsite", "report-1"),
        ))
        .await
        .expect("bob")
        .into_inner();
    assert!(!other.replayed);
    assert_ne!(other.task.map(|t| t.id), Some(task.id.clone()));

    // The plan: the blocks go into the calendar first (09:00, the start of
    // the working day), the reminder and the session wait for that time.
    let mut planner = server.planner().await;
    let plan_of = |planner: &mut focusforge_proto::planner::v1::planner_service_client::PlannerServiceClient<Channel>| {
        let mut planner = planner.clone();
        let id = first.plan_id.clone();
        async move {
            planner
                .get_plan(authed("ada", GetPlanRequest { plan_id: id }))
                .await
                .expect("plan")
                .into_inner()
                .plan
                .expect("plan")
        }
    };
    let status = |plan: &focusforge_proto::planner::v1::Plan, key: &str| {
        plan.actions
            .iter()
            .find(|a| a.spec.as_ref().is_some_and(|s| s.key == key))
            .map(|a| a.status())
            .expect("action")
    };
    let p = planner.clone();
    eventually("the blocks to be scheduled", || {
        let mut p = p.clone();
        async move { status(&plan_of(&mut p).await, "schedule") == ActionStatus::Succeeded }
    })
    .await;
    let plan = plan_of(&mut planner).await;
    let schedule = plan
        .actions
        .iter()
        .find(|a| a.spec.as_ref().is_some_and(|s| s.key == "schedule"))
        .expect("schedule");
    let output: serde_json::Value = serde_json::from_str(&schedule.output_json).expect("output");
    assert_eq!(
        output["first_start"], "2026-12-02T09:00:00+00:00",
        "{output}"
    );
    assert_eq!(status(&plan, "remind"), ActionStatus::Pending);
    assert_eq!(status(&plan, "focus"), ActionStatus::Pending);

    // Ten minutes before the first block: the reminder is an event.
    clock.set(t("2026-12-02T08:50:00Z"));
    planner
        .execute_ready(authed(
            "ada",
            ExecuteReadyRequest {
                plan_id: first.plan_id.clone(),
            },
        ))
        .await
        .expect("execute");
    let mut before = Vec::new();
    let reminder = loop {
        let m = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("an event in time")
            .expect("stream")
            .expect("open");
        if let Some(Kind::Event(e)) = m.kind {
            if e.r#type() == EventType::Reminder {
                break e;
            }
            before.push(e);
        }
    };
    // The calendar action's end was on the stream before it.
    assert!(
        before.iter().any(|e| matches!(
            &e.payload,
            Some(Payload::PlanAction(a)) if a.action_id == "schedule" && a.state == "succeeded" && a.plan_id == first.plan_id
        )),
        "{before:?}"
    );
    match reminder.payload {
        Some(Payload::Reminder(r)) => {
            assert_eq!(r.task_id, task.id);
            assert!(r.text.contains("starts in 10 minutes"), "{}", r.text);
        }
        other => panic!("{other:?}"),
    }
    let plan = plan_of(&mut planner).await;
    assert_eq!(status(&plan, "remind"), ActionStatus::Succeeded);
    assert_eq!(
        status(&plan, "focus"),
        ActionStatus::Pending,
        "not before 09:00"
    );

    // At the first block: a focus session on the task.
    clock.set(t("2026-12-02T09:00:00Z"));
    planner
        .execute_ready(authed(
            "ada",
            ExecuteReadyRequest {
                plan_id: first.plan_id.clone(),
            },
        ))
        .await
        .expect("execute");
    let session = server
        .focus()
        .await
        .get_current_session(authed("ada", GetCurrentSessionRequest {}))
        .await
        .expect("current")
        .into_inner()
        .session
        .expect("a session runs");
    assert_eq!(session.task_id, task.id);
    assert_eq!(session.planned_minutes, task.blocks[0].minutes.min(240));

    // Completion: a proof that says nothing keeps the task open.
    let thin = orch
        .complete_task_enhanced(authed(
            "ada",
            pb::CompleteTaskEnhancedRequest {
                task_id: task.id.clone(),
                proof: "done".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("complete")
        .into_inner();
    assert!(!thin.completed);
    assert_ne!(thin.verdict(), ProofVerdict::Accepted);
    assert!(
        thin.not_completed_reason.contains("not accepted"),
        "{}",
        thin.not_completed_reason
    );
    assert_ne!(
        thin.task.as_ref().map(|t| t.status()),
        Some(TaskStatus::Completed)
    );
    assert_eq!(thin.points_awarded, 0);

    // A real proof completes it, with points, once.
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
        .expect("complete")
        .into_inner();
    assert!(done.completed, "{:?}", done.steps);
    assert_eq!(done.verdict(), ProofVerdict::Accepted, "{:?}", done.reasons);
    assert!(done.points_awarded > 0, "{done:?}");
    // The task's points, and an achievement's beside them.
    assert!(done.balance >= done.points_awarded, "{done:?}");
    assert_eq!(done.streak_days, 1);
    assert!(!done.motivation.is_empty());
    assert_eq!(outcome(&done.steps, "tasks.complete"), pb::StepOutcome::Ran);
    assert!(!done.plan_id.is_empty());
    let repeat = orch
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
    assert!(repeat.completed);
    assert_eq!(repeat.points_awarded, done.points_awarded);
    assert_eq!(repeat.balance, done.balance, "points are awarded once");
    assert_eq!(repeat.plan_id, done.plan_id);
    assert_eq!(
        outcome(&repeat.steps, "tasks.complete"),
        pb::StepOutcome::Skipped
    );

    // Another user's task is not found.
    let err = orch
        .complete_task_enhanced(authed(
            "bob",
            pb::CompleteTaskEnhancedRequest {
                task_id: task.id.clone(),
                proof: proof.into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("not bob's");
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn without_the_chain_the_task_is_still_created_and_the_step_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.services.retain(|s| s != "chain");
    let server = Server::start_in(dir, cfg).await;
    let r = orchestrator(&server)
        .await
        .create_task_enhanced(authed(
            "ada",
            report_request("Write the quarterly sales report", ""),
        ))
        .await
        .expect("create")
        .into_inner();
    let task = r.task.expect("task");
    assert_eq!(task.title, "Write the quarterly sales report");
    assert!(task.blocks.is_empty());
    assert!(r.analysis.is_none());
    let chain = r
        .steps
        .iter()
        .find(|s| s.name == "chain.breakdown")
        .expect("step");
    assert_eq!(chain.outcome(), pb::StepOutcome::Failed);
    assert_eq!(chain.status, "UNIMPLEMENTED");
    assert_eq!(chain.service, "focusforge.chain.v1.ChainService");
    assert_eq!(
        outcome(&r.steps, "planner.follow_ups"),
        pb::StepOutcome::Skipped
    );
    assert_eq!(
        outcome(&r.steps, "memory.insight"),
        pb::StepOutcome::Skipped
    );

    // A focus session still starts; the ritual is reported missing and
    // music skipped (no Spotify link).
    let s = orchestrator(&server)
        .await
        .start_focus_session(authed(
            "ada",
            pb::StartFocusSessionRequest {
                task_id: task.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("focus")
        .into_inner();
    assert_eq!(s.session.map(|s| s.task_id), Some(task.id.clone()));
    assert!(s.ritual.is_none());
    assert_eq!(outcome(&s.steps, "chain.ritual"), pb::StepOutcome::Failed);
    assert_eq!(
        outcome(&s.steps, "integrations.playlist"),
        pb::StepOutcome::Skipped
    );

    // A proof no chain can check leaves the task open, saying so, until
    // the caller overrides.
    let complete = |override_verdict: bool, link: &str| {
        authed(
            "ada",
            pb::CompleteTaskEnhancedRequest {
                task_id: task.id.clone(),
                proof: "Sent the report to the team with the figures for Q3.".into(),
                link: link.into(),
                override_verdict,
            },
        )
    };
    let mut client = orchestrator(&server).await;
    let err = client
        .complete_task_enhanced(complete(false, "ftp://files/report"))
        .await
        .expect_err("not a web link");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("link"), "{err:?}");
    let open = client
        .complete_task_enhanced(complete(false, ""))
        .await
        .expect("complete")
        .into_inner();
    assert!(!open.completed);
    assert!(
        open.not_completed_reason
            .starts_with("the proof could not be checked (UNIMPLEMENTED)"),
        "{}",
        open.not_completed_reason
    );
    assert_eq!(outcome(&open.steps, "chain.proof"), pb::StepOutcome::Failed);
    assert_ne!(
        open.task.map(|t| t.status),
        Some(TaskStatus::Completed as i32)
    );
    let done = client
        .complete_task_enhanced(complete(true, ""))
        .await
        .expect("complete")
        .into_inner();
    assert!(done.completed, "{:?}", done.not_completed_reason);
    assert_eq!(
        done.task.map(|t| t.status),
        Some(TaskStatus::Completed as i32)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_retry_makes_up_a_follow_up_plan_that_failed_without_a_second_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.services.retain(|s| s != "planner");
    let server = Server::start_in(dir, cfg).await;
    let ask = || {
        authed(
            "ada",
            report_request("Write the quarterly sales report", "report-9"),
        )
    };
    let first = orchestrator(&server)
        .await
        .create_task_enhanced(ask())
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        outcome(&first.steps, "planner.follow_ups"),
        pb::StepOutcome::Failed
    );
    let task = first.task.expect("task").id;
    // The key is bound to the request before the answer is kept.
    let err = orchestrator(&server)
        .await
        .create_task_enhanced(authed("ada", report_request("Something else", "report-9")))
        .await
        .expect_err("another request");
    assert_eq!(err.code(), Code::InvalidArgument);

    // With the planner back, the retry runs again: the same task, and the
    // plan this time; then it is kept.
    let dir = server.stop().await;
    let cfg = config(&dir);
    let server = Server::start_in(dir, cfg).await;
    let again = orchestrator(&server)
        .await
        .create_task_enhanced(ask())
        .await
        .expect("retry")
        .into_inner();
    assert!(!again.replayed, "a failed write is not kept");
    assert_eq!(again.task.map(|t| t.id), Some(task.clone()));
    assert!(!again.plan_id.is_empty(), "{:?}", again.steps);
    let third = orchestrator(&server)
        .await
        .create_task_enhanced(ask())
        .await
        .expect("third")
        .into_inner();
    assert!(third.replayed);
    assert_eq!(third.plan_id, again.plan_id);
    let listed = server
        .tasks()
        .await
        .list_tasks(authed("ada", ListTasksRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .tasks;
    assert_eq!(listed.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn the_day_plan_puts_urgent_work_around_meetings_and_lightens_after_a_low_mood() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir);
    let clock = Arc::new(ManualClock::new(t("2026-12-02T08:00:00Z")));
    let server = Server::start_with_clock(dir, cfg, clock.clone()).await;
    let tasks = server.tasks().await;
    let make = |title: &str, priority: TaskPriority, minutes: i32| {
        let req = authed(
            "ada",
            CreateTaskRequest {
                title: title.into(),
                priority: priority as i32,
                estimated_minutes: minutes,
                ..Default::default()
            },
        );
        let mut tasks = tasks.clone();
        async move {
            tasks
                .create_task(req)
                .await
                .expect("task")
                .into_inner()
                .task
                .expect("task")
        }
    };
    let urgent = make("Fix the payment outage", TaskPriority::Urgent, 50).await;
    let low = make("Tidy the wiki", TaskPriority::Low, 25).await;
    let mut calendar = server.calendar().await;
    calendar
        .create_event(authed(
            "ada",
            cal::CreateEventRequest {
                event: Some(cal::Event {
                    title: "Standup".into(),
                    start_time: Some(prost_types::Timestamp {
                        seconds: t("2026-12-02T09:00:00Z").timestamp(),
                        nanos: 0,
                    }),
                    end_time: Some(prost_types::Timestamp {
                        seconds: t("2026-12-02T10:00:00Z").timestamp(),
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("event");
    let mut orch = orchestrator(&server).await;
    let ask = |apply: bool| {
        authed(
            "ada",
            pb::OptimizeDayRequest {
                apply,
                ..Default::default()
            },
        )
    };
    let day = orch
        .optimize_day(ask(true))
        .await
        .expect("day")
        .into_inner();
    assert!(!day.low_mood);
    assert_eq!(
        day.preferred_hours,
        vec![9, 10, 11],
        "the morning without history"
    );
    let focus: Vec<&pb::DayItem> = day.items.iter().filter(|i| i.kind == "focus").collect();
    let start = |i: &pb::DayItem| i.start_time.as_ref().map(|t| t.seconds).unwrap_or(0);
    let urgent_windows: Vec<i64> = focus
        .iter()
        .filter(|i| i.task_id == urgent.id)
        .map(|i| start(i))
        .collect();
    // Two 25-minute windows from 10:00, after the standup.
    assert_eq!(
        urgent_windows,
        vec![
            t("2026-12-02T10:00:00Z").timestamp(),
            t("2026-12-02T10:30:00Z").timestamp()
        ]
    );
    assert!(focus.iter().any(|i| i.task_id == low.id));
    assert!(focus[0].reason.contains("urgent"), "{}", focus[0].reason);
    assert!(day.items.iter().any(|i| i.kind == "break"));
    assert!(day.applied);
    assert!(focus.iter().all(|i| !i.event_id.is_empty()));
    // Applying again replaces the day's events instead of adding more, and
    // plans the same windows: the earlier plan's time counts as free.
    let again = orch
        .optimize_day(ask(true))
        .await
        .expect("again")
        .into_inner();
    let windows = |d: &pb::OptimizeDayResponse| -> Vec<(String, i64)> {
        d.items
            .iter()
            .filter(|i| i.kind == "focus")
            .map(|i| (i.task_id.clone(), start(i)))
            .collect()
    };
    assert_eq!(windows(&again), windows(&day));
    let occurrences = calendar
        .list_events(authed(
            "ada",
            cal::ListEventsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: t("2026-12-02T00:00:00Z").timestamp(),
                    nanos: 0,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: t("2026-12-03T00:00:00Z").timestamp(),
                    nanos: 0,
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("events")
        .into_inner()
        .occurrences;
    let planned = occurrences
        .iter()
        .filter(|o| o.title.starts_with("Day plan: "))
        .count();
    assert_eq!(planned, focus.len());

    // After a low mood: shorter windows, the lighter task first.
    server
        .mood()
        .await
        .log_mood(authed(
            "ada",
            LogMoodRequest {
                score: 2,
                energy: 2,
                ..Default::default()
            },
        ))
        .await
        .expect("mood");
    let low_day = orch
        .optimize_day(ask(false))
        .await
        .expect("day")
        .into_inner();
    assert!(low_day.low_mood);
    assert!(!low_day.applied);
    let first = low_day
        .items
        .iter()
        .find(|i| i.kind == "focus")
        .expect("focus");
    let len = first.end_time.as_ref().map(|t| t.seconds).unwrap_or(0) - start(first);
    assert_eq!(len, 15 * 60, "25 minutes x 3/5");
    assert_eq!(first.task_id, urgent.id, "urgent work still comes first");
    assert_eq!(
        start(first),
        t("2026-12-02T10:00:00Z").timestamp(),
        "the applied plan's time is planned again, the standup's is not"
    );
    let second_task = low_day
        .items
        .iter()
        .filter(|i| i.kind == "focus")
        .map(|i| i.task_id.clone())
        .find(|id| *id != urgent.id);
    assert_eq!(second_task, Some(low.id.clone()));
    server.stop().await;
}

#[tokio::test]
async fn the_workflows_are_mcp_tools() {
    let server = Server::start().await;
    let r = server
        .mcp()
        .await
        .call_tool(authed(
            "ada",
            CallToolRequest {
                name: "workflows.create_task".into(),
                arguments_json: serde_json::json!({
                    "title": "Prepare the conference talk",
                    "description": "Outline the talk, build the slides and rehearse twice",
                    "estimated_minutes": 180,
                    "idempotency_key": "talk"
                })
                .to_string(),
            },
        ))
        .await
        .expect("tool")
        .into_inner();
    let out: serde_json::Value = serde_json::from_str(&r.result_json).expect("json");
    assert!(
        out["blocks"].as_array().is_some_and(|b| b.len() >= 2),
        "{out}"
    );
    assert!(!out["task_id"].as_str().unwrap_or_default().is_empty());
    let task_id = out["task_id"].as_str().unwrap_or_default().to_owned();
    let r = server
        .mcp()
        .await
        .call_tool(authed(
            "ada",
            CallToolRequest {
                name: "workflows.start_focus".into(),
                arguments_json: serde_json::json!({ "task_id": task_id }).to_string(),
            },
        ))
        .await
        .expect("tool")
        .into_inner();
    let out: serde_json::Value = serde_json::from_str(&r.result_json).expect("json");
    assert!(
        !out["session_id"].as_str().unwrap_or_default().is_empty(),
        "{out}"
    );
    assert!(
        !out["ritual_steps"]
            .as_array()
            .map(Vec::is_empty)
            .unwrap_or(true),
        "{out}"
    );
    for name in ["workflows.complete_task", "workflows.optimize_day"] {
        let r = server
            .mcp()
            .await
            .call_tool(authed(
                "ada",
                CallToolRequest {
                    name: name.into(),
                    arguments_json: if name == "workflows.complete_task" {
                        serde_json::json!({ "task_id": task_id, "proof": "Outlined the conference talk, built the slides for every section and rehearsed the talk twice with a timer", "override_verdict": false }).to_string()
                    } else {
                        "{}".into()
                    },
                },
            ))
            .await
            .expect(name)
            .into_inner();
        let out: serde_json::Value = serde_json::from_str(&r.result_json).expect("json");
        assert!(
            out["steps"].as_array().is_some_and(|s| !s.is_empty()),
            "{name}: {out}"
        );
    }
    server.stop().await;
}
