//! Per-slot resource limits and the store data that enforces them.
//!
//! Published defaults (also in `plugins/README.md`), sized from measurement: a pricing-demand quote uses
//! about 4 500 fuel (`gpu-market policy test`), well under a millisecond and 64 KiB of linear memory,
//! so the defaults leave over two orders of magnitude of headroom while still stopping a runaway
//! module within tens of milliseconds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use super::engine::{MAX_MEMORY_BYTES, SlotBudget};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) per decision. A batch gets this much per request.
    pub fuel: u64,
    /// Wall-clock deadline per call, enforced by epoch interruption.
    pub timeout_ms: u64,
    /// Linear memory cap per call, in MiB.
    pub memory_mib: u64,
    /// Largest input accepted for a call (strings and lists crossing into the guest), in bytes;
    /// a larger input is not sent and the fallback answers.
    pub max_input_bytes: usize,
    /// Longest explanation or reason string accepted from the guest, in bytes.
    pub max_output_bytes: usize,
    /// Requests per guest call of `quote-batch`; longer batches are split.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000,
            timeout_ms: 50,
            memory_mib: 16,
            max_input_bytes: 64 * 1024,
            max_output_bytes: 4 * 1024,
            max_batch: 256,
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), String> {
        if self.fuel == 0 || self.timeout_ms == 0 || self.memory_mib == 0 || self.max_batch == 0 {
            return Err("fuel, timeout_ms, memory_mib and max_batch must be positive".into());
        }
        if self.memory_bytes() > MAX_MEMORY_BYTES {
            return Err(format!(
                "memory_mib may be at most {}",
                MAX_MEMORY_BYTES >> 20
            ));
        }
        if self.timeout_ms > 10_000 {
            return Err("timeout_ms may be at most 10000".into());
        }
        Ok(())
    }

    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib << 20
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The data of every per-call `Store`: the memory cap and the slot's per-call budget, plus the peak
/// memory the guest asked for so `check` can report it.
pub struct CallState {
    limits: StoreLimits,
    pub peak_memory_bytes: usize,
}

impl CallState {
    pub fn new(limits: &Limits, budget: &SlotBudget) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes() as usize)
            .table_elements(100_000)
            .instances(budget.core_instances as usize)
            .tables(budget.tables as usize)
            .memories(budget.memories as usize)
            // Fail fast: a guest that cannot grow its memory traps at once instead of limping on.
            .trap_on_grow_failure(true)
            .build();
        Self {
            limits,
            peak_memory_bytes: 0,
        }
    }
}

impl ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
