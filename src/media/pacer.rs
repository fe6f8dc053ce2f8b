//! The pacing core, sans IO: every call's RTP stream on one shared 20 ms grid.
//!
//! Frame n of a stream is due at a grid point measured from one epoch, so a late
//! wake-up sends what is due (up to `MAX_CATCH_UP` frames) and the schedule never
//! drifts. Sequence numbers count packets sent; timestamps count time, so they run
//! on through silence, hold and skipped frames as RFC 3550 asks.

use super::rtp::{self, RtpHeader};
use super::{Clip, MediaEvent, StreamParams, FRAME_BYTES, FRAME_DURATION, SAMPLES_PER_FRAME};
use crate::sip::CallKey;
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
}

struct Play {
    id: u64,
    clips: VecDeque<Arc<Clip>>,
    /// Next frame of the front clip.
    frame: usize,
}

struct Stream<S> {
    call: CallKey,
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
        let frame = self.plays.front_mut().and_then(|play| {
            let frame = play.clips.front()?.frame(codec, play.frame)?;
            play.frame += 1;
            Some(frame)
        });
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
    index: &mut HashMap<CallKey, usize>,
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
    index: HashMap<CallKey, usize>,
    events: Events,
    next_slot: u64,
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

    pub fn contains(&self, call: CallKey) -> bool {
        self.index.contains_key(&call)
    }

    fn stream_mut(&mut self, call: CallKey) -> Option<&mut Stream<S>> {
        let i = *self.index.get(&call)?;
        self.streams.get_mut(i)
    }

    /// Starts a stream: comfort silence from the next grid point on. Replaces
    /// (and returns the sink of) a stream the call already had.
    pub fn open(
        &mut self,
        now: Instant,
        call: CallKey,
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
            packet: [0; PACKET_LEN],
        };
        self.index.insert(call, self.streams.len());
        self.streams.push(stream);
        previous
    }

    /// Applies new parameters (re-INVITE). A new SDP address forgets the latch.
    pub fn update(&mut self, call: CallKey, params: StreamParams) -> bool {
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
    /// differs from the SDP address. Only the first latch counts.
    pub fn latch(&mut self, call: CallKey, source: SocketAddr) -> bool {
        let Some(stream) = self.stream_mut(call) else {
            return false;
        };
        if stream.latched.is_some() || source == stream.params.remote {
            return false;
        }
        stream.latched = Some(source);
        true
    }

    /// Where the call's media goes now.
    pub fn destination(&self, call: CallKey) -> Option<SocketAddr> {
        let i = *self.index.get(&call)?;
        self.streams.get(i)?.destination()
    }

    /// Queues clips after whatever is playing. False if the call is unknown or
    /// its queue is full.
    pub fn play(&mut self, call: CallKey, play_id: u64, clips: Vec<Arc<Clip>>) -> bool {
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
    pub fn stop(&mut self, call: CallKey) {
        if let Some(stream) = self.stream_mut(call) {
            stream.plays.clear();
        }
    }

    /// Removes a stream; returns its sink.
    pub fn close(&mut self, call: CallKey) -> Option<S> {
        let i = self.index.remove(&call)?;
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
        let call = CallKey(1);
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
        pacer.open(t0, CallKey(1), params(4000), INIT, 0u8);
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
        let call = CallKey(7);
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
        assert!(!pacer.play(CallKey(99), 4, Vec::new()));
    }

    #[test]
    fn stop_cuts_at_once_without_an_event() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let call = CallKey(1);
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
        let call = CallKey(1);
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
        let call = CallKey(1);
        pacer.open(t0, call, params(4000), INIT, 0u8);
        let nat: SocketAddr = "192.0.2.7:31000".parse().expect("addr");
        assert!(!pacer.latch(call, params(4000).remote));
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
            pacer.open(t0, CallKey(k), params(4000 + k as u16), INIT, k as u8);
        }
        pacer.update(
            CallKey(1),
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
        assert!(!pacer.contains(CallKey(0)));
        assert_eq!(pacer.close(CallKey(2)), Some(2));
        assert_eq!(pacer.close(CallKey(2)), None);
        assert!(pacer.update(CallKey(1), params(1)));
        let _ = FRAME_DURATION;
    }

    #[test]
    fn streams_are_spread_over_the_frame() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        for k in 0..2 * SLOTS {
            pacer.open(t0, CallKey(k), params(4000), INIT, 0u8);
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
}
