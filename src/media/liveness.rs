//! The RTP timeout of one leg, sans IO: whether the far end still sends.
//!
//! The pacer's housekeeping feeds every leg's packet count (counted by its
//! receive task) to its [`Liveness`] once a second, from the one pacing clock:
//! no timer per call.

use std::time::{Duration, Instant};

/// The RTP timeout of one leg that should be receiving: fed the leg's packet
/// count, it reports a silence of `timeout` once, and watches again when
/// media comes back.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// Packets received as last seen.
    count: u64,
    /// Since when that count has not changed.
    since: Instant,
    reported: bool,
}

impl Liveness {
    /// Starts watching at `now`, with the packet count so far.
    pub fn new(now: Instant, count: u64) -> Liveness {
        Liveness {
            count,
            since: now,
            reported: false,
        }
    }

    /// True exactly once per silence: when `count` has not moved for
    /// `timeout` by `now`.
    pub fn poll_timeout(&mut self, now: Instant, count: u64, timeout: Duration) -> bool {
        if count != self.count {
            *self = Liveness::new(now, count);
            return false;
        }
        if self.reported || now.saturating_duration_since(self.since) < timeout {
            return false;
        }
        self.reported = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_leg_times_out_once_until_media_comes_back() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let timeout = Duration::from_secs(30);
        let mut watch = Liveness::new(t0, 0);
        assert!(!watch.poll_timeout(s(29), 0, timeout));
        assert!(watch.poll_timeout(s(30), 0, timeout));
        for later in [31, 60, 600] {
            assert!(!watch.poll_timeout(s(later), 0, timeout), "reported once");
        }
        // Media again: the watch starts over from the last change it saw.
        assert!(!watch.poll_timeout(s(601), 5, timeout));
        assert!(!watch.poll_timeout(s(630), 5, timeout));
        assert!(watch.poll_timeout(s(631), 5, timeout));
        // Steady media never times out.
        let mut talking = Liveness::new(t0, 0);
        for k in 1..100 {
            assert!(!talking.poll_timeout(s(k), k, timeout));
        }
    }
}
