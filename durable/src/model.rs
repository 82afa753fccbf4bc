//! What is durable and what is not, without FUSE: the backing directory
//! holds what a disk would keep through a power loss; writes not yet
//! fsynced live here, as a log per file; namespace changes (create, mkdir,
//! unlink, rmdir, rename) reach the backing directory at once but stay
//! undoable until the next fsync of anything, as on ext4 with
//! data=ordered, where an fsync commits the journal and with it every
//! metadata change made before (POSIX itself promises less: only a
//! directory's own fsync). `crash` drops (or keeps a part of) what was
//! never synced.

use rand::Rng;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where replaced and removed files wait until their removal is durable.
pub const GRAVEYARD: &str = ".faultline-graveyard";

/// One write not yet made durable.
#[derive(Debug, Clone, PartialEq)]
enum Write {
    Data { offset: u64, bytes: Vec<u8> },
    Truncate { size: u64 },
}

impl Write {
    fn len(&self) -> usize {
        match self {
            Write::Data { bytes, .. } => bytes.len(),
            Write::Truncate { .. } => 0,
        }
    }
}

/// A namespace change not yet made durable, with what undoes it.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// `path` was created (a file or a directory).
    Created { path: PathBuf },
    /// `path` was removed; its contents wait at `grave`.
    Removed { path: PathBuf, grave: PathBuf },
    /// `from` became `to`; what `to` replaced waits at `displaced`.
    Renamed {
        from: PathBuf,
        to: PathBuf,
        displaced: Option<PathBuf>,
    },
}

/// How much of what was never synced a crash keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Every unsynced write is lost (a power cut before any write-back).
    All,
    /// A random subset of each file's unsynced writes reached the disk.
    Subset,
    /// The unsynced writes reached the disk in order up to a random point;
    /// the write at that point is torn (a prefix of it persists).
    TornPrefix,
}

/// What a crash did, file by file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrashReport {
    /// (file, unsynced bytes lost) for every file that lost some.
    pub lost: Vec<(PathBuf, u64)>,
    /// Files whose last kept write was torn.
    pub torn: Vec<PathBuf>,
    /// Namespace changes undone (not made durable by a directory fsync).
    pub undone: Vec<String>,
    /// Changes that could not be undone, and why.
    pub not_undone: Vec<String>,
}

/// The unsynced state over one backing directory. Paths are relative to it.
pub struct Model {
    backing: PathBuf,
    /// Unsynced writes per file, oldest first.
    logs: BTreeMap<PathBuf, Vec<Write>>,
    changes: Vec<Change>,
    log_bytes: usize,
    /// Past this many unsynced bytes, the oldest file is written back
    /// (as the kernel's flusher would): memory stays bounded.
    max_log_bytes: usize,
    graves: u64,
    /// Graves of files a process still holds open: a committed removal
    /// of one waits for its last close, as an unlinked inode lives on.
    pinned: std::collections::HashSet<PathBuf>,
    /// Pinned graves whose removal was committed.
    deferred: std::collections::HashSet<PathBuf>,
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

impl Model {
    pub fn new(backing: &Path, max_log_bytes: usize) -> io::Result<Model> {
        fs::create_dir_all(backing.join(GRAVEYARD))?;
        Ok(Model {
            backing: backing.to_path_buf(),
            logs: BTreeMap::new(),
            changes: Vec::new(),
            log_bytes: 0,
            max_log_bytes,
            graves: 0,
            pinned: Default::default(),
            deferred: Default::default(),
        })
    }

