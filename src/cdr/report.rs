//! Service level, abandonment and average speed of answer per language and
//! period, from the call records.

use super::{Store, StoreError};
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
        WHERE started_ms >= ?3 AND started_ms < ?4
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

/// Tallies the calls that ended in `[from_ms, to_ms)` as the wallboard counts
/// them (languages, outcomes, per queue and language answered and abandoned),
/// to seed today's totals at start. `short_abandon` gives a queue's
/// short-abandon threshold. Rows are folded as they are read, so a busy day
/// costs no memory.
pub fn day_totals(
    store: &Store,
    day: chrono::NaiveDate,
    from_ms: i64,
    to_ms: i64,
    short_abandon: impl Fn(&str) -> std::time::Duration,
) -> Result<crate::today::DayTotals, StoreError> {
    use crate::language::Language;
    let mut totals = crate::today::DayTotals::new(day);
    let mut stmt = store.connection().prepare(
        "SELECT language, queue, outcome, queued_ms, connected_ms, ended_ms
         FROM calls WHERE ended_ms >= ?1 AND ended_ms < ?2",
    )?;
    let mut rows = stmt.query(rusqlite::params![from_ms, to_ms])?;
    while let Some(row) = rows.next()? {
        let language: Option<String> = row.get(0)?;
        let queue: Option<String> = row.get(1)?;
        let outcome: String = row.get(2)?;
        let queued_ms: Option<i64> = row.get(3)?;
        let connected_ms: Option<i64> = row.get(4)?;
        let ended_ms: i64 = row.get(5)?;
        totals.call_ended(&outcome);
        let language = language.and_then(|l| l.parse::<Language>().ok());
        let Some(language) = language else { continue };
        totals.language_chosen(language);
        let (Some(queue), Some(queued)) = (queue, queued_ms) else {
            continue;
        };
        if let Some(connected) = connected_ms {
            let waited = connected.saturating_sub(queued) as f64 / 1000.0;
            totals.queue_answered(&queue, language, waited);
        } else if outcome == crate::metrics::outcome::ABANDONED_QUEUE {
            let waited = u64::try_from(ended_ms.saturating_sub(queued)).unwrap_or(0);
            let short = std::time::Duration::from_millis(waited) < short_abandon(&queue);
            totals.queue_abandoned(&queue, language, short);
        }
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::sample;

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
        store
            .insert(&[fast, slow, gone, ivr_only, english])
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

    #[test]
    fn day_totals_count_the_days_calls_as_the_wallboard_does() {
        use crate::language::Language;
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("r.db")).unwrap();
        let base = 1_700_000_000_000;
        let mut fast = sample(1, base);
        fast.queued_ms = Some(base - 50_000);
        fast.connected_ms = Some(base - 40_000);
        let mut gone = sample(2, base);
        gone.connected_ms = None;
        gone.outcome = "abandoned_queue".into();
        gone.queued_ms = Some(base - 2_000);
        let mut yesterday = sample(3, base - 86_400_000);
        yesterday.language = Some("pl".into());
        store.insert(&[fast, gone, yesterday]).unwrap();
        let day = chrono::NaiveDate::from_ymd_opt(2023, 11, 14).unwrap();
        let t = day_totals(&store, day, base - 3_600_000, base + 1, |_| {
            std::time::Duration::from_secs(5)
        })
        .unwrap();
        assert_eq!(t.languages.get(&Language::Nb), Some(&2));
        assert_eq!(t.languages.get(&Language::Pl), None);
        assert_eq!(t.outcomes.get("answered"), Some(&1));
        assert_eq!(t.outcomes.get("abandoned_queue"), Some(&1));
        let q = t.queues[&("advice_nb".to_string(), Language::Nb)];
        assert_eq!(
            (
                q.answered,
                q.answered_in_time,
                q.abandoned,
                q.short_abandoned
            ),
            (1, 1, 1, 1)
        );
    }
}
