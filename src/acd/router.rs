//! The in-process queue engine: callers wait, agents come and go, offers ring
//! and fail. It implements [`QueueService`], the seam the call layer uses.
//! Sans-IO: every input carries `now`; outputs are polled with `poll_action`;
//! `poll_timeout` says when to call `handle_timeout`.
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
    Agent, AgentDirectory, AgentId, AgentRuntime, AgentState, RequestEffect, RequestedState,
};
use super::config::{NoAgentsPolicy, QueueConfig, QueuesConfig, Requirement};
use super::estimate::{estimate_wait, AgentLoad, ErrorSummary, PredictionError};
use super::queue::{Held, Offer, OrderKey, QueueRuntime, WaitingCall, MAX_MESSAGES};
use super::service::{
    CallbackPlace, CancelReason, JoinRequest, Leave, LeaveOutcome, NotJoined, OfferResult,
    QueueAction, QueueError, QueueExit, QueueService,
};
use crate::ids::{CallerId, OfferId};
use crate::language::Language;
use crate::time::Now;
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Announce(CallerId),
    Message(CallerId),
    Escalate(CallerId),
    MaxWait(CallerId),
    RingTimeout(CallerId),
    WrapUpEnd(AgentId),
    HoldOffEnd(AgentId),
    /// A held place comes back into routing.
    HoldEnd(CallerId),
}

#[derive(Clone, Debug)]
struct AgentSlot {
    agent: Agent,
    rt: AgentRuntime,
    /// No longer in `agents.yaml`: never offered again.
    removed: bool,
}

impl AgentSlot {
    /// The action telling the world the agent entered its current state.
    fn changed(&self) -> QueueAction {
        QueueAction::AgentStateChanged {
            agent: self.agent.id.clone(),
            state: self.rt.state().clone(),
            pending: self.rt.pending().cloned(),
            entered: true,
        }
    }
}

#[derive(Clone, Debug)]
struct Answered {
    agent: AgentId,
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
    /// How many of `waiting` are callbacks (their callers hung up).
    pub callbacks: usize,
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

/// The in-process queue engine: every caller and agent of one node, routed
/// in memory.
#[derive(Debug)]
pub struct Acd {
    queues: Vec<QueueRuntime>,
    queue_index: HashMap<String, usize>,
    /// By configured id; removed agents stay (marked) until they log out.
    agents: BTreeMap<AgentId, AgentSlot>,
    calls: HashMap<CallerId, WaitingCall>,
    /// Every waiting call in routing order.
    order: BTreeMap<OrderKey, CallerId>,
    answered: HashMap<CallerId, Answered>,
    timers: BTreeSet<(Instant, Timer)>,
    wrap_timers: HashMap<AgentId, Instant>,
    hold_timers: HashMap<AgentId, Instant>,
    actions: VecDeque<QueueAction>,
    next_seq: u64,
    next_offer: u64,
}

impl Acd {
    pub fn new(now: Now, queues: QueuesConfig, agents: AgentDirectory) -> Acd {
        let mut acd = Acd {
            queues: Vec::new(),
            queue_index: HashMap::new(),
            agents: BTreeMap::new(),
            calls: HashMap::new(),
            order: BTreeMap::new(),
            answered: HashMap::new(),
            timers: BTreeSet::new(),
            wrap_timers: HashMap::new(),
            hold_timers: HashMap::new(),
            actions: VecDeque::new(),
            next_seq: 0,
            next_offer: 0,
        };
        acd.set_queues(now, queues);
        acd.set_agents(now, agents);
        acd
    }

    // ----- callers -----

