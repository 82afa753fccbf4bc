//! Process hygiene: every node process group the harness starts is
//! registered here, and killed on every way out (normal end, error, panic,
//! Ctrl-C, SIGTERM). A SIGKILL of the harness is covered by each node's
//! parent-death signal (set in `node.rs`).

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::sync::Mutex;

static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

pub fn register(pgid: i32) {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
}

pub fn unregister(pgid: i32) {
    GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&g| g != pgid);
}

/// SIGKILLs every registered group (including any children the nodes
/// started, and stopped ones: SIGKILL needs no SIGCONT).
pub fn kill_all() {
    let groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for g in groups {
        let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
    }
}

/// Kills every node before the default panic report, so a bug in the
/// harness never leaves processes behind.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all();
        default(info);
    }));
}
