//! The Gamification service through the gateway, on SQLite and MongoDB:
//! completing a task awards once whether the completion is retried, the
//! award job delivered twice or the plan action replayed; 50 concurrent
//! redemptions of a balance for 10; a user cannot award themselves; every
//! id-taking call is scoped to its user; bad input names the field.

use std::time::Duration;

use focusforge_jobs::JobSpec;
use focusforge_proto::gamification::v1::{
    AwardRequest, CreateRewardRequest, DeleteRewardRequest, GetProgressRequest,
    ListInventoryRequest, ListLedgerEntriesRequest, ListStoreItemsRequest, Progress, Reason,
    RedeemRequest, UpdateRewardRequest, award_request,
};
use focusforge_proto::planner::v1::{
    ActionSpec, ActionType, CreatePlanRequest, ExecuteReadyRequest,
};
use focusforge_proto::tasks::v1::{CompleteTaskRequest, CreateTaskRequest, TaskPriority};
use prost_types::FieldMask;
use tonic::Code;

use crate::harness::{Server, authed, config, eventually};

/// One completed medium task is worth exactly 100 points, and no
/// achievement adds to it, so balances are round.
pub fn round_points(cfg: &mut focusforge_server::Config) {
    let table: toml::Table =
        toml::from_str("task_points = 100\nachievements = []\nstreak_milestones = []")
            .expect("settings");
    cfg.service.insert("gamification".into(), table);
}

pub async fn progress(server: &Server, user: &str) -> Progress {
    server
        .game()
        .await
        .get_progress(authed(user, GetProgressRequest {}))
        .await
        .expect("progress")
        .into_inner()
        .progress
        .expect("progress")
}

