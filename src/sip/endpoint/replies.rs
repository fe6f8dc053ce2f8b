//! Building and sending responses: the reply template every response to a
//! request repeats (Via with `received`/`rport`, From, To with our tag,
//! Call-ID, CSeq), status and headers, and what happens after sending: a
//! server transaction absorbs repeated requests, and a 2xx to an INVITE is
//! ours to repeat until its ACK (RFC 3261 13.3.1.4).

use super::*;

/// The parts of a request that every response to it repeats.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub(super) vias: Vec<String>,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) call_id: String,
    pub(super) cseq: String,
    pub(super) peer: Peer,
}

impl Reply {
    /// RFC 3261 18.2.2 / RFC 3581: responses go back to the source IP; on UDP to
    /// the source port when `rport` was asked for, else to the sent-by port.
    /// `received`/`rport` are stamped into the top Via. `to_tag` is added when
    /// the To has none.
    pub(super) fn new(
        e: &Essentials,
        source: SocketAddr,
        transport: Transport,
        to_tag: Option<&str>,
    ) -> Reply {
        let mut vias = e.vias.clone();
        if let Some(first) = vias.first_mut() {
            let entries = split_list(first);
            let mut rebuilt = e.top_via.stamped(source);
            for rest in entries.iter().skip(1) {
                rebuilt.push_str(", ");
                rebuilt.push_str(rest);
            }
            *first = rebuilt;
        }
        let addr = match transport {
            Transport::Tcp => source,
            Transport::Udp if e.top_via.has_rport() => source,
            Transport::Udp => SocketAddr::new(source.ip(), e.top_via.port.unwrap_or(5060)),
        };
        let has_tag = NameAddr::parse(&e.to).is_some_and(|t| t.tag().is_some());
        let to = match to_tag {
            Some(tag) if !has_tag => format!("{};tag={}", e.to, tag),
            _ => e.to.clone(),
        };
        Reply {
            vias,
            from: e.from.clone(),
            to,
            call_id: e.call_id.clone(),
            cseq: e.cseq.clone(),
            peer: Peer { transport, addr },
        }
    }
}

/// A response to build: status, extra headers, body.
pub(super) struct Answer<'a> {
    pub(super) code: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Option<(&'a str, &'a [u8])>,
}

impl<'a> Answer<'a> {
    pub(super) fn code(code: u16) -> Answer<'a> {
        Answer {
            code,
            headers: Vec::new(),
            body: None,
        }
    }

    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Answer<'a> {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// 503 with `Retry-After`: no room for another call or transaction.
    pub(super) fn full() -> Answer<'a> {
        Answer::code(503).header("Retry-After", RETRY_AFTER_SECS.to_string())
    }

    /// 500 with `Retry-After: 1`: the request crossed another one in the
    /// dialog (RFC 3261 14.2) or came out of order; the peer may retry.
    pub(super) fn try_again_soon() -> Answer<'a> {
        Answer::code(500).header("Retry-After", "1")
    }
}

impl SipEndpoint {
    /// Our Contact, with `transport=tcp` when the peer came over TCP.
    pub(super) fn contact(&self, transport: Transport) -> String {
        match transport {
            Transport::Udp => format!("<sip:{}>", self.config.local_addr),
            Transport::Tcp => format!("<sip:{};transport=tcp>", self.config.local_addr),
        }
    }

