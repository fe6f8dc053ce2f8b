//! The transaction tables and the wake-up schedule: opening server and
//! client transactions within their bounds, matching responses to our
//! requests, the RFC 3261 timers of each transaction, and the output queues.

use super::*;

impl SipEndpoint {
    /// Server transactions alive at most (each lingers 32 s after its end).
    fn max_servers(&self) -> usize {
        self.config
            .max_transactions
            .max(self.config.max_calls.saturating_mul(4))
            .saturating_add(64)
    }

    /// A session may have an INVITE, a CANCEL or BYE, a probe and a session
    /// refresh out at once.
    pub(super) fn max_clients(&self) -> usize {
        self.config
            .max_transactions
            .max(self.config.max_calls.saturating_mul(4))
            .saturating_add(64)
    }

    /// REGISTERs waiting for `respond_register` at most.
    pub(super) fn max_registers(&self) -> usize {
        self.config.max_calls.saturating_add(64)
    }

    /// Messages and events waiting for the shell at most.
    fn max_queue(&self) -> usize {
        self.config.max_calls.saturating_mul(8).saturating_add(1024)
    }

    /// Opens a server transaction for a new request. False (nothing opened)
    /// when the table is full.
    pub(super) fn open_server(
        &mut self,
        now: Instant,
        key: &ServerKey,
        invite: bool,
        peer: Peer,
        call: Option<CallId>,
    ) -> bool {
        if self.servers.len() >= self.max_servers() {
            return false;
        }
        let reliable = peer.transport.is_reliable();
        let tx = if invite {
            ServerTx::Invite(InviteServer::new(self.timers, reliable))
        } else {
            ServerTx::NonInvite(NonInviteServer::new(now, self.timers, reliable))
        };
        self.servers.insert(
            key.clone(),
            ServerEntry {
                tx,
                peer,
                call,
                register: None,
                wake: None,
            },
        );
        self.reschedule_server(key);
        true
    }

    /// Sends a new non-INVITE request in a client transaction. False (nothing
    /// sent) when the transaction table is full.
    pub(super) fn start_request(
        &mut self,
        now: Instant,
        peer: Peer,
        branch: &str,
        method: &str,
        bytes: Vec<u8>,
        purpose: Purpose,
    ) -> bool {
        if self.clients.len() >= self.max_clients() {
            return false;
        }
        let reliable = peer.transport.is_reliable();
        let tx = NonInviteClient::new(now, self.timers, reliable, bytes.clone());
        let key = client_key(branch, method);
        self.clients.insert(
            key.clone(),
            ClientEntry {
                tx: ClientTx::NonInvite(tx),
                peer,
                purpose,
                wake: None,
            },
        );
        self.push_transmit(peer, bytes);
        self.reschedule_client(&key);
        true
    }

    /// A fresh branch and the Via carrying it.
    pub(super) fn new_via(&self, transport: Transport) -> (String, String) {
        let branch = format!("{MAGIC_COOKIE}{:016x}", rand::random::<u64>());
        let proto = transport.via_name();
        let via = format!(
            "SIP/2.0/{proto} {};branch={branch};rport",
            self.config.local_addr
        );
        (branch, via)
    }

    /// A response to a request of ours, matched by branch and method; one
    /// that matches nothing is dropped.
    pub(super) fn handle_response(&mut self, now: Instant, code: u16, msg: &Message) {
        let (Some(via), Some(cseq)) = (msg.top_via(), msg.cseq()) else {
            return;
        };
        let Some(branch) = via.branch() else {
            return;
        };
        let key = client_key(branch, cseq.method.as_str());
        let Some(entry) = self.clients.get_mut(&key) else {
            return;
        };
        match &mut entry.tx {
            ClientTx::NonInvite(tx) => {
                if let ClientEvent::Final(code) = tx.on_response(now, code) {
                    let purpose = std::mem::replace(&mut entry.purpose, Purpose::Done);
                    self.request_done(now, &key, purpose, Some(code), Some(msg));
                }
            }
            ClientTx::Invite(tx) => {
                let event = tx.on_response(now, code);
                self.invite_response(now, &key, event, msg);
            }
        }
        self.reschedule_client(&key);
    }