    fn join_queue(&mut self, now: Now, request: JoinRequest) -> Result<Language, NotJoined> {
        let JoinRequest {
            caller: call,
            queue,
            language,
            options,
            joined_at: joined_wall,
            callback,
            ..
        } = request;
        let qi = *self
            .queue_index
            .get(&queue)
            .ok_or(NotJoined::UnknownQueue)?;
        let q = self.queues.get(qi).ok_or(NotJoined::UnknownQueue)?;
        if q.retired {
            return Err(NotJoined::UnknownQueue);
        }
        if !q.config.accepts(language) {
            return Err(NotJoined::LanguageNotServed);
        }
        if self.calls.contains_key(&call) || self.answered.contains_key(&call) {
            return Err(NotJoined::AlreadyQueued);
        }
        if q.waiting() >= q.config.max_length {
            return Err(NotJoined::Full);
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
                    return Err(NotJoined::NoAgents);
                }
            }
            NoAgentsPolicy::Fallback(other) => {
                if !self.speaker_logged_in(qi, language) && self.speaker_logged_in(qi, *other) {
                    fallback = Some(*other);
                }
            }
        }
        // A caller put back keeps the time they first joined.
        let joined_at = now.mono_at(joined_wall.min(now.wall));
        let max_wait = options.max_wait.unwrap_or(q.config.max_wait);
        let key = (
            Reverse(options.priority),
            joined_wall.timestamp_millis(),
            self.next_seq,
        );
        self.next_seq += 1;
        let mut waiting = WaitingCall {
            call: call.clone(),
            queue: qi,
            language,
            key,
            joined_at,
            tier: 0,
            offer: None,
            expired: false,
            no_agents: policy,
            fallback,
            first_estimate: None,
            max_wait_at: later(joined_at, max_wait),
            next_announce: None,
            next_escalation: q
                .config
                .escalation
                .first()
                .map(|t| later(joined_at, t.after)),
            announce_every: options.announce_every,
            messages: options
                .messages
                .iter()
                .take(MAX_MESSAGES)
                .map(|m| (*m, Some(later(joined_at, m.after))))
                .collect(),
            next_message: None,
            held: None,
            callback: false,
        };
        self.timers
            .insert((waiting.max_wait_at, Timer::MaxWait(call.clone())));
        if let Some(t) = waiting.next_escalation {
            self.timers.insert((t, Timer::Escalate(call.clone())));
        }
        if let Some(t) = waiting.message_due() {
            waiting.next_message = Some(t);
            self.timers.insert((t, Timer::Message(call.clone())));
        }
        if let Some(q) = self.queues.get_mut(qi) {
            q.insert(language, key);
        }
        self.order.insert(key, call.clone());
        self.calls.insert(call.clone(), waiting);
        // The answer comes before anything else about the caller.
        self.actions.push_back(QueueAction::Joined {
            caller: call.clone(),
            language,
        });
        if let Some(language) = fallback {
            self.actions.push_back(QueueAction::LanguageFallback {
                caller: call.clone(),
                language,
            });
        }
        let now_mono = now.mono;
        if let Some(place) = callback {
            // Silent and held as it was, before any agent is looked for.
            self.keep_callback(now, &call, now.mono_at(place.until));
            if let Some(until) = place.held.hold_until() {
                self.hold_place(now, &call, until.map(|t| now.mono_at(t)));
            }
            self.dispatch(now_mono);
            return Ok(language);
        }
        self.dispatch(now_mono);
        // The first announcement, unless an agent is already ringing.
        let offered = self.calls.get(&call).is_some_and(|c| c.offer.is_some());
        if offered {
            if let Some(c) = self.calls.get_mut(&call) {
                c.first_estimate = Some(Duration::ZERO);
            }
            self.schedule_announce(now_mono, &call);
        } else {
            self.announce(now_mono, &call, true);
        }
        Ok(language)
    }

    /// The caller hung up while queued (waiting or ringing an agent).
    fn abandon(&mut self, now: Instant, call: &CallerId) -> bool {
        let Some(c) = self.calls.get(call) else {
            return false;
        };
        let threshold = self
            .queues
            .get(c.queue)
            .map_or(Duration::ZERO, |q| q.config.short_abandon_threshold);
        let short = now.saturating_duration_since(c.joined_at) < threshold;
        self.take_out(now, call, LeaveOutcome::Abandoned { short })
    }

    /// Keeps the caller's place out of routing until `until` (`None`: until
    /// released by a `hold` with a time). A ringing offer is withdrawn: the
    /// caller is busy with something else (confirming a callback).
    fn hold_place(&mut self, now: Now, call: &CallerId, until: Option<Instant>) -> bool {
        let Some(c) = self.calls.get_mut(call) else {
            return false;
        };
        if let Some(Held::Until(t)) = c.held.take() {
            self.timers.remove(&(t, Timer::HoldEnd(call.clone())));
        }
        let held = match until {
            None => Held::Indefinitely,
            Some(t) if t <= now.mono => {
                self.dispatch(now.mono);
                return true;
            }
            Some(t) => Held::Until(t),
        };
        c.held = Some(held);
        if let Held::Until(t) = held {
            self.timers.insert((t, Timer::HoldEnd(call.clone())));
        }
        if let Some(offer) = c.offer.take() {
            self.withdraw_offer(call, offer);
            self.dispatch(now.mono);
        }
        true
    }

    /// The caller hung up to be called back: silent from now on, waiting
    /// (with agents or not) until `until` at the latest.
    fn keep_callback(&mut self, now: Now, call: &CallerId, until: Instant) -> bool {
        let Some(c) = self.calls.get_mut(call) else {
            return false;
        };
        c.callback = true;
        c.no_agents = NoAgentsPolicy::Wait;
        if let Some(t) = c.next_announce.take() {
            self.timers.remove(&(t, Timer::Announce(call.clone())));
        }
        if let Some(t) = c.next_message.take() {
            self.timers.remove(&(t, Timer::Message(call.clone())));
        }
        c.messages.clear();
        self.timers
            .remove(&(c.max_wait_at, Timer::MaxWait(call.clone())));
        c.max_wait_at = until.max(now.mono);
        self.timers
            .insert((c.max_wait_at, Timer::MaxWait(call.clone())));
        true
    }

    /// Takes back the offer ringing for `call` because the caller is gone or
    /// busy elsewhere: its ring timer, and the agent back to ready.
    fn withdraw_offer(&mut self, call: &CallerId, offer: Offer) {
        self.timers
            .remove(&(offer.deadline, Timer::RingTimeout(call.clone())));
        if let Some(slot) = self.agents.get_mut(&offer.agent) {
            if slot.rt.offer_withdrawn().is_ok() {
                self.actions.push_back(QueueAction::CancelOffer {
                    offer: offer.id,
                    caller: call.clone(),
                    agent: offer.agent.clone(),
                    reason: CancelReason::CallerLeft,
                });
                self.actions.push_back(slot.changed());
            }
        }
    }

    /// Withdraws any offer, then removes the caller.
    fn take_out(&mut self, now: Instant, call: &CallerId, outcome: LeaveOutcome) -> bool {
        let Some(c) = self.calls.get_mut(call) else {
            return false;
        };
        if let Some(offer) = c.offer.take() {
            self.withdraw_offer(call, offer);
        }
        self.remove_call(now, call, outcome);
        self.dispatch(now);
        true
    }

    /// Removes a caller that has no offer in progress.
    fn remove_call(&mut self, now: Instant, call: &CallerId, outcome: LeaveOutcome) {
        let Some(c) = self.calls.remove(call) else {
            return;
        };
        self.order.remove(&c.key);
        self.timers
            .remove(&(c.max_wait_at, Timer::MaxWait(call.clone())));
        if let Some(t) = c.next_announce {
            self.timers.remove(&(t, Timer::Announce(call.clone())));
        }
        if let Some(t) = c.next_escalation {
            self.timers.remove(&(t, Timer::Escalate(call.clone())));
        }
        if let Some(t) = c.next_message {
            self.timers.remove(&(t, Timer::Message(call.clone())));
        }
        if let Some(o) = &c.offer {
            self.timers
                .remove(&(o.deadline, Timer::RingTimeout(call.clone())));
        }
        if let Some(Held::Until(t)) = c.held {
            self.timers.remove(&(t, Timer::HoldEnd(call.clone())));
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
            LeaveOutcome::TimedOut => self.actions.push_back(QueueAction::QueueTimeout {
                caller: call.clone(),
            }),
            LeaveOutcome::NoAgents => self.actions.push_back(QueueAction::NoAgents {
                caller: call.clone(),
            }),
            _ => {}
        }
        self.actions.push_back(QueueAction::CallLeft(QueueExit {
            caller: call.clone(),
            queue: queue_name,
            language: c.language,
            outcome,
            waited,
            prediction,
        }));
    }

    // ----- agents -----

    fn request_state(
        &mut self,
        now: Instant,
        id: &AgentId,
        requested: RequestedState,
    ) -> RequestEffect {
        let Some(slot) = self.agents.get_mut(id) else {
            return RequestEffect::Unchanged;
        };
        let before = slot.rt.state().clone();
        let pending_before = slot.rt.pending().cloned();
        let effect = slot.rt.request(now, requested);
        let after = slot.rt.state().clone();
        let pending = slot.rt.pending().cloned();
        if slot.rt.hold_off_until().is_none() {
            if let Some(t) = self.hold_timers.remove(id) {
                self.timers.remove(&(t, Timer::HoldOffEnd(id.clone())));
            }
        }
        if !matches!(after, AgentState::WrapUp { .. }) {
            if let Some(t) = self.wrap_timers.remove(id) {
                self.timers.remove(&(t, Timer::WrapUpEnd(id.clone())));
            }
        }
        if let RequestEffect::OfferWithdrawn(call) = &effect {
            let offer = self
                .calls
                .get(call)
                .and_then(|c| c.offer.as_ref())
                .map_or(OfferId(0), |o| o.id);
            self.actions.push_back(QueueAction::CancelOffer {
                offer,
                caller: call.clone(),
                agent: id.clone(),
                reason: CancelReason::AgentUnavailable,
            });
            self.offer_gone(now, call);
        }
        if before != after || pending_before != pending {
            self.actions.push_back(QueueAction::AgentStateChanged {
                agent: id.clone(),
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
    fn offer_gone(&mut self, now: Instant, call: &CallerId) {
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        if let Some(o) = c.offer.take() {
            self.timers
                .remove(&(o.deadline, Timer::RingTimeout(call.clone())));
        }
        if c.expired {
            self.remove_call(now, call, LeaveOutcome::TimedOut);
        }
    }

    fn offer_failed(&mut self, now: Instant, call: &CallerId, agent: &AgentId, reason: &str) {
        let Some(c) = self.calls.get(call) else {
            return;
        };
        let (pause, delay) = self
            .queues
            .get(c.queue)
            .map_or((true, Duration::ZERO), |q| {
                (q.config.pause_on_no_answer, q.config.reoffer_delay)
            });
        if let Some(slot) = self.agents.get_mut(agent) {
            let hold_until = later(now, delay);
            let pause_reason = pause.then(|| reason.to_string());
            if slot.rt.offer_failed(now, pause_reason, hold_until).is_ok() {
                if slot.rt.hold_off_until() == Some(hold_until) {
                    if let Some(old) = self.hold_timers.insert(agent.clone(), hold_until) {
                        self.timers.remove(&(old, Timer::HoldOffEnd(agent.clone())));
                    }
                    self.timers
                        .insert((hold_until, Timer::HoldOffEnd(agent.clone())));
                }
                self.actions.push_back(slot.changed());
            }
        }
        self.offer_gone(now, call);
    }

    fn end_call(&mut self, now: Instant, call: &CallerId) -> Result<(), QueueError> {
        if self.calls.contains_key(call) {
            self.abandon(now, call);
            return Ok(());
        }
        let a = self.answered.remove(call).ok_or(QueueError::UnknownCall)?;
        let queue_wrap = self
            .queues
            .get(a.queue)
            .map_or(Duration::ZERO, |q| q.config.wrap_up);
        let slot = self
            .agents
            .get_mut(&a.agent)
            .ok_or(QueueError::UnknownAgent)?;
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
            self.wrap_timers.insert(a.agent.clone(), until);
            self.timers
                .insert((until, Timer::WrapUpEnd(a.agent.clone())));
        }
        if state == AgentState::LoggedOut {
            self.check_staffing(now);
        }
        self.dispatch(now);
        Ok(())
    }

    // ----- time -----

    fn run_timers(&mut self, now: Instant) {
        while let Some((t, timer)) = self.timers.first().cloned() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, timer.clone()));
            match timer {
                Timer::Announce(call) => {
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.next_announce = None;
                        if c.callback {
                            // Nobody on the line to tell.
                        } else if c.offer.is_some() {
                            self.schedule_announce(now, &call);
                        } else {
                            self.announce(now, &call, false);
                        }
                    }
                }
                Timer::Message(call) => self.wait_messages(now, &call),
                Timer::Escalate(call) => self.escalate(now, &call),
                Timer::MaxWait(call) => {
                    if let Some(c) = self.calls.get_mut(&call) {
                        if c.offer.is_some() {
                            c.expired = true;
                        } else {
                            self.remove_call(now, &call, LeaveOutcome::TimedOut);
                        }
                    }
                }
                Timer::RingTimeout(call) => {
                    let offer = self
                        .calls
                        .get(&call)
                        .and_then(|c| c.offer.clone())
                        .filter(|o| o.deadline == t);
                    if let Some(offer) = offer {
                        self.actions.push_back(QueueAction::CancelOffer {
                            offer: offer.id,
                            caller: call.clone(),
                            agent: offer.agent.clone(),
                            reason: CancelReason::RingTimeout,
                        });
                        self.offer_failed(now, &call, &offer.agent, "no answer");
                    }
                }
                Timer::WrapUpEnd(id) => {
                    self.wrap_timers.remove(&id);
                    if let Some(slot) = self.agents.get_mut(&id) {
                        if slot.rt.wrap_up_done(now).is_ok() {
                            self.actions.push_back(slot.changed());
                            if slot.rt.state() == &AgentState::LoggedOut {
                                self.check_staffing(now);
                            }
                        }
                    }
                }
                Timer::HoldOffEnd(id) => {
                    self.hold_timers.remove(&id);
                }
                Timer::HoldEnd(call) => {
                    if let Some(c) = self.calls.get_mut(&call) {
                        if c.held == Some(Held::Until(t)) {
                            c.held = None;
                        }
                    }
                }
            }
        }
        self.dispatch(now);
    }

    fn escalate(&mut self, now: Instant, call: &CallerId) {
        let Some(c) = self.calls.get_mut(call) else {
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
            self.timers.insert((t, Timer::Escalate(call.clone())));
        }
        let tier = c.tier;
        self.actions.push_back(QueueAction::Escalated {
            caller: call.clone(),
            tier,
        });
    }

    /// Says the wait messages that are due. While an agent's phone rings the
    /// caller may be connected any moment: the message waits for the offer
    /// to end (checked again after `MESSAGE_RETRY`).
    fn wait_messages(&mut self, now: Instant, call: &CallerId) {
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        c.next_message = None;
        if c.callback {
            return;
        }
        if c.offer.is_some() {
            let at = later(now, MESSAGE_RETRY);
            c.next_message = Some(at);
            self.timers.insert((at, Timer::Message(call.clone())));
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
            self.actions.push_back(QueueAction::WaitMessage {
                caller: call.clone(),
                index: i,
            });
        }
        if let Some(t) = c.message_due() {
            c.next_message = Some(t);
            self.timers.insert((t, Timer::Message(call.clone())));
        }
    }

    fn schedule_announce(&mut self, now: Instant, call: &CallerId) {
        let Some(c) = self.calls.get_mut(call) else {
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
            self.timers.remove(&(old, Timer::Announce(call.clone())));
        }
        let at = later(now, interval);
        c.next_announce = Some(at);
        self.timers.insert((at, Timer::Announce(call.clone())));
    }

    fn announce(&mut self, now: Instant, call: &CallerId, first: bool) {
        let Some((position, estimate)) = self.position_and_estimate(now, call) else {
            return;
        };
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        if first {
            c.first_estimate = estimate;
        }
        let waited = now.saturating_duration_since(c.joined_at);
        self.actions.push_back(QueueAction::Announce {
            caller: call.clone(),
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
        call: &CallerId,
    ) -> Option<(usize, Option<Duration>)> {
        let c = self.calls.get(call)?;
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
            .values()
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
        let mut available: Vec<&AgentId> = self
            .agents
            .iter()
            .filter(|(_, s)| !s.removed && s.rt.is_available(now))
            .map(|(id, _)| id)
            .collect();
        if available.is_empty() {
            return;
        }
        let mut offers: Vec<(CallerId, AgentId, usize)> = Vec::new();
        for call in self.order.values() {
            if available.is_empty() {
                break;
            }
            let Some(c) = self.calls.get(call) else {
                continue;
            };
            if c.offer.is_some() || c.is_held(now) {
                continue;
            }
            let Some(q) = self.queues.get(c.queue) else {
                continue;
            };
            let requirement = c.requirement(&q.config);
            let best = available
                .iter()
                .enumerate()
                .filter_map(|(pos, &id)| {
                    let slot = self.agents.get(id)?;
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
                        id,
                    );
                    Some((rank, pos))
                })
                .min_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, pos)| pos);
            if let Some(pos) = best {
                let id = available.swap_remove(pos);
                offers.push((call.clone(), id.clone(), c.queue));
            }
        }
        for (call, id, qi) in offers {
            let ring = self
                .queues
                .get(qi)
                .map_or(Duration::from_secs(20), |q| q.config.ring_timeout);
            let Some(slot) = self.agents.get_mut(&id) else {
                continue;
            };
            if slot.rt.offer(now, call.clone()).is_err() {
                continue;
            }
            let changed = slot.changed();
            let Some(c) = self.calls.get_mut(&call) else {
                continue;
            };
            let deadline = later(now, ring);
            self.next_offer += 1;
            let offer = OfferId(self.next_offer);
            c.offer = Some(Offer {
                id: offer,
                agent: id.clone(),
                deadline,
            });
            self.timers
                .insert((deadline, Timer::RingTimeout(call.clone())));
            let queue = self
                .queues
                .get(qi)
                .map(|q| q.config.name.clone())
                .unwrap_or_default();
            self.actions.push_back(QueueAction::Offer {
                offer,
                caller: call,
                agent: id.clone(),
                queue,
                language: c.language,
                contact: None,
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
        self.agents.values().any(|s| {
            !s.removed
                && *s.rt.state() != AgentState::LoggedOut
                && qualifies(&s.agent, &q.config, requirement).is_some()
        })
    }

    /// After an agent logged in or out. Callers nobody logged in could take
    /// any more leave (`reject`) or, with a `fallback` language somebody
    /// logged in speaks, may now go to those agents too (and are told once).
    fn check_staffing(&mut self, now: Instant) {
        type Affected = (CallerId, usize, Language, Option<Language>, NoAgentsPolicy);
        let mut affected: Vec<Affected> = self
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
            .map(|c| {
                (
                    c.call.clone(),
                    c.queue,
                    c.language,
                    c.fallback,
                    c.no_agents.clone(),
                )
            })
            .collect();
        // In routing order, so that what callers are told does not depend on
        // how the map happens to be laid out.
        affected.sort_by_key(|(call, ..)| self.calls.get(call).map(|c| c.key));
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
                        self.remove_call(now, &call, LeaveOutcome::NoAgents);
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
                        self.actions.push_back(QueueAction::LanguageFallback {
                            caller: call,
                            language: other,
                        });
                    }
                }
            }
        }
    }
}

