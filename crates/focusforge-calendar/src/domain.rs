//! The calendar's store: events (one document per event or series), and one
//! state document per user (event count, feed token, Google link).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use focusforge_core::{Clock, Error, Result, UserId, Violations, check_id, new_id};
use focusforge_store::{
    Cursor, Document, Filter, NewDocument, Precondition, Query, SharedStore, StoreError, page_token,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::{Event, EventFields, Kind, Source, When, limits};
use crate::schedule::{self, Change};

pub const EVENTS: &str = "calendar_events";
pub const STATE: &str = "calendar_state";
const STATE_ID: &str = "state";

/// The stored body of an event. Times are epoch ms; `first_ms` and
/// `span_end_ms` (the first start and the last end of a series) are what a
/// range query filters on.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    title: String,
    description: String,
    location: String,
    kind: Kind,
    all_day: bool,
    start_ms: i64,
    end_ms: i64,
    #[serde(default)]
    start_date: Option<NaiveDate>,
    #[serde(default)]
    end_date: Option<NaiveDate>,
    tz: String,
    rrule: String,
    exdates: Vec<i64>,
    busy: bool,
    task_id: String,
    block_id: String,
    source: Source,
    uid: String,
    sequence: i32,
    placement_reason: String,
    external_id: String,
    #[serde(default)]
    pushed_sequence: Option<i32>,
    first_ms: i64,
    span_end_ms: i64,
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Body {
    fn fields(&self) -> EventFields {
        EventFields {
            title: self.title.clone(),
            description: self.description.clone(),
            location: self.location.clone(),
            when: match (self.all_day, self.start_date, self.end_date) {
                (true, Some(start), Some(end)) => When::AllDay { start, end },
                _ => When::Timed {
                    start: from_ms(self.start_ms),
                    end: from_ms(self.end_ms),
                },
            },
            tz: self.tz.clone(),
            rrule: self.rrule.clone(),
            exdates: self.exdates.iter().copied().map(from_ms).collect(),
            busy: self.busy,
        }
    }

    fn set_fields(&mut self, f: &EventFields) {
        self.title = f.title.trim().to_owned();
        self.description.clone_from(&f.description);
        self.location = f.location.trim().to_owned();
        let (s, e) = f.first();
        self.start_ms = s.timestamp_millis();
        self.end_ms = e.timestamp_millis();
        match f.when {
            When::Timed { .. } => {
                self.all_day = false;
                self.start_date = None;
                self.end_date = None;
            }
            When::AllDay { start, end } => {
                self.all_day = true;
                self.start_date = Some(start);
                self.end_date = Some(end);
            }
        }
        self.tz.clone_from(&f.tz);
        self.rrule = f.rrule.trim().trim_start_matches("RRULE:").to_owned();
        self.exdates = f.exdates.iter().map(DateTime::timestamp_millis).collect();
        self.exdates.sort_unstable();
        self.exdates.dedup();
        self.busy = f.busy;
        self.first_ms = self.start_ms;
        let mut fields = f.clone();
        fields.rrule.clone_from(&self.rrule);
        self.span_end_ms = fields.span_end_ms();
    }
}

fn to_event(doc: Document) -> Result<Event> {
    let b: Body = serde_json::from_value(doc.body)
        .map_err(|e| Error::internal(format!("event {} is unreadable: {e}", doc.id)))?;
    Ok(Event {
        id: doc.id,
        fields: b.fields(),
        kind: b.kind,
        task_id: b.task_id,
        block_id: b.block_id,
        source: b.source,
        uid: b.uid,
        sequence: b.sequence,
        placement_reason: b.placement_reason,
        external_id: b.external_id,
        pushed_sequence: b.pushed_sequence,
        created_at: doc.created_at,
        updated_at: doc.updated_at,
        version: doc.version,
    })
}

fn store_err(e: StoreError) -> Error {
    e.into_domain("event")
}

/// Who an event is for beyond its fields.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub kind: Kind,
    pub source: Source,
    pub task_id: String,
    pub block_id: String,
    pub placement_reason: String,
    pub external_id: String,
    /// Imported events keep their UID; others get `<id>@focusforge`.
    pub uid: Option<String>,
    pub sequence: i32,
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub all_day: Option<bool>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<Option<NaiveDate>>,
    pub tz: Option<String>,
    pub rrule: Option<String>,
    pub exdates: Option<Vec<DateTime<Utc>>>,
    pub busy: Option<bool>,
}

