//! OptimizeDay: the day's free time cut into focus windows and breaks, and
//! the open tasks given the best windows in order of importance.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use focusforge_core::Violations;
use focusforge_grpc::into_status;
use focusforge_kit::Caller;
use focusforge_proto::analytics::v1 as an_pb;
use focusforge_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use focusforge_proto::mood::v1 as mood_pb;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use focusforge_proto::orchestrator::v1 as pb;
use focusforge_proto::tasks::v1 as tasks_pb;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use focusforge_proto::users::v1 as users_pb;
use focusforge_proto::users::v1::user_service_client::UserServiceClient;
use tonic::Status;

use crate::api::{ANALYTICS, CALENDAR, CalendarClient, MOOD, OrchestratorApi, USERS, timestamp};
use crate::step::Steps;
use focusforge_proto::calendar::v1 as cal_pb;

const TASKS: &str = focusforge_proto::tasks::v1::task_service_server::SERVICE_NAME;

/// The rule the plan follows, in words.
pub const RULE: &str = "Open tasks in order of priority, then deadline (lighter tasks first after a low mood), each given the best free windows left: windows starting in the user's best focus hours first, then the earliest; a window is the profile's focus length (shorter after a low mood) followed by its break, and never ends after the task's deadline.";

/// Titles of the calendar events an applied plan writes; a new apply
/// replaces those in the part of the day it plans (from now to the end of
/// the working day), and an earlier one's time counts as free.
pub const EVENT_PREFIX: &str = "Day plan: ";

/// The morning, when there is no history to prefer hours from.
const DEFAULT_HOURS: [i32; 3] = [9, 10, 11];

/// An open task as the day planner sees it.
#[derive(Debug, Clone)]
pub struct OpenTask {
    pub id: String,
    pub title: String,
    /// Higher is more important (the tasks contract's numbering).
    pub priority: i32,
    pub due: Option<DateTime<Utc>>,
    pub minutes: i32,
}

/// What the day is planned from.
#[derive(Debug, Clone)]
pub struct Day {
    pub tz: Tz,
    pub free: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    pub tasks: Vec<OpenTask>,
    pub preferred_hours: Vec<i32>,
    pub low_mood: bool,
    pub focus_minutes: i32,
    pub short_break: i32,
    pub long_break: i32,
    pub long_every: i32,
}

#[derive(Debug, Clone)]
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// The break after it, when it fits in the free time.
    rest: Option<(DateTime<Utc>, DateTime<Utc>)>,
    task: Option<usize>,
}

fn priority_word(p: i32) -> &'static str {
    match tasks_pb::TaskPriority::try_from(p) {
        Ok(tasks_pb::TaskPriority::Urgent) => "urgent",
        Ok(tasks_pb::TaskPriority::High) => "high priority",
        Ok(tasks_pb::TaskPriority::Low) => "low priority",
        _ => "medium priority",
    }
}

