//! The Calendar service through the gateway: recurring events expanded
//! across a daylight-saving change, pages, bad input and isolation (SQLite
//! and MongoDB); auto-scheduling with an unschedulable task explained and a
//! reschedule that moves only the conflicting block (SQLite and MongoDB);
//! the iCalendar feed over plain HTTP with its token, revoked and rotated,
//! 304 on an unchanged feed, read back by the independent Python parser;
//! import with its line-numbered errors; Google Calendar sync against a
//! local server that speaks the Calendar API v3 and OAuth 2 formats.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use focusforge_core::ManualClock;
use focusforge_proto::calendar::v1::calendar_service_client::CalendarServiceClient;
use focusforge_proto::calendar::v1::{
    AutoScheduleRequest, AutoScheduleResponse, BeginGoogleLinkRequest, CompleteGoogleLinkRequest,
    CreateEventRequest, DeleteEventRequest, Event, EventKind, EventSource, GetEventRequest,
    GetFeedRequest, GetFreeBusyRequest, GetGoogleStatusRequest, ImportCalendarRequest,
    ListEventsRequest, Occurrence, PlacementChange, RevokeFeedRequest, SyncGoogleRequest,
    Transparency, UnlinkGoogleRequest, UnscheduledReason, UpdateEventRequest,
};
use focusforge_proto::tasks::v1::{CreateTaskRequest, TaskPriority, WorkBlock};
use focusforge_proto::users::v1::{Preferences, Profile, UpdateProfileRequest};
use http::Request;
use http_body_util::{BodyExt, Full};
use prost_types::{FieldMask, Timestamp};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::game::nanos;
use crate::harness::{Http, Server, authed, config, send};
use crate::mood::fields;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

fn ts(s: &str) -> Option<Timestamp> {
    let t = t(s);
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn at(ts: &Option<Timestamp>) -> DateTime<Utc> {
    let ts = ts.expect("timestamp");
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32).expect("time")
}

