//! Mood entries and their patterns, over the document store. Every method
//! acts on the given user's entries only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use focusforge_core::{Clock, Error, Result, UserId, Violations, new_id};
use focusforge_store::page_token;
use focusforge_store::{
    Document, Filter, NewDocument, Order, Precondition, Query, SharedStore, SortKey, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The collection of mood entries.
pub const COLLECTION: &str = "mood_logs";

/// The limits of every field, used by validation, the MCP schemas and the
/// contract's documentation.
pub mod limits {
    pub const SCORE_MIN: i64 = 1;
    pub const SCORE_MAX: i64 = 5;
    pub const ENERGY_MIN: i64 = 1;
    pub const ENERGY_MAX: i64 = 5;
    pub const TAGS: usize = 20;
    pub const TAG_CHARS: usize = 40;
    pub const EMOTIONS: usize = 10;
    pub const EMOTION_CHARS: usize = 40;
    pub const NOTE_CHARS: usize = 2_000;
    pub const REQUEST_ID_CHARS: usize = 128;
    pub const PAGE_SIZE_DEFAULT: usize = 50;
    pub const PAGE_SIZE_MAX: i64 = 200;
    /// Entries a pattern analysis reads, newest first.
    pub const PATTERN_ENTRIES: usize = 5_000;
    /// Entries needed on each side (with a tag, without it) before its
    /// effect is shown.
    pub const TAG_SIDE_MIN: usize = 3;
    /// Tags and emotions listed in a pattern analysis.
    pub const PATTERN_LIST: usize = 20;
    /// The default and largest back-dating windows, in days.
    pub const BACKDATE_DAYS_DEFAULT: u32 = 30;
    pub const BACKDATE_DAYS_MAX: u32 = 3_650;
    /// The default pattern range, in days.
    pub const PATTERN_DAYS_DEFAULT: i64 = 90;
}

/// Where an emotion word sits: pleasantness x energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quadrant {
    PleasantEnergetic,
    PleasantCalm,
    UnpleasantEnergetic,
    UnpleasantCalm,
}

/// The documented emotion words; others are kept as given.
pub const VOCABULARY: &[(&str, Quadrant)] = &[
    ("excited", Quadrant::PleasantEnergetic),
    ("joyful", Quadrant::PleasantEnergetic),
    ("proud", Quadrant::PleasantEnergetic),
    ("motivated", Quadrant::PleasantEnergetic),
    ("inspired", Quadrant::PleasantEnergetic),
    ("focused", Quadrant::PleasantEnergetic),
    ("calm", Quadrant::PleasantCalm),
    ("content", Quadrant::PleasantCalm),
    ("grateful", Quadrant::PleasantCalm),
    ("relaxed", Quadrant::PleasantCalm),
    ("relieved", Quadrant::PleasantCalm),
    ("hopeful", Quadrant::PleasantCalm),
    ("anxious", Quadrant::UnpleasantEnergetic),
    ("stressed", Quadrant::UnpleasantEnergetic),
    ("angry", Quadrant::UnpleasantEnergetic),
    ("frustrated", Quadrant::UnpleasantEnergetic),
    ("overwhelmed", Quadrant::UnpleasantEnergetic),
    ("irritated", Quadrant::UnpleasantEnergetic),
    ("tired", Quadrant::UnpleasantCalm),
    ("sad", Quadrant::UnpleasantCalm),
    ("bored", Quadrant::UnpleasantCalm),
    ("lonely", Quadrant::UnpleasantCalm),
    ("drained", Quadrant::UnpleasantCalm),
    ("disappointed", Quadrant::UnpleasantCalm),
];

/// `[service.mood]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// How far back a mood may be logged, in days.
    pub backdate_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backdate_days: limits::BACKDATE_DAYS_DEFAULT,
        }
    }
}

impl Settings {
    pub fn check(&self) -> std::result::Result<(), String> {
        if !(1..=limits::BACKDATE_DAYS_MAX).contains(&self.backdate_days) {
            return Err(format!(
                "[service.mood] backdate_days must be 1-{}, got {}",
                limits::BACKDATE_DAYS_MAX,
                self.backdate_days
            ));
        }
        Ok(())
    }
}

