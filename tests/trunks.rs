//! Outbound calls through a SIP trunk: the flow's `transfer` step puts a
//! caller through to an outside number, the gateway (sipp) challenges with
//! digest first, and the toll-fraud guard refuses numbers no trunk allows.

mod support;

use std::time::Duration;
use support::agents::{agent, asks_for_adviser, test_flows, Agent, AgentPhone, OLEK};
use support::rtp::RtpListener;
use support::scenario::Site;
use support::{wait_until, Hotline, Options, Sipp};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The default flows with "9" at the main menu putting the caller through
/// to `number` (on failure: an adviser), and the flow allow-list opened for
/// 113 and 0900 numbers.
fn flows_with_emergency_choice(number: &str) -> tempfile::TempDir {
    let flows = test_flows("");
    let edit = |file: &str, from: &str, to: &str| {
        let path = flows.path().join(file);
        let text = std::fs::read_to_string(&path).expect("read flow");
        assert!(text.contains(from), "{file} holds {from:?}");
        std::fs::write(&path, text.replace(from, to)).expect("write flow");
    };
    edit(
        "main.yaml",
        "            \"0\": adviser\n",
        "            \"0\": adviser\n            \"9\": emergency\n",
    );
    edit(
        "main.yaml",
        "      - id: adviser\n",
        &format!("      - id: emergency\n        transfer: {{ to: \"{number}\", on_failure: adviser }}\n      - id: adviser\n"),
    );
    edit(
        "hotline.yaml",
        "transfer_allow:\n",
        "transfer_allow:\n  - \"113\"\n  - \"0900*\"\n",
    );
    flows
}

/// The config lines of one trunk (`channels: 1`, caller ID passed on): the
/// gateway at `gateway_port`, allowed to dial 113 and Norwegian numbers.
fn trunk_config(gateway_port: u16) -> String {
    format!(
        "trunks:\n  - name: pstn\n    address: 127.0.0.1:{gateway_port}\n    username: hotline\n    password: s3cret\n    patterns: [\"113\", \"+47XXXXXXXX\"]\n    channels: 1\n"
    )
}

/// A service whose one trunk (`channels: 1`, caller ID passed on) is the
/// gateway at `gateway_port`, allowed to dial 113 and Norwegian numbers.
fn service(flows: &tempfile::TempDir, gateway_port: u16) -> Hotline {
    Hotline::start_with(Options {
        flows: Some(flows.path().to_path_buf()),
        config: Some(trunk_config(gateway_port)),
    })
}

/// A caller who picks Norwegian, then `choice` at the main menu, and stays
/// until the service hangs up; audio at `rtp`.
fn caller(hotline: &Hotline, rtp: &RtpListener, choice: &str) -> Sipp {
    hotline
        .sipp("call_queue_until_bye.xml")
        .key("rtp_port", rtp.port)
        .key("codecs", "0 101")
        .key("digit", "1")
        .key("digit2", choice)
}

/// The gateway: challenges, expects 113 from the caller's own number,
/// answers, and hangs up after `talk_ms`.
fn gateway(talk_ms: u64) -> (Agent, u16) {
    AgentPhone::at(
        "127.0.0.1:9".parse().expect("addr"),
        "trunk_uas.xml",
        talk_ms,
    )
    .start()
}

