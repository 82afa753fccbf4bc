//! The skewed wall clocks of a run: each node's libfaketime file (see
//! `faultline_process::clock`), the skew each should show, and a task that rewrites
//! the files of moving clocks (strobe, drift) until the nemesis is gone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use faultline_process::clock::{write_offset, Skew};

/// How often moving clocks have their files rewritten.
const CLOCK_STEP: Duration = Duration::from_millis(5);

pub struct Clocks {
    files: Vec<PathBuf>,
    skews: Vec<Skew>,
    /// Last offset written per node, in whole ms (writes only on change).
    written_ms: Vec<i64>,
    error: Option<String>,
}

impl Clocks {
    /// True time on every node, with a mover task for as long as the
    /// returned handle lives.
    pub fn start(files: Vec<PathBuf>) -> Arc<Mutex<Clocks>> {
        let clocks = Arc::new(Mutex::new(Clocks {
            skews: vec![Skew::True; files.len()],
            written_ms: vec![0; files.len()],
            files,
            error: None,
        }));
        spawn_mover(Arc::downgrade(&clocks));
        clocks
    }

    /// Sets node `i`'s skew from its current one.
    pub fn set(&mut self, i: usize, make: impl Fn(&Skew, Instant) -> Skew) {
        let now = Instant::now();
        self.skews[i] = make(&self.skews[i], now);
    }

    /// Every skewed node back to true time; returns whom that reset.
    pub fn reset(&mut self) -> Vec<usize> {
        let reset: Vec<usize> = (0..self.skews.len())
            .filter(|&i| self.skews[i] != Skew::True)
            .collect();
        for &i in &reset {
            self.skews[i] = Skew::True;
        }
        reset
    }

    pub fn any_skewed(&self) -> bool {
        self.skews.iter().any(|s| *s != Skew::True)
    }

    /// Writes every file whose offset changed; the first failure, if any.
    pub fn sync(&mut self) -> Result<(), String> {
        let now = Instant::now();
        for i in 0..self.files.len() {
            let ms = self.skews[i].offset_ms(now).round() as i64;
            if ms != self.written_ms[i] {
                match write_offset(&self.files[i], ms as f64) {
                    Ok(()) => self.written_ms[i] = ms,
                    Err(e) => self.error = Some(e.to_string()),
                }
            }
        }
        self.error.take().map_or(Ok(()), Err)
    }
}

/// Rewrites the files of moving clocks until the clocks are dropped; an
/// error is kept for the next `sync` to report.
fn spawn_mover(clocks: Weak<Mutex<Clocks>>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CLOCK_STEP).await;
            let Some(c) = clocks.upgrade() else { return };
            let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
            if c.skews.iter().any(Skew::moves) {
                if let Err(e) = c.sync() {
                    c.error = Some(e);
                }
            }
        }
    });
}
