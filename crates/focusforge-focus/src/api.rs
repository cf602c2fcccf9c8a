//! The gRPC edge of the Focus service; the profile and tasks it reads
//! through the mesh; the timer that completes sessions at their end; and
//! what a completed focus session sets off (its points, its minutes on the
//! task), retried by a job when a call fails.

use focusforge_proto::events::v1 as ev;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration};
use focusforge_core::{Error, UserId, Violations};
use focusforge_gamification::{Cause, award_or_later};
use focusforge_grpc::convert::{changed_since, enum_value, from_timestamp, timestamp};
use focusforge_grpc::sync::{SyncStream, sync_stream};
use focusforge_grpc::{caller, identity, into_status};
use focusforge_jobs::{Handler, JobContext, JobError, JobSpec, Jobs};
use focusforge_kit::{Caller, Mesh};
use focusforge_proto::focus::v1 as pb;
use focusforge_proto::focus::v1::focus_service_server::FocusService as FocusRpc;
use focusforge_proto::tasks::v1 as tasks_pb;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::domain::{
    Command, Focus, InterruptionKind, Kind, Next, Outcome, Prefs, Session, SessionFilter, State,
    Stats,
};
use focusforge_gamification::streak::Calendar;

/// Completes sessions at their planned end and ends pauses at their budget.
pub const TIMER_JOB: &str = "focus.timer";
/// Carries a completed session's points and task minutes when the direct
/// calls failed.
pub const COMPLETED_JOB: &str = "focus.completed";

pub const SERVICE: &str = pb::focus_service_server::SERVICE_NAME;

/// `focusforge.focus.v1.FocusService` over [`Focus`].
#[derive(Clone)]
pub struct FocusApi {
    pub focus: Focus,
    pub effects: Effects,
}

type Reply<T> = Result<Response<T>, Status>;

fn kind_pb(k: Kind) -> pb::SessionKind {
    match k {
        Kind::Focus => pb::SessionKind::Focus,
        Kind::ShortBreak => pb::SessionKind::ShortBreak,
        Kind::LongBreak => pb::SessionKind::LongBreak,
    }
}

fn state_pb(s: State) -> pb::SessionState {
    match s {
        State::Running => pb::SessionState::Running,
        State::Paused => pb::SessionState::Paused,
        State::Completed => pb::SessionState::Completed,
        State::Abandoned => pb::SessionState::Abandoned,
    }
}

fn interruption_kind_pb(k: InterruptionKind) -> pb::InterruptionKind {
    match k {
        InterruptionKind::Internal => pb::InterruptionKind::Internal,
        InterruptionKind::External => pb::InterruptionKind::External,
    }
}

pub fn session_pb(s: Session) -> pb::Session {
    pb::Session {
        planned_end_time: s.planned_end().map(timestamp),
        end_time: s.ended_at().map(timestamp),
        pause_time: s.paused_at().map(timestamp),
        paused_seconds: s.paused_seconds(),
        pause_budget_left_seconds: s.pause_budget_left_seconds(),
        focused_seconds: s.focused_seconds(),
        start_time: Some(timestamp(s.started_at())),
        update_time: Some(timestamp(s.updated_at)),
        id: s.id,
        kind: kind_pb(s.body.kind) as i32,
        state: state_pb(s.body.state) as i32,
        task_id: s.body.task_id.unwrap_or_default(),
        planned_minutes: s.body.planned_minutes,
        interruptions: s
            .body
            .interruptions
            .into_iter()
            .map(|i| pb::Interruption {
                kind: interruption_kind_pb(i.kind) as i32,
                note: i.note,
                time: DateTime::from_timestamp_millis(i.at).map(timestamp),
            })
            .collect(),
        completed_by_timer: s.body.by_timer,
        version: s.version,
    }
}

fn next_pb(n: Next) -> pb::NextSession {
    pb::NextSession {
        kind: kind_pb(n.kind) as i32,
        planned_minutes: n.planned_minutes,
        focus_sessions_today: n.focus_sessions_today,
    }
}

