//! Who leads a real server that emits no trace events: every node is
//! asked at once, each period, through the system file's `[leader]` probe,
//! and the name most of them give is the leader. A new leader is traced as
//! an election (`"source": "leader-probe"`, terms counted here), so faults
//! aimed at the leader hit it and `on-elect` moments fire. Asking one node
//! would follow a cut-off node's stale view; the most-named one does not.

use faultline_net::recorder::Recorder;
use faultline_rundir::record::Sink;
use faultline_rundir::ProbeStats;
use faultline_systems::leader::{node_of, LeaderProbe};
use serde_json::json;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// The longest one node's answer is waited for.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// Polls until aborted; `stats` counts rounds, answers naming a node,
/// and the last error (a probe that never answers is a warning).
pub fn spawn_poller(
    probes: Vec<LeaderProbe>,
    ids: Vec<String>,
    ips: Vec<String>,
    recorder: Arc<Recorder>,
    stats: Arc<Mutex<ProbeStats>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = probes
            .first()
            .map_or(Duration::from_millis(500), |p| p.every);
        let mut term = 0u64;
        let mut leader = None;
        loop {
            let answers =
                futures::future::join_all(probes.iter().map(|p| p.ask(ASK_TIMEOUT.min(every * 2))))
                    .await;
            let named: Vec<usize> = answers
                .iter()
                .filter_map(|a| a.as_ref().ok())
                .filter_map(|name| node_of(name, &ids, &ips))
                .collect();
            {
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.rounds += 1;
                // An empty name is an answer: "nobody leads now".
                s.answers += answers.iter().filter(|a| a.is_ok()).count() as u64;
                for a in &answers {
                    match a {
                        Err(e) => s.last_error = Some(e.clone()),
                        Ok(name) if !name.is_empty() && node_of(name, &ids, &ips).is_none() => {
                            s.last_error = Some(format!("{name:?} names no node of the cluster"))
                        }
                        Ok(_) => {}
                    }
                }
            }
            if let Some(now) = most_named(&named, leader) {
                if leader != Some(now) {
                    term += 1;
                    leader = Some(now);
                    let event = json!({"event": "leader", "term": term, "source": "leader-probe"});
                    recorder.trace(&ids[now], &event);
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// The node named most often; a tie keeps `current` if it is among the
/// most named, else none is chosen.
fn most_named(named: &[usize], current: Option<usize>) -> Option<usize> {
    let mut counts = std::collections::BTreeMap::new();
    for &n in named {
        *counts.entry(n).or_insert(0usize) += 1;
    }
    let top = *counts.values().max()?;
    let best: Vec<usize> = counts
        .iter()
        .filter(|(_, &c)| c == top)
        .map(|(&n, _)| n)
        .collect();
    match best.as_slice() {
        [only] => Some(*only),
        _ => current.filter(|c| best.contains(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_named_node_leads_and_a_tie_keeps_the_leader() {
        assert_eq!(most_named(&[1, 1, 2], None), Some(1));
        assert_eq!(most_named(&[1, 2], Some(2)), Some(2));
        assert_eq!(most_named(&[1, 2], Some(0)), None);
        assert_eq!(most_named(&[], Some(0)), None);
    }
}
