//! The shell around the pacer: one thread paces every call (it needs a sub-ms
//! clock, which tokio's timer is not), one small tokio task per call reads what
//! the caller sends and, while the call is bridged, relays it to the other leg
//! on arrival.
//!
//! Each call's socket is owned by the handle's call table alone; the pacer and
//! the receive tasks hold weak references, upgraded only for one send or one
//! poll. `close` removes the entry and so closes the socket before it returns
//! (or, if the pacer or a relay is sending that very moment, when that send
//! returns).
//!
//! A bridge hands each leg's outbound stream from the pacer to the other leg's
//! receive task: the pacer tells the task where and how to send (a control
//! message, not a lock), and the leg's sequence number lives in one atomic that
//! the relay counts on and the pacer takes back at unbridge, so the far end
//! sees one continuous stream throughout.

use super::bridge::{self, Relay, Relayed};
use super::dtmf::{DtmfDetector, EventRelayGate};
use super::pacer::{Outbound, Pacer, SendResult, StreamInit, TickStats};
use super::socket::RtpSocket as UdpSocket;
use super::{rtp, Clip, Codec, MediaConfig, MediaError, MediaEvent, StreamParams};
use crate::metrics::Metrics;
use crate::sip::CallId;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::ReadBuf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Commands waiting for the pacer.
const COMMAND_QUEUE: usize = 65_536;
/// Events waiting for the call layer.
const EVENT_QUEUE: usize = 8_192;
/// Control messages waiting for one receive task (a bridge change is two at most).
const CONTROL_QUEUE: usize = 8;
/// Ports found busy (taken by another process) before giving up.
const MAX_BIND_ATTEMPTS: usize = 64;
/// Largest datagram read; larger ones are truncated and then fail to parse.
const RECEIVE_BUFFER: usize = 1_500;
/// `telephone_event_pt` stored in an atomic; this value means none.
const NO_PAYLOAD_TYPE: u16 = u16::MAX;
/// `CallShared::out_sequence` while no relay sends on the leg.
const NOT_RELAYED: u32 = u32::MAX;
/// How often the pacer thread checks for silent streams and updates metrics.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

enum Command {
    Open {
        call: CallId,
        params: StreamParams,
        init: StreamInit,
        leg: Leg,
    },
    Update {
        call: CallId,
        params: StreamParams,
    },
    Latch {
        call: CallId,
        source: SocketAddr,
    },
    Play {
        call: CallId,
        play_id: u64,
        clips: Vec<Arc<Clip>>,
    },
    Stop {
        call: CallId,
    },
    Music {
        call: CallId,
        clip: Option<Arc<Clip>>,
    },
    Bridge {
        a: CallId,
        b: CallId,
    },
    Unbridge {
        call: CallId,
    },
    RtpTimeout {
        /// `None`: the default for streams opened from now on.
        call: Option<CallId>,
        timeout: Option<Duration>,
    },
    Close {
        call: CallId,
    },
}

/// What the pacer tells a receive task.
enum Control {
    /// Relay what this leg receives into the other leg's stream, as described.
    RelayTo(Box<RelayTarget>),
    /// Stop relaying.
    Release,
}

struct RelayTarget {
    outbound: Outbound,
    socket: Weak<UdpSocket>,
    shared: Arc<CallShared>,
}

/// Counters of the media path since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaStats {
    /// Streams the pacer is sending.
    pub streams: u64,
    /// Packets sent, paced and relayed.
    pub packets_sent: u64,
    /// Packets not sent: socket buffer full or send error.
    pub packets_dropped: u64,
    /// Frames skipped because the pacer woke too late.
    pub frames_skipped: u64,
    pub packets_received: u64,
    /// Of `packets_sent`, those relayed from a bridged leg.
    pub packets_relayed: u64,
    pub digits: u64,
    /// Commands or events lost because a queue was full (should stay 0).
    pub queue_overflows: u64,
    /// How late the pacer woke after its deadline: the worst, and the mean.
    pub max_wake_delay: Duration,
    pub mean_wake_delay: Duration,
}

#[derive(Default)]
struct Counters {
    streams: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
    received: AtomicU64,
    relayed: AtomicU64,
    digits: AtomicU64,
    overflows: AtomicU64,
    wakes: AtomicU64,
    wake_delay_total_ns: AtomicU64,
    wake_delay_max_ns: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// What a call's receive task and the pacer share; atomics, so no lock per packet.
struct CallShared {
    codec_pt: AtomicU16,
    telephone_event_pt: AtomicU16,
    /// Set when the SDP address changes: latch again on the next packet.
    relatch: AtomicBool,
    received: AtomicU64,
    /// Next sequence number of this leg's outbound stream while a relay sends
    /// on it, else `NOT_RELAYED`.
    out_sequence: AtomicU32,
}

impl CallShared {
    fn new(params: &StreamParams) -> CallShared {
        let shared = CallShared {
            codec_pt: AtomicU16::new(0),
            telephone_event_pt: AtomicU16::new(NO_PAYLOAD_TYPE),
            relatch: AtomicBool::new(false),
            received: AtomicU64::new(0),
            out_sequence: AtomicU32::new(NOT_RELAYED),
        };
        shared.set(params);
        shared
    }

    fn set(&self, params: &StreamParams) {
        self.codec_pt
            .store(u16::from(params.codec.payload_type()), Ordering::Relaxed);
        let te = params.telephone_event_pt.map_or(NO_PAYLOAD_TYPE, u16::from);
        self.telephone_event_pt.store(te, Ordering::Relaxed);
    }

