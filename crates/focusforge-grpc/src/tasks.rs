use focusforge_core::{Error, Violations};
use focusforge_proto::tasks::v1 as pb;
use focusforge_proto::tasks::v1::task_service_server::TaskService;
use focusforge_tasks::{NewTask, Priority, Status, Task, TaskFilter, TaskPatch, Tasks, WorkBlock};
use tonic::{Request, Response, Status as GrpcStatus};

use crate::convert::{
    changed_since, enum_value, from_timestamp, mask_paths, opt_timestamp, timestamp,
};
use crate::sync::{SyncStream, sync_stream};
use crate::{caller, into_status, service_caller};

/// `focusforge.tasks.v1.TaskService` over the tasks domain.
#[derive(Clone)]
pub struct TaskApi(pub Tasks);

type Reply<T> = Result<Response<T>, GrpcStatus>;

fn priority(v: &mut Violations, field: &str, raw: i32) -> Option<Priority> {
    match enum_value::<pb::TaskPriority>(v, field, raw)? {
        pb::TaskPriority::Unspecified => None,
        pb::TaskPriority::Low => Some(Priority::Low),
        pb::TaskPriority::Medium => Some(Priority::Medium),
        pb::TaskPriority::High => Some(Priority::High),
        pb::TaskPriority::Urgent => Some(Priority::Urgent),
    }
}

fn status(v: &mut Violations, field: &str, raw: i32) -> Option<Status> {
    match enum_value::<pb::TaskStatus>(v, field, raw)? {
        pb::TaskStatus::Unspecified => {
            v.add(field, "must be specified");
            None
        }
        pb::TaskStatus::Pending => Some(Status::Pending),
        pb::TaskStatus::InProgress => Some(Status::InProgress),
        pb::TaskStatus::Completed => Some(Status::Completed),
    }
}

fn status_pb(status: Status) -> pb::TaskStatus {
    match status {
        Status::Pending => pb::TaskStatus::Pending,
        Status::InProgress => pb::TaskStatus::InProgress,
        Status::Completed => pb::TaskStatus::Completed,
    }
}

/// The contract's name of a status: `TASK_STATUS_COMPLETED`.
pub(crate) fn status_name(status: Status) -> &'static str {
    status_pb(status).as_str_name()
}

fn blocks(blocks: Vec<pb::WorkBlock>) -> Vec<WorkBlock> {
    blocks
        .into_iter()
        .map(|b| WorkBlock {
            title: b.title,
            minutes: b.minutes,
            order: b.order,
            done: b.done,
            id: b.id,
        })
        .collect()
}

pub(crate) fn to_pb(t: Task) -> pb::Task {
    pb::Task {
        id: t.id,
        user_id: t.user_id.to_string(),
        title: t.title,
        description: t.description,
        status: status_pb(t.status) as i32,
        priority: match t.priority {
            Priority::Low => pb::TaskPriority::Low,
            Priority::Medium => pb::TaskPriority::Medium,
            Priority::High => pb::TaskPriority::High,
            Priority::Urgent => pb::TaskPriority::Urgent,
        } as i32,
        estimated_minutes: t.estimated_minutes,
        due_time: opt_timestamp(t.due_at),
        tags: t.tags,
        blocks: t
            .blocks
            .into_iter()
            .map(|b| pb::WorkBlock {
                title: b.title,
                minutes: b.minutes,
                order: b.order,
                done: b.done,
                id: b.id,
            })
            .collect(),
        completion_proof: t.completion_proof,
        create_time: Some(timestamp(t.created_at)),
        update_time: Some(timestamp(t.updated_at)),
        start_time: opt_timestamp(t.started_at),
        complete_time: opt_timestamp(t.completed_at),
        version: t.version,
        estimated_pomodoros: t.estimated_pomodoros,
        completed_pomodoros: t.completed_pomodoros,
        focus_minutes: t.focus_minutes,
        earliest_start_time: opt_timestamp(t.earliest_start_at),
        min_chunk_minutes: t.min_chunk_minutes,
    }
}

fn new_task(req: pb::CreateTaskRequest) -> Result<NewTask, Error> {
    let mut v = Violations::new();
    let priority = priority(&mut v, "priority", req.priority);
    let due_at = from_timestamp(&mut v, "due_time", req.due_time);
    let earliest_start_at = from_timestamp(&mut v, "earliest_start_time", req.earliest_start_time);
    let new = NewTask {
        title: req.title,
        description: req.description,
        priority,
        estimated_minutes: req.estimated_minutes,
        due_at,
        tags: req.tags,
        blocks: blocks(req.blocks),
        estimated_pomodoros: req.estimated_pomodoros,
        earliest_start_at,
        min_chunk_minutes: req.min_chunk_minutes,
        request_id: (!req.request_id.is_empty()).then_some(req.request_id),
    };
    if !v.is_empty() {
        // Report the domain's violations with ours, not one round trip later.
        new.check(&mut v);
    }
    v.finish()?;
    Ok(new)
}

const UPDATABLE: &[&str] = &[
    "title",
    "description",
    "priority",
    "estimated_minutes",
    "due_time",
    "tags",
    "blocks",
    "estimated_pomodoros",
    "earliest_start_time",
    "min_chunk_minutes",
];

