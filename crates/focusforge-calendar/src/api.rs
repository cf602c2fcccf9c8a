//! The gRPC edge of the Calendar service, what it reads from the Users and
//! Task services (working hours, open tasks), and the planner's calendar
//! executor.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use focusforge_core::{Error, UserId, Violations};
use focusforge_grpc::convert::{from_timestamp, mask_paths, opt_timestamp, timestamp};
use focusforge_grpc::{from_status, identity, into_status, preferences_of};
use focusforge_kit::{Caller, Mesh};
use focusforge_mcp::tools::ts;
use focusforge_planner::{ActionSpec, Executor};
use focusforge_proto::calendar::v1 as pb;
use focusforge_proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use focusforge_proto::calendar::v1::calendar_service_server::CalendarService as CalendarRpc;
use focusforge_proto::tasks::v1 as tasks_pb;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::domain::{Calendar, EventPatch, Occurrence, Origin};
use crate::event::{Event, EventFields, Kind, Source, When, limits};
use crate::link::Link;
use crate::schedule::{self, Change, Why};

/// Tasks read for one auto-schedule.
pub const MAX_TASKS: usize = 1_000;

/// `focusforge.calendar.v1.CalendarService` over [`Calendar`].
#[derive(Clone)]
pub struct CalendarApi {
    pub cal: Calendar,
    pub mesh: Mesh,
    pub link: Option<Arc<Link>>,
    /// Where the gateway is reached from outside, for feed URLs.
    pub public_url: Option<String>,
    pub events: focusforge_kit::Events,
}

impl CalendarApi {
    /// Tells the user's event stream that the calendar changed: one event
    /// (`created`, `updated`, `deleted`), or many (`event_id` empty:
    /// `imported`, `scheduled`, `synced`).
    async fn changed(&self, user: &UserId, event_id: &str, change: &str) {
        use focusforge_proto::events::v1 as ev;
        focusforge_grpc::events::publish(
            &self.events,
            user,
            ev::EventType::CalendarChanged,
            ev::event::Payload::Calendar(ev::CalendarEvent {
                calendar_event_id: event_id.to_owned(),
                change: change.to_owned(),
            }),
        )
        .await;
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The feed's path on the gateway.
pub const FEED_PATH: &str = "/calendar/v1/feed.ics";
/// Where Google sends the user back to.
pub const CALLBACK_PATH: &str = "/calendar/v1/google/callback";

fn kind_pb(k: Kind) -> pb::EventKind {
    match k {
        Kind::Event => pb::EventKind::Event,
        Kind::FocusBlock => pb::EventKind::FocusBlock,
    }
}

fn source_pb(s: Source) -> pb::EventSource {
    match s {
        Source::Local => pb::EventSource::Local,
        Source::Imported => pb::EventSource::Imported,
        Source::Google => pb::EventSource::Google,
    }
}

fn transparency(busy: bool) -> i32 {
    if busy {
        pb::Transparency::Busy as i32
    } else {
        pb::Transparency::Free as i32
    }
}

pub fn to_pb(e: &Event) -> pb::Event {
    let f = &e.fields;
    let (start, end) = f.first();
    let (all_day, start_date, end_date) = match f.when {
        When::AllDay { start, end } => (true, start.to_string(), end.to_string()),
        When::Timed { .. } => (false, String::new(), String::new()),
    };
    pb::Event {
        id: e.id.clone(),
        title: f.title.clone(),
        description: f.description.clone(),
        location: f.location.clone(),
        kind: kind_pb(e.kind) as i32,
        start_time: Some(timestamp(start)),
        end_time: Some(timestamp(end)),
        all_day,
        start_date,
        end_date,
        time_zone: f.tz.clone(),
        rrule: f.rrule.clone(),
        exdates: f.exdates.iter().copied().map(timestamp).collect(),
        transparency: transparency(f.busy),
        task_id: e.task_id.clone(),
        block_id: e.block_id.clone(),
        source: source_pb(e.source) as i32,
        uid: e.uid.clone(),
        sequence: e.sequence,
        placement_reason: e.placement_reason.clone(),
        create_time: Some(timestamp(e.created_at)),
        update_time: Some(timestamp(e.updated_at)),
        version: e.version,
    }
}

fn occurrence_pb(o: &Occurrence) -> pb::Occurrence {
    let e = &o.event;
    pb::Occurrence {
        event_id: e.id.clone(),
        start_time: Some(timestamp(o.start)),
        end_time: Some(timestamp(o.end)),
        all_day: matches!(e.fields.when, When::AllDay { .. }),
        title: e.fields.title.clone(),
        kind: kind_pb(e.kind) as i32,
        transparency: transparency(e.fields.busy),
        recurring: !e.fields.rrule.is_empty(),
        task_id: e.task_id.clone(),
        block_id: e.block_id.clone(),
        source: source_pb(e.source) as i32,
    }
}

fn date(v: &mut Violations, field: &str, s: &str) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            v.add(field, "must be a date YYYY-MM-DD");
            None
        }
    }
}

