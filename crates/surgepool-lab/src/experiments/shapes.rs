//! `surgepool-lab shapes`: seed 000 rerun in Rust. What does it cost to hand one `a + b`
//! to concurrency, shape by shape, on this machine?
//!
//! # What is measured
//!
//! Each shape is set up once (runtime, pool tasks or threads, channels: all outside the
//! clock), then measured as Go's `testing.B` does ([`crate::run_stats`]): a warm-up grows
//! the op count until one run lasts the target time, then several runs of that count give
//! the median, min and max ns/op. Allocations are counted over the same timed runs, on all
//! threads ([`crate::alloc_count`]). Every run checks that the ops' results sum to the
//! exact expected value, so a shape cannot skip or repeat work unnoticed.
//!
//! One op is one `a + b` handed over and finished: the clock stops only after every op of
//! the run has completed and its result was observed (awaited through its channel or handle,
//! or counted in the shared atomic sum of `batch::Batch`). The spawn shapes wait
//! for their ops every [`WINDOW`] ops to bound memory (Go's spawn all `b.N` first).
//!
//! | row | one op |
//! |---|---|
//! | `serial` | `a + b` in a loop on one thread |
//! | `spawn_oneshot` | `tokio::spawn`, result sent through a `oneshot`, awaited (Go: `SpawnPerRequestChan`) |
//! | `spawn_atomic` | `tokio::spawn`, handle dropped, atomic sum + completion signal (Go: `SpawnPerRequestWG`) |
//! | `pool_shared_channel_<N>` | a send on one bounded `async-channel` (MPMC, as a Go channel) read by N long-lived tasks; atomic sum + completion |
//! | `pool_per_worker_channel_<N>` | a send on the next of N bounded tokio `mpsc` channels, one per task; atomic sum + completion |
//! | `joinset` | `JoinSet::spawn`, result from `join_next` |
//! | `spawn_blocking` | `tokio::task::spawn_blocking`, handle dropped, atomic sum + completion |
//! | `std_thread_spawn` | `std::thread::spawn` + `join`, 64 threads in flight |
//! | `rayon_spawn` | `ThreadPool::spawn` from the main thread, atomic sum + completion |
//! | `rayon_scope` | `Scope::spawn` inside `ThreadPool::scope`, the scope's end as completion |
//! | `crossbeam_pool_<cores>` | a send of `(a, b)` on a bounded crossbeam channel read by `cores` OS threads; atomic sum + completion |
//! | `crossbeam_pool_boxed_<cores>` | the same with a `Box<dyn FnOnce>` job, as a closure pool must |
//! | `surgepool_pool` | `Pool::submit(..).await`, then the `TaskHandle` awaited for the result |
//! | `surgepool_pool_spawn` | `Pool::try_submit`, handle dropped (fire-and-forget); atomic sum + completion |
//! | `surgepool_pool_spawn_adaptive` | the same with the default `Limit::adaptive()` |
//! | `surgepool_blocking` | `BlockingPool::try_submit`, handle dropped; atomic sum + completion |
//! | `pingpong_atomic[_batch64]` | one op (or 64) per round trip between two spinning threads: the floor |
//!
//! The seed's pools send results back over a second channel; here every fire-and-forget
//! shape completes through the same atomic sum + completion signal, so that the rows differ
//! only in how work is handed over, which is the seed's own advice.
//!
//! # Reading the numbers
//!
//! Wall-clock figures need a quiet machine: on a 2-core VM shared with compilers, every
//! row slows down, and the ping-pong floor (two threads that spin, pinned to two cores)
//! degrades by orders of magnitude whenever one of its threads is preempted. The goals are
//! therefore judged on ratios within one run. For a figure that noise cannot move, count
//! instructions: run one shape with a fixed op count under callgrind at two counts and
//! divide the difference by the difference in ops (set-up cancels out):
//!
//! ```text
//! valgrind --tool=callgrind surgepool-lab shapes --only surgepool_pool_spawn --ops 10000 --runs 1
//! valgrind --tool=callgrind surgepool-lab shapes --only surgepool_pool_spawn --ops 30000 --runs 1
//! # Ir/op = (Ir(30000) - Ir(10000)) / 20000
//! ```
//!
//! Syscalls per op (`strace -f -c` on the same command) tell a shape that parks a thread
//! per op from one that only computes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use surgepool::Limit;