/// An agent as a shared store last saw it, for [`Acd::restore_agent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredAgent {
    pub state: AgentState,
    pub idle_since: Option<Instant>,
    pub pending: Option<RequestedState>,
    /// The queue of the call it is on (for handle times and wrap-up).
    pub queue: Option<String>,
    pub answered_at: Option<Instant>,
}

impl Acd {
    /// Numbers this engine's offers after `base`, so that they never repeat
    /// those of an engine before it (a dispatcher that took over, a node
    /// that served alone for a while): an answer to an offer of the old
    /// engine must not pass for one to the new engine's.
    pub fn number_offers_after(&mut self, base: u64) {
        self.next_offer = self.next_offer.max(base);
    }

    /// Withdraws the offer ringing for `call`, if any: its node let that leg
    /// go (it lost the store meanwhile). The caller waits on in their place
    /// and may be offered again at once.
    pub fn withdraw_offer_for(&mut self, now: Now, call: &CallerId) -> bool {
        let Some(offer) = self.calls.get_mut(call).and_then(|c| c.offer.take()) else {
            return false;
        };
        self.withdraw_offer(call, offer);
        self.dispatch(now.mono);
        true
    }

    /// Puts an agent back as a shared store last saw it, when a dispatcher
    /// takes over. A ringing agent comes back ready: offers of the engine
    /// before are withdrawn by whoever restores. Unknown agents are ignored.
    pub fn restore_agent(&mut self, now: Now, agent: &AgentId, restored: RestoredAgent) {
        let RestoredAgent {
            state,
            idle_since,
            pending,
            queue,
            answered_at,
        } = restored;
        let state = match state {
            AgentState::Ringing { .. } => AgentState::Ready,
            other => other,
        };
        if let AgentState::OnCall { call } = &state {
            let queue = queue
                .and_then(|q| self.queue_index.get(&q).copied())
                .unwrap_or(0);
            self.answered.insert(
                call.clone(),
                Answered {
                    agent: agent.clone(),
                    queue,
                },
            );
        }
        if let AgentState::WrapUp { until } = state {
            self.wrap_timers.insert(agent.clone(), until);
            self.timers.insert((until, Timer::WrapUpEnd(agent.clone())));
        }
        let Some(slot) = self.agents.get_mut(agent) else {
            return;
        };
        slot.rt = AgentRuntime::restored(state, idle_since, pending, answered_at);
        self.actions.push_back(slot.changed());
        self.dispatch(now.mono);
    }
}

