//! Running a live decision on the calling thread instead of hopping to the blocking pool.
//!
//! A typical decision takes microseconds, less than the hop itself. So each call is first tried where
//! it is asked, on a fresh instance as always, with a small slice of the slot's budget: at most
//! [`INLINE_FUEL`] fuel and an [`INLINE_TIMEOUT`] deadline (epoch interruption works on any thread).
//! A call that does not fit is run again from scratch on a fresh instance on the blocking pool with the
//! slot's whole budget (a module imports nothing, so the first attempt left no trace), and its version
//! then goes straight to the pool for [`BACKOFF`]. A module that spins therefore holds an async worker
//! for at most one short slice per in-flight call per back-off period, never for its full deadline.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::call::{Failure, FailureKind};
use super::engine::EPOCH_TICK;
use super::limits::Limits;

/// Fuel of the attempt on the calling thread: 200 default pricing quotes' worth.
pub const INLINE_FUEL: u64 = 1_000_000;

/// Deadline of the attempt on the calling thread (rounded up to whole epoch ticks, plus one: 2-4 ms).
pub const INLINE_TIMEOUT: Duration = EPOCH_TICK;

/// How long a version whose call did not fit stays on the blocking pool.
pub const BACKOFF: Duration = Duration::from_secs(1);

/// The fuel and deadline of one attempt at a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub fuel: u64,
    pub timeout: Duration,
}

impl Attempt {
    /// The slot's whole budget.
    pub fn full(limits: &Limits) -> Self {
        Self {
            fuel: limits.fuel,
            timeout: limits.timeout(),
        }
    }

    /// The slice tried on the calling thread.
    pub fn inline(limits: &Limits) -> Self {
        Self {
            fuel: limits.fuel.min(INLINE_FUEL),
            timeout: limits.timeout().min(INLINE_TIMEOUT),
        }
    }

    /// Whether `failure` only says that this attempt's budget, smaller than the slot's, ran out: the
    /// call deserves another attempt with the whole budget.
    pub fn overran(&self, failure: &Failure, limits: &Limits) -> bool {
        let full = Self::full(limits);
        match failure.kind {
            FailureKind::OutOfFuel => self.fuel < full.fuel,
            FailureKind::Deadline => self.timeout < full.timeout,
            _ => false,
        }
    }
}

/// Whether one module version's calls run on the calling thread now.
#[derive(Debug, Default)]
pub struct InlineGate {
    /// Milliseconds since [`origin`] before which calls go to the blocking pool; 0 = open.
    closed_until_ms: AtomicU64,
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    origin().elapsed().as_millis() as u64
}

impl InlineGate {
    pub fn open(&self) -> bool {
        let until = self.closed_until_ms.load(Ordering::Relaxed);
        until == 0 || now_ms() >= until
    }

    /// A call did not fit: send this version's calls to the blocking pool for [`BACKOFF`].
    pub fn close(&self) {
        let until = now_ms() + BACKOFF.as_millis() as u64;
        self.closed_until_ms.store(until.max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_smaller_slice_running_out_deserves_a_second_attempt() {
        let limits = Limits::default();
        let inline = Attempt::inline(&limits);
        let fuel = Failure::new(FailureKind::OutOfFuel, "");
        let deadline = Failure::new(FailureKind::Deadline, "");
        let trap = Failure::new(FailureKind::Trap, "");
        assert!(inline.overran(&fuel, &limits));
        assert!(inline.overran(&deadline, &limits));
        assert!(!inline.overran(&trap, &limits));
        let full = Attempt::full(&limits);
        assert!(!full.overran(&fuel, &limits) && !full.overran(&deadline, &limits));
        // A slot whose own budget is smaller than the slice: the first attempt was the whole call.
        let small = Limits {
            fuel: 1_000,
            timeout_ms: 1,
            ..Limits::default()
        };
        let inline = Attempt::inline(&small);
        assert!(!inline.overran(&fuel, &small) && !inline.overran(&deadline, &small));
    }

    #[test]
    fn a_closed_gate_reopens_after_the_backoff() {
        let gate = InlineGate::default();
        assert!(gate.open());
        gate.close();
        assert!(!gate.open());
        gate.closed_until_ms.store(1, Ordering::Relaxed);
        let _ = origin();
        std::thread::sleep(Duration::from_millis(2));
        assert!(gate.open());
    }
}
