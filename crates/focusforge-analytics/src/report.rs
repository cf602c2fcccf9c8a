//! The figures of a report, computed from a user's facts alone: no I/O, no
//! wire types. Days, weeks, months and hours are the user's local ones.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// What a report needs of a task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskFact {
    /// Epoch milliseconds, like every time here.
    pub created: i64,
    pub started: Option<i64>,
    pub completed: Option<i64>,
    pub estimated_minutes: i32,
    /// Minutes of completed focus sessions recorded on the task.
    pub focus_minutes: i32,
}

/// How a focus session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Completed,
    Abandoned,
    /// Still running or paused.
    Open,
}

/// What a report needs of a focus session (breaks are not kept).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionFact {
    pub started: i64,
    pub ended: Ended,
    pub focused_minutes: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoodFact {
    pub at: i64,
    pub score: u8,
}

/// A ledger entry: positive for awards, negative for spends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointFact {
    pub at: i64,
    pub points: i64,
}

/// A user's records, by id.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub tasks: HashMap<String, TaskFact>,
    pub sessions: HashMap<String, SessionFact>,
    pub moods: HashMap<String, MoodFact>,
    pub points: HashMap<i64, PointFact>,
}

impl Facts {
    pub fn len(&self) -> usize {
        self.tasks.len() + self.sessions.len() + self.moods.len() + self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rate {
    pub value: f64,
    pub n: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Distribution {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Figures {
    pub tasks_created: u32,
    pub tasks_completed: u32,
    pub completion_rate: Rate,
    pub focus_sessions_completed: u32,
    pub focus_minutes_completed: f64,
    pub focus_sessions_abandoned: u32,
    pub focus_minutes_abandoned: f64,
    pub estimate_accuracy: Distribution,
    pub points_earned: i64,
    pub points_earned_entries: u32,
    pub points_spent: i64,
    pub points_spent_entries: u32,
    pub mood_average: f64,
    pub mood_entries: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub label: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub figures: Figures,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Hour {
    pub hour: u32,
    pub completed: u32,
    pub abandoned: u32,
    pub minutes_completed: f64,
    pub completion_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Streaks {
    pub current_days: i32,
    pub longest_days: i32,
    pub last_active_day: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Correlation {
    pub r: f64,
    pub days: u32,
    pub reported: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MoodBand {
    pub band: &'static str,
    pub days: u32,
    pub average_focus_minutes: f64,
    pub average_tasks_completed: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MoodProductivity {
    pub days_with_mood: u32,
    pub days_with_mood_and_work: u32,
    pub with_focus_minutes: Correlation,
    pub with_tasks_completed: Correlation,
    pub bands: Vec<MoodBand>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Insight {
    pub kind: &'static str,
    pub text: String,
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub time_zone: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub bucket: Bucket,
    pub total: Figures,
    pub periods: Vec<Period>,
    pub hours: Vec<Hour>,
    pub best_hours: Vec<u32>,
    pub streaks: Option<Streaks>,
    pub mood_productivity: MoodProductivity,
    pub insights: Vec<Insight>,
}

/// Days with both a mood entry and work a correlation needs.
pub const MIN_CORRELATION_DAYS: u32 = 10;
/// Completed sessions an hour needs to be among the best.
pub const MIN_BEST_HOUR_SESSIONS: u32 = 3;
/// Work from start to completion longer than this is not an actual duration.
const MAX_ELAPSED_MINUTES: i64 = 12 * 60;

/// A task's actual minutes: the focus minutes recorded on it, else the time
/// from start to completion when that is 1 minute to 12 hours.
pub fn actual_minutes(t: &TaskFact) -> Option<f64> {
    if t.focus_minutes > 0 {
        return Some(f64::from(t.focus_minutes));
    }
    let minutes = (t.completed? - t.started?) / 60_000;
    (1..=MAX_ELAPSED_MINUTES)
        .contains(&minutes)
        .then_some(minutes as f64)
}

/// Quartiles by linear interpolation between the closest ranks (the
/// default of numpy's `percentile`).
pub fn distribution(mut values: Vec<f64>) -> Distribution {
    if values.is_empty() {
        return Distribution::default();
    }
    values.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (values.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
    };
    Distribution {
        median: q(0.5),
        p25: q(0.25),
        p75: q(0.75),
        n: values.len() as u32,
    }
}

/// Pearson's r, or `None` when either side does not vary.
pub fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if pairs.len() < 2 {
        return None;
    }
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

fn local(tz: Tz, ms: i64) -> chrono::DateTime<Tz> {
    tz.from_utc_datetime(
        &DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .naive_utc(),
    )
}

/// The instant a local day starts (the first hour that exists on it).
pub fn day_start(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    (0..24)
        .find_map(|h| {
            tz.from_local_datetime(&day.and_hms_opt(h, 0, 0)?)
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

fn bucket_of(bucket: Bucket, day: NaiveDate) -> NaiveDate {
    match bucket {
        Bucket::Day => day,
        Bucket::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        Bucket::Month => day.with_day(1).unwrap_or(day),
    }
}

fn next_bucket(bucket: Bucket, key: NaiveDate) -> NaiveDate {
    match bucket {
        Bucket::Day => key + Duration::days(1),
        Bucket::Week => key + Duration::days(7),
        Bucket::Month => key
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(key + Duration::days(31)),
    }
}

fn label(bucket: Bucket, key: NaiveDate) -> String {
    match bucket {
        Bucket::Day => key.format("%Y-%m-%d").to_string(),
        Bucket::Week => {
            let w = key.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }
        Bucket::Month => key.format("%Y-%m").to_string(),
    }
}

/// Sums over one period, turned into [`Figures`] at the end.
#[derive(Default)]
struct Acc {
    created: u32,
    created_done: u32,
    completed: u32,
    ratios: Vec<f64>,
    sessions_done: u32,
    minutes_done: f64,
    sessions_abandoned: u32,
    minutes_abandoned: f64,
    earned: i64,
    earned_n: u32,
    spent: i64,
    spent_n: u32,
    mood_sum: f64,
    mood_n: u32,
}

impl Acc {
    fn figures(self) -> Figures {
        Figures {
            tasks_created: self.created,
            tasks_completed: self.completed,
            completion_rate: Rate {
                value: if self.created == 0 {
                    0.0
                } else {
                    f64::from(self.created_done) / f64::from(self.created)
                },
                n: self.created,
            },
            focus_sessions_completed: self.sessions_done,
            focus_minutes_completed: self.minutes_done,
            focus_sessions_abandoned: self.sessions_abandoned,
            focus_minutes_abandoned: self.minutes_abandoned,
            estimate_accuracy: distribution(self.ratios),
            points_earned: self.earned,
            points_earned_entries: self.earned_n,
            points_spent: self.spent,
            points_spent_entries: self.spent_n,
            mood_average: if self.mood_n == 0 {
                0.0
            } else {
                self.mood_sum / f64::from(self.mood_n)
            },
            mood_entries: self.mood_n,
        }
    }
}

/// What one local day holds, for mood against productivity.
#[derive(Default)]
struct Day {
    mood_sum: f64,
    mood_n: u32,
    tasks: u32,
    minutes: f64,
}

/// Computes the report over `[from, to)`.
pub fn report(
    facts: &Facts,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
    streaks: Option<Streaks>,
) -> Report {
    let (lo, hi) = (from.timestamp_millis(), to.timestamp_millis());
    let inside = |ms: i64| (lo..hi).contains(&ms);
    let day = |ms: i64| local(tz, ms).date_naive();
    let key = |ms: i64| bucket_of(bucket, day(ms));

    let mut total = Acc::default();
    let mut periods: BTreeMap<NaiveDate, Acc> = BTreeMap::new();
    let mut days: BTreeMap<NaiveDate, Day> = BTreeMap::new();
    let mut hours = [Hour::default(); 24];
    for (h, hour) in hours.iter_mut().enumerate() {
        hour.hour = h as u32;
    }
    // Every record lands in the whole range's sums and its period's.
    let mut both = |ms: i64, f: &mut dyn FnMut(&mut Acc)| {
        f(&mut total);
        f(periods.entry(key(ms)).or_default());
    };

    for t in facts.tasks.values() {
        if inside(t.created) {
            let done = t.completed.is_some();
            both(t.created, &mut |a| {
                a.created += 1;
                a.created_done += u32::from(done);
            });
        }
        let Some(done) = t.completed.filter(|c| inside(*c)) else {
            continue;
        };
        let ratio = (t.estimated_minutes > 0)
            .then(|| actual_minutes(t).map(|m| m / f64::from(t.estimated_minutes)))
            .flatten();
        both(done, &mut |a| {
            a.completed += 1;
            a.ratios.extend(ratio);
        });
        days.entry(day(done)).or_default().tasks += 1;
    }
    for s in facts.sessions.values() {
        if !inside(s.started) || s.ended == Ended::Open {
            continue;
        }
        let hour = &mut hours[local(tz, s.started).hour() as usize];
        let minutes = s.focused_minutes;
        if s.ended == Ended::Completed {
            both(s.started, &mut |a| {
                a.sessions_done += 1;
                a.minutes_done += minutes;
            });
            hour.completed += 1;
            hour.minutes_completed += minutes;
            days.entry(day(s.started)).or_default().minutes += minutes;
        } else {
            both(s.started, &mut |a| {
                a.sessions_abandoned += 1;
                a.minutes_abandoned += minutes;
            });
            hour.abandoned += 1;
        }
    }
    for m in facts.moods.values().filter(|m| inside(m.at)) {
        let score = f64::from(m.score);
        both(m.at, &mut |a| {
            a.mood_sum += score;
            a.mood_n += 1;
        });
        let d = days.entry(day(m.at)).or_default();
        d.mood_sum += score;
        d.mood_n += 1;
    }
    for p in facts.points.values().filter(|p| inside(p.at)) {
        let points = p.points;
        both(p.at, &mut |a| {
            if points > 0 {
                a.earned += points;
                a.earned_n += 1;
            } else if points < 0 {
                a.spent -= points;
                a.spent_n += 1;
            }
        });
    }

    for h in &mut hours {
        let ended = h.completed + h.abandoned;
        if ended > 0 {
            h.completion_rate = f64::from(h.completed) / f64::from(ended);
        }
    }
    let mut best: Vec<&Hour> = hours
        .iter()
        .filter(|h| h.completed >= MIN_BEST_HOUR_SESSIONS)
        .collect();
    best.sort_by(|a, b| {
        b.minutes_completed
            .total_cmp(&a.minutes_completed)
            .then(a.hour.cmp(&b.hour))
    });
    let best_hours: Vec<u32> = best.iter().take(3).map(|h| h.hour).collect();

    let mut out_periods = Vec::new();
    if from < to {
        let mut k = key(lo);
        let last = key(hi - 1);
        while k <= last {
            let next = next_bucket(bucket, k);
            let figures = periods.remove(&k).unwrap_or_default().figures();
            out_periods.push(Period {
                label: label(bucket, k),
                start: day_start(tz, k).max(from),
                end: day_start(tz, next).min(to),
                figures,
            });
            k = next;
        }
    }

    let mood_productivity = mood_productivity(&days);
    let total = total.figures();
    let insights = insights(
        &total,
        &hours,
        &best_hours,
        &mood_productivity,
        streaks.as_ref(),
    );
    Report {
        time_zone: tz.name().to_owned(),
        start: from,
        end: to,
        bucket,
        total,
        periods: out_periods,
        hours: hours.to_vec(),
        best_hours,
        streaks,
        mood_productivity,
        insights,
    }
}

fn mood_productivity(days: &BTreeMap<NaiveDate, Day>) -> MoodProductivity {
    let with_mood: Vec<&Day> = days.values().filter(|d| d.mood_n > 0).collect();
    let both: Vec<(f64, &Day)> = with_mood
        .iter()
        .filter(|d| d.tasks > 0 || d.minutes > 0.0)
        .map(|d| (d.mood_sum / f64::from(d.mood_n), *d))
        .collect();
    let n = both.len() as u32;
    let correlation = |pairs: Vec<(f64, f64)>| {
        let r = (n >= MIN_CORRELATION_DAYS)
            .then(|| pearson(&pairs))
            .flatten();
        Correlation {
            r: r.unwrap_or(0.0),
            days: n,
            reported: r.is_some(),
        }
    };
    let band_of = |m: f64| {
        if m < 2.5 {
            "low"
        } else if m <= 3.5 {
            "middle"
        } else {
            "high"
        }
    };
    let bands = ["low", "middle", "high"]
        .into_iter()
        .map(|band| {
            let inside: Vec<&Day> = both
                .iter()
                .filter(|(m, _)| band_of(*m) == band)
                .map(|(_, d)| *d)
                .collect();
            let k = inside.len().max(1) as f64;
            MoodBand {
                band,
                days: inside.len() as u32,
                average_focus_minutes: inside.iter().map(|d| d.minutes).sum::<f64>() / k,
                average_tasks_completed: inside.iter().map(|d| f64::from(d.tasks)).sum::<f64>() / k,
            }
        })
        .collect();
    MoodProductivity {
        days_with_mood: with_mood.len() as u32,
        days_with_mood_and_work: n,
        with_focus_minutes: correlation(both.iter().map(|(m, d)| (*m, d.minutes)).collect()),
        with_tasks_completed: correlation(
            both.iter().map(|(m, d)| (*m, f64::from(d.tasks))).collect(),
        ),
        bands,
    }
}

fn clock_hours(hours: &[u32]) -> String {
    let names: Vec<String> = hours.iter().map(|h| format!("{h:02}:00")).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn insights(
    total: &Figures,
    hours: &[Hour],
    best: &[u32],
    mood: &MoodProductivity,
    streaks: Option<&Streaks>,
) -> Vec<Insight> {
    let mut out = Vec::new();
    if !best.is_empty() && total.focus_minutes_completed > 0.0 {
        let in_best: f64 = best
            .iter()
            .map(|h| hours[*h as usize].minutes_completed)
            .sum();
        let sessions: u32 = best.iter().map(|h| hours[*h as usize].completed).sum();
        out.push(Insight {
            kind: "best_hours",
            text: format!(
                "You get the most focus done in the hours starting {}: {:.0}% of your completed focus minutes ({} sessions). Keep them for your hardest work.",
                clock_hours(best),
                100.0 * in_best / total.focus_minutes_completed,
                sessions
            ),
            n: total.focus_sessions_completed,
        });
    }
    let e = total.estimate_accuracy;
    if e.n >= 5 {
        let text = if e.median > 1.15 {
            format!(
                "Tasks take {:.1}x your estimate (median of {} tasks): plan about {:.0}% more time.",
                e.median,
                e.n,
                (e.median - 1.0) * 100.0
            )
        } else if e.median < 0.85 {
            format!(
                "Tasks take {:.1}x your estimate (median of {} tasks): you can plan less time for them.",
                e.median, e.n
            )
        } else {
            format!(
                "Your estimates are on target: tasks take {:.2}x the estimate (median of {} tasks).",
                e.median, e.n
            )
        };
        out.push(Insight {
            kind: "estimates",
            text,
            n: e.n,
        });
    }
    let c = total.completion_rate;
    if c.n >= 5 {
        out.push(Insight {
            kind: "completion",
            text: format!(
                "You completed {:.0}% of the {} tasks you created in this range.",
                c.value * 100.0,
                c.n
            ),
            n: c.n,
        });
    }
    let ended = total.focus_sessions_completed + total.focus_sessions_abandoned;
    if ended >= 5 && f64::from(total.focus_sessions_abandoned) >= 0.2 * f64::from(ended) {
        let worst = hours
            .iter()
            .max_by(|a, b| a.abandoned.cmp(&b.abandoned).then(b.hour.cmp(&a.hour)))
            .map(|h| h.hour)
            .unwrap_or_default();
        out.push(Insight {
            kind: "abandoned",
            text: format!(
                "{:.0}% of your focus sessions were abandoned, most often in the hour starting {worst:02}:00: try shorter sessions then.",
                100.0 * f64::from(total.focus_sessions_abandoned) / f64::from(ended)
            ),
            n: ended,
        });
    }
    let f = mood.with_focus_minutes;
    let text = if f.reported && f.r >= 0.3 {
        format!(
            "On days with a better mood you focus more (r = {:.2} over {} days).",
            f.r, f.days
        )
    } else if f.reported && f.r <= -0.3 {
        format!(
            "On days with a better mood you focus less (r = {:.2} over {} days).",
            f.r, f.days
        )
    } else if f.reported {
        format!(
            "Your mood and your focus time hardly move together (r = {:.2} over {} days).",
            f.r, f.days
        )
    } else {
        format!(
            "Log your mood on {} more days with work to see how mood and productivity relate.",
            MIN_CORRELATION_DAYS.saturating_sub(f.days).max(1)
        )
    };
    out.push(Insight {
        kind: "mood",
        text,
        n: f.days,
    });
    if let Some(s) = streaks.filter(|s| s.current_days > 0) {
        out.push(Insight {
            kind: "streak",
            text: format!(
                "You are on a {}-day streak (your longest is {}).",
                s.current_days, s.longest_days
            ),
            n: s.current_days as u32,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate_like_numpy() {
        let d = distribution(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!((d.p25, d.median, d.p75, d.n), (1.75, 2.5, 3.25, 4));
        assert_eq!(distribution(vec![]).n, 0);
    }

    #[test]
    fn pearson_needs_variation() {
        assert_eq!(pearson(&[(1.0, 2.0), (1.0, 3.0)]), None);
        let r = pearson(&[(1.0, 2.0), (2.0, 4.0), (3.0, 6.5)]).expect("r");
        assert!(r > 0.99);
    }

    #[test]
    fn weeks_are_iso_and_periods_clip_to_the_range() {
        let tz: Tz = "Europe/Berlin".parse().expect("tz");
        let from: DateTime<Utc> = "2026-03-04T10:00:00Z".parse().expect("t");
        let to: DateTime<Utc> = "2026-03-20T00:00:00Z".parse().expect("t");
        let r = report(&Facts::default(), tz, from, to, Bucket::Week, None);
        let labels: Vec<_> = r.periods.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["2026-W10", "2026-W11", "2026-W12"]);
        assert_eq!(r.periods[0].start, from);
        assert_eq!(
            r.periods[1].start,
            "2026-03-08T23:00:00Z".parse::<DateTime<Utc>>().expect("t")
        );
        assert_eq!(r.periods[2].end, to);
    }

    #[test]
    fn actual_minutes_prefer_focus_then_elapsed_within_bounds() {
        let t = TaskFact {
            created: 0,
            started: Some(0),
            completed: Some(90 * 60_000),
            estimated_minutes: 60,
            focus_minutes: 0,
        };
        assert_eq!(actual_minutes(&t), Some(90.0));
        assert_eq!(
            actual_minutes(&TaskFact {
                focus_minutes: 50,
                ..t
            }),
            Some(50.0)
        );
        assert_eq!(
            actual_minutes(&TaskFact {
                completed: Some(13 * 3_600_000),
                ..t
            }),
            None
        );
    }
}
