//! The one pacing thread: it sleeps to each absolute slot boundary, applies
//! the handles' commands to the [`Pacer`] core, sends what is due on every
//! leg's socket, hands events to the call layer and, once a second, runs the
//! RTP-timeout watch and moves the counters into the metrics.

use super::PacerObserver;
use super::{Command, Control, Counters, Leg, RelayTarget};
use crate::ids::CallId;
use crate::media::pacer::{Pacer, SendResult, TickStats};
use crate::media::socket::RtpSocket as UdpSocket;
use crate::media::MediaEvent;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the pacer thread checks for silent streams and updates metrics.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

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

pub(super) fn send_on(socket: &UdpSocket, destination: SocketAddr, packet: &[u8]) -> SendResult {
    match socket.try_send_to(packet, destination) {
        Ok(_) => SendResult::Sent,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => SendResult::Dropped,
        Err(e) => {
            tracing::trace!(%destination, error = %e, "RTP send failed");
            SendResult::Dropped
        }
    }
}

/// Hands the counters to the observer (the metrics) once in a while, so that
/// no packet touches a registry.
struct MetricsFlush {
    observer: Arc<dyn PacerObserver>,
    sent: u64,
    received: u64,
    relayed: u64,
    dropped: u64,
}

impl MetricsFlush {
    fn new(observer: Arc<dyn PacerObserver>) -> MetricsFlush {
        MetricsFlush {
            observer,
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
        let sent = delta(&counters.sent, &mut self.sent);
        let received = delta(&counters.received, &mut self.received);
        let relayed = delta(&counters.relayed, &mut self.relayed);
        let dropped = delta(&counters.dropped, &mut self.dropped);
        self.observer.packets(sent, received, relayed, dropped);
    }
}

/// The one pacing thread. It sleeps to each absolute slot boundary with the
/// OS's high-resolution sleep (tokio's timer has 1 ms granularity, which showed
/// as jitter), then applies queued commands, sends what is due and hands over
/// events. Once a second it also looks for silent streams and updates the
/// metrics. Sends are non-blocking, so no runtime is needed here.
pub(super) fn run_pacer(
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<MediaEvent>,
    counters: Arc<Counters>,
    observer: Arc<dyn PacerObserver>,
) {
    let start = Instant::now();
    let mut shell = PacerShell {
        pacer: Pacer::new(start),
        counters: Arc::clone(&counters),
    };
    let mut flush = MetricsFlush::new(observer);
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
        flush.observer.late(late_by.as_secs_f64());
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