/// The user's focus preferences (the defaults when the Users service
/// cannot be reached).
pub async fn prefs(mesh: &Mesh, caller: &Caller) -> Prefs {
    let Some(p) = focusforge_grpc::preferences_of(mesh, caller).await else {
        return Prefs::default();
    };
    Prefs {
        focus_minutes: p.focus_minutes,
        short_break_minutes: p.short_break_minutes,
        long_break_minutes: p.long_break_minutes,
        long_break_every: p.long_break_every,
        calendar: Calendar {
            tz: p.timezone.parse().unwrap_or(chrono_tz::UTC),
            day_start_hour: p.day_start_hour.clamp(0, 23) as u32,
            rest_days: Vec::new(),
        },
    }
}

/// What changes of sessions set off: timers for their next moment, and for
/// completed focus sessions their points and their minutes on the task.
#[derive(Clone)]
pub struct Effects {
    pub mesh: Mesh,
    pub jobs: Jobs,
    pub events: focusforge_kit::Events,
}

impl Effects {
    /// Puts a session's change in the event log.
    pub async fn publish(&self, user: &UserId, kind: ev::EventType, s: &Session) {
        let focused = s.focused_seconds();
        focusforge_grpc::events::publish(
            &self.events,
            user,
            kind,
            ev::event::Payload::Focus(ev::FocusEvent {
                session_id: s.id.clone(),
                task_id: s.body.task_id.clone().unwrap_or_default(),
                state: state_pb(s.body.state).as_str_name().to_owned(),
                elapsed_seconds: focused,
                remaining_seconds: (i64::from(s.body.planned_minutes) * 60 - focused).max(0),
            }),
        )
        .await;
    }

    /// Schedules the timer and, for a completed focus session, awards its
    /// points and records it on its task (through a job when a call fails).
    pub async fn after(&self, user: &UserId, o: &Outcome) {
        if o.resumed && !o.completed {
            self.publish(user, ev::EventType::FocusResumed, &o.session)
                .await;
        }
        if o.reschedule
            && let Some(due) = o.session.body.next_due()
        {
            let mut spec = JobSpec::new(
                TIMER_JOB,
                user.clone(),
                json!({ "session_id": o.session.id }),
            );
            spec.run_at = Some(due);
            spec.idempotency_key = Some(format!(
                "focus-timer:{}:{}",
                o.session.id, o.session.version
            ));
            if let Err(e) = self.jobs.enqueue(spec).await {
                // Reads settle the session all the same; only the effects
                // wait for the next read.
                tracing::warn!(error = %e, session = %o.session.id, "no timer for the session");
            }
        }
        if o.completed {
            self.publish(user, ev::EventType::FocusCompleted, &o.session)
                .await;
        }
        if o.completed && o.session.body.kind == Kind::Focus {
            award_or_later(
                &self.mesh,
                &self.jobs,
                user,
                "focus",
                Cause::FocusSession(o.session.id.clone()),
            )
            .await;
            if let Err(e) = self.record_on_task(user, &o.session).await {
                let mut spec = JobSpec::new(
                    COMPLETED_JOB,
                    user.clone(),
                    json!({ "session_id": o.session.id }),
                );
                spec.idempotency_key = Some(format!("focus-completed:{}", o.session.id));
                tracing::warn!(error = %e.message(), "task minutes left to a background job");
                if let Err(e) = self.jobs.enqueue(spec).await {
                    tracing::error!(error = %e, "task minutes lost: cannot enqueue their job");
                }
            }
        }
    }

    /// Adds the session's minutes to its task, once per session.
    async fn record_on_task(&self, user: &UserId, s: &Session) -> Result<(), Status> {
        let Some(task_id) = &s.body.task_id else {
            return Ok(());
        };
        let minutes = s.focused_minutes();
        if minutes < 1
            || !self
                .mesh
                .reaches(tasks_pb::task_service_server::SERVICE_NAME)
        {
            return Ok(());
        }
        let (conn, caller) =
            self.mesh
                .for_user(tasks_pb::task_service_server::SERVICE_NAME, user, "focus")?;
        let r = TaskServiceClient::new(conn)
            .record_focus_session(caller.request(tasks_pb::RecordFocusSessionRequest {
                task_id: task_id.clone(),
                session_id: s.id.clone(),
                minutes: minutes.min(240) as i32,
            }))
            .await;
        match r {
            Ok(_) => Ok(()),
            // The task was deleted since: nothing to record on.
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(s),
        }
    }
}

