//! Live flow reload against the real binary: calls in progress keep their
//! version, new calls take the new one, and a broken edit is refused with its
//! exact position while calls keep being answered.

mod support;

use std::time::Duration;
use support::rtp::RtpListener;
use support::{copy_flows, listening_caller, repo, Hotline, Options, RunningSipp};

const TOKEN: &str = "test-token-7f3a";

fn flow_version_of_calls(hotline: &Hotline) -> Vec<String> {
    let (status, body) = hotline.get("/api/calls");
    assert_eq!(status, 200, "{body}");
    let calls: serde_json::Value = serde_json::from_str(&body).expect("json");
    calls
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["flow_version"].as_str().unwrap_or("").to_string())
        .collect()
}

fn live_version(hotline: &Hotline) -> serde_json::Value {
    let (status, body) = hotline.get("/api/flows");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn wait_for_version_change(hotline: &Hotline, old: &str) -> String {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = live_version(hotline)["version"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if v != old {
            return v;
        }
        assert!(
            std::time::Instant::now() < end,
            "flows were not reloaded; log:\n{}",
            hotline.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A caller who listens for `ms`, once `calls` calls (theirs among them)
/// are in the IVR.
fn call_in_ivr(hotline: &Hotline, ms: u64, calls: f64) -> (RunningSipp, RtpListener) {
    let rtp = RtpListener::bind();
    let caller = listening_caller(hotline.sip, &rtp, ms).spawn();
    hotline.wait_metric(
        "hotline_calls_active{stage=\"ivr\"}",
        calls,
        Duration::from_secs(10),
    );
    (caller, rtp)
}

#[test]
fn edits_apply_to_new_calls_and_broken_edits_are_refused() {
    let flows = copy_flows(&repo().join("ivr-flows"));
    let hotline = Hotline::start_with(Options {
        flows: Some(flows.path().to_path_buf()),
        config: Some(format!("api_token: {TOKEN}\n")),
    });
    let v1 = live_version(&hotline)["version"]
        .as_str()
        .expect("version")
        .to_string();

    // A call in progress on version 1.
    let (first, rtp1) = call_in_ivr(&hotline, 8000, 1.0);
    assert_eq!(flow_version_of_calls(&hotline), vec![v1.clone()]);

    // The operator adds a main-menu option; the file watcher picks it up.
    let main = flows.path().join("main.yaml");
    let text = std::fs::read_to_string(&main).expect("read");
    let edited = text.replace(
        "            \"0\": adviser\n",
        "            \"0\": adviser\n            \"9\": benefits\n",
    );
    assert_ne!(edited, text, "the edit applies");
    std::fs::write(&main, &edited).expect("write");
    let v2 = wait_for_version_change(&hotline, &v1);
    assert_eq!(
        hotline.metric("hotline_flow_reloads_total{result=\"ok\"}"),
        1.0
    );

    // The call in progress still runs version 1; a new call gets version 2.
    let (second, _rtp2) = call_in_ivr(&hotline, 3000, 2.0);
    let mut versions = flow_version_of_calls(&hotline);
    versions.sort();
    let mut expected = vec![v1.clone(), v2.clone()];
    expected.sort();
    assert_eq!(versions, expected);
    first.wait_ok();
    second.wait_ok();
    assert!(rtp1.packets().len() > 100, "the first call kept its audio");

    // A broken edit: an unknown prompt. Refused with file:line:col; v2 stays.
    let broken = edited.replace("prompt: main_menu", "prompt: main_menu_typo");
    std::fs::write(&main, &broken).expect("write");
    hotline.wait_metric(
        "hotline_flow_reloads_total{result=\"error\"}",
        1.0,
        Duration::from_secs(10),
    );
    let status = live_version(&hotline);
    assert_eq!(status["version"].as_str(), Some(v2.as_str()));
    let error = status["last_error"].as_str().expect("last error shown");
    let line = broken
        .lines()
        .position(|l| l.contains("main_menu_typo"))
        .expect("line")
        + 1;
    assert!(
        error.contains(&format!("main.yaml:{line}:")) && error.contains("main_menu_typo"),
        "{error}"
    );

    // Calls are still answered, on version 2.
    let (third, rtp3) = call_in_ivr(&hotline, 2000, 1.0);
    assert_eq!(flow_version_of_calls(&hotline), vec![v2.clone()]);
    third.wait_ok();
    assert!(
        rtp3.packets().len() > 50,
        "the third call heard its prompts"
    );

    // The API reload says the same, and needs the token.
    let (status, _) = hotline.post("/api/flows/reload", None, "");
    assert_eq!(status, 401);
    let (status, body) = hotline.post("/api/flows/reload", Some(TOKEN), "");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("main_menu_typo"), "{body}");

    // Fixed again, reloaded through the API.
    std::fs::write(&main, &edited).expect("write");
    let (status, body) = hotline.post("/api/flows/reload", Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&v2), "same content, same version: {body}");
}

#[test]
fn sighup_reloads() {
    let flows = copy_flows(&repo().join("ivr-flows"));
    let mut hotline = Hotline::start_with(Options {
        flows: Some(flows.path().to_path_buf()),
        config: None,
    });
    let ok_before = hotline.metric("hotline_flow_reloads_total{result=\"ok\"}");
    hotline.signal("HUP");
    hotline.wait_metric(
        "hotline_flow_reloads_total{result=\"ok\"}",
        ok_before + 1.0,
        Duration::from_secs(10),
    );
    assert!(hotline.is_running());
    hotline.wait_for_log("trigger=\"SIGHUP\"", Duration::from_secs(5));
}
