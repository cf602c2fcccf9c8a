//! Points, levels, streaks, achievements and the store, with no wire types.
//!
//! Every user has one wallet document: balance, lifetime points, counters,
//! the streak, unlocked achievements, and the ledger entries of its last
//! write (`pending`). A change of points is one conditional write of the
//! wallet (on its version) that carries the new entries; the entries are then
//! inserted into the ledger under ids made from their sequence numbers. A
//! writer that finds `pending` entries not yet in the ledger inserts them
//! before it writes, so a crash between the two writes loses nothing and
//! counts nothing twice: the wallet is the truth, the ledger catches up, and
//! an entry's idempotency key is looked up in both before anything is
//! applied.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use focusforge_core::{Clock, Error, Result, UserId, Violations, new_id};
use focusforge_store::{
    Document, Filter, NewDocument, Order, Precondition, Query, SharedStore, SortKey, StoreError,
    page_token,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::streak::{Calendar, Streak};

pub const WALLETS: &str = "game_wallets";
pub const LEDGER: &str = "game_ledger";
pub const REWARDS: &str = "game_rewards";
const WALLET_ID: &str = "wallet";

/// Limits of the contract, for validation, the MCP schemas and the docs.
pub mod limits {
    pub const ADJUSTMENT_MAX: i64 = 100_000;
    pub const NOTE_CHARS: usize = 200;
    pub const KEY_CHARS: usize = 200;
    pub const REWARD_NAME_CHARS: usize = 100;
    pub const REWARD_DESCRIPTION_CHARS: usize = 500;
    pub const REWARDS: usize = 100;
    pub const REQUEST_ID_CHARS: usize = 100;
    pub const PAGE_SIZE_DEFAULT: usize = 50;
    pub const PAGE_SIZE_MAX: i64 = 100;
    /// Days of daily totals a wallet keeps (for the daily goal).
    pub const DAYS_KEPT: usize = 8;
}

/// How often a wallet write is tried under contention. Every lost race is
/// another writer's success, and a refused spend writes nothing, so a
/// contender loses at most as often as others succeed.
const ATTEMPTS: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    TaskCompleted,
    FocusSessionCompleted,
    DailyGoalReached,
    StreakMilestone,
    Achievement,
    Redemption,
    Adjustment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Store,
    Reward,
    StreakFreeze,
}

/// A task's priority as the rules weigh it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Low,
    Medium,
    High,
    Urgent,
}

/// What an item was when it was redeemed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSnapshot {
    pub id: String,
    pub kind: ItemKind,
    pub name: String,
    pub cost: i64,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    pub reason: Reason,
    pub points: i64,
    pub balance: i64,
    pub key: String,
    pub description: String,
    #[serde(default)]
    pub subject: String,
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemSnapshot>,
}

impl Entry {
    pub fn time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.at).unwrap_or_default()
    }
}

/// An entry about to be applied (sequence and balance are the wallet's).
#[derive(Debug, Clone)]
struct Draft {
    reason: Reason,
    points: i64,
    key: String,
    description: String,
    subject: String,
    item: Option<ItemSnapshot>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Day {
    focus_minutes: i64,
    goal_reached: bool,
}

/// The wallet document's body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Wallet {
    seq: i64,
    balance: i64,
    lifetime: i64,
    pending: Vec<Entry>,
    tasks_completed: i64,
    focus_sessions: i64,
    focus_minutes: i64,
    redemptions: i64,
    streak: Streak,
    /// Achievement id -> unlock time (epoch ms).
    achievements: BTreeMap<String, i64>,
    /// The last few days' focus minutes, by local date.
    days: BTreeMap<NaiveDate, Day>,
}

/// A metric an achievement watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    TasksCompleted,
    FocusSessions,
    FocusMinutes,
    StreakDays,
    Redemptions,
}

/// A declarative achievement: unlocked once, when `metric` reaches
/// `threshold` (a threshold of 1 is a "first of a kind").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AchievementRule {
    pub id: String,
    pub name: String,
    pub description: String,
    pub metric: Metric,
    pub threshold: i64,
    #[serde(default)]
    pub points: i64,
}

/// An item every user of the deployment can buy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRule {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub cost: i64,
    /// `store` (default) or `streak_freeze`.
    #[serde(default = "store_kind")]
    pub kind: ItemKind,
}

fn store_kind() -> ItemKind {
    ItemKind::Store
}

