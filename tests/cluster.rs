//! Two nodes, one hotline: real `hotline` processes sharing their queues
//! through a real Redis, with sipp callers and sipp agents' phones.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::agents::{agent, agents_yaml, asks_for_adviser, test_flows};
use support::redis::Redis;
use support::rtp::RtpListener;
use support::{Hotline, Options};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// One node of the cluster, with the flows and agents every node shares.
fn node(name: &str, redis: &Redis, flows: &Path, agents_file: &Path) -> Hotline {
    Hotline::start_with(Options {
        flows: Some(flows.to_path_buf()),
        config: Some(format!(
            "agents_file: {}\napi_token: t0k3n\nnode_id: {name}\nredis: {}\n",
            agents_file.display(),
            redis.url()
        )),
    })
}

fn agent_state(hotline: &Hotline, id: &str) -> String {
    let (_, body) = hotline.get("/api/agents");
    let agents: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    agents
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id))
        .and_then(|a| a["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

/// Waits until `check` holds, or panics naming `what`.
fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < end, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_caller_on_one_node_reaches_an_agent_registered_through_the_other() {
    let redis = Redis::start();
    let flows = test_flows("");
    let dir = tempfile::tempdir().expect("tempdir");
    let agents_file = dir.path().join("agents.yaml");
    std::fs::write(
        &agents_file,
        agents_yaml(&[("olek", "haslo-1", "{pl: 10}")]),
    )
    .expect("agents");
    let a = node("a", &redis, flows.path(), &agents_file);
    let b = node("b", &redis, flows.path(), &agents_file);
    // Olek's phone registers with node B only.
    let olek = agent(&b, "olek", "haslo-1", 300);
    wait_until("olek ready as node A sees him", SECS(10), || {
        agent_state(&a, "olek") == "ready"
    });
    // A Polish caller calls node A and asks for an adviser.
    let caller_rtp = RtpListener::bind();
    let caller = asks_for_adviser(&a, "call_queue.xml", &caller_rtp, "4")
        .duration_ms(6_000)
        .spawn();
    // Node A rings Olek's phone (registered with B), and they talk.
    a.wait_for_log("connected to agent", SECS(20));
    wait_until("olek on the call", SECS(5), || {
        agent_state(&b, "olek") == "on_call"
    });
    // The caller speaks; Olek hears it through node A's bridge.
    let to_caller_leg = caller_rtp
        .packets()
        .last()
        .expect("the caller heard the service")
        .from;
    let before = olek.rtp.packets().len();
    caller_rtp.speak(to_caller_leg, 0, 50);
    std::thread::sleep(Duration::from_millis(300));
    let heard: Vec<_> = olek.rtp.packets().into_iter().skip(before).collect();
    let heard = support::rtp::report(&heard);
    assert!(
        heard.audible_frames >= 40,
        "Olek hears the caller: {heard:?}"
    );
    caller.wait_ok();
    olek.phone.wait_ok();
    a.wait_metric(
        "hotline_calls_total{outcome=\"answered\",node=\"a\"}",
        1.0,
        SECS(10),
    );
    // Node A's queue log shows the offer and the answer; B's shows no offer.
    let offered = |h: &Hotline| {
        h.log()
            .iter()
            .filter(|l| l.contains("offering to agent"))
            .count()
    };
    assert_eq!(offered(&a), 1);
    assert_eq!(offered(&b), 0);
}
