//! Rate limits per caller and method class, shared through Redis across
//! replicas, and load shedding: over gRPC, Connect and plain HTTP.

use std::time::Duration;

use bytes::Bytes;
use focusforge_cache::testing::RedisServer;
use focusforge_proto::chain::v1::MotivateRequest;
use focusforge_proto::chain::v1::chain_service_client::ChainServiceClient;
use focusforge_proto::events::v1::SubscribeRequest;
use focusforge_proto::events::v1::event_service_client::EventServiceClient;
use focusforge_proto::tasks::v1::ListTasksRequest;
use focusforge_server::config::{Config, RateClassConfig};
use http::Request;
use http_body_util::{BodyExt, Full};
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::{Http, Server, authed, bearer, config, send, token};

/// Limits small enough to reach in a test: `burst` calls, then one a second.
fn limited(dir: &tempfile::TempDir, burst: u32) -> Config {
    let mut cfg = config(dir);
    cfg.rate_limits.per_second = 1.0;
    cfg.rate_limits.burst = burst;
    cfg.rate_limits.anonymous_per_second = 1.0;
    cfg.rate_limits.anonymous_burst = burst;
    cfg.rate_limits.classes.insert(
        "ai".into(),
        RateClassConfig {
            per_second: 0.5,
            burst: 2,
            methods: vec!["focusforge.chain.v1.ChainService".into()],
        },
    );
    cfg
}

async fn list(server: &Server, user: &str) -> Result<(), tonic::Status> {
    server
        .tasks()
        .await
        .list_tasks(authed(user, ListTasksRequest::default()))
        .await
        .map(|_| ())
}

/// The retry delay a refusal carries in `google.rpc.RetryInfo`.
fn retry_delay(status: &tonic::Status) -> Duration {
    status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .unwrap_or_else(|| panic!("no RetryInfo in {status:?}"))
}

#[tokio::test]
async fn a_users_budget_runs_out_says_when_to_retry_and_never_blocks_another_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = limited(&dir, 5);
    let server = Server::start_in(dir, cfg).await;

    for i in 0..5 {
        list(&server, "ada")
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e:?}"));
    }
    let refused = list(&server, "ada")
        .await
        .expect_err("the sixth call is over the burst");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("default"),
        "{}",
        refused.message()
    );
    let delay = retry_delay(&refused);
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "retry in {delay:?}"
    );

    // Another user has a budget of their own.
    for _ in 0..5 {
        list(&server, "grace")
            .await
            .expect("another user is not limited");
    }

    // After the delay the user has one call again, and only one.
    tokio::time::sleep(delay + Duration::from_millis(20)).await;
    list(&server, "ada")
        .await
        .expect("a call after the retry delay");
    let again = list(&server, "ada").await.expect_err("one call came back");
    assert_eq!(again.code(), Code::ResourceExhausted);

    let metrics = reqwest_text(&server, "/metrics").await;
    let rejected = metric(&metrics, "focusforge_gateway_rate_limited_total");
    assert!(rejected >= 2.0, "{rejected} rejections counted");
    server.stop().await;
}

#[tokio::test]
async fn the_ai_class_has_its_own_smaller_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = limited(&dir, 50);
    let server = Server::start_in(dir, cfg).await;
    let mut chain = ChainServiceClient::new(server.channel().await);

    for i in 0..2 {
        let res = chain
            .motivate(authed("ada", MotivateRequest::default()))
            .await;
        if let Err(e) = &res {
            assert_ne!(e.code(), Code::ResourceExhausted, "chain call {i}: {e:?}");
        }
    }
    let refused = chain
        .motivate(authed("ada", MotivateRequest::default()))
        .await
        .expect_err("the third chain call is over the ai burst");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("ai"), "{}", refused.message());
    // The ai class refills at one call per two seconds.
    let delay = retry_delay(&refused);
    assert!(
        delay > Duration::from_secs(1) && delay <= Duration::from_secs(2),
        "{delay:?}"
    );

    // Cheap calls still go: a spent ai budget is not the default one.
    for _ in 0..10 {
        list(&server, "ada")
            .await
            .expect("task calls are in the default class");
    }
    server.stop().await;
}

#[tokio::test]
async fn calls_without_a_verified_user_spend_their_addresss_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = limited(&dir, 3);
    let server = Server::start_in(dir, cfg).await;

    // Wrong tokens are UNAUTHENTICATED until the address has spent its
    // budget; guessing is then refused outright.
    for _ in 0..3 {
        let e = server
            .tasks()
            .await
            .list_tasks(bearer("not-a-token", ListTasksRequest::default()))
            .await
            .expect_err("a bad token");
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    let e = server
        .tasks()
        .await
        .list_tasks(bearer("not-a-token", ListTasksRequest::default()))
        .await
        .expect_err("over the anonymous budget");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("anonymous"), "{}", e.message());
    retry_delay(&e);

    // A verified user from the same address is not held up by it.
    list(&server, "ada").await.expect("a verified user");

    // Plain HTTP without a token (MCP here) is limited the same way: 429 with
    // retry-after.
    let res = mcp_without_token(&server).await;
    assert_eq!(res.0, 429, "{}", res.2);
    let retry_after: u64 = res.1.parse().expect("retry-after in seconds");
    assert!((1..=2).contains(&retry_after), "retry-after {retry_after}");
    server.stop().await;
}

