//! Scenario tests: raw SIP text in (as sipp sends it), exact bytes, events and
//! timers out. The clock is fake: instants are `t0 + offset`.

use super::*;

const SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
const ANSWER: &str = "v=0\r\no=hotline 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n";

fn peer() -> SocketAddr {
    "127.0.0.1:5061".parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Harness {
    ep: SipEndpoint,
    t0: Instant,
}

impl Harness {
    fn new(max_calls: usize) -> Harness {
        let config = EndpointConfig {
            local_addr: "127.0.0.1:5060".parse().unwrap(),
            user_agent: "hotline-test".into(),
            max_message_size: 8192,
            max_calls,
            max_transactions: 0,
        };
        Harness {
            ep: SipEndpoint::new(config),
            t0: Instant::now(),
        }
    }

    fn at(&self, offset_ms: u64) -> Instant {
        self.t0 + ms(offset_ms)
    }

    fn feed_from(&mut self, offset_ms: u64, transport: Transport, source: SocketAddr, text: &str) {
        let now = self.at(offset_ms);
        self.ep
            .handle_input(now, transport, source, text.as_bytes());
    }

    fn feed(&mut self, offset_ms: u64, text: &str) {
        self.feed_from(offset_ms, Transport::Udp, peer(), text);
    }

    fn sent(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.ep.poll_transmit())
            .map(|t| String::from_utf8(t.payload).unwrap())
            .collect()
    }

    /// A new INVITE with SDP at 0 ms, reported as one `IncomingCall` and
    /// answered 100 (read).
    fn offered(&mut self, call_id: &str, branch: &str) -> CallId {
        self.feed(0, &invite(call_id, branch, Some(SDP)));
        let call = self.incoming().call;
        self.sent();
        call
    }

    /// The last message sent (there must be one); the others are dropped.
    fn last_sent(&mut self) -> String {
        self.sent().pop().expect("a message sent")
    }

    fn sent_to(&mut self) -> Vec<(SocketAddr, String)> {
        std::iter::from_fn(|| self.ep.poll_transmit())
            .map(|t| (t.destination, String::from_utf8(t.payload).unwrap()))
            .collect()
    }

    fn events(&mut self) -> Vec<SipEvent> {
        std::iter::from_fn(|| self.ep.poll_event()).collect()
    }

    fn incoming(&mut self) -> IncomingCall {
        match self.events().as_slice() {
            [SipEvent::IncomingCall(c)] => c.clone(),
            other => panic!("expected one IncomingCall, got {other:?}"),
        }
    }

    fn responses(&self, code: u16) -> u64 {
        self.ep.stats().responses_of(code)
    }

    fn requests(&self, method: &str) -> u64 {
        self.ep.stats().requests_of(method)
    }

    /// Runs every timer up to `until_ms`; returns (offset, sent text) pairs.
    fn run_until(&mut self, until_ms: u64) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        while let Some(at) = self.ep.poll_timeout() {
            if at > self.at(until_ms) {
                break;
            }
            self.ep.handle_timeout(at);
            let offset = (at - self.t0).as_millis() as u64;
            for s in self.sent() {
                out.push((offset, s));
            }
        }
        out
    }
}

fn invite(call_id: &str, branch: &str, body: Option<&str>) -> String {
    let (ct, body) = match body {
        Some(b) => ("Content-Type: application/sdp\r\n", b),
        None => ("", ""),
    };
    format!(
        "INVITE sip:22334455@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n\
         From: \"Kari Nordmann\" <sip:4799887766@127.0.0.1:5061>;tag=caller-tag\r\n\
         To: <sip:22334455@127.0.0.1:5060>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sipp@127.0.0.1:5061>\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         {ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// sipp's side of one dialog: the in-dialog requests it sends (ACK, BYE,
/// INFO, re-INVITE, UPDATE) carry its Call-ID and our To tag.
struct Caller {
    call_id: String,
    tag: String,
}

impl Caller {
    fn new(call_id: &str, tag: &str) -> Caller {
        Caller {
            call_id: call_id.to_string(),
            tag: tag.to_string(),
        }
    }

    /// A request to which headers and a body may be added before `text`.
    fn request<'a>(&'a self, method: &'a str, cseq: u32, branch: &'a str) -> InDialog<'a> {
        InDialog {
            call_id: &self.call_id,
            tag: &self.tag,
            method,
            cseq,
            branch,
            extra: String::new(),
            body: "",
        }
    }

    /// A request without extra headers or body.
    fn says(&self, method: &str, cseq: u32, branch: &str) -> String {
        self.request(method, cseq, branch).text()
    }

    /// A request carrying our test SDP as its offer (re-INVITE, UPDATE).
    fn offers(&self, method: &str, cseq: u32, branch: &str) -> String {
        let request = self.request(method, cseq, branch);
        request.body("application/sdp", SDP).text()
    }

    /// An INFO with this body.
    fn info(&self, cseq: u32, branch: &str, content_type: &str, body: &str) -> String {
        let request = self.request("INFO", cseq, branch);
        request.body(content_type, body).text()
    }
}

