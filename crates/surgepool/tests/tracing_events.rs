//! The `tracing` feature: the events a user filters on, with their fields, from a scripted
//! workload (a panic, a shed, a limit change, a shutdown).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use surgepool::limit::Limiter;
use surgepool::{Limit, Pool};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    message: String,
    fields: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut Captured);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let value = format!("{value:?}");
        if field.name() == "message" {
            self.0.message = value;
        } else {
            self.0.fields.push((field.name().to_owned(), value));
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut captured = Captured {
            level: *event.metadata().level(),
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut Fields(&mut captured));
        self.0.lock().unwrap().push(captured);
    }
}

impl Capture {
    fn find(&self, message: &str) -> Captured {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .find(|e| e.message == message)
            .cloned()
            .unwrap_or_else(|| panic!("no event {message:?} in {events:#?}"))
    }
}

fn field<'a>(e: &'a Captured, name: &str) -> &'a str {
    e.fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {name} in {e:?}"))
}

/// Runs `body` on a current-thread runtime with paused time, capturing every event.
fn captured<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) -> Capture {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(body());
    });
    capture
}

#[test]
fn a_panic_a_shed_a_limit_change_and_a_shutdown_are_events() {
    let capture = captured(|| async {
        let pool = Pool::builder()
            .name("checkout")
            .limit(Limit::fixed(1))
            .queue_timeout(Duration::from_millis(10))
            .build()
            .unwrap();
        let slow = pool
            .try_submit(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                panic!("card declined")
            })
            .unwrap();
        // Waits behind the slow task longer than its queue timeout: shed.
        let late = pool.try_submit(async { 1 }).unwrap();
        assert!(slow.await.unwrap_err().is_panic());
        assert!(late.await.unwrap_err().is_shed());
        let report = pool.shutdown().await;
        assert!(!report.timed_out);

        // A limit that moves: AIMD backs off on a drop.
        let aimd = Limit::aimd_builder().initial(10).min(1).build().unwrap();
        let limiter = Limiter::new(aimd).unwrap();
        let before = limiter.limit();
        limiter.try_acquire().unwrap().dropped();
        assert!(limiter.limit() < before);
    });

    let panicked = capture.find("task panicked");
    assert_eq!(panicked.level, Level::WARN);
    assert_eq!(field(&panicked, "pool"), "checkout");
    assert!(
        field(&panicked, "panic").contains("card declined"),
        "{panicked:?}"
    );

    let shed = capture.find("task shed");
    assert_eq!(shed.level, Level::DEBUG);
    assert_eq!(field(&shed, "pool"), "checkout");

    let changed = capture.find("limit changed");
    assert_eq!(changed.level, Level::DEBUG);
    assert!(
        field(&changed, "to").parse::<usize>().unwrap() < field(&changed, "from").parse().unwrap()
    );

    assert_eq!(capture.find("shutdown began").level, Level::INFO);
    let ended = capture.find("shutdown ended");
    assert_eq!(ended.level, Level::INFO);
    assert_eq!(field(&ended, "pool"), "checkout");
    assert_eq!(field(&ended, "timed_out"), "false");
}

/// The adaptive limit's decision trace: one `TRACE` event per measure window, with what it
/// measured and where the limit went (paused time: every job takes exactly 10 ms).
#[test]
fn every_adaptive_measure_window_is_a_trace_event() {
    let capture = captured(|| async {
        let limit = Limit::adaptive_builder().initial(4).build().unwrap();
        let limiter = Limiter::new(limit).unwrap();
        for _ in 0..20 {
            let permits: Vec<_> = std::iter::from_fn(|| limiter.try_acquire()).collect();
            tokio::time::advance(Duration::from_millis(10)).await;
            permits.into_iter().for_each(|p| p.success());
        }
    });

    let window = capture.find("adaptive window");
    assert_eq!(window.level, Level::TRACE);
    // The first window ran under the initial limit, every job took 10 ms, nothing failed.
    assert_eq!(field(&window, "limit"), "4");
    let rtt: f64 = field(&window, "rtt_ms").parse().unwrap();
    assert!((rtt - 10.0).abs() < 0.5, "{window:?}");
    assert_eq!(field(&window, "dropped"), "0");
    assert_eq!(field(&window, "starting"), "true");
    let samples: u32 = field(&window, "samples").parse().unwrap();
    assert!(samples >= 4, "{window:?}");
    // Slow start: a later window under a doubled limit.
    let events = capture.0.lock().unwrap();
    assert!(
        events
            .iter()
            .filter(|e| e.message == "adaptive window")
            .any(|e| field(e, "limit") == "8"),
        "{events:#?}"
    );
}
