//! Unit tests of the controller's pacing, of what feeds its deep-cut rule and of when it
//! re-measures its base; where it settles is tested by simulation (`tests/limit_simulation.rs`,
//! `tests/limit_robustness.rs`, `tests/limit_below_capacity.rs`).

use std::time::Duration;

use tokio::time::Instant;

use super::Adaptive;
use crate::limit::adaptive_config::AdaptiveConfig;
use crate::limit::algorithm::{Algorithm, Sample};

/// Feeds `samples` finished jobs of ideal waiting work (every job takes `rtt`, every slot
/// is used, so goodput is proportional to the limit), calling `each` with the controller
/// and the limit it returned after every one.
fn feed_ideal(
    adaptive: &mut Adaptive,
    now: &mut Instant,
    rtt: Duration,
    samples: usize,
    mut each: impl FnMut(&Adaptive, usize),
) {
    let mut limit = adaptive.admitted;
    for _ in 0..samples {
        // `limit` jobs finish per `rtt`.
        *now += rtt / u32::try_from(limit).unwrap_or(u32::MAX);
        limit = adaptive.update(&Sample {
            now: *now,
            rtt,
            in_flight: limit,
            dropped: false,
            refused: 0,
        });
        each(adaptive, limit);
    }
}

/// [`feed_ideal`], returning the (paced) limit after each job.
fn run(adaptive: &mut Adaptive, now: &mut Instant, rtt: Duration, samples: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(samples);
    feed_ideal(adaptive, now, rtt, samples, |_, limit| out.push(limit));
    out
}

fn adaptive(initial: usize) -> Adaptive {
    Adaptive::new(AdaptiveConfig {
        initial: Some(initial),
        ..AdaptiveConfig::default()
    })
}

fn biggest_rise(limits: &[usize]) -> Option<usize> {
    limits.windows(2).map(|w| w[1].saturating_sub(w[0])).max()
}

#[test]
fn a_large_rise_is_admitted_one_slot_per_finished_job_and_a_cut_at_once() {
    let mut adaptive = adaptive(128);
    let mut now = Instant::now();
    let climb = run(&mut adaptive, &mut now, Duration::from_millis(20), 2_000);
    let top = *climb.last().unwrap();
    assert!(top >= 512, "slow start doubled 128 to {top} only");
    // Slow start doubles: a rise of the whole limit, spread over a round of its jobs.
    assert_eq!(biggest_rise(&climb), Some(1), "a doubling admitted at once");

    // The work gets four times as slow at once: a queue, cut without pacing.
    let cut = run(&mut adaptive, &mut now, Duration::from_millis(80), 10 * top);
    let mut limits = vec![top];
    limits.extend(cut);
    let biggest_fall = limits.windows(2).map(|w| w[0].saturating_sub(w[1])).max();
    assert!(biggest_fall > Some(1), "a cut was paced: {biggest_fall:?}");
}

#[test]
fn a_rise_of_a_few_slots_is_admitted_at_once() {
    let mut adaptive = adaptive(4);
    let mut now = Instant::now();
    let climb = run(&mut adaptive, &mut now, Duration::from_millis(20), 2_000);
    // 4 -> 8 -> ... -> 128: each doubling of at most `PACE_ABOVE` (64) slots in one step,
    // the next ones paced.
    assert!(*climb.last().unwrap() >= 256, "{climb:?}");
    assert_eq!(biggest_rise(&climb), Some(64));
}

/// Feeds one finished job and returns the limit.
fn feed(adaptive: &mut Adaptive, now: &mut Instant, rtt: Duration, dropped: bool) -> usize {
    let in_flight = adaptive.admitted;
    *now += rtt / u32::try_from(in_flight).unwrap_or(u32::MAX);
    adaptive.update(&Sample {
        now: *now,
        rtt,
        in_flight,
        dropped,
        refused: 0,
    })
}

