//! The tokio shell: sockets, clocks and signals around the sans-IO cores.
//!
//! One task (the core loop) owns the SIP endpoint and every call through
//! `CallManager`; it reads the UDP socket itself and receives TCP messages,
//! media events and control requests over bounded channels. The media pacer
//! and the HTTP server run as their own tasks.

mod sinks;
pub mod tcp;

pub use crate::control::Control;
use crate::reload;
pub use crate::reload::{load_bundle, ReloadStatus};
pub use sinks::Sinks;

use crate::acd::QueueService;
use crate::api::{self, ApiState};
use crate::call::CallManager;
use crate::config::Config;
use crate::media::{MediaConfig, MediaEngine};
use crate::metrics::Metrics;
use crate::sip::{EndpointConfig, SipEndpoint, Transport};
use crate::time::Now;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tcp::TcpEvent;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen for SIP on {addr}: {source}")]
    SipBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for HTTP on {addr}: {source}")]
    HttpBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("flows in {dir} are not valid:\n{report}")]
    Flows { dir: String, report: String },
    #[error("agents in {file} are not valid:\n{report}")]
    Agents { file: String, report: String },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("trunks: {0}")]
    Trunks(String),
}

/// Runs the service until SIGINT/SIGTERM, then hangs up every call and returns.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::for_node(config.node_id.as_deref()));
    match config.tz() {
        Ok(tz) => metrics.today.set_timezone(tz),
        Err(e) => tracing::warn!(error = %e, "wallboard days follow Europe/Oslo"),
    }
    let bundle = load_bundle(&config.flows).map_err(|report| ServeError::Flows {
        dir: config.flows.display().to_string(),
        report,
    })?;
    let status = Arc::new(Mutex::new(ReloadStatus::loaded(bundle.flows.version())));
    let (agents_file, agents_required) = config.agents_path();
    let agents = reload::load_agents(&agents_file, agents_required).map_err(|report| {
        ServeError::Agents {
            file: agents_file.display().to_string(),
            report,
        }
    })?;

    let udp = UdpSocket::bind(config.sip_listen)
        .await
        .map_err(|source| ServeError::SipBind {
            addr: config.sip_listen,
            source,
        })?;
    let sip_addr = udp.local_addr().unwrap_or(config.sip_listen);
    let tcp_listener = TcpListener::bind(sip_addr)
        .await
        .map_err(|source| ServeError::SipBind {
            addr: sip_addr,
            source,
        })?;
    let http_listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|source| ServeError::HttpBind {
            addr: config.http_listen,
            source,
        })?;
    let http_addr = http_listener.local_addr().unwrap_or(config.http_listen);

    let (media, media_events) = MediaEngine::start(
        MediaConfig {
            bind_ip: sip_addr.ip(),
            port_min: config.rtp_ports.min,
            port_max: config.rtp_ports.max,
        },
        metrics.clone(),
    );
    media.set_default_rtp_timeout(
        (config.rtp_timeout_s > 0).then(|| Duration::from_secs(config.rtp_timeout_s)),
    );
    let mut advertised = sip_addr;
    if let Some(ip) = config.public_ip {
        advertised.set_ip(ip);
    }
    let mut endpoint = SipEndpoint::new(EndpointConfig {
        local_addr: advertised,
        user_agent: format!("hotline/{}", env!("CARGO_PKG_VERSION")),
        max_message_size: config.max_sip_message,
        max_calls: config.max_calls,
        max_transactions: config.max_sip_transactions,
    });
    let trunks = crate::trunk::Trunks::from_config(&config.trunks).map_err(ServeError::Trunks)?;
    let mut admission = config.admission();
    admission.trusted_sources.extend(
        trunks
            .trusted_sources()
            .into_iter()
            .map(crate::sip::admission::Cidr::host),
    );
    endpoint.set_admission(admission);
    endpoint.set_session_timers(config.session_timers());
    let bundle = Arc::new(bundle);
    prepare_series(&metrics, &bundle.flows);
    let records = match crate::cdr::RecordSink::start(&config.data_dir, metrics.clone()) {
        Ok(sink) => {
            // The journal has been replayed: the database holds every call.
            seed_today(&metrics, &config.data_dir, &bundle.flows);
            Some(sink)
        }
        Err(e) => {
            tracing::error!(error = %e, dir = %config.data_dir.display(),
                "call records disabled: the journal cannot be opened");
            None
        }
    };

    let events = crate::events::EventBus::new();
    let node = match (&config.node_id, &config.redis) {
        (Some(name), Some(url)) => {
            let client = crate::cluster::store::validate(name, url)?;
            let incarnation = format!("{name}.{}", Now::read().wall_ms());
            let setup = crate::cluster::ClusterSetup {
                name: name.clone(),
                incarnation: incarnation.clone(),
                prefix: "hotline:".to_string(),
                metrics: Arc::clone(&metrics),
                records: records.clone(),
                events: events.clone(),
            };
            let queues = crate::acd::from_flows::queues_from_flows(&bundle.flows);
            let link = crate::cluster::store::start(client, setup, queues, agents.clone());
            tracing::info!(node = %name, %incarnation, redis = %url, "cluster mode: queues shared through the store");
            let queue = crate::cluster::SharedQueue::new(crate::ids::NodeId::new(&incarnation));
            let manager = CallManager::with_queue(
                Now::read(),
                endpoint,
                media,
                Arc::clone(&bundle),
                config.media_ip(),
                crate::ids::NodeId::new(&incarnation),
                queue,
            );
            Node::Shared(Box::new(manager), link)
        }
        _ => Node::Local(Box::new(CallManager::new(
            Now::read(),
            endpoint,
            media,
            Arc::clone(&bundle),
            config.media_ip(),
        ))),
    };
    let io = Io {
        udp,
        tcp_listener,
        http_listener,
        http_addr,
        sip_addr,
        media_events,
        metrics,
        records,
        events,
        status,
        agents,
        agents_file,
        agents_required,
        trunks,
    };
    match node {
        Node::Local(manager) => run(*manager, None, io, &config).await,
        Node::Shared(manager, link) => run(*manager, Some(link), io, &config).await,
    }
}

