//! Consistency models as Elle names them, and which anomalies each
//! forbids: Elle's lattice (`lattice`), so a model forbids exactly what
//! Elle's `anomalies-prohibited-by` says, plus three classes Elle does not
//! name that no database can show (`FAULTLINE_ALWAYS`). `table` renders
//! the model x anomaly table the docs carry.

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

/// Anomalies outside Elle's lattice that no history from a database can
/// show, whatever its isolation: a read of a value nobody wrote, one
/// append applied twice, and a transaction's own appends read back out of
/// the order it made them; and a committed append missing from the final
/// read after healing (`lost-write`: what the system kept lacks it). Elle
/// has no names for these; every model forbids them.
const FAULTLINE_ALWAYS: [&str; 4] = [
    "out-of-order-appends",
    "garbage-read",
    "duplicate-appends",
    "lost-write",
];

/// The most serious first: how anomalies are listed.
const ORDER: [&str; 27] = [
    "lost-write",
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
        FAULTLINE_ALWAYS.contains(&class) || super::lattice::prohibited(self.name()).contains(class)
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

/// Every anomaly class the checker names, in `ORDER`, less the two that
/// only say the search was cut short.
pub fn named_classes() -> impl Iterator<Item = &'static str> {
    ORDER
        .iter()
        .copied()
        .filter(|c| !["cycle-search-incomplete", "unknown"].contains(c))
}

/// The model x anomaly table as Markdown: a row per anomaly class the
/// checker names, a column per model, `x` where the model forbids it.
pub fn table() -> String {
    let mut out = String::from("| anomaly |");
    for m in MODELS {
        out += &format!(" {} |", m.name());
    }
    out += "\n|---|";
    out += &"---|".repeat(MODELS.len());
    out += "\n";
    for class in named_classes() {
        out += &format!("| `{class}` |");
        for m in MODELS {
            out += if m.forbids(class) { " x |" } else { " |" };
        }
        out += "\n";
    }
    out
}
