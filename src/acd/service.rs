//! The queue seam: what the call layer asks of a queue engine, and what the
//! engine asks back.
//!
//! The call layer talks to queues only through [`QueueService`]. Inputs go in
//! with the time; answers and requests come out as [`QueueAction`]s polled
//! after each input, so an engine may answer at once (the in-process
//! [`super::Acd`]) or later, once a shared store has replied: a join is
//! answered by [`QueueAction::Joined`] or [`QueueAction::NotJoined`], never by
//! a return value. Queries (`position`, `stats`, `agents`) read the engine's
//! own view, which a shared engine keeps up to date from its store.
//!
//! Callers are [`CallerId`]s (node and call), agents their configured
//! [`AgentId`]; every offer has an [`OfferId`], and an offer's result names it,
//! so an answer to a withdrawn offer is refused.

use super::agents::{AgentDirectory, AgentId, AgentState, InvalidTransition};
use super::agents::{RequestEffect, RequestedState};
use super::config::QueuesConfig;
use super::estimate::PredictionError;
use super::queue::JoinOptions;
use super::router::{AgentView, QueueStats};
use crate::ids::{CallerId, OfferId};
use crate::language::Language;
use crate::registrar::PhoneContact;
use crate::time::Now;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// A caller asks to wait in a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    pub caller: CallerId,
    pub queue: String,
    pub language: Language,
    pub options: JoinOptions,
    /// When the caller first joined: now for a new caller; earlier for one
    /// put back (a restarted store, a caller moved between queues), who
    /// keeps their place. Order is by priority, then by this time.
    pub joined_at: DateTime<Utc>,
    /// The caller's number, as their phone gave it (records, callbacks).
    pub number: String,
    /// A callback taken back in its place (after an attempt, a restart, or
    /// from a node that was lost): silent, and held as it was, from the
    /// moment it joins.
    pub callback: Option<CallbackPlace>,
}

/// A callback's entry in a queue: the caller hung up and is called back
/// from their place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackPlace {
    /// It waits until then at the latest (then `QueueTimeout`).
    pub until: DateTime<Utc>,
    /// Offered to nobody until then (a retry time, a closed window).
    pub held: PlaceHeld,
    /// What another node needs to carry the callback out if this node is
    /// lost; opaque to the engine, kept with the entry by a shared one.
    pub ticket: String,
}

/// Whether a place is offered to agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PlaceHeld {
    #[default]
    No,
    Until(DateTime<Utc>),
    /// Until `hold` is called again with a time.
    UntilReleased,
}

impl PlaceHeld {
    /// The `until` of [`QueueService::hold`] (`None` for a place not held).
    pub fn hold_until(self) -> Option<Option<DateTime<Utc>>> {
        match self {
            PlaceHeld::No => None,
            PlaceHeld::Until(t) => Some(Some(t)),
            PlaceHeld::UntilReleased => Some(None),
        }
    }

    /// The state `hold(until)` leaves at `now`.
    pub fn from_hold(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> PlaceHeld {
        match until {
            None => PlaceHeld::UntilReleased,
            Some(t) if t > now => PlaceHeld::Until(t),
            Some(_) => PlaceHeld::No,
        }
    }
}

/// Why a caller was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotJoined {
    /// `max_length` reached: the flow takes its exit.
    Full,
    /// Nobody who could take the call is logged in, and the policy says not
    /// to wait: the flow plays its message.
    NoAgents,
    UnknownQueue,
    /// The queue does not take this language.
    LanguageNotServed,
    AlreadyQueued,
}

impl NotJoined {
    /// The queue log's reason.
    pub fn label(self) -> &'static str {
        match self {
            NotJoined::Full => "full",
            NotJoined::NoAgents => "no_agents",
            NotJoined::UnknownQueue => "unknown_queue",
            NotJoined::LanguageNotServed => "language_not_served",
            NotJoined::AlreadyQueued => "already_queued",
        }
    }
}

/// How a caller leaves a queue on the call layer's word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// Hung up while waiting (or while an agent's phone rang).
    Abandoned,
    /// Taken out by the flow (not a hang-up).
    Left,
}

/// How an offer ended, as the SIP side saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferResult {
    Answered,
    /// A final failure response (486 Busy Here, 603 Decline, 408, 480 ...).
    Rejected(u16),
    /// No answer (the SIP side's own timer).
    Timeout,
}

/// Why a caller left the queue. Every joined caller leaves exactly once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaveOutcome {
    Answered {
        agent: AgentId,
    },
    /// Hung up while waiting; `short` when under `short_abandon_threshold`.
    Abandoned {
        short: bool,
    },
    TimedOut,
    NoAgents,
    /// Taken out by the flow (for example to leave a message).
    Left,
}

