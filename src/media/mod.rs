//! Media: G.711, RTP, RFC 4733 DTMF, the shared prompt library and the pacer
//! that sends every call's RTP from one clock.
//!
//! CONTRACT (the call layer is written against this; keep it or change both):
//! - `PromptLibrary::load(dir, &Catalogue)` once at start: every `audio/<lang>/<id>.wav`
//!   decoded, converted to 8 kHz mono, pre-encoded to PCMU and PCMA, shared as
//!   `Arc<Clip>`.
//! - `MediaEngine::start(config, metrics)` spawns the pacer (one task for all calls)
//!   and returns the handle plus the event receiver.
//! - per call: `open` binds an RTP socket from the port range and starts sending
//!   comfort silence; `play` queues clips; `stop` cuts playback (barge-in);
//!   `update` applies a re-INVITE; `close` releases the socket at once.
//! - events: playback finished (per `play_id`), a DTMF digit (RFC 4733, one per
//!   event, end retransmissions ignored).

use crate::metrics::Metrics;
use crate::sip::CallKey;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The two G.711 codecs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// μ-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// One prompt, pre-encoded once for both codecs. 160 bytes per 20 ms frame.
#[derive(Debug)]
pub struct Clip {
    pub pcmu: Box<[u8]>,
    pub pcma: Box<[u8]>,
}

/// Every prompt's audio, loaded once and shared by all calls.
#[derive(Debug, Default)]
pub struct PromptLibrary {}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no free RTP port in the configured range")]
    NoFreePort,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Pacer settings.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Address RTP sockets bind to (and that the SDP answer names).
    pub bind_ip: IpAddr,
    /// Inclusive RTP port range; even ports are used.
    pub port_min: u16,
    pub port_max: u16,
}

/// Where and how to send a call's RTP.
#[derive(Debug, Clone, Copy)]
pub struct StreamParams {
    pub remote: SocketAddr,
    pub codec: Codec,
    /// Negotiated RFC 4733 payload type, if any.
    pub telephone_event_pt: Option<u8>,
    /// False while the caller holds the call (sendonly/inactive/0.0.0.0).
    pub send: bool,
}

/// What the media side reports to the call layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    PlaybackFinished { call: CallKey, play_id: u64 },
    Digit { call: CallKey, digit: char },
}

/// Handle to the pacer; cheap to clone.
#[derive(Clone)]
pub struct MediaEngine {}

impl MediaEngine {
    pub fn start(
        _config: MediaConfig,
        _metrics: Arc<Metrics>,
    ) -> (MediaEngine, mpsc::Receiver<MediaEvent>) {
        unimplemented!("media engine")
    }
    /// Binds the call's RTP socket; returns the local port for the SDP answer.
    pub fn open(&self, _call: CallKey, _params: StreamParams) -> Result<u16, MediaError> {
        unimplemented!("media engine")
    }
    pub fn update(&self, _call: CallKey, _params: StreamParams) {}
    /// Plays clips one after the other; `PlaybackFinished { play_id }` at the end.
    pub fn play(&self, _call: CallKey, _play_id: u64, _clips: Vec<Arc<Clip>>) {}
    /// Stops playback at once (barge-in); no `PlaybackFinished` for it.
    pub fn stop(&self, _call: CallKey) {}
    /// Releases the call's socket.
    pub fn close(&self, _call: CallKey) {}
}
