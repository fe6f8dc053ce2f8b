//! What nodes say to each other through the store: requests to the
//! dispatcher (the `events` stream), its answers to a caller's node (one
//! `inbox` stream per node), and the cluster view it publishes. JSON, one
//! message per stream entry; the shapes here are the whole wire format.

use crate::acd::{
    AgentState, CallbackPlace, CancelReason, JoinOptions, LeaveOutcome, MessageTiming,
    NoAgentsPolicy, NotJoined, OfferResult, PlaceHeld, PredictionError, QueueAction, QueueExit,
    RequestedState,
};
use crate::ids::{AgentId, CallId, CallerId, NodeId, OfferId};
use crate::language::Language;
use crate::registrar::PhoneContact;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A caller as the wire names them: `node` is the node's incarnation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCaller {
    pub node: String,
    /// A number, or text where a Lua script wrote it (Lua's numbers are
    /// doubles: call ids above 2^53 would be rounded).
    #[serde(deserialize_with = "number_or_text")]
    pub call: u64,
}

fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    match NumberOrText::deserialize(d)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

impl From<&CallerId> for WireCaller {
    fn from(c: &CallerId) -> WireCaller {
        WireCaller {
            node: c.node.as_str().to_string(),
            call: c.call.0,
        }
    }
}

impl WireCaller {
    pub fn id(&self) -> CallerId {
        CallerId::new(&NodeId::new(&self.node), CallId(self.call))
    }

    /// The store's key part for this caller.
    pub fn key(&self) -> String {
        format!("{}:{}", self.node, self.call)
    }
}

/// How the flow wants a caller queued, on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WireJoinOptions {
    pub priority: u8,
    /// `wait`, `reject`, or a language code to fall back to.
    pub no_agents: Option<String>,
    pub max_wait_ms: Option<u64>,
    pub announce_every_ms: Option<u64>,
    /// (after, every) in milliseconds.
    pub messages: Vec<(u64, Option<u64>)>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&JoinOptions> for WireJoinOptions {
    fn from(o: &JoinOptions) -> WireJoinOptions {
        WireJoinOptions {
            priority: o.priority,
            no_agents: o.no_agents.as_ref().map(|p| match p {
                NoAgentsPolicy::Wait => "wait".to_string(),
                NoAgentsPolicy::Reject => "reject".to_string(),
                NoAgentsPolicy::Fallback(l) => l.code().to_string(),
            }),
            max_wait_ms: o.max_wait.map(ms),
            announce_every_ms: o.announce_every.map(ms),
            messages: o
                .messages
                .iter()
                .map(|m| (ms(m.after), m.every.map(ms)))
                .collect(),
        }
    }
}

impl WireJoinOptions {
    pub fn options(&self) -> JoinOptions {
        JoinOptions {
            priority: self.priority,
            no_agents: self.no_agents.as_deref().map(|p| match p {
                "wait" => NoAgentsPolicy::Wait,
                "reject" => NoAgentsPolicy::Reject,
                code => code
                    .parse::<Language>()
                    .map(NoAgentsPolicy::Fallback)
                    .unwrap_or(NoAgentsPolicy::Wait),
            }),
            max_wait: self.max_wait_ms.map(Duration::from_millis),
            announce_every: self.announce_every_ms.map(Duration::from_millis),
            messages: self
                .messages
                .iter()
                .map(|(after, every)| MessageTiming {
                    after: Duration::from_millis(*after),
                    every: every.map(Duration::from_millis),
                })
                .collect(),
        }
    }
}

/// A state asked for, on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WireRequest {
    Ready,
    Paused { reason: String },
    LoggedOut,
}

impl From<&RequestedState> for WireRequest {
    fn from(r: &RequestedState) -> WireRequest {
        match r {
            RequestedState::Ready => WireRequest::Ready,
            RequestedState::Paused { reason } => WireRequest::Paused {
                reason: reason.clone(),
            },
            RequestedState::LoggedOut => WireRequest::LoggedOut,
        }
    }
}

impl WireRequest {
    pub fn requested(&self) -> RequestedState {
        match self {
            WireRequest::Ready => RequestedState::Ready,
            WireRequest::Paused { reason } => RequestedState::Paused {
                reason: reason.clone(),
            },
            WireRequest::LoggedOut => RequestedState::LoggedOut,
        }
    }
}

/// How an offer ended, on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum WireResult {
    Answered,
    Rejected { code: u16 },
    Timeout,
}

