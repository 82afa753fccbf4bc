//! Disk faults: while a node is down, one file of its data directory has
//! bits flipped, is cut short, or has a range zeroed, as disks and
//! filesystems do to data that was already synced. The file and range are
//! drawn from a seed, so a replay makes the same choices on the same
//! files; what was done is returned to be recorded exactly.

use rand::Rng;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What happens to the chosen file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// Bits flip in a run of up to `MAX_FLIP_BYTES` bytes (one per byte).
    Flip,
    /// The file loses its last `1..=MAX_CUT_BYTES` bytes: the newest
    /// writes, what a disk that acknowledged an fsync it never did loses.
    Truncate,
    /// A run of up to `MAX_ZERO_BYTES` bytes reads back as zeros.
    Zero,
}

/// What a disk fault did: `length` bytes of `file` (relative to the data
/// directory) from `offset` were flipped, zeroed, or cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub file: PathBuf,
    pub offset: u64,
    pub length: u64,
    /// The file's size before the fault.
    pub file_bytes: u64,
}

const MAX_FLIP_BYTES: u64 = 8;
const MAX_ZERO_BYTES: u64 = 4096;
const MAX_CUT_BYTES: u64 = 64 * 1024;
/// A data directory is walked this deep and this far, no further: the
/// fault must not hang on a tree that is huge or loops.
const MAX_DEPTH: usize = 16;
const MAX_FILES: usize = 100_000;

/// Damages one non-empty regular file under `dir`, chosen with `rng`, and
/// syncs it (through a durability layer, the damage is on the disk, not in
/// what a crash can drop). `None` when there is no such file: a node that
/// keeps nothing on disk has nothing to damage.
pub fn damage(dir: &Path, fault: DiskFault, rng: &mut impl Rng) -> io::Result<Option<Damage>> {
    damage_matching(dir, &[], fault, rng)
}

/// `damage`, choosing only among files whose path relative to `dir`
/// matches one of `patterns` (`*` within a path segment, `**` across
/// segments, `?` one character); no patterns: every file. A system names
/// where its data is, so faults land there and not on its metadata.
pub fn damage_matching(
    dir: &Path,
    patterns: &[String],
    fault: DiskFault,
    rng: &mut impl Rng,
) -> io::Result<Option<Damage>> {
    let mut files = Vec::new();
    walk(dir, Path::new(""), 0, &mut files)?;
    files.retain(|(rel, _)| {
        patterns.is_empty() || patterns.iter().any(|p| glob(p, &rel.to_string_lossy()))
    });
    files.sort();
    if files.is_empty() {
        return Ok(None);
    }
    let (rel, size) = files[rng.gen_range(0..files.len())].clone();
    let path = dir.join(&rel);
    let f = OpenOptions::new().read(true).write(true).open(&path)?;
    let (offset, length) = match fault {
        DiskFault::Flip => {
            let offset = rng.gen_range(0..size);
            let want = rng.gen_range(1..=MAX_FLIP_BYTES);
            (offset, flip(&f, offset, want, rng)?)
        }
        DiskFault::Zero => {
            let offset = rng.gen_range(0..size);
            let length = rng.gen_range(1..=MAX_ZERO_BYTES).min(size - offset);
            f.write_all_at(&vec![0u8; length as usize], offset)?;
            (offset, length)
        }
        DiskFault::Truncate => {
            let length = rng.gen_range(1..=MAX_CUT_BYTES.min(size));
            f.set_len(size - length)?;
            (size - length, length)
        }
    };
    f.sync_all()?;
    Ok(Some(Damage {
        file: rel,
        offset,
        length,
        file_bytes: size,
    }))
}

