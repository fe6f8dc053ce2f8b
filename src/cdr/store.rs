//! The SQLite side: schema migrations and batch inserts.

use super::{CallRecord, CallbackRecord, Entry, QueueEvent};
use rusqlite::{params, Connection};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("call records database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("call records database was written by a newer version (schema {0})")]
    TooNew(i64),
}

/// Each entry moves the schema one version up; never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE calls (
        id TEXT PRIMARY KEY,
        call INTEGER NOT NULL,
        sip_call_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        dialled TEXT NOT NULL,
        flow TEXT NOT NULL,
        flow_version TEXT NOT NULL,
        language TEXT,
        path TEXT NOT NULL,
        queue TEXT,
        agent TEXT,
        outcome TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        answered_ms INTEGER,
        queued_ms INTEGER,
        connected_ms INTEGER,
        ended_ms INTEGER NOT NULL,
        hung_up_by TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX calls_ended ON calls (ended_ms);",
    // 2: the queue event log.
    "CREATE TABLE queue_log (
        id TEXT PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        call_id TEXT,
        queue TEXT,
        language TEXT,
        event TEXT NOT NULL,
        agent TEXT,
        code INTEGER,
        wait_ms INTEGER,
        position INTEGER,
        state TEXT,
        reason TEXT,
        info TEXT
    );
    CREATE INDEX queue_log_time ON queue_log (time_ms);
    CREATE INDEX queue_log_call ON queue_log (call_id);",
    // 3: legs we place for a call (transfers through a trunk).
    "CREATE TABLE legs (
        id TEXT PRIMARY KEY,
        call_record TEXT NOT NULL,
        kind TEXT NOT NULL,
        trunk TEXT NOT NULL,
        number TEXT NOT NULL,
        caller_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        code INTEGER,
        started_ms INTEGER NOT NULL,
        answered_ms INTEGER,
        ended_ms INTEGER NOT NULL,
        hung_up_by TEXT NOT NULL
    );
    CREATE INDEX legs_call ON legs (call_record);",
    // 4: callbacks booked, as they stand (the newest version of each).
    "CREATE TABLE callbacks (
        id INTEGER PRIMARY KEY,
        call_record TEXT NOT NULL,
        number TEXT NOT NULL,
        typed INTEGER NOT NULL,
        dialled TEXT NOT NULL,
        queue TEXT NOT NULL,
        language TEXT NOT NULL,
        joined_ms INTEGER NOT NULL,
        requested_ms INTEGER NOT NULL,
        deadline_ms INTEGER NOT NULL,
        attempts_made INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        retry_after_s INTEGER NOT NULL,
        window TEXT,
        state TEXT NOT NULL,
        last_code INTEGER,
        agent TEXT,
        updated_ms INTEGER NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE INDEX callbacks_state ON callbacks (state);",
];

/// How many of a batch were new, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub calls: usize,
    pub events: usize,
    pub legs: usize,
    pub callbacks: usize,
}

fn insert_event(
    stmt: &mut rusqlite::CachedStatement<'_>,
    e: &QueueEvent,
) -> rusqlite::Result<usize> {
    stmt.execute(params![
        e.id, e.time_ms, e.call_id, e.queue, e.language, e.event, e.agent, e.code, e.wait_ms,
        e.position, e.state, e.reason, e.info,
    ])
}

