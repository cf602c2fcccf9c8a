//! The MCP tools of the Focus service.

use chrono::{DateTime, Duration, Utc};
use focusforge_mcp::tools::{missing, pb_ts, ts as at};
use focusforge_mcp::{Caller, Category, Mesh, Tool, ToolError};
use focusforge_proto::focus::v1 as pb;
use focusforge_proto::focus::v1::focus_service_client::FocusServiceClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::SERVICE;
use crate::domain::limits;

fn client(mesh: &Mesh) -> Result<FocusServiceClient<focusforge_kit::Conn>, ToolError> {
    Ok(FocusServiceClient::new(mesh.conn(SERVICE)?))
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionOut {
    pub id: String,
    /// `focus`, `short_break` or `long_break`.
    pub kind: String,
    /// `running`, `paused`, `completed` or `abandoned`.
    pub state: String,
    pub task_id: String,
    pub planned_minutes: i32,
    pub started_at: Option<DateTime<Utc>>,
    /// When it completes if nothing changes.
    pub planned_end_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub focused_seconds: i64,
    pub pause_budget_left_seconds: i64,
}

fn kind_name(k: i32) -> String {
    match pb::SessionKind::try_from(k) {
        Ok(pb::SessionKind::Focus) => "focus",
        Ok(pb::SessionKind::ShortBreak) => "short_break",
        Ok(pb::SessionKind::LongBreak) => "long_break",
        Ok(pb::SessionKind::Unspecified) | Err(_) => "unknown",
    }
    .to_owned()
}

fn state_name(s: i32) -> String {
    match pb::SessionState::try_from(s) {
        Ok(pb::SessionState::Running) => "running",
        Ok(pb::SessionState::Paused) => "paused",
        Ok(pb::SessionState::Completed) => "completed",
        Ok(pb::SessionState::Abandoned) => "abandoned",
        Ok(pb::SessionState::Unspecified) | Err(_) => "unknown",
    }
    .to_owned()
}

fn out(s: pb::Session) -> SessionOut {
    SessionOut {
        id: s.id,
        kind: kind_name(s.kind),
        state: state_name(s.state),
        task_id: s.task_id,
        planned_minutes: s.planned_minutes,
        started_at: at(s.start_time),
        planned_end_at: at(s.planned_end_time),
        ended_at: at(s.end_time),
        focused_seconds: s.focused_seconds,
        pause_budget_left_seconds: s.pause_budget_left_seconds,
    }
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum KindIn {
    #[default]
    Focus,
    ShortBreak,
    LongBreak,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartInput {
    #[serde(default)]
    pub kind: KindIn,
    /// The task to focus on, if any.
    #[serde(default)]
    pub task_id: String,
    /// Minutes; default the profile's length for the kind.
    #[serde(default)]
    #[schemars(range(min = limits::PLANNED_MIN, max = limits::PLANNED_MAX))]
    pub planned_minutes: Option<i64>,
    /// Repeat a call with the same id to retry without starting twice.
    #[serde(default)]
    #[schemars(length(max = limits::REQUEST_ID_CHARS))]
    pub request_id: String,
}

async fn start(mesh: Mesh, caller: Caller, i: StartInput) -> Result<SessionOut, ToolError> {
    let kind = match i.kind {
        KindIn::Focus => pb::SessionKind::Focus,
        KindIn::ShortBreak => pb::SessionKind::ShortBreak,
        KindIn::LongBreak => pb::SessionKind::LongBreak,
    };
    let s = client(&mesh)?
        .start_session(caller.request(pb::StartSessionRequest {
            kind: kind as i32,
            task_id: i.task_id,
            planned_minutes: i.planned_minutes.unwrap_or(0).clamp(0, limits::PLANNED_MAX) as i32,
            request_id: i.request_id,
        }))
        .await?
        .into_inner()
        .session
        .ok_or_else(|| missing("session"))?;
    Ok(out(s))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionInput {
    /// The session's id; default the current one.
    #[serde(default)]
    pub id: String,
}

async fn resolve(mesh: &Mesh, caller: &Caller, id: String) -> Result<String, ToolError> {
    if !id.is_empty() {
        return Ok(id);
    }
    client(mesh)?
        .get_current_session(caller.request(pb::GetCurrentSessionRequest {}))
        .await?
        .into_inner()
        .session
        .map(|s| s.id)
        .ok_or_else(|| {
            ToolError::Upstream(tonic::Status::failed_precondition(
                "no session is running; give its id",
            ))
        })
}

async fn pause(mesh: Mesh, caller: Caller, i: SessionInput) -> Result<SessionOut, ToolError> {
    let id = resolve(&mesh, &caller, i.id).await?;
    let s = client(&mesh)?
        .pause_session(caller.request(pb::PauseSessionRequest {
            id,
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .session
        .ok_or_else(|| missing("session"))?;
    Ok(out(s))
}

async fn resume(mesh: Mesh, caller: Caller, i: SessionInput) -> Result<SessionOut, ToolError> {
    let id = resolve(&mesh, &caller, i.id).await?;
    let s = client(&mesh)?
        .resume_session(caller.request(pb::ResumeSessionRequest {
            id,
            request_id: String::new(),
        }))
        .await?
        .into_inner()
        .session
        .ok_or_else(|| missing("session"))?;
    Ok(out(s))
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CompletedOut {
    pub session: SessionOut,
    /// What to take next: `short_break`, `long_break` or `focus`.
    pub next_kind: String,
    pub next_minutes: i32,
}

async fn complete(mesh: Mesh, caller: Caller, i: SessionInput) -> Result<CompletedOut, ToolError> {
    let id = resolve(&mesh, &caller, i.id).await?;
    let r = client(&mesh)?
        .complete_session(caller.request(pb::CompleteSessionRequest {
            id,
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    let next = r.next.unwrap_or_default();
    Ok(CompletedOut {
        session: out(r.session.ok_or_else(|| missing("session"))?),
        next_kind: kind_name(next.kind),
        next_minutes: next.planned_minutes,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CurrentOut {
    /// The running or paused session, if any.
    pub session: Option<SessionOut>,
    pub next_kind: String,
    pub next_minutes: i32,
    pub focus_sessions_today: i32,
}

async fn current(mesh: Mesh, caller: Caller, _: NoInput) -> Result<CurrentOut, ToolError> {
    let r = client(&mesh)?
        .get_current_session(caller.request(pb::GetCurrentSessionRequest {}))
        .await?
        .into_inner();
    let next = r.next.unwrap_or_default();
    Ok(CurrentOut {
        session: r.session.map(out),
        next_kind: kind_name(next.kind),
        next_minutes: next.planned_minutes,
        focus_sessions_today: next.focus_sessions_today,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsInput {
    /// How many days back, 1-365; default 7.
    #[serde(default)]
    #[schemars(range(min = 1, max = 365))]
    pub days: Option<i64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DayOut {
    pub day: String,
    pub focus_minutes: i64,
    pub sessions: i32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StatsOut {
    pub time_zone: String,
    pub focus_sessions_completed: i32,
    pub focus_sessions_abandoned: i32,
    pub focus_minutes: i64,
    pub by_day: Vec<DayOut>,
    pub internal_interruptions: i32,
    pub external_interruptions: i32,
}

async fn stats(mesh: Mesh, caller: Caller, i: StatsInput) -> Result<StatsOut, ToolError> {
    let now = Utc::now();
    let days = i.days.unwrap_or(7).clamp(1, 365);
    let s = client(&mesh)?
        .get_focus_stats(caller.request(pb::GetFocusStatsRequest {
            start_time: Some(pb_ts(now - Duration::days(days))),
            end_time: Some(pb_ts(now + Duration::minutes(1))),
        }))
        .await?
        .into_inner()
        .stats
        .ok_or_else(|| missing("stats"))?;
    Ok(StatsOut {
        time_zone: s.time_zone,
        focus_sessions_completed: s.focus_sessions_completed,
        focus_sessions_abandoned: s.focus_sessions_abandoned,
        focus_minutes: s.focus_minutes,
        by_day: s
            .by_day
            .into_iter()
            .map(|b| DayOut {
                day: b.key,
                focus_minutes: b.focus_minutes,
                sessions: b.sessions,
            })
            .collect(),
        internal_interruptions: s.internal_interruptions,
        external_interruptions: s.external_interruptions,
    })
}

/// `focus.start`, `.pause`, `.resume`, `.complete`, `.current`, `.stats`.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new::<StartInput, SessionOut, _, _>(
            "focus.start",
            "Start a focus session",
            "Starts a pomodoro (or a break) timed by the server, optionally on a task; its length defaults to the user's preference.",
            Category::Focus,
            SERVICE,
            start,
        ),
        Tool::new::<SessionInput, SessionOut, _, _>(
            "focus.pause",
            "Pause the session",
            "Pauses the running session; paused time is not focus time, and a pause ends by itself when the pause budget is used up.",
            Category::Focus,
            SERVICE,
            pause,
        ),
        Tool::new::<SessionInput, SessionOut, _, _>(
            "focus.resume",
            "Resume the session",
            "Resumes a paused session; its end moves by the time paused.",
            Category::Focus,
            SERVICE,
            resume,
        ),
        Tool::new::<SessionInput, CompletedOut, _, _>(
            "focus.complete",
            "Complete the session",
            "Completes the session now and proposes the next one (a short break, a long break every N sessions, or focus).",
            Category::Focus,
            SERVICE,
            complete,
        ),
        Tool::new::<NoInput, CurrentOut, _, _>(
            "focus.current",
            "The current session",
            "The running or paused session, if any, and what to take next.",
            Category::Focus,
            SERVICE,
            current,
        ),
        Tool::new::<StatsInput, StatsOut, _, _>(
            "focus.stats",
            "Focus statistics",
            "Completed and abandoned sessions, focus minutes by day and interruptions, in the user's time zone.",
            Category::Focus,
            SERVICE,
            stats,
        ),
    ]
}
