//! The engine with real sockets on loopback: pacing, digits, latching, bridges, hold, timeouts.

use super::*;
use crate::media::{rtp, Codec, FRAME_BYTES};
use crate::metrics::Metrics;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tokio::net::UdpSocket;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A free even port, found by asking the system for ports until one is even.
fn free_even_port() -> u16 {
    loop {
        let socket = std::net::UdpSocket::bind((LOCALHOST, 0)).expect("bind");
        let port = socket.local_addr().expect("addr").port();
        if port % 2 == 0 && port < u16::MAX - 1 {
            return port;
        }
    }
}

fn engine(port_min: u16, port_max: u16) -> (MediaEngine, mpsc::Receiver<MediaEvent>) {
    MediaEngine::start(
        MediaConfig {
            bind_ip: LOCALHOST,
            port_min,
            port_max,
        },
        Arc::new(Metrics::new()),
    )
}

fn params(remote: SocketAddr) -> StreamParams {
    StreamParams {
        remote,
        codec: Codec::Pcma,
        telephone_event_pt: Some(101),
        send: true,
    }
}

async fn recv_packet(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 1500];
    let (len, from) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buf))
        .await
        .expect("packet in time")
        .expect("recv");
    (buf[..len].to_vec(), from)
}

#[tokio::test]
async fn sends_silence_plays_clips_and_reports_the_end() {
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let port = free_even_port();
    let (engine, mut events) = engine(port, port + 10);
    let call = CallId(1);
    let local = engine
        .open(call, params(peer.local_addr().expect("addr")))
        .expect("open");
    assert!(local % 2 == 0 && (port..=port + 10).contains(&local));
    let (first, from) = recv_packet(&peer).await;
    assert_eq!(from.port(), local);
    let first = rtp::parse(&first).expect("rtp").header;
    assert_eq!(first.payload_type, 8);
    let (second, _) = recv_packet(&peer).await;
    let second = rtp::parse(&second).expect("rtp");
    assert_eq!(second.header.sequence, first.sequence.wrapping_add(1));
    assert_eq!(second.header.timestamp, first.timestamp.wrapping_add(160));
    assert_eq!(second.payload, &[0xD5; FRAME_BYTES][..]);

    engine.play(call, 42, vec![Arc::new(Clip::from_samples(&[500; 480]))]);
    let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("event in time");
    assert_eq!(
        event,
        Some(MediaEvent::PlaybackFinished { call, play_id: 42 })
    );
    engine.close(call);
}

#[tokio::test]
async fn digits_and_symmetric_rtp_latching() {
    // The SDP names an address nobody listens on; media comes from `peer`.
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let silent = std::net::UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    let port = free_even_port();
    let (engine, mut events) = engine(port, port + 10);
    let call = CallId(9);
    let local = engine
        .open(call, params(silent.local_addr().expect("addr")))
        .expect("open");
    // sipp's digit 2: start, update, three end packets.
    for hex in [
        "80e51f6a00005aa00e05384e020a0000",
        "80651f6b00005aa00e05384e020a0140",
        "80651f7100005aa00e05384e028a08c0",
        "80651f7100005aa00e05384e028a08c0",
        "80651f7100005aa00e05384e028a08c0",
    ] {
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        peer.send_to(&bytes, (LOCALHOST, local))
            .await
            .expect("send");
    }
    let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("digit in time");
    assert_eq!(event, Some(MediaEvent::Digit { call, digit: '2' }));
    // After latching, our RTP reaches the peer although the SDP said otherwise.
    let (packet, _) = recv_packet(&peer).await;
    assert!(rtp::parse(&packet).is_ok());
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(events.try_recv().is_err(), "only one digit");
    assert_eq!(engine.packets_received(call), Some(5));
    engine.close(call);
    assert_eq!(engine.packets_received(call), None);
}

