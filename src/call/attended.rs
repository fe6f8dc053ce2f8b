//! Attended transfer (RFC 5589). An agent talking to a caller puts them on
//! hold and calls an outside number from the same phone, through us: the
//! *consultation*. We place that call through a trunk on the caller's
//! behalf (the toll-fraud rules of any transfer apply), and bridge the
//! agent's phone to it. When the agent's phone then REFERs the caller with
//! `Replaces` naming the consultation's dialog, the caller takes the
//! agent's place on that far end: the caller is bridged to the trunk leg,
//! both of the agent's dialogs are hung up, the phone hears "200 OK" in a
//! NOTIFY, and the agent wraps up. Hanging up the consultation instead
//! simply ends it: the agent takes the caller back off hold.
//!
//! The caller's media never moves: the trunk leg is the caller's transfer
//! leg from the start (`trunk_media_key` of the caller's call), so the
//! transfer is a change of bridge, and its record is the caller's leg.

use super::transfer::{trunk_media_key, TrunkPurpose};
use super::{CallManager, MediaControl, Observation, Stage};
use crate::acd::{AgentId, QueueService};
use crate::ids::CallId;
use crate::sdp;
use crate::sip::{IncomingCall, LegKey, Replaces};
use crate::time::Now;

/// An agent's consultation call, from their phone through us to a trunk.
pub(super) struct Consultation {
    /// The caller the agent is talking to: the one a transfer would move.
    caller: CallId,
    agent: AgentId,
    /// The SIP Call-ID of the agent's consultation dialog (what `Replaces`
    /// names).
    sip_call_id: String,
    trunk_leg: LegKey,
    negotiated: sdp::Negotiated,
    /// Our media port for the agent's phone, once the far end answered.
    local_port: Option<u16>,
    sdp_version: u64,
}

/// Most consultations at once (each also holds a trunk channel).
const MAX_CONSULTATIONS: usize = 1_000;

impl<M: MediaControl, Q: QueueService> CallManager<M, Q> {
    /// An INVITE from an agent's phone while the agent talks to a caller:
    /// a consultation call to an outside number. False when the INVITE is
    /// not from a registered agent's phone on a call (it is handled as any
    /// call).
    pub(super) fn consultation(&mut self, now: Now, incoming: &IncomingCall) -> bool {
        let Some(agent) = self.phone_agent(now, incoming) else {
            return false;
        };
        let key = incoming.call;
        let refuse = |this: &mut Self, code: u16, why: &str| {
            tracing::info!(call = key.0, agent = %agent.as_str(), dialled = %incoming.dialled,
                code, why, "consultation refused");
            this.endpoint.reject(now.mono, key, code);
            true
        };
        let call = self
            .calls
            .iter()
            .find(|(_, c)| c.stage == Stage::Agent && c.connected_agent.as_ref() == Some(&agent));
        // An agent who talks to nobody is handled as any phone.
        let Some((&caller, call)) = call else {
            return false;
        };
        let (from, codec, transferring) = (
            call.info.from_user.clone(),
            call.codec,
            call.trunk_leg.is_some(),
        );
        let number = super::transfer::parse_target(&incoming.dialled).0;
        if !crate::trunk::is_dialable(&number) {
            return refuse(self, 404, "not a number");
        }
        if self.consults.len() >= MAX_CONSULTATIONS {
            return refuse(self, 503, "too many consultations");
        }
        if transferring {
            return refuse(self, 491, "the caller is already being transferred");
        }
        let negotiated = match incoming.offer.as_deref().map(sdp::negotiate_text) {
            Some(Ok(n)) => n,
            Some(Err(e)) => return refuse(self, e.status_code(), "unusable SDP"),
            None => return refuse(self, 488, "no SDP offer"),
        };
        let route = match self.trunks.route(&number, None, &from) {
            Ok(route) => route,
            Err(refusal) => {
                self.observe(Observation::TrunkRefused {
                    reason: refusal.label(),
                });
                return refuse(self, 403, refusal.label());
            }
        };
        let purpose = TrunkPurpose::Consult(key);
        let Some(trunk_leg) = self.dial_out(now, caller, route, number.clone(), codec, purpose)
        else {
            return refuse(self, 503, "no media port");
        };
        self.endpoint.ring(now.mono, key);
        tracing::info!(call = caller.0, consultation = key.0, agent = %agent.as_str(),
            number = %number, "consultation: the agent calls out");
        self.consults.insert(
            key,
            Consultation {
                caller,
                agent,
                sip_call_id: incoming.call_id.clone(),
                trunk_leg,
                negotiated,
                local_port: None,
                sdp_version: 1,
            },
        );
        true
    }

    /// Whether `call` is a consultation (its SIP events are handled here).
    pub(super) fn is_consultation(&self, call: CallId) -> bool {
        self.consults.contains_key(&call)
    }

