//! Outbound legs and probes: what we send to an agent's phone, what its
//! answers turn into.

use super::*;

pub(super) const AGENT_SDP: &str = "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";

/// Where the agent's REGISTER came from (behind NAT: not its Contact).
pub(super) fn agent() -> SocketAddr {
    "127.0.0.1:40123".parse().unwrap()
}

fn outbound() -> OutboundInvite {
    OutboundInvite {
        request_uri: "sip:agent7@10.1.2.3:5062;transport=udp".into(),
        destination: agent(),
        transport: Transport::Udp,
        from_user: "+4791234567".into(),
        from_display: Some("+4791234567 (pl)".into()),
        to_user: "agent7".into(),
        headers: vec![
            ("X-Hotline-Language".into(), "pl".into()),
            ("X-Hotline-Queue".into(), "advice_pl".into()),
            ("X-Bad".into(), "a\r\nInjected: yes".into()),
            ("Via".into(), "SIP/2.0/UDP evil".into()),
        ],
        sdp: ANSWER.into(),
        credentials: None,
        to_uri: None,
    }
}

pub(super) fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

/// The branch of a message's top Via.
fn via_branch(msg: &str) -> String {
    let via = header(msg, "Via");
    let rest = via.split("branch=").nth(1).expect("a branch");
    rest.split(';').next().unwrap_or(rest).to_string()
}

/// A response from the agent to one of our requests.
pub(super) fn reply(
    request: &str,
    status: &str,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> String {
    let to = match to_tag {
        Some(t) if !header(request, "To").contains(";tag=") => {
            format!("{};tag={t}", header(request, "To"))
        }
        _ => header(request, "To").to_string(),
    };
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {};received=127.0.0.1\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        header(request, "Via"),
        header(request, "From"),
        header(request, "Call-ID"),
        header(request, "CSeq"),
        body.len()
    )
}

pub(super) fn feed_agent(h: &mut Harness, at: u64, text: &str) {
    h.feed_from(at, Transport::Udp, agent(), text);
}

/// The agent's phone answers `request` with a bodiless `status` (a 200 to
/// our BYE or OPTIONS, a 486 or 487 to our INVITE), tagged when `to_tag`.
fn agent_answers(h: &mut Harness, at: u64, request: &str, status: &str, to_tag: Option<&str>) {
    feed_agent(h, at, &reply(request, status, to_tag, "", ""));
}

/// The agent's phone rings: 180 with its tag and Contact.
fn agent_rings(h: &mut Harness, at: u64, inv: &str) {
    let ringing = reply(inv, "180 Ringing", Some("agent-tag"), AGENT_CONTACT, "");
    feed_agent(h, at, &ringing);
}

/// The agent picks up: 200 with its tag, Contact and SDP.
fn agent_picks_up(h: &mut Harness, at: u64, inv: &str) {
    let ok = reply(inv, "200 OK", Some("agent-tag"), AGENT_CONTACT, AGENT_SDP);
    feed_agent(h, at, &ok);
}

/// Sends the INVITE; returns the leg and the INVITE text.
pub(super) fn dial(h: &mut Harness) -> (LegKey, String) {
    let leg = h.ep.invite(h.at(0), outbound());
    let sent = h.sent_to();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, agent());
    (leg, sent[0].1.clone())
}

pub(super) const AGENT_CONTACT: &str = "Contact: <sip:agent7@10.1.2.3:5062>\r\n";

/// INVITE, then 180 at 50 ms; its events are read.
fn ringing_leg(h: &mut Harness) -> (LegKey, String) {
    let (leg, inv) = dial(h);
    agent_rings(h, 50, &inv);
    h.events();
    (leg, inv)
}

/// A ringing leg (`ringing_leg`) that the call layer cancels at `at` ms;
/// what that sends is left to read.
fn cancelled_while_ringing(h: &mut Harness, at: u64) -> (LegKey, String) {
    let (leg, inv) = ringing_leg(h);
    h.ep.cancel(h.at(at), leg);
    (leg, inv)
}

/// No leg and no transaction is left.
fn assert_all_gone(h: &Harness) {
    assert_eq!(h.ep.leg_count(), 0);
    assert_eq!(h.ep.transaction_count(), 0);
}

