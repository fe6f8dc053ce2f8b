//! The shell of cluster mode: every conversation with Redis. The cores
//! ([`SharedQueue`](super::SharedQueue), [`Dispatcher`]) decide; the tasks
//! here carry their writes out with the Lua scripts in `lua/`, read the
//! streams, keep this node's heartbeat, take the dispatcher's lease when it
//! is free, reap nodes whose heartbeat lapsed, and tell the core loop when
//! the store comes and goes.
//!
//! Keys (all under one prefix, `hotline:` by default):
//! `c:{caller}` a caller's entry, `callers` and `n:{node}:callers` their sets,
//! `a:{agent}` an agent's state and live offer, `phone:{agent}` where its
//! phone can be rung, `node:{node}` a heartbeat with a lease, `nodes`,
//! `dispatcher` the dispatcher's lease, `epoch` its fencing number, `offer`
//! nothing (offer ids come from the dispatcher's epoch and counter),
//! `events` the stream to the dispatcher, `inbox:{node}` a stream per node,
//! `view` the latest cluster view, `boot` this store's life (a new value
//! after it lost its data), and the channel `live` for live events.

use super::dispatcher::{DispatchOp, Dispatcher};
use super::shared::{StoreInput, StoreOp};
use super::view::ClusterView;
use super::wire::Snapshot;
use super::wire::{Event, Inbox, WireCallback, WireCaller, WireHeld, WireJoinOptions};
use crate::acd::{AgentDirectory, QueuesConfig};
use crate::events::{EventBus, LiveEvent};
use crate::time::Now;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A node's heartbeat lasts this long without renewal.
pub const NODE_LEASE: Duration = Duration::from_millis(2500);
/// The dispatcher's lease.
pub const DISPATCHER_LEASE: Duration = Duration::from_millis(2500);
/// How often heartbeats, leases and the reaper run.
pub const TICK: Duration = Duration::from_millis(500);
/// Longest stream kept (entries), trimmed approximately.
const EVENTS_MAXLEN: &str = "100000";
const INBOX_MAXLEN: &str = "10000";
/// How long a phone's contact is kept without a new REGISTER.
const PHONE_TTL_MS: u64 = 3_600_000;
/// Channel sizes between the store tasks and the core loop.
pub const CHANNEL: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis URL `{url}` is not valid: {source} (write e.g. redis://127.0.0.1:6379/0)")]
    BadUrl {
        url: String,
        source: redis::RedisError,
    },
    #[error("node_id `{0}` is not valid: use 1-32 letters, digits, `-` or `_`")]
    BadNodeId(String),
}

/// What the cluster tasks need to know of this node.
#[derive(Clone)]
pub struct ClusterSetup {
    /// The configured name (`node_id`), for metrics and logs.
    pub name: String,
    /// This process's incarnation: the name and its start time, so that a
    /// restarted node is never taken for the process it replaces.
    pub incarnation: String,
    pub prefix: String,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub records: Option<crate::cdr::RecordSink>,
    pub events: EventBus,
}

/// The core loop's ends of the cluster tasks.
pub struct ClusterLink {
    /// Writes from this node's queue engine.
    pub ops: mpsc::Sender<StoreOp>,
    /// What the store says to this node.
    pub inputs: mpsc::Receiver<StoreInput>,
    /// This node's live events, for the other nodes' wallboards.
    pub live: mpsc::Sender<LiveEvent>,
    /// Queues and agents as loaded, for the dispatcher.
    pub config: watch::Sender<(QueuesConfig, AgentDirectory)>,
}

/// Where the store is: one Redis, or the master that Redis Sentinel names
/// (found again on every reconnection, so a failover is followed).
#[derive(Clone)]
pub enum StoreAddress {
    Direct(Client),
    Sentinel {
        /// `redis://host:port` of each sentinel.
        sentinels: Vec<String>,
        /// The monitored master's name.
        service: String,
        /// The master's password (`requirepass`), if it has one.
        password: Option<String>,
    },
}

/// Checks the node id and the Redis URL (a bad one is an error at start):
/// `redis://host:port/db`, or `redis+sentinel://h1:26379,h2:26379/service`
/// for a master that Sentinel fails over.
pub fn validate(node_id: &str, url: &str) -> Result<StoreAddress, ClusterError> {
    let ok = !node_id.is_empty()
        && node_id.len() <= 32
        && node_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(ClusterError::BadNodeId(node_id.to_string()));
    }
    let bad = |why: &str| ClusterError::BadUrl {
        url: url.to_string(),
        source: redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "",
            why.to_string(),
        )),
    };
    if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        // `:password@` before the hosts is the master's password.
        let (password, rest) = match rest.split_once('@') {
            Some((auth, hosts)) => (
                Some(auth.trim_start_matches(':').to_string()).filter(|p| !p.is_empty()),
                hosts,
            ),
            None => (None, rest),
        };
        let (hosts, service) = rest.split_once('/').ok_or_else(|| {
            bad("name the master after the hosts: redis+sentinel://h1:26379,h2:26379/mymaster")
        })?;
        let service = service.trim_end_matches('/');
        if service.is_empty() {
            return Err(bad("the master's name is missing after the last /"));
        }
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{h}"))
            .collect();
        if sentinels.is_empty() {
            return Err(bad("no sentinel host"));
        }
        for s in &sentinels {
            Client::open(s.as_str()).map_err(|source| ClusterError::BadUrl {
                url: url.to_string(),
                source,
            })?;
        }
        return Ok(StoreAddress::Sentinel {
            sentinels,
            service: service.to_string(),
            password,
        });
    }
    Client::open(url)
        .map(StoreAddress::Direct)
        .map_err(|source| ClusterError::BadUrl {
            url: url.to_string(),
            source,
        })
}

