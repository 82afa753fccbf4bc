//! Runs a fault schedule against the clock and the nodes' trace events.
//! A step without a trigger applies at its time. A step aimed at a
//! protocol moment (a leader elected, a leader committing, a vote granted)
//! is armed at its time and applies at the first such trace event from
//! then on (one event starts one fault; undos armed for it all apply); if
//! none comes within its wait, or the nodes emit no traces at
//! all, it applies by the clock and the history says so. Steps of one kind
//! keep their order (a fault's undo never overtakes its start, and a
//! scripted sequence of one kind runs in sequence); kinds do not wait for
//! each other, so a fault waiting for its moment holds up no other kind.

use faultline_nemesis::{Kind, Moment, Named, Phase, Step};
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::{Executor, Processes};
use faultline_net::recorder::{Recorder, Seen};

/// What made a step apply: its moment's trace event, or the clock.
#[derive(Debug, Clone)]
pub struct Fired {
    pub moment: Moment,
    /// The node whose trace event fired it (none: the clock did).
    pub node: Option<String>,
    pub term: Option<u64>,
    /// When the event was traced (ns since the run began).
    pub event_ns: Option<u64>,
    /// How long the step was armed before it applied.
    pub waited_ms: u64,
    /// Why the clock fired it instead of an event.
    pub fallback: Option<String>,
}

impl Fired {
    /// The `moment` field of the nemesis op in history.jsonl.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"on": self.moment.name(), "waited_ms": self.waited_ms});
        if let Some(node) = &self.node {
            v["node"] = json!(node);
            v["event"] = json!(self.moment.event());
            v["term"] = json!(self.term);
            v["event_ns"] = json!(self.event_ns);
        }
        if let Some(why) = &self.fallback {
            v["fallback"] = json!(why);
        }
        v
    }
}

/// Where moments come from: the recorder's feed of trace events.
pub struct MomentFeed {
    recorder: Arc<Recorder>,
    rx: Option<broadcast::Receiver<Seen>>,
}

impl MomentFeed {
    /// Subscribes now: moments traced from here on are seen.
    pub fn new(recorder: Arc<Recorder>) -> MomentFeed {
        let rx = Some(recorder.moments());
        MomentFeed { recorder, rx }
    }

    fn traces_seen(&self) -> bool {
        self.recorder.trace_count.load(Relaxed) > 0
    }

    /// The next moment; pending forever once the feed has closed.
    async fn next(&mut self) -> Option<Seen> {
        loop {
            let Some(rx) = self.rx.as_mut() else {
                return std::future::pending().await;
            };
            match rx.recv().await {
                Ok(seen) => return Some(seen),
                // Older moments were dropped; the newer ones still count.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => self.rx = None,
            }
        }
    }
}

/// A schedule being run: the steps not yet applied, in order.
struct Pending {
    steps: Vec<Step>,
    /// When each triggered step was armed: once it was due and first of
    /// its kind (a step queued behind another of its kind is armed when
    /// that one has applied, so no moment from before then fires it).
    armed: Vec<Option<Instant>>,
    started_at: Instant,
}

impl Pending {
    /// The first pending step of each kind, in schedule order: only these
    /// may apply (or be armed) now.
    fn heads(&self) -> Vec<usize> {
        let mut seen: Vec<Kind> = Vec::new();
        let mut heads = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            let k = s.action.kind();
            if !seen.contains(&k) {
                seen.push(k);
                heads.push(i);
            }
        }
        heads
    }

    fn at(&self, i: usize) -> Instant {
        self.started_at + Duration::from_millis(self.steps[i].at_ms)
    }

    /// Arms every triggered head that is due.
    fn arm(&mut self, now: Instant) {
        for i in self.heads() {
            if self.steps[i].on.is_some() && self.at(i) <= now && self.armed[i].is_none() {
                self.armed[i] = Some(now);
            }
        }
    }

    fn remove(&mut self, i: usize) -> Step {
        self.armed.remove(i);
        self.steps.remove(i)
    }

    /// When the head `i` next needs attention: its time, or, armed, the
    /// end of its wait.
    fn wake(&self, i: usize) -> Instant {
        match (self.steps[i].on, self.armed[i]) {
            (Some(t), Some(armed)) => armed + Duration::from_millis(t.within_ms),
            _ => self.at(i),
        }
    }

    /// The head that must apply by the clock now, and why the clock.
    fn due(&self, now: Instant, traced: bool) -> Option<(usize, Option<Fired>)> {
        for i in self.heads() {
            if self.at(i) > now {
                continue;
            }
            let Some(t) = self.steps[i].on else {
                return Some((i, None));
            };
            let armed = self.armed[i].unwrap_or(now);
            let waited_ms = now.duration_since(armed).as_millis() as u64;
            let fallback = if !traced {
                "the nodes emit no trace events, so the clock fired it".to_string()
            } else if waited_ms >= t.within_ms {
                format!("no {} within {} ms", t.moment.name(), t.within_ms)
            } else {
                continue;
            };
            let fired = Fired {
                moment: t.moment,
                node: None,
                term: None,
                event_ns: None,
                waited_ms,
                fallback: Some(fallback),
            };
            return Some((i, Some(fired)));
        }
        None
    }

    /// The armed heads `seen` fires, in schedule order: every undo armed
    /// for it, and of the faults armed for it only the first. One moment
    /// starts one fault; the others wait for the next. Started together,
    /// every kind armed for the same election hit the new leader at once
    /// (isolated, paused, killed, then a crash of every node), and what any
    /// one of them would have exposed, a successor committing while the old
    /// leader still answers, never happened. An undo adds no damage, and a
    /// scenario may end one fault on the moment that starts another
    /// (Figure 8 heals its partition on the commit it kills the leader at).
    fn fired_by(&self, seen: &Seen) -> Vec<(usize, Fired)> {
        let mut started = false;
        self.heads()
            .into_iter()
            .filter_map(|i| {
                let t = self.steps[i].on?;
                let at = self.armed[i]?;
                if t.moment != seen.moment || at > seen.at {
                    return None;
                }
                if self.steps[i].action.phase() == Phase::Start {
                    if started {
                        return None;
                    }
                    started = true;
                }
                let fired = Fired {
                    moment: t.moment,
                    node: Some(seen.node.clone()),
                    term: seen.term,
                    event_ns: Some(seen.time_ns),
                    waited_ms: seen.at.duration_since(at).as_millis() as u64,
                    fallback: None,
                };
                Some((i, fired))
            })
            .collect()
    }
}

