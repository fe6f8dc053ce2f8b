//! The shared-queue logic under random schedules: two simulated nodes (the
//! real [`SharedQueue`]s, with a call layer played by the test), the real
//! [`Dispatcher`], and a simulated store that does what the Lua scripts do.
//! Events are delivered in random orders, nodes crash, writes are lost and
//! dispatchers are replaced; after every step the invariants are checked.

use super::dispatcher::{DispatchOp, Dispatcher, Settle};
use super::shared::{SharedQueue, StoreInput, StoreOp};
use super::view::ViewAgent;
use super::wire::{Event, Inbox, WireCaller};
use super::wire::{Snapshot, StoredAgent, StoredCaller};
use crate::acd::config::{QueueConfig, QueuesConfig};
use crate::acd::{
    Agent, AgentDirectory, AgentId, CallbackPlace, JoinOptions, JoinRequest, Leave, OfferResult,
    PlaceHeld, QueueAction, QueueService, RequestedState,
};
use crate::ids::{CallId, CallerId, NodeId, OfferId};
use crate::language::Language;
use crate::registrar::{Ha1Set, PhoneContact};
use crate::time::Now;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// What the Lua scripts keep, and the streams.
#[derive(Default)]
struct Store {
    callers: BTreeMap<String, StoredCaller>,
    /// agent → (live offer, caller)
    agents: BTreeMap<String, (String, String)>,
    views: BTreeMap<String, (String, String)>,
    phones: BTreeMap<String, String>,
    epoch: u64,
    events: Vec<Event>,
    inboxes: HashMap<String, VecDeque<Inbox>>,
    /// Offers the store accepted, as (caller, offer id).
    offers_made: Vec<(String, u64)>,
    /// Verdicts accepted: (caller, offer id).
    answers: Vec<(String, u64)>,
}

impl Store {
    /// A node's write (join.lua, leave.lua, tell.lua).
    fn apply(&mut self, node: &str, op: StoreOp) {
        match op {
            StoreOp::Event(event) => {
                match &event {
                    Event::Join {
                        caller,
                        queue,
                        language,
                        joined_ms,
                        number,
                        callback,
                        held,
                        ..
                    }
                    | Event::Restore {
                        caller,
                        queue,
                        language,
                        joined_ms,
                        number,
                        talking_to: None,
                        callback,
                        held,
                        ..
                    } => {
                        // join.lua: a live offer is not forgotten.
                        let (state, offer, agent) = match self.callers.get(&caller.key()) {
                            Some(c) if c.state == "ringing" => {
                                (c.state.clone(), c.offer.clone(), c.agent.clone())
                            }
                            _ => ("waiting".to_string(), String::new(), String::new()),
                        };
                        self.callers.insert(
                            caller.key(),
                            StoredCaller {
                                id: caller.key(),
                                node: caller.node.clone(),
                                call: caller.call.to_string(),
                                queue: queue.clone(),
                                language: language.code().to_string(),
                                options: "{}".to_string(),
                                joined_ms: joined_ms.to_string(),
                                state,
                                offer,
                                agent,
                                number: number.clone(),
                                held: serde_json::to_string(held).unwrap_or_default(),
                                callback: callback
                                    .as_ref()
                                    .and_then(|c| serde_json::to_string(c).ok())
                                    .unwrap_or_default(),
                            },
                        );
                    }
                    // mark.lua
                    Event::Hold { caller, held } => {
                        if let Some(c) = self.callers.get_mut(&caller.key()) {
                            c.held = serde_json::to_string(held).unwrap_or_default();
                        }
                    }
                    Event::KeepForCallback {
                        caller,
                        callback,
                        held,
                    } => {
                        if let Some(c) = self.callers.get_mut(&caller.key()) {
                            c.held = serde_json::to_string(held).unwrap_or_default();
                            c.callback = serde_json::to_string(callback).unwrap_or_default();
                        }
                    }
                    Event::Restore {
                        caller,
                        queue,
                        language,
                        joined_ms,
                        talking_to: Some(agent),
                        ..
                    } => {
                        self.callers.insert(
                            caller.key(),
                            StoredCaller {
                                id: caller.key(),
                                node: caller.node.clone(),
                                call: caller.call.to_string(),
                                queue: queue.clone(),
                                language: language.code().to_string(),
                                joined_ms: joined_ms.to_string(),
                                state: "talking".to_string(),
                                agent: agent.clone(),
                                ..StoredCaller::default()
                            },
                        );
                        self.agents
                            .insert(agent.clone(), (String::new(), caller.key()));
                    }
                    Event::Leave { caller, .. } | Event::CallEnded { caller } => {
                        self.forget(&caller.key());
                    }
                    _ => {}
                }
                self.events.push(event);
            }
            StoreOp::Phone { agent, contact } => {
                match &contact {
                    Some(c) => {
                        self.phones
                            .insert(agent.clone(), serde_json::to_string(c).unwrap_or_default());
                    }
                    None => {
                        self.phones.remove(&agent);
                    }
                }
                self.events.push(Event::Phone {
                    agent,
                    contact,
                    home: node.to_string(),
                });
            }
        }
    }

