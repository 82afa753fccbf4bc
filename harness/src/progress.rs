//! Progress on long runs: an indicatif bar when the stream is a terminal,
//! plain periodic lines when it is not (CI logs, pipes).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the plain-lines form prints a status line.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub enum Progress {
    Bar(ProgressBar),
    Lines { last: Mutex<Instant>, stdout: bool },
}

impl Progress {
    /// A bar of `total` units on stdout (`stdout`) or stderr.
    pub fn new(total: u64, stdout: bool) -> Progress {
        let tty = if stdout {
            std::io::stdout().is_terminal()
        } else {
            std::io::stderr().is_terminal()
        };
        if !tty {
            // The first status line prints at once, later ones every few seconds.
            let first = Instant::now()
                .checked_sub(LINE_EVERY)
                .unwrap_or_else(Instant::now);
            return Progress::Lines {
                last: Mutex::new(first),
                stdout,
            };
        }
        let target = if stdout {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress::Bar(bar)
    }

    /// Moves to `pos` with a status message (printed as a line at most
    /// every few seconds when not on a terminal).
    pub fn set(&self, pos: u64, msg: String) {
        match self {
            Progress::Bar(b) => {
                b.set_position(pos);
                b.set_message(msg);
            }
            Progress::Lines { last, stdout } => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    if *stdout {
                        println!("{msg}");
                    } else {
                        eprintln!("faultline: {msg}");
                    }
                }
            }
        }
    }

    /// A line that must always appear (above the bar on a terminal).
    pub fn println(&self, line: &str) {
        match self {
            Progress::Bar(b) => b.println(line),
            Progress::Lines { stdout: true, .. } => println!("{line}"),
            Progress::Lines { .. } => eprintln!("{line}"),
        }
    }

    pub fn inc(&self) {
        if let Progress::Bar(b) = self {
            b.inc(1);
        }
    }

    pub fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}
