//! One guest call: a fresh `Store` with the slot's fuel, deadline and memory cap, and the
//! classification of whatever went wrong.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::{Store, Trap};

use super::engine::{deadline_ticks, engine};
use super::limits::{CallState, Limits};

/// Why a decision came from the fallback. The names are the `kind` label of the failure metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The guest trapped (panic, unreachable, bad memory access, ...).
    Trap,
    OutOfFuel,
    /// The wall-clock deadline passed (epoch interruption).
    Deadline,
    /// The guest tried to grow its memory past the cap.
    Memory,
    /// The guest returned `err(...)`.
    GuestError,
    /// The guest answered, but not within the contract (NaN price, unknown verdict, oversized text...).
    InvalidOutput,
    /// The input exceeded `max_input_bytes`; the guest was not called.
    InputTooLarge,
    /// The slot has a module configured but no valid version loaded.
    NotLoaded,
    /// The host could not run the call (instantiation, a panicked task).
    Host,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::OutOfFuel => "out_of_fuel",
            Self::Deadline => "deadline",
            Self::Memory => "memory",
            Self::GuestError => "guest_error",
            Self::InvalidOutput => "invalid_output",
            Self::InputTooLarge => "input_too_large",
            Self::NotLoaded => "not_loaded",
            Self::Host => "host",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// What one guest call cost, whether or not it succeeded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallCost {
    pub fuel_used: u64,
    #[serde(rename = "elapsed_us", serialize_with = "as_micros")]
    pub elapsed: Duration,
    pub peak_memory_bytes: usize,
}

fn as_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_micros() as u64)
}

pub struct CallReport<T> {
    pub result: Result<T, Failure>,
    pub cost: CallCost,
}

impl<T> CallReport<T> {
    /// A call that never reached the guest.
    pub fn failed(failure: Failure) -> Self {
        Self {
            result: Err(failure),
            cost: CallCost::default(),
        }
    }
}

/// A store for one module instance: the memory cap of `limits`, nothing linked. A live call uses one
/// per decision; a simulation tenant keeps one across decisions (see [`arm`]).
pub fn new_store(limits: &Limits) -> Result<Store<CallState>, Failure> {
    let engine = engine().map_err(|e| Failure::new(FailureKind::Host, e.to_string()))?;
    let mut store = Store::new(engine, CallState::new(limits));
    store.limiter(|state| state);
    store.epoch_deadline_trap();
    Ok(store)
}

/// Refills the store's fuel to `fuel` and restarts its wall-clock deadline: done before every call, so
/// each decision gets the same budget whether its instance is fresh or reused.
pub fn arm(store: &mut Store<CallState>, limits: &Limits, fuel: u64) -> Result<(), Failure> {
    store
        .set_fuel(fuel)
        .map_err(|e| Failure::new(FailureKind::Host, format!("setting fuel: {e}")))?;
    store.set_epoch_deadline(deadline_ticks(limits.timeout()));
    Ok(())
}

/// The failure for an input over `max_input_bytes`: such an input is never sent to the guest.
pub fn input_too_large(size: usize, limits: &Limits) -> Option<Failure> {
    let max = limits.max_input_bytes;
    (size > max).then(|| {
        Failure::new(
            FailureKind::InputTooLarge,
            format!("input is {size} bytes, the limit is {max}"),
        )
    })
}

/// Fuel used since [`arm`] gave the store `fuel`.
pub fn fuel_used(store: &Store<CallState>, fuel: u64) -> u64 {
    fuel.saturating_sub(store.get_fuel().unwrap_or(0))
}

/// Runs `call` (which instantiates and calls the guest) in a fresh store under `limits`, with `fuel`
/// (a batch passes more than one decision's worth). Blocking: run it on the blocking pool.
pub fn run<T>(
    limits: &Limits,
    fuel: u64,
    call: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<T>,
) -> CallReport<T> {
    let started = Instant::now();
    let mut store = match new_store(limits).and_then(|mut store| {
        arm(&mut store, limits, fuel)?;
        Ok(store)
    }) {
        Ok(store) => store,
        Err(failure) => return CallReport::failed(failure),
    };
    let result = call(&mut store).map_err(|e| classify(&e, limits));
    let cost = CallCost {
        fuel_used: fuel_used(&store, fuel),
        elapsed: started.elapsed(),
        peak_memory_bytes: store.data().peak_memory_bytes,
    };
    CallReport { result, cost }
}

pub fn classify(error: &wasmtime::Error, limits: &Limits) -> Failure {
    let message = format!("{error:#}");
    let kind = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            return Failure::new(
                FailureKind::OutOfFuel,
                format!("used all {} fuel", limits.fuel),
            );
        }
        Some(Trap::Interrupt) => {
            return Failure::new(
                FailureKind::Deadline,
                format!("still running after {} ms", limits.timeout_ms),
            );
        }
        Some(_) => FailureKind::Trap,
        // `trap_on_grow_failure` reports a refused growth as a plain error, not a `Trap` code.
        None if message.contains("growing memory") || message.contains("memory growth") => {
            return Failure::new(
                FailureKind::Memory,
                format!("needed more than the {} MiB memory cap", limits.memory_mib),
            );
        }
        None if message.contains("wasm trap") || message.contains("wasm backtrace") => {
            FailureKind::Trap
        }
        None => FailureKind::Host,
    };
    // Backtraces name guest functions and can be long; the first lines say what happened.
    let short: String = message.lines().take(3).collect::<Vec<_>>().join(" | ");
    Failure::new(kind, truncate(&short, 500))
}

/// Cuts a message at a character boundary, so guest-provided text cannot flood logs or statuses.
pub fn truncate(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
