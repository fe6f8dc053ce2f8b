//! The SIP endpoint core: the one object the call logic talks to.
//!
//! CONTRACT (the call layer is written against this; keep it or change both):
//! - input:  `handle_input(now, transport, source, bytes)`, `handle_timeout(now)`
//! - output: `poll_transmit()`, `poll_event()`, `poll_timeout()`
//! - commands for inbound calls: `answer`, `reject`, `answer_reoffer`, `hangup`
//!
//! The endpoint answers on its own, without asking the call layer: 100 Trying to
//! INVITE, OPTIONS 200, CANCEL (200 + 487 on the INVITE, then `CallCancelled`),
//! BYE 200 (then `CallEnded`), unknown dialog 481, unsupported method 405 + Allow,
//! malformed 400 (or drop), INFO `application/dtmf-relay` 200 (then `Dtmf`),
//! retransmissions. It counts requests received and responses sent in `Metrics`.
//!
//! Choices worth knowing:
//! - The 2xx to an INVITE is repeated by this core (RFC 3261 13.3.1.4) at T1,
//!   2T1, ... capped at T2; after 64*T1 without ACK the call ends with
//!   `AckTimeout` and is sent a BYE. `hangup` before the ACK waits for it.
//! - In-dialog requests we send (BYE) go to the address the INVITE came from
//!   (symmetric signalling: works behind NAT and reuses the TCP connection);
//!   their Request-URI and Route headers follow the dialog (RFC 3261 12.2.1.1).
//! - INFO: `application/dtmf-relay` and `application/dtmf` → 200 (+ `Dtmf`),
//!   no body → 200, any other body → 415 with Accept.
//! - Known but unsupported methods (REGISTER, SUBSCRIBE, ...) → 405 with Allow;
//!   unknown method tokens → 501 with Allow (RFC 4475 3.1.1.2).
//! - A re-INVITE while an earlier INVITE is unfinished → 500 with Retry-After
//!   (RFC 3261 14.2). Any `Require` → 420 (we support no extensions).
//! - Bounds: `max_calls` calls (then 503 + Retry-After), 4*max_calls+64 server
//!   and max_calls+64 client transactions, output queues of 8*max_calls+1024.
//!   The shell drains `poll_transmit`/`poll_event` after every call in.

use super::dialog::{Dialog, DialogId};
use super::dtmf_relay;
use super::message::{
    display_name, split_list, uri_user, Message, Method, NameAddr, StartLine, Writer, MAGIC_COOKIE,
};
use super::transaction::{
    ClientEvent, InviteServer, InviteServerState, NonInviteClient, NonInviteServer, ServerKey,
    TimerOutcome, Timers,
};
use super::wire::{self, Decoded, Essentials, Framing};
use crate::metrics::Metrics;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a message travelled. For TCP the shell keeps one connection per peer
/// address, so `(Transport::Tcp, peer)` names the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Bytes to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub transport: Transport,
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// Identifies one inbound call (one INVITE dialog) inside the endpoint. Assigned
/// by the endpoint, never reused while the process lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

/// Settings of the endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Address put in Via/Contact of what we send.
    pub local_addr: SocketAddr,
    /// `User-Agent`/`Server` header value.
    pub user_agent: String,
    /// Largest message accepted (UDP datagram or TCP framed message).
    pub max_message_size: usize,
    /// Upper bound on calls and transactions kept (beyond it: 503).
    pub max_calls: usize,
}

/// What a new INVITE carried, for the call layer to decide on.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    pub call: CallKey,
    /// SIP Call-ID (for logs and records).
    pub call_id: String,
    /// Caller: user part of the From URI (the number) and the display name.
    pub from_user: String,
    pub from_display: Option<String>,
    /// Dialled number: user part of the Request-URI.
    pub dialled: String,
    /// SDP offer, if the INVITE had one.
    pub offer: Option<String>,
    pub source: SocketAddr,
    pub transport: Transport,
}

/// Why a call's dialog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller sent BYE.
    RemoteBye,
    /// Our BYE was answered (or timed out).
    LocalBye,
    /// Our 2xx was never acknowledged (Timer H).
    AckTimeout,
    /// The INVITE transaction failed (transport error, timeout).
    TransportError,
}

