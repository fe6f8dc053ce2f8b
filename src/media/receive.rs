//! What one leg's received RTP means, sans IO: symmetric-RTP latching, RFC
//! 4733 key presses, and the relay into the bridged leg's stream.
//!
//! [`ReceiveCore`] takes one datagram at a time, with the clock and the
//! address it came from, and says what to do: where to send from now on, which
//! key was pressed, what to send to the other leg. The leg's receive task in
//! the engine reads the socket, asks the core and does what it says. Nothing
//! here allocates, locks or reads a clock of its own, so the rules are tested
//! with a fake clock and crafted packets.
//!
//! Whether the far end still sends at all is not decided per packet: the
//! pacer's housekeeping applies [`super::liveness::Liveness`] to every leg's
//! packet count once a second, one clock and no timer per call.

use super::bridge::{Relay, Relayed};
use super::dtmf::{DtmfDetector, EventRelayGate};
use super::pacer::Outbound;
use super::rtp;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

/// The payload types a leg negotiated, as each packet is judged against them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadTypes {
    /// The audio codec's (0 PCMU, 8 PCMA).
    pub codec: u8,
    /// RFC 4733 telephone-event, if negotiated.
    pub event: Option<u8>,
}

/// Send `buffer[packet]` to `destination` on the bridged leg's socket, once
/// its sequence number is written (`bridge::set_sequence`): the relay's
/// numbering is shared with the pacer, so the shell owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub destination: SocketAddr,
    pub packet: Range<usize>,
}

/// What to do about one received RTP packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Media of this leg's own payload types came from `source`, the first
    /// since the leg was opened or its SDP address changed: send there from
    /// now on (the pacer keeps the SDP address if it is the same one).
    pub latch: Option<SocketAddr>,
    /// A key was pressed: reported once per press, at its first packet.
    pub digit: Option<char>,
    /// The packet, rewritten in place for the bridged leg's stream.
    pub forward: Option<Forward>,
}

/// The receive decisions of one leg.
#[derive(Debug, Default)]
pub struct ReceiveCore {
    detector: DtmfDetector,
    gate: EventRelayGate,
    latched: bool,
    relay: Option<Relay>,
}

/// Whether anything can be sent to `source`: a forged or raw-socket source
/// (port 0, an unspecified address) must not take the latch from the real one.
fn sendable(source: SocketAddr) -> bool {
    source.port() != 0 && !source.ip().is_unspecified()
}

impl ReceiveCore {
    pub fn new() -> ReceiveCore {
        ReceiveCore::default()
    }

    /// The SDP address changed: the next packet latches again.
    pub fn relatch(&mut self) {
        self.latched = false;
    }

    /// The leg is bridged: relay what it receives into `target`'s stream. The
    /// same target again (new address, codec or hold) keeps the relay's clock.
    pub fn relay_to(&mut self, target: Outbound) {
        match self.relay.as_mut() {
            Some(relay) if relay.target().call == target.call => relay.retarget(target),
            _ => self.relay = Some(Relay::new(target)),
        }
    }

    /// The bridge ended: relay nothing more.
    pub fn release(&mut self) {
        self.relay = None;
    }

    pub fn is_bridged(&self) -> bool {
        self.relay.is_some()
    }

