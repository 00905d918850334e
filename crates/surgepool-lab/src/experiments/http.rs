//! The `http` experiment. (Skeleton: lands with its issue.)

/// Arguments of `surgepool-lab http`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`http` is not implemented yet")
}