impl StoreAddress {
    /// A client for the store now (with Sentinel: its current master).
    async fn client(&self) -> redis::RedisResult<Client> {
        match self {
            StoreAddress::Direct(client) => Ok(client.clone()),
            StoreAddress::Sentinel {
                sentinels,
                service,
                password,
            } => {
                let mut sentinel = redis::sentinel::Sentinel::build(sentinels.clone())?;
                let node = password.as_ref().map(|p| {
                    redis::sentinel::SentinelNodeConnectionInfo::default()
                        .set_redis_connection_info(
                            redis::RedisConnectionInfo::default().set_password(p),
                        )
                });
                sentinel.async_master_for(service, node.as_ref()).await
            }
        }
    }
}

/// The Lua scripts, loaded once.
struct Scripts {
    join: Script,
    leave: Script,
    tell: Script,
    offer: Script,
    settle: Script,
    notify: Script,
    claim: Script,
    reap: Script,
    mark: Script,
    snapshot: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            join: Script::new(include_str!("lua/join.lua")),
            leave: Script::new(include_str!("lua/leave.lua")),
            tell: Script::new(include_str!("lua/tell.lua")),
            offer: Script::new(include_str!("lua/offer.lua")),
            settle: Script::new(include_str!("lua/settle.lua")),
            notify: Script::new(include_str!("lua/notify.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
            reap: Script::new(include_str!("lua/reap.lua")),
            mark: Script::new(include_str!("lua/mark.lua")),
            snapshot: Script::new(include_str!("lua/snapshot.lua")),
        }
    }
}

async fn connect(
    store: &StoreAddress,
    response: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(response));
    store
        .client()
        .await?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Starts the cluster tasks; the core loop gets its ends.
pub fn start(
    client: StoreAddress,
    setup: ClusterSetup,
    queues: QueuesConfig,
    agents: AgentDirectory,
) -> ClusterLink {
    let (ops_tx, ops_rx) = mpsc::channel(CHANNEL);
    let (inputs_tx, inputs_rx) = mpsc::channel(CHANNEL);
    let (live_tx, live_rx) = mpsc::channel(CHANNEL);
    let (config_tx, config_rx) = watch::channel((queues, agents));
    let shared = Arc::new(Shared {
        up: AtomicBool::new(true),
        wake_health: tokio::sync::Notify::new(),
        max_epoch: AtomicU64::new(0),
        up_since: std::sync::atomic::AtomicI64::new(Now::read().wall_ms()),
    });
    let scripts = Arc::new(Scripts::new());
    tokio::spawn(writer(
        client.clone(),
        setup.clone(),
        Arc::clone(&scripts),
        Arc::clone(&shared),
        ops_rx,
    ));
    tokio::spawn(health(
        client.clone(),
        setup.clone(),
        Arc::clone(&shared),
        inputs_tx.clone(),
    ));
    tokio::spawn(inbox(client.clone(), setup.clone(), inputs_tx.clone()));
    tokio::spawn(views(client.clone(), setup.clone(), inputs_tx));
    tokio::spawn(live_out(client.clone(), setup.clone(), live_rx));
    tokio::spawn(live_in(client.clone(), setup.clone()));
    tokio::spawn(dispatch(client, setup, scripts, shared, config_rx));
    ClusterLink {
        ops: ops_tx,
        inputs: inputs_rx,
        live: live_tx,
        config: config_tx,
    }
}

/// State the tasks share.
struct Shared {
    /// Whether the store answers (as the health task last found).
    up: AtomicBool,
    /// A write failed: check the store now.
    wake_health: tokio::sync::Notify,
    /// The highest dispatcher epoch seen, so that one handed out after the
    /// store lost its data is still higher (fencing holds).
    max_epoch: AtomicU64,
    /// Unix ms since when this node has reached the store without a break.
    /// Nodes are reaped only by a dispatcher connected longer than a node's
    /// lease: after an outage (a restart, a failover) every heartbeat has
    /// lapsed, and the live nodes need one lease to renew theirs.
    up_since: std::sync::atomic::AtomicI64,
}

/// Carries this node's writes out, in order. A write that fails is dropped
/// (the node is about to be degraded, and puts everything back when the
/// store returns).
async fn writer(
    client: StoreAddress,
    setup: ClusterSetup,
    scripts: Arc<Scripts>,
    shared: Arc<Shared>,
    mut ops: mpsc::Receiver<StoreOp>,
) {
    let mut con: Option<MultiplexedConnection> = None;
    while let Some(op) = ops.recv().await {
        if con.is_none() {
            con = connect(&client, Duration::from_millis(1000)).await.ok();
        }
        let Some(c) = con.as_mut() else {
            shared.wake_health.notify_one();
            continue;
        };
        let mut result = apply(c, &scripts, &setup, &op).await;
        if let (StoreOp::Event(Event::CallEnded { caller }), Ok(())) = (&op, &result) {
            // Stage timing of an offer (bench/cluster.sh reads it at debug).
            tracing::debug!(caller = %caller.key(), "store: call end written");
        }
        if result.is_err() {
            // A connection the store dropped (it restarted): once more on a
            // fresh one before the write is given up.
            con = connect(&client, Duration::from_millis(1000)).await.ok();
            if let Some(c) = con.as_mut() {
                result = apply(c, &scripts, &setup, &op).await;
            }
        }
        setup
            .metrics
            .cluster_store_ops_total
            .with_label_values(&[if result.is_ok() { "ok" } else { "error" }])
            .inc();
        if let Err(e) = result {
            tracing::warn!(error = %e, "store write failed: given up");
            con = None;
            shared.wake_health.notify_one();
        }
    }
}