#[test]
fn back_offs_for_drops_do_not_count_as_a_deep_run_of_latency_cuts() {
    let mut adaptive = adaptive(128);
    let mut now = Instant::now();
    let fast = Duration::from_millis(20);
    let top = *run(&mut adaptive, &mut now, fast, 2_000).last().unwrap();
    assert!(top >= 512, "slow start doubled 128 to {top} only");
    // Timeouts: every job dropped after 200 ms, so each window backs off by 10 %, down to
    // under a quarter of where it was.
    let mut limit = top;
    for _ in 0..200_000 {
        limit = feed(&mut adaptive, &mut now, Duration::from_millis(200), true);
        if limit * 4 < top {
            break;
        }
    }
    assert!(limit * 4 < top, "backed off to {limit} only, from {top}");
    // Then the jobs succeed again, and queue: 100 run at full speed, more share them (at
    // 207 in flight, twice the base RTT). The guard must cut toward 100. Judged with the
    // back-offs as if they were latency cuts (and their stale RTT as the peak), the run
    // would look deep and "not ours", and the limit be restored to where the timeouts
    // began.
    let from = limit;
    let mut lowest = limit;
    for _ in 0..20 * from {
        let queued = fast.mul_f64((adaptive.admitted as f64 / 100.0).max(1.0));
        limit = feed(&mut adaptive, &mut now, queued, false);
        lowest = lowest.min(limit);
        assert!(
            limit * 2 < top,
            "restored to {limit} after backing off from {top} to {from}"
        );
    }
    assert!(lowest <= 130, "a queue at {from} was cut to {lowest} only");
}

/// Feeds `secs` of jobs taking `rtt` with `in_flight` of them running (at most the limit)
/// and returns the lowest limit seen.
fn lowest_limit(adaptive: &mut Adaptive, now: &mut Instant, in_flight: usize, secs: u64) -> usize {
    let end = *now + Duration::from_secs(secs);
    let rtt = Duration::from_millis(20);
    let mut lowest = adaptive.admitted;
    while *now < end {
        let running = in_flight.min(adaptive.admitted).max(1);
        *now += rtt / u32::try_from(running).unwrap_or(u32::MAX);
        let limit = adaptive.update(&Sample {
            now: *now,
            rtt,
            in_flight: running,
            dropped: false,
            refused: 0,
        });
        lowest = lowest.min(limit);
    }
    lowest
}

fn probing_every_second(limit: usize) -> Adaptive {
    Adaptive::new(AdaptiveConfig {
        initial: Some(limit),
        max: limit,
        probe_interval: Duration::from_secs(1),
        ..AdaptiveConfig::default()
    })
}

#[test]
fn a_re_measure_runs_at_half_a_limit_that_binds() {
    let mut adaptive = probing_every_second(64);
    let mut now = Instant::now();
    // Every slot used: the limit holds the work back, so the base is re-measured at 32.
    let lowest = lowest_limit(&mut adaptive, &mut now, 64, 3);
    assert_eq!(lowest, 32, "no re-measure at half the limit");
}

#[test]
fn a_re_measure_does_not_refuse_callers_below_a_limit_nobody_reaches() {
    let mut adaptive = probing_every_second(64);
    let mut now = Instant::now();
    // 40 in flight under a limit of 64: halving it would refuse 8 callers for a window
    // (the simulation at half the capacity: every refusal after the warm-up was one).
    let lowest = lowest_limit(&mut adaptive, &mut now, 40, 3);
    assert_eq!(lowest, 64, "re-measured by refusing the demand");
}

/// Feeds `samples` jobs of CPU-like work: `knee` run at full speed, more share it (each
/// takes `20 ms × in_flight / knee`), every slot used. Returns the limit after each.
fn run_shared(
    adaptive: &mut Adaptive,
    now: &mut Instant,
    knee: usize,
    samples: usize,
) -> Vec<usize> {
    run_shared_reported(adaptive, now, knee, samples, |gap| gap)
}

/// As [`run_shared`], with `report` deciding how much of each job's share of the time
/// passes before its completion is reported (the jobs and their RTTs are unchanged).
fn run_shared_reported(
    adaptive: &mut Adaptive,
    now: &mut Instant,
    knee: usize,
    samples: usize,
    mut report: impl FnMut(Duration) -> Duration,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let in_flight = adaptive.admitted;
        let rtt = Duration::from_millis(20).mul_f64((in_flight as f64 / knee as f64).max(1.0));
        *now += report(rtt / u32::try_from(in_flight).unwrap_or(u32::MAX));
        out.push(adaptive.update(&Sample {
            now: *now,
            rtt,
            in_flight,
            dropped: false,
            refused: 0,
        }));
    }
    out
}

