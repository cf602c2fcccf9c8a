//! The tools: typed inputs and outputs (their JSON Schemas come from
//! these types) and handlers that call the owning service over gRPC.

use chrono::{DateTime, Utc};
use focusforge_proto::chain::v1 as chain;
use focusforge_proto::chain::v1::chain_service_client::ChainServiceClient;
use focusforge_proto::common::v1 as common;
use focusforge_proto::memory::v1 as memory;
use focusforge_proto::memory::v1::memory_service_client::MemoryServiceClient;
use focusforge_proto::planner::v1 as planner;
use focusforge_proto::planner::v1::planner_service_client::PlannerServiceClient;
use focusforge_proto::tasks::v1 as tasks;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::registry::{Caller, Category, Mesh, Tool, ToolError};

pub const CHAIN: &str = focusforge_proto::chain::v1::chain_service_server::SERVICE_NAME;
pub const TASKS: &str = focusforge_proto::tasks::v1::task_service_server::SERVICE_NAME;
pub const MEMORY: &str = focusforge_proto::memory::v1::memory_service_server::SERVICE_NAME;
pub const PLANNER: &str = focusforge_proto::planner::v1::planner_service_server::SERVICE_NAME;
/// Services this deployment does not have yet.
pub const MOOD: &str = "focusforge.mood.v1.MoodService";
pub const GAMIFICATION: &str = "focusforge.gamification.v1.GamificationService";
pub const INTEGRATIONS: &str = "focusforge.integrations.v1.IntegrationService";

fn ts(t: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    std::time::SystemTime::try_from(t?).ok().map(DateTime::from)
}

fn pb_ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    std::time::SystemTime::from(t).into()
}

fn missing(what: &str) -> ToolError {
    ToolError::Upstream(tonic::Status::internal(format!(
        "the service returned no {what}"
    )))
}

// ---------------------------------------------------------------- AI

/// A task to think about.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskText {
    /// The task's title.
    #[schemars(length(min = 1, max = 500))]
    pub title: String,
    /// More about it.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub description: String,
}

/// How an answer was produced.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Provenance {
    /// The model that answered (`local:...`, `openai:...`) or `fallback`.
    pub backend: String,
    /// Whether the rule-based fallback answered.
    pub fallback_used: bool,
    /// Whether a cached answer was returned.
    pub cached: bool,
    /// The usefulness rule the model's last rejected answer broke; empty
    /// when its first answer was kept.
    pub failed_rule: String,
}

fn provenance(info: Option<chain::ChainInfo>) -> Provenance {
    let info = info.unwrap_or_default();
    Provenance {
        backend: info.backend,
        fallback_used: info.fallback_used,
        cached: info.cached,
        failed_rule: info.failed_rule,
    }
}