async fn task_entries(server: &Server, user: &str, task: &str) -> usize {
    server
        .game()
        .await
        .list_ledger_entries(authed(
            user,
            ListLedgerEntriesRequest {
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("ledger")
        .into_inner()
        .entries
        .iter()
        .filter(|e| e.reason == Reason::TaskCompleted as i32 && e.subject_id == task)
        .count()
}

async fn new_task(server: &Server, user: &str, title: &str) -> String {
    server
        .tasks()
        .await
        .create_task(authed(
            user,
            CreateTaskRequest {
                title: title.into(),
                priority: TaskPriority::Medium as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task")
        .id
}

fn complete_action(key: &str, task: &str) -> ActionSpec {
    ActionSpec {
        key: key.into(),
        r#type: ActionType::TaskManagement as i32,
        params_json: format!(r#"{{"op": "complete", "task_id": "{task}"}}"#),
        ..Default::default()
    }
}

/// Every path a completion's award can take, each awarding once.
async fn awards_once(cfg: focusforge_server::Config, dir: tempfile::TempDir) {
    let server = Server::start_in(dir, cfg.clone()).await;
    let mut tasks = server.tasks().await;

    // A retried completion.
    let t1 = new_task(&server, "alice", "write the report").await;
    tasks
        .complete_task(authed(
            "alice",
            CompleteTaskRequest {
                id: t1.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("complete");
    let retry = tasks
        .complete_task(authed(
            "alice",
            CompleteTaskRequest {
                id: t1.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("already completed");
    assert_eq!(retry.code(), Code::FailedPrecondition);
    assert_eq!(task_entries(&server, "alice", &t1).await, 1);
    assert_eq!(progress(&server, "alice").await.balance, 100);

    // The award job, delivered twice (two jobs with the same cause).
    let backends = focusforge_server::Backends::open(&cfg)
        .await
        .expect("backends");
    let alice = focusforge_core::UserId::parse("alice").expect("user");
    for _ in 0..2 {
        backends
            .jobs
            .enqueue(JobSpec::new(
                "gamification.award",
                alice.clone(),
                serde_json::json!({ "task_id": t1 }),
            ))
            .await
            .expect("enqueue");
    }
    let mut jobs = server.jobs().await;
    eventually("both award jobs ran", || {
        let mut jobs = jobs.clone();
        async move {
            let listed = jobs
                .list_jobs(authed(
                    "alice",
                    focusforge_proto::jobs::v1::ListJobsRequest {
                        kind: "gamification.award".into(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("jobs")
                .into_inner()
                .jobs;
            listed.len() == 2
                && listed
                    .iter()
                    .all(|j| j.state == focusforge_proto::jobs::v1::JobState::Succeeded as i32)
        }
    })
    .await;
    let _ = &mut jobs;
    assert_eq!(task_entries(&server, "alice", &t1).await, 1);
    assert_eq!(progress(&server, "alice").await.balance, 100);

    // A planned completion, and the same action replayed by a second plan.
    let t2 = new_task(&server, "alice", "send the invoice").await;
    let mut planner = server.planner().await;
    for key in ["first", "replay"] {
        planner
            .create_plan(authed(
                "alice",
                CreatePlanRequest {
                    title: key.into(),
                    actions: vec![complete_action(key, &t2)],
                    request_id: String::new(),
                },
            ))
            .await
            .expect("plan");
        planner
            .execute_ready(authed("alice", ExecuteReadyRequest::default()))
            .await
            .expect("execute");
        let server = &server;
        let t2 = t2.clone();
        eventually("the planned completion awarded", move || {
            let t2 = t2.clone();
            async move { task_entries(server, "alice", &t2).await == 1 }
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(task_entries(&server, "alice", &t2).await, 1);
    let p = progress(&server, "alice").await;
    assert_eq!((p.balance, p.tasks_completed), (200, 2));
    // The ledger sums to the balance; Bob has nothing.
    assert_eq!(p.ledger_entries, 2);
    assert_eq!(progress(&server, "bob").await.balance, 0);
    server.stop().await;
}

#[tokio::test]
async fn completing_a_task_awards_once_on_every_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    round_points(&mut cfg);
    awards_once(cfg, dir).await;
}

#[tokio::test]
async fn completing_a_task_awards_once_on_mongodb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    round_points(&mut cfg);
    cfg.mongodb.uri = Some(crate::backends::mongo_uri());
    cfg.mongodb.database = format!("game_{}", nanos());
    awards_once(cfg, dir).await;
}

/// A name no earlier run used (MongoDB databases of one test run).
pub fn nanos() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_nanos()
    )
}

/// 50 concurrent redemptions of a 10-point reward with 100 points.
async fn redeems_exactly(cfg: focusforge_server::Config, dir: tempfile::TempDir) {
    let server = Server::start_in(dir, cfg).await;
    let t = new_task(&server, "carol", "earn").await;
    server
        .tasks()
        .await
        .complete_task(authed(
            "carol",
            CompleteTaskRequest {
                id: t,
                ..Default::default()
            },
        ))
        .await
        .expect("complete");
    assert_eq!(progress(&server, "carol").await.balance, 100);
    let reward = server
        .game()
        .await
        .create_reward(authed(
            "carol",
            CreateRewardRequest {
                name: "An episode of a series".into(),
                description: String::new(),
                cost: 10,
            },
        ))
        .await
        .expect("reward")
        .into_inner()
        .reward
        .expect("reward");
    let channel = server.channel().await;
    let calls = (0..50).map(|i| {
        let mut game =
            focusforge_proto::gamification::v1::gamification_service_client::GamificationServiceClient::new(
                channel.clone(),
            );
        let id = reward.id.clone();
        tokio::spawn(async move {
            game.redeem(authed(
                "carol",
                RedeemRequest {
                    item_id: id,
                    request_id: format!("tap-{i}"),
                },
            ))
            .await
        })
    });
    let results: Vec<_> = futures_join(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::FailedPrecondition))
        .count();
    assert_eq!(
        (ok, refused),
        (10, 40),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let p = progress(&server, "carol").await;
    assert_eq!(p.balance, 0);
    let inventory = server
        .game()
        .await
        .list_inventory(authed(
            "carol",
            ListInventoryRequest {
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("inventory")
        .into_inner()
        .items;
    assert_eq!(inventory.len(), 10);
    assert!(
        inventory
            .iter()
            .all(|i| i.cost == 10 && i.item_id == reward.id)
    );
    server.stop().await;
}

async fn futures_join<T: Send + 'static>(
    calls: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let handles: Vec<_> = calls.collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("join"));
    }
    out
}

#[tokio::test]
async fn fifty_concurrent_redemptions_spend_exactly_the_balance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    round_points(&mut cfg);
    redeems_exactly(cfg, dir).await;
}

#[tokio::test]
async fn fifty_concurrent_redemptions_spend_exactly_the_balance_on_mongodb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    round_points(&mut cfg);
    cfg.mongodb.uri = Some(crate::backends::mongo_uri());
    cfg.mongodb.database = format!("redeem_{}", nanos());
    redeems_exactly(cfg, dir).await;
}

#[tokio::test]
async fn users_cannot_award_themselves_or_touch_each_others_rewards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    round_points(&mut cfg);
    let server = Server::start_in(dir, cfg).await;
    let mut game = server.game().await;
    let award = game
        .award(authed(
            "alice",
            AwardRequest {
                cause: Some(award_request::Cause::Adjustment(
                    focusforge_proto::gamification::v1::Adjustment {
                        points: 1000,
                        note: "free money".into(),
                        key: "k".into(),
                    },
                )),
            },
        ))
        .await
        .expect_err("a user awarding themselves");
    assert_eq!(award.code(), Code::PermissionDenied);
    let reward = game
        .create_reward(authed(
            "alice",
            CreateRewardRequest {
                name: "A walk".into(),
                description: "outside".into(),
                cost: 30,
            },
        ))
        .await
        .expect("reward")
        .into_inner()
        .reward
        .expect("reward");
    // Bob sees the deployment's items only, and none of Alice's.
    let bobs = game
        .list_store_items(authed("bob", ListStoreItemsRequest {}))
        .await
        .expect("store")
        .into_inner()
        .items;
    assert!(bobs.iter().all(|i| i.id != reward.id));
    assert!(bobs.iter().any(|i| i.id == "streak-freeze"));
    fn code<T>(r: Result<T, tonic::Status>) -> Code {
        r.map(|_| ()).expect_err("refused").code()
    }
    assert_eq!(
        code(
            game.redeem(authed(
                "bob",
                RedeemRequest {
                    item_id: reward.id.clone(),
                    request_id: String::new()
                }
            ))
            .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            game.delete_reward(authed(
                "bob",
                DeleteRewardRequest {
                    id: reward.id.clone()
                }
            ))
            .await
        ),
        Code::NotFound
    );
    let mut changed = reward.clone();
    changed.cost = 1;
    assert_eq!(
        code(
            game.update_reward(authed(
                "bob",
                UpdateRewardRequest {
                    reward: Some(changed.clone()),
                    update_mask: Some(FieldMask {
                        paths: vec!["cost".into()]
                    }),
                },
            ))
            .await
        ),
        Code::NotFound
    );
    // Alice cannot afford it yet.
    let poor = game
        .redeem(authed(
            "alice",
            RedeemRequest {
                item_id: reward.id.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("no points");
    assert_eq!(poor.code(), Code::FailedPrecondition);
    assert!(
        poor.message().contains("balance is 0"),
        "{}",
        poor.message()
    );
    // Bad input names the field.
    for (cost, field) in [(0, "cost"), (10_001, "cost")] {
        let e = game
            .create_reward(authed(
                "alice",
                CreateRewardRequest {
                    name: "x".into(),
                    description: String::new(),
                    cost,
                },
            ))
            .await
            .expect_err("bad cost");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(field), "{}", e.message());
    }
    let e = game
        .update_reward(authed(
            "alice",
            UpdateRewardRequest {
                reward: Some(changed),
                update_mask: Some(FieldMask {
                    paths: vec!["price".into()],
                }),
            },
        ))
        .await
        .expect_err("unknown path");
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = game
        .redeem(authed(
            "alice",
            RedeemRequest {
                item_id: "no-such-item".into(),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("unknown item");
    assert_eq!(e.code(), Code::NotFound);
    server.stop().await;
}
