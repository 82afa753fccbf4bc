//! Crash recovery of the write-ahead log and snapshots.

use serde_json::json;
use std::io::Write;
use target_node::raft::{Command, Entry, Ready, Snapshot};
use target_node::storage::{Storage, StorageError};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        cmd: Command::Op {
            client: "c1".into(),
            msg_id: index,
            op: json!({"type":"write","key":1,"value":index}),
        },
    }
}

fn write_entries(st: &mut Storage, range: std::ops::RangeInclusive<u64>, term: u64) {
    let rd = Ready {
        hard_state: Some((term, Some(1))),
        append: range.map(|i| entry(i, term)).collect(),
        ..Default::default()
    };
    st.write(&rd).unwrap();
    st.sync().unwrap();
}

#[test]
fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut st, d) = Storage::open(dir.path()).unwrap();
    assert_eq!((d.term, d.log.last_index()), (0, 0));
    write_entries(&mut st, 1..=5, 2);
    // A conflicting suffix replaces entries 4..
    let rd = Ready {
        truncate_from: Some(4),
        append: vec![entry(4, 3)],
        hard_state: Some((3, None)),
        ..Default::default()
    };
    st.write(&rd).unwrap();
    st.sync().unwrap();
    drop(st);
    let (_, d) = Storage::open(dir.path()).unwrap();
    assert_eq!((d.term, d.vote), (3, None));
    assert_eq!(d.log.last_index(), 4);
    assert_eq!(d.log.term(4), Some(3));
    assert_eq!(d.log.term(3), Some(2));
}

/// Appends entries without syncing them: what a crash may tear.
fn write_unsynced(st: &mut Storage, range: std::ops::RangeInclusive<u64>, term: u64) {
    let rd = Ready {
        append: range.map(|i| entry(i, term)).collect(),
        ..Default::default()
    };
    st.write(&rd).unwrap();
}

fn expect_corrupt(dir: &std::path::Path, wanted: &str) -> u64 {
    match Storage::open(dir) {
        Err(StorageError::Corrupt { offset, reason, .. }) => {
            assert!(reason.contains(wanted), "{reason}");
            offset
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok((_, d)) => panic!(
            "damaged synced data was accepted (log ends at {})",
            d.log.last_index()
        ),
    }
}

#[test]
fn a_torn_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (mut st, _) = Storage::open(dir.path()).unwrap();
    write_entries(&mut st, 1..=3, 1);
    drop(st);
    let wal = dir.path().join("wal");
    let full = std::fs::metadata(&wal).unwrap().len();
    // A crash mid-write: half a record at the end.
    let mut f = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"'])
        .unwrap();
    drop(f);
    let (mut st, d) = Storage::open(dir.path()).unwrap();
    assert_eq!(d.log.last_index(), 3);
    assert_eq!(st.recovered_torn_bytes, 10);
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        full,
        "the tail was truncated away"
    );
    // Unsynced records that came back with a bad page or a hole (a crash
    // that kept a subset of the writes): the first bad byte ends the log.
    write_unsynced(&mut st, 4..=6, 1);
    drop(st);
    let mut damaged = std::fs::read(&wal).unwrap();
    let at = full as usize + 12;
    damaged[at..at + 40].fill(0);
    std::fs::write(&wal, &damaged).unwrap();
    let (_, d) = Storage::open(dir.path()).unwrap();
    assert_eq!(d.log.last_index(), 3);
}

