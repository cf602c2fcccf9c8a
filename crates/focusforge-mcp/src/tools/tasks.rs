//! The tools of the Task service.

use focusforge_tasks::limits;

use super::*;

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
    #[schemars(length(min = 1, max = limits::TITLE))]
    pub title: String,
    #[schemars(range(min = 1, max = limits::BLOCK_MINUTES))]
    pub minutes: i32,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskInput {
    #[schemars(length(min = 1, max = limits::TITLE))]
    pub title: String,
    #[serde(default)]
    #[schemars(length(max = limits::DESCRIPTION))]
    pub description: String,
    /// Default medium.
    #[serde(default)]
    pub priority: Option<TaskPriority>,
    /// 0-10080; 0 means unknown.
    #[serde(default)]
    #[schemars(range(min = 0, max = limits::ESTIMATED_MINUTES))]
    pub estimated_minutes: i32,
    /// When it is due.
    #[serde(default)]
    pub due_time: Option<DateTime<Utc>>,
    #[serde(default)]
    #[schemars(length(max = limits::TAGS))]
    pub tags: Vec<String>,
    /// Focus blocks, in order.
    #[serde(default)]
    #[schemars(length(max = limits::BLOCKS))]
    pub blocks: Vec<NewBlock>,
    /// Focus sessions it should take, 0-100; 0 means unknown.
    #[serde(default)]
    #[schemars(range(min = 0, max = limits::ESTIMATED_POMODOROS))]
    pub estimated_pomodoros: i32,
    /// The calendar schedules no block before this.
    #[serde(default)]
    pub earliest_start_time: Option<DateTime<Utc>>,
    /// 0-480: the calendar may split a block into pieces of at least this
    /// many minutes; 0 never splits.
    #[serde(default)]
    #[schemars(range(min = 0, max = limits::BLOCK_MINUTES))]
    pub min_chunk_minutes: i32,
    /// Makes a retried call return the task the first one made.
    #[serde(default)]
    #[schemars(length(max = 128))]
    pub request_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskBlock {
    /// Stable within the task.
    pub id: String,
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

fn task_out(t: Option<tasks_pb::Task>) -> Result<TaskOutput, ToolError> {
    let t = t.ok_or_else(|| missing("task"))?;
    Ok(TaskOutput {
        status: match tasks_pb::TaskStatus::try_from(t.status) {
            Ok(tasks_pb::TaskStatus::InProgress) => TaskStatus::InProgress,
            Ok(tasks_pb::TaskStatus::Completed) => TaskStatus::Completed,
            Ok(tasks_pb::TaskStatus::Pending | tasks_pb::TaskStatus::Unspecified) | Err(_) => {
                TaskStatus::Pending
            }
        },
        priority: match tasks_pb::TaskPriority::try_from(t.priority) {
            Ok(tasks_pb::TaskPriority::Low) => TaskPriority::Low,
            Ok(tasks_pb::TaskPriority::High) => TaskPriority::High,
            Ok(tasks_pb::TaskPriority::Urgent) => TaskPriority::Urgent,
            Ok(tasks_pb::TaskPriority::Medium | tasks_pb::TaskPriority::Unspecified) | Err(_) => {
                TaskPriority::Medium
            }
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
                id: b.id,
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
    #[schemars(length(max = limits::PROOF))]
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
    #[schemars(length(max = limits::TAG))]
    pub tag: String,
    /// 1-200; default 50.
    #[serde(default)]
    #[schemars(range(min = 1, max = limits::PAGE_SIZE_MAX))]
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

fn tasks_client(mesh: &Mesh) -> Result<TaskServiceClient<Conn>, ToolError> {
    client(mesh, TASKS, TaskServiceClient::new)
}

async fn create_task(
    mesh: Mesh,
    caller: Caller,
    i: CreateTaskInput,
) -> Result<TaskOutput, ToolError> {
    let priority = match i.priority {
        None => tasks_pb::TaskPriority::Unspecified,
        Some(TaskPriority::Low) => tasks_pb::TaskPriority::Low,
        Some(TaskPriority::Medium) => tasks_pb::TaskPriority::Medium,
        Some(TaskPriority::High) => tasks_pb::TaskPriority::High,
        Some(TaskPriority::Urgent) => tasks_pb::TaskPriority::Urgent,
    };
    let r = tasks_client(&mesh)?
        .create_task(
            caller.request(tasks_pb::CreateTaskRequest {
                title: i.title,
                description: i.description,
                priority: priority as i32,
                estimated_minutes: i.estimated_minutes,
                estimated_pomodoros: i.estimated_pomodoros,
                due_time: i.due_time.map(pb_ts),
                tags: i.tags,
                blocks: i
                    .blocks
                    .into_iter()
                    .enumerate()
                    .map(|(n, b)| tasks_pb::WorkBlock {
                        title: b.title,
                        minutes: b.minutes,
                        order: i32::try_from(n).unwrap_or(i32::MAX),
                        done: false,
                        id: String::new(),
                    })
                    .collect(),
                earliest_start_time: i.earliest_start_time.map(pb_ts),
                min_chunk_minutes: i.min_chunk_minutes,
                request_id: i.request_id,
            }),
        )
        .await?
        .into_inner();
    task_out(r.task)
}

async fn get_task(mesh: Mesh, caller: Caller, i: TaskId) -> Result<TaskOutput, ToolError> {
    let r = tasks_client(&mesh)?
        .get_task(caller.request(tasks_pb::GetTaskRequest { id: i.id }))
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
        Some(TaskStatus::Pending) => vec![tasks_pb::TaskStatus::Pending as i32],
        Some(TaskStatus::InProgress) => vec![tasks_pb::TaskStatus::InProgress as i32],
        Some(TaskStatus::Completed) => vec![tasks_pb::TaskStatus::Completed as i32],
    };
    let r = tasks_client(&mesh)?
        .list_tasks(caller.request(tasks_pb::ListTasksRequest {
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
    let r = tasks_client(&mesh)?
        .start_task(caller.request(tasks_pb::StartTaskRequest { id: i.id }))
        .await?;
    task_out(r.into_inner().task)
}

async fn complete_task(
    mesh: Mesh,
    caller: Caller,
    i: CompleteTaskInput,
) -> Result<TaskOutput, ToolError> {
    let r = tasks_client(&mesh)?
        .complete_task(caller.request(tasks_pb::CompleteTaskRequest {
            id: i.id,
            proof_text: i.proof,
        }))
        .await?;
    task_out(r.into_inner().task)
}

/// The tools of the Task service.
pub fn tools() -> Vec<Tool> {
    use Category::*;
    vec![
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
    ]
}