fn kind(v: &mut Violations, raw: i32) -> Kind {
    match enum_value::<pb::SessionKind>(v, "kind", raw) {
        None | Some(pb::SessionKind::Unspecified | pb::SessionKind::Focus) => Kind::Focus,
        Some(pb::SessionKind::ShortBreak) => Kind::ShortBreak,
        Some(pb::SessionKind::LongBreak) => Kind::LongBreak,
    }
}

impl FocusApi {
    async fn run(
        &self,
        user: &UserId,
        o: focusforge_core::Result<Outcome>,
    ) -> Result<Outcome, Status> {
        let o = o.map_err(into_status)?;
        self.effects.after(user, &o).await;
        Ok(o)
    }

    async fn command<T>(
        &self,
        req: &Request<T>,
        id: &str,
        command: Command,
        request_id: &str,
    ) -> Result<Outcome, Status> {
        let user = caller(req)?;
        let kind = match command {
            Command::Pause => Some(ev::EventType::FocusPaused),
            Command::Resume => Some(ev::EventType::FocusResumed),
            Command::Abandon => Some(ev::EventType::FocusAbandoned),
            // A completion is told by `Effects::after`, the timer's too.
            Command::Complete | Command::Interrupt(..) => None,
        };
        let o = self.focus.command(&user, id, command, request_id).await;
        let o = self.run(&user, o).await?;
        if let Some(kind) = kind
            && o.applied
        {
            self.effects.publish(&user, kind, &o.session).await;
        }
        Ok(o)
    }

    /// The task, if the caller has it (not checked where no Task service is
    /// reachable: `None`).
    async fn check_task(&self, who: &Caller, id: &str) -> Result<Option<tasks_pb::Task>, Status> {
        let name = tasks_pb::task_service_server::SERVICE_NAME;
        if !self.effects.mesh.reaches(name) {
            return Ok(None);
        }
        let conn = self.effects.mesh.conn(name)?;
        match TaskServiceClient::new(conn)
            .get_task(who.request(tasks_pb::GetTaskRequest { id: id.to_owned() }))
            .await
        {
            Ok(r) => Ok(r.into_inner().task),
            Err(s) if s.code() == tonic::Code::NotFound => {
                Err(Status::not_found(format!("task_id: task {id} not found")))
            }
            Err(s) if s.code() == tonic::Code::InvalidArgument => Err(Status::invalid_argument(
                format!("task_id: {}", s.message()),
            )),
            Err(s) => Err(Status::unavailable(format!(
                "task service: {}",
                s.message()
            ))),
        }
    }
}

