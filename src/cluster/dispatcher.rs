//! The dispatcher: the one node (at a time) that routes the cluster's callers
//! to its agents. Sans-IO around the in-process [`Acd`]: the requests of every
//! node come in, in the order the store took them ([`Event`]s); the
//! decisions go out as [`DispatchOp`]s, each of which the shell writes with a
//! Lua script that checks it against the store (the caller still waits, the
//! agent has no other live offer, this dispatcher's epoch is current).
//!
//! Routing therefore has one home, the same engine that serves a single node:
//! global arrival order, the longest-idle agent across the cluster, and the
//! oldest eligible caller across all of a multi-lingual agent's queues.
//!
//! A dispatcher that takes over rebuilds its engine from the store's entries
//! ([`Snapshot`]): every caller with the time they first joined, every agent
//! in its state. Offers that were ringing are withdrawn (the caller's node
//! CANCELs the leg) and made again.

use super::view::{ClusterView, ViewAgent, ViewQueue};
use super::wire::{
    wall, Event, Inbox, Snapshot, StoredCaller, WireAgentState, WireCallback, WireCaller, WireHeld,
};
use crate::acd::{
    Acd, AgentDirectory, AgentId, AgentState, JoinRequest, Leave, QueueAction, QueueService,
    QueuesConfig, RestoredAgent,
};
use crate::ids::{CallerId, OfferId};
use crate::language::Language;
use crate::registrar::PhoneContact;
use crate::time::Now;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

/// A decision for the shell to write to the store.
#[derive(Clone, Debug, PartialEq)]
pub enum DispatchOp {
    /// Offer `caller` to `agent` (refused by the store if either moved on).
    Offer {
        caller: WireCaller,
        agent: String,
        offer: u64,
        message: Inbox,
    },
    /// End an offer: withdrawn, answered, or an answer refused.
    Settle {
        caller: WireCaller,
        agent: String,
        offer: u64,
        outcome: Settle,
        message: Inbox,
    },
    /// Tell a node; `forget` drops the caller's entry (they left for good);
    /// `agent` keeps that agent's state for a dispatcher that takes over.
    Notify {
        node: Option<String>,
        message: Option<Inbox>,
        forget: Option<WireCaller>,
        agent: Option<(String, ViewAgent, String)>,
    },
}

/// How an offer ends in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Cancel,
    Answered,
    Refused,
}

impl Settle {
    pub fn label(self) -> &'static str {
        match self {
            Settle::Cancel => "cancel",
            Settle::Answered => "answered",
            Settle::Refused => "refused",
        }
    }
}

/// Where a dispatcher of `epoch` starts numbering its offers: each epoch
/// has its own 2^32 ids, so an answer to a withdrawn offer of an earlier
/// dispatcher is never taken for one to a later one's.
pub fn offer_base(epoch: u64) -> u64 {
    (epoch & 0x7fff_ffff) << 32
}

/// The routing core of the node that dispatches.
pub struct Dispatcher {
    /// The engine that routes; rebuilt on taking over.
    acd: Acd,
    epoch: u64,
    /// This node's incarnation (home of agents that registered nowhere).
    me: String,
    /// The node each agent's phone registered with.
    homes: HashMap<AgentId, String>,
    phones: HashMap<AgentId, PhoneContact>,
    /// Callers of nodes found dead: what the engine says of them goes nowhere.
    lost: HashSet<String>,
    /// While rebuilding: answers to joins the nodes already have are not sent.
    rebuilding: bool,
    ops: VecDeque<DispatchOp>,
    /// Agents' state changes, written after the decisions above: an offer
    /// does not wait for the store to hear that its agent became free (a
    /// round trip on the path from a free agent to the offer's INVITE).
    /// They keep their order among themselves.
    later: VecDeque<DispatchOp>,
    /// Whether the figures moved since the view was last taken.
    changed: bool,
}

