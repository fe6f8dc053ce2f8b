//! The registrar core (RFC 3261 §10.3), sans-IO: already-parsed REGISTER values
//! in, what to answer out; bindings expire by the `now` it is given.
//!
//! Several contacts per agent are kept (a desk phone and a mobile softphone),
//! up to `max_contacts_per_agent`; beyond that the oldest is dropped. An offer
//! rings the most recently *added* contact: the device the agent logged in on
//! last. A refresh does not reorder, so two phones refreshing at different
//! times do not take turns.
//!
//! Contact URIs are compared as exact strings: the SIP layer hands over the URI
//! without angle brackets or header parameters, and a phone refreshes with the
//! same text it registered.

use super::failures::{FailureConfig, FailureReason, Failures, RegisterFailure};
use crate::digest::{
    parse_authorization, Algorithm, Challenge, DigestAuth, Ha1Set, RejectReason, Verdict,
};
use crate::ids::AgentId;
use crate::sip::Transport;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Registrar settings.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Below this a non-zero expiry gets 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer requests are shortened to this.
    pub max_expires: u32,
    /// Used when neither the contact nor the request gives an expiry.
    pub default_expires: u32,
    pub max_contacts_per_agent: usize,
    /// Most Contact entries accepted in one REGISTER.
    pub max_contacts_per_request: usize,
    pub max_uri_len: usize,
}

impl Default for RegistrarConfig {
    fn default() -> RegistrarConfig {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts_per_agent: 3,
            max_contacts_per_request: 8,
            max_uri_len: 1024,
        }
    }
}

/// One Contact of a REGISTER: the URI and its `expires` parameter, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactParam {
    pub uri: String,
    pub expires: Option<u32>,
}

/// The Contact header(s) of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// No Contact: a query for the current bindings.
    None,
    /// `Contact: *` (only valid with `Expires: 0`).
    Wildcard,
    List(Vec<ContactParam>),
}

/// A REGISTER, as parsed by the SIP layer.
#[derive(Debug, Clone)]
pub struct RegisterRequest<'a> {
    /// User part of the To URI: the address of record.
    pub aor_user: &'a str,
    pub request_uri: &'a str,
    pub contacts: Contacts,
    /// The `Expires` header.
    pub expires: Option<u32>,
    pub call_id: &'a str,
    pub cseq: u32,
    pub source: SocketAddr,
    pub transport: Transport,
    /// The raw `Authorization` header value, if any.
    pub authorization: Option<&'a str>,
}

impl RegisterRequest<'_> {
    /// Whether the request adds or refreshes a binding (rather than only
    /// removing bindings or asking for them): a login worth watching.
    fn adds_binding(&self) -> bool {
        match &self.contacts {
            Contacts::List(list) => list.iter().any(|c| c.expires.or(self.expires) != Some(0)),
            Contacts::None | Contacts::Wildcard => false,
        }
    }
}

/// Who may register: maps a SIP username to the agent and its HA1s.
pub trait CredentialStore {
    fn credentials(&self, sip_username: &str) -> Option<(AgentId, Ha1Set)>;
}

/// A contact an agent can be reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub uri: String,
    pub source: SocketAddr,
    pub transport: Transport,
    pub call_id: String,
    pub cseq: u32,
    pub expires_at: Instant,
    pub added_at: Instant,
}

/// A binding as listed in the 200 response: `Contact: <uri>;expires=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingInfo {
    pub uri: String,
    pub expires: u32,
}

/// What to answer a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// 200 OK listing every current binding of the agent.
    Ok {
        agent: AgentId,
        bindings: Vec<BindingInfo>,
    },
    /// 401 with one `WWW-Authenticate` per challenge, in order.
    Unauthorized { challenges: Vec<Challenge> },
    /// 403: the credentials belong to another address of record.
    Forbidden,
    /// 423 with `Min-Expires`.
    IntervalTooBrief { min_expires: u32 },
    /// 400 with a reason phrase.
    BadRequest(&'static str),
    /// 500: a CSeq not above the stored one for the same Call-ID (RFC 3261
    /// §10.3 step 7 says the request fails; the code is ours to choose).
    OutOfOrder,
}

