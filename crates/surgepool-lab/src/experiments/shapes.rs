//! The `shapes` experiment. (Skeleton: lands with its issue.)

/// Arguments of `surgepool-lab shapes`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`shapes` is not implemented yet")
}
