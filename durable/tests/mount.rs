//! The layer mounted for real: files written through it by ordinary
//! system calls, then a crash. Needs FUSE (root, or fusermount3): without
//! it the tests say so and pass, except in CI (`CI` set).

use faultline_durable::{Layer, Loss};
use rand::SeedableRng;
use std::io::Write;
use std::path::Path;

fn layer_or_skip(test: &str, backing: &Path, mnt: &Path) -> Option<Layer> {
    match Layer::mount(backing, mnt, 64 << 20) {
        Ok(l) => Some(l),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "{test}: {e}");
            eprintln!("SKIPPED {test}: {e}");
            None
        }
    }
}

fn dirs() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let (b, m) = (t.path().join("backing"), t.path().join("mnt"));
    std::fs::create_dir_all(&b).unwrap();
    std::fs::create_dir_all(&m).unwrap();
    (t, b, m)
}

fn fsync_dir(p: &Path) {
    std::fs::File::open(p).unwrap().sync_all().unwrap();
}

#[test]
fn fsynced_data_survives_a_crash_and_unsynced_data_is_lost() {
    let (_t, backing, mnt) = dirs();
    let Some(mut layer) = layer_or_skip("fsynced_data_survives", &backing, &mnt) else {
        return;
    };
    let mut f = std::fs::File::create(mnt.join("wal")).unwrap();
    f.write_all(b"committed;").unwrap();
    f.sync_data().unwrap();
    fsync_dir(&mnt);
    f.write_all(b"not synced").unwrap();
    drop(f);
    assert_eq!(
        std::fs::read(mnt.join("wal")).unwrap(),
        b"committed;not synced",
        "the writer sees its writes"
    );
    assert_eq!(
        std::fs::read(backing.join("wal")).unwrap(),
        b"committed;",
        "only synced bytes reached the disk"
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let report = layer.crash(Loss::All, &mut rng).unwrap();
    assert_eq!(std::fs::read(mnt.join("wal")).unwrap(), b"committed;");
    assert_eq!(report.lost.len(), 1);
    assert_eq!(report.lost[0].1, 10);
    drop(layer);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(mnt.to_str().unwrap()),
        "unmounted when dropped"
    );
}

#[test]
fn a_rename_with_no_fsync_after_it_may_be_undone() {
    let (_t, backing, mnt) = dirs();
    let Some(mut layer) = layer_or_skip("a_rename_without_a_directory_fsync", &backing, &mnt)
    else {
        return;
    };
    std::fs::write(mnt.join("state"), b"v1").unwrap();
    std::fs::File::open(mnt.join("state"))
        .unwrap()
        .sync_all()
        .unwrap();
    fsync_dir(&mnt);
    // The classic atomic replace, without the directory fsync.
    let mut tmp = std::fs::File::create(mnt.join("state.tmp")).unwrap();
    tmp.write_all(b"v2").unwrap();
    tmp.sync_all().unwrap();
    drop(tmp);
    std::fs::rename(mnt.join("state.tmp"), mnt.join("state")).unwrap();
    assert_eq!(std::fs::read(mnt.join("state")).unwrap(), b"v2");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let report = layer.crash(Loss::All, &mut rng).unwrap();
    assert_eq!(
        std::fs::read(mnt.join("state")).unwrap(),
        b"v1",
        "{report:?}"
    );
    // Its create was made durable by its own fsync (a journal commit).
    assert_eq!(std::fs::read(mnt.join("state.tmp")).unwrap(), b"v2");
    std::fs::remove_file(mnt.join("state.tmp")).unwrap();
    // With the directory fsynced, the replace is durable.
    std::fs::write(mnt.join("state.tmp"), b"v3").unwrap();
    std::fs::File::open(mnt.join("state.tmp"))
        .unwrap()
        .sync_all()
        .unwrap();
    std::fs::rename(mnt.join("state.tmp"), mnt.join("state")).unwrap();
    fsync_dir(&mnt);
    layer.crash(Loss::All, &mut rng).unwrap();
    assert_eq!(std::fs::read(mnt.join("state")).unwrap(), b"v3");
}

#[test]
fn a_torn_write_leaves_a_prefix() {
    let (_t, backing, mnt) = dirs();
    let Some(mut layer) = layer_or_skip("a_torn_write_leaves_a_prefix", &backing, &mnt) else {
        return;
    };
    std::fs::File::create(mnt.join("log"))
        .unwrap()
        .sync_all()
        .unwrap();
    fsync_dir(&mnt);
    let mut seen_torn = false;
    for seed in 0..10 {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(mnt.join("log"))
            .unwrap();
        f.write_all(&[b'x'; 64]).unwrap();
        drop(f);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let report = layer.crash(Loss::TornPrefix, &mut rng).unwrap();
        let got = std::fs::read(mnt.join("log")).unwrap();
        assert!(
            got.len() <= 64 && got.iter().all(|&b| b == b'x'),
            "seed {seed}: {} bytes",
            got.len()
        );
        seen_torn |= !report.torn.is_empty() && got.len() < 64 && !got.is_empty();
        std::fs::write(backing.join("log"), b"").unwrap();
    }
    assert!(seen_torn, "some seed tore the write");
}

