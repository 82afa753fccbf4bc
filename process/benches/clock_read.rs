//! What a skewed clock costs. Part 1: nanoseconds per clock read
//! (`clock_gettime` of the wall and monotonic clocks, `gettimeofday`) in
//! a child process before and after its vDSO is patched. Part 2: a
//! bundled server's throughput with and without the patch: PostgreSQL
//! under `pgbench -S` (select-only, one clock read or more per statement),
//! every server process patched (backends fork from the patched
//! postmaster) with a +1 s offset. Run: `cargo bench -p faultline-process
//! --bench clock_read`; part 2 needs PostgreSQL 15 and root.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use faultline_process::vdso;

/// Clock reads per measurement, and measurements per figure (median).
const READS: u64 = 2_000_000;
const ROUNDS: usize = 7;

/// A forked child that, for each byte read, times `READS` reads of each
/// clock and writes back ns per read (wall, monotonic, gettimeofday).
struct Reader {
    pid: i32,
    ask: std::fs::File,
    answer: std::fs::File,
}

fn per_read_ns(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..READS {
        f();
    }
    t.elapsed().as_nanos() as f64 / READS as f64
}

impl Reader {
    fn fork() -> Reader {
        let (mut a, mut b) = ([0; 2], [0; 2]);
        // SAFETY: plain pipes; the child only reads clocks and pipes.
        unsafe {
            assert_eq!(libc::pipe(a.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(b.as_mut_ptr()), 0);
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let mut ask = std::fs::File::from_raw_fd(a[0]);
                let mut answer = std::fs::File::from_raw_fd(b[1]);
                let mut byte = [0u8];
                while ask.read_exact(&mut byte).is_ok() {
                    let mut ts = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    let mut tv = libc::timeval {
                        tv_sec: 0,
                        tv_usec: 0,
                    };
                    let wall = per_read_ns(|| {
                        libc::clock_gettime(libc::CLOCK_REALTIME, std::hint::black_box(&mut ts));
                    });
                    let mono = per_read_ns(|| {
                        libc::clock_gettime(libc::CLOCK_MONOTONIC, std::hint::black_box(&mut ts));
                    });
                    let tod = per_read_ns(|| {
                        libc::gettimeofday(std::hint::black_box(&mut tv), std::ptr::null_mut());
                    });
                    let out = format!("{wall} {mono} {tod}\n");
                    let _ = answer.write_all(out.as_bytes());
                }
                libc::_exit(0);
            }
            libc::close(a[0]);
            libc::close(b[1]);
            Reader {
                pid,
                ask: std::fs::File::from_raw_fd(a[1]),
                answer: std::fs::File::from_raw_fd(b[0]),
            }
        }
    }

    fn measure(&mut self) -> [f64; 3] {
        self.ask.write_all(b"?").unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8];
        while self.answer.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let text = String::from_utf8(line).unwrap();
        let v: Vec<f64> = text.split(' ').map(|x| x.parse().unwrap()).collect();
        [v[0], v[1], v[2]]
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // SAFETY: our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn clock_reads() {
    let mut r = Reader::fork();
    let figures = |r: &mut Reader| {
        let runs: Vec<[f64; 3]> = (0..ROUNDS).map(|_| r.measure()).collect();
        [0, 1, 2].map(|k| median(runs.iter().map(|x| x[k]).collect()))
    };
    let before = figures(&mut r);
    let patched = vdso::attach(r.pid as u32, 1_500_000_000).expect("patching the reader");
    let after = figures(&mut r);
    println!(
        "clock reads (ns per call, median of {ROUNDS} x {READS}; patched: fast path {}):",
        patched.fast
    );
    for (k, name) in [
        "clock_gettime(CLOCK_REALTIME)",
        "clock_gettime(CLOCK_MONOTONIC)",
        "gettimeofday",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "  {name:32} unpatched {:6.1}   patched {:6.1}",
            before[k], after[k]
        );
    }
}

/// PostgreSQL 15 in a temporary directory, as user postgres.
struct Postgres {
    dir: tempfile::TempDir,
    server: std::process::Child,
    port: u16,
}

const PG: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        "postgres",
        "--regid",
        "postgres",
        "--init-groups",
        "--",
    ])
    .arg(format!("{PG}/{program}"));
    c
}

impl Postgres {
    fn start() -> Option<Postgres> {
        // SAFETY: geteuid has no preconditions.
        if !std::path::Path::new(PG).join("pgbench").exists() || unsafe { libc::geteuid() } != 0 {
            println!("server throughput: skipped (needs PostgreSQL 15's pgbench and root)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(dir.path())
            .status()
            .unwrap();
        let ok = as_postgres("initdb")
            .args(["-D"])
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb");
        let port = 15_432;
        let server = as_postgres("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=50",
                "-c",
                "dynamic_shared_memory_type=mmap",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pg = Postgres { dir, server, port };
        let end = Instant::now() + Duration::from_secs(30);
        while !pg
            .pgbench(&["-i", "-q", "-s", "5"])
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            assert!(Instant::now() < end, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(pg)
    }

    fn pgbench(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        as_postgres("pgbench")
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .output()
    }

    /// Transactions per second of a select-only run.
    fn tps(&self) -> f64 {
        let out = self
            .pgbench(&["-S", "-n", "-c", "4", "-j", "2", "-T", "5"])
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("tps = ")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no tps in {text}"))
    }

    /// Every process of the server (the postmaster and its children).
    fn pids(&self) -> Vec<u32> {
        let root = self.server.id();
        let mut out = vec![root];
        out.extend(faultline_process::contain::children(root));
        out
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A fast shutdown (SIGINT): a SIGKILLed postmaster leaves its
        // shared memory segments behind (here in the data directory, with
        // dynamic_shared_memory_type=mmap, but its System V one too).
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.server.id() as i32, libc::SIGINT) };
        let end = Instant::now() + Duration::from_secs(10);
        while matches!(self.server.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn server_throughput() {
    let Some(pg) = Postgres::start() else { return };
    let rounds = 3;
    let before: Vec<f64> = (0..rounds).map(|_| pg.tps()).collect();
    let mut patched = 0;
    for pid in pg.pids() {
        if vdso::attach(pid, 1_000_000_000).is_ok() {
            patched += 1;
        }
    }
    let after: Vec<f64> = (0..rounds).map(|_| pg.tps()).collect();
    println!("PostgreSQL 15, pgbench -S -c 4 -j 2 -T 5 (tps, median of {rounds}): unpatched {:.0}, patched ({patched} server processes, +1 s) {:.0}",
        median(before.clone()), median(after.clone()));
    println!("  runs unpatched {before:.0?}, patched {after:.0?}");
}

fn main() {
    clock_reads();
    server_throughput();
}