    fn forget(&mut self, key: &str) {
        if let Some(c) = self.callers.remove(key) {
            if let Some((_, caller)) = self.agents.get_mut(&c.agent) {
                if caller == key {
                    self.agents
                        .insert(c.agent.clone(), (String::new(), String::new()));
                }
            }
        }
    }

    /// A dispatcher's write (offer.lua, settle.lua, notify.lua): 1, 0
    /// (refused) or -1 (fenced).
    fn dispatch(&mut self, epoch: u64, op: DispatchOp) -> i64 {
        if epoch != self.epoch {
            return -1;
        }
        match op {
            DispatchOp::Offer {
                caller,
                agent,
                offer,
                message,
            } => {
                let key = caller.key();
                let waiting = self.callers.get(&key).is_some_and(|c| c.state == "waiting");
                let agent_free = self.agents.get(&agent).is_none_or(|(o, _)| o.is_empty());
                if !waiting || !agent_free {
                    return 0;
                }
                if let Some(c) = self.callers.get_mut(&key) {
                    c.state = "ringing".to_string();
                    c.offer = offer.to_string();
                    c.agent = agent.clone();
                }
                self.agents.insert(agent, (offer.to_string(), key.clone()));
                self.offers_made.push((key, offer));
                self.tell(&caller.node, message);
                1
            }
            DispatchOp::Settle {
                caller,
                agent,
                offer,
                outcome,
                message,
            } => {
                let key = caller.key();
                let live = self
                    .callers
                    .get(&key)
                    .is_some_and(|c| c.offer == offer.to_string());
                if live {
                    if let Some(c) = self.callers.get_mut(&key) {
                        c.offer = String::new();
                        if outcome == Settle::Answered {
                            c.state = "talking".to_string();
                        } else {
                            c.state = "waiting".to_string();
                            c.agent = String::new();
                        }
                    }
                    if outcome == Settle::Answered {
                        self.agents
                            .insert(agent.clone(), (String::new(), key.clone()));
                        self.answers.push((key.clone(), offer));
                    }
                }
                if outcome != Settle::Answered
                    && self
                        .agents
                        .get(&agent)
                        .is_some_and(|(o, _)| *o == offer.to_string())
                {
                    self.agents.insert(agent, (String::new(), String::new()));
                }
                self.tell(&caller.node, message);
                i64::from(live)
            }
            DispatchOp::Notify {
                node,
                message,
                forget,
                agent,
            } => {
                if let Some(c) = forget {
                    self.forget(&c.key());
                }
                if let Some((id, view, home)) = agent {
                    self.views
                        .insert(id, (serde_json::to_string(&view).unwrap_or_default(), home));
                }
                if let (Some(node), Some(message)) = (node, message) {
                    self.tell(&node, message);
                }
                1
            }
        }
    }

    fn tell(&mut self, node: &str, message: Inbox) {
        self.inboxes
            .entry(node.to_string())
            .or_default()
            .push_back(message);
    }

