//! Admission control at the endpoint: scanners dropped, rates limited,
//! failed digests throttled, each counted.

use super::*;
use crate::sip::admission::Rate;

fn rejected(h: &Harness, reason: Rejection) -> u64 {
    h.ep.stats().rejected_of(reason)
}

fn options(branch: &str, user_agent: &str) -> String {
    format!(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n\
         From: <sip:probe@127.0.0.1>;tag=p1\r\n\
         To: <sip:127.0.0.1:5060>\r\n\
         Call-ID: {branch}@probe\r\n\
         CSeq: 1 OPTIONS\r\n\
         User-Agent: {user_agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn limited(h: &mut Harness, rate: Rate) {
    h.ep.set_admission(AdmissionConfig {
        other_rate: rate,
        invite_rate: rate,
        register_rate: rate,
        auth_failures: 2,
        ..AdmissionConfig::default()
    });
}

#[test]
fn scanners_are_dropped_and_counted() {
    let mut h = Harness::new(10);
    limited(&mut h, Rate::UNLIMITED);
    h.feed(0, &options("z9hG4bK-s1", "friendly-scanner"));
    assert!(h.sent().is_empty());
    assert_eq!(rejected(&h, Rejection::Scanner), 1);
    h.feed(0, &options("z9hG4bK-s2", "Linphone/5.2"));
    assert!(h.sent()[0].starts_with("SIP/2.0 200"));
}

#[test]
fn over_rate_invites_get_503_and_options_are_dropped() {
    let mut h = Harness::new(10);
    limited(
        &mut h,
        Rate {
            per_second: 1.0,
            burst: 2.0,
        },
    );
    for i in 0..3 {
        h.feed(0, &options(&format!("z9hG4bK-o{i}"), "probe"));
    }
    assert_eq!(h.sent().len(), 2, "the third OPTIONS is dropped");
    for i in 0..3 {
        h.feed(
            0,
            &invite(&format!("c{i}"), &format!("z9hG4bK-i{i}"), Some(SDP)),
        );
    }
    let sent = h.sent();
    assert!(sent.iter().filter(|s| s.starts_with("SIP/2.0 100")).count() == 2);
    let refused: Vec<_> = sent
        .iter()
        .filter(|s| s.starts_with("SIP/2.0 503"))
        .collect();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].contains("Retry-After: "));
    assert_eq!(rejected(&h, Rejection::RateLimited), 2);
    // A second later there is budget again.
    h.feed(1000, &options("z9hG4bK-o9", "probe"));
    assert_eq!(h.sent().len(), 1);
}

#[test]
fn repeated_wrong_digests_block_the_account() {
    let mut h = Harness::new(10);
    limited(&mut h, Rate::UNLIMITED);
    let auth = "Authorization: Digest username=\"agent7\", realm=\"hotline\", nonce=\"n\", uri=\"sip:127.0.0.1\", response=\"00\"\r\n";
    for i in 0..2 {
        let msg = format!(
            "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-r{i}\r\n\
             From: <sip:agent7@127.0.0.1>;tag=r\r\n\
             To: <sip:agent7@127.0.0.1>\r\n\
             Call-ID: reg@probe\r\n\
             CSeq: {} REGISTER\r\n\
             Contact: <sip:agent7@127.0.0.1:5061>\r\n\
             {auth}Content-Length: 0\r\n\r\n",
            i + 1
        );
        h.feed(i * 10, &msg);
        let handle = match h.events().as_slice() {
            [SipEvent::Register(r)] => r.handle,
            other => panic!("expected a Register, got {other:?}"),
        };
        h.ep.respond_register(h.at(i * 10), handle, 401, Vec::new());
        assert!(h.sent()[0].starts_with("SIP/2.0 401"));
    }
    let third = "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.9:5061;branch=z9hG4bK-r9\r\n\
         From: <sip:agent7@127.0.0.1>;tag=r\r\n\
         To: <sip:agent7@127.0.0.1>\r\n\
         Call-ID: reg2@probe\r\n\
         CSeq: 1 REGISTER\r\n\
         Content-Length: 0\r\n\r\n";
    let elsewhere: SocketAddr = "127.0.0.9:5061".parse().unwrap();
    h.feed_from(100, Transport::Udp, elsewhere, third);
    assert!(h.events().is_empty());
    assert!(h.sent()[0].starts_with("SIP/2.0 403"));
    assert_eq!(rejected(&h, Rejection::AuthThrottled), 1);
}