/// The plan: its items by start, and the tasks that did not fit.
pub fn plan(day: &Day) -> (Vec<pb::DayItem>, Vec<String>) {
    let focus = if day.low_mood {
        (day.focus_minutes * 3 / 5).max(15)
    } else {
        day.focus_minutes.max(5)
    };
    let mut windows = Vec::new();
    let mut count = 0;
    for &(from, to) in &day.free {
        let mut at = from;
        while at + Duration::minutes(focus.into()) <= to {
            let end = at + Duration::minutes(focus.into());
            count += 1;
            let rest_len = if day.long_every > 0 && count % day.long_every == 0 {
                day.long_break
            } else {
                day.short_break
            };
            let rest_end = end + Duration::minutes(rest_len.into());
            windows.push(Window {
                start: at,
                end,
                rest: (rest_len > 0 && rest_end <= to).then_some((end, rest_end)),
                task: None,
            });
            at = rest_end;
        }
    }
    let hour_rank = |w: &Window| {
        let h = i32::try_from(w.start.with_timezone(&day.tz).hour()).unwrap_or(0);
        day.preferred_hours
            .iter()
            .position(|p| *p == h)
            .unwrap_or(usize::MAX)
    };
    let mut ranked: Vec<usize> = (0..windows.len()).collect();
    ranked.sort_by_key(|&i| (hour_rank(&windows[i]), windows[i].start));

    let mut order: Vec<usize> = (0..day.tasks.len()).collect();
    let urgent = tasks_pb::TaskPriority::Urgent as i32;
    order.sort_by(|&a, &b| {
        let (x, y) = (&day.tasks[a], &day.tasks[b]);
        let due = |t: &OpenTask| t.due.unwrap_or(DateTime::<Utc>::MAX_UTC);
        if day.low_mood {
            (y.priority == urgent)
                .cmp(&(x.priority == urgent))
                .then(x.minutes.cmp(&y.minutes))
                .then(due(x).cmp(&due(y)))
        } else {
            y.priority
                .cmp(&x.priority)
                .then(due(x).cmp(&due(y)))
                .then(x.minutes.cmp(&y.minutes))
        }
        .then(x.title.cmp(&y.title))
    });

    let mut not_placed = Vec::new();
    let mut reasons = vec![String::new(); windows.len()];
    for t in order {
        let task = &day.tasks[t];
        let need = ((task.minutes.max(1) + focus - 1) / focus).max(1) as usize;
        let mut got = 0;
        for &w in &ranked {
            if got == need {
                break;
            }
            if windows[w].task.is_some() || task.due.is_some_and(|d| windows[w].end > d) {
                continue;
            }
            windows[w].task = Some(t);
            got += 1;
            let mut why = priority_word(task.priority).to_owned();
            if let Some(d) = task.due {
                why.push_str(&format!(
                    ", due {}",
                    d.with_timezone(&day.tz).format("%a %H:%M")
                ));
            }
            let hour = windows[w].start.with_timezone(&day.tz).hour();
            if hour_rank(&windows[w]) != usize::MAX {
                why.push_str(&format!("; {hour:02}:00 is one of your best focus hours"));
            } else {
                why.push_str("; the earliest free window left");
            }
            if day.low_mood {
                why.push_str("; a shorter window and lighter work first after a low mood");
            }
            reasons[w] = why;
        }
        let minutes = i32::try_from(got).unwrap_or(i32::MAX) * focus;
        if got == 0 {
            not_placed.push(format!(
                "{}: no free window left today before its deadline (needs {} minutes)",
                task.title, task.minutes
            ));
        } else if got < need {
            not_placed.push(format!(
                "{}: {} of {} minutes fit today",
                task.title, minutes, task.minutes
            ));
        }
    }

    let mut items = Vec::new();
    for (w, why) in windows.iter().zip(reasons) {
        let Some(t) = w.task else { continue };
        let task = &day.tasks[t];
        items.push(pb::DayItem {
            kind: "focus".into(),
            start_time: Some(timestamp(w.start)),
            end_time: Some(timestamp(w.end)),
            task_id: task.id.clone(),
            task_title: task.title.clone(),
            reason: why,
            event_id: String::new(),
        });
        if let Some((from, to)) = w.rest {
            let minutes = (to - from).num_minutes();
            items.push(pb::DayItem {
                kind: "break".into(),
                start_time: Some(timestamp(from)),
                end_time: Some(timestamp(to)),
                reason: format!("a {minutes}-minute break from your profile"),
                ..Default::default()
            });
        }
    }
    (items, not_placed)
}

fn time(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    focusforge_mcp::tools::ts(*t)
}