impl FocusApi {
    /// A focus session began on `task`: a pending task is started, and the
    /// block the session works on (its first open one) is an event.
    async fn task_begun(&self, who: &Caller, task: &tasks_pb::Task) {
        if task.status == tasks_pb::TaskStatus::Pending as i32 {
            let start = who.request(tasks_pb::StartTaskRequest {
                id: task.id.clone(),
            });
            let started = match self
                .effects
                .mesh
                .conn(tasks_pb::task_service_server::SERVICE_NAME)
            {
                Ok(conn) => TaskServiceClient::new(conn)
                    .start_task(start)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = started {
                tracing::warn!(task = %task.id, error = %e.message(), "the task was not started with its session");
            }
        }
        if let Some(block) = task.blocks.iter().find(|b| !b.done) {
            focusforge_grpc::events::publish(
                &self.effects.events,
                &who.user,
                ev::EventType::BlockStarted,
                ev::event::Payload::Block(ev::BlockEvent {
                    task_id: task.id.clone(),
                    block_id: block.id.clone(),
                    title: block.title.clone(),
                }),
            )
            .await;
        }
    }
}

#[tonic::async_trait]
impl FocusRpc for FocusApi {
    async fn start_session(
        &self,
        req: Request<pb::StartSessionRequest>,
    ) -> Reply<pb::StartSessionResponse> {
        let user = caller(&req)?;
        let who = identity(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        let kind = kind(&mut v, r.kind);
        v.finish().map_err(into_status)?;
        let task_id = (!r.task_id.is_empty()).then(|| r.task_id.clone());
        let task = match &task_id {
            Some(t) => self.check_task(&who, t).await?,
            None => None,
        };
        // An open session past its end completes first, with its effects.
        if let Ok(Some(o)) = self.focus.current(&user).await {
            self.effects.after(&user, &o).await;
        }
        let p = prefs(&self.effects.mesh, &who).await;
        let o = self
            .focus
            .start(&user, kind, task_id, r.planned_minutes, &r.request_id, &p)
            .await;
        let o = self.run(&user, o).await?;
        if o.applied {
            self.effects
                .publish(&user, ev::EventType::FocusStarted, &o.session)
                .await;
            if let Some(task) = &task {
                self.task_begun(&who, task).await;
            }
        }
        Ok(Response::new(pb::StartSessionResponse {
            session: Some(session_pb(o.session)),
        }))
    }

    async fn pause_session(
        &self,
        req: Request<pb::PauseSessionRequest>,
    ) -> Reply<pb::PauseSessionResponse> {
        let (id, rid) = (req.get_ref().id.clone(), req.get_ref().request_id.clone());
        let o = self.command(&req, &id, Command::Pause, &rid).await?;
        Ok(Response::new(pb::PauseSessionResponse {
            session: Some(session_pb(o.session)),
        }))
    }

    async fn resume_session(
        &self,
        req: Request<pb::ResumeSessionRequest>,
    ) -> Reply<pb::ResumeSessionResponse> {
        let (id, rid) = (req.get_ref().id.clone(), req.get_ref().request_id.clone());
        let o = self.command(&req, &id, Command::Resume, &rid).await?;
        Ok(Response::new(pb::ResumeSessionResponse {
            session: Some(session_pb(o.session)),
        }))
    }

    async fn complete_session(
        &self,
        req: Request<pb::CompleteSessionRequest>,
    ) -> Reply<pb::CompleteSessionResponse> {
        let who = identity(&req)?;
        let (id, rid) = (req.get_ref().id.clone(), req.get_ref().request_id.clone());
        let o = self.command(&req, &id, Command::Complete, &rid).await?;
        let p = prefs(&self.effects.mesh, &who).await;
        let next = self
            .focus
            .next(&who.user, Some(o.session.body.kind), &p)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::CompleteSessionResponse {
            session: Some(session_pb(o.session)),
            next: Some(next_pb(next)),
        }))
    }

    async fn abandon_session(
        &self,
        req: Request<pb::AbandonSessionRequest>,
    ) -> Reply<pb::AbandonSessionResponse> {
        let (id, rid) = (req.get_ref().id.clone(), req.get_ref().request_id.clone());
        let o = self.command(&req, &id, Command::Abandon, &rid).await?;
        Ok(Response::new(pb::AbandonSessionResponse {
            session: Some(session_pb(o.session)),
        }))
    }

