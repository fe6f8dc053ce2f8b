//! The media operations a call needs, as a trait so that the call layer can be
//! driven in tests without sockets.

use crate::media::{Clip, MediaEngine, MediaError, StreamParams};
use crate::sip::CallKey;
use std::sync::Arc;

/// What the call layer asks of the media side.
pub trait MediaControl {
    /// Opens the call's RTP stream; returns the local port for the SDP answer.
    fn open(&mut self, call: CallKey, params: StreamParams) -> Result<u16, MediaError>;
    fn update(&mut self, call: CallKey, params: StreamParams);
    fn play(&mut self, call: CallKey, play_id: u64, clips: Vec<Arc<Clip>>);
    fn stop(&mut self, call: CallKey);
    fn close(&mut self, call: CallKey);
}

impl MediaControl for MediaEngine {
    fn open(&mut self, call: CallKey, params: StreamParams) -> Result<u16, MediaError> {
        MediaEngine::open(self, call, params)
    }
    fn update(&mut self, call: CallKey, params: StreamParams) {
        MediaEngine::update(self, call, params)
    }
    fn play(&mut self, call: CallKey, play_id: u64, clips: Vec<Arc<Clip>>) {
        MediaEngine::play(self, call, play_id, clips)
    }
    fn stop(&mut self, call: CallKey) {
        MediaEngine::stop(self, call)
    }
    fn close(&mut self, call: CallKey) {
        MediaEngine::close(self, call)
    }
}
