//! What the call core hands to the shell: records for the journal, live
//! events for `/ws`, and counts for the metrics (the SIP endpoint's are read
//! with [`CallManager::sip_stats`]). The core touches no file,
//! channel or registry itself; the shell drains [`CallManager::poll_output`]
//! after every input and delivers each output where it belongs.

use super::{CallManager, MediaControl, Stage};
use crate::acd::QueueService;
use crate::acd::{AgentView, PredictionError, QueueStats};
use crate::cdr::{CallRecord, CallbackRecord, LegRecord, QueueEvent};
use crate::events::LiveEvent;
use crate::language::Language;
use crate::sip::EndpointStats;
use crate::time::Now;
use std::time::Duration;

/// One thing for the shell to deliver.
#[derive(Debug, Clone)]
pub enum Output {
    /// A call record, for the journal and the database.
    Record(CallRecord),
    /// A row of the queue log, for the journal and the database.
    QueueLog(QueueEvent),
    /// A leg we placed (a transfer), for the journal and the database.
    Leg(LegRecord),
    /// A callback as it now stands, for the journal and the database.
    Callback(CallbackRecord),
    /// A live event, for `/ws` and the wallboard.
    Live(LiveEvent),
    /// Something counted by the metrics and the wallboard's day totals.
    Count(Observation),
}

/// What the metrics side counts, as the call core saw it happen.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A call ended (or was refused) with this `hotline_calls_total` outcome.
    CallEnded {
        outcome: &'static str,
    },
    LanguageChosen(Language),
    /// A caller left a queue after `waited`.
    QueueLeft {
        queue: String,
        language: Language,
        /// The `outcome` label of `hotline_queue_wait_seconds`.
        outcome: &'static str,
        waited: Duration,
        answered: bool,
        /// Abandoned (hung up while waiting); `short` under the threshold.
        abandoned: Option<bool>,
        prediction: Option<PredictionError>,
    },
    /// The languages the line offers now (opening hours).
    LanguagesOffered(Vec<Language>),
    /// Local midnight passed: the wallboard's day starts again.
    DayStarted {
        day: chrono::NaiveDate,
    },
    /// A registration failed, or a challenge went unanswered
    /// (`hotline_register_failures_total{reason}`).
    RegisterFailed {
        reason: &'static str,
    },
    /// A number was not dialled (`hotline_trunk_refusals_total{reason}`):
    /// the toll-fraud guard, or no free channel.
    TrunkRefused {
        reason: &'static str,
    },
    /// A transfer connected, failed or was refused (`hotline_transfers_total`).
    TransferEnded {
        result: &'static str,
    },
    /// A callback was requested, attempted, connected or failed
    /// (`hotline_callbacks_total`); a connected one after `waited` since
    /// the caller first joined (`hotline_callback_wait_seconds`).
    Callback {
        event: &'static str,
        language: Language,
        waited: Option<Duration>,
    },
}

/// The figures behind the gauges, read by the metrics side when they moved.
#[derive(Debug, Clone)]
pub struct CoreGauges {
    /// Calls per stage (`hotline_calls_active{stage}`).
    pub calls_active: Vec<(Stage, u64)>,
    pub queues: Vec<QueueStats>,
    /// Every agent, when an agent's state moved since the last read (`None`:
    /// `hotline_agents` stays as it is).
    pub agents: Option<Vec<AgentView>>,
    /// (trunk, channels in use, limit) (`hotline_trunk_channels`).
    pub trunks: Vec<(String, u32, u32)>,
    /// Callbacks waiting, by language (`hotline_callbacks_pending`).
    pub callbacks_pending: Vec<(Language, usize)>,
}

impl<M: MediaControl, Q: QueueService> CallManager<M, Q> {
    /// The next record, event or count for the shell to deliver.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The gauges' figures, when they moved since the last call (else `None`).
    pub fn poll_gauges(&mut self, now: Now) -> Option<CoreGauges> {
        if !std::mem::take(&mut self.gauges_changed) {
            return None;
        }
        let local = self.queue.is_local();
        // The figures the flows' view was just built from, when they are
        // this node's alone: queue statistics are not computed twice.
        let queues = match self.whole_stats.take() {
            Some(stats) if local => stats,
            _ => self.queue.local_stats(now),
        };
        let agents_moved = self.agents_generation != self.agents_in_gauges;
        self.agents_in_gauges = self.agents_generation;
        Some(CoreGauges {
            calls_active: Stage::ALL
                .iter()
                .map(|&s| (s, self.stage_counts[s as usize]))
                .collect(),
            queues,
            agents: (agents_moved || !local).then(|| self.queue.local_agents()),
            trunks: self.trunks.channels(),
            callbacks_pending: self.callbacks_pending(),
        })
    }

    /// The SIP endpoint's counters (requests, responses, malformed
    /// messages, admission refusals) since it started: plain figures for the
    /// metrics side, which adds what moved since it last read them.
    pub fn sip_stats(&self) -> &EndpointStats {
        self.endpoint.stats()
    }

    pub(super) fn emit_live(&mut self, event: LiveEvent) {
        self.outputs.push_back(Output::Live(event));
    }

    pub(super) fn observe(&mut self, observation: Observation) {
        self.outputs.push_back(Output::Count(observation));
    }

    pub(super) fn count_call_ended(&mut self, outcome: &'static str) {
        self.observe(Observation::CallEnded { outcome });
    }

    /// Hands a queue event to the records writer (journal first).
    pub(super) fn log_queue(&mut self, event: QueueEvent) {
        self.outputs.push_back(Output::QueueLog(event));
    }
}
