//! The ACD core: callers wait, agents come and go, offers ring and fail.
//! Sans-IO: every input carries `now`; outputs are polled with
//! [`Acd::poll_action`]; [`Acd::poll_timeout`] says when to call
//! [`Acd::handle_timeout`].
//!
//! Routing: callers are taken in order of priority, then arrival, across all
//! queues. Each is offered to the best available agent that may take it at its
//! current escalation tier: first agents with the caller's own language, then
//! the longest idle, then the most proficient. One call rings one agent at a
//! time; an agent rings for one call at a time and only while Ready.
//!
//! The owner drains `poll_action` after every input; each input produces at
//! most a few actions per waiting call and agent, so the action queue stays
//! bounded by the size of the queues.

use super::agents::{
    Agent, AgentDirectory, AgentId, AgentRuntime, AgentState, InvalidTransition, RequestEffect,
    RequestedState,
};
use super::config::{NoAgentsPolicy, QueueConfig, QueuesConfig, Requirement};
use super::estimate::{estimate_wait, AgentLoad, ErrorSummary, PredictionError};
use super::queue::{JoinOptions, Offer, OrderKey, QueueRuntime, WaitingCall, MAX_MESSAGES};
use super::CallId;
use crate::language::Language;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The answer to [`Acd::join`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinResult {
    /// Queued, in this language (another one if the no-agents policy fell back).
    Joined {
        language: Language,
    },
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

/// How an offer ended, as the SIP side saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferResult {
    Answered,
    /// A final failure response (486 Busy Here, 603 Decline, 408, 480 ...).
    Rejected(u16),
    /// No answer (the SIP side's own timer).
    Timeout,
}

/// Why a caller left the queue. Every joined call leaves exactly once.
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

/// What the ACD asks of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcdAction {
    /// Ring `agent` for `call` (INVITE to its contact).
    Offer {
        call: CallId,
        agent: AgentId,
        queue: String,
        language: Language,
    },
    /// Stop ringing (CANCEL). No `offer_result` is expected after it; if the
    /// agent's 200 crosses the CANCEL, `offer_result` returns `NotOffered` and
    /// that leg is hung up.
    CancelOffer {
        call: CallId,
        agent: AgentId,
        reason: CancelReason,
    },
    /// Tell the caller where they are, in their language.
    Announce {
        call: CallId,
        position: usize,
        estimated_wait: Option<Duration>,
        waited: Duration,
        first: bool,
    },
    /// Say the caller's wait message `index` (of `JoinOptions::messages`).
    WaitMessage { call: CallId, index: usize },
    /// The caller may now go to more agents.
    Escalated { call: CallId, tier: usize },
    /// Nobody who speaks the caller's language is logged in: agents who speak
    /// `language` may take the call too (the caller keeps their place).
    LanguageFallback { call: CallId, language: Language },
    /// Max wait passed: the flow takes its exit.
    QueueTimeout { call: CallId },
    /// The last agent who could take the call logged out: the flow goes on.
    NoAgents { call: CallId },
    /// A caller left the queue (for metrics and records).
    CallLeft {
        call: CallId,
        queue: String,
        language: Language,
        outcome: LeaveOutcome,
        waited: Duration,
        prediction: Option<PredictionError>,
    },
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

/// Input the ACD refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    #[error("unknown agent")]
    UnknownAgent,
    #[error("unknown call")]
    UnknownCall,
    /// The offer was already withdrawn or timed out.
    #[error("call is not offered to this agent")]
    NotOffered,
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Announce(CallId),
    Message(CallId),
    Escalate(CallId),
    MaxWait(CallId),
    RingTimeout(CallId),
    WrapUpEnd(usize),
    HoldOffEnd(usize),
}

#[derive(Clone, Debug)]
struct AgentSlot {
    agent: Agent,
    rt: AgentRuntime,
    /// No longer in `agents.yaml`: never offered again.
    removed: bool,
}

impl AgentSlot {
    /// The action telling the world the agent's state changed.
    fn changed(&self) -> AcdAction {
        AcdAction::AgentStateChanged {
            agent: self.agent.id.clone(),
            state: self.rt.state().clone(),
            pending: self.rt.pending().cloned(),
            entered: true,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Answered {
    agent: usize,
    queue: usize,
}

/// One queue's figures, for the API and gauges.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueStats {
    pub name: String,
    pub waiting: usize,
    pub oldest_wait: Option<Duration>,
    /// For a caller joining now, the longest over the queue's languages.
    pub estimated_wait: Option<Duration>,
    pub lines: Vec<LineStats>,
    pub mean_handle_time: Duration,
    pub prediction_errors: ErrorSummary,
}

/// One language's line in a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineStats {
    pub language: Language,
    pub waiting: usize,
    pub estimated_wait: Option<Duration>,
}

/// An agent as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentView {
    pub id: AgentId,
    pub name: String,
    pub state: AgentState,
    /// Asked for during a call or wrap-up, taken when it ends.
    pub pending: Option<RequestedState>,
    pub idle_since: Option<Instant>,
    pub skills: BTreeMap<Language, u8>,
}

