//! `orders_request`: arbitrary bytes as one HTTP/1 client connection into the `orders`
//! service, in-process: hyper's server configured as the real listeners are, every layer of
//! the stack, the routes, a SQLite database (`orders::fuzzing`).
//!
//! Checked: no panic and no hang anywhere (hyper, the layers, the handlers, the writer); the
//! bytes that come back are well-formed HTTP/1.x responses framed as their headers say, none
//! is a 500, and every request that reached the service got one final answer with its
//! request id (`orders::fuzzing::Exchange::check`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use orders::fuzzing::Harness;

/// One service for the whole run, as in production: state (the user cache, the breaker, the
/// rate limiter, the batcher, the database) carries over from input to input.
static HARNESS: OnceLock<Harness> = OnceLock::new();

fuzz_target!(|input: &[u8]| {
    let harness = HARNESS.get_or_init(|| Harness::new().expect("the orders harness starts"));
    let exchange = harness.exchange(input);
    if let Err(why) = exchange.check() {
        panic!(
            "{why}\nsent: {:?}\ngot: {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&exchange.output)
        );
    }
});
