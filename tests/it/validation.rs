use focusforge_proto::tasks::v1::{
    CreateTaskRequest, ListTasksRequest, Task, UpdateTaskRequest, WorkBlock,
};
use focusforge_proto::users::v1::{Preferences, Profile, UpdateProfileRequest};
use prost_types::{FieldMask, Timestamp};
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::{Server, authed, config};

pub(crate) fn violated_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status
        .get_details_bad_request()
        .expect("field violations in the details");
    bad.field_violations.into_iter().map(|v| v.field).collect()
}

#[tokio::test]
async fn create_names_every_invalid_field() {
    let server = Server::start().await;
    let mut tasks = server.tasks().await;
    let err = tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "t".repeat(501),
                priority: 42,
                estimated_minutes: -10,
                due_time: Some(Timestamp {
                    seconds: 0,
                    nanos: -5,
                }),
                blocks: vec![WorkBlock {
                    title: "b".into(),
                    minutes: 100_000,
                    order: 0,
                    done: false,
                    id: String::new(),
                }],
                ..Default::default()
            },
        ))
        .await
        .expect_err("invalid");
    // Enum and timestamp problems are found while decoding; the domain's
    // checks are reported with them, not one round trip later.
    assert_eq!(
        violated_fields(&err),
        [
            "priority",
            "due_time",
            "title",
            "estimated_minutes",
            "blocks[0].minutes"
        ]
    );
    let err = tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "t".repeat(501),
                estimated_minutes: -10,
                blocks: vec![WorkBlock {
                    title: "b".into(),
                    minutes: 100_000,
                    order: 0,
                    done: false,
                    id: String::new(),
                }],
                ..Default::default()
            },
        ))
        .await
        .expect_err("invalid");
    assert_eq!(
        violated_fields(&err),
        ["title", "estimated_minutes", "blocks[0].minutes"]
    );
    let empty = tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "   ".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("empty");
    assert_eq!(violated_fields(&empty), ["title"]);
    server.stop().await;
}

#[tokio::test]
async fn bad_masks_page_tokens_and_preferences_are_refused() {
    let server = Server::start().await;
    let mut tasks = server.tasks().await;
    let err = tasks
        .update_task(authed(
            "alice",
            UpdateTaskRequest {
                task: Some(Task {
                    id: "x".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["user_id".into()],
                }),
                expected_version: 0,
            },
        ))
        .await
        .expect_err("read-only path");
    assert_eq!(violated_fields(&err), ["update_mask"]);
    let err = tasks
        .list_tasks(authed(
            "alice",
            ListTasksRequest {
                page_token: "bm90IGEgdG9rZW4".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("bad token");
    assert_eq!(violated_fields(&err), ["page_token"]);
    let err = tasks
        .list_tasks(authed(
            "alice",
            ListTasksRequest {
                statuses: vec![0, 9],
                ..Default::default()
            },
        ))
        .await
        .expect_err("bad statuses");
    assert_eq!(violated_fields(&err), ["statuses[0]", "statuses[1]"]);

    let err = server
        .users()
        .await
        .update_profile(authed(
            "alice",
            UpdateProfileRequest {
                profile: Some(Profile {
                    preferences: Some(Preferences {
                        timezone: "Atlantis/Capital".into(),
                        focus_minutes: 600,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec![
                        "preferences.timezone".into(),
                        "preferences.focus_minutes".into(),
                    ],
                }),
            },
        ))
        .await
        .expect_err("bad preferences");
    assert_eq!(
        violated_fields(&err),
        [
            "profile.preferences.timezone",
            "profile.preferences.focus_minutes"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_messages_are_refused_before_reaching_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.max_message_bytes = 4096;
    let server = Server::start_in(dir, cfg).await;
    let mut tasks = server.tasks().await;
    let err = tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "big".into(),
                description: "d".repeat(8000),
                ..Default::default()
            },
        ))
        .await
        .expect_err("too big");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("limit is 4096 bytes"),
        "{}",
        err.message()
    );
    let listed = tasks
        .list_tasks(authed("alice", ListTasksRequest::default()))
        .await
        .expect("list");
    assert!(listed.into_inner().tasks.is_empty(), "nothing was stored");
    // A message under the limit on the same connection still works.
    tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "small".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("small message");
    server.stop().await;
}

#[tokio::test]
async fn malformed_deadlines_are_invalid() {
    let server = Server::start().await;
    let mut tasks = server.tasks().await;
    let mut req = authed("alice", ListTasksRequest::default());
    req.metadata_mut()
        .insert("grpc-timeout", "soon".parse().expect("value"));
    let err = tasks.list_tasks(req).await.expect_err("bad timeout");
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}
