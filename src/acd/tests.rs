//! Queue engine tests with a fake clock, driven through [`QueueService`]:
//! scenarios, then invariants over random event sequences.

use super::config::{EscalationTier, NoAgentsPolicy, QueueConfig, QueuesConfig};
use super::*;
use crate::ids::{CallId, CallerId, NodeId, OfferId};
use crate::language::Language;
use crate::registrar::Ha1Set;
use crate::time::Now;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn agent(id: &str, skills: &[(Language, u8)]) -> Agent {
    Agent {
        id: AgentId::from(id),
        name: id.to_string(),
        sip_username: id.to_string(),
        credentials: Ha1Set::default(),
        skills: skills.iter().copied().collect(),
        topics: BTreeMap::new(),
        wrap_up: None,
        queues: Vec::new(),
    }
}

/// An agent whose wrap-up after a call lasts `wrap_up`.
fn agent_with_wrap_up(id: &str, skills: &[(Language, u8)], wrap_up: Duration) -> Agent {
    Agent {
        wrap_up: Some(wrap_up),
        ..agent(id, skills)
    }
}

/// The queue `q`, whose callers may go to English speakers while nobody
/// who speaks their language is logged in.
fn english_fallback() -> QueueConfig {
    let mut q = QueueConfig::new("q");
    q.no_agents = NoAgentsPolicy::Fallback(Language::En);
    q
}

/// A join that asks for `policy` while nobody is logged in.
fn with_no_agents(policy: NoAgentsPolicy) -> JoinOptions {
    JoinOptions {
        no_agents: Some(policy),
        ..JoinOptions::default()
    }
}

/// Builds an engine with one queue and its agents.
struct Setup {
    queue: QueueConfig,
    agents: Vec<Agent>,
}

impl Setup {
    fn queue(queue: QueueConfig) -> Setup {
        Setup {
            queue,
            agents: Vec::new(),
        }
    }

    /// The queue `q` with its defaults.
    fn new() -> Setup {
        Setup::queue(QueueConfig::new("q"))
    }

    fn agent(self, id: &str, skills: &[(Language, u8)]) -> Setup {
        self.with_agent(agent(id, skills))
    }

    /// Agents with the same skills.
    fn agents(self, ids: &[&str], skills: &[(Language, u8)]) -> Setup {
        self.with_agents(ids.iter().map(|id| agent(id, skills)).collect())
    }

    fn with_agent(mut self, agent: Agent) -> Setup {
        self.agents.push(agent);
        self
    }

    fn with_agents(mut self, agents: Vec<Agent>) -> Setup {
        self.agents.extend(agents);
        self
    }

    fn start(self) -> Engine {
        let t0 = Instant::now();
        let clock = Now::fake(t0);
        let dir = AgentDirectory::new("hotline", self.agents).expect("unique");
        let queues = QueuesConfig {
            queues: vec![self.queue],
        };
        Engine {
            engine: Box::new(Acd::new(clock, queues, dir)),
            clock,
            t0,
            offers: HashMap::new(),
            pending: Vec::new(),
        }
    }
}

/// What the engine answered or asked, with callers as this node's call ids.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Act {
    Joined {
        call: CallId,
        language: Language,
    },
    NotJoined {
        call: CallId,
        reason: NotJoined,
    },
    Offer {
        call: CallId,
        agent: AgentId,
        queue: String,
        language: Language,
    },
    CancelOffer {
        call: CallId,
        agent: AgentId,
        reason: CancelReason,
    },
    Verdict {
        call: CallId,
        accepted: bool,
    },
    Announce {
        call: CallId,
        position: usize,
        estimated_wait: Option<Duration>,
        waited: Duration,
        first: bool,
    },
    WaitMessage {
        call: CallId,
        index: usize,
    },
    Escalated {
        call: CallId,
        tier: usize,
    },
    LanguageFallback {
        call: CallId,
        language: Language,
    },
    QueueTimeout {
        call: CallId,
    },
    NoAgents {
        call: CallId,
    },
    CallLeft {
        call: CallId,
        queue: String,
        language: Language,
        outcome: LeaveOutcome,
        waited: Duration,
        prediction: Option<PredictionError>,
    },
    AgentStateChanged {
        agent: AgentId,
        state: AgentState,
        pending: Option<RequestedState>,
        entered: bool,
    },
}

/// The answer to a join, read from the actions.
#[derive(Clone, Debug, PartialEq, Eq)]
enum JoinResult {
    Joined { language: Language },
    Full,
    NoAgents,
    UnknownQueue,
    LanguageNotServed,
    AlreadyQueued,
}

fn node() -> NodeId {
    NodeId::local()
}

fn caller(call: CallId) -> CallerId {
    CallerId::new(&node(), call)
}

/// A queue engine behind the seam, on a fake clock (`t0` onwards). Offers
/// are remembered so that a result names the offer it answers, as the call
/// layer's does; a result for an older offer of the same pair is refused.
struct Engine {
    engine: Box<dyn QueueService>,
    clock: Now,
    t0: Instant,
    offers: HashMap<(CallId, AgentId), OfferId>,
    /// Actions read while looking for a join's answer, not drained yet.
    pending: Vec<Act>,
}

impl Engine {
    fn at(&self, t: Instant) -> Now {
        self.clock.at(t)
    }

    fn poll_action(&mut self) -> Option<Act> {
        let action = self.engine.poll_action()?;
        Some(match action {
            QueueAction::Joined { caller, language } => Act::Joined {
                call: caller.call,
                language,
            },
            QueueAction::NotJoined { caller, reason } => Act::NotJoined {
                call: caller.call,
                reason,
            },
            QueueAction::Offer {
                offer,
                caller,
                agent,
                queue,
                language,
                ..
            } => {
                self.offers.insert((caller.call, agent.clone()), offer);
                Act::Offer {
                    call: caller.call,
                    agent,
                    queue,
                    language,
                }
            }
            QueueAction::CancelOffer {
                caller,
                agent,
                reason,
                ..
            } => Act::CancelOffer {
                call: caller.call,
                agent,
                reason,
            },
            QueueAction::Verdict {
                caller, accepted, ..
            } => Act::Verdict {
                call: caller.call,
                accepted,
            },
            QueueAction::Announce {
                caller,
                position,
                estimated_wait,
                waited,
                first,
            } => Act::Announce {
                call: caller.call,
                position,
                estimated_wait,
                waited,
                first,
            },
            QueueAction::WaitMessage { caller, index } => Act::WaitMessage {
                call: caller.call,
                index,
            },
            QueueAction::Escalated { caller, tier } => Act::Escalated {
                call: caller.call,
                tier,
            },
            QueueAction::LanguageFallback { caller, language } => Act::LanguageFallback {
                call: caller.call,
                language,
            },
            QueueAction::QueueTimeout { caller } => Act::QueueTimeout { call: caller.call },
            QueueAction::NoAgents { caller } => Act::NoAgents { call: caller.call },
            QueueAction::CallLeft(exit) => Act::CallLeft {
                call: exit.caller.call,
                queue: exit.queue,
                language: exit.language,
                outcome: exit.outcome,
                waited: exit.waited,
                prediction: exit.prediction,
            },
            QueueAction::AgentStateChanged {
                agent,
                state,
                pending,
                entered,
            } => Act::AgentStateChanged {
                agent,
                state,
                pending,
                entered,
            },
            // Only a shared engine hands callbacks over.
            QueueAction::AdoptCallback { .. } => return None,
        })
    }

