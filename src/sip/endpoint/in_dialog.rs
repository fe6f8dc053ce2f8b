//! Requests inside a dialog (BYE, ACK, re-INVITE, UPDATE, INFO, OPTIONS),
//! the end of a dialog either way, and RFC 4028 session timers: what the
//! peer's refreshes do, our own refresh by UPDATE, and expiry.

use super::*;

impl SipEndpoint {
    /// A request with a To tag: 481 unless it names a dialog we have, 500
    /// with Retry-After when its CSeq is out of order, else by method.
    pub(super) fn handle_in_dialog(
        &mut self,
        now: Instant,
        key: &ServerKey,
        msg: &Message,
        to_tag: &str,
        reply: Reply,
    ) {
        let id = DialogId {
            call_id: msg.call_id().unwrap_or("").to_string(),
            local_tag: to_tag.to_string(),
            remote_tag: msg.from_tag().unwrap_or_default(),
        };
        let Some(&call) = self.dialogs.get(&id) else {
            self.respond(now, key, &reply, Answer::code(481));
            return;
        };
        let seq = msg.cseq().map(|c| c.seq).unwrap_or(0);
        let in_order = self
            .calls
            .get_mut(&call)
            .is_some_and(|c| c.dialog.accept_remote_cseq(seq));
        if !in_order {
            self.respond(now, key, &reply, Answer::try_again_soon());
            return;
        }
        if let Some(entry) = self.servers.get_mut(key) {
            entry.call = Some(call);
        }
        let method = msg
            .method()
            .cloned()
            .unwrap_or(Method::Other(String::new()));
        let Some(session) = self.calls.get(&call).map(|c| c.session(call)) else {
            return;
        };
        match method {
            Method::Bye => {
                self.respond(now, key, &reply, Answer::code(200));
                let state = self.calls.get(&call).map(|c| c.state);
                match state {
                    // Crossing BYEs: ours reports the end.
                    Some(CallState::Ending) => return,
                    // BYE in an early dialog: the INVITE's final response ends the leg.
                    Some(CallState::Dialing | CallState::Early | CallState::Cancelling) => return,
                    _ => {}
                }
                self.remove_call(now, call);
                self.push_ended(session, EndReason::RemoteBye);
            }
            Method::Invite => {
                let busy = self.calls.get(&call).is_some_and(|c| {
                    c.pending_ok.is_some()
                        || c.reinvite.is_some()
                        || c.state != CallState::Confirmed
                });
                if busy {
                    self.respond(now, key, &reply, Answer::try_again_soon());
                    return;
                }
                let timer_answer = match self.negotiate_timer(msg) {
                    Ok(t) => t,
                    Err(answer) => {
                        self.respond(now, key, &reply, answer);
                        return;
                    }
                };
                self.respond(now, key, &reply, Answer::code(100));
                let offer = msg.sdp_body();
                if let Some(c) = self.calls.get_mut(&call) {
                    if let Some(contact) = msg
                        .header("Contact")
                        .and_then(|v| split_list(v).into_iter().next())
                        .and_then(NameAddr::parse)
                    {
                        c.dialog.remote_target = contact.uri;
                    }
                    c.reinvite = Some((key.clone(), reply, seq));
                    c.timer_answer = timer_answer;
                }
                self.push_event(match session {
                    SessionKey::Call(call) => SipEvent::ReOffer { call, offer },
                    SessionKey::Leg(leg) => SipEvent::LegReOffer { leg, offer },
                });
            }
            Method::Info => {
                let content_type = msg.content_type();
                match content_type.as_deref() {
                    None if msg.body.is_empty() => {
                        self.respond(now, key, &reply, Answer::code(200));
                    }
                    Some(ct) if dtmf_relay::INFO_TYPES.contains(&ct) => {
                        self.respond(now, key, &reply, Answer::code(200));
                        if let Some(digit) = dtmf_relay::digit(ct, &msg.body) {
                            self.push_event(match session {
                                SessionKey::Call(call) => SipEvent::Dtmf { call, digit },
                                SessionKey::Leg(leg) => SipEvent::LegDtmf { leg, digit },
                            });
                        }
                    }
                    _ => {
                        let answer =
                            Answer::code(415).header("Accept", dtmf_relay::INFO_TYPES.join(", "));
                        self.respond(now, key, &reply, answer);
                    }
                }
            }
            Method::Options => {
                let answer = self.options_answer();
                self.respond(now, key, &reply, answer);
            }
            Method::Update => self.handle_update(now, key, msg, call, reply),
            Method::Refer => {
                let SessionKey::Leg(leg) = session else {
                    // Callers do not transfer themselves.
                    self.respond(now, key, &reply, Answer::code(403));
                    return;
                };
                let targets: Vec<&str> = msg.headers_named("Refer-To").collect();
                let target = match targets.as_slice() {
                    [one] => split_list(one)
                        .into_iter()
                        .next()
                        .and_then(NameAddr::parse)
                        .map(|n| n.uri),
                    _ => None,
                };
                let Some(target) = target else {
                    self.respond(now, key, &reply, Answer::code(400));
                    return;
                };
                // RFC 5589 attended transfer: the dialog to replace is named
                // in the URI's headers.
                let Ok((target, replaces)) = crate::sip::Replaces::in_uri(&target) else {
                    self.respond(now, key, &reply, Answer::code(400));
                    return;
                };
                self.respond(now, key, &reply, Answer::code(202));
                self.push_event(SipEvent::LegRefer {
                    leg,
                    target,
                    replaces,
                });
            }
            m => {
                let code = if m.is_known() { 405 } else { 501 };
                self.respond(now, key, &reply, Answer::code(code).header("Allow", ALLOW));
            }
        }
    }

