//! SIP trunks: the gateways our outbound calls leave through (transfers to
//! an outside number, and later callbacks), and the toll-fraud guard in
//! front of them.
//!
//! A number is dialled only through a trunk whose `patterns` match it, and
//! only while the trunk has a free channel. Every refusal has a reason the
//! metrics count (`hotline_trunk_refusals_total{reason}`), so a flow or a
//! caller probing for expensive numbers shows on a dashboard and in an alert.
//!
//! `Trunks` is plain data and decisions: the call layer asks [`Trunks::route`]
//! for a channel before it dials and hands it back with [`Trunks::release`]
//! when the leg ends.

mod pattern;

pub use pattern::DialPattern;

use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// One `trunks:` entry of the config file, checked as it is read so that a
/// mistake is reported at its line and column.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "TrunkFields")]
pub struct TrunkConfig {
    pub name: String,
    pub address: String,
    pub transport: TrunkTransport,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub patterns: Vec<DialPattern>,
    pub channels: u32,
    pub caller_id: CallerIdRule,
    pub trusted: bool,
}

/// A `trunks:` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrunkFields {
    /// How flows and logs name it.
    pub name: String,
    /// `host:port` of the gateway; a host name is resolved once at start.
    pub address: String,
    #[serde(default)]
    pub transport: TrunkTransport,
    /// Digest credentials for the gateway's 401/407 challenges.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// The only numbers this trunk may dial (see [`DialPattern`]).
    pub patterns: Vec<DialPattern>,
    /// Calls through this trunk at once; more are refused (`channels`).
    #[serde(default = "default_channels")]
    pub channels: u32,
    /// The number the called party sees: `pass` (the caller's own, the
    /// default) or a fixed number such as the hotline's.
    #[serde(default)]
    pub caller_id: CallerIdRule,
    /// Whether INVITEs from the gateway's address are trusted callers
    /// (admission skips its rate limits for them). Default true.
    #[serde(default = "yes")]
    pub trusted: bool,
}

impl TryFrom<TrunkFields> for TrunkConfig {
    type Error = String;
    fn try_from(c: TrunkFields) -> Result<TrunkConfig, String> {
        let at = format!("trunk `{}`", c.name);
        if c.name.is_empty()
            || !c
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "{at}: a trunk name is letters, digits, `_` and `-`"
            ));
        }
        if c.patterns.is_empty() {
            return Err(format!(
                "{at}: no `patterns`, so it could dial nothing; list the numbers it may dial, e.g. [\"112\", \"+47XXXXXXXX\"]"
            ));
        }
        if c.channels == 0 {
            return Err(format!(
                "{at}: `channels: 0` allows no call; give 1 or more"
            ));
        }
        if c.username.is_some() != c.password.is_some() {
            return Err(format!(
                "{at}: give both `username` and `password`, or neither"
            ));
        }
        let port_ok = c.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err(format!(
                "{at}: address `{}`: write host:port, e.g. 192.0.2.10:5060",
                c.address
            ));
        }
        Ok(TrunkConfig {
            name: c.name,
            address: c.address,
            transport: c.transport,
            username: c.username,
            password: c.password,
            patterns: c.patterns,
            channels: c.channels,
            caller_id: c.caller_id,
            trusted: c.trusted,
        })
    }
}

/// Reads the `trunks:` list: each entry checked, and no name twice.
pub fn deserialize_trunks<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<TrunkConfig>, D::Error> {
    let trunks = Vec::<TrunkConfig>::deserialize(d)?;
    for (i, t) in trunks.iter().enumerate() {
        if trunks.iter().take(i).any(|other| other.name == t.name) {
            return Err(serde::de::Error::custom(format!(
                "two trunks are named `{}`; rename one",
                t.name
            )));
        }
    }
    Ok(trunks)
}

fn default_channels() -> u32 {
    4
}

fn yes() -> bool {
    true
}

/// `udp` (default) or `tcp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    #[default]
    Udp,
    Tcp,
}

/// A password from the config file; never shown by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Who the called party sees calling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CallerIdRule {
    /// The caller's own number (an emergency line sees who needs help).
    #[default]
    Pass,
    /// Always this number.
    Fixed(String),
}

impl<'de> Deserialize<'de> for CallerIdRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "pass" {
            return Ok(CallerIdRule::Pass);
        }
        let ok = !text.is_empty()
            && text.len() <= 32
            && text
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'+'));
        if ok {
            Ok(CallerIdRule::Fixed(text))
        } else {
            Err(serde::de::Error::custom(format!(
                "caller_id `{text}`: write `pass` (the caller's own number) or a number like +4780012345"
            )))
        }
    }
}

/// Why a number was not dialled; the label of `hotline_trunk_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// No trunk's patterns allow the number (the toll-fraud guard).
    NotAllowed,
    /// Every trunk that may dial it is at its channel limit.
    NoChannel,
    /// The flow named a trunk that is not configured.
    UnknownTrunk,
    /// Not a dialable number at all.
    BadNumber,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::NotAllowed,
        Refusal::NoChannel,
        Refusal::UnknownTrunk,
        Refusal::BadNumber,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not_allowed",
            Refusal::NoChannel => "no_channel",
            Refusal::UnknownTrunk => "unknown_trunk",
            Refusal::BadNumber => "bad_number",
        }
    }
}

