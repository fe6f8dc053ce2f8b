//! Relaying one leg's RTP into another leg's stream, sans IO.
//!
//! Each leg keeps its own SSRC, sequence and timestamp space towards its peer,
//! so the relay rewrites the header of every packet instead of passing it on:
//! the SSRC becomes the target stream's, the timestamp is moved into the target
//! stream's clock (one offset per incoming SSRC), and the payload type becomes
//! the target's. G.711 is transcoded per sample through a table when the two
//! legs' laws differ; RFC 4733 events pass through unchanged. Everything
//! happens in the receive buffer: nothing is allocated per packet.

use super::g711::{ALAW_TO_ULAW, ULAW_TO_ALAW};
use super::pacer::Outbound;
use super::rtp::{self, RtpHeader};
use super::Codec;
use std::ops::Range;
use std::time::Instant;

/// What the relay did with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    /// Send `buffer[range]` once its sequence number is written (bytes 2-3 of the range).
    Send(Range<usize>),
    /// Not for the other leg: an unknown payload type, or an event the other
    /// leg did not negotiate.
    Drop,
}

/// The relay of one direction: media received on one leg, sent on the other.
#[derive(Debug, Clone)]
pub struct Relay {
    target: Outbound,
    /// Incoming SSRC and what to add to its timestamps.
    timing: Option<(u32, u32)>,
}

impl Relay {
    pub fn new(target: Outbound) -> Relay {
        Relay {
            target,
            timing: None,
        }
    }

    /// The target stream changed (address, codec, hold); its clock did not.
    pub fn retarget(&mut self, target: Outbound) {
        self.target = target;
    }

    pub fn target(&self) -> &Outbound {
        &self.target
    }

    /// Rewrites the packet whose header is `header` and whose payload is
    /// `buffer[payload]` for the target stream. `incoming_event_pt` is the
    /// receiving leg's telephone-event payload type.
    pub fn rewrite(
        &mut self,
        buffer: &mut [u8],
        header: &RtpHeader,
        payload: Range<usize>,
        incoming_event_pt: Option<u8>,
        now: Instant,
    ) -> Relayed {
        let pt = header.payload_type;
        let incoming_codec = match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        };
        let out_pt = match incoming_codec {
            Some(codec) => {
                let table = match (codec, self.target.codec) {
                    (Codec::Pcmu, Codec::Pcma) => Some(&ULAW_TO_ALAW),
                    (Codec::Pcma, Codec::Pcmu) => Some(&ALAW_TO_ULAW),
                    _ => None,
                };
                if let (Some(table), Some(samples)) = (table, buffer.get_mut(payload.clone())) {
                    for sample in samples {
                        *sample = table[usize::from(*sample)];
                    }
                }
                self.target.codec.payload_type()
            }
            None if Some(pt) == incoming_event_pt => match self.target.telephone_event_pt {
                Some(out) => out,
                None => return Relayed::Drop,
            },
            None => return Relayed::Drop,
        };
        let mut marker = header.marker;
        let offset = match self.timing {
            Some((ssrc, offset)) if ssrc == header.ssrc => offset,
            _ => {
                // A new source: its clock starts where the target's is now,
                // and the jump is marked.
                let offset = self.target.timestamp_at(now).wrapping_sub(header.timestamp);
                self.timing = Some((header.ssrc, offset));
                marker = true;
                offset
            }
        };
        let Some(start) = payload.start.checked_sub(rtp::HEADER_LEN) else {
            return Relayed::Drop;
        };
        let out = RtpHeader {
            marker,
            payload_type: out_pt,
            sequence: 0,
            timestamp: header.timestamp.wrapping_add(offset),
            ssrc: self.target.ssrc,
        };
        match buffer
            .get_mut(start..payload.start)
            .and_then(|slot| out.write(slot))
        {
            Some(_) => Relayed::Send(start..payload.end),
            None => Relayed::Drop,
        }
    }
}

