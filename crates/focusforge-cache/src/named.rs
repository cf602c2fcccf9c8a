use std::sync::Arc;
use std::time::Duration;

use crate::{Cache, CacheError};

/// One use of the cache: its own key prefix and time to live.
#[derive(Clone)]
pub struct NamedCache {
    cache: Arc<dyn Cache>,
    prefix: &'static str,
    ttl: Duration,
}

impl NamedCache {
    pub fn new(cache: Arc<dyn Cache>, prefix: &'static str, ttl: Duration) -> Self {
        Self { cache, prefix, ttl }
    }

    fn key(&self, key: &str) -> String {
        format!("ff:{}:{key}", self.prefix)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.cache.get(&self.key(key)).await
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), CacheError> {
        self.cache.set(&self.key(key), value, self.ttl).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.cache.delete(&self.key(key)).await
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// The caches of the design.
#[derive(Clone)]
pub struct CacheNames {
    /// Results of AI chains: 30 minutes by default.
    pub chain_results: NamedCache,
    /// What services need about a user, for the length of a session.
    pub user_context: NamedCache,
    /// Vector search results: configurable.
    pub vector_search: NamedCache,
}

impl CacheNames {
    pub fn new(
        cache: Arc<dyn Cache>,
        session: Duration,
        vector_search: Duration,
        chain_results: Duration,
    ) -> Self {
        Self {
            chain_results: NamedCache::new(cache.clone(), "chain", chain_results),
            user_context: NamedCache::new(cache.clone(), "user", session),
            vector_search: NamedCache::new(cache, "vector", vector_search),
        }
    }
}