    /// A sequence number for one relayed packet; `None` once the pacer has
    /// taken the stream back.
    fn claim_sequence(&self) -> Option<u16> {
        let mut current = self.out_sequence.load(Ordering::Relaxed);
        loop {
            let sequence = u16::try_from(current).ok()?;
            let next = u32::from(sequence.wrapping_add(1));
            match self.out_sequence.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(sequence),
                Err(actual) => current = actual,
            }
        }
    }

    /// Ends relaying on this leg; the relay's next sequence number, if it had one.
    fn take_sequence(&self) -> Option<u16> {
        u16::try_from(self.out_sequence.swap(NOT_RELAYED, Ordering::Relaxed)).ok()
    }
}

/// The pacer's handle of one leg.
struct Leg {
    socket: Weak<UdpSocket>,
    shared: Arc<CallShared>,
    control: mpsc::Sender<Control>,
}

struct CallEntry {
    socket: Arc<UdpSocket>,
    port: u16,
    remote: SocketAddr,
    receiver: JoinHandle<()>,
    shared: Arc<CallShared>,
}

#[derive(Default)]
struct Calls {
    by_call: HashMap<CallId, CallEntry>,
    ports_in_use: HashSet<u16>,
    /// Index (among the even ports) where the next search starts.
    cursor: u32,
}

struct Inner {
    config: MediaConfig,
    commands: mpsc::Sender<Command>,
    events: mpsc::Sender<MediaEvent>,
    calls: Mutex<Calls>,
    counters: Arc<Counters>,
    runtime: tokio::runtime::Handle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let calls = match self.calls.get_mut() {
            Ok(calls) => calls,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (_, entry) in calls.by_call.drain() {
            entry.receiver.abort();
        }
    }
}

/// Handle to the pacer; cheap to clone.
#[derive(Clone)]
pub struct MediaEngine {
    inner: Arc<Inner>,
}

