//! `focusforge.orchestrator.v1.OrchestratorService`: each workflow calls the
//! services through the mesh as the caller, step by step.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use focusforge_core::{Clock, Error, Violations};
use focusforge_grpc::{deadline, identity, into_status};
use focusforge_kit::{Caller, Conn, Mesh};
use focusforge_proto::calendar::v1 as cal_pb;
use focusforge_proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use focusforge_proto::chain::v1 as chain_pb;
use focusforge_proto::chain::v1::chain_service_client::ChainServiceClient;
use focusforge_proto::focus::v1 as focus_pb;
use focusforge_proto::focus::v1::focus_service_client::FocusServiceClient;
use focusforge_proto::gamification::v1 as game_pb;
use focusforge_proto::gamification::v1::gamification_service_client::GamificationServiceClient;
use focusforge_proto::integrations::v1 as music_pb;
use focusforge_proto::integrations::v1::integration_service_client::IntegrationServiceClient;
use focusforge_proto::memory::v1 as memory_pb;
use focusforge_proto::memory::v1::memory_service_client::MemoryServiceClient;
use focusforge_proto::mood::v1 as mood_pb;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use focusforge_proto::orchestrator::v1 as pb;
use focusforge_proto::orchestrator::v1::orchestrator_service_server::OrchestratorService as Rpc;
use focusforge_proto::planner::v1 as plan_pb;
use focusforge_proto::planner::v1::planner_service_client::PlannerServiceClient;
use focusforge_proto::tasks::v1 as tasks_pb;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_store::SharedStore;
use serde_json::json;
use tonic::{Request, Response, Status};

use crate::replay::{Begun, Replays};
use crate::step::Steps;

pub const SERVICE: &str =
    focusforge_proto::orchestrator::v1::orchestrator_service_server::SERVICE_NAME;
const MEMORY: &str = memory_pb::memory_service_server::SERVICE_NAME;
const CHAIN: &str = chain_pb::chain_service_server::SERVICE_NAME;
const TASKS: &str = tasks_pb::task_service_server::SERVICE_NAME;
const PLANNER: &str = plan_pb::planner_service_server::SERVICE_NAME;
const GAME: &str = game_pb::gamification_service_server::SERVICE_NAME;
const FOCUS: &str = focus_pb::focus_service_server::SERVICE_NAME;
const MUSIC: &str = music_pb::integration_service_server::SERVICE_NAME;
pub(crate) const CALENDAR: &str = cal_pb::calendar_service_server::SERVICE_NAME;
pub(crate) const USERS: &str = focusforge_proto::users::v1::user_service_server::SERVICE_NAME;
pub(crate) const ANALYTICS: &str =
    focusforge_proto::analytics::v1::analytics_service_server::SERVICE_NAME;
pub(crate) const MOOD: &str = mood_pb::mood_service_server::SERVICE_NAME;

/// The steps of task creation that write: a retry runs those that failed.
const WRITES: [&str; 3] = ["tasks.create", "planner.follow_ups", "memory.insight"];
/// Most entries of the history listed as used.
const INSIGHTS_USED_MAX: usize = 10;
/// Most bytes of an idempotency key.
const KEY_MAX: usize = 100;
/// Ledger pages (of 100, newest first) a repeated completion reads for the
/// task's points before it gives up and reports none.
const LEDGER_PAGES: usize = 10;

#[derive(Clone)]
pub struct OrchestratorApi {
    pub mesh: Mesh,
    pub store: SharedStore,
    pub clock: Arc<dyn Clock>,
}

type Reply<T> = Result<Response<T>, Status>;

impl OrchestratorApi {
    pub(crate) fn conn(&self, service: &str) -> Result<Conn, Status> {
        self.mesh.conn(service)
    }

