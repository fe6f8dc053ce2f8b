//! The SIP endpoint core: the one object the call logic talks to.
//!
//! CONTRACT (the call layer is written against this; keep it or change both):
//! - input:  `handle_input(now, transport, source, bytes)`, `handle_timeout(now)`
//! - output: `poll_transmit()`, `poll_event()`, `poll_timeout()`
//! - inbound calls (`CallId`): `answer`, `ring`, `reject`, `reject_with`,
//!   `answer_reoffer`, `hangup`
//! - outbound legs (`LegKey`, e.g. the hotline ringing an agent): `invite`,
//!   `cancel`, `answer_leg_reoffer`, `hangup`; events `Leg*`
//! - both (`SessionKey`): `hangup`, `probe` (→ `ProbeFailed`), `hangup_all`;
//!   RFC 4028 session timers run on their own (→ `ProbeFailed` when our
//!   refresh fails, `SessionExpired` when the peer's does not come)
//! - REGISTER: `SipEvent::Register`, answered with `respond_register`
//!
//! The endpoint answers on its own, without asking the call layer: 100 Trying to
//! INVITE, OPTIONS 200, CANCEL (200 + 487 on the INVITE, then `Cancelled`),
//! BYE 200 (then `Ended`/`LegEnded`), UPDATE without SDP 200 (a session
//! refresh), unknown dialog 481, unsupported method 405 with Allow, malformed 400 (or drop), INFO `application/dtmf-relay` 200 (then
//! `Dtmf`/`LegDtmf`), ACKs for responses to our INVITEs, retransmissions. It
//! counts requests received and responses sent in `EndpointStats`.
//!
//! Choices worth knowing:
//! - The 2xx to an INVITE is repeated by this core (RFC 3261 13.3.1.4) at T1,
//!   2T1, ... capped at T2; after 64*T1 without ACK the call ends with
//!   `AckTimeout` and is sent a BYE. `hangup` before the ACK waits for it.
//! - In-dialog requests we send (BYE, OPTIONS, ACK) go to the address the
//!   INVITE came from, or for a leg to `OutboundInvite::destination` (symmetric
//!   signalling: works behind NAT and reuses the TCP connection); their
//!   Request-URI and Route headers follow the dialog (RFC 3261 12.2.1.1).
//! - Legs: a leg ends in exactly one `LegFailed` (never answered; 408 when
//!   nothing answered, including 64*T1 after a CANCEL) or one `LegEnded`. A
//!   2xx is ACKed by the core and each repetition re-ACKed; a 2xx from a second
//!   fork, or one that crossed our CANCEL, is ACKed and sent BYE (the latter
//!   reported as `LegEnded`, never `LegAnswered`). `cancel` before any
//!   provisional waits for one (RFC 3261 9.1). A leg ringing forever stays until
//!   `cancel`: ring timeouts are the call layer's.
//! - INFO: `application/dtmf-relay` and `application/dtmf` → 200 (+ `Dtmf`),
//!   no body → 200, any other body → 415 with Accept.
//! - REGISTER is parsed (syntax errors → 400 here) and left to the registrar;
//!   one never answered is dropped with its transaction after 64*T1. Other
//!   known but unsupported methods (SUBSCRIBE, ...) → 405 with Allow; unknown
//!   method tokens → 501 with Allow (RFC 4475 3.1.1.2).
//! - A re-INVITE while an earlier INVITE is unfinished → 500 with Retry-After
//!   (RFC 3261 14.2). `Require` naming anything but `timer` → 420 with
//!   `Unsupported` listing the rest.
//! - RFC 4028 session timers (`super::session_timer`, `set_session_timers`):
//!   `Supported: timer` and `Allow: ... UPDATE` in our 2xx, OPTIONS answers and
//!   INVITEs. An INVITE (or re-INVITE, UPDATE) whose Session-Expires is below
//!   our Min-SE gets 422 with `Min-SE` and never reaches the call layer; else
//!   its 2xx carries `Session-Expires` (+ `Require: timer` if the UAC supports
//!   timers; none if it neither supports timers nor allows UPDATE) and the
//!   timer starts when that 2xx is sent. In-dialog UPDATE and
//!   re-INVITE are refreshes; an UPDATE with SDP gets 488 (we make no
//!   offer/answer in UPDATE). When we refresh it is an UPDATE without SDP at
//!   half the interval (408/481/none → `ProbeFailed`, other failures keep the
//!   session). When the peer refreshes, none by `interval - min(32, interval/3)`
//!   → `SessionExpired`. Legs offer `Session-Expires` and follow the 2xx; a
//!   2xx without it means no timer (RFC 4028 7.2). A 422 to a leg's INVITE is
//!   not retried: the leg fails like any other refusal.
//! - Bounds: `max_calls` calls and legs together (then 503 + Retry-After, or
//!   `LegFailed` 503), max_transactions (at least 4*max_calls) server and client
//!   transactions, max_calls+64 REGISTERs awaiting an answer, output queues of
//!   8*max_calls+1024; a session timer lives in its call, with no table of
//!   its own. The shell drains `poll_transmit`/`poll_event` after every call in.

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
pub use stats::EndpointStats;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    /// Extra headers, e.g. `X-Hotline-Language: pl`. Names must be tokens and
    /// values single-line; others are left out.
    pub headers: Vec<(String, String)>,
    /// SDP offer.
    pub sdp: String,
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
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, UPDATE";
/// Option tags we support (RFC 4028 session timers), for `Supported`.
const SUPPORTED: &str = "timer";
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
    headers: Vec<(String, String)>,
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
        self.headers.push((name.to_string(), value.into()));
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
    call: Option<CallId>,
    /// A REGISTER waiting for the registrar; forgotten with the transaction.
    register: Option<RegisterHandle>,
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

