//! "Now", as every core handler takes it: one value with the monotonic time
//! (for timers, immune to clock steps) and the wall time (for records, opening
//! hours, the wallboard's day and anything that must outlive the process).
//!
//! Only the shell reads the clocks ([`Now::read`]); cores are handed a `Now`,
//! as str0m and quinn-proto are, so tests drive them with a fake clock.

use chrono::{DateTime, TimeZone, Utc};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// For timers and durations within this process.
    pub mono: Instant,
    /// For what is recorded, shared with other nodes or shown to people.
    pub wall: DateTime<Utc>,
}

impl Now {
    /// Reads both clocks. Only the shell (and tools outside the cores) call this.
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: Utc::now(),
        }
    }

    pub fn new(mono: Instant, wall: DateTime<Utc>) -> Now {
        Now { mono, wall }
    }

    /// A fake clock for tests: `mono` paired with a fixed wall time.
    pub fn fake(mono: Instant) -> Now {
        Now {
            mono,
            wall: Utc
                .timestamp_opt(1_767_225_600, 0)
                .single()
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        }
    }

    /// Both clocks moved on by `by`.
    pub fn advanced(self, by: Duration) -> Now {
        Now {
            mono: self.mono + by,
            wall: self.wall + chrono::TimeDelta::from_std(by).unwrap_or_default(),
        }
    }

    /// Both clocks at the monotonic instant `at` (later or earlier than now).
    pub fn at(self, at: Instant) -> Now {
        if at >= self.mono {
            self.advanced(at - self.mono)
        } else {
            Now {
                mono: at,
                wall: self.wall_at(at),
            }
        }
    }

    /// Unix milliseconds of now.
    pub fn wall_ms(&self) -> i64 {
        self.wall.timestamp_millis()
    }

    /// Unix seconds of now, with a fraction (live events).
    pub fn unix_seconds(&self) -> f64 {
        self.wall.timestamp_millis() as f64 / 1000.0
    }

    /// The wall time of an earlier (or later) monotonic instant.
    pub fn wall_at(&self, then: Instant) -> DateTime<Utc> {
        let delta = if then <= self.mono {
            -chrono::TimeDelta::from_std(self.mono - then).unwrap_or_default()
        } else {
            chrono::TimeDelta::from_std(then - self.mono).unwrap_or_default()
        };
        self.wall + delta
    }

    /// Unix milliseconds of an earlier (or later) monotonic instant.
    pub fn wall_ms_at(&self, then: Instant) -> i64 {
        self.wall_at(then).timestamp_millis()
    }

    /// The monotonic instant of a wall time (a deadline kept as wall time,
    /// for example one read back from a shared store). Past times map to now
    /// or earlier; nothing before the process started can be represented, so
    /// those are clamped to now.
    pub fn mono_at(&self, wall: DateTime<Utc>) -> Instant {
        let delta = wall - self.wall;
        match delta.to_std() {
            Ok(ahead) => self.mono + ahead,
            Err(_) => (-delta)
                .to_std()
                .ok()
                .and_then(|back| self.mono.checked_sub(back))
                .unwrap_or(self.mono),
        }
    }

    /// How long ago the wall time `then` was (zero if it is in the future).
    pub fn since_wall(&self, then: DateTime<Utc>) -> Duration {
        (self.wall - then).to_std().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_clocks_move_together() {
        let t0 = Instant::now();
        let now = Now::fake(t0);
        let later = now.advanced(Duration::from_millis(1500));
        assert_eq!(later.mono - t0, Duration::from_millis(1500));
        assert_eq!(later.wall_ms() - now.wall_ms(), 1500);
        assert_eq!(later.wall_ms_at(t0), now.wall_ms());
        assert_eq!(later.at(t0), now);
    }

    #[test]
    fn wall_deadlines_map_to_instants() {
        let t0 = Instant::now() + Duration::from_secs(3600);
        let now = Now::fake(t0);
        let in_ten = now.wall + chrono::TimeDelta::seconds(10);
        assert_eq!(now.mono_at(in_ten), t0 + Duration::from_secs(10));
        let ago = now.wall - chrono::TimeDelta::seconds(10);
        assert_eq!(now.mono_at(ago), t0 - Duration::from_secs(10));
        assert_eq!(now.since_wall(ago), Duration::from_secs(10));
        assert_eq!(now.since_wall(in_ten), Duration::ZERO);
    }
}
