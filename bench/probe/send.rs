//! A synthetic RTP sender with a known schedule, used to check the probe
//! itself: perfect 20 ms pacing from one thread, streams staggered evenly
//! across the interval, alternating one second of tone and one of silence,
//! sequence and timestamp wrapping early, and optional deliberate loss.

use super::g711::linear_to_ulaw;
use super::rtp::write_header;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

pub struct SendOptions {
    pub to: SocketAddr,
    pub streams: u32,
    pub duration: Duration,
    /// Skip every n-th packet of each stream (0: never).
    pub loss_every: u64,
}

const PTIME: Duration = Duration::from_millis(20);

/// A 400 Hz tone fits 160 samples exactly, so one frame repeats seamlessly.
pub fn tone_frame() -> [u8; 160] {
    let mut frame = [0u8; 160];
    for (i, byte) in frame.iter_mut().enumerate() {
        let phase = i as f64 * 2.0 * std::f64::consts::PI * 400.0 / 8000.0;
        *byte = linear_to_ulaw((phase.sin() * 8000.0) as i16);
    }
    frame
}

/// Sends until the duration is over; returns datagrams sent.
pub fn run(options: &SendOptions) -> io::Result<u64> {
    let socket = UdpSocket::bind(if options.to.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    })?;
    let tone = tone_frame();
    let silence = [0xFFu8; 160];
    let mut packet = [0u8; 172];
    let mut header = [0u8; 12];
    let streams = u64::from(options.streams.max(1));
    let stagger = PTIME / options.streams.max(1);
    let start = Instant::now() + Duration::from_millis(5);
    let end = start + options.duration;
    let mut sent = 0u64;
    let mut slot = 0u64;
    loop {
        let index = slot / streams;
        let stream = slot % streams;
        // u32 is enough for any duration the CLI allows (< 1,000 h).
        let due = start + PTIME * (index as u32) + stagger * (stream as u32);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        slot += 1;
        if options.loss_every > 0 && (index + 1) % options.loss_every == 0 {
            continue;
        }
        // Start near the wrap points so the probe's unwrapping is exercised.
        let sequence = (65_500 + stream + index) as u16;
        let timestamp = (u64::from(u32::MAX) - 100 * 160 + stream + index * 160) as u32;
        let ssrc = 0x5000_0000u32.wrapping_add((stream as u32).wrapping_mul(7919));
        write_header(&mut header, 0, sequence, timestamp, ssrc);
        packet[..12].copy_from_slice(&header);
        let audible = (index / 50) % 2 == 0;
        packet[12..].copy_from_slice(if audible { &tone } else { &silence });
        socket.send_to(&packet, options.to)?;
        sent += 1;
    }
    Ok(sent)
}