#[tokio::test]
async fn close_frees_the_port_at_once_and_the_range_is_bounded() {
    let port = free_even_port();
    let (engine, _events) = engine(port, port + 1);
    let remote = SocketAddr::new(LOCALHOST, 9);
    // On hold, so that the pacer thread is never inside a send at the moment
    // of `close` (it would hold the socket for those microseconds).
    let params = |remote| StreamParams {
        send: false,
        ..params(remote)
    };
    assert_eq!(engine.open(CallId(1), params(remote)).expect("open"), port);
    // Same call again: same port.
    assert_eq!(engine.open(CallId(1), params(remote)).expect("open"), port);
    assert!(matches!(
        engine.open(CallId(2), params(remote)),
        Err(MediaError::NoFreePort)
    ));
    engine.close(CallId(1));
    // Nothing else may hold the socket: another process could bind it now.
    let probe = std::net::UdpSocket::bind((LOCALHOST, port)).expect("port is free");
    drop(probe);
    assert_eq!(engine.open(CallId(2), params(remote)).expect("open"), port);
    assert_eq!(engine.open_calls(), 1);
    // An odd-only range has no even port.
    let (odd, _events) = engine_with_range(port + 1, port + 1);
    assert!(matches!(
        odd.open(CallId(3), params(remote)),
        Err(MediaError::NoFreePort)
    ));
}

fn engine_with_range(min: u16, max: u16) -> (MediaEngine, mpsc::Receiver<MediaEvent>) {
    engine(min, max)
}

#[tokio::test]
async fn hold_stops_sending_and_resume_starts_again() {
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let port = free_even_port();
    let (engine, _events) = engine(port, port + 10);
    let call = CallId(5);
    let remote = peer.local_addr().expect("addr");
    engine.open(call, params(remote)).expect("open");
    recv_packet(&peer).await;
    engine.update(
        call,
        StreamParams {
            send: false,
            ..params(remote)
        },
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut buf = [0u8; 1500];
    while peer.try_recv_from(&mut buf).is_ok() {}
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        peer.try_recv_from(&mut buf).is_err(),
        "nothing sent on hold"
    );
    engine.update(call, params(remote));
    let (packet, _) = recv_packet(&peer).await;
    assert!(rtp::parse(&packet).expect("rtp").header.marker);
    engine.close(call);
}

/// Empties a socket after letting what is in flight arrive.
async fn drain(socket: &UdpSocket) {
    tokio::time::sleep(Duration::from_millis(60)).await;
    let mut buf = [0u8; 1500];
    while socket.try_recv_from(&mut buf).is_ok() {}
}

/// The last packet before the stream goes quiet for 100 ms.
async fn last_before_quiet(socket: &UdpSocket) -> Option<rtp::RtpHeader> {
    let mut buf = [0u8; 1500];
    let mut last = None;
    while let Ok(Ok((len, _))) =
        tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await
    {
        last = rtp::parse(&buf[..len]).ok().map(|p| p.header);
    }
    last
}

async fn recv_rtp(socket: &UdpSocket) -> (rtp::RtpHeader, Vec<u8>) {
    let (bytes, _) = recv_packet(socket).await;
    let packet = rtp::parse(&bytes).expect("rtp");
    (packet.header, packet.payload.to_vec())
}

fn close_enough(decoded: i16, sent: i16) -> bool {
    (i32::from(decoded) - i32::from(sent)).abs() <= i32::from(sent).abs() / 8 + 32
}

