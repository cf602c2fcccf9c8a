use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::AsyncCommands;
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};

use crate::{Cache, CacheError};

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db` (or `rediss://` for TLS).
    pub url: String,
    pub pool_size: usize,
    /// Bounds every command, connecting included: a request never waits
    /// longer than this on Redis.
    pub timeout: Duration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            pool_size: 16,
            timeout: Duration::from_millis(250),
        }
    }
}

/// A deadpool of Redis connections where waiting for, creating and
/// recycling a connection are each bounded by `timeout`. No connection is
/// made until the first command. The error says what is wrong with the URL.
pub fn pool(url: &str, size: usize, timeout: Duration) -> Result<Pool, String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(format!(
            "redis url must start with redis:// or rediss://, got {url:?}"
        ));
    }
    let mut cfg = Config::from_url(url.to_owned());
    let mut pool = PoolConfig::new(size);
    pool.timeouts = Timeouts {
        wait: Some(timeout),
        create: Some(timeout),
        recycle: Some(timeout),
    };
    cfg.pool = Some(pool);
    cfg.create_pool(Some(Runtime::Tokio1))
        .map_err(|e| e.to_string())
}

/// A cache in Redis, shared by every instance that points at it.
#[derive(Clone)]
pub struct RedisCache {
    pool: Pool,
    timeout: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

impl RedisCache {
    /// Builds the pool; no connection is made until the first command.
    pub fn new(settings: &RedisSettings) -> Result<Self, CacheError> {
        let pool = pool(&settings.url, settings.pool_size, settings.timeout)
            .map_err(CacheError::Config)?;
        Ok(Self {
            pool,
            timeout: settings.timeout,
        })
    }

    async fn run<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: std::future::Future<Output = Result<T, deadpool_redis::redis::RedisError>>,
    {
        let work = async {
            let conn = self.pool.get().await.map_err(unavailable)?;
            op(conn).await.map_err(unavailable)
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| CacheError::Unavailable("redis timed out".into()))?
    }

    /// Round-trips a PING.
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.run(|mut c| async move {
            deadpool_redis::redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.run(|mut c| async move { c.get::<_, Option<Vec<u8>>>(key).await })
            .await
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run(|mut c| async move { c.pset_ex::<_, _, ()>(key, value, ms).await })
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.run(|mut c| async move { c.del::<_, ()>(key).await })
            .await
    }
}
