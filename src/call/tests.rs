//! The call layer driven with a fake clock, the real SIP endpoint, the real
//! default flows, and a media side that records what it was asked.

use super::*;
use crate::media::{Clip, MediaError, StreamParams};
use crate::metrics::Metrics;
use crate::sip::EndpointConfig;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Default)]
struct FakeMedia {
    opened: Vec<(CallId, StreamParams)>,
    updates: Vec<(CallId, StreamParams)>,
    plays: Vec<(CallId, u64, usize)>,
    stops: usize,
    closed: Vec<CallId>,
    fail_open: bool,
}

impl MediaControl for FakeMedia {
    fn open(&mut self, call: CallId, params: StreamParams) -> Result<u16, MediaError> {
        if self.fail_open {
            return Err(MediaError::NoFreePort);
        }
        self.opened.push((call, params));
        Ok(40000)
    }
    fn update(&mut self, call: CallId, params: StreamParams) {
        self.updates.push((call, params));
    }
    fn play(&mut self, call: CallId, play_id: u64, clips: Vec<Arc<Clip>>) {
        self.plays.push((call, play_id, clips.len()));
    }
    fn stop(&mut self, _call: CallId) {
        self.stops += 1;
    }
    fn close(&mut self, call: CallId) {
        self.closed.push(call);
    }
    fn open_pending(&mut self, _call: CallId) -> Result<u16, MediaError> {
        Ok(40002)
    }
    fn play_music(&mut self, _call: CallId, _clip: Arc<Clip>) {}
    fn stop_music(&mut self, _call: CallId) {}
    fn bridge(&mut self, _a: CallId, _b: CallId) {}
    fn unbridge(&mut self, _call: CallId) {}
    fn set_rtp_timeout(&mut self, _call: CallId, _timeout: Option<std::time::Duration>) {}
}

fn bundle() -> Arc<FlowBundle> {
    static BUNDLE: OnceLock<Arc<FlowBundle>> = OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ivr-flows");
            let flows = FlowSet::load(&dir).expect("default flows load");
            let prompts = PromptLibrary::load(&dir, &flows.catalogue).expect("prompt audio loads");
            Arc::new(FlowBundle {
                flows: Arc::new(flows),
                prompts: Arc::new(prompts),
            })
        })
        .clone()
}

/// The call core with the shell's part played: outputs go to real sinks.
struct Harness {
    manager: CallManager<FakeMedia>,
    metrics: Arc<Metrics>,
    sinks: crate::server::Sinks,
    now: Now,
    peer: SocketAddr,
}

impl Harness {
    fn new() -> Harness {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let now = Now::read();
        let endpoint = SipEndpoint::new(EndpointConfig {
            local_addr: "127.0.0.1:5060".parse().expect("addr"),
            user_agent: "hotline-test".into(),
            max_message_size: 16 * 1024,
            max_calls: 100,
            max_transactions: 1000,
        });
        let mut h = Harness {
            manager: CallManager::new(
                now,
                endpoint,
                FakeMedia::default(),
                bundle(),
                "127.0.0.1".parse().expect("ip"),
            ),
            sinks: crate::server::Sinks {
                metrics: Arc::clone(&metrics),
                records: None,
                events: crate::events::EventBus::new(),
                cluster: None,
            },
            metrics,
            now,
            peer: "127.0.0.1:5999".parse().expect("addr"),
        };
        h.deliver();
        h
    }

    /// Keeps records from now on, in `dir`.
    fn keep_records(&mut self, dir: &Path) {
        let sink = crate::cdr::RecordSink::start(dir, self.metrics.clone()).expect("records sink");
        self.sinks.records = Some(sink);
    }

    fn deliver(&mut self) {
        self.sinks.deliver(self.now, &mut self.manager);
    }

    fn send(&mut self, text: &str) -> Vec<String> {
        self.manager
            .handle_sip(self.now, Transport::Udp, self.peer, text.as_bytes());
        self.drain()
    }

    fn media_event(&mut self, event: MediaEvent) {
        self.manager.handle_media(self.now, event);
        self.deliver();
    }

    fn drain(&mut self) -> Vec<String> {
        self.deliver();
        let mut out = Vec::new();
        while let Some(t) = self.manager.poll_transmit() {
            out.push(String::from_utf8_lossy(&t.payload).into_owned());
        }
        out
    }

    /// Advances the fake clock, running every timer due on the way.
    fn advance(&mut self, by: Duration) -> Vec<String> {
        let end = self.now.mono + by;
        let mut out = Vec::new();
        while let Some(at) = self.manager.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.at(at.max(self.now.mono));
            self.manager.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = self.now.at(end);
        out
    }

