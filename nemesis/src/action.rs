//! What the nemesis does, step by step: the `Action`s of a schedule, with
//! their targets and units typed, and the one table that names them in the
//! history and says which action ends which fault.

use serde::{Deserialize, Serialize};

use crate::spec::{DiskFault, Kind, LossKind, Moment, Shape};

/// Whom a fault hits: the current leader (resolved from trace events when
/// the action applies; the history records whom it hit), the node whose
/// trace event fired the fault's trigger (a node that just voted), or
/// these nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "TargetRepr", from = "TargetRepr")]
pub enum Target {
    Leader,
    Moment,
    Nodes(Vec<usize>),
}

/// test.json's spelling of a target:
/// `{"nodes":[..],"leader":bool,"moment":bool}`.
#[derive(Serialize, Deserialize)]
struct TargetRepr {
    nodes: Vec<usize>,
    #[serde(default)]
    leader: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    moment: bool,
}

impl From<Target> for TargetRepr {
    fn from(t: Target) -> Self {
        let (nodes, leader, moment) = match t {
            Target::Leader => (Vec::new(), true, false),
            Target::Moment => (Vec::new(), false, true),
            Target::Nodes(nodes) => (nodes, false, false),
        };
        TargetRepr {
            nodes,
            leader,
            moment,
        }
    }
}

impl From<TargetRepr> for Target {
    fn from(r: TargetRepr) -> Self {
        match (r.leader, r.moment) {
            (true, _) => Target::Leader,
            (_, true) => Target::Moment,
            _ => Target::Nodes(r.nodes),
        }
    }
}

/// Whom an undo (resume, restart) reaches: every node its fault left
/// affected (the executor knows whom a leader-targeted fault hit), or these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Vec<usize>", from = "Vec<usize>")]
pub enum Scope {
    Affected,
    Nodes(Vec<usize>),
}

impl From<Scope> for Vec<usize> {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Affected => Vec::new(),
            Scope::Nodes(n) => n,
        }
    }
}

impl From<Vec<usize>> for Scope {
    fn from(n: Vec<usize>) -> Self {
        if n.is_empty() {
            Scope::Affected
        } else {
            Scope::Nodes(n)
        }
    }
}

/// Message faults on every node-to-node link.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MessageRates {
    #[serde(rename = "drop")]
    pub drop_probability: f64,
    #[serde(rename = "duplicate")]
    pub duplicate_probability: f64,
    #[serde(rename = "corrupt")]
    pub corrupt_probability: f64,
    /// Added mean delay, with uniform jitter around it (which reorders).
    pub delay_ms: f64,
}

/// A directed node-to-node link (from, to), by node index.
pub type Link = (usize, usize);

