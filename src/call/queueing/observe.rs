//! What the queue part of a call reports: queue log rows, counts for the
//! metrics, live events, the figures flow conditions branch on, and the API's
//! view of the queues. Nothing here changes what a caller hears.

use super::super::{CallManager, MediaControl, Observation};
use super::AgentLeg;
use crate::acd::QueueService;
use crate::acd::{AgentId, AgentState, LeaveOutcome, QueueExit, RequestedState};
use crate::cdr::{queue_event as qe, QueueEvent, QueueEventInfo};
use crate::events::LiveEvent;
use crate::ids::CallId;
use crate::language::Language;
use crate::time::Now;

/// A queue as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueSummary {
    pub name: String,
    pub waiting: usize,
    pub oldest_wait_seconds: Option<f64>,
    pub estimated_wait_seconds: Option<f64>,
    pub mean_handle_seconds: f64,
    /// Callers waiting per language.
    pub languages: std::collections::BTreeMap<String, usize>,
    /// For each language the queue takes, the estimated wait of a caller
    /// joining now; null when nobody who could take the call is serving.
    pub estimated_wait_by_language: std::collections::BTreeMap<String, Option<f64>>,
    /// Callbacks waiting in their place per language (counted in `waiting`
    /// and `languages` too: they hold places like callers on the line).
    pub callbacks_by_language: std::collections::BTreeMap<String, usize>,
}

/// The `state` label values of `hotline_agents`.
pub const AGENT_STATES: [&str; 6] = [
    "logged_out",
    "ready",
    "paused",
    "ringing",
    "on_call",
    "wrap_up",
];

impl<M: MediaControl, Q: QueueService> CallManager<M, Q> {
    /// A caller left a queue: counted, logged and told to the wallboard.
    pub(in crate::call) fn record_left(&mut self, now: Now, key: CallId, exit: &QueueExit) {
        let QueueExit {
            queue,
            language,
            outcome: left,
            waited,
            prediction,
            ..
        } = exit;
        let (queue, language, waited) = (queue.as_str(), *language, *waited);
        let label = match left {
            LeaveOutcome::Answered { .. } => "answered",
            LeaveOutcome::Abandoned { .. } => "abandoned",
            LeaveOutcome::TimedOut => "timed_out",
            // Not a wait that ended for the caller: a flow exit. Still observed
            // so that offered = answered + abandoned + timed_out holds.
            LeaveOutcome::NoAgents | LeaveOutcome::Left => "timed_out",
        };
        self.observe(Observation::QueueLeft {
            queue: queue.to_string(),
            language,
            outcome: label,
            waited,
            answered: matches!(left, LeaveOutcome::Answered { .. }),
            abandoned: match left {
                LeaveOutcome::Abandoned { short } => Some(*short),
                _ => None,
            },
            prediction: *prediction,
        });
        if let LeaveOutcome::Abandoned { short } = left {
            self.emit_live(LiveEvent::Abandoned {
                at: now.unix_seconds(),
                call: key.0,
                queue: queue.to_string(),
                language: Some(language),
                waited_seconds: waited.as_secs_f64(),
                short: *short,
            });
        }
        tracing::info!(
            call = key.0,
            queue,
            language = language.code(),
            outcome = label,
            waited_s = waited.as_secs_f64(),
            "left queue"
        );
        let (kind, reason) = match left {
            LeaveOutcome::Answered { .. } => (qe::ANSWERED, None),
            LeaveOutcome::Abandoned { .. } => (qe::ABANDONED, None),
            LeaveOutcome::TimedOut => (qe::TIMED_OUT, None),
            LeaveOutcome::NoAgents => (qe::EXITED, Some("no_agents")),
            LeaveOutcome::Left => (qe::EXITED, Some("left")),
        };
        let mut e = self.queue_event(now, key, kind, queue, language);
        e.wait_ms = Some(i64::try_from(waited.as_millis()).unwrap_or(i64::MAX));
        e.reason = reason.map(str::to_string);
        match left {
            LeaveOutcome::Answered { agent } => e.agent = Some(agent.as_str().to_string()),
            LeaveOutcome::Abandoned { .. } => {
                e.position = self
                    .calls
                    .get(&key)
                    .and_then(|c| c.queued.as_ref())
                    .and_then(|q| q.position_at_exit)
                    .map(|p| i64::try_from(p).unwrap_or(i64::MAX));
            }
            _ => {}
        }
        self.log_queue(e);
    }

    /// An agent's state, or the state it asked for, moved: told to the
    /// wallboard; states entered are logged too.
    pub(super) fn agent_state_changed(
        &mut self,
        now: Now,
        agent: &AgentId,
        state: &AgentState,
        pending: Option<&RequestedState>,
        entered: bool,
    ) {
        tracing::info!(agent = %agent.as_str(), state = state.label(),
            pending = pending.map(|p| p.label()), entered, "agent state");
        self.agents_generation = self.agents_generation.wrapping_add(1);
        if entered {
            // The queue log and gauges follow states entered.
            self.log_agent_state(now, agent, state);
        }
        let skills = self
            .agents
            .get(agent)
            .map(|a| a.skills.keys().map(|l| l.code().to_string()).collect())
            .unwrap_or_default();
        self.emit_live(LiveEvent::AgentState {
            at: now.unix_seconds(),
            agent: agent.as_str().to_string(),
            state: state.label().to_string(),
            pending: pending.map(|p| p.label().to_string()),
            reason: match state {
                AgentState::Paused { reason } => Some(reason.clone()),
                _ => None,
            },
            skills,
        });
    }

