//! The `overload` experiment. (Skeleton: lands with its issue.)

/// Arguments of `surgepool-lab overload`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`overload` is not implemented yet")
}
