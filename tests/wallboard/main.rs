//! The wallboard in a real browser (headless Chromium): it loads, connects to
//! the live stream and shows a caller who chose a language; one page kept open
//! follows a caller into the queue and out again.

#[path = "../support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::agents::{asks_for_adviser, brief_polish_call, test_flows, OLEK};
use support::rtp::RtpListener;
use support::scenario::Site;
use support::ws::WsClient;
use support::{copy_flows, repo, Hotline, Options};

/// Chromium without a screen, sandbox, or anything of its own on the network.
const HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The page's DOM after its scripts ran and the stream delivered the snapshot.
fn rendered_dom(hotline: &Hotline, profile: &std::path::Path) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg("chromium")
        .args(HEADLESS)
        .args(["--virtual-time-budget=3000", "--dump-dom"])
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
    let caller = asks_for_adviser(&hotline, "call_queue.xml", &rtp, "4")
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
                .args(HEADLESS)
                .arg("--remote-debugging-port=0")
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

    /// What the wallboard shows: the status line, a language tile's values
    /// and chart, the advisers' totals and list; empty while the page is
    /// still loading (`Page.navigate` answers before the document is there).
    fn board(&mut self, language: &str) -> Board {
        let value = self.eval(&format!(
            r##"(() => {{
                const status = document.getElementById("status");
                const tile = document.getElementById("lang-{language}");
                const v = (name) => tile ? tile.querySelector(".v." + name).textContent : null;
                const total = (g) => {{
                    const el = document.getElementById("agents-" + g);
                    return el ? el.textContent : null;
                }};
                const chart = tile ? tile.querySelector("svg.chart") : null;
                const bars = chart ? [...chart.querySelectorAll("g.waiting rect")] : [];
                return JSON.stringify({{
                    status: status ? status.textContent : "",
                    waiting: v("waiting"),
                    abandoned: v("abandoned"),
                    chosen: v("chosen"),
                    estimate: v("estimate"),
                    ready: v("ready"),
                    busy: v("busy"),
                    paused: v("paused"),
                    total_ready: total("ready"),
                    total_busy: total("busy"),
                    total_paused: total("paused"),
                    advisers: [...document.querySelectorAll("#adviser-list li[data-agent]")].map((li) => [
                        li.dataset.agent, li.querySelector(".state").textContent,
                    ]),
                    chart_minutes: chart ? Number(chart.dataset.minutes || 0) : 0,
                    chart_waiting: bars.map((b) => Number(b.dataset.value)),
                    chart_bar_heights: bars.map((b) => Number(b.getAttribute("height"))),
                    chart_service_levels: chart ? [...chart.querySelectorAll("circle.sl")].map((c) => Number(c.dataset.value)) : [],
                }});
            }})()"##
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

/// Values of one language tile and the connection status, as text; the
/// advisers' totals and list; what the tile's chart drew.
#[derive(Debug, Default, serde::Deserialize, PartialEq)]
struct Board {
    status: String,
    waiting: Option<String>,
    abandoned: Option<String>,
    chosen: Option<String>,
    estimate: Option<String>,
    /// Advisers of the language ready, e.g. "1 (1 shared with en)".
    ready: Option<String>,
    busy: Option<String>,
    paused: Option<String>,
    /// Advisers over every language, each counted once.
    total_ready: Option<String>,
    total_busy: Option<String>,
    total_paused: Option<String>,
    /// (agent id, state as shown) of every adviser listed.
    advisers: Vec<(String, String)>,
    /// Minutes of history the chart has.
    chart_minutes: usize,
    /// Callers waiting per minute, as the chart's bars carry them.
    chart_waiting: Vec<u32>,
    /// The height of each bar drawn (the hour's peak is 140 units high).
    chart_bar_heights: Vec<f64>,
    /// The service-level dots (percent), one per minute with an outcome.
    chart_service_levels: Vec<u32>,
}

impl Board {
    /// How an adviser is shown, and how many times they are listed.
    fn adviser(&self, id: &str) -> (Option<&str>, usize) {
        let listed: Vec<&str> = self
            .advisers
            .iter()
            .filter(|(a, _)| a == id)
            .map(|(_, s)| s.as_str())
            .collect();
        (listed.first().copied(), listed.len())
    }
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
    // Olek speaks Polish but is not logged in: the caller waits.
    let site = Site::new("", &[OLEK]);
    let hotline = site.start("");

    let mut browser = Browser::start();
    browser.navigate(&format!("http://{}/", hotline.http));
    let before = browser.wait_board("pl", Duration::from_secs(10), |b| b.status == "live");
    assert_eq!(before.waiting.as_deref(), Some("0"), "{before:?}");
    assert_eq!(before.abandoned.as_deref(), Some("0"), "{before:?}");