    /// 200 with our SDP (to an INVITE or re-INVITE).
    pub(super) fn ok_with_sdp<'a>(&self, transport: Transport, sdp: &'a str) -> Answer<'a> {
        let contact = self.contact(transport);
        Answer {
            code: 200,
            headers: vec![
                ("Contact".to_string(), contact),
                ("Allow".to_string(), ALLOW.to_string()),
                ("Supported".to_string(), SUPPORTED.to_string()),
            ],
            body: Some(("application/sdp", sdp.as_bytes())),
        }
    }

    /// 200 to OPTIONS, in or out of a dialog: what we allow and accept.
    pub(super) fn options_answer(&self) -> Answer<'static> {
        if self.draining {
            // A front probing with OPTIONS (Kamailio's dispatcher) stops
            // sending new calls here.
            return Answer::code(503)
                .header("Retry-After", "30")
                .header("Allow", ALLOW);
        }
        Answer::code(200)
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED)
            .header("Accept", ACCEPT)
            .header("Accept-Language", "en")
    }

    /// Sends a response through its server transaction. Returns the bytes
    /// when the transaction accepted them.
    pub(super) fn respond(
        &mut self,
        now: Instant,
        key: &ServerKey,
        reply: &Reply,
        answer: Answer,
    ) -> Option<Vec<u8>> {
        let code = answer.code;
        let bytes = self.render(reply, answer);
        let entry = self.servers.get_mut(key)?;
        let accepted = match &mut entry.tx {
            ServerTx::Invite(tx) => tx.send_response(now, code, bytes.clone()),
            ServerTx::NonInvite(tx) => tx.send_response(now, code, bytes.clone()),
        };
        let peer = entry.peer;
        self.reschedule_server(key);
        if !accepted {
            return None;
        }
        self.stats.count_response(code);
        self.push_transmit(peer, bytes.clone());
        Some(bytes)
    }

    /// Sends a response outside any transaction (a refusal when the table is
    /// full, a rate limit, a malformed request): retransmissions of the
    /// request get it again from scratch.
    pub(super) fn send_stateless(&mut self, reply: &Reply, answer: Answer) {
        let code = answer.code;
        let bytes = self.render(reply, answer);
        self.stats.count_response(code);
        self.push_transmit(reply.peer, bytes);
    }

    /// The response's bytes: the request's Via, From, To, Call-ID, CSeq,
    /// then the answer's headers, `Server` and the body.
    fn render(&self, reply: &Reply, answer: Answer) -> Vec<u8> {
        let mut w = Writer::response(answer.code);
        for via in &reply.vias {
            w.header("Via", via);
        }
        w.header("From", &reply.from)
            .header("To", &reply.to)
            .header("Call-ID", &reply.call_id)
            .header("CSeq", &reply.cseq);
        for (name, value) in &answer.headers {
            w.header(name, value);
        }
        w.header("Server", &self.config.user_agent);
        match answer.body {
            Some((ct, body)) => w.finish(Some(ct), body),
            None => w.finish(None, b""),
        }
    }

    /// Keeps a 2xx just sent to be repeated until its ACK: T1, 2T1, ...
    /// capped at T2, given up after 64*T1 (`pending_timeout`).
    pub(super) fn start_ok_retransmit(
        &mut self,
        now: Instant,
        call: CallId,
        seq: u32,
        bytes: Vec<u8>,
        peer: Peer,
    ) {
        let t1 = self.timers.t1;
        let give_up = now + self.timers.timeout();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.pending_ok = Some(PendingOk {
            cseq: seq,
            peer,
            bytes,
            interval: t1,
            next: now + t1,
            give_up,
        });
        // Over TCP the 2xx is not repeated, but the wait for ACK is still bounded.
        if c.peer.transport.is_reliable() {
            if let Some(p) = c.pending_ok.as_mut() {
                p.next = give_up;
            }
        }
        self.reschedule_call(call);
    }

    /// A request that matched a live server transaction: repeat what we said.
    pub(super) fn absorb_retransmission(&mut self, key: &ServerKey) {
        let Some(entry) = self.servers.get(key) else {
            return;
        };
        let bytes = match &entry.tx {
            ServerTx::Invite(tx) if tx.state() == InviteServerState::Accepted => {
                // The 2xx belongs to the core: repeat it if still unacknowledged.
                entry
                    .call
                    .and_then(|c| self.calls.get(&c))
                    .and_then(|c| c.pending_ok.as_ref())
                    .map(|p| p.bytes.clone())
            }
            ServerTx::Invite(tx) => tx.on_retransmit().map(<[u8]>::to_vec),
            ServerTx::NonInvite(tx) => tx.on_retransmit().map(<[u8]>::to_vec),
        };
        let peer = entry.peer;
        if let Some(bytes) = bytes {
            self.push_transmit(peer, bytes);
        }
    }

    /// The 2xx retransmission and CANCEL parts of `call_timeout`; re-arms
    /// the call's wake for whatever is next (the session timer included).
    pub(super) fn pending_timeout(&mut self, now: Instant, call: CallId) {
        let t2 = self.timers.t2;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.wake = None;
        let cancel_expired = c
            .outgoing()
            .and_then(|o| o.cancel_deadline)
            .is_some_and(|d| d <= now);
        if cancel_expired {
            self.cancel_expired(call);
            return;
        }
        let session = c.session(call);
        let Some(p) = c.pending_ok.as_mut() else {
            self.reschedule_call(call);
            return;
        };
        if now >= p.give_up {
            c.pending_ok = None;
            tracing::info!(?session, "no ACK for 2xx: ending the call");
            self.push_ended(session, EndReason::AckTimeout);
            // The call layer already has its Ended; the BYE runs detached.
            self.send_bye(now, call, None);
            self.remove_call(now, call);
            return;
        }
        if now >= p.next {
            p.interval = p.interval.saturating_mul(2).min(t2);
            p.next = now + p.interval;
            let (peer, bytes) = (p.peer, p.bytes.clone());
            self.push_transmit(peer, bytes);
        }
        self.reschedule_call(call);
    }
}

/// A `Warning` value; the text may come from the peer, so it is kept to
/// printable characters and no quotes.
pub(super) fn warning(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_control() || c == '"' || c == '\\' {
                ' '
            } else {
                c
            }
        })
        .collect();
    format!("399 hotline \"{clean}\"")
}

/// Headers names we write ourselves; callers may not add or override them.
const OWN_HEADERS: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "content-length",
    "l",
    "content-type",
    "c",
    "max-forwards",
    "contact",
    "m",
    "server",
    "user-agent",
];

/// Most extra headers a caller may add to one message.
const MAX_EXTRA_HEADERS: usize = 32;

/// Keeps the headers that are safe to write: token names that are not ours,
/// single-line values.
pub(super) fn clean_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(name, value)| {
            let ok = !name.is_empty()
                && name.bytes().all(is_token_byte)
                && !OWN_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
                && !value.chars().any(|c| c.is_control() && c != '\t');
            if !ok {
                tracing::warn!(%name, "header left out: not writable");
            }
            ok
        })
        .take(MAX_EXTRA_HEADERS)
        .collect()
}

/// A fresh tag for To/From (RFC 3261 19.3: at least 32 bits of randomness).
pub(super) fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}
