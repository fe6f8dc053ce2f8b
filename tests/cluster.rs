//! Two nodes, one hotline: real `hotline` processes sharing their queues
//! through a real Redis, with sipp callers and sipp agents' phones.

mod support;

use std::time::{Duration, Instant};
use support::agents::{
    adviser_call, agent, asks_for_adviser, state_seen_by, Account, Agent, AgentPhone, OLEK,
};
use support::redis::Redis;
use support::rtp::RtpListener;
use support::scenario::Site;
use support::{wait_until, Hotline, RunningSipp, Sipp};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// One node of the cluster on the site every node shares, with the store at
/// `redis` (a URL).
fn node(site: &Site, name: &str, redis: &str, extra_config: &str) -> Hotline {
    site.start(&format!(
        "api_token: t0k3n\nnode_id: {name}\nredis: {redis}\nrtp_timeout_s: 0\n{extra_config}"
    ))
}

/// A Polish caller who asks for an adviser and stays 40 s.
fn waits_long(node: &Hotline, rtp: &RtpListener) -> Sipp {
    asks_for_adviser(node, "call_queue.xml", rtp, "4")
        .duration_ms(40_000)
        .arg("-timeout")
        .arg("120s")
}

#[test]
fn a_caller_on_one_node_reaches_an_agent_registered_through_the_other() {
    let c = cluster("", &[OLEK]);
    let (a, b) = (&c.a, &c.b);
    // Olek's phone registers with node B only.
    let olek = agent(b, "olek", "haslo-1", 300);
    wait_until("olek ready as node A sees him", SECS(10), || {
        state_seen_by(a, "olek") == "ready"
    });
    // A Polish caller calls node A and asks for an adviser.
    let caller_rtp = RtpListener::bind();
    let caller = asks_for_adviser(a, "call_queue.xml", &caller_rtp, "4")
        .duration_ms(6_000)
        .spawn();
    // Node A rings Olek's phone (registered with B), and they talk.
    a.wait_for_log("connected to agent", SECS(20));
    wait_until("olek on the call", SECS(5), || {
        state_seen_by(b, "olek") == "on_call"
    });
    // The caller speaks; Olek hears it through node A's bridge.
    let to_caller_leg = caller_rtp
        .packets()
        .last()
        .expect("the caller heard the service")
        .from;
    let before = olek.rtp.packets().len();
    caller_rtp.speak(to_caller_leg, 0, 50);
    std::thread::sleep(Duration::from_millis(300));
    let heard: Vec<_> = olek.rtp.packets().into_iter().skip(before).collect();
    let heard = support::rtp::report(&heard);
    assert!(
        heard.audible_frames >= 40,
        "Olek hears the caller: {heard:?}"
    );
    caller.wait_ok();
    olek.phone.wait_ok();
    a.wait_metric(
        "hotline_calls_total{outcome=\"answered\",node=\"a\"}",
        1.0,
        SECS(10),
    );
    // Node A's queue log shows the offer and the answer; B's shows no offer.
    let offered = |h: &Hotline| {
        h.log()
            .iter()
            .filter(|l| l.contains("offering to agent"))
            .count()
    };
    assert_eq!(offered(a), 1);
    assert_eq!(offered(b), 0);
    // Node B's wallboard counts the call node A answered: the whole hotline.
    wait_until("B's wallboard totals include A's call", SECS(5), || {
        let Ok(mut ws) = support::ws::WsClient::connect(b.http, "/ws") else {
            return false;
        };
        let snapshot = ws.wait_for("snapshot", SECS(5));
        snapshot["totals"]["outcomes"]["answered"] == 1
    });
}

/// (time, call number) of each log line of `hotline` that contains `needle`.
fn logged(hotline: &Hotline, needle: &str) -> Vec<(String, u64)> {
    hotline
        .log()
        .iter()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let time = l.split_whitespace().next()?.to_string();
            let call = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("call="))?
                .parse()
                .ok()?;
            Some((time, call))
        })
        .collect()
}

/// A cluster: the site (flows and agents file), Redis, two nodes.
struct Cluster {
    redis: Redis,
    a: Hotline,
    b: Hotline,
    _site: Site,
}

