//! HTTP digest authentication for SIP (RFC 7616, RFC 2617 compatible). As the
//! registrar uses it: challenges, parsing `Authorization`, verifying a response
//! against a stored HA1 (never a password), and replay protection. As a client
//! (our INVITEs to a trunk): reading a `WWW-Authenticate`/`Proxy-Authenticate`
//! challenge and answering it ([`ClientChallenge`], [`answer_challenge`]).
//!
//! Nonces carry their own proof: `issued-ms . serial . HMAC-SHA-256(secret,
//! issued-ms . serial)`, so the server keeps no table of nonces it handed out;
//! it only remembers, per nonce actually used, the highest `nc` seen (a bounded
//! table). A nonce that is expired, forged (for instance issued before a restart,
//! under another secret) or reused with an old `nc` is answered `stale=true`
//! when the digest itself was right, so phones retry without asking the user.

use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Longest `Authorization` value accepted; real ones are a few hundred bytes.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;
/// Most parameters accepted in one `Authorization` value.
const MAX_PARAMS: usize = 32;

/// What is challenged with unless the config says otherwise: MD5 alone, the
/// one algorithm every deployed phone answers. Debian 12's baresip gives up
/// on a 401 that carries any other challenge, even after an MD5 one, and sipp
/// answers only the first challenge and knows only MD5.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::Md5];

/// The hash the digest uses. `-sess` variants are not offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token written in `algorithm=`.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// The name used in the config file's `digest_algorithms`: `md5` or
    /// `sha-256` (any case; `sha256` too).
    pub fn from_config_name(name: &str) -> Option<Algorithm> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("sha256") {
            return Some(Algorithm::Sha256);
        }
        Algorithm::from_token(name)
    }

    /// The name written in the config file.
    pub fn config_name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha256 => "sha-256",
        }
    }

    fn from_token(token: &str) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }

    /// Lower-case hex of the hash of `parts` joined by `:`.
    fn hash_hex(self, parts: &[&[u8]]) -> String {
        match self {
            Algorithm::Md5 => {
                let mut h = Md5::new();
                feed_joined(&mut h, parts);
                to_hex(&h.finalize())
            }
            Algorithm::Sha256 => {
                let mut h = Sha256::new();
                feed_joined(&mut h, parts);
                to_hex(&h.finalize())
            }
        }
    }
}

