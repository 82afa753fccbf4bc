//! Consistency models as Elle names them, and which anomalies each
//! forbids. Anomalies outside every cycle class (garbage, duplicates,
//! internal inconsistency, incompatible orders) are forbidden by all.

/// A consistency model, weakest to strongest within each family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsistencyModel {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    SnapshotIsolation,
    Serializable,
    StrongSessionSnapshotIsolation,
    StrongSessionSerializable,
    StrongSnapshotIsolation,
    StrictSerializable,
}

use ConsistencyModel::*;

/// Every model, in the order results list them.
pub const MODELS: [ConsistencyModel; 9] = [
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    SnapshotIsolation,
    Serializable,
    StrongSessionSnapshotIsolation,
    StrongSessionSerializable,
    StrongSnapshotIsolation,
    StrictSerializable,
];

/// Anomalies every model forbids: the history cannot be explained at all.
const ALWAYS: [&str; 7] = [
    "out-of-order-appends",
    "garbage-read",
    "duplicate-elements",
    "internal",
    "incompatible-order",
    "duplicate-appends",
    "G0",
];

/// The most serious first: how anomalies are listed.
const ORDER: [&str; 26] = [
    "out-of-order-appends",
    "garbage-read",
    "duplicate-elements",
    "incompatible-order",
    "duplicate-appends",
    "internal",
    "G0",
    "G1a",
    "G1b",
    "dirty-update",
    "G1c",
    "G-single-item",
    "G-nonadjacent-item",
    "G2-item",
    "G0-process",
    "G1c-process",
    "G-single-item-process",
    "G-nonadjacent-item-process",
    "G2-item-process",
    "G0-realtime",
    "G1c-realtime",
    "G-single-item-realtime",
    "G-nonadjacent-item-realtime",
    "G2-item-realtime",
    "cycle-search-incomplete",
    "unknown",
];

pub fn rank(class: &str) -> usize {
    ORDER
        .iter()
        .position(|c| *c == class)
        .unwrap_or(ORDER.len())
}

impl ConsistencyModel {
    pub fn name(self) -> &'static str {
        match self {
            ReadUncommitted => "read-uncommitted",
            ReadCommitted => "read-committed",
            RepeatableRead => "repeatable-read",
            SnapshotIsolation => "snapshot-isolation",
            Serializable => "serializable",
            StrongSessionSnapshotIsolation => "strong-session-snapshot-isolation",
            StrongSessionSerializable => "strong-session-serializable",
            StrongSnapshotIsolation => "strong-snapshot-isolation",
            StrictSerializable => "strict-serializable",
        }
    }

    pub fn parse(s: &str) -> Result<ConsistencyModel, String> {
        MODELS
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = MODELS.iter().map(|m| m.name()).collect();
                format!(
                    "unknown consistency model {s:?} (available: {})",
                    names.join(", ")
                )
            })
    }

    /// Whether a history showing `class` cannot be under this model.
    pub fn forbids(self, class: &str) -> bool {
        if ALWAYS.contains(&class) {
            return true;
        }
        let (base, order) = match class.rsplit_once('-') {
            Some((b, "process")) => (b, 1),
            Some((b, "realtime")) => (b, 2),
            _ => (class, 0),
        };
        // How much ordering the model adds: sessions (process) or all of
        // real time.
        let reach = match self {
            StrongSessionSnapshotIsolation | StrongSessionSerializable => 1,
            StrongSnapshotIsolation | StrictSerializable => 2,
            _ => 0,
        };
        if order > reach {
            return false;
        }
        let g0 = base == "G0";
        let read_committed = g0 || ["G1a", "G1b", "dirty-update", "G1c"].contains(&base);
        let single = base == "G-single-item";
        // Snapshot isolation forbids these too (Adya's G-SI b / Elle).
        let nonadjacent = base == "G-nonadjacent-item";
        let item = base == "G2-item";
        match self {
            ReadUncommitted => g0,
            ReadCommitted => read_committed,
            RepeatableRead => read_committed || single || nonadjacent || item,
            SnapshotIsolation | StrongSessionSnapshotIsolation | StrongSnapshotIsolation => {
                read_committed || single || nonadjacent
            }
            Serializable | StrongSessionSerializable | StrictSerializable => {
                read_committed || single || nonadjacent || item
            }
        }
    }
}

/// The models a history with these anomaly classes is not allowed under.
pub fn violated(classes: &[String]) -> Vec<String> {
    MODELS
        .iter()
        .filter(|m| classes.iter().any(|c| m.forbids(c)))
        .map(|m| m.name().to_string())
        .collect()
}
