//! The layer's figures through the `metrics` facade (feature `metrics`), published from its
//! [`AdmissionStats`] on demand: nothing is recorded per request.

use metrics::{counter, gauge};

use crate::AdmissionLayer;

impl AdmissionLayer {
    /// Sets this layer's metrics from its [`stats`](Self::stats), labelled `pool` = its
    /// [`name`](Self::name):
    ///
    /// | metric | kind | labels |
    /// |---|---|---|
    /// | `surgepool_requests_total` | counter | `pool`, `outcome` = `admitted`, `overloaded`, `queue_timeout`, `cancelled`, `timeout`, `body_timeout` |
    /// | `surgepool_shed_total` | counter | `pool`, `reason` = `full`, `queue_timeout`, `timeout` |
    /// | `surgepool_limit`, `surgepool_in_flight`, `surgepool_queued` | gauge | `pool` |
    ///
    /// Call it on a timer, or hand it to `surgepool::metrics::Publisher::with`, which does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use surgepool::metrics::Publisher;
    /// use surgepool_tower::AdmissionLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = AdmissionLayer::builder().name("api").build().unwrap();
    /// let for_metrics = layer.clone();
    /// let publisher = Publisher::new()
    ///     .with(move || for_metrics.publish_metrics())
    ///     .spawn(Duration::from_secs(1));
    /// # drop(publisher);
    /// # }
    /// ```
    pub fn publish_metrics(&self) {
        let stats = self.stats();
        let pool = self.name().to_owned();
        for (outcome, value) in [
            ("admitted", stats.admitted),
            ("overloaded", stats.overloaded),
            ("queue_timeout", stats.queue_timeouts),
            ("cancelled", stats.cancelled),
            ("timeout", stats.timeouts),
            ("body_timeout", stats.body_timeouts),
        ] {
            counter!("surgepool_requests_total", "pool" => pool.clone(), "outcome" => outcome)
                .absolute(value);
        }
        for (reason, value) in [
            ("full", stats.overloaded),
            ("queue_timeout", stats.queue_timeouts),
            ("timeout", stats.timeouts),
        ] {
            counter!("surgepool_shed_total", "pool" => pool.clone(), "reason" => reason)
                .absolute(value);
        }
        gauge!("surgepool_limit", "pool" => pool.clone()).set(stats.limiter.limit as f64);
        gauge!("surgepool_in_flight", "pool" => pool.clone()).set(stats.limiter.in_flight as f64);
        gauge!("surgepool_queued", "pool" => pool).set(stats.queued as f64);
    }
}