/// Puts every callback a previous run left pending back in its place (the
/// journal was replayed into the database when the records started).
fn restore_callbacks<Q: QueueService>(
    manager: &mut CallManager<MediaEngine, Q>,
    data_dir: &std::path::Path,
) {
    let path = data_dir.join(crate::cdr::DB_FILE);
    let pending = crate::cdr::Store::open_read_only(&path).and_then(|s| s.pending_callbacks());
    match pending {
        Ok(pending) if !pending.is_empty() => {
            tracing::info!(
                count = pending.len(),
                "callbacks pending from before the restart"
            );
            manager.restore_callbacks(Now::read(), pending);
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, db = %path.display(),
            "pending callbacks could not be read: they are not called back until the next start"),
    }
}

/// A node alone, or one of a cluster.
enum Node {
    Local(Box<CallManager<MediaEngine, crate::acd::Acd>>),
    Shared(
        Box<CallManager<MediaEngine, crate::cluster::SharedQueue>>,
        crate::cluster::ClusterLink,
    ),
}

/// What the core loop is given to run with.
struct Io {
    udp: UdpSocket,
    tcp_listener: TcpListener,
    http_listener: TcpListener,
    http_addr: SocketAddr,
    sip_addr: SocketAddr,
    media_events: mpsc::Receiver<crate::media::MediaEvent>,
    metrics: Arc<Metrics>,
    records: Option<crate::cdr::RecordSink>,
    events: crate::events::EventBus,
    status: Arc<Mutex<ReloadStatus>>,
    agents: crate::acd::AgentDirectory,
    agents_file: std::path::PathBuf,
    agents_required: bool,
    trunks: crate::trunk::Trunks,
}

