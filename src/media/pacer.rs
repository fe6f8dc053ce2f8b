//! The pacing core, sans IO: every call's RTP stream on one shared 20 ms grid.
//!
//! Frame n of a stream is due at a grid point measured from one epoch, so a late
//! wake-up sends what is due (up to `MAX_CATCH_UP` frames) and the schedule never
//! drifts. Sequence numbers count packets sent; timestamps count time, so they run
//! on through silence, hold and skipped frames as RFC 3550 asks.
//!
//! Besides prompts, a stream can loop music under them (an announcement
//! interrupts the music, which then goes on where it was), be bridged to another
//! stream (the shell relays media between the two on arrival; the pacer then
//! only keeps the stream's clock) and be watched for incoming RTP.

use super::liveness::Liveness;
use super::rtp::{self, RtpHeader};
use super::{
    Clip, Codec, MediaEvent, StreamParams, FRAME_BYTES, FRAME_DURATION, SAMPLES_PER_FRAME,
};
use crate::ids::CallId;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames one stream may send in one wake-up when the pacer is late; older ones
/// are skipped (as if lost) so that a stall does not turn into a burst.
pub const MAX_CATCH_UP: u64 = 3;
/// Streams are spread over this many phases of the 20 ms frame, one slot
/// (1 ms) apart, so that each wake-up sends a small share of all streams instead
/// of one burst whose tail arrives late.
pub const SLOTS: u64 = 20;

fn frame_nanos() -> u64 {
    u64::try_from(FRAME_DURATION.as_nanos()).unwrap_or(u64::MAX)
}

fn slot_nanos() -> u64 {
    frame_nanos() / SLOTS
}

/// Plays queued per call; more are refused.
pub const MAX_QUEUED_PLAYS: usize = 16;
/// Clips per play; the rest are cut off.
pub const MAX_CLIPS_PER_PLAY: usize = 64;
/// Events waiting for the shell to pick them up.
pub const MAX_PENDING_EVENTS: usize = 65_536;
/// One RTP packet: fixed header and one G.711 frame.
pub const PACKET_LEN: usize = rtp::HEADER_LEN + FRAME_BYTES;

/// How long a stream that should be receiving may go without RTP before
/// `MediaEvent::RtpTimeout`, unless configured otherwise.
pub const DEFAULT_RTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Random starting points of a stream (RFC 3550 §5.1 asks for random values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInit {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
}

/// What became of one packet handed to the send function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    Sent,
    /// Not sent (socket buffer full or a transient error); counted, not retried.
    Dropped,
    /// The stream's socket is gone: the stream is removed.
    Gone,
}

/// Counts from one `tick`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickStats {
    pub sent: u64,
    pub dropped: u64,
    /// Frames skipped because the pacer woke too late to send them.
    pub skipped: u64,
    /// Frames not sent because the call is on hold.
    pub held: u64,
    /// Streams removed because their socket was gone.
    pub gone: u64,
    /// Frames not sent because the stream is bridged (the relay sends).
    pub bridged: u64,
}

/// Where a bridged stream's outbound RTP goes and how it is numbered, for the
/// relay that feeds it with the other leg's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbound {
    pub call: CallId,
    pub ssrc: u32,
    /// Next sequence number (the relay numbers on from here).
    pub sequence: u16,
    /// RTP timestamp of the frame due at `due`: the stream's clock, from which
    /// the relay derives the timestamp of any moment.
    pub timestamp: u32,
    pub due: Instant,
    /// `None` while nothing may be sent (hold, no address yet).
    pub destination: Option<SocketAddr>,
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
}

impl Outbound {
    /// The stream's RTP timestamp at `now` (8 samples per ms, either side of `due`).
    pub fn timestamp_at(&self, now: Instant) -> u32 {
        let samples =
            |d: Duration| (d.as_nanos() * u128::from(super::SAMPLE_RATE) / 1_000_000_000) as u32;
        if now >= self.due {
            self.timestamp.wrapping_add(samples(now - self.due))
        } else {
            self.timestamp.wrapping_sub(samples(self.due - now))
        }
    }
}

struct Play {
    id: u64,
    clips: VecDeque<Arc<Clip>>,
    /// Next frame of the front clip.
    frame: usize,
}

/// A clip looped under the prompts, at this caller's own position.
struct Music {
    clip: Arc<Clip>,
    frame: usize,
}

impl Music {
    fn next_frame(&mut self, codec: Codec) -> Option<&[u8; FRAME_BYTES]> {
        let frames = self.clip.frames();
        if frames == 0 {
            return None;
        }
        if self.frame >= frames {
            self.frame = 0;
        }
        let index = self.frame;
        self.frame += 1;
        self.clip.frame(codec, index)
    }

    fn skip(&mut self, frames: u64) {
        let len = self.clip.frames() as u64;
        if len > 0 {
            self.frame = ((self.frame as u64 % len + frames % len) % len) as usize;
        }
    }
}

struct Stream<S> {
    call: CallId,
    params: StreamParams,
    /// Where media really comes from, when that differs from the SDP (NAT).
    latched: Option<SocketAddr>,
    sink: S,
    /// Offset of this stream's grid from the epoch, a whole number of slots.
    phase: u64,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// Grid index at which the next frame is due.
    next_tick: u64,
    marker: bool,
    plays: VecDeque<Play>,
    music: Option<Music>,
    /// The leg this one is bridged to: the relay sends, the pacer keeps time.
    peer: Option<CallId>,
    rtp_timeout: Option<Duration>,
    /// Incoming-RTP watch while the stream should be receiving.
    watch: Option<Liveness>,
    packet: [u8; PACKET_LEN],
}