/// INVITE, 180, 200, ACK: an answered leg.
fn answered_leg(h: &mut Harness) -> (LegKey, String) {
    let (leg, inv) = dial(h);
    agent_rings(h, 50, &inv);
    agent_picks_up(h, 100, &inv);
    let ack = h.sent();
    assert_eq!(ack.len(), 1);
    assert!(ack[0].starts_with("ACK sip:agent7@10.1.2.3:5062 SIP/2.0\r\n"));
    let events = h.events();
    assert!(matches!(
        events.as_slice(),
        [SipEvent::LegRinging { .. }, SipEvent::LegAnswered { .. }]
    ));
    (leg, inv)
}

/// The events so far are exactly `LegFailed` for `leg` with `code`.
fn expect_failed(h: &mut Harness, leg: LegKey, code: u16) {
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [SipEvent::LegFailed { leg: l, code: c }] if *l == leg && *c == code),
        "expected LegFailed {code}, got {events:?}"
    );
}

/// The events so far are exactly `LegEnded` for `leg` with `reason`.
fn expect_ended(h: &mut Harness, leg: LegKey, reason: EndReason) {
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [SipEvent::LegEnded { leg: l, reason: r }] if *l == leg && *r == reason),
        "expected LegEnded {reason:?}, got {events:?}"
    );
}

/// A request in the INVITE's own transaction, as RFC 3261 wants it written:
/// CANCEL (9.1), or the ACK of a final error (17.1.1.3) with the error's To.
fn in_invite_transaction(inv: &str, method: &str, to: &str) -> String {
    format!(
        "{method} sip:agent7@10.1.2.3:5062;transport=udp SIP/2.0\r\n\
         Via: {}\r\n\
         Max-Forwards: 70\r\n\
         From: {}\r\n\
         To: {to}\r\n\
         Call-ID: {}\r\n\
         CSeq: 1 {method}\r\n\
         User-Agent: hotline-test\r\n\
         Content-Length: 0\r\n\r\n",
        header(inv, "Via"),
        header(inv, "From"),
        header(inv, "Call-ID")
    )
}

/// An in-dialog request from the agent.
pub(super) fn from_agent(
    method: &str,
    inv: &str,
    cseq: u32,
    branch: &str,
    extra: &str,
    body: &str,
) -> String {
    let ours = header(inv, "From");
    format!(
        "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.2.3:5062;branch={branch};rport\r\n\
         From: {};tag=agent-tag\r\nTo: {ours}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
         {AGENT_CONTACT}Max-Forwards: 70\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        "sip:127.0.0.1:5060",
        header(inv, "To"),
        header(inv, "Call-ID"),
        body.len()
    )
}

/// `from_agent` without extra headers or body.
fn bare_from_agent(method: &str, inv: &str, cseq: u32, branch: &str) -> String {
    from_agent(method, inv, cseq, branch, "", "")
}