impl LeaveOutcome {
    /// The `outcome` label of `hotline_queue_wait_seconds`.
    pub fn label(&self) -> &'static str {
        match self {
            LeaveOutcome::Answered { .. } => "answered",
            LeaveOutcome::Abandoned { .. } => "abandoned",
            LeaveOutcome::TimedOut => "timed_out",
            LeaveOutcome::NoAgents => "no_agents",
            LeaveOutcome::Left => "left",
        }
    }
}

/// Why an offer was withdrawn, for the queue log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// The agent's phone rang past the ring timeout.
    RingTimeout,
    /// The agent paused, logged out or was removed while it rang.
    AgentUnavailable,
    /// The caller left the queue (hung up, taken out by the flow).
    CallerLeft,
}

/// A caller's exit from a queue, for metrics and records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueExit {
    pub caller: CallerId,
    pub queue: String,
    pub language: Language,
    pub outcome: LeaveOutcome,
    pub waited: Duration,
    /// The first estimate against the wait, for answered callers.
    pub prediction: Option<PredictionError>,
}

/// What the queue engine answers or asks of the call layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueAction {
    /// The caller is queued, in this language (another one if the no-agents
    /// policy fell back). Comes before any other action for the caller.
    Joined {
        caller: CallerId,
        language: Language,
    },
    /// The caller was not queued: the flow goes on.
    NotJoined { caller: CallerId, reason: NotJoined },
    /// Ring `agent` for `caller` (INVITE to its phone).
    Offer {
        offer: OfferId,
        caller: CallerId,
        agent: AgentId,
        queue: String,
        language: Language,
        /// Where to ring, when the agent's phone registered with another
        /// node; `None`: this node's registrar knows.
        contact: Option<PhoneContact>,
    },
    /// Stop ringing (CANCEL). No `offer_result` is expected after it; if the
    /// agent's 200 crosses the CANCEL, `offer_result` is refused and that leg
    /// is hung up.
    CancelOffer {
        offer: OfferId,
        caller: CallerId,
        agent: AgentId,
        reason: CancelReason,
    },
    /// The answer to an offer's `Answered` result: bridge the caller and the
    /// agent (`accepted`), or hang the agent's leg up (the offer was
    /// withdrawn or replaced meanwhile: fencing).
    Verdict {
        caller: CallerId,
        offer: OfferId,
        accepted: bool,
    },
    /// Tell the caller where they are, in their language.
    Announce {
        caller: CallerId,
        position: usize,
        estimated_wait: Option<Duration>,
        waited: Duration,
        first: bool,
    },
    /// Say the caller's wait message `index` (of `JoinOptions::messages`).
    WaitMessage { caller: CallerId, index: usize },
    /// The caller may now go to more agents.
    Escalated { caller: CallerId, tier: usize },
    /// Nobody who speaks the caller's language is logged in: agents who speak
    /// `language` may take the call too (the caller keeps their place).
    LanguageFallback {
        caller: CallerId,
        language: Language,
    },
    /// Max wait passed: the flow takes its exit.
    QueueTimeout { caller: CallerId },
    /// The last agent who could take the call logged out: the flow goes on.
    NoAgents { caller: CallerId },
    /// A callback booked on a node that was lost is this node's to carry
    /// out now, in its original place (`ticket` as it was booked).
    AdoptCallback { ticket: String },
    /// A caller left the queue (for metrics and records).
    CallLeft(QueueExit),
    /// The agent's state, or the state it asked for during a call or
    /// wrap-up (`pending`, taken when that ends), changed. `entered` is false
    /// when the agent stays in `state` and only `pending` changed.
    AgentStateChanged {
        agent: AgentId,
        state: AgentState,
        pending: Option<RequestedState>,
        entered: bool,
    },
}

impl QueueAction {
    /// The caller an action is about, if any.
    pub fn caller(&self) -> Option<&CallerId> {
        match self {
            QueueAction::Joined { caller, .. }
            | QueueAction::NotJoined { caller, .. }
            | QueueAction::Offer { caller, .. }
            | QueueAction::CancelOffer { caller, .. }
            | QueueAction::Verdict { caller, .. }
            | QueueAction::Announce { caller, .. }
            | QueueAction::WaitMessage { caller, .. }
            | QueueAction::Escalated { caller, .. }
            | QueueAction::LanguageFallback { caller, .. }
            | QueueAction::QueueTimeout { caller }
            | QueueAction::NoAgents { caller } => Some(caller),
            QueueAction::CallLeft(exit) => Some(&exit.caller),
            QueueAction::AgentStateChanged { .. } | QueueAction::AdoptCallback { .. } => None,
        }
    }
}

/// Input the queue engine refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("unknown agent")]
    UnknownAgent,
    #[error("unknown call")]
    UnknownCall,
    /// The offer was already withdrawn, timed out or replaced.
    #[error("call is not offered to this agent")]
    NotOffered,
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
}

