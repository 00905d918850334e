//! One run of the plan: a scenario against one strategy, from starting its consumer
//! processes through the sampler, the open-loop arrivals and the drain to its [`Row`].

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use surgepool::{Limit, Pool, SubmitError};
use surgepool_redis::{Job, Overflow, Queue, Source};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::process::{Proc, Report};
use super::sim::{encode, Ctx};
use super::{downstream, output, Args, Row, Sample, Scenario, Strategy};

pub(super) async fn run_row(
    args: &Args,
    url: &str,
    index: usize,
    scenario: Scenario,
    strategy: Strategy,
) -> anyhow::Result<Row> {
    let (rps, secs) = match scenario {
        Scenario::Spike => (args.spike_rps, args.spike_secs),
        Scenario::Slowdown => (args.slowdown_rps, args.slowdown_secs),
    };
    // Bounded by the checks in `run`: at most 3600 s × u64 rps, capped for memory.
    let jobs = ((rps as f64 * secs) as u64).clamp(1, 10_000_000);
    let service = Duration::from_millis(args.service_ms);
    let ctx = Ctx::new(jobs, args.downstream, service, args.slo());
    let pool = Pool::builder()
        .limit(Limit::fixed(args.local_limit))
        .queue_capacity(0)
        .build()
        .context("local pool")?;
    let label = format!("{}/{}", scenario.name(), strategy.name());
    let bar = output::progress(&label, jobs);

    // The overflow path and its consumer processes (none for local_only).
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut fleet: Option<(Overflow, Queue, Vec<Proc>)> = None;
    let mut serving = None;
    if !matches!(strategy, Strategy::LocalOnly) {
        let name = format!("fleet-{index}");
        let queue = Queue::builder(url, &name)
            .max_len(args.max_len)
            .connect()
            .await
            .context("connecting to the lab's redis-server")?;
        let c = ctx.clone();
        let overflow = Overflow::new(pool.clone(), queue.clone(), move |job: Job| {
            let c = c.clone();
            async move { c.handle(job.payload(), job.source() == Source::Local).await }
        });
        let (addr, server) = downstream::serve(ctx.clone()).await?;
        serving = Some(server);
        let limit = match strategy {
            Strategy::Fixed(n) => format!("fixed:{n}"),
            _ => "adaptive".to_owned(),
        };
        let mut procs = Vec::new();
        for i in 0..args.consumers {
            procs.push(Proc::spawn(url, &name, &format!("c{i}"), &limit, addr)?);
        }
        // Each process reports once it is connected; arrivals start when all have.
        let ready_by = Instant::now() + Duration::from_secs(30);
        while procs.iter().any(|p| p.report().limit == 0) {
            if procs.iter_mut().any(Proc::has_exited) {
                bail!("a consumer process exited at start (its error is above)");
            }
            if Instant::now() >= ready_by {
                bail!("the consumer processes did not report within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fleet = Some((overflow, queue, procs));
    }

    // The sampler: backlog and in-flight work every 100 ms.
    let sampler = {
        let fleet = fleet.as_ref().map(|(_, q, procs)| {
            (
                q.clone(),
                procs.iter().map(Proc::reports).collect::<Vec<_>>(),
            )
        });
        let ctx = ctx.clone();
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut series = Vec::new();
            let (mut last_t, mut last_done) = (0.0, 0);
            let (mut last_read, mut last_reads) = (0u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = rx.wait_for(|s| *s) => break,
                }
                let t_s = ctx.start.elapsed().as_secs_f64();
                let (backlog, in_flight, limits, fetch_size) = match &fleet {
                    Some((q, reports)) => {
                        let backlog = q.fleet().await.map(|f| f.waiting()).unwrap_or(0);
                        let snaps: Vec<Report> = reports.iter().map(|r| *lock(r)).collect();
                        let in_flight = snaps.iter().map(|s| s.in_flight).sum();
                        let read: u64 = snaps.iter().map(|s| s.read).sum();
                        let reads: u64 = snaps.iter().map(|s| s.reads).sum();
                        let (d_read, d_reads) = (
                            read.saturating_sub(last_read),
                            reads.saturating_sub(last_reads),
                        );
                        (last_read, last_reads) = (read, reads);
                        let size = if d_reads == 0 {
                            0.0
                        } else {
                            d_read as f64 / d_reads as f64
                        };
                        let limits = snaps.iter().map(|s| s.limit).collect();
                        (backlog, in_flight, limits, size)
                    }
                    None => (0, 0, Vec::new(), 0.0),
                };
                let limit = limits.iter().sum();
                let done = ctx.completed.load(Ordering::Relaxed);
                let dt = (t_s - last_t).max(1e-3);
                let done_per_s = done.saturating_sub(last_done) as f64 / dt;
                (last_t, last_done) = (t_s, done);
                series.push(Sample {
                    t_s,
                    backlog,
                    in_flight,
                    limit,
                    limits,
                    fetch_size,
                    done_per_s,
                    max_latency_ms: ctx.take_window_max_us() as f64 / 1000.0,
                });
            }
            series
        })
    };

    // Open-loop arrivals: each job is submitted at its intended time (late ones at once, and
    // their latency still counts from the intended time).
    let (mut local, mut queued, mut shed, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut submits = JoinSet::new();
    let interval_us = 1_000_000.0 / rps as f64;
    let slow_at_us = (secs * 500_000.0) as u64;
    let mut slowed = false;
    for seq in 0..jobs {
        let intended = (seq as f64 * interval_us) as u64;
        let now = ctx.now_us();
        if intended > now {
            tokio::time::sleep(Duration::from_micros(intended - now)).await;
        }
        if scenario == Scenario::Slowdown && !slowed && intended >= slow_at_us {
            ctx.set_service(service.saturating_mul(3));
            slowed = true;
        }
        let payload = encode(seq, intended);
        match &fleet {
            None => {
                let c = ctx.clone();
                let job = async move { c.handle(&payload, true).await };
                match pool.try_submit(job) {
                    Ok(_) => local += 1,
                    Err(SubmitError::Full(_)) => shed += 1,
                    Err(_) => errors += 1,
                }
            }
            Some((overflow, _, _)) => {
                let o = overflow.clone();
                submits.spawn(async move { o.submit(payload).await.map(|_| ()) });
            }
        }
        bar.set_position(ctx.completed.load(Ordering::Relaxed));
    }
    let arrivals_end = ctx.start.elapsed();
    while let Some(r) = submits.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_full() => shed += 1,
            _ => errors += 1,
        }
    }
    if let Some((overflow, _, _)) = &fleet {
        let s = overflow.stats();
        local = s.local;
        queued = s.queued;
    }
    let pushed = local + queued;

    // Drain: until every accepted job ran, or the drain time is up.
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain_secs);
    let mut drain_s = None;
    loop {
        let (distinct, _) = ctx.distinct_and_duplicates();
        bar.set_position(ctx.completed.load(Ordering::Relaxed));
        if distinct >= pushed {
            drain_s = Some((ctx.start.elapsed().saturating_sub(arrivals_end)).as_secs_f64());
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = ctx.start.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let series = sampler.await.unwrap_or_default();
    bar.finish_and_clear();

    let (mut consumer_acked, mut dead, mut redis_errors, mut waiting) = (0, 0, 0, 0);
    if let Some((_, queue, procs)) = fleet.take() {
        // Each process drains (5 s grace) and exits; its last report is final.
        let reports = tokio::task::spawn_blocking(move || {
            procs
                .into_iter()
                .map(|p| p.stop(Duration::from_secs(30)))
                .collect::<Vec<_>>()
        })
        .await
        .context("stopping the consumer processes")?;
        for r in reports {
            let r: Report = r?;
            consumer_acked += r.acked;
            dead += r.dead;
            redis_errors += r.redis_errors;
        }
        waiting = queue.fleet().await.map(|f| f.waiting()).unwrap_or(0);
    }
    if let Some(server) = serving {
        server.abort();
    }
    let (distinct, duplicates) = ctx.distinct_and_duplicates();
    let local_done = ctx.local_done.load(Ordering::Relaxed);
    let late: Vec<&Sample> = series
        .iter()
        .filter(|s| s.t_s * 1e6 >= slow_at_us as f64 && s.t_s <= arrivals_end.as_secs_f64())
        .collect();
    let in_flight_mean_late = if late.is_empty() {
        0.0
    } else {
        late.iter().map(|s| s.in_flight as f64).sum::<f64>() / late.len() as f64
    };
    let secs_run = elapsed.max(1e-9);
    Ok(Row {
        scenario: scenario.name(),
        strategy: strategy.name(),
        offered: jobs,
        pushed,
        local,
        queued,
        acked: consumer_acked + local_done,
        dead,
        lost: pushed.saturating_sub(distinct + dead + waiting),
        duplicates,
        shed: shed + errors,
        waiting,
        redis_errors,
        jobs_per_s: distinct as f64 / secs_run,
        latency_ms: ctx.e2e_ms(),
        run_ms: ctx.run_ms(),
        slo_goodput_rps: ctx.within_slo.load(Ordering::Relaxed) as f64 / secs_run,
        in_flight_max: series.iter().map(|s| s.in_flight).max().unwrap_or(0),
        in_flight_mean_late,
        drain_s,
        series,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
