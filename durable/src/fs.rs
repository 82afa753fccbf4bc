//! The FUSE filesystem over `Model`: metadata straight from the backing
//! directory, file data through the model (so unsynced writes stay in
//! faultline's memory), fsync and fsyncdir into the model. Inodes are
//! numbered by path; entries and attributes are never cached by the
//! kernel (zero TTL), so what a restarted node sees is the backing
//! directory after the crash.

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{Model, GRAVEYARD};

const TTL: Duration = Duration::ZERO;

/// Inode numbers by path (relative to the backing directory; "" is the root).
#[derive(Default)]
struct Inodes {
    paths: HashMap<u64, PathBuf>,
    numbers: HashMap<PathBuf, u64>,
    next: u64,
}

impl Inodes {
    fn number(&mut self, p: &Path) -> u64 {
        if let Some(&n) = self.numbers.get(p) {
            return n;
        }
        self.next += 1;
        let n = if p.as_os_str().is_empty() {
            1
        } else {
            self.next + 1
        };
        self.paths.insert(n, p.to_path_buf());
        self.numbers.insert(p.to_path_buf(), n);
        n
    }

    /// Everything at or under `from` now lives under `to`.
    fn moved(&mut self, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, u64)> = self
            .numbers
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        for (p, n) in moved {
            self.numbers.remove(&p);
            let new = crate::model::rebase(&p, from, to);
            self.paths.insert(n, new.clone());
            self.numbers.insert(new, n);
        }
    }
}

/// The state the filesystem and its owner share.
pub struct Shared {
    pub model: Model,
    inodes: Inodes,
    /// Open file handles per inode: an inode unlinked or replaced while
    /// open keeps its data (in its grave) until the last close, as POSIX
    /// has it; without this a write to it answered ENOENT.
    open: HashMap<u64, u32>,
}

pub struct LazyFs {
    pub shared: Arc<Mutex<Shared>>,
}