    /// The user's context for a task, read once for every chain of the
    /// workflow; empty when Memory does not answer, so the chains do not
    /// ask it again.
    async fn context(
        &self,
        caller: &Caller,
        steps: &mut Steps,
        title: &str,
        description: &str,
    ) -> memory_pb::GetUserContextResponse {
        let req = steps.timed(
            caller.request(memory_pb::GetUserContextRequest {
                query: format!("{title}\n{description}")
                    .chars()
                    .take(2000)
                    .collect(),
                limit: 5,
            }),
        );
        let memory = self.conn(MEMORY);
        steps
            .optional("memory.context", MEMORY, async move {
                Ok(MemoryServiceClient::new(memory?)
                    .get_user_context(req)
                    .await?
                    .into_inner())
            })
            .await
            .unwrap_or_default()
    }

    /// Stores an insight about a task; the text when it was stored.
    async fn insight(
        &self,
        caller: &Caller,
        steps: &mut Steps,
        task_id: &str,
        text: String,
    ) -> String {
        let record = steps.timed(caller.request(memory_pb::RecordTaskInsightRequest {
            task_id: task_id.to_owned(),
            insight: text.clone(),
            metadata: [("source".to_owned(), "orchestrator".to_owned())].into(),
        }));
        let memory = self.conn(MEMORY);
        steps
            .optional("memory.insight", MEMORY, async move {
                MemoryServiceClient::new(memory?)
                    .record_task_insight(record)
                    .await
                    .map(|_| ())
            })
            .await
            .map(|()| text)
            .unwrap_or_default()
    }
}

fn similar_line(s: &memory_pb::SimilarTask) -> Option<String> {
    let t = s.task.as_ref()?;
    Some(format!("similar past task: {} ({:.2})", t.title, s.score))
}

/// What of the user's history the chains were given, in words.
fn insights_used(ctx: &memory_pb::GetUserContextResponse) -> Vec<String> {
    ctx.similar_tasks
        .iter()
        .filter_map(similar_line)
        .chain(
            ctx.insights
                .iter()
                .map(|m| format!("insight: {}", m.content)),
        )
        .chain(
            ctx.relevant_memories
                .iter()
                .filter_map(|h| h.memory.as_ref())
                .map(|m| format!("memory: {}", m.content)),
        )
        .take(INSIGHTS_USED_MAX)
        .collect()
}

fn analysis_insight(a: &pb::Analysis) -> String {
    let mut text = format!(
        "Analysed: complexity {}/5, about {} minutes",
        a.complexity, a.estimated_minutes
    );
    if !a.skills.is_empty() {
        text.push_str(&format!("; skills: {}", a.skills.join(", ")));
    }
    if !a.risks.is_empty() {
        text.push_str(&format!("; watch for: {}", a.risks.join("; ")));
    }
    if !a.first_step.is_empty() {
        text.push_str(&format!("; first step: {}", a.first_step));
    }
    text.chars().take(1000).collect()
}

/// Marks the step just recorded as a fallback when the chain said so.
fn chain_outcome(steps: &mut Steps, info: Option<&chain_pb::ChainInfo>) {
    if let Some(i) = info.filter(|i| i.fallback_used) {
        steps.fell_back(&format!(
            "the chain's rules answered: {}",
            i.fallback_reason
        ));
    }
}

fn check_create(r: &pb::CreateTaskEnhancedRequest) -> Result<(), Error> {
    let mut v = Violations::new();
    v.text("title", r.title.trim(), 500);
    v.optional_text("description", &r.description, 10_000);
    v.range("granularity", r.granularity.into(), 0, 5);
    v.check(
        r.estimated_minutes == 0 || (5..=1440).contains(&r.estimated_minutes),
        "estimated_minutes",
        "must be 0 (not said) or between 5 and 1440",
    );
    v.range(
        "reminder_lead_minutes",
        r.reminder_lead_minutes.into(),
        0,
        1440,
    );
    v.check(
        r.idempotency_key.len() <= KEY_MAX,
        "idempotency_key",
        "must be at most 100 bytes",
    );
    v.finish()
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    focusforge_grpc::convert::timestamp(t)
}

