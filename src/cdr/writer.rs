//! The writer thread and the handle calls use to give it records.

use super::{CallRecord, CallbackRecord, Entry, Journal, LegRecord, QueueEvent, Store};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Entries waiting for the writer; past this they stay in the journal only.
const CHANNEL_CAPACITY: usize = 10_000;
const BATCH_MAX: usize = 500;
/// How long the writer gathers a batch after its first record.
const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// The journal's size limit: records beyond it are counted and dropped.
pub const JOURNAL_LIMIT: u64 = 100 * 1024 * 1024;
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// What the writer reports as it goes (`hotline_cdr_*`,
/// `hotline_queue_log_*`); the metrics side implements it, so records know
/// nothing of Prometheus.
pub trait WriterObserver: Send + Sync {
    /// Rows stored in the database.
    fn stored(&self, calls: u64, queue_events: u64);
    /// A call record (or a queue event) lost: the journal was full or unwritable.
    fn dropped(&self, call_record: bool);
    /// Entries journaled and waiting for the writer.
    fn queue_depth(&self, depth: u64);
    /// Seconds from the end of the oldest call in a stored batch to its storing.
    fn lag_seconds(&self, seconds: f64);
    /// A write to the database failed (it is retried).
    fn write_failed(&self);
}

struct Shared {
    journal: Mutex<Journal>,
    /// Entries journaled and sent but not yet processed by the writer.
    pending: AtomicU64,
    /// Some journaled entries are not in the database: replay the journal.
    spilled: AtomicBool,
    observer: Arc<dyn WriterObserver>,
    /// Queue event ids: this run's start (ms) and a counter, so that ids are
    /// unique across restarts and sort in the order events happened.
    run_ms: i64,
    next_event: AtomicU64,
}

/// Where calls hand their record and the queue its events. Never blocks on
/// the database.
#[derive(Clone)]
pub struct RecordSink {
    shared: Arc<Shared>,
    tx: SyncSender<Entry>,
}

impl RecordSink {
    /// Opens the journal and the database under `data_dir`, replays what an
    /// earlier run left in the journal, and starts the writer thread. Only the
    /// journal must open; a database that fails is retried in the background.
    pub fn start(
        data_dir: &Path,
        observer: Arc<dyn WriterObserver>,
    ) -> std::io::Result<RecordSink> {
        std::fs::create_dir_all(data_dir)?;
        let journal = Journal::open(&data_dir.join(super::JOURNAL_FILE), JOURNAL_LIMIT)?;
        let spilled = !journal.is_empty();
        let shared = Arc::new(Shared {
            journal: Mutex::new(journal),
            pending: AtomicU64::new(0),
            spilled: AtomicBool::new(spilled),
            observer,
            run_ms: super::now_ms(),
            next_event: AtomicU64::new(0),
        });
        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        let db_path = data_dir.join(super::DB_FILE);
        let mut writer = Writer {
            shared: Arc::clone(&shared),
            db_path,
            store: None,
            last_error_log: None,
            retry: RETRY_MIN,
            retry_at: None,
        };
        // Catch up before the first call so that reports see every call.
        writer.catch_up();
        // Open (and migrate) now, so that a schema problem shows at start and
        // reports find the tables before the first call ends.
        if writer.store.is_none() && !writer.backing_off() {
            if let Err(e) = writer.store() {
                writer.failed(&e);
            }
        }
        std::thread::Builder::new()
            .name("call-records".into())
            .spawn(move || writer.run(rx))?;
        Ok(RecordSink { shared, tx })
    }

    /// Journals the record and queues it for the database.
    pub fn record(&self, record: CallRecord) {
        let id = record.id.clone();
        if !self.submit(Entry::Call(Box::new(record))) {
            self.shared.observer.dropped(true);
            tracing::error!(id = %id, "call record dropped: journal full or unwritable");
        }
    }

    /// Journals a callback as it now stands and queues it for the database.
    pub fn callback(&self, callback: CallbackRecord) {
        let id = callback.id;
        if !self.submit(Entry::Callback {
            callback: Box::new(callback),
        }) {
            self.shared.observer.dropped(false);
            tracing::error!(id, "callback dropped: journal full or unwritable");
        }
    }

