//! End-to-end calls against the real binary on loopback, with sipp as the caller.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::rtp::{report, RtpListener};
use support::{udp_exchange, Hotline, Options};

const DTMF_2_PCAP: &str = "/usr/share/sip-tester/dtmf_2833_2.pcap";
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn en_selected() -> &'static str {
    "hotline_language_selected_total{language=\"en\"}"
}

#[test]
fn pressing_2_from_the_rfc4733_pcap_selects_english() {
    let hotline = Hotline::start();
    hotline
        .sipp("call_dtmf_pcap.xml")
        .key("dtmf_pcap", DTMF_2_PCAP)
        .duration_ms(4000)
        .run_ok();
    assert_eq!(hotline.metric(en_selected()), 1.0);
    assert_eq!(
        hotline.metric("hotline_language_selected_total{language=\"nb\"}"),
        0.0
    );
    hotline.wait_metric(
        "hotline_calls_total{outcome=\"abandoned_ivr\"}",
        1.0,
        SECS(5),
    );
    assert_eq!(hotline.metric("hotline_calls_active{stage=\"ivr\"}"), 0.0);
    assert!(hotline.metric("hotline_sip_requests_total{method=\"INVITE\"}") >= 1.0);
    assert!(hotline.metric("hotline_sip_responses_total{code=\"200\"}") >= 2.0);
    assert_eq!(hotline.count_log("language chosen"), 1);
}

/// The caller's audio: one stream, G.711 frames every 20 ms by absolute time,
/// with speech in it; then a digit pressed over RFC 4733 picks English.
fn listen_and_press_2(codecs: &str, expected_pt: u8) {
    let hotline = Hotline::start();
    let rtp = RtpListener::bind();
    let call = hotline
        .sipp("call_listen.xml")
        .key("rtp_port", rtp.port)
        .key("codecs", codecs)
        .duration_ms(9000)
        .spawn();
    // Three seconds of the welcome prompt.
    let packets = rtp.wait_packets(150, SECS(10));
    let r = report(&packets);
    assert!(r.packets >= 150, "only {} audio packets: {r:?}", r.packets);
    assert!(packets
        .iter()
        .all(|p| p.payload_type == expected_pt || p.payload_type == 101));
    assert_eq!(r.ssrcs, 1, "{r:?}");
    assert_eq!(r.seq_gaps, 0, "{r:?}");
    assert_eq!(r.bad_timestamp_steps, 0, "{r:?}");
    assert_eq!(r.wrong_size, 0, "{r:?}");
    // Pacing as a caller hears it. The test's own receive thread shares two
    // cores with everything else, so a rare late wake-up of ours is tolerated
    // here; bench/ measures the tail (p99) precisely.
    assert!(r.jitter_p50_ms < 2.0, "pacing: {r:?}");
    assert!(r.jitter_p90_ms < 10.0, "pacing: {r:?}");
    assert!(r.drift_ms.abs() < 20.0, "drift: {r:?}");
    assert!(r.audible_frames > 50, "the prompt is silent: {r:?}");

    // Press 2 from the same socket the SDP named, as a phone would.
    let server: SocketAddr = packets[0].from;
    let mut seq = 1000;
    rtp.press(server, '2', 101, 0x1234_5678, &mut seq, 8000);
    hotline.wait_metric(en_selected(), 1.0, SECS(5));
    let (status, calls) = hotline.get("/api/calls");
    assert_eq!(status, 200);
    assert!(calls.contains("\"language\":\"en\""), "{calls}");
    call.wait_ok();
    assert_eq!(hotline.metric(en_selected()), 1.0, "one digit, one choice");
}

#[test]
fn answer_plays_paced_audible_pcmu_and_digit_2_selects_english() {
    listen_and_press_2("0 101", 0);
}

#[test]
fn pcma_is_chosen_when_offered_first() {
    listen_and_press_2("8 0 101", 8);
}

#[test]
fn sip_info_digit_selects_english() {
    let hotline = Hotline::start();
    hotline
        .sipp("call_info_dtmf.xml")
        .key("digit", "2")
        .duration_ms(3000)
        .run_ok();
    assert_eq!(hotline.metric(en_selected()), 1.0);
    assert!(hotline.metric("hotline_sip_requests_total{method=\"INFO\"}") >= 1.0);
}

#[test]
fn call_over_tcp() {
    let hotline = Hotline::start();
    hotline
        .sipp("call_info_dtmf.xml")
        .tcp()
        .key("digit", "2")
        .duration_ms(3000)
        .run_ok();
    assert_eq!(hotline.metric(en_selected()), 1.0);
    hotline.wait_metric(
        "hotline_calls_total{outcome=\"abandoned_ivr\"}",
        1.0,
        SECS(5),
    );
}