impl From<OfferResult> for WireResult {
    fn from(r: OfferResult) -> WireResult {
        match r {
            OfferResult::Answered => WireResult::Answered,
            OfferResult::Rejected(code) => WireResult::Rejected { code },
            OfferResult::Timeout => WireResult::Timeout,
        }
    }
}

impl WireResult {
    pub fn result(self) -> OfferResult {
        match self {
            WireResult::Answered => OfferResult::Answered,
            WireResult::Rejected { code } => OfferResult::Rejected(code),
            WireResult::Timeout => OfferResult::Timeout,
        }
    }
}

/// Whether a place is offered to agents, on the wire (see [`PlaceHeld`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WireHeld {
    #[default]
    No,
    /// Unix ms.
    Until(i64),
    UntilReleased,
}

impl From<PlaceHeld> for WireHeld {
    fn from(h: PlaceHeld) -> WireHeld {
        match h {
            PlaceHeld::No => WireHeld::No,
            PlaceHeld::Until(t) => WireHeld::Until(t.timestamp_millis()),
            PlaceHeld::UntilReleased => WireHeld::UntilReleased,
        }
    }
}

impl WireHeld {
    pub fn held(self) -> PlaceHeld {
        match self {
            WireHeld::No => PlaceHeld::No,
            WireHeld::Until(ms) => PlaceHeld::Until(wall(ms)),
            WireHeld::UntilReleased => PlaceHeld::UntilReleased,
        }
    }
}

/// A callback's entry on the wire (see [`CallbackPlace`]; how it is held
/// travels apart, as [`WireHeld`], since any place can be held).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCallback {
    pub until_ms: i64,
    /// The callback as booked (opaque here), for a node that adopts it.
    pub ticket: String,
}

impl WireCallback {
    pub fn from_place(place: &CallbackPlace) -> WireCallback {
        WireCallback {
            until_ms: place.until.timestamp_millis(),
            ticket: place.ticket.clone(),
        }
    }

    pub fn place(&self, held: WireHeld) -> CallbackPlace {
        CallbackPlace {
            until: wall(self.until_ms),
            held: held.held(),
            ticket: self.ticket.clone(),
        }
    }
}

/// A caller's node tells the dispatcher (stream `events`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Join {
        caller: WireCaller,
        queue: String,
        language: Language,
        options: WireJoinOptions,
        /// Unix ms of the caller's first join: they keep their place.
        joined_ms: i64,
        /// The caller's number (records of a caller lost with their node).
        number: String,
        /// A callback taken back in its place, and how it is held.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        callback: Option<WireCallback>,
        #[serde(default, skip_serializing_if = "is_not_held")]
        held: WireHeld,
    },
    /// A caller put back after a node lost the store, with the agent they
    /// talk to if answered (so that agent is not offered another caller).
    Restore {
        caller: WireCaller,
        queue: String,
        language: Language,
        options: WireJoinOptions,
        joined_ms: i64,
        talking_to: Option<String>,
        number: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        callback: Option<WireCallback>,
        #[serde(default, skip_serializing_if = "is_not_held")]
        held: WireHeld,
    },
    /// The caller's place is offered to nobody (or again) as `held` says.
    Hold {
        caller: WireCaller,
        held: WireHeld,
    },
    /// The caller hung up to be called back from their place.
    KeepForCallback {
        caller: WireCaller,
        callback: WireCallback,
        held: WireHeld,
    },
    Leave {
        caller: WireCaller,
        abandoned: bool,
    },
    CallEnded {
        caller: WireCaller,
    },
    OfferResult {
        caller: WireCaller,
        offer: u64,
        result: WireResult,
    },
    AgentRequest {
        agent: String,
        request: WireRequest,
        /// The node where the agent's phone registered, if it did.
        home: Option<String>,
    },
    /// Where an agent's phone can be rung (`None`: it is gone), learnt by
    /// the node it registered with (`home`).
    Phone {
        agent: String,
        contact: Option<PhoneContact>,
        home: String,
    },
    /// A node's callers were removed because the node died.
    NodeLost {
        node: String,
        callers: Vec<WireCaller>,
    },
}

fn is_not_held(h: &WireHeld) -> bool {
    *h == WireHeld::No
}