impl Dispatcher {
    pub fn new(now: Now, me: &str, queues: QueuesConfig, agents: AgentDirectory) -> Dispatcher {
        Dispatcher {
            acd: Acd::new(now, queues, agents),
            epoch: 0,
            me: me.to_string(),
            homes: HashMap::new(),
            phones: HashMap::new(),
            lost: HashSet::new(),
            rebuilding: false,
            ops: VecDeque::new(),
            later: VecDeque::new(),
            changed: true,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn set_queues(&mut self, now: Now, queues: QueuesConfig) {
        self.acd.set_queues(now, queues);
        self.drain(now);
    }

    pub fn set_agents(&mut self, now: Now, agents: AgentDirectory) {
        self.acd.set_agents(now, agents);
        self.drain(now);
    }

    /// Takes over with `epoch`, from what the store holds.
    pub fn take_over(
        &mut self,
        now: Now,
        epoch: u64,
        queues: QueuesConfig,
        agents: AgentDirectory,
        snapshot: &Snapshot,
    ) {
        self.epoch = epoch;
        self.acd = Acd::new(now, queues, agents);
        self.acd.number_offers_after(offer_base(epoch));
        self.homes.clear();
        self.phones.clear();
        self.ops.clear();
        self.later.clear();
        self.rebuilding = true;
        for stored in &snapshot.agents {
            let id = AgentId::from(stored.id.as_str());
            if !stored.home.is_empty() {
                self.homes.insert(id.clone(), stored.home.clone());
            }
            if let Some(contact) = stored.phone_contact() {
                self.phones.insert(id.clone(), contact);
            }
            let Some(view) = stored.view() else {
                continue;
            };
            let state = view.state.state(now);
            let queue = match &view.state {
                WireAgentState::OnCall { caller } => snapshot
                    .callers
                    .iter()
                    .find(|c| c.id == caller.key())
                    .map(|c| c.queue.clone()),
                _ => None,
            };
            self.acd.restore_agent(
                now,
                &id,
                RestoredAgent {
                    state,
                    idle_since: view.idle_since_ms.map(|ms| now.mono_at(wall(ms))),
                    pending: view
                        .pending
                        .as_ref()
                        .map(super::wire::WireRequest::requested),
                    queue,
                    answered_at: None,
                },
            );
        }
        let mut callers: Vec<&StoredCaller> = snapshot.callers.iter().collect();
        callers.sort_by_key(|c| (c.joined_ms(), c.id.clone()));
        for stored in callers {
            let caller = stored.caller();
            match stored.state.as_str() {
                "talking" => {}
                state => {
                    if state == "ringing" && !stored.agent.is_empty() {
                        // The last dispatcher's offer: withdrawn, made again.
                        let offer = stored.offer.parse().unwrap_or(0);
                        self.ops.push_back(DispatchOp::Settle {
                            caller: caller.clone(),
                            agent: stored.agent.clone(),
                            offer,
                            outcome: Settle::Cancel,
                            message: Inbox::CancelOffer {
                                caller: caller.clone(),
                                offer,
                                agent: stored.agent.clone(),
                                reason: "agent_unavailable".to_string(),
                            },
                        });
                    }
                    let Ok(language) = stored.language.parse::<Language>() else {
                        continue;
                    };
                    let options = stored.join_options();
                    self.enqueue(
                        now,
                        JoinRequest {
                            caller: caller.id(),
                            queue: stored.queue.clone(),
                            language,
                            options: options.options(),
                            joined_at: wall(stored.joined_ms()),
                            number: stored.number.clone(),
                            callback: None,
                        },
                        stored.callback().as_ref(),
                        stored.held(),
                    );
                }
            }
        }
        self.drain(now);
        self.rebuilding = false;
        self.changed = true;
        tracing::info!(
            epoch,
            callers = snapshot.callers.len(),
            agents = snapshot.agents.len(),
            "dispatching: queues rebuilt from the store"
        );
    }

    /// Queues a caller as the store has them: a callback silent and held
    /// from the start, any other place held as it was.
    fn enqueue(
        &mut self,
        now: Now,
        mut request: JoinRequest,
        callback: Option<&WireCallback>,
        held: WireHeld,
    ) {
        request.callback = callback.map(|c| c.place(held));
        let caller = request.caller.clone();
        self.acd.join(now, request);
        if callback.is_none() {
            if let Some(until) = held.held().hold_until() {
                self.acd.hold(now, &caller, until);
            }
        }
    }

    /// Holds the caller's place as `held` says (not held: released).
    fn hold_as(&mut self, now: Now, caller: &CallerId, held: WireHeld) {
        let until = held.held().hold_until().unwrap_or(Some(now.wall));
        self.acd.hold(now, caller, until);
    }

    /// One request from a node, in the order the store took it.
    pub fn handle_event(&mut self, now: Now, event: Event) {
        // A node found dead that speaks again was only cut off: its callers
        // are served again (it puts them back itself).
        if let Event::Join { caller, .. } | Event::Restore { caller, .. } = &event {
            if self.lost.remove(&caller.node) {
                tracing::info!(node = %caller.node, "a node taken for dead is back");
            }
        }
        match event {
            Event::Join {
                caller,
                queue,
                language,
                options,
                joined_ms,
                number,
                callback,
                held,
            } => self.enqueue(
                now,
                JoinRequest {
                    caller: caller.id(),
                    queue,
                    language,
                    options: options.options(),
                    joined_at: wall(joined_ms),
                    number,
                    callback: None,
                },
                callback.as_ref(),
                held,
            ),
            Event::Restore {
                caller,
                queue,
                language,
                options,
                joined_ms,
                talking_to,
                number,
                callback,
                held,
            } => match talking_to {
                Some(agent) => {
                    let agent = AgentId::from(agent.as_str());
                    let pending = self.acd.agent_pending_of(&agent);
                    self.acd.restore_agent(
                        now,
                        &agent,
                        RestoredAgent {
                            state: AgentState::OnCall { call: caller.id() },
                            idle_since: None,
                            pending,
                            queue: Some(queue),
                            answered_at: None,
                        },
                    );
                }
                None => {
                    let id = caller.id();
                    if self.acd.is_queued(&id) {
                        // The node let go of any leg ringing when it lost
                        // the store: an offer made since is withdrawn too.
                        self.acd.withdraw_offer_for(now, &id);
                        // The node's word on how the place is held stands (a
                        // hold it wrote may have been lost on the way).
                        match &callback {
                            Some(cb) => {
                                self.acd.keep_for_callback(now, &id, cb.place(held));
                            }
                            None => self.hold_as(now, &id, held),
                        }
                    } else {
                        self.enqueue(
                            now,
                            JoinRequest {
                                caller: id,
                                queue,
                                language,
                                options: options.options(),
                                joined_at: wall(joined_ms),
                                number,
                                callback: None,
                            },
                            callback.as_ref(),
                            held,
                        );
                    }
                }
            },
            // Figures move without an action (callbacks waiting): the view
            // is published again.
            Event::Hold { caller, held } => {
                self.hold_as(now, &caller.id(), held);
                self.changed = true;
            }
            Event::KeepForCallback {
                caller,
                callback,
                held,
            } => {
                self.acd
                    .keep_for_callback(now, &caller.id(), callback.place(held));
                self.changed = true;
            }
            Event::Leave { caller, abandoned } => {
                let why = if abandoned {
                    Leave::Abandoned
                } else {
                    Leave::Left
                };
                self.acd.leave(now, &caller.id(), why);
            }
            Event::CallEnded { caller } => {
                let _ = self.acd.call_ended(now, &caller.id());
            }
            Event::OfferResult {
                caller,
                offer,
                result,
            } => {
                let _ = self
                    .acd
                    .offer_result(now, &caller.id(), OfferId(offer), result.result());
            }
            Event::AgentRequest {
                agent,
                request,
                home,
            } => {
                let id = AgentId::from(agent.as_str());
                if let Some(home) = home {
                    self.homes.insert(id.clone(), home);
                }
                if let Err(e) = self.acd.agent_state(now, &id, request.requested()) {
                    tracing::debug!(agent, error = %e, "agent request refused");
                }
            }
            Event::Phone {
                agent,
                contact,
                home,
            } => {
                let id = AgentId::from(agent.as_str());
                match contact {
                    Some(c) => {
                        self.phones.insert(id.clone(), c);
                        self.homes.insert(id, home);
                    }
                    None => {
                        self.phones.remove(&id);
                    }
                }
            }
            Event::NodeLost { node, callers } => {
                tracing::warn!(
                    node,
                    callers = callers.len(),
                    "node lost: its callers leave the queues"
                );
                // Agents whose phones registered there are told here now.
                for home in self.homes.values_mut() {
                    if *home == node {
                        *home = self.me.clone();
                    }
                }
                self.lost.insert(node);
                for caller in callers {
                    let id = caller.id();
                    if self.acd.is_queued(&id) {
                        self.acd.leave(now, &id, Leave::Left);
                    } else {
                        let _ = self.acd.call_ended(now, &id);
                    }
                }
            }
        }
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: Now) {
        self.acd.handle_timeout(now);
        self.drain(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.acd.poll_timeout()
    }

    pub fn poll_op(&mut self) -> Option<DispatchOp> {
        self.ops.pop_front().or_else(|| self.later.pop_front())
    }

    /// The cluster view, when the figures moved since the last one.
    pub fn poll_view(&mut self, now: Now, nodes: Vec<String>) -> Option<ClusterView> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        let queues = self
            .acd
            .stats(now)
            .iter()
            .map(|q| ViewQueue::from_stats(q, self.acd.join_estimates(now, &q.name)))
            .collect();
        let agents = self
            .acd
            .agents()
            .iter()
            .map(|a| ViewAgent::from_view(a, now))
            .collect();
        Some(ClusterView {
            at_ms: now.wall_ms(),
            dispatcher: self.me.clone(),
            queues,
            agents,
            nodes,
        })
    }

    /// Translates the engine's actions into store writes.
    fn drain(&mut self, now: Now) {
        while let Some(action) = self.acd.poll_action() {
            self.changed = true;
            let caller = action.caller().map(WireCaller::from);
            if let Some(c) = &caller {
                if self.lost.contains(&c.node) {
                    continue;
                }
            }
            let message = Inbox::from_action(&action, now);
            match action {
                QueueAction::Joined { .. } if self.rebuilding => {}
                QueueAction::Announce { first: true, .. } if self.rebuilding => {}
                QueueAction::Offer {
                    offer,
                    caller,
                    agent,
                    queue,
                    language,
                    ..
                } => {
                    let contact = self.phones.get(&agent).cloned();
                    self.ops.push_back(DispatchOp::Offer {
                        caller: (&caller).into(),
                        agent: agent.as_str().to_string(),
                        offer: offer.0,
                        message: Inbox::Offer {
                            caller: (&caller).into(),
                            offer: offer.0,
                            agent: agent.as_str().to_string(),
                            queue,
                            language,
                            contact,
                        },
                    });
                }
                QueueAction::CancelOffer {
                    offer,
                    caller,
                    agent,
                    ..
                } => self.ops.push_back(DispatchOp::Settle {
                    caller: (&caller).into(),
                    agent: agent.as_str().to_string(),
                    offer: offer.0,
                    outcome: Settle::Cancel,
                    message,
                }),
                QueueAction::Verdict {
                    caller,
                    offer,
                    accepted,
                } => {
                    let agent = self
                        .acd
                        .agents()
                        .into_iter()
                        .find(
                            |a| matches!(&a.state, AgentState::OnCall { call } if *call == caller),
                        )
                        .map(|a| a.id.as_str().to_string())
                        .unwrap_or_default();
                    self.ops.push_back(DispatchOp::Settle {
                        caller: (&caller).into(),
                        agent,
                        offer: offer.0,
                        outcome: if accepted {
                            Settle::Answered
                        } else {
                            Settle::Refused
                        },
                        message,
                    });
                }
                QueueAction::CallLeft(exit) => {
                    let answered =
                        matches!(exit.outcome, crate::acd::LeaveOutcome::Answered { .. });
                    let c: WireCaller = (&exit.caller).into();
                    self.ops.push_back(DispatchOp::Notify {
                        node: Some(c.node.clone()),
                        message: Some(message),
                        forget: (!answered).then_some(c),
                        agent: None,
                    });
                }
                QueueAction::AgentStateChanged { agent, .. } => {
                    let home = self
                        .homes
                        .get(&agent)
                        .cloned()
                        .unwrap_or_else(|| self.me.clone());
                    let view = self
                        .acd
                        .agents()
                        .into_iter()
                        .find(|a| a.id == agent)
                        .map(|a| ViewAgent::from_view(&a, now));
                    self.later.push_back(DispatchOp::Notify {
                        node: Some(home.clone()),
                        message: Some(message),
                        forget: None,
                        agent: view.map(|v| (agent.as_str().to_string(), v, home)),
                    });
                }
                other => {
                    let node = other.caller().map(|c| c.node.as_str().to_string());
                    self.ops.push_back(DispatchOp::Notify {
                        node,
                        message: Some(message),
                        forget: None,
                        agent: None,
                    });
                }
            }
        }
    }

    /// The callers the engine has, for a caller id check.
    pub fn is_queued(&self, caller: &CallerId) -> bool {
        self.acd.is_queued(caller)
    }
}
