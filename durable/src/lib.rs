//! faultline's durability layer: a node's data directory served through a
//! FUSE filesystem of ours that keeps every write not yet fsynced in its
//! own memory, so a crash can lose what a power cut would (Jepsen reaches
//! this with LazyFS). `model` is what is and is not durable (testable
//! without FUSE); `fs` serves it; `Layer` mounts one over a backing folder,
//! crashes it, and always unmounts it. `damage` is the other durability
//! fault, which needs no layer: a file of a down node's data rots.

pub mod damage;
pub mod fs;
pub mod model;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use damage::{damage, damage_matching, glob, Damage, DiskFault};
pub use model::{CrashReport, Loss, GRAVEYARD};

/// The mount's name in /proc/mounts: `faultline-durable-<pid>`, so mounts
/// left by a harness that was killed can be found and removed.
pub const FS_NAME_PREFIX: &str = "faultline-durable-";

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(
        "cannot mount the durability layer on {mountpoint}: {cause} (FUSE needs /dev/fuse, and \
         root or fusermount3 from Debian's fuse3; crash faults are refused without it)"
    )]
    Mount {
        mountpoint: String,
        cause: std::io::Error,
    },
    #[error("the durability layer over {backing}: {cause}")]
    Io {
        backing: String,
        cause: std::io::Error,
    },
}

/// One mounted layer: `mountpoint` shows `backing` with unsynced writes
/// held in memory.
pub struct Layer {
    backing: PathBuf,
    mountpoint: PathBuf,
    max_unsynced_bytes: usize,
    shared: Arc<Mutex<fs::Shared>>,
    session: Option<fuser::BackgroundSession>,
}

fn mount(fs: fs::LazyFs, mountpoint: &Path) -> Result<fuser::BackgroundSession, LayerError> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("{FS_NAME_PREFIX}{}", std::process::id())),
        fuser::MountOption::DefaultPermissions,
    ];
    // Root's nodes and others' (a node may run as another user).
    config.acl = fuser::SessionACL::All;
    fuser::spawn_mount(fs, mountpoint, &config).map_err(|cause| LayerError::Mount {
        mountpoint: mountpoint.display().to_string(),
        cause,
    })
}

impl Layer {
    /// Mounts a layer over `backing` at `mountpoint` (both must exist),
    /// holding at most `max_unsynced_bytes` before writing the oldest back.
    pub fn mount(
        backing: &Path,
        mountpoint: &Path,
        max_unsynced_bytes: usize,
    ) -> Result<Layer, LayerError> {
        let io = |cause| LayerError::Io {
            backing: backing.display().to_string(),
            cause,
        };
        // FUSE mounts a directory over a regular file without complaint,
        // and the node would then find a directory where its file was.
        if !mountpoint.is_dir() {
            return Err(LayerError::Mount {
                mountpoint: mountpoint.display().to_string(),
                cause: std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "it is not an existing directory",
                ),
            });
        }
        let model = model::Model::new(backing, max_unsynced_bytes).map_err(io)?;
        let fs = fs::LazyFs::new(model);
        let shared = fs.shared.clone();
        let session = mount(fs, mountpoint)?;
        Ok(Layer {
            backing: backing.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            max_unsynced_bytes,
            shared,
            session: Some(session),
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Bytes written and not yet synced.
    pub fn unsynced_bytes(&self) -> usize {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .model
            .unsynced_bytes()
    }

    /// Makes everything written so far durable, as sync(2) would: what a
    /// node's init and setup steps wrote survives the first power loss.
    pub fn sync_all(&self) -> Result<(), LayerError> {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.model.sync_all().map_err(|cause| LayerError::Io {
            backing: self.backing.display().to_string(),
            cause,
        })
    }

    /// A power loss, with the node already killed: unmounts (so the kernel
    /// forgets every cached page and entry), drops what was never synced as
    /// `loss` says, and mounts the layer again over what remains.
    pub fn crash(
        &mut self,
        loss: Loss,
        rng: &mut impl rand::Rng,
    ) -> Result<CrashReport, LayerError> {
        self.unmount();
        let report = {
            let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            s.model.crash(loss, rng)
        }
        .map_err(|cause| LayerError::Io {
            backing: self.backing.display().to_string(),
            cause,
        })?;
        let fresh = Layer::mount(&self.backing, &self.mountpoint, self.max_unsynced_bytes)?;
        *self = fresh;
        Ok(report)
    }

    /// Unmounts (lazily: MNT_DETACH) without waiting for the serving
    /// thread. Real servers run in mount namespaces that copied every
    /// layer mounted when they started, so a crashed node's old mount can
    /// stay referenced by its peers' namespaces until they end; its thread
    /// ends then, and waiting for it here would hang the run.
    fn unmount(&mut self) {
        drop(self.session.take());
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Unmounts layers left by harnesses that are gone (their FUSE daemon died
/// with them, so the mount only answers "transport endpoint is not
/// connected"). Returns the mountpoints removed.
pub fn remove_stale_mounts() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut removed = Vec::new();
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(source), Some(target)) = (f.next(), f.next()) else {
            continue;
        };
        let Some(pid) = source
            .strip_prefix(FS_NAME_PREFIX)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = Path::new(&format!("/proc/{pid}")).exists() && pid != 0;
        if !alive {
            let target = PathBuf::from(target.replace("\\040", " "));
            detach(&target);
            removed.push(target);
        }
    }
    removed
}

/// Lazily unmounts `target` (MNT_DETACH never blocks).
fn detach(target: &Path) {
    if let Ok(c) = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()) {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Whether a layer can be mounted on this machine: mounts one over two
/// empty temporary directories and unmounts it (answered once a process;
/// a harness that leaves crash faults out of `all` says why).
pub fn probe() -> Result<(), String> {
    static ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let base = std::env::temp_dir()
                .join(format!("faultline-durable-probe-{}", std::process::id()));
            let (backing, mountpoint) = (base.join("backing"), base.join("mount"));
            let made = std::fs::create_dir_all(&backing)
                .and_then(|()| std::fs::create_dir_all(&mountpoint))
                .map_err(|e| format!("creating {}: {e}", base.display()));
            let mounted = made.and_then(|()| {
                Layer::mount(&backing, &mountpoint, 1 << 20)
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
            let _ = std::fs::remove_dir_all(&base);
            mounted
        })
        .clone()
}