/// The core loop: every socket, channel and timer feeds the one
/// `CallManager`, until a signal stops it.
async fn run<Q: QueueService + StorePump>(
    mut manager: CallManager<MediaEngine, Q>,
    mut cluster: Option<crate::cluster::ClusterLink>,
    io: Io,
    config: &Config,
) -> Result<(), ServeError> {
    let Io {
        udp,
        tcp_listener,
        http_listener,
        http_addr,
        sip_addr,
        mut media_events,
        metrics,
        records,
        events,
        status,
        agents,
        agents_file,
        agents_required,
        trunks,
    } = io;
    if let Ok(tz) = config.tz() {
        manager.set_timezone(Now::read(), tz);
    }
    manager.set_answer_delay(Duration::from_millis(config.answer_delay_ms));
    manager.set_ready_on_register(config.ready_on_register);
    manager.set_trunks(trunks);
    manager.set_digest_algorithms(&config.digest_algorithms);
    manager.set_agents(Now::read(), agents);
    match (&records, &cluster) {
        (Some(_), None) => restore_callbacks(&mut manager, &config.data_dir),
        // The shared store keeps a cluster's callbacks: those of this node's
        // last run are handed to a live node (maybe this one) when that run
        // is reaped, so they are not put back from the records as well.
        (Some(_), Some(_)) => tracing::info!(
            "cluster mode: callbacks of an earlier run are carried on from the shared store"
        ),
        (None, _) => {}
    }
    let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpEvent>(4096);
    tokio::spawn(tcp::accept_loop(
        tcp_listener,
        tcp_tx.clone(),
        config.max_sip_message,
    ));
    let (control_tx, mut control_rx) = mpsc::channel::<Control>(256);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sinks = Sinks {
        metrics: Arc::clone(&metrics),
        records,
        events: events.clone(),
        cluster: cluster.as_ref().map(|c| c.live.clone()),
    };
    let mut store_inputs = cluster
        .as_mut()
        .map(|c| std::mem::replace(&mut c.inputs, mpsc::channel(1).1));
    sinks.deliver(Now::read(), &mut manager);
    let api_state = ApiState {
        metrics: Arc::clone(&metrics),
        control: control_tx.clone(),
        reload: Arc::clone(&status),
        flows_dir: config.flows.clone(),
        token: config.api_token.clone(),
        ready: Arc::clone(&ready),
        events,
        ws_token: config.ws_token.clone(),
    };
    tokio::spawn(api::serve(http_listener, api_state));
    reload::spawn_watchers(
        config.flows.clone(),
        (agents_file, agents_required),
        control_tx.clone(),
        Arc::clone(&status),
        metrics.clone(),
    );

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Signals)?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(ServeError::Signals)?;

    tracing::info!(
        sip_udp = %sip_addr, sip_tcp = %sip_addr, http = %http_addr,
        rtp = %format!("{}-{}", config.rtp_ports.min, config.rtp_ports.max),
        flows = %config.flows.display(), flow_version = %manager.bundle().flows.version(),
        "hotline ready: SIP udp+tcp {sip_addr}, HTTP http://{http_addr}"
    );

    let mut tcp_writers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    // Shutdown: first drain (no new calls, calls in progress may finish until
    // the drain limit), then BYE whoever is left and wait for their answers.
    let mut shutdown_deadline: Option<Instant> = None;
    let mut hanging_up = false;
    let far = Duration::from_secs(3600);

    loop {
        let now = Instant::now();
        let wake = manager
            .poll_timeout()
            .map(Instant::from_std)
            .unwrap_or(now + far);
        let wake = match shutdown_deadline {
            Some(d) => wake.min(d),
            None => wake,
        };
        tokio::select! {
            received = udp.recv_from(&mut buf) => match received {
                Ok((n, source)) => {
                    let data = buf.get(..n).unwrap_or(&[]);
                    manager.handle_sip(Now::read(), Transport::Udp, source, data);
                }
                Err(e) => tracing::debug!(error = %e, "udp receive error"),
            },
            Some(event) = tcp_rx.recv() => match event {
                TcpEvent::Connected { peer, writer } => {
                    tcp_writers.insert(peer, writer);
                }
                TcpEvent::Message { peer, data } => {
                    manager.handle_sip(Now::read(), Transport::Tcp, peer, &data);
                }
                TcpEvent::Closed { peer } => {
                    tcp_writers.remove(&peer);
                }
            },
            Some(event) = media_events.recv() => {
                manager.handle_media(Now::read(), event);
            }
            Some(control) = control_rx.recv() => match control {
                Control::Calls(reply) => {
                    let _ = reply.send(manager.summaries(Now::read()));
                }
                Control::Swap(bundle) => {
                    tracing::info!(flow_version = %bundle.flows.version(), "flows reloaded");
                    prepare_series(&metrics, &bundle.flows);
                    if let Some(c) = &cluster {
                        let queues = crate::acd::from_flows::queues_from_flows(&bundle.flows);
                        c.config.send_modify(|(q, _)| *q = queues);
                    }
                    manager.set_bundle(Now::read(), bundle);
                }
                Control::SwapAgents(directory) => {
                    if let Some(c) = &cluster {
                        let agents = directory.clone();
                        c.config.send_modify(|(_, a)| *a = agents);
                    }
                    manager.set_agents(Now::read(), directory);
                }
                Control::Agents(reply) => {
                    let _ = reply.send(manager.agent_summaries(Now::read()));
                }
                Control::Queues(reply) => {
                    let _ = reply.send(manager.queue_summaries(Now::read()));
                }
                Control::Callbacks(reply) => {
                    let _ = reply.send(manager.callback_summaries(Now::read()));
                }
                Control::Transfer { call, target, reply } => {
                    let _ = reply.send(manager.transfer_call(Now::read(), call, target));
                }
                Control::SetAgentState { agent, state, reason, reply } => {
                    let result = manager.set_agent_state(Now::read(), &agent, &state, reason);
                    let _ = reply.send(result);
                }
            },
            Some(input) = store_input(&mut store_inputs) => {
                manager.handle_queue(Now::read(), |queue, now| queue.handle_store(now, input));
                metrics.cluster_degraded.set(i64::from(manager.queue_mut().is_degraded()));
            }
            _ = tokio::time::sleep_until(wake) => {
                manager.handle_timeout(Now::read());
            }
            _ = sigterm.recv(), if shutdown_deadline.is_none() => {
                shutdown_deadline = Some(begin_shutdown(&mut manager, &ready, config, "SIGTERM"));
            }
            _ = sigint.recv(), if shutdown_deadline.is_none() => {
                shutdown_deadline = Some(begin_shutdown(&mut manager, &ready, config, "SIGINT"));
            }
        }
        // What others wait for goes first: the store's writes and the SIP
        // messages; then records, metrics and live events.
        if let Some(c) = &cluster {
            while c.ops.capacity() > 0 {
                let Some(op) = manager.queue_mut().poll_store_op() else {
                    break;
                };
                if c.ops.try_send(op).is_err() {
                    break;
                }
            }
        }
        while let Some(t) = manager.poll_transmit() {
            match t.transport {
                Transport::Udp => {
                    if let Err(e) = udp.try_send_to(&t.payload, t.destination) {
                        tracing::debug!(destination = %t.destination, error = %e, "udp send failed");
                    }
                }
                Transport::Tcp => match tcp_writers.get(&t.destination) {
                    Some(w) => {
                        if w.try_send(t.payload).is_err() {
                            tracing::warn!(destination = %t.destination, "tcp write queue full: message dropped");
                        }
                    }
                    None => tcp::connect_and_send(
                        t.destination,
                        t.payload,
                        tcp_tx.clone(),
                        config.max_sip_message,
                    ),
                },
            }
        }
        sinks.deliver(Now::read(), &mut manager);
        if let Some(deadline) = shutdown_deadline {
            let now = Instant::now();
            if manager.call_count() == 0 || (hanging_up && now >= deadline) {
                tracing::info!(calls_left = manager.call_count(), "hotline stopped");
                return Ok(());
            }
            if !hanging_up && now >= deadline {
                // The drain limit passed: say goodbye to whoever is left.
                tracing::info!(
                    calls = manager.call_count(),
                    "drain limit reached: hanging up calls in progress"
                );
                manager.shut_down(Now::read());
                hanging_up = true;
                shutdown_deadline = Some(now + Duration::from_millis(config.shutdown_grace_ms));
            }
        }
    }
}

