//! Pinning a thread to one CPU (Linux; elsewhere a no-op), for the ping-pong floor: if the
//! scheduler puts both ping-pong threads on one core, every handoff waits for a context
//! switch and the "floor" measures the scheduler instead (≈ 230 µs per op was seen on a
//! loaded 2-core VM, against ≈ 1 µs with the threads on two cores).

use std::fmt;

/// A thread's CPU mask, saved to be restored.
pub(crate) struct CpuMask {
    #[cfg(target_os = "linux")]
    set: libc::cpu_set_t,
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuMask")
            .field("cpus", &self.cpus())
            .finish()
    }
}

#[cfg(target_os = "linux")]
impl CpuMask {
    /// The calling thread's mask, or `None` if the kernel refuses to tell.
    pub(crate) fn current() -> Option<CpuMask> {
        // SAFETY: `cpu_set_t` is plain bits and all-zero is a valid (empty) set; the kernel
        // writes at most the size we pass; pid 0 is the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            (rc == 0).then_some(CpuMask { set })
        }
    }

    /// A mask of the one CPU `cpu`.
    pub(crate) fn only(cpu: usize) -> CpuMask {
        // SAFETY: as above for the zeroed set; `CPU_SET` checks `cpu` against the set's size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            CpuMask { set }
        }
    }

    /// The CPUs in the mask.
    pub(crate) fn cpus(&self) -> Vec<usize> {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below `CPU_SETSIZE`, the set's size in bits.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &self.set) })
            .collect()
    }

    /// Applies the mask to the calling thread; `false` if the kernel refused.
    pub(crate) fn apply(&self) -> bool {
        // SAFETY: a valid set of the size we pass; pid 0 is the calling thread.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.set) == 0
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl CpuMask {
    pub(crate) fn current() -> Option<CpuMask> {
        None
    }
    pub(crate) fn only(_cpu: usize) -> CpuMask {
        CpuMask {}
    }
    pub(crate) fn cpus(&self) -> Vec<usize> {
        Vec::new()
    }
    pub(crate) fn apply(&self) -> bool {
        false
    }
}

/// Two distinct CPUs the calling thread may run on, if there are two.
pub(crate) fn two_cpus() -> Option<(usize, usize)> {
    let cpus = CpuMask::current()?.cpus();
    match cpus.as_slice() {
        [a, b, ..] => Some((*a, *b)),
        _ => None,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn pin_and_restore_on_a_scratch_thread() {
        std::thread::spawn(|| {
            let saved = CpuMask::current().expect("affinity readable");
            let first = saved.cpus()[0];
            assert!(CpuMask::only(first).apply());
            assert_eq!(CpuMask::current().unwrap().cpus(), [first]);
            assert!(saved.apply());
            assert_eq!(CpuMask::current().unwrap().cpus(), saved.cpus());
        })
        .join()
        .unwrap();
    }
}
