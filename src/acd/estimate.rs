//! How long a caller will wait, and how wrong we were.
//!
//! Method (not a smoothed average of past waits, which lags every change of
//! staffing): a caller at position `p` is taken when the `p`-th agent becomes
//! free. Each agent serving the caller's skill first frees up after
//!
//! - ready: 0
//! - in wrap-up: the wrap-up time left
//! - on a call for `e`: `H - e`, but at least `H / 4` (a call already past the
//!   mean is expected to end soon, not at once)
//! - ringing: `H` (a call is about to start)
//!
//! clamped to `[0, H]`, and after that every `H`, where `H` is the mean handle
//! time (talk plus wrap-up) of the queue's last [`HANDLE_WINDOW`] calls,
//! blended with a configured prior worth [`PRIOR_WEIGHT`] calls so a fresh
//! queue does not promise zero. With the first-free times sorted `f[0..n]`, the
//! `p`-th free moment is `f[(p-1) % n] + ((p-1) / n) × H` exactly, because
//! every round of `n` frees fits in one interval of length `H`.
//!
//! Accuracy is measured, not assumed: the first estimate a caller hears is
//! kept and compared with the wait actually had when an agent answered
//! ([`PredictionError`]); abandoned and timed-out callers are censored and not
//! counted.

use std::collections::VecDeque;
use std::time::Duration;

/// Handle times remembered per queue.
pub const HANDLE_WINDOW: usize = 50;
/// How many calls the prior counts as.
pub const PRIOR_WEIGHT: u32 = 3;

/// Recent handle times of one queue.
#[derive(Clone, Debug)]
pub struct HandleTimes {
    window: VecDeque<Duration>,
    sum: Duration,
    prior: Duration,
}

impl HandleTimes {
    pub fn new(prior: Duration) -> HandleTimes {
        HandleTimes {
            window: VecDeque::with_capacity(HANDLE_WINDOW),
            sum: Duration::ZERO,
            prior,
        }
    }

    pub fn set_prior(&mut self, prior: Duration) {
        self.prior = prior;
    }

    pub fn record(&mut self, handle_time: Duration) {
        if self.window.len() == HANDLE_WINDOW {
            if let Some(old) = self.window.pop_front() {
                self.sum = self.sum.saturating_sub(old);
            }
        }
        self.window.push_back(handle_time);
        self.sum = self.sum.saturating_add(handle_time);
    }

    /// The blended mean handle time.
    pub fn mean(&self) -> Duration {
        let n = u32::try_from(self.window.len()).unwrap_or(u32::MAX);
        let total = self
            .prior
            .saturating_mul(PRIOR_WEIGHT)
            .saturating_add(self.sum);
        total / (PRIOR_WEIGHT + n).max(1)
    }

    pub fn samples(&self) -> usize {
        self.window.len()
    }
}

/// What one agent serving the skill is doing, for the estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentLoad {
    Free,
    Ringing,
    OnCall { elapsed: Duration },
    WrapUp { remaining: Duration },
}

/// Expected wait of the caller at `position` (1 = next), or `None` when no
/// agent serves the skill.
pub fn estimate_wait(
    position: usize,
    agents: &[AgentLoad],
    mean_handle: Duration,
) -> Option<Duration> {
    if agents.is_empty() {
        return None;
    }
    let h = mean_handle;
    let mut first_free: Vec<Duration> = agents
        .iter()
        .map(|a| {
            let f = match *a {
                AgentLoad::Free => Duration::ZERO,
                AgentLoad::Ringing => h,
                AgentLoad::OnCall { elapsed } => h.saturating_sub(elapsed).max(h / 4),
                AgentLoad::WrapUp { remaining } => remaining,
            };
            f.min(h)
        })
        .collect();
    first_free.sort_unstable();
    let n = first_free.len();
    let index = position.max(1) - 1;
    let rounds = u32::try_from(index / n).unwrap_or(u32::MAX);
    let base = first_free.get(index % n).copied().unwrap_or(Duration::ZERO);
    Some(base.saturating_add(h.saturating_mul(rounds)))
}