/// A queue engine: the in-process [`super::Acd`], or one that shares its
/// queues with other nodes through a store.
pub trait QueueService {
    /// Applies a reloaded `queues.yaml`. Removed queues take no new callers
    /// but keep serving the ones waiting.
    fn set_queues(&mut self, now: Now, config: QueuesConfig);
    /// Applies a reloaded `agents.yaml`. Agents keep their state; removed
    /// ones are logged out (after their call, if on one).
    fn set_agents(&mut self, now: Now, directory: AgentDirectory);

    /// Asks to queue a caller; answered by `Joined` or `NotJoined`.
    fn join(&mut self, now: Now, request: JoinRequest);
    /// Takes a caller out (hung up, or the flow moved on), withdrawing any
    /// offer. Whether the caller was queued.
    fn leave(&mut self, now: Now, caller: &CallerId, why: Leave) -> bool;
    /// The answered call ended (either side hung up): the agent wraps up. A
    /// caller still queued is taken as abandoned.
    fn call_ended(&mut self, now: Now, caller: &CallerId) -> Result<(), QueueError>;

    /// An agent (or supervisor) sets the agent's state: registration, a
    /// feature code, the API. Pausing while ringing withdraws the offer.
    fn agent_state(
        &mut self,
        now: Now,
        agent: &AgentId,
        requested: RequestedState,
    ) -> Result<RequestEffect, QueueError>;
    /// How an offer ended. Refused (`NotOffered`) unless `offer` is the
    /// caller's live offer. An `Answered` result is answered by a `Verdict`
    /// (at once here, or once a shared store has decided); the call layer
    /// bridges only on an accepting verdict.
    fn offer_result(
        &mut self,
        now: Now,
        caller: &CallerId,
        offer: OfferId,
        result: OfferResult,
    ) -> Result<(), QueueError>;

    /// An agent's phone registered here (`Some`) or is gone (`None`). A
    /// shared engine publishes it so that other nodes can ring the agent;
    /// this node's registrar rings it itself.
    fn phone_bound(&mut self, _now: Now, _agent: &AgentId, _contact: Option<PhoneContact>) {}

    fn handle_timeout(&mut self, now: Now);
    /// When `handle_timeout` must run next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next answer or request for the call layer.
    fn poll_action(&mut self) -> Option<QueueAction>;

    /// Figures of every live queue.
    fn stats(&self, now: Now) -> Vec<QueueStats>;
    /// Every agent still in the directory.
    fn agents(&self) -> Vec<AgentView>;
    /// This node's share of the queues, for its gauges: summed over nodes
    /// they give the cluster's figures. Alone, the whole queues.
    fn local_stats(&self, now: Now) -> Vec<QueueStats> {
        self.stats(now)
    }
    /// The agents this node answers for in its gauges (whose phones
    /// registered here, in a cluster). Alone, every agent.
    fn local_agents(&self) -> Vec<AgentView> {
        self.agents()
    }
    /// Whether the engine's figures are this node's alone and its agents
    /// change only through `AgentStateChanged` actions (the in-process
    /// engine). A shared engine's view also moves with the store, so the
    /// call layer reads its figures again on every change.
    fn is_local(&self) -> bool {
        true
    }
    fn agent_state_of(&self, agent: &AgentId) -> Option<AgentState>;
    /// The state the agent asked for during a call or wrap-up, if any.
    fn agent_pending_of(&self, agent: &AgentId) -> Option<RequestedState>;
    /// For each language `queue` takes, the wait of a caller who joined now
    /// at the back of that language's line (with the fallback language they
    /// would get); `None` when no agent who could take the call is serving.
    fn join_estimates(&self, now: Now, queue: &str) -> Vec<(Language, Option<Duration>)>;
    /// The caller's place in its line (1 is next), as announced.
    fn position(&self, now: Now, caller: &CallerId) -> Option<usize>;
    /// Whether the caller is waiting (or ringing an agent) in a queue.
    fn is_queued(&self, caller: &CallerId) -> bool;

    /// Keeps the caller's place but offers them to nobody: until `until`,
    /// or with `None` until `hold` is called again with a time (a time
    /// already past releases the place at once). A ringing offer is
    /// withdrawn. False when the caller is not queued, or the engine cannot
    /// hold places (then it offers no callbacks either).
    fn hold(&mut self, _now: Now, _caller: &CallerId, _until: Option<DateTime<Utc>>) -> bool {
        false
    }
    /// The caller hung up to be called back: their entry keeps its place
    /// and is offered to agents as `place.held` says, but nothing is said to
    /// them any more, nobody logging out takes them out, and they wait until
    /// `place.until` at the latest (then `QueueTimeout`). Called again when
    /// the callback's ticket changes.
    fn keep_for_callback(&mut self, _now: Now, _caller: &CallerId, _place: CallbackPlace) -> bool {
        false
    }
    /// Whether `hold` and `keep_for_callback` work here (callbacks are
    /// offered only then).
    fn holds_places(&self) -> bool {
        false
    }
}