/// A channel taken on a trunk: where and how to send the INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index into [`Trunks`], to release the channel.
    pub trunk: usize,
    pub trunk_name: String,
    pub destination: SocketAddr,
    pub transport: TrunkTransport,
    /// `sip:<number>@<address>`.
    pub request_uri: String,
    /// The number the called party sees.
    pub caller_id: String,
    pub credentials: Option<(String, String)>,
}

struct Trunk {
    config: TrunkConfig,
    address: SocketAddr,
    in_use: u32,
}

/// The configured trunks and their channels in use.
#[derive(Default)]
pub struct Trunks {
    trunks: Vec<Trunk>,
}

/// Longest number dialled, in characters (E.164 is 15 digits and `+`).
const MAX_NUMBER_LEN: usize = 32;

/// Whether `number` is digits with an optional leading `+` (and `*`/`#`).
pub fn is_dialable(number: &str) -> bool {
    !number.is_empty()
        && number.len() <= MAX_NUMBER_LEN
        && number
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || b == b'*' || b == b'#' || (i == 0 && b == b'+'))
}

impl Trunks {
    /// Checks and resolves the config's trunks (host names once, now).
    pub fn from_config(configs: &[TrunkConfig]) -> Result<Trunks, String> {
        let mut trunks: Vec<Trunk> = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let at = format!("trunks[{i}] `{}`", c.name);
            if trunks.iter().any(|t| t.config.name == c.name) {
                return Err(format!("{at}: two trunks have this name; rename one"));
            }
            let address = c
                .address
                .to_socket_addrs()
                .map_err(|e| {
                    format!(
                        "{at}: address `{}`: {e}; write host:port, e.g. 192.0.2.10:5060",
                        c.address
                    )
                })?
                .next()
                .ok_or_else(|| format!("{at}: address `{}` resolves to nothing", c.address))?;
            trunks.push(Trunk {
                config: c.clone(),
                address,
                in_use: 0,
            });
        }
        Ok(Trunks { trunks })
    }

    pub fn is_empty(&self) -> bool {
        self.trunks.is_empty()
    }

    /// The trunk a SIP URI's host names: a trunk of that name, or the one
    /// whose configured address has that host.
    pub fn trunk_for_host(&self, host: &str) -> Option<String> {
        self.trunks
            .iter()
            .find(|t| t.config.name == host)
            .or_else(|| {
                self.trunks.iter().find(|t| {
                    t.config
                        .address
                        .rsplit_once(':')
                        .is_some_and(|(h, _)| h.eq_ignore_ascii_case(host))
                })
            })
            .map(|t| t.config.name.clone())
    }

    /// Source addresses whose INVITEs are trusted (the gateways').
    pub fn trusted_sources(&self) -> Vec<IpAddr> {
        self.trunks
            .iter()
            .filter(|t| t.config.trusted)
            .map(|t| t.address.ip())
            .collect()
    }

    /// Whether some trunk's patterns allow dialling `number` (channels
    /// aside): a callback is booked only for a number we may call.
    pub fn allows(&self, number: &str) -> Result<(), Refusal> {
        if !is_dialable(number) {
            return Err(Refusal::BadNumber);
        }
        let allowed = self
            .trunks
            .iter()
            .any(|t| t.config.patterns.iter().any(|p| p.matches(number)));
        if allowed {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        }
    }

    /// Takes a channel to dial `number`: on the trunk named `only`, or on
    /// the first configured trunk whose patterns allow it and that has a
    /// free channel. `caller` is the caller's own number, for `pass`.
    pub fn route(
        &mut self,
        number: &str,
        only: Option<&str>,
        caller: &str,
    ) -> Result<Route, Refusal> {
        if !is_dialable(number) {
            return Err(Refusal::BadNumber);
        }
        if let Some(name) = only {
            if !self.trunks.iter().any(|t| t.config.name == name) {
                return Err(Refusal::UnknownTrunk);
            }
        }
        let mut allowed = false;
        for (index, t) in self.trunks.iter_mut().enumerate() {
            if only.is_some_and(|name| name != t.config.name) {
                continue;
            }
            if !t.config.patterns.iter().any(|p| p.matches(number)) {
                continue;
            }
            allowed = true;
            if t.in_use >= t.config.channels {
                continue;
            }
            t.in_use += 1;
            let caller_id = match &t.config.caller_id {
                CallerIdRule::Pass => caller.to_string(),
                CallerIdRule::Fixed(n) => n.clone(),
            };
            return Ok(Route {
                trunk: index,
                trunk_name: t.config.name.clone(),
                destination: t.address,
                transport: t.config.transport,
                request_uri: format!("sip:{number}@{}", t.address),
                caller_id,
                credentials: t
                    .config
                    .username
                    .clone()
                    .zip(t.config.password.as_ref().map(|s| s.0.clone())),
            });
        }
        Err(if allowed {
            Refusal::NoChannel
        } else {
            Refusal::NotAllowed
        })
    }

    /// Gives back a channel `route` took.
    pub fn release(&mut self, trunk: usize) {
        if let Some(t) = self.trunks.get_mut(trunk) {
            t.in_use = t.in_use.saturating_sub(1);
        }
    }

    /// (name, channels in use, channel limit) of every trunk.
    pub fn channels(&self) -> Vec<(String, u32, u32)> {
        self.trunks
            .iter()
            .map(|t| (t.config.name.clone(), t.in_use, t.config.channels))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(name: &str, patterns: &[&str], channels: u32) -> TrunkConfig {
        TrunkConfig {
            name: name.into(),
            address: "127.0.0.1:5070".into(),
            transport: TrunkTransport::Udp,
            username: Some("hotline".into()),
            password: Some(Secret("s3cret".into())),
            patterns: patterns
                .iter()
                .map(|p| DialPattern::parse(p).expect("pattern"))
                .collect(),
            channels,
            caller_id: CallerIdRule::Pass,
            trusted: true,
        }
    }

    #[test]
    fn only_allowed_numbers_are_dialled_and_channels_are_bounded() {
        let mut trunks = Trunks::from_config(&[
            trunk("emergency", &["112", "113"], 1),
            trunk("pstn", &["+47XXXXXXXX", "113"], 2),
        ])
        .expect("valid");
        let r = trunks.route("113", None, "+4790000000").expect("allowed");
        assert_eq!(r.trunk_name, "emergency");
        assert_eq!(r.request_uri, "sip:113@127.0.0.1:5070");
        assert_eq!(r.caller_id, "+4790000000");
        assert_eq!(r.credentials, Some(("hotline".into(), "s3cret".into())));
        // The first trunk is full: the next one that may dial it takes it.
        let second = trunks.route("113", None, "x").expect("overflow");
        assert_eq!(second.trunk_name, "pstn");
        assert_eq!(trunks.route("112", None, "x"), Err(Refusal::NoChannel));
        trunks.release(r.trunk);
        assert!(trunks.route("112", None, "x").is_ok());
        // Toll fraud: a premium or foreign number matches no pattern.
        assert_eq!(trunks.route("+88213", None, "x"), Err(Refusal::NotAllowed));
        assert_eq!(trunks.route("0900123", None, "x"), Err(Refusal::NotAllowed));
        assert_eq!(trunks.route("1@evil", None, "x"), Err(Refusal::BadNumber));
        assert_eq!(trunks.route("", None, "x"), Err(Refusal::BadNumber));
        assert_eq!(
            trunks.route("112", Some("nope"), "x"),
            Err(Refusal::UnknownTrunk)
        );
        // Only the named trunk is tried.
        assert_eq!(
            trunks.route("+4722000000", Some("emergency"), "x"),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            trunks.channels(),
            vec![("emergency".into(), 1, 1), ("pstn".into(), 1, 2)]
        );
    }

    #[test]
    fn a_fixed_caller_id_replaces_the_callers() {
        let mut t = trunk("pstn", &["+47XXXXXXXX"], 1);
        t.caller_id = CallerIdRule::Fixed("+4780012345".into());
        let mut trunks = Trunks::from_config(&[t]).expect("valid");
        let r = trunks
            .route("+4722000000", None, "+4790000000")
            .expect("allowed");
        assert_eq!(r.caller_id, "+4780012345");
    }

    fn fields(name: &str, patterns: &[&str], channels: u32) -> TrunkFields {
        let t = trunk(name, patterns, channels);
        TrunkFields {
            name: t.name,
            address: t.address,
            transport: t.transport,
            username: t.username,
            password: t.password,
            patterns: t.patterns,
            channels: t.channels,
            caller_id: t.caller_id,
            trusted: t.trusted,
        }
    }

    #[test]
    fn bad_trunks_name_the_fix() {
        let no_patterns = fields("a", &[], 1);
        let zero = fields("a", &["1"], 0);
        let mut half_creds = fields("a", &["1"], 1);
        half_creds.password = None;
        let mut bad_address = fields("a", &["1"], 1);
        bad_address.address = "nowhere".into();
        for (config, words) in [
            (no_patterns, "no `patterns`"),
            (zero, "channels: 0"),
            (half_creds, "both `username` and `password`"),
            (bad_address, "write host:port"),
            (fields("a b", &["1"], 1), "letters, digits"),
        ] {
            let e = TrunkConfig::try_from(config).expect_err("refused");
            assert!(e.contains(words), "{e}");
        }
        let twice = Trunks::from_config(&[trunk("a", &["1"], 1), trunk("a", &["2"], 1)]);
        assert!(twice.err().expect("refused").contains("rename one"));
        let mut unresolvable = trunk("a", &["1"], 1);
        unresolvable.address = "no-such-host.invalid:5060".into();
        assert!(Trunks::from_config(&[unresolvable]).is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let shown = format!("{:?}", trunk("a", &["1"], 1));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
