//! What Prometheus and Grafana rely on: every metric the dashboard names exists
//! on a freshly started service.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::agents::{agent, asks_for_adviser, test_flows, OLEK};
use support::rtp::RtpListener;
use support::scenario::Site;
use support::{free_tcp_port, http_request, repo, Hotline, Options};

/// Metric names the dashboard's PromQL uses, from the dashboard tool.
fn dashboard_metrics() -> Vec<String> {
    let out = Command::new("python3")
        .arg(repo().join("deploy/grafana/promql_in_dashboard.py"))
        .arg("--metrics")
        .current_dir(repo())
        .output()
        .expect("run python3 deploy/grafana/promql_in_dashboard.py");
    assert!(
        out.status.success(),
        "promql_in_dashboard.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Names of the samples in a Prometheus text exposition.
fn sample_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_metric_the_dashboard_names_exists_on_a_fresh_service() {
    let wanted = dashboard_metrics();
    assert!(wanted.len() > 10, "too few metrics found: {wanted:?}");
    // Flows open around the clock: `hotline_language_offered` follows the
    // opening hours, and no holiday may close the line during the test.
    let flows = test_flows("");
    let hotline = Hotline::start_with(Options {
        flows: Some(flows.path().to_path_buf()),
        config: None,
    });
    let (status, body) = hotline.get("/metrics");
    assert_eq!(status, 200);
    let have = sample_names(&body);
    let missing: Vec<&String> = wanted.iter().filter(|m| !have.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "metrics the dashboard needs but a fresh service lacks: {missing:?}"
    );
    // Every language the flows offer is marked as offered.
    for code in ["nb", "en", "ar", "pl", "ru", "ro", "lt"] {
        assert_eq!(
            support::metric_value(
                &body,
                &format!("hotline_language_offered{{language=\"{code}\"}}")
            ),
            1.0,
            "{code} offered"
        );
    }
}

/// A Prometheus server scraping the service every second, with the repository's
/// rules loaded; killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = repo().join("deploy/prometheus/rules");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}/hotline-config.yml\n  - {rules}/hotline-recording.yml\n  - {rules}/hotline-alerts.yml\nscrape_configs:\n  - job_name: hotline\n    scrape_interval: 1s\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules = rules.display()
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("addr");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package `prometheus`; scripts/test.sh installs it)");
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let end = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < end, "prometheus did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus.wait_until("/-/ready", Duration::from_secs(30), |status, _| {
            status == 200
        });
        prometheus
    }

    fn wait_until(&self, path: &str, timeout: Duration, ok: impl Fn(u16, &str) -> bool) -> String {
        let end = Instant::now() + timeout;
        loop {
            let (status, body) = http_request(self.addr, "GET", path, None, "");
            if ok(status, &body) {
                return body;
            }
            assert!(Instant::now() < end, "prometheus {path}: {status} {body}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The scalar value of an instant query, None while it has no result.
    fn query(&self, promql: &str) -> Option<f64> {
        let (status, body) = http_request(
            self.addr,
            "GET",
            &format!("/api/v1/query?query={}", percent_encode(promql)),
            None,
            "",
        );
        assert_eq!(status, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
    }

    /// Polls a query until it equals `want` (within a small tolerance).
    fn wait_value(&self, promql: &str, want: f64, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let got = self.query(promql);
            if got.is_some_and(|g| (g - want).abs() < 1e-9) {
                return;
            }
            assert!(Instant::now() < end, "{promql}: got {got:?}, want {want}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn prometheus_sees_the_calls_placed() {
    let site = Site::new("", &[OLEK, ("ania", "haslo-2", "{pl: 10}")]);
    let hotline = site.start("");
    let prometheus = Prometheus::start(hotline.http);
    prometheus.wait_value("up{job=\"hotline\"}", 1.0, Duration::from_secs(20));
    let (_, rules) = http_request(prometheus.addr, "GET", "/api/v1/rules", None, "");
    assert!(
        rules.contains("job:hotline_queue_service_level:ratio_rate5m"),
        "recording rules loaded: {rules}"
    );

    let olek = agent(&hotline, "olek", "haslo-1", 300);
    let ania = agent(&hotline, "ania", "haslo-2", 300);
    // Two Polish callers (4, then 0) are answered and talk briefly; a Russian
    // caller (5, then 0) finds no Russian agent and hangs up in the queue.
    let callers: Vec<(support::RunningSipp, RtpListener)> =
        [("4", 8_000), ("4", 8_000), ("5", 10_000)]
            .into_iter()
            .map(|(digit, ms)| {
                let rtp = RtpListener::bind();
                let sipp = asks_for_adviser(&hotline, "call_queue.xml", &rtp, digit)
                    .duration_ms(ms)
                    .spawn();
                (sipp, rtp)
            })
            .collect();
    for (sipp, _rtp) in callers {
        sipp.wait_ok();
    }
    olek.phone.wait_ok();
    ania.phone.wait_ok();

    let timeout = Duration::from_secs(20);
    prometheus.wait_value("sum(hotline_queue_answered_total)", 2.0, timeout);
    prometheus.wait_value("sum(hotline_queue_abandoned_total)", 1.0, timeout);
    prometheus.wait_value(
        "sum(hotline_queue_answered_total{language=\"pl\"})",
        2.0,
        timeout,
    );
    prometheus.wait_value(
        "sum(hotline_queue_abandoned_total{language=\"ru\"})",
        1.0,
        timeout,
    );
    let offered = "sum(hotline_queue_wait_seconds_count)";
    prometheus.wait_value(offered, 3.0, timeout);
    prometheus.wait_value(
        &format!("sum(hotline_queue_abandoned_total) / {offered}"),
        1.0 / 3.0,
        timeout,
    );
    prometheus.wait_value(
        &format!(
            "sum(hotline_queue_wait_seconds_bucket{{outcome=\"answered\",le=\"20\"}}) / {offered}"
        ),
        2.0 / 3.0,
        timeout,
    );
}

#[test]
fn languages_are_not_offered_while_the_line_is_closed_and_are_again_after_a_reload() {
    let flows = test_flows("");
    let schedules = flows.path().join("schedules.yaml");
    // Closed all day yesterday, today and tomorrow (Oslo), so the test does
    // not depend on the hour it runs at.
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Oslo)
        .date_naive();
    let mut closed = String::from(
        "schedules:\n  staffed:\n    timezone: Europe/Oslo\n    weekly:\n      daily: \"00:00-24:00\"\n    exceptions:\n",
    );
    for day in [today.pred_opt(), Some(today), today.succ_opt()]
        .into_iter()
        .flatten()
    {
        closed.push_str(&format!("      \"{day}\": closed\n"));
    }
    let open = std::fs::read_to_string(&schedules).expect("schedules");
    std::fs::write(&schedules, closed).expect("write schedules");
    let hotline = Hotline::start_with(Options {
        flows: Some(flows.path().to_path_buf()),
        config: Some("api_token: t0k3n\n".to_string()),
    });
    for code in ["nb", "en", "ar", "pl", "ru", "ro", "lt"] {
        assert_eq!(
            hotline.metric(&format!("hotline_language_offered{{language=\"{code}\"}}")),
            0.0,
            "{code} is not offered while the line is closed"
        );
    }

    std::fs::write(&schedules, open).expect("write schedules");
    let (status, body) = hotline.post("/api/flows/reload", Some("t0k3n"), "");
    assert_eq!(status, 200, "{body}");
    for code in ["nb", "pl", "lt"] {
        assert_eq!(
            hotline.wait_metric(
                &format!("hotline_language_offered{{language=\"{code}\"}}"),
                1.0,
                Duration::from_secs(10)
            ),
            1.0,
            "{code} is offered once the line is open"
        );
    }
}