impl<S> Stream<S> {
    fn destination(&self) -> Option<SocketAddr> {
        let dest = self.latched.unwrap_or(self.params.remote);
        (!dest.ip().is_unspecified() && dest.port() != 0).then_some(dest)
    }

    /// Drops finished clips and plays from the front, reporting finished plays.
    fn settle(&mut self, events: &mut Events) {
        while let Some(play) = self.plays.front_mut() {
            match play.clips.front() {
                Some(clip) if play.frame < clip.frames() => return,
                Some(_) => {
                    play.clips.pop_front();
                    play.frame = 0;
                }
                None => {
                    events.push(MediaEvent::PlaybackFinished {
                        call: self.call,
                        play_id: play.id,
                    });
                    self.plays.pop_front();
                }
            }
        }
    }

    /// Puts the next frame (prompt or comfort silence) into the packet buffer.
    fn fill_next_frame(&mut self, events: &mut Events) {
        self.settle(events);
        let codec = self.params.codec;
        let payload = match self.packet.get_mut(rtp::HEADER_LEN..) {
            Some(p) => p,
            None => return,
        };
        let frame = match self.plays.front_mut() {
            Some(play) => play.clips.front().and_then(|clip| {
                let frame = clip.frame(codec, play.frame)?;
                play.frame += 1;
                Some(frame)
            }),
            None => self
                .music
                .as_mut()
                .and_then(|music| music.next_frame(codec)),
        };
        payload.copy_from_slice(frame.unwrap_or(codec.silence_frame()));
        self.settle(events);
    }

    /// Moves playback on by `frames` without producing them.
    fn skip_frames(&mut self, mut frames: u64, events: &mut Events) {
        while frames > 0 {
            self.settle(events);
            let Some(play) = self.plays.front_mut() else {
                break;
            };
            let left = play
                .clips
                .front()
                .map_or(0, |c| c.frames().saturating_sub(play.frame));
            let take = usize::try_from(frames).unwrap_or(usize::MAX).min(left);
            play.frame += take;
            frames -= take as u64;
        }
        self.settle(events);
        if let (true, Some(music)) = (self.plays.is_empty(), self.music.as_mut()) {
            music.skip(frames);
        }
    }

    /// Whether the far end should be sending to us: it has an address and is
    /// not holding the call.
    fn should_receive(&self) -> bool {
        self.params.send && self.destination().is_some()
    }

    fn outbound(&self, epoch: Instant) -> Outbound {
        let due_nanos = self
            .next_tick
            .saturating_mul(frame_nanos())
            .saturating_add(self.phase);
        Outbound {
            call: self.call,
            ssrc: self.ssrc,
            sequence: self.sequence,
            timestamp: self.timestamp,
            due: epoch + Duration::from_nanos(due_nanos),
            destination: self.destination().filter(|_| self.params.send),
            codec: self.params.codec,
            telephone_event_pt: self.params.telephone_event_pt,
        }
    }
}

/// Bounded queue of events for the shell.
#[derive(Default)]
struct Events {
    queue: VecDeque<MediaEvent>,
    dropped: u64,
}

impl Events {
    fn push(&mut self, event: MediaEvent) {
        if self.queue.len() < MAX_PENDING_EVENTS {
            self.queue.push_back(event);
        } else {
            self.dropped += 1;
        }
    }
}

/// Swap-removes stream `i`, keeping the index in step.
fn remove_at<S>(
    streams: &mut Vec<Stream<S>>,
    index: &mut HashMap<CallId, usize>,
    i: usize,
) -> Option<S> {
    if i >= streams.len() {
        return None;
    }
    let removed = streams.swap_remove(i);
    index.remove(&removed.call);
    if let Some(moved) = streams.get(i) {
        index.insert(moved.call, i);
    }
    Some(removed.sink)
}

/// All streams, paced from one clock. `S` is whatever the shell sends through
/// (a socket handle); the core never touches it except to pass it back.
pub struct Pacer<S> {
    epoch: Instant,
    streams: Vec<Stream<S>>,
    index: HashMap<CallId, usize>,
    events: Events,
    next_slot: u64,
    default_rtp_timeout: Option<Duration>,
}

impl<S> Pacer<S> {
    /// The grid starts at `epoch`.
    pub fn new(epoch: Instant) -> Pacer<S> {
        Pacer {
            epoch,
            streams: Vec::new(),
            index: HashMap::new(),
            events: Events::default(),
            next_slot: 0,
            default_rtp_timeout: Some(DEFAULT_RTP_TIMEOUT),
        }
    }

    fn elapsed_nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Index of the last 20 ms grid point of a phase at or before `now`.
    fn tick_index(&self, now: Instant, phase: u64) -> u64 {
        self.elapsed_nanos(now).saturating_sub(phase) / frame_nanos()
    }