#[test]
fn cancel_before_answer_gets_487() {
    let hotline = Hotline::with_config("answer_delay_ms: 3000\n");
    hotline.sipp("call_cancel.xml").run_ok();
    hotline.wait_metric(
        "hotline_calls_total{outcome=\"abandoned_ivr\"}",
        1.0,
        SECS(5),
    );
    assert!(hotline.metric("hotline_sip_responses_total{code=\"487\"}") >= 1.0);
    assert!(hotline.metric("hotline_sip_responses_total{code=\"180\"}") >= 1.0);
    assert_eq!(hotline.metric("hotline_calls_active{stage=\"ivr\"}"), 0.0);
}

#[test]
fn caller_hanging_up_mid_prompt_is_abandoned_and_media_stops() {
    let hotline = Hotline::start();
    let rtp = RtpListener::bind();
    support::listening_caller(hotline.sip, &rtp, 1000).run_ok();
    hotline.wait_metric(
        "hotline_calls_total{outcome=\"abandoned_ivr\"}",
        1.0,
        SECS(5),
    );
    assert_eq!(hotline.metric("hotline_calls_active{stage=\"ivr\"}"), 0.0);
    let heard = rtp.packets().len();
    assert!(heard > 20, "the caller heard nothing before hanging up");
    std::thread::sleep(Duration::from_millis(400));
    let after = rtp.packets().len();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(rtp.packets().len(), after, "RTP still flows after BYE");
}

#[test]
fn no_common_codec_gets_488() {
    let hotline = Hotline::start();
    let invite = "INVITE sip:1000@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK-g729-1;rport\r\n\
From: <sip:4790000003@127.0.0.1>;tag=g729\r\n\
To: <sip:1000@127.0.0.1>\r\n\
Call-ID: g729-only@test\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:4790000003@{local}>\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 97\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n\r\n";
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(SECS(3))).expect("timeout");
    let local = sock.local_addr().expect("addr").to_string();
    let invite = invite.replace("{local}", &local);
    // Fix Content-Length to the real body.
    let (head, body) = invite.split_once("\r\n\r\n").expect("body");
    let head = head.replace(
        "Content-Length: 97",
        &format!("Content-Length: {}", body.len()),
    );
    sock.send_to(format!("{head}\r\n\r\n{body}").as_bytes(), hotline.sip)
        .expect("send");
    let mut buf = [0u8; 4096];
    let mut finals = Vec::new();
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let code = text.get(8..11).unwrap_or("").to_string();
        if code != "100" {
            finals.push(code);
            break;
        }
    }
    assert_eq!(finals, ["488"]);
    assert_eq!(
        hotline.metric("hotline_calls_total{outcome=\"rejected\"}"),
        1.0
    );
}

fn options(n: usize) -> String {
    format!(
        "OPTIONS sip:1000@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {{local}};branch=z9hG4bK-opt-{n};rport\r\n\
From: <sip:probe@127.0.0.1>;tag=o{n}\r\n\
To: <sip:1000@127.0.0.1>\r\n\
Call-ID: options-{n}@test\r\n\
CSeq: {n} OPTIONS\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn malformed_messages_get_400_or_are_dropped_while_options_is_answered() {
    let hotline = Hotline::start();
    let malformed: Vec<String> = vec![
        // Not SIP at all.
        "hello there\r\n\r\n".into(),
        String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x13, 0x37]).into_owned(),
        // Request line broken.
        "INVITE\r\n\r\n".into(),
        "INVITE sip:1000@127.0.0.1 SIP/7.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-v7\r\nCall-ID: v7@test\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Length: 0\r\n\r\n".into(),
        // Missing Call-ID.
        "INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-nocid\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Length: 0\r\n\r\n".into(),
        // Bad CSeq.
        "OPTIONS sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-cseq\r\nCall-ID: cseq@test\r\nCSeq: abc OPTIONS\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Length: 0\r\n\r\n".into(),
        // Content-Length larger than the body.
        "INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-cl\r\nCall-ID: cl@test\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Type: application/sdp\r\nContent-Length: 5000\r\n\r\nv=0\r\n".into(),
        // Header without colon.
        "OPTIONS sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-nocolon\r\nCall-ID: nc@test\r\nCSeq: 1 OPTIONS\r\nFrom <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Length: 0\r\n\r\n".into(),
        // Huge header.
        format!("OPTIONS sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {{local}};branch=z9hG4bK-huge\r\nCall-ID: huge@test\r\nCSeq: 1 OPTIONS\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nX-Junk: {}\r\nContent-Length: 0\r\n\r\n", "x".repeat(30_000)),
        // A response nobody asked for.
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-stray\r\nCall-ID: stray@test\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nContent-Length: 0\r\n\r\n".into(),
        // Empty.
        "\r\n\r\n".into(),
    ];
    for (i, m) in malformed.iter().enumerate() {
        if let Some(resp) = udp_exchange(hotline.sip, m, Duration::from_millis(300)) {
            assert!(
                resp.starts_with("SIP/2.0 400")
                    || resp.starts_with("SIP/2.0 505")
                    || resp.starts_with("SIP/2.0 513"),
                "message {i} got {resp:?}"
            );
        }
        let ok = udp_exchange(hotline.sip, &options(i), SECS(2)).expect("OPTIONS answered");
        assert!(
            ok.starts_with("SIP/2.0 200"),
            "OPTIONS after message {i}: {ok}"
        );
    }
    assert!(
        hotline.metric("hotline_sip_malformed_total{action=\"answered_400\"}")
            + hotline.metric("hotline_sip_malformed_total{action=\"dropped\"}")
            >= 5.0
    );
    assert!(
        hotline.metric("hotline_sip_requests_total{method=\"OPTIONS\"}") >= malformed.len() as f64
    );
    let (status, _) = hotline.get("/healthz");
    assert_eq!(status, 200);
}

