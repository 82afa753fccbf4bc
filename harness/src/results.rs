//! The results store (DESIGN §5): results/<test-name>/<timestamp>/ and the
//! results/latest link.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// `20261122T214500.123Z`, UTC, sortable.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Creates a fresh run directory with its nodes/ folder. Two runs started in
/// the same millisecond get distinct directories.
pub fn create_run_dir(root: &Path, name: &str) -> std::io::Result<PathBuf> {
    let base = root.join(name);
    std::fs::create_dir_all(&base)?;
    let stamp = timestamp(SystemTime::now());
    for attempt in 0..1000 {
        let dir = if attempt == 0 {
            base.join(&stamp)
        } else {
            base.join(format!("{stamp}-{attempt}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::create_dir(dir.join("nodes"))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "could not create a unique run directory under {}",
        base.display()
    )))
}

/// Points results/latest at `run_dir` (relative link, replaced atomically).
pub fn update_latest(root: &Path, run_dir: &Path) -> std::io::Result<()> {
    let rel = run_dir.strip_prefix(root).unwrap_or(run_dir);
    let tmp = root.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(rel, &tmp)?;
    std::fs::rename(&tmp, root.join("latest"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_383_900_123);
        assert_eq!(timestamp(t), "20261122T214500.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..8], "20000229");
    }
}
