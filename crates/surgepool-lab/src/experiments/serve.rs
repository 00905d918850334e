//! The `serve` experiment. (Skeleton: lands with its issue.)

/// Arguments of `surgepool-lab serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`serve` is not implemented yet")
}
