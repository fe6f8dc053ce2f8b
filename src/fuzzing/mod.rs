//! What the fuzz targets run, in one place so that `tests/fuzz_smoke.rs`
//! replays the checked-in seeds through exactly the same code as
//! `cargo fuzz` does. Not part of the service.

use crate::ids::CallId;
use crate::media::pacer::Outbound;
use crate::media::receive::{PayloadTypes, ReceiveCore};
use crate::media::{dtmf, rtp, Codec};
use std::time::Instant;

/// Key presses found in one input, by the detector and by the receive core.
#[derive(Debug, Default, Clone, Copy)]
pub struct Presses {
    pub detector: usize,
    pub receive_core: usize,
}

/// RTP datagrams framed by a length byte, one stream: the parsers, the
/// RFC 4733 detector and a leg's receive core (bridged from the third
/// datagram on) must not panic, and a duplicate never presses twice.
pub fn rtp_dtmf(data: &[u8]) -> Presses {
    let mut presses = Presses::default();
    let mut detector = dtmf::DtmfDetector::new();
    let mut core = ReceiveCore::new();
    let types = PayloadTypes {
        codec: 0,
        event: Some(101),
    };
    let now = Instant::now();
    let source = std::net::SocketAddr::from(([192, 0, 2, 1], 4000));
    let mut rest = data;
    let mut index = 0;
    while let Some((&len, tail)) = rest.split_first() {
        let (datagram, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        index += 1;
        if index == 3 {
            core.relay_to(Outbound {
                call: CallId(2),
                ssrc: 7,
                sequence: 0,
                timestamp: 0,
                due: now,
                destination: Some(source),
                codec: Codec::Pcma,
                telephone_event_pt: Some(96),
            });
        }
        let mut bytes = datagram.to_vec();
        if let Some(received) = core.handle_packet(|| now, source, &mut bytes, types) {
            if let Some(forward) = received.forward {
                assert!(bytes.get(forward.packet).is_some());
            }
            presses.receive_core += usize::from(received.digit.is_some());
            let mut again = datagram.to_vec();
            let twice = core.handle_packet(|| now, source, &mut again, types);
            assert_eq!(twice.and_then(|r| r.digit), None);
        }
        let _ = rtp::locate(datagram);
        if let Some(event) = dtmf::TelephoneEvent::parse(datagram) {
            let _ = dtmf::event_to_digit(event.event);
        }
        if let Ok(packet) = rtp::parse(datagram) {
            let (ssrc, ts) = (packet.header.ssrc, packet.header.timestamp);
            presses.detector += usize::from(detector.on_packet(ssrc, ts, packet.payload).is_some());
            assert_eq!(detector.on_packet(ssrc, ts, packet.payload), None);
        }
    }
    presses
}