    // A caller chooses Polish (4), asks for someone (0) and waits; they hang
    // up after about 8 s in the queue, past the 5 s short-abandon threshold.
    let rtp = RtpListener::bind();
    let caller = asks_for_adviser(&hotline, "call_queue.xml", &rtp, "4")
        .duration_ms(8_000)
        .spawn();
    let waiting = browser.wait_board("pl", Duration::from_secs(20), |b| {
        b.waiting.as_deref() == Some("1")
    });
    assert_eq!(waiting.status, "live", "the same page, still connected");
    assert_eq!(waiting.chosen.as_deref(), Some("1"), "{waiting:?}");
    assert_eq!(waiting.abandoned.as_deref(), Some("0"), "{waiting:?}");

    // Olek is not logged in: nobody could take the call, and the page says so.
    assert_eq!(
        waiting.estimate.as_deref(),
        Some("no adviser"),
        "{waiting:?}"
    );

    caller.wait_ok();
    let after = browser.wait_board("pl", Duration::from_secs(10), |b| {
        b.waiting.as_deref() == Some("0") && b.abandoned.as_deref() == Some("1")
    });
    assert_eq!(after.status, "live", "{after:?}");
    assert_eq!(after.chosen.as_deref(), Some("1"), "{after:?}");

    // The last hour's chart: the caller waited, and the minute they gave up
    // in has a service level of 0 % (nobody answered in time).
    let chart = browser.wait_board("pl", Duration::from_secs(15), |b| {
        !b.chart_service_levels.is_empty()
    });
    assert_eq!(chart.chart_service_levels, [0], "{chart:?}");
    assert_eq!(chart.chart_waiting.iter().max(), Some(&1), "{chart:?}");
    assert_eq!(chart.chart_waiting.len(), chart.chart_minutes, "{chart:?}");
    // A bar per minute: full height where the one caller waited, none where
    // nobody did.
    for (waiting, height) in chart.chart_waiting.iter().zip(&chart.chart_bar_heights) {
        let want = if *waiting == 1 { 140.0 } else { 0.0 };
        assert_eq!(*height, want, "{chart:?}");
    }
    let other = browser.board("ru");
    assert!(other.chart_minutes >= 1, "{other:?}");
    assert!(other.chart_waiting.iter().all(|w| *w == 0), "{other:?}");
    assert!(other.chart_service_levels.is_empty(), "{other:?}");
}

/// The demo configuration (`examples/demo.yaml`) with its agents file named
/// by its full path (it is relative to `examples/`), and its API token.
fn demo_config() -> (String, String) {
    let text = std::fs::read_to_string(repo().join("examples/demo.yaml")).expect("demo config");
    let mut token = None;
    let mut config = String::new();
    for line in text.lines() {
        if let Some(file) = line.strip_prefix("agents_file:") {
            let path = repo().join("examples").join(file.trim());
            config.push_str(&format!("agents_file: {}\n", path.display()));
            continue;
        }
        if let Some(t) = line.strip_prefix("api_token:") {
            token = Some(t.trim().to_string());
        }
        config.push_str(line);
        config.push('\n');
    }
    (config, token.expect("the demo config has an api_token"))
}

