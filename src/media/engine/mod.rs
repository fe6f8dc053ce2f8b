//! The shell around the media cores: one thread paces every call (it needs a
//! sub-ms clock, which tokio's timer is not; `pacer_thread.rs`), one small
//! tokio task per call reads what the caller sends, asks the leg's
//! `ReceiveCore` what it means and, while the call is bridged, relays it to the
//! other leg on arrival (`receive_task.rs`). This file is the handle the call
//! layer holds: sockets, ports and the commands to the pacer.
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

mod pacer_thread;
mod receive_task;
#[cfg(test)]
mod tests;

use super::pacer::{Outbound, StreamInit};
use super::receive::PayloadTypes;
use super::socket::RtpSocket as UdpSocket;
use super::{Clip, Codec, MediaConfig, MediaError, MediaEvent, StreamParams};
use crate::ids::CallId;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
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
/// `telephone_event_pt` stored in an atomic; this value means none.
const NO_PAYLOAD_TYPE: u16 = u16::MAX;
/// `CallShared::out_sequence` while no relay sends on the leg.
const NOT_RELAYED: u32 = u32::MAX;

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

/// What the pacer reports: packets once a second (as deltas), and how late
/// each wake-up was (50 a second, never per packet). The metrics side
/// implements it, so media knows nothing of Prometheus.
pub trait PacerObserver: Send + Sync + 'static {
    fn packets(&self, sent: u64, received: u64, relayed: u64, dropped: u64);
    fn late(&self, seconds: f64);
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

    /// The payload types the receive core judges packets by.
    fn payload_types(&self) -> PayloadTypes {
        PayloadTypes {
            codec: u8::try_from(self.codec_pt.load(Ordering::Relaxed)).unwrap_or(0),
            event: u8::try_from(self.telephone_event_pt.load(Ordering::Relaxed)).ok(),
        }
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
        observer: Arc<dyn PacerObserver>,
    ) -> (MediaEngine, mpsc::Receiver<MediaEvent>) {
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, event_rx) = mpsc::channel(EVENT_QUEUE);
        let counters = Arc::new(Counters::default());
        let runtime = tokio::runtime::Handle::current();
        let pacer_events = events.clone();
        let pacer_counters = Arc::clone(&counters);
        let spawned = std::thread::Builder::new()
            .name("rtp-pacer".into())
            .spawn(move || {
                pacer_thread::run_pacer(command_rx, pacer_events, pacer_counters, observer)
            });
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
        let receiver = self.inner.runtime.spawn(receive_task::receive(
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
        let moved = {
            let mut calls = self.calls();
            let Some(entry) = calls.by_call.get_mut(&call) else {
                return;
            };
            entry.shared.set(&params);
            let moved = entry.remote != params.remote;
            entry.remote = params.remote;
            moved.then(|| Arc::clone(&entry.shared))
        };
        self.command(Command::Update { call, params });
        // Only now: a latch the receive task asks for after this reaches the
        // pacer after the update, which would otherwise forget it.
        if let Some(shared) = moved {
            shared.relatch.store(true, Ordering::Relaxed);
        }
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
