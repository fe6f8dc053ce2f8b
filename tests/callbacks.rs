//! Callbacks that keep the caller's place, against the real binary: a Polish
//! caller waiting in the queue takes the callback offer and hangs up; a
//! later Polish caller waits on the line; when a Polish adviser logs in, the
//! callback comes first: the adviser answers, we dial the caller through
//! the trunk (sipp, challenging with digest), greet them in Polish and put
//! the two through, with audio both ways. A restart in between (kill -9)
//! loses no callback.

mod support;

use std::time::Duration;
use support::agents::{agent, asks_for_adviser, AgentPhone};
use support::callbacks::{books_a_callback, gateway, site, trunk_config};
use support::rtp::RtpListener;
use support::wait_until;

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn a_polish_caller_is_called_back_in_polish_ahead_of_later_callers() {
    let (gw, gw_port) = gateway(15_000);
    let site = site();
    let hotline = site.start(&trunk_config(gw_port));
    let first_rtp = RtpListener::bind();
    books_a_callback(&hotline, &first_rtp);
    // Supervisors see it, without the caller's number.
    let (status, body) = hotline.get("/api/callbacks");
    assert_eq!(status, 200, "{body}");
    let callbacks: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(callbacks.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(callbacks[0]["state"], "pending");
    assert_eq!(callbacks[0]["language"], "pl");
    assert_eq!(callbacks[0]["queue"], "advice_pl");
    assert_eq!(callbacks[0]["attempts_made"], 0);
    assert!(!body.contains("4790000001"), "{body}");

    // A later Polish caller waits on the line.
    let later_rtp = RtpListener::bind();
    let later = asks_for_adviser(&hotline, "call_queue_until_bye.xml", &later_rtp, "4").spawn();
    wait_until("the later caller waits", SECS(20), || {
        hotline.metric("hotline_calls_active{stage=\"queue\"}") == 1.0
    });

    // A Polish adviser logs in: the callback, older, comes first.
    let olek = agent(&hotline, "olek", "haslo-1", 200);
    hotline.wait_for_log("callback: agent answered", SECS(20));
    hotline.wait_metric(
        "hotline_callbacks_total{event=\"connected\",language=\"pl\"}",
        1.0,
        SECS(30),
    );
    assert_eq!(
        hotline.metric("hotline_calls_active{stage=\"queue\"}"),
        1.0,
        "the later caller still waits"
    );
    assert_eq!(
        hotline.metric("hotline_callbacks_pending{language=\"pl\"}"),
        0.0
    );
    // The caller heard the greeting in Polish: audible, paced audio.
    let greeting = support::rtp::report(&gw.rtp.packets());
    assert!(greeting.audible_frames >= 200, "{greeting:?}");
    // The adviser heard the whisper from their leg; now both speak, and
    // each hears the other.
    let to_agent_leg = olek.rtp.packets().last().expect("the whisper").from;
    let to_trunk_leg = gw.rtp.packets().last().expect("the greeting").from;
    let before = gw.rtp.packets().len();
    let agent_before = olek.rtp.packets().len();
    olek.rtp.speak(to_agent_leg, 0, 50);
    gw.rtp.speak(to_trunk_leg, 0, 50);
    wait_until("the caller hears the adviser", SECS(5), || {
        let heard: Vec<_> = gw.rtp.packets().into_iter().skip(before).collect();
        support::rtp::report(&heard).audible_frames >= 40
    });
    wait_until("the adviser hears the caller", SECS(5), || {
        let heard: Vec<_> = olek.rtp.packets().into_iter().skip(agent_before).collect();
        support::rtp::report(&heard).audible_frames >= 40
    });
    // The caller hangs up; the adviser's phone is hung up too.
    gw.phone.wait_ok();
    olek.phone.wait_ok();

    // The records tell the whole story.
    let db = hotline.data_dir().join("records.db");
    wait_until("the callback is stored as connected", SECS(10), || {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row("SELECT state, agent FROM callbacks", [], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
            })
            .is_ok_and(|(state, agent)| state == "connected" && agent.as_deref() == Some("olek"))
    });
    let conn = rusqlite::Connection::open(&db).expect("db");
    let record: String = conn
        .query_row("SELECT call_record FROM callbacks", [], |r| r.get(0))
        .expect("callback");
    let outcome: String = conn
        .query_row("SELECT outcome FROM calls WHERE id = ?1", [&record], |r| {
            r.get(0)
        })
        .expect("the booking call's record");
    assert_eq!(outcome, "callback");
    let events: Vec<String> = conn
        .prepare(
            "SELECT event FROM queue_log WHERE call_id = ?1 AND event != 'agent_state' ORDER BY id",
        )
        .expect("query")
        .query_map([&record], |r| r.get(0))
        .expect("rows")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(
        events,
        [
            "joined",
            "callback_requested",
            "offered",
            "answered",
            "callback_connected"
        ],
        "one story, counted once"
    );
    let mut leg: Option<(String, String)> = None;
    wait_until("the leg to the caller is stored", SECS(10), || {
        leg = conn
            .query_row(
                "SELECT kind, outcome FROM legs WHERE call_record = ?1",
                [&record],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        leg.is_some()
    });
    assert_eq!(leg, Some(("callback".to_string(), "answered".to_string())));
    let report = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .arg("report")
        .arg("--data-dir")
        .arg(hotline.data_dir())
        .output()
        .expect("hotline report");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("callbacks: 1 connected"), "{text}");
    assert!(
        text.contains("callback legs through trunks: 1 answered"),
        "{text}"
    );
    later.kill();
}

