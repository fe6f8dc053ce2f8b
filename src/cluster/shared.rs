//! The queue engine of a node in a cluster: its callers wait in queues
//! shared with the other nodes. Sans-IO, like the in-process [`Acd`].
//!
//! What the call layer asks goes out as [`StoreOp`]s, which the shell writes
//! to the store (each through one Lua script, so the shared entries and the
//! dispatcher's event stream change together). The dispatcher's answers come
//! back as [`StoreInput::Inbox`] messages and become the same
//! [`QueueAction`]s the in-process engine gives. Figures (positions, wait
//! estimates, agents) come from the view the dispatcher publishes.
//!
//! While the store cannot be reached the node is *degraded*: an in-process
//! [`Acd`] serves this node's own callers with the agents whose phones
//! registered here, so nobody is stuck. When the store answers again, the
//! offers ringing then are withdrawn and the callers are put back with the
//! times they first joined, so they keep their place.

use super::view::ClusterView;
use super::wire::{
    Event, Inbox, WireCallback, WireCaller, WireHeld, WireJoinOptions, WireRequest, WireResult,
};
use crate::acd::{
    Acd, AgentDirectory, AgentId, AgentState, AgentView, CallbackPlace, JoinOptions, JoinRequest,
    Leave, LeaveOutcome, OfferResult, PlaceHeld, QueueAction, QueueError, QueueExit, QueueService,
    QueueStats, QueuesConfig, RequestEffect, RequestedState,
};
use crate::ids::{CallerId, NodeId, OfferId};
use crate::language::Language;
use crate::registrar::PhoneContact;
use crate::time::Now;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What the shell writes to the store for this node.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreOp {
    /// A request to the dispatcher, with the shared entry changes it implies.
    Event(Event),
    /// Where an agent's phone registered with this node can be rung (or that
    /// it is gone), for any node to ring it.
    Phone {
        agent: String,
        contact: Option<PhoneContact>,
    },
}

/// What the shell hands this node from the store.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreInput {
    /// A message from the dispatcher to this node.
    Inbox(Inbox),
    /// The latest cluster-wide figures.
    View(ClusterView),
    /// The store cannot be reached: serve this node's callers alone.
    Unreachable,
    /// The store answers (again). `reset`: it lost its data (a restart
    /// without persistence, a failover to an empty replica).
    Reachable { reset: bool },
}