    pub fn real(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    /// Bytes held unsynced now.
    pub fn unsynced_bytes(&self) -> usize {
        self.log_bytes
    }

    /// The file's size as the writer sees it.
    pub fn size(&self, rel: &Path) -> io::Result<u64> {
        let mut size = fs::metadata(self.real(rel))?.len();
        for w in self.logs.get(rel).into_iter().flatten() {
            size = match w {
                Write::Data { offset, bytes } => size.max(offset + bytes.len() as u64),
                Write::Truncate { size } => *size,
            };
        }
        Ok(size)
    }

    /// Reads as the writer sees the file: the durable bytes with every
    /// unsynced write laid over them in order.
    pub fn read(&self, rel: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let size = self.size(rel)?;
        let end = (offset + len as u64).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        let f = File::open(self.real(rel))?;
        let got = f.read_at(&mut buf, offset).unwrap_or(0);
        buf[got..].fill(0);
        for w in self.logs.get(rel).into_iter().flatten() {
            match w {
                Write::Data { offset: o, bytes } => {
                    let (lo, hi) = ((*o).max(offset), (o + bytes.len() as u64).min(end));
                    if lo < hi {
                        buf[(lo - offset) as usize..(hi - offset) as usize]
                            .copy_from_slice(&bytes[(lo - o) as usize..(hi - o) as usize]);
                    }
                }
                // What a truncate cut off reads as zeros if written past.
                Write::Truncate { size } if *size < end => {
                    buf[((*size).max(offset) - offset) as usize..].fill(0);
                }
                Write::Truncate { .. } => {}
            }
        }
        Ok(buf)
    }

    fn log(&mut self, rel: &Path, w: Write) -> io::Result<()> {
        self.log_bytes += w.len();
        self.logs.entry(rel.to_path_buf()).or_default().push(w);
        while self.log_bytes > self.max_log_bytes {
            let oldest = self.logs.keys().next().cloned();
            match oldest {
                Some(p) => self.write_back(&p)?,
                None => break,
            }
        }
        Ok(())
    }

    pub fn write(&mut self, rel: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.log(
            rel,
            Write::Data {
                offset,
                bytes: bytes.to_vec(),
            },
        )
    }

    pub fn truncate(&mut self, rel: &Path, size: u64) -> io::Result<()> {
        self.log(rel, Write::Truncate { size })
    }

    /// Applies a file's unsynced writes to the backing file (no fsync of
    /// its own: the backing directory stands for the disk).
    fn write_back(&mut self, rel: &Path) -> io::Result<()> {
        let Some(log) = self.logs.remove(rel) else {
            return Ok(());
        };
        self.log_bytes -= log.iter().map(Write::len).sum::<usize>();
        apply(&self.real(rel), &log)
    }

    /// fsync / fdatasync of a file: its data, and (a journal commit) every
    /// namespace change so far.
    pub fn sync_file(&mut self, rel: &Path) -> io::Result<()> {
        self.write_back(rel)?;
        self.commit_changes()
    }

    /// sync(2): every file's data and every namespace change is durable
    /// (what a node's init steps wrote, before the first fault).
    pub fn sync_all(&mut self) -> io::Result<()> {
        let files: Vec<PathBuf> = self.logs.keys().cloned().collect();
        for f in files {
            match self.write_back(&f) {
                // Gone with its directory (a temporary tree removed): it
                // has nothing left to make durable.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        self.commit_changes()
    }

    /// fsync of a directory: every namespace change so far is durable.
    pub fn sync_dir(&mut self) -> io::Result<()> {
        self.commit_changes()
    }

    /// The journal commits: namespace changes can no longer be undone, and
    /// what they removed or replaced is gone for good.
    fn commit_changes(&mut self) -> io::Result<()> {
        for c in std::mem::take(&mut self.changes) {
            let grave = match c {
                Change::Removed { grave, .. } => Some(grave),
                Change::Renamed { displaced, .. } => displaced,
                Change::Created { .. } => None,
            };
            match grave {
                Some(g) if self.pinned.contains(&g) => {
                    self.deferred.insert(g);
                }
                Some(g) => self.bury(&g)?,
                None => {}
            }
        }
        Ok(())
    }

    /// The files with unsynced writes at or under `path`.
    fn logs_under(&self, path: &Path) -> Vec<PathBuf> {
        self.logs
            .keys()
            .filter(|k| k.starts_with(path))
            .cloned()
            .collect()
    }

    /// A grave is gone for good: its file, and what was never synced of it.
    fn bury(&mut self, grave: &Path) -> io::Result<()> {
        for k in self.logs_under(grave) {
            let log = self.logs.remove(&k).expect("listed");
            self.log_bytes -= log.iter().map(Write::len).sum::<usize>();
        }
        remove_any(&self.real(grave))
    }

    /// A file in `grave` is still open: its grave stays until `unpin`.
    pub fn pin(&mut self, grave: &Path) {
        self.pinned.insert(grave.to_path_buf());
    }

    /// Its last close: a grave whose removal was committed goes now.
    pub fn unpin(&mut self, grave: &Path) -> io::Result<()> {
        self.pinned.remove(grave);
        if self.deferred.remove(grave) {
            self.bury(grave)?;
        }
        Ok(())
    }

    fn grave(&mut self) -> PathBuf {
        self.graves += 1;
        Path::new(GRAVEYARD).join(self.graves.to_string())
    }

    pub fn created(&mut self, path: &Path) {
        self.changes.push(Change::Created { path: path.into() });
    }

    /// Removes `path` (a file or an empty directory), keeping it for undo;
    /// returns where it now lies (an open file is written there).
    pub fn remove(&mut self, path: &Path) -> io::Result<PathBuf> {
        let grave = self.grave();
        fs::rename(self.real(path), self.real(&grave))?;
        self.move_log(path, &grave);
        self.changes.push(Change::Removed {
            path: path.into(),
            grave: grave.clone(),
        });
        Ok(grave)
    }

    /// Returns where the file it replaced now lies, if it replaced one.
    pub fn rename(&mut self, from: &Path, to: &Path) -> io::Result<Option<PathBuf>> {
        let displaced = if self.real(to).symlink_metadata().is_ok() {
            let g = self.grave();
            fs::rename(self.real(to), self.real(&g))?;
            self.move_log(to, &g);
            Some(g)
        } else {
            None
        };
        fs::rename(self.real(from), self.real(to))?;
        self.move_log(from, to);
        self.changes.push(Change::Renamed {
            from: from.into(),
            to: to.into(),
            displaced: displaced.clone(),
        });
        Ok(displaced)
    }

    /// A file's unsynced writes follow it to its new name (and the logs of
    /// anything under a renamed directory follow it too).
    fn move_log(&mut self, from: &Path, to: &Path) {
        for k in self.logs_under(from) {
            let log = self.logs.remove(&k).expect("listed");
            self.logs.insert(rebase(&k, from, to), log);
        }
    }

    /// A power loss: unsynced writes are dropped (or partly kept, as
    /// `loss` says), then unsynced namespace changes are undone, newest
    /// first. The backing directory is then what a restarted node sees.
    pub fn crash(&mut self, loss: Loss, rng: &mut impl Rng) -> io::Result<CrashReport> {
        let mut report = CrashReport::default();
        // The node is dead: nothing is open, and removals it committed
        // while a file was open are final.
        self.pinned.clear();
        for g in std::mem::take(&mut self.deferred) {
            self.bury(&g)?;
        }
        for (rel, log) in std::mem::take(&mut self.logs) {
            let (kept, torn) = surviving(&log, loss, rng);
            let lost = log.iter().map(Write::len).sum::<usize>()
                - kept.iter().map(Write::len).sum::<usize>();
            if self.real(&rel).exists() {
                apply(&self.real(&rel), &kept)?;
            }
            if lost > 0 {
                report.lost.push((rel.clone(), lost as u64));
            }
            if torn {
                report.torn.push(rel);
            }
        }
        self.log_bytes = 0;
        for c in std::mem::take(&mut self.changes).into_iter().rev() {
            let what = format!("{c:?}");
            match self.undo(c) {
                Ok(done) => report.undone.push(done),
                // A later change, made durable by its own directory's
                // fsync, may have moved what this one would restore (a
                // renamed parent): what the disk kept stays as it is.
                Err(e) => report.not_undone.push(format!("{what}: {e}")),
            }
        }
        Ok(report)
    }

    fn undo(&mut self, c: Change) -> io::Result<String> {
        Ok(match c {
            Change::Created { path, .. } => {
                remove_any(&self.real(&path))?;
                format!("create of {}", path.display())
            }
            Change::Removed { path, grave, .. } => {
                fs::rename(self.real(&grave), self.real(&path))?;
                format!("removal of {}", path.display())
            }
            Change::Renamed {
                from,
                to,
                displaced,
                ..
            } => {
                fs::rename(self.real(&to), self.real(&from))?;
                if let Some(g) = displaced {
                    fs::rename(self.real(&g), self.real(&to))?;
                }
                format!("rename of {} to {}", from.display(), to.display())
            }
        })
    }
}

/// The writes a crash keeps, and whether the last kept one was torn.
fn surviving(log: &[Write], loss: Loss, rng: &mut impl Rng) -> (Vec<Write>, bool) {
    match loss {
        Loss::All => (Vec::new(), false),
        Loss::Subset => (
            log.iter().filter(|_| rng.gen_bool(0.5)).cloned().collect(),
            false,
        ),
        Loss::TornPrefix => {
            let cut = rng.gen_range(0..=log.len());
            let mut kept = log[..cut].to_vec();
            let torn = match log.get(cut) {
                Some(Write::Data { offset, bytes }) if bytes.len() > 1 => {
                    let prefix = rng.gen_range(1..bytes.len());
                    kept.push(Write::Data {
                        offset: *offset,
                        bytes: bytes[..prefix].to_vec(),
                    });
                    true
                }
                _ => false,
            };
            (kept, torn)
        }
    }
}

fn apply(path: &Path, log: &[Write]) -> io::Result<()> {
    if log.is_empty() {
        return Ok(());
    }
    let f = open_rw(path)?;
    for w in log {
        match w {
            Write::Data { offset, bytes } => f.write_all_at(bytes, *offset)?,
            Write::Truncate { size } => f.set_len(*size)?,
        }
    }
    Ok(())
}

/// `path`, which is `from` or under it, moved to `to`. (Joining an empty
/// rest would add a trailing slash, which names a directory.)
pub fn rebase(path: &Path, from: &Path, to: &Path) -> PathBuf {
    match path.strip_prefix(from) {
        Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
        Ok(rest) => to.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

fn remove_any(p: &Path) -> io::Result<()> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn model() -> (tempfile::TempDir, Model) {
        let d = tempfile::tempdir().unwrap();
        let m = Model::new(d.path(), 1 << 20).unwrap();
        (d, m)
    }

    fn touch(m: &mut Model, name: &str) -> PathBuf {
        let p = PathBuf::from(name);
        File::create(m.real(&p)).unwrap();
        m.created(&p);
        p
    }

    #[test]
    fn synced_data_survives_a_crash_and_unsynced_data_does_not() {
        let (_d, mut m) = model();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let a = touch(&mut m, "a");
        m.sync_dir().unwrap();
        m.write(&a, 0, b"durable").unwrap();
        m.sync_file(&a).unwrap();
        m.write(&a, 7, b" and lost").unwrap();
        assert_eq!(m.read(&a, 0, 100).unwrap(), b"durable and lost");
        let r = m.crash(Loss::All, &mut rng).unwrap();
        assert_eq!(fs::read(m.real(&a)).unwrap(), b"durable");
        assert_eq!(r.lost, vec![(a, 9)]);
    }

    #[test]
    fn sync_all_makes_every_file_and_name_survive_a_crash() {
        let (_d, mut m) = model();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let conf = touch(&mut m, "server.conf");
        m.write(&conf, 0, b"port = 7000").unwrap();
        let other = touch(&mut m, "other");
        m.write(&other, 0, b"x").unwrap();
        m.sync_all().unwrap();
        m.write(&conf, 11, b"\nlost").unwrap();
        let r = m.crash(Loss::All, &mut rng).unwrap();
        assert_eq!(fs::read(m.real(&conf)).unwrap(), b"port = 7000");
        assert_eq!(fs::read(m.real(&other)).unwrap(), b"x");
        assert!(r.undone.is_empty(), "the creates were committed: {r:?}");
        assert_eq!(r.lost, vec![(conf, 5)]);
    }

    #[test]
    fn a_rename_with_no_fsync_after_it_is_undone() {
        let (_d, mut m) = model();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let old = touch(&mut m, "old");
        m.write(&old, 0, b"v1").unwrap();
        m.sync_file(&old).unwrap();
        m.sync_dir().unwrap();
        let tmp = touch(&mut m, "tmp");
        m.write(&tmp, 0, b"v2").unwrap();
        m.sync_file(&tmp).unwrap();
        m.rename(&tmp, &old).unwrap();
        assert_eq!(m.read(&old, 0, 10).unwrap(), b"v2");
        let r = m.crash(Loss::All, &mut rng).unwrap();
        assert_eq!(
            fs::read(m.real(&old)).unwrap(),
            b"v1",
            "the rename was undone"
        );
        let kept = fs::read(m.real(&tmp)).unwrap();
        assert_eq!(
            kept, b"v2",
            "the create, committed by the file's fsync, stays"
        );
        assert_eq!(r.undone.len(), 1);
        // With the directory synced, the rename stays.
        fs::remove_file(m.real(&tmp)).unwrap();
        let tmp = touch(&mut m, "tmp");
        m.write(&tmp, 0, b"v3").unwrap();
        m.sync_file(&tmp).unwrap();
        m.rename(&tmp, &old).unwrap();
        m.sync_dir().unwrap();
        m.crash(Loss::All, &mut rng).unwrap();
        assert_eq!(fs::read(m.real(&old)).unwrap(), b"v3");
    }

    #[test]
    fn a_torn_prefix_keeps_writes_in_order_and_a_prefix_of_the_last() {
        let (_d, mut m) = model();
        let a = touch(&mut m, "a");
        m.sync_dir().unwrap();
        for seed in 0..20 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            m.write(&a, 0, b"aaaa").unwrap();
            m.write(&a, 4, b"bbbb").unwrap();
            m.crash(Loss::TornPrefix, &mut rng).unwrap();
            let got = fs::read(m.real(&a)).unwrap();
            let want = b"aaaabbbb";
            assert!(
                want.starts_with(&got),
                "seed {seed}: {got:?} is an ordered prefix"
            );
            fs::write(m.real(&a), b"").unwrap();
        }
    }

    #[test]
    fn memory_is_bounded_by_writing_back() {
        let d = tempfile::tempdir().unwrap();
        let mut m = Model::new(d.path(), 1000).unwrap();
        let a = touch(&mut m, "a");
        for i in 0..100u64 {
            m.write(&a, i * 100, &[1u8; 100]).unwrap();
            assert!(m.unsynced_bytes() <= 1000);
        }
        assert_eq!(m.size(&a).unwrap(), 10_000);
        assert_eq!(m.read(&a, 9_950, 100).unwrap(), vec![1u8; 50]);
    }
}