/// One entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MoodEntry {
    pub id: String,
    pub score: u8,
    pub energy: Option<u8>,
    pub emotions: Vec<String>,
    pub tags: Vec<String>,
    pub note: String,
    /// The time the mood refers to.
    pub at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A mood to log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewMood {
    pub score: i32,
    /// 0 when not given.
    pub energy: i32,
    pub emotions: Vec<String>,
    pub tags: Vec<String>,
    pub note: String,
    /// `None` means now.
    pub at: Option<DateTime<Utc>>,
    /// Makes a retried log return the first entry.
    pub request_id: String,
}

/// The fields an update changes (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MoodPatch {
    pub score: Option<i32>,
    /// `Some(0)` clears it.
    pub energy: Option<i32>,
    pub emotions: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub note: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// The update-mask paths [`MoodPatch`] has.
pub const PATCH_PATHS: &[&str] = &["score", "energy", "emotions", "tags", "note", "at"];

/// A list's filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MoodFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MoodPage {
    pub entries: Vec<MoodEntry>,
    pub next_page_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    score: u8,
    #[serde(default)]
    energy: Option<u8>,
    #[serde(default)]
    emotions: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    note: String,
    /// Epoch milliseconds.
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn to_entry(doc: Document) -> Result<MoodEntry> {
    let body: Body = serde_json::from_value(doc.body).map_err(Error::internal)?;
    Ok(MoodEntry {
        id: doc.id,
        score: body.score,
        energy: body.energy,
        emotions: body.emotions,
        tags: body.tags,
        note: body.note,
        at: from_ms(body.at),
        created_at: doc.created_at,
        updated_at: doc.updated_at,
        version: doc.version,
    })
}

fn not_found(e: StoreError) -> Error {
    e.into_domain("mood entry")
}

