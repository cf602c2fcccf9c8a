//! How actions run. The planner hands each ready action to an
//! [`Executor`]; [`Executors`] picks one by action type from the services
//! this process runs; [`TaskExecutor`] runs task-management actions against
//! the tasks domain.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use focusforge_core::{Error, UserId};
use focusforge_tasks::{NewTask, Priority as TaskPriority, Task, Tasks};
use serde_json::{Value, json};

use crate::plan::{ActionSpec, ActionType};

/// Runs one action with its resolved params and returns its output.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    async fn execute(
        &self,
        user: &UserId,
        action: &ActionSpec,
        params: Value,
    ) -> Result<Value, Error>;
}

/// The executors of the services this process runs, by action type, set
/// once they are built. An action whose service is not deployed here fails
/// as `unimplemented`, naming the service (a failure that is not retried).
pub struct Executors {
    owners: BTreeMap<ActionType, &'static str>,
    running: OnceLock<HashMap<ActionType, Arc<dyn Executor>>>,
}

impl Executors {
    /// `owners`: the service that runs each action type, in this build.
    pub fn new(owners: BTreeMap<ActionType, &'static str>) -> Self {
        Self {
            owners,
            running: OnceLock::new(),
        }
    }

    /// The executors of the services built here; later calls are ignored.
    pub fn set(&self, executors: HashMap<ActionType, Arc<dyn Executor>>) {
        let _ = self.running.set(executors);
    }
}

#[async_trait]
impl Executor for Executors {
    async fn execute(
        &self,
        user: &UserId,
        action: &ActionSpec,
        params: Value,
    ) -> Result<Value, Error> {
        let kind = action.action_type;
        if let Some(executor) = self.running.get().and_then(|m| m.get(&kind)) {
            return executor.execute(user, action, params).await;
        }
        Err(Error::Unimplemented(match self.owners.get(&kind) {
            Some(service) => format!(
                "{} actions are run by {service}, which is not deployed here",
                kind.as_str()
            ),
            None => format!("no service runs {} actions", kind.as_str()),
        }))
    }
}

/// Task-management actions. `params.op` picks the operation:
///
/// - `create`: `title`, optional `description`, `priority` (low, medium,
///   high, urgent), `estimated_minutes`, `tags`. With an idempotency key, a
///   second run returns the task the first one created.
/// - `start`, `complete` (optional `proof`), `get`: `task_id`.
///
/// The output is the task: `{id, title, status, priority, version}`.
#[derive(Clone)]
pub struct TaskExecutor {
    tasks: Tasks,
}

impl TaskExecutor {
    pub fn new(tasks: Tasks) -> Self {
        Self { tasks }
    }
}

fn text(params: &Value, field: &str) -> Result<String, Error> {
    match params.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::invalid(
            format!("params.{field}"),
            "must be a string",
        )),
        None => Err(Error::invalid(format!("params.{field}"), "is required")),
    }
}

fn optional_text(params: &Value, field: &str) -> Result<String, Error> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(_) => text(params, field),
    }
}

fn output(t: &Task) -> Value {
    json!({
        "id": t.id,
        "title": t.title,
        "status": t.status.as_str(),
        "priority": t.priority.as_str(),
        "version": t.version,
    })
}

#[async_trait]
impl Executor for TaskExecutor {
    async fn execute(
        &self,
        user: &UserId,
        action: &ActionSpec,
        params: Value,
    ) -> Result<Value, Error> {
        if action.action_type != ActionType::TaskManagement {
            return Err(Error::Unimplemented(format!(
                "no executor runs {} actions yet",
                action.action_type.as_str()
            )));
        }
        let op = text(&params, "op")?;
        let task = match op.as_str() {
            "create" => {
                let tags: Vec<String> = match params.get("tags") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|t| {
                            t.as_str().map(str::to_owned).ok_or_else(|| {
                                Error::invalid("params.tags", "must be a list of strings")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(Error::invalid("params.tags", "must be a list")),
                };
                let priority = match optional_text(&params, "priority")?.as_str() {
                    "" => None,
                    "low" => Some(TaskPriority::Low),
                    "medium" => Some(TaskPriority::Medium),
                    "high" => Some(TaskPriority::High),
                    "urgent" => Some(TaskPriority::Urgent),
                    _ => {
                        return Err(Error::invalid(
                            "params.priority",
                            "must be low, medium, high or urgent",
                        ));
                    }
                };
                let minutes = match params.get("estimated_minutes") {
                    None | Some(Value::Null) => 0,
                    Some(v) => v
                        .as_i64()
                        .and_then(|m| i32::try_from(m).ok())
                        .ok_or_else(|| {
                            Error::invalid("params.estimated_minutes", "must be an integer")
                        })?,
                };
                self.tasks
                    .create(
                        user,
                        NewTask {
                            title: text(&params, "title")?,
                            description: optional_text(&params, "description")?,
                            priority,
                            estimated_minutes: minutes,
                            tags,
                            request_id: action.idempotency_key.clone(),
                            ..NewTask::default()
                        },
                    )
                    .await?
            }
            "start" => self.tasks.start(user, &text(&params, "task_id")?).await?,
            "complete" => {
                let id = text(&params, "task_id")?;
                match self
                    .tasks
                    .complete(user, &id, optional_text(&params, "proof")?)
                    .await
                {
                    // A retry of a completion that went through.
                    Err(Error::FailedPrecondition(why)) => {
                        let task = self.tasks.get(user, &id).await?;
                        if task.status != focusforge_tasks::Status::Completed {
                            return Err(Error::FailedPrecondition(why));
                        }
                        task
                    }
                    other => other?,
                }
            }
            "get" => self.tasks.get(user, &text(&params, "task_id")?).await?,
            _ => {
                return Err(Error::invalid(
                    "params.op",
                    "must be create, start, complete or get",
                ));
            }
        };
        Ok(output(&task))
    }
}
