//! The SIP endpoint core: the one object the call logic talks to. Sans-IO:
//! bytes and an explicit `now` in; messages to send, events and the next
//! wake-up out. What it promises (RFC behaviour, timers, which request gets
//! which answer, bounds) is written down in `docs/sip.md`.

use super::admission::{Admission, AdmissionConfig, Rejection, RequestClass};
use super::dialog::{Dialog, DialogId, SentInvite};
use super::dtmf_relay;
use super::message::{
    display_name, is_token_byte, split_list, uri_user, Message, Method, NameAddr, StartLine,
    Writer, MAGIC_COOKIE,
};
use super::session_timer::{
    self, SessionExpires, SessionTimer, Side, TimerAction, TimerConfig, TimerRequest, UasDecision,
};
use super::transaction::{
    ClientEvent, InviteClient, InviteClientEvent, InviteServer, InviteServerState, NonInviteClient,
    NonInviteServer, ServerKey, TimerOutcome, Timers,
};
pub use super::transport::Transport;
use super::wire::{self, Decoded, Essentials, Framing};
use replies::{clean_headers, new_tag, warning, Answer, Reply};
use state::{
    AuthRetry, Call, CallState, ClientEntry, ClientTx, InviteTx, Origin, Outgoing, Peer, PendingOk,
    Purpose, Sent, ServerEntry, ServerTx, TimerAnswer, Wake, WakeKey,
};
pub use stats::EndpointStats;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use transactions::client_key;

/// Bytes to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub transport: Transport,
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

pub use crate::ids::CallId;

/// Identifies one outbound leg (an INVITE we sent, e.g. to an agent). A separate
/// type so that a leg's events and commands cannot be mixed up with a call's;
/// calls and legs draw numbers from one counter, so a number names one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegKey(pub u64);

/// A call or a leg, for what works on both (`hangup`, `probe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionKey {
    Call(CallId),
    Leg(LegKey),
}

impl From<CallId> for SessionKey {
    fn from(call: CallId) -> SessionKey {
        SessionKey::Call(call)
    }
}

impl From<LegKey> for SessionKey {
    fn from(leg: LegKey) -> SessionKey {
        SessionKey::Leg(leg)
    }
}

impl SessionKey {
    /// Where the session is stored (numbers are shared, see `LegKey`).
    fn slot(self) -> CallId {
        match self {
            SessionKey::Call(c) => c,
            SessionKey::Leg(l) => CallId(l.0),
        }
    }
}

/// Settings of the endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Address put in Via/Contact of what we send.
    pub local_addr: SocketAddr,
    /// `User-Agent`/`Server` header value.
    pub user_agent: String,
    /// Largest message accepted (UDP datagram or TCP framed message).
    pub max_message_size: usize,
    /// Upper bound on calls and legs (beyond it: 503).
    pub max_calls: usize,
    /// Upper bound on server transactions, and again on client transactions.
    /// A finished transaction stays 32 s to absorb retransmissions (RFC 3261
    /// Timers I, J, K, L), so the sustained call rate this allows is about
    /// `max_transactions / 64` per second (INVITE + BYE per call).
    pub max_transactions: usize,
}

