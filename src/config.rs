//! One typed configuration: embedded defaults, then an optional YAML file, then
//! command-line flags. Validated once at start; a bad value is a clear error.
//!
//! A relative path written in the config file is taken from the file's folder,
//! so the same file works whatever the working directory; a path given as a
//! flag, and the defaults (`./ivr-flows`, `./data`), are taken from the working
//! directory.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The service configuration. Every field has a default, so no file is needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SIP address, for UDP and TCP alike.
    pub sip_listen: SocketAddr,
    /// HTTP address: metrics, health, API, wallboard.
    pub http_listen: SocketAddr,
    /// Folder with the flows, prompt catalogue and audio.
    pub flows: PathBuf,
    /// Folder for durable data (call records).
    pub data_dir: PathBuf,
    /// RTP port range, `LO-HI`.
    pub rtp_ports: PortRange,
    /// Address written in SDP and Contact when it differs from the bound one (NAT).
    pub public_ip: Option<IpAddr>,
    /// Cluster mode: this node's name; with `redis`, the queues are shared.
    pub node_id: Option<String>,
    /// Cluster mode: the shared store's URL (`redis://host:port/db`).
    pub redis: Option<String>,
    /// Bearer token for the HTTP write endpoints. Without it they are refused.
    pub api_token: Option<String>,
    /// Token the live event stream (`/ws?token=...`, and so the wallboard) asks
    /// for; without it the stream is open like `/metrics`.
    pub ws_token: Option<String>,
    /// Calls held at once; more INVITEs get 503.
    pub max_calls: usize,
    /// SIP transactions kept at once (each lingers 32 s after it ends); the
    /// sustained setup rate is bounded by about a sixty-fourth of this per second.
    pub max_sip_transactions: usize,
    /// Largest SIP message accepted, in bytes.
    pub max_sip_message: usize,
    /// On SIGTERM/SIGINT, how long calls in progress may go on (new calls get
    /// 503) before the rest are hung up.
    pub drain_limit_s: u64,
    /// How long a shutdown waits for BYEs to be answered.
    pub shutdown_grace_ms: u64,
    /// Ring this long (180 Ringing) before answering; 0 answers at once.
    pub answer_delay_ms: u64,
    /// Agent accounts (`agents.yaml`); reloaded when it changes. When set,
    /// the file must exist. Unset: `agents.yaml` in the working directory if
    /// there is one; without it there are no agents and every REGISTER is
    /// refused.
    pub agents_file: Option<PathBuf>,
    /// Whether an agent becomes ready as soon as its phone registers (else
    /// paused until it says ready).
    pub ready_on_register: bool,
    /// Digest algorithms a REGISTER is challenged with, most preferred first
    /// (`md5`, `sha-256`). MD5 alone by default: many deployed phones refuse
    /// or mishandle a SHA-256 challenge (see docs/queues.md).
    pub digest_algorithms: Vec<crate::registrar::Algorithm>,
    /// Seconds without RTP from a leg before the peer is probed (and the call
    /// ended if it does not answer); 0 turns the check off.
    pub rtp_timeout_s: u64,
    /// RFC 4028 session interval asked for and granted at most: a session
    /// not refreshed within it is ended (BYE both legs), so a vanished peer
    /// never keeps an agent "on call". At least `min_se_s`.
    pub session_expires_s: u32,
    /// Smallest session interval accepted (`Min-SE`); a shorter
    /// `Session-Expires` gets 422. At least 90 (RFC 4028 4).
    pub min_se_s: u32,
    /// Networks (CIDR) INVITEs are taken from: trunks and SBCs. Others get
    /// 403, except an agent's registered phone dialling a feature code.
    pub trusted_sources: Vec<crate::sip::admission::Cidr>,
    /// Per-source rate limits, digest-failure throttling and scanner list.
    pub sip_admission: crate::sip::admission::AdmissionConfig,
    /// The hotline's timezone (IANA name): where "today" on the wallboard
    /// starts at midnight. Schedules name their own (same default).
    pub timezone: String,
    /// Outbound gateways: where transfers to outside numbers leave, and
    /// which numbers each may dial (docs/trunks.md).
    #[serde(deserialize_with = "crate::trunk::deserialize_trunks")]
    pub trunks: Vec<crate::trunk::TrunkConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            sip_listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            flows: PathBuf::from("ivr-flows"),
            data_dir: PathBuf::from("data"),
            rtp_ports: PortRange {
                min: 20000,
                max: 30000,
            },
            public_ip: None,
            node_id: None,
            redis: None,
            api_token: None,
            ws_token: None,
            max_calls: 5000,
            max_sip_transactions: 131_072,
            max_sip_message: 16 * 1024,
            drain_limit_s: 30,
            shutdown_grace_ms: 2000,
            answer_delay_ms: 0,
            agents_file: None,
            ready_on_register: true,
            digest_algorithms: crate::registrar::DEFAULT_ALGORITHMS.to_vec(),
            rtp_timeout_s: 30,
            session_expires_s: 1800,
            min_se_s: 90,
            trusted_sources: crate::sip::admission::AdmissionConfig::default().trusted_sources,
            sip_admission: crate::sip::admission::AdmissionConfig::default(),
            timezone: "Europe/Oslo".to_string(),
            trunks: Vec::new(),
        }
    }
}