    /// Joins and reads the answer; the other actions stay to be drained.
    fn join(
        &mut self,
        t: Instant,
        call: CallId,
        queue: &str,
        language: Language,
        options: JoinOptions,
    ) -> JoinResult {
        let now = self.at(t);
        let request = JoinRequest {
            caller: caller(call),
            queue: queue.to_string(),
            language,
            options,
            joined_at: now.wall,
            number: format!("4790000{:03}", call.0 % 1000),
            callback: None,
        };
        self.engine.join(now, request);
        let mut rest = Vec::new();
        let mut answer = None;
        while let Some(a) = self.poll_action() {
            match a {
                Act::Joined { call: c, language } if c == call && answer.is_none() => {
                    answer = Some(JoinResult::Joined { language })
                }
                Act::NotJoined { call: c, reason } if c == call && answer.is_none() => {
                    answer = Some(match reason {
                        NotJoined::Full => JoinResult::Full,
                        NotJoined::NoAgents => JoinResult::NoAgents,
                        NotJoined::UnknownQueue => JoinResult::UnknownQueue,
                        NotJoined::LanguageNotServed => JoinResult::LanguageNotServed,
                        NotJoined::AlreadyQueued => JoinResult::AlreadyQueued,
                    })
                }
                other => rest.push(other),
            }
        }
        self.pending = rest;
        answer.expect("every join is answered")
    }

    fn abandon(&mut self, t: Instant, call: CallId) -> bool {
        let now = self.at(t);
        self.engine.leave(now, &caller(call), Leave::Abandoned)
    }

    fn leave(&mut self, t: Instant, call: CallId) -> bool {
        let now = self.at(t);
        self.engine.leave(now, &caller(call), Leave::Left)
    }

    fn agent_state(
        &mut self,
        t: Instant,
        agent: &AgentId,
        requested: RequestedState,
    ) -> Result<RequestEffect, QueueError> {
        let now = self.at(t);
        self.engine.agent_state(now, agent, requested)
    }

    /// The result of the latest offer of `call` to `agent`.
    fn offer_result(
        &mut self,
        t: Instant,
        call: CallId,
        agent: &AgentId,
        result: OfferResult,
    ) -> Result<(), QueueError> {
        let now = self.at(t);
        // Offers made since the last drain are learnt first, as the call
        // layer drains actions before it acts.
        while let Some(a) = self.poll_action() {
            self.pending.push(a);
        }
        let offer = self
            .offers
            .get(&(call, agent.clone()))
            .copied()
            .unwrap_or(OfferId(u64::MAX));
        self.engine.offer_result(now, &caller(call), offer, result)
    }

    /// `agent` answers `call`, which rings their phone.
    fn answer(&mut self, t: Instant, call: u64, agent: &str) {
        self.offer_result(
            t,
            CallId(call),
            &AgentId::from(agent),
            OfferResult::Answered,
        )
        .expect("offered");
    }

    /// `agent` refuses `call` (SIP `code`).
    fn reject(&mut self, t: Instant, call: u64, agent: &str, code: u16) {
        self.offer_result(
            t,
            CallId(call),
            &AgentId::from(agent),
            OfferResult::Rejected(code),
        )
        .expect("offered");
    }

    /// `agent` gets ready and `call` joins in `language`, at `t`: the
    /// caller is offered to the agent (the only one ready). Every action so
    /// far is drained.
    fn ring(&mut self, t: Instant, call: u64, language: Language, agent: &str) {
        ready(self, t, agent);
        join(self, t, call, language);
        drain(self);
    }

    /// `agent` asks to be paused for `reason`.
    fn pause(&mut self, t: Instant, agent: &str, reason: &str) -> RequestEffect {
        let paused = RequestedState::Paused {
            reason: reason.into(),
        };
        self.agent_state(t, &AgentId::from(agent), paused)
            .expect("known")
    }

    fn log_out(&mut self, t: Instant, agent: &str) {
        self.agent_state(t, &AgentId::from(agent), RequestedState::LoggedOut)
            .expect("known");
    }

    /// Runs the timers due at `t`; the actions since the last drain.
    fn tick(&mut self, t: Instant) -> Vec<Act> {
        self.handle_timeout(t);
        drain(self)
    }

    fn call_ended(&mut self, t: Instant, call: CallId) -> Result<(), QueueError> {
        let now = self.at(t);
        self.engine.call_ended(now, &caller(call))
    }

    fn handle_timeout(&mut self, t: Instant) {
        let now = self.at(t);
        self.engine.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }

    fn set_agents(&mut self, t: Instant, directory: AgentDirectory) {
        let now = self.at(t);
        self.engine.set_agents(now, directory);
    }

    fn agent_state_of(&self, agent: &AgentId) -> Option<AgentState> {
        self.engine.agent_state_of(agent)
    }

    fn agents(&self) -> Vec<AgentView> {
        self.engine.agents()
    }

    fn agent_pending_of(&self, agent: &AgentId) -> Option<RequestedState> {
        self.engine.agent_pending_of(agent)
    }

    fn join_estimates(&self, t: Instant, queue: &str) -> Vec<(Language, Option<Duration>)> {
        self.engine.join_estimates(self.at(t), queue)
    }

    fn is_queued(&self, call: CallId) -> bool {
        self.engine.is_queued(&caller(call))
    }

    fn queue_stats(&self, t: Instant) -> Vec<QueueStats> {
        self.engine.stats(self.at(t))
    }
}

fn drain(acd: &mut Engine) -> Vec<Act> {
    let mut out = std::mem::take(&mut acd.pending);
    out.extend(std::iter::from_fn(|| acd.poll_action()));
    out
}

fn offers(actions: &[Act]) -> Vec<(CallId, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Act::Offer { call, agent, .. } => Some((*call, agent.to_string())),
            _ => None,
        })
        .collect()
}

fn ready(acd: &mut Engine, now: Instant, id: &str) {
    acd.agent_state(now, &AgentId::from(id), RequestedState::Ready)
        .expect("known agent");
}

fn join(acd: &mut Engine, now: Instant, call: u64, language: Language) -> JoinResult {
    acd.join(now, CallId(call), "q", language, JoinOptions::default())
}

#[test]
fn longest_idle_agent_gets_the_first_caller() {
    let mut acd = Setup::new()
        .agent("a", &[(Language::Nb, 5)])
        .agent("b", &[(Language::Nb, 9)])
        .agent("c", &[(Language::En, 9)])
        .start();
    let t0 = acd.t0;
    ready(&mut acd, t0 + secs(2), "a");
    ready(&mut acd, t0 + secs(1), "b");
    ready(&mut acd, t0 + secs(1), "c");
    drain(&mut acd);
    let now = t0 + secs(10);
    assert_eq!(
        join(&mut acd, now, 1, Language::Nb),
        JoinResult::Joined {
            language: Language::Nb
        }
    );
    let acts = drain(&mut acd);
    assert_eq!(offers(&acts), vec![(CallId(1), "b".to_string())]);
    // Offered at once: no announcement.
    assert!(!acts.iter().any(|a| matches!(a, Act::Announce { .. })));
    join(&mut acd, now, 2, Language::Nb);
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(2), "a".to_string())]);
    // Nobody else speaks Norwegian: the third caller waits, told position 1.
    join(&mut acd, now, 3, Language::Nb);
    let acts = drain(&mut acd);
    assert!(offers(&acts).is_empty());
    assert!(acts.iter().any(|a| matches!(
        a,
        Act::Announce {
            call: CallId(3),
            position: 1,
            first: true,
            ..
        }
    )));
}

