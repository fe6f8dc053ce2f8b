//! Test harness: starts the real `hotline` binary on loopback ports, runs sipp
//! scenarios against it, reads its metrics and API, and listens to its RTP.
#![allow(dead_code)]

pub mod agents;
pub mod baresip;
pub mod callbacks;
pub mod kamailio;
pub mod redis;
pub mod rtp;
pub mod scenario;
pub mod ws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository root (where `ivr-flows/` and `tests/sipp/` live).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `port` was not handed out before in this test process: the
/// kernel may give a just-released port to the next `bind(0)`, and two
/// tests running side by side must never be told the same port.
fn first_time(port: u16) -> bool {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if handed_out.contains(&port) {
        return false;
    }
    handed_out.push(port);
    true
}

/// A free loopback port usable for both UDP and TCP (SIP listens on both).
pub fn free_sip_port() -> u16 {
    for _ in 0..200 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else { continue };
        if TcpListener::bind(addr).is_ok() && first_time(addr.port()) {
            return addr.port();
        }
    }
    panic!("no free loopback port for SIP");
}

pub fn free_tcp_port() -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free tcp port");
        if first_time(port) {
            return port;
        }
    }
    panic!("no free loopback TCP port");
}

/// A distinct RTP range per server, below the ephemeral range.
pub fn rtp_range() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
    let base = 10_000 + ((std::process::id() * 37 + slot * 200) % 9_000) as u16;
    let base = base & !1;
    (base, base + 199)
}

/// A running `hotline serve`.
pub struct Hotline {
    child: Child,
    /// Its command line and folder, to start it again (a restart).
    args: Vec<std::ffi::OsString>,
    cwd: Option<PathBuf>,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub flows: PathBuf,
    pub rtp: (u16, u16),
    log: Lines,
    _data: tempfile::TempDir,
}

/// Options for starting the service.
#[derive(Default)]
pub struct Options {
    pub flows: Option<PathBuf>,
    pub config: Option<String>,
}

impl Hotline {
    pub fn start() -> Hotline {
        Hotline::start_with(Options::default())
    }

    /// The default flows, with `config` as the config file.
    pub fn with_config(config: &str) -> Hotline {
        Hotline::start_with(Options {
            config: Some(config.to_string()),
            ..Options::default()
        })
    }

    pub fn start_with(options: Options) -> Hotline {
        let flows = options.flows.unwrap_or_else(|| repo().join("ivr-flows"));
        Hotline::launch(flows.clone(), |cmd, data| {
            cmd.arg("--flows").arg(&flows);
            if let Some(config) = &options.config {
                let path = data.join("hotline.yaml");
                std::fs::write(&path, config).expect("write config");
                cmd.arg("--config").arg(path);
            }
        })
    }

    /// Starts the service in `current_dir` with an existing config file and
    /// no `--flows`: the flows the file names (`flows`, for the tests' use)
    /// serve.
    pub fn start_in(current_dir: &Path, config_file: &Path, flows: PathBuf) -> Hotline {
        Hotline::launch(flows, |cmd, _| {
            cmd.current_dir(current_dir)
                .arg("--config")
                .arg(config_file);
        })
    }

    /// Runs the service as the README does, in the repository root with one
    /// of its config files as it is (e.g. `examples/demo.yaml`); only the
    /// listening addresses, RTP ports and data folder are the test's own.
    /// `flows`, when given, replaces the flows the config file names.
    pub fn start_as_in_readme(config_file: &str, flows: Option<PathBuf>) -> Hotline {
        let replaced = flows.is_some();
        let flows = flows.unwrap_or_else(|| repo().join("ivr-flows"));
        Hotline::launch(flows.clone(), |cmd, _| {
            if replaced {
                cmd.arg("--flows").arg(&flows);
            }
            cmd.current_dir(repo()).arg("--config").arg(config_file);
        })
    }

