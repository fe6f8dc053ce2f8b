//! Callers reach agents who speak their language: the real binary on loopback,
//! sipp as callers and as agents' softphones (REGISTER with digest auth, then
//! answering INVITEs).

mod support;

use hotline::registrar::{ha1, Algorithm};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::rtp::{report, RtpListener};
use support::{copy_flows, free_sip_port, repo, Hotline, Options, RunningSipp};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Agents file with the given (id, password, skills) accounts.
fn agents_yaml(agents: &[(&str, &str, &str)]) -> String {
    let mut out = String::from("realm: hotline\nagents:\n");
    for (id, password, skills) in agents {
        out.push_str(&format!(
            "  - id: {id}\n    name: {id}\n    sip_username: {id}\n    ha1: {}\n    skills: {skills}\n    topics: {{advice: 5}}\n",
            ha1(Algorithm::Md5, id, "hotline", password)
        ));
    }
    out
}

/// A copy of the default flows that is open every day (no holiday closes it
/// while the test runs) with queue settings a test can wait for.
fn test_flows(extra_queue_settings: &str) -> tempfile::TempDir {
    let flows = copy_flows(&repo().join("ivr-flows"));
    let schedules = flows.path().join("schedules.yaml");
    let text = std::fs::read_to_string(&schedules).expect("schedules");
    std::fs::write(&schedules, text.replace("    holidays: norway\n", "")).expect("write");
    if !extra_queue_settings.is_empty() {
        let queues = flows.path().join("queues.yaml");
        let text = std::fs::read_to_string(&queues).expect("queues");
        let text = text.replace(
            " max_wait: 1h }",
            &format!(" max_wait: 1h, {extra_queue_settings} }}"),
        );
        std::fs::write(&queues, text).expect("write");
    }
    flows
}

struct Agent {
    phone: RunningSipp,
    rtp: RtpListener,
}

/// Starts an agent's phone (answering on its own port) and registers it.
fn agent(hotline: &Hotline, id: &str, password: &str, ring_ms: u64) -> Agent {
    let rtp = RtpListener::bind();
    let phone_port = free_sip_port();
    let phone = hotline
        .sipp("agent_answer.xml")
        .port(phone_port)
        .key("rtp_port", rtp.port)
        .key("codecs", "8 0 101")
        .duration_ms(ring_ms)
        .spawn();
    std::thread::sleep(Duration::from_millis(200));
    hotline
        .sipp("agent_register.xml")
        .key("agent_user", id)
        .arg("-au")
        .arg(id)
        .arg("-ap")
        .arg(password)
        .key("contact_port", phone_port)
        .key("expires", 300)
        .run_ok();
    Agent { phone, rtp }
}

fn agent_state(hotline: &Hotline, id: &str) -> String {
    let (status, body) = hotline.get("/api/agents");
    assert_eq!(status, 200, "{body}");
    let agents: serde_json::Value = serde_json::from_str(&body).expect("json");
    agents
        .as_array()
        .expect("array")
        .iter()
        .find(|a| a["id"] == id)
        .and_then(|a| a["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

fn start(flows: &Path, agents: &str, extra_config: &str) -> (Hotline, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents_file = dir.path().join("agents.yaml");
    std::fs::write(&agents_file, agents).expect("write agents");
    let hotline = Hotline::start_with(Options {
        flows: Some(flows.to_path_buf()),
        config: Some(format!(
            "agents_file: {}\napi_token: t0k3n\n{extra_config}",
            agents_file.display()
        )),
    });
    (hotline, dir)
}

#[test]
fn a_polish_caller_reaches_the_polish_agent_and_audio_flows_both_ways() {
    let flows = test_flows("");
    let (hotline, _dir) = start(
        flows.path(),
        &agents_yaml(&[
            ("olek", "haslo-1", "{pl: 10}"),
            ("ivan", "parol-2", "{ru: 10}"),
        ]),
        "",
    );
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
    let caller = hotline
        .sipp("call_queue.xml")
        .key("rtp_port", caller_rtp.port)
        .key("codecs", "0 101")
        .key("digit", "4")
        .key("digit2", "0")
        .duration_ms(10_000)
        .spawn();
    hotline.wait_metric("hotline_calls_active{stage=\"agent\"}", 1.0, SECS(30));
    assert_eq!(agent_state(&hotline, "olek"), "on_call");
    let offers: Vec<String> = hotline
        .log()
        .into_iter()
        .filter(|l| l.contains("offering to agent"))
        .collect();
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
    let flows = test_flows("");
    let (hotline, _dir) = start(
        flows.path(),
        &agents_yaml(&[("ivan", "parol-2", "{ru: 10}")]),
        "",
    );
    let caller_rtp = RtpListener::bind();
    hotline
        .sipp("call_queue.xml")
        .key("rtp_port", caller_rtp.port)
        .key("codecs", "0 101")
        .key("digit", "4")
        .key("digit2", "0")
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
