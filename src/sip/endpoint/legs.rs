//! Outbound legs: INVITEs we send (e.g. to an agent's softphone), their
//! CANCEL, the ACK for 2xx (RFC 3261 13.2.2.4) and for other finals (17.1.1.3),
//! and probing a session with in-dialog OPTIONS.
//!
//! Each leg's events end in exactly one `LegFailed` (never answered) or one
//! `LegEnded` (after `LegAnswered`, or when a 2xx crossed our CANCEL).

use super::*;

/// At most this many To tags (forks) get an ACK remembered per INVITE.
const MAX_FORK_ACKS: usize = 8;

impl SipEndpoint {
    /// Sends an INVITE. The leg's fate arrives as events; when the endpoint is
    /// full (or the request is unusable) that is `LegFailed` 503 (or 400) at once.
    pub fn invite(&mut self, now: Instant, out: OutboundInvite) -> LegKey {
        let slot = CallId(self.next_call);
        self.next_call += 1;
        let leg = LegKey(slot.0);
        if self.calls.len() >= self.config.max_calls || self.clients.len() >= self.max_clients() {
            tracing::warn!(?leg, "no room for another leg");
            self.push_event(SipEvent::LegFailed { leg, code: 503 });
            return leg;
        }
        if !usable_request_uri(&out.request_uri)
            || out
                .to_uri
                .as_deref()
                .is_some_and(|u| !usable_request_uri(u))
        {
            tracing::warn!(?leg, uri = %out.request_uri, "leg refused: unusable Request-URI");
            self.push_event(SipEvent::LegFailed { leg, code: 400 });
            return leg;
        }
        let peer = Peer {
            transport: out.transport,
            addr: out.destination,
        };
        let (branch, via) = self.new_via(out.transport);
        let local = self.config.local_addr;
        let local_uri = match out.from_display.as_deref().map(quoted_display) {
            Some(d) if d.len() > 2 => format!("{d} <sip:{}@{local}>", escape_user(&out.from_user)),
            _ => format!("<sip:{}@{local}>", escape_user(&out.from_user)),
        };
        let local_tag = new_tag();
        let sent = Sent {
            request_uri: out.request_uri.clone(),
            via,
            from: format!("{local_uri};tag={local_tag}"),
            local_uri,
            local_tag,
            to: match &out.to_uri {
                Some(uri) => format!("<{uri}>"),
                None => format!("<sip:{}@{local}>", escape_user(&out.to_user)),
            },
            call_id: format!(
                "{:016x}{:08x}@{}",
                rand::random::<u64>(),
                rand::random::<u32>(),
                local.ip()
            ),
            cseq: 1,
        };
        let headers = clean_headers(out.headers);
        let bytes = self.invite_bytes(&sent, out.transport, &headers, &out.sdp, None);
        let auth = out.credentials.map(|credentials| {
            Box::new(AuthRetry {
                credentials,
                transport: out.transport,
                headers,
                sdp: out.sdp,
                answered: 0,
            })
        });
        let key = client_key(&branch, "INVITE");
        let reliable = out.transport.is_reliable();
        let tx = InviteClient::new(now, self.timers, reliable, bytes.clone());
        self.clients.insert(
            key.clone(),
            ClientEntry {
                tx: ClientTx::Invite(tx),
                peer,
                purpose: Purpose::Invite(Box::new(InviteTx {
                    leg: slot,
                    sent: sent.clone(),
                    acks: Vec::new(),
                    auth,
                })),
                wake: None,
            },
        );
        // Until a response names the peer's tag, the dialog is only ours.
        let dialog = Dialog {
            id: DialogId {
                call_id: sent.call_id.clone(),
                local_tag: sent.local_tag.clone(),
                remote_tag: String::new(),
            },
            local_uri: sent.local_uri.clone(),
            remote_uri: sent.to.clone(),
            remote_cseq: 0,
            local_cseq: sent.cseq,
            remote_target: sent.request_uri.clone(),
            route_set: Vec::new(),
        };
        self.calls.insert(
            slot,
            Call {
                origin: Origin::Outbound(Box::new(Outgoing {
                    invite_tx: key.clone(),
                    sent,
                    ringing_reported: false,
                    cancel_pending: false,
                    cancel_deadline: None,
                })),
                state: CallState::Dialing,
                dialog,
                peer,
                probe: None,
                pending_ok: None,
                wake: None,
                reinvite: None,
                bye_after_ack: false,
                timer_answer: None,
                timer: None,
            },
        );
        tracing::debug!(?leg, "INVITE sent");
        self.push_transmit(peer, bytes);
        self.reschedule_client(&key);
        leg
    }

