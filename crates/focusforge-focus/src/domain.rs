//! Focus sessions as a server-side state machine, with no wire types.
//!
//! running <-> paused -> completed | abandoned. The server keeps time: a
//! running session completes at `start + planned + pauses`, a pause ends by
//! itself when the pause budget is used up, and every read or command first
//! applies what the clock says has happened ([`Body::settle`]), so the
//! answer is the same whether or not the timer job has run yet. One session
//! at a time per user: a pointer document names the open one and is written
//! on its version before the session is created.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};
use focusforge_core::{Clock, Error, Result, UserId, Violations, new_id};
use focusforge_gamification::streak::Calendar;
use focusforge_store::{
    Document, Filter, NewDocument, Order, Precondition, Query, SharedStore, SortKey, StoreError,
    page_token,
};
use serde::{Deserialize, Serialize};

pub const SESSIONS: &str = "focus_sessions";
pub const CURRENT: &str = "focus_current";
const CURRENT_ID: &str = "current";

/// Limits of the contract, for validation, the MCP schemas and the docs.
pub mod limits {
    pub const PLANNED_MIN: i64 = 1;
    pub const PLANNED_MAX: i64 = 240;
    pub const NOTE_CHARS: usize = 500;
    pub const REQUEST_ID_CHARS: usize = 100;
    /// Request ids a session remembers, so a retried command is answered
    /// with the session instead of a second effect.
    pub const REQUESTS_REMEMBERED: usize = 32;
    pub const INTERRUPTIONS: usize = 100;
    pub const PAGE_SIZE_DEFAULT: usize = 50;
    pub const PAGE_SIZE_MAX: i64 = 100;
    /// Sessions read for one stats answer; more are reported as truncated.
    pub const STATS_SESSIONS: usize = 1000;
    /// Tasks whose estimates one stats answer looks up.
    pub const STATS_TASKS: usize = 20;
}

/// `[service.focus]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Minutes a session may be paused in all; a pause that uses the
    /// budget up ends by itself and the session runs on.
    pub pause_budget_minutes: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pause_budget_minutes: 10,
        }
    }
}

impl Settings {
    pub fn check(&self) -> std::result::Result<(), String> {
        if (0..=240).contains(&self.pause_budget_minutes) {
            Ok(())
        } else {
            Err("[service.focus]: pause_budget_minutes must be 0-240".into())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Focus,
    ShortBreak,
    LongBreak,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Paused,
    Completed,
    Abandoned,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Completed => "completed",
            State::Abandoned => "abandoned",
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, State::Running | State::Paused)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptionKind {
    Internal,
    External,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interruption {
    pub kind: InterruptionKind,
    pub note: String,
    pub at: i64,
}

/// The stored session. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    pub kind: Kind,
    pub state: State,
    pub task_id: Option<String>,
    pub planned_minutes: i32,
    pub started_at: i64,
    pub paused_at: Option<i64>,
    /// Milliseconds of pauses that have ended.
    pub paused_ms: i64,
    pub pause_budget_ms: i64,
    pub ended_at: Option<i64>,
    pub by_timer: bool,
    pub interruptions: Vec<Interruption>,
    pub requests: Vec<String>,
}

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Body {
    fn planned_ms(&self) -> i64 {
        i64::from(self.planned_minutes) * 60_000
    }

    /// When a running session completes: its start, planned length and
    /// ended pauses.
    fn end_if_running(&self) -> i64 {
        self.started_at + self.planned_ms() + self.paused_ms
    }

    /// When a running pause ends by itself.
    fn pause_ends(&self) -> Option<i64> {
        self.paused_at
            .map(|p| p + (self.pause_budget_ms - self.paused_ms).max(0))
    }

    /// The next instant the clock changes the session by itself.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        match self.state {
            State::Running => Some(from_ms(self.end_if_running())),
            State::Paused => self.pause_ends().map(from_ms),
            State::Completed | State::Abandoned => None,
        }
    }

