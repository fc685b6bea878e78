//! The WebAssembly policy runtime: each slot (pricing, booking timeout, review moderation) is served by
//! a sandboxed component from the policies directory, hot-reloaded, limited, and backed by the slot's
//! fallback whenever the module cannot give a valid answer.
//!
//! One mechanism, written once over [`SlotKind`]; what differs per slot is a small impl in `kinds/`.
//!
//! - `kinds`: the [`SlotKind`] trait and its three impls (bindings, conversions, contract checks,
//!   built-in rules, fallbacks, samples). `slot`: the [`Slot`] names used at run time.
//! - `engine`: one wasmtime engine, instance pool and call permits per slot kind (the slot's budget);
//!   `call`: one limited guest call, its answer budget and its failures (trap reasons);
//!   `limits`: per-slot limits; `module`: a checked version and its calls; `checks`: the checks
//!   every candidate passes; `cache`: the code this host compiled, kept on disk across restarts; `text`: [`guest_text`], the escaping of every guest-provided text.
//! - `cell`: one slot's serving state; `decide`: deciding (call, check, finish or fall back);
//!   `admin`: reload, upload, rollback, `policy check/test`, and the [`SlotAdmin`] view by [`Slot`].
//! - `runtime`: [`PolicyRuntime`], the three cells behind [`Policies`]; `host`: what the cells
//!   share (directory, metrics) and how a call runs under its slot's permit; `watch`: the directory
//!   watcher.
//! - `tenant`: simulation tenants (one reused instance per simulation); `strategy`: the built-in
//!   rules or a tenant, as a simulation lists the policies it compares.
//! - `signing`: ed25519 keys, signature files and the trusted keys every candidate is verified
//!   against (the first candidate check).
//! - `config`: `policies.toml`; `guardrails`: pricing bounds; `metrics`: Prometheus metrics;
//!   `cli`: `policy check` / `policy test`; `error`: [`PolicyError`].
//!
//! Dependencies point one way: `runtime → admin, decide → cell → module, checks → kinds → call, config`;
//! this file only declares and re-exports.
//!
//! [`Policies`]: crate::policy::Policies

mod admin;
mod cache;
mod call;
mod candidate;
mod cell;
mod checks;
mod cli;
mod config;
mod decide;
mod engine;
mod error;
mod guardrails;
mod host;
mod inline;
mod kinds;
mod limits;
mod metrics;
mod module;
mod runtime;
mod signing;
mod slot;
mod strategy;
mod tenant;
mod text;
mod watch;

pub use cache::ArtifactCache;
pub use call::{CallCost, Failure, FailureKind};
pub use candidate::CandidateStatus;
pub use cell::{Compiling, SlotStatus};
pub use checks::{CONTRACT_PACKAGE, CONTRACT_VERSION, CheckStep, SampleRun};
pub use cli::{CheckReport, check_module, test_module};
pub use config::{CONFIG_FILE, CandidateRole};
pub use decide::{Decided, DecisionRecord};
pub use engine::{SlotBudget, budget};
pub use error::{PolicyError, PolicyErrorKind};
pub use guardrails::Guardrails;
pub use kinds::{ModerationSlot, PricingSlot, SlotKind, TimeoutSlot};
pub use limits::Limits;
pub use module::{PolicyModule, sha256_hex, sha256_prefix};
pub use runtime::PolicyRuntime;
pub use signing::{
    GeneratedKey, KeyId, PrivateKey, SIGNATURE_HEADER, SIGNATURE_SUFFIX, TrustedKeys, Verified,
    generate_key_files, read_signature_beside, sign_module_file, signature_path,
};
pub use slot::Slot;
pub use strategy::{PricingStrategy, Strategy, TimeoutStrategy};
pub use tenant::{PricingTenant, Tenant, TenantAnswer, TenantQuote, TimeoutAnswer, TimeoutTenant};
pub use text::{MAX_GUEST_TEXT, guest_text};