#[test]
fn ties_in_idle_time_go_to_the_more_proficient() {
    let mut acd = Setup::new()
        .agent("a", &[(Language::Ar, 4)])
        .agent("b", &[(Language::Ar, 8)])
        .start();
    let t0 = acd.t0;
    ready(&mut acd, t0, "a");
    ready(&mut acd, t0, "b");
    drain(&mut acd);
    join(&mut acd, t0 + secs(1), 1, Language::Ar);
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(1), "b".to_string())]);
}

#[test]
fn first_come_first_served_with_priority() {
    let mut acd = Setup::new().agent("a", &[(Language::Pl, 5)]).start();
    let t0 = acd.t0;
    join(&mut acd, t0, 1, Language::Pl);
    join(&mut acd, t0 + secs(1), 2, Language::Pl);
    acd.join(
        t0 + secs(2),
        CallId(3),
        "q",
        Language::Pl,
        JoinOptions {
            priority: 5,
            ..JoinOptions::default()
        },
    );
    let acts = drain(&mut acd);
    // The urgent caller is told it is first.
    assert!(acts.iter().any(|a| matches!(
        a,
        Act::Announce {
            call: CallId(3),
            position: 1,
            ..
        }
    )));
    let mut served = Vec::new();
    let mut now = t0 + secs(3);
    ready(&mut acd, now, "a");
    for _ in 0..3 {
        let o = offers(&drain(&mut acd));
        assert_eq!(o.len(), 1);
        let call = o[0].0;
        served.push(call.0);
        acd.answer(now, call.0, "a");
        now += secs(30);
        acd.call_ended(now, call).expect("answered");
        now += secs(10); // default wrap-up
        acd.handle_timeout(now);
    }
    assert_eq!(served, vec![3, 1, 2]);
}

#[test]
fn escalation_widens_to_english_after_a_minute() {
    let mut q = QueueConfig::new("q");
    q.min_proficiency = 7;
    q.escalation = vec![
        EscalationTier {
            after: secs(60),
            add_languages: vec![Language::En],
            min_proficiency: 7,
        },
        EscalationTier {
            after: secs(120),
            add_languages: vec![],
            min_proficiency: 3,
        },
    ];
    let mut acd = Setup::queue(q)
        .agent("en", &[(Language::En, 9)])
        .agent("weak", &[(Language::Lt, 4)])
        .start();
    let t0 = acd.t0;
    ready(&mut acd, t0, "en");
    ready(&mut acd, t0, "weak");
    join(&mut acd, t0, 1, Language::Lt);
    join(&mut acd, t0, 2, Language::Lt);
    assert!(offers(&drain(&mut acd)).is_empty());
    assert_eq!(acd.poll_timeout(), Some(t0 + secs(60)));
    assert!(offers(&acd.tick(t0 + secs(59))).is_empty());
    let acts = acd.tick(t0 + secs(60));
    assert!(acts.contains(&Act::Escalated {
        call: CallId(1),
        tier: 1
    }));
    assert_eq!(offers(&acts), vec![(CallId(1), "en".to_string())]);
    acd.answer(t0 + secs(65), 1, "en");
    assert!(offers(&acd.tick(t0 + secs(119))).is_empty());
    let acts = acd.tick(t0 + secs(120));
    assert_eq!(offers(&acts), vec![(CallId(2), "weak".to_string())]);
}

#[test]
fn ring_timeout_pauses_and_reoffers_to_the_next_agent() {
    let mut acd = Setup::new()
        .agents(&["a", "b"], &[(Language::Ru, 5)])
        .start();
    let t0 = acd.t0;
    ready(&mut acd, t0, "a");
    ready(&mut acd, t0 + secs(1), "b");
    join(&mut acd, t0 + secs(5), 1, Language::Ru);
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(1), "a".to_string())]);
    assert_eq!(acd.poll_timeout(), Some(t0 + secs(25)));
    let acts = acd.tick(t0 + secs(25));
    assert!(acts.contains(&Act::CancelOffer {
        call: CallId(1),
        agent: AgentId::from("a"),
        reason: crate::acd::CancelReason::RingTimeout
    }));
    assert_eq!(offers(&acts), vec![(CallId(1), "b".to_string())]);
    assert_eq!(
        acd.agent_state_of(&AgentId::from("a")),
        Some(AgentState::Paused {
            reason: "no answer".into()
        })
    );
    // A late answer from `a` is refused: that leg is hung up.
    assert_eq!(
        acd.offer_result(
            t0 + secs(26),
            CallId(1),
            &AgentId::from("a"),
            OfferResult::Answered
        ),
        Err(QueueError::NotOffered)
    );
    // The verdict tells the call layer to hang that leg up.
    assert!(drain(&mut acd).contains(&Act::Verdict {
        call: CallId(1),
        accepted: false
    }));
    // `b` is busy (486): paused too; the caller waits on.
    acd.reject(t0 + secs(27), 1, "b", 486);
    assert_eq!(
        acd.agent_state_of(&AgentId::from("b")),
        Some(AgentState::Paused {
            reason: "busy".into()
        })
    );
    assert!(acd.is_queued(CallId(1)));
}

#[test]
fn without_pausing_a_missed_agent_is_held_off_then_offered_again() {
    let mut q = QueueConfig::new("q");
    q.pause_on_no_answer = false;
    let mut acd = Setup::queue(q).agent("a", &[(Language::Ro, 5)]).start();
    let t0 = acd.t0;
    acd.ring(t0, 1, Language::Ro, "a");
    acd.reject(t0 + secs(2), 1, "a", 603);
    assert!(offers(&drain(&mut acd)).is_empty());
    assert_eq!(acd.poll_timeout(), Some(t0 + secs(7)));
    assert_eq!(
        offers(&acd.tick(t0 + secs(7))),
        vec![(CallId(1), "a".to_string())]
    );
}

#[test]
fn wrap_up_then_ready_and_deferred_pause() {
    let mut acd = Setup::new()
        .with_agent(agent_with_wrap_up("a", &[(Language::En, 5)], secs(30)))
        .start();
    let t0 = acd.t0;
    let a = AgentId::from("a");
    acd.ring(t0, 1, Language::En, "a");
    join(&mut acd, t0, 2, Language::En);
    drain(&mut acd);
    acd.answer(t0 + secs(1), 1, "a");
    assert!(drain(&mut acd).contains(&Act::Verdict {
        call: CallId(1),
        accepted: true
    }));
    acd.call_ended(t0 + secs(61), CallId(1)).expect("answered");
    assert_eq!(
        acd.agent_state_of(&a),
        Some(AgentState::WrapUp {
            until: t0 + secs(91)
        })
    );
    // Not offered during wrap-up.
    assert!(offers(&acd.tick(t0 + secs(90))).is_empty());
    assert_eq!(
        offers(&acd.tick(t0 + secs(91))),
        vec![(CallId(2), "a".to_string())]
    );
    acd.answer(t0 + secs(92), 2, "a");
    assert_eq!(
        acd.pause(t0 + secs(93), "a", "break"),
        RequestEffect::Deferred
    );
    acd.call_ended(t0 + secs(100), CallId(2)).expect("answered");
    acd.handle_timeout(t0 + secs(130));
    assert_eq!(
        acd.agent_state_of(&a),
        Some(AgentState::Paused {
            reason: "break".into()
        })
    );
}