#[test]
fn after_the_cuts_the_next_move_goes_where_the_queue_would_vanish() {
    let mut adaptive = Adaptive::new(AdaptiveConfig {
        initial: Some(16),
        max: 16,
        ..AdaptiveConfig::default()
    });
    let mut now = Instant::now();
    run_shared(&mut adaptive, &mut now, 16, 2_000);
    assert!(
        adaptive.limit >= 15,
        "settled at {} below a knee of 16",
        adaptive.limit
    );
    // The capacity halves: at 16 in flight the RTT doubles (past the tolerance of 1.75), so
    // the guard cuts, smoothed, to 12, where it is 1.5× the base: within tolerance, but
    // still a queue of a third. The next move goes down to 12 × 1/1.5 = 8 at once, and
    // goodput, flat above the knee, keeps it (before: 12, 11, 9, then a rejected 5).
    let settled = adaptive.limit;
    let after = run_shared(&mut adaptive, &mut now, 8, 2_000);
    let mut path = vec![settled];
    for limit in after {
        if path.last() != Some(&limit) {
            path.push(limit);
        }
    }
    assert_eq!(
        &path[..3],
        &[16, 12, 8],
        "the path after the change: {path:?}"
    );
    assert!(
        path[3..].iter().all(|&l| (7..=9).contains(&l)),
        "left the knee: {path:?}"
    );
}

#[test]
fn a_pending_move_to_the_queue_free_limit_does_not_survive_a_restarted_search() {
    // Marked by a run of cuts that ended while callers brought too little work for the move
    // to be made, then a new base: slow start must double as usual, not take 5 % steps
    // after its first kept doubling.
    let mut adaptive = adaptive(16);
    adaptive.to_queue_free = true;
    adaptive.restart_search();
    let mut now = Instant::now();
    let climb = run(&mut adaptive, &mut now, Duration::from_millis(20), 2_000);
    let mut path = vec![16];
    for limit in climb {
        if path.last() != Some(&limit) {
            path.push(limit);
        }
    }
    // (Rises of up to 64 slots are admitted at once, so each doubling is one step here.)
    assert_eq!(&path[..4], &[16, 32, 64, 128], "slow start: {path:?}");
}

#[test]
fn goodput_is_the_slots_in_use_over_the_time_a_job_holds_one() {
    let mut adaptive = adaptive(8);
    let mut now = Instant::now();
    // Little's law over the window's jobs: 8 in flight for 20 ms each is 400 jobs a
    // second, however their completions bunched in time; a dropped job holds its slot as
    // long as a served one, but only the served count.
    for dropped in [false, false, false, true] {
        feed(&mut adaptive, &mut now, Duration::from_millis(20), dropped);
    }
    let w = adaptive.window.expect("a window is open");
    assert_eq!((w.samples, w.successes), (4, 3));
    assert!((w.goodput() - 300.0).abs() < 1e-6, "{}", w.goodput());
    let empty = super::window::Window::empty(super::window::WindowKind::Measure, 8, now, 0);
    assert_eq!(empty.goodput(), 0.0);
}

#[test]
fn completions_reported_in_bursts_do_not_move_the_knee() {
    let mut adaptive = adaptive(16);
    let mut now = Instant::now();
    // 20 s of work at about 50,000 jobs a second; judged over the last 15.
    // Completions reported in bursts, as a busy runtime reports them: one job in 16
    // finishes after a gap of 16 jobs' time, the others at the same instant.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let bursts = |gap: Duration| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if seed % 16 == 0 {
            gap * 16
        } else {
            Duration::ZERO
        }
    };
    let limits = run_shared_reported(&mut adaptive, &mut now, 1_000, 1_000_000, bursts);
    let settled = &limits[250_000..];
    let near = settled
        .iter()
        .filter(|&&l| (900..=1_100).contains(&l))
        .count();
    let share = near as f64 / settled.len() as f64;
    // Judged by completions per second of each window (whose noise here is about 12 % a
    // window), the limit wandered far from the knee.
    assert!(
        share >= 0.9,
        "within 10 % of the knee {:.0} % of the time",
        share * 100.0
    );
}

/// A measure window of `samples` jobs under `limit`, each `rtt` seconds in a slot with
/// `limit` in flight, all served.
fn window_of(limit: usize, samples: u32, rtt: f64, now: Instant) -> super::window::Window {
    use super::window::{Window, WindowKind};
    let mut w = Window::empty(WindowKind::Measure, limit, now, 0);
    w.samples = samples;
    w.successes = samples;
    w.rtt_sum = rtt * f64::from(samples);
    w.rtt_sq_sum = rtt * rtt * f64::from(samples);
    w.max_in_flight = limit;
    w.in_flight_sum = (limit as f64) * f64::from(samples);
    w
}

