//! One typed configuration: embedded defaults, then an optional YAML file, then
//! command-line flags. Validated once at start; a bad value is a clear error.

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
    /// Agent accounts (`agents.yaml`); reloaded when it changes. Without the
    /// file there are no agents and every REGISTER is refused.
    pub agents_file: PathBuf,
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
            api_token: None,
            ws_token: None,
            max_calls: 5000,
            max_sip_transactions: 131_072,
            max_sip_message: 16 * 1024,
            drain_limit_s: 30,
            shutdown_grace_ms: 2000,
            answer_delay_ms: 0,
            agents_file: PathBuf::from("agents.yaml"),
            ready_on_register: true,
            digest_algorithms: crate::registrar::DEFAULT_ALGORITHMS.to_vec(),
            rtp_timeout_s: 30,
            session_expires_s: 1800,
            min_se_s: 90,
            trusted_sources: crate::sip::admission::AdmissionConfig::default().trusted_sources,
            sip_admission: crate::sip::admission::AdmissionConfig::default(),
            timezone: "Europe/Oslo".to_string(),
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

impl Config {
    /// Reads a YAML config file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