    /// ACK: to a non-2xx final it belongs to the INVITE transaction; to our
    /// 2xx it confirms the dialog (first time: `Confirmed`), stops the 2xx
    /// repeats and sends a BYE that `hangup` left waiting for it.
    pub(super) fn handle_ack(&mut self, now: Instant, key: &ServerKey, msg: &Message) {
        if let Some(entry) = self.servers.get_mut(key) {
            if let ServerTx::Invite(tx) = &mut entry.tx {
                if tx.on_ack(now) {
                    self.reschedule_server(key);
                    return;
                }
            }
        }
        let (Some(call_id), Some(local_tag)) = (msg.call_id(), msg.to_tag()) else {
            return;
        };
        let id = DialogId {
            call_id: call_id.to_string(),
            local_tag,
            remote_tag: msg.from_tag().unwrap_or_default(),
        };
        let Some(&call) = self.dialogs.get(&id) else {
            return;
        };
        let seq = msg.cseq().map(|c| c.seq);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.pending_ok.as_ref().map(|p| p.cseq) != seq {
            return;
        }
        c.pending_ok = None;
        let wake = c.wake.take();
        let first = c.state == CallState::Answered;
        let bye = c.bye_after_ack;
        if first {
            c.state = CallState::Confirmed;
        }
        if let Some(w) = wake {
            self.wakes.remove(&w);
        }
        // The session timer runs on (or, after the first ACK, starts).
        self.reschedule_call(call);
        if first {
            self.push_event(SipEvent::Confirmed { call });
        }
        if bye {
            self.send_bye(now, call, Some(EndReason::LocalBye));
        }
    }