use crate::machine::Machine;
use crate::run_stats::{self, Phase, Plan};

mod affinity;
mod batch;
mod common;
mod floor;
mod ours;
mod report;
mod threads;
mod tokio_shapes;

use common::{Shape, WINDOW};
use report::{Report, Row, SeedGo, Settings};
use tokio_shapes::{Spawn, CHANNEL_CAPACITY};

/// Arguments of `surgepool-lab shapes`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Short preset: 5 runs of ~100 ms per shape (under a minute on 2 cores). The default
    /// preset does 10 runs of ~500 ms (a few minutes).
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Only the shape of this name, or if none has it, the shapes whose name contains it
    /// (repeatable).
    #[arg(long, value_name = "TEXT")]
    only: Vec<String>,
    /// Measured runs per shape (overrides the preset).
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// Target duration of one run in milliseconds (overrides the preset).
    #[arg(long, value_name = "MS")]
    target_ms: Option<u64>,
    /// Run exactly N ops per run and skip the warm-up (for profilers such as callgrind,
    /// whose instruction counts are stable on a noisy machine).
    #[arg(long, value_name = "N")]
    ops: Option<u64>,
    /// CI smoke mode: one run of a few ops per shape, no warm-up. Numbers mean nothing.
    #[arg(long, hide = true)]
    smoke: bool,
}

/// Ops per run in smoke mode: enough to cross a ping-pong batch, small for a debug build.
const SMOKE_OPS: u64 = 128;
/// No run does more ops than this (memory and time guard for the cheapest shapes).
const MAX_OPS: u64 = 1 << 32;
/// `std_thread_spawn` is ~10⁴× slower than the rest; keep its runs to a few thousand threads.
const MAX_THREAD_OPS: u64 = 50_000;

