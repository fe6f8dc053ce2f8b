//! Call records: one row per ended call in an embedded SQLite database.
//!
//! A record is appended to a journal file on the call path (one small write, no
//! fsync: the page cache outlives a killed process), then handed to a writer
//! thread through a bounded channel. The writer inserts batches in one
//! transaction and empties the journal once everything in it is stored. On
//! start, and after a failed write, the journal is replayed; inserts are
//! idempotent by record id, so replaying twice stores nothing twice.
//!
//! Queue events (the `queue_log` table, in the spirit of Asterisk's queue_log)
//! take the same path: the same journal, channel, writer and retries, so a
//! queue event is as safe as a call record and a failing database costs the
//! call path nothing more.

mod journal;
mod report;
mod store;
mod writer;

pub use journal::Journal;
pub use report::{
    ended_calls, legs_summary, legs_text, queue_log, queue_log_csv, queue_log_text, report, to_csv,
    to_text, Bucket, EndedCall, ReportOptions, ReportRow,
};
pub use store::{Added, Store, StoreError};
pub use writer::{RecordSink, WriterObserver};

use serde::{Deserialize, Serialize};

/// Who ended the call.
pub mod hung_up_by {
    pub const CALLER: &str = "caller";
    pub const AGENT: &str = "agent";
    pub const SERVICE: &str = "service";
    /// The outside party of a transfer.
    pub const FAR_END: &str = "far_end";
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

/// One leg we placed for a call (a transfer through a trunk), linked to the
/// caller's record by `call_record`. Kept apart from call records, so that
/// a transferred call is counted once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegRecord {
    /// Unique across restarts: the call record's id and the leg's number.
    pub id: String,
    /// `calls.id` of the caller's call.
    pub call_record: String,
    /// `transfer`, `consultation` (an agent's, that ended without a
    /// transfer) or `callback`.
    pub kind: String,
    pub trunk: String,
    /// The number dialled.
    pub number: String,
    /// The number the far end was shown.
    pub caller_id: String,
    /// `answered`, `failed` or `cancelled`.
    pub outcome: String,
    /// SIP status of a leg that was not answered.
    pub code: Option<u16>,
    pub started_ms: i64,
    pub answered_ms: Option<i64>,
    pub ended_ms: i64,
    pub hung_up_by: String,
}

/// A callback a caller booked, as it stands: written when it is booked and
/// again whenever it moves (an attempt, its end), so that a restarted
/// service calls back every caller still waiting, in their place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRecord {
    /// Unique across restarts.
    pub id: u64,
    /// `calls.id` of the call in which it was booked.
    pub call_record: String,
    pub number: String,
    /// Typed by the caller (else their caller ID).
    pub typed: bool,
    /// The number the caller dialled (shown when we call back).
    pub dialled: String,
    pub queue: String,
    pub language: String,
    /// When the caller first joined the queue: their place.
    pub joined_ms: i64,
    pub requested_ms: i64,
    /// Given up after this.
    pub deadline_ms: i64,
    pub attempts_made: u32,
    pub attempts: u32,
    pub retry_after_s: u64,
    /// The schedule callers are called back in, if any.
    pub window: Option<String>,
    /// `pending`, `connected`, `failed` or `expired`.
    pub state: String,
    /// SIP status of the last attempt that did not connect.
    pub last_code: Option<u16>,
    pub agent: Option<String>,
    /// Orders the versions of one callback: the newest wins.
    pub updated_ms: i64,
    pub version: u32,
}

