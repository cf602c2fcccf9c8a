//! The MCP tools of the Mood service. Their schemas' bounds are the
//! domain's [`limits`].

use chrono::{DateTime, Duration, Utc};
use focusforge_mcp::tools::{missing, pb_ts, ts};
use focusforge_mcp::{Caller, Category, Mesh, Tool, ToolError};
use focusforge_proto::mood::v1 as pb;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::limits;

const MOOD: &str = pb::mood_service_server::SERVICE_NAME;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogMoodInput {
    /// 1 (very bad) to 5 (very good).
    #[schemars(range(min = limits::SCORE_MIN, max = limits::SCORE_MAX))]
    pub score: i64,
    /// 1 (drained) to 5 (energised).
    #[serde(default)]
    #[schemars(range(min = limits::ENERGY_MIN, max = limits::ENERGY_MAX))]
    pub energy: Option<i64>,
    /// Emotion words, e.g. `focused`, `anxious`, `tired`, `calm`.
    #[serde(default)]
    #[schemars(length(max = limits::EMOTIONS))]
    pub emotions: Vec<String>,
    /// What the user was doing, e.g. `work`, `exercise`, `poor-sleep`.
    #[serde(default)]
    #[schemars(length(max = limits::TAGS))]
    pub tags: Vec<String>,
    #[serde(default)]
    #[schemars(length(max = limits::NOTE_CHARS))]
    pub note: String,
    /// When the mood was felt; default now.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// Repeat a call with the same id to retry without logging twice.
    #[serde(default)]
    #[schemars(length(max = limits::REQUEST_ID_CHARS))]
    pub request_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MoodEntry {
    pub id: String,
    pub score: i32,
    /// 0 when not given.
    pub energy: i32,
    pub emotions: Vec<String>,
    pub tags: Vec<String>,
    pub note: String,
    pub at: Option<DateTime<Utc>>,
}

fn entry_out(e: pb::MoodEntry) -> MoodEntry {
    MoodEntry {
        id: e.id,
        score: e.score,
        energy: e.energy,
        emotions: e.emotions,
        tags: e.tags,
        note: e.note,
        at: ts(e.at),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoodPatternsInput {
    /// How many days back, 1-365; default 30.
    #[serde(default)]
    #[schemars(range(min = 1, max = 365))]
    pub days: Option<i64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Bucket {
    /// Hour 0-23, or weekday 1 (Monday) to 7.
    pub key: i32,
    pub entries: i32,
    pub average_score: f64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TagEffect {
    pub tag: String,
    /// Average score with the tag minus without it.
    pub effect: f64,
    pub entries_with: i32,
    pub entries_without: i32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Correlation {
    pub measure: String,
    pub r: f64,
    pub days: i32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MoodPatterns {
    pub entries: i32,
    pub average_score: f64,
    pub time_zone: String,
    pub by_hour: Vec<Bucket>,
    pub by_weekday: Vec<Bucket>,
    /// Tags that go with better mood (at least 3 entries with and 3 without).
    pub better_with: Vec<TagEffect>,
    /// Tags that go with worse mood.
    pub worse_with: Vec<TagEffect>,
    /// Tags with too few entries to say anything yet.
    pub tags_without_enough_entries: Vec<String>,
    pub with_task_completions: Option<Correlation>,
    pub with_minutes_worked: Option<Correlation>,
    pub with_focus_minutes: Option<Correlation>,
}

fn client(mesh: &Mesh) -> Result<MoodServiceClient<focusforge_kit::Conn>, ToolError> {
    Ok(MoodServiceClient::new(mesh.conn(MOOD)?))
}

async fn log(mesh: Mesh, caller: Caller, i: LogMoodInput) -> Result<MoodEntry, ToolError> {
    let r = client(&mesh)?
        .log_mood(caller.request(pb::LogMoodRequest {
            score: i.score as i32,
            energy: i.energy.unwrap_or(0) as i32,
            emotions: i.emotions,
            tags: i.tags,
            note: i.note,
            at: i.at.map(pb_ts),
            request_id: i.request_id,
        }))
        .await?;
    Ok(entry_out(
        r.into_inner().entry.ok_or_else(|| missing("entry"))?,
    ))
}

async fn analyze(
    mesh: Mesh,
    caller: Caller,
    i: MoodPatternsInput,
) -> Result<MoodPatterns, ToolError> {
    let now = Utc::now();
    let from = now - Duration::days(i.days.unwrap_or(30));
    let p = client(&mesh)?
        .get_mood_patterns(caller.request(pb::GetMoodPatternsRequest {
            start_time: Some(pb_ts(from)),
            end_time: Some(pb_ts(now + Duration::minutes(2))),
        }))
        .await?
        .into_inner()
        .patterns
        .ok_or_else(|| missing("patterns"))?;
    let bucket = |b: pb::MoodBucket| Bucket {
        key: b.key,
        entries: b.entries,
        average_score: b.average_score,
    };
    let effect = |t: pb::TagEffect| TagEffect {
        tag: t.tag,
        effect: t.effect,
        entries_with: t.entries_with,
        entries_without: t.entries_without,
    };
    let correlation = |c: pb::Correlation| Correlation {
        measure: c.measure,
        r: c.r,
        days: c.days,
    };
    Ok(MoodPatterns {
        entries: p.entries,
        average_score: p.average_score,
        time_zone: p.time_zone,
        by_hour: p.by_hour.into_iter().map(bucket).collect(),
        by_weekday: p.by_weekday.into_iter().map(bucket).collect(),
        better_with: p.better_with.into_iter().map(effect).collect(),
        worse_with: p.worse_with.into_iter().map(effect).collect(),
        tags_without_enough_entries: p.tags_without_enough_entries,
        with_task_completions: p.with_task_completions.map(correlation),
        with_minutes_worked: p.with_minutes_worked.map(correlation),
        with_focus_minutes: p.with_focus_minutes.map(correlation),
    })
}

/// `mood.log` and `mood.analyze_patterns`.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new::<LogMoodInput, MoodEntry, _, _>(
            "mood.log",
            "Log a mood",
            "Records how the user feels: a 1-5 score, optional energy, emotion words, tags and a note.",
            Category::Mood,
            MOOD,
            log,
        ),
        Tool::new::<MoodPatternsInput, MoodPatterns, _, _>(
            "mood.analyze_patterns",
            "Analyse mood patterns",
            "Mood by hour and weekday in the user's time zone, the tags that go with better and worse mood, and mood against completed tasks and focus minutes.",
            Category::Mood,
            MOOD,
            analyze,
        ),
    ]
}