/// Sets up a climber at `limit` that will test one slot more from its next window.
fn about_to_move_up(limit: usize, rtt: f64) -> (Adaptive, Instant) {
    let mut adaptive = adaptive(limit);
    let now = Instant::now();
    adaptive.base = Some(rtt);
    adaptive.starting = false;
    adaptive.direction = super::Direction::Up;
    adaptive.step = 1;
    adaptive.hold_left = 0;
    adaptive.next_probe = now.checked_add(Duration::from_secs(3600));
    (adaptive, now)
}

#[test]
fn a_move_under_test_is_judged_before_the_base_is_re_measured() {
    // 2 cores of CPU work: the climber tests a third slot, which raises the latency by half
    // and buys nothing, and the periodic re-measure falls due in that very window. The
    // move must be rejected, and the re-measure restore 2, not the tested 3 (it did: the
    // restore kept the move unjudged, and the simulated limit spent 20 windows at 1–4
    // slots finding its way back).
    let (mut adaptive, now) = about_to_move_up(2, 0.020);
    adaptive.climb(&window_of(2, 16, 0.020, now), 100.0, 0.020);
    assert_eq!(adaptive.limit, 3, "the climber's test");
    adaptive.next_probe = Some(now);
    adaptive.decide(&window_of(3, 16, 0.030, now), now);
    assert_eq!(adaptive.limit, 2, "the test of 3 slots was not rejected");
    assert_eq!(adaptive.probing_from, None);
    // The re-measure runs in the next window, from the judged limit.
    adaptive.decide(&window_of(2, 16, 0.020, now), now);
    assert_eq!((adaptive.limit, adaptive.probing_from), (1, Some(2)));
}

#[test]
fn a_down_test_the_latency_guard_answers_is_not_repeated_from_the_same_limit() {
    // At 2 slots on 2 cores a test of 1 halves the goodput for two windows, and a knee of
    // 1 would double the RTT at 2, past the tolerance: once rejected from 2, the climber
    // tests upwards only, and holds as long as before between tests.
    let (mut adaptive, now) = about_to_move_up(2, 0.020);
    adaptive.direction = super::Direction::Down;
    adaptive.climb(&window_of(2, 16, 0.020, now), 100.0, 0.020);
    assert_eq!(adaptive.limit, 1, "the first down test is made");
    adaptive.climb(&window_of(1, 16, 0.020, now), 50.0, 0.020);
    assert_eq!(adaptive.limit, 2, "the down test was not rejected");
    let mut tested = Vec::new();
    for _ in 0..400 {
        let (limit, rtt, goodput) = match adaptive.limit {
            1 => (1, 0.020, 50.0),
            2 => (2, 0.020, 100.0),
            n => (n, 0.010 * n as f64, 100.0),
        };
        adaptive.climb(&window_of(limit, 16, rtt, now), goodput, rtt);
        if adaptive.limit != 2 {
            tested.push(adaptive.limit);
        }
    }
    assert!(tested.iter().all(|&l| l == 3), "tests: {tested:?}");
    // Up tests held 1, 2, 4, 8, then 16 windows × 4 apart: a handful in 400 windows.
    assert!((3..=12).contains(&tested.len()), "tests: {tested:?}");
}

/// A measure window of `samples` jobs at `limit`, half of them taking `fast` seconds and half
/// `slow`, with callers refused during it (the demand is above the limit).
fn two_speed_window(
    limit: usize,
    samples: u32,
    fast: f64,
    slow: f64,
    now: Instant,
) -> super::window::Window {
    let mut w = window_of(limit, samples, 0.0, now);
    let half = f64::from(samples) / 2.0;
    w.rtt_sum = (fast + slow) * half;
    w.rtt_sq_sum = (fast * fast + slow * slow) * half;
    w.refused_to = 5;
    w
}