    async fn record_interruption(
        &self,
        req: Request<pb::RecordInterruptionRequest>,
    ) -> Reply<pb::RecordInterruptionResponse> {
        let r = req.get_ref().clone();
        let mut v = Violations::new();
        let kind = match enum_value::<pb::InterruptionKind>(&mut v, "kind", r.kind) {
            Some(pb::InterruptionKind::Internal) => Some(InterruptionKind::Internal),
            Some(pb::InterruptionKind::External) => Some(InterruptionKind::External),
            Some(pb::InterruptionKind::Unspecified) => {
                v.add("kind", "must be INTERRUPTION_KIND_INTERNAL or _EXTERNAL");
                None
            }
            None => None,
        };
        v.finish().map_err(into_status)?;
        let kind = kind.ok_or_else(|| Status::invalid_argument("kind: is required"))?;
        let o = self
            .command(&req, &r.id, Command::Interrupt(kind, r.note), &r.request_id)
            .await?;
        Ok(Response::new(pb::RecordInterruptionResponse {
            session: Some(session_pb(o.session)),
        }))
    }

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Reply<pb::GetSessionResponse> {
        let user = caller(&req)?;
        let o = self.focus.get(&user, &req.get_ref().id).await;
        let o = self.run(&user, o).await?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(session_pb(o.session)),
        }))
    }

    async fn get_current_session(
        &self,
        req: Request<pb::GetCurrentSessionRequest>,
    ) -> Reply<pb::GetCurrentSessionResponse> {
        let user = caller(&req)?;
        let who = identity(&req)?;
        let current = self.focus.current(&user).await.map_err(into_status)?;
        let mut last = None;
        let mut open = None;
        if let Some(o) = current {
            self.effects.after(&user, &o).await;
            last = Some(o.session.body.kind);
            if o.session.body.state.is_open() {
                open = Some(o.session);
            }
        }
        let p = prefs(&self.effects.mesh, &who).await;
        let next = self
            .focus
            .next(&user, last, &p)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::GetCurrentSessionResponse {
            next: (open.is_none()).then(|| next_pb(next)),
            session: open.map(session_pb),
        }))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Reply<pb::ListSessionsResponse> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        let from = from_timestamp(&mut v, "start_time", r.start_time);
        let to = from_timestamp(&mut v, "end_time", r.end_time);
        v.finish().map_err(into_status)?;
        let filter = SessionFilter {
            from,
            to,
            task_id: (!r.task_id.is_empty()).then_some(r.task_id),
        };
        let page = self
            .focus
            .list(&user, filter, r.page_size, &r.page_token)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: page.sessions.into_iter().map(session_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type SyncSessionsStream = SyncStream<pb::SyncSessionsResponse>;

    async fn sync_sessions(
        &self,
        req: Request<pb::SyncSessionsRequest>,
    ) -> Reply<Self::SyncSessionsStream> {
        let user = caller(&req)?;
        let since = changed_since(req.into_inner().changed_since).map_err(into_status)?;
        let batches = futures::StreamExt::map(self.focus.changes(&user, since), |batch| {
            batch.map(|sessions| sessions.into_iter().map(session_pb).collect())
        });
        Ok(Response::new(sync_stream(
            "sessions",
            batches,
            |sessions| pb::SyncSessionsResponse { sessions },
        )))
    }

    async fn get_focus_stats(
        &self,
        req: Request<pb::GetFocusStatsRequest>,
    ) -> Reply<pb::GetFocusStatsResponse> {
        let user = caller(&req)?;
        let who = identity(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        let from = from_timestamp(&mut v, "start_time", r.start_time);
        let to = from_timestamp(&mut v, "end_time", r.end_time);
        v.finish().map_err(into_status)?;
        let now = self.focus.now();
        let to = to.unwrap_or(now + Duration::minutes(1));
        let from = from.unwrap_or(to - Duration::days(30));
        let p = prefs(&self.effects.mesh, &who).await;
        let stats = self
            .focus
            .stats(&user, from, to, &p.calendar)
            .await
            .map_err(into_status)?;
        let estimates = self.estimates(&who, &stats).await;
        Ok(Response::new(pb::GetFocusStatsResponse {
            stats: Some(stats_pb(stats, estimates)),
        }))
    }
}

impl FocusApi {
    /// Each task's estimated pomodoros, from the Task service (0 for a task
    /// it does not know or cannot be asked about).
    async fn estimates(&self, who: &Caller, stats: &Stats) -> Vec<(String, i32)> {
        let name = tasks_pb::task_service_server::SERVICE_NAME;
        let Ok(conn) = self.effects.mesh.conn(name) else {
            return stats.tasks.keys().map(|t| (t.clone(), 0)).collect();
        };
        let mut client = TaskServiceClient::new(conn);
        let mut out = Vec::new();
        for id in stats.tasks.keys() {
            let estimate = client
                .get_task(who.request(tasks_pb::GetTaskRequest { id: id.clone() }))
                .await
                .ok()
                .and_then(|r| r.into_inner().task)
                .map_or(0, |t| t.estimated_pomodoros);
            out.push((id.clone(), estimate));
        }
        out
    }
}

fn stats_pb(s: Stats, estimates: Vec<(String, i32)>) -> pb::FocusStats {
    let tasks = estimates
        .into_iter()
        .map(|(id, estimated)| {
            let f = s.tasks.get(&id).cloned().unwrap_or_default();
            pb::TaskEstimate {
                ratio: if estimated > 0 {
                    f64::from(f.completed_sessions) / f64::from(estimated)
                } else {
                    0.0
                },
                task_id: id,
                estimated_pomodoros: estimated,
                completed_sessions: f.completed_sessions,
                focus_minutes: f.focus_minutes,
            }
        })
        .collect();
    pb::FocusStats {
        time_zone: s.time_zone,
        focus_sessions_completed: s.focus_completed,
        focus_sessions_abandoned: s.focus_abandoned,
        breaks_completed: s.breaks_completed,
        focus_minutes: s.focus_minutes,
        by_day: s
            .by_day
            .into_iter()
            .map(|(k, (m, n))| pb::MinutesBucket {
                key: k,
                focus_minutes: m,
                sessions: n,
            })
            .collect(),
        by_hour: s
            .by_hour
            .into_iter()
            .map(|(k, (m, n))| pb::MinutesBucket {
                key: k.to_string(),
                focus_minutes: m,
                sessions: n,
            })
            .collect(),
        internal_interruptions: s.internal_interruptions,
        external_interruptions: s.external_interruptions,
        tasks,
        truncated: s.truncated,
    }
}

fn session_id(ctx: &JobContext) -> Result<String, JobError> {
    ctx.job
        .spec
        .payload
        .get("session_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| JobError::new("invalid_argument", "payload needs session_id"))
}

/// The timer: applies what the clock did to a session and its effects.
pub struct TimerJob {
    pub focus: Focus,
    pub effects: Effects,
}

#[async_trait]
impl Handler for TimerJob {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let id = session_id(ctx)?;
        let user = &ctx.job.spec.user;
        match self.focus.get(user, &id).await {
            Ok(o) => {
                self.effects.after(user, &o).await;
                Ok(())
            }
            // Deleted or never written: nothing to time.
            Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Retries a completed session's points and task minutes.
pub struct CompletedJob {
    pub focus: Focus,
    pub effects: Effects,
}

#[async_trait]
impl Handler for CompletedJob {
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let id = session_id(ctx)?;
        let user = &ctx.job.spec.user;
        let o = self.focus.get(user, &id).await.map_err(JobError::from)?;
        if o.session.body.state != State::Completed {
            return Ok(());
        }
        focusforge_gamification::api::award(
            &self.effects.mesh,
            user,
            "jobs",
            &Cause::FocusSession(id.clone()),
        )
        .await
        .or_else(|s| match s.code() {
            tonic::Code::Unimplemented | tonic::Code::FailedPrecondition => Ok(()),
            _ => Err(JobError::new("unavailable", s.message())),
        })?;
        self.effects
            .record_on_task(user, &o.session)
            .await
            .map_err(|s| JobError::new("unavailable", s.message()))
    }
}

pub fn handlers(focus: &Focus, effects: &Effects) -> (Arc<dyn Handler>, Arc<dyn Handler>) {
    (
        Arc::new(TimerJob {
            focus: focus.clone(),
            effects: effects.clone(),
        }),
        Arc::new(CompletedJob {
            focus: focus.clone(),
            effects: effects.clone(),
        }),
    )
}

/// Runs planner actions of type `focus`: `op` is `start` (`task_id`,
/// optional `minutes`): a focus session for the task, through the Focus
/// service as the plan's user. A repeated run starts it once.
pub struct FocusExecutor {
    pub mesh: Mesh,
}

#[async_trait]
impl focusforge_planner::Executor for FocusExecutor {
    async fn execute(
        &self,
        user: &UserId,
        action: &focusforge_planner::ActionSpec,
        params: Value,
    ) -> Result<Value, Error> {
        let s = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or_default();
        if s("op") != "start" {
            return Err(Error::invalid("params.op", "must be start"));
        }
        let minutes = match params.get("minutes") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| Error::invalid("params.minutes", "must be an integer"))?,
        };
        let (conn, caller) = self
            .mesh
            .for_user(pb::focus_service_server::SERVICE_NAME, user, "planner")
            .map_err(|s| focusforge_grpc::from_status(&s))?;
        let request = pb::StartSessionRequest {
            kind: pb::SessionKind::Focus as i32,
            task_id: s("task_id").to_owned(),
            planned_minutes: minutes,
            request_id: action
                .idempotency_key
                .as_deref()
                .map(|k| format!("plan-{:016x}", focusforge_store::page_token::fingerprint(k)))
                .unwrap_or_default(),
        };
        let session = pb::focus_service_client::FocusServiceClient::new(conn)
            .start_session(caller.request(request))
            .await
            .map_err(|s| focusforge_grpc::from_status(&s))?
            .into_inner()
            .session
            .unwrap_or_default();
        Ok(json!({
            "session_id": session.id,
            "task_id": session.task_id,
            "planned_minutes": session.planned_minutes,
        }))
    }
}