/// The automatic call distributor.
#[derive(Debug)]
pub struct Acd {
    queues: Vec<QueueRuntime>,
    queue_index: HashMap<String, usize>,
    agents: Vec<AgentSlot>,
    agent_index: HashMap<AgentId, usize>,
    calls: HashMap<CallId, WaitingCall>,
    /// Every waiting call in routing order.
    order: BTreeMap<OrderKey, CallId>,
    answered: HashMap<CallId, Answered>,
    timers: BTreeSet<(Instant, Timer)>,
    wrap_timers: HashMap<usize, Instant>,
    hold_timers: HashMap<usize, Instant>,
    actions: VecDeque<AcdAction>,
    next_seq: u64,
}

impl Acd {
    pub fn new(now: Instant, queues: QueuesConfig, agents: AgentDirectory) -> Acd {
        let mut acd = Acd {
            queues: Vec::new(),
            queue_index: HashMap::new(),
            agents: Vec::new(),
            agent_index: HashMap::new(),
            calls: HashMap::new(),
            order: BTreeMap::new(),
            answered: HashMap::new(),
            timers: BTreeSet::new(),
            wrap_timers: HashMap::new(),
            hold_timers: HashMap::new(),
            actions: VecDeque::new(),
            next_seq: 0,
        };
        acd.set_queues(now, queues);
        acd.set_agents(now, agents);
        acd
    }

    // ----- configuration -----

    /// Applies a reloaded `queues.yaml`. Removed queues take no new callers
    /// but keep serving the ones waiting.
    pub fn set_queues(&mut self, now: Instant, config: QueuesConfig) {
        for q in &mut self.queues {
            q.retired = true;
        }
        for qc in config.queues {
            match self.queue_index.get(&qc.name) {
                Some(&i) => {
                    if let Some(q) = self.queues.get_mut(i) {
                        q.handle_times.set_prior(qc.handle_time_prior);
                        q.config = qc;
                        q.retired = false;
                    }
                }
                None => {
                    self.queue_index.insert(qc.name.clone(), self.queues.len());
                    self.queues.push(QueueRuntime::new(qc));
                }
            }
        }
        self.dispatch(now);
    }

    /// Applies a reloaded `agents.yaml`. Agents keep their state; removed
    /// ones are logged out (after their call, if on one).
    pub fn set_agents(&mut self, now: Instant, directory: AgentDirectory) {
        let mut present: Vec<bool> = vec![false; self.agents.len()];
        for agent in directory.iter() {
            match self.agent_index.get(&agent.id) {
                Some(&i) => {
                    if let Some(slot) = self.agents.get_mut(i) {
                        slot.agent = agent.clone();
                        slot.removed = false;
                    }
                    if let Some(p) = present.get_mut(i) {
                        *p = true;
                    }
                }
                None => {
                    self.agent_index.insert(agent.id.clone(), self.agents.len());
                    self.agents.push(AgentSlot {
                        agent: agent.clone(),
                        rt: AgentRuntime::new(),
                        removed: false,
                    });
                }
            }
        }
        for (i, keep) in present.into_iter().enumerate() {
            if !keep {
                if let Some(slot) = self.agents.get_mut(i) {
                    slot.removed = true;
                }
                self.request_state(now, i, RequestedState::LoggedOut);
            }
        }
        self.dispatch(now);
    }

    // ----- callers -----

