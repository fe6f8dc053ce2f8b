//! Today's totals for the wallboard: languages chosen, call outcomes and each
//! queue's answered and abandoned callers since local midnight.
//!
//! Prometheus counters run from the process start, which is right for rates
//! but wrong for a wallboard that says "today": a restart at noon would zero
//! it, and a service up for a week would show the week. These totals start
//! again at midnight in the hotline's timezone and are seeded at start from
//! the call records, so a restart mid-day keeps the day's figures.
//!
//! Every method takes the wall-clock instant, so the day rollover is testable.

use crate::language::Language;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Answered within this many seconds counts toward the service level (the
/// wallboard's `answered_in_time`).
pub const SERVICE_LEVEL_SECONDS: f64 = 20.0;

/// One queue and language today.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct QueueDay {
    pub answered: u64,
    /// Answered within `SERVICE_LEVEL_SECONDS`.
    pub answered_in_time: u64,
    /// Every caller who hung up while waiting, short abandons included.
    pub abandoned: u64,
    /// Abandons within the queue's short-abandon threshold (also in `abandoned`).
    pub short_abandoned: u64,
}

/// The figures of one local day. Keys are bounded sets: language codes,
/// outcome names and queue names from the flows.
#[derive(Debug, Clone, PartialEq)]
pub struct DayTotals {
    pub day: NaiveDate,
    pub languages: BTreeMap<Language, u64>,
    pub outcomes: BTreeMap<String, u64>,
    /// By (queue, language).
    pub queues: BTreeMap<(String, Language), QueueDay>,
}

impl DayTotals {
    pub fn new(day: NaiveDate) -> DayTotals {
        DayTotals {
            day,
            languages: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            queues: BTreeMap::new(),
        }
    }

    pub fn language_chosen(&mut self, language: Language) {
        *self.languages.entry(language).or_default() += 1;
    }

    /// Only the outcomes of `hotline_calls_total` are kept (a bounded set).
    pub fn call_ended(&mut self, outcome: &str) {
        if let Some(known) = crate::outcome::ALL.iter().find(|o| **o == outcome) {
            *self.outcomes.entry((*known).to_string()).or_default() += 1;
        }
    }

    pub fn queue_answered(&mut self, queue: &str, language: Language, waited_seconds: f64) {
        let q = self.queue(queue, language);
        q.answered += 1;
        if waited_seconds <= SERVICE_LEVEL_SECONDS {
            q.answered_in_time += 1;
        }
    }

    pub fn queue_abandoned(&mut self, queue: &str, language: Language, short: bool) {
        let q = self.queue(queue, language);
        q.abandoned += 1;
        if short {
            q.short_abandoned += 1;
        }
    }

    fn queue(&mut self, queue: &str, language: Language) -> &mut QueueDay {
        self.queues
            .entry((queue.to_string(), language))
            .or_default()
    }

    /// Adds another tally of the same day (used to seed from the records).
    pub fn add(&mut self, other: &DayTotals) {
        for (l, n) in &other.languages {
            *self.languages.entry(*l).or_default() += n;
        }
        for (o, n) in &other.outcomes {
            *self.outcomes.entry(o.clone()).or_default() += n;
        }
        for (k, v) in &other.queues {
            let q = self.queues.entry(k.clone()).or_default();
            q.answered += v.answered;
            q.answered_in_time += v.answered_in_time;
            q.abandoned += v.abandoned;
            q.short_abandoned += v.short_abandoned;
        }
    }
}

/// Where the day starts when the configuration names no timezone.
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Europe::Oslo;

/// Today's totals behind a lock, shared by the call core (which counts) and
/// the API (which reads). Each operation is a few map updates.
pub struct Today {
    timezone: Mutex<Tz>,
    totals: Mutex<DayTotals>,
    /// Cluster mode: the other nodes' totals, as they last published them.
    others: Mutex<BTreeMap<String, DayTotals>>,
}