#[test]
fn pressing_9_puts_the_caller_through_a_challenging_trunk_with_audio_both_ways() {
    let (gw, gw_port) = gateway(4_000);
    let flows = flows_with_emergency_choice("113");
    let hotline = service(&flows, gw_port);
    let caller_rtp = RtpListener::bind();
    let call = caller(&hotline, &caller_rtp, "9").spawn();
    hotline.wait_metric(
        "hotline_transfers_total{result=\"connected\"}",
        1.0,
        SECS(20),
    );
    assert_eq!(
        hotline.metric("hotline_trunk_channels{trunk=\"pstn\"}"),
        1.0
    );
    assert_eq!(
        hotline.metric("hotline_calls_active{stage=\"transfer\"}"),
        1.0
    );
    // The caller speaks; the far end hears it.
    wait_until("the caller hears the service", SECS(5), || {
        !caller_rtp.packets().is_empty()
    });
    let to_caller_leg = caller_rtp.packets().last().expect("packets").from;
    caller_rtp.speak(to_caller_leg, 0, 50);
    wait_until("the far end hears the caller", SECS(5), || {
        support::rtp::report(&gw.rtp.packets()).audible_frames >= 40
    });
    // The far end speaks; the caller hears it.
    let to_trunk_leg = gw.rtp.packets().last().expect("packets").from;
    let before = caller_rtp.packets().len();
    gw.rtp.speak(to_trunk_leg, 0, 50);
    std::thread::sleep(Duration::from_millis(400));
    let heard: Vec<_> = caller_rtp.packets().into_iter().skip(before).collect();
    let heard = support::rtp::report(&heard);
    assert!(
        heard.audible_frames >= 40,
        "the caller hears the far end: {heard:?}"
    );
    // The far end hangs up: so does the service, with the caller.
    gw.phone.wait_ok();
    call.wait_ok();
    hotline.wait_metric("hotline_calls_total{outcome=\"transferred\"}", 1.0, SECS(5));
    assert_eq!(
        hotline.metric("hotline_trunk_channels{trunk=\"pstn\"}"),
        0.0
    );
    assert_eq!(
        hotline.metric("hotline_calls_total{outcome=\"answered\"}"),
        0.0
    );
    // One call record, and the transfer leg's record linked to it.
    let db = hotline.data_dir().join("records.db");
    let (record, legs) = poll_records(&db);
    let (id, outcome, reason, by) = record;
    assert_eq!(outcome, "transferred");
    assert_eq!(reason, "transferred to 113");
    assert_eq!(by, "far_end");
    assert_eq!(legs.len(), 1, "{legs:?}");
    let (call_record, trunk, number, leg_outcome, leg_by) = &legs[0];
    assert_eq!(call_record, &id);
    assert_eq!(
        (
            trunk.as_str(),
            number.as_str(),
            leg_outcome.as_str(),
            leg_by.as_str()
        ),
        ("pstn", "113", "answered", "far_end")
    );
    // `hotline report` tells it too.
    let report = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .arg("report")
        .arg("--data-dir")
        .arg(hotline.data_dir())
        .output()
        .expect("hotline report");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        text.contains("transfer legs through trunks: 1 answered"),
        "{text}"
    );
}

/// The caller speaks and the far end hears it; the far end hangs up, so
/// does the service with the caller, and the call counts as transferred.
fn far_end_talks_and_hangs_up(
    hotline: &Hotline,
    caller_rtp: &RtpListener,
    gw: Agent,
    call: support::RunningSipp,
) {
    let to_caller_leg = caller_rtp.packets().last().expect("packets").from;
    caller_rtp.speak(to_caller_leg, 0, 50);
    wait_until("the far end hears the caller", SECS(5), || {
        support::rtp::report(&gw.rtp.packets()).audible_frames >= 40
    });
    gw.phone.wait_ok();
    call.wait_ok();
    hotline.wait_metric("hotline_calls_total{outcome=\"transferred\"}", 1.0, SECS(5));
}

type CallRow = (String, String, String, String);
type LegRow = (String, String, String, String, String);

