//! One wasmtime [`Engine`] per slot kind, each with its own instance pool and call permits, and the
//! epoch ticker that gives calls a wall-clock deadline.
//!
//! Why one engine per slot: the pooling allocator's limits are engine-wide. With one shared pool, a
//! module that instantiates many core instances per call could take every pool slot and make the
//! *other* slots' decisions fail ("maximum concurrent limit reached"). Each slot's pool is sized from
//! its [`SlotBudget`]: `calls + spare` component instances, each allowed at most the budget's core
//! instances, memories and tables, so the pool can never run out while the slot's own permits bound
//! its calls, and nothing one slot does can take another slot's room. A component that needs more per
//! call than its slot allows cannot instantiate, so it fails its load checks and never serves.
//!
//! Engines are process-wide and created on first use (the pool reserves its address space once,
//! compiled modules are shared by every runtime and by the CLI helpers). The epoch ticker is a plain
//! thread rather than a tokio task so that a starved or shut-down runtime can never stop deadlines
//! firing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::error::PolicyError;
use super::slot::Slot;

/// One epoch tick. Deadlines are rounded up to whole ticks (see [`deadline_ticks`]).
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Linear memory and table bytes of a freed pool slot kept mapped for the next instance (see
/// [`config`]).
const KEEP_RESIDENT_MEMORY: usize = 2 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// The most linear memory any slot may be configured to use.
pub const MAX_MEMORY_BYTES: u64 = 256 << 20;

/// Pool room beyond a slot's call permits, for what instantiates without a permit: load checks
/// (serialized per runtime), `policy check/test`, and simulation tenants (a few per worker thread).
fn spare_instances() -> u32 {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
    8 + 2 * threads.min(64)
}

/// What one slot may use of the host: calls at the same time, and per call (one component
/// instance) core instances, linear memories and tables. Published in SECURITY.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlotBudget {
    /// Guest calls of this slot in flight at once; more wait for a permit.
    pub concurrent_calls: u32,
    /// Core module instances one instantiation may create (a Rust component needs 1-3, a
    /// componentize-js one 1, a componentize-py one 38).
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
}

/// The budget of each slot. Pricing answers every booking and quote, so it gets the most calls.
pub const fn budget(slot: Slot) -> SlotBudget {
    let concurrent_calls = match slot {
        Slot::Pricing => 32,
        Slot::BookingTimeout | Slot::ReviewModeration => 8,
    };
    SlotBudget {
        concurrent_calls,
        core_instances: 64,
        memories: 2,
        tables: 16,
    }
}

struct SlotEngine {
    engine: Engine,
    permits: Arc<Semaphore>,
}

static ENGINES: [OnceLock<Result<SlotEngine, String>>; 3] = [
    const { OnceLock::new() },
    const { OnceLock::new() },
    const { OnceLock::new() },
];

fn index(slot: Slot) -> usize {
    match slot {
        Slot::Pricing => 0,
        Slot::BookingTimeout => 1,
        Slot::ReviewModeration => 2,
    }
}

fn slot_engine(slot: Slot) -> Result<&'static SlotEngine, PolicyError> {
    ENGINES[index(slot)]
        .get_or_init(|| {
            let budget = budget(slot);
            let engine = Engine::new(&config(&budget))
                .map_err(|e| format!("creating the {slot} wasmtime engine: {e:#}"))?;
            start_ticker()?;
            Ok(SlotEngine {
                engine,
                permits: Arc::new(Semaphore::new(budget.concurrent_calls as usize)),
            })
        })
        .as_ref()
        .map_err(|e| PolicyError::Internal(e.clone()))
}

/// Starts, once, the thread that advances every slot engine's epoch each [`EPOCH_TICK`]. One thread
/// for the three engines: a thread per engine woke the process three times as often, each wake-up a
/// context switch that could preempt a request or the SQLite writer on a busy machine.
fn start_ticker() -> Result<(), String> {
    static TICKER: OnceLock<Result<(), String>> = OnceLock::new();
    TICKER
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("policy-epoch".into())
                .spawn(|| {
                    loop {
                        std::thread::sleep(EPOCH_TICK);
                        for slot in ENGINES
                            .iter()
                            .filter_map(|engine| engine.get()?.as_ref().ok())
                        {
                            slot.engine.increment_epoch();
                        }
                    }
                })
                .map(drop)
                .map_err(|e| format!("starting the policy epoch ticker: {e}"))
        })
        .clone()
}

/// The engine every module of `slot` is compiled for and runs in.
pub fn engine(slot: Slot) -> Result<&'static Engine, PolicyError> {
    slot_engine(slot).map(|e| &e.engine)
}

/// The permits that bound `slot`'s guest calls in flight, process-wide (like its pool).
pub fn permits(slot: Slot) -> Result<Arc<Semaphore>, PolicyError> {
    slot_engine(slot).map(|e| e.permits.clone())
}

fn config(budget: &SlotBudget) -> Config {
    let instances = budget.concurrent_calls + spare_instances();
    let mut pool = PoolingAllocationConfig::default();
    // Totals are the per-call maxima times the instances the pool can hold: a call at the budget's
    // limits always finds room, whatever the slot's other calls use.
    pool.total_component_instances(instances)
        .total_core_instances(instances * budget.core_instances)
        .total_memories(instances * budget.memories)
        .total_tables(instances * budget.tables)
        .max_core_instances_per_component(budget.core_instances)
        .max_memories_per_component(budget.memories)
        .max_tables_per_component(budget.tables)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        // A fresh instance per decision must not cost page faults: a freed slot's dirty pages (found
        // with PAGEMAP_SCAN where the kernel has it, else the lowest addresses) are reset in place
        // with memset and stay mapped for the next instance instead of being returned with madvise.
        // A Rust guest touches a few pages (pricing-demand fits one 64 KiB page).
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // Instantiation maps the module's initial memory copy-on-write instead of copying its data
        // segments (the default, stated because the per-call cost depends on it).
        .memory_init_cow(true)
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