impl OrchestratorApi {
    async fn create(
        &self,
        caller: &Caller,
        steps: &mut Steps,
        r: pb::CreateTaskEnhancedRequest,
    ) -> Result<pb::CreateTaskEnhancedResponse, Status> {
        // 1. The user's context, once, for every chain.
        let context = self
            .context(caller, steps, r.title.trim(), &r.description)
            .await;

        // 2. The chains, given that context, side by side.
        let task_input = chain_pb::TaskInput {
            deadline: r.due_time,
            estimated_minutes: r.estimated_minutes,
            ..focusforge_grpc::chain_task(&r.title, &r.description)
        };
        let analyse = steps.timed(caller.request(chain_pb::AnalyzeTaskRequest {
            task: Some(task_input.clone()),
            no_cache: false,
            context: Some(context.clone()),
        }));
        let split = steps.timed(caller.request(chain_pb::BreakDownTaskRequest {
            task: Some(task_input),
            granularity: if r.granularity == 0 { 3 } else { r.granularity },
            no_cache: false,
            context: Some(context.clone()),
        }));
        let chain = self.conn(CHAIN);
        let chain2 = chain.clone();
        let (analysis, breakdown) = tokio::join!(
            steps.measure("chain.analysis", CHAIN, async move {
                Ok(ChainServiceClient::new(chain?)
                    .analyze_task(analyse)
                    .await?
                    .into_inner())
            }),
            steps.measure("chain.breakdown", CHAIN, async move {
                Ok(ChainServiceClient::new(chain2?)
                    .break_down_task(split)
                    .await?
                    .into_inner())
            }),
        );
        let analysis = steps.record(analysis);
        chain_outcome(steps, analysis.as_ref().and_then(|a| a.info.as_ref()));
        let breakdown = steps.record(breakdown);
        chain_outcome(steps, breakdown.as_ref().and_then(|b| b.info.as_ref()));
        let analysis = analysis.map(|a| pb::Analysis {
            complexity: a.complexity,
            estimated_minutes: a.estimated_minutes,
            skills: a.skills,
            risks: a.risks,
            first_step: a.first_step,
        });
        let blocks = breakdown.map(|b| b.blocks).unwrap_or_default();

        // 3. The task, whatever the chains did.
        let estimated = match (r.estimated_minutes, &analysis) {
            (0, Some(a)) if blocks.is_empty() => a.estimated_minutes,
            (m, _) => m,
        };
        let create = steps.timed(
            caller.request(tasks_pb::CreateTaskRequest {
                title: r.title.clone(),
                description: r.description.clone(),
                priority: r.priority,
                estimated_minutes: estimated,
                due_time: r.due_time,
                tags: r.tags.clone(),
                blocks: blocks
                    .iter()
                    .enumerate()
                    .map(|(i, b)| tasks_pb::WorkBlock {
                        title: b.title.clone(),
                        minutes: b.minutes,
                        order: i32::try_from(i).unwrap_or(i32::MAX),
                        ..Default::default()
                    })
                    .collect(),
                request_id: if r.idempotency_key.is_empty() {
                    String::new()
                } else {
                    format!("orchestrator:{}", r.idempotency_key)
                },
                ..Default::default()
            }),
        );
        let tasks = self.conn(TASKS);
        let task = steps
            .required("tasks.create", TASKS, async move {
                TaskServiceClient::new(tasks?)
                    .create_task(create)
                    .await?
                    .into_inner()
                    .task
                    .ok_or_else(|| Status::internal("the task service answered without a task"))
            })
            .await?;

        // 4. The follow-ups, planned once per task.
        let mut plan_id = String::new();
        if r.skip_follow_ups {
            steps.skipped("planner.follow_ups", PLANNER, "the caller asked for none");
        } else if task.blocks.is_empty() {
            steps.skipped(
                "planner.follow_ups",
                PLANNER,
                "the task has no blocks to schedule",
            );
        } else {
            let lead = if r.reminder_lead_minutes == 0 {
                10
            } else {
                r.reminder_lead_minutes
            };
            let create = steps.timed(caller.request(follow_ups(&task, lead)));
            let planner = self.conn(PLANNER);
            if let Some(plan) = steps
                .optional("planner.follow_ups", PLANNER, async move {
                    Ok(PlannerServiceClient::new(planner?)
                        .create_plan(create)
                        .await?
                        .into_inner()
                        .plan)
                })
                .await
                .flatten()
            {
                plan_id = plan.id;
            }
        }

        // 5. What was learned, for next time.
        let mut insight = String::new();
        match &analysis {
            Some(a) => {
                insight = self
                    .insight(caller, steps, &task.id, analysis_insight(a))
                    .await;
            }
            None => steps.skipped("memory.insight", MEMORY, "there is no analysis to store"),
        }

        Ok(pb::CreateTaskEnhancedResponse {
            task: Some(task),
            breakdown: blocks,
            analysis,
            insights_used: insights_used(&context),
            plan_id,
            steps: Vec::new(),
            replayed: false,
            insight,
        })
    }
}