/// One of this node's callers, as far as its queue goes.
#[derive(Clone, Debug)]
struct OwnCaller {
    queue: String,
    language: Language,
    options: JoinOptions,
    number: String,
    /// When they first joined: kept across degraded spells and store resets.
    joined_at: DateTime<Utc>,
    joined_mono: Instant,
    state: OwnState,
    position: Option<usize>,
    first_estimate: Option<Duration>,
    /// Whether the place is offered to agents (kept across outages).
    held: PlaceHeld,
    /// A callback's entry: the caller hung up to be called back.
    callback: Option<CallbackPlace>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OwnState {
    /// Asked to join; no answer yet.
    Joining,
    Waiting,
    /// An agent's phone rings for them.
    Ringing {
        offer: OfferId,
        agent: AgentId,
    },
    /// Talking to an agent.
    Talking {
        agent: AgentId,
    },
}

/// Most store operations held while they wait for the shell: beyond it the
/// store is taken as unreachable (and the node degraded).
pub const MAX_PENDING_OPS: usize = 100_000;

/// This node's queue engine in a cluster.
pub struct SharedQueue {
    node: NodeId,
    queues: QueuesConfig,
    directory: AgentDirectory,
    callers: HashMap<CallerId, OwnCaller>,
    /// Agents whose phones registered with this node, and where.
    phones: BTreeMap<AgentId, PhoneContact>,
    /// What this node's agents last asked for (put back after an outage).
    requested: BTreeMap<AgentId, RequestedState>,
    view: ClusterView,
    ops: VecDeque<StoreOp>,
    actions: VecDeque<QueueAction>,
    /// Serving alone while the store cannot be reached.
    degraded: Option<Acd>,
    /// How many times it served alone (its offers are numbered apart).
    spells: u64,
    /// The time of the latest input, for views asked for without one.
    now: Option<Now>,
}

impl SharedQueue {
    pub fn new(node: NodeId) -> SharedQueue {
        SharedQueue {
            node,
            queues: QueuesConfig { queues: Vec::new() },
            directory: AgentDirectory::default(),
            callers: HashMap::new(),
            phones: BTreeMap::new(),
            requested: BTreeMap::new(),
            view: ClusterView::default(),
            ops: VecDeque::new(),
            actions: VecDeque::new(),
            degraded: None,
            spells: 0,
            now: None,
        }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Whether this node serves its callers alone (the store is unreachable).
    pub fn is_degraded(&self) -> bool {
        self.degraded.is_some()
    }

    /// The latest cluster view (for the wallboard and metrics).
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// The next write for the shell.
    pub fn poll_store_op(&mut self) -> Option<StoreOp> {
        self.ops.pop_front()
    }

    /// Operations waiting for the shell.
    pub fn pending_ops(&self) -> usize {
        self.ops.len()
    }

    fn send(&mut self, now: Now, event: Event) {
        if self.degraded.is_some() {
            return;
        }
        if self.ops.len() >= MAX_PENDING_OPS {
            tracing::warn!(
                pending = self.ops.len(),
                "store writes backed up: serving this node's callers alone"
            );
            self.degrade(now);
            return;
        }
        self.ops.push_back(StoreOp::Event(event));
    }

    /// What the store said.
    pub fn handle_store(&mut self, now: Now, input: StoreInput) {
        self.now = Some(now);
        match input {
            StoreInput::Inbox(message) => self.inbox(now, message),
            StoreInput::View(view) => {
                if view.at_ms >= self.view.at_ms {
                    self.learn_requests(now, &view);
                    self.view = view;
                }
            }
            StoreInput::Unreachable => self.degrade(now),
            StoreInput::Reachable { reset } => self.recover(now, reset),
        }
    }

    fn inbox(&mut self, now: Now, message: Inbox) {
        if self.degraded.is_some() {
            // Decisions of the dispatcher are not ours to follow while we
            // serve alone; the callers are put back when the store returns.
            return;
        }
        let action = message.action(now);
        if let Some(caller) = message.caller().map(WireCaller::id) {
            if caller.node != self.node {
                return;
            }
            if !self.follow(now, &caller, &action) {
                tracing::debug!(%caller, ?action, "dispatcher message for a caller who is gone");
                return;
            }
        }
        self.actions.push_back(action);
    }

    /// Keeps this node's picture of a caller up to date with the dispatcher's
    /// action; false when the caller is no longer ours (hung up meanwhile:
    /// the exit was reported when they left).
    fn follow(&mut self, now: Now, caller: &CallerId, action: &QueueAction) -> bool {
        let Some(own) = self.callers.get_mut(caller) else {
            return false;
        };
        match action {
            QueueAction::Joined { .. } => own.state = OwnState::Waiting,
            QueueAction::NotJoined { .. } => {
                self.callers.remove(caller);
            }
            QueueAction::Offer { offer, agent, .. } => {
                match &own.state {
                    // Never two phones for one caller, nor an agent rung for
                    // a caller who already talks to one.
                    OwnState::Talking { .. } => {
                        tracing::warn!(%caller, offer = offer.0, "offer for a caller already talking: ignored");
                        return false;
                    }
                    // The same offer again (delivered twice): already ringing.
                    OwnState::Ringing { offer: ringing, .. } if ringing == offer => {
                        return false;
                    }
                    // The store gave up the ringing offer (its cancel or
                    // answer was lost on the way): that leg is stale.
                    OwnState::Ringing {
                        offer: stale,
                        agent: stale_agent,
                    } => {
                        tracing::info!(%caller, stale = stale.0, offer = offer.0, "new offer replaces a stale one");
                        self.actions.push_back(QueueAction::CancelOffer {
                            offer: *stale,
                            caller: caller.clone(),
                            agent: stale_agent.clone(),
                            reason: crate::acd::CancelReason::AgentUnavailable,
                        });
                    }
                    _ => {}
                }
                own.state = OwnState::Ringing {
                    offer: *offer,
                    agent: agent.clone(),
                }
            }
            QueueAction::CancelOffer { offer, .. } => {
                if matches!(&own.state, OwnState::Ringing { offer: o, .. } if o == offer) {
                    own.state = OwnState::Waiting;
                }
            }
            QueueAction::Verdict {
                offer, accepted, ..
            } => {
                if let OwnState::Ringing { offer: o, agent } = &own.state {
                    if o == offer {
                        own.state = if *accepted {
                            OwnState::Talking {
                                agent: agent.clone(),
                            }
                        } else {
                            OwnState::Waiting
                        };
                    }
                }
            }
            QueueAction::Announce {
                position,
                estimated_wait,
                first,
                ..
            } => {
                own.position = Some(*position);
                if *first {
                    own.first_estimate = *estimated_wait;
                }
            }
            QueueAction::QueueTimeout { .. } | QueueAction::NoAgents { .. } => {
                own.state = OwnState::Waiting;
            }
            QueueAction::CallLeft(exit)
                if !matches!(exit.outcome, LeaveOutcome::Answered { .. }) =>
            {
                self.callers.remove(caller);
            }
            _ => {}
        }
        let _ = now;
        true
    }

    /// What this node's agents asked for last, as the cluster saw it (a
    /// pause set through another node's API counts): put back after an
    /// outage. States that follow a call (on call, wrap-up) keep the last.
    fn learn_requests(&mut self, now: Now, view: &ClusterView) {
        for agent in &view.agents {
            let id = AgentId::from(agent.id.as_str());
            if !self.phones.contains_key(&id) {
                continue;
            }
            let requested = match agent.agent_state(now) {
                AgentState::Ready => RequestedState::Ready,
                AgentState::Paused { reason } => RequestedState::Paused { reason },
                AgentState::LoggedOut => RequestedState::LoggedOut,
                _ => match &agent.pending {
                    Some(p) => p.requested(),
                    None => continue,
                },
            };
            self.requested.insert(id, requested);
        }
    }

    /// The store is out of reach: an in-process engine serves this node's
    /// callers with this node's agents until it is back.
    fn degrade(&mut self, now: Now) {
        if self.degraded.is_some() {
            return;
        }
        tracing::warn!(
            callers = self.callers.len(),
            agents = self.phones.len(),
            "store unreachable: serving this node's callers with its own agents"
        );
        self.ops.clear();
        // Offers ringing now were the dispatcher's: withdrawn, so that the
        // local engine starts from callers who wait.
        self.withdraw_offers();
        let own: AgentDirectory = self
            .directory
            .filtered(|a| self.phones.contains_key(&a.id))
            .unwrap_or_default();
        let mut acd = Acd::new(now, self.queues.clone(), own);
        // Apart from every dispatcher's offers (the top bit), and from
        // those of the spells before.
        self.spells = self.spells.wrapping_add(1);
        acd.number_offers_after((1 << 63) | ((self.spells & 0x7fff_ffff) << 32));
        for (agent, state) in &self.requested {
            if self.phones.contains_key(agent) {
                let _ = acd.agent_state(now, agent, state.clone());
            }
        }
        let mut callers: Vec<(&CallerId, &OwnCaller)> = self.callers.iter().collect();
        callers.sort_by_key(|(_, c)| c.joined_at);
        for (caller, own) in callers {
            if matches!(own.state, OwnState::Talking { .. }) {
                continue;
            }
            acd.join(now, join_request(caller, own));
            if own.callback.is_none() {
                if let Some(until) = own.held.hold_until() {
                    acd.hold(now, caller, until);
                }
            }
        }
        // The local engine answers the joins again: those answers are not
        // news to the call layer.
        while let Some(action) = acd.poll_action() {
            match action {
                QueueAction::Joined { .. } | QueueAction::Announce { first: true, .. } => {}
                other => {
                    self.track(&other);
                    self.actions.push_back(other);
                }
            }
        }
        self.degraded = Some(acd);
    }

    /// Follows the local engine's action in this node's picture of its
    /// callers, while it serves alone.
    fn track(&mut self, action: &QueueAction) {
        let Some(caller) = action.caller().cloned() else {
            return;
        };
        let state = match action {
            QueueAction::Offer { offer, agent, .. } => Some(OwnState::Ringing {
                offer: *offer,
                agent: agent.clone(),
            }),
            QueueAction::Verdict { accepted: true, .. } => {
                match self.callers.get(&caller).map(|c| &c.state) {
                    Some(OwnState::Ringing { agent, .. }) => Some(OwnState::Talking {
                        agent: agent.clone(),
                    }),
                    _ => None,
                }
            }
            QueueAction::CancelOffer { .. }
            | QueueAction::Joined { .. }
            | QueueAction::Verdict { .. } => Some(OwnState::Waiting),
            _ => None,
        };
        if let (Some(state), Some(own)) = (state, self.callers.get_mut(&caller)) {
            own.state = state;
        }
        if let QueueAction::CallLeft(exit) = action {
            if !matches!(exit.outcome, LeaveOutcome::Answered { .. }) {
                self.callers.remove(&caller);
            }
        }
    }

    /// Withdraws every offer ringing for this node's callers (the call
    /// layer CANCELs the legs); the callers wait again.
    fn withdraw_offers(&mut self) {
        for (caller, own) in self.callers.iter_mut() {
            if let OwnState::Ringing { offer, agent } = &own.state {
                self.actions.push_back(QueueAction::CancelOffer {
                    offer: *offer,
                    caller: caller.clone(),
                    agent: agent.clone(),
                    reason: crate::acd::CancelReason::AgentUnavailable,
                });
                own.state = OwnState::Waiting;
            }
        }
    }

    /// The store answers again: put this node's callers and agents back so
    /// the shared queue heals, keeping every caller's place.
    fn recover(&mut self, now: Now, reset: bool) {
        if self.degraded.is_none() && !reset {
            return;
        }
        if let Some(mut acd) = self.degraded.take() {
            tracing::info!(
                callers = self.callers.len(),
                "store reachable again: putting this node's callers back in the shared queues"
            );
            // What the local engine says from here on is not followed.
            while acd.poll_action().is_some() {}
        } else {
            tracing::warn!(
                callers = self.callers.len(),
                "store lost its data: putting this node's callers back"
            );
        }
        self.withdraw_offers();
        for (agent, contact) in self.phones.clone() {
            self.ops.push_back(StoreOp::Phone {
                agent: agent.as_str().to_string(),
                contact: Some(contact),
            });
        }
        for (agent, request) in self.requested.clone() {
            self.ops.push_back(StoreOp::Event(Event::AgentRequest {
                agent: agent.as_str().to_string(),
                request: WireRequest::from(&request),
                home: self
                    .phones
                    .contains_key(&agent)
                    .then(|| self.node.as_str().to_string()),
            }));
        }
        let mut callers: Vec<(CallerId, OwnCaller)> = self
            .callers
            .iter()
            .map(|(c, o)| (c.clone(), o.clone()))
            .collect();
        callers.sort_by_key(|(_, c)| c.joined_at);
        for (caller, own) in callers {
            let talking_to = match &own.state {
                OwnState::Talking { agent } => Some(agent.as_str().to_string()),
                _ => None,
            };
            self.ops.push_back(StoreOp::Event(Event::Restore {
                caller: (&caller).into(),
                queue: own.queue.clone(),
                language: own.language,
                options: WireJoinOptions::from(&own.options),
                joined_ms: own.joined_at.timestamp_millis(),
                talking_to,
                number: own.number.clone(),
                callback: own.callback.as_ref().map(WireCallback::from_place),
                held: WireHeld::from(own.held),
            }));
        }
        let _ = now;
    }

    /// The exit of a caller this node takes out of the queue, reported at
    /// once: the dispatcher's own report would come after the call is gone.
    fn exit(&self, now: Now, caller: &CallerId, own: &OwnCaller, why: Leave) -> QueueExit {
        let waited = now.mono.saturating_duration_since(own.joined_mono);
        let threshold = self
            .queues
            .queues
            .iter()
            .find(|q| q.name == own.queue)
            .map_or(Duration::ZERO, |q| q.short_abandon_threshold);
        QueueExit {
            caller: caller.clone(),
            queue: own.queue.clone(),
            language: own.language,
            outcome: match why {
                Leave::Abandoned => LeaveOutcome::Abandoned {
                    short: waited < threshold,
                },
                Leave::Left => LeaveOutcome::Left,
            },
            waited,
            prediction: None,
        }
    }
}

fn join_request(caller: &CallerId, own: &OwnCaller) -> JoinRequest {
    JoinRequest {
        caller: caller.clone(),
        queue: own.queue.clone(),
        language: own.language,
        options: own.options.clone(),
        joined_at: own.joined_at,
        number: own.number.clone(),
        callback: own.callback.clone().map(|place| CallbackPlace {
            held: own.held,
            ..place
        }),
    }
}

impl QueueService for SharedQueue {
    /// The view moves with the store, not only with this node's actions.
    fn is_local(&self) -> bool {
        false
    }

