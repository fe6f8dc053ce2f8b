//! Agents on a real softphone: Debian's baresip registers with the service,
//! as the README tells a newcomer to do, and answers the calls offered to it.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::agents::{agent_json, test_flows};
use support::baresip::Phone;
use support::{repo, Hotline, Options};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The state `/api/agents` shows for `id`, and whether a phone is registered.
fn agent(hotline: &Hotline, id: &str) -> (String, bool) {
    let agent = agent_json(hotline, id);
    assert!(!agent.is_null(), "no agent {id} in /api/agents");
    (
        agent["state"].as_str().unwrap_or("missing").to_string(),
        agent["registered"].as_bool().unwrap_or(false),
    )
}

fn wait_agent(hotline: &Hotline, id: &str, state: &str, timeout: Duration) {
    let end = Instant::now() + timeout;
    loop {
        let (now, registered) = agent(hotline, id);
        if now == state && registered {
            return;
        }
        if Instant::now() > end {
            panic!(
                "{id} is {now} (registered: {registered}), not {state}; log:\n{}",
                hotline.log().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a caller pressing 4 and 0 today is queued by the shipped flows,
/// as `hotline flows simulate` says. On Norwegian public holidays the shipped
/// schedule closes the line (the README says so) and the caller is told.
fn shipped_flows_queue_now() -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .current_dir(repo())
        .args(["flows", "simulate", "--flow", "main", "--digits", "4,0"])
        .output()
        .expect("hotline flows simulate");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    text.contains("queued to advice_pl")
}

/// The README's path for a newcomer, with no file edited: serve the demo
/// config, register baresip as Piotr, call in with sipp pressing 4 (Polski)
/// and 0 (speak to someone) over RFC 4733, and Piotr's phone answers.
#[test]
fn a_newcomer_following_the_readme_reaches_piotr_on_baresip() {
    // On a day the shipped schedule is closed, a copy open around the clock.
    let holiday_flows = (!shipped_flows_queue_now()).then(|| test_flows(""));
    if holiday_flows.is_some() {
        eprintln!("the shipped flows are closed now (a public holiday): using a copy open today");
    }
    // `hotline serve --config examples/demo.yaml`
    let hotline = Hotline::start_as_in_readme(
        "examples/demo.yaml",
        holiday_flows.as_ref().map(|d| d.path().to_path_buf()),
    );
    // Account `sip:piotr@127.0.0.1`, password `piotr-demo-pw`: registered
    // and, at once, ready.
    let piotr = Phone::auto_answer(hotline.sip, "piotr", "piotr-demo-pw").start();
    piotr.wait_registered(SECS(10));
    wait_agent(&hotline, "piotr", "ready", SECS(5));
    assert_eq!(
        hotline.metric("hotline_agents{skill=\"pl\",state=\"ready\"}"),
        1.0
    );

    // Call in, press 4 and then 0.
    let caller = hotline
        .sipp("call_dtmf_pcaps.xml")
        .key("dtmf_pcap", "/usr/share/sip-tester/dtmf_2833_4.pcap")
        .key("dtmf_pcap2", "/usr/share/sip-tester/dtmf_2833_0.pcap")
        .duration_ms(8_000)
        .spawn();
    // Piotr's phone rings and answers by itself: the caller reaches Piotr.
    piotr.wait_for_log("Call established", SECS(30));
    wait_agent(&hotline, "piotr", "on_call", SECS(5));
    assert_eq!(hotline.metric("hotline_calls_active{stage=\"agent\"}"), 1.0);
    assert_eq!(
        hotline.metric("hotline_language_selected_total{language=\"pl\"}"),
        1.0
    );
    assert_eq!(
        hotline.metric("hotline_queue_answered_total{language=\"pl\",queue=\"advice_pl\"}"),
        1.0
    );
    assert_eq!(
        hotline.metric("hotline_agents{skill=\"pl\",state=\"on_call\"}"),
        1.0
    );
    let offer = hotline.wait_for_log("offering to agent", SECS(1));
    assert!(offer.contains("agent=piotr"), "{offer}");
    // Piotr's voice (baresip's tone) is relayed to the caller.
    let relayed = hotline.wait_metric("hotline_rtp_packets_relayed_total", 100.0, SECS(5));
    assert!(relayed >= 100.0);

    // The caller hangs up after eight seconds: an answered call.
    caller.wait_ok();
    hotline.wait_metric("hotline_calls_total{outcome=\"answered\"}", 1.0, SECS(5));
    piotr.wait_for_log("terminated", SECS(5));
    // The 0 that asked for Piotr was pressed before he answered: his phone
    // never heard it (nor the 4). Whether the bridge opens while the 0 is
    // still down depends on timing here; tests/queues.rs holds the key down
    // across the bridge on purpose.
    assert_eq!(piotr.count_log("received event"), 0, "{:?}", piotr.log());
}

/// Debian 12's baresip cannot answer a SHA-256 challenge, even one after
/// MD5: it gives up without a word to the service. The service notices the
/// unanswered challenge and says why, once.
#[test]
fn baresip_offered_sha256_cannot_log_in_and_the_service_says_why() {
    let hotline = Hotline::start_with(Options {
        config: Some(format!(
            "agents_file: {}\ndigest_algorithms: [md5, sha-256]\n",
            repo().join("examples/agents.yaml").display()
        )),
        ..Options::default()
    });
    let piotr = Phone::auto_answer(hotline.sip, "piotr", "piotr-demo-pw").start();
    piotr.wait_for_log("Register: Function not implemented", SECS(10));
    let line = hotline.wait_for_log("registration failed", SECS(45));
    for words in [
        "no answer to the challenge",
        "agent=\"piotr\"",
        "reason=\"no_answer\"",
        "digest_algorithms: [md5]",
    ] {
        assert!(line.contains(words), "{words:?} not in {line}");
    }
    assert!(hotline.metric("hotline_register_failures_total{reason=\"no_answer\"}") >= 1.0);
    assert_eq!(agent(&hotline, "piotr"), ("logged_out".to_string(), false));
}

/// A wrong password: baresip tries again and again until the service's
/// throttle refuses it (403); each try is counted, the log names the phone
/// once.
#[test]
fn a_wrong_password_on_baresip_is_logged_once_and_every_try_counted() {
    let hotline = Hotline::start_as_in_readme("examples/demo.yaml", None);
    let piotr = Phone::auto_answer(hotline.sip, "piotr", "not-the-password").start();
    piotr.wait_for_log("403 Forbidden", SECS(30));
    hotline.wait_metric(
        "hotline_register_failures_total{reason=\"wrong_password\"}",
        3.0,
        SECS(30),
    );
    let lines = hotline.log_lines("registration failed");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("wrong password"), "{}", lines[0]);
    assert!(lines[0].contains("agent=\"piotr\""), "{}", lines[0]);
    assert_eq!(agent(&hotline, "piotr"), ("logged_out".to_string(), false));
}