#[test]
fn synced_data_that_was_cut_short_or_damaged_at_the_end_refuses_to_start() {
    // A checksum cannot tell these from a crash: only the synced length
    // kept beside the WAL can.
    let dir = tempfile::tempdir().unwrap();
    let (mut st, _) = Storage::open(dir.path()).unwrap();
    write_entries(&mut st, 1..=3, 1);
    let one = std::fs::metadata(dir.path().join("wal")).unwrap().len();
    write_entries(&mut st, 4..=6, 1);
    drop(st);
    let wal = dir.path().join("wal");
    let good = std::fs::read(&wal).unwrap();
    // Truncated on a record boundary.
    std::fs::write(&wal, &good[..one as usize]).unwrap();
    assert_eq!(expect_corrupt(dir.path(), "were synced"), one);
    // Truncated mid-record.
    std::fs::write(&wal, &good[..good.len() - 3]).unwrap();
    expect_corrupt(dir.path(), "were synced");
    // A bit flip in the last (synced) record.
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n - 2] ^= 0x40;
    std::fs::write(&wal, &flipped).unwrap();
    expect_corrupt(dir.path(), "checksum mismatch, within the");
    // The last record zeroed.
    let mut zeroed = good.clone();
    zeroed[n - 20..].fill(0);
    std::fs::write(&wal, &zeroed).unwrap();
    expect_corrupt(dir.path(), "within the");
    // Undamaged, it opens with every entry.
    std::fs::write(&wal, &good).unwrap();
    let (_, d) = Storage::open(dir.path()).unwrap();
    assert_eq!(d.log.last_index(), 6);
}

#[test]
fn a_damaged_watermark_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut st, _) = Storage::open(dir.path()).unwrap();
    write_entries(&mut st, 1..=4, 1);
    drop(st);
    let mark = dir.path().join("wal.synced");
    let mut b = std::fs::read(&mark).unwrap();
    for x in b.iter_mut() {
        *x ^= 0xff;
    }
    std::fs::write(&mark, &b).unwrap();
    // Both slots unreadable: the WAL is taken as it is, and the watermark
    // rewritten from it, so the next damage to the WAL is caught again.
    let (_, d) = Storage::open(dir.path()).unwrap();
    assert_eq!(d.log.last_index(), 4);
    let wal = dir.path().join("wal");
    let good = std::fs::read(&wal).unwrap();
    std::fs::write(&wal, &good[..good.len() - 1]).unwrap();
    expect_corrupt(dir.path(), "were synced");
}

#[test]
fn corruption_before_the_tail_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut st, _) = Storage::open(dir.path()).unwrap();
    write_entries(&mut st, 1..=5, 1);
    drop(st);
    let wal = dir.path().join("wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[20] ^= 0x01; // inside the first record
    std::fs::write(&wal, &bytes).unwrap();
    match Storage::open(dir.path()) {
        Err(StorageError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, 0);
            assert!(reason.contains("checksum"), "{reason}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a corrupt WAL was accepted"),
    }
    let msg = Storage::open(dir.path()).err().unwrap().to_string();
    assert!(msg.contains("refusing to start"), "{msg}");
}

#[test]
fn a_snapshot_compacts_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut st, _) = Storage::open(dir.path()).unwrap();
    write_entries(&mut st, 1..=10, 1);
    let entries: Vec<Entry> = (1..=10).map(|i| entry(i, 1)).collect();
    let snap = Snapshot {
        index: 7,
        term: 1,
        data: json!({"1": 7}),
        conf: None,
    };
    st.save_snapshot(&snap, 1, Some(1), &entries).unwrap();
    write_entries(&mut st, 11..=12, 1);
    drop(st);
    let (_, d) = Storage::open(dir.path()).unwrap();
    assert_eq!(d.snapshot.as_ref().unwrap().index, 7);
    assert_eq!((d.log.snap_index, d.log.last_index()), (7, 12));
    assert!(d.log.entry(7).is_none() && d.log.entry(8).is_some());
    // The rewritten WAL is guarded too.
    let wal = dir.path().join("wal");
    let good = std::fs::read(&wal).unwrap();
    std::fs::write(&wal, &good[..good.len() - 5]).unwrap();
    expect_corrupt(dir.path(), "were synced");
    std::fs::write(&wal, &good).unwrap();
    // A damaged snapshot is never trusted.
    let p = dir.path().join("snapshot");
    let mut b = std::fs::read(&p).unwrap();
    b[10] ^= 1;
    std::fs::write(&p, b).unwrap();
    assert!(matches!(
        Storage::open(dir.path()),
        Err(StorageError::Corrupt { .. })
    ));
}