/// Not a test on its own: with FAULTLINE_DURABLE_HELPER set, mounts a layer
/// there and waits to be killed (for the stale-mount test below).
#[test]
fn helper_mount_and_wait() {
    let Some(dir) = std::env::var_os("FAULTLINE_DURABLE_HELPER") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let _layer = Layer::mount(&dir.join("backing"), &dir.join("mnt"), 1 << 20).unwrap();
    std::fs::write(dir.join("mounted"), b"").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn a_mount_left_by_a_killed_owner_is_removed() {
    let (t, _backing, mnt) = dirs();
    if layer_or_skip(
        "a_mount_left_by_a_killed_owner_is_removed",
        &t.path().join("backing"),
        &mnt,
    )
    .is_none()
    {
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_mount_and_wait", "--nocapture"])
        .env("FAULTLINE_DURABLE_HELPER", t.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !t.path().join("mounted").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let target = mnt.to_str().unwrap().to_string();
    assert!(
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .contains(&target),
        "left mounted by the dead owner"
    );
    let removed = faultline_durable::remove_stale_mounts();
    assert!(removed.iter().any(|p| p == &mnt), "{removed:?}");
    assert!(
        !std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .contains(&target),
        "none remain"
    );
}

#[test]
fn a_data_dir_the_layer_cannot_mount_on_is_a_clear_error() {
    let (_t, backing, mnt) = dirs();
    // Only with FUSE at hand does the failure come from the mountpoint.
    let Some(layer) = layer_or_skip("a_data_dir_the_layer_cannot_mount_on", &backing, &mnt) else {
        return;
    };
    drop(layer);
    let file = mnt.join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let missing = mnt.join("missing");
    for bad in [&file, &missing] {
        match Layer::mount(&backing, bad, 1 << 20) {
            Ok(_) => panic!("mounted on {}", bad.display()),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("cannot mount the durability layer on")
                        && msg.contains(&bad.display().to_string()),
                    "{msg}"
                );
            }
        }
    }
    // A backing folder that cannot be used is named too.
    let e = Layer::mount(&file.join("sub"), &mnt, 1 << 20)
        .err()
        .unwrap();
    assert!(e.to_string().contains("not-a-directory/sub"), "{e}");
    assert_eq!(
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .matches(&mnt.display().to_string())
            .count(),
        0,
        "nothing left mounted"
    );
}

/// statvfs(3) of a path: (available blocks, block size).
fn free_blocks(p: &Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a writable statvfs.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut v) }, 0);
    (v.f_bavail, v.f_frsize)
}

#[test]
fn the_layer_reports_the_disk_beneath_and_keeps_owners_as_a_disk_does() {
    use std::os::unix::fs::MetadataExt;
    let (_t, backing, mnt) = dirs();
    let Some(layer) = layer_or_skip("the_layer_reports_the_disk", &backing, &mnt) else {
        return;
    };
    // A server sizes its storage from statfs: the layer shows the disk's.
    let (free, frsize) = free_blocks(&mnt);
    let (disk_free, disk_frsize) = free_blocks(&backing);
    assert!(
        free > 0 && frsize == disk_frsize,
        "{free} blocks of {frsize}"
    );
    assert!(
        free.abs_diff(disk_free) < disk_free / 10 + 1024,
        "{free} vs {disk_free}"
    );
    if !nix_is_root() {
        drop(layer);
        return; // only root can hand files to another user
    }
    // chown reaches the disk, and what another user creates is theirs.
    let nobody = 65534;
    std::fs::create_dir(mnt.join("theirs")).unwrap();
    std::os::unix::fs::chown(mnt.join("theirs"), Some(nobody), Some(nobody)).unwrap();
    assert_eq!(
        std::fs::metadata(backing.join("theirs")).unwrap().uid(),
        nobody
    );
    let made = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["sh", "-c", "mkdir \"$0/d\" && echo x > \"$0/d/f\""])
        .arg(mnt.join("theirs"))
        .status()
        .unwrap();
    assert!(made.success());
    for p in ["theirs/d", "theirs/d/f"] {
        let m = std::fs::metadata(mnt.join(p)).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (nobody, nobody),
            "{p} through the layer"
        );
        let m = std::fs::metadata(backing.join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (nobody, nobody), "{p} on the disk");
    }
    drop(layer);
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// POSIX keeps an unlinked or replaced file alive while it is open: a
/// process may write and read it through its descriptor (bbolt and etcd
/// do, across a snapshot's rename over their database). The layer once
/// answered such a write ENOENT, or sent it to the file that took the
/// name.
#[test]
fn an_open_file_outlives_its_name_until_the_last_close() {
    use std::os::unix::fs::FileExt;
    let (_t, backing, mnt) = dirs();
    let Some(layer) = layer_or_skip("an_open_file_outlives_its_name", &backing, &mnt) else {
        return;
    };
    // Unlinked while open: writes and reads through the descriptor work,
    // also after the removal is committed by a directory fsync.
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(mnt.join("db"))
        .unwrap();
    f.write_all_at(b"before", 0).unwrap();
    std::fs::remove_file(mnt.join("db")).unwrap();
    f.write_all_at(b"after!", 0).unwrap();
    fsync_dir(&mnt);
    f.write_all_at(b"synced", 6).unwrap();
    let mut buf = [0u8; 12];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"after!synced");
    assert!(!mnt.join("db").exists());
    drop(f);
    let graves = |b: &Path| {
        std::fs::read_dir(b.join(faultline_durable::GRAVEYARD))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // FUSE sends the release after close() returns: wait for it (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while graves(&backing) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(graves(&backing), 0, "the last close buries it");

    // Replaced by a rename while open: the old descriptor keeps the old
    // file, and the new name's bytes are untouched by it.
    let old = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(mnt.join("db"))
        .unwrap();
    old.write_all_at(b"old", 0).unwrap();
    std::fs::write(mnt.join("db.tmp"), b"new").unwrap();
    std::fs::rename(mnt.join("db.tmp"), mnt.join("db")).unwrap();
    old.write_all_at(b"OLD", 0).unwrap();
    assert_eq!(std::fs::read(mnt.join("db")).unwrap(), b"new");
    let mut buf = [0u8; 3];
    old.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"OLD");
    drop(old);
    drop(layer);
}
