//! Task insights and the user context, through the gateway, with the real
//! embedding model.

use focusforge_proto::memory::v1::{
    GetUserContextRequest, MemoryTier, RecordTaskInsightRequest, RememberRequest,
};
use focusforge_proto::mood::v1::LogMoodRequest;
use focusforge_proto::tasks::v1::{CreateTaskRequest, DeleteTaskRequest, Task};
use focusforge_proto::users::v1::{Preferences, Profile, UpdateProfileRequest};
use prost_types::FieldMask;
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::{Server, authed};

async fn task(server: &Server, user: &str, title: &str, description: &str) -> Task {
    server
        .tasks()
        .await
        .create_task(authed(
            user,
            CreateTaskRequest {
                title: title.into(),
                description: description.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create task")
        .into_inner()
        .task
        .expect("task")
}

/// A mood, logged with the Mood service: moods are its entries.
fn mood(score: i32, note: &str) -> LogMoodRequest {
    LogMoodRequest {
        score,
        note: note.into(),
        ..Default::default()
    }
}

fn context(query: &str) -> GetUserContextRequest {
    GetUserContextRequest {
        query: query.into(),
        limit: 3,
    }
}

#[tokio::test]
async fn the_user_context_gathers_preferences_moods_tasks_and_insights() {
    let server = Server::start().await;
    let mut memory = server.memory().await;
    let tax = task(
        &server,
        "alice",
        "File the quarterly tax return",
        "gather receipts, fill in the forms",
    )
    .await;
    let _groceries = task(&server, "alice", "Buy groceries for the week", "").await;
    let slides = task(
        &server,
        "alice",
        "Prepare slides for the conference talk",
        "",
    )
    .await;
    let bobs = task(&server, "bob", "Pay my income taxes", "").await;
    server
        .users()
        .await
        .update_profile(authed(
            "alice",
            UpdateProfileRequest {
                profile: Some(Profile {
                    preferences: Some(Preferences {
                        focus_minutes: 50,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["preferences.focus_minutes".into()],
                }),
            },
        ))
        .await
        .expect("preferences");
    let mut moods = server.mood().await;
    for (score, m) in [(4, "calm"), (3, "tired but determined")] {
        moods
            .log_mood(authed("alice", mood(score, m)))
            .await
            .expect("mood");
    }
    moods
        .log_mood(authed("bob", mood(2, "bob is grumpy")))
        .await
        .expect("bob's mood");
    let insight = memory
        .record_task_insight(authed(
            "alice",
            RecordTaskInsightRequest {
                task_id: tax.id.clone(),
                insight: "Receipts take longest; collect them the week before".into(),
                metadata: [("source".to_owned(), "analysis".to_owned())].into(),
            },
        ))
        .await
        .expect("insight")
        .into_inner()
        .insight
        .expect("insight");
    assert_eq!(insight.kind, "task_insight");
    assert_eq!(insight.tier, MemoryTier::LongTerm as i32);
    assert_eq!(insight.tags, [format!("task:{}", tax.id)]);
    assert_eq!(insight.metadata["task_id"], tax.id);
    assert_eq!(insight.metadata["source"], "analysis");
    memory
        .record_task_insight(authed(
            "alice",
            RecordTaskInsightRequest {
                task_id: slides.id.clone(),
                insight: "Rehearse twice".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("second insight");
    memory
        .remember(authed(
            "alice",
            RememberRequest {
                tier: MemoryTier::Semantic as i32,
                kind: "note".into(),
                content: "my accountant wants the tax papers by March".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("note");

    let ctx = memory
        .get_user_context(authed("alice", context("do my taxes")))
        .await
        .expect("context")
        .into_inner();
    assert_eq!(ctx.preferences.expect("preferences").focus_minutes, 50);
    let moods: Vec<(i32, &str)> = ctx
        .moods
        .iter()
        .map(|m| (m.score, m.note.as_str()))
        .collect();
    assert_eq!(
        moods,
        [(3, "tired but determined"), (4, "calm")],
        "newest first, alice's only"
    );
    let recent: Vec<&str> = ctx.recent_tasks.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(
        recent,
        [
            "Prepare slides for the conference talk",
            "Buy groceries for the week",
            "File the quarterly tax return"
        ]
    );
    let similar = &ctx.similar_tasks[0];
    assert_eq!(
        similar.task.as_ref().expect("task").id,
        tax.id,
        "{:?}",
        ctx.similar_tasks
    );
    assert!(
        ctx.similar_tasks
            .windows(2)
            .all(|w| w[0].score >= w[1].score)
    );
    assert!(
        ctx.similar_tasks
            .iter()
            .all(|s| s.task.as_ref().expect("task").id != bobs.id)
    );
    assert_eq!(
        ctx.insights[0].id, insight.id,
        "the similar task's insight first"
    );
    assert_eq!(ctx.insights.len(), 2);
    let relevant = ctx.relevant_memories[0].memory.as_ref().expect("memory");
    assert_eq!(
        relevant.content,
        "my accountant wants the tax papers by March"
    );
    assert!(ctx.relevant_memories[0].explanation.is_some());

    // Without a query: no similar tasks, no relevant memories.
    let plain = memory
        .get_user_context(authed("alice", context("")))
        .await
        .expect("context")
        .into_inner();
    assert!(plain.similar_tasks.is_empty() && plain.relevant_memories.is_empty());
    assert_eq!(plain.recent_tasks.len(), 3);

    // A deleted task is no longer offered as similar.
    server
        .tasks()
        .await
        .delete_task(authed("alice", DeleteTaskRequest { id: tax.id.clone() }))
        .await
        .expect("delete");
    let after = memory
        .get_user_context(authed("alice", context("do my taxes")))
        .await
        .expect("context")
        .into_inner();
    assert!(
        after
            .similar_tasks
            .iter()
            .all(|s| s.task.as_ref().expect("task").id != tax.id)
    );

    // Bob sees only his own.
    let bob = memory
        .get_user_context(authed("bob", context("taxes")))
        .await
        .expect("context")
        .into_inner();
    assert_eq!(bob.moods.len(), 1);
    assert_eq!(bob.recent_tasks.len(), 1);
    assert_eq!(bob.similar_tasks.len(), 1);
    assert!(bob.insights.is_empty() && bob.relevant_memories.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn insights_need_one_of_the_callers_tasks() {
    let server = Server::start().await;
    let mut memory = server.memory().await;
    let bobs = task(&server, "bob", "Bob's task", "").await;
    let err = memory
        .record_task_insight(authed(
            "alice",
            RecordTaskInsightRequest {
                task_id: bobs.id.clone(),
                insight: "peeking".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("another user's task");
    assert_eq!(err.code(), Code::NotFound);
    for (req, field) in [
        (
            RecordTaskInsightRequest {
                task_id: String::new(),
                insight: "x".into(),
                ..Default::default()
            },
            "task_id",
        ),
        (
            RecordTaskInsightRequest {
                task_id: bobs.id.clone(),
                insight: String::new(),
                ..Default::default()
            },
            "insight",
        ),
    ] {
        let err = memory
            .record_task_insight(authed("bob", req))
            .await
            .expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument);
        let bad = err.get_details_bad_request().expect("details");
        assert_eq!(bad.field_violations[0].field, field);
    }
    let err = memory
        .get_user_context(authed(
            "bob",
            GetUserContextRequest {
                limit: 21,
                ..Default::default()
            },
        ))
        .await
        .expect_err("limit");
    let bad = err.get_details_bad_request().expect("details");
    assert_eq!(bad.field_violations[0].field, "limit");
    server.stop().await;
}
