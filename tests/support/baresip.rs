//! Debian's baresip (1.0.0) as an agent's softphone: a real SIP user agent,
//! run headless. Its audio source is a WAV file (`aufile`) and its player a
//! bridge device no source ever reads (`aubridge`), so no sound card is
//! needed. Each phone gets its own config folder in a temporary directory.

use super::{free_sip_port, Lines};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian installs baresip's modules.
const MODULES: &str = "/usr/lib/baresip/modules";

/// How the phone is set up.
pub struct Phone<'a> {
    /// The hotline's SIP address: registrar and domain.
    pub registrar: SocketAddr,
    pub user: &'a str,
    pub password: &'a str,
    /// `auto` answers every call at once; `manual` lets it ring.
    pub answermode: &'a str,
    /// Seconds of audio the phone sends on a call (a 440 Hz tone); baresip
    /// hangs up when the file ends.
    pub audio_seconds: u32,
    /// baresip quits by itself after this long, whatever happens to the test.
    pub lifetime: Duration,
}

impl<'a> Phone<'a> {
    /// A phone that registers as `user` and answers every call at once.
    pub fn auto_answer(registrar: SocketAddr, user: &'a str, password: &'a str) -> Phone<'a> {
        Phone {
            registrar,
            user,
            password,
            answermode: "auto",
            audio_seconds: 120,
            lifetime: Duration::from_secs(300),
        }
    }

    pub fn start(&self) -> Baresip {
        Baresip::start(self)
    }
}

/// A running baresip.
pub struct Baresip {
    child: Child,
    /// Where the phone listens for SIP (its Contact).
    pub sip: SocketAddr,
    log: Lines,
    dir: tempfile::TempDir,
}

impl Baresip {
    fn start(phone: &Phone<'_>) -> Baresip {
        assert!(
            Path::new(MODULES).join("aufile.so").exists(),
            "baresip is not installed (apt-get install baresip-core)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let wav = dir.path().join("tone.wav");
        write_tone(&wav, phone.audio_seconds);
        let sip: SocketAddr = format!("127.0.0.1:{}", free_sip_port())
            .parse()
            .expect("addr");
        let config = format!(
            "poll_method\tepoll\n\
             sip_listen\t{sip}\n\
             rtp_ports\t20000-29999\n\
             audio_source\taufile,{wav}\n\
             audio_player\taubridge,nowhere\n\
             audio_alert\taubridge,nowhere\n\
             module_path\t{MODULES}\n\
             module\tg711.so\n\
             module\taufile.so\n\
             module\taubridge.so\n\
             module_tmp\taccount.so\n\
             module_app\tmenu.so\n",
            wav = wav.display()
        );
        std::fs::write(dir.path().join("config"), config).expect("write config");
        let account = format!(
            "<sip:{user}@{host}:{port}>;auth_pass={password};answermode={answermode};regint=600\n",
            user = phone.user,
            host = phone.registrar.ip(),
            port = phone.registrar.port(),
            password = phone.password,
            answermode = phone.answermode,
        );
        std::fs::write(dir.path().join("accounts"), account).expect("write accounts");
        // Line-buffered, so that the test reads each line as it is written.
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg("baresip")
            .arg("-f")
            .arg(dir.path())
            .arg("-t")
            .arg(phone.lifetime.as_secs().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start baresip");
        let log = Lines::default();
        // The status line is redrawn with carriage returns; warnings come in
        // colour.
        let clean = |line: &str| -> Vec<String> {
            line.split('\r')
                .map(strip_colours)
                .map(|part| part.trim_matches(char::from(0)).trim_end().to_string())
                .filter(|part| !part.is_empty() && !part.starts_with("[0:"))
                .collect()
        };
        log.collect_with(child.stdout.take().expect("stdout"), clean);
        log.collect_with(child.stderr.take().expect("stderr"), clean);
        Baresip {
            child,
            sip,
            log,
            dir,
        }
    }

    /// Everything baresip printed so far, one entry per line.
    pub fn log(&self) -> Vec<String> {
        self.log.all()
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.log.count(needle)
    }

    /// Waits until a line contains `needle`; panics with the log if not.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.log.wait_for(needle, timeout)
    }

    /// Waits for the registrar's 200 OK, as baresip reports it.
    pub fn wait_registered(&self, timeout: Duration) -> String {
        self.wait_for_log("200 OK", timeout)
    }

    /// The phone's config folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- baresip log ---\n{}", self.log().join("\n"));
        }
    }
}

/// Drops ANSI colour sequences (`ESC [ ... m`), which baresip prints around
/// warnings.
fn strip_colours(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A 440 Hz tone, 8 kHz mono 16-bit PCM: what `aufile` reads for G.711.
fn write_tone(path: &Path, seconds: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..8000 * seconds {
        let t = f64::from(i) / 8000.0;
        let sample = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        w.write_sample(sample).expect("write sample");
    }
    w.finalize().expect("finish wav");
}