    /// Starts `hotline serve` on free loopback ports with a fresh data
    /// directory; `configure` adds the rest of the command line. A port
    /// some other process took between our probe and the service's bind
    /// ("Address already in use") is not the test's failure: it starts
    /// again on other ports, up to three times.
    fn launch(flows: PathBuf, configure: impl Fn(&mut Command, &Path)) -> Hotline {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let mut hotline = Hotline::spawn_on_free_ports(flows.clone(), &configure);
            let outcome = poll(Duration::from_secs(20), Duration::from_millis(20), || {
                if hotline.count_log("hotline ready") > 0 {
                    Ok(true)
                } else if hotline.count_log("Address already in use") > 0 {
                    Ok(false)
                } else {
                    Err("no line with \"hotline ready\" within 20s".to_string())
                }
            });
            match outcome {
                Ok(true) => return hotline,
                Ok(false) if attempt < ATTEMPTS => {
                    let _ = hotline.child.kill();
                    let _ = hotline.child.wait();
                }
                Ok(false) | Err(_) => panic!(
                    "hotline did not start; printed:\n{}",
                    hotline.log().join("\n")
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn_on_free_ports(flows: PathBuf, configure: &impl Fn(&mut Command, &Path)) -> Hotline {
        let data = tempfile::tempdir().expect("tempdir");
        let sip: SocketAddr = format!("127.0.0.1:{}", free_sip_port())
            .parse()
            .expect("addr");
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port())
            .parse()
            .expect("addr");
        let rtp = rtp_range();
        let mut cmd = hotline_command();
        cmd.arg("serve")
            .arg("--sip-listen")
            .arg(sip.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("--data-dir")
            .arg(data.path())
            .arg("--rtp-ports")
            .arg(format!("{}-{}", rtp.0, rtp.1));
        configure(&mut cmd, data.path());
        let args = cmd.get_args().map(|a| a.to_os_string()).collect();
        let cwd = cmd.get_current_dir().map(Path::to_path_buf);
        let mut child = cmd.spawn().expect("start hotline");
        let log = Lines::default();
        log.collect(child.stderr.take().expect("stderr"));
        Hotline {
            child,
            args,
            cwd,
            sip,
            http,
            flows,
            rtp,
            log,
            _data: data,
        }
    }

    /// Starts the service again as it was started (same ports, data and
    /// config), once the process before has exited; its log goes on.
    pub fn respawn(&mut self) {
        let _ = self.child.wait();
        let mut cmd = hotline_command();
        cmd.args(&self.args);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let before = self.log.count("hotline ready");
        self.child = cmd.spawn().expect("start hotline again");
        self.log.collect(self.child.stderr.take().expect("stderr"));
        let started = poll(Duration::from_secs(20), Duration::from_millis(50), || {
            if self.log.count("hotline ready") > before {
                Ok(())
            } else {
                Err("hotline did not start again".to_string())
            }
        });
        started.unwrap_or_else(|why| panic!("{why}"));
    }

    /// Whether the process has exited (after a signal, say).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The service's data directory (call records, queue log).
    pub fn data_dir(&self) -> &Path {
        self._data.path()
    }

    /// Everything the service logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.all()
    }

    /// Waits until a log line contains `needle`; panics with the log if not.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.log.wait_for(needle, timeout)
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.log.count(needle)
    }

    /// The log lines that contain `needle`, in order.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log.matching(needle)
    }

