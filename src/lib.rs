//! gpu-market: a GPU rental marketplace backend.
//!
//! `api` speaks HTTP, `market` holds the rules, `store` the SQL, `policy` the operator-replaceable
//! decisions; `server` wires them together and runs the background tasks.

pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod market;
pub mod metrics;
pub mod policy;
pub mod request_context;
pub mod server;
pub mod sim;
pub mod store;
