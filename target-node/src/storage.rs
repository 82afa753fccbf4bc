//! Durable state in the node's data directory.
//!
//! `wal`: an append-only log of records (hard state, entry, truncate), each
//! framed as `[len: u32 LE][crc32c: u32 LE][JSON payload]`. Recovery replays
//! it; a torn tail (an incomplete or bad *last* record, what a crash in the
//! middle of a write leaves) is cut off, but a bad record followed by more
//! data is corruption, and the node refuses to start rather than serve
//! wrong data. `snapshot`: one framed record, replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory); taking a snapshot
//! also rewrites the WAL without the compacted prefix.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::raft::{Durable, Entry, Log, NodeIx, Ready, Snapshot};

/// A record larger than this is corruption, not data.
const MAX_RECORD_BYTES: u32 = 256 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "lowercase")]
enum Record {
    Hard { term: u64, vote: Option<NodeIx> },
    Entry { entry: Entry },
    Truncate { from: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is corrupt at byte {offset}: {reason}; refusing to start rather than serve wrong data")]
    Corrupt {
        path: String,
        offset: u64,
        reason: String,
    },
}

pub struct Storage {
    dir: PathBuf,
    wal: File,
    /// Bytes written since the last fsync.
    dirty: bool,
    /// Bytes the torn-tail recovery cut off, for the log.
    pub recovered_torn_bytes: u64,
    /// The no-fsync bug: the WAL is written but never synced.
    pub skip_fsync: bool,
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

enum Parsed<'a> {
    Record(&'a [u8], usize),
    /// The file ends inside this record, or its checksum fails and it is the
    /// last one: what a crash mid-write leaves.
    TornTail,
    Corrupt(String),
}

fn next_frame(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < 8 {
        return Parsed::TornTail;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD_BYTES {
        // A garbage length at the very end is a torn header; elsewhere it is
        // corruption.
        return if buf.len() < 8 + 64 {
            Parsed::TornTail
        } else {
            Parsed::Corrupt(format!("record length {len} is impossible"))
        };
    }
    let end = 8 + len as usize;
    if buf.len() < end {
        return Parsed::TornTail;
    }
    let payload = &buf[8..end];
    if crc32c::crc32c(payload) != crc {
        return if buf.len() == end {
            Parsed::TornTail
        } else {
            Parsed::Corrupt("checksum mismatch".into())
        };
    }
    Parsed::Record(payload, end)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes `bytes` to `dir/name` atomically and durably.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    sync_dir(dir)
}

impl Storage {
    /// Opens (creating if needed) and recovers the durable state.
    pub fn open(dir: &Path) -> Result<(Storage, Durable), StorageError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            // The new directory's entry is durable only once its parent
            // is synced.
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let mut durable = Durable::default();
        let snap_path = dir.join("snapshot");
        if snap_path.exists() {
            let bytes = std::fs::read(&snap_path).map_err(io(&snap_path))?;
            let snap: Snapshot = match next_frame(&bytes) {
                Parsed::Record(p, end) if end == bytes.len() => {
                    serde_json::from_slice(p).map_err(|e| StorageError::Corrupt {
                        path: snap_path.display().to_string(),
                        offset: 8,
                        reason: format!("snapshot does not decode: {e}"),
                    })?
                }
                // The snapshot is only ever renamed into place whole.
                _ => {
                    return Err(StorageError::Corrupt {
                        path: snap_path.display().to_string(),
                        offset: 0,
                        reason: "snapshot frame is damaged".into(),
                    })
                }
            };
            durable.log = Log {
                snap_index: snap.index,
                snap_term: snap.term,
                entries: Vec::new(),
            };
            durable.snapshot = Some(snap);
        }
        let wal_path = dir.join("wal");
        let mut bytes = Vec::new();
        if wal_path.exists() {
            File::open(&wal_path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io(&wal_path))?;
        }
        let mut offset = 0usize;
        let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
            path: wal_path.display().to_string(),
            offset: offset as u64,
            reason,
        };
        let mut torn = 0u64;
        while offset < bytes.len() {
            match next_frame(&bytes[offset..]) {
                Parsed::Record(payload, used) => {
                    let rec: Record = serde_json::from_slice(payload)
                        .map_err(|e| corrupt(offset, format!("record does not decode: {e}")))?;
                    apply_record(&mut durable, rec).map_err(|r| corrupt(offset, r))?;
                    offset += used;
                }
                Parsed::TornTail => {
                    torn = (bytes.len() - offset) as u64;
                    break;
                }
                Parsed::Corrupt(reason) => return Err(corrupt(offset, reason)),
            }
        }
        let created = !wal_path.exists();
        let wal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&wal_path)
            .map_err(io(&wal_path))?;
        if created {
            // A WAL whose creation a crash can undo would take every
            // record after it along.
            sync_dir(dir)?;
        }
        if torn > 0 {
            wal.set_len(offset as u64).map_err(io(&wal_path))?;
            wal.sync_all().map_err(io(&wal_path))?;
        }
        Ok((
            Storage {
                dir: dir.to_path_buf(),
                wal,
                dirty: false,
                recovered_torn_bytes: torn,
                skip_fsync: false,
            },
            durable,
        ))
    }

