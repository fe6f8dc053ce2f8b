//! Opening hours: weekly hours, date exceptions and Norwegian public holidays,
//! evaluated in local wall time (Europe/Oslo unless a schedule says otherwise),
//! so a range such as `08:00-16:00` means the same on both sides of a DST change.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;

/// The name that always means "open": a hotline with no schedule is 24/7.
pub const ALWAYS: &str = "always";

/// A half-open range of minutes after local midnight, `[start, end)`; `end` may be
/// 1440 (`24:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: u16,
    pub end: u16,
}

impl TimeRange {
    /// Parses `HH:MM-HH:MM`. A range crossing midnight is refused: write it as two.
    pub fn parse(text: &str) -> Result<TimeRange, String> {
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("invalid time range `{text}`: write e.g. `08:00-15:30`"))?;
        let start = parse_clock(a.trim())?;
        let end = parse_clock(b.trim())?;
        if end <= start {
            return Err(format!(
                "time range `{text}` ends before it starts: split ranges that cross midnight, e.g. `22:00-24:00` and `00:00-06:00`"
            ));
        }
        Ok(TimeRange { start, end })
    }

    fn contains(&self, minute: u16) -> bool {
        self.start <= minute && minute < self.end
    }
}

fn parse_clock(text: &str) -> Result<u16, String> {
    let bad = || format!("invalid time `{text}`: write HH:MM, e.g. `08:00` or `24:00`");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A named schedule: when it is "open".
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub timezone: Tz,
    /// Hours per weekday, Monday first; `None` means open around the clock.
    pub weekly: Option<[Vec<TimeRange>; 7]>,
    /// Closed all day on Norwegian public holidays (unless an exception says otherwise).
    pub closed_on_holidays: bool,
    /// Dates with their own hours; an empty list means closed all day.
    pub exceptions: BTreeMap<NaiveDate, Vec<TimeRange>>,
}

impl Schedule {
    /// Open 24/7, every day of the year.
    pub fn always() -> Schedule {
        Schedule {
            name: ALWAYS.into(),
            timezone: chrono_tz::Europe::Oslo,
            weekly: None,
            closed_on_holidays: false,
            exceptions: BTreeMap::new(),
        }
    }

    /// Whether the schedule is open at an instant.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.timezone);
        let date = local.date_naive();
        let minute = (local.hour() * 60 + local.minute()) as u16;
        if let Some(ranges) = self.exceptions.get(&date) {
            return ranges.iter().any(|r| r.contains(minute));
        }
        if self.closed_on_holidays && norwegian_holiday(date).is_some() {
            return false;
        }
        match &self.weekly {
            None => true,
            Some(days) => days
                .get(date.weekday().num_days_from_monday() as usize)
                .is_some_and(|ranges| ranges.iter().any(|r| r.contains(minute))),
        }
    }
}

/// Parses a day or day range as written in `weekly:` (`mon`, `mon-fri`,
/// `sat-sun`, `daily`) into weekday indexes, Monday = 0.
pub fn parse_days(text: &str) -> Result<Vec<usize>, String> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let index = |s: &str| {
        NAMES
            .iter()
            .position(|n| *n == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown day `{s}`: use mon, tue, wed, thu, fri, sat, sun, a range such as `mon-fri`, or `daily`"))
    };
    if text.trim().eq_ignore_ascii_case("daily") {
        return Ok((0..7).collect());
    }
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (index(a)?, index(b)?);
            if b < a {
                return Err(format!(
                    "day range `{text}` runs backwards: write e.g. `mon-fri`"
                ));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![index(text)?]),
    }
}

/// Easter Sunday (Gregorian) by the anonymous algorithm of Meeus, Jones and
/// Butcher; `None` only for years chrono cannot represent.
pub fn easter_sunday(year: i32) -> Option<NaiveDate> {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
}

