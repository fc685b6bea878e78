//! One guest call: a fresh `Store` with the slot's fuel, deadline and memory cap, and the
//! classification of whatever went wrong.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::{Store, Trap, WasmBacktrace};

use super::engine::{budget, deadline_ticks, engine};
use super::limits::{CallState, Limits};
use super::slot::Slot;
use super::text::{MAX_GUEST_TEXT, guest_text};

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
    /// The message is escaped and bounded here, once: most failure messages quote the guest (its
    /// `err(...)` text, its function names in a trap), and every one of them reaches the log.
    pub fn new(kind: FailureKind, message: impl AsRef<str>) -> Self {
        Self {
            kind,
            message: guest_text(message.as_ref(), MAX_GUEST_TEXT),
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

/// A store for one module instance of `slot`: the memory cap of `limits` and the slot's budget, nothing
/// linked. A live call uses one per decision; a simulation tenant keeps one across decisions (see
/// [`arm`]).
pub fn new_store(slot: Slot, limits: &Limits) -> Result<Store<CallState>, Failure> {
    let engine = engine(slot).map_err(|e| Failure::new(FailureKind::Host, e.to_string()))?;
    let mut store = Store::new(engine, CallState::new(limits, &budget(slot)));
    store.limiter(|state| state);
    store.epoch_deadline_trap();
    Ok(store)
}

/// Refills the store's fuel to `fuel` and restarts its wall-clock deadline: done before every call, so
/// each decision gets the same budget whether its instance is fresh or reused.
///
/// `answer_bytes` bounds what the host will copy out of the guest for the call's answer (strings and
/// lists, see [`answer_budget`]). wasmtime counts it down *before* it copies or even validates a
/// string or list, so an oversized answer is refused at a cost bounded by the limit, not by the size
/// the guest made it.
pub fn arm(
    store: &mut Store<CallState>,
    limits: &Limits,
    fuel: u64,
    answer_bytes: usize,
) -> Result<(), Failure> {
    arm_within(store, fuel, limits.timeout(), answer_bytes)
}

/// [`arm`] with an explicit deadline (a first attempt on the calling thread gets a short one).
pub fn arm_within(
    store: &mut Store<CallState>,
    fuel: u64,
    timeout: Duration,
    answer_bytes: usize,
) -> Result<(), Failure> {
    store
        .set_fuel(fuel)
        .map_err(|e| Failure::new(FailureKind::Host, format!("setting fuel: {e}")))?;
    store.set_epoch_deadline(deadline_ticks(timeout));
    store.set_hostcall_fuel(answer_bytes);
    Ok(())
}

/// The bytes a call answering `answers` times may hand back: each answer's text up to
/// `max_output_bytes`, plus, for a list of answers, the host-side size of each element (what wasmtime
/// charges for lifting a list). A single answer (`answers == 0`) is not a list.
pub fn answer_budget<A>(limits: &Limits, answers: usize) -> usize {
    match answers {
        0 => limits.max_output_bytes,
        n => n.saturating_mul(limits.max_output_bytes + std::mem::size_of::<A>()),
    }
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

/// Runs `call` (which instantiates and calls the guest) in a fresh store of `slot` under `limits`, with
/// `fuel` (a batch passes more than one decision's worth) and `answer_bytes` (see [`arm`]). Blocking:
/// run it on the blocking pool.
pub fn run<T>(
    slot: Slot,
    limits: &Limits,
    fuel: u64,
    answer_bytes: usize,
    call: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<T>,
) -> CallReport<T> {
    run_within(slot, limits, fuel, limits.timeout(), answer_bytes, call)
}

/// [`run`] with an explicit deadline.
pub fn run_within<T>(
    slot: Slot,
    limits: &Limits,
    fuel: u64,
    timeout: Duration,
    answer_bytes: usize,
    call: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<T>,
) -> CallReport<T> {
    let started = Instant::now();
    let mut store = match new_store(slot, limits).and_then(|mut store| {
        arm_within(&mut store, fuel, timeout, answer_bytes)?;
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
    match error.downcast_ref::<Trap>() {
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
        Some(trap) => return Failure::new(FailureKind::Trap, trap_reason(*trap, error)),
        None => {}
    }
    let message = format!("{error:#}");
    // `trap_on_grow_failure` reports a refused growth as a plain error, not a `Trap` code.
    if message.contains("growing memory") || message.contains("memory growth") {
        return Failure::new(
            FailureKind::Memory,
            format!("needed more than the {} MiB memory cap", limits.memory_mib),
        );
    }
    // wasmtime's answer budget (`set_hostcall_fuel`) ran out while lifting the answer.
    if message.contains("fuel allocated for hostcalls") {
        return Failure::new(
            FailureKind::InvalidOutput,
            format!(
                "the answer is larger than max_output_bytes ({} bytes per answer); refused before \
                 the host copied it",
                limits.max_output_bytes
            ),
        );
    }
    let kind = if message.contains("wasm trap") || message.contains("wasm backtrace") {
        FailureKind::Trap
    } else {
        FailureKind::Host
    };
    Failure::new(kind, one_line(&message))
}

/// Why a guest trapped, in words, with the trap's own description and the innermost guest functions
/// (when the module kept its names): `guest panic (wasm trap: wasm `unreachable` instruction executed)
/// in core::panicking::panic_fmt < fixture::hostile`. A Rust panic aborts with `unreachable` inside
/// the panic machinery, so the frames tell a panic from a plain `unreachable`.
fn trap_reason(trap: Trap, error: &wasmtime::Error) -> String {
    let frames: Vec<String> = error
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| {
            bt.frames()
                .iter()
                .filter_map(|f| f.func_name())
                .map(demangle)
                .collect()
        })
        .unwrap_or_default();
    let panicked = trap == Trap::UnreachableCodeReached
        && frames
            .iter()
            .any(|f| f.contains("panic") || f.contains("abort"));
    let what = match trap {
        _ if panicked => "guest panic",
        Trap::StackOverflow => "stack overflow",
        Trap::MemoryOutOfBounds | Trap::HeapMisaligned => "out-of-bounds memory access",
        Trap::TableOutOfBounds => "out-of-bounds table access",
        Trap::UnreachableCodeReached => "unreachable",
        Trap::IntegerDivisionByZero => "integer division by zero",
        Trap::IntegerOverflow | Trap::BadConversionToInteger => "integer overflow",
        Trap::IndirectCallToNull | Trap::BadSignature => "bad indirect call",
        _ => "trap",
    };
    let mut reason = format!("{what} ({trap})");
    // Where it happened: the innermost frames of the module's own code, past the panic machinery
    // of the standard library.
    let own: Vec<&str> = frames
        .iter()
        .map(String::as_str)
        .filter(|f| !is_runtime_frame(f))
        .take(3)
        .collect();
    let shown: Vec<&str> = if own.is_empty() {
        frames.iter().take(3).map(String::as_str).collect()
    } else {
        own
    };
    if !shown.is_empty() {
        reason.push_str(" in ");
        reason.push_str(&shown.join(" < "));
    }
    reason
}

fn is_runtime_frame(name: &str) -> bool {
    [
        "std::",
        "core::",
        "alloc::",
        "__rustc::",
        "__rust",
        "rust_panic",
        "panic_abort::",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
}

/// A mangled Rust symbol (legacy `_ZN...E` or v0 `_R...`) as a path, without its hash; a name the
/// toolchain already split into a path but left with legacy escapes
/// (`_$LT$a..B$u20$as$u20$c..D$GT$::f`) unescaped; any other name as it is.
fn demangle(name: &str) -> String {
    if let Ok(symbol) = rustc_demangle::try_demangle(name) {
        return format!("{symbol:#}");
    }
    let name = name
        .strip_prefix('_')
        .filter(|n| n.starts_with('$'))
        .unwrap_or(name);
    [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$u20$", " "),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$C$", ","),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("..", "::"),
    ]
    .iter()
    .fold(name.to_owned(), |name, (from, to)| name.replace(from, to))
}

/// An error chain on one line, every part kept (the escaping in [`Failure::new`] bounds it).
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_symbols_are_demangled_and_others_kept() {
        assert_eq!(
            demangle("_ZN4core9panicking9panic_fmt17h0123456789abcdefE"),
            "core::panicking::panic_fmt"
        );
        assert_eq!(demangle("quote"), "quote");
        assert_eq!(
            demangle("_$LT$fix..Fixture$u20$as$u20$fix..Guest$GT$::quote"),
            "<fix::Fixture as fix::Guest>::quote"
        );
    }
}