impl EventPatch {
    fn apply(&self, f: &mut EventFields) -> Result<()> {
        if let Some(t) = &self.title {
            f.title.clone_from(t);
        }
        if let Some(d) = &self.description {
            f.description.clone_from(d);
        }
        if let Some(l) = &self.location {
            f.location.clone_from(l);
        }
        if let Some(tz) = &self.tz {
            f.tz.clone_from(tz);
        }
        if let Some(r) = &self.rrule {
            f.rrule.clone_from(r);
        }
        if let Some(x) = &self.exdates {
            f.exdates.clone_from(x);
        }
        if let Some(b) = self.busy {
            f.busy = b;
        }
        let all_day = self
            .all_day
            .unwrap_or(matches!(f.when, When::AllDay { .. }));
        f.when = if all_day {
            let (start, end) = match f.when {
                When::AllDay { start, end } => (start, end),
                When::Timed { start, .. } => {
                    let d = start.with_timezone(&f.tz()).date_naive();
                    (d, d.succ_opt().unwrap_or(d))
                }
            };
            let days = end - start;
            let start = self.start_date.unwrap_or(start);
            let end = match self.end_date {
                Some(Some(e)) => e,
                Some(None) => start.succ_opt().unwrap_or(start),
                // A moved start keeps the length.
                None => start + days,
            };
            When::AllDay { start, end }
        } else {
            let (start, end) = match f.when {
                When::Timed { start, end } => (start, end),
                When::AllDay { .. } => {
                    let (s, e) = f.first();
                    (s, e)
                }
            };
            When::Timed {
                start: self.start.unwrap_or(start),
                end: self.end.unwrap_or(end),
            }
        };
        Ok(())
    }
}

/// One occurrence in a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    pub event: Arc<Event>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A Google Calendar link.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GoogleLink {
    pub calendar_id: String,
    /// Sealed with the configured key (see `focusforge_auth::seal`).
    pub refresh_token: String,
    pub access_token: String,
    pub access_expires_ms: i64,
    pub sync_token: Option<String>,
    pub last_sync_ms: Option<i64>,
    pub last_error: String,
}

/// A link being made: the OAuth state and PKCE verifier.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PendingLink {
    pub state: String,
    /// Sealed.
    pub verifier: String,
    pub calendar_id: String,
    pub expires_ms: i64,
}

/// The per-user state document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub events: u32,
    /// The feed token's secret (a share link's secret, like any calendar
    /// app's "secret address": shown again on request, revoked by rotating).
    pub feed_secret: Option<String>,
    pub google: Option<GoogleLink>,
    pub pending: Option<PendingLink>,
    /// Google ids of pushed focus blocks deleted here, to delete there.
    pub google_deletes: Vec<String>,
}

/// A user's calendar.
#[derive(Clone)]
pub struct Calendar {
    store: SharedStore,
    clock: Arc<dyn Clock>,
}