#[test]
fn invite_ringing_answered_acked_then_agent_bye() {
    let mut h = Harness::new(10);
    let (leg, inv) = dial(&mut h);
    let branch = via_branch(&inv);
    let tag = header(&inv, "From")
        .split(";tag=")
        .nth(1)
        .unwrap()
        .to_string();
    let call_id = header(&inv, "Call-ID").to_string();
    assert_eq!(
        inv,
        format!(
            "INVITE sip:agent7@10.1.2.3:5062;transport=udp SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: \"+4791234567 (pl)\" <sip:+4791234567@127.0.0.1:5060>;tag={tag}\r\n\
             To: <sip:agent7@127.0.0.1:5060>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:127.0.0.1:5060>\r\n\
             Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, UPDATE, REFER\r\n\
             User-Agent: hotline-test\r\n\
             Supported: timer\r\n\
             Session-Expires: 1800\r\n\
             Min-SE: 90\r\n\
             X-Hotline-Language: pl\r\n\
             X-Hotline-Queue: advice_pl\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        )
    );
    assert!(branch.starts_with("z9hG4bK"));
    assert_eq!(h.ep.leg_count(), 1);
    assert_eq!(h.ep.call_count(), 0);

    agent_answers(&mut h, 30, &inv, "100 Trying", None);
    assert!(h.events().is_empty());
    assert!(
        h.run_until(5_000).is_empty(),
        "no INVITE retransmission after 100"
    );
    agent_rings(&mut h, 5_000, &inv);
    assert!(matches!(h.events().as_slice(), [SipEvent::LegRinging { leg: l }] if *l == leg));
    agent_rings(&mut h, 5_100, &inv);
    assert!(h.events().is_empty(), "ringing is reported once");

    let ok = reply(
        &inv,
        "200 OK",
        Some("agent-tag"),
        &format!("{AGENT_CONTACT}Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n"),
        AGENT_SDP,
    );
    feed_agent(&mut h, 8_000, &ok);
    let sent = h.sent_to();
    assert_eq!(sent.len(), 1);
    let (dest, ack) = &sent[0];
    assert_eq!(*dest, agent(), "ACK goes where the REGISTER came from");
    let ack_branch = via_branch(ack);
    assert_ne!(ack_branch, branch, "the ACK for a 2xx is a new transaction");
    assert_eq!(
        *ack,
        format!(
            "ACK sip:agent7@10.1.2.3:5062 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch={ack_branch};rport\r\n\
             Max-Forwards: 70\r\n\
             Route: <sip:p2.example;lr>\r\n\
             Route: <sip:p1.example;lr>\r\n\
             From: \"+4791234567 (pl)\" <sip:+4791234567@127.0.0.1:5060>;tag={tag}\r\n\
             To: <sip:agent7@127.0.0.1:5060>;tag=agent-tag\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 ACK\r\n\
             User-Agent: hotline-test\r\n\
             Content-Length: 0\r\n\r\n"
        )
    );
    match h.events().as_slice() {
        [SipEvent::LegAnswered { leg: l, answer_sdp }] => {
            assert_eq!(*l, leg);
            assert_eq!(answer_sdp.as_deref(), Some(AGENT_SDP));
        }
        other => panic!("{other:?}"),
    }
    // The agent did not get our ACK and repeats its 200: the same ACK again.
    feed_agent(&mut h, 8_500, &ok);
    assert_eq!(h.sent(), vec![ack.clone()]);
    assert!(h.events().is_empty());

    let bye = bare_from_agent("BYE", &inv, 1, "z9hG4bK-agent-bye");
    feed_agent(&mut h, 20_000, &bye);
    let sent = h.sent_to();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, agent(), "rport: back to the source port");
    assert!(sent[0].1.starts_with("SIP/2.0 200 OK\r\n"));
    assert!(sent[0].1.contains("\r\nCSeq: 1 BYE\r\n"));
    expect_ended(&mut h, leg, EndReason::RemoteBye);
    assert_eq!(h.ep.leg_count(), 0);
    h.run_until(120_000);
    assert_eq!(h.ep.transaction_count(), 0);
    assert_eq!(h.ep.poll_timeout(), None);
}

#[test]
fn busy_agent_gets_ack_from_the_transaction() {
    let mut h = Harness::new(10);
    let (leg, inv) = dial(&mut h);
    agent_answers(&mut h, 20, &inv, "100 Trying", None);
    let busy = reply(&inv, "486 Busy Here", Some("busy-tag"), "", "");
    feed_agent(&mut h, 40, &busy);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    // RFC 3261 17.1.1.3: same branch and Request-URI as the INVITE, the 486's To.
    assert_eq!(
        sent[0],
        in_invite_transaction(&inv, "ACK", "<sip:agent7@127.0.0.1:5060>;tag=busy-tag")
    );
    expect_failed(&mut h, leg, 486);
    assert_eq!(h.ep.leg_count(), 0);
    // A repeated 486 gets the ACK again, and no second event.
    feed_agent(&mut h, 600, &busy);
    assert_eq!(h.sent(), sent);
    assert!(h.events().is_empty());
    // Timer D ends the transaction.
    assert!(h.run_until(40_000).is_empty());
    assert_eq!(h.ep.transaction_count(), 0);
}

#[test]
fn silent_agent_times_out_with_408() {
    let mut h = Harness::new(10);
    let (leg, inv) = dial(&mut h);
    let out = h.run_until(40_000);
    let times: Vec<u64> = out.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        vec![500, 1500, 3500, 7500, 15500, 31500],
        "Timer A doubles"
    );
    assert!(out.iter().all(|(_, s)| *s == inv));
    expect_failed(&mut h, leg, 408);
    assert_all_gone(&h);
}

