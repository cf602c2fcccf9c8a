//! iCalendar (RFC 5545): the export every feed and download is, and the
//! import of a file from another calendar.
//!
//! Export: CRLF line ends, lines folded at 75 octets (never inside a UTF-8
//! character), TEXT values escaped, a stable `UID` and `DTSTAMP` (the last
//! change, so an unchanged calendar is byte-identical), `SEQUENCE`, and a
//! `VTIMEZONE` for every zone an event names, built from the tz database's
//! transitions over the years the events cover.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

use crate::event::{Event, EventFields, Kind, When};

/// Files larger than this are refused.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Events per import.
pub const MAX_EVENTS: usize = 2_000;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(c) => out.push(c),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Appends one content line, folded at 75 octets.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

fn utc_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

fn date_value(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// `;TZID=X:local` or `:utcZ`.
fn time_value(t: DateTime<Utc>, tz: Tz) -> String {
    if tz == chrono_tz::UTC {
        format!(":{}", utc_stamp(t))
    } else {
        format!(
            ";TZID={}:{}",
            tz.name(),
            t.with_timezone(&tz).format("%Y%m%dT%H%M%S")
        )
    }
}

fn offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.abs();
    if s % 60 == 0 {
        format!("{sign}{:02}{:02}", s / 3600, (s / 60) % 60)
    } else {
        format!("{sign}{:02}{:02}{:02}", s / 3600, (s / 60) % 60, s % 60)
    }
}

/// The instants in `[from, to)` at which `tz`'s offset changes.
fn transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let off = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    let mut out = Vec::new();
    let mut t = from;
    let step = Duration::days(1);
    while t < to {
        let next = t + step;
        if off(t) != off(next) {
            // Narrow to the second: offsets change on whole seconds.
            let (mut lo, mut hi) = (t.timestamp(), next.timestamp());
            let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or_default();
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if off(at(mid)) == off(at(lo)) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let hi = at(hi);
            out.push(hi);
        }
        t = next;
    }
    out
}

