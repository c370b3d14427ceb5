//! The global allocator of every Vitrine program: mimalloc, or the system allocator in a
//! process started with `VITRINE_ALLOCATOR=system`.
//!
//! - Request-serving services want mimalloc: with glibc's `malloc`, allocation was a
//!   quarter to a third of storage's and import-api's CPU under `GET /images` load
//!   (`malloc_consolidate`, `_int_malloc`; `docs/reliability.md`).
//! - An import worker wants the system allocator: with mimalloc its RSS was 88–117 MiB
//!   over a 10,000-file import (one heap per thread, and it runs a SQLite thread per
//!   connection), against 31–59 MiB with glibc, for no measurable CPU gain
//!   (`docs/benchmarks.md`). The launcher starts its workers with `system`, and the
//!   standalone `import-worker` binary declares [`std::alloc::System`] itself.
//!
//! The choice is made once, at the first allocation (before `main`, on one thread), from
//! the environment as it was then, and never changes: every block is freed by the
//! allocator that gave it out.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

use mimalloc::MiMalloc;

/// Environment variable that picks the allocator: `system`, or anything else (or unset)
/// for mimalloc.
pub const ALLOCATOR_VAR: &str = "VITRINE_ALLOCATOR";

/// The [`ALLOCATOR_VAR`] value to start `vitrine serve <service>` with, where it is not
/// mimalloc: `system` for `import-worker`. The launcher and the benchmarks use this.
pub fn choice_for_service(service: &str) -> Option<&'static str> {
    (service == "import-worker").then_some("system")
}

const UNDECIDED: u8 = 0;
const MIMALLOC: u8 = 1;
const SYSTEM: u8 = 2;

static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// Declared in each program's `main.rs`:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: service_kit::Allocator = service_kit::Allocator;
/// ```
pub struct Allocator;

#[inline]
fn choice() -> u8 {
    match CHOICE.load(Ordering::Relaxed) {
        UNDECIDED => {
            let decided = decide();
            // Threads racing here read the same environment (nothing can change it
            // before the first allocation returns), so they agree.
            CHOICE.store(decided, Ordering::Relaxed);
            decided
        }
        decided => decided,
    }
}

/// Reads [`ALLOCATOR_VAR`] without allocating (`std::env` would allocate, here).
fn decide() -> u8 {
    // SAFETY: the name is a NUL-terminated literal; `getenv` returns NULL or a pointer
    // to a NUL-terminated value that stays valid while nothing sets the environment,
    // and this runs before `main` starts any thread that could.
    let value = unsafe { libc::getenv(c"VITRINE_ALLOCATOR".as_ptr()) };
    if value.is_null() {
        return MIMALLOC;
    }
    // SAFETY: as above.
    match unsafe { std::ffi::CStr::from_ptr(value) }.to_bytes() {
        b"system" => SYSTEM,
        _ => MIMALLOC,
    }
}

// SAFETY: every call is forwarded to one allocator, the same for the whole process.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if choice() == SYSTEM {
            // SAFETY: the caller upholds `GlobalAlloc`'s contract; see the impl.
            unsafe { System.alloc(layout) }
        } else {
            // SAFETY: the caller upholds `GlobalAlloc`'s contract; see the impl.
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if choice() == SYSTEM {
            // SAFETY: the caller upholds `GlobalAlloc`'s contract; see the impl.
            unsafe { System.alloc_zeroed(layout) }
        } else {
            // SAFETY: the caller upholds `GlobalAlloc`'s contract; see the impl.
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if choice() == SYSTEM {
            // SAFETY: the caller upholds `GlobalAlloc`'s contract; see the impl.
            unsafe { System.dealloc(ptr, layout) }
        } else {
            // SAFETY: the caller upholds `GlobalAlloc`'s contract; see the impl.
            unsafe { MiMalloc.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if choice() == SYSTEM {
            // SAFETY: the caller upholds `GlobalAlloc`'s contract; see the impl.
            unsafe { System.realloc(ptr, layout, new_size) }
        } else {
            // SAFETY: the caller upholds `GlobalAlloc`'s contract; see the impl.
            unsafe { MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_name_matches_the_one_read() {
        // `decide` spells the name as a C literal; keep the two in step.
        assert_eq!(c"VITRINE_ALLOCATOR".to_bytes(), ALLOCATOR_VAR.as_bytes());
    }

    #[test]
    fn blocks_round_trip_through_the_chosen_allocator() {
        let layout = Layout::from_size_align(4096, 64).expect("layout");
        // SAFETY: a non-zero layout; the block is written within bounds and freed once.
        unsafe {
            let block = Allocator.alloc_zeroed(layout);
            assert!(!block.is_null());
            assert_eq!(*block.add(4095), 0);
            *block = 7;
            let grown = Allocator.realloc(block, layout, 8192);
            assert!(!grown.is_null());
            assert_eq!(*grown, 7);
            Allocator.dealloc(grown, Layout::from_size_align(8192, 64).expect("layout"));
        }
    }
}
