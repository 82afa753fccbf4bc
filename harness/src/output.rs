//! A closed stdout or stderr loses only the output. Rust's `println!`
//! panics when its write fails, so `faultline test ... | head -1` used to
//! end the run with exit 101 and a cut-off history. Here each stream is
//! put behind a pipe of our own: a thread copies it to the real stream,
//! and once that write fails (its reader is gone) it reads on and
//! discards, so every write of ours succeeds. `finish` puts the real
//! streams back and lets the copies drain (bounded) before exit.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

/// How long `finish` waits for what is still in a pipe to be copied.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

struct Guard {
    fd: RawFd,
    /// A duplicate of the real stream, put back by `finish`.
    real: OwnedFd,
    copier: std::thread::JoinHandle<()>,
}

static GUARDS: Mutex<Vec<Guard>> = Mutex::new(Vec::new());

/// Puts stdout and stderr behind pipes of our own. Call before any thread
/// starts and after any child that should write to the real streams (it
/// would keep the pipe open) is started. On failure the streams stay as
/// they are.
pub fn guard() {
    for fd in [1, 2] {
        match guard_one(fd) {
            Ok(g) => GUARDS.lock().unwrap_or_else(|e| e.into_inner()).push(g),
            Err(_) => return,
        }
    }
}

fn guard_one(fd: RawFd) -> std::io::Result<Guard> {
    let real = dup(fd)?;
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills both descriptors or fails.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: dup2 onto a standard stream we own; the pipe's write end
    // lives on as `fd`.
    if unsafe { libc::dup2(write.as_raw_fd(), fd) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    drop(write);
    let out = dup(real.as_raw_fd())?;
    let copier = std::thread::spawn(move || copy(read, out));
    Ok(Guard { fd, real, copier })
}

fn dup(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Copies until the pipe closes; after the first failed write, discards.
fn copy(read: OwnedFd, out: OwnedFd) {
    use std::io::{Read, Write};
    let mut read = std::fs::File::from(read);
    let mut out = Some(std::fs::File::from(out));
    let mut buf = [0u8; 8192];
    loop {
        match read.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Some(o) = out.as_mut() {
                    if o.write_all(&buf[..n]).is_err() {
                        out = None;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Puts the real streams back and waits (bounded) for the copies to end.
pub fn finish() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let guards = std::mem::take(&mut *GUARDS.lock().unwrap_or_else(|e| e.into_inner()));
    for g in &guards {
        // Closes the pipe's last write end: the copier reads to its end.
        // SAFETY: dup2 of a descriptor we own onto a standard stream.
        unsafe { libc::dup2(g.real.as_raw_fd(), g.fd) };
    }
    let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
    for g in guards {
        while !g.copier.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if g.copier.is_finished() {
            let _ = g.copier.join();
        }
    }
}
