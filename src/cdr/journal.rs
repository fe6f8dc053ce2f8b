//! The append-only journal: one JSON line per ended call or queue event.

use super::Entry;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Longest line read back; anything longer is not one of ours.
const MAX_LINE: usize = 64 * 1024;

pub struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes in the file, to refuse growing past `limit`.
    size: u64,
    limit: u64,
}

impl Journal {
    pub fn open(path: &Path, limit: u64) -> std::io::Result<Journal> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            size,
            limit,
        })
    }

    /// Appends one entry (an [`Entry`], or a bare call record as older
    /// versions wrote) in a single write. False when the journal is full or
    /// the write failed: the caller counts the entry as dropped.
    pub fn append<T: serde::Serialize>(&mut self, entry: &T) -> bool {
        let Ok(mut line) = serde_json::to_vec(entry) else {
            return false;
        };
        line.push(b'\n');
        let len = line.len() as u64;
        if self.size.saturating_add(len) > self.limit {
            return false;
        }
        match self.file.write_all(&line) {
            Ok(()) => {
                self.size += len;
                true
            }
            Err(_) => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn truncate(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.size = 0;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record in the file, in order; damaged lines (a torn last write)
    /// are skipped and counted.
    pub fn read_all(&self) -> std::io::Result<(Vec<Entry>, usize)> {
        read_journal(&self.path)
    }
}

/// Reads a journal without holding it: appends only add lines at the end, and
/// a line still being written is skipped now and read on a later replay.
pub fn read_journal(path: &Path) -> std::io::Result<(Vec<Entry>, usize)> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut records = Vec::new();
    let mut damaged = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE || line.last() != Some(&b'\n') {
            damaged += 1;
            // Skip the rest of an overlong line.
            let mut ended = line.last() == Some(&b'\n');
            while !ended {
                line.clear();
                let n = (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut line)?;
                ended = n == 0 || line.last() == Some(&b'\n');
            }
            continue;
        }
        match serde_json::from_slice::<Entry>(&line) {
            Ok(r) => records.push(r),
            Err(_) => damaged += 1,
        }
    }
    Ok((records, damaged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{sample, sample_event};

    #[test]
    fn appends_reads_back_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut j = Journal::open(&path, 1 << 20).unwrap();
        assert!(j.append(&sample(1, 1_000_000)));
        assert!(j.append(&sample(2, 1_000_000)));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":\"to")
            .unwrap();
        let (records, damaged) = j.read_all().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1], Entry::Call(Box::new(sample(2, 1_000_000))));
        assert_eq!(damaged, 1);
        j.truncate().unwrap();
        assert!(j.read_all().unwrap().0.is_empty());
    }

    #[test]
    fn queue_events_and_plain_call_records_share_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j"), 1 << 20).unwrap();
        let event = Entry::Queue {
            queue_log: Box::new(sample_event(1, 7, "joined")),
        };
        // A bare record is what versions before the queue log wrote.
        assert!(j.append(&sample(1, 1)));
        assert!(j.append(&event));
        assert!(j.append(&Entry::Call(Box::new(sample(2, 1)))));
        let (entries, damaged) = j.read_all().unwrap();
        assert_eq!(damaged, 0);
        assert_eq!(
            entries,
            vec![
                Entry::Call(Box::new(sample(1, 1))),
                event,
                Entry::Call(Box::new(sample(2, 1)))
            ]
        );
    }

    #[test]
    fn refuses_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j"), 600).unwrap();
        assert!(j.append(&sample(1, 1)));
        assert!(!j.append(&sample(2, 1)));
    }
}