impl MediaEngine {
    /// Spawns the pacer. Must be called inside a tokio runtime; the pacer stops
    /// when the last handle is dropped.
    pub fn start(
        config: MediaConfig,
        metrics: Arc<Metrics>,
    ) -> (MediaEngine, mpsc::Receiver<MediaEvent>) {
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, event_rx) = mpsc::channel(EVENT_QUEUE);
        let counters = Arc::new(Counters::default());
        let runtime = tokio::runtime::Handle::current();
        let pacer_events = events.clone();
        let pacer_counters = Arc::clone(&counters);
        let spawned = std::thread::Builder::new()
            .name("rtp-pacer".into())
            .spawn(move || run_pacer(command_rx, pacer_events, pacer_counters, metrics));
        if let Err(e) = spawned {
            // `open` reports `Unavailable` from now on.
            tracing::error!(error = %e, "cannot start the RTP pacer thread");
        }
        let inner = Inner {
            config,
            commands,
            events,
            calls: Mutex::new(Calls::default()),
            counters,
            runtime,
        };
        (
            MediaEngine {
                inner: Arc::new(inner),
            },
            event_rx,
        )
    }

    fn calls(&self) -> MutexGuard<'_, Calls> {
        // The table stays consistent even if a holder panicked: every change is
        // a single insert or remove.
        match self.inner.calls.lock() {
            Ok(calls) => calls,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn command(&self, command: Command) -> bool {
        match self.inner.commands.try_send(command) {
            Ok(()) => true,
            Err(_) => {
                self.inner
                    .counters
                    .overflows
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!("media pacer command queue full or closed; command lost");
                false
            }
        }
    }

    /// Binds the call's RTP socket; returns the local port for the SDP answer.
    /// Opening a call that is already open updates it and returns its port.
    ///
    /// Every leg is a `CallId`: the caller's leg and an agent's leg of the
    /// same conversation are two streams with two keys.
    pub fn open(&self, call: CallId, params: StreamParams) -> Result<u16, MediaError> {
        let mut calls = self.calls();
        if let Some(port) = calls.by_call.get(&call).map(|entry| entry.port) {
            drop(calls);
            self.update(call, params);
            return Ok(port);
        }
        let (socket, port) = self.bind(&mut calls)?;
        let socket = Arc::new(socket);
        let init = StreamInit {
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: rand::random(),
        };
        let shared = Arc::new(CallShared::new(&params));
        let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
        let leg = Leg {
            socket: Arc::downgrade(&socket),
            shared: Arc::clone(&shared),
            control,
        };
        if !self.command(Command::Open {
            call,
            params,
            init,
            leg,
        }) {
            return Err(MediaError::Unavailable);
        }
        let receiver = self.inner.runtime.spawn(receive(
            call,
            Arc::downgrade(&socket),
            Arc::clone(&shared),
            control_rx,
            self.inner.commands.downgrade(),
            self.inner.events.clone(),
            Arc::clone(&self.inner.counters),
        ));
        calls.ports_in_use.insert(port);
        calls.by_call.insert(
            call,
            CallEntry {
                socket,
                port,
                remote: params.remote,
                receiver,
                shared,
            },
        );
        Ok(port)
    }

    /// Binds a port for a call we place (an agent's leg), before the answer
    /// says where to send: nothing is sent and no RTP is expected until
    /// `update` gives the answer's parameters. Returns the port for our offer.
    pub fn open_pending(&self, call: CallId) -> Result<u16, MediaError> {
        let unspecified = match self.inner.config.bind_ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.open(
            call,
            StreamParams {
                remote: SocketAddr::new(unspecified, 0),
                codec: Codec::Pcmu,
                telephone_event_pt: None,
                send: false,
            },
        )
    }

    /// Binds the next free even port of the range.
    fn bind(&self, calls: &mut Calls) -> Result<(UdpSocket, u16), MediaError> {
        let config = &self.inner.config;
        let first = u32::from(config.port_min).next_multiple_of(2);
        let last = u32::from(config.port_max);
        if first > last {
            return Err(MediaError::NoFreePort);
        }
        let count = (last - first) / 2 + 1;
        let mut busy = 0;
        for step in 0..count {
            let index = (calls.cursor + step) % count;
            let Ok(port) = u16::try_from(first + 2 * index) else {
                continue;
            };
            if calls.ports_in_use.contains(&port) {
                continue;
            }
            match std::net::UdpSocket::bind(SocketAddr::new(config.bind_ip, port)) {
                Ok(std_socket) => {
                    let _runtime = self.inner.runtime.enter();
                    let socket = UdpSocket::from_std(std_socket)?;
                    calls.cursor = (index + 1) % count;
                    return Ok((socket, port));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    busy += 1;
                    if busy >= MAX_BIND_ATTEMPTS {
                        break;
                    }
                }
                Err(e) => return Err(MediaError::Io(e)),
            }
        }
        Err(MediaError::NoFreePort)
    }

    /// Applies a re-INVITE or an answer: hold, new address, new codec or event
    /// type. A bridged leg's relay follows.
    pub fn update(&self, call: CallId, params: StreamParams) {
        {
            let mut calls = self.calls();
            let Some(entry) = calls.by_call.get_mut(&call) else {
                return;
            };
            entry.shared.set(&params);
            if entry.remote != params.remote {
                entry.remote = params.remote;
                entry.shared.relatch.store(true, Ordering::Relaxed);
            }
        }
        self.command(Command::Update { call, params });
    }

    /// Plays clips one after the other; `PlaybackFinished { play_id }` at the
    /// end. Music, if any, pauses meanwhile and then goes on where it was.
    pub fn play(&self, call: CallId, play_id: u64, clips: Vec<Arc<Clip>>) {
        self.command(Command::Play {
            call,
            play_id,
            clips,
        });
    }

    /// Stops the announcements at once (barge-in); no `PlaybackFinished` for
    /// them. Music, if any, goes on.
    pub fn stop(&self, call: CallId) {
        self.command(Command::Stop { call });
    }

    /// Loops `clip` (shared by all callers) under the announcements, from its
    /// start, until `stop_music`, `bridge` or `close`.
    pub fn play_music(&self, call: CallId, clip: Arc<Clip>) {
        self.command(Command::Music {
            call,
            clip: Some(clip),
        });
    }

    pub fn stop_music(&self, call: CallId) {
        self.command(Command::Music { call, clip: None });
    }

    /// Connects two legs: prompts and music stop on both, and what each
    /// receives is sent on to the other as it arrives (transcoded between
    /// PCMU and PCMA if their codecs differ, telephone-events mapped to the
    /// other leg's payload type). A leg already bridged elsewhere leaves that
    /// bridge first.
    pub fn bridge(&self, a: CallId, b: CallId) {
        self.command(Command::Bridge { a, b });
    }

    /// Ends the bridge `call` is in: both legs go back to comfort silence
    /// (ask for music again if wanted).
    pub fn unbridge(&self, call: CallId) {
        self.command(Command::Unbridge { call });
    }

    /// RTP timeout for streams opened from now on (`DEFAULT_RTP_TIMEOUT` until
    /// set); `None` turns the watch off.
    pub fn set_default_rtp_timeout(&self, timeout: Option<Duration>) {
        self.command(Command::RtpTimeout {
            call: None,
            timeout,
        });
    }

    /// RTP timeout of one stream; `None` turns its watch off.
    pub fn set_rtp_timeout(&self, call: CallId, timeout: Option<Duration>) {
        self.command(Command::RtpTimeout {
            call: Some(call),
            timeout,
        });
    }

    /// Releases the call's socket before returning. A bridged partner goes
    /// back to comfort silence.
    pub fn close(&self, call: CallId) {
        let entry = {
            let mut calls = self.calls();
            let entry = calls.by_call.remove(&call);
            if let Some(entry) = &entry {
                calls.ports_in_use.remove(&entry.port);
            }
            entry
        };
        if let Some(entry) = entry {
            entry.receiver.abort();
            drop(entry.socket);
            // The pacer also forgets streams whose socket is gone, so a lost
            // command costs nothing but a moment.
            self.command(Command::Close { call });
        }
    }

    /// Packets received on a call's socket so far.
    pub fn packets_received(&self, call: CallId) -> Option<u64> {
        let calls = self.calls();
        let entry = calls.by_call.get(&call)?;
        Some(entry.shared.received.load(Ordering::Relaxed))
    }

    /// Calls with an open socket.
    pub fn open_calls(&self) -> usize {
        self.calls().by_call.len()
    }

    pub fn stats(&self) -> MediaStats {
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let wakes = load(&c.wakes).max(1);
        MediaStats {
            streams: load(&c.streams),
            packets_sent: load(&c.sent),
            packets_dropped: load(&c.dropped),
            frames_skipped: load(&c.skipped),
            packets_received: load(&c.received),
            packets_relayed: load(&c.relayed),
            digits: load(&c.digits),
            queue_overflows: load(&c.overflows),
            max_wake_delay: Duration::from_nanos(load(&c.wake_delay_max_ns)),
            mean_wake_delay: Duration::from_nanos(load(&c.wake_delay_total_ns) / wakes),
        }
    }
}

/// The pacer and what the shell keeps beside it.
struct PacerShell {
    pacer: Pacer<Leg>,
    counters: Arc<Counters>,
}

