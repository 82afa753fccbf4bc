//! What a fault did to a node, as its history record carries it (the
//! `effects` of a crash or a disk fault): written by the executor, read
//! back by the report, one type for both.

use serde::{Deserialize, Serialize};

/// Unsynced bytes of one file a crash dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostFile {
    pub file: String,
    pub bytes: u64,
}

/// What a crash (a power loss) did to one node's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashEffect {
    pub node: String,
    pub lost: Vec<LostFile>,
    /// Files whose last kept write was torn.
    pub torn: Vec<String>,
    /// Namespace changes undone (never made durable by a directory fsync).
    pub undone: Vec<String>,
    /// Changes that could not be undone, and why.
    pub not_undone: Vec<String>,
}

/// What a disk fault did to one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DiskEffect {
    /// Bytes [offset, offset + length) of one file damaged (for a
    /// truncation: the file cut to `offset`, losing `length`).
    Damaged {
        node: String,
        file: String,
        offset: u64,
        length: u64,
        file_bytes: u64,
    },
    /// Left alone: it had refused to start after an earlier fault, and
    /// damaging it again could destroy the evidence.
    Spared { node: String, spared: String },
    /// Its data directory had no file to damage (`file` is null, and
    /// must be: a damaged file's record missing a field is unreadable,
    /// not "no files").
    NoFiles { node: String, file: () },
}

impl DiskEffect {
    pub fn node(&self) -> &str {
        match self {
            DiskEffect::Damaged { node, .. }
            | DiskEffect::Spared { node, .. }
            | DiskEffect::NoFiles { node, .. } => node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The records as the history has always had them read back as each
    /// kind, and write back the same.
    #[test]
    fn effect_records_read_back_as_written() {
        let crash = json!({"node": "n2", "lost": [{"file": "wal", "bytes": 4096}],
            "torn": ["wal"], "undone": [], "not_undone": []});
        let c: CrashEffect = serde_json::from_value(crash.clone()).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), crash);
        let disk = [
            json!({"node": "n1", "file": "wal", "offset": 10, "length": 2, "file_bytes": 99}),
            json!({"node": "n2", "spared": "refused to start after an earlier fault"}),
            json!({"node": "n3", "file": null}),
        ];
        let kinds: Vec<DiskEffect> = disk
            .iter()
            .map(|d| serde_json::from_value(d.clone()).unwrap())
            .collect();
        assert!(matches!(kinds[0], DiskEffect::Damaged { offset: 10, .. }));
        assert!(matches!(kinds[1], DiskEffect::Spared { .. }));
        assert!(matches!(kinds[2], DiskEffect::NoFiles { .. }));
        for (k, d) in kinds.iter().zip(&disk) {
            assert_eq!(&serde_json::to_value(k).unwrap(), d);
        }
        let renamed = json!({"node": "n2", "lost_files": []});
        assert!(serde_json::from_value::<CrashEffect>(renamed).is_err());
        let short = json!({"node": "n5", "file": "snap", "offset": 1, "length": 2});
        assert!(serde_json::from_value::<DiskEffect>(short).is_err());
    }
}
