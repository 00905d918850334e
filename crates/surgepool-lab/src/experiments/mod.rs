//! One module per experiment.

pub(crate) mod batch;
pub(crate) mod disturb;
pub(crate) mod fleet;
pub(crate) mod http;
pub(crate) mod latest_report;
pub(crate) mod overload;
pub(crate) mod serve;
pub(crate) mod shapes;
pub(crate) mod soak;