fn local(tz: Tz, date: chrono::NaiveDate, minute: i32) -> DateTime<Utc> {
    let t = NaiveTime::from_num_seconds_from_midnight_opt(
        u32::try_from(minute.clamp(0, 1439) * 60).unwrap_or(0),
        0,
    )
    .unwrap_or_default();
    let naive = date.and_time(t);
    tz.from_local_datetime(&naive)
        .earliest()
        .unwrap_or_else(|| tz.from_utc_datetime(&naive))
        .with_timezone(&Utc)
}

/// Minutes a task still needs: its open blocks, else its estimate less what
/// was focused on it, at least one window.
fn remaining(t: &tasks_pb::Task, focus: i32) -> i32 {
    let open: i32 = t.blocks.iter().filter(|b| !b.done).map(|b| b.minutes).sum();
    if !t.blocks.is_empty() && open > 0 {
        return open;
    }
    (t.estimated_minutes - t.focus_minutes).max(focus)
}

pub async fn optimize(
    api: &OrchestratorApi,
    caller: &Caller,
    steps: &mut Steps,
    r: pb::OptimizeDayRequest,
    now: DateTime<Utc>,
) -> Result<pb::OptimizeDayResponse, Status> {
    let mut v = Violations::new();
    v.range("max_tasks", r.max_tasks.into(), 0, 50);
    let day_at = focusforge_grpc::convert::from_timestamp(&mut v, "day", r.day).unwrap_or(now);
    v.finish().map_err(into_status)?;
    let max_tasks = if r.max_tasks == 0 { 20 } else { r.max_tasks } as usize;

    // The profile: zone, hours, lengths.
    let get = steps.timed(caller.request(users_pb::GetProfileRequest {}));
    let users = api.conn(USERS);
    let prefs = steps
        .optional("users.profile", USERS, async move {
            Ok(UserServiceClient::new(users?)
                .get_profile(get)
                .await?
                .into_inner()
                .profile
                .and_then(|p| p.preferences))
        })
        .await
        .flatten()
        .unwrap_or_default();
    let tz: Tz = prefs.timezone.parse().unwrap_or(chrono_tz::UTC);
    let or = |v: i32, d: i32| if v > 0 { v } else { d };
    let focus = or(prefs.focus_minutes, 25);
    let date = day_at.with_timezone(&tz).date_naive();
    let start = local(tz, date, or(prefs.work_start_minute, 540)).max(now);
    let end = local(tz, date, or(prefs.work_end_minute, 1020));
    let mut out = pb::OptimizeDayResponse {
        time_zone: tz.name().to_owned(),
        rule: RULE.to_owned(),
        ..Default::default()
    };

    // The open tasks (required: without them there is nothing to plan).
    let list = steps.timed(caller.request(tasks_pb::ListTasksRequest {
        page_size: 200,
        statuses: vec![
            tasks_pb::TaskStatus::Pending as i32,
            tasks_pb::TaskStatus::InProgress as i32,
        ],
        ..Default::default()
    }));
    let tasks = api.conn(TASKS);
    let open = steps
        .required("tasks.open", TASKS, async move {
            Ok(TaskServiceClient::new(tasks?)
                .list_tasks(list)
                .await?
                .into_inner()
                .tasks)
        })
        .await?;

    // The planned part of the day's events: an earlier apply's, to be
    // replaced, and the others, which stay busy.
    let (replaced, others) = if end > start {
        let list = steps.timed(caller.request(cal_pb::ListEventsRequest {
            start_time: Some(timestamp(start)),
            end_time: Some(timestamp(end)),
            page_size: 500,
            ..Default::default()
        }));
        let calendar = api.conn(CALENDAR);
        let events = steps
            .optional("calendar.events", CALENDAR, async move {
                Ok(CalendarClient::new(calendar?)
                    .list_events(list)
                    .await?
                    .into_inner()
                    .occurrences)
            })
            .await
            .unwrap_or_default();
        events.into_iter().partition::<Vec<_>, _>(|o| {
            o.title.starts_with(EVENT_PREFIX)
                && !o.recurring
                && time(&o.start_time).is_some_and(|t| t >= start && t < end)
        })
    } else {
        (Vec::new(), Vec::new())
    };
    let span = |o: &cal_pb::Occurrence| Some((time(&o.start_time)?, time(&o.end_time)?));

    // Free time, best hours and the newest mood.
    let free = if end > start {
        let fb = steps.timed(caller.request(cal_pb::GetFreeBusyRequest {
            start_time: Some(timestamp(start)),
            end_time: Some(timestamp(end)),
            include_google: false,
        }));
        let calendar = api.conn(CALENDAR);
        steps
            .optional("calendar.free_busy", CALENDAR, async move {
                Ok(CalendarClient::new(calendar?)
                    .get_free_busy(fb)
                    .await?
                    .into_inner()
                    .free)
            })
            .await
            .map(|free| {
                let free: Vec<_> = free
                    .iter()
                    .filter_map(|i| Some((time(&i.start_time)?, time(&i.end_time)?)))
                    .collect();
                let replaced: Vec<_> = replaced
                    .iter()
                    .filter_map(span)
                    .map(|(s, e)| (s, e.min(end)))
                    .collect();
                let others: Vec<_> = others.iter().filter_map(span).collect();
                reclaim(&free, &replaced, &others)
            })
            .unwrap_or_else(|| vec![(start, end)])
    } else {
        steps.skipped("calendar.free_busy", CALENDAR, "the working day is over");
        Vec::new()
    };
    let report = steps.timed(caller.request(an_pb::GetReportRequest {
        start_time: Some(timestamp(now - Duration::days(30))),
        end_time: Some(timestamp(now)),
        bucket: an_pb::Bucket::Day as i32,
    }));
    let analytics = api.conn(ANALYTICS);
    let best = steps
        .optional("analytics.best_hours", ANALYTICS, async move {
            Ok(AnalyticsServiceClient::new(analytics?)
                .get_report(report)
                .await?
                .into_inner()
                .report
                .map(|r| r.best_hours)
                .unwrap_or_default())
        })
        .await
        .unwrap_or_default();
    out.preferred_hours = if best.is_empty() {
        DEFAULT_HOURS.to_vec()
    } else {
        best
    };
    let moods = steps.timed(caller.request(mood_pb::ListMoodsRequest {
        start_time: Some(timestamp(now - Duration::hours(12))),
        page_size: 1,
        ..Default::default()
    }));
    let mood = api.conn(MOOD);
    out.low_mood = steps
        .optional("mood.latest", MOOD, async move {
            Ok(MoodServiceClient::new(mood?)
                .list_moods(moods)
                .await?
                .into_inner()
                .entries)
        })
        .await
        .and_then(|e| e.into_iter().next())
        .is_some_and(|m| m.score <= 2 || (m.energy > 0 && m.energy <= 2));

    let mut candidates: Vec<OpenTask> = open
        .iter()
        .map(|t| OpenTask {
            id: t.id.clone(),
            title: t.title.clone(),
            priority: t.priority,
            due: time(&t.due_time),
            minutes: remaining(t, focus),
        })
        .collect();
    // The most important first, then cut to the limit.
    candidates.sort_by(|a, b| {
        b.priority.cmp(&a.priority).then(
            a.due
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
                .cmp(&b.due.unwrap_or(DateTime::<Utc>::MAX_UTC)),
        )
    });
    candidates.truncate(max_tasks);
    let day = Day {
        tz,
        free,
        tasks: candidates,
        preferred_hours: out.preferred_hours.clone(),
        low_mood: out.low_mood,
        focus_minutes: focus,
        short_break: or(prefs.short_break_minutes, 5),
        long_break: or(prefs.long_break_minutes, 15),
        long_every: or(prefs.long_break_every, 4),
    };
    let (mut items, not_placed) = plan(&day);
    out.not_placed = not_placed;

    if !r.apply {
        steps.skipped(
            "calendar.apply",
            CALENDAR,
            "the caller did not ask to apply",
        );
    } else if items.is_empty() && replaced.is_empty() {
        steps.skipped("calendar.apply", CALENDAR, "there is nothing to write");
    } else {
        let calendar = api.conn(CALENDAR);
        let requests: Vec<_> = items
            .iter()
            .filter(|i| i.kind == "focus")
            .map(|i| {
                steps.timed(
                    caller.request(cal_pb::CreateEventRequest {
                        event: Some(cal_pb::Event {
                            title: format!("{EVENT_PREFIX}{}", i.task_title)
                                .chars()
                                .take(500)
                                .collect(),
                            description: i.reason.clone(),
                            start_time: i.start_time,
                            end_time: i.end_time,
                            time_zone: tz.name().to_owned(),
                            ..Default::default()
                        }),
                    }),
                )
            })
            .collect();
        let budget = steps.budget();
        let caller = caller.clone();
        if let Some(ids) = steps
            .optional("calendar.apply", CALENDAR, async move {
                let mut client = CalendarClient::new(calendar?);
                for o in &replaced {
                    let mut del = caller.request(cal_pb::DeleteEventRequest {
                        id: o.event_id.clone(),
                    });
                    del.set_timeout(budget);
                    match client.delete_event(del).await {
                        Ok(_) => {}
                        Err(s) if s.code() == tonic::Code::NotFound => {}
                        Err(s) => return Err(s),
                    }
                }
                let mut ids = Vec::new();
                for req in requests {
                    let e = client.create_event(req).await?.into_inner().event;
                    ids.push(e.map(|e| e.id).unwrap_or_default());
                }
                Ok(ids)
            })
            .await
        {
            let mut ids = ids.into_iter();
            for item in items.iter_mut().filter(|i| i.kind == "focus") {
                item.event_id = ids.next().unwrap_or_default();
            }
            out.applied = true;
        }
    }
    out.items = items;
    Ok(out)
}

