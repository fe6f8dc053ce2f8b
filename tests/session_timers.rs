//! RFC 4028 session timers and vanished peers, against the real binary on
//! loopback with sipp as callers and agents' phones. Expiry timing is tested
//! with a fake clock in `src/sip/session_timer.rs` and the endpoint's tests;
//! here: negotiation, refresh by UPDATE, 422, and a vanished agent ending the
//! call end to end.

mod support;

use std::time::Duration;
use support::agents::{adviser_call, vanishing_agent, OLEK};
use support::scenario::Site;
use support::Hotline;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn caller_with_session_timer_gets_it_and_refreshes_with_update() {
    let hotline = Hotline::start();
    hotline
        .sipp("call_session_timer.xml")
        .key("rtp_port", 6000)
        .key("se", "120;refresher=uac")
        .key("timer_header", "Supported")
        .run_ok();
    assert!(hotline.metric("hotline_sip_requests_total{method=\"UPDATE\"}") >= 1.0);
}

#[test]
fn require_timer_is_no_longer_refused_with_420() {
    let hotline = Hotline::start();
    hotline
        .sipp("call_session_timer.xml")
        .key("rtp_port", 6000)
        .key("se", "120;refresher=uac")
        .key("timer_header", "Require")
        .run_ok();
    assert_eq!(
        hotline.metric("hotline_sip_responses_total{code=\"420\"}"),
        0.0
    );
}

#[test]
fn too_short_session_interval_gets_422_with_min_se() {
    let hotline = Hotline::start();
    hotline.sipp("call_session_too_short.xml").run_ok();
    assert_eq!(
        hotline.metric("hotline_sip_responses_total{code=\"422\"}"),
        1.0
    );
    assert_eq!(hotline.metric("hotline_calls_active{stage=\"ivr\"}"), 0.0);
}

/// An agent answers a bridged call and then vanishes: no RTP, no answer to
/// the in-dialog OPTIONS. After `rtp_timeout_s` the probe goes out; when it
/// times out (64*T1) both legs get a BYE and the agent is free again.
#[test]
fn a_vanished_agent_is_probed_and_both_legs_get_a_bye() {
    let site = Site::new("", &[OLEK]);
    let hotline = site.start("rtp_timeout_s: 2\n");
    let olek = vanishing_agent(&hotline, "olek", "haslo-1", 300);
    // The caller stays: it answers the probes its own silence brings (-aa),
    // and waits for our BYE.
    let caller = adviser_call(hotline.sip, "call_queue_until_bye.xml", 6000, "4")
        .arg("-aa")
        .arg("-timeout")
        .arg("120s")
        .spawn();
    hotline.wait_metric("hotline_calls_active{stage=\"agent\"}", 1.0, SECS(30));
    hotline.wait_for_log("no RTP from the agent: probing", SECS(10));
    hotline.wait_for_log("agent gone: in-dialog probe failed", SECS(45));
    // Both legs got their BYE: the caller's scenario ends on it, and so does
    // the phone's.
    caller.wait_ok();
    olek.phone.wait_ok();
    hotline.wait_metric("hotline_calls_total{outcome=\"failed\"}", 1.0, SECS(5));
    assert_eq!(hotline.metric("hotline_calls_active{stage=\"agent\"}"), 0.0);
    let line = hotline.wait_for_log("call ended", SECS(5));
    assert!(
        line.contains("outcome=\"failed\"") || line.contains("outcome=failed"),
        "{line}"
    );
}
