//! Inbound calls: the glue between the SIP endpoint, the media side and the flow
//! engine.
//!
//! `CallManager` is driven like the cores it holds: the shell feeds it SIP bytes,
//! media events and timeouts with the current `now`, and drains what to transmit.
//! It owns every call's state in one place (one task, no locks), keeps one timer
//! set for all flow deadlines, and counts every call outcome exactly once.

mod agents;
mod attended;
mod callback;
mod media_control;
mod outputs;
mod queueing;
mod transfer;

pub use agents::{AgentStateError, AgentStateReply, AgentSummary};
pub use callback::{callback_event, CallbackSummary, MAX_CALLBACKS};
pub use media_control::MediaControl;
pub use outputs::{CoreGauges, Observation, Output};
pub use queueing::{QueueSummary, AGENT_STATES};
pub use transfer::{transfer_result, TransferError, TransferStarted, TransferTarget};

use crate::acd::{from_flows::queues_from_flows, Acd, AgentDirectory, AgentId, QueueService};
use crate::events::LiveEvent;
use crate::flow::{CallInfo, FlowAction, FlowEnv, FlowEvent, FlowRun, FlowSet};
use crate::ids::NodeId;
use crate::language::Language;
use crate::media::{MediaEvent, PromptLibrary};
use crate::outcome;
use crate::registrar::{DigestAuth, DigestConfig, Registrar, RegistrarConfig};
use crate::sdp;
use crate::sip::{
    CallId, EndReason, IncomingCall, LegKey, SessionKey, SipEndpoint, SipEvent, Transmit, Transport,
};
use crate::time::Now;
use queueing::{AgentLeg, Joining, Queued};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One version of what operators edit: the flows and the prompt audio they use.
/// Calls keep the version they started with until they end.
pub struct FlowBundle {
    pub flows: Arc<FlowSet>,
    pub prompts: Arc<PromptLibrary>,
}

/// Where a call is, for `hotline_calls_active{stage}` and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Ivr,
    Queue,
    Agent,
    /// Put through to an outside number by the flow's `transfer` step.
    Transfer,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Ivr, Stage::Queue, Stage::Agent, Stage::Transfer];

    pub fn label(self) -> &'static str {
        match self {
            Stage::Ivr => "ivr",
            Stage::Queue => "queue",
            Stage::Agent => "agent",
            Stage::Transfer => "transfer",
        }
    }
}

/// A call as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    pub id: u64,
    pub sip_call_id: String,
    pub caller: String,
    pub dialled: String,
    pub stage: Stage,
    pub language: Option<Language>,
    pub flow_version: String,
    pub step: Option<String>,
    /// Seconds since the call was answered.
    pub duration_seconds: f64,
    /// The queue the caller waits in.
    pub queue: Option<String>,
    /// Seconds waited in the queue so far.
    pub waited_seconds: Option<f64>,
    /// The agent the caller talks to.
    pub agent: Option<String>,
}

/// How the flow said goodbye, for the outcome of a call ended by us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalEnd {
    /// The agent hung up after talking to the caller.
    Answered,
    /// The flow reached its end (information given, goodbye said).
    FlowCompleted,
    /// The flow hung up because the line is closed.
    FlowClosed,
    /// The queue's maximum wait ran out.
    QueueTimedOut,
    /// No room in the queue, or no agent for the language.
    Refused,
    /// Something broke (no audio, transfer impossible, shutdown).
    Failure,
    /// RFC 4028: a leg's peer did not refresh its session in time.
    SessionExpired,
    /// The outside party of a transfer hung up.
    Transferred,
}

impl LocalEnd {
    /// The outcome a flow's `hangup: <reason>` stands for. The default flows
    /// use `closed`, `timed_out`, `busy` and `no_agents`; any other reason is
    /// an ordinary end of the flow.
    fn from_reason(reason: &str) -> LocalEnd {
        match reason {
            "closed" => LocalEnd::FlowClosed,
            "timed_out" => LocalEnd::QueueTimedOut,
            "busy" | "no_agents" => LocalEnd::Refused,
            "step_limit" | "unknown_flow" | "call_depth" => LocalEnd::Failure,
            _ => LocalEnd::FlowCompleted,
        }
    }

    fn outcome(self) -> &'static str {
        match self {
            LocalEnd::Answered => outcome::ANSWERED,
            LocalEnd::FlowCompleted => outcome::COMPLETED,
            LocalEnd::FlowClosed => outcome::CLOSED,
            LocalEnd::QueueTimedOut => outcome::TIMED_OUT,
            LocalEnd::Refused => outcome::REJECTED,
            LocalEnd::Failure | LocalEnd::SessionExpired => outcome::FAILED,
            LocalEnd::Transferred => outcome::TRANSFERRED,
        }
    }
}

struct Call {
    info: IncomingCall,
    flow: FlowRun,
    bundle: Arc<FlowBundle>,
    stage: Stage,
    answered_at: Instant,
    media_open: bool,
    sdp_session_version: u64,
    local_rtp_port: u16,
    /// The flow deadline currently in the timer set, to remove it when it moves.
    deadline: Option<Instant>,
    /// Set once we asked for BYE, to count the outcome when the dialog ends.
    local_end: Option<LocalEnd>,
    /// The caller's codec (offered first to agents, to avoid transcoding).
    codec: crate::media::Codec,
    /// Asked to join a queue, not answered yet.
    joining: Option<Joining>,
    /// While waiting in a queue.
    queued: Option<Queued>,
    /// The agent leg ringing or connected.
    agent_leg: Option<LegKey>,
    /// The agent the caller talks to, once connected (kept for the record
    /// after a transfer released them).
    connected_agent: Option<AgentId>,
    /// The agent was released by a transfer: their call is over already.
    agent_released: bool,
    /// The transfer leg dialling or connected.
    trunk_leg: Option<LegKey>,
    /// The outside number the caller was put through to.
    transferred_to: Option<String>,
    /// The queue (and options) the flow last asked for, for a transfer to
    /// another language, or back to it when an outside number fails.
    last_queue: Option<(String, crate::flow::QueueOptions)>,
    /// Announcements played so far (their play ids).
    announcements: u64,
    /// Pressed the callback key: their place is held while the flow
    /// confirms the number.
    holding: bool,
    /// A callback is booked: hanging up now is not abandoning.
    callback_booked: bool,
    /// For the call record: the flow it entered, the queue it last joined
    /// and when, and when an agent took it.
    entry: String,
    queue_name: Option<String>,
    queued_at: Option<Instant>,
    connected_at: Option<Instant>,
}

