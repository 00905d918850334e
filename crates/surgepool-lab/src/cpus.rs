//! Pinning to CPUs (Linux `sched_setaffinity`): `http --pin` gives its servers one half of
//! the machine's CPUs and its load generator the other, as if the client ran on a machine of
//! its own. On 2 cores a generator that shares the CPUs with a server answering 45,000
//! requests a second falls seconds behind its schedule, and every arm's latency, measured
//! from the intended send, is then the generator's.

use anyhow::{bail, ensure, Context as _};

/// Parses a CPU list such as `0`, `0,2` or `0-3` (the shape `taskset -c` takes).
pub(crate) fn parse_list(text: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (from, to) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<usize>()
                .with_context(|| format!("{s:?} in the CPU list {text:?} is not a CPU number"))
        };
        let (from, to) = (parse(from)?, parse(to)?);
        ensure!(
            from <= to,
            "{part:?} in the CPU list {text:?} runs backwards"
        );
        ensure!(
            to < MAX_CPUS,
            "CPU {to} in the list {text:?} is past the last one this lab can pin ({})",
            MAX_CPUS - 1
        );
        cpus.extend(from..=to);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Splits the CPUs into the servers' share (the first half, rounded down) and the
/// generator's (the rest); each gets at least one.
pub(crate) fn split(cpus: &[usize]) -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    ensure!(
        cpus.len() >= 2,
        "pinning needs at least 2 CPUs to split between the server and the load generator; this process may run on {}",
        cpus.len()
    );
    let servers = cpus.len() / 2;
    Ok((cpus[..servers].to_vec(), cpus[servers..].to_vec()))
}

/// Formats a CPU list the way [`parse_list`] reads it.
pub(crate) fn format_list(cpus: &[usize]) -> String {
    let parts: Vec<String> = cpus.iter().map(usize::to_string).collect();
    parts.join(",")
}

/// `CPU_SETSIZE`: the most CPUs a `cpu_set_t` holds.
const MAX_CPUS: usize = 1024;

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
pub(crate) fn allowed() -> anyhow::Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is plain data, all zeroes is an empty set, and the kernel writes
    // at most `size_of::<cpu_set_t>()` bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
    }
    // SAFETY: `CPU_ISSET` reads the set; every index is below `CPU_SETSIZE`.
    Ok((0..MAX_CPUS)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread, and every thread it starts afterwards, to `cpus`.
#[cfg(target_os = "linux")]
pub(crate) fn pin(cpus: &[usize]) -> anyhow::Result<()> {
    ensure!(!cpus.is_empty(), "no CPU to pin to");
    // SAFETY: as in `allowed`; `CPU_SET` writes within the set for indices below
    // `CPU_SETSIZE`, which `parse_list` and `allowed` guarantee.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        ensure!(
            cpu < MAX_CPUS,
            "CPU {cpu} is past the last one this lab can pin"
        );
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("pinning to CPUs {}", format_list(cpus)));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn allowed() -> anyhow::Result<Vec<usize>> {
    bail!("pinning to CPUs needs Linux")
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn pin(_cpus: &[usize]) -> anyhow::Result<()> {
    bail!("pinning to CPUs needs Linux")
}

/// A CPU list given as a flag (`serve --cpus 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpuList(pub(crate) Vec<usize>);

impl std::str::FromStr for CpuList {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<CpuList> {
        if text.trim().is_empty() {
            bail!("the CPU list is empty");
        }
        parse_list(text).map(CpuList)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_as_taskset_reads_them() {
        assert_eq!(parse_list("0").unwrap(), vec![0]);
        assert_eq!(parse_list("3,1, 1").unwrap(), vec![1, 3]);
        assert_eq!(parse_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_list("2-1").is_err());
        assert!(parse_list("x").is_err());
        assert!(parse_list("1024").is_err());
        assert!(parse_list(&format!("0-{}", u64::MAX)).is_err());
        assert!(" ".parse::<CpuList>().is_err());
        assert_eq!("0-1".parse::<CpuList>().unwrap(), CpuList(vec![0, 1]));
    }

    #[test]
    fn the_split_gives_each_side_at_least_one_cpu() {
        assert_eq!(split(&[0, 1]).unwrap(), (vec![0], vec![1]));
        assert_eq!(split(&[0, 1, 2]).unwrap(), (vec![0], vec![1, 2]));
        assert_eq!(split(&[4, 5, 6, 7]).unwrap(), (vec![4, 5], vec![6, 7]));
        assert!(split(&[0]).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_pinned_to_one_allowed_cpu_runs_there_only() {
        let first = allowed().unwrap()[0];
        std::thread::spawn(move || {
            pin(&[first]).unwrap();
            assert_eq!(allowed().unwrap(), vec![first]);
            assert_eq!(std::thread::available_parallelism().unwrap().get(), 1);
        })
        .join()
        .unwrap();
    }
}
