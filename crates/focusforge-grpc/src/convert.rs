use std::time::Duration;

use chrono::{DateTime, Utc};
use focusforge_core::{Priority, RetryPolicy, Violations};
use focusforge_proto::common::v1 as common;
use prost_types::Timestamp;

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn opt_timestamp(at: Option<DateTime<Utc>>) -> Option<Timestamp> {
    at.map(timestamp)
}

/// Converts a client timestamp, accepting years 1970-9999 only.
pub fn from_timestamp(
    v: &mut Violations,
    field: &str,
    ts: Option<Timestamp>,
) -> Option<DateTime<Utc>> {
    let ts = ts?;
    const MAX_SECONDS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(0..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos) {
        v.add(field, "must be a valid time between 1970 and 9999");
        return None;
    }
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
}

/// A sync request's `changed_since`: unset means from the beginning.
pub fn changed_since(ts: Option<Timestamp>) -> focusforge_core::Result<DateTime<Utc>> {
    let mut v = Violations::new();
    let since = from_timestamp(&mut v, "changed_since", ts);
    v.finish()?;
    Ok(since.unwrap_or(DateTime::UNIX_EPOCH))
}

/// Converts a proto enum value, recording unknown values.
pub fn enum_value<E: TryFrom<i32>>(v: &mut Violations, field: &str, raw: i32) -> Option<E> {
    match E::try_from(raw) {
        Ok(e) => Some(e),
        Err(_) => {
            v.add(field, format!("unknown value {raw}"));
            None
        }
    }
}

/// The paths of a field mask, each checked against the allowed ones.
pub fn mask_paths<'a>(
    v: &mut Violations,
    mask: &'a Option<prost_types::FieldMask>,
    allowed: &[&str],
) -> Vec<&'a str> {
    let paths: Vec<&str> = mask
        .iter()
        .flat_map(|m| m.paths.iter().map(String::as_str))
        .collect();
    if paths.is_empty() {
        v.add("update_mask", "must name at least one field");
    }
    for p in &paths {
        if !allowed.contains(p) {
            v.add("update_mask", format!("unknown or read-only path {p:?}"));
        }
    }
    paths
}

/// Shared scheduling terms: `focusforge.common.v1.Priority` and
/// `RetryPolicy`.
pub fn priority(v: &mut Violations, field: &str, raw: i32) -> Priority {
    match enum_value::<common::Priority>(v, field, raw) {
        Some(common::Priority::Critical) => Priority::Critical,
        Some(common::Priority::High) => Priority::High,
        Some(common::Priority::Low) => Priority::Low,
        Some(common::Priority::Background) => Priority::Background,
        // Unspecified means the default; an unknown value is a violation.
        Some(common::Priority::Medium | common::Priority::Unspecified) | None => Priority::Medium,
    }
}

pub fn priority_pb(p: Priority) -> i32 {
    let v = match p {
        Priority::Critical => common::Priority::Critical,
        Priority::High => common::Priority::High,
        Priority::Medium => common::Priority::Medium,
        Priority::Low => common::Priority::Low,
        Priority::Background => common::Priority::Background,
    };
    v as i32
}

fn duration(v: &mut Violations, field: &str, d: Option<prost_types::Duration>) -> Option<Duration> {
    match Duration::try_from(d?) {
        Ok(d) => Some(d),
        Err(_) => {
            v.add(field, "must be a non-negative duration");
            None
        }
    }
}

fn duration_pb(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

pub fn retry(v: &mut Violations, field: &str, p: Option<common::RetryPolicy>) -> RetryPolicy {
    let defaults = RetryPolicy::default();
    let Some(p) = p else { return defaults };
    RetryPolicy {
        max_attempts: match p.max_attempts {
            0 => defaults.max_attempts,
            n => u32::try_from(n).unwrap_or(0),
        },
        initial_delay: duration(v, &format!("{field}.initial_delay"), p.initial_delay)
            .filter(|d| !d.is_zero())
            .unwrap_or(defaults.initial_delay),
        multiplier: p.multiplier.unwrap_or(defaults.multiplier),
        max_delay: duration(v, &format!("{field}.max_delay"), p.max_delay)
            .filter(|d| !d.is_zero())
            .unwrap_or(defaults.max_delay),
        jitter: p.jitter.unwrap_or(defaults.jitter),
        non_retryable: p.non_retryable,
    }
}

pub fn retry_pb(p: &RetryPolicy) -> common::RetryPolicy {
    common::RetryPolicy {
        max_attempts: i32::try_from(p.max_attempts).unwrap_or(i32::MAX),
        initial_delay: Some(duration_pb(p.initial_delay)),
        multiplier: Some(p.multiplier),
        max_delay: Some(duration_pb(p.max_delay)),
        jitter: Some(p.jitter),
        non_retryable: p.non_retryable.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_outside_the_supported_range_are_rejected() {
        let mut v = Violations::new();
        assert!(
            from_timestamp(
                &mut v,
                "due_time",
                Some(Timestamp {
                    seconds: -1,
                    nanos: 0
                })
            )
            .is_none()
        );
        assert!(
            from_timestamp(
                &mut v,
                "due_time",
                Some(Timestamp {
                    seconds: 0,
                    nanos: -1
                })
            )
            .is_none()
        );
        assert!(
            from_timestamp(
                &mut v,
                "due_time",
                Some(Timestamp {
                    seconds: i64::MAX,
                    nanos: 0
                })
            )
            .is_none()
        );
        assert!(from_timestamp(&mut v, "due_time", None).is_none());
        let ok = from_timestamp(
            &mut v,
            "due_time",
            Some(Timestamp {
                seconds: 1_800_000_000,
                nanos: 5,
            }),
        );
        assert_eq!(
            ok.map(timestamp),
            Some(Timestamp {
                seconds: 1_800_000_000,
                nanos: 5
            })
        );
        assert!(v.finish().is_err());
    }
}
