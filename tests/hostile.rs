//! Hostile and malformed SIP against the real binary on loopback: the corpus
//! in tests/sip_corpus (each message with its expected first response, or
//! "drop"), floods, and scanners. The service must answer a legitimate
//! request afterwards.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::Hotline;

fn corpus_dir() -> PathBuf {
    support::repo().join("tests").join("sip_corpus")
}

/// Fills in the placeholders and turns line ends into CRLF.
fn render(template: &str, service: SocketAddr, peer: SocketAddr, n: usize) -> Vec<u8> {
    template
        .replace("HOST", &service.to_string())
        .replace("PEER", &peer.to_string())
        .replace("BRANCH", &format!("hostile{n}"))
        .replace("CALLID", &format!("hostile-{n}@test"))
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// The status code of the first response to arrive within `wait`.
fn first_status(socket: &UdpSocket, wait: Duration) -> Option<u16> {
    socket.set_read_timeout(Some(wait)).ok()?;
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).ok()?;
    let text = String::from_utf8_lossy(buf.get(..n)?).to_string();
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn bind(ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{ip}:0")).expect("bind test socket")
}

fn options_answered(hotline: &Hotline, from_ip: &str, n: usize) -> bool {
    let socket = bind(from_ip);
    let peer = socket.local_addr().expect("addr");
    let template = std::fs::read_to_string(corpus_dir().join("options.sip")).expect("options.sip");
    socket
        .send_to(&render(&template, hotline.sip, peer, n), hotline.sip)
        .expect("send");
    first_status(&socket, Duration::from_secs(2)) == Some(200)
}

#[test]
fn corpus_messages_get_their_expected_answers() {
    let hotline = Hotline::start();
    let manifest = std::fs::read_to_string(corpus_dir().join("MANIFEST")).expect("MANIFEST");
    let mut failures = Vec::new();
    let mut cases = 0;
    for (n, line) in manifest.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(file), Some(expected)) = (parts.next(), parts.next()) else {
            panic!("bad MANIFEST line: {line}");
        };
        cases += 1;
        let template = std::fs::read_to_string(corpus_dir().join(file)).expect("corpus file");
        let socket = bind("127.0.0.1");
        let peer = socket.local_addr().expect("addr");
        socket
            .send_to(&render(&template, hotline.sip, peer, n), hotline.sip)
            .expect("send");
        let wait = if expected == "drop" {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        };
        let got = first_status(&socket, wait)
            .map(|c| c.to_string())
            .unwrap_or_else(|| "drop".to_string());
        if got != expected {
            failures.push(format!("{file}: expected {expected}, got {got}"));
        }
    }
    assert!(cases >= 10, "corpus too small");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(options_answered(&hotline, "127.0.0.1", 10_000));
    assert!(hotline.metric("hotline_sip_rejected_total{reason=\"scanner\"}") >= 1.0);
}

#[test]
fn an_options_flood_is_limited_and_others_are_still_served() {
    let hotline =
        Hotline::with_config("sip_admission:\n  other_rate: {per_second: 50, burst: 100}\n");
    let flooder = bind("127.0.0.1");
    flooder.set_nonblocking(true).expect("nonblocking");
    let peer = flooder.local_addr().expect("addr");
    let template = std::fs::read_to_string(corpus_dir().join("options.sip")).expect("options.sip");
    let started = Instant::now();
    let mut answered: u32 = 0;
    let mut buf = vec![0u8; 65536];
    for n in 0..2000 {
        flooder
            .send_to(&render(&template, hotline.sip, peer, n), hotline.sip)
            .expect("send");
        while flooder.recv(&mut buf).is_ok() {
            answered += 1;
        }
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    flooder.set_nonblocking(false).expect("blocking");
    flooder
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    while flooder.recv(&mut buf).is_ok() {
        answered += 1;
    }
    assert!(answered < 1000, "{answered} of 2000 flood OPTIONS answered");
    assert!(answered >= 100, "the burst is still answered ({answered})");
    let limited = hotline.metric("hotline_sip_rejected_total{reason=\"rate_limited\"}");
    assert!(
        // The kernel may drop part of a flood before the service sees it.
        limited >= 100.0,
        "{limited} limited, {answered} answered"
    );
    // Another source is unaffected.
    assert!(options_answered(&hotline, "127.0.0.2", 1));
    // And a call from another trusted source gets through.
    let caller = bind("127.0.0.2");
    caller
        .send_to(&invite_from(&caller, hotline.sip, "flood"), hotline.sip)
        .expect("send invite");
    assert_eq!(first_status(&caller, Duration::from_secs(2)), Some(100));
}

fn invite_from(caller: &UdpSocket, service: SocketAddr, id: &str) -> Vec<u8> {
    let me = caller.local_addr().expect("addr");
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE sip:hotline@{service} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{id};rport\r\nMax-Forwards: 70\r\nFrom: <sip:4790000000@{me}>;tag=c1\r\nTo: <sip:hotline@{service}>\r\nCall-ID: {id}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
        len = body.len()
    )
    .into_bytes()
}

#[test]
fn invites_from_untrusted_sources_are_refused() {
    let hotline = Hotline::with_config("trusted_sources: [\"127.0.0.1/32\"]\n");
    let stranger = bind("127.0.0.3");
    stranger
        .send_to(
            &invite_from(&stranger, hotline.sip, "stranger"),
            hotline.sip,
        )
        .expect("send invite");
    let mut statuses = Vec::new();
    while let Some(code) = first_status(&stranger, Duration::from_secs(2)) {
        statuses.push(code);
        if code >= 200 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&403), "{statuses:?}");
    assert!(hotline.metric("hotline_sip_rejected_total{reason=\"untrusted_source\"}") >= 1.0);
    // REGISTER and OPTIONS are still taken from anywhere.
    assert!(options_answered(&hotline, "127.0.0.3", 77));
}
