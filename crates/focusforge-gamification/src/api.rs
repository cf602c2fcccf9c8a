//! The gRPC edge of the Gamification service; the facts it checks with the
//! Users, Task and Focus services; the hook that awards completed tasks; the
//! award job; and the planner's gamification executor.
use async_trait::async_trait;
use focusforge_core::{Error, UserId};
use focusforge_grpc::convert::{changed_since, mask_paths, timestamp};
use focusforge_grpc::sync::{SyncStream, sync_stream};
use focusforge_grpc::{caller, from_status, identity, into_status, service_caller};
use focusforge_jobs::{Handler, JobContext, JobError, JobSpec, Jobs};
use focusforge_kit::{Caller, Mesh};
use focusforge_mcp::tools::ts;
use focusforge_planner::{ActionSpec, Executor};
use focusforge_proto::focus::v1 as focus_pb;
use focusforge_proto::focus::v1::focus_service_client::FocusServiceClient;
use focusforge_proto::gamification::v1 as pb;
use focusforge_proto::gamification::v1::gamification_service_client::GamificationServiceClient;
use focusforge_proto::gamification::v1::gamification_service_server::GamificationService as GameRpc;
use focusforge_proto::tasks::v1 as tasks_pb;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_tasks::{CompletionHook, Task};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::domain::{
    AchievementView, CompletedSession, CompletedTask, Entry, Game, Item, ItemKind, Priority,
    Progress, Reason, UserDays,
};
use crate::streak::Calendar;

/// The job kind that carries an award the direct call could not make.
pub const AWARD_JOB: &str = "gamification.award";

pub const SERVICE: &str = pb::gamification_service_server::SERVICE_NAME;

/// `focusforge.gamification.v1.GamificationService` over [`Game`].
#[derive(Clone)]
pub struct GameApi {
    pub game: Game,
    pub mesh: Mesh,
    pub events: focusforge_kit::Events,
}