/// Writes the sequence number into a packet `rewrite` prepared.
pub fn set_sequence(packet: &mut [u8], sequence: u16) {
    if let Some(bytes) = packet.get_mut(2..4) {
        bytes.copy_from_slice(&sequence.to_be_bytes());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::CallId;
    use crate::media::g711;
    use std::time::Duration;

    /// The agent's leg of a bridge, as the relay into it sees it.
    pub(crate) fn target(codec: Codec, telephone_event_pt: Option<u8>, due: Instant) -> Outbound {
        Outbound {
            call: CallId(2),
            ssrc: 0x5150_5150,
            sequence: 7,
            timestamp: 1_000,
            due,
            destination: Some("127.0.0.1:4000".parse().expect("addr")),
            codec,
            telephone_event_pt,
        }
    }

    fn packet(pt: u8, ssrc: u32, timestamp: u32, csrcs: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; rtp::HEADER_LEN];
        RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: 99,
            timestamp,
            ssrc,
        }
        .write(&mut bytes);
        bytes[0] |= csrcs;
        bytes.extend(std::iter::repeat_n(0xEE, 4 * usize::from(csrcs)));
        bytes.extend_from_slice(payload);
        bytes
    }

    fn run(
        relay: &mut Relay,
        bytes: &mut [u8],
        event_pt: Option<u8>,
        now: Instant,
    ) -> Option<Vec<u8>> {
        let located = rtp::locate(bytes).expect("rtp");
        match relay.rewrite(bytes, &located.header, located.payload, event_pt, now) {
            Relayed::Send(range) => Some(bytes[range].to_vec()),
            Relayed::Drop => None,
        }
    }

    #[test]
    fn transcodes_and_moves_the_packet_into_the_target_stream() {
        let t0 = Instant::now();
        let mut relay = Relay::new(target(Codec::Pcma, Some(101), t0));
        let levels: Vec<u8> = [0i16, 1000, -1000, 20000]
            .iter()
            .map(|&s| g711::linear_to_ulaw(s))
            .collect();
        // A CSRC is dropped with the old header.
        let mut bytes = packet(0, 0xAAAA, 50_000, 1, &levels);
        let out = run(
            &mut relay,
            &mut bytes,
            Some(96),
            t0 + Duration::from_millis(5),
        )
        .expect("sent");
        let parsed = rtp::parse(&out).expect("rtp");
        assert_eq!(parsed.header.payload_type, 8);
        assert_eq!(parsed.header.ssrc, 0x5150_5150);
        assert_eq!(parsed.header.timestamp, 1_040);
        assert!(parsed.header.marker);
        assert_eq!(parsed.csrc_count, 0);
        for (&a, &u) in parsed.payload.iter().zip(&levels) {
            let (a, u) = (g711::alaw_to_linear(a), g711::ulaw_to_linear(u));
            assert!((i32::from(a) - i32::from(u)).abs() <= i32::from(u).abs() / 16 + 16);
        }
        // Same source later: same offset, no marker.
        let mut next = packet(0, 0xAAAA, 50_160, 0, &levels);
        let out = run(&mut relay, &mut next, Some(96), t0 + Duration::from_secs(9)).expect("sent");
        let h = rtp::parse(&out).expect("rtp").header;
        assert_eq!((h.timestamp, h.marker), (1_200, false));
        // The same law passes unchanged.
        relay.retarget(target(Codec::Pcmu, Some(101), t0));
        let mut same = packet(0, 0xAAAA, 50_320, 0, &levels);
        let out = run(&mut relay, &mut same, Some(96), t0).expect("sent");
        assert_eq!(&out[rtp::HEADER_LEN..], &levels[..]);
        assert_eq!(rtp::parse(&out).expect("rtp").header.timestamp, 1_360);
    }

    #[test]
    fn events_take_the_other_legs_payload_type_or_are_dropped() {
        let t0 = Instant::now();
        let event = [5u8, 0x0A, 0x01, 0x40];
        let mut relay = Relay::new(target(Codec::Pcmu, Some(101), t0));
        let mut bytes = packet(96, 1, 10, 0, &event);
        let out = run(&mut relay, &mut bytes, Some(96), t0).expect("sent");
        let parsed = rtp::parse(&out).expect("rtp");
        assert_eq!(parsed.header.payload_type, 101);
        assert_eq!(parsed.payload, &event);
        // Not negotiated on the other leg, or not negotiated here, or unknown.
        relay.retarget(target(Codec::Pcmu, None, t0));
        assert_eq!(
            run(&mut relay, &mut packet(96, 1, 10, 0, &event), Some(96), t0),
            None
        );
        relay.retarget(target(Codec::Pcmu, Some(101), t0));
        assert_eq!(
            run(&mut relay, &mut packet(96, 1, 10, 0, &event), None, t0),
            None
        );
        assert_eq!(
            run(&mut relay, &mut packet(13, 1, 10, 0, &[0]), Some(96), t0),
            None
        );
        let mut sent = out.clone();
        set_sequence(&mut sent, 0xBEEF);
        assert_eq!(rtp::parse(&sent).expect("rtp").header.sequence, 0xBEEF);
    }
}
