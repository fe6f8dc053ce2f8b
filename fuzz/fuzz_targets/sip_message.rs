//! Any datagram into the SIP endpoint, and the replies drained, must not panic.
#![no_main]

use hotline::sip::{EndpointConfig, SipEndpoint, Transport};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let config = EndpointConfig {
        local_addr: "127.0.0.1:5060".parse().unwrap(),
        user_agent: "hotline-fuzz".into(),
        max_message_size: 16 * 1024,
        max_calls: 16,
        max_transactions: 64,
    };
    let mut endpoint = SipEndpoint::new(config);
    let now = Instant::now();
    let peer = "127.0.0.1:5070".parse().unwrap();
    endpoint.handle_input(now, Transport::Udp, peer, data);
    endpoint.handle_input(now, Transport::Tcp, peer, data);
    while endpoint.poll_transmit().is_some() {}
    while endpoint.poll_event().is_some() {}
});
