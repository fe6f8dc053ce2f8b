//! REGISTER: parsed into `SipEvent::Register` for the registrar, answered with
//! `respond_register`. The endpoint checks syntax only; credentials and
//! bindings are the registrar's.

use super::*;

/// Most Contacts one REGISTER may carry.
const MAX_CONTACTS: usize = 16;

impl SipEndpoint {
    pub(super) fn new_register(
        &mut self,
        now: Instant,
        key: ServerKey,
        msg: &Message,
        reply: Reply,
        source: SocketAddr,
        transport: Transport,
    ) {
        if self.registers.len() >= self.max_registers() {
            self.respond(now, &key, &reply, Answer::full());
            return;
        }
        let account = msg
            .header("Authorization")
            .and_then(digest_username)
            .unwrap_or_default();
        let account = if account.is_empty() {
            msg.header("To")
                .and_then(NameAddr::parse)
                .and_then(|n| uri_user(&n.uri))
                .unwrap_or_default()
        } else {
            account
        };
        if self.admission.auth_blocked(now, source.ip(), &account) {
            self.count_rejection(Rejection::AuthThrottled);
            self.respond(now, &key, &reply, Answer::code(403));
            return;
        }
        let parsed = parse_register(msg);
        let (expires, wildcard, contacts) = match parsed {
            Ok(p) => p,
            Err(why) => {
                let answer = Answer::code(400).header("Warning", warning(why));
                self.respond(now, &key, &reply, answer);
                return;
            }
        };
        let handle = RegisterHandle(self.next_register);
        self.next_register += 1;
        let Some(entry) = self.servers.get_mut(&key) else {
            return;
        };
        entry.register = Some(handle);
        self.registers.insert(handle, (key, reply));
        self.register_origins.insert(
            handle,
            RegisterOrigin {
                ip: source.ip(),
                account,
                sent_credentials: msg.header("Authorization").is_some(),
            },
        );
        let to_uri = msg
            .header("To")
            .and_then(NameAddr::parse)
            .map(|n| n.uri)
            .unwrap_or_default();
        let from_uri = msg
            .header("From")
            .and_then(NameAddr::parse)
            .map(|n| n.uri)
            .unwrap_or_default();
        let request = RegisterRequest {
            handle,
            source,
            transport,
            to_user: uri_user(&to_uri).unwrap_or_default(),
            from_user: uri_user(&from_uri).unwrap_or_default(),
            aor: to_uri,
            call_id: msg.call_id().unwrap_or("").to_string(),
            cseq: msg.cseq().map(|c| c.seq).unwrap_or(0),
            expires,
            wildcard,
            contacts,
            authorization: msg.header("Authorization").map(str::to_string),
            method: Method::Register.as_str().to_string(),
            request_uri: msg.request_uri().unwrap_or("").to_string(),
            user_agent: msg.header("User-Agent").map(str::to_string),
        };
        self.push_event(SipEvent::Register(request));
    }

    /// Answers a REGISTER: e.g. 200 with `Contact` bindings and `Date`, 401
    /// with `WWW-Authenticate`, 423 with `Min-Expires`, 503 with `Retry-After`.
    /// Unwritable headers are left out (see `reject_with`); a code outside
    /// 200..=699 becomes 500. Unknown or already answered handles are ignored.
    pub fn respond_register(
        &mut self,
        now: Instant,
        handle: RegisterHandle,
        code: u16,
        headers: Vec<(String, String)>,
    ) {
        let Some((key, reply)) = self.registers.remove(&handle) else {
            return;
        };
        if let Some(entry) = self.servers.get_mut(&key) {
            entry.register = None;
        }
        if let Some(origin) = self.register_origins.remove(&handle) {
            // A challenge to a request that carried credentials means they
            // were wrong (or stale): a guess, as far as throttling goes.
            if origin.sent_credentials && matches!(code, 401 | 403 | 407) {
                self.admission.auth_failed(now, origin.ip, &origin.account);
            }
        }
        let code = if (200..=699).contains(&code) {
            code
        } else {
            500
        };
        let mut answer = Answer::code(code);
        answer.headers.extend(clean_register_headers(headers));
        self.respond(now, &key, &reply, answer);
    }
}

/// Who sent a pending REGISTER.
pub(super) struct RegisterOrigin {
    ip: std::net::IpAddr,
    account: String,
    sent_credentials: bool,
}

/// The `username` parameter of a Digest `Authorization` header.
fn digest_username(header: &str) -> Option<String> {
    let lower = header.to_ascii_lowercase();
    let at = lower.find("username")?;
    let rest = header.get(at + "username".len()..)?.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest.split([',', ' ']).next()?,
    };
    Some(value.chars().take(128).collect())
}

/// REGISTER answers carry the bindings as `Contact`, which other responses
/// may not set; the rest follows `clean_headers`.
fn clean_register_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    let (contacts, rest): (Vec<_>, Vec<_>) = headers
        .into_iter()
        .partition(|(n, _)| n.eq_ignore_ascii_case("Contact"));
    let contacts = contacts
        .into_iter()
        .filter(|(_, v)| !v.chars().any(|c| c.is_control()))
        .take(MAX_CONTACTS);
    contacts.chain(clean_headers(rest)).collect()
}

type ParsedRegister = (Option<u32>, bool, Vec<RegisterContact>);

fn parse_register(msg: &Message) -> Result<ParsedRegister, &'static str> {
    let expires = match msg.header("Expires") {
        Some(v) => Some(delta_seconds(v).ok_or("malformed Expires")?),
        None => None,
    };
    let mut wildcard = false;
    let mut contacts = Vec::new();
    for entry in msg.headers_named("Contact").flat_map(split_list) {
        if entry == "*" {
            wildcard = true;
            continue;
        }
        if contacts.len() >= MAX_CONTACTS {
            return Err("too many Contacts");
        }
        let addr = NameAddr::parse(entry).ok_or("malformed Contact")?;
        let expires = match addr
            .params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("expires"))
        {
            Some((_, Some(v))) => Some(delta_seconds(v).ok_or("malformed Contact expires")?),
            Some((_, None)) => return Err("malformed Contact expires"),
            None => None,
        };
        contacts.push(RegisterContact {
            uri: addr.uri,
            expires,
            value: entry.to_string(),
        });
    }
    Ok((expires, wildcard, contacts))
}

/// RFC 3261 delta-seconds; values beyond 2**32-1 count as 2**32-1 (20.19).
fn delta_seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u32>().unwrap_or(u32::MAX))
}