#[test]
fn a_move_whose_goodput_clearly_stayed_flat_is_judged_before_the_noise_rule_is_satisfied() {
    // 2 slots on 2 cores, then a test of a third: every job 1.5× slower on average (10 or
    // 50 ms, so noisy that the noise rule asks for 57 samples), the goodput flat where the
    // move needed 25 % more. That is clear well before 57 samples.
    let (mut adaptive, now) = about_to_move_up(2, 0.020);
    adaptive.climb(&window_of(2, 16, 0.020, now), 100.0, 0.020);
    assert_eq!(adaptive.limit, 3, "the up test is made");
    for samples in [16, 24] {
        let w = two_speed_window(3, samples, 0.010, 0.050, now);
        assert!(
            !adaptive.window_done(&w, now),
            "{samples} samples settle it"
        );
    }
    let w = two_speed_window(3, 32, 0.010, 0.050, now);
    assert!(adaptive.window_done(&w, now), "32 samples do not settle it");
    adaptive.climb(&w, w.goodput(), 0.030);
    assert_eq!(adaptive.limit, 2, "the flat goodput kept the move");

    // Without noise, half the minimum window settles it: a doubling from 2 to 4 slots on
    // 2 cores (every job twice as slow) is rejected after 8 jobs, not 16.
    let (mut adaptive, now) = about_to_move_up(2, 0.020);
    adaptive.step = 2;
    adaptive.climb(&window_of(2, 16, 0.020, now), 100.0, 0.020);
    assert_eq!(adaptive.limit, 4, "the doubling is made");
    let mut w = window_of(4, 7, 0.040, now);
    w.refused_to = 5;
    assert!(!adaptive.window_done(&w, now), "7 samples settle it");
    let mut w = window_of(4, 8, 0.040, now);
    w.refused_to = 5;
    assert!(adaptive.window_done(&w, now), "8 samples do not settle it");

    // A move whose goodput rose past the bar waits for the whole noise rule: a winning
    // move is not kept on less evidence than before.
    let (mut adaptive, now) = about_to_move_up(2, 0.020);
    adaptive.climb(&window_of(2, 16, 0.020, now), 100.0, 0.020);
    let w = two_speed_window(3, 32, 0.005, 0.035, now);
    assert!(
        !adaptive.window_done(&w, now),
        "a winning move was kept early"
    );
}

/// Slow start at a small limit: the first window and every doubling that goodput clearly
/// followed end after `MIN_REJECT_SAMPLES` (8) samples instead of `MIN_WINDOW_SAMPLES`
/// (16), so from 2 slots of 20 ms jobs the limit reaches 32 after 220 ms of jobs, where the
/// sample floor took 360 ms (its windows: 8 rounds at 2 slots, 4 at 4, 2 at 8; the lab's
/// sleep work at the seed's rate spent 0.4 s of its 10 s run below 32 slots).
#[test]
fn slow_start_keeps_a_clear_doubling_without_waiting_for_the_sample_floor() {
    let mut fast = adaptive(2);
    let start = Instant::now();
    let mut now = start;
    let rtt = Duration::from_millis(20);
    let mut limit = fast.admitted;
    while limit < 32 {
        limit = feed(&mut fast, &mut now, rtt, false);
        assert!(
            now - start < Duration::from_millis(1_000),
            "stuck at {limit}"
        );
    }
    let took = now - start;
    assert!(
        took <= Duration::from_millis(250),
        "32 slots only after {took:?}"
    );

    // A doubling that goodput did not follow (the jobs take twice as long at 4 slots as at
    // 2: two cores) is not kept early: its window ends early only to reject it.
    let mut slow = adaptive(2);
    let mut now = Instant::now();
    let mut after = None;
    for _ in 0..200 {
        let at = slow.admitted;
        let rtt = Duration::from_millis(if at > 2 { 40 } else { 20 });
        let limit = feed(&mut slow, &mut now, rtt, false);
        if at == 4 && limit != 4 {
            after = Some(limit);
            break;
        }
    }
    assert_eq!(
        after,
        Some(2),
        "a doubling that goodput did not follow was kept"
    );
}