#[test]
fn cancel_after_ringing_then_487() {
    let mut h = Harness::new(10);
    let (leg, inv) = cancelled_while_ringing(&mut h, 15_000);
    let sent = h.sent_to();
    assert_eq!(sent.len(), 1);
    let cancel = &sent[0].1;
    assert_eq!(sent[0].0, agent());
    assert_eq!(
        *cancel,
        in_invite_transaction(&inv, "CANCEL", "<sip:agent7@127.0.0.1:5060>")
    );
    agent_answers(&mut h, 15_050, cancel, "200 OK", Some("agent-tag"));
    assert!(h.events().is_empty(), "the INVITE's final response decides");
    agent_answers(
        &mut h,
        15_060,
        &inv,
        "487 Request Terminated",
        Some("agent-tag"),
    );
    let ack = h.sent();
    assert_eq!(ack.len(), 1);
    assert!(ack[0].starts_with("ACK sip:agent7@10.1.2.3:5062;transport=udp SIP/2.0\r\n"));
    expect_failed(&mut h, leg, 487);
    h.run_until(80_000);
    assert_all_gone(&h);
}

#[test]
fn cancel_before_any_response_waits_for_a_provisional() {
    let mut h = Harness::new(10);
    let (leg, inv) = dial(&mut h);
    h.ep.cancel(h.at(100), leg);
    assert!(
        h.sent().is_empty(),
        "RFC 3261 9.1: no CANCEL before a provisional"
    );
    agent_rings(&mut h, 300, &inv);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("CANCEL "));
    assert!(h.events().is_empty(), "no ringing once cancelled");
    agent_answers(
        &mut h,
        400,
        &inv,
        "487 Request Terminated",
        Some("agent-tag"),
    );
    expect_failed(&mut h, leg, 487);
}

#[test]
fn cancel_with_no_response_at_all_still_ends_with_408() {
    let mut h = Harness::new(10);
    let (leg, _inv) = dial(&mut h);
    h.ep.cancel(h.at(100), leg);
    h.run_until(40_000);
    expect_failed(&mut h, leg, 408);
}

#[test]
fn cancel_unanswered_gives_up_after_64_t1() {
    let mut h = Harness::new(10);
    let (leg, _inv) = cancelled_while_ringing(&mut h, 1_000);
    h.sent();
    let out = h.run_until(32_999);
    assert!(out.iter().all(|(_, s)| s.starts_with("CANCEL ")));
    assert!(h.events().is_empty());
    h.run_until(33_000);
    expect_failed(&mut h, leg, 408);
    assert_all_gone(&h);
}

#[test]
fn ok_crossing_cancel_is_acked_and_byed() {
    let mut h = Harness::new(10);
    let (leg, inv) = cancelled_while_ringing(&mut h, 1_000);
    let cancel = h.last_sent();
    agent_picks_up(&mut h, 1_010, &inv);
    let gone = "481 Call/Transaction Does Not Exist";
    agent_answers(&mut h, 1_020, &cancel, gone, None);
    let sent = h.sent();
    assert_eq!(sent.len(), 2);
    assert!(sent[0].starts_with("ACK sip:agent7@10.1.2.3:5062 SIP/2.0\r\n"));
    let bye = &sent[1];
    assert!(bye.starts_with("BYE sip:agent7@10.1.2.3:5062 SIP/2.0\r\n"));
    assert!(bye.contains("\r\nCSeq: 2 BYE\r\n"));
    assert!(bye.contains("\r\nTo: <sip:agent7@127.0.0.1:5060>;tag=agent-tag\r\n"));
    assert!(h.events().is_empty(), "not answered, not yet ended");
    agent_answers(&mut h, 1_100, bye, "200 OK", None);
    expect_ended(&mut h, leg, EndReason::LocalBye);
    h.run_until(80_000);
    assert_eq!(h.ep.transaction_count(), 0);
}

#[test]
fn our_bye_ends_the_leg() {
    let mut h = Harness::new(10);
    let (leg, inv) = answered_leg(&mut h);
    h.ep.hangup(h.at(9_000), leg);
    let sent = h.sent_to();
    assert_eq!(sent.len(), 1);
    let (dest, bye) = &sent[0];
    assert_eq!(*dest, agent());
    assert!(bye.starts_with(
        "BYE sip:agent7@10.1.2.3:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"
    ));
    assert!(bye.contains(&format!("\r\nFrom: {}\r\n", header(&inv, "From"))));
    assert!(bye.contains("\r\nTo: <sip:agent7@127.0.0.1:5060>;tag=agent-tag\r\n"));
    assert!(bye.contains("\r\nCSeq: 2 BYE\r\n"));
    assert!(h.events().is_empty());
    h.ep.hangup(h.at(9_001), leg);
    assert!(h.sent().is_empty(), "one BYE");
    agent_answers(&mut h, 9_100, bye, "200 OK", None);
    expect_ended(&mut h, leg, EndReason::LocalBye);
    // An agent's BYE after that is for a dialog that is gone.
    let bye = bare_from_agent("BYE", &inv, 1, "z9hG4bK-late");
    feed_agent(&mut h, 9_200, &bye);
    assert!(h.sent()[0].starts_with("SIP/2.0 481 "));
}