    /// Appends what a Ready asks to persist (not yet synced).
    pub fn write(&mut self, rd: &Ready) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        let mut push =
            |r: &Record| buf.extend(frame(&serde_json::to_vec(r).expect("records serialize")));
        if let Some((term, vote)) = rd.hard_state {
            push(&Record::Hard { term, vote });
        }
        if let Some(from) = rd.truncate_from {
            push(&Record::Truncate { from });
        }
        for e in &rd.append {
            push(&Record::Entry { entry: e.clone() });
        }
        if buf.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("wal");
        self.wal.write_all(&buf).map_err(io(&path))?;
        self.dirty = true;
        Ok(())
    }

    /// One fsync for everything written since the last: the batching that
    /// makes durable writes affordable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if self.dirty && !self.skip_fsync {
            let path = self.dir.join("wal");
            self.wal.sync_data().map_err(io(&path))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Persists a snapshot and rewrites the WAL as hard state plus `entries`
    /// (those after the snapshot).
    pub fn save_snapshot(
        &mut self,
        snap: &Snapshot,
        term: u64,
        vote: Option<NodeIx>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        self.sync()?;
        replace_file(
            &self.dir,
            "snapshot",
            &frame(&serde_json::to_vec(snap).expect("snapshots serialize")),
        )?;
        let mut wal =
            frame(&serde_json::to_vec(&Record::Hard { term, vote }).expect("records serialize"));
        for e in entries.iter().filter(|e| e.index > snap.index) {
            wal.extend(frame(
                &serde_json::to_vec(&Record::Entry { entry: e.clone() })
                    .expect("records serialize"),
            ));
        }
        replace_file(&self.dir, "wal", &wal)?;
        let path = self.dir.join("wal");
        self.wal = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(())
    }
}

fn apply_record(d: &mut Durable, r: Record) -> Result<(), String> {
    match r {
        Record::Hard { term, vote } => {
            d.term = term;
            d.vote = vote;
        }
        Record::Truncate { from } => {
            if from > d.log.snap_index && from <= d.log.last_index() {
                d.log.truncate_from(from);
            }
        }
        Record::Entry { entry } => {
            if entry.index <= d.log.snap_index {
                return Ok(());
            }
            if entry.index > d.log.last_index() + 1 {
                return Err(format!(
                    "entry {} follows entry {}: a gap",
                    entry.index,
                    d.log.last_index()
                ));
            }
            if entry.index <= d.log.last_index() {
                d.log.truncate_from(entry.index);
            }
            d.log.push(entry);
        }
    }
    Ok(())
}
