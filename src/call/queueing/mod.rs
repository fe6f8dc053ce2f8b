//! Callers waiting for an agent, and the agent legs that connect them: the glue
//! between the flow's `queue` step, the queue engine (through
//! [`QueueService`]), the SIP legs we place to agents' softphones and the
//! media bridge.
//!
//! - `mod.rs` drives the queue: joining, the engine's actions, offers and
//!   agent legs, leaving;
//! - `announce.rs` says what a waiting caller hears: position and wait,
//!   long-wait messages, escalation and fallback prompts;
//! - `observe.rs` reports it: the queue log, counts, live events, the figures
//!   flows branch on, and the API's view of queues.
//!
//! One agent leg per caller at a time (the engine never offers a caller to two
//! agents at once); its media is keyed by the caller's id with the top bit set.

mod announce;
mod observe;

pub use observe::{QueueSummary, AGENT_STATES};

use super::{CallManager, LocalEnd, MediaControl, Stage};
use crate::acd::{
    AgentId, CancelReason, JoinOptions, JoinRequest, Leave, MessageTiming, NotJoined, OfferResult,
    QueueAction, QueueService,
};
use crate::cdr::queue_event as qe;
use crate::events::LiveEvent;
use crate::flow::{FlowEvent, QueueOptions};
use crate::ids::{CallId, CallerId, OfferId};
use crate::language::Language;
use crate::media::Codec;
use crate::sdp;
use crate::sip::{EndReason, LegKey, OutboundInvite, Transport};
use crate::time::Now;
use std::net::SocketAddr;
use std::time::Instant;

/// Marks the media stream of a caller's agent leg.
pub(super) const AGENT_LEG_BIT: u64 = 1 << 63;

pub(super) fn agent_media_key(call: CallId) -> CallId {
    CallId(call.0 | AGENT_LEG_BIT)
}

/// What a leg we place offers: the caller's codec first, so that no
/// transcoding is needed when the other phone speaks it, then the other.
pub(super) fn codecs_for_leg(callers: Codec) -> [Codec; 2] {
    let other = if callers == Codec::Pcmu {
        Codec::Pcma
    } else {
        Codec::Pcmu
    };
    [callers, other]
}

/// A caller in a queue.
#[derive(Debug, Clone)]
pub(super) struct Queued {
    pub queue: String,
    /// The caller's language: their line in the queue, and what they hear.
    pub language: Language,
    pub joined_at: Instant,
    /// Prompt ids of each wait message, by `QueueAction::WaitMessage::index`.
    pub messages: Vec<Vec<String>>,
    /// Place in the line when the caller hung up, for the queue log.
    pub position_at_exit: Option<usize>,
    /// The index of `QueueAction::WaitMessage` that is the callback offer.
    pub callback_message: Option<usize>,
    /// The wait last announced to the caller (the callback offer's test).
    pub last_estimate: Option<std::time::Duration>,
}

/// A join asked of the queue engine and not answered yet.
#[derive(Debug, Clone)]
pub(super) struct Joining {
    pub queue: String,
    pub language: Language,
    pub messages: Vec<Vec<String>>,
    pub callback_message: Option<usize>,
}

/// An offer to carry out, as the engine made it.
struct Offered {
    offer: OfferId,
    agent: AgentId,
    queue: String,
    language: Language,
    contact: Option<crate::registrar::PhoneContact>,
}

/// A leg we placed to an agent for a caller.
#[derive(Debug, Clone)]
pub(super) struct AgentLeg {
    pub call: CallId,
    pub agent: AgentId,
    pub queue: String,
    /// The offer this leg carries out: its result names it.
    pub offer: OfferId,
    /// Withdrawn by the engine (ring timeout, pause, caller gone): whatever
    /// the agent's phone does now, the leg is only torn down.
    pub cancelled: bool,
    pub answered: bool,
    pub offered_codecs: [Codec; 2],
    /// The agent's answer, waiting for the engine's verdict.
    pub answer: Option<crate::media::StreamParams>,
    /// Our RTP port for this leg (re-answers name it again).
    pub local_port: u16,
    pub sdp_version: u64,
}