#[tokio::test]
async fn connect_clients_get_resource_exhausted_with_retry_info_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = limited(&dir, 1);
    let server = Server::start_in(dir, cfg).await;
    let auth = format!("Bearer {}", token("ada"));
    let post = || {
        Request::post(format!(
            "http://{}/focusforge.tasks.v1.TaskService/ListTasks",
            server.addr
        ))
        .header("content-type", "application/json")
        .header("authorization", &auth)
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("set-up")
    };
    let first = send(server.addr, post(), Http::V1).await;
    assert_eq!(first.status(), 200);
    let second = send(server.addr, post(), Http::V1).await;
    assert_eq!(
        second.status(),
        429,
        "Connect maps resource_exhausted to 429"
    );
    let body = second.into_body().collect().await.expect("body").to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("a Connect error body");
    assert_eq!(json["code"], "resource_exhausted", "{json}");
    let details = json["details"].as_array().expect("details");
    assert!(
        details.iter().any(|d| d["type"] == "google.rpc.RetryInfo"),
        "{json}"
    );
    server.stop().await;
}

#[tokio::test]
async fn with_redis_one_budget_holds_across_replicas_and_each_process_carries_on_without_it() {
    let mut redis = RedisServer::start();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut cfg_a = limited(&dir_a, 4);
    cfg_a.redis.url = Some(redis.url());
    let mut cfg_b = limited(&dir_b, 4);
    cfg_b.redis.url = Some(redis.url());
    let a = Server::start_in(dir_a, cfg_a).await;
    let b = Server::start_in(dir_b, cfg_b).await;

    list(&a, "ada").await.expect("1 on a");
    list(&b, "ada").await.expect("2 on b");
    list(&a, "ada").await.expect("3 on a");
    list(&b, "ada").await.expect("4 on b");
    for server in [&a, &b] {
        let e = list(server, "ada")
            .await
            .expect_err("the fifth, on either replica");
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    }
    list(&a, "grace").await.expect("another user");

    // Redis gone: each process limits on its own and keeps answering.
    redis.kill();
    for i in 0..4 {
        list(&a, "linus")
            .await
            .unwrap_or_else(|e| panic!("call {i} with redis away: {e:?}"));
    }
    let e = list(&a, "linus")
        .await
        .expect_err("the process's own budget");
    assert_eq!(e.code(), Code::ResourceExhausted);
    let metrics = reqwest_text(&a, "/metrics").await;
    assert!(metric(&metrics, "focusforge_gateway_rate_limit_fallbacks_total") >= 1.0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn past_the_in_flight_bound_calls_are_refused_at_once_and_health_still_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.connections.max_calls_in_flight = 2;
    let server = Server::start_in(dir, cfg).await;

    // Two subscriptions hold both places.
    let mut events = EventServiceClient::new(server.channel().await);
    let s1 = events
        .subscribe(authed("ada", SubscribeRequest::default()))
        .await
        .expect("first stream");
    let s2 = events
        .subscribe(authed("grace", SubscribeRequest::default()))
        .await
        .expect("second stream");

    let started = std::time::Instant::now();
    let shed = list(&server, "linus").await.expect_err("no place left");
    assert_eq!(shed.code(), Code::Unavailable, "{shed:?}");
    assert!(shed.message().contains("in flight"), "{}", shed.message());
    retry_delay(&shed);
    // Refused, not queued: well under the 10 s a queued call would wait.
    assert!(started.elapsed() < Duration::from_secs(5));

    let health = reqwest_text(&server, "/metrics").await;
    assert_eq!(metric(&health, "focusforge_gateway_in_flight"), 2.0);
    assert!(metric(&health, "focusforge_gateway_shed_total") >= 1.0);
    let mut probe = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    probe
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is never shed");

    // Closing the streams gives the places back.
    drop(s1);
    drop(s2);
    crate::harness::eventually("places given back", || async {
        list(&server, "linus").await.is_ok()
    })
    .await;
    server.stop().await;
}

async fn reqwest_text(server: &Server, path: &str) -> String {
    let req = Request::get(format!("http://{}{path}", server.addr))
        .body(Full::new(Bytes::new()))
        .expect("set-up");
    let res = send(server.addr, req, Http::V1).await;
    let body = res.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

/// An MCP call without a token: (status, retry-after, body), after the
/// address's budget was spent by the gRPC calls before it.
async fn mcp_without_token(server: &Server) -> (u16, String, String) {
    let req = Request::post(format!("http://{}/mcp", server.addr))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )))
        .expect("set-up");
    let res = send(server.addr, req, Http::V1).await;
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, retry, String::from_utf8_lossy(&body).into_owned())
}