async fn apply(
    con: &mut MultiplexedConnection,
    scripts: &Scripts,
    setup: &ClusterSetup,
    op: &StoreOp,
) -> redis::RedisResult<()> {
    let p = setup.prefix.as_str();
    match op {
        StoreOp::Event(event) => match event {
            Event::Join {
                caller,
                queue,
                language,
                options,
                joined_ms,
                number,
                callback,
                held,
            }
            | Event::Restore {
                caller,
                queue,
                language,
                options,
                joined_ms,
                number,
                callback,
                held,
                ..
            } => {
                let talking_to = match event {
                    Event::Restore { talking_to, .. } => talking_to.as_deref(),
                    _ => None,
                };
                let entry = Entry {
                    caller,
                    queue,
                    language: *language,
                    options,
                    joined_ms: *joined_ms,
                    talking_to,
                    number,
                    callback: callback.as_ref(),
                    held: *held,
                };
                join(con, scripts, p, &entry, event).await
            }
            Event::Hold { caller, held } => mark(con, scripts, p, caller, *held, None, event).await,
            Event::KeepForCallback {
                caller,
                callback,
                held,
            } => mark(con, scripts, p, caller, *held, Some(callback), event).await,
            Event::Leave { caller, .. } | Event::CallEnded { caller } => {
                let _: i64 = scripts
                    .leave
                    .prepare_invoke()
                    .arg(p)
                    .arg(caller.key())
                    .arg(json(event))
                    .arg(EVENTS_MAXLEN)
                    .invoke_async(con)
                    .await?;
                Ok(())
            }
            Event::OfferResult { .. } | Event::AgentRequest { .. } | Event::NodeLost { .. } => {
                tell(con, scripts, p, event, "", "-").await
            }
            Event::Phone { agent, contact, .. } => {
                let contact = contact.as_ref().map(json).unwrap_or_default();
                tell(con, scripts, p, event, agent, &contact).await
            }
        },
        StoreOp::Phone { agent, contact } => {
            let event = Event::Phone {
                agent: agent.clone(),
                contact: contact.clone(),
                home: setup.incarnation.clone(),
            };
            let text = contact.as_ref().map(json).unwrap_or_default();
            tell(con, scripts, p, &event, agent, &text).await
        }
    }
}

/// A caller's entry as a node writes it (joining, or put back).
struct Entry<'a> {
    caller: &'a WireCaller,
    queue: &'a str,
    language: crate::language::Language,
    options: &'a WireJoinOptions,
    joined_ms: i64,
    talking_to: Option<&'a str>,
    number: &'a str,
    callback: Option<&'a WireCallback>,
    held: WireHeld,
}

async fn join(
    con: &mut MultiplexedConnection,
    scripts: &Scripts,
    p: &str,
    entry: &Entry<'_>,
    event: &Event,
) -> redis::RedisResult<()> {
    let _: i64 = scripts
        .join
        .prepare_invoke()
        .arg(p)
        .arg(entry.caller.key())
        .arg(&entry.caller.node)
        .arg(entry.caller.call)
        .arg(entry.queue)
        .arg(entry.language.code())
        .arg(json(entry.options))
        .arg(entry.joined_ms)
        .arg(if entry.talking_to.is_some() {
            "talking"
        } else {
            "waiting"
        })
        .arg(entry.talking_to.unwrap_or(""))
        .arg(entry.number)
        .arg(json(event))
        .arg(EVENTS_MAXLEN)
        .arg(json(&entry.held))
        .arg(entry.callback.map(json).unwrap_or_default())
        .invoke_async(con)
        .await?;
    Ok(())
}

/// A caller's place held, or kept for a callback, with the event.
async fn mark(
    con: &mut MultiplexedConnection,
    scripts: &Scripts,
    p: &str,
    caller: &WireCaller,
    held: WireHeld,
    callback: Option<&WireCallback>,
    event: &Event,
) -> redis::RedisResult<()> {
    let _: i64 = scripts
        .mark
        .prepare_invoke()
        .arg(p)
        .arg(caller.key())
        .arg(json(&held))
        .arg(callback.map_or_else(|| "-".to_string(), json))
        .arg(json(event))
        .arg(EVENTS_MAXLEN)
        .invoke_async(con)
        .await?;
    Ok(())
}

async fn tell(
    con: &mut MultiplexedConnection,
    scripts: &Scripts,
    p: &str,
    event: &Event,
    agent: &str,
    contact: &str,
) -> redis::RedisResult<()> {
    let _: i64 = scripts
        .tell
        .prepare_invoke()
        .arg(p)
        .arg(json(event))
        .arg(EVENTS_MAXLEN)
        .arg(agent)
        .arg(contact)
        .arg(PHONE_TTL_MS)
        .invoke_async(con)
        .await?;
    Ok(())
}

