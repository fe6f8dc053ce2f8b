//! The cluster-wide figures the dispatcher publishes: every queue's waiting
//! callers and estimates, and every agent's state. Other nodes answer the API,
//! the gauges and the wallboard from the latest view.

use crate::acd::{AgentState, AgentView, LineStats, QueueStats};
use crate::cluster::wire::{WireAgentState, WireRequest};
use crate::ids::AgentId;
use crate::language::Language;
use crate::time::Now;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// Unix ms when the dispatcher took it.
    pub at_ms: i64,
    /// The node incarnation that dispatches.
    pub dispatcher: String,
    pub queues: Vec<ViewQueue>,
    pub agents: Vec<ViewAgent>,
    /// Node names with a live heartbeat.
    pub nodes: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ViewQueue {
    pub name: String,
    pub waiting: usize,
    pub oldest_wait_ms: Option<u64>,
    pub estimated_wait_ms: Option<u64>,
    pub lines: Vec<(Language, usize, Option<u64>)>,
    pub mean_handle_ms: u64,
    /// For each language the queue takes, the wait of a caller joining now.
    pub join_estimates: Vec<(Language, Option<u64>)>,
    /// Callbacks among the waiting, by language (absent from older nodes).
    #[serde(default)]
    pub callbacks: Vec<(Language, usize)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewAgent {
    pub id: String,
    pub name: String,
    pub state: WireAgentState,
    pub pending: Option<WireRequest>,
    pub idle_since_ms: Option<i64>,
    pub skills: BTreeMap<Language, u8>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ViewQueue {
    pub fn from_stats(q: &QueueStats, join_estimates: Vec<(Language, Option<Duration>)>) -> Self {
        ViewQueue {
            name: q.name.clone(),
            waiting: q.waiting,
            oldest_wait_ms: q.oldest_wait.map(ms),
            estimated_wait_ms: q.estimated_wait.map(ms),
            lines: q
                .lines
                .iter()
                .map(|l| (l.language, l.waiting, l.estimated_wait.map(ms)))
                .collect(),
            mean_handle_ms: ms(q.mean_handle_time),
            join_estimates: join_estimates
                .into_iter()
                .map(|(l, d)| (l, d.map(ms)))
                .collect(),
            callbacks: q
                .lines
                .iter()
                .filter(|l| l.callbacks > 0)
                .map(|l| (l.language, l.callbacks))
                .collect(),
        }
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            name: self.name.clone(),
            waiting: self.waiting,
            oldest_wait: self.oldest_wait_ms.map(Duration::from_millis),
            estimated_wait: self.estimated_wait_ms.map(Duration::from_millis),
            lines: self
                .lines
                .iter()
                .map(|(language, waiting, estimate)| LineStats {
                    language: *language,
                    waiting: *waiting,
                    estimated_wait: estimate.map(Duration::from_millis),
                    callbacks: self
                        .callbacks
                        .iter()
                        .find(|(l, _)| l == language)
                        .map_or(0, |(_, n)| *n),
                })
                .collect(),
            mean_handle_time: Duration::from_millis(self.mean_handle_ms),
            prediction_errors: Default::default(),
        }
    }
}

impl ViewAgent {
    pub fn from_view(a: &AgentView, now: Now) -> ViewAgent {
        ViewAgent {
            id: a.id.as_str().to_string(),
            name: a.name.clone(),
            state: WireAgentState::from_state(&a.state, now),
            pending: a.pending.as_ref().map(WireRequest::from),
            idle_since_ms: a.idle_since.map(|t| now.wall_ms_at(t)),
            skills: a.skills.clone(),
        }
    }

    pub fn view(&self, now: Now) -> AgentView {
        AgentView {
            id: AgentId::from(self.id.as_str()),
            name: self.name.clone(),
            state: self.state.state(now),
            pending: self.pending.as_ref().map(WireRequest::requested),
            idle_since: self
                .idle_since_ms
                .map(|ms| now.mono_at(crate::cluster::wire::wall(ms))),
            skills: self.skills.clone(),
        }
    }

    pub fn agent_state(&self, now: Now) -> AgentState {
        self.state.state(now)
    }
}