/// An in-dialog request from sipp, being written.
struct InDialog<'a> {
    call_id: &'a str,
    tag: &'a str,
    method: &'a str,
    cseq: u32,
    branch: &'a str,
    /// Header lines, each ending in CRLF.
    extra: String,
    body: &'a str,
}

impl<'a> InDialog<'a> {
    fn header(mut self, lines: &str) -> InDialog<'a> {
        self.extra.push_str(lines);
        self
    }

    fn body(mut self, content_type: &str, body: &'a str) -> InDialog<'a> {
        self.extra
            .push_str(&format!("Content-Type: {content_type}\r\n"));
        self.body = body;
        self
    }

    fn text(&self) -> String {
        let InDialog {
            call_id,
            tag,
            method,
            cseq,
            branch,
            extra,
            body,
        } = self;
        format!(
            "{method} sip:22334455@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n\
             From: \"Kari Nordmann\" <sip:4799887766@127.0.0.1:5061>;tag=caller-tag\r\n\
             To: <sip:22334455@127.0.0.1:5060>;tag={tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:sipp@127.0.0.1:5061>\r\n\
             Max-Forwards: 70\r\n\
             {extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

fn to_tag_of(response: &str) -> String {
    let to = response
        .lines()
        .find(|l| l.starts_with("To: "))
        .expect("To header");
    to.split(";tag=").nth(1).expect("To tag").to_string()
}

/// INVITE, 100, answer, 200; returns the call and the caller's side of it.
fn answered_call(h: &mut Harness, call_id: &str) -> (CallId, Caller) {
    let call = h.offered(call_id, "z9hG4bK-inv-1");
    h.ep.answer(h.at(10), call, ANSWER);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    (call, Caller::new(call_id, &to_tag_of(&sent[0])))
}

/// `answered_call`, then its ACK.
fn confirmed_call(h: &mut Harness, call_id: &str) -> (CallId, Caller) {
    let (call, caller) = answered_call(h, call_id);
    h.feed(20, &caller.says("ACK", 1, "z9hG4bK-ack-1"));
    assert!(matches!(h.events().as_slice(), [SipEvent::Confirmed { call: c }] if *c == call));
    (call, caller)
}

#[test]
fn invite_gets_100_trying_and_incoming_call() {
    let mut h = Harness::new(10);
    h.feed(0, &invite("call-1@sipp", "z9hG4bK-inv-1", Some(SDP)));
    let sent = h.sent_to();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, peer());
    assert_eq!(
        sent[0].1,
        "SIP/2.0 100 Trying\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-inv-1\r\n\
         From: \"Kari Nordmann\" <sip:4799887766@127.0.0.1:5061>;tag=caller-tag\r\n\
         To: <sip:22334455@127.0.0.1:5060>\r\n\
         Call-ID: call-1@sipp\r\n\
         CSeq: 1 INVITE\r\n\
         Server: hotline-test\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let c = h.incoming();
    assert_eq!(c.call_id, "call-1@sipp");
    assert_eq!(c.from_user, "4799887766");
    assert_eq!(c.from_display.as_deref(), Some("Kari Nordmann"));
    assert_eq!(c.dialled, "22334455");
    assert_eq!(c.offer.as_deref(), Some(SDP));
    assert_eq!((c.source, c.transport), (peer(), Transport::Udp));
    assert_eq!(h.ep.call_count(), 1);
    assert_eq!(h.requests("INVITE"), 1);
    assert_eq!(h.responses(100), 1);
}

#[test]
fn answer_ack_then_remote_bye() {
    let mut h = Harness::new(10);
    let call = h.offered("call-2@sipp", "z9hG4bK-inv-1");
    h.ep.answer(h.at(10), call, ANSWER);
    let ok = h.last_sent();
    let tag = to_tag_of(&ok);
    assert!(ok
        .starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-inv-1\r\n"));
    assert!(ok.contains(&format!(
        "\r\nTo: <sip:22334455@127.0.0.1:5060>;tag={tag}\r\n"
    )));
    assert!(ok.contains("\r\nContact: <sip:127.0.0.1:5060>\r\n"));
    assert!(ok.contains("\r\nServer: hotline-test\r\n"));
    assert!(ok.contains(&format!(
        "\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{ANSWER}",
        ANSWER.len()
    )));
    let caller = Caller::new("call-2@sipp", &tag);
    h.feed(20, &caller.says("ACK", 1, "z9hG4bK-ack"));
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::Confirmed { .. }]
    ));
    assert!(
        h.run_until(10_000).is_empty(),
        "no 2xx retransmission after ACK"
    );
    h.feed(10_000, &caller.says("BYE", 2, "z9hG4bK-bye"));
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("SIP/2.0 200 OK\r\n"));
    assert!(sent[0].contains("\r\nCSeq: 2 BYE\r\n"));
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::Ended {
            reason: EndReason::RemoteBye,
            ..
        }]
    ));
    assert_eq!(h.ep.call_count(), 0);
    // A retransmitted BYE gets the same 200 again, not a 481.
    h.feed(10_500, &caller.says("BYE", 2, "z9hG4bK-bye"));
    assert_eq!(h.sent(), sent);
    assert_eq!(h.responses(200), 2, "retransmissions are counted once");
    // Transactions drain after Timer J.
    h.run_until(60_000);
    assert_eq!(h.ep.transaction_count(), 0);
    assert_eq!(h.ep.poll_timeout(), None);
}

