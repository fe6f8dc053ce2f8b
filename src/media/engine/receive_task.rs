//! One small tokio task per leg: reads the leg's socket, hands each datagram to
//! the leg's [`ReceiveCore`] and does what it says (tell the pacer where to
//! send, count, relay to the bridged leg, report a key press). The decisions
//! are all in the core; this is only the IO around it.

use super::pacer_thread::send_on;
use super::{CallShared, Command, Control, Counters, RelayTarget};
use crate::ids::CallId;
use crate::media::bridge;
use crate::media::pacer::SendResult;
use crate::media::receive::{Forward, ReceiveCore};
use crate::media::socket::RtpSocket as UdpSocket;
use crate::media::MediaEvent;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Instant;
use tokio::io::ReadBuf;
use tokio::sync::mpsc;

/// Largest datagram read; larger ones are truncated and then fail to parse.
const RECEIVE_BUFFER: usize = 1_500;

/// What a receive task wakes up for.
enum Input {
    Control(Control),
    Datagram(usize, SocketAddr),
    Error(std::io::Error),
    Closed,
}

/// The other leg's socket and numbering while this one is bridged to it.
struct BridgedLeg {
    socket: Weak<UdpSocket>,
    shared: Arc<CallShared>,
}

impl BridgedLeg {
    /// Sends the packet the core rewrote in `buffer`, numbered in the other
    /// leg's stream.
    fn send(&self, buffer: &mut [u8], forward: Forward, counters: &Counters) {
        let (Some(socket), Some(packet)) = (self.socket.upgrade(), buffer.get_mut(forward.packet))
        else {
            return;
        };
        // `None`: the pacer has taken the stream back (unbridge under way).
        let Some(sequence) = self.shared.claim_sequence() else {
            return;
        };
        bridge::set_sequence(packet, sequence);
        match send_on(&socket, forward.destination, packet) {
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

/// Reads one leg's socket until it is closed.
pub(super) async fn receive(
    call: CallId,
    socket: Weak<UdpSocket>,
    shared: Arc<CallShared>,
    mut control: mpsc::Receiver<Control>,
    commands: mpsc::WeakSender<Command>,
    events: mpsc::Sender<MediaEvent>,
    counters: Arc<Counters>,
) {
    let mut buffer = [0u8; RECEIVE_BUFFER];
    let mut core = ReceiveCore::new();
    let mut bridged: Option<BridgedLeg> = None;
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
                core.relay_to(outbound);
                bridged = Some(BridgedLeg { socket, shared });
                continue;
            }
            Input::Control(Control::Release) => {
                core.release();
                bridged = None;
                continue;
            }
            Input::Error(e) => {
                tracing::trace!(call = call.0, error = %e, "RTP receive error");
                tokio::task::yield_now().await;
                continue;
            }
        };
        if shared.relatch.load(Ordering::Relaxed) {
            shared.relatch.store(false, Ordering::Relaxed);
            core.relatch();
        }
        let Some(datagram) = buffer.get_mut(..len) else {
            continue;
        };
        let types = shared.payload_types();
        let Some(received) = core.handle_packet(Instant::now, source, datagram, types) else {
            continue;
        };
        shared.received.fetch_add(1, Ordering::Relaxed);
        counters.received.fetch_add(1, Ordering::Relaxed);
        if let Some(source) = received.latch {
            if let Some(commands) = commands.upgrade() {
                if commands.try_send(Command::Latch { call, source }).is_err() {
                    counters.overflows.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let (Some(forward), Some(leg)) = (received.forward, bridged.as_ref()) {
            leg.send(datagram, forward, &counters);
        }
        if let Some(digit) = received.digit {
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
