//! Helpers shared by the integration tests (each test file is its own crate and includes
//! this module with `mod support;`).

use surgepool::Snapshot;

/// The two identities of API.md, which every snapshot must satisfy.
pub(crate) fn assert_identities(s: &Snapshot) {
    assert_eq!(s.submitted, s.accepted + s.rejected, "{s:?}");
    assert_eq!(
        s.accepted,
        s.completed + s.panicked + s.cancelled + s.shed + s.queued + s.running,
        "{s:?}"
    );
}