/// A predicted wait against the wait actually had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PredictionError {
    pub predicted: Duration,
    pub actual: Duration,
}

impl PredictionError {
    /// Actual minus predicted, in seconds: positive when we promised too little.
    pub fn error_seconds(&self) -> f64 {
        self.actual.as_secs_f64() - self.predicted.as_secs_f64()
    }

    pub fn abs_error_seconds(&self) -> f64 {
        self.error_seconds().abs()
    }
}

/// Running totals of prediction errors, for the API (the histogram itself
/// lives in the metrics registry).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorSummary {
    pub count: u64,
    sum_abs: f64,
    sum_signed: f64,
}

impl ErrorSummary {
    pub fn observe(&mut self, e: &PredictionError) {
        self.count = self.count.saturating_add(1);
        self.sum_abs += e.abs_error_seconds();
        self.sum_signed += e.error_seconds();
    }

    /// Mean absolute error, seconds.
    pub fn mean_abs_seconds(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_abs / self.count as f64)
    }

    /// Mean signed error, seconds: above zero means waits were longer than
    /// said.
    pub fn bias_seconds(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_signed / self.count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn mean_blends_prior_and_window() {
        let mut h = HandleTimes::new(s(180));
        assert_eq!(h.mean(), s(180));
        h.record(s(60));
        // (3 × 180 + 60) / 4
        assert_eq!(h.mean(), s(150));
        for _ in 0..200 {
            h.record(s(100));
        }
        assert_eq!(h.samples(), HANDLE_WINDOW);
        assert_eq!(h.mean(), (s(540) + s(100) * 50) / 53);
    }

    #[test]
    fn estimate_rounds() {
        let h = s(100);
        assert_eq!(estimate_wait(1, &[], h), None);
        let agents = [
            AgentLoad::OnCall { elapsed: s(30) },
            AgentLoad::WrapUp { remaining: s(10) },
        ];
        // Frees at 10 and 70, then every 100.
        assert_eq!(estimate_wait(1, &agents, h), Some(s(10)));
        assert_eq!(estimate_wait(2, &agents, h), Some(s(70)));
        assert_eq!(estimate_wait(3, &agents, h), Some(s(110)));
        assert_eq!(estimate_wait(4, &agents, h), Some(s(170)));
        // A long call is expected to end within a quarter of the mean.
        let long = [AgentLoad::OnCall { elapsed: s(500) }];
        assert_eq!(estimate_wait(1, &long, h), Some(s(25)));
        assert_eq!(estimate_wait(1, &[AgentLoad::Free], h), Some(s(0)));
        assert_eq!(estimate_wait(0, &[AgentLoad::Ringing], h), Some(s(100)));
    }

    #[test]
    fn estimate_matches_a_brute_force_simulation() {
        let h = s(90);
        let agents = [
            AgentLoad::OnCall { elapsed: s(5) },
            AgentLoad::WrapUp { remaining: s(200) },
            AgentLoad::Free,
            AgentLoad::Ringing,
        ];
        let firsts: Vec<u64> = vec![85, 90, 0, 90];
        let mut frees: Vec<u64> = firsts
            .iter()
            .flat_map(|f| (0..10).map(move |k| f + k * 90))
            .collect();
        frees.sort_unstable();
        for p in 1..=30 {
            assert_eq!(estimate_wait(p, &agents, h), Some(s(frees[p - 1])), "p={p}");
        }
    }

    #[test]
    fn error_summary() {
        let mut sum = ErrorSummary::default();
        assert_eq!(sum.mean_abs_seconds(), None);
        sum.observe(&PredictionError {
            predicted: s(60),
            actual: s(90),
        });
        sum.observe(&PredictionError {
            predicted: s(60),
            actual: s(50),
        });
        assert_eq!(sum.mean_abs_seconds(), Some(20.0));
        assert_eq!(sum.bias_seconds(), Some(10.0));
    }
}