    /// When `tick` should next be called: the next slot boundary after `now`.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let slot = slot_nanos();
        let next = (self.elapsed_nanos(now) / slot).saturating_add(1);
        self.epoch + Duration::from_nanos(next.saturating_mul(slot))
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    pub fn contains(&self, call: CallId) -> bool {
        self.index.contains_key(&call)
    }

    fn stream_mut(&mut self, call: CallId) -> Option<&mut Stream<S>> {
        let i = *self.index.get(&call)?;
        self.streams.get_mut(i)
    }

    /// Starts a stream: comfort silence from the next grid point on. Replaces
    /// (and returns the sink of) a stream the call already had.
    pub fn open(
        &mut self,
        now: Instant,
        call: CallId,
        params: StreamParams,
        init: StreamInit,
        sink: S,
    ) -> Option<S> {
        let previous = self.close(call);
        let phase = self.next_slot * slot_nanos();
        self.next_slot = (self.next_slot + 1) % SLOTS;
        let stream = Stream {
            call,
            params,
            latched: None,
            sink,
            ssrc: init.ssrc,
            sequence: init.sequence,
            timestamp: init.timestamp,
            phase,
            next_tick: self.tick_index(now, phase).saturating_add(1),
            marker: true,
            plays: VecDeque::new(),
            music: None,
            peer: None,
            rtp_timeout: self.default_rtp_timeout,
            watch: None,
            packet: [0; PACKET_LEN],
        };
        self.index.insert(call, self.streams.len());
        self.streams.push(stream);
        previous
    }

    /// Applies new parameters (re-INVITE). A new SDP address forgets the latch.
    pub fn update(&mut self, call: CallId, params: StreamParams) -> bool {
        let Some(stream) = self.stream_mut(call) else {
            return false;
        };
        if params.remote != stream.params.remote {
            stream.latched = None;
        }
        if params.send && !stream.params.send {
            stream.marker = true;
        }
        stream.params = params;
        true
    }

    /// Symmetric RTP: media arrived from `source`; send there from now on if it
    /// differs from the SDP address. Only the first latch counts. A source no
    /// one can be sent to (port 0, an unspecified address: forged or raw-socket
    /// senders) is ignored rather than silencing the stream.
    pub fn latch(&mut self, call: CallId, source: SocketAddr) -> bool {
        let Some(stream) = self.stream_mut(call) else {
            return false;
        };
        if source.port() == 0 || source.ip().is_unspecified() {
            return false;
        }
        if stream.latched.is_some() || source == stream.params.remote {
            return false;
        }
        stream.latched = Some(source);
        true
    }

    /// Where the call's media goes now.
    pub fn destination(&self, call: CallId) -> Option<SocketAddr> {
        let i = *self.index.get(&call)?;
        self.streams.get(i)?.destination()
    }

    /// Queues clips after whatever is playing. False if the call is unknown or
    /// its queue is full.
    pub fn play(&mut self, call: CallId, play_id: u64, clips: Vec<Arc<Clip>>) -> bool {
        let Some(stream) = self.stream_mut(call) else {
            return false;
        };
        if stream.plays.len() >= MAX_QUEUED_PLAYS {
            return false;
        }
        stream.plays.push_back(Play {
            id: play_id,
            clips: clips.into_iter().take(MAX_CLIPS_PER_PLAY).collect(),
            frame: 0,
        });
        true
    }

    /// Cuts all playback at once; no `PlaybackFinished` for what was cut.
    pub fn stop(&mut self, call: CallId) {
        if let Some(stream) = self.stream_mut(call) {
            stream.plays.clear();
        }
    }

    /// Loops `clip` under the prompts from its start, replacing any music.
    pub fn play_music(&mut self, call: CallId, clip: Arc<Clip>) -> bool {
        let Some(stream) = self.stream_mut(call) else {
            return false;
        };
        stream.music = Some(Music { clip, frame: 0 });
        true
    }

    pub fn stop_music(&mut self, call: CallId) {
        if let Some(stream) = self.stream_mut(call) {
            stream.music = None;
        }
    }

    /// Bridges two streams: their prompts and music stop, the pacer stops
    /// sending on both, and the relay takes over from the returned
    /// [`Outbound`]s (`a`'s first: where `b`'s media must go, and the reverse).
    /// `None` if either is unknown, already bridged, or both are the same.
    pub fn bridge(&mut self, a: CallId, b: CallId) -> Option<(Outbound, Outbound)> {
        if a == b {
            return None;
        }
        let (ia, ib) = (*self.index.get(&a)?, *self.index.get(&b)?);
        let free = |i: usize| self.streams.get(i).is_some_and(|s| s.peer.is_none());
        if !free(ia) || !free(ib) {
            return None;
        }
        let epoch = self.epoch;
        let mut outbound = |i: usize, peer: CallId| {
            let stream = self.streams.get_mut(i)?;
            stream.plays.clear();
            stream.music = None;
            stream.peer = Some(peer);
            Some(stream.outbound(epoch))
        };
        Some((outbound(ia, b)?, outbound(ib, a)?))
    }

    /// Ends the bridge `call` is in; returns the other leg. Both streams go
    /// back to the pacer (silence, or music once asked for), numbering on from
    /// the sequence `take_sequence` reads from each sink (the relay's count).
    pub fn unbridge<F>(&mut self, call: CallId, mut take_sequence: F) -> Option<CallId>
    where
        F: FnMut(&S) -> Option<u16>,
    {
        let peer = self.stream_mut(call)?.peer?;
        for leg in [call, peer] {
            if let Some(stream) = self.stream_mut(leg) {
                stream.peer = None;
                stream.marker = true;
                if let Some(sequence) = take_sequence(&stream.sink) {
                    stream.sequence = sequence;
                }
            }
        }
        Some(peer)
    }

