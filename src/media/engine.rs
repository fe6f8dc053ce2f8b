//! The shell around the pacer: one thread paces every call (it needs a sub-ms
//! clock, which tokio's timer is not), one small tokio task per call reads what
//! the caller sends.
//!
//! Each call's socket is owned by the handle's call table alone; the pacer and
//! the receive task hold weak references, upgraded only for one send or one
//! poll. `close` removes the entry and so closes the socket before it returns
//! (or, if the pacer is sending that very moment, when that send returns).

use super::dtmf::DtmfDetector;
use super::pacer::{Pacer, SendResult, StreamInit, TickStats};
use super::{rtp, Clip, MediaConfig, MediaError, MediaEvent, StreamParams};
use crate::metrics::Metrics;
use crate::sip::CallKey;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Commands waiting for the pacer.
const COMMAND_QUEUE: usize = 65_536;
/// Events waiting for the call layer.
const EVENT_QUEUE: usize = 8_192;
/// Ports found busy (taken by another process) before giving up.
const MAX_BIND_ATTEMPTS: usize = 64;
/// Largest datagram read; larger ones are truncated and then fail to parse.
const RECEIVE_BUFFER: usize = 1_500;
/// `telephone_event_pt` stored in an atomic; this value means none.
const NO_PAYLOAD_TYPE: u16 = u16::MAX;

enum Command {
    Open {
        call: CallKey,
        params: StreamParams,
        init: StreamInit,
        socket: Weak<UdpSocket>,
    },
    Update {
        call: CallKey,
        params: StreamParams,
    },
    Latch {
        call: CallKey,
        source: SocketAddr,
    },
    Play {
        call: CallKey,
        play_id: u64,
        clips: Vec<Arc<Clip>>,
    },
    Stop {
        call: CallKey,
    },
    Close {
        call: CallKey,
    },
}

/// Counters of the media path since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaStats {
    /// Streams the pacer is sending.
    pub streams: u64,
    pub packets_sent: u64,
    /// Packets not sent: socket buffer full or send error.
    pub packets_dropped: u64,
    /// Frames skipped because the pacer woke too late.
    pub frames_skipped: u64,
    pub packets_received: u64,
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

/// What a call's receive task needs to know; atomics, so no lock per packet.
struct CallShared {
    codec_pt: AtomicU16,
    telephone_event_pt: AtomicU16,
    /// Set when the SDP address changes: latch again on the next packet.
    relatch: AtomicBool,
    received: AtomicU64,
}

