//! Who is calling. Keys come from the config; with none configured the server runs in local mode, where
//! only loopback peers are served and each is principal `local` with every role.

use std::net::SocketAddr;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;

use super::ApiContext;
use super::forwarded::{self, CallerAddr, Untrusted};
use crate::config::{Config, KeyHash, Role};
use crate::error::Error;
use crate::market::Principal;

pub const API_KEY_HEADER: &str = "x-api-key";
pub const MINER_ID_HEADER: &str = "x-miner-id";
pub const LOCAL_PRINCIPAL: &str = "local";

/// The configured keys, as hashes only: what a caller presents is hashed and compared with each.
pub struct Auth {
    keys: Vec<(KeyHash, Principal)>,
}

impl Auth {
    pub fn from_config(config: &Config) -> Self {
        let keys = config
            .keys
            .iter()
            .filter_map(|k| {
                // `Config::validate` refused malformed hashes already.
                let hash = KeyHash::from_config(k.key.expose()).ok()?;
                let principal = Principal::new(k.principal.as_str(), k.roles.iter().copied());
                Some((hash, principal))
            })
            .collect();
        Self { keys }
    }

    /// The key's owner; every configured key is compared (in constant time), matched or not, so the
    /// time taken does not depend on which key, or how much of one, matched.
    fn find(&self, key: &str) -> Option<Principal> {
        let presented = KeyHash::of_key(key);
        let mut found = None;
        for (hash, principal) in &self.keys {
            if hash.matches(&presented) {
                found = Some(principal);
            }
        }
        found.cloned()
    }

    pub fn local_mode(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn authenticate(&self, key: Option<&str>) -> Result<Principal, Error> {
        if self.local_mode() {
            return Ok(Principal::new(
                LOCAL_PRINCIPAL,
                [Role::Client, Role::Miner, Role::Admin],
            ));
        }
        // An empty header is what the aitbc client sends when its user has no key.
        match key.filter(|k| !k.is_empty()) {
            None => Err(Error::Unauthorized(
                "an API key is required (X-Api-Key header)".into(),
            )),
            Some(key) => self
                .find(key)
                .ok_or_else(|| Error::Unauthorized("invalid API key".into())),
        }
    }
}

/// The `X-Api-Key` header, if readable.
pub fn api_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok())
}

/// The peer address: the connection's, or what an in-process caller stated with `MockConnectInfo`.
pub fn peer_addr(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0))
}

/// The authenticated caller of an endpoint that needs one.
pub struct Caller(pub Principal);

impl FromRequestParts<ApiContext> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        state.auth.authenticate(api_key(&parts.headers)).map(Caller)
    }
}

/// A caller with the admin role: the one role check of the admin endpoints (401 without a valid key,
/// 403 without the role), made before anything else of the request is read.
pub struct Admin(pub Principal);

impl FromRequestParts<ApiContext> for Admin {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let Caller(caller) = Caller::from_request_parts(parts, state).await?;
        caller.require_admin()?;
        Ok(Admin(caller))
    }
}

/// The `X-Miner-ID` header, which an admin may use to register a GPU for a miner.
pub fn miner_id_header(parts: &axum::http::HeaderMap) -> Option<String> {
    parts
        .get(MINER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Resolves the caller's address ([`CallerAddr`]: the peer, or what a trusted proxy forwarded) and,
/// in local mode, refuses every caller that is not on a loopback address, and every forwarded request
/// that did not come through a trusted proxy (a proxy on the same host would make everyone local).
pub fn admit(state: &ApiContext, request: &mut Request) -> Result<(), Error> {
    let peer = peer_addr(request.extensions());
    let config = state.config();
    let guarded = state.auth.local_mode() && !config.allow_open_access;
    let caller = match peer
        .map(|p| forwarded::caller(request.headers(), p.ip(), &config.trusted_proxies))
    {
        Some(Ok(ip)) => Some(ip),
        Some(Err(untrusted)) if guarded => {
            let why = match untrusted {
                Untrusted::Proxy(proxy) => {
                    format!("the request was forwarded by {proxy}, which is not in trusted_proxies")
                }
                Untrusted::Unreadable(hop) => {
                    format!("the forwarded address {hop:?} is not an IP address")
                }
            };
            return Err(Error::forbidden(format!(
                "this server runs in local mode (no API keys configured) and only serves loopback callers; {why}"
            )));
        }
        // With keys, forwarding headers decide nothing about access: the peer stays the caller.
        Some(Err(_)) => peer.map(|p| p.ip().to_canonical()),
        None => None,
    };
    if guarded && !caller.is_some_and(|ip| ip.is_loopback()) {
        return Err(Error::forbidden(
            "this server runs in local mode (no API keys configured) and only serves loopback callers",
        ));
    }
    if let Some(ip) = caller {
        request.extensions_mut().insert(CallerAddr(ip));
    }
    Ok(())
}