/// The Norwegian public holiday (helligdag) on a date, if any. Ordinary Sundays
/// are left to the weekly hours.
pub fn norwegian_holiday(date: NaiveDate) -> Option<&'static str> {
    let fixed = match (date.month(), date.day()) {
        (1, 1) => Some("Første nyttårsdag"),
        (5, 1) => Some("Arbeidernes dag"),
        (5, 17) => Some("Grunnlovsdag"),
        (12, 25) => Some("Første juledag"),
        (12, 26) => Some("Andre juledag"),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let easter = easter_sunday(date.year())?;
    let offset = date.signed_duration_since(easter).num_days();
    match offset {
        -3 => Some("Skjærtorsdag"),
        -2 => Some("Langfredag"),
        0 => Some("Første påskedag"),
        1 => Some("Andre påskedag"),
        39 => Some("Kristi himmelfartsdag"),
        49 => Some("Første pinsedag"),
        50 => Some("Andre pinsedag"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration as Days, TimeZone};

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn office() -> Schedule {
        let day = vec![TimeRange::parse("08:00-16:00").unwrap()];
        Schedule {
            name: "office".into(),
            timezone: chrono_tz::Europe::Oslo,
            weekly: Some([
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                vec![],
                vec![],
            ]),
            closed_on_holidays: true,
            exceptions: BTreeMap::from([
                (
                    ymd(2025, 12, 24),
                    vec![TimeRange::parse("09:00-12:00").unwrap()],
                ),
                (ymd(2025, 12, 29), vec![]),
                // A holiday opened on purpose.
                (
                    ymd(2025, 5, 1),
                    vec![TimeRange::parse("10:00-14:00").unwrap()],
                ),
            ]),
        }
    }

    #[test]
    fn known_easter_dates() {
        for (y, m, d) in [
            (1818, 3, 22),
            (1886, 4, 25),
            (1943, 4, 25),
            (1961, 4, 2),
            (2000, 4, 23),
            (2008, 3, 23),
            (2011, 4, 24),
            (2019, 4, 21),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2027, 3, 28),
            (2038, 4, 25),
            (2285, 3, 22),
        ] {
            assert_eq!(easter_sunday(y), Some(ymd(y, m, d)), "{y}");
        }
    }

    #[test]
    fn norwegian_holidays_2025() {
        let expected = [
            (1, 1),
            (4, 17),
            (4, 18),
            (4, 20),
            (4, 21),
            (5, 1),
            (5, 17),
            (5, 29),
            (6, 8),
            (6, 9),
            (12, 25),
            (12, 26),
        ];
        let mut found = Vec::new();
        let mut d = ymd(2025, 1, 1);
        while d.year() == 2025 {
            if norwegian_holiday(d).is_some() {
                found.push((d.month(), d.day()));
            }
            d += Days::days(1);
        }
        assert_eq!(found, expected);
        assert_eq!(
            norwegian_holiday(ymd(2025, 5, 29)),
            Some("Kristi himmelfartsdag")
        );
    }

    #[test]
    fn weekly_hours_in_oslo_time_across_dst() {
        let s = office();
        // Winter (UTC+1): 08:00 local is 07:00Z.
        assert!(!s.is_open(utc("2025-03-28T06:59:00Z")));
        assert!(s.is_open(utc("2025-03-28T07:00:00Z")));
        assert!(s.is_open(utc("2025-03-28T14:59:00Z")));
        assert!(!s.is_open(utc("2025-03-28T15:00:00Z")));
        // Summer time starts Sunday 30 March 2025; Monday 31 March is UTC+2.
        assert!(!s.is_open(utc("2025-03-31T05:59:00Z")));
        assert!(s.is_open(utc("2025-03-31T06:00:00Z")));
        assert!(!s.is_open(utc("2025-03-31T14:00:00Z")));
        // Back to winter time on 26 October 2025; Monday 27 October is UTC+1.
        assert!(!s.is_open(utc("2025-10-27T06:30:00Z")));
        assert!(s.is_open(utc("2025-10-27T07:00:00Z")));
        assert!(s.is_open(utc("2025-10-27T14:30:00Z")));
    }

    #[test]
    fn day_boundary_follows_local_midnight_on_dst_night() {
        let night = vec![
            TimeRange::parse("00:00-02:00").unwrap(),
            TimeRange::parse("03:00-24:00").unwrap(),
        ];
        let s = Schedule {
            weekly: Some(std::array::from_fn(|_| night.clone())),
            ..Schedule::always()
        };
        // 26 Oct 2025: 02:30 local happens twice (00:30Z and 01:30Z), both closed.
        assert!(!s.is_open(utc("2025-10-26T00:30:00Z")));
        assert!(!s.is_open(utc("2025-10-26T01:30:00Z")));
        assert!(s.is_open(utc("2025-10-26T02:00:00Z")));
        // 30 Mar 2025: 01:59 local is 00:59Z, then 03:00 local is 01:00Z.
        assert!(s.is_open(utc("2025-03-30T00:59:00Z")));
        assert!(s.is_open(utc("2025-03-30T01:00:00Z")));
    }

    #[test]
    fn holidays_and_exceptions() {
        let s = office();
        // Langfredag 2025 is a Friday: closed.
        assert!(!s.is_open(utc("2025-04-18T10:00:00Z")));
        // Kristi himmelfartsdag 2025 (Thursday) closed; the day after open.
        assert!(!s.is_open(utc("2025-05-29T10:00:00Z")));
        assert!(s.is_open(utc("2025-05-30T10:00:00Z")));
        // Christmas Eve short day.
        assert!(s.is_open(utc("2025-12-24T08:30:00Z")));
        assert!(!s.is_open(utc("2025-12-24T11:00:00Z")));
        // A closed Monday.
        assert!(!s.is_open(utc("2025-12-29T10:00:00Z")));
        // The exception wins over the holiday.
        assert!(s.is_open(utc("2025-05-01T09:00:00Z")));
        // Weekends closed.
        assert!(!s.is_open(utc("2025-03-29T10:00:00Z")));
    }

    #[test]
    fn always_is_open() {
        let s = Schedule::always();
        let t = chrono_tz::Europe::Oslo
            .with_ymd_and_hms(2025, 12, 25, 3, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        assert!(s.is_open(t));
    }

    #[test]
    fn parses_ranges_and_days() {
        assert_eq!(
            TimeRange::parse("08:00-24:00"),
            Ok(TimeRange {
                start: 480,
                end: 1440
            })
        );
        assert!(TimeRange::parse("22:00-06:00").is_err());
        assert!(TimeRange::parse("8-16").is_err());
        assert!(TimeRange::parse("08:60-09:00").is_err());
        assert_eq!(parse_days("mon-fri"), Ok(vec![0, 1, 2, 3, 4]));
        assert_eq!(parse_days("sun"), Ok(vec![6]));
        assert_eq!(parse_days("daily").map(|d| d.len()), Ok(7));
        assert!(parse_days("fri-mon").is_err());
        assert!(parse_days("funday").is_err());
    }
}
