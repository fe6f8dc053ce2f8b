//! The media operations a call needs, as a trait so that the call layer can be
//! driven in tests without sockets.

use crate::media::{Clip, MediaEngine, MediaError, StreamParams};
use crate::sip::CallId;
use std::sync::Arc;
use std::time::Duration;

/// What the call layer asks of the media side.
pub trait MediaControl {
    /// Opens the call's RTP stream; returns the local port for the SDP answer.
    fn open(&mut self, call: CallId, params: StreamParams) -> Result<u16, MediaError>;
    fn update(&mut self, call: CallId, params: StreamParams);
    fn play(&mut self, call: CallId, play_id: u64, clips: Vec<Arc<Clip>>);
    fn stop(&mut self, call: CallId);
    fn close(&mut self, call: CallId);
    /// Binds a port for a leg we call (an agent), before its answer; `update`
    /// later says where to send.
    fn open_pending(&mut self, call: CallId) -> Result<u16, MediaError>;
    /// Loops hold music under announcements until `stop_music`.
    fn play_music(&mut self, call: CallId, clip: Arc<Clip>);
    fn stop_music(&mut self, call: CallId);
    /// Relays two legs to each other; prompts and music stop on both.
    fn bridge(&mut self, a: CallId, b: CallId);
    /// Ends the bridge `call` is in; both legs get comfort silence.
    fn unbridge(&mut self, call: CallId);
    /// How long the leg may receive no RTP before `RtpTimeout`; `None`: never.
    fn set_rtp_timeout(&mut self, call: CallId, timeout: Option<Duration>);
}

impl MediaControl for MediaEngine {
    fn open(&mut self, call: CallId, params: StreamParams) -> Result<u16, MediaError> {
        MediaEngine::open(self, call, params)
    }
    fn update(&mut self, call: CallId, params: StreamParams) {
        MediaEngine::update(self, call, params)
    }
    fn play(&mut self, call: CallId, play_id: u64, clips: Vec<Arc<Clip>>) {
        MediaEngine::play(self, call, play_id, clips)
    }
    fn stop(&mut self, call: CallId) {
        MediaEngine::stop(self, call)
    }
    fn close(&mut self, call: CallId) {
        MediaEngine::close(self, call)
    }
    fn open_pending(&mut self, call: CallId) -> Result<u16, MediaError> {
        MediaEngine::open_pending(self, call)
    }
    fn play_music(&mut self, call: CallId, clip: Arc<Clip>) {
        MediaEngine::play_music(self, call, clip)
    }
    fn stop_music(&mut self, call: CallId) {
        MediaEngine::stop_music(self, call)
    }
    fn bridge(&mut self, a: CallId, b: CallId) {
        MediaEngine::bridge(self, a, b)
    }
    fn unbridge(&mut self, call: CallId) {
        MediaEngine::unbridge(self, call)
    }
    fn set_rtp_timeout(&mut self, call: CallId, timeout: Option<Duration>) {
        MediaEngine::set_rtp_timeout(self, call, timeout)
    }
}