/// Applies `schedule` until `deadline` or cancellation; steps due at or
/// after the deadline never apply (healing closes whatever is open).
pub async fn run<P: Processes>(
    schedule: Vec<Step>,
    executor: &mut Executor<P>,
    mut feed: MomentFeed,
    started_at: Instant,
    deadline: Instant,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    executor.set_bounds(deadline, cancel.clone());
    let mut pending = Pending {
        armed: vec![None; schedule.len()],
        steps: schedule,
        started_at,
    };
    // Bounded: every pass applies a step or waits for time or a moment.
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        pending.arm(now);
        if let Some((i, fired)) = pending.due(now, feed.traces_seen()) {
            let step = pending.remove(i);
            apply_timed(executor, &step, fired.as_ref(), started_at).await?;
            continue;
        }
        let heads = pending.heads();
        let Some(wake) = heads.iter().map(|&i| pending.wake(i)).min() else {
            return Ok(());
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake.min(deadline).into()) => {}
            _ = cancel.cancelled() => return Ok(()),
            seen = feed.next() => {
                let Some(seen) = seen else { continue };
                // A moment seen at or past the deadline starts nothing:
                // the load phase is over, and the final reads come next.
                if Instant::now() >= deadline {
                    return Ok(());
                }
                // Removed from the back so earlier indexes stay valid;
                // applied in schedule order.
                let fired = pending.fired_by(&seen);
                let mut steps = Vec::new();
                for (i, f) in fired.into_iter().rev() {
                    steps.push((pending.remove(i), f));
                }
                for (step, f) in steps.into_iter().rev() {
                    apply_timed(executor, &step, Some(&f), started_at).await?;
                }
            }
        }
    }
}

/// Applies one step and notes how long it held the nemesis up.
async fn apply_timed<P: Processes>(
    executor: &mut Executor<P>,
    step: &Step,
    fired: Option<&Fired>,
    started_at: Instant,
) -> anyhow::Result<()> {
    let began = Instant::now();
    executor.apply_fired(&step.action, fired).await?;
    let at_ms = began.duration_since(started_at).as_millis() as u64;
    executor.timed(&step.action, at_ms, began.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_nemesis::{Action, Scope, Shape, Target, Trigger};

    #[test]
    fn one_event_starts_one_fault_and_the_others_wait_for_the_next() {
        let on_elect = Some(Trigger {
            moment: Moment::Elect,
            within_ms: 1000,
        });
        let aimed = |action| Step {
            at_ms: 0,
            action,
            on: on_elect,
        };
        let kill = aimed(Action::Kill {
            target: Target::Leader,
            process: None,
        });
        let cut = aimed(Action::StartPartition {
            shape: Shape::IsolateLeader,
            cut: Vec::new(),
        });
        let heal = aimed(Action::Resume {
            nodes: Scope::Affected,
        });
        let now = Instant::now();
        let mut pending = Pending {
            armed: vec![None; 3],
            steps: vec![kill, cut, heal],
            started_at: now,
        };
        pending.arm(now);
        let elected = |node: &str| Seen {
            moment: Moment::Elect,
            node: node.into(),
            term: Some(2),
            time_ns: 1,
            at: now + Duration::from_millis(1),
        };
        // The first fault and the undo fire; the partition waits.
        let fired = pending.fired_by(&elected("n1"));
        let which: Vec<usize> = fired.iter().map(|(i, _)| *i).collect();
        assert_eq!(which, [0, 2], "the first start and every undo");
        assert_eq!(fired[0].1.node.as_deref(), Some("n1"));
        pending.remove(2);
        pending.remove(0);
        // The partition takes the next election rather than piling on.
        let fired = pending.fired_by(&elected("n3"));
        assert_eq!(fired.len(), 1);
        assert!(matches!(
            pending.steps[fired[0].0].action,
            Action::StartPartition { .. }
        ));
        assert_eq!(fired[0].1.node.as_deref(), Some("n3"));
    }
}
