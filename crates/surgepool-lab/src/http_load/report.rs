//! [`LoadReport`]: what an open-loop run saw.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// What an open-loop run saw. Latencies are in microseconds.
#[derive(Debug)]
pub(crate) struct LoadReport {
    /// Requests on the schedule (`rate × duration`).
    pub(crate) offered: u64,
    /// Requests sent.
    pub(crate) sent: u64,
    /// Requests never sent: their intended time came, but every connection was busy until
    /// the send window closed (`duration + deadline`).
    pub(crate) unsent: u64,
    /// Responses by status code.
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// Requests that failed at the connection level (connect, reset, closed).
    pub(crate) errors: u64,
    /// Requests cut off at their deadline.
    pub(crate) timeouts: u64,
    /// 2xx responses, from intended send time to the end of the body.
    pub(crate) ok_latency: Histogram<u64>,
    /// 503 responses, from the actual send to the end of the body (the server's answer time).
    pub(crate) shed_latency: Histogram<u64>,
    /// 2xx responses, from the actual send (the server's time alone, without the time the
    /// request waited for a free connection in the generator).
    pub(crate) ok_service: Histogram<u64>,
    /// 503 responses, from the intended send time (what the client saw).
    pub(crate) shed_from_intended: Histogram<u64>,
    /// Every sent request's lag from its intended send time to its actual send: how far the
    /// generator fell behind its schedule (every connection busy, or its CPU saturated).
    /// While it lags, every latency from the intended time includes the lag.
    pub(crate) send_lag: Histogram<u64>,
    /// 2xx latency (from intended time), one histogram per second of the schedule.
    pub(crate) ok_by_second: Vec<Histogram<u64>>,
    /// 2xx responses within the SLO of their intended send time.
    pub(crate) ok_within_slo: u64,
    /// 2xx responses within the SLO of their actual send: the server's part alone, which
    /// differs from [`ok_within_slo`](Self::ok_within_slo) when the generator lags.
    pub(crate) ok_within_slo_from_send: u64,
    /// The same as `ok_within_slo`, per second of the schedule.
    pub(crate) ok_within_slo_by_second: Vec<u64>,
    /// From the first intended send to the last response.
    pub(crate) elapsed: Duration,
    /// From the first to the last actual send.
    pub(crate) send_window: Duration,
    /// When the schedule began (request 0's intended send time): time series align on it.
    pub(crate) start: Instant,
}

impl LoadReport {
    pub(crate) fn status(&self, code: u16) -> u64 {
        self.statuses.get(&code).copied().unwrap_or(0)
    }

    pub(crate) fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(code, _)| (200..300).contains(*code))
            .map(|(_, n)| n)
            .sum()
    }

    /// Sent requests per second, over the send window.
    pub(crate) fn achieved_rps(&self) -> f64 {
        let secs = self.send_window.as_secs_f64();
        if secs > 0.0 {
            self.sent as f64 / secs
        } else {
            0.0
        }
    }
}
