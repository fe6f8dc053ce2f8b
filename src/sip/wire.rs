//! Bytes to [`Message`]: framing by Content-Length, normalisation (folded
//! lines, compact names, space before the colon) and the checks that decide
//! between accepting, answering 400/505/416, or dropping. RFC 4475 is the
//! yardstick (see the tests and `fixtures/rfc4475`).

use super::message::{is_token_byte, Header, Message, Method, NameAddr, StartLine, Via};

/// What became of a datagram or framed stream message.
#[derive(Debug)]
pub enum Decoded {
    /// A well-formed message.
    Message(Message),
    /// CRLF keepalive (RFC 5626): nothing to do.
    KeepAlive,
    /// A request we cannot process but can answer with `code` (400, 416, 505).
    Reject {
        code: u16,
        reason: String,
        essentials: Essentials,
    },
    /// Nothing can be answered (a response, or headers needed to reply are missing).
    Drop { reason: String },
}

/// The headers needed to answer a request even when the rest is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Essentials {
    /// Every Via header value, in order (copied to the response).
    pub vias: Vec<String>,
    pub top_via: Via,
    pub call_id: String,
    pub cseq: String,
    pub from: String,
    pub to: String,
    /// The request's method token, when the start line could be read.
    pub method: Option<Method>,
}

impl Essentials {
    pub fn from_message(msg: &Message) -> Option<Essentials> {
        let vias: Vec<String> = msg.headers_named("Via").map(str::to_string).collect();
        Some(Essentials {
            top_via: msg.top_via()?,
            vias,
            call_id: msg.call_id()?.to_string(),
            cseq: msg.header("CSeq")?.to_string(),
            from: msg.header("From")?.to_string(),
            to: msg.header("To")?.to_string(),
            method: msg.method().cloned(),
        })
    }
}

/// How the message arrived: datagrams may carry more than Content-Length says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Datagram,
    Stream,
}

/// Decodes one datagram (or one message popped by [`StreamFramer`]).
pub fn decode(data: &[u8], framing: Framing, max_size: usize) -> Decoded {
    if data.len() > max_size {
        return Decoded::Drop {
            reason: format!("message of {} bytes exceeds {max_size}", data.len()),
        };
    }
    let data = skip_leading_crlf(data);
    if data.is_empty() {
        return Decoded::KeepAlive;
    }
    let (head, body, had_blank_line) = match find_header_end(data) {
        Some((head_end, body_start)) => (
            data.get(..head_end).unwrap_or_default(),
            data.get(body_start..).unwrap_or_default(),
            true,
        ),
        None => (data, &[][..], false),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start_text = lines.next().unwrap_or("");
    let headers = match parse_headers(lines.clone(), false) {
        Ok(h) => h,
        Err(reason) => {
            // Salvage what a 400 needs from the lines that do parse.
            let salvaged = parse_headers(lines, true).unwrap_or_default();
            return reject(start_text, salvaged, 400, reason);
        }
    };
    let start = match parse_start_line(start_text) {
        Ok(s) => s,
        Err(StartError::Version) => {
            return reject(start_text, headers, 505, "SIP version not supported".into())
        }
        Err(StartError::Garbage) => {
            return reject(start_text, headers, 400, "malformed start line".into())
        }
    };
    let mut msg = Message {
        start,
        headers,
        body: Vec::new(),
    };
    // Content-Length: every copy must agree and be a plain number.
    let mut declared: Option<usize> = None;
    let mut length_error: Option<&str> = None;
    for value in msg.headers_named("Content-Length") {
        let plain =
            !value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit());
        match (
            plain.then(|| value.parse::<usize>().ok()).flatten(),
            declared,
        ) {
            (None, _) => length_error = Some("bad Content-Length"),
            (Some(n), Some(prev)) if n != prev => length_error = Some("conflicting Content-Length"),
            (Some(n), _) => declared = Some(n),
        }
    }
    if let Some(reason) = length_error {
        return reject_msg(msg, 400, reason.into());
    }
    let body = match declared {
        Some(n) if n > body.len() => {
            return reject_msg(msg, 400, "body shorter than Content-Length".into())
        }
        // RFC 3261 18.3: bytes past Content-Length in a datagram are discarded.
        Some(n) => body.get(..n).unwrap_or_default(),
        None if framing == Framing::Stream => &[][..],
        None => body,
    };
    if !had_blank_line && !body.is_empty() {
        return reject_msg(msg, 400, "no blank line after headers".into());
    }
    msg.body = body.to_vec();
    match check_mandatory(&msg) {
        Ok(()) => Decoded::Message(msg),
        Err((code, reason)) => reject_msg(msg, code, reason),
    }
}

