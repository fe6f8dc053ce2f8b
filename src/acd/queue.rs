//! Waiting lines: per queue and caller language (a skill group), ordered by
//! priority, then by arrival. The router owns them; this module only keeps
//! them consistent.

use super::agents::AgentId;
use super::config::{NoAgentsPolicy, QueueConfig};
use super::estimate::{ErrorSummary, HandleTimes};
use crate::ids::{CallerId, OfferId};
use crate::language::Language;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Place in line: higher priority first, then first come first served by
/// the wall time the caller first joined (Unix ms, comparable across nodes and
/// restarts), then by arrival at this engine for callers of the same
/// millisecond.
pub type OrderKey = (Reverse<u8>, i64, u64);

/// How the flow wants a caller queued.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinOptions {
    /// 0 is normal; higher is served first.
    pub priority: u8,
    /// Overrides the queue's policy when nobody is logged in for the language.
    pub no_agents: Option<NoAgentsPolicy>,
    /// Overrides the queue's `max_wait`.
    pub max_wait: Option<Duration>,
    /// Overrides the queue's `announce_interval`.
    pub announce_every: Option<Duration>,
    /// Messages for long waits: each is due `after` the caller joined, then
    /// every `every`; the ACD says when (`AcdAction::WaitMessage` with the
    /// message's index), the caller side knows what to play.
    pub messages: Vec<MessageTiming>,
}

/// When one wait message is said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageTiming {
    pub after: Duration,
    pub every: Option<Duration>,
}

/// Most wait messages one caller may have.
pub const MAX_MESSAGES: usize = 8;

/// An offer in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub id: OfferId,
    pub agent: AgentId,
    pub deadline: Instant,
}

/// A caller in a queue.
#[derive(Clone, Debug)]
pub struct WaitingCall {
    pub call: CallerId,
    pub queue: usize,
    pub language: Language,
    pub key: OrderKey,
    /// When the caller first joined, on this process's clock (timers).
    pub joined_at: Instant,
    pub tier: usize,
    pub offer: Option<Offer>,
    /// Max wait passed while an agent was ringing: leave once the offer fails.
    pub expired: bool,
    pub no_agents: NoAgentsPolicy,
    /// Agents of this language may take the call too (`no_agents: fallback`).
    pub fallback: Option<Language>,
    pub first_estimate: Option<Duration>,
    pub max_wait_at: Instant,
    pub next_announce: Option<Instant>,
    pub next_escalation: Option<Instant>,
    pub announce_every: Option<Duration>,
    /// Wait messages with when each is next due (`None`: said, not again).
    pub messages: Vec<(MessageTiming, Option<Instant>)>,
    /// The `Timer::Message` armed for the earliest due message.
    pub next_message: Option<Instant>,
    /// The place is kept but offered to nobody (a caller confirming a
    /// callback, a callback between attempts or outside its hours).
    pub held: Option<Held>,
    /// The caller hung up to be called back: nothing is said to them any
    /// more; an agent's offer leads to dialling them.
    pub callback: bool,
}

/// How long a held place stays out of routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Until the call layer releases it.
    Indefinitely,
    Until(Instant),
}

impl Held {
    pub fn holds_at(self, now: Instant) -> bool {
        match self {
            Held::Indefinitely => true,
            Held::Until(t) => now < t,
        }
    }
}

impl WaitingCall {
    /// Who may take the call now: the queue's tier for the caller's language,
    /// widened by an active fallback language.
    pub fn requirement(&self, queue: &QueueConfig) -> super::config::Requirement {
        let mut r = queue.requirement(self.language, self.tier);
        if let Some(l) = self.fallback {
            if !r.languages.contains(&l) {
                r.languages.push(l);
            }
        }
        r
    }

    /// The earliest time a wait message is due.
    /// Whether routing passes the caller over now.
    pub fn is_held(&self, now: Instant) -> bool {
        self.held.is_some_and(|h| h.holds_at(now))
    }

    pub fn message_due(&self) -> Option<Instant> {
        self.messages.iter().filter_map(|(_, due)| *due).min()
    }
}

/// A queue's live part.
#[derive(Clone, Debug)]
pub struct QueueRuntime {
    pub config: QueueConfig,
    pub handle_times: HandleTimes,
    pub errors: ErrorSummary,
    /// Removed from `queues.yaml`: takes no new callers, keeps its waiting ones.
    pub retired: bool,
    lines: BTreeMap<Language, BTreeSet<OrderKey>>,
    waiting: usize,
}

impl QueueRuntime {
    pub fn new(config: QueueConfig) -> QueueRuntime {
        QueueRuntime {
            handle_times: HandleTimes::new(config.handle_time_prior),
            config,
            errors: ErrorSummary::default(),
            retired: false,
            lines: BTreeMap::new(),
            waiting: 0,
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiting
    }

    pub fn insert(&mut self, language: Language, key: OrderKey) {
        if self.lines.entry(language).or_default().insert(key) {
            self.waiting += 1;
        }
    }

    pub fn remove(&mut self, language: Language, key: OrderKey) {
        let Some(line) = self.lines.get_mut(&language) else {
            return;
        };
        if line.remove(&key) {
            self.waiting = self.waiting.saturating_sub(1);
        }
        if line.is_empty() {
            self.lines.remove(&language);
        }
    }

    /// Keys ahead of `key` in its line.
    pub fn ahead(&self, language: Language, key: OrderKey) -> impl Iterator<Item = &OrderKey> {
        self.lines
            .get(&language)
            .into_iter()
            .flat_map(move |line| line.range(..key))
    }

    /// Languages with callers waiting, with how many.
    pub fn lines(&self) -> impl Iterator<Item = (Language, usize)> + '_ {
        self.lines.iter().map(|(l, line)| (*l, line.len()))
    }
}
