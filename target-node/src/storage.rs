//! Durable state in the node's data directory.
//!
//! `wal`: an append-only log of records (hard state, entry, truncate), each
//! framed as `[len: u32 LE][crc32c: u32 LE][JSON payload]`. `wal.synced`:
//! how many bytes of the WAL have been fsynced (see `Watermark`). Recovery
//! replays the WAL. Past the synced length nothing was promised to anyone,
//! so the first bad byte there ends the log (a torn tail: what a crash in
//! the middle of unsynced writes leaves, holes included). Before it, a bad
//! record or a file cut short is corruption (a disk that rotted or lost
//! synced data), and the node refuses to start rather than serve wrong
//! data or forget a vote or an entry it acknowledged. A checksum alone
//! cannot tell the two apart: a bit flip in the last synced record, or a
//! file truncated on a record boundary, looks exactly like a crash.
//! `snapshot`: one framed record, replaced atomically (write a temporary
//! file, fsync, rename, fsync the directory); taking a snapshot also
//! rewrites the WAL without the compacted prefix.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
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

/// The synced length of the WAL, in a file of its own: written and
/// fsynced after the WAL's fsync, before anything acts on what was synced.
/// Two 24-byte slots `[seq: u64][len: u64][crc32c: u32][0: u32]`, written
/// alternately, so a crash tearing one slot leaves the other, an older and
/// smaller but still true lower bound. A slot that fails its checksum is
/// ignored; with none valid the bound is 0 (a disk fault damages one file,
/// and with this one damaged the WAL is intact), and `open` rewrites it.
struct Watermark {
    file: File,
    path: PathBuf,
    seq: u64,
    len: u64,
}

const SLOT_BYTES: usize = 24;

impl Watermark {
    fn open(dir: &Path) -> Result<Watermark, StorageError> {
        let path = dir.join("wal.synced");
        let created = !path.exists();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        if created {
            sync_dir(dir)?;
        }
        let mut bytes = Vec::new();
        (&file).read_to_end(&mut bytes).map_err(io(&path))?;
        let (seq, len) = bytes
            .chunks(SLOT_BYTES)
            .filter_map(Self::slot)
            .max()
            .unwrap_or((0, 0));
        Ok(Watermark {
            file,
            path,
            seq,
            len,
        })
    }

    fn slot(b: &[u8]) -> Option<(u64, u64)> {
        let b: &[u8; SLOT_BYTES] = b.try_into().ok()?;
        let crc = u32::from_le_bytes(b[16..20].try_into().expect("4 bytes"));
        (crc32c::crc32c(&b[..16]) == crc).then(|| {
            (
                u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
                u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            )
        })
    }

    /// Durably records that the first `len` bytes of the WAL are synced.
    fn set(&mut self, len: u64) -> Result<(), StorageError> {
        let seq = self.seq + 1;
        let mut slot = [0u8; SLOT_BYTES];
        slot[0..8].copy_from_slice(&seq.to_le_bytes());
        slot[8..16].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c(&slot[..16]);
        slot[16..20].copy_from_slice(&crc.to_le_bytes());
        let at = (seq % 2) * SLOT_BYTES as u64;
        self.file
            .write_all_at(&slot, at)
            .and_then(|_| self.file.sync_data())
            .map_err(io(&self.path))?;
        (self.seq, self.len) = (seq, len);
        Ok(())
    }
}

pub struct Storage {
    dir: PathBuf,
    wal: File,
    /// Bytes in the WAL, synced or not.
    wal_len: u64,
    synced: Watermark,
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
    /// The file ends inside this record.
    Incomplete,
    Bad(String),
}

fn next_frame(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < 8 {
        return Parsed::Incomplete;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD_BYTES {
        return Parsed::Bad(format!("record length {len} is impossible"));
    }
    let end = 8 + len as usize;
    if buf.len() < end {
        return Parsed::Incomplete;
    }
    let payload = &buf[8..end];
    if crc32c::crc32c(payload) != crc {
        return Parsed::Bad("checksum mismatch".into());
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
        if let Some(snap) = load_snapshot(&dir.join("snapshot"))? {
            durable.log = Log {
                snap_index: snap.index,
                snap_term: snap.term,
                entries: Vec::new(),
            };
            durable.snapshot = Some(snap);
        }
        let mut synced = Watermark::open(dir)?;
        let wal_path = dir.join("wal");
        let created = !wal_path.exists();
        let (wal_len, torn) = replay_wal(&wal_path, synced.len, &mut durable)?;
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
            wal.set_len(wal_len).map_err(io(&wal_path))?;
        }
        // What recovery kept is the log from now on: synced, and the
        // watermark says so (it may have been behind, or unreadable).
        wal.sync_all().map_err(io(&wal_path))?;
        synced.set(wal_len)?;
        Ok((
            Storage {
                dir: dir.to_path_buf(),
                wal,
                wal_len,
                synced,
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
        self.wal_len += buf.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// One fsync for everything written since the last: the batching that
    /// makes durable writes affordable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if self.dirty && !self.skip_fsync {
            let path = self.dir.join("wal");
            self.wal.sync_data().map_err(io(&path))?;
            self.synced.set(self.wal_len)?;
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
        // Whichever WAL a crash leaves, old or new, holds at least this
        // many good bytes.
        self.synced.set(self.synced.len.min(wal.len() as u64))?;
        replace_file(&self.dir, "wal", &wal)?;
        self.wal_len = wal.len() as u64;
        self.synced.set(self.wal_len)?;
        let path = self.dir.join("wal");
        self.wal = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(())
    }
}

/// The snapshot, if there is one; it is only ever renamed into place
/// whole, so any damage is corruption.
fn load_snapshot(path: &Path) -> Result<Option<Snapshot>, StorageError> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(io(path))?;
    let corrupt = |offset, reason| StorageError::Corrupt {
        path: path.display().to_string(),
        offset,
        reason,
    };
    match next_frame(&bytes) {
        Parsed::Record(p, end) if end == bytes.len() => serde_json::from_slice(p)
            .map(Some)
            .map_err(|e| corrupt(8, format!("snapshot does not decode: {e}"))),
        _ => Err(corrupt(0, "snapshot frame is damaged".into())),
    }
}

/// Replays the WAL into `d`; returns the length of its good prefix and
/// how many bytes of torn tail follow it. `synced` bytes were promised:
/// any damage within them is corruption.
fn replay_wal(path: &Path, synced: u64, d: &mut Durable) -> Result<(u64, u64), StorageError> {
    let mut bytes = Vec::new();
    if path.exists() {
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io(path))?;
    }
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.display().to_string(),
        offset: offset as u64,
        reason,
    };
    if (bytes.len() as u64) < synced {
        return Err(corrupt(
            bytes.len(),
            format!("the file ends here, but {synced} bytes of it were synced"),
        ));
    }
    let mut offset = 0usize;
    while offset < bytes.len() {
        let problem = match next_frame(&bytes[offset..]) {
            Parsed::Record(payload, used) => match serde_json::from_slice(payload) {
                Ok(rec) => {
                    apply_record(d, rec).map_err(|r| corrupt(offset, r))?;
                    offset += used;
                    continue;
                }
                Err(e) => format!("record does not decode: {e}"),
            },
            Parsed::Incomplete => "the last record is incomplete".to_string(),
            Parsed::Bad(reason) => reason,
        };
        if (offset as u64) < synced {
            return Err(corrupt(
                offset,
                format!("{problem}, within the {synced} bytes that were synced"),
            ));
        }
        break;
    }
    Ok((offset as u64, (bytes.len() - offset) as u64))
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
