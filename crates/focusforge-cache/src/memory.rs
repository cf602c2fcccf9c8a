use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache as Moka;

use crate::{Cache, CacheError};

#[derive(Clone)]
struct Entry {
    bytes: Arc<Vec<u8>>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Entry, _at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Entry,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// An in-process cache bounded by total bytes, each entry with its own TTL.
#[derive(Clone)]
pub struct MemoryCache(Moka<String, Entry>);

impl MemoryCache {
    pub fn new(max_bytes: u64) -> Self {
        Self(
            Moka::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, v: &Entry| {
                    u32::try_from(k.len() + v.bytes.len()).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .build(),
        )
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self.0.get(key).await.map(|e| e.bytes.as_ref().clone()))
    }

    async fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        let entry = Entry {
            bytes: Arc::new(value),
            ttl,
        };
        self.0.insert(key.to_owned(), entry).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.0.invalidate(key).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_expire_after_their_own_ttl() {
        let cache = MemoryCache::new(1 << 20);
        cache
            .set("short", b"a".to_vec(), Duration::from_millis(500))
            .await
            .ok();
        cache
            .set("long", b"b".to_vec(), Duration::from_secs(60))
            .await
            .ok();
        assert_eq!(cache.get("short").await.ok().flatten(), Some(b"a".to_vec()));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(cache.get("short").await.ok().flatten(), None);
        assert_eq!(cache.get("long").await.ok().flatten(), Some(b"b".to_vec()));
        cache.delete("long").await.ok();
        assert_eq!(cache.get("long").await.ok().flatten(), None);
    }

    #[tokio::test]
    async fn size_is_bounded() {
        let cache = MemoryCache::new(10_000);
        for i in 0..100 {
            cache
                .set(&format!("k{i}"), vec![0; 1000], Duration::from_secs(60))
                .await
                .ok();
        }
        cache.0.run_pending_tasks().await;
        assert!(
            cache.0.weighted_size() <= 10_000,
            "{}",
            cache.0.weighted_size()
        );
    }
}
