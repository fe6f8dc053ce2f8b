//! Where the call core's outputs go: call records and queue log rows to the
//! journal writer, live events to the bus behind `/ws`, counts and gauges to
//! the metrics. The core itself touches none of them.

use crate::acd::QueueService;
use crate::call::{CallManager, MediaControl, Output};
use crate::cdr::RecordSink;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::time::Now;
use std::sync::Arc;

pub struct Sinks {
    pub metrics: Arc<Metrics>,
    /// `None` when records are not kept (the journal could not be opened).
    pub records: Option<RecordSink>,
    pub events: EventBus,
    /// Cluster mode: this node's live events also go to the other nodes.
    pub cluster: Option<tokio::sync::mpsc::Sender<crate::events::LiveEvent>>,
}

impl Sinks {
    /// Delivers everything the core has for the shell, then the gauges if
    /// their figures moved and the SIP endpoint's counters. Called after
    /// every input.
    pub fn deliver<M: MediaControl, Q: QueueService>(
        &self,
        now: Now,
        manager: &mut CallManager<M, Q>,
    ) {
        while let Some(output) = manager.poll_output() {
            match output {
                Output::Record(record) => {
                    if let Some(sink) = &self.records {
                        sink.record(record);
                    }
                }
                Output::Leg(leg) => {
                    if let Some(sink) = &self.records {
                        sink.leg(leg);
                    }
                }
                Output::Callback(callback) => {
                    if let Some(sink) = &self.records {
                        sink.callback(callback);
                    }
                }
                Output::QueueLog(event) => {
                    if let Some(sink) = &self.records {
                        sink.queue_event(event);
                    }
                }
                Output::Live(event) => {
                    if let Some(cluster) = &self.cluster {
                        // Best effort: a wallboard elsewhere may miss one.
                        let _ = cluster.try_send(event.clone());
                    }
                    self.events.publish(event)
                }
                Output::Count(observation) => self.metrics.observe(now.wall, &observation),
            }
        }
        if let Some(gauges) = manager.poll_gauges(now) {
            self.metrics.set_gauges(now.wall, &gauges);
        }
        // Cheap when nothing moved: one comparison.
        self.metrics.set_sip_stats(manager.sip_stats());
    }
}
