//! RFC 4028 session timers through the endpoint: negotiation on INVITE, 422,
//! refreshes by UPDATE either way, expiry, and agent legs. Fake clock.

use super::legs::{dial, feed_agent, from_agent, header, reply, AGENT_CONTACT, AGENT_SDP};
use super::*;

const TIMER_UAC: &str = "Session-Expires: 120;refresher=uac\r\nSupported: timer\r\n";

/// An INVITE with extra headers, answered and ACKed; returns the call, the
/// caller's side of it and the 200.
fn call_with(h: &mut Harness, call_id: &str, extra: &str) -> (CallId, Caller, String) {
    let inv = invite(call_id, "z9hG4bK-st-1", Some(SDP)).replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\n{extra}"),
    );
    h.feed(0, &inv);
    let call = h.incoming().call;
    h.sent();
    h.ep.answer(h.at(10), call, ANSWER);
    let ok = h.sent().pop().expect("200");
    let caller = Caller::new(call_id, &to_tag_of(&ok));
    h.feed(20, &caller.says("ACK", 1, "z9hG4bK-st-ack"));
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::Confirmed { .. }]
    ));
    (call, caller, ok)
}

/// Runs the timers up to `at` ms: nothing happens before it; the events at it.
fn events_first_at(h: &mut Harness, at: u64) -> Vec<SipEvent> {
    h.run_until(at - 1);
    assert!(h.events().is_empty(), "nothing before {at} ms");
    h.run_until(at);
    h.events()
}

#[test]
fn caller_refreshing_by_update_keeps_the_call_and_silence_expires_it() {
    let mut h = Harness::new(10);
    let (call, caller, ok) = call_with(&mut h, "st-1@sipp", TIMER_UAC);
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    assert!(
        ok.contains("\r\nSession-Expires: 120;refresher=uac\r\n"),
        "{ok}"
    );
    assert!(ok.contains("\r\nRequire: timer\r\n"), "{ok}");
    assert!(ok.contains("\r\nSupported: timer\r\n"), "{ok}");
    assert!(ok.contains("UPDATE"), "Allow names UPDATE: {ok}");

    // The caller refreshes at half the interval: 200, no SDP, timer restarts.
    let update = caller
        .request("UPDATE", 2, "z9hG4bK-up-1")
        .header(TIMER_UAC)
        .text();
    assert!(h.run_until(60_000).is_empty());
    h.feed(60_000, &update);
    let answer = h.sent().pop().expect("200 to UPDATE");
    assert!(answer.starts_with("SIP/2.0 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\nSession-Expires: 120;refresher=uac\r\n"));
    assert!(answer.contains("\r\nRequire: timer\r\n"));
    assert!(
        answer.contains("\r\nContent-Length: 0\r\n"),
        "no SDP: {answer}"
    );
    assert!(h.events().is_empty());

    // Without a refresh the call expires 120 - min(32, 40) = 88 s later,
    // not before.
    assert!(matches!(
        events_first_at(&mut h, 60_000 + 88_000).as_slice(),
        [SipEvent::SessionExpired { session: SessionKey::Call(c) }] if *c == call
    ));
    assert_eq!(h.ep.call_count(), 1, "the call layer hangs up");
    // It is reported once.
    h.run_until(400_000);
    assert!(h.events().is_empty());
}

#[test]
fn too_small_interval_gets_422_with_min_se() {
    let mut h = Harness::new(10);
    let inv = invite("st-2@sipp", "z9hG4bK-st-2", Some(SDP)).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nSession-Expires: 30\r\nSupported: timer\r\n",
    );
    h.feed(0, &inv);
    let sent = h.sent().pop().expect("422");
    assert!(
        sent.starts_with("SIP/2.0 422 Session Interval Too Small\r\n"),
        "{sent}"
    );
    assert!(sent.contains("\r\nMin-SE: 90\r\n"));
    assert!(h.events().is_empty(), "no call for the call layer");
    assert_eq!(h.ep.call_count(), 0);

    // Our Min-SE is a setting.
    h.ep.set_session_timers(TimerConfig {
        session_expires: 3600,
        min_se: 600,
    });
    let inv = invite("st-3@sipp", "z9hG4bK-st-3", Some(SDP))
        .replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nx: 300\r\n");
    h.feed(100, &inv);
    let sent = h.sent().pop().expect("422");
    assert!(sent.contains("\r\nMin-SE: 600\r\n"), "{sent}");
}