#[test]
fn second_fork_answering_gets_ack_and_bye() {
    let mut h = Harness::new(10);
    let (leg, inv) = answered_leg(&mut h);
    let fork = "Contact: <sip:agent7@10.9.9.9>\r\n";
    let other = reply(&inv, "200 OK", Some("other-fork"), fork, AGENT_SDP);
    feed_agent(&mut h, 200, &other);
    let sent = h.sent();
    assert_eq!(sent.len(), 2);
    assert!(sent[0].starts_with("ACK sip:agent7@10.9.9.9 SIP/2.0\r\n"));
    assert!(sent[0].contains(";tag=other-fork\r\n"));
    assert!(sent[1].starts_with("BYE sip:agent7@10.9.9.9 SIP/2.0\r\n"));
    assert!(h.events().is_empty());
    // The first dialog is untouched.
    h.ep.hangup(h.at(300), leg);
    let bye = h.last_sent();
    assert!(bye.contains(";tag=agent-tag\r\n"));
}

#[test]
fn agent_reinvite_info_and_options() {
    let mut h = Harness::new(10);
    let (leg, inv) = answered_leg(&mut h);
    let sdp = "Content-Type: application/sdp\r\n";
    let reinvite = from_agent("INVITE", &inv, 2, "z9hG4bK-re", sdp, AGENT_SDP);
    feed_agent(&mut h, 1_000, &reinvite);
    let sent = h.sent();
    assert!(sent[0].starts_with("SIP/2.0 100 Trying\r\n"));
    match h.events().as_slice() {
        [SipEvent::LegReOffer { leg: l, offer }] => {
            assert_eq!(*l, leg);
            assert_eq!(offer.as_deref(), Some(AGENT_SDP));
        }
        other => panic!("{other:?}"),
    }
    h.ep.answer_reoffer(h.at(1_010), CallId(leg.0), Some(ANSWER));
    assert!(
        h.sent().is_empty(),
        "a leg's re-offer is answered with answer_leg_reoffer"
    );
    h.ep.answer_leg_reoffer(h.at(1_010), leg, Some(ANSWER));
    let ok = h.last_sent();
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    assert!(ok.contains("\r\nCSeq: 2 INVITE\r\n"));
    assert!(ok.ends_with(ANSWER));
    let out = h.run_until(1_600);
    assert_eq!(out.len(), 1, "2xx repeated until ACK");
    let ack = bare_from_agent("ACK", &inv, 2, "z9hG4bK-re-ack");
    feed_agent(&mut h, 1_700, &ack);
    assert!(h.run_until(10_000).is_empty());
    let relay = "Content-Type: application/dtmf-relay\r\n";
    let info = from_agent(
        "INFO",
        &inv,
        3,
        "z9hG4bK-info",
        relay,
        "Signal=5\r\nDuration=160\r\n",
    );
    feed_agent(&mut h, 10_000, &info);
    assert!(h.sent()[0].starts_with("SIP/2.0 200 OK\r\n"));
    assert!(
        matches!(h.events().as_slice(), [SipEvent::LegDtmf { leg: l, digit: '5' }] if *l == leg)
    );
    let options = bare_from_agent("OPTIONS", &inv, 4, "z9hG4bK-opt");
    feed_agent(&mut h, 10_100, &options);
    assert!(h.sent()[0].starts_with("SIP/2.0 200 OK\r\n"));
}

#[test]
fn probe_answered_then_probe_timeout() {
    let mut h = Harness::new(10);
    let (leg, _inv) = answered_leg(&mut h);
    h.ep.probe(h.at(1_000), leg);
    let opts = h.last_sent();
    assert!(opts.starts_with("OPTIONS sip:agent7@10.1.2.3:5062 SIP/2.0\r\n"));
    assert!(opts.contains("\r\nCSeq: 2 OPTIONS\r\n"));
    assert!(opts.contains(";tag=agent-tag\r\n"));
    h.ep.probe(h.at(1_001), leg);
    assert!(h.sent().is_empty(), "one probe at a time");
    agent_answers(&mut h, 1_050, &opts, "200 OK", None);
    assert!(h.events().is_empty(), "alive");
    // The agent's phone vanishes.
    h.ep.probe(h.at(2_000), leg);
    let second = h.last_sent();
    assert!(second.contains("\r\nCSeq: 3 OPTIONS\r\n"));
    let out = h.run_until(40_000);
    assert_eq!(out.len(), 10, "Timer E retransmissions");
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::ProbeFailed { session: SessionKey::Leg(l), code: 408 }] if *l == leg
    ));
    assert_eq!(h.ep.leg_count(), 1, "the session stays until hung up");
}

