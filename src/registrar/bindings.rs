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

use super::digest::{parse_authorization, Challenge, DigestAuth, Ha1Set, Verdict};
use crate::acd::AgentId;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a REGISTER arrived; where to send the INVITE back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

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
}

/// The registrar: digest authentication plus bindings per agent.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    auth: DigestAuth,
    bindings: HashMap<AgentId, Vec<Binding>>,
    events: VecDeque<RegistrarEvent>,
}

impl Registrar {
    pub fn new(config: RegistrarConfig, auth: DigestAuth) -> Registrar {
        Registrar {
            config,
            auth,
            bindings: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// Which digest algorithms to challenge with (see `digest::algorithms_for`).
    pub fn set_algorithms(&mut self, algorithms: Vec<crate::registrar::Algorithm>) {
        self.auth.set_algorithms(algorithms);
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
        let Some(header) = request.authorization else {
            return Err(self.challenge(now, false));
        };
        let Ok(response) = parse_authorization(header) else {
            return Err(RegisterOutcome::BadRequest("Malformed Authorization"));
        };
        // An unknown user is answered like a wrong password, so usernames
        // cannot be probed.
        let Some((agent, ha1s)) = store.credentials(&response.username) else {
            return Err(self.challenge(now, false));
        };
        match self
            .auth
            .verify(now, &response, "REGISTER", Some(request.request_uri), &ha1s)
        {
            Verdict::Accepted => {}
            Verdict::Stale(_) => return Err(self.challenge(now, true)),
            Verdict::Rejected(_) => return Err(self.challenge(now, false)),
        }
        match store.credentials(request.aor_user) {
            Some((owner, _)) if owner == agent => Ok(agent),
            _ => Err(RegisterOutcome::Forbidden),
        }
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

    /// When the next binding expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bindings
            .values()
            .flat_map(|bs| bs.iter().map(|b| b.expires_at))
            .min()
    }

    /// Drops expired bindings.
    pub fn handle_timeout(&mut self, now: Instant) {
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
    /// last phone goes away).
    pub fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::digest::{ha1, Algorithm, DigestConfig};

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
        call_id: &'static str,
        cseq: u32,
        nc: u32,
        challenge: Option<Challenge>,
    }

    impl Phone {
        fn new(user: &'static str, call_id: &'static str) -> Phone {
            Phone {
                user,
                call_id,
                cseq: 0,
                nc: 0,
                challenge: None,
            }
        }

        fn authorization(&mut self) -> Option<String> {
            let c = self.challenge.as_ref()?;
            self.nc += 1;
            let ha1 = ha1(Algorithm::Md5, self.user, &c.realm, "secret");
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

        fn register(
            &mut self,
            registrar: &mut Registrar,
            now: Instant,
            contacts: Contacts,
            expires: Option<u32>,
        ) -> RegisterOutcome {
            for attempt in 0..4 {
                self.cseq += 1;
                let auth = self.authorization();
                let request = RegisterRequest {
                    aor_user: self.user,
                    request_uri: "sip:hotline.example",
                    contacts: contacts.clone(),
                    expires,
                    call_id: self.call_id,
                    cseq: self.cseq,
                    source: "127.0.0.1:5062".parse().expect("addr"),
                    transport: Transport::Udp,
                    authorization: auth.as_deref(),
                };
                let outcome = registrar.handle_register(now, &request, &Store);
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
}