fn feed_joined<D: sha2::Digest>(h: &mut D, parts: &[&[u8]]) {
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(part);
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

/// HA1 = H(username ":" realm ":" password), lower-case hex. This is what
/// `agents.yaml` stores instead of the password.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// An agent's stored secrets: HA1 for MD5 and/or SHA-256. `Debug` never shows
/// them, so they cannot leak into logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Ha1Set {
    md5: Option<String>,
    sha256: Option<String>,
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Algorithm::from_config_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{name}` is not a digest algorithm: write md5 or sha-256"
            ))
        })
    }
}

impl Ha1Set {
    /// Whether this account can be checked with `algorithm`.
    pub fn supports(&self, algorithm: Algorithm) -> bool {
        self.get(algorithm).is_some()
    }
}

impl fmt::Debug for Ha1Set {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ha1Set")
            .field("md5", &self.md5.as_ref().map(|_| "<redacted>"))
            .field("sha256", &self.sha256.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why an HA1 value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{algorithm} HA1 must be {expected} hexadecimal digits")]
pub struct BadHa1 {
    pub algorithm: &'static str,
    pub expected: usize,
}

impl Ha1Set {
    /// Builds a set from hex strings, checking their length and digits.
    pub fn new(md5: Option<&str>, sha256: Option<&str>) -> Result<Ha1Set, BadHa1> {
        let check = |alg: Algorithm, v: &str| -> Result<String, BadHa1> {
            if v.len() == alg.hex_len() && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(v.to_ascii_lowercase())
            } else {
                Err(BadHa1 {
                    algorithm: alg.token(),
                    expected: alg.hex_len(),
                })
            }
        };
        Ok(Ha1Set {
            md5: md5.map(|v| check(Algorithm::Md5, v)).transpose()?,
            sha256: sha256.map(|v| check(Algorithm::Sha256, v)).transpose()?,
        })
    }

    /// The HA1 for `algorithm`, if the agent has one.
    fn get(&self, algorithm: Algorithm) -> Option<&str> {
        match algorithm {
            Algorithm::Md5 => self.md5.as_deref(),
            Algorithm::Sha256 => self.sha256.as_deref(),
        }
    }

    /// Whether any HA1 is set.
    pub fn is_empty(&self) -> bool {
        self.md5.is_none() && self.sha256.is_none()
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

/// HMAC-SHA-256 (RFC 2104), for nonce tags.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        let digest = Sha256::digest(key);
        block_key[..32].copy_from_slice(&digest);
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block_key.map(|b| b ^ 0x36));
    inner.update(message);
    let inner_digest = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block_key.map(|b| b ^ 0x5c));
    outer.update(inner_digest);
    outer.finalize().into()
}

/// One `WWW-Authenticate` (or `Proxy-Authenticate`) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: String,
    pub algorithm: Algorithm,
    pub stale: bool,
}

impl Challenge {
    /// The header value, e.g. `Digest realm="hotline", qop="auth", ...`.
    pub fn header_value(&self) -> String {
        let mut s = format!(
            "Digest realm=\"{}\", qop=\"auth\", algorithm={}, nonce=\"{}\", opaque=\"{}\"",
            quote_escape(&self.realm),
            self.algorithm.token(),
            quote_escape(&self.nonce),
            quote_escape(&self.opaque),
        );
        if self.stale {
            s.push_str(", stale=true");
        }
        s
    }
}

fn quote_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A parsed `Authorization: Digest ...` value. Unknown parameters are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    /// `None` means MD5 (the RFC 2617 default).
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub nc: Option<u32>,
    pub qop: Option<String>,
    pub opaque: Option<String>,
    pub userhash: bool,
}

/// Why an `Authorization` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Authorization value longer than {MAX_AUTHORIZATION_LEN} bytes")]
    TooLong,
    #[error("not a Digest credential")]
    NotDigest,
    #[error("malformed parameter list at byte {0}")]
    Malformed(usize),
    #[error("parameter `{0}` appears twice")]
    Duplicate(String),
    #[error("more than {MAX_PARAMS} parameters")]
    TooManyParams,
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    #[error("`nc` is not 1 to 8 hexadecimal digits")]
    BadNonceCount,
}

/// Parses an `Authorization`/`Proxy-Authorization` value. Never panics; quoted
/// strings may hold `\` escapes and commas; parameters come in any order.
pub fn parse_authorization(value: &str) -> Result<DigestResponse, ParseError> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(ParseError::TooLong);
    }
    let trimmed = value.trim_start_matches([' ', '\t']);
    let scheme_end = trimmed.find([' ', '\t']).ok_or(ParseError::NotDigest)?;
    let (scheme, rest) = trimmed.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(ParseError::NotDigest);
    }
    let offset = value.len() - rest.len();
    let params = parse_params(rest, offset)?;

    let mut out = DigestResponse::default();
    let mut seen: Vec<String> = Vec::new();
    let mut username = None;
    let mut realm = None;
    let mut nonce = None;
    let mut uri = None;
    let mut response = None;
    for (name, value) in params {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(ParseError::Duplicate(lower));
        }
        match lower.as_str() {
            "username" => username = Some(value),
            "realm" => realm = Some(value),
            "nonce" => nonce = Some(value),
            "uri" => uri = Some(value),
            "response" => response = Some(value),
            "algorithm" => out.algorithm = Some(value),
            "cnonce" => out.cnonce = Some(value),
            "qop" => out.qop = Some(value),
            "opaque" => out.opaque = Some(value),
            "userhash" => out.userhash = value.eq_ignore_ascii_case("true"),
            "nc" => {
                let ok = !value.is_empty()
                    && value.len() <= 8
                    && value.bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    return Err(ParseError::BadNonceCount);
                }
                out.nc =
                    Some(u32::from_str_radix(&value, 16).map_err(|_| ParseError::BadNonceCount)?);
            }
            _ => {}
        }
        seen.push(lower);
    }
    out.username = username.ok_or(ParseError::Missing("username"))?;
    out.realm = realm.ok_or(ParseError::Missing("realm"))?;
    out.nonce = nonce.ok_or(ParseError::Missing("nonce"))?;
    out.uri = uri.ok_or(ParseError::Missing("uri"))?;
    out.response = response.ok_or(ParseError::Missing("response"))?;
    Ok(out)
}

/// `name = token | quoted-string`, separated by commas, with optional spaces.
fn parse_params(s: &str, offset: usize) -> Result<Vec<(String, String)>, ParseError> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && matches!(bytes.get(*i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        // Tolerate empty list elements (`a=1,,b=2`) as RFC 7230 #rule allows.
        while bytes.get(i) == Some(&b',') {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= bytes.len() {
            break;
        }
        let name_start = i;
        while i < bytes.len() && is_token_byte(bytes.get(i).copied().unwrap_or(0)) {
            i += 1;
        }
        if i == name_start {
            return Err(ParseError::Malformed(offset + i));
        }
        let name = s.get(name_start..i).unwrap_or_default().to_string();
        skip_ws(&mut i);
        if bytes.get(i) != Some(&b'=') {
            return Err(ParseError::Malformed(offset + i));
        }
        i += 1;
        skip_ws(&mut i);
        let value = if bytes.get(i) == Some(&b'"') {
            i += 1;
            let mut v = Vec::new();
            loop {
                match bytes.get(i) {
                    None => return Err(ParseError::Malformed(offset + i)),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let escaped = bytes.get(i + 1).ok_or(ParseError::Malformed(offset + i))?;
                        v.push(*escaped);
                        i += 2;
                    }
                    Some(b) => {
                        v.push(*b);
                        i += 1;
                    }
                }
            }
            String::from_utf8(v).map_err(|_| ParseError::Malformed(offset + i))?
        } else {
            let start = i;
            while i < bytes.len() && is_token_byte(bytes.get(i).copied().unwrap_or(0)) {
                i += 1;
            }
            if i == start {
                return Err(ParseError::Malformed(offset + i));
            }
            s.get(start..i).unwrap_or_default().to_string()
        };
        if out.len() == MAX_PARAMS {
            return Err(ParseError::TooManyParams);
        }
        out.push((name, value));
        skip_ws(&mut i);
        match bytes.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(ParseError::Malformed(offset + i)),
        }
    }
    Ok(out)
}

/// RFC 7230 tchar, plus `/`, `:`, `@` and `.` which real clients leave unquoted
/// in `uri`-like values.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:@".contains(&b)
}

/// A challenge a server sent us (`WWW-Authenticate` in a 401,
/// `Proxy-Authenticate` in a 407), as far as answering it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth` (else the RFC 2069 form is answered).
    pub qop_auth: bool,
    pub stale: bool,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("algorithm `{0}` is not supported (MD5 and SHA-256 are)")]
    Algorithm(String),
    #[error("only `qop=auth-int` offered; `auth` is needed")]
    Qop,
}