fn skip_leading_crlf(mut data: &[u8]) -> &[u8] {
    while let Some((first, rest)) = data.split_first() {
        if *first == b'\r' || *first == b'\n' {
            data = rest;
        } else {
            break;
        }
    }
    data
}

/// (end of header text, start of body): the first empty line, CRLF or bare LF.
fn find_header_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < data.len() {
        if data.get(i) == Some(&b'\n') {
            match (data.get(i + 1), data.get(i + 2)) {
                (Some(b'\n'), _) => return Some((i, i + 2)),
                (Some(b'\r'), Some(b'\n')) => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

enum StartError {
    Garbage,
    Version,
}

fn parse_start_line(line: &str) -> Result<StartLine, StartError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (version, rest) = rest.split_once(' ').ok_or(StartError::Garbage)?;
        if version != "2.0" {
            return Err(StartError::Version);
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| StartError::Garbage)?;
        if !(100..=699).contains(&code) || code.to_string().len() != 3 {
            return Err(StartError::Garbage);
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_string(),
        });
    }
    // Request-Line: exactly single spaces (RFC 3261 25.1; RFC 4475 3.1.2.10).
    let mut parts = line.split(' ');
    let (method, uri, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(u), Some(v), None) => (m, u, v),
        _ => return Err(StartError::Garbage),
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) || uri.is_empty() {
        return Err(StartError::Garbage);
    }
    if !uri.contains(':')
        || uri
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'<' || b == b'>')
    {
        return Err(StartError::Garbage);
    }
    match version.strip_prefix("SIP/") {
        Some("2.0") => {}
        Some(_) => return Err(StartError::Version),
        None => return Err(StartError::Garbage),
    }
    Ok(StartLine::Request {
        method: Method::parse(method),
        uri: uri.to_string(),
    })
}

/// Unfolds continuation lines, trims space before the colon, expands compact names.
/// With `lenient`, bad lines are skipped instead of failing the whole message.
fn parse_headers<'a>(
    lines: impl Iterator<Item = &'a str>,
    lenient: bool,
) -> Result<Vec<Header>, String> {
    let mut headers: Vec<Header> = Vec::with_capacity(16);
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers
                .last_mut()
                .ok_or_else(|| "continuation line before any header".to_string())?;
            let more = line.trim();
            if !more.is_empty() {
                if !last.value.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(more);
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            if lenient {
                continue;
            }
            return Err(format!("header line without a colon: {:.40}", line));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            if lenient {
                continue;
            }
            return Err(format!("bad header name: {:.40}", name));
        }
        if headers.len() >= MAX_HEADERS {
            return Err("too many headers".into());
        }
        headers.push(Header {
            name: canonical_name(name),
            value: value.trim().to_string(),
        });
    }
    Ok(headers)
}

/// Bounds the work spent on one message.
const MAX_HEADERS: usize = 256;

/// Long form of compact names (RFC 3261 7.3.3 and extensions) and the usual
/// spelling of common names, so that later lookups and copies are uniform.
fn canonical_name(name: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("v", "Via"),
        ("f", "From"),
        ("t", "To"),
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("e", "Content-Encoding"),
        ("o", "Event"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("u", "Allow-Events"),
        ("x", "Session-Expires"),
        ("via", "Via"),
        ("from", "From"),
        ("to", "To"),
        ("call-id", "Call-ID"),
        ("cseq", "CSeq"),
        ("contact", "Contact"),
        ("content-length", "Content-Length"),
        ("content-type", "Content-Type"),
        ("max-forwards", "Max-Forwards"),
        ("record-route", "Record-Route"),
        ("route", "Route"),
        ("require", "Require"),
        ("supported", "Supported"),
    ];
    NAMES
        .iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(name))
        .map(|(_, long)| long.to_string())
        .unwrap_or_else(|| name.to_string())
}