    /// Journals the record of a leg we placed and queues it for the database.
    pub fn leg(&self, leg: LegRecord) {
        let id = leg.id.clone();
        if !self.submit(Entry::Leg { leg: Box::new(leg) }) {
            self.shared.observer.dropped(true);
            tracing::error!(id = %id, "leg record dropped: journal full or unwritable");
        }
    }

    /// Journals a queue event (its id is given here) and queues it for the
    /// database.
    pub fn queue_event(&self, mut event: QueueEvent) {
        let n = self.shared.next_event.fetch_add(1, Ordering::Relaxed);
        event.id = format!("{:013}-{n:010}", self.shared.run_ms);
        let kind = event.event.clone();
        if !self.submit(Entry::Queue {
            queue_log: Box::new(event),
        }) {
            self.shared.observer.dropped(false);
            tracing::error!(event = %kind, "queue event dropped: journal full or unwritable");
        }
    }

    /// False when the entry could not be journaled (and is lost).
    fn submit(&self, entry: Entry) -> bool {
        let Ok(mut journal) = self.shared.journal.lock() else {
            return false;
        };
        if !journal.append(&entry) {
            return false;
        }
        // Counted before it is sent: the writer may take it (and count it
        // down) before `try_send` even returns.
        let depth = self
            .shared
            .pending
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1);
        match self.tx.try_send(entry) {
            Ok(()) => self.shared.observer.queue_depth(depth),
            // In the journal: the writer replays it.
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                self.shared.spilled.store(true, Ordering::SeqCst);
            }
        }
        true
    }
}

