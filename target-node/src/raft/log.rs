//! The in-memory Raft log: the entries after the last snapshot, indexed
//! from 1, with the snapshot's index and term standing in for what was
//! compacted.

use super::Entry;

/// The in-memory log: entries after the last snapshot.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub snap_index: u64,
    pub snap_term: u64,
    pub entries: Vec<Entry>,
}

impl Log {
    pub fn last_index(&self) -> u64 {
        self.snap_index + self.entries.len() as u64
    }
    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snap_term, |e| e.term)
    }
    /// The term at `i`, if known (compacted entries are unknown except the
    /// snapshot's own index).
    pub fn term(&self, i: u64) -> Option<u64> {
        if i == self.snap_index {
            return Some(self.snap_term);
        }
        if i < self.snap_index || i > self.last_index() {
            return None;
        }
        Some(self.entries[(i - self.snap_index - 1) as usize].term)
    }
    pub fn entry(&self, i: u64) -> Option<&Entry> {
        if i <= self.snap_index || i > self.last_index() {
            return None;
        }
        Some(&self.entries[(i - self.snap_index - 1) as usize])
    }
    /// Entries [from, to], at most `max`.
    pub fn slice(&self, from: u64, to: u64, max: usize) -> Vec<Entry> {
        if from > to || from <= self.snap_index {
            return Vec::new();
        }
        let lo = (from - self.snap_index - 1) as usize;
        let hi = ((to - self.snap_index) as usize)
            .min(self.entries.len())
            .min(lo.saturating_add(max));
        self.entries[lo..hi].to_vec()
    }
    pub fn truncate_from(&mut self, i: u64) {
        assert!(i > self.snap_index, "cannot truncate into the snapshot");
        self.entries.truncate((i - self.snap_index - 1) as usize);
    }
    pub fn push(&mut self, e: Entry) {
        assert_eq!(e.index, self.last_index() + 1, "log entries are contiguous");
        self.entries.push(e);
    }
    /// Drops entries up to `index` (which has `term`), keeping later ones if
    /// they follow it.
    pub fn compact(&mut self, index: u64, term: u64) {
        if index <= self.snap_index {
            return;
        }
        if self.term(index) == Some(term) {
            let keep = (index - self.snap_index) as usize;
            self.entries.drain(..keep);
        } else {
            self.entries.clear();
        }
        self.snap_index = index;
        self.snap_term = term;
    }
    /// First index of the run of entries with `term` that contains `i`.
    pub(super) fn first_of_term(&self, mut i: u64) -> u64 {
        let t = self.term(i);
        while i > self.snap_index + 1 && self.term(i - 1) == t {
            i -= 1;
        }
        i
    }
    /// Last index whose term is `t`, if any.
    pub(super) fn last_of_term(&self, t: u64) -> Option<u64> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.term == t)
            .map(|e| e.index)
    }
}