    fn set_queues(&mut self, now: Now, config: QueuesConfig) {
        self.now = Some(now);
        self.queues = config.clone();
        if let Some(acd) = &mut self.degraded {
            acd.set_queues(now, config);
        }
    }

    fn set_agents(&mut self, now: Now, directory: AgentDirectory) {
        self.now = Some(now);
        self.directory = directory.clone();
        if let Some(acd) = &mut self.degraded {
            let own = directory
                .filtered(|a| self.phones.contains_key(&a.id))
                .unwrap_or_default();
            acd.set_agents(now, own);
        }
    }

    fn join(&mut self, now: Now, request: JoinRequest) {
        self.now = Some(now);
        if self.callers.contains_key(&request.caller) {
            self.actions.push_back(QueueAction::NotJoined {
                caller: request.caller,
                reason: crate::acd::NotJoined::AlreadyQueued,
            });
            return;
        }
        let own = OwnCaller {
            queue: request.queue.clone(),
            language: request.language,
            options: request.options.clone(),
            number: request.number.clone(),
            joined_at: request.joined_at,
            joined_mono: now.mono_at(request.joined_at.min(now.wall)),
            state: OwnState::Joining,
            position: None,
            first_estimate: None,
            held: request
                .callback
                .as_ref()
                .map_or(PlaceHeld::No, |place| place.held),
            callback: request.callback.clone(),
        };
        self.callers.insert(request.caller.clone(), own);
        if let Some(acd) = &mut self.degraded {
            acd.join(now, request);
            return;
        }
        self.send(
            now,
            Event::Join {
                caller: (&request.caller).into(),
                queue: request.queue,
                language: request.language,
                options: WireJoinOptions::from(&request.options),
                joined_ms: request.joined_at.timestamp_millis(),
                number: request.number,
                callback: request.callback.as_ref().map(WireCallback::from_place),
                held: request
                    .callback
                    .as_ref()
                    .map_or(WireHeld::No, |place| place.held.into()),
            },
        );
    }

