//! A config file finds what it names from its own folder, whatever the working
//! directory; a configured agents file that is missing stops the start.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{copy_dir, free_sip_port, free_tcp_port, repo, Hotline};

/// The repository's layout, copied: `examples/demo.yaml`,
/// `examples/agents.yaml` (unless left out) and `ivr-flows/`.
fn demo_layout(with_agents: bool) -> tempfile::TempDir {
    let layout = tempfile::tempdir().expect("tempdir");
    let examples = layout.path().join("examples");
    std::fs::create_dir_all(&examples).expect("mkdir");
    let mut files = vec!["demo.yaml"];
    if with_agents {
        files.push("agents.yaml");
    }
    for name in files {
        std::fs::copy(repo().join("examples").join(name), examples.join(name)).expect("copy");
    }
    copy_dir(&repo().join("ivr-flows"), &layout.path().join("ivr-flows"));
    layout
}

#[test]
fn the_demo_config_loads_its_flows_and_agents_from_another_working_directory() {
    let layout = demo_layout(true);
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let config = layout.path().join("examples/demo.yaml");
    assert!(config.is_absolute());
    let hotline = Hotline::start_in(elsewhere.path(), &config, layout.path().join("ivr-flows"));
    let ready = hotline.wait_for_log("hotline ready", Duration::from_secs(1));
    let flows = layout.path().join("examples/../ivr-flows");
    assert!(ready.contains(&flows.display().to_string()), "{ready}");
    assert_eq!(hotline.count_log("no agent can register"), 0);

    // The flows' queues are served.
    let (status, queues) = hotline.get("/api/queues");
    assert_eq!(status, 200);
    for queue in ["advice_nb", "advice_en", "advice_pl"] {
        assert!(queues.contains(&format!("\"{queue}\"")), "{queues}");
    }
    // The demo agents are there, with the skills examples/agents.yaml gives.
    let (_, agents) = hotline.get("/api/agents");
    let list: serde_json::Value = serde_json::from_str(&agents).expect("json");
    let agent = |id: &str| {
        list.as_array()
            .and_then(|a| a.iter().find(|x| x["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no agent {id} in {agents}"))
    };
    assert_eq!(
        agent("anna")["skills"],
        serde_json::json!({"nb": 10, "en": 8})
    );
    assert_eq!(
        agent("piotr")["skills"],
        serde_json::json!({"pl": 10, "en": 6})
    );
}

#[test]
fn a_configured_agents_file_that_is_missing_stops_the_start() {
    let layout = demo_layout(false);
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let config = layout.path().join("examples/demo.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .current_dir(elsewhere.path())
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--sip-listen")
        .arg(format!("127.0.0.1:{}", free_sip_port()))
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{}", free_tcp_port()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hotline");
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("hotline started without its agents file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let missing = layout.path().join("examples/agents.yaml");
    assert!(stderr.contains("agents_file"), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    assert!(!Path::new(&elsewhere.path().join("data")).exists());
}