impl GameApi {
    /// Puts an award's entries in the event log: points for each, and an
    /// unlock for each achievement among them.
    async fn publish(&self, user: &UserId, entries: &[Entry]) {
        use focusforge_proto::events::v1 as ev;
        for e in entries {
            focusforge_grpc::events::publish(
                &self.events,
                user,
                ev::EventType::PointsAwarded,
                ev::event::Payload::Points(ev::PointsEvent {
                    points: e.points,
                    reason: reason_pb(e.reason).as_str_name().to_owned(),
                    balance: e.balance,
                }),
            )
            .await;
            if e.reason == Reason::Achievement {
                focusforge_grpc::events::publish(
                    &self.events,
                    user,
                    ev::EventType::AchievementUnlocked,
                    ev::event::Payload::Achievement(ev::AchievementEvent {
                        achievement_id: e.subject.clone(),
                        name: self
                            .game
                            .settings()
                            .achievements
                            .iter()
                            .find(|r| r.id == e.subject)
                            .map_or_else(|| e.description.clone(), |r| r.name.clone()),
                    }),
                )
                .await;
            }
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reason_pb(r: Reason) -> pb::Reason {
    match r {
        Reason::TaskCompleted => pb::Reason::TaskCompleted,
        Reason::FocusSessionCompleted => pb::Reason::FocusSessionCompleted,
        Reason::DailyGoalReached => pb::Reason::DailyGoalReached,
        Reason::StreakMilestone => pb::Reason::StreakMilestone,
        Reason::Achievement => pb::Reason::Achievement,
        Reason::Redemption => pb::Reason::Redemption,
        Reason::Adjustment => pb::Reason::Adjustment,
    }
}

fn kind_pb(k: ItemKind) -> pb::ItemKind {
    match k {
        ItemKind::Store => pb::ItemKind::Store,
        ItemKind::Reward => pb::ItemKind::Reward,
        ItemKind::StreakFreeze => pb::ItemKind::StreakFreeze,
    }
}

fn entry_pb(e: Entry) -> pb::LedgerEntry {
    pb::LedgerEntry {
        sequence: e.seq,
        reason: reason_pb(e.reason) as i32,
        points: e.points,
        balance: e.balance,
        create_time: Some(timestamp(e.time())),
        idempotency_key: e.key,
        description: e.description,
        subject_id: e.subject,
    }
}

fn inventory_pb(e: Entry) -> pb::InventoryItem {
    let at = Some(timestamp(e.time()));
    let item = e.item.unwrap_or_else(|| crate::domain::ItemSnapshot {
        id: e.subject.clone(),
        kind: ItemKind::Store,
        name: e.description.clone(),
        cost: -e.points,
    });
    pb::InventoryItem {
        sequence: e.seq,
        item_id: item.id,
        kind: kind_pb(item.kind) as i32,
        name: item.name,
        cost: item.cost,
        redeem_time: at,
    }
}

fn item_pb(i: Item) -> pb::StoreItem {
    pb::StoreItem {
        id: i.id,
        kind: kind_pb(i.kind) as i32,
        name: i.name,
        description: i.description,
        cost: i.cost,
        create_time: i.created_at.map(timestamp),
        update_time: i.updated_at.map(timestamp),
        version: i.version,
    }
}

fn achievement_pb(a: AchievementView) -> pb::Achievement {
    pb::Achievement {
        id: a.rule.id,
        name: a.rule.name,
        description: a.rule.description,
        points: a.rule.points,
        unlock_time: a.unlocked_at.map(timestamp),
        progress: a.progress,
        threshold: a.rule.threshold,
    }
}

pub fn progress_pb(p: Progress) -> pb::Progress {
    let mut frozen: Vec<String> = p.streak.frozen.iter().map(|d| d.to_string()).collect();
    frozen.reverse();
    pb::Progress {
        balance: p.balance,
        lifetime_points: p.lifetime,
        level: p.level,
        level_start_points: p.level_start,
        next_level_points: p.next_level,
        streak: Some(pb::Streak {
            current_days: p.streak.current as i32,
            longest_days: p.streak.longest as i32,
            last_active_day: p
                .streak
                .last_active
                .map(|d| d.to_string())
                .unwrap_or_default(),
            active_today: p.active_today,
            freezes_available: p.streak.freezes as i32,
            frozen_days: frozen,
        }),
        achievements: p.achievements.into_iter().map(achievement_pb).collect(),
        tasks_completed: p.tasks_completed,
        focus_sessions_completed: p.focus_sessions,
        focus_minutes: p.focus_minutes,
        ledger_entries: p.ledger_entries,
    }
}

/// An error of another service, as this one reports it.
fn upstream(service: &str, s: Status) -> Status {
    match s.code() {
        tonic::Code::NotFound | tonic::Code::InvalidArgument => s,
        tonic::Code::Unimplemented => Status::failed_precondition(format!(
            "the {service} service is not deployed here: {}",
            s.message()
        )),
        _ => Status::unavailable(format!("{service} service: {}", s.message())),
    }
}

/// The user's days, from their profile (UTC and no goal when the Users
/// service cannot be reached).
pub async fn user_days(mesh: &Mesh, caller: &Caller) -> UserDays {
    let Some(p) = focusforge_grpc::preferences_of(mesh, caller).await else {
        return UserDays::default();
    };
    UserDays {
        calendar: Calendar {
            tz: p.timezone.parse().unwrap_or(chrono_tz::UTC),
            day_start_hour: p.day_start_hour.clamp(0, 23) as u32,
            rest_days: p
                .rest_days
                .iter()
                .filter(|d| (1..=7).contains(*d))
                .map(|d| *d as u8)
                .collect(),
        },
        daily_goal_minutes: i64::from(p.daily_goal_minutes.max(0)),
    }
}

/// The task, if the Task service says it is the user's and completed.
async fn completed_task(mesh: &Mesh, caller: &Caller, id: &str) -> Result<CompletedTask, Status> {
    let conn = mesh.conn(tasks_pb::task_service_server::SERVICE_NAME)?;
    let task = TaskServiceClient::new(conn)
        .get_task(caller.request(tasks_pb::GetTaskRequest { id: id.to_owned() }))
        .await
        .map_err(|s| upstream("task", s))?
        .into_inner()
        .task
        .ok_or_else(|| Status::internal("the task service answered without the task"))?;
    let completed_at = match (
        tasks_pb::TaskStatus::try_from(task.status),
        ts(task.complete_time),
    ) {
        (Ok(tasks_pb::TaskStatus::Completed), Some(at)) => at,
        _ => {
            return Err(Status::failed_precondition(format!(
                "task {id} is not completed"
            )));
        }
    };
    let priority = match tasks_pb::TaskPriority::try_from(task.priority) {
        Ok(tasks_pb::TaskPriority::Low) => Priority::Low,
        Ok(tasks_pb::TaskPriority::High) => Priority::High,
        Ok(tasks_pb::TaskPriority::Urgent) => Priority::Urgent,
        Ok(tasks_pb::TaskPriority::Medium | tasks_pb::TaskPriority::Unspecified) | Err(_) => {
            Priority::Medium
        }
    };
    Ok(CompletedTask {
        id: task.id,
        title: task.title,
        priority,
        estimated_minutes: task.estimated_minutes,
        due_at: ts(task.due_time),
        completed_at,
    })
}

/// The session, if the Focus service says it is the user's completed focus
/// session.
async fn completed_session(
    mesh: &Mesh,
    caller: &Caller,
    id: &str,
) -> Result<CompletedSession, Status> {
    let conn = mesh.conn(focus_pb::focus_service_server::SERVICE_NAME)?;
    let s = FocusServiceClient::new(conn)
        .get_session(caller.request(focus_pb::GetSessionRequest { id: id.to_owned() }))
        .await
        .map_err(|s| upstream("focus", s))?
        .into_inner()
        .session
        .ok_or_else(|| Status::internal("the focus service answered without the session"))?;
    let completed =
        focus_pb::SessionState::try_from(s.state) == Ok(focus_pb::SessionState::Completed);
    let focus = focus_pb::SessionKind::try_from(s.kind) == Ok(focus_pb::SessionKind::Focus);
    let Some(ended_at) = ts(s.end_time).filter(|_| completed && focus) else {
        return Err(Status::failed_precondition(format!(
            "session {id} is not a completed focus session"
        )));
    };
    Ok(CompletedSession {
        id: s.id,
        minutes: s.focused_seconds / 60,
        ended_at,
    })
}

#[tonic::async_trait]
impl GameRpc for GameApi {
    async fn get_progress(
        &self,
        req: Request<pb::GetProgressRequest>,
    ) -> Reply<pb::GetProgressResponse> {
        let user = caller(&req)?;
        let days = user_days(&self.mesh, &identity(&req)?).await;
        let p = self
            .game
            .progress(&user, &days)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::GetProgressResponse {
            progress: Some(progress_pb(p)),
        }))
    }

    async fn list_ledger_entries(
        &self,
        req: Request<pb::ListLedgerEntriesRequest>,
    ) -> Reply<pb::ListLedgerEntriesResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let page = self
            .game
            .ledger(&user, r.page_size, &r.page_token, false)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ListLedgerEntriesResponse {
            entries: page.entries.into_iter().map(entry_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type SyncLedgerEntriesStream = SyncStream<pb::SyncLedgerEntriesResponse>;

    async fn sync_ledger_entries(
        &self,
        req: Request<pb::SyncLedgerEntriesRequest>,
    ) -> Reply<Self::SyncLedgerEntriesStream> {
        let user = caller(&req)?;
        let since = changed_since(req.into_inner().changed_since).map_err(into_status)?;
        let changes = self
            .game
            .ledger_changes(&user, since)
            .await
            .map_err(into_status)?;
        let batches = futures::StreamExt::map(changes, |batch| {
            batch.map(|entries| entries.into_iter().map(entry_pb).collect())
        });
        Ok(Response::new(sync_stream(
            "ledger entries",
            batches,
            |entries| pb::SyncLedgerEntriesResponse { entries },
        )))
    }

    async fn award(&self, req: Request<pb::AwardRequest>) -> Reply<pb::AwardResponse> {
        let who = service_caller(&req, "Award")?;
        let user = who.user.clone();
        let days = user_days(&self.mesh, &who).await;
        let awarded = match req.into_inner().cause {
            None => return Err(Status::invalid_argument("cause: is required")),
            Some(pb::award_request::Cause::TaskId(id)) => {
                let task = completed_task(&self.mesh, &who, &id).await?;
                self.game.task_completed(&user, &task, &days).await
            }
            Some(pb::award_request::Cause::FocusSessionId(id)) => {
                let session = completed_session(&self.mesh, &who, &id).await?;
                self.game.session_completed(&user, &session, &days).await
            }
            Some(pb::award_request::Cause::Adjustment(a)) => {
                self.game
                    .adjust(&user, a.points, &a.note, &a.key, &days)
                    .await
            }
        }
        .map_err(into_status)?;
        if !awarded.already {
            self.publish(&user, &awarded.entries).await;
        }
        Ok(Response::new(pb::AwardResponse {
            entries: awarded.entries.into_iter().map(entry_pb).collect(),
            already_awarded: awarded.already,
            progress: Some(progress_pb(awarded.progress)),
        }))
    }

    async fn list_store_items(
        &self,
        req: Request<pb::ListStoreItemsRequest>,
    ) -> Reply<pb::ListStoreItemsResponse> {
        let user = caller(&req)?;
        let items = self.game.items(&user).await.map_err(into_status)?;
        Ok(Response::new(pb::ListStoreItemsResponse {
            items: items.into_iter().map(item_pb).collect(),
        }))
    }

    async fn create_reward(
        &self,
        req: Request<pb::CreateRewardRequest>,
    ) -> Reply<pb::CreateRewardResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let reward = self
            .game
            .create_reward(&user, r.name, r.description, r.cost)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::CreateRewardResponse {
            reward: Some(item_pb(reward)),
        }))
    }

