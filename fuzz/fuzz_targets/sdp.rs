//! SDP offers: parsing and negotiation must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(offer) = hotline::sdp::Offer::parse(text) {
            let _ = hotline::sdp::negotiate(&offer);
        }
    }
});
