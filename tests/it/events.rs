//! The event stream through the gateway: order, resume after a reconnect,
//! per-user isolation, retention, gRPC-web, and events a second process
//! sharing the data directory appends.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use chrono::Utc;
use focusforge_core::ManualClock;
use focusforge_proto::events::v1::event_service_client::EventServiceClient;
use focusforge_proto::events::v1::{
    Event, EventType, SubscribeRequest, SubscribeResponse, subscribe_response::Kind,
};
use focusforge_proto::mood::v1::LogMoodRequest;
use focusforge_proto::tasks::v1::{
    CompleteTaskRequest, CreateTaskRequest, DeleteTaskRequest, StartTaskRequest, UpdateTaskRequest,
};
use http_body_util::{BodyExt, Full};
use prost::Message;
use prost_types::FieldMask;
use tonic::Code;
use tonic::Streaming;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::harness::{Http, Server, authed, config, send};

fn quick(dir: &tempfile::TempDir) -> focusforge_server::Config {
    let mut cfg = config(dir);
    cfg.events.heartbeat_secs = 1;
    cfg
}

async fn events(server: &Server) -> EventServiceClient<Channel> {
    EventServiceClient::new(server.channel().await)
}

async fn subscribe(server: &Server, user: &str, after: &str) -> Streaming<SubscribeResponse> {
    events(server)
        .await
        .subscribe(authed(
            user,
            SubscribeRequest {
                after_id: after.into(),
            },
        ))
        .await
        .expect("subscribe")
        .into_inner()
}

/// The next `n` events of a stream, skipping heartbeats.
/// The next `n` events the user's actions made: the background's job
/// endings and the live ticks, which interleave with them at times of
/// their own, are left out (see [`next_matching`]).
async fn next_events(stream: &mut Streaming<SubscribeResponse>, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = next_any(stream).await;
        if !matches!(e.r#type(), EventType::JobFinished | EventType::FocusTick) {
            out.push(e);
        }
    }
    out
}

