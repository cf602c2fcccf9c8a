//! `focusforge.events.v1.EventService` over the event log, and how the
//! services put their events in it ([`publish`]).

use std::time::Duration;

use focusforge_core::{Error, UserId, Violations};
use focusforge_events::{EventError, EventLog, Events, Subscription};
use focusforge_proto::events::v1 as pb;
use focusforge_proto::events::v1::event_service_server::EventService;
use focusforge_tasks::{Task, TaskChange, TaskObserver};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::timestamp;
use crate::{caller, identity, into_status};
use chrono::{DateTime, Utc};
use focusforge_mesh::{Caller, Mesh};
use focusforge_proto::focus::v1 as focus_pb;
use focusforge_proto::focus::v1::focus_service_client::FocusServiceClient;

/// Events read from the log at a time.
const BATCH: usize = 100;
/// Messages queued for one subscriber; a slow one holds up only its own
/// reader.
const BUFFER: usize = 64;

/// Appends one event of the user's: the type and what it is about.
pub async fn publish(
    events: &Events,
    user: &UserId,
    kind: pb::EventType,
    payload: pb::event::Payload,
) {
    let body = pb::Event {
        id: String::new(),
        time: None,
        r#type: kind as i32,
        payload: Some(payload),
    }
    .encode_to_vec();
    events.publish(user, body).await;
}

/// Puts the task service's changes in the event log.
pub struct TaskEvents(pub Events);

fn task_payload(task: &Task) -> pb::event::Payload {
    pb::event::Payload::Task(pb::TaskEvent {
        task_id: task.id.clone(),
        title: task.title.clone(),
        status: crate::tasks::status_name(task.status).to_owned(),
    })
}

#[tonic::async_trait]
impl TaskObserver for TaskEvents {
    async fn changed(&self, user: &UserId, change: TaskChange<'_>) {
        let (kind, payload) = match change {
            TaskChange::Created(t) => (pb::EventType::TaskCreated, task_payload(t)),
            TaskChange::Updated(t) => (pb::EventType::TaskUpdated, task_payload(t)),
            TaskChange::Started(t) => (pb::EventType::TaskStarted, task_payload(t)),
            TaskChange::Completed(t) => (pb::EventType::TaskCompleted, task_payload(t)),
            TaskChange::Deleted(id) => (
                pb::EventType::TaskDeleted,
                pb::event::Payload::Task(pb::TaskEvent {
                    task_id: id.to_owned(),
                    ..pb::TaskEvent::default()
                }),
            ),
        };
        publish(&self.0, user, kind, payload).await;
    }
}

/// The Subscribe RPC.
#[derive(Clone)]
pub struct EventApi {
    pub events: Events,
    /// How long an idle stream waits before a heartbeat.
    pub heartbeat: Duration,
    /// How often a running focus session ticks on the stream.
    pub tick: Duration,
    /// To ask the Focus service for the session running when a stream
    /// opens.
    pub mesh: Mesh,
}

/// The running session a stream ticks for, as it last heard of it: its
/// focus time and time left at `at`.
struct Ticking {
    session_id: String,
    task_id: String,
    elapsed: i64,
    remaining: i64,
    at: DateTime<Utc>,
    next: tokio::time::Instant,
}

impl Ticking {
    fn new(f: &pb::FocusEvent, at: DateTime<Utc>, every: Duration) -> Self {
        Self {
            session_id: f.session_id.clone(),
            task_id: f.task_id.clone(),
            elapsed: f.elapsed_seconds,
            remaining: f.remaining_seconds,
            at,
            next: tokio::time::Instant::now() + every,
        }
    }

    /// The tick at `now`; `None` once no time is left (the timer ends the
    /// session with an event of its own).
    fn at(&self, now: DateTime<Utc>, last_id: &str) -> Option<pb::Event> {
        let passed = (now - self.at).num_seconds().max(0);
        let remaining = (self.remaining - passed).max(0);
        (remaining > 0).then(|| pb::Event {
            id: last_id.to_owned(),
            time: Some(timestamp(now)),
            r#type: pb::EventType::FocusTick as i32,
            payload: Some(pb::event::Payload::Focus(pb::FocusEvent {
                session_id: self.session_id.clone(),
                task_id: self.task_id.clone(),
                state: RUNNING.to_owned(),
                elapsed_seconds: self.elapsed + passed,
                remaining_seconds: remaining,
            })),
        })
    }
}

/// The focus service's name of a running session's state.
const RUNNING: &str = "SESSION_STATE_RUNNING";

/// What a stored event says about the running session: ticking from a
/// start or resume, stopped by a pause or an end.
fn follow(ticking: &mut Option<Ticking>, event: &pb::Event, at: DateTime<Utc>, every: Duration) {
    let Some(pb::event::Payload::Focus(f)) = &event.payload else {
        return;
    };
    match pb::EventType::try_from(event.r#type) {
        Ok(pb::EventType::FocusStarted | pb::EventType::FocusResumed) if f.state == RUNNING => {
            *ticking = Some(Ticking::new(f, at, every));
        }
        Ok(
            pb::EventType::FocusPaused
            | pb::EventType::FocusCompleted
            | pb::EventType::FocusAbandoned,
        ) => *ticking = None,
        _ => {}
    }
}

