//! RTP datagrams and RFC 4733 payloads must not panic: the parsers, and the
//! detector that turns a stream of telephone-event packets into key presses.
//! The input is a stream of datagrams, each a length byte then that many
//! bytes. A datagram received twice (a duplicate) never makes a second press.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../shared/rtp_dtmf.rs"]
mod stream;

fuzz_target!(|data: &[u8]| {
    stream::feed(data);
});
