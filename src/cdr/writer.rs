//! The writer thread and the handle calls use to give it records.

use super::{CallRecord, Journal, Store};
use crate::metrics::Metrics;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Records waiting for the writer; past this they stay in the journal only.
const CHANNEL_CAPACITY: usize = 10_000;
const BATCH_MAX: usize = 500;
/// How long the writer gathers a batch after its first record.
const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// The journal's size limit: records beyond it are counted and dropped.
pub const JOURNAL_LIMIT: u64 = 100 * 1024 * 1024;
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// Kept for the `hotline_cdr_*` names in one place.
pub type SinkMetrics = Metrics;

struct Shared {
    journal: Mutex<Journal>,
    /// Records journaled and sent but not yet processed by the writer.
    pending: AtomicU64,
    /// Some journaled records are not in the database: replay the journal.
    spilled: AtomicBool,
    metrics: Arc<Metrics>,
}

/// Where calls hand their record. Never blocks on the database.
#[derive(Clone)]
pub struct RecordSink {
    shared: Arc<Shared>,
    tx: SyncSender<CallRecord>,
}

impl RecordSink {
    /// Opens the journal and the database under `data_dir`, replays what an
    /// earlier run left in the journal, and starts the writer thread. Only the
    /// journal must open; a database that fails is retried in the background.
    pub fn start(data_dir: &Path, metrics: Arc<Metrics>) -> std::io::Result<RecordSink> {
        std::fs::create_dir_all(data_dir)?;
        let journal = Journal::open(&data_dir.join(super::JOURNAL_FILE), JOURNAL_LIMIT)?;
        let spilled = !journal.is_empty();
        let shared = Arc::new(Shared {
            journal: Mutex::new(journal),
            pending: AtomicU64::new(0),
            spilled: AtomicBool::new(spilled),
            metrics,
        });
        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        let db_path = data_dir.join(super::DB_FILE);
        let mut writer = Writer {
            shared: Arc::clone(&shared),
            db_path,
            store: None,
            last_error_log: None,
        };
        // Catch up before the first call so that reports see every call.
        writer.catch_up();
        std::thread::Builder::new()
            .name("call-records".into())
            .spawn(move || writer.run(rx))?;
        Ok(RecordSink { shared, tx })
    }

    /// Journals the record and queues it for the database.
    pub fn record(&self, record: CallRecord) {
        let metrics = &self.shared.metrics;
        let Ok(mut journal) = self.shared.journal.lock() else {
            metrics.cdr_dropped_total.inc();
            return;
        };
        if !journal.append(&record) {
            metrics.cdr_dropped_total.inc();
            tracing::error!(id = %record.id, "call record dropped: journal full or unwritable");
            return;
        }
        match self.tx.try_send(record) {
            Ok(()) => {
                let depth = self.shared.pending.fetch_add(1, Ordering::SeqCst) + 1;
                metrics.cdr_queue_depth.set(depth as i64);
            }
            // In the journal: the writer replays it.
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.spilled.store(true, Ordering::SeqCst);
            }
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    db_path: PathBuf,
    store: Option<Store>,
    last_error_log: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: Receiver<CallRecord>) {
        let mut retry = RETRY_MIN;
        loop {
            let wait = if self.shared.spilled.load(Ordering::SeqCst) {
                retry
            } else {
                Duration::from_secs(1)
            };
            let mut batch = Vec::new();
            match rx.recv_timeout(wait) {
                Ok(r) => batch.push(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.catch_up();
                    return;
                }
            }
            if !batch.is_empty() {
                let until = Instant::now() + BATCH_WINDOW;
                while batch.len() < BATCH_MAX {
                    let left = until.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                self.write(&batch);
            }
            if self.shared.spilled.load(Ordering::SeqCst) {
                if self.catch_up() {
                    retry = RETRY_MIN;
                } else {
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
            self.truncate_if_done();
        }
    }

    fn store(&mut self) -> Result<&mut Store, super::StoreError> {
        if self.store.is_none() {
            self.store = Some(Store::open(&self.db_path)?);
        }
        // Just set above when it was missing.
        self.store
            .as_mut()
            .ok_or(super::StoreError::Sqlite(rusqlite::Error::InvalidQuery))
    }

    fn write(&mut self, batch: &[CallRecord]) {
        let metrics = Arc::clone(&self.shared.metrics);
        let result = self.store().and_then(|s| s.insert(batch));
        match result {
            Ok(_) => {
                metrics.cdr_written_total.inc_by(batch.len() as u64);
                if let Some(oldest) = batch.iter().map(|r| r.ended_ms).min() {
                    metrics.cdr_lag_seconds.set(lag_seconds(oldest));
                }
            }
            Err(e) => {
                self.failed(&e);
                self.shared.spilled.store(true, Ordering::SeqCst);
            }
        }
        let left = self
            .shared
            .pending
            .fetch_sub(batch.len() as u64, Ordering::SeqCst)
            .saturating_sub(batch.len() as u64);
        metrics.cdr_queue_depth.set(left as i64);
    }

    /// Stores whatever the journal holds. True when it all went in.
    fn catch_up(&mut self) -> bool {
        // Cleared first: a record spilled while we read sets it again.
        self.shared.spilled.store(false, Ordering::SeqCst);
        // Read outside the lock so that calls ending meanwhile never wait.
        let path = match self.shared.journal.lock() {
            Ok(j) => j.path().to_path_buf(),
            Err(_) => return false,
        };
        let read = super::journal::read_journal(&path);
        let (records, damaged) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "call record journal unreadable");
                self.shared.spilled.store(true, Ordering::SeqCst);
                return false;
            }
        };
        if damaged > 0 {
            tracing::warn!(damaged, "call record journal: damaged lines skipped");
        }
        for chunk in records.chunks(BATCH_MAX) {
            let result = self.store().and_then(|s| s.insert(chunk));
            match result {
                Ok(added) => {
                    self.shared.metrics.cdr_written_total.inc_by(added as u64);
                }
                Err(e) => {
                    self.failed(&e);
                    self.shared.spilled.store(true, Ordering::SeqCst);
                    return false;
                }
            }
        }
        if !records.is_empty() {
            tracing::info!(records = records.len(), "call record journal replayed");
        }
        self.truncate_if_done();
        true
    }