#[test]
fn abandonment_while_ringing_cancels_and_counts_short() {
    let mut acd = Setup::new().agent("a", &[(Language::Nb, 5)]).start();
    let t0 = acd.t0;
    let a = AgentId::from("a");
    acd.ring(t0, 1, Language::Nb, "a");
    assert!(acd.abandon(t0 + secs(3), CallId(1)));
    let acts = drain(&mut acd);
    assert!(acts.contains(&Act::CancelOffer {
        call: CallId(1),
        agent: a.clone(),
        reason: crate::acd::CancelReason::CallerLeft
    }));
    assert!(acts.iter().any(|x| matches!(
        x,
        Act::CallLeft {
            outcome: LeaveOutcome::Abandoned { short: true },
            waited,
            ..
        } if *waited == secs(3)
    )));
    // The agent did nothing wrong: ready, same place in line.
    assert_eq!(acd.agent_state_of(&a), Some(AgentState::Ready));
    assert!(!acd.abandon(t0 + secs(4), CallId(1)));
    // A long wait abandoned is not short.
    acd.log_out(t0 + secs(5), "a");
    join(&mut acd, t0 + secs(5), 2, Language::Nb);
    drain(&mut acd);
    acd.abandon(t0 + secs(65), CallId(2));
    assert!(drain(&mut acd).iter().any(|x| matches!(
        x,
        Act::CallLeft {
            outcome: LeaveOutcome::Abandoned { short: false },
            ..
        }
    )));
}

#[test]
fn pause_while_ringing_withdraws_the_offer_and_reoffers() {
    let mut acd = Setup::new()
        .agents(&["a", "b"], &[(Language::Nb, 5)])
        .start();
    let t0 = acd.t0;
    acd.ring(t0, 1, Language::Nb, "a");
    ready(&mut acd, t0 + secs(1), "b");
    let effect = acd.pause(t0 + secs(2), "a", "coffee");
    assert_eq!(effect, RequestEffect::OfferWithdrawn(caller(CallId(1))));
    let acts = drain(&mut acd);
    assert!(acts.contains(&Act::CancelOffer {
        call: CallId(1),
        agent: AgentId::from("a"),
        reason: crate::acd::CancelReason::AgentUnavailable
    }));
    assert_eq!(offers(&acts), vec![(CallId(1), "b".to_string())]);
}

#[test]
fn full_queue_and_max_wait() {
    let mut q = QueueConfig::new("q");
    q.max_length = 2;
    q.max_wait = secs(300);
    let mut acd = Setup::queue(q).agent("a", &[(Language::En, 5)]).start();
    let t0 = acd.t0;
    join(&mut acd, t0, 1, Language::En);
    join(&mut acd, t0, 2, Language::En);
    assert_eq!(join(&mut acd, t0, 3, Language::En), JoinResult::Full);
    assert_eq!(
        join(&mut acd, t0, 1, Language::En),
        JoinResult::AlreadyQueued
    );
    drain(&mut acd);
    // Ringing when max wait passes: the offer runs its course first.
    ready(&mut acd, t0 + secs(290), "a");
    drain(&mut acd);
    let acts = acd.tick(t0 + secs(300));
    assert!(acts.contains(&Act::QueueTimeout { call: CallId(2) }));
    assert!(!acts.contains(&Act::QueueTimeout { call: CallId(1) }));
    let acts = acd.tick(t0 + secs(310));
    assert!(acts.contains(&Act::QueueTimeout { call: CallId(1) }));
    assert!(acts.contains(&Act::CancelOffer {
        call: CallId(1),
        agent: AgentId::from("a"),
        reason: crate::acd::CancelReason::RingTimeout
    }));
    assert!(!acd.is_queued(CallId(1)));
}

#[test]
fn no_agents_policies() {
    let mut acd = Setup::queue(english_fallback())
        .agent("en", &[(Language::En, 5)])
        .agent("ar", &[(Language::Ar, 5)])
        .start();
    let t0 = acd.t0;
    // Nobody logged in at all: the fallback finds nobody either, so the
    // caller waits in Arabic.
    assert_eq!(
        join(&mut acd, t0, 1, Language::Ar),
        JoinResult::Joined {
            language: Language::Ar
        }
    );
    assert!(!drain(&mut acd)
        .iter()
        .any(|a| matches!(a, Act::LanguageFallback { .. })));
    // An English agent logs in (paused counts as logged in): the waiting
    // caller may now go to English speakers, and is told once.
    acd.pause(t0, "en", "x");
    let acts = drain(&mut acd);
    assert!(acts.contains(&Act::LanguageFallback {
        call: CallId(1),
        language: Language::En
    }));
    // A new Arabic caller falls back on joining, keeping their own line.
    assert_eq!(
        join(&mut acd, t0, 2, Language::Ar),
        JoinResult::Joined {
            language: Language::Ar
        }
    );
    assert!(drain(&mut acd).contains(&Act::LanguageFallback {
        call: CallId(2),
        language: Language::En
    }));
    // With Wait, no fallback.
    let wait = with_no_agents(NoAgentsPolicy::Wait);
    assert_eq!(
        acd.join(t0, CallId(3), "q", Language::Ar, wait),
        JoinResult::Joined {
            language: Language::Ar
        }
    );
    assert!(!drain(&mut acd)
        .iter()
        .any(|a| matches!(a, Act::LanguageFallback { .. })));
    // The English agent gets ready: the first fallen-back caller is offered
    // to them, never the caller who waits for Arabic.
    ready(&mut acd, t0 + secs(1), "en");
    assert_eq!(
        offers(&drain(&mut acd)),
        vec![(CallId(1), "en".to_string())]
    );
    // An Arabic agent logs in and out: a Reject caller in Arabic leaves.
    acd.pause(t0, "ar", "x");
    let reject = with_no_agents(NoAgentsPolicy::Reject);
    assert_eq!(
        acd.join(t0, CallId(4), "q", Language::Ar, reject),
        JoinResult::Joined {
            language: Language::Ar
        }
    );
    drain(&mut acd);
    acd.log_out(t0 + secs(1), "ar");
    let acts = drain(&mut acd);
    assert!(acts.contains(&Act::NoAgents { call: CallId(4) }));
    assert!(acd.is_queued(CallId(3)));
    assert!(acd.is_queued(CallId(2)));
}