impl CallShared {
    fn new(params: &StreamParams) -> CallShared {
        let shared = CallShared {
            codec_pt: AtomicU16::new(0),
            telephone_event_pt: AtomicU16::new(NO_PAYLOAD_TYPE),
            relatch: AtomicBool::new(false),
            received: AtomicU64::new(0),
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
    by_call: HashMap<CallKey, CallEntry>,
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
    _metrics: Arc<Metrics>,
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
            .spawn(move || run_pacer(command_rx, pacer_events, pacer_counters));
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
            _metrics: metrics,
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
    pub fn open(&self, call: CallKey, params: StreamParams) -> Result<u16, MediaError> {
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
        if !self.command(Command::Open {
            call,
            params,
            init,
            socket: Arc::downgrade(&socket),
        }) {
            return Err(MediaError::Unavailable);
        }
        let shared = Arc::new(CallShared::new(&params));
        let receiver = self.inner.runtime.spawn(receive(
            call,
            Arc::downgrade(&socket),
            Arc::clone(&shared),
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
                    std_socket.set_nonblocking(true)?;
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

    /// Applies a re-INVITE: hold, new address, new codec or event type.
    pub fn update(&self, call: CallKey, params: StreamParams) {
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

    /// Plays clips one after the other; `PlaybackFinished { play_id }` at the end.
    pub fn play(&self, call: CallKey, play_id: u64, clips: Vec<Arc<Clip>>) {
        self.command(Command::Play {
            call,
            play_id,
            clips,
        });
    }

    /// Stops playback at once (barge-in); no `PlaybackFinished` for it.
    pub fn stop(&self, call: CallKey) {
        self.command(Command::Stop { call });
    }

    /// Releases the call's socket before returning.
    pub fn close(&self, call: CallKey) {
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
    pub fn packets_received(&self, call: CallKey) -> Option<u64> {
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
            digits: load(&c.digits),
            queue_overflows: load(&c.overflows),
            max_wake_delay: Duration::from_nanos(load(&c.wake_delay_max_ns)),
            mean_wake_delay: Duration::from_nanos(load(&c.wake_delay_total_ns) / wakes),
        }
    }
}

fn apply(pacer: &mut Pacer<Weak<UdpSocket>>, command: Command, now: Instant) {
    match command {
        Command::Open {
            call,
            params,
            init,
            socket,
        } => {
            pacer.open(now, call, params, init, socket);
        }
        Command::Update { call, params } => {
            pacer.update(call, params);
        }
        Command::Latch { call, source } => {
            if pacer.latch(call, source) {
                tracing::debug!(call = call.0, %source, "RTP latched to the address media comes from");
            }
        }
        Command::Play {
            call,
            play_id,
            clips,
        } => {
            if !pacer.play(call, play_id, clips) {
                tracing::warn!(
                    call = call.0,
                    play_id,
                    "play refused: call unknown or queue full"
                );
            }
        }
        Command::Stop { call } => pacer.stop(call),
        Command::Close { call } => {
            pacer.close(call);
        }
    }
}

fn send_one(socket: &Weak<UdpSocket>, destination: SocketAddr, packet: &[u8]) -> SendResult {
    let Some(socket) = socket.upgrade() else {
        return SendResult::Gone;
    };
    match socket.try_send_to(packet, destination) {
        Ok(_) => SendResult::Sent,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => SendResult::Dropped,
        Err(e) => {
            tracing::trace!(%destination, error = %e, "RTP send failed");
            SendResult::Dropped
        }
    }
}

/// The one pacing thread. It sleeps to each absolute 20 ms grid point with the
/// OS's high-resolution sleep (tokio's timer has 1 ms granularity, which showed
/// as jitter), then applies queued commands, sends what is due and hands over
/// events. Sends are non-blocking, so no runtime is needed here.
fn run_pacer(
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<MediaEvent>,
    counters: Arc<Counters>,
) {
    let mut pacer: Pacer<Weak<UdpSocket>> = Pacer::new(Instant::now());
    let mut deadline = pacer.next_deadline(Instant::now());
    loop {
        let now = Instant::now();
        if now < deadline {
            std::thread::sleep(deadline - now);
            continue;
        }
        let late = u64::try_from(now.duration_since(deadline).as_nanos()).unwrap_or(u64::MAX);
        loop {
            match commands.try_recv() {
                Ok(command) => apply(&mut pacer, command, now),
                Err(mpsc::error::TryRecvError::Empty) => break,
                // Every handle is gone: the engine has shut down.
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        let stats: TickStats = pacer.tick(now, send_one);
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
            .store(pacer.len() as u64, Ordering::Relaxed);
        while let Some(event) = pacer.poll_event() {
            match events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    // Kept (bounded) in the pacer and retried on the next tick.
                    pacer.unpoll_event(event);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        deadline = pacer.next_deadline(now);
    }
}

/// Reads one call's socket: DTMF, symmetric-RTP latching, counting.
async fn receive(
    call: CallKey,
    socket: Weak<UdpSocket>,
    shared: Arc<CallShared>,
    commands: mpsc::WeakSender<Command>,
    events: mpsc::Sender<MediaEvent>,
    counters: Arc<Counters>,
) {
    let mut buffer = [0u8; RECEIVE_BUFFER];
    let mut detector = DtmfDetector::new();
    let mut latched = false;
    loop {
        // The socket is borrowed only while polled, so `close` can drop it.
        let received = std::future::poll_fn(|cx| {
            let Some(socket) = socket.upgrade() else {
                return Poll::Ready(None);
            };
            let mut read = ReadBuf::new(&mut buffer);
            match socket.poll_recv_from(cx, &mut read) {
                Poll::Ready(Ok(source)) => Poll::Ready(Some(Ok((read.filled().len(), source)))),
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let (len, source) = match received {
            None => return,
            Some(Ok(got)) => got,
            Some(Err(e)) => {
                tracing::trace!(call = call.0, error = %e, "RTP receive error");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let Some(datagram) = buffer.get(..len) else {
            continue;
        };
        let Ok(packet) = rtp::parse(datagram) else {
            continue;
        };
        shared.received.fetch_add(1, Ordering::Relaxed);
        counters.received.fetch_add(1, Ordering::Relaxed);

        let pt = u16::from(packet.header.payload_type);
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
        if pt == te_pt {
            let digit =
                detector.on_packet(packet.header.ssrc, packet.header.timestamp, packet.payload);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, FRAME_BYTES};
    use std::net::{IpAddr, Ipv4Addr};

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
        let call = CallKey(1);
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
        let call = CallKey(9);
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
        assert_eq!(engine.open(CallKey(1), params(remote)).expect("open"), port);
        // Same call again: same port.
        assert_eq!(engine.open(CallKey(1), params(remote)).expect("open"), port);
        assert!(matches!(
            engine.open(CallKey(2), params(remote)),
            Err(MediaError::NoFreePort)
        ));
        engine.close(CallKey(1));
        // Nothing else may hold the socket: another process could bind it now.
        let probe = std::net::UdpSocket::bind((LOCALHOST, port)).expect("port is free");
        drop(probe);
        assert_eq!(engine.open(CallKey(2), params(remote)).expect("open"), port);
        assert_eq!(engine.open_calls(), 1);
        // An odd-only range has no even port.
        let (odd, _events) = engine_with_range(port + 1, port + 1);
        assert!(matches!(
            odd.open(CallKey(3), params(remote)),
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
        let call = CallKey(5);
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

    /// Manual measurement, not a check: `cargo test --release --lib
    /// measure_pacing -- --ignored --nocapture`. Sends 1,000 streams for 10 s to
    /// sockets that never read (so that no receiver competes for the CPU) on
    /// 127.0.0.1 ports 39000-39009; capture them with `dumpcap -i lo -f "udp
    /// dst portrange 39000-39009"` and compare arrival times with the RTP
    /// timestamps.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn measure_pacing() {
        const STREAMS: usize = 1_000;
        const SINKS: u16 = 10;
        const SECONDS: u64 = 10;
        let port = free_even_port().min(40_000);
        let (engine, _events) = engine(port, port + 2 * STREAMS as u16 + 200);
        let sinks: Vec<std::net::UdpSocket> = (0..SINKS)
            .map(|k| std::net::UdpSocket::bind((LOCALHOST, 39_000 + k)).expect("bind sink"))
            .collect();
        for k in 0..STREAMS {
            let sink = sinks[k % sinks.len()].local_addr().expect("addr");
            engine.open(CallKey(k as u64), params(sink)).expect("open");
        }
        tokio::time::sleep(Duration::from_secs(SECONDS)).await;
        let stats = engine.stats();
        println!(
            "streams {}, sent {}, dropped {}, skipped {}, pacer wake delay mean {:?} max {:?}",
            stats.streams,
            stats.packets_sent,
            stats.packets_dropped,
            stats.frames_skipped,
            stats.mean_wake_delay,
            stats.max_wake_delay
        );
    }
}
