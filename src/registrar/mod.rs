//! Where agents' softphones register: digest authentication (RFC 7616, in
//! `crate::digest`, which our INVITEs to trunks use too) and the bindings of
//! each agent to the contacts it can be rung at (RFC 3261 §10).
//!
//! Both are sans-IO: the SIP layer parses REGISTER, hands the values in with
//! `now`, and sends what comes back.

pub mod bindings;
pub mod failures;

pub use crate::digest::{
    ha1, parse_authorization, Algorithm, Challenge, DigestAuth, DigestConfig, DigestResponse,
    Ha1Set, Verdict, DEFAULT_ALGORITHMS,
};
pub use bindings::{
    Binding, BindingInfo, ContactParam, Contacts, CredentialStore, RegisterOutcome,
    RegisterRequest, Registrar, RegistrarConfig, RegistrarEvent,
};
pub use failures::{FailureConfig, FailureReason, RegisterFailure};

/// Where an agent's phone can be rung, as a node learnt it from the phone's
/// REGISTER: shared in cluster mode so that any node can ring the agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PhoneContact {
    /// The Contact URI the phone registered.
    pub uri: String,
    /// The address the REGISTER came from.
    pub source: std::net::SocketAddr,
    pub tcp: bool,
}
