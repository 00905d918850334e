//! What machine and toolchain produced a result: numbers mean little without it.

use serde::Serialize;

/// The machine a result was measured on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// Cores this process may use (`std::thread::available_parallelism`).
    pub(crate) cores: usize,
    /// `rustc --version` of the compiler that built the lab.
    pub(crate) rustc: String,
    /// The CPU's model name from `/proc/cpuinfo`, or "unknown".
    pub(crate) cpu: String,
    /// Operating system and architecture, e.g. "linux x86_64".
    pub(crate) os: String,
    /// Whether the lab was built with optimisations (a debug build's numbers mean little).
    pub(crate) optimized: bool,
    /// The allocator under the lab's counting allocator: "system", "jemalloc" or "mimalloc"
    /// (the crate's features choose it).
    pub(crate) allocator: &'static str,
}

impl Machine {
    /// Describes this machine.
    pub(crate) fn detect() -> Machine {
        Machine {
            cores: cores(),
            rustc: env!("SURGEPOOL_LAB_RUSTC_VERSION").to_owned(),
            cpu: cpu_model().unwrap_or_else(|| "unknown".to_owned()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            optimized: !cfg!(debug_assertions),
            allocator: crate::alloc_count::ALLOCATOR,
        }
    }

    /// One line for the top of a report.
    pub(crate) fn summary(&self) -> String {
        format!(
            "{} cores, {}, {}, {}, {} allocator{}",
            self.cores,
            self.cpu,
            self.os,
            self.rustc,
            self.allocator,
            if self.optimized {
                ""
            } else {
                " (DEBUG BUILD: numbers are not meaningful)"
            }
        )
    }
}

/// Cores this process may use; 1 when unknown.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpu_model(&info)
}

/// The first `model name` (x86) or `Model`/`Hardware` (ARM) line of a `/proc/cpuinfo`.
fn parse_cpu_model(info: &str) -> Option<String> {
    ["model name", "Model", "Hardware"].iter().find_map(|key| {
        info.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_x86_cpuinfo() {
        let info = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nflags\t\t: fpu\n";
        assert_eq!(
            parse_cpu_model(info).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
    }

    #[test]
    fn parses_arm_cpuinfo_and_missing() {
        assert_eq!(
            parse_cpu_model("processor : 0\nModel : Raspberry Pi 4\n").as_deref(),
            Some("Raspberry Pi 4")
        );
        assert_eq!(parse_cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn detect_fills_every_field() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(!m.rustc.is_empty());
        assert!(!m.summary().is_empty());
    }
}