#[test]
fn ok_is_retransmitted_until_ack_then_gives_up_with_bye() {
    let mut h = Harness::new(10);
    let (call, _caller) = answered_call(&mut h, "call-3@sipp");
    let out = h.run_until(40_000);
    let oks: Vec<u64> = out
        .iter()
        .filter(|(_, s)| s.starts_with("SIP/2.0 200 OK"))
        .map(|(t, _)| *t)
        .collect();
    // Answered at 10 ms: +500, +1000, +2000, +4000, +4000, ... until 64*T1.
    assert_eq!(
        oks,
        vec![510, 1510, 3510, 7510, 11510, 15510, 19510, 23510, 27510, 31510]
    );
    let byes: Vec<&(u64, String)> = out.iter().filter(|(_, s)| s.starts_with("BYE ")).collect();
    assert_eq!(byes.first().map(|b| b.0), Some(32_010));
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::Ended { call: c, reason: EndReason::AckTimeout }] if *c == call
    ));
    assert_eq!(h.ep.call_count(), 0);
}

#[test]
fn retransmitted_invite_repeats_100_and_makes_one_call() {
    let mut h = Harness::new(10);
    let inv = invite("call-4@sipp", "z9hG4bK-inv-4", Some(SDP));
    h.feed(0, &inv);
    let first = h.sent();
    h.feed(500, &inv);
    assert_eq!(h.sent(), first);
    assert_eq!(h.events().len(), 1);
    assert_eq!(h.ep.call_count(), 1);
    assert_eq!(h.requests("INVITE"), 2);
    assert_eq!(h.responses(100), 1);
}

#[test]
fn retransmitted_invite_after_answer_repeats_the_200() {
    let mut h = Harness::new(10);
    let (_call, _caller) = answered_call(&mut h, "call-4b@sipp");
    h.feed(300, &invite("call-4b@sipp", "z9hG4bK-inv-1", Some(SDP)));
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("SIP/2.0 200 OK"));
}

