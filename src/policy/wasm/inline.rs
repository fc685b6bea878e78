//! Running a live decision on the calling thread instead of hopping to the blocking pool.
//!
//! A typical decision takes microseconds, less than the hop itself. So each call is first tried where
//! it is asked, on a fresh instance as always, with a small slice of the slot's budget: at most
//! [`INLINE_FUEL`] fuel and an [`INLINE_TIMEOUT`] deadline (epoch interruption works on any thread).
//! A call that does not fit is run again from scratch on a fresh instance on the blocking pool with the
//! slot's whole budget (a module imports nothing, so the first attempt left no trace), and its version
//! then goes straight to the pool for [`BACKOFF`]. A module that spins therefore holds an async worker
//! for at most one short slice per in-flight call per back-off period, never for its full deadline.
//!
//! The deadline is wall-clock time, and on a busy machine the scheduler can take the core away from a
//! call of a few microseconds for longer than the slice. Such a call is run again on the pool too, but
//! it does not send its version there: the gate closes on a deadline only when the thread spent at
//! least half the slice's deadline running (its CPU clock, [`ThreadCpuClock`]). Without that, every
//! preempted quote sent the pricing module's calls to the pool for a second: on two cores under load
//! up to 30 blocking threads came and went, and spawning onto them took 6 % of the request threads'
//! profile samples (bench/load.sh, book+release).

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

/// The calling thread's CPU clock from the start of an attempt.
#[derive(Debug, Clone, Copy)]
pub struct ThreadCpuClock(Option<Duration>);

impl ThreadCpuClock {
    pub fn start() -> Self {
        Self(thread_cpu_time())
    }

    /// Whether a deadline of `timeout` that fired since the start found the thread waiting for a core
    /// most of the time: it ran less than half of it. Unknown (the clock could not be read) is no.
    pub fn mostly_waited(&self, timeout: Duration) -> bool {
        match (self.0, thread_cpu_time()) {
            (Some(start), Some(now)) => now.saturating_sub(start) < timeout / 2,
            _ => false,
        }
    }
}

/// The CPU time the calling thread has run for. std has no thread clock; one `clock_gettime` call.
fn thread_cpu_time() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if read != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
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
    fn the_cpu_clock_tells_waiting_from_running() {
        let timeout = Duration::from_millis(20);
        let clock = ThreadCpuClock::start();
        std::thread::sleep(timeout);
        assert!(
            clock.mostly_waited(timeout),
            "asleep, the thread ran nothing"
        );
        let clock = ThreadCpuClock::start();
        let started = Instant::now();
        let mut spins = 0_u64;
        while started.elapsed() < timeout {
            spins = std::hint::black_box(spins + 1);
        }
        // The spin ran for 20 ms of wall time; a loaded machine may take the core away for part of it,
        // so only a spin that got at least 10 ms of CPU can say it did not mostly wait.
        let ran = thread_cpu_time()
            .zip(clock.0)
            .map(|(now, start)| now - start);
        if ran.is_some_and(|ran| ran >= timeout / 2) {
            assert!(!clock.mostly_waited(timeout));
        }
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