/// The dispatcher tells a caller's node (stream `inbox:{node}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Inbox {
    Joined {
        caller: WireCaller,
        language: Language,
    },
    NotJoined {
        caller: WireCaller,
        reason: String,
    },
    Offer {
        caller: WireCaller,
        offer: u64,
        agent: String,
        queue: String,
        language: Language,
        contact: Option<PhoneContact>,
    },
    CancelOffer {
        caller: WireCaller,
        offer: u64,
        agent: String,
        reason: String,
    },
    /// The answer to an answered offer: bridge (`accepted`) or hang up.
    Verdict {
        caller: WireCaller,
        offer: u64,
        accepted: bool,
    },
    Announce {
        caller: WireCaller,
        position: usize,
        estimated_wait_ms: Option<u64>,
        waited_ms: u64,
        first: bool,
    },
    WaitMessage {
        caller: WireCaller,
        index: usize,
    },
    Escalated {
        caller: WireCaller,
        tier: usize,
    },
    LanguageFallback {
        caller: WireCaller,
        language: Language,
    },
    QueueTimeout {
        caller: WireCaller,
    },
    NoAgents {
        caller: WireCaller,
    },
    CallLeft {
        caller: WireCaller,
        queue: String,
        language: Language,
        outcome: String,
        agent: Option<String>,
        short: bool,
        waited_ms: u64,
        predicted_ms: Option<u64>,
    },
    AgentState {
        agent: String,
        state: WireAgentState,
        pending: Option<WireRequest>,
        entered: bool,
    },
    /// A callback of a node that was lost is this node's now (written by
    /// the reaper, `reap.lua`).
    AdoptCallback {
        ticket: String,
    },
}

/// An agent's state on the wire; times are Unix ms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WireAgentState {
    LoggedOut,
    Ready,
    Paused { reason: String },
    Ringing { caller: WireCaller },
    OnCall { caller: WireCaller },
    WrapUp { until_ms: i64 },
}

impl WireAgentState {
    pub fn from_state(state: &AgentState, now: crate::time::Now) -> WireAgentState {
        match state {
            AgentState::LoggedOut => WireAgentState::LoggedOut,
            AgentState::Ready => WireAgentState::Ready,
            AgentState::Paused { reason } => WireAgentState::Paused {
                reason: reason.clone(),
            },
            AgentState::Ringing { call } => WireAgentState::Ringing {
                caller: call.into(),
            },
            AgentState::OnCall { call } => WireAgentState::OnCall {
                caller: call.into(),
            },
            AgentState::WrapUp { until } => WireAgentState::WrapUp {
                until_ms: now.wall_ms_at(*until),
            },
        }
    }

    pub fn state(&self, now: crate::time::Now) -> AgentState {
        match self {
            WireAgentState::LoggedOut => AgentState::LoggedOut,
            WireAgentState::Ready => AgentState::Ready,
            WireAgentState::Paused { reason } => AgentState::Paused {
                reason: reason.clone(),
            },
            WireAgentState::Ringing { caller } => AgentState::Ringing { call: caller.id() },
            WireAgentState::OnCall { caller } => AgentState::OnCall { call: caller.id() },
            WireAgentState::WrapUp { until_ms } => AgentState::WrapUp {
                until: now.mono_at(wall(*until_ms)),
            },
        }
    }
}

/// Unix ms as a wall time.
pub fn wall(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or(chrono::DateTime::UNIX_EPOCH)
}

