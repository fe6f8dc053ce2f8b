//! What Prometheus and Grafana rely on: every metric the dashboard names exists
//! on a freshly started service.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use support::{repo, Hotline};

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
    let hotline = Hotline::start();
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