    /// A non-INVITE request we sent got its final response (`None`: timed out).
    fn request_done(
        &mut self,
        now: Instant,
        key: &str,
        purpose: Purpose,
        code: Option<u16>,
        msg: Option<&Message>,
    ) {
        match purpose {
            Purpose::Bye(call, Some(reason)) => {
                tracing::debug!(?call, ?code, "BYE finished");
                self.finish_call(call, reason);
            }
            Purpose::Probe(call) => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                if c.probe.as_deref() == Some(key) {
                    c.probe = None;
                }
                let session = c.session(call);
                if let None | Some(408) | Some(481) = code {
                    tracing::info!(?session, ?code, "probe failed");
                    self.push_event(SipEvent::ProbeFailed {
                        session,
                        code: code.unwrap_or(408),
                    });
                }
            }
            Purpose::Refresh(call) => self.refresh_done(now, call, code, msg),
            Purpose::Bye(_, None) | Purpose::Invite(_) | Purpose::Cancel | Purpose::Done => {}
        }
    }

    /// A server transaction's timer: repeat the last response (Timer G) or
    /// end it.
    pub(super) fn server_timeout(&mut self, now: Instant, key: ServerKey) {
        let Some(entry) = self.servers.get_mut(&key) else {
            return;
        };
        entry.wake = None;
        let outcome = match &mut entry.tx {
            ServerTx::Invite(tx) => tx.handle_timeout(now),
            ServerTx::NonInvite(tx) => tx.handle_timeout(now),
        };
        if outcome == TimerOutcome::Retransmit {
            let bytes = match &entry.tx {
                ServerTx::Invite(tx) => tx.last_response().map(<[u8]>::to_vec),
                ServerTx::NonInvite(_) => None,
            };
            let peer = entry.peer;
            if let Some(bytes) = bytes {
                self.push_transmit(peer, bytes);
            }
        }
        self.reschedule_server(&key);
    }

    /// A client transaction's timer: repeat the request (Timers A, E) or
    /// give up (408 to what it was for).
    pub(super) fn client_timeout(&mut self, now: Instant, key: String) {
        let Some(entry) = self.clients.get_mut(&key) else {
            return;
        };
        entry.wake = None;
        let (outcome, request) = match &mut entry.tx {
            ClientTx::Invite(tx) => (tx.handle_timeout(now), tx.request()),
            ClientTx::NonInvite(tx) => (tx.handle_timeout(now), tx.request()),
        };
        match outcome {
            TimerOutcome::Retransmit => {
                let (peer, bytes) = (entry.peer, request.to_vec());
                self.push_transmit(peer, bytes);
            }
            TimerOutcome::TimedOut | TimerOutcome::Terminated => {
                let timed_out = outcome == TimerOutcome::TimedOut;
                let purpose = std::mem::replace(&mut entry.purpose, Purpose::Done);
                match purpose {
                    Purpose::Invite(inv) if timed_out => self.leg_failed(inv.leg, 408),
                    Purpose::Invite(_) => {}
                    other => self.request_done(now, &key, other, None, None),
                }
            }
            TimerOutcome::Idle => {}
        }
        self.reschedule_client(&key);
    }

    /// Puts a wake-up on the schedule; its key, to take it off again.
    fn schedule(&mut self, at: Option<Instant>, wake: Wake) -> Option<WakeKey> {
        let at = at?;
        self.wake_seq += 1;
        let key = (at, self.wake_seq);
        self.wakes.insert(key, wake);
        Some(key)
    }

    /// Re-arms a server transaction's timer, or forgets it once terminated.
    pub(super) fn reschedule_server(&mut self, key: &ServerKey) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        if let Some(w) = entry.wake.take() {
            self.wakes.remove(&w);
        }
        if entry.is_terminated() {
            if let Some(handle) = entry.register {
                self.registers.remove(&handle);
                self.register_origins.remove(&handle);
            }
            self.servers.remove(key);
            return;
        }
        let next = entry.next_timeout();
        let wake = self.schedule(next, Wake::Server(key.clone()));
        if let Some(entry) = self.servers.get_mut(key) {
            entry.wake = wake;
        }
    }

    /// Re-arms a client transaction's timer, or forgets it once terminated.
    pub(super) fn reschedule_client(&mut self, key: &str) {
        let Some(entry) = self.clients.get_mut(key) else {
            return;
        };
        if let Some(w) = entry.wake.take() {
            self.wakes.remove(&w);
        }
        if entry.is_terminated() {
            self.clients.remove(key);
            return;
        }
        let next = entry.next_timeout();
        let wake = self.schedule(next, Wake::Client(key.to_string()));
        if let Some(entry) = self.clients.get_mut(key) {
            entry.wake = wake;
        }
    }

    /// Re-arms a call's one wake-up: the next 2xx repeat, CANCEL deadline or
    /// session timer deadline, whichever is first.
    pub(super) fn reschedule_call(&mut self, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(w) = c.wake.take() {
            self.wakes.remove(&w);
        }
        let ok = c.pending_ok.as_ref().map(|p| p.next.min(p.give_up));
        let cancel = c.outgoing().and_then(|o| o.cancel_deadline);
        // The session timer runs once the session is confirmed (and not ending).
        let timer = c
            .timer
            .as_ref()
            .filter(|_| c.state == CallState::Confirmed)
            .and_then(SessionTimer::deadline);
        let next = [ok, cancel, timer].into_iter().flatten().min();
        let wake = self.schedule(next, Wake::Call(call));
        if let Some(c) = self.calls.get_mut(&call) {
            c.wake = wake;
        }
    }

    /// Queues a message for the shell (dropped, with a warning, when full).
    pub(super) fn push_transmit(&mut self, peer: Peer, payload: Vec<u8>) {
        if self.transmits.len() >= self.max_queue() {
            tracing::warn!("transmit queue full: dropping a message");
            return;
        }
        self.transmits.push_back(Transmit {
            transport: peer.transport,
            destination: peer.addr,
            payload,
        });
    }

    /// Queues an event for the call layer (dropped, with a warning, when full).
    pub(super) fn push_event(&mut self, event: SipEvent) {
        if self.events.len() >= self.max_queue() {
            // Not the event itself: a REGISTER carries its Authorization.
            tracing::warn!(
                kind = event_kind(&event),
                "event queue full: dropping an event"
            );
            return;
        }
        self.events.push_back(event);
    }
}

/// An event's name for logs, without its contents.
fn event_kind(event: &SipEvent) -> &'static str {
    match event {
        SipEvent::Register(_) => "register",
        SipEvent::IncomingCall(_) => "incoming_call",
        _ => "other",
    }
}

/// Client transactions are keyed by branch and method: a CANCEL shares the
/// branch of the INVITE it cancels (RFC 3261 17.1.3).
pub(super) fn client_key(branch: &str, method: &str) -> String {
    format!("{branch} {method}")
}