/// What a new INVITE carried, for the call layer to decide on.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    pub call: CallId,
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
    /// The Request-URI as received (e.g. `sip:*1@hotline` for a feature code).
    pub request_uri: String,
    /// Raw `Authorization` value (else `Proxy-Authorization`), for digest checks.
    pub authorization: Option<String>,
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
    Confirmed { call: CallId },
    /// CANCEL before answer; 487 was sent. The call is gone.
    Cancelled { call: CallId },
    /// The dialog ended.
    Ended { call: CallId, reason: EndReason },
    /// A re-INVITE with a new offer (or none): reply with `answer_reoffer`.
    ReOffer { call: CallId, offer: Option<String> },
    /// A digit from SIP INFO `application/dtmf-relay` (already answered 200).
    Dtmf { call: CallId, digit: char },
    /// Our INVITE is ringing (first 18x).
    LegRinging { leg: LegKey },
    /// 2xx to our INVITE (ACK already sent). The answer is the 2xx's SDP.
    LegAnswered {
        leg: LegKey,
        answer_sdp: Option<String>,
    },
    /// The INVITE failed: the final status (486, 603, 487 after `cancel`, ...),
    /// 408 when nothing answered, 503 when the endpoint is full. The leg is gone.
    LegFailed { leg: LegKey, code: u16 },
    /// An answered leg ended (BYE either way, or a 2xx that crossed our CANCEL).
    LegEnded { leg: LegKey, reason: EndReason },
    /// A re-INVITE on a leg: reply with `answer_leg_reoffer`.
    LegReOffer { leg: LegKey, offer: Option<String> },
    /// A digit from SIP INFO on a leg (already answered 200).
    LegDtmf { leg: LegKey, digit: char },
    /// RFC 3515: the leg's phone (an agent's) asks to transfer the caller
    /// to `target` (the Refer-To URI, without its headers): blind, or with
    /// `replaces` (RFC 5589 attended transfer) to the far end of the dialog
    /// it names. Already answered 202; report the outcome with
    /// `notify_refer`.
    LegRefer {
        leg: LegKey,
        target: String,
        replaces: Option<crate::sip::Replaces>,
    },
    /// An in-dialog OPTIONS from `probe`, or our session refresh (RFC 4028
    /// UPDATE), got 408/481 or no answer (`code` 408): the peer has likely
    /// gone. The session is still open; hang it up.
    ProbeFailed { session: SessionKey, code: u16 },
    /// RFC 4028: the peer was to refresh the session and did not by the
    /// deadline. The session is still open; hang it up.
    SessionExpired { session: SessionKey },
    /// A REGISTER to answer with `respond_register`.
    Register(RegisterRequest),
    /// A new INVITE from a trusted source that the endpoint refused itself
    /// (already answered): for the call record. Untrusted sources get none,
    /// so scanners cannot fill the records.
    Refused(RefusedCall),
}

/// Why the endpoint refused an INVITE on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_calls` calls and legs already (503).
    MaxCalls,
    /// No room for another server transaction (503, stateless).
    MaxTransactions,
}

impl Refusal {
    /// The name used in call records and logs.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxCalls => "max_calls",
            Refusal::MaxTransactions => "max_transactions",
        }
    }
}

/// What a refused INVITE carried, for its record.
#[derive(Debug, Clone)]
pub struct RefusedCall {
    pub call_id: String,
    /// The INVITE's CSeq number: a retransmission has the same, so its
    /// record is the same.
    pub cseq: u32,
    pub from_user: String,
    pub dialled: String,
    pub source: SocketAddr,
    pub code: u16,
    pub reason: Refusal,
}

/// What to call: an agent's registered contact, reached where it registered from.
#[derive(Debug, Clone)]
pub struct OutboundInvite {
    /// The Contact URI the agent registered (the Request-URI).
    pub request_uri: String,
    /// Where to send (the REGISTER's source, so NAT bindings are reused).
    pub destination: SocketAddr,
    pub transport: Transport,
    /// Caller shown to the agent: number and display name.
    pub from_user: String,
    pub from_display: Option<String>,
    /// The agent's user name (To).
    pub to_user: String,
    /// The To URI when it is not the agent's AOR at our address: a trunk
    /// call's is its Request-URI.
    pub to_uri: Option<String>,
    /// Extra headers, e.g. `X-Hotline-Language: pl`. Names must be tokens and
    /// values single-line; others are left out.
    pub headers: Vec<(String, String)>,
    /// SDP offer.
    pub sdp: String,
    /// Answers a 401/407 challenge with these (a trunk); without them a
    /// challenge fails the leg.
    pub credentials: Option<Credentials>,
}

/// Digest credentials for our INVITEs to a gateway; `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// Identifies a REGISTER waiting for `respond_register`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegisterHandle(pub u64);

/// One Contact of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterContact {
    pub uri: String,
    /// The `expires` parameter.
    pub expires: Option<u32>,
    /// The whole entry as sent (to echo it in the 200).
    pub value: String,
}

/// A REGISTER, parsed for a registrar (RFC 3261 10.3).
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    pub handle: RegisterHandle,
    pub source: SocketAddr,
    pub transport: Transport,
    /// User parts of the To (the address-of-record) and From URIs.
    pub to_user: String,
    pub from_user: String,
    /// The To URI.
    pub aor: String,
    pub call_id: String,
    pub cseq: u32,
    /// The `Expires` header.
    pub expires: Option<u32>,
    /// `Contact: *` (remove all bindings).
    pub wildcard: bool,
    pub contacts: Vec<RegisterContact>,
    /// Raw `Authorization` value.
    pub authorization: Option<String>,
    /// Method and Request-URI as received, for the digest response.
    pub method: String,
    pub request_uri: String,
    pub user_agent: Option<String>,
}