#[test]
fn probe_of_an_inbound_call_gets_481() {
    let mut h = Harness::new(10);
    let (call, _caller) = confirmed_call(&mut h, "probe-1@sipp");
    h.ep.probe(h.at(500), call);
    let opts = h.last_sent();
    assert!(opts.starts_with("OPTIONS sip:sipp@127.0.0.1:5061 SIP/2.0\r\n"));
    let gone = reply(&opts, "481 Call/Transaction Does Not Exist", None, "", "");
    h.feed(600, &gone);
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::ProbeFailed { session: SessionKey::Call(c), code: 481 }] if *c == call
    ));
}

#[test]
fn legs_share_the_call_limit_and_bad_uris_fail() {
    let mut h = Harness::new(1);
    h.offered("full@sipp", "z9hG4bK-full");
    let leg = h.ep.invite(h.at(1), outbound());
    assert!(h.sent().is_empty());
    expect_failed(&mut h, leg, 503);
    let mut h = Harness::new(10);
    let bad = OutboundInvite {
        request_uri: "sip:agent7@10.1.2.3\r\nX: y".into(),
        ..outbound()
    };
    let leg = h.ep.invite(h.at(0), bad);
    assert!(h.sent().is_empty());
    expect_failed(&mut h, leg, 400);
    assert_eq!(h.ep.leg_count(), 0);
}

#[test]
fn hangup_all_cancels_ringing_legs_and_byes_answered_ones() {
    let mut h = Harness::new(10);
    let (_answered, _) = answered_leg(&mut h);
    let (_ringing, _) = ringing_leg(&mut h);
    assert_eq!(h.ep.hangup_all(h.at(100)), 2);
    let sent = h.sent();
    let starts: Vec<&str> = sent.iter().map(|s| s.split(' ').next().unwrap()).collect();
    assert_eq!(starts, vec!["BYE", "CANCEL"]);
}

#[test]
fn leg_over_tcp_sends_once_and_acks() {
    let mut h = Harness::new(10);
    let leg = h.ep.invite(
        h.at(0),
        OutboundInvite {
            transport: Transport::Tcp,
            ..outbound()
        },
    );
    let sent = h.ep.poll_transmit().unwrap();
    assert_eq!(sent.transport, Transport::Tcp);
    let inv = String::from_utf8(sent.payload).unwrap();
    assert!(inv.contains("Via: SIP/2.0/TCP 127.0.0.1:5060;branch="));
    assert!(inv.contains("\r\nContact: <sip:127.0.0.1:5060;transport=tcp>\r\n"));
    let ok = reply(&inv, "200 OK", Some("a"), AGENT_CONTACT, AGENT_SDP);
    h.feed_from(100, Transport::Tcp, agent(), &ok);
    let ack = h.last_sent();
    assert!(ack.contains("Via: SIP/2.0/TCP 127.0.0.1:5060;branch="));
    assert!(matches!(h.events().as_slice(), [SipEvent::LegAnswered { leg: l, .. }] if *l == leg));
    assert!(
        h.run_until(31_000).is_empty(),
        "no retransmissions over TCP"
    );
}

#[test]
fn mangled_responses_to_our_requests_never_panic() {
    let mut h = Harness::new(4);
    let (_leg, inv) = dial(&mut h);
    let texts = [
        reply(&inv, "180 Ringing", Some("t"), AGENT_CONTACT, ""),
        reply(&inv, "200 OK", Some("t"), AGENT_CONTACT, AGENT_SDP),
        reply(&inv, "486 Busy Here", None, "", ""),
        reply(
            &inv,
            "200 OK",
            None,
            "Contact: *\r\nRecord-Route: <>\r\n",
            "",
        ),
    ];
    for i in 0..4000u64 {
        let mut bytes = texts[(i % 4) as usize].clone().into_bytes();
        for _ in 0..(i % 5) {
            let at = rand::random::<u32>() as usize % bytes.len();
            bytes[at] = rand::random::<u8>();
        }
        h.ep.handle_input(h.at(i), Transport::Udp, agent(), &bytes);
        if i % 500 == 0 {
            h.ep.invite(h.at(i), outbound());
            h.ep.hangup_all(h.at(i));
        }
        h.sent();
        h.events();
        h.run_until(i);
    }
    h.run_until(200_000);
    h.ep.hangup_all(h.at(200_000));
    h.run_until(400_000);
    assert_all_gone(&h);
    assert_eq!(h.ep.poll_timeout(), None);
}