fn patch(req: pb::UpdateTaskRequest) -> Result<(String, TaskPatch, Option<i64>), Error> {
    let mut v = Violations::new();
    let paths = mask_paths(&mut v, &req.update_mask, UPDATABLE);
    let task = req.task.unwrap_or_default();
    v.check(!task.id.is_empty(), "task.id", "must not be empty");
    v.range("expected_version", req.expected_version, 0, i64::MAX);
    let mut p = TaskPatch::default();
    for path in paths {
        match path {
            "title" => p.title = Some(task.title.clone()),
            "description" => p.description = Some(task.description.clone()),
            "priority" => match priority(&mut v, "task.priority", task.priority) {
                Some(pr) => p.priority = Some(pr),
                None => v.add("task.priority", "must be specified"),
            },
            "estimated_minutes" => p.estimated_minutes = Some(task.estimated_minutes),
            "due_time" => p.due_at = Some(from_timestamp(&mut v, "task.due_time", task.due_time)),
            "tags" => p.tags = Some(task.tags.clone()),
            "blocks" => p.blocks = Some(blocks(task.blocks.clone())),
            "estimated_pomodoros" => p.estimated_pomodoros = Some(task.estimated_pomodoros),
            "earliest_start_time" => {
                p.earliest_start_at = Some(from_timestamp(
                    &mut v,
                    "task.earliest_start_time",
                    task.earliest_start_time,
                ));
            }
            "min_chunk_minutes" => p.min_chunk_minutes = Some(task.min_chunk_minutes),
            _ => {}
        }
    }
    if !v.is_empty() {
        p.check(&mut v);
    }
    v.finish()?;
    let expected = (req.expected_version != 0).then_some(req.expected_version);
    Ok((task.id, p, expected))
}

fn filter(req: &pb::ListTasksRequest) -> Result<TaskFilter, Error> {
    let mut v = Violations::new();
    let statuses = req
        .statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| status(&mut v, &format!("statuses[{i}]"), *s))
        .collect();
    let f = TaskFilter {
        statuses,
        priority: priority(&mut v, "priority", req.priority),
        tag: (!req.tag.is_empty()).then(|| req.tag.clone()),
        due_after: from_timestamp(&mut v, "due_after", req.due_after),
        due_before: from_timestamp(&mut v, "due_before", req.due_before),
    };
    v.finish()?;
    Ok(f)
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn create_task(
        &self,
        req: Request<pb::CreateTaskRequest>,
    ) -> Reply<pb::CreateTaskResponse> {
        let user = caller(&req)?;
        let new = new_task(req.into_inner()).map_err(into_status)?;
        let task = self.0.create(&user, new).await.map_err(into_status)?;
        Ok(Response::new(pb::CreateTaskResponse {
            task: Some(to_pb(task)),
        }))
    }

    async fn get_task(&self, req: Request<pb::GetTaskRequest>) -> Reply<pb::GetTaskResponse> {
        let user = caller(&req)?;
        let task = self
            .0
            .get(&user, &req.get_ref().id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::GetTaskResponse {
            task: Some(to_pb(task)),
        }))
    }

    async fn list_tasks(&self, req: Request<pb::ListTasksRequest>) -> Reply<pb::ListTasksResponse> {
        let user = caller(&req)?;
        let req = req.into_inner();
        let filter = filter(&req).map_err(into_status)?;
        let page = self
            .0
            .list(&user, filter, req.page_size, &req.page_token)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ListTasksResponse {
            tasks: page.tasks.into_iter().map(to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type SyncTasksStream = SyncStream<pb::SyncTasksResponse>;

    async fn sync_tasks(&self, req: Request<pb::SyncTasksRequest>) -> Reply<Self::SyncTasksStream> {
        let user = caller(&req)?;
        let since = changed_since(req.into_inner().changed_since).map_err(into_status)?;
        let batches = futures::StreamExt::map(self.0.changes(&user, since), |batch| {
            batch.map(|tasks| tasks.into_iter().map(to_pb).collect())
        });
        Ok(Response::new(sync_stream("tasks", batches, |tasks| {
            pb::SyncTasksResponse { tasks }
        })))
    }

    async fn update_task(
        &self,
        req: Request<pb::UpdateTaskRequest>,
    ) -> Reply<pb::UpdateTaskResponse> {
        let user = caller(&req)?;
        let (id, p, expected) = patch(req.into_inner()).map_err(into_status)?;
        let task = self
            .0
            .update(&user, &id, p, expected)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::UpdateTaskResponse {
            task: Some(to_pb(task)),
        }))
    }

    async fn start_task(&self, req: Request<pb::StartTaskRequest>) -> Reply<pb::StartTaskResponse> {
        let user = caller(&req)?;
        let task = self
            .0
            .start(&user, &req.get_ref().id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::StartTaskResponse {
            task: Some(to_pb(task)),
        }))
    }

    async fn complete_task(
        &self,
        req: Request<pb::CompleteTaskRequest>,
    ) -> Reply<pb::CompleteTaskResponse> {
        let user = caller(&req)?;
        let req = req.into_inner();
        let task = self
            .0
            .complete(&user, &req.id, req.proof_text)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::CompleteTaskResponse {
            task: Some(to_pb(task)),
        }))
    }

    async fn delete_task(
        &self,
        req: Request<pb::DeleteTaskRequest>,
    ) -> Reply<pb::DeleteTaskResponse> {
        let user = caller(&req)?;
        self.0
            .delete(&user, &req.get_ref().id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::DeleteTaskResponse {}))
    }

    async fn record_focus_session(
        &self,
        req: Request<pb::RecordFocusSessionRequest>,
    ) -> Reply<pb::RecordFocusSessionResponse> {
        let caller = service_caller(&req, "RecordFocusSession")?;
        let r = req.into_inner();
        let task = self
            .0
            .record_focus(&caller.user, &r.task_id, &r.session_id, r.minutes)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::RecordFocusSessionResponse {
            task: Some(to_pb(task)),
        }))
    }
}