/// The rules (`[service.gamification]`), with documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Points for any completed task.
    pub task_points: i64,
    /// Multipliers of a task's points by priority.
    pub low_priority_factor: f64,
    pub medium_priority_factor: f64,
    pub high_priority_factor: f64,
    pub urgent_priority_factor: f64,
    /// Points per hour of a task's estimate, counted up to `estimate_cap_hours`.
    pub points_per_estimated_hour: i64,
    pub estimate_cap_hours: i64,
    /// Added when a task with a due time is completed before it.
    pub on_time_bonus: i64,
    /// A focus session earns one point per this many minutes focused.
    pub focus_minutes_per_point: i64,
    /// Once a day, when the day's focus minutes reach the profile's goal.
    pub daily_goal_bonus: i64,
    /// Level n starts at `level_base * n * (n - 1) / 2` lifetime points.
    pub level_base: i64,
    /// Streak lengths that award `streak_points_per_day` times the length.
    pub streak_milestones: Vec<u32>,
    pub streak_points_per_day: i64,
    /// A freeze is earned every this many streak days, up to `max_freezes`.
    pub freeze_every_days: u32,
    pub max_freezes: u32,
    /// The highest cost of a user's own reward.
    pub reward_cost_cap: i64,
    pub items: Vec<ItemRule>,
    pub achievements: Vec<AchievementRule>,
}

impl Default for Settings {
    fn default() -> Self {
        let a =
            |id: &str, name: &str, description: &str, metric, threshold, points| AchievementRule {
                id: id.into(),
                name: name.into(),
                description: description.into(),
                metric,
                threshold,
                points,
            };
        Self {
            task_points: 10,
            low_priority_factor: 0.5,
            medium_priority_factor: 1.0,
            high_priority_factor: 1.5,
            urgent_priority_factor: 2.0,
            points_per_estimated_hour: 5,
            estimate_cap_hours: 8,
            on_time_bonus: 5,
            focus_minutes_per_point: 5,
            daily_goal_bonus: 20,
            level_base: 100,
            streak_milestones: vec![3, 7, 14, 30, 60, 100, 365],
            streak_points_per_day: 2,
            freeze_every_days: 7,
            max_freezes: 2,
            reward_cost_cap: 10_000,
            items: vec![
                ItemRule {
                    id: "streak-freeze".into(),
                    name: "Streak freeze".into(),
                    description: "Covers one missed working day of your streak.".into(),
                    cost: 50,
                    kind: ItemKind::StreakFreeze,
                },
                ItemRule {
                    id: "long-break".into(),
                    name: "A guilt-free long break".into(),
                    description: "Take an extra 30 minutes off.".into(),
                    cost: 40,
                    kind: ItemKind::Store,
                },
            ],
            achievements: vec![
                a(
                    "first-task",
                    "First one done",
                    "Complete a task.",
                    Metric::TasksCompleted,
                    1,
                    5,
                ),
                a(
                    "ten-tasks",
                    "Getting things done",
                    "Complete 10 tasks.",
                    Metric::TasksCompleted,
                    10,
                    25,
                ),
                a(
                    "first-focus",
                    "In the zone",
                    "Complete a focus session.",
                    Metric::FocusSessions,
                    1,
                    5,
                ),
                a(
                    "ten-hours",
                    "Ten hours of focus",
                    "Focus for 600 minutes in completed sessions.",
                    Metric::FocusMinutes,
                    600,
                    50,
                ),
                a(
                    "week-streak",
                    "A week in a row",
                    "Keep a 7-day streak.",
                    Metric::StreakDays,
                    7,
                    20,
                ),
                a(
                    "first-reward",
                    "Treat yourself",
                    "Redeem something from the store.",
                    Metric::Redemptions,
                    1,
                    0,
                ),
            ],
        }
    }
}