impl RegisterOutcome {
    pub fn status_code(&self) -> u16 {
        match self {
            RegisterOutcome::Ok { .. } => 200,
            RegisterOutcome::Unauthorized { .. } => 401,
            RegisterOutcome::Forbidden => 403,
            RegisterOutcome::IntervalTooBrief { .. } => 423,
            RegisterOutcome::BadRequest(_) => 400,
            RegisterOutcome::OutOfOrder => 500,
        }
    }
}

/// A change in whether an agent can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// The agent's first contact appeared.
    Registered { agent: AgentId },
    /// The agent's last contact went (expired, removed or dropped).
    Unregistered { agent: AgentId },
    /// A registration failed, or a challenge went unanswered.
    Failed(RegisterFailure),
}

/// The registrar: digest authentication plus bindings per agent.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    auth: DigestAuth,
    bindings: HashMap<AgentId, Vec<Binding>>,
    events: VecDeque<RegistrarEvent>,
    failures: Failures,
}

impl Registrar {
    pub fn new(config: RegistrarConfig, auth: DigestAuth) -> Registrar {
        Registrar {
            config,
            auth,
            bindings: HashMap::new(),
            events: VecDeque::new(),
            failures: Failures::new(FailureConfig::default()),
        }
    }

    /// Which digest algorithms to challenge with, most preferred first.
    pub fn set_algorithms(&mut self, algorithms: &[Algorithm]) {
        self.auth.set_algorithms(algorithms);
    }