/// The plan after a task is created: its blocks placed in the calendar, a
/// reminder `lead` minutes before the first, a focus session at it.
fn follow_ups(task: &tasks_pb::Task, lead: i32) -> plan_pb::CreatePlanRequest {
    let first = task.blocks.first();
    let first_title = first.map(|b| b.title.as_str()).unwrap_or_default();
    let minutes = first.map(|b| b.minutes).unwrap_or(0).clamp(0, 240);
    let action =
        |key: &str, kind: plan_pb::ActionType, params: serde_json::Value| plan_pb::ActionSpec {
            key: key.to_owned(),
            r#type: kind as i32,
            params_json: params.to_string(),
            idempotency_key: format!("{key}:{}", task.id),
            ..Default::default()
        };
    let schedule = action(
        "schedule",
        plan_pb::ActionType::Calendar,
        json!({ "op": "auto_schedule", "task_id": task.id }),
    );
    let mut remind = action(
        "remind",
        plan_pb::ActionType::Notification,
        json!({
            "op": "remind",
            "task_id": task.id,
            "text": format!(
                "\"{}\" starts in {lead} minutes with \"{first_title}\"",
                task.title.chars().take(200).collect::<String>()
            ),
        }),
    );
    remind.depends_on = vec!["schedule".into()];
    remind.not_before_from = "${schedule.first_start}".into();
    remind.not_before_offset = Some(prost_types::Duration {
        seconds: -i64::from(lead) * 60,
        nanos: 0,
    });
    let mut focus = action(
        "focus",
        plan_pb::ActionType::Focus,
        json!({ "op": "start", "task_id": task.id, "minutes": minutes }),
    );
    focus.depends_on = vec!["schedule".into()];
    focus.not_before_from = "${schedule.first_start}".into();
    plan_pb::CreatePlanRequest {
        title: format!(
            "Follow-ups of \"{}\"",
            task.title.chars().take(150).collect::<String>()
        ),
        actions: vec![schedule, remind, focus],
        request_id: format!("orchestrator:{}", task.id),
    }
}

