//! The auto-scheduler: a pure function from the user's working hours, busy
//! time, open tasks and the focus blocks placed before to a new placement of
//! every open block. Deterministic: the same input gives the same output.
//!
//! The rule, in order:
//! 1. Free time is the working hours (profile time zone and working days)
//!    from now (rounded up to 5 minutes) to the horizon's end, minus every
//!    busy event widened by the buffer on both sides.
//! 2. Every block placed before is **kept** where it is if it still fits:
//!    in the future (or under way), inside the horizon and the working hours, after the
//!    task's earliest start, before its deadline, after the task's previous
//!    block, clear of busy time (with the buffer) and of the blocks kept
//!    before it. Kept blocks are reserved first, so a reschedule moves only
//!    what no longer fits.
//! 3. Tasks are then taken in **deadline order** (earliest deadline first,
//!    which meets every deadline that can be met when blocks are
//!    independent; ties by priority, highest first; tasks without a deadline
//!    last, by priority; then by creation), and each block still to place
//!    goes into the **earliest free slot** on a 5-minute boundary after the
//!    task's earliest start and its previous block, ending by the deadline
//!    and before the task's next kept block. A block that fits in no single
//!    window is split into pieces of at least the task's minimum chunk when
//!    the task allows it. When a moved block cannot fit before the next kept
//!    block, the later blocks of the task are released and placed after it.
//! 4. A task whose block cannot be placed keeps its blocks placed so far and
//!    is reported with the reason: deadline passed, not enough free time
//!    before the deadline, a block longer than any window, time only in
//!    fragments, a full horizon, or a start after the horizon.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// Placement starts fall on multiples of this many minutes.
pub const GRID_MINUTES: i64 = 5;

/// The rule, in words, for answers.
pub const RULE: &str = "Blocks that still fit stay where they are; the rest go, task by task in deadline order (earliest deadline first, ties by priority, tasks without a deadline last), into the earliest free slot inside working hours, after the task's earliest start and its previous block, before its deadline, clear of busy time by the buffer.";

/// Working hours in the user's time zone.
#[derive(Debug, Clone)]
pub struct Hours {
    pub tz: Tz,
    /// `[start, end)` in minutes after local midnight.
    pub start_minute: u32,
    pub end_minute: u32,
    /// ISO weekday numbers (1 Monday - 7 Sunday).
    pub days: Vec<u8>,
}

/// Busy time from an event.
#[derive(Debug, Clone)]
pub struct Busy {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub title: String,
}

/// A block to place.
#[derive(Debug, Clone)]
pub struct BlockIn {
    pub id: String,
    pub minutes: i64,
}

/// An open task.
#[derive(Debug, Clone)]
pub struct TaskIn {
    pub id: String,
    pub title: String,
    /// 0 low - 3 urgent.
    pub priority: u8,
    pub due: Option<DateTime<Utc>>,
    pub earliest: Option<DateTime<Utc>>,
    /// 0: blocks are never split.
    pub min_chunk: i64,
    pub created: DateTime<Utc>,
    /// Its open blocks, in order.
    pub blocks: Vec<BlockIn>,
}