    async fn update_reward(
        &self,
        req: Request<pb::UpdateRewardRequest>,
    ) -> Reply<pb::UpdateRewardResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let mut v = focusforge_core::Violations::new();
        let paths = mask_paths(&mut v, &r.update_mask, &["name", "description", "cost"]);
        v.finish().map_err(into_status)?;
        let reward = r.reward.unwrap_or_default();
        let has = |p: &str| paths.contains(&p);
        let updated = self
            .game
            .update_reward(
                &user,
                &reward.id,
                has("name").then(|| reward.name.clone()),
                has("description").then(|| reward.description.clone()),
                has("cost").then_some(reward.cost),
            )
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::UpdateRewardResponse {
            reward: Some(item_pb(updated)),
        }))
    }

    async fn delete_reward(
        &self,
        req: Request<pb::DeleteRewardRequest>,
    ) -> Reply<pb::DeleteRewardResponse> {
        let user = caller(&req)?;
        self.game
            .delete_reward(&user, &req.into_inner().id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::DeleteRewardResponse {}))
    }

    async fn redeem(&self, req: Request<pb::RedeemRequest>) -> Reply<pb::RedeemResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let done = self
            .game
            .redeem(&user, &r.item_id, &r.request_id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::RedeemResponse {
            item: Some(inventory_pb(done.entry)),
            balance: done.balance,
        }))
    }

    async fn list_inventory(
        &self,
        req: Request<pb::ListInventoryRequest>,
    ) -> Reply<pb::ListInventoryResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let page = self
            .game
            .ledger(&user, r.page_size, &r.page_token, true)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ListInventoryResponse {
            items: page.entries.into_iter().map(inventory_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}

/// What an award is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    Task(String),
    FocusSession(String),
}

