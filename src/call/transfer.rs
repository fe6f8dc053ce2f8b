//! Transfers. The flow's `transfer` step: a blind transfer to an outside
//! number through a trunk, bridged by us (the caller's media stays here, so
//! the call is still recorded, counted and ended cleanly). And a transfer
//! asked for from outside the flow (the HTTP API, for an agent or a
//! supervisor): a caller waiting or talking to an agent is put through to an
//! outside number, or to another queue or language. If the outside number
//! cannot be reached, the caller goes back to the queue they were in: never
//! left in silence.
//!
//! The number must match a trunk's dial patterns ([`crate::trunk`]); a
//! refusal is counted and the flow goes on at the step's `on_failure`. The
//! transfer leg gets its own record in the `legs` table, linked to the
//! caller's call record by its id.

use super::{CallManager, LocalEnd, MediaControl, Observation, Stage};
use crate::acd::QueueService;
use crate::cdr::LegRecord;
use crate::flow::FlowEvent;
use crate::ids::CallId;
use crate::language::Language;
use crate::media::Codec;
use crate::sdp;
use crate::sip::{Credentials, EndReason, LegKey, OutboundInvite, Transport};
use crate::time::Now;
use crate::trunk::{Refusal, Route, TrunkTransport};
use std::time::Instant;

/// Marks the media stream of a caller's transfer leg.
const TRUNK_LEG_BIT: u64 = 1 << 62;

pub(super) fn trunk_media_key(call: CallId) -> CallId {
    CallId(call.0 | TRUNK_LEG_BIT)
}

/// The caller (or callback) a trunk leg's media key belongs to.
pub(super) fn call_of_trunk_media(media_key: CallId) -> CallId {
    CallId(media_key.0 & !TRUNK_LEG_BIT)
}

/// Why we placed a leg through a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrunkPurpose {
    /// The flow's `transfer` step: its `on_failure` takes over on failure.
    Flow,
    /// A transfer asked for through the API or by the agent's phone: the
    /// caller goes back to their queue on failure.
    Api,
    /// The agent's phone asked with REFER: it hears the progress in
    /// NOTIFYs on its leg and keeps the caller until the far end answers
    /// (on failure the two simply go on talking).
    Refer(LegKey),
    /// Calling a caller back ([`super::callback`]).
    Callback,
    /// The agent's consultation call ([`super::attended`]), from their
    /// phone's call (this key): bridged to that call until the agent
    /// transfers the caller to it.
    Consult(CallId),
}

/// The sipfrag status line a NOTIFY reports for a leg that failed with `code`.
fn status_line(code: u16) -> String {
    let reason = match code {
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Service Unavailable",
    };
    let code = if (300..700).contains(&code) {
        code
    } else {
        503
    };
    format!("{code} {reason}")
}

/// A leg we placed through a trunk for a caller.
#[derive(Debug, Clone)]
pub(super) struct TrunkLeg {
    pub call: CallId,
    pub route: Route,
    pub number: String,
    offered_codecs: [Codec; 2],
    local_port: u16,
    sdp_version: u64,
    started_at: Instant,
    answered_at: Option<Instant>,
    purpose: TrunkPurpose,
}

/// Where a transfer asked for through the API goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// An outside number, through a trunk whose patterns allow it.
    Number(String),
    /// Another queue and/or language (unset: the caller's current one).
    Queue {
        queue: Option<String>,
        language: Option<Language>,
    },
}

/// What the API is told when a transfer starts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TransferStarted {
    pub call: u64,
    /// `dialling` (an outside number) or `queued` (another queue).
    pub state: &'static str,
    pub to: String,
}

/// Why a transfer was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("no call {0}")]
    NoCall(u64),
    #[error("the caller is in the IVR; only callers waiting in a queue or talking to an agent are transferred from here (a flow transfers with its `transfer` step)")]
    NotQueuedOrConnected,
    #[error("the call is already being transferred")]
    AlreadyTransferring,
    #[error("no queue `{0}`")]
    UnknownQueue(String),
    #[error("language `{0}` is not offered by the flows")]
    UnknownLanguage(String),
    #[error("not dialled ({0}): see docs/trunks.md")]
    Refused(&'static str),
}

