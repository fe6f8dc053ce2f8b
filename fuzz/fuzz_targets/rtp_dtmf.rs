//! RTP datagrams and RFC 4733 payloads must not panic.
#![no_main]

use hotline::media::{dtmf, rtp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rtp::locate(data);
    if let Ok(packet) = rtp::parse(data) {
        let _ = dtmf::TelephoneEvent::parse(packet.payload);
    }
    if let Some(event) = dtmf::TelephoneEvent::parse(data) {
        let _ = dtmf::event_to_digit(event.event);
    }
});
