//! Agents: who they are (`agents.yaml`) and what they are doing (the state
//! machine the router drives).
//!
//! The file holds HA1 digests, never passwords: [`ha1`] makes them. `Debug` of
//! an agent redacts them, so they never reach a log.

use super::yaml::{check_proficiency, read_file, SourceError};
use crate::digest::{self, Algorithm, Ha1Set};
use crate::duration::{self, Written};
use crate::ids::CallerId;
use crate::language::Language;
use crate::registrar::CredentialStore;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

/// Most agents one file may list.
pub const MAX_AGENTS: usize = 10_000;
/// Longest wrap-up an agent's own setting may give: a day.
const MAX_WRAP_UP: Duration = Duration::from_secs(86_400);

pub use crate::ids::AgentId;

/// HA1 for `agents.yaml` (`hotline agents hash`): hex of
/// H(username:realm:password).
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    digest::ha1(algorithm, username, realm, password)
}

/// One agent account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    pub sip_username: String,
    pub credentials: Ha1Set,
    /// Language → proficiency 1-10.
    pub skills: BTreeMap<Language, u8>,
    /// Optional topic → proficiency 1-10.
    pub topics: BTreeMap<String, u8>,
    /// Overrides the queue's wrap-up time.
    pub wrap_up: Option<Duration>,
    /// Queues this agent serves; empty means every queue its skills fit.
    pub queues: Vec<String>,
}

impl Agent {
    pub fn proficiency(&self, language: Language) -> Option<u8> {
        self.skills.get(&language).copied()
    }

    pub fn serves_queue(&self, queue: &str) -> bool {
        self.queues.is_empty() || self.queues.iter().any(|q| q == queue)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    agents: Vec<RawAgent>,
}

fn default_realm() -> String {
    "hotline".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    id: Spanned<String>,
    name: String,
    sip_username: Spanned<String>,
    #[serde(default)]
    ha1: Option<Spanned<String>>,
    #[serde(default)]
    ha1_sha256: Option<Spanned<String>>,
    skills: Spanned<BTreeMap<Language, Spanned<u8>>>,
    #[serde(default)]
    topics: BTreeMap<String, Spanned<u8>>,
    #[serde(default)]
    wrap_up: Option<Spanned<Written>>,
    #[serde(default)]
    queues: Vec<String>,
}

/// Every agent, looked up by id or SIP username. Immutable: a reload builds a
/// new one.
#[derive(Clone, Debug, Default)]
pub struct AgentDirectory {
    realm: String,
    agents: Vec<Agent>,
    by_id: HashMap<AgentId, usize>,
    by_username: HashMap<String, usize>,
}

impl AgentDirectory {
    /// Reads and checks `agents.yaml`.
    pub fn load(path: &Path) -> Result<AgentDirectory, Vec<SourceError>> {
        let text = read_file(path).map_err(|e| vec![e])?;
        AgentDirectory::parse(path, &text)
    }

