//! Errors of the layer's builder. (Serving never fails on the layer's account: a shed request
//! gets a response, and the inner service's errors pass through unchanged.)

use std::fmt;

/// A setting of [`AdmissionLayer::builder`](crate::AdmissionLayer::builder) that cannot work.
///
/// # Examples
///
/// ```
/// use surgepool::Limit;
/// use surgepool_tower::AdmissionLayer;
///
/// let err = AdmissionLayer::builder().limit(Limit::fixed(0)).build().unwrap_err();
/// assert_eq!(err.setting(), "limit");
///
/// // A queue needs a deadline, or a waiting request could wait forever.
/// let err = AdmissionLayer::builder().queue_capacity(10).build().unwrap_err();
/// assert_eq!(err.setting(), "queue_capacity");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    setting: &'static str,
    reason: String,
}

impl BuildError {
    pub(crate) fn new(setting: &'static str, reason: impl Into<String>) -> BuildError {
        BuildError {
            setting,
            reason: reason.into(),
        }
    }

    /// The name of the setting that is wrong (`"limit"`, `"queue_capacity"`, `"deadline"`).
    ///
    /// See the [example on `BuildError`](BuildError#examples).
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl From<surgepool::BuildError> for BuildError {
    fn from(err: surgepool::BuildError) -> BuildError {
        BuildError::new(err.setting(), err.to_string())
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.starts_with("invalid `") {
            // Already formatted by surgepool's own error.
            f.write_str(&self.reason)
        } else {
            write!(f, "invalid `{}`: {}", self.setting, self.reason)
        }
    }
}

impl std::error::Error for BuildError {}
