//! `faultline doctor`: what this host offers faultline, checked before the
//! first run, and for each thing missing, what it leaves out and the
//! package that brings it. A run that leaves something out says so too;
//! doctor says it before anyone waits for a run.

/// One thing checked.
pub struct Check {
    pub name: String,
    /// `None` when present; else why not.
    pub missing: Option<String>,
    /// What faultline cannot do without it.
    pub disables: String,
    /// How to get it.
    pub package: String,
}

/// Every check, in the order they print.
pub fn checks() -> Vec<Check> {
    let mut out = vec![
        Check {
            name: "clock skew (ptrace, vDSO)".into(),
            missing: faultline_process::clock::support().err(),
            disables: "the clock nemesis (clock skew, jumps, strobes)".into(),
            package: "an x86-64 Linux that lets faultline ptrace its own children (kernel.yama.ptrace_scope <= 1; not under a debugger)".into(),
        },
        Check {
            name: "FUSE mount".into(),
            missing: faultline_durable::probe().err(),
            disables: "the crash nemesis (power loss of unsynced writes) and disk faults".into(),
            package: "apt-get install fuse3, and /dev/fuse with permission to mount".into(),
        },
        program(
            "unshare",
            "real servers over TCP (--system): each node's private /etc/hosts",
            "apt-get install util-linux",
        ),
        program(
            "setpriv",
            "systems that run as their own user (postgres, galera)",
            "apt-get install util-linux",
        ),
        Check {
            name: "loopback addresses".into(),
            missing: loopback(),
            disables: "real servers over TCP (--system): nodes and proxies on 127.x.y.z".into(),
            package: "a loopback interface that answers 127.0.0.0/8".into(),
        },
    ];
    for name in faultline_systems::system::System::bundled() {
        out.push(bundled(name));
    }
    let browser = ["chromium", "chromium-browser", "google-chrome", "firefox"]
        .iter()
        .find(|b| faultline_process::clock::which(b).is_some());
    out.push(Check {
        name: "a browser".into(),
        missing: browser
            .is_none()
            .then(|| "none of chromium, chromium-browser, google-chrome, firefox on PATH".into()),
        disables:
            "viewing report.html here (the report is one self-contained file: open it anywhere)"
                .into(),
        package: "apt-get install chromium".into(),
    });
    out
}

fn program(name: &str, disables: &str, package: &str) -> Check {
    Check {
        name: name.into(),
        missing: faultline_process::clock::which(name)
            .is_none()
            .then(|| format!("{name} not found on PATH")),
        disables: disables.into(),
        package: package.into(),
    }
}

/// Whether a node's and a proxy's kind of address can be bound.
fn loopback() -> Option<String> {
    for ip in ["127.0.250.1", "127.101.2.250"] {
        if let Err(e) = std::net::TcpListener::bind((ip, 0)) {
            return Some(format!("cannot listen on {ip}: {e}"));
        }
    }
    None
}

/// A bundled system: its binary and what it requires.
fn bundled(name: &str) -> Check {
    let (missing, package) = match faultline_systems::system::System::load(name) {
        Ok(sys) => (
            // The install hint is said once, below.
            sys.check_binary().err().map(|e| {
                let m = e.message;
                m.split("; install it").next().unwrap_or(&m).to_string()
            }),
            sys.install_hint()
                .unwrap_or("see its system file")
                .to_string(),
        ),
        Err(e) => (Some(e.to_string()), String::new()),
    };
    Check {
        name: format!("--system {name}"),
        missing,
        disables: format!("the bundled system {name}"),
        package,
    }
}

/// The report: one line per check, then what is left out.
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let status = if c.missing.is_none() { "ok" } else { "MISSING" };
        s += &format!("{status:<8} {}\n", c.name);
    }
    let missing: Vec<&Check> = checks.iter().filter(|c| c.missing.is_some()).collect();
    if missing.is_empty() {
        s += "\neverything faultline can use is here\n";
        return s;
    }
    s += &format!("\n{} missing:\n", missing.len());
    for c in missing {
        s += &format!(
            "- {}: {}\n  leaves out: {}\n  get it: {}\n",
            c.name,
            c.missing.as_deref().unwrap_or(""),
            c.disables,
            c.package
        );
    }
    s
}
