//! Requests to the core loop from the HTTP side, the signal handlers and the
//! file watchers. The core loop owns every call; anyone else asks it over a
//! bounded channel and, for reads, waits on a oneshot reply.

use crate::call::{CallSummary, FlowBundle};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Requests from the HTTP side and the signal handlers to the core loop.
pub enum Control {
    Calls(oneshot::Sender<Vec<CallSummary>>),
    /// Swap in a new, already validated flow version.
    Swap(Arc<FlowBundle>),
    /// Swap in reloaded agent accounts.
    SwapAgents(crate::acd::AgentDirectory),
    Agents(oneshot::Sender<Vec<crate::call::AgentSummary>>),
    Queues(oneshot::Sender<Vec<crate::call::QueueSummary>>),
    Callbacks(oneshot::Sender<Vec<crate::call::CallbackSummary>>),
    /// Transfer a waiting or connected caller (an outside number, another
    /// queue or language).
    Transfer {
        call: u64,
        target: crate::call::TransferTarget,
        reply: oneshot::Sender<Result<crate::call::TransferStarted, crate::call::TransferError>>,
    },
    SetAgentState {
        agent: String,
        state: String,
        reason: Option<String>,
        reply: oneshot::Sender<Result<crate::call::AgentStateReply, crate::call::AgentStateError>>,
    },
}