fn task_input(t: TaskText) -> chain::TaskInput {
    chain::TaskInput {
        title: t.title,
        description: t.description,
        ..Default::default()
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakDownInput {
    /// The task's title.
    #[schemars(length(min = 1, max = 500))]
    pub title: String,
    /// More about it.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub description: String,
    /// 1 (a few long blocks) to 5 (many short ones); default 3.
    #[serde(default)]
    #[schemars(range(min = 1, max = 5))]
    pub granularity: Option<i32>,
    /// The minutes the whole task takes, as the user estimates them
    /// (5-1440); the blocks add up to about this.
    #[serde(default)]
    #[schemars(range(min = 5, max = 1440))]
    pub estimated_minutes: Option<i32>,
}

/// One focus block.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Block {
    pub title: String,
    pub minutes: i32,
    /// How to tell the block is done.
    pub done_when: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BreakDownOutput {
    /// The focus blocks in order.
    pub blocks: Vec<Block>,
    pub total_minutes: i32,
    pub provenance: Provenance,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AnalysisOutput {
    /// 1 (trivial) to 10.
    pub complexity: i32,
    pub estimated_minutes: i32,
    pub skills: Vec<String>,
    pub risks: Vec<String>,
    pub first_step: String,
    pub provenance: Provenance,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MotivateInput {
    /// The task the user is about to work on, if any.
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub task_title: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MotivateOutput {
    pub message: String,
    pub streak_days: i32,
    pub completed_today: i32,
    pub provenance: Provenance,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofInput {
    /// The task's title.
    #[schemars(length(min = 1, max = 500))]
    pub title: String,
    /// More about it.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub description: String,
    /// What the user says they did.
    #[schemars(length(min = 1, max = 10000))]
    pub proof: String,
    /// A link to the result, if any.
    #[serde(default)]
    #[schemars(length(max = 2000))]
    pub link: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    NeedsMore,
    Rejected,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProofOutput {
    pub verdict: Verdict,
    /// 0-100.
    pub confidence: i32,
    pub reasons: Vec<String>,
    pub provenance: Provenance,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RitualInput {
    /// The task ahead, if any.
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub task_title: String,
    /// How the user feels, in a word or two.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub mood: String,
    /// The user's local hour, 0-23.
    #[serde(default)]
    #[schemars(range(min = 0, max = 23))]
    pub hour_of_day: Option<i32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RitualOutput {
    pub title: String,
    pub steps: Vec<String>,
    pub minutes: i32,
    pub provenance: Provenance,
}

fn chain_client(mesh: &Mesh) -> ChainServiceClient<tonic::transport::Channel> {
    ChainServiceClient::new(mesh.channel.clone())
}

async fn break_down(
    mesh: Mesh,
    caller: Caller,
    i: BreakDownInput,
) -> Result<BreakDownOutput, ToolError> {
    let r = chain_client(&mesh)
        .break_down_task(caller.request(chain::BreakDownTaskRequest {
            task: Some(chain::TaskInput {
                estimated_minutes: i.estimated_minutes.unwrap_or(0),
                ..task_input(TaskText {
                    title: i.title,
                    description: i.description,
                })
            }),
            granularity: i.granularity.unwrap_or(3),
            no_cache: false,
        }))
        .await?
        .into_inner();
    Ok(BreakDownOutput {
        blocks: r
            .blocks
            .into_iter()
            .map(|b| Block {
                title: b.title,
                minutes: b.minutes,
                done_when: b.done_when,
            })
            .collect(),
        total_minutes: r.total_minutes,
        provenance: provenance(r.info),
    })
}

async fn analyze(mesh: Mesh, caller: Caller, i: TaskText) -> Result<AnalysisOutput, ToolError> {
    let r = chain_client(&mesh)
        .analyze_task(caller.request(chain::AnalyzeTaskRequest {
            task: Some(task_input(i)),
            no_cache: false,
        }))
        .await?
        .into_inner();
    Ok(AnalysisOutput {
        complexity: r.complexity,
        estimated_minutes: r.estimated_minutes,
        skills: r.skills,
        risks: r.risks,
        first_step: r.first_step,
        provenance: provenance(r.info),
    })
}

async fn motivate(
    mesh: Mesh,
    caller: Caller,
    i: MotivateInput,
) -> Result<MotivateOutput, ToolError> {
    let r = chain_client(&mesh)
        .motivate(caller.request(chain::MotivateRequest {
            task_title: i.task_title,
            no_cache: false,
        }))
        .await?
        .into_inner();
    Ok(MotivateOutput {
        message: r.message,
        streak_days: r.streak_days,
        completed_today: r.completed_today,
        provenance: provenance(r.info),
    })
}

async fn validate_proof(
    mesh: Mesh,
    caller: Caller,
    i: ProofInput,
) -> Result<ProofOutput, ToolError> {
    let r = chain_client(&mesh)
        .validate_proof(caller.request(chain::ValidateProofRequest {
            task: Some(task_input(TaskText {
                title: i.title,
                description: i.description,
            })),
            proof: i.proof,
            link: i.link,
            no_cache: false,
        }))
        .await?
        .into_inner();
    let verdict = match chain::ProofVerdict::try_from(r.verdict) {
        Ok(chain::ProofVerdict::Accepted) => Verdict::Accepted,
        Ok(chain::ProofVerdict::Rejected) => Verdict::Rejected,
        _ => Verdict::NeedsMore,
    };
    Ok(ProofOutput {
        verdict,
        confidence: r.confidence,
        reasons: r.reasons,
        provenance: provenance(r.info),
    })
}

async fn suggest_ritual(
    mesh: Mesh,
    caller: Caller,
    i: RitualInput,
) -> Result<RitualOutput, ToolError> {
    let r = chain_client(&mesh)
        .suggest_ritual(caller.request(chain::SuggestRitualRequest {
            task_title: i.task_title,
            mood: i.mood,
            hour_of_day: i.hour_of_day,
            no_cache: false,
        }))
        .await?
        .into_inner();
    Ok(RitualOutput {
        title: r.title,
        steps: r.steps,
        minutes: r.minutes,
        provenance: provenance(r.info),
    })
}

// ---------------------------------------------------------------- tasks

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskPriority {
    Low,
    Medium,
    High,
    Urgent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    InProgress,
    Completed,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBlock {
    #[schemars(length(min = 1, max = 500))]
    pub title: String,
    #[schemars(range(min = 1, max = 480))]
    pub minutes: i32,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskInput {
    #[schemars(length(min = 1, max = 500))]
    pub title: String,
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub description: String,
    /// Default medium.
    #[serde(default)]
    pub priority: Option<TaskPriority>,
    /// 0-10080; 0 means unknown.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10080))]
    pub estimated_minutes: i32,
    /// When it is due.
    #[serde(default)]
    pub due_time: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub tags: Vec<String>,
    /// Focus blocks, in order.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub blocks: Vec<NewBlock>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskBlock {
    pub title: String,
    pub minutes: i32,
    pub order: i32,
    pub done: bool,
}

/// A task.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskOutput {
    pub id: String,
    pub title: String,
    pub description: String,
    pub status: TaskStatus,
    pub priority: TaskPriority,
    pub estimated_minutes: i32,
    pub due_time: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub blocks: Vec<TaskBlock>,
    pub completion_proof: String,
    pub created_at: Option<DateTime<Utc>>,
    pub version: i64,
}

fn task_out(t: Option<tasks::Task>) -> Result<TaskOutput, ToolError> {
    let t = t.ok_or_else(|| missing("task"))?;
    Ok(TaskOutput {
        status: match tasks::TaskStatus::try_from(t.status) {
            Ok(tasks::TaskStatus::InProgress) => TaskStatus::InProgress,
            Ok(tasks::TaskStatus::Completed) => TaskStatus::Completed,
            _ => TaskStatus::Pending,
        },
        priority: match tasks::TaskPriority::try_from(t.priority) {
            Ok(tasks::TaskPriority::Low) => TaskPriority::Low,
            Ok(tasks::TaskPriority::High) => TaskPriority::High,
            Ok(tasks::TaskPriority::Urgent) => TaskPriority::Urgent,
            _ => TaskPriority::Medium,
        },
        id: t.id,
        title: t.title,
        description: t.description,
        estimated_minutes: t.estimated_minutes,
        due_time: ts(t.due_time),
        tags: t.tags,
        blocks: t
            .blocks
            .into_iter()
            .map(|b| TaskBlock {
                title: b.title,
                minutes: b.minutes,
                order: b.order,
                done: b.done,
            })
            .collect(),
        completion_proof: t.completion_proof,
        created_at: ts(t.create_time),
        version: t.version,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskId {
    /// The task's id.
    #[schemars(length(min = 1, max = 128))]
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteTaskInput {
    #[schemars(length(min = 1, max = 128))]
    pub id: String,
    /// What was done, as proof.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub proof: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTasksInput {
    /// Only tasks in this state.
    #[serde(default)]
    pub status: Option<TaskStatus>,
    /// Only tasks with this tag.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub tag: String,
    /// 1-200; default 50.
    #[serde(default)]
    #[schemars(range(min = 1, max = 200))]
    pub page_size: Option<i32>,
    /// From a previous call's `next_page_token`.
    #[serde(default)]
    pub page_token: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskListOutput {
    /// Newest first.
    pub tasks: Vec<TaskOutput>,
    /// Pass it back for the next page; empty on the last.
    pub next_page_token: String,
}

fn tasks_client(mesh: &Mesh) -> TaskServiceClient<tonic::transport::Channel> {
    TaskServiceClient::new(mesh.channel.clone())
}

async fn create_task(
    mesh: Mesh,
    caller: Caller,
    i: CreateTaskInput,
) -> Result<TaskOutput, ToolError> {
    let priority = match i.priority {
        None => tasks::TaskPriority::Unspecified,
        Some(TaskPriority::Low) => tasks::TaskPriority::Low,
        Some(TaskPriority::Medium) => tasks::TaskPriority::Medium,
        Some(TaskPriority::High) => tasks::TaskPriority::High,
        Some(TaskPriority::Urgent) => tasks::TaskPriority::Urgent,
    };
    let r = tasks_client(&mesh)
        .create_task(
            caller.request(tasks::CreateTaskRequest {
                title: i.title,
                description: i.description,
                priority: priority as i32,
                estimated_minutes: i.estimated_minutes,
                due_time: i.due_time.map(pb_ts),
                tags: i.tags,
                blocks: i
                    .blocks
                    .into_iter()
                    .enumerate()
                    .map(|(n, b)| tasks::WorkBlock {
                        title: b.title,
                        minutes: b.minutes,
                        order: i32::try_from(n).unwrap_or(i32::MAX),
                        done: false,
                    })
                    .collect(),
            }),
        )
        .await?
        .into_inner();
    task_out(r.task)
}

async fn get_task(mesh: Mesh, caller: Caller, i: TaskId) -> Result<TaskOutput, ToolError> {
    let r = tasks_client(&mesh)
        .get_task(caller.request(tasks::GetTaskRequest { id: i.id }))
        .await?;
    task_out(r.into_inner().task)
}

async fn list_tasks(
    mesh: Mesh,
    caller: Caller,
    i: ListTasksInput,
) -> Result<TaskListOutput, ToolError> {
    let statuses = match i.status {
        None => Vec::new(),
        Some(TaskStatus::Pending) => vec![tasks::TaskStatus::Pending as i32],
        Some(TaskStatus::InProgress) => vec![tasks::TaskStatus::InProgress as i32],
        Some(TaskStatus::Completed) => vec![tasks::TaskStatus::Completed as i32],
    };
    let r = tasks_client(&mesh)
        .list_tasks(caller.request(tasks::ListTasksRequest {
            page_size: i.page_size.unwrap_or(0),
            page_token: i.page_token,
            statuses,
            tag: i.tag,
            ..Default::default()
        }))
        .await?
        .into_inner();
    Ok(TaskListOutput {
        tasks: r
            .tasks
            .into_iter()
            .map(|t| task_out(Some(t)))
            .collect::<Result<_, _>>()?,
        next_page_token: r.next_page_token,
    })
}

async fn start_task(mesh: Mesh, caller: Caller, i: TaskId) -> Result<TaskOutput, ToolError> {
    let r = tasks_client(&mesh)
        .start_task(caller.request(tasks::StartTaskRequest { id: i.id }))
        .await?;
    task_out(r.into_inner().task)
}

async fn complete_task(
    mesh: Mesh,
    caller: Caller,
    i: CompleteTaskInput,
) -> Result<TaskOutput, ToolError> {
    let r = tasks_client(&mesh)
        .complete_task(caller.request(tasks::CompleteTaskRequest {
            id: i.id,
            proof_text: i.proof,
        }))
        .await?;
    task_out(r.into_inner().task)
}

// ---------------------------------------------------------------- memory

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Kept an hour.
    ShortTerm,
    /// Kept a day.
    Working,
    /// Kept until forgotten.
    LongTerm,
    /// Kept until forgotten, searchable by meaning.
    Semantic,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberInput {
    /// What to remember.
    #[schemars(length(min = 1, max = 8000))]
    pub content: String,
    /// Default semantic.
    #[serde(default)]
    pub tier: Option<Tier>,
    /// A label such as `note`, `preference` or `mood`.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub kind: String,
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub tags: Vec<String>,
}

/// A memory.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MemoryOutput {
    pub id: String,
    pub tier: Tier,
    pub kind: String,
    pub content: String,
    pub tags: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// When it will be forgotten, for the short-term and working tiers.
    pub expires_at: Option<DateTime<Utc>>,
}

fn memory_out(m: Option<memory::Memory>) -> Result<MemoryOutput, ToolError> {
    let m = m.ok_or_else(|| missing("memory"))?;
    Ok(MemoryOutput {
        tier: match memory::MemoryTier::try_from(m.tier) {
            Ok(memory::MemoryTier::ShortTerm) => Tier::ShortTerm,
            Ok(memory::MemoryTier::Working) => Tier::Working,
            Ok(memory::MemoryTier::LongTerm) => Tier::LongTerm,
            _ => Tier::Semantic,
        },
        id: m.id,
        kind: m.kind,
        content: m.content,
        tags: m.tags,
        created_at: ts(m.create_time),
        expires_at: ts(m.expire_time),
    })
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    Semantic,
    Keyword,
    Hybrid,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchInput {
    #[schemars(length(min = 1, max = 2000))]
    pub query: String,
    /// 1-50; default 10.
    #[serde(default)]
    #[schemars(range(min = 1, max = 50))]
    pub top_k: Option<i32>,
    /// Default hybrid.
    #[serde(default)]
    pub mode: Option<SearchMode>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Hit {
    pub memory: MemoryOutput,
    pub score: f32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchOutput {
    /// Best first.
    pub hits: Vec<Hit>,
}

fn memory_client(mesh: &Mesh) -> MemoryServiceClient<tonic::transport::Channel> {
    MemoryServiceClient::new(mesh.channel.clone())
}

async fn remember(mesh: Mesh, caller: Caller, i: RememberInput) -> Result<MemoryOutput, ToolError> {
    let tier = match i.tier.unwrap_or(Tier::Semantic) {
        Tier::ShortTerm => memory::MemoryTier::ShortTerm,
        Tier::Working => memory::MemoryTier::Working,
        Tier::LongTerm => memory::MemoryTier::LongTerm,
        Tier::Semantic => memory::MemoryTier::Semantic,
    };
    let r = memory_client(&mesh)
        .remember(caller.request(memory::RememberRequest {
            tier: tier as i32,
            kind: i.kind,
            content: i.content,
            tags: i.tags,
            ..Default::default()
        }))
        .await?;
    memory_out(r.into_inner().memory)
}

async fn search(mesh: Mesh, caller: Caller, i: SearchInput) -> Result<SearchOutput, ToolError> {
    let mode = match i.mode.unwrap_or(SearchMode::Hybrid) {
        SearchMode::Semantic => memory::SearchMode::Semantic,
        SearchMode::Keyword => memory::SearchMode::Keyword,
        SearchMode::Hybrid => memory::SearchMode::Hybrid,
    };
    let r = memory_client(&mesh)
        .search_memories(caller.request(memory::SearchMemoriesRequest {
            query: i.query,
            top_k: i.top_k.unwrap_or(10),
            mode: mode as i32,
        }))
        .await?
        .into_inner();
    Ok(SearchOutput {
        hits: r
            .hits
            .into_iter()
            .map(|h| {
                Ok(Hit {
                    memory: memory_out(h.memory)?,
                    score: h.score,
                })
            })
            .collect::<Result<_, ToolError>>()?,
    })
}

// ---------------------------------------------------------------- planner

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    TaskManagement,
    MoodTracking,
    Gamification,
    Integration,
    Memory,
    Notification,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunPriority {
    Critical,
    High,
    Medium,
    Low,
    Background,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Pending,
    Ready,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Dead,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    /// Unique within the plan.
    #[schemars(length(min = 1, max = 128))]
    pub key: String,
    #[serde(rename = "type")]
    pub action_type: ActionKind,
    /// Default medium.
    #[serde(default)]
    pub priority: Option<RunPriority>,
    /// The action's input; a string `${key.path}` takes part of an earlier
    /// action's output. Task actions: `{"op": "create", "title": ...}`,
    /// `{"op": "start" | "complete" | "get", "task_id": ...}`.
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
    /// Not before this time.
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
    /// Keys of actions that must succeed first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Attempts in all, 1-100; default 3.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<i32>,
    /// Makes a repeated run have its effect once.
    #[serde(default)]
    #[schemars(length(max = 128))]
    pub idempotency_key: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    #[serde(default)]
    #[schemars(length(max = 200))]
    pub title: String,
    /// 1-1000 actions forming a DAG.
    #[schemars(length(min = 1, max = 1000))]
    pub actions: Vec<ActionInput>,
}

/// A planned action.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ActionOutput {
    pub plan_id: String,
    pub key: String,
    #[serde(rename = "type")]
    pub action_type: ActionKind,
    pub status: ActionState,
    pub attempts: i32,
    pub depends_on: Vec<String>,
    pub last_error: String,
    pub cancel_reason: String,
    /// What it produced, once it succeeded.
    pub output: Option<Value>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PlanOutput {
    pub id: String,
    pub title: String,
    pub done: bool,
    pub actions: Vec<ActionOutput>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListActionsInput {
    /// Only this plan's actions.
    #[serde(default)]
    #[schemars(length(max = 128))]
    pub plan_id: String,
    /// Only actions in this state.
    #[serde(default)]
    pub status: Option<ActionState>,
    /// 1-200; default 50.
    #[serde(default)]
    #[schemars(range(min = 1, max = 200))]
    pub page_size: Option<i32>,
    #[serde(default)]
    pub page_token: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ActionListOutput {
    pub actions: Vec<ActionOutput>,
    pub next_page_token: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteReadyInput {
    /// Only this plan; default every unfinished plan.
    #[serde(default)]
    #[schemars(length(max = 128))]
    pub plan_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecutedOutput {
    /// The actions that ran, in their state after the run.
    pub actions: Vec<ActionOutput>,
}

fn planner_client(mesh: &Mesh) -> PlannerServiceClient<tonic::transport::Channel> {
    PlannerServiceClient::new(mesh.channel.clone())
}

fn kind_pb(k: ActionKind) -> i32 {
    let t = match k {
        ActionKind::TaskManagement => planner::ActionType::TaskManagement,
        ActionKind::MoodTracking => planner::ActionType::MoodTracking,
        ActionKind::Gamification => planner::ActionType::Gamification,
        ActionKind::Integration => planner::ActionType::Integration,
        ActionKind::Memory => planner::ActionType::Memory,
        ActionKind::Notification => planner::ActionType::Notification,
    };
    t as i32
}

fn state_pb(s: ActionState) -> i32 {
    let t = match s {
        ActionState::Pending => planner::ActionStatus::Pending,
        ActionState::Ready => planner::ActionStatus::Ready,
        ActionState::Running => planner::ActionStatus::Running,
        ActionState::Succeeded => planner::ActionStatus::Succeeded,
        ActionState::Failed => planner::ActionStatus::Failed,
        ActionState::Cancelled => planner::ActionStatus::Cancelled,
        ActionState::Dead => planner::ActionStatus::Dead,
    };
    t as i32
}

fn action_out(a: planner::Action) -> ActionOutput {
    let spec = a.spec.unwrap_or_default();
    ActionOutput {
        plan_id: a.plan_id,
        key: spec.key,
        action_type: match planner::ActionType::try_from(spec.r#type) {
            Ok(planner::ActionType::MoodTracking) => ActionKind::MoodTracking,
            Ok(planner::ActionType::Gamification) => ActionKind::Gamification,
            Ok(planner::ActionType::Integration) => ActionKind::Integration,
            Ok(planner::ActionType::Memory) => ActionKind::Memory,
            Ok(planner::ActionType::Notification) => ActionKind::Notification,
            _ => ActionKind::TaskManagement,
        },
        status: match planner::ActionStatus::try_from(a.status) {
            Ok(planner::ActionStatus::Ready) => ActionState::Ready,
            Ok(planner::ActionStatus::Running) => ActionState::Running,
            Ok(planner::ActionStatus::Succeeded) => ActionState::Succeeded,
            Ok(planner::ActionStatus::Failed) => ActionState::Failed,
            Ok(planner::ActionStatus::Cancelled) => ActionState::Cancelled,
            Ok(planner::ActionStatus::Dead) => ActionState::Dead,
            _ => ActionState::Pending,
        },
        attempts: a.attempts,
        depends_on: spec.depends_on,
        last_error: a.last_error,
        cancel_reason: a.cancel_reason,
        output: serde_json::from_str(&a.output_json).ok(),
    }
}

async fn plan(mesh: Mesh, caller: Caller, i: PlanInput) -> Result<PlanOutput, ToolError> {
    let actions = i
        .actions
        .into_iter()
        .map(|a| planner::ActionSpec {
            key: a.key,
            r#type: kind_pb(a.action_type),
            priority: match a.priority {
                None => common::Priority::Unspecified,
                Some(RunPriority::Critical) => common::Priority::Critical,
                Some(RunPriority::High) => common::Priority::High,
                Some(RunPriority::Medium) => common::Priority::Medium,
                Some(RunPriority::Low) => common::Priority::Low,
                Some(RunPriority::Background) => common::Priority::Background,
            } as i32,
            params_json: Value::Object(a.params).to_string(),
            not_before: a.not_before.map(pb_ts),
            depends_on: a.depends_on,
            retry: a.max_attempts.map(|n| common::RetryPolicy {
                max_attempts: n,
                non_retryable: focusforge_core::RetryPolicy::default().non_retryable,
                ..Default::default()
            }),
            idempotency_key: a.idempotency_key,
        })
        .collect();
    let p = planner_client(&mesh)
        .create_plan(caller.request(planner::CreatePlanRequest {
            title: i.title,
            actions,
        }))
        .await?
        .into_inner()
        .plan
        .ok_or_else(|| missing("plan"))?;
    Ok(PlanOutput {
        id: p.id,
        title: p.title,
        done: p.done,
        actions: p.actions.into_iter().map(action_out).collect(),
    })
}

async fn list_actions(
    mesh: Mesh,
    caller: Caller,
    i: ListActionsInput,
) -> Result<ActionListOutput, ToolError> {
    let r = planner_client(&mesh)
        .list_actions(caller.request(planner::ListActionsRequest {
            page_size: i.page_size.unwrap_or(0),
            page_token: i.page_token,
            plan_id: i.plan_id,
            statuses: i.status.map(state_pb).into_iter().collect(),
            types: Vec::new(),
        }))
        .await?
        .into_inner();
    Ok(ActionListOutput {
        actions: r.actions.into_iter().map(action_out).collect(),
        next_page_token: r.next_page_token,
    })
}

async fn execute_ready(
    mesh: Mesh,
    caller: Caller,
    i: ExecuteReadyInput,
) -> Result<ExecutedOutput, ToolError> {
    let r = planner_client(&mesh)
        .execute_ready(caller.request(planner::ExecuteReadyRequest { plan_id: i.plan_id }))
        .await?
        .into_inner();
    Ok(ExecutedOutput {
        actions: r.actions.into_iter().map(action_out).collect(),
    })
}

// ------------------------------------------- services not deployed yet

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogMoodInput {
    /// 1 (awful) to 10 (great).
    #[schemars(range(min = 1, max = 10))]
    pub score: i32,
    /// A word or two, e.g. `focused`, `tired`.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub label: String,
    #[serde(default)]
    #[schemars(length(max = 2000))]
    pub note: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MoodEntry {
    pub id: String,
    pub score: i32,
    pub label: String,
    pub logged_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoodPatternsInput {
    /// How many days back, 1-90; default 14.
    #[serde(default)]
    #[schemars(range(min = 1, max = 90))]
    pub days: Option<i32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MoodPatterns {
    pub average_score: f32,
    /// `rising`, `falling` or `steady`.
    pub trend: String,
    /// Hours of the day with the best moods.
    pub best_hours: Vec<i32>,
    pub insights: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwardPointsInput {
    #[schemars(range(min = 1, max = 1000))]
    pub points: i32,
    #[schemars(length(min = 1, max = 200))]
    pub reason: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GameProfile {
    pub points: i64,
    pub level: i32,
    pub streak_days: i32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Reward {
    pub id: String,
    pub title: String,
    pub cost: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RewardList {
    pub rewards: Vec<Reward>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemInput {
    #[schemars(length(min = 1, max = 128))]
    pub reward_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Redemption {
    pub reward_id: String,
    pub points_left: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarInput {
    /// From (default now).
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// Until (default a day later).
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CalendarEvent {
    pub title: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CalendarEvents {
    pub events: Vec<CalendarEvent>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MusicInput {
    /// The mood to match, e.g. `calm`.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub mood: String,
    /// Session length, 5-240 minutes.
    #[serde(default)]
    #[schemars(range(min = 5, max = 240))]
    pub minutes: Option<i32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Playlist {
    pub name: String,
    pub url: String,
}

/// The handler of a tool whose service this deployment does not have.
fn not_deployed<I, O>(
    service: &'static str,
) -> impl Fn(Mesh, Caller, I) -> futures::future::Ready<Result<O, ToolError>> + Send + Sync + 'static
{
    move |_, _, _| {
        futures::future::ready(Err(ToolError::Unavailable(format!(
            "{service} is not deployed"
        ))))
    }
}

/// Every tool, by the design.
pub fn all() -> Vec<Tool> {
    use Category::*;
    vec![
        Tool::new::<BreakDownInput, BreakDownOutput, _, _>(
            "ai.break_down_task",
            "Break a task into focus blocks",
            "Splits a task into ordered focus blocks, each with minutes and how to tell it is done.",
            Ai,
            CHAIN,
            break_down,
        ),
        Tool::new::<TaskText, AnalysisOutput, _, _>(
            "ai.analyze_task",
            "Analyse a task",
            "Estimates a task's complexity and time, the skills it needs, its risks and the first step.",
            Ai,
            CHAIN,
            analyze,
        ),
        Tool::new::<MotivateInput, MotivateOutput, _, _>(
            "ai.motivation_coach",
            "Motivate",
            "A short motivating message from the user's recent progress.",
            Ai,
            CHAIN,
            motivate,
        ),
        Tool::new::<ProofInput, ProofOutput, _, _>(
            "ai.validate_proof",
            "Check a completion proof",
            "Judges whether the proof shows the task done: accepted, needs more, or rejected, with reasons.",
            Ai,
            CHAIN,
            validate_proof,
        ),
        Tool::new::<RitualInput, RitualOutput, _, _>(
            "ai.suggest_ritual",
            "Suggest a focus ritual",
            "A short ritual to start a focus session, fitted to the task, mood and time of day.",
            Ai,
            CHAIN,
            suggest_ritual,
        ),
        Tool::new::<CreateTaskInput, TaskOutput, _, _>(
            "tasks.create",
            "Create a task",
            "Creates a task for the user, optionally with focus blocks.",
            Tasks,
            TASKS,
            create_task,
        ),
        Tool::new::<TaskId, TaskOutput, _, _>(
            "tasks.get",
            "Get a task",
            "Returns one of the user's tasks.",
            Tasks,
            TASKS,
            get_task,
        ),
        Tool::new::<ListTasksInput, TaskListOutput, _, _>(
            "tasks.list",
            "List tasks",
            "Lists the user's tasks, newest first, with optional status and tag filters.",
            Tasks,
            TASKS,
            list_tasks,
        ),
        Tool::new::<TaskId, TaskOutput, _, _>(
            "tasks.start",
            "Start a task",
            "Moves a pending task to in progress.",
            Tasks,
            TASKS,
            start_task,
        ),
        Tool::new::<CompleteTaskInput, TaskOutput, _, _>(
            "tasks.complete",
            "Complete a task",
            "Marks a task completed, with optional proof of what was done.",
            Tasks,
            TASKS,
            complete_task,
        ),
        Tool::new::<LogMoodInput, MoodEntry, _, _>(
            "mood.log",
            "Log a mood",
            "Records how the user feels now.",
            Mood,
            MOOD,
            not_deployed(MOOD),
        ),
        Tool::new::<MoodPatternsInput, MoodPatterns, _, _>(
            "mood.analyze_patterns",
            "Analyse mood patterns",
            "Finds trends and the best hours in the user's logged moods.",
            Mood,
            MOOD,
            not_deployed(MOOD),
        ),
        Tool::new::<AwardPointsInput, GameProfile, _, _>(
            "gamification.award_points",
            "Award points",
            "Gives the user points for a reason.",
            Gamification,
            GAMIFICATION,
            not_deployed(GAMIFICATION),
        ),
        Tool::new::<Empty, GameProfile, _, _>(
            "gamification.get_profile",
            "Get the game profile",
            "The user's points, level and streak.",
            Gamification,
            GAMIFICATION,
            not_deployed(GAMIFICATION),
        ),
        Tool::new::<Empty, RewardList, _, _>(
            "gamification.list_rewards",
            "List rewards",
            "Rewards the user can redeem points for.",
            Gamification,
            GAMIFICATION,
            not_deployed(GAMIFICATION),
        ),
        Tool::new::<RedeemInput, Redemption, _, _>(
            "gamification.redeem",
            "Redeem a reward",
            "Spends points on a reward.",
            Gamification,
            GAMIFICATION,
            not_deployed(GAMIFICATION),
        ),
        Tool::new::<CalendarInput, CalendarEvents, _, _>(
            "integrations.calendar_events",
            "Calendar events",
            "The user's calendar events in a time range.",
            Integrations,
            INTEGRATIONS,
            not_deployed(INTEGRATIONS),
        ),
        Tool::new::<MusicInput, Playlist, _, _>(
            "integrations.focus_music",
            "Focus music",
            "A playlist for a focus session.",
            Integrations,
            INTEGRATIONS,
            not_deployed(INTEGRATIONS),
        ),
        Tool::new::<RememberInput, MemoryOutput, _, _>(
            "memory.remember",
            "Remember",
            "Stores something about the user in a memory tier (semantic by default, searchable by meaning).",
            Memory,
            MEMORY,
            remember,
        ),
        Tool::new::<SearchInput, SearchOutput, _, _>(
            "memory.search",
            "Search memories",
            "Finds the user's semantic memories that best match a query, by meaning, keywords or both.",
            Memory,
            MEMORY,
            search,
        ),
        Tool::new::<PlanInput, PlanOutput, _, _>(
            "planner.plan",
            "Plan actions",
            "Plans a DAG of actions with priorities, dependencies and retries; they run in the background.",
            Planner,
            PLANNER,
            plan,
        ),
        Tool::new::<ListActionsInput, ActionListOutput, _, _>(
            "planner.list",
            "List planned actions",
            "Lists the user's planned actions, newest plan first.",
            Planner,
            PLANNER,
            list_actions,
        ),
        Tool::new::<ExecuteReadyInput, ExecutedOutput, _, _>(
            "planner.execute_ready",
            "Run ready actions now",
            "Runs the user's ready actions now and returns how they ended.",
            Planner,
            PLANNER,
            execute_ready,
        ),
    ]
}
