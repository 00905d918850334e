//! Every request accounted: the identities, and the cross-check against a pool's snapshot.
//!
//! * `offered == accepted + rejected`
//! * `accepted == completed + failed + shed + cancelled + lost`
//!
//! `lost` is whatever the first identity leaves over, plus, for surgepool pools, every
//! disagreement between our own counts and the pool's `snapshot()`. The pool's numbers are
//! never used to fill a gap: the two are independent witnesses and must agree.

use surgepool::Snapshot;

use crate::scenario_json::StrategyResult;

/// Computes `lost` (and notes) for a finished run; `snapshot` is the pool's, when there is one.
pub(crate) fn reconcile(result: &mut StrategyResult, snapshot: Option<&Snapshot>) {
    let mut lost = 0u64;
    let mut notes = Vec::new();
    let mut note = |diff: u64, text: String| {
        if diff != 0 {
            lost += diff;
            notes.push(text);
        }
    };

    let admitted = result.accepted + result.rejected;
    note(
        result.offered.abs_diff(admitted),
        format!(
            "offered {} != accepted {} + rejected {}",
            result.offered, result.accepted, result.rejected
        ),
    );
    let ended = result.completed + result.failed + result.shed + result.cancelled;
    note(
        result.accepted.abs_diff(ended),
        format!(
            "accepted {} != completed + failed + shed + cancelled = {ended}",
            result.accepted
        ),
    );

    if let Some(s) = snapshot {
        let checks = [
            ("submitted/offered", s.submitted, result.offered),
            ("accepted", s.accepted, result.accepted),
            ("rejected", s.rejected, result.rejected),
            ("completed", s.completed, result.completed),
            ("panicked/failed", s.panicked, result.failed),
            (
                "shed+cancelled",
                s.shed + s.cancelled,
                result.shed + result.cancelled,
            ),
            ("queued+running after shutdown", s.queued + s.running, 0),
        ];
        for (what, pool, ours) in checks {
            note(
                pool.abs_diff(ours),
                format!("pool snapshot {what} = {pool}, ours = {ours}"),
            );
        }
        // Our drop guard cannot tell a queued task shed at its queue timeout during the
        // drain from one cancelled at the drain's deadline; the pool can, so when the sums
        // agree its split is the one reported.
        if s.shed + s.cancelled == result.shed + result.cancelled {
            result.shed = s.shed;
            result.cancelled = s.cancelled;
        }
    }
    result.lost = lost;
    result.accounting_notes.extend(notes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balanced() -> StrategyResult {
        StrategyResult {
            offered: 10,
            accepted: 7,
            rejected: 3,
            completed: 4,
            failed: 1,
            shed: 1,
            cancelled: 1,
            ..StrategyResult::default()
        }
    }

    #[test]
    fn balanced_books_lose_nothing() {
        let mut r = balanced();
        reconcile(&mut r, None);
        assert_eq!(r.lost, 0);
        assert!(r.accounting_notes.is_empty());
    }

    #[test]
    fn a_missing_request_is_lost() {
        let mut r = balanced();
        r.accepted = 8;
        r.offered = 11;
        reconcile(&mut r, None);
        assert_eq!(r.lost, 1);
        assert_eq!(r.accounting_notes.len(), 1);
    }

    #[test]
    fn disagreeing_with_the_pool_is_lost() {
        let mut r = balanced();
        let mut s = Snapshot::default();
        s.submitted = 10;
        s.accepted = 7;
        s.rejected = 3;
        s.completed = 5; // the pool says one more completed than we saw
        s.panicked = 1;
        s.shed = 1;
        reconcile(&mut r, Some(&s));
        assert_eq!(r.lost, 2); // completed off by one, shed+cancelled off by one
        assert_eq!(r.accounting_notes.len(), 2);
    }
}
