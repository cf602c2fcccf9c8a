//! The users domain: each user's profile and focus preferences. A profile
//! with defaults exists from a user's first call; there is no way to address
//! another user's profile.

use chrono::{DateTime, Utc};
use focusforge_cache::NamedCache;
use focusforge_core::{Error, Result, UserId, Violations};
use focusforge_store::{Document, NewDocument, SharedStore, StoreError};
use serde::{Deserialize, Serialize};

/// The collection profiles live in, keyed by user id.
pub const COLLECTION: &str = "user_profiles";

const DISPLAY_NAME_MAX: usize = 100;

/// How the user likes to work. Fields added later default when a stored
/// profile lacks them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub timezone: String,
    pub focus_minutes: i32,
    pub short_break_minutes: i32,
    pub long_break_minutes: i32,
    pub daily_goal_minutes: i32,
    /// The local hour a day starts at, 0-23.
    #[serde(default)]
    pub day_start_hour: i32,
    /// Weekdays without work, ISO numbers (1 Monday - 7 Sunday), sorted.
    #[serde(default)]
    pub rest_days: Vec<u8>,
    /// A long break after every N focus sessions of a day.
    #[serde(default = "default_long_break_every")]
    pub long_break_every: i32,
    /// The working day, minutes after local midnight: `[start, end)`.
    #[serde(default = "default_work_start")]
    pub work_start_minute: i32,
    #[serde(default = "default_work_end")]
    pub work_end_minute: i32,
    /// Weekdays work is scheduled on, ISO numbers, sorted.
    #[serde(default = "default_working_days")]
    pub working_days: Vec<u8>,
}

fn default_long_break_every() -> i32 {
    4
}

fn default_work_start() -> i32 {
    9 * 60
}

fn default_work_end() -> i32 {
    17 * 60
}

fn default_working_days() -> Vec<u8> {
    vec![1, 2, 3, 4, 5]
}

/// Limits of the preferences, for validation and the docs.
pub mod limits {
    pub const DAY_START_HOUR: (i64, i64) = (0, 23);
    pub const LONG_BREAK_EVERY: (i64, i64) = (1, 12);
    /// At most six rest days: a week keeps one working day.
    pub const REST_DAYS: usize = 6;
    pub const WORK_START_MINUTE: (i64, i64) = (0, 1439);
    pub const WORK_END_MINUTE: (i64, i64) = (1, 1440);
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            focus_minutes: 25,
            short_break_minutes: 5,
            long_break_minutes: 15,
            daily_goal_minutes: 120,
            day_start_hour: 0,
            rest_days: Vec::new(),
            long_break_every: default_long_break_every(),
            work_start_minute: default_work_start(),
            work_end_minute: default_work_end(),
            working_days: default_working_days(),
        }
    }
}

