//! The live event stream and the wallboard page, against the real binary.

mod support;

use std::time::Duration;
use support::ws::WsClient;
use support::{Hotline, Options};

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
    let hotline = Hotline::start_with(Options {
        config: Some("ws_token: wall-42\n".into()),
        ..Options::default()
    });
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
}
