//! One file per route group.

pub(crate) mod hello;
pub(crate) mod orders;
pub(crate) mod quote;
pub(crate) mod users;
