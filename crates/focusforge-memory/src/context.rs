//! `GetUserContext` and task insights: what the other services need to know
//! about a user, gathered from the user's profile, tasks and memories.

use std::collections::{BTreeMap, HashSet};

use focusforge_core::{Error, Result, UserId, Violations, check_id};
use focusforge_tasks::{Task, TaskFilter};
use focusforge_users::Preferences;
use focusforge_vector::VectorRecord;

use crate::{Found, Memories, Memory, MemoryFilter, NewMemory, SearchMode, Tier, vector_err};

/// The kind of the memories that hold task insights.
pub const TASK_INSIGHT_KIND: &str = "task_insight";
/// How many of the newest tasks are kept embedded for similarity.
const INDEXED_TASKS: i32 = 100;

/// The tag that ties an insight to its task.
pub fn task_tag(task_id: &str) -> String {
    format!("task:{task_id}")
}

/// What `user_context` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct UserContext {
    pub preferences: Preferences,
    pub recent_tasks: Vec<Task>,
    pub similar_tasks: Vec<(Task, f32)>,
    pub insights: Vec<Memory>,
    pub relevant_memories: Vec<Found>,
    /// Completions today and the streak, in the user's time zone.
    pub progress: focusforge_tasks::Progress,
}

/// The text a task is embedded by.
fn task_text(task: &Task) -> String {
    if task.description.is_empty() {
        task.title.clone()
    } else {
        format!("{}\n{}", task.title, task.description)
    }
}

impl Memories {
    /// Stores an insight about one of the caller's tasks as a long-term
    /// memory tagged with the task.
    pub async fn record_task_insight(
        &self,
        user: &UserId,
        task_id: &str,
        insight: String,
        mut metadata: BTreeMap<String, String>,
    ) -> Result<Memory> {
        let mut v = Violations::new();
        v.check(check_id(task_id).is_ok(), "task_id", "must be 1-128 bytes");
        v.text("insight", &insight, self.policy.max_content_chars);
        v.finish()?;
        // The task must be the caller's: another user's is NOT_FOUND.
        let task = self.tasks.get(user, task_id).await?;
        metadata.insert("task_id".into(), task.id.clone());
        let memory = self
            .remember(
                user,
                Tier::LongTerm,
                NewMemory {
                    kind: TASK_INSIGHT_KIND.into(),
                    content: insight,
                    tags: vec![task_tag(&task.id)],
                    metadata,
                    ttl: None,
                },
            )
            .await?;
        if self.semantic.is_some() {
            self.index_tasks(user, vec![task]).await?;
        }
        Ok(memory)
    }

    /// Embeds the tasks whose text the task table lacks or holds stale.
    async fn index_tasks(&self, user: &UserId, tasks: Vec<Task>) -> Result<()> {
        let semantic = self.semantic()?;
        let table = &semantic.task_table;
        let mut stale = Vec::new();
        for task in tasks {
            let text = task_text(&task);
            match table
                .text_of(user.as_str(), &task.id)
                .await
                .map_err(vector_err)?
            {
                Some(indexed) if indexed == text => {}
                Some(_) => {
                    table
                        .delete(user.as_str(), &task.id)
                        .await
                        .map_err(vector_err)?;
                    stale.push((task, text));
                }
                None => stale.push((task, text)),
            }
        }
        if stale.is_empty() {
            return Ok(());
        }
        let vectors = semantic
            .embedder
            .embed(stale.iter().map(|(_, text)| text.clone()).collect())
            .await
            .map_err(crate::embed_err)?;
        let rows = stale
            .into_iter()
            .zip(vectors)
            .map(|((task, text), vector)| VectorRecord {
                id: task.id,
                user_id: user.as_str().to_owned(),
                text,
                vector,
                created_at_ms: task.created_at.timestamp_millis(),
            })
            .collect();
        table.add(rows).await.map_err(vector_err)
    }

    /// The caller's preferences and recent tasks, and, for a query,
    /// the similar tasks, their insights and the relevant memories.
    pub async fn user_context(
        &self,
        user: &UserId,
        query: &str,
        limit: i32,
    ) -> Result<UserContext> {
        let mut v = Violations::new();
        v.optional_text("query", query, self.policy.max_content_chars);
        v.range("limit", limit.into(), 0, 20);
        v.finish()?;
        let limit = if limit == 0 { 5 } else { limit as usize };
        let preferences = self.users.get(user).await?.preferences;
        // Validated on write; an unreadable zone counts days in UTC.
        let tz = preferences.timezone.parse().unwrap_or(chrono_tz::UTC);
        let progress = self.tasks.progress(user, tz, self.clock.now()).await?;

        let recent = self
            .tasks
            .list(user, TaskFilter::default(), INDEXED_TASKS, "")
            .await?
            .tasks;

        let mut similar_tasks = Vec::new();
        let mut relevant_memories = Vec::new();
        if !query.trim().is_empty() && self.semantic.is_some() {
            self.index_tasks(user, recent.clone()).await?;
            let q = self.embed_one(query).await?;
            let hits = self
                .semantic()?
                .task_table
                .search(user.as_str(), &q, limit)
                .await
                .map_err(vector_err)?;
            for hit in hits {
                match self.tasks.get(user, &hit.id).await {
                    Ok(task) => similar_tasks.push((task, hit.score)),
                    // Deleted since it was embedded.
                    Err(Error::NotFound(_)) => {
                        self.semantic()?
                            .task_table
                            .delete(user.as_str(), &hit.id)
                            .await
                            .map_err(vector_err)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            relevant_memories = self
                .search_embedded(user, query, Some(&q), limit, SearchMode::Hybrid)
                .await?;
        }

        let mut insights: Vec<Memory> = Vec::new();
        let mut seen = HashSet::new();
        for (task, _) in &similar_tasks {
            let page = self
                .list(
                    user,
                    Tier::LongTerm,
                    MemoryFilter {
                        kind: Some(TASK_INSIGHT_KIND.into()),
                        tag: Some(task_tag(&task.id)),
                        ..MemoryFilter::default()
                    },
                    limit as i32,
                    "",
                )
                .await?;
            insights.extend(
                page.memories
                    .into_iter()
                    .filter(|m| seen.insert(m.id.clone())),
            );
        }
        let newest = self
            .list(
                user,
                Tier::LongTerm,
                MemoryFilter {
                    kind: Some(TASK_INSIGHT_KIND.into()),
                    ..MemoryFilter::default()
                },
                limit as i32,
                "",
            )
            .await?;
        insights.extend(
            newest
                .memories
                .into_iter()
                .filter(|m| seen.insert(m.id.clone())),
        );
        insights.truncate(limit);

        Ok(UserContext {
            preferences,
            recent_tasks: recent.into_iter().take(limit).collect(),
            similar_tasks,
            insights,
            relevant_memories,
            progress,
        })
    }
}