/// Series for the flow set's queues at zero, so dashboards and alerts see
/// them before the first call.
fn prepare_series(metrics: &Metrics, flows: &crate::flow::FlowSet) {
    let queues: Vec<&str> = flows.queues.keys().map(String::as_str).collect();
    metrics.prepare_series(&queues);
}

/// Seeds the wallboard's "today" from the calls recorded since local midnight,
/// so that a restart mid-day does not zero it. Without a readable database
/// the day starts from zero (logged).
fn seed_today(metrics: &Metrics, data_dir: &std::path::Path, flows: &crate::flow::FlowSet) {
    let now = chrono::Utc::now();
    let day = metrics.today.day_at(now);
    let from_ms = metrics.today.midnight_ms(now);
    let queues = crate::acd::from_flows::queues_from_flows(flows);
    let default_short = crate::acd::QueueConfig::new("").short_abandon_threshold;
    let short_abandon = |queue: &str| {
        queues
            .queues
            .iter()
            .find(|q| q.name == queue)
            .map_or(default_short, |q| q.short_abandon_threshold)
    };
    let path = data_dir.join(crate::cdr::DB_FILE);
    let seeded = crate::cdr::Store::open_read_only(&path)
        .and_then(|store| crate::today::day_totals(&store, day, from_ms, i64::MAX, short_abandon));
    match seeded {
        Ok(totals) => {
            let calls: u64 = totals.outcomes.values().sum();
            metrics.today.seed(now, &totals);
            tracing::info!(%day, calls, "wallboard totals seeded from today's call records");
        }
        Err(e) => {
            tracing::warn!(error = %e, %day, "wallboard totals start from zero: call records unreadable");
        }
    }
}