enum ClientTx {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

/// Why we sent a request, i.e. what its outcome means.
enum Purpose {
    /// BYE: report the end with this reason when it finishes (`None`: the
    /// session was already reported gone, e.g. a stray fork).
    Bye(CallId, Option<EndReason>),
    /// The INVITE of a leg.
    Invite(Box<InviteTx>),
    /// CANCEL of a leg's INVITE: its outcome is the INVITE's final response.
    Cancel,
    /// In-dialog OPTIONS from `probe`.
    Probe(CallId),
    /// Our RFC 4028 session refresh (UPDATE without SDP).
    Refresh(CallId),
    /// Nothing to report (a BYE to a stray fork, an outcome already handled).
    Done,
}

/// A leg's INVITE transaction and what answering its 2xx responses needs,
/// kept with the transaction because 2xx may repeat after the leg is gone.
struct InviteTx {
    leg: CallId,
    sent: Sent,
    /// ACKs sent, by the To tag of the 2xx they acknowledge (bounded).
    acks: Vec<(String, Vec<u8>)>,
}

/// The INVITE we sent, for CANCEL, ACKs and dialogs.
#[derive(Clone)]
struct Sent {
    request_uri: String,
    via: String,
    /// From with our tag, and its parts.
    from: String,
    local_uri: String,
    local_tag: String,
    to: String,
    call_id: String,
    cseq: u32,
}

impl Sent {
    fn as_invite(&self) -> SentInvite<'_> {
        SentInvite {
            call_id: &self.call_id,
            local_uri: &self.local_uri,
            local_tag: &self.local_tag,
            remote_uri: &self.to,
            request_uri: &self.request_uri,
            cseq: self.cseq,
        }
    }
}

struct ClientEntry {
    tx: ClientTx,
    peer: Peer,
    purpose: Purpose,
    wake: Option<WakeKey>,
}

impl ClientEntry {
    fn next_timeout(&self) -> Option<Instant> {
        match &self.tx {
            ClientTx::Invite(t) => t.next_timeout(),
            ClientTx::NonInvite(t) => t.next_timeout(),
        }
    }