    /// Finishes whatever the media side is playing.
    fn finish_playback(&mut self) {
        let Some(&(call, play_id, _)) = self.manager.media.plays.last() else {
            return;
        };
        self.media_event(MediaEvent::PlaybackFinished { call, play_id });
    }

    /// Runs the wall-clock housekeeping as if it were `wall`.
    fn housekeeping(&mut self, wall: chrono::DateTime<chrono::Utc>) {
        self.manager.housekeeping(Now::new(self.now.mono, wall));
        self.sinks
            .deliver(Now::new(self.now.mono, wall), &mut self.manager);
    }

    fn counter(&self, outcome: &str) -> u64 {
        self.metrics.calls_total.with_label_values(&[outcome]).get()
    }
}

fn invite(call_id: &str, sdp: Option<&str>) -> String {
    let body = sdp.unwrap_or("");
    let ct = if sdp.is_some() {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    format!(
        "INVITE sip:80012345@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{call_id};rport\r\n\
From: \"Caller\" <sip:4791234567@127.0.0.1>;tag=from-{call_id}\r\n\
To: <sip:80012345@127.0.0.1>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:4791234567@127.0.0.1:5999>\r\n\
Max-Forwards: 70\r\n\
{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn to_tag(response: &str) -> String {
    response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .and_then(|l| l.split(";tag=").nth(1))
        .map(|t| t.trim().to_string())
        .expect("To tag")
}

fn in_dialog(method: &str, call_id: &str, tag: &str, cseq: u32) -> String {
    format!(
        "{method} sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{method}-{call_id}-{cseq};rport\r\n\
From: \"Caller\" <sip:4791234567@127.0.0.1>;tag=from-{call_id}\r\n\
To: <sip:80012345@127.0.0.1>;tag={tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn answers_plays_welcome_and_a_digit_chooses_the_language() {
    let mut h = Harness::new();
    let out = h.send(&invite("c1", Some(OFFER)));
    assert!(out[0].starts_with("SIP/2.0 100"), "{out:?}");
    let ok = out
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .expect("200 OK");
    assert!(
        ok.contains("m=audio 40000 RTP/AVP 8 101"),
        "PCMA first in the offer: {ok}"
    );
    let (_, params) = h.manager.media.opened[0];
    assert_eq!(params.codec, crate::media::Codec::Pcma);
    assert_eq!(h.metrics.calls_active.with_label_values(&["ivr"]).get(), 1);
    // The welcome plays first.
    let (call, _, clips) = h.manager.media.plays[0];
    assert!(clips >= 1);
    let tag = to_tag(ok);
    h.send(&in_dialog("ACK", "c1", &tag, 1));

    // Press 2 while the menu plays: barge-in stops it, English is chosen.
    h.finish_playback();
    h.media_event(MediaEvent::Digit { call, digit: '2' });
    assert!(h.manager.media.stops >= 1, "barge-in stops the prompt");
    assert_eq!(
        h.metrics
            .language_selected_total
            .with_label_values(&["en"])
            .get(),
        1
    );
    let summary = h.manager.summaries(h.now);
    assert_eq!(summary[0].language, Some(Language::En));

    // The caller hangs up: abandoned in the IVR, media released.
    let out = h.send(&in_dialog("BYE", "c1", &tag, 2));
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 200")), "{out:?}");
    assert_eq!(h.counter("abandoned_ivr"), 1);
    assert_eq!(h.manager.media.closed, vec![call]);
    assert_eq!(h.manager.call_count(), 0);
    assert_eq!(h.metrics.calls_active.with_label_values(&["ivr"]).get(), 0);
}

#[test]
fn silence_at_the_language_menu_means_norwegian() {
    let mut h = Harness::new();
    let out = h.send(&invite("c2", Some(OFFER)));
    let tag = to_tag(
        out.iter()
            .find(|m| m.starts_with("SIP/2.0 200"))
            .expect("200"),
    );
    h.send(&in_dialog("ACK", "c2", &tag, 1));
    // Let every prompt finish and every menu time out.
    for _ in 0..12 {
        h.finish_playback();
        h.advance(Duration::from_secs(10));
        if h.metrics
            .language_selected_total
            .with_label_values(&["nb"])
            .get()
            > 0
        {
            break;
        }
    }
    assert_eq!(
        h.metrics
            .language_selected_total
            .with_label_values(&["nb"])
            .get(),
        1
    );
}

#[test]
fn no_offer_is_488_and_counted_as_rejected() {
    let mut h = Harness::new();
    let out = h.send(&invite("c3", None));
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 488")), "{out:?}");
    assert_eq!(h.counter("rejected"), 1);
    assert!(h.manager.media.opened.is_empty());
}

#[test]
fn no_rtp_port_is_503_and_counted_as_failed() {
    let mut h = Harness::new();
    h.manager.media.fail_open = true;
    let out = h.send(&invite("c4", Some(OFFER)));
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 503")), "{out:?}");
    assert_eq!(h.counter("failed"), 1);
}

#[test]
fn shutdown_hangs_up_calls_in_progress() {
    let mut h = Harness::new();
    let out = h.send(&invite("c5", Some(OFFER)));
    let tag = to_tag(
        out.iter()
            .find(|m| m.starts_with("SIP/2.0 200"))
            .expect("200"),
    );
    h.send(&in_dialog("ACK", "c5", &tag, 1));
    h.manager.shut_down(h.now);
    let out = h.drain();
    assert!(out.iter().any(|m| m.starts_with("BYE ")), "{out:?}");
    // New calls are refused while draining.
    let out = h.send(&invite("c6", Some(OFFER)));
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 503")), "{out:?}");
}

#[test]
fn a_draining_node_answers_probes_with_503_so_a_front_sends_no_new_calls() {
    let mut h = Harness::new();
    let options = |n: u32| {
        format!(
            "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-probe{n};rport\r\n\
From: <sip:front@127.0.0.1>;tag=p{n}\r\n\
To: <sip:127.0.0.1:5060>\r\n\
Call-ID: probe-{n}\r\n\
CSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    let out = h.send(&options(1));
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 200")), "{out:?}");
    h.manager.start_draining(h.now);
    let out = h.send(&options(2));
    let refused = out
        .iter()
        .find(|m| m.starts_with("SIP/2.0 503"))
        .unwrap_or_else(|| panic!("503 while draining: {out:?}"));
    assert!(refused.contains("Retry-After:"), "{refused}");
}

#[test]
fn answer_delay_rings_first_and_cancel_is_abandoned() {
    let mut h = Harness::new();
    let dir = tempfile::tempdir().expect("tempdir");
    h.keep_records(dir.path());
    h.manager.set_answer_delay(Duration::from_secs(2));
    let out = h.send(&invite("c7", Some(OFFER)));
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 180")), "{out:?}");
    assert!(!out.iter().any(|m| m.starts_with("SIP/2.0 200")));
    let cancel = "CANCEL sip:80012345@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-c7;rport\r\n\
From: \"Caller\" <sip:4791234567@127.0.0.1>;tag=from-c7\r\n\
To: <sip:80012345@127.0.0.1>\r\n\
Call-ID: c7\r\n\
CSeq: 1 CANCEL\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";
    let out = h.send(cancel);
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 487")), "{out:?}");
    assert_eq!(h.counter("abandoned_ivr"), 1);
    let out = h.advance(Duration::from_secs(3));
    assert!(
        !out.iter().any(|m| m.starts_with("SIP/2.0 200")),
        "no answer after cancel"
    );
    assert!(h.manager.media.opened.is_empty());
    // Ended before it was answered, and still on record.
    assert_eq!(
        stored_records(dir.path(), &h.metrics, 1),
        [(
            "c7:1".to_string(),
            "abandoned_ivr".to_string(),
            "cancelled_before_answer".to_string()
        )]
    );
}

#[test]
fn reinvite_to_hold_and_back_updates_media_and_answers() {
    let mut h = Harness::new();
    let out = h.send(&invite("c8", Some(OFFER)));
    let tag = to_tag(
        out.iter()
            .find(|m| m.starts_with("SIP/2.0 200"))
            .expect("200"),
    );
    h.send(&in_dialog("ACK", "c8", &tag, 1));
    let reinvite = |cseq: u32, sdp: &str, branch: &str| {
        format!(
            "INVITE sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-{branch};rport\r\n\
From: \"Caller\" <sip:4791234567@127.0.0.1>;tag=from-c8\r\n\
To: <sip:80012345@127.0.0.1>;tag={tag}\r\n\
Call-ID: c8\r\n\
CSeq: {cseq} INVITE\r\n\
Contact: <sip:4791234567@127.0.0.1:5999>\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    let hold = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";
    let out = h.send(&reinvite(2, hold, "hold"));
    let ok = out
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .expect("re-INVITE answered");
    assert!(ok.contains("a=recvonly"), "{ok}");
    assert!(
        ok.contains("o=hotline 1 2 "),
        "session version goes up: {ok}"
    );
    assert!(
        !h.manager.media.updates[0].1.send,
        "on hold nothing is sent"
    );
    h.send(&in_dialog("ACK", "c8", &tag, 2));

    // Back from hold at a new address.
    let resume = "v=0\r\no=- 1 3 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    let out = h.send(&reinvite(3, resume, "resume"));
    let ok = out
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .expect("re-INVITE answered");
    assert!(ok.contains("a=sendrecv"), "{ok}");
    assert!(ok.contains("m=audio 40000 "), "same local port: {ok}");
    let (_, resumed) = h.manager.media.updates[1];
    assert!(resumed.send);
    assert_eq!(resumed.remote, "127.0.0.2:7000".parse().expect("addr"));
    assert_eq!(h.manager.call_count(), 1);
}

/// The records' `(id, outcome, reason)` once `n` of them are stored.
fn stored_records(dir: &Path, metrics: &Metrics, n: u64) -> Vec<(String, String, String)> {
    for _ in 0..200 {
        if metrics.cdr_written_total.get() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let db = rusqlite::Connection::open(dir.join(crate::cdr::DB_FILE)).expect("db");
    let mut stmt = db
        .prepare("SELECT id, outcome, reason FROM calls ORDER BY id")
        .expect("select");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows");
    rows
}

#[test]
fn refused_calls_from_trusted_sources_leave_a_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::new();
    h.keep_records(dir.path());
    h.manager.media.fail_open = true;
    h.send(&invite("r1", Some(OFFER)));
    h.manager.media.fail_open = false;
    h.send(&invite("r2", None));
    h.manager.start_draining(h.now);
    h.drain();
    h.send(&invite("r3", Some(OFFER)));
    // Nobody else may place calls, or fill the records.
    h.manager
        .endpoint
        .set_admission(crate::sip::admission::AdmissionConfig {
            trusted_sources: vec!["10.0.0.0/8".parse().expect("cidr")],
            ..crate::sip::admission::AdmissionConfig::open()
        });
    let out = h.send(&invite("r4", Some(OFFER)));
    assert!(out.iter().any(|m| m.starts_with("SIP/2.0 503")), "{out:?}");
    let rows = stored_records(dir.path(), &h.metrics, 3);
    let refused = |id: &str, reason: &str| (id.to_string(), "refused".to_string(), reason.into());
    assert_eq!(
        rows,
        [
            refused("r1:1", "no_media_port"),
            refused("r2:2", "no_sdp"),
            refused("r3:3", "draining"),
        ]
    ); // The untrusted one never arrives.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.metrics.cdr_written_total.get(), 3);
}

#[test]
fn a_caller_who_stops_refreshing_is_hung_up_and_recorded_as_session_expired() {
    let mut h = Harness::new();
    let data = tempfile::tempdir().expect("tempdir");
    h.keep_records(data.path());
    let inv = invite("c9", Some(OFFER)).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nSession-Expires: 90;refresher=uac\r\nSupported: timer\r\n",
    );
    let out = h.send(&inv);
    let ok = out
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .expect("200");
    assert!(
        ok.contains("\r\nSession-Expires: 90;refresher=uac\r\n"),
        "{ok}"
    );
    let tag = to_tag(ok);
    h.send(&in_dialog("ACK", "c9", &tag, 1));
    // RFC 4028 10: expiry at 90 - min(32, 30) = 60 s without a refresh.
    let out = h.advance(Duration::from_millis(59_900));
    assert!(!out.iter().any(|m| m.starts_with("BYE ")), "{out:?}");
    let out = h.advance(Duration::from_millis(200));
    let bye = out
        .iter()
        .find(|m| m.starts_with("BYE "))
        .unwrap_or_else(|| panic!("BYE: {out:?}"));
    // The BYE's own headers make its 200 (Via, From, To, Call-ID, CSeq).
    let response = bye.replacen(
        bye.lines().next().expect("request line"),
        "SIP/2.0 200 OK",
        1,
    );
    h.send(&response);
    assert_eq!(h.counter(outcome::FAILED), 1);
    // The record says why.
    let db = data.path().join(crate::cdr::DB_FILE);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let row: Option<(String, String)> = rusqlite::Connection::open(&db).ok().and_then(|c| {
            c.query_row("SELECT reason, hung_up_by FROM calls", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .ok()
        });
        if let Some(row) = row {
            assert_eq!(row, ("session_expired".to_string(), "service".to_string()));
            break;
        }
        assert!(Instant::now() < end, "no call record");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn languages_are_offered_only_while_the_line_is_open_and_a_new_day_is_announced() {
    let mut h = Harness::new();
    let mut stream = h.sinks.events.subscribe();
    let wall = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .expect("instant")
            .with_timezone(&chrono::Utc)
    };
    let offered = |m: &Metrics, code: &str| m.language_offered.with_label_values(&[code]).get();

    // The default flows' `staffed` schedule: open all day on ordinary days,
    // 08:00-14:00 on Christmas Eve, closed on Christmas Day (a holiday).
    h.housekeeping(wall("2026-12-24T13:59:00+01:00"));
    assert_eq!(offered(&h.metrics, "pl"), 1);
    assert_eq!(offered(&h.metrics, "nb"), 1);
    h.housekeeping(wall("2026-12-24T14:00:00+01:00"));
    assert_eq!(
        offered(&h.metrics, "pl"),
        0,
        "closed at 14:00 on Christmas Eve"
    );
    assert_eq!(offered(&h.metrics, "nb"), 0);
    h.housekeeping(wall("2026-12-25T10:00:00+01:00"));
    assert_eq!(offered(&h.metrics, "ar"), 0, "closed on Christmas Day");
    h.housekeeping(wall("2026-12-28T10:00:00+01:00"));
    assert_eq!(offered(&h.metrics, "ar"), 1);

    // Each local day was announced once, in order.
    let mut days = Vec::new();
    while let Ok(event) = stream.try_recv() {
        if let LiveEvent::DayStarted { day, .. } = event {
            days.push(day);
        }
    }
    assert_eq!(days, ["2026-12-24", "2026-12-25", "2026-12-28"]);

    // The timer runs housekeeping on its own.
    assert!(h
        .manager
        .poll_timeout()
        .is_some_and(|at| at <= h.now.mono + HOUSEKEEPING_EVERY));
}

fn register(call_id: &str, branch: &str, cseq: u32) -> String {
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{branch}\r\n\
         From: <sip:piotr@127.0.0.1>;tag=r1\r\n\
         To: <sip:piotr@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:piotr@127.0.0.1:5999>\r\n\
         Expires: 600\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn challenges(response: &str) -> Vec<&str> {
    response
        .lines()
        .filter(|l| l.starts_with("WWW-Authenticate:"))
        .collect()
}

#[test]
fn phones_are_challenged_as_configured_and_an_unanswered_challenge_is_counted_once() {
    use crate::acd::AgentDirectory;
    use crate::registrar::{ha1, Algorithm};
    let mut h = Harness::new();
    let agents = AgentDirectory::parse(
        Path::new("agents.yaml"),
        &format!(
            "agents:\n  - id: piotr\n    name: Piotr\n    sip_username: piotr\n    ha1: {}\n    ha1_sha256: {}\n    skills: {{pl: 10}}\n",
            ha1(Algorithm::Md5, "piotr", "hotline", "pw"),
            ha1(Algorithm::Sha256, "piotr", "hotline", "pw"),
        ),
    )
    .expect("agents");
    h.manager.set_agents(h.now, agents);
    let failures = |h: &Harness| {
        h.metrics
            .register_failures_total
            .with_label_values(&["no_answer"])
            .get()
    };
    // By default: MD5 alone.
    let out = h.send(&register("reg-1", "a1", 1));
    let first = out
        .iter()
        .find(|r| r.starts_with("SIP/2.0 401"))
        .expect("401");
    assert_eq!(challenges(first).len(), 1, "{first}");
    assert!(challenges(first)[0].contains("algorithm=MD5"), "{first}");
    // As the config asks: SHA-256, then MD5.
    h.manager
        .set_digest_algorithms(&[Algorithm::Sha256, Algorithm::Md5]);
    let out = h.send(&register("reg-1", "a2", 2));
    let second = out
        .iter()
        .find(|r| r.starts_with("SIP/2.0 401"))
        .expect("401");
    let offered = challenges(second);
    assert_eq!(offered.len(), 2, "{second}");
    assert!(offered[0].contains("algorithm=SHA-256") && offered[1].contains("algorithm=MD5"));
    // A retransmission is answered again by the transaction, not counted.
    h.send(&register("reg-1", "a2", 2));
    // The phone never answers: after 32 s, one failure.
    h.advance(Duration::from_secs(31));
    assert_eq!(failures(&h), 0);
    h.advance(Duration::from_secs(2));
    assert_eq!(failures(&h), 1);
    h.advance(Duration::from_secs(60));
    assert_eq!(failures(&h), 1);
}
