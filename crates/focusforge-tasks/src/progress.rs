//! A user's progress as days see it: tasks completed today and the streak
//! of days with a completion, counted in the user's time zone.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use focusforge_core::{Result, UserId};
use focusforge_store::{Filter, Order, Query, SortKey};

use crate::service::not_found;
use crate::{COLLECTION, Status, Tasks};

/// The longest streak counted; a longer one is reported as this.
pub const STREAK_MAX_DAYS: u32 = 366;
/// Days read at a time while walking back through a streak.
const WINDOW_DAYS: i64 = 14;

/// Completions today and the streak, in the user's time zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Tasks completed since the user's local midnight.
    pub completed_today: u32,
    /// Local days in a row with at least one completed task, ending today
    /// (or yesterday, while today has none yet).
    pub streak_days: u32,
}

/// When `day` begins in `tz`, in UTC. Where midnight does not exist (a
/// daylight-saving change at midnight), the first hour that does.
pub fn day_start(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    (0..3)
        .find_map(|h| {
            day.and_hms_opt(h, 0, 0)
                .and_then(|t| tz.from_local_datetime(&t).earliest())
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

impl Tasks {
    /// The user's completions today and streak, from every completed task
    /// (not a sample), with days as `tz` has them.
    pub async fn progress(&self, user: &UserId, tz: Tz, now: DateTime<Utc>) -> Result<Progress> {
        let today = now.with_timezone(&tz).date_naive();
        let mut days = BTreeSet::new();
        let mut completed_today = 0u32;
        let mut window_end = today + Duration::days(1);
        loop {
            let window_start = window_end - Duration::days(WINDOW_DAYS);
            for at in self
                .completion_times(user, day_start(tz, window_start), day_start(tz, window_end))
                .await?
            {
                let day = at.with_timezone(&tz).date_naive();
                if day == today {
                    completed_today += 1;
                }
                days.insert(day);
            }
            let (streak, gap) = streak(&days, today);
            // The day that breaks the streak was read, or it is as long as
            // is counted.
            if gap >= window_start || streak >= STREAK_MAX_DAYS {
                return Ok(Progress {
                    completed_today,
                    streak_days: streak.min(STREAK_MAX_DAYS),
                });
            }
            window_end = window_start;
        }
    }

    /// When the user's tasks completed in `[from, to)` were completed.
    async fn completion_times(
        &self,
        user: &UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let query = Query {
                filters: vec![
                    Filter::eq("status", Status::Completed.as_str()),
                    Filter::Range {
                        field: "completed_at".into(),
                        gte: Some(from.timestamp_millis()),
                        lt: Some(to.timestamp_millis()),
                    },
                ],
                order: Order {
                    key: SortKey::CreatedAt,
                    descending: false,
                },
                limit: Query::MAX_LIMIT,
                after,
            };
            let page = self
                .store
                .find(COLLECTION, user, &query)
                .await
                .map_err(not_found)?;
            out.extend(page.documents.iter().filter_map(|d| {
                d.body
                    .get("completed_at")
                    .and_then(serde_json::Value::as_i64)
                    .and_then(DateTime::from_timestamp_millis)
            }));
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }
}

/// Days in a row in `days` ending today, or yesterday when today has none,
/// and the day before them (the one that breaks the run).
fn streak(days: &BTreeSet<NaiveDate>, today: NaiveDate) -> (u32, NaiveDate) {
    let mut day = if days.contains(&today) {
        today
    } else {
        today - Duration::days(1)
    };
    let mut n = 0;
    while days.contains(&day) && n < STREAK_MAX_DAYS {
        n += 1;
        day -= Duration::days(1);
    }
    (n, day)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{NaiveDate, TimeZone};
    use focusforge_core::ManualClock;
    use focusforge_store::SqliteStore;

    use super::*;
    use crate::NewTask;

    fn local(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        tz.with_ymd_and_hms(y, m, d, h, min, 0)
            .earliest()
            .expect("a local time")
            .with_timezone(&Utc)
    }

    /// A store with `user`'s tasks completed at `when`.
    async fn completed(user: &UserId, when: &[DateTime<Utc>]) -> (Tasks, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(when[0]));
        let store = SqliteStore::open(&dir.path().join("s.db"), clock.clone()).expect("store");
        let tasks = Tasks::new(Arc::new(store), clock.clone());
        for at in when {
            clock.set(*at);
            let t = tasks
                .create(
                    user,
                    NewTask {
                        title: "t".into(),
                        ..NewTask::default()
                    },
                )
                .await
                .expect("create");
            tasks.start(user, &t.id).await.expect("start");
            tasks
                .complete(user, &t.id, String::new())
                .await
                .expect("complete");
        }
        (tasks, dir)
    }

    #[tokio::test]
    async fn days_are_the_users_across_a_daylight_saving_change() {
        let ny: Tz = "America/New_York".parse().expect("zone");
        let alice = UserId::parse("alice").expect("user");
        // Clocks went forward at 02:00 on 8 March 2026.
        let when = [
            local(ny, 2026, 3, 6, 20, 0),
            local(ny, 2026, 3, 7, 23, 30),
            local(ny, 2026, 3, 8, 0, 30),
            local(ny, 2026, 3, 8, 3, 30),
            // 00:10 local is 04:10 UTC: today here, whatever UTC says.
            local(ny, 2026, 3, 9, 0, 10),
            local(ny, 2026, 3, 9, 9, 0),
        ];
        let (tasks, _dir) = completed(&alice, &when).await;
        let now = local(ny, 2026, 3, 9, 10, 0);
        let p = tasks.progress(&alice, ny, now).await.expect("progress");
        assert_eq!(
            p,
            Progress {
                completed_today: 2,
                streak_days: 4
            }
        );
        // In UTC the same completions fall on other days.
        let utc = tasks
            .progress(&alice, chrono_tz::UTC, now)
            .await
            .expect("utc");
        assert_eq!(
            utc,
            Progress {
                completed_today: 2,
                streak_days: 3
            }
        );
        // Another user has none of it.
        let bob = UserId::parse("bob").expect("user");
        assert_eq!(
            tasks.progress(&bob, ny, now).await.expect("bob"),
            Progress::default()
        );
    }

    #[tokio::test]
    async fn a_streak_ends_at_a_missed_day_and_spans_many_windows() {
        let tz: Tz = "Europe/Berlin".parse().expect("zone");
        let alice = UserId::parse("alice").expect("user");
        let today = NaiveDate::from_ymd_opt(2026, 11, 30).expect("date");
        let mut when: Vec<DateTime<Utc>> = (0..40)
            .map(|back| day_start(tz, today - Duration::days(back)) + Duration::hours(9))
            .collect();
        // A gap 41 days back, then more before it.
        when.push(day_start(tz, today - Duration::days(42)) + Duration::hours(9));
        when.reverse();
        let (tasks, _dir) = completed(&alice, &when).await;
        let now = day_start(tz, today) + Duration::hours(12);
        let p = tasks.progress(&alice, tz, now).await.expect("progress");
        assert_eq!(
            p,
            Progress {
                completed_today: 1,
                streak_days: 40
            }
        );
        // Before today's first completion the streak still counts to
        // yesterday.
        let tomorrow = day_start(tz, today + Duration::days(1)) + Duration::hours(8);
        let p = tasks
            .progress(&alice, tz, tomorrow)
            .await
            .expect("progress");
        assert_eq!(
            p,
            Progress {
                completed_today: 0,
                streak_days: 40
            }
        );
        let later = day_start(tz, today + Duration::days(2)) + Duration::hours(8);
        let p = tasks.progress(&alice, tz, later).await.expect("progress");
        assert_eq!(p, Progress::default());
    }
}
