//! Cluster mode: several nodes share one set of queues through a store
//! (Redis). See `docs/cluster.md` for the topology and what a failure costs.
//!
//! - `wire.rs`: the messages nodes exchange through the store;
//! - `shared.rs`: a node's queue engine ([`SharedQueue`], a
//!   [`crate::acd::QueueService`]), sans-IO;
//! - `view.rs`: the cluster-wide figures the dispatcher publishes.

pub mod dispatcher;
pub mod shared;
pub mod view;
pub mod wire;

pub use shared::{SharedQueue, StoreInput, StoreOp};
pub use store::{ClusterError, ClusterLink, ClusterSetup};
pub use view::ClusterView;
pub mod store;

#[cfg(test)]
mod sim;
