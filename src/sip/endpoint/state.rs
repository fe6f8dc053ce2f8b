//! What the endpoint keeps between messages: server and client transactions
//! with what their outcome means, and one `Call` per INVITE dialog (a call
//! that came in, or a leg we placed), with its 2xx awaiting ACK, re-INVITE
//! and session timer. Plain data; the logic is in the sibling files.

use super::*;

/// Where replies for one request go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Peer {
    pub(super) transport: Transport,
    pub(super) addr: SocketAddr,
}

pub(super) enum ServerTx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

pub(super) struct ServerEntry {
    pub(super) tx: ServerTx,
    pub(super) peer: Peer,
    pub(super) call: Option<CallId>,
    /// A REGISTER waiting for the registrar; forgotten with the transaction.
    pub(super) register: Option<RegisterHandle>,
    pub(super) wake: Option<WakeKey>,
}

impl ServerEntry {
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        match &self.tx {
            ServerTx::Invite(t) => t.next_timeout(),
            ServerTx::NonInvite(t) => t.next_timeout(),
        }
    }

    pub(super) fn is_terminated(&self) -> bool {
        match &self.tx {
            ServerTx::Invite(t) => t.is_terminated(),
            ServerTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

pub(super) enum ClientTx {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

/// Why we sent a request, i.e. what its outcome means.
pub(super) enum Purpose {
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
pub(super) struct InviteTx {
    pub(super) leg: CallId,
    pub(super) sent: Sent,
    /// ACKs sent, by the To tag of the 2xx they acknowledge (bounded).
    pub(super) acks: Vec<(String, Vec<u8>)>,
    /// What answering a digest challenge needs (legs with credentials).
    pub(super) auth: Option<Box<AuthRetry>>,
}

/// A leg's INVITE as sent, to send it again with credentials after a 401
/// or 407 (RFC 3261 22.2: same Call-ID and tags, next CSeq, new branch).
pub(super) struct AuthRetry {
    pub(super) credentials: super::Credentials,
    pub(super) transport: Transport,
    pub(super) headers: Vec<(String, String)>,
    pub(super) sdp: String,
    /// Challenges answered so far: one, and one more only if the nonce was
    /// stale; a second plain challenge means the credentials are wrong.
    pub(super) answered: u8,
}

/// The INVITE we sent, for CANCEL, ACKs and dialogs.
#[derive(Clone)]
pub(super) struct Sent {
    pub(super) request_uri: String,
    pub(super) via: String,
    /// From with our tag, and its parts.
    pub(super) from: String,
    pub(super) local_uri: String,
    pub(super) local_tag: String,
    pub(super) to: String,
    pub(super) call_id: String,
    pub(super) cseq: u32,
}

impl Sent {
    /// A request of this INVITE's own transaction (the INVITE, its CANCEL,
    /// the ACK of a final error; RFC 3261 9.1, 17.1.1.3): its Request-URI,
    /// Via, From, Call-ID and CSeq number, `to` as To. More headers follow.
    pub(super) fn request(&self, method: &str, to: &str) -> Writer {
        let mut w = Writer::request(method, &self.request_uri);
        w.header("Via", &self.via)
            .header("Max-Forwards", "70")
            .header("From", &self.from)
            .header("To", to)
            .header("Call-ID", &self.call_id)
            .header("CSeq", &format!("{} {method}", self.cseq));
        w
    }

    pub(super) fn as_invite(&self) -> SentInvite<'_> {
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

pub(super) struct ClientEntry {
    pub(super) tx: ClientTx,
    pub(super) peer: Peer,
    pub(super) purpose: Purpose,
    pub(super) wake: Option<WakeKey>,
}

impl ClientEntry {
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        match &self.tx {
            ClientTx::Invite(t) => t.next_timeout(),
            ClientTx::NonInvite(t) => t.next_timeout(),
        }
    }

    pub(super) fn is_terminated(&self) -> bool {
        match &self.tx {
            ClientTx::Invite(t) => t.is_terminated(),
            ClientTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallState {
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
pub(super) struct PendingOk {
    pub(super) cseq: u32,
    pub(super) peer: Peer,
    pub(super) bytes: Vec<u8>,
    pub(super) interval: Duration,
    pub(super) next: Instant,
    pub(super) give_up: Instant,
}

/// Which side started the session.
pub(super) enum Origin {
    /// They called us: the INVITE's server transaction and reply template.
    Inbound(Box<(ServerKey, Reply)>),
    /// We called them (a leg).
    Outbound(Box<Outgoing>),
}

pub(super) struct Outgoing {
    /// Client key of the INVITE transaction.
    pub(super) invite_tx: String,
    pub(super) sent: Sent,
    pub(super) ringing_reported: bool,
    /// `cancel` came before any provisional: CANCEL goes out on the first.
    pub(super) cancel_pending: bool,
    /// RFC 3261 9.1: without a final response 64*T1 after CANCEL, give up.
    pub(super) cancel_deadline: Option<Instant>,
}

/// A call (inbound) or a leg (outbound): one INVITE dialog. Both live in
/// `SipEndpoint::calls`; a leg under the `CallId` with its number.
pub(super) struct Call {
    pub(super) origin: Origin,
    pub(super) state: CallState,
    pub(super) dialog: Dialog,
    pub(super) peer: Peer,
    /// Client key of a running `probe`.
    pub(super) probe: Option<String>,
    pub(super) pending_ok: Option<PendingOk>,
    pub(super) wake: Option<WakeKey>,
    /// A re-INVITE waiting for `answer_reoffer`.
    pub(super) reinvite: Option<(ServerKey, Reply, u32)>,
    /// `hangup` came before the ACK: send BYE once it arrives (or we give up).
    pub(super) bye_after_ack: bool,
    /// What the 2xx to the INVITE (or pending re-INVITE) says about the
    /// session timer; it starts when that 2xx goes out.
    pub(super) timer_answer: Option<TimerAnswer>,
    /// The RFC 4028 session timer, once running.
    pub(super) timer: Option<SessionTimer>,
}

impl Call {
    pub(super) fn session(&self, slot: CallId) -> SessionKey {
        match self.origin {
            Origin::Inbound(_) => SessionKey::Call(slot),
            Origin::Outbound(_) => SessionKey::Leg(LegKey(slot.0)),
        }
    }

    /// The INVITE server transaction and reply template of an inbound call.
    pub(super) fn inbound(&self) -> Option<(ServerKey, Reply)> {
        match &self.origin {
            Origin::Inbound(invite) => Some((invite.0.clone(), invite.1.clone())),
            Origin::Outbound(_) => None,
        }
    }

    pub(super) fn outgoing(&mut self) -> Option<&mut Outgoing> {
        match &mut self.origin {
            Origin::Outbound(o) => Some(o),
            Origin::Inbound(_) => None,
        }
    }
}

/// A UAS decision to accept a session timer, kept until the 2xx is sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct TimerAnswer {
    pub(super) session: SessionExpires,
    pub(super) require: bool,
    pub(super) refresher: Side,
}

impl TimerAnswer {
    /// The 2xx headers: `Session-Expires`, and `Require: timer` when the UAC
    /// supports timers (RFC 4028 9).
    pub(super) fn headers(&self) -> Vec<(String, String)> {
        let mut out = vec![("Session-Expires".to_string(), self.session.format())];
        if self.require {
            out.push(("Require".to_string(), "timer".to_string()));
        }
        out
    }

    pub(super) fn timer(&self, now: Instant) -> SessionTimer {
        SessionTimer::new(now, self.session.interval, self.refresher)
    }
}

pub(super) type WakeKey = (Instant, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wake {
    Server(ServerKey),
    Client(String),
    Call(CallId),
}
