//! The tools of the Planner service.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    TaskManagement,
    MoodTracking,
    Gamification,
    Integration,
    Memory,
    Notification,
    Calendar,
    Focus,
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
    /// Not before a time an earlier action produced: `${key.path}` naming
    /// an RFC 3339 string in its output.
    #[serde(default)]
    pub not_before_from: String,
    /// Seconds added to `not_before_from`'s time; negative for earlier.
    #[serde(default)]
    #[schemars(range(min = -31_622_400, max = 31_622_400))]
    pub not_before_offset_seconds: i64,
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
    /// Makes a retried call return the plan the first one made.
    #[serde(default)]
    #[schemars(length(max = 128))]
    pub request_id: String,
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

fn planner_client(mesh: &Mesh) -> Result<PlannerServiceClient<Conn>, ToolError> {
    client(mesh, PLANNER, PlannerServiceClient::new)
}

fn kind_pb(k: ActionKind) -> i32 {
    let t = match k {
        ActionKind::TaskManagement => planner_pb::ActionType::TaskManagement,
        ActionKind::MoodTracking => planner_pb::ActionType::MoodTracking,
        ActionKind::Gamification => planner_pb::ActionType::Gamification,
        ActionKind::Integration => planner_pb::ActionType::Integration,
        ActionKind::Memory => planner_pb::ActionType::Memory,
        ActionKind::Notification => planner_pb::ActionType::Notification,
        ActionKind::Calendar => planner_pb::ActionType::Calendar,
        ActionKind::Focus => planner_pb::ActionType::Focus,
    };
    t as i32
}

fn state_pb(s: ActionState) -> i32 {
    let t = match s {
        ActionState::Pending => planner_pb::ActionStatus::Pending,
        ActionState::Ready => planner_pb::ActionStatus::Ready,
        ActionState::Running => planner_pb::ActionStatus::Running,
        ActionState::Succeeded => planner_pb::ActionStatus::Succeeded,
        ActionState::Failed => planner_pb::ActionStatus::Failed,
        ActionState::Cancelled => planner_pb::ActionStatus::Cancelled,
        ActionState::Dead => planner_pb::ActionStatus::Dead,
    };
    t as i32
}

fn action_out(a: planner_pb::Action) -> ActionOutput {
    let spec = a.spec.unwrap_or_default();
    ActionOutput {
        plan_id: a.plan_id,
        key: spec.key,
        action_type: match planner_pb::ActionType::try_from(spec.r#type) {
            Ok(planner_pb::ActionType::MoodTracking) => ActionKind::MoodTracking,
            Ok(planner_pb::ActionType::Gamification) => ActionKind::Gamification,
            Ok(planner_pb::ActionType::Integration) => ActionKind::Integration,
            Ok(planner_pb::ActionType::Memory) => ActionKind::Memory,
            Ok(planner_pb::ActionType::Notification) => ActionKind::Notification,
            Ok(planner_pb::ActionType::Calendar) => ActionKind::Calendar,
            Ok(planner_pb::ActionType::Focus) => ActionKind::Focus,
            Ok(planner_pb::ActionType::TaskManagement | planner_pb::ActionType::Unspecified)
            | Err(_) => ActionKind::TaskManagement,
        },
        status: match planner_pb::ActionStatus::try_from(a.status) {
            Ok(planner_pb::ActionStatus::Ready) => ActionState::Ready,
            Ok(planner_pb::ActionStatus::Running) => ActionState::Running,
            Ok(planner_pb::ActionStatus::Succeeded) => ActionState::Succeeded,
            Ok(planner_pb::ActionStatus::Failed) => ActionState::Failed,
            Ok(planner_pb::ActionStatus::Cancelled) => ActionState::Cancelled,
            Ok(planner_pb::ActionStatus::Dead) => ActionState::Dead,
            Ok(planner_pb::ActionStatus::Pending | planner_pb::ActionStatus::Unspecified)
            | Err(_) => ActionState::Pending,
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
        .map(|a| planner_pb::ActionSpec {
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
            not_before_from: a.not_before_from,
            not_before_offset: (a.not_before_offset_seconds != 0).then_some(
                prost_types::Duration {
                    seconds: a.not_before_offset_seconds,
                    nanos: 0,
                },
            ),
        })
        .collect();
    let p = planner_client(&mesh)?
        .create_plan(caller.request(planner_pb::CreatePlanRequest {
            title: i.title,
            actions,
            request_id: i.request_id,
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
    let r = planner_client(&mesh)?
        .list_actions(caller.request(planner_pb::ListActionsRequest {
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
    let r = planner_client(&mesh)?
        .execute_ready(caller.request(planner_pb::ExecuteReadyRequest { plan_id: i.plan_id }))
        .await?
        .into_inner();
    Ok(ExecutedOutput {
        actions: r.actions.into_iter().map(action_out).collect(),
    })
}

/// The tools of the Planner service.
pub fn tools() -> Vec<Tool> {
    use Category::*;
    vec![
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
