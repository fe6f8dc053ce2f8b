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
        Command::new("sipp")
            .arg(self.sip.to_string())
            .arg("-sf")
            .arg(repo().join("tests/sipp/call_listen.xml"))
            .args(["-i", "127.0.0.1"])
            .args(["-p", &free_sip_port().to_string()])
            .args(["-mp", &free_sip_port().to_string()])
            .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
            .args(["-d", &ms.to_string(), "-s", "1000"])
            .args(["-key", "rtp_port", &rtp.to_string()])
            .args(["-key", "codecs", "0 101"])
            .args(["-nostdin", "-timeout", "60s"])
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp (apt-get install sip-tester)")
    }

    /// One caller who chooses Polish (4), asks for an adviser (0), waits in
    /// the queue (no agent) and hangs up after about `ms`.
    fn polish_caller_who_gives_up(&self, ms: u64, rtp: u16) -> Child {
        Command::new("sipp")
            .arg(self.sip.to_string())
            .arg("-sf")
            .arg(repo().join("tests/sipp/call_queue.xml"))
            .args(["-i", "127.0.0.1"])
            .args(["-p", &free_sip_port().to_string()])
            .args(["-mp", &free_sip_port().to_string()])
            .args(["-m", "1", "-d", &ms.to_string(), "-s", "1000"])
            .args(["-key", "rtp_port", &rtp.to_string()])
            .args(["-key", "codecs", "0 101"])
            .args(["-key", "digit", "4", "-key", "digit2", "0"])
            .args(["-nostdin", "-timeout", "60s"])
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp (apt-get install sip-tester)")
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
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
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
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .arg("report")
        .arg("--data-dir")
        .arg(data.path())
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