/// Headers every request and response must carry in a usable form.
fn check_mandatory(msg: &Message) -> Result<(), (u16, String)> {
    let bad = |what: &str| Err((400, format!("missing or malformed {what}")));
    if msg.top_via().is_none() {
        return bad("Via");
    }
    if msg.call_id().is_none() || msg.headers_named("Call-ID").count() > 1 {
        return bad("Call-ID");
    }
    let Some(cseq) = msg.cseq() else {
        return bad("CSeq");
    };
    for name in ["From", "To"] {
        let mut values = msg.headers_named(name);
        let ok = matches!(
            (values.next().map(NameAddr::parse), values.next()),
            (Some(Some(_)), None)
        );
        if !ok {
            return bad(name);
        }
    }
    if let StartLine::Request { method, uri } = &msg.start {
        if &cseq.method != method {
            return Err((400, "CSeq method does not match the request".into()));
        }
        let scheme = uri.split(':').next().unwrap_or("");
        if !["sip", "sips", "tel"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
        {
            return Err((416, "unsupported URI scheme".into()));
        }
    }
    Ok(())
}

fn reject_msg(msg: Message, code: u16, reason: String) -> Decoded {
    // Responses and ACKs are never answered (RFC 3261 17.1.1.3, 18.3).
    if msg.status().is_some() || msg.method() == Some(&Method::Ack) {
        return Decoded::Drop { reason };
    }
    match Essentials::from_message(&msg) {
        Some(essentials) => Decoded::Reject {
            code,
            reason,
            essentials,
        },
        None => Decoded::Drop { reason },
    }
}

/// The start line failed but the headers parsed: answer if it looks like a request.
fn reject(start_text: &str, headers: Vec<Header>, code: u16, reason: String) -> Decoded {
    if start_text.starts_with("SIP/") && code != 505 {
        return Decoded::Drop { reason };
    }
    let method = start_text
        .split(' ')
        .next()
        .filter(|m| !m.is_empty() && m.bytes().all(is_token_byte))
        .map(Method::parse);
    let msg = Message {
        start: StartLine::Request {
            method: method.clone().unwrap_or(Method::Other(String::new())),
            uri: String::new(),
        },
        headers,
        body: Vec::new(),
    };
    // Never answer an ACK (RFC 3261 17.1.1.3: ACKs get no response).
    if method == Some(Method::Ack)
        || msg.cseq().map(|c| c.method) == Some(Method::Ack)
        || start_text.starts_with("SIP/")
    {
        return Decoded::Drop { reason };
    }
    match Essentials::from_message(&msg) {
        Some(mut essentials) => {
            essentials.method = method;
            Decoded::Reject {
                code,
                reason,
                essentials,
            }
        }
        None => Decoded::Drop { reason },
    }
}

/// Why a stream could not be framed; the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramerError {
    #[error("message exceeds {0} bytes")]
    TooLarge(usize),
    #[error("bad Content-Length")]
    BadContentLength,
}

/// Splits a TCP byte stream into messages by Content-Length (RFC 3261 18.3).
/// The buffer never grows past `max_size` plus one read.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    max_size: usize,
}

impl StreamFramer {
    pub fn new(max_size: usize) -> StreamFramer {
        StreamFramer {
            buf: Vec::new(),
            max_size,
        }
    }

    /// Appends received bytes. Fails when a message cannot fit within the limit.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FramerError> {
        if self.buf.len() + data.len() > self.max_size.saturating_mul(2) {
            return Err(FramerError::TooLarge(self.max_size));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete message, if one is buffered. Keepalive CRLFs are skipped.
    pub fn pop(&mut self) -> Result<Option<Vec<u8>>, FramerError> {
        let skip = self.buf.len() - skip_leading_crlf(&self.buf).len();
        if skip > 0 {
            self.buf.drain(..skip);
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some((head_end, body_start)) = find_header_end(&self.buf) else {
            if self.buf.len() > self.max_size {
                return Err(FramerError::TooLarge(self.max_size));
            }
            return Ok(None);
        };
        let head = self.buf.get(..head_end).unwrap_or_default();
        let length = stream_content_length(head)?;
        let total = body_start
            .checked_add(length)
            .ok_or(FramerError::BadContentLength)?;
        if total > self.max_size {
            return Err(FramerError::TooLarge(self.max_size));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let message = std::mem::replace(&mut self.buf, rest);
        Ok(Some(message))
    }

    /// Bytes waiting for the rest of their message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Content-Length from raw header bytes (compact `l` and folding allowed);
/// missing means 0.
fn stream_content_length(head: &[u8]) -> Result<usize, FramerError> {
    let text = String::from_utf8_lossy(head);
    let lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .skip(1);
    let headers = parse_headers(lines, true).map_err(|_| FramerError::BadContentLength)?;
    let mut found: Option<usize> = None;
    for h in headers.iter().filter(|h| h.name == "Content-Length") {
        let ok = !h.value.is_empty()
            && h.value.len() <= 10
            && h.value.bytes().all(|b| b.is_ascii_digit());
        let n: usize = ok
            .then(|| h.value.parse().ok())
            .flatten()
            .ok_or(FramerError::BadContentLength)?;
        if found.is_some_and(|f| f != n) {
            return Err(FramerError::BadContentLength);
        }
        found = Some(n);
    }
    Ok(found.unwrap_or(0))
}

/// Checks that rsip accepts what normalisation produced (used by tests and
/// by callers that want rsip's typed view).
pub fn to_rsip(msg: &Message) -> Option<rsip::SipMessage> {
    msg.to_rsip()
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