fn busy_of(v: &mut Violations, t: i32) -> bool {
    match pb::Transparency::try_from(t) {
        Ok(pb::Transparency::Free) => false,
        Ok(pb::Transparency::Busy | pb::Transparency::Unspecified) => true,
        Err(_) => {
            v.add("event.transparency", "must be a Transparency value");
            true
        }
    }
}

/// An event from the wire; the time zone defaults to the profile's.
fn fields(e: pb::Event, default_tz: &str) -> Result<EventFields, Error> {
    let mut v = Violations::new();
    let when = if e.all_day {
        let start = date(&mut v, "event.start_date", &e.start_date);
        let end = if e.end_date.is_empty() {
            start.and_then(|d| d.succ_opt())
        } else {
            date(&mut v, "event.end_date", &e.end_date)
        };
        start
            .zip(end)
            .map(|(start, end)| When::AllDay { start, end })
    } else {
        let start = from_timestamp(&mut v, "event.start_time", e.start_time);
        let end = from_timestamp(&mut v, "event.end_time", e.end_time);
        if e.start_time.is_none() {
            v.add(
                "event.start_time",
                "is required (or set all_day with start_date)",
            );
        }
        if e.end_time.is_none() {
            v.add("event.end_time", "is required");
        }
        start
            .zip(end)
            .map(|(start, end)| When::Timed { start, end })
    };
    let mut exdates = Vec::new();
    for (i, t) in e.exdates.into_iter().enumerate() {
        if let Some(t) = from_timestamp(&mut v, &format!("event.exdates[{i}]"), Some(t)) {
            exdates.push(t);
        }
    }
    let busy = busy_of(&mut v, e.transparency);
    let Some(when) = when else {
        v.finish()?;
        return Err(Error::invalid("event", "has no time"));
    };
    let f = EventFields {
        title: e.title,
        description: e.description,
        location: e.location,
        when,
        tz: if e.time_zone.is_empty() {
            default_tz.to_owned()
        } else {
            e.time_zone
        },
        rrule: e.rrule.trim().trim_start_matches("RRULE:").to_owned(),
        exdates,
        busy,
    };
    f.check(&mut v, "event");
    v.finish()?;
    Ok(f)
}

const UPDATABLE: &[&str] = &[
    "title",
    "description",
    "location",
    "start_time",
    "end_time",
    "all_day",
    "start_date",
    "end_date",
    "time_zone",
    "rrule",
    "exdates",
    "transparency",
];

fn patch(req: pb::UpdateEventRequest) -> Result<(String, EventPatch, Option<i64>), Error> {
    let mut v = Violations::new();
    let paths = mask_paths(&mut v, &req.update_mask, UPDATABLE);
    let e = req.event.unwrap_or_default();
    v.check(!e.id.is_empty(), "event.id", "must not be empty");
    v.range("expected_version", req.expected_version, 0, i64::MAX);
    let mut p = EventPatch::default();
    for path in paths {
        match path {
            "title" => p.title = Some(e.title.clone()),
            "description" => p.description = Some(e.description.clone()),
            "location" => p.location = Some(e.location.clone()),
            "start_time" => p.start = from_timestamp(&mut v, "event.start_time", e.start_time),
            "end_time" => p.end = from_timestamp(&mut v, "event.end_time", e.end_time),
            "all_day" => p.all_day = Some(e.all_day),
            "start_date" => p.start_date = date(&mut v, "event.start_date", &e.start_date),
            "end_date" => {
                p.end_date = Some(if e.end_date.is_empty() {
                    None
                } else {
                    date(&mut v, "event.end_date", &e.end_date)
                });
            }
            "time_zone" => p.tz = Some(e.time_zone.clone()),
            "rrule" => p.rrule = Some(e.rrule.trim().trim_start_matches("RRULE:").to_owned()),
            "exdates" => {
                let mut out = Vec::new();
                for (i, t) in e.exdates.iter().enumerate() {
                    if let Some(t) =
                        from_timestamp(&mut v, &format!("event.exdates[{i}]"), Some(*t))
                    {
                        out.push(t);
                    }
                }
                p.exdates = Some(out);
            }
            "transparency" => p.busy = Some(busy_of(&mut v, e.transparency)),
            _ => {}
        }
    }
    v.finish()?;
    let expected = (req.expected_version != 0).then_some(req.expected_version);
    Ok((e.id, p, expected))
}