/// What happened, for the call layer.
#[derive(Debug, Clone)]
pub enum SipEvent {
    /// A new INVITE (100 Trying already sent). Answer with `answer` or `reject`.
    IncomingCall(IncomingCall),
    /// ACK for our 2xx arrived: media may start (it may also start at answer).
    Confirmed { call: CallKey },
    /// CANCEL before answer; 487 was sent. The call is gone.
    Cancelled { call: CallKey },
    /// The dialog ended.
    Ended { call: CallKey, reason: EndReason },
    /// A re-INVITE with a new offer (or none): reply with `answer_reoffer`.
    ReOffer {
        call: CallKey,
        offer: Option<String>,
    },
    /// A digit from SIP INFO `application/dtmf-relay` (already answered 200).
    Dtmf { call: CallKey, digit: char },
}

/// Methods we handle, for `Allow`.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO";
/// Bodies we understand, for `Accept`.
const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";
/// Seconds a caller is asked to wait before retrying when we are full.
const RETRY_AFTER_SECS: u32 = 5;

/// Where replies for one request go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peer {
    transport: Transport,
    addr: SocketAddr,
}

/// The parts of a request that every response to it repeats.
#[derive(Debug, Clone)]
struct Reply {
    vias: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
    peer: Peer,
}

impl Reply {
    /// RFC 3261 18.2.2 / RFC 3581: responses go back to the source IP; on UDP to
    /// the source port when `rport` was asked for, else to the sent-by port.
    /// `received`/`rport` are stamped into the top Via. `to_tag` is added when
    /// the To has none.
    fn new(
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
struct Answer<'a> {
    code: u16,
    headers: Vec<(&'static str, String)>,
    body: Option<(&'a str, &'a [u8])>,
}

impl<'a> Answer<'a> {
    fn code(code: u16) -> Answer<'a> {
        Answer {
            code,
            headers: Vec::new(),
            body: None,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Answer<'a> {
        self.headers.push((name, value.into()));
        self
    }
}

enum ServerTx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

struct ServerEntry {
    tx: ServerTx,
    peer: Peer,
    call: Option<CallKey>,
    wake: Option<WakeKey>,
}

impl ServerEntry {
    fn next_timeout(&self) -> Option<Instant> {
        match &self.tx {
            ServerTx::Invite(t) => t.next_timeout(),
            ServerTx::NonInvite(t) => t.next_timeout(),
        }
    }

    fn is_terminated(&self) -> bool {
        match &self.tx {
            ServerTx::Invite(t) => t.is_terminated(),
            ServerTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

struct ClientEntry {
    tx: NonInviteClient,
    peer: Peer,
    /// The call to report `Ended` for when the transaction finishes.
    call: Option<(CallKey, EndReason)>,
    wake: Option<WakeKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// INVITE received, no final response yet.
    Offered,
    /// 200 OK sent, waiting for ACK.
    Answered,
    Confirmed,
    /// Our BYE is out.
    Ending,
}

/// A 2xx we repeat until its ACK arrives (RFC 3261 13.3.1.4).
struct PendingOk {
    cseq: u32,
    bytes: Vec<u8>,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

struct Call {
    state: CallState,
    dialog: Dialog,
    invite_key: ServerKey,
    invite_reply: Reply,
    peer: Peer,
    pending_ok: Option<PendingOk>,
    wake: Option<WakeKey>,
    /// A re-INVITE waiting for `answer_reoffer`.
    reinvite: Option<(ServerKey, Reply, u32)>,
    /// `hangup` came before the ACK: send BYE once it arrives (or we give up).
    bye_after_ack: bool,
}

type WakeKey = (Instant, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Wake {
    Server(ServerKey),
    Client(String),
    Call(CallKey),
}

/// The endpoint. See the module comment for the contract.
pub struct SipEndpoint {
    config: EndpointConfig,
    metrics: Arc<Metrics>,
    timers: Timers,
    next_call: u64,
    calls: HashMap<CallKey, Call>,
    dialogs: HashMap<DialogId, CallKey>,
    servers: HashMap<ServerKey, ServerEntry>,
    clients: HashMap<String, ClientEntry>,
    wakes: BTreeMap<WakeKey, Wake>,
    wake_seq: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SipEvent>,
}

impl SipEndpoint {
    pub fn new(config: EndpointConfig, metrics: Arc<Metrics>) -> SipEndpoint {
        SipEndpoint {
            config,
            metrics,
            timers: Timers::default(),
            next_call: 1,
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            servers: HashMap::new(),
            clients: HashMap::new(),
            wakes: BTreeMap::new(),
            wake_seq: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Replaces the RFC 3261 timer values (tests shrink them).
    pub fn set_timers(&mut self, timers: Timers) {
        self.timers = timers;
    }

    /// Calls in any state (offered, answered, ending).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Server and client transactions alive.
    pub fn transaction_count(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    fn max_servers(&self) -> usize {
        self.config.max_calls.saturating_mul(4).saturating_add(64)
    }

    fn max_clients(&self) -> usize {
        self.config.max_calls.saturating_add(64)
    }

    fn max_queue(&self) -> usize {
        self.config.max_calls.saturating_mul(8).saturating_add(1024)
    }

    /// Feeds one received datagram (UDP) or one framed message (TCP).
    pub fn handle_input(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        data: &[u8],
    ) {
        let framing = match transport {
            Transport::Udp => Framing::Datagram,
            Transport::Tcp => Framing::Stream,
        };
        match wire::decode(data, framing, self.config.max_message_size) {
            Decoded::KeepAlive => {}
            Decoded::Drop { reason } => {
                tracing::debug!(%source, %reason, "dropped unusable SIP message");
                self.metrics
                    .sip_malformed_total
                    .with_label_values(&["dropped"])
                    .inc();
            }
            Decoded::Reject {
                code,
                reason,
                essentials,
            } => {
                tracing::debug!(%source, %reason, code, "refused malformed SIP request");
                let method = essentials.method.as_ref().map(Method::as_str).unwrap_or("");
                self.metrics.sip_request(method);
                self.metrics
                    .sip_malformed_total
                    .with_label_values(&["answered_400"])
                    .inc();
                let reply = Reply::new(&essentials, source, transport, Some(&new_tag()));
                let answer = Answer::code(code).header("Warning", warning(&reason));
                self.send_stateless(&reply, answer);
            }
            Decoded::Message(msg) => match msg.start {
                StartLine::Request { .. } => self.handle_request(now, transport, source, msg),
                StartLine::Response { code, .. } => self.handle_response(now, code, &msg),
            },
        }
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((&key, _)) = self.wakes.first_key_value() {
            if key.0 > now {
                break;
            }
            let Some(wake) = self.wakes.remove(&key) else {
                break;
            };
            match wake {
                Wake::Server(k) => self.server_timeout(now, k),
                Wake::Client(b) => self.client_timeout(now, b),
                Wake::Call(c) => self.call_timeout(now, c),
            }
        }
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wakes.first_key_value().map(|(k, _)| k.0)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }

    /// Sends 200 OK with this SDP answer (retransmitted until ACK).
    pub fn answer(&mut self, now: Instant, call: CallKey, sdp: &str) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Offered {
            tracing::debug!(?call, "answer ignored: call not in offered state");
            return;
        }
        let (key, reply, seq) = (
            c.invite_key.clone(),
            c.invite_reply.clone(),
            c.dialog.remote_cseq,
        );
        let answer = self.ok_with_sdp(reply.peer.transport, sdp);
        if let Some(bytes) = self.respond(now, &key, &reply, answer) {
            self.start_ok_retransmit(now, call, seq, bytes);
            if let Some(c) = self.calls.get_mut(&call) {
                c.state = CallState::Answered;
            }
        }
    }

    /// Sends a final error response (e.g. 488, 480, 503) to the INVITE.
    /// Sends 180 Ringing (the caller hears ringback until `answer`).
    pub fn ring(&mut self, now: Instant, call: CallKey) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Offered {
            return;
        }
        let (key, reply) = (c.invite_key.clone(), c.invite_reply.clone());
        let contact = self.contact(reply.peer.transport);
        self.respond(
            now,
            &key,
            &reply,
            Answer::code(180).header("Contact", contact),
        );
    }

    pub fn reject(&mut self, now: Instant, call: CallKey, code: u16) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Offered {
            return;
        }
        let code = if (300..=699).contains(&code) {
            code
        } else {
            500
        };
        let (key, reply) = (c.invite_key.clone(), c.invite_reply.clone());
        let mut answer = Answer::code(code);
        if code == 503 {
            answer = answer.header("Retry-After", RETRY_AFTER_SECS.to_string());
        }
        if code == 488 || code == 415 {
            answer = answer.header("Accept", ACCEPT);
        }
        self.respond(now, &key, &reply, answer);
        self.remove_call(now, call);
    }

    /// Answers a re-INVITE: `Some(sdp)` → 200 with it; `None` → 488.
    pub fn answer_reoffer(&mut self, now: Instant, call: CallKey, sdp: Option<&str>) {
        let Some((key, reply, seq)) = self.calls.get_mut(&call).and_then(|c| c.reinvite.take())
        else {
            return;
        };
        match sdp {
            Some(sdp) => {
                let answer = self.ok_with_sdp(reply.peer.transport, sdp);
                if let Some(bytes) = self.respond(now, &key, &reply, answer) {
                    self.start_ok_retransmit(now, call, seq, bytes);
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

    /// Ends an answered call with BYE (or a not-yet-answered one with a final
    /// error response). `Ended { reason: LocalBye }` follows.
    pub fn hangup(&mut self, now: Instant, call: CallKey) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match c.state {
            CallState::Offered => {
                let (key, reply) = (c.invite_key.clone(), c.invite_reply.clone());
                self.respond(now, &key, &reply, Answer::code(480));
                self.remove_call(now, call);
                self.push_event(SipEvent::Ended {
                    call,
                    reason: EndReason::LocalBye,
                });
            }
            // RFC 3261 15: no BYE before the ACK (or before we give up on it).
            CallState::Answered => c.bye_after_ack = true,
            CallState::Confirmed => self.send_bye(now, call, Some(EndReason::LocalBye)),
            CallState::Ending => {}
        }
    }

    /// Hangs up every call (shutdown). Returns how many were asked to end.
    pub fn hangup_all(&mut self, now: Instant) -> usize {
        let mut keys: Vec<CallKey> = self.calls.keys().copied().collect();
        keys.sort();
        for key in &keys {
            self.hangup(now, *key);
        }
        keys.len()
    }

    // ---- requests ------------------------------------------------------

    fn handle_request(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        msg: Message,
    ) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        self.metrics.sip_request(method.as_str());
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
        let reply = Reply::new(&essentials, source, transport, Some(&new_tag()));
        if method == Method::Cancel {
            self.handle_cancel(now, key, &msg, reply);
            return;
        }
        if !self.open_server(now, &key, method == Method::Invite, reply.peer, None) {
            let answer = Answer::code(503).header("Retry-After", RETRY_AFTER_SECS.to_string());
            self.send_stateless(&reply, answer);
            return;
        }
        if let Some(unsupported) = msg.header("Require").filter(|r| !r.trim().is_empty()) {
            let answer = Answer::code(420).header("Unsupported", unsupported.to_string());
            self.respond(now, &key, &reply, answer);
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

    fn options_answer(&self) -> Answer<'static> {
        Answer::code(200)
            .header("Allow", ALLOW)
            .header("Accept", ACCEPT)
            .header("Accept-Language", "en")
    }

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
            let answer = Answer::code(503).header("Retry-After", RETRY_AFTER_SECS.to_string());
            self.respond(now, &key, &tagged, answer);
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
        // 100 Trying carries no To tag (RFC 3261 8.2.6.2).
        let bare = Reply::new(&essentials, source, transport, None);
        self.respond(now, &key, &bare, Answer::code(100));
        let call = CallKey(self.next_call);
        self.next_call += 1;
        if let Some(entry) = self.servers.get_mut(&key) {
            entry.call = Some(call);
        }
        let from = msg.header("From").unwrap_or("");
        let from_uri = NameAddr::parse(from).map(|n| n.uri).unwrap_or_default();
        let offer = (msg.content_type().as_deref() == Some("application/sdp")
            && !msg.body.is_empty())
        .then(|| String::from_utf8(msg.body.clone()).ok())
        .flatten();
        let incoming = IncomingCall {
            call,
            call_id: dialog.id.call_id.clone(),
            from_user: uri_user(&from_uri).unwrap_or_default(),
            from_display: display_name(from),
            dialled: msg.request_uri().and_then(uri_user).unwrap_or_default(),
            offer,
            source,
            transport,
        };
        self.dialogs.insert(dialog.id.clone(), call);
        self.calls.insert(
            call,
            Call {
                state: CallState::Offered,
                invite_reply: tagged,
                dialog,
                invite_key: key,
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
            },
        );
        self.push_event(SipEvent::IncomingCall(incoming));
    }

    fn handle_in_dialog(
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
            let answer = Answer::code(500).header("Retry-After", "1");
            self.respond(now, key, &reply, answer);
            return;
        }
        if let Some(entry) = self.servers.get_mut(key) {
            entry.call = Some(call);
        }
        let method = msg
            .method()
            .cloned()
            .unwrap_or(Method::Other(String::new()));
        match method {
            Method::Bye => {
                self.respond(now, key, &reply, Answer::code(200));
                let state = self.calls.get(&call).map(|c| c.state);
                if state == Some(CallState::Ending) {
                    // Crossing BYEs: ours reports the end.
                    return;
                }
                self.remove_call(now, call);
                self.push_event(SipEvent::Ended {
                    call,
                    reason: EndReason::RemoteBye,
                });
            }
            Method::Invite => {
                let busy = self.calls.get(&call).is_some_and(|c| {
                    c.pending_ok.is_some()
                        || c.reinvite.is_some()
                        || c.state != CallState::Confirmed
                });
                if busy {
                    let answer = Answer::code(500).header("Retry-After", "1");
                    self.respond(now, key, &reply, answer);
                    return;
                }
                self.respond(now, key, &reply, Answer::code(100));
                let offer = (msg.content_type().as_deref() == Some("application/sdp")
                    && !msg.body.is_empty())
                .then(|| String::from_utf8(msg.body.clone()).ok())
                .flatten();
                if let Some(c) = self.calls.get_mut(&call) {
                    if let Some(contact) = msg
                        .header("Contact")
                        .and_then(|v| split_list(v).into_iter().next())
                        .and_then(NameAddr::parse)
                    {
                        c.dialog.remote_target = contact.uri;
                    }
                    c.reinvite = Some((key.clone(), reply, seq));
                }
                self.push_event(SipEvent::ReOffer { call, offer });
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
                            self.push_event(SipEvent::Dtmf { call, digit });
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
            m => {
                let code = if m.is_known() { 405 } else { 501 };
                self.respond(now, key, &reply, Answer::code(code).header("Allow", ALLOW));
            }
        }
    }

    fn handle_ack(&mut self, now: Instant, key: &ServerKey, msg: &Message) {
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
        if first {
            self.push_event(SipEvent::Confirmed { call });
        }
        if bye {
            self.send_bye(now, call, Some(EndReason::LocalBye));
        }
    }

    fn handle_cancel(&mut self, now: Instant, key: ServerKey, msg: &Message, reply: Reply) {
        let invite_key = key.invite_of_cancel();
        let target = self.servers.get(&invite_key).map(|e| {
            let pending =
                matches!(&e.tx, ServerTx::Invite(t) if t.state() == InviteServerState::Proceeding);
            (e.call, pending)
        });
        let _ = msg;
        if !self.open_server(now, &key, false, reply.peer, None) {
            let answer = Answer::code(503).header("Retry-After", RETRY_AFTER_SECS.to_string());
            self.send_stateless(&reply, answer);
            return;
        }
        let Some((call, pending)) = target else {
            self.respond(now, &key, &reply, Answer::code(481));
            return;
        };
        // The CANCEL's 200 carries the To tag of our INVITE responses.
        let cancel_reply = match call.and_then(|c| self.calls.get(&c)) {
            Some(c) => Reply {
                to: c.invite_reply.to.clone(),
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
        if let Some(c) = self.calls.get(&call) {
            let invite_reply = c.invite_reply.clone();
            self.respond(now, &invite_key, &invite_reply, Answer::code(487));
            self.remove_call(now, call);
            self.push_event(SipEvent::Cancelled { call });
        }
    }

    /// A request that matched a live server transaction: repeat what we said.
    fn absorb_retransmission(&mut self, key: &ServerKey) {
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

    // ---- responses to our requests ---------------------------------------

    fn handle_response(&mut self, now: Instant, code: u16, msg: &Message) {
        let Some(branch) = msg.top_via().and_then(|v| v.branch().map(str::to_string)) else {
            return;
        };
        let Some(entry) = self.clients.get_mut(&branch) else {
            return;
        };
        if msg.cseq().map(|c| c.method) != Some(Method::Bye) {
            return;
        }
        if let ClientEvent::Final(code) = entry.tx.on_response(now, code) {
            let ended = entry.call.take();
            if let Some((call, reason)) = ended {
                tracing::debug!(?call, code, "BYE answered");
                self.finish_call(call, reason);
            }
        }
        self.reschedule_client(&branch);
    }

    // ---- timers ---------------------------------------------------------

    fn server_timeout(&mut self, now: Instant, key: ServerKey) {
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

    fn client_timeout(&mut self, now: Instant, branch: String) {
        let Some(entry) = self.clients.get_mut(&branch) else {
            return;
        };
        entry.wake = None;
        match entry.tx.handle_timeout(now) {
            TimerOutcome::Retransmit => {
                let (peer, bytes) = (entry.peer, entry.tx.request().to_vec());
                self.push_transmit(peer, bytes);
            }
            TimerOutcome::TimedOut | TimerOutcome::Terminated => {
                if let Some((call, reason)) = entry.call.take() {
                    tracing::debug!(?call, "BYE timed out");
                    self.finish_call(call, reason);
                }
            }
            TimerOutcome::Idle => {}
        }
        self.reschedule_client(&branch);
    }

    /// 2xx retransmission: T1, 2T1, ... capped at T2; give up after 64*T1.
    fn call_timeout(&mut self, now: Instant, call: CallKey) {
        let t2 = self.timers.t2;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.wake = None;
        let Some(p) = c.pending_ok.as_mut() else {
            return;
        };
        if now >= p.give_up {
            c.pending_ok = None;
            tracing::info!(?call, "no ACK for 2xx: ending the call");
            self.push_event(SipEvent::Ended {
                call,
                reason: EndReason::AckTimeout,
            });
            // The call layer already has its Ended; the BYE runs detached.
            self.send_bye(now, call, None);
            self.remove_call(now, call);
            return;
        }
        if now >= p.next {
            p.interval = p.interval.saturating_mul(2).min(t2);
            p.next = now + p.interval;
            let (peer, bytes) = (c.invite_reply.peer, p.bytes.clone());
            self.push_transmit(peer, bytes);
        }
        self.reschedule_call(call);
    }

    // ---- helpers --------------------------------------------------------

    fn contact(&self, transport: Transport) -> String {
        match transport {
            Transport::Udp => format!("<sip:{}>", self.config.local_addr),
            Transport::Tcp => format!("<sip:{};transport=tcp>", self.config.local_addr),
        }
    }

    fn ok_with_sdp<'a>(&self, transport: Transport, sdp: &'a str) -> Answer<'a> {
        let contact = self.contact(transport);
        Answer {
            code: 200,
            headers: vec![("Contact", contact), ("Allow", ALLOW.to_string())],
            body: Some(("application/sdp", sdp.as_bytes())),
        }
    }

    fn start_ok_retransmit(&mut self, now: Instant, call: CallKey, seq: u32, bytes: Vec<u8>) {
        let t1 = self.timers.t1;
        let give_up = now + self.timers.timeout();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.pending_ok = Some(PendingOk {
            cseq: seq,
            bytes,
            interval: t1,
            next: now + t1,
            give_up,
        });
        // Over TCP the 2xx is not repeated, but the wait for ACK is still bounded.
        if c.peer.transport == Transport::Tcp {
            if let Some(p) = c.pending_ok.as_mut() {
                p.next = give_up;
            }
        }
        self.reschedule_call(call);
    }

    /// Sends BYE in a client transaction; `report` is the `Ended` reason to
    /// emit when it finishes (None when the call layer was already told).
    fn send_bye(&mut self, now: Instant, call: CallKey, report: Option<EndReason>) {
        let branch = format!("{MAGIC_COOKIE}{:016x}", rand::random::<u64>());
        let user_agent = self.config.user_agent.clone();
        let local = self.config.local_addr;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let proto = match c.peer.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        };
        let via = format!("SIP/2.0/{proto} {local};branch={branch};rport");
        let bytes = c.dialog.request("BYE", &via, &user_agent);
        c.state = CallState::Ending;
        c.pending_ok = None;
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
        let tx = NonInviteClient::new(
            now,
            self.timers,
            peer.transport == Transport::Tcp,
            bytes.clone(),
        );
        self.clients.insert(
            branch.clone(),
            ClientEntry {
                tx,
                peer,
                call: report.map(|r| (call, r)),
                wake: None,
            },
        );
        self.push_transmit(peer, bytes);
        self.reschedule_client(&branch);
    }

    /// The BYE finished: report and forget the call.
    fn finish_call(&mut self, call: CallKey, reason: EndReason) {
        if self.calls.contains_key(&call) {
            self.forget_call(call);
            self.push_event(SipEvent::Ended { call, reason });
        }
    }

    /// Drops a call, answering any INVITE still open on it (the initial one or
    /// a re-INVITE) with 487 so that no transaction is left without an end.
    fn remove_call(&mut self, now: Instant, call: CallKey) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let mut open = Vec::new();
        if let Some((key, reply, _)) = c.reinvite.take() {
            open.push((key, reply));
        }
        if c.state == CallState::Offered {
            open.push((c.invite_key.clone(), c.invite_reply.clone()));
        }
        for (key, reply) in open {
            // A transaction that already has its final response ignores this.
            self.respond(now, &key, &reply, Answer::code(487));
        }
        self.forget_call(call);
    }

    fn forget_call(&mut self, call: CallKey) {
        if let Some(c) = self.calls.remove(&call) {
            self.dialogs.remove(&c.dialog.id);
            if let Some(w) = c.wake {
                self.wakes.remove(&w);
            }
        }
    }

    fn open_server(
        &mut self,
        now: Instant,
        key: &ServerKey,
        invite: bool,
        peer: Peer,
        call: Option<CallKey>,
    ) -> bool {
        if self.servers.len() >= self.max_servers() {
            return false;
        }
        let reliable = peer.transport == Transport::Tcp;
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
                wake: None,
            },
        );
        self.reschedule_server(key);
        true
    }

    /// Sends a response through its server transaction. Returns the bytes
    /// when the transaction accepted them.
    fn respond(
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
        self.metrics.sip_response(code);
        self.push_transmit(peer, bytes.clone());
        Some(bytes)
    }

    fn send_stateless(&mut self, reply: &Reply, answer: Answer) {
        let code = answer.code;
        let bytes = self.render(reply, answer);
        self.metrics.sip_response(code);
        self.push_transmit(reply.peer, bytes);
    }

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

    fn push_transmit(&mut self, peer: Peer, payload: Vec<u8>) {
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

    fn push_event(&mut self, event: SipEvent) {
        if self.events.len() >= self.max_queue() {
            tracing::warn!(?event, "event queue full: dropping an event");
            return;
        }
        self.events.push_back(event);
    }

    fn schedule(&mut self, at: Option<Instant>, wake: Wake) -> Option<WakeKey> {
        let at = at?;
        self.wake_seq += 1;
        let key = (at, self.wake_seq);
        self.wakes.insert(key, wake);
        Some(key)
    }

    /// Re-arms a server transaction's timer, or forgets it once terminated.
    fn reschedule_server(&mut self, key: &ServerKey) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        if let Some(w) = entry.wake.take() {
            self.wakes.remove(&w);
        }
        if entry.is_terminated() {
            self.servers.remove(key);
            return;
        }
        let next = entry.next_timeout();
        let wake = self.schedule(next, Wake::Server(key.clone()));
        if let Some(entry) = self.servers.get_mut(key) {
            entry.wake = wake;
        }
    }

    fn reschedule_client(&mut self, branch: &str) {
        let Some(entry) = self.clients.get_mut(branch) else {
            return;
        };
        if let Some(w) = entry.wake.take() {
            self.wakes.remove(&w);
        }
        if entry.tx.is_terminated() {
            self.clients.remove(branch);
            return;
        }
        let next = entry.tx.next_timeout();
        let wake = self.schedule(next, Wake::Client(branch.to_string()));
        if let Some(entry) = self.clients.get_mut(branch) {
            entry.wake = wake;
        }
    }

    fn reschedule_call(&mut self, call: CallKey) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(w) = c.wake.take() {
            self.wakes.remove(&w);
        }
        let next = c.pending_ok.as_ref().map(|p| p.next.min(p.give_up));
        let wake = self.schedule(next, Wake::Call(call));
        if let Some(c) = self.calls.get_mut(&call) {
            c.wake = wake;
        }
    }
}

/// A `Warning` value; the text may come from the peer, so it is kept to
/// printable characters and no quotes.
fn warning(text: &str) -> String {
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

/// A fresh tag for To/From (RFC 3261 19.3: at least 32 bits of randomness).
fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
