//! The live event stream and the wallboard page, against the real binary.

mod support;

use std::time::Duration;
use support::ws::WsClient;
use support::Hotline;

#[test]
fn websocket_streams_a_snapshot_then_call_events() {
    let hotline = Hotline::start();
    let mut ws = WsClient::connect(hotline.http, "/ws").expect("upgrade");
    let snapshot = ws.wait_for("snapshot", Duration::from_secs(5));
    assert!(snapshot["calls"].as_array().is_some_and(|c| c.is_empty()));
    assert_eq!(snapshot["totals"]["languages"]["en"], 0);

    hotline
        .sipp("call_info_dtmf.xml")
        .key("digit", "2")
        .duration_ms(2000)
        .run_ok();
    let started = ws.wait_for("call_started", Duration::from_secs(5));
    let call = started["call"].clone();
    let chosen = ws.wait_for("language_chosen", Duration::from_secs(5));
    assert_eq!(chosen["language"], "en");
    assert_eq!(chosen["call"], call);
    let ended = ws.wait_for("call_ended", Duration::from_secs(5));
    assert_eq!(ended["call"], call);
    assert_eq!(ended["outcome"], "abandoned_ivr");
    assert_eq!(ended["language"], "en");

    // A new client starts from totals that include that call.
    let mut late = WsClient::connect(hotline.http, "/ws").expect("upgrade");
    let snapshot = late.wait_for("snapshot", Duration::from_secs(5));
    assert_eq!(snapshot["totals"]["languages"]["en"], 1);
    assert_eq!(snapshot["totals"]["outcomes"]["abandoned_ivr"], 1);
}

#[test]
fn websocket_token_is_asked_when_configured() {
    let hotline = Hotline::with_config("ws_token: wall-42\n");
    assert_eq!(WsClient::connect(hotline.http, "/ws").err(), Some(401));
    assert_eq!(
        WsClient::connect(hotline.http, "/ws?token=nope").err(),
        Some(401)
    );
    let mut ws = WsClient::connect(hotline.http, "/ws?token=wall-42").expect("upgrade");
    ws.wait_for("snapshot", Duration::from_secs(5));
}

#[test]
fn wallboard_page_is_served() {
    let hotline = Hotline::start();
    let (status, body) = hotline.get("/");
    assert_eq!(status, 200);
    assert!(body.contains("new WebSocket("), "the page reads /ws");
    assert!(body.contains("\"rtl\""), "Arabic is laid out right to left");
    // Everything the page runs is in it: nothing is fetched from elsewhere.
    assert!(!body.contains("<script src"), "no external script");
    assert!(!body.contains("<link"), "no external style sheet");
    assert!(!body.contains("https://"), "no other site");
}

#[test]
fn the_last_hour_and_the_estimates_per_language_are_served() {
    let hotline = Hotline::start();
    let (status, body) = hotline.get("/api/history");
    assert_eq!(status, 200, "{body}");
    let history: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(history["step_seconds"], 60, "{history}");
    let minutes = history["minutes"].as_u64().expect("minutes");
    assert!((1..=60).contains(&minutes), "{history}");
    let languages = history["languages"].as_object().expect("languages");
    assert_eq!(languages.len(), 7, "{history}");
    for (code, line) in languages {
        for series in [
            "waiting",
            "answered",
            "answered_in_time",
            "abandoned",
            "service_level",
        ] {
            let values = line[series].as_array().expect(series);
            assert_eq!(values.len() as u64, minutes, "{code} {series}: {history}");
        }
    }
    // A wallboard connecting now gets the same hour in its snapshot.
    let mut ws = WsClient::connect(hotline.http, "/ws").expect("upgrade");
    let snapshot = ws.wait_for("snapshot", Duration::from_secs(5));
    assert_eq!(snapshot["history"]["step_seconds"], 60, "{snapshot}");
    assert!(snapshot["history"]["languages"]["pl"]["waiting"].is_array());

    // No agent is logged in: no queue can say how long a caller would wait.
    let (status, body) = hotline.get("/api/queues");
    assert_eq!(status, 200, "{body}");
    let queues: serde_json::Value = serde_json::from_str(&body).expect("json");
    let pl = queues
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["name"] == "advice_pl")
        .expect("advice_pl");
    assert_eq!(
        pl["estimated_wait_by_language"],
        serde_json::json!({"pl": null}),
        "{pl}"
    );
}