/// A required range of at most `days`.
fn range(
    start: Option<prost_types::Timestamp>,
    end: Option<prost_types::Timestamp>,
    days: i64,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Error> {
    let mut v = Violations::new();
    let from = from_timestamp(&mut v, "start_time", start);
    let to = from_timestamp(&mut v, "end_time", end);
    if start.is_none() {
        v.add("start_time", "is required");
    }
    if end.is_none() {
        v.add("end_time", "is required");
    }
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            v.add("end_time", "must be after start_time");
        } else if t - f > Duration::days(days) {
            v.add(
                "end_time",
                format!("must be at most {days} days after start_time"),
            );
        }
    }
    v.finish()?;
    Ok((from.unwrap_or_default(), to.unwrap_or_default()))
}

/// What the scheduler reads of the profile.
struct Prefs {
    tz: Tz,
    hours: schedule::Hours,
}

async fn prefs(mesh: &Mesh, caller: &Caller) -> Prefs {
    let p = preferences_of(mesh, caller).await;
    let d = focusforge_proto::users::v1::Preferences::default();
    let p = p.unwrap_or(d);
    let tz: Tz = p.timezone.parse().unwrap_or(chrono_tz::UTC);
    // Users that is not deployed (or an old profile) answers zeros: the
    // defaults of the profile then, 09:00-17:00 Monday to Friday.
    let (start, end) = if p.work_end_minute > p.work_start_minute {
        (p.work_start_minute, p.work_end_minute)
    } else {
        (9 * 60, 17 * 60)
    };
    let days: Vec<u8> = if p.working_days.is_empty() {
        vec![1, 2, 3, 4, 5]
    } else {
        p.working_days
            .iter()
            .filter_map(|d| u8::try_from(*d).ok())
            .collect()
    };
    Prefs {
        tz,
        hours: schedule::Hours {
            tz,
            start_minute: start.clamp(0, 1440) as u32,
            end_minute: end.clamp(0, 1440) as u32,
            days,
        },
    }
}

/// Refuses a task id that is not one of the caller's tasks, as the Task
/// service answers it (NOT_FOUND for another user's, as for a missing one).
async fn own_task(mesh: &Mesh, caller: &Caller, id: &str) -> Result<(), Status> {
    let conn = mesh.conn(tasks_pb::task_service_server::SERVICE_NAME)?;
    let mut req = caller.request(tasks_pb::GetTaskRequest { id: id.to_owned() });
    req.set_timeout(std::time::Duration::from_secs(10));
    TaskServiceClient::new(conn).get_task(req).await?;
    Ok(())
}

/// The caller's open tasks, from the Task service.
async fn open_tasks(mesh: &Mesh, caller: &Caller) -> Result<Vec<tasks_pb::Task>, Status> {
    let conn = mesh.conn(tasks_pb::task_service_server::SERVICE_NAME)?;
    let mut client = TaskServiceClient::new(conn);
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let mut req = caller.request(tasks_pb::ListTasksRequest {
            page_size: 200,
            page_token: token.clone(),
            statuses: vec![
                tasks_pb::TaskStatus::Pending as i32,
                tasks_pb::TaskStatus::InProgress as i32,
            ],
            ..Default::default()
        });
        req.set_timeout(std::time::Duration::from_secs(10));
        let page = client.list_tasks(req).await?.into_inner();
        out.extend(page.tasks);
        if page.next_page_token.is_empty() || out.len() >= MAX_TASKS {
            break;
        }
        token = page.next_page_token;
    }
    out.truncate(MAX_TASKS);
    Ok(out)
}

fn why_pb(w: Why) -> pb::UnscheduledReason {
    match w {
        Why::DeadlinePassed => pb::UnscheduledReason::DeadlinePassed,
        Why::NotEnoughTimeBeforeDeadline => pb::UnscheduledReason::NotEnoughTimeBeforeDeadline,
        Why::BlockLongerThanAnyWindow => pb::UnscheduledReason::BlockLongerThanAnyWindow,
        Why::FragmentedBeforeDeadline => pb::UnscheduledReason::FragmentedBeforeDeadline,
        Why::HorizonFull => pb::UnscheduledReason::HorizonFull,
        Why::StartsAfterHorizon => pb::UnscheduledReason::StartsAfterHorizon,
    }
}

