//! How a SIP message travels. One type for the whole SIP side: the endpoint
//! that sends and receives, and the registrar that remembers how a phone
//! registered so that its calls go back the same way.

/// How a message travelled. For TCP the shell keeps one connection per peer
/// address, so `(Transport::Tcp, peer)` names the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// Whether the transport delivers for us: no retransmissions over it
    /// (RFC 3261 17.1.1.2, 17.2.1).
    pub fn is_reliable(self) -> bool {
        self == Transport::Tcp
    }

    /// The protocol as a Via names it (`SIP/2.0/UDP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}