/// This node's heartbeat, and whether the store answers and still holds
/// its data. The only task that tells the core loop the store came or went.
async fn health(
    client: StoreAddress,
    setup: ClusterSetup,
    shared: Arc<Shared>,
    inputs: mpsc::Sender<StoreInput>,
) {
    let p = setup.prefix.clone();
    let mut con: Option<MultiplexedConnection> = None;
    let mut boot: Option<String> = None;
    let mut failures = 0u32;
    let mut up = true;
    let metrics = &setup.metrics;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shared.wake_health.notified() => {}
        }
        if con.is_none() {
            con = connect(&client, Duration::from_millis(500)).await.ok();
        }
        let beat = match con.as_mut() {
            Some(c) => heartbeat(c, &p, &setup).await,
            None => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "cannot connect",
            ))),
        };
        match beat {
            Ok((seen_boot, nodes)) => {
                failures = 0;
                metrics.cluster_nodes_alive.set(nodes);
                metrics.cluster_redis_up.set(1);
                let reset = boot.as_ref().is_some_and(|b| *b != seen_boot);
                boot = Some(seen_boot);
                if reset {
                    tracing::warn!("the store is another server (restarted, failed over or emptied): this node puts its callers back");
                    metrics.cluster_store_resets_total.inc();
                }
                if !up || reset {
                    up = true;
                    shared.up.store(true, Ordering::SeqCst);
                    shared
                        .up_since
                        .store(Now::read().wall_ms(), Ordering::SeqCst);
                    tracing::info!(node = %setup.name, "store reachable");
                    let _ = inputs.send(StoreInput::Reachable { reset }).await;
                }
            }
            Err(e) => {
                con = None;
                failures += 1;
                if up && failures >= 2 {
                    up = false;
                    shared.up.store(false, Ordering::SeqCst);
                    metrics.cluster_redis_up.set(0);
                    tracing::error!(error = %e, node = %setup.name,
                        "store unreachable: serving this node's callers with its own agents");
                    let _ = inputs.send(StoreInput::Unreachable).await;
                }
            }
        }
    }
}

/// Renews this node's heartbeat; the store's boot id and how many nodes live.
async fn heartbeat(
    con: &mut MultiplexedConnection,
    p: &str,
    setup: &ClusterSetup,
) -> redis::RedisResult<(String, i64)> {
    let fresh = format!("{}-{}", setup.incarnation, Now::read().wall_ms());
    let (_, _, _, boot, nodes): ((), i64, Option<String>, String, Vec<String>) = redis::pipe()
        .cmd("SET")
        .arg(format!("{p}node:{}", setup.incarnation))
        .arg(&setup.name)
        .arg("PX")
        .arg(NODE_LEASE.as_millis() as u64)
        .cmd("SADD")
        .arg(format!("{p}nodes"))
        .arg(&setup.incarnation)
        .cmd("SET")
        .arg(format!("{p}boot"))
        .arg(&fresh)
        .arg("NX")
        .arg("GET")
        .cmd("GET")
        .arg(format!("{p}boot"))
        .cmd("SMEMBERS")
        .arg(format!("{p}nodes"))
        .query_async(con)
        .await?;
    let alive = i64::try_from(nodes.len()).unwrap_or(i64::MAX);
    // A failover (or restart) brings another server: its run id says so.
    let info: String = redis::cmd("INFO").arg("server").query_async(con).await?;
    let run_id = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .unwrap_or("")
        .trim();
    Ok((format!("{boot}/{run_id}"), alive))
}