impl CalendarApi {
    fn link(&self) -> Result<&Link, Status> {
        self.link.as_deref().ok_or_else(|| {
            Status::failed_precondition(
                "Google Calendar is not configured on this server ([service.calendar.google])",
            )
        })
    }

    fn feed_pb(&self, token: &str) -> pb::GetFeedResponse {
        let path = format!("{FEED_PATH}?token={token}");
        pb::GetFeedResponse {
            url: match &self.public_url {
                Some(base) => format!("{}{path}", base.trim_end_matches('/')),
                None => path.clone(),
            },
            path,
        }
    }

    async fn google_status(&self, user: &UserId) -> Result<pb::GetGoogleStatusResponse, Error> {
        let state = self.cal.state(user).await?;
        let busy = match &state.google {
            Some(_) => self
                .cal
                .by_field(user, "source", Value::from("google"))
                .await?
                .len(),
            None => 0,
        };
        Ok(pb::GetGoogleStatusResponse {
            configured: self.link.is_some(),
            linked: state.google.is_some(),
            calendar_id: state
                .google
                .as_ref()
                .map(|g| g.calendar_id.clone())
                .unwrap_or_default(),
            last_sync_time: opt_timestamp(
                state
                    .google
                    .as_ref()
                    .and_then(|g| g.last_sync_ms)
                    .and_then(DateTime::from_timestamp_millis),
            ),
            busy_events: busy as i32,
            last_error: state.google.map(|g| g.last_error).unwrap_or_default(),
        })
    }

