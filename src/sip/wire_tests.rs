//! RFC 4475 torture messages (in `fixtures/rfc4475`, CRLF line ends) and framing.

use super::*;

const MAX: usize = 8192;

fn fixture(name: &str) -> &'static [u8] {
    match name {
        "wsinv" => include_bytes!("fixtures/rfc4475/wsinv.sip"),
        "esc01" => include_bytes!("fixtures/rfc4475/esc01.sip"),
        "escnull" => include_bytes!("fixtures/rfc4475/escnull.sip"),
        "intmeth" => include_bytes!("fixtures/rfc4475/intmeth.sip"),
        "ncl" => include_bytes!("fixtures/rfc4475/ncl.sip"),
        "clerr" => include_bytes!("fixtures/rfc4475/clerr.sip"),
        "unkscm" => include_bytes!("fixtures/rfc4475/unkscm.sip"),
        "badvers" => include_bytes!("fixtures/rfc4475/badvers.sip"),
        "mcl01" => include_bytes!("fixtures/rfc4475/mcl01.sip"),
        "insuf" => include_bytes!("fixtures/rfc4475/insuf.sip"),
        "lwsruri" => include_bytes!("fixtures/rfc4475/lwsruri.sip"),
        "lwsstart" => include_bytes!("fixtures/rfc4475/lwsstart.sip"),
        "trws" => include_bytes!("fixtures/rfc4475/trws.sip"),
        "mismatch01" => include_bytes!("fixtures/rfc4475/mismatch01.sip"),
        "scalarlg" => include_bytes!("fixtures/rfc4475/scalarlg.sip"),
        _ => panic!("no fixture {name}"),
    }
}

fn message(name: &str) -> Message {
    match decode(fixture(name), Framing::Datagram, MAX) {
        Decoded::Message(m) => m,
        other => panic!("{name}: expected a message, got {other:?}"),
    }
}

fn rejected(name: &str) -> (u16, Essentials) {
    match decode(fixture(name), Framing::Datagram, MAX) {
        Decoded::Reject {
            code, essentials, ..
        } => (code, essentials),
        other => panic!("{name}: expected a rejection, got {other:?}"),
    }
}

