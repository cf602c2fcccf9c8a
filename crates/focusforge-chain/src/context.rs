//! What a chain knows about the user, fetched from the Memory service.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use focusforge_core::Result;
use serde::Serialize;

/// One of the user's tasks, as much as a prompt needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskBrief {
    pub title: String,
    pub status: String,
    pub completed_at: Option<DateTime<Utc>>,
    /// The task's blocks: title and minutes.
    pub blocks: Vec<(String, i32)>,
}

/// A past task similar to the one at hand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimilarTask {
    pub task: TaskBrief,
    pub score: f32,
}

/// The user's context: preferences, moods, tasks, insights, memories.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UserContext {
    pub focus_minutes: Option<i32>,
    pub daily_goal_minutes: Option<i32>,
    pub timezone: Option<String>,
    /// Newest first.
    pub moods: Vec<String>,
    /// Newest first.
    pub recent_tasks: Vec<TaskBrief>,
    /// Best first.
    pub similar_tasks: Vec<SimilarTask>,
    pub insights: Vec<String>,
    pub memories: Vec<String>,
    /// Counted by the tasks domain over every completion, in the user's
    /// time zone; absent without a Memory service.
    pub progress: Option<Progress>,
}

/// Tasks completed today and the streak of days with a completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub completed_today: u32,
    pub streak_days: u32,
}

impl UserContext {
    /// The lines a prompt gets, and the response reports as used.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(m) = self.focus_minutes {
            out.push(format!("prefers focus blocks of {m} minutes"));
        }
        if let Some(mood) = self.moods.first() {
            out.push(format!("recent mood: {mood}"));
        }
        for s in self.similar_tasks.iter().take(2) {
            let blocks: Vec<String> = s
                .task
                .blocks
                .iter()
                .map(|(t, m)| format!("{t} ({m} min)"))
                .collect();
            if blocks.is_empty() {
                out.push(format!(
                    "similar past task ({}): {}",
                    s.task.status, s.task.title
                ));
            } else {
                out.push(format!(
                    "similar past task ({}): {} -> blocks: {}",
                    s.task.status,
                    s.task.title,
                    blocks.join("; ")
                ));
            }
        }
        for i in self.insights.iter().take(3) {
            out.push(format!("insight: {i}"));
        }
        for m in self.memories.iter().take(2) {
            out.push(format!("remembered: {m}"));
        }
        out
    }
}

/// Where a chain gets the user's context from (the Memory service over
/// gRPC, acting as the caller).
#[async_trait]
pub trait ContextSource: Send + Sync {
    async fn user_context(&self, query: &str) -> Result<UserContext>;
}

/// No context: for callers without a Memory service.
pub struct NoContext;

#[async_trait]
impl ContextSource for NoContext {
    async fn user_context(&self, _query: &str) -> Result<UserContext> {
        Ok(UserContext::default())
    }
}
