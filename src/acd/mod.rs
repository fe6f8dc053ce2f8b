//! Skills-based queueing: agents and their states, queues with escalation
//! tiers, the router that offers callers to agents, and wait estimates.
//!
//! Everything here is sans-IO: inputs carry `now`, outputs are polled. The SIP
//! and media side rings agents and plays announcements on the core's word.

pub mod agents;
pub mod config;
pub mod estimate;
pub mod from_flows;
pub mod queue;
pub mod router;
pub mod service;
pub mod yaml;

#[cfg(test)]
mod tests;

pub use agents::{
    feature_code, ha1, Agent, AgentDirectory, AgentId, AgentRuntime, AgentState, RequestEffect,
    RequestedState,
};
pub use config::{EscalationTier, NoAgentsPolicy, QueueConfig, QueuesConfig};
pub use estimate::{ErrorSummary, PredictionError};
pub use queue::{JoinOptions, MessageTiming};
pub use router::{Acd, AgentView, LineStats, QueueStats, RestoredAgent};
pub use service::{
    CallbackPlace, CancelReason, JoinRequest, Leave, LeaveOutcome, NotJoined, OfferResult,
    PlaceHeld, QueueAction, QueueError, QueueExit, QueueService,
};
pub use yaml::SourceError;

pub use crate::ids::CallId;