impl PacerShell {
    fn control(&self, call: CallId, message: Control) {
        let Some(leg) = self.pacer.sink(call) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = leg.control.try_send(message) {
            self.counters.overflows.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                call = call.0,
                "media control queue full; bridge change lost"
            );
        }
    }

    /// Tells `relay_leg`'s receive task to feed `target`'s stream.
    fn relay(&self, relay_leg: CallId, target: CallId) {
        let (Some(outbound), Some(leg)) = (self.pacer.outbound(target), self.pacer.sink(target))
        else {
            return;
        };
        let message = Control::RelayTo(Box::new(RelayTarget {
            outbound,
            socket: Weak::clone(&leg.socket),
            shared: Arc::clone(&leg.shared),
        }));
        self.control(relay_leg, message);
    }

    fn unbridge(&mut self, call: CallId) {
        if let Some(peer) = self.pacer.unbridge(call, |leg| leg.shared.take_sequence()) {
            self.control(call, Control::Release);
            self.control(peer, Control::Release);
        }
    }

    fn apply(&mut self, command: Command, now: Instant) {
        match command {
            Command::Open {
                call,
                params,
                init,
                leg,
            } => {
                self.unbridge(call);
                self.pacer.open(now, call, params, init, leg);
            }
            Command::Update { call, params } => {
                self.pacer.update(call, params);
                if let Some(peer) = self.pacer.peer(call) {
                    self.relay(peer, call);
                }
            }
            Command::Latch { call, source } => {
                if self.pacer.latch(call, source) {
                    tracing::debug!(call = call.0, %source, "RTP latched to the address media comes from");
                    if let Some(peer) = self.pacer.peer(call) {
                        self.relay(peer, call);
                    }
                }
            }
            Command::Play {
                call,
                play_id,
                clips,
            } => {
                if !self.pacer.play(call, play_id, clips) {
                    tracing::warn!(
                        call = call.0,
                        play_id,
                        "play refused: call unknown or queue full"
                    );
                }
            }
            Command::Stop { call } => self.pacer.stop(call),
            Command::Music { call, clip } => match clip {
                Some(clip) => {
                    self.pacer.play_music(call, clip);
                }
                None => self.pacer.stop_music(call),
            },
            Command::Bridge { a, b } => {
                if a == b || self.pacer.peer(a) == Some(b) {
                    return;
                }
                self.unbridge(a);
                self.unbridge(b);
                let Some((out_a, out_b)) = self.pacer.bridge(a, b) else {
                    tracing::warn!(a = a.0, b = b.0, "bridge refused: leg unknown");
                    return;
                };
                for out in [out_a, out_b] {
                    if let Some(leg) = self.pacer.sink(out.call) {
                        leg.shared
                            .out_sequence
                            .store(u32::from(out.sequence), Ordering::Relaxed);
                    }
                }
                self.relay(b, a);
                self.relay(a, b);
            }
            Command::Unbridge { call } => self.unbridge(call),
            Command::RtpTimeout { call, timeout } => match call {
                Some(call) => {
                    self.pacer.set_rtp_timeout(call, timeout);
                }
                None => self.pacer.set_default_rtp_timeout(timeout),
            },
            Command::Close { call } => {
                self.unbridge(call);
                self.pacer.close(call);
            }
        }
    }
}

fn send_one(leg: &Leg, destination: SocketAddr, packet: &[u8]) -> SendResult {
    let Some(socket) = leg.socket.upgrade() else {
        return SendResult::Gone;
    };
    send_on(&socket, destination, packet)
}

fn send_on(socket: &UdpSocket, destination: SocketAddr, packet: &[u8]) -> SendResult {
    match socket.try_send_to(packet, destination) {
        Ok(_) => SendResult::Sent,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => SendResult::Dropped,
        Err(e) => {
            tracing::trace!(%destination, error = %e, "RTP send failed");
            SendResult::Dropped
        }
    }
}

/// Moves the counters into the Prometheus metrics once in a while, so that no
/// packet touches the registry.
struct MetricsFlush {
    metrics: Arc<Metrics>,
    late: prometheus::local::LocalHistogram,
    sent: u64,
    received: u64,
    relayed: u64,
    dropped: u64,
}

impl MetricsFlush {
    fn new(metrics: Arc<Metrics>) -> MetricsFlush {
        let late = metrics.rtp_pacer_late_seconds.local();
        MetricsFlush {
            metrics,
            late,
            sent: 0,
            received: 0,
            relayed: 0,
            dropped: 0,
        }
    }

    fn flush(&mut self, counters: &Counters) {
        let delta = |counter: &AtomicU64, last: &mut u64| {
            let now = counter.load(Ordering::Relaxed);
            let delta = now.saturating_sub(*last);
            *last = now;
            delta
        };
        let m = &self.metrics;
        m.rtp_packets_sent_total
            .inc_by(delta(&counters.sent, &mut self.sent));
        m.rtp_packets_received_total
            .inc_by(delta(&counters.received, &mut self.received));
        m.rtp_packets_relayed_total
            .inc_by(delta(&counters.relayed, &mut self.relayed));
        m.rtp_send_drops_total
            .inc_by(delta(&counters.dropped, &mut self.dropped));
        self.late.flush();
    }
}