/// Sleeps until the next tick; forever when nothing runs.
async fn next_tick(ticking: &Option<Ticking>) {
    match ticking {
        Some(t) => tokio::time::sleep_until(t.next).await,
        None => std::future::pending().await,
    }
}

fn log_status(e: EventError) -> Status {
    match e {
        EventError::BadId(_) => {
            let mut v = Violations::new();
            v.add("after_id", "is not an event id this server gave out");
            into_status(
                v.finish()
                    .err()
                    .unwrap_or_else(|| Error::Internal("after_id".into())),
            )
        }
        EventError::Backend(m) => Status::unavailable(format!("event log: {m}")),
    }
}

fn message(kind: pb::subscribe_response::Kind) -> Result<pb::SubscribeResponse, Status> {
    Ok(pb::SubscribeResponse { kind: Some(kind) })
}

impl EventApi {
    /// The session running as the stream opens, from the Focus service;
    /// none when it does not answer (ticks then start with the next focus
    /// event).
    async fn running_session(&self, who: &Caller) -> Option<Ticking> {
        let name = focus_pb::focus_service_server::SERVICE_NAME;
        if !self.mesh.reaches(name) {
            return None;
        }
        let mut req = who.request(focus_pb::GetCurrentSessionRequest {});
        req.set_timeout(Duration::from_secs(2));
        let current = FocusServiceClient::new(self.mesh.conn(name).ok()?)
            .get_current_session(req)
            .await
            .inspect_err(
                |e| tracing::debug!(error = %e.message(), "no current session for the stream"),
            )
            .ok()?
            .into_inner()
            .session?;
        if current.state != focus_pb::SessionState::Running as i32 {
            return None;
        }
        let f = pb::FocusEvent {
            session_id: current.id,
            task_id: current.task_id,
            state: RUNNING.to_owned(),
            elapsed_seconds: current.focused_seconds,
            remaining_seconds: (i64::from(current.planned_minutes) * 60 - current.focused_seconds)
                .max(0),
        };
        Some(Ticking::new(&f, self.events.now(), self.tick))
    }
}

