//! The normalised SIP message the cores work on, plus small parsers for the
//! header values they need (Via, CSeq, name-addr, URI user part) and a writer
//! for what we send.
//!
//! `wire` turns bytes into a [`Message`]; `rsip` is consulted for the typed
//! views it handles well (see [`Message::to_rsip`], [`display_name`]). Decisions
//! never depend on rsip's URI parser, which mis-reads escaped, IPv6 and `tel:`
//! URIs.

use std::fmt::Write as _;

/// SIP methods. Unknown tokens are kept so that a 501 can name them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Info,
    Register,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(String),
}

impl Method {
    /// Methods are case-sensitive (RFC 3261 7.1): `invite` is an unknown method.
    pub fn parse(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "REGISTER" => Method::Register,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Register => "REGISTER",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// A method defined by some SIP RFC (so 405 rather than 501).
    pub fn is_known(&self) -> bool {
        !matches!(self, Method::Other(_))
    }
}

/// First line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: String },
    Response { code: u16, reason: String },
}

/// One header line after normalisation (unfolded, compact name expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A framed, normalised message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

impl Message {
    /// First value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The top-most Via entry (first entry of the first Via header).
    pub fn top_via(&self) -> Option<Via> {
        let first = self.header("Via")?;
        let top = split_list(first).into_iter().next()?;
        Via::parse(top)
    }

    pub fn cseq(&self) -> Option<CSeq> {
        CSeq::parse(self.header("CSeq")?)
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID").filter(|v| !v.is_empty())
    }

    pub fn from_tag(&self) -> Option<String> {
        NameAddr::parse(self.header("From")?)?
            .tag()
            .map(str::to_string)
    }

    pub fn to_tag(&self) -> Option<String> {
        NameAddr::parse(self.header("To")?)?
            .tag()
            .map(str::to_string)
    }

    /// Media type of the body (`type/subtype`, lower-cased, parameters dropped).
    pub fn content_type(&self) -> Option<String> {
        let v = self.header("Content-Type")?;
        let media = v.split(';').next().unwrap_or("").trim();
        (!media.is_empty()).then(|| media.to_ascii_lowercase())
    }

    /// The body when it is a non-empty `application/sdp` in UTF-8: an SDP
    /// offer or answer.
    pub fn sdp_body(&self) -> Option<String> {
        if self.content_type().as_deref() != Some("application/sdp") || self.body.is_empty() {
            return None;
        }
        String::from_utf8(self.body.clone()).ok()
    }

    /// The message as canonical text (what rsip is given).
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512);
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{} {} SIP/2.0\r\n", method.as_str(), uri);
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for h in &self.headers {
            if h.name.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(out, "{}: {}\r\n", h.name, h.value);
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// rsip's view of the message, when rsip accepts it (it refuses unknown
    /// methods and some valid URIs, so callers must not depend on it).
    pub fn to_rsip(&self) -> Option<rsip::SipMessage> {
        rsip::SipMessage::try_from(self.to_text()).ok()
    }
}

/// Splits a comma-separated header value, ignoring commas inside quotes and `<>`.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// `;name=value` parameters; quoted values keep their quotes.
pub type Params = Vec<(String, Option<String>)>;

fn parse_params(text: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        rest = rest.strip_prefix(';')?.trim_start();
        let end = param_end(rest);
        let (item, tail) = rest.split_at(end);
        rest = tail.trim_start();
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
            None => (item.trim(), None),
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return None;
        }
        params.push((name.to_string(), value));
    }
    Some(params)
}

/// Index of the next `;` outside quotes.
fn param_end(text: &str) -> usize {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => return i,
            _ => {}
        }
    }
    text.len()
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a Option<String>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// RFC 3261 token characters.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// One Via entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Protocol version as written; only 2.0 is served, but a 505 still needs the Via.
    pub version: String,
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

