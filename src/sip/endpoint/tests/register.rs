//! REGISTER parsing and answers, and what an INVITE exposes for digest checks.

use super::*;

fn phone() -> SocketAddr {
    "127.0.0.1:40500".parse().unwrap()
}

fn register(branch: &str, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.1.2.3:5062;branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Agent Seven\" <sip:agent7@127.0.0.1:5060>;tag=reg-tag\r\n\
         To: \"Agent Seven\" <sip:agent7@127.0.0.1:5060>\r\n\
         Call-ID: reg-1@10.1.2.3\r\n\
         CSeq: {cseq} REGISTER\r\n\
         User-Agent: Linphone/5.2\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn only_register(h: &mut Harness) -> RegisterRequest {
    match h.events().as_slice() {
        [SipEvent::Register(r)] => r.clone(),
        other => panic!("expected one Register, got {other:?}"),
    }
}

const AUTH: &str = "Digest username=\"agent7\", realm=\"hotline\", nonce=\"abc\", uri=\"sip:127.0.0.1:5060\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5";

#[test]
fn register_challenge_then_ok() {
    let mut h = Harness::new(10);
    let first = register(
        "z9hG4bK-reg-1",
        1,
        "Contact: <sip:agent7@10.1.2.3:5062;transport=udp>;expires=600;+sip.instance=\"<urn:uuid:1>\"\r\nExpires: 3600\r\n",
    );
    h.feed_from(0, Transport::Udp, phone(), &first);
    assert!(
        h.sent().is_empty(),
        "the registrar answers, not the endpoint"
    );
    let r = only_register(&mut h);
    assert_eq!(r.source, phone());
    assert_eq!(r.transport, Transport::Udp);
    assert_eq!(
        (r.to_user.as_str(), r.from_user.as_str()),
        ("agent7", "agent7")
    );
    assert_eq!(r.aor, "sip:agent7@127.0.0.1:5060");
    assert_eq!(r.call_id, "reg-1@10.1.2.3");
    assert_eq!(r.cseq, 1);
    assert_eq!(r.expires, Some(3600));
    assert!(!r.wildcard);
    assert_eq!(
        r.contacts,
        vec![RegisterContact {
            uri: "sip:agent7@10.1.2.3:5062;transport=udp".into(),
            expires: Some(600),
            value: "<sip:agent7@10.1.2.3:5062;transport=udp>;expires=600;+sip.instance=\"<urn:uuid:1>\"".into(),
        }]
    );
    assert_eq!(r.authorization, None);
    assert_eq!(
        (r.method.as_str(), r.request_uri.as_str()),
        ("REGISTER", "sip:127.0.0.1:5060")
    );
    assert_eq!(r.user_agent.as_deref(), Some("Linphone/5.2"));

    let challenge = "Digest realm=\"hotline\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"";
    h.ep.respond_register(
        h.at(5),
        r.handle,
        401,
        vec![("WWW-Authenticate".into(), challenge.into())],
    );
    let sent = h.sent_to();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, phone(), "rport: back to where it came from");
    let tag = to_tag_of(&sent[0].1);
    assert_eq!(
        sent[0].1,
        format!(
            "SIP/2.0 401 Unauthorized\r\n\
             Via: SIP/2.0/UDP 10.1.2.3:5062;branch=z9hG4bK-reg-1;rport=40500;received=127.0.0.1\r\n\
             From: \"Agent Seven\" <sip:agent7@127.0.0.1:5060>;tag=reg-tag\r\n\
             To: \"Agent Seven\" <sip:agent7@127.0.0.1:5060>;tag={tag}\r\n\
             Call-ID: reg-1@10.1.2.3\r\n\
             CSeq: 1 REGISTER\r\n\
             WWW-Authenticate: {challenge}\r\n\
             Server: hotline-test\r\n\
             Content-Length: 0\r\n\r\n"
        )
    );
    // A retransmission gets the same answer and no new event; a second answer is ignored.
    h.feed_from(300, Transport::Udp, phone(), &first);
    assert_eq!(h.sent(), vec![sent[0].1.clone()]);
    assert!(h.events().is_empty());
    h.ep.respond_register(h.at(301), r.handle, 200, Vec::new());
    assert!(h.sent().is_empty());

    let second = register(
        "z9hG4bK-reg-2",
        2,
        &format!("Contact: <sip:agent7@10.1.2.3:5062;transport=udp>\r\nAuthorization: {AUTH}\r\n"),
    );
    h.feed_from(400, Transport::Udp, phone(), &second);
    let r = only_register(&mut h);
    assert_eq!(r.cseq, 2);
    assert_eq!(r.expires, None);
    assert_eq!(r.contacts[0].expires, None);
    assert_eq!(r.authorization.as_deref(), Some(AUTH));
    h.ep.respond_register(
        h.at(401),
        r.handle,
        200,
        vec![
            (
                "Contact".into(),
                "<sip:agent7@10.1.2.3:5062;transport=udp>;expires=600".into(),
            ),
            ("Date".into(), "Sat, 13 Nov 2010 23:29:00 GMT".into()),
            ("X-Evil".into(), "a\r\nInjected: 1".into()),
            ("CSeq".into(), "99 REGISTER".into()),
        ],
    );
    let ok = h.last_sent();
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    assert!(ok.contains(
        "\r\nContact: <sip:agent7@10.1.2.3:5062;transport=udp>;expires=600\r\nDate: Sat, 13 Nov 2010 23:29:00 GMT\r\nServer: hotline-test\r\n"
    ));
    assert!(!ok.contains("Injected") && !ok.contains("X-Evil") && !ok.contains("99 REGISTER"));
    assert_eq!(h.requests("REGISTER"), 3);
    assert_eq!(h.responses(401), 1);
    assert_eq!(h.responses(200), 1);
    h.run_until(60_000);
    assert_eq!(h.ep.transaction_count(), 0);
}