#[test]
fn a_fallen_back_caller_is_taken_by_their_own_language_agent_who_logs_in() {
    let mut acd = Setup::queue(english_fallback())
        .agent("en", &[(Language::En, 9)])
        .agent("lt", &[(Language::Lt, 5)])
        .start();
    let t0 = acd.t0;
    acd.ring(t0, 1, Language::En, "en");
    acd.answer(t0, 1, "en");
    drain(&mut acd);
    // No Lithuanian speaker logged in: the caller may go to English speakers,
    // but keeps their Lithuanian line (and its figures).
    assert_eq!(
        join(&mut acd, t0 + secs(1), 2, Language::Lt),
        JoinResult::Joined {
            language: Language::Lt
        }
    );
    assert!(drain(&mut acd).contains(&Act::LanguageFallback {
        call: CallId(2),
        language: Language::En
    }));
    let lines = &acd.queue_stats(t0 + secs(1))[0].lines;
    assert!(lines
        .iter()
        .any(|l| l.language == Language::Lt && l.waiting == 1));
    // A Lithuanian speaker logs in before the English agent is free.
    ready(&mut acd, t0 + secs(2), "lt");
    assert_eq!(
        offers(&drain(&mut acd)),
        vec![(CallId(2), "lt".to_string())]
    );
}

#[test]
fn a_caller_ringing_an_agent_falls_back_with_the_others() {
    let mut q = english_fallback();
    q.escalation = vec![EscalationTier {
        after: secs(10),
        add_languages: vec![Language::Nb],
        min_proficiency: 1,
    }];
    let mut acd = Setup::queue(q)
        .agent("p", &[(Language::Pl, 9)])
        .agent("n", &[(Language::Nb, 9)])
        .agent("e", &[(Language::En, 9)])
        .start();
    let t0 = acd.t0;
    acd.pause(t0, "p", "x");
    acd.pause(t0, "e", "x");
    join(&mut acd, t0, 1, Language::Pl);
    acd.handle_timeout(t0 + secs(10));
    ready(&mut acd, t0 + secs(10), "n");
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(1), "n".to_string())]);
    // The last Polish speaker leaves while the Norwegian agent's phone rings.
    acd.log_out(t0 + secs(11), "p");
    assert!(drain(&mut acd).contains(&Act::LanguageFallback {
        call: CallId(1),
        language: Language::En
    }));
}

#[test]
fn wait_messages_come_after_their_delay_repeat_and_wait_for_a_ringing_phone() {
    let mut acd = Setup::new().agent("a", &[(Language::Nb, 5)]).start();
    let t0 = acd.t0;
    let options = JoinOptions {
        messages: vec![
            MessageTiming {
                after: secs(60),
                every: Some(secs(120)),
            },
            MessageTiming {
                after: secs(600),
                every: None,
            },
        ],
        announce_every: Some(secs(1000)),
        ..JoinOptions::default()
    };
    assert!(matches!(
        acd.join(t0, CallId(1), "q", Language::Nb, options),
        JoinResult::Joined { .. }
    ));
    drain(&mut acd);
    let mut heard: Vec<(u64, usize)> = Vec::new();
    let mut announced: Vec<u64> = Vec::new();
    let mut now = t0;
    for _ in 0..1000 {
        let Some(t) = acd.poll_timeout() else { break };
        if t > t0 + secs(700) {
            break;
        }
        now = t;
        acd.handle_timeout(now);
        for a in drain(&mut acd) {
            match a {
                Act::WaitMessage { index, .. } => {
                    heard.push((now.duration_since(t0).as_secs(), index))
                }
                Act::Announce { .. } => announced.push(now.duration_since(t0).as_secs()),
                _ => {}
            }
        }
    }
    assert_eq!(
        heard,
        vec![
            (60, 0),
            (180, 0),
            (300, 0),
            (420, 0),
            (540, 0),
            (600, 1),
            (660, 0)
        ]
    );
    // The step's announce_every (1000 s) replaced the queue's 60 s.
    assert!(announced.is_empty(), "{announced:?}");

    // While the agent's phone rings, the message waits for the offer to end.
    ready(&mut acd, now, "a");
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(1), "a".to_string())]);
    let ring_from = now;
    let mut during_ring = 0;
    while let Some(t) = acd.poll_timeout() {
        if t > ring_from + secs(19) {
            break;
        }
        acd.handle_timeout(t);
        during_ring += drain(&mut acd)
            .iter()
            .filter(|a| matches!(a, Act::WaitMessage { .. }))
            .count();
    }
    assert_eq!(during_ring, 0, "no message while ringing");
    // The caller leaves: no timer of theirs is left behind.
    assert!(acd.abandon(ring_from + secs(19), CallId(1)));
    drain(&mut acd);
    let left = acd.poll_timeout();
    assert!(
        left.is_none() || !acd.is_queued(CallId(1)),
        "timers of a gone caller do nothing"
    );
    if let Some(t) = left {
        acd.handle_timeout(t + secs(3600));
        assert!(!drain(&mut acd)
            .iter()
            .any(|a| matches!(a, Act::WaitMessage { .. })));
    }
}

#[test]
fn announcements_repeat_with_estimates_and_errors_are_measured() {
    let mut q = QueueConfig::new("q");
    q.handle_time_prior = secs(120);
    q.wrap_up = Duration::ZERO;
    let mut acd = Setup::queue(q).agent("a", &[(Language::Nb, 5)]).start();
    let t0 = acd.t0;
    acd.ring(t0, 1, Language::Nb, "a");
    acd.answer(t0, 1, "a");
    drain(&mut acd);
    // Agent on a call for 20 s of an expected 120: next caller hears 100 s.
    join(&mut acd, t0 + secs(20), 2, Language::Nb);
    let acts = drain(&mut acd);
    assert!(acts.contains(&Act::Announce {
        call: CallId(2),
        position: 1,
        estimated_wait: Some(secs(100)),
        waited: Duration::ZERO,
        first: true
    }));
    let acts = acd.tick(t0 + secs(80));
    assert!(acts.contains(&Act::Announce {
        call: CallId(2),
        position: 1,
        estimated_wait: Some(secs(40)),
        waited: secs(60),
        first: false
    }));
    // The call ends at 130: caller 2 waited 110 s against 100 promised.
    acd.call_ended(t0 + secs(130), CallId(1)).expect("answered");
    acd.answer(t0 + secs(130), 2, "a");
    let acts = drain(&mut acd);
    let prediction = acts.iter().find_map(|x| match x {
        Act::CallLeft {
            call: CallId(2),
            prediction,
            ..
        } => *prediction,
        _ => None,
    });
    assert_eq!(
        prediction,
        Some(PredictionError {
            predicted: secs(100),
            actual: secs(110)
        })
    );
    let stats = acd.queue_stats(t0 + secs(130));
    assert_eq!(stats[0].prediction_errors.count, 2);
}