#[test]
fn unknown_method_gets_405_with_allow_and_unknown_dialog_481() {
    let hotline = Hotline::start();
    let subscribe = "SUBSCRIBE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-sub;rport\r\nFrom: <sip:a@127.0.0.1>;tag=s1\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: sub@test\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n";
    let resp = udp_exchange(hotline.sip, subscribe, SECS(2)).expect("answered");
    assert!(resp.starts_with("SIP/2.0 405"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("\nallow:"), "{resp}");
    let bye = "BYE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-bye481;rport\r\nFrom: <sip:a@127.0.0.1>;tag=b1\r\nTo: <sip:1000@127.0.0.1>;tag=nope\r\nCall-ID: nodialog@test\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let resp = udp_exchange(hotline.sip, bye, SECS(2)).expect("answered");
    assert!(resp.starts_with("SIP/2.0 481"), "{resp}");
}

#[test]
fn sigterm_drains_then_says_bye_to_calls_and_exits_zero() {
    let mut hotline = Hotline::with_config("drain_limit_s: 2\n");
    let rtp = RtpListener::bind();
    let call = hotline
        .sipp("call_wait_bye.xml")
        .key("rtp_port", rtp.port)
        .key("codecs", "0 101")
        .spawn();
    hotline.wait_metric("hotline_calls_active{stage=\"ivr\"}", 1.0, SECS(10));
    rtp.wait_packets(10, SECS(5));
    hotline.signal("TERM");
    hotline.wait_for_log("shutting down", SECS(5));
    // While draining, a new call is refused with 503 and Retry-After, and the
    // call in progress still hears its prompts.
    let invite = "INVITE sip:1000@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bK-drain-1;rport\r\n\
From: <sip:4790000009@127.0.0.1>;tag=drain\r\n\
To: <sip:1000@127.0.0.1>\r\n\
Call-ID: drain@test\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:4790000009@{local}>\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 87\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(SECS(2))).expect("timeout");
    let local = sock.local_addr().expect("addr").to_string();
    sock.send_to(invite.replace("{local}", &local).as_bytes(), hotline.sip)
        .expect("send");
    let mut buf = [0u8; 4096];
    let mut refusal = String::new();
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 100") {
            refusal = text;
            break;
        }
    }
    assert!(refusal.starts_with("SIP/2.0 503"), "{refusal}");
    assert!(refusal.contains("Retry-After:"), "{refusal}");
    let heard = rtp.packets().len();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rtp.packets().len() > heard + 10,
        "the call in progress goes on while draining"
    );
    // After the drain limit the call gets BYE and the service exits 0.
    let status = hotline.wait_exit(SECS(10));
    assert!(status.success(), "exit status {status:?}");
    call.wait_ok();
    assert!(hotline
        .log()
        .iter()
        .any(|l| l.contains("drain limit reached")));
    assert!(hotline.log().iter().any(|l| l.contains("hotline stopped")));
}

#[test]
fn the_service_hangs_up_when_the_flow_ends() {
    // A flow that says goodbye and hangs up.
    let flows = support::copy_flows(&support::repo().join("ivr-flows"));
    let hotline_yaml = flows.path().join("hotline.yaml");
    let text = std::fs::read_to_string(&hotline_yaml).expect("read");
    std::fs::write(
        &hotline_yaml,
        text.replace("  default: main\n", "  default: short\n"),
    )
    .expect("write");
    std::fs::write(
        flows.path().join("short.yaml"),
        "flows:\n  short:\n    steps:\n      - play: goodbye\n      - hangup: done\n",
    )
    .expect("write");
    let hotline = Hotline::start_with(Options {
        flows: Some(flows.path().to_path_buf()),
        ..Options::default()
    });
    let rtp = RtpListener::bind();
    hotline
        .sipp("call_wait_bye.xml")
        .key("rtp_port", rtp.port)
        .key("codecs", "0 101")
        .run_ok();
    hotline.wait_metric("hotline_calls_total{outcome=\"completed\"}", 1.0, SECS(5));
    let r = report(&rtp.packets());
    assert!(r.audible_frames > 20, "the goodbye was heard: {r:?}");
}