impl OrchestratorApi {
    async fn complete(
        &self,
        caller: &Caller,
        steps: &mut Steps,
        r: pb::CompleteTaskEnhancedRequest,
    ) -> Result<pb::CompleteTaskEnhancedResponse, Status> {
        let mut v = Violations::new();
        v.text("task_id", &r.task_id, 128);
        v.optional_text("proof", &r.proof, 2000);
        v.optional_text("link", &r.link, 2000);
        v.check(
            r.link.is_empty() || r.link.starts_with("https://") || r.link.starts_with("http://"),
            "link",
            "must be an http or https URL",
        );
        v.finish().map_err(into_status)?;
        let mut out = pb::CompleteTaskEnhancedResponse::default();

        // 1. The task (required: NOT_FOUND ends it).
        let get = steps.timed(caller.request(tasks_pb::GetTaskRequest {
            id: r.task_id.clone(),
        }));
        let tasks = self.conn(TASKS);
        let task = steps
            .required("tasks.get", TASKS, async move {
                TaskServiceClient::new(tasks?)
                    .get_task(get)
                    .await?
                    .into_inner()
                    .task
                    .ok_or_else(|| Status::internal("the task service answered without a task"))
            })
            .await?;
        let was_done = task.status == tasks_pb::TaskStatus::Completed as i32;

        // 2. Its context and history.
        let mut context = self
            .context(caller, steps, &task.title, &task.description)
            .await;

        // 3. The proof. Why the task stays open, when it does: a proof
        // turned down, or one that could not be checked.
        let mut refused = None;
        if was_done {
            steps.skipped("chain.proof", CHAIN, "the task was already completed");
        } else if r.proof.trim().is_empty() {
            steps.skipped("chain.proof", CHAIN, "no proof was given");
        } else {
            let check = steps.timed(caller.request(chain_pb::ValidateProofRequest {
                task: Some(focusforge_grpc::chain_task(&task.title, &task.description)),
                proof: r.proof.clone(),
                link: r.link.clone(),
                no_cache: false,
                context: Some(context.clone()),
            }));
            let chain = self.conn(CHAIN);
            if let Some(p) = steps
                .optional("chain.proof", CHAIN, async move {
                    Ok(ChainServiceClient::new(chain?)
                        .validate_proof(check)
                        .await?
                        .into_inner())
                })
                .await
            {
                chain_outcome(steps, p.info.as_ref());
                if p.verdict != chain_pb::ProofVerdict::Accepted as i32 {
                    refused = Some(if p.reasons.is_empty() {
                        "the proof was not accepted".to_owned()
                    } else {
                        format!("the proof was not accepted: {}", p.reasons.join("; "))
                    });
                }
                out.verdict = p.verdict;
                out.confidence = p.confidence;
                out.reasons = p.reasons;
            } else {
                let status = steps
                    .list
                    .last()
                    .map(|s| s.status.clone())
                    .unwrap_or_default();
                refused = Some(format!(
                    "the proof could not be checked ({status}): send it again, or set \
                     override_verdict to complete the task without the check"
                ));
            }
        }

        // 4. The completion, unless the proof was turned down.
        let task = if was_done {
            steps.skipped("tasks.complete", TASKS, "the task was already completed");
            task
        } else if let Some(why) = refused.filter(|_| !r.override_verdict) {
            steps.skipped("tasks.complete", TASKS, &why);
            out.not_completed_reason = why;
            out.task = Some(task);
            return Ok(out);
        } else {
            let complete = steps.timed(caller.request(tasks_pb::CompleteTaskRequest {
                id: task.id.clone(),
                proof_text: r.proof.clone(),
            }));
            let tasks = self.conn(TASKS);
            steps
                .required("tasks.complete", TASKS, async move {
                    TaskServiceClient::new(tasks?)
                        .complete_task(complete)
                        .await?
                        .into_inner()
                        .task
                        .ok_or_else(|| Status::internal("the task service answered without a task"))
                })
                .await?
        };
        out.completed = true;

        // 5. The points: awarded once per task, by the completion's hook or
        // here (an award of a cause already awarded changes nothing, and
        // makes up for a hook that was lost); the amount read back from the
        // ledger on a repeat.
        let award = self
            .mesh
            .for_user(GAME, &caller.user, "orchestrator")
            .map(|(conn, acting)| {
                let req = steps.timed(acting.request(game_pb::AwardRequest {
                    cause: Some(game_pb::award_request::Cause::TaskId(task.id.clone())),
                }));
                (conn, req)
            });
        let budget = steps.budget();
        let reader = caller.clone();
        let key = format!("task-completed:{}", task.id);
        if let Some((points, progress)) = steps
            .optional("gamification.points", GAME, async move {
                let (game, award) = award?;
                let mut client = GamificationServiceClient::new(game);
                let awarded = client.award(award).await?.into_inner();
                let of_task = |e: &&game_pb::LedgerEntry| e.idempotency_key == key;
                let mut points = awarded
                    .entries
                    .iter()
                    .filter(of_task)
                    .map(|e| e.points)
                    .sum();
                let mut page_token = String::new();
                for _ in 0..LEDGER_PAGES {
                    if !awarded.already_awarded {
                        break;
                    }
                    let mut list = reader.request(game_pb::ListLedgerEntriesRequest {
                        page_size: 100,
                        page_token,
                    });
                    list.set_timeout(budget);
                    let page = client.list_ledger_entries(list).await?.into_inner();
                    if let Some(e) = page.entries.iter().find(of_task) {
                        points = e.points;
                        break;
                    }
                    page_token = page.next_page_token;
                    if page_token.is_empty() {
                        break;
                    }
                }
                Ok((points, awarded.progress.unwrap_or_default()))
            })
            .await
        {
            out.points_awarded = points;
            out.balance = progress.balance;
            out.level = progress.level;
            out.streak_days = progress.streak.map(|s| s.current_days).unwrap_or(0);
        }

        // 6. A motivation that counts this completion.
        if !was_done && let Some(p) = context.progress.as_mut() {
            p.completed_today += 1;
            p.streak_days = p.streak_days.max(1);
        }
        // The task is done: the message is about what comes next, not
        // about starting this one.
        let motivate = steps.timed(caller.request(chain_pb::MotivateRequest {
            task_title: String::new(),
            no_cache: false,
            context: Some(context),
        }));
        let chain = self.conn(CHAIN);
        if let Some(m) = steps
            .optional("chain.motivation", CHAIN, async move {
                Ok(ChainServiceClient::new(chain?)
                    .motivate(motivate)
                    .await?
                    .into_inner())
            })
            .await
        {
            chain_outcome(steps, m.info.as_ref());
            out.motivation = m.message;
        }

        // 7. Follow-ups: the task's remaining calendar blocks freed, once.
        let free = steps.timed(caller.request(plan_pb::CreatePlanRequest {
            title: "Free the blocks of a completed task".into(),
            actions: vec![plan_pb::ActionSpec {
                key: "free_blocks".into(),
                r#type: plan_pb::ActionType::Calendar as i32,
                params_json: json!({ "op": "auto_schedule" }).to_string(),
                idempotency_key: format!("free_blocks:{}", task.id),
                ..Default::default()
            }],
            request_id: format!("orchestrator-complete:{}", task.id),
        }));
        let planner = self.conn(PLANNER);
        if let Some(plan) = steps
            .optional("planner.follow_ups", PLANNER, async move {
                Ok(PlannerServiceClient::new(planner?)
                    .create_plan(free)
                    .await?
                    .into_inner()
                    .plan)
            })
            .await
            .flatten()
        {
            out.plan_id = plan.id;
        }

        // 8. What the completion taught.
        if was_done {
            steps.skipped("memory.insight", MEMORY, "the task was already completed");
        } else {
            let text = completion_insight(&task, &out);
            out.insight = self.insight(caller, steps, &task.id, text).await;
        }
        out.task = Some(task);
        Ok(out)
    }
}

