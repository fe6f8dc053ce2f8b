//! RFC 3261 §17 transactions as sans-IO state machines (with the RFC 6026
//! "Accepted" states). They keep the message to repeat and their timers; the
//! endpoint decides where bytes go and owns the clock.

pub mod client;
pub mod server;
pub mod timers;

pub use client::{ClientEvent, InviteClient, InviteClientEvent, NonInviteClient};
pub use server::{InviteServer, InviteServerState, NonInviteServer, NonInviteServerState};
pub use timers::Timers;

use super::message::{Message, Method, MAGIC_COOKIE};

/// What a timer firing asks of the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerOutcome {
    /// Nothing due yet.
    Idle,
    /// Send the stored message again (request for clients, response for servers).
    Retransmit,
    /// The transaction failed for lack of an answer (Timers B, F, H).
    TimedOut,
    /// The transaction is over and can be forgotten.
    Terminated,
}

/// Identifies a server transaction (RFC 3261 17.2.3). ACK maps to INVITE so that
/// an ACK for a non-2xx final response finds its INVITE transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerKey {
    branch: String,
    sent_by: String,
    method: String,
}

impl ServerKey {
    /// The key of this request's transaction; `None` when the request has no Via.
    pub fn of(msg: &Message) -> Option<ServerKey> {
        let method = msg.method()?;
        let via = msg.top_via()?;
        let method = match method {
            Method::Ack => "INVITE".to_string(),
            m => m.as_str().to_string(),
        };
        match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) && b.len() > MAGIC_COOKIE.len() => {
                Some(ServerKey {
                    branch: b.to_string(),
                    sent_by: via.sent_by(),
                    method,
                })
            }
            // RFC 2543 peers: no usable branch. Match on the dialog-ish fields
            // that stay equal between a request, its retransmission and its ACK.
            _ => Some(ServerKey {
                branch: format!(
                    "2543|{}|{}|{}",
                    msg.call_id().unwrap_or(""),
                    msg.from_tag().unwrap_or_default(),
                    msg.cseq().map(|c| c.seq).unwrap_or(0)
                ),
                sent_by: format!("{}|{}", via.sent_by(), via.branch().unwrap_or("")),
                method,
            }),
        }
    }

    /// The INVITE transaction a CANCEL refers to (same branch and sent-by).
    pub fn invite_of_cancel(&self) -> ServerKey {
        ServerKey {
            branch: self.branch.clone(),
            sent_by: self.sent_by.clone(),
            method: "INVITE".to_string(),
        }
    }

    pub fn is_invite(&self) -> bool {
        self.method == "INVITE"
    }
}