/// Methods we handle, for `Allow`.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, UPDATE, REFER";
/// Option tags we support (RFC 4028 session timers), for `Supported`.
const SUPPORTED: &str = "timer";
/// Bodies we understand, for `Accept`.
const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";
/// Seconds a caller is asked to wait before retrying when we are full.
const RETRY_AFTER_SECS: u32 = 5;

/// The endpoint. Input: `handle_input`, `handle_timeout`; output:
/// `poll_transmit`, `poll_event`, `poll_timeout`, drained by the shell after
/// every input. Calls (`CallId`) and legs (`LegKey`) are driven by the
/// methods below; see `docs/sip.md` for what it answers on its own.
pub struct SipEndpoint {
    config: EndpointConfig,
    stats: EndpointStats,
    timers: Timers,
    next_call: u64,
    calls: HashMap<CallId, Call>,
    dialogs: HashMap<DialogId, CallId>,
    servers: HashMap<ServerKey, ServerEntry>,
    /// Keyed by `branch method` (a CANCEL shares its INVITE's branch).
    clients: HashMap<String, ClientEntry>,
    registers: HashMap<RegisterHandle, (ServerKey, Reply)>,
    /// Who sent each pending REGISTER, to count refused credentials.
    register_origins: HashMap<RegisterHandle, register::RegisterOrigin>,
    admission: Admission,
    /// Out-of-dialog OPTIONS get 503 (see `set_draining`).
    draining: bool,
    next_register: u64,
    wakes: BTreeMap<WakeKey, Wake>,
    wake_seq: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SipEvent>,
    session_timers: TimerConfig,
}

impl SipEndpoint {
    /// An endpoint with RFC 3261 and RFC 4028 defaults that admits everything.
    pub fn new(config: EndpointConfig) -> SipEndpoint {
        SipEndpoint {
            config,
            stats: EndpointStats::default(),
            timers: Timers::default(),
            next_call: 1,
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            servers: HashMap::new(),
            clients: HashMap::new(),
            registers: HashMap::new(),
            register_origins: HashMap::new(),
            admission: Admission::new(AdmissionConfig::open()),
            draining: false,
            next_register: 1,
            wakes: BTreeMap::new(),
            wake_seq: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            session_timers: TimerConfig::default(),
        }
    }

    /// Replaces the RFC 4028 settings (Session-Expires we ask for, Min-SE).
    pub fn set_session_timers(&mut self, config: TimerConfig) {
        self.session_timers = config;
    }

    /// Replaces the RFC 3261 timer values (tests shrink them).
    pub fn set_timers(&mut self, timers: Timers) {
        self.timers = timers;
    }

    /// Draining (a shutdown, a rolling restart): out-of-dialog OPTIONS are
    /// answered `503`, so a front that probes sends no new calls here.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Replaces the admission rules (trusted sources, rate limits, scanner
    /// list). A new endpoint admits everything.
    pub fn set_admission(&mut self, config: AdmissionConfig) {
        self.admission = Admission::new(config);
    }