fn completion_insight(task: &tasks_pb::Task, out: &pb::CompleteTaskEnhancedResponse) -> String {
    let mut text = format!(
        "Completed \"{}\"",
        task.title.chars().take(200).collect::<String>()
    );
    if task.focus_minutes > 0 {
        text.push_str(&format!(" after {} focus minutes", task.focus_minutes));
    }
    if task.estimated_minutes > 0 {
        text.push_str(&format!(
            " against an estimate of {} minutes",
            task.estimated_minutes
        ));
    }
    let verdict = match chain_pb::ProofVerdict::try_from(out.verdict) {
        Ok(chain_pb::ProofVerdict::Accepted) => "accepted",
        Ok(chain_pb::ProofVerdict::NeedsMore) => "needs more (completed anyway)",
        Ok(chain_pb::ProofVerdict::Rejected) => "rejected (completed anyway)",
        _ => "",
    };
    if !verdict.is_empty() {
        text.push_str(&format!("; proof {verdict}"));
    }
    text
}

impl OrchestratorApi {
    async fn focus(
        &self,
        caller: &Caller,
        steps: &mut Steps,
        r: pb::StartFocusSessionRequest,
    ) -> Result<pb::StartFocusSessionResponse, Status> {
        let mut v = Violations::new();
        v.text("task_id", &r.task_id, 128);
        v.range("planned_minutes", r.planned_minutes.into(), 0, 240);
        v.check(
            r.request_id.chars().count() <= 100,
            "request_id",
            "must be at most 100 characters",
        );
        v.finish().map_err(into_status)?;
        let mut out = pb::StartFocusSessionResponse::default();

        // The session (required: a task not found, or a session already
        // running, is the call's answer).
        let start = steps.timed(caller.request(focus_pb::StartSessionRequest {
            kind: focus_pb::SessionKind::Focus as i32,
            task_id: r.task_id.clone(),
            planned_minutes: r.planned_minutes,
            request_id: r.request_id.clone(),
        }));
        let focus = self.conn(FOCUS);
        let session = steps
            .required("focus.start", FOCUS, async move {
                FocusServiceClient::new(focus?)
                    .start_session(start)
                    .await?
                    .into_inner()
                    .session
                    .ok_or_else(|| Status::internal("the focus service answered without a session"))
            })
            .await?;

        // The task's title and the newest mood, for the ritual.
        let get = steps.timed(caller.request(tasks_pb::GetTaskRequest {
            id: r.task_id.clone(),
        }));
        let moods = steps.timed(caller.request(mood_pb::ListMoodsRequest {
            page_size: 1,
            ..Default::default()
        }));
        let tasks = self.conn(TASKS);
        let mood_conn = self.conn(MOOD);
        let title = steps
            .optional("tasks.get", TASKS, async move {
                Ok(TaskServiceClient::new(tasks?)
                    .get_task(get)
                    .await?
                    .into_inner()
                    .task
                    .map(|t| t.title)
                    .unwrap_or_default())
            })
            .await
            .unwrap_or_default();
        let mood = steps
            .optional("mood.latest", MOOD, async move {
                let entries = MoodServiceClient::new(mood_conn?)
                    .list_moods(moods)
                    .await?
                    .into_inner()
                    .entries;
                Ok(entries.first().map(mood_word).unwrap_or_default())
            })
            .await
            .unwrap_or_default();
        let ritual = steps.timed(caller.request(chain_pb::SuggestRitualRequest {
            task_title: focusforge_grpc::chain_task(&title, "").title,
            mood,
            hour_of_day: None,
            no_cache: false,
            context: None,
        }));
        let chain = self.conn(CHAIN);
        if let Some(rit) = steps
            .optional("chain.ritual", CHAIN, async move {
                Ok(ChainServiceClient::new(chain?)
                    .suggest_ritual(ritual)
                    .await?
                    .into_inner())
            })
            .await
        {
            chain_outcome(steps, rit.info.as_ref());
            out.ritual = Some(pb::Ritual {
                title: rit.title,
                steps: rit.steps,
                minutes: rit.minutes,
            });
        }

        // The focus playlist, when Spotify is linked.
        let link = steps.timed(caller.request(music_pb::GetSpotifyLinkRequest {}));
        let music = self.conn(MUSIC);
        let playlist = steps
            .optional("integrations.playlist", MUSIC, async move {
                Ok(IntegrationServiceClient::new(music?)
                    .get_spotify_link(link)
                    .await?
                    .into_inner()
                    .link
                    .filter(|l| l.linked)
                    .and_then(|l| l.focus_playlist))
            })
            .await
            .flatten();
        steps.skip_if_failed_with(tonic::Code::FailedPrecondition);
        match (&playlist, r.play_music) {
            (None, _) => {
                if let Some(last) = steps.list.last_mut()
                    && last.outcome == pb::StepOutcome::Ran as i32
                {
                    last.outcome = pb::StepOutcome::Skipped as i32;
                    last.reason = "Spotify is not linked or has no focus playlist".into();
                }
            }
            (Some(_), false) => steps.skipped(
                "integrations.play",
                MUSIC,
                "the caller did not ask for music",
            ),
            (Some(p), true) => {
                let play = steps.timed(caller.request(music_pb::PlayFocusMusicRequest {
                    playlist_id: p.id.clone(),
                    device_id: String::new(),
                }));
                let music = self.conn(MUSIC);
                out.music_started = steps
                    .optional("integrations.play", MUSIC, async move {
                        IntegrationServiceClient::new(music?)
                            .play_focus_music(play)
                            .await
                            .map(|_| ())
                    })
                    .await
                    .is_some();
            }
        }
        out.playlist = playlist;
        out.session = Some(session);
        Ok(out)
    }
}

