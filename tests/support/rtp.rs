//! An RTP listener of the tests' own, written independently of the service's
//! media code so that it checks it rather than agreeing with it: it records
//! what arrives, measures pacing and loudness, and can press digits (RFC 4733).

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Packet {
    pub at: Instant,
    pub from: SocketAddr,
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// Listens on a loopback port in a background thread.
pub struct RtpListener {
    socket: UdpSocket,
    pub port: u16,
    packets: Arc<Mutex<Vec<Packet>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl RtpListener {
    pub fn bind() -> RtpListener {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind rtp");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let port = socket.local_addr().expect("addr").port();
        let packets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sock, sink, halt) = (
            socket.try_clone().expect("clone"),
            Arc::clone(&packets),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !halt.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let at = Instant::now();
                if let Some(p) = parse(&buf[..n], at, from) {
                    let mut v = sink.lock().expect("packets");
                    if v.len() < 100_000 {
                        v.push(p);
                    }
                }
            }
        });
        RtpListener {
            socket,
            port,
            packets,
            stop,
        }
    }

    pub fn packets(&self) -> Vec<Packet> {
        self.packets.lock().expect("packets").clone()
    }

    /// Waits until at least `n` packets arrived.
    pub fn wait_packets(&self, n: usize, timeout: Duration) -> Vec<Packet> {
        let end = Instant::now() + timeout;
        loop {
            let p = self.packets();
            if p.len() >= n || Instant::now() > end {
                return p;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a datagram from the listening socket (so symmetric RTP sees the
    /// same address the SDP named).
    /// Speaks into the call: `frames` 20 ms frames of a loud tone in
    /// `payload_type` (0 PCMU, 8 PCMA), sent to `to` at the pace of a phone.
    pub fn speak(&self, to: SocketAddr, payload_type: u8, frames: u16) {
        let (high, low) = if payload_type == 8 {
            (0x2a, 0xaa)
        } else {
            (0x20, 0xa0)
        };
        let tone: Vec<u8> = (0..160)
            .map(|i| if i % 16 < 8 { high } else { low })
            .collect();
        for n in 0..frames {
            let mut p = vec![0x80, payload_type];
            p.extend_from_slice(&n.to_be_bytes());
            p.extend_from_slice(&(u32::from(n) * 160).to_be_bytes());
            p.extend_from_slice(&0x5eed_u32.to_be_bytes());
            p.extend_from_slice(&tone);
            self.send_to(&p, to);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn send_to(&self, data: &[u8], to: SocketAddr) {
        self.socket.send_to(data, to).expect("send rtp");
    }

    /// Sends one RFC 4733 event the way phones do: updates every 20 ms, then the
    /// end packet three times, all with one timestamp.
    pub fn press(
        &self,
        to: SocketAddr,
        digit: char,
        payload_type: u8,
        ssrc: u32,
        seq: &mut u16,
        ts: u32,
    ) {
        let mut event = Event::new(to, digit, payload_type, ssrc, ts);
        event.updates(self, seq, 5);
        event.end(self, seq);
    }
}

/// One key press over RFC 4733, sent a part at a time (so that a test can
/// let something happen in the middle of it).
pub struct Event {
    to: SocketAddr,
    payload_type: u8,
    ssrc: u32,
    ts: u32,
    code: u8,
    /// Packets sent so far (the first carries the marker bit).
    sent: u16,
}

impl Event {
    pub fn new(to: SocketAddr, digit: char, payload_type: u8, ssrc: u32, ts: u32) -> Event {
        let code = match digit {
            '0'..='9' => digit as u8 - b'0',
            '*' => 10,
            '#' => 11,
            _ => panic!("not a DTMF digit: {digit}"),
        };
        Event {
            to,
            payload_type,
            ssrc,
            ts,
            code,
            sent: 0,
        }
    }

    fn send(&mut self, rtp: &RtpListener, seq: &mut u16, end: bool, duration: u16) {
        let mut p = Vec::with_capacity(16);
        p.push(0x80);
        p.push(self.payload_type | if self.sent == 0 { 0x80 } else { 0 });
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&self.ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.push(self.code);
        p.push(if end { 0x80 } else { 0 } | 10);
        p.extend_from_slice(&duration.to_be_bytes());
        rtp.send_to(&p, self.to);
        *seq = seq.wrapping_add(1);
        self.sent += 1;
    }

    /// `n` updates, 20 ms apart, each 160 samples longer.
    pub fn updates(&mut self, rtp: &RtpListener, seq: &mut u16, n: u16) {
        for _ in 0..n {
            let duration = 160 * (self.sent + 1);
            self.send(rtp, seq, false, duration);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end packet, three times.
    pub fn end(&mut self, rtp: &RtpListener, seq: &mut u16) {
        let duration = 160 * (self.sent + 1);
        for _ in 0..3 {
            self.send(rtp, seq, true, duration);
        }
    }
}

impl Drop for RtpListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn parse(b: &[u8], at: Instant, from: SocketAddr) -> Option<Packet> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(b[0] & 0x0f);
    let mut offset = 12 + 4 * cc;
    if b[0] & 0x10 != 0 {
        let ext = b.get(offset + 2..offset + 4)?;
        offset += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let payload = b.get(offset..)?.to_vec();
    Some(Packet {
        at,
        from,
        payload_type: b[1] & 0x7f,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload,
    })
}

/// G.711 μ-law to linear, from the definition (ITU-T G.711), for loudness.
pub fn ulaw_to_linear(u: u8) -> i32 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// G.711 A-law to linear.
pub fn alaw_to_linear(a: u8) -> i32 {
    let a = a ^ 0x55;
    let sign = a & 0x80;
    let exponent = i32::from((a >> 4) & 0x07);
    let mantissa = i32::from(a & 0x0f);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if sign != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// Root-mean-square level of a G.711 frame.
pub fn rms(payload_type: u8, payload: &[u8]) -> f64 {
    if payload.is_empty() {
        return 0.0;
    }
    let sum: f64 = payload
        .iter()
        .map(|&b| {
            let s = if payload_type == 8 {
                alaw_to_linear(b)
            } else {
                ulaw_to_linear(b)
            } as f64;
            s * s
        })
        .sum();
    (sum / payload.len() as f64).sqrt()
}

/// What a stream looked like at the receiver.
#[derive(Debug)]
pub struct StreamReport {
    pub packets: usize,
    pub ssrcs: usize,
    pub seq_gaps: usize,
    pub bad_timestamp_steps: usize,
    pub wrong_size: usize,
    /// |inter-arrival − 20 ms|, in ms.
    pub jitter_p50_ms: f64,
    pub jitter_p90_ms: f64,
    pub jitter_p99_ms: f64,
    pub jitter_max_ms: f64,
    /// Arrival drift against the RTP clock over the whole stream, in ms.
    pub drift_ms: f64,
    pub audible_frames: usize,
}

pub fn report(packets: &[Packet]) -> StreamReport {
    let audio: Vec<&Packet> = packets
        .iter()
        .filter(|p| p.payload_type == 0 || p.payload_type == 8)
        .collect();
    let mut ssrcs: Vec<u32> = audio.iter().map(|p| p.ssrc).collect();
    ssrcs.sort_unstable();
    ssrcs.dedup();
    let mut jitter: Vec<f64> = Vec::new();
    let (mut seq_gaps, mut bad_ts) = (0, 0);
    for w in audio.windows(2) {
        if w[1].seq != w[0].seq.wrapping_add(1) {
            seq_gaps += 1;
        }
        if w[1].timestamp.wrapping_sub(w[0].timestamp) != 160 {
            bad_ts += 1;
        }
        let gap = w[1].at.duration_since(w[0].at).as_secs_f64() * 1000.0;
        jitter.push((gap - 20.0).abs());
    }
    jitter.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| -> f64 {
        if jitter.is_empty() {
            return f64::NAN;
        }
        let i = ((jitter.len() as f64 - 1.0) * q).round() as usize;
        jitter[i.min(jitter.len() - 1)]
    };
    let drift_ms = match (audio.first(), audio.last()) {
        (Some(a), Some(b)) if audio.len() > 1 => {
            let wall = b.at.duration_since(a.at).as_secs_f64() * 1000.0;
            let rtp = f64::from(b.timestamp.wrapping_sub(a.timestamp)) / 8.0;
            wall - rtp
        }
        _ => 0.0,
    };
    StreamReport {
        packets: audio.len(),
        ssrcs: ssrcs.len(),
        seq_gaps,
        bad_timestamp_steps: bad_ts,
        wrong_size: audio.iter().filter(|p| p.payload.len() != 160).count(),
        jitter_p50_ms: pct(0.5),
        jitter_p90_ms: pct(0.9),
        jitter_p99_ms: pct(0.99),
        jitter_max_ms: jitter.last().copied().unwrap_or(f64::NAN),
        drift_ms,
        audible_frames: audio
            .iter()
            .filter(|p| rms(p.payload_type, &p.payload) > 300.0)
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_reference_points() {
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
    }
}
