//! One module per experiment.

pub(crate) mod batch;
pub(crate) mod http;
pub(crate) mod overload;
pub(crate) mod serve;
pub(crate) mod shapes;
