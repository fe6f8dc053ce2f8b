//! Callers waiting for an agent, and the agent legs that connect them: the glue
//! between the flow's `queue` step, the ACD core, the SIP legs we place to
//! agents' softphones and the media bridge.
//!
//! One agent leg per caller at a time (the ACD never offers a caller to two
//! agents at once); its media is keyed by the caller's key with the top bit set.

use super::{CallManager, LocalEnd, MediaControl, Stage};
use crate::acd::{
    AcdAction, AgentId, AgentState, CallId, CancelReason, JoinOptions, JoinResult, LeaveOutcome,
    MessageTiming, OfferResult,
};
use crate::cdr::{queue_event as qe, QueueEvent};
use crate::events::LiveEvent;
use crate::flow::model::NoAgents;
use crate::flow::{FlowEvent, QueueOptions};
use crate::language::Language;
use crate::media::Codec;
use crate::sdp;
use crate::sip::{CallId, EndReason, LegKey, OutboundInvite, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Marks the media stream of a caller's agent leg.
pub(super) const AGENT_LEG_BIT: u64 = 1 << 63;

pub(super) fn agent_media_key(call: CallId) -> CallId {
    CallId(call.0 | AGENT_LEG_BIT)
}

/// Announcement play ids live in their own range so that a late
/// `PlaybackFinished` for one is never taken for the flow's.
const ANNOUNCEMENT_PLAY_ID: u64 = 1 << 62;

/// A queue as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueSummary {
    pub name: String,
    pub waiting: usize,
    pub oldest_wait_seconds: Option<f64>,
    pub estimated_wait_seconds: Option<f64>,
    pub mean_handle_seconds: f64,
    /// Callers waiting per language.
    pub languages: std::collections::BTreeMap<String, usize>,
}

/// A caller in a queue.
#[derive(Debug, Clone)]
pub(super) struct Queued {
    pub queue: String,
    /// The caller's language: their line in the queue, and what they hear.
    pub language: Language,
    pub joined_at: Instant,
    /// Prompt ids of each wait message, by `AcdAction::WaitMessage::index`.
    pub messages: Vec<Vec<String>>,
    /// Place in the line when the caller hung up, for the queue log.
    pub position_at_exit: Option<usize>,
}

/// A leg we placed to an agent for a caller.
#[derive(Debug, Clone)]
pub(super) struct AgentLeg {
    pub call: CallId,
    pub agent: AgentId,
    pub queue: String,
    /// Withdrawn by the ACD (ring timeout, pause, caller gone): whatever the
    /// agent's phone does now, the leg is only torn down.
    pub cancelled: bool,
    pub answered: bool,
    pub offered_codecs: [Codec; 2],
    /// Our RTP port for this leg (re-answers name it again).
    pub local_port: u16,
    pub sdp_version: u64,
}

