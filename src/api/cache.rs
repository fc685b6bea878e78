//! A cache of serialized catalogue responses (list and details), the hottest reads.
//!
//! An entry is valid while the catalogue generation is unchanged (every write this replica commits
//! changes it, so its own writes are visible at once) and for at most `cache_ttl_ms`, which bounds how
//! long a write made by another replica can go unseen. Bookings themselves never rely on it: they are
//! decided in the database. Size is bounded in bytes.
//!
//! quick_cache rather than moka here: a hit is the whole request on this path (tens of thousands per
//! second), and moka's per-read bookkeeping cost a measured ~20 % of the details throughput in
//! `bench/load.sh`. The TTL is a stored instant compared on read, which is all it needs.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use serde::Serialize;

use super::ApiContext;
use crate::error::{Error, Result};
use crate::market::system::catalogue_generation;

/// Bodies and keys held at most; a full list of 500 GPUs is about half a megabyte.
const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// A guess of the entries held, which sizes the cache's shards.
const ESTIMATED_ENTRIES: usize = 4_096;

#[derive(Clone)]
struct Entry {
    generation: u64,
    stored: Instant,
    body: Bytes,
}

/// An entry weighs its key and body in bytes.
#[derive(Clone)]
struct ByBytes;

impl Weighter<String, Entry> for ByBytes {
    fn weight(&self, key: &String, entry: &Entry) -> u64 {
        (key.len() + entry.body.len()) as u64
    }
}

pub struct ResponseCache {
    ttl: Duration,
    /// None when the TTL is zero: caching is off.
    entries: Option<Cache<String, Entry, ByBytes>>,
}

impl ResponseCache {
    pub fn new(ttl: Duration) -> Self {
        let entries =
            (!ttl.is_zero()).then(|| Cache::with_weighter(ESTIMATED_ENTRIES, MAX_BYTES, ByBytes));
        Self { ttl, entries }
    }

    pub fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    pub fn get(&self, key: &str, generation: u64) -> Option<Bytes> {
        let entry = self.entries.as_ref()?.get(key)?;
        (entry.generation == generation && entry.stored.elapsed() < self.ttl).then_some(entry.body)
    }

    /// Stores a body computed from data read at `generation` (read before the data, so a write that
    /// lands meanwhile makes the entry stale rather than wrongly fresh).
    pub fn put(&self, key: String, generation: u64, body: Bytes) {
        if let Some(entries) = &self.entries {
            let entry = Entry {
                generation,
                stored: Instant::now(),
                body,
            };
            entries.insert(key, entry);
        }
    }
}

/// Answers from the cache, or computes, serializes and stores the body.
pub async fn cached_json<T, F>(context: &ApiContext, key: String, compute: F) -> Result<Response>
where
    T: Serialize,
    F: Future<Output = Result<T>>,
{
    let generation = catalogue_generation(&context.market);
    let body = match context.cache.get(&key, generation) {
        Some(body) => body,
        None => {
            let value = compute.await?;
            let body = Bytes::from(
                serde_json::to_vec(&value).map_err(|err| Error::Internal(err.to_string()))?,
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
        assert!(!cache.enabled());
        cache.put("k".into(), 1, Bytes::from_static(b"[]"));
        assert!(cache.get("k", 1).is_none());
    }

    #[test]
    fn a_newer_body_replaces_a_stale_one() {
        let cache = ResponseCache::new(Duration::from_secs(60));
        cache.put("k".into(), 1, Bytes::from_static(b"[1]"));
        cache.put("k".into(), 2, Bytes::from_static(b"[2]"));
        assert_eq!(cache.get("k", 2).as_deref(), Some(&b"[2]"[..]));
    }
}