type Span = (DateTime<Utc>, DateTime<Utc>);

/// Free time with an earlier apply's events given back, so a new apply
/// re-makes the plan instead of planning around it; time another event
/// holds stays busy.
pub fn reclaim(free: &[Span], replaced: &[Span], others: &[Span]) -> Vec<Span> {
    let mut all = free.to_vec();
    for &r in replaced {
        all.extend(subtract(r, others));
    }
    all.sort();
    let mut out: Vec<Span> = Vec::new();
    for (s, e) in all {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// `span` less every interval of `cut`.
fn subtract(span: Span, cut: &[Span]) -> Vec<Span> {
    let mut parts = vec![span];
    for &(cs, ce) in cut {
        parts = parts
            .into_iter()
            .flat_map(|(a, b)| {
                if cs >= b || ce <= a {
                    return vec![(a, b)];
                }
                [(a, cs), (ce, b)]
                    .into_iter()
                    .filter(|(s, e)| s < e)
                    .collect()
            })
            .collect();
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, m, 0)
            .single()
            .expect("time")
    }

    fn task(id: &str, priority: tasks_pb::TaskPriority, minutes: i32) -> OpenTask {
        OpenTask {
            id: id.into(),
            title: id.into(),
            priority: priority as i32,
            due: None,
            minutes,
        }
    }

    fn day(tasks: Vec<OpenTask>) -> Day {
        Day {
            tz: chrono_tz::UTC,
            free: vec![(at(9, 0), at(12, 0)), (at(13, 0), at(17, 0))],
            tasks,
            preferred_hours: vec![14, 15],
            low_mood: false,
            focus_minutes: 25,
            short_break: 5,
            long_break: 15,
            long_every: 4,
        }
    }

    fn focus_of(items: &[pb::DayItem], id: &str) -> Vec<DateTime<Utc>> {
        items
            .iter()
            .filter(|i| i.kind == "focus" && i.task_id == id)
            .filter_map(|i| time(&i.start_time))
            .collect()
    }

    #[test]
    fn the_most_important_task_gets_the_best_hours_and_breaks_follow_the_profile() {
        use tasks_pb::TaskPriority::*;
        let (items, not_placed) =
            plan(&day(vec![task("low", Low, 25), task("urgent", Urgent, 50)]));
        assert!(not_placed.is_empty(), "{not_placed:?}");
        // The day's windows: 09:00, 09:30, 10:00, 10:30 (the fourth, then a
        // long break), 11:10; 13:00, 13:30, 14:00 (the eighth), 14:40, 15:10.
        assert_eq!(focus_of(&items, "urgent"), vec![at(14, 0), at(14, 40)]);
        assert_eq!(focus_of(&items, "low"), vec![at(15, 10)]);
        let urgent = items.iter().find(|i| i.task_id == "urgent").expect("item");
        assert!(urgent.reason.contains("urgent"), "{}", urgent.reason);
        assert!(
            urgent.reason.contains("best focus hours"),
            "{}",
            urgent.reason
        );
        // The fourth window of the day is followed by the long break.
        let breaks: Vec<i64> = items
            .iter()
            .filter(|i| i.kind == "break")
            .map(|i| {
                (time(&i.end_time).expect("end") - time(&i.start_time).expect("start"))
                    .num_minutes()
            })
            .collect();
        assert_eq!(breaks, vec![15, 5, 5], "after 14:00, 14:40 and 15:10");
    }

    #[test]
    fn an_earlier_plan_is_given_back_but_a_meeting_over_it_stays_busy() {
        // Free 9-10 and 12-13; the earlier plan held 10-11 and 11:30-12; a
        // meeting since booked 10:30-11.
        let free = [(at(9, 0), at(10, 0)), (at(12, 0), at(13, 0))];
        let replaced = [(at(10, 0), at(11, 0)), (at(11, 30), at(12, 0))];
        let meeting = [(at(10, 30), at(11, 0))];
        assert_eq!(
            reclaim(&free, &replaced, &meeting),
            vec![(at(9, 0), at(10, 30)), (at(11, 30), at(13, 0))]
        );
        assert_eq!(reclaim(&free, &[], &meeting), free.to_vec());
    }

    #[test]
    fn a_deadline_keeps_a_task_out_of_windows_after_it() {
        use tasks_pb::TaskPriority::*;
        let mut due = task("due", High, 25);
        due.due = Some(at(10, 0));
        let (items, _) = plan(&day(vec![due]));
        // Preferred 14:00 would be after the deadline: the morning it is.
        assert_eq!(focus_of(&items, "due"), vec![at(9, 0)]);
        let mut late = task("late", High, 25);
        late.due = Some(at(8, 0));
        let (items, not_placed) = plan(&day(vec![late]));
        assert!(focus_of(&items, "late").is_empty());
        assert!(not_placed[0].contains("no free window"), "{not_placed:?}");
    }

    #[test]
    fn after_a_low_mood_windows_are_shorter_and_light_work_comes_first() {
        use tasks_pb::TaskPriority::*;
        let mut d = day(vec![task("big", High, 120), task("small", Medium, 15)]);
        d.low_mood = true;
        d.free = vec![(at(14, 0), at(15, 0))];
        let (items, not_placed) = plan(&d);
        // 15-minute windows (25 x 3/5), the small task in the first.
        assert_eq!(focus_of(&items, "small"), vec![at(14, 0)]);
        let first = items.first().expect("item");
        assert_eq!(
            (time(&first.end_time).expect("end") - time(&first.start_time).expect("start"))
                .num_minutes(),
            15
        );
        assert!(first.reason.contains("low mood"), "{}", first.reason);
        assert!(
            not_placed.iter().any(|n| n.starts_with("big:")),
            "{not_placed:?}"
        );
    }
}