impl<M: MediaControl> CallManager<M> {
    /// The flow asked to queue the caller.
    pub(super) fn join_queue(
        &mut self,
        now: Instant,
        key: CallId,
        queue: &str,
        options: &QueueOptions,
    ) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let language = options
            .language
            .or_else(|| call.flow.language())
            .unwrap_or(call.bundle.flows.default_language);
        let join = JoinOptions {
            priority: options.priority.clamp(0, 255) as u8,
            no_agents: None,
            max_wait: options.max_wait,
            announce_every: options.announce_every,
            messages: options
                .messages
                .iter()
                .map(|m| MessageTiming {
                    after: m.after,
                    every: m.every,
                })
                .collect(),
        };
        let result = self.acd.join(now, CallId(key.0), queue, language, join);
        tracing::info!(call = key.0, queue, language = language.code(), result = ?result, "queue");
        let exited = match &result {
            JoinResult::Joined { .. } | JoinResult::AlreadyQueued => None,
            JoinResult::Full => Some("full"),
            JoinResult::NoAgents => Some("no_agents"),
            JoinResult::UnknownQueue => Some("unknown_queue"),
            JoinResult::LanguageNotServed => Some("language_not_served"),
        };
        if let Some(reason) = exited {
            let mut e = self.queue_event(key, qe::EXITED, queue, language);
            e.reason = Some(reason.to_string());
            self.log_queue(e);
        }
        let event = match result {
            JoinResult::Joined { language } => {
                let joined = self.queue_event(key, qe::JOINED, queue, language);
                self.log_queue(joined);
                self.set_stage(key, Stage::Queue);
                if let Some(call) = self.calls.get_mut(&key) {
                    call.queued = Some(Queued {
                        queue: queue.to_string(),
                        language,
                        joined_at: now,
                        messages: options.messages.iter().map(|m| m.prompts.clone()).collect(),
                        position_at_exit: None,
                    });
                    call.queue_name = Some(queue.to_string());
                    call.queued_at = Some(now);
                    let music = call.bundle.prompts.hold_music();
                    self.media.play_music(key, music);
                }
                self.events.publish(LiveEvent::Queued {
                    at: super::unix_now(),
                    call: key.0,
                    queue: queue.to_string(),
                    language: Some(language),
                });
                None
            }
            JoinResult::Full => Some(FlowEvent::QueueFull),
            JoinResult::AlreadyQueued => None,
            JoinResult::NoAgents | JoinResult::UnknownQueue | JoinResult::LanguageNotServed => {
                Some(FlowEvent::QueueNoAgents)
            }
        };
        if let Some(event) = event {
            if let Some(call) = self.calls.get_mut(&key) {
                call.flow.handle_event(now, event, &self.env);
                self.dirty.push(key);
            }
        }
        self.drain_acd(now);
    }

    /// Carries out what the ACD asked for.
    pub(super) fn drain_acd(&mut self, now: Instant) {
        let mut agents_changed = false;
        while let Some(action) = self.acd.poll_action() {
            match action {
                AcdAction::Offer {
                    call,
                    agent,
                    queue,
                    language,
                } => self.offer(now, CallId(call.0), agent, queue, language),
                AcdAction::CancelOffer {
                    call,
                    agent,
                    reason,
                } => {
                    let key = CallId(call.0);
                    if let Some(leg) = self.leg_of(key) {
                        tracing::info!(call = key.0, agent = %agent.as_str(), ?reason, "offer withdrawn");
                        self.log_withdrawn(key, leg, reason);
                        self.drop_agent_leg(now, leg);
                    }
                }
                AcdAction::Announce {
                    call,
                    position,
                    estimated_wait,
                    first,
                    ..
                } => self.announce(CallId(call.0), position, estimated_wait, first),
                AcdAction::Escalated { call, tier } => {
                    let key = CallId(call.0);
                    tracing::info!(call = key.0, tier, "queue escalated");
                    let info = serde_json::json!({ "tier": tier });
                    let language = self.log_queued_event(key, qe::ESCALATED, info);
                    if language.is_some_and(|l| l != Language::En) {
                        self.play_announcement(key, &["queue_escalated"]);
                    }
                }
                AcdAction::LanguageFallback { call, language } => {
                    let key = CallId(call.0);
                    tracing::info!(
                        call = call.0,
                        fallback = language.code(),
                        "queue falls back to another language"
                    );
                    let info = serde_json::json!({ "language": language.code() });
                    self.log_queued_event(key, qe::FALLBACK, info);
                    if let Some(prompt) = self.fallback_prompt(key) {
                        self.play_announcement(key, &[prompt.as_str()]);
                    }
                }
                AcdAction::WaitMessage { call, index } => {
                    let key = CallId(call.0);
                    let prompts = self
                        .calls
                        .get(&key)
                        .and_then(|c| c.queued.as_ref())
                        .and_then(|q| q.messages.get(index))
                        .cloned()
                        .unwrap_or_default();
                    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
                    self.play_announcement(key, &refs);
                }
                AcdAction::QueueTimeout { call } => {
                    self.leave_queue_to_flow(now, CallId(call.0), FlowEvent::QueueTimeout)
                }
                AcdAction::NoAgents { call } => {
                    self.leave_queue_to_flow(now, CallId(call.0), FlowEvent::QueueNoAgents)
                }
                AcdAction::CallLeft {
                    call,
                    queue,
                    language,
                    outcome,
                    waited,
                    prediction,
                } => self.record_left(
                    CallId(call.0),
                    &queue,
                    language,
                    &outcome,
                    waited,
                    prediction,
                ),
                AcdAction::AgentStateChanged { agent, state } => {
                    tracing::info!(agent = %agent.as_str(), state = state.label(), "agent state");
                    self.log_agent_state(&agent, &state);
                    let skills = self.agent_skills(&agent);
                    self.events.publish(LiveEvent::AgentState {
                        at: super::unix_now(),
                        agent: agent.as_str().to_string(),
                        state: state.label().to_string(),
                        skills,
                    });
                    agents_changed = true;
                }
            }
        }
        if agents_changed {
            self.refresh_agent_gauges();
        }
        self.refresh_queue_gauges(now);
    }

    /// Logs a queue event with `info` for a queued caller; their language.
    fn log_queued_event(
        &mut self,
        key: CallId,
        event: &str,
        info: serde_json::Value,
    ) -> Option<Language> {
        let q = self.calls.get(&key)?.queued.as_ref()?;
        let (queue, language) = (q.queue.clone(), q.language);
        let mut e = self.queue_event(key, event, &queue, language);
        e.info = Some(info.to_string());
        self.log_queue(e);
        Some(language)
    }

    /// What a caller hears when their queue falls back to another language
    /// (`no_agents: { fallback: en, play: ... }` in queues.yaml).
    fn fallback_prompt(&self, key: CallId) -> Option<String> {
        let call = self.calls.get(&key)?;
        let queue = &call.queued.as_ref()?.queue;
        match &call.bundle.flows.queues.get(queue)?.no_agents {
            Some(NoAgents::Fallback { play, .. }) => play.clone(),
            _ => None,
        }
    }

    fn agent_skills(&self, agent: &AgentId) -> Vec<String> {
        self.agents
            .get(agent)
            .map(|a| a.skills.keys().map(|l| l.code().to_string()).collect())
            .unwrap_or_default()
    }

    /// Rings an agent for a caller: a media port for the agent leg, our offer,
    /// and an INVITE to where the agent's phone registered from.
    fn offer(
        &mut self,
        now: Instant,
        key: CallId,
        agent: AgentId,
        queue: String,
        language: Language,
    ) {
        let Some(call) = self.calls.get(&key) else {
            let _ = self
                .acd
                .offer_result(now, CallId(key.0), &agent, OfferResult::Rejected(481));
            return;
        };
        let Some(binding) = self.registrar.contact_for(now, &agent).cloned() else {
            tracing::info!(call = key.0, agent = %agent.as_str(), "agent has no registered phone");
            self.log_offer_failed(key, &agent, &queue, language, 480);
            let _ = self
                .acd
                .offer_result(now, CallId(key.0), &agent, OfferResult::Rejected(480));
            return;
        };
        let media_key = agent_media_key(key);
        let port = match self.media.open_pending(media_key) {
            Ok(port) => port,
            Err(e) => {
                tracing::warn!(call = key.0, error = %e, "no media for the agent leg");
                self.log_offer_failed(key, &agent, &queue, language, 503);
                let _ =
                    self.acd
                        .offer_result(now, CallId(key.0), &agent, OfferResult::Rejected(503));
                return;
            }
        };
        // The caller's codec first, so that no transcoding is needed when the
        // agent's phone speaks it.
        let first = call.codec;
        let other = if first == Codec::Pcmu {
            Codec::Pcma
        } else {
            Codec::Pcmu
        };
        let offered_codecs = [first, other];
        let offer = sdp::offer(
            self.media_ip,
            port,
            media_key.0 & !AGENT_LEG_BIT,
            1,
            &offered_codecs,
            Some(101),
        );
        let caller = call.info.from_user.clone();
        let to_user = self
            .agents
            .get(&agent)
            .map(|a| a.sip_username.clone())
            .unwrap_or_else(|| agent.as_str().to_string());
        let transport = match binding.transport {
            crate::registrar::Transport::Tcp => Transport::Tcp,
            _ => Transport::Udp,
        };
        let leg = self.endpoint.invite(
            now,
            OutboundInvite {
                request_uri: binding.uri.clone(),
                destination: ring_destination(&binding.uri, binding.source),
                transport,
                from_user: caller.clone(),
                from_display: Some(format!("{caller} ({})", language.code())),
                to_user,
                headers: vec![
                    (
                        "X-Hotline-Language".to_string(),
                        language.code().to_string(),
                    ),
                    ("X-Hotline-Queue".to_string(), queue.clone()),
                ],
                sdp: offer,
            },
        );
        tracing::info!(call = key.0, agent = %agent.as_str(), leg = leg.0, queue = %queue, language = language.code(), "offering to agent");
        let mut e = self.queue_event(key, qe::OFFERED, &queue, language);
        e.agent = Some(agent.as_str().to_string());
        self.log_queue(e);
        self.events.publish(LiveEvent::Offered {
            at: super::unix_now(),
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
                cancelled: false,
                answered: false,
                offered_codecs,
                local_port: port,
                sdp_version: 1,
            },
        );
        if let Some(call) = self.calls.get_mut(&key) {
            call.agent_leg = Some(leg);
        }
    }

    fn leg_of(&self, key: CallId) -> Option<LegKey> {
        self.calls.get(&key).and_then(|c| c.agent_leg)
    }

    /// Tears down an agent leg whatever its state (CANCEL before the answer,
    /// BYE after) and releases its media. The leg's final SIP event is ignored.
    pub(super) fn drop_agent_leg(&mut self, now: Instant, leg: LegKey) {
        let Some(info) = self.legs.get_mut(&leg) else {
            return;
        };
        if info.cancelled {
            return;
        }
        info.cancelled = true;
        let key = info.call;
        if info.answered {
            self.endpoint.hangup(now, leg);
            self.media.unbridge(key);
        } else {
            self.endpoint.cancel(now, leg);
        }
        self.media.close(agent_media_key(key));
        if let Some(call) = self.calls.get_mut(&key) {
            if call.agent_leg == Some(leg) {
                call.agent_leg = None;
            }
        }
    }

    /// The agent's phone answered.
    pub(super) fn leg_answered(&mut self, now: Instant, leg: LegKey, answer: Option<String>) {
        let Some(info) = self.legs.get(&leg).cloned() else {
            return;
        };
        if info.cancelled {
            self.endpoint.hangup(now, leg);
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
                self.log_leg_failed(key, &info, 488);
                self.endpoint.hangup(now, leg);
                self.media.close(agent_media_key(key));
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.cancelled = true;
                }
                if let Some(call) = self.calls.get_mut(&key) {
                    call.agent_leg = None;
                }
                let _ = self.acd.offer_result(
                    now,
                    CallId(key.0),
                    &info.agent,
                    OfferResult::Rejected(488),
                );
                self.drain_acd(now);
                return;
            }
        };
        match self
            .acd
            .offer_result(now, CallId(key.0), &info.agent, OfferResult::Answered)
        {
            Ok(()) => {}
            Err(e) => {
                tracing::info!(call = key.0, leg = leg.0, error = %e, "answer came too late: leg ended");
                self.endpoint.hangup(now, leg);
                self.media.close(agent_media_key(key));
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.cancelled = true;
                }
                self.drain_acd(now);
                return;
            }
        }
        if let Some(l) = self.legs.get_mut(&leg) {
            l.answered = true;
        }
        self.media.update(agent_media_key(key), params);
        self.media.stop_music(key);
        self.media.bridge(key, agent_media_key(key));
        self.set_stage(key, Stage::Agent);
        if let Some(call) = self.calls.get_mut(&key) {
            let waited = call
                .queued
                .take()
                .map(|q| now.saturating_duration_since(q.joined_at))
                .unwrap_or_default();
            call.connected_agent = Some(info.agent.clone());
            call.connected_at = Some(now);
            self.events.publish(LiveEvent::Answered {
                at: super::unix_now(),
                call: key.0,
                queue: info.queue.clone(),
                agent: info.agent.as_str().to_string(),
                waited_seconds: waited.as_secs_f64(),
            });
            // The flow's queue step ends here: the call belongs to the agent.
            call.flow
                .handle_event(now, FlowEvent::QueueAnswered, &self.env);
        }
        tracing::info!(call = key.0, agent = %info.agent.as_str(), codec = params.codec.name(), "connected to agent");
        self.drain_acd(now);
    }

    /// The agent's phone re-INVITEs (hold, a new address): follow it.
    pub(super) fn leg_reoffer(&mut self, now: Instant, leg: LegKey, offer: Option<String>) {
        let Some(info) = self.legs.get_mut(&leg) else {
            self.endpoint.answer_leg_reoffer(now, leg, None);
            return;
        };
        let negotiated = offer
            .as_deref()
            .map(|o| sdp::Offer::parse(o).and_then(|o| sdp::negotiate(&o)));
        let Some(Ok(n)) = negotiated else {
            self.endpoint.answer_leg_reoffer(now, leg, None);
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
        self.endpoint.answer_leg_reoffer(now, leg, Some(&answer));
    }

    /// The agent's phone refused or never answered.
    pub(super) fn leg_failed(&mut self, now: Instant, leg: LegKey, code: u16) {
        let Some(info) = self.legs.remove(&leg) else {
            return;
        };
        if info.cancelled {
            return;
        }
        let key = info.call;
        self.media.close(agent_media_key(key));
        if let Some(call) = self.calls.get_mut(&key) {
            if call.agent_leg == Some(leg) {
                call.agent_leg = None;
            }
        }
        let result = if code == 408 {
            OfferResult::Timeout
        } else {
            OfferResult::Rejected(code)
        };
        tracing::info!(call = key.0, agent = %info.agent.as_str(), code, "agent did not take the call");
        self.log_leg_failed(key, &info, code);
        let _ = self
            .acd
            .offer_result(now, CallId(key.0), &info.agent, result);
        self.drain_acd(now);
    }

    /// The agent leg ended after it was answered (the agent hung up, or it failed).
    pub(super) fn leg_ended(&mut self, now: Instant, leg: LegKey, reason: EndReason) {
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
        self.media.unbridge(key);
        self.media.close(agent_media_key(key));
        let _ = self.acd.call_ended(now, CallId(key.0));
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
        self.drain_acd(now);
    }

    fn leg_failed_after_removal(&mut self, now: Instant, info: &AgentLeg) {
        let key = info.call;
        self.log_leg_failed(key, info, 500);
        self.media.close(agent_media_key(key));
        if let Some(call) = self.calls.get_mut(&key) {
            call.agent_leg = None;
        }
        let _ = self
            .acd
            .offer_result(now, CallId(key.0), &info.agent, OfferResult::Rejected(500));
        self.drain_acd(now);
    }

    /// The caller's call ends (either side): take it out of the queue or end
    /// the agent leg, so that nobody is left ringing or "on call".
    pub(super) fn caller_gone(&mut self, now: Instant, key: CallId) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let leg = call.agent_leg;
        let was_connected = call.connected_agent.is_some();
        if let Some(leg) = leg {
            self.drop_agent_leg(now, leg);
            self.legs.remove(&leg);
        }
        if was_connected {
            let _ = self.acd.call_ended(now, CallId(key.0));
        } else if self.acd.is_queued(CallId(key.0)) {
            let position = self.acd.position(now, CallId(key.0));
            if let Some(q) = self.calls.get_mut(&key).and_then(|c| c.queued.as_mut()) {
                q.position_at_exit = position;
            }
            self.acd.abandon(now, CallId(key.0));
        }
        self.drain_acd(now);
    }

    fn leave_queue_to_flow(&mut self, now: Instant, key: CallId, event: FlowEvent) {
        self.media.stop_music(key);
        self.set_stage(key, Stage::Ivr);
        if let Some(call) = self.calls.get_mut(&key) {
            call.queued = None;
            call.flow.handle_event(now, event, &self.env);
            self.dirty.push(key);
        }
    }

    /// "You are number N in the queue. The estimated waiting time is about M
    /// minutes." In the caller's language, said only with recordings that
    /// exist (a number with no recording is left out rather than mis-said).
    fn announce(
        &mut self,
        key: CallId,
        position: usize,
        estimated: Option<Duration>,
        first: bool,
    ) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let Some(q) = &call.queued else { return };
        let language = q.language;
        let catalogue = &call.bundle.flows.catalogue;
        let has = |id: &str| catalogue.text(id, language).is_some();
        let mut ids: Vec<String> = Vec::new();
        if first && has("queue_joined") {
            ids.push("queue_joined".into());
        }
        let number = format!("number.{position}");
        if position > 0 && has(&number) && has("queue_position_prefix") {
            ids.push("queue_position_prefix".into());
            ids.push(number);
            if has("queue_position_suffix") {
                ids.push("queue_position_suffix".into());
            }
        }
        if let Some(wait) = estimated {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            // Round up to the next whole recording: never promise less.
            if let Some(m) = (minutes..=60).find(|m| has(&format!("wait_minutes.{m}"))) {
                if has("wait_about") {
                    ids.push("wait_about".into());
                    ids.push(format!("wait_minutes.{m}"));
                }
            } else if has("wait_over_hour") {
                ids.push("wait_over_hour".into());
            }
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.play_announcement(key, &refs);
    }

    /// Plays prompts over the hold music (which resumes after).
    fn play_announcement(&mut self, key: CallId, ids: &[&str]) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(q) = &call.queued else { return };
        let language = q.language;
        let clips: Vec<_> = ids
            .iter()
            .filter_map(|id| call.bundle.prompts.clip(id, language))
            .collect();
        if clips.is_empty() {
            return;
        }
        tracing::info!(call = key.0, prompts = ?ids, language = language.code(), "queue announcement");
        call.announcements += 1;
        let play_id = ANNOUNCEMENT_PLAY_ID + call.announcements;
        self.media.play(key, play_id, clips);
    }

    pub(super) fn is_announcement(play_id: u64) -> bool {
        play_id >= ANNOUNCEMENT_PLAY_ID
    }

    fn record_left(
        &mut self,
        key: CallId,
        queue: &str,
        language: Language,
        left: &LeaveOutcome,
        waited: Duration,
        prediction: Option<crate::acd::PredictionError>,
    ) {
        let m = &self.metrics;
        let lang = language.code();
        let label = match left {
            LeaveOutcome::Answered { .. } => "answered",
            LeaveOutcome::Abandoned { .. } => "abandoned",
            LeaveOutcome::TimedOut => "timed_out",
            // Not a wait that ended for the caller: a flow exit. Still observed
            // so that offered = answered + abandoned + timed_out holds.
            LeaveOutcome::NoAgents | LeaveOutcome::Left => "timed_out",
        };
        m.queue_wait_seconds
            .with_label_values(&[queue, lang, label])
            .observe(waited.as_secs_f64());
        match left {
            LeaveOutcome::Answered { .. } => {
                m.queue_answered_total
                    .with_label_values(&[queue, lang])
                    .inc();
                m.today
                    .queue_answered(chrono::Utc::now(), queue, language, waited.as_secs_f64());
                if let Some(p) = prediction {
                    m.queue_estimate_error_seconds
                        .with_label_values(&[queue])
                        .observe(p.error_seconds());
                }
            }
            LeaveOutcome::Abandoned { short } => {
                m.queue_abandoned_total
                    .with_label_values(&[queue, lang])
                    .inc();
                if *short {
                    m.queue_short_abandoned_total
                        .with_label_values(&[queue, lang])
                        .inc();
                }
                m.today
                    .queue_abandoned(chrono::Utc::now(), queue, language, *short);
                self.events.publish(LiveEvent::Abandoned {
                    at: super::unix_now(),
                    call: key.0,
                    queue: queue.to_string(),
                    language: Some(language),
                    waited_seconds: waited.as_secs_f64(),
                    short: *short,
                });
            }
            _ => {}
        }
        tracing::info!(
            call = key.0,
            queue,
            language = lang,
            outcome = label,
            waited_s = waited.as_secs_f64(),
            "left queue"
        );
        let (kind, reason) = match left {
            LeaveOutcome::Answered { .. } => (qe::ANSWERED, None),
            LeaveOutcome::Abandoned { .. } => (qe::ABANDONED, None),
            LeaveOutcome::TimedOut => (qe::TIMED_OUT, None),
            LeaveOutcome::NoAgents => (qe::EXITED, Some("no_agents")),
            LeaveOutcome::Left => (qe::EXITED, Some("left")),
        };
        let mut e = self.queue_event(key, kind, queue, language);
        e.wait_ms = Some(i64::try_from(waited.as_millis()).unwrap_or(i64::MAX));
        e.reason = reason.map(str::to_string);
        match left {
            LeaveOutcome::Answered { agent } => e.agent = Some(agent.as_str().to_string()),
            LeaveOutcome::Abandoned { .. } => {
                e.position = self
                    .calls
                    .get(&key)
                    .and_then(|c| c.queued.as_ref())
                    .and_then(|q| q.position_at_exit)
                    .map(|p| i64::try_from(p).unwrap_or(i64::MAX));
            }
            _ => {}
        }
        self.log_queue(e);
    }

    /// A queue log row for `key`'s call, stamped now.
    fn queue_event(&self, key: CallId, kind: &str, queue: &str, language: Language) -> QueueEvent {
        QueueEvent {
            call_id: self.calls.get(&key).map(|c| super::record_id(c, key)),
            queue: Some(queue.to_string()),
            language: Some(language.code().to_string()),
            ..QueueEvent::new(kind, crate::cdr::now_ms())
        }
    }

    /// Hands a queue event to the records writer (journal first), if kept.
    pub(super) fn log_queue(&self, event: QueueEvent) {
        if let Some(sink) = &self.records {
            sink.queue_event(event);
        }
    }

    fn log_offer_failed(
        &self,
        key: CallId,
        agent: &AgentId,
        queue: &str,
        language: Language,
        code: u16,
    ) {
        let kind = if code == 408 {
            qe::RING_NOANSWER
        } else {
            qe::OFFER_FAILED
        };
        let mut e = self.queue_event(key, kind, queue, language);
        e.agent = Some(agent.as_str().to_string());
        e.code = Some(code);
        self.log_queue(e);
    }

    fn log_leg_failed(&self, key: CallId, leg: &AgentLeg, code: u16) {
        let language = self
            .calls
            .get(&key)
            .and_then(|c| c.queued.as_ref())
            .map(|q| q.language);
        if let Some(language) = language {
            self.log_offer_failed(key, &leg.agent, &leg.queue, language, code);
        }
    }

    /// The ACD took an offer back. A caller who left is logged by its own
    /// event; a ring timeout is a `ring_noanswer` (408, as the phone would
    /// have said), an agent gone an `offer_failed` (487, the CANCEL).
    fn log_withdrawn(&self, key: CallId, leg: LegKey, reason: CancelReason) {
        let Some(info) = self.legs.get(&leg) else {
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
        self.log_leg_failed(key, info, code);
    }

    fn log_agent_state(&self, agent: &AgentId, state: &AgentState) {
        let mut e = QueueEvent::new(qe::AGENT_STATE, crate::cdr::now_ms());
        e.agent = Some(agent.as_str().to_string());
        e.state = Some(state.label().to_string());
        match state {
            AgentState::Paused { reason } => e.reason = Some(reason.clone()),
            AgentState::Ringing { call } | AgentState::OnCall { call } => {
                let key = CallId(call.0);
                e.call_id = self.calls.get(&key).map(|c| super::record_id(c, key));
            }
            _ => {}
        }
        self.log_queue(e);
    }

    /// `hotline_agents{skill,state}` from the ACD's view of every agent.
    pub(super) fn refresh_agent_gauges(&mut self) {
        let m = &self.metrics;
        m.agents.reset();
        for agent in self.acd.agents() {
            for language in agent.skills.keys() {
                m.agents
                    .with_label_values(&[language.code(), agent.state.label()])
                    .inc();
            }
        }
        // Every language and state is present, at zero when nobody is in it,
        // so that "no agent logged in for a language" can be alerted on.
        for language in crate::language::Language::ALL {
            for state in AGENT_STATES {
                m.agents.with_label_values(&[language.code(), state]);
            }
        }
    }

    /// Queue gauges and the snapshot flows branch on.
    pub(super) fn refresh_queue_gauges(&mut self, now: Instant) {
        let stats = self.acd.queue_stats(now);
        self.env.queues.clear();
        for q in &stats {
            let m = &self.metrics;
            m.queue_waiting
                .with_label_values(&[q.name.as_str()])
                .set(q.waiting as i64);
            m.queue_oldest_wait_seconds
                .with_label_values(&[q.name.as_str()])
                .set(q.oldest_wait.map(|d| d.as_secs_f64()).unwrap_or(0.0));
            m.queue_estimated_wait_seconds
                .with_label_values(&[q.name.as_str()])
                .set(q.estimated_wait.map(|d| d.as_secs_f64()).unwrap_or(0.0));
            self.env.queues.insert(
                q.name.clone(),
                crate::flow::QueueState {
                    waiting: q.waiting as u32,
                    estimated_wait: q.estimated_wait.unwrap_or_default(),
                },
            );
        }
        self.env.agents_ready.clear();
        for agent in self.acd.agents() {
            if agent.state.label() == "ready" {
                for language in agent.skills.keys() {
                    *self
                        .env
                        .agents_ready
                        .entry(language.code().to_string())
                        .or_default() += 1;
                }
            }
        }
    }

    /// Every queue, for the API and the wallboard.
    pub fn queue_summaries(&self, now: Instant) -> Vec<QueueSummary> {
        self.acd
            .queue_stats(now)
            .into_iter()
            .map(|q| QueueSummary {
                waiting: q.waiting,
                oldest_wait_seconds: q.oldest_wait.map(|d| d.as_secs_f64()),
                estimated_wait_seconds: q.estimated_wait.map(|d| d.as_secs_f64()),
                mean_handle_seconds: q.mean_handle_time.as_secs_f64(),
                languages: q
                    .lines
                    .iter()
                    .map(|l| (l.language.code().to_string(), l.waiting))
                    .collect(),
                name: q.name,
            })
            .collect()
    }

    /// Where an agent's phone should be rung: for tests and the API.
    pub fn agent_contact(&self, now: Instant, agent: &str) -> Option<SocketAddr> {
        self.registrar
            .contact_for(now, &AgentId::from(agent))
            .map(|b| b.source)
    }
}

/// Where to send an INVITE for a registered contact. A phone behind NAT puts
/// an address in its Contact that cannot be reached, so the address its
/// REGISTER came from is used; when the Contact names that same host (no NAT),
/// its port is honoured, as a phone may register from one port and take calls
/// on another.
fn ring_destination(contact_uri: &str, registered_from: SocketAddr) -> SocketAddr {
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

/// The `state` label values of `hotline_agents`.
pub const AGENT_STATES: [&str; 6] = [
    "logged_out",
    "ready",
    "paused",
    "ringing",
    "on_call",
    "wrap_up",
];

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