    /// The far end answered the consultation: the agent's phone is answered
    /// and bridged to it.
    pub(super) fn consultation_answered(&mut self, now: Now, key: CallId, trunk_leg: LegKey) {
        let Some(c) = self.consults.get_mut(&key) else {
            self.hang_up_trunk_leg(now, trunk_leg);
            return;
        };
        let port = match self.media.open(key, c.negotiated.stream_params()) {
            Ok(port) => port,
            Err(e) => {
                tracing::warn!(consultation = key.0, error = %e, "no media for the consultation");
                self.endpoint.reject(now.mono, key, 503);
                self.consults.remove(&key);
                self.hang_up_trunk_leg(now, trunk_leg);
                return;
            }
        };
        c.local_port = Some(port);
        let answer = c.negotiated.answer().render(self.media_ip, port, key.0, 1);
        let caller = c.caller;
        self.endpoint.answer(now.mono, key, &answer);
        self.media.bridge(key, trunk_media_key(caller));
        tracing::info!(
            call = caller.0,
            consultation = key.0,
            "consultation connected"
        );
    }

    /// The consultation's far end did not answer: the agent's phone hears
    /// why (the far end's status), and goes back to the caller.
    pub(super) fn consultation_failed(&mut self, now: Now, key: CallId, code: u16) {
        if self.consults.remove(&key).is_some() {
            tracing::info!(consultation = key.0, code, "consultation not answered");
            self.endpoint.reject(now.mono, key, code);
        }
    }

    /// The consultation is over without a transfer (its far end hung up, or
    /// the caller's call ended): the agent's phone is hung up.
    pub(super) fn consultation_over(&mut self, now: Now, key: CallId) {
        self.end_consultation(now, key, false);
    }

    /// The agent's phone hung up (or cancelled) the consultation: the
    /// outside leg goes too; the agent still has the caller.
    pub(super) fn consultation_hung_up(&mut self, now: Now, key: CallId) {
        self.end_consultation(now, key, true);
    }

    fn end_consultation(&mut self, now: Now, key: CallId, by_agent: bool) {
        let Some(c) = self.consults.remove(&key) else {
            return;
        };
        tracing::info!(
            call = c.caller.0,
            consultation = key.0,
            by_agent,
            "consultation ended"
        );
        let answered = c.local_port.is_some();
        if answered {
            self.media.unbridge(key);
            self.media.close(key);
        }
        match (by_agent, answered) {
            (true, _) => self.hang_up_trunk_leg(now, c.trunk_leg),
            (false, true) => self.endpoint.hangup(now.mono, key),
            (false, false) => self.endpoint.reject(now.mono, key, 487),
        }
    }

    /// A re-INVITE on the consultation (the phone's hold and resume).
    pub(super) fn consultation_reoffer(&mut self, now: Now, key: CallId, offer: Option<String>) {
        let negotiated = offer.as_deref().map(sdp::negotiate_text);
        let (Some(c), Some(Ok(n))) = (self.consults.get_mut(&key), negotiated) else {
            self.endpoint.answer_reoffer(now.mono, key, None);
            return;
        };
        let Some(port) = c.local_port else {
            self.endpoint.answer_reoffer(now.mono, key, None);
            return;
        };
        c.sdp_version += 1;
        let answer = n.answer().render(self.media_ip, port, key.0, c.sdp_version);
        self.media.update(key, n.stream_params());
        c.negotiated = n;
        self.endpoint.answer_reoffer(now.mono, key, Some(&answer));
    }

    /// The agent's phone REFERs its caller to the consultation's far end
    /// (RFC 5589): the caller takes the agent's place there.
    pub(super) fn attended_transfer(&mut self, now: Now, agent_leg: LegKey, replaces: &Replaces) {
        let caller = self
            .legs
            .get(&agent_leg)
            .filter(|l| l.answered)
            .map(|l| l.call);
        let consultation = self.consults.iter().find_map(|(k, c)| {
            (c.sip_call_id == replaces.call_id
                && Some(c.caller) == caller
                && c.local_port.is_some())
            .then_some(*k)
        });
        let (Some(caller), Some(key)) = (caller, consultation) else {
            tracing::info!(leg = agent_leg.0, replaces = %replaces.call_id,
                "attended transfer refused: no answered consultation of this call");
            self.endpoint.notify_refer(
                now.mono,
                agent_leg,
                "481 Call/Transaction Does Not Exist",
                true,
            );
            return;
        };
        let Some(c) = self.consults.remove(&key) else {
            return;
        };
        // The phone hears it worked; then its two dialogs end, and the
        // caller goes to the far end.
        self.endpoint
            .notify_refer(now.mono, agent_leg, "200 OK", true);
        self.media.unbridge(key);
        self.media.close(key);
        self.endpoint.hangup(now.mono, key);
        self.transfer_leg_now_the_callers(c.trunk_leg);
        self.step_out_of_queue(now, caller, "transferred");
        self.put_through(now, caller);
        tracing::info!(call = caller.0, consultation = key.0, agent = %c.agent.as_str(),
            leg = c.trunk_leg.0, "attended transfer connected");
        self.process(now);
    }

    /// The phone an INVITE comes from, when it is a registered agent's: its
    /// SIP user, and the address it registered from or the one we ring it
    /// at (a phone may register from one port and call from another).
    pub(super) fn phone_agent(&self, now: Now, incoming: &IncomingCall) -> Option<AgentId> {
        let agent = self
            .agents
            .by_sip_username(&incoming.from_user)
            .map(|a| a.id.clone())?;
        self.registrar
            .bindings(now.mono, &agent)
            .iter()
            .any(|b| {
                b.source == incoming.source
                    || super::queueing::ring_destination(&b.uri, b.source) == incoming.source
            })
            .then_some(agent)
    }
}