    /// The leg `call` is bridged to.
    pub fn peer(&self, call: CallId) -> Option<CallId> {
        let i = *self.index.get(&call)?;
        self.streams.get(i)?.peer
    }

    /// Where and how the relay sends a bridged stream's RTP now.
    pub fn outbound(&self, call: CallId) -> Option<Outbound> {
        let i = *self.index.get(&call)?;
        Some(self.streams.get(i)?.outbound(self.epoch))
    }

    /// The shell's handle of a stream.
    pub fn sink(&self, call: CallId) -> Option<&S> {
        let i = *self.index.get(&call)?;
        Some(&self.streams.get(i)?.sink)
    }

    /// RTP timeout for streams opened from now on; `None` turns the watch off.
    pub fn set_default_rtp_timeout(&mut self, timeout: Option<Duration>) {
        self.default_rtp_timeout = timeout;
    }

    /// RTP timeout of one stream; `None` turns its watch off.
    pub fn set_rtp_timeout(&mut self, call: CallId, timeout: Option<Duration>) -> bool {
        let Some(stream) = self.stream_mut(call) else {
            return false;
        };
        stream.rtp_timeout = timeout;
        stream.watch = None;
        true
    }

    /// Reports `RtpTimeout` once for each stream that should be receiving and
    /// whose packet count (read from its sink by `received`) has not moved for
    /// its timeout. The watch restarts whenever the stream starts to expect
    /// media (answer, resume) and re-arms when media comes back. Meant to run
    /// about once a second.
    pub fn check_liveness<F>(&mut self, now: Instant, mut received: F)
    where
        F: FnMut(&S) -> u64,
    {
        for stream in &mut self.streams {
            let timeout = match stream.rtp_timeout {
                Some(timeout) if stream.should_receive() => timeout,
                _ => {
                    stream.watch = None;
                    continue;
                }
            };
            let count = received(&stream.sink);
            let watch = stream.watch.get_or_insert(Liveness::new(now, count));
            if watch.poll_timeout(now, count, timeout) {
                self.events
                    .push(MediaEvent::RtpTimeout { call: stream.call });
            }
        }
    }

    /// Removes a stream; returns its sink. A bridged partner goes back to the
    /// pacer (the shell should `unbridge` first to keep its numbering).
    pub fn close(&mut self, call: CallId) -> Option<S> {
        let i = self.index.remove(&call)?;
        let peer = self.streams.get(i).and_then(|s| s.peer);
        if let Some(other) = peer.and_then(|p| self.stream_mut(p)) {
            other.peer = None;
            other.marker = true;
        }
        self.remove_at(i)
    }

    fn remove_at(&mut self, i: usize) -> Option<S> {
        remove_at(&mut self.streams, &mut self.index, i)
    }

    /// Sends every frame that is due at `now` through `send`, which gets the
    /// stream's sink, the destination and the packet (borrowed from the stream's
    /// own buffer: nothing is allocated per packet).
    pub fn tick<F>(&mut self, now: Instant, mut send: F) -> TickStats
    where
        F: FnMut(&S, SocketAddr, &[u8]) -> SendResult,
    {
        let elapsed = self.elapsed_nanos(now);
        let mut stats = TickStats::default();
        let events = &mut self.events;
        let mut i = 0;
        while let Some(stream) = self.streams.get_mut(i) {
            let mut gone = false;
            let now_tick = elapsed.saturating_sub(stream.phase) / frame_nanos();
            if stream.next_tick <= now_tick && elapsed >= stream.phase {
                let due = now_tick - stream.next_tick + 1;
                if due > MAX_CATCH_UP {
                    let skip = due - MAX_CATCH_UP;
                    stream.skip_frames(skip, events);
                    let samples = skip.wrapping_mul(u64::from(SAMPLES_PER_FRAME)) as u32;
                    stream.timestamp = stream.timestamp.wrapping_add(samples);
                    stream.next_tick += skip;
                    stream.marker = true;
                    stats.skipped += skip;
                }
                while stream.next_tick <= now_tick {
                    stream.fill_next_frame(events);
                    if stream.peer.is_some() {
                        stats.bridged += 1;
                        stream.timestamp = stream.timestamp.wrapping_add(SAMPLES_PER_FRAME);
                        stream.next_tick += 1;
                        continue;
                    }
                    match stream.destination().filter(|_| stream.params.send) {
                        Some(dest) => {
                            let header = RtpHeader {
                                marker: stream.marker,
                                payload_type: stream.params.codec.payload_type(),
                                sequence: stream.sequence,
                                timestamp: stream.timestamp,
                                ssrc: stream.ssrc,
                            };
                            header.write(&mut stream.packet);
                            match send(&stream.sink, dest, &stream.packet) {
                                SendResult::Sent => stats.sent += 1,
                                SendResult::Dropped => stats.dropped += 1,
                                SendResult::Gone => gone = true,
                            }
                            stream.sequence = stream.sequence.wrapping_add(1);
                            stream.marker = false;
                        }
                        None => {
                            stats.held += 1;
                            stream.marker = true;
                        }
                    }
                    stream.timestamp = stream.timestamp.wrapping_add(SAMPLES_PER_FRAME);
                    stream.next_tick += 1;
                    if gone {
                        break;
                    }
                }
            }
            if gone {
                stats.gone += 1;
                remove_at(&mut self.streams, &mut self.index, i);
            } else {
                i += 1;
            }
        }
        stats
    }

