//! A small cache of serialized catalogue responses (list and details), the hottest reads.
//!
//! An entry is valid while the store's catalogue generation is unchanged (every write this replica
//! commits bumps it, so its own writes are visible at once) and for at most `cache_ttl_ms`, which
//! bounds how long a write made by another replica can go unseen. Bookings themselves never rely on
//! it: they are decided in the database.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// Entries beyond this are dropped wholesale; the catalogue's distinct queries are few in practice.
const MAX_ENTRIES: usize = 4_096;

struct Entry {
    generation: u64,
    stored: Instant,
    body: Bytes,
}

pub struct ResponseCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, Entry>>,
}

impl ResponseCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    pub fn get(&self, key: &str, generation: u64) -> Option<Bytes> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(key)?;
        (entry.generation == generation && entry.stored.elapsed() < self.ttl)
            .then(|| entry.body.clone())
    }

    /// Stores a body computed from data read at `generation` (read before the data, so a write that
    /// lands meanwhile makes the entry stale rather than wrongly fresh).
    pub fn put(&self, key: String, generation: u64, body: Bytes) {
        if !self.enabled() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                key,
                Entry {
                    generation,
                    stored: Instant::now(),
                    body,
                },
            );
        }
    }
}

/// Answers from the cache, or computes, serializes and stores the body.
pub async fn cached_json<T, F>(
    context: &super::ApiContext,
    key: String,
    compute: F,
) -> crate::error::Result<axum::response::Response>
where
    T: serde::Serialize,
    F: std::future::Future<Output = crate::error::Result<T>>,
{
    use axum::http::header::CONTENT_TYPE;
    use axum::response::IntoResponse;

    let generation = context.market.catalogue_generation();
    let body = match context.cache.get(&key, generation) {
        Some(body) => body,
        None => {
            let value = compute.await?;
            let body = Bytes::from(
                serde_json::to_vec(&value)
                    .map_err(|err| crate::error::Error::Internal(err.to_string()))?,
            );
            context.cache.put(key, generation, body.clone());
            body
        }
    };
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_dies_with_its_generation() {
        let cache = ResponseCache::new(Duration::from_secs(60));
        cache.put("k".into(), 1, Bytes::from_static(b"[]"));
        assert!(cache.get("k", 1).is_some());
        assert!(cache.get("k", 2).is_none());
    }

    #[test]
    fn an_entry_dies_with_its_ttl() {
        let cache = ResponseCache::new(Duration::from_millis(1));
        cache.put("k".into(), 1, Bytes::from_static(b"[]"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get("k", 1).is_none());
    }

    #[test]
    fn a_zero_ttl_disables_it() {
        let cache = ResponseCache::new(Duration::ZERO);
        cache.put("k".into(), 1, Bytes::from_static(b"[]"));
        assert!(cache.get("k", 1).is_none());
    }
}
