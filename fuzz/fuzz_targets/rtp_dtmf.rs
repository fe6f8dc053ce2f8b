//! RTP datagrams and RFC 4733 payloads must not panic: the parsers, the
//! detector that turns a stream of telephone-event packets into key presses,
//! and a leg's whole receive core (latching, digits, the relay, bridged from
//! the third datagram on). The input is a stream of datagrams, each a length
//! byte then that many bytes. A datagram received twice (a duplicate) never
//! makes a second press.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hotline::fuzzing::rtp_dtmf(data);
});