/// A callback booked before the service is killed (kill -9) is put back in
/// its place by the restarted service and made when an adviser is free.
#[test]
fn a_callback_survives_a_restart() {
    let (gw, gw_port) = gateway(12_000);
    let site = site();
    let mut hotline = site.start(&trunk_config(gw_port));
    let rtp = RtpListener::bind();
    books_a_callback(&hotline, &rtp);
    // Stored before the process dies (journal first, then the database).
    let db = hotline.data_dir().join("records.db");
    wait_until("the callback is stored", SECS(10), || {
        rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM callbacks", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n == 1)
    });
    hotline.signal("KILL");
    hotline.respawn();
    hotline.wait_for_log("callback put back in its place after a restart", SECS(10));
    hotline.wait_metric("hotline_callbacks_pending{language=\"pl\"}", 1.0, SECS(20));
    let olek = agent(&hotline, "olek", "haslo-1", 200);
    hotline.wait_metric(
        "hotline_callbacks_total{event=\"connected\",language=\"pl\"}",
        1.0,
        SECS(30),
    );
    gw.phone.wait_ok();
    olek.phone.wait_ok();
}

/// The caller's line is busy the first time we call: the adviser is let
/// go, the callback goes back to its place until the retry time, and the
/// second attempt connects. Both attempts are recorded.
#[test]
fn a_busy_caller_is_called_again_after_the_retry_interval() {
    let (gw, gw_port) = AgentPhone::at(
        "127.0.0.1:9".parse().expect("addr"),
        "trunk_callback_busy_uas.xml",
        12_000,
    )
    .arg("-m")
    .arg("2")
    // Two calls half a minute apart: longer than sipp's usual limit.
    .arg("-timeout")
    .arg("150s")
    .start();
    let site = site();
    let path = site.flows().join("adviser.yaml");
    let text = std::fs::read_to_string(&path).expect("read flow");
    std::fs::write(
        &path,
        text.replace(
            "callback: { number: caller, attempts: 3, retry_after: 10m",
            "callback: { number: caller, attempts: 3, retry_after: 30s",
        ),
    )
    .expect("write flow");
    let hotline = site.start(&trunk_config(gw_port));
    let rtp = RtpListener::bind();
    books_a_callback(&hotline, &rtp);
    let olek = AgentPhone::new(&hotline, "agent_answer.xml", 200)
        .arg("-m")
        .arg("2")
        .arg("-timeout")
        .arg("150s")
        .register("olek", "haslo-1");
    hotline.wait_for_log("callback attempt did not connect", SECS(20));
    assert_eq!(
        hotline.metric("hotline_callbacks_total{event=\"attempted\",language=\"pl\"}"),
        1.0
    );
    assert_eq!(
        hotline.metric("hotline_callbacks_pending{language=\"pl\"}"),
        1.0,
        "back in its place"
    );
    hotline.wait_metric(
        "hotline_callbacks_total{event=\"connected\",language=\"pl\"}",
        1.0,
        SECS(60),
    );
    assert_eq!(
        hotline.metric("hotline_callbacks_total{event=\"attempted\",language=\"pl\"}"),
        2.0
    );
    gw.phone.wait_ok();
    olek.phone.wait_ok();
    let db = hotline.data_dir().join("records.db");
    let conn = rusqlite::Connection::open(&db).expect("db");
    let mut events: Vec<(String, Option<i64>)> = Vec::new();
    wait_until("both attempts are in the queue log", SECS(10), || {
        events = conn
            .prepare("SELECT event, code FROM queue_log WHERE event LIKE 'callback%' ORDER BY id")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map(|rows| rows.filter_map(Result::ok).collect())
            })
            .unwrap_or_default();
        events.len() >= 3
    });
    assert_eq!(
        events,
        [
            ("callback_requested".to_string(), None),
            ("callback_attempt_failed".to_string(), Some(486)),
            ("callback_connected".to_string(), None),
        ]
    );
}