/// What flow conditions see of the world: the wall clock of the input being
/// handled, and queue and agent figures refreshed whenever the ACD moves.
struct LiveEnv {
    wall: chrono::DateTime<chrono::Utc>,
    queues: BTreeMap<String, crate::flow::QueueState>,
    agents_ready: BTreeMap<String, u32>,
}

impl FlowEnv for LiveEnv {
    fn now_wall(&self) -> chrono::DateTime<chrono::Utc> {
        self.wall
    }
    fn queue_state(&self, queue: &str) -> crate::flow::QueueState {
        self.queues.get(queue).cloned().unwrap_or_default()
    }
    fn agents_ready(&self, skill: &str) -> u32 {
        self.agents_ready.get(skill).copied().unwrap_or(0)
    }
}

/// Every inbound call, driven sans-IO by the shell.
pub struct CallManager<M: MediaControl, Q: QueueService = Acd> {
    endpoint: SipEndpoint,
    media: M,
    bundle: Arc<FlowBundle>,
    media_ip: IpAddr,
    calls: HashMap<CallId, Call>,
    timers: BTreeSet<(Instant, CallId)>,
    draining: bool,
    /// Calls touched since the last drain of flow actions.
    dirty: Vec<CallId>,
    /// Ringing before answer, when an answer delay is set.
    answer_delay: Duration,
    ringing: HashMap<CallId, Ringing>,
    env: LiveEnv,
    /// This node, as the queue engine names it.
    node: NodeId,
    /// The queue engine, behind its seam.
    queue: Q,
    registrar: Registrar,
    /// Challenged with, most preferred first; kept across a new registrar.
    digest_algorithms: Vec<crate::registrar::Algorithm>,
    agents: Arc<AgentDirectory>,
    legs: HashMap<LegKey, AgentLeg>,
    /// Outbound gateways and their channels in use.
    trunks: crate::trunk::Trunks,
    /// Transfer legs through a trunk.
    trunk_legs: HashMap<LegKey, transfer::TrunkLeg>,
    /// Agents' consultation calls (attended transfer), by their call.
    consults: HashMap<CallId, attended::Consultation>,
    /// Whether an agent whose phone registers becomes ready at once.
    ready_on_register: bool,
    /// When `housekeeping` runs next.
    housekeeping_at: Instant,
    /// Where the wallboard's day starts at midnight.
    timezone: chrono_tz::Tz,
    /// The wallboard day last announced (`day_started`).
    announced_day: chrono::NaiveDate,
    /// Records, queue log rows, live events and counts for the shell to
    /// deliver; drained after every input, so bounded by the work of one input.
    outputs: VecDeque<Output>,
    /// Calls in each stage (`hotline_calls_active`), by `Stage as usize`.
    stage_counts: [u64; 4],
    /// Whether the figures behind the gauges moved since the shell last read them.
    gauges_changed: bool,
    /// Moves on whenever an agent's state or the agent list moved; the
    /// flows' ready counts and the agent gauges are rebuilt only then.
    agents_generation: u64,
    agents_in_env: u64,
    agents_in_gauges: u64,
    /// The queue statistics of the latest flow view, for the gauges.
    whole_stats: Option<Vec<crate::acd::QueueStats>>,
    /// Callbacks booked, by the id the queue engine knows them by.
    callbacks: HashMap<CallId, callback::Callback>,
    callback_seq: u64,
}

/// A call accepted but not answered yet (ringing for the answer delay).
struct Ringing {
    incoming: IncomingCall,
    negotiated: sdp::Negotiated,
    entry: String,
    answer_at: Instant,
}

impl<M: MediaControl> CallManager<M, Acd> {
    /// A single node: the queues are this process's own.
    pub fn new(
        now: Now,
        endpoint: SipEndpoint,
        media: M,
        bundle: Arc<FlowBundle>,
        media_ip: IpAddr,
    ) -> Self {
        let queue = Acd::new(
            now,
            queues_from_flows(&bundle.flows),
            AgentDirectory::default(),
        );
        CallManager::with_queue(
            now,
            endpoint,
            media,
            bundle,
            media_ip,
            NodeId::local(),
            queue,
        )
    }
}

