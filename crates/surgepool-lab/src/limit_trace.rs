//! `--trace-limit`: writes the adaptive limit's decision trace (surgepool's `TRACE` events
//! of target `surgepool::limit::adaptive`, feature `tracing`) to a file, a line per
//! measure window: `t_s=<seconds since the file was opened> field=value ...`. Every other
//! event is of no interest to this subscriber, so its callsites stay disabled. The
//! subscriber is installed once per process; [`write_to`] may switch it to a new file
//! between runs (`disturb` runs many servers in one process).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use anyhow::Context as _;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// The target of the adaptive limit's decision events.
const TARGET: &str = "surgepool::limit::adaptive";

/// The file the trace goes to now, and when it was opened.
type Sink = Arc<Mutex<Option<(Instant, File)>>>;

struct TraceFile {
    sink: Sink,
}

/// The installed subscriber's sink, once [`write_to`] has installed it.
static SINK: OnceLock<Sink> = OnceLock::new();

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
        // A line per window (tens a second): written at once, so nothing is lost when
        // the process exits. A failed write loses that line only.
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        let Some((start, file)) = sink.as_mut() else {
            return;
        };
        let mut line = format!("t_s={:.4}", start.elapsed().as_secs_f64());
        event.record(&mut Line(&mut line));
        line.push('\n');
        let _ = file.write_all(line.as_bytes());
    }
}

/// Sends the decision trace to `path` (created or truncated) from now on, its times counted
/// from now: installs the global subscriber on the first call, and switches its file on
/// later ones. Call before the limits to trace start.
pub(crate) fn write_to(path: &Path) -> anyhow::Result<()> {
    let file = File::create(path)
        .with_context(|| format!("cannot create the limit trace {}", path.display()))?;
    let mut installed = false;
    let sink = SINK.get_or_init(|| {
        installed = true;
        Arc::default()
    });
    *sink
        .lock()
        .map_err(|_| anyhow::anyhow!("the limit trace's lock is poisoned"))? =
        Some((Instant::now(), file));
    if installed {
        let layer = TraceFile { sink: sink.clone() };
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .context("a tracing subscriber is already installed")?;
    }
    Ok(())
}

/// Creates `--trace-limit`'s directory (and its parents) if it is not there.
pub(crate) fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the trace directory {}", dir.display()))
}
