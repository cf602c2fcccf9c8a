//! Events: their model, validation, and the expansion of recurring ones
//! (RRULE and EXDATE through the `rrule` crate, in the event's own time zone,
//! so a daily 09:00 stays at 09:00 local across a daylight-saving change).

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use focusforge_core::Violations;
use rrule::{Frequency, RRule, RRuleSet, Unvalidated};
use serde::{Deserialize, Serialize};

/// Limits of events, for validation and the docs.
pub mod limits {
    pub const TITLE: usize = 500;
    pub const DESCRIPTION: usize = 10_000;
    pub const LOCATION: usize = 500;
    pub const RRULE: usize = 500;
    pub const EXDATES: usize = 500;
    /// A timed event lasts at most this many days, an all-day one
    /// `ALL_DAY_DAYS`.
    pub const TIMED_DAYS: i64 = 14;
    pub const ALL_DAY_DAYS: i64 = 366;
    /// Events a user may keep.
    pub const EVENTS: u32 = 5_000;
    /// Occurrences of one series expanded for one query (an hourly event
    /// over the 90 days of free/busy fits).
    pub const OCCURRENCES: usize = 5_000;
    /// A series with more occurrences than this counts as endless.
    pub const SERIES: usize = 10_000;
    /// Steps of the recurrence iterator one expansion may take, from the
    /// series' first start: the bound on the work one series costs.
    pub const STEPS: usize = 200_000;
    /// Events start in these years.
    pub const YEARS: (i32, i32) = (1900, 2199);
    /// A listed range spans at most this many days; free/busy and the
    /// scheduler's horizon `RANGE_DAYS_BUSY`.
    pub const RANGE_DAYS: i64 = 400;
    pub const RANGE_DAYS_BUSY: i64 = 90;
    pub const PAGE_SIZE_DEFAULT: usize = 100;
    pub const PAGE_SIZE_MAX: i64 = 500;
}

/// Far future, in epoch ms: the end of a series that does not end.
pub const ENDLESS_MS: i64 = 253_402_300_799_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Event,
    FocusBlock,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::FocusBlock => "focus_block",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    #[default]
    Local,
    Imported,
    Google,
}

/// When an event (its first occurrence) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Timed {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    /// `end` is exclusive.
    AllDay { start: NaiveDate, end: NaiveDate },
}

/// What a client gives for an event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFields {
    pub title: String,
    pub description: String,
    pub location: String,
    pub when: When,
    pub tz: String,
    /// Without the `RRULE:` prefix; empty for none.
    pub rrule: String,
    pub exdates: Vec<DateTime<Utc>>,
    pub busy: bool,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub fields: EventFields,
    pub kind: Kind,
    pub task_id: String,
    pub block_id: String,
    pub source: Source,
    pub uid: String,
    pub sequence: i32,
    pub placement_reason: String,
    /// The id of this event where it came from (Google event id, imported
    /// UID), or of its copy in Google for a pushed focus block.
    pub external_id: String,
    /// A focus block pushed to Google: the sequence pushed.
    pub pushed_sequence: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// Local midnight of a day in `tz` (the first instant of the day when a
/// daylight-saving change skips midnight).
pub fn midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.with_timezone(&Utc)
        }
        chrono::LocalResult::None => tz
            .from_local_datetime(&(naive + Duration::hours(1)))
            .earliest()
            .map_or_else(|| Utc.from_utc_datetime(&naive), |t| t.with_timezone(&Utc)),
    }
}

pub fn parse_tz(field: &str, v: &mut Violations, tz: &str) -> Tz {
    match tz.parse::<Tz>() {
        Ok(tz) => tz,
        Err(_) => {
            v.add(field, "must be an IANA time zone such as Europe/Berlin");
            chrono_tz::UTC
        }
    }
}