impl Inbox {
    /// The dispatcher's action as the message for the caller's node (`None`
    /// for agent state changes, which go to the agent's home node).
    pub fn from_action(action: &QueueAction, now: crate::time::Now) -> Inbox {
        match action {
            QueueAction::Joined { caller, language } => Inbox::Joined {
                caller: caller.into(),
                language: *language,
            },
            QueueAction::NotJoined { caller, reason } => Inbox::NotJoined {
                caller: caller.into(),
                reason: reason.label().to_string(),
            },
            QueueAction::Offer {
                offer,
                caller,
                agent,
                queue,
                language,
                contact,
            } => Inbox::Offer {
                caller: caller.into(),
                offer: offer.0,
                agent: agent.as_str().to_string(),
                queue: queue.clone(),
                language: *language,
                contact: contact.clone(),
            },
            QueueAction::CancelOffer {
                offer,
                caller,
                agent,
                reason,
            } => Inbox::CancelOffer {
                caller: caller.into(),
                offer: offer.0,
                agent: agent.as_str().to_string(),
                reason: match reason {
                    CancelReason::RingTimeout => "ring_timeout",
                    CancelReason::AgentUnavailable => "agent_unavailable",
                    CancelReason::CallerLeft => "caller_left",
                }
                .to_string(),
            },
            QueueAction::Verdict {
                caller,
                offer,
                accepted,
            } => Inbox::Verdict {
                caller: caller.into(),
                offer: offer.0,
                accepted: *accepted,
            },
            QueueAction::Announce {
                caller,
                position,
                estimated_wait,
                waited,
                first,
            } => Inbox::Announce {
                caller: caller.into(),
                position: *position,
                estimated_wait_ms: estimated_wait.map(ms),
                waited_ms: ms(*waited),
                first: *first,
            },
            QueueAction::WaitMessage { caller, index } => Inbox::WaitMessage {
                caller: caller.into(),
                index: *index,
            },
            QueueAction::Escalated { caller, tier } => Inbox::Escalated {
                caller: caller.into(),
                tier: *tier,
            },
            QueueAction::LanguageFallback { caller, language } => Inbox::LanguageFallback {
                caller: caller.into(),
                language: *language,
            },
            QueueAction::QueueTimeout { caller } => Inbox::QueueTimeout {
                caller: caller.into(),
            },
            QueueAction::NoAgents { caller } => Inbox::NoAgents {
                caller: caller.into(),
            },
            QueueAction::CallLeft(exit) => Inbox::CallLeft {
                caller: (&exit.caller).into(),
                queue: exit.queue.clone(),
                language: exit.language,
                outcome: exit.outcome.label().to_string(),
                agent: match &exit.outcome {
                    LeaveOutcome::Answered { agent } => Some(agent.as_str().to_string()),
                    _ => None,
                },
                short: matches!(exit.outcome, LeaveOutcome::Abandoned { short: true }),
                waited_ms: ms(exit.waited),
                predicted_ms: exit.prediction.map(|p| ms(p.predicted)),
            },
            QueueAction::AgentStateChanged {
                agent,
                state,
                pending,
                entered,
            } => Inbox::AgentState {
                agent: agent.as_str().to_string(),
                state: WireAgentState::from_state(state, now),
                pending: pending.as_ref().map(WireRequest::from),
                entered: *entered,
            },
            QueueAction::AdoptCallback { ticket } => Inbox::AdoptCallback {
                ticket: ticket.clone(),
            },
        }
    }

    /// The message as the action the call layer carries out.
    pub fn action(&self, now: crate::time::Now) -> QueueAction {
        match self.clone() {
            Inbox::Joined { caller, language } => QueueAction::Joined {
                caller: caller.id(),
                language,
            },
            Inbox::NotJoined { caller, reason } => QueueAction::NotJoined {
                caller: caller.id(),
                reason: match reason.as_str() {
                    "full" => NotJoined::Full,
                    "no_agents" => NotJoined::NoAgents,
                    "language_not_served" => NotJoined::LanguageNotServed,
                    "already_queued" => NotJoined::AlreadyQueued,
                    _ => NotJoined::UnknownQueue,
                },
            },
            Inbox::Offer {
                caller,
                offer,
                agent,
                queue,
                language,
                contact,
            } => QueueAction::Offer {
                offer: OfferId(offer),
                caller: caller.id(),
                agent: AgentId::from(agent.as_str()),
                queue,
                language,
                contact,
            },
            Inbox::CancelOffer {
                caller,
                offer,
                agent,
                reason,
            } => QueueAction::CancelOffer {
                offer: OfferId(offer),
                caller: caller.id(),
                agent: AgentId::from(agent.as_str()),
                reason: match reason.as_str() {
                    "ring_timeout" => CancelReason::RingTimeout,
                    "agent_unavailable" => CancelReason::AgentUnavailable,
                    _ => CancelReason::CallerLeft,
                },
            },
            Inbox::Verdict {
                caller,
                offer,
                accepted,
            } => QueueAction::Verdict {
                caller: caller.id(),
                offer: OfferId(offer),
                accepted,
            },
            Inbox::Announce {
                caller,
                position,
                estimated_wait_ms,
                waited_ms,
                first,
            } => QueueAction::Announce {
                caller: caller.id(),
                position,
                estimated_wait: estimated_wait_ms.map(Duration::from_millis),
                waited: Duration::from_millis(waited_ms),
                first,
            },
            Inbox::WaitMessage { caller, index } => QueueAction::WaitMessage {
                caller: caller.id(),
                index,
            },
            Inbox::Escalated { caller, tier } => QueueAction::Escalated {
                caller: caller.id(),
                tier,
            },
            Inbox::LanguageFallback { caller, language } => QueueAction::LanguageFallback {
                caller: caller.id(),
                language,
            },
            Inbox::QueueTimeout { caller } => QueueAction::QueueTimeout {
                caller: caller.id(),
            },
            Inbox::NoAgents { caller } => QueueAction::NoAgents {
                caller: caller.id(),
            },
            Inbox::CallLeft {
                caller,
                queue,
                language,
                outcome,
                agent,
                short,
                waited_ms,
                predicted_ms,
            } => {
                let waited = Duration::from_millis(waited_ms);
                QueueAction::CallLeft(QueueExit {
                    caller: caller.id(),
                    queue,
                    language,
                    outcome: match (outcome.as_str(), agent) {
                        ("answered", Some(agent)) => LeaveOutcome::Answered {
                            agent: AgentId::from(agent.as_str()),
                        },
                        ("abandoned", _) => LeaveOutcome::Abandoned { short },
                        ("timed_out", _) => LeaveOutcome::TimedOut,
                        ("no_agents", _) => LeaveOutcome::NoAgents,
                        _ => LeaveOutcome::Left,
                    },
                    waited,
                    prediction: predicted_ms.map(|p| PredictionError {
                        predicted: Duration::from_millis(p),
                        actual: waited,
                    }),
                })
            }
            Inbox::AgentState {
                agent,
                state,
                pending,
                entered,
            } => QueueAction::AgentStateChanged {
                agent: AgentId::from(agent.as_str()),
                state: state.state(now),
                pending: pending.map(|p| p.requested()),
                entered,
            },
            Inbox::AdoptCallback { ticket } => QueueAction::AdoptCallback { ticket },
        }
    }

