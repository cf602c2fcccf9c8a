use chrono::{DateTime, Utc};
use focusforge_core::{UserId, Violations};
use serde::{Deserialize, Serialize};

use crate::limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    InProgress,
    Completed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

/// One focus block of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkBlock {
    pub title: String,
    pub minutes: i32,
    pub order: i32,
    pub done: bool,
    /// Stable within its task; empty on input means a new block.
    #[serde(default)]
    pub id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub user_id: UserId,
    pub title: String,
    pub description: String,
    pub status: Status,
    pub priority: Priority,
    pub estimated_minutes: i32,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub blocks: Vec<WorkBlock>,
    pub completion_proof: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub version: i64,
    /// Focus sessions it is expected to take; 0 means unknown.
    pub estimated_pomodoros: i32,
    /// Focus sessions completed on it, and their minutes.
    pub completed_pomodoros: i32,
    pub focus_minutes: i32,
    /// No block is scheduled before this.
    pub earliest_start_at: Option<DateTime<Utc>>,
    /// Blocks may be split into pieces of at least this; 0 never splits.
    pub min_chunk_minutes: i32,
}

/// What a client sends to create a task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewTask {
    pub title: String,
    pub description: String,
    pub priority: Option<Priority>,
    pub estimated_minutes: i32,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub blocks: Vec<WorkBlock>,
    pub estimated_pomodoros: i32,
    pub earliest_start_at: Option<DateTime<Utc>>,
    pub min_chunk_minutes: i32,
    /// Makes a retried create return the task the first one made (within
    /// a day), instead of making a second: 1-128 bytes.
    pub request_id: Option<String>,
}

/// The fields an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub estimated_minutes: Option<i32>,
    /// `Some(None)` clears the due time.
    pub due_at: Option<Option<DateTime<Utc>>>,
    pub tags: Option<Vec<String>>,
    pub blocks: Option<Vec<WorkBlock>>,
    pub estimated_pomodoros: Option<i32>,
    /// `Some(None)` clears the earliest start.
    pub earliest_start_at: Option<Option<DateTime<Utc>>>,
    pub min_chunk_minutes: Option<i32>,
}

impl TaskPatch {
    pub fn is_empty(&self) -> bool {
        *self == TaskPatch::default()
    }

    /// Records every violation `Tasks::update` would refuse, so a caller
    /// with violations of its own (an unknown enum value) reports them all.
    pub fn check(&self, v: &mut Violations) {
        if let Some(t) = &self.title {
            check_title(v, "task.title", t.trim());
        }
        if let Some(d) = &self.description {
            v.optional_text("task.description", d, limits::DESCRIPTION);
        }
        if let Some(m) = self.estimated_minutes {
            check_minutes(v, m);
        }
        if let Some(t) = &self.tags {
            normalize_tags(v, t.clone());
        }
        if let Some(b) = &self.blocks {
            normalize_blocks(v, b.clone());
        }
        if let Some(p) = self.estimated_pomodoros {
            check_pomodoros(v, "task.estimated_pomodoros", p);
        }
        if let Some(m) = self.min_chunk_minutes {
            check_min_chunk(v, "task.min_chunk_minutes", m);
        }
    }
}

impl NewTask {
    /// Records every violation `Tasks::create` would refuse.
    pub fn check(&self, v: &mut Violations) {
        check_title(v, "title", self.title.trim());
        v.optional_text("description", &self.description, limits::DESCRIPTION);
        check_minutes(v, self.estimated_minutes);
        normalize_tags(v, self.tags.clone());
        normalize_blocks(v, self.blocks.clone());
        check_pomodoros(v, "estimated_pomodoros", self.estimated_pomodoros);
        check_min_chunk(v, "min_chunk_minutes", self.min_chunk_minutes);
        if let Some(id) = &self.request_id {
            v.check(
                !id.is_empty() && id.len() <= focusforge_store::requests::MAX_BYTES,
                "request_id",
                "must be 1-128 bytes",
            );
        }
    }
}

/// Which of a user's tasks to list; every set field must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    pub statuses: Vec<Status>,
    pub priority: Option<Priority>,
    pub tag: Option<String>,
    pub due_after: Option<DateTime<Utc>>,
    pub due_before: Option<DateTime<Utc>>,
}

pub(crate) fn check_title(v: &mut Violations, field: &str, title: &str) {
    v.text(field, title, limits::TITLE);
}

pub(crate) fn check_minutes(v: &mut Violations, minutes: i32) {
    v.range(
        "estimated_minutes",
        i64::from(minutes),
        0,
        limits::ESTIMATED_MINUTES,
    );
}

pub(crate) fn check_pomodoros(v: &mut Violations, field: &str, pomodoros: i32) {
    v.range(field, i64::from(pomodoros), 0, limits::ESTIMATED_POMODOROS);
}

pub(crate) fn check_min_chunk(v: &mut Violations, field: &str, minutes: i32) {
    v.range(field, i64::from(minutes), 0, limits::BLOCK_MINUTES);
}

/// Block ids: 1-64 characters of `[A-Za-z0-9_-]`.
fn valid_block_id(id: &str) -> bool {
    (1..=limits::BLOCK_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Gives every block without an id a new one.
pub(crate) fn assign_block_ids(blocks: &mut [WorkBlock]) {
    for b in blocks.iter_mut().filter(|b| b.id.is_empty()) {
        b.id = format!("b{}", &focusforge_core::new_id().replace('-', "")[12..]);
    }
}

/// Trims, drops duplicates and checks tags.
pub(crate) fn normalize_tags(v: &mut Violations, tags: Vec<String>) -> Vec<String> {
    if !v.list("tags", &tags, limits::TAGS) {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.into_iter().enumerate() {
        let tag = tag.trim().to_owned();
        v.text(&format!("tags[{i}]"), &tag, limits::TAG);
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

/// Checks blocks and returns them sorted by order.
pub(crate) fn normalize_blocks(v: &mut Violations, blocks: Vec<WorkBlock>) -> Vec<WorkBlock> {
    if !v.list("blocks", &blocks, limits::BLOCKS) {
        return Vec::new();
    }
    let mut seen = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(blocks.len());
    for (i, mut b) in blocks.into_iter().enumerate() {
        b.title = b.title.trim().to_owned();
        check_title(v, &format!("blocks[{i}].title"), &b.title);
        let minutes = i64::from(b.minutes);
        v.range(
            &format!("blocks[{i}].minutes"),
            minutes,
            1,
            limits::BLOCK_MINUTES,
        );
        v.range(
            &format!("blocks[{i}].order"),
            i64::from(b.order),
            0,
            limits::BLOCK_ORDER,
        );
        if !seen.insert(b.order) {
            v.add(
                format!("blocks[{i}].order"),
                "must be unique within the task",
            );
        }
        if !b.id.is_empty() {
            if !valid_block_id(&b.id) {
                v.add(
                    format!("blocks[{i}].id"),
                    "must be 1-64 characters of A-Z, a-z, 0-9, _ and -",
                );
            } else if !ids.insert(b.id.clone()) {
                v.add(format!("blocks[{i}].id"), "must be unique within the task");
            }
        }
        out.push(b);
    }
    out.sort_by_key(|b| b.order);
    out
}