#[tokio::test]
async fn bridge_relays_both_ways_transcoding_and_mapping_events() {
    use crate::media::g711;
    let caller = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let agent = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let port = free_even_port();
    let (engine, mut events) = engine(port, port + 10);
    let (a, b) = (CallId(1), CallId(2));
    let a_port = engine
        .open(
            a,
            StreamParams {
                codec: Codec::Pcmu,
                ..params(caller.local_addr().expect("addr"))
            },
        )
        .expect("open");
    // The agent leg: a port for the offer first, the answer later.
    let b_port = engine.open_pending(b).expect("open");
    assert_ne!(a_port, b_port);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let mut buf = [0u8; 1500];
    assert!(
        agent.try_recv_from(&mut buf).is_err(),
        "nothing before the answer"
    );
    engine.update(
        b,
        StreamParams {
            remote: agent.local_addr().expect("addr"),
            codec: Codec::Pcma,
            telephone_event_pt: Some(96),
            send: true,
        },
    );
    engine.play_music(a, Arc::new(Clip::from_samples(&[3000; 1600])));
    drain(&agent).await;
    let heard = recv_rtp(&agent).await.0;
    assert_eq!(heard.payload_type, 8);

    // What the agent heard last from the pacer: the relay numbers on.
    engine.bridge(a, b);
    let last_paced = last_before_quiet(&agent).await.unwrap_or(heard);
    drain(&caller).await;

    // Caller → agent: μ-law in, A-law out, in the agent leg's own stream.
    let levels: [i16; 4] = [0, 1200, -5000, 20000];
    let ulaw: Vec<u8> = levels
        .iter()
        .flat_map(|&s| std::iter::repeat_n(g711::linear_to_ulaw(s), 40))
        .collect();
    let mut relayed = Vec::new();
    for k in 0..5u16 {
        let packet = rtp::datagram(0, 700 + k, 9000 + 160 * u32::from(k), 0x1111, &ulaw);
        caller
            .send_to(&packet, (LOCALHOST, a_port))
            .await
            .expect("send");
        relayed.push(recv_rtp(&agent).await);
    }
    let first = relayed[0].0;
    assert_eq!(first.ssrc, last_paced.ssrc, "agent leg keeps its SSRC");
    assert_eq!(first.sequence, last_paced.sequence.wrapping_add(1));
    assert_ne!(first.ssrc, 0x1111);
    assert!(first.marker);
    for (k, (header, payload)) in relayed.iter().enumerate() {
        assert_eq!(header.payload_type, 8);
        assert_eq!(header.sequence, first.sequence.wrapping_add(k as u16));
        assert_eq!(
            header.timestamp,
            first.timestamp.wrapping_add(160 * k as u32)
        );
        assert_eq!(payload.len(), 160);
        for (i, &byte) in payload.iter().enumerate() {
            let sent = levels[i / 40];
            let heard = g711::alaw_to_linear(byte);
            assert!(close_enough(heard, sent), "sample {i}: {sent} → {heard}");
        }
    }
    // A digit: reported, and passed on with the agent's event type.
    let event = rtp::datagram(101, 705, 9800, 0x1111, &[7, 0x0A, 0, 160]);
    caller
        .send_to(&event, (LOCALHOST, a_port))
        .await
        .expect("send");
    let (header, payload) = recv_rtp(&agent).await;
    assert_eq!((header.payload_type, payload), (96, vec![7, 0x0A, 0, 160]));
    assert_eq!(header.sequence, first.sequence.wrapping_add(5));
    let got = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("digit in time");
    assert_eq!(
        got,
        Some(MediaEvent::Digit {
            call: a,
            digit: '7'
        })
    );

    // Agent → caller: A-law in, μ-law out.
    let alaw: Vec<u8> = levels
        .iter()
        .flat_map(|&s| std::iter::repeat_n(g711::linear_to_alaw(s), 40))
        .collect();
    let packet = rtp::datagram(8, 1, 555, 0x2222, &alaw);
    agent
        .send_to(&packet, (LOCALHOST, b_port))
        .await
        .expect("send");
    let (back, payload) = recv_rtp(&caller).await;
    assert_eq!(back.payload_type, 0);
    assert_ne!(back.ssrc, 0x2222);
    for (i, &byte) in payload.iter().enumerate() {
        assert!(close_enough(g711::ulaw_to_linear(byte), levels[i / 40]));
    }
    // The agent's event goes to the caller as 101.
    let event = rtp::datagram(96, 2, 715, 0x2222, &[11, 0x0A, 0, 160]);
    agent
        .send_to(&event, (LOCALHOST, b_port))
        .await
        .expect("send");
    let (header, _) = recv_rtp(&caller).await;
    assert_eq!(header.payload_type, 101);
    assert_eq!(header.sequence, back.sequence.wrapping_add(1));

    // Unbridged: the pacer sends again, numbering on after the relay.
    engine.unbridge(b);
    let (resumed, payload) = recv_rtp(&agent).await;
    assert_eq!(resumed.ssrc, first.ssrc);
    assert_eq!(resumed.sequence, first.sequence.wrapping_add(6));
    assert!(resumed.marker);
    assert_eq!(payload, vec![0xD5; FRAME_BYTES], "silence, not the relay");
    let (resumed_a, _) = recv_rtp(&caller).await;
    assert_eq!(resumed_a.sequence, back.sequence.wrapping_add(2));
    // And nothing is relayed any more.
    drain(&agent).await;
    caller
        .send_to(&rtp::datagram(0, 9, 1, 0x1111, &ulaw), (LOCALHOST, a_port))
        .await
        .expect("send");
    let (silence, payload) = recv_rtp(&agent).await;
    assert_eq!((silence.payload_type, payload[0]), (8, 0xD5));
    assert_eq!(engine.stats().packets_relayed, 8);
    engine.close(a);
    engine.close(b);
}

