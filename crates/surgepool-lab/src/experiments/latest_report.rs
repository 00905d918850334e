//! `surgepool-lab report [DIR]`: finds the newest HTML report under `DIR` and prints its
//! path (or opens it with `--open`), so the page of the last run is one command away.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};

/// Print (or open) the newest report under a directory.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A report directory, or a directory holding several (searched two levels deep).
    #[arg(default_value = "lab-out")]
    dir: PathBuf,
    /// Open the report in the desktop's browser (`xdg-open`) instead of printing its path.
    #[arg(long)]
    open: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let Some(latest) = newest_report(&args.dir)? else {
        bail!(
            "no report under {}: write one with e.g. `surgepool-lab overload --report {}`",
            args.dir.display(),
            args.dir.display()
        );
    };
    if args.open {
        let status = std::process::Command::new("xdg-open")
            .arg(&latest)
            .status()
            .with_context(|| format!("could not run xdg-open for {}", latest.display()))?;
        if !status.success() {
            bail!("xdg-open {} failed ({status})", latest.display());
        }
    } else {
        println!("{}", latest.display());
    }
    Ok(())
}

/// The most recently modified `index.html` in `dir`, its subdirectories and theirs.
fn newest_report(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut best: Option<(SystemTime, PathBuf)> = None;
    let mut consider = |path: PathBuf| {
        if let Ok(modified) = path.metadata().and_then(|m| m.modified()) {
            let newer = match &best {
                Some((t, _)) => modified > *t,
                None => true,
            };
            if newer {
                best = Some((modified, path));
            }
        }
    };
    consider(dir.join("index.html"));
    for child in subdirs(dir) {
        consider(child.join("index.html"));
        for grandchild in subdirs(&child) {
            consider(grandchild.join("index.html"));
        }
    }
    Ok(best.map(|(_, path)| path))
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_newest_index_two_levels_deep() {
        let root = std::env::temp_dir().join(format!("lab-report-{}", std::process::id()));
        let old = root.join("a");
        let new = root.join("b").join("c");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(old.join("index.html"), "old").unwrap();
        let earlier = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(old.join("index.html"))
            .unwrap()
            .set_modified(earlier)
            .unwrap();
        std::fs::write(new.join("index.html"), "new").unwrap();
        assert_eq!(newest_report(&root).unwrap(), Some(new.join("index.html")));
        std::fs::remove_dir_all(&root).unwrap();
        assert!(newest_report(&root).is_err());
    }
}