#[tonic::async_trait]
impl EventService for EventApi {
    type SubscribeStream = ReceiverStream<Result<pb::SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let user = caller(&req)?;
        let who = identity(&req)?;
        let after = req.into_inner().after_id;
        let subscription = self
            .events
            .subscribe(&user)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        let log = self.events.log().clone();
        let start = if after.is_empty() {
            log.head(&user).await.map_err(log_status)?
        } else {
            let read = log.read(&user, Some(&after), 0).await.map_err(log_status)?;
            if let Some(resume) = read.gap {
                return Err(Status::out_of_range(format!(
                    "after_id {after} is older than the events kept; subscribe with after_id \
                     {resume} to get the oldest kept"
                )));
            }
            after
        };
        let ticking = self.running_session(&who).await;
        let (tx, rx) = mpsc::channel(BUFFER);
        let pump = Pump {
            log,
            events: self.events.clone(),
            subscription,
            user,
            heartbeat: self.heartbeat,
            tick: self.tick,
            tx,
        };
        tokio::spawn(pump.run(start, ticking));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// One subscriber's reader: the log from its position, then a wait for the
/// next append (or a heartbeat), until the client goes.
struct Pump {
    log: std::sync::Arc<dyn EventLog>,
    events: Events,
    subscription: Subscription,
    user: UserId,
    heartbeat: Duration,
    tick: Duration,
    tx: mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
}

impl Pump {
    async fn run(self, mut last: String, mut ticking: Option<Ticking>) {
        loop {
            let changed = self.subscription.changed();
            let read = match self.log.read(&self.user, Some(&last), BATCH).await {
                Ok(read) => read,
                Err(e) => {
                    let _ = self.tx.send(Err(log_status(e))).await;
                    return;
                }
            };
            if let Some(resume) = read.gap {
                let lagged = pb::Lagged {
                    resume_after_id: resume,
                };
                let _ = self
                    .tx
                    .send(message(pb::subscribe_response::Kind::Lagged(lagged)))
                    .await;
                return;
            }
            let full = read.events.len() == BATCH;
            for record in read.events {
                last.clone_from(&record.id);
                let Ok(mut event) = pb::Event::decode(record.body.as_slice()) else {
                    tracing::warn!(id = %record.id, "an event that does not decode was skipped");
                    continue;
                };
                event.id = record.id;
                event.time = Some(timestamp(record.at));
                follow(&mut ticking, &event, record.at, self.tick);
                let sent = self
                    .tx
                    .send(message(pb::subscribe_response::Kind::Event(event)))
                    .await;
                if sent.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(self.heartbeat) => {
                    let beat = pb::Heartbeat { time: Some(timestamp(self.events.now())) };
                    let sent = self
                        .tx
                        .send(message(pb::subscribe_response::Kind::Heartbeat(beat)))
                        .await;
                    if sent.is_err() {
                        return;
                    }
                }
                () = next_tick(&ticking) => {
                    let tick = ticking.as_ref().and_then(|t| t.at(self.events.now(), &last));
                    match (tick, ticking.as_mut()) {
                        (Some(tick), Some(t)) => {
                            t.next = tokio::time::Instant::now() + self.tick;
                            let sent = self
                                .tx
                                .send(message(pb::subscribe_response::Kind::Event(tick)))
                                .await;
                            if sent.is_err() {
                                return;
                            }
                        }
                        _ => ticking = None,
                    }
                }
                () = self.tx.closed() => return,
            }
        }
    }
}

/// Puts every background job that ended for good on its user's stream.
pub struct JobEvents(pub Events);

#[async_trait::async_trait]
impl focusforge_jobs::JobObserver for JobEvents {
    async fn finished(&self, job: &focusforge_jobs::Job, state: focusforge_jobs::JobState) {
        publish(
            &self.0,
            &job.spec.user,
            pb::EventType::JobFinished,
            pb::event::Payload::Job(pb::JobEvent {
                job_id: job.id.clone(),
                kind: job.spec.kind.clone(),
                state: crate::jobs::state_name(state).to_owned(),
            }),
        )
        .await;
    }
}

/// Puts every plan action that finished for good on its user's stream.
pub struct PlanEvents(pub Events);

#[async_trait::async_trait]
impl focusforge_planner::ActionObserver for PlanEvents {
    async fn finished(
        &self,
        user: &UserId,
        plan_id: &str,
        key: &str,
        status: focusforge_planner::Status,
    ) {
        let state = match status {
            focusforge_planner::Status::Succeeded => "succeeded",
            focusforge_planner::Status::Failed => "failed",
            focusforge_planner::Status::Dead => "dead",
            focusforge_planner::Status::Cancelled => "cancelled",
            _ => return,
        };
        publish(
            &self.0,
            user,
            pb::EventType::PlanActionFinished,
            pb::event::Payload::PlanAction(pb::PlanActionEvent {
                plan_id: plan_id.to_owned(),
                action_id: key.to_owned(),
                state: state.to_owned(),
            }),
        )
        .await;
    }
}

/// The claims of sent reminders.
const REMINDERS: &str = "reminders";

/// Runs planner actions of type `notification`: `op` is `remind` (`text`,
/// optional `task_id`): a reminder event on the plan's user's stream. With
/// an idempotency key a repeated run reminds once, unless the first was cut
/// short between sending and recording it; an event log that does not take
/// the reminder is `UNAVAILABLE`, and the planner retries.
pub struct ReminderExecutor {
    pub events: Events,
    pub store: focusforge_store::SharedStore,
}

#[async_trait::async_trait]
impl focusforge_planner::Executor for ReminderExecutor {
    async fn execute(
        &self,
        user: &UserId,
        action: &focusforge_planner::ActionSpec,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let s = |k: &str| {
            params
                .get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
        };
        if s("op") != "remind" {
            return Err(Error::invalid("params.op", "must be remind"));
        }
        let mut v = Violations::new();
        v.text("params.text", s("text"), 500);
        v.optional_text("params.task_id", s("task_id"), 128);
        v.finish()?;
        // At least once: a reminder is recorded as sent after it is, so a
        // failure in between sends it again rather than never.
        let key = action.idempotency_key.as_deref();
        if let Some(key) = key
            && focusforge_store::requests::is_claimed(self.store.as_ref(), user, REMINDERS, key)
                .await
                .map_err(|e| e.into_domain("reminder"))?
        {
            return Ok(serde_json::json!({ "reminded": false, "repeat": true }));
        }
        let body = pb::Event {
            id: String::new(),
            time: None,
            r#type: pb::EventType::Reminder as i32,
            payload: Some(pb::event::Payload::Reminder(pb::ReminderEvent {
                text: s("text").to_owned(),
                task_id: s("task_id").to_owned(),
            })),
        }
        .encode_to_vec();
        if self.events.publish(user, body).await.is_none() {
            return Err(Error::Unavailable(
                "the event log did not take the reminder".into(),
            ));
        }
        if let Some(key) = key
            && let Err(e) = focusforge_store::requests::claim(
                self.store.as_ref(),
                user,
                REMINDERS,
                key,
                focusforge_core::new_id(),
                self.events.now(),
            )
            .await
        {
            tracing::warn!(error = %e, "a sent reminder was not recorded; a retry sends it again");
        }
        Ok(serde_json::json!({ "reminded": true }))
    }
}