#[tokio::test]
async fn events_are_dropped_without_a_type_and_closing_a_leg_ends_the_bridge() {
    let caller = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let agent = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let port = free_even_port();
    let (engine, _events) = engine(port, port + 10);
    let (a, b) = (CallId(1), CallId(2));
    let a_port = engine
        .open(a, params(caller.local_addr().expect("addr")))
        .expect("open");
    let no_events = StreamParams {
        telephone_event_pt: None,
        ..params(agent.local_addr().expect("addr"))
    };
    engine.open(b, no_events).expect("open");
    engine.bridge(a, b);
    drain(&agent).await;
    let event = rtp::datagram(101, 1, 160, 0x1111, &[1, 0x0A, 0, 160]);
    caller
        .send_to(&event, (LOCALHOST, a_port))
        .await
        .expect("send");
    let audio = rtp::datagram(8, 2, 320, 0x1111, &[0xD5; FRAME_BYTES]);
    caller
        .send_to(&audio, (LOCALHOST, a_port))
        .await
        .expect("send");
    let (header, _) = recv_rtp(&agent).await;
    assert_eq!(header.payload_type, 8, "the event was not passed on");
    // The caller hangs up: the agent leg is paced again.
    engine.close(a);
    let (paced, _) = recv_rtp(&agent).await;
    assert_eq!(paced.sequence, header.sequence.wrapping_add(1));
    assert!(paced.marker);
    engine.close(b);
}

#[tokio::test]
async fn silent_leg_times_out_once_and_metrics_are_updated() {
    let peer = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let port = free_even_port();
    let metrics = Arc::new(Metrics::new());
    let (engine, mut events) = MediaEngine::start(
        MediaConfig {
            bind_ip: LOCALHOST,
            port_min: port,
            port_max: port + 10,
        },
        metrics.clone(),
    );
    let (talking, silent) = (CallId(1), CallId(2));
    engine.set_default_rtp_timeout(Some(Duration::from_millis(300)));
    let talking_port = engine
        .open(talking, params(peer.local_addr().expect("addr")))
        .expect("open");
    engine
        .open(silent, params(peer.local_addr().expect("addr")))
        .expect("open");
    let feeder = async {
        for k in 0..60u16 {
            let packet = rtp::datagram(8, k, 160 * u32::from(k), 9, &[0xD5; FRAME_BYTES]);
            let _ = peer.send_to(&packet, (LOCALHOST, talking_port)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let watcher = async {
        let got = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("timeout event in time");
        assert_eq!(got, Some(MediaEvent::RtpTimeout { call: silent }));
    };
    tokio::join!(feeder, watcher);
    assert!(
        events.try_recv().is_err(),
        "reported once, and not for the talking leg"
    );
    let text = metrics.render();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(value("hotline_rtp_packets_sent_total ") > 0.0, "{text}");
    assert!(
        value("hotline_rtp_packets_received_total ") >= 20.0,
        "{text}"
    );
    assert!(
        value("hotline_rtp_pacer_late_seconds_count ") > 0.0,
        "{text}"
    );
    engine.close(talking);
    engine.close(silent);
}
