use super::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

#[test]
fn prologues_are_displaced_only_when_position_independent() {
    // This kernel's (6.18): push rbp; mov rbp,rsp; push r14; ...
    let k618 = [
        0x55, 0x48, 0x89, 0xe5, 0x41, 0x56, 0x53, 0x48, 0x83, 0xe4, 0xf0,
    ];
    assert_eq!(displaceable(&k618), Some(6));
    let endbr = [0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5];
    assert_eq!(displaceable(&endbr), Some(5));
    let sub = [0x48, 0x83, 0xec, 0x28, 0x85, 0xff, 0x90];
    assert_eq!(displaceable(&sub), Some(6));
    // lea rax, [rip+x] and a leading branch cannot move.
    assert_eq!(displaceable(&[0x48, 0x8d, 0x05, 1, 2, 3, 4]), None);
    assert_eq!(displaceable(&[0xe9, 1, 2, 3, 4, 0x90]), None);
    assert_eq!(displaceable(&[0x55]), None);
}

#[test]
fn the_code_page_assembles_within_a_page() {
    let c = build(
        0x7000_1000,
        0x7000_0000,
        0x7000_5000,
        Some(&[0x55, 0x48, 0x89, 0xe5, 0x53]),
    );
    assert!(c.bytes.len() < PAGE as usize);
    assert_eq!(c.clock_gettime, 0x7000_1000);
    assert!(c.gettimeofday > c.clock_gettime && c.time > c.gettimeofday);
    let slow = build(0x7000_1000, 0x7000_0000, 0x7000_5000, None);
    assert!(slow.bytes.windows(2).any(|w| w == [0x0f, 0x05]));
}

#[test]
fn offsets_are_split_into_floor_seconds() {
    let s = slot(-1_500_000_000);
    assert_eq!(i64::from_le_bytes(s[..8].try_into().unwrap()), -2);
    assert_eq!(
        i64::from_le_bytes(s[8..16].try_into().unwrap()),
        500_000_000
    );
    assert_eq!(i64::from_le_bytes(s[16..24].try_into().unwrap()), 500_000);
}

#[test]
fn our_own_vdso_has_its_symbols() {
    let mem = File::open("/proc/self/mem").unwrap();
    let (vdso, _) = Vdso::find(std::process::id(), &mem).unwrap();
    assert!(vdso.start < vdso.clock_gettime && vdso.clock_gettime < vdso.end);
    assert!(vdso.gettimeofday.is_some() && vdso.time.is_some());
}

/// A Python process that answers each line with its clocks, read through
/// libc (clock_gettime for both, gettimeofday, time) and its pid; with
/// `threads`, that many threads read the wall clock in a loop meanwhile.
const PROBE: &str = r#"
import ctypes, os, sys, threading, time
libc = ctypes.CDLL(None)
class TV(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("us", ctypes.c_long)]
stop = False
def spin():
    while not stop:
        time.time()
for _ in range(int(sys.argv[1])):
    threading.Thread(target=spin, daemon=True).start()
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "fork":
        pid = os.fork()
        if pid == 0:
            # The child answers from here on; the parent waits for it.
            continue
        os.waitpid(pid, 0)
        os._exit(0)
    tv = TV()
    libc.gettimeofday(ctypes.byref(tv), None)
    print(time.time_ns(), time.monotonic_ns(), tv.s * 10**6 + tv.us, libc.time(None), os.getpid(), flush=True)
"#;

struct Probe {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    /// Half the time the last read took, in ms: a busy probe answers late.
    slack_ms: i64,
}