/// `UNTIL` as the `rrule` crate takes it: in UTC. RFC 5545 also allows a
/// DATE (with all-day events) or a local time; both are read in the
/// event's zone, a DATE as the end of that day.
fn utc_until(rrule: &str, tz: Tz) -> String {
    rrule
        .split(';')
        .map(|part| {
            let Some(v) = part
                .strip_prefix("UNTIL=")
                .or_else(|| part.strip_prefix("until="))
            else {
                return part.to_owned();
            };
            if v.ends_with('Z') {
                return part.to_owned();
            }
            let local = if v.len() == 8 {
                NaiveDate::parse_from_str(v, "%Y%m%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(23, 59, 59))
            } else {
                chrono::NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S").ok()
            };
            match local.and_then(|l| tz.from_local_datetime(&l).earliest()) {
                Some(t) => format!("UNTIL={}", t.with_timezone(&Utc).format("%Y%m%dT%H%M%SZ")),
                None => part.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The rule of a recurring event, validated against its first start.
fn rule_set(rrule: &str, tz: Tz, first: DateTime<Utc>) -> Result<RRuleSet, String> {
    let rule: RRule<Unvalidated> = utc_until(rrule.trim(), tz)
        .parse()
        .map_err(|e| format!("{e}"))?;
    if matches!(rule.get_freq(), Frequency::Secondly | Frequency::Minutely) {
        return Err("must recur at most hourly (FREQ=HOURLY or slower)".into());
    }
    // More than one occurrence an hour is minutely in disguise.
    if !rule.get_by_second().is_empty() || rule.get_by_minute().len() > 1 {
        return Err("BYSECOND and more than one BYMINUTE are not supported".into());
    }
    let start = first.with_timezone(&rrule::Tz::Tz(tz));
    rule.build(start).map_err(|e| format!("{e}"))
}

/// The starts of a series before `to`, from its first, at most `keep` of
/// those that `wanted` accepts and at most `limits::STEPS` steps in all.
/// Whether the series went on past what was taken.
fn walk(
    set: &RRuleSet,
    to: DateTime<Utc>,
    keep: usize,
    mut wanted: impl FnMut(DateTime<Utc>) -> bool,
) -> (Vec<DateTime<Utc>>, bool) {
    let mut out = Vec::new();
    for (step, d) in set.into_iter().enumerate() {
        let d = d.with_timezone(&Utc);
        if d >= to {
            return (out, true);
        }
        if step >= limits::STEPS || out.len() >= keep {
            return (out, true);
        }
        if wanted(d) {
            out.push(d);
        }
    }
    (out, false)
}

impl EventFields {
    /// Records every violation, fields named under `prefix` (`event`).
    pub fn check(&self, v: &mut Violations, prefix: &str) {
        let f = |name: &str| format!("{prefix}.{name}");
        v.text(&f("title"), self.title.trim(), limits::TITLE);
        v.optional_text(&f("description"), &self.description, limits::DESCRIPTION);
        v.optional_text(&f("location"), &self.location, limits::LOCATION);
        let tz = parse_tz(&f("time_zone"), v, &self.tz);
        let (lo, hi) = limits::YEARS;
        if !(lo..=hi).contains(&self.first_start(tz).year()) {
            let field = match self.when {
                When::Timed { .. } => "start_time",
                When::AllDay { .. } => "start_date",
            };
            v.add(f(field), format!("must be in the years {lo}-{hi}"));
            return;
        }
        match self.when {
            When::Timed { start, end } => {
                if end <= start {
                    v.add(f("end_time"), "must be after start_time");
                } else if end - start > Duration::days(limits::TIMED_DAYS) {
                    v.add(f("end_time"), "must be at most 14 days after start_time");
                }
            }
            When::AllDay { start, end } => {
                if end <= start {
                    v.add(f("end_date"), "must be after start_date");
                } else if (end - start).num_days() > limits::ALL_DAY_DAYS {
                    v.add(f("end_date"), "must be at most 366 days after start_date");
                }
            }
        }
        v.list(&f("exdates"), &self.exdates, limits::EXDATES);
        if !self.rrule.is_empty() {
            if self.rrule.len() > limits::RRULE {
                v.add(f("rrule"), "must be at most 500 characters");
            } else if let Err(e) = rule_set(&self.rrule, tz, self.first_start(tz)) {
                v.add(
                    f("rrule"),
                    format!("is not a valid RFC 5545 recurrence rule: {e}"),
                );
            }
        }
    }

    pub fn tz(&self) -> Tz {
        self.tz.parse().unwrap_or(chrono_tz::UTC)
    }

    fn first_start(&self, tz: Tz) -> DateTime<Utc> {
        match self.when {
            When::Timed { start, .. } => start,
            When::AllDay { start, .. } => midnight(tz, start),
        }
    }

    /// The first occurrence.
    pub fn first(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let tz = self.tz();
        match self.when {
            When::Timed { start, end } => (start, end),
            When::AllDay { start, end } => (midnight(tz, start), midnight(tz, end)),
        }
    }

    /// The occurrence that starts at `start`.
    fn occurrence(&self, start: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let tz = self.tz();
        match self.when {
            When::Timed { start: s, end } => (start, start + (end - s)),
            When::AllDay { start: s, end } => {
                let day = start.with_timezone(&tz).date_naive();
                let days = end - s;
                (start, midnight(tz, day + days))
            }
        }
    }

    fn set(&self) -> Option<RRuleSet> {
        if self.rrule.is_empty() {
            return None;
        }
        let tz = self.tz();
        let rtz = rrule::Tz::Tz(tz);
        let set = rule_set(&self.rrule, tz, self.first_start(tz)).ok()?;
        Some(
            self.exdates
                .iter()
                .fold(set, |set, ex| set.exdate(ex.with_timezone(&rtz))),
        )
    }

    /// The occurrences overlapping `[from, to)`, by start; at most
    /// `limits::OCCURRENCES` of a series.
    pub fn occurrences(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let (s, e) = self.first();
        let Some(set) = self.set() else {
            return if s < to && e > from {
                vec![(s, e)]
            } else {
                Vec::new()
            };
        };
        // Longest an occurrence can be (all-day ones across a DST change
        // are an hour longer): look that much earlier.
        let span = (e - s) + Duration::hours(2);
        let from_start = from - span;
        walk(&set, to, limits::OCCURRENCES, |d| d >= from_start)
            .0
            .into_iter()
            .map(|d| self.occurrence(d))
            .filter(|(s, e)| *s < to && *e > from)
            .collect()
    }

    /// The end of the last occurrence in epoch ms ([`ENDLESS_MS`] for a
    /// series without an end or with more than `limits::SERIES`).
    pub fn span_end_ms(&self) -> i64 {
        let Some(set) = self.set() else {
            return self.first().1.timestamp_millis();
        };
        let endless = set
            .get_rrule()
            .iter()
            .any(|r| r.get_count().is_none() && r.get_until().is_none());
        if endless {
            return ENDLESS_MS;
        }
        let far = DateTime::from_timestamp_millis(ENDLESS_MS).unwrap_or_default();
        let (all, more) = walk(&set, far, limits::SERIES, |_| true);
        if more {
            return ENDLESS_MS;
        }
        all.last().map_or(self.first().1.timestamp_millis(), |d| {
            self.occurrence(*d).1.timestamp_millis()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn daily_berlin() -> EventFields {
        EventFields {
            title: "standup".into(),
            description: String::new(),
            location: String::new(),
            // 09:00 Berlin in summer time.
            when: When::Timed {
                start: at("2026-10-22T07:00:00Z"),
                end: at("2026-10-22T07:15:00Z"),
            },
            tz: "Europe/Berlin".into(),
            rrule: "FREQ=DAILY;COUNT=10".into(),
            exdates: vec![at("2026-10-24T07:00:00Z")],
            busy: true,
        }
    }

    #[test]
    fn a_daily_event_stays_at_nine_local_across_the_change() {
        let e = daily_berlin();
        let mut v = Violations::new();
        e.check(&mut v, "event");
        assert!(v.is_empty());
        let occ = e.occurrences(at("2026-10-01T00:00:00Z"), at("2026-12-01T00:00:00Z"));
        // Ten, less one excluded.
        assert_eq!(occ.len(), 9);
        let berlin: Vec<String> = occ
            .iter()
            .map(|(s, _)| {
                s.with_timezone(&chrono_tz::Europe::Berlin)
                    .format("%H:%M")
                    .to_string()
            })
            .collect();
        assert!(berlin.iter().all(|h| h == "09:00"), "{berlin:?}");
        // Summer time ends on 25 October: 07:00 UTC before, 08:00 after.
        assert_eq!(occ[0].0, at("2026-10-22T07:00:00Z"));
        assert_eq!(occ.last().map(|o| o.0), Some(at("2026-10-31T08:00:00Z")));
        assert_eq!(
            e.span_end_ms(),
            at("2026-10-31T08:15:00Z").timestamp_millis()
        );
    }

    #[test]
    fn bad_rules_and_zones_name_their_field() {
        let mut e = daily_berlin();
        e.rrule = "FREQ=SOMETIMES".into();
        e.tz = "Mars/Olympus".into();
        let mut v = Violations::new();
        e.check(&mut v, "event");
        let err = v.finish().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("event.rrule"), "{err}");
        assert!(err.contains("event.time_zone"), "{err}");
        // Minutely in disguise, and a start no calendar needs.
        let mut e = daily_berlin();
        e.rrule = "FREQ=HOURLY;BYMINUTE=0,1,2,3".into();
        let mut v = Violations::new();
        e.check(&mut v, "event");
        assert!(v.finish().is_err());
        let mut e = daily_berlin();
        e.when = When::Timed {
            start: at("1066-10-14T09:00:00Z"),
            end: at("1066-10-14T10:00:00Z"),
        };
        let mut v = Violations::new();
        e.check(&mut v, "event");
        let err = v.finish().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("event.start_time"), "{err}");
    }

    #[test]
    fn until_may_be_a_date_or_local_time() {
        let mut e = daily_berlin();
        e.rrule = "FREQ=DAILY;UNTIL=20261025".into();
        let mut v = Violations::new();
        e.check(&mut v, "event");
        assert!(v.is_empty());
        let occ = e.occurrences(at("2026-10-01T00:00:00Z"), at("2026-12-01T00:00:00Z"));
        // 22, 23, 25 October (the 24th excluded).
        assert_eq!(occ.len(), 3);
        e.rrule = "FREQ=DAILY;UNTIL=20261023T090000".into();
        assert_eq!(
            e.occurrences(at("2026-10-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))
                .len(),
            2
        );
    }

    #[test]
    fn all_day_series_and_endless_rules() {
        let e = EventFields {
            title: "holiday".into(),
            description: String::new(),
            location: String::new(),
            when: When::AllDay {
                start: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default(),
                end: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap_or_default(),
            },
            tz: "America/New_York".into(),
            rrule: "FREQ=WEEKLY".into(),
            exdates: Vec::new(),
            busy: false,
        };
        let occ = e.occurrences(at("2026-12-01T00:00:00Z"), at("2026-12-29T00:00:00Z"));
        assert_eq!(occ.len(), 4);
        assert_eq!(occ[0].0, at("2026-12-01T05:00:00Z"));
        assert_eq!(occ[0].1, at("2026-12-02T05:00:00Z"));
        assert_eq!(e.span_end_ms(), ENDLESS_MS);
    }
}
