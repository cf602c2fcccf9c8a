//! The MCP tools of the Calendar service: `calendar.list_events`,
//! `.create_event`, `.auto_schedule`, `.feed_url`. Their schemas' bounds
//! are the domain's [`limits`].

use chrono::{DateTime, Duration, Utc};
use focusforge_mcp::tools::{missing, pb_ts, ts};
use focusforge_mcp::{Caller, Category, Mesh, Tool, ToolError};
use focusforge_proto::calendar::v1 as pb;
use focusforge_proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::limits;

const CALENDAR: &str = pb::calendar_service_server::SERVICE_NAME;

fn client(mesh: &Mesh) -> Result<CalendarServiceClient<focusforge_kit::Conn>, ToolError> {
    Ok(CalendarServiceClient::new(mesh.conn(CALENDAR)?))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListEventsInput {
    /// Default now.
    #[serde(default)]
    pub start_time: Option<DateTime<Utc>>,
    /// Days from the start, 1-400; default 7.
    #[serde(default)]
    #[schemars(range(min = 1, max = limits::RANGE_DAYS))]
    pub days: Option<i64>,
    /// 1-500; default 100.
    #[serde(default)]
    #[schemars(range(min = 1, max = limits::PAGE_SIZE_MAX))]
    pub page_size: Option<i32>,
    /// From a previous call's `next_page_token`.
    #[serde(default)]
    pub page_token: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OccurrenceOut {
    pub event_id: String,
    pub title: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub all_day: bool,
    /// `event` or `focus_block`.
    pub kind: String,
    pub busy: bool,
    pub recurring: bool,
    /// Focus blocks: the task.
    pub task_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EventsOut {
    /// By start.
    pub occurrences: Vec<OccurrenceOut>,
    pub next_page_token: String,
}

async fn list_events(
    mesh: Mesh,
    caller: Caller,
    i: ListEventsInput,
) -> Result<EventsOut, ToolError> {
    let from = i.start_time.unwrap_or_else(Utc::now);
    let to = from + Duration::days(i.days.unwrap_or(7));
    let r = client(&mesh)?
        .list_events(caller.request(pb::ListEventsRequest {
            start_time: Some(pb_ts(from)),
            end_time: Some(pb_ts(to)),
            page_size: i.page_size.unwrap_or(0),
            page_token: i.page_token,
            kind: 0,
        }))
        .await?
        .into_inner();
    Ok(EventsOut {
        occurrences: r
            .occurrences
            .into_iter()
            .map(|o| OccurrenceOut {
                kind: if o.kind == pb::EventKind::FocusBlock as i32 {
                    "focus_block".into()
                } else {
                    "event".into()
                },
                busy: o.transparency != pb::Transparency::Free as i32,
                event_id: o.event_id,
                title: o.title,
                start_time: ts(o.start_time),
                end_time: ts(o.end_time),
                all_day: o.all_day,
                recurring: o.recurring,
                task_id: o.task_id,
            })
            .collect(),
        next_page_token: r.next_page_token,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEventInput {
    #[schemars(length(min = 1, max = limits::TITLE))]
    pub title: String,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// IANA time zone; default the user's.
    #[serde(default)]
    pub time_zone: String,
    /// An RFC 5545 RRULE without the prefix, e.g. `FREQ=WEEKLY;BYDAY=MO`.
    #[serde(default)]
    #[schemars(length(max = limits::RRULE))]
    pub rrule: String,
    #[serde(default)]
    #[schemars(length(max = limits::DESCRIPTION))]
    pub description: String,
    /// Shown without blocking time.
    #[serde(default)]
    pub free: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EventOut {
    pub id: String,
    pub uid: String,
    pub title: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub time_zone: String,
    pub rrule: String,
}

async fn create_event(
    mesh: Mesh,
    caller: Caller,
    i: CreateEventInput,
) -> Result<EventOut, ToolError> {
    let e = client(&mesh)?
        .create_event(caller.request(pb::CreateEventRequest {
            event: Some(pb::Event {
                title: i.title,
                description: i.description,
                start_time: Some(pb_ts(i.start_time)),
                end_time: Some(pb_ts(i.end_time)),
                time_zone: i.time_zone,
                rrule: i.rrule,
                transparency: if i.free {
                    pb::Transparency::Free
                } else {
                    pb::Transparency::Busy
                } as i32,
                ..Default::default()
            }),
        }))
        .await?
        .into_inner()
        .event
        .ok_or_else(|| missing("event"))?;
    Ok(EventOut {
        id: e.id,
        uid: e.uid,
        title: e.title,
        start_time: ts(e.start_time),
        end_time: ts(e.end_time),
        time_zone: e.time_zone,
        rrule: e.rrule,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoScheduleInput {
    /// Days ahead, 1-90; default 14.
    #[serde(default)]
    #[schemars(range(min = 1, max = limits::RANGE_DAYS_BUSY))]
    pub horizon_days: Option<i32>,
    /// Minutes kept free around each block, 0-120.
    #[serde(default)]
    #[schemars(range(min = 0, max = 120))]
    pub buffer_minutes: i32,
    /// Only say what would be placed.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PlacementOut {
    pub task_title: String,
    pub task_id: String,
    pub block_id: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// `new`, `kept` or `moved`.
    pub change: String,
    pub reason: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UnscheduledOut {
    pub task_title: String,
    pub task_id: String,
    pub why: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ScheduleOut {
    pub placements: Vec<PlacementOut>,
    pub unscheduled: Vec<UnscheduledOut>,
    pub added: i32,
    pub kept: i32,
    pub moved: i32,
    pub time_zone: String,
    pub rule: String,
}

async fn auto_schedule(
    mesh: Mesh,
    caller: Caller,
    i: AutoScheduleInput,
) -> Result<ScheduleOut, ToolError> {
    let r = client(&mesh)?
        .auto_schedule(caller.request(pb::AutoScheduleRequest {
            horizon_days: i.horizon_days.unwrap_or(0),
            buffer_minutes: i.buffer_minutes,
            dry_run: i.dry_run,
        }))
        .await?
        .into_inner();
    Ok(ScheduleOut {
        placements: r
            .placements
            .into_iter()
            .map(|p| PlacementOut {
                change: match pb::PlacementChange::try_from(p.change) {
                    Ok(pb::PlacementChange::Kept) => "kept",
                    Ok(pb::PlacementChange::Moved) => "moved",
                    Ok(pb::PlacementChange::New | pb::PlacementChange::Unspecified) | Err(_) => {
                        "new"
                    }
                }
                .into(),
                task_title: p.task_title,
                task_id: p.task_id,
                block_id: p.block_id,
                start_time: ts(p.start_time),
                end_time: ts(p.end_time),
                reason: p.reason,
            })
            .collect(),
        unscheduled: r
            .unscheduled
            .into_iter()
            .map(|u| UnscheduledOut {
                task_title: u.task_title,
                task_id: u.task_id,
                why: u.detail,
            })
            .collect(),
        added: r.added,
        kept: r.kept,
        moved: r.moved,
        time_zone: r.time_zone,
        rule: r.rule,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedInput {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FeedOut {
    /// Subscribe to it in Google Calendar, Apple Calendar or Outlook.
    pub url: String,
}

async fn feed_url(mesh: Mesh, caller: Caller, _i: FeedInput) -> Result<FeedOut, ToolError> {
    let r = client(&mesh)?
        .get_feed(caller.request(pb::GetFeedRequest {}))
        .await?
        .into_inner();
    Ok(FeedOut { url: r.url })
}

/// The calendar tools.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new::<ListEventsInput, EventsOut, _, _>(
            "calendar.list_events",
            "List calendar events",
            "The user's events and focus blocks in a time range (recurring events expanded), by start.",
            Category::Calendar,
            CALENDAR,
            list_events,
        ),
        Tool::new::<CreateEventInput, EventOut, _, _>(
            "calendar.create_event",
            "Create a calendar event",
            "Adds an event (optionally recurring with an RRULE) that blocks time unless marked free.",
            Category::Calendar,
            CALENDAR,
            create_event,
        ),
        Tool::new::<AutoScheduleInput, ScheduleOut, _, _>(
            "calendar.auto_schedule",
            "Auto-schedule focus blocks",
            "Places the blocks of the user's open tasks into free working time by deadline and priority, keeps blocks that still fit, and says why each block is where it is and why any task could not be placed.",
            Category::Calendar,
            CALENDAR,
            auto_schedule,
        ),
        Tool::new::<FeedInput, FeedOut, _, _>(
            "calendar.feed_url",
            "Calendar feed URL",
            "The user's private iCalendar feed URL, to subscribe to from another calendar app.",
            Category::Calendar,
            CALENDAR,
            feed_url,
        ),
    ]
}