#[test]
fn a_state_asked_for_during_a_call_or_wrap_up_is_reported_as_pending() {
    let mut acd = Setup::new()
        .with_agent(agent_with_wrap_up("a", &[(Language::Pl, 5)], secs(30)))
        .start();
    let t0 = acd.t0;
    let a = AgentId::from("a");
    let lunch = RequestedState::Paused {
        reason: "lunch".into(),
    };
    let pending_changes = |acts: &[Act]| -> Vec<(&'static str, Option<&'static str>)> {
        acts.iter()
            .filter_map(|x| match x {
                Act::AgentStateChanged {
                    state,
                    pending,
                    entered: false,
                    ..
                } => Some((state.label(), pending.as_ref().map(|p| p.label()))),
                _ => None,
            })
            .collect()
    };
    acd.ring(t0, 1, Language::Pl, "a");
    acd.answer(t0 + secs(1), 1, "a");
    drain(&mut acd);

    // On the call: the pause waits, and says so; taken back, it says so too.
    acd.agent_state(t0 + secs(2), &a, lunch.clone())
        .expect("known");
    assert_eq!(
        pending_changes(&drain(&mut acd)),
        [("on_call", Some("paused"))]
    );
    assert_eq!(acd.agent_pending_of(&a), Some(lunch.clone()));
    ready(&mut acd, t0 + secs(3), "a");
    assert_eq!(pending_changes(&drain(&mut acd)), [("on_call", None)]);
    assert_eq!(acd.agent_pending_of(&a), None);

    // Asked for again, then the call ends: wrap-up, with the pause to follow.
    acd.agent_state(t0 + secs(4), &a, lunch.clone())
        .expect("known");
    drain(&mut acd);
    acd.call_ended(t0 + secs(10), CallId(1)).expect("answered");
    let acts = drain(&mut acd);
    assert!(acts.contains(&Act::AgentStateChanged {
        agent: a.clone(),
        state: AgentState::WrapUp {
            until: t0 + secs(40)
        },
        pending: Some(lunch.clone()),
        entered: true,
    }));
    assert_eq!(acd.agents()[0].pending, Some(lunch.clone()));
    // Asking for the same pause again changes nothing.
    acd.agent_state(t0 + secs(11), &a, lunch.clone())
        .expect("known");
    assert!(pending_changes(&drain(&mut acd)).is_empty());

    // Wrap-up over: paused, nothing pending.
    assert!(acd.tick(t0 + secs(40)).contains(&Act::AgentStateChanged {
        agent: a.clone(),
        state: AgentState::Paused {
            reason: "lunch".into()
        },
        pending: None,
        entered: true,
    }));
    assert_eq!(acd.agent_pending_of(&a), None);
}

#[test]
fn join_estimates_cover_every_language_a_queue_takes() {
    let mut q = english_fallback();
    q.languages = vec![Language::Pl, Language::En, Language::Lt];
    q.handle_time_prior = secs(120);
    let mut acd = Setup::queue(q)
        .agent("piotr", &[(Language::Pl, 10), (Language::En, 6)])
        .agent("emma", &[(Language::En, 10)])
        .start();
    let t0 = acd.t0;
    let estimates = |acd: &Engine, now: Instant| -> Vec<(Language, Option<Duration>)> {
        acd.join_estimates(now, "q")
    };
    // Nobody serving: no estimate for any language the queue takes.
    assert_eq!(
        estimates(&acd, t0),
        [
            (Language::En, None),
            (Language::Pl, None),
            (Language::Lt, None)
        ]
    );
    assert!(acd.join_estimates(t0, "no such queue").is_empty());

    // Piotr ready: Polish and English callers would be taken at once, and a
    // Lithuanian caller falls back to English and is taken too.
    ready(&mut acd, t0, "piotr");
    let zero = Some(Duration::ZERO);
    assert_eq!(
        estimates(&acd, t0),
        [
            (Language::En, zero),
            (Language::Pl, zero),
            (Language::Lt, zero)
        ]
    );

    // Piotr on a call for 20 s: the next Polish caller waits the rest of a
    // mean call (100 s); Emma, ready, takes English callers at once.
    join(&mut acd, t0, 1, Language::Pl);
    acd.answer(t0, 1, "piotr");
    ready(&mut acd, t0, "emma");
    assert_eq!(
        estimates(&acd, t0 + secs(20)),
        [
            (Language::En, zero),
            (Language::Pl, Some(secs(100))),
            (Language::Lt, zero)
        ]
    );
}

#[test]
fn logging_out_during_a_call_is_deferred_and_reload_removes_agents() {
    let mut acd = Setup::new()
        .agents(&["a", "b"], &[(Language::Nb, 5)])
        .start();
    let t0 = acd.t0;
    acd.ring(t0, 1, Language::Nb, "a");
    // Reload without `a` while it rings: offer withdrawn, never offered again.
    let dir =
        AgentDirectory::new("hotline", vec![agent("b", &[(Language::Nb, 5)])]).expect("unique");
    acd.set_agents(t0 + secs(1), dir);
    let acts = drain(&mut acd);
    assert!(acts.contains(&Act::CancelOffer {
        call: CallId(1),
        agent: AgentId::from("a"),
        reason: crate::acd::CancelReason::AgentUnavailable
    }));
    assert_eq!(
        acd.agent_state(t0 + secs(2), &AgentId::from("a"), RequestedState::Ready),
        Err(QueueError::UnknownAgent)
    );
    assert_eq!(acd.agents().len(), 1);
}

// ----- invariants over random event sequences -----

use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Event {
    Join {
        language: usize,
        priority: u8,
    },
    Abandon {
        pick: usize,
    },
    Leave {
        pick: usize,
    },
    SetState {
        agent: usize,
        state: u8,
    },
    Result {
        pick: usize,
        result: u8,
    },
    End {
        pick: usize,
    },
    Advance {
        secs: u64,
    },
    /// An answer to an offer that is no longer live (withdrawn, failed,
    /// answered): refused.
    StaleAnswer {
        pick: usize,
    },
}

const LANGS: [Language; 3] = [Language::Nb, Language::En, Language::Pl];

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (0..3usize, 0..3u8)
            .prop_map(|(language, priority)| Event::Join { language, priority }),
        1 => (0..64usize).prop_map(|pick| Event::Abandon { pick }),
        1 => (0..64usize).prop_map(|pick| Event::Leave { pick }),
        3 => (0..5usize, 0..4u8).prop_map(|(agent, state)| Event::SetState { agent, state }),
        3 => (0..8usize, 0..4u8).prop_map(|(pick, result)| Event::Result { pick, result }),
        2 => (0..8usize).prop_map(|pick| Event::End { pick }),
        3 => (0..40u64).prop_map(|secs| Event::Advance { secs }),
        1 => (0..16usize).prop_map(|pick| Event::StaleAnswer { pick }),
    ]
}

/// What the test (playing the SIP side) believes, checked against every action.
#[derive(Default)]
struct Model {
    /// call → agent it rings.
    ringing: HashMap<CallId, AgentId>,
    /// agent → call it talks on.
    talking: HashMap<AgentId, CallId>,
    /// Agents whose last confirmed request was pause or log-out.
    unavailable: HashSet<AgentId>,
    /// Calls in queue: call → (language, priority, join seq).
    queued: HashMap<CallId, (Language, u8, u64)>,
    left: HashMap<CallId, u32>,
    joined: HashSet<CallId>,
    seq: u64,
}