pub struct Store {
    conn: Connection,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(2))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // WAL with NORMAL survives a killed process; the journal file covers
        // the gap between a call's end and its batch.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    /// Opens for reading only (reports), without touching the schema.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(Store { conn })
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew(version));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Stores the batch in one transaction; records already there are left
    /// as they are. Returns how many were new.
    pub fn insert(&mut self, records: &[CallRecord]) -> Result<usize, StoreError> {
        let entries: Vec<Entry> = records
            .iter()
            .map(|r| Entry::Call(Box::new(r.clone())))
            .collect();
        Ok(self.insert_entries(&entries)?.calls)
    }

    /// Stores call records and queue events in one transaction, ignoring
    /// those already there (by id).
    pub fn insert_entries(&mut self, entries: &[Entry]) -> Result<Added, StoreError> {
        let tx = self.conn.transaction()?;
        let mut added = Added::default();
        {
            let mut events = tx.prepare_cached(
                "INSERT OR IGNORE INTO queue_log (id, time_ms, call_id, queue, language, event,
                 agent, code, wait_ms, position, state, reason, info)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO calls (id, call, sip_call_id, caller, dialled, flow,
                 flow_version, language, path, queue, agent, outcome, started_ms,
                 answered_ms, queued_ms, connected_ms, ended_ms, hung_up_by, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,
                 ?15, ?16, ?17, ?18, ?19)",
            )?;
            let mut legs = tx.prepare_cached(
                "INSERT OR IGNORE INTO legs (id, call_record, kind, trunk, number, caller_id,
                 outcome, code, started_ms, answered_ms, ended_ms, hung_up_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            let mut callbacks = tx.prepare_cached(
                "INSERT INTO callbacks (id, call_record, number, typed, dialled, queue, language,
                 joined_ms, requested_ms, deadline_ms, attempts_made, attempts, retry_after_s,
                 window, state, last_code, agent, updated_ms, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17, ?18, ?19)
                 ON CONFLICT (id) DO UPDATE SET attempts_made = excluded.attempts_made,
                 state = excluded.state, last_code = excluded.last_code, agent = excluded.agent,
                 updated_ms = excluded.updated_ms, version = excluded.version
                 WHERE excluded.version > callbacks.version",
            )?;
            for entry in entries {
                let r = match entry {
                    Entry::Call(r) => r,
                    Entry::Callback { callback: c } => {
                        added.callbacks += callbacks.execute(params![
                            i64::try_from(c.id).unwrap_or(i64::MAX),
                            c.call_record,
                            c.number,
                            c.typed,
                            c.dialled,
                            c.queue,
                            c.language,
                            c.joined_ms,
                            c.requested_ms,
                            c.deadline_ms,
                            c.attempts_made,
                            c.attempts,
                            i64::try_from(c.retry_after_s).unwrap_or(i64::MAX),
                            c.window,
                            c.state,
                            c.last_code,
                            c.agent,
                            c.updated_ms,
                            c.version,
                        ])?;
                        continue;
                    }
                    Entry::Queue { queue_log: e } => {
                        added.events += insert_event(&mut events, e)?;
                        continue;
                    }
                    Entry::Leg { leg: l } => {
                        added.legs += legs.execute(params![
                            l.id,
                            l.call_record,
                            l.kind,
                            l.trunk,
                            l.number,
                            l.caller_id,
                            l.outcome,
                            l.code,
                            l.started_ms,
                            l.answered_ms,
                            l.ended_ms,
                            l.hung_up_by,
                        ])?;
                        continue;
                    }
                };
                added.calls += stmt.execute(params![
                    r.id,
                    i64::try_from(r.call).unwrap_or(i64::MAX),
                    r.sip_call_id,
                    r.caller,
                    r.dialled,
                    r.flow,
                    r.flow_version,
                    r.language,
                    r.path.join(">"),
                    r.queue,
                    r.agent,
                    r.outcome,
                    r.started_ms,
                    r.answered_ms,
                    r.queued_ms,
                    r.connected_ms,
                    r.ended_ms,
                    r.hung_up_by,
                    r.reason,
                ])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// Callbacks still to be made, oldest place first.
    pub fn pending_callbacks(&self) -> Result<Vec<CallbackRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, call_record, number, typed, dialled, queue, language, joined_ms,
             requested_ms, deadline_ms, attempts_made, attempts, retry_after_s, window, state,
             last_code, agent, updated_ms, version
             FROM callbacks WHERE state = ?1 ORDER BY joined_ms, id",
        )?;
        let rows = stmt.query_map(params![super::callback_state::PENDING], |r| {
            Ok(CallbackRecord {
                id: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                call_record: r.get(1)?,
                number: r.get(2)?,
                typed: r.get(3)?,
                dialled: r.get(4)?,
                queue: r.get(5)?,
                language: r.get(6)?,
                joined_ms: r.get(7)?,
                requested_ms: r.get(8)?,
                deadline_ms: r.get(9)?,
                attempts_made: r.get(10)?,
                attempts: r.get(11)?,
                retry_after_s: u64::try_from(r.get::<_, i64>(12)?).unwrap_or(0),
                window: r.get(13)?,
                state: r.get(14)?,
                last_code: r.get(15)?,
                agent: r.get(16)?,
                updated_ms: r.get(17)?,
                version: r.get(18)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Callbacks by state whose caller asked in the period: `(state, count)`.
    pub fn callbacks_summary(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        if !self.has_table("callbacks")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT state, COUNT(*) FROM callbacks WHERE requested_ms >= ?1 AND requested_ms < ?2
             GROUP BY state ORDER BY state",
        )?;
        let rows = stmt.query_map(
            params![from_ms.unwrap_or(i64::MIN), to_ms.unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Whether the schema has the queue log (a read-only open of an older
    /// database does not migrate it).
    pub fn has_queue_log(&self) -> Result<bool, StoreError> {
        self.has_table("queue_log")
    }

    /// Whether the schema has the legs table (version 3 on).
    pub fn has_legs(&self) -> Result<bool, StoreError> {
        self.has_table("legs")
    }

    fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    pub fn count_queue_log(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM queue_log", [], |r| r.get(0))?)
    }

    pub fn count(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM calls", [], |r| r.get(0))?)
    }

    pub fn integrity_ok(&self) -> Result<bool, StoreError> {
        let s: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        Ok(s == "ok")
    }

    pub(super) fn connection(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{sample, sample_event};

    #[test]
    fn migrates_once_and_inserts_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        {
            let mut s = Store::open(&path).unwrap();
            assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
            let batch: Vec<_> = (0..100).map(|i| sample(i, 1_700_000_000_000)).collect();
            assert_eq!(s.insert(&batch).unwrap(), 100);
            assert_eq!(s.insert(&batch[..10]).unwrap(), 0);
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.count().unwrap(), 100);
        assert!(s.integrity_ok().unwrap());
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn migrates_a_version_1_database_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        {
            // A database as the first version left it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        {
            let conn = Connection::open(&path).unwrap();
            let mut s = Store { conn };
            s.migrate().unwrap();
            assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
            s.insert(&[sample(1, 5)]).unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert_eq!(s.count().unwrap(), 1);
        let batch = vec![
            Entry::Queue {
                queue_log: Box::new(sample_event(1, 10, "joined")),
            },
            Entry::Call(Box::new(sample(2, 20))),
            Entry::Queue {
                queue_log: Box::new(sample_event(2, 20, "abandoned")),
            },
            Entry::Leg {
                leg: Box::new(crate::cdr::LegRecord {
                    id: "abc@host:2:leg:9".into(),
                    call_record: "abc@host:2".into(),
                    kind: "transfer".into(),
                    trunk: "pstn".into(),
                    number: "113".into(),
                    caller_id: "+4791234567".into(),
                    outcome: "answered".into(),
                    code: None,
                    started_ms: 10,
                    answered_ms: Some(12),
                    ended_ms: 20,
                    hung_up_by: "far_end".into(),
                }),
            },
        ];
        let added = s.insert_entries(&batch).unwrap();
        assert_eq!(
            added,
            Added {
                calls: 1,
                events: 2,
                legs: 1,
                callbacks: 0,
            }
        );
        assert_eq!(s.insert_entries(&batch).unwrap(), Added::default());
        assert_eq!(s.count_queue_log().unwrap(), 2);
        assert_eq!(s.count().unwrap(), 2);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::TooNew(99))));
    }

    fn callback(version: u32, state: &str, attempts_made: u32) -> CallbackRecord {
        CallbackRecord {
            id: 42,
            call_record: "abc@host:1".into(),
            number: "+4791234567".into(),
            typed: false,
            dialled: "116123".into(),
            queue: "advice_pl".into(),
            language: "pl".into(),
            joined_ms: 1_000,
            requested_ms: 61_000,
            deadline_ms: 43_201_000,
            attempts_made,
            attempts: 3,
            retry_after_s: 600,
            window: None,
            state: state.into(),
            last_code: None,
            agent: None,
            updated_ms: 61_000 + i64::from(version),
            version,
        }
    }

    /// A callback is one row, as it last stood: a replayed older version
    /// (the journal after a crash) never overwrites a newer one.
    #[test]
    fn a_callback_keeps_its_newest_version_and_pending_ones_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("r.db")).unwrap();
        let entry = |c: CallbackRecord| Entry::Callback {
            callback: Box::new(c),
        };
        s.insert_entries(&[entry(callback(1, "pending", 0))])
            .unwrap();
        assert_eq!(
            s.pending_callbacks().unwrap(),
            vec![callback(1, "pending", 0)]
        );
        s.insert_entries(&[
            entry(callback(2, "pending", 1)),
            entry(callback(3, "connected", 2)),
        ])
        .unwrap();
        assert!(s.pending_callbacks().unwrap().is_empty());
        // The journal replays the first version again: ignored.
        s.insert_entries(&[entry(callback(1, "pending", 0))])
            .unwrap();
        assert!(s.pending_callbacks().unwrap().is_empty());
        assert_eq!(
            s.callbacks_summary(None, None).unwrap(),
            vec![("connected".to_string(), 1)]
        );
    }
}
