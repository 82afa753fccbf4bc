//! What a server run as its own user (`user =` in a system file) can
//! execute and find. It inherits faultline's environment, so root's PATH
//! would send it to directories it cannot enter (a pyenv shim under /root:
//! exit 126). Its PATH is faultline's without the directories that user
//! cannot search, and each binary is resolved on that PATH and checked for
//! that user's execute permission before anything starts.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The user a system's processes run as, with the groups that decide its
/// permissions.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// How many path components a permission walk follows (a bound, not a
/// limit anyone meets).
const MAX_COMPONENTS: usize = 64;

impl Identity {
    /// The identity of `uid` running with primary group `gid`.
    pub fn of(uid: u32, gid: u32) -> Identity {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten();
        let name = user
            .as_ref()
            .map(|u| u.name.clone())
            .unwrap_or_else(|| uid.to_string());
        let mut groups = vec![gid];
        if let Ok(cname) = std::ffi::CString::new(name.clone()) {
            let list = nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid));
            groups.extend(list.into_iter().flatten().map(|g| g.as_raw()));
        }
        Identity {
            name,
            uid,
            gid,
            groups,
        }
    }

    /// Whether this user holds `bit` (1 execute/search, 4 read) on `meta`.
    fn may(&self, meta: &std::fs::Metadata, bit: u32) -> bool {
        let mode = meta.mode();
        if self.uid == 0 {
            // Root searches any directory and executes a file any x bit allows.
            return meta.is_dir() || mode & 0o111 != 0;
        }
        let shift = if meta.uid() == self.uid {
            6
        } else if self.groups.contains(&meta.gid()) {
            3
        } else {
            0
        };
        mode >> shift & bit != 0
    }

    /// Why this user cannot reach `dir` (search every component), if not.
    pub fn cannot_search(&self, dir: &Path) -> Option<String> {
        let mut at = PathBuf::from("/");
        for c in dir.components().skip(1).take(MAX_COMPONENTS) {
            at.push(c);
            let meta = match std::fs::metadata(&at) {
                Ok(m) => m,
                Err(e) => return Some(format!("{}: {e}", at.display())),
            };
            if meta.is_dir() && !self.may(&meta, 1) {
                return Some(format!("user {} cannot enter {}", self.name, at.display()));
            }
        }
        None
    }

    /// Why this user cannot execute `file`, if not.
    pub fn cannot_execute(&self, file: &Path) -> Option<String> {
        let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        if let Some(why) = abs.parent().and_then(|d| self.cannot_search(d)) {
            return Some(why);
        }
        match std::fs::metadata(&abs) {
            Ok(m) if !m.is_file() => Some(format!("{} is not a file", abs.display())),
            Ok(m) if !self.may(&m, 1) => Some(format!(
                "user {} may not execute {} (mode {:o}, owner {}, group {})",
                self.name,
                abs.display(),
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            )),
            Ok(_) => None,
            Err(e) => Some(format!("{}: {e}", abs.display())),
        }
    }

    /// faultline's PATH without the directories this user cannot search.
    pub fn path(&self) -> String {
        self.path_from(&std::env::var_os("PATH").unwrap_or_default())
    }

    /// `path` without the directories this user cannot search.
    pub fn path_from(&self, path: &std::ffi::OsStr) -> String {
        let dirs: Vec<PathBuf> = std::env::split_paths(path)
            .filter(|d| d.is_absolute() && self.cannot_search(d).is_none())
            .collect();
        std::env::join_paths(dirs)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `name` as this user's exec would find it (on `path()`), or why it
    /// cannot run it.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, String> {
        let found = if name.contains('/') {
            Some(PathBuf::from(name))
        } else {
            let path = self.path();
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file() && self.cannot_execute(p).is_none())
        };
        let Some(found) = found else {
            return Err(format!(
                "{name:?} is not on the PATH user {} gets ({})",
                self.name,
                self.path()
            ));
        };
        match self.cannot_execute(&found) {
            Some(why) => Err(why),
            None => Ok(found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn nobody() -> Option<Identity> {
        let u = nix::unistd::User::from_name("nobody").ok().flatten()?;
        nix::unistd::Uid::effective()
            .is_root()
            .then(|| Identity::of(u.uid.as_raw(), u.gid.as_raw()))
    }

    #[test]
    fn a_binary_under_a_private_directory_is_refused_naming_the_user() {
        let Some(who) = nobody() else { return };
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let shim = home.path().join("python3");
        std::fs::write(&shim, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let why = who.resolve(shim.to_str().unwrap()).unwrap_err();
        assert!(why.contains("user nobody cannot enter"), "{why}");
        // Opened up, the directory is fine but the file's mode is not.
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o700)).unwrap();
        let why = who.resolve(shim.to_str().unwrap()).unwrap_err();
        assert!(why.contains("user nobody may not execute"), "{why}");
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(who.resolve(shim.to_str().unwrap()).unwrap(), shim);
    }

    #[test]
    fn a_users_path_leaves_out_what_it_cannot_search() {
        let Some(who) = nobody() else { return };
        let private = tempfile::tempdir().unwrap();
        std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = format!("{}:/usr/bin:/bin", private.path().display());
        assert_eq!(who.path_from(path.as_ref()), "/usr/bin:/bin");
        assert!(who.resolve("sh").is_ok());
    }
}
