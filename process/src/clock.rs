//! Clock faults: what a node's wall clock is doing (`Skew`), and whether
//! this host can skew a process's clock at all (`support`). The mechanism
//! is `vdso` (each process's vDSO patched to add an offset), driven by the
//! clock agent (`clock_agent`): no LD_PRELOAD, so Go, static binaries, the
//! JVM and jemalloc programs are skewed like any other, whoever runs them.
//!
//! Only the wall clock (CLOCK_REALTIME, and gettimeofday and time built on
//! it) is skewed, as Jepsen's clock nemesis does with `date`: that is what
//! real machines suffer (NTP steps and slews), and what a node that trusts
//! its wall clock must survive. Monotonic clocks never jump on a real
//! machine; docs/nemesis.md says why no fault moves them.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

/// Looks a bare command name up in PATH, as exec would.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        // A path is taken as given only when there is a file there: a
        // missing one is refused when the file is read, not after a start.
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// What one node's wall clock is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Skew {
    True,
    Offset {
        ms: i64,
    },
    /// `delta_ms` off during the first half of every `period_ms`.
    Strobe {
        delta_ms: i64,
        period_ms: u64,
        since: Instant,
    },
    /// Runs at `rate` times real speed since `since`, from `base_ms` off.
    Drift {
        rate: f64,
        base_ms: f64,
        since: Instant,
    },
}

impl Skew {
    /// The offset from true time at `now`, in ms.
    pub fn offset_ms(&self, now: Instant) -> f64 {
        match *self {
            Skew::True => 0.0,
            Skew::Offset { ms } => ms as f64,
            Skew::Strobe {
                delta_ms,
                period_ms,
                since,
            } => {
                let t = now.saturating_duration_since(since).as_millis() as u64;
                if (t / period_ms.max(1)).is_multiple_of(2) {
                    delta_ms as f64
                } else {
                    0.0
                }
            }
            Skew::Drift {
                rate,
                base_ms,
                since,
            } => base_ms + (rate - 1.0) * now.saturating_duration_since(since).as_secs_f64() * 1e3,
        }
    }

    /// The offset from true time at `now`, in whole ns.
    pub fn offset_ns(&self, now: Instant) -> i64 {
        (self.offset_ms(now) * 1e6).round() as i64
    }

    /// Whether the offset changes with time (needs rewriting as it goes).
    pub fn moves(&self) -> bool {
        matches!(self, Skew::Strobe { .. } | Skew::Drift { .. })
    }
}

/// How far the probe's clock is moved to prove the mechanism works.
const PROBE_OFFSET_NS: i64 = 7_000_000_000;

/// Whether this host lets faultline skew a process's wall clock: a child
/// of ours is patched and must read its clock moved. The reason when not
/// (a ptrace policy, a kernel without a vDSO, another architecture).
/// Tried once per process.
pub fn support() -> Result<(), String> {
    static SUPPORT: OnceLock<Result<(), String>> = OnceLock::new();
    SUPPORT.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    let child = ProbeChild::fork().map_err(|e| format!("starting a probe process: {e}"))?;
    let before = child
        .read()
        .map_err(|e| format!("reading the probe's clock: {e}"))?;
    let patched = crate::vdso::attach(child.pid, PROBE_OFFSET_NS).map_err(|e| e.to_string())?;
    let after = child
        .read()
        .map_err(|e| format!("reading the probe's clock: {e}"))?;
    let moved = after - before;
    // Within a second of the offset: the two reads are microseconds apart.
    if (moved - PROBE_OFFSET_NS).abs() > 1_000_000_000 {
        return Err(format!(
            "a patched process's clock moved {moved} ns, not {PROBE_OFFSET_NS} (vDSO page at {:#x})",
            patched.data
        ));
    }
    Ok(())
}

/// A forked child that answers each byte on a pipe with its
/// CLOCK_REALTIME; ends on EOF, and is killed and reaped when dropped.
struct ProbeChild {
    pid: u32,
    ask: std::fs::File,
    answer: std::fs::File,
}

impl ProbeChild {
    fn fork() -> std::io::Result<ProbeChild> {
        use std::os::fd::FromRawFd;
        let (mut a, mut b) = ([0; 2], [0; 2]);
        // SAFETY: pipe2 into locals.
        if unsafe { libc::pipe2(a.as_mut_ptr(), libc::O_CLOEXEC) } != 0
            || unsafe { libc::pipe2(b.as_mut_ptr(), libc::O_CLOEXEC) } != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the child runs only async-signal-safe calls (read,
        // clock_gettime, write, _exit) and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            unsafe {
                let mut byte = 0u8;
                while libc::read(a[0], (&mut byte as *mut u8).cast(), 1) == 1 {
                    let mut ts = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
                    let ns = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
                    libc::write(b[1], (&ns as *const i64).cast(), 8);
                }
                libc::_exit(0);
            }
        }
        // SAFETY: fds just made, each owned once from here.
        unsafe {
            libc::close(a[0]);
            libc::close(b[1]);
            Ok(ProbeChild {
                pid: pid as u32,
                ask: std::fs::File::from_raw_fd(a[1]),
                answer: std::fs::File::from_raw_fd(b[0]),
            })
        }
    }

    fn read(&self) -> std::io::Result<i64> {
        use std::io::{Read, Write};
        (&self.ask).write_all(b"?")?;
        let mut ns = [0u8; 8];
        (&self.answer).read_exact(&mut ns)?;
        Ok(i64::from_le_bytes(ns))
    }
}

impl Drop for ProbeChild {
    fn drop(&mut self) {
        // SAFETY: our own child, killed and reaped.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGKILL);
            libc::waitpid(self.pid as i32, std::ptr::null_mut(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn skews_give_the_offsets_they_promise() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(Skew::Offset { ms: -300 }.offset_ms(at(5)), -300.0);
        let strobe = Skew::Strobe {
            delta_ms: 1000,
            period_ms: 10,
            since: t0,
        };
        assert_eq!(strobe.offset_ms(at(3)), 1000.0);
        assert_eq!(strobe.offset_ms(at(13)), 0.0);
        assert_eq!(strobe.offset_ms(at(23)), 1000.0);
        let slow = Skew::Drift {
            rate: 0.5,
            base_ms: 100.0,
            since: t0,
        };
        assert!((slow.offset_ms(at(1000)) - -400.0).abs() < 1e-6);
    }

    #[test]
    fn this_host_can_skew_a_child() {
        support().unwrap();
    }
}