impl Preferences {
    fn check(&self, v: &mut Violations, prefix: &str) {
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            v.add(
                format!("{prefix}.timezone"),
                "must be an IANA time zone such as Europe/Berlin",
            );
        }
        let f = |name: &str| format!("{prefix}.{name}");
        v.range(&f("focus_minutes"), self.focus_minutes.into(), 5, 180);
        v.range(
            &f("short_break_minutes"),
            self.short_break_minutes.into(),
            1,
            60,
        );
        v.range(
            &f("long_break_minutes"),
            self.long_break_minutes.into(),
            1,
            120,
        );
        v.range(
            &f("daily_goal_minutes"),
            self.daily_goal_minutes.into(),
            0,
            1440,
        );
        let (lo, hi) = limits::DAY_START_HOUR;
        v.range(&f("day_start_hour"), self.day_start_hour.into(), lo, hi);
        let (lo, hi) = limits::LONG_BREAK_EVERY;
        v.range(&f("long_break_every"), self.long_break_every.into(), lo, hi);
        let mut days = self.rest_days.clone();
        days.sort_unstable();
        days.dedup();
        v.check(
            days.len() == self.rest_days.len()
                && days.len() <= limits::REST_DAYS
                && days.iter().all(|d| (1..=7).contains(d)),
            f("rest_days"),
            "must be at most 6 different weekdays",
        );
        let (lo, hi) = limits::WORK_START_MINUTE;
        v.range(
            &f("work_start_minute"),
            self.work_start_minute.into(),
            lo,
            hi,
        );
        let (lo, hi) = limits::WORK_END_MINUTE;
        v.range(&f("work_end_minute"), self.work_end_minute.into(), lo, hi);
        v.check(
            self.work_end_minute > self.work_start_minute,
            f("work_end_minute"),
            "must be after work_start_minute",
        );
        let mut days = self.working_days.clone();
        days.sort_unstable();
        days.dedup();
        v.check(
            days.len() == self.working_days.len()
                && !days.is_empty()
                && days.iter().all(|d| (1..=7).contains(d)),
            f("working_days"),
            "must be 1-7 different weekdays",
        );
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Body {
    display_name: String,
    preferences: Preferences,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub user_id: UserId,
    pub display_name: String,
    pub preferences: Preferences,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfilePatch {
    pub display_name: Option<String>,
    pub timezone: Option<String>,
    pub focus_minutes: Option<i32>,
    pub short_break_minutes: Option<i32>,
    pub long_break_minutes: Option<i32>,
    pub daily_goal_minutes: Option<i32>,
    pub day_start_hour: Option<i32>,
    pub rest_days: Option<Vec<u8>>,
    pub long_break_every: Option<i32>,
    pub work_start_minute: Option<i32>,
    pub work_end_minute: Option<i32>,
    pub working_days: Option<Vec<u8>>,
}

fn to_profile(doc: Document) -> Result<Profile> {
    let body: Body = serde_json::from_value(doc.body)
        .map_err(|e| Error::internal(format!("profile of {} is unreadable: {e}", doc.user_id)))?;
    Ok(Profile {
        user_id: doc.user_id,
        display_name: body.display_name,
        preferences: body.preferences,
        created_at: doc.created_at,
        updated_at: doc.updated_at,
        version: doc.version,
    })
}

fn store_err(e: StoreError) -> Error {
    e.into_domain("profile")
}

#[derive(Clone)]
pub struct Users {
    store: SharedStore,
    /// Read-through cache of profiles (the design's user context cache).
    cache: Option<NamedCache>,
}

impl Users {
    /// Timestamps come from the store's clock. The cache, if any, is only
    /// ever an accelerator: its failures never fail a call.
    pub fn new(store: SharedStore, cache: Option<NamedCache>) -> Self {
        Self { store, cache }
    }

    /// The user's profile, created with defaults on first use.
    pub async fn get(&self, user: &UserId) -> Result<Profile> {
        if let Some(cache) = &self.cache
            && let Ok(Some(bytes)) = cache.get(user.as_str()).await
            && let Ok(profile) = serde_json::from_slice::<Profile>(&bytes)
        {
            return Ok(profile);
        }
        let profile = self.get_doc(user).await.and_then(to_profile)?;
        self.remember(&profile).await;
        Ok(profile)
    }

    async fn remember(&self, profile: &Profile) {
        if let (Some(cache), Ok(bytes)) = (&self.cache, serde_json::to_vec(profile)) {
            let _ = cache.set(profile.user_id.as_str(), bytes).await;
        }
    }

    async fn get_doc(&self, user: &UserId) -> Result<Document> {
        if let Some(doc) = self
            .store
            .get(COLLECTION, user, user.as_str())
            .await
            .map_err(store_err)?
        {
            return Ok(doc);
        }
        let body = serde_json::to_value(Body::default()).map_err(Error::internal)?;
        let new = NewDocument {
            id: user.as_str().to_owned(),
            user_id: user.clone(),
            body,
            expires_at: None,
        };
        match self.store.insert(COLLECTION, new).await {
            Ok(doc) => Ok(doc),
            // Created by a concurrent first call.
            Err(StoreError::AlreadyExists) => self
                .store
                .get(COLLECTION, user, user.as_str())
                .await
                .map_err(store_err)?
                .ok_or_else(|| Error::internal("profile vanished after creation")),
            Err(e) => Err(store_err(e)),
        }
    }

    pub async fn update(&self, user: &UserId, patch: ProfilePatch) -> Result<Profile> {
        let mut v = Violations::new();
        v.check(
            patch != ProfilePatch::default(),
            "update_mask",
            "must name at least one field",
        );
        if let Some(name) = &patch.display_name {
            v.optional_text("profile.display_name", name.trim(), DISPLAY_NAME_MAX);
        }
        v.finish()?;

        // Make sure the profile exists, then change it in place.
        self.get_doc(user).await?;
        let doc = focusforge_store::modify(
            self.store.as_ref(),
            COLLECTION,
            user,
            user.as_str(),
            "profile",
            None,
            |doc| {
                let mut body: Body = serde_json::from_value(doc.body.clone())
                    .map_err(|e| Error::internal(format!("profile is unreadable: {e}")))?;
                patch.apply(&mut body);
                let mut v = Violations::new();
                body.preferences.check(&mut v, "profile.preferences");
                v.finish()?;
                serde_json::to_value(&body)
                    .map(Some)
                    .map_err(Error::internal)
            },
        )
        .await?;
        let profile = to_profile(doc)?;
        if let Some(cache) = &self.cache {
            // Invalidate rather than overwrite: a concurrent reader may be
            // about to store what it read before this write.
            let _ = cache.delete(user.as_str()).await;
        }
        Ok(profile)
    }
}

impl ProfilePatch {
    fn apply(&self, body: &mut Body) {
        if let Some(name) = &self.display_name {
            body.display_name = name.trim().to_owned();
        }
        let p = &mut body.preferences;
        if let Some(tz) = &self.timezone {
            p.timezone.clone_from(tz);
        }
        let set = |slot: &mut i32, value: Option<i32>| {
            if let Some(value) = value {
                *slot = value;
            }
        };
        set(&mut p.focus_minutes, self.focus_minutes);
        set(&mut p.short_break_minutes, self.short_break_minutes);
        set(&mut p.long_break_minutes, self.long_break_minutes);
        set(&mut p.daily_goal_minutes, self.daily_goal_minutes);
        set(&mut p.day_start_hour, self.day_start_hour);
        set(&mut p.long_break_every, self.long_break_every);
        set(&mut p.work_start_minute, self.work_start_minute);
        set(&mut p.work_end_minute, self.work_end_minute);
        if let Some(days) = &self.rest_days {
            p.rest_days.clone_from(days);
            p.rest_days.sort_unstable();
        }
        if let Some(days) = &self.working_days {
            p.working_days.clone_from(days);
            p.working_days.sort_unstable();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use focusforge_core::ManualClock;
    use focusforge_store::SqliteStore;

    use super::*;

    fn users() -> (Users, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(
            DateTime::from_timestamp(0, 0).unwrap_or_default(),
        ));
        let store = SqliteStore::open(&dir.path().join("db"), clock.clone()).expect("open");
        let cache = NamedCache::new(
            Arc::new(focusforge_cache::MemoryCache::new(1 << 20)),
            "user",
            std::time::Duration::from_secs(3600),
        );
        (Users::new(Arc::new(store), Some(cache)), dir)
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("user")
    }

    #[tokio::test]
    async fn first_call_creates_defaults_once() {
        let (users, _dir) = users();
        let a = users.get(&user("alice")).await.expect("get");
        assert_eq!(a.preferences, Preferences::default());
        assert_eq!(a.version, 1);
        let again = users.get(&user("alice")).await.expect("get");
        assert_eq!(again, a);
    }

    #[tokio::test]
    async fn a_cached_profile_is_never_served_after_an_update() {
        let (users, _dir) = users();
        let alice = user("alice");
        assert_eq!(
            users
                .get(&alice)
                .await
                .expect("get")
                .preferences
                .focus_minutes,
            25
        );
        let patch = ProfilePatch {
            focus_minutes: Some(45),
            ..ProfilePatch::default()
        };
        users.update(&alice, patch).await.expect("update");
        let again = users.get(&alice).await.expect("get");
        assert_eq!(again.preferences.focus_minutes, 45);
        assert_eq!(again.version, 2);
    }

    #[tokio::test]
    async fn update_changes_only_the_named_fields_of_the_caller() {
        let (users, _dir) = users();
        let patch = ProfilePatch {
            display_name: Some(" Alice ".into()),
            timezone: Some("Europe/Berlin".into()),
            focus_minutes: Some(50),
            ..ProfilePatch::default()
        };
        let p = users.update(&user("alice"), patch).await.expect("update");
        assert_eq!(p.display_name, "Alice");
        assert_eq!(p.preferences.timezone, "Europe/Berlin");
        assert_eq!(p.preferences.focus_minutes, 50);
        assert_eq!(p.preferences.short_break_minutes, 5);
        let bob = users.get(&user("bob")).await.expect("bob");
        assert_eq!(bob.display_name, "");
        assert_eq!(bob.preferences, Preferences::default());
    }

    #[tokio::test]
    async fn bad_preferences_name_their_fields_and_change_nothing() {
        let (users, _dir) = users();
        let patch = ProfilePatch {
            timezone: Some("Mars/Olympus".into()),
            focus_minutes: Some(1),
            daily_goal_minutes: Some(5000),
            ..ProfilePatch::default()
        };
        match users.update(&user("alice"), patch).await {
            Err(Error::InvalidArgument(v)) => {
                let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(
                    fields,
                    [
                        "profile.preferences.timezone",
                        "profile.preferences.focus_minutes",
                        "profile.preferences.daily_goal_minutes"
                    ]
                );
            }
            other => panic!("expected invalid argument, got {other:?}"),
        }
        assert_eq!(
            users.get(&user("alice")).await.expect("get").preferences,
            Preferences::default()
        );
    }
}
