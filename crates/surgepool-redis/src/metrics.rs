//! A consumer's figures through the `metrics` facade (feature `metrics`), published from its
//! [`Snapshot`] on demand: nothing is recorded per job.

use metrics::{counter, gauge};

use crate::Snapshot;

impl Snapshot {
    /// Sets the consumer metrics from this snapshot, labelled `pool` = `name`:
    ///
    /// | metric | kind | labels |
    /// |---|---|---|
    /// | `surgepool_redis_jobs_total` | counter | `pool`, `outcome` = `fetched`, `acked`, `retried`, `dead`, `reclaimed`, `handed_back`, `stale` |
    /// | `surgepool_redis_errors_total` | counter | `pool` |
    /// | `surgepool_redis_reads_total` | counter | `pool`: `XREADGROUP` calls that got entries (`fetched - reclaimed` over it is the mean fetch size) |
    /// | `surgepool_in_flight`, `surgepool_limit` | gauge | `pool` |
    /// | `surgepool_redis_lease_seconds` | gauge | `pool` |
    ///
    /// Hand it to `surgepool::metrics::Publisher::with` to publish on a timer:
    ///
    /// ```no_run
    /// # async fn demo(consumer: surgepool_redis::Consumer) {
    /// let publisher = surgepool::metrics::Publisher::new()
    ///     .with(move || consumer.snapshot().publish_metrics("emails"))
    ///     .spawn(std::time::Duration::from_secs(1));
    /// # drop(publisher);
    /// # }
    /// ```
    pub fn publish_metrics(&self, name: &str) {
        let pool = name.to_owned();
        for (outcome, value) in [
            ("fetched", self.fetched),
            ("acked", self.acked),
            ("retried", self.retried),
            ("dead", self.dead),
            ("reclaimed", self.reclaimed),
            ("handed_back", self.handed_back),
            ("stale", self.stale),
        ] {
            counter!("surgepool_redis_jobs_total", "pool" => pool.clone(), "outcome" => outcome)
                .absolute(value);
        }
        counter!("surgepool_redis_errors_total", "pool" => pool.clone())
            .absolute(self.redis_errors);
        counter!("surgepool_redis_reads_total", "pool" => pool.clone()).absolute(self.reads);
        gauge!("surgepool_in_flight", "pool" => pool.clone()).set(self.in_flight as f64);
        gauge!("surgepool_limit", "pool" => pool.clone()).set(self.limit as f64);
        gauge!("surgepool_redis_lease_seconds", "pool" => pool).set(self.lease_ms as f64 / 1e3);
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use crate::Snapshot;

    #[test]
    fn every_counter_is_published_with_its_value() {
        let s = Snapshot {
            fetched: 10,
            acked: 6,
            retried: 2,
            dead: 1,
            handed_back: 1,
            in_flight: 0,
            limit: 8,
            lease_ms: 5_000,
            redis_errors: 3,
            reads: 4,
            ..Snapshot::default()
        };
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || s.publish_metrics("emails"));
        let mut seen = 0;
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key().clone();
            let outcome = key
                .labels()
                .find(|l| l.key() == "outcome")
                .map(|l| l.value().to_owned());
            assert!(key
                .labels()
                .any(|l| l.key() == "pool" && l.value() == "emails"));
            let expected = match (key.name(), outcome.as_deref()) {
                ("surgepool_redis_jobs_total", Some("fetched")) => DebugValue::Counter(10),
                ("surgepool_redis_jobs_total", Some("acked")) => DebugValue::Counter(6),
                ("surgepool_redis_jobs_total", Some("retried")) => DebugValue::Counter(2),
                ("surgepool_redis_jobs_total", Some("dead")) => DebugValue::Counter(1),
                ("surgepool_redis_jobs_total", Some("handed_back")) => DebugValue::Counter(1),
                ("surgepool_redis_jobs_total", Some(_)) => DebugValue::Counter(0),
                ("surgepool_redis_errors_total", None) => DebugValue::Counter(3),
                ("surgepool_redis_reads_total", None) => DebugValue::Counter(4),
                ("surgepool_in_flight", None) => DebugValue::Gauge(0.0.into()),
                ("surgepool_limit", None) => DebugValue::Gauge(8.0.into()),
                ("surgepool_redis_lease_seconds", None) => DebugValue::Gauge(5.0.into()),
                other => panic!("unexpected metric {other:?}"),
            };
            assert_eq!(value, expected, "{}", key.name());
            seen += 1;
        }
        assert_eq!(seen, 12);
    }
}