    fn is_terminated(&self) -> bool {
        match &self.tx {
            ClientTx::Invite(t) => t.is_terminated(),
            ClientTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// INVITE received, no final response yet.
    Offered,
    /// 200 OK sent, waiting for ACK.
    Answered,
    /// Leg: INVITE sent, nothing back yet.
    Dialing,
    /// Leg: a provisional response came (CANCEL is now allowed).
    Early,
    /// Leg: `cancel` asked; the INVITE's final response is awaited.
    Cancelling,
    Confirmed,
    /// Our BYE is out.
    Ending,
}

/// A 2xx we repeat until its ACK arrives (RFC 3261 13.3.1.4).
struct PendingOk {
    cseq: u32,
    peer: Peer,
    bytes: Vec<u8>,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// Which side started the session.
enum Origin {
    /// They called us: the INVITE's server transaction and reply template.
    Inbound(Box<(ServerKey, Reply)>),
    /// We called them (a leg).
    Outbound(Box<Outgoing>),
}

struct Outgoing {
    /// Client key of the INVITE transaction.
    invite_tx: String,
    sent: Sent,
    ringing_reported: bool,
    /// `cancel` came before any provisional: CANCEL goes out on the first.
    cancel_pending: bool,
    /// RFC 3261 9.1: without a final response 64*T1 after CANCEL, give up.
    cancel_deadline: Option<Instant>,
}

/// A call (inbound) or a leg (outbound): one INVITE dialog. Both live in
/// `SipEndpoint::calls`; a leg under the `CallId` with its number.
struct Call {
    origin: Origin,
    state: CallState,
    dialog: Dialog,
    peer: Peer,
    /// Client key of a running `probe`.
    probe: Option<String>,
    pending_ok: Option<PendingOk>,
    wake: Option<WakeKey>,
    /// A re-INVITE waiting for `answer_reoffer`.
    reinvite: Option<(ServerKey, Reply, u32)>,
    /// `hangup` came before the ACK: send BYE once it arrives (or we give up).
    bye_after_ack: bool,
    /// What the 2xx to the INVITE (or pending re-INVITE) says about the
    /// session timer; it starts when that 2xx goes out.
    timer_answer: Option<TimerAnswer>,
    /// The RFC 4028 session timer, once running.
    timer: Option<SessionTimer>,
}

/// A UAS decision to accept a session timer, kept until the 2xx is sent.
#[derive(Debug, Clone, Copy)]
struct TimerAnswer {
    session: SessionExpires,
    require: bool,
    refresher: Side,
}

impl TimerAnswer {
    /// The 2xx headers: `Session-Expires`, and `Require: timer` when the UAC
    /// supports timers (RFC 4028 9).
    fn headers(&self) -> Vec<(String, String)> {
        let mut out = vec![("Session-Expires".to_string(), self.session.format())];
        if self.require {
            out.push(("Require".to_string(), "timer".to_string()));
        }
        out
    }

    fn timer(&self, now: Instant) -> SessionTimer {
        SessionTimer::new(now, self.session.interval, self.refresher)
    }
}

type WakeKey = (Instant, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Wake {
    Server(ServerKey),
    Client(String),
    Call(CallId),
}

impl Call {
    fn session(&self, slot: CallId) -> SessionKey {
        match self.origin {
            Origin::Inbound(_) => SessionKey::Call(slot),
            Origin::Outbound(_) => SessionKey::Leg(LegKey(slot.0)),
        }
    }

    /// The INVITE server transaction and reply template of an inbound call.
    fn inbound(&self) -> Option<(ServerKey, Reply)> {
        match &self.origin {
            Origin::Inbound(invite) => Some((invite.0.clone(), invite.1.clone())),
            Origin::Outbound(_) => None,
        }
    }

    fn outgoing(&mut self) -> Option<&mut Outgoing> {
        match &mut self.origin {
            Origin::Outbound(o) => Some(o),
            Origin::Inbound(_) => None,
        }
    }
}

/// The endpoint. See the module comment for the contract.
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
    next_register: u64,
    wakes: BTreeMap<WakeKey, Wake>,
    wake_seq: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SipEvent>,
    session_timers: TimerConfig,
}

impl SipEndpoint {
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

    fn max_servers(&self) -> usize {
        self.config
            .max_transactions
            .max(self.config.max_calls.saturating_mul(4))
            .saturating_add(64)
    }

    /// A session may have an INVITE, a CANCEL or BYE, a probe and a session
    /// refresh out at once.
    fn max_clients(&self) -> usize {
        self.config
            .max_transactions
            .max(self.config.max_calls.saturating_mul(4))
            .saturating_add(64)
    }

    fn max_registers(&self) -> usize {
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

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

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

    fn answer_reinvite(&mut self, now: Instant, session: SessionKey, sdp: Option<&str>) {
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
                    let answer =
                        Answer::code(503).header("Retry-After", RETRY_AFTER_SECS.to_string());
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
            let answer = Answer::code(503).header("Retry-After", RETRY_AFTER_SECS.to_string());
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

    fn options_answer(&self) -> Answer<'static> {
        Answer::code(200)
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED)
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
                    let answer = Answer::code(500).header("Retry-After", "1");
                    self.respond(now, key, &reply, answer);
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
            m => {
                let code = if m.is_known() { 405 } else { 501 };
                self.respond(now, key, &reply, Answer::code(code).header("Allow", ALLOW));
            }
        }
    }

    /// RFC 4028 9 on a request that may carry a session timer: the answer to
    /// keep for its 2xx, or the 422 to send instead.
    fn negotiate_timer(&self, msg: &Message) -> Result<Option<TimerAnswer>, Answer<'static>> {
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
            let answer = Answer::code(500).header("Retry-After", "1");
            self.respond(now, key, &reply, answer);
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
    fn refresh_done(
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
        // The session timer runs on (or, after the first ACK, starts).
        self.reschedule_call(call);
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

    fn client_timeout(&mut self, now: Instant, key: String) {
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

    /// 2xx retransmission: T1, 2T1, ... capped at T2; give up after 64*T1.
    /// Also the wait for the final response after our CANCEL, and the
    /// session timer of a confirmed session.
    fn call_timeout(&mut self, now: Instant, call: CallId) {
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

    /// The 2xx retransmission and CANCEL parts of `call_timeout`; re-arms
    /// the call's wake for whatever is next (the session timer included).
    fn pending_timeout(&mut self, now: Instant, call: CallId) {
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
            headers: vec![
                ("Contact".to_string(), contact),
                ("Allow".to_string(), ALLOW.to_string()),
                ("Supported".to_string(), SUPPORTED.to_string()),
            ],
            body: Some(("application/sdp", sdp.as_bytes())),
        }
    }

    fn start_ok_retransmit(
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

    /// Sends BYE in a client transaction; `report` is the `Ended` reason to
    /// emit when it finishes (None when the call layer was already told).
    fn send_bye(&mut self, now: Instant, call: CallId, report: Option<EndReason>) {
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

    /// Sends a new non-INVITE request in a client transaction. False (nothing
    /// sent) when the transaction table is full.
    fn start_request(
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
    fn new_via(&self, transport: Transport) -> (String, String) {
        let branch = format!("{MAGIC_COOKIE}{:016x}", rand::random::<u64>());
        let proto = transport.via_name();
        let via = format!(
            "SIP/2.0/{proto} {};branch={branch};rport",
            self.config.local_addr
        );
        (branch, via)
    }

    /// The BYE finished: report and forget the call.
    fn finish_call(&mut self, call: CallId, reason: EndReason) {
        if let Some(session) = self.calls.get(&call).map(|c| c.session(call)) {
            self.forget_call(call);
            self.push_ended(session, reason);
        }
    }

    fn push_ended(&mut self, session: SessionKey, reason: EndReason) {
        self.push_event(match session {
            SessionKey::Call(call) => SipEvent::Ended { call, reason },
            SessionKey::Leg(leg) => SipEvent::LegEnded { leg, reason },
        });
    }

    /// Drops a call, answering any INVITE still open on it (the initial one or
    /// a re-INVITE) with 487 so that no transaction is left without an end.
    fn remove_call(&mut self, now: Instant, call: CallId) {
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

    fn forget_call(&mut self, call: CallId) {
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
        self.stats.count_response(code);
        self.push_transmit(peer, bytes.clone());
        Some(bytes)
    }

    fn send_stateless(&mut self, reply: &Reply, answer: Answer) {
        let code = answer.code;
        let bytes = self.render(reply, answer);
        self.stats.count_response(code);
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

    fn push_event(&mut self, event: SipEvent) {
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

    fn reschedule_client(&mut self, key: &str) {
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

    fn reschedule_call(&mut self, call: CallId) {
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
}

/// A `Warning` value; the text may come from the peer, so it is kept to
/// printable characters and no quotes.
/// An event's name for logs, without its contents.
fn event_kind(event: &SipEvent) -> &'static str {
    match event {
        SipEvent::Register(_) => "register",
        SipEvent::IncomingCall(_) => "incoming_call",
        _ => "other",
    }
}

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

/// Client transactions are keyed by branch and method: a CANCEL shares the
/// branch of the INVITE it cancels (RFC 3261 17.1.3).
fn client_key(branch: &str, method: &str) -> String {
    format!("{branch} {method}")
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
fn clean_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
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
fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

mod legs;
mod register;
mod stats;

#[cfg(test)]
mod tests;