/// A focus block placed before (one piece of a block).
#[derive(Debug, Clone)]
pub struct Existing {
    pub event_id: String,
    pub task_id: String,
    pub block_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Input {
    pub now: DateTime<Utc>,
    pub horizon_end: DateTime<Utc>,
    pub hours: Hours,
    pub buffer_minutes: i64,
    pub busy: Vec<Busy>,
    pub tasks: Vec<TaskIn>,
    pub existing: Vec<Existing>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    New,
    Kept,
    Moved { from: DateTime<Utc> },
}

/// One placed piece of a block.
#[derive(Debug, Clone)]
pub struct Placed {
    pub task_id: String,
    pub block_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// From 1.
    pub piece: u32,
    pub pieces: u32,
    pub change: Change,
    /// The event it was in before (reused when it moves).
    pub event_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    DeadlinePassed,
    NotEnoughTimeBeforeDeadline,
    BlockLongerThanAnyWindow,
    FragmentedBeforeDeadline,
    HorizonFull,
    StartsAfterHorizon,
}

#[derive(Debug, Clone)]
pub struct Unplaced {
    pub task_id: String,
    pub title: String,
    pub why: Why,
    pub detail: String,
    pub minutes_needed: i64,
    pub minutes_free: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Output {
    /// By start.
    pub placed: Vec<Placed>,
    pub unplaced: Vec<Unplaced>,
    /// Events of blocks placed before that no longer hold a block.
    pub removed: Vec<String>,
}

/// Minutes since the epoch.
type Min = i64;

fn to_min(t: DateTime<Utc>) -> Min {
    t.timestamp().div_euclid(60)
}

fn ceil_min(t: DateTime<Utc>) -> Min {
    let s = t.timestamp();
    let m = s.div_euclid(60);
    if s.rem_euclid(60) > 0 || t.timestamp_subsec_nanos() > 0 {
        m + 1
    } else {
        m
    }
}

fn from_min(m: Min) -> DateTime<Utc> {
    DateTime::from_timestamp(m * 60, 0).unwrap_or_default()
}

fn grid_up(m: Min) -> Min {
    m.div_euclid(GRID_MINUTES) * GRID_MINUTES
        + if m.rem_euclid(GRID_MINUTES) > 0 {
            GRID_MINUTES
        } else {
            0
        }
}

/// Sorted, disjoint, non-empty `[start, end)` intervals.
#[derive(Debug, Clone, Default)]
struct Free(Vec<(Min, Min)>);

impl Free {
    fn subtract(&mut self, s: Min, e: Min) {
        if s >= e {
            return;
        }
        let first = self.0.partition_point(|w| w.1 <= s);
        let mut i = first;
        let mut out = Vec::new();
        while i < self.0.len() && self.0[i].0 < e {
            let (ws, we) = self.0[i];
            if ws < s {
                out.push((ws, s));
            }
            if we > e {
                out.push((e, we));
            }
            i += 1;
        }
        self.0.splice(first..i, out);
    }

    /// The earliest `[start, start + len)` inside one window, with `start`
    /// on the grid, `start >= lo` and `start + len <= hi`.
    fn first_fit(&self, len: Min, lo: Min, hi: Min) -> Option<Min> {
        let from = self.0.partition_point(|w| w.1 <= lo);
        for &(ws, we) in &self.0[from..] {
            let s = grid_up(ws.max(lo));
            if s + len > hi {
                return None;
            }
            if s + len <= we {
                return Some(s);
            }
        }
        None
    }

    /// Usable windows between `lo` and `hi`: `(grid start, end)`.
    fn windows(&self, lo: Min, hi: Min) -> impl Iterator<Item = (Min, Min)> + '_ {
        let from = self.0.partition_point(|w| w.1 <= lo);
        self.0[from..]
            .iter()
            .take_while(move |w| w.0 < hi)
            .filter_map(move |&(ws, we)| {
                let s = grid_up(ws.max(lo));
                let e = we.min(hi);
                (e > s).then_some((s, e))
            })
    }

    fn minutes(&self, lo: Min, hi: Min) -> Min {
        self.windows(lo, hi).map(|(s, e)| e - s).sum()
    }

    fn longest(&self, lo: Min, hi: Min) -> Min {
        self.windows(lo, hi).map(|(s, e)| e - s).max().unwrap_or(0)
    }

    fn contains(&self, s: Min, e: Min) -> bool {
        let i = self.0.partition_point(|w| w.1 <= s);
        self.0.get(i).is_some_and(|&(ws, we)| ws <= s && e <= we)
    }
}

/// The working windows from `from` to `to`, in minutes.
fn working(hours: &Hours, from: Min, to: Min) -> Vec<(Min, Min)> {
    let tz = hours.tz;
    let local = |m: Min| from_min(m).with_timezone(&tz).date_naive();
    let at = |day: NaiveDate, minute: u32| -> Min {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        let naive = midnight + Duration::minutes(i64::from(minute));
        // A wall time skipped by a daylight-saving change starts at the
        // first instant after the gap.
        let utc = match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                t.with_timezone(&Utc)
            }
            chrono::LocalResult::None => {
                let later = naive + Duration::hours(1);
                tz.from_local_datetime(&later)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|| Utc.from_utc_datetime(&naive))
            }
        };
        to_min(utc)
    };
    let mut out = Vec::new();
    let mut day = local(from);
    let last = local(to);
    while day <= last {
        let iso = day.weekday().number_from_monday() as u8;
        if hours.days.contains(&iso) {
            let s = at(day, hours.start_minute).max(from);
            let e = at(day, hours.end_minute).min(to);
            if e > s {
                out.push((s, e));
            }
        }
        match day.succ_opt() {
            Some(d) => day = d,
            None => break,
        }
    }
    out
}