/// The next input from the store, in cluster mode (never, alone).
async fn store_input(
    inputs: &mut Option<mpsc::Receiver<crate::cluster::StoreInput>>,
) -> Option<crate::cluster::StoreInput> {
    match inputs {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What the core loop does with a queue engine's store, if it has one.
pub trait StorePump {
    /// The next write for the store.
    fn poll_store_op(&mut self) -> Option<crate::cluster::StoreOp> {
        None
    }
    /// What the store said.
    fn handle_store(&mut self, _now: Now, _input: crate::cluster::StoreInput) {}
    /// Whether the node serves its callers alone (the store is away).
    fn is_degraded(&self) -> bool {
        false
    }
}

/// A single node has no store.
impl StorePump for crate::acd::Acd {}

impl StorePump for crate::cluster::SharedQueue {
    fn poll_store_op(&mut self) -> Option<crate::cluster::StoreOp> {
        crate::cluster::SharedQueue::poll_store_op(self)
    }
    fn handle_store(&mut self, now: Now, input: crate::cluster::StoreInput) {
        crate::cluster::SharedQueue::handle_store(self, now, input)
    }
    fn is_degraded(&self) -> bool {
        crate::cluster::SharedQueue::is_degraded(self)
    }
}

fn begin_shutdown<M: crate::call::MediaControl, Q: QueueService>(
    manager: &mut CallManager<M, Q>,
    ready: &std::sync::atomic::AtomicBool,
    config: &Config,
    signal: &str,
) -> Instant {
    tracing::info!(
        signal,
        calls = manager.call_count(),
        drain_limit_s = config.drain_limit_s,
        "shutting down: refusing new calls (503), letting calls in progress finish"
    );
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    manager.start_draining(Now::read());
    Instant::now() + Duration::from_secs(config.drain_limit_s)
}