#[test]
fn wsinv_short_tortuous_invite_is_valid() {
    let m = message("wsinv");
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.to_tag().as_deref(), Some("1918181833n"));
    assert_eq!(m.from_tag().as_deref(), Some("98asjd8"));
    assert_eq!(m.header("Max-Forwards"), Some("0068"));
    assert_eq!(m.call_id(), Some("wsinv.ndaksdj@192.0.2.1"));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    // Three Via entries: one header, then a compact one holding two.
    let vias: Vec<&str> = m.headers_named("Via").collect();
    assert_eq!(vias.len(), 2);
    let top = m.top_via().unwrap();
    assert_eq!(
        (top.host.as_str(), top.branch()),
        ("192.0.2.2", Some("390skdjuw"))
    );
    let second = crate::sip::message::split_list(vias[1]);
    assert_eq!(second.len(), 2);
    assert_eq!(
        Via::parse(second[1]).unwrap().branch(),
        Some("z9hG4bK30239")
    );
    assert_eq!(m.header("Subject"), Some(""));
    assert_eq!(
        m.header("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(m.header("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    let contact = NameAddr::parse(m.header("Contact").unwrap()).unwrap();
    assert_eq!(contact.uri, "sip:jdrosen@example.com");
    assert_eq!(contact.display.as_deref(), Some("Quoted string \"\""));
    assert_eq!(m.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(m.body.len(), 150);
    // After normalisation rsip accepts what it would have refused raw.
    assert!(rsip::SipMessage::try_from(fixture("wsinv")).is_err());
    assert!(to_rsip(&m).is_some());
}

#[test]
fn esc01_escaped_uris_are_valid() {
    let m = message("esc01");
    assert_eq!(
        m.request_uri(),
        Some("sip:sips%3Auser%40example.com@example.net")
    );
    assert_eq!(
        crate::sip::message::uri_user(m.request_uri().unwrap()).as_deref(),
        Some("sips:user@example.com")
    );
    assert_eq!(m.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(m.content_type().as_deref(), Some("application/sdp"));
    let from = NameAddr::parse(m.header("From").unwrap()).unwrap();
    assert_eq!(
        crate::sip::message::uri_user(&from.uri).as_deref(),
        Some("I have spaces")
    );
}

#[test]
fn escnull_and_unknown_method_parse() {
    assert_eq!(message("escnull").method(), Some(&Method::Register));
    let m = message("intmeth");
    assert_eq!(
        m.method(),
        Some(&Method::Other(
            "!interesting-Method0123456789_*+`.%indeed'~".into()
        ))
    );
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    assert!(m.call_id().unwrap().starts_with("intmeth.word%ZK"));
}

#[test]
fn content_length_errors_get_400() {
    for name in ["ncl", "clerr", "mcl01"] {
        let (code, e) = rejected(name);
        assert_eq!(code, 400, "{name}");
        assert!(e.call_id.starts_with(name), "{name}");
    }
}

#[test]
fn start_line_errors() {
    assert_eq!(rejected("unkscm").0, 416);
    let (code, e) = rejected("badvers");
    assert_eq!(code, 505);
    assert_eq!(e.method, Some(Method::Options));
    for name in ["lwsruri", "lwsstart", "trws", "mismatch01", "scalarlg"] {
        assert_eq!(rejected(name).0, 400, "{name}");
    }
}

#[test]
fn missing_call_id_from_to_is_dropped() {
    assert!(matches!(
        decode(fixture("insuf"), Framing::Datagram, MAX),
        Decoded::Drop { .. }
    ));
}

#[test]
fn datagram_body_is_cut_at_content_length() {
    let text = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 3\r\n\r\nabcdef";
    let Decoded::Message(m) = decode(text, Framing::Datagram, MAX) else {
        panic!()
    };
    assert_eq!(m.body, b"abc");
}

#[test]
fn oversize_keepalive_and_garbage() {
    assert!(matches!(
        decode(fixture("wsinv"), Framing::Datagram, 100),
        Decoded::Drop { .. }
    ));
    assert!(matches!(
        decode(b"\r\n\r\n", Framing::Datagram, MAX),
        Decoded::KeepAlive
    ));
    assert!(matches!(
        decode(b"\x00\x01garbage\xff", Framing::Datagram, MAX),
        Decoded::Drop { .. }
    ));
    assert!(matches!(
        decode(b"", Framing::Datagram, MAX),
        Decoded::KeepAlive
    ));
    // A broken response is never answered.
    assert!(matches!(
        decode(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 99\r\n\r\n",
            Framing::Datagram,
            MAX
        ),
        Decoded::Drop { .. }
    ));
}

#[test]
fn broken_header_line_still_answered_400() {
    let text = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nthis line has no colon\r\nContent-Length: 0\r\n\r\n";
    let Decoded::Reject {
        code, essentials, ..
    } = decode(text, Framing::Datagram, MAX)
    else {
        panic!()
    };
    assert_eq!(code, 400);
    assert_eq!(essentials.call_id, "c1");
}

#[test]
fn random_bytes_never_panic() {
    let mut seed = 0x1234_5678_u64;
    let base = fixture("wsinv");
    for _ in 0..2000 {
        let mut data = base.to_vec();
        for _ in 0..8 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (seed >> 33) as usize % data.len();
            data[at] = (seed >> 13) as u8;
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        data.truncate((seed >> 40) as usize % (data.len() + 1));
        let _ = decode(&data, Framing::Datagram, MAX);
        let mut framer = StreamFramer::new(MAX);
        if framer.push(&data).is_ok() {
            while let Ok(Some(_)) = framer.pop() {}
        }
    }
}

#[test]
fn stream_framer_splits_and_skips_keepalives() {
    let one = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabc";
    let mut f = StreamFramer::new(MAX);
    f.push(b"\r\n\r\n").unwrap();
    f.push(&one[..10]).unwrap();
    assert_eq!(f.pop().unwrap(), None);
    f.push(&one[10..]).unwrap();
    f.push(b"\r\n").unwrap();
    f.push(one).unwrap();
    assert_eq!(f.pop().unwrap().as_deref(), Some(&one[..]));
    assert_eq!(f.pop().unwrap().as_deref(), Some(&one[..]));
    assert_eq!(f.pop().unwrap(), None);
    assert_eq!(f.buffered(), 0);
}

#[test]
fn stream_framer_errors() {
    let mut f = StreamFramer::new(64);
    f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    assert_eq!(f.pop(), Err(FramerError::TooLarge(64)));
    let mut f = StreamFramer::new(MAX);
    f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -5\r\n\r\n")
        .unwrap();
    assert_eq!(f.pop(), Err(FramerError::BadContentLength));
    let mut f = StreamFramer::new(16);
    f.push(&[b'x'; 20]).unwrap();
    assert_eq!(f.pop(), Err(FramerError::TooLarge(16)));
    assert!(f.push(&[b'x'; 20]).is_err());
    // Missing Content-Length on a stream means no body.
    let mut f = StreamFramer::new(MAX);
    f.push(b"OPTIONS sip:a@b SIP/2.0\r\n\r\nOPTIONS").unwrap();
    assert_eq!(
        f.pop().unwrap().as_deref(),
        Some(&b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"[..])
    );
}

#[test]
fn malformed_ack_is_never_answered() {
    let text = b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\nContent-Length: 40\r\n\r\n";
    assert!(matches!(
        decode(text, Framing::Datagram, MAX),
        Decoded::Drop { .. }
    ));
}