fn fmt_local(m: Min, tz: Tz) -> String {
    from_min(m)
        .with_timezone(&tz)
        .format("%a %-d %b %H:%M")
        .to_string()
}

fn priority_word(p: u8) -> &'static str {
    match p {
        0 => "low",
        1 => "medium",
        2 => "high",
        _ => "urgent",
    }
}

fn overlaps(a: (Min, Min), b: (Min, Min)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

struct Ctx<'a> {
    input: &'a Input,
    now: Min,
    horizon: Min,
    buffer: Min,
    /// Working hours minus busy time: free time before any block.
    base: Free,
    free: Free,
    /// Pieces reserved so far, for rebuilding `free` after a release.
    reserved: Vec<(Min, Min)>,
    busy: Vec<(Min, Min, &'a str)>,
}

impl Ctx<'_> {
    fn reserve(&mut self, s: Min, e: Min) {
        self.reserved.push((s, e));
        self.free.subtract(s - self.buffer, e + self.buffer);
    }

    fn release(&mut self, pieces: &[(Min, Min)]) {
        self.reserved.retain(|r| !pieces.contains(r));
        self.free = self.base.clone();
        for &(s, e) in &self.reserved {
            self.free.subtract(s - self.buffer, e + self.buffer);
        }
    }

    /// Why a piece placed before no longer fits, if it does not.
    fn invalid(&self, task: &TaskIn, prev_end: Min, s: Min, e: Min) -> Option<String> {
        let tz = self.input.hours.tz;
        if e <= self.now {
            return Some("it was in the past".into());
        }
        if s < self.now {
            // Under way: it stays as it is.
            return None;
        }
        if e > self.horizon {
            return Some("it lay beyond the horizon".into());
        }
        if let Some(due) = task.due
            && e > to_min(due)
        {
            return Some("it ended after the deadline".into());
        }
        if let Some(at) = task.earliest
            && s < to_min(at)
        {
            return Some("it started before the task's earliest start".into());
        }
        if s < prev_end {
            return Some("it came before the task's previous block".into());
        }
        let b = self.buffer;
        if let Some((bs, be, title)) = self
            .busy
            .iter()
            .find(|(bs, be, _)| overlaps((s - b, e + b), (*bs, *be)))
        {
            return Some(format!(
                "it overlapped \"{title}\" ({}-{})",
                fmt_local(*bs, tz),
                from_min(*be).with_timezone(&tz).format("%H:%M")
            ));
        }
        if self.reserved.iter().any(|r| overlaps((s - b, e + b), *r)) {
            return Some("it overlapped another block".into());
        }
        if !self.free.contains(s, e) {
            return Some("it was outside working hours".into());
        }
        None
    }
}

/// One block's pieces placed before, by task and block.
type Before = HashMap<(String, String), Vec<(Min, Min, String)>>;