    fn leave(&mut self, now: Now, caller: &CallerId, why: Leave) -> bool {
        self.now = Some(now);
        let Some(own) = self.callers.remove(caller) else {
            return false;
        };
        if let Some(acd) = &mut self.degraded {
            return acd.leave(now, caller, why);
        }
        if let OwnState::Ringing { offer, agent } = &own.state {
            self.actions.push_back(QueueAction::CancelOffer {
                offer: *offer,
                caller: caller.clone(),
                agent: agent.clone(),
                reason: crate::acd::CancelReason::CallerLeft,
            });
        }
        let exit = self.exit(now, caller, &own, why);
        self.actions.push_back(QueueAction::CallLeft(exit));
        self.send(
            now,
            Event::Leave {
                caller: caller.into(),
                abandoned: why == Leave::Abandoned,
            },
        );
        true
    }

    fn call_ended(&mut self, now: Now, caller: &CallerId) -> Result<(), QueueError> {
        let Some(own) = self.callers.get(caller).cloned() else {
            return Err(QueueError::UnknownCall);
        };
        if !matches!(own.state, OwnState::Talking { .. }) {
            self.leave(now, caller, Leave::Abandoned);
            return Ok(());
        }
        self.callers.remove(caller);
        if let Some(acd) = &mut self.degraded {
            return acd.call_ended(now, caller);
        }
        self.send(
            now,
            Event::CallEnded {
                caller: caller.into(),
            },
        );
        Ok(())
    }

