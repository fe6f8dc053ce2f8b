//! Registrations that fail, sans-IO: why, and whether this is the first time
//! for that user and source (so the shell logs it once, not once per retry).
//!
//! Most failures are known at once (a wrong password, an unknown user). One
//! is known only by waiting: a phone that is challenged and never answers.
//! Debian 12's baresip does this when a 401 carries a challenge it does not
//! support; a phone whose REGISTER never comes back does the same. Each
//! challenge is remembered until the answer comes or `answer_within` passes.
//!
//! Both tables are bounded: the challenges awaiting an answer, and the
//! (user, address) pairs already reported.

use crate::ids::AgentId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Why a registration failed. The labels are those of
/// `hotline_register_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The digest did not match the stored HA1.
    WrongPassword,
    /// Credentials for a username no agent has.
    UnknownUser,
    /// Challenged (401), and no authenticated retry came in time.
    NoAnswer,
    /// Told its nonce was stale (`stale=true`), and no retry came in time.
    StaleNonce,
    /// Right credentials for another agent's address of record (403).
    Forbidden,
    /// Credentials that cannot be checked: malformed, another realm, an
    /// algorithm or qop not offered, no HA1 for the algorithm used.
    BadCredentials,
}

impl FailureReason {
    pub const ALL: [FailureReason; 6] = [
        FailureReason::WrongPassword,
        FailureReason::UnknownUser,
        FailureReason::NoAnswer,
        FailureReason::StaleNonce,
        FailureReason::Forbidden,
        FailureReason::BadCredentials,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FailureReason::WrongPassword => "wrong_password",
            FailureReason::UnknownUser => "unknown_user",
            FailureReason::NoAnswer => "no_answer",
            FailureReason::StaleNonce => "stale_nonce",
            FailureReason::Forbidden => "forbidden",
            FailureReason::BadCredentials => "bad_credentials",
        }
    }

    /// Words for the log line.
    pub fn describe(self) -> &'static str {
        match self {
            FailureReason::WrongPassword => "wrong password",
            FailureReason::UnknownUser => "unknown user",
            FailureReason::NoAnswer => "no answer to the challenge",
            FailureReason::StaleNonce => "no retry after a stale nonce",
            FailureReason::Forbidden => "credentials of another agent",
            FailureReason::BadCredentials => "credentials that cannot be checked",
        }
    }
}

/// One failed (or abandoned) registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterFailure {
    /// The address-of-record user (the To user of the REGISTER).
    pub user: String,
    /// The agent that user belongs to, if any.
    pub agent: Option<AgentId>,
    pub source: SocketAddr,
    pub reason: FailureReason,
    /// More precise words (which check failed), or a hint.
    pub detail: &'static str,
    /// The first failure reported for this user and source address since it
    /// last registered (or since it was forgotten): log it; count them all.
    pub first: bool,
}

/// Settings of [`Failures`].
#[derive(Debug, Clone)]
pub struct FailureConfig {
    /// How long a challenged phone has to answer. A phone answers at once;
    /// 32 s is the life of a non-INVITE transaction (64 × T1), after which the
    /// phone has given up on its request.
    pub answer_within: Duration,
    /// Most challenges awaiting an answer; beyond, the oldest is forgotten.
    pub max_pending: usize,
    /// Most (user, address) pairs remembered as already reported.
    pub max_reported: usize,
}

impl Default for FailureConfig {
    fn default() -> FailureConfig {
        FailureConfig {
            answer_within: Duration::from_secs(32),
            max_pending: 4096,
            max_reported: 1024,
        }
    }
}

/// Longest username kept in a key (longer ones are cut).
const MAX_USER_LEN: usize = 128;

type Key = (String, IpAddr);

fn key(user: &str, source: SocketAddr) -> Key {
    (user.chars().take(MAX_USER_LEN).collect(), source.ip())
}

/// A challenge sent and not answered yet.
#[derive(Debug, Clone)]
struct Pending {
    serial: u64,
    source: SocketAddr,
    agent: Option<AgentId>,
    stale: bool,
    /// Whether a challenge other than MD5 was offered (a hint for the log).
    beyond_md5: bool,
}

/// The failure tracker.
#[derive(Debug)]
pub struct Failures {
    config: FailureConfig,
    pending: HashMap<Key, Pending>,
    /// (deadline, key, serial) in the order challenges were sent; entries
    /// whose serial no longer matches `pending` are skipped.
    deadlines: VecDeque<(Instant, Key, u64)>,
    serial: u64,
    /// Already reported: two generations, the older dropped when the newer
    /// fills half the bound.
    reported: HashSet<Key>,
    reported_before: HashSet<Key>,
}