    /// The caller a message is about (agent states are about no caller).
    pub fn caller(&self) -> Option<&WireCaller> {
        match self {
            Inbox::Joined { caller, .. }
            | Inbox::NotJoined { caller, .. }
            | Inbox::Offer { caller, .. }
            | Inbox::CancelOffer { caller, .. }
            | Inbox::Verdict { caller, .. }
            | Inbox::Announce { caller, .. }
            | Inbox::WaitMessage { caller, .. }
            | Inbox::Escalated { caller, .. }
            | Inbox::LanguageFallback { caller, .. }
            | Inbox::QueueTimeout { caller }
            | Inbox::NoAgents { caller }
            | Inbox::CallLeft { caller, .. } => Some(caller),
            Inbox::AgentState { .. } | Inbox::AdoptCallback { .. } => None,
        }
    }
}

/// A node's day totals, published for the other nodes' wallboards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireDay {
    /// `YYYY-MM-DD`, the node's local day.
    pub day: String,
    pub languages: Vec<(Language, u64)>,
    pub outcomes: Vec<(String, u64)>,
    pub queues: Vec<(String, Language, crate::today::QueueDay)>,
}

impl From<&crate::today::DayTotals> for WireDay {
    fn from(t: &crate::today::DayTotals) -> WireDay {
        WireDay {
            day: t.day.to_string(),
            languages: t.languages.iter().map(|(l, n)| (*l, *n)).collect(),
            outcomes: t.outcomes.iter().map(|(o, n)| (o.clone(), *n)).collect(),
            queues: t
                .queues
                .iter()
                .map(|((q, l), d)| (q.clone(), *l, *d))
                .collect(),
        }
    }
}

impl WireDay {
    /// The totals, or `None` for a day that cannot be read.
    pub fn totals(&self) -> Option<crate::today::DayTotals> {
        let day = self.day.parse::<chrono::NaiveDate>().ok()?;
        let mut t = crate::today::DayTotals::new(day);
        t.languages = self.languages.iter().copied().collect();
        // Only the known outcomes (a bounded set) are taken.
        for (o, n) in &self.outcomes {
            if crate::outcome::ALL.contains(&o.as_str()) {
                t.outcomes.insert(o.clone(), *n);
            }
        }
        t.queues = self
            .queues
            .iter()
            .map(|(q, l, d)| ((q.clone(), *l), *d))
            .collect();
        Some(t)
    }
}

/// A caller's entry as the store keeps it (the snapshot's shape).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StoredCaller {
    pub id: String,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub call: String,
    #[serde(default)]
    pub queue: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub options: String,
    #[serde(default)]
    pub joined_ms: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub offer: String,
    #[serde(default)]
    pub agent: String,
    #[serde(default)]
    pub number: String,
    /// How the place is held (`WireHeld`, JSON; empty: not held).
    #[serde(default)]
    pub held: String,
    /// A callback's entry (`WireCallback`, JSON; empty: not a callback).
    #[serde(default)]
    pub callback: String,
}