    /// reap.lua for a dead node, by `reaper`: callbacks go to its inbox.
    fn reap(&mut self, node: &str, reaper: &str) {
        let tickets: Vec<String> = self
            .callers
            .values()
            .filter(|c| c.node == node)
            .filter_map(|c| c.callback().map(|cb| cb.ticket))
            .collect();
        for ticket in tickets {
            self.tell(reaper, Inbox::AdoptCallback { ticket });
        }
        let lost: Vec<String> = self
            .callers
            .values()
            .filter(|c| c.node == node)
            .map(|c| c.id.clone())
            .collect();
        let callers: Vec<WireCaller> = lost
            .iter()
            .filter_map(|k| self.callers.get(k).map(|c| c.caller()))
            .collect();
        for k in &lost {
            self.forget(k);
        }
        self.inboxes.remove(node);
        if !callers.is_empty() {
            self.events.push(Event::NodeLost {
                node: node.to_string(),
                callers,
            });
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            callers: self.callers.values().cloned().collect(),
            agents: self
                .views
                .iter()
                .map(|(id, (view, home))| StoredAgent {
                    id: id.clone(),
                    view: view.clone(),
                    home: home.clone(),
                    phone: self.phones.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
            last_id: String::new(),
            applied: String::new(),
        }
    }
}

/// A node: its queue engine, and the call layer the test plays.
struct Node {
    name: String,
    queue: SharedQueue,
    alive: bool,
    next_call: u64,
    /// Callers in the queue as the call layer sees them.
    waiting: HashSet<CallerId>,
    /// Caller → (offer, agent) of a ringing leg.
    ringing: BTreeMap<CallerId, (OfferId, AgentId)>,
    /// Answered, waiting for the verdict.
    answered: BTreeMap<CallerId, OfferId>,
    talking: BTreeSet<CallerId>,
    /// Callers whose place is held until released.
    held: HashSet<CallerId>,
    /// Callbacks booked here (their tickets), and adopted here.
    booked: HashSet<String>,
    adopted: Vec<String>,
}

use std::collections::BTreeSet;

impl Node {
    /// A new caller of this node joins (a callback adopted, with `callback`).
    fn join(&mut self, now: Now, callback: Option<CallbackPlace>) {
        self.next_call += 1;
        let caller = CallerId::new(&NodeId::new(&self.name), CallId(self.next_call));
        self.queue.join(
            now,
            JoinRequest {
                caller,
                queue: "q".to_string(),
                language: Language::Pl,
                options: JoinOptions::default(),
                joined_at: now.wall,
                number: "4790000000".to_string(),
                callback,
            },
        );
    }
}

#[derive(Clone, Debug)]
enum Step {
    Join {
        node: usize,
    },
    Hangup {
        node: usize,
        pick: usize,
    },
    Answer {
        node: usize,
        pick: usize,
    },
    Reject {
        node: usize,
        pick: usize,
    },
    End {
        node: usize,
        pick: usize,
    },
    AgentState {
        agent: usize,
        ready: bool,
    },
    Deliver {
        node: usize,
    },
    LoseWrite {
        node: usize,
    },
    Inbox {
        node: usize,
    },
    Dispatch,
    Time {
        secs: u64,
    },
    Crash {
        node: usize,
    },
    NewDispatcher,
    /// The caller confirms a callback (held until released), or is
    /// released again.
    Hold {
        node: usize,
        pick: usize,
        release: bool,
    },
    /// The caller books a callback and hangs up.
    Callback {
        node: usize,
        pick: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..2usize).prop_map(|node| Step::Join { node }),
        1 => (0..2usize, 0..8usize).prop_map(|(node, pick)| Step::Hangup { node, pick }),
        2 => (0..2usize, 0..8usize).prop_map(|(node, pick)| Step::Answer { node, pick }),
        1 => (0..2usize, 0..8usize).prop_map(|(node, pick)| Step::Reject { node, pick }),
        2 => (0..2usize, 0..8usize).prop_map(|(node, pick)| Step::End { node, pick }),
        1 => (0..2usize, any::<bool>()).prop_map(|(agent, ready)| Step::AgentState { agent, ready }),
        6 => (0..2usize).prop_map(|node| Step::Deliver { node }),
        1 => (0..2usize).prop_map(|node| Step::LoseWrite { node }),
        6 => (0..2usize).prop_map(|node| Step::Inbox { node }),
        6 => Just(Step::Dispatch),
        2 => (0..30u64).prop_map(|secs| Step::Time { secs }),
        1 => (0..2usize).prop_map(|node| Step::Crash { node }),
        1 => Just(Step::NewDispatcher),
        1 => (0..2usize, 0..8usize, any::<bool>())
            .prop_map(|(node, pick, release)| Step::Hold { node, pick, release }),
        1 => (0..2usize, 0..8usize).prop_map(|(node, pick)| Step::Callback { node, pick }),
    ]
}

const AGENTS: [&str; 2] = ["ann", "bo"];

fn directory() -> AgentDirectory {
    let agents = AGENTS
        .iter()
        .map(|id| Agent {
            id: AgentId::from(*id),
            name: id.to_string(),
            sip_username: id.to_string(),
            credentials: Ha1Set::default(),
            skills: [(Language::Pl, 5)].into_iter().collect(),
            topics: BTreeMap::new(),
            wrap_up: Some(Duration::from_secs(2)),
            queues: Vec::new(),
        })
        .collect();
    AgentDirectory::new("hotline", agents).expect("agents")
}

fn queues() -> QueuesConfig {
    let mut q = QueueConfig::new("q");
    q.ring_timeout = Duration::from_secs(10);
    q.max_wait = Duration::from_secs(600);
    QueuesConfig { queues: vec![q] }
}

struct World {
    now: Now,
    store: Store,
    nodes: Vec<Node>,
    dispatcher: Dispatcher,
    /// Events of the store the dispatcher has read.
    read: usize,
}

impl World {
    fn new() -> World {
        let now = Now::fake(Instant::now());
        let mut store = Store {
            epoch: 1,
            ..Store::default()
        };
        let mut nodes: Vec<Node> = ["a.1", "b.1"]
            .iter()
            .map(|name| Node {
                name: name.to_string(),
                queue: SharedQueue::new(NodeId::new(name)),
                alive: true,
                next_call: 0,
                waiting: HashSet::new(),
                ringing: BTreeMap::new(),
                answered: BTreeMap::new(),
                talking: BTreeSet::new(),
                held: HashSet::new(),
                booked: HashSet::new(),
                adopted: Vec::new(),
            })
            .collect();
        // Each agent's phone registered with one node; both agents ready.
        for (i, node) in nodes.iter_mut().enumerate() {
            node.queue.set_queues(now, queues());
            node.queue.set_agents(now, directory());
            let agent = AgentId::from(AGENTS[i]);
            node.queue.phone_bound(
                now,
                &agent,
                Some(PhoneContact {
                    uri: format!("sip:{}@127.0.0.1", AGENTS[i]),
                    source: "127.0.0.1:5060".parse().expect("addr"),
                    tcp: false,
                }),
            );
            let _ = node.queue.agent_state(now, &agent, RequestedState::Ready);
            while let Some(op) = node.queue.poll_store_op() {
                store.apply(&node.name, op);
            }
        }
        let mut dispatcher = Dispatcher::new(now, "a.1", queues(), directory());
        dispatcher.take_over(now, 1, queues(), directory(), &store.snapshot());
        World {
            now,
            store,
            nodes,
            dispatcher,
            read: 0,
        }
    }