/// One thing the nemesis does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Action {
    /// `cut` lists the directed links that carry nothing; empty for
    /// `isolate-leader` until the executor resolves it.
    StartPartition {
        shape: Shape,
        cut: Vec<Link>,
    },
    StopPartition,
    /// SIGSTOP: every process of each node, or only the one named.
    Pause {
        #[serde(flatten)]
        target: Target,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        process: Option<String>,
    },
    /// SIGCONT to whatever was paused on these nodes.
    Resume {
        nodes: Scope,
    },
    /// SIGKILL: every process of each node, or only the one named.
    Kill {
        #[serde(flatten)]
        target: Target,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        process: Option<String>,
    },
    /// Starts again whatever was killed on these nodes.
    Restart {
        nodes: Scope,
    },
    StartMessages {
        #[serde(flatten)]
        rates: MessageRates,
    },
    StopMessages,
    /// Sets each node's wall clock `delta_ms` away from true time.
    ClockBump {
        #[serde(flatten)]
        target: Target,
        delta_ms: i64,
    },
    /// Flips each node's wall clock between `delta_ms` off and true time
    /// every `period_ms`.
    ClockStrobe {
        #[serde(flatten)]
        target: Target,
        delta_ms: i64,
        period_ms: u64,
    },
    /// Each node's wall clock runs at `rate` times true speed (0.5: half
    /// speed) from now on.
    ClockDrift {
        #[serde(flatten)]
        target: Target,
        rate: f64,
    },
    /// Every skewed clock back to true time.
    ResetClock,
    /// The nodes get `cpu_percent` of the CPU (a SIGSTOP/SIGCONT duty
    /// cycle), their node-to-node links `latency_ms` more delay and at most
    /// `bandwidth_bytes_per_s`, while clients send at `burst` times the rate.
    StartOverload {
        #[serde(flatten)]
        target: Target,
        cpu_percent: u32,
        latency_ms: f64,
        bandwidth_bytes_per_s: u64,
        burst: f64,
    },
    StopOverload,
    /// A power loss on the nodes: killed, and what they never fsynced
    /// dropped as `loss` says, the subset or tear drawn from `seed`.
    Crash {
        #[serde(flatten)]
        target: Target,
        loss: LossKindName,
        #[serde(default)]
        seed: u32,
    },
    /// The crashed nodes start again on what their disks kept.
    Recover {
        nodes: Scope,
    },
    /// The nodes are killed and one file of each is damaged as `fault`
    /// says, the file and range drawn from `seed` (so a replay makes the
    /// same choices on the same files).
    DamageDisk {
        nodes: Vec<usize>,
        fault: DiskFaultName,
        seed: u32,
    },
    /// The damaged nodes start again on their damaged files.
    RestartDamaged {
        nodes: Scope,
    },
    /// The leader's links to every peer are cut and its wall clock is set
    /// `delta_ms` away from true time, at one instant.
    Strand {
        delta_ms: i64,
    },
    /// The stranded node's links back and its clock to true time.
    Unstrand,
    /// A server added (started fresh, then added through the system); the
    /// executor picks which from `seed`, within the configured size range.
    MemberAdd {
        seed: u32,
    },
    /// A member removed through the system, then stopped (its data kept).
    MemberRemove {
        seed: u32,
    },
    /// A member replaced: under a new name in one change, or removed,
    /// wiped and added back under its own (`seed` decides).
    MemberReplace {
        seed: u32,
    },
    /// The membership the system reports, recorded (and the harness's
    /// view reconciled with it) an interval after a change.
    MembershipSettled,
}

/// Declares a newtype that test.json spells as its `Named` name.
macro_rules! spelled {
    ($(#[$m:meta])* $name:ident($ty:ident), $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub $ty);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                use crate::spec::Named;
                $ty::from_name(&s)
                    .map($name)
                    .ok_or_else(|| format!(concat!("unknown ", $what, " {:?}"), s))
            }
        }

        impl From<$name> for String {
            fn from(l: $name) -> String {
                use crate::spec::Named;
                l.0.name().to_string()
            }
        }
    };
}

spelled!(
    /// A `LossKind` as test.json spells it.
    LossKindName(LossKind),
    "loss"
);
spelled!(
    /// A `DiskFault` as test.json spells it.
    DiskFaultName(DiskFault),
    "disk fault"
);

/// Whether an action begins a fault or ends one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Start,
    End,
}

/// Every action's name in the history, its kind, and whether it starts or
/// ends a fault: the one spelling of these names. A fault of a kind is
/// ended by the next `End` action of the same kind.
pub const ACTIONS: [(&str, Kind, Phase); 24] = [
    ("start-partition", Kind::Partition, Phase::Start),
    ("stop-partition", Kind::Partition, Phase::End),
    ("pause", Kind::Pause, Phase::Start),
    ("resume", Kind::Pause, Phase::End),
    ("kill", Kind::Kill, Phase::Start),
    ("restart", Kind::Kill, Phase::End),
    ("start-messages", Kind::Messages, Phase::Start),
    ("stop-messages", Kind::Messages, Phase::End),
    ("clock-bump", Kind::Clock, Phase::Start),
    ("clock-strobe", Kind::Clock, Phase::Start),
    ("clock-drift", Kind::Clock, Phase::Start),
    ("reset-clock", Kind::Clock, Phase::End),
    ("start-overload", Kind::Overload, Phase::Start),
    ("stop-overload", Kind::Overload, Phase::End),
    ("crash", Kind::Crash, Phase::Start),
    ("recover", Kind::Crash, Phase::End),
    ("damage-disk", Kind::Disk, Phase::Start),
    ("restart-damaged", Kind::Disk, Phase::End),
    ("strand", Kind::Strand, Phase::Start),
    ("unstrand", Kind::Strand, Phase::End),
    ("member-add", Kind::Membership, Phase::Start),
    ("member-remove", Kind::Membership, Phase::Start),
    ("member-replace", Kind::Membership, Phase::Start),
    ("membership-settled", Kind::Membership, Phase::End),
];