    /// Places the caller's open tasks' blocks.
    pub async fn auto_schedule(
        &self,
        caller: &Caller,
        r: pb::AutoScheduleRequest,
    ) -> Result<pb::AutoScheduleResponse, Status> {
        let user = caller.user.clone();
        let mut v = Violations::new();
        let days = if r.horizon_days == 0 {
            14
        } else {
            r.horizon_days
        };
        v.range("horizon_days", i64::from(days), 1, limits::RANGE_DAYS_BUSY);
        v.range("buffer_minutes", i64::from(r.buffer_minutes), 0, 120);
        v.finish().map_err(into_status)?;
        let p = prefs(&self.mesh, caller).await;
        let tasks = open_tasks(&self.mesh, caller).await?;
        let now = self.cal.now();
        let horizon_end = now + Duration::days(i64::from(days));
        let events = self
            .cal
            .events_between(&user, now - Duration::days(1), horizon_end, None)
            .await
            .map_err(into_status)?;
        let mut busy = Vec::new();
        for o in Calendar::expand(events, now - Duration::days(1), horizon_end) {
            let e = &o.event;
            if e.kind != Kind::FocusBlock && e.fields.busy && o.end > now {
                busy.push(schedule::Busy {
                    start: o.start,
                    end: o.end,
                    title: e.fields.title.clone(),
                });
            }
        }
        // Every focus block not over yet, beyond the horizon too, so none
        // is placed twice.
        let far = now + Duration::days(limits::RANGE_DAYS);
        let blocks = self
            .cal
            .events_between(&user, now, far, Some(Kind::FocusBlock))
            .await
            .map_err(into_status)?;
        let existing: Vec<schedule::Existing> = Calendar::expand(blocks, now, far)
            .into_iter()
            .map(|o| schedule::Existing {
                event_id: o.event.id.clone(),
                task_id: o.event.task_id.clone(),
                block_id: o.event.block_id.clone(),
                start: o.start,
                end: o.end,
            })
            .collect();
        let mut titles: HashMap<(String, String), String> = HashMap::new();
        let input_tasks: Vec<schedule::TaskIn> = tasks
            .iter()
            .map(|t| {
                for b in &t.blocks {
                    titles.insert(
                        (t.id.clone(), b.id.clone()),
                        format!("Focus: {} · {}", t.title, b.title),
                    );
                }
                let mut blocks: Vec<schedule::BlockIn> = t
                    .blocks
                    .iter()
                    .filter(|b| !b.done)
                    .map(|b| schedule::BlockIn {
                        id: b.id.clone(),
                        minutes: i64::from(b.minutes),
                    })
                    .collect();
                // A task without blocks is one block of its estimate.
                if t.blocks.is_empty() && t.estimated_minutes > 0 {
                    titles.insert(
                        (t.id.clone(), "whole".into()),
                        format!("Focus: {}", t.title),
                    );
                    blocks.push(schedule::BlockIn {
                        id: "whole".into(),
                        minutes: i64::from(t.estimated_minutes),
                    });
                }
                schedule::TaskIn {
                    id: t.id.clone(),
                    title: t.title.clone(),
                    priority: match tasks_pb::TaskPriority::try_from(t.priority) {
                        Ok(tasks_pb::TaskPriority::Low) => 0,
                        Ok(tasks_pb::TaskPriority::High) => 2,
                        Ok(tasks_pb::TaskPriority::Urgent) => 3,
                        Ok(
                            tasks_pb::TaskPriority::Medium | tasks_pb::TaskPriority::Unspecified,
                        )
                        | Err(_) => 1,
                    },
                    due: ts(t.due_time),
                    earliest: ts(t.earliest_start_time),
                    min_chunk: i64::from(t.min_chunk_minutes),
                    created: ts(t.create_time).unwrap_or_default(),
                    blocks,
                }
            })
            .filter(|t| !t.blocks.is_empty())
            .collect();
        let input = schedule::Input {
            now,
            horizon_end,
            hours: p.hours,
            buffer_minutes: i64::from(r.buffer_minutes),
            busy,
            tasks: input_tasks,
            existing,
        };
        let out = schedule::schedule(&input);
        let ids = if r.dry_run {
            out.placed
                .iter()
                .map(|p| p.event_id.clone().unwrap_or_default())
                .collect()
        } else {
            let title = |task: &str, block: &str| {
                titles
                    .get(&(task.to_owned(), block.to_owned()))
                    .cloned()
                    .unwrap_or_else(|| "Focus block".into())
            };
            self.cal
                .apply(&user, p.tz.name(), &out, &title)
                .await
                .map_err(into_status)?
        };
        let task_titles: HashMap<&str, &str> = tasks
            .iter()
            .map(|t| (t.id.as_str(), t.title.as_str()))
            .collect();
        let count =
            |c: fn(&Change) -> bool| out.placed.iter().filter(|p| c(&p.change)).count() as i32;
        Ok(pb::AutoScheduleResponse {
            added: count(|c| *c == Change::New),
            kept: count(|c| *c == Change::Kept),
            moved: count(|c| matches!(c, Change::Moved { .. })),
            placements: out
                .placed
                .iter()
                .zip(ids)
                .map(|(p, id)| pb::Placement {
                    task_id: p.task_id.clone(),
                    block_id: p.block_id.clone(),
                    event_id: id,
                    start_time: Some(timestamp(p.start)),
                    end_time: Some(timestamp(p.end)),
                    change: match p.change {
                        Change::New => pb::PlacementChange::New,
                        Change::Kept => pb::PlacementChange::Kept,
                        Change::Moved { .. } => pb::PlacementChange::Moved,
                    } as i32,
                    previous_start_time: match p.change {
                        Change::Moved { from } => Some(timestamp(from)),
                        Change::New | Change::Kept => None,
                    },
                    reason: p.reason.clone(),
                    piece: p.piece as i32,
                    pieces: p.pieces as i32,
                    task_title: task_titles
                        .get(p.task_id.as_str())
                        .map(|t| (*t).to_owned())
                        .unwrap_or_default(),
                })
                .collect(),
            unscheduled: out
                .unplaced
                .iter()
                .map(|u| pb::Unscheduled {
                    task_id: u.task_id.clone(),
                    task_title: u.title.clone(),
                    reason: why_pb(u.why) as i32,
                    detail: u.detail.clone(),
                    minutes_needed: u.minutes_needed as i32,
                    minutes_free: u.minutes_free as i32,
                })
                .collect(),
            removed_event_ids: out.removed.clone(),
            horizon_end_time: Some(timestamp(horizon_end)),
            time_zone: p.tz.name().to_owned(),
            rule: schedule::RULE.into(),
        })
    }
}

#[tonic::async_trait]
impl CalendarRpc for CalendarApi {
    async fn create_event(
        &self,
        req: Request<pb::CreateEventRequest>,
    ) -> Reply<pb::CreateEventResponse> {
        let caller = identity(&req)?;
        let e = req.into_inner().event.unwrap_or_default();
        if !e.task_id.is_empty() {
            own_task(&self.mesh, &caller, &e.task_id).await?;
        }
        let tz = prefs(&self.mesh, &caller).await.tz;
        let f = fields(e, tz.name()).map_err(into_status)?;
        let event = self
            .cal
            .create(&caller.user, f, Origin::default())
            .await
            .map_err(into_status)?;
        self.changed(&caller.user, &event.id, "created").await;
        Ok(Response::new(pb::CreateEventResponse {
            event: Some(to_pb(&event)),
        }))
    }