    /// Puts a caller in a queue.
    pub fn join(
        &mut self,
        now: Instant,
        call: CallId,
        queue: &str,
        language: Language,
        options: JoinOptions,
    ) -> JoinResult {
        let Some(&qi) = self.queue_index.get(queue) else {
            return JoinResult::UnknownQueue;
        };
        let Some(q) = self.queues.get(qi) else {
            return JoinResult::UnknownQueue;
        };
        if q.retired {
            return JoinResult::UnknownQueue;
        }
        if !q.config.accepts(language) {
            return JoinResult::LanguageNotServed;
        }
        if self.calls.contains_key(&call) || self.answered.contains_key(&call) {
            return JoinResult::AlreadyQueued;
        }
        if q.waiting() >= q.config.max_length {
            return JoinResult::Full;
        }
        let policy = options
            .no_agents
            .clone()
            .unwrap_or_else(|| q.config.no_agents.clone());
        let mut fallback = None;
        match &policy {
            NoAgentsPolicy::Wait => {}
            NoAgentsPolicy::Reject => {
                if !self.anyone_logged_in(qi, language) {
                    return JoinResult::NoAgents;
                }
            }
            NoAgentsPolicy::Fallback(other) => {
                if !self.speaker_logged_in(qi, language) && self.speaker_logged_in(qi, *other) {
                    fallback = Some(*other);
                }
            }
        }
        let max_wait = options.max_wait.unwrap_or(q.config.max_wait);
        let key = (Reverse(options.priority), self.next_seq);
        self.next_seq += 1;
        let waiting = WaitingCall {
            call,
            queue: qi,
            language,
            key,
            joined_at: now,
            tier: 0,
            offer: None,
            expired: false,
            no_agents: policy,
            fallback,
            first_estimate: None,
            max_wait_at: later(now, max_wait),
            next_announce: None,
            next_escalation: q.config.escalation.first().map(|t| later(now, t.after)),
            announce_every: options.announce_every,
            messages: options
                .messages
                .iter()
                .take(MAX_MESSAGES)
                .map(|m| (*m, Some(later(now, m.after))))
                .collect(),
            next_message: None,
        };
        self.timers
            .insert((waiting.max_wait_at, Timer::MaxWait(call)));
        if let Some(t) = waiting.next_escalation {
            self.timers.insert((t, Timer::Escalate(call)));
        }
        let mut waiting = waiting;
        if let Some(t) = waiting.message_due() {
            waiting.next_message = Some(t);
            self.timers.insert((t, Timer::Message(call)));
        }
        if let Some(q) = self.queues.get_mut(qi) {
            q.insert(language, key);
        }
        self.order.insert(key, call);
        self.calls.insert(call, waiting);
        if let Some(language) = fallback {
            self.actions
                .push_back(AcdAction::LanguageFallback { call, language });
        }
        self.dispatch(now);
        // The first announcement, unless an agent is already ringing.
        let offered = self.calls.get(&call).is_some_and(|c| c.offer.is_some());
        if offered {
            if let Some(c) = self.calls.get_mut(&call) {
                c.first_estimate = Some(Duration::ZERO);
            }
            self.schedule_announce(now, call);
        } else {
            self.announce(now, call, true);
        }
        JoinResult::Joined { language }
    }

    /// The flow takes the caller out of the queue (not a hang-up).
    pub fn leave(&mut self, now: Instant, call: CallId) -> bool {
        self.take_out(now, call, LeaveOutcome::Left)
    }

