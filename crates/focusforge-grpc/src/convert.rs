use chrono::{DateTime, Utc};
use focusforge_core::Violations;
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