#[test]
fn register_wildcard_query_and_other_answers() {
    let mut h = Harness::new(10);
    h.feed_from(
        0,
        Transport::Tcp,
        phone(),
        &register("z9hG4bK-w", 3, "Contact: *\r\nExpires: 0\r\n"),
    );
    let r = only_register(&mut h);
    assert!(r.wildcard);
    assert!(r.contacts.is_empty());
    assert_eq!((r.expires, r.transport), (Some(0), Transport::Tcp));
    h.ep.respond_register(h.at(1), r.handle, 200, Vec::new());
    assert!(h.sent()[0].starts_with("SIP/2.0 200 OK\r\n"));

    // No Contact: a query of the bindings.
    h.feed_from(10, Transport::Udp, phone(), &register("z9hG4bK-q", 4, ""));
    let r = only_register(&mut h);
    assert!(r.contacts.is_empty() && !r.wildcard);
    h.ep.respond_register(
        h.at(11),
        r.handle,
        423,
        vec![("Min-Expires".into(), "60".into())],
    );
    let sent = h.last_sent();
    assert!(sent.starts_with("SIP/2.0 423 "));
    assert!(sent.contains("\r\nMin-Expires: 60\r\n"));

    h.feed_from(
        20,
        Transport::Udp,
        phone(),
        &register(
            "z9hG4bK-f",
            5,
            "Contact: <sip:a@b>, <sip:a@c>;expires=4294967296\r\n",
        ),
    );
    let r = only_register(&mut h);
    assert_eq!(r.contacts.len(), 2);
    assert_eq!(
        r.contacts[1].expires,
        Some(u32::MAX),
        "RFC 3261 20.19: capped"
    );
    h.ep.respond_register(
        h.at(21),
        r.handle,
        503,
        vec![("Retry-After".into(), "30".into())],
    );
    assert!(h.last_sent().contains("\r\nRetry-After: 30\r\n"));
    h.feed_from(30, Transport::Udp, phone(), &register("z9hG4bK-x", 6, ""));
    let r = only_register(&mut h);
    h.ep.respond_register(h.at(31), r.handle, 42, Vec::new());
    assert!(
        h.last_sent().starts_with("SIP/2.0 500 "),
        "nonsense codes become 500"
    );
}

