//! The `orders` binary: [`orders::main`] with jemalloc as the allocator (heap profiles).

use std::process::ExitCode;

/// jemalloc on Linux, for heap profiles (`/debug/pprof/heap`). Only in the binary: the
/// library's unit tests install a counting allocator of their own (`routes::hello`), and the
/// fuzz target runs under AddressSanitizer's.
#[cfg(all(target_os = "linux", feature = "jemalloc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start: profiling on and active, one sample
/// per 2^19 bytes (512 KiB) allocated on average, so its cost stays small on the hot path.
#[cfg(all(target_os = "linux", feature = "jemalloc"))]
#[allow(non_upper_case_globals, unreachable_pub)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

fn main() -> ExitCode {
    orders::main()
}
