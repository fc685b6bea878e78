//! The module's allocator: a bump arena that starts over whenever nothing is allocated.
//!
//! Every allocation of a call ends with the call: the arguments the host copies in are dropped before
//! the export returns and the answer is freed by its post-return function. With a fresh instance per
//! decision, a general-purpose allocator's set-up and bookkeeping were most of a quote's fuel; here an
//! allocation is a pointer bump, and the arena rewinds when the last live block is freed (at the end of
//! every call), so an instance reused across decisions (a simulation tenant) does not grow.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32::{memory_grow, memory_size};
use core::cell::Cell;
use core::ptr::{copy_nonoverlapping, null_mut};

const PAGE: usize = 64 * 1024;

unsafe extern "C" {
    /// The first byte after the module's data and stack, provided by the linker.
    static __heap_base: u8;
}

pub struct Arena {
    /// Where the arena begins: the linker's heap base (0 before the first allocation).
    start: Cell<usize>,
    next: Cell<usize>,
    end: Cell<usize>,
    /// Blocks allocated and not yet freed.
    live: Cell<usize>,
}

// SAFETY: wasm32-unknown-unknown without the threads proposal has one thread.
unsafe impl Sync for Arena {}

#[global_allocator]
static ARENA: Arena = Arena {
    start: Cell::new(0),
    next: Cell::new(0),
    end: Cell::new(0),
    live: Cell::new(0),
};

impl Arena {
    /// An allocation that sets the arena up or needs more memory.
    #[cold]
    fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        if self.start.get() == 0 {
            // The arena starts where the linker put the heap: the rest of the initial memory is
            // usually enough for a call, and a call that never grows memory spares the host two
            // page-protection changes per fresh instance.
            let start = core::ptr::addr_of!(__heap_base) as usize;
            self.start.set(start);
            self.next.set(start);
            self.end.set(memory_size(0) * PAGE);
        }
        let align = layout.align() - 1;
        let Some(start) = self.next.get().checked_add(align).map(|a| a & !align) else {
            return null_mut();
        };
        let Some(end) = start.checked_add(layout.size()) else {
            return null_mut();
        };
        if !self.reach(end) {
            return null_mut();
        }
        self.next.set(end);
        self.live.set(self.live.get() + 1);
        start as *mut u8
    }

    /// Grows linear memory so that addresses below `needed` are usable; false if the host refused.
    fn reach(&self, needed: usize) -> bool {
        if needed <= self.end.get() {
            return true;
        }
        let pages = (needed - self.end.get()).div_ceil(PAGE);
        if memory_grow(0, pages) == usize::MAX {
            return false;
        }
        self.end.set(self.end.get() + pages * PAGE);
        true
    }
}

unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // The common case in a few instructions (fuel is counted per instruction, and the host calls
        // this for every string it copies in). Before the first allocation `next` and `end` are 0, so
        // a first allocation (never of size 0: `GlobalAlloc` forbids it) takes the slow path.
        let align = layout.align() - 1;
        if let Some(start) = self.next.get().checked_add(align).map(|a| a & !align)
            && let Some(end) = start.checked_add(layout.size())
            && end <= self.end.get()
        {
            self.next.set(end);
            self.live.set(self.live.get() + 1);
            return start as *mut u8;
        }
        self.alloc_slow(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let live = self.live.get().saturating_sub(1);
        self.live.set(live);
        if live == 0 {
            self.next.set(self.start.get());
        } else if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let addr = ptr as usize;
        // The newest block grows or shrinks in place.
        if addr + layout.size() == self.next.get() {
            let Some(end) = addr.checked_add(new_size) else {
                return null_mut();
            };
            if !self.reach(end) {
                return null_mut();
            }
            self.next.set(end);
            return ptr;
        }
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as `GlobalAlloc::alloc`; `ptr` holds `layout.size()` readable bytes.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// The canonical ABI's allocator, called by the host for every string and list it copies in (a
/// quote's configuration alone is fifteen blocks). wit-bindgen's own `cabi_realloc` is a weak symbol
/// reaching the arena through three calls and `__rust_alloc`; this strong one replaces it and goes to
/// the arena directly.
///
/// # Safety
///
/// As the canonical ABI's `realloc`: `old` is null with `old_len == 0`, or a block of `old_len` bytes
/// allocated with alignment `align` (a power of two) and not freed.
#[unsafe(export_name = "cabi_realloc")]
pub unsafe extern "C" fn cabi_realloc(
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    let block = if old_len == 0 {
        if new_len == 0 {
            // A zero-sized block needs no memory, only an aligned address.
            return align as *mut u8;
        }
        // SAFETY: the canonical ABI passes a power-of-two alignment and a size that fits memory.
        unsafe { ARENA.alloc(Layout::from_size_align_unchecked(new_len, align)) }
    } else {
        // SAFETY: the caller's contract; `old` was allocated with `old_len` and `align`.
        unsafe {
            ARENA.realloc(
                old,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if block.is_null() {
        // Out of memory (the host's cap): trap, as wit-bindgen's allocator does.
        core::arch::wasm32::unreachable();
    }
    block
}

/// Forgets every block allocated so far, so that the next allocation starts the arena over.
///
/// # Safety
///
/// No block allocated so far may be used again (nor freed: it is not counted any more). The module
/// keeps nothing on the heap between calls, so this holds once a call has taken what it needs from
/// its arguments and forgotten them, before it allocates its answer.
pub unsafe fn rewind() {
    ARENA.live.set(0);
    ARENA.next.set(ARENA.start.get());
}
