//! The workflows as MCP tools: `workflows.create_task`, `.complete_task`,
//! `.optimize_day`, `.start_focus`.

use chrono::{DateTime, Utc};
use focusforge_mcp::tools::{pb_ts, ts as at};
use focusforge_mcp::{Caller, Category, Mesh, Tool, ToolError};
use focusforge_proto::orchestrator::v1 as pb;
use focusforge_proto::orchestrator::v1::orchestrator_service_client::OrchestratorServiceClient;
use focusforge_proto::tasks::v1 as tasks_pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::SERVICE;

fn client(mesh: &Mesh) -> Result<OrchestratorServiceClient<focusforge_kit::Conn>, ToolError> {
    Ok(OrchestratorServiceClient::new(mesh.conn(SERVICE)?))
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StepOut {
    pub name: String,
    /// `ran`, `fell_back`, `skipped` or `failed`.
    pub outcome: String,
    pub reason: String,
    /// The status of a failure, e.g. `UNAVAILABLE`.
    pub status: String,
}

fn steps(list: Vec<pb::Step>) -> Vec<StepOut> {
    list.into_iter()
        .map(|s| StepOut {
            name: s.name,
            outcome: match pb::StepOutcome::try_from(s.outcome) {
                Ok(pb::StepOutcome::Ran) => "ran",
                Ok(pb::StepOutcome::FellBack) => "fell_back",
                Ok(pb::StepOutcome::Skipped) => "skipped",
                Ok(pb::StepOutcome::Failed) => "failed",
                _ => "unknown",
            }
            .to_owned(),
            reason: s.reason,
            status: s.status,
        })
        .collect()
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriorityIn {
    Low,
    Medium,
    High,
    Urgent,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInput {
    #[schemars(length(min = 1, max = 500))]
    pub title: String,
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub description: String,
    #[serde(default)]
    pub priority: Option<PriorityIn>,
    #[serde(default)]
    pub due_time: Option<DateTime<Utc>>,
    /// 0 (let the analysis say) or 5-1440.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1440))]
    pub estimated_minutes: i32,
    /// 1-5, fewer to more blocks; default 3.
    #[serde(default)]
    #[schemars(range(min = 0, max = 5))]
    pub granularity: i32,
    /// Do not schedule blocks, a reminder or a focus session.
    #[serde(default)]
    pub skip_follow_ups: bool,
    /// Retry with the same key to get the first result back.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub idempotency_key: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BlockOut {
    pub title: String,
    pub minutes: i32,
    pub done_when: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreateOut {
    pub task_id: String,
    pub title: String,
    pub blocks: Vec<BlockOut>,
    pub complexity: i32,
    pub estimated_minutes: i32,
    pub risks: Vec<String>,
    pub first_step: String,
    pub insights_used: Vec<String>,
    pub plan_id: String,
    pub replayed: bool,
    pub steps: Vec<StepOut>,
}

async fn create(mesh: Mesh, caller: Caller, i: CreateInput) -> Result<CreateOut, ToolError> {
    let priority = match i.priority {
        None => tasks_pb::TaskPriority::Unspecified,
        Some(PriorityIn::Low) => tasks_pb::TaskPriority::Low,
        Some(PriorityIn::Medium) => tasks_pb::TaskPriority::Medium,
        Some(PriorityIn::High) => tasks_pb::TaskPriority::High,
        Some(PriorityIn::Urgent) => tasks_pb::TaskPriority::Urgent,
    };
    let r = client(&mesh)?
        .create_task_enhanced(caller.request(pb::CreateTaskEnhancedRequest {
            title: i.title,
            description: i.description,
            priority: priority as i32,
            due_time: i.due_time.map(pb_ts),
            estimated_minutes: i.estimated_minutes,
            granularity: i.granularity,
            skip_follow_ups: i.skip_follow_ups,
            idempotency_key: i.idempotency_key,
            ..Default::default()
        }))
        .await?
        .into_inner();
    let task = r.task.unwrap_or_default();
    let a = r.analysis.unwrap_or_default();
    Ok(CreateOut {
        task_id: task.id,
        title: task.title,
        blocks: r
            .breakdown
            .into_iter()
            .map(|b| BlockOut {
                title: b.title,
                minutes: b.minutes,
                done_when: b.done_when,
            })
            .collect(),
        complexity: a.complexity,
        estimated_minutes: a.estimated_minutes,
        risks: a.risks,
        first_step: a.first_step,
        insights_used: r.insights_used,
        plan_id: r.plan_id,
        replayed: r.replayed,
        steps: steps(r.steps),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteInput {
    pub task_id: String,
    /// What was done; checked before the task is completed.
    #[serde(default)]
    #[schemars(length(max = 2000))]
    pub proof: String,
    #[serde(default)]
    pub link: String,
    /// Complete even if the proof is not accepted.
    #[serde(default)]
    pub override_verdict: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CompleteOut {
    pub completed: bool,
    pub not_completed_reason: String,
    /// `accepted`, `needs_more`, `rejected` or empty.
    pub verdict: String,
    pub reasons: Vec<String>,
    pub points_awarded: i64,
    pub balance: i64,
    pub level: i32,
    pub streak_days: i32,
    pub motivation: String,
    pub steps: Vec<StepOut>,
}

async fn complete(mesh: Mesh, caller: Caller, i: CompleteInput) -> Result<CompleteOut, ToolError> {
    let r = client(&mesh)?
        .complete_task_enhanced(caller.request(pb::CompleteTaskEnhancedRequest {
            task_id: i.task_id,
            proof: i.proof,
            link: i.link,
            override_verdict: i.override_verdict,
        }))
        .await?
        .into_inner();
    use focusforge_proto::chain::v1::ProofVerdict;
    Ok(CompleteOut {
        completed: r.completed,
        not_completed_reason: r.not_completed_reason,
        verdict: match ProofVerdict::try_from(r.verdict) {
            Ok(ProofVerdict::Accepted) => "accepted",
            Ok(ProofVerdict::NeedsMore) => "needs_more",
            Ok(ProofVerdict::Rejected) => "rejected",
            _ => "",
        }
        .to_owned(),
        reasons: r.reasons,
        points_awarded: r.points_awarded,
        balance: r.balance,
        level: r.level,
        streak_days: r.streak_days,
        motivation: r.motivation,
        steps: steps(r.steps),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DayInput {
    /// Any time on the day; default today.
    #[serde(default)]
    pub day: Option<DateTime<Utc>>,
    /// Write the windows to the calendar.
    #[serde(default)]
    pub apply: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ItemOut {
    /// `focus` or `break`.
    pub kind: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub task_id: String,
    pub task_title: String,
    pub reason: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DayOut {
    pub items: Vec<ItemOut>,
    pub not_placed: Vec<String>,
    pub preferred_hours: Vec<i32>,
    pub low_mood: bool,
    pub time_zone: String,
    pub applied: bool,
    pub steps: Vec<StepOut>,
}

async fn day(mesh: Mesh, caller: Caller, i: DayInput) -> Result<DayOut, ToolError> {
    let r = client(&mesh)?
        .optimize_day(caller.request(pb::OptimizeDayRequest {
            day: i.day.map(pb_ts),
            apply: i.apply,
            max_tasks: 0,
        }))
        .await?
        .into_inner();
    Ok(DayOut {
        items: r
            .items
            .into_iter()
            .map(|i| ItemOut {
                kind: i.kind,
                start: at(i.start_time),
                end: at(i.end_time),
                task_id: i.task_id,
                task_title: i.task_title,
                reason: i.reason,
            })
            .collect(),
        not_placed: r.not_placed,
        preferred_hours: r.preferred_hours,
        low_mood: r.low_mood,
        time_zone: r.time_zone,
        applied: r.applied,
        steps: steps(r.steps),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FocusInput {
    pub task_id: String,
    /// Default the profile's focus length.
    #[serde(default)]
    #[schemars(range(min = 0, max = 240))]
    pub planned_minutes: i32,
    /// Start the focus playlist too.
    #[serde(default)]
    pub play_music: bool,
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub request_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FocusOut {
    pub session_id: String,
    pub planned_end: Option<DateTime<Utc>>,
    pub ritual_title: String,
    pub ritual_steps: Vec<String>,
    pub playlist: String,
    pub music_started: bool,
    pub steps: Vec<StepOut>,
}

async fn focus(mesh: Mesh, caller: Caller, i: FocusInput) -> Result<FocusOut, ToolError> {
    let r = client(&mesh)?
        .start_focus_session(caller.request(pb::StartFocusSessionRequest {
            task_id: i.task_id,
            planned_minutes: i.planned_minutes,
            play_music: i.play_music,
            request_id: i.request_id,
        }))
        .await?
        .into_inner();
    let session = r.session.unwrap_or_default();
    let ritual = r.ritual.unwrap_or_default();
    Ok(FocusOut {
        session_id: session.id,
        planned_end: at(session.planned_end_time),
        ritual_title: ritual.title,
        ritual_steps: ritual.steps,
        playlist: r.playlist.map(|p| p.name).unwrap_or_default(),
        music_started: r.music_started,
        steps: steps(r.steps),
    })
}

pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new::<CreateInput, CreateOut, _, _>(
            "workflows.create_task",
            "Create a task with AI",
            "Creates a task from the user's history: analysed and broken into focus blocks by the chains, its blocks placed in the calendar, a reminder before the first and a focus session at it; says which steps ran, fell back or failed.",
            Category::Workflows,
            SERVICE,
            create,
        ),
        Tool::new::<CompleteInput, CompleteOut, _, _>(
            "workflows.complete_task",
            "Complete a task with proof",
            "Checks the proof (a rejected one leaves the task open unless overridden), completes the task, reports the points (awarded once), streak and a motivation.",
            Category::Workflows,
            SERVICE,
            complete,
        ),
        Tool::new::<DayInput, DayOut, _, _>(
            "workflows.optimize_day",
            "Plan the day",
            "Places the open tasks into today's free time by priority and deadline, in the user's best focus hours, lighter after a low mood, with breaks; writes it to the calendar when asked.",
            Category::Workflows,
            SERVICE,
            day,
        ),
        Tool::new::<FocusInput, FocusOut, _, _>(
            "workflows.start_focus",
            "Start focusing on a task",
            "Starts a focus session on a task with a ritual suggestion and the focus playlist when Spotify is linked.",
            Category::Workflows,
            SERVICE,
            focus,
        ),
    ]
}