    /// The INVITE of `sent`, with `authorization` (header name and value)
    /// when it answers a challenge.
    fn invite_bytes(
        &self,
        sent: &Sent,
        transport: Transport,
        headers: &[(String, String)],
        sdp: &str,
        authorization: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let mut w = sent.request("INVITE", &sent.to);
        w.header("Contact", &self.contact(transport))
            .header("Allow", ALLOW)
            .header("User-Agent", &self.config.user_agent);
        if let Some((name, value)) = authorization {
            w.header(name, value);
        }
        // RFC 4028 7.1: offer a session timer; the called phone picks the refresher.
        for (name, value) in session_timer::uac_headers(&self.session_timers, None) {
            w.header(&name, &value);
        }
        for (name, value) in headers {
            w.header(name, value);
        }
        w.finish(Some("application/sdp"), sdp.as_bytes())
    }

    /// A 401/407 to a leg's INVITE: sends it again with credentials, in a
    /// new transaction. False when the challenge cannot or must not be
    /// answered (no credentials, already answered, unreadable, cancelled).
    fn answer_challenge(&mut self, now: Instant, key: &str, code: u16, msg: &Message) -> bool {
        let (challenge_header, answer_header) = if code == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let Some(Purpose::Invite(inv)) = self.clients.get(key).map(|e| &e.purpose) else {
            return false;
        };
        let Some(auth) = inv.auth.as_ref() else {
            return false;
        };
        let slot = inv.leg;
        let challenge = msg
            .headers_named(challenge_header)
            .find_map(|v| crate::digest::parse_challenge(v).ok());
        let Some(challenge) = challenge else {
            tracing::warn!(
                leg = slot.0,
                code,
                "leg challenged in a way we cannot answer"
            );
            return false;
        };
        if auth.answered >= 2 || (auth.answered == 1 && !challenge.stale) {
            tracing::warn!(leg = slot.0, code, realm = %challenge.realm, "leg credentials refused");
            return false;
        }
        let dialing = self
            .calls
            .get(&slot)
            .is_some_and(|c| matches!(c.state, CallState::Dialing | CallState::Early));
        if !dialing {
            return false;
        }
        let mut sent = inv.sent.clone();
        let (branch, via) = self.new_via(auth.transport);
        sent.via = via;
        sent.cseq += 1;
        let value = crate::digest::answer_challenge(
            &challenge,
            &auth.credentials.username,
            &auth.credentials.password,
            "INVITE",
            &sent.request_uri,
            &format!("{:016x}", rand::random::<u64>()),
            1,
        );
        let bytes = self.invite_bytes(
            &sent,
            auth.transport,
            &auth.headers,
            &auth.sdp,
            Some((answer_header, &value)),
        );
        let Some(entry) = self.clients.get_mut(key) else {
            return false;
        };
        let peer = entry.peer;
        // The old transaction only absorbs retransmissions of the challenge.
        let Purpose::Invite(mut inv) = std::mem::replace(&mut entry.purpose, Purpose::Done) else {
            return false;
        };
        if let Some(a) = inv.auth.as_mut() {
            a.answered += 1;
        }
        inv.sent = sent.clone();
        inv.acks.clear();
        let new_key = client_key(&branch, "INVITE");
        let tx = InviteClient::new(
            now,
            self.timers,
            peer.transport.is_reliable(),
            bytes.clone(),
        );
        self.clients.insert(
            new_key.clone(),
            ClientEntry {
                tx: ClientTx::Invite(tx),
                peer,
                purpose: Purpose::Invite(inv),
                wake: None,
            },
        );
        if let Some(c) = self.calls.get_mut(&slot) {
            // A tagged 1xx before the challenge made an early dialog that is now dead.
            let early = c.dialog.id.clone();
            c.dialog.id.remote_tag.clear();
            c.dialog.local_cseq = sent.cseq;
            c.state = CallState::Dialing;
            if let Some(o) = c.outgoing() {
                o.invite_tx = new_key.clone();
                o.sent = sent;
            }
            if !early.remote_tag.is_empty() && self.dialogs.get(&early) == Some(&slot) {
                self.dialogs.remove(&early);
            }
        }
        tracing::debug!(leg = slot.0, code, "answering the challenge");
        self.push_transmit(peer, bytes);
        self.reschedule_client(&new_key);
        true
    }

