//! Our HTTP load generator: keep-alive HTTP/1.1 connections of its own ([`raw`]: one write
//! per request, the response parsed with `httparse`, no task per connection), an open-loop fixed
//! arrival schedule (the wrk2 model), latency measured from each request's **intended** send
//! time (so a slow server cannot hide behind a stalled client: no coordinated omission), a
//! per-request deadline so no request hangs, and counts by status code.
//!
//! Loopback only: [`Target::parse_loopback`] refuses any other host, and every run is bounded
//! in time (`duration + 2 × deadline` at most).

mod closed_loop;
mod connection;
mod open_loop;
mod raw;
mod recorder;
mod report;
mod request;
mod target;

pub(crate) use self::closed_loop::{closed_loop, ClosedLoop};
pub(crate) use self::open_loop::{open_loop, OpenLoop};
pub(crate) use self::report::LoadReport;
pub(crate) use self::request::{exchange_answer, RequestTemplate};
pub(crate) use self::target::Target;

/// A report of nothing, for other modules' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::recorder::histogram;
    use super::LoadReport;

    pub(crate) fn empty_report() -> LoadReport {
        LoadReport {
            offered: 0,
            sent: 0,
            unsent: 0,
            statuses: BTreeMap::new(),
            errors: 0,
            timeouts: 0,
            ok_latency: histogram(),
            shed_latency: histogram(),
            ok_service: histogram(),
            shed_from_intended: histogram(),
            send_lag: histogram(),
            ok_by_second: Vec::new(),
            ok_within_slo: 0,
            ok_within_slo_from_send: 0,
            ok_within_slo_by_second: Vec::new(),
            elapsed: Duration::ZERO,
            send_window: Duration::ZERO,
            start: Instant::now(),
        }
    }
}