/// The next event of any type.
async fn next_any(stream: &mut Streaming<SubscribeResponse>) -> Event {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event within 10 s")
            .expect("stream")
            .expect("open stream");
        match message.kind {
            Some(Kind::Event(e)) => return e,
            Some(Kind::Heartbeat(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The next event `keep` takes, skipping the others.
async fn next_matching(
    stream: &mut Streaming<SubscribeResponse>,
    keep: impl Fn(&Event) -> bool,
) -> Event {
    loop {
        let e = next_any(stream).await;
        if keep(&e) {
            return e;
        }
    }
}

fn kinds(events: &[Event]) -> Vec<EventType> {
    events.iter().map(|e| e.r#type()).collect()
}

fn task_id(e: &Event) -> &str {
    match &e.payload {
        Some(focusforge_proto::events::v1::event::Payload::Task(t)) => &t.task_id,
        other => panic!("not a task event: {other:?}"),
    }
}

#[tokio::test]
async fn events_arrive_in_order_resume_after_a_reconnect_and_stay_per_user() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = quick(&dir);
    let server = Server::start_in(dir, cfg).await;
    let mut alice = subscribe(&server, "alice", "").await;
    let mut bob = subscribe(&server, "bob", "").await;
    let mut tasks = server.tasks().await;
    let task = tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "Write the launch post".into(),
                estimated_minutes: 50,
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task");
    tasks
        .update_task(authed(
            "alice",
            UpdateTaskRequest {
                task: Some(focusforge_proto::tasks::v1::Task {
                    id: task.id.clone(),
                    title: "Write and publish the launch post".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["title".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("update");
    for _ in 0..2 {
        tasks
            .start_task(authed(
                "alice",
                StartTaskRequest {
                    id: task.id.clone(),
                },
            ))
            .await
            .expect("start");
    }
    server
        .mood()
        .await
        .log_mood(authed(
            "alice",
            LogMoodRequest {
                score: 4,
                ..Default::default()
            },
        ))
        .await
        .expect("mood");
    tasks
        .complete_task(authed(
            "alice",
            CompleteTaskRequest {
                id: task.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("complete");
    tasks
        .delete_task(authed(
            "alice",
            DeleteTaskRequest {
                id: task.id.clone(),
            },
        ))
        .await
        .expect("delete");

    // Until the deletion: the completion's points come with it.
    let mut all = Vec::new();
    while all
        .last()
        .is_none_or(|e: &Event| e.r#type() != EventType::TaskDeleted)
    {
        all.extend(next_events(&mut alice, 1).await);
    }
    let completed = all
        .iter()
        .position(|e| e.r#type() == EventType::TaskCompleted)
        .expect("completed");
    assert_eq!(
        all[completed + 1].r#type(),
        EventType::PointsAwarded,
        "the completion's points follow it: {:?}",
        kinds(&all)
    );
    let seen: Vec<Event> = all
        .iter()
        .filter(|e| {
            !matches!(
                e.r#type(),
                EventType::PointsAwarded | EventType::AchievementUnlocked
            )
        })
        .cloned()
        .collect();
    assert!(
        all.iter().any(|e| matches!(
            &e.payload,
            Some(focusforge_proto::events::v1::event::Payload::Achievement(a))
                if a.achievement_id == "first-task" && a.name == "First one done"
        )),
        "a first completed task unlocks an achievement: {:?}",
        kinds(&all)
    );
    assert_eq!(
        kinds(&seen),
        [
            EventType::TaskCreated,
            EventType::TaskUpdated,
            EventType::TaskStarted,
            EventType::MoodLogged,
            EventType::TaskCompleted,
            EventType::TaskDeleted,
        ],
        "in the order they happened; starting a started task is no event"
    );
    assert!(seen.iter().all(|e| e.time.is_some() && !e.id.is_empty()));
    assert_eq!(task_id(&seen[0]), task.id);
    match &seen[1].payload {
        Some(focusforge_proto::events::v1::event::Payload::Task(t)) => {
            assert_eq!(t.title, "Write and publish the launch post");
            assert_eq!(t.status, "TASK_STATUS_PENDING");
        }
        other => panic!("{other:?}"),
    }
    match &seen[3].payload {
        Some(focusforge_proto::events::v1::event::Payload::Mood(m)) => assert_eq!(m.score, 4),
        other => panic!("{other:?}"),
    }

    // Bob hears nothing of it: only heartbeats.
    for _ in 0..2 {
        let message = tokio::time::timeout(Duration::from_secs(5), bob.message())
            .await
            .expect("a heartbeat within 5 s")
            .expect("stream")
            .expect("open");
        assert!(
            matches!(message.kind, Some(Kind::Heartbeat(_))),
            "{message:?}"
        );
    }

    // A client that saw two events and reconnects gets the rest, once.
    drop(alice);
    let mut resumed = subscribe(&server, "alice", &all[1].id).await;
    let rest = next_events(&mut resumed, all.len() - 2).await;
    assert_eq!(
        rest.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        all[2..].iter().map(|e| e.id.as_str()).collect::<Vec<_>>()
    );
    // Bob resuming from alice's id sees none of hers.
    let mut theirs = subscribe(&server, "bob", &seen[0].id).await;
    let first = tokio::time::timeout(Duration::from_secs(5), theirs.message())
        .await
        .expect("a message")
        .expect("stream")
        .expect("open");
    assert!(matches!(first.kind, Some(Kind::Heartbeat(_))), "{first:?}");

    let mut client = events(&server).await;
    let no_token = client
        .subscribe(SubscribeRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(no_token.code(), Code::Unauthenticated);
    let bad = client
        .subscribe(authed(
            "alice",
            SubscribeRequest {
                after_id: "yesterday".into(),
            },
        ))
        .await
        .expect_err("bad id");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields: Vec<_> = bad
        .get_details_bad_request()
        .expect("details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["after_id"]);
}

#[tokio::test]
async fn a_resume_from_before_the_retention_is_out_of_range_naming_where_to_resume() {
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = quick(&dir);
    cfg.events.retention_secs = 3_600;
    cfg.sweep_interval_secs = 1;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let server = Server::start_with_clock(dir, cfg, clock.clone()).await;
    let mut tasks = server.tasks().await;
    let create = |title: &str| {
        authed(
            "alice",
            CreateTaskRequest {
                title: title.into(),
                ..Default::default()
            },
        )
    };
    let mut stream = subscribe(&server, "alice", "").await;
    tasks.create_task(create("old")).await.expect("create");
    let old = next_events(&mut stream, 1).await.remove(0);
    clock.advance(chrono::Duration::hours(2));
    tasks.create_task(create("new")).await.expect("create");
    let new = next_events(&mut stream, 1).await.remove(0);
    // The sweeper drops the old one.
    let mut client = events(&server).await;
    let mut refused = None;
    for _ in 0..100 {
        let before_old = format!("{}", old.id.parse::<i64>().expect("number") - 1);
        match client
            .subscribe(authed(
                "alice",
                SubscribeRequest {
                    after_id: before_old,
                },
            ))
            .await
        {
            Err(status) => {
                refused = Some(status);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let refused = refused.expect("refused once the old event is gone");
    assert_eq!(refused.code(), Code::OutOfRange);
    assert!(
        refused.message().contains(&format!("after_id {}", old.id)),
        "names where to resume: {}",
        refused.message()
    );
    let mut resumed = subscribe(&server, "alice", &old.id).await;
    let next = next_events(&mut resumed, 1).await.remove(0);
    assert_eq!(next.id, new.id, "the oldest kept comes next");
}

/// Reads gRPC-web frames off a response body as they arrive.
pub(crate) async fn web_messages(
    body: &mut hyper::body::Incoming,
    want: usize,
) -> Vec<SubscribeResponse> {
    let mut buf = bytes::BytesMut::new();
    let mut out = Vec::new();
    while out.len() < want {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a frame within 10 s")
            .expect("body open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < 5 + len {
                break;
            }
            let flag = buf[0];
            buf.advance(5);
            let data = buf.split_to(len);
            assert_eq!(flag & 0x80, 0, "no trailers while the stream is open");
            out.push(SubscribeResponse::decode(data.freeze()).expect("message"));
        }
    }
    out
}

#[tokio::test]
async fn browsers_subscribe_over_grpc_web() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = quick(&dir);
    let server = Server::start_in(dir, cfg).await;
    let mut tasks = server.tasks().await;
    let mut ids = Vec::new();
    for title in ["one", "two", "three"] {
        let t = tasks
            .create_task(authed(
                "alice",
                CreateTaskRequest {
                    title: title.into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create")
            .into_inner()
            .task
            .expect("task");
        ids.push(t.id);
    }
    let first = {
        let mut all = subscribe(&server, "alice", "0").await;
        next_events(&mut all, 1).await.remove(0)
    };
    let payload = SubscribeRequest {
        after_id: first.id.clone(),
    }
    .encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    let token = format!("Bearer {}", crate::harness::token("alice"));
    let req = http::Request::post(format!(
        "http://{}/focusforge.events.v1.EventService/Subscribe",
        server.addr
    ))
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .header("authorization", token)
    .body(Full::new(Bytes::from(framed)))
    .expect("request");
    let res = send(server.addr, req, Http::V1).await;
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    let got: Vec<_> = web_messages(&mut body, 2)
        .await
        .into_iter()
        .map(|m| match m.kind {
            Some(Kind::Event(e)) => task_id(&e).to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        ids[1..],
        "the events after the one seen, over HTTP/1.1"
    );
    // Then a heartbeat keeps the idle stream alive.
    let beat = web_messages(&mut body, 1).await;
    assert!(
        beat.iter()
            .any(|m| matches!(m.kind, Some(Kind::Heartbeat(_)))),
        "{beat:?}"
    );
}

#[tokio::test]
async fn events_a_second_process_appends_reach_this_ones_subscribers() {
    let dir = tempfile::tempdir().expect("dir");
    let mut events_only = quick(&dir);
    events_only.services = vec!["events".into()];
    let mut tasks_only = quick(&dir);
    tasks_only.services = vec!["tasks".into()];
    let placeholder = tempfile::tempdir().expect("dir");
    let path = dir.path().to_path_buf();
    let subscriber = Server::start_in(dir, events_only).await;
    tasks_only.data_dir = path;
    let writer = Server::start_in(placeholder, tasks_only).await;
    let mut stream = subscribe(&subscriber, "alice", "").await;
    let created = writer
        .tasks()
        .await
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "made by the other process".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task");
    let got = next_events(&mut stream, 1).await;
    assert_eq!(got[0].r#type(), EventType::TaskCreated);
    assert_eq!(task_id(&got[0]), created.id);
}

#[tokio::test]
async fn focus_sessions_and_points_are_events_down_to_the_timer_completing_a_session() {
    use focusforge_proto::events::v1::event::Payload;
    use focusforge_proto::focus::v1::{
        AbandonSessionRequest, PauseSessionRequest, ResumeSessionRequest, SessionKind,
        StartSessionRequest,
    };
    let dir = tempfile::tempdir().expect("dir");
    let cfg = quick(&dir);
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let server = Server::start_with_clock(dir, cfg, clock.clone()).await;
    let mut stream = subscribe(&server, "alice", "").await;
    let mut focus = server.focus().await;
    let start = |minutes: i32| {
        authed(
            "alice",
            StartSessionRequest {
                kind: SessionKind::Focus as i32,
                planned_minutes: minutes,
                ..Default::default()
            },
        )
    };
    let first = focus
        .start_session(start(25))
        .await
        .expect("start")
        .into_inner()
        .session
        .expect("session");
    clock.advance(chrono::Duration::minutes(5));
    focus
        .pause_session(authed(
            "alice",
            PauseSessionRequest {
                id: first.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("pause");
    focus
        .resume_session(authed(
            "alice",
            ResumeSessionRequest {
                id: first.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("resume");
    focus
        .abandon_session(authed(
            "alice",
            AbandonSessionRequest {
                id: first.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("abandon");
    let seen = next_events(&mut stream, 4).await;
    assert_eq!(
        kinds(&seen),
        [
            EventType::FocusStarted,
            EventType::FocusPaused,
            EventType::FocusResumed,
            EventType::FocusAbandoned,
        ]
    );
    match &seen[1].payload {
        Some(Payload::Focus(f)) => {
            assert_eq!(f.session_id, first.id);
            assert_eq!(f.state, "SESSION_STATE_PAUSED");
            assert_eq!(f.elapsed_seconds, 300, "five minutes focused");
            assert_eq!(f.remaining_seconds, 20 * 60);
        }
        other => panic!("{other:?}"),
    }

    // A session the timer completes: its completion and its points arrive
    // without any call of the user's.
    let second = focus
        .start_session(start(25))
        .await
        .expect("start")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(
        kinds(&next_events(&mut stream, 1).await),
        [EventType::FocusStarted]
    );
    clock.advance(chrono::Duration::minutes(26));
    let later = next_events(&mut stream, 2).await;
    assert_eq!(
        kinds(&later),
        [EventType::FocusCompleted, EventType::PointsAwarded],
        "{later:?}"
    );
    match (&later[0].payload, &later[1].payload) {
        (Some(Payload::Focus(f)), Some(Payload::Points(p))) => {
            assert_eq!(f.session_id, second.id);
            assert_eq!(f.state, "SESSION_STATE_COMPLETED");
            assert_eq!(f.elapsed_seconds, 25 * 60);
            assert!(p.points > 0, "{p:?}");
            assert_eq!(p.reason, "REASON_FOCUS_SESSION_COMPLETED");
            assert_eq!(p.balance, p.points, "the first points of the user");
        }
        other => panic!("{other:?}"),
    }
    // The timer's job that completed it ends on the stream too.
    let job = next_matching(&mut stream, |e| {
        matches!(&e.payload, Some(Payload::Job(j)) if j.kind == "focus.timer" && j.state == "JOB_STATE_SUCCEEDED")
    })
    .await;
    assert_eq!(job.r#type(), EventType::JobFinished);
}

#[tokio::test]
async fn a_running_session_ticks_live_and_its_task_and_block_start_with_it() {
    use focusforge_proto::events::v1::event::Payload;
    use focusforge_proto::focus::v1::{PauseSessionRequest, SessionKind, StartSessionRequest};
    use focusforge_proto::tasks::v1::{GetTaskRequest, TaskStatus, WorkBlock};
    let dir = tempfile::tempdir().expect("dir");
    let mut cfg = quick(&dir);
    cfg.events.tick_secs = 1;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let server = Server::start_with_clock(dir, cfg, clock.clone()).await;
    let mut tasks = server.tasks().await;
    let block = |title: &str, order: i32| WorkBlock {
        title: title.into(),
        minutes: 25,
        order,
        ..Default::default()
    };
    let task = tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "Write the launch post".into(),
                blocks: vec![block("Outline the post", 0), block("Write the draft", 1)],
                ..Default::default()
            },
        ))
        .await
        .expect("task")
        .into_inner()
        .task
        .expect("task");
    let mut stream = subscribe(&server, "alice", "").await;
    let mut focus = server.focus().await;
    let session = focus
        .start_session(authed(
            "alice",
            StartSessionRequest {
                kind: SessionKind::Focus as i32,
                task_id: task.id.clone(),
                planned_minutes: 25,
                ..Default::default()
            },
        ))
        .await
        .expect("start")
        .into_inner()
        .session
        .expect("session");
    // The session, its task started, the block it works on.
    let seen = next_events(&mut stream, 3).await;
    assert_eq!(
        kinds(&seen),
        [
            EventType::FocusStarted,
            EventType::TaskStarted,
            EventType::BlockStarted
        ]
    );
    match &seen[2].payload {
        Some(Payload::Block(b)) => {
            assert_eq!(b.task_id, task.id);
            assert_eq!(b.block_id, task.blocks[0].id);
            assert_eq!(b.title, "Outline the post");
        }
        other => panic!("{other:?}"),
    }
    let stored = tasks
        .get_task(authed(
            "alice",
            GetTaskRequest {
                id: task.id.clone(),
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(stored.status(), TaskStatus::InProgress);

    // Three minutes on: a tick says so, under the id of the last stored
    // event, so a client resuming from it loses nothing.
    clock.advance(chrono::Duration::minutes(3));
    let tick = next_matching(&mut stream, |e| e.r#type() == EventType::FocusTick).await;
    assert_eq!(tick.id, seen[2].id);
    match &tick.payload {
        Some(Payload::Focus(f)) => {
            assert_eq!(f.session_id, session.id);
            assert_eq!(f.elapsed_seconds, 180);
            assert_eq!(f.remaining_seconds, 22 * 60);
            assert_eq!(f.state, "SESSION_STATE_RUNNING");
        }
        other => panic!("{other:?}"),
    }
    // A stream opened while it runs ticks from the start, asking the focus
    // service where the session stands.
    let mut late = subscribe(&server, "alice", "").await;
    let first = next_any(&mut late).await;
    assert_eq!(first.r#type(), EventType::FocusTick);
    match &first.payload {
        Some(Payload::Focus(f)) => assert_eq!(f.elapsed_seconds, 180),
        other => panic!("{other:?}"),
    }
    // Another user's stream hears nothing of it.
    let mut bob = subscribe(&server, "bob", "").await;

    // Paused: the ticks stop (only heartbeats for two seconds).
    focus
        .pause_session(authed(
            "alice",
            PauseSessionRequest {
                id: session.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("pause");
    let paused = next_matching(&mut stream, |e| e.r#type() != EventType::FocusTick).await;
    assert_eq!(paused.r#type(), EventType::FocusPaused);
    let quiet = tokio::time::timeout(Duration::from_millis(2_500), async {
        loop {
            match stream.message().await {
                Ok(Some(SubscribeResponse {
                    kind: Some(Kind::Event(e)),
                })) => return e,
                Ok(Some(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "an event while paused: {quiet:?}");

    // The pause budget (ten minutes) runs out: the clock resumed the
    // session at 13 minutes, and the timer's run at 14 says so; the ticks
    // go on from the focus time since.
    clock.advance(chrono::Duration::minutes(11));
    let resumed = next_matching(&mut stream, |e| e.r#type() == EventType::FocusResumed).await;
    match &resumed.payload {
        Some(Payload::Focus(f)) => assert_eq!(f.elapsed_seconds, 240),
        other => panic!("{other:?}"),
    }
    let tick = next_matching(&mut stream, |e| e.r#type() == EventType::FocusTick).await;
    match &tick.payload {
        Some(Payload::Focus(f)) => assert_eq!(f.remaining_seconds, 21 * 60),
        other => panic!("{other:?}"),
    }
    let bob_heard = tokio::time::timeout(Duration::from_millis(200), async {
        loop {
            if let Ok(Some(SubscribeResponse {
                kind: Some(Kind::Event(e)),
            })) = bob.message().await
            {
                return e;
            }
        }
    })
    .await;
    assert!(bob_heard.is_err(), "bob heard {bob_heard:?}");
}

#[tokio::test]
async fn with_redis_events_cross_replicas_and_a_client_resumes_on_another_one() {
    let redis = focusforge_cache::testing::RedisServer::start();
    let replica = |dir: &tempfile::TempDir| {
        let mut cfg = quick(dir);
        cfg.redis.url = Some(redis.url());
        cfg.redis.timeout_ms = 2_000;
        cfg
    };
    let (a_dir, b_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (a_cfg, b_cfg) = (replica(&a_dir), replica(&b_dir));
    let a = Server::start_in(a_dir, a_cfg).await;
    let b = Server::start_in(b_dir, b_cfg).await;
    let mut on_a = subscribe(&a, "alice", "").await;
    let mut titles = Vec::new();
    for (i, server) in [&b, &a, &b].into_iter().enumerate() {
        let title = format!("written on replica {i}");
        server
            .tasks()
            .await
            .create_task(authed(
                "alice",
                CreateTaskRequest {
                    title: title.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create");
        titles.push(title);
    }
    let title = |e: &Event| match &e.payload {
        Some(focusforge_proto::events::v1::event::Payload::Task(t)) => t.title.clone(),
        other => panic!("{other:?}"),
    };
    let seen = next_events(&mut on_a, 3).await;
    assert_eq!(seen.iter().map(title).collect::<Vec<_>>(), titles);
    // The client moves to the other replica and resumes there.
    let mut on_b = subscribe(&b, "alice", &seen[0].id).await;
    let rest = next_events(&mut on_b, 2).await;
    assert_eq!(
        rest.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        seen[1..].iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    );
    let mut bob = subscribe(&b, "bob", &seen[0].id).await;
    let first = tokio::time::timeout(Duration::from_secs(5), bob.message())
        .await
        .expect("a message")
        .expect("stream")
        .expect("open");
    assert!(matches!(first.kind, Some(Kind::Heartbeat(_))), "{first:?}");
}

#[tokio::test]
async fn events_outlive_a_restart_and_calendar_changes_are_events() {
    use focusforge_proto::calendar::v1::{
        CreateEventRequest, DeleteEventRequest, Event as CalendarEvent,
    };
    let dir = tempfile::tempdir().expect("dir");
    let cfg = quick(&dir);
    let server = Server::start_in(dir, cfg.clone()).await;
    let mut stream = subscribe(&server, "alice", "").await;
    let start = Utc::now() + chrono::Duration::days(1);
    let created = server
        .calendar()
        .await
        .create_event(authed(
            "alice",
            CreateEventRequest {
                event: Some(CalendarEvent {
                    title: "Planning".into(),
                    start_time: Some(prost_types::Timestamp {
                        seconds: start.timestamp(),
                        nanos: 0,
                    }),
                    end_time: Some(prost_types::Timestamp {
                        seconds: start.timestamp() + 1800,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .event
        .expect("event");
    let first = next_events(&mut stream, 1).await.remove(0);
    assert_eq!(first.r#type(), EventType::CalendarChanged);
    match &first.payload {
        Some(focusforge_proto::events::v1::event::Payload::Calendar(c)) => {
            assert_eq!(c.calendar_event_id, created.id);
            assert_eq!(c.change, "created");
        }
        other => panic!("{other:?}"),
    }
    server
        .calendar()
        .await
        .delete_event(authed(
            "alice",
            DeleteEventRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .expect("delete");
    let second = next_events(&mut stream, 1).await.remove(0);
    drop(stream);
    let dir = server.stop().await;
    let server = Server::start_in(dir, cfg).await;
    let mut resumed = subscribe(&server, "alice", &first.id).await;
    let again = next_events(&mut resumed, 1).await.remove(0);
    assert_eq!(again.id, second.id, "resumed after a restart, nothing lost");
    match &again.payload {
        Some(focusforge_proto::events::v1::event::Payload::Calendar(c)) => {
            assert_eq!(c.change, "deleted");
        }
        other => panic!("{other:?}"),
    }
}
