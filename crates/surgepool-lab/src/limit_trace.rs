//! `--trace-limit`: writes the adaptive limit's decision trace (surgepool's `TRACE` events
//! of target `surgepool::limit::adaptive`, feature `tracing`) to a file, a line per
//! measure window: `t_s=<seconds since install> field=value ...`. Every other event is of no
//! interest to this subscriber, so its callsites stay disabled.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context as _;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// The target of the adaptive limit's decision events.
const TARGET: &str = "surgepool::limit::adaptive";

struct TraceFile {
    start: Instant,
    file: Mutex<File>,
}

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() != "message" {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let _ = write!(self.0, " {}={value:.3}", field.name());
    }
}

impl<S: Subscriber> Layer<S> for TraceFile {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target() == TARGET {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.target() == TARGET
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = format!("t_s={:.4}", self.start.elapsed().as_secs_f64());
        event.record(&mut Line(&mut line));
        line.push('\n');
        // A line per window (tens a second): written at once, so nothing is lost when
        // the child exits. A failed write loses that line only.
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// Installs the global subscriber that writes the decision trace to `path` (created or
/// truncated). Call once, before the pools start.
pub(crate) fn install(path: &Path) -> anyhow::Result<()> {
    let file = File::create(path)
        .with_context(|| format!("cannot create the limit trace {}", path.display()))?;
    let layer = TraceFile {
        start: Instant::now(),
        file: Mutex::new(file),
    };
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
        .context("a tracing subscriber is already installed")
}