    fn agent_state(
        &mut self,
        now: Now,
        agent: &AgentId,
        requested: RequestedState,
    ) -> Result<RequestEffect, QueueError> {
        if self.directory.get(agent).is_none() {
            return Err(QueueError::UnknownAgent);
        }
        self.requested.insert(agent.clone(), requested.clone());
        if let Some(acd) = &mut self.degraded {
            if self.phones.contains_key(agent) {
                return acd.agent_state(now, agent, requested);
            }
            return Ok(RequestEffect::Deferred);
        }
        let effect = match self.agent_state_of(agent) {
            Some(AgentState::OnCall { .. } | AgentState::WrapUp { .. })
                if requested != RequestedState::Ready =>
            {
                RequestEffect::Deferred
            }
            _ => RequestEffect::Applied,
        };
        self.send(
            now,
            Event::AgentRequest {
                agent: agent.as_str().to_string(),
                request: WireRequest::from(&requested),
                home: self
                    .phones
                    .contains_key(agent)
                    .then(|| self.node.as_str().to_string()),
            },
        );
        Ok(effect)
    }

    fn offer_result(
        &mut self,
        now: Now,
        caller: &CallerId,
        offer: OfferId,
        result: OfferResult,
    ) -> Result<(), QueueError> {
        if let Some(acd) = &mut self.degraded {
            let r = acd.offer_result(now, caller, offer, result);
            if r.is_ok() && result == OfferResult::Answered {
                if let Some(own) = self.callers.get_mut(caller) {
                    if let OwnState::Ringing { agent, .. } = &own.state {
                        own.state = OwnState::Talking {
                            agent: agent.clone(),
                        };
                    }
                }
            }
            return r;
        }
        let Some(own) = self.callers.get_mut(caller) else {
            if result == OfferResult::Answered {
                self.actions.push_back(QueueAction::Verdict {
                    caller: caller.clone(),
                    offer,
                    accepted: false,
                });
            }
            return Err(QueueError::NotOffered);
        };
        if result != OfferResult::Answered
            && matches!(&own.state, OwnState::Ringing { offer: o, .. } if *o == offer)
        {
            own.state = OwnState::Waiting;
        }
        self.send(
            now,
            Event::OfferResult {
                caller: caller.into(),
                offer: offer.0,
                result: WireResult::from(result),
            },
        );
        Ok(())
    }

