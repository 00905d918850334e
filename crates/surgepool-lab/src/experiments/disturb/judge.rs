//! Reading two limit traces: the reference level the disturbed run's limit should come back
//! to, and when it came back within 20 % of it to stay.
//!
//! For a disturbance in the middle of a run the reference is where the disturbed run's own
//! limit was (its median) in the two seconds before it, leaving out the run's first second
//! (slow start). For one that starts with the run or at an instant (cheap warm-up turning
//! dear, clients honouring `Retry-After`) it is the control run's median limit over the
//! judged span. Two fresh undisturbed runs can settle 20–30 % apart on a real machine, so a
//! run's own level is the sharper reference where it has one, and the control run's wander
//! around its own median is reported beside every verdict.
//!
//! Every limit is judged as the concurrency it allows: a limit above the number of
//! closed-loop clients counts as that number. With every client in a slot, more slots change
//! nothing (a control run at 2,048 and a disturbed one at 1,536 both admit all 1,024 clients
//! and serve alike), so the knee the goal speaks of lies at or below the clients.

use std::time::Duration;

/// "Back" means within this share of the reference, as the goal says.
pub(super) const BAND: f64 = 0.2;

/// Back means staying within [`BAND`] this long (or to the end of the run, if sooner).
pub(super) const STAY: Duration = Duration::from_secs(1);

/// What the disturbed run's limit is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reference {
    /// Its own median limit in the two seconds before the disturbance.
    OwnBefore,
    /// The control run's median limit over the judged span.
    Control,
}

/// When the disturbance ran, from the start of the run (`from == to`: a change at one
/// instant, such as cheap work turning dear, or one that starts with the run).
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) from: Duration,
    pub(super) to: Duration,
}

/// What one case's two runs say.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(super) struct Verdict {
    /// The level the limit should come back to (see [`Reference`]).
    pub(super) reference: f64,
    /// The control run's median limit over the judged span (from `to` + settle to the end).
    pub(super) control_median: f64,
    /// The disturbed run's median limit over the same span.
    pub(super) disturbed_median: f64,
    /// The disturbed run's lowest limit from the disturbance's start to `settle` after its end.
    pub(super) lowest: usize,
    /// Seconds from the end of the disturbance to the first sample from which the limit
    /// stays within [`BAND`] of the reference for [`STAY`]; `None` when it never does.
    pub(super) back_after_s: Option<f64>,
    /// Share of the judged span's samples within [`BAND`] of the reference.
    pub(super) disturbed_within: f64,
    /// Share of the control run's judged samples within [`BAND`] of its own median: how
    /// much the limit wanders with no disturbance at all.
    pub(super) control_steady: f64,
}

/// Judges two traces sampled every `every`: the judged span is from `window.to + settle`
/// to the end. `None` when a trace is too short for the reference or the span.
pub(super) fn judge(
    control: &[usize],
    disturbed: &[usize],
    every: Duration,
    window: Window,
    settle: Duration,
    reference: Reference,
    clients: usize,
) -> Option<Verdict> {
    let allowed =
        |trace: &[usize]| -> Vec<usize> { trace.iter().map(|&l| l.min(clients)).collect() };
    let (control, disturbed) = (&allowed(control)[..], &allowed(disturbed)[..]);
    let index =
        |t: Duration| usize::try_from(t.as_nanos() / every.as_nanos().max(1)).unwrap_or(usize::MAX);
    let span_start = index(window.to + settle);
    let span = |trace: &[usize]| -> Vec<usize> { trace.get(span_start..).unwrap_or(&[]).to_vec() };
    let control_median = median(&span(control))?;
    let disturbed_median = median(&span(disturbed))?;
    let before = index(window.from);
    let second = index(Duration::from_secs(1));
    let level = match reference {
        Reference::OwnBefore => {
            let first = before.saturating_sub(2 * second).max(second);
            median(disturbed.get(first..before)?)?
        }
        Reference::Control => control_median,
    };
    let near = |limit: usize, of: f64| (limit as f64 - of).abs() <= BAND * of;
    let share = |trace: &[usize], of: f64| {
        let s = span(trace);
        s.iter().filter(|&&l| near(l, of)).count() as f64 / s.len().max(1) as f64
    };
    let end = index(window.to);
    let lowest = disturbed
        .get(before.min(disturbed.len())..span_start.min(disturbed.len()))
        .and_then(|s| s.iter().copied().min())
        .unwrap_or(0);
    let stay = index(STAY).max(1);
    let back_after_s = (end..disturbed.len())
        .find(|&i| {
            disturbed[i..(i + stay).min(disturbed.len())]
                .iter()
                .all(|&l| near(l, level))
        })
        .map(|i| (i - end) as f64 * every.as_secs_f64());
    Some(Verdict {
        reference: level,
        control_median,
        disturbed_median,
        lowest,
        back_after_s,
        disturbed_within: share(disturbed, level),
        control_steady: share(control, control_median),
    })
}

