//! Callers reach agents who speak their language: the real binary on loopback,
//! sipp as callers and as agents' softphones (REGISTER with digest auth, then
//! answering INVITEs).

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::agents::{
    agent, agent_json, agent_state, asks_for_adviser, brief_polish_call, dial_feature_code,
    Account, Agent, AgentPhone, OLEK,
};
use support::rtp::{report, Event, RtpListener};
use support::scenario::Site;
use support::Hotline;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The API token of the tests' services.
const API: &str = "api_token: t0k3n\n";

/// The service on flows open around the clock (every queue with
/// `queue_settings`), with `agents`, none registered yet. Keep the site as
/// long as the service.
fn staffed(queue_settings: &str, agents: &[Account]) -> (Hotline, Site) {
    let site = Site::new(queue_settings, agents);
    (site.start(API), site)
}

/// As `staffed`, with Olek alone, his phone registered (it answers after
/// ringing 300 ms).
fn olek_at_work(queue_settings: &str) -> (Hotline, Agent, Site) {
    let (hotline, site) = staffed(queue_settings, &[OLEK]);
    let olek = agent(&hotline, "olek", "haslo-1", 300);
    (hotline, olek, site)
}

#[test]
fn a_polish_caller_reaches_the_polish_agent_and_audio_flows_both_ways() {
    let (hotline, _site) = staffed("", &[OLEK, ("ivan", "parol-2", "{ru: 10}")]);
    let olek = agent(&hotline, "olek", "haslo-1", 300);
    let ivan = agent(&hotline, "ivan", "parol-2", 300);
    assert_eq!(agent_state(&hotline, "olek"), "ready");
    assert_eq!(agent_state(&hotline, "ivan"), "ready");
    assert_eq!(
        hotline.metric("hotline_agents{skill=\"pl\",state=\"ready\"}"),
        1.0
    );

    // The caller: 4 (Polski), then 0 (speak to someone); talks for 8 s.
    let caller_rtp = RtpListener::bind();
    let caller = asks_for_adviser(&hotline, "call_queue.xml", &caller_rtp, "4")
        .duration_ms(10_000)
        .spawn();
    hotline.wait_metric("hotline_calls_active{stage=\"agent\"}", 1.0, SECS(30));
    assert_eq!(agent_state(&hotline, "olek"), "on_call");
    let offers = hotline.log_lines("offering to agent");
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert!(
        offers[0].contains("agent=olek") && offers[0].contains("language=\"pl\""),
        "{offers:?}"
    );
    assert_eq!(
        agent_state(&hotline, "ivan"),
        "ready",
        "the Russian agent is not offered a Polish caller"
    );
    assert_eq!(
        hotline.metric("hotline_queue_answered_total{language=\"pl\",queue=\"advice_pl\"}"),
        1.0
    );

    // Audio both ways through the bridge: the agent (PCMA) hears the caller's
    // (PCMU) speech and the caller hears the agent's.
    let to_caller_leg: SocketAddr = caller_rtp
        .packets()
        .last()
        .expect("the caller heard the service")
        .from;
    let tone_u: Vec<u8> = (0..160)
        .map(|i| if i % 16 < 8 { 0x20 } else { 0xa0 })
        .collect();
    let tone_a: Vec<u8> = (0..160)
        .map(|i| if i % 16 < 8 { 0x2a } else { 0xaa })
        .collect();
    // Caller → agent: the agent's phone (PCMA) hears the caller (PCMU).
    let before_agent = olek.rtp.packets().len();
    for n in 0..50u16 {
        caller_rtp.send_to(&rtp_packet(0, n, 0x1111, &tone_u), to_caller_leg);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let at_agent: Vec<_> = olek.rtp.packets().into_iter().skip(before_agent).collect();
    let agent_heard = report(&at_agent);
    assert!(agent_heard.audible_frames >= 40, "agent: {agent_heard:?}");
    assert!(
        at_agent
            .iter()
            .all(|p| p.payload_type == 8 || p.payload_type == 101),
        "transcoded to the agent's PCMA"
    );
    assert!(
        at_agent.iter().all(|p| p.ssrc != 0x1111),
        "no SSRC leaks across the bridge"
    );
    // Agent → caller.
    let to_agent_leg = at_agent.last().expect("relayed").from;
    let before_caller = caller_rtp.packets().len();
    for n in 0..50u16 {
        olek.rtp
            .send_to(&rtp_packet(8, n, 0x2222, &tone_a), to_agent_leg);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let at_caller: Vec<_> = caller_rtp
        .packets()
        .into_iter()
        .skip(before_caller)
        .collect();
    let caller_heard = report(&at_caller);
    assert!(
        caller_heard.audible_frames >= 40,
        "caller: {caller_heard:?}"
    );
    assert!(
        at_caller.iter().all(|p| p.ssrc != 0x2222),
        "no SSRC leaks across the bridge"
    );

    // The caller hangs up: the agent's phone gets BYE, the call is answered.
    caller.wait_ok();
    olek.phone.wait_ok();
    hotline.wait_metric("hotline_calls_total{outcome=\"answered\"}", 1.0, SECS(5));
    let state = agent_state(&hotline, "olek");
    assert!(state == "wrap_up" || state == "ready", "{state}");
    drop(ivan);
}

/// The "0" that asks for an adviser opens the bridge while the key is still
/// down: the rest of that press, and its three end packets, must not reach
/// the agent's phone (it would hear a key the caller pressed before it was
/// connected). A key pressed once connected does cross the bridge.
#[test]
fn a_key_pressed_before_the_bridge_never_reaches_the_agent() {
    let (hotline, olek, _site) = olek_at_work("");
    let caller_rtp = RtpListener::bind();
    let caller = support::listening_caller(hotline.sip, &caller_rtp, 12_000).spawn();
    let heard = caller_rtp.wait_packets(25, SECS(10));
    let service: SocketAddr = heard.first().expect("the welcome").from;
    let (ssrc, mut seq) = (0x5eed_0001, 100u16);
    // 4 (Polski), all of it before any bridge.
    caller_rtp.press(service, '4', 101, ssrc, &mut seq, 8_000);
    hotline.wait_for_log("language chosen", SECS(5));
    std::thread::sleep(Duration::from_millis(2_500));
    // 0 goes down; while it is held the call is queued, offered and answered.
    let mut zero = Event::new(service, '0', 101, ssrc, 40_000);
    zero.updates(&caller_rtp, &mut seq, 2);
    hotline.wait_metric("hotline_calls_active{stage=\"agent\"}", 1.0, SECS(10));
    std::thread::sleep(Duration::from_millis(200));
    // The rest of the 0 comes after the bridge opened.
    zero.updates(&caller_rtp, &mut seq, 3);
    zero.end(&caller_rtp, &mut seq);
    // Then, connected, the caller presses 5.
    std::thread::sleep(Duration::from_millis(300));
    caller_rtp.press(service, '5', 101, ssrc, &mut seq, 60_000);
    std::thread::sleep(Duration::from_millis(500));

    let events: Vec<u8> = olek
        .rtp
        .packets()
        .iter()
        .filter(|p| p.payload_type != 0 && p.payload_type != 8)
        .filter_map(|p| p.payload.first().copied())
        .collect();
    assert!(
        !events.is_empty(),
        "the 5 pressed while connected crossed the bridge"
    );
    assert!(
        events.iter().all(|&e| e == 5),
        "only the 5 reached the agent, not the 0 pressed before the bridge: {events:?}"
    );
    assert_eq!(
        events.len(),
        8,
        "every packet of the 5 (five updates, three ends): {events:?}"
    );
    assert_eq!(
        hotline.count_log("digit=0"),
        1,
        "the 0 was one key press to the menu"
    );
    caller.wait_ok();
    olek.phone.wait_ok();
}

fn rtp_packet(pt: u8, seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn a_caller_hanging_up_in_the_queue_is_abandoned() {
    let (hotline, _site) = staffed("", &[("ivan", "parol-2", "{ru: 10}")]);
    let caller_rtp = RtpListener::bind();
    asks_for_adviser(&hotline, "call_queue.xml", &caller_rtp, "4")
        .duration_ms(12_000)
        .run_ok();
    hotline.wait_metric(
        "hotline_calls_total{outcome=\"abandoned_queue\"}",
        1.0,
        SECS(5),
    );
    assert_eq!(
        hotline.metric("hotline_queue_abandoned_total{language=\"pl\",queue=\"advice_pl\"}"),
        1.0
    );
    assert_eq!(
        hotline.metric("hotline_queue_wait_seconds_count{language=\"pl\",outcome=\"abandoned\",queue=\"advice_pl\"}"),
        1.0
    );
    assert_eq!(
        hotline.metric("hotline_queue_waiting{queue=\"advice_pl\"}"),
        0.0
    );
    // While waiting the caller heard hold music, not silence.
    let r = report(&caller_rtp.packets());
    assert!(r.audible_frames > 300, "{r:?}");
}

/// The call numbers of the "offering to agent" log lines, in order.
fn offered_calls(hotline: &Hotline) -> Vec<(u64, String)> {
    hotline
        .log_lines("offering to agent")
        .into_iter()
        .filter_map(|l| {
            let call = l.split("call=").nth(1)?.split(' ').next()?.parse().ok()?;
            let agent = l.split("agent=").nth(1)?.split(' ').next()?.to_string();
            Some((call, agent))
        })
        .collect()
}

#[test]
fn two_callers_and_one_agent_are_served_in_arrival_order() {
    let (hotline, _site) = staffed("wrap_up: 1s", &[OLEK]);
    // The phone takes two calls, one after the other.
    let olek = AgentPhone::new(&hotline, "agent_answer.xml", 300)
        .arg("-m")
        .arg("2")
        .register("olek", "haslo-1");

    let caller = |talk_ms: u64| {
        let rtp = RtpListener::bind();
        let sipp = asks_for_adviser(&hotline, "call_queue.xml", &rtp, "4")
            .duration_ms(talk_ms)
            .spawn();
        (sipp, rtp)
    };
    // The first caller talks for about 6 s after joining; the second joins
    // a second later and has to wait for that call and the wrap-up.
    let (first, _first_rtp) = caller(6_000);
    std::thread::sleep(Duration::from_millis(1_000));
    let (second, _second_rtp) = caller(16_000);
    hotline.wait_metric("hotline_queue_waiting{queue=\"advice_pl\"}", 1.0, SECS(15));
    first.wait_ok();
    let offers = offered_calls(&hotline);
    assert_eq!(offers.len(), 1, "the second caller still waits: {offers:?}");
    hotline.wait_metric(
        "hotline_queue_answered_total{language=\"pl\",queue=\"advice_pl\"}",
        2.0,
        SECS(10),
    );
    let offers = offered_calls(&hotline);
    assert_eq!(offers.len(), 2, "{offers:?}");
    assert!(offers[0].0 < offers[1].0, "arrival order: {offers:?}");
    assert!(offers.iter().all(|(_, a)| a == "olek"), "{offers:?}");
    second.wait_ok();
    olek.phone.wait_ok();
    assert_eq!(
        hotline.metric("hotline_queue_waiting{queue=\"advice_pl\"}"),
        0.0
    );
    assert_eq!(
        hotline.metric("hotline_queue_wait_seconds_count{language=\"pl\",outcome=\"answered\",queue=\"advice_pl\"}"),
        2.0
    );
}

#[test]
fn the_api_pauses_an_agent_who_is_then_not_offered_callers() {
    let (hotline, olek, _site) = olek_at_work("");
    assert_eq!(agent_state(&hotline, "olek"), "ready");
    let pause = r#"{"state":"paused","reason":"lunch"}"#;

    let (status, _) = hotline.post("/api/agents/olek/state", None, pause);
    assert_eq!(status, 401, "no token");
    let (status, _) = hotline.post("/api/agents/olek/state", Some("wrong"), pause);
    assert_eq!(status, 401, "wrong token");
    let (status, body) = hotline.post("/api/agents/nobody/state", Some("t0k3n"), pause);
    assert_eq!(status, 404, "{body}");
    assert_eq!(agent_state(&hotline, "olek"), "ready");

    let (status, body) = hotline.post("/api/agents/olek/state", Some("t0k3n"), pause);
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent_state(&hotline, "olek"), "paused");
    assert_eq!(
        hotline.metric("hotline_agents{skill=\"pl\",state=\"paused\"}"),
        1.0
    );
    assert_eq!(
        hotline.metric("hotline_agents{skill=\"pl\",state=\"ready\"}"),
        0.0
    );

    // A Polish caller waits and gives up: the paused agent is never offered.
    let caller_rtp = RtpListener::bind();
    asks_for_adviser(&hotline, "call_queue.xml", &caller_rtp, "4")
        .duration_ms(5_000)
        .run_ok();
    hotline.wait_metric(
        "hotline_queue_abandoned_total{language=\"pl\",queue=\"advice_pl\"}",
        1.0,
        SECS(5),
    );
    assert!(offered_calls(&hotline).is_empty());
    assert_eq!(agent_state(&hotline, "olek"), "paused");

    // Ready again: the next caller reaches the agent.
    let ready = r#"{"state":"ready"}"#;
    let (status, body) = hotline.post("/api/agents/olek/state", Some("t0k3n"), ready);
    assert_eq!(status, 200, "{body}");
    asks_for_adviser(&hotline, "call_queue.xml", &caller_rtp, "4")
        .duration_ms(3_000)
        .run_ok();
    olek.phone.wait_ok();
    assert_eq!(offered_calls(&hotline).len(), 1);
    assert_eq!(
        hotline.metric("hotline_queue_waiting{queue=\"advice_pl\"}"),
        0.0
    );
}

#[test]
fn the_agent_hanging_up_ends_the_callers_call() {
    let (hotline, _site) = staffed("wrap_up: 2s", &[OLEK]);
    let olek = AgentPhone::new(&hotline, "agent_hangs_up.xml", 3_000).register("olek", "haslo-1");
    let caller_rtp = RtpListener::bind();
    let caller = asks_for_adviser(&hotline, "call_queue_until_bye.xml", &caller_rtp, "4").spawn();
    // The caller's sipp succeeds only when it receives the BYE.
    caller.wait_ok();
    olek.phone.wait_ok();
    hotline.wait_metric("hotline_calls_total{outcome=\"answered\"}", 1.0, SECS(5));
    assert_eq!(agent_state(&hotline, "olek"), "wrap_up");
    let end = std::time::Instant::now() + SECS(6);
    while agent_state(&hotline, "olek") != "ready" {
        assert!(std::time::Instant::now() < end, "wrap-up never ends");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        hotline.metric("hotline_agents{skill=\"pl\",state=\"ready\"}"),
        1.0
    );
}

#[test]
fn a_pause_asked_for_during_wrap_up_is_answered_as_pending() {
    let (hotline, olek, _site) = olek_at_work("wrap_up: 8s");
    let mut ws = support::ws::WsClient::connect(hotline.http, "/ws").expect("upgrade");
    ws.wait_for("snapshot", SECS(5));
    // A Polish caller talks to Olek for a moment and hangs up.
    brief_polish_call(&hotline, olek);
    assert_eq!(agent_state(&hotline, "olek"), "wrap_up");

    // Olek asks for a pause while wrapping up: not yet, and the answer says so.
    let (status, body) = hotline.post(
        "/api/agents/olek/state",
        Some("t0k3n"),
        r#"{"state":"paused","reason":"lunch"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        reply,
        serde_json::json!({"state": "wrap_up", "pending": "paused"})
    );
    let listed = agent_json(&hotline, "olek");
    assert_eq!(listed["state"], "wrap_up", "{listed}");
    assert_eq!(listed["pending"], "paused", "{listed}");
    // The live stream carries it too.
    let event = wait_agent_event(&mut ws, |e| e["pending"] == "paused");
    assert_eq!(event["agent"], "olek");
    assert_eq!(event["state"], "wrap_up");

    // Wrap-up over: paused, with nothing pending any more.
    let event = wait_agent_event(&mut ws, |e| e["state"] == "paused");
    assert_eq!(event["pending"], serde_json::Value::Null, "{event}");
    assert_eq!(event["reason"], "lunch", "{event}");
    let listed = agent_json(&hotline, "olek");
    assert_eq!(listed["state"], "paused", "{listed}");
    assert_eq!(listed["pending"], serde_json::Value::Null, "{listed}");
    assert_eq!(listed["reason"], "lunch", "{listed}");
}

#[test]
fn a_pause_dialled_from_the_phone_during_wrap_up_says_it_follows_the_wrap_up() {
    let (hotline, olek, _site) = olek_at_work("wrap_up: 8s");
    brief_polish_call(&hotline, olek);
    assert_eq!(agent_state(&hotline, "olek"), "wrap_up");
    dial_feature_code(&hotline, "olek", "haslo-1", "*2");
    // The phone is told the truth: still wrapping up, paused after it.
    let line = hotline.wait_for_log("feature code", SECS(2));
    assert!(
        line.contains("agent olek is now wrap_up; paused after it"),
        "{line}"
    );
    let listed = agent_json(&hotline, "olek");
    assert_eq!(listed["state"], "wrap_up", "{listed}");
    assert_eq!(listed["pending"], "paused", "{listed}");
}

/// The next `agent_state` event that satisfies `ok`, within 15 s.
fn wait_agent_event(
    ws: &mut support::ws::WsClient,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = std::time::Instant::now() + SECS(15);
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "no such agent_state event within 15 s");
        let event = ws.wait_for("agent_state", left);
        if ok(&event) {
            return event;
        }
    }
}

