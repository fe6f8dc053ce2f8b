//! Every Prometheus metric the service exports, in one place.
//!
//! Names and labels are part of the external contract (see `docs/metrics.md`).
//! Label values are always bounded sets: stages, outcomes, language codes, queue
//! names from the flow files, SIP method names (unknown ones become `other`) and
//! response codes. Caller numbers and call ids are never labels.

use crate::call::{CoreGauges, Observation, AGENT_STATES};
use crate::sip::EndpointStats;
use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Mutex;

/// Wait-time buckets (seconds): fine around the usual service-level thresholds
/// (10, 20, 30, 60 s) and wide enough for pandemic-style waits of an hour and more.
pub const WAIT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
    900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0, 7200.0,
];

/// Pacer wake-up lateness buckets (seconds): from 0.1 ms (a good wake-up) to
/// one whole 20 ms frame (a frame late).
pub const PACER_LATE_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02];

/// Estimate error buckets (seconds, actual − predicted), symmetric around 0.
pub const ESTIMATE_ERROR_BUCKETS: &[f64] = &[
    -600.0, -300.0, -180.0, -120.0, -60.0, -30.0, -10.0, 0.0, 10.0, 30.0, 60.0, 120.0, 180.0,
    300.0, 600.0,
];

/// The registry and every metric. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    pub calls_active: IntGaugeVec,
    pub calls_total: IntCounterVec,
    pub language_selected_total: IntCounterVec,
    pub queue_waiting: IntGaugeVec,
    pub queue_oldest_wait_seconds: GaugeVec,
    pub queue_estimated_wait_seconds: GaugeVec,
    pub queue_wait_seconds: HistogramVec,
    pub queue_answered_total: IntCounterVec,
    pub queue_abandoned_total: IntCounterVec,
    /// Abandons sooner than the queue's short-abandon threshold (also in
    /// `queue_abandoned_total`).
    pub queue_short_abandoned_total: IntCounterVec,
    /// Actual minus predicted wait of answered callers.
    pub queue_estimate_error_seconds: HistogramVec,
    /// 1 when a live flow offers the language and its line is open now.
    pub language_offered: IntGaugeVec,
    pub agents: IntGaugeVec,
    pub sip_requests_total: IntCounterVec,
    pub sip_responses_total: IntCounterVec,
    pub flow_reloads_total: IntCounterVec,
    /// Messages that could not be parsed (answered 400 or dropped), by what happened.
    pub sip_malformed_total: IntCounterVec,
    /// SIP requests turned away by admission control, by reason.
    pub sip_rejected_total: IntCounterVec,
    /// Failed or abandoned registrations, by reason.
    pub register_failures_total: IntCounterVec,
    /// Numbers not dialled, by reason (the toll-fraud guard, full trunks).
    pub trunk_refusals_total: IntCounterVec,
    /// Transfers through a trunk, by result.
    pub transfers_total: IntCounterVec,
    /// Channels in use per trunk, and each trunk's limit.
    pub trunk_channels: IntGaugeVec,
    pub trunk_channels_limit: IntGaugeVec,
    /// Callbacks by event (requested, attempted, connected, failed) and language.
    pub callbacks_total: IntCounterVec,
    /// From joining the queue to talking to an agent, for callbacks that connected.
    pub callback_wait_seconds: HistogramVec,
    /// Callbacks waiting now, by language.
    pub callbacks_pending: IntGaugeVec,
    /// RTP sent by the media engine (paced and relayed), added about once a second.
    pub rtp_packets_sent_total: IntCounter,
    pub rtp_packets_received_total: IntCounter,
    pub rtp_packets_relayed_total: IntCounter,
    /// RTP not sent: socket buffer full or send error.
    pub rtp_send_drops_total: IntCounter,
    /// How late the pacer thread woke after its deadline.
    pub rtp_pacer_late_seconds: Histogram,
    /// Call records stored in the database.
    pub cdr_written_total: IntCounter,
    /// Failed database writes (the records stay in the journal).
    pub cdr_write_failures_total: IntCounter,
    /// Call records lost: the journal was full or could not be written.
    pub cdr_dropped_total: IntCounter,
    /// Call records handed to the writer and not yet processed.
    pub cdr_queue_depth: IntGauge,
    /// Time from a call's end to its record being stored, for the last batch.
    pub cdr_lag_seconds: Gauge,
    /// Queue log rows stored in the database (same writer as call records).
    pub queue_log_written_total: IntCounter,
    /// Queue log rows lost: the journal was full or could not be written.
    pub queue_log_dropped_total: IntCounter,
    /// Not Prometheus: the wallboard's totals since local midnight, counted
    /// where the counters above are (see `crate::today`).
    pub today: crate::today::Today,
    /// Not Prometheus: the wallboard's last hour, per minute and language
    /// (see `crate::history`).
    pub last_hour: crate::history::LastHour,
    /// Cluster mode: nodes with a live heartbeat.
    pub cluster_nodes_alive: IntGauge,
    /// Cluster mode: 1 while the store (Redis) answers.
    pub cluster_redis_up: IntGauge,
    /// Cluster mode: 1 while this node serves its callers alone.
    pub cluster_degraded: IntGauge,
    /// Cluster mode: 1 on the node that dispatches.
    pub cluster_dispatcher: IntGauge,
    /// Cluster mode: callers lost with a node that died (recorded here).
    pub cluster_callers_lost_total: IntCounter,
    /// Cluster mode: dispatcher decisions the store refused (the caller or
    /// agent had moved on meanwhile).
    pub cluster_offer_conflicts_total: IntCounter,
    /// Cluster mode: times the store was found to have lost its data.
    pub cluster_store_resets_total: IntCounter,
    /// Cluster mode: writes to the store, by result.
    pub cluster_store_ops_total: IntCounterVec,
    /// The SIP endpoint's figures as of the last `set_sip_stats`.
    sip_seen: Mutex<EndpointStats>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::for_node(None)
    }

    /// The metrics of a node: in cluster mode every series carries
    /// `node="<node_id>"`, so that dashboards can sum and compare nodes.
    pub fn for_node(node: Option<&str>) -> Metrics {
        let labels = node.map(|n| std::iter::once(("node".to_string(), n.to_string())).collect());
        let registry = match Registry::new_custom(None, labels) {
            Ok(r) => r,
            Err(_) => Registry::new(),
        };
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("metric definitions are static and valid");
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric names are unique");
                m
            }};
        }
        let calls_active = reg!(IntGaugeVec::new(
            Opts::new("hotline_calls_active", "Calls in progress, by stage"),
            &["stage"]
        ));
        let calls_total = reg!(IntCounterVec::new(
            Opts::new("hotline_calls_total", "Calls ended, by outcome"),
            &["outcome"]
        ));
        let language_selected_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_language_selected_total",
                "Languages chosen by callers"
            ),
            &["language"]
        ));
        let queue_waiting = reg!(IntGaugeVec::new(
            Opts::new("hotline_queue_waiting", "Callers waiting in each queue"),
            &["queue"]
        ));
        let queue_oldest_wait_seconds = reg!(GaugeVec::new(
            Opts::new(
                "hotline_queue_oldest_wait_seconds",
                "How long the longest-waiting caller in each queue has waited"
            ),
            &["queue"]
        ));
        let queue_estimated_wait_seconds = reg!(GaugeVec::new(
            Opts::new(
                "hotline_queue_estimated_wait_seconds",
                "Estimated wait for a caller joining each queue now"
            ),
            &["queue"]
        ));
        let queue_wait_seconds = reg!(HistogramVec::new(
            HistogramOpts::new(
                "hotline_queue_wait_seconds",
                "Time callers spent waiting in a queue, by how the wait ended"
            )
            .buckets(WAIT_BUCKETS.to_vec()),
            &["queue", "language", "outcome"]
        ));
        let queue_answered_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_queue_answered_total",
                "Queued callers connected to an agent"
            ),
            &["queue", "language"]
        ));
        let queue_abandoned_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_queue_abandoned_total",
                "Queued callers who hung up before reaching an agent"
            ),
            &["queue", "language"]
        ));
        let queue_short_abandoned_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_queue_short_abandoned_total",
                "Queued callers who hung up within the short-abandon threshold"
            ),
            &["queue", "language"]
        ));
        let queue_estimate_error_seconds = reg!(HistogramVec::new(
            HistogramOpts::new(
                "hotline_queue_estimate_error_seconds",
                "Actual minus announced estimated wait of answered callers"
            )
            .buckets(ESTIMATE_ERROR_BUCKETS.to_vec()),
            &["queue"]
        ));
        let language_offered = reg!(IntGaugeVec::new(
            Opts::new(
                "hotline_language_offered",
                "1 when a live flow offers the language and the line is open now"
            ),
            &["language"]
        ));
        let agents = reg!(IntGaugeVec::new(
            Opts::new("hotline_agents", "Agents by skill and state"),
            &["skill", "state"]
        ));
        let sip_requests_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_sip_requests_total",
                "SIP requests received, by method"
            ),
            &["method"]
        ));
        let sip_responses_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_sip_responses_total",
                "SIP responses sent, by status code"
            ),
            &["code"]
        ));
        let flow_reloads_total = reg!(IntCounterVec::new(
            Opts::new("hotline_flow_reloads_total", "Flow set reloads, by result"),
            &["result"]
        ));
        let sip_malformed_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_sip_malformed_total",
                "SIP messages that could not be parsed, by what was done with them"
            ),
            &["action"]
        ));
        let sip_rejected_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_sip_rejected_total",
                "SIP requests refused or dropped by admission control, by reason"
            ),
            &["reason"]
        ));
        let register_failures_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_register_failures_total",
                "REGISTERs that failed, or challenges no authenticated REGISTER answered in time, by reason"
            ),
            &["reason"]
        ));

        let trunk_refusals_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_trunk_refusals_total",
                "Numbers not dialled: no trunk pattern allows them (not_allowed), every trunk that may is full (no_channel), an unknown trunk or a malformed number"
            ),
            &["reason"]
        ));
        let transfers_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_transfers_total",
                "Transfers to an outside number through a trunk, by result (connected, failed, refused)"
            ),
            &["result"]
        ));
        let trunk_channels = reg!(IntGaugeVec::new(
            Opts::new("hotline_trunk_channels", "Calls through each trunk now"),
            &["trunk"]
        ));
        let trunk_channels_limit = reg!(IntGaugeVec::new(
            Opts::new(
                "hotline_trunk_channels_limit",
                "Calls each trunk may carry at once (its `channels`)"
            ),
            &["trunk"]
        ));
        let callbacks_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_callbacks_total",
                "Callbacks requested by callers, calls placed to them (attempted), connected to an agent, and given up (failed)"
            ),
            &["event", "language"]
        ));
        let callback_wait_seconds = reg!(HistogramVec::new(
            HistogramOpts::new(
                "hotline_callback_wait_seconds",
                "From a callback's caller joining the queue to talking to an agent"
            )
            .buckets(WAIT_BUCKETS.to_vec()),
            &["language"]
        ));
        let callbacks_pending = reg!(IntGaugeVec::new(
            Opts::new(
                "hotline_callbacks_pending",
                "Callbacks waiting for an agent and a call, by the caller's language"
            ),
            &["language"]
        ));

        let rtp_packets_sent_total = reg!(IntCounter::new(
            "hotline_rtp_packets_sent_total",
            "RTP packets sent (prompts, music, silence and relayed media)"
        ));
        let rtp_packets_received_total = reg!(IntCounter::new(
            "hotline_rtp_packets_received_total",
            "RTP packets received"
        ));
        let rtp_packets_relayed_total = reg!(IntCounter::new(
            "hotline_rtp_packets_relayed_total",
            "RTP packets relayed from one leg of a bridged call to the other (also counted as sent)"
        ));
        let rtp_send_drops_total = reg!(IntCounter::new(
            "hotline_rtp_send_drops_total",
            "RTP packets not sent because the socket buffer was full or the send failed"
        ));
        let rtp_pacer_late_seconds = reg!(Histogram::with_opts(
            HistogramOpts::new(
                "hotline_rtp_pacer_late_seconds",
                "How late the RTP pacer woke after each deadline"
            )
            .buckets(PACER_LATE_BUCKETS.to_vec())
        ));

        let cdr_written_total = reg!(IntCounter::new(
            "hotline_cdr_written_total",
            "Call records stored in the database"
        ));
        let cdr_write_failures_total = reg!(IntCounter::new(
            "hotline_cdr_write_failures_total",
            "Failed call record database writes (records kept in the journal)"
        ));
        let cdr_dropped_total = reg!(IntCounter::new(
            "hotline_cdr_dropped_total",
            "Call records lost because the journal was full or unwritable"
        ));
        let cdr_queue_depth = reg!(IntGauge::new(
            "hotline_cdr_queue_depth",
            "Call records waiting for the database writer"
        ));
        let cdr_lag_seconds = reg!(Gauge::new(
            "hotline_cdr_lag_seconds",
            "Seconds from a call's end to its record being stored (last batch)"
        ));
        let queue_log_written_total = reg!(IntCounter::new(
            "hotline_queue_log_written_total",
            "Queue log rows stored in the database"
        ));
        let queue_log_dropped_total = reg!(IntCounter::new(
            "hotline_queue_log_dropped_total",
            "Queue log rows lost because the journal was full or unwritable"
        ));

        let cluster_nodes_alive = reg!(IntGauge::new(
            "hotline_cluster_nodes_alive",
            "Cluster mode: nodes with a live heartbeat, as this node sees them"
        ));
        let cluster_redis_up = reg!(IntGauge::new(
            "hotline_cluster_redis_up",
            "Cluster mode: 1 while the shared store (Redis) answers this node"
        ));
        let cluster_degraded = reg!(IntGauge::new(
            "hotline_cluster_degraded",
            "Cluster mode: 1 while this node serves its callers with its own agents alone"
        ));
        let cluster_dispatcher = reg!(IntGauge::new(
            "hotline_cluster_dispatcher",
            "Cluster mode: 1 on the node that routes the cluster's callers"
        ));
        let cluster_callers_lost_total = reg!(IntCounter::new(
            "hotline_cluster_callers_lost_total",
            "Cluster mode: callers whose node died, found and recorded by this node"
        ));
        let cluster_offer_conflicts_total = reg!(IntCounter::new(
            "hotline_cluster_offer_conflicts_total",
            "Cluster mode: dispatcher decisions the store refused because the caller or agent had moved on"
        ));
        let cluster_store_resets_total = reg!(IntCounter::new(
            "hotline_cluster_store_resets_total",
            "Cluster mode: times the store was found to have lost its data (callers put back)"
        ));
        let cluster_store_ops_total = reg!(IntCounterVec::new(
            Opts::new(
                "hotline_cluster_store_ops_total",
                "Cluster mode: this node's writes to the store, by result"
            ),
            &["result"]
        ));
        for r in ["ok", "error"] {
            cluster_store_ops_total.with_label_values(&[r]);
        }

        // Pre-create the bounded label sets so that dashboards see zeros, not gaps.
        for s in crate::call::Stage::ALL {
            calls_active.with_label_values(&[s.label()]);
        }
        for o in crate::outcome::ALL {
            calls_total.with_label_values(&[o]);
        }
        for l in crate::language::Language::ALL {
            language_selected_total.with_label_values(&[l.code()]);
        }
        for r in ["ok", "error"] {
            flow_reloads_total.with_label_values(&[r]);
        }
        for a in ["answered_400", "dropped"] {
            sip_malformed_total.with_label_values(&[a]);
        }

        for r in crate::sip::admission::Rejection::ALL {
            sip_rejected_total.with_label_values(&[r.label()]);
        }
        for r in crate::registrar::FailureReason::ALL {
            register_failures_total.with_label_values(&[r.label()]);
        }
        for r in crate::trunk::Refusal::ALL {
            trunk_refusals_total.with_label_values(&[r.label()]);
        }
        for r in crate::call::transfer_result::ALL {
            transfers_total.with_label_values(&[r]);
        }
        for language in crate::language::Language::ALL {
            for event in crate::call::callback_event::ALL {
                callbacks_total.with_label_values(&[event, language.code()]);
            }
            callbacks_pending.with_label_values(&[language.code()]);
        }

        Metrics {
            registry,
            calls_active,
            calls_total,
            language_selected_total,
            queue_waiting,
            queue_oldest_wait_seconds,
            queue_estimated_wait_seconds,
            queue_wait_seconds,
            queue_answered_total,
            queue_abandoned_total,
            queue_short_abandoned_total,
            queue_estimate_error_seconds,
            language_offered,
            agents,
            sip_requests_total,
            sip_responses_total,
            flow_reloads_total,
            sip_malformed_total,
            sip_rejected_total,
            register_failures_total,
            trunk_refusals_total,
            transfers_total,
            trunk_channels,
            trunk_channels_limit,
            callbacks_total,
            callback_wait_seconds,
            callbacks_pending,
            rtp_packets_sent_total,
            rtp_packets_received_total,
            rtp_packets_relayed_total,
            rtp_send_drops_total,
            rtp_pacer_late_seconds,
            cdr_written_total,
            cdr_write_failures_total,
            cdr_dropped_total,
            cdr_queue_depth,
            cdr_lag_seconds,
            queue_log_written_total,
            queue_log_dropped_total,
            today: crate::today::Today::default(),
            last_hour: crate::history::LastHour::default(),
            cluster_nodes_alive,
            cluster_redis_up,
            cluster_degraded,
            cluster_dispatcher,
            cluster_callers_lost_total,
            cluster_offer_conflicts_total,
            cluster_store_resets_total,
            cluster_store_ops_total,
            sip_seen: Mutex::new(EndpointStats::default()),
        }
    }

    /// Creates every bounded label set of the live queues and languages at
    /// zero, so dashboards and alerts see series before the first call.
    pub fn prepare_series(&self, queues: &[&str]) {
        for queue in queues {
            for language in crate::language::Language::ALL {
                let labels = [*queue, language.code()];
                self.queue_answered_total.with_label_values(&labels);
                self.queue_abandoned_total.with_label_values(&labels);
                self.queue_short_abandoned_total.with_label_values(&labels);
                for outcome in ["answered", "abandoned", "timed_out"] {
                    self.queue_wait_seconds
                        .with_label_values(&[queue, language.code(), outcome]);
                }
            }
            self.queue_estimate_error_seconds
                .with_label_values(&[queue]);
            self.queue_waiting.with_label_values(&[queue]);
            self.queue_oldest_wait_seconds.with_label_values(&[queue]);
            self.queue_estimated_wait_seconds
                .with_label_values(&[queue]);
        }
    }

    /// `hotline_language_offered`: 1 for the languages offered now (the
    /// flows' languages while the line is open), 0 for the others.
    pub fn set_languages_offered(&self, offered: &[crate::language::Language]) {
        for language in crate::language::Language::ALL {
            self.language_offered
                .with_label_values(&[language.code()])
                .set(i64::from(offered.contains(&language)));
        }
    }

    /// Brings the SIP counters (`hotline_sip_requests_total`,
    /// `_responses_total`, `_malformed_total`, `_rejected_total`) up to the
    /// endpoint's figures: what moved since the last call is added, so the
    /// counters only go up. Nothing is done when nothing moved; a series
    /// appears once it is first counted, as before.
    pub fn set_sip_stats(&self, stats: &EndpointStats) {
        let Ok(mut seen) = self.sip_seen.lock() else {
            return;
        };
        if seen.counted() == stats.counted() {
            return;
        }
        fn add(counter: &IntCounterVec, label: &str, now: u64, before: u64) {
            if now > before {
                counter.with_label_values(&[label]).inc_by(now - before);
            }
        }
        for ((method, now), (_, before)) in stats.requests().zip(seen.requests()) {
            add(&self.sip_requests_total, method, now, before);
        }
        for ((code, now), (_, before)) in stats.responses().zip(seen.responses()) {
            if now > before {
                let label = code.map_or_else(|| "other".to_string(), |c| c.to_string());
                add(&self.sip_responses_total, &label, now, before);
            }
        }
        add(
            &self.sip_malformed_total,
            "answered_400",
            stats.malformed_answered(),
            seen.malformed_answered(),
        );
        add(
            &self.sip_malformed_total,
            "dropped",
            stats.malformed_dropped(),
            seen.malformed_dropped(),
        );
        for ((reason, now), (_, before)) in stats.rejected().zip(seen.rejected()) {
            add(&self.sip_rejected_total, reason.label(), now, before);
        }
        *seen = stats.clone();
    }

    /// Counts what the call core observed, at wall time `wall` (the
    /// wallboard's day totals count beside the counters).
    pub fn observe(&self, wall: DateTime<Utc>, observation: &Observation) {
        match observation {
            Observation::CallEnded { outcome } => {
                self.calls_total.with_label_values(&[outcome]).inc();
                self.today.call_ended(wall, outcome);
            }
            Observation::LanguageChosen(language) => {
                self.language_selected_total
                    .with_label_values(&[language.code()])
                    .inc();
                self.today.language_chosen(wall, *language);
            }
            Observation::QueueLeft {
                queue,
                language,
                outcome,
                waited,
                answered,
                abandoned,
                prediction,
            } => {
                let labels = [queue.as_str(), language.code()];
                self.queue_wait_seconds
                    .with_label_values(&[queue, language.code(), outcome])
                    .observe(waited.as_secs_f64());
                if *answered {
                    self.queue_answered_total.with_label_values(&labels).inc();
                    self.today
                        .queue_answered(wall, queue, *language, waited.as_secs_f64());
                    self.last_hour
                        .with(|h| h.answered(wall, *language, waited.as_secs_f64()));
                    if let Some(p) = prediction {
                        self.queue_estimate_error_seconds
                            .with_label_values(&[queue])
                            .observe(p.error_seconds());
                    }
                }
                if let Some(short) = abandoned {
                    self.queue_abandoned_total.with_label_values(&labels).inc();
                    if *short {
                        self.queue_short_abandoned_total
                            .with_label_values(&labels)
                            .inc();
                    }
                    self.today.queue_abandoned(wall, queue, *language, *short);
                    self.last_hour
                        .with(|h| h.abandoned(wall, *language, *short));
                }
            }
            Observation::LanguagesOffered(offered) => self.set_languages_offered(offered),
            Observation::RegisterFailed { reason } => {
                self.register_failures_total
                    .with_label_values(&[reason])
                    .inc();
            }
            Observation::TrunkRefused { reason } => {
                self.trunk_refusals_total.with_label_values(&[reason]).inc();
            }
            Observation::TransferEnded { result } => {
                self.transfers_total.with_label_values(&[result]).inc();
            }
            Observation::Callback {
                event,
                language,
                waited,
            } => {
                self.callbacks_total
                    .with_label_values(&[event, language.code()])
                    .inc();
                if let Some(waited) = waited {
                    self.callback_wait_seconds
                        .with_label_values(&[language.code()])
                        .observe(waited.as_secs_f64());
                }
            }
            // A snapshot starts the new day even when no call has counted yet.
            Observation::DayStarted { .. } => {
                self.today.snapshot(wall);
            }
        }
    }

    /// Sets the gauges (and the wallboard's last hour) from the call core's
    /// figures at wall time `wall`.
    pub fn set_gauges(&self, wall: DateTime<Utc>, gauges: &CoreGauges) {
        let waiting: Vec<(crate::language::Language, usize)> = gauges
            .queues
            .iter()
            .flat_map(|q| q.lines.iter().map(|l| (l.language, l.waiting)))
            .collect();
        self.last_hour.with(|h| h.waiting(wall, &waiting));
        for (trunk, in_use, limit) in &gauges.trunks {
            self.trunk_channels
                .with_label_values(&[trunk])
                .set(i64::from(*in_use));
            self.trunk_channels_limit
                .with_label_values(&[trunk])
                .set(i64::from(*limit));
        }
        for language in crate::language::Language::ALL {
            let pending = gauges
                .callbacks_pending
                .iter()
                .find(|(l, _)| *l == language)
                .map_or(0, |(_, n)| *n);
            self.callbacks_pending
                .with_label_values(&[language.code()])
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        for (stage, count) in &gauges.calls_active {
            self.calls_active
                .with_label_values(&[stage.label()])
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        for q in &gauges.queues {
            let name = [q.name.as_str()];
            self.queue_waiting
                .with_label_values(&name)
                .set(q.waiting as i64);
            self.queue_oldest_wait_seconds
                .with_label_values(&name)
                .set(q.oldest_wait.map(|d| d.as_secs_f64()).unwrap_or(0.0));
            self.queue_estimated_wait_seconds
                .with_label_values(&name)
                .set(q.estimated_wait.map(|d| d.as_secs_f64()).unwrap_or(0.0));
        }
        let Some(agents) = &gauges.agents else {
            return;
        };
        self.agents.reset();
        for agent in agents {
            for language in agent.skills.keys() {
                self.agents
                    .with_label_values(&[language.code(), agent.state.label()])
                    .inc();
            }
        }
        // Every language and state is present, at zero when nobody is in it,
        // so that "no agent logged in for a language" can be alerted on.
        for language in crate::language::Language::ALL {
            for state in AGENT_STATES {
                self.agents.with_label_values(&[language.code(), state]);
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl crate::media::PacerObserver for Metrics {
    fn packets(&self, sent: u64, received: u64, relayed: u64, dropped: u64) {
        self.rtp_packets_sent_total.inc_by(sent);
        self.rtp_packets_received_total.inc_by(received);
        self.rtp_packets_relayed_total.inc_by(relayed);
        self.rtp_send_drops_total.inc_by(dropped);
    }
    fn late(&self, seconds: f64) {
        self.rtp_pacer_late_seconds.observe(seconds);
    }
}

impl crate::cdr::WriterObserver for Metrics {
    fn stored(&self, calls: u64, queue_events: u64) {
        self.cdr_written_total.inc_by(calls);
        self.queue_log_written_total.inc_by(queue_events);
    }
    fn dropped(&self, call_record: bool) {
        if call_record {
            self.cdr_dropped_total.inc();
        } else {
            self.queue_log_dropped_total.inc();
        }
    }
    fn queue_depth(&self, depth: u64) {
        self.cdr_queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
    fn lag_seconds(&self, seconds: f64) {
        self.cdr_lag_seconds.set(seconds);
    }
    fn write_failed(&self) {
        self.cdr_write_failures_total.inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names_are_exported() {
        let m = Metrics::new();
        let mut sip = EndpointStats::default();
        sip.count_request("INVITE");
        sip.count_request("FOOBAR");
        sip.count_response(200);
        m.set_sip_stats(&sip);
        m.queue_wait_seconds
            .with_label_values(&["general", "en", "answered"])
            .observe(12.0);
        let text = m.render();
        for name in [
            "hotline_calls_active",
            "hotline_calls_total",
            "hotline_language_selected_total",
            "hotline_queue_wait_seconds_bucket",
            "hotline_sip_requests_total{method=\"INVITE\"} 1",
            "hotline_sip_requests_total{method=\"other\"} 1",
            "hotline_sip_responses_total{code=\"200\"} 1",
            "hotline_flow_reloads_total",
            "hotline_rtp_packets_sent_total 0",
            "hotline_rtp_packets_received_total 0",
            "hotline_rtp_packets_relayed_total 0",
            "hotline_rtp_send_drops_total 0",
            "hotline_queue_log_written_total 0",
            "hotline_queue_log_dropped_total 0",
            "hotline_rtp_pacer_late_seconds_bucket{le=\"0.0001\"} 0",
            "hotline_rtp_pacer_late_seconds_bucket{le=\"0.02\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        for le in [
            "le=\"10\"",
            "le=\"20\"",
            "le=\"30\"",
            "le=\"60\"",
            "le=\"3600\"",
        ] {
            assert!(text.contains(le), "missing bucket {le}");
        }
    }

    #[test]
    fn sip_counters_follow_the_endpoint_figures_once() {
        let m = Metrics::new();
        let mut sip = EndpointStats::default();
        sip.count_request("OPTIONS");
        sip.count_response(200);
        sip.count_malformed(false);
        sip.count_rejection(crate::sip::admission::Rejection::Scanner);
        m.set_sip_stats(&sip);
        m.set_sip_stats(&sip);
        sip.count_request("OPTIONS");
        sip.count_response(200);
        sip.count_response(503);
        m.set_sip_stats(&sip);
        m.set_sip_stats(&sip);
        let get = |c: &IntCounterVec, label: &str| c.with_label_values(&[label]).get();
        assert_eq!(get(&m.sip_requests_total, "OPTIONS"), 2);
        assert_eq!(get(&m.sip_responses_total, "200"), 2);
        assert_eq!(get(&m.sip_responses_total, "503"), 1);
        assert_eq!(get(&m.sip_malformed_total, "dropped"), 1);
        assert_eq!(get(&m.sip_malformed_total, "answered_400"), 0);
        assert_eq!(get(&m.sip_rejected_total, "scanner"), 1);
        let text = m.render();
        assert!(
            !text.contains("hotline_sip_requests_total{method=\"INVITE\"}"),
            "no series before its first count"
        );
    }
}

#[cfg(test)]
mod node_tests {
    use super::*;

    #[test]
    fn every_series_of_a_cluster_node_carries_its_name() {
        let m = Metrics::for_node(Some("a"));
        m.calls_total.with_label_values(&["answered"]).inc();
        let text = m.render();
        assert!(
            text.contains("hotline_calls_total{outcome=\"answered\",node=\"a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hotline_cluster_redis_up{node=\"a\"} 0"),
            "{text}"
        );
        // Alone, no node label.
        let m = Metrics::new();
        assert!(!m.render().contains("node="));
    }
}