/// An inclusive range of UDP ports for RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (lo, hi) = s.split_once('-').ok_or_else(|| {
            format!("`{s}` is not a port range: write it as LO-HI, e.g. 20000-30000")
        })?;
        let min: u16 = lo
            .trim()
            .parse()
            .map_err(|_| format!("`{lo}` is not a port number (1-65535)"))?;
        let max: u16 = hi
            .trim()
            .parse()
            .map_err(|_| format!("`{hi}` is not a port number (1-65535)"))?;
        if min == 0 || min > max || max - min < 1 {
            return Err(format!(
                "`{s}` is not a usable range: LO must be at least 1 and below HI"
            ));
        }
        Ok(PortRange { min, max })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `LINE:COL: message` of a YAML error (the message alone when it has no
/// position), so that the path in front makes the `file:line:col` editors
/// jump to.
fn located_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // Drop the library's own "line N column M: " prefix.
    let message = match first.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((position, rest)) if position.contains(" column ") => rest,
        _ => first,
    };
    match e.location() {
        Some(at) => format!("{}:{}: {message}", at.line(), at.column()),
        None => format!(" {message}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The path keys as written in a config file, to resolve against its folder.
#[derive(Default, Deserialize)]
#[serde(default)]
struct PathKeys {
    flows: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    agents_file: Option<PathBuf>,
}

/// Settings given as command-line flags: each replaces the file's value (or
/// the default).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub sip_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub flows: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub rtp_ports: Option<PortRange>,
    pub public_ip: Option<IpAddr>,
    pub node_id: Option<String>,
    pub redis: Option<String>,
}

impl Config {
    /// The defaults, then the config file if one is given, then the flags.
    pub fn load(file: Option<&Path>, flags: Overrides) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = flags.sip_listen {
            config.sip_listen = v;
        }
        if let Some(v) = flags.http_listen {
            config.http_listen = v;
        }
        if let Some(v) = flags.flows {
            config.flows = v;
        }
        if let Some(v) = flags.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = flags.rtp_ports {
            config.rtp_ports = v;
        }
        if let Some(v) = flags.public_ip {
            config.public_ip = Some(v);
        }
        if let Some(v) = flags.node_id {
            config.node_id = Some(v);
        }
        if let Some(v) = flags.redis {
            config.redis = Some(v);
        }
        Ok(config)
    }

    /// Reads a YAML config file over the defaults. Relative paths in it are
    /// taken from the file's folder; a configured agents file must exist.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let syntax = |e: serde_saphyr::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: located_message(&e),
        };
        let mut config: Config = serde_saphyr::from_str(&text).map_err(syntax)?;
        let written: PathKeys = serde_saphyr::from_str(&text).map_err(syntax)?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.flows = written.flows.map_or(config.flows, |p| base.join(p));
        config.data_dir = written.data_dir.map_or(config.data_dir, |p| base.join(p));
        config.agents_file = written.agents_file.map(|p| base.join(p));
        if let Some(agents) = &config.agents_file {
            if let Err(e) = std::fs::metadata(agents).and_then(|m| {
                if m.is_file() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("a folder, not a file"))
                }
            }) {
                return Err(ConfigError::Invalid(format!(
                    "{}: agents_file {}: {e}; fix the path (relative paths are taken from the config file's folder) or remove `agents_file` to run without agents",
                    path.display(),
                    agents.display()
                )));
            }
        }
        Ok(config)
    }

    /// The agents file to load, and whether it was configured (then it must
    /// exist) or is the default `agents.yaml` (then it may be missing).
    pub fn agents_path(&self) -> (PathBuf, bool) {
        match &self.agents_file {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from("agents.yaml"), false),
        }
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.node_id, &self.redis) {
            (Some(node), Some(url)) => {
                crate::cluster::store::validate(node, url)
                    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "node_id is set but redis is not: cluster mode needs both (or neither, for a single node)"
                        .to_string(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "redis is set but node_id is not: give every node its own name".to_string(),
                ))
            }
            (None, None) => {}
        }
        if self.max_calls == 0 {
            return Err(ConfigError::Invalid(
                "max_calls must be at least 1".to_string(),
            ));
        }
        if self.sip_listen.ip().is_unspecified() && self.public_ip.is_none() {
            // SDP and Contact would carry 0.0.0.0: calls would have no audio.
            return Err(ConfigError::Invalid(format!(
                "sip_listen {} listens on every address: set public_ip to the address trunks and phones reach this host at",
                self.sip_listen
            )));
        }
        let ports = usize::from(self.rtp_ports.max - self.rtp_ports.min) / 2;
        if ports == 0 {
            return Err(ConfigError::Invalid(
                "rtp_ports must hold at least two ports (one even RTP port per call)".to_string(),
            ));
        }
        if self.answer_delay_ms > 60_000 {
            return Err(ConfigError::Invalid(
                "answer_delay_ms above 60000 would let callers ring for over a minute".to_string(),
            ));
        }
        if self.max_sip_message < 1024 {
            return Err(ConfigError::Invalid(
                "max_sip_message below 1024 bytes would refuse ordinary INVITEs".to_string(),
            ));
        }
        if self.min_se_s < crate::sip::session_timer::MIN_SE_FLOOR {
            return Err(ConfigError::Invalid(format!(
                "min_se_s must be at least {} (RFC 4028)",
                crate::sip::session_timer::MIN_SE_FLOOR
            )));
        }
        if self.session_expires_s < self.min_se_s {
            return Err(ConfigError::Invalid(
                "session_expires_s must be at least min_se_s".to_string(),
            ));
        }
        self.sip_admission
            .validate()
            .map_err(ConfigError::Invalid)?;
        self.check_digest_algorithms()?;
        self.tz()?;
        crate::trunk::Trunks::from_config(&self.trunks).map_err(ConfigError::Invalid)?;
        Ok(())
    }

    fn check_digest_algorithms(&self) -> Result<(), ConfigError> {
        let list = &self.digest_algorithms;
        if list.is_empty() {
            return Err(ConfigError::Invalid(
                "digest_algorithms is empty: list md5, sha-256 or both, most preferred first (e.g. [md5])"
                    .to_string(),
            ));
        }
        for (i, a) in list.iter().enumerate() {
            if list.iter().take(i).any(|b| b == a) {
                return Err(ConfigError::Invalid(format!(
                    "digest_algorithms names {} twice: list each algorithm once, most preferred first",
                    a.config_name()
                )));
            }
        }
        Ok(())
    }

    /// The parsed `timezone`.
    pub fn tz(&self) -> Result<chrono_tz::Tz, ConfigError> {
        self.timezone.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "unknown timezone `{}`: use an IANA name such as Europe/Oslo",
                self.timezone
            ))
        })
    }

    /// Admission rules for the SIP endpoint, trusted sources included.
    pub fn admission(&self) -> crate::sip::admission::AdmissionConfig {
        crate::sip::admission::AdmissionConfig {
            trusted_sources: self.trusted_sources.clone(),
            ..self.sip_admission.clone()
        }
    }

    /// RFC 4028 settings for the SIP endpoint.
    pub fn session_timers(&self) -> crate::sip::session_timer::TimerConfig {
        crate::sip::session_timer::TimerConfig {
            session_expires: self.session_expires_s,
            min_se: self.min_se_s,
        }
    }

    /// The address to put in SDP: the public one if set, else the SIP bind address.
    pub fn media_ip(&self) -> IpAddr {
        self.public_ip.unwrap_or(self.sip_listen.ip())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_parses_and_refuses_nonsense() {
        assert_eq!(
            "20000-30000".parse::<PortRange>(),
            Ok(PortRange {
                min: 20000,
                max: 30000
            })
        );
        assert!("30000-20000".parse::<PortRange>().is_err());
        assert!("20000".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::default();
        assert_eq!(c.sip_listen.to_string(), "127.0.0.1:5060");
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.flows, PathBuf::from("ivr-flows"));
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!((c.rtp_ports.min, c.rtp_ports.max), (20000, 30000));
        assert_eq!((c.session_expires_s, c.min_se_s), (1800, 90));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn session_timer_settings_are_validated() {
        let mut c = Config {
            min_se_s: 89,
            ..Config::default()
        };
        let e = c.validate().expect_err("below 90").to_string();
        assert!(e.contains("min_se_s"), "{e}");
        c.min_se_s = 600;
        c.session_expires_s = 300;
        let e = c.validate().expect_err("below min_se").to_string();
        assert!(e.contains("session_expires_s"), "{e}");
        c.session_expires_s = 600;
        assert!(c.validate().is_ok());
        assert_eq!(c.session_timers().min_se, 600);
    }

    #[test]
    fn file_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("hotline.yaml");
        std::fs::write(&p, "sip_listen: 127.0.0.1:5070\nrtp_ports: 40000-40100\n").expect("write");
        let c = Config::from_file(&p).expect("parses");
        assert_eq!(c.sip_listen.port(), 5070);
        assert_eq!(c.rtp_ports.min, 40000);
        assert_eq!(c.http_listen.port(), 8080);
        std::fs::write(&p, "sip_listn: 127.0.0.1:5070\n").expect("write");
        let e = Config::from_file(&p).expect_err("typo refused").to_string();
        assert!(e.contains("hotline.yaml"), "{e}");
    }

    #[test]
    fn trunks_load_and_a_bad_one_is_reported_at_its_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("hotline.yaml");
        let good = "trunks:\n  - name: pstn\n    address: 127.0.0.1:5070\n    username: hotline\n    password: s3cret\n    patterns: [\"112\", \"+47XXXXXXXX\"]\n    channels: 2\n    caller_id: \"+4780012345\"\n";
        std::fs::write(&p, good).expect("write");
        let c = Config::from_file(&p).expect("parses");
        assert!(c.validate().is_ok());
        assert_eq!(c.trunks.len(), 1);
        assert_eq!(c.trunks[0].channels, 2);
        for (text, line, words) in [
            (
                good.replace("\"+47XXXXXXXX\"", "\"+47XXXXXXXA\""),
                "6:",
                "X (any digit)",
            ),
            (
                good.replace("channels: 2", "channels: 0"),
                "2:",
                "channels: 0",
            ),
            (
                good.replace("caller_id: \"+4780012345\"", "caller_id: anonymous"),
                "8:",
                "pass",
            ),
            (good.replace("channels: 2", "chanels: 2"), "7:", "chanels"),
            (
                format!("{good}{}", &good["trunks:\n".len()..]),
                "",
                "rename one",
            ),
        ] {
            std::fs::write(&p, &text).expect("write");
            let e = Config::from_file(&p).expect_err(words).to_string();
            assert!(e.contains(words), "{e}");
            assert!(e.starts_with(&format!("{}:{line}", p.display())), "{e}");
        }
    }

    #[test]
    fn paths_in_the_file_are_taken_from_its_folder_and_flags_from_the_working_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::write(etc.join("agents.yaml"), "agents: []\n").expect("write");
        let p = etc.join("hotline.yaml");
        std::fs::write(
            &p,
            "flows: ../flows\ndata_dir: /var/lib/hotline\nagents_file: agents.yaml\n",
        )
        .expect("write");
        let c = Config::from_file(&p).expect("parses");
        assert_eq!(c.flows, etc.join("../flows"));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/hotline"));
        assert_eq!(c.agents_path(), (etc.join("agents.yaml"), true));

        // A flag replaces the file's value as written: from the working directory.
        let flags = Overrides {
            flows: Some(PathBuf::from("my-flows")),
            data_dir: Some(PathBuf::from("data")),
            ..Overrides::default()
        };
        let c = Config::load(Some(&p), flags).expect("loads");
        assert_eq!(c.flows, PathBuf::from("my-flows"));
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.agents_path(), (etc.join("agents.yaml"), true));

        // Keys the file does not set keep their defaults, from the working directory.
        std::fs::write(&p, "max_calls: 10\n").expect("write");
        let c = Config::from_file(&p).expect("parses");
        assert_eq!(c.flows, PathBuf::from("ivr-flows"));
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.agents_path(), (PathBuf::from("agents.yaml"), false));
        assert_eq!(
            Config::default().agents_path(),
            (PathBuf::from("agents.yaml"), false)
        );
    }

    #[test]
    fn a_configured_agents_file_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("hotline.yaml");
        std::fs::write(&p, "agents_file: agents.yaml\n").expect("write");
        let e = Config::from_file(&p).expect_err("missing").to_string();
        let missing = dir.path().join("agents.yaml");
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(e.contains("agents_file"), "{e}");
        assert!(e.contains(&p.display().to_string()), "{e}");
        // A folder is not an agents file either.
        std::fs::create_dir(&missing).expect("mkdir");
        let e = Config::from_file(&p).expect_err("a folder").to_string();
        assert!(e.contains("not a file"), "{e}");
    }

    /// The YAML block of the README that starts with `first_line`.
    fn readme_block(first_line: &str) -> &'static str {
        let readme = include_str!("../README.md");
        let start = readme
            .find(&format!("```yaml\n{first_line}"))
            .map(|i| i + "```yaml\n".len())
            .unwrap_or_else(|| panic!("README has no block starting {first_line}"));
        let len = readme[start..].find("```").expect("block end");
        &readme[start..start + len]
    }

    #[test]
    fn the_readme_shows_the_real_defaults_and_a_valid_example() {
        let shown: Config = serde_saphyr::from_str(readme_block("# The defaults"))
            .expect("the defaults block parses as a config");
        assert_eq!(format!("{shown:?}"), format!("{:?}", Config::default()));

        let example: Config = serde_saphyr::from_str(readme_block("# An example"))
            .expect("the example block parses as a config");
        assert!(example.validate().is_ok());
        assert_ne!(example.sip_listen, Config::default().sip_listen);
    }

    #[test]
    fn digest_algorithms_default_to_md5_and_are_checked() {
        use crate::registrar::Algorithm;
        assert_eq!(Config::default().digest_algorithms, vec![Algorithm::Md5]);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("hotline.yaml");
        std::fs::write(&p, "digest_algorithms: [sha-256, MD5]\n").expect("write");
        let c = Config::from_file(&p).expect("parses");
        assert_eq!(c.digest_algorithms, vec![Algorithm::Sha256, Algorithm::Md5]);
        assert!(c.validate().is_ok());
        // An unknown name: the file, line and column, and what to write.
        std::fs::write(&p, "api_token: x\ndigest_algorithms: [md5, sha1]\n").expect("write");
        let e = Config::from_file(&p).expect_err("sha1 refused").to_string();
        assert!(e.contains("hotline.yaml"), "{e}");
        assert!(e.contains("line 2 column 26") || e.contains(":2:26"), "{e}");
        assert!(
            e.contains("`sha1` is not a digest algorithm: write md5 or sha-256"),
            "{e}"
        );
        for (list, words) in [
            (vec![], "digest_algorithms is empty"),
            (vec![Algorithm::Md5, Algorithm::Md5], "names md5 twice"),
        ] {
            let c = Config {
                digest_algorithms: list,
                ..Config::default()
            };
            let e = c.validate().expect_err(words).to_string();
            assert!(e.contains(words), "{e}");
        }
    }

    #[test]
    fn listening_everywhere_needs_the_address_to_advertise() {
        let mut c = Config {
            sip_listen: "0.0.0.0:5060".parse().expect("addr"),
            ..Config::default()
        };
        let e = c.validate().expect_err("0.0.0.0 in SDP").to_string();
        assert!(e.contains("public_ip"), "{e}");
        c.public_ip = Some("192.0.2.10".parse().expect("ip"));
        assert!(c.validate().is_ok());
    }
}
