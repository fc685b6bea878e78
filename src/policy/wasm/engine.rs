//! The process-wide wasmtime [`Engine`] and the epoch ticker that gives calls a wall-clock deadline.
//!
//! One engine per process, created on first use: the pooling allocator reserves its address space once,
//! compiled modules can be shared by every runtime (and by the CLI helpers), and a single ticker thread
//! serves all stores. The ticker is a plain thread rather than a tokio task so that a starved or
//! shut-down runtime can never stop deadlines from firing.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::error::PolicyError;

/// One epoch tick. Deadlines are rounded up to whole ticks (see [`deadline_ticks`]).
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// The most linear memory any slot may be configured to use; the pool reserves slots of this size.
pub const MAX_MEMORY_BYTES: u64 = 256 << 20;

/// Guest calls that may run at the same time, across all slots; more wait for a permit. The pool is
/// sized from it so an instantiation never fails for lack of a slot.
pub const MAX_CONCURRENT_CALLS: usize = 64;

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

pub fn engine() -> Result<&'static Engine, PolicyError> {
    ENGINE
        .get_or_init(|| {
            let engine = Engine::new(&config())
                .map_err(|e| format!("creating the wasmtime engine: {e:#}"))?;
            let ticker = engine.clone();
            std::thread::Builder::new()
                .name("policy-epoch".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(EPOCH_TICK);
                        ticker.increment_epoch();
                    }
                })
                .map_err(|e| format!("starting the epoch ticker: {e}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|e| PolicyError::Internal(e.clone()))
}

fn config() -> Config {
    let mut pool = PoolingAllocationConfig::default();
    // A Rust component instantiates a handful of core instances (the module plus adapter shims); allow
    // generous room per call so odd but valid modules still fit.
    let calls = MAX_CONCURRENT_CALLS as u32 + 8;
    pool.total_component_instances(calls)
        .total_core_instances(calls * 8)
        .total_memories(calls * 2)
        .total_tables(calls * 4)
        .max_memories_per_component(2)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20);

    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .parallel_compilation(true)
        .wasm_component_model(true);
    config
}

/// Ticks to pass to `set_epoch_deadline` so that at least `timeout` elapses before the trap: the current
/// tick is already partly over, so one extra tick is added.
pub fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_micros().max(1);
    (timeout.as_micros().div_ceil(tick) as u64).max(1) + 1
}