/// Places the blocks; see the module's rule.
pub fn schedule(input: &Input) -> Output {
    let now = grid_up(ceil_min(input.now));
    let horizon = to_min(input.horizon_end);
    let buffer = input.buffer_minutes.max(0);
    let mut busy: Vec<(Min, Min, &str)> = input
        .busy
        .iter()
        .map(|b| (to_min(b.start), ceil_min(b.end), b.title.as_str()))
        .filter(|b| b.1 > b.0)
        .collect();
    busy.sort();
    let mut base = Free(working(&input.hours, now, horizon));
    for &(s, e, _) in &busy {
        base.subtract(s - buffer, e + buffer);
    }
    let mut cx = Ctx {
        input,
        now,
        horizon,
        buffer,
        free: base.clone(),
        base,
        reserved: Vec::new(),
        busy,
    };

    let mut before: Before = HashMap::new();
    for ex in &input.existing {
        before
            .entry((ex.task_id.clone(), ex.block_id.clone()))
            .or_default()
            .push((to_min(ex.start), ceil_min(ex.end), ex.event_id.clone()));
    }
    for pieces in before.values_mut() {
        pieces.sort();
    }

    let mut out = Output::default();
    let tz = input.hours.tz;

    // 2. Keep what still fits; moved_reason says why the rest moves.
    let mut kept: Before = HashMap::new();
    let mut moved_reason: HashMap<(String, String), String> = HashMap::new();
    let mut order: Vec<&TaskIn> = input.tasks.iter().collect();
    order.sort_by(|a, b| {
        let due = |t: &TaskIn| t.due.map_or(i64::MAX, to_min);
        due(a)
            .cmp(&due(b))
            .then(b.priority.cmp(&a.priority))
            .then(a.created.cmp(&b.created))
            .then(a.id.cmp(&b.id))
    });
    for task in &order {
        let mut prev_end = Min::MIN;
        for block in &task.blocks {
            let key = (task.id.clone(), block.id.clone());
            let Some(pieces) = before.get(&key) else {
                continue;
            };
            let total: Min = pieces.iter().map(|p| p.1 - p.0).sum();
            let mut why = (total != block.minutes).then(|| "its length changed".to_owned());
            let mut p_end = prev_end;
            for &(s, e, _) in pieces {
                if why.is_some() {
                    break;
                }
                why = cx.invalid(task, p_end, s, e);
                p_end = e;
            }
            match why {
                None => {
                    for &(s, e, _) in pieces {
                        cx.reserve(s, e);
                    }
                    prev_end = p_end;
                    kept.insert(key, pieces.clone());
                }
                Some(w) => {
                    moved_reason.insert(key, w);
                }
            }
        }
    }

    // 3. Place the rest, task by task in deadline order.
    for (rank, task) in order.iter().enumerate() {
        let lo_task = task.earliest.map_or(now, |t| grid_up(ceil_min(t)).max(now));
        let hi_task = task.due.map_or(horizon, |d| to_min(d).min(horizon));
        let mut prev_end = lo_task;
        let mut i = 0;
        let mut released = false;
        while i < task.blocks.len() {
            let block = &task.blocks[i];
            let key = (task.id.clone(), block.id.clone());
            if let Some(pieces) = kept.get(&key) {
                prev_end = pieces.last().map_or(prev_end, |p| p.1);
                i += 1;
                continue;
            }
            // Bounded by the task's next kept block, if any.
            let next_kept = task.blocks[i + 1..]
                .iter()
                .find_map(|b| kept.get(&(task.id.clone(), b.id.clone())))
                .and_then(|p| p.first().map(|p| p.0));
            let hi = next_kept.map_or(hi_task, |n| n.min(hi_task));
            let found = place(&cx, task, block.minutes, prev_end, hi);
            let found = match (found, next_kept, released) {
                (Some(f), _, _) => Some(f),
                (None, Some(_), false) => {
                    // Release the task's later kept blocks and place them after.
                    let mut pieces = Vec::new();
                    for b in &task.blocks[i + 1..] {
                        let k = (task.id.clone(), b.id.clone());
                        if let Some(p) = kept.remove(&k) {
                            pieces.extend(p.iter().map(|x| (x.0, x.1)));
                            moved_reason.insert(k, "its previous block moved after it".into());
                        }
                    }
                    cx.release(&pieces);
                    released = true;
                    place(&cx, task, block.minutes, prev_end, hi_task)
                }
                (None, _, _) => None,
            };
            let Some(pieces) = found else {
                let needed: Min = task.blocks[i..]
                    .iter()
                    .filter(|b| !kept.contains_key(&(task.id.clone(), b.id.clone())))
                    .map(|b| b.minutes)
                    .sum();
                out.unplaced
                    .push(explain(&cx, task, block.minutes, needed, prev_end, hi_task));
                break;
            };
            let mut old = before.get(&key).cloned().unwrap_or_default().into_iter();
            let n = pieces.len() as u32;
            let why_moved = moved_reason.get(&key);
            for (k, &(s, e)) in pieces.iter().enumerate() {
                cx.reserve(s, e);
                let prior = old.next();
                let after = if k > 0 {
                    "after its previous piece".to_owned()
                } else if i > 0 {
                    "after its previous block".to_owned()
                } else {
                    match task.earliest {
                        Some(at) if to_min(at) > now => {
                            format!("after its earliest start {}", fmt_local(to_min(at), tz))
                        }
                        _ => "from now".to_owned(),
                    }
                };
                let deadline = match task.due {
                    Some(d) => format!("due {}", fmt_local(to_min(d), tz)),
                    None => "no deadline".to_owned(),
                };
                let mut reason = format!(
                    "earliest free slot {after} for task {} of {} in deadline order ({deadline}, {} priority)",
                    rank + 1,
                    order.len(),
                    priority_word(task.priority),
                );
                let change = match &prior {
                    None => Change::New,
                    Some((ps, pe, _)) if *ps == s && *pe == e => Change::Kept,
                    Some((ps, _, _)) => Change::Moved {
                        from: from_min(*ps),
                    },
                };
                if let (Change::Moved { .. }, Some(w)) = (&change, why_moved) {
                    reason = format!("moved because {w}; {reason}");
                }
                out.placed.push(Placed {
                    task_id: task.id.clone(),
                    block_id: block.id.clone(),
                    start: from_min(s),
                    end: from_min(e),
                    piece: k as u32 + 1,
                    pieces: n,
                    change,
                    event_id: prior.map(|p| p.2),
                    reason,
                });
            }
            // Old pieces beyond the new ones are removed.
            out.removed.extend(old.map(|p| p.2));
            prev_end = pieces.last().map_or(prev_end, |p| p.1);
            i += 1;
        }
    }

    // Kept blocks.
    for ((task_id, block_id), pieces) in &kept {
        let n = pieces.len() as u32;
        for (k, (s, e, id)) in pieces.iter().enumerate() {
            out.placed.push(Placed {
                task_id: task_id.clone(),
                block_id: block_id.clone(),
                start: from_min(*s),
                end: from_min(*e),
                piece: k as u32 + 1,
                pieces: n,
                change: Change::Kept,
                event_id: Some(id.clone()),
                reason: "kept: still free, inside working hours and before the deadline".into(),
            });
        }
    }
    // Blocks placed before and not placed now: done, gone, or unplaceable.
    let placed_events: std::collections::HashSet<&str> = out
        .placed
        .iter()
        .filter_map(|p| p.event_id.as_deref())
        .collect();
    let mut removed: Vec<String> = input
        .existing
        .iter()
        .filter(|e| !placed_events.contains(e.event_id.as_str()))
        .map(|e| e.event_id.clone())
        .collect();
    removed.sort();
    removed.dedup();
    out.removed = removed;
    out.placed.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(a.task_id.cmp(&b.task_id))
            .then(a.block_id.cmp(&b.block_id))
    });
    out
}