fn mood_word(m: &mood_pb::MoodEntry) -> String {
    match m.score {
        1 => "very low",
        2 => "low",
        3 => "okay",
        4 => "good",
        _ => "great",
    }
    .to_owned()
}

#[tonic::async_trait]
impl Rpc for OrchestratorApi {
    async fn create_task_enhanced(
        &self,
        req: Request<pb::CreateTaskEnhancedRequest>,
    ) -> Reply<pb::CreateTaskEnhancedResponse> {
        let caller = identity(&req)?;
        let mut steps = Steps::new(deadline(req.metadata()));
        let r = req.into_inner();
        check_create(&r).map_err(into_status)?;
        let replays = Replays::new(self.store.clone(), self.clock.clone());
        let key = r.idempotency_key.clone();
        if !key.is_empty()
            && let Begun::Done(mut done) = replays
                .begin::<pb::CreateTaskEnhancedResponse, _>(&caller.user, "create", &key, &r)
                .await?
        {
            done.replayed = true;
            return Ok(Response::new(done));
        }
        let mut out = self.create(&caller, &mut steps, r.clone()).await?;
        out.steps = steps.list;
        // An answer is kept only when every write of the workflow went
        // through; otherwise a retry runs it again and makes up the missing
        // ones (the plan, the insight) without a second task.
        let wrote = out.steps.iter().all(|s| {
            !WRITES.contains(&s.name.as_str()) || s.outcome != pb::StepOutcome::Failed as i32
        });
        if !key.is_empty() && wrote {
            out = replays.keep(&caller.user, "create", &key, &r, out).await?;
        }
        Ok(Response::new(out))
    }

