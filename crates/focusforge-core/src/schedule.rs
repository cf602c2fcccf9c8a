//! Scheduling vocabulary shared by the planner and the job queue: run
//! priorities and retry with exponential backoff and jitter.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Run order: critical first, background last.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Critical,
    High,
    #[default]
    Medium,
    Low,
    Background,
}

impl Priority {
    /// 0 (critical) to 4 (background).
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
            Priority::Background => "background",
        }
    }
}

/// When and how often a failed action is tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retried).
    pub max_attempts: u32,
    pub initial_delay: Duration,
    /// Each retry waits this many times longer than the one before.
    pub multiplier: f64,
    pub max_delay: Duration,
    /// 0-1: a delay is drawn from `[d * (1 - jitter), d]`.
    pub jitter: f64,
    /// Error kinds that are never retried (e.g. `invalid_argument`).
    pub non_retryable: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_delay: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(300),
            jitter: 0.2,
            non_retryable: vec!["invalid_argument".into(), "not_found".into()],
        }
    }
}

/// How a failure ends under a [`RetryPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Tried again after this wait.
    Retry(Duration),
    /// Not retried: the error kind is non-retryable.
    Failed,
    /// Not retried: the attempts are used up.
    Dead,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RetryError {
    pub field: &'static str,
    pub reason: String,
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), RetryError> {
        let bad = |field, reason: &str| {
            Err(RetryError {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(1..=100).contains(&self.max_attempts) {
            return bad("max_attempts", "must be 1-100");
        }
        if !(self.multiplier.is_finite() && (1.0..=10.0).contains(&self.multiplier)) {
            return bad("multiplier", "must be 1-10");
        }
        if !(self.jitter.is_finite() && (0.0..=1.0).contains(&self.jitter)) {
            return bad("jitter", "must be 0-1");
        }
        if self.max_delay < self.initial_delay {
            return bad("max_delay", "must be at least initial_delay");
        }
        if self.max_delay > Duration::from_secs(7 * 24 * 3600) {
            return bad("max_delay", "must be at most 7 days");
        }
        Ok(())
    }

    /// Whether a failure of `kind` after `attempts` attempts is tried again.
    pub fn retries(&self, attempts: u32, kind: &str) -> bool {
        attempts < self.max_attempts && !self.non_retryable.iter().any(|k| k == kind)
    }

    /// What a failure of `kind` on attempt `attempts` comes to: another
    /// try after a delay (`sample`, 0-1, draws the jitter), a failure that
    /// is not retried, or dead once the attempts are used up.
    pub fn after_failure(&self, attempts: u32, kind: &str, sample: f64) -> AfterFailure {
        if self.retries(attempts, kind) {
            AfterFailure::Retry(self.delay(attempts, sample))
        } else if self.non_retryable.iter().any(|k| k == kind) {
            AfterFailure::Failed
        } else {
            AfterFailure::Dead
        }
    }

    /// The wait before retry number `retry` (1 = the first retry), with
    /// `sample` (0-1, uniform) drawing the jitter.
    pub fn delay(&self, retry: u32, sample: f64) -> Duration {
        let exp = self
            .multiplier
            .powi(retry.saturating_sub(1).min(1_000) as i32);
        let base = (self.initial_delay.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        let factor = 1.0 - self.jitter * sample.clamp(0.0, 1.0);
        Duration::from_secs_f64(base * factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_multiplier_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            multiplier: 3.0,
            max_delay: Duration::from_secs(2),
            jitter: 0.0,
            non_retryable: vec![],
        };
        let d: Vec<u128> = (1..=5).map(|r| p.delay(r, 0.5).as_millis()).collect();
        assert_eq!(d, vec![100, 300, 900, 2000, 2000]);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let p = RetryPolicy {
            jitter: 0.25,
            initial_delay: Duration::from_secs(4),
            ..RetryPolicy::default()
        };
        for i in 0..=100 {
            let d = p.delay(1, i as f64 / 100.0).as_secs_f64();
            assert!((3.0..=4.0).contains(&d), "{d}");
        }
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(4));
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(3));
    }

    #[test]
    fn attempts_and_error_kinds_decide_retries() {
        let p = RetryPolicy::default();
        assert!(p.retries(1, "unavailable"));
        assert!(p.retries(2, "unavailable"));
        assert!(!p.retries(3, "unavailable"));
        assert!(!p.retries(1, "invalid_argument"));
    }

    #[test]
    fn bad_policies_name_the_field() {
        let cases = [
            (
                RetryPolicy {
                    max_attempts: 0,
                    ..Default::default()
                },
                "max_attempts",
            ),
            (
                RetryPolicy {
                    multiplier: f64::NAN,
                    ..Default::default()
                },
                "multiplier",
            ),
            (
                RetryPolicy {
                    jitter: 1.5,
                    ..Default::default()
                },
                "jitter",
            ),
            (
                RetryPolicy {
                    max_delay: Duration::from_millis(1),
                    ..Default::default()
                },
                "max_delay",
            ),
        ];
        for (p, field) in cases {
            assert_eq!(p.validate().expect_err("invalid").field, field);
        }
        RetryPolicy::default().validate().expect("default is valid");
    }
}