impl<M: MediaControl, Q: QueueService> CallManager<M, Q> {
    /// How the queue engine names this node's call.
    pub(super) fn caller_id(&self, key: CallId) -> CallerId {
        CallerId::new(&self.node, key)
    }

    /// This node's call an action is about (the engine may know callers of
    /// other nodes; those are not ours to serve).
    fn own_call(&self, caller: &CallerId) -> Option<CallId> {
        (caller.node == self.node).then_some(caller.call)
    }

    /// The flow asked to queue the caller.
    pub(super) fn join_queue(
        &mut self,
        now: Now,
        key: CallId,
        queue: &str,
        options: &QueueOptions,
    ) {
        if self.resume_held_place(now, key) {
            return;
        }
        let number = match self.calls.get(&key) {
            Some(call) => call.info.from_user.clone(),
            None => return,
        };
        // The callback offer is one more wait message, when a trunk could
        // call this caller back.
        let offer = self
            .calls
            .get(&key)
            .and_then(|c| c.flow.callback_offer().cloned())
            .filter(|_| self.callbacks_possible(&number));
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let language = options
            .language
            .or_else(|| call.flow.language())
            .unwrap_or(call.bundle.flows.default_language);
        let mut messages: Vec<MessageTiming> = options
            .messages
            .iter()
            .map(|m| MessageTiming {
                after: m.after,
                every: m.every,
            })
            .collect();
        let callback_message = offer.map(|o| {
            messages.push(MessageTiming {
                after: o.after,
                every: o.every,
            });
            messages.len() - 1
        });
        let join = JoinOptions {
            priority: options.priority.clamp(0, 255) as u8,
            no_agents: None,
            max_wait: options.max_wait,
            announce_every: options.announce_every,
            messages,
        };
        call.last_queue = Some((queue.to_string(), options.clone()));
        call.joining = Some(Joining {
            queue: queue.to_string(),
            language,
            messages: options.messages.iter().map(|m| m.prompts.clone()).collect(),
            callback_message,
        });
        let request = JoinRequest {
            caller: self.caller_id(key),
            queue: queue.to_string(),
            language,
            options: join,
            joined_at: now.wall,
            number,
            callback: None,
        };
        self.queue.join(now, request);
        self.drain_queue(now);
    }

    /// The engine queued the caller: music, and the queue stage.
    fn joined(&mut self, now: Now, key: CallId, language: Language) {
        let Some(joining) = self.calls.get_mut(&key).and_then(|c| c.joining.take()) else {
            return;
        };
        let queue = joining.queue;
        tracing::info!(call = key.0, queue = %queue, language = language.code(), "queued");
        let joined = self.queue_event(now, key, qe::JOINED, &queue, language);
        self.log_queue(joined);
        self.set_stage(key, Stage::Queue);
        if let Some(call) = self.calls.get_mut(&key) {
            call.queued = Some(Queued {
                queue: queue.clone(),
                language,
                joined_at: now.mono,
                messages: joining.messages,
                position_at_exit: None,
                callback_message: joining.callback_message,
                last_estimate: None,
            });
            call.queue_name = Some(queue.clone());
            call.queued_at = Some(now.mono);
            let music = call.bundle.prompts.hold_music();
            self.media.play_music(key, music);
        }
        self.emit_live(LiveEvent::Queued {
            at: now.unix_seconds(),
            call: key.0,
            queue,
            language: Some(language),
        });
    }