/// This node's inbox: the dispatcher's messages, in order.
async fn inbox(client: StoreAddress, setup: ClusterSetup, inputs: mpsc::Sender<StoreInput>) {
    let key = format!("{}inbox:{}", setup.prefix, setup.incarnation);
    let mut last = "$".to_string();
    let mut con: Option<MultiplexedConnection> = None;
    loop {
        if con.is_none() {
            con = connect(&client, Duration::from_secs(3)).await.ok();
            if con.is_none() {
                tokio::time::sleep(TICK).await;
                continue;
            }
        }
        let Some(c) = con.as_mut() else { continue };
        match read_stream(c, &key, &last, "m").await {
            Ok(entries) => {
                for (id, text) in entries {
                    last = id;
                    match serde_json::from_str::<Inbox>(&text) {
                        Ok(message) => {
                            if inputs.send(StoreInput::Inbox(message)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable inbox message skipped"),
                    }
                }
            }
            Err(_) => {
                con = None;
                tokio::time::sleep(TICK).await;
            }
        }
    }
}

/// Reads a stream after `last`, waiting up to a second; (id, field) pairs.
async fn read_stream(
    con: &mut MultiplexedConnection,
    key: &str,
    last: &str,
    field: &str,
) -> redis::RedisResult<Vec<(String, String)>> {
    let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(500)
        .arg("BLOCK")
        .arg(1000)
        .arg("STREAMS")
        .arg(key)
        .arg(last)
        .query_async(con)
        .await?;
    let mut out = Vec::new();
    for k in reply.map(|r| r.keys).unwrap_or_default() {
        for entry in k.ids {
            let text: String = entry.get(field).unwrap_or_default();
            out.push((entry.id, text));
        }
    }
    Ok(out)
}

/// The dispatcher's latest view, polled; and every second this node's day
/// totals out and the other nodes' in, for whole-hotline wallboards.
async fn views(client: StoreAddress, setup: ClusterSetup, inputs: mpsc::Sender<StoreInput>) {
    let key = format!("{}view", setup.prefix);
    let mut con: Option<MultiplexedConnection> = None;
    let mut last_at = 0i64;
    let mut ticks = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if con.is_none() {
            con = connect(&client, Duration::from_millis(500)).await.ok();
        }
        let Some(c) = con.as_mut() else { continue };
        ticks = ticks.wrapping_add(1);
        if ticks % 4 == 0 && exchange_days(c, &setup).await.is_err() {
            con = None;
            continue;
        }
        let text: redis::RedisResult<Option<String>> =
            redis::cmd("GET").arg(&key).query_async(c).await;
        match text {
            Ok(Some(text)) => {
                if let Ok(view) = serde_json::from_str::<ClusterView>(&text) {
                    if view.at_ms != last_at {
                        last_at = view.at_ms;
                        if inputs.send(StoreInput::View(view)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(_) => con = None,
        }
    }
}

/// Publishes this node's day totals (for 5 s) and reads the other nodes'.
async fn exchange_days(
    con: &mut MultiplexedConnection,
    setup: &ClusterSetup,
) -> redis::RedisResult<()> {
    let p = &setup.prefix;
    let now = Now::read();
    let mine = super::wire::WireDay::from(&setup.metrics.today.snapshot(now.wall));
    let _: () = redis::cmd("SET")
        .arg(format!("{p}today:{}", setup.incarnation))
        .arg(json(&mine))
        .arg("PX")
        .arg(5000)
        .query_async(con)
        .await?;
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{p}nodes"))
        .query_async(con)
        .await?;
    let others: Vec<String> = nodes
        .into_iter()
        .filter(|n| *n != setup.incarnation)
        .collect();
    let mut days = std::collections::BTreeMap::new();
    if !others.is_empty() {
        let keys: Vec<String> = others.iter().map(|n| format!("{p}today:{n}")).collect();
        let texts: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(con).await?;
        for (node, text) in others.into_iter().zip(texts) {
            let day = text.and_then(|t| serde_json::from_str::<super::wire::WireDay>(&t).ok());
            if let Some(totals) = day.and_then(|d| d.totals()) {
                days.insert(node, totals);
            }
        }
    }
    setup.metrics.today.set_others(days);
    Ok(())
}

/// A live event of this node for the others' wallboards.
#[derive(serde::Serialize, serde::Deserialize)]
struct LiveMessage {
    node: String,
    event: LiveEvent,
}

async fn live_out(client: StoreAddress, setup: ClusterSetup, mut live: mpsc::Receiver<LiveEvent>) {
    let channel = format!("{}live", setup.prefix);
    let mut con: Option<MultiplexedConnection> = None;
    while let Some(event) = live.recv().await {
        if con.is_none() {
            con = connect(&client, Duration::from_millis(500)).await.ok();
        }
        let Some(c) = con.as_mut() else { continue };
        let text = json(&LiveMessage {
            node: setup.incarnation.clone(),
            event,
        });
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(text)
            .query_async(c)
            .await;
        if sent.is_err() {
            con = None;
        }
    }
}

/// The other nodes' live events, onto this node's bus.
async fn live_in(client: StoreAddress, setup: ClusterSetup) {
    use futures_util::StreamExt;
    let channel = format!("{}live", setup.prefix);
    loop {
        let Ok(mut pubsub) = (match client.client().await {
            Ok(c) => c.get_async_pubsub().await,
            Err(e) => Err(e),
        }) else {
            tokio::time::sleep(TICK).await;
            continue;
        };
        if pubsub.subscribe(&channel).await.is_err() {
            tokio::time::sleep(TICK).await;
            continue;
        }
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Ok(text) = message.get_payload::<String>() else {
                continue;
            };
            let Ok(live) = serde_json::from_str::<LiveMessage>(&text) else {
                continue;
            };
            if live.node != setup.incarnation {
                setup.events.publish(live.event);
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Takes the dispatcher's lease when it is free, and while held routes the
/// cluster's callers: events in, decisions out, dead nodes reaped.
async fn dispatch(
    client: StoreAddress,
    setup: ClusterSetup,
    scripts: Arc<Scripts>,
    shared: Arc<Shared>,
    config: watch::Receiver<(QueuesConfig, AgentDirectory)>,
) {
    loop {
        tokio::time::sleep(TICK).await;
        let Ok(mut con) = connect(&client, Duration::from_secs(2)).await else {
            continue;
        };
        let floor = shared.max_epoch.load(Ordering::SeqCst) + 1;
        let claimed: redis::RedisResult<i64> = scripts
            .claim
            .prepare_invoke()
            .arg(&setup.prefix)
            .arg(&setup.incarnation)
            .arg(DISPATCHER_LEASE.as_millis() as u64)
            .arg(floor)
            .arg("take")
            .invoke_async(&mut con)
            .await;
        let epoch = match claimed {
            Ok(e) if e > 0 => e as u64,
            Ok(_) => {
                setup.metrics.cluster_dispatcher.set(0);
                // Someone else dispatches; learn their epoch for fencing.
                if let Ok(Some(e)) = redis::cmd("GET")
                    .arg(format!("{}epoch", setup.prefix))
                    .query_async::<Option<u64>>(&mut con)
                    .await
                {
                    shared.max_epoch.fetch_max(e, Ordering::SeqCst);
                }
                continue;
            }
            Err(_) => continue,
        };
        shared.max_epoch.fetch_max(epoch, Ordering::SeqCst);
        setup.metrics.cluster_dispatcher.set(1);
        tracing::info!(node = %setup.name, epoch, "taking over as dispatcher");
        if let Err(e) =
            serve_as_dispatcher(&client, &setup, &scripts, &shared, epoch, config.clone()).await
        {
            tracing::warn!(error = %e, epoch, "no longer dispatching");
        }
        setup.metrics.cluster_dispatcher.set(0);
    }
}

/// Why a dispatcher stops.
#[derive(Debug, thiserror::Error)]
enum StepDown {
    #[error("store: {0}")]
    Store(#[from] redis::RedisError),
    #[error("the lease went to another node")]
    Lease,
    #[error("a newer dispatcher holds the epoch")]
    Fenced,
}

async fn serve_as_dispatcher(
    client: &StoreAddress,
    setup: &ClusterSetup,
    scripts: &Scripts,
    shared: &Shared,
    epoch: u64,
    mut config: watch::Receiver<(QueuesConfig, AgentDirectory)>,
) -> Result<(), StepDown> {
    let p = setup.prefix.as_str();
    let mut con = connect(client, Duration::from_secs(2)).await?;
    let mut reader = connect(client, Duration::from_secs(3)).await?;
    let text: String = scripts
        .snapshot
        .prepare_invoke()
        .arg(p)
        .invoke_async(&mut con)
        .await?;
    let snapshot: Snapshot = serde_json::from_str(&text).unwrap_or_default();
    // Batched writes must not meet NOSCRIPT (its retry would reorder them).
    let _: String = scripts.notify.load_async(&mut con).await?;
    let (queues, agents) = config.borrow_and_update().clone();
    let now = Now::read();
    let mut core = Dispatcher::new(now, &setup.incarnation, queues.clone(), agents.clone());
    core.take_over(now, epoch, queues, agents, &snapshot);
    let mut last = if snapshot.last_id.is_empty() {
        "0-0".to_string()
    } else {
        snapshot.last_id.clone()
    };
    replay_unapplied(&mut reader, p, &snapshot, &last, &mut core).await?;
    let mut applied_written = last.clone();
    let mut next_tick = tokio::time::Instant::now();
    let mut nodes: Vec<String> = Vec::new();
    loop {
        carry_out(&mut con, scripts, setup, &mut core).await?;
        let now = Now::read();
        if let Some(view) = core.poll_view(now, nodes.clone()) {
            let _: () = redis::cmd("SET")
                .arg(format!("{p}view"))
                .arg(json(&view))
                .query_async(&mut con)
                .await?;
        }
        if tokio::time::Instant::now() >= next_tick {
            next_tick = tokio::time::Instant::now() + TICK;
            renew(&mut con, scripts, setup, epoch).await?;
            if last != applied_written {
                let _: () = redis::cmd("SET")
                    .arg(format!("{p}applied"))
                    .arg(&last)
                    .query_async(&mut con)
                    .await?;
                applied_written = last.clone();
            }
            let connected = Now::read().wall_ms() - shared.up_since.load(Ordering::SeqCst);
            let grace = (NODE_LEASE + TICK).as_millis() as i64;
            nodes = reap(&mut con, scripts, setup, connected >= grace).await?;
        }
        if config.has_changed().unwrap_or(false) {
            let (queues, agents) = config.borrow_and_update().clone();
            core.set_queues(Now::read(), queues);
            core.set_agents(Now::read(), agents);
        }
        // Events, waiting no longer than the next timer or tick.
        let wait = core
            .poll_timeout()
            .map(|t| t.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(TICK)
            .min(Duration::from_millis(200));
        let entries = read_events(&mut reader, p, &last, wait).await?;
        for (id, text) in entries {
            last = id;
            match serde_json::from_str::<Event>(&text) {
                Ok(event) => {
                    if let Event::CallEnded { caller } = &event {
                        tracing::debug!(caller = %caller.key(), "dispatcher: call end read");
                    }
                    core.handle_event(Now::read(), event)
                }
                Err(e) => tracing::warn!(error = %e, "unreadable event skipped"),
            }
        }
        let now = Now::read();
        if core.poll_timeout().is_some_and(|t| t <= now.mono) {
            core.handle_timeout(now);
        }
    }
}

/// Agents' requests and phone bindings live only in the event stream until
/// a dispatcher applies them; those sent while no dispatcher ran (or after
/// the last one last said how far it got) are replayed on top of the
/// snapshot. Both are idempotent: a second "ready" or the same binding
/// changes nothing. Joins and leaves need no replay: their entries are
/// written by the nodes themselves, so the snapshot holds them.
async fn replay_unapplied(
    reader: &mut MultiplexedConnection,
    p: &str,
    snapshot: &Snapshot,
    last: &str,
    core: &mut Dispatcher,
) -> redis::RedisResult<()> {
    let mut from = if snapshot.applied.is_empty() {
        "0-0".to_string()
    } else {
        snapshot.applied.clone()
    };
    let mut replayed = 0usize;
    // Bounded: the stream holds at most EVENTS_MAXLEN entries, 500 a read.
    for _ in 0..=200 {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(format!("{p}events"))
            .arg(format!("({from}"))
            .arg(last)
            .arg("COUNT")
            .arg(500)
            .query_async(reader)
            .await?;
        let Some(newest) = reply.ids.last().map(|e| e.id.clone()) else {
            break;
        };
        for entry in &reply.ids {
            let text: String = entry.get("e").unwrap_or_default();
            if let Ok(event @ (Event::AgentRequest { .. } | Event::Phone { .. })) =
                serde_json::from_str::<Event>(&text)
            {
                core.handle_event(Now::read(), event);
                replayed += 1;
            }
        }
        if newest == last {
            break;
        }
        from = newest;
    }
    if replayed > 0 {
        tracing::info!(
            replayed,
            "agents' requests no dispatcher had applied: replayed"
        );
    }
    Ok(())
}

async fn read_events(
    con: &mut MultiplexedConnection,
    p: &str,
    last: &str,
    wait: Duration,
) -> redis::RedisResult<Vec<(String, String)>> {
    let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(500)
        .arg("BLOCK")
        .arg(wait.as_millis().max(1) as u64)
        .arg("STREAMS")
        .arg(format!("{p}events"))
        .arg(last)
        .query_async(con)
        .await?;
    let mut out = Vec::new();
    for k in reply.map(|r| r.keys).unwrap_or_default() {
        for entry in k.ids {
            let text: String = entry.get("e").unwrap_or_default();
            out.push((entry.id, text));
        }
    }
    Ok(out)
}

async fn renew(
    con: &mut MultiplexedConnection,
    scripts: &Scripts,
    setup: &ClusterSetup,
    epoch: u64,
) -> Result<(), StepDown> {
    let renewed: i64 = scripts
        .claim
        .prepare_invoke()
        .arg(&setup.prefix)
        .arg(&setup.incarnation)
        .arg(DISPATCHER_LEASE.as_millis() as u64)
        .arg(epoch)
        .arg("renew")
        .invoke_async(con)
        .await?;
    if renewed == -1 {
        Ok(())
    } else {
        Err(StepDown::Lease)
    }
}

/// Writes the dispatcher's decisions; a fenced write means another
/// dispatcher took over.
async fn carry_out(
    con: &mut MultiplexedConnection,
    scripts: &Scripts,
    setup: &ClusterSetup,
    core: &mut Dispatcher,
) -> Result<(), StepDown> {
    let p = setup.prefix.as_str();
    let epoch = core.epoch();
    while let Some(op) = core.poll_op() {
        // Agents' state changes go together, in one round trip: the loop
        // is back reading events (the next agent free) sooner. They are
        // sent in order on the one connection, so Redis runs them in order
        // (the script is loaded when dispatching starts: no NOSCRIPT retry
        // can reorder them).
        if is_agent_state(&op) {
            let mut batch = vec![op];
            while let Some(next) = core.poll_op() {
                batch.push(next);
            }
            let results = futures_util::future::join_all(
                batch
                    .iter()
                    .map(|op| notify(con.clone(), scripts, p, epoch, op)),
            )
            .await;
            for result in results {
                if result? == -1 {
                    return Err(StepDown::Fenced);
                }
            }
            return Ok(());
        }
        let result: i64 = match &op {
            DispatchOp::Offer {
                caller,
                agent,
                offer,
                message,
            } => {
                scripts
                    .offer
                    .prepare_invoke()
                    .arg(p)
                    .arg(epoch)
                    .arg(caller.key())
                    .arg(agent)
                    .arg(offer)
                    .arg(&caller.node)
                    .arg(json(message))
                    .arg(INBOX_MAXLEN)
                    .invoke_async(con)
                    .await?
            }
            DispatchOp::Settle {
                caller,
                agent,
                offer,
                outcome,
                message,
            } => {
                scripts
                    .settle
                    .prepare_invoke()
                    .arg(p)
                    .arg(epoch)
                    .arg(caller.key())
                    .arg(agent)
                    .arg(offer)
                    .arg(outcome.label())
                    .arg(&caller.node)
                    .arg(json(message))
                    .arg(INBOX_MAXLEN)
                    .invoke_async(con)
                    .await?
            }
            DispatchOp::Notify { .. } => notify(con.clone(), scripts, p, epoch, &op).await?,
        };
        if let (DispatchOp::Offer { agent, .. }, 1) = (&op, result) {
            tracing::debug!(agent = %agent, "dispatcher: offer written");
        }
        match result {
            -1 => return Err(StepDown::Fenced),
            0 => {
                setup.metrics.cluster_offer_conflicts_total.inc();
                tracing::info!(
                    ?op,
                    "store refused a dispatcher decision: it moved on meanwhile"
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `op` only tells an agent's state (the dispatcher writes those
/// after its decisions, in one batch).
fn is_agent_state(op: &DispatchOp) -> bool {
    matches!(
        op,
        DispatchOp::Notify {
            message: Some(Inbox::AgentState { .. }),
            forget: None,
            ..
        }
    )
}

/// notify.lua for one `Notify` (nothing for other ops).
async fn notify(
    mut con: MultiplexedConnection,
    scripts: &Scripts,
    p: &str,
    epoch: u64,
    op: &DispatchOp,
) -> redis::RedisResult<i64> {
    let DispatchOp::Notify {
        node,
        message,
        forget,
        agent,
    } = op
    else {
        return Ok(1);
    };
    let (agent_id, view, home) = match agent {
        Some((id, view, home)) => (id.clone(), json(view), home.clone()),
        None => (String::new(), String::new(), String::new()),
    };
    scripts
        .notify
        .prepare_invoke()
        .arg(p)
        .arg(epoch)
        .arg(node.clone().unwrap_or_default())
        .arg(message.as_ref().map(json).unwrap_or_default())
        .arg(INBOX_MAXLEN)
        .arg(forget.as_ref().map(WireCaller::key).unwrap_or_default())
        .arg(agent_id)
        .arg(view)
        .arg(home)
        .invoke_async(&mut con)
        .await
}

/// Reaps nodes whose heartbeat lapsed (when `may_reap`: this node has been
/// connected long enough to know); the live nodes' names.
async fn reap(
    con: &mut MultiplexedConnection,
    scripts: &Scripts,
    setup: &ClusterSetup,
    may_reap: bool,
) -> Result<Vec<String>, StepDown> {
    let p = setup.prefix.as_str();
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{p}nodes"))
        .query_async(con)
        .await?;
    let mut alive = Vec::new();
    for inc in members {
        if !may_reap {
            let live: Option<String> = redis::cmd("GET")
                .arg(format!("{p}node:{inc}"))
                .query_async(con)
                .await?;
            alive.extend(live);
            continue;
        }
        let text: String = scripts
            .reap
            .prepare_invoke()
            .arg(p)
            .arg(&inc)
            .arg(EVENTS_MAXLEN)
            .arg(&setup.incarnation)
            .arg(INBOX_MAXLEN)
            .invoke_async(con)
            .await?;
        let lost: Vec<LostCaller> = serde_json::from_str(&text).unwrap_or_default();
        if lost.is_empty() {
            let live: Option<String> = redis::cmd("GET")
                .arg(format!("{p}node:{inc}"))
                .query_async(con)
                .await?;
            if let Some(name) = live {
                alive.push(name);
            }
            continue;
        }
        record_lost(setup, &inc, &lost);
    }
    alive.sort();
    alive.dedup();
    Ok(alive)
}

/// A caller's entry as the reaper removed it.
#[derive(Debug, Default, serde::Deserialize)]
struct LostCaller {
    #[serde(default)]
    id: String,
    #[serde(default)]
    call: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    joined_ms: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    number: String,
}

/// The survivor's records of callers lost with a node: one call record each
/// (outcome `node_lost`, with the wait) and a queue log row, so reports add up.
fn record_lost(setup: &ClusterSetup, incarnation: &str, lost: &[LostCaller]) {
    let node = incarnation.split('.').next().unwrap_or(incarnation);
    let now = Now::read();
    tracing::warn!(
        node,
        callers = lost.len(),
        "node lost: its callers are recorded as node_lost"
    );
    for caller in lost {
        setup.metrics.cluster_callers_lost_total.inc();
        setup
            .metrics
            .calls_total
            .with_label_values(&[crate::outcome::NODE_LOST])
            .inc();
        let joined: i64 = caller.joined_ms.parse().unwrap_or(now.wall_ms());
        let waited = now.wall_ms().saturating_sub(joined);
        tracing::info!(caller = %caller.id, node, queue = %caller.queue, waited_ms = waited,
            state = %caller.state, "caller lost with their node");
        let Some(records) = &setup.records else {
            continue;
        };
        records.record(crate::cdr::CallRecord {
            id: format!("{}:node_lost", caller.id),
            call: caller.call.parse().unwrap_or(0),
            sip_call_id: String::new(),
            caller: caller.number.clone(),
            dialled: String::new(),
            flow: String::new(),
            flow_version: String::new(),
            language: (!caller.language.is_empty()).then(|| caller.language.clone()),
            path: Vec::new(),
            queue: Some(caller.queue.clone()),
            agent: (caller.state == "talking" && !caller.agent.is_empty())
                .then(|| caller.agent.clone()),
            outcome: crate::outcome::NODE_LOST.to_string(),
            started_ms: joined,
            answered_ms: Some(joined),
            queued_ms: Some(joined),
            connected_ms: None,
            ended_ms: now.wall_ms(),
            hung_up_by: crate::cdr::hung_up_by::SERVICE.to_string(),
            reason: format!("node {node} lost"),
        });
        let mut e = crate::cdr::QueueEvent::new(crate::cdr::queue_event::EXITED, now.wall_ms());
        e.call_id = Some(format!("{}:node_lost", caller.id));
        e.queue = Some(caller.queue.clone());
        e.language = (!caller.language.is_empty()).then(|| caller.language.clone());
        e.wait_ms = Some(waited);
        e.reason = Some(crate::outcome::NODE_LOST.to_string());
        records.queue_event(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_checked_at_start_with_a_message_that_names_the_fix() {
        assert!(matches!(
            validate("a", "redis://127.0.0.1:6379/0"),
            Ok(StoreAddress::Direct(_))
        ));
        match validate(
            "a",
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/hotline",
        ) {
            Ok(StoreAddress::Sentinel {
                sentinels,
                service,
                password,
            }) => {
                assert_eq!(
                    sentinels,
                    ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"]
                );
                assert_eq!(service, "hotline");
                assert_eq!(password, None);
            }
            _ => panic!("a sentinel URL"),
        }
        match validate("a", "redis+sentinel://:s3cret@10.0.0.1:26379/hotline") {
            Ok(StoreAddress::Sentinel { password, .. }) => {
                assert_eq!(password.as_deref(), Some("s3cret"));
            }
            _ => panic!("a sentinel URL with a password"),
        }
        for bad in [
            "http://127.0.0.1:6379",
            "redis://",
            "redis+sentinel://10.0.0.1:26379",
            "redis+sentinel://10.0.0.1:26379/",
        ] {
            let e = validate("a", bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(bad) && e.contains("write e.g."), "{bad}: {e}");
        }
        let e = validate("a:1", "redis://127.0.0.1/")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("letters, digits")));
    }
}
