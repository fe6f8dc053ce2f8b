//! RTP datagrams and RFC 4733 payloads must not panic: the parsers, and the
//! detector that turns a stream of telephone-event packets into key presses.
//! The input is a stream of datagrams, each a length byte then that many
//! bytes. A datagram received twice (a duplicate) never makes a second press.
#![no_main]

use hotline::media::{dtmf, rtp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut detector = dtmf::DtmfDetector::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (datagram, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
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