/// The label of `hotline_transfers_total{result}`.
pub mod transfer_result {
    pub const CONNECTED: &str = "connected";
    pub const FAILED: &str = "failed";
    pub const REFUSED: &str = "refused";
    pub const ALL: [&str; 3] = [CONNECTED, FAILED, REFUSED];
}

/// A flow's transfer target: a number (`+4722000000`, `113`), or a SIP URI
/// whose user part is the number and whose host names a trunk
/// (`sip:113@emergency`).
pub(super) fn parse_target(target: &str) -> (String, Option<String>) {
    match target.strip_prefix("sip:") {
        Some(rest) => {
            let (user, host) = rest.split_once('@').unwrap_or((rest, ""));
            let host = host.split([';', ':']).next().unwrap_or("");
            (
                user.to_string(),
                (!host.is_empty()).then(|| host.to_string()),
            )
        }
        None => (target.to_string(), None),
    }
}

impl<M: MediaControl, Q: QueueService> CallManager<M, Q> {
    /// The flow asked to put the caller through to `target`.
    pub(super) fn transfer(&mut self, now: Now, key: CallId, target: &str) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let caller = call.info.from_user.clone();
        let codec = call.codec;
        let (number, host) = parse_target(target);
        let only = host.map(|h| self.trunks.trunk_for_host(&h).unwrap_or(h));
        let route = match self.trunks.route(&number, only.as_deref(), &caller) {
            Ok(route) => route,
            Err(refusal) => {
                self.count_refusal(key, target, refusal);
                self.flow_event(now, key, FlowEvent::TransferFailed);
                return;
            }
        };
        if self
            .dial_out(now, key, route, number, codec, TrunkPurpose::Flow)
            .is_none()
        {
            self.flow_event(now, key, FlowEvent::TransferFailed);
        }
    }

    /// Places the leg to `number` on the channel `route` took; `None` when
    /// no media port was free (the channel is given back).
    pub(super) fn dial_out(
        &mut self,
        now: Now,
        key: CallId,
        route: Route,
        number: String,
        codec: Codec,
        purpose: TrunkPurpose,
    ) -> Option<LegKey> {
        let media_key = trunk_media_key(key);
        let port = match self.media.open_pending(media_key) {
            Ok(port) => port,
            Err(e) => {
                tracing::warn!(call = key.0, error = %e, "no media for the transfer leg");
                self.trunks.release(route.trunk);
                if purpose != TrunkPurpose::Callback {
                    self.observe(Observation::TransferEnded {
                        result: transfer_result::FAILED,
                    });
                }
                return None;
            }
        };
        let offered_codecs = super::queueing::codecs_for_leg(codec);
        let offer = sdp::offer(self.media_ip, port, key.0, 1, &offered_codecs, Some(101));
        let leg = self.endpoint.invite(
            now.mono,
            OutboundInvite {
                request_uri: route.request_uri.clone(),
                destination: route.destination,
                transport: match route.transport {
                    TrunkTransport::Udp => Transport::Udp,
                    TrunkTransport::Tcp => Transport::Tcp,
                },
                from_user: route.caller_id.clone(),
                from_display: None,
                to_user: number.clone(),
                to_uri: Some(route.request_uri.clone()),
                headers: Vec::new(),
                sdp: offer,
                credentials: route
                    .credentials
                    .clone()
                    .map(|(username, password)| Credentials { username, password }),
            },
        );
        tracing::info!(call = key.0, leg = leg.0, trunk = %route.trunk_name, number = %number, ?purpose, "dialling through a trunk");
        self.trunk_legs.insert(
            leg,
            TrunkLeg {
                call: key,
                route,
                number,
                offered_codecs,
                local_port: port,
                sdp_version: 1,
                started_at: now.mono,
                answered_at: None,
                purpose,
            },
        );
        if let Some(call) = self.calls.get_mut(&key) {
            call.trunk_leg = Some(leg);
        }
        self.gauges_changed = true;
        Some(leg)
    }

    fn count_refusal(&mut self, key: CallId, target: &str, refusal: Refusal) {
        tracing::warn!(call = key.0, target = %target, reason = refusal.label(), "transfer refused");
        self.observe(Observation::TrunkRefused {
            reason: refusal.label(),
        });
        self.observe(Observation::TransferEnded {
            result: transfer_result::REFUSED,
        });
    }

    /// A transfer asked for through the API: the caller, waiting in a queue
    /// or talking to an agent, goes to `target`. The agent (if any) is
    /// released into wrap-up as after any call.
    pub fn transfer_call(
        &mut self,
        now: Now,
        call: u64,
        target: TransferTarget,
    ) -> Result<TransferStarted, TransferError> {
        self.start_transfer(now, call, target, None)
    }

    /// The agent's phone asked (REFER, RFC 3515) to transfer its caller to
    /// `target`: a number (through a trunk), a language code (`en`: that
    /// language's line of the same queue) or a queue name. The phone hears
    /// the outcome in a NOTIFY before its leg is hung up.
    pub(super) fn agent_refers(&mut self, now: Now, leg: LegKey, target: &str) {
        let Some(key) = self.legs.get(&leg).filter(|l| l.answered).map(|l| l.call) else {
            self.endpoint
                .notify_refer(now.mono, leg, "481 Call Does Not Exist", true);
            return;
        };
        let user = parse_target(target).0;
        let transfer = if crate::trunk::is_dialable(&user) {
            TransferTarget::Number(user)
        } else if let Ok(language) = user.parse::<Language>() {
            TransferTarget::Queue {
                queue: None,
                language: Some(language),
            }
        } else {
            TransferTarget::Queue {
                queue: Some(user),
                language: None,
            }
        };
        tracing::info!(call = key.0, leg = leg.0, target = %target, "agent asks for a transfer");
        if let Err(e) = self.start_transfer(now, key.0, transfer, Some(leg)) {
            tracing::info!(call = key.0, leg = leg.0, error = %e, "agent's transfer refused");
            let status = match e {
                TransferError::Refused(_) => "403 Forbidden",
                TransferError::UnknownQueue(_) | TransferError::UnknownLanguage(_) => {
                    "404 Not Found"
                }
                TransferError::NoCall(_) => "481 Call Does Not Exist",
                _ => "491 Request Pending",
            };
            self.endpoint.notify_refer(now.mono, leg, status, true);
        }
    }

    fn start_transfer(
        &mut self,
        now: Now,
        call: u64,
        target: TransferTarget,
        refer: Option<LegKey>,
    ) -> Result<TransferStarted, TransferError> {
        self.env.wall = now.wall;
        let key = CallId(call);
        let Some(c) = self.calls.get(&key) else {
            return Err(TransferError::NoCall(call));
        };
        if c.trunk_leg.is_some() || c.stage == Stage::Transfer {
            return Err(TransferError::AlreadyTransferring);
        }
        if !matches!(c.stage, Stage::Queue | Stage::Agent) || c.local_end.is_some() {
            return Err(TransferError::NotQueuedOrConnected);
        }
        let caller = c.info.from_user.clone();
        let codec = c.codec;
        let started = match target {
            TransferTarget::Number(number) => {
                let route = match self.trunks.route(&number, None, &caller) {
                    Ok(route) => route,
                    Err(refusal) => {
                        self.count_refusal(key, &number, refusal);
                        return Err(TransferError::Refused(refusal.label()));
                    }
                };
                match refer {
                    // The agent keeps the caller while the number rings,
                    // and hears how it goes.
                    Some(agent_leg) => {
                        self.endpoint
                            .notify_refer(now.mono, agent_leg, "100 Trying", false);
                        let purpose = TrunkPurpose::Refer(agent_leg);
                        let dialled =
                            self.dial_out(now, key, route, number.clone(), codec, purpose);
                        if dialled.is_none() {
                            self.endpoint.notify_refer(
                                now.mono,
                                agent_leg,
                                &status_line(503),
                                true,
                            );
                        }
                    }
                    None => {
                        self.step_out_of_queue(now, key, "transferred");
                        let purpose = TrunkPurpose::Api;
                        let dialled =
                            self.dial_out(now, key, route, number.clone(), codec, purpose);
                        if dialled.is_none() {
                            self.back_to_queue(now, key);
                        }
                    }
                }
                TransferStarted {
                    call,
                    state: "dialling",
                    to: number,
                }
            }
            TransferTarget::Queue { queue, language } => {
                let (current, mut options) = c.last_queue.clone().unwrap_or_default();
                let queue = queue.unwrap_or(current);
                if !c.bundle.flows.queues.contains_key(&queue) {
                    return Err(TransferError::UnknownQueue(queue));
                }
                if let Some(l) = language {
                    if !c.bundle.flows.languages.contains(&l) {
                        return Err(TransferError::UnknownLanguage(l.code().to_string()));
                    }
                    options.language = Some(l);
                }
                let language = options.language.or(c.flow.language());
                if let Some(leg) = refer {
                    self.endpoint.notify_refer(now.mono, leg, "200 OK", true);
                }
                self.step_out_of_queue(now, key, "transferred");
                tracing::info!(call = key.0, queue = %queue, language = ?language.map(Language::code), "transferring to a queue");
                self.join_queue(now, key, &queue, &options);
                TransferStarted {
                    call,
                    state: "queued",
                    to: match language {
                        Some(l) => format!("{queue} ({})", l.code()),
                        None => queue,
                    },
                }
            }
        };
        self.process(now);
        Ok(started)
    }

    /// An outside number the API asked for was not reached: the caller
    /// rejoins the queue they were in (as a new arrival: they spoke to an
    /// agent already).
    fn back_to_queue(&mut self, now: Now, key: CallId) {
        let Some((queue, options)) = self.calls.get(&key).and_then(|c| c.last_queue.clone()) else {
            self.end_call_locally(now, key, LocalEnd::Failure, "transfer failed");
            return;
        };
        tracing::info!(call = key.0, queue = %queue, "transfer failed: back to the queue");
        self.join_queue(now, key, &queue, &options);
    }

    /// The agent whose REFER is ringing a number hung up (as phones do
    /// after a blind transfer): the transfer goes on without them, and the
    /// caller goes back to their queue should it fail.
    pub(super) fn referring_agent_left(&mut self, now: Now, key: CallId) -> bool {
        let Some(trunk_leg) = self.calls.get(&key).and_then(|c| c.trunk_leg) else {
            return false;
        };
        let Some(info) = self.trunk_legs.get_mut(&trunk_leg) else {
            return false;
        };
        if !matches!(info.purpose, TrunkPurpose::Refer(_)) {
            return false;
        }
        info.purpose = TrunkPurpose::Api;
        tracing::info!(
            call = key.0,
            "the referring agent hung up: the transfer goes on"
        );
        self.step_out_of_queue(now, key, "transferred");
        true
    }

    /// An attended transfer put the caller through to their consultation's
    /// leg: from now on it is the caller's transfer leg.
    pub(super) fn transfer_leg_now_the_callers(&mut self, leg: LegKey) {
        if let Some(info) = self.trunk_legs.get_mut(&leg) {
            info.purpose = TrunkPurpose::Api;
        }
    }

    /// The transfer leg whose media is `media_key`, if it is one.
    pub(super) fn trunk_leg_of_media(&self, media_key: CallId) -> Option<LegKey> {
        if media_key.0 & TRUNK_LEG_BIT == 0 {
            return None;
        }
        let caller = CallId(media_key.0 & !TRUNK_LEG_BIT);
        self.calls.get(&caller).and_then(|c| c.trunk_leg)
    }

    /// Whether `leg` is a transfer leg (its events are handled here).
    pub(super) fn is_trunk_leg(&self, leg: LegKey) -> bool {
        self.trunk_legs.contains_key(&leg)
    }

    /// The caller a transfer leg belongs to.
    pub(super) fn trunk_leg_call(&self, leg: LegKey) -> Option<CallId> {
        self.trunk_legs.get(&leg).map(|l| l.call)
    }

    /// The far end answered: bridge the caller to it.
    pub(super) fn trunk_leg_answered(&mut self, now: Now, leg: LegKey, answer: Option<String>) {
        let Some(info) = self.trunk_legs.get(&leg) else {
            self.endpoint.hangup(now.mono, leg);
            return;
        };
        let key = info.call;
        let negotiated = answer
            .as_deref()
            .map(|a| sdp::accept_answer(&info.offered_codecs, a));
        let purpose = info.purpose;
        let Some(Ok(negotiated)) = negotiated else {
            tracing::warn!(call = key.0, leg = leg.0, "trunk leg's answer unusable");
            self.endpoint.hangup(now.mono, leg);
            self.leg_not_answered(now, leg, key, purpose, 488);
            return;
        };
        let media_key = trunk_media_key(key);
        self.media.update(media_key, negotiated.stream_params());
        if let TrunkPurpose::Consult(consultation) = purpose {
            if let Some(l) = self.trunk_legs.get_mut(&leg) {
                l.answered_at = Some(now.mono);
            }
            self.consultation_answered(now, consultation, leg);
            return;
        }
        if purpose == TrunkPurpose::Callback {
            if let Some(l) = self.trunk_legs.get_mut(&leg) {
                l.answered_at = Some(now.mono);
            }
            self.callback_caller_answered(now, key);
            return;
        }
        if let TrunkPurpose::Refer(agent_leg) = purpose {
            // The far end answered: the agent hears so and is let go.
            self.endpoint
                .notify_refer(now.mono, agent_leg, "200 OK", true);
            self.step_out_of_queue(now, key, "transferred");
        }
        if let Some(l) = self.trunk_legs.get_mut(&leg) {
            l.answered_at = Some(now.mono);
        }
        self.put_through(now, key);
        tracing::info!(call = key.0, leg = leg.0, "transfer connected");
        if purpose == TrunkPurpose::Flow {
            self.flow_event(now, key, FlowEvent::Transferred);
        }
    }

    /// The caller now talks to their answered trunk leg: bridged, counted
    /// as a transfer connected.
    pub(super) fn put_through(&mut self, now: Now, key: CallId) {
        self.media.stop(key);
        self.media.bridge(key, trunk_media_key(key));
        if let Some(call) = self.calls.get_mut(&key) {
            // A caller put through from the IVR is connected now; one who
            // waited keeps their agent's answer time (or none): the report's
            // speed of answer and service level count agents only.
            if call.connected_at.is_none() && call.queued_at.is_none() {
                call.connected_at = Some(now.mono);
            }
        }
        self.set_stage(key, Stage::Transfer);
        self.observe(Observation::TransferEnded {
            result: transfer_result::CONNECTED,
        });
    }

    /// The far end refused or never answered: the flow goes on.
    pub(super) fn trunk_leg_failed(&mut self, now: Now, leg: LegKey, code: u16) {
        let Some((key, purpose)) = self.trunk_legs.get(&leg).map(|l| (l.call, l.purpose)) else {
            return;
        };
        tracing::info!(call = key.0, leg = leg.0, code, "trunk leg failed");
        self.leg_not_answered(now, leg, key, purpose, code);
    }

    /// A leg that will not be answered: the agent's consultation phone
    /// hears the far end's status before the leg is forgotten (which would
    /// end the consultation with 487), then whoever waited for it goes on.
    fn leg_not_answered(
        &mut self,
        now: Now,
        leg: LegKey,
        key: CallId,
        purpose: TrunkPurpose,
        code: u16,
    ) {
        if let TrunkPurpose::Consult(consultation) = purpose {
            self.consultation_failed(now, consultation, code);
        }
        self.trunk_leg_over(now, leg, Some(code), crate::cdr::hung_up_by::SERVICE);
        self.not_put_through(now, key, purpose, code);
    }

    /// After a trunk leg failed: the flow's `on_failure`, back to the queue
    /// for a transfer the API asked for, or a callback's next attempt.
    fn not_put_through(&mut self, now: Now, key: CallId, purpose: TrunkPurpose, code: u16) {
        if let TrunkPurpose::Consult(consultation) = purpose {
            self.consultation_failed(now, consultation, code);
            return;
        }
        if purpose != TrunkPurpose::Callback {
            self.observe(Observation::TransferEnded {
                result: transfer_result::FAILED,
            });
        }
        match purpose {
            TrunkPurpose::Api => self.back_to_queue(now, key),
            // The agent still has the caller: told, they go on talking.
            TrunkPurpose::Refer(agent_leg) => {
                self.endpoint
                    .notify_refer(now.mono, agent_leg, &status_line(code), true)
            }
            TrunkPurpose::Flow => self.flow_event(now, key, FlowEvent::TransferFailed),
            TrunkPurpose::Callback => self.callback_attempt_failed(now, key, code),
            TrunkPurpose::Consult(_) => {}
        }
    }

    /// The answered far end hung up (or its session failed): the call is over.
    pub(super) fn trunk_leg_ended(&mut self, now: Now, leg: LegKey, reason: EndReason) {
        let Some((key, purpose)) = self.trunk_legs.get(&leg).map(|l| (l.call, l.purpose)) else {
            return;
        };
        tracing::info!(call = key.0, leg = leg.0, reason = ?reason, "trunk leg ended");
        let by = match (reason == EndReason::RemoteBye, purpose) {
            (true, TrunkPurpose::Callback) => crate::cdr::hung_up_by::CALLER,
            (true, _) => crate::cdr::hung_up_by::FAR_END,
            (false, _) => crate::cdr::hung_up_by::SERVICE,
        };
        self.trunk_leg_over(now, leg, None, by);
        // A consultation's far end hung up: the agent still has the caller.
        if matches!(purpose, TrunkPurpose::Consult(_)) {
            return;
        }
        if purpose == TrunkPurpose::Callback {
            self.callback_call_ended(now, key);
            return;
        }
        self.end_call_locally(now, key, LocalEnd::Transferred, "far end hung up");
    }

    /// Ends a trunk leg from our side (its other party hung up): BYE after
    /// the answer, CANCEL before.
    pub(super) fn hang_up_trunk_leg(&mut self, now: Now, leg: LegKey) {
        let answered = self
            .trunk_legs
            .get(&leg)
            .is_some_and(|l| l.answered_at.is_some());
        if answered {
            self.endpoint.hangup(now.mono, leg);
        } else {
            self.endpoint.cancel(now.mono, leg);
        }
        let code = (!answered).then_some(487);
        self.trunk_leg_over(now, leg, code, crate::cdr::hung_up_by::AGENT);
    }

    /// The far end re-INVITEs: follow it.
    pub(super) fn trunk_leg_reoffer(&mut self, now: Now, leg: LegKey, offer: Option<String>) {
        let negotiated = offer.as_deref().map(sdp::negotiate_text);
        let (Some(info), Some(Ok(n))) = (self.trunk_legs.get_mut(&leg), negotiated) else {
            self.endpoint.answer_leg_reoffer(now.mono, leg, None);
            return;
        };
        info.sdp_version += 1;
        let answer = n.answer().render(
            self.media_ip,
            info.local_port,
            info.call.0,
            info.sdp_version,
        );
        let media_key = trunk_media_key(info.call);
        self.media.update(media_key, n.stream_params());
        self.endpoint
            .answer_leg_reoffer(now.mono, leg, Some(&answer));
    }

    /// The caller's call ends: cancel or hang up its transfer leg.
    pub(super) fn drop_trunk_leg(&mut self, now: Now, key: CallId) {
        let Some(leg) = self.calls.get_mut(&key).and_then(|c| c.trunk_leg.take()) else {
            return;
        };
        self.endpoint.cancel(now.mono, leg);
        let answered = self
            .trunk_legs
            .get(&leg)
            .is_some_and(|l| l.answered_at.is_some());
        let code = (!answered).then_some(487);
        self.trunk_leg_over(now, leg, code, crate::cdr::hung_up_by::CALLER);
    }

    /// Forgets a transfer leg: media, the trunk's channel, and its record.
    fn trunk_leg_over(&mut self, now: Now, leg: LegKey, code: Option<u16>, by: &str) {
        let Some(info) = self.trunk_legs.remove(&leg) else {
            return;
        };
        let key = info.call;
        let media_key = trunk_media_key(key);
        let callback = info.purpose == TrunkPurpose::Callback;
        let consultation = match info.purpose {
            TrunkPurpose::Consult(c) => Some(c),
            _ => None,
        };
        if info.answered_at.is_some() {
            // A callback's bridge is between its two legs, a consultation's
            // between the agent's phone and this leg.
            let own_bridge = callback || consultation.is_some();
            self.media
                .unbridge(if own_bridge { media_key } else { key });
        }
        if let Some(c) = consultation {
            self.consultation_over(now, c);
        }
        self.media.close(media_key);
        self.trunks.release(info.route.trunk);
        self.gauges_changed = true;
        let call_record = self.calls.get_mut(&key).map(|call| {
            if call.trunk_leg == Some(leg) {
                call.trunk_leg = None;
            }
            if info.answered_at.is_some() && consultation.is_none() {
                call.transferred_to = Some(info.number.clone());
            }
            super::record_id(call, key)
        });
        // A callback's legs: one per attempt, named so across restarts.
        let (call_record, leg_id) = match self.callbacks.get(&key) {
            Some(cb) if callback => (
                Some(cb.record.call_record.clone()),
                format!(
                    "{}:callback:{}:{}",
                    cb.record.call_record, cb.record.id, cb.record.attempts_made
                ),
            ),
            _ => {
                let record = call_record.unwrap_or_default();
                (Some(record.clone()), format!("{record}:leg:{}", leg.0))
            }
        };
        let wall = |at: Instant| now.wall_ms_at(at);
        let outcome = match (info.answered_at, code) {
            (Some(_), _) => "answered",
            (None, Some(487)) => "cancelled",
            (None, _) => "failed",
        };
        self.outputs.push_back(super::Output::Leg(LegRecord {
            id: leg_id,
            call_record: call_record.unwrap_or_default(),
            kind: match (callback, consultation) {
                (true, _) => "callback",
                (false, Some(_)) => "consultation",
                (false, None) => "transfer",
            }
            .to_string(),
            trunk: info.route.trunk_name.clone(),
            number: info.number.clone(),
            caller_id: info.route.caller_id.clone(),
            outcome: outcome.to_string(),
            code,
            started_ms: wall(info.started_at),
            answered_ms: info.answered_at.map(wall),
            ended_ms: now.wall_ms(),
            hung_up_by: by.to_string(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn targets_are_numbers_or_uris_naming_a_trunk() {
        assert_eq!(parse_target("+4722000000"), ("+4722000000".into(), None));
        assert_eq!(
            parse_target("sip:113@emergency"),
            ("113".into(), Some("emergency".into()))
        );
        assert_eq!(
            parse_target("sip:+4722000000@pstn.example.org:5060;transport=udp"),
            ("+4722000000".into(), Some("pstn.example.org".into()))
        );
        assert_eq!(parse_target("sip:113"), ("113".into(), None));
    }
}
