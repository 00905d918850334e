//! A CPU-bound job on a `BlockingPool`: hash a batch of inputs on OS threads, never on the
//! async workers, and shed what the machine cannot take instead of queueing it forever.
//!
//! Run: `cargo run --release -p surgepool --example blocking_cpu`

use std::time::Duration;

use surgepool::{BlockingPool, Limit, SubmitError};

/// Stand-in for real CPU work (image resize, password hash, compression).
fn checksum(seed: u64) -> u64 {
    (0..200_000u64).fold(seed, |acc, i| {
        acc.rotate_left(5) ^ i.wrapping_mul(0x9E37_79B9)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // CPU work gains nothing from more threads than cores: a fixed limit at the core count,
    // and a short queue so a burst waits a little, not forever.
    let pool = BlockingPool::builder()
        .limit(Limit::fixed(cores))
        .queue_capacity(4 * cores)
        .queue_timeout(Duration::from_millis(500))
        .thread_name("checksum")
        .build()?;

    let mut handles = Vec::new();
    let mut shed = 0;
    for seed in 0..64 {
        // Wait up to 50 ms for room (backpressure on the caller), then give up: the closure
        // comes back in the error, and a service would answer 503 with it.
        match pool.submit_timeout(move || checksum(seed), Duration::from_millis(50)) {
            Ok(handle) => handles.push(handle),
            Err(SubmitError::Full(_job) | SubmitError::Timeout(_job)) => shed += 1,
            Err(other) => return Err(other.into()),
        }
    }
    let mut total = 0u64;
    for handle in handles {
        // `join` blocks this thread; async callers `.await` the same handle instead.
        total ^= handle.join()?;
    }
    let report = pool.shutdown();
    let snap = pool.snapshot();
    println!(
        "xor of checksums {total:#x}; accepted {}, shed after waiting 50 ms {shed}, completed {}, drained at shutdown {}",
        snap.accepted, snap.completed, report.drained
    );
    Ok(())
}