#[test]
fn cancel_before_answer() {
    let mut h = Harness::new(10);
    let call = h.offered("call-5@sipp", "z9hG4bK-inv-5");
    let cancel = "CANCEL sip:22334455@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-inv-5\r\n\
         From: \"Kari Nordmann\" <sip:4799887766@127.0.0.1:5061>;tag=caller-tag\r\n\
         To: <sip:22334455@127.0.0.1:5060>\r\n\
         Call-ID: call-5@sipp\r\n\
         CSeq: 1 CANCEL\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n";
    h.feed(1000, cancel);
    let sent = h.sent();
    assert_eq!(sent.len(), 2);
    assert!(sent[0].starts_with("SIP/2.0 200 OK\r\n"));
    assert!(sent[0].contains("\r\nCSeq: 1 CANCEL\r\n"));
    assert!(sent[1].starts_with("SIP/2.0 487 Request Terminated\r\n"));
    assert!(sent[1].contains("\r\nCSeq: 1 INVITE\r\n"));
    assert_eq!(to_tag_of(&sent[0]), to_tag_of(&sent[1]));
    assert!(matches!(h.events().as_slice(), [SipEvent::Cancelled { call: c }] if *c == call));
    assert_eq!(h.ep.call_count(), 0);
    // The ACK for the 487 is absorbed by the INVITE transaction: no 487 repeats.
    let tag = to_tag_of(&sent[1]);
    let caller = Caller::new("call-5@sipp", &tag);
    let ack = caller.says("ACK", 1, "z9hG4bK-inv-5");
    h.feed(1100, &ack);
    assert!(h.sent().is_empty());
    assert!(h.run_until(10_000).is_empty());
    // Commands for the gone call are ignored.
    h.ep.answer(h.at(10_000), call, ANSWER);
    assert!(h.sent().is_empty());
}

#[test]
fn cancel_without_transaction_gets_481() {
    let mut h = Harness::new(10);
    let cancel = "CANCEL sip:22334455@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-nothing\r\n\
         From: <sip:4799887766@127.0.0.1:5061>;tag=x\r\n\
         To: <sip:22334455@127.0.0.1:5060>\r\n\
         Call-ID: nothing@sipp\r\n\
         CSeq: 1 CANCEL\r\n\
         Content-Length: 0\r\n\r\n";
    h.feed(0, cancel);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("SIP/2.0 481 Call/Transaction Does Not Exist\r\n"));
}

#[test]
fn reject_repeats_with_timer_g_until_ack() {
    let mut h = Harness::new(10);
    h.feed(0, &invite("call-6@sipp", "z9hG4bK-inv-6", None));
    let c = h.incoming();
    assert_eq!(c.offer, None);
    h.sent();
    h.ep.reject(h.at(0), c.call, 488);
    let sent = h.sent();
    assert!(sent[0].starts_with("SIP/2.0 488 Not Acceptable Here\r\n"));
    assert!(sent[0].contains(";tag="));
    assert_eq!(h.ep.call_count(), 0);
    let out = h.run_until(1600);
    let times: Vec<u64> = out.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![500, 1500]);
    let tag = to_tag_of(&sent[0]);
    let caller = Caller::new("call-6@sipp", &tag);
    h.feed(1700, &caller.says("ACK", 1, "z9hG4bK-inv-6"));
    assert!(h.run_until(60_000).is_empty());
    assert_eq!(h.ep.transaction_count(), 0);
    assert_eq!(h.responses(488), 1);
}

#[test]
fn local_hangup_sends_bye_and_ends_on_200() {
    let mut h = Harness::new(10);
    let (call, caller) = confirmed_call(&mut h, "call-7@sipp");
    let tag = &caller.tag;
    h.ep.hangup(h.at(5000), call);
    let sent = h.sent_to();
    assert_eq!(sent.len(), 1);
    let (dest, bye) = &sent[0];
    assert_eq!(*dest, peer());
    assert!(bye.starts_with(
        "BYE sip:sipp@127.0.0.1:5061 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"
    ));
    assert!(bye.contains(&format!(
        "\r\nFrom: <sip:22334455@127.0.0.1:5060>;tag={tag}\r\n"
    )));
    assert!(bye
        .contains("\r\nTo: \"Kari Nordmann\" <sip:4799887766@127.0.0.1:5061>;tag=caller-tag\r\n"));
    assert!(bye.contains("\r\nCSeq: 1 BYE\r\n"));
    assert!(h.events().is_empty(), "Ended waits for the BYE to finish");
    let via = bye.lines().find(|l| l.starts_with("Via: ")).unwrap();
    let ok = format!(
        "SIP/2.0 200 OK\r\n{via}\r\nFrom: <sip:22334455@127.0.0.1:5060>;tag={tag}\r\n\
         To: <sip:4799887766@127.0.0.1:5061>;tag=caller-tag\r\nCall-ID: call-7@sipp\r\n\
         CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    h.feed(5100, &ok);
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::Ended { call: c, reason: EndReason::LocalBye }] if *c == call
    ));
    assert!(h.sent().is_empty());
    // Timer K ends the BYE transaction, Timer L the INVITE one.
    h.run_until(40_000);
    assert_eq!(h.ep.transaction_count(), 0);
}