impl QueueService for Acd {
    fn set_queues(&mut self, now: Now, config: QueuesConfig) {
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
        self.dispatch(now.mono);
    }

    fn set_agents(&mut self, now: Now, directory: AgentDirectory) {
        let mut gone: BTreeSet<AgentId> = self.agents.keys().cloned().collect();
        for agent in directory.iter() {
            gone.remove(&agent.id);
            match self.agents.get_mut(&agent.id) {
                Some(slot) => {
                    slot.agent = agent.clone();
                    slot.removed = false;
                }
                None => {
                    self.agents.insert(
                        agent.id.clone(),
                        AgentSlot {
                            agent: agent.clone(),
                            rt: AgentRuntime::new(),
                            removed: false,
                        },
                    );
                }
            }
        }
        for id in gone {
            if let Some(slot) = self.agents.get_mut(&id) {
                slot.removed = true;
            }
            self.request_state(now.mono, &id, RequestedState::LoggedOut);
        }
        self.dispatch(now.mono);
    }

    fn join(&mut self, now: Now, request: JoinRequest) {
        let caller = request.caller.clone();
        if let Err(reason) = self.join_queue(now, request) {
            self.actions
                .push_back(QueueAction::NotJoined { caller, reason });
        }
    }

    fn leave(&mut self, now: Now, caller: &CallerId, why: Leave) -> bool {
        match why {
            Leave::Abandoned => self.abandon(now.mono, caller),
            Leave::Left => self.take_out(now.mono, caller, LeaveOutcome::Left),
        }
    }