/// The one call record and the legs, once both are stored.
fn poll_records(db: &std::path::Path) -> (CallRow, Vec<LegRow>) {
    let mut found = None;
    wait_until("the call and its leg are stored", SECS(10), || {
        let Ok(conn) = rusqlite::Connection::open(db) else {
            return false;
        };
        let call = conn.query_row(
            "SELECT id, outcome, reason, hung_up_by FROM calls WHERE outcome != 'refused'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        );
        let Ok(call) = call else {
            return false;
        };
        let Ok(mut stmt) =
            conn.prepare("SELECT call_record, trunk, number, outcome, hung_up_by FROM legs")
        else {
            return false;
        };
        let legs: Vec<LegRow> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map(|rows| rows.filter_map(Result::ok).collect())
            .unwrap_or_default();
        if legs.is_empty() {
            return false;
        }
        found = Some((call, legs));
        true
    });
    found.expect("stored")
}

/// Toll fraud: the flow may name a premium number, but no trunk's patterns
/// allow it, so nothing is dialled; the refusal is counted and the caller
/// goes on to the flow's `on_failure`.
#[test]
fn a_number_no_trunk_allows_is_never_dialled_and_the_refusal_is_counted() {
    let (gw, gw_port) = gateway(1_000);
    let flows = flows_with_emergency_choice("0900123");
    // The gateway would hear anything dialled; it hears nothing.
    let hotline = service(&flows, gw_port);
    let caller_rtp = RtpListener::bind();
    let call = caller(&hotline, &caller_rtp, "9").spawn();
    hotline.wait_metric(
        "hotline_trunk_refusals_total{reason=\"not_allowed\"}",
        1.0,
        SECS(20),
    );
    assert_eq!(
        hotline.metric("hotline_transfers_total{result=\"refused\"}"),
        1.0
    );
    assert_eq!(
        hotline.metric("hotline_transfers_total{result=\"connected\"}"),
        0.0
    );
    // On failure the flow asked for an adviser: the caller is in the queue.
    hotline.wait_for_log("queue=advice", SECS(10));
    assert_eq!(hotline.count_log("transferring"), 0);
    assert!(gw.rtp.packets().is_empty());
    assert_eq!(
        hotline.metric("hotline_trunk_channels{trunk=\"pstn\"}"),
        0.0
    );
    let line = hotline.wait_for_log("transfer refused", SECS(1));
    assert!(
        line.contains("not_allowed") && line.contains("0900123"),
        "{line}"
    );
    call.kill();
    gw.phone.kill();
}

/// An agent talking to a caller puts them through to an outside number with
/// the API: a number no trunk allows is refused (403) and the call goes on;
/// 113 is dialled, the agent's leg ends (wrap-up), and the caller talks to
/// the far end. The records and the queue log tell the whole story.
#[test]
fn the_api_transfers_a_connected_caller_to_an_outside_number() {
    let (gw, gw_port) = gateway(3_000);
    let site = Site::new("", &[OLEK]);
    let hotline = site.start(&format!("api_token: t0ken\n{}", trunk_config(gw_port)));
    let olek = agent(&hotline, "olek", "haslo-1", 200);
    let caller_rtp = RtpListener::bind();
    let call = asks_for_adviser(&hotline, "call_queue_until_bye.xml", &caller_rtp, "4").spawn();
    hotline.wait_metric("hotline_calls_active{stage=\"agent\"}", 1.0, SECS(20));
    let (_, calls) = hotline.get("/api/calls");
    let calls: serde_json::Value = serde_json::from_str(&calls).expect("json");
    let id = calls[0]["id"].as_u64().expect("a call id");
    let path = format!("/api/calls/{id}/transfer");
    // Without the token, and to a number no trunk may dial: refused.
    assert_eq!(hotline.post(&path, None, r#"{"to": "113"}"#).0, 401);
    let (status, body) = hotline.post(&path, Some("t0ken"), r#"{"to": "0900123"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not_allowed"), "{body}");
    assert_eq!(hotline.metric("hotline_calls_active{stage=\"agent\"}"), 1.0);
    let (status, body) = hotline.post(&path, Some("t0ken"), r#"{"to": "113"}"#);
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("dialling"), "{body}");
    // The agent's phone is hung up; the caller reaches the far end.
    olek.phone.wait_ok();
    hotline.wait_metric(
        "hotline_transfers_total{result=\"connected\"}",
        1.0,
        SECS(10),
    );
    assert_eq!(
        hotline.metric("hotline_calls_active{stage=\"transfer\"}"),
        1.0
    );
    let (status, body) = hotline.post(&path, Some("t0ken"), r#"{"to": "113"}"#);
    assert_eq!(status, 409, "a second transfer: {body}");
    far_end_talks_and_hangs_up(&hotline, &caller_rtp, gw, call);
    // Olek was released into wrap-up as after any call, then is ready again.
    let (record, legs) = poll_records(&hotline.data_dir().join("records.db"));
    assert_eq!(
        (record.1.as_str(), record.2.as_str()),
        ("transferred", "transferred to 113")
    );
    assert_eq!(legs.len(), 1, "{legs:?}");
    let conn = rusqlite::Connection::open(hotline.data_dir().join("records.db")).expect("db");
    let (agent_of_call,): (Option<String>,) = conn
        .query_row("SELECT agent FROM calls WHERE id = ?1", [&record.0], |r| {
            Ok((r.get(0)?,))
        })
        .expect("the call");
    assert_eq!(agent_of_call.as_deref(), Some("olek"));
    let events: Vec<String> = conn
        .prepare(
            "SELECT event FROM queue_log WHERE call_id = ?1 AND event != 'agent_state' ORDER BY id",
        )
        .expect("query")
        .query_map([&record.0], |r| r.get(0))
        .expect("rows")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(
        events,
        ["joined", "offered", "answered", "transferred"],
        "{events:?}"
    );
}

/// A service with one trunk to a sipp gateway playing `gateway` (answering
/// after a challenge, or busy), Olek's phone playing `phone` with `keys`, and
/// a Polish caller who reaches Olek and stays until the service hangs up.
struct Scene {
    hotline: Hotline,
    gw: Agent,
    olek: Agent,
    call: support::RunningSipp,
    caller_rtp: RtpListener,
    _site: Site,
}

fn olek_takes_a_caller(gateway: (Agent, u16), phone: &str, keys: &[(&str, &str)]) -> Scene {
    let (gw, gw_port) = gateway;
    let site = Site::new("", &[OLEK]);
    let hotline = site.start(&trunk_config(gw_port));
    let mut olek = AgentPhone::new(&hotline, phone, 1_500);
    for (key, value) in keys {
        olek = olek.arg("-key").arg(key).arg(value);
    }
    let olek = olek.register("olek", "haslo-1");
    let caller_rtp = RtpListener::bind();
    let call = asks_for_adviser(&hotline, "call_queue_until_bye.xml", &caller_rtp, "4").spawn();
    Scene {
        hotline,
        gw,
        olek,
        call,
        caller_rtp,
        _site: site,
    }
}

impl Scene {
    /// The far end, the agent and the caller are done: one answered call,
    /// no trunk channel left in use.
    fn all_done_answered(self) -> (Hotline, Site) {
        self.gw.phone.wait_ok();
        self.olek.phone.wait_ok();
        self.call.wait_ok();
        self.hotline
            .wait_metric("hotline_calls_total{outcome=\"answered\"}", 1.0, SECS(5));
        assert_eq!(
            self.hotline
                .metric("hotline_trunk_channels{trunk=\"pstn\"}"),
            0.0
        );
        (self.hotline, self._site)
    }
}

/// A gateway whose number is busy (486).
fn busy_gateway() -> (Agent, u16) {
    AgentPhone::at(
        "127.0.0.1:9".parse().expect("addr"),
        "trunk_busy_uas.xml",
        0,
    )
    .start()
}

/// Olek's phone consulting 113 as olek.
const CONSULTS_113: [(&str, &str); 2] = [("consult_to", "113"), ("agent_user", "olek")];

/// The agent transfers the caller from the phone (REFER to 113): the phone
/// gets 202 and a NOTIFY saying 200, then the service ends its leg; the
/// caller talks to the far end.
#[test]
fn an_agent_transfers_the_caller_from_the_phone_with_refer() {
    let scene = olek_takes_a_caller(gateway(3_000), "agent_refers.xml", &[("refer_to", "113")]);
    scene.olek.phone.wait_ok();
    scene.hotline.wait_metric(
        "hotline_transfers_total{result=\"connected\"}",
        1.0,
        SECS(10),
    );
    far_end_talks_and_hangs_up(&scene.hotline, &scene.caller_rtp, scene.gw, scene.call);
    let (record, legs) = poll_records(&scene.hotline.data_dir().join("records.db"));
    assert_eq!(record.1, "transferred");
    assert_eq!(legs.len(), 1, "{legs:?}");
    assert!(scene.hotline.count_log("agent asks for a transfer") == 1);
}

/// An attended transfer (RFC 5589): the agent consults the outside number
/// from their phone through the service (the trunk challenges and
/// answers), then REFERs the caller with Replaces; the caller takes the
/// agent's place on that call, with audio, and both of the agent's dialogs
/// end. One call record (transferred), one leg (answered, the caller's).
#[test]
fn an_agent_consults_the_number_then_puts_the_caller_through_attended() {
    let scene = olek_takes_a_caller(gateway(6_000), "agent_attended_transfer.xml", &CONSULTS_113);
    scene
        .hotline
        .wait_for_log("consultation connected", SECS(30));
    assert_eq!(
        scene
            .hotline
            .metric("hotline_calls_active{stage=\"agent\"}"),
        1.0,
        "the agent still has the caller while consulting"
    );
    scene.olek.phone.wait_ok();
    scene.hotline.wait_metric(
        "hotline_transfers_total{result=\"connected\"}",
        1.0,
        SECS(10),
    );
    assert_eq!(scene.hotline.count_log("attended transfer connected"), 1);
    far_end_talks_and_hangs_up(&scene.hotline, &scene.caller_rtp, scene.gw, scene.call);
    let (record, legs) = poll_records(&scene.hotline.data_dir().join("records.db"));
    assert_eq!(record.1, "transferred");
    assert_eq!(legs.len(), 1, "{legs:?}");
    assert_eq!(legs[0].3, "answered", "{legs:?}");
    assert_eq!(
        scene
            .hotline
            .metric("hotline_trunk_channels{trunk=\"pstn\"}"),
        0.0
    );
}

/// The agent consults the outside number but hangs the consultation up:
/// the outside leg ends, a REFER naming the ended consultation is refused
/// (481 in its NOTIFY), and the agent still has the caller until hanging up
/// themself. Recorded as an answered call with one consultation leg.
#[test]
fn a_consultation_hung_up_leaves_the_caller_with_the_agent() {
    let scene = olek_takes_a_caller(
        gateway(20_000),
        "agent_consults_then_hangs_up.xml",
        &CONSULTS_113,
    );
    scene
        .hotline
        .wait_for_log("consultation connected", SECS(30));
    scene.olek.phone.wait_ok();
    scene.call.wait_ok();
    // The gateway's side was hung up by us (its scenario expects no BYE
    // from us before its own: it is simply stopped).
    drop(scene.gw);
    scene
        .hotline
        .wait_metric("hotline_calls_total{outcome=\"answered\"}", 1.0, SECS(5));
    assert_eq!(
        scene
            .hotline
            .metric("hotline_transfers_total{result=\"connected\"}"),
        0.0
    );
    assert_eq!(
        scene
            .hotline
            .metric("hotline_trunk_channels{trunk=\"pstn\"}"),
        0.0
    );
    let (record, legs) = poll_records(&scene.hotline.data_dir().join("records.db"));
    assert_eq!(record.1, "answered");
    assert_eq!(legs.len(), 1, "{legs:?}");
    assert_eq!(legs[0].3, "answered", "{legs:?}");
    assert_eq!(legs[0].4, "agent", "{legs:?}");
    assert_eq!(scene.hotline.count_log("attended transfer refused"), 1);
}

/// The number an agent consults is busy: the phone's consultation call
/// gets the far end's 486 (not a generic failure), nothing stays dialled,
/// and the agent still has the caller.
#[test]
fn a_busy_consultation_is_refused_with_the_far_ends_status() {
    let scene = olek_takes_a_caller(busy_gateway(), "agent_consults_busy.xml", &CONSULTS_113);
    let line = scene
        .hotline
        .wait_for_log("consultation not answered", SECS(30));
    assert!(line.contains("code=486"), "{line}");
    scene.all_done_answered();
}

/// The number an agent transfers to is busy: their phone hears so in the
/// NOTIFY (486) and still has the caller; nothing is left dialling.
#[test]
fn a_refer_to_a_busy_number_is_reported_and_the_agent_keeps_the_caller() {
    let scene = olek_takes_a_caller(
        busy_gateway(),
        "agent_refers_busy.xml",
        &[("refer_to", "113")],
    );
    scene
        .hotline
        .wait_metric("hotline_transfers_total{result=\"failed\"}", 1.0, SECS(20));
    assert_eq!(
        scene
            .hotline
            .metric("hotline_calls_active{stage=\"agent\"}"),
        1.0,
        "the agent still has the caller"
    );
    assert_eq!(
        scene
            .hotline
            .metric("hotline_trunk_channels{trunk=\"pstn\"}"),
        0.0
    );
    // The agent hangs up after talking on: an answered call.
    let (hotline, _site) = scene.all_done_answered();
    assert_eq!(
        hotline.metric("hotline_calls_total{outcome=\"transferred\"}"),
        0.0
    );
}