    /// Applies what the clock says happened by `now`: a pause past its
    /// budget ended at the budget, and a running session past its end
    /// completed at its end. Returns whether anything changed.
    pub fn settle(&mut self, now: i64) -> bool {
        let mut changed = false;
        if self.state == State::Paused
            && let Some(ends) = self.pause_ends()
            && now >= ends
        {
            self.paused_ms = self.pause_budget_ms.max(self.paused_ms);
            self.paused_at = None;
            self.state = State::Running;
            changed = true;
        }
        if self.state == State::Running && now >= self.end_if_running() {
            self.state = State::Completed;
            self.ended_at = Some(self.end_if_running());
            self.by_timer = true;
            changed = true;
        }
        changed
    }

    /// Milliseconds paused by `now`, a running pause included.
    fn paused_by(&self, now: i64) -> i64 {
        self.paused_ms + self.paused_at.map_or(0, |p| (now - p).max(0))
    }

    /// Milliseconds worked by `now` (or by the end).
    pub fn focused_ms(&self, now: i64) -> i64 {
        let until = self.ended_at.unwrap_or(now);
        (until - self.started_at - self.paused_by(until)).max(0)
    }

    fn end_pause(&mut self, now: i64) {
        if let Some(p) = self.paused_at.take() {
            self.paused_ms += (now - p).max(0);
        }
    }
}

/// A session as the API shows it, at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub body: Body,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    pub now: DateTime<Utc>,
}

impl Session {
    pub fn planned_end(&self) -> Option<DateTime<Utc>> {
        match self.body.state {
            State::Running => Some(from_ms(self.body.end_if_running())),
            // Were it resumed now.
            State::Paused => Some(from_ms(
                self.body.end_if_running() + self.body.paused_by(ms(self.now))
                    - self.body.paused_ms,
            )),
            State::Completed | State::Abandoned => None,
        }
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        from_ms(self.body.started_at)
    }

    pub fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.body.ended_at.map(from_ms)
    }

    pub fn paused_at(&self) -> Option<DateTime<Utc>> {
        self.body.paused_at.map(from_ms)
    }

    pub fn paused_seconds(&self) -> i64 {
        let until = self.body.ended_at.unwrap_or(ms(self.now));
        self.body.paused_by(until) / 1000
    }

    pub fn pause_budget_left_seconds(&self) -> i64 {
        (self.body.pause_budget_ms - self.body.paused_by(ms(self.now))).max(0) / 1000
    }

    pub fn focused_seconds(&self) -> i64 {
        self.body.focused_ms(ms(self.now)) / 1000
    }

    /// Whole minutes focused: what the session counts for.
    pub fn focused_minutes(&self) -> i64 {
        self.body.focused_ms(ms(self.now)) / 60_000
    }
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub session: Session,
    /// The session completed in this write (by the command or the clock).
    pub completed: bool,
    /// The write changed when the clock acts next: schedule a timer.
    pub reschedule: bool,
    /// The command did something (not a replay of a request id, not a
    /// no-op): what an event reports.
    pub applied: bool,
    /// A pause past its budget ended in this write: the clock resumed the
    /// session.
    pub resumed: bool,
}

/// The user's focus preferences, from the profile.
#[derive(Debug, Clone)]
pub struct Prefs {
    pub focus_minutes: i32,
    pub short_break_minutes: i32,
    pub long_break_minutes: i32,
    pub long_break_every: i32,
    pub calendar: Calendar,
}

impl Default for Prefs {
    fn default() -> Self {
        Self {
            focus_minutes: 25,
            short_break_minutes: 5,
            long_break_minutes: 15,
            long_break_every: 4,
            calendar: Calendar::default(),
        }
    }
}

/// The session to take next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub kind: Kind,
    pub planned_minutes: i32,
    pub focus_sessions_today: i32,
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub task_id: Option<String>,
}

pub struct SessionPage {
    pub sessions: Vec<Session>,
    pub next_page_token: String,
}

/// Per task: sessions and minutes (the estimate comes from the task).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFocus {
    pub completed_sessions: i32,
    pub focus_minutes: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub time_zone: String,
    pub focus_completed: i32,
    pub focus_abandoned: i32,
    pub breaks_completed: i32,
    pub focus_minutes: i64,
    /// Local day -> (minutes, sessions).
    pub by_day: BTreeMap<String, (i64, i32)>,
    /// Local hour of the start -> (minutes, sessions).
    pub by_hour: BTreeMap<u32, (i64, i32)>,
    pub internal_interruptions: i32,
    pub external_interruptions: i32,
    pub tasks: BTreeMap<String, TaskFocus>,
    pub truncated: bool,
}

