//! Agents' phones: REGISTER with digest authentication, registration as
//! logging in, feature codes dialled from the phone, and state changes from the
//! API. The registrar and the ACD are sans-IO; this is their glue.

use super::{CallManager, MediaControl, Observation};
use crate::acd::QueueService;
use crate::acd::{feature_code, AgentId, RequestEffect, RequestedState};
use crate::registrar::{
    ContactParam, Contacts, RegisterFailure, RegisterOutcome, RegisterRequest as Registration,
    RegistrarEvent,
};
use crate::sip::{IncomingCall, RegisterRequest};
use crate::time::Now;
use serde::Serialize;

/// An agent as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentSummary {
    pub id: String,
    pub name: String,
    pub state: String,
    /// The state asked for during a call or wrap-up (`paused`, `logged_out`),
    /// taken when it ends.
    pub pending: Option<String>,
    /// Pause reason, when paused.
    pub reason: Option<String>,
    pub skills: std::collections::BTreeMap<String, u8>,
    /// Whether a phone is registered for the agent now.
    pub registered: bool,
    /// Seconds since the agent last became free, when ready.
    pub idle_seconds: Option<f64>,
}

/// The answer to a state change from the API: the state now, and the one
/// that follows the call or wrap-up the agent is in, if one was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentStateReply {
    pub state: String,
    pub pending: Option<String>,
}

/// Why a state change from the API was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentStateError {
    #[error("no agent `{0}`")]
    UnknownAgent(String),
    #[error("{0}")]
    Refused(String),
}