/// The kind and phase of a history `f` that names a nemesis action.
pub fn lookup(name: &str) -> Option<(Kind, Phase)> {
    ACTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, k, p)| (k, p))
}

/// A fault as the history shows it: the event that started it and the one
/// that ended it (`None`: still on when the history ends).
pub struct Period<'a> {
    pub kind: Kind,
    pub start: &'a faultline_checker::Event,
    pub end: Option<&'a faultline_checker::Event>,
}

/// Every fault period of a history: a nemesis start action paired with the
/// next end action of its kind, in the order they ended.
pub fn periods(events: &[faultline_checker::Event]) -> Vec<Period<'_>> {
    let nemesis = faultline_checker::Process::Named("nemesis".into());
    let mut open: Vec<Period> = Vec::new();
    let mut done = Vec::new();
    for e in events.iter().filter(|e| e.process == nemesis) {
        match lookup(&e.f) {
            Some((kind, Phase::Start)) => open.push(Period {
                kind,
                start: e,
                end: None,
            }),
            Some((kind, Phase::End)) => {
                while let Some(i) = open.iter().position(|p| p.kind == kind) {
                    let mut p = open.remove(i);
                    p.end = Some(e);
                    done.push(p);
                }
            }
            None => {}
        }
    }
    done.extend(open);
    done
}

impl Action {
    fn row(&self) -> usize {
        match self {
            Action::StartPartition { .. } => 0,
            Action::StopPartition => 1,
            Action::Pause { .. } => 2,
            Action::Resume { .. } => 3,
            Action::Kill { .. } => 4,
            Action::Restart { .. } => 5,
            Action::StartMessages { .. } => 6,
            Action::StopMessages => 7,
            Action::ClockBump { .. } => 8,
            Action::ClockStrobe { .. } => 9,
            Action::ClockDrift { .. } => 10,
            Action::ResetClock => 11,
            Action::StartOverload { .. } => 12,
            Action::StopOverload => 13,
            Action::Crash { .. } => 14,
            Action::Recover { .. } => 15,
            Action::DamageDisk { .. } => 16,
            Action::RestartDamaged { .. } => 17,
            Action::Strand { .. } => 18,
            Action::Unstrand => 19,
            Action::MemberAdd { .. } => 20,
            Action::MemberRemove { .. } => 21,
            Action::MemberReplace { .. } => 22,
            Action::MembershipSettled => 23,
        }
    }

    /// The history's `f` for this action.
    pub fn name(&self) -> &'static str {
        ACTIONS[self.row()].0
    }

    pub fn kind(&self) -> Kind {
        ACTIONS[self.row()].1
    }

    pub fn phase(&self) -> Phase {
        ACTIONS[self.row()].2
    }

    /// The nodes and links this action names outright (leader and moment
    /// targets, and undoes of whatever was affected, resolve when they
    /// apply and name none).
    pub fn named(&self) -> (&[usize], &[Link]) {
        fn target(t: &Target) -> &[usize] {
            match t {
                Target::Nodes(v) => v,
                _ => &[],
            }
        }
        fn scope(s: &Scope) -> &[usize] {
            match s {
                Scope::Nodes(v) => v,
                Scope::Affected => &[],
            }
        }
        match self {
            Action::Pause { target: t, .. }
            | Action::Kill { target: t, .. }
            | Action::ClockBump { target: t, .. }
            | Action::ClockStrobe { target: t, .. }
            | Action::ClockDrift { target: t, .. }
            | Action::StartOverload { target: t, .. }
            | Action::Crash { target: t, .. } => (target(t), &[]),
            Action::Resume { nodes }
            | Action::Restart { nodes }
            | Action::Recover { nodes }
            | Action::RestartDamaged { nodes } => (scope(nodes), &[]),
            Action::DamageDisk { nodes, .. } => (nodes, &[]),
            Action::StartPartition { cut, .. } => (&[], cut),
            _ => (&[], &[]),
        }
    }

    /// The action that undoes this one, if it starts a fault.
    pub fn undo(&self) -> Option<Action> {
        // Undoing a leader-targeted fault reaches whoever it affected.
        let scope = |t: &Target| match t {
            Target::Leader | Target::Moment => Scope::Affected,
            Target::Nodes(n) => Scope::Nodes(n.clone()),
        };
        match self {
            Action::StartPartition { .. } => Some(Action::StopPartition),
            Action::Pause { target, .. } => Some(Action::Resume {
                nodes: scope(target),
            }),
            Action::Kill { target, .. } => Some(Action::Restart {
                nodes: scope(target),
            }),
            Action::StartMessages { .. } => Some(Action::StopMessages),
            Action::ClockBump { .. } | Action::ClockStrobe { .. } | Action::ClockDrift { .. } => {
                Some(Action::ResetClock)
            }
            Action::StartOverload { .. } => Some(Action::StopOverload),
            Action::Crash { target, .. } => Some(Action::Recover {
                nodes: scope(target),
            }),
            Action::DamageDisk { nodes, .. } => Some(Action::RestartDamaged {
                nodes: Scope::Nodes(nodes.clone()),
            }),
            Action::Strand { .. } => Some(Action::Unstrand),
            Action::MemberAdd { .. }
            | Action::MemberRemove { .. }
            | Action::MemberReplace { .. } => Some(Action::MembershipSettled),
            _ => None,
        }
    }
}