/// Reads one challenge value. Never panics.
pub fn parse_challenge(value: &str) -> Result<ClientChallenge, ChallengeError> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(ParseError::TooLong.into());
    }
    let trimmed = value.trim_start_matches([' ', '\t']);
    let scheme_end = trimmed.find([' ', '\t']).ok_or(ParseError::NotDigest)?;
    let (scheme, rest) = trimmed.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(ParseError::NotDigest.into());
    }
    let offset = value.len() - rest.len();
    let mut realm = None;
    let mut nonce = None;
    let mut opaque = None;
    let mut algorithm = Algorithm::Md5;
    let mut qop = None;
    let mut stale = false;
    for (name, value) in parse_params(rest, offset)? {
        match name.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "nonce" => nonce = Some(value),
            "opaque" => opaque = Some(value),
            "stale" => stale = value.eq_ignore_ascii_case("true"),
            "qop" => qop = Some(value),
            "algorithm" => {
                algorithm = Algorithm::from_token(&value).ok_or(ChallengeError::Algorithm(value))?
            }
            _ => {}
        }
    }
    let qop_auth = match qop {
        None => false,
        Some(list) => {
            if !list
                .split(',')
                .any(|q| q.trim().eq_ignore_ascii_case("auth"))
            {
                return Err(ChallengeError::Qop);
            }
            true
        }
    };
    Ok(ClientChallenge {
        realm: realm.ok_or(ParseError::Missing("realm"))?,
        nonce: nonce.ok_or(ParseError::Missing("nonce"))?,
        opaque,
        algorithm,
        qop_auth,
        stale,
    })
}

/// The `Authorization` (or `Proxy-Authorization`) value answering
/// `challenge` for `method` on `uri`. `cnonce` and `nc` matter only with
/// `qop=auth`; the caller makes `cnonce` random.
pub fn answer_challenge(
    challenge: &ClientChallenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let a = challenge.algorithm;
    let ha1 = ha1(a, username, &challenge.realm, password);
    let ha2 = a.hash_hex(&[method.as_bytes(), uri.as_bytes()]);
    let nc_text = format!("{nc:08x}");
    let response = if challenge.qop_auth {
        a.hash_hex(&[
            ha1.as_bytes(),
            challenge.nonce.as_bytes(),
            nc_text.as_bytes(),
            cnonce.as_bytes(),
            b"auth",
            ha2.as_bytes(),
        ])
    } else {
        a.hash_hex(&[ha1.as_bytes(), challenge.nonce.as_bytes(), ha2.as_bytes()])
    };
    let mut s = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
        quote_escape(username),
        quote_escape(&challenge.realm),
        quote_escape(&challenge.nonce),
        quote_escape(uri),
        a.token(),
    );
    if challenge.qop_auth {
        s.push_str(&format!(
            ", qop=auth, nc={nc_text}, cnonce=\"{}\"",
            quote_escape(cnonce)
        ));
    }
    if let Some(opaque) = &challenge.opaque {
        s.push_str(&format!(", opaque=\"{}\"", quote_escape(opaque)));
    }
    s
}