impl<M: MediaControl, Q: QueueService> CallManager<M, Q> {
    /// A REGISTER from a softphone.
    pub(super) fn register(&mut self, now: Now, request: RegisterRequest) {
        let contacts = if request.wildcard {
            Contacts::Wildcard
        } else if request.contacts.is_empty() {
            Contacts::None
        } else {
            Contacts::List(
                request
                    .contacts
                    .iter()
                    .map(|c| ContactParam {
                        uri: c.uri.clone(),
                        expires: c.expires,
                    })
                    .collect(),
            )
        };
        let registration = Registration {
            aor_user: &request.to_user,
            request_uri: &request.request_uri,
            contacts,
            expires: request.expires,
            call_id: &request.call_id,
            cseq: request.cseq,
            source: request.source,
            transport: request.transport,
            authorization: request.authorization.as_deref(),
        };
        let outcome = self
            .registrar
            .handle_register(now.mono, &registration, &*self.agents);
        let code = outcome.status_code();
        if let RegisterOutcome::Ok { agent, .. } = &outcome {
            // Where the phone can be rung now: shared when the queue is.
            let contact = self.phone_contact(now, agent);
            self.queue.phone_bound(now, agent, contact);
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        match &outcome {
            RegisterOutcome::Ok { agent, bindings } => {
                for b in bindings {
                    headers.push((
                        "Contact".into(),
                        format!("<{}>;expires={}", b.uri, b.expires),
                    ));
                }
                tracing::info!(agent = %agent.as_str(), source = %request.source, contacts = bindings.len(), "register");
            }
            RegisterOutcome::Unauthorized { challenges } => {
                for c in challenges {
                    headers.push(("WWW-Authenticate".into(), c.header_value()));
                }
            }
            RegisterOutcome::IntervalTooBrief { min_expires } => {
                headers.push(("Min-Expires".into(), min_expires.to_string()));
            }
            // Logged once per phone as a failure (`drain_registrar`).
            RegisterOutcome::Forbidden => {}
            RegisterOutcome::BadRequest(why) => {
                tracing::info!(source = %request.source, reason = why, "register malformed");
            }
            RegisterOutcome::OutOfOrder => {}
        }
        self.endpoint
            .respond_register(now.mono, request.handle, code, headers);
        self.drain_registrar(now);
    }

    /// Registration is logging in: the first binding makes the agent ready
    /// (or whatever `ready_on_register` says), the last one gone logs out.
    pub(super) fn drain_registrar(&mut self, now: Now) {
        while let Some(event) = self.registrar.poll_event() {
            let (agent, requested) = match event {
                RegistrarEvent::Registered { agent } => {
                    let state = if self.ready_on_register {
                        RequestedState::Ready
                    } else {
                        RequestedState::Paused {
                            reason: "registered".to_string(),
                        }
                    };
                    (agent, state)
                }
                RegistrarEvent::Unregistered { agent } => {
                    self.queue.phone_bound(now, &agent, None);
                    (agent, RequestedState::LoggedOut)
                }
                RegistrarEvent::Failed(failure) => {
                    self.register_failed(&failure);
                    continue;
                }
            };
            if let Err(e) = self.queue.agent_state(now, &agent, requested) {
                tracing::warn!(agent = %agent.as_str(), error = %e, "agent state from registration refused");
            }
        }
        self.drain_queue(now);
    }

    /// The agent's phone as the registrar knows it now.
    pub(super) fn phone_contact(
        &self,
        now: Now,
        agent: &AgentId,
    ) -> Option<crate::registrar::PhoneContact> {
        self.registrar
            .contact_for(now.mono, agent)
            .map(|b| crate::registrar::PhoneContact {
                uri: b.uri.clone(),
                source: b.source,
                tcp: b.transport == crate::sip::Transport::Tcp,
            })
    }

    /// Counts a failed registration; logs the first for its user and source.
    fn register_failed(&mut self, failure: &RegisterFailure) {
        self.observe(Observation::RegisterFailed {
            reason: failure.reason.label(),
        });
        if !failure.first {
            return;
        }
        let agent = failure.agent.as_ref().map_or("", AgentId::as_str);
        tracing::warn!(
            user = %failure.user,
            agent,
            source = %failure.source,
            reason = failure.reason.label(),
            detail = failure.detail,
            "registration failed: {}; this phone's next failures are counted, not logged",
            failure.reason.describe()
        );
    }

    /// An INVITE to `*1`, `*2` or `*9` from a registered agent's phone sets its
    /// state. The phone is recognised by the address it registered from and
    /// its SIP user; the call is answered with 200 by nothing: it is refused
    /// with a status that phones show (`480` with a reason naming the state).
    /// Returns false when the INVITE is not a feature code.
    pub(super) fn feature_code(&mut self, now: Now, incoming: &IncomingCall) -> bool {
        let Some(requested) = feature_code(&incoming.dialled) else {
            return false;
        };
        let Some(agent) = self.phone_agent(now, incoming) else {
            tracing::warn!(user = %incoming.from_user, source = %incoming.source, "feature code from an unregistered phone");
            self.endpoint.reject(now.mono, incoming.call, 403);
            return true;
        };
        let label = requested.label();
        match self.queue.agent_state(now, &agent, requested) {
            Ok(effect) => {
                // During wrap-up the state asked for follows it: say both.
                let text = match (&effect, self.queue.agent_state_of(&agent)) {
                    (RequestEffect::Deferred, Some(current)) => format!(
                        "agent {} is now {}; {label} after it",
                        agent.as_str(),
                        current.label()
                    ),
                    _ => format!("agent {} is now {label}", agent.as_str()),
                };
                tracing::info!(agent = %agent.as_str(), state = label, effect = ?effect,
                    warning = %text, "feature code");
                self.endpoint.reject_with(
                    now.mono,
                    incoming.call,
                    480,
                    vec![("Warning".into(), format!("399 hotline \"{text}\""))],
                );
            }
            Err(e) => {
                tracing::info!(agent = %agent.as_str(), error = %e, "feature code refused");
                self.endpoint.reject(now.mono, incoming.call, 403);
            }
        }
        self.drain_queue(now);
        true
    }

    /// Sets an agent's state (HTTP API). On a call or in wrap-up, a pause
    /// or logging out waits for it to end: the reply says so in `pending`.
    pub fn set_agent_state(
        &mut self,
        now: Now,
        agent: &str,
        state: &str,
        reason: Option<String>,
    ) -> Result<AgentStateReply, AgentStateError> {
        let requested = match state {
            "ready" => RequestedState::Ready,
            "paused" => RequestedState::Paused {
                reason: reason.unwrap_or_else(|| "paused".to_string()),
            },
            "logged_out" => RequestedState::LoggedOut,
            other => {
                return Err(AgentStateError::Refused(format!(
                    "state `{other}` cannot be set: use ready, paused or logged_out"
                )))
            }
        };
        let id = AgentId::from(agent);
        if self.agents.get(&id).is_none() {
            return Err(AgentStateError::UnknownAgent(agent.to_string()));
        }
        let result = self
            .queue
            .agent_state(now, &id, requested)
            .map_err(|e| AgentStateError::Refused(e.to_string()));
        self.drain_queue(now);
        result?;
        Ok(AgentStateReply {
            state: self
                .queue
                .agent_state_of(&id)
                .map(|s| s.label().to_string())
                .unwrap_or_default(),
            pending: self
                .queue
                .agent_pending_of(&id)
                .map(|p| p.label().to_string()),
        })
    }

    /// Every agent, for the API and the wallboard.
    pub fn agent_summaries(&self, now: Now) -> Vec<AgentSummary> {
        self.queue
            .agents()
            .into_iter()
            .map(|a| AgentSummary {
                registered: self.registrar.contact_for(now.mono, &a.id).is_some(),
                id: a.id.as_str().to_string(),
                name: a.name.clone(),
                state: a.state.label().to_string(),
                pending: a.pending.as_ref().map(|p| p.label().to_string()),
                reason: match &a.state {
                    crate::acd::AgentState::Paused { reason } => Some(reason.clone()),
                    _ => None,
                },
                skills: a
                    .skills
                    .iter()
                    .map(|(l, p)| (l.code().to_string(), *p))
                    .collect(),
                idle_seconds: a
                    .idle_since
                    .map(|t| now.mono.saturating_duration_since(t).as_secs_f64()),
            })
            .collect()
    }
}