impl<M: MediaControl, Q: QueueService> CallManager<M, Q> {
    /// Calls on this node with the queue engine `queue` (one shared with
    /// other nodes, in cluster mode), which names this node `node`.
    pub fn with_queue(
        now: Now,
        endpoint: SipEndpoint,
        media: M,
        bundle: Arc<FlowBundle>,
        media_ip: IpAddr,
        node: NodeId,
        mut queue: Q,
    ) -> Self {
        queue.set_queues(now, queues_from_flows(&bundle.flows));
        let agents = Arc::new(AgentDirectory::default());
        let timezone = crate::today::DEFAULT_TIMEZONE;
        let registrar = Registrar::new(
            RegistrarConfig::default(),
            DigestAuth::with_random_secret(agents.realm(), now.mono, DigestConfig::default()),
        );
        let mut manager = CallManager {
            endpoint,
            media,
            bundle,
            media_ip,
            calls: HashMap::new(),
            timers: BTreeSet::new(),
            draining: false,
            dirty: Vec::new(),
            answer_delay: Duration::ZERO,
            ringing: HashMap::new(),
            env: LiveEnv {
                wall: now.wall,
                queues: BTreeMap::new(),
                agents_ready: BTreeMap::new(),
            },
            node,
            queue,
            registrar,
            digest_algorithms: crate::registrar::DEFAULT_ALGORITHMS.to_vec(),
            agents,
            legs: HashMap::new(),
            trunks: crate::trunk::Trunks::default(),
            trunk_legs: HashMap::new(),
            consults: HashMap::new(),
            ready_on_register: true,
            housekeeping_at: now.mono + HOUSEKEEPING_EVERY,
            timezone,
            announced_day: crate::today::local_day(timezone, now.wall),
            outputs: VecDeque::new(),
            stage_counts: [0; 4],
            gauges_changed: true,
            agents_generation: 1,
            agents_in_env: 0,
            agents_in_gauges: 0,
            whole_stats: None,
            callbacks: HashMap::new(),
            callback_seq: 0,
        };
        manager.offer_languages(now);
        manager.refresh_flow_env(now);
        manager
    }

    /// The queue engine took input from outside the call layer (its store):
    /// `input` hands it over, then what the engine asks is carried out.
    pub fn handle_queue(&mut self, now: Now, input: impl FnOnce(&mut Q, Now)) {
        self.env.wall = now.wall;
        input(&mut self.queue, now);
        self.drain_queue(now);
        self.process(now);
    }

    /// The queue engine, for the shell that carries its store operations.
    pub fn queue_mut(&mut self) -> &mut Q {
        &mut self.queue
    }

    /// Where the wallboard's day starts (config `timezone`).
    pub fn set_timezone(&mut self, now: Now, timezone: chrono_tz::Tz) {
        self.timezone = timezone;
        self.announced_day = crate::today::local_day(timezone, now.wall);
    }

    /// Loads (or reloads) the agent accounts. Agents keep their state; the
    /// digest realm follows the file.
    pub fn set_agents(&mut self, now: Now, agents: AgentDirectory) {
        self.env.wall = now.wall;
        if agents.realm() != self.agents.realm() {
            self.registrar = Registrar::new(
                RegistrarConfig::default(),
                DigestAuth::with_random_secret(agents.realm(), now.mono, DigestConfig::default()),
            );
            self.registrar.set_algorithms(&self.digest_algorithms);
        }
        self.warn_unusable_accounts(&agents);
        self.queue.set_agents(now, agents.clone());
        self.agents = Arc::new(agents);
        self.agents_generation = self.agents_generation.wrapping_add(1);
        self.drain_queue(now);
    }

    /// The digest algorithms REGISTERs are challenged with, most preferred
    /// first (config `digest_algorithms`).
    pub fn set_digest_algorithms(&mut self, algorithms: &[crate::registrar::Algorithm]) {
        if algorithms.is_empty() {
            return;
        }
        self.digest_algorithms = algorithms.to_vec();
        self.registrar.set_algorithms(algorithms);
        let agents = Arc::clone(&self.agents);
        self.warn_unusable_accounts(&agents);
    }

    /// An agent with no HA1 for any challenged algorithm cannot log in: say
    /// so at load rather than leave its phone failing in silence.
    fn warn_unusable_accounts(&self, agents: &AgentDirectory) {
        for agent in agents.iter() {
            let usable = self
                .digest_algorithms
                .iter()
                .any(|a| agent.credentials.supports(*a));
            if !usable {
                let challenged: Vec<&str> = self
                    .digest_algorithms
                    .iter()
                    .map(|a| a.config_name())
                    .collect();
                tracing::warn!(
                    agent = %agent.id,
                    challenged = %challenged.join(","),
                    "agent has no HA1 for any algorithm in digest_algorithms: its phone cannot log in (add the HA1 from `hotline agents hash`, or the algorithm)"
                );
            }
        }
    }

    /// Whether a phone registering makes its agent ready (else paused).
    /// The outbound gateways transfers leave through (config `trunks:`).
    pub fn set_trunks(&mut self, trunks: crate::trunk::Trunks) {
        self.trunks = trunks;
    }

    pub fn set_ready_on_register(&mut self, ready: bool) {
        self.ready_on_register = ready;
    }

    /// Ring this long before answering new calls.
    pub fn set_answer_delay(&mut self, delay: Duration) {
        self.answer_delay = delay;
    }

    /// New calls take this version; calls in progress keep theirs. The queues
    /// it defines replace the running ones (callers waiting stay).
    pub fn set_bundle(&mut self, now: Now, bundle: Arc<FlowBundle>) {
        self.env.wall = now.wall;
        self.queue.set_queues(now, queues_from_flows(&bundle.flows));
        self.bundle = bundle;
        self.offer_languages(now);
        self.drain_queue(now);
    }

