//! Callbacks: a site whose flows offer the callback at once, a trunk that
//! may call the test caller back, and a Polish caller who books one.

use super::agents::{asks_for_adviser, Agent, AgentPhone, OLEK};
use super::rtp::RtpListener;
use super::scenario::Site;
use super::Hotline;
use std::time::Duration;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The default flows, with the callback offered two seconds into the wait
/// (whatever the estimate): the test need not wait ten minutes.
pub fn site() -> Site {
    let site = Site::new("", &[OLEK]);
    let path = site.flows().join("adviser.yaml");
    let text = std::fs::read_to_string(&path).expect("read flow");
    let from =
        "callback: { after: 1m, every: 5m, estimated_wait: 10m, key: \"1\", goto: callback }";
    assert!(text.contains(from), "adviser.yaml offers callbacks");
    std::fs::write(
        &path,
        text.replace(from, "callback: { after: 2s, key: \"1\", goto: callback }"),
    )
    .expect("write flow");
    site
}

/// One trunk that may dial Norwegian mobile numbers, at the gateway's port.
pub fn trunk_config(gateway_port: u16) -> String {
    format!(
        "trunks:\n  - name: pstn\n    address: 127.0.0.1:{gateway_port}\n    username: hotline\n    password: s3cret\n    patterns: [\"47XXXXXXXX\"]\n    channels: 2\n"
    )
}

/// The gateway as the caller's phone: answers our call to 4790000001 and
/// hangs up after `talk_ms`.
pub fn gateway(talk_ms: u64) -> (Agent, u16) {
    AgentPhone::at(
        "127.0.0.1:9".parse().expect("addr"),
        "trunk_callback_uas.xml",
        talk_ms,
    )
    .start()
}

/// A Polish caller (4790000001, dialling 116123) who books a callback on
/// their own number and is then told goodbye.
pub fn books_a_callback(hotline: &Hotline, rtp: &RtpListener) {
    books_a_callback_on(hotline, rtp, "");
}

/// The same on a node whose metrics carry more labels (`,node="a"`).
pub fn books_a_callback_on(hotline: &Hotline, rtp: &RtpListener, labels: &str) {
    let call = asks_for_adviser(hotline, "call_books_callback.xml", rtp, "4")
        .arg("-s")
        .arg("116123")
        .spawn();
    hotline.wait_metric(
        &format!("hotline_callbacks_total{{event=\"requested\",language=\"pl\"{labels}}}"),
        1.0,
        SECS(30),
    );
    // The goodbye, then our BYE: the caller's scenario ends cleanly.
    call.wait_ok();
    hotline.wait_metric(
        &format!("hotline_calls_total{{outcome=\"callback\"{labels}}}"),
        1.0,
        SECS(5),
    );
    assert_eq!(
        hotline.metric(&format!(
            "hotline_callbacks_pending{{language=\"pl\"{labels}}}"
        )),
        1.0
    );
    assert_eq!(
        hotline.metric(&format!(
            "hotline_calls_total{{outcome=\"abandoned_queue\"{labels}}}"
        )),
        0.0,
        "hanging up after booking is not abandoning"
    );
}