    async fn get_event(&self, req: Request<pb::GetEventRequest>) -> Reply<pb::GetEventResponse> {
        let caller = identity(&req)?;
        let e = self
            .cal
            .get(&caller.user, &req.into_inner().id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::GetEventResponse {
            event: Some(to_pb(&e)),
        }))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Reply<pb::ListEventsResponse> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let (from, to) =
            range(r.start_time, r.end_time, limits::RANGE_DAYS).map_err(into_status)?;
        let mut v = Violations::new();
        if r.page_size != 0 {
            v.range(
                "page_size",
                i64::from(r.page_size),
                1,
                limits::PAGE_SIZE_MAX,
            );
        }
        let kind = match pb::EventKind::try_from(r.kind) {
            Ok(pb::EventKind::Unspecified) => None,
            Ok(pb::EventKind::Event) => Some(Kind::Event),
            Ok(pb::EventKind::FocusBlock) => Some(Kind::FocusBlock),
            Err(_) => {
                v.add("kind", "must be an EventKind value");
                None
            }
        };
        v.finish().map_err(into_status)?;
        let size = if r.page_size == 0 {
            limits::PAGE_SIZE_DEFAULT
        } else {
            r.page_size as usize
        };
        let (page, next) = self
            .cal
            .list(&caller.user, from, to, kind, size, &r.page_token)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ListEventsResponse {
            occurrences: page.iter().map(occurrence_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn update_event(
        &self,
        req: Request<pb::UpdateEventRequest>,
    ) -> Reply<pb::UpdateEventResponse> {
        let caller = identity(&req)?;
        let (id, p, expected) = patch(req.into_inner()).map_err(into_status)?;
        let e = self
            .cal
            .update(&caller.user, &id, p, expected)
            .await
            .map_err(into_status)?;
        self.changed(&caller.user, &id, "updated").await;
        Ok(Response::new(pb::UpdateEventResponse {
            event: Some(to_pb(&e)),
        }))
    }

    async fn delete_event(
        &self,
        req: Request<pb::DeleteEventRequest>,
    ) -> Reply<pb::DeleteEventResponse> {
        let caller = identity(&req)?;
        let id = req.into_inner().id;
        self.cal
            .delete(&caller.user, &id)
            .await
            .map_err(into_status)?;
        self.changed(&caller.user, &id, "deleted").await;
        Ok(Response::new(pb::DeleteEventResponse {}))
    }

    async fn get_free_busy(
        &self,
        req: Request<pb::GetFreeBusyRequest>,
    ) -> Reply<pb::GetFreeBusyResponse> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let (from, to) =
            range(r.start_time, r.end_time, limits::RANGE_DAYS_BUSY).map_err(into_status)?;
        let mut busy = self
            .cal
            .busy(&caller.user, from, to)
            .await
            .map_err(into_status)?;
        if r.include_google {
            let theirs = self
                .link()?
                .free_busy(&caller.user, from, to)
                .await
                .map_err(into_status)?;
            busy.extend(
                theirs
                    .into_iter()
                    .map(|(s, e)| (s.max(from), e.min(to)))
                    .filter(|(s, e)| s < e),
            );
            busy = crate::domain::merge(busy);
        }
        let interval = |(s, e): (DateTime<Utc>, DateTime<Utc>)| pb::Interval {
            start_time: Some(timestamp(s)),
            end_time: Some(timestamp(e)),
        };
        let mut free = Vec::new();
        let mut at = from;
        for &(s, e) in &busy {
            if s > at {
                free.push((at, s));
            }
            at = at.max(e);
        }
        if at < to {
            free.push((at, to));
        }
        Ok(Response::new(pb::GetFreeBusyResponse {
            busy: busy.into_iter().map(interval).collect(),
            free: free.into_iter().map(interval).collect(),
        }))
    }

    async fn auto_schedule(
        &self,
        req: Request<pb::AutoScheduleRequest>,
    ) -> Reply<pb::AutoScheduleResponse> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let out = CalendarApi::auto_schedule(self, &caller, r).await?;
        if out.added > 0 || out.moved > 0 {
            self.changed(&caller.user, "", "scheduled").await;
        }
        Ok(Response::new(out))
    }

