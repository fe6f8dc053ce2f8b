//! How a call ended: the `outcome` of its call record and the label of
//! `hotline_calls_total`. A leaf, so that the records, the metrics and the
//! wallboard's day totals all name outcomes from one place.

pub const ANSWERED: &str = "answered";
pub const ABANDONED_IVR: &str = "abandoned_ivr";
pub const ABANDONED_QUEUE: &str = "abandoned_queue";
pub const TIMED_OUT: &str = "timed_out";
pub const CLOSED: &str = "closed";
pub const REJECTED: &str = "rejected";
pub const FAILED: &str = "failed";
/// Served by the IVR alone: the flow reached its end (information given,
/// goodbye said) without a queue. An addition to the contract's list.
pub const COMPLETED: &str = "completed";
/// Cluster mode: the caller's node died with the call (recorded by the node
/// that found it dead).
pub const NODE_LOST: &str = "node_lost";
/// Put through to an outside number by the flow's `transfer` step.
pub const TRANSFERRED: &str = "transferred";
/// The caller booked a callback that keeps their place, then hung up.
pub const CALLBACK: &str = "callback";
pub const ALL: [&str; 11] = [
    ANSWERED,
    COMPLETED,
    ABANDONED_IVR,
    ABANDONED_QUEUE,
    TIMED_OUT,
    CLOSED,
    REJECTED,
    FAILED,
    NODE_LOST,
    TRANSFERRED,
    CALLBACK,
];