    fn set_stage(&mut self, key: CallId, stage: Stage) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.stage == stage {
            return;
        }
        let from = call.stage;
        call.stage = stage;
        self.stage_left(from);
        self.stage_entered(stage);
    }

    fn stage_entered(&mut self, stage: Stage) {
        self.stage_counts[stage as usize] += 1;
        self.gauges_changed = true;
    }

    fn stage_left(&mut self, stage: Stage) {
        let count = &mut self.stage_counts[stage as usize];
        *count = count.saturating_sub(1);
        self.gauges_changed = true;
    }

    pub fn bundle(&self) -> &Arc<FlowBundle> {
        &self.bundle
    }

    pub fn call_count(&self) -> usize {
        self.calls.len() + self.ringing.len()
    }

    /// One SIP datagram or framed TCP message.
    pub fn handle_sip(&mut self, now: Now, transport: Transport, source: SocketAddr, data: &[u8]) {
        self.env.wall = now.wall;
        self.endpoint
            .handle_input(now.mono, transport, source, data);
        self.process(now);
    }

    /// A digit or the end of a playback, from the media side.
    pub fn handle_media(&mut self, now: Now, event: MediaEvent) {
        self.env.wall = now.wall;
        match event {
            MediaEvent::PlaybackFinished { call, play_id } => {
                if self.callback_playback_finished(now, call, play_id) {
                    // A callback's greeting or whisper.
                } else if !Self::is_announcement(play_id) {
                    self.flow_event(now, call, FlowEvent::PlaybackFinished { play_id })
                }
            }
            MediaEvent::Digit { call, digit } => {
                // Digits on an agent leg are relayed to the caller, nothing more.
                if self.calls.contains_key(&call) {
                    tracing::info!(call = call.0, digit = %digit, via = "rtp", "digit");
                    self.flow_event(now, call, FlowEvent::Digit(digit))
                }
            }
            MediaEvent::RtpTimeout { call } => self.rtp_silent(now, call),
        }
        self.process(now);
    }

    /// Runs SIP and flow timers that are due.
    pub fn handle_timeout(&mut self, now: Now) {
        self.env.wall = now.wall;
        if now.mono >= self.housekeeping_at {
            self.housekeeping(now);
        }
        self.endpoint.handle_timeout(now.mono);
        self.registrar.handle_timeout(now.mono);
        self.drain_registrar(now);
        self.queue.handle_timeout(now);
        self.drain_queue(now);
        while let Some(&(at, key)) = self.timers.first() {
            if at > now.mono {
                break;
            }
            self.timers.remove(&(at, key));
            if let Some(ringing) = self.ringing.remove(&key) {
                self.answer(now, ringing);
                continue;
            }
            if let Some(call) = self.calls.get_mut(&key) {
                call.deadline = None;
                call.flow.handle_timeout(now.mono, &self.env);
                self.dirty.push(key);
            }
        }
        self.process(now);
    }

    /// Refreshes what depends on the wall clock: which languages are
    /// offered (the line may have opened or closed) and, after local
    /// midnight, a new wallboard day (announced as `day_started`).
    pub fn housekeeping(&mut self, now: Now) {
        self.housekeeping_at = now.mono + HOUSEKEEPING_EVERY;
        self.offer_languages(now);
        self.callback_windows(now);
        let day = crate::today::local_day(self.timezone, now.wall);
        if day != self.announced_day {
            self.announced_day = day;
            tracing::info!(%day, "a new day on the wallboard");
            self.observe(Observation::DayStarted { day });
            self.emit_live(LiveEvent::DayStarted {
                at: now.unix_seconds(),
                day: day.to_string(),
            });
        }
    }

    /// `hotline_language_offered`: the flows' languages while the line is open.
    fn offer_languages(&mut self, now: Now) {
        let offered = self.bundle.flows.languages_offered_at(now.wall);
        self.observe(Observation::LanguagesOffered(offered));
    }

    /// The next instant `handle_timeout` must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.first().map(|(at, _)| *at),
            self.endpoint.poll_timeout(),
            self.queue.poll_timeout(),
            self.registrar.poll_timeout(),
            Some(self.housekeeping_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A leg sent no RTP for the configured time: its peer may have vanished
    /// without a BYE. Ask it with an in-dialog OPTIONS; `ProbeFailed` ends the
    /// call, so no agent is left stuck "on call".
    fn rtp_silent(&mut self, now: Now, media_key: CallId) {
        if let Some(leg) = self.trunk_leg_of_media(media_key) {
            tracing::info!(
                leg = leg.0,
                "no RTP from the far end of a transfer: probing"
            );
            self.endpoint.probe(now.mono, leg);
            return;
        }
        let caller = CallId(media_key.0 & !queueing::AGENT_LEG_BIT);
        if media_key == caller {
            if self.calls.contains_key(&caller) {
                tracing::info!(call = caller.0, "no RTP from the caller: probing");
                self.endpoint.probe(now.mono, caller);
            }
        } else if let Some(leg) = self.calls.get(&caller).and_then(|c| c.agent_leg) {
            tracing::info!(
                call = caller.0,
                leg = leg.0,
                "no RTP from the agent: probing"
            );
            self.endpoint.probe(now.mono, leg);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.endpoint.poll_transmit()
    }

    /// Refuses new calls (503 with Retry-After) and those still ringing; calls
    /// in progress go on.
    pub fn start_draining(&mut self, now: Now) {
        self.draining = true;
        self.endpoint.set_draining(true);
        let ringing: Vec<CallId> = self.ringing.keys().copied().collect();
        for key in ringing {
            if let Some(r) = self.ringing.remove(&key) {
                self.timers.remove(&(r.answer_at, key));
                self.endpoint.reject(now.mono, key, 503);
                self.count_call_ended(outcome::REJECTED);
                self.record_refused(now, &r.incoming, refusal::DRAINING);
            }
        }
        self.process(now);
    }

    /// Stops taking calls and hangs up every call in progress.
    pub fn shut_down(&mut self, now: Now) {
        self.start_draining(now);
        let keys: Vec<CallId> = self.calls.keys().copied().collect();
        for key in keys {
            self.end_call_locally(now, key, LocalEnd::Failure, "shutdown");
        }
        self.process(now);
    }

    /// Whether new calls are refused.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The calls in progress, for the API.
    pub fn summaries(&self, now: Now) -> Vec<CallSummary> {
        let mut out: Vec<CallSummary> = self
            .calls
            .iter()
            .map(|(key, c)| CallSummary {
                id: key.0,
                sip_call_id: c.info.call_id.clone(),
                caller: c.info.from_user.clone(),
                dialled: c.info.dialled.clone(),
                stage: c.stage,
                language: c.flow.language(),
                flow_version: c.bundle.flows.version().to_string(),
                step: c.flow.path().last().cloned(),
                duration_seconds: now
                    .mono
                    .saturating_duration_since(c.answered_at)
                    .as_secs_f64(),
                queue: c.queued.as_ref().map(|q| q.queue.clone()),
                waited_seconds: c.queued.as_ref().map(|q| {
                    now.mono
                        .saturating_duration_since(q.joined_at)
                        .as_secs_f64()
                }),
                agent: c.connected_agent.as_ref().map(|a| a.as_str().to_string()),
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    fn process(&mut self, now: Now) {
        // Bounded: each pass either consumes SIP events or flow actions; both
        // sources are finite per input.
        loop {
            let mut progressed = false;
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                self.sip_event(now, event);
            }
            while let Some(key) = self.dirty.pop() {
                progressed = true;
                self.drain_flow(now, key);
            }
            if !progressed {
                break;
            }
        }
    }

    fn sip_event(&mut self, now: Now, event: SipEvent) {
        match event {
            SipEvent::IncomingCall(incoming) => self.incoming(now, incoming),
            // An agent's consultation call (attended transfer).
            SipEvent::Ended { call, .. } | SipEvent::Cancelled { call }
                if self.is_consultation(call) =>
            {
                self.consultation_hung_up(now, call)
            }
            SipEvent::ReOffer { call, offer } if self.is_consultation(call) => {
                self.consultation_reoffer(now, call, offer)
            }
            SipEvent::ProbeFailed {
                session: SessionKey::Call(call),
                ..
            }
            | SipEvent::SessionExpired {
                session: SessionKey::Call(call),
            } if self.is_consultation(call) => {
                self.endpoint.hangup(now.mono, call);
                self.consultation_hung_up(now, call)
            }
            SipEvent::Confirmed { call } | SipEvent::Dtmf { call, .. }
                if self.is_consultation(call) => {}
            SipEvent::Confirmed { call } => {
                tracing::debug!(call = call.0, "ack");
            }
            SipEvent::Cancelled { call } => {
                if let Some(r) = self.ringing.remove(&call) {
                    self.timers.remove(&(r.answer_at, call));
                    // Ended before we answered: still a call taken, recorded.
                    self.record_unanswered(
                        now,
                        &r.incoming,
                        outcome::ABANDONED_IVR,
                        crate::cdr::hung_up_by::CALLER,
                        "cancelled_before_answer",
                    );
                }
                tracing::info!(call = call.0, "cancelled before answer");
                self.count_call_ended(outcome::ABANDONED_IVR);
                self.emit_live(LiveEvent::CallEnded {
                    at: now.unix_seconds(),
                    call: call.0,
                    outcome: outcome::ABANDONED_IVR.to_string(),
                    language: None,
                });
            }
            SipEvent::Ended { call, reason } => self.ended(now, call, reason),
            SipEvent::ReOffer { call, offer } => self.reoffer(now, call, offer),
            SipEvent::Dtmf { call, digit } => {
                tracing::info!(call = call.0, digit = %digit, via = "info", "digit");
                self.flow_event(now, call, FlowEvent::Digit(digit));
            }
            SipEvent::ProbeFailed { session, code } => match session {
                SessionKey::Call(call) => {
                    tracing::info!(call = call.0, code, "caller gone: in-dialog probe failed");
                    self.end_call_locally(now, call, LocalEnd::Failure, "caller unreachable");
                }
                SessionKey::Leg(leg) => {
                    let call = self.legs.get(&leg).map(|l| l.call);
                    let Some(call) = call.or_else(|| self.trunk_leg_call(leg)) else {
                        return;
                    };
                    tracing::info!(
                        call = call.0,
                        leg = leg.0,
                        code,
                        "agent gone: in-dialog probe failed"
                    );
                    self.end_call_locally(now, call, LocalEnd::Failure, "agent unreachable");
                }
            },
            SipEvent::SessionExpired { session } => {
                let call = match session {
                    SessionKey::Call(call) => Some(call),
                    SessionKey::Leg(leg) => self
                        .legs
                        .get(&leg)
                        .map(|l| l.call)
                        .or_else(|| self.trunk_leg_call(leg)),
                };
                let Some(call) = call else {
                    return;
                };
                tracing::info!(
                    call = call.0,
                    ?session,
                    "session expired: no refresh from the peer"
                );
                self.end_call_locally(now, call, LocalEnd::SessionExpired, SESSION_EXPIRED);
            }
            SipEvent::Register(request) => self.register(now, request),
            SipEvent::Refused(refused) => self.endpoint_refused(now, refused),
            SipEvent::LegRinging { leg } => {
                tracing::debug!(leg = leg.0, "leg ringing");
            }
            SipEvent::LegAnswered { leg, answer_sdp } if self.is_trunk_leg(leg) => {
                self.trunk_leg_answered(now, leg, answer_sdp)
            }
            SipEvent::LegFailed { leg, code } if self.is_trunk_leg(leg) => {
                self.trunk_leg_failed(now, leg, code)
            }
            SipEvent::LegEnded { leg, reason } if self.is_trunk_leg(leg) => {
                self.trunk_leg_ended(now, leg, reason)
            }
            SipEvent::LegReOffer { leg, offer } if self.is_trunk_leg(leg) => {
                self.trunk_leg_reoffer(now, leg, offer)
            }
            SipEvent::LegAnswered { leg, answer_sdp } => self.leg_answered(now, leg, answer_sdp),
            SipEvent::LegFailed { leg, code } => self.leg_failed(now, leg, code),
            SipEvent::LegEnded { leg, reason } => self.leg_ended(now, leg, reason),
            SipEvent::LegReOffer { leg, offer } => self.leg_reoffer(now, leg, offer),
            SipEvent::LegRefer {
                leg,
                target,
                replaces,
            } => match replaces {
                Some(replaces) => self.attended_transfer(now, leg, &replaces),
                None => self.agent_refers(now, leg, &target),
            },
            SipEvent::LegDtmf { leg, digit } => {
                tracing::debug!(leg = leg.0, digit = %digit, "digit from agent (relayed in RTP only)");
            }
        }
    }

    fn incoming(&mut self, now: Now, incoming: IncomingCall) {
        let key = incoming.call;
        let trusted = self.endpoint.is_trusted(incoming.source.ip());
        // `label` names the reason in the call record; only trusted sources
        // get one, so that nobody else can fill the database.
        let reject = |this: &mut Self, code: u16, why: &str, label: &str| {
            tracing::info!(call = key.0, sip_call_id = %incoming.call_id, caller = %incoming.from_user,
                dialled = %incoming.dialled, code, reason = why, "call rejected");
            this.endpoint.reject(now.mono, key, code);
            this.count_call_ended(outcome::REJECTED);
            if trusted {
                this.record_refused(now, &incoming, label);
            }
        };
        if self.draining {
            return reject(self, 503, "shutting down", refusal::DRAINING);
        }
        if self.feature_code(now, &incoming) || self.consultation(now, &incoming) {
            return;
        }
        // Only trunks place calls into the hotline; an agent's phone may dial
        // feature codes (above) and nothing else, so no one can use it to
        // reach the outside.
        if !trusted {
            self.endpoint
                .count_rejection(crate::sip::admission::Rejection::Untrusted);
            return reject(self, 403, "not a trusted source", "untrusted");
        }
        let Some(offer_text) = incoming.offer.as_deref() else {
            return reject(self, 488, "no SDP offer", refusal::NO_SDP);
        };
        let negotiated = match sdp::negotiate_text(offer_text) {
            Ok(n) => n,
            Err(e) => {
                return reject(self, e.status_code(), &e.to_string(), refusal::SDP);
            }
        };
        let Some(entry) = self
            .bundle
            .flows
            .entry_for(&incoming.dialled)
            .map(str::to_string)
        else {
            return reject(
                self,
                404,
                "no flow for the dialled number",
                refusal::NO_FLOW,
            );
        };
        if self.answer_delay.is_zero() {
            self.answer(
                now,
                Ringing {
                    incoming,
                    negotiated,
                    entry,
                    answer_at: now.mono,
                },
            );
        } else {
            let answer_at = now.mono + self.answer_delay;
            self.endpoint.ring(now.mono, key);
            self.timers.insert((answer_at, key));
            self.ringing.insert(
                key,
                Ringing {
                    incoming,
                    negotiated,
                    entry,
                    answer_at,
                },
            );
        }
    }

    fn answer(&mut self, now: Now, ringing: Ringing) {
        let Ringing {
            incoming,
            negotiated,
            entry,
            ..
        } = ringing;
        let key = incoming.call;
        if self.draining {
            tracing::info!(call = key.0, "call refused: shutting down");
            self.endpoint.reject(now.mono, key, 503);
            self.count_call_ended(outcome::REJECTED);
            self.record_refused(now, &incoming, refusal::DRAINING);
            return;
        }
        let bundle = Arc::clone(&self.bundle);
        let params = negotiated.stream_params();
        let port = match self.media.open(key, params) {
            Ok(port) => port,
            Err(e) => {
                tracing::warn!(call = key.0, error = %e, "call refused: no media");
                self.endpoint.reject(now.mono, key, 503);
                self.count_call_ended(outcome::FAILED);
                self.record_refused(now, &incoming, refusal::NO_MEDIA_PORT);
                return;
            }
        };
        let answer = negotiated.answer().render(self.media_ip, port, key.0, 1);
        self.endpoint.answer(now.mono, key, &answer);
        let call_info = CallInfo {
            caller: incoming.from_user.clone(),
            dialled: incoming.dialled.clone(),
        };
        let flow = FlowRun::start(
            Arc::clone(&bundle.flows),
            &entry,
            call_info,
            now.mono,
            &self.env,
        );
        tracing::info!(call = key.0, sip_call_id = %incoming.call_id, caller = %incoming.from_user,
            dialled = %incoming.dialled, flow = %entry, flow_version = %bundle.flows.version(),
            codec = params.codec.name(), "call answered");
        self.stage_entered(Stage::Ivr);
        self.emit_live(LiveEvent::CallStarted {
            at: now.unix_seconds(),
            call: key.0,
            dialled: incoming.dialled.clone(),
        });
        self.calls.insert(
            key,
            Call {
                info: incoming,
                flow,
                bundle,
                stage: Stage::Ivr,
                answered_at: now.mono,
                media_open: true,
                sdp_session_version: 1,
                local_rtp_port: port,
                deadline: None,
                local_end: None,
                codec: params.codec,
                joining: None,
                queued: None,
                agent_leg: None,
                connected_agent: None,
                agent_released: false,
                trunk_leg: None,
                transferred_to: None,
                last_queue: None,
                announcements: 0,
                holding: false,
                callback_booked: false,
                entry,
                queue_name: None,
                queued_at: None,
                connected_at: None,
            },
        );
        self.dirty.push(key);
    }

    fn reoffer(&mut self, now: Now, key: CallId, offer: Option<String>) {
        let Some(call) = self.calls.get_mut(&key) else {
            self.endpoint.answer_reoffer(now.mono, key, None);
            return;
        };
        let negotiated = match offer.as_deref().map(sdp::negotiate_text) {
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                tracing::info!(call = key.0, error = %e, "re-INVITE refused");
                self.endpoint.answer_reoffer(now.mono, key, None);
                return;
            }
            None => {
                // A re-INVITE without SDP asks us to offer: we offer what we have.
                // Our answer stays as it was; the ACK carries theirs.
                self.endpoint.answer_reoffer(now.mono, key, None);
                return;
            }
        };
        self.media.update(key, negotiated.stream_params());
        call.sdp_session_version += 1;
        let answer = negotiated.answer().render(
            self.media_ip,
            call.local_rtp_port,
            key.0,
            call.sdp_session_version,
        );
        tracing::info!(
            call = key.0,
            send = negotiated.stream_params().send,
            "re-INVITE answered"
        );
        self.endpoint.answer_reoffer(now.mono, key, Some(&answer));
    }

    fn ended(&mut self, now: Now, key: CallId, reason: EndReason) {
        // Out of the queue (abandoned) or off the agent (wrap-up) first.
        self.caller_gone(now, key);
        let Some(call) = self.calls.remove(&key) else {
            return;
        };
        if let Some(at) = call.deadline {
            self.timers.remove(&(at, key));
        }
        if call.media_open {
            self.media.close(key);
        }
        self.stage_left(call.stage);
        let result = match (call.local_end, reason) {
            _ if call.callback_booked => outcome::CALLBACK,
            (Some(end), _) => end.outcome(),
            (None, EndReason::RemoteBye) => match call.stage {
                Stage::Ivr => outcome::ABANDONED_IVR,
                Stage::Queue => outcome::ABANDONED_QUEUE,
                Stage::Agent => outcome::ANSWERED,
                Stage::Transfer => outcome::TRANSFERRED,
            },
            (None, _) => outcome::FAILED,
        };
        self.count_call_ended(result);
        self.emit_live(LiveEvent::CallEnded {
            at: now.unix_seconds(),
            call: key.0,
            outcome: result.to_string(),
            language: call.flow.language(),
        });
        tracing::info!(call = key.0, sip_call_id = %call.info.call_id, outcome = result,
            reason = ?reason, language = ?call.flow.language().map(Language::code),
            path = %call.flow.path().join(">"), "call ended");
        let record = self.call_record(now, key, &call, result, reason);
        self.outputs.push_back(Output::Record(record));
    }

    /// A call refused before answer: a record with outcome `refused` and why.
    fn record_refused(&mut self, now: Now, incoming: &IncomingCall, reason: &str) {
        self.record_unanswered(
            now,
            incoming,
            crate::cdr::REFUSED,
            crate::cdr::hung_up_by::SERVICE,
            reason,
        );
    }

    /// The record of a call that ended before it was answered.
    fn record_unanswered(
        &mut self,
        now: Now,
        incoming: &IncomingCall,
        outcome: &str,
        hung_up_by: &str,
        reason: &str,
    ) {
        let at = now.wall_ms();
        let flow = self
            .bundle
            .flows
            .entry_for(&incoming.dialled)
            .unwrap_or_default()
            .to_string();
        self.outputs
            .push_back(Output::Record(crate::cdr::CallRecord {
                id: format!("{}:{}", incoming.call_id, incoming.call.0),
                call: incoming.call.0,
                sip_call_id: incoming.call_id.clone(),
                caller: incoming.from_user.clone(),
                dialled: incoming.dialled.clone(),
                outcome: outcome.to_string(),
                hung_up_by: hung_up_by.to_string(),
                ..refused_record(&self.bundle, flow, at, reason)
            }));
    }

    /// The endpoint refused an INVITE from a trusted source on its own.
    fn endpoint_refused(&mut self, now: Now, r: crate::sip::RefusedCall) {
        tracing::info!(sip_call_id = %r.call_id, caller = %r.from_user, dialled = %r.dialled,
            code = r.code, reason = r.reason.label(), "call refused by the endpoint");
        // Counted once per call: a refusal at max_calls answers retransmissions
        // from its transaction. Stateless refusals (max_transactions) would
        // count every retransmission, so only the record keeps them.
        if r.reason == crate::sip::Refusal::MaxCalls {
            self.count_call_ended(outcome::REJECTED);
        }
        let flow = self
            .bundle
            .flows
            .entry_for(&r.dialled)
            .unwrap_or_default()
            .to_string();
        self.outputs
            .push_back(Output::Record(crate::cdr::CallRecord {
                // No call number yet; a retransmission (same CSeq) is the same record.
                id: format!("{}:refused:{}", r.call_id, r.cseq),
                call: 0,
                sip_call_id: r.call_id,
                caller: r.from_user,
                dialled: r.dialled,
                ..refused_record(&self.bundle, flow, now.wall_ms(), r.reason.label())
            }));
    }

    fn call_record(
        &self,
        now: Now,
        key: CallId,
        call: &Call,
        result: &str,
        reason: EndReason,
    ) -> crate::cdr::CallRecord {
        use crate::cdr::hung_up_by;
        let wall = |at: Instant| now.wall_ms_at(at);
        let started = call
            .answered_at
            .checked_sub(self.answer_delay)
            .unwrap_or(call.answered_at);
        let (by, why) = match (call.local_end, reason) {
            (Some(LocalEnd::Answered), _) => (hung_up_by::AGENT, format!("{reason:?}")),
            (Some(LocalEnd::Transferred), _) => (
                hung_up_by::FAR_END,
                format!(
                    "transferred to {}",
                    call.transferred_to.as_deref().unwrap_or("?")
                ),
            ),
            (None, _) if call.transferred_to.is_some() => (
                hung_up_by::CALLER,
                format!(
                    "transferred to {}",
                    call.transferred_to.as_deref().unwrap_or("?")
                ),
            ),
            (Some(LocalEnd::SessionExpired), _) => {
                (hung_up_by::SERVICE, SESSION_EXPIRED.to_string())
            }
            (Some(end), _) => (hung_up_by::SERVICE, format!("{end:?}")),
            (None, EndReason::RemoteBye) => (hung_up_by::CALLER, format!("{reason:?}")),
            (None, _) => (hung_up_by::SERVICE, format!("{reason:?}")),
        };
        crate::cdr::CallRecord {
            id: record_id(call, key),
            call: key.0,
            sip_call_id: call.info.call_id.clone(),
            caller: call.info.from_user.clone(),
            dialled: call.info.dialled.clone(),
            flow: call.entry.clone(),
            flow_version: call.bundle.flows.version().to_string(),
            language: call.flow.language().map(|l| l.code().to_string()),
            path: call.flow.path().to_vec(),
            queue: call.queue_name.clone(),
            agent: call
                .connected_agent
                .as_ref()
                .map(|a| a.as_str().to_string()),
            outcome: result.to_string(),
            started_ms: wall(started),
            answered_ms: Some(wall(call.answered_at)),
            queued_ms: call.queued_at.map(wall),
            connected_ms: call.connected_at.map(wall),
            ended_ms: now.wall_ms(),
            hung_up_by: by.to_string(),
            reason: why,
        }
    }

    fn flow_event(&mut self, now: Now, key: CallId, event: FlowEvent) {
        if let Some(call) = self.calls.get_mut(&key) {
            if call.local_end.is_none() {
                call.flow.handle_event(now.mono, event, &self.env);
                self.dirty.push(key);
            }
        }
    }

    /// Carries out what the flow asked for, then re-arms its timer.
    fn drain_flow(&mut self, now: Now, key: CallId) {
        // Bounded by the engine's own step limit per event.
        loop {
            let Some(call) = self.calls.get_mut(&key) else {
                return;
            };
            let Some(action) = call.flow.poll_action() else {
                break;
            };
            match action {
                FlowAction::Play { play_id, prompts } => {
                    let library = Arc::clone(&call.bundle.prompts);
                    let clips: Vec<_> = prompts
                        .iter()
                        .filter_map(|p| {
                            let clip = library.clip(&p.id, p.language);
                            if clip.is_none() {
                                tracing::warn!(call = key.0, prompt = %p.id, language = %p.language, "no audio for prompt");
                            }
                            clip
                        })
                        .collect();
                    if clips.is_empty() {
                        call.flow.handle_event(
                            now.mono,
                            FlowEvent::PlaybackFinished { play_id },
                            &self.env,
                        );
                    } else {
                        self.media.play(key, play_id, clips);
                    }
                }
                FlowAction::StopPlayback => self.media.stop(key),
                FlowAction::LanguageSelected(language) => {
                    tracing::info!(call = key.0, language = language.code(), "language chosen");
                    self.observe(Observation::LanguageChosen(language));
                    self.emit_live(LiveEvent::LanguageChosen {
                        at: now.unix_seconds(),
                        call: key.0,
                        language,
                    });
                }
                FlowAction::Queue { queue, options } => {
                    self.join_queue(now, key, &queue, &options);
                }
                FlowAction::Transfer { target } => self.transfer(now, key, &target),
                FlowAction::HoldPlace => self.hold_place(now, key),
                FlowAction::BookCallback(request) => self.book_callback(now, key, request),
                FlowAction::Hangup { reason } => {
                    let end = LocalEnd::from_reason(&reason);
                    self.end_call_locally(now, key, end, &reason);
                    return;
                }
            }
        }
        self.rearm(key);
    }

    fn rearm(&mut self, key: CallId) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let next = call.flow.poll_timeout();
        if next != call.deadline {
            if let Some(old) = call.deadline {
                self.timers.remove(&(old, key));
            }
            if let Some(at) = next {
                self.timers.insert((at, key));
            }
            call.deadline = next;
        }
    }

    fn end_call_locally(&mut self, now: Now, key: CallId, end: LocalEnd, why: &str) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.local_end.is_some() {
            return;
        }
        call.local_end = Some(end);
        if let Some(at) = call.deadline.take() {
            self.timers.remove(&(at, key));
        }
        self.caller_gone(now, key);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if call.media_open {
            self.media.close(key);
            call.media_open = false;
        }
        tracing::info!(call = key.0, reason = why, "hanging up");
        self.endpoint.hangup(now.mono, key);
    }
}