impl Today {
    pub fn new(timezone: Tz, now: DateTime<Utc>) -> Today {
        Today {
            timezone: Mutex::new(timezone),
            totals: Mutex::new(DayTotals::new(local_day(timezone, now))),
            others: Mutex::new(BTreeMap::new()),
        }
    }

    /// The hotline's timezone changed (configuration): the day is recomputed
    /// on the next count or read.
    pub fn set_timezone(&self, timezone: Tz) {
        if let Ok(mut tz) = self.timezone.lock() {
            *tz = timezone;
        }
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
            .lock()
            .map(|tz| *tz)
            .unwrap_or(DEFAULT_TIMEZONE)
    }

    /// The local day at `now`.
    pub fn day_at(&self, now: DateTime<Utc>) -> NaiveDate {
        local_day(self.timezone(), now)
    }

    /// Local midnight starting the day of `now`, in Unix milliseconds.
    pub fn midnight_ms(&self, now: DateTime<Utc>) -> i64 {
        let tz = self.timezone();
        let day = local_day(tz, now);
        day.and_hms_opt(0, 0, 0)
            .and_then(|m| tz.from_local_datetime(&m).earliest())
            .map_or(now.timestamp_millis(), |m| m.timestamp_millis())
    }

    /// Runs `f` on the totals of `now`'s day, starting a new day first when
    /// midnight has passed.
    fn with<R>(&self, now: DateTime<Utc>, f: impl FnOnce(&mut DayTotals) -> R) -> Option<R> {
        let day = self.day_at(now);
        let mut totals = self.totals.lock().ok()?;
        if totals.day != day {
            tracing::info!(from = %totals.day, to = %day, "wallboard totals: a new day");
            *totals = DayTotals::new(day);
        }
        Some(f(&mut totals))
    }

    pub fn language_chosen(&self, now: DateTime<Utc>, language: Language) {
        self.with(now, |t| t.language_chosen(language));
    }

    pub fn call_ended(&self, now: DateTime<Utc>, outcome: &str) {
        self.with(now, |t| t.call_ended(outcome));
    }

    pub fn queue_answered(
        &self,
        now: DateTime<Utc>,
        queue: &str,
        language: Language,
        waited_seconds: f64,
    ) {
        self.with(now, |t| t.queue_answered(queue, language, waited_seconds));
    }

    pub fn queue_abandoned(
        &self,
        now: DateTime<Utc>,
        queue: &str,
        language: Language,
        short: bool,
    ) {
        self.with(now, |t| t.queue_abandoned(queue, language, short));
    }

    /// Adds a tally of `now`'s day (from the call records at start); a tally
    /// of another day is ignored.
    pub fn seed(&self, now: DateTime<Utc>, seed: &DayTotals) {
        self.with(now, |t| {
            if t.day == seed.day {
                t.add(seed);
            }
        });
    }

    /// A copy of the totals of `now`'s day.
    pub fn snapshot(&self, now: DateTime<Utc>) -> DayTotals {
        self.with(now, |t| t.clone())
            .unwrap_or_else(|| DayTotals::new(self.day_at(now)))
    }

    /// Cluster mode: the other nodes' totals, by node.
    pub fn set_others(&self, others: BTreeMap<String, DayTotals>) {
        if let Ok(mut o) = self.others.lock() {
            *o = others;
        }
    }

    /// This node's totals and, in cluster mode, the other nodes' of the
    /// same day: the whole hotline's day.
    pub fn cluster_snapshot(&self, now: DateTime<Utc>) -> DayTotals {
        let mut totals = self.snapshot(now);
        if let Ok(others) = self.others.lock() {
            let day = totals.day;
            for other in others.values().filter(|o| o.day == day) {
                totals.add(other);
            }
        }
        totals
    }
}

impl Default for Today {
    fn default() -> Self {
        Today::new(DEFAULT_TIMEZONE, Utc::now())
    }
}

/// The calendar date in `tz` at `now`.
pub fn local_day(tz: Tz, now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&tz).date_naive()
}

