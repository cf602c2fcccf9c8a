//! The user event log. Services append what happened to a user's data
//! ([`Events::publish`]); subscribers read a user's events in order from any
//! point still kept, then wait for new ones ([`Events::subscribe`]).
//!
//! - [`EventLog`]: the port. Every event gets an id that orders the user's
//!   events; events are kept for a retention and at most a number per user,
//!   and a read from before what was trimmed says so (a gap), so a client
//!   never silently misses an event.
//! - [`RedisLog`]: one Redis stream per user, so every replica reads the
//!   same events and a client resumes on any of them.
//! - [`EmbeddedLog`]: one SQLite file in WAL mode beside the job queue, so
//!   the processes of one machine (`serve` and `focusforge worker`) share
//!   it, and events survive a restart.
//! - [`Events`]: the handle services hold. It wakes this process's
//!   subscribers of a user at once, and a watcher ([`Events::watch`]) wakes
//!   them for events other processes append.
//!
//! Event bodies are opaque bytes here (the wire layer encodes them), so
//! this crate knows nothing of the contracts.

mod embedded;
mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use focusforge_core::{Clock, UserId};
use tokio::sync::Notify;

pub use embedded::EmbeddedLog;
pub use redis::{RedisLog, RedisLogSettings};

/// What the log reports.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// An id this log never hands out.
    #[error("not an event id: {0:?}")]
    BadId(String),
    /// The backend failed.
    #[error("event log: {0}")]
    Backend(String),
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub at: DateTime<Utc>,
    pub body: Vec<u8>,
}

/// A read of a user's events after an id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    /// The next events, oldest first.
    pub events: Vec<Record>,
    /// Set when events after the id read from were trimmed: the id to read
    /// after to get the oldest event still kept. `events` is empty then.
    pub gap: Option<String>,
}

/// The log port; every backend keeps the same order and gap semantics.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// `embedded` or `redis`.
    fn backend(&self) -> &'static str;

    /// Appends one of the user's events; returns its id, which orders
    /// after every id the user's earlier events got.
    async fn append(
        &self,
        user: &UserId,
        at: DateTime<Utc>,
        body: Vec<u8>,
    ) -> Result<String, EventError>;

    /// Up to `limit` of the user's events after `after` (from the oldest
    /// kept when `None`).
    async fn read(
        &self,
        user: &UserId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Read, EventError>;

    /// Where a subscriber that wants only new events starts: the id of the
    /// user's latest event, or of the log's start when there is none (so a
    /// read from it still sees a gap the sweeper makes).
    async fn head(&self, user: &UserId) -> Result<String, EventError>;

    /// Drops events written before `before`, and each user's beyond the
    /// newest `per_user`; returns how many were dropped.
    async fn trim(&self, before: DateTime<Utc>, per_user: usize) -> Result<u64, EventError>;

    /// The users with events appended after `cursor` (any process), and the
    /// cursor to pass next time; `None` starts at the end of the log.
    async fn appended_since(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<UserId>, Option<String>), EventError>;
}

/// How many subscriptions one user may hold at once in one process.
pub const MAX_SUBSCRIPTIONS_PER_USER: usize = 16;

/// The handle services publish through and subscribers wait on. Cheap to
/// clone.
#[derive(Clone)]
pub struct Events {
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    hub: Arc<Mutex<HashMap<UserId, Arc<Notify>>>>,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
#[error("{MAX_SUBSCRIPTIONS_PER_USER} event subscriptions are open for this user already")]
pub struct TooManySubscriptions;

/// A user's subscription: wakes when one of the user's events is appended.
pub struct Subscription {
    user: UserId,
    notify: Arc<Notify>,
    hub: Arc<Mutex<HashMap<UserId, Arc<Notify>>>>,
}

impl Subscription {
    /// Resolves at the next append for this user after the call; create it
    /// before reading the log, so nothing appended in between is missed.
    pub fn changed(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut notified = Box::pin(self.notify.notified());
        notified.as_mut().enable();
        notified
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        // The map's and this one: nobody else waits for this user.
        if Arc::strong_count(&self.notify) <= 2 {
            hub.remove(&self.user);
        }
    }
}

impl Events {
    pub fn new(log: Arc<dyn EventLog>, clock: Arc<dyn Clock>) -> Self {
        Self {
            log,
            clock,
            hub: Arc::default(),
        }
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The time on the clock events are stamped with.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Appends one of the user's events and wakes its subscribers here.
    /// A failure is logged, not returned: the write the event reports has
    /// happened, and the caller's answer must not say otherwise.
    pub async fn publish(&self, user: &UserId, body: Vec<u8>) -> Option<String> {
        match self.log.append(user, self.clock.now(), body).await {
            Ok(id) => {
                self.wake(user);
                Some(id)
            }
            Err(e) => {
                tracing::warn!(error = %e, "an event was not recorded");
                None
            }
        }
    }

    /// Subscribes to the user's appends; at most
    /// [`MAX_SUBSCRIPTIONS_PER_USER`] at once.
    pub fn subscribe(&self, user: &UserId) -> Result<Subscription, TooManySubscriptions> {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        let notify = hub.entry(user.clone()).or_default().clone();
        // The map holds one; every open subscription one more.
        if Arc::strong_count(&notify) > MAX_SUBSCRIPTIONS_PER_USER + 1 {
            return Err(TooManySubscriptions);
        }
        Ok(Subscription {
            user: user.clone(),
            notify,
            hub: self.hub.clone(),
        })
    }

    fn wake(&self, user: &UserId) {
        let hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = hub.get(user) {
            n.notify_waiters();
        }
    }

    /// Wakes this process's subscribers for what other processes append,
    /// checking every `every`, until the returned task is aborted.
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let events = self.clone();
        tokio::spawn(async move {
            let mut cursor = None;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match events.log.appended_since(cursor.as_deref()).await {
                    Ok((users, next)) => {
                        for user in &users {
                            events.wake(user);
                        }
                        cursor = next.or(cursor);
                    }
                    Err(e) => tracing::warn!(error = %e, "watching the event log"),
                }
            }
        })
    }

    /// Trims the log every `every`: events older than `retention`, and each
    /// user's beyond the newest `per_user`.
    pub fn sweep(
        &self,
        every: Duration,
        retention: Duration,
        per_user: usize,
    ) -> tokio::task::JoinHandle<()> {
        let events = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let before = events.clock.now()
                    - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(1));
                match events.log.trim(before, per_user).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(dropped = n, "event log trimmed"),
                    Err(e) => tracing::warn!(error = %e, "trimming the event log"),
                }
            }
        })
    }
}