    fn call_ended(&mut self, now: Now, caller: &CallerId) -> Result<(), QueueError> {
        self.end_call(now.mono, caller)
    }

    fn agent_state(
        &mut self,
        now: Now,
        agent: &AgentId,
        requested: RequestedState,
    ) -> Result<RequestEffect, QueueError> {
        let removed = self
            .agents
            .get(agent)
            .ok_or(QueueError::UnknownAgent)?
            .removed;
        if removed && requested != RequestedState::LoggedOut {
            return Err(QueueError::UnknownAgent);
        }
        let effect = self.request_state(now.mono, agent, requested);
        self.dispatch(now.mono);
        Ok(effect)
    }

    fn offer_result(
        &mut self,
        now: Now,
        caller: &CallerId,
        offer: OfferId,
        result: OfferResult,
    ) -> Result<(), QueueError> {
        let now = now.mono;
        let live = self
            .calls
            .get(caller)
            .and_then(|c| c.offer.as_ref())
            .filter(|o| o.id == offer)
            .map(|o| o.agent.clone());
        let Some(agent) = live else {
            if result == OfferResult::Answered {
                self.actions.push_back(QueueAction::Verdict {
                    caller: caller.clone(),
                    offer,
                    accepted: false,
                });
            }
            return Err(QueueError::NotOffered);
        };
        let Some(c) = self.calls.get(caller) else {
            return Err(QueueError::NotOffered);
        };
        let queue = c.queue;
        match result {
            OfferResult::Answered => {
                let slot = self
                    .agents
                    .get_mut(&agent)
                    .ok_or(QueueError::UnknownAgent)?;
                slot.rt.answered(now)?;
                self.actions.push_back(QueueAction::Verdict {
                    caller: caller.clone(),
                    offer,
                    accepted: true,
                });
                self.actions.push_back(slot.changed());
                if let Some(c) = self.calls.get_mut(caller) {
                    if let Some(o) = c.offer.take() {
                        self.timers
                            .remove(&(o.deadline, Timer::RingTimeout(caller.clone())));
                    }
                }
                self.answered.insert(
                    caller.clone(),
                    Answered {
                        agent: agent.clone(),
                        queue,
                    },
                );
                self.remove_call(now, caller, LeaveOutcome::Answered { agent });
            }
            OfferResult::Rejected(code) => {
                let reason = match code {
                    486 | 600 => "busy",
                    603 => "declined",
                    408 | 480 | 487 => "no answer",
                    _ => "unreachable",
                };
                self.offer_failed(now, caller, &agent, reason);
            }
            OfferResult::Timeout => self.offer_failed(now, caller, &agent, "no answer"),
        }
        self.dispatch(now);
        Ok(())
    }

