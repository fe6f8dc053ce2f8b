//! The wallboard in a real browser (headless Chromium): it loads, connects to
//! the live stream and shows a caller who chose a language; one page kept open
//! follows a caller into the queue and out again.

#[path = "../support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::agents::{agents_yaml, test_flows};
use support::rtp::RtpListener;
use support::ws::WsClient;
use support::{copy_flows, free_sip_port, repo, Hotline, Options};

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

/// A headless Chromium driven over the DevTools protocol (CDP), so that one
/// page stays open while calls come and go. Killed on drop.
struct Browser {
    page: WsClient,
    next_id: u64,
    // Dropped in this order: the process dies before its profile is removed.
    _process: KillOnDrop,
    _profile: tempfile::TempDir,
}

/// Kills (and reaps) a child process when dropped, test failure or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().expect("tempdir");
        let mut process = KillOnDrop(
            Command::new("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--remote-debugging-port=0",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("run chromium (Debian package `chromium`; scripts/test.sh installs it)"),
        );
        let port = devtools_port(&mut process.0, profile.path());
        let path = page_socket_path(port);
        let page = WsClient::connect(SocketAddr::from(([127, 0, 0, 1], port)), &path)
            .unwrap_or_else(|status| panic!("DevTools refused the page socket: {status}"));
        Browser {
            page,
            next_id: 0,
            _process: process,
            _profile: profile,
        }
    }

    /// Sends one CDP command and returns its `result` (events are skipped).
    fn command(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = serde_json::json!({"id": id, "method": method, "params": params});
        self.page.send_text(&message.to_string());
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            let Some(text) = self
                .page
                .next_text(end.saturating_duration_since(Instant::now()))
            else {
                break;
            };
            let reply: serde_json::Value = serde_json::from_str(&text).expect("CDP json");
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
        panic!("no answer to {method} within 10 s");
    }

    fn navigate(&mut self, url: &str) {
        self.command("Page.navigate", serde_json::json!({ "url": url }));
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let result = self.command(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expression, "returnByValue": true }),
        );
        result["result"]["value"].clone()
    }

    /// What the wallboard shows: the status line and a language tile's
    /// values; empty while the page is still loading (`Page.navigate` answers
    /// before the document is there).
    fn board(&mut self, language: &str) -> Board {
        let value = self.eval(&format!(
            r#"(() => {{
                const status = document.getElementById("status");
                const tile = document.getElementById("lang-{language}");
                const v = (name) => tile ? tile.querySelector(".v." + name).textContent : null;
                return JSON.stringify({{
                    status: status ? status.textContent : "",
                    waiting: v("waiting"),
                    abandoned: v("abandoned"),
                    chosen: v("chosen"),
                    agents: v("agents"),
                }});
            }})()"#
        ));
        value
            .as_str()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }

    /// Polls the open page (no reload) until `ok` holds; bounded.
    fn wait_board(
        &mut self,
        language: &str,
        timeout: Duration,
        ok: impl Fn(&Board) -> bool,
    ) -> Board {
        let end = Instant::now() + timeout;
        loop {
            let board = self.board(language);
            if ok(&board) {
                return board;
            }
            assert!(
                Instant::now() < end,
                "the open page did not change as expected within {timeout:?}: {board:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Values of one language tile and the connection status, as text.
#[derive(Debug, Default, serde::Deserialize, PartialEq)]
struct Board {
    status: String,
    waiting: Option<String>,
    abandoned: Option<String>,
    chosen: Option<String>,
    /// "ready / busy".
    agents: Option<String>,
}

/// Chromium writes the port it picked to `DevToolsActivePort` (first line).
fn devtools_port(child: &mut std::process::Child, profile: &Path) -> u16 {
    let file = profile.join("DevToolsActivePort");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(port) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            return port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("chromium exited before DevTools was up: {status}");
        }
        assert!(Instant::now() < end, "no DevToolsActivePort within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The path of the first page target's WebSocket, from `GET /json/list`.
fn page_socket_path(port: u16) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let body = devtools_get(port, "/json/list");
        let targets: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let page = targets.as_array().and_then(|list| {
            list.iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        });
        if let Some(url) = page {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            return rest[rest.find('/').unwrap_or(0)..].to_string();
        }
        assert!(Instant::now() < end, "no page target in /json/list: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bounded HTTP GET against the DevTools server (which may keep the
/// connection open, so the body is read by its Content-Length).
fn devtools_get(port: u16, path: &str) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut reader = BufReader::new(stream);
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = vec![0u8; length.unwrap_or(0).min(1 << 20)];
    let _ = reader.read_exact(&mut body);
    String::from_utf8_lossy(&body).into_owned()
}

#[test]
fn one_open_wallboard_follows_a_caller_who_waits_and_hangs_up() {
    let flows = test_flows("");
    let dir = tempfile::tempdir().expect("tempdir");
    let agents_file = dir.path().join("agents.yaml");
    // Olek speaks Polish but is not logged in: the caller waits.
    std::fs::write(
        &agents_file,
        agents_yaml(&[("olek", "haslo-1", "{pl: 10}")]),
    )
    .expect("write agents");
    let hotline = Hotline::start_with(Options {
        flows: Some(flows.path().to_path_buf()),
        config: Some(format!("agents_file: {}\n", agents_file.display())),
    });

    let mut browser = Browser::start();
    browser.navigate(&format!("http://{}/", hotline.http));
    let before = browser.wait_board("pl", Duration::from_secs(10), |b| b.status == "live");
    assert_eq!(before.waiting.as_deref(), Some("0"), "{before:?}");
    assert_eq!(before.abandoned.as_deref(), Some("0"), "{before:?}");

    // A caller chooses Polish (4), asks for someone (0) and waits; they hang
    // up after about 8 s in the queue, past the 5 s short-abandon threshold.
    let rtp = RtpListener::bind();
    let caller = hotline
        .sipp("call_queue.xml")
        .key("rtp_port", rtp.port)
        .key("codecs", "0 101")
        .key("digit", "4")
        .key("digit2", "0")
        .duration_ms(8_000)
        .spawn();
    let waiting = browser.wait_board("pl", Duration::from_secs(20), |b| {
        b.waiting.as_deref() == Some("1")
    });
    assert_eq!(waiting.status, "live", "the same page, still connected");
    assert_eq!(waiting.chosen.as_deref(), Some("1"), "{waiting:?}");
    assert_eq!(waiting.abandoned.as_deref(), Some("0"), "{waiting:?}");

    caller.wait_ok();
    let after = browser.wait_board("pl", Duration::from_secs(10), |b| {
        b.waiting.as_deref() == Some("0") && b.abandoned.as_deref() == Some("1")
    });
    assert_eq!(after.status, "live", "{after:?}");
    assert_eq!(after.chosen.as_deref(), Some("1"), "{after:?}");
}

#[test]
fn the_open_wallboard_counts_an_agent_once_through_pause_and_ready() {
    let flows = test_flows("");
    let dir = tempfile::tempdir().expect("tempdir");
    let agents_file = dir.path().join("agents.yaml");
    std::fs::write(
        &agents_file,
        agents_yaml(&[("olek", "haslo-1", "{pl: 10}")]),
    )
    .expect("write agents");
    let hotline = Hotline::start_with(Options {
        flows: Some(flows.path().to_path_buf()),
        config: Some(format!(
            "agents_file: {}\napi_token: t0k3n\n",
            agents_file.display()
        )),
    });
    let mut browser = Browser::start();
    browser.navigate(&format!("http://{}/", hotline.http));
    let board = browser.wait_board("pl", Duration::from_secs(10), |b| b.status == "live");
    assert_eq!(board.agents.as_deref(), Some("0 / 0"), "{board:?}");

    // Olek's phone registers (no call comes, so nothing needs to answer).
    support::agents::register(&hotline, "olek", "haslo-1", free_sip_port());
    let has = |want: &'static str| move |b: &Board| b.agents.as_deref() == Some(want);
    browser.wait_board("pl", Duration::from_secs(10), has("1 / 0"));

    // Paused and ready again: counted once, not once per event.
    for (state, want) in [("paused", "0 / 0"), ("ready", "1 / 0"), ("paused", "0 / 0")] {
        let (status, body) = hotline.post(
            "/api/agents/olek/state",
            Some("t0k3n"),
            &format!(r#"{{"state":"{state}"}}"#),
        );
        assert_eq!(status, 200, "{body}");
        browser.wait_board("pl", Duration::from_secs(10), has(want));
    }
}