    async fn export_calendar(
        &self,
        req: Request<pb::ExportCalendarRequest>,
    ) -> Reply<pb::ExportCalendarResponse> {
        let caller = identity(&req)?;
        let (ics, etag) = export(&self.cal, &caller.user).await.map_err(into_status)?;
        Ok(Response::new(pb::ExportCalendarResponse { ics, etag }))
    }

    async fn import_calendar(
        &self,
        req: Request<pb::ImportCalendarRequest>,
    ) -> Reply<pb::ImportCalendarResponse> {
        let caller = identity(&req)?;
        let text = req.into_inner().ics;
        if text.len() > crate::ics::MAX_BYTES {
            return Err(into_status(Error::invalid("ics", "must be at most 1 MiB")));
        }
        let tz = prefs(&self.mesh, &caller).await.tz;
        let items = crate::ics::import(&text, tz)
            .map_err(|e| into_status(Error::invalid("ics", e.to_string())))?;
        let (created, updated, ids) = self
            .cal
            .import(&caller.user, items)
            .await
            .map_err(into_status)?;
        if created + updated > 0 {
            self.changed(&caller.user, "", "imported").await;
        }
        Ok(Response::new(pb::ImportCalendarResponse {
            created: created as i32,
            updated: updated as i32,
            event_ids: ids,
        }))
    }

    async fn get_feed(&self, req: Request<pb::GetFeedRequest>) -> Reply<pb::GetFeedResponse> {
        let caller = identity(&req)?;
        let token = self
            .cal
            .feed(&caller.user, false)
            .await
            .map_err(into_status)?;
        Ok(Response::new(self.feed_pb(&token)))
    }

    async fn revoke_feed(
        &self,
        req: Request<pb::RevokeFeedRequest>,
    ) -> Reply<pb::RevokeFeedResponse> {
        let caller = identity(&req)?;
        let feed = if req.into_inner().rotate {
            let token = self
                .cal
                .feed(&caller.user, true)
                .await
                .map_err(into_status)?;
            Some(self.feed_pb(&token))
        } else {
            self.cal
                .revoke_feed(&caller.user)
                .await
                .map_err(into_status)?;
            None
        };
        Ok(Response::new(pb::RevokeFeedResponse { feed }))
    }

    async fn get_google_status(
        &self,
        req: Request<pb::GetGoogleStatusRequest>,
    ) -> Reply<pb::GetGoogleStatusResponse> {
        let caller = identity(&req)?;
        Ok(Response::new(
            self.google_status(&caller.user)
                .await
                .map_err(into_status)?,
        ))
    }

    async fn begin_google_link(
        &self,
        req: Request<pb::BeginGoogleLinkRequest>,
    ) -> Reply<pb::BeginGoogleLinkResponse> {
        let caller = identity(&req)?;
        let link = self.link()?;
        let (url, state) = link
            .begin(&caller.user, &req.into_inner().calendar_id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::BeginGoogleLinkResponse {
            authorize_url: url,
            state,
        }))
    }

    async fn complete_google_link(
        &self,
        req: Request<pb::CompleteGoogleLinkRequest>,
    ) -> Reply<pb::CompleteGoogleLinkResponse> {
        let caller = identity(&req)?;
        let link = self.link()?;
        let r = req.into_inner();
        link.complete(&caller.user, &r.code, &r.state)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::CompleteGoogleLinkResponse {
            status: Some(
                self.google_status(&caller.user)
                    .await
                    .map_err(into_status)?,
            ),
        }))
    }

    async fn sync_google(
        &self,
        req: Request<pb::SyncGoogleRequest>,
    ) -> Reply<pb::SyncGoogleResponse> {
        let caller = identity(&req)?;
        let link = self.link()?;
        let tz = prefs(&self.mesh, &caller).await.tz;
        let r = link.sync(&caller.user, tz).await.map_err(into_status)?;
        if r.pulled + r.removed > 0 {
            self.changed(&caller.user, "", "synced").await;
        }
        Ok(Response::new(pb::SyncGoogleResponse {
            full_sync: r.full,
            pulled: r.pulled as i32,
            removed: r.removed as i32,
            pushed: r.pushed as i32,
            deleted: r.deleted as i32,
        }))
    }

    async fn unlink_google(
        &self,
        req: Request<pb::UnlinkGoogleRequest>,
    ) -> Reply<pb::UnlinkGoogleResponse> {
        let caller = identity(&req)?;
        let link = self.link()?;
        link.unlink(&caller.user).await.map_err(into_status)?;
        Ok(Response::new(pb::UnlinkGoogleResponse {}))
    }
}