/// The one pacing thread. It sleeps to each absolute slot boundary with the
/// OS's high-resolution sleep (tokio's timer has 1 ms granularity, which showed
/// as jitter), then applies queued commands, sends what is due and hands over
/// events. Once a second it also looks for silent streams and updates the
/// metrics. Sends are non-blocking, so no runtime is needed here.
fn run_pacer(
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<MediaEvent>,
    counters: Arc<Counters>,
    metrics: Arc<Metrics>,
) {
    let start = Instant::now();
    let mut shell = PacerShell {
        pacer: Pacer::new(start),
        counters: Arc::clone(&counters),
    };
    let mut flush = MetricsFlush::new(metrics);
    let mut housekeeping = start + HOUSEKEEPING_INTERVAL;
    let mut deadline = shell.pacer.next_deadline(start);
    loop {
        let now = Instant::now();
        if now < deadline {
            std::thread::sleep(deadline - now);
            continue;
        }
        let late_by = now.duration_since(deadline);
        let late = u64::try_from(late_by.as_nanos()).unwrap_or(u64::MAX);
        loop {
            match commands.try_recv() {
                Ok(command) => shell.apply(command, now),
                Err(mpsc::error::TryRecvError::Empty) => break,
                // Every handle is gone: the engine has shut down.
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    flush.flush(&counters);
                    return;
                }
            }
        }
        let stats: TickStats = shell.pacer.tick(now, send_one);
        Counters::add(&counters.sent, stats.sent);
        Counters::add(&counters.dropped, stats.dropped);
        Counters::add(&counters.skipped, stats.skipped);
        Counters::add(&counters.wakes, 1);
        Counters::add(&counters.wake_delay_total_ns, late);
        counters
            .wake_delay_max_ns
            .fetch_max(late, Ordering::Relaxed);
        counters
            .streams
            .store(shell.pacer.len() as u64, Ordering::Relaxed);
        flush.late.observe(late_by.as_secs_f64());
        if now >= housekeeping {
            shell
                .pacer
                .check_liveness(now, |leg| leg.shared.received.load(Ordering::Relaxed));
            flush.flush(&counters);
            housekeeping = now + HOUSEKEEPING_INTERVAL;
        }
        while let Some(event) = shell.pacer.poll_event() {
            match events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    // Kept (bounded) in the pacer and retried on the next tick.
                    shell.pacer.unpoll_event(event);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        deadline = shell.pacer.next_deadline(now);
    }
}

/// What a receive task wakes up for.
enum Input {
    Control(Control),
    Datagram(usize, SocketAddr),
    Error(std::io::Error),
    Closed,
}

/// The relay a receive task runs while its leg is bridged.
struct ActiveRelay {
    relay: Relay,
    socket: Weak<UdpSocket>,
    shared: Arc<CallShared>,
}