fn vtimezone(out: &mut String, tz: Tz, years: (i32, i32)) {
    line(out, "BEGIN:VTIMEZONE");
    line(out, &format!("TZID:{}", tz.name()));
    let from = Utc
        .with_ymd_and_hms(years.0, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let to = Utc
        .with_ymd_and_hms(years.1 + 1, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let at = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc());
    let component = |out: &mut String, onset: DateTime<Utc>, before: i32| {
        let o = at(onset);
        let kind = if o.dst_offset().is_zero() {
            "STANDARD"
        } else {
            "DAYLIGHT"
        };
        let to_secs = o.fix().local_minus_utc();
        line(out, &format!("BEGIN:{kind}"));
        // The onset in the local time in force before it.
        let local = onset.naive_utc() + Duration::seconds(i64::from(before));
        line(out, &format!("DTSTART:{}", local.format("%Y%m%dT%H%M%S")));
        line(out, &format!("TZOFFSETFROM:{}", offset(before)));
        line(out, &format!("TZOFFSETTO:{}", offset(to_secs)));
        if let Some(name) = o.abbreviation() {
            line(out, &format!("TZNAME:{}", escape(name)));
        }
        line(out, &format!("END:{kind}"));
    };
    let changes = transitions(tz, from, to);
    // The observance in force at the start of the range, then each change.
    let first = at(from).fix().local_minus_utc();
    component(out, from, first);
    let mut before = first;
    for t in changes {
        component(out, t, before);
        before = at(t).fix().local_minus_utc();
    }
    line(out, "END:VTIMEZONE");
}

/// The calendar as one iCalendar object.
pub fn export(events: &[Event], name: &str, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//FocusForge//Calendar 1.0//EN");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "METHOD:PUBLISH");
    line(&mut out, &format!("X-WR-CALNAME:{}", escape(name)));
    let zones: BTreeSet<&str> = events
        .iter()
        .map(|e| e.fields.tz.as_str())
        .filter(|z| *z != "UTC")
        .collect();
    let years = events
        .iter()
        .map(|e| e.fields.first().0.year())
        .fold((now.year(), now.year()), |(lo, hi), y| {
            (lo.min(y), hi.max(y))
        });
    // Transitions from a year before the first event (at most five years
    // back) to five years ahead: bounded work whatever the events' dates.
    let span = (
        years.0.clamp(now.year() - 5, now.year()) - 1,
        years.1.clamp(now.year(), now.year() + 5) + 5,
    );
    for zone in zones {
        if let Ok(tz) = zone.parse::<Tz>() {
            vtimezone(&mut out, tz, span);
        }
    }
    for e in events {
        vevent(&mut out, e);
    }
    line(&mut out, "END:VCALENDAR");
    out
}

fn vevent(out: &mut String, e: &Event) {
    let f = &e.fields;
    let tz = f.tz();
    line(out, "BEGIN:VEVENT");
    line(out, &format!("UID:{}", e.uid));
    line(out, &format!("DTSTAMP:{}", utc_stamp(e.updated_at)));
    line(out, &format!("CREATED:{}", utc_stamp(e.created_at)));
    line(out, &format!("LAST-MODIFIED:{}", utc_stamp(e.updated_at)));
    line(out, &format!("SEQUENCE:{}", e.sequence));
    match f.when {
        When::Timed { start, end } => {
            line(out, &format!("DTSTART{}", time_value(start, tz)));
            line(out, &format!("DTEND{}", time_value(end, tz)));
        }
        When::AllDay { start, end } => {
            line(out, &format!("DTSTART;VALUE=DATE:{}", date_value(start)));
            line(out, &format!("DTEND;VALUE=DATE:{}", date_value(end)));
        }
    }
    line(out, &format!("SUMMARY:{}", escape(&f.title)));
    if !f.description.is_empty() {
        line(out, &format!("DESCRIPTION:{}", escape(&f.description)));
    }
    if !f.location.is_empty() {
        line(out, &format!("LOCATION:{}", escape(&f.location)));
    }
    if !f.rrule.is_empty() {
        line(out, &format!("RRULE:{}", f.rrule));
        for ex in &f.exdates {
            match f.when {
                When::Timed { .. } => line(out, &format!("EXDATE{}", time_value(*ex, tz))),
                When::AllDay { .. } => line(
                    out,
                    &format!(
                        "EXDATE;VALUE=DATE:{}",
                        date_value(ex.with_timezone(&tz).date_naive())
                    ),
                ),
            }
        }
    }
    line(
        out,
        if f.busy {
            "TRANSP:OPAQUE"
        } else {
            "TRANSP:TRANSPARENT"
        },
    );
    if e.kind == Kind::FocusBlock {
        line(out, "CATEGORIES:Focus block");
        line(out, &format!("X-FOCUSFORGE-TASK:{}", escape(&e.task_id)));
        line(out, &format!("X-FOCUSFORGE-BLOCK:{}", escape(&e.block_id)));
    }
    line(out, "END:VEVENT");
}

/// What an import found wrong: the (unfolded) line it starts on and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// An event read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub uid: String,
    pub sequence: i32,
    pub fields: EventFields,
    /// The line its VEVENT starts on.
    pub line: usize,
    /// A changed occurrence of a series: the start it replaces.
    pub recurrence_id: Option<DateTime<Utc>>,
}

struct Prop<'a> {
    name: String,
    params: Vec<(String, &'a str)>,
    value: &'a str,
    line: usize,
}

impl Prop<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim_matches('"'))
    }
}

fn err(line: usize, reason: impl Into<String>) -> ParseError {
    ParseError {
        line,
        reason: reason.into(),
    }
}

/// Unfolds lines: `(first physical line number, logical line)`.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t'])
            && let Some(last) = out.last_mut()
        {
            last.1.push_str(rest);
            continue;
        }
        if raw.is_empty() {
            continue;
        }
        out.push((n + 1, raw.to_owned()));
    }
    out
}

