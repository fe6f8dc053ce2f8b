//! The wallboard's last hour: per minute and language, the most callers
//! waiting at once and the queue outcomes that make the service level.
//!
//! A bounded ring of [`MINUTES`] samples, one per wall-clock minute, kept by
//! the service so that a wallboard opened now shows the past hour, not only
//! what happened since it was opened. Nothing here reads a clock: every
//! method takes the wall-clock instant, and minutes in which nothing happened
//! are filled in when time moves on (callers still waiting are carried over).

use crate::language::Language;
use crate::today::SERVICE_LEVEL_SECONDS;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Minutes kept: one hour.
pub const MINUTES: usize = 60;

const LANGUAGES: usize = Language::ALL.len();

/// One language in one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LanguageMinute {
    /// The most callers waiting at once during the minute.
    pub waiting: u32,
    pub answered: u32,
    /// Answered within `SERVICE_LEVEL_SECONDS`.
    pub answered_in_time: u32,
    /// Hung up while waiting, short abandons left out (as on the wallboard).
    pub abandoned: u32,
}

impl LanguageMinute {
    /// Answered in time over answered and abandoned, in percent; `None` when
    /// nobody was answered or gave up in the minute.
    pub fn service_level(&self) -> Option<f64> {
        let offered = self.answered + self.abandoned;
        (offered > 0).then(|| 100.0 * f64::from(self.answered_in_time) / f64::from(offered))
    }
}

#[derive(Clone, Debug)]
struct Sample {
    /// Unix minute: seconds since the epoch divided by 60.
    minute: i64,
    languages: [LanguageMinute; LANGUAGES],
}

/// The ring of per-minute samples. Consecutive minutes, oldest first, at
/// most [`MINUTES`] of them; the last is the minute in progress.
#[derive(Clone, Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
    /// Callers waiting now, per language, carried into the next minutes.
    waiting_now: [u32; LANGUAGES],
}

fn index(language: Language) -> usize {
    Language::ALL
        .iter()
        .position(|l| *l == language)
        .unwrap_or(0)
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Callers waiting now, per language (a language left out has none).
    pub fn waiting(&mut self, now: DateTime<Utc>, waiting: &[(Language, usize)]) {
        let mut counts = [0u32; LANGUAGES];
        for (language, n) in waiting {
            let c = &mut counts[index(*language)];
            *c = c.saturating_add(u32::try_from(*n).unwrap_or(u32::MAX));
        }
        self.waiting_now = counts;
        let sample = self.at(now);
        for (minute, n) in sample.languages.iter_mut().zip(counts) {
            minute.waiting = minute.waiting.max(n);
        }
    }

    /// A queued caller of `language` was answered after `waited_seconds`.
    pub fn answered(&mut self, now: DateTime<Utc>, language: Language, waited_seconds: f64) {
        let m = &mut self.at(now).languages[index(language)];
        m.answered = m.answered.saturating_add(1);
        if waited_seconds <= SERVICE_LEVEL_SECONDS {
            m.answered_in_time = m.answered_in_time.saturating_add(1);
        }
    }

    /// A queued caller of `language` hung up; a short abandon is not counted.
    pub fn abandoned(&mut self, now: DateTime<Utc>, language: Language, short: bool) {
        if !short {
            let m = &mut self.at(now).languages[index(language)];
            m.abandoned = m.abandoned.saturating_add(1);
        }
    }

    /// The last hour up to `now`, by language: one entry per minute from the
    /// oldest kept (the service's start, at most an hour ago) to the minute
    /// in progress.
    pub fn series(&mut self, now: DateTime<Utc>) -> Series {
        self.at(now);
        let start = self.samples.front().map_or(0, |s| s.minute * 60);
        let mut languages = BTreeMap::new();
        for (i, language) in Language::ALL.iter().enumerate() {
            let mut line = Line::default();
            for s in &self.samples {
                let m = s.languages[i];
                line.waiting.push(m.waiting);
                line.answered.push(m.answered);
                line.answered_in_time.push(m.answered_in_time);
                line.abandoned.push(m.abandoned);
                line.service_level.push(m.service_level());
            }
            languages.insert(language.code(), line);
        }
        Series {
            step_seconds: 60,
            start,
            minutes: self.samples.len(),
            service_level_seconds: SERVICE_LEVEL_SECONDS,
            languages,
        }
    }

    /// The sample of `now`'s minute, filling the minutes since the last one
    /// (at most an hour of them) with the callers still waiting. A clock
    /// that stepped back counts in the latest minute.
    fn at(&mut self, now: DateTime<Utc>) -> &mut Sample {
        let minute = now.timestamp().div_euclid(60);
        let next = self.samples.back().map(|s| s.minute + 1);
        if next.is_none_or(|n| minute >= n) {
            let hour_ago = minute - (MINUTES as i64 - 1);
            let from = next.map_or(minute, |n| n.max(hour_ago));
            for m in from..=minute {
                let mut languages = [LanguageMinute::default(); LANGUAGES];
                for (l, n) in languages.iter_mut().zip(self.waiting_now) {
                    l.waiting = n;
                }
                self.samples.push_back(Sample {
                    minute: m,
                    languages,
                });
                if self.samples.len() > MINUTES {
                    self.samples.pop_front();
                }
            }
        }
        // Not reached (a sample was pushed above or one was there), but an
        // empty ring must not be indexed.
        if self.samples.is_empty() {
            self.samples.push_back(Sample {
                minute,
                languages: [LanguageMinute::default(); LANGUAGES],
            });
        }
        let last = self.samples.len() - 1;
        &mut self.samples[last]
    }
}

