//! Call records against the real binary: calls placed with sipp end up in the
//! database, survive SIGKILL, and an unwritable database never stops calls.

mod support;

use rusqlite::Connection;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::rtp::RtpListener;
use support::{free_sip_port, free_tcp_port, http_request, metric_value, repo};

/// A distinct RTP range per server, below the ephemeral ports sipp binds.
fn rtp_base() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = 20_000 + ((std::process::id() * 37 + slot * 200) % 9_000) as u16;
    base & !1
}

/// `hotline serve` on a data directory the test keeps across restarts.
struct Server {
    child: Child,
    sip: SocketAddr,
    http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(data: &Path) -> Server {
        Server::start_with_flows(data, &repo().join("ivr-flows"))
    }

    fn start_with_flows(data: &Path, flows: &Path) -> Server {
        let sip: SocketAddr = format!("127.0.0.1:{}", free_sip_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let rtp = rtp_base();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hotline"))
            .arg("serve")
            .args(["--sip-listen", &sip.to_string()])
            .args(["--http-listen", &http.to_string()])
            .arg("--flows")
            .arg(flows)
            .arg("--data-dir")
            .arg(data)
            .args(["--rtp-ports", &format!("{}-{}", rtp, rtp + 199)])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hotline");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let server = Server {
            child,
            sip,
            http,
            log,
        };
        server.wait_log("hotline ready", Duration::from_secs(20));
        server
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no {needle:?} in the log:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }

    fn metric(&self, sample: &str) -> f64 {
        let (_, body) = http_request(self.http, "GET", "/metrics", None, "");
        metric_value(&body, sample)
    }