fn parse_prop(line: usize, text: &str) -> Result<Prop<'_>, ParseError> {
    // The value starts at the first ':' outside a quoted parameter value.
    let mut quoted = false;
    let mut colon = None;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ':' if !quoted => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let colon = colon.ok_or_else(|| err(line, "a content line needs NAME:VALUE"))?;
    let (head, value) = (&text[..colon], &text[colon + 1..]);
    let mut parts = split_unquoted(head).into_iter();
    let name = parts.next().unwrap_or_default().to_ascii_uppercase();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(err(line, format!("{name:?} is not a property name")));
    }
    let mut params = Vec::new();
    for p in parts {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| err(line, format!("parameter {p:?} needs NAME=VALUE")))?;
        params.push((k.to_ascii_uppercase(), v));
    }
    Ok(Prop {
        name,
        params,
        value,
        line,
    })
}

/// Splits on `;` outside double quotes.
fn split_unquoted(head: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in head.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&head[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&head[start..]);
    out
}

/// A DATE or DATE-TIME property.
enum Stamp {
    Date(NaiveDate),
    Time(DateTime<Utc>, Option<Tz>),
}

fn parse_stamp(p: &Prop<'_>, value: &str, default_tz: Tz) -> Result<Stamp, ParseError> {
    let value = value.trim();
    if p.param("VALUE") == Some("DATE") || (value.len() == 8 && !value.contains('T')) {
        return NaiveDate::parse_from_str(value, "%Y%m%d")
            .map(Stamp::Date)
            .map_err(|_| {
                err(
                    p.line,
                    format!("{}: {value:?} is not a DATE (YYYYMMDD)", p.name),
                )
            });
    }
    if let Some(utc) = value.strip_suffix('Z') {
        let t = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").map_err(|_| {
            err(
                p.line,
                format!(
                    "{}: {value:?} is not a DATE-TIME (YYYYMMDDTHHMMSSZ)",
                    p.name
                ),
            )
        })?;
        return Ok(Stamp::Time(Utc.from_utc_datetime(&t), Some(chrono_tz::UTC)));
    }
    let tz = match p.param("TZID") {
        Some(id) => Some(id.parse::<Tz>().map_err(|_| {
            err(
                p.line,
                format!(
                    "{}: unknown time zone {id:?} (IANA names such as Europe/Berlin)",
                    p.name
                ),
            )
        })?),
        None => None,
    };
    let local = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").map_err(|_| {
        err(
            p.line,
            format!("{}: {value:?} is not a DATE-TIME (YYYYMMDDTHHMMSS)", p.name),
        )
    })?;
    let zone = tz.unwrap_or(default_tz);
    let t = zone
        .from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(local + Duration::hours(1)))
                .earliest()
        })
        .ok_or_else(|| {
            err(
                p.line,
                format!("{}: {value:?} does not exist in {}", p.name, zone.name()),
            )
        })?;
    Ok(Stamp::Time(t.with_timezone(&Utc), tz))
}

/// An RFC 5545 DURATION such as `PT1H30M` or `P1D`, at most a year.
fn parse_duration(line: usize, v: &str) -> Result<Duration, ParseError> {
    let bad = || {
        err(
            line,
            format!("DURATION: {v:?} is not a duration such as PT1H30M"),
        )
    };
    let (neg, rest) = match v.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let rest = rest.strip_prefix('P').ok_or_else(bad)?;
    let mut seconds: i64 = 0;
    let mut num = String::new();
    let mut time = false;
    for c in rest.chars() {
        match c {
            'T' => time = true,
            '0'..='9' if num.len() < 9 => num.push(c),
            '0'..='9' => return Err(bad()),
            _ => {
                let n: i64 = num.parse().map_err(|_| bad())?;
                num.clear();
                let unit = match (c, time) {
                    ('W', false) => 7 * 86_400,
                    ('D', false) => 86_400,
                    ('H', true) => 3_600,
                    ('M', true) => 60,
                    ('S', true) => 1,
                    _ => return Err(bad()),
                };
                seconds = seconds.saturating_add(n.saturating_mul(unit));
            }
        }
    }
    if !num.is_empty() || seconds > 366 * 86_400 {
        return Err(bad());
    }
    Ok(Duration::seconds(if neg { -seconds } else { seconds }))
}

