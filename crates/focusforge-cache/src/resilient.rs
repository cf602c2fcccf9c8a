//! Redis first, memory when Redis is away. A circuit breaker keeps requests
//! off a dead Redis: after a failure it stays open for a short while, during
//! which every call goes straight to memory; then one call probes Redis and
//! either closes the breaker or opens it again. Deletes made while Redis was
//! away are replayed when it returns, so it never serves a value that was
//! invalidated during the outage.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{Cache, CacheError, MemoryCache, RedisCache};

#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// How long the breaker stays open before Redis is probed again.
    pub open_for: Duration,
    /// Most keys remembered for replay while Redis is away.
    pub max_pending_deletes: usize,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            open_for: Duration::from_secs(2),
            max_pending_deletes: 10_000,
        }
    }
}

/// What the cache is doing, for health, status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStatus {
    /// `redis` or `memory`: where entries are kept when all is well.
    pub backend: &'static str,
    /// Redis is configured but not answering: serving from memory.
    pub degraded: bool,
    /// Calls served from memory because Redis was unavailable.
    pub fallbacks: u64,
}

enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// One probe is in flight; others keep using memory.
    Probing,
}

struct Breaker {
    state: State,
    /// Keys deleted while Redis was away; `None` once too many to remember.
    pending_deletes: Option<HashSet<String>>,
}

pub struct ResilientCache {
    redis: Option<RedisCache>,
    memory: MemoryCache,
    settings: BreakerSettings,
    breaker: Mutex<Breaker>,
    fallbacks: AtomicU64,
}

enum Route {
    Redis { probe: bool },
    Memory,
}

impl ResilientCache {
    /// `redis: None` is the embedded default: memory only, never degraded.
    pub fn new(redis: Option<RedisCache>, memory: MemoryCache, settings: BreakerSettings) -> Self {
        Self {
            redis,
            memory,
            settings,
            breaker: Mutex::new(Breaker {
                state: State::Closed,
                pending_deletes: Some(HashSet::new()),
            }),
            fallbacks: AtomicU64::new(0),
        }
    }

    pub fn status(&self) -> CacheStatus {
        let b = self.lock();
        CacheStatus {
            backend: if self.redis.is_some() {
                "redis"
            } else {
                "memory"
            },
            degraded: self.redis.is_some() && !matches!(b.state, State::Closed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn route(&self) -> Route {
        if self.redis.is_none() {
            return Route::Memory;
        }
        let mut b = self.lock();
        match b.state {
            State::Closed => Route::Redis { probe: false },
            State::Open { until } if Instant::now() >= until => {
                b.state = State::Probing;
                Route::Redis { probe: true }
            }
            State::Open { .. } | State::Probing => Route::Memory,
        }
    }

    fn failed(&self, err: &CacheError) {
        self.open(err);
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn open(&self, err: &CacheError) {
        let mut b = self.lock();
        if matches!(b.state, State::Closed) {
            tracing::warn!(error = %err, "redis unavailable: caching in process until it returns");
        }
        b.state = State::Open {
            until: Instant::now() + self.settings.open_for,
        };
    }

    /// Checks Redis without serving a call: while the breaker is open and
    /// its time is up, a PING decides whether to close it. A monitor calls
    /// this so recovery does not wait for traffic.
    pub async fn probe(&self) {
        let Some(redis) = &self.redis else { return };
        let Route::Redis { probe } = self.route() else {
            return;
        };
        match redis.ping().await {
            Ok(()) if probe => {
                if let Err(e) = self.recovered(redis).await {
                    self.open(&e);
                }
            }
            Ok(()) => {}
            Err(e) => self.open(&e),
        }
    }

    fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// After a successful probe: replay the deletes of the outage, then close.
    async fn recovered(&self, redis: &RedisCache) -> Result<(), CacheError> {
        let pending = {
            let mut b = self.lock();
            b.pending_deletes.replace(HashSet::new())
        };
        match pending {
            Some(keys) => {
                for key in &keys {
                    if let Err(e) = redis.delete(key).await {
                        // Put them back; the next probe tries again.
                        self.lock().pending_deletes = Some(keys);
                        return Err(e);
                    }
                }
            }
            None => tracing::warn!(
                "more deletes than could be remembered happened while redis was away; \
                 entries invalidated then may be served until their TTL ends"
            ),
        }
        self.lock().state = State::Closed;
        tracing::info!("redis is back: caching there again");
        Ok(())
    }

    async fn with_redis<T>(
        &self,
        op: impl AsyncFnOnce(&RedisCache) -> Result<T, CacheError>,
    ) -> Option<T> {
        let redis = self.redis.as_ref()?;
        let probe = match self.route() {
            Route::Redis { probe } => probe,
            Route::Memory => {
                self.fallback();
                return None;
            }
        };
        let result = match op(redis).await {
            Ok(v) if probe => self.recovered(redis).await.map(|()| v),
            other => other,
        };
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    fn remember_delete(&self, key: &str) {
        if self.redis.is_none() {
            return;
        }
        let mut b = self.lock();
        let max = self.settings.max_pending_deletes;
        if let Some(keys) = b.pending_deletes.as_mut() {
            if keys.len() >= max {
                b.pending_deletes = None;
            } else {
                keys.insert(key.to_owned());
            }
        }
    }
}

#[async_trait]
impl Cache for ResilientCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        match self.with_redis(async |r| r.get(key).await).await {
            Some(found) => Ok(found),
            None => self.memory.get(key).await,
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        // Memory keeps a copy so an outage starts warm for recent entries.
        self.memory.set(key, value.clone(), ttl).await?;
        let _ = self
            .with_redis(async |r| r.set(key, value, ttl).await)
            .await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.memory.delete(key).await?;
        if self
            .with_redis(async |r| r.delete(key).await)
            .await
            .is_none()
        {
            self.remember_delete(key);
        }
        Ok(())
    }
}