impl CallbackRecord {
    /// The record as a ticket: what a shared queue keeps with the entry, so
    /// that another node can carry the callback out (JSON, as in the
    /// journal).
    pub fn ticket(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_ticket(ticket: &str) -> Result<CallbackRecord, serde_json::Error> {
        serde_json::from_str(ticket)
    }
}

/// States of a callback (`callbacks.state`).
pub mod callback_state {
    pub const PENDING: &str = "pending";
    pub const CONNECTED: &str = "connected";
    /// Every attempt went unanswered (busy, no answer, failure).
    pub const FAILED: &str = "failed";
    /// Its deadline passed before an agent and the caller were connected.
    pub const EXPIRED: &str = "expired";
}

/// Outcome of a call record for an INVITE refused before answer (the
/// reason says why); kept apart from `hotline_calls_total`'s outcomes.
pub const REFUSED: &str = "refused";

/// Names of the `event` column of `queue_log`.
pub mod queue_event {
    pub const JOINED: &str = "joined";
    pub const OFFERED: &str = "offered";
    pub const RING_NOANSWER: &str = "ring_noanswer";
    pub const OFFER_FAILED: &str = "offer_failed";
    pub const ANSWERED: &str = "answered";
    pub const ABANDONED: &str = "abandoned";
    pub const TIMED_OUT: &str = "timed_out";
    pub const ESCALATED: &str = "escalated";
    /// Agents of another language may take the caller too (`info.language`).
    pub const FALLBACK: &str = "fallback";
    pub const EXITED: &str = "exited";
    /// Transferred out of the queue or away from the agent (`reason` says how).
    pub const TRANSFERRED: &str = "transferred";
    pub const AGENT_STATE: &str = "agent_state";
    /// The caller hung up to be called back, keeping their place.
    pub const CALLBACK_REQUESTED: &str = "callback_requested";
    /// A call to the caller did not connect (`code`); tried again later.
    pub const CALLBACK_ATTEMPT_FAILED: &str = "callback_attempt_failed";
    pub const CALLBACK_CONNECTED: &str = "callback_connected";
    /// Given up: every attempt failed, or its deadline passed (`reason`).
    pub const CALLBACK_FAILED: &str = "callback_failed";
}

/// One row of the queue log. Only the fields that belong to the event are set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueEvent {
    /// Unique across restarts (given by the sink); sorts events of the same
    /// millisecond in the order they happened.
    pub id: String,
    pub time_ms: i64,
    /// The call record's id (`calls.id`), to join the two tables.
    pub call_id: Option<String>,
    pub queue: Option<String>,
    pub language: Option<String>,
    /// One of [`queue_event`].
    pub event: String,
    pub agent: Option<String>,
    /// SIP status of a failed offer.
    pub code: Option<u16>,
    pub wait_ms: Option<i64>,
    /// Place in the queue when the caller left.
    pub position: Option<i64>,
    /// Agent state (`agent_state`).
    pub state: Option<String>,
    /// Why: the exit (`full`, `no_agents`), the pause reason.
    pub reason: Option<String>,
    /// Anything else, as a JSON object (e.g. an escalation's tier).
    pub info: Option<String>,
}

impl QueueEvent {
    pub fn new(event: &str, time_ms: i64) -> QueueEvent {
        QueueEvent {
            event: event.to_string(),
            time_ms,
            ..QueueEvent::default()
        }
    }

    /// Sets `info` to an object with one field.
    pub fn set_info(&mut self, info: QueueEventInfo<'_>) {
        let object = match info {
            QueueEventInfo::Number(key, value) => serde_json::json!({ key: value }),
            QueueEventInfo::Text(key, value) => serde_json::json!({ key: value }),
        };
        self.info = Some(object.to_string());
    }
}

/// The one field of a queue event's `info` (an escalation's tier, a
/// fallback's language).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueEventInfo<'a> {
    Number(&'a str, u64),
    Text(&'a str, &'a str),
}

/// One journal line. Call records keep the plain shape older journals have,
/// so a journal left by an earlier version still replays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    Call(Box<CallRecord>),
    Queue { queue_log: Box<QueueEvent> },
    Leg { leg: Box<LegRecord> },
    Callback { callback: Box<CallbackRecord> },
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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

#[cfg(test)]
pub(crate) fn sample_event(n: u64, time_ms: i64, event: &str) -> QueueEvent {
    QueueEvent {
        id: format!("0000000000001-{n:010}"),
        call_id: Some("abc@host:1".into()),
        queue: Some("advice_nb".into()),
        language: Some("nb".into()),
        ..QueueEvent::new(event, time_ms)
    }
}