fn page_fingerprint(from: DateTime<Utc>, to: DateTime<Utc>, kind: Option<Kind>) -> u64 {
    page_token::fingerprint(&format!(
        "{}|{}|{}",
        from.timestamp_millis(),
        to.timestamp_millis(),
        kind.map_or("", Kind::as_str)
    ))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Calendar {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Changes one stored event under optimistic concurrency: `change`
    /// edits its body and says whether there is anything to write.
    async fn change_event<F>(
        &self,
        user: &UserId,
        id: &str,
        expected_version: Option<i64>,
        mut change: F,
    ) -> Result<Document>
    where
        F: FnMut(&mut Body) -> Result<bool>,
    {
        focusforge_store::modify(
            self.store.as_ref(),
            EVENTS,
            user,
            id,
            "event",
            expected_version,
            |doc| {
                let mut body: Body = serde_json::from_value(doc.body.clone())
                    .map_err(|e| Error::internal(format!("event is unreadable: {e}")))?;
                if !change(&mut body)? {
                    return Ok(None);
                }
                serde_json::to_value(&body)
                    .map(Some)
                    .map_err(Error::internal)
            },
        )
        .await
    }

    // ---- state ----

    pub async fn state(&self, user: &UserId) -> Result<State> {
        match self
            .store
            .get(STATE, user, STATE_ID)
            .await
            .map_err(store_err)?
        {
            Some(doc) => serde_json::from_value(doc.body)
                .map_err(|e| Error::internal(format!("calendar state is unreadable: {e}"))),
            None => Ok(State::default()),
        }
    }

    /// Changes the state under optimistic concurrency; `change` may refuse.
    pub async fn change_state<F>(&self, user: &UserId, mut change: F) -> Result<State>
    where
        F: FnMut(&mut State) -> Result<()>,
    {
        if self
            .store
            .get(STATE, user, STATE_ID)
            .await
            .map_err(store_err)?
            .is_none()
        {
            let body = serde_json::to_value(State::default()).map_err(Error::internal)?;
            match self
                .store
                .insert(
                    STATE,
                    NewDocument {
                        id: STATE_ID.into(),
                        user_id: user.clone(),
                        body,
                        expires_at: None,
                    },
                )
                .await
            {
                Ok(_) | Err(StoreError::AlreadyExists) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        let doc = focusforge_store::modify(
            self.store.as_ref(),
            STATE,
            user,
            STATE_ID,
            "calendar state",
            None,
            |doc| {
                let mut s: State = serde_json::from_value(doc.body.clone())
                    .map_err(|e| Error::internal(format!("calendar state is unreadable: {e}")))?;
                change(&mut s)?;
                serde_json::to_value(&s).map(Some).map_err(Error::internal)
            },
        )
        .await?;
        serde_json::from_value(doc.body).map_err(Error::internal)
    }

    // ---- events ----

    pub async fn create(
        &self,
        user: &UserId,
        fields: EventFields,
        origin: Origin,
    ) -> Result<Event> {
        let mut v = Violations::new();
        fields.check(&mut v, "event");
        v.finish()?;
        self.count(user, 1).await?;
        match self.insert(user, new_id(), &fields, origin).await {
            Ok(e) => Ok(e),
            Err(e) => {
                self.uncount(user, 1).await;
                Err(e)
            }
        }
    }

    /// Counts `n` more events against the user's limit. The count is kept
    /// by writes, so a state write lost after an insert or a delete makes it
    /// drift; before refusing, it is recounted from the events themselves.
    async fn count(&self, user: &UserId, n: u32) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let add = |s: &mut State| {
            if s.events.saturating_add(n) > limits::EVENTS {
                return Err(Error::ResourceExhausted(format!(
                    "the calendar holds {} events, the most it keeps; delete some first",
                    limits::EVENTS
                )));
            }
            s.events += n;
            Ok(())
        };
        match self.change_state(user, add).await {
            Err(Error::ResourceExhausted(_)) => {
                let real = u32::try_from(self.all(user).await?.len()).unwrap_or(u32::MAX);
                self.change_state(user, |s| {
                    s.events = real;
                    add(s)
                })
                .await?;
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Writes a new event document (counted by the caller).
    async fn insert(
        &self,
        user: &UserId,
        id: String,
        fields: &EventFields,
        origin: Origin,
    ) -> Result<Event> {
        let mut body = Body {
            title: String::new(),
            description: String::new(),
            location: String::new(),
            kind: origin.kind,
            all_day: false,
            start_ms: 0,
            end_ms: 0,
            start_date: None,
            end_date: None,
            tz: String::new(),
            rrule: String::new(),
            exdates: Vec::new(),
            busy: true,
            task_id: origin.task_id,
            block_id: origin.block_id,
            source: origin.source,
            uid: origin.uid.unwrap_or_else(|| format!("{id}@focusforge")),
            sequence: origin.sequence,
            placement_reason: origin.placement_reason,
            external_id: origin.external_id,
            pushed_sequence: None,
            first_ms: 0,
            span_end_ms: 0,
        };
        body.set_fields(fields);
        let doc = NewDocument {
            id,
            user_id: user.clone(),
            body: serde_json::to_value(&body).map_err(Error::internal)?,
            expires_at: None,
        };
        self.store
            .insert(EVENTS, doc)
            .await
            .map_err(store_err)
            .and_then(to_event)
    }

    async fn uncount(&self, user: &UserId, n: u32) {
        let _ = self
            .change_state(user, |s| {
                s.events = s.events.saturating_sub(n);
                Ok(())
            })
            .await;
    }

    pub async fn get(&self, user: &UserId, id: &str) -> Result<Event> {
        check_id(id)?;
        self.store
            .get(EVENTS, user, id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| Error::NotFound("event".into()))
            .and_then(to_event)
    }

    /// Applies a patch; any change of text, time or recurrence bumps the
    /// SEQUENCE. Google's events are read-only here.
    pub async fn update(
        &self,
        user: &UserId,
        id: &str,
        patch: EventPatch,
        expected_version: Option<i64>,
    ) -> Result<Event> {
        check_id(id)?;
        if patch == EventPatch::default() {
            return Err(Error::invalid(
                "update_mask",
                "must name at least one field",
            ));
        }
        let doc = self
            .change_event(user, id, expected_version, |body| {
                if body.source == Source::Google {
                    return Err(Error::FailedPrecondition(
                        "this event comes from Google Calendar; change it there".into(),
                    ));
                }
                let mut fields = body.fields();
                patch.apply(&mut fields)?;
                let mut v = Violations::new();
                fields.check(&mut v, "event");
                v.finish()?;
                if fields == body.fields() {
                    return Ok(false);
                }
                body.set_fields(&fields);
                body.sequence += 1;
                Ok(true)
            })
            .await?;
        to_event(doc)
    }

    pub async fn delete(&self, user: &UserId, id: &str) -> Result<()> {
        let event = self.get(user, id).await?;
        self.remove(user, &event).await
    }

    async fn remove(&self, user: &UserId, event: &Event) -> Result<()> {
        self.remove_all(user, std::slice::from_ref(event)).await
    }

    /// Deletes events, then counts them off in one state write (with the
    /// Google copies of pushed focus blocks to delete there).
    async fn remove_all(&self, user: &UserId, events: &[Event]) -> Result<()> {
        let mut gone = 0;
        let mut pushed = Vec::new();
        for event in events {
            match self
                .store
                .delete(EVENTS, user, &event.id, Precondition::None)
                .await
            {
                Ok(()) => {}
                Err(StoreError::NotFound) => continue,
                Err(e) => return Err(store_err(e)),
            }
            gone += 1;
            if event.kind == Kind::FocusBlock
                && event.pushed_sequence.is_some()
                && !event.external_id.is_empty()
            {
                pushed.push(event.external_id.clone());
            }
        }
        if gone == 0 {
            return Ok(());
        }
        self.change_state(user, |s| {
            s.events = s.events.saturating_sub(gone);
            if s.google.is_some() {
                s.google_deletes.extend(pushed.iter().cloned());
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Every event of the user matching the filters, at most
    /// `limits::EVENTS` of them.
    async fn scan(&self, user: &UserId, filters: Vec<Filter>) -> Result<Vec<Event>> {
        let mut out = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = self
                .store
                .find(
                    EVENTS,
                    user,
                    &Query {
                        filters: filters.clone(),
                        limit: Query::MAX_LIMIT,
                        after: after.take(),
                        ..Query::default()
                    },
                )
                .await
                .map_err(store_err)?;
            for doc in page.documents {
                out.push(to_event(doc)?);
            }
            match page.next {
                Some(c) if out.len() < limits::EVENTS as usize => after = Some(c),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Events that may have an occurrence in `[from, to)`.
    pub async fn events_between(
        &self,
        user: &UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kind: Option<Kind>,
    ) -> Result<Vec<Event>> {
        let mut filters = vec![
            Filter::Range {
                field: "first_ms".into(),
                gte: None,
                lt: Some(to.timestamp_millis()),
            },
            Filter::Range {
                field: "span_end_ms".into(),
                gte: Some(from.timestamp_millis() + 1),
                lt: None,
            },
        ];
        if let Some(k) = kind {
            filters.push(Filter::eq("kind", k.as_str()));
        }
        self.scan(user, filters).await
    }

    pub async fn all(&self, user: &UserId) -> Result<Vec<Event>> {
        self.scan(user, Vec::new()).await
    }

    pub async fn by_field(&self, user: &UserId, field: &str, value: Value) -> Result<Vec<Event>> {
        self.scan(user, vec![Filter::Eq(field.into(), value)]).await
    }

    /// Occurrences in `[from, to)` by start, then event id.
    pub fn expand(events: Vec<Event>, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Occurrence> {
        let mut out = Vec::new();
        for e in events {
            let e = Arc::new(e);
            for (s, end) in e.fields.occurrences(from, to) {
                out.push(Occurrence {
                    event: e.clone(),
                    start: s,
                    end,
                });
            }
        }
        out.sort_by(|a, b| a.start.cmp(&b.start).then(a.event.id.cmp(&b.event.id)));
        out
    }

    pub async fn list(
        &self,
        user: &UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kind: Option<Kind>,
        page_size: usize,
        token: &str,
    ) -> Result<(Vec<Occurrence>, String)> {
        let fp = page_fingerprint(from, to, kind);
        let after = page_token::decode_request(token, fp)?;
        let events = self.events_between(user, from, to, kind).await?;
        let all = Self::expand(events, from, to);
        let start = match &after {
            None => 0,
            Some(c) => all.partition_point(|o| {
                (o.start.timestamp_millis(), o.event.id.as_str()) <= (c.key, c.id.as_str())
            }),
        };
        let page: Vec<Occurrence> = all[start..].iter().take(page_size).cloned().collect();
        let next = if start + page.len() < all.len() {
            page.last()
                .map(|o| {
                    page_token::encode(
                        &Cursor {
                            key: o.start.timestamp_millis(),
                            id: o.event.id.clone(),
                        },
                        fp,
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((page, next))
    }

    /// Busy intervals in `[from, to)`, merged and clipped.
    pub async fn busy(
        &self,
        user: &UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        let events = self.events_between(user, from, to, None).await?;
        let spans: Vec<_> = Self::expand(events, from, to)
            .into_iter()
            .filter(|o| o.event.fields.busy)
            .map(|o| (o.start.max(from), o.end.min(to)))
            .collect();
        Ok(merge(spans))
    }

    /// Adds or updates (by UID) imported events.
    pub async fn import(
        &self,
        user: &UserId,
        items: Vec<crate::ics::Imported>,
    ) -> Result<(u32, u32, Vec<String>)> {
        let existing = self
            .by_field(user, "source", Value::from("imported"))
            .await?;
        let by_uid: std::collections::HashMap<&str, &Event> =
            existing.iter().map(|e| (e.uid.as_str(), e)).collect();
        let (mut created, mut updated, mut ids) = (0, 0, Vec::new());
        for item in items {
            if let Some(e) = by_uid.get(item.uid.as_str()) {
                let f = &item.fields;
                let (start, end, start_date, end_date, all_day) = match f.when {
                    When::Timed { start, end } => (Some(start), Some(end), None, None, false),
                    When::AllDay { start, end } => (None, None, Some(start), Some(Some(end)), true),
                };
                let patch = EventPatch {
                    title: Some(f.title.clone()),
                    description: Some(f.description.clone()),
                    location: Some(f.location.clone()),
                    start,
                    end,
                    all_day: Some(all_day),
                    start_date,
                    end_date,
                    tz: Some(f.tz.clone()),
                    rrule: Some(f.rrule.clone()),
                    exdates: Some(f.exdates.clone()),
                    busy: Some(f.busy),
                };
                let e = self.update(user, &e.id, patch, None).await?;
                updated += 1;
                ids.push(e.id);
            } else {
                let e = self
                    .create(
                        user,
                        item.fields,
                        Origin {
                            source: Source::Imported,
                            uid: Some(item.uid.clone()),
                            external_id: item.uid,
                            sequence: item.sequence,
                            ..Origin::default()
                        },
                    )
                    .await?;
                created += 1;
                ids.push(e.id);
            }
        }
        Ok((created, updated, ids))
    }

    // ---- the feed ----

    /// The feed token, made on first use; with `rotate`, a new one (the
    /// old one stops working).
    pub async fn feed(&self, user: &UserId, rotate: bool) -> Result<String> {
        if !rotate && let Some(secret) = self.state(user).await?.feed_secret {
            return Ok(named(user, &secret));
        }
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        let state = self
            .change_state(user, |s| {
                if rotate || s.feed_secret.is_none() {
                    s.feed_secret = Some(fresh.clone());
                }
                Ok(())
            })
            .await?;
        Ok(named(user, state.feed_secret.as_deref().unwrap_or(&fresh)))
    }

    pub async fn revoke_feed(&self, user: &UserId) -> Result<()> {
        self.change_state(user, |s| {
            s.feed_secret = None;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The user a feed token belongs to, if it is the current one.
    pub async fn feed_user(&self, token: &str) -> Option<UserId> {
        let (user, secret) = parse_feed_token(token)?;
        let state = self.state(&user).await.ok()?;
        let want = state.feed_secret?;
        // Compared as digests, so the time taken says nothing of the secret.
        (sha256_hex(secret.as_bytes()) == sha256_hex(want.as_bytes())).then_some(user)
    }

    // ---- focus blocks ----

    /// Writes a schedule: new focus blocks created, moved ones updated,
    /// removed ones deleted. Returns the event id of each placement.
    pub async fn apply(
        &self,
        user: &UserId,
        tz: &str,
        out: &schedule::Output,
        title: &(dyn Fn(&str, &str) -> String + Sync),
    ) -> Result<Vec<String>> {
        let removed: std::collections::HashSet<&str> =
            out.removed.iter().map(String::as_str).collect();
        let reuses = |p: &schedule::Placed| {
            p.event_id
                .as_deref()
                .is_some_and(|id| !removed.contains(id))
        };
        let fresh = out.placed.iter().filter(|p| !reuses(p)).count() as u32;
        self.count(user, fresh).await?;
        let mut ids = Vec::with_capacity(out.placed.len());
        let mut made = 0;
        let mut result = Ok(());
        for p in &out.placed {
            let fields = EventFields {
                title: title(&p.task_id, &p.block_id),
                description: p.reason.clone(),
                location: String::new(),
                when: When::Timed {
                    start: p.start,
                    end: p.end,
                },
                tz: tz.to_owned(),
                rrule: String::new(),
                exdates: Vec::new(),
                busy: true,
            };
            let written = match (&p.change, p.event_id.as_deref()) {
                (Change::Kept, Some(id)) => Ok(id.to_owned()),
                (_, Some(id)) if !removed.contains(id) => {
                    self.move_block(user, id, &fields, &p.reason).await
                }
                _ => {
                    let origin = Origin {
                        kind: Kind::FocusBlock,
                        task_id: p.task_id.clone(),
                        block_id: p.block_id.clone(),
                        placement_reason: p.reason.clone(),
                        ..Origin::default()
                    };
                    let e = self.insert(user, new_id(), &fields, origin).await;
                    if e.is_ok() {
                        made += 1;
                    }
                    e.map(|e| e.id)
                }
            };
            match written {
                Ok(id) => ids.push(id),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if made < fresh {
            self.uncount(user, fresh - made).await;
        }
        result?;
        let mut gone = Vec::new();
        for id in &out.removed {
            if let Ok(e) = self.get(user, id).await {
                gone.push(e);
            }
        }
        self.remove_all(user, &gone).await?;
        Ok(ids)
    }

    async fn move_block(
        &self,
        user: &UserId,
        id: &str,
        fields: &EventFields,
        reason: &str,
    ) -> Result<String> {
        let doc = self
            .change_event(user, id, None, |body| {
                body.set_fields(fields);
                body.placement_reason = reason.to_owned();
                body.sequence += 1;
                Ok(true)
            })
            .await?;
        Ok(doc.id)
    }

    // ---- Google ----

    /// Stores (or updates) a busy event read from Google.
    pub async fn put_google(
        &self,
        user: &UserId,
        google_id: &str,
        fields: EventFields,
    ) -> Result<()> {
        let id = google_doc_id(google_id);
        let existing = self.store.get(EVENTS, user, &id).await.map_err(store_err)?;
        match existing {
            None => {
                self.count(user, 1).await?;
                let origin = Origin {
                    source: Source::Google,
                    uid: Some(format!("{google_id}@google.com")),
                    external_id: google_id.to_owned(),
                    ..Origin::default()
                };
                match self.insert(user, id, &fields, origin).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        self.uncount(user, 1).await;
                        // A concurrent sync wrote it first.
                        if matches!(e, Error::AlreadyExists(_)) {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    }
                }
            }
            Some(doc) => {
                self.change_event(user, &doc.id, None, |body| {
                    if body.fields() == fields {
                        return Ok(false);
                    }
                    body.set_fields(&fields);
                    body.sequence += 1;
                    Ok(true)
                })
                .await?;
                Ok(())
            }
        }
    }

    /// Removes a busy event cancelled in Google; whether there was one.
    pub async fn drop_google(&self, user: &UserId, google_id: &str) -> Result<bool> {
        match self.get(user, &google_doc_id(google_id)).await {
            Ok(e) => {
                self.remove(user, &e).await?;
                Ok(true)
            }
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Forgets which focus blocks were pushed to Google (a new link starts
    /// from none).
    pub async fn forget_pushed(&self, user: &UserId) -> Result<()> {
        for e in self
            .by_field(user, "kind", Value::from(Kind::FocusBlock.as_str()))
            .await?
            .into_iter()
            .filter(|e| e.pushed_sequence.is_some())
        {
            self.change_event(user, &e.id, None, |body| {
                body.external_id.clear();
                body.pushed_sequence = None;
                Ok(true)
            })
            .await?;
        }
        Ok(())
    }

    /// Records that a focus block is in Google as `google_id` at its
    /// current sequence.
    pub async fn mark_pushed(
        &self,
        user: &UserId,
        id: &str,
        google_id: &str,
        sequence: i32,
    ) -> Result<()> {
        self.change_event(user, id, None, |body| {
            body.external_id = google_id.to_owned();
            body.pushed_sequence = Some(sequence);
            Ok(true)
        })
        .await?;
        Ok(())
    }
}

/// Sorted, overlapping and touching intervals joined.
pub fn merge(
    mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    spans.sort();
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Busy events from Google are stored under an id derived from theirs.
pub fn google_doc_id(google_id: &str) -> String {
    format!("g-{}", &sha256_hex(google_id.as_bytes())[..32])
}

pub use focusforge_auth::seal::{name_of, named};

fn parse_feed_token(token: &str) -> Option<(UserId, String)> {
    let (user, secret) = name_of(token)?;
    (secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (user, secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use focusforge_core::ManualClock;
    use focusforge_store::SqliteStore;

    #[tokio::test]
    async fn a_drifted_event_count_is_recounted_before_it_refuses() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let at = DateTime::from_timestamp(1_796_000_000, 0).unwrap_or_default();
        let clock = Arc::new(ManualClock::new(at));
        let store = SqliteStore::open(&dir.path().join("s.db"), clock.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let cal = Calendar::new(Arc::new(store), clock);
        let user = UserId::parse("alice").unwrap_or_else(|e| panic!("{e}"));
        let fields = EventFields {
            title: "x".into(),
            description: String::new(),
            location: String::new(),
            when: When::Timed {
                start: at,
                end: at + chrono::Duration::hours(1),
            },
            tz: "UTC".into(),
            rrule: String::new(),
            exdates: Vec::new(),
            busy: true,
        };
        let kept = cal
            .create(&user, fields.clone(), Origin::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // As if the state writes of many deletes had been lost.
        cal.change_state(&user, |s| {
            s.events = limits::EVENTS;
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        cal.create(&user, fields, Origin::default())
            .await
            .unwrap_or_else(|e| panic!("refused though one event is kept: {e}"));
        let state = cal.state(&user).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state.events, 2, "recounted: {} and the new one", kept.id);
    }
}