    /// A queue log row for `key`'s call, stamped now.
    pub(in crate::call) fn queue_event(
        &self,
        now: Now,
        key: CallId,
        kind: &str,
        queue: &str,
        language: Language,
    ) -> QueueEvent {
        QueueEvent {
            call_id: self
                .calls
                .get(&key)
                .map(|c| super::super::record_id(c, key))
                .or_else(|| self.callback_record_id(key)),
            queue: Some(queue.to_string()),
            language: Some(language.code().to_string()),
            ..QueueEvent::new(kind, now.wall_ms())
        }
    }

    /// Logs a queue event with `info` for a queued caller; their language.
    pub(super) fn log_queued_event(
        &mut self,
        now: Now,
        key: CallId,
        event: &str,
        info: QueueEventInfo<'_>,
    ) -> Option<Language> {
        let q = self.calls.get(&key)?.queued.as_ref()?;
        let (queue, language) = (q.queue.clone(), q.language);
        let mut e = self.queue_event(now, key, event, &queue, language);
        e.set_info(info);
        self.log_queue(e);
        Some(language)
    }

    pub(super) fn log_offer_failed(
        &mut self,
        now: Now,
        key: CallId,
        agent: &AgentId,
        queue: &str,
        language: Language,
        code: u16,
    ) {
        let kind = if code == 408 {
            qe::RING_NOANSWER
        } else {
            qe::OFFER_FAILED
        };
        let mut e = self.queue_event(now, key, kind, queue, language);
        e.agent = Some(agent.as_str().to_string());
        e.code = Some(code);
        self.log_queue(e);
    }

    pub(super) fn log_leg_failed(&mut self, now: Now, key: CallId, leg: &AgentLeg, code: u16) {
        let language = self
            .calls
            .get(&key)
            .and_then(|c| c.queued.as_ref())
            .map(|q| q.language);
        if let Some(language) = language {
            self.log_offer_failed(now, key, &leg.agent, &leg.queue, language, code);
        }
    }

    fn log_agent_state(&mut self, now: Now, agent: &AgentId, state: &AgentState) {
        let mut e = QueueEvent::new(qe::AGENT_STATE, now.wall_ms());
        e.agent = Some(agent.as_str().to_string());
        e.state = Some(state.label().to_string());
        match state {
            AgentState::Paused { reason } => e.reason = Some(reason.clone()),
            AgentState::Ringing { call } | AgentState::OnCall { call }
                if call.node == self.node =>
            {
                e.call_id = self
                    .calls
                    .get(&call.call)
                    .map(|c| super::super::record_id(c, call.call));
            }
            _ => {}
        }
        self.log_queue(e);
    }

    /// The queue and agent figures flow conditions branch on; the gauges'
    /// figures moved too.
    pub(in crate::call) fn refresh_flow_env(&mut self, now: Now) {
        self.gauges_changed = true;
        self.env.queues.clear();
        let stats = self.queue.stats(now);
        for q in &stats {
            self.env.queues.insert(
                q.name.clone(),
                crate::flow::QueueState {
                    waiting: q.waiting as u32,
                    estimated_wait: q.estimated_wait.unwrap_or_default(),
                },
            );
        }
        self.whole_stats = Some(stats);
        // Ready agents are counted again only when an agent's state moved.
        let local = self.queue.is_local();
        if local && self.agents_in_env == self.agents_generation {
            return;
        }
        self.agents_in_env = self.agents_generation;
        self.env.agents_ready.clear();
        for agent in self.queue.agents() {
            if agent.state.label() == "ready" {
                for language in agent.skills.keys() {
                    *self
                        .env
                        .agents_ready
                        .entry(language.code().to_string())
                        .or_default() += 1;
                }
            }
        }
    }

    /// Every queue, for the API and the wallboard.
    pub fn queue_summaries(&self, now: Now) -> Vec<QueueSummary> {
        self.queue
            .stats(now)
            .into_iter()
            .map(|q| QueueSummary {
                waiting: q.waiting,
                oldest_wait_seconds: q.oldest_wait.map(|d| d.as_secs_f64()),
                estimated_wait_seconds: q.estimated_wait.map(|d| d.as_secs_f64()),
                mean_handle_seconds: q.mean_handle_time.as_secs_f64(),
                languages: q
                    .lines
                    .iter()
                    .map(|l| (l.language.code().to_string(), l.waiting))
                    .collect(),
                estimated_wait_by_language: self
                    .queue
                    .join_estimates(now, &q.name)
                    .into_iter()
                    .map(|(l, d)| (l.code().to_string(), d.map(|d| d.as_secs_f64())))
                    .collect(),
                // The queue's own count: the whole cluster's in a cluster.
                callbacks_by_language: q
                    .lines
                    .iter()
                    .filter(|l| l.callbacks > 0)
                    .map(|l| (l.language.code().to_string(), l.callbacks))
                    .collect(),
                name: q.name,
            })
            .collect()
    }
}