#[test]
fn local_bye_timeout_still_ends_the_call() {
    let mut h = Harness::new(10);
    let (call, _caller) = confirmed_call(&mut h, "call-8@sipp");
    h.ep.hangup(h.at(1000), call);
    h.sent();
    let out = h.run_until(40_000);
    let times: Vec<u64> = out.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        vec![1500, 2500, 4500, 8500, 12500, 16500, 20500, 24500, 28500, 32500]
    );
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::Ended { call: c, reason: EndReason::LocalBye }] if *c == call
    ));
}

#[test]
fn hangup_before_answer_sends_480() {
    let mut h = Harness::new(10);
    let call = h.offered("call-9@sipp", "z9hG4bK-inv-9");
    h.ep.hangup(h.at(100), call);
    let sent = h.sent();
    assert!(sent[0].starts_with("SIP/2.0 480 Temporarily Unavailable\r\n"));
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::Ended {
            reason: EndReason::LocalBye,
            ..
        }]
    ));
}

#[test]
fn hangup_before_ack_waits_for_the_ack() {
    let mut h = Harness::new(10);
    let (call, caller) = answered_call(&mut h, "call-9b@sipp");
    h.ep.hangup(h.at(100), call);
    assert!(h.sent().is_empty());
    h.feed(200, &caller.says("ACK", 1, "z9hG4bK-ack"));
    let sent = h.sent();
    assert!(sent[0].starts_with("BYE "));
}

#[test]
fn out_of_dialog_requests() {
    let mut h = Harness::new(10);
    let req = |method: &str, branch: &str| {
        format!(
            "{method} sip:hotline@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n\
             From: <sip:probe@127.0.0.1:5061>;tag=p1\r\n\
             To: <sip:hotline@127.0.0.1:5060>\r\n\
             Call-ID: {branch}@probe\r\n\
             CSeq: 1 {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    h.feed(0, &req("OPTIONS", "z9hG4bK-o1"));
    let ok = h.last_sent();
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    assert!(ok.contains(
        "\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, UPDATE, REFER\r\n"
    ));
    assert!(
        ok.contains("\r\nAccept: application/sdp, application/dtmf-relay, application/dtmf\r\n")
    );
    assert!(ok.contains(";tag="));
    h.feed(0, &req("SUBSCRIBE", "z9hG4bK-r1"));
    let r = h.last_sent();
    assert!(r.starts_with("SIP/2.0 405 Method Not Allowed\r\n"));
    assert!(r.contains(
        "\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, UPDATE, REFER\r\n"
    ));
    h.feed(0, &req("FROBNICATE", "z9hG4bK-f1"));
    assert!(h.last_sent().starts_with("SIP/2.0 501 Not Implemented\r\n"));
    h.feed(0, &req("BYE", "z9hG4bK-b1"));
    assert!(h.last_sent().starts_with("SIP/2.0 481 "));
    assert_eq!(h.requests("other"), 1);
    assert_eq!(h.requests("SUBSCRIBE"), 1);
    assert!(h.events().is_empty());
}

#[test]
fn unknown_dialog_gets_481_and_require_gets_420() {
    let mut h = Harness::new(10);
    let caller = Caller::new("ghost@sipp", "nosuchtag");
    h.feed(0, &caller.says("BYE", 2, "z9hG4bK-g"));
    assert!(h.last_sent().starts_with("SIP/2.0 481 "));
    let inv = invite("call-r@sipp", "z9hG4bK-req", Some(SDP)).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: 100rel\r\n",
    );
    h.feed(0, &inv);
    let sent = h.last_sent();
    assert!(sent.starts_with("SIP/2.0 420 Bad Extension\r\n"));
    assert!(sent.contains("\r\nUnsupported: 100rel\r\n"));
    assert!(h.events().is_empty());
}

#[test]
fn info_dtmf_in_dialog() {
    let mut h = Harness::new(10);
    let (call, caller) = confirmed_call(&mut h, "call-10@sipp");
    let signal = "Signal=5\r\nDuration=160\r\n";
    let relay = caller.info(2, "z9hG4bK-i1", "application/dtmf-relay", signal);
    h.feed(100, &relay);
    assert!(h.last_sent().starts_with("SIP/2.0 200 OK\r\n"));
    assert!(
        matches!(h.events().as_slice(), [SipEvent::Dtmf { call: c, digit: '5' }] if *c == call)
    );
    let bare = caller.info(3, "z9hG4bK-i2", "application/dtmf", "#");
    h.feed(200, &bare);
    h.sent();
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::Dtmf { digit: '#', .. }]
    ));
    let other = caller.info(4, "z9hG4bK-i3", "text/plain", "hi");
    h.feed(300, &other);
    assert!(h
        .last_sent()
        .starts_with("SIP/2.0 415 Unsupported Media Type\r\n"));
    let empty = caller.says("INFO", 5, "z9hG4bK-i4");
    h.feed(400, &empty);
    assert!(h.last_sent().starts_with("SIP/2.0 200 OK\r\n"));
    // Out-of-order CSeq in the dialog.
    let old = caller.says("INFO", 3, "z9hG4bK-i5");
    h.feed(500, &old);
    assert!(h.last_sent().starts_with("SIP/2.0 500 "));
    assert!(h.events().is_empty());
}