#[test]
fn unacknowledged_reinvite_answer_ends_the_leg() {
    let mut h = Harness::new(10);
    let (leg, inv) = answered_leg(&mut h);
    let reinvite = bare_from_agent("INVITE", &inv, 2, "z9hG4bK-re2");
    feed_agent(&mut h, 1_000, &reinvite);
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::LegReOffer { offer: None, .. }]
    ));
    h.ep.answer_leg_reoffer(h.at(1_000), leg, Some(ANSWER));
    h.sent();
    let out = h.run_until(40_000);
    assert!(out.iter().any(|(_, s)| s.starts_with("BYE ")));
    expect_ended(&mut h, leg, EndReason::AckTimeout);
    assert_eq!(h.ep.leg_count(), 0);
}

/// A trunk's INVITE with credentials: the 401 is ACKed and the INVITE sent
/// again in a new transaction, with the answer, the same Call-ID and tags
/// and the next CSeq (RFC 3261 22.2); the 200 then answers the leg.
#[test]
fn a_challenged_invite_is_sent_again_with_credentials() {
    let mut h = Harness::new(10);
    let trunk = OutboundInvite {
        request_uri: "sip:113@10.1.2.3:5062".into(),
        credentials: Some(crate::sip::Credentials {
            username: "hotline".into(),
            password: "s3cret".into(),
        }),
        ..outbound()
    };
    let leg = h.ep.invite(h.at(0), trunk);
    let first = h.sent_to().remove(0).1;
    for (code, challenge, answer) in [
        ("401 Unauthorized", "WWW-Authenticate", "Authorization"),
        (
            "407 Proxy Authentication Required",
            "Proxy-Authenticate",
            "Proxy-Authorization",
        ),
    ] {
        let mut h = Harness::new(10);
        let leg = h.ep.invite(
            h.at(0),
            OutboundInvite {
                credentials: Some(crate::sip::Credentials {
                    username: "hotline".into(),
                    password: "s3cret".into(),
                }),
                ..outbound()
            },
        );
        let inv = h.sent_to().remove(0).1;
        let extra = format!(
            "{challenge}: Digest realm=\"trunk\", nonce=\"abc\", qop=\"auth\", algorithm=MD5\r\n"
        );
        feed_agent(&mut h, 20, &reply(&inv, code, Some("t1"), &extra, ""));
        let sent = h.sent_to();
        assert_eq!(sent.len(), 2, "ACK and the new INVITE: {sent:?}");
        assert!(sent[0].1.starts_with("ACK "));
        let again = &sent[1].1;
        assert!(
            again.starts_with("INVITE sip:agent7@10.1.2.3:5062"),
            "{again}"
        );
        assert_eq!(header(again, "Call-ID"), header(&inv, "Call-ID"));
        assert_eq!(header(again, "From"), header(&inv, "From"));
        assert_eq!(header(again, "CSeq"), "2 INVITE");
        assert_ne!(via_branch(again), via_branch(&inv));
        let auth = header(again, answer);
        assert!(auth.contains("username=\"hotline\"") && auth.contains("realm=\"trunk\""));
        assert!(auth.contains("qop=auth, nc=00000001"), "{auth}");
        assert!(h.events().is_empty(), "no failure reported");
        // A second plain challenge: the credentials are wrong.
        feed_agent(&mut h, 40, &reply(again, code, Some("t2"), &extra, ""));
        let sent = h.sent_to();
        assert_eq!(sent.len(), 1, "only the ACK: {sent:?}");
        let code_number: u16 = code[..3].parse().unwrap();
        expect_failed(&mut h, leg, code_number);
    }
    // The challenge answered, the gateway answers the call.
    let extra = "WWW-Authenticate: Digest realm=\"trunk\", nonce=\"abc\"\r\n";
    feed_agent(
        &mut h,
        20,
        &reply(&first, "401 Unauthorized", None, extra, ""),
    );
    let again = h.sent_to().remove(1).1;
    assert!(
        !header(&again, "Authorization").contains("qop"),
        "RFC 2069 form"
    );
    feed_agent(
        &mut h,
        60,
        &reply(&again, "200 OK", Some("gw"), AGENT_CONTACT, AGENT_SDP),
    );
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [SipEvent::LegAnswered { leg: l, .. }] if *l == leg),
        "{events:?}"
    );
    let ack = h.sent_to().remove(0).1;
    assert!(ack.starts_with("ACK sip:agent7@10.1.2.3:5062"));
    assert_eq!(header(&ack, "CSeq"), "2 ACK");
}