/// Tallies the calls that ended in `[from_ms, to_ms)` as the wallboard counts
/// them (languages, outcomes, per queue and language answered and abandoned),
/// to seed today's totals at start. `short_abandon` gives a queue's
/// short-abandon threshold. Rows are folded as they are read, so a busy day
/// costs no memory.
pub fn day_totals(
    store: &crate::cdr::Store,
    day: chrono::NaiveDate,
    from_ms: i64,
    to_ms: i64,
    short_abandon: impl Fn(&str) -> std::time::Duration,
) -> Result<DayTotals, crate::cdr::StoreError> {
    use crate::language::Language;
    let mut totals = DayTotals::new(day);
    crate::cdr::ended_calls(store, from_ms, to_ms, |call| {
        let crate::cdr::EndedCall {
            language,
            queue,
            outcome,
            queued_ms,
            connected_ms,
            ended_ms,
            reason,
        } = call;
        // A refused call is counted live as `hotline_calls_total` counts it.
        let counted = match (outcome.as_str(), reason.as_deref().unwrap_or("")) {
            (crate::cdr::REFUSED, "max_transactions") => None,
            (crate::cdr::REFUSED, "no_media_port") => Some(crate::outcome::FAILED),
            (crate::cdr::REFUSED, _) => Some(crate::outcome::REJECTED),
            (other, _) => Some(other),
        };
        if let Some(outcome) = counted {
            totals.call_ended(outcome);
        }
        let language = language.and_then(|l| l.parse::<Language>().ok());
        let Some(language) = language else { return };
        totals.language_chosen(language);
        let (Some(queue), Some(queued)) = (queue, queued_ms) else {
            return;
        };
        if let Some(connected) = connected_ms {
            let waited = connected.saturating_sub(queued) as f64 / 1000.0;
            totals.queue_answered(&queue, language, waited);
        } else if outcome == crate::outcome::ABANDONED_QUEUE {
            let waited = u64::try_from(ended_ms.saturating_sub(queued)).unwrap_or(0);
            let short = std::time::Duration::from_millis(waited) < short_abandon(&queue);
            totals.queue_abandoned(&queue, language, short);
        }
    })?;
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid instant")
    }

    #[test]
    fn a_cluster_snapshot_adds_the_other_nodes_of_the_same_day() {
        let now = utc(2026, 12, 1, 12, 0);
        let today = Today::new(chrono_tz::Europe::Oslo, now);
        today.call_ended(now, "answered");
        let mut b = DayTotals::new(today.day_at(now));
        b.call_ended("answered");
        b.queue_answered("advice_pl", Language::Pl, 5.0);
        let mut yesterday = DayTotals::new(today.day_at(utc(2026, 11, 30, 12, 0)));
        yesterday.call_ended("answered");
        let wire = crate::cluster::wire::WireDay::from(&b);
        let b = wire.totals().expect("a day");
        today.set_others([("b".to_string(), b), ("c".to_string(), yesterday)].into());
        let all = today.cluster_snapshot(now);
        assert_eq!(all.outcomes.get("answered"), Some(&2));
        assert_eq!(
            all.queues[&("advice_pl".to_string(), Language::Pl)].answered,
            1
        );
        // The node's own snapshot stays its own.
        assert_eq!(today.snapshot(now).outcomes.get("answered"), Some(&1));
    }

    #[test]
    fn totals_start_again_at_local_midnight_not_utc_midnight() {
        // Oslo is UTC+1 in December: local midnight is 23:00 UTC.
        let today = Today::new(chrono_tz::Europe::Oslo, utc(2026, 12, 1, 12, 0));
        today.language_chosen(utc(2026, 12, 1, 12, 0), Language::Pl);
        today.call_ended(utc(2026, 12, 1, 12, 5), "abandoned_queue");
        today.queue_abandoned(utc(2026, 12, 1, 12, 5), "advice_pl", Language::Pl, false);
        today.queue_answered(utc(2026, 12, 1, 22, 30), "advice_pl", Language::Pl, 12.0);
        today.queue_answered(utc(2026, 12, 1, 22, 40), "advice_pl", Language::Pl, 90.0);

        let before = today.snapshot(utc(2026, 12, 1, 22, 59));
        assert_eq!(
            before.day,
            NaiveDate::from_ymd_opt(2026, 12, 1).expect("date")
        );
        assert_eq!(before.languages.get(&Language::Pl), Some(&1));
        assert_eq!(before.outcomes.get("abandoned_queue"), Some(&1));
        let pl = before.queues[&("advice_pl".to_string(), Language::Pl)];
        assert_eq!(
            pl,
            QueueDay {
                answered: 2,
                answered_in_time: 1,
                abandoned: 1,
                short_abandoned: 0
            }
        );

        // 23:00 UTC is 00:00 in Oslo: a new, empty day.
        let after = today.snapshot(utc(2026, 12, 1, 23, 0));
        assert_eq!(
            after.day,
            NaiveDate::from_ymd_opt(2026, 12, 2).expect("date")
        );
        assert!(after.languages.is_empty() && after.outcomes.is_empty());
        assert!(after.queues.is_empty());
        today.call_ended(utc(2026, 12, 1, 23, 1), "answered");
        today.call_ended(utc(2026, 12, 1, 23, 2), "no_such_outcome");
        let later = today.snapshot(utc(2026, 12, 2, 9, 0));
        assert_eq!(later.outcomes.len(), 1);
        assert_eq!(later.outcomes.get("answered"), Some(&1));
    }

    #[test]
    fn a_seed_of_the_same_day_adds_and_another_day_is_ignored() {
        let now = utc(2026, 7, 1, 10, 0);
        let today = Today::new(chrono_tz::Europe::Oslo, now);
        today.call_ended(now, "answered");
        let mut seed = DayTotals::new(today.day_at(now));
        seed.call_ended("answered");
        seed.language_chosen(Language::Ar);
        seed.queue_abandoned("advice_ar", Language::Ar, true);
        today.seed(now, &seed);
        let mut yesterday = DayTotals::new(today.day_at(now).pred_opt().expect("date"));
        yesterday.call_ended("answered");
        today.seed(now, &yesterday);

        let t = today.snapshot(now);
        assert_eq!(t.outcomes.get("answered"), Some(&2));
        assert_eq!(t.languages.get(&Language::Ar), Some(&1));
        assert_eq!(
            t.queues[&("advice_ar".to_string(), Language::Ar)].short_abandoned,
            1
        );
    }

    #[test]
    fn midnight_is_local_and_follows_summer_time() {
        let today = Today::new(chrono_tz::Europe::Oslo, utc(2026, 7, 1, 10, 0));
        // Summer: UTC+2, so local midnight of 1 July is 22:00 UTC on 30 June.
        assert_eq!(
            today.midnight_ms(utc(2026, 7, 1, 10, 0)),
            utc(2026, 6, 30, 22, 0).timestamp_millis()
        );
        today.set_timezone(chrono_tz::UTC);
        assert_eq!(
            today.midnight_ms(utc(2026, 7, 1, 10, 0)),
            utc(2026, 7, 1, 0, 0).timestamp_millis()
        );
    }

    #[test]
    fn day_totals_count_the_days_calls_as_the_wallboard_does() {
        use crate::language::Language;
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::cdr::Store::open(&dir.path().join("r.db")).unwrap();
        let base = 1_700_000_000_000;
        let mut fast = crate::cdr::sample(1, base);
        fast.queued_ms = Some(base - 50_000);
        fast.connected_ms = Some(base - 40_000);
        let mut gone = crate::cdr::sample(2, base);
        gone.connected_ms = None;
        gone.outcome = "abandoned_queue".into();
        gone.queued_ms = Some(base - 2_000);
        let mut yesterday = crate::cdr::sample(3, base - 86_400_000);
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