impl Cause {
    fn request(&self) -> pb::AwardRequest {
        let cause = match self {
            Cause::Task(id) => pb::award_request::Cause::TaskId(id.clone()),
            Cause::FocusSession(id) => pb::award_request::Cause::FocusSessionId(id.clone()),
        };
        pb::AwardRequest { cause: Some(cause) }
    }

    fn payload(&self) -> Value {
        match self {
            Cause::Task(id) => json!({ "task_id": id }),
            Cause::FocusSession(id) => json!({ "focus_session_id": id }),
        }
    }

    fn key(&self) -> String {
        match self {
            Cause::Task(id) => format!("award:task-completed:{id}"),
            Cause::FocusSession(id) => format!("award:focus-completed:{id}"),
        }
    }

    fn from_payload(p: &Value) -> Option<Self> {
        let field = |f: &str| p.get(f).and_then(Value::as_str).map(str::to_owned);
        field("task_id")
            .map(Cause::Task)
            .or_else(|| field("focus_session_id").map(Cause::FocusSession))
    }
}

/// Asks the Gamification service for the cause's points, as `component`
/// acting for `user`.
pub async fn award(
    mesh: &Mesh,
    user: &UserId,
    component: &str,
    cause: &Cause,
) -> Result<(), Status> {
    let (conn, caller) = mesh.for_user(SERVICE, user, component)?;
    GamificationServiceClient::new(conn)
        .award(caller.request(cause.request()))
        .await?;
    Ok(())
}