#[test]
fn a_polish_caller_escalates_to_the_english_agent_after_the_configured_wait() {
    let site = Site::new("", &[("emma", "password-3", "{en: 10}")]);
    site.edit_flow(
        "adviser.yaml",
        "escalate: { after: 5m, to: advice_en }",
        "escalate: { after: 10s, to: advice_en }",
    );
    let hotline = site.start(API);
    let emma = agent(&hotline, "emma", "password-3", 300);
    let caller_rtp = RtpListener::bind();
    let caller = asks_for_adviser(&hotline, "call_queue.xml", &caller_rtp, "4")
        .duration_ms(16_000)
        .spawn();
    hotline.wait_metric("hotline_queue_waiting{queue=\"advice_pl\"}", 1.0, SECS(15));
    let joined = std::time::Instant::now();
    // On joining the caller hears, in Polish, that they are queued.
    let line = hotline.wait_for_log("queue announcement", SECS(5));
    assert!(
        line.contains("queue_joined") && line.contains("language=\"pl\""),
        "{line}"
    );
    hotline.wait_for_log("offering to agent", SECS(20));
    let waited = joined.elapsed();
    assert!(waited >= SECS(8), "offered after only {waited:?}");
    let offers = offered_calls(&hotline);
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(offers[0].1, "emma");
    assert_eq!(hotline.count_log("queue escalated"), 1);
    let escalated: Vec<String> = hotline
        .log_lines("queue announcement")
        .into_iter()
        .filter(|l| l.contains("queue_escalated"))
        .collect();
    assert_eq!(escalated.len(), 1, "the caller is told about English");
    caller.wait_ok();
    emma.phone.wait_ok();
    hotline.wait_metric("hotline_calls_total{outcome=\"answered\"}", 1.0, SECS(5));
    assert_eq!(
        hotline.metric("hotline_queue_waiting{queue=\"advice_pl\"}"),
        0.0
    );
}

