//! The skewed wall clocks of a run: the skew each node should show, set
//! in every process of the node through the clock agent (see
//! `faultline_process::clock_agent`), and a task that keeps moving clocks
//! (strobe, drift) moving until the nemesis is gone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use faultline_process::clock::Skew;
use faultline_process::clock_agent::Agent;

/// How often moving clocks are set anew.
const CLOCK_STEP: Duration = Duration::from_millis(5);

pub struct Clocks {
    agent: Arc<Agent>,
    ids: Vec<String>,
    skews: Vec<Skew>,
    /// Last offset set per node, in ns (sets only on change).
    written_ns: Vec<i64>,
    error: Option<String>,
}

impl Clocks {
    /// True time on every node, with a mover task for as long as the
    /// returned handle lives.
    pub fn start(agent: Arc<Agent>, ids: Vec<String>) -> Arc<Mutex<Clocks>> {
        let clocks = Arc::new(Mutex::new(Clocks {
            agent,
            skews: vec![Skew::True; ids.len()],
            written_ns: vec![0; ids.len()],
            ids,
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

    /// Sets every node whose offset changed, in each of its processes;
    /// returns the processes each such node's offset is now in force in,
    /// or the first failure.
    pub fn sync(&mut self) -> Result<BTreeMap<String, Vec<u32>>, String> {
        let now = Instant::now();
        let mut reached = BTreeMap::new();
        for i in 0..self.ids.len() {
            let ns = self.skews[i].offset_ns(now);
            if ns != self.written_ns[i] {
                match self.agent.set(&self.ids[i], ns) {
                    Ok(pids) => {
                        self.written_ns[i] = ns;
                        reached.insert(self.ids[i].clone(), pids);
                    }
                    Err(e) => self.error = Some(e.to_string()),
                }
            }
        }
        self.error.take().map_or(Ok(reached), Err)
    }
}

/// Sets moving clocks anew until the clocks are dropped; an error is kept
/// for the next `sync` to report.
fn spawn_mover(clocks: Weak<Mutex<Clocks>>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CLOCK_STEP).await;
            let Some(c) = clocks.upgrade() else { return };
            let moving = {
                let c = c.lock().unwrap_or_else(|e| e.into_inner());
                c.skews.iter().any(Skew::moves)
            };
            if moving {
                // The agent answers in microseconds; off the runtime's
                // threads all the same.
                let _ = tokio::task::spawn_blocking(move || {
                    let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = c.sync() {
                        c.error = Some(e);
                    }
                })
                .await;
            }
        }
    });
}