impl ActiveRelay {
    /// Sends one received packet on to the other leg, rewritten in `buffer`.
    fn forward(
        &mut self,
        buffer: &mut [u8],
        located: &rtp::Located,
        incoming_event_pt: Option<u8>,
        counters: &Counters,
    ) {
        let Some(destination) = self.relay.target().destination else {
            return;
        };
        let relayed = self.relay.rewrite(
            buffer,
            &located.header,
            located.payload.clone(),
            incoming_event_pt,
            Instant::now(),
        );
        let Relayed::Send(range) = relayed else {
            return;
        };
        let (Some(socket), Some(packet)) = (self.socket.upgrade(), buffer.get_mut(range)) else {
            return;
        };
        // `None`: the pacer has taken the stream back (unbridge under way).
        let Some(sequence) = self.shared.claim_sequence() else {
            return;
        };
        bridge::set_sequence(packet, sequence);
        match send_on(&socket, destination, packet) {
            SendResult::Sent => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                counters.relayed.fetch_add(1, Ordering::Relaxed);
            }
            SendResult::Dropped | SendResult::Gone => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Reads one call's socket: DTMF, symmetric-RTP latching, counting, and the
/// relay to the other leg while bridged.
async fn receive(
    call: CallId,
    socket: Weak<UdpSocket>,
    shared: Arc<CallShared>,
    mut control: mpsc::Receiver<Control>,
    commands: mpsc::WeakSender<Command>,
    events: mpsc::Sender<MediaEvent>,
    counters: Arc<Counters>,
) {
    let mut buffer = [0u8; RECEIVE_BUFFER];
    let mut detector = DtmfDetector::new();
    let mut gate = EventRelayGate::new();
    let mut latched = false;
    let mut relay: Option<ActiveRelay> = None;
    loop {
        // The socket is borrowed only while polled, so `close` can drop it.
        let input = std::future::poll_fn(|cx| {
            if let Poll::Ready(Some(message)) = control.poll_recv(cx) {
                return Poll::Ready(Input::Control(message));
            }
            let Some(socket) = socket.upgrade() else {
                return Poll::Ready(Input::Closed);
            };
            let mut read = ReadBuf::new(&mut buffer);
            match socket.poll_recv_from(cx, &mut read) {
                Poll::Ready(Ok(source)) => {
                    Poll::Ready(Input::Datagram(read.filled().len(), source))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Input::Error(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let (len, source) = match input {
            Input::Closed => return,
            Input::Datagram(len, source) => (len, source),
            Input::Control(Control::RelayTo(target)) => {
                let RelayTarget {
                    outbound,
                    socket,
                    shared,
                } = *target;
                match relay.as_mut() {
                    // Same bridge, new address or codec: the clock is the same.
                    Some(active) if active.relay.target().call == outbound.call => {
                        active.relay.retarget(outbound);
                        active.socket = socket;
                        active.shared = shared;
                    }
                    _ => {
                        relay = Some(ActiveRelay {
                            relay: Relay::new(outbound),
                            socket,
                            shared,
                        })
                    }
                }
                continue;
            }
            Input::Control(Control::Release) => {
                relay = None;
                continue;
            }
            Input::Error(e) => {
                tracing::trace!(call = call.0, error = %e, "RTP receive error");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let Some(datagram) = buffer.get(..len) else {
            continue;
        };
        let Ok(located) = rtp::locate(datagram) else {
            continue;
        };
        shared.received.fetch_add(1, Ordering::Relaxed);
        counters.received.fetch_add(1, Ordering::Relaxed);

        let pt = u16::from(located.header.payload_type);
        let te_pt = shared.telephone_event_pt.load(Ordering::Relaxed);
        let ours = pt == te_pt || pt == shared.codec_pt.load(Ordering::Relaxed);
        if shared.relatch.load(Ordering::Relaxed) {
            shared.relatch.store(false, Ordering::Relaxed);
            latched = false;
        }
        if ours && !latched {
            latched = true;
            if let Some(commands) = commands.upgrade() {
                if commands.try_send(Command::Latch { call, source }).is_err() {
                    counters.overflows.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let mut digit = None;
        // Only events that started while bridged cross the bridge.
        let mut pass = true;
        if pt == te_pt {
            let (ssrc, timestamp) = (located.header.ssrc, located.header.timestamp);
            if let Some(payload) = datagram.get(located.payload.clone()) {
                digit = detector.on_packet(ssrc, timestamp, payload);
            }
            pass = gate.relay(ssrc, timestamp, relay.is_some());
        }
        if let Some(active) = relay.as_mut().filter(|_| pass) {
            let incoming_event_pt = u8::try_from(te_pt).ok();
            active.forward(&mut buffer, &located, incoming_event_pt, &counters);
        }
        if let Some(digit) = digit {
            counters.digits.fetch_add(1, Ordering::Relaxed);
            if events
                .send(MediaEvent::Digit { call, digit })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, FRAME_BYTES};
    use std::net::{IpAddr, Ipv4Addr};
    use tokio::net::UdpSocket;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A free even port, found by asking the system for ports until one is even.
    fn free_even_port() -> u16 {
        loop {
            let socket = std::net::UdpSocket::bind((LOCALHOST, 0)).expect("bind");
            let port = socket.local_addr().expect("addr").port();
            if port % 2 == 0 && port < u16::MAX - 1 {
                return port;
            }
        }
    }

    fn engine(port_min: u16, port_max: u16) -> (MediaEngine, mpsc::Receiver<MediaEvent>) {
        MediaEngine::start(
            MediaConfig {
                bind_ip: LOCALHOST,
                port_min,
                port_max,
            },
            Arc::new(Metrics::new()),
        )
    }

    fn params(remote: SocketAddr) -> StreamParams {
        StreamParams {
            remote,
            codec: Codec::Pcma,
            telephone_event_pt: Some(101),
            send: true,
        }
    }

    async fn recv_packet(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 1500];
        let (len, from) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
            .await
            .expect("packet in time")
            .expect("recv");
        (buf[..len].to_vec(), from)
    }

    #[tokio::test]
    async fn sends_silence_plays_clips_and_reports_the_end() {
        let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let port = free_even_port();
        let (engine, mut events) = engine(port, port + 10);
        let call = CallId(1);
        let local = engine
            .open(call, params(peer.local_addr().expect("addr")))
            .expect("open");
        assert!(local % 2 == 0 && (port..=port + 10).contains(&local));
        let (first, from) = recv_packet(&peer).await;
        assert_eq!(from.port(), local);
        let first = rtp::parse(&first).expect("rtp").header;
        assert_eq!(first.payload_type, 8);
        let (second, _) = recv_packet(&peer).await;
        let second = rtp::parse(&second).expect("rtp");
        assert_eq!(second.header.sequence, first.sequence.wrapping_add(1));
        assert_eq!(second.header.timestamp, first.timestamp.wrapping_add(160));
        assert_eq!(second.payload, &[0xD5; FRAME_BYTES][..]);

        engine.play(call, 42, vec![Arc::new(Clip::from_samples(&[500; 480]))]);
        let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("event in time");
        assert_eq!(
            event,
            Some(MediaEvent::PlaybackFinished { call, play_id: 42 })
        );
        engine.close(call);
    }

    #[tokio::test]
    async fn digits_and_symmetric_rtp_latching() {
        // The SDP names an address nobody listens on; media comes from `peer`.
        let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let silent = std::net::UdpSocket::bind((LOCALHOST, 0)).expect("bind");
        let port = free_even_port();
        let (engine, mut events) = engine(port, port + 10);
        let call = CallId(9);
        let local = engine
            .open(call, params(silent.local_addr().expect("addr")))
            .expect("open");
        // sipp's digit 2: start, update, three end packets.
        for hex in [
            "80e51f6a00005aa00e05384e020a0000",
            "80651f6b00005aa00e05384e020a0140",
            "80651f7100005aa00e05384e028a08c0",
            "80651f7100005aa00e05384e028a08c0",
            "80651f7100005aa00e05384e028a08c0",
        ] {
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            peer.send_to(&bytes, (LOCALHOST, local))
                .await
                .expect("send");
        }
        let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("digit in time");
        assert_eq!(event, Some(MediaEvent::Digit { call, digit: '2' }));
        // After latching, our RTP reaches the peer although the SDP said otherwise.
        let (packet, _) = recv_packet(&peer).await;
        assert!(rtp::parse(&packet).is_ok());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(events.try_recv().is_err(), "only one digit");
        assert_eq!(engine.packets_received(call), Some(5));
        engine.close(call);
        assert_eq!(engine.packets_received(call), None);
    }

    #[tokio::test]
    async fn close_frees_the_port_at_once_and_the_range_is_bounded() {
        let port = free_even_port();
        let (engine, _events) = engine(port, port + 1);
        let remote = SocketAddr::new(LOCALHOST, 9);
        // On hold, so that the pacer thread is never inside a send at the moment
        // of `close` (it would hold the socket for those microseconds).
        let params = |remote| StreamParams {
            send: false,
            ..params(remote)
        };
        assert_eq!(engine.open(CallId(1), params(remote)).expect("open"), port);
        // Same call again: same port.
        assert_eq!(engine.open(CallId(1), params(remote)).expect("open"), port);
        assert!(matches!(
            engine.open(CallId(2), params(remote)),
            Err(MediaError::NoFreePort)
        ));
        engine.close(CallId(1));
        // Nothing else may hold the socket: another process could bind it now.
        let probe = std::net::UdpSocket::bind((LOCALHOST, port)).expect("port is free");
        drop(probe);
        assert_eq!(engine.open(CallId(2), params(remote)).expect("open"), port);
        assert_eq!(engine.open_calls(), 1);
        // An odd-only range has no even port.
        let (odd, _events) = engine_with_range(port + 1, port + 1);
        assert!(matches!(
            odd.open(CallId(3), params(remote)),
            Err(MediaError::NoFreePort)
        ));
    }

    fn engine_with_range(min: u16, max: u16) -> (MediaEngine, mpsc::Receiver<MediaEvent>) {
        engine(min, max)
    }

    #[tokio::test]
    async fn hold_stops_sending_and_resume_starts_again() {
        let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let port = free_even_port();
        let (engine, _events) = engine(port, port + 10);
        let call = CallId(5);
        let remote = peer.local_addr().expect("addr");
        engine.open(call, params(remote)).expect("open");
        recv_packet(&peer).await;
        engine.update(
            call,
            StreamParams {
                send: false,
                ..params(remote)
            },
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 1500];
        while peer.try_recv_from(&mut buf).is_ok() {}
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            peer.try_recv_from(&mut buf).is_err(),
            "nothing sent on hold"
        );
        engine.update(call, params(remote));
        let (packet, _) = recv_packet(&peer).await;
        assert!(rtp::parse(&packet).expect("rtp").header.marker);
        engine.close(call);
    }

    fn rtp_bytes(pt: u8, sequence: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; rtp::HEADER_LEN];
        rtp::RtpHeader {
            marker: false,
            payload_type: pt,
            sequence,
            timestamp,
            ssrc,
        }
        .write(&mut bytes);
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Empties a socket after letting what is in flight arrive.
    async fn drain(socket: &UdpSocket) {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let mut buf = [0u8; 1500];
        while socket.try_recv_from(&mut buf).is_ok() {}
    }

    /// The last packet before the stream goes quiet for 100 ms.
    async fn last_before_quiet(socket: &UdpSocket) -> Option<rtp::RtpHeader> {
        let mut buf = [0u8; 1500];
        let mut last = None;
        while let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await
        {
            last = rtp::parse(&buf[..len]).ok().map(|p| p.header);
        }
        last
    }

    async fn recv_rtp(socket: &UdpSocket) -> (rtp::RtpHeader, Vec<u8>) {
        let (bytes, _) = recv_packet(socket).await;
        let packet = rtp::parse(&bytes).expect("rtp");
        (packet.header, packet.payload.to_vec())
    }

    fn close_enough(decoded: i16, sent: i16) -> bool {
        (i32::from(decoded) - i32::from(sent)).abs() <= i32::from(sent).abs() / 8 + 32
    }

    #[tokio::test]
    async fn bridge_relays_both_ways_transcoding_and_mapping_events() {
        use crate::media::g711;
        let caller = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let agent = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let port = free_even_port();
        let (engine, mut events) = engine(port, port + 10);
        let (a, b) = (CallId(1), CallId(2));
        let a_port = engine
            .open(
                a,
                StreamParams {
                    codec: Codec::Pcmu,
                    ..params(caller.local_addr().expect("addr"))
                },
            )
            .expect("open");
        // The agent leg: a port for the offer first, the answer later.
        let b_port = engine.open_pending(b).expect("open");
        assert_ne!(a_port, b_port);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let mut buf = [0u8; 1500];
        assert!(
            agent.try_recv_from(&mut buf).is_err(),
            "nothing before the answer"
        );
        engine.update(
            b,
            StreamParams {
                remote: agent.local_addr().expect("addr"),
                codec: Codec::Pcma,
                telephone_event_pt: Some(96),
                send: true,
            },
        );
        engine.play_music(a, Arc::new(Clip::from_samples(&[3000; 1600])));
        drain(&agent).await;
        let heard = recv_rtp(&agent).await.0;
        assert_eq!(heard.payload_type, 8);

        // What the agent heard last from the pacer: the relay numbers on.
        engine.bridge(a, b);
        let last_paced = last_before_quiet(&agent).await.unwrap_or(heard);
        drain(&caller).await;

        // Caller → agent: μ-law in, A-law out, in the agent leg's own stream.
        let levels: [i16; 4] = [0, 1200, -5000, 20000];
        let ulaw: Vec<u8> = levels
            .iter()
            .flat_map(|&s| std::iter::repeat_n(g711::linear_to_ulaw(s), 40))
            .collect();
        let mut relayed = Vec::new();
        for k in 0..5u16 {
            let packet = rtp_bytes(0, 700 + k, 9000 + 160 * u32::from(k), 0x1111, &ulaw);
            caller
                .send_to(&packet, (LOCALHOST, a_port))
                .await
                .expect("send");
            relayed.push(recv_rtp(&agent).await);
        }
        let first = relayed[0].0;
        assert_eq!(first.ssrc, last_paced.ssrc, "agent leg keeps its SSRC");
        assert_eq!(first.sequence, last_paced.sequence.wrapping_add(1));
        assert_ne!(first.ssrc, 0x1111);
        assert!(first.marker);
        for (k, (header, payload)) in relayed.iter().enumerate() {
            assert_eq!(header.payload_type, 8);
            assert_eq!(header.sequence, first.sequence.wrapping_add(k as u16));
            assert_eq!(
                header.timestamp,
                first.timestamp.wrapping_add(160 * k as u32)
            );
            assert_eq!(payload.len(), 160);
            for (i, &byte) in payload.iter().enumerate() {
                let sent = levels[i / 40];
                let heard = g711::alaw_to_linear(byte);
                assert!(close_enough(heard, sent), "sample {i}: {sent} → {heard}");
            }
        }
        // A digit: reported, and passed on with the agent's event type.
        let event = rtp_bytes(101, 705, 9800, 0x1111, &[7, 0x0A, 0, 160]);
        caller
            .send_to(&event, (LOCALHOST, a_port))
            .await
            .expect("send");
        let (header, payload) = recv_rtp(&agent).await;
        assert_eq!((header.payload_type, payload), (96, vec![7, 0x0A, 0, 160]));
        assert_eq!(header.sequence, first.sequence.wrapping_add(5));
        let got = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("digit in time");
        assert_eq!(
            got,
            Some(MediaEvent::Digit {
                call: a,
                digit: '7'
            })
        );

        // Agent → caller: A-law in, μ-law out.
        let alaw: Vec<u8> = levels
            .iter()
            .flat_map(|&s| std::iter::repeat_n(g711::linear_to_alaw(s), 40))
            .collect();
        let packet = rtp_bytes(8, 1, 555, 0x2222, &alaw);
        agent
            .send_to(&packet, (LOCALHOST, b_port))
            .await
            .expect("send");
        let (back, payload) = recv_rtp(&caller).await;
        assert_eq!(back.payload_type, 0);
        assert_ne!(back.ssrc, 0x2222);
        for (i, &byte) in payload.iter().enumerate() {
            assert!(close_enough(g711::ulaw_to_linear(byte), levels[i / 40]));
        }
        // The agent's event goes to the caller as 101.
        let event = rtp_bytes(96, 2, 715, 0x2222, &[11, 0x0A, 0, 160]);
        agent
            .send_to(&event, (LOCALHOST, b_port))
            .await
            .expect("send");
        let (header, _) = recv_rtp(&caller).await;
        assert_eq!(header.payload_type, 101);
        assert_eq!(header.sequence, back.sequence.wrapping_add(1));

        // Unbridged: the pacer sends again, numbering on after the relay.
        engine.unbridge(b);
        let (resumed, payload) = recv_rtp(&agent).await;
        assert_eq!(resumed.ssrc, first.ssrc);
        assert_eq!(resumed.sequence, first.sequence.wrapping_add(6));
        assert!(resumed.marker);
        assert_eq!(payload, vec![0xD5; FRAME_BYTES], "silence, not the relay");
        let (resumed_a, _) = recv_rtp(&caller).await;
        assert_eq!(resumed_a.sequence, back.sequence.wrapping_add(2));
        // And nothing is relayed any more.
        drain(&agent).await;
        caller
            .send_to(&rtp_bytes(0, 9, 1, 0x1111, &ulaw), (LOCALHOST, a_port))
            .await
            .expect("send");
        let (silence, payload) = recv_rtp(&agent).await;
        assert_eq!((silence.payload_type, payload[0]), (8, 0xD5));
        assert_eq!(engine.stats().packets_relayed, 8);
        engine.close(a);
        engine.close(b);
    }

    #[tokio::test]
    async fn events_are_dropped_without_a_type_and_closing_a_leg_ends_the_bridge() {
        let caller = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let agent = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let port = free_even_port();
        let (engine, _events) = engine(port, port + 10);
        let (a, b) = (CallId(1), CallId(2));
        let a_port = engine
            .open(a, params(caller.local_addr().expect("addr")))
            .expect("open");
        let no_events = StreamParams {
            telephone_event_pt: None,
            ..params(agent.local_addr().expect("addr"))
        };
        engine.open(b, no_events).expect("open");
        engine.bridge(a, b);
        drain(&agent).await;
        let event = rtp_bytes(101, 1, 160, 0x1111, &[1, 0x0A, 0, 160]);
        caller
            .send_to(&event, (LOCALHOST, a_port))
            .await
            .expect("send");
        let audio = rtp_bytes(8, 2, 320, 0x1111, &[0xD5; FRAME_BYTES]);
        caller
            .send_to(&audio, (LOCALHOST, a_port))
            .await
            .expect("send");
        let (header, _) = recv_rtp(&agent).await;
        assert_eq!(header.payload_type, 8, "the event was not passed on");
        // The caller hangs up: the agent leg is paced again.
        engine.close(a);
        let (paced, _) = recv_rtp(&agent).await;
        assert_eq!(paced.sequence, header.sequence.wrapping_add(1));
        assert!(paced.marker);
        engine.close(b);
    }

    #[tokio::test]
    async fn silent_leg_times_out_once_and_metrics_are_updated() {
        let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let port = free_even_port();
        let metrics = Arc::new(Metrics::new());
        let (engine, mut events) = MediaEngine::start(
            MediaConfig {
                bind_ip: LOCALHOST,
                port_min: port,
                port_max: port + 10,
            },
            Arc::clone(&metrics),
        );
        let (talking, silent) = (CallId(1), CallId(2));
        engine.set_default_rtp_timeout(Some(Duration::from_millis(300)));
        let talking_port = engine
            .open(talking, params(peer.local_addr().expect("addr")))
            .expect("open");
        engine
            .open(silent, params(peer.local_addr().expect("addr")))
            .expect("open");
        let feeder = async {
            for k in 0..60u16 {
                let packet = rtp_bytes(8, k, 160 * u32::from(k), 9, &[0xD5; FRAME_BYTES]);
                let _ = peer.send_to(&packet, (LOCALHOST, talking_port)).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let watcher = async {
            let got = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .expect("timeout event in time");
            assert_eq!(got, Some(MediaEvent::RtpTimeout { call: silent }));
        };
        tokio::join!(feeder, watcher);
        assert!(
            events.try_recv().is_err(),
            "reported once, and not for the talking leg"
        );
        let text = metrics.render();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        assert!(value("hotline_rtp_packets_sent_total ") > 0.0, "{text}");
        assert!(
            value("hotline_rtp_packets_received_total ") >= 20.0,
            "{text}"
        );
        assert!(
            value("hotline_rtp_pacer_late_seconds_count ") > 0.0,
            "{text}"
        );
        engine.close(talking);
        engine.close(silent);
    }
}