    /// The next event for the call layer.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.queue.pop_front()
    }

    /// Puts back an event the shell could not deliver yet.
    pub fn unpoll_event(&mut self, event: MediaEvent) {
        self.events.queue.push_front(event);
    }

    /// Events lost because the queue was full (should stay 0).
    pub fn events_dropped(&self) -> u64 {
        self.events.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, FRAME_DURATION};

    type Sent = Vec<(SocketAddr, Vec<u8>)>;

    fn params(port: u16) -> StreamParams {
        StreamParams {
            remote: SocketAddr::from(([127, 0, 0, 1], port)),
            codec: Codec::Pcmu,
            telephone_event_pt: Some(101),
            send: true,
        }
    }

    const INIT: StreamInit = StreamInit {
        ssrc: 0xCAFE,
        sequence: 65534,
        timestamp: u32::MAX - 200,
    };

    fn tick(pacer: &mut Pacer<u8>, now: Instant, sent: &mut Sent) -> TickStats {
        pacer.tick(now, |_, dest, bytes| {
            sent.push((dest, bytes.to_vec()));
            SendResult::Sent
        })
    }

    fn header(bytes: &[u8]) -> RtpHeader {
        rtp::parse(bytes).expect("rtp").header
    }

    fn clip(fill: i16, frames: usize) -> Arc<Clip> {
        Arc::new(Clip::from_samples(&vec![fill; frames * FRAME_BYTES]))
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn sends_silence_on_the_grid_with_continuous_numbering() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let call = CallId(1);
        pacer.open(at(t0, 5), call, params(4000), INIT, 0u8);
        assert_eq!(pacer.next_deadline(at(t0, 5)), at(t0, 6));
        let mut sent = Sent::new();
        assert_eq!(tick(&mut pacer, at(t0, 19), &mut sent).sent, 0);
        for n in 1..=5 {
            assert_eq!(tick(&mut pacer, at(t0, 20 * n), &mut sent).sent, 1);
        }
        assert_eq!(sent.len(), 5);
        for (n, (dest, bytes)) in sent.iter().enumerate() {
            let h = header(bytes);
            assert_eq!(*dest, params(4000).remote);
            assert_eq!(bytes.len(), PACKET_LEN);
            assert_eq!(h.ssrc, 0xCAFE);
            assert_eq!(h.payload_type, 0);
            assert_eq!(h.marker, n == 0);
            assert_eq!(h.sequence, 65534u16.wrapping_add(n as u16));
            assert_eq!(h.timestamp, INIT.timestamp.wrapping_add(160 * n as u32));
            assert!(bytes[rtp::HEADER_LEN..].iter().all(|&b| b == 0xFF));
        }
    }

    #[test]
    fn late_ticks_catch_up_a_little_and_never_drift() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        pacer.open(t0, CallId(1), params(4000), INIT, 0u8);
        let mut sent = Sent::new();
        // 50 ms late: the two due frames go out together.
        assert_eq!(tick(&mut pacer, at(t0, 45), &mut sent).sent, 2);
        // A one-second stall: three frames sent, the rest skipped, and the
        // timestamp still tells the real time.
        let stats = tick(&mut pacer, at(t0, 1045), &mut sent);
        assert_eq!(stats.sent, MAX_CATCH_UP);
        assert_eq!(stats.skipped, 52 - 2 - MAX_CATCH_UP);
        let last = header(&sent.last().expect("packet").1);
        assert_eq!(last.timestamp, INIT.timestamp.wrapping_add(160 * 51));
        assert_eq!(last.sequence, INIT.sequence.wrapping_add(4));
        // Jittery wake-ups (0-15 ms late) over 10 s: exactly one frame per 20 ms.
        sent.clear();
        let mut now = at(t0, 1045);
        let mut total = 0;
        for k in 53..553u64 {
            now = at(t0, 20 * k + (k * 7919) % 16);
            total += tick(&mut pacer, now, &mut sent).sent;
        }
        assert_eq!(total, 553 - 53);
        let _ = now;
        for pair in sent.windows(2) {
            let (a, b) = (header(&pair[0].1), header(&pair[1].1));
            assert_eq!(b.sequence, a.sequence.wrapping_add(1));
            assert_eq!(b.timestamp, a.timestamp.wrapping_add(160));
        }
    }

    #[test]
    fn plays_queued_clips_in_order_then_reports_each_play() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let call = CallId(7);
        pacer.open(t0, call, params(4000), INIT, 0u8);
        let (a, b, c) = (clip(1000, 2), clip(-1000, 1), clip(3000, 2));
        assert!(pacer.play(call, 1, vec![a, Arc::new(Clip::from_samples(&[])), b]));
        assert!(pacer.play(call, 2, vec![c]));
        let mut sent = Sent::new();
        let mut events = Vec::new();
        for n in 1..=7 {
            tick(&mut pacer, at(t0, 20 * n), &mut sent);
            while let Some(e) = pacer.poll_event() {
                events.push((n, e));
            }
        }
        let first_bytes: Vec<u8> = sent.iter().map(|(_, p)| p[rtp::HEADER_LEN]).collect();
        let u = crate::media::g711::linear_to_ulaw;
        assert_eq!(
            first_bytes,
            vec![u(1000), u(1000), u(-1000), u(3000), u(3000), 0xFF, 0xFF]
        );
        assert_eq!(
            events,
            vec![
                (3, MediaEvent::PlaybackFinished { call, play_id: 1 }),
                (5, MediaEvent::PlaybackFinished { call, play_id: 2 }),
            ]
        );
        // An empty play finishes at the next frame.
        assert!(pacer.play(call, 3, Vec::new()));
        tick(&mut pacer, at(t0, 160), &mut sent);
        assert_eq!(
            pacer.poll_event(),
            Some(MediaEvent::PlaybackFinished { call, play_id: 3 })
        );
        assert!(!pacer.play(CallId(99), 4, Vec::new()));
    }

    #[test]
    fn stop_cuts_at_once_without_an_event() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let call = CallId(1);
        pacer.open(t0, call, params(4000), INIT, 0u8);
        pacer.play(call, 1, vec![clip(1000, 50)]);
        pacer.play(call, 2, vec![clip(1000, 50)]);
        let mut sent = Sent::new();
        tick(&mut pacer, at(t0, 20), &mut sent);
        pacer.stop(call);
        tick(&mut pacer, at(t0, 40), &mut sent);
        assert_eq!(sent[1].1[rtp::HEADER_LEN], 0xFF);
        assert_eq!(pacer.poll_event(), None);
    }

    #[test]
    fn hold_sends_nothing_but_time_and_playback_go_on() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let call = CallId(1);
        pacer.open(t0, call, params(4000), INIT, 0u8);
        pacer.play(call, 1, vec![clip(1000, 3)]);
        let mut sent = Sent::new();
        tick(&mut pacer, at(t0, 20), &mut sent);
        pacer.update(
            call,
            StreamParams {
                send: false,
                ..params(4000)
            },
        );
        let mut held = 0;
        for n in 2..=6 {
            held += tick(&mut pacer, at(t0, 20 * n), &mut sent).held;
        }
        assert_eq!((sent.len(), held), (1, 5));
        assert_eq!(
            pacer.poll_event(),
            Some(MediaEvent::PlaybackFinished { call, play_id: 1 })
        );
        pacer.update(call, params(4000));
        tick(&mut pacer, at(t0, 140), &mut sent);
        let (a, b) = (header(&sent[0].1), header(&sent[1].1));
        assert_eq!(b.sequence, a.sequence.wrapping_add(1));
        assert_eq!(b.timestamp, a.timestamp.wrapping_add(160 * 6));
        assert!(b.marker);
    }

    #[test]
    fn latches_to_the_real_source_until_the_sdp_address_changes() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let call = CallId(1);
        pacer.open(t0, call, params(4000), INIT, 0u8);
        let nat: SocketAddr = "192.0.2.7:31000".parse().expect("addr");
        assert!(!pacer.latch(call, params(4000).remote));
        // Nothing can be sent to port 0 or 0.0.0.0: such a source never latches.
        assert!(!pacer.latch(call, "192.0.2.7:0".parse().expect("addr")));
        assert!(!pacer.latch(call, "0.0.0.0:31000".parse().expect("addr")));
        assert!(pacer.latch(call, nat));
        assert!(!pacer.latch(call, "192.0.2.8:1".parse().expect("addr")));
        let mut sent = Sent::new();
        tick(&mut pacer, at(t0, 20), &mut sent);
        assert_eq!(sent[0].0, nat);
        // Hold re-INVITE with the same address keeps the latch.
        pacer.update(
            call,
            StreamParams {
                send: false,
                ..params(4000)
            },
        );
        assert_eq!(pacer.destination(call), Some(nat));
        pacer.update(call, params(5000));
        assert_eq!(pacer.destination(call), Some(params(5000).remote));
        // 0.0.0.0 means nothing can be sent.
        let mut hold = params(5000);
        hold.remote = "0.0.0.0:5000".parse().expect("addr");
        pacer.update(call, hold);
        assert_eq!(pacer.destination(call), None);
    }

    #[test]
    fn codec_change_and_removal_of_gone_streams() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        for k in 0..3 {
            pacer.open(t0, CallId(k), params(4000 + k as u16), INIT, k as u8);
        }
        pacer.update(
            CallId(1),
            StreamParams {
                codec: Codec::Pcma,
                ..params(4001)
            },
        );
        let mut pcma = 0;
        // Streams sit one slot apart: at 22 ms each has sent its first frame.
        let stats = pacer.tick(at(t0, 22), |sink, _, bytes| {
            if header(bytes).payload_type == 8 {
                pcma += 1;
                assert_eq!(bytes[rtp::HEADER_LEN], 0xD5);
            }
            if *sink == 0 {
                SendResult::Gone
            } else {
                SendResult::Sent
            }
        });
        assert_eq!((stats.sent, stats.gone, pcma), (2, 1, 1));
        assert_eq!(pacer.len(), 2);
        assert!(!pacer.contains(CallId(0)));
        assert_eq!(pacer.close(CallId(2)), Some(2));
        assert_eq!(pacer.close(CallId(2)), None);
        assert!(pacer.update(CallId(1), params(1)));
        let _ = FRAME_DURATION;
    }

    #[test]
    fn streams_are_spread_over_the_frame() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        for k in 0..2 * SLOTS {
            pacer.open(t0, CallId(k), params(4000), INIT, 0u8);
        }
        let mut sent = Sent::new();
        for ms in 20..40 {
            assert_eq!(pacer.next_deadline(at(t0, ms - 1)), at(t0, ms));
            assert_eq!(
                tick(&mut pacer, at(t0, ms), &mut sent).sent,
                2,
                "at {ms} ms"
            );
        }
    }

    /// A clip whose frame k is filled with the level `levels[k]`.
    fn frames_clip(levels: &[i16]) -> Arc<Clip> {
        let samples: Vec<i16> = levels
            .iter()
            .flat_map(|&level| std::iter::repeat_n(level, FRAME_BYTES))
            .collect();
        Arc::new(Clip::from_samples(&samples))
    }

    fn first_bytes(sent: &Sent) -> Vec<u8> {
        sent.iter().map(|(_, p)| p[rtp::HEADER_LEN]).collect()
    }

    #[test]
    fn music_loops_and_an_announcement_interrupts_it() {
        let u = crate::media::g711::linear_to_ulaw;
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let call = CallId(3);
        pacer.open(t0, call, params(4000), INIT, 0u8);
        assert!(pacer.play_music(call, frames_clip(&[100, 200, 300])));
        let mut sent = Sent::new();
        for n in 1..=4 {
            tick(&mut pacer, at(t0, 20 * n), &mut sent);
        }
        assert_eq!(first_bytes(&sent), vec![u(100), u(200), u(300), u(100)]);
        // The announcement cuts in; the music goes on where it stopped.
        sent.clear();
        assert!(pacer.play(call, 9, vec![frames_clip(&[-500, -600])]));
        let mut events = Vec::new();
        for n in 5..=9 {
            tick(&mut pacer, at(t0, 20 * n), &mut sent);
            while let Some(e) = pacer.poll_event() {
                events.push((n, e));
            }
        }
        assert_eq!(
            first_bytes(&sent),
            vec![u(-500), u(-600), u(200), u(300), u(100)]
        );
        assert_eq!(
            events,
            vec![(6, MediaEvent::PlaybackFinished { call, play_id: 9 })]
        );
        // Barge-in cuts the announcement, not the music.
        sent.clear();
        pacer.play(call, 10, vec![frames_clip(&[-700; 5])]);
        tick(&mut pacer, at(t0, 200), &mut sent);
        pacer.stop(call);
        tick(&mut pacer, at(t0, 220), &mut sent);
        assert_eq!(first_bytes(&sent), vec![u(-700), u(200)]);
        // A stall skips music frames in time; a new clip starts from its start.
        sent.clear();
        tick(&mut pacer, at(t0, 220 + 20 * 5), &mut sent);
        assert_eq!(first_bytes(&sent), vec![u(200), u(300), u(100)]);
        pacer.play_music(call, frames_clip(&[900]));
        tick(&mut pacer, at(t0, 340), &mut sent);
        assert_eq!(first_bytes(&sent).last(), Some(&u(900)));
        // Stopped: silence; an empty clip is silence too.
        pacer.stop_music(call);
        tick(&mut pacer, at(t0, 360), &mut sent);
        assert_eq!(first_bytes(&sent).last(), Some(&0xFF));
        pacer.play_music(call, Arc::new(Clip::from_samples(&[])));
        tick(&mut pacer, at(t0, 380), &mut sent);
        assert_eq!(first_bytes(&sent).last(), Some(&0xFF));
        assert_eq!(pacer.poll_event(), None);
        assert!(!pacer.play_music(CallId(99), frames_clip(&[1])));
    }

    #[test]
    fn bridged_streams_keep_time_and_hand_their_numbering_back() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let (a, b) = (CallId(1), CallId(2));
        pacer.open(t0, a, params(4000), INIT, 0u8);
        let init_b = StreamInit {
            ssrc: 0xB0B,
            ..INIT
        };
        pacer.open(
            t0,
            b,
            StreamParams {
                codec: Codec::Pcma,
                ..params(5000)
            },
            init_b,
            1u8,
        );
        pacer.play_music(a, frames_clip(&[100]));
        pacer.play(b, 1, vec![clip(1000, 50)]);
        let mut sent = Sent::new();
        tick(&mut pacer, at(t0, 21), &mut sent);
        assert_eq!(sent.len(), 2);

        let (out_a, out_b) = pacer.bridge(a, b).expect("bridged");
        assert_eq!((out_a.call, out_a.ssrc), (a, INIT.ssrc));
        assert_eq!(out_a.destination, Some(params(4000).remote));
        assert_eq!(out_a.sequence, INIT.sequence.wrapping_add(1));
        assert_eq!(out_a.timestamp, INIT.timestamp.wrapping_add(160));
        assert_eq!(out_a.due, at(t0, 40));
        assert_eq!(
            out_a.timestamp_at(at(t0, 45)),
            out_a.timestamp.wrapping_add(40)
        );
        assert_eq!(
            out_a.timestamp_at(at(t0, 35)),
            out_a.timestamp.wrapping_sub(40)
        );
        assert_eq!((out_b.ssrc, out_b.codec), (0xB0B, Codec::Pcma));
        assert_eq!(out_b.telephone_event_pt, Some(101));
        assert_eq!((pacer.peer(a), pacer.peer(b)), (Some(b), Some(a)));
        // Bridging again, to itself, or to an unknown leg is refused.
        assert!(pacer.bridge(a, b).is_none());
        assert!(pacer.bridge(a, CallId(3)).is_none());
        assert!(pacer.bridge(CallId(3), CallId(3)).is_none());

        // The relay sends now; the pacer only keeps the clock, and what played
        // was cut without an event.
        sent.clear();
        let mut bridged = 0;
        for n in 2..=4 {
            bridged += tick(&mut pacer, at(t0, 20 * n + 1), &mut sent).bridged;
        }
        assert_eq!((sent.len(), bridged), (0, 6));
        assert_eq!(pacer.poll_event(), None);
        let later = pacer.outbound(a).expect("outbound");
        assert_eq!(later.timestamp, out_a.timestamp.wrapping_add(3 * 160));

        // Unbridged: silence again, numbered on from what the relay used.
        assert_eq!(
            pacer.unbridge(b, |sink| Some(1000 + u16::from(*sink))),
            Some(a)
        );
        assert_eq!(pacer.unbridge(b, |_| None), None);
        tick(&mut pacer, at(t0, 101), &mut sent);
        let by_dest = |port: u16| {
            let (_, bytes) = sent.iter().find(|(d, _)| d.port() == port).expect("packet");
            (header(bytes), bytes[rtp::HEADER_LEN])
        };
        let (ha, first_a) = by_dest(4000);
        assert_eq!((ha.sequence, ha.marker, first_a), (1000, true, 0xFF));
        assert_eq!(ha.timestamp, out_a.timestamp.wrapping_add(3 * 160));
        let (hb, first_b) = by_dest(5000);
        assert_eq!((hb.sequence, hb.ssrc, first_b), (1001, 0xB0B, 0xD5));

        // Closing one leg of a bridge frees the other.
        pacer.bridge(a, b).expect("bridged");
        pacer.close(a);
        assert_eq!(pacer.peer(b), None);
        sent.clear();
        tick(&mut pacer, at(t0, 121), &mut sent);
        assert_eq!(sent.len(), 1);
    }

    #[test]
    fn rtp_timeout_is_reported_once_per_silence_and_not_on_hold() {
        let t0 = Instant::now();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        let mut pacer = Pacer::new(t0);
        let (call, pending, quiet) = (CallId(1), CallId(2), CallId(3));
        pacer.open(t0, call, params(4000), INIT, 0u8);
        // An agent leg before its answer: no address yet.
        let mut unknown = params(0);
        unknown.remote = "0.0.0.0:0".parse().expect("addr");
        unknown.send = false;
        pacer.open(t0, pending, unknown, INIT, 1u8);
        pacer.open(t0, quiet, params(4002), INIT, 2u8);
        assert!(pacer.set_rtp_timeout(quiet, None));
        let mut received = [0u64; 3];
        let check = |pacer: &mut Pacer<u8>, s: u64, received: &[u64; 3]| {
            pacer.check_liveness(secs(s), |sink| received[usize::from(*sink)]);
            let mut events = Vec::new();
            while let Some(e) = pacer.poll_event() {
                events.push(e);
            }
            events
        };
        let timeout = |call| vec![MediaEvent::RtpTimeout { call }];
        assert!(check(&mut pacer, 0, &received).is_empty());
        assert!(check(&mut pacer, 29, &received).is_empty());
        assert_eq!(check(&mut pacer, 30, &received), timeout(call));
        assert!(check(&mut pacer, 31, &received).is_empty(), "once");
        // Media comes back, then stops again: reported again 30 s later.
        received[0] = 5;
        assert!(check(&mut pacer, 40, &received).is_empty());
        assert!(check(&mut pacer, 69, &received).is_empty());
        assert_eq!(check(&mut pacer, 70, &received), timeout(call));
        // On hold by the far end: no watch; after resume it starts afresh.
        let mut held = params(4000);
        held.send = false;
        pacer.update(call, held);
        assert!(check(&mut pacer, 200, &received).is_empty());
        pacer.update(call, params(4000));
        assert!(check(&mut pacer, 201, &received).is_empty());
        assert!(check(&mut pacer, 230, &received).is_empty());
        assert_eq!(check(&mut pacer, 231, &received), timeout(call));
        // The answer arrives for the agent leg; a shorter timeout of its own.
        pacer.update(pending, params(4004));
        pacer.set_rtp_timeout(pending, Some(Duration::from_secs(5)));
        assert!(check(&mut pacer, 300, &received).is_empty());
        assert_eq!(check(&mut pacer, 305, &received), timeout(pending));
        // New streams take the default in force when they open.
        pacer.set_default_rtp_timeout(None);
        pacer.open(secs(400), CallId(9), params(4006), INIT, 0u8);
        assert!(check(&mut pacer, 400, &received).is_empty());
        assert!(check(&mut pacer, 1000, &received).is_empty());
        assert!(!pacer.set_rtp_timeout(CallId(77), None));
    }
}
