//! The fleet-wide view of a queue (XLEN, ZCARD, XPENDING).

/// The fleet-wide state of a queue, read from Redis at one instant.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let queue = surgepool_redis::Queue::connect("redis://127.0.0.1:6379", "emails").await?;
/// let fleet = queue.fleet().await?;
/// println!("{} waiting, {} held by consumers", fleet.waiting(), fleet.pending);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStats {
    /// Entries in the stream: unread plus pending (acked ones are deleted).
    pub in_stream: u64,
    /// Of those, delivered to a consumer and not yet settled (XPENDING).
    pub pending: u64,
    /// Failed jobs waiting out their backoff in the retry set.
    pub retry_waiting: u64,
    /// Jobs in the dead-letter stream.
    pub dead: u64,
    /// Pending jobs per consumer name.
    pub consumers: Vec<(String, u64)>,
}

impl FleetStats {
    /// Jobs not yet settled anywhere: in the stream or waiting to retry. At quiescence,
    /// `pushed == acked + dead + waiting()` fleet-wide.
    ///
    /// See the [example on `FleetStats`](FleetStats#examples).
    pub fn waiting(&self) -> u64 {
        self.in_stream + self.retry_waiting
    }
}