    /// The call layer: what each node's engine asked.
    fn drain_node(&mut self, n: usize) -> Result<(), TestCaseError> {
        let now = self.now;
        let node = &mut self.nodes[n];
        while let Some(action) = node.queue.poll_action() {
            match action {
                QueueAction::Joined { caller, .. } => {
                    node.waiting.insert(caller);
                }
                QueueAction::NotJoined { caller, .. } => {
                    node.waiting.remove(&caller);
                }
                QueueAction::Offer {
                    caller,
                    offer,
                    agent,
                    ..
                } => {
                    prop_assert!(
                        !node.ringing.contains_key(&caller),
                        "{caller} offered while a leg rings"
                    );
                    prop_assert!(
                        !node.talking.contains(&caller),
                        "{caller} offered while talking"
                    );
                    node.ringing.insert(caller, (offer, agent));
                }
                QueueAction::CancelOffer { caller, offer, .. } => {
                    if node.ringing.get(&caller).is_some_and(|(o, _)| *o == offer) {
                        node.ringing.remove(&caller);
                    }
                    node.answered.remove(&caller);
                }
                QueueAction::Verdict {
                    caller,
                    offer,
                    accepted,
                } if node.answered.get(&caller) == Some(&offer) => {
                    node.answered.remove(&caller);
                    node.ringing.remove(&caller);
                    if accepted {
                        node.waiting.remove(&caller);
                        node.talking.insert(caller);
                    }
                }
                QueueAction::CallLeft(exit)
                    if !matches!(exit.outcome, crate::acd::LeaveOutcome::Answered { .. }) =>
                {
                    node.waiting.remove(&exit.caller);
                    node.ringing.remove(&exit.caller);
                }
                QueueAction::QueueTimeout { caller } | QueueAction::NoAgents { caller } => {
                    node.waiting.remove(&caller);
                }
                QueueAction::AdoptCallback { ticket } => {
                    prop_assert!(
                        !node.adopted.contains(&ticket),
                        "{ticket} adopted twice by {}",
                        node.name
                    );
                    node.adopted.push(ticket.clone());
                    node.join(
                        now,
                        Some(CallbackPlace {
                            until: now.wall + chrono::Duration::seconds(3_600),
                            held: PlaceHeld::No,
                            ticket,
                        }),
                    );
                }
                _ => {}
            }
        }
        let _ = now;
        Ok(())
    }