    /// Checks the text of `agents.yaml`; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<AgentDirectory, Vec<SourceError>> {
        let raw: RawFile =
            serde_saphyr::from_str(text).map_err(|e| vec![SourceError::from_yaml(file, &e)])?;
        let mut errors = Vec::new();
        let mut agents = Vec::new();
        if raw.agents.len() > MAX_AGENTS {
            return Err(vec![SourceError::file(
                file,
                format!("more than {MAX_AGENTS} agents"),
            )]);
        }
        let mut ids: HashMap<String, ()> = HashMap::new();
        let mut usernames: HashMap<String, ()> = HashMap::new();
        for a in raw.agents {
            match convert_agent(file, a, &mut ids, &mut usernames) {
                Ok(agent) => agents.push(agent),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        AgentDirectory::new(&raw.realm, agents).map_err(|m| vec![SourceError::file(file, m)])
    }

    /// Builds a directory from agents already checked (tests, tools).
    pub fn new(realm: &str, agents: Vec<Agent>) -> Result<AgentDirectory, String> {
        let mut by_id = HashMap::new();
        let mut by_username = HashMap::new();
        for (i, a) in agents.iter().enumerate() {
            if by_id.insert(a.id.clone(), i).is_some() {
                return Err(format!("agent id `{}` appears twice", a.id));
            }
            if by_username.insert(a.sip_username.clone(), i).is_some() {
                return Err(format!("sip_username `{}` appears twice", a.sip_username));
            }
        }
        Ok(AgentDirectory {
            realm: realm.to_string(),
            agents,
            by_id,
            by_username,
        })
    }

    /// The digest realm the HA1s were made for.
    /// The agents `keep` keeps, in the same realm.
    pub fn filtered(&self, keep: impl Fn(&Agent) -> bool) -> Result<AgentDirectory, String> {
        let agents: Vec<Agent> = self.iter().filter(|a| keep(a)).cloned().collect();
        AgentDirectory::new(self.realm(), agents)
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn get(&self, id: &AgentId) -> Option<&Agent> {
        self.by_id.get(id).and_then(|&i| self.agents.get(i))
    }

    pub fn by_sip_username(&self, username: &str) -> Option<&Agent> {
        self.by_username
            .get(username)
            .and_then(|&i| self.agents.get(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Agent> {
        self.agents.iter()
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

impl CredentialStore for AgentDirectory {
    fn credentials(&self, sip_username: &str) -> Option<(AgentId, Ha1Set)> {
        self.by_sip_username(sip_username)
            .map(|a| (a.id.clone(), a.credentials.clone()))
    }
}

fn convert_agent(
    file: &Path,
    a: RawAgent,
    ids: &mut HashMap<String, ()>,
    usernames: &mut HashMap<String, ()>,
) -> Result<Agent, Vec<SourceError>> {
    let mut errors = Vec::new();
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if !valid_name(&a.id.value) {
        errors.push(SourceError::at(
            file,
            a.id.referenced,
            "agent id must be 1-64 letters, digits, `-`, `_` or `.`",
        ));
    } else if ids.insert(a.id.value.clone(), ()).is_some() {
        errors.push(SourceError::at(
            file,
            a.id.referenced,
            format!("agent id `{}` appears twice", a.id.value),
        ));
    }
    if !valid_name(&a.sip_username.value) {
        errors.push(SourceError::at(
            file,
            a.sip_username.referenced,
            "sip_username must be 1-64 letters, digits, `-`, `_` or `.`",
        ));
    } else if usernames.insert(a.sip_username.value.clone(), ()).is_some() {
        errors.push(SourceError::at(
            file,
            a.sip_username.referenced,
            format!("sip_username `{}` appears twice", a.sip_username.value),
        ));
    }
    let mut credentials = Ha1Set::default();
    match Ha1Set::new(
        a.ha1.as_ref().map(|s| s.value.as_str()),
        a.ha1_sha256.as_ref().map(|s| s.value.as_str()),
    ) {
        Ok(set) if set.is_empty() => errors.push(SourceError::at(
            file,
            a.id.referenced,
            "agent needs `ha1` or `ha1_sha256` (make one with `hotline agents hash`)",
        )),
        Ok(set) => credentials = set,
        Err(e) => {
            let at = if e.algorithm == "MD5" {
                a.ha1.as_ref()
            } else {
                a.ha1_sha256.as_ref()
            };
            let loc = at.map_or(a.id.referenced, |s| s.referenced);
            errors.push(SourceError::at(file, loc, e.to_string()));
        }
    }
    let mut skills = BTreeMap::new();
    if a.skills.value.is_empty() {
        errors.push(SourceError::at(
            file,
            a.skills.referenced,
            "agent needs at least one language skill",
        ));
    }
    for (language, p) in &a.skills.value {
        match check_proficiency(file, p) {
            Ok(v) => {
                skills.insert(*language, v);
            }
            Err(e) => errors.push(e),
        }
    }
    let mut topics = BTreeMap::new();
    for (topic, p) in &a.topics {
        match check_proficiency(file, p) {
            Ok(v) => {
                topics.insert(topic.clone(), v);
            }
            Err(e) => errors.push(e),
        }
    }
    let wrap_up = a.wrap_up.as_ref().map(|w| w.value.0);
    if let Some(at) = a.wrap_up.as_ref().filter(|w| w.value.0 > MAX_WRAP_UP) {
        errors.push(SourceError::at(
            file,
            at.referenced,
            format!(
                "wrap_up {} is longer than {}",
                duration::format(at.value.0),
                duration::format(MAX_WRAP_UP)
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Agent {
        id: AgentId::from(a.id.value.as_str()),
        name: a.name,
        sip_username: a.sip_username.value,
        credentials,
        skills,
        topics,
        wrap_up,
        queues: a.queues,
    })
}

/// What an agent is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentState {
    LoggedOut,
    Ready,
    Paused { reason: String },
    Ringing { call: CallerId },
    OnCall { call: CallerId },
    WrapUp { until: Instant },
}

impl AgentState {
    /// The label used in metrics and the API.
    pub fn label(&self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged_out",
            AgentState::Ready => "ready",
            AgentState::Paused { .. } => "paused",
            AgentState::Ringing { .. } => "ringing",
            AgentState::OnCall { .. } => "on_call",
            AgentState::WrapUp { .. } => "wrap_up",
        }
    }

    /// Logged in and not paused: counted as serving for wait estimates.
    pub fn is_serving(&self) -> bool {
        !matches!(self, AgentState::LoggedOut | AgentState::Paused { .. })
    }
}

/// A state the agent (or a supervisor) asks for, over the API, the WebSocket
/// or a feature code on the phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestedState {
    Ready,
    Paused { reason: String },
    LoggedOut,
}

impl RequestedState {
    /// The label of the state asked for, as `AgentState::label` names it.
    pub fn label(&self) -> &'static str {
        match self {
            RequestedState::Ready => "ready",
            RequestedState::Paused { .. } => "paused",
            RequestedState::LoggedOut => "logged_out",
        }
    }
}

/// The state an agent asks for by dialling a feature code from the phone:
/// `*1` ready, `*2` paused, `*9` logged out.
pub fn feature_code(dialled: &str) -> Option<RequestedState> {
    match dialled.trim() {
        "*1" => Some(RequestedState::Ready),
        "*2" => Some(RequestedState::Paused {
            reason: "paused from phone".to_string(),
        }),
        "*9" => Some(RequestedState::LoggedOut),
        _ => None,
    }
}

/// What a request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestEffect {
    /// The state changed now.
    Applied,
    /// The agent is on a call or in wrap-up: the state follows when that ends.
    Deferred,
    /// Already so.
    Unchanged,
    /// The agent was ringing: the offer of this call is withdrawn, and the
    /// state changed now.
    OfferWithdrawn(CallerId),
}

/// A transition the state machine does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("agent cannot go from {from} by {event}")]
pub struct InvalidTransition {
    pub from: &'static str,
    pub event: &'static str,
}

/// One agent's live state, with what routing needs: since when it has been
/// idle, a state asked for during a call, and a short hold-off after a missed
/// offer when missed offers do not pause.
#[derive(Clone, Debug)]
pub struct AgentRuntime {
    state: AgentState,
    idle_since: Option<Instant>,
    pending: Option<RequestedState>,
    not_before: Option<Instant>,
    answered_at: Option<Instant>,
}

impl Default for AgentRuntime {
    fn default() -> Self {
        AgentRuntime::new()
    }
}

impl AgentRuntime {
    pub fn new() -> AgentRuntime {
        AgentRuntime {
            state: AgentState::LoggedOut,
            idle_since: None,
            pending: None,
            not_before: None,
            answered_at: None,
        }
    }

    /// An agent as a shared store last saw it (a dispatcher taking over):
    /// its state, since when it has been idle, the state it asked for, and
    /// when its call was answered.
    pub fn restored(
        state: AgentState,
        idle_since: Option<Instant>,
        pending: Option<RequestedState>,
        answered_at: Option<Instant>,
    ) -> AgentRuntime {
        AgentRuntime {
            state,
            idle_since,
            pending,
            not_before: None,
            answered_at,
        }
    }

    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// When the agent last became free (for longest-idle routing).
    pub fn idle_since(&self) -> Option<Instant> {
        self.idle_since
    }

    /// The state asked for during a call or wrap-up, taken when it ends.
    pub fn pending(&self) -> Option<&RequestedState> {
        self.pending.as_ref()
    }

    /// When the current call was answered.
    pub fn answered_at(&self) -> Option<Instant> {
        self.answered_at
    }

    /// Ready, and not held off after a missed offer.
    pub fn is_available(&self, now: Instant) -> bool {
        self.state == AgentState::Ready && self.not_before.is_none_or(|t| t <= now)
    }

    /// When a hold-off ends, if one is running.
    pub fn hold_off_until(&self) -> Option<Instant> {
        self.not_before
    }

    fn become_free(&mut self, now: Instant, requested: Option<RequestedState>) {
        self.answered_at = None;
        match requested {
            Some(RequestedState::Paused { reason }) => self.state = AgentState::Paused { reason },
            Some(RequestedState::LoggedOut) => self.state = AgentState::LoggedOut,
            Some(RequestedState::Ready) | None => {
                self.state = AgentState::Ready;
                self.idle_since = Some(now);
            }
        }
    }

    /// Applies a requested state.
    pub fn request(&mut self, now: Instant, requested: RequestedState) -> RequestEffect {
        let same = matches!(
            (&self.state, &requested),
            (AgentState::Ready, RequestedState::Ready)
                | (AgentState::LoggedOut, RequestedState::LoggedOut)
        ) || matches!(
            (&self.state, &requested),
            (AgentState::Paused { reason: a }, RequestedState::Paused { reason: b }) if a == b
        );
        if same {
            if requested == RequestedState::Ready {
                self.not_before = None;
            }
            return RequestEffect::Unchanged;
        }
        match self.state.clone() {
            AgentState::LoggedOut | AgentState::Paused { .. } | AgentState::Ready => {
                self.not_before = None;
                self.pending = None;
                self.become_free(now, Some(requested));
                RequestEffect::Applied
            }
            AgentState::Ringing { call } => {
                if requested == RequestedState::Ready {
                    self.pending = None;
                    return RequestEffect::Unchanged;
                }
                self.pending = None;
                self.become_free(now, Some(requested));
                RequestEffect::OfferWithdrawn(call)
            }
            AgentState::OnCall { .. } => {
                self.pending = (requested != RequestedState::Ready).then_some(requested);
                RequestEffect::Deferred
            }
            AgentState::WrapUp { .. } => {
                if requested == RequestedState::Ready {
                    // Done with the notes early.
                    self.pending = None;
                    self.become_free(now, None);
                    RequestEffect::Applied
                } else {
                    self.pending = Some(requested);
                    RequestEffect::Deferred
                }
            }
        }
    }

    /// The router offers a call: only to an available agent.
    pub fn offer(&mut self, now: Instant, call: CallerId) -> Result<(), InvalidTransition> {
        if !self.is_available(now) {
            return Err(self.invalid("offer"));
        }
        self.state = AgentState::Ringing { call };
        Ok(())
    }

    /// The offer ended without an answer. `pause` pauses with that reason;
    /// otherwise the agent is ready again, held off until `hold_off_until`
    /// and moved to the back of the idle line.
    pub fn offer_failed(
        &mut self,
        now: Instant,
        pause: Option<String>,
        hold_off_until: Instant,
    ) -> Result<(), InvalidTransition> {
        if !matches!(self.state, AgentState::Ringing { .. }) {
            return Err(self.invalid("offer failed"));
        }
        match pause {
            Some(reason) => self.state = AgentState::Paused { reason },
            None => {
                self.state = AgentState::Ready;
                self.idle_since = Some(now);
                self.not_before = Some(hold_off_until);
            }
        }
        Ok(())
    }

    /// The offer was withdrawn (the caller hung up): no fault of the agent's,
    /// so it keeps its place in the idle line.
    pub fn offer_withdrawn(&mut self) -> Result<(), InvalidTransition> {
        if !matches!(self.state, AgentState::Ringing { .. }) {
            return Err(self.invalid("offer withdrawn"));
        }
        self.state = AgentState::Ready;
        Ok(())
    }

    pub fn answered(&mut self, now: Instant) -> Result<CallerId, InvalidTransition> {
        let AgentState::Ringing { call } = &self.state else {
            return Err(self.invalid("answer"));
        };
        let call = call.clone();
        self.state = AgentState::OnCall { call: call.clone() };
        self.answered_at = Some(now);
        Ok(call)
    }

    /// The call ended: wrap-up for `wrap_up`, or free at once when it is zero.
    pub fn call_ended(&mut self, now: Instant, wrap_up: Duration) -> Result<(), InvalidTransition> {
        if !matches!(self.state, AgentState::OnCall { .. }) {
            return Err(self.invalid("call end"));
        }
        if wrap_up.is_zero() {
            let pending = self.pending.take();
            self.become_free(now, pending);
        } else {
            self.state = AgentState::WrapUp {
                until: now.checked_add(wrap_up).unwrap_or(now),
            };
        }
        Ok(())
    }

    /// Wrap-up time is over.
    pub fn wrap_up_done(&mut self, now: Instant) -> Result<(), InvalidTransition> {
        if !matches!(self.state, AgentState::WrapUp { .. }) {
            return Err(self.invalid("wrap-up end"));
        }
        let pending = self.pending.take();
        self.become_free(now, pending);
        Ok(())
    }

    fn invalid(&self, event: &'static str) -> InvalidTransition {
        InvalidTransition {
            from: self.state.label(),
            event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(n: u64) -> CallerId {
        CallerId::new(&crate::ids::NodeId::local(), crate::ids::CallId(n))
    }

    const MD5: &str = "0123456789abcdef0123456789abcdef";

    fn parse(text: &str) -> Result<AgentDirectory, Vec<SourceError>> {
        AgentDirectory::parse(Path::new("agents.yaml"), text)
    }

    #[test]
    fn loads_agents() {
        let text = format!(
            "realm: hotline\nagents:\n  - id: anna\n    name: Anna\n    sip_username: anna\n    \
             ha1: {MD5}\n    skills: {{nb: 10, en: 8}}\n    topics: {{housing: 5}}\n    \
             wrap_up: 30s\n"
        );
        let dir = parse(&text).expect("valid");
        let anna = dir.get(&AgentId::from("anna")).expect("anna");
        assert_eq!(anna.proficiency(Language::En), Some(8));
        assert_eq!(anna.wrap_up, Some(Duration::from_secs(30)));
        assert!(dir.credentials("anna").is_some());
        assert!(!format!("{anna:?}").contains(MD5));
    }

    #[test]
    fn errors_have_positions() {
        let text = format!(
            "agents:\n  - id: anna\n    name: Anna\n    sip_username: anna\n    ha1: {MD5}\n    \
             skills: {{nb: 11}}\n"
        );
        let errors = parse(&text).expect_err("invalid");
        assert_eq!(errors.len(), 1);
        let shown = errors[0].to_string();
        assert!(shown.starts_with("agents.yaml:6:"), "{shown}");
        assert!(shown.contains("outside 1-10"), "{shown}");

        let text = "agents:\n  - id: anna\n    name: Anna\n    sip_username: anna\n    \
             ha1: abc\n    skills: {xx: 3}\n";
        let errors = parse(text).expect_err("invalid");
        let shown = errors[0].to_string();
        assert!(shown.starts_with("agents.yaml:6:"), "{shown}");

        let text = format!(
            "agents:\n  - id: anna\n    name: A\n    sip_username: a\n    ha1: {MD5}\n    \
             skills: {{nb: 1}}\n  - id: anna\n    name: B\n    sip_username: a\n    \
             ha1: nothex\n    skills: {{nb: 1}}\n"
        );
        let errors = parse(&text).expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].starts_with("agents.yaml:7:"), "{shown:?}");
        assert!(shown[2].starts_with("agents.yaml:10:"), "{shown:?}");

        let errors = parse("agents:\n  - id: x\n    nmae: y\n").expect_err("invalid");
        assert!(
            errors[0].to_string().starts_with("agents.yaml:3:"),
            "{:?}",
            errors
        );
        assert!(parse("agents: [").is_err());
    }

    #[test]
    fn wrap_up_is_written_like_every_other_duration() {
        let agent = |wrap_up: &str| {
            format!(
                "agents:\n  - id: anna\n    name: A\n    sip_username: anna\n    ha1: {MD5}\n    \
                 skills: {{nb: 1}}\n    wrap_up: {wrap_up}\n"
            )
        };
        let dir = parse(&agent("1m30s")).expect("valid");
        let anna = dir.get(&AgentId::from("anna")).expect("anna");
        assert_eq!(anna.wrap_up, Some(Duration::from_secs(90)));
        // A bare number is not taken as seconds: the message says what to write.
        let shown = parse(&agent("30")).expect_err("no unit")[0].to_string();
        assert!(shown.starts_with("agents.yaml:7:14: "), "{shown}");
        assert!(
            shown.contains("needs a unit") && shown.contains("`30s`"),
            "{shown}"
        );
        let shown = parse(&agent("25h")).expect_err("too long")[0].to_string();
        assert!(shown.starts_with("agents.yaml:7:14: "), "{shown}");
        assert!(shown.contains("wrap_up 25h is longer than 24h"), "{shown}");
    }

    #[test]
    fn feature_codes() {
        assert_eq!(feature_code("*1"), Some(RequestedState::Ready));
        assert!(matches!(
            feature_code("*2"),
            Some(RequestedState::Paused { .. })
        ));
        assert_eq!(feature_code("*9"), Some(RequestedState::LoggedOut));
        assert_eq!(feature_code("112"), None);
    }

    #[test]
    fn state_machine() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut a = AgentRuntime::new();
        assert!(a.offer(t0, caller(1)).is_err());
        assert_eq!(
            a.request(s(1), RequestedState::Ready),
            RequestEffect::Applied
        );
        assert_eq!(a.idle_since(), Some(s(1)));
        a.offer(s(2), caller(1)).expect("ready");
        assert!(a.offer(s(2), caller(2)).is_err());
        a.answered(s(3)).expect("ringing");
        let pause = RequestedState::Paused {
            reason: "lunch".into(),
        };
        assert_eq!(a.request(s(4), pause.clone()), RequestEffect::Deferred);
        a.call_ended(s(5), Duration::from_secs(10))
            .expect("on call");
        assert_eq!(a.state(), &AgentState::WrapUp { until: s(15) });
        a.wrap_up_done(s(15)).expect("wrap-up");
        assert_eq!(
            a.state(),
            &AgentState::Paused {
                reason: "lunch".into()
            }
        );
        assert_eq!(
            a.request(s(16), RequestedState::Ready),
            RequestEffect::Applied
        );
        a.offer(s(17), caller(3)).expect("ready");
        assert_eq!(
            a.request(s(18), RequestedState::LoggedOut),
            RequestEffect::OfferWithdrawn(caller(3))
        );
        assert_eq!(a.state(), &AgentState::LoggedOut);
        // A missed offer without pausing holds the agent off for a while.
        a.request(s(20), RequestedState::Ready);
        a.offer(s(20), caller(4)).expect("ready");
        a.offer_failed(s(30), None, s(35)).expect("ringing");
        assert!(!a.is_available(s(31)));
        assert!(a.is_available(s(35)));
        assert_eq!(a.idle_since(), Some(s(30)));
    }
}