    /// In-dialog UPDATE (RFC 3311), taken as a session refresh (RFC 4028
    /// 10): 200 with the negotiated Session-Expires, timer restarted. We make
    /// no offer/answer in UPDATE, so one with a body gets 488 and changes nothing.
    fn handle_update(
        &mut self,
        now: Instant,
        key: &ServerKey,
        msg: &Message,
        call: CallId,
        reply: Reply,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let session = c.session(call);
        if !matches!(c.state, CallState::Answered | CallState::Confirmed) {
            self.respond(now, key, &reply, Answer::try_again_soon());
            return;
        }
        if !msg.body.is_empty() {
            let answer = Answer::code(488).header("Accept", ACCEPT);
            self.respond(now, key, &reply, answer);
            return;
        }
        let timer = match self.negotiate_timer(msg) {
            Ok(t) => t,
            Err(answer) => {
                self.respond(now, key, &reply, answer);
                return;
            }
        };
        let contact = self.contact(reply.peer.transport);
        let mut answer = Answer::code(200)
            .header("Contact", contact)
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED);
        answer
            .headers
            .extend(timer.iter().flat_map(TimerAnswer::headers));
        if self.respond(now, key, &reply, answer).is_none() {
            return;
        }
        if let Some(c) = self.calls.get_mut(&call) {
            // UPDATE is a target refresh request (RFC 3311 5.2).
            if let Some(contact) = msg
                .header("Contact")
                .and_then(|v| split_list(v).into_iter().next())
                .and_then(NameAddr::parse)
                .filter(|c| c.uri != "*")
            {
                c.dialog.remote_target = contact.uri;
            }
            c.timer = timer.map(|t| t.timer(now));
        }
        tracing::debug!(?session, interval = ?timer.map(|t| t.session.interval),
            refresher = ?timer.map(|t| t.refresher), "session refreshed by the peer");
        self.reschedule_call(call);
    }

    /// RFC 4028 9 on a request that may carry a session timer: the answer to
    /// keep for its 2xx, or the 422 to send instead.
    pub(super) fn negotiate_timer(
        &self,
        msg: &Message,
    ) -> Result<Option<TimerAnswer>, Answer<'static>> {
        let request = TimerRequest::read(|name| msg.headers_named(name));
        match session_timer::uas_negotiate(&request, &self.session_timers) {
            UasDecision::TooSmall { min_se } => {
                Err(Answer::code(422).header("Min-SE", min_se.to_string()))
            }
            UasDecision::Accept {
                session,
                require_timer,
                refresher,
            } => Ok(Some(TimerAnswer {
                session,
                require: require_timer,
                refresher,
            })),
            UasDecision::NoTimer => Ok(None),
        }
    }

    /// The call layer's answer to a re-INVITE on a call or a leg.
    pub(super) fn answer_reinvite(&mut self, now: Instant, session: SessionKey, sdp: Option<&str>) {
        let call = session.slot();
        let Some((key, reply, seq)) = self
            .calls
            .get_mut(&call)
            .filter(|c| c.session(call) == session)
            .and_then(|c| c.reinvite.take())
        else {
            return;
        };
        let timer = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.timer_answer.take());
        match sdp {
            Some(sdp) => {
                let mut answer = self.ok_with_sdp(reply.peer.transport, sdp);
                answer
                    .headers
                    .extend(timer.iter().flat_map(TimerAnswer::headers));
                if let Some(bytes) = self.respond(now, &key, &reply, answer) {
                    // A re-INVITE is a session refresh (RFC 4028 10).
                    if let (Some(c), Some(t)) = (self.calls.get_mut(&call), timer) {
                        c.timer = Some(t.timer(now));
                    }
                    self.start_ok_retransmit(now, call, seq, bytes, reply.peer);
                }
            }
            None => {
                self.respond(
                    now,
                    &key,
                    &reply,
                    Answer::code(488).header("Accept", ACCEPT),
                );
            }
        }
    }

    /// Sends our session refresh: UPDATE without SDP (RFC 4028 7.4), us as
    /// refresher again. Its outcome arrives in `request_done`.
    fn send_refresh(&mut self, now: Instant, call: CallId) {
        let Some((transport, interval)) = self.calls.get(&call).and_then(|c| {
            let interval = c.timer.as_ref()?.interval().as_secs();
            Some((
                c.peer.transport,
                u32::try_from(interval).unwrap_or(u32::MAX),
            ))
        }) else {
            return;
        };
        let (branch, via) = self.new_via(transport);
        let user_agent = self.config.user_agent.clone();
        let ours = TimerConfig {
            session_expires: interval,
            min_se: self.session_timers.min_se.min(interval),
        };
        let mut extra = vec![("Contact".to_string(), self.contact(transport))];
        extra.extend(session_timer::uac_headers(
            &ours,
            Some(SessionExpires {
                interval,
                refresher: Some(session_timer::Refresher::Uac),
            }),
        ));
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let session = c.session(call);
        let bytes = c.dialog.request_with("UPDATE", &via, &user_agent, &extra);
        let peer = c.peer;
        if self.start_request(now, peer, &branch, "UPDATE", bytes, Purpose::Refresh(call)) {
            tracing::debug!(?session, interval, "session refresh sent");
        } else if let Some(t) = self.calls.get_mut(&call).and_then(|c| c.timer.as_mut()) {
            // No room to track it: try again at the next half interval.
            tracing::warn!(?session, "no room for a session refresh");
            t.refresh_declined(now, None);
        }
    }

    /// The outcome of our session refresh: 408/481/none means the peer is
    /// gone (as a failed probe); a 2xx starts a new interval; anything else
    /// shows the peer alive, so the session goes on.
    pub(super) fn refresh_done(
        &mut self,
        now: Instant,
        call: CallId,
        code: Option<u16>,
        msg: Option<&Message>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state != CallState::Confirmed {
            return;
        }
        let session = c.session(call);
        let Some(t) = c.timer.as_mut() else {
            return;
        };
        match code {
            None | Some(408) | Some(481) => {
                c.timer = None;
                tracing::info!(?session, ?code, "session refresh failed: peer gone");
                self.push_event(SipEvent::ProbeFailed {
                    session,
                    code: code.unwrap_or(408),
                });
                return;
            }
            Some(200..=299) => {
                let current = u32::try_from(t.interval().as_secs()).unwrap_or(u32::MAX);
                let se = msg.and_then(|m| m.header("Session-Expires"));
                // A 2xx without Session-Expires (a peer without timers):
                // we go on refreshing, as our check that it is still there.
                let (interval, side) =
                    session_timer::uac_read_2xx(se).unwrap_or((current, Side::Us));
                t.refreshed(now, interval, side);
            }
            Some(422) => {
                let min_se = msg
                    .and_then(|m| m.header("Min-SE"))
                    .and_then(session_timer::parse_min_se);
                t.refresh_declined(now, min_se);
            }
            Some(_) => t.refresh_declined(now, None),
        }
        self.reschedule_call(call);
    }

    /// 2xx retransmission: T1, 2T1, ... capped at T2; give up after 64*T1.
    /// Also the wait for the final response after our CANCEL, and the
    /// session timer of a confirmed session.
    pub(super) fn call_timeout(&mut self, now: Instant, call: CallId) {
        let action = self
            .calls
            .get_mut(&call)
            .filter(|c| c.state == CallState::Confirmed)
            .and_then(|c| c.timer.as_mut())
            .and_then(|t| t.poll(now));
        match action {
            Some(TimerAction::Refresh) => self.send_refresh(now, call),
            Some(TimerAction::Expired) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.timer = None;
                    let session = c.session(call);
                    tracing::info!(?session, "session expired: no refresh from the peer");
                    self.push_event(SipEvent::SessionExpired { session });
                }
            }
            None => {}
        }
        self.pending_timeout(now, call);
    }

    /// Sends BYE in a client transaction; `report` is the `Ended` reason to
    /// emit when it finishes (None when the call layer was already told).
    pub(super) fn send_bye(&mut self, now: Instant, call: CallId, report: Option<EndReason>) {
        let user_agent = self.config.user_agent.clone();
        let Some(transport) = self.calls.get(&call).map(|c| c.peer.transport) else {
            return;
        };
        let (branch, via) = self.new_via(transport);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let bytes = c.dialog.request("BYE", &via, &user_agent);
        c.state = CallState::Ending;
        c.pending_ok = None;
        if let Some(o) = c.outgoing() {
            o.cancel_deadline = None;
        }
        let peer = c.peer;
        if let Some(w) = c.wake.take() {
            self.wakes.remove(&w);
        }
        if self.clients.len() >= self.max_clients() {
            // No room to track the BYE: send once and end now.
            self.push_transmit(peer, bytes);
            match report {
                Some(reason) => self.finish_call(call, reason),
                None => self.forget_call(call),
            }
            return;
        }
        self.start_request(now, peer, &branch, "BYE", bytes, Purpose::Bye(call, report));
    }

    /// The BYE finished: report and forget the call.
    pub(super) fn finish_call(&mut self, call: CallId, reason: EndReason) {
        if let Some(session) = self.calls.get(&call).map(|c| c.session(call)) {
            self.forget_call(call);
            self.push_ended(session, reason);
        }
    }

    pub(super) fn push_ended(&mut self, session: SessionKey, reason: EndReason) {
        self.push_event(match session {
            SessionKey::Call(call) => SipEvent::Ended { call, reason },
            SessionKey::Leg(leg) => SipEvent::LegEnded { leg, reason },
        });
    }

    /// Drops a call, answering any INVITE still open on it (the initial one or
    /// a re-INVITE) with 487 so that no transaction is left without an end.
    pub(super) fn remove_call(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let mut open = Vec::new();
        if let Some((key, reply, _)) = c.reinvite.take() {
            open.push((key, reply));
        }
        if c.state == CallState::Offered {
            open.extend(c.inbound());
        }
        for (key, reply) in open {
            // A transaction that already has its final response ignores this.
            self.respond(now, &key, &reply, Answer::code(487));
        }
        self.forget_call(call);
    }

    /// Drops a call and its dialog and wake-up, sending nothing.
    pub(super) fn forget_call(&mut self, call: CallId) {
        if let Some(c) = self.calls.remove(&call) {
            self.dialogs.remove(&c.dialog.id);
            if let Some(w) = c.wake {
                self.wakes.remove(&w);
            }
        }
    }
}