fn cluster(queue_settings: &str, agents: &[Account]) -> Cluster {
    cluster_with(queue_settings, agents, "")
}

/// A cluster whose nodes have `extra_config` too.
fn cluster_with(queue_settings: &str, agents: &[Account], extra_config: &str) -> Cluster {
    let redis = Redis::start();
    let site = Site::new(queue_settings, agents);
    let a = node(&site, "a", &redis.url(), extra_config);
    let b = node(&site, "b", &redis.url(), extra_config);
    Cluster {
        redis,
        a,
        b,
        _site: site,
    }
}

fn set_state(hotline: &Hotline, agent: &str, state: &str) {
    let (status, body) = hotline.post(
        &format!("/api/agents/{agent}/state"),
        Some("t0k3n"),
        &format!(r#"{{"state":"{state}","reason":"test"}}"#),
    );
    assert_eq!(status, 200, "{body}");
}

/// Waits until `on` shows agent `id` ready, pauses them through it, and
/// waits until `seen_by` shows them paused.
fn pause_once_ready(on: &Hotline, seen_by: &Hotline, id: &str) {
    wait_until(&format!("{id} ready"), SECS(10), || {
        state_seen_by(on, id) == "ready"
    });
    set_state(on, id, "paused");
    wait_until(&format!("{id} paused"), SECS(5), || {
        state_seen_by(seen_by, id) == "paused"
    });
}

/// `n` callers, one every `gap`, on node A and node B in turn (A first),
/// each made by `caller` with audio at a listener of its own.
fn callers_in_turn(
    nodes: [&Hotline; 2],
    n: usize,
    gap: Duration,
    caller: impl Fn(&Hotline, &RtpListener) -> Sipp,
) -> Vec<(RunningSipp, RtpListener)> {
    let mut callers = Vec::new();
    for i in 0..n {
        let rtp = RtpListener::bind();
        callers.push((caller(nodes[i % 2], &rtp).spawn(), rtp));
        std::thread::sleep(gap);
    }
    callers
}

/// Callers waiting in a queue, as `hotline`'s API shows the cluster.
fn waiting(hotline: &Hotline, queue: &str) -> u64 {
    let (_, body) = hotline.get("/api/queues");
    let queues: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    queues
        .as_array()
        .and_then(|q| q.iter().find(|x| x["name"] == queue))
        .and_then(|q| q["waiting"].as_u64())
        .unwrap_or(0)
}

#[test]
fn twenty_callers_over_both_nodes_are_served_in_global_arrival_order() {
    let c = cluster("wrap_up: 1s", &[OLEK]);
    // Olek's phone (through node B) answers 20 calls in turn, talks for
    // half a second and hangs up.
    let olek = AgentPhone::new(&c.b, "agent_hangs_up.xml", 500)
        .arg("-m")
        .arg("20")
        .arg("-timeout")
        .arg("180s")
        .register("olek", "haslo-1");
    pause_once_ready(&c.a, &c.b, "olek");
    // 20 Polish callers, every 300 ms, alternately on A and B.
    let callers = callers_in_turn([&c.a, &c.b], 20, Duration::from_millis(300), |node, rtp| {
        asks_for_adviser(node, "call_queue_until_bye.xml", rtp, "4")
            .arg("-timeout")
            .arg("180s")
    });
    // Both nodes see the whole queue, whichever node the callers are on.
    wait_until("all 20 wait, as A sees it", SECS(30), || {
        waiting(&c.a, "advice_pl") == 20
    });
    wait_until("all 20 wait, as B sees it", SECS(2), || {
        waiting(&c.b, "advice_pl") == 20
    });
    set_state(&c.b, "olek", "ready");
    for (caller, _) in callers {
        caller.wait_ok();
    }
    olek.phone.wait_ok();
    // Every caller of both nodes in the order they joined ...
    let mut joined: Vec<(String, String)> = Vec::new();
    let mut served: Vec<(String, String)> = Vec::new();
    for (name, node) in [("a", &c.a), ("b", &c.b)] {
        for (t, call) in logged(node, "INFO queued call=") {
            joined.push((t, format!("{name}{call}")));
        }
        for (t, call) in logged(node, "connected to agent call=") {
            served.push((t, format!("{name}{call}")));
        }
    }
    joined.sort();
    served.sort();
    let joined: Vec<String> = joined.into_iter().map(|(_, c)| c).collect();
    let served: Vec<String> = served.into_iter().map(|(_, c)| c).collect();
    assert_eq!(joined.len(), 20, "{joined:?}");
    // ... is the order they were served in.
    assert_eq!(served, joined);
}

/// The rows of `event` in a node's queue log, as (call id, agent).
fn queue_log(hotline: &Hotline, event: &str) -> Vec<(String, String)> {
    let db = hotline.data_dir().join("records.db");
    let Ok(conn) = rusqlite::Connection::open(&db) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare(
        "SELECT coalesce(call_id, ''), coalesce(agent, '') FROM queue_log WHERE event = ?1 ORDER BY id",
    ) else {
        return Vec::new();
    };
    stmt.query_map([event], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// No caller was offered twice at once: every `offered` row of a caller is
/// followed by its end (failed, answered, gone) before the next.
fn assert_no_double_offer(hotline: &Hotline) {
    let offered = queue_log(hotline, "offered");
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for (call, _) in &offered {
        *seen.entry(call.clone()).or_default() += 1;
    }
    let ended: usize = ["ring_noanswer", "offer_failed", "answered"]
        .iter()
        .map(|e| queue_log(hotline, e).len())
        .sum();
    for (call, n) in seen {
        assert!(
            n <= 1 || ended >= n - 1,
            "{call} offered {n} times with {ended} ends: {offered:?}"
        );
    }
}

#[test]
fn a_node_killed_loses_its_callers_within_five_seconds_and_the_other_node_serves_on() {
    let c = cluster("", &[OLEK]);
    let mut a = c.a;
    let b = c.b;
    let front = support::kamailio::Kamailio::start(&[a.sip, b.sip]);
    // Olek logs in through the front, then pauses: callers wait.
    let olek = agent_through(&front, &b, "olek", "haslo-1");
    pause_once_ready(&b, &a, "olek");
    // Three callers on each node, interleaved: a1 b1 a2 b2 a3 b3.
    let callers = callers_in_turn([&a, &b], 6, Duration::from_millis(400), |node, rtp| {
        asks_for_adviser(node, "call_queue_until_bye.xml", rtp, "4")
            .arg("-timeout")
            .arg("120s")
    });
    wait_until("six callers wait", SECS(30), || {
        waiting(&b, "advice_pl") == 6
    });
    // Node A dies.
    a.signal("KILL");
    let killed = Instant::now();
    wait_until("A's callers leave the queue", SECS(5), || {
        waiting(&b, "advice_pl") == 3
    });
    assert!(killed.elapsed() <= SECS(5), "{:?}", killed.elapsed());
    // The survivor records them: node_lost, with the wait.
    b.wait_for_log("node lost: its callers are recorded as node_lost", SECS(2));
    assert_eq!(
        b.metric("hotline_cluster_callers_lost_total{node=\"b\"}"),
        3.0
    );
    // No agent is stuck: Olek is where he was.
    assert_eq!(state_seen_by(&b, "olek"), "paused");
    // New calls through the front land on B within 3 s of the kill.
    let new_rtp = RtpListener::bind();
    let newcomer = adviser_call(front.sip, "call_queue_until_bye.xml", new_rtp.port, "4")
        .arg("-timeout")
        .arg("120s")
        .spawn();
    wait_until("the new call is answered by B", SECS(3) + SECS(2), || {
        b.count_log("call answered") >= 4
    });
    // B's callers are served in their order, then the newcomer.
    set_state(&b, "olek", "ready");
    let mut done = Vec::new();
    for (i, (caller, rtp)) in callers.into_iter().enumerate() {
        if i % 2 == 1 {
            caller.wait_ok();
            done.push(rtp);
        } else {
            drop(caller);
        }
    }
    newcomer.wait_ok();
    // Olek's phone took four calls; it would wait for more.
    olek.phone.kill();
    let served: Vec<u64> = logged(&b, "connected to agent call=")
        .into_iter()
        .map(|(_, call)| call)
        .collect();
    let joined: Vec<u64> = logged(&b, "INFO queued call=")
        .into_iter()
        .map(|(_, call)| call)
        .collect();
    assert_eq!(served, joined, "B's callers keep their order");
    assert_no_double_offer(&b);
    let lost = queue_log(&b, "exited");
    assert_eq!(lost.len(), 3, "{lost:?}");
}

/// An agent's phone registered through the front (the registration reaches
/// a node): it answers every call, talks for half a second and hangs up.
fn agent_through(
    front: &support::kamailio::Kamailio,
    any: &Hotline,
    id: &str,
    password: &str,
) -> Agent {
    AgentPhone::new(any, "agent_hangs_up.xml", 500)
        .arg("-m")
        .arg("10")
        .arg("-timeout")
        .arg("120s")
        .register_through(front.sip, id, password)
}

#[test]
fn a_redis_restart_mid_queue_rebuilds_the_queue_without_a_double_offer() {
    let mut c = cluster("", &[OLEK]);
    let olek = agent(&c.b, "olek", "haslo-1", 300);
    pause_once_ready(&c.a, &c.b, "olek");
    let callers = callers_in_turn([&c.a, &c.b], 4, Duration::from_millis(400), waits_long);
    wait_until("four callers wait", SECS(30), || {
        waiting(&c.a, "advice_pl") == 4
    });
    // The store crashes and comes back empty.
    c.redis.restart();
    // The nodes notice and put their callers and agents back.
    wait_until("the callers are back in the store", SECS(15), || {
        c.redis.cli(&["SCARD", "hotline:callers"]).trim() == "4"
    });
    wait_until("a new dispatcher has the queue", SECS(10), || {
        c.redis.cli(&["GET", "hotline:dispatcher"]).trim() != ""
            && waiting(&c.a, "advice_pl") == 4
            && waiting(&c.b, "advice_pl") == 4
    });
    assert!(c.a.metric("hotline_cluster_store_resets_total{node=\"a\"}") >= 1.0);
    // Olek is back as he was (paused), then takes the callers one by one.
    wait_until("olek known again", SECS(10), || {
        state_seen_by(&c.a, "olek") == "paused"
    });
    set_state(&c.a, "olek", "ready");
    wait_until("the first caller is answered", SECS(15), || {
        c.a.count_log("connected to agent") + c.b.count_log("connected to agent") >= 1
    });
    for (caller, _) in callers {
        drop(caller);
    }
    drop(olek);
    assert_no_double_offer(&c.a);
    assert_no_double_offer(&c.b);
}

#[test]
fn a_rolling_restart_of_every_node_under_steady_load_drops_no_call() {
    // Calls last 2 s: a node told to stop lets its calls finish (up to 8 s).
    let c = cluster_with("", &[OLEK], "drain_limit_s: 8\n");
    let (mut a, mut b) = (c.a, c.b);
    let front = support::kamailio::Kamailio::start(&[a.sip, b.sip]);
    std::thread::sleep(SECS(2));
    // Steady load through the front: 2 calls a second, each 2 s of the
    // welcome, then the caller hangs up.
    let rtp = RtpListener::bind();
    let load = support::listening_caller(front.sip, &rtp, 2000)
        .arg("-r")
        .arg("2")
        .arg("-m")
        .arg("70")
        .arg("-l")
        .arg("20")
        .arg("-timeout")
        .arg("90s")
        .spawn();
    std::thread::sleep(SECS(4));
    // Restart every node in turn: drain (OPTIONS and INVITEs get 503, the
    // front moves on), stop, start again, and wait for the front to see it.
    for node in [&mut a, &mut b] {
        let calls_before = node.count_log("call answered");
        node.signal("TERM");
        wait_until("the node stops after its calls", SECS(15), || node.exited());
        node.respawn();
        wait_until("the front sends the node calls again", SECS(10), || {
            node.count_log("call answered") > calls_before
        });
    }
    // Every call of the load succeeded.
    load.wait_ok();
    let answered = a.count_log("call answered") + b.count_log("call answered");
    assert!(answered >= 70, "{answered} calls answered");
    for node in [&a, &b] {
        assert_eq!(
            node.count_log("shutting down: refusing new calls"),
            1,
            "each node drained once"
        );
    }
}

#[test]
fn while_redis_is_away_each_node_serves_its_own_callers_with_its_own_agents() {
    let mut c = cluster(
        "",
        &[
            ("olek", "haslo-1", "{pl: 10}"),
            ("zofia", "haslo-2", "{pl: 10}"),
        ],
    );
    // Olek's phone registered with A, Zofia's with B.
    let olek = agent(&c.a, "olek", "haslo-1", 300);
    let zofia = agent(&c.b, "zofia", "haslo-2", 300);
    wait_until("both ready", SECS(10), || {
        state_seen_by(&c.a, "olek") == "ready" && state_seen_by(&c.a, "zofia") == "ready"
    });
    // The store goes away (and stays away).
    c.redis.kill();
    wait_until("A serves alone", SECS(5), || {
        c.a.metric("hotline_cluster_degraded{node=\"a\"}") == 1.0
    });
    assert_eq!(c.a.metric("hotline_cluster_redis_up{node=\"a\"}"), 0.0);
    // A caller on B is served by Zofia, whose phone registered with B; then
    // a caller on A by Olek.
    for (node, id, agent) in [(&c.b, "zofia", zofia), (&c.a, "olek", olek)] {
        let rtp = RtpListener::bind();
        let caller = asks_for_adviser(node, "call_queue.xml", &rtp, "4")
            .duration_ms(3_000)
            .spawn();
        let line = node.wait_for_log("offering to agent", SECS(20));
        assert!(line.contains(&format!("agent={id}")), "{line}");
        caller.wait_ok();
        agent.phone.wait_ok();
    }
    // The store comes back: the nodes say so.
    c.redis.restart();
    wait_until("A shares its queues again", SECS(10), || {
        c.a.metric("hotline_cluster_degraded{node=\"a\"}") == 0.0
    });
}

/// Three free consecutive UDP ports on loopback (the front and its nodes).
fn free_port_run() -> u16 {
    for _ in 0..200 {
        let base = support::free_sip_port();
        if base > 65_000 {
            continue;
        }
        let free = (1..3).all(|i| std::net::UdpSocket::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no three free ports in a row");
}

#[test]
fn the_one_command_demo_starts_redis_kamailio_and_two_nodes_that_take_calls() {
    let front = free_port_run();
    let redis = support::free_tcp_port();
    let (http_a, http_b) = (support::free_tcp_port(), support::free_tcp_port());
    // Through perl (Debian's perl-base is always there) to give the script
    // the default Ctrl-C: a shell started with SIGINT ignored (as a
    // background job of a non-interactive shell is) cannot trap it.
    let mut script = std::process::Command::new("perl")
        .args([
            "-e",
            "$SIG{INT} = 'DEFAULT'; exec @ARGV or die \"exec: $!\"",
        ])
        .arg(support::repo().join("scripts/cluster.sh"))
        .env("HOTLINE_BIN", env!("CARGO_BIN_EXE_hotline"))
        .env("CLUSTER_PORT", front.to_string())
        .env("REDIS_PORT", redis.to_string())
        .env("HTTP_A", http_a.to_string())
        .env("HTTP_B", http_b.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("scripts/cluster.sh");
    /// Stops the script (Ctrl-C) whatever happens to the test.
    struct Interrupt(u32);
    impl Drop for Interrupt {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-s", "INT", &self.0.to_string()])
                .status();
        }
    }
    let _stop = Interrupt(script.id());
    let out = support::Lines::default();
    out.collect(script.stdout.take().expect("stdout"));
    let err = support::Lines::default();
    err.collect(script.stderr.take().expect("stderr"));
    out.wait_for("hotline cluster up", SECS(60));
    let front_addr: std::net::SocketAddr = format!("127.0.0.1:{front}").parse().expect("addr");
    // Piotr's phone registers through the front; a Polish caller calls the
    // front and reaches him, whichever node each landed on.
    let piotr =
        AgentPhone::at(front_addr, "agent_answer.xml", 200).register("piotr", "piotr-demo-pw");
    let caller_rtp = RtpListener::bind();
    adviser_call(front_addr, "call_queue.xml", caller_rtp.port, "4")
        .duration_ms(3_000)
        .run_ok();
    piotr.phone.wait_ok();
    let answered = |http: u16| -> f64 {
        let addr = format!("127.0.0.1:{http}").parse().expect("addr");
        let (_, body) = support::http_request(addr, "GET", "/metrics", None, "");
        body.lines()
            .filter(|l| {
                l.starts_with("hotline_queue_answered_total{") && l.contains("language=\"pl\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(answered(http_a) + answered(http_b), 1.0);
    // Ctrl-C (SIGINT) stops everything it started.
    let _ = std::process::Command::new("kill")
        .args(["-s", "INT", &script.id().to_string()])
        .status();
    let end = Instant::now() + SECS(20);
    loop {
        if let Ok(Some(_)) = script.try_wait() {
            break;
        }
        assert!(Instant::now() < end, "cluster.sh did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", http_a)).is_err(),
        "node a stopped"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", redis)).is_err(),
        "redis stopped"
    );
}

#[test]
fn a_bad_redis_url_stops_the_start_with_a_clear_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args([
            "serve",
            "--node-id",
            "a",
            "--redis",
            "http://127.0.0.1:6379",
        ])
        .args([
            "--sip-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("hotline");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("redis URL `http://127.0.0.1:6379` is not valid")
            && text.contains("write e.g. redis://127.0.0.1:6379/0"),
        "{text}"
    );
    // A name without the URL (or the other way round) is refused too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["serve", "--node-id", "a"])
        .output()
        .expect("hotline");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster mode needs both"));
}

#[test]
fn a_sentinel_failover_keeps_the_queue_and_its_order() {
    let mut master = Redis::start();
    let replica = Redis::replica_of(master.port);
    let sentinel = Redis::sentinel(master.port, "hotline");
    let site = Site::new("", &[OLEK]);
    let url = format!("redis+sentinel://127.0.0.1:{}/hotline", sentinel.port);
    let a = node(&site, "a", &url, "");
    let b = node(&site, "b", &url, "");
    let olek = agent(&b, "olek", "haslo-1", 300);
    pause_once_ready(&a, &b, "olek");
    let callers = callers_in_turn([&a, &b], 4, Duration::from_millis(400), waits_long);
    wait_until("four callers wait", SECS(30), || {
        waiting(&a, "advice_pl") == 4
    });
    // The master dies; Sentinel promotes the replica.
    master.kill();
    wait_until("the replica is the master", SECS(20), || {
        replica.cli(&["ROLE"]).starts_with("master")
    });
    // The nodes follow it and the queue is whole there.
    wait_until("the callers are on the new master", SECS(15), || {
        replica.cli(&["SCARD", "hotline:callers"]).trim() == "4"
    });
    wait_until("both nodes see the queue", SECS(10), || {
        waiting(&a, "advice_pl") == 4 && waiting(&b, "advice_pl") == 4
    });
    // Olek takes the first caller who joined (node A's first).
    set_state(&b, "olek", "ready");
    let line = a.wait_for_log("offering to agent", SECS(15));
    assert!(line.contains("call=1 "), "{line}");
    drop(callers);
    drop(olek);
}

/// Two nodes whose flows offer callbacks, with a trunk to the gateway at
/// `gateway_port`; a Polish caller has booked a callback on node A.
fn callback_booked_on_a(gateway_port: u16) -> Cluster {
    let site = support::callbacks::site();
    let redis = Redis::start();
    let trunks = support::callbacks::trunk_config(gateway_port);
    let a = node(&site, "a", &redis.url(), &trunks);
    let b = node(&site, "b", &redis.url(), &trunks);
    let rtp = RtpListener::bind();
    support::callbacks::books_a_callback_on(&a, &rtp, ",node=\"a\"");
    wait_until(
        "the callback is kept with its entry in Redis",
        SECS(5),
        || {
            redis
                .cli(&["--scan", "--pattern", "hotline:c:*"])
                .lines()
                .any(|key| redis.cli(&["HGET", key, "callback"]).contains("ticket"))
        },
    );
    Cluster {
        redis,
        a,
        b,
        _site: site,
    }
}

/// A callback booked on node A is made by A when Olek, whose phone
/// registered with node B, is free: A rings Olek through B's binding, then
/// dials the caller through the trunk and bridges them.
#[test]
fn a_callback_booked_on_one_node_is_made_when_an_agent_of_the_other_is_free() {
    let (gw, gw_port) = support::callbacks::gateway(8_000);
    let c = callback_booked_on_a(gw_port);
    let (a, b) = (&c.a, &c.b);
    // Silent and kept: nothing times it out while nobody is logged in.
    std::thread::sleep(SECS(3));
    assert_eq!(waiting(b, "advice_pl"), 1, "B sees the callback's place");
    let (_, queues) = b.get("/api/queues");
    assert!(
        queues.contains("\"callbacks_by_language\":{\"pl\":1}"),
        "B's wallboard counts A's callback: {queues}"
    );
    let olek = agent(b, "olek", "haslo-1", 200);
    a.wait_metric(
        "hotline_callbacks_total{event=\"connected\",language=\"pl\",node=\"a\"}",
        1.0,
        SECS(30),
    );
    let greeting = support::rtp::report(&gw.rtp.packets());
    assert!(greeting.audible_frames >= 200, "{greeting:?}");
    gw.phone.wait_ok();
    olek.phone.wait_ok();
    assert_eq!(a.count_log("callback: agent answered"), 1, "made once");
    assert_eq!(b.count_log("callback: agent answered"), 0);
    assert_no_double_offer(a);
}

/// A callback booked on node A lives in the shared store: A dies (kill -9)
/// before an adviser is free, node B adopts the callback in its original
/// place, ahead of a caller who joined B later, and calls the caller back
/// through the trunk when Olek logs in through B. Made once, recorded by B.
#[test]
fn a_callback_booked_on_a_node_that_dies_is_made_by_the_survivor_in_its_place() {
    let (gw, gw_port) = support::callbacks::gateway(12_000);
    let c = callback_booked_on_a(gw_port);
    let (mut a, b) = (c.a, c.b);
    // A later Polish caller waits on B.
    let later_rtp = RtpListener::bind();
    let later = asks_for_adviser(&b, "call_queue_until_bye.xml", &later_rtp, "4")
        .arg("-timeout")
        .arg("120s")
        .spawn();
    wait_until("the callback and the later caller wait", SECS(20), || {
        waiting(&b, "advice_pl") == 2
    });
    a.signal("KILL");
    b.wait_for_log("callback of a lost node adopted in its place", SECS(15));
    b.wait_metric(
        "hotline_callbacks_pending{language=\"pl\",node=\"b\"}",
        1.0,
        SECS(5),
    );
    assert_eq!(
        b.metric("hotline_cluster_callers_lost_total{node=\"b\"}"),
        0.0,
        "a callback is not a caller lost with the node"
    );
    // Olek logs in through B: the callback, older, comes first.
    let olek = agent(&b, "olek", "haslo-1", 200);
    b.wait_metric(
        "hotline_callbacks_total{event=\"connected\",language=\"pl\",node=\"b\"}",
        1.0,
        SECS(30),
    );
    assert_eq!(waiting(&b, "advice_pl"), 1, "the later caller still waits");
    let greeting = support::rtp::report(&gw.rtp.packets());
    assert!(greeting.audible_frames >= 200, "{greeting:?}");
    gw.phone.wait_ok();
    olek.phone.wait_ok();
    assert_eq!(b.count_log("callback: agent answered"), 1, "made once");
    // The callback A booked is B's record now, connected by Olek.
    let booked: i64 = rusqlite::Connection::open(a.data_dir().join("records.db"))
        .and_then(|c| c.query_row("SELECT id FROM callbacks", [], |r| r.get(0)))
        .expect("A's record of the booking");
    let db = b.data_dir().join("records.db");
    wait_until("B stores the callback as connected", SECS(10), || {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT state, agent FROM callbacks WHERE id = ?1",
                    [booked],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
                )
            })
            .is_ok_and(|(state, agent)| state == "connected" && agent.as_deref() == Some("olek"))
    });
    later.kill();
}