impl Failures {
    pub fn new(config: FailureConfig) -> Failures {
        Failures {
            config,
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
            serial: 0,
            reported: HashSet::new(),
            reported_before: HashSet::new(),
        }
    }

    /// A 401 was sent to `user` at `source`; `stale` when it said
    /// `stale=true`.
    pub fn challenged(
        &mut self,
        now: Instant,
        user: &str,
        agent: Option<AgentId>,
        source: SocketAddr,
        stale: bool,
        beyond_md5: bool,
    ) {
        let cap = self.config.max_pending.max(1);
        let key = key(user, source);
        if let Some(p) = self.pending.get_mut(&key) {
            // Still unanswered: the wait runs from the first challenge, so
            // a phone that retries sooner than `answer_within` without ever
            // answering is still reported.
            p.stale = stale;
            p.beyond_md5 = beyond_md5;
            if agent.is_some() {
                p.agent = agent;
            }
            return;
        }
        while self.deadlines.len() >= 2 * cap
            || (self.pending.len() >= cap && !self.pending.contains_key(&key))
        {
            let Some((_, old, serial)) = self.deadlines.pop_front() else {
                break;
            };
            if self.pending.get(&old).is_some_and(|p| p.serial == serial) {
                self.pending.remove(&old);
            }
        }
        self.serial += 1;
        let deadline = now + self.config.answer_within;
        self.deadlines
            .push_back((deadline, key.clone(), self.serial));
        self.pending.insert(
            key,
            Pending {
                serial: self.serial,
                source,
                agent,
                stale,
                beyond_md5,
            },
        );
        self.prune();
    }

    /// Drops answered or replaced challenges from the front of `deadlines`,
    /// so that the front is always one still awaited.
    fn prune(&mut self) {
        while let Some((_, key, serial)) = self.deadlines.front() {
            if self.pending.get(key).is_some_and(|p| p.serial == *serial) {
                break;
            }
            self.deadlines.pop_front();
        }
    }

    /// A REGISTER with credentials came from `user` at `source`: whatever it
    /// holds, the challenge was answered.
    pub fn answered(&mut self, user: &str, source: SocketAddr) {
        self.pending.remove(&key(user, source));
        self.prune();
    }

    /// `user` registered from `source`: a later failure is news again.
    pub fn succeeded(&mut self, user: &str, source: SocketAddr) {
        let key = key(user, source);
        self.pending.remove(&key);
        self.prune();
        self.reported.remove(&key);
        self.reported_before.remove(&key);
    }

    /// A failure known at once.
    pub fn failed(
        &mut self,
        user: &str,
        agent: Option<AgentId>,
        source: SocketAddr,
        reason: FailureReason,
        detail: &'static str,
    ) -> RegisterFailure {
        let first = self.note_reported(key(user, source));
        RegisterFailure {
            user: user.chars().take(MAX_USER_LEN).collect(),
            agent,
            source,
            reason,
            detail,
            first,
        }
    }

    /// Whether this pair is reported for the first time (and remembers it).
    fn note_reported(&mut self, key: Key) -> bool {
        if self.reported.contains(&key) || self.reported_before.contains(&key) {
            return false;
        }
        if self.reported.len() >= (self.config.max_reported / 2).max(1) {
            self.reported_before = std::mem::take(&mut self.reported);
        }
        self.reported.insert(key);
        true
    }