/// Awards now, or leaves the award to a background job when the service
/// cannot be reached: the job retries with backoff, and the cause's key
/// makes a second delivery harmless. Nothing happens where no Gamification
/// service is deployed.
pub async fn award_or_later(
    mesh: &Mesh,
    jobs: &Jobs,
    user: &UserId,
    component: &str,
    cause: Cause,
) {
    if !mesh.reaches(SERVICE) {
        return;
    }
    let Err(status) = award(mesh, user, component, &cause).await else {
        return;
    };
    if matches!(
        status.code(),
        tonic::Code::FailedPrecondition | tonic::Code::NotFound | tonic::Code::InvalidArgument
    ) {
        tracing::warn!(error = %status.message(), "no points for this cause");
        return;
    }
    let mut spec = JobSpec::new(AWARD_JOB, user.clone(), cause.payload());
    spec.idempotency_key = Some(cause.key());
    match jobs.enqueue(spec).await {
        Ok(_) => tracing::warn!(error = %status.message(), "award left to a background job"),
        Err(e) => {
            tracing::error!(error = %e, award = %status.message(), "award lost: cannot enqueue its job")
        }
    }
}

/// Tells the Gamification service of completed tasks.
pub struct TaskCompletions {
    pub mesh: Mesh,
    pub jobs: Jobs,
}

#[async_trait]
impl CompletionHook for TaskCompletions {
    async fn completed(&self, user: &UserId, task: &Task) {
        award_or_later(
            &self.mesh,
            &self.jobs,
            user,
            "tasks",
            Cause::Task(task.id.clone()),
        )
        .await;
    }
}

/// Runs an award the direct call could not make.
pub struct AwardJob {
    pub mesh: Mesh,
}

#[async_trait]
impl Handler for AwardJob {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let Some(cause) = Cause::from_payload(&ctx.job.spec.payload) else {
            return Err(JobError::new(
                "invalid_argument",
                "payload needs task_id or focus_session_id",
            ));
        };
        award(&self.mesh, &ctx.job.spec.user, "jobs", &cause)
            .await
            .map_err(|s| {
                let kind = match s.code() {
                    tonic::Code::NotFound => "not_found",
                    tonic::Code::InvalidArgument => "invalid_argument",
                    tonic::Code::FailedPrecondition => "failed_precondition",
                    _ => "unavailable",
                };
                JobError::new(kind, s.message())
            })
    }
}

/// Gamification actions: `params.op` is `redeem` (`item_id`; the action's
/// idempotency key is the request id, so a replayed action buys once) or
/// `progress`. Runs through the service, acting for the plan's user.
pub struct GameExecutor {
    pub mesh: Mesh,
}

#[async_trait]
impl Executor for GameExecutor {
    async fn execute(
        &self,
        user: &UserId,
        action: &ActionSpec,
        params: Value,
    ) -> Result<Value, Error> {
        let (conn, caller) = self
            .mesh
            .for_user(SERVICE, user, "planner")
            .map_err(|s| from_status(&s))?;
        let mut client = GamificationServiceClient::new(conn);
        match params
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("progress")
        {
            "redeem" => {
                let item_id = params
                    .get("item_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::invalid("params.item_id", "is required"))?;
                let r = client
                    .redeem(
                        caller.request(pb::RedeemRequest {
                            item_id: item_id.to_owned(),
                            request_id: action
                                .idempotency_key
                                .clone()
                                .map(|k| format!("plan:{k}"))
                                .unwrap_or_default(),
                        }),
                    )
                    .await
                    .map_err(|s| from_status(&s))?
                    .into_inner();
                Ok(json!({
                    "item_id": item_id,
                    "balance": r.balance,
                    "sequence": r.item.map(|i| i.sequence).unwrap_or_default(),
                }))
            }
            "progress" => {
                let p = client
                    .get_progress(caller.request(pb::GetProgressRequest {}))
                    .await
                    .map_err(|s| from_status(&s))?
                    .into_inner()
                    .progress
                    .unwrap_or_default();
                Ok(json!({
                    "balance": p.balance,
                    "level": p.level,
                    "streak_days": p.streak.map(|s| s.current_days).unwrap_or_default(),
                }))
            }
            _ => Err(Error::invalid("params.op", "must be redeem or progress")),
        }
    }
}
