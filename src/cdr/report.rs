//! Service level, abandonment and average speed of answer per language and
//! period, from the call records.

use super::{QueueEvent, Store, StoreError};
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Hour,
}

pub struct ReportOptions {
    pub by: Bucket,
    /// Unix milliseconds, inclusive.
    pub from_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to_ms: Option<i64>,
    /// Answered within this many seconds counts toward the service level.
    pub threshold_s: u32,
}

/// One language in one period. Offered are callers that joined a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub period: String,
    pub language: String,
    pub calls: i64,
    pub offered: i64,
    pub answered: i64,
    pub answered_in_threshold: i64,
    pub abandoned: i64,
    /// Seconds, over answered callers.
    pub asa_seconds: Option<f64>,
}

impl ReportRow {
    pub fn service_level(&self) -> Option<f64> {
        (self.offered > 0).then(|| self.answered_in_threshold as f64 / self.offered as f64)
    }
    pub fn abandonment(&self) -> Option<f64> {
        (self.offered > 0).then(|| self.abandoned as f64 / self.offered as f64)
    }
}

pub fn report(store: &Store, options: &ReportOptions) -> Result<Vec<ReportRow>, StoreError> {
    let format = match options.by {
        Bucket::Day => "%Y-%m-%d",
        Bucket::Hour => "%Y-%m-%d %H:00",
    };
    let sql = "SELECT strftime(?1, started_ms / 1000, 'unixepoch') AS period,
            COALESCE(language, '-') AS lang,
            COUNT(*),
            SUM(queued_ms IS NOT NULL),
            SUM(queued_ms IS NOT NULL AND connected_ms IS NOT NULL),
            SUM(queued_ms IS NOT NULL AND connected_ms IS NOT NULL
                AND connected_ms - queued_ms <= ?2 * 1000),
            SUM(outcome = 'abandoned_queue'),
            AVG(CASE WHEN queued_ms IS NOT NULL AND connected_ms IS NOT NULL
                THEN (connected_ms - queued_ms) / 1000.0 END)
        FROM calls
        WHERE started_ms >= ?3 AND started_ms < ?4 AND outcome != 'refused'
        GROUP BY period, lang ORDER BY period, lang";
    let mut stmt = store.connection().prepare(sql)?;
    let rows = stmt.query_map(
        rusqlite::params![
            format,
            options.threshold_s,
            options.from_ms.unwrap_or(i64::MIN),
            options.to_ms.unwrap_or(i64::MAX)
        ],
        |r| {
            Ok(ReportRow {
                period: r.get(0)?,
                language: r.get(1)?,
                calls: r.get(2)?,
                offered: r.get(3)?,
                answered: r.get(4)?,
                answered_in_threshold: r.get(5)?,
                abandoned: r.get(6)?,
                asa_seconds: r.get(7)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Legs we placed (transfers through trunks) that started in the period,
/// by kind and outcome: `(kind, outcome, count)`.
pub fn legs_summary(
    store: &Store,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let mut stmt = store.connection().prepare(
        "SELECT kind, outcome, COUNT(*) FROM legs WHERE started_ms >= ?1 AND started_ms < ?2
         GROUP BY kind, outcome ORDER BY kind, outcome",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![from_ms.unwrap_or(i64::MIN), to_ms.unwrap_or(i64::MAX)],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// One line per kind of leg: `transfers: 3 answered, 1 failed`.
pub fn legs_text(rows: &[(String, String, i64)]) -> String {
    let mut by_kind: Vec<(&str, Vec<String>)> = Vec::new();
    for (kind, outcome, n) in rows {
        let part = format!("{n} {outcome}");
        match by_kind.iter_mut().find(|(k, _)| *k == kind.as_str()) {
            Some((_, parts)) => parts.push(part),
            None => by_kind.push((kind.as_str(), vec![part])),
        }
    }
    let mut out = String::new();
    for (kind, parts) in by_kind {
        let _ = writeln!(out, "{kind} legs through trunks: {}", parts.join(", "));
    }
    out
}

fn percent(v: Option<f64>) -> String {
    v.map(|v| format!("{:.1}", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// A table for people.
pub fn to_text(rows: &[ReportRow], threshold_s: u32) -> String {
    let mut out = format!(
        "{:<16} {:<4} {:>6} {:>7} {:>8} {:>9} {:>9} {:>7}\n",
        "period",
        "lang",
        "calls",
        "offered",
        "answered",
        format!("SL{threshold_s}s%"),
        "abandon%",
        "ASA s"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<16} {:<4} {:>6} {:>7} {:>8} {:>9} {:>9} {:>7}",
            r.period,
            r.language,
            r.calls,
            r.offered,
            r.answered,
            percent(r.service_level()),
            percent(r.abandonment()),
            r.asa_seconds
                .map(|a| format!("{a:.1}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    out
}

/// CSV with a header line; ratios as fractions, empty when nothing was offered.
pub fn to_csv(rows: &[ReportRow]) -> String {
    let mut out = String::from(
        "period,language,calls,offered,answered,answered_in_threshold,abandoned,service_level,abandonment,asa_seconds\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            r.period,
            r.language,
            r.calls,
            r.offered,
            r.answered,
            r.answered_in_threshold,
            r.abandoned,
            opt(r.service_level()),
            opt(r.abandonment()),
            opt(r.asa_seconds)
        );
    }
    out
}

/// The queue log between `from_ms` (inclusive) and `to_ms` (exclusive), in
/// the order the events happened.
pub fn queue_log(
    store: &Store,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<Vec<QueueEvent>, StoreError> {
    let mut stmt = store.connection().prepare(
        "SELECT id, time_ms, call_id, queue, language, event, agent, code, wait_ms,
            position, state, reason, info
         FROM queue_log WHERE time_ms >= ?1 AND time_ms < ?2 ORDER BY time_ms, id",
    )?;
    let rows = stmt.query_map(
        rusqlite::params![from_ms.unwrap_or(i64::MIN), to_ms.unwrap_or(i64::MAX)],
        |r| {
            Ok(QueueEvent {
                id: r.get(0)?,
                time_ms: r.get(1)?,
                call_id: r.get(2)?,
                queue: r.get(3)?,
                language: r.get(4)?,
                event: r.get(5)?,
                agent: r.get(6)?,
                code: r.get(7)?,
                wait_ms: r.get(8)?,
                position: r.get(9)?,
                state: r.get(10)?,
                reason: r.get(11)?,
                info: r.get(12)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// `2023-11-14 22:13:20.000` (UTC).
fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// The queue log for people: one line per event, the fields it has.
pub fn queue_log_text(rows: &[QueueEvent]) -> String {
    let mut out = format!(
        "{:<23} {:<14} {:<4} {:<13} {:<30} details\n",
        "time (UTC)", "queue", "lang", "event", "call"
    );
    for e in rows {
        let mut details = Vec::new();
        let mut add = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                details.push(format!("{name}={v}"));
            }
        };
        add("agent", e.agent.clone());
        add("code", e.code.map(|c| c.to_string()));
        add(
            "wait",
            e.wait_ms.map(|w| format!("{:.1}s", w as f64 / 1000.0)),
        );
        add("position", e.position.map(|p| p.to_string()));
        add("state", e.state.clone());
        add("reason", e.reason.clone());
        add("info", e.info.clone());
        let _ = writeln!(
            out,
            "{:<23} {:<14} {:<4} {:<13} {:<30} {}",
            utc(e.time_ms),
            e.queue.as_deref().unwrap_or("-"),
            e.language.as_deref().unwrap_or("-"),
            e.event,
            e.call_id.as_deref().unwrap_or("-"),
            details.join(" ")
        );
    }
    out
}

/// One CSV field, quoted when it needs to be (RFC 4180).
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// The queue log as CSV with a header line; absent fields are empty.
pub fn queue_log_csv(rows: &[QueueEvent]) -> String {
    let mut out = String::from(
        "time_ms,time_utc,call_id,queue,language,event,agent,code,wait_ms,position,state,reason,info\n",
    );
    for e in rows {
        let opt = |v: Option<&str>| csv_field(v.unwrap_or(""));
        let num = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            e.time_ms,
            utc(e.time_ms),
            opt(e.call_id.as_deref()),
            opt(e.queue.as_deref()),
            opt(e.language.as_deref()),
            csv_field(&e.event),
            opt(e.agent.as_deref()),
            num(e.code.map(i64::from)),
            num(e.wait_ms),
            num(e.position),
            opt(e.state.as_deref()),
            opt(e.reason.as_deref()),
            opt(e.info.as_deref()),
        );
    }
    out
}

/// One ended call as the day's tallies read it.
#[derive(Debug, Clone)]
pub struct EndedCall {
    pub language: Option<String>,
    pub queue: Option<String>,
    pub outcome: String,
    pub queued_ms: Option<i64>,
    pub connected_ms: Option<i64>,
    pub ended_ms: i64,
    pub reason: Option<String>,
}

/// Hands `f` every call that ended in `[from_ms, to_ms)`, as rows are read
/// (a busy day costs no memory).
pub fn ended_calls(
    store: &Store,
    from_ms: i64,
    to_ms: i64,
    mut f: impl FnMut(EndedCall),
) -> Result<(), StoreError> {
    let mut stmt = store.connection().prepare(
        "SELECT language, queue, outcome, queued_ms, connected_ms, ended_ms, reason
         FROM calls WHERE ended_ms >= ?1 AND ended_ms < ?2",
    )?;
    let mut rows = stmt.query(rusqlite::params![from_ms, to_ms])?;
    while let Some(row) = rows.next()? {
        f(EndedCall {
            language: row.get(0)?,
            queue: row.get(1)?,
            outcome: row.get(2)?,
            queued_ms: row.get(3)?,
            connected_ms: row.get(4)?,
            ended_ms: row.get(5)?,
            reason: row.get(6)?,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{sample, sample_event, Entry};

    #[test]
    fn queue_log_in_order_within_the_period_as_text_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("r.db")).unwrap();
        let base = 1_700_000_000_000;
        let mut answered = sample_event(3, base + 5_000, "answered");
        answered.agent = Some("ola".into());
        answered.wait_ms = Some(5_000);
        let mut paused = sample_event(4, base + 6_000, "agent_state");
        paused.call_id = None;
        paused.queue = None;
        paused.language = None;
        paused.agent = Some("ola".into());
        paused.state = Some("paused".into());
        paused.reason = Some("lunch, then \"coffee\"".into());
        let mut offered = sample_event(2, base, "offered");
        offered.agent = Some("ola".into());
        let events = [
            answered,
            sample_event(1, base, "joined"),
            offered,
            paused,
            // Outside the period asked for.
            sample_event(5, base + 86_400_000, "joined"),
        ];
        let entries: Vec<Entry> = events
            .iter()
            .map(|e| Entry::Queue {
                queue_log: Box::new(e.clone()),
            })
            .collect();
        store.insert_entries(&entries).unwrap();
        let rows = queue_log(&store, Some(base), Some(base + 60_000)).unwrap();
        let kinds: Vec<&str> = rows.iter().map(|r| r.event.as_str()).collect();
        // Same millisecond: the id keeps the order they happened in.
        assert_eq!(kinds, ["joined", "offered", "answered", "agent_state"]);
        let text = queue_log_text(&rows);
        let answered_line = text.lines().nth(3).unwrap();
        assert!(answered_line.starts_with("2023-11-14 22:13:25.000 advice_nb"));
        assert!(answered_line.contains("answered"));
        assert!(answered_line.ends_with("agent=ola wait=5.0s"), "{text}");
        let csv = queue_log_csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with("time_ms,time_utc,call_id,queue"));
        assert_eq!(
            lines[3],
            "1700000005000,2023-11-14 22:13:25.000,abc@host:1,advice_nb,nb,answered,ola,,5000,,,,"
        );
        assert_eq!(
            lines[4],
            "1700000006000,2023-11-14 22:13:26.000,,,,agent_state,ola,,,,paused,\"lunch, then \"\"coffee\"\"\","
        );
    }

    #[test]
    fn service_level_abandonment_and_asa_per_language_and_day() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("r.db")).unwrap();
        // 2023-11-14 22:13:20 UTC and later that day.
        let base = 1_700_000_000_000;
        let mut fast = sample(1, base);
        fast.queued_ms = Some(base - 50_000);
        fast.connected_ms = Some(base - 40_000); // 10 s
        let mut slow = sample(2, base);
        slow.connected_ms = Some(base - 20_000); // 30 s
        let mut gone = sample(3, base);
        gone.connected_ms = None;
        gone.agent = None;
        gone.outcome = "abandoned_queue".into();
        let mut ivr_only = sample(4, base);
        ivr_only.queued_ms = None;
        ivr_only.connected_ms = None;
        let mut english = sample(5, base);
        english.language = Some("en".into());
        // Never answered: not one of the calls the summary counts.
        let mut refused = sample(6, base);
        refused.outcome = crate::cdr::REFUSED.into();
        store
            .insert(&[fast, slow, gone, ivr_only, english, refused])
            .unwrap();
        let rows = report(
            &store,
            &ReportOptions {
                by: Bucket::Day,
                from_ms: None,
                to_ms: None,
                threshold_s: 20,
            },
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        let nb = &rows[1];
        assert_eq!(nb.period, "2023-11-14");
        assert_eq!(nb.language, "nb");
        assert_eq!((nb.calls, nb.offered, nb.answered), (4, 3, 2));
        assert_eq!(nb.answered_in_threshold, 1);
        assert_eq!(nb.abandoned, 1);
        assert_eq!(nb.asa_seconds, Some(20.0));
        assert!((nb.service_level().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        let csv = to_csv(&rows);
        assert!(csv
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("2023-11-14,nb,4,3,2,1,1,0.3333,0.3333,20.0000"));
        assert!(to_text(&rows, 20).contains("SL20s%"));
    }
}