/// RFC 3261 branch prefix marking RFC 3261 transaction ids.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    /// Parses one entry; LWS around the `/` of the protocol is allowed (RFC 4475 3.1.1.1).
    pub fn parse(text: &str) -> Option<Via> {
        let mut rest = text.trim();
        let mut fields = [""; 3];
        for (i, field) in fields.iter_mut().enumerate() {
            if i > 0 {
                rest = rest.strip_prefix('/')?.trim_start();
            }
            let end = rest
                .find(|c: char| c == '/' || c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            let (value, tail) = rest.split_at(end);
            *field = value;
            rest = tail.trim_start();
        }
        let [name, version, transport] = fields;
        if !name.eq_ignore_ascii_case("SIP")
            || version.is_empty()
            || transport.is_empty()
            || !transport.bytes().all(is_token_byte)
        {
            return None;
        }
        let params_at = rest.find(';').unwrap_or(rest.len());
        let (sent_by, params) = rest.split_at(params_at);
        let (host, port) = split_host_port(sent_by.trim())?;
        Some(Via {
            version: version.to_string(),
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params: parse_params(params)?,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        param(&self.params, "branch")?.as_deref()
    }

    pub fn has_rport(&self) -> bool {
        param(&self.params, "rport").is_some()
    }

    /// `host:port` as written (port defaulted to 5060), for transaction keys.
    pub fn sent_by(&self) -> String {
        format!(
            "{}:{}",
            self.host.to_ascii_lowercase(),
            self.port.unwrap_or(5060)
        )
    }

    /// This entry with `received`/`rport` filled in (RFC 3261 18.2.1, RFC 3581).
    pub fn stamped(&self, source: std::net::SocketAddr) -> String {
        let ip = source.ip().to_string();
        let host_matches = self.host.trim_matches(|c| c == '[' || c == ']') == ip;
        let rport = self.has_rport();
        let mut out = format!("SIP/{}/{} {}", self.version, self.transport, self.host);
        if let Some(p) = self.port {
            let _ = write!(out, ":{p}");
        }
        for (name, value) in &self.params {
            if name.eq_ignore_ascii_case("received") {
                continue;
            }
            if name.eq_ignore_ascii_case("rport") {
                let _ = write!(out, ";rport={}", source.port());
                continue;
            }
            match value {
                Some(v) => {
                    let _ = write!(out, ";{name}={v}");
                }
                None => {
                    let _ = write!(out, ";{name}");
                }
            }
        }
        if rport || !host_matches {
            let _ = write!(out, ";received={ip}");
        }
        out
    }
}

/// Splits `host[:port]`, with IPv6 references in brackets.
fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    if text.is_empty() {
        return None;
    }
    if let Some(rest) = text.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = format!("[{}]", rest.get(..close)?);
        let after = rest.get(close + 1..)?.trim();
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.trim().parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h.trim(), Some(p.trim().parse().ok()?)),
        None => (text, None),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return None;
    }
    Some((host.to_string(), port))
}

/// `CSeq: 42 INVITE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(text: &str) -> Option<CSeq> {
        let mut it = text.split_ascii_whitespace();
        let seq_text = it.next()?;
        // RFC 3261 limits the number to 2**31 - 1 and to at most 10 digits.
        if seq_text.len() > 10 || !seq_text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let seq: u32 = seq_text.parse().ok().filter(|n| *n < 1u32 << 31)?;
        let method = it.next()?;
        if it.next().is_some() || !method.bytes().all(is_token_byte) {
            return None;
        }
        Some(CSeq {
            seq,
            method: Method::parse(method),
        })
    }
}

/// From/To/Contact/Route value: `"Name" <uri>;params` or `uri;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(text: &str) -> Option<NameAddr> {
        let text = text.trim();
        if let Some(open) = find_unquoted(text, '<') {
            let display_raw = text.get(..open)?.trim();
            let after = text.get(open + 1..)?;
            let close = after.find('>')?;
            let uri = after.get(..close)?.trim();
            let params = parse_params(after.get(close + 1..)?)?;
            let display = unquote(display_raw);
            if uri.is_empty() {
                return None;
            }
            return Some(NameAddr {
                display: (!display.is_empty()).then_some(display),
                uri: uri.to_string(),
                params,
            });
        }
        // addr-spec without brackets: parameters after the URI belong to the header.
        let end = text.find(';').unwrap_or(text.len());
        let (uri, params) = text.split_at(end);
        let uri = uri.trim();
        if uri.is_empty() || uri.contains(char::is_whitespace) || !uri.contains(':') {
            return None;
        }
        Some(NameAddr {
            display: None,
            uri: uri.to_string(),
            params: parse_params(params)?,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        param(&self.params, "tag")?.as_deref()
    }
}

fn find_unquoted(text: &str, wanted: char) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == wanted && !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

fn unquote(text: &str) -> String {
    let text = text.trim();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if escaped || c != '\\' {
                    out.push(c);
                    escaped = false;
                } else {
                    escaped = true;
                }
            }
            out
        }
        None => text.to_string(),
    }
}

/// Display name of a From/To value. rsip's typed From is tried first; our own
/// parser covers what rsip refuses (quoted parameters, odd URIs).
pub fn display_name(value: &str) -> Option<String> {
    use rsip::prelude::*;
    if let Ok(typed) = rsip::headers::From::new(value).typed() {
        return typed
            .display_name
            .map(|d| unquote(&d))
            .filter(|d| !d.is_empty());
    }
    NameAddr::parse(value)?.display
}

/// The user part of a SIP/SIPS URI (percent-decoded), or the number of a `tel:` URI.
pub fn uri_user(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        let number = rest.split(';').next().unwrap_or("");
        return (!number.is_empty()).then(|| percent_decode(number));
    }
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let at = rest.rfind('@')?;
    let userinfo = rest.get(..at)?;
    let user = userinfo.split(':').next().unwrap_or("");
    (!user.is_empty()).then(|| percent_decode(user))
}