/// With a latency objective the climber's goodput counts only the jobs served within it,
/// its bar is a fifth of `gain`, and an objective below the base RTT (no job can meet it)
/// is ignored.
#[test]
fn a_stated_objective_counts_only_the_jobs_served_in_time() {
    let mut adaptive = Adaptive::new(AdaptiveConfig {
        initial: Some(8),
        slo: Some(Duration::from_millis(30)),
        ..AdaptiveConfig::default()
    });
    let mut now = Instant::now();
    for rtt in [20, 40, 20, 40] {
        feed(&mut adaptive, &mut now, Duration::from_millis(rtt), false);
    }
    let w = adaptive.window.expect("a window is open");
    assert_eq!((w.successes, w.within_slo), (4, 2));
    // No base yet: plain goodput, plain bar.
    assert_eq!(adaptive.objective(&w), w.goodput());
    assert_eq!(adaptive.bar_gain(), 0.5);
    adaptive.base = Some(0.020);
    assert!((adaptive.objective(&w) - w.goodput() / 2.0).abs() < 1e-9);
    assert!((adaptive.bar_gain() - 0.1).abs() < 1e-12);
    // The work got slower than the objective: it is out of reach, and ignored.
    adaptive.base = Some(0.035);
    assert_eq!(adaptive.objective(&w), w.goodput());
    assert_eq!(adaptive.bar_gain(), 0.5);
}

/// Feeds ideal waiting work (see [`feed_ideal`]) and returns the decided limit (not the
/// paced one) each time it changed, starting with the current one.
fn decided_path(
    adaptive: &mut Adaptive,
    now: &mut Instant,
    rtt: Duration,
    samples: usize,
) -> Vec<usize> {
    let mut path = vec![adaptive.limit];
    feed_ideal(adaptive, now, rtt, samples, |a, _| {
        if path.last() != Some(&a.limit) {
            path.push(a.limit);
        }
    });
    path
}

/// A controller at `limit`, past slow start, with the base `rtt` and no re-measure due
/// for an hour.
fn past_slow_start(limit: usize, rtt: Duration) -> Adaptive {
    let mut adaptive = adaptive(limit);
    adaptive.base = Some(rtt.as_secs_f64());
    adaptive.starting = false;
    adaptive.next_probe = Instant::now().checked_add(Duration::from_secs(3600));
    adaptive
}

#[test]
fn a_new_base_that_the_next_window_refutes_does_not_raise_the_slow_start_cap() {
    // Cuts from 512 to 256 did not lower a latency spike of 4× the base, so the guard took
    // the spike's RTT as the new base and went back to 512. The next window, at the old
    // RTT, refutes that base: the work did not get slower, so slow start must not double
    // on to 4 × 512 (the lab's HTTP server on a saturated core: 542 → 1,084 → 2,168 at
    // 114 ms, where the RTT had been 28 ms, then cut back down).
    let rtt = Duration::from_millis(20);
    let mut adaptive = past_slow_start(256, rtt);
    adaptive.cuts_from = Some(512);
    adaptive.rebase(4.0 * rtt.as_secs_f64(), super::decide::Restart::LittlesLaw);
    assert_eq!(adaptive.limit, 512, "the cuts are undone");
    assert_eq!(
        adaptive.start_cap(),
        Some(2048),
        "while the new base stands"
    );
    let mut now = Instant::now();
    let path = decided_path(&mut adaptive, &mut now, rtt, 20_000);
    assert!(
        path[1] <= 512 + 512 / 20,
        "the first move after the refuted base is a small step: {path:?}"
    );
    assert!(
        path.iter().take_while(|&&l| l < 1024).count() >= 4,
        "the limit doubled on after the refuted base: {path:?}"
    );
}

#[test]
fn slow_start_after_a_deep_run_of_cuts_stops_where_the_run_began() {
    // A run of latency cuts took 1,024 to 200 and the latency is back within tolerance:
    // slow start searches again, doubling up to the 1,024 the run began from, then the
    // climber's small steps go on (before: 200 → 400 → 800 → 1,600).
    let rtt = Duration::from_millis(20);
    let mut adaptive = past_slow_start(200, rtt);
    adaptive.deep_from = Some((1024, 3.0 * rtt.as_secs_f64()));
    let mut now = Instant::now();
    let path = decided_path(&mut adaptive, &mut now, rtt, 20_000);
    assert_eq!(&path[..4], &[200, 400, 800, 1024], "slow start: {path:?}");
    assert!(
        path[4] <= 1024 + 1024 / 20,
        "small steps from where the run began: {path:?}"
    );
}

