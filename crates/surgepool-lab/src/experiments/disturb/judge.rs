//! Reading two limit traces: where the knee is, and when the disturbed run's limit came back
//! within 20 % of it. For a disturbance in the middle of a run the knee is where the
//! disturbed run's own limit was (its median) in the two seconds before it, from the end of
//! the first second on (slow start); for one at the start (cheap
//! warm-up, clients honouring `Retry-After`), the control run's median limit once it had time
//! to settle. (Two fresh undisturbed runs can settle 20–30 % apart on a real machine, so a
//! run's own level is the sharper reference where it has one.)

use std::time::Duration;

/// "Back" means within this share of the knee, as the goal says.
pub(super) const BAND: f64 = 0.2;

/// What one case's two runs say.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(super) struct Verdict {
    /// The reference: the disturbed run's median limit in the 2 s before the disturbance,
    /// or (for a disturbance from the start) the control run's median over the judged span.
    pub(super) knee: f64,
    /// The control run's median limit over the judged span.
    pub(super) control_median: f64,
    /// The disturbed run's median limit over the same span.
    pub(super) disturbed_median: f64,
    /// The disturbed run's lowest limit from the start of the disturbance to its end
    /// (to the end of the run for a case judged from the start).
    pub(super) lowest: usize,
    /// Seconds from the end of the disturbance to the first sample within [`BAND`] of the
    /// knee; `None` when it never came back.
    pub(super) back_after_s: Option<f64>,
    /// Shares of the judged span's samples within [`BAND`] of the knee.
    pub(super) control_within: f64,
    pub(super) disturbed_within: f64,
}

/// Judges the traces (one sample every `every`): the disturbance runs from `from` to `to`
/// (from the start of the run; `from == to` for a change at one instant, such as cheap work
/// turning dear); the judged span is from `to` + `settle` to the end. With `own_reference`,
/// the knee is the disturbed run's median limit in the two seconds before `from` (none of
/// the run's first second, its slow start); otherwise the
/// control run's median over the judged span. The lowest limit is taken over the
/// disturbance, or from an instant's change to the end.
pub(super) fn judge(
    control: &[usize],
    disturbed: &[usize],
    every: Duration,
    (from, to): (Duration, Duration),
    settle: Duration,
    own_reference: bool,
) -> Option<Verdict> {
    let index =
        |t: Duration| usize::try_from(t.as_nanos() / every.as_nanos().max(1)).unwrap_or(usize::MAX);
    let span_start = index(to + settle);
    let span = |trace: &[usize]| -> Vec<usize> { trace.get(span_start..).unwrap_or(&[]).to_vec() };
    let control_median = median(&span(control))?;
    let before = index(from);
    let one_second = index(Duration::from_secs(1));
    let knee = if own_reference {
        let first = before
            .saturating_sub(2 * one_second)
            .max(one_second.min(before));
        median(disturbed.get(first..before)?)?
    } else {
        control_median
    };
    let disturbed_median = median(&span(disturbed))?;
    let within = |limit: usize| (limit as f64 - knee).abs() <= BAND * knee;
    let share = |trace: &[usize]| {
        let s = span(trace);
        s.iter().filter(|&&l| within(l)).count() as f64 / s.len().max(1) as f64
    };
    let end = index(to);
    let lowest_span = if to > from {
        disturbed.get(before.min(disturbed.len())..end.min(disturbed.len()))?
    } else {
        disturbed.get(end.min(disturbed.len())..)?
    };
    let lowest = lowest_span.iter().copied().min().unwrap_or(0);
    let back_after_s = disturbed
        .iter()
        .enumerate()
        .skip(end)
        .find(|(_, &l)| within(l))
        .map(|(i, _)| (i - end) as f64 * every.as_secs_f64());
    Some(Verdict {
        knee,
        control_median,
        disturbed_median,
        lowest,
        back_after_s,
        control_within: share(control),
        disturbed_within: share(disturbed),
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

    #[test]
    fn back_is_the_first_sample_within_the_band_after_the_end() {
        // 100 ms samples; disturbance from 3 s to 4 s; settle 1 s. The control settled
        // elsewhere: the run's own level in the 2 s before the disturbance is the knee (its
        // first second, slow start, is not).
        let control = vec![150; 70];
        let mut disturbed = vec![2; 10];
        disturbed.extend([100; 20]);
        disturbed.extend([10; 10]); // during: down to 10
        disturbed.extend([30, 50, 70, 85, 90]); // 85 is the first within 20 %
        disturbed.extend([100; 25]);
        let window = (Duration::from_secs(3), Duration::from_secs(4));
        let v = judge(
            &control,
            &disturbed,
            MS100,
            window,
            Duration::from_secs(1),
            true,
        )
        .unwrap();
        assert_eq!(v.knee, 100.0);
        assert_eq!(v.control_median, 150.0);
        assert_eq!(v.lowest, 10);
        assert!((v.back_after_s.unwrap() - 0.3).abs() < 1e-9);
        assert_eq!(v.control_within, 0.0);
        assert_eq!(v.disturbed_within, 1.0);
    }

    #[test]
    fn never_back_is_none_and_a_case_from_the_start_takes_its_lowest_over_the_run() {
        let control = vec![200; 40];
        let disturbed = vec![3; 40];
        let window = (Duration::ZERO, Duration::ZERO);
        let v = judge(
            &control,
            &disturbed,
            MS100,
            window,
            Duration::from_secs(2),
            false,
        )
        .unwrap();
        assert_eq!(v.knee, 200.0);
        assert_eq!(v.back_after_s, None);
        assert_eq!(v.lowest, 3);
        assert_eq!(v.disturbed_within, 0.0);
        assert_eq!(v.disturbed_median, 3.0);
    }

    #[test]
    fn too_short_a_trace_gives_no_verdict() {
        let window = (Duration::ZERO, Duration::from_secs(1));
        assert_eq!(
            judge(
                &[1; 5],
                &[1; 5],
                MS100,
                window,
                Duration::from_secs(1),
                false
            ),
            None
        );
        assert_eq!(median(&[3, 1, 2]), Some(2.0));
        assert_eq!(median(&[4, 1, 2, 3]), Some(2.5));
    }
}