#[test]
fn malformed_register_gets_400_from_the_endpoint() {
    for extra in [
        "Expires: soon\r\n",
        "Contact: <sip:a@b>;expires=-1\r\n",
        "Contact: <sip:a@b>;expires\r\n",
        "Contact: garbage\r\n",
    ] {
        let mut h = Harness::new(10);
        h.feed_from(0, Transport::Udp, phone(), &register("z9hG4bK-m", 1, extra));
        let sent = h.sent();
        assert!(
            sent[0].starts_with("SIP/2.0 400 Bad Request\r\n"),
            "{extra}"
        );
        assert!(h.events().is_empty(), "{extra}");
    }
    let mut h = Harness::new(10);
    let many: String = (0..17)
        .map(|i| format!("Contact: <sip:a{i}@b>\r\n"))
        .collect();
    h.feed_from(
        0,
        Transport::Udp,
        phone(),
        &register("z9hG4bK-many", 1, &many),
    );
    assert!(h.sent()[0].starts_with("SIP/2.0 400 "));
}

#[test]
fn unanswered_registers_are_bounded_and_forgotten() {
    let mut h = Harness::new(0);
    // max_calls 0: room for 64 waiting REGISTERs, then 503.
    for i in 0..64 {
        h.feed_from(
            0,
            Transport::Udp,
            phone(),
            &register(&format!("z9hG4bK-b{i}"), 1, ""),
        );
    }
    assert_eq!(h.events().len(), 64);
    assert!(h.sent().is_empty());
    h.feed_from(0, Transport::Udp, phone(), &register("z9hG4bK-b64", 1, ""));
    let sent = h.sent();
    assert!(sent[0].starts_with("SIP/2.0 503 "));
    assert!(sent[0].contains("\r\nRetry-After: 5\r\n"));
    // Never answered: gone with their transactions after 64*T1.
    h.run_until(40_000);
    assert_eq!(h.ep.transaction_count(), 0);
    h.feed_from(
        40_000,
        Transport::Udp,
        phone(),
        &register("z9hG4bK-again", 2, ""),
    );
    let r = only_register(&mut h);
    assert_eq!(r.handle, RegisterHandle(65));
}

#[test]
fn invite_exposes_request_uri_and_authorization() {
    let mut h = Harness::new(10);
    let inv = invite("feature@phone", "z9hG4bK-feat", Some(SDP))
        .replace("INVITE sip:22334455@", "INVITE sip:*1@")
        .replace(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\nAuthorization: {AUTH}\r\n"),
        );
    h.feed(0, &inv);
    let c = h.incoming();
    assert_eq!(c.request_uri, "sip:*1@127.0.0.1:5060");
    assert_eq!(c.dialled, "*1");
    assert_eq!(c.authorization.as_deref(), Some(AUTH));
    h.sent();
    h.ep.reject_with(
        h.at(1),
        c.call,
        401,
        vec![(
            "WWW-Authenticate".into(),
            "Digest realm=\"hotline\", nonce=\"n\"".into(),
        )],
    );
    let sent = h.last_sent();
    assert!(sent.starts_with("SIP/2.0 401 Unauthorized\r\n"));
    assert!(sent.contains("\r\nWWW-Authenticate: Digest realm=\"hotline\", nonce=\"n\"\r\n"));
    assert_eq!(h.ep.call_count(), 0);
    let plain = invite("plain@phone", "z9hG4bK-plain", None);
    h.feed(10, &plain);
    let c = h.incoming();
    assert_eq!(c.authorization, None);
    assert_eq!(c.request_uri, "sip:22334455@127.0.0.1:5060");
}