    async fn complete_task_enhanced(
        &self,
        req: Request<pb::CompleteTaskEnhancedRequest>,
    ) -> Reply<pb::CompleteTaskEnhancedResponse> {
        let caller = identity(&req)?;
        let mut steps = Steps::new(deadline(req.metadata()));
        let mut out = self.complete(&caller, &mut steps, req.into_inner()).await?;
        out.steps = steps.list;
        Ok(Response::new(out))
    }

    async fn optimize_day(
        &self,
        req: Request<pb::OptimizeDayRequest>,
    ) -> Reply<pb::OptimizeDayResponse> {
        let caller = identity(&req)?;
        let mut steps = Steps::new(deadline(req.metadata()));
        let now = self.clock.now();
        let mut out =
            crate::day::optimize(self, &caller, &mut steps, req.into_inner(), now).await?;
        out.steps = steps.list;
        Ok(Response::new(out))
    }

    async fn start_focus_session(
        &self,
        req: Request<pb::StartFocusSessionRequest>,
    ) -> Reply<pb::StartFocusSessionResponse> {
        let caller = identity(&req)?;
        let mut steps = Steps::new(deadline(req.metadata()));
        let mut out = self.focus(&caller, &mut steps, req.into_inner()).await?;
        out.steps = steps.list;
        Ok(Response::new(out))
    }
}

pub(crate) type CalendarClient = CalendarServiceClient<Conn>;