fn errno(e: io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

impl LazyFs {
    pub fn new(model: Model) -> LazyFs {
        let mut inodes = Inodes::default();
        inodes.number(Path::new(""));
        LazyFs {
            shared: Arc::new(Mutex::new(Shared {
                model,
                inodes,
                open: HashMap::new(),
            })),
        }
    }
}

impl Shared {
    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.inodes
            .paths
            .get(&u64::from(ino))
            .cloned()
            .ok_or(Errno::ENOENT)
    }

    /// `path` left its name for `grave`: an open inode follows it there
    /// (and its grave is kept until the last close); one nobody has open
    /// is forgotten.
    fn entombed(&mut self, path: &Path, grave: &Path) {
        let Some(&n) = self.inodes.numbers.get(path) else {
            return;
        };
        if self.open.get(&n).is_some_and(|&c| c > 0) {
            self.inodes.moved(path, grave);
            self.model.pin(grave);
        } else {
            self.inodes.numbers.remove(path);
            self.inodes.paths.remove(&n);
        }
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        let p = self.path(parent)?.join(name);
        if p == Path::new(GRAVEYARD) {
            return Err(Errno::ENOENT);
        }
        Ok(p)
    }

    fn attr(&mut self, rel: &Path) -> Result<FileAttr, Errno> {
        let m = self.model.real(rel).symlink_metadata().map_err(errno)?;
        let kind = if m.is_dir() {
            FileType::Directory
        } else {
            FileType::RegularFile
        };
        let size = if m.is_file() {
            self.model.size(rel).map_err(errno)?
        } else {
            m.len()
        };
        let time = |s: i64| UNIX_EPOCH + Duration::from_secs(s.max(0) as u64);
        Ok(FileAttr {
            ino: INodeNo(self.inodes.number(rel)),
            size,
            blocks: size.div_ceil(512),
            atime: time(m.atime()),
            mtime: time(m.mtime()),
            ctime: time(m.ctime()),
            crtime: time(m.ctime()),
            kind,
            perm: (m.permissions().mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: 0,
            flags: 0,
            blksize: 4096,
        })
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _r: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match s.child(parent, name).and_then(|p| s.attr(&p)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _r: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match s.path(ino).and_then(|p| s.attr(&p)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _r: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let done = (|| {
            let p = s.path(ino)?;
            if let Some(m) = mode {
                std::fs::set_permissions(s.model.real(&p), std::fs::Permissions::from_mode(m))
                    .map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(s.model.real(&p), uid, gid).map_err(errno)?;
            }
            if let Some(size) = size {
                s.model.truncate(&p, size).map_err(errno)?;
            }
            s.attr(&p)
        })();
        match done {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        r: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let done = (|| {
            let p = s.child(parent, name)?;
            std::fs::create_dir(s.model.real(&p)).map_err(errno)?;
            let _ =
                std::fs::set_permissions(s.model.real(&p), std::fs::Permissions::from_mode(mode));
            own(&s.model.real(&p), r);
            s.model.created(&p);
            s.attr(&p)
        })();
        match done {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _r: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, reply)
    }

    fn rmdir(&self, _r: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, reply)
    }

    fn rename(
        &self,
        _r: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let done = (|| {
            let (from, to) = (s.child(parent, name)?, s.child(newparent, newname)?);
            if let Some(grave) = s.model.rename(&from, &to).map_err(errno)? {
                s.entombed(&to, &grave);
            }
            s.inodes.moved(&from, &to);
            Ok(())
        })();
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _r: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        *s.open.entry(u64::from(ino)).or_insert(0) += 1;
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn release(
        &self,
        _r: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let n = u64::from(ino);
        let left = s.open.get_mut(&n).map(|c| {
            *c = c.saturating_sub(1);
            *c
        });
        if left == Some(0) {
            s.open.remove(&n);
            // The last close of an unlinked file: its grave may go.
            if let Some(p) = s.inodes.paths.get(&n).cloned() {
                if p.starts_with(GRAVEYARD) {
                    s.inodes.paths.remove(&n);
                    s.inodes.numbers.remove(&p);
                    if let Err(e) = s.model.unpin(&p) {
                        return reply.error(errno(e));
                    }
                }
            }
        }
        reply.ok();
    }

    fn read(
        &self,
        _r: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match s
            .path(ino)
            .and_then(|p| s.model.read(&p, offset, size as usize).map_err(errno))
        {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _r: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match s
            .path(ino)
            .and_then(|p| s.model.write(&p, offset, data).map_err(errno))
        {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _r: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _r: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match s
            .path(ino)
            .and_then(|p| s.model.sync_file(&p).map_err(errno))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _r: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(dir) = s.path(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let entries = match std::fs::read_dir(s.model.real(&dir)) {
            Ok(rd) => rd,
            Err(e) => return reply.error(errno(e)),
        };
        let mut all: Vec<(u64, FileType, std::ffi::OsString)> = vec![
            (u64::from(ino), FileType::Directory, ".".into()),
            (1, FileType::Directory, "..".into()),
        ];
        for e in entries.flatten() {
            let name = e.file_name();
            let rel = dir.join(&name);
            if rel == Path::new(GRAVEYARD) {
                continue;
            }
            let kind = if e.file_type().is_ok_and(|t| t.is_dir()) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            all.push((s.inodes.number(&rel), kind, name));
        }
        for (i, (n, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(n), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _r: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match s.path(ino).and_then(|_| s.model.sync_dir().map_err(errno)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// The disk beneath's figures: a server sizes its storage from them
    /// (JetStream refused every stream on a layer that said 0 bytes free).
    fn statfs(&self, _r: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match statvfs(&s.model.real(Path::new(""))) {
            Ok(v) => reply.statfs(
                v.f_blocks,
                v.f_bfree,
                v.f_bavail,
                v.f_files,
                v.f_ffree,
                v.f_bsize as u32,
                v.f_namemax as u32,
                v.f_frsize as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        r: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let done = (|| {
            let p = s.child(parent, name)?;
            let real = s.model.real(&p);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&real)
                .map_err(errno)?;
            let _ = std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode & 0o7777));
            own(&real, r);
            s.model.created(&p);
            let a = s.attr(&p)?;
            *s.open.entry(u64::from(a.ino)).or_insert(0) += 1;
            Ok(a)
        })();
        match done {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }
}

/// Gives a new file or directory to whoever made it, as a real filesystem
/// does: a server running as its own user owns its files. (Only a root
/// daemon can; otherwise every caller is the daemon's user already.)
fn own(real: &Path, r: &Request) {
    let _ = std::os::unix::fs::lchown(real, Some(r.uid()), Some(r.gid()));
}

/// statvfs(3) of a real path.
fn statvfs(path: &Path) -> Result<libc::statvfs, Errno> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `v` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut v) } != 0 {
        return Err(errno(io::Error::last_os_error()));
    }
    Ok(v)
}

impl LazyFs {
    fn remove(&self, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let done = (|| {
            let p = s.child(parent, name)?;
            let real = s.model.real(&p);
            if real.is_dir() && std::fs::read_dir(&real).map_err(errno)?.next().is_some() {
                return Err(Errno::ENOTEMPTY);
            }
            let grave = s.model.remove(&p).map_err(errno)?;
            s.entombed(&p, &grave);
            Ok(())
        })();
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
