//! The cache port and its backends: [`MemoryCache`] (in-process, bounded,
//! TTL per entry), [`RedisCache`] (shared across instances), and
//! [`ResilientCache`], which uses Redis while it answers and falls back to
//! memory, without waiting, while it does not. [`NamedCache`] gives each use
//! of the design (chain results, user context, vector search) its own key
//! space and TTL.

mod budget;
mod memory;
mod named;
mod redis;
mod resilient;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

use async_trait::async_trait;

pub use budget::RedisBudget;
pub use memory::MemoryCache;
pub use named::{CacheNames, NamedCache};
pub use redis::{RedisCache, RedisSettings, pool as redis_pool};
pub use resilient::{BreakerSettings, CacheStatus, ResilientCache};

#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The backend did not answer, or answered with an error.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The configuration cannot work (a malformed URL, ...).
    #[error("cache configuration: {0}")]
    Config(String),
}

/// The port. Values are opaque bytes; every entry has a time to live.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
}