    /// RFC 3515 3.4: tells the phone that sent a REFER how it went, as a
    /// NOTIFY in its dialog (`status` is a status line's code and phrase,
    /// e.g. `200 OK`); `done` ends the implicit subscription.
    pub fn notify_refer(&mut self, now: Instant, leg: LegKey, status: &str, done: bool) {
        let slot = CallId(leg.0);
        let Some(transport) = self.calls.get(&slot).map(|c| c.peer.transport) else {
            return;
        };
        let (branch, via) = self.new_via(transport);
        let user_agent = self.config.user_agent.clone();
        let state = if done {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let extra = vec![
            ("Event".to_string(), "refer".to_string()),
            ("Subscription-State".to_string(), state.to_string()),
            ("Contact".to_string(), self.contact(transport)),
        ];
        let Some(c) = self.calls.get_mut(&slot) else {
            return;
        };
        let body = format!("SIP/2.0 {status}\r\n");
        let bytes = c.dialog.request_with_body(
            "NOTIFY",
            &via,
            &user_agent,
            &extra,
            "message/sipfrag;version=2.0",
            body.as_bytes(),
        );
        let peer = c.peer;
        if !self.start_request(now, peer, &branch, "NOTIFY", bytes.clone(), Purpose::Done) {
            self.push_transmit(peer, bytes);
        }
    }

    /// Cancels a leg that is not answered yet. RFC 3261 9.1: the CANCEL waits
    /// for a provisional response. An answered leg is hung up instead.
    pub fn cancel(&mut self, now: Instant, leg: LegKey) {
        let slot = CallId(leg.0);
        let Some(c) = self.calls.get(&slot) else {
            return;
        };
        if c.session(slot) != SessionKey::Leg(leg) {
            return;
        }
        match c.state {
            CallState::Dialing | CallState::Early => self.cancel_leg(now, slot),
            CallState::Confirmed => self.send_bye(now, slot, Some(EndReason::LocalBye)),
            _ => {}
        }
    }

    pub(super) fn cancel_leg(&mut self, now: Instant, slot: CallId) {
        let Some(c) = self.calls.get_mut(&slot) else {
            return;
        };
        let early = c.state == CallState::Early;
        c.state = CallState::Cancelling;
        if early {
            self.send_cancel(now, slot);
        } else if let Some(o) = c.outgoing() {
            o.cancel_pending = true;
        }
    }

    fn send_cancel(&mut self, now: Instant, slot: CallId) {
        let deadline = now + self.timers.timeout();
        let user_agent = self.config.user_agent.clone();
        let Some(c) = self.calls.get_mut(&slot) else {
            return;
        };
        let peer = c.peer;
        let Some(o) = c.outgoing() else {
            return;
        };
        o.cancel_pending = false;
        o.cancel_deadline = Some(deadline);
        let sent = &o.sent;
        let mut w = sent.request("CANCEL", &sent.to);
        w.header("User-Agent", &user_agent);
        let bytes = w.finish(None, b"");
        let branch = branch_of(&sent.via).to_string();
        self.reschedule_call(slot);
        if !self.start_request(now, peer, &branch, "CANCEL", bytes.clone(), Purpose::Cancel) {
            // No room to track it: one attempt; the deadline still bounds the wait.
            self.push_transmit(peer, bytes);
        }
    }

    /// Sends an in-dialog OPTIONS on an established call or leg;
    /// `ProbeFailed` follows on 408, 481 or no answer. One probe at a time.
    pub fn probe(&mut self, now: Instant, session: impl Into<SessionKey>) {
        let session = session.into();
        let slot = session.slot();
        let Some(c) = self.calls.get(&slot) else {
            return;
        };
        if c.session(slot) != session || c.state != CallState::Confirmed || c.probe.is_some() {
            return;
        }
        let (branch, via) = self.new_via(c.peer.transport);
        let user_agent = self.config.user_agent.clone();
        if self.clients.len() >= self.max_clients() {
            tracing::warn!(?session, "no room to probe");
            return;
        }
        let Some(c) = self.calls.get_mut(&slot) else {
            return;
        };
        let bytes = c.dialog.request("OPTIONS", &via, &user_agent);
        c.probe = Some(client_key(&branch, "OPTIONS"));
        let peer = c.peer;
        self.start_request(now, peer, &branch, "OPTIONS", bytes, Purpose::Probe(slot));
    }

    /// A response matched a leg's INVITE transaction.
    pub(super) fn invite_response(
        &mut self,
        now: Instant,
        key: &str,
        event: InviteClientEvent,
        msg: &Message,
    ) {
        match event {
            InviteClientEvent::Provisional(code) => self.leg_provisional(now, key, code, msg),
            InviteClientEvent::Success(_) => self.leg_success(now, key, msg),
            InviteClientEvent::Failure(code) => self.leg_failure(now, key, code, msg),
            InviteClientEvent::ResendAck => {
                if let Some(entry) = self.clients.get(key) {
                    if let ClientTx::Invite(tx) = &entry.tx {
                        if let Some(ack) = tx.ack().map(<[u8]>::to_vec) {
                            let peer = entry.peer;
                            self.push_transmit(peer, ack);
                        }
                    }
                }
            }
            InviteClientEvent::Absorbed => {}
        }
    }

    fn invite_of(&self, key: &str) -> Option<&InviteTx> {
        match &self.clients.get(key)?.purpose {
            Purpose::Invite(inv) => Some(inv),
            _ => None,
        }
    }

    fn leg_provisional(&mut self, now: Instant, key: &str, code: u16, msg: &Message) {
        let Some(inv) = self.invite_of(key) else {
            return;
        };
        let (slot, sent) = (inv.leg, inv.sent.clone());
        let Some(c) = self.calls.get_mut(&slot) else {
            return;
        };
        let was = c.state;
        if was == CallState::Dialing {
            c.state = CallState::Early;
        }
        // The first tagged provisional makes the early dialog (RFC 3261 12.1.2).
        let mut early = None;
        if msg.to_tag().is_some()
            && c.dialog.id.remote_tag.is_empty()
            && matches!(
                was,
                CallState::Dialing | CallState::Early | CallState::Cancelling
            )
        {
            c.dialog = Dialog::from_response(&sent.as_invite(), msg);
            early = Some(c.dialog.id.clone());
        }
        let leg = LegKey(slot.0);
        let mut ringing = false;
        let mut cancel_now = false;
        if let Some(o) = c.outgoing() {
            if (180..=183).contains(&code) && !o.ringing_reported && was != CallState::Cancelling {
                o.ringing_reported = true;
                ringing = true;
            }
            cancel_now = o.cancel_pending;
        }
        if let Some(id) = early {
            self.dialogs.insert(id, slot);
        }
        if ringing {
            self.push_event(SipEvent::LegRinging { leg });
        }
        if cancel_now {
            self.send_cancel(now, slot);
        }
    }

    fn leg_success(&mut self, now: Instant, key: &str, msg: &Message) {
        let tag = msg.to_tag().unwrap_or_default();
        let Some(transport) = self.clients.get(key).map(|e| e.peer.transport) else {
            return;
        };
        let (_, via) = self.new_via(transport);
        let user_agent = self.config.user_agent.clone();
        let Some(entry) = self.clients.get_mut(key) else {
            return;
        };
        let peer = entry.peer;
        let Purpose::Invite(inv) = &mut entry.purpose else {
            return;
        };
        if let Some((_, ack)) = inv.acks.iter().find(|(t, _)| *t == tag) {
            // A retransmitted 2xx: our ACK was lost (RFC 3261 13.2.2.4).
            let ack = ack.clone();
            self.push_transmit(peer, ack);
            return;
        }
        let dialog = Dialog::from_response(&inv.sent.as_invite(), msg);
        let ack = dialog.ack(inv.sent.cseq, &via, &user_agent);
        if inv.acks.len() < MAX_FORK_ACKS {
            inv.acks.push((tag, ack.clone()));
        }
        let slot = inv.leg;
        self.push_transmit(peer, ack);
        let state = self.calls.get(&slot).map(|c| c.state);
        match state {
            Some(CallState::Dialing | CallState::Early | CallState::Cancelling) => {
                // RFC 4028 7.2: no Session-Expires in the 2xx, no session timer.
                let timer = session_timer::uac_read_2xx(msg.header("Session-Expires"))
                    .map(|(interval, side)| SessionTimer::new(now, interval, side));
                self.confirm_leg(slot, dialog, timer);
                if state == Some(CallState::Cancelling) {
                    // The 2xx crossed our CANCEL: the session exists, end it.
                    tracing::info!(leg = slot.0, "2xx crossed CANCEL: sending BYE");
                    self.send_bye(now, slot, Some(EndReason::LocalBye));
                } else {
                    let answer_sdp = msg.sdp_body();
                    self.push_event(SipEvent::LegAnswered {
                        leg: LegKey(slot.0),
                        answer_sdp,
                    });
                }
            }
            // A second fork answered (or the leg is gone): ACK and BYE it.
            _ => self.bye_stray(now, peer, dialog),
        }
    }

    fn confirm_leg(&mut self, slot: CallId, dialog: Dialog, timer: Option<SessionTimer>) {
        let Some(c) = self.calls.get_mut(&slot) else {
            return;
        };
        let early = std::mem::replace(&mut c.dialog, dialog);
        c.state = CallState::Confirmed;
        c.timer = timer;
        if let Some(o) = c.outgoing() {
            o.cancel_deadline = None;
            o.cancel_pending = false;
        }
        let id = c.dialog.id.clone();
        if self.dialogs.get(&early.id) == Some(&slot) {
            self.dialogs.remove(&early.id);
        }
        self.dialogs.insert(id, slot);
        self.reschedule_call(slot);
    }

    fn bye_stray(&mut self, now: Instant, peer: Peer, mut dialog: Dialog) {
        let (branch, via) = self.new_via(peer.transport);
        let bytes = dialog.request("BYE", &via, &self.config.user_agent.clone());
        if !self.start_request(now, peer, &branch, "BYE", bytes.clone(), Purpose::Done) {
            self.push_transmit(peer, bytes);
        }
    }

    fn leg_failure(&mut self, now: Instant, key: &str, code: u16, msg: &Message) {
        let user_agent = self.config.user_agent.clone();
        let Some(entry) = self.clients.get_mut(key) else {
            return;
        };
        let peer = entry.peer;
        let Purpose::Invite(inv) = &entry.purpose else {
            return;
        };
        // RFC 3261 17.1.1.3: the ACK reuses the INVITE's branch and the
        // response's To; the transaction repeats it for retransmitted finals.
        let sent = &inv.sent;
        let mut w = sent.request("ACK", msg.header("To").unwrap_or(&sent.to));
        w.header("User-Agent", &user_agent);
        let ack = w.finish(None, b"");
        let slot = inv.leg;
        if let ClientTx::Invite(tx) = &mut entry.tx {
            tx.set_ack(ack.clone());
        }
        self.push_transmit(peer, ack);
        if matches!(code, 401 | 407) && self.answer_challenge(now, key, code, msg) {
            return;
        }
        self.leg_failed(slot, code);
    }

    /// The leg's INVITE ended without a session: report and forget it.
    pub(super) fn leg_failed(&mut self, slot: CallId, code: u16) {
        let unanswered = self.calls.get(&slot).is_some_and(|c| {
            matches!(c.origin, Origin::Outbound(_))
                && matches!(
                    c.state,
                    CallState::Dialing | CallState::Early | CallState::Cancelling
                )
        });
        if !unanswered {
            return;
        }
        tracing::debug!(leg = slot.0, code, "leg failed");
        self.forget_call(slot);
        self.push_event(SipEvent::LegFailed {
            leg: LegKey(slot.0),
            code,
        });
    }

    /// No final response 64*T1 after our CANCEL (RFC 3261 9.1): give up on
    /// the INVITE and its transaction.
    pub(super) fn cancel_expired(&mut self, slot: CallId) {
        let Some(key) = self
            .calls
            .get_mut(&slot)
            .and_then(|c| c.outgoing().map(|o| o.invite_tx.clone()))
        else {
            return;
        };
        if let Some(entry) = self.clients.remove(&key) {
            if let Some(w) = entry.wake {
                self.wakes.remove(&w);
            }
        }
        self.leg_failed(slot, 408);
    }
}

/// A SIP or SIPS URI we can put on a request line.
fn usable_request_uri(uri: &str) -> bool {
    let scheme_ok = uri.split_once(':').is_some_and(|(s, rest)| {
        (s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips")) && !rest.is_empty()
    });
    scheme_ok && uri.len() <= 1024 && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The user part of a SIP URI, percent-encoding what RFC 3261 25.1 does not
/// allow there.
fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A display name as a quoted string, without control characters.
fn quoted_display(name: &str) -> String {
    let clean: String = name
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("\"{}\"", clean.trim())
}

/// The branch parameter of a Via we wrote.
fn branch_of(via: &str) -> &str {
    via.split(';')
        .find_map(|p| p.strip_prefix("branch="))
        .unwrap_or("")
}
