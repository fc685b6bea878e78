//! What protects the server from too much work: a deadline per request, a global cap on requests in
//! flight (beyond it 503 at once, no queue), and token buckets on writes per caller (429).
//!
//! A request over its deadline answers 503, not 408: 408 says the *client* was too slow to send its
//! request, while here the server did not finish in time; 503 with `Retry-After` tells clients and
//! proxies the same thing as the overload answer: try again shortly.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiContext;
use super::auth::{api_key, peer_addr};
use super::forwarded::CallerAddr;
use crate::config::RateLimitConfig;
use crate::error::Error;

/// Per-caller write buckets; `None` when the limit is off.
pub struct WriteLimiter {
    buckets: Option<DefaultKeyedRateLimiter<String>>,
}

impl WriteLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        let quota = (config.writes_per_second > 0.0)
            .then(|| Quota::with_period(Duration::from_secs_f64(1.0 / config.writes_per_second)))
            .flatten()
            .zip(NonZeroU32::new(config.write_burst))
            .map(|(quota, burst)| quota.allow_burst(burst));
        Self {
            buckets: quota.map(RateLimiter::keyed),
        }
    }

    /// Takes one token from `caller`'s bucket, or says how long until there is one.
    fn check(&self, caller: String) -> Result<(), Error> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        buckets.check_key(&caller).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Whole seconds, rounded up: a client that waits `Retry-After` finds a token.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Error::RateLimited {
                detail: "too many write requests; retry after the time given in Retry-After".into(),
                retry_after_seconds: seconds.max(1),
            }
        })
    }

    /// Forgets callers whose buckets are full again, so the map does not grow with every address.
    pub fn forget_idle(&self) {
        if let Some(buckets) = &self.buckets {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }
}

/// Whether a request spends a write token: every method but GET/HEAD/OPTIONS, except heartbeats,
/// which miners send on their own schedule and which change nothing a caller could abuse.
fn is_limited_write(request: &Request) -> bool {
    let method = request.method();
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return false;
    }
    request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|route| !route.as_str().ends_with("/heartbeat"))
}

/// Token buckets on writes: per key's principal, or per address for callers without a valid key.
/// Local mode (no keys, loopback only) is not limited.
pub fn take_write_token(ctx: &ApiContext, request: &Request) -> Result<(), Error> {
    let config = ctx.config();
    let local_only = ctx.auth.local_mode() && !config.allow_open_access;
    if local_only || !is_limited_write(request) {
        return Ok(());
    }
    let principal = (!ctx.auth.local_mode())
        .then(|| ctx.auth.authenticate(api_key(request.headers())).ok())
        .flatten();
    let caller = match principal {
        Some(principal) => format!("key:{}", principal.id),
        // The caller's address as the local-mode guard resolved it (what a trusted proxy forwarded),
        // else the peer's.
        None => match request.extensions().get::<CallerAddr>() {
            Some(CallerAddr(ip)) => format!("addr:{ip}"),
            None => match peer_addr(request.extensions()) {
                Some(addr) => format!("addr:{}", addr.ip().to_canonical()),
                None => "addr:unknown".to_owned(),
            },
        },
    };
    ctx.limiter.check(caller)
}

/// The answer beyond the cap on requests in flight.
pub fn overloaded() -> Error {
    Error::Unavailable {
        detail: "the server is at its limit of concurrent requests; retry shortly".into(),
        retry_after_seconds: 1,
    }
}

/// The answer of a request that did not finish within the server's deadline.
pub fn past_deadline() -> Error {
    Error::Unavailable {
        detail: "the request did not complete within the server's time limit; a write sent \
                 with an Idempotency-Key still completes, and retrying with the same key \
                 returns its answer"
            .into(),
        retry_after_seconds: 1,
    }
}