fn median(values: &[usize]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2] as f64),
        _ => Some((v[n / 2 - 1] + v[n / 2]) as f64 / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS100: Duration = Duration::from_millis(100);
    /// More clients than any limit of these traces, unless a test says otherwise.
    const CLIENTS: usize = 10_000;

    /// Judges traces sampled every 100 ms, with a settle of `settle_s` seconds.
    fn at_100ms(
        control: &[usize],
        disturbed: &[usize],
        window: Window,
        settle_s: u64,
        reference: Reference,
        clients: usize,
    ) -> Option<Verdict> {
        let settle = Duration::from_secs(settle_s);
        judge(
            control, disturbed, MS100, window, settle, reference, clients,
        )
    }

    fn secs(from: u64, to: u64) -> Window {
        Window {
            from: Duration::from_secs(from),
            to: Duration::from_secs(to),
        }
    }

    #[test]
    fn back_is_the_first_sample_from_which_the_limit_stays_within_the_band() {
        // 100 ms samples; disturbance from 3 s to 4 s; settle 1 s. The control settled
        // elsewhere: the run's own level in the 2 s before the disturbance is the reference
        // (its first second, slow start, is not).
        let control = vec![150; 80];
        let mut disturbed = vec![2; 10];
        disturbed.extend([100; 20]);
        disturbed.extend([10; 10]); // during: down to 10
        disturbed.extend([85, 50, 70, 85, 90]); // 85 touches the band, then leaves it
        disturbed.extend([100; 35]); // back to stay from the fourth sample after the end
        let v = at_100ms(
            &control,
            &disturbed,
            secs(3, 4),
            1,
            Reference::OwnBefore,
            CLIENTS,
        )
        .unwrap();
        assert_eq!(v.reference, 100.0);
        assert_eq!(v.control_median, 150.0);
        assert_eq!(v.lowest, 10);
        assert!((v.back_after_s.unwrap() - 0.3).abs() < 1e-9, "{v:?}");
        assert_eq!(v.control_steady, 1.0);
        assert_eq!(v.disturbed_within, 1.0);
    }

    #[test]
    fn the_lowest_counts_the_dip_after_the_end_and_never_back_is_none() {
        let control = vec![200; 40];
        let mut disturbed = vec![200; 10];
        disturbed.extend([3; 30]); // falls right after an instant's change, stays down
        let v = at_100ms(
            &control,
            &disturbed,
            secs(1, 1),
            2,
            Reference::Control,
            CLIENTS,
        )
        .unwrap();
        assert_eq!(v.reference, 200.0);
        assert_eq!(v.back_after_s, None);
        assert_eq!(v.lowest, 3);
        assert_eq!(v.disturbed_within, 0.0);
        assert_eq!(v.disturbed_median, 3.0);
    }

    #[test]
    fn a_wandering_control_shows_in_its_steadiness() {
        let control: Vec<usize> = (0..40)
            .map(|i| if i % 2 == 0 { 100 } else { 300 })
            .collect();
        let disturbed = vec![200; 40];
        let v = at_100ms(
            &control,
            &disturbed,
            secs(0, 0),
            2,
            Reference::Control,
            CLIENTS,
        )
        .unwrap();
        assert_eq!(v.control_median, 200.0);
        assert_eq!(v.control_steady, 0.0);
        assert_eq!(v.back_after_s, Some(0.0));
    }

    #[test]
    fn too_short_a_trace_gives_no_verdict() {
        assert_eq!(
            at_100ms(&[1; 5], &[1; 5], secs(0, 1), 1, Reference::Control, CLIENTS),
            None
        );
        // No sample between the end of the first second and the disturbance.
        assert_eq!(
            at_100ms(
                &[1; 50],
                &[1; 50],
                secs(1, 2),
                1,
                Reference::OwnBefore,
                CLIENTS
            ),
            None
        );
        assert_eq!(median(&[3, 1, 2]), Some(2.0));
        assert_eq!(median(&[4, 1, 2, 3]), Some(2.5));
    }

    #[test]
    fn a_limit_above_the_clients_counts_as_the_clients() {
        // 1,024 closed-loop clients: the control settled at 2,048 and the disturbed run
        // came back to 1,536. Both admit every client; neither limit binds.
        let control = vec![2_048; 80];
        let mut disturbed = vec![2_048; 40];
        disturbed.extend([300; 10]);
        disturbed.extend([1_536; 30]);
        let v = at_100ms(
            &control,
            &disturbed,
            secs(4, 5),
            1,
            Reference::OwnBefore,
            1_024,
        )
        .unwrap();
        assert_eq!(v.reference, 1_024.0);
        assert_eq!(v.disturbed_median, 1_024.0);
        assert_eq!(v.back_after_s, Some(0.0));
        assert_eq!(v.lowest, 300);
        // Below the clients nothing changes: 700 is 32 % short of 1,024.
        let mut low = vec![2_048; 50];
        low.extend([700; 30]);
        let v = at_100ms(&control, &low, secs(4, 5), 1, Reference::OwnBefore, 1_024).unwrap();
        assert_eq!(v.back_after_s, None);
    }
}