#[derive(Default)]
struct Draft {
    line: usize,
    uid: Option<String>,
    sequence: i32,
    summary: String,
    description: String,
    location: String,
    start: Option<(Stamp, usize)>,
    end: Option<Stamp>,
    duration: Option<Duration>,
    rrule: String,
    exdates: Vec<DateTime<Utc>>,
    busy: bool,
    recurrence_id: Option<DateTime<Utc>>,
}

/// Reads the VEVENTs of an iCalendar object; floating times are in
/// `default_tz`. Any malformed line fails the whole file.
pub fn import(text: &str, default_tz: Tz) -> Result<Vec<Imported>, ParseError> {
    if text.len() > MAX_BYTES {
        return Err(err(0, "the file is over 1 MiB"));
    }
    let lines = unfold(text.strip_prefix('\u{feff}').unwrap_or(text));
    let first = lines.first().map(|l| l.1.trim().to_ascii_uppercase());
    if first.as_deref() != Some("BEGIN:VCALENDAR") {
        return Err(err(
            lines.first().map_or(1, |l| l.0),
            "an iCalendar object starts with BEGIN:VCALENDAR",
        ));
    }
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut draft: Option<Draft> = None;
    let mut ended = false;
    for (n, text) in &lines {
        let n = *n;
        if ended {
            return Err(err(n, "content after END:VCALENDAR"));
        }
        let p = parse_prop(n, text)?;
        match p.name.as_str() {
            "BEGIN" => {
                let what = p.value.trim().to_ascii_uppercase();
                if what == "VEVENT" {
                    if draft.is_some() {
                        return Err(err(n, "a VEVENT cannot contain another VEVENT"));
                    }
                    draft = Some(Draft {
                        line: n,
                        busy: true,
                        ..Draft::default()
                    });
                }
                stack.push(what);
                continue;
            }
            "END" => {
                let what = p.value.trim().to_ascii_uppercase();
                match stack.pop() {
                    Some(open) if open == what => {}
                    Some(open) => {
                        return Err(err(n, format!("END:{what} closes BEGIN:{open}")));
                    }
                    None => return Err(err(n, format!("END:{what} without BEGIN"))),
                }
                if what == "VEVENT" {
                    if let Some(d) = draft.take() {
                        if out.len() >= MAX_EVENTS {
                            return Err(err(n, "more than 2,000 events"));
                        }
                        out.push(finish(d, n, default_tz)?);
                    }
                } else if what == "VCALENDAR" && stack.is_empty() {
                    ended = true;
                }
                continue;
            }
            _ => {}
        }
        // Only a VEVENT's own properties matter (not its VALARMs').
        let Some(d) = draft
            .as_mut()
            .filter(|_| stack.last().map(String::as_str) == Some("VEVENT"))
        else {
            continue;
        };
        match p.name.as_str() {
            "UID" => d.uid = Some(p.value.trim().to_owned()),
            "SEQUENCE" => {
                d.sequence = p
                    .value
                    .trim()
                    .parse()
                    .map_err(|_| err(n, "SEQUENCE must be a whole number"))?;
            }
            "SUMMARY" => d.summary = unescape(p.value),
            "DESCRIPTION" => d.description = unescape(p.value),
            "LOCATION" => d.location = unescape(p.value),
            "DTSTART" => d.start = Some((parse_stamp(&p, p.value, default_tz)?, n)),
            "DTEND" => d.end = Some(parse_stamp(&p, p.value, default_tz)?),
            "DURATION" => d.duration = Some(parse_duration(n, p.value.trim())?),
            "RRULE" => {
                if !d.rrule.is_empty() {
                    return Err(err(n, "more than one RRULE in an event"));
                }
                d.rrule = p.value.trim().to_owned();
            }
            "EXDATE" => {
                for v in p.value.split(',') {
                    match parse_stamp(&p, v, default_tz)? {
                        Stamp::Time(t, _) => d.exdates.push(t),
                        Stamp::Date(day) => d.exdates.push(crate::event::midnight(default_tz, day)),
                    }
                }
            }
            "TRANSP" => d.busy = !p.value.trim().eq_ignore_ascii_case("TRANSPARENT"),
            "RECURRENCE-ID" => {
                d.recurrence_id = Some(match parse_stamp(&p, p.value, default_tz)? {
                    Stamp::Time(t, _) => t,
                    Stamp::Date(day) => crate::event::midnight(default_tz, day),
                });
            }
            _ => {}
        }
    }
    if !stack.is_empty() || !ended {
        return Err(err(
            lines.last().map_or(1, |l| l.0),
            "the file ends before END:VCALENDAR",
        ));
    }
    // A changed occurrence (RECURRENCE-ID) becomes an event of its own and
    // leaves its series, which is what a calendar shows.
    let overrides: Vec<(String, DateTime<Utc>)> = out
        .iter()
        .filter_map(|i| i.recurrence_id.map(|r| (i.uid.clone(), r)))
        .collect();
    for (uid, rid) in overrides {
        if let Some(master) = out
            .iter_mut()
            .find(|i| i.uid == uid && i.recurrence_id.is_none())
        {
            master.fields.exdates.push(rid);
        }
    }
    for i in out.iter_mut() {
        if let Some(rid) = i.recurrence_id {
            i.uid = format!("{}-{}", i.uid, utc_stamp(rid));
        }
    }
    Ok(out)
}