    /// Plain HTTP GET; returns (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_request(self.http, "GET", path, None, "")
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        http_request(self.http, "POST", path, token, body)
    }

    /// The value of one sample in /metrics, e.g. `hotline_calls_total{outcome="completed"}`;
    /// 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        metric_value(&body, sample)
    }

    /// Polls a metric until it reaches `at_least`, or panics with the log.
    pub fn wait_metric(&self, sample: &str, at_least: f64, timeout: Duration) -> f64 {
        let reached = poll(timeout, Duration::from_millis(50), || {
            let v = self.metric(sample);
            if v >= at_least {
                Ok(v)
            } else {
                Err(format!("{sample} = {v}, expected at least {at_least}"))
            }
        });
        reached.unwrap_or_else(|why| self.fail(&why))
    }

    /// Panics saying `why`, with the log.
    fn fail(&self, why: &str) -> ! {
        panic!("{why}; log:\n{}", self.log().join("\n"))
    }

    /// Runs a sipp scenario from tests/sipp against this service.
    pub fn sipp(&self, scenario: &str) -> Sipp {
        Sipp::new(self, scenario)
    }

    /// Sends a signal (e.g. `HUP`) without waiting.
    pub fn signal(&mut self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Sends SIGTERM/SIGINT and waits for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> std::process::ExitStatus {
        self.signal(signal);
        self.exit_within(timeout, &format!(" after {signal}"))
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.exit_within(timeout, "")
    }

    /// The exit status, within `timeout`; else panics with the log, saying
    /// what it exited `after`.
    fn exit_within(&mut self, timeout: Duration, after: &str) -> std::process::ExitStatus {
        let child = &mut self.child;
        let exited = poll(timeout, Duration::from_millis(20), || {
            let status = child.try_wait().expect("wait");
            status.ok_or_else(|| format!("hotline did not exit{after}"))
        });
        exited.unwrap_or_else(|why| self.fail(&why))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The `hotline` binary, logging at `info` to a pipe.
fn hotline_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotline"));
    cmd.env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

impl Drop for Hotline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- hotline log ---\n{}", self.log().join("\n"));
        }
    }
}

/// What a child process printed, line by line, gathered by threads of its
/// own (at most `MAX_LINES` lines).
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

/// Most lines a `Lines` keeps.
const MAX_LINES: usize = 200_000;

impl Lines {
    /// Reads `stream` to its end in a thread, a line at a time.
    pub fn collect(&self, stream: impl Read + Send + 'static) {
        self.collect_with(stream, |line| vec![line.to_string()]);
    }

    /// As `collect`, keeping what `clean` makes of each line.
    pub fn collect_with(
        &self,
        stream: impl Read + Send + 'static,
        clean: impl Fn(&str) -> Vec<String> + Send + 'static,
    ) {
        let sink = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line).into_owned();
                let mut kept = sink.0.lock().expect("lines");
                for part in clean(&line) {
                    if kept.len() < MAX_LINES {
                        kept.push(part);
                    }
                }
            }
        });
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().expect("lines").clone()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|l| l.contains(needle)).count()
    }

    /// The lines that contain `needle`, in order.
    pub fn matching(&self, needle: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }

    /// Waits until a line contains `needle`; panics with every line if not.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let found = poll(timeout, Duration::from_millis(20), || {
            let line = self.all().into_iter().find(|l| l.contains(needle));
            line.ok_or_else(|| format!("no line with {needle:?} within {timeout:?}"))
        });
        found.unwrap_or_else(|why| panic!("{why}; printed:\n{}", self.all().join("\n")))
    }
}

/// Waits until `check` holds, or panics naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < end, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Calls `check` every `every` until it gives `Ok`; after `timeout`, gives
/// its last `Err` (what it saw instead).
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let end = Instant::now() + timeout;
    loop {
        let seen = check();
        if seen.is_ok() || Instant::now() > end {
            return seen;
        }
        std::thread::sleep(every);
    }
}

pub fn metric_value(body: &str, sample: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .unwrap_or(0.0)
}

pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("http connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("http write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("http read");
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    let body = if resp
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// One sipp run.
pub struct Sipp {
    cmd: Command,
    scenario: String,
    dir: tempfile::TempDir,
}

impl Sipp {
    fn new(hotline: &Hotline, scenario: &str) -> Sipp {
        Sipp::at(hotline.sip, scenario)
    }

    /// A sipp scenario from tests/sipp against any SIP address (a front
    /// such as Kamailio, in cluster tests).
    pub fn at(target: SocketAddr, scenario: &str) -> Sipp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("sipp");
        cmd.arg(target.to_string())
            .arg("-sf")
            .arg(repo().join("tests/sipp").join(scenario))
            .arg("-i")
            .arg("127.0.0.1")
            .arg("-mp")
            .arg(free_sip_port().to_string())
            .arg("-m")
            .arg("1")
            .arg("-s")
            .arg("1000")
            .arg("-nostdin")
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .arg("-timeout")
            .arg("60s")
            .arg("-timeout_error")
            .current_dir(dir.path())
            .stdin(Stdio::null());
        Sipp {
            cmd,
            scenario: scenario.to_string(),
            dir,
        }
    }

    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    pub fn key(mut self, k: &str, v: impl ToString) -> Self {
        self.cmd.arg("-key").arg(k).arg(v.to_string());
        self
    }

    /// Sets the call length (the scenario's bare `<pause/>`), in ms.
    pub fn duration_ms(mut self, ms: u64) -> Self {
        self.cmd.arg("-d").arg(ms.to_string());
        self
    }

    /// The local SIP port sipp uses (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.cmd.arg("-p").arg(port.to_string());
        self
    }

    pub fn tcp(mut self) -> Self {
        self.cmd.arg("-t").arg("t1");
        self
    }

    /// Starts sipp without waiting.
    pub fn spawn(mut self) -> RunningSipp {
        if !self.cmd.get_args().any(|a| a == "-p") {
            self.cmd.arg("-p").arg(free_sip_port().to_string());
        }
        let child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sipp (apt-get install sip-tester)");
        RunningSipp {
            child: Some(child),
            scenario: self.scenario,
            dir: self.dir,
        }
    }

    /// Runs sipp to the end and asserts that every call succeeded.
    pub fn run_ok(self) {
        self.spawn().wait_ok();
    }
}

/// A sipp process; killed when dropped unless waited for.
pub struct RunningSipp {
    child: Option<Child>,
    scenario: String,
    dir: tempfile::TempDir,
}

impl RunningSipp {
    /// Stops sipp at once (its peer is gone, say).
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn wait(mut self) -> (bool, String) {
        let child = self.child.take().expect("sipp runs");
        let out = child.wait_with_output().expect("sipp output");
        let mut report = String::from_utf8_lossy(&out.stdout).into_owned();
        report.push_str(&String::from_utf8_lossy(&out.stderr));
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(e.path()) {
                    report.push_str(&format!("\n--- {} ---\n{text}", e.path().display()));
                }
            }
        }
        (out.status.success(), report)
    }

    pub fn wait_ok(self) {
        let scenario = self.scenario.clone();
        let (ok, report) = self.wait();
        let tail: String = report
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        assert!(ok, "sipp scenario {scenario} failed:\n{tail}");
    }
}

impl Drop for RunningSipp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends one raw SIP message over UDP and returns the first response, if any.
pub fn udp_exchange(to: SocketAddr, message: &str, wait: Duration) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(wait)).expect("timeout");
    let local = sock.local_addr().expect("addr");
    let message = message.replace("{local}", &local.to_string());
    sock.send_to(message.as_bytes(), to).expect("send");
    let mut buf = [0u8; 65536];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

/// A caller (sipp `call_listen.xml`) who listens for `ms` and hangs up, with
/// audio at `rtp`.
pub fn listening_caller(target: SocketAddr, rtp: &rtp::RtpListener, ms: u64) -> Sipp {
    Sipp::at(target, "call_listen.xml")
        .key("rtp_port", rtp.port)
        .key("codecs", "0 101")
        .duration_ms(ms)
}

/// Copies a flow directory into a fresh temporary one (to edit it in a test).
pub fn copy_flows(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(from, dir.path());
    dir
}

/// Copies a folder and everything in it.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read flows") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