impl StoredCaller {
    pub fn held(&self) -> WireHeld {
        serde_json::from_str(&self.held).unwrap_or_default()
    }

    pub fn callback(&self) -> Option<WireCallback> {
        serde_json::from_str(&self.callback).ok()
    }

    pub fn caller(&self) -> WireCaller {
        WireCaller {
            node: self.node.clone(),
            call: self.call.parse().unwrap_or(0),
        }
    }

    pub fn joined_ms(&self) -> i64 {
        self.joined_ms.parse().unwrap_or(0)
    }

    /// How the caller joined; the defaults if the entry is unreadable.
    pub fn join_options(&self) -> WireJoinOptions {
        serde_json::from_str(&self.options).unwrap_or_default()
    }
}

/// An agent's entry as the store keeps it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StoredAgent {
    pub id: String,
    /// The agent's state as the last dispatcher saw it (`ViewAgent`, JSON).
    #[serde(default)]
    pub view: String,
    #[serde(default)]
    pub home: String,
    /// Where the agent's phone can be rung (`PhoneContact`, JSON).
    #[serde(default)]
    pub phone: String,
}

impl StoredAgent {
    pub fn phone_contact(&self) -> Option<crate::registrar::PhoneContact> {
        serde_json::from_str(&self.phone).ok()
    }

    pub fn view(&self) -> Option<super::view::ViewAgent> {
        serde_json::from_str(&self.view).ok()
    }
}

/// What the store holds when a dispatcher takes over.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Snapshot {
    #[serde(default, deserialize_with = "list")]
    pub callers: Vec<StoredCaller>,
    #[serde(default, deserialize_with = "list")]
    pub agents: Vec<StoredAgent>,
    /// The last event the snapshot includes: reading goes on after it.
    #[serde(default)]
    pub last_id: String,
    /// The last event a dispatcher applied (`0-0`: none ever did). Agents'
    /// requests and phones between it and `last_id` live only in the
    /// stream: the new dispatcher replays them.
    #[serde(default)]
    pub applied: String,
}

/// A list, or the empty object Lua's JSON encoder writes for an empty one.
fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrEmpty<T> {
        List(Vec<T>),
        Empty(serde::de::IgnoredAny),
    }
    Ok(match ListOrEmpty::deserialize(d)? {
        ListOrEmpty::List(v) => v,
        ListOrEmpty::Empty(_) => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// reap.lua writes call ids as text (Lua would round those above 2^53).
    #[test]
    fn a_caller_reads_with_its_call_as_a_number_or_as_text() {
        let big = (1u64 << 61) | 12_345;
        let text = format!(
            r#"{{"type":"node_lost","node":"a.1","callers":[{{"node":"a.1","call":"{big}"}},{{"node":"a.1","call":7}}]}}"#
        );
        let event: Event = serde_json::from_str(&text).expect("node_lost");
        let Event::NodeLost { callers, .. } = event else {
            panic!("{event:?}");
        };
        assert_eq!(callers[0].call, big);
        assert_eq!(callers[1].call, 7);
    }

    /// A join written before callbacks were shared (no `callback`, no
    /// `held`) still reads; a callback's round trip keeps its hold.
    #[test]
    fn joins_read_with_and_without_a_callback() {
        let old = r#"{"type":"join","caller":{"node":"a.1","call":1},"queue":"q","language":"pl","options":{"priority":0,"no_agents":null,"max_wait_ms":null,"announce_every_ms":null,"messages":[]},"joined_ms":5,"number":"47"}"#;
        let event: Event = serde_json::from_str(old).expect("old join");
        assert!(matches!(
            event,
            Event::Join {
                callback: None,
                held: WireHeld::No,
                ..
            }
        ));
        let keep = Event::KeepForCallback {
            caller: WireCaller {
                node: "a.1".into(),
                call: 1,
            },
            callback: WireCallback {
                until_ms: 9_000,
                ticket: r#"{"id":1}"#.into(),
            },
            held: WireHeld::Until(8_000),
        };
        let text = serde_json::to_string(&keep).expect("json");
        let back: Event = serde_json::from_str(&text).expect("back");
        assert_eq!(back, keep);
        let Event::KeepForCallback { callback, held, .. } = back else {
            panic!();
        };
        let place = callback.place(held);
        assert_eq!(place.held, PlaceHeld::Until(wall(8_000)));
        assert_eq!(place.until, wall(9_000));
    }
}
