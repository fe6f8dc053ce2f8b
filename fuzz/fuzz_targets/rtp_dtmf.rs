//! RTP datagrams and RFC 4733 payloads must not panic: the parsers, the
//! detector that turns a stream of telephone-event packets into key presses,
//! and a leg's whole receive core (latching, digits, the relay, bridged from
//! the third datagram on). The input is a stream of datagrams, each a length
//! byte then that many bytes. A datagram received twice (a duplicate) never
//! makes a second press.
#![no_main]

use hotline::ids::CallId;
use hotline::media::pacer::Outbound;
use hotline::media::receive::{PayloadTypes, ReceiveCore};
use hotline::media::{dtmf, rtp, Codec};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let mut detector = dtmf::DtmfDetector::new();
    let mut core = ReceiveCore::new();
    let types = PayloadTypes {
        codec: 0,
        event: Some(101),
    };
    let now = Instant::now();
    let source = "192.0.2.1:4000".parse().expect("address");
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
            let _ = detector.on_packet(ssrc, ts, packet.payload);
            assert_eq!(detector.on_packet(ssrc, ts, packet.payload), None);
        }
    }
});