    /// Judges one datagram received from `source`. `None` when it is not RTP
    /// (ignored, not counted as media). A packet to relay is rewritten in
    /// `buffer`. `now` gives the time; it is asked only when the time matters
    /// (relaying, where a new source is anchored to the other leg's clock), so
    /// the packets of a leg that is not bridged cost no clock read.
    pub fn handle_packet(
        &mut self,
        now: impl FnOnce() -> Instant,
        source: SocketAddr,
        buffer: &mut [u8],
        types: PayloadTypes,
    ) -> Option<Received> {
        let located = rtp::locate(buffer).ok()?;
        let (ssrc, timestamp) = (located.header.ssrc, located.header.timestamp);
        let pt = located.header.payload_type;
        let is_event = types.event == Some(pt);
        let mut out = Received::default();
        if (is_event || pt == types.codec) && !self.latched && sendable(source) {
            self.latched = true;
            out.latch = Some(source);
        }
        // Only events that started while bridged cross the bridge.
        let mut pass = true;
        if is_event {
            if let Some(payload) = buffer.get(located.payload.clone()) {
                out.digit = self.detector.on_packet(ssrc, timestamp, payload);
            }
            pass = self.gate.relay(ssrc, timestamp, self.relay.is_some());
        }
        if let Some(relay) = self.relay.as_mut().filter(|_| pass) {
            if let Some(destination) = relay.target().destination {
                let rewritten =
                    relay.rewrite(buffer, &located.header, located.payload, types.event, now());
                if let Relayed::Send(packet) = rewritten {
                    out.forward = Some(Forward {
                        destination,
                        packet,
                    });
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::tests::SIPP_DIGIT_2;
    use crate::media::g711;
    use crate::media::Codec;
    use std::time::Duration;

    const TYPES: PayloadTypes = PayloadTypes {
        codec: 8,
        event: Some(101),
    };

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    fn audio(k: u16) -> Vec<u8> {
        rtp::datagram(8, k, 160 * u32::from(k), 0x1111, &[0xD5; 160])
    }

    fn agent_leg(due: Instant) -> Outbound {
        crate::media::bridge::tests::target(Codec::Pcmu, Some(96), due)
    }

    /// Feeds one datagram from `source`.
    fn feed(
        core: &mut ReceiveCore,
        now: Instant,
        source: &str,
        mut bytes: Vec<u8>,
    ) -> (Option<Received>, Vec<u8>) {
        let received = core.handle_packet(|| now, addr(source), &mut bytes, TYPES);
        (received, bytes)
    }

    #[test]
    fn latches_to_the_first_source_of_its_own_media_until_the_address_changes() {
        let t0 = Instant::now();
        let mut core = ReceiveCore::new();
        // Not RTP, or RTP of a payload type this leg did not negotiate: no latch.
        assert_eq!(feed(&mut core, t0, "192.0.2.1:4000", vec![1, 2, 3]).0, None);
        let (other, _) = feed(
            &mut core,
            t0,
            "192.0.2.1:4000",
            rtp::datagram(0, 1, 0, 9, &[0xFF; 160]),
        );
        assert_eq!(other.expect("rtp").latch, None);
        // A forged source no one can send to does not take the latch.
        for forged in ["192.0.2.2:0", "0.0.0.0:4000"] {
            assert_eq!(
                feed(&mut core, t0, forged, audio(1)).0.expect("rtp").latch,
                None
            );
        }
        // The first packet of our codec latches; later sources do not.
        let (first, _) = feed(&mut core, t0, "198.51.100.7:31000", audio(2));
        assert_eq!(first.expect("rtp").latch, Some(addr("198.51.100.7:31000")));
        for source in ["198.51.100.7:31000", "198.51.100.8:5000"] {
            assert_eq!(
                feed(&mut core, t0, source, audio(3)).0.expect("rtp").latch,
                None
            );
        }
        // A new SDP address: the next packet of ours latches again, an event too.
        core.relatch();
        let event = rtp::datagram(101, 4, 640, 0x1111, &[1, 0x0A, 0, 160]);
        let (again, _) = feed(&mut core, t0, "198.51.100.8:5000", event);
        assert_eq!(again.expect("rtp").latch, Some(addr("198.51.100.8:5000")));
        assert_eq!(
            feed(&mut core, t0, "198.51.100.9:1", audio(5))
                .0
                .expect("rtp")
                .latch,
            None
        );
    }

    #[test]
    fn a_key_press_is_one_digit_whatever_its_retransmissions() {
        let t0 = Instant::now();
        let mut core = ReceiveCore::new();
        let types = PayloadTypes {
            codec: 0,
            event: Some(101),
        };
        let digits: Vec<char> = SIPP_DIGIT_2
            .iter()
            .enumerate()
            .filter_map(|(k, p)| {
                let mut bytes = p.to_vec();
                let now = t0 + Duration::from_millis(20 * k as u64);
                core.handle_packet(|| now, addr("192.0.2.1:4000"), &mut bytes, types)
                    .expect("rtp")
                    .digit
            })
            .collect();
        assert_eq!(digits, ['2']);
        // The same packets sent again later (a duplicated stream): no second digit.
        let mut end = SIPP_DIGIT_2[9].to_vec();
        let again = core.handle_packet(|| t0, addr("192.0.2.1:4000"), &mut end, types);
        assert_eq!(again.expect("rtp").digit, None);
        // Without telephone-event negotiated, the same packets are no key press.
        let mut plain = ReceiveCore::new();
        let none = PayloadTypes {
            codec: 0,
            event: None,
        };
        for p in &SIPP_DIGIT_2 {
            let mut bytes = p.to_vec();
            let got = plain.handle_packet(|| t0, addr("192.0.2.1:4000"), &mut bytes, none);
            assert_eq!(got.expect("rtp").digit, None);
        }
    }

    #[test]
    fn bridged_every_packet_goes_to_the_other_leg_rewritten() {
        let t0 = Instant::now();
        let mut core = ReceiveCore::new();
        assert_eq!(
            feed(&mut core, t0, "192.0.2.1:4000", audio(1))
                .0
                .expect("rtp")
                .forward,
            None
        );
        core.relay_to(agent_leg(t0));
        assert!(core.is_bridged());
        for k in 2..6u16 {
            let now = t0 + Duration::from_millis(20 * u64::from(k));
            let (received, bytes) = feed(&mut core, now, "192.0.2.1:4000", audio(k));
            let forward = received.expect("rtp").forward.expect("relayed");
            assert_eq!(forward.destination, addr("127.0.0.1:4000"));
            let sent = rtp::parse(&bytes[forward.packet]).expect("rtp");
            assert_eq!(sent.header.ssrc, 0x5150_5150);
            // The first packet is anchored to the other leg's clock at that
            // moment (1,000 at t0, 8 samples a millisecond); the rest follow it.
            assert_eq!(sent.header.timestamp, 1_000 + 160 * u32::from(k));
            assert_eq!(sent.header.payload_type, 0, "A-law in, μ-law out");
            assert!(sent
                .payload
                .iter()
                .all(|&b| g711::ulaw_to_linear(b).abs() <= 16));
        }
        // An event goes across with the other leg's type.
        let (received, bytes) = feed(
            &mut core,
            t0,
            "192.0.2.1:4000",
            rtp::datagram(101, 9, 2000, 0x1111, &[5, 0x0A, 0, 160]),
        );
        let received = received.expect("rtp");
        assert_eq!(received.digit, Some('5'));
        let forward = received.forward.expect("relayed");
        assert_eq!(
            rtp::parse(&bytes[forward.packet])
                .expect("rtp")
                .header
                .payload_type,
            96
        );
        // The other leg on hold: nothing to send it. Released: nothing relayed.
        core.relay_to(Outbound {
            destination: None,
            ..agent_leg(t0)
        });
        assert_eq!(
            feed(&mut core, t0, "192.0.2.1:4000", audio(10))
                .0
                .expect("rtp")
                .forward,
            None
        );
        core.relay_to(agent_leg(t0));
        assert!(feed(&mut core, t0, "192.0.2.1:4000", audio(11))
            .0
            .expect("rtp")
            .forward
            .is_some());
        core.release();
        assert!(!core.is_bridged());
        assert_eq!(
            feed(&mut core, t0, "192.0.2.1:4000", audio(12))
                .0
                .expect("rtp")
                .forward,
            None
        );
    }

    #[test]
    fn the_key_press_that_opened_the_bridge_never_crosses_it() {
        let t0 = Instant::now();
        let mut core = ReceiveCore::new();
        let types = PayloadTypes {
            codec: 0,
            event: Some(101),
        };
        let fed = |core: &mut ReceiveCore, p: &[u8]| {
            let mut bytes = p.to_vec();
            core.handle_packet(|| t0, addr("192.0.2.1:4000"), &mut bytes, types)
                .expect("rtp")
        };
        // The press starts while the caller waits; the bridge opens during it.
        let (before, after) = SIPP_DIGIT_2.split_at(2);
        let digits: Vec<char> = before
            .iter()
            .filter_map(|p| fed(&mut core, p).digit)
            .collect();
        assert_eq!(digits, ['2']);
        core.relay_to(agent_leg(t0));
        for p in after {
            let received = fed(&mut core, p);
            assert_eq!(received.digit, None);
            assert_eq!(received.forward, None, "the agent never hears it");
        }
        // The next press is the caller talking to the agent: it crosses, all of it.
        let later: Vec<Vec<u8>> = SIPP_DIGIT_2
            .iter()
            .map(|p| {
                let mut next = p.to_vec();
                next[4..8].copy_from_slice(&(0x5aa0_u32 + 8000).to_be_bytes());
                next
            })
            .collect();
        let crossed = later
            .iter()
            .filter(|p| fed(&mut core, p).forward.is_some())
            .count();
        assert_eq!(crossed, SIPP_DIGIT_2.len());
    }
}
