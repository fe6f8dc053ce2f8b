//! SIP: the wire layer in front of `rsip`, RFC 3261 transactions and dialogs, and
//! the endpoint core that the call logic talks to.
//!
//! Everything here is sans-IO: input is bytes with a source address and an
//! explicit `now`; output is polled (`poll_transmit`, `poll_event`,
//! `poll_timeout`). The tokio shell in `crate::server` owns the sockets and clocks.

pub mod admission;
pub mod dialog;
pub mod dtmf_relay;
pub mod endpoint;
pub mod message;
pub mod replaces;
pub mod session_timer;
pub mod transaction;
pub mod transport;
pub mod wire;

pub use endpoint::{
    CallId, Credentials, EndReason, EndpointConfig, EndpointStats, IncomingCall, LegKey,
    OutboundInvite, Refusal, RefusedCall, RegisterContact, RegisterHandle, RegisterRequest,
    SessionKey, SipEndpoint, SipEvent, Transmit,
};
pub use replaces::Replaces;
pub use transport::Transport;
