//! The wallboard in a real browser (headless Chromium): it loads, connects to
//! the live stream and shows a caller who chose a language.

#[path = "../support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::rtp::RtpListener;
use support::{copy_flows, repo, Hotline, Options};

/// The page's DOM after its scripts ran and the stream delivered the snapshot.
fn rendered_dom(hotline: &Hotline, profile: &std::path::Path) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://{}/", hotline.http))
        .output()
        .expect("run chromium (Debian package `chromium`; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of `class="v NAME"` in a language's tile.
fn tile_value(dom: &str, language: &str, name: &str) -> String {
    let start = dom
        .find(&format!("id=\"lang-{language}\""))
        .unwrap_or_else(|| panic!("no tile for {language}"));
    let tile = &dom[start..];
    let tile = &tile[..tile.find("</section>").unwrap_or(tile.len())];
    let marker = format!("class=\"v {name}");
    let at = tile
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {tile}"));
    let rest = &tile[at..];
    let value = &rest[rest.find('>').map_or(0, |i| i + 1)..];
    value[..value.find('<').unwrap_or(value.len())].to_string()
}

#[test]
fn the_wallboard_connects_and_shows_a_caller_who_chose_polish() {
    let flows = copy_flows(&repo().join("ivr-flows"));
    let schedules = flows.path().join("schedules.yaml");
    let text = std::fs::read_to_string(&schedules).expect("schedules");
    std::fs::write(&schedules, text.replace("    holidays: norway\n", "")).expect("write");
    let hotline = Hotline::start_with(Options {
        flows: Some(flows.path().to_path_buf()),
        config: None,
    });
    let profile = tempfile::tempdir().expect("tempdir");

    let dom = rendered_dom(&hotline, profile.path());
    assert!(
        dom.contains("id=\"status\" class=\"live\">live<"),
        "the page connected to /ws: {dom}"
    );
    assert!(
        dom.contains("dir=\"rtl\" lang=\"ar\">العربية<"),
        "Arabic reads right to left"
    );
    assert_eq!(tile_value(&dom, "pl", "chosen"), "0");

    // A caller chooses Polish (4) and asks for someone (0); nobody is logged
    // in, so they wait in the queue until they hang up.
    let rtp = RtpListener::bind();
    let caller = hotline
        .sipp("call_queue.xml")
        .key("rtp_port", rtp.port)
        .key("codecs", "0 101")
        .key("digit", "4")
        .key("digit2", "0")
        .duration_ms(15_000)
        .spawn();
    hotline.wait_metric(
        "hotline_calls_active{stage=\"queue\"}",
        1.0,
        Duration::from_secs(20),
    );

    let end = Instant::now() + Duration::from_secs(20);
    let dom = loop {
        let dom = rendered_dom(&hotline, profile.path());
        if tile_value(&dom, "pl", "chosen") == "1" || Instant::now() > end {
            break dom;
        }
    };
    assert_eq!(tile_value(&dom, "pl", "chosen"), "1", "{dom}");
    assert_eq!(tile_value(&dom, "pl", "waiting"), "1", "{dom}");
    assert_ne!(tile_value(&dom, "pl", "longest"), "–", "{dom}");
    assert_eq!(tile_value(&dom, "ru", "chosen"), "0");
    caller.wait_ok();
}