#[test]
fn require_timer_is_accepted_other_extensions_are_not() {
    let mut h = Harness::new(10);
    let inv = invite("st-4@sipp", "z9hG4bK-st-4", Some(SDP)).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: timer\r\nSession-Expires: 1800\r\n",
    );
    h.feed(0, &inv);
    let call = h.incoming().call;
    h.sent();
    h.ep.answer(h.at(10), call, ANSWER);
    let ok = h.sent().pop().expect("200");
    assert!(
        ok.contains("\r\nSession-Expires: 1800;refresher=uac\r\n"),
        "{ok}"
    );
    assert!(ok.contains("\r\nRequire: timer\r\n"));

    let inv = invite("st-5@sipp", "z9hG4bK-st-5", Some(SDP)).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: timer, 100rel\r\n",
    );
    h.feed(100, &inv);
    let sent = h.sent().pop().expect("420");
    assert!(sent.starts_with("SIP/2.0 420 "), "{sent}");
    assert!(sent.contains("\r\nUnsupported: 100rel\r\n"), "{sent}");
}

#[test]
fn caller_without_timer_support_is_refreshed_by_us_and_a_lost_refresh_fails() {
    let mut h = Harness::new(10);
    let (call, _caller, ok) = call_with(&mut h, "st-6@sipp", "");
    assert!(
        ok.contains("\r\nSession-Expires: 1800;refresher=uas\r\n"),
        "{ok}"
    );
    assert!(!ok.contains("Require:"), "{ok}");

    // At half the interval (the timer started with the 200 at 10 ms):
    // UPDATE without SDP, us still the refresher.
    assert!(h.run_until(900_009).is_empty());
    let out = h.run_until(900_010);
    let update = &out.first().expect("UPDATE").1;
    assert!(
        update.starts_with("UPDATE sip:sipp@127.0.0.1:5061 SIP/2.0\r\n"),
        "{update}"
    );
    assert!(update.contains("\r\nSession-Expires: 1800;refresher=uac\r\n"));
    assert!(update.contains("\r\nSupported: timer\r\n"));
    assert!(update.contains("\r\nCSeq: 1 UPDATE\r\n"));
    assert!(update.contains("\r\nContent-Length: 0\r\n"));
    // A 200 without Session-Expires (the caller has no timers): keep refreshing.
    let ok = reply_to(update, "200 OK", "");
    h.feed(900_100, &ok);
    assert!(h.events().is_empty());
    assert!(
        h.run_until(1_800_099).is_empty(),
        "next refresh at 900 s after the 200"
    );
    let out = h.run_until(1_800_100);
    let second = &out.first().expect("second UPDATE").1;
    assert!(second.contains("\r\nCSeq: 2 UPDATE\r\n"));
    // No answer at all: as a failed probe.
    h.run_until(1_900_000);
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::ProbeFailed { session: SessionKey::Call(c), code: 408 }] if *c == call
    ));
}

/// A response from the caller (port 5061) to one of our in-dialog requests.
fn reply_to(request: &str, status: &str, extra: &str) -> String {
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
        header(request, "Via"),
        header(request, "From"),
        header(request, "To"),
        header(request, "Call-ID"),
        header(request, "CSeq"),
    )
}

