//! The ids that cross module boundaries.
//!
//! A call has one id, [`CallId`], from the INVITE that starts it to its call
//! record: the SIP endpoint assigns it, the media side and the call layer key
//! their state by it. The queue engine names callers by [`CallerId`], the
//! call's id qualified by the node that owns the call, so that a queue shared
//! by several nodes never confuses two callers. Agents are named by their
//! configured id ([`AgentId`]), never by a position in a list.

use std::fmt;
use std::sync::Arc;

/// One inbound call (one INVITE dialog), unique within its node while the
/// process lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A hotline process: `node_id` from the configuration in cluster mode,
/// [`NodeId::LOCAL`] for a single node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// The name of a node that runs alone.
    pub const LOCAL: &'static str = "local";

    pub fn new(name: &str) -> NodeId {
        NodeId(Arc::from(name))
    }

    pub fn local() -> NodeId {
        NodeId::new(NodeId::LOCAL)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A caller as the queue engine knows them: unique across nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallerId {
    /// The node that answered the call and holds its media.
    pub node: NodeId,
    pub call: CallId,
}

impl CallerId {
    pub fn new(node: &NodeId, call: CallId) -> CallerId {
        CallerId {
            node: node.clone(),
            call,
        }
    }
}

impl fmt::Display for CallerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.call.0)
    }
}

/// One offer of a caller to an agent. An answer is accepted only for the
/// offer that is live now (fencing): a late answer to a withdrawn offer
/// carries an older id and is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfferId(pub u64);

/// An agent's stable id, as written in `agents.yaml` and used in the API.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct AgentId(Arc<str>);

impl AgentId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for AgentId {
    fn from(s: &str) -> AgentId {
        AgentId(Arc::from(s))
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
