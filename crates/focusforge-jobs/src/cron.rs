//! Recurring jobs: cron expressions evaluated in a time zone, with an
//! overlap policy for firings that find the previous run unfinished.
//!
//! Each firing is enqueued with the idempotency key
//! `cron:<schedule>:<fire time>`, so schedulers in several processes fire
//! each occurrence once.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use focusforge_core::{Error, Violations};
use tokio::task::JoinHandle;

use crate::model::{JobSpec, JobState, QueueError, check_kind};
use crate::worker::Jobs;

/// What a firing does when the schedule's previous job has not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Skip the firing.
    Skip,
    /// Queue one run behind the running one; further firings are skipped
    /// while that one waits.
    QueueOne,
}

/// A recurring job.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub timezone: Tz,
    /// The job each firing enqueues (its `run_at` and idempotency key are
    /// set per firing).
    pub job: JobSpec,
    pub overlap: Overlap,
    cron: Cron,
}

impl Schedule {
    /// Checks the name, the cron expression (five fields, or six with
    /// seconds) and the IANA time zone.
    pub fn new(
        name: &str,
        expression: &str,
        timezone: &str,
        job: JobSpec,
        overlap: Overlap,
    ) -> Result<Self, Error> {
        let mut v = Violations::new();
        check_kind(&mut v, "name", name);
        let cron = Cron::from_str(expression);
        if let Err(e) = &cron {
            v.add("expression", format!("is not a cron expression: {e}"));
        }
        let tz = Tz::from_str(timezone);
        if tz.is_err() {
            v.add(
                "timezone",
                "must be an IANA time zone such as Europe/Berlin",
            );
        }
        if let Err(Error::InvalidArgument(more)) = job.validate() {
            for m in more {
                v.add(format!("job.{}", m.field), m.description);
            }
        }
        v.finish()?;
        let (Ok(cron), Ok(timezone)) = (cron, tz) else {
            return Err(Error::internal("validated schedule did not parse"));
        };
        Ok(Self {
            name: name.to_owned(),
            timezone,
            job,
            overlap,
            cron,
        })
    }

    /// The first firing strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// What one firing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub schedule: String,
    pub at: DateTime<Utc>,
    /// The job enqueued, or `None` when the overlap policy skipped it.
    pub job: Option<String>,
}

struct Entry {
    schedule: Schedule,
    /// Firings up to this instant are done.
    last: DateTime<Utc>,
    /// Jobs of this schedule that may not have finished.
    active: Vec<String>,
}

/// Fires schedules into the queue.
pub struct Scheduler {
    jobs: Jobs,
    entries: Vec<Entry>,
}

impl Scheduler {
    /// Schedules fire for occurrences after `jobs`' clock's current time.
    pub fn new(jobs: Jobs, schedules: Vec<Schedule>) -> Self {
        let now = jobs.now();
        Self {
            entries: schedules
                .into_iter()
                .map(|schedule| Entry {
                    schedule,
                    last: now,
                    active: Vec::new(),
                })
                .collect(),
            jobs,
        }
    }

    /// Fires every schedule whose next occurrence has come. Occurrences
    /// missed while nothing ticked collapse into one firing, at the latest.
    pub async fn tick(&mut self) -> Result<Vec<Firing>, QueueError> {
        let now = self.jobs.now();
        let mut fired = Vec::new();
        for entry in &mut self.entries {
            let mut due = None;
            let mut t = entry.last;
            while let Some(next) = entry.schedule.next_after(t) {
                if next > now {
                    break;
                }
                due = Some(next);
                t = next;
            }
            let Some(at) = due else { continue };
            let user = &entry.schedule.job.user;
            let mut states = Vec::new();
            let mut still = Vec::new();
            for id in &entry.active {
                if let Some(job) = self.jobs.get(user, id).await?
                    && !job.state.is_terminal()
                {
                    states.push(job.state);
                    still.push(id.clone());
                }
            }
            entry.active = still;
            let skip = match entry.schedule.overlap {
                Overlap::Skip => !states.is_empty(),
                Overlap::QueueOne => states.contains(&JobState::Queued),
            };
            if skip {
                entry.last = at;
                tracing::info!(schedule = %entry.schedule.name, %at, "recurring job skipped: the previous run has not finished");
                fired.push(Firing {
                    schedule: entry.schedule.name.clone(),
                    at,
                    job: None,
                });
                continue;
            }
            let mut spec = entry.schedule.job.clone();
            spec.run_at = Some(at);
            spec.idempotency_key = Some(format!(
                "cron:{}:{}",
                entry.schedule.name,
                at.timestamp_millis()
            ));
            // A firing whose enqueue failed is tried again next tick (the
            // idempotency key keeps it single).
            let enqueued = self.jobs.enqueue(spec).await?;
            entry.last = at;
            entry.active.push(enqueued.id.clone());
            fired.push(Firing {
                schedule: entry.schedule.name.clone(),
                at,
                job: Some(enqueued.id),
            });
        }
        Ok(fired)
    }

    /// Ticks every `every` until aborted.
    pub fn spawn(mut self, every: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.tick().await {
                    tracing::warn!(error = %e, "recurring jobs: tick failed");
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}