    fn handle_timeout(&mut self, now: Now) {
        self.run_timers(now.mono);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    fn poll_action(&mut self) -> Option<QueueAction> {
        self.actions.pop_front()
    }

    fn stats(&self, now: Now) -> Vec<QueueStats> {
        let now = now.mono;
        let mut oldest: HashMap<usize, Instant> = HashMap::new();
        let mut callbacks: HashMap<(usize, Language), usize> = HashMap::new();
        for c in self.calls.values() {
            let e = oldest.entry(c.queue).or_insert(c.joined_at);
            if c.joined_at < *e {
                *e = c.joined_at;
            }
            if c.callback {
                *callbacks.entry((c.queue, c.language)).or_default() += 1;
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
                        callbacks: callbacks.get(&(qi, language)).copied().unwrap_or(0),
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

    fn agents(&self) -> Vec<AgentView> {
        self.agents
            .values()
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

    fn agent_state_of(&self, agent: &AgentId) -> Option<AgentState> {
        self.agents.get(agent).map(|s| s.rt.state().clone())
    }

    fn agent_pending_of(&self, agent: &AgentId) -> Option<RequestedState> {
        self.agents.get(agent).and_then(|s| s.rt.pending().cloned())
    }

    fn join_estimates(&self, now: Now, queue: &str) -> Vec<(Language, Option<Duration>)> {
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
                (l, self.estimate_for(now.mono, qi, &requirement, position))
            })
            .collect()
    }

    fn position(&self, now: Now, caller: &CallerId) -> Option<usize> {
        self.position_and_estimate(now.mono, caller).map(|(p, _)| p)
    }

    fn is_queued(&self, caller: &CallerId) -> bool {
        self.calls.contains_key(caller)
    }

    fn hold(&mut self, now: Now, caller: &CallerId, until: Option<DateTime<Utc>>) -> bool {
        self.hold_place(now, caller, until.map(|t| now.mono_at(t)))
    }

    fn keep_for_callback(&mut self, now: Now, caller: &CallerId, place: CallbackPlace) -> bool {
        if !self.keep_callback(now, caller, now.mono_at(place.until)) {
            return false;
        }
        // Not held: a hold kept while the caller confirmed ends here.
        let until = place.held.hold_until().unwrap_or(Some(now.wall));
        self.hold_place(now, caller, until.map(|t| now.mono_at(t)));
        self.dispatch(now.mono);
        true
    }

    fn holds_places(&self) -> bool {
        true
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