#[test]
fn reinvite_answered_and_refused() {
    let mut h = Harness::new(10);
    let (call, caller) = confirmed_call(&mut h, "call-11@sipp");
    let reinvite = caller.offers("INVITE", 2, "z9hG4bK-re1");
    h.feed(1000, &reinvite);
    assert!(h.last_sent().starts_with("SIP/2.0 100 Trying\r\n"));
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::ReOffer { call: c, offer: Some(o) }] if *c == call && o == SDP
    ));
    h.ep.answer_reoffer(h.at(1010), call, Some(ANSWER));
    let ok = h.last_sent();
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"));
    assert!(ok.contains("\r\nCSeq: 2 INVITE\r\n"));
    assert!(ok.ends_with(ANSWER));
    // Repeated until its ACK.
    let out = h.run_until(1600);
    assert_eq!(out.len(), 1);
    h.feed(1700, &caller.says("ACK", 2, "z9hG4bK-ack2"));
    assert!(
        h.events().is_empty(),
        "a re-INVITE ACK is not a new Confirmed"
    );
    assert!(h.run_until(5000).is_empty());
    let again = caller.says("INVITE", 3, "z9hG4bK-re2");
    h.feed(6000, &again);
    h.sent();
    assert!(matches!(
        h.events().as_slice(),
        [SipEvent::ReOffer { offer: None, .. }]
    ));
    h.ep.answer_reoffer(h.at(6010), call, None);
    assert!(h
        .last_sent()
        .starts_with("SIP/2.0 488 Not Acceptable Here\r\n"));
    assert_eq!(h.ep.call_count(), 1);
}

#[test]
fn rport_and_received() {
    let mut h = Harness::new(10);
    let nat: SocketAddr = "10.0.0.9:40000".parse().unwrap();
    // An OPTIONS with this Via from behind a NAT: where its answer went, and
    // the answer's text.
    let mut options_with_via = |via: &str| {
        let opts = format!(
            "OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\n\
             To: <sip:hotline@127.0.0.1>\r\nCall-ID: {via}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        h.feed_from(0, Transport::Udp, nat, &opts);
        h.sent_to().pop().unwrap()
    };
    let (dest, text) = options_with_via("SIP/2.0/UDP phone.example:5070;rport;branch=z9hG4bK-n1");
    assert_eq!(dest, nat);
    assert!(text.contains("\r\nVia: SIP/2.0/UDP phone.example:5070;rport=40000;branch=z9hG4bK-n1;received=10.0.0.9\r\n"));
    let (dest, text) = options_with_via("SIP/2.0/UDP phone.example:5070;branch=z9hG4bK-n2");
    assert_eq!(dest, "10.0.0.9:5070".parse().unwrap());
    assert!(text.contains(
        "\r\nVia: SIP/2.0/UDP phone.example:5070;branch=z9hG4bK-n2;received=10.0.0.9\r\n"
    ));
    let (dest, text) = options_with_via("SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-n3");
    assert_eq!(dest, "10.0.0.9:5060".parse().unwrap());
    assert!(text.contains("\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-n3\r\n"));
}

#[test]
fn garbage_is_dropped_and_malformed_gets_400() {
    let mut h = Harness::new(10);
    h.feed(0, "\u{1}\u{2} not sip at all");
    h.feed(0, "\r\n\r\n");
    assert!(h.sent().is_empty());
    let dropped = h.ep.stats().malformed_dropped();
    assert_eq!(dropped, 1);
    let bad =
        "INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-bad\r\n\
               From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: bad@sipp\r\nCSeq: 1 INVITE\r\n\
               Content-Length: 500\r\n\r\nshort";
    h.feed(0, bad);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("SIP/2.0 400 Bad Request\r\n"));
    assert!(sent[0].contains("\r\nCall-ID: bad@sipp\r\n"));
    assert!(sent[0].contains("\r\nWarning: 399 hotline \"body shorter than Content-Length\"\r\n"));
    assert_eq!(h.ep.stats().malformed_answered(), 1);
    assert!(h.events().is_empty());
    // INVITE without Contact cannot form a dialog.
    let no_contact =
        invite("nc@sipp", "z9hG4bK-nc", None).replace("Contact: <sip:sipp@127.0.0.1:5061>\r\n", "");
    h.feed(0, &no_contact);
    let sent = h.sent();
    assert!(sent
        .last()
        .unwrap()
        .starts_with("SIP/2.0 400 Bad Request\r\n"));
    assert_eq!(h.ep.call_count(), 0);
}