/// The last hour as `GET /api/history` answers it: per language, one value
/// per minute, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    pub step_seconds: u32,
    /// Unix seconds at the start of the first minute.
    pub start: i64,
    pub minutes: usize,
    pub service_level_seconds: f64,
    pub languages: BTreeMap<&'static str, Line>,
}

/// One language's minutes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Line {
    pub waiting: Vec<u32>,
    pub answered: Vec<u32>,
    pub answered_in_time: Vec<u32>,
    pub abandoned: Vec<u32>,
    /// Percent; null in a minute nobody was answered or gave up.
    pub service_level: Vec<Option<f64>>,
}

/// The history behind a lock, shared by the call core (which records) and
/// the API (which reads). Each operation is a few array updates.
#[derive(Debug, Default)]
pub struct LastHour(Mutex<History>);

impl LastHour {
    /// Runs `f` on the history; `None` if a panic poisoned the lock.
    pub fn with<R>(&self, f: impl FnOnce(&mut History) -> R) -> Option<R> {
        self.0.lock().ok().map(|mut h| f(&mut h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// 10:00 UTC plus `s` seconds, on a fixed day.
    fn at(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0)
            .single()
            .expect("valid instant")
            + chrono::Duration::seconds(s)
    }

    #[test]
    fn a_minute_keeps_the_most_waiting_and_its_outcomes() {
        let mut h = History::new();
        h.waiting(at(5), &[(Language::Pl, 1)]);
        h.waiting(at(20), &[(Language::Pl, 3), (Language::En, 1)]);
        h.waiting(at(40), &[(Language::Pl, 2)]);
        h.answered(at(41), Language::Pl, 12.0);
        h.answered(at(42), Language::Pl, 45.0);
        h.abandoned(at(43), Language::Pl, false);
        h.abandoned(at(44), Language::Pl, true);
        let s = h.series(at(59));
        assert_eq!(s.minutes, 1);
        assert_eq!(s.start, at(0).timestamp());
        let pl = &s.languages["pl"];
        assert_eq!(pl.waiting, [3]);
        assert_eq!(pl.answered, [2]);
        assert_eq!(pl.answered_in_time, [1]);
        assert_eq!(pl.abandoned, [1], "the short abandon is left out");
        let sl = pl.service_level[0].expect("outcomes this minute");
        assert!((sl - 100.0 / 3.0).abs() < 1e-9, "{sl}");
        assert_eq!(s.languages["en"].waiting, [1]);
        assert_eq!(s.languages["nb"].service_level, [None]);
    }

    #[test]
    fn quiet_minutes_are_filled_with_the_callers_still_waiting() {
        let mut h = History::new();
        h.waiting(at(10), &[(Language::Ar, 2)]);
        h.answered(at(70), Language::Ar, 5.0);
        // Nothing happens for three minutes; one caller left at 70 s.
        h.waiting(at(75), &[(Language::Ar, 1)]);
        let s = h.series(at(4 * 60 + 30));
        assert_eq!(s.minutes, 5);
        let ar = &s.languages["ar"];
        assert_eq!(ar.waiting, [2, 2, 1, 1, 1]);
        assert_eq!(ar.answered, [0, 1, 0, 0, 0]);
        assert_eq!(ar.service_level, [None, Some(100.0), None, None, None]);
    }

    #[test]
    fn only_the_last_hour_is_kept() {
        let mut h = History::new();
        for minute in 0..150 {
            h.answered(at(minute * 60), Language::Nb, 1.0);
        }
        let s = h.series(at(149 * 60));
        assert_eq!(s.minutes, MINUTES);
        assert_eq!(s.start, at(90 * 60).timestamp());
        assert!(s.languages["nb"].answered.iter().all(|n| *n == 1));

        // Two idle hours later: an hour of empty minutes, still bounded.
        h.waiting(at(150 * 60), &[(Language::Ro, 4)]);
        let s = h.series(at(300 * 60 + 5));
        assert_eq!(s.minutes, MINUTES);
        assert_eq!(s.start, at(241 * 60).timestamp());
        assert!(s.languages["nb"].answered.iter().all(|n| *n == 0));
        assert!(s.languages["ro"].waiting.iter().all(|n| *n == 4));
    }

    #[test]
    fn a_clock_stepping_back_counts_in_the_latest_minute() {
        let mut h = History::new();
        h.answered(at(600), Language::Lt, 3.0);
        h.abandoned(at(500), Language::Lt, false);
        let s = h.series(at(590));
        assert_eq!(s.minutes, 1);
        assert_eq!(s.start, at(600).timestamp());
        assert_eq!(s.languages["lt"].answered, [1]);
        assert_eq!(s.languages["lt"].abandoned, [1]);
    }

    #[test]
    fn the_series_serialises_per_language() {
        let mut h = History::new();
        h.waiting(at(0), &[(Language::Ru, 1)]);
        let json = serde_json::to_value(h.series(at(1))).expect("json");
        assert_eq!(json["step_seconds"], 60);
        assert_eq!(json["languages"]["ru"]["waiting"], serde_json::json!([1]));
        assert_eq!(
            json["languages"]["ru"]["service_level"],
            serde_json::json!([null])
        );
        assert_eq!(json["languages"].as_object().map(|o| o.len()), Some(7));
    }
}