    /// Whether INVITEs from `ip` are taken (a trunk or SBC, or loopback).
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.admission.is_trusted(ip)
    }

    /// Counts a request turned away for `reason`.
    pub fn count_rejection(&mut self, reason: Rejection) {
        self.stats.count_rejection(reason);
    }

    /// What the endpoint has counted since it started.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// Inbound calls in any state (offered, answered, ending).
    pub fn call_count(&self) -> usize {
        self.calls
            .values()
            .filter(|c| matches!(c.origin, Origin::Inbound(_)))
            .count()
    }

    /// Outbound legs in any state.
    pub fn leg_count(&self) -> usize {
        self.calls.len() - self.call_count()
    }

    /// Server and client transactions alive.
    pub fn transaction_count(&self) -> usize {
        self.servers.len() + self.clients.len()
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
                self.stats.count_malformed(false);
            }
            Decoded::Reject {
                code,
                reason,
                essentials,
            } => {
                tracing::debug!(%source, %reason, code, "refused malformed SIP request");
                let method = essentials.method.as_ref().map(Method::as_str).unwrap_or("");
                self.stats.count_request(method);
                self.stats.count_malformed(true);
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

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the call layer.
    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }

    /// Sends 200 OK with this SDP answer (retransmitted until ACK).
    pub fn answer(&mut self, now: Instant, call: CallId, sdp: &str) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some((key, reply)) = c.inbound().filter(|_| c.state == CallState::Offered) else {
            tracing::debug!(?call, "answer ignored: call not in offered state");
            return;
        };
        let seq = c.dialog.remote_cseq;
        let timer = c.timer_answer;
        let mut answer = self.ok_with_sdp(reply.peer.transport, sdp);
        answer
            .headers
            .extend(timer.iter().flat_map(TimerAnswer::headers));
        if let Some(bytes) = self.respond(now, &key, &reply, answer) {
            if let Some(c) = self.calls.get_mut(&call) {
                c.state = CallState::Answered;
                c.timer_answer = None;
                c.timer = timer.map(|t| t.timer(now));
            }
            self.start_ok_retransmit(now, call, seq, bytes, reply.peer);
        }
    }

    /// Sends 180 Ringing (the caller hears ringback until `answer`).
    pub fn ring(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some((key, reply)) = c.inbound().filter(|_| c.state == CallState::Offered) else {
            return;
        };
        let contact = self.contact(reply.peer.transport);
        self.respond(
            now,
            &key,
            &reply,
            Answer::code(180).header("Contact", contact),
        );
    }

    /// Sends a final error response (e.g. 488, 480, 503) to the INVITE.
    pub fn reject(&mut self, now: Instant, call: CallId, code: u16) {
        self.reject_with(now, call, code, Vec::new());
    }

    /// `reject` with extra headers, e.g. 401 with `WWW-Authenticate`. Headers
    /// whose name is not a token or the endpoint's own, or whose value is not
    /// one line, are left out.
    pub fn reject_with(
        &mut self,
        now: Instant,
        call: CallId,
        code: u16,
        headers: Vec<(String, String)>,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let Some((key, reply)) = c.inbound().filter(|_| c.state == CallState::Offered) else {
            return;
        };
        let code = if (300..=699).contains(&code) {
            code
        } else {
            500
        };
        let mut answer = Answer::code(code);
        answer.headers.extend(clean_headers(headers));
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
    pub fn answer_reoffer(&mut self, now: Instant, call: CallId, sdp: Option<&str>) {
        self.answer_reinvite(now, SessionKey::Call(call), sdp);
    }

    /// `answer_reoffer` for a leg's `LegReOffer`.
    pub fn answer_leg_reoffer(&mut self, now: Instant, leg: LegKey, sdp: Option<&str>) {
        self.answer_reinvite(now, SessionKey::Leg(leg), sdp);
    }

    /// Ends an answered call or leg with BYE (`Ended`/`LegEnded` with
    /// `LocalBye` follows), a not-yet-answered call with 480 (`Ended` at once),
    /// a not-yet-answered leg with CANCEL (as `cancel`).
    pub fn hangup(&mut self, now: Instant, session: impl Into<SessionKey>) {
        let session = session.into();
        let call = session.slot();
        let Some(c) = self
            .calls
            .get_mut(&call)
            .filter(|c| c.session(call) == session)
        else {
            return;
        };
        match c.state {
            CallState::Offered => {
                let Some((key, reply)) = c.inbound() else {
                    return;
                };
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
            CallState::Dialing | CallState::Early => self.cancel_leg(now, call),
            CallState::Cancelling | CallState::Ending => {}
        }
    }

    /// Hangs up every call and leg (shutdown). Returns how many were asked to end.
    pub fn hangup_all(&mut self, now: Instant) -> usize {
        let mut keys: Vec<SessionKey> = self.calls.iter().map(|(k, c)| c.session(*k)).collect();
        keys.sort_by_key(|k| k.slot());
        for key in &keys {
            self.hangup(now, *key);
        }
        keys.len()
    }
}

mod in_dialog;
mod inbound;
mod legs;
mod register;
mod replies;
mod state;
mod stats;
mod transactions;

#[cfg(test)]
mod tests;