#[test]
fn update_with_sdp_and_reinvite_below_min_se_are_refused() {
    let mut h = Harness::new(10);
    let (call, caller, _ok) = call_with(&mut h, "st-7@sipp", TIMER_UAC);
    let update = caller.offers("UPDATE", 2, "z9hG4bK-up-7");
    h.feed(1_000, &update);
    assert!(h.sent().pop().expect("488").starts_with("SIP/2.0 488 "));
    let reinvite = caller
        .request("INVITE", 3, "z9hG4bK-re-7")
        .header("Session-Expires: 60\r\n")
        .body("application/sdp", SDP)
        .text();
    h.feed(2_000, &reinvite);
    let sent = h.sent().pop().expect("422");
    assert!(sent.starts_with("SIP/2.0 422 "), "{sent}");
    assert!(h.events().is_empty(), "no ReOffer");
    // A re-INVITE with a good interval is a refresh: its 200 carries it.
    let reinvite = caller
        .request("INVITE", 4, "z9hG4bK-re-8")
        .header("Session-Expires: 300;refresher=uac\r\nSupported: timer\r\n")
        .body("application/sdp", SDP)
        .text();
    h.feed(3_000, &reinvite);
    h.sent();
    assert!(matches!(h.events().as_slice(), [SipEvent::ReOffer { .. }]));
    h.ep.answer_reoffer(h.at(3_010), call, Some(ANSWER));
    let ok = h.sent().pop().expect("200");
    assert!(
        ok.contains("\r\nSession-Expires: 300;refresher=uac\r\n"),
        "{ok}"
    );
    // After its ACK the refreshed timer runs: 300 - 32 s after the 200.
    h.feed(3_020, &caller.says("ACK", 4, "z9hG4bK-re-8-ack"));
    assert!(matches!(
        events_first_at(&mut h, 3_010 + 268_000).as_slice(),
        [SipEvent::SessionExpired { session: SessionKey::Call(c) }] if *c == call
    ));
}

#[test]
fn agent_legs_offer_timers_and_follow_the_phones_choice() {
    let mut h = Harness::new(10);
    // The phone refreshes (refresher=uas in its 2xx) and then vanishes.
    let (leg, inv) = dial(&mut h);
    assert!(inv.contains("\r\nSupported: timer\r\nSession-Expires: 1800\r\nMin-SE: 90\r\n"));
    let extra = format!("{AGENT_CONTACT}Session-Expires: 1800;refresher=uas\r\nRequire: timer\r\n");
    feed_agent(
        &mut h,
        100,
        &reply(&inv, "200 OK", Some("agent-tag"), &extra, AGENT_SDP),
    );
    h.sent();
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::LegAnswered { .. }]
    ));
    // Its refresh (UPDATE, it is the UAC of it) postpones expiry.
    let update = from_agent(
        "UPDATE",
        &inv,
        1,
        "z9hG4bK-aup",
        "Session-Expires: 1800;refresher=uac\r\nSupported: timer\r\n",
        "",
    );
    feed_agent(&mut h, 900_000, &update);
    let ok = h.sent().pop().expect("200");
    assert!(
        ok.contains("\r\nSession-Expires: 1800;refresher=uac\r\n"),
        "{ok}"
    );
    assert!(matches!(
        events_first_at(&mut h, 900_000 + 1_768_000).as_slice(),
        [SipEvent::SessionExpired { session: SessionKey::Leg(l) }] if *l == leg
    ));
}

#[test]
fn agent_leg_refreshed_by_us_ends_on_481() {
    let mut h = Harness::new(10);
    let (leg, inv) = dial(&mut h);
    let extra = format!("{AGENT_CONTACT}Session-Expires: 600;refresher=uac\r\n");
    feed_agent(
        &mut h,
        100,
        &reply(&inv, "200 OK", Some("agent-tag"), &extra, AGENT_SDP),
    );
    h.sent();
    h.events();
    let out = h.run_until(300_100);
    let update = &out.last().expect("UPDATE").1;
    assert!(
        update.starts_with("UPDATE sip:agent7@10.1.2.3:5062 SIP/2.0\r\n"),
        "{update}"
    );
    assert!(update.contains("\r\nSession-Expires: 600;refresher=uac\r\n"));
    feed_agent(
        &mut h,
        300_200,
        &reply(update, "481 Call/Transaction Does Not Exist", None, "", ""),
    );
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::ProbeFailed { session: SessionKey::Leg(l), code: 481 }] if *l == leg
    ));
}

#[test]
fn caller_that_neither_supports_timers_nor_allows_update_gets_no_timer() {
    let mut h = Harness::new(10);
    let (_call, _caller, ok) = call_with(
        &mut h,
        "st-8@sipp",
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n",
    );
    assert!(!ok.contains("Session-Expires"), "{ok}");
    assert!(!ok.contains("Require:"), "{ok}");
    assert!(ok.contains("\r\nSupported: timer\r\n"), "{ok}");
    assert!(h.run_until(4_000_000).is_empty(), "no refresh is ever sent");
    assert!(h.events().is_empty());
}
