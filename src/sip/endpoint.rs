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

use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

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

/// The endpoint. See the module comment for the contract.
pub struct SipEndpoint {
    _config: EndpointConfig,
    _metrics: Arc<Metrics>,
}

impl SipEndpoint {
    pub fn new(config: EndpointConfig, metrics: Arc<Metrics>) -> SipEndpoint {
        SipEndpoint {
            _config: config,
            _metrics: metrics,
        }
    }

    /// Feeds one received datagram (UDP) or one framed message (TCP).
    pub fn handle_input(
        &mut self,
        _now: Instant,
        _transport: Transport,
        _source: SocketAddr,
        _data: &[u8],
    ) {
        unimplemented!("sip endpoint")
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, _now: Instant) {
        unimplemented!("sip endpoint")
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }

    pub fn poll_event(&mut self) -> Option<SipEvent> {
        None
    }

    /// Sends 200 OK with this SDP answer (retransmitted until ACK).
    pub fn answer(&mut self, _now: Instant, _call: CallKey, _sdp: &str) {
        unimplemented!("sip endpoint")
    }

    /// Sends a final error response (e.g. 488, 480, 503) to the INVITE.
    pub fn reject(&mut self, _now: Instant, _call: CallKey, _code: u16) {
        unimplemented!("sip endpoint")
    }

    /// Answers a re-INVITE: `Some(sdp)` → 200 with it; `None` → 488.
    pub fn answer_reoffer(&mut self, _now: Instant, _call: CallKey, _sdp: Option<&str>) {
        unimplemented!("sip endpoint")
    }

    /// Ends an answered call with BYE (or a not-yet-answered one with a final
    /// error response). `Ended { reason: LocalBye }` follows.
    pub fn hangup(&mut self, _now: Instant, _call: CallKey) {
        unimplemented!("sip endpoint")
    }
}
