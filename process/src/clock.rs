//! Clock faults through libfaketime: each node runs with the multi-threaded
//! library preloaded and its own timestamp file, which the harness rewrites
//! (atomically, by rename) to bump, strobe or drift that node's wall clock.
//! The library re-reads the file on every call (no cache).
//!
//! Only the wall clock (CLOCK_REALTIME) is skewed, as Jepsen's clock
//! nemesis does with `date`: libfaketime's monotonic faking reports
//! epoch-based values, and Rust's std turns monotonic readings into
//! absolute futex deadlines, so a faked monotonic clock hangs ordinary
//! programs. Wall-clock skew is what real machines suffer (NTP steps and
//! slews), and what a node that trusts its wall clock must survive.
//!
//! Preloading cannot reach a statically linked binary; such binaries, and
//! machines without libfaketime, are refused with a message that says so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The multi-threaded flavour: nodes are threaded.
pub const LIBRARY: &str = "libfaketimeMT.so.1";

/// Where distributions put the library (Debian's multiarch paths first).
const SEARCH_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime",
    "/usr/lib/aarch64-linux-gnu/faketime",
    "/usr/lib64/faketime",
    "/usr/lib/faketime",
    "/usr/local/lib/faketime",
];

/// Most `#!` hops followed to find the real executable.
const MAX_SCRIPT_HOPS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error(
        "the clock nemesis needs libfaketime ({LIBRARY}), which is not installed \
         (looked in {searched}); install it (Debian: apt-get install faketime) \
         or point FAULTLINE_LIBFAKETIME at the library"
    )]
    Missing { searched: String },
    #[error("FAULTLINE_LIBFAKETIME={0} does not exist")]
    BadOverride(String),
    #[error(
        "{0} is statically linked (it has no ELF interpreter), so LD_PRELOAD \
         cannot skew its clock: the clock nemesis is refused for this binary"
    )]
    Static(String),
    #[error(
        "{0} is a Go program: Go reads the clock through raw system calls and the vDSO, \
         so libfaketime's LD_PRELOAD does not reach it and its clock would not move: \
         the clock nemesis is refused for this binary"
    )]
    Go(String),
    #[error("cannot tell whether {path} can be preloaded: {reason}")]
    Unknown { path: String, reason: String },
    #[error("writing the clock file {path}: {cause}")]
    Write { path: String, cause: std::io::Error },
}

/// Finds libfaketime: `FAULTLINE_LIBFAKETIME`, else the usual places.
pub fn find_library() -> Result<PathBuf, ClockError> {
    if let Some(p) = std::env::var_os("FAULTLINE_LIBFAKETIME") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ClockError::BadOverride(p.display().to_string()))
        };
    }
    SEARCH_DIRS
        .iter()
        .map(|d| Path::new(d).join(LIBRARY))
        .find(|p| p.is_file())
        .ok_or_else(|| ClockError::Missing {
            searched: SEARCH_DIRS.join(", "),
        })
}

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