    fn truncate_if_done(&mut self) {
        let Ok(mut journal) = self.shared.journal.lock() else {
            return;
        };
        // Under the lock no record can be appended between the checks and
        // the truncation.
        if journal.is_empty()
            || self.shared.pending.load(Ordering::SeqCst) != 0
            || self.shared.spilled.load(Ordering::SeqCst)
        {
            return;
        }
        if let Err(e) = journal.truncate() {
            tracing::warn!(error = %e, "call record journal not emptied");
        }
    }

    fn failed(&mut self, e: &super::StoreError) {
        // Reopen next time: the file may have been replaced or repaired.
        self.store = None;
        self.shared.metrics.cdr_write_failures_total.inc();
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|at| now.duration_since(at) >= ERROR_LOG_EVERY)
        {
            self.last_error_log = Some(now);
            tracing::error!(error = %e, db = %self.db_path.display(),
                "call records not written; kept in the journal and retried");
        }
    }
}

fn lag_seconds(ended_ms: i64) -> f64 {
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0);
    ((now_ms - ended_ms as f64) / 1000.0).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::sample;

    fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        // Bounded polling of a real thread; the store itself is tested without it.
        for _ in 0..200 {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    #[test]
    fn records_reach_the_database_and_the_journal_empties() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let sink = RecordSink::start(dir.path(), Arc::clone(&metrics)).unwrap();
        for i in 0..20 {
            sink.record(sample(i, 1_700_000_000_000));
        }
        assert!(wait_for(|| metrics.cdr_written_total.get() == 20));
        let store = Store::open(&dir.path().join(crate::cdr::DB_FILE)).unwrap();
        assert_eq!(store.count().unwrap(), 20);
        assert!(wait_for(|| std::fs::metadata(
            dir.path().join(crate::cdr::JOURNAL_FILE)
        )
        .map(|m| m.len() == 0)
        .unwrap_or(false)));
    }

    #[test]
    fn a_journal_left_behind_is_replayed_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join(crate::cdr::JOURNAL_FILE), 1 << 20).unwrap();
        for i in 0..5 {
            j.append(&sample(i, 1));
        }
        // One of them was already stored before the crash.
        Store::open(&dir.path().join(crate::cdr::DB_FILE))
            .unwrap()
            .insert(&[sample(0, 1)])
            .unwrap();
        let metrics = Arc::new(Metrics::new());
        let _sink = RecordSink::start(dir.path(), Arc::clone(&metrics)).unwrap();
        let store = Store::open(&dir.path().join(crate::cdr::DB_FILE)).unwrap();
        assert_eq!(store.count().unwrap(), 5);
        assert_eq!(metrics.cdr_written_total.get(), 4);
    }

    #[test]
    fn an_unwritable_database_spills_then_replays() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(crate::cdr::DB_FILE);
        // A directory where the database should be: every open fails.
        std::fs::create_dir(&db).unwrap();
        let metrics = Arc::new(Metrics::new());
        let sink = RecordSink::start(dir.path(), Arc::clone(&metrics)).unwrap();
        sink.record(sample(1, 1));
        sink.record(sample(2, 1));
        assert!(wait_for(|| metrics.cdr_write_failures_total.get() >= 2));
        assert_eq!(metrics.cdr_written_total.get(), 0);
        std::fs::remove_dir(&db).unwrap();
        assert!(wait_for(|| metrics.cdr_written_total.get() == 2));
        assert_eq!(Store::open(&db).unwrap().count().unwrap(), 2);
    }
}