fn finish(d: Draft, end_line: usize, default_tz: Tz) -> Result<Imported, ParseError> {
    let uid = d
        .uid
        .filter(|u| !u.is_empty())
        .ok_or_else(|| err(d.line, "a VEVENT needs a UID"))?;
    if uid.len() > 255 {
        return Err(err(d.line, "UID is longer than 255 characters"));
    }
    let (start, start_line) = d
        .start
        .ok_or_else(|| err(d.line, "a VEVENT needs a DTSTART"))?;
    let (when, tz) = match start {
        Stamp::Date(day) => {
            let end = match d.end {
                Some(Stamp::Date(e)) => e,
                Some(Stamp::Time(..)) => {
                    return Err(err(end_line, "DTEND must be a DATE when DTSTART is"));
                }
                None => day
                    .checked_add_signed(Duration::days(
                        d.duration.map_or(1, |x| x.num_days().max(1)),
                    ))
                    .ok_or_else(|| err(d.line, "the event ends after the year 262143"))?,
            };
            (When::AllDay { start: day, end }, default_tz)
        }
        Stamp::Time(s, tz) => {
            let e = match d.end {
                Some(Stamp::Time(e, _)) => e,
                Some(Stamp::Date(_)) => {
                    return Err(err(end_line, "DTEND must be a DATE-TIME when DTSTART is"));
                }
                None => s
                    .checked_add_signed(d.duration.unwrap_or_else(Duration::zero))
                    .ok_or_else(|| err(d.line, "DURATION takes the event out of range"))?,
            };
            // An event without a length is an instant; give it a minute
            // so it has one.
            let e = if e == s { s + Duration::minutes(1) } else { e };
            (When::Timed { start: s, end: e }, tz.unwrap_or(default_tz))
        }
    };
    let fields = EventFields {
        title: if d.summary.trim().is_empty() {
            "(no title)".into()
        } else {
            d.summary
                .chars()
                .take(crate::event::limits::TITLE)
                .collect()
        },
        description: d
            .description
            .chars()
            .take(crate::event::limits::DESCRIPTION)
            .collect(),
        location: d
            .location
            .chars()
            .take(crate::event::limits::LOCATION)
            .collect(),
        when,
        tz: tz.name().to_owned(),
        rrule: d.rrule,
        exdates: d.exdates,
        busy: d.busy,
    };
    let mut v = focusforge_core::Violations::new();
    fields.check(&mut v, "event");
    if let Err(e) = v.finish() {
        return Err(err(start_line, format!("this event is not valid: {e}")));
    }
    Ok(Imported {
        uid,
        sequence: d.sequence,
        fields,
        line: d.line,
        recurrence_id: d.recurrence_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fold_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let long = format!("SUMMARY:{}", "ä".repeat(60));
        line(&mut out, &long);
        for l in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(l.len() <= 75, "{} octets", l.len());
        }
        let unfolded: String = out
            .trim_end_matches("\r\n")
            .split("\r\n")
            .enumerate()
            .map(|(i, l)| if i == 0 { l } else { &l[1..] })
            .collect();
        assert_eq!(unfolded, long);
        assert_eq!(escape("a;b,c\\d\ne"), "a\\;b\\,c\\\\d\\ne");
        assert_eq!(unescape(&escape("a;b,c\\d\ne")), "a;b,c\\d\ne");
    }

    #[test]
    fn malformed_files_say_which_line_and_why() {
        let cases = [
            ("hello", 1, "BEGIN:VCALENDAR"),
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nDTSTART:2026x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                4,
                "DATE-TIME",
            ),
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nDTSTART;TZID=Nowhere/Land:20261201T090000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                4,
                "unknown time zone",
            ),
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nDTSTART:20261201T090000Z\r\nRRULE:FREQ=NEVER\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                4,
                "rrule",
            ),
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nDTSTART:20261201T090000Z\r\nEND:VCALENDAR\r\n",
                5,
                "closes BEGIN:VEVENT",
            ),
            ("BEGIN:VCALENDAR\r\nno colon here\r\n", 2, "NAME:VALUE"),
        ];
        for (text, line, reason) in cases {
            let e = import(text, chrono_tz::UTC).err();
            let e = e.unwrap_or_else(|| ParseError {
                line: 0,
                reason: "accepted".into(),
            });
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.reason.contains(reason), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_changed_occurrence_leaves_its_series_and_huge_durations_are_refused() {
        let text = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:s\r\nDTSTART:20261201T090000Z\r\nDTEND:20261201T100000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:s\r\nRECURRENCE-ID:20261202T090000Z\r\nDTSTART:20261202T140000Z\r\nDTEND:20261202T150000Z\r\nSUMMARY:moved\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let items = import(text, chrono_tz::Europe::Berlin).unwrap_or_default();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].fields.tz, "UTC", "a UTC start recurs in UTC");
        assert_eq!(
            items[0].fields.exdates,
            vec![
                Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0)
                    .single()
                    .unwrap_or_default()
            ]
        );
        assert_ne!(items[0].uid, items[1].uid);
        for huge in ["PT99999999999999999S", "P99999999999W", "P400D"] {
            let t = format!(
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20261201T090000Z\r\nDURATION:{huge}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            );
            assert!(import(&t, chrono_tz::UTC).is_err(), "{huge}");
        }
        let quoted = "\u{feff}BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:q\r\nORGANIZER;CN=\"Doe; John\":mailto:j@example.com\r\nDTSTART:20261201T090000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(import(quoted, chrono_tz::UTC).map(|i| i.len()), Ok(1));
    }

    #[test]
    fn berlin_has_its_two_offsets() {
        let from = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let to = Utc
            .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let t = transitions(chrono_tz::Europe::Berlin, from, to);
        assert_eq!(
            t,
            vec![
                Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0)
                    .single()
                    .unwrap_or_default(),
                Utc.with_ymd_and_hms(2026, 10, 25, 1, 0, 0)
                    .single()
                    .unwrap_or_default(),
            ]
        );
        assert_eq!(offset(3600), "+0100");
        assert_eq!(offset(-16200), "-0430");
    }
}