    fn phone_bound(&mut self, _now: Now, agent: &AgentId, contact: Option<PhoneContact>) {
        match &contact {
            Some(c) => {
                self.phones.insert(agent.clone(), c.clone());
            }
            None => {
                self.phones.remove(agent);
            }
        }
        if self.degraded.is_none() {
            self.ops.push_back(StoreOp::Phone {
                agent: agent.as_str().to_string(),
                contact,
            });
        }
    }

    fn handle_timeout(&mut self, now: Now) {
        self.now = Some(now);
        if let Some(acd) = &mut self.degraded {
            acd.handle_timeout(now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.degraded.as_ref().and_then(|acd| acd.poll_timeout())
    }

    fn poll_action(&mut self) -> Option<QueueAction> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        let action = self.degraded.as_mut()?.poll_action()?;
        // Keep this node's picture right while it serves alone.
        self.track(&action);
        Some(action)
    }

    fn stats(&self, now: Now) -> Vec<QueueStats> {
        if let Some(acd) = &self.degraded {
            return acd.stats(now);
        }
        self.view.queues.iter().map(|q| q.stats()).collect()
    }

    fn agents(&self) -> Vec<AgentView> {
        if let Some(acd) = &self.degraded {
            return acd.agents();
        }
        // Views are asked for without a time: the latest input's serves
        // (before any input there is no view either).
        let Some(now) = self.now else {
            return Vec::new();
        };
        self.view.agents.iter().map(|a| a.view(now)).collect()
    }

    fn local_stats(&self, now: Now) -> Vec<QueueStats> {
        let mut stats = self.stats(now);
        if self.degraded.is_some() {
            return stats;
        }
        for q in &mut stats {
            // This node's callers only; the estimates stay the cluster's.
            let mine: Vec<&OwnCaller> = self
                .callers
                .values()
                .filter(|c| c.queue == q.name && !matches!(c.state, OwnState::Talking { .. }))
                .collect();
            q.waiting = mine.len();
            q.oldest_wait = mine
                .iter()
                .map(|c| now.mono.saturating_duration_since(c.joined_mono))
                .max();
            for line in &mut q.lines {
                line.waiting = mine.iter().filter(|c| c.language == line.language).count();
            }
        }
        stats
    }

    fn local_agents(&self) -> Vec<AgentView> {
        if self.degraded.is_some() {
            return self.agents();
        }
        self.agents()
            .into_iter()
            .filter(|a| self.phones.contains_key(&a.id))
            .collect()
    }

    fn agent_state_of(&self, agent: &AgentId) -> Option<AgentState> {
        if let Some(acd) = &self.degraded {
            return acd.agent_state_of(agent);
        }
        let now = self.now?;
        self.view
            .agents
            .iter()
            .find(|a| a.id == agent.as_str())
            .map(|a| a.agent_state(now))
    }

    fn agent_pending_of(&self, agent: &AgentId) -> Option<RequestedState> {
        if let Some(acd) = &self.degraded {
            return acd.agent_pending_of(agent);
        }
        self.view
            .agents
            .iter()
            .find(|a| a.id == agent.as_str())
            .and_then(|a| a.pending.as_ref().map(WireRequest::requested))
    }

    fn join_estimates(&self, now: Now, queue: &str) -> Vec<(Language, Option<Duration>)> {
        if let Some(acd) = &self.degraded {
            return acd.join_estimates(now, queue);
        }
        self.view
            .queues
            .iter()
            .find(|q| q.name == queue)
            .map(|q| {
                q.join_estimates
                    .iter()
                    .map(|(l, d)| (*l, d.map(Duration::from_millis)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn position(&self, now: Now, caller: &CallerId) -> Option<usize> {
        if let Some(acd) = &self.degraded {
            return acd.position(now, caller);
        }
        self.callers.get(caller).and_then(|c| c.position)
    }

    fn is_queued(&self, caller: &CallerId) -> bool {
        self.callers
            .get(caller)
            .is_some_and(|c| !matches!(c.state, OwnState::Talking { .. }))
    }

    /// Kept with the caller's entry in the store, so that a dispatcher
    /// taking over, or a store that lost its data, holds the place too.
    fn hold(&mut self, now: Now, caller: &CallerId, until: Option<DateTime<Utc>>) -> bool {
        self.now = Some(now);
        if !self.is_queued(caller) {
            return false;
        }
        let held = PlaceHeld::from_hold(until, now.wall);
        if let Some(own) = self.callers.get_mut(caller) {
            own.held = held;
            if let Some(place) = &mut own.callback {
                place.held = held;
            }
        }
        if let Some(acd) = &mut self.degraded {
            return acd.hold(now, caller, until);
        }
        self.send(
            now,
            Event::Hold {
                caller: caller.into(),
                held: held.into(),
            },
        );
        true
    }

    /// The callback's ticket is kept with the entry in the store: if this
    /// node is lost, the node that reaps it carries the callback out.
    fn keep_for_callback(&mut self, now: Now, caller: &CallerId, place: CallbackPlace) -> bool {
        self.now = Some(now);
        if !self.is_queued(caller) {
            return false;
        }
        if let Some(own) = self.callers.get_mut(caller) {
            own.held = place.held;
            own.callback = Some(place.clone());
        }
        if let Some(acd) = &mut self.degraded {
            return acd.keep_for_callback(now, caller, place);
        }
        self.send(
            now,
            Event::KeepForCallback {
                caller: caller.into(),
                callback: WireCallback::from_place(&place),
                held: place.held.into(),
            },
        );
        true
    }

    fn holds_places(&self) -> bool {
        true
    }
}
