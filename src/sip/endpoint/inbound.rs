//! Requests that open something: a new INVITE (a call), CANCEL, OPTIONS and
//! other out-of-dialog requests, REGISTER handed to `register.rs`. Admission
//! runs first (scanners, rate limits), then the bounds, then `Require`; what
//! we refuse on our own is answered here and, for trusted INVITEs, reported.

use super::*;

impl SipEndpoint {
    /// Every request that parsed: counted, matched to its transaction (a
    /// retransmission is answered again), admitted, then sent on by kind.
    pub(super) fn handle_request(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        msg: Message,
    ) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        self.stats.count_request(method.as_str());
        let (Some(key), Some(essentials)) = (ServerKey::of(&msg), Essentials::from_message(&msg))
        else {
            return;
        };
        if method == Method::Ack {
            self.handle_ack(now, &key, &msg);
            return;
        }
        if self.servers.contains_key(&key) {
            self.absorb_retransmission(&key);
            return;
        }
        let tag = msg.to_tag();
        if msg
            .header("User-Agent")
            .is_some_and(|ua| self.admission.is_scanner(ua))
        {
            self.count_rejection(Rejection::Scanner);
            return;
        }
        if method != Method::Cancel && tag.is_none() {
            if let Some(class) = self.over_rate(now, source, &method) {
                if class != RequestClass::Other {
                    let reply = Reply::new(&essentials, source, transport, Some(&new_tag()));
                    let answer = Answer::full();
                    self.send_stateless(&reply, answer);
                }
                return;
            }
        }
        let reply = Reply::new(&essentials, source, transport, Some(&new_tag()));
        if method == Method::Cancel {
            self.handle_cancel(now, key, &msg, reply);
            return;
        }
        if !self.open_server(now, &key, method == Method::Invite, reply.peer, None) {
            let answer = Answer::full();
            self.send_stateless(&reply, answer);
            if method == Method::Invite && tag.is_none() {
                self.refused(&msg, source, 503, Refusal::MaxTransactions);
            }
            return;
        }
        let unsupported: Vec<&str> = msg
            .headers_named("Require")
            .flat_map(|r| r.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(SUPPORTED))
            .collect();
        if !unsupported.is_empty() {
            let answer = Answer::code(420).header("Unsupported", unsupported.join(", "));
            self.respond(now, &key, &reply, answer);
            return;
        }
        if method == Method::Register {
            self.new_register(now, key, &msg, reply, source, transport);
            return;
        }
        match tag {
            Some(to_tag) => self.handle_in_dialog(now, &key, &msg, &to_tag, reply),
            None => match method {
                Method::Invite => self.new_call(now, key, msg, essentials, source, transport),
                Method::Options => {
                    let answer = self.options_answer();
                    self.respond(now, &key, &reply, answer);
                }
                Method::Bye | Method::Info | Method::Update | Method::Prack => {
                    self.respond(now, &key, &reply, Answer::code(481));
                }
                m => {
                    let code = if m.is_known() { 405 } else { 501 };
                    self.respond(now, &key, &reply, Answer::code(code).header("Allow", ALLOW));
                }
            },
        }
    }

    /// Draws on `source`'s budget for a new request; the class whose budget
    /// is empty when over (counted). In-dialog requests are not limited: they
    /// belong to calls already admitted. Over-budget OPTIONS and the like are
    /// dropped unanswered, so a flood costs no replies.
    fn over_rate(
        &mut self,
        now: Instant,
        source: SocketAddr,
        method: &Method,
    ) -> Option<RequestClass> {
        let class = match method {
            Method::Invite => RequestClass::Invite,
            Method::Register => RequestClass::Register,
            _ => RequestClass::Other,
        };
        if self.admission.take(now, source.ip(), class) {
            return None;
        }
        self.count_rejection(Rejection::RateLimited);
        Some(class)
    }

    /// A new INVITE: 503 when full, 400 without a usable dialog, 482 for a
    /// request that repeats a dialog we have (merged or looped), 422 for a
    /// too small session interval; else 100 Trying and
    /// `IncomingCall`.
    fn new_call(
        &mut self,
        now: Instant,
        key: ServerKey,
        msg: Message,
        essentials: Essentials,
        source: SocketAddr,
        transport: Transport,
    ) {
        let local_tag = new_tag();
        let tagged = Reply::new(&essentials, source, transport, Some(&local_tag));
        if self.calls.len() >= self.config.max_calls {
            let answer = Answer::full();
            self.respond(now, &key, &tagged, answer);
            self.refused(&msg, source, 503, Refusal::MaxCalls);
            return;
        }
        let dialog = match Dialog::from_invite(&msg, &local_tag) {
            Ok(d) => d,
            Err(e) => {
                let answer = Answer::code(400).header("Warning", format!("399 hotline \"{e}\""));
                self.respond(now, &key, &tagged, answer);
                return;
            }
        };
        if self.dialogs.contains_key(&dialog.id) {
            self.respond(now, &key, &tagged, Answer::code(482));
            return;
        }
        let timer_answer = match self.negotiate_timer(&msg) {
            Ok(t) => t,
            Err(answer) => {
                tracing::info!(sip_call_id = %dialog.id.call_id, %source,
                    "session interval too small: 422");
                self.respond(now, &key, &tagged, answer);
                return;
            }
        };
        // 100 Trying carries no To tag (RFC 3261 8.2.6.2).
        let bare = Reply::new(&essentials, source, transport, None);
        self.respond(now, &key, &bare, Answer::code(100));
        let call = CallId(self.next_call);
        self.next_call += 1;
        if let Some(entry) = self.servers.get_mut(&key) {
            entry.call = Some(call);
        }
        let from = msg.header("From").unwrap_or("");
        let from_uri = NameAddr::parse(from).map(|n| n.uri).unwrap_or_default();
        let offer = msg.sdp_body();
        let incoming = IncomingCall {
            call,
            call_id: dialog.id.call_id.clone(),
            from_user: uri_user(&from_uri).unwrap_or_default(),
            from_display: display_name(from),
            dialled: msg.request_uri().and_then(uri_user).unwrap_or_default(),
            offer,
            source,
            transport,
            request_uri: msg.request_uri().unwrap_or("").to_string(),
            authorization: msg
                .header("Authorization")
                .or_else(|| msg.header("Proxy-Authorization"))
                .map(str::to_string),
        };
        self.dialogs.insert(dialog.id.clone(), call);
        self.calls.insert(
            call,
            Call {
                origin: Origin::Inbound(Box::new((key, tagged))),
                state: CallState::Offered,
                dialog,
                probe: None,
                // In-dialog requests go back where the INVITE came from
                // (symmetric signalling: works behind NAT and reuses TCP).
                peer: Peer {
                    transport,
                    addr: source,
                },
                pending_ok: None,
                wake: None,
                reinvite: None,
                bye_after_ack: false,
                timer_answer,
                timer: None,
            },
        );
        self.push_event(SipEvent::IncomingCall(incoming));
    }

    /// CANCEL: 200 (with the To tag of our INVITE responses), then 487 to an
    /// INVITE still unanswered (`Cancelled`); a cancelled re-INVITE ends only
    /// itself. 481 when no INVITE matches.
    fn handle_cancel(&mut self, now: Instant, key: ServerKey, msg: &Message, reply: Reply) {
        let invite_key = key.invite_of_cancel();
        let target = self.servers.get(&invite_key).map(|e| {
            let pending =
                matches!(&e.tx, ServerTx::Invite(t) if t.state() == InviteServerState::Proceeding);
            (e.call, pending)
        });
        let _ = msg;
        if !self.open_server(now, &key, false, reply.peer, None) {
            let answer = Answer::full();
            self.send_stateless(&reply, answer);
            return;
        }
        let Some((call, pending)) = target else {
            self.respond(now, &key, &reply, Answer::code(481));
            return;
        };
        // The CANCEL's 200 carries the To tag of our INVITE responses.
        let cancel_reply = match call
            .and_then(|c| self.calls.get(&c))
            .and_then(Call::inbound)
        {
            Some((_, invite_reply)) => Reply {
                to: invite_reply.to,
                ..reply
            },
            None => reply,
        };
        self.respond(now, &key, &cancel_reply, Answer::code(200));
        if !pending {
            return;
        }
        let Some(call) = call else {
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match c.inbound() {
            Some((initial, invite_reply)) if initial == invite_key => {
                self.respond(now, &invite_key, &invite_reply, Answer::code(487));
                self.remove_call(now, call);
                self.push_event(SipEvent::Cancelled { call });
            }
            // A cancelled re-INVITE ends only itself (RFC 3261 9.2).
            _ => {
                if c.reinvite
                    .as_ref()
                    .is_some_and(|(k, _, _)| *k == invite_key)
                {
                    if let Some((k, r, _)) = c.reinvite.take() {
                        self.respond(now, &k, &r, Answer::code(487));
                    }
                }
            }
        }
    }

    /// Tells the call layer about an INVITE refused here, when it came from a
    /// trusted source (others are only counted, never recorded).
    fn refused(&mut self, msg: &Message, source: SocketAddr, code: u16, reason: Refusal) {
        if !self.admission.is_trusted(source.ip()) {
            return;
        }
        let from = msg.header("From").unwrap_or("");
        let from_uri = NameAddr::parse(from).map(|n| n.uri).unwrap_or_default();
        self.push_event(SipEvent::Refused(RefusedCall {
            call_id: msg.call_id().unwrap_or("").to_string(),
            cseq: msg.cseq().map(|c| c.seq).unwrap_or(0),
            from_user: uri_user(&from_uri).unwrap_or_default(),
            dialled: msg.request_uri().and_then(uri_user).unwrap_or_default(),
            source,
            code,
            reason,
        }));
    }
}
