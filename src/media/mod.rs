//! Media: G.711, RTP, RFC 4733 DTMF, the shared prompt library, the pacer
//! that sends every call's RTP from one clock, and the receive core that
//! decides what each received packet means.
//!
//! Sans-IO cores, each tested with a fake clock: `pacer` (every stream on one
//! grid, bridges, and once a second each leg's RTP-timeout watch, `liveness`),
//! `receive` (latching, digits, the relay), `bridge` (rewriting a packet into
//! the other leg's stream), `dtmf`. The tokio shell
//! around them is `engine`: the pacing thread and one receive task per leg.
//!
//! CONTRACT (the call layer is written against this; keep it or change both):
//! - `PromptLibrary::load(dir, &Catalogue)` once at start: every `audio/<lang>/<id>.wav`
//!   decoded, converted to 8 kHz mono, pre-encoded to PCMU and PCMA, shared as
//!   `Arc<Clip>`.
//! - `MediaEngine::start(config, metrics)` spawns the pacer (one thread for all
//!   calls, sub-ms clock) and returns the handle plus the event receiver.
//! - per call: `open` binds an RTP socket from the port range and starts sending
//!   comfort silence; `play` queues clips; `stop` cuts playback (barge-in);
//!   `update` applies a re-INVITE; `close` releases the socket at once.
//! - events: playback finished (per `play_id`), a DTMF digit (RFC 4733, one per
//!   event, end retransmissions ignored), no RTP from a leg for its timeout.
//! - queue and agent: every leg (caller or agent) is a stream named by its own
//!   `CallId`; `open_pending` binds an agent leg's port before its answer;
//!   `play_music` loops hold music under announcements; `bridge` relays two
//!   legs to each other on arrival, `unbridge` hands them back to the pacer.

pub mod bridge;
pub mod clip;
pub mod dtmf;
mod engine;
pub mod g711;
pub mod liveness;
pub mod music;
pub mod pacer;
pub mod prompt;
pub mod receive;
pub mod rtp;
mod socket;

pub use clip::{Clip, PromptError};
pub use engine::{MediaEngine, MediaStats, PacerObserver};
pub use prompt::{MissingAudio, PromptLibrary};

use crate::ids::CallId;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// G.711 sample rate.
pub const SAMPLE_RATE: u32 = 8000;
/// Packetisation interval: one frame per packet.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Samples (and G.711 bytes) in one frame.
pub const SAMPLES_PER_FRAME: u32 = 160;
pub const FRAME_BYTES: usize = SAMPLES_PER_FRAME as usize;

static PCMU_SILENCE_FRAME: [u8; FRAME_BYTES] = [g711::ULAW_SILENCE; FRAME_BYTES];
static PCMA_SILENCE_FRAME: [u8; FRAME_BYTES] = [g711::ALAW_SILENCE; FRAME_BYTES];

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
    /// One pre-encoded 20 ms frame of silence, sent while no prompt plays.
    pub fn silence_frame(self) -> &'static [u8; FRAME_BYTES] {
        match self {
            Codec::Pcmu => &PCMU_SILENCE_FRAME,
            Codec::Pcma => &PCMA_SILENCE_FRAME,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no free RTP port in the configured range")]
    NoFreePort,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The pacer is not running or cannot keep up with commands.
    #[error("media engine unavailable")]
    Unavailable,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    PlaybackFinished {
        call: CallId,
        play_id: u64,
    },
    Digit {
        call: CallId,
        digit: char,
    },
    /// A stream that should be receiving (not held by its side) got no RTP
    /// for its timeout; reported once until media comes back.
    RtpTimeout {
        call: CallId,
    },
}
