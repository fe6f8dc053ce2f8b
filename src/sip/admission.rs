//! Admission control in front of the endpoint: who may send what, and how fast.
//!
//! Sans-IO like the rest of `sip`: every check takes `now`. Per-source state
//! lives in maps bounded by `max_sources`; when one is full the entry seen
//! least recently is evicted, so a sweep of spoofed addresses costs memory
//! once and no more.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Why a request was turned away; the label of `hotline_sip_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// INVITE from outside the trusted sources (403).
    Untrusted,
    /// Over the per-source rate for its method (503 + Retry-After).
    RateLimited,
    /// Too many failed digests from this source or for this account (403).
    AuthThrottled,
    /// A known scanner's User-Agent (dropped without answer).
    Scanner,
}

impl Rejection {
    pub const ALL: [Rejection; 4] = [
        Rejection::Untrusted,
        Rejection::RateLimited,
        Rejection::AuthThrottled,
        Rejection::Scanner,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejection::Untrusted => "untrusted_source",
            Rejection::RateLimited => "rate_limited",
            Rejection::AuthThrottled => "auth_throttled",
            Rejection::Scanner => "scanner",
        }
    }
}

/// An IPv4 or IPv6 network, `addr/prefix` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// One address (a trunk's).
    pub fn host(ip: IpAddr) -> Cidr {
        Cidr {
            network: ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_match(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_match(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_match(net: &[u8], ip: &[u8], prefix: u8) -> bool {
    let mut bits = usize::from(prefix);
    for (n, i) in net.iter().zip(ip) {
        if bits == 0 {
            return true;
        }
        let take = bits.min(8);
        let mask = (0xffu16 << (8 - take)) as u8;
        if n & mask != i & mask {
            return false;
        }
        bits -= take;
    }
    true
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an address or CIDR network"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: prefix must be 0..={max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A token bucket's shape: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// No limit at all.
    pub const UNLIMITED: Rate = Rate {
        per_second: f64::INFINITY,
        burst: f64::INFINITY,
    };
}

/// What the operator configures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Networks INVITEs are taken from (trunks, SBCs). Others get 403, except
    /// from an address where an agent is registered (feature codes only,
    /// checked by the call layer). Set from the top-level `trusted_sources`.
    #[serde(skip)]
    pub trusted_sources: Vec<Cidr>,
    /// Per-source rates for new INVITEs, REGISTERs and everything else
    /// (OPTIONS, stray requests).
    pub invite_rate: Rate,
    pub register_rate: Rate,
    pub other_rate: Rate,
    /// Failed digests tolerated per source and per account within
    /// `auth_failure_window_s` before that source or account is refused for
    /// `auth_block_s`.
    pub auth_failures: u32,
    pub auth_failure_window_s: u64,
    pub auth_block_s: u64,
    /// Distinct sources (and accounts) remembered at once.
    pub max_sources: usize,
    /// User-Agent substrings (case-insensitive) whose requests are dropped.
    pub scanner_user_agents: Vec<String>,
}

impl Default for AdmissionConfig {
    fn default() -> AdmissionConfig {
        AdmissionConfig {
            trusted_sources: vec![
                Cidr {
                    network: IpAddr::from([127, 0, 0, 0]),
                    prefix: 8,
                },
                Cidr {
                    network: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                    prefix: 128,
                },
            ],
            // INVITEs come from trusted trunks only (others get 403), and one
            // SBC may carry every call: the default must not cap a trunk below
            // the setup rate the service is built for.
            invite_rate: Rate {
                per_second: 2000.0,
                burst: 4000.0,
            },
            register_rate: Rate {
                per_second: 20.0,
                burst: 50.0,
            },
            other_rate: Rate {
                per_second: 50.0,
                burst: 100.0,
            },
            auth_failures: 10,
            auth_failure_window_s: 60,
            auth_block_s: 300,
            max_sources: 4096,
            scanner_user_agents: [
                "friendly-scanner",
                "sipvicious",
                "sipcli",
                "sip-scan",
                "sipsak",
                "sundayddr",
                "iwar",
                "vaxasip",
                "pplsip",
                "sipptk",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

impl AdmissionConfig {
    /// Everything admitted, nothing limited (the endpoint's own default, so
    /// that a bare core behaves as plain SIP).
    pub fn open() -> AdmissionConfig {
        AdmissionConfig {
            trusted_sources: vec![
                "0.0.0.0/0".parse().unwrap_or(Cidr {
                    network: IpAddr::from([0, 0, 0, 0]),
                    prefix: 0,
                }),
                Cidr {
                    network: IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
                    prefix: 0,
                },
            ],
            invite_rate: Rate::UNLIMITED,
            register_rate: Rate::UNLIMITED,
            other_rate: Rate::UNLIMITED,
            auth_failures: u32::MAX,
            scanner_user_agents: Vec::new(),
            ..AdmissionConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("invite_rate", self.invite_rate),
            ("register_rate", self.register_rate),
            ("other_rate", self.other_rate),
        ] {
            if !(rate.per_second > 0.0 && rate.burst >= 1.0) {
                return Err(format!(
                    "{name}: per_second must be above 0 and burst at least 1"
                ));
            }
        }
        if self.max_sources == 0 {
            return Err("max_sources must be at least 1".into());
        }
        Ok(())
    }
}

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    Invite,
    Register,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default, Clone, Copy)]
struct Failures {
    count: u32,
    window_start: Option<Instant>,
    blocked_until: Option<Instant>,
    seen: Option<Instant>,
}

#[derive(Debug, Default)]
struct SourceState {
    buckets: [Option<Bucket>; 3],
    seen: Option<Instant>,
}

/// The admission state: token buckets per source and failed-digest counts
/// per source and per account.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    sources: HashMap<IpAddr, SourceState>,
    failures_by_source: HashMap<IpAddr, Failures>,
    failures_by_account: HashMap<String, Failures>,
}

/// Accounts longer than this are cut before being remembered.
const MAX_ACCOUNT_KEY: usize = 128;

impl Admission {
    pub fn new(config: AdmissionConfig) -> Admission {
        Admission {
            config,
            sources: HashMap::new(),
            failures_by_source: HashMap::new(),
            failures_by_account: HashMap::new(),
        }
    }

    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Whether `ip` is one of the trusted sources INVITEs are taken from.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.config.trusted_sources.iter().any(|c| c.contains(ip))
    }

    /// Whether the User-Agent names a known scanner.
    pub fn is_scanner(&self, user_agent: &str) -> bool {
        let ua = user_agent.to_ascii_lowercase();
        self.config
            .scanner_user_agents
            .iter()
            .any(|s| !s.is_empty() && ua.contains(&s.to_ascii_lowercase()))
    }

    /// Takes one token from `ip`'s bucket for `class`; false when it is empty.
    pub fn take(&mut self, now: Instant, ip: IpAddr, class: RequestClass) -> bool {
        let (rate, slot) = match class {
            RequestClass::Invite => (self.config.invite_rate, 0),
            RequestClass::Register => (self.config.register_rate, 1),
            RequestClass::Other => (self.config.other_rate, 2),
        };
        if rate.per_second.is_infinite() {
            return true;
        }
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.config.max_sources {
            evict_oldest(&mut self.sources, |s| s.seen);
        }
        let state = self.sources.entry(ip).or_default();
        state.seen = Some(now);
        let Some(bucket) = state.buckets.get_mut(slot) else {
            return true;
        };
        let b = bucket.get_or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate.per_second).min(rate.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether REGISTERs from `ip` or for `account` are refused for now.
    pub fn auth_blocked(&self, now: Instant, ip: IpAddr, account: &str) -> bool {
        let blocked = |f: Option<&Failures>| {
            f.and_then(|f| f.blocked_until)
                .is_some_and(|until| now < until)
        };
        blocked(self.failures_by_source.get(&ip))
            || blocked(self.failures_by_account.get(account_key(account)))
    }

    /// Notes a failed digest (credentials sent and refused).
    pub fn auth_failed(&mut self, now: Instant, ip: IpAddr, account: &str) {
        let limit = self.config.auth_failures;
        let window = Duration::from_secs(self.config.auth_failure_window_s);
        let block = Duration::from_secs(self.config.auth_block_s);
        let max = self.config.max_sources;
        if !self.failures_by_source.contains_key(&ip) && self.failures_by_source.len() >= max {
            evict_oldest(&mut self.failures_by_source, |f| f.seen);
        }
        let f = self.failures_by_source.entry(ip).or_default();
        count_failure(f, now, limit, window, block);
        let key = account_key(account);
        if !self.failures_by_account.contains_key(key) && self.failures_by_account.len() >= max {
            evict_oldest(&mut self.failures_by_account, |f| f.seen);
        }
        let f = self.failures_by_account.entry(key.to_string()).or_default();
        count_failure(f, now, limit, window, block);
    }

    /// Entries remembered (sources with buckets, and failure records).
    pub fn tracked(&self) -> usize {
        self.sources.len() + self.failures_by_source.len() + self.failures_by_account.len()
    }
}

fn account_key(account: &str) -> &str {
    let mut end = account.len().min(MAX_ACCOUNT_KEY);
    while !account.is_char_boundary(end) {
        end -= 1;
    }
    account.get(..end).unwrap_or("")
}

fn count_failure(f: &mut Failures, now: Instant, limit: u32, window: Duration, block: Duration) {
    f.seen = Some(now);
    let fresh = f
        .window_start
        .is_none_or(|start| now.saturating_duration_since(start) >= window);
    if fresh {
        f.window_start = Some(now);
        f.count = 0;
    }
    f.count = f.count.saturating_add(1);
    if f.count >= limit {
        f.blocked_until = now.checked_add(block);
        f.count = 0;
        f.window_start = None;
    }
}

/// Removes the entry seen least recently (a linear scan, done only when full).
fn evict_oldest<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    seen: impl Fn(&V) -> Option<Instant>,
) {
    let oldest = map
        .iter()
        .min_by_key(|(_, v)| seen(v))
        .map(|(k, _)| k.clone());
    if let Some(k) = oldest {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidrs_match_by_prefix() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        let odd: Cidr = "192.168.1.128/25".parse().unwrap();
        assert!(odd.contains(ip("192.168.1.200")));
        assert!(!odd.contains(ip("192.168.1.127")));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::2")));
        let loopback: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(loopback.contains(ip("::ffff:127.0.0.2")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn default_trusts_loopback_only() {
        let a = Admission::new(AdmissionConfig::default());
        assert!(a.is_trusted(ip("127.0.0.1")));
        assert!(a.is_trusted(ip("127.0.0.2")));
        assert!(a.is_trusted(ip("::1")));
        assert!(!a.is_trusted(ip("192.0.2.1")));
        let open = Admission::new(AdmissionConfig::open());
        assert!(open.is_trusted(ip("192.0.2.1")));
        assert!(open.is_trusted(ip("2001:db8::1")));
    }

    #[test]
    fn scanners_are_recognised_by_user_agent() {
        let a = Admission::new(AdmissionConfig::default());
        assert!(a.is_scanner("friendly-scanner"));
        assert!(a.is_scanner("SIPVicious 0.3"));
        assert!(a.is_scanner("sipcli/v1.8"));
        assert!(!a.is_scanner("Linphone/5.2"));
        assert!(!Admission::new(AdmissionConfig::open()).is_scanner("friendly-scanner"));
    }

    #[test]
    fn buckets_refill_at_the_configured_rate() {
        let config = AdmissionConfig {
            other_rate: Rate {
                per_second: 10.0,
                burst: 3.0,
            },
            ..AdmissionConfig::default()
        };
        let mut a = Admission::new(config);
        let t0 = Instant::now();
        let src = ip("192.0.2.7");
        for _ in 0..3 {
            assert!(a.take(t0, src, RequestClass::Other));
        }
        assert!(!a.take(t0, src, RequestClass::Other));
        // Another source and another class are not affected.
        assert!(a.take(t0, ip("192.0.2.8"), RequestClass::Other));
        assert!(a.take(t0, src, RequestClass::Register));
        // A tenth of a second buys one more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(a.take(t1, src, RequestClass::Other));
        assert!(!a.take(t1, src, RequestClass::Other));
        // Long idle refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(a.take(t2, src, RequestClass::Other));
        }
        assert!(!a.take(t2, src, RequestClass::Other));
    }

    #[test]
    fn source_map_stays_bounded() {
        let config = AdmissionConfig {
            max_sources: 16,
            ..AdmissionConfig::default()
        };
        let mut a = Admission::new(config);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let src = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            let now = t0 + Duration::from_millis(u64::from(i));
            a.take(now, src, RequestClass::Other);
            a.auth_failed(now, src, &format!("acct{i}"));
        }
        assert!(a.tracked() <= 48);
    }

    #[test]
    fn failed_digests_block_source_and_account_for_a_while() {
        let config = AdmissionConfig {
            auth_failures: 3,
            auth_failure_window_s: 60,
            auth_block_s: 300,
            ..AdmissionConfig::default()
        };
        let mut a = Admission::new(config);
        let t0 = Instant::now();
        let src = ip("192.0.2.9");
        for i in 0..2 {
            a.auth_failed(t0 + Duration::from_secs(i), src, "1001");
        }
        assert!(!a.auth_blocked(t0, src, "1001"));
        a.auth_failed(t0 + Duration::from_secs(2), src, "1001");
        let t = t0 + Duration::from_secs(3);
        assert!(a.auth_blocked(t, src, "other"));
        // The account is blocked from any source, too.
        assert!(a.auth_blocked(t, ip("192.0.2.10"), "1001"));
        assert!(!a.auth_blocked(t, ip("192.0.2.10"), "1002"));
        assert!(!a.auth_blocked(t0 + Duration::from_secs(303), src, "1001"));
        // Failures spread wider than the window never add up to a block.
        let mut b = Admission::new(a.config().clone());
        for i in 0..10 {
            b.auth_failed(t0 + Duration::from_secs(i * 40), src, "1003");
        }
        assert!(!b.auth_blocked(t0 + Duration::from_secs(400), src, "1003"));
    }
}