async fn set_zone(server: &Server, user: &str, tz: &str) {
    server
        .users()
        .await
        .update_profile(authed(
            user,
            UpdateProfileRequest {
                profile: Some(Profile {
                    preferences: Some(Preferences {
                        timezone: tz.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["preferences.timezone".into()],
                }),
            },
        ))
        .await
        .expect("profile");
}

async fn create(cal: &mut CalendarServiceClient<Channel>, user: &str, e: Event) -> Event {
    cal.create_event(authed(user, CreateEventRequest { event: Some(e) }))
        .await
        .expect("create event")
        .into_inner()
        .event
        .expect("event")
}

fn timed(title: &str, start: &str, end: &str) -> Event {
    Event {
        title: title.into(),
        start_time: ts(start),
        end_time: ts(end),
        ..Default::default()
    }
}

async fn list_all(
    cal: &mut CalendarServiceClient<Channel>,
    user: &str,
    from: &str,
    to: &str,
    kind: EventKind,
    page_size: i32,
) -> Vec<Occurrence> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let page = cal
            .list_events(authed(
                user,
                ListEventsRequest {
                    start_time: ts(from),
                    end_time: ts(to),
                    page_size,
                    page_token: token.clone(),
                    kind: kind as i32,
                },
            ))
            .await
            .expect("list")
            .into_inner();
        assert!(page.occurrences.len() <= page_size.max(1) as usize);
        out.extend(page.occurrences);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
    panic!("pages never ended");
}

/// Events with recurrence across a daylight-saving change, pages, updates,
/// bad input and isolation.
async fn events_and_recurrence(server: &Server) {
    set_zone(server, "alice", "Europe/Berlin").await;
    let mut cal = server.calendar().await;
    // A daily 09:00 stand-up in Berlin from Thursday 22 October 2026, ten
    // times, without Saturday the 24th; summer time ends on the 25th.
    let standup = create(
        &mut cal,
        "alice",
        Event {
            rrule: "FREQ=DAILY;COUNT=10".into(),
            exdates: vec![ts("2026-10-24T07:00:00Z").expect("ts")],
            ..timed("Stand-up", "2026-10-22T07:00:00Z", "2026-10-22T07:15:00Z")
        },
    )
    .await;
    assert_eq!(
        standup.time_zone, "Europe/Berlin",
        "the profile's zone by default"
    );
    assert!(standup.uid.ends_with("@focusforge"), "{}", standup.uid);
    assert_eq!(standup.sequence, 0);
    assert_eq!(standup.kind, EventKind::Event as i32);
    let holiday = create(
        &mut cal,
        "alice",
        Event {
            title: "Day off".into(),
            all_day: true,
            start_date: "2026-10-26".into(),
            transparency: Transparency::Busy as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(holiday.end_date, "2026-10-27");

    let occ = list_all(
        &mut cal,
        "alice",
        "2026-10-01T00:00:00Z",
        "2026-11-30T00:00:00Z",
        EventKind::Unspecified,
        4,
    )
    .await;
    let standups: Vec<&Occurrence> = occ.iter().filter(|o| o.event_id == standup.id).collect();
    assert_eq!(standups.len(), 9, "ten, less the one excluded");
    let berlin = chrono_tz::Europe::Berlin;
    for o in &standups {
        let local = at(&o.start_time).with_timezone(&berlin);
        assert_eq!(local.format("%H:%M").to_string(), "09:00", "{local}");
        assert_eq!(at(&o.end_time) - at(&o.start_time), Duration::minutes(15));
        assert!(o.recurring);
    }
    assert_eq!(at(&standups[0].start_time), t("2026-10-22T07:00:00Z"));
    assert!(
        standups
            .iter()
            .any(|o| at(&o.start_time) == t("2026-10-26T08:00:00Z")),
        "after the change 09:00 Berlin is 08:00 UTC"
    );
    assert!(!standups.iter().any(|o| {
        at(&o.start_time)
            .with_timezone(&berlin)
            .date_naive()
            .to_string()
            == "2026-10-24"
    }));
    let day_off: Vec<&Occurrence> = occ.iter().filter(|o| o.event_id == holiday.id).collect();
    assert_eq!(day_off.len(), 1);
    assert!(day_off[0].all_day);
    assert_eq!(at(&day_off[0].start_time), t("2026-10-25T23:00:00Z"));
    let starts: Vec<_> = occ.iter().map(|o| at(&o.start_time)).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "by start");

    // Free/busy on the 26th: the day off covers it all.
    let fb = cal
        .get_free_busy(authed(
            "alice",
            GetFreeBusyRequest {
                start_time: ts("2026-10-26T06:00:00Z"),
                end_time: ts("2026-10-26T12:00:00Z"),
                include_google: false,
            },
        ))
        .await
        .expect("free busy")
        .into_inner();
    assert_eq!(fb.busy.len(), 1);
    assert!(fb.free.is_empty());

    // An update bumps the sequence; a no-op does not.
    let moved = cal
        .update_event(authed(
            "alice",
            UpdateEventRequest {
                event: Some(Event {
                    id: standup.id.clone(),
                    title: "Daily stand-up".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["title".into()],
                }),
                expected_version: standup.version,
            },
        ))
        .await
        .expect("update")
        .into_inner()
        .event
        .expect("event");
    assert_eq!(moved.sequence, 1);
    assert_eq!(moved.uid, standup.uid, "the UID is stable");

    // Bad input names its field.
    let bad = |e: Event| CreateEventRequest { event: Some(e) };
    let cases: Vec<(CreateEventRequest, &str)> = vec![
        (
            bad(timed("x", "2026-10-22T09:00:00Z", "2026-10-22T08:00:00Z")),
            "event.end_time",
        ),
        (
            bad(Event {
                rrule: "FREQ=SOMETIMES".into(),
                ..timed("x", "2026-10-22T08:00:00Z", "2026-10-22T09:00:00Z")
            }),
            "event.rrule",
        ),
        (
            bad(Event {
                time_zone: "Mars/Olympus_Mons".into(),
                ..timed("x", "2026-10-22T08:00:00Z", "2026-10-22T09:00:00Z")
            }),
            "event.time_zone",
        ),
        (
            bad(timed("", "2026-10-22T08:00:00Z", "2026-10-22T09:00:00Z")),
            "event.title",
        ),
    ];
    for (req, field) in cases {
        let e = cal
            .create_event(authed("alice", req))
            .await
            .expect_err(field);
        assert!(fields(&e).contains(&field.to_owned()), "{field}: {e:?}");
    }
    let e = cal
        .list_events(authed(
            "alice",
            ListEventsRequest {
                start_time: ts("2026-01-01T00:00:00Z"),
                end_time: ts("2027-06-01T00:00:00Z"),
                ..Default::default()
            },
        ))
        .await
        .expect_err("too long a range");
    assert!(fields(&e).contains(&"end_time".to_owned()), "{e:?}");
    let e = cal
        .auto_schedule(authed(
            "alice",
            AutoScheduleRequest {
                horizon_days: 91,
                ..Default::default()
            },
        ))
        .await
        .expect_err("horizon over 90 days");
    assert_eq!(fields(&e), vec!["horizon_days".to_owned()]);

    // Bob sees none of it.
    let e = cal
        .get_event(authed(
            "bob",
            GetEventRequest {
                id: standup.id.clone(),
            },
        ))
        .await
        .expect_err("bob reads alice's event");
    assert_eq!(e.code(), Code::NotFound);
    let e = cal
        .delete_event(authed(
            "bob",
            DeleteEventRequest {
                id: standup.id.clone(),
            },
        ))
        .await
        .expect_err("bob deletes alice's event");
    assert_eq!(e.code(), Code::NotFound);
    let e = cal
        .update_event(authed(
            "bob",
            UpdateEventRequest {
                event: Some(Event {
                    id: standup.id.clone(),
                    title: "mine".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["title".into()],
                }),
                expected_version: 0,
            },
        ))
        .await
        .expect_err("bob updates alice's event");
    assert_eq!(e.code(), Code::NotFound);
    let theirs = list_all(
        &mut cal,
        "bob",
        "2026-10-01T00:00:00Z",
        "2026-11-30T00:00:00Z",
        EventKind::Unspecified,
        100,
    )
    .await;
    assert!(theirs.is_empty());

    cal.delete_event(authed(
        "alice",
        DeleteEventRequest {
            id: holiday.id.clone(),
        },
    ))
    .await
    .expect("delete");
    let e = cal
        .get_event(authed("alice", GetEventRequest { id: holiday.id }))
        .await
        .expect_err("deleted");
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn recurring_events_list_across_daylight_saving() {
    let server = Server::start().await;
    events_and_recurrence(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn recurring_events_list_across_daylight_saving_on_mongodb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.mongodb.uri = Some(crate::backends::mongo_uri());
    cfg.mongodb.database = format!("cal_{}", nanos());
    let server = Server::start_in(dir, cfg).await;
    events_and_recurrence(&server).await;
    server.stop().await;
}

fn block(title: &str, minutes: i32, order: i32) -> WorkBlock {
    WorkBlock {
        title: title.into(),
        minutes,
        order,
        done: false,
        id: String::new(),
    }
}

async fn task(server: &Server, user: &str, req: CreateTaskRequest) -> String {
    server
        .tasks()
        .await
        .create_task(authed(user, req))
        .await
        .expect("task")
        .into_inner()
        .task
        .expect("task")
        .id
}

async fn schedule(server: &Server, user: &str, buffer: i32) -> AutoScheduleResponse {
    server
        .calendar()
        .await
        .auto_schedule(authed(
            user,
            AutoScheduleRequest {
                horizon_days: 14,
                buffer_minutes: buffer,
                dry_run: false,
            },
        ))
        .await
        .expect("auto schedule")
        .into_inner()
}

/// Auto-scheduling on Monday 7 December 2026, 08:00 UTC (working hours
/// 09:00-17:00 UTC, Monday to Friday).
async fn schedules_and_reschedules(server: &Server) {
    let mut cal = server.calendar().await;
    // A daily 12:00-13:00 lunch, and a meeting on Monday afternoon.
    create(
        &mut cal,
        "alice",
        Event {
            rrule: "FREQ=DAILY".into(),
            time_zone: "UTC".into(),
            ..timed("Lunch", "2026-12-07T12:00:00Z", "2026-12-07T13:00:00Z")
        },
    )
    .await;
    create(
        &mut cal,
        "alice",
        timed(
            "Planning meeting",
            "2026-12-07T14:00:00Z",
            "2026-12-07T15:00:00Z",
        ),
    )
    .await;
    let report = task(
        server,
        "alice",
        CreateTaskRequest {
            title: "Quarterly report".into(),
            priority: TaskPriority::High as i32,
            due_time: ts("2026-12-08T17:00:00Z"),
            blocks: vec![block("Gather numbers", 90, 0), block("Write it up", 120, 1)],
            ..Default::default()
        },
    )
    .await;
    let talk = task(
        server,
        "alice",
        CreateTaskRequest {
            title: "Conference talk".into(),
            blocks: vec![block("Outline", 60, 0), block("Slides", 180, 1)],
            earliest_start_time: ts("2026-12-09T00:00:00Z"),
            ..Default::default()
        },
    )
    .await;
    // Due in two hours but needs four: it cannot fit.
    let impossible = task(
        server,
        "alice",
        CreateTaskRequest {
            title: "Grant application".into(),
            priority: TaskPriority::Urgent as i32,
            due_time: ts("2026-12-07T11:00:00Z"),
            blocks: vec![block("Everything", 240, 0)],
            ..Default::default()
        },
    )
    .await;
    // A block longer than any working day, without splitting.
    let marathon = task(
        server,
        "alice",
        CreateTaskRequest {
            title: "Migration".into(),
            blocks: vec![block("Cut-over", 480, 0), block("Clean-up", 60, 1)],
            ..Default::default()
        },
    )
    .await;
    // Bob's task never lands in Alice's calendar.
    task(
        server,
        "bob",
        CreateTaskRequest {
            title: "Bob's errand".into(),
            blocks: vec![block("Go", 30, 0)],
            ..Default::default()
        },
    )
    .await;

    let first = schedule(server, "alice", 10).await;
    assert_eq!(first.time_zone, "UTC");
    assert!(first.rule.contains("deadline order"), "{}", first.rule);
    let why: BTreeMap<&str, (i32, &str)> = first
        .unscheduled
        .iter()
        .map(|u| (u.task_id.as_str(), (u.reason, u.detail.as_str())))
        .collect();
    assert_eq!(why.len(), 2, "{:#?}", first.unscheduled);
    let (reason, detail) = why[impossible.as_str()];
    assert_eq!(
        reason,
        UnscheduledReason::NotEnoughTimeBeforeDeadline as i32,
        "{detail}"
    );
    assert!(
        detail.contains("240 min") && detail.contains("120 min"),
        "{detail}"
    );
    let (reason, detail) = why[marathon.as_str()];
    assert_eq!(
        reason,
        UnscheduledReason::BlockLongerThanAnyWindow as i32,
        "{detail}"
    );
    assert!(detail.contains("min_chunk_minutes"), "{detail}");
    assert_eq!(first.moved, 0);
    assert_eq!(first.kept, 0);
    assert_eq!(first.added as usize, first.placements.len());

    // The report first (deadline order), all inside working hours, clear of
    // busy time by the buffer, blocks in order, nothing of Bob's.
    let busy = [
        (t("2026-12-07T12:00:00Z"), t("2026-12-07T13:00:00Z")),
        (t("2026-12-07T14:00:00Z"), t("2026-12-07T15:00:00Z")),
    ];
    type Spans = Vec<(DateTime<Utc>, DateTime<Utc>)>;
    let mut by_task: BTreeMap<&str, Spans> = BTreeMap::new();
    for p in &first.placements {
        let (s, e) = (at(&p.start_time), at(&p.end_time));
        assert!(s >= t("2026-12-07T08:00:00Z"), "never in the past");
        assert!(s.format("%H:%M").to_string().as_str() >= "09:00", "{s}");
        assert!(
            e.format("%H:%M").to_string().as_str() <= "17:00" && s.date_naive() == e.date_naive()
        );
        for (bs, be) in busy {
            assert!(
                e + Duration::minutes(10) <= bs || s >= be + Duration::minutes(10),
                "{s}-{e} against {bs}-{be}"
            );
        }
        assert!(!p.reason.is_empty());
        assert!(!p.event_id.is_empty());
        by_task.entry(p.task_id.as_str()).or_default().push((s, e));
    }
    assert_eq!(by_task.len(), 2, "the report and the talk: {by_task:?}");
    assert!(!by_task.contains_key(impossible.as_str()));
    assert!(
        !by_task.contains_key(marathon.as_str()),
        "its first block failed, so nothing after it"
    );
    let report_blocks = &by_task[report.as_str()];
    assert_eq!(
        report_blocks[0].0,
        t("2026-12-07T09:00:00Z"),
        "earliest deadline first, at the start of the day"
    );
    assert!(
        report_blocks
            .iter()
            .all(|b| b.1 <= t("2026-12-08T17:00:00Z"))
    );
    assert!(
        by_task[talk.as_str()]
            .iter()
            .all(|b| b.0 >= t("2026-12-09T09:00:00Z")),
        "after its earliest start"
    );
    for blocks in by_task.values() {
        assert!(
            blocks.windows(2).all(|w| w[0].1 <= w[1].0),
            "blocks in order"
        );
    }
    let first_reason = &first
        .placements
        .iter()
        .find(|p| p.task_id == report)
        .expect("report placement")
        .reason;
    assert!(
        first_reason.contains("deadline order") && first_reason.contains("high priority"),
        "{first_reason}"
    );

    // They are focus-block events of their task and block.
    let blocks = list_all(
        &mut cal,
        "alice",
        "2026-12-07T00:00:00Z",
        "2026-12-22T00:00:00Z",
        EventKind::FocusBlock,
        50,
    )
    .await;
    assert_eq!(blocks.len(), first.placements.len());
    assert!(
        blocks
            .iter()
            .all(|b| !b.task_id.is_empty() && !b.block_id.is_empty())
    );
    assert!(
        blocks.iter().any(|b| b.title.contains("Quarterly report")),
        "{blocks:?}"
    );

    // The same call again changes nothing.
    let again = schedule(server, "alice", 10).await;
    assert_eq!((again.added, again.moved), (0, 0));
    assert_eq!(again.kept as usize, first.placements.len());

    // A new meeting over the report's second block: only that one moves.
    let second = first
        .placements
        .iter()
        .filter(|p| p.task_id == report)
        .nth(1)
        .expect("second block");
    let (s, _) = (at(&second.start_time), at(&second.end_time));
    create(
        &mut cal,
        "alice",
        timed(
            "Customer call",
            &(s + Duration::minutes(30)).to_rfc3339(),
            &(s + Duration::minutes(60)).to_rfc3339(),
        ),
    )
    .await;
    let third = schedule(server, "alice", 10).await;
    assert_eq!(third.moved, 1, "{:#?}", third.placements);
    assert_eq!(third.added, 0);
    assert_eq!(third.kept as usize, first.placements.len() - 1);
    let moved = third
        .placements
        .iter()
        .find(|p| p.change == PlacementChange::Moved as i32)
        .expect("moved");
    assert_eq!(moved.block_id, second.block_id);
    assert_eq!(moved.event_id, second.event_id, "the same event moves");
    assert_eq!(at(&moved.previous_start_time), s);
    assert!(moved.reason.contains("Customer call"), "{}", moved.reason);
    assert!(
        at(&moved.end_time) <= t("2026-12-08T17:00:00Z"),
        "still before the deadline"
    );
    let event = cal
        .get_event(authed(
            "alice",
            GetEventRequest {
                id: moved.event_id.clone(),
            },
        ))
        .await
        .expect("moved event")
        .into_inner()
        .event
        .expect("event");
    assert_eq!(at(&event.start_time), at(&moved.start_time));
    assert_eq!(event.sequence, 1, "a moved block bumps its sequence");
    assert_eq!(event.kind, EventKind::FocusBlock as i32);

    // Bob's schedule holds his own task only.
    let bobs = schedule(server, "bob", 0).await;
    assert_eq!(bobs.placements.len(), 1);
    assert!(bobs.placements[0].task_title.contains("Bob"));
}

async fn start_at(dir: tempfile::TempDir, cfg: focusforge_server::Config, at: &str) -> Server {
    Server::start_with_clock(dir, cfg, Arc::new(ManualClock::new(t(at)))).await
}

#[tokio::test]
async fn auto_schedule_explains_and_reschedules_minimally() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir);
    let server = start_at(dir, cfg, "2026-12-07T08:00:00Z").await;
    schedules_and_reschedules(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn auto_schedule_explains_and_reschedules_minimally_on_mongodb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.mongodb.uri = Some(crate::backends::mongo_uri());
    cfg.mongodb.database = format!("sched_{}", nanos());
    let server = start_at(dir, cfg, "2026-12-07T08:00:00Z").await;
    schedules_and_reschedules(&server).await;
    server.stop().await;
}

/// `GET path` on the gateway over HTTP/1.1.
pub(crate) async fn get(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let mut req = Request::get(format!("http://{}{path}", server.addr));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = send(
        server.addr,
        req.body(Full::new(Bytes::new())).expect("request"),
        Http::V1,
    )
    .await;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// What the independent parser (Python `icalendar`) reads in a feed.
fn parse_independently(ics: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("feed.ics");
    std::fs::write(&path, ics).expect("write");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ics_check.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 (with icalendar; scripts/test installs it)");
    assert!(
        out.status.success(),
        "the independent parser refused the feed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test]
async fn the_feed_serves_valid_icalendar_with_its_token_only() {
    let server = Server::start().await;
    set_zone(&server, "alice", "America/New_York").await;
    let mut cal = server.calendar().await;
    let weekly = create(
        &mut cal,
        "alice",
        Event {
            title: "Review; planning, and \\ notes".into(),
            description: format!("Agenda:\n{}", "a long line of text ".repeat(12)),
            rrule: "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=8".into(),
            exdates: vec![ts("2026-11-04T15:00:00Z").expect("ts")],
            ..timed("", "2026-10-26T14:00:00Z", "2026-10-26T15:00:00Z")
        },
    )
    .await;
    create(
        &mut cal,
        "alice",
        Event {
            title: "Holiday".into(),
            all_day: true,
            start_date: "2026-11-26".into(),
            transparency: Transparency::Free as i32,
            ..Default::default()
        },
    )
    .await;

    let feed = cal
        .get_feed(authed("alice", GetFeedRequest {}))
        .await
        .expect("feed")
        .into_inner();
    assert!(
        feed.path.starts_with("/calendar/v1/feed.ics?token="),
        "{}",
        feed.path
    );
    let again = cal
        .get_feed(authed("alice", GetFeedRequest {}))
        .await
        .expect("feed")
        .into_inner();
    assert_eq!(again.path, feed.path, "the same URL until it is rotated");

    let (status, headers, body) = get(&server, &feed.path, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/calendar")
    );
    let etag = headers["etag"].to_str().expect("etag").to_owned();
    let parsed = parse_independently(&body);
    assert_eq!(parsed["problems"], json!([]), "{parsed:#}");
    assert_eq!(parsed["version"], "2.0");
    assert_eq!(parsed["timezones"], json!(["America/New_York"]));
    let events = parsed["events"].as_array().expect("events");
    assert_eq!(events.len(), 2);
    let review = events
        .iter()
        .find(|e| e["uid"] == weekly.uid.as_str())
        .expect("the weekly event by its UID");
    assert_eq!(
        review["summary"], "Review; planning, and \\ notes",
        "escaped and read back"
    );
    assert!(
        review["description"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Agenda:\n")
    );
    assert_eq!(review["tzid"], "America/New_York");
    assert_eq!(review["start_utc"], "2026-10-26T14:00:00+00:00");
    assert_eq!(review["rrule"], "FREQ=WEEKLY;COUNT=8;BYDAY=MO,WE");
    assert_eq!(review["exdates"], json!(["2026-11-04T15:00:00+00:00"]));
    assert_eq!(review["sequence"], 0);
    let holiday = events
        .iter()
        .find(|e| e["all_day"] == true)
        .expect("all-day");
    assert_eq!(holiday["start_date"], "2026-11-26");
    assert_eq!(holiday["transp"], "TRANSPARENT");

    // Unchanged: 304, and the body is byte-identical.
    let (status, _, empty) = get(&server, &feed.path, &[("if-none-match", &etag)]).await;
    assert_eq!(status, 304);
    assert!(empty.is_empty());
    let (_, _, same) = get(&server, &feed.path, &[]).await;
    assert_eq!(same, body);

    // A change bumps SEQUENCE and the ETag.
    cal.update_event(authed(
        "alice",
        UpdateEventRequest {
            event: Some(Event {
                id: weekly.id.clone(),
                start_time: ts("2026-10-26T14:30:00Z"),
                end_time: ts("2026-10-26T15:30:00Z"),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["start_time".into(), "end_time".into()],
            }),
            expected_version: 0,
        },
    ))
    .await
    .expect("move");
    let (status, headers, body) = get(&server, &feed.path, &[("if-none-match", &etag)]).await;
    assert_eq!(status, 200);
    assert_ne!(headers["etag"].to_str().unwrap_or_default(), etag);
    let parsed = parse_independently(&body);
    let review = parsed["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["uid"] == weekly.uid.as_str()))
        .expect("still there under its UID");
    assert_eq!(review["sequence"], 1);

    // A wrong token, someone else's token, a rotated and a revoked one: 404.
    let wrong = feed.path.replace("token=", "token=x");
    assert_eq!(get(&server, &wrong, &[]).await.0, 404);
    assert_eq!(get(&server, "/calendar/v1/feed.ics", &[]).await.0, 404);
    let bob = cal
        .get_feed(authed("bob", GetFeedRequest {}))
        .await
        .expect("bob's feed")
        .into_inner();
    let (_, _, bobs) = get(&server, &bob.path, &[]).await;
    assert!(
        !bobs.contains(&weekly.uid),
        "bob's feed holds none of alice's events"
    );
    let rotated = cal
        .revoke_feed(authed("alice", RevokeFeedRequest { rotate: true }))
        .await
        .expect("rotate")
        .into_inner()
        .feed
        .expect("new feed");
    assert_ne!(rotated.path, feed.path);
    assert_eq!(
        get(&server, &feed.path, &[]).await.0,
        404,
        "the old URL is dead"
    );
    assert_eq!(get(&server, &rotated.path, &[]).await.0, 200);
    cal.revoke_feed(authed("alice", RevokeFeedRequest { rotate: false }))
        .await
        .expect("revoke");
    assert_eq!(get(&server, &rotated.path, &[]).await.0, 404, "revoked");

    // The export RPC is the same calendar.
    let export = cal
        .export_calendar(authed(
            "alice",
            focusforge_proto::calendar::v1::ExportCalendarRequest {},
        ))
        .await
        .expect("export")
        .into_inner();
    assert!(export.ics.contains(&weekly.uid));
    server.stop().await;
}

const OUTLOOK_ICS: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//Calendar//EN\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:weekly-1@example.com\r\nDTSTAMP:20261101T000000Z\r\nDTSTART;TZID=Europe/Paris:20261102T100000\r\nDTEND;TZID=Europe/Paris:20261102T110000\r\nRRULE:FREQ=WEEKLY;COUNT=4\r\nEXDATE;TZID=Europe/Paris:20261109T100000\r\nSUMMARY:Team sync\\, weekly\r\nDESCRIPTION:Room 4\\nBring notes\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:Reminder\r\nEND:VALARM\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:trip@example.com\r\nDTSTAMP:20261101T000000Z\r\nDTSTART;VALUE=DATE:20261120\r\nDTEND;VALUE=DATE:20261122\r\nSUMMARY:Trip\r\nTRANSP:TRANSPARENT\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

#[tokio::test]
async fn an_ics_file_imports_with_recurrence_and_bad_ones_say_where() {
    let server = Server::start().await;
    let mut cal = server.calendar().await;
    let r = cal
        .import_calendar(authed(
            "alice",
            ImportCalendarRequest {
                ics: OUTLOOK_ICS.into(),
            },
        ))
        .await
        .expect("import")
        .into_inner();
    assert_eq!((r.created, r.updated), (2, 0));
    let occ = list_all(
        &mut cal,
        "alice",
        "2026-11-01T00:00:00Z",
        "2026-12-31T00:00:00Z",
        EventKind::Unspecified,
        100,
    )
    .await;
    let sync: Vec<_> = occ
        .iter()
        .filter(|o| o.title == "Team sync, weekly")
        .collect();
    assert_eq!(sync.len(), 3, "four weekly, less the excluded one");
    assert!(
        sync.iter()
            .all(|o| at(&o.start_time).format("%H:%M").to_string() == "09:00"),
        "10:00 Paris"
    );
    assert!(
        sync.iter()
            .all(|o| o.source == EventSource::Imported as i32)
    );
    let trip = occ.iter().find(|o| o.title == "Trip").expect("trip");
    assert!(trip.all_day);
    assert_eq!(trip.transparency, Transparency::Free as i32);
    let e = cal
        .get_event(authed(
            "alice",
            GetEventRequest {
                id: sync[0].event_id.clone(),
            },
        ))
        .await
        .expect("event")
        .into_inner()
        .event
        .expect("event");
    assert_eq!(
        e.uid, "weekly-1@example.com",
        "an imported event keeps its UID"
    );
    assert_eq!(e.description, "Room 4\nBring notes");

    // The same file again updates rather than duplicates.
    let r = cal
        .import_calendar(authed(
            "alice",
            ImportCalendarRequest {
                ics: OUTLOOK_ICS.into(),
            },
        ))
        .await
        .expect("import again")
        .into_inner();
    assert_eq!((r.created, r.updated), (0, 2));

    for (bad, line, reason) in [
        (
            OUTLOOK_ICS.replace(
                "DTSTART;TZID=Europe/Paris:20261102T100000",
                "DTSTART;TZID=Europe/Paris:2026-11-02",
            ),
            15,
            "DATE-TIME",
        ),
        (
            OUTLOOK_ICS.replace("RRULE:FREQ=WEEKLY;COUNT=4", "RRULE:FREQ=FORTNIGHTLY"),
            15,
            "rrule",
        ),
        (
            OUTLOOK_ICS.replace(
                "TZID=Europe/Paris:20261102T100000",
                "TZID=Pacific Standard Time:20261102T100000",
            ),
            15,
            "unknown time zone",
        ),
        (
            OUTLOOK_ICS.replace("END:VALARM\r\n", ""),
            25,
            "closes BEGIN:VALARM",
        ),
    ] {
        let e = cal
            .import_calendar(authed("alice", ImportCalendarRequest { ics: bad }))
            .await
            .expect_err(reason);
        let msg = e
            .get_details_bad_request()
            .map(|b| {
                b.field_violations
                    .into_iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        assert!(msg.starts_with(&format!("ics: line {line}: ")), "{msg}");
        assert!(msg.contains(reason), "{msg}");
    }
    let after = list_all(
        &mut cal,
        "alice",
        "2026-11-01T00:00:00Z",
        "2026-12-31T00:00:00Z",
        EventKind::Unspecified,
        100,
    )
    .await;
    assert_eq!(after.len(), occ.len(), "a refused file imports nothing");
    server.stop().await;
}

/// A local server that speaks the Google Calendar API v3 and OAuth 2 token
/// formats (the requests and responses the published reference gives) over
/// an in-memory calendar.
#[derive(Default)]
struct FakeGoogle {
    challenge: String,
    refresh_token: String,
    access: HashSet<String>,
    issued: u32,
    refreshes: u32,
    expires_in: i64,
    /// id -> (event JSON, change number)
    events: BTreeMap<String, (Value, u64)>,
    changes: u64,
    /// Sync tokens older than this answer 410 Gone.
    oldest_valid: u64,
    listings: Vec<String>,
    inserted: Vec<Value>,
    patched: Vec<String>,
    deleted: Vec<String>,
}

impl FakeGoogle {
    fn put(&mut self, id: &str, event: Value) {
        self.changes += 1;
        let mut event = event;
        event["id"] = json!(id);
        self.events.insert(id.into(), (event, self.changes));
    }

    fn cancel(&mut self, id: &str) {
        self.changes += 1;
        if let Some((e, n)) = self.events.get_mut(id) {
            e["status"] = json!("cancelled");
            *n = self.changes;
        }
    }
}

pub(crate) fn form(body: &[u8]) -> BTreeMap<String, String> {
    let dec = |s: &str| {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                out.push(
                    u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00"), 16)
                        .unwrap_or(0),
                );
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

pub(crate) fn reply(status: u16, body: Value) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    })));
    *r.status_mut() = http::StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn google_handle(
    fake: Arc<Mutex<FakeGoogle>>,
    req: Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = form(parts.uri.query().unwrap_or_default().as_bytes());
    let mut g = fake.lock().expect("fake");
    if path == "/token" {
        let f = form(&body);
        let ok_client = f.get("client_id").map(String::as_str) == Some("cid")
            && f.get("client_secret").map(String::as_str) == Some("csecret");
        if !ok_client {
            return reply(401, json!({"error": "invalid_client"}));
        }
        match f.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                let challenge = {
                    use sha2_digest::digest;
                    digest(&verifier)
                };
                if f.get("code").map(String::as_str) != Some("good-code")
                    || challenge != g.challenge
                {
                    return reply(
                        400,
                        json!({"error": "invalid_grant", "error_description": "Bad code or verifier."}),
                    );
                }
            }
            Some("refresh_token") => {
                if f.get("refresh_token") != Some(&g.refresh_token) {
                    return reply(400, json!({"error": "invalid_grant"}));
                }
                g.refreshes += 1;
            }
            _ => return reply(400, json!({"error": "unsupported_grant_type"})),
        }
        g.issued += 1;
        let token = format!("access-{}", g.issued);
        g.access.insert(token.clone());
        let mut out = json!({"access_token": token, "expires_in": g.expires_in, "token_type": "Bearer", "scope": "https://www.googleapis.com/auth/calendar.events"});
        if f.get("grant_type").map(String::as_str) == Some("authorization_code") {
            out["refresh_token"] = json!(g.refresh_token.clone());
        }
        return reply(200, out);
    }
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    if !g.access.contains(&bearer) {
        return reply(
            401,
            json!({"error": {"code": 401, "message": "Invalid Credentials"}}),
        );
    }
    let events = "/calendar/v3/calendars/primary/events";
    if path == "/calendar/v3/freeBusy" {
        let busy: Vec<Value> = g
            .events
            .values()
            .filter(|(e, _)| e["status"] != "cancelled" && e["transparency"] != "transparent")
            .map(|(e, _)| json!({"start": e["start"]["dateTime"], "end": e["end"]["dateTime"]}))
            .collect();
        return reply(
            200,
            json!({"kind": "calendar#freeBusy", "calendars": {"primary": {"busy": busy}}}),
        );
    }
    if path == events && parts.method == http::Method::GET {
        g.listings
            .push(parts.uri.query().unwrap_or_default().to_owned());
        assert_eq!(query.get("singleEvents").map(String::as_str), Some("true"));
        let since = match query.get("syncToken") {
            Some(tok) => {
                assert!(
                    !query.contains_key("timeMin"),
                    "syncToken cannot go with timeMin"
                );
                let n: u64 = tok.trim_start_matches("sync-").parse().unwrap_or(0);
                if n < g.oldest_valid {
                    return reply(
                        410,
                        json!({"error": {"code": 410, "message": "Sync token is no longer valid, a full sync is required.", "errors": [{"reason": "fullSyncRequired"}]}}),
                    );
                }
                Some(n)
            }
            None => None,
        };
        let items: Vec<Value> = g
            .events
            .values()
            .filter(|(e, n)| match since {
                Some(s) => *n > s,
                None => e["status"] != "cancelled",
            })
            .map(|(e, _)| e.clone())
            .collect();
        // One item per page, to walk the pages.
        let offset: usize = query
            .get("pageToken")
            .and_then(|p| p.trim_start_matches("page-").parse().ok())
            .unwrap_or(0);
        let mut out = json!({"kind": "calendar#events", "items": items.get(offset..offset + 1).unwrap_or_default()});
        if offset + 1 < items.len() {
            out["nextPageToken"] = json!(format!("page-{}", offset + 1));
        } else {
            out["nextSyncToken"] = json!(format!("sync-{}", g.changes));
        }
        return reply(200, out);
    }
    if path == events && parts.method == http::Method::POST {
        let mut e: Value = serde_json::from_slice(&body).expect("event json");
        let id = format!("ff{}", g.inserted.len() + 1);
        g.inserted.push(e.clone());
        e["status"] = json!("confirmed");
        g.put(&id, e.clone());
        e["id"] = json!(id);
        return reply(200, e);
    }
    if let Some(id) = path.strip_prefix(&format!("{events}/")) {
        let id = id.to_owned();
        if parts.method == http::Method::PATCH {
            let patch: Value = serde_json::from_slice(&body).expect("patch json");
            let Some((mut e, _)) = g.events.get(&id).cloned() else {
                return reply(404, json!({"error": {"code": 404, "message": "Not Found"}}));
            };
            for (k, v) in patch.as_object().cloned().unwrap_or_default() {
                e[k] = v;
            }
            g.patched.push(id.clone());
            g.put(&id, e.clone());
            return reply(200, e);
        }
        if parts.method == http::Method::DELETE {
            g.deleted.push(id.clone());
            g.cancel(&id);
            return reply(204, Value::Null);
        }
    }
    reply(
        404,
        json!({"error": {"code": 404, "message": format!("no route {path}")}}),
    )
}

pub(crate) mod sha2_digest {
    /// PKCE S256: base64url(SHA-256(verifier)), computed with Python's
    /// hashlib so the check does not share the server's code.
    pub fn digest(verifier: &str) -> String {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import base64,hashlib,sys; print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).decode().rstrip('='))",
                verifier,
            ])
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

async fn fake_google(fake: Arc<Mutex<FakeGoogle>>) -> String {
    serve(move |req| google_handle(fake.clone(), req)).await
}

/// Serves `handle` over HTTP/1.1 on a loopback port; returns its base URL.
pub(crate) async fn serve<F, Fut>(handle: F) -> String
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let fut = handle(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn google_event(summary: &str, start: &str, end: &str, transparent: bool) -> Value {
    let mut e = json!({
        "status": "confirmed",
        "summary": summary,
        "start": {"dateTime": start, "timeZone": "UTC"},
        "end": {"dateTime": end, "timeZone": "UTC"},
    });
    if transparent {
        e["transparency"] = json!("transparent");
    }
    e
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                return true;
            }
        }
    }
    false
}

#[tokio::test]
async fn google_calendar_syncs_both_ways() {
    let fake = Arc::new(Mutex::new(FakeGoogle {
        refresh_token: "refresh-secret-4f1c9a".into(),
        expires_in: 3600,
        ..Default::default()
    }));
    {
        let mut g = fake.lock().expect("fake");
        g.put(
            "offsite",
            google_event(
                "Team offsite",
                "2026-12-07T13:00:00Z",
                "2026-12-07T15:00:00Z",
                false,
            ),
        );
        g.put(
            "lunch",
            google_event(
                "Maybe lunch",
                "2026-12-07T12:00:00Z",
                "2026-12-07T13:00:00Z",
                true,
            ),
        );
        g.put(
            "gone",
            google_event(
                "Cancelled thing",
                "2026-12-07T09:00:00Z",
                "2026-12-07T10:00:00Z",
                false,
            ),
        );
        g.cancel("gone");
    }
    let base = fake_google(fake.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let settings: toml::Table = toml::from_str(&format!(
        r#"
        public_url = "https://focus.example.com"
        [google]
        client_id = "cid"
        client_secret = "csecret"
        redirect_uri = "https://focus.example.com/calendar/v1/google/callback"
        token_key = "{key}"
        auth_url = "{base}/auth"
        token_url = "{base}/token"
        api_url = "{base}"
        "#
    ))
    .expect("toml");
    cfg.service.insert("calendar".into(), settings);
    let clock = Arc::new(ManualClock::new(t("2026-12-07T08:00:00Z")));
    let server = Server::start_with_clock(dir, cfg, clock.clone()).await;
    let mut cal = server.calendar().await;

    let status = cal
        .get_google_status(authed("alice", GetGoogleStatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    assert!(status.configured && !status.linked);
    let e = cal
        .sync_google(authed("alice", SyncGoogleRequest {}))
        .await
        .expect_err("not linked");
    assert_eq!(e.code(), Code::FailedPrecondition);

    // Link: the authorize URL carries the PKCE challenge and the state.
    let begin = cal
        .begin_google_link(authed("alice", BeginGoogleLinkRequest::default()))
        .await
        .expect("begin")
        .into_inner();
    let url = reqwest_like_query(&begin.authorize_url);
    assert!(begin.authorize_url.starts_with(&format!("{base}/auth?")));
    assert_eq!(url["client_id"], "cid");
    assert_eq!(url["code_challenge_method"], "S256");
    assert_eq!(url["access_type"], "offline");
    assert_eq!(url["state"], begin.state);
    assert_eq!(
        url["redirect_uri"],
        "https://focus.example.com/calendar/v1/google/callback"
    );
    fake.lock().expect("fake").challenge = url["code_challenge"].clone();
    let e = cal
        .complete_google_link(authed(
            "alice",
            CompleteGoogleLinkRequest {
                code: "good-code".into(),
                state: "someone-elses-state".into(),
            },
        ))
        .await
        .expect_err("wrong state");
    assert!(fields(&e).contains(&"state".to_owned()));
    let e = cal
        .complete_google_link(authed(
            "alice",
            CompleteGoogleLinkRequest {
                code: "bad-code".into(),
                state: begin.state.clone(),
            },
        ))
        .await
        .expect_err("Google refuses the code");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // Google redirects the browser to the gateway's callback.
    let (code, _, text) = get(
        &server,
        &format!(
            "/calendar/v1/google/callback?code=good-code&state={}",
            begin.state
        ),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let status = cal
        .get_google_status(authed("alice", GetGoogleStatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    assert!(status.linked);
    assert_eq!(status.calendar_id, "primary");
    assert!(
        !files_contain(server.dir.path(), b"refresh-secret-4f1c9a"),
        "the refresh token is sealed at rest"
    );
    assert!(
        !files_contain(server.dir.path(), b"access-1"),
        "so is the access token"
    );

    // First sync: a full listing of two live events over two pages.
    let r = cal
        .sync_google(authed("alice", SyncGoogleRequest {}))
        .await
        .expect("sync")
        .into_inner();
    assert!(r.full_sync);
    assert_eq!((r.pulled, r.removed, r.pushed), (2, 0, 0));
    assert!(fake.lock().expect("fake").listings[0].contains("timeMin="));
    let fb = cal
        .get_free_busy(authed(
            "alice",
            GetFreeBusyRequest {
                start_time: ts("2026-12-07T00:00:00Z"),
                end_time: ts("2026-12-08T00:00:00Z"),
                include_google: false,
            },
        ))
        .await
        .expect("free busy")
        .into_inner();
    let busy: Vec<_> = fb
        .busy
        .iter()
        .map(|i| (at(&i.start_time), at(&i.end_time)))
        .collect();
    assert_eq!(
        busy,
        vec![(t("2026-12-07T13:00:00Z"), t("2026-12-07T15:00:00Z"))],
        "the offsite blocks time, the transparent lunch does not"
    );

    // Auto-scheduling avoids Google's busy time; the blocks go to Google.
    task(
        &server,
        "alice",
        CreateTaskRequest {
            title: "Write the essay".into(),
            blocks: vec![
                block("Draft", 120, 0),
                block("Edit", 120, 1),
                block("Polish", 120, 2),
            ],
            ..Default::default()
        },
    )
    .await;
    let placed = schedule(&server, "alice", 0).await;
    let spans: Vec<_> = placed
        .placements
        .iter()
        .map(|p| (at(&p.start_time), at(&p.end_time)))
        .collect();
    assert_eq!(
        spans,
        vec![
            (t("2026-12-07T09:00:00Z"), t("2026-12-07T11:00:00Z")),
            (t("2026-12-07T11:00:00Z"), t("2026-12-07T13:00:00Z")),
            (t("2026-12-07T15:00:00Z"), t("2026-12-07T17:00:00Z")),
        ]
    );
    let r = cal
        .sync_google(authed("alice", SyncGoogleRequest {}))
        .await
        .expect("sync")
        .into_inner();
    assert!(!r.full_sync);
    assert_eq!(r.pushed, 3);
    assert_eq!(r.pulled, 0, "nothing new in Google");
    {
        let g = fake.lock().expect("fake");
        assert_eq!(g.inserted.len(), 3);
        assert!(
            g.inserted
                .iter()
                .all(|e| e["extendedProperties"]["private"]["focusforge_event_id"].is_string())
        );
        assert_eq!(g.inserted[0]["start"]["dateTime"], "2026-12-07T09:00:00Z");
        assert!(
            g.listings[..2].iter().all(|l| l.contains("timeMin=")),
            "{:?}",
            g.listings
        );
        assert!(
            g.listings[2].contains("syncToken=sync-"),
            "{:?}",
            g.listings
        );
    }

    // Incremental: the offsite is cancelled and a dentist appointment added;
    // our own blocks come back in the listing and are not taken for busy time.
    {
        let mut g = fake.lock().expect("fake");
        g.cancel("offsite");
        g.put(
            "dentist",
            google_event(
                "Dentist",
                "2026-12-08T10:00:00Z",
                "2026-12-08T11:00:00Z",
                false,
            ),
        );
    }
    // Google's own free/busy sees the dentist before any sync does.
    let tuesday = |include_google| GetFreeBusyRequest {
        start_time: ts("2026-12-08T00:00:00Z"),
        end_time: ts("2026-12-09T00:00:00Z"),
        include_google,
    };
    let synced = cal
        .get_free_busy(authed("alice", tuesday(false)))
        .await
        .expect("free busy")
        .into_inner();
    assert!(synced.busy.is_empty(), "not synced yet: {synced:?}");
    let live = cal
        .get_free_busy(authed("alice", tuesday(true)))
        .await
        .expect("free busy with Google")
        .into_inner();
    let spans: Vec<_> = live
        .busy
        .iter()
        .map(|i| (at(&i.start_time), at(&i.end_time)))
        .collect();
    assert_eq!(
        spans,
        vec![(t("2026-12-08T10:00:00Z"), t("2026-12-08T11:00:00Z"))]
    );
    let r = cal
        .sync_google(authed("alice", SyncGoogleRequest {}))
        .await
        .expect("sync")
        .into_inner();
    assert!(!r.full_sync);
    assert_eq!((r.pulled, r.removed, r.pushed), (1, 1, 0));

    // A conflicting new event moves one block (the last, into the time the
    // cancelled offsite freed); the move is patched in Google.
    create(
        &mut cal,
        "alice",
        timed("Doctor", "2026-12-07T15:30:00Z", "2026-12-07T16:00:00Z"),
    )
    .await;
    let moved = schedule(&server, "alice", 0).await;
    assert_eq!(moved.moved, 1, "{:#?}", moved.placements);
    let last = moved
        .placements
        .iter()
        .find(|p| p.change == PlacementChange::Moved as i32)
        .expect("moved");
    assert_eq!(
        (at(&last.start_time), at(&last.end_time)),
        (t("2026-12-07T13:00:00Z"), t("2026-12-07T15:00:00Z"))
    );
    // Two hours later the access token has expired: the sync refreshes it.
    clock.advance(Duration::hours(2));
    fake.lock().expect("fake").oldest_valid = u64::MAX;
    let r = cal
        .sync_google(authed("alice", SyncGoogleRequest {}))
        .await
        .expect("sync after 410")
        .into_inner();
    assert!(r.full_sync, "410 Gone starts over");
    assert_eq!(r.pushed, 1);
    {
        let g = fake.lock().expect("fake");
        assert_eq!(g.refreshes, 1, "refreshed once");
        assert_eq!(g.patched.len(), 1);
    }
    // After the full resync: lunch and the dentist, not the cancelled offsite.
    let status = cal
        .get_google_status(authed("alice", GetGoogleStatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.busy_events, 2);
    assert!(status.last_error.is_empty(), "{}", status.last_error);
    assert_eq!(at(&status.last_sync_time), t("2026-12-07T10:00:00Z"));

    // Bob has no link of his own.
    let bob = cal
        .get_google_status(authed("bob", GetGoogleStatusRequest {}))
        .await
        .expect("bob")
        .into_inner();
    assert!(!bob.linked);

    cal.unlink_google(authed("alice", UnlinkGoogleRequest {}))
        .await
        .expect("unlink");
    let status = cal
        .get_google_status(authed("alice", GetGoogleStatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    assert!(!status.linked);
    assert_eq!(status.busy_events, 0);
    server.stop().await;
}

fn reqwest_like_query(url: &str) -> BTreeMap<String, String> {
    form(
        url.split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default()
            .as_bytes(),
    )
}

#[tokio::test]
async fn without_google_credentials_the_rest_works() {
    let server = Server::start().await;
    let mut cal = server.calendar().await;
    let status = cal
        .get_google_status(authed("alice", GetGoogleStatusRequest {}))
        .await
        .expect("status")
        .into_inner();
    assert!(!status.configured);
    let e = cal
        .begin_google_link(authed("alice", BeginGoogleLinkRequest::default()))
        .await
        .expect_err("unconfigured");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("not configured"), "{}", e.message());
    let (code, _, _) = get(&server, "/calendar/v1/google/callback?code=x&state=y", &[]).await;
    assert_eq!(code, 404);
    create(
        &mut cal,
        "alice",
        timed(
            "Still works",
            "2026-12-07T09:00:00Z",
            "2026-12-07T10:00:00Z",
        ),
    )
    .await;
    server.stop().await;
}
