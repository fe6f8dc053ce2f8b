//! RFC 3261 timer values (Table 4), configurable so tests can shrink them.

use std::time::Duration;

/// Base timer values. Every other timer derives from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate (500 ms).
    pub t1: Duration,
    /// Cap on non-INVITE request and INVITE response retransmit intervals (4 s).
    pub t2: Duration,
    /// How long the network may hold a message (5 s).
    pub t4: Duration,
    /// Timer D: wait for final-response retransmissions after ACK (at least 32 s).
    pub d: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            d: Duration::from_secs(32),
        }
    }
}

impl Timers {
    /// 64*T1: Timers B, F, H, J, L, M.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Next retransmit interval, doubling and capped at T2 (Timers E and G).
    pub fn backoff(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.t2)
    }
}
