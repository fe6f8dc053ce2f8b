//! What deploy/ ships, checked as far as a machine without a running init
//! system or container engine allows: the systemd unit passes
//! `systemd-analyze verify` without a warning, and the command lines of the
//! unit and of the container image start the real binary, which then answers
//! SIP and reloads on the unit's `ExecReload` signal.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{copy_flows, free_sip_port, free_tcp_port, http_request, repo, rtp_range};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value of `Key=` in a unit file (the last one, as systemd takes it).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .next_back()
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .to_string()
}

/// A `hotline` started from a deployment command line; killed on drop.
struct Running {
    child: Child,
    http: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Running {
    fn start(args: &[String], http: SocketAddr) -> Running {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_hotline"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("start hotline");
        let running = Running { child, http, log };
        running.wait_log("hotline ready", Duration::from_secs(20));
        running
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let until = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < until,
                "no `{needle}` in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_request(self.http, "GET", path, None, "")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn the_systemd_unit_verifies_and_its_command_line_runs_the_service() {
    let unit = read(&repo().join("deploy/systemd/hotline.service"));
    let exec_start = unit_value(&unit, "ExecStart");
    let mut words = exec_start.split_whitespace();
    let program = words.next().expect("a program");
    let args: Vec<String> = words.map(str::to_string).collect();

    // The unit as installed, but naming the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let installed = dir.path().join("hotline.service");
    std::fs::write(
        &installed,
        unit.replace(program, env!("CARGO_BIN_EXE_hotline")),
    )
    .expect("write unit");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&installed)
        .output()
        .expect("systemd-analyze (Debian package `systemd`; scripts/test.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify.status.success(), "{said}");
    assert!(said.trim().is_empty(), "systemd warns: {said}");

    // ExecStart's arguments, with the config file it names written for
    // loopback ports and temporary folders.
    let config_at = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .expect("ExecStart names --config");
    assert_eq!(config_at, "/etc/hotline/hotline.yaml");
    let flows = copy_flows(&repo().join("ivr-flows"));
    let data = tempfile::tempdir().expect("data");
    let (sip, http) = (loopback(free_sip_port()), loopback(free_tcp_port()));
    let rtp = rtp_range();
    let config = dir.path().join("hotline.yaml");
    std::fs::write(
        &config,
        format!(
            "sip_listen: {sip}\nhttp_listen: {http}\nflows: {}\ndata_dir: {}\nrtp_ports: {}-{}\n",
            flows.path().display(),
            data.path().display(),
            rtp.0,
            rtp.1
        ),
    )
    .expect("write config");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if a == config_at {
                config.display().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let mut service = Running::start(&args, http);
    assert_eq!(service.get("/readyz").0, 200);
    let options = "OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP {local};branch=z9hG4bK-unit-1;rport\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:probe@{local}>;tag=unit\r\n\
        To: <sip:hotline@127.0.0.1>\r\n\
        Call-ID: unit-1@test\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";
    let reply = support::udp_exchange(sip, options, Duration::from_secs(2)).expect("a reply");
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");

    // ExecReload sends SIGHUP: the flows are read again.
    let reload = unit_value(&unit, "ExecReload");
    assert_eq!(reload, "/bin/kill -HUP $MAINPID");
    let pid = service.child.id().to_string();
    let status = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    service.wait_log("flows reloaded", Duration::from_secs(10));

    // KillSignal (SIGTERM) drains and exits within TimeoutStopSec.
    assert_eq!(unit_value(&unit, "KillSignal"), "SIGTERM");
    let stop_within: u64 = unit_value(&unit, "TimeoutStopSec")
        .parse()
        .expect("seconds");
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let until = Instant::now() + Duration::from_secs(stop_within);
    loop {
        if let Some(exit) = service.child.try_wait().expect("wait") {
            assert!(exit.success(), "{exit:?}\n{}", service.log());
            break;
        }
        assert!(Instant::now() < until, "still running after TimeoutStopSec");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_container_images_command_runs_the_service_on_the_shipped_flows() {
    let file = read(&repo().join("deploy/container/Containerfile"));
    // Every COPY from the build context names something in the repository.
    for line in file
        .lines()
        .filter(|l| l.starts_with("COPY --from=build /src/"))
    {
        let source = line
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.strip_prefix("/src/"))
            .expect("a source");
        if !source.starts_with("target/") {
            assert!(repo().join(source).exists(), "{line}");
        }
    }
    let json_list = |key: &str| -> Vec<String> {
        let line = file
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key}"));
        serde_json::from_str(line.trim_start_matches(key).trim()).expect("a JSON list")
    };
    let entrypoint = json_list("ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/hotline"]);
    let cmd = json_list("CMD");

    // The image's folders, here temporary ones; ports on loopback.
    let flows = copy_flows(&repo().join("ivr-flows"));
    let data = tempfile::tempdir().expect("data");
    let mut args: Vec<String> = cmd
        .iter()
        .map(|a| match a.as_str() {
            "/etc/hotline/ivr-flows" => flows.path().display().to_string(),
            "/var/lib/hotline" => data.path().display().to_string(),
            other => other.to_string(),
        })
        .collect();
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("/etc/") || a.starts_with("/var/")),
        "{args:?}"
    );
    let (sip, http) = (loopback(free_sip_port()), loopback(free_tcp_port()));
    let rtp = rtp_range();
    args.extend([
        "--sip-listen".to_string(),
        sip.to_string(),
        "--http-listen".to_string(),
        http.to_string(),
        "--rtp-ports".to_string(),
        format!("{}-{}", rtp.0, rtp.1),
    ]);
    let service = Running::start(&args, http);
    let (status, body) = service.get("/api/flows");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"version\""), "{body}");
    // The image's EXPOSE names the default ports.
    let exposed: Vec<&str> = file
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    assert_eq!(exposed, ["5060/udp", "5060/tcp", "8080/tcp"]);
    drop(service);
    assert!(data.path().join("records.db").exists());
}
