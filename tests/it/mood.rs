//! The Mood service through the gateway: gRPC and gRPC-web, idempotent logs,
//! isolation, bad input, patterns with their sample-count gate, restarts, the
//! MongoDB backend, a planned mood action, and mesh tokens refused from
//! outside.

use std::time::Duration;

use chrono::Utc;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use focusforge_proto::mood::v1::{
    DeleteMoodRequest, GetMoodPatternsRequest, GetMoodRequest, ListMoodsRequest, LogMoodRequest,
    LogMoodResponse, MoodEntry, UpdateMoodRequest,
};
use focusforge_proto::planner::v1::{
    ActionSpec, ActionStatus, ActionType, CreatePlanRequest, ExecuteReadyRequest, GetPlanRequest,
};
use focusforge_proto::tasks::v1::{CompleteTaskRequest, CreateTaskRequest};
use focusforge_proto::users::v1::{Preferences, Profile, UpdateProfileRequest};
use prost::Message;
use prost_types::{FieldMask, Timestamp};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::harness::{Http, Server, authed, bearer, config, grpc_web};

fn log(score: i32, tags: &[&str]) -> LogMoodRequest {
    LogMoodRequest {
        score,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..Default::default()
    }
}

fn ago(hours: i64) -> Option<Timestamp> {
    let t = Utc::now() - chrono::Duration::hours(hours);
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

/// The fields an INVALID_ARGUMENT names.
/// The fields an INVALID_ARGUMENT names.
pub fn fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Logs, retries, lists, updates and deletes through `moods`.
async fn lifecycle(moods: &mut MoodServiceClient<Channel>) {
    let first = moods
        .log_mood(authed(
            "alice",
            LogMoodRequest {
                score: 4,
                energy: 2,
                emotions: vec!["Tired".into(), "hopeful".into(), "tired".into()],
                tags: vec!["work".into()],
                note: "long review, good outcome".into(),
                request_id: "phone-1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("log")
        .into_inner()
        .entry
        .expect("entry");
    assert_eq!(
        (first.score, first.energy, first.emotions.clone()),
        (4, 2, vec!["tired".to_owned(), "hopeful".to_owned()]),
        "emotions are lower-cased and deduplicated"
    );
    // The client retries: the same entry, not a second one.
    let retry = moods
        .log_mood(authed(
            "alice",
            LogMoodRequest {
                score: 4,
                request_id: "phone-1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("retry")
        .into_inner()
        .entry
        .expect("entry");
    assert_eq!(retry.id, first.id);
    let second = moods
        .log_mood(authed("alice", log(2, &["commute"])))
        .await
        .expect("second")
        .into_inner()
        .entry
        .expect("entry");
    let listed = moods
        .list_moods(authed("alice", ListMoodsRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .entries;
    let ids: Vec<&str> = listed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [second.id.as_str(), first.id.as_str()],
        "newest first, once each"
    );
    let tagged = moods
        .list_moods(authed(
            "alice",
            ListMoodsRequest {
                tags: vec!["work".into()],
                ..Default::default()
            },
        ))
        .await
        .expect("by tag")
        .into_inner()
        .entries;
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].id, first.id);

    let updated = moods
        .update_mood(authed(
            "alice",
            UpdateMoodRequest {
                entry: Some(MoodEntry {
                    id: second.id.clone(),
                    score: 3,
                    note: "better after coffee".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["score".into(), "note".into()],
                }),
            },
        ))
        .await
        .expect("update")
        .into_inner()
        .entry
        .expect("entry");
    assert_eq!(
        (
            updated.score,
            updated.note.as_str(),
            updated.tags.clone(),
            updated.version
        ),
        (3, "better after coffee", vec!["commute".to_owned()], 2),
        "only the masked fields change"
    );
    let bad_mask = moods
        .update_mood(authed(
            "alice",
            UpdateMoodRequest {
                entry: Some(MoodEntry {
                    id: second.id.clone(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["mood".into()],
                }),
            },
        ))
        .await
        .expect_err("unknown path");
    assert_eq!(fields(&bad_mask), ["update_mask"]);

    // Bob sees none of it.
    for id in [&first.id, &second.id] {
        let err = moods
            .get_mood(authed("bob", GetMoodRequest { id: id.clone() }))
            .await
            .expect_err("another user's entry");
        assert_eq!(err.code(), Code::NotFound);
        let err = moods
            .delete_mood(authed("bob", DeleteMoodRequest { id: id.clone() }))
            .await
            .expect_err("another user's entry");
        assert_eq!(err.code(), Code::NotFound);
    }
    assert!(
        moods
            .list_moods(authed("bob", ListMoodsRequest::default()))
            .await
            .expect("bob's list")
            .into_inner()
            .entries
            .is_empty()
    );

    moods
        .delete_mood(authed(
            "alice",
            DeleteMoodRequest {
                id: second.id.clone(),
            },
        ))
        .await
        .expect("delete");
    let gone = moods
        .get_mood(authed("alice", GetMoodRequest { id: second.id }))
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn moods_are_logged_once_listed_updated_and_deleted_for_their_owner_only() {
    let server = Server::start().await;
    lifecycle(&mut server.mood().await).await;

    // The same service over gRPC-web (text encoding, HTTP/1.1).
    let token = crate::harness::token("carol");
    let auth = format!("Bearer {token}");
    let logged = grpc_web(
        server.addr,
        "/focusforge.mood.v1.MoodService/LogMood",
        &log(5, &["exercise"]),
        true,
        Http::V1,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(logged.grpc_status(), Some("0"), "{logged:?}");
    let entry = LogMoodResponse::decode(logged.messages[0].clone())
        .expect("response")
        .entry
        .expect("entry");
    assert_eq!((entry.score, entry.tags), (5, vec!["exercise".to_owned()]));
    let bad = grpc_web(
        server.addr,
        "/focusforge.mood.v1.MoodService/LogMood",
        &log(6, &[]),
        false,
        Http::V2,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(
        bad.grpc_status(),
        Some("3"),
        "INVALID_ARGUMENT over gRPC-web"
    );
    assert!(
        bad.trailer("grpc-message")
            .is_some_and(|m| m.contains("score")),
        "{bad:?}"
    );

    // Restart on the same data directory: the entry is still there.
    let dir = server.stop().await;
    let cfg = config(&dir);
    let server = Server::start_in(dir, cfg).await;
    let kept = server
        .mood()
        .await
        .get_mood(authed(
            "carol",
            GetMoodRequest {
                id: entry.id.clone(),
            },
        ))
        .await
        .expect("after restart")
        .into_inner()
        .entry
        .expect("entry");
    assert_eq!(kept.score, 5);
    server.stop().await;
}

#[tokio::test]
async fn moods_live_in_mongodb_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.mongodb.uri = Some(crate::backends::mongo_uri());
    cfg.mongodb.database = format!("mood_{}", uuid_like());
    let server = Server::start_in(dir, cfg.clone()).await;
    lifecycle(&mut server.mood().await).await;
    let alice = server
        .mood()
        .await
        .list_moods(authed("alice", ListMoodsRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .entries;
    server.stop().await;
    // A new process with a fresh data directory reads them from MongoDB.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_in(dir, cfg).await;
    let again = server
        .mood()
        .await
        .list_moods(authed("alice", ListMoodsRequest::default()))
        .await
        .expect("list after restart")
        .into_inner()
        .entries;
    assert_eq!(again, alice);
    assert_eq!(again.len(), 1);
    server.stop().await;
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_nanos()
    )
}

#[tokio::test]
async fn bad_moods_are_refused_naming_the_field() {
    let server = Server::start().await;
    let mut moods = server.mood().await;
    let future = Utc::now() + chrono::Duration::hours(1);
    let cases: Vec<(LogMoodRequest, &str)> = vec![
        (log(0, &[]), "score"),
        (log(6, &[]), "score"),
        (
            LogMoodRequest {
                energy: 7,
                ..log(3, &[])
            },
            "energy",
        ),
        (
            LogMoodRequest {
                at: Some(Timestamp {
                    seconds: future.timestamp(),
                    nanos: 0,
                }),
                ..log(3, &[])
            },
            "at",
        ),
        (
            LogMoodRequest {
                at: ago(31 * 24),
                ..log(3, &[])
            },
            "at",
        ),
        (log(3, &(0..21).map(|_| "t").collect::<Vec<_>>()), "tags"),
        (log(3, &[&"x".repeat(41)]), "tags[0]"),
        (
            LogMoodRequest {
                note: "n".repeat(2_001),
                ..log(3, &[])
            },
            "note",
        ),
    ];
    for (req, field) in cases {
        let err = moods
            .log_mood(authed("alice", req.clone()))
            .await
            .expect_err(field);
        assert_eq!(fields(&err), [field], "{req:?}");
    }
    // Back-dating inside the window is fine.
    let at = ago(29 * 24);
    let backdated = moods
        .log_mood(authed(
            "alice",
            LogMoodRequest {
                at,
                ..log(3, &[&"x".repeat(40)])
            },
        ))
        .await
        .expect("29 days back, a 40-character tag")
        .into_inner()
        .entry
        .expect("entry");
    assert_eq!(backdated.at, at);
    server.stop().await;
}

#[tokio::test]
async fn patterns_report_a_tag_only_with_three_entries_on_each_side() {
    let server = Server::start().await;
    server
        .users()
        .await
        .update_profile(authed(
            "alice",
            UpdateProfileRequest {
                profile: Some(Profile {
                    preferences: Some(Preferences {
                        timezone: "Asia/Tokyo".into(),
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
        .expect("time zone");
    let mut moods = server.mood().await;
    let entries = [
        (5, true, 50),
        (5, true, 74),
        (2, false, 26),
        (2, false, 98),
        (2, false, 122),
    ];
    for (score, exercise, hours) in entries {
        let tags: &[&str] = if exercise { &["exercise"] } else { &["work"] };
        moods
            .log_mood(authed(
                "alice",
                LogMoodRequest {
                    at: ago(hours),
                    ..log(score, tags)
                },
            ))
            .await
            .expect("log");
    }
    // A task completed today, the day of no entry.
    let mut tasks = server.tasks().await;
    let task = tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "Write the report".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("task")
        .into_inner()
        .task
        .expect("task");
    tasks
        .complete_task(authed(
            "alice",
            CompleteTaskRequest {
                id: task.id,
                ..Default::default()
            },
        ))
        .await
        .expect("complete");

    let patterns = |moods: &mut MoodServiceClient<Channel>| {
        let mut moods = moods.clone();
        async move {
            moods
                .get_mood_patterns(authed("alice", GetMoodPatternsRequest::default()))
                .await
                .expect("patterns")
                .into_inner()
                .patterns
                .expect("patterns")
        }
    };
    let p = patterns(&mut moods).await;
    assert_eq!(p.entries, 5);
    assert_eq!(p.time_zone, "Asia/Tokyo");
    assert!(
        p.better_with.iter().all(|t| t.tag != "exercise"),
        "2 entries with the tag are not enough: {p:?}"
    );
    assert!(
        p.tags_without_enough_entries
            .contains(&"exercise".to_owned())
    );
    assert_eq!(p.by_hour.iter().map(|b| b.entries).sum::<i32>(), 5);
    let days = p.with_task_completions.as_ref().expect("correlation").days;
    assert!((4..=5).contains(&days), "days with entries: {days}");

    moods
        .log_mood(authed(
            "alice",
            LogMoodRequest {
                at: ago(146),
                ..log(4, &["exercise"])
            },
        ))
        .await
        .expect("third");
    let p = patterns(&mut moods).await;
    let exercise = p
        .better_with
        .iter()
        .find(|t| t.tag == "exercise")
        .unwrap_or_else(|| panic!("3 with and 3 without: reported: {p:?}"));
    assert_eq!((exercise.entries_with, exercise.entries_without), (3, 3));
    assert!(
        (exercise.effect - (14.0 / 3.0 - 2.0)).abs() < 0.01,
        "{exercise:?}"
    );
    let work = p.worse_with.iter().find(|t| t.tag == "work").expect("work");
    assert_eq!((work.entries_with, work.entries_without), (3, 3));

    // Bob's patterns know nothing of alice's entries.
    let bob = moods
        .get_mood_patterns(authed("bob", GetMoodPatternsRequest::default()))
        .await
        .expect("bob")
        .into_inner()
        .patterns
        .expect("patterns");
    assert_eq!(bob.entries, 0);
    server.stop().await;
}

fn mood_action(key: &str) -> ActionSpec {
    ActionSpec {
        key: key.into(),
        r#type: ActionType::MoodTracking as i32,
        params_json: r#"{"op": "log", "score": 4, "tags": ["planned"]}"#.into(),
        idempotency_key: format!("mood-{key}"),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_planned_mood_action_logs_a_mood_acting_for_the_user() {
    let server = Server::start().await;
    let mut planner = server.planner().await;
    planner
        .create_plan(authed(
            "alice",
            CreatePlanRequest {
                title: "check in".into(),
                actions: vec![mood_action("checkin")],
                request_id: String::new(),
            },
        ))
        .await
        .expect("plan");
    let ran = planner
        .execute_ready(authed("alice", ExecuteReadyRequest::default()))
        .await
        .expect("execute")
        .into_inner();
    let mut moods = server.mood().await;
    let mut logged = Vec::new();
    for _ in 0..100 {
        logged = moods
            .list_moods(authed("alice", ListMoodsRequest::default()))
            .await
            .expect("list")
            .into_inner()
            .entries;
        if !logged.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logged.len(), 1, "ran: {ran:?}");
    assert_eq!(
        (logged[0].score, logged[0].tags.clone()),
        (4, vec!["planned".to_owned()])
    );
    server.stop().await;
}

#[tokio::test]
async fn a_mood_action_without_the_mood_service_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.services = ["tasks", "users", "planner", "jobs"]
        .map(str::to_owned)
        .to_vec();
    let server = Server::start_in(dir, cfg).await;
    let mut planner = server.planner().await;
    let plan = planner
        .create_plan(authed(
            "alice",
            CreatePlanRequest {
                title: "check in".into(),
                actions: vec![mood_action("checkin")],
                request_id: String::new(),
            },
        ))
        .await
        .expect("plan")
        .into_inner()
        .plan
        .expect("plan");
    let mut action = None;
    for _ in 0..100 {
        let p = planner
            .get_plan(authed(
                "alice",
                GetPlanRequest {
                    plan_id: plan.id.clone(),
                },
            ))
            .await
            .expect("get")
            .into_inner()
            .plan
            .expect("plan");
        let a = p.actions[0].clone();
        if a.status == ActionStatus::Failed as i32 || a.status == ActionStatus::Dead as i32 {
            action = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let action = action.expect("the action failed");
    assert!(
        action.last_error.contains("focusforge.mood.v1.MoodService")
            && action.last_error.contains("not deployed here"),
        "{}",
        action.last_error
    );
    server.stop().await;
}

#[tokio::test]
async fn a_mesh_token_is_refused_from_outside() {
    let server = Server::start().await;
    let cfg = config(&tempfile::tempdir().expect("tempdir"));
    let key = focusforge_server::mesh_key(&cfg).expect("mesh key");
    let alice = focusforge_core::UserId::parse("alice").expect("user");
    let mesh_token = key.mint(&alice, "planner").expect("mint");
    let err = server
        .mood()
        .await
        .list_moods(bearer(&mesh_token, ListMoodsRequest::default()))
        .await
        .expect_err("a mesh token at the gateway");
    assert_eq!(err.code(), Code::Unauthenticated);
    server.stop().await;
}