    /// Sets how long a challenged phone may take to answer, and the bounds
    /// of the failure tables.
    pub fn set_failure_config(&mut self, config: FailureConfig) {
        self.failures = Failures::new(config);
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Handles one REGISTER.
    pub fn handle_register(
        &mut self,
        now: Instant,
        request: &RegisterRequest<'_>,
        store: &dyn CredentialStore,
    ) -> RegisterOutcome {
        let agent = match self.authenticate(now, request, store) {
            Ok(agent) => agent,
            Err(outcome) => return outcome,
        };
        let outcome = match &request.contacts {
            Contacts::None => Ok(()),
            Contacts::Wildcard => self.remove_all(now, &agent, request),
            Contacts::List(list) => self.update(now, &agent, request, list),
        };
        match outcome {
            Ok(()) => RegisterOutcome::Ok {
                bindings: self.binding_infos(now, &agent),
                agent,
            },
            Err(o) => o,
        }
    }

    fn authenticate(
        &mut self,
        now: Instant,
        request: &RegisterRequest<'_>,
        store: &dyn CredentialStore,
    ) -> Result<AgentId, RegisterOutcome> {
        let user = request.aor_user;
        let owner = store.credentials(user).map(|(agent, _)| agent);
        let Some(header) = request.authorization else {
            if request.adds_binding() {
                self.watch_challenge(now, request, owner, false);
            }
            return Err(self.challenge(now, false));
        };
        self.failures.answered(user, request.source);
        let Ok(response) = parse_authorization(header) else {
            self.fail(
                request,
                owner,
                FailureReason::BadCredentials,
                "a malformed Authorization",
            );
            return Err(RegisterOutcome::BadRequest("Malformed Authorization"));
        };
        // An unknown user is answered like a wrong password, so usernames
        // cannot be probed.
        let Some((agent, ha1s)) = store.credentials(&response.username) else {
            self.fail(request, owner, FailureReason::UnknownUser, "");
            return Err(self.challenge(now, false));
        };
        match self
            .auth
            .verify(now, &response, "REGISTER", Some(request.request_uri), &ha1s)
        {
            Verdict::Accepted => {}
            Verdict::Stale(_) => {
                if request.adds_binding() {
                    self.watch_challenge(now, request, owner, true);
                }
                return Err(self.challenge(now, true));
            }
            Verdict::Rejected(why) => {
                let reason = match why {
                    RejectReason::WrongResponse => FailureReason::WrongPassword,
                    _ => FailureReason::BadCredentials,
                };
                self.fail(request, Some(agent), reason, why.describe());
                return Err(self.challenge(now, false));
            }
        }
        match owner {
            Some(owner) if owner == agent => {
                self.failures.succeeded(user, request.source);
                Ok(agent)
            }
            _ => {
                self.fail(request, Some(agent), FailureReason::Forbidden, "");
                Err(RegisterOutcome::Forbidden)
            }
        }
    }

    /// Remembers a challenge, to report it if no answer comes.
    fn watch_challenge(
        &mut self,
        now: Instant,
        request: &RegisterRequest<'_>,
        owner: Option<AgentId>,
        stale: bool,
    ) {
        let beyond_md5 = self.auth.algorithms().iter().any(|a| *a != Algorithm::Md5);
        self.failures.challenged(
            now,
            request.aor_user,
            owner,
            request.source,
            stale,
            beyond_md5,
        );
    }

    fn fail(
        &mut self,
        request: &RegisterRequest<'_>,
        agent: Option<AgentId>,
        reason: FailureReason,
        detail: &'static str,
    ) {
        let failure = self
            .failures
            .failed(request.aor_user, agent, request.source, reason, detail);
        self.events.push_back(RegistrarEvent::Failed(failure));
    }

    fn challenge(&mut self, now: Instant, stale: bool) -> RegisterOutcome {
        RegisterOutcome::Unauthorized {
            challenges: self.auth.challenges(now, stale),
        }
    }

    /// Whether a request with this Call-ID/CSeq may change `binding`.
    fn in_order(binding: &Binding, request: &RegisterRequest<'_>) -> bool {
        binding.call_id != request.call_id || request.cseq > binding.cseq
    }

    fn remove_all(
        &mut self,
        now: Instant,
        agent: &AgentId,
        request: &RegisterRequest<'_>,
    ) -> Result<(), RegisterOutcome> {
        if request.expires != Some(0) {
            return Err(RegisterOutcome::BadRequest("Contact: * needs Expires: 0"));
        }
        let current = self.bindings.get(agent).map(Vec::as_slice).unwrap_or(&[]);
        if !current.iter().all(|b| Self::in_order(b, request)) {
            return Err(RegisterOutcome::OutOfOrder);
        }
        self.set_bindings(now, agent, Vec::new());
        Ok(())
    }

    fn update(
        &mut self,
        now: Instant,
        agent: &AgentId,
        request: &RegisterRequest<'_>,
        list: &[ContactParam],
    ) -> Result<(), RegisterOutcome> {
        if list.len() > self.config.max_contacts_per_request {
            return Err(RegisterOutcome::BadRequest("Too many contacts"));
        }
        if request.call_id.is_empty() || request.call_id.len() > self.config.max_uri_len {
            return Err(RegisterOutcome::BadRequest("Bad Call-ID"));
        }
        // Check everything first: a failing request changes nothing.
        let mut planned = Vec::with_capacity(list.len());
        for contact in list {
            if contact.uri.is_empty() || contact.uri.len() > self.config.max_uri_len {
                return Err(RegisterOutcome::BadRequest("Bad Contact URI"));
            }
            let requested = contact
                .expires
                .or(request.expires)
                .unwrap_or(self.config.default_expires);
            if requested != 0 && requested < self.config.min_expires {
                return Err(RegisterOutcome::IntervalTooBrief {
                    min_expires: self.config.min_expires,
                });
            }
            let existing = self
                .bindings
                .get(agent)
                .and_then(|bs| bs.iter().find(|b| b.uri == contact.uri));
            if existing.is_some_and(|b| !Self::in_order(b, request)) {
                return Err(RegisterOutcome::OutOfOrder);
            }
            planned.push((contact, requested.min(self.config.max_expires)));
        }
        let mut current = self.bindings.get(agent).cloned().unwrap_or_default();
        for (contact, expires) in planned {
            let position = current.iter().position(|b| b.uri == contact.uri);
            if expires == 0 {
                if let Some(i) = position {
                    current.remove(i);
                }
                continue;
            }
            let expires_at = now
                .checked_add(Duration::from_secs(u64::from(expires)))
                .unwrap_or(now);
            match position.and_then(|i| current.get_mut(i)) {
                Some(b) => {
                    b.expires_at = expires_at;
                    b.call_id = request.call_id.to_string();
                    b.cseq = request.cseq;
                    b.source = request.source;
                    b.transport = request.transport;
                }
                None => current.push(Binding {
                    uri: contact.uri.clone(),
                    source: request.source,
                    transport: request.transport,
                    call_id: request.call_id.to_string(),
                    cseq: request.cseq,
                    expires_at,
                    added_at: now,
                }),
            }
        }
        // `current` is in order of addition: drop from the front.
        let cap = self.config.max_contacts_per_agent.max(1);
        if current.len() > cap {
            let excess = current.len() - cap;
            current.drain(..excess);
        }
        self.set_bindings(now, agent, current);
        Ok(())
    }

    fn set_bindings(&mut self, _now: Instant, agent: &AgentId, new: Vec<Binding>) {
        let had = self.bindings.get(agent).is_some_and(|b| !b.is_empty());
        let has = !new.is_empty();
        if has {
            self.bindings.insert(agent.clone(), new);
        } else {
            self.bindings.remove(agent);
        }
        match (had, has) {
            (false, true) => self.events.push_back(RegistrarEvent::Registered {
                agent: agent.clone(),
            }),
            (true, false) => self.events.push_back(RegistrarEvent::Unregistered {
                agent: agent.clone(),
            }),
            _ => {}
        }
    }

    fn binding_infos(&self, now: Instant, agent: &AgentId) -> Vec<BindingInfo> {
        self.bindings
            .get(agent)
            .map(|bs| {
                bs.iter()
                    .filter(|b| b.expires_at > now)
                    .map(|b| BindingInfo {
                        uri: b.uri.clone(),
                        expires: u32::try_from(
                            b.expires_at.saturating_duration_since(now).as_secs(),
                        )
                        .unwrap_or(u32::MAX),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The contact an offer should ring: the most recently added live one.
    pub fn contact_for(&self, now: Instant, agent: &AgentId) -> Option<&Binding> {
        self.bindings
            .get(agent)?
            .iter()
            .rev()
            .find(|b| b.expires_at > now)
    }

    /// Every live binding of an agent, oldest first.
    pub fn bindings(&self, now: Instant, agent: &AgentId) -> Vec<&Binding> {
        self.bindings
            .get(agent)
            .map(|bs| bs.iter().filter(|b| b.expires_at > now).collect())
            .unwrap_or_default()
    }

    /// Forgets an agent (for example one removed from `agents.yaml`).
    pub fn remove_agent(&mut self, now: Instant, agent: &AgentId) {
        self.set_bindings(now, agent, Vec::new());
    }

    /// When the next binding expires or the oldest challenge runs out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bindings
            .values()
            .flat_map(|bs| bs.iter().map(|b| b.expires_at))
            .chain(self.failures.poll_timeout())
            .min()
    }

    /// Drops expired bindings; reports challenges left unanswered.
    pub fn handle_timeout(&mut self, now: Instant) {
        for failure in self.failures.handle_timeout(now) {
            self.events.push_back(RegistrarEvent::Failed(failure));
        }
        let expired: Vec<AgentId> = self
            .bindings
            .iter()
            .filter(|(_, bs)| bs.iter().any(|b| b.expires_at <= now))
            .map(|(a, _)| a.clone())
            .collect();
        for agent in expired {
            let kept: Vec<Binding> = self
                .bindings
                .get(&agent)
                .map(|bs| bs.iter().filter(|b| b.expires_at > now).cloned().collect())
                .unwrap_or_default();
            self.set_bindings(now, &agent, kept);
        }
    }

    /// The next reachability change, for the ACD (log the agent out when the
    /// last phone goes away), or a failed registration to log and count.
    pub fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{ha1, DigestConfig};
    use crate::registrar::failures::FailureReason;

    struct Store;
    impl CredentialStore for Store {
        fn credentials(&self, user: &str) -> Option<(AgentId, Ha1Set)> {
            let ha = ha1(Algorithm::Md5, user, "hotline", "secret");
            match user {
                "anna" | "ole" => Some((AgentId::from(user), Ha1Set::new(Some(&ha), None).ok()?)),
                _ => None,
            }
        }
    }

    /// A phone that answers challenges the way softphones do.
    struct Phone {
        user: &'static str,
        password: &'static str,
        call_id: &'static str,
        cseq: u32,
        nc: u32,
        challenge: Option<Challenge>,
    }

    impl Phone {
        fn new(user: &'static str, call_id: &'static str) -> Phone {
            Phone {
                user,
                password: "secret",
                call_id,
                cseq: 0,
                nc: 0,
                challenge: None,
            }
        }

        fn authorization(&mut self) -> Option<String> {
            let c = self.challenge.as_ref()?;
            self.nc += 1;
            let ha1 = ha1(Algorithm::Md5, self.user, &c.realm, self.password);
            let uri = "sip:hotline.example";
            let h = |parts: &[&str]| {
                let mut ctx = <md5::Md5 as sha2::Digest>::new();
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        sha2::Digest::update(&mut ctx, b":");
                    }
                    sha2::Digest::update(&mut ctx, p.as_bytes());
                }
                sha2::Digest::finalize(ctx)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            };
            let ha2 = h(&["REGISTER", uri]);
            let nc = format!("{:08x}", self.nc);
            let response = h(&[&ha1, &c.nonce, &nc, "xyz", "auth", &ha2]);
            Some(format!(
                "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
                 response=\"{response}\", algorithm=MD5, cnonce=\"xyz\", nc={nc}, qop=auth, \
                 opaque=\"{}\"",
                self.user, c.realm, c.nonce, c.opaque
            ))
        }

        /// One REGISTER with the credentials the phone has, not retried.
        fn register_once(
            &mut self,
            registrar: &mut Registrar,
            now: Instant,
            contacts: Contacts,
            expires: Option<u32>,
        ) -> RegisterOutcome {
            self.cseq += 1;
            let auth = self.authorization();
            let request = RegisterRequest {
                aor_user: self.user,
                request_uri: "sip:hotline.example",
                contacts,
                expires,
                call_id: self.call_id,
                cseq: self.cseq,
                source: "127.0.0.1:5062".parse().expect("addr"),
                transport: Transport::Udp,
                authorization: auth.as_deref(),
            };
            registrar.handle_register(now, &request, &Store)
        }

        /// Registers, answering up to three challenges with MD5.
        fn register(
            &mut self,
            registrar: &mut Registrar,
            now: Instant,
            contacts: Contacts,
            expires: Option<u32>,
        ) -> RegisterOutcome {
            for attempt in 0..4 {
                let outcome = self.register_once(registrar, now, contacts.clone(), expires);
                match &outcome {
                    RegisterOutcome::Unauthorized { challenges } if attempt < 3 => {
                        let md5 = challenges.iter().find(|c| c.algorithm == Algorithm::Md5);
                        self.challenge = md5.cloned();
                        self.nc = 0;
                    }
                    _ => return outcome,
                }
            }
            RegisterOutcome::Forbidden
        }
    }

    fn contact(uri: &str, expires: Option<u32>) -> Contacts {
        Contacts::List(vec![ContactParam {
            uri: uri.into(),
            expires,
        }])
    }

    fn registrar(t0: Instant) -> Registrar {
        let auth = DigestAuth::new("hotline", [3; 32], t0, DigestConfig::default());
        Registrar::new(RegistrarConfig::default(), auth)
    }

    #[test]
    fn register_refresh_expire() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let mut phone = Phone::new("anna", "c1");
        let out = phone.register(&mut r, t0, contact("sip:anna@10.0.0.5", None), Some(600));
        assert_eq!(
            out,
            RegisterOutcome::Ok {
                agent: AgentId::from("anna"),
                bindings: vec![BindingInfo {
                    uri: "sip:anna@10.0.0.5".into(),
                    expires: 600
                }]
            }
        );
        assert_eq!(
            r.poll_event(),
            Some(RegistrarEvent::Registered {
                agent: AgentId::from("anna")
            })
        );
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(600)));
        // Refresh with the same nonce (next nc) and a too-long expiry: clamped.
        let t1 = t0 + Duration::from_secs(100);
        let out = phone.register(&mut r, t1, contact("sip:anna@10.0.0.5", Some(99999)), None);
        assert_eq!(out.status_code(), 200);
        assert_eq!(r.poll_timeout(), Some(t1 + Duration::from_secs(3600)));
        assert_eq!(r.poll_event(), None);
        // Expiry.
        let t2 = t1 + Duration::from_secs(3600);
        r.handle_timeout(t2);
        assert!(r.contact_for(t2, &AgentId::from("anna")).is_none());
        assert_eq!(
            r.poll_event(),
            Some(RegistrarEvent::Unregistered {
                agent: AgentId::from("anna")
            })
        );
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn too_brief_wildcard_and_several_contacts() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let mut phone = Phone::new("anna", "c1");
        let out = phone.register(&mut r, t0, contact("sip:a@1", Some(10)), None);
        assert_eq!(out, RegisterOutcome::IntervalTooBrief { min_expires: 60 });
        for (i, uri) in ["sip:a@1", "sip:a@2", "sip:a@3", "sip:a@4"]
            .iter()
            .enumerate()
        {
            let now = t0 + Duration::from_secs(i as u64);
            assert_eq!(
                phone
                    .register(&mut r, now, contact(uri, None), None)
                    .status_code(),
                200
            );
        }
        let now = t0 + Duration::from_secs(10);
        let agent = AgentId::from("anna");
        // Three kept, the oldest dropped; the newest is rung.
        let uris: Vec<_> = r
            .bindings(now, &agent)
            .iter()
            .map(|b| b.uri.clone())
            .collect();
        assert_eq!(uris, ["sip:a@2", "sip:a@3", "sip:a@4"]);
        assert_eq!(
            r.contact_for(now, &agent).map(|b| b.uri.as_str()),
            Some("sip:a@4")
        );
        // Removing one contact with expires=0.
        phone.register(&mut r, now, contact("sip:a@4", Some(0)), None);
        assert_eq!(
            r.contact_for(now, &agent).map(|b| b.uri.as_str()),
            Some("sip:a@3")
        );
        // `*` needs Expires: 0.
        let out = phone.register(&mut r, now, Contacts::Wildcard, Some(60));
        assert_eq!(out.status_code(), 400);
        let out = phone.register(&mut r, now, Contacts::Wildcard, Some(0));
        assert_eq!(
            out,
            RegisterOutcome::Ok {
                agent: agent.clone(),
                bindings: vec![]
            }
        );
        assert!(r.contact_for(now, &agent).is_none());
    }

