//! Agents for queue tests: an `agents.yaml`, a copy of the default flows that
//! is open every day, and a sipp softphone that registers and answers.

use super::rtp::RtpListener;
use super::{copy_flows, free_sip_port, repo, Hotline, RunningSipp, Sipp};
use hotline::registrar::{ha1, Algorithm};
use std::time::Duration;

/// `agents.yaml` with (id, password, skills) accounts, e.g. `("olek", "pw", "{pl: 10}")`.
pub fn agents_yaml(agents: &[(&str, &str, &str)]) -> String {
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
/// while the test runs), with extra settings for every queue.
pub fn test_flows(extra_queue_settings: &str) -> tempfile::TempDir {
    let flows = copy_flows(&repo().join("ivr-flows"));
    // Neither a holiday nor a short day (24 and 31 December) closes it.
    std::fs::write(
        flows.path().join("schedules.yaml"),
        "schedules:\n  staffed:\n    timezone: Europe/Oslo\n    weekly:\n      daily: \"00:00-24:00\"\n",
    )
    .expect("write schedules");
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

/// An agent's softphone: answers on its own port after ringing `ring_ms`,
/// with audio at `rtp`.
pub struct Agent {
    pub phone: RunningSipp,
    pub rtp: RtpListener,
}

/// Starts an agent's phone and registers it (digest auth) with the service.
pub fn agent(hotline: &Hotline, id: &str, password: &str, ring_ms: u64) -> Agent {
    agent_phone(hotline, id, password, ring_ms, &[])
}

/// An agent whose phone answers and then goes silent: it sends no RTP (the
/// test never does) and leaves in-dialog requests such as OPTIONS
/// unanswered (sipp without default behaviours ignores them), but still
/// answers the final BYE.
pub fn vanishing_agent(hotline: &Hotline, id: &str, password: &str, ring_ms: u64) -> Agent {
    agent_phone(
        hotline,
        id,
        password,
        ring_ms,
        // Its call lasts beyond the probe's 32 s: a longer overall timeout.
        &["-default_behaviors", "none", "-timeout", "120s"],
    )
}

fn agent_phone(
    hotline: &Hotline,
    id: &str,
    password: &str,
    ring_ms: u64,
    sipp_args: &[&str],
) -> Agent {
    let rtp = RtpListener::bind();
    let phone_port = free_sip_port();
    let mut phone = hotline
        .sipp("agent_answer.xml")
        .port(phone_port)
        .key("rtp_port", rtp.port)
        .key("codecs", "8 0 101")
        .duration_ms(ring_ms);
    for a in sipp_args {
        phone = phone.arg(a);
    }
    let phone = phone.spawn();
    std::thread::sleep(Duration::from_millis(200));
    register(hotline, id, password, phone_port);
    Agent { phone, rtp }
}

/// Registers agent `id` (digest auth with `password`) for a phone answering
/// on `contact_port`, for 300 s.
pub fn register(hotline: &Hotline, id: &str, password: &str, contact_port: u16) {
    hotline
        .sipp("agent_register.xml")
        .key("agent_user", id)
        .arg("-au")
        .arg(id)
        .arg("-ap")
        .arg(password)
        .key("contact_port", contact_port)
        .key("expires", 300)
        .run_ok();
}

/// A caller (sipp `scenario`) who presses `language` at the menu, then 0 for
/// an adviser, with audio at `rtp`.
pub fn asks_for_adviser(
    hotline: &Hotline,
    scenario: &str,
    rtp: &RtpListener,
    language: &str,
) -> Sipp {
    hotline
        .sipp(scenario)
        .key("rtp_port", rtp.port)
        .key("codecs", "0 101")
        .key("digit", language)
        .key("digit2", "0")
}