/// Whether `path` matches `pattern`: `**` matches any run of characters,
/// `*` any run without `/`, `?` one character but `/`.
pub fn glob(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p {
            [] => s.is_empty(),
            // `**/`: any number of whole directories, none included.
            [b'*', b'*', b'/', rest @ ..] => {
                (0..=s.len()).any(|i| (i == 0 || s[i - 1] == b'/') && go(rest, &s[i..]))
            }
            [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| go(rest, &s[i..])),
            [b'*', rest @ ..] => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| go(rest, &s[i..])),
            [b'?', rest @ ..] => s.first().is_some_and(|&c| c != b'/') && go(rest, &s[1..]),
            [c, rest @ ..] => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

/// Flips one random bit in each of up to `want` bytes from `offset`;
/// returns how many bytes changed.
fn flip(f: &File, offset: u64, want: u64, rng: &mut impl Rng) -> io::Result<u64> {
    let mut buf = vec![0u8; want as usize];
    let n = f.read_at(&mut buf, offset)?;
    buf.truncate(n);
    for b in buf.iter_mut() {
        *b ^= 1 << rng.gen_range(0..8);
    }
    f.write_all_at(&buf, offset)?;
    Ok(n as u64)
}

/// Every non-empty regular file under `dir` (relative path, size),
/// leaving out faultline's own (`.faultline-*`).
fn walk(root: &Path, rel: &Path, depth: usize, out: &mut Vec<(PathBuf, u64)>) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(".faultline-") || out.len() >= MAX_FILES {
            continue;
        }
        let ty = entry.file_type()?;
        let child = rel.join(&name);
        if ty.is_dir() {
            walk(root, &child, depth + 1, out)?;
        } else if ty.is_file() {
            let size = entry.metadata()?.len();
            if size > 0 {
                out.push((child, size));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn globs_match_within_and_across_directories() {
        assert!(glob("*.blk", "1.blk"));
        assert!(!glob("*.blk", "msgs/1.blk"), "* stays in its segment");
        assert!(glob("**/*.blk", "msgs/1.blk"));
        assert!(glob("**/*.blk", "1.blk"), "**/ may be no directory");
        assert!(glob(
            "jetstream/**/msgs/*.blk",
            "jetstream/$G/streams/k1/msgs/1.blk"
        ));
        assert!(!glob(
            "jetstream/**/msgs/*.blk",
            "jetstream/$G/streams/k1/obs/1.blk"
        ));
        assert!(glob("base/**", "base/1/2"));
        assert!(glob("wal-?", "wal-1") && !glob("wal-?", "wal-12"));
        assert!(!glob("*.idx", "1.blk"));
    }

    #[test]
    fn named_files_are_the_only_ones_damaged() {
        let dir = tree();
        let patterns = vec!["**/*.wal".to_string()];
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let d = damage_matching(dir.path(), &patterns, DiskFault::Flip, &mut rng)
                .unwrap()
                .expect("a .wal file is there");
            assert_eq!(d.file, Path::new("member/wal/0.wal"), "{d:?}");
        }
        let none = vec!["*.nothing".to_string()];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            damage_matching(dir.path(), &none, DiskFault::Zero, &mut rng).unwrap(),
            None
        );
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("member/wal")).unwrap();
        std::fs::write(d.path().join("member/wal/0.wal"), vec![7u8; 10_000]).unwrap();
        std::fs::write(d.path().join("snapshot"), vec![9u8; 100]).unwrap();
        std::fs::write(d.path().join("empty"), b"").unwrap();
        std::fs::create_dir_all(d.path().join(".faultline-graveyard")).unwrap();
        std::fs::write(d.path().join(".faultline-graveyard/x"), b"keep").unwrap();
        d
    }

    fn read(d: &Path, f: &Path) -> Vec<u8> {
        std::fs::read(d.join(f)).unwrap()
    }

    #[test]
    fn each_fault_does_exactly_what_it_reports() {
        for seed in 0..40 {
            for fault in [DiskFault::Flip, DiskFault::Truncate, DiskFault::Zero] {
                let d = tree();
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let dmg = damage(d.path(), fault, &mut rng).unwrap().unwrap();
                let fill = if dmg.file.ends_with("snapshot") { 9 } else { 7 };
                assert_ne!(dmg.file, Path::new("empty"));
                assert!(!dmg.file.starts_with(".faultline-graveyard"));
                let after = read(d.path(), &dmg.file);
                let (start, end) = (dmg.offset as usize, (dmg.offset + dmg.length) as usize);
                assert!(dmg.length >= 1 && end as u64 <= dmg.file_bytes, "{dmg:?}");
                match fault {
                    DiskFault::Truncate => assert_eq!(after.len(), start),
                    _ => assert_eq!(after.len() as u64, dmg.file_bytes),
                }
                for (i, &b) in after.iter().enumerate() {
                    let inside = (start..end).contains(&i);
                    match fault {
                        DiskFault::Flip if inside => assert_eq!((b ^ fill).count_ones(), 1),
                        DiskFault::Zero if inside => assert_eq!(b, 0),
                        _ => assert_eq!(b, fill, "byte {i} outside {dmg:?}"),
                    }
                }
                assert_eq!(read(d.path(), Path::new(".faultline-graveyard/x")), b"keep");
            }
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_choice() {
        let pick = |seed| {
            let d = tree();
            damage(
                d.path(),
                DiskFault::Zero,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
            .unwrap()
        };
        assert_eq!(pick(5), pick(5));
        let files: std::collections::BTreeSet<_> = (0..30).map(|s| pick(s).unwrap().file).collect();
        assert_eq!(files.len(), 2, "both non-empty files get chosen: {files:?}");
    }

    #[test]
    fn an_empty_directory_has_nothing_to_damage() {
        let d = tempfile::tempdir().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(damage(d.path(), DiskFault::Flip, &mut rng).unwrap(), None);
        assert!(damage(&d.path().join("missing"), DiskFault::Flip, &mut rng).is_err());
    }
}