impl Probe {
    fn start(threads: usize) -> Probe {
        let mut child = Command::new("python3")
            .args(["-c", PROBE, &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut p = Probe {
            child,
            stdin,
            out,
            slack_ms: 0,
        };
        p.read(); // started
        p
    }

    /// (wall - ours in ms, monotonic - ours in ms, gettimeofday - ours,
    /// time() - ours in s, pid).
    /// Read against the middle of our own readings before and after.
    fn read(&mut self) -> (i64, i64, i64, i64, u32) {
        let now_ns = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as i64
        };
        let before = now_ns();
        writeln!(self.stdin, "read").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let after = now_ns();
        self.slack_ms = (after - before) / 2_000_000;
        let w: Vec<i64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(w.len(), 5, "{line:?}");
        let wall_ns = (before + after) / 2;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime into a local.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono_ns = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
        (
            (w[0] - wall_ns) / 1_000_000,
            (w[1] - mono_ns) / 1_000_000,
            (w[2] - wall_ns / 1000) / 1000,
            w[3] - wall_ns / 1_000_000_000,
            w[4] as u32,
        )
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn near(got: i64, want: i64, within: i64) -> bool {
    (got - want).abs() <= within
}

#[test]
fn a_patched_process_reads_the_offset_on_every_wall_clock_call() {
    let mut p = Probe::start(0);
    let (w0, m0, g0, _, pid) = p.read();
    assert!(near(w0, 0, 200) && near(g0, 0, 200), "before: {w0} {g0}");
    let patched = attach(pid, 5_000_000_000).unwrap();
    assert!(patched.new && patched.fast);
    let (w, m, g, t, _) = p.read();
    assert!(near(w, 5_000, 200), "wall {w} ms off, +5 s set");
    assert!(near(g, 5_000, 200), "gettimeofday {g} ms off");
    assert!((4..=6).contains(&t), "time() {t} s off");
    assert!(near(m, m0, 200), "monotonic moved: {m0} -> {m}");
    set_offset(pid, patched.data, -2_500_000_000).unwrap();
    assert_eq!(offset(pid, patched.data).unwrap(), -2_500_000_000);
    let (w, _, g, _, _) = p.read();
    assert!(near(w, -2_500, 200) && near(g, -2_500, 200), "{w} {g}");
    // A second attach finds the patch and only sets the offset.
    let again = attach(pid, 0).unwrap();
    assert_eq!(again.data, patched.data);
    assert!(!again.new);
    let (w, _, _, _, _) = p.read();
    assert!(near(w, 0, 200), "{w}");
}

#[test]
fn forked_children_share_the_patch_and_the_offset() {
    let mut p = Probe::start(0);
    let (_, _, _, _, pid) = p.read();
    let patched = attach(pid, 1_000_000_000).unwrap();
    writeln!(p.stdin, "fork").unwrap();
    let (w, _, _, _, child) = p.read();
    assert_ne!(child, pid);
    assert!(near(w, 1_000, 200), "{w}");
    assert_eq!(super::patched(child).unwrap(), Some(patched.data));
    // One write reaches parent and child: the page is shared.
    set_offset(pid, patched.data, 3_000_000_000).unwrap();
    let (w, _, _, _, _) = p.read();
    assert!(near(w, 3_000, 200), "{w}");
}

#[test]
fn busy_threads_survive_repeated_attaches() {
    let mut p = Probe::start(4);
    let (_, _, _, _, pid) = p.read();
    for round in 0..20i64 {
        // Force a fresh patch each round: a new process is the only way,
        // so alternate attaching (patch) and rewriting (shared page).
        let patched = attach(pid, round * 1_000_000).unwrap();
        assert_eq!(patched.new, round == 0);
        let (w, _, _, _, _) = p.read();
        let within = 200 + p.slack_ms;
        assert!(
            near(w, round, within),
            "round {round}: {w} (within {within})"
        );
    }
    assert!(p.child.try_wait().unwrap().is_none(), "the probe died");
}

#[test]
fn a_gone_process_is_an_error_not_a_panic() {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    assert!(matches!(attach(pid, 0), Err(AttachError::Gone { .. })));
}

/// A process frozen (by a pause) while we attach does not stop for us:
/// the attach gives up, and once it is thawed the thread it held is let
/// go, untraced, running on.
#[test]
fn a_frozen_process_is_let_go_once_thawed() {
    use crate::contain::{Backend, Cell};
    let Some(cell) = [Backend::V1Freezer, Backend::V2]
        .into_iter()
        .find_map(Cell::own)
        .and_then(|c| {
            c.child(&format!("faultline-test-{}-vdso", std::process::id()))
                .ok()
        })
    else {
        eprintln!("SKIPPED a_frozen_process_is_let_go_once_thawed: no writable cgroup");
        return;
    };
    let mut p = Probe::start(0);
    let (_, _, _, _, pid) = p.read();
    std::fs::write(cell.path.join("cgroup.procs"), pid.to_string()).unwrap();
    cell.freeze().unwrap();
    assert!(
        attach(pid, 1_000_000_000).is_err(),
        "a frozen process was patched"
    );
    cell.thaw().unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while release_stuck() > 0 {
        assert!(std::time::Instant::now() < end, "still held");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "{status}");
    let (w, _, _, _, _) = p.read();
    assert!(near(w, 0, 200), "{w}");
    drop(p);
    let _ = cell.remove();
}