#[test]
fn piotr_paused_shows_under_both_his_languages_and_once_in_the_totals() {
    // The demo agents: Anna speaks nb and en, Piotr pl and en.
    let (config, token) = demo_config();
    let flows = test_flows("");
    let hotline = Hotline::start_with(Options {
        flows: Some(flows.path().to_path_buf()),
        config: Some(config),
    });
    let mut browser = Browser::start();
    browser.navigate(&format!("http://{}/", hotline.http));
    let board = browser.wait_board("pl", Duration::from_secs(10), |b| b.status == "live");
    assert_eq!(board.ready.as_deref(), Some("0"), "{board:?}");
    assert_eq!(board.total_ready.as_deref(), Some("0"), "{board:?}");
    assert!(board.advisers.is_empty(), "nobody logged in: {board:?}");

    // Both start work, set ready through the API (the demo accounts offer
    // SHA-256 digest first, which sipp's REGISTER cannot answer).
    let post = |agent: &str, state: &str| {
        let (status, body) = hotline.post(
            &format!("/api/agents/{agent}/state"),
            Some(&token),
            &format!(r#"{{"state":"{state}","reason":"lunch"}}"#),
        );
        assert_eq!(status, 200, "{body}");
    };
    post("anna", "ready");
    post("piotr", "ready");
    let pl = browser.wait_board("pl", Duration::from_secs(15), |b| {
        b.ready.as_deref() == Some("1 (1 shared with en)") && b.estimate.as_deref() == Some("0 s")
    });
    assert_eq!(
        pl.total_ready.as_deref(),
        Some("2"),
        "each adviser once: {pl:?}"
    );
    assert_eq!(pl.paused.as_deref(), Some("0"), "{pl:?}");
    let en = browser.board("en");
    assert_eq!(
        en.ready.as_deref(),
        Some("2 (2 shared with nb, pl)"),
        "{en:?}"
    );

    // Paused and ready again: counted once, not once per event.
    for state in ["paused", "ready", "paused"] {
        post("piotr", state);
        browser.wait_board("pl", Duration::from_secs(10), |b| {
            let want = |n: &str| {
                Some(if n == state {
                    "1 (1 shared with en)"
                } else {
                    "0"
                })
            };
            b.ready.as_deref() == want("ready") && b.paused.as_deref() == want("paused")
        });
    }

    // Piotr paused: under Polish and under English, once in the totals and
    // the list; Polish callers now have nobody, English ones still Anna.
    let pl = browser.wait_board("pl", Duration::from_secs(15), |b| {
        b.estimate.as_deref() == Some("no adviser")
    });
    assert_eq!(pl.paused.as_deref(), Some("1 (1 shared with en)"), "{pl:?}");
    assert_eq!(pl.ready.as_deref(), Some("0"), "{pl:?}");
    assert_eq!(pl.total_ready.as_deref(), Some("1"), "{pl:?}");
    assert_eq!(pl.total_paused.as_deref(), Some("1"), "{pl:?}");
    assert_eq!(pl.total_busy.as_deref(), Some("0"), "{pl:?}");
    assert_eq!(pl.adviser("piotr"), (Some("paused (lunch)"), 1), "{pl:?}");
    assert_eq!(pl.adviser("anna"), (Some("ready"), 1), "{pl:?}");
    let en = browser.board("en");
    assert_eq!(en.paused.as_deref(), Some("1 (1 shared with pl)"), "{en:?}");
    assert_eq!(en.ready.as_deref(), Some("1 (1 shared with nb)"), "{en:?}");
    assert_eq!(en.estimate.as_deref(), Some("0 s"), "{en:?}");
    let nb = browser.board("nb");
    assert_eq!(nb.paused.as_deref(), Some("0"), "Piotr speaks no Norwegian");
}

#[test]
fn a_pause_asked_for_during_wrap_up_shows_as_pending_then_paused() {
    let site = Site::new("wrap_up: 15s", &[OLEK]);
    let hotline = site.start("api_token: t0k3n\n");
    let olek = support::agents::agent(&hotline, "olek", "haslo-1", 300);
    let mut browser = Browser::start();
    browser.navigate(&format!("http://{}/", hotline.http));
    browser.wait_board("pl", Duration::from_secs(10), |b| {
        b.status == "live" && b.ready.as_deref() == Some("1")
    });

    // A Polish caller talks to Olek for a moment and hangs up: wrap-up.
    brief_polish_call(&hotline, olek);
    let (status, body) = hotline.post(
        "/api/agents/olek/state",
        Some("t0k3n"),
        r#"{"state":"paused","reason":"lunch"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""pending":"paused""#), "{body}");

    let board = browser.wait_board("pl", Duration::from_secs(10), |b| {
        b.adviser("olek").0 == Some("wrap-up → paused")
    });
    assert_eq!(board.busy.as_deref(), Some("1"), "{board:?}");
    assert_eq!(board.total_busy.as_deref(), Some("1"), "{board:?}");
    assert_eq!(board.paused.as_deref(), Some("0"), "{board:?}");

    // The chart: the caller waited, and was answered within 20 s (100 %).
    let chart = browser.wait_board("pl", Duration::from_secs(15), |b| {
        !b.chart_service_levels.is_empty()
    });
    assert_eq!(chart.chart_service_levels, [100], "{chart:?}");
    assert_eq!(chart.chart_waiting.iter().max(), Some(&1), "{chart:?}");

    // Wrap-up over: paused, nothing pending.
    let board = browser.wait_board("pl", Duration::from_secs(20), |b| {
        b.adviser("olek").0 == Some("paused (lunch)")
    });
    assert_eq!(board.paused.as_deref(), Some("1"), "{board:?}");
    assert_eq!(board.busy.as_deref(), Some("0"), "{board:?}");
}

/// A caller who booked a callback and hung up shows as a callback pending
/// in their language's tile, not as someone waiting on the line.
#[test]
fn a_booked_callback_shows_as_pending_in_its_language() {
    let site = support::callbacks::site();
    // The trunk is there to allow the number; nothing is dialled here.
    let hotline = site.start(&support::callbacks::trunk_config(9));
    let rtp = RtpListener::bind();
    support::callbacks::books_a_callback(&hotline, &rtp);
    let (_, queues) = hotline.get("/api/queues");
    assert!(
        queues.contains("\"callbacks_by_language\":{\"pl\":1}"),
        "{queues}"
    );
    let profile = tempfile::tempdir().expect("tempdir");
    let dom = rendered_dom(&hotline, profile.path());
    assert_eq!(tile_value(&dom, "pl", "callbacks"), "1", "{dom}");
    assert_eq!(tile_value(&dom, "pl", "waiting"), "0");
    assert_eq!(tile_value(&dom, "en", "callbacks"), "0");
}
