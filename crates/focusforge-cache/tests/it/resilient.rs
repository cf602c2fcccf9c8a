use std::sync::Arc;
use std::time::Duration;

use focusforge_cache::{
    BreakerSettings, Cache, CacheNames, MemoryCache, RedisCache, RedisSettings, ResilientCache,
};

use focusforge_cache::testing::RedisServer;

const TTL: Duration = Duration::from_secs(60);

fn resilient(server: &RedisServer, open_for: Duration) -> ResilientCache {
    let redis = RedisCache::new(&RedisSettings {
        url: server.url(),
        timeout: Duration::from_secs(1),
        ..RedisSettings::default()
    })
    .expect("pool");
    let breaker = BreakerSettings {
        open_for,
        ..BreakerSettings::default()
    };
    ResilientCache::new(Some(redis), MemoryCache::new(1 << 20), breaker)
}

async fn eventually_healthy(cache: &ResilientCache) {
    for _ in 0..200 {
        // Any call lets the breaker probe once its open time is over.
        let _ = cache.get("probe").await;
        if !cache.status().degraded {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the cache never went back to redis: {:?}", cache.status());
}

#[tokio::test]
async fn redis_cache_round_trips_and_expires() {
    let server = RedisServer::start();
    let cache = RedisCache::new(&RedisSettings {
        url: server.url(),
        ..RedisSettings::default()
    })
    .expect("pool");
    cache.ping().await.expect("ping");
    cache.set("k", b"v".to_vec(), TTL).await.expect("set");
    assert_eq!(cache.get("k").await.expect("get"), Some(b"v".to_vec()));
    assert_eq!(
        server.raw_get("k"),
        Some(b"v".to_vec()),
        "stored in redis itself"
    );
    cache
        .set("short", b"x".to_vec(), Duration::from_millis(50))
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(cache.get("short").await.expect("get"), None);
    cache.delete("k").await.expect("delete");
    assert_eq!(cache.get("k").await.expect("get"), None);
}

#[tokio::test]
async fn malformed_urls_are_configuration_errors() {
    for url in ["http://localhost:6379", "localhost", ""] {
        let settings = RedisSettings {
            url: url.into(),
            ..RedisSettings::default()
        };
        assert!(RedisCache::new(&settings).is_err(), "{url:?}");
    }
}

#[tokio::test]
async fn requests_keep_succeeding_while_redis_is_killed_and_use_it_again_when_it_returns() {
    let mut server = RedisServer::start();
    let cache = resilient(&server, Duration::from_millis(300));

    cache.set("a", b"1".to_vec(), TTL).await.expect("set");
    assert_eq!(
        server.raw_get("a"),
        Some(b"1".to_vec()),
        "healthy: entries live in redis"
    );
    assert!(!cache.status().degraded);
    assert_eq!(cache.status().fallbacks, 0);

    server.kill();
    // Every call still succeeds; reads fall back to the in-process copy.
    assert_eq!(
        cache.get("a").await.expect("get during outage"),
        Some(b"1".to_vec())
    );
    for i in 0..50 {
        let key = format!("during-{i}");
        cache
            .set(&key, b"x".to_vec(), TTL)
            .await
            .expect("set during outage");
        assert_eq!(cache.get(&key).await.expect("get"), Some(b"x".to_vec()));
    }
    let status = cache.status();
    assert!(status.degraded, "{status:?}");
    assert!(status.fallbacks >= 100, "{status:?}");

    server.restart();
    eventually_healthy(&cache).await;
    cache.set("b", b"2".to_vec(), TTL).await.expect("set");
    assert_eq!(server.raw_get("b"), Some(b"2".to_vec()), "back on redis");
}

#[tokio::test]
async fn deletes_during_an_outage_are_replayed_so_nothing_stale_is_served() {
    let mut server = RedisServer::start();
    let cache = resilient(&server, Duration::from_millis(200));
    cache
        .set("profile:alice", b"old".to_vec(), TTL)
        .await
        .expect("set");

    // Redis goes away and the entry is invalidated during the outage.
    server.kill();
    cache
        .delete("profile:alice")
        .await
        .expect("delete during outage");
    assert_eq!(cache.get("profile:alice").await.expect("get"), None);

    server.restart();
    // A stale copy survives the outage in redis (persistence, a replica).
    let redis = RedisCache::new(&RedisSettings {
        url: server.url(),
        ..RedisSettings::default()
    })
    .expect("pool");
    redis
        .set("profile:alice", b"old".to_vec(), TTL)
        .await
        .expect("stale copy");

    eventually_healthy(&cache).await;
    assert_eq!(
        cache.get("profile:alice").await.expect("get"),
        None,
        "the delete was replayed"
    );
    assert_eq!(server.raw_get("profile:alice"), None);
}

#[tokio::test]
async fn redis_down_from_the_start_is_served_from_memory() {
    let mut server = RedisServer::start();
    server.kill();
    let cache = resilient(&server, Duration::from_secs(60));
    cache.set("k", b"v".to_vec(), TTL).await.expect("set");
    assert_eq!(cache.get("k").await.expect("get"), Some(b"v".to_vec()));
    assert!(cache.status().degraded);
}

#[tokio::test]
async fn without_redis_the_memory_cache_is_never_degraded() {
    let cache = ResilientCache::new(None, MemoryCache::new(1 << 20), BreakerSettings::default());
    cache.set("k", b"v".to_vec(), TTL).await.expect("set");
    assert_eq!(cache.get("k").await.expect("get"), Some(b"v".to_vec()));
    let status = cache.status();
    assert_eq!(
        (status.backend, status.degraded, status.fallbacks),
        ("memory", false, 0)
    );
}

#[tokio::test]
async fn named_caches_keep_their_keys_apart() {
    let memory: Arc<dyn Cache> = Arc::new(MemoryCache::new(1 << 20));
    let names = CacheNames::new(
        memory,
        Duration::from_secs(3600),
        Duration::from_secs(300),
        Duration::from_secs(1800),
    );
    names
        .user_context
        .set("alice", b"ctx".to_vec())
        .await
        .expect("set");
    assert_eq!(names.chain_results.get("alice").await.expect("get"), None);
    assert_eq!(
        names.user_context.get("alice").await.expect("get"),
        Some(b"ctx".to_vec())
    );
    assert_eq!(names.chain_results.ttl(), Duration::from_secs(30 * 60));
}

#[tokio::test]
async fn a_probe_closes_the_breaker_without_traffic_or_counting_fallbacks() {
    let mut server = RedisServer::start();
    let cache = resilient(&server, Duration::from_millis(100));
    server.kill();
    let _ = cache.get("k").await;
    let fallbacks = cache.status().fallbacks;
    assert!(cache.status().degraded);
    server.restart();
    for _ in 0..100 {
        cache.probe().await;
        if !cache.status().degraded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!cache.status().degraded, "{:?}", cache.status());
    assert_eq!(
        cache.status().fallbacks,
        fallbacks,
        "probes are not fallbacks"
    );
}