struct Writer {
    shared: Arc<Shared>,
    db_path: PathBuf,
    store: Option<Store>,
    last_error_log: Option<Instant>,
    /// The next backoff step after a failure.
    retry: Duration,
    /// While set, the database is left alone until then: entries arriving
    /// meanwhile are only in the journal, replayed at that time. Without it
    /// every batch would retry (and wait out the busy timeout) at once.
    retry_at: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Entry>) {
        loop {
            let now = Instant::now();
            let wait = match self.retry_at {
                Some(at) => at.saturating_duration_since(now),
                None if self.shared.spilled.load(Ordering::SeqCst) => RETRY_MIN,
                None => Duration::from_secs(1),
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
                if self.backing_off() {
                    // Already in the journal: replayed when the backoff ends.
                    self.shared.spilled.store(true, Ordering::SeqCst);
                    self.processed(batch.len());
                } else {
                    self.write(&batch);
                }
            }
            if self.shared.spilled.load(Ordering::SeqCst) && !self.backing_off() {
                self.catch_up();
            }
            self.truncate_if_done();
        }
    }

    fn backing_off(&self) -> bool {
        self.retry_at.is_some_and(|at| Instant::now() < at)
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

    fn write(&mut self, batch: &[Entry]) {
        let observer = Arc::clone(&self.shared.observer);
        let result = self.store().and_then(|s| s.insert_entries(batch));
        match result {
            Ok(_) => {
                self.succeeded();
                let calls = batch.iter().filter(|e| matches!(e, Entry::Call(_))).count();
                observer.stored(calls as u64, (batch.len() - calls) as u64);
                let oldest = batch
                    .iter()
                    .filter_map(|e| match e {
                        Entry::Call(r) => Some(r.ended_ms),
                        Entry::Queue { .. } | Entry::Leg { .. } | Entry::Callback { .. } => None,
                    })
                    .min();
                if let Some(oldest) = oldest {
                    observer.lag_seconds(lag_seconds(oldest));
                }
            }
            Err(e) => {
                self.failed(&e);
                self.shared.spilled.store(true, Ordering::SeqCst);
            }
        }
        self.processed(batch.len());
    }

    /// `n` entries taken off the channel.
    fn processed(&self, n: usize) {
        let left = self
            .shared
            .pending
            .fetch_sub(n as u64, Ordering::SeqCst)
            .saturating_sub(n as u64);
        self.shared.observer.queue_depth(left);
    }

    /// Stores whatever the journal holds. True when it all went in.
    fn catch_up(&mut self) -> bool {
        // Cleared first: an entry spilled while we read sets it again.
        self.shared.spilled.store(false, Ordering::SeqCst);
        // Read outside the lock so that calls ending meanwhile never wait.
        let path = match self.shared.journal.lock() {
            Ok(j) => j.path().to_path_buf(),
            Err(_) => return false,
        };
        let read = super::journal::read_journal(&path);
        let (entries, damaged) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "call record journal unreadable");
                self.shared.spilled.store(true, Ordering::SeqCst);
                self.backoff();
                return false;
            }
        };
        if damaged > 0 {
            tracing::warn!(damaged, "call record journal: damaged lines skipped");
        }
        for chunk in entries.chunks(BATCH_MAX) {
            let result = self.store().and_then(|s| s.insert_entries(chunk));
            match result {
                Ok(added) => {
                    self.shared
                        .observer
                        .stored(added.calls as u64, added.events as u64);
                }
                Err(e) => {
                    self.failed(&e);
                    self.shared.spilled.store(true, Ordering::SeqCst);
                    return false;
                }
            }
        }
        self.succeeded();
        if !entries.is_empty() {
            tracing::info!(entries = entries.len(), "call record journal replayed");
        }
        self.truncate_if_done();
        true
    }

    fn truncate_if_done(&mut self) {
        let Ok(mut journal) = self.shared.journal.lock() else {
            return;
        };
        // Under the lock no entry can be appended between the checks and
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

    fn succeeded(&mut self) {
        if self.retry_at.take().is_some() {
            tracing::info!("call records database writable again");
        }
        self.retry = RETRY_MIN;
    }

    /// Leave the database alone for the next backoff step (doubling, capped).
    fn backoff(&mut self) {
        self.retry_at = Some(Instant::now() + self.retry);
        self.retry = (self.retry * 2).min(RETRY_MAX);
    }

    fn failed(&mut self, e: &super::StoreError) {
        // Reopen next time: the file may have been replaced or repaired.
        self.store = None;
        self.shared.observer.write_failed();
        self.backoff();
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|at| now.duration_since(at) >= ERROR_LOG_EVERY)
        {
            self.last_error_log = Some(now);
            tracing::error!(error = %e, db = %self.db_path.display(),
                retry_in_ms = self.retry_at.map(|at| at.saturating_duration_since(now).as_millis() as u64),
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
    use crate::metrics::Metrics;

    fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        // Bounded polling of a real thread; the store itself is tested without
        // it. Long enough for the longest backoff (30 s) and a busy timeout.
        for _ in 0..1_800 {
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
        let sink = RecordSink::start(dir.path(), metrics.clone()).unwrap();
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
        let _sink = RecordSink::start(dir.path(), metrics.clone()).unwrap();
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
        let sink = RecordSink::start(dir.path(), metrics.clone()).unwrap();
        // Opening fails at once, so without a backoff every batch (one per
        // record here) would try again.
        let started = std::time::Instant::now();
        for i in 0..30 {
            sink.record(sample(i, 1));
            std::thread::sleep(Duration::from_millis(100));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let failures = metrics.cdr_write_failures_total.get();
        assert!(failures >= 2);
        // Backoff 0.5 s, 1 s, 2 s ...: about log2(elapsed / 0.5) attempts.
        let bound = 2 + (elapsed / 0.5).log2().ceil() as u64;
        assert!(
            failures <= bound,
            "{failures} attempts in {elapsed:.1} s (at most {bound} with backoff)"
        );
        assert_eq!(metrics.cdr_written_total.get(), 0);
        std::fs::remove_dir(&db).unwrap();
        assert!(wait_for(|| metrics.cdr_written_total.get() == 30));
        assert_eq!(Store::open(&db).unwrap().count().unwrap(), 30);
    }

    #[test]
    fn a_locked_database_backs_off_then_gets_everything() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(crate::cdr::DB_FILE);
        let metrics = Arc::new(Metrics::new());
        let sink = RecordSink::start(dir.path(), metrics.clone()).unwrap();
        // Another connection holds the write lock.
        let holder = rusqlite::Connection::open(&db).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        // Batches keep arriving while it fails: they must not each retry.
        for i in 0..30 {
            sink.record(sample(i, 1));
            sink.queue_event(crate::cdr::QueueEvent::new("joined", 1));
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(metrics.cdr_write_failures_total.get() >= 1);
        assert_eq!(metrics.cdr_written_total.get(), 0);
        holder.execute_batch("COMMIT").unwrap();
        assert!(wait_for(
            || metrics.cdr_written_total.get() == 30 && metrics.queue_log_written_total.get() == 30
        ));
        let store = Store::open(&db).unwrap();
        assert_eq!(store.count().unwrap(), 30);
        assert_eq!(store.count_queue_log().unwrap(), 30);
    }
}
