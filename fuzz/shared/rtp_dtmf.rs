//! What the `rtp_dtmf` fuzz target does with an input, shared with
//! `tests/fuzz_smoke.rs` so that the seeds replayed on stable go through the
//! same calls.

use hotline::media::{dtmf, rtp};

/// Reads `data` as a stream of datagrams, each a length byte then that many
/// bytes, through the RTP and RFC 4733 parsers and one key-press detector;
/// asserts that a datagram received twice (a duplicate) never makes a second
/// press. Returns the number of key presses.
pub fn feed(data: &[u8]) -> usize {
    let mut detector = dtmf::DtmfDetector::new();
    let mut presses = 0;
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
            presses += usize::from(detector.on_packet(ssrc, ts, packet.payload).is_some());
            assert_eq!(detector.on_packet(ssrc, ts, packet.payload), None);
        }
    }
    presses
}