    /// The caller hung up while queued (waiting or ringing an agent).
    pub fn abandon(&mut self, now: Instant, call: CallId) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        let threshold = self
            .queues
            .get(c.queue)
            .map_or(Duration::ZERO, |q| q.config.short_abandon_threshold);
        let short = now.saturating_duration_since(c.joined_at) < threshold;
        self.take_out(now, call, LeaveOutcome::Abandoned { short })
    }

    /// Withdraws any offer, then removes the caller.
    fn take_out(&mut self, now: Instant, call: CallId, outcome: LeaveOutcome) -> bool {
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        if let Some(offer) = c.offer.take() {
            self.timers
                .remove(&(offer.deadline, Timer::RingTimeout(call)));
            if let Some(slot) = self.agents.get_mut(offer.agent) {
                let agent = slot.agent.id.clone();
                if slot.rt.offer_withdrawn().is_ok() {
                    self.actions.push_back(AcdAction::CancelOffer {
                        call,
                        agent,
                        reason: CancelReason::CallerLeft,
                    });
                    self.actions.push_back(slot.changed());
                }
            }
        }
        self.remove_call(now, call, outcome);
        self.dispatch(now);
        true
    }

    /// Removes a caller that has no offer in progress.
    fn remove_call(&mut self, now: Instant, call: CallId, outcome: LeaveOutcome) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        self.order.remove(&c.key);
        self.timers.remove(&(c.max_wait_at, Timer::MaxWait(call)));
        if let Some(t) = c.next_announce {
            self.timers.remove(&(t, Timer::Announce(call)));
        }
        if let Some(t) = c.next_escalation {
            self.timers.remove(&(t, Timer::Escalate(call)));
        }
        if let Some(t) = c.next_message {
            self.timers.remove(&(t, Timer::Message(call)));
        }
        if let Some(o) = c.offer {
            self.timers.remove(&(o.deadline, Timer::RingTimeout(call)));
        }
        let waited = now.saturating_duration_since(c.joined_at);
        let mut prediction = None;
        let mut queue_name = String::new();
        if let Some(q) = self.queues.get_mut(c.queue) {
            q.remove(c.language, c.key);
            queue_name = q.config.name.clone();
            if matches!(outcome, LeaveOutcome::Answered { .. }) {
                if let Some(predicted) = c.first_estimate {
                    let e = PredictionError {
                        predicted,
                        actual: waited,
                    };
                    q.errors.observe(&e);
                    prediction = Some(e);
                }
            }
        }
        match outcome {
            LeaveOutcome::TimedOut => self.actions.push_back(AcdAction::QueueTimeout { call }),
            LeaveOutcome::NoAgents => self.actions.push_back(AcdAction::NoAgents { call }),
            _ => {}
        }
        self.actions.push_back(AcdAction::CallLeft {
            call,
            queue: queue_name,
            language: c.language,
            outcome,
            waited,
            prediction,
        });
    }

    // ----- agents -----

    /// An agent (or supervisor) sets the agent's state: API, WebSocket or a
    /// feature code. Pausing while ringing withdraws the offer at once.
    pub fn agent_state(
        &mut self,
        now: Instant,
        agent: &AgentId,
        requested: RequestedState,
    ) -> Result<RequestEffect, AcdError> {
        let &i = self.agent_index.get(agent).ok_or(AcdError::UnknownAgent)?;
        let removed = self.agents.get(i).is_none_or(|s| s.removed);
        if removed && requested != RequestedState::LoggedOut {
            return Err(AcdError::UnknownAgent);
        }
        let effect = self.request_state(now, i, requested);
        self.dispatch(now);
        Ok(effect)
    }

    fn request_state(
        &mut self,
        now: Instant,
        i: usize,
        requested: RequestedState,
    ) -> RequestEffect {
        let Some(slot) = self.agents.get_mut(i) else {
            return RequestEffect::Unchanged;
        };
        let before = slot.rt.state().clone();
        let pending_before = slot.rt.pending().cloned();
        let effect = slot.rt.request(now, requested);
        let after = slot.rt.state().clone();
        let pending = slot.rt.pending().cloned();
        let agent = slot.agent.id.clone();
        if slot.rt.hold_off_until().is_none() {
            if let Some(t) = self.hold_timers.remove(&i) {
                self.timers.remove(&(t, Timer::HoldOffEnd(i)));
            }
        }
        if !matches!(after, AgentState::WrapUp { .. }) {
            if let Some(t) = self.wrap_timers.remove(&i) {
                self.timers.remove(&(t, Timer::WrapUpEnd(i)));
            }
        }
        if let RequestEffect::OfferWithdrawn(call) = effect {
            self.actions.push_back(AcdAction::CancelOffer {
                call,
                agent: agent.clone(),
                reason: CancelReason::AgentUnavailable,
            });
            self.offer_gone(now, call);
        }
        if before != after || pending_before != pending {
            self.actions.push_back(AcdAction::AgentStateChanged {
                agent,
                state: after.clone(),
                pending,
                entered: before != after,
            });
        }
        if (after == AgentState::LoggedOut) != (before == AgentState::LoggedOut) {
            self.check_staffing(now);
        }
        effect
    }

    /// The call no longer rings anyone: back to waiting in its place, or out
    /// if its max wait passed meanwhile.
    fn offer_gone(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(o) = c.offer.take() {
            self.timers.remove(&(o.deadline, Timer::RingTimeout(call)));
        }
        if c.expired {
            self.remove_call(now, call, LeaveOutcome::TimedOut);
        }
    }

    /// How an offer ended.
    pub fn offer_result(
        &mut self,
        now: Instant,
        call: CallId,
        agent: &AgentId,
        result: OfferResult,
    ) -> Result<(), AcdError> {
        let &ai = self.agent_index.get(agent).ok_or(AcdError::UnknownAgent)?;
        let c = self.calls.get(&call).ok_or(AcdError::NotOffered)?;
        match c.offer {
            Some(o) if o.agent == ai => {}
            _ => return Err(AcdError::NotOffered),
        }
        let queue = c.queue;
        match result {
            OfferResult::Answered => {
                let slot = self.agents.get_mut(ai).ok_or(AcdError::UnknownAgent)?;
                slot.rt.answered(now)?;
                self.actions.push_back(slot.changed());
                if let Some(c) = self.calls.get_mut(&call) {
                    if let Some(o) = c.offer.take() {
                        self.timers.remove(&(o.deadline, Timer::RingTimeout(call)));
                    }
                }
                self.answered.insert(call, Answered { agent: ai, queue });
                self.remove_call(
                    now,
                    call,
                    LeaveOutcome::Answered {
                        agent: agent.clone(),
                    },
                );
            }
            OfferResult::Rejected(code) => {
                let reason = match code {
                    486 | 600 => "busy",
                    603 => "declined",
                    408 | 480 | 487 => "no answer",
                    _ => "unreachable",
                };
                self.offer_failed(now, call, ai, reason);
            }
            OfferResult::Timeout => self.offer_failed(now, call, ai, "no answer"),
        }
        self.dispatch(now);
        Ok(())
    }

    fn offer_failed(&mut self, now: Instant, call: CallId, ai: usize, reason: &str) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let (pause, delay) = self
            .queues
            .get(c.queue)
            .map_or((true, Duration::ZERO), |q| {
                (q.config.pause_on_no_answer, q.config.reoffer_delay)
            });
        if let Some(slot) = self.agents.get_mut(ai) {
            let hold_until = later(now, delay);
            let pause_reason = pause.then(|| reason.to_string());
            if slot.rt.offer_failed(now, pause_reason, hold_until).is_ok() {
                if slot.rt.hold_off_until() == Some(hold_until) {
                    if let Some(old) = self.hold_timers.insert(ai, hold_until) {
                        self.timers.remove(&(old, Timer::HoldOffEnd(ai)));
                    }
                    self.timers.insert((hold_until, Timer::HoldOffEnd(ai)));
                }
                self.actions.push_back(slot.changed());
            }
        }
        self.offer_gone(now, call);
    }

    /// The answered call ended (either side hung up): the agent wraps up. A
    /// call still queued is taken as abandoned.
    pub fn call_ended(&mut self, now: Instant, call: CallId) -> Result<(), AcdError> {
        if self.calls.contains_key(&call) {
            self.abandon(now, call);
            return Ok(());
        }
        let a = self.answered.remove(&call).ok_or(AcdError::UnknownCall)?;
        let queue_wrap = self
            .queues
            .get(a.queue)
            .map_or(Duration::ZERO, |q| q.config.wrap_up);
        let slot = self.agents.get_mut(a.agent).ok_or(AcdError::UnknownAgent)?;
        let wrap = slot.agent.wrap_up.unwrap_or(queue_wrap);
        let talk = slot
            .rt
            .answered_at()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        slot.rt.call_ended(now, wrap)?;
        let state = slot.rt.state().clone();
        self.actions.push_back(slot.changed());
        if let Some(q) = self.queues.get_mut(a.queue) {
            q.handle_times.record(talk + wrap);
        }
        if let AgentState::WrapUp { until } = state {
            self.wrap_timers.insert(a.agent, until);
            self.timers.insert((until, Timer::WrapUpEnd(a.agent)));
        }
        if state == AgentState::LoggedOut {
            self.check_staffing(now);
        }
        self.dispatch(now);
        Ok(())
    }

    // ----- time -----

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, timer)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, timer));
            match timer {
                Timer::Announce(call) => {
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.next_announce = None;
                        if c.offer.is_some() {
                            self.schedule_announce(now, call);
                        } else {
                            self.announce(now, call, false);
                        }
                    }
                }
                Timer::Message(call) => self.wait_messages(now, call),
                Timer::Escalate(call) => self.escalate(now, call),
                Timer::MaxWait(call) => {
                    if let Some(c) = self.calls.get_mut(&call) {
                        if c.offer.is_some() {
                            c.expired = true;
                        } else {
                            self.remove_call(now, call, LeaveOutcome::TimedOut);
                        }
                    }
                }
                Timer::RingTimeout(call) => {
                    let agent = self
                        .calls
                        .get(&call)
                        .and_then(|c| c.offer)
                        .filter(|o| o.deadline == t)
                        .map(|o| o.agent);
                    if let Some(ai) = agent {
                        if let Some(slot) = self.agents.get(ai) {
                            self.actions.push_back(AcdAction::CancelOffer {
                                call,
                                agent: slot.agent.id.clone(),
                                reason: CancelReason::RingTimeout,
                            });
                        }
                        self.offer_failed(now, call, ai, "no answer");
                    }
                }
                Timer::WrapUpEnd(ai) => {
                    self.wrap_timers.remove(&ai);
                    if let Some(slot) = self.agents.get_mut(ai) {
                        if slot.rt.wrap_up_done(now).is_ok() {
                            self.actions.push_back(slot.changed());
                            if slot.rt.state() == &AgentState::LoggedOut {
                                self.check_staffing(now);
                            }
                        }
                    }
                }
                Timer::HoldOffEnd(ai) => {
                    self.hold_timers.remove(&ai);
                }
            }
        }
        self.dispatch(now);
    }

    pub fn poll_action(&mut self) -> Option<AcdAction> {
        self.actions.pop_front()
    }

    fn escalate(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(q) = self.queues.get(c.queue) else {
            return;
        };
        let waited = now.saturating_duration_since(c.joined_at);
        let tier = q.config.tier_after(waited).max(c.tier + 1);
        c.tier = tier.min(q.config.escalation.len());
        c.next_escalation = q
            .config
            .escalation
            .get(c.tier)
            .map(|t| later(c.joined_at, t.after));
        if let Some(t) = c.next_escalation {
            self.timers.insert((t, Timer::Escalate(call)));
        }
        let tier = c.tier;
        self.actions.push_back(AcdAction::Escalated { call, tier });
    }

    /// Says the wait messages that are due. While an agent's phone rings the
    /// caller may be connected any moment: the message waits for the offer
    /// to end (checked again after `MESSAGE_RETRY`).
    fn wait_messages(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.next_message = None;
        if c.offer.is_some() {
            let at = later(now, MESSAGE_RETRY);
            c.next_message = Some(at);
            self.timers.insert((at, Timer::Message(call)));
            return;
        }
        // Several due at once are said one after the other, earliest first.
        let mut due: Vec<(Instant, usize)> = c
            .messages
            .iter()
            .enumerate()
            .filter_map(|(i, (_, d))| d.filter(|d| *d <= now).map(|d| (d, i)))
            .collect();
        due.sort();
        for &(_, i) in &due {
            if let Some((timing, next)) = c.messages.get_mut(i) {
                *next = timing.every.map(|e| later(now, e));
            }
            self.actions
                .push_back(AcdAction::WaitMessage { call, index: i });
        }
        if let Some(t) = c.message_due() {
            c.next_message = Some(t);
            self.timers.insert((t, Timer::Message(call)));
        }
    }

    fn schedule_announce(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let interval = c.announce_every.unwrap_or_else(|| {
            self.queues
                .get(c.queue)
                .map_or(Duration::ZERO, |q| q.config.announce_interval)
        });
        if interval.is_zero() {
            return;
        }
        if let Some(old) = c.next_announce.take() {
            self.timers.remove(&(old, Timer::Announce(call)));
        }
        let at = later(now, interval);
        c.next_announce = Some(at);
        self.timers.insert((at, Timer::Announce(call)));
    }

    fn announce(&mut self, now: Instant, call: CallId, first: bool) {
        let Some((position, estimate)) = self.position_and_estimate(now, call) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if first {
            c.first_estimate = estimate;
        }
        let waited = now.saturating_duration_since(c.joined_at);
        self.actions.push_back(AcdAction::Announce {
            call,
            position,
            estimated_wait: estimate,
            waited,
            first,
        });
        self.schedule_announce(now, call);
    }

    /// Position among callers in the same line not already ringing an agent,
    /// and the expected wait (see `estimate`).
    fn position_and_estimate(
        &self,
        now: Instant,
        call: CallId,
    ) -> Option<(usize, Option<Duration>)> {
        let c = self.calls.get(&call)?;
        let q = self.queues.get(c.queue)?;
        let ahead = q
            .ahead(c.language, c.key)
            .filter(|k| {
                self.order
                    .get(k)
                    .and_then(|id| self.calls.get(id))
                    .is_some_and(|other| other.offer.is_none())
            })
            .count();
        let position = ahead + 1;
        let requirement = c.requirement(&q.config);
        let estimate = self.estimate_for(now, c.queue, &requirement, position);
        Some((position, estimate))
    }

    fn estimate_for(
        &self,
        now: Instant,
        qi: usize,
        requirement: &Requirement,
        position: usize,
    ) -> Option<Duration> {
        let q = self.queues.get(qi)?;
        let mean = q.handle_times.mean();
        let loads: Vec<AgentLoad> = self
            .agents
            .iter()
            .filter(|s| !s.removed && s.rt.state().is_serving())
            .filter(|s| qualifies(&s.agent, &q.config, requirement).is_some())
            .map(|s| match s.rt.state() {
                AgentState::Ringing { .. } => AgentLoad::Ringing,
                AgentState::OnCall { .. } => AgentLoad::OnCall {
                    elapsed: s
                        .rt
                        .answered_at()
                        .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
                },
                AgentState::WrapUp { until } => AgentLoad::WrapUp {
                    remaining: until.saturating_duration_since(now),
                },
                _ => AgentLoad::Free,
            })
            .collect();
        estimate_wait(position, &loads, mean)
    }

    // ----- routing -----

    /// Offers waiting calls to available agents, in routing order.
    fn dispatch(&mut self, now: Instant) {
        let mut available: Vec<usize> = self
            .agents
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.removed && s.rt.is_available(now))
            .map(|(i, _)| i)
            .collect();
        if available.is_empty() {
            return;
        }
        let mut offers = Vec::new();
        for call in self.order.values() {
            if available.is_empty() {
                break;
            }
            let Some(c) = self.calls.get(call) else {
                continue;
            };
            if c.offer.is_some() {
                continue;
            }
            let Some(q) = self.queues.get(c.queue) else {
                continue;
            };
            let requirement = c.requirement(&q.config);
            let best = available
                .iter()
                .enumerate()
                .filter_map(|(pos, &ai)| {
                    let slot = self.agents.get(ai)?;
                    let proficiency = qualifies(&slot.agent, &q.config, &requirement)?;
                    let own_language = slot
                        .agent
                        .proficiency(c.language)
                        .is_some_and(|p| p >= requirement.min_proficiency);
                    // Own language first, then longest idle, then proficiency.
                    let rank = (
                        !own_language,
                        slot.rt.idle_since().is_none(),
                        slot.rt.idle_since(),
                        Reverse(proficiency),
                        ai,
                    );
                    Some((rank, pos))
                })
                .min_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, pos)| pos);
            if let Some(pos) = best {
                let ai = available.swap_remove(pos);
                offers.push((*call, ai, c.queue));
            }
        }
        for (call, ai, qi) in offers {
            let ring = self
                .queues
                .get(qi)
                .map_or(Duration::from_secs(20), |q| q.config.ring_timeout);
            let Some(slot) = self.agents.get_mut(ai) else {
                continue;
            };
            if slot.rt.offer(now, call).is_err() {
                continue;
            }
            let agent = slot.agent.id.clone();
            let changed = slot.changed();
            let Some(c) = self.calls.get_mut(&call) else {
                continue;
            };
            let deadline = later(now, ring);
            c.offer = Some(Offer {
                agent: ai,
                deadline,
            });
            self.timers.insert((deadline, Timer::RingTimeout(call)));
            let queue = self
                .queues
                .get(qi)
                .map(|q| q.config.name.clone())
                .unwrap_or_default();
            self.actions.push_back(AcdAction::Offer {
                call,
                agent,
                queue,
                language: c.language,
            });
            self.actions.push_back(changed);
        }
    }

    /// Whether anyone who could ever take a `language` call in this queue
    /// (at any tier) is logged in.
    fn anyone_logged_in(&self, qi: usize, language: Language) -> bool {
        let Some(q) = self.queues.get(qi) else {
            return false;
        };
        self.logged_in(
            qi,
            &Requirement {
                min_proficiency: 1,
                ..q.config.requirement(language, q.config.escalation.len())
            },
        )
    }

    /// Whether anyone who speaks `language` and serves this queue is logged in.
    fn speaker_logged_in(&self, qi: usize, language: Language) -> bool {
        self.logged_in(
            qi,
            &Requirement {
                languages: vec![language],
                min_proficiency: 1,
            },
        )
    }

    fn logged_in(&self, qi: usize, requirement: &Requirement) -> bool {
        let Some(q) = self.queues.get(qi) else {
            return false;
        };
        self.agents.iter().any(|s| {
            !s.removed
                && *s.rt.state() != AgentState::LoggedOut
                && qualifies(&s.agent, &q.config, requirement).is_some()
        })
    }

    /// After an agent logged in or out. Callers nobody logged in could take
    /// any more leave (`reject`) or, with a `fallback` language somebody
    /// logged in speaks, may now go to those agents too (and are told once).
    fn check_staffing(&mut self, now: Instant) {
        let affected: Vec<(CallId, usize, Language, Option<Language>, NoAgentsPolicy)> = self
            .calls
            .values()
            // A ringing caller may fall back too (else, should the offer fail,
            // they would wait behind callers who joined later and fell back);
            // only leaving waits for the offer to end.
            .filter(|c| match c.no_agents {
                NoAgentsPolicy::Wait => false,
                NoAgentsPolicy::Reject => c.offer.is_none(),
                NoAgentsPolicy::Fallback(_) => c.fallback.is_none(),
            })
            .map(|c| (c.call, c.queue, c.language, c.fallback, c.no_agents.clone()))
            .collect();
        // (queue, language, any tier) → someone logged in.
        let mut cache: HashMap<(usize, Language, bool), bool> = HashMap::new();
        let mut staffed = |acd: &Acd, qi: usize, l: Language, any_tier: bool| {
            *cache.entry((qi, l, any_tier)).or_insert_with(|| {
                if any_tier {
                    acd.anyone_logged_in(qi, l)
                } else {
                    acd.speaker_logged_in(qi, l)
                }
            })
        };
        for (call, qi, language, active, policy) in affected {
            match policy {
                NoAgentsPolicy::Wait => {}
                NoAgentsPolicy::Reject => {
                    if !staffed(self, qi, language, true) {
                        self.remove_call(now, call, LeaveOutcome::NoAgents);
                    }
                }
                NoAgentsPolicy::Fallback(other) => {
                    if active.is_none()
                        && !staffed(self, qi, language, false)
                        && staffed(self, qi, other, false)
                    {
                        if let Some(c) = self.calls.get_mut(&call) {
                            c.fallback = Some(other);
                        }
                        self.actions.push_back(AcdAction::LanguageFallback {
                            call,
                            language: other,
                        });
                    }
                }
            }
        }
    }

    // ----- views -----

    pub fn agent_state_of(&self, agent: &AgentId) -> Option<&AgentState> {
        let &i = self.agent_index.get(agent)?;
        self.agents.get(i).map(|s| s.rt.state())
    }

    /// The state the agent asked for during a call or wrap-up, if any.
    pub fn agent_pending_of(&self, agent: &AgentId) -> Option<&RequestedState> {
        let &i = self.agent_index.get(agent)?;
        self.agents.get(i).and_then(|s| s.rt.pending())
    }

    /// Every agent still in the directory.
    pub fn agents(&self) -> Vec<AgentView> {
        self.agents
            .iter()
            .filter(|s| !s.removed)
            .map(|s| AgentView {
                id: s.agent.id.clone(),
                name: s.agent.name.clone(),
                state: s.rt.state().clone(),
                pending: s.rt.pending().cloned(),
                idle_since: s.rt.idle_since(),
                skills: s.agent.skills.clone(),
            })
            .collect()
    }

    /// Whether the call is waiting (or ringing an agent) in a queue.
    /// The caller's place in its line (1 is next), as announced.
    pub fn position(&self, now: Instant, call: CallId) -> Option<usize> {
        self.position_and_estimate(now, call).map(|(p, _)| p)
    }

    pub fn is_queued(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// Figures of every live queue.
    pub fn queue_stats(&self, now: Instant) -> Vec<QueueStats> {
        let mut oldest: HashMap<usize, Instant> = HashMap::new();
        for c in self.calls.values() {
            let e = oldest.entry(c.queue).or_insert(c.joined_at);
            if c.joined_at < *e {
                *e = c.joined_at;
            }
        }
        self.queues
            .iter()
            .enumerate()
            .filter(|(_, q)| !q.retired || q.waiting() > 0)
            .map(|(qi, q)| {
                let lines: Vec<LineStats> = q
                    .lines()
                    .map(|(language, waiting)| LineStats {
                        language,
                        waiting,
                        estimated_wait: self.estimate_for(
                            now,
                            qi,
                            &q.config.requirement(language, 0),
                            waiting + 1,
                        ),
                    })
                    .collect();
                QueueStats {
                    name: q.config.name.clone(),
                    waiting: q.waiting(),
                    oldest_wait: oldest.get(&qi).map(|t| now.saturating_duration_since(*t)),
                    estimated_wait: lines.iter().filter_map(|l| l.estimated_wait).max(),
                    lines,
                    mean_handle_time: q.handle_times.mean(),
                    prediction_errors: q.errors,
                }
            })
            .collect()
    }

    /// For each language `queue` takes (every language when it names none),
    /// the wait of a caller who joined now at the back of that language's
    /// line, with the fallback language they would get as `join` gives it;
    /// `None` when no agent who could take the call is serving. Asked for by
    /// the API only, not on every change.
    pub fn join_estimates(&self, now: Instant, queue: &str) -> Vec<(Language, Option<Duration>)> {
        let Some((qi, q)) = self
            .queue_index
            .get(queue)
            .and_then(|&qi| self.queues.get(qi).map(|q| (qi, q)))
        else {
            return Vec::new();
        };
        let waiting: HashMap<Language, usize> = q.lines().collect();
        Language::ALL
            .into_iter()
            .filter(|l| q.config.accepts(*l))
            .map(|l| {
                let position = waiting.get(&l).copied().unwrap_or(0) + 1;
                let mut requirement = q.config.requirement(l, 0);
                if let NoAgentsPolicy::Fallback(other) = q.config.no_agents {
                    if !requirement.languages.contains(&other)
                        && !self.speaker_logged_in(qi, l)
                        && self.speaker_logged_in(qi, other)
                    {
                        requirement.languages.push(other);
                    }
                }
                (l, self.estimate_for(now, qi, &requirement, position))
            })
            .collect()
    }
}

/// `now + d` without the panic `Instant` arithmetic has on overflow; such a
/// far deadline is as good as never.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(MAX_DELAY))
        .unwrap_or(now)
}

/// No timer is set further out than this.
const MAX_DELAY: Duration = Duration::from_secs(7 * 86_400);
/// How soon a wait message held back by a ringing phone is tried again.
const MESSAGE_RETRY: Duration = Duration::from_secs(5);

/// The proficiency with which `agent` may take a call of this queue under
/// `requirement`, or `None` if it may not.
fn qualifies(agent: &Agent, queue: &QueueConfig, requirement: &Requirement) -> Option<u8> {
    if !agent.serves_queue(&queue.name) {
        return None;
    }
    if !queue.topics.iter().all(|t| agent.topics.contains_key(t)) {
        return None;
    }
    requirement
        .languages
        .iter()
        .filter_map(|l| agent.proficiency(*l))
        .filter(|p| *p >= requirement.min_proficiency)
        .max()
}