/// Host part of a SIP URI (for routing decisions and `lr` checks).
pub fn uri_params(uri: &str) -> Params {
    let after_host = uri.rsplit_once('@').map(|(_, h)| h).unwrap_or(uri);
    let no_headers = after_host.split('?').next().unwrap_or("");
    match no_headers.find(';') {
        Some(i) => parse_params(no_headers.get(i..).unwrap_or("")).unwrap_or_default(),
        None => Vec::new(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or(0);
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard reason phrases for what we send.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => match code / 100 {
            1 => "Progress",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// Writes a SIP message line by line; `finish` adds Content-Length and the body.
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn response(code: u16) -> Writer {
        let mut out = String::with_capacity(640);
        let _ = write!(out, "SIP/2.0 {} {}\r\n", code, reason_phrase(code));
        Writer { out }
    }

    pub fn request(method: &str, uri: &str) -> Writer {
        let mut out = String::with_capacity(640);
        let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
        Writer { out }
    }

    pub fn header(&mut self, name: &str, value: &str) -> &mut Writer {
        let _ = write!(self.out, "{name}: {value}\r\n");
        self
    }

    pub fn finish(mut self, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
        if let Some(ct) = content_type {
            let _ = write!(self.out, "Content-Type: {ct}\r\n");
        }
        let _ = write!(self.out, "Content-Length: {}\r\n\r\n", body.len());
        let mut bytes = self.out.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_rport_ipv6_and_list() {
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bKabc"));
        assert!(v.has_rport());
        let v6 = Via::parse("SIP/2.0/TCP [2001:db8::9:1]:5061;branch=z9hG4bKx").unwrap();
        assert_eq!(v6.host, "[2001:db8::9:1]");
        assert_eq!(v6.sent_by(), "[2001:db8::9:1]:5061");
        // RFC 4475 3.1.1.1: odd spacing inside the Via.
        let odd = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (odd.host.as_str(), odd.branch()),
            ("192.0.2.2", Some("390skdjuw"))
        );
        let spaced =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!(spaced.branch(), Some("z9hG4bK9ikj8"));
        let list = split_list("SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=\"x,y\"");
        assert_eq!(list.len(), 2);
        assert!(Via::parse("SIP/2.0/UDP").is_none());
        assert!(Via::parse("SIP/2.0/UDP host:99999").is_none());
    }

    #[test]
    fn stamping_received_and_rport() {
        let src: std::net::SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let v = Via::parse("SIP/2.0/UDP phone.example;branch=z9hG4bK1;rport").unwrap();
        assert_eq!(
            v.stamped(src),
            "SIP/2.0/UDP phone.example;branch=z9hG4bK1;rport=40000;received=10.0.0.5"
        );
        let same = Via::parse("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1").unwrap();
        assert_eq!(
            same.stamped(src),
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1"
        );
    }

    #[test]
    fn cseq_bounds() {
        assert_eq!(CSeq::parse("1 INVITE").map(|c| c.seq), Some(1));
        assert!(CSeq::parse("2147483648 INVITE").is_none());
        assert!(CSeq::parse("-1 INVITE").is_none());
        assert!(CSeq::parse("1").is_none());
        assert!(CSeq::parse("1 INVITE x").is_none());
    }

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse("\"Alice \\\"A\\\"\" <sip:alice@atlanta.com>;tag=1928").unwrap();
        assert_eq!(a.display.as_deref(), Some("Alice \"A\""));
        assert_eq!(a.uri, "sip:alice@atlanta.com");
        assert_eq!(a.tag(), Some("1928"));
        let b = NameAddr::parse("sip:bob@biloxi.com;tag=x").unwrap();
        assert_eq!(b.uri, "sip:bob@biloxi.com");
        assert_eq!(b.tag(), Some("x"));
        let c = NameAddr::parse("<sip:bob@b.com>;+sip.instance=\"<urn:uuid:1;x>\"").unwrap();
        assert_eq!(c.params.len(), 1);
        assert!(NameAddr::parse("garbage").is_none());
        assert!(NameAddr::parse("<>").is_none());
    }

    #[test]
    fn uri_users() {
        assert_eq!(
            uri_user("sip:%61lice@atlanta.com").as_deref(),
            Some("alice")
        );
        assert_eq!(
            uri_user("sip:+4722334455@gw;user=phone").as_deref(),
            Some("+4722334455")
        );
        assert_eq!(
            uri_user("tel:+4712345678;phone-context=x").as_deref(),
            Some("+4712345678")
        );
        assert_eq!(uri_user("sip:[2001:db8::10]:5070"), None);
        assert_eq!(uri_user("sip:user:pw@h").as_deref(), Some("user"));
        assert_eq!(uri_user("http://x"), None);
    }

    #[test]
    fn display_names() {
        assert_eq!(
            display_name("\"Bob\" <sip:b@x>;tag=1").as_deref(),
            Some("Bob")
        );
        assert_eq!(display_name("sip:b@x;tag=1"), None);
        assert_eq!(
            display_name("Kari <sip:b@x>;+sip.instance=\"<urn:a>\"").as_deref(),
            Some("Kari")
        );
    }
}