/// Lower-cased, trimmed, deduplicated words, each checked.
fn words(v: &mut Violations, field: &str, raw: &[String], max: usize, chars: usize) -> Vec<String> {
    if !v.list(field, raw, max) {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let w = w.trim().to_lowercase();
        let n = w.chars().count();
        if n == 0 {
            v.add(format!("{field}[{i}]"), "must not be empty");
        } else if n > chars {
            v.add(
                format!("{field}[{i}]"),
                format!("must be at most {chars} characters"),
            );
        } else if w.chars().any(char::is_control) {
            v.add(
                format!("{field}[{i}]"),
                "must not contain control characters",
            );
        } else if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// What a pattern analysis reads besides the entries: the user's time zone
/// and the tasks they completed, from the services that own them.
#[async_trait]
pub trait UserFacts: Send + Sync {
    /// The profile's time zone (UTC when unknown).
    async fn time_zone(&self) -> Tz;
    /// Tasks completed in `[from, to)`: when, and minutes worked on each.
    async fn completions(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Completion>>;
    /// Focus sessions completed in `[from, to)`: when they ended, and the
    /// minutes focused. None where no Focus service is deployed.
    async fn focus_sessions(
        &self,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
    ) -> Result<Vec<Completion>> {
        Ok(Vec::new())
    }
}

/// A completed task or focus session, as the patterns count it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completion {
    pub at: DateTime<Utc>,
    /// For a task, from start to completion (at most 12 hours), else the
    /// estimate; for a focus session, the minutes focused.
    pub minutes: u32,
}

/// Facts for a user nothing is known about: UTC and no completions.
pub struct NoFacts;

#[async_trait]
impl UserFacts for NoFacts {
    async fn time_zone(&self) -> Tz {
        chrono_tz::UTC
    }
    async fn completions(&self, _: DateTime<Utc>, _: DateTime<Utc>) -> Result<Vec<Completion>> {
        Ok(Vec::new())
    }
}

/// A group of entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub key: u32,
    pub entries: usize,
    pub average: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TagEffect {
    pub tag: String,
    pub effect: f64,
    pub with: usize,
    pub without: usize,
    pub average_with: f64,
    pub average_without: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    pub measure: &'static str,
    pub r: f64,
    pub days: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmotionCount {
    pub emotion: String,
    pub entries: usize,
    pub average: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Patterns {
    pub entries: usize,
    pub average: f64,
    pub energy_entries: usize,
    pub average_energy: f64,
    pub time_zone: String,
    pub by_hour: Vec<Bucket>,
    pub by_weekday: Vec<Bucket>,
    pub better_with: Vec<TagEffect>,
    pub worse_with: Vec<TagEffect>,
    pub tags_without_enough_entries: Vec<String>,
    pub emotions: Vec<EmotionCount>,
    pub with_task_completions: Correlation,
    pub with_minutes_worked: Correlation,
    pub with_focus_minutes: Correlation,
    pub truncated: bool,
}

/// The Mood service's domain.
#[derive(Clone)]
pub struct Moods {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    settings: Settings,
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Pearson's r; 0 with fewer than 3 points or a side that never varies.
pub fn pearson(points: &[(f64, f64)]) -> f64 {
    if points.len() < 3 {
        return 0.0;
    }
    let mx = mean(points.iter().map(|p| p.0));
    let my = mean(points.iter().map(|p| p.1));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Moods {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    fn check_at(&self, v: &mut Violations, field: &str, at: DateTime<Utc>) {
        let now = self.clock.now();
        // A client clock a little ahead is not "the future".
        if at > now + Duration::seconds(60) {
            v.add(field, "must not be in the future");
        } else if at < now - Duration::days(i64::from(self.settings.backdate_days)) {
            v.add(
                field,
                format!(
                    "must be within the last {} days",
                    self.settings.backdate_days
                ),
            );
        }
    }

    fn check_score(v: &mut Violations, field: &str, score: i32) {
        v.range(
            field,
            i64::from(score),
            limits::SCORE_MIN,
            limits::SCORE_MAX,
        );
    }

    fn check_energy(v: &mut Violations, field: &str, energy: i32) {
        if energy != 0 {
            v.range(
                field,
                i64::from(energy),
                limits::ENERGY_MIN,
                limits::ENERGY_MAX,
            );
        }
    }

    /// Logs a mood; with a request id, a repeat returns the first entry.
    pub async fn log(&self, user: &UserId, new: NewMood) -> Result<MoodEntry> {
        self.log_once(user, new).await.map(|(entry, _)| entry)
    }

    /// [`Moods::log`], saying whether this call logged it (`false` for a
    /// retry of a `request_id` the first call logged).
    pub async fn log_once(&self, user: &UserId, new: NewMood) -> Result<(MoodEntry, bool)> {
        let mut v = Violations::new();
        Self::check_score(&mut v, "score", new.score);
        Self::check_energy(&mut v, "energy", new.energy);
        let emotions = words(
            &mut v,
            "emotions",
            &new.emotions,
            limits::EMOTIONS,
            limits::EMOTION_CHARS,
        );
        let tags = words(&mut v, "tags", &new.tags, limits::TAGS, limits::TAG_CHARS);
        v.optional_text("note", &new.note, limits::NOTE_CHARS);
        v.optional_text("request_id", &new.request_id, limits::REQUEST_ID_CHARS);
        let at = new.at.unwrap_or_else(|| self.clock.now());
        self.check_at(&mut v, "at", at);
        v.finish()?;

        let request_id = (!new.request_id.is_empty()).then(|| new.request_id.clone());
        let id = match &request_id {
            Some(r) => format!("r{:016x}", page_token::fingerprint(&format!("mood:{r}"))),
            None => new_id(),
        };
        let body = Body {
            score: new.score as u8,
            energy: (new.energy != 0).then_some(new.energy as u8),
            emotions,
            tags,
            note: new.note,
            at: at.timestamp_millis(),
            request_id,
        };
        let doc = NewDocument {
            id: id.clone(),
            user_id: user.clone(),
            body: serde_json::to_value(&body).map_err(Error::internal)?,
            expires_at: None,
        };
        match self.store.insert(COLLECTION, doc).await {
            Ok(doc) => Ok((to_entry(doc)?, true)),
            // A retry: the first call's entry.
            Err(StoreError::AlreadyExists) => Ok((self.get(user, &id).await?, false)),
            Err(e) => Err(not_found(e)),
        }
    }

    pub async fn get(&self, user: &UserId, id: &str) -> Result<MoodEntry> {
        if id.is_empty() {
            return Err(Error::invalid("id", "is required"));
        }
        match self.store.get(COLLECTION, user, id).await {
            Ok(Some(doc)) => to_entry(doc),
            Ok(None) => Err(Error::NotFound("mood entry".into())),
            Err(e) => Err(not_found(e)),
        }
    }

    /// The user's entries written at or after `since`, in batches in no
    /// particular order.
    pub fn changes(
        &self,
        user: &UserId,
        since: DateTime<Utc>,
    ) -> impl futures::Stream<Item = Result<Vec<MoodEntry>>> + Send + 'static {
        use futures::StreamExt;
        let until = self.clock.now() + Duration::minutes(1);
        focusforge_store::changes(self.store.clone(), COLLECTION, user, since, until)
            .into_stream()
            .map(|batch| {
                batch
                    .map_err(not_found)?
                    .into_iter()
                    .map(to_entry)
                    .collect()
            })
    }

    pub async fn list(
        &self,
        user: &UserId,
        filter: MoodFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<MoodPage> {
        let mut v = Violations::new();
        v.range("page_size", i64::from(page_size), 0, limits::PAGE_SIZE_MAX);
        if let (Some(from), Some(to)) = (filter.from, filter.to) {
            v.check(from < to, "end_time", "must be later than start_time");
        }
        let tags = words(
            &mut v,
            "tags",
            &filter.tags,
            limits::TAGS,
            limits::TAG_CHARS,
        );
        v.finish()?;
        let filters = store_filters(filter.from, filter.to, &tags);
        let fingerprint = page_token::fingerprint(&format!("{filters:?}"));
        let after = page_token::decode_request(page_token, fingerprint)?;
        let limit = if page_size == 0 {
            limits::PAGE_SIZE_DEFAULT
        } else {
            page_size as usize
        };
        let page = self
            .store
            .find(
                COLLECTION,
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
            .map_err(not_found)?;
        Ok(MoodPage {
            entries: page
                .documents
                .into_iter()
                .map(to_entry)
                .collect::<Result<_>>()?,
            next_page_token: page
                .next
                .map(|c| page_token::encode(&c, fingerprint))
                .unwrap_or_default(),
        })
    }

    /// Applies a patch; `paths` are the update mask's, already checked
    /// against [`PATCH_PATHS`].
    pub async fn update(&self, user: &UserId, id: &str, patch: MoodPatch) -> Result<MoodEntry> {
        let mut v = Violations::new();
        if id.is_empty() {
            v.add("entry.id", "is required");
        }
        if let Some(s) = patch.score {
            Self::check_score(&mut v, "entry.score", s);
        }
        if let Some(e) = patch.energy {
            Self::check_energy(&mut v, "entry.energy", e);
        }
        let emotions = patch.emotions.as_ref().map(|e| {
            words(
                &mut v,
                "entry.emotions",
                e,
                limits::EMOTIONS,
                limits::EMOTION_CHARS,
            )
        });
        let tags = patch
            .tags
            .as_ref()
            .map(|t| words(&mut v, "entry.tags", t, limits::TAGS, limits::TAG_CHARS));
        if let Some(n) = &patch.note {
            v.optional_text("entry.note", n, limits::NOTE_CHARS);
        }
        if let Some(at) = patch.at {
            self.check_at(&mut v, "entry.at", at);
        }
        v.finish()?;
        let doc = focusforge_store::modify(
            self.store.as_ref(),
            COLLECTION,
            user,
            id,
            "mood entry",
            None,
            |doc| {
                let mut b: Body =
                    serde_json::from_value(doc.body.clone()).map_err(Error::internal)?;
                if let Some(s) = patch.score {
                    b.score = s as u8;
                }
                if let Some(e) = patch.energy {
                    b.energy = (e != 0).then_some(e as u8);
                }
                if let Some(e) = &emotions {
                    b.emotions.clone_from(e);
                }
                if let Some(t) = &tags {
                    b.tags.clone_from(t);
                }
                if let Some(n) = &patch.note {
                    b.note.clone_from(n);
                }
                if let Some(at) = patch.at {
                    b.at = at.timestamp_millis();
                }
                serde_json::to_value(&b).map(Some).map_err(Error::internal)
            },
        )
        .await?;
        to_entry(doc)
    }

    pub async fn delete(&self, user: &UserId, id: &str) -> Result<()> {
        if id.is_empty() {
            return Err(Error::invalid("id", "is required"));
        }
        self.store
            .delete(COLLECTION, user, id, Precondition::None)
            .await
            .map_err(not_found)
    }

    /// What the entries referring to `[from, to)` say; `None` bounds mean
    /// the last 90 days up to now.
    pub async fn patterns(
        &self,
        user: &UserId,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        facts: &dyn UserFacts,
    ) -> Result<Patterns> {
        let to = to.unwrap_or_else(|| self.clock.now() + Duration::seconds(61));
        let from = from.unwrap_or(to - Duration::days(limits::PATTERN_DAYS_DEFAULT));
        if from >= to {
            return Err(Error::invalid("end_time", "must be later than start_time"));
        }
        let (entries, truncated) = self.read_range(user, from, to).await?;
        let tz = facts.time_zone().await;
        let (completions, focus) = if entries.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let (c, f) = tokio::join!(facts.completions(from, to), facts.focus_sessions(from, to));
            let c = c.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "mood patterns without task completions");
                Vec::new()
            });
            let f = f.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "mood patterns without focus sessions");
                Vec::new()
            });
            (c, f)
        };
        Ok(analyse(&entries, tz, &completions, &focus, truncated))
    }

    async fn read_range(
        &self,
        user: &UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(Vec<MoodEntry>, bool)> {
        let filters = store_filters(Some(from), Some(to), &[]);
        let mut entries = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .find(
                    COLLECTION,
                    user,
                    &Query {
                        filters: filters.clone(),
                        order: Order {
                            key: SortKey::CreatedAt,
                            descending: true,
                        },
                        limit: Query::MAX_LIMIT.min(limits::PATTERN_ENTRIES - entries.len()),
                        after,
                    },
                )
                .await
                .map_err(not_found)?;
            for doc in page.documents {
                entries.push(to_entry(doc)?);
            }
            match page.next {
                Some(next) if entries.len() < limits::PATTERN_ENTRIES => after = Some(next),
                Some(_) => return Ok((entries, true)),
                None => return Ok((entries, false)),
            }
        }
    }
}