/// Settings of the authenticator.
#[derive(Debug, Clone)]
pub struct DigestConfig {
    /// How long a nonce is accepted after it was issued.
    pub nonce_lifetime: Duration,
    /// Most nonces whose last `nc` is remembered.
    pub max_tracked_nonces: usize,
}

impl Default for DigestConfig {
    fn default() -> DigestConfig {
        DigestConfig {
            nonce_lifetime: Duration::from_secs(300),
            max_tracked_nonces: 4096,
        }
    }
}

/// Why a response with a correct digest still needs a fresh nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    Expired,
    /// Not issued by this server (or under a secret since replaced).
    Unknown,
    /// `nc` not above the last one seen for this nonce.
    Replayed,
}

/// Why a response was refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    WrongRealm,
    UnsupportedAlgorithm,
    UnsupportedQop,
    /// `qop=auth` without `nc` or `cnonce`.
    MissingNonceCount,
    UserhashUnsupported,
    /// No HA1 stored for the algorithm the client used.
    NoCredential,
    UriMismatch,
    OpaqueMismatch,
    WrongResponse,
}

impl RejectReason {
    /// Words for a log line.
    pub fn describe(self) -> &'static str {
        match self {
            RejectReason::WrongRealm => "another realm",
            RejectReason::UnsupportedAlgorithm => "an algorithm that is not challenged with",
            RejectReason::UnsupportedQop => "a qop other than auth",
            RejectReason::MissingNonceCount => "qop=auth without nc or cnonce",
            RejectReason::UserhashUnsupported => "userhash, which is not offered",
            RejectReason::NoCredential => "an algorithm the agent has no HA1 for",
            RejectReason::UriMismatch => "a digest uri other than the request's",
            RejectReason::OpaqueMismatch => "an opaque that is not ours",
            RejectReason::WrongResponse => "a wrong response",
        }
    }
}

/// The outcome of checking one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// The password was right, the nonce was not: challenge with `stale=true`.
    Stale(StaleReason),
    Rejected(RejectReason),
}

/// Issues and checks digest challenges for one realm.
pub struct DigestAuth {
    realm: String,
    secret: [u8; 32],
    opaque: String,
    base: Instant,
    serial: u64,
    config: DigestConfig,
    /// nonce → (issued ms, highest nc seen).
    used: HashMap<String, (u64, u32)>,
    /// Algorithms challenged with, most preferred first.
    algorithms: Vec<Algorithm>,
    /// Nonces issued at or before this and not in `used` were forgotten: treat
    /// them as stale rather than accept an `nc` we can no longer check.
    forgotten_up_to_ms: Option<u64>,
}

impl fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestAuth")
            .field("realm", &self.realm)
            .field("tracked_nonces", &self.used.len())
            .finish_non_exhaustive()
    }
}

impl DigestAuth {
    /// `secret` keys the nonce tags; give it 32 random bytes (see
    /// [`DigestAuth::with_random_secret`]).
    pub fn new(realm: &str, secret: [u8; 32], now: Instant, config: DigestConfig) -> DigestAuth {
        let opaque = to_hex(&hmac_sha256(&secret, b"opaque")[..16]);
        DigestAuth {
            realm: realm.to_string(),
            secret,
            opaque,
            base: now,
            serial: 0,
            config,
            used: HashMap::new(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            forgotten_up_to_ms: None,
        }
    }

    /// As [`DigestAuth::new`] with a fresh random secret: nonces from an
    /// earlier run are then answered `stale=true`.
    pub fn with_random_secret(realm: &str, now: Instant, config: DigestConfig) -> DigestAuth {
        let secret: [u8; 32] = rand::random();
        DigestAuth::new(realm, secret, now, config)
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn ms_since_base(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.base).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    fn nonce_tag(&self, issued_ms: u64, serial: u64) -> String {
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&issued_ms.to_be_bytes());
        msg[8..].copy_from_slice(&serial.to_be_bytes());
        to_hex(&hmac_sha256(&self.secret, &msg)[..16])
    }

    /// A fresh nonce: `issued-ms` and `serial` in hex, then the tag.
    pub fn new_nonce(&mut self, now: Instant) -> String {
        let issued = self.ms_since_base(now);
        self.serial = self.serial.wrapping_add(1);
        format!(
            "{issued:016x}{:016x}{}",
            self.serial,
            self.nonce_tag(issued, self.serial)
        )
    }

    /// The issue time of a nonce of ours, or `None` if it is not one.
    fn check_nonce(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let issued = u64::from_str_radix(nonce.get(..16)?, 16).ok()?;
        let serial = u64::from_str_radix(nonce.get(16..32)?, 16).ok()?;
        let tag = nonce.get(32..)?.to_ascii_lowercase();
        let expected = self.nonce_tag(issued, serial);
        constant_time_eq(tag.as_bytes(), expected.as_bytes()).then_some(issued)
    }

    /// Chooses the algorithms challenged with, most preferred first (one
    /// `WWW-Authenticate` each, in this order; RFC 7616 §3.7). An empty list
    /// keeps the current one.
    pub fn set_algorithms(&mut self, algorithms: &[Algorithm]) {
        if !algorithms.is_empty() {
            self.algorithms = algorithms.to_vec();
        }
    }

    /// The algorithms challenged with, most preferred first.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    pub fn challenges(&mut self, now: Instant, stale: bool) -> Vec<Challenge> {
        self.algorithms
            .clone()
            .into_iter()
            .map(|algorithm| Challenge {
                realm: self.realm.clone(),
                nonce: self.new_nonce(now),
                opaque: self.opaque.clone(),
                algorithm,
                stale,
            })
            .collect()
    }