/// The pieces of one block in `[lo, hi)`: whole in the earliest window it
/// fits, else (when the task allows splitting) in pieces of at least its
/// minimum chunk from the earliest windows.
fn place(cx: &Ctx<'_>, task: &TaskIn, minutes: Min, lo: Min, hi: Min) -> Option<Vec<(Min, Min)>> {
    if let Some(s) = cx.free.first_fit(minutes, lo, hi) {
        return Some(vec![(s, s + minutes)]);
    }
    let chunk = task.min_chunk;
    if chunk <= 0 || chunk >= minutes {
        return None;
    }
    let mut left = minutes;
    let mut pieces = Vec::new();
    // Pieces must not touch each other's buffer either.
    let mut floor = lo;
    for (s, e) in cx.free.windows(lo, hi) {
        if left == 0 {
            break;
        }
        let s = grid_up(s.max(floor));
        if e - s < chunk {
            continue;
        }
        let mut take = left.min(e - s);
        if left - take > 0 && left - take < chunk {
            take = left - chunk;
            if take < chunk {
                continue;
            }
        }
        pieces.push((s, s + take));
        left -= take;
        floor = s + take + cx.buffer;
    }
    (left == 0).then_some(pieces)
}

fn explain(cx: &Ctx<'_>, task: &TaskIn, block: Min, needed: Min, lo: Min, hi: Min) -> Unplaced {
    let tz = cx.input.hours.tz;
    let free = cx.free.minutes(lo, hi);
    let longest = cx.free.longest(lo, hi);
    let (why, detail) = if task.due.is_some_and(|d| to_min(d) <= cx.now) {
        (
            Why::DeadlinePassed,
            format!(
                "its deadline {} has passed",
                fmt_local(task.due.map_or(0, to_min), tz)
            ),
        )
    } else if lo >= hi {
        (
            Why::StartsAfterHorizon,
            format!(
                "it cannot start before {}, which is after {}",
                fmt_local(lo, tz),
                if task.due.is_some_and(|d| to_min(d) < cx.horizon) {
                    "its deadline"
                } else {
                    "the horizon's end"
                }
            ),
        )
    } else if free < needed {
        let until = match task.due {
            Some(d) if to_min(d) <= cx.horizon => {
                format!("its deadline {}", fmt_local(to_min(d), tz))
            }
            _ => format!("the horizon's end {}", fmt_local(cx.horizon, tz)),
        };
        (
            if task.due.is_some_and(|d| to_min(d) <= cx.horizon) {
                Why::NotEnoughTimeBeforeDeadline
            } else {
                Why::HorizonFull
            },
            format!(
                "its open blocks need {needed} min but only {free} min of working time are free between {} and {until}",
                fmt_local(lo, tz)
            ),
        )
    } else if longest < block && (task.min_chunk <= 0 || task.min_chunk > longest) {
        (
            Why::BlockLongerThanAnyWindow,
            format!(
                "a {block}-minute block is longer than the longest free window ({longest} min) before {}{}",
                fmt_local(hi, tz),
                if task.min_chunk <= 0 {
                    "; allow splitting with min_chunk_minutes"
                } else {
                    ""
                }
            ),
        )
    } else {
        (
            if task.due.is_some_and(|d| to_min(d) <= cx.horizon) {
                Why::FragmentedBeforeDeadline
            } else {
                Why::HorizonFull
            },
            format!(
                "{free} min are free before {} but in windows its blocks do not fit in (longest {longest} min)",
                fmt_local(hi, tz)
            ),
        )
    };
    Unplaced {
        task_id: task.id.clone(),
        title: task.title.clone(),
        why,
        detail,
        minutes_needed: needed,
        minutes_free: free,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn hours() -> Hours {
        Hours {
            tz: chrono_tz::UTC,
            start_minute: 9 * 60,
            end_minute: 17 * 60,
            days: vec![1, 2, 3, 4, 5],
        }
    }

    fn task(id: &str, due: Option<&str>, blocks: &[i64]) -> TaskIn {
        TaskIn {
            id: id.into(),
            title: id.into(),
            priority: 1,
            due: due.map(t),
            earliest: None,
            min_chunk: 0,
            created: t("2026-01-01T00:00:00Z"),
            blocks: blocks
                .iter()
                .enumerate()
                .map(|(i, m)| BlockIn {
                    id: format!("b{i}"),
                    minutes: *m,
                })
                .collect(),
        }
    }

    // Monday 2026-12-07.
    fn input(tasks: Vec<TaskIn>) -> Input {
        Input {
            now: t("2026-12-07T08:00:00Z"),
            horizon_end: t("2026-12-12T00:00:00Z"),
            hours: hours(),
            buffer_minutes: 0,
            busy: Vec::new(),
            tasks,
            existing: Vec::new(),
        }
    }

    #[test]
    fn earliest_deadline_goes_first_and_blocks_keep_their_order() {
        let out = schedule(&input(vec![
            task("later", Some("2026-12-11T17:00:00Z"), &[60, 60]),
            task("sooner", Some("2026-12-08T17:00:00Z"), &[120]),
        ]));
        assert!(out.unplaced.is_empty(), "{:?}", out.unplaced);
        let starts: Vec<_> = out
            .placed
            .iter()
            .map(|p| (p.task_id.as_str(), p.block_id.as_str(), p.start))
            .collect();
        assert_eq!(
            starts,
            vec![
                ("sooner", "b0", t("2026-12-07T09:00:00Z")),
                ("later", "b0", t("2026-12-07T11:00:00Z")),
                ("later", "b1", t("2026-12-07T12:00:00Z")),
            ]
        );
    }

    #[test]
    fn busy_time_and_buffer_are_avoided() {
        let mut i = input(vec![task("a", None, &[60])]);
        i.buffer_minutes = 10;
        i.busy.push(Busy {
            start: t("2026-12-07T09:30:00Z"),
            end: t("2026-12-07T10:00:00Z"),
            title: "standup".into(),
        });
        let out = schedule(&i);
        assert_eq!(out.placed[0].start, t("2026-12-07T10:10:00Z"));
    }

    #[test]
    fn a_task_that_cannot_fit_says_why() {
        let out = schedule(&input(vec![task(
            "big",
            Some("2026-12-07T12:00:00Z"),
            &[120, 120],
        )]));
        assert_eq!(out.unplaced.len(), 1);
        assert_eq!(out.unplaced[0].why, Why::NotEnoughTimeBeforeDeadline);
        assert_eq!(out.unplaced[0].minutes_free, 60);
        // Its first block still fits and stays placed.
        assert_eq!(out.placed.len(), 1);

        let out = schedule(&input(vec![task("long", None, &[600])]));
        assert_eq!(out.unplaced[0].why, Why::BlockLongerThanAnyWindow);
        let mut split = task("long", None, &[600]);
        split.min_chunk = 60;
        let out = schedule(&input(vec![split]));
        assert!(out.unplaced.is_empty());
        assert_eq!(out.placed.len(), 2);
        assert!(out.placed.iter().all(|p| p.pieces == 2));
    }

    #[test]
    fn a_reschedule_moves_only_the_conflicting_block() {
        let tasks = vec![task("a", None, &[60]), task("b", None, &[60])];
        let first = schedule(&input(tasks.clone()));
        let existing: Vec<Existing> = first
            .placed
            .iter()
            .enumerate()
            .map(|(n, p)| Existing {
                event_id: format!("e{n}"),
                task_id: p.task_id.clone(),
                block_id: p.block_id.clone(),
                start: p.start,
                end: p.end,
            })
            .collect();
        let mut again = input(tasks);
        again.existing = existing;
        again.busy.push(Busy {
            start: t("2026-12-07T10:00:00Z"),
            end: t("2026-12-07T10:30:00Z"),
            title: "call".into(),
        });
        let out = schedule(&again);
        let kept = out
            .placed
            .iter()
            .filter(|p| p.change == Change::Kept)
            .count();
        let moved: Vec<_> = out
            .placed
            .iter()
            .filter(|p| matches!(p.change, Change::Moved { .. }))
            .collect();
        assert_eq!(kept, 1);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].task_id, "b");
        assert_eq!(moved[0].event_id.as_deref(), Some("e1"));
        assert!(moved[0].reason.contains("\"call\""), "{}", moved[0].reason);
        assert!(out.removed.is_empty());
    }

    #[test]
    fn weekends_and_daylight_saving_are_respected() {
        let mut i = input(vec![task("a", None, &[480, 480, 480, 480, 480, 60])]);
        i.hours.tz = chrono_tz::Europe::Berlin;
        let out = schedule(&i);
        // Five working days of 8 hours, then Monday is beyond the horizon.
        assert_eq!(out.placed.len(), 5);
        assert_eq!(out.unplaced[0].why, Why::HorizonFull);
        // 09:00 Berlin is 08:00 UTC in December.
        assert_eq!(out.placed[0].start, t("2026-12-07T08:00:00Z"));
    }
}