    #[test]
    fn out_of_order_cseq_fails_and_other_aor_is_forbidden() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let mut phone = Phone::new("anna", "c1");
        assert_eq!(
            phone
                .register(&mut r, t0, contact("sip:a@1", None), None)
                .status_code(),
            200
        );
        phone.cseq = 0;
        assert_eq!(
            phone.register(&mut r, t0, contact("sip:a@1", None), None),
            RegisterOutcome::OutOfOrder
        );
        // Anna's credentials for Ole's address of record.
        let mut request_uri_phone = Phone::new("anna", "c2");
        request_uri_phone.register(&mut r, t0, Contacts::None, None);
        let auth = request_uri_phone.authorization();
        let request = RegisterRequest {
            aor_user: "ole",
            request_uri: "sip:hotline.example",
            contacts: contact("sip:x@1", None),
            expires: None,
            call_id: "c2",
            cseq: 9,
            source: "127.0.0.1:5062".parse().expect("addr"),
            transport: Transport::Udp,
            authorization: auth.as_deref(),
        };
        assert_eq!(
            r.handle_register(t0, &request, &Store),
            RegisterOutcome::Forbidden
        );
        // Garbage Authorization is a 400, an unknown user a plain challenge.
        let mut bad = request.clone();
        bad.authorization = Some("Digest username=\"");
        assert_eq!(r.handle_register(t0, &bad, &Store).status_code(), 400);
    }

    #[test]
    fn wrong_password_is_challenged_again_not_stale() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let mut phone = Phone::new("nobody", "c1");
        let out = phone.register(&mut r, t0, contact("sip:a@1", None), None);
        match out {
            RegisterOutcome::Unauthorized { challenges } => {
                assert!(challenges.iter().all(|c| !c.stale))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn failures(r: &mut Registrar) -> Vec<RegisterFailure> {
        std::iter::from_fn(|| r.poll_event())
            .filter_map(|e| match e {
                RegistrarEvent::Failed(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_challenge_left_unanswered_is_reported_once_per_phone() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        // A phone that logs in properly leaves nothing to wake up for but
        // its binding.
        let mut anna = Phone::new("anna", "c1");
        let out = anna.register(&mut r, t0, contact("sip:anna@1", Some(600)), None);
        assert_eq!(out.status_code(), 200);
        assert!(failures(&mut r).is_empty());
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(600)));
        // Ole's phone is challenged and never answers (as a phone does that
        // refuses the challenge's algorithm).
        r.set_algorithms(&[Algorithm::Sha256, Algorithm::Md5]);
        let ole_phone: SocketAddr = "127.0.0.1:5062".parse().expect("addr");
        // `register_once` keeps no challenge: every REGISTER goes unanswered.
        let mut ole = Phone::new("ole", "c9");
        let mut ask = |r: &mut Registrar, now: Instant| {
            ole.register_once(r, now, contact("sip:ole@1", None), Some(600))
        };
        assert_eq!(ask(&mut r, t0).status_code(), 401);
        let deadline = t0 + Duration::from_secs(32);
        assert_eq!(r.poll_timeout(), Some(deadline));
        r.handle_timeout(deadline - Duration::from_millis(1));
        assert!(failures(&mut r).is_empty());
        r.handle_timeout(deadline);
        let reported = failures(&mut r);
        assert_eq!(reported.len(), 1, "{reported:?}");
        let f = &reported[0];
        assert_eq!(
            (f.reason, f.agent.clone(), f.source, f.first),
            (
                FailureReason::NoAnswer,
                Some(AgentId::from("ole")),
                ole_phone,
                true
            )
        );
        assert!(f.detail.contains("SHA-256"), "{}", f.detail);
        // Its retries are counted, not reported as new; a retransmission is
        // the transaction layer's, so the registrar sees each retry once.
        for i in 1..4u32 {
            let now = t0 + Duration::from_secs(60 * u64::from(i));
            ask(&mut r, now);
            r.handle_timeout(now + Duration::from_secs(32));
            let again = failures(&mut r);
            assert_eq!(again.len(), 1);
            assert!(!again[0].first);
        }
    }

    #[test]
    fn wrong_passwords_and_strangers_are_reported_with_their_reason() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let mut phone = Phone::new("anna", "c1");
        phone.password = "guess";
        let out = phone.register(&mut r, t0, contact("sip:a@1", None), None);
        assert_eq!(out.status_code(), 401);
        let reported = failures(&mut r);
        assert!(!reported.is_empty());
        assert!(reported
            .iter()
            .all(|f| f.reason == FailureReason::WrongPassword));
        assert_eq!(reported.iter().filter(|f| f.first).count(), 1);
        // Answered (wrongly): nothing is left waiting for an answer.
        r.handle_timeout(t0 + Duration::from_secs(60));
        assert!(failures(&mut r).is_empty());
        // The right password: registered, and the next failure is news.
        phone.password = "secret";
        assert_eq!(
            phone
                .register(&mut r, t0, contact("sip:a@1", None), None)
                .status_code(),
            200
        );
        phone.password = "guess";
        phone.register(&mut r, t0, contact("sip:a@1", None), None);
        assert!(failures(&mut r).iter().any(|f| f.first));
        // A username nobody has.
        let mut nobody = Phone::new("nobody", "c2");
        nobody.register(&mut r, t0, contact("sip:n@1", None), None);
        let reported = failures(&mut r);
        assert!(reported
            .iter()
            .any(|f| f.reason == FailureReason::UnknownUser && f.agent.is_none()));
        // An expired nonce that the phone never retries.
        let mut ole = Phone::new("ole", "c3");
        ole.register(&mut r, t0, contact("sip:o@1", None), None);
        failures(&mut r);
        let later = t0 + Duration::from_secs(400);
        let out = ole.register_once(&mut r, later, contact("sip:o@1", None), None);
        assert!(
            matches!(&out, RegisterOutcome::Unauthorized { challenges } if challenges.iter().all(|c| c.stale))
        );
        r.handle_timeout(later + Duration::from_secs(32));
        let reported = failures(&mut r);
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].reason, FailureReason::StaleNonce);
    }
}