#[test]
fn over_capacity_gets_503_with_retry_after() {
    let mut h = Harness::new(1);
    h.feed(0, &invite("cap-1@sipp", "z9hG4bK-c1", Some(SDP)));
    h.sent();
    h.events();
    h.feed(0, &invite("cap-2@sipp", "z9hG4bK-c2", Some(SDP)));
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("SIP/2.0 503 Service Unavailable\r\n"));
    assert!(sent[0].contains("\r\nRetry-After: 5\r\n"));
    // The call layer hears of it, for the call record.
    let events = h.events();
    assert_eq!(events.len(), 1);
    let SipEvent::Refused(refused) = &events[0] else {
        panic!("{events:?}");
    };
    assert_eq!(refused.reason, Refusal::MaxCalls);
    assert_eq!(
        (refused.call_id.as_str(), refused.code),
        ("cap-2@sipp", 503)
    );
    assert_eq!(h.ep.call_count(), 1);
    // A retransmission is answered by the transaction: no second event.
    h.feed(100, &invite("cap-2@sipp", "z9hG4bK-c2", Some(SDP)));
    assert!(h.events().is_empty());
}

#[test]
fn a_refusal_from_an_untrusted_source_is_not_reported() {
    let mut h = Harness::new(1);
    h.ep.set_admission(crate::sip::admission::AdmissionConfig {
        trusted_sources: vec!["10.0.0.0/8".parse().unwrap()],
        ..crate::sip::admission::AdmissionConfig::open()
    });
    h.feed(0, &invite("cap-1@sipp", "z9hG4bK-c1", Some(SDP)));
    h.sent();
    h.events();
    h.feed(0, &invite("cap-2@sipp", "z9hG4bK-c2", Some(SDP)));
    assert!(h.sent()[0].starts_with("SIP/2.0 503 Service Unavailable\r\n"));
    assert!(h.events().is_empty());
}

#[test]
fn hangup_all_and_tcp() {
    let mut h = Harness::new(10);
    let tcp_peer: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let inv = invite("tcp-1@sipp", "z9hG4bK-t1", Some(SDP)).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    h.feed_from(0, Transport::Tcp, tcp_peer, &inv);
    let call = h.incoming().call;
    let trying = h.ep.poll_transmit().unwrap();
    assert_eq!(
        (trying.transport, trying.destination),
        (Transport::Tcp, tcp_peer)
    );
    h.ep.answer(h.at(10), call, ANSWER);
    let ok = String::from_utf8(h.ep.poll_transmit().unwrap().payload).unwrap();
    assert!(ok.contains("\r\nContact: <sip:127.0.0.1:5060;transport=tcp>\r\n"));
    let tag = to_tag_of(&ok);
    let caller = Caller::new("tcp-1@sipp", &tag);
    h.feed_from(
        20,
        Transport::Tcp,
        tcp_peer,
        &caller.says("ACK", 1, "z9hG4bK-ta"),
    );
    h.events();
    h.feed(0, &invite("udp-1@sipp", "z9hG4bK-u1", Some(SDP)));
    h.events();
    h.sent();
    assert_eq!(h.ep.call_count(), 2);
    assert_eq!(h.ep.hangup_all(h.at(100)), 2);
    let sent = h.sent_to();
    assert_eq!(sent.len(), 2);
    assert!(sent
        .iter()
        .any(|(d, s)| *d == tcp_peer && s.starts_with("BYE ") && s.contains("SIP/2.0/TCP")));
    assert!(sent.iter().any(|(_, s)| s.starts_with("SIP/2.0 480 ")));
    // Over TCP the BYE is not retransmitted; Timer F still bounds it.
    let out = h.run_until(40_000);
    assert!(out.iter().all(|(_, s)| !s.starts_with("BYE ")));
    let ended = h
        .events()
        .iter()
        .filter(|e| matches!(e, SipEvent::Ended { .. }))
        .count();
    assert_eq!(ended, 2);
    assert_eq!(h.ep.call_count(), 0);
}