    fn wait_metric(&self, sample: &str, at_least: f64, timeout: Duration) -> f64 {
        let until = Instant::now() + timeout;
        loop {
            let v = self.metric(sample);
            if v >= at_least || Instant::now() > until {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Callers who listen for `ms` and hang up, `calls` of them at `rate` per second.
    fn callers(&self, calls: u32, rate: u32, ms: u64, rtp: u16) -> Child {
        self.sipp("call_listen.xml", ms, rtp)
            .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
            .spawn()
            .expect("start sipp (apt-get install sip-tester)")
    }

    /// One caller who chooses Polish (4), asks for an adviser (0), waits in
    /// the queue (no agent) and hangs up after about `ms`.
    fn polish_caller_who_gives_up(&self, ms: u64, rtp: u16) -> Child {
        self.sipp("call_queue.xml", ms, rtp)
            .args(["-m", "1"])
            .args(["-key", "digit", "4", "-key", "digit2", "0"])
            .spawn()
            .expect("start sipp (apt-get install sip-tester)")
    }

    /// sipp running `scenario` (tests/sipp) against the server, its calls
    /// lasting `ms`, with audio at `rtp`.
    fn sipp(&self, scenario: &str, ms: u64, rtp: u16) -> Command {
        let mut cmd = Command::new("sipp");
        cmd.arg(self.sip.to_string())
            .arg("-sf")
            .arg(repo().join("tests/sipp").join(scenario))
            .args(["-i", "127.0.0.1"])
            .args(["-p", &free_sip_port().to_string()])
            .args(["-mp", &free_sip_port().to_string()])
            .args(["-d", &ms.to_string(), "-s", "1000"])
            .args(["-key", "rtp_port", &rtp.to_string()])
            .args(["-key", "codecs", "0 101"])
            .args(["-nostdin", "-timeout", "60s"])
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// The first frame of `/ws`.
    fn snapshot(&self) -> serde_json::Value {
        let mut ws = support::ws::WsClient::connect(self.http, "/ws").expect("ws upgrade");
        ws.wait_for("snapshot", Duration::from_secs(10))
    }

    fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `hotline report --data-dir DATA ARGS` printed; it must succeed.
fn report(data: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .arg("report")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// caller, dialled, flow version, outcome, path, hung up by, started, ended.
type Row = (String, String, String, String, String, String, i64, i64);

const ENDED: &str = "hotline_calls_total{outcome=\"abandoned_ivr\"}";

#[test]
fn calls_are_recorded_with_their_fields() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let rtp = RtpListener::bind();
    let mut sipp = server.callers(3, 10, 500, rtp.port);
    assert!(sipp.wait().unwrap().success(), "sipp failed");
    server.wait_metric(ENDED, 3.0, Duration::from_secs(10));
    server.wait_metric("hotline_cdr_written_total", 3.0, Duration::from_secs(10));
    let db = Connection::open(data.path().join("records.db")).unwrap();
    let rows: Vec<Row> = db
        .prepare(
            "SELECT caller, dialled, flow_version, outcome, path, hung_up_by, started_ms, ended_ms
             FROM calls",
        )
        .unwrap()
        .query_map([], |r| Row::try_from(r))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 3);
    for (caller, dialled, version, outcome, path, by, started, ended) in rows {
        assert_eq!(caller, "4790000001");
        assert!(!dialled.is_empty());
        assert!(!version.is_empty());
        assert_eq!(outcome, "abandoned_ivr");
        assert!(!path.is_empty(), "no path through the flow");
        assert_eq!(by, "caller");
        assert!(ended > started);
    }
    // The report reads the same database.
    let csv = data.path().join("report.csv");
    report(data.path(), &["--csv".as_ref(), csv.as_os_str()]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("period,language,calls"), "{text}");
    assert!(text.lines().nth(1).unwrap().contains(",-,3,"), "{text}");
}

#[test]
fn every_call_ended_before_sigkill_is_there_after_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let rtp = RtpListener::bind();
    let mut sipp = server.callers(40, 20, 300, rtp.port);
    // Kill during load, right after some calls ended.
    let ended = server.wait_metric(ENDED, 10.0, Duration::from_secs(30));
    server.kill9();
    let _ = sipp.kill();
    let _ = sipp.wait();
    assert!(ended >= 10.0);

    let server = Server::start(data.path());
    let db = Connection::open(data.path().join("records.db")).unwrap();
    let count: i64 = db
        .query_row("SELECT COUNT(*) FROM calls", [], |r| r.get(0))
        .unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert!(
        count as f64 >= ended,
        "{count} records for {ended} calls ended before the kill"
    );
    drop(server);
}

#[test]
fn an_unwritable_database_does_not_stop_calls_and_is_alarmed() {
    let data = tempfile::tempdir().unwrap();
    // A directory where the database file should be: every open fails, even as root.
    std::fs::create_dir(data.path().join("records.db")).unwrap();
    let server = Server::start(data.path());
    let rtp = RtpListener::bind();
    let mut sipp = server.callers(3, 10, 300, rtp.port);
    let ok = sipp.wait().unwrap().success();
    assert!(
        ok,
        "calls failed:\n{}",
        server.log.lock().unwrap().join("\n")
    );
    assert!(server.wait_metric(ENDED, 3.0, Duration::from_secs(10)) >= 3.0);
    assert!(
        server.wait_metric(
            "hotline_cdr_write_failures_total",
            1.0,
            Duration::from_secs(10)
        ) >= 1.0
    );
    server.wait_log("call records not written", Duration::from_secs(5));
    assert_eq!(server.metric("hotline_cdr_written_total"), 0.0);
    assert_eq!(server.metric("hotline_cdr_dropped_total"), 0.0);

    // Once the database can be written, the journal is replayed.
    std::fs::remove_dir(data.path().join("records.db")).unwrap();
    assert!(server.wait_metric("hotline_cdr_written_total", 3.0, Duration::from_secs(40)) >= 3.0);
}

// ----- the queue log, refused calls, a locked database -----

use support::agents::{agent, asks_for_adviser, Account, AgentPhone};
use support::scenario::Site;
use support::{udp_exchange, Hotline};

/// `hotline serve` with agents (password `pw`) and the flows open every day.
fn hotline_with_agents(agents: &[(&str, &str)], extra_config: &str) -> (Hotline, Site) {
    hotline_with_queue_settings(agents, extra_config, "")
}

fn hotline_with_queue_settings(
    agents: &[(&str, &str)],
    extra_config: &str,
    queue_settings: &str,
) -> (Hotline, Site) {
    let accounts: Vec<Account> = agents
        .iter()
        .map(|(id, skills)| (*id, "pw", *skills))
        .collect();
    let site = Site::new(queue_settings, &accounts);
    let hotline = site.start(&format!("api_token: t0k3n\n{extra_config}"));
    (hotline, site)
}

/// A Polish caller (menu 4, then 0 for a person) who stays `ms` in all.
fn polish_caller(hotline: &Hotline, rtp: &RtpListener, ms: u64) -> support::Sipp {
    asks_for_adviser(hotline, "call_queue.xml", rtp, "4").duration_ms(ms)
}

/// Waits until `calls` calls ended with `outcome` (5 s), then until
/// `records` call records and `log_rows` queue log rows are written (10 s
/// each).
fn wait_written(hotline: &Hotline, outcome: &str, calls: f64, records: f64, log_rows: f64) {
    let ended = format!("hotline_calls_total{{outcome=\"{outcome}\"}}");
    hotline.wait_metric(&ended, calls, Duration::from_secs(5));
    let timeout = Duration::from_secs(10);
    hotline.wait_metric("hotline_cdr_written_total", records, timeout);
    hotline.wait_metric("hotline_queue_log_written_total", log_rows, timeout);
}

/// Opens the service's database, once it has created it, and locks it
/// (`BEGIN EXCLUSIVE`) until the returned connection commits.
fn lock_database(hotline: &Hotline) -> Connection {
    let db_path = hotline.data_dir().join("records.db");
    // The service creates the schema at start.
    let until = Instant::now() + Duration::from_secs(5);
    while !db_path.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lock = Connection::open(&db_path).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    lock
}

/// (call_id, queue, event, agent, wait_ms, position, state, reason), in order.
type LogRow = (
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn queue_log(data: &Path) -> Vec<LogRow> {
    let db = Connection::open(data.join("records.db")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT call_id, queue, event, agent, wait_ms, position, state, reason
             FROM queue_log ORDER BY time_ms, id",
        )
        .unwrap();
    stmt.query_map([], |r| LogRow::try_from(r))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The ids of the calls table, by outcome.
fn call_ids(data: &Path, outcome: &str) -> Vec<String> {
    let db = Connection::open(data.join("records.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT id FROM calls WHERE outcome = ?1 ORDER BY started_ms")
        .unwrap();
    stmt.query_map([outcome], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn events_of(log: &[LogRow], call: &str) -> Vec<String> {
    log.iter()
        .filter(|r| r.0.as_deref() == Some(call) && r.6.is_none())
        .map(|r| r.2.clone())
        .collect()
}

#[test]
fn an_answered_and_an_abandoned_caller_leave_their_queue_log() {
    let (hotline, _site) = hotline_with_agents(&[("olek", "{pl: 10}"), ("ivan", "{ru: 10}")], "");
    let olek = agent(&hotline, "olek", "pw", 300);
    let (status, body) = hotline.post(
        "/api/agents/ivan/state",
        Some("t0k3n"),
        r#"{"state":"paused","reason":"lunch"}"#,
    );
    assert_eq!(status, 200, "{body}");

    // Answered: the agent takes the call, the caller hangs up after talking.
    let rtp = RtpListener::bind();
    polish_caller(&hotline, &rtp, 3_000).run_ok();
    olek.phone.wait_ok();
    hotline.wait_metric(
        "hotline_calls_total{outcome=\"answered\"}",
        1.0,
        Duration::from_secs(5),
    );

    // Abandoned: the agent (wrapping up, then paused) is not offered the
    // caller, who waits and gives up.
    let (status, body) = hotline.post(
        "/api/agents/olek/state",
        Some("t0k3n"),
        r#"{"state":"paused","reason":"tea"}"#,
    );
    assert_eq!(status, 200, "{body}");
    polish_caller(&hotline, &rtp, 5_000).run_ok();
    wait_written(&hotline, "abandoned_queue", 1.0, 2.0, 6.0);
    assert_eq!(hotline.metric("hotline_queue_log_dropped_total"), 0.0);

    let data = hotline.data_dir();
    let log = queue_log(data);
    let answered = call_ids(data, "answered");
    let abandoned = call_ids(data, "abandoned_queue");
    assert_eq!((answered.len(), abandoned.len()), (1, 1), "{log:#?}");

    assert_eq!(
        events_of(&log, &answered[0]),
        ["joined", "offered", "answered"],
        "{log:#?}"
    );
    let answer = log
        .iter()
        .find(|r| r.0.as_ref() == Some(&answered[0]) && r.2 == "answered")
        .unwrap();
    assert_eq!(answer.1.as_deref(), Some("advice_pl"));
    assert_eq!(answer.3.as_deref(), Some("olek"));
    assert!(answer.4.is_some_and(|w| w >= 0), "{answer:?}");

    assert_eq!(
        events_of(&log, &abandoned[0]),
        ["joined", "abandoned"],
        "{log:#?}"
    );
    let gone = log
        .iter()
        .find(|r| r.0.as_ref() == Some(&abandoned[0]) && r.2 == "abandoned")
        .unwrap();
    assert_eq!(gone.5, Some(1), "first in line: {gone:?}");
    assert!(gone.4.is_some_and(|w| w > 0), "{gone:?}");

    // The agents' states, in order: olek rang, talked, wrapped up; ivan
    // went to lunch.
    let states = |id: &str| -> Vec<(String, Option<String>)> {
        log.iter()
            .filter(|r| r.2 == "agent_state" && r.3.as_deref() == Some(id))
            .map(|r| (r.6.clone().unwrap_or_default(), r.7.clone()))
            .collect()
    };
    let olek_states: Vec<String> = states("olek").into_iter().map(|s| s.0).collect();
    let at = |s: &str| olek_states.iter().position(|x| x == s);
    assert!(
        at("ready") < at("ringing")
            && at("ringing") < at("on_call")
            && at("on_call") < at("wrap_up"),
        "{olek_states:?}"
    );
    assert!(at("ready").is_some(), "{olek_states:?}");
    assert_eq!(
        states("ivan"),
        [("paused".to_string(), Some("lunch".to_string()))]
    );

    // The report lists the same log.
    let csv = data.join("queue_log.csv");
    let text = report(
        data,
        &["--queue-log".as_ref(), "--csv".as_ref(), csv.as_os_str()],
    );
    assert!(
        text.contains("abandoned") && text.contains("position=1"),
        "{text}"
    );
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), log.len() + 1, "{csv}");
    assert!(csv.contains(",advice_pl,pl,answered,olek,"), "{csv}");
}

#[test]
fn a_call_refused_at_max_calls_is_recorded() {
    let (hotline, _site) = hotline_with_agents(&[("olek", "{pl: 10}")], "max_calls: 1\n");
    let rtp = RtpListener::bind();
    let first = support::listening_caller(hotline.sip, &rtp, 3_000).spawn();
    hotline.wait_metric(
        "hotline_calls_active{stage=\"ivr\"}",
        1.0,
        Duration::from_secs(10),
    );
    let invite = "INVITE sip:116123@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP {local};branch=z9hG4bK-full-1;rport\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:4790000042@{local}>;tag=full\r\n\
        To: <sip:116123@127.0.0.1>\r\n\
        Call-ID: full-1@test\r\n\
        CSeq: 7 INVITE\r\n\
        Contact: <sip:caller@{local}>\r\n\
        Content-Length: 0\r\n\r\n";
    let reply = udp_exchange(hotline.sip, invite, Duration::from_secs(2)).expect("a reply");
    assert!(reply.starts_with("SIP/2.0 503"), "{reply}");
    first.wait_ok();
    assert_eq!(
        hotline.metric("hotline_calls_total{outcome=\"rejected\"}"),
        1.0
    );
    hotline.wait_metric("hotline_cdr_written_total", 2.0, Duration::from_secs(10));
    let db = Connection::open(hotline.data_dir().join("records.db")).unwrap();
    let refused: (String, String, String, String, Option<i64>) = db
        .query_row(
            "SELECT id, caller, outcome, reason, answered_ms FROM calls WHERE sip_call_id = 'full-1@test'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        refused,
        (
            "full-1@test:refused:7".to_string(),
            "4790000042".to_string(),
            "refused".to_string(),
            "max_calls".to_string(),
            None
        )
    );
}

#[test]
fn a_locked_database_loses_nothing_and_calls_go_on() {
    let (hotline, _site) = hotline_with_agents(&[("olek", "{pl: 10}")], "");
    let lock = lock_database(&hotline);

    // Nobody is logged in: callers wait in the queue and give up.
    let rtp = RtpListener::bind();
    let a = polish_caller(&hotline, &rtp, 5_000).spawn();
    let b = polish_caller(&hotline, &rtp, 6_000).spawn();
    a.wait_ok();
    b.wait_ok();
    hotline.wait_metric(
        "hotline_calls_total{outcome=\"abandoned_queue\"}",
        2.0,
        Duration::from_secs(5),
    );
    assert!(
        hotline.wait_metric(
            "hotline_cdr_write_failures_total",
            1.0,
            Duration::from_secs(10)
        ) >= 1.0
    );
    assert_eq!(hotline.metric("hotline_cdr_written_total"), 0.0);
    assert_eq!(hotline.metric("hotline_queue_log_written_total"), 0.0);
    assert_eq!(hotline.metric("hotline_cdr_dropped_total"), 0.0);
    assert_eq!(hotline.metric("hotline_queue_log_dropped_total"), 0.0);

    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    assert!(hotline.wait_metric("hotline_cdr_written_total", 2.0, Duration::from_secs(45)) >= 2.0);
    hotline.wait_metric(
        "hotline_queue_log_written_total",
        4.0,
        Duration::from_secs(10),
    );
    let data = hotline.data_dir();
    let calls = call_ids(data, "abandoned_queue");
    assert_eq!(calls.len(), 2);
    let log = queue_log(data);
    for call in &calls {
        assert_eq!(events_of(&log, call), ["joined", "abandoned"], "{log:#?}");
    }
}

#[test]
fn an_agent_who_does_not_answer_is_logged_as_ring_noanswer() {
    let (hotline, _site) = hotline_with_queue_settings(
        &[("zofia", "{pl: 10}"), ("olek", "{pl: 10}")],
        "",
        "ring_timeout: 5s",
    );
    // Zofia registers first: the longest idle, offered first; she never answers.
    let zofia = AgentPhone::new(&hotline, "agent_no_answer.xml", 0).register("zofia", "pw");
    std::thread::sleep(Duration::from_millis(100));
    let olek = agent(&hotline, "olek", "pw", 300);

    let rtp = RtpListener::bind();
    polish_caller(&hotline, &rtp, 10_000).run_ok();
    zofia.phone.wait_ok();
    olek.phone.wait_ok();
    wait_written(&hotline, "answered", 1.0, 1.0, 5.0);
    let data = hotline.data_dir();
    let answered = call_ids(data, "answered");
    assert_eq!(answered.len(), 1);
    let log = queue_log(data);
    let rows: Vec<(String, Option<String>)> = log
        .iter()
        .filter(|r| r.0.as_ref() == Some(&answered[0]) && r.6.is_none())
        .map(|r| (r.2.clone(), r.3.clone()))
        .collect();
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        rows,
        [
            ("joined".to_string(), None),
            ("offered".to_string(), some("zofia")),
            ("ring_noanswer".to_string(), some("zofia")),
            ("offered".to_string(), some("olek")),
            ("answered".to_string(), some("olek")),
        ],
        "{log:#?}"
    );
    let noanswer = log.iter().find(|r| r.2 == "ring_noanswer").unwrap();
    let db = Connection::open(data.join("records.db")).unwrap();
    let code: Option<i64> = db
        .query_row(
            "SELECT code FROM queue_log WHERE event = 'ring_noanswer'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(code, Some(408), "{noanswer:?}");
}

#[test]
fn a_queue_event_journaled_before_sigkill_is_stored_after_restart() {
    let (mut hotline, _site) = hotline_with_agents(&[("olek", "{pl: 10}")], "");
    let data = hotline.data_dir().to_path_buf();
    // Nothing reaches the database: the event is in the journal only.
    let lock = lock_database(&hotline);
    let rtp = RtpListener::bind();
    let caller = polish_caller(&hotline, &rtp, 8_000).spawn();
    hotline.wait_metric(
        "hotline_queue_waiting{queue=\"advice_pl\"}",
        1.0,
        Duration::from_secs(20),
    );
    hotline.signal_and_wait("KILL", Duration::from_secs(5));
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    // The service is gone: nobody would answer the caller's BYE.
    caller.kill();

    let restarted = Server::start(&data);
    let log = queue_log(&data);
    assert!(
        log.iter()
            .any(|r| r.1.as_deref() == Some("advice_pl") && r.2 == "joined"),
        "{log:#?}"
    );
    drop(restarted);
}

#[test]
fn the_wallboard_still_counts_todays_calls_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    // Open every day, so that no public holiday closes the queue.
    let flows = support::agents::test_flows("");
    let server = Server::start_with_flows(data.path(), flows.path());
    let fresh = server.snapshot();
    assert_eq!(fresh["totals"]["languages"]["pl"], 0, "{fresh}");
    assert_eq!(fresh["totals"]["timezone"], "Europe/Oslo");

    let rtp = RtpListener::bind();
    let mut caller = server.polish_caller_who_gives_up(3_000, rtp.port);
    assert!(caller.wait().unwrap().success(), "sipp failed");
    let abandoned = "hotline_calls_total{outcome=\"abandoned_queue\"}";
    assert_eq!(
        server.wait_metric(abandoned, 1.0, Duration::from_secs(10)),
        1.0
    );
    let check = |snapshot: &serde_json::Value, when: &str| {
        let totals = &snapshot["totals"];
        assert_eq!(totals["languages"]["pl"], 1, "{when}: {snapshot}");
        assert_eq!(
            totals["outcomes"]["abandoned_queue"], 1,
            "{when}: {snapshot}"
        );
        let day = day_in_oslo();
        assert_eq!(totals["day"], day.as_str(), "{when}: {snapshot}");
        let queue = snapshot["queues"]
            .as_array()
            .and_then(|q| q.iter().find(|q| q["name"] == "advice_pl"))
            .unwrap_or_else(|| panic!("{when}: no advice_pl in {snapshot}"));
        assert_eq!(
            queue["by_language"]["pl"]["abandoned"], 1,
            "{when}: {snapshot}"
        );
        assert_eq!(
            queue["by_language"]["pl"]["answered"], 0,
            "{when}: {snapshot}"
        );
    };
    check(&server.snapshot(), "before the restart");

    // Killed at once: the record may still be only in the journal.
    server.kill9();
    let server = Server::start_with_flows(data.path(), flows.path());
    assert_eq!(server.metric(abandoned), 0.0, "Prometheus counters restart");
    check(&server.snapshot(), "after the restart");
}

/// Today's date in Oslo, `YYYY-MM-DD`.
fn day_in_oslo() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Oslo)
        .date_naive()
        .to_string()
}