#[test]
fn a_move_kept_only_because_its_latency_stayed_flat_does_not_double_the_step() {
    // Work was refused at 100 slots; the move to 110 brought no more goodput (the refused
    // callers came back later) at the same latency: kept as free, but that says nothing
    // about a larger move, so the step stays 10. (Doubling it, the lab's HTTP layer below
    // its capacity climbed 3,701 → 6,989 on such moves while nothing bound it.)
    let move_to_110 = || {
        let (mut adaptive, now) = about_to_move_up(100, 0.020);
        adaptive.step = 10;
        let mut w = window_of(100, 100, 0.020, now);
        w.refused_to = 5;
        adaptive.climb(&w, 5_000.0, 0.020);
        assert_eq!(adaptive.limit, 110, "the move is made");
        let mut w = window_of(110, 110, 0.020, now);
        w.max_in_flight = 105;
        w.refused_to = 5;
        (adaptive, w)
    };
    // (Kept, the climber makes its next move in the same decision.)
    let (mut adaptive, w) = move_to_110();
    adaptive.climb(&w, 5_000.0, 0.020);
    assert_eq!(adaptive.step, 10, "the step stays");
    assert_eq!(adaptive.limit, 120, "kept, and the next move is another 10");
    // A move that won its share of goodput doubles the step as before.
    let (mut adaptive, w) = move_to_110();
    adaptive.climb(&w, 5_400.0, 0.020);
    assert_eq!(adaptive.step, 20, "the step doubles");
    assert_eq!(adaptive.limit, 130, "kept, and the next move is 20");
}

#[test]
fn a_verdict_on_a_window_whose_latency_moved_more_than_the_move_can_is_void() {
    // At 100 slots of 20 ms work the climber tests 105; that window's jobs take 30 ms, a
    // stall every job shared (5 more slots can queue 5 %, not 50 %). The rejection is
    // void: back to 100, the same test after the same hold, no flip, no longer hold.
    let (mut adaptive, now) = about_to_move_up(100, 0.020);
    adaptive.step = 5;
    adaptive.climb(&window_of(100, 100, 0.020, now), 5_000.0, 0.020);
    assert_eq!(adaptive.limit, 105, "the test is made");
    for void in 1..=super::climb::MAX_VOIDED {
        adaptive.climb(&window_of(105, 105, 0.030, now), 3_500.0, 0.030);
        assert_eq!(adaptive.limit, 100, "void {void}: the test is undone");
        assert_eq!(
            adaptive.direction,
            super::Direction::Up,
            "void {void}: no flip"
        );
        assert_eq!(
            (adaptive.hold, adaptive.hold_left),
            (1, 1),
            "void {void}: same hold"
        );
        adaptive.climb(&window_of(100, 100, 0.020, now), 5_000.0, 0.020);
        assert_eq!(adaptive.limit, 100, "void {void}: the hold is kept");
        adaptive.climb(&window_of(100, 100, 0.020, now), 5_000.0, 0.020);
        assert_eq!(adaptive.limit, 105, "void {void}: the same test again");
    }
    // Conditions that keep changing are the conditions: the third verdict counts.
    adaptive.climb(&window_of(105, 105, 0.030, now), 3_500.0, 0.030);
    assert_eq!(adaptive.limit, 100);
    assert_eq!(
        adaptive.direction,
        super::Direction::Down,
        "rejected as usual"
    );
    assert_eq!(adaptive.hold, 2, "the hold doubles as usual");

    // Down: 100 → 95, and the window at 95 runs at 15 ms, faster than 5 fewer slots can
    // make it (at most 5 % faster). Its goodput keeps the move, but the verdict is void.
    let (mut adaptive, now) = about_to_move_up(100, 0.020);
    adaptive.direction = super::Direction::Down;
    adaptive.step = 5;
    adaptive.climb(&window_of(100, 100, 0.020, now), 5_000.0, 0.020);
    assert_eq!(adaptive.limit, 95, "the down test is made");
    adaptive.climb(&window_of(95, 95, 0.015, now), 6_333.0, 0.015);
    assert_eq!(
        adaptive.limit, 100,
        "a down-move kept on a faster window is undone"
    );
    assert_eq!(adaptive.direction, super::Direction::Down);

    // A rejection the move explains (5 % more slots, 5 % more latency, goodput flat) counts.
    let (mut adaptive, now) = about_to_move_up(100, 0.020);
    adaptive.step = 5;
    adaptive.climb(&window_of(100, 100, 0.020, now), 5_000.0, 0.020);
    adaptive.climb(&window_of(105, 105, 0.021, now), 5_000.0, 0.021);
    assert_eq!(adaptive.limit, 100);
    assert_eq!(adaptive.direction, super::Direction::Down, "rejected");
}