/// Reasons in the records of calls refused before answer (the endpoint's own
/// are [`crate::sip::Refusal`] labels: `max_calls`, `max_transactions`).
mod refusal {
    pub const DRAINING: &str = "draining";
    pub const NO_MEDIA_PORT: &str = "no_media_port";
    pub const NO_SDP: &str = "no_sdp";
    pub const SDP: &str = "sdp_not_acceptable";
    pub const NO_FLOW: &str = "no_flow";
}

/// The fields every refused call's record shares.
fn refused_record(
    bundle: &FlowBundle,
    flow: String,
    at_ms: i64,
    reason: &str,
) -> crate::cdr::CallRecord {
    crate::cdr::CallRecord {
        id: String::new(),
        call: 0,
        sip_call_id: String::new(),
        caller: String::new(),
        dialled: String::new(),
        flow,
        flow_version: bundle.flows.version().to_string(),
        language: None,
        path: Vec::new(),
        queue: None,
        agent: None,
        outcome: crate::cdr::REFUSED.to_string(),
        started_ms: at_ms,
        answered_ms: None,
        queued_ms: None,
        connected_ms: None,
        ended_ms: at_ms,
        hung_up_by: crate::cdr::hung_up_by::SERVICE.to_string(),
        reason: reason.to_string(),
    }
}

/// The call record's id: SIP Call-ID and the call's number (unique across
/// restarts); queue log rows carry it to be joined with the record.
fn record_id(call: &Call, key: CallId) -> String {
    format!("{}:{}", call.info.call_id, key.0)
}

/// The call record reason (and log reason) of a call ended because a leg's
/// RFC 4028 session timer expired.
const SESSION_EXPIRED: &str = "session_expired";

/// How often wall-clock state is refreshed: opening hours behind
/// `hotline_language_offered` (minute resolution) and the wallboard's day.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests;