#[test]
fn an_agent_who_does_not_answer_is_skipped_and_paused() {
    let (hotline, _site) = staffed(
        "ring_timeout: 5s",
        &[("zofia", "haslo-9", "{pl: 10}"), OLEK],
    );
    // Zofia registers first, so she is the longest idle and is offered first.
    let zofia = AgentPhone::new(&hotline, "agent_no_answer.xml", 0).register("zofia", "haslo-9");
    std::thread::sleep(Duration::from_millis(100));
    let olek = agent(&hotline, "olek", "haslo-1", 300);

    let caller_rtp = RtpListener::bind();
    let caller = asks_for_adviser(&hotline, "call_queue.xml", &caller_rtp, "4")
        .duration_ms(12_000)
        .spawn();
    hotline.wait_metric(
        "hotline_queue_answered_total{language=\"pl\",queue=\"advice_pl\"}",
        1.0,
        SECS(25),
    );
    let offers = offered_calls(&hotline);
    let agents: Vec<&str> = offers.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(agents, ["zofia", "olek"], "{offers:?}");
    zofia.phone.wait_ok();
    assert_eq!(agent_state(&hotline, "zofia"), "paused");
    assert_eq!(
        hotline.metric("hotline_agents{skill=\"pl\",state=\"paused\"}"),
        1.0
    );
    caller.wait_ok();
    olek.phone.wait_ok();
}

