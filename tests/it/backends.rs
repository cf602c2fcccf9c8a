use focusforge_cache::testing::RedisServer;
use focusforge_proto::tasks::v1::{CreateTaskRequest, GetTaskRequest, ListTasksRequest};
use focusforge_proto::users::v1::{GetProfileRequest, Preferences, Profile, UpdateProfileRequest};
use http::Request;
use http_body_util::{BodyExt, Full};
use prost_types::FieldMask;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::{Http, Server, authed, config, eventually, send};

pub fn mongo_uri() -> String {
    std::env::var("FOCUSFORGE_TEST_MONGODB_URI").unwrap_or_else(|_| {
        panic!(
            "FOCUSFORGE_TEST_MONGODB_URI is not set: start a MongoDB-wire-compatible server \
             (`pip install SecantusDB==0.7.0b3` gives `secantusd-py`) and point it there; \
             scripts/test does this"
        )
    })
}

async fn component(server: &Server, name: &str) -> Option<i32> {
    let mut client = HealthClient::new(server.channel().await);
    client
        .check(HealthCheckRequest {
            service: name.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

async fn metrics(server: &Server) -> String {
    let req = Request::get(format!("http://{}/metrics", server.addr))
        .body(Full::default())
        .expect("req");
    let res = send(server.addr, req, Http::V1).await;
    let body = res.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn set_focus(minutes: i32) -> UpdateProfileRequest {
    UpdateProfileRequest {
        profile: Some(Profile {
            preferences: Some(Preferences {
                focus_minutes: minutes,
                ..Default::default()
            }),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["preferences.focus_minutes".into()],
        }),
    }
}

#[tokio::test]
async fn tasks_live_in_mongodb_and_survive_a_restart_with_a_fresh_data_dir() {
    let database = format!("ff_e2e_{:016x}", rand_u64());
    let start = |database: String| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(&dir);
        cfg.mongodb.uri = Some(mongo_uri());
        cfg.mongodb.database = database;
        Server::start_in(dir, cfg).await
    };
    let server = start(database.clone()).await;
    assert_eq!(
        component(&server, "focusforge.store.mongodb").await,
        Some(ServingStatus::Serving as i32)
    );
    assert_eq!(
        component(&server, "focusforge.store.sqlite").await,
        None,
        "not the embedded store"
    );
    let mut tasks = server.tasks().await;
    let id = tasks
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "in mongo".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task")
        .id;
    let bob = tasks
        .get_task(authed("bob", GetTaskRequest { id: id.clone() }))
        .await
        .expect_err("bob");
    assert_eq!(bob.code(), Code::NotFound);
    server.stop().await;

    // A new process with an empty data directory: the state is in MongoDB.
    let server = start(database).await;
    let task = server
        .tasks()
        .await
        .get_task(authed("alice", GetTaskRequest { id }))
        .await
        .expect("get after restart")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(task.title, "in mongo");
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_mongodb_is_unavailable_not_a_crash() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = dead.local_addr().expect("addr");
    drop(dead);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.mongodb.uri = Some(format!("mongodb://{addr}/?directConnection=true"));
    cfg.mongodb.timeout_ms = 300;
    let server = Server::start_in(dir, cfg).await;
    let err = server
        .tasks()
        .await
        .create_task(authed(
            "alice",
            CreateTaskRequest {
                title: "nowhere".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("no database");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        component(&server, "focusforge.store.mongodb").await,
        Some(ServingStatus::NotServing as i32)
    );
    assert_eq!(
        metric(&metrics(&server).await, "focusforge_store_reachable"),
        Some(0.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn profiles_keep_working_while_redis_is_killed_and_are_never_stale_after() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.redis.url = Some(redis.url());
    cfg.redis.breaker_open_ms = 200;
    // A killed server refuses at once; a live one may be slow on a busy machine.
    cfg.redis.timeout_ms = 2_000;
    let server = Server::start_in(dir, cfg).await;
    let mut users = server.users().await;

    users
        .get_profile(authed("alice", GetProfileRequest {}))
        .await
        .expect("get");
    assert!(
        redis.raw_get("ff:user:alice").is_some(),
        "the profile is cached in redis"
    );
    assert_eq!(
        component(&server, "focusforge.cache.redis").await,
        Some(ServingStatus::Serving as i32)
    );

    redis.kill();
    for minutes in [30, 35, 40] {
        users
            .update_profile(authed("alice", set_focus(minutes)))
            .await
            .expect("update during outage");
        let got = users
            .get_profile(authed("alice", GetProfileRequest {}))
            .await
            .expect("get during outage");
        let prefs = got
            .into_inner()
            .profile
            .expect("profile")
            .preferences
            .expect("prefs");
        assert_eq!(prefs.focus_minutes, minutes);
    }
    let text = metrics(&server).await;
    assert!(
        metric(&text, "focusforge_cache_fallbacks_total").unwrap_or_default() > 0.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "focusforge_cache_degraded"),
        Some(1.0),
        "{text}"
    );
    eventually("health to show the degraded cache", || async {
        component(&server, "focusforge.cache.redis").await == Some(ServingStatus::NotServing as i32)
    })
    .await;

    redis.restart();
    eventually("the cache to go back to redis", || async {
        component(&server, "focusforge.cache.redis").await == Some(ServingStatus::Serving as i32)
    })
    .await;
    let got = users
        .get_profile(authed("alice", GetProfileRequest {}))
        .await
        .expect("get after");
    assert_eq!(
        got.into_inner()
            .profile
            .expect("profile")
            .preferences
            .expect("prefs")
            .focus_minutes,
        40
    );
    assert!(
        redis.raw_get("ff:user:alice").is_some(),
        "cached in redis again"
    );
    let listed = server
        .tasks()
        .await
        .list_tasks(authed("alice", ListTasksRequest::default()))
        .await;
    assert!(listed.is_ok());
    server.stop().await;
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