/// One row to measure: how to set its shape up, and what to print beside it.
struct Spec {
    name: String,
    op: String,
    seed: Option<SeedGo>,
    max_ops: u64,
    build: Box<dyn FnOnce() -> anyhow::Result<Box<dyn Shape>>>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn spec<S, F>(
    name: impl Into<String>,
    op: impl Into<String>,
    seed: Option<SeedGo>,
    build: F,
) -> Spec
where
    S: Shape + 'static,
    F: FnOnce() -> anyhow::Result<S> + 'static,
{
    Spec {
        name: name.into(),
        op: op.into(),
        seed,
        max_ops: MAX_OPS,
        build: Box::new(move || Ok(Box::new(build()?) as Box<dyn Shape>)),
    }
}

const fn go(ns: f64, bytes: f64, allocs: f64) -> Option<SeedGo> {
    Some(SeedGo { ns, bytes, allocs })
}

/// Every row, in the order of the table.
fn specs(cores: usize) -> Vec<Spec> {
    let mut pool_sizes = vec![cores, 100, 1000];
    pool_sizes.sort_unstable();
    pool_sizes.dedup();
    let mut specs = vec![
        spec(
            "serial",
            "a + b in a loop, one thread",
            go(0.23, 0.0, 0.0),
            || Ok(floor::Serial),
        ),
        spec(
            "spawn_oneshot",
            "tokio::spawn, result via oneshot, awaited",
            go(280.0, 160.0, 3.0),
            move || tokio_shapes::SpawnShape::new(Spawn::Oneshot, cores),
        ),
        spec(
            "spawn_atomic",
            "tokio::spawn, atomic sum + completion (WaitGroup)",
            go(131.0, 56.0, 2.0),
            move || tokio_shapes::SpawnShape::new(Spawn::Atomic, cores),
        ),
    ];
    for &n in &pool_sizes {
        // The seed's pools: 10 (its GOMAXPROCS), 100, 1000 workers.
        let seed = match n {
            1000 => go(244.0, 0.0, 0.0),
            100 => go(193.0, 0.0, 0.0),
            _ => go(96.0, 0.0, 0.0),
        };
        specs.push(spec(
            format!("pool_shared_channel_{n}"),
            format!("send to {n} tasks on one async-channel; atomic + completion"),
            seed,
            move || tokio_shapes::SharedChannelPool::new(n, cores),
        ));
    }
    for &n in pool_sizes.iter().filter(|&&n| n == cores || n == 100) {
        specs.push(spec(
            format!("pool_per_worker_channel_{n}"),
            format!("send to the next of {n} tasks' tokio mpsc; atomic + completion"),
            if n == 100 { go(74.0, 0.0, 0.0) } else { None },
            move || tokio_shapes::PerWorkerChannelPool::new(n, cores),
        ));
    }
    specs.extend([
        spec(
            "joinset",
            "JoinSet::spawn, result via join_next",
            None,
            move || tokio_shapes::SpawnShape::new(Spawn::JoinSet, cores),
        ),
        spec(
            "spawn_blocking",
            "tokio spawn_blocking, atomic sum + completion",
            None,
            move || tokio_shapes::SpawnShape::new(Spawn::Blocking, cores),
        ),
        Spec {
            max_ops: MAX_THREAD_OPS,
            ..spec(
                "std_thread_spawn",
                "thread::spawn + join, 64 in flight",
                None,
                || Ok(threads::StdThreadSpawn),
            )
        },
        spec(
            "rayon_spawn",
            "ThreadPool::spawn from outside, atomic + completion",
            None,
            move || threads::Rayon::new(cores, false),
        ),
        spec(
            "rayon_scope",
            "Scope::spawn inside ThreadPool::scope",
            None,
            move || threads::Rayon::new(cores, true),
        ),
        spec(
            format!("crossbeam_pool_{cores}"),
            format!("send (a, b) to {cores} threads on crossbeam; atomic + completion"),
            None,
            move || threads::CrossbeamPool::new(cores, false),
        ),
        spec(
            format!("crossbeam_pool_boxed_{cores}"),
            format!("send Box<dyn FnOnce> to {cores} threads on crossbeam"),
            None,
            move || threads::CrossbeamPool::new(cores, true),
        ),
        spec(
            "surgepool_pool",
            "Pool::submit(..).await, TaskHandle awaited",
            None,
            move || ours::OurPool::new(ours::PoolShape::Handle, cores, None),
        ),
        spec(
            "surgepool_pool_spawn",
            "Pool::spawn(..).await (no handle); atomic + completion",
            None,
            move || ours::OurPool::new(ours::PoolShape::Spawn, cores, None),
        ),
        spec(
            "surgepool_pool_detach",
            "Pool::try_submit, handle dropped; atomic + completion",
            None,
            move || ours::OurPool::new(ours::PoolShape::Detach, cores, None),
        ),
        spec(
            "surgepool_pool_spawn_adaptive",
            "as surgepool_pool_spawn, with the default Limit::adaptive()",
            None,
            move || ours::OurPool::new(ours::PoolShape::Spawn, cores, Some(Limit::adaptive())),
        ),
        spec(
            "surgepool_blocking",
            "BlockingPool::spawn_timeout (no handle); atomic + completion",
            None,
            move || ours::OurBlockingPool::new(cores),
        ),
        spec(
            "pingpong_atomic",
            "1 op per round trip, 2 spinning threads",
            None,
            || floor::PingPong::new(1),
        ),
        spec(
            "pingpong_atomic_batch64",
            "64 ops per round trip, 2 spinning threads",
            None,
            || floor::PingPong::new(floor::PINGPONG_BATCH),
        ),
    ]);
    specs
}

/// The specs `only` asks for: a pattern that is some shape's whole name picks that shape
/// alone (`surgepool_pool` is not `surgepool_pool_spawn`), any other picks by substring.
fn select(specs: Vec<Spec>, only: &[String]) -> Vec<Spec> {
    if only.is_empty() {
        return specs;
    }
    let exact: Vec<bool> = only
        .iter()
        .map(|o| specs.iter().any(|s| s.name == *o))
        .collect();
    specs
        .into_iter()
        .filter(|s| {
            only.iter().zip(&exact).any(|(o, &exact)| {
                if exact {
                    s.name == *o
                } else {
                    s.name.contains(o.as_str())
                }
            })
        })
        .collect()
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    // No steady tick: its drawing thread would allocate inside the timed regions. The bar
    // redraws only between runs, when the lab updates it.
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} shapes  {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let (preset, default_runs, default_target_ms) = if args.smoke {
        ("smoke", 1, 0)
    } else if args.quick {
        ("quick", 5, 100)
    } else {
        ("default", 10, 500)
    };
    let runs = args.runs.unwrap_or(default_runs);
    let target_ms = args.target_ms.unwrap_or(default_target_ms);
    anyhow::ensure!(runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(
        args.smoke || target_ms >= 1,
        "--target-ms must be at least 1"
    );
    anyhow::ensure!(args.ops != Some(0), "--ops must be at least 1");

    let machine = Machine::detect();
    let specs = select(specs(machine.cores), &args.only);
    anyhow::ensure!(!specs.is_empty(), "no shape matches --only {:?}", args.only);

    let fixed_ops = args.ops.or(args.smoke.then_some(SMOKE_OPS));
    let bar = progress_bar(specs.len() as u64);
    let mut rows = Vec::with_capacity(specs.len());
    for spec in specs {
        let plan = Plan {
            target: Duration::from_millis(target_ms),
            runs,
            max_ops: spec.max_ops,
            fixed_ops,
        };
        bar.set_message(format!("{}: setting up", spec.name));
        let name = spec.name.clone();
        let result = (spec.build)().and_then(|mut shape| {
            run_stats::measure(
                &plan,
                |ops| shape.run(ops),
                |phase| match phase {
                    Phase::WarmUp(ops) => bar.set_message(format!("{name}: warm-up, {ops} ops")),
                    Phase::Run { index, runs } => {
                        bar.set_message(format!("{name}: run {}/{runs}", index + 1));
                    }
                },
            )
            // The shape is torn down here, before the next one starts.
        });
        if let Err(e) = &result {
            bar.suspend(|| eprintln!("surgepool-lab shapes: {name}: {e:#}"));
        }
        rows.push(Row::new(spec.name, spec.op, spec.seed, result));
        bar.inc(1);
    }
    bar.finish_and_clear();

    let goals = report::goals(&rows, machine.cores);
    let report = Report {
        machine,
        settings: Settings {
            preset,
            target_ms,
            runs,
            fixed_ops,
            window: WINDOW,
            channel_capacity: CHANNEL_CAPACITY,
        },
        shapes: rows,
        goals,
    };
    print!("{}", report.render());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let failed: Vec<&str> = report
        .shapes
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.name.as_str())
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "some shapes failed: {}",
        failed.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(only: &[&str]) -> Vec<String> {
        let only: Vec<String> = only.iter().map(|s| (*s).to_owned()).collect();
        select(specs(2), &only)
            .into_iter()
            .map(|s| s.name)
            .collect()
    }

    #[test]
    fn only_picks_exact_names_alone_and_substrings_otherwise() {
        assert_eq!(names(&["surgepool_pool"]), ["surgepool_pool"]);
        assert_eq!(
            names(&["pingpong"]),
            ["pingpong_atomic", "pingpong_atomic_batch64"]
        );
        assert_eq!(names(&["serial", "joinset"]), ["serial", "joinset"]);
        assert!(names(&["nothing"]).is_empty());
        assert_eq!(names(&[]).len(), specs(2).len());
    }

    #[test]
    fn rows_have_unique_names_and_every_required_one() {
        for cores in [1, 2, 100, 1000, 4096] {
            let names: Vec<String> = specs(cores).into_iter().map(|s| s.name).collect();
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), names.len(), "{names:?}");
            for required in [
                "serial",
                "spawn_oneshot",
                "pool_shared_channel_1000",
                "surgepool_blocking",
            ] {
                assert!(names.iter().any(|n| n == required));
            }
            assert!(names.contains(&format!("crossbeam_pool_{cores}")));
            assert!(names.contains(&format!("pool_per_worker_channel_{cores}")));
            assert!(names.contains(&format!("pool_shared_channel_{cores}")));
        }
    }
}