    /// Checks a response to one of our challenges. `request_uri`, when given,
    /// must equal the `uri` parameter (so a response cannot be moved to another
    /// target).
    pub fn verify(
        &mut self,
        now: Instant,
        response: &DigestResponse,
        method: &str,
        request_uri: Option<&str>,
        credentials: &Ha1Set,
    ) -> Verdict {
        let verdict = self.check_digest(response, method, request_uri, credentials);
        if verdict != Verdict::Accepted {
            return verdict;
        }
        self.check_freshness(now, response)
    }

    fn check_digest(
        &self,
        r: &DigestResponse,
        method: &str,
        request_uri: Option<&str>,
        credentials: &Ha1Set,
    ) -> Verdict {
        use RejectReason::*;
        if r.realm != self.realm {
            return Verdict::Rejected(WrongRealm);
        }
        if r.userhash {
            return Verdict::Rejected(UserhashUnsupported);
        }
        let algorithm = match r.algorithm.as_deref() {
            None => Algorithm::Md5,
            Some(token) => match Algorithm::from_token(token) {
                Some(a) => a,
                None => return Verdict::Rejected(UnsupportedAlgorithm),
            },
        };
        // Only what is challenged with: an operator who lists SHA-256 alone
        // gets no MD5 logins.
        if !self.algorithms.contains(&algorithm) {
            return Verdict::Rejected(UnsupportedAlgorithm);
        }
        if let Some(uri) = request_uri {
            if uri != r.uri {
                return Verdict::Rejected(UriMismatch);
            }
        }
        if let Some(opaque) = &r.opaque {
            if !constant_time_eq(opaque.as_bytes(), self.opaque.as_bytes()) {
                return Verdict::Rejected(OpaqueMismatch);
            }
        }
        let Some(ha1) = credentials.get(algorithm) else {
            return Verdict::Rejected(NoCredential);
        };
        let ha2 = algorithm.hash_hex(&[method.as_bytes(), r.uri.as_bytes()]);
        let expected = match r.qop.as_deref() {
            None => algorithm.hash_hex(&[ha1.as_bytes(), r.nonce.as_bytes(), ha2.as_bytes()]),
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let (Some(nc), Some(cnonce)) = (r.nc, r.cnonce.as_deref()) else {
                    return Verdict::Rejected(MissingNonceCount);
                };
                let nc = format!("{nc:08x}");
                algorithm.hash_hex(&[
                    ha1.as_bytes(),
                    r.nonce.as_bytes(),
                    nc.as_bytes(),
                    cnonce.as_bytes(),
                    b"auth",
                    ha2.as_bytes(),
                ])
            }
            Some(_) => return Verdict::Rejected(UnsupportedQop),
        };
        let given = r.response.to_ascii_lowercase();
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Verdict::Accepted
        } else {
            Verdict::Rejected(WrongResponse)
        }
    }

    fn check_freshness(&mut self, now: Instant, r: &DigestResponse) -> Verdict {
        let Some(issued) = self.check_nonce(&r.nonce) else {
            return Verdict::Stale(StaleReason::Unknown);
        };
        let now_ms = self.ms_since_base(now);
        let lifetime = u64::try_from(self.config.nonce_lifetime.as_millis()).unwrap_or(u64::MAX);
        if issued > now_ms || now_ms - issued > lifetime {
            return Verdict::Stale(StaleReason::Expired);
        }
        // Without qop a nonce has no counter: it may be used once.
        let nc = r.nc.unwrap_or(1);
        let key = r.nonce.to_ascii_lowercase();
        match self.used.get_mut(&key) {
            Some((_, last)) => {
                if nc <= *last {
                    return Verdict::Stale(StaleReason::Replayed);
                }
                *last = nc;
            }
            None => {
                if self.forgotten_up_to_ms.is_some_and(|f| issued <= f) {
                    return Verdict::Stale(StaleReason::Replayed);
                }
                self.make_room(now_ms, lifetime);
                self.used.insert(key, (issued, nc));
            }
        }
        Verdict::Accepted
    }

    /// Keeps the nonce table under its bound: drop expired nonces, then the
    /// oldest, remembering how far back we forgot.
    fn make_room(&mut self, now_ms: u64, lifetime: u64) {
        let cap = self.config.max_tracked_nonces.max(1);
        if self.used.len() < cap {
            return;
        }
        self.used
            .retain(|_, (issued, _)| now_ms.saturating_sub(*issued) <= lifetime);
        while self.used.len() >= cap {
            let Some((oldest_key, oldest_issued)) = self
                .used
                .iter()
                .min_by_key(|(_, (issued, _))| *issued)
                .map(|(k, (issued, _))| (k.clone(), *issued))
            else {
                break;
            };
            self.used.remove(&oldest_key);
            self.forgotten_up_to_ms = Some(
                self.forgotten_up_to_ms
                    .map_or(oldest_issued, |f| f.max(oldest_issued)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc7616_response(algorithm: &str, response: &str) -> String {
        format!(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
             uri=\"/dir/index.html\", algorithm={algorithm}, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
             response=\"{response}\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        )
    }

    /// Digest check alone (the RFC nonces are not ours, so freshness is not
    /// asked).
    fn digest_ok(header: &str, method: &str, creds: &Ha1Set, realm: &str) -> Verdict {
        let now = Instant::now();
        let mut auth = DigestAuth::new(realm, [7; 32], now, DigestConfig::default());
        auth.set_algorithms(&[Algorithm::Sha256, Algorithm::Md5]);
        let mut r = parse_authorization(header).expect("parses");
        r.opaque = None; // the RFC's opaque is not ours
        auth.check_digest(&r, method, Some("/dir/index.html"), creds)
    }

    #[test]
    fn rfc7616_sha256_example() {
        let realm = "http-auth@example.org";
        let h = ha1(Algorithm::Sha256, "Mufasa", realm, "Circle of Life");
        let creds = Ha1Set::new(None, Some(&h)).expect("valid");
        let header = rfc7616_response(
            "SHA-256",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        );
        assert_eq!(digest_ok(&header, "GET", &creds, realm), Verdict::Accepted);
    }

    #[test]
    fn rfc7616_md5_example() {
        let realm = "http-auth@example.org";
        let h = ha1(Algorithm::Md5, "Mufasa", realm, "Circle of Life");
        let creds = Ha1Set::new(Some(&h), None).expect("valid");
        let header = rfc7616_response("MD5", "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(digest_ok(&header, "GET", &creds, realm), Verdict::Accepted);
        // A wrong password fails.
        let other = ha1(Algorithm::Md5, "Mufasa", realm, "circle of life");
        let creds = Ha1Set::new(Some(&other), None).expect("valid");
        assert_eq!(
            digest_ok(&header, "GET", &creds, realm),
            Verdict::Rejected(RejectReason::WrongResponse)
        );
    }

    #[test]
    fn client_answers_the_rfc2617_example() {
        let challenge = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .expect("parses");
        assert_eq!(challenge.algorithm, Algorithm::Md5);
        assert!(challenge.qop_auth);
        let value = answer_challenge(
            &challenge,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        );
        assert!(
            value.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{value}"
        );
        assert!(value.contains("nc=00000001"), "{value}");
        assert!(value.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        // What we answer, our own server accepts.
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let creds = Ha1Set::new(Some(&h), None).expect("valid");
        assert_eq!(
            digest_ok(&value, "GET", &creds, "testrealm@host.com"),
            Verdict::Accepted
        );
    }

    #[test]
    fn client_answers_the_rfc7616_sha256_example() {
        let challenge = parse_challenge(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
             algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .expect("parses");
        assert_eq!(challenge.algorithm, Algorithm::Sha256);
        let value = answer_challenge(
            &challenge,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        );
        assert!(
            value.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{value}"
        );
    }

    #[test]
    fn client_refuses_challenges_it_cannot_answer() {
        assert!(matches!(
            parse_challenge("Basic realm=\"x\""),
            Err(ChallengeError::Parse(ParseError::NotDigest))
        ));
        assert!(matches!(
            parse_challenge("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512-256"),
            Err(ChallengeError::Algorithm(_))
        ));
        assert!(matches!(
            parse_challenge("Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\""),
            Err(ChallengeError::Qop)
        ));
        assert!(matches!(
            parse_challenge("Digest realm=\"x\""),
            Err(ChallengeError::Parse(ParseError::Missing("nonce")))
        ));
        // Without qop: the RFC 2069 form, no nc or cnonce.
        let c = parse_challenge("Digest realm=\"r\", nonce=\"n\", stale=TRUE").expect("parses");
        assert!(c.stale && !c.qop_auth);
        let v = answer_challenge(&c, "u", "p", "INVITE", "sip:1@h", "c", 1);
        assert!(!v.contains("nc=") && !v.contains("cnonce"), "{v}");
    }

    #[test]
    fn rfc2617_example() {
        let realm = "testrealm@host.com";
        let h = ha1(Algorithm::Md5, "Mufasa", realm, "Circle Of Life");
        let creds = Ha1Set::new(Some(&h), None).expect("valid");
        let header = "Digest username=\"Mufasa\",\n realm=\"testrealm@host.com\",\n \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\n uri=\"/dir/index.html\",\n \
             qop=auth,\n nc=00000001,\n cnonce=\"0a4f113b\",\n \
             response=\"6629fae49393a05397450978507c4ef1\",\n \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        assert_eq!(digest_ok(header, "GET", &creds, realm), Verdict::Accepted);
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            to_hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn parser_handles_escapes_order_and_garbage() {
        let r = parse_authorization(
            "digest response=\"ab\",uri=\"sip:a\\\"b,c\" ,username=u, realm=\"r\",nonce=n,,",
        )
        .expect("parses");
        assert_eq!(r.uri, "sip:a\"b,c");
        assert_eq!(r.username, "u");
        assert_eq!(r.nonce, "n");
        assert!(matches!(
            parse_authorization("Basic dXNlcjpwYXNz"),
            Err(ParseError::NotDigest)
        ));
        assert!(matches!(
            parse_authorization("Digest username=\"a\", username=\"b\""),
            Err(ParseError::Duplicate(_))
        ));
        assert!(parse_authorization("Digest username=\"unterminated").is_err());
        assert!(parse_authorization("Digest nc=zz").is_err());
        assert!(parse_authorization(&"x".repeat(5000)).is_err());
        assert!(parse_authorization("Digest username=\"a\\").is_err());
        assert!(parse_authorization("Digest =x").is_err());
    }

    struct Client {
        username: &'static str,
        password: &'static str,
    }

    impl Client {
        fn answer(&self, c: &Challenge, nc: u32, uri: &str) -> DigestResponse {
            let ha1 = ha1(c.algorithm, self.username, &c.realm, self.password);
            let ha2 = c.algorithm.hash_hex(&[b"REGISTER", uri.as_bytes()]);
            let ncs = format!("{nc:08x}");
            let response = c.algorithm.hash_hex(&[
                ha1.as_bytes(),
                c.nonce.as_bytes(),
                ncs.as_bytes(),
                b"abc",
                b"auth",
                ha2.as_bytes(),
            ]);
            DigestResponse {
                username: self.username.into(),
                realm: c.realm.clone(),
                nonce: c.nonce.clone(),
                uri: uri.into(),
                response,
                algorithm: Some(c.algorithm.token().into()),
                cnonce: Some("abc".into()),
                nc: Some(nc),
                qop: Some("auth".into()),
                opaque: Some(c.opaque.clone()),
                userhash: false,
            }
        }
    }

    fn creds(realm: &str) -> Ha1Set {
        Ha1Set::new(
            Some(&ha1(Algorithm::Md5, "anna", realm, "pw")),
            Some(&ha1(Algorithm::Sha256, "anna", realm, "pw")),
        )
        .expect("valid")
    }

    #[test]
    fn round_trip_replay_and_expiry() {
        let t0 = Instant::now();
        let mut auth = DigestAuth::new("hotline", [1; 32], t0, DigestConfig::default());
        let creds = creds("hotline");
        let client = Client {
            username: "anna",
            password: "pw",
        };
        // By default only MD5 is challenged; the config may ask for both.
        let md5_only = auth.challenges(t0, false);
        assert_eq!(md5_only.len(), 1);
        assert!(md5_only[0].header_value().contains("algorithm=MD5"));
        auth.set_algorithms(&[Algorithm::Sha256, Algorithm::Md5]);
        let challenges = auth.challenges(t0, false);
        assert_eq!(challenges.len(), 2);
        assert!(challenges[0].header_value().contains("algorithm=SHA-256"));
        assert!(challenges[1].header_value().contains("algorithm=MD5"));
        for c in &challenges {
            let r = client.answer(c, 1, "sip:hotline");
            assert_eq!(
                auth.verify(t0, &r, "REGISTER", Some("sip:hotline"), &creds),
                Verdict::Accepted
            );
            // Same nc again: a replay.
            assert_eq!(
                auth.verify(t0, &r, "REGISTER", Some("sip:hotline"), &creds),
                Verdict::Stale(StaleReason::Replayed)
            );
            let r2 = client.answer(c, 2, "sip:hotline");
            assert_eq!(
                auth.verify(t0, &r2, "REGISTER", None, &creds),
                Verdict::Accepted
            );
            // After the lifetime the nonce is stale, though the digest is right.
            let r3 = client.answer(c, 3, "sip:hotline");
            let later = t0 + Duration::from_secs(301);
            assert_eq!(
                auth.verify(later, &r3, "REGISTER", None, &creds),
                Verdict::Stale(StaleReason::Expired)
            );
        }
        // Wrong password: rejected, not stale.
        let bad = Client {
            username: "anna",
            password: "nope",
        };
        let r = bad.answer(&challenges[0], 9, "sip:hotline");
        assert_eq!(
            auth.verify(t0, &r, "REGISTER", None, &creds),
            Verdict::Rejected(RejectReason::WrongResponse)
        );
        // A nonce from another secret (an earlier run) is stale.
        let mut other = DigestAuth::new("hotline", [2; 32], t0, DigestConfig::default());
        let foreign = other.challenges(t0, false);
        let mut r = client.answer(&foreign[0], 1, "sip:hotline");
        r.opaque = None;
        assert_eq!(
            auth.verify(t0, &r, "REGISTER", None, &creds),
            Verdict::Stale(StaleReason::Unknown)
        );
    }

    #[test]
    fn nonce_table_is_bounded_and_forgetting_is_safe() {
        let t0 = Instant::now();
        let config = DigestConfig {
            max_tracked_nonces: 4,
            ..DigestConfig::default()
        };
        let mut auth = DigestAuth::new("hotline", [1; 32], t0, config);
        let creds = creds("hotline");
        let client = Client {
            username: "anna",
            password: "pw",
        };
        let mut first = None;
        for i in 0..10u64 {
            let now = t0 + Duration::from_millis(i);
            let c = auth.challenges(now, false).remove(0);
            let r = client.answer(&c, 1, "sip:h");
            assert_eq!(
                auth.verify(now, &r, "REGISTER", None, &creds),
                Verdict::Accepted
            );
            first.get_or_insert(c);
            assert!(auth.used.len() <= 4);
        }
        // The first nonce was forgotten: reusing it is not accepted.
        let c = first.expect("set");
        let r = client.answer(&c, 1, "sip:h");
        assert_eq!(
            auth.verify(t0 + Duration::from_millis(20), &r, "REGISTER", None, &creds),
            Verdict::Stale(StaleReason::Replayed)
        );
    }

    #[test]
    fn an_algorithm_not_challenged_with_is_refused() {
        let t0 = Instant::now();
        let mut auth = DigestAuth::new("hotline", [1; 32], t0, DigestConfig::default());
        let client = Client {
            username: "anna",
            password: "pw",
        };
        auth.set_algorithms(&[Algorithm::Sha256]);
        let mut challenge = auth.challenges(t0, false).remove(0);
        // The phone takes our nonce but hashes with MD5.
        challenge.algorithm = Algorithm::Md5;
        let r = client.answer(&challenge, 1, "sip:hotline");
        assert_eq!(
            auth.verify(t0, &r, "REGISTER", None, &creds("hotline")),
            Verdict::Rejected(RejectReason::UnsupportedAlgorithm)
        );
        // Answered as asked, it passes.
        challenge.algorithm = Algorithm::Sha256;
        let r = client.answer(&challenge, 2, "sip:hotline");
        assert_eq!(
            auth.verify(t0, &r, "REGISTER", None, &creds("hotline")),
            Verdict::Accepted
        );
    }

    #[test]
    fn config_names_of_algorithms() {
        for (name, algorithm) in [
            ("md5", Algorithm::Md5),
            ("MD5", Algorithm::Md5),
            ("sha-256", Algorithm::Sha256),
            ("SHA-256", Algorithm::Sha256),
            ("sha256", Algorithm::Sha256),
        ] {
            assert_eq!(Algorithm::from_config_name(name), Some(algorithm), "{name}");
        }
        assert_eq!(Algorithm::from_config_name("sha1"), None);
        assert_eq!(Algorithm::from_config_name("md5-sess"), None);
        assert_eq!(Algorithm::Sha256.config_name(), "sha-256");
        // An empty list keeps what was there.
        let mut auth = DigestAuth::new("h", [1; 32], Instant::now(), DigestConfig::default());
        auth.set_algorithms(&[]);
        assert_eq!(auth.algorithms(), DEFAULT_ALGORITHMS);
    }

    #[test]
    fn ha1_set_debug_hides_secrets() {
        let set = creds("hotline");
        let shown = format!("{set:?}");
        assert!(!shown.contains(&ha1(Algorithm::Md5, "anna", "hotline", "pw")));
        assert!(Ha1Set::new(Some("xyz"), None).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(input in "(Digest )?([a-z]{1,8}=(\"([^\"\\\\]|\\\\.){0,12}\"|[a-z0-9]{0,8})[ ,]{0,3}){0,12}[\\\\\"=, ]{0,3}") {
            let _ = parse_authorization(&input);
        }

        #[test]
        fn parser_never_panics_on_bytes(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let text = String::from_utf8_lossy(&input);
            let _ = parse_authorization(&format!("Digest {text}"));
        }
    }
}