/// Whether an ELF image asks for a dynamic loader (has PT_INTERP): `None`
/// when `bytes` is not a 64- or 32-bit little-endian ELF file.
pub fn elf_is_dynamic(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 52 || &bytes[..4] != b"\x7fELF" || bytes[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| {
        Some(u16::from_le_bytes(
            bytes.get(o..o.checked_add(2)?)?.try_into().ok()?,
        ))
    };
    let u32_at = |o: usize| {
        Some(u32::from_le_bytes(
            bytes.get(o..o.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let u64_at = |o: usize| {
        Some(u64::from_le_bytes(
            bytes.get(o..o.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    let (phoff, phentsize, phnum) = match bytes[4] {
        2 => (u64_at(0x20)? as usize, u16_at(0x36)?, u16_at(0x38)?),
        1 => (u32_at(0x1C)? as usize, u16_at(0x2A)?, u16_at(0x2C)?),
        _ => return None,
    };
    for i in 0..phnum as usize {
        let ty = u32_at(phoff.checked_add(i.checked_mul(phentsize as usize)?)?)?;
        if ty == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

/// Refuses a program that LD_PRELOAD cannot reach. Scripts are judged by
/// their interpreter (`#!/usr/bin/env python3` → python3).
pub fn check_preloadable(program: &Path) -> Result<(), ClockError> {
    let mut path = program.to_path_buf();
    for _ in 0..MAX_SCRIPT_HOPS {
        let unknown = |reason: String| ClockError::Unknown {
            path: path.display().to_string(),
            reason,
        };
        let mut head = vec![0u8; 64 * 1024];
        let mut f = std::fs::File::open(&path).map_err(|e| unknown(e.to_string()))?;
        let mut len = 0;
        while len < head.len() {
            match f.read(&mut head[len..]) {
                Ok(0) => break,
                Ok(k) => len += k,
                Err(e) => return Err(unknown(e.to_string())),
            }
        }
        head.truncate(len);
        if let Some(rest) = head.strip_prefix(b"#!") {
            let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            let mut words = line.split_whitespace();
            let interp = words
                .next()
                .ok_or_else(|| unknown("empty #! line".into()))?;
            let interp = if interp.ends_with("/env") {
                let cmd = words
                    .find(|w| !w.starts_with('-'))
                    .ok_or_else(|| unknown("#! uses env without a command".into()))?;
                which(cmd).ok_or_else(|| unknown(format!("{cmd} is not on PATH")))?
            } else {
                PathBuf::from(interp)
            };
            path = interp;
            continue;
        }
        return match elf_is_dynamic(&head) {
            Some(true) if is_go_program(&path).map_err(|e| unknown(e.to_string()))? => {
                Err(ClockError::Go(path.display().to_string()))
            }
            Some(true) => Ok(()),
            Some(false) => Err(ClockError::Static(path.display().to_string())),
            None => Err(unknown("not an ELF executable or a #! script".into())),
        };
    }
    Err(ClockError::Unknown {
        path: program.display().to_string(),
        reason: "too many #! hops".into(),
    })
}

/// Whether an executable was built by Go: its `.go.buildinfo` section
/// starts with this magic (Go 1.13 and later).
pub fn is_go_program(path: &Path) -> std::io::Result<bool> {
    // Kept with every bit flipped, so faultline's own binary does not
    // carry the magic (a debug build that did was taken for a Go program
    // and its clock faults refused).
    const fn flip(mut b: [u8; 14]) -> [u8; 14] {
        let mut i = 0;
        while i < b.len() {
            b[i] = !b[i];
            i += 1;
        }
        b
    }
    const FLIPPED: [u8; 14] = flip(*b"\xff Go buildinf:");
    const MAGIC_LEN: usize = FLIPPED.len();
    // black_box: so the compiler cannot fold the magic back into the binary.
    let magic = std::hint::black_box(FLIPPED).map(|b| !b);
    const CHUNK: usize = 1 << 20;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; CHUNK + MAGIC_LEN];
    let mut kept = 0;
    loop {
        let n = f.read(&mut buf[kept..])?;
        if n == 0 {
            return Ok(false);
        }
        let end = kept + n;
        if buf[..end].windows(MAGIC_LEN).any(|w| w == magic) {
            return Ok(true);
        }
        // Keep a magic's length of tail, so a match across chunks is seen.
        let tail = end.saturating_sub(MAGIC_LEN - 1);
        buf.copy_within(tail..end, 0);
        kept = end - tail;
    }
}

/// The environment that skews a node's clock through `file`.
pub fn preload_env(library: &Path, file: &Path) -> Vec<(String, String)> {
    [
        ("LD_PRELOAD", library.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE", file.display().to_string()),
        // Re-read the file on every call, so a rewrite acts at once.
        ("FAKETIME_NO_CACHE", "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        // No shared-memory segments (libfaketime >= 0.9.11; older versions
        // create them anyway, and `remove_leftovers` cleans up after them).
        ("FAKETIME_DISABLE_SHM", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Whether `env` preloads libfaketime (from `preload_env`).
pub fn is_preloaded(env: &[(String, String)]) -> bool {
    env.iter().any(|(k, _)| k == "FAKETIME_TIMESTAMP_FILE")
}

/// Removes the shared-memory segment and semaphore that libfaketime 0.9.10
/// creates per process (named by its pid) and only removes on a clean exit:
/// a SIGKILLed node would otherwise leave them in /dev/shm for good.
pub fn remove_leftovers(pid: u32) {
    let _ = std::fs::remove_file(format!("/dev/shm/faketime_shm_{pid}"));
    let _ = std::fs::remove_file(format!("/dev/shm/sem.faketime_sem_{pid}"));
}

/// Removes the libfaketime files of processes that are gone (a process
/// killed while frozen, or a step that died before its exit watcher ran
/// them down); returns how many pids' files went.
pub fn remove_stale_leftovers() -> usize {
    let mut removed = 0;
    for e in std::fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("faketime_shm_")
            .or_else(|| name.strip_prefix("sem.faketime_sem_"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_leftovers(pid);
            removed += 1;
        }
    }
    removed
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

    /// Whether the offset changes with time (the file needs rewriting).
    pub fn moves(&self) -> bool {
        matches!(self, Skew::Strobe { .. } | Skew::Drift { .. })
    }
}

/// Writes a libfaketime offset ("+1.500" seconds) atomically.
pub fn write_offset(path: &Path, offset_ms: f64) -> Result<(), ClockError> {
    let err = |cause| ClockError::Write {
        path: path.display().to_string(),
        cause,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{:+.3}\n", offset_ms / 1e3)).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn elf_headers_tell_static_from_dynamic() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_is_dynamic(&me), Some(true));
        assert_eq!(elf_is_dynamic(b"#!/bin/sh\n"), None);
        assert_eq!(elf_is_dynamic(&me[..40]), None);
        // A header whose program-header table lies past the end: no panic.
        let mut cut = me[..64].to_vec();
        cut[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(elf_is_dynamic(&cut), None);
    }

    #[test]
    fn scripts_are_judged_by_their_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("node.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        check_preloadable(&script).unwrap();
        let env_script = dir.path().join("node.py");
        std::fs::write(&env_script, "#!/usr/bin/env python3\n").unwrap();
        check_preloadable(&env_script).unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "hello").unwrap();
        assert!(check_preloadable(&junk)
            .unwrap_err()
            .to_string()
            .contains("not an ELF"));
        // Statically linked binaries: harness/tests/it/clock.rs, end to end.
    }

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
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n1.faketime");
        write_offset(&f, -1500.0).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "-1.500\n");
        write_offset(&f, 250.0).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "+0.250\n");
    }
}

#[cfg(test)]
mod leftovers {
    #[test]
    fn files_of_dead_processes_are_removed_and_live_ones_kept() {
        if !std::path::Path::new("/dev/shm").is_dir() {
            return;
        }
        // The highest pid Linux hands out: nothing runs there here.
        let dead = "/dev/shm/faketime_shm_4194303";
        let live = format!("/dev/shm/faketime_shm_{}", std::process::id());
        std::fs::write(dead, b"").unwrap();
        std::fs::write(&live, b"").unwrap();
        super::remove_stale_leftovers();
        assert!(!std::path::Path::new(dead).exists());
        assert!(std::path::Path::new(&live).exists());
        std::fs::remove_file(&live).unwrap();
    }
}