/// The user's calendar as iCalendar, and its ETag.
pub async fn export(cal: &Calendar, user: &UserId) -> Result<(String, String), Error> {
    let mut events = cal.all(user).await?;
    events.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    // The newest change dates the calendar, so an unchanged one is
    // byte-identical whenever it is fetched.
    let stamp = events
        .iter()
        .map(|e| e.updated_at)
        .max()
        .unwrap_or_else(|| DateTime::from_timestamp(0, 0).unwrap_or_default());
    let ics = crate::ics::export(&events, "FocusForge", stamp);
    let etag = format!("\"{}\"", &crate::domain::sha256_hex(ics.as_bytes())[..32]);
    Ok((ics, etag))
}

/// Runs planner actions of type `calendar`: `op` is `create_event`
/// (`title`, `start_time`, `end_time` RFC 3339, optional `time_zone`) or
/// `auto_schedule` (optional `horizon_days`, `buffer_minutes`, and
/// `task_id`: the output then says where that task's blocks went, with
/// `first_start` and `first_end` of its earliest one, `null` when none was
/// placed, so a later action can wait for it).
pub struct CalendarExecutor {
    pub mesh: Mesh,
}

#[async_trait]
impl Executor for CalendarExecutor {
    async fn execute(
        &self,
        user: &UserId,
        _action: &ActionSpec,
        params: Value,
    ) -> Result<Value, Error> {
        let (conn, caller) = self
            .mesh
            .for_user(pb::calendar_service_server::SERVICE_NAME, user, "planner")
            .map_err(|s| from_status(&s))?;
        let mut client = CalendarServiceClient::new(conn);
        let s = |k: &str| params.get(k).and_then(Value::as_str).unwrap_or_default();
        let n = |k: &str| {
            params
                .get(k)
                .and_then(Value::as_i64)
                .and_then(|x| i32::try_from(x).ok())
                .unwrap_or(0)
        };
        match s("op") {
            "create_event" => {
                let t = |k: &str| -> Result<prost_types::Timestamp, Error> {
                    DateTime::parse_from_rfc3339(s(k))
                        .map(|t| timestamp(t.with_timezone(&Utc)))
                        .map_err(|_| {
                            Error::invalid(format!("params.{k}"), "must be an RFC 3339 time")
                        })
                };
                let e = client
                    .create_event(caller.request(pb::CreateEventRequest {
                        event: Some(pb::Event {
                            title: s("title").to_owned(),
                            start_time: Some(t("start_time")?),
                            end_time: Some(t("end_time")?),
                            time_zone: s("time_zone").to_owned(),
                            ..Default::default()
                        }),
                    }))
                    .await
                    .map_err(|s| from_status(&s))?
                    .into_inner()
                    .event
                    .unwrap_or_default();
                Ok(json!({ "event_id": e.id, "uid": e.uid }))
            }
            "auto_schedule" => {
                let r = client
                    .auto_schedule(caller.request(pb::AutoScheduleRequest {
                        horizon_days: n("horizon_days"),
                        buffer_minutes: n("buffer_minutes"),
                        dry_run: false,
                    }))
                    .await
                    .map_err(|s| from_status(&s))?
                    .into_inner();
                let mut out = json!({
                    "added": r.added,
                    "kept": r.kept,
                    "moved": r.moved,
                    "unscheduled": r.unscheduled.iter().map(|u| &u.task_id).collect::<Vec<_>>(),
                });
                let task = s("task_id");
                if !task.is_empty() {
                    let rfc3339 = |t: &Option<prost_types::Timestamp>| {
                        t.as_ref()
                            .and_then(|t| DateTime::from_timestamp(t.seconds, 0))
                            .map(|t| t.to_rfc3339())
                    };
                    // Placements come by start.
                    let mine: Vec<&pb::Placement> =
                        r.placements.iter().filter(|p| p.task_id == task).collect();
                    out["task_id"] = json!(task);
                    out["placed"] = json!(mine.len());
                    out["first_start"] = json!(mine.first().and_then(|p| rfc3339(&p.start_time)));
                    out["first_end"] = json!(mine.first().and_then(|p| rfc3339(&p.end_time)));
                    out["first_event_id"] = json!(mine.first().map(|p| &p.event_id));
                    out["why_not"] = json!(
                        r.unscheduled
                            .iter()
                            .find(|u| u.task_id == task)
                            .map(|u| &u.detail)
                    );
                }
                Ok(out)
            }
            _ => Err(Error::invalid(
                "params.op",
                "must be create_event or auto_schedule",
            )),
        }
    }
}