    /// The engine did not queue the caller: the flow takes its exit.
    fn not_joined(&mut self, now: Now, key: CallId, reason: NotJoined) {
        let Some(joining) = self.calls.get_mut(&key).and_then(|c| c.joining.take()) else {
            return;
        };
        tracing::info!(call = key.0, queue = %joining.queue, language = joining.language.code(),
            reason = reason.label(), "not queued");
        if reason != NotJoined::AlreadyQueued {
            let mut e = self.queue_event(now, key, qe::EXITED, &joining.queue, joining.language);
            e.reason = Some(reason.label().to_string());
            self.log_queue(e);
        }
        let event = match reason {
            NotJoined::Full => FlowEvent::QueueFull,
            NotJoined::AlreadyQueued => return,
            NotJoined::NoAgents | NotJoined::UnknownQueue | NotJoined::LanguageNotServed => {
                FlowEvent::QueueNoAgents
            }
        };
        self.leave_queue_to_flow(now, key, event);
    }

    /// Carries out what the queue engine asked for.
    pub(super) fn drain_queue(&mut self, now: Now) {
        while let Some(action) = self.queue.poll_action() {
            if let QueueAction::AgentStateChanged {
                agent,
                state,
                pending,
                entered,
            } = action
            {
                self.agent_state_changed(now, &agent, &state, pending.as_ref(), entered);
                continue;
            }
            if let QueueAction::AdoptCallback { ticket } = &action {
                self.adopt_callback(now, ticket);
                continue;
            }
            let Some(key) = action.caller().and_then(|c| self.own_call(c)) else {
                tracing::debug!(?action, "queue action for another node's caller");
                continue;
            };
            if self.is_callback(key) {
                match action {
                    // Silent and held as it should be, from the join on.
                    QueueAction::Joined { .. } => continue,
                    QueueAction::NotJoined { reason, .. } => {
                        self.callback_not_rejoined(now, key, reason.label());
                        continue;
                    }
                    QueueAction::QueueTimeout { .. } | QueueAction::NoAgents { .. } => {
                        self.callback_expired(now, key);
                        continue;
                    }
                    QueueAction::CallLeft(exit) => {
                        self.callback_left(now, key, &exit);
                        continue;
                    }
                    QueueAction::Announce { .. }
                    | QueueAction::WaitMessage { .. }
                    | QueueAction::Escalated { .. }
                    | QueueAction::LanguageFallback { .. } => continue,
                    // Offers, verdicts and withdrawals as for any caller.
                    _ => {}
                }
            }
            match action {
                QueueAction::Joined { language, .. } => self.joined(now, key, language),
                QueueAction::NotJoined { reason, .. } => self.not_joined(now, key, reason),
                QueueAction::Offer {
                    offer,
                    agent,
                    queue,
                    language,
                    contact,
                    ..
                } => self.offer(
                    now,
                    key,
                    Offered {
                        offer,
                        agent,
                        queue,
                        language,
                        contact,
                    },
                ),
                QueueAction::Verdict {
                    offer, accepted, ..
                } => self.verdict(now, key, offer, accepted),
                QueueAction::CancelOffer { agent, reason, .. } => {
                    if let Some(leg) = self.leg_of(key) {
                        tracing::info!(call = key.0, agent = %agent.as_str(), ?reason, "offer withdrawn");
                        self.log_withdrawn(now, key, leg, reason);
                        self.drop_agent_leg(now, leg);
                    }
                }
                QueueAction::Announce {
                    position,
                    estimated_wait,
                    first,
                    ..
                } => {
                    if let Some(q) = self.calls.get_mut(&key).and_then(|c| c.queued.as_mut()) {
                        q.last_estimate = estimated_wait;
                    }
                    self.announce(key, position, estimated_wait, first)
                }
                QueueAction::Escalated { tier, .. } => self.escalated(now, key, tier),
                QueueAction::LanguageFallback { language, .. } => {
                    self.fell_back(now, key, language)
                }
                QueueAction::WaitMessage { index, .. } => {
                    let callback = self
                        .calls
                        .get(&key)
                        .and_then(|c| c.queued.as_ref())
                        .and_then(|q| q.callback_message);
                    if callback == Some(index) {
                        self.offer_callback(now, key);
                    } else {
                        self.wait_message(key, index)
                    }
                }
                QueueAction::QueueTimeout { .. } => {
                    self.leave_queue_to_flow(now, key, FlowEvent::QueueTimeout)
                }
                QueueAction::NoAgents { .. } => {
                    self.leave_queue_to_flow(now, key, FlowEvent::QueueNoAgents)
                }
                QueueAction::CallLeft(exit) => self.record_left(now, key, &exit),
                QueueAction::AgentStateChanged { .. } | QueueAction::AdoptCallback { .. } => {}
            }
        }
        self.refresh_flow_env(now);
    }