impl Model {
    fn observe(&mut self, action: &Act) -> Result<(), TestCaseError> {
        match action {
            Act::Offer { call, agent, .. } => {
                prop_assert!(!self.ringing.contains_key(call), "{call:?} offered twice");
                prop_assert!(
                    !self.ringing.values().any(|a| a == agent),
                    "{agent} rung for two calls"
                );
                prop_assert!(
                    !self.talking.contains_key(agent),
                    "{agent} offered while on a call"
                );
                prop_assert!(
                    !self.unavailable.contains(agent),
                    "{agent} offered after pause"
                );
                prop_assert!(
                    self.queued.contains_key(call),
                    "{call:?} offered but not queued"
                );
                // No starvation: no earlier caller of the same line and
                // priority is waiting unoffered.
                let (lang, prio, seq) = self.queued[call];
                let skipped = self.queued.iter().any(|(c, (l, p, s))| {
                    *l == lang && *p == prio && *s < seq && !self.ringing.contains_key(c)
                });
                prop_assert!(!skipped, "{call:?} overtook an earlier caller");
                self.ringing.insert(*call, agent.clone());
            }
            Act::CancelOffer { call, agent, .. } => {
                let rung = self.ringing.remove(call);
                prop_assert_eq!(rung.as_ref(), Some(agent));
            }
            Act::CallLeft { call, outcome, .. } => {
                prop_assert!(self.queued.remove(call).is_some(), "{call:?} left twice");
                prop_assert!(
                    !self.ringing.contains_key(call),
                    "{call:?} left while ringing"
                );
                *self.left.entry(*call).or_default() += 1;
                let _ = outcome;
            }
            _ => {}
        }
        Ok(())
    }
}

fn run(events: Vec<Event>, pause_on_no_answer: bool, fallback: bool) -> Result<(), TestCaseError> {
    let mut q = QueueConfig::new("q");
    q.max_length = 12;
    q.max_wait = secs(200);
    q.ring_timeout = secs(15);
    q.wrap_up = secs(5);
    q.pause_on_no_answer = pause_on_no_answer;
    q.announce_interval = secs(30);
    q.escalation = vec![EscalationTier {
        after: secs(45),
        add_languages: vec![Language::En],
        min_proficiency: 1,
    }];
    q.min_proficiency = 3;
    if fallback {
        q.no_agents = NoAgentsPolicy::Fallback(Language::En);
    }
    let agents = vec![
        agent("a0", &[(Language::Nb, 8), (Language::En, 5)]),
        agent("a1", &[(Language::En, 9)]),
        agent("a2", &[(Language::Pl, 2), (Language::En, 3)]),
        agent("a3", &[(Language::Nb, 3)]),
        agent("a4", &[(Language::Pl, 9), (Language::Nb, 9)]),
    ];
    let ids: Vec<AgentId> = agents.iter().map(|a| a.id.clone()).collect();
    let mut acd = Setup::queue(q).with_agents(agents).start();
    let t0 = acd.t0;
    let mut model = Model::default();
    let mut now = t0;
    let observe = |acd: &mut Engine, model: &mut Model| -> Result<(), TestCaseError> {
        for a in drain(acd) {
            model.observe(&a)?;
        }
        Ok(())
    };
    for ev in events {
        match ev {
            Event::Join { language, priority } => {
                // Call ids are never reused by the call layer.
                model.seq += 1;
                let call = CallId(model.seq);
                let lang = LANGS[language % LANGS.len()];
                // Recorded before the call, as the offer may come at once.
                model.queued.insert(call, (lang, priority, model.seq));
                let result = acd.join(
                    now,
                    call,
                    "q",
                    lang,
                    JoinOptions {
                        priority,
                        ..JoinOptions::default()
                    },
                );
                if let JoinResult::Joined { .. } = result {
                    model.joined.insert(call);
                } else {
                    model.queued.remove(&call);
                }
            }
            Event::Abandon { pick } => {
                let call = CallId(1 + (pick as u64) % model.seq.max(1));
                let queued = model.queued.contains_key(&call);
                prop_assert_eq!(acd.abandon(now, call), queued);
            }
            Event::Leave { pick } => {
                let call = CallId(1 + (pick as u64) % model.seq.max(1));
                let queued = model.queued.contains_key(&call);
                prop_assert_eq!(acd.leave(now, call), queued);
            }
            Event::SetState { agent, state } => {
                let id = &ids[agent % ids.len()];
                let requested = match state {
                    0 | 1 => RequestedState::Ready,
                    2 => RequestedState::Paused { reason: "p".into() },
                    _ => RequestedState::LoggedOut,
                };
                // The request is confirmed when it returns; offers made
                // while handling it come after.
                let effect = acd.agent_state(now, id, requested.clone());
                prop_assert!(effect.is_ok());
                if requested == RequestedState::Ready {
                    model.unavailable.remove(id);
                } else {
                    model.unavailable.insert(id.clone());
                }
            }
            Event::Result { pick, result } => {
                let mut ringing: Vec<(CallId, AgentId)> =
                    model.ringing.iter().map(|(c, a)| (*c, a.clone())).collect();
                ringing.sort();
                if let Some((call, agent)) = ringing.get(pick % ringing.len().max(1)).cloned() {
                    let r = match result {
                        0 | 1 => OfferResult::Answered,
                        2 => OfferResult::Rejected(486),
                        _ => OfferResult::Timeout,
                    };
                    model.ringing.remove(&call);
                    acd.offer_result(now, call, &agent, r)
                        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                    if r == OfferResult::Answered {
                        model.talking.insert(agent, call);
                    }
                }
            }
            Event::End { pick } => {
                let mut talking: Vec<(AgentId, CallId)> =
                    model.talking.iter().map(|(a, c)| (a.clone(), *c)).collect();
                talking.sort();
                if let Some((agent, call)) = talking.get(pick % talking.len().max(1)).cloned() {
                    model.talking.remove(&agent);
                    acd.call_ended(now, call)
                        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                }
            }
            Event::StaleAnswer { pick } => {
                let mut stale: Vec<(CallId, AgentId)> = acd
                    .offers
                    .keys()
                    .filter(|(call, agent)| model.ringing.get(call) != Some(agent))
                    .cloned()
                    .collect();
                stale.sort();
                if let Some((call, agent)) = stale.get(pick % stale.len().max(1)).cloned() {
                    prop_assert_eq!(
                        acd.offer_result(now, call, &agent, OfferResult::Answered),
                        Err(QueueError::NotOffered),
                        "a stale answer from {} for {:?} was taken",
                        agent,
                        call
                    );
                }
            }
            Event::Advance { secs: s } => {
                now += secs(s);
                while let Some(t) = acd.poll_timeout() {
                    if t > now {
                        break;
                    }
                    acd.handle_timeout(t);
                    observe(&mut acd, &mut model)?;
                }
            }
        }
        observe(&mut acd, &mut model)?;
    }
    // Let everything run out: no agent answers any more.
    for _ in 0..100 {
        let ringing: Vec<(CallId, AgentId)> =
            model.ringing.iter().map(|(c, a)| (*c, a.clone())).collect();
        for (call, agent) in ringing {
            model.ringing.remove(&call);
            acd.offer_result(now, call, &agent, OfferResult::Timeout)
                .map_err(|e| TestCaseError::fail(format!("{e}")))?;
            observe(&mut acd, &mut model)?;
        }
        now += secs(30);
        acd.handle_timeout(now);
        observe(&mut acd, &mut model)?;
    }
    prop_assert!(model.queued.is_empty(), "still queued: {:?}", model.queued);
    for call in &model.joined {
        prop_assert_eq!(
            model.left.get(call).copied(),
            Some(1),
            "{:?} left once",
            call
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn invariants_hold_over_random_events(
        events in proptest::collection::vec(event(), 0..150),
        pause in any::<bool>(),
        fallback in any::<bool>(),
    ) {
        run(events, pause, fallback)?;
    }
}

/// A place held for `held` (a caller confirming a callback) is passed over
/// and comes back, ahead of later joiners, when released.
#[test]
fn a_held_place_is_passed_over_and_kept_until_released() {
    let mut acd = Setup::new().agent("a", &[(Language::Pl, 5)]).start();
    let t0 = acd.t0;
    join(&mut acd, t0, 1, Language::Pl);
    join(&mut acd, t0 + secs(1), 2, Language::Pl);
    let now = acd.at(t0 + secs(2));
    assert!(acd.engine.hold(now, &caller(CallId(1)), None));
    assert!(
        !acd.engine.hold(now, &caller(CallId(9)), None),
        "not queued"
    );
    drain(&mut acd);
    ready(&mut acd, t0 + secs(3), "a");
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(2), "a".to_string())]);
    acd.answer(t0 + secs(4), 2, "a");
    join(&mut acd, t0 + secs(5), 3, Language::Pl);
    acd.call_ended(t0 + secs(30), CallId(2)).expect("answered");
    // Released before the agent is free again: first in line.
    let now = acd.at(t0 + secs(31));
    assert!(acd.engine.hold(now, &caller(CallId(1)), Some(now.wall)));
    acd.handle_timeout(t0 + secs(41));
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(1), "a".to_string())]);
}