/// Without credentials a challenge fails the leg (an agent's phone never
/// challenges; a misconfigured trunk must not loop).
#[test]
fn a_challenge_without_credentials_fails_the_leg() {
    let mut h = Harness::new(10);
    let (leg, inv) = dial(&mut h);
    let extra = "WWW-Authenticate: Digest realm=\"trunk\", nonce=\"abc\"\r\n";
    feed_agent(
        &mut h,
        20,
        &reply(&inv, "401 Unauthorized", Some("t"), extra, ""),
    );
    assert_eq!(h.sent_to().len(), 1, "only the ACK");
    expect_failed(&mut h, leg, 401);
}

/// RFC 3515: an agent's REFER in the leg's dialog is accepted (202) and
/// reported; `notify_refer` answers it with a sipfrag NOTIFY in the same
/// dialog. Without a Refer-To, or with a broken Replaces, it is refused; an
/// attended transfer's Replaces (RFC 5589) is read out of the URI.
#[test]
fn an_agents_refer_is_accepted_reported_and_notified() {
    let mut h = Harness::new(10);
    let (leg, inv) = answered_leg(&mut h);
    let missing = from_agent("REFER", &inv, 2, "z9hG4bK-r0", "", "");
    feed_agent(&mut h, 1_000, &missing);
    assert!(h.sent()[0].starts_with("SIP/2.0 400 "));
    let broken = from_agent(
        "REFER",
        &inv,
        3,
        "z9hG4bK-r1",
        "Refer-To: <sip:b@h?Replaces=abc%3Bto-tag%3Dx>\r\n",
        "",
    );
    feed_agent(&mut h, 1_050, &broken);
    assert!(h.sent()[0].starts_with("SIP/2.0 400 "));
    assert!(h.events().is_empty());
    let attended = from_agent(
        "REFER",
        &inv,
        4,
        "z9hG4bK-r1a",
        "Refer-To: <sip:b@h?Replaces=abc%3Bto-tag%3Dx%3Bfrom-tag%3Dy>\r\n",
        "",
    );
    feed_agent(&mut h, 1_100, &attended);
    assert!(h.sent()[0].starts_with("SIP/2.0 202 "));
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [SipEvent::LegRefer { target, replaces: Some(r), .. }]
            if target == "sip:b@h" && r.call_id == "abc" && r.to_tag == "x" && r.from_tag == "y"),
        "{events:?}"
    );
    let refer = from_agent(
        "REFER",
        &inv,
        5,
        "z9hG4bK-r2",
        "Refer-To: \"Emergency\" <sip:113@127.0.0.1:5060>\r\n",
        "",
    );
    feed_agent(&mut h, 1_200, &refer);
    assert!(h.sent()[0].starts_with("SIP/2.0 202 "));
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [SipEvent::LegRefer { leg: l, target, replaces: None }] if *l == leg && target == "sip:113@127.0.0.1:5060"),
        "{events:?}"
    );
    h.ep.notify_refer(h.at(1_300), leg, "200 OK", true);
    let notify = h.sent().remove(0);
    assert!(
        notify.starts_with("NOTIFY sip:agent7@10.1.2.3:5062 SIP/2.0\r\n"),
        "{notify}"
    );
    assert_eq!(header(&notify, "Event"), "refer");
    assert_eq!(
        header(&notify, "Subscription-State"),
        "terminated;reason=noresource"
    );
    assert_eq!(
        header(&notify, "Content-Type"),
        "message/sipfrag;version=2.0"
    );
    assert_eq!(header(&notify, "Call-ID"), header(&inv, "Call-ID"));
    assert!(notify.ends_with("\r\n\r\nSIP/2.0 200 OK\r\n"), "{notify}");
}