#[test]
fn rfc4475_messages_get_the_expected_answers() {
    let cases: &[(&str, &[u8], Option<&str>)] = &[
        // To already has a tag: an in-dialog request for a dialog we do not know.
        (
            "wsinv",
            include_bytes!("../fixtures/rfc4475/wsinv.sip"),
            Some("481"),
        ),
        (
            "esc01",
            include_bytes!("../fixtures/rfc4475/esc01.sip"),
            Some("100"),
        ),
        (
            "escnull",
            include_bytes!("../fixtures/rfc4475/escnull.sip"),
            None,
        ),
        (
            "intmeth",
            include_bytes!("../fixtures/rfc4475/intmeth.sip"),
            Some("501"),
        ),
        (
            "ncl",
            include_bytes!("../fixtures/rfc4475/ncl.sip"),
            Some("400"),
        ),
        (
            "clerr",
            include_bytes!("../fixtures/rfc4475/clerr.sip"),
            Some("400"),
        ),
        (
            "mcl01",
            include_bytes!("../fixtures/rfc4475/mcl01.sip"),
            Some("400"),
        ),
        (
            "unkscm",
            include_bytes!("../fixtures/rfc4475/unkscm.sip"),
            Some("416"),
        ),
        (
            "badvers",
            include_bytes!("../fixtures/rfc4475/badvers.sip"),
            Some("505"),
        ),
        (
            "insuf",
            include_bytes!("../fixtures/rfc4475/insuf.sip"),
            None,
        ),
        (
            "lwsruri",
            include_bytes!("../fixtures/rfc4475/lwsruri.sip"),
            Some("400"),
        ),
        (
            "lwsstart",
            include_bytes!("../fixtures/rfc4475/lwsstart.sip"),
            Some("400"),
        ),
        (
            "trws",
            include_bytes!("../fixtures/rfc4475/trws.sip"),
            Some("400"),
        ),
        (
            "mismatch01",
            include_bytes!("../fixtures/rfc4475/mismatch01.sip"),
            Some("400"),
        ),
        (
            "scalarlg",
            include_bytes!("../fixtures/rfc4475/scalarlg.sip"),
            Some("400"),
        ),
    ];
    for (name, bytes, code) in cases {
        let mut h = Harness::new(10);
        h.ep.handle_input(
            h.t0,
            Transport::Udp,
            "192.0.2.200:5060".parse().unwrap(),
            bytes,
        );
        let sent = h.sent();
        let got = sent.first().map(|s| s.get(8..11).unwrap_or("").to_string());
        assert_eq!(got.as_deref(), *code, "{name}");
        if *name == "intmeth" {
            assert!(sent[0].contains(
                "\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, UPDATE, REFER\r\n"
            ));
        }
        if *name == "escnull" {
            // A valid REGISTER: it waits for the registrar.
            match h.events().as_slice() {
                [SipEvent::Register(r)] => {
                    assert_eq!(r.to_user, "null-\0-null");
                    assert_eq!(r.cseq, 14398234);
                    let uris: Vec<&str> = r.contacts.iter().map(|c| c.uri.as_str()).collect();
                    assert_eq!(
                        uris,
                        vec!["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        if *name == "esc01" {
            let c = h.incoming();
            assert_eq!(c.dialled, "sips:user@example.com");
            assert_eq!(c.from_user, "I have spaces");
            assert!(c.offer.is_some());
        }
    }
}

mod admission;
mod legs;
mod register;
mod session_timer;