/// Holding a caller an agent's phone rings for withdraws the offer; a hold
/// with a time ends by itself.
#[test]
fn a_hold_withdraws_the_ringing_offer_and_ends_at_its_time() {
    let mut acd = Setup::new().agent("a", &[(Language::Pl, 5)]).start();
    let t0 = acd.t0;
    ready(&mut acd, t0, "a");
    join(&mut acd, t0 + secs(1), 1, Language::Pl);
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(1), "a".to_string())]);
    let now = acd.at(t0 + secs(2));
    let until = now.wall + chrono::Duration::seconds(60);
    assert!(acd.engine.hold(now, &caller(CallId(1)), Some(until)));
    let acts = drain(&mut acd);
    assert!(acts.iter().any(|a| matches!(
        a,
        Act::CancelOffer {
            call: CallId(1),
            reason: CancelReason::CallerLeft,
            ..
        }
    )));
    assert!(offers(&acts).is_empty(), "held: not offered again");
    acd.handle_timeout(t0 + secs(30));
    assert!(offers(&drain(&mut acd)).is_empty());
    acd.handle_timeout(t0 + secs(62));
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(1), "a".to_string())]);
}

/// A callback is told nothing more, outlives the queue's maximum wait and
/// its agents logging out, and is offered before callers who joined later.
#[test]
fn a_callback_keeps_its_place_silently_until_its_own_deadline() {
    let mut q = QueueConfig::new("q");
    q.max_wait = secs(60);
    q.announce_interval = secs(10);
    q.no_agents = NoAgentsPolicy::Reject;
    let mut acd = Setup::queue(q).agent("a", &[(Language::Pl, 5)]).start();
    let t0 = acd.t0;
    ready(&mut acd, t0, "a");
    acd.agent_state(
        t0,
        &AgentId::from("a"),
        RequestedState::Paused {
            reason: "break".into(),
        },
    )
    .expect("known");
    join(&mut acd, t0 + secs(1), 1, Language::Pl);
    let now = acd.at(t0 + secs(2));
    // Held while the caller confirms; booking ends the hold.
    assert!(acd.engine.hold(now, &caller(CallId(1)), None));
    let until = now.wall + chrono::Duration::seconds(3_600);
    let place = CallbackPlace {
        until,
        held: PlaceHeld::No,
        ticket: String::new(),
    };
    assert!(acd.engine.keep_for_callback(now, &caller(CallId(1)), place));
    drain(&mut acd);
    // The agent logs out: a waiting caller under `reject` would be taken out.
    acd.agent_state(t0 + secs(3), &AgentId::from("a"), RequestedState::LoggedOut)
        .expect("known");
    acd.handle_timeout(t0 + secs(600));
    let acts = drain(&mut acd);
    assert!(
        !acts.iter().any(|a| matches!(
            a,
            Act::Announce { .. } | Act::QueueTimeout { .. } | Act::NoAgents { .. }
        )),
        "a callback hears nothing and stays: {acts:?}"
    );
    assert!(acd.engine.is_queued(&caller(CallId(1))));
    join(&mut acd, t0 + secs(601), 2, Language::Pl);
    ready(&mut acd, t0 + secs(602), "a");
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(1), "a".to_string())]);
    // Its own deadline ends it.
    acd.reject(t0 + secs(603), 1, "a", 486);
    acd.pause(t0 + secs(603), "a", "break");
    acd.handle_timeout(t0 + secs(3_603));
    let acts = drain(&mut acd);
    assert!(
        acts.iter()
            .any(|a| matches!(a, Act::QueueTimeout { call: CallId(1) })),
        "{acts:?}"
    );
}

/// A callback taken back after an attempt joins silent and held until its
/// retry time, in its original place: no agent's phone rings for it early,
/// and at the retry time it comes before a caller who joined later.
#[test]
fn a_callback_joins_back_held_until_its_retry_time_in_its_place() {
    let mut acd = Setup::new()
        .agent("a", &[(Language::Pl, 5)])
        .agent("b", &[(Language::Pl, 5)])
        .start();
    let t0 = acd.t0;
    join(&mut acd, t0 + secs(10), 2, Language::Pl);
    join(&mut acd, t0 + secs(11), 3, Language::Pl);
    drain(&mut acd);
    let now = acd.at(t0 + secs(20));
    acd.engine.join(
        now,
        JoinRequest {
            caller: caller(CallId(1)),
            queue: "q".to_string(),
            language: Language::Pl,
            options: JoinOptions::default(),
            joined_at: now.wall - chrono::Duration::seconds(20),
            number: "4790000001".to_string(),
            callback: Some(CallbackPlace {
                until: now.wall + chrono::Duration::seconds(3_600),
                held: PlaceHeld::Until(now.wall + chrono::Duration::seconds(30)),
                ticket: "{}".to_string(),
            }),
        },
    );
    let acts = drain(&mut acd);
    assert!(
        !acts.iter().any(|a| matches!(
            a,
            Act::Announce {
                call: CallId(1),
                ..
            }
        )),
        "a callback hears nothing: {acts:?}"
    );
    // Held: the next caller is offered instead.
    ready(&mut acd, t0 + secs(21), "a");
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(2), "a".to_string())]);
    acd.answer(t0 + secs(22), 2, "a");
    // At its retry time it comes back first in line, before caller 3.
    acd.handle_timeout(t0 + secs(51));
    drain(&mut acd);
    ready(&mut acd, t0 + secs(52), "b");
    assert_eq!(offers(&drain(&mut acd)), vec![(CallId(1), "b".to_string())]);
}