    /// Tells the engine how an offer ended; a refused result (the offer was
    /// withdrawn meanwhile) is only logged.
    fn report_offer(&mut self, now: Now, key: CallId, offer: OfferId, result: OfferResult) {
        let caller = self.caller_id(key);
        if let Err(e) = self.queue.offer_result(now, &caller, offer, result) {
            tracing::debug!(call = key.0, offer = offer.0, error = %e, "offer result refused");
        }
    }

    /// Rings an agent for a caller: a media port for the agent leg, our offer,
    /// and an INVITE to where the agent's phone registered from.
    fn offer(&mut self, now: Now, key: CallId, offered: Offered) {
        let Offered {
            offer,
            agent,
            queue,
            language,
            contact,
        } = offered;
        let details = match self.calls.get(&key) {
            Some(call) => Some((call.codec, call.info.from_user.clone(), false)),
            None => self
                .callback_offer_details(key)
                .map(|(codec, number)| (codec, number, true)),
        };
        let Some((codec, caller, callback)) = details else {
            self.report_offer(now, key, offer, OfferResult::Rejected(481));
            return;
        };
        let Some(binding) = self.phone_contact(now, &agent).or(contact) else {
            tracing::info!(call = key.0, agent = %agent.as_str(), "agent has no registered phone");
            self.log_offer_failed(now, key, &agent, &queue, language, 480);
            self.report_offer(now, key, offer, OfferResult::Rejected(480));
            return;
        };
        let media_key = agent_media_key(key);
        let port = match self.media.open_pending(media_key) {
            Ok(port) => port,
            Err(e) => {
                tracing::warn!(call = key.0, error = %e, "no media for the agent leg");
                self.log_offer_failed(now, key, &agent, &queue, language, 503);
                self.report_offer(now, key, offer, OfferResult::Rejected(503));
                return;
            }
        };
        let offered_codecs = codecs_for_leg(codec);
        let sdp_offer = sdp::offer(
            self.media_ip,
            port,
            media_key.0 & !AGENT_LEG_BIT,
            1,
            &offered_codecs,
            Some(101),
        );
        let to_user = self
            .agents
            .get(&agent)
            .map(|a| a.sip_username.clone())
            .unwrap_or_else(|| agent.as_str().to_string());
        let transport = if binding.tcp {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let leg = self.endpoint.invite(
            now.mono,
            OutboundInvite {
                request_uri: binding.uri.clone(),
                destination: ring_destination(&binding.uri, binding.source),
                transport,
                from_user: caller.clone(),
                from_display: Some(if callback {
                    format!("callback {caller} ({})", language.code())
                } else {
                    format!("{caller} ({})", language.code())
                }),
                to_user,
                headers: {
                    let mut headers = vec![
                        (
                            "X-Hotline-Language".to_string(),
                            language.code().to_string(),
                        ),
                        ("X-Hotline-Queue".to_string(), queue.clone()),
                    ];
                    if callback {
                        headers.push(("X-Hotline-Callback".to_string(), caller.clone()));
                    }
                    headers
                },
                sdp: sdp_offer,
                credentials: None,
                to_uri: None,
            },
        );
        tracing::info!(call = key.0, agent = %agent.as_str(), leg = leg.0, queue = %queue, language = language.code(), "offering to agent");
        let mut e = self.queue_event(now, key, qe::OFFERED, &queue, language);
        e.agent = Some(agent.as_str().to_string());
        self.log_queue(e);
        self.emit_live(LiveEvent::Offered {
            at: now.unix_seconds(),
            call: key.0,
            queue: queue.clone(),
            agent: agent.as_str().to_string(),
        });
        self.legs.insert(
            leg,
            AgentLeg {
                call: key,
                agent,
                queue,
                offer,
                cancelled: false,
                answered: false,
                offered_codecs,
                answer: None,
                local_port: port,
                sdp_version: 1,
            },
        );
        if let Some(call) = self.calls.get_mut(&key) {
            call.agent_leg = Some(leg);
        }
        if let Some(cb) = self.callbacks.get_mut(&key) {
            cb.agent_leg = Some(leg);
        }
    }

    fn leg_of(&self, key: CallId) -> Option<LegKey> {
        self.calls
            .get(&key)
            .and_then(|c| c.agent_leg)
            .or_else(|| self.callbacks.get(&key).and_then(|c| c.agent_leg))
    }

    /// Forgets `leg` as the agent leg of `key`'s call or callback.
    fn clear_agent_leg(&mut self, key: CallId, leg: LegKey) {
        if let Some(call) = self.calls.get_mut(&key) {
            if call.agent_leg == Some(leg) {
                call.agent_leg = None;
            }
        }
        if let Some(cb) = self.callbacks.get_mut(&key) {
            if cb.agent_leg == Some(leg) {
                cb.agent_leg = None;
            }
        }
    }

    /// Tears down an agent leg whatever its state (CANCEL before the answer,
    /// BYE after) and releases its media. The leg's final SIP event is ignored.
    pub(super) fn drop_agent_leg(&mut self, now: Now, leg: LegKey) {
        let Some(info) = self.legs.get_mut(&leg) else {
            return;
        };
        if info.cancelled {
            return;
        }
        info.cancelled = true;
        let key = info.call;
        if info.answered {
            self.endpoint.hangup(now.mono, leg);
            self.media.unbridge(key);
        } else {
            self.endpoint.cancel(now.mono, leg);
        }
        self.media.close(agent_media_key(key));
        self.clear_agent_leg(key, leg);
    }

    /// Marks a leg torn down after its answer proved unusable or late.
    fn abandon_leg(&mut self, now: Now, leg: LegKey, key: CallId) {
        self.endpoint.hangup(now.mono, leg);
        self.media.close(agent_media_key(key));
        if let Some(l) = self.legs.get_mut(&leg) {
            l.cancelled = true;
        }
    }

    /// The agent's phone answered.
    pub(super) fn leg_answered(&mut self, now: Now, leg: LegKey, answer: Option<String>) {
        let Some(info) = self.legs.get(&leg).cloned() else {
            return;
        };
        if info.cancelled {
            self.endpoint.hangup(now.mono, leg);
            return;
        }
        let key = info.call;
        let negotiated = answer
            .as_deref()
            .map(|a| sdp::accept_answer(&info.offered_codecs, a));
        let params = match negotiated {
            Some(Ok(n)) => n.stream_params(),
            other => {
                tracing::warn!(call = key.0, leg = leg.0, error = ?other.map(|r| r.err()), "agent answer unusable");
                self.log_leg_failed(now, key, &info, 488);
                self.abandon_leg(now, leg, key);
                if let Some(call) = self.calls.get_mut(&key) {
                    call.agent_leg = None;
                }
                self.report_offer(now, key, info.offer, OfferResult::Rejected(488));
                self.drain_queue(now);
                return;
            }
        };
        if let Some(l) = self.legs.get_mut(&leg) {
            l.answer = Some(params);
        }
        // Bridged on the engine's verdict: the offer may have been withdrawn
        // meanwhile (fencing), and a shared engine decides in its store.
        let caller = self.caller_id(key);
        if let Err(e) = self
            .queue
            .offer_result(now, &caller, info.offer, OfferResult::Answered)
        {
            tracing::debug!(call = key.0, leg = leg.0, error = %e, "answer refused");
        }
        self.drain_queue(now);
    }

    /// The engine's word on an agent's answer: bridge, or hang the leg up.
    fn verdict(&mut self, now: Now, key: CallId, offer: OfferId, accepted: bool) {
        let found = self
            .legs
            .iter()
            .find(|(_, l)| l.call == key && l.offer == offer && l.answer.is_some())
            .map(|(leg, l)| (*leg, l.clone()));
        let Some((leg, info)) = found else {
            return;
        };
        let Some(params) = info.answer else {
            return;
        };
        if !accepted || info.cancelled {
            tracing::info!(call = key.0, leg = leg.0, "answer came too late: leg ended");
            self.abandon_leg(now, leg, key);
            return;
        }
        if let Some(l) = self.legs.get_mut(&leg) {
            l.answered = true;
            l.answer = None;
        }
        self.media.update(agent_media_key(key), params);
        if self.is_callback(key) {
            self.callback_agent_answered(now, key, info.agent.clone());
            return;
        }
        self.media.stop_music(key);
        self.media.bridge(key, agent_media_key(key));
        self.set_stage(key, Stage::Agent);
        if let Some(call) = self.calls.get_mut(&key) {
            let waited = call
                .queued
                .take()
                .map(|q| now.mono.saturating_duration_since(q.joined_at))
                .unwrap_or_default();
            call.connected_agent = Some(info.agent.clone());
            call.agent_released = false;
            call.connected_at = Some(now.mono);
            // The flow's queue step ends here: the call belongs to the agent.
            call.flow
                .handle_event(now.mono, FlowEvent::QueueAnswered, &self.env);
            self.emit_live(LiveEvent::Answered {
                at: now.unix_seconds(),
                call: key.0,
                queue: info.queue.clone(),
                agent: info.agent.as_str().to_string(),
                waited_seconds: waited.as_secs_f64(),
            });
        }
        tracing::info!(call = key.0, agent = %info.agent.as_str(), codec = params.codec.name(), "connected to agent");
    }

    /// The agent's phone re-INVITEs (hold, a new address): follow it.
    pub(super) fn leg_reoffer(&mut self, now: Now, leg: LegKey, offer: Option<String>) {
        let Some(info) = self.legs.get_mut(&leg) else {
            self.endpoint.answer_leg_reoffer(now.mono, leg, None);
            return;
        };
        let negotiated = offer.as_deref().map(sdp::negotiate_text);
        let Some(Ok(n)) = negotiated else {
            self.endpoint.answer_leg_reoffer(now.mono, leg, None);
            return;
        };
        info.sdp_version += 1;
        let media_key = agent_media_key(info.call);
        let answer = n.answer().render(
            self.media_ip,
            info.local_port,
            info.call.0,
            info.sdp_version,
        );
        self.media.update(media_key, n.stream_params());
        self.endpoint
            .answer_leg_reoffer(now.mono, leg, Some(&answer));
    }

    /// The agent's phone refused or never answered.
    pub(super) fn leg_failed(&mut self, now: Now, leg: LegKey, code: u16) {
        let Some(info) = self.legs.remove(&leg) else {
            return;
        };
        if info.cancelled {
            return;
        }
        let key = info.call;
        self.media.close(agent_media_key(key));
        self.clear_agent_leg(key, leg);
        let result = if code == 408 {
            OfferResult::Timeout
        } else {
            OfferResult::Rejected(code)
        };
        tracing::info!(call = key.0, agent = %info.agent.as_str(), code, "agent did not take the call");
        self.log_leg_failed(now, key, &info, code);
        self.report_offer(now, key, info.offer, result);
        self.drain_queue(now);
    }

    /// The agent leg ended after it was answered (the agent hung up, or it failed).
    pub(super) fn leg_ended(&mut self, now: Now, leg: LegKey, reason: EndReason) {
        let Some(info) = self.legs.remove(&leg) else {
            return;
        };
        if info.cancelled || !info.answered {
            if !info.cancelled {
                self.leg_failed_after_removal(now, &info);
            }
            return;
        }
        let key = info.call;
        tracing::info!(call = key.0, agent = %info.agent.as_str(), reason = ?reason, "agent leg ended");
        if self.is_callback(key) {
            self.clear_agent_leg(key, leg);
            self.callback_agent_hung_up(now, key);
            self.drain_queue(now);
            return;
        }
        self.media.unbridge(key);
        self.media.close(agent_media_key(key));
        if self.referring_agent_left(now, key) {
            self.drain_queue(now);
            return;
        }
        let caller = self.caller_id(key);
        let _ = self.queue.call_ended(now, &caller);
        if let Some(call) = self.calls.get_mut(&key) {
            call.agent_leg = None;
        }
        // The agent hung up: the call is done and was answered.
        let end = if reason == EndReason::RemoteBye {
            LocalEnd::Answered
        } else {
            LocalEnd::Failure
        };
        self.end_call_locally(now, key, end, "agent leg ended");
        self.drain_queue(now);
    }

    fn leg_failed_after_removal(&mut self, now: Now, info: &AgentLeg) {
        let key = info.call;
        self.log_leg_failed(now, key, info, 500);
        self.media.close(agent_media_key(key));
        if let Some(call) = self.calls.get_mut(&key) {
            call.agent_leg = None;
        }
        if let Some(cb) = self.callbacks.get_mut(&key) {
            cb.agent_leg = None;
        }
        self.report_offer(now, key, info.offer, OfferResult::Rejected(500));
        self.drain_queue(now);
    }

    /// The caller's call ends (either side): take it out of the queue or end
    /// the agent leg, so that nobody is left ringing or "on call".
    pub(super) fn caller_gone(&mut self, now: Now, key: CallId) {
        self.drop_trunk_leg(now, key);
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.callback_booked {
            // Hung up after booking a callback: the place stays in the queue.
            return;
        }
        let leg = call.agent_leg;
        let was_connected = call.connected_agent.is_some() && !call.agent_released;
        if let Some(leg) = leg {
            self.drop_agent_leg(now, leg);
            self.legs.remove(&leg);
        }
        let caller = self.caller_id(key);
        if was_connected {
            let _ = self.queue.call_ended(now, &caller);
        } else if self.queue.is_queued(&caller) {
            let position = self.queue.position(now, &caller);
            if let Some(q) = self.calls.get_mut(&key).and_then(|c| c.queued.as_mut()) {
                q.position_at_exit = position;
            }
            self.queue.leave(now, &caller, Leave::Abandoned);
        }
        self.drain_queue(now);
    }

    fn leave_queue_to_flow(&mut self, now: Now, key: CallId, event: FlowEvent) {
        self.media.stop_music(key);
        self.set_stage(key, Stage::Ivr);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.queued = None;
        if call.flow.end().is_some() {
            // Queued again after the flow ended (a transfer through the
            // API): no flow step goes on, so the call ends here.
            let end = match event {
                FlowEvent::QueueTimeout => LocalEnd::QueueTimedOut,
                _ => LocalEnd::Refused,
            };
            self.end_call_locally(now, key, end, "left the queue after the flow ended");
            return;
        }
        self.flow_event(now, key, event);
    }

    /// The caller leaves their queue or their agent without hanging up (a
    /// transfer): out of the line, or the agent's leg ended and the agent
    /// into wrap-up as after any call. The queue log says `transferred`.
    pub(super) fn step_out_of_queue(&mut self, now: Now, key: CallId, why: &str) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let leg = call.agent_leg;
        let agent = call.connected_agent.clone();
        let language = call
            .queued
            .as_ref()
            .map(|q| q.language)
            .or(call.flow.language())
            .unwrap_or(call.bundle.flows.default_language);
        let queue = call.queue_name.clone().unwrap_or_default();
        if let Some(leg) = leg {
            self.drop_agent_leg(now, leg);
            self.legs.remove(&leg);
        }
        let caller = self.caller_id(key);
        if agent.is_some() {
            let _ = self.queue.call_ended(now, &caller);
        } else if self.queue.is_queued(&caller) {
            self.queue.leave(now, &caller, Leave::Left);
        }
        let mut e = self.queue_event(now, key, qe::TRANSFERRED, &queue, language);
        e.agent = agent.map(|a| a.as_str().to_string());
        e.reason = Some(why.to_string());
        self.log_queue(e);
        self.media.stop_music(key);
        self.set_stage(key, Stage::Ivr);
        if let Some(call) = self.calls.get_mut(&key) {
            call.queued = None;
            call.agent_released = call.connected_agent.is_some();
        }
        self.drain_queue(now);
    }