    fn pick<T: Clone>(items: impl Iterator<Item = T>, pick: usize) -> Option<T> {
        let v: Vec<T> = items.collect();
        v.get(pick % v.len().max(1)).cloned()
    }

    fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
        let now = self.now;
        match step {
            Step::Join { node } => {
                let n = &mut self.nodes[node];
                if n.alive {
                    n.join(now, None);
                }
            }
            Step::Hangup { node, pick } => {
                let n = &mut self.nodes[node];
                let queued: Vec<CallerId> = n
                    .waiting
                    .iter()
                    .filter(|c| !n.talking.contains(*c))
                    .cloned()
                    .collect();
                if let Some(c) = Self::pick(queued.into_iter(), pick) {
                    n.ringing.remove(&c);
                    n.answered.remove(&c);
                    n.waiting.remove(&c);
                    n.queue.leave(now, &c, Leave::Abandoned);
                }
            }
            Step::Answer { node, pick } | Step::Reject { node, pick } => {
                let answer = matches!(step, Step::Answer { .. });
                let n = &mut self.nodes[node];
                let ringing: Vec<(CallerId, OfferId)> = n
                    .ringing
                    .iter()
                    .filter(|(c, _)| !n.answered.contains_key(*c))
                    .map(|(c, (o, _))| (c.clone(), *o))
                    .collect();
                if let Some((c, offer)) = Self::pick(ringing.into_iter(), pick) {
                    if answer {
                        n.answered.insert(c.clone(), offer);
                        let _ = n.queue.offer_result(now, &c, offer, OfferResult::Answered);
                    } else {
                        n.ringing.remove(&c);
                        let _ = n
                            .queue
                            .offer_result(now, &c, offer, OfferResult::Rejected(486));
                    }
                }
            }
            Step::End { node, pick } => {
                let n = &mut self.nodes[node];
                if let Some(c) = Self::pick(n.talking.iter().cloned(), pick) {
                    n.talking.remove(&c);
                    let _ = n.queue.call_ended(now, &c);
                }
            }
            Step::AgentState { agent, ready } => {
                let n = &mut self.nodes[agent];
                if n.alive {
                    let requested = if ready {
                        RequestedState::Ready
                    } else {
                        RequestedState::Paused {
                            reason: "p".to_string(),
                        }
                    };
                    let _ = n
                        .queue
                        .agent_state(now, &AgentId::from(AGENTS[agent]), requested);
                }
            }
            Step::Deliver { node } => {
                let n = &mut self.nodes[node];
                if n.alive {
                    if let Some(op) = n.queue.poll_store_op() {
                        self.store.apply(&n.name, op);
                    }
                }
            }
            Step::LoseWrite { node } => {
                // A write the store never got: the shell finds the store
                // away, then back (same data), and the node puts its
                // callers back.
                let n = &mut self.nodes[node];
                if n.alive && n.queue.poll_store_op().is_some() {
                    n.queue.handle_store(now, StoreInput::Unreachable);
                    self.drain_node(node)?;
                    self.nodes[node]
                        .queue
                        .handle_store(now, StoreInput::Reachable { reset: false });
                }
            }
            Step::Inbox { node } => {
                let name = self.nodes[node].name.clone();
                if self.nodes[node].alive {
                    if let Some(m) = self
                        .store
                        .inboxes
                        .get_mut(&name)
                        .and_then(|q| q.pop_front())
                    {
                        self.nodes[node]
                            .queue
                            .handle_store(now, StoreInput::Inbox(m));
                    }
                }
            }
            Step::Dispatch => {
                if let Some(event) = self.store.events.get(self.read).cloned() {
                    self.read += 1;
                    self.dispatcher.handle_event(now, event);
                }
                self.carry_out();
            }
            Step::Time { secs } => {
                self.now = now.advanced(Duration::from_secs(secs));
                self.dispatcher.handle_timeout(self.now);
                self.carry_out();
                for n in &mut self.nodes {
                    n.queue.handle_timeout(self.now);
                }
            }
            Step::Crash { node } => {
                // At most one crash, so that someone is left to serve.
                if self.nodes.iter().all(|n| n.alive) {
                    let name = self.nodes[node].name.clone();
                    let survivor = self.nodes[1 - node].name.clone();
                    self.nodes[node].alive = false;
                    self.store.reap(&name, &survivor);
                }
            }
            Step::Hold {
                node,
                pick,
                release,
            } => {
                let n = &mut self.nodes[node];
                if n.alive {
                    let queued = n.waiting.iter().filter(|c| !n.talking.contains(*c));
                    if let Some(c) = Self::pick(queued.cloned(), pick) {
                        let until = release.then_some(now.wall);
                        if n.queue.hold(now, &c, until) && !release {
                            n.held.insert(c);
                        } else {
                            n.held.remove(&c);
                        }
                    }
                }
            }
            Step::Callback { node, pick } => {
                let n = &mut self.nodes[node];
                if n.alive {
                    let queued = n.waiting.iter().filter(|c| !n.talking.contains(*c));
                    if let Some(c) = Self::pick(queued.cloned(), pick) {
                        let ticket = format!("cb-{c}");
                        let place = CallbackPlace {
                            until: now.wall + chrono::Duration::seconds(3_600),
                            held: PlaceHeld::No,
                            ticket: ticket.clone(),
                        };
                        if n.queue.keep_for_callback(now, &c, place) {
                            n.booked.insert(ticket);
                            n.held.remove(&c);
                        }
                    }
                }
            }
            Step::NewDispatcher => {
                // The dispatcher's lease lapsed: another takes over with a
                // new epoch, from the store; the old one's writes are fenced.
                let old = self.store.epoch;
                self.store.epoch += 1;
                let mut fresh = Dispatcher::new(now, "b.1", queues(), directory());
                fresh.take_over(
                    now,
                    self.store.epoch,
                    queues(),
                    directory(),
                    &self.store.snapshot(),
                );
                let mut stale = std::mem::replace(&mut self.dispatcher, fresh);
                self.read = self.store.events.len();
                while let Some(op) = stale.poll_op() {
                    prop_assert_eq!(self.store.dispatch(old, op), -1, "a stale dispatcher wrote");
                }
                self.carry_out();
            }
        }
        for n in 0..self.nodes.len() {
            if self.nodes[n].alive {
                self.drain_node(n)?;
            }
        }
        self.check()
    }