impl Settings {
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut bad = Vec::new();
        if self.level_base < 1 {
            bad.push("level_base must be at least 1");
        }
        if self.focus_minutes_per_point < 1 {
            bad.push("focus_minutes_per_point must be at least 1");
        }
        if !(1..=1_000_000).contains(&self.reward_cost_cap) {
            bad.push("reward_cost_cap must be 1-1000000");
        }
        if self.freeze_every_days == 0 {
            bad.push("freeze_every_days must be at least 1");
        }
        if self
            .items
            .iter()
            .any(|i| i.id.is_empty() || i.id.starts_with('r') && i.id.len() == 17)
        {
            bad.push("items need ids that are not reward ids");
        }
        if self
            .items
            .iter()
            .any(|i| !(1..=self.reward_cost_cap.max(1_000_000)).contains(&i.cost))
        {
            bad.push("items cost at least 1");
        }
        if self
            .achievements
            .iter()
            .any(|a| a.threshold < 1 || a.points < 0)
        {
            bad.push("achievements need a threshold of at least 1 and points of at least 0");
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("[service.gamification]: {}", bad.join("; ")))
        }
    }

    fn factor(&self, p: Priority) -> f64 {
        match p {
            Priority::Low => self.low_priority_factor,
            Priority::Medium => self.medium_priority_factor,
            Priority::High => self.high_priority_factor,
            Priority::Urgent => self.urgent_priority_factor,
        }
    }

    /// Points of a completed task.
    pub fn task_points(&self, t: &CompletedTask) -> i64 {
        let hours = (i64::from(t.estimated_minutes.max(0)) / 60).min(self.estimate_cap_hours);
        let base = (self.task_points + hours * self.points_per_estimated_hour) as f64;
        let mut points = (base * self.factor(t.priority)).round() as i64;
        if t.due_at.is_some_and(|due| t.completed_at <= due) {
            points += self.on_time_bonus;
        }
        points.max(1)
    }

    /// Points of a completed focus session.
    pub fn focus_points(&self, minutes: i64) -> i64 {
        minutes / self.focus_minutes_per_point
    }

    /// The level of `lifetime` points and where it and the next start.
    pub fn level(&self, lifetime: i64) -> (i32, i64, i64) {
        let start = |n: i64| self.level_base * n * (n - 1) / 2;
        let mut n = 1i64;
        while start(n + 1) <= lifetime && n < 1000 {
            n += 1;
        }
        (n as i32, start(n), start(n + 1))
    }
}

/// A completed task, as the Task service reports it.
#[derive(Debug, Clone)]
pub struct CompletedTask {
    pub id: String,
    pub title: String,
    pub priority: Priority,
    pub estimated_minutes: i32,
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: DateTime<Utc>,
}

/// A completed focus session, as the Focus service reports it.
#[derive(Debug, Clone)]
pub struct CompletedSession {
    pub id: String,
    pub minutes: i64,
    pub ended_at: DateTime<Utc>,
}

/// What the profile says about the user's days.
#[derive(Debug, Clone, Default)]
pub struct UserDays {
    pub calendar: Calendar,
    /// 0 means no goal.
    pub daily_goal_minutes: i64,
}

/// An achievement and where the user stands.
#[derive(Debug, Clone)]
pub struct AchievementView {
    pub rule: AchievementRule,
    pub unlocked_at: Option<DateTime<Utc>>,
    pub progress: i64,
}

#[derive(Debug, Clone)]
pub struct Progress {
    pub balance: i64,
    pub lifetime: i64,
    pub level: i32,
    pub level_start: i64,
    pub next_level: i64,
    pub streak: Streak,
    pub active_today: bool,
    pub achievements: Vec<AchievementView>,
    pub tasks_completed: i64,
    pub focus_sessions: i64,
    pub focus_minutes: i64,
    pub ledger_entries: i64,
}

/// The outcome of an award.
#[derive(Debug, Clone)]
pub struct Awarded {
    pub entries: Vec<Entry>,
    pub already: bool,
    pub progress: Progress,
}

/// An item on sale.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub kind: ItemKind,
    pub name: String,
    pub description: String,
    pub cost: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub version: i64,
}

