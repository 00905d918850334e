//! [`Recorder`]: what the open loop's workers measure, and how it becomes a [`LoadReport`].

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::LoadReport;

pub(super) fn histogram() -> Histogram<u64> {
    // 1 µs to 1 hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Everything the workers measure, behind one lock taken once per request. (Per-worker
/// histograms would cost about 200 KB each per histogram, times thousands of connections.)
#[derive(Debug)]
pub(super) struct Recorder {
    start: Instant,
    sent: u64,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    timeouts: u64,
    ok_latency: Histogram<u64>,
    shed_latency: Histogram<u64>,
    ok_service: Histogram<u64>,
    shed_from_intended: Histogram<u64>,
    send_lag: Histogram<u64>,
    by_second: Vec<Histogram<u64>>,
    slo_us: u64,
    within_slo: u64,
    within_slo_from_send: u64,
    within_slo_by_second: Vec<u64>,
    first_send: Option<Instant>,
    last_send: Option<Instant>,
    last_done: Option<Instant>,
}

/// How one request ended.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ending {
    Status(u16),
    Error,
    Timeout,
}

impl Recorder {
    /// An empty recorder for a schedule that begins at `start` and lasts `seconds` (rounded
    /// up), judged against `slo`.
    pub(super) fn new(start: Instant, seconds: usize, slo: Duration) -> Recorder {
        Recorder {
            start,
            sent: 0,
            statuses: BTreeMap::new(),
            errors: 0,
            timeouts: 0,
            ok_latency: histogram(),
            shed_latency: histogram(),
            ok_service: histogram(),
            shed_from_intended: histogram(),
            send_lag: histogram(),
            by_second: (0..seconds).map(|_| histogram()).collect(),
            slo_us: micros(slo),
            within_slo: 0,
            within_slo_from_send: 0,
            within_slo_by_second: vec![0; seconds],
            first_send: None,
            last_send: None,
            last_done: None,
        }
    }

    pub(super) fn sent(&mut self, at: Instant) {
        self.sent += 1;
        self.first_send.get_or_insert(at);
        self.last_send = Some(at);
    }

    pub(super) fn ended(
        &mut self,
        ending: Ending,
        intended: Instant,
        sent_at: Instant,
        done: Instant,
    ) {
        self.last_done = Some(self.last_done.map_or(done, |d| d.max(done)));
        self.send_lag
            .saturating_record(micros(sent_at.saturating_duration_since(intended)));
        match ending {
            Ending::Status(status) => {
                *self.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    let latency = micros(done - intended);
                    self.ok_latency.saturating_record(latency);
                    let service = micros(done - sent_at);
                    self.ok_service.saturating_record(service);
                    if service <= self.slo_us {
                        self.within_slo_from_send += 1;
                    }
                    let second = intended.saturating_duration_since(self.start).as_secs();
                    if let Some(h) = self.by_second.get_mut(second as usize) {
                        h.saturating_record(latency);
                    }
                    if latency <= self.slo_us {
                        self.within_slo += 1;
                        if let Some(n) = self.within_slo_by_second.get_mut(second as usize) {
                            *n += 1;
                        }
                    }
                } else if status == 503 {
                    self.shed_latency.saturating_record(micros(done - sent_at));
                    self.shed_from_intended
                        .saturating_record(micros(done - intended));
                }
            }
            Ending::Error => self.errors += 1,
            Ending::Timeout => self.timeouts += 1,
        }
    }

    /// The report of a finished run of `total` scheduled requests at `rate` per second.
    pub(super) fn into_report(self, total: u64, rate: f64) -> LoadReport {
        let start = self.start;
        let mut report = LoadReport {
            offered: total,
            sent: self.sent,
            unsent: total - self.sent,
            statuses: self.statuses,
            errors: self.errors,
            timeouts: self.timeouts,
            ok_latency: self.ok_latency,
            shed_latency: self.shed_latency,
            ok_service: self.ok_service,
            shed_from_intended: self.shed_from_intended,
            send_lag: self.send_lag,
            ok_by_second: self.by_second,
            ok_within_slo: self.within_slo,
            ok_within_slo_from_send: self.within_slo_from_send,
            ok_within_slo_by_second: self.within_slo_by_second,
            elapsed: self
                .last_done
                .unwrap_or(start)
                .saturating_duration_since(start),
            send_window: Duration::ZERO,
            start,
        };
        if let (Some(first), Some(last)) = (self.first_send, self.last_send) {
            // The window of n sends spans n - 1 intervals; count the last one too.
            report.send_window = last.duration_since(first) + Duration::from_secs_f64(1.0 / rate);
        }
        report
    }
}
