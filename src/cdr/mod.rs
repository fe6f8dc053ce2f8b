//! Call records: one row per ended call in an embedded SQLite database.
//!
//! A record is appended to a journal file on the call path (one small write, no
//! fsync: the page cache outlives a killed process), then handed to a writer
//! thread through a bounded channel. The writer inserts batches in one
//! transaction and empties the journal once everything in it is stored. On
//! start, and after a failed write, the journal is replayed; inserts are
//! idempotent by record id, so replaying twice stores nothing twice.

mod journal;
mod report;
mod store;
mod writer;

pub use journal::Journal;
pub use report::{day_totals, report, to_csv, to_text, Bucket, ReportOptions, ReportRow};
pub use store::{Store, StoreError};
pub use writer::{RecordSink, SinkMetrics};

use serde::{Deserialize, Serialize};

/// Who ended the call.
pub mod hung_up_by {
    pub const CALLER: &str = "caller";
    pub const AGENT: &str = "agent";
    pub const SERVICE: &str = "service";
}

/// Everything kept about one call. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Unique across restarts: the SIP Call-ID and the call's number.
    pub id: String,
    pub call: u64,
    pub sip_call_id: String,
    pub caller: String,
    pub dialled: String,
    pub flow: String,
    pub flow_version: String,
    pub language: Option<String>,
    /// Steps the flow went through, in order.
    pub path: Vec<String>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    pub outcome: String,
    pub started_ms: i64,
    pub answered_ms: Option<i64>,
    pub queued_ms: Option<i64>,
    pub connected_ms: Option<i64>,
    pub ended_ms: i64,
    pub hung_up_by: String,
    pub reason: String,
}

/// The database file under the data directory.
pub const DB_FILE: &str = "records.db";
/// The journal file under the data directory.
pub const JOURNAL_FILE: &str = "records.journal";

/// Wall-clock milliseconds of `then`, given `now` on both clocks.
pub fn wall_ms(
    now: std::time::Instant,
    now_wall: std::time::SystemTime,
    then: std::time::Instant,
) -> i64 {
    let back = now.saturating_duration_since(then);
    let at = now_wall.checked_sub(back).unwrap_or(now_wall);
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) fn sample(call: u64, ended_ms: i64) -> CallRecord {
    CallRecord {
        id: format!("abc@host:{call}"),
        call,
        sip_call_id: "abc@host".into(),
        caller: "sip:4711@127.0.0.1".into(),
        dialled: "116123".into(),
        flow: "main".into(),
        flow_version: "v1".into(),
        language: Some("nb".into()),
        path: vec!["welcome".into(), "menu".into(), "queue".into()],
        queue: Some("advice_nb".into()),
        agent: Some("ola".into()),
        outcome: "answered".into(),
        started_ms: ended_ms - 60_000,
        answered_ms: Some(ended_ms - 60_000),
        queued_ms: Some(ended_ms - 50_000),
        connected_ms: Some(ended_ms - 40_000),
        ended_ms,
        hung_up_by: hung_up_by::CALLER.into(),
        reason: "RemoteBye".into(),
    }
}