impl From<&ItemRule> for Item {
    fn from(i: &ItemRule) -> Self {
        Item {
            id: i.id.clone(),
            kind: i.kind,
            name: i.name.clone(),
            description: i.description.clone(),
            cost: i.cost,
            created_at: None,
            updated_at: None,
            version: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RewardBody {
    name: String,
    description: String,
    cost: i64,
}

/// A redemption's outcome.
#[derive(Debug, Clone)]
pub struct Redeemed {
    pub entry: Entry,
    pub balance: i64,
}

pub struct EntryPage {
    pub entries: Vec<Entry>,
    pub next_page_token: String,
}

/// Writers of one wallet in this process take turns (by a lock per shard of
/// users), so they do not spend their work on lost races; writers in other
/// processes are still ordered by the wallet's version.
const WALLET_LOCKS: usize = 64;

/// The gamification domain. Every method acts on the given user only.
#[derive(Clone)]
pub struct Game {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    settings: Arc<Settings>,
    locks: Arc<Vec<tokio::sync::Mutex<()>>>,
}

fn store_err(e: StoreError) -> Error {
    e.into_domain("wallet")
}

fn ledger_id(seq: i64) -> String {
    format!("{seq:012}")
}

fn wallet_of(doc: &Document) -> Result<Wallet> {
    serde_json::from_value(doc.body.clone())
        .map_err(|e| Error::internal(format!("wallet of {} is unreadable: {e}", doc.user_id)))
}

impl Game {
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self {
            store,
            clock,
            settings: Arc::new(settings),
            locks: Arc::new(
                (0..WALLET_LOCKS)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    async fn wallet_doc(&self, user: &UserId) -> Result<Document> {
        if let Some(doc) = self
            .store
            .get(WALLETS, user, WALLET_ID)
            .await
            .map_err(store_err)?
        {
            return Ok(doc);
        }
        let body = serde_json::to_value(Wallet::default()).map_err(Error::internal)?;
        let new = NewDocument {
            id: WALLET_ID.into(),
            user_id: user.clone(),
            body,
            expires_at: None,
        };
        match self.store.insert(WALLETS, new).await {
            Ok(doc) => Ok(doc),
            Err(StoreError::AlreadyExists) => self
                .store
                .get(WALLETS, user, WALLET_ID)
                .await
                .map_err(store_err)?
                .ok_or_else(|| Error::internal("wallet vanished after creation")),
            Err(e) => Err(store_err(e)),
        }
    }

    /// Puts entries of a wallet's last write into the ledger (those there
    /// already stay as they are).
    async fn flush(&self, user: &UserId, entries: &[Entry]) -> Result<()> {
        for e in entries {
            let doc = NewDocument {
                id: ledger_id(e.seq),
                user_id: user.clone(),
                body: serde_json::to_value(e).map_err(Error::internal)?,
                expires_at: None,
            };
            match self.store.insert(LEDGER, doc).await {
                Ok(_) | Err(StoreError::AlreadyExists) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(())
    }

    /// The entry with this idempotency key, if it was applied.
    async fn applied(&self, user: &UserId, wallet: &Wallet, key: &str) -> Result<Option<Entry>> {
        if let Some(e) = wallet.pending.iter().find(|e| e.key == key) {
            return Ok(Some(e.clone()));
        }
        let page = self
            .store
            .find(
                LEDGER,
                user,
                &Query {
                    filters: vec![Filter::eq("key", key)],
                    order: Order::default(),
                    limit: 1,
                    after: None,
                },
            )
            .await
            .map_err(store_err)?;
        page.documents
            .into_iter()
            .next()
            .map(|d| serde_json::from_value(d.body).map_err(Error::internal))
            .transpose()
    }

    /// Applies a change keyed by `key` once: reads the wallet, finishes its
    /// last write, returns the earlier entry when the key was applied, and
    /// otherwise lets `change` decide and writes on the wallet's version.
    async fn apply<F>(
        &self,
        user: &UserId,
        key: &str,
        mut change: F,
    ) -> Result<(Vec<Entry>, bool, Wallet)>
    where
        F: FnMut(&mut Wallet, DateTime<Utc>) -> Result<Vec<Draft>>,
    {
        let shard = page_token::fingerprint(user.as_str()) as usize % WALLET_LOCKS;
        let _turn = self.locks[shard].lock().await;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                let cap_us = 1000u64 << attempt.min(4);
                let pause = rand::random_range(0..=cap_us);
                tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
            }
            let doc = self.wallet_doc(user).await?;
            let mut wallet = wallet_of(&doc)?;
            self.flush(user, &wallet.pending).await?;
            if let Some(e) = self.applied(user, &wallet, key).await? {
                return Ok((vec![e], true, wallet));
            }
            let now = self.clock.now();
            let drafts = change(&mut wallet, now)?;
            let mut entries = Vec::with_capacity(drafts.len());
            for d in drafts {
                wallet.seq += 1;
                wallet.balance += d.points;
                if d.points > 0 {
                    wallet.lifetime += d.points;
                }
                entries.push(Entry {
                    seq: wallet.seq,
                    reason: d.reason,
                    points: d.points,
                    balance: wallet.balance,
                    key: d.key,
                    description: d.description,
                    subject: d.subject,
                    at: now.timestamp_millis(),
                    item: d.item,
                });
            }
            wallet.pending.clone_from(&entries);
            let body = serde_json::to_value(&wallet).map_err(Error::internal)?;
            match self
                .store
                .replace(
                    WALLETS,
                    user,
                    WALLET_ID,
                    body,
                    None,
                    Precondition::Version(doc.version),
                )
                .await
            {
                Ok(_) => {}
                Err(StoreError::VersionMismatch { .. }) => continue,
                Err(e) => return Err(store_err(e)),
            }
            // The wallet holds the entries now; a failure here is repaired
            // by the next write or read.
            if let Err(e) = self.flush(user, &entries).await {
                tracing::warn!(error = %e, "ledger entries left for the next write");
            }
            return Ok((entries, false, wallet));
        }
        Err(Error::Unavailable(
            "the wallet is being changed concurrently, try again".into(),
        ))
    }

    /// Points for a completed task (once per task).
    pub async fn task_completed(
        &self,
        user: &UserId,
        task: &CompletedTask,
        days: &UserDays,
    ) -> Result<Awarded> {
        let key = format!("task-completed:{}", task.id);
        let points = self.settings.task_points(task);
        let s = self.settings.clone();
        let (entries, already, wallet) = self
            .apply(user, &key, |w, _now| {
                w.tasks_completed += 1;
                let mut drafts = vec![Draft {
                    reason: Reason::TaskCompleted,
                    points,
                    key: key.clone(),
                    description: format!("Completed \"{}\"", clip(&task.title, 80)),
                    subject: task.id.clone(),
                    item: None,
                }];
                activity(&s, w, days, task.completed_at, 0, &mut drafts);
                achievements(&s, w, task.completed_at, &mut drafts);
                Ok(drafts)
            })
            .await?;
        Ok(self.awarded(entries, already, wallet, days))
    }

    /// Points for a completed focus session (once per session).
    pub async fn session_completed(
        &self,
        user: &UserId,
        session: &CompletedSession,
        days: &UserDays,
    ) -> Result<Awarded> {
        let key = format!("focus-completed:{}", session.id);
        let points = self.settings.focus_points(session.minutes);
        let s = self.settings.clone();
        let (entries, already, wallet) = self
            .apply(user, &key, |w, _now| {
                w.focus_sessions += 1;
                w.focus_minutes += session.minutes;
                let mut drafts = vec![Draft {
                    reason: Reason::FocusSessionCompleted,
                    points,
                    key: key.clone(),
                    description: format!("Focused for {} minutes", session.minutes),
                    subject: session.id.clone(),
                    item: None,
                }];
                activity(&s, w, days, session.ended_at, session.minutes, &mut drafts);
                achievements(&s, w, session.ended_at, &mut drafts);
                Ok(drafts)
            })
            .await?;
        Ok(self.awarded(entries, already, wallet, days))
    }

    /// A manual change of points, once per key.
    pub async fn adjust(
        &self,
        user: &UserId,
        points: i64,
        note: &str,
        key: &str,
        days: &UserDays,
    ) -> Result<Awarded> {
        let mut v = Violations::new();
        v.check(
            points != 0 && points.abs() <= limits::ADJUSTMENT_MAX,
            "adjustment.points",
            format!(
                "must be non-zero and at most {} either way",
                limits::ADJUSTMENT_MAX
            ),
        );
        v.text("adjustment.note", note, limits::NOTE_CHARS);
        v.text("adjustment.key", key, limits::KEY_CHARS);
        v.finish()?;
        let key = format!("adjustment:{key}");
        let (entries, already, wallet) = self
            .apply(user, &key, |w, _now| {
                if w.balance + points < 0 {
                    return Err(Error::FailedPrecondition(format!(
                        "the balance is {} points; an adjustment of {points} would make it negative",
                        w.balance
                    )));
                }
                Ok(vec![Draft {
                    reason: Reason::Adjustment,
                    points,
                    key: key.clone(),
                    description: note.to_owned(),
                    subject: String::new(),
                    item: None,
                }])
            })
            .await?;
        Ok(self.awarded(entries, already, wallet, days))
    }

    fn awarded(
        &self,
        entries: Vec<Entry>,
        already: bool,
        wallet: Wallet,
        days: &UserDays,
    ) -> Awarded {
        Awarded {
            entries: if already { Vec::new() } else { entries },
            already,
            progress: self.view(&wallet, days),
        }
    }

    /// Points, level, streak and achievements as of now.
    pub async fn progress(&self, user: &UserId, days: &UserDays) -> Result<Progress> {
        let doc = self.wallet_doc(user).await?;
        let wallet = wallet_of(&doc)?;
        self.flush(user, &wallet.pending).await?;
        Ok(self.view(&wallet, days))
    }

    fn view(&self, w: &Wallet, days: &UserDays) -> Progress {
        let today = days.calendar.day(self.clock.now());
        let streak = w.streak.as_of(&days.calendar, today);
        let (level, level_start, next_level) = self.settings.level(w.lifetime);
        let achievements = self
            .settings
            .achievements
            .iter()
            .map(|rule| AchievementView {
                rule: rule.clone(),
                unlocked_at: w
                    .achievements
                    .get(&rule.id)
                    .and_then(|ms| DateTime::from_timestamp_millis(*ms)),
                progress: metric(w, rule.metric).min(rule.threshold),
            })
            .collect();
        Progress {
            balance: w.balance,
            lifetime: w.lifetime,
            level,
            level_start,
            next_level,
            active_today: streak.last_active == Some(today),
            streak,
            achievements,
            tasks_completed: w.tasks_completed,
            focus_sessions: w.focus_sessions,
            focus_minutes: w.focus_minutes,
            ledger_entries: w.seq,
        }
    }

    /// The user's ledger entries written at or after `since`, in batches
    /// in no particular order; entries still pending in the wallet are
    /// written first, so none is missing.
    pub async fn ledger_changes(
        &self,
        user: &UserId,
        since: DateTime<Utc>,
    ) -> Result<impl futures::Stream<Item = Result<Vec<Entry>>> + Send + 'static> {
        use futures::StreamExt;
        let doc = self.wallet_doc(user).await?;
        self.flush(user, &wallet_of(&doc)?.pending).await?;
        let until = self.clock.now() + chrono::Duration::minutes(1);
        Ok(
            focusforge_store::changes(self.store.clone(), LEDGER, user, since, until)
                .into_stream()
                .map(|batch| {
                    batch
                        .map_err(store_err)?
                        .into_iter()
                        .map(|d| serde_json::from_value(d.body).map_err(Error::internal))
                        .collect()
                }),
        )
    }

    /// The ledger, newest first.
    pub async fn ledger(
        &self,
        user: &UserId,
        page_size: i32,
        token: &str,
        redemptions_only: bool,
    ) -> Result<EntryPage> {
        let mut v = Violations::new();
        v.range("page_size", page_size.into(), 0, limits::PAGE_SIZE_MAX);
        v.finish()?;
        let doc = self.wallet_doc(user).await?;
        self.flush(user, &wallet_of(&doc)?.pending).await?;
        let filters = if redemptions_only {
            vec![Filter::eq("reason", "redemption")]
        } else {
            Vec::new()
        };
        let fingerprint = page_token::fingerprint(&format!("ledger:{filters:?}"));
        let after = page_token::decode_request(token, fingerprint)?;
        let limit = if page_size == 0 {
            limits::PAGE_SIZE_DEFAULT
        } else {
            page_size as usize
        };
        let page = self
            .store
            .find(
                LEDGER,
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
        let mut entries: Vec<Entry> = page
            .documents
            .into_iter()
            .map(|d| serde_json::from_value(d.body).map_err(Error::internal))
            .collect::<Result<_>>()?;
        entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
        Ok(EntryPage {
            entries,
            next_page_token: page
                .next
                .map(|c| page_token::encode(&c, fingerprint))
                .unwrap_or_default(),
        })
    }

    /// The deployment's items and the user's own rewards.
    pub async fn items(&self, user: &UserId) -> Result<Vec<Item>> {
        let mut out: Vec<Item> = self.settings.items.iter().map(Item::from).collect();
        let page = self
            .store
            .find(
                REWARDS,
                user,
                &Query {
                    filters: Vec::new(),
                    order: Order::default(),
                    limit: limits::REWARDS,
                    after: None,
                },
            )
            .await
            .map_err(store_err)?;
        for doc in page.documents {
            out.push(to_reward(doc)?);
        }
        Ok(out)
    }

    fn check_reward(&self, v: &mut Violations, prefix: &str, r: &RewardBody) {
        let f = |n: &str| format!("{prefix}{n}");
        v.text(&f("name"), r.name.trim(), limits::REWARD_NAME_CHARS);
        v.optional_text(
            &f("description"),
            &r.description,
            limits::REWARD_DESCRIPTION_CHARS,
        );
        v.range(&f("cost"), r.cost, 1, self.settings.reward_cost_cap);
    }

    pub async fn create_reward(
        &self,
        user: &UserId,
        name: String,
        description: String,
        cost: i64,
    ) -> Result<Item> {
        let body = RewardBody {
            name: name.trim().to_owned(),
            description,
            cost,
        };
        let mut v = Violations::new();
        self.check_reward(&mut v, "", &body);
        v.finish()?;
        let existing = self
            .store
            .find(
                REWARDS,
                user,
                &Query {
                    filters: Vec::new(),
                    order: Order::default(),
                    limit: limits::REWARDS,
                    after: None,
                },
            )
            .await
            .map_err(store_err)?;
        if existing.documents.len() >= limits::REWARDS {
            return Err(Error::FailedPrecondition(format!(
                "at most {} rewards of your own; delete one first",
                limits::REWARDS
            )));
        }
        let doc = NewDocument {
            id: format!("r{}", &new_id()[..16]),
            user_id: user.clone(),
            body: serde_json::to_value(&body).map_err(Error::internal)?,
            expires_at: None,
        };
        let doc = self.store.insert(REWARDS, doc).await.map_err(store_err)?;
        to_reward(doc)
    }

    pub async fn update_reward(
        &self,
        user: &UserId,
        id: &str,
        name: Option<String>,
        description: Option<String>,
        cost: Option<i64>,
    ) -> Result<Item> {
        let mut v = Violations::new();
        v.check(!id.is_empty(), "reward.id", "is required");
        v.check(
            name.is_some() || description.is_some() || cost.is_some(),
            "update_mask",
            "must name at least one field",
        );
        v.finish()?;
        let doc = focusforge_store::modify(
            self.store.as_ref(),
            REWARDS,
            user,
            id,
            "reward",
            None,
            |doc| {
                let mut body: RewardBody = serde_json::from_value(doc.body.clone())
                    .map_err(|e| Error::internal(format!("reward is unreadable: {e}")))?;
                if let Some(n) = &name {
                    body.name = n.trim().to_owned();
                }
                if let Some(d) = &description {
                    body.description.clone_from(d);
                }
                if let Some(c) = cost {
                    body.cost = c;
                }
                let mut v = Violations::new();
                self.check_reward(&mut v, "reward.", &body);
                v.finish()?;
                serde_json::to_value(&body)
                    .map(Some)
                    .map_err(Error::internal)
            },
        )
        .await?;
        to_reward(doc)
    }

    pub async fn delete_reward(&self, user: &UserId, id: &str) -> Result<()> {
        if id.is_empty() {
            return Err(Error::invalid("id", "is required"));
        }
        self.store
            .delete(REWARDS, user, id, Precondition::None)
            .await
            .map_err(|e| e.into_domain("reward"))
    }

    async fn item(&self, user: &UserId, id: &str) -> Result<Item> {
        if let Some(i) = self.settings.items.iter().find(|i| i.id == id) {
            return Ok(Item::from(i));
        }
        match self.store.get(REWARDS, user, id).await {
            Ok(Some(doc)) => to_reward(doc),
            Ok(None) => Err(Error::NotFound(format!("store item {id}"))),
            Err(e) => Err(e.into_domain("store item")),
        }
    }

    /// Buys an item: the cost is taken from the balance in the same write
    /// that records the entry, on condition that nobody changed the wallet
    /// since it was read, so the balance never goes below zero.
    pub async fn redeem(&self, user: &UserId, item_id: &str, request_id: &str) -> Result<Redeemed> {
        let mut v = Violations::new();
        v.text("item_id", item_id, 100);
        v.optional_text("request_id", request_id, limits::REQUEST_ID_CHARS);
        v.finish()?;
        let item = self.item(user, item_id).await?;
        let key = if request_id.is_empty() {
            format!("redeem:{}", new_id())
        } else {
            format!("redeem:{request_id}")
        };
        let s = self.settings.clone();
        let (entries, _already, wallet) = self
            .apply(user, &key, |w, now| {
                if w.balance < item.cost {
                    return Err(Error::FailedPrecondition(format!(
                        "the balance is {} points and {} costs {}",
                        w.balance, item.name, item.cost
                    )));
                }
                w.redemptions += 1;
                if item.kind == ItemKind::StreakFreeze {
                    w.streak.freezes += 1;
                }
                let mut drafts = vec![Draft {
                    reason: Reason::Redemption,
                    points: -item.cost,
                    key: key.clone(),
                    description: format!("Redeemed {}", item.name),
                    subject: item.id.clone(),
                    item: Some(ItemSnapshot {
                        id: item.id.clone(),
                        kind: item.kind,
                        name: item.name.clone(),
                        cost: item.cost,
                    }),
                }];
                achievements(&s, w, now, &mut drafts);
                Ok(drafts)
            })
            .await?;
        let entry = entries
            .into_iter()
            .find(|e| e.reason == Reason::Redemption)
            .ok_or_else(|| Error::internal("a redemption without its entry"))?;
        Ok(Redeemed {
            entry,
            balance: wallet.balance,
        })
    }
}

fn to_reward(doc: Document) -> Result<Item> {
    let body: RewardBody = serde_json::from_value(doc.body)
        .map_err(|e| Error::internal(format!("reward {} is unreadable: {e}", doc.id)))?;
    Ok(Item {
        id: doc.id,
        kind: ItemKind::Reward,
        name: body.name,
        description: body.description,
        cost: body.cost,
        created_at: Some(doc.created_at),
        updated_at: Some(doc.updated_at),
        version: doc.version,
    })
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

fn metric(w: &Wallet, m: Metric) -> i64 {
    match m {
        Metric::TasksCompleted => w.tasks_completed,
        Metric::FocusSessions => w.focus_sessions,
        Metric::FocusMinutes => w.focus_minutes,
        Metric::StreakDays => i64::from(w.streak.longest),
        Metric::Redemptions => w.redemptions,
    }
}

/// An active moment: the streak, its milestones and freezes, and the
/// day's focus minutes against the goal.
fn activity(
    s: &Settings,
    w: &mut Wallet,
    days: &UserDays,
    at: DateTime<Utc>,
    focus_minutes: i64,
    drafts: &mut Vec<Draft>,
) {
    let day = days.calendar.day(at);
    if let Some(len) = w.streak.active(&days.calendar, day).to {
        if s.streak_milestones.contains(&len) {
            drafts.push(Draft {
                reason: Reason::StreakMilestone,
                points: i64::from(len) * s.streak_points_per_day,
                key: format!("streak:{len}:{day}"),
                description: format!("{len} days in a row"),
                subject: String::new(),
                item: None,
            });
        }
        if len % s.freeze_every_days == 0 && w.streak.freezes < s.max_freezes {
            w.streak.freezes += 1;
        }
    }
    if focus_minutes > 0 {
        let totals = w.days.entry(day).or_default();
        totals.focus_minutes += focus_minutes;
        if days.daily_goal_minutes > 0
            && !totals.goal_reached
            && totals.focus_minutes >= days.daily_goal_minutes
        {
            totals.goal_reached = true;
            drafts.push(Draft {
                reason: Reason::DailyGoalReached,
                points: s.daily_goal_bonus,
                key: format!("daily-goal:{day}"),
                description: format!(
                    "Reached the daily goal of {} focus minutes",
                    days.daily_goal_minutes
                ),
                subject: String::new(),
                item: None,
            });
        }
        while w.days.len() > limits::DAYS_KEPT {
            w.days.pop_first();
        }
    }
}

/// Unlocks every achievement whose threshold is reached.
fn achievements(s: &Settings, w: &mut Wallet, at: DateTime<Utc>, drafts: &mut Vec<Draft>) {
    for rule in &s.achievements {
        if w.achievements.contains_key(&rule.id) || metric(w, rule.metric) < rule.threshold {
            continue;
        }
        w.achievements
            .insert(rule.id.clone(), at.timestamp_millis());
        drafts.push(Draft {
            reason: Reason::Achievement,
            points: rule.points,
            key: format!("achievement:{}", rule.id),
            description: format!("Unlocked \"{}\"", rule.name),
            subject: rule.id.clone(),
            item: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_documented_curve() {
        let s = Settings::default();
        assert_eq!(s.level(0), (1, 0, 100));
        assert_eq!(s.level(99), (1, 0, 100));
        assert_eq!(s.level(100), (2, 100, 300));
        assert_eq!(s.level(1000), (5, 1000, 1500));
    }

    #[test]
    fn task_points_scale_with_priority_estimate_and_punctuality() {
        let s = Settings::default();
        let at: DateTime<Utc> = "2026-03-02T10:00:00Z".parse().expect("time");
        let t = |priority, minutes, due: Option<&str>| CompletedTask {
            id: "t".into(),
            title: "t".into(),
            priority,
            estimated_minutes: minutes,
            due_at: due.map(|d| d.parse().expect("due")),
            completed_at: at,
        };
        assert_eq!(s.task_points(&t(Priority::Medium, 0, None)), 10);
        assert_eq!(s.task_points(&t(Priority::Urgent, 120, None)), 40);
        assert_eq!(s.task_points(&t(Priority::Low, 0, None)), 5);
        assert_eq!(
            s.task_points(&t(Priority::Medium, 0, Some("2026-03-02T12:00:00Z"))),
            15
        );
        assert_eq!(
            s.task_points(&t(Priority::Medium, 0, Some("2026-03-02T09:00:00Z"))),
            10
        );
        // The estimate counts up to eight hours.
        assert_eq!(s.task_points(&t(Priority::Medium, 10_000, None)), 50);
    }
}