fn store_filters(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    tags: &[String],
) -> Vec<Filter> {
    let mut filters = Vec::new();
    if from.is_some() || to.is_some() {
        filters.push(Filter::Range {
            field: "at".into(),
            gte: from.map(|t| t.timestamp_millis()),
            lt: to.map(|t| t.timestamp_millis()),
        });
    }
    for t in tags {
        filters.push(Filter::Contains("tags".into(), Value::String(t.clone())));
    }
    filters
}

/// The local calendar day of an instant.
fn local_day(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    tz.from_utc_datetime(&at.naive_utc()).date_naive()
}

/// The figures of [`Patterns`] from the entries, in `tz`.
pub fn analyse(
    entries: &[MoodEntry],
    tz: Tz,
    completions: &[Completion],
    focus: &[Completion],
    truncated: bool,
) -> Patterns {
    let score = |e: &MoodEntry| f64::from(e.score);
    let mut hours: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    let mut weekdays: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    let mut days: BTreeMap<NaiveDate, Vec<f64>> = BTreeMap::new();
    for e in entries {
        let local = tz.from_utc_datetime(&e.at.naive_utc());
        hours.entry(local.hour()).or_default().push(score(e));
        weekdays
            .entry(local.weekday().number_from_monday())
            .or_default()
            .push(score(e));
        days.entry(local.date_naive()).or_default().push(score(e));
    }
    let buckets = |m: BTreeMap<u32, Vec<f64>>| -> Vec<Bucket> {
        m.into_iter()
            .map(|(key, xs)| Bucket {
                key,
                entries: xs.len(),
                average: round2(mean(xs.into_iter())),
            })
            .collect()
    };

    // Tags: entries with against entries without.
    let all_tags: BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| e.tags.iter().map(String::as_str))
        .collect();
    let mut better = Vec::new();
    let mut worse = Vec::new();
    let mut too_few = Vec::new();
    for tag in all_tags {
        let (with, without): (Vec<&MoodEntry>, Vec<&MoodEntry>) = entries
            .iter()
            .partition(|e| e.tags.iter().any(|t| t == tag));
        if with.len() < limits::TAG_SIDE_MIN || without.len() < limits::TAG_SIDE_MIN {
            too_few.push(tag.to_owned());
            continue;
        }
        let average_with = mean(with.iter().map(|e| score(e)));
        let average_without = mean(without.iter().map(|e| score(e)));
        let effect = TagEffect {
            tag: tag.to_owned(),
            effect: round2(average_with - average_without),
            with: with.len(),
            without: without.len(),
            average_with: round2(average_with),
            average_without: round2(average_without),
        };
        if effect.effect > 0.0 {
            better.push(effect);
        } else if effect.effect < 0.0 {
            worse.push(effect);
        }
    }
    better.sort_by(|a, b| b.effect.total_cmp(&a.effect).then(a.tag.cmp(&b.tag)));
    worse.sort_by(|a, b| a.effect.total_cmp(&b.effect).then(a.tag.cmp(&b.tag)));
    better.truncate(limits::PATTERN_LIST);
    worse.truncate(limits::PATTERN_LIST);
    too_few.truncate(limits::PATTERN_LIST);

    let mut emotions: HashMap<&str, Vec<f64>> = HashMap::new();
    for e in entries {
        for w in &e.emotions {
            emotions.entry(w).or_default().push(score(e));
        }
    }
    let mut emotions: Vec<EmotionCount> = emotions
        .into_iter()
        .map(|(w, xs)| EmotionCount {
            emotion: w.to_owned(),
            entries: xs.len(),
            average: round2(mean(xs.into_iter())),
        })
        .collect();
    emotions.sort_by(|a, b| b.entries.cmp(&a.entries).then(a.emotion.cmp(&b.emotion)));
    emotions.truncate(limits::PATTERN_LIST);

    // The day's average mood against the day's completions and minutes.
    let mut done: HashMap<NaiveDate, (f64, f64)> = HashMap::new();
    for c in completions {
        let d = done.entry(local_day(tz, c.at)).or_default();
        d.0 += 1.0;
        d.1 += f64::from(c.minutes);
    }
    let daily: Vec<(f64, (f64, f64))> = days
        .iter()
        .map(|(day, xs)| {
            (
                mean(xs.iter().copied()),
                done.get(day).copied().unwrap_or_default(),
            )
        })
        .collect();
    let counts: Vec<(f64, f64)> = daily.iter().map(|(m, (n, _))| (*n, *m)).collect();
    let minutes: Vec<(f64, f64)> = daily.iter().map(|(m, (_, min))| (*min, *m)).collect();
    let mut focused: HashMap<NaiveDate, f64> = HashMap::new();
    for f in focus {
        *focused.entry(local_day(tz, f.at)).or_default() += f64::from(f.minutes);
    }
    let focus_minutes: Vec<(f64, f64)> = days
        .iter()
        .map(|(day, xs)| {
            (
                focused.get(day).copied().unwrap_or_default(),
                mean(xs.iter().copied()),
            )
        })
        .collect();

    let energies: Vec<f64> = entries
        .iter()
        .filter_map(|e| e.energy.map(f64::from))
        .collect();
    Patterns {
        entries: entries.len(),
        average: round2(mean(entries.iter().map(score))),
        energy_entries: energies.len(),
        average_energy: round2(mean(energies.into_iter())),
        time_zone: tz.name().to_owned(),
        by_hour: buckets(hours),
        by_weekday: buckets(weekdays),
        better_with: better,
        worse_with: worse,
        tags_without_enough_entries: too_few,
        emotions,
        with_task_completions: Correlation {
            measure: "task completions per day",
            r: round2(pearson(&counts)),
            days: counts.len(),
        },
        with_minutes_worked: Correlation {
            measure: "minutes worked on completed tasks per day",
            r: round2(pearson(&minutes)),
            days: minutes.len(),
        },
        with_focus_minutes: Correlation {
            measure: "minutes focused in completed focus sessions per day",
            r: round2(pearson(&focus_minutes)),
            days: focus_minutes.len(),
        },
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(score: u8, tags: &[&str], at: DateTime<Utc>) -> MoodEntry {
        MoodEntry {
            id: new_id(),
            score,
            energy: None,
            emotions: Vec::new(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            note: String::new(),
            at,
            created_at: at,
            updated_at: at,
            version: 1,
        }
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn a_tag_is_reported_only_with_three_entries_on_each_side() {
        let mut entries = vec![
            entry(5, &["exercise"], at(2, 9)),
            entry(5, &["exercise"], at(3, 9)),
            entry(2, &[], at(4, 9)),
            entry(2, &[], at(5, 9)),
            entry(2, &[], at(6, 9)),
        ];
        let p = analyse(&entries, chrono_tz::UTC, &[], &[], false);
        assert!(p.better_with.is_empty(), "2 with: not yet");
        assert_eq!(p.tags_without_enough_entries, ["exercise"]);
        entries.push(entry(4, &["exercise"], at(7, 9)));
        let p = analyse(&entries, chrono_tz::UTC, &[], &[], false);
        let e = &p.better_with[0];
        assert_eq!((e.tag.as_str(), e.with, e.without), ("exercise", 3, 3));
        assert!((e.effect - (14.0 / 3.0 - 2.0)).abs() < 0.01, "{}", e.effect);
    }

    #[test]
    fn hours_and_weekdays_are_local_to_the_user() {
        // 23:30 UTC on Monday 2026-11-30 is 08:30 Tuesday in Tokyo.
        let when = Utc
            .with_ymd_and_hms(2026, 11, 30, 23, 30, 0)
            .single()
            .expect("time");
        let p = analyse(
            &[entry(4, &[], when)],
            chrono_tz::Asia::Tokyo,
            &[],
            &[],
            false,
        );
        assert_eq!(p.by_hour[0].key, 8);
        assert_eq!(p.by_weekday[0].key, 2);
        assert_eq!(p.time_zone, "Asia/Tokyo");
    }

    #[test]
    fn mood_follows_completions_when_the_data_says_so() {
        let entries: Vec<MoodEntry> = (1..=6)
            .map(|d| entry(d as u8 % 5 + 1, &[], at(d, 12)))
            .collect();
        // One completion per point of mood on each day.
        let completions: Vec<Completion> = entries
            .iter()
            .flat_map(|e| {
                (0..e.score).map(move |_| Completion {
                    at: e.at,
                    minutes: 30,
                })
            })
            .collect();
        let p = analyse(&entries, chrono_tz::UTC, &completions, &completions, false);
        assert_eq!(p.with_task_completions.days, 6);
        assert!((p.with_task_completions.r - 1.0).abs() < 1e-9);
        assert!((p.with_minutes_worked.r - 1.0).abs() < 1e-9);
        assert!((p.with_focus_minutes.r - 1.0).abs() < 1e-9);
        let none = analyse(&entries, chrono_tz::UTC, &[], &[], false);
        assert_eq!(none.with_task_completions.r, 0.0, "no variation, no r");
    }

    #[test]
    fn pearson_needs_three_points() {
        assert_eq!(pearson(&[(1.0, 1.0), (2.0, 2.0)]), 0.0);
        assert!((pearson(&[(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]) + 1.0).abs() < 1e-9);
    }
}