/// One step of a schedule: `action` at `at_ms` after the test started,
/// or, with a trigger, at the first moment it names from `at_ms` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at_ms: u64,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Trigger>,
}

impl Step {
    /// A step applied by the clock alone.
    pub fn at(at_ms: u64, action: Action) -> Step {
        Step {
            at_ms,
            action,
            on: None,
        }
    }

    /// The latest time this step applies: its time, or its trigger's
    /// deadline.
    pub fn latest_ms(&self) -> u64 {
        self.at_ms + self.on.map_or(0, |t| t.within_ms)
    }
}

/// A fault aimed at a protocol moment: armed at its step's time, it fires
/// at the first trace event of `moment` after that, or when `within_ms`
/// have passed without one (then by the clock, and the history says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub moment: Moment,
    pub within_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_table_agrees_with_serde_and_undo() {
        let actions = [
            Action::StartPartition {
                shape: Shape::Halves,
                cut: vec![(0, 1)],
            },
            Action::Pause {
                target: Target::Leader,
                process: None,
            },
            Action::Kill {
                target: Target::Nodes(vec![1]),
                process: Some("monitor".into()),
            },
            Action::StartMessages {
                rates: MessageRates {
                    drop_probability: 0.1,
                    duplicate_probability: 0.0,
                    corrupt_probability: 0.0,
                    delay_ms: 5.0,
                },
            },
            Action::ClockBump {
                target: Target::Leader,
                delta_ms: 5,
            },
            Action::ClockStrobe {
                target: Target::Nodes(vec![0]),
                delta_ms: 5,
                period_ms: 10,
            },
            Action::ClockDrift {
                target: Target::Leader,
                rate: 2.0,
            },
            Action::StartOverload {
                target: Target::Nodes(vec![2]),
                cpu_percent: 10,
                latency_ms: 10.0,
                bandwidth_bytes_per_s: 1024,
                burst: 3.0,
            },
            Action::Crash {
                target: Target::Leader,
                loss: LossKindName(LossKind::Torn),
                seed: 3,
            },
            Action::DamageDisk {
                nodes: vec![1, 3],
                fault: DiskFaultName(DiskFault::Truncate),
                seed: 7,
            },
            Action::Strand { delta_ms: -2000 },
            Action::MemberAdd { seed: 1 },
            Action::MemberRemove { seed: 2 },
            Action::MemberReplace { seed: 3 },
        ];
        for a in actions {
            let json = serde_json::to_value(&a).unwrap();
            assert_eq!(json["f"], a.name(), "{a:?}");
            assert_eq!(serde_json::from_value::<Action>(json).unwrap(), a);
            assert_eq!(a.phase(), Phase::Start);
            let undo = a.undo().unwrap();
            assert_eq!((undo.kind(), undo.phase()), (a.kind(), Phase::End));
            assert_eq!(lookup(undo.name()), Some((a.kind(), Phase::End)));
        }
        // The old spelling of targets still reads (test.json of earlier runs).
        let old: Action = serde_json::from_str(r#"{"f":"kill","nodes":[],"leader":true}"#).unwrap();
        assert_eq!(
            old,
            Action::Kill {
                target: Target::Leader,
                process: None,
            }
        );
        let old: Action = serde_json::from_str(r#"{"f":"pause","nodes":[2]}"#).unwrap();
        assert_eq!(
            old,
            Action::Pause {
                target: Target::Nodes(vec![2]),
                process: None,
            }
        );
        assert_eq!(lookup("frobnicate"), None);
    }
}