/// A command on an open session.
#[derive(Debug, Clone)]
pub enum Command {
    Pause,
    Resume,
    Complete,
    Abandon,
    Interrupt(InterruptionKind, String),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Complete => "complete",
            Command::Abandon => "abandon",
            Command::Interrupt(..) => "record an interruption on",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pointer {
    session: Option<String>,
}

/// The focus-session domain. Every method acts on the given user only.
#[derive(Clone)]
pub struct Focus {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    settings: Arc<Settings>,
}

fn store_err(e: StoreError) -> Error {
    e.into_domain("focus session")
}

fn to_session(doc: Document, now: DateTime<Utc>) -> Result<Session> {
    let body: Body = serde_json::from_value(doc.body)
        .map_err(|e| Error::internal(format!("session {} is unreadable: {e}", doc.id)))?;
    Ok(Session {
        id: doc.id,
        body,
        updated_at: doc.updated_at,
        version: doc.version,
        now,
    })
}

fn remember(body: &mut Body, request_id: &str) {
    if request_id.is_empty() {
        return;
    }
    if body.requests.len() >= limits::REQUESTS_REMEMBERED {
        body.requests.remove(0);
    }
    body.requests.push(request_id.to_owned());
}

impl Focus {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self {
            store,
            clock,
            settings: Arc::new(settings),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Starts a session. `planned_minutes` 0 takes the profile's length
    /// for the kind.
    pub async fn start(
        &self,
        user: &UserId,
        kind: Kind,
        task_id: Option<String>,
        planned_minutes: i32,
        request_id: &str,
        prefs: &Prefs,
    ) -> Result<Outcome> {
        let mut v = Violations::new();
        if planned_minutes != 0 {
            v.range(
                "planned_minutes",
                planned_minutes.into(),
                limits::PLANNED_MIN,
                limits::PLANNED_MAX,
            );
        }
        v.optional_text("request_id", request_id, limits::REQUEST_ID_CHARS);
        if let Some(t) = &task_id {
            v.text("task_id", t, 100);
        }
        v.finish()?;
        let planned = match (planned_minutes, kind) {
            (0, Kind::Focus) => prefs.focus_minutes,
            (0, Kind::ShortBreak) => prefs.short_break_minutes,
            (0, Kind::LongBreak) => prefs.long_break_minutes,
            (m, _) => m,
        }
        .clamp(limits::PLANNED_MIN as i32, limits::PLANNED_MAX as i32);
        let id = if request_id.is_empty() {
            new_id()
        } else {
            format!(
                "s{:016x}",
                page_token::fingerprint(&format!("focus-start:{request_id}"))
            )
        };
        if !request_id.is_empty()
            && let Some(doc) = self
                .store
                .get(SESSIONS, user, &id)
                .await
                .map_err(store_err)?
        {
            return Ok(Outcome {
                session: to_session(doc, self.now())?,
                completed: false,
                reschedule: false,
                applied: false,
                resumed: false,
            });
        }
        // Claim the pointer first: a crash before the session is written
        // leaves a pointer to nothing, which counts as no open session once
        // it is a few seconds old (until then, a start in flight).
        let mut claimed = false;
        for _ in 0..16 {
            let (pointer, version, updated) = self.pointer(user).await?;
            if let Some(open) = pointer.session.as_deref() {
                match self.settled(user, open).await? {
                    Some(o) if o.session.body.state.is_open() => {
                        return Err(Error::FailedPrecondition(format!(
                            "session {} is {}; complete or abandon it first",
                            o.session.id,
                            o.session.body.state.as_str()
                        )));
                    }
                    None if self.now() - updated < Duration::seconds(10) => {
                        return Err(Error::FailedPrecondition(
                            "another session is being started".into(),
                        ));
                    }
                    _ => {}
                }
            }
            let body = serde_json::to_value(Pointer {
                session: Some(id.clone()),
            })
            .map_err(Error::internal)?;
            match self
                .store
                .replace(
                    CURRENT,
                    user,
                    CURRENT_ID,
                    body,
                    None,
                    Precondition::Version(version),
                )
                .await
            {
                Ok(_) => {
                    claimed = true;
                    break;
                }
                Err(StoreError::VersionMismatch { .. }) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        if !claimed {
            return Err(Error::Unavailable(
                "sessions are being started concurrently, try again".into(),
            ));
        }
        let now = self.now();
        let mut body = Body {
            kind,
            state: State::Running,
            task_id,
            planned_minutes: planned,
            started_at: ms(now),
            paused_at: None,
            paused_ms: 0,
            pause_budget_ms: self.settings.pause_budget_minutes * 60_000,
            ended_at: None,
            by_timer: false,
            interruptions: Vec::new(),
            requests: Vec::new(),
        };
        remember(&mut body, request_id);
        let doc = NewDocument {
            id: id.clone(),
            user_id: user.clone(),
            body: serde_json::to_value(&body).map_err(Error::internal)?,
            expires_at: None,
        };
        let doc = match self.store.insert(SESSIONS, doc).await {
            Ok(doc) => doc,
            Err(StoreError::AlreadyExists) => self
                .store
                .get(SESSIONS, user, &id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| Error::internal("session vanished after creation"))?,
            Err(e) => return Err(store_err(e)),
        };
        Ok(Outcome {
            session: to_session(doc, now)?,
            completed: false,
            reschedule: true,
            applied: true,
            resumed: false,
        })
    }

    async fn pointer(&self, user: &UserId) -> Result<(Pointer, i64, DateTime<Utc>)> {
        loop {
            if let Some(doc) = self
                .store
                .get(CURRENT, user, CURRENT_ID)
                .await
                .map_err(store_err)?
            {
                let p: Pointer = serde_json::from_value(doc.body).unwrap_or_default();
                return Ok((p, doc.version, doc.updated_at));
            }
            let new = NewDocument {
                id: CURRENT_ID.into(),
                user_id: user.clone(),
                body: serde_json::to_value(Pointer::default()).map_err(Error::internal)?,
                expires_at: None,
            };
            match self.store.insert(CURRENT, new).await {
                Ok(doc) => return Ok((Pointer::default(), doc.version, doc.updated_at)),
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
    }

    /// The session with what the clock did to it written down, or `None`.
    async fn settled(&self, user: &UserId, id: &str) -> Result<Option<Outcome>> {
        match self.change(user, id, "", |_b, _now| Ok(false)).await {
            Ok(o) => Ok(Some(o)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Settles the session at now, then applies `change` (which returns
    /// whether it changed anything) and writes on the session's version.
    async fn change<F>(
        &self,
        user: &UserId,
        id: &str,
        request_id: &str,
        change: F,
    ) -> Result<Outcome>
    where
        F: Fn(&mut Body, i64) -> Result<bool>,
    {
        if id.is_empty() {
            return Err(Error::invalid("id", "is required"));
        }
        let mut v = Violations::new();
        v.optional_text("request_id", request_id, limits::REQUEST_ID_CHARS);
        v.finish()?;
        let now = self.now();
        // (completed in this write, the next due moment moved, the command
        // applied, the clock ended a pause)
        let mut outcome = (false, false, false, false);
        let doc = focusforge_store::modify(
            self.store.as_ref(),
            SESSIONS,
            user,
            id,
            "focus session",
            None,
            |doc| {
                let mut body: Body = serde_json::from_value(doc.body.clone())
                    .map_err(|e| Error::internal(format!("session is unreadable: {e}")))?;
                if !request_id.is_empty() && body.requests.iter().any(|r| r == request_id) {
                    outcome = (false, false, false, false);
                    return Ok(None);
                }
                let was_open = body.state.is_open();
                let was_paused = body.state == State::Paused;
                let due_before = body.next_due();
                let settled = body.settle(ms(now));
                let resumed = was_paused && body.state != State::Paused;
                let changed = change(&mut body, ms(now))?;
                if !(settled || changed) {
                    outcome = (false, false, false, false);
                    return Ok(None);
                }
                if changed {
                    remember(&mut body, request_id);
                }
                let completed = was_open && body.state == State::Completed;
                outcome = (completed, body.next_due() != due_before, changed, resumed);
                serde_json::to_value(&body)
                    .map(Some)
                    .map_err(Error::internal)
            },
        )
        .await?;
        let session = to_session(doc, now)?;
        Ok(Outcome {
            session,
            completed: outcome.0,
            reschedule: outcome.1,
            applied: outcome.2,
            resumed: outcome.3,
        })
    }

    pub async fn command(
        &self,
        user: &UserId,
        id: &str,
        command: Command,
        request_id: &str,
    ) -> Result<Outcome> {
        if let Command::Interrupt(_, note) = &command {
            let mut v = Violations::new();
            v.optional_text("note", note, limits::NOTE_CHARS);
            v.finish()?;
        }
        self.change(user, id, request_id, |b, now| {
            let wrong = |b: &Body| {
                Error::FailedPrecondition(format!(
                    "cannot {} a session that is {}",
                    command.name(),
                    b.state.as_str()
                ))
            };
            match (&command, b.state) {
                (Command::Pause, State::Running) => {
                    if b.pause_budget_ms - b.paused_ms <= 0 {
                        return Err(Error::FailedPrecondition(
                            "the session's pause budget is used up".into(),
                        ));
                    }
                    b.state = State::Paused;
                    b.paused_at = Some(now);
                }
                (Command::Resume, State::Paused) => {
                    b.end_pause(now);
                    b.state = State::Running;
                }
                (Command::Complete, State::Running | State::Paused) => {
                    b.end_pause(now);
                    b.state = State::Completed;
                    b.ended_at = Some(now);
                }
                (Command::Abandon, State::Running | State::Paused) => {
                    b.end_pause(now);
                    b.state = State::Abandoned;
                    b.ended_at = Some(now);
                }
                (Command::Interrupt(kind, note), State::Running | State::Paused) => {
                    if b.interruptions.len() >= limits::INTERRUPTIONS {
                        return Err(Error::FailedPrecondition(format!(
                            "a session records at most {} interruptions",
                            limits::INTERRUPTIONS
                        )));
                    }
                    b.interruptions.push(Interruption {
                        kind: *kind,
                        note: note.clone(),
                        at: now,
                    });
                }
                _ => return Err(wrong(b)),
            }
            Ok(true)
        })
        .await
    }

    /// The session, settled.
    pub async fn get(&self, user: &UserId, id: &str) -> Result<Outcome> {
        self.change(user, id, "", |_b, _now| Ok(false)).await
    }

    /// The open session, if any.
    pub async fn current(&self, user: &UserId) -> Result<Option<Outcome>> {
        let (pointer, _, _) = self.pointer(user).await?;
        let Some(id) = pointer.session else {
            return Ok(None);
        };
        self.settled(user, &id).await
    }

    /// Focus sessions completed in the user's day of `now`, and the session
    /// to take after `last` (a break after focus, focus after a break).
    pub async fn next(&self, user: &UserId, last: Option<Kind>, prefs: &Prefs) -> Result<Next> {
        let now = self.now();
        let today = prefs.calendar.day(now);
        let page = self
            .store
            .find(
                SESSIONS,
                user,
                &Query {
                    filters: vec![Filter::Range {
                        field: "started_at".into(),
                        gte: Some(ms(now - Duration::hours(30))),
                        lt: None,
                    }],
                    order: Order::default(),
                    limit: 200,
                    after: None,
                },
            )
            .await
            .map_err(store_err)?;
        let mut today_focus = 0;
        for doc in page.documents {
            let s = to_session(doc, now)?;
            if s.body.kind == Kind::Focus
                && s.body.state == State::Completed
                && s.ended_at().is_some_and(|e| prefs.calendar.day(e) == today)
            {
                today_focus += 1;
            }
        }
        let every = prefs.long_break_every.max(1);
        let next = match last {
            Some(Kind::Focus) if today_focus > 0 && today_focus % every == 0 => Next {
                kind: Kind::LongBreak,
                planned_minutes: prefs.long_break_minutes,
                focus_sessions_today: today_focus,
            },
            Some(Kind::Focus) => Next {
                kind: Kind::ShortBreak,
                planned_minutes: prefs.short_break_minutes,
                focus_sessions_today: today_focus,
            },
            _ => Next {
                kind: Kind::Focus,
                planned_minutes: prefs.focus_minutes,
                focus_sessions_today: today_focus,
            },
        };
        Ok(next)
    }

    fn filters(filter: &SessionFilter) -> Vec<Filter> {
        let mut out = Vec::new();
        if filter.from.is_some() || filter.to.is_some() {
            out.push(Filter::Range {
                field: "started_at".into(),
                gte: filter.from.map(ms),
                lt: filter.to.map(ms),
            });
        }
        if let Some(t) = &filter.task_id {
            out.push(Filter::eq("task_id", t.as_str()));
        }
        out
    }

    pub async fn list(
        &self,
        user: &UserId,
        filter: SessionFilter,
        page_size: i32,
        token: &str,
    ) -> Result<SessionPage> {
        let mut v = Violations::new();
        v.range("page_size", page_size.into(), 0, limits::PAGE_SIZE_MAX);
        if let (Some(a), Some(b)) = (filter.from, filter.to) {
            v.check(a < b, "end_time", "must be later than start_time");
        }
        v.finish()?;
        let filters = Self::filters(&filter);
        let fingerprint = page_token::fingerprint(&format!("focus:{filters:?}"));
        let after = page_token::decode_request(token, fingerprint)?;
        let limit = if page_size == 0 {
            limits::PAGE_SIZE_DEFAULT
        } else {
            page_size as usize
        };
        let now = self.now();
        let page = self
            .store
            .find(
                SESSIONS,
                user,
                &Query {
                    filters,
                    order: Order {
                        key: SortKey::CreatedAt,
                        descending: true,
                    },
                    limit,
                    after,
                },
            )
            .await
            .map_err(store_err)?;
        let mut sessions = Vec::with_capacity(page.documents.len());
        for doc in page.documents {
            let mut s = to_session(doc, now)?;
            // Shown as the clock has it; written down by the next command.
            s.body.settle(ms(now));
            sessions.push(s);
        }
        Ok(SessionPage {
            sessions,
            next_page_token: page
                .next
                .map(|c| page_token::encode(&c, fingerprint))
                .unwrap_or_default(),
        })
    }

    /// The user's sessions written at or after `since`, in batches in no
    /// particular order, each as the clock has it, and last the open
    /// session whenever it was written: a session the clock completed is
    /// written down only by the next command, so a reader keeping its own
    /// view learns of that completion here.
    pub fn changes(
        &self,
        user: &UserId,
        since: DateTime<Utc>,
    ) -> impl futures::Stream<Item = Result<Vec<Session>>> + Send + 'static {
        use futures::StreamExt;
        let now = self.now();
        let batches = focusforge_store::changes(
            self.store.clone(),
            SESSIONS,
            user,
            since,
            now + Duration::minutes(1),
        )
        .into_stream()
        .map(move |batch| {
            batch
                .map_err(store_err)?
                .into_iter()
                .map(|doc| {
                    let mut s = to_session(doc, now)?;
                    s.body.settle(ms(now));
                    Ok(s)
                })
                .collect()
        });
        let (store, user) = (self.store.clone(), user.clone());
        let open = futures::stream::once(async move {
            let pointer = store
                .get(CURRENT, &user, CURRENT_ID)
                .await
                .map_err(store_err)?
                .and_then(|d| serde_json::from_value::<Pointer>(d.body).ok())
                .and_then(|p| p.session);
            let Some(id) = pointer else {
                return Ok(Vec::new());
            };
            let Some(doc) = store.get(SESSIONS, &user, &id).await.map_err(store_err)? else {
                return Ok(Vec::new());
            };
            let mut s = to_session(doc, now)?;
            s.body.settle(ms(now));
            Ok(vec![s])
        });
        batches
            .chain(open)
            .filter(|b| std::future::ready(!matches!(b, Ok(v) if v.is_empty())))
    }

    /// Figures over the sessions started in `[from, to)`, in the user's days.
    pub async fn stats(
        &self,
        user: &UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        calendar: &Calendar,
    ) -> Result<Stats> {
        if from >= to {
            return Err(Error::invalid("end_time", "must be later than start_time"));
        }
        let now = self.now();
        let mut stats = Stats {
            time_zone: calendar.tz.name().to_owned(),
            ..Stats::default()
        };
        let mut after = None;
        let mut read = 0;
        loop {
            let page = self
                .store
                .find(
                    SESSIONS,
                    user,
                    &Query {
                        filters: vec![Filter::Range {
                            field: "started_at".into(),
                            gte: Some(ms(from)),
                            lt: Some(ms(to)),
                        }],
                        order: Order::default(),
                        limit: 200,
                        after,
                    },
                )
                .await
                .map_err(store_err)?;
            for doc in page.documents {
                read += 1;
                let mut s = to_session(doc, now)?;
                s.body.settle(ms(now));
                add(&mut stats, &s, calendar);
            }
            after = page.next;
            if after.is_none() {
                break;
            }
            if read >= limits::STATS_SESSIONS {
                stats.truncated = true;
                break;
            }
        }
        Ok(stats)
    }
}

fn add(stats: &mut Stats, s: &Session, calendar: &Calendar) {
    for i in &s.body.interruptions {
        match i.kind {
            InterruptionKind::Internal => stats.internal_interruptions += 1,
            InterruptionKind::External => stats.external_interruptions += 1,
        }
    }
    match (s.body.kind, s.body.state) {
        (Kind::Focus, State::Completed) => {
            let minutes = s.focused_minutes();
            stats.focus_completed += 1;
            stats.focus_minutes += minutes;
            let start = s.started_at();
            let day = calendar.day(start).to_string();
            let hour = start.with_timezone(&calendar.tz).hour();
            let d = stats.by_day.entry(day).or_default();
            d.0 += minutes;
            d.1 += 1;
            let h = stats.by_hour.entry(hour).or_default();
            h.0 += minutes;
            h.1 += 1;
            if let Some(t) = &s.body.task_id
                && (stats.tasks.contains_key(t) || stats.tasks.len() < limits::STATS_TASKS)
            {
                let t = stats.tasks.entry(t.clone()).or_default();
                t.completed_sessions += 1;
                t.focus_minutes += minutes;
            }
        }
        (Kind::Focus, State::Abandoned) => stats.focus_abandoned += 1,
        (Kind::ShortBreak | Kind::LongBreak, State::Completed) => stats.breaks_completed += 1,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(planned: i32, budget_min: i64) -> Body {
        Body {
            kind: Kind::Focus,
            state: State::Running,
            task_id: None,
            planned_minutes: planned,
            started_at: 0,
            paused_at: None,
            paused_ms: 0,
            pause_budget_ms: budget_min * 60_000,
            ended_at: None,
            by_timer: false,
            interruptions: Vec::new(),
            requests: Vec::new(),
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn a_session_completes_at_its_end_with_pauses_excluded() {
        let mut b = body(25, 10);
        assert!(!b.settle(24 * MIN));
        b.state = State::Paused;
        b.paused_at = Some(5 * MIN);
        // Resumed after 3 minutes: the end moves by 3.
        b.end_pause(8 * MIN);
        b.state = State::Running;
        assert!(!b.settle(27 * MIN));
        assert!(b.settle(28 * MIN));
        assert_eq!(b.state, State::Completed);
        assert_eq!(b.ended_at, Some(28 * MIN));
        assert_eq!(b.focused_ms(40 * MIN), 25 * MIN);
    }

    #[test]
    fn a_pause_ends_by_itself_when_the_budget_is_used_up() {
        let mut b = body(25, 10);
        b.state = State::Paused;
        b.paused_at = Some(5 * MIN);
        assert!(!b.settle(14 * MIN));
        // The budget ends at 15; the session then runs to 35 and completes.
        assert!(b.settle(40 * MIN));
        assert_eq!(b.state, State::Completed);
        assert_eq!(b.ended_at, Some(35 * MIN));
        assert_eq!(b.paused_ms, 10 * MIN);
    }
}