    fn carry_out(&mut self) {
        let epoch = self.store.epoch;
        while let Some(op) = self.dispatcher.poll_op() {
            self.store.dispatch(epoch, op);
        }
    }

    /// The invariants, after every step.
    fn check(&self) -> Result<(), TestCaseError> {
        // Exactly one live offer per agent, and it names one ringing caller.
        let mut ringing_for: HashMap<&str, Vec<&str>> = HashMap::new();
        for c in self.store.callers.values() {
            if c.state == "ringing" {
                ringing_for.entry(c.agent.as_str()).or_default().push(&c.id);
            }
        }
        for (agent, callers) in &ringing_for {
            prop_assert!(callers.len() <= 1, "{agent} rings for {callers:?}");
            let live = self.store.agents.get(*agent).map(|(o, _)| o.as_str());
            prop_assert!(
                live.is_some_and(|o| !o.is_empty()),
                "{agent} rings without a live offer"
            );
        }
        // A caller talks to at most one agent, an agent to at most one caller.
        let mut talking: HashMap<&str, usize> = HashMap::new();
        for c in self.store.callers.values() {
            if c.state == "talking" {
                *talking.entry(c.agent.as_str()).or_default() += 1;
            }
        }
        for (agent, n) in talking {
            prop_assert!(n <= 1, "{agent} talks to {n} callers");
        }
        // An answer is accepted only for the offer that was live.
        let made: HashSet<&(String, u64)> = self.store.offers_made.iter().collect();
        for a in &self.store.answers {
            prop_assert!(made.contains(a), "answer {a:?} to an offer never made");
        }
        // No caller of a live node is lost: every caller its call layer
        // believes queued is in the store (or about to be, or leaving).
        for n in self.nodes.iter().filter(|n| n.alive) {
            if n.queue.pending_ops() > 0 || n.queue.is_degraded() {
                continue;
            }
            for c in &n.waiting {
                let key = WireCaller::from(c).key();
                prop_assert!(
                    self.store.callers.contains_key(&key),
                    "{key} waits on {} but is not in the store",
                    n.name
                );
            }
        }
        Ok(())
    }
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut world = World::new();
    for step in steps {
        world.run(step)?;
    }
    // Let it settle: everything delivered, nobody answers any more.
    for _ in 0..200 {
        for n in 0..2 {
            world.run(Step::Deliver { node: n })?;
            world.run(Step::Inbox { node: n })?;
        }
        world.run(Step::Dispatch)?;
    }
    // A place held until released is rung for by nobody once all is said.
    for n in world.nodes.iter().filter(|n| n.alive) {
        for c in &n.held {
            prop_assert!(
                !n.ringing.contains_key(c),
                "{c} is held, yet rung for: {:?}",
                n.ringing.get(c)
            );
        }
    }
    // A callback is adopted by one node at most, and only if booked.
    let booked: HashSet<&String> = world.nodes.iter().flat_map(|n| &n.booked).collect();
    let mut adopted: Vec<&String> = world.nodes.iter().flat_map(|n| &n.adopted).collect();
    for t in &adopted {
        prop_assert!(booked.contains(t), "{t} adopted but never booked");
    }
    let all = adopted.len();
    adopted.sort();
    adopted.dedup();
    prop_assert_eq!(all, adopted.len(), "a callback adopted twice");
    // Views the dispatcher publishes parse back as what they say.
    if let Some(view) = world.dispatcher.poll_view(world.now, Vec::new()) {
        for a in &view.agents {
            let text = serde_json::to_string(a).unwrap_or_default();
            let back: Result<ViewAgent, _> = serde_json::from_str(&text);
            prop_assert!(back.is_ok());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn two_nodes_one_store_keep_offers_single_and_callers_whole(
        steps in proptest::collection::vec(step(), 0..200),
    ) {
        run(steps)?;
    }
}

impl World {
    /// `rounds` of node `n`'s writes, the dispatcher, and node `n`'s inbox.
    fn exchange(&mut self, n: usize, rounds: usize) {
        for _ in 0..rounds {
            self.run(Step::Deliver { node: n }).expect("deliver");
            self.run(Step::Dispatch).expect("dispatch");
            self.run(Step::Inbox { node: n }).expect("inbox");
        }
    }
}

#[test]
fn a_caller_on_one_node_is_offered_to_an_agent_of_the_other() {
    let mut world = World::new();
    world.run(Step::Join { node: 0 }).expect("join");
    world.exchange(0, 10);
    let ringing: Vec<_> = world.nodes[0].ringing.values().collect();
    assert_eq!(ringing.len(), 1, "{ringing:?}");
    world
        .run(Step::Answer { node: 0, pick: 0 })
        .expect("answer");
    world.exchange(0, 10);
    assert_eq!(world.nodes[0].talking.len(), 1);
    assert_eq!(world.store.answers.len(), 1);
}

/// A dispatcher that takes over withdraws the offer ringing and makes its
/// own; the agent's answer to the withdrawn one, arriving after, must not
/// pass for an answer to the new one (offer ids differ by epoch).
#[test]
fn an_answer_to_an_offer_withdrawn_by_a_takeover_is_refused() {
    let mut world = World::new();
    for _ in 0..6 {
        world.run(Step::Dispatch).expect("agents ready");
    }
    world.run(Step::Join { node: 0 }).expect("join");
    world.exchange(0, 5);
    let (old, _) = world.nodes[0]
        .ringing
        .values()
        .next()
        .cloned()
        .expect("rung");
    world.run(Step::NewDispatcher).expect("take over");
    world
        .run(Step::Answer { node: 0, pick: 0 })
        .expect("answer the old offer");
    world.exchange(0, 20);
    assert!(
        !world.store.answers.iter().any(|(_, o)| *o == old.0),
        "the withdrawn offer {old:?} was answered: {:?}",
        world.store.answers
    );
    assert!(world.nodes[0].talking.is_empty());
    // The caller is rung again, under the new dispatcher's offer.
    let (new, _) = world.nodes[0]
        .ringing
        .values()
        .next()
        .cloned()
        .expect("rung again");
    assert_ne!(new, old);
}