#[test]
fn feature_codes_from_the_registered_phone_pause_and_ready_the_agent() {
    let (hotline, _site) = staffed("", &[OLEK]);
    let code = |code: &str| dial_feature_code(&hotline, "olek", "haslo-1", code);
    code("*2");
    assert_eq!(agent_state(&hotline, "olek"), "paused");
    let line = hotline.wait_for_log("feature code", SECS(2));
    assert!(
        line.contains("state=paused") || line.contains("state=\"paused\""),
        "{line}"
    );
    assert_eq!(
        hotline.metric("hotline_agents{skill=\"pl\",state=\"paused\"}"),
        1.0
    );
    code("*1");
    assert_eq!(agent_state(&hotline, "olek"), "ready");
    assert_eq!(
        hotline.metric("hotline_agents{skill=\"pl\",state=\"paused\"}"),
        0.0
    );
}

#[test]
fn an_agent_sets_its_state_over_the_websocket() {
    let (hotline, _olek, _site) = olek_at_work("");
    assert_eq!(agent_state(&hotline, "olek"), "ready");
    let mut ws = support::ws::WsClient::connect(hotline.http, "/ws").expect("upgrade");
    ws.wait_for("snapshot", SECS(5));
    ws.send_text(r#"{"type":"set_agent_state","agent":"olek","state":"paused","reason":"lunch","token":"wrong"}"#);
    let refused = ws.wait_for("command_result", SECS(5));
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(agent_state(&hotline, "olek"), "ready");
    ws.send_text(r#"{"type":"set_agent_state","agent":"olek","state":"paused","reason":"lunch","token":"t0k3n"}"#);
    let done = ws.wait_for("command_result", SECS(5));
    assert_eq!(done["ok"], true, "{done}");
    assert_eq!(done["state"], "paused");
    assert_eq!(agent_state(&hotline, "olek"), "paused");
    let event = ws.wait_for("agent_state", SECS(5));
    assert_eq!(event["agent"], "olek");
}

#[test]
fn a_lithuanian_caller_with_no_lithuanian_agent_in_is_told_then_reaches_the_english_agent() {
    // Shipped: advice_lt falls back to English, and long waits get a message.
    let site = Site::new(
        "",
        &[
            ("emma", "password-3", "{en: 10}"),
            ("vytas", "slaptas-4", "{lt: 10}"),
        ],
    );
    site.edit_flow(
        "adviser.yaml",
        "- { after: 10m, every: 10m, play: [still_waiting, self_service] }",
        "- { after: 3s, play: still_waiting }",
    );
    let hotline = site.start(API);
    // Vytas (Lithuanian) never logs in; Emma (English) is at work but paused.
    let emma = agent(&hotline, "emma", "password-3", 300);
    let pause = r#"{"state":"paused","reason":"meeting"}"#;
    let (status, body) = hotline.post("/api/agents/emma/state", Some("t0k3n"), pause);
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent_state(&hotline, "vytas"), "logged_out");

    let caller_rtp = RtpListener::bind();
    let caller = asks_for_adviser(&hotline, "call_queue.xml", &caller_rtp, "7")
        .duration_ms(14_000)
        .spawn();
    // The caller keeps the Lithuanian line (and its figures) ...
    hotline.wait_metric("hotline_queue_waiting{queue=\"advice_lt\"}", 1.0, SECS(15));
    let line = hotline.wait_for_log("queue falls back to another language", SECS(5));
    assert!(line.contains("fallback=\"en\""), "{line}");
    // ... and is told, in Lithuanian, that an English speaker will answer.
    let told = hotline.wait_for_log("queue_fallback", SECS(5));
    assert!(
        told.contains("queue announcement") && told.contains("language=\"lt\""),
        "{told}"
    );
    // The flow's wait message comes after 3 s, in Lithuanian too.
    let message = hotline.wait_for_log("still_waiting", SECS(10));
    assert!(message.contains("language=\"lt\""), "{message}");
    assert!(offered_calls(&hotline).is_empty(), "Emma is paused");
    let heard = report(&caller_rtp.packets());
    assert!(
        heard.audible_frames >= 100,
        "caller hears the prompts: {heard:?}"
    );

    // Emma gets ready and takes the Lithuanian caller.
    let ready = r#"{"state":"ready"}"#;
    let (status, body) = hotline.post("/api/agents/emma/state", Some("t0k3n"), ready);
    assert_eq!(status, 200, "{body}");
    hotline.wait_for_log("offering to agent", SECS(5));
    let offers = offered_calls(&hotline);
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(offers[0].1, "emma");
    caller.wait_ok();
    emma.phone.wait_ok();
    hotline.wait_metric("hotline_calls_total{outcome=\"answered\"}", 1.0, SECS(5));
    hotline.wait_metric(
        "hotline_queue_answered_total{language=\"lt\",queue=\"advice_lt\"}",
        1.0,
        SECS(5),
    );
    // The queue log says so too.
    hotline.wait_metric("hotline_queue_log_written_total", 5.0, SECS(10));
    let db = rusqlite::Connection::open(hotline.data_dir().join("records.db")).expect("db");
    let events: Vec<(String, Option<String>)> = db
        .prepare("SELECT event, info FROM queue_log WHERE queue = 'advice_lt' ORDER BY time_ms, id")
        .expect("select")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        ["joined", "fallback", "offered", "answered"],
        "{events:?}"
    );
    assert_eq!(events[1].1.as_deref(), Some(r#"{"language":"en"}"#));
}