    /// When the oldest unanswered challenge runs out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.front().map(|(at, _, _)| *at)
    }

    /// Challenges not answered by `now`, as failures.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<RegisterFailure> {
        let mut out = Vec::new();
        while let Some((at, _, _)) = self.deadlines.front() {
            if *at > now {
                break;
            }
            let Some((_, key, serial)) = self.deadlines.pop_front() else {
                break;
            };
            let Some(p) = self.pending.get(&key).filter(|p| p.serial == serial) else {
                continue;
            };
            let (reason, detail) = if p.stale {
                (FailureReason::StaleNonce, "")
            } else if p.beyond_md5 {
                (
                    FailureReason::NoAnswer,
                    "a phone that refuses a SHA-256 challenge gives up silently: try digest_algorithms: [md5]",
                )
            } else {
                (FailureReason::NoAnswer, "")
            };
            let (source, agent) = (p.source, p.agent.clone());
            self.pending.remove(&key);
            let user = key.0.clone();
            let first = self.note_reported(key);
            out.push(RegisterFailure {
                user,
                agent,
                source,
                reason,
                detail,
                first,
            });
        }
        self.prune();
        out
    }

    #[cfg(test)]
    fn pending_len(&self) -> usize {
        self.pending.len()
    }

    #[cfg(test)]
    fn reported_len(&self) -> usize {
        self.reported.len() + self.reported_before.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], port))
    }

    fn tracker() -> Failures {
        Failures::new(FailureConfig::default())
    }

    #[test]
    fn an_unanswered_challenge_fails_after_the_timeout_once() {
        let t0 = Instant::now();
        let mut f = tracker();
        let anna = Some(AgentId::from("anna"));
        f.challenged(t0, "anna", anna.clone(), addr(1, 5062), false, true);
        assert_eq!(f.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        assert!(f.handle_timeout(t0 + Duration::from_secs(31)).is_empty());
        let out = f.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason, FailureReason::NoAnswer);
        assert_eq!(out[0].agent, anna);
        assert!(out[0].first);
        assert!(out[0].detail.contains("digest_algorithms"));
        assert_eq!(f.poll_timeout(), None);
        // The phone retries (a new REGISTER, a new challenge) and again does
        // not answer: counted, not reported as new. Another port of the same
        // address is the same phone.
        let t1 = t0 + Duration::from_secs(60);
        f.challenged(t1, "anna", anna.clone(), addr(1, 5099), false, true);
        let out = f.handle_timeout(t1 + Duration::from_secs(40));
        assert_eq!(out.len(), 1);
        assert!(!out[0].first);
        // Another address, or another user, is news.
        f.challenged(t1, "anna", anna.clone(), addr(2, 5062), false, false);
        f.challenged(t1, "piotr", None, addr(1, 5062), false, false);
        let out = f.handle_timeout(t1 + Duration::from_secs(40));
        assert_eq!(out.iter().filter(|x| x.first).count(), 2);
        assert!(out.iter().all(|x| x.detail.is_empty()));
    }

    #[test]
    fn an_answer_in_time_cancels_and_success_forgets_the_report() {
        let t0 = Instant::now();
        let mut f = tracker();
        let src = addr(1, 5062);
        f.challenged(t0, "anna", None, src, false, false);
        f.answered("anna", src);
        // Nothing left to wake up for.
        assert_eq!(f.poll_timeout(), None);
        assert!(f.handle_timeout(t0 + Duration::from_secs(60)).is_empty());
        // A wrong password is known at once.
        let failure = f.failed("anna", None, src, FailureReason::WrongPassword, "");
        assert!(failure.first);
        assert!(
            !f.failed("anna", None, src, FailureReason::WrongPassword, "")
                .first
        );
        // After a successful registration the next failure is reported again.
        f.succeeded("anna", src);
        assert!(
            f.failed("anna", None, src, FailureReason::WrongPassword, "")
                .first
        );
    }

    #[test]
    fn a_stale_challenge_without_a_retry_is_a_stale_nonce() {
        let t0 = Instant::now();
        let mut f = tracker();
        f.challenged(t0, "anna", None, addr(1, 5062), true, false);
        let out = f.handle_timeout(t0 + Duration::from_secs(33));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason, FailureReason::StaleNonce);
    }

    #[test]
    fn a_second_unanswered_challenge_keeps_the_first_wait() {
        let t0 = Instant::now();
        let mut f = tracker();
        let src = addr(1, 5062);
        f.challenged(t0, "anna", None, src, false, false);
        f.challenged(
            t0 + Duration::from_secs(20),
            "anna",
            None,
            src,
            false,
            false,
        );
        // A phone retrying every 20 s without answering is still reported
        // 32 s after the first challenge, once.
        assert_eq!(f.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        assert_eq!(f.handle_timeout(t0 + Duration::from_secs(33)).len(), 1);
        assert!(f.handle_timeout(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn tables_stay_bounded_under_a_flood() {
        let t0 = Instant::now();
        let mut f = Failures::new(FailureConfig {
            answer_within: Duration::from_secs(32),
            max_pending: 8,
            max_reported: 8,
        });
        for i in 0..1000u32 {
            let user = format!("user{i}");
            let src = addr((i % 250) as u8, 5060);
            f.challenged(t0, &user, None, src, false, false);
            assert!(f.pending_len() <= 8);
            assert!(f.deadlines.len() <= 16);
            f.failed(&user, None, src, FailureReason::UnknownUser, "");
            assert!(f.reported_len() <= 8);
        }
        // The newest challenges are the ones still awaited.
        let out = f.handle_timeout(t0 + Duration::from_secs(40));
        assert_eq!(out.len(), 8);
        assert!(out.iter().any(|x| x.user == "user999"));
        // A long name is cut in the key and the report.
        let long = "x".repeat(10_000);
        let failure = f.failed(&long, None, addr(1, 1), FailureReason::UnknownUser, "");
        assert_eq!(failure.user.len(), MAX_USER_LEN);
    }
}
