use focusforge_proto::tasks::v1::{
    CompleteTaskRequest, CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest,
    StartTaskRequest, TaskPriority, TaskStatus, UpdateTaskRequest, WorkBlock,
};
use focusforge_proto::users::v1::{GetProfileRequest, Preferences, Profile, UpdateProfileRequest};
use prost_types::FieldMask;
use tonic::Code;

use crate::harness::{Server, authed, config};

fn block(title: &str, minutes: i32, order: i32) -> WorkBlock {
    WorkBlock {
        title: title.into(),
        minutes,
        order,
        done: false,
        id: String::new(),
    }
}

#[tokio::test]
async fn task_lifecycle_over_grpc() {
    let server = Server::start().await;
    let mut tasks = server.tasks().await;
    let created = tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "Write the quarterly report".into(),
                priority: TaskPriority::High as i32,
                tags: vec!["work".into()],
                blocks: vec![block("outline", 15, 0), block("draft", 50, 1)],
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(created.status, TaskStatus::Pending as i32);
    assert_eq!(created.user_id, "alice");
    assert_eq!(created.estimated_minutes, 65);
    assert_eq!(created.version, 1);

    let got = tasks
        .get_task(authed(
            "alice",
            GetTaskRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(got, created);

    let started = tasks
        .start_task(authed(
            "alice",
            StartTaskRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .expect("start")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(started.status, TaskStatus::InProgress as i32);
    assert!(started.start_time.is_some());

    let mut renamed = started.clone();
    renamed.title = "Write the Q3 report".into();
    let updated = tasks
        .update_task(authed(
            "alice",
            UpdateTaskRequest {
                task: Some(renamed),
                update_mask: Some(FieldMask {
                    paths: vec!["title".into()],
                }),
                expected_version: started.version,
            },
        ))
        .await
        .expect("update")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(updated.title, "Write the Q3 report");
    assert_eq!(
        updated.priority,
        TaskPriority::High as i32,
        "fields outside the mask stay"
    );

    let stale = tasks
        .update_task(authed(
            "alice",
            UpdateTaskRequest {
                task: Some(updated.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["title".into()],
                }),
                expected_version: started.version,
            },
        ))
        .await
        .expect_err("stale version");
    assert_eq!(stale.code(), Code::Aborted);

    let done = tasks
        .complete_task(authed(
            "alice",
            CompleteTaskRequest {
                id: created.id.clone(),
                proof_text: "sent to finance".into(),
            },
        ))
        .await
        .expect("complete")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(done.status, TaskStatus::Completed as i32);
    assert_eq!(done.completion_proof, "sent to finance");
    assert!(done.blocks.iter().all(|b| b.done));
    let again = tasks
        .complete_task(authed(
            "alice",
            CompleteTaskRequest {
                id: created.id.clone(),
                proof_text: String::new(),
            },
        ))
        .await
        .expect_err("already completed");
    assert_eq!(again.code(), Code::FailedPrecondition);

    tasks
        .delete_task(authed(
            "alice",
            DeleteTaskRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .expect("delete");
    let gone = tasks
        .get_task(authed(
            "alice",
            GetTaskRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn listing_pages_through_every_task_once() {
    let server = Server::start().await;
    let mut tasks = server.tasks().await;
    for i in 0..12 {
        let priority = if i % 3 == 0 {
            TaskPriority::Urgent
        } else {
            TaskPriority::Low
        };
        tasks
            .create_task(authed(
                "alice",
                CreateTaskRequest {
                    title: format!("task {i}"),
                    priority: priority as i32,
                    ..Default::default()
                },
            ))
            .await
            .expect("create");
    }
    let mut titles = Vec::new();
    let mut token = String::new();
    loop {
        let page = tasks
            .list_tasks(authed(
                "alice",
                ListTasksRequest {
                    page_size: 5,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        assert!(page.tasks.len() <= 5);
        titles.extend(page.tasks.into_iter().map(|t| t.title));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..12).rev().map(|i| format!("task {i}")).collect();
    assert_eq!(titles, expected, "newest first, each exactly once");

    let urgent = tasks
        .list_tasks(authed(
            "alice",
            ListTasksRequest {
                priority: TaskPriority::Urgent as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("filter")
        .into_inner();
    assert_eq!(urgent.tasks.len(), 4);
    server.stop().await;
}

#[tokio::test]
async fn data_survives_a_restart_on_the_same_data_dir() {
    let server = Server::start().await;
    let id = server
        .tasks()
        .await
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "persist me".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task")
        .id;
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
        .expect("update profile");
    let dir = server.stop().await;

    let cfg = config(&dir);
    let server = Server::start_in(dir, cfg).await;
    let task = server
        .tasks()
        .await
        .get_task(authed("alice", GetTaskRequest { id }))
        .await
        .expect("get after restart")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(task.title, "persist me");
    let profile = server
        .users()
        .await
        .get_profile(authed("alice", GetProfileRequest {}))
        .await
        .expect("profile")
        .into_inner()
        .profile
        .expect("profile");
    let prefs = profile.preferences.expect("prefs");
    assert_eq!(prefs.timezone, "Asia/Tokyo");
    assert_eq!(
        prefs.focus_minutes, 25,
        "untouched preferences keep their defaults"
    );
    server.stop().await;
}