    /// Where an agent's phone should be rung: for tests and the API.
    pub fn agent_contact(&self, now: Now, agent: &str) -> Option<SocketAddr> {
        self.registrar
            .contact_for(now.mono, &AgentId::from(agent))
            .map(|b| b.source)
    }

    /// The engine took an offer back. A caller who left is logged by its own
    /// event; a ring timeout is a `ring_noanswer` (408, as the phone would
    /// have said), an agent gone an `offer_failed` (487, the CANCEL).
    fn log_withdrawn(&mut self, now: Now, key: CallId, leg: LegKey, reason: CancelReason) {
        let Some(info) = self.legs.get(&leg).cloned() else {
            return;
        };
        if info.cancelled {
            return;
        }
        let code = match reason {
            CancelReason::CallerLeft => return,
            CancelReason::RingTimeout => 408,
            CancelReason::AgentUnavailable => 487,
        };
        self.log_leg_failed(now, key, &info, code);
    }
}

/// Where to send an INVITE for a registered contact. A phone behind NAT puts
/// an address in its Contact that cannot be reached, so the address its
/// REGISTER came from is used; when the Contact names that same host (no NAT),
/// its port is honoured, as a phone may register from one port and take calls
/// on another.
pub(super) fn ring_destination(contact_uri: &str, registered_from: SocketAddr) -> SocketAddr {
    let host_port = contact_uri
        .split_once(':')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .rsplit_once('@')
        .map(|(_, hp)| hp)
        .unwrap_or_else(|| contact_uri.split_once(':').map(|(_, r)| r).unwrap_or(""));
    let host_port = host_port.split(';').next().unwrap_or("");
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()),
        None => (host_port, Some(5060)),
    };
    match (host.parse::<std::net::IpAddr>(), port) {
        (Ok(ip), Some(port)) if ip == registered_from.ip() => SocketAddr::new(ip, port),
        _ => registered_from,
    }
}

#[cfg(test)]
mod tests {
    use super::ring_destination;

    #[test]
    fn contact_port_is_honoured_only_without_nat() {
        let from = "127.0.0.1:40000".parse().expect("addr");
        assert_eq!(
            ring_destination("sip:anna@127.0.0.1:40002", from),
            "127.0.0.1:40002".parse().expect("addr")
        );
        assert_eq!(
            ring_destination("sip:anna@127.0.0.1:40002;transport=udp", from),
            "127.0.0.1:40002".parse().expect("addr")
        );
        // Behind NAT: the Contact's private address is not reachable.
        assert_eq!(ring_destination("sip:anna@192.168.1.20:5060", from), from);
        assert_eq!(ring_destination("sip:anna@phone.example", from), from);
        assert_eq!(ring_destination("garbage", from), from);
    }
}
