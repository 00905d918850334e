//! Where the CPU goes during an open loop: the server's user + system time and the load
//! generator's (this process), from `/proc/<pid>/stat`. On loopback the client shares the
//! machine with the server; these two numbers say how the cores were split between them.

use serde_json::{json, Value};

/// CPU seconds used so far by the server and by this process.
#[derive(Debug, Clone, Copy)]
pub(super) struct Usage {
    server_s: f64,
    generator_s: f64,
}

/// CPU seconds used over an interval.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spent {
    pub(super) server_s: f64,
    pub(super) generator_s: f64,
}

impl Usage {
    /// Reads both processes' CPU time now (`None` when `/proc` cannot say).
    pub(super) fn read(server_pid: u32) -> Option<Usage> {
        Some(Usage {
            server_s: cpu_seconds(&format!("/proc/{server_pid}/stat"))?,
            generator_s: cpu_seconds("/proc/self/stat")?,
        })
    }

    /// What was spent since `self` (zeros when the server is gone, e.g. killed at the cap).
    pub(super) fn until_now(self, server_pid: u32) -> Spent {
        let now = Usage::read(server_pid).unwrap_or(self);
        Spent {
            server_s: (now.server_s - self.server_s).max(0.0),
            generator_s: (now.generator_s - self.generator_s).max(0.0),
        }
    }
}

impl Spent {
    pub(super) fn to_json(self) -> Value {
        json!({"server_s": self.server_s, "generator_s": self.generator_s})
    }
}

/// utime + stime of the process whose `stat` file is at `path`, in seconds.
fn cpu_seconds(path: &str) -> Option<f64> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

fn parse_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1";
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(parse_stat(stat), Some(300.0 / ticks));
        assert_eq!(parse_stat("garbage"), None);
        assert!(cpu_seconds("/proc/self/stat").is_some());
    }
}
