//! Agents for queue tests: an `agents.yaml`, a copy of the default flows that
//! is open every day, sipp softphones that register and answer, callers who
//! ask for an adviser, and what `/api/agents` says of an agent.

use super::rtp::RtpListener;
use super::{copy_flows, free_sip_port, repo, Hotline, Sipp};
use hotline::registrar::{ha1, Algorithm};
use std::net::SocketAddr;
use std::time::Duration;

/// An account of `agents.yaml`: (id, password, skills), e.g.
/// `("olek", "pw", "{pl: 10}")`.
pub type Account<'a> = (&'a str, &'a str, &'a str);

/// Olek, who speaks Polish (password `haslo-1`).
pub const OLEK: Account<'static> = ("olek", "haslo-1", "{pl: 10}");

/// `agents.yaml` with these accounts.
pub fn agents_yaml(agents: &[Account]) -> String {
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
    pub phone: super::RunningSipp,
    pub rtp: RtpListener,
}

/// Starts an agent's phone and registers it (digest auth) with the service.
pub fn agent(hotline: &Hotline, id: &str, password: &str, ring_ms: u64) -> Agent {
    AgentPhone::new(hotline, "agent_answer.xml", ring_ms).register(id, password)
}

/// An agent whose phone answers and then goes silent: it sends no RTP (the
/// test never does) and leaves in-dialog requests such as OPTIONS
/// unanswered (sipp without default behaviours ignores them), but still
/// answers the final BYE.
pub fn vanishing_agent(hotline: &Hotline, id: &str, password: &str, ring_ms: u64) -> Agent {
    AgentPhone::new(hotline, "agent_answer.xml", ring_ms)
        .arg("-default_behaviors")
        .arg("none")
        // Its call lasts beyond the probe's 32 s: a longer overall timeout.
        .arg("-timeout")
        .arg("120s")
        .register(id, password)
}

/// An agent's phone before it starts: a sipp scenario of tests/sipp
/// (`agent_answer.xml`, `agent_hangs_up.xml`, ...) on a port of its own,
/// offering PCMA (then PCMU) with audio at a listener of its own, its call
/// lasting `ring_ms` (the scenario's bare `<pause/>`).
pub struct AgentPhone {
    sipp: Sipp,
    target: SocketAddr,
    port: u16,
    rtp: RtpListener,
}

impl AgentPhone {
    /// A phone of `hotline`'s.
    pub fn new(hotline: &Hotline, scenario: &str, ring_ms: u64) -> AgentPhone {
        AgentPhone::at(hotline.sip, scenario, ring_ms)
    }

    /// A phone whose sipp is pointed at `target` (a node, or a front).
    pub fn at(target: SocketAddr, scenario: &str, ring_ms: u64) -> AgentPhone {
        let rtp = RtpListener::bind();
        let port = free_sip_port();
        let sipp = Sipp::at(target, scenario)
            .port(port)
            .key("rtp_port", rtp.port)
            .key("codecs", "8 0 101")
            .duration_ms(ring_ms);
        AgentPhone {
            sipp,
            target,
            port,
            rtp,
        }
    }

    /// One more sipp argument (e.g. `-m`, then `2`, for a phone taking two
    /// calls).
    pub fn arg(mut self, a: &str) -> AgentPhone {
        self.sipp = self.sipp.arg(a);
        self
    }

    /// Starts the sipp without registering (a trunk's gateway, which is
    /// called at its own address).
    pub fn start(self) -> (Agent, u16) {
        let port = self.port;
        let phone = self.sipp.spawn();
        std::thread::sleep(Duration::from_millis(200));
        (
            Agent {
                phone,
                rtp: self.rtp,
            },
            port,
        )
    }

    /// Starts the phone and registers `id` (digest auth with `password`)
    /// with the address its sipp is pointed at.
    pub fn register(self, id: &str, password: &str) -> Agent {
        let registrar = self.target;
        self.register_through(registrar, id, password)
    }

    /// Starts the phone and registers `id` through `registrar` (a front
    /// that passes the registration to a node).
    pub fn register_through(self, registrar: SocketAddr, id: &str, password: &str) -> Agent {
        let phone = self.sipp.spawn();
        std::thread::sleep(Duration::from_millis(200));
        signed_in(Sipp::at(registrar, "agent_register.xml"), id, password)
            .key("contact_port", self.port)
            .key("expires", 300)
            .run_ok();
        Agent {
            phone,
            rtp: self.rtp,
        }
    }
}

/// A Polish caller asks for an adviser, reaches `agent` (the only one free),
/// talks for about 2 s and hangs up; the agent's phone, which takes one
/// call, is done too.
pub fn brief_polish_call(hotline: &Hotline, agent: Agent) {
    let rtp = RtpListener::bind();
    asks_for_adviser(hotline, "call_queue.xml", &rtp, "4")
        .duration_ms(2_000)
        .run_ok();
    agent.phone.wait_ok();
}

/// The agent's phone dials a feature code (`*1` ready, `*2` paused, ...).
pub fn dial_feature_code(hotline: &Hotline, id: &str, password: &str, code: &str) {
    signed_in(hotline.sipp("agent_feature_code.xml"), id, password)
        .key("code", code)
        .run_ok();
}

/// A request of agent `id`'s, answering a digest challenge with `password`.
fn signed_in(sipp: Sipp, id: &str, password: &str) -> Sipp {
    sipp.key("agent_user", id)
        .arg("-au")
        .arg(id)
        .arg("-ap")
        .arg(password)
}

/// A caller (sipp `scenario`) who presses `language` at the menu, then 0 for
/// an adviser, with audio at `rtp`.
pub fn asks_for_adviser(
    hotline: &Hotline,
    scenario: &str,
    rtp: &RtpListener,
    language: &str,
) -> Sipp {
    adviser_call(hotline.sip, scenario, rtp.port, language)
}

/// The same caller calling any SIP address (a front such as Kamailio), with
/// audio at `rtp_port`.
pub fn adviser_call(target: SocketAddr, scenario: &str, rtp_port: u16, language: &str) -> Sipp {
    Sipp::at(target, scenario)
        .key("rtp_port", rtp_port)
        .key("codecs", "0 101")
        .key("digit", language)
        .key("digit2", "0")
}

/// One agent as `GET /api/agents` lists it (null when missing); the API must
/// answer 200 with a list.
pub fn agent_json(hotline: &Hotline, id: &str) -> serde_json::Value {
    let (status, body) = hotline.get("/api/agents");
    assert_eq!(status, 200, "{body}");
    let agents: serde_json::Value = serde_json::from_str(&body).expect("json");
    find_agent(agents.as_array().expect("array"), id)
}

/// An agent's state as `GET /api/agents` lists it (`missing` when it does
/// not); the API must answer 200 with a list.
pub fn agent_state(hotline: &Hotline, id: &str) -> String {
    state_of(&agent_json(hotline, id))
}

/// An agent's state as a node shows it now, to poll for: `missing` also
/// while the API answers anything but a list (a node busy or restarting).
pub fn state_seen_by(hotline: &Hotline, id: &str) -> String {
    let (_, body) = hotline.get("/api/agents");
    let agents: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    state_of(&find_agent(
        agents.as_array().map_or(&[], Vec::as_slice),
        id,
    ))
}

fn find_agent(agents: &[serde_json::Value], id: &str) -> serde_json::Value {
    agents
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap_or_default()
}

fn state_of(agent: &serde_json::Value) -> String {
    agent["state"].as_str().unwrap_or("missing").to_string()
}
