//! Turns a recording into figures: pacing error against each stream's own RTP
//! clock, inter-arrival jitter, loss and the silent/audible share.

use super::recorder::{Recorder, Sample, Stream};
use serde_json::{json, Value};

/// Nanoseconds per RTP tick at 8 kHz.
const NS_PER_TICK: i64 = 125_000;
/// The packet interval the service promises.
const PTIME_NS: i64 = 20_000_000;

/// p50 / p99 / p99.9 / max of a set of microsecond values, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    /// Nearest-rank percentiles; sorts `values_us` in place.
    pub fn of(values_us: &mut [u64]) -> Spread {
        values_us.sort_unstable();
        let at = |q: f64| -> f64 {
            if values_us.is_empty() {
                return 0.0;
            }
            let rank = ((q * values_us.len() as f64).ceil() as usize).clamp(1, values_us.len());
            values_us.get(rank - 1).copied().unwrap_or(0) as f64 / 1000.0
        };
        Spread {
            count: values_us.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }

    fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "p50_ms": round3(self.p50_ms),
            "p99_ms": round3(self.p99_ms),
            "p999_ms": round3(self.p999_ms),
            "max_ms": round3(self.max_ms),
        })
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Pacing error of every packet of one stretch of a stream, in microseconds,
/// appended to `out`.
///
/// A packet is due at `first_arrival + (ts - first_ts) / 8 kHz`; its error is
/// how far it arrived after that, minus the stretch's smallest such lateness
/// (a constant offset — the path delay — is not the sender's fault).
pub fn pacing_errors_us(samples: &[Sample], out: &mut Vec<u64>) {
    let Some(first) = samples.first() else {
        return;
    };
    let lateness = |s: &Sample| -> i64 {
        let since_first = s.arrival_ns as i64 - first.arrival_ns as i64;
        let due = (s.timestamp - first.timestamp) * NS_PER_TICK;
        since_first - due
    };
    let offset = samples.iter().map(lateness).min().unwrap_or(0);
    out.extend(
        samples
            .iter()
            .map(|s| ((lateness(s) - offset).max(0) / 1000) as u64),
    );
}

/// Whether the timestamp step from `a` to `b` disagrees with the sequence
/// step (160 ticks per packet).
fn is_jump(a: &Sample, b: &Sample) -> bool {
    let seq_step = b.sequence - a.sequence;
    seq_step > 0 && b.timestamp - a.timestamp != 160 * seq_step
}

/// A stream split where its RTP clock jumps: before the first jump, and after
/// it. A stream's clock is only comparable with itself, so each stretch is
/// measured on its own; in the queue benchmark the jump is where a waiting
/// caller's music gives way to the agent's relayed voice, whose timing is the
/// agent's phone's, not the service's pacer's.
fn split_at_first_jump(stream: &Stream) -> (&[Sample], &[Sample]) {
    let at = stream
        .samples
        .windows(2)
        .position(|pair| matches!(pair, [a, b] if is_jump(a, b)))
        .map_or(stream.samples.len(), |i| i + 1);
    stream.samples.split_at(at)
}

/// |Δarrival − 20 ms| between packets whose sequence numbers follow each other.
pub fn jitter_us(stream: &Stream, out: &mut Vec<u64>) {
    out.extend(stream.samples.windows(2).filter_map(|pair| match pair {
        [a, b] if b.sequence == a.sequence + 1 => {
            let gap = b.arrival_ns as i64 - a.arrival_ns as i64;
            Some(((gap - PTIME_NS).abs() / 1000) as u64)
        }
        _ => None,
    }));
}

/// Packets whose timestamp step disagrees with the sequence step (160 ticks
/// per packet): a sender that restarts its clock between prompts shows here.
fn timestamp_jumps(stream: &Stream) -> u64 {
    stream
        .samples
        .windows(2)
        .filter(|pair| matches!(pair, [a, b] if is_jump(a, b)))
        .count() as u64
}

/// Extra facts the receive loop knows and the recording does not.
pub struct Context {
    pub window_s: f64,
    pub rcvbuf_bytes: usize,
    pub kernel_drops: Option<u64>,
    pub datagrams_before_window: u64,
}

/// The whole report, as JSON.
pub fn report(recorder: &Recorder, context: &Context) -> Value {
    let total: usize = recorder.streams.iter().map(|s| s.samples.len()).sum();
    let mut pacing = Vec::with_capacity(total);
    let mut pacing_after_jump = Vec::new();
    let mut jitter = Vec::with_capacity(total);
    let mut per_stream_max = Vec::with_capacity(recorder.streams.len());
    let mut per_stream_p99 = Vec::with_capacity(recorder.streams.len());
    let mut scratch = Vec::new();
    let mut worst: Vec<(u64, u32)> = Vec::with_capacity(recorder.streams.len());
    for stream in &recorder.streams {
        scratch.clear();
        let (before, after) = split_at_first_jump(stream);
        pacing_errors_us(before, &mut scratch);
        pacing_errors_us(after, &mut pacing_after_jump);
        pacing.extend_from_slice(&scratch);
        let spread = Spread::of(&mut scratch);
        per_stream_max.push((spread.max_ms * 1000.0) as u64);
        per_stream_p99.push((spread.p99_ms * 1000.0) as u64);
        worst.push(((spread.max_ms * 1000.0) as u64, stream.ssrc));
        jitter_us(stream, &mut jitter);
    }
    worst.sort_unstable_by(|a, b| b.cmp(a));
    worst.truncate(5);

    let received: u64 = recorder.streams.iter().map(|s| s.received).sum();
    let expected: u64 = recorder.streams.iter().map(Stream::expected).sum();
    let lost: u64 = recorder.streams.iter().map(Stream::lost).sum();
    let reordered: u64 = recorder.streams.iter().map(|s| s.reordered).sum();
    let overflow: u64 = recorder.streams.iter().map(|s| s.overflow).sum();
    let jumps: u64 = recorder.streams.iter().map(timestamp_jumps).sum();
    let streams_with_loss = recorder.streams.iter().filter(|s| s.lost() > 0).count();
    let f = recorder.frames;
    let audio = f.silent + f.audible;
    let share = |n: u64| {
        if audio == 0 {
            0.0
        } else {
            round3(n as f64 / audio as f64)
        }
    };
    let pps = if context.window_s > 0.0 {
        received as f64 / context.window_s
    } else {
        0.0
    };

    json!({
        "window_s": round3(context.window_s),
        "streams": recorder.streams.len(),
        "packets": received,
        "packets_per_s": pps.round(),
        "pacing_error": Spread::of(&mut pacing).to_json(),
        "pacing_error_after_timestamp_jump": Spread::of(&mut pacing_after_jump).to_json(),
        "pacing_error_per_stream_p99": Spread::of(&mut per_stream_p99).to_json(),
        "pacing_error_per_stream_max": Spread::of(&mut per_stream_max).to_json(),
        "worst_streams": worst.iter().map(|(us, ssrc)| json!({
            "ssrc": format!("{ssrc:08x}"),
            "max_ms": *us as f64 / 1000.0,
        })).collect::<Vec<_>>(),
        "interarrival_jitter": Spread::of(&mut jitter).to_json(),
        "loss": {
            "expected": expected,
            "received": received,
            "lost": lost,
            "lost_share": if expected == 0 { 0.0 } else { lost as f64 / expected as f64 },
            "streams_with_loss": streams_with_loss,
            "reordered": reordered,
            "timestamp_jumps": jumps,
        },
        "frames": {
            "pcmu": f.pcmu,
            "pcma": f.pcma,
            "other_payload": f.other,
            "silent": f.silent,
            "audible": f.audible,
            "silent_share": share(f.silent),
            "audible_share": share(f.audible),
        },
        "probe": {
            "rcvbuf_bytes": context.rcvbuf_bytes,
            "kernel_drops": context.kernel_drops,
            "datagrams_before_window": context.datagrams_before_window,
            "not_rtp": recorder.not_rtp,
            "packets_over_stream_cap": recorder.packets_over_stream_cap,
            "packets_over_sample_cap": overflow,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::recorder::Limits;
    use crate::probe::rtp::write_header;

    fn packet(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
        let mut h = [0u8; 12];
        write_header(&mut h, 0, seq, ts, ssrc);
        let mut p = h.to_vec();
        p.extend_from_slice(&[0xFF; 160]);
        p
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<u64> = (1..=1000).collect();
        let s = Spread::of(&mut v);
        assert_eq!(s.p50_ms, 0.5);
        assert_eq!(s.p99_ms, 0.99);
        assert_eq!(s.p999_ms, 0.999);
        assert_eq!(s.max_ms, 1.0);
        assert_eq!(Spread::of(&mut []).max_ms, 0.0);
    }

    #[test]
    fn constant_offset_is_removed_and_late_packets_count() {
        let mut r = Recorder::new(Limits {
            max_streams: 2,
            samples_per_stream: 16,
        });
        // Stream 1: perfectly paced, 7 ms after the window opened.
        // Stream 2: second packet 3 ms late, third back on time; the first
        // packet is 1 ms late relative to the rest (the offset is the minimum).
        let ms = 1_000_000u64;
        for i in 0..4u16 {
            r.record(
                7 * ms + u64::from(i) * 20 * ms,
                &packet(1, i, u32::from(i) * 160),
            );
        }
        let arrivals = [1, 20 + 3, 40, 60];
        for (i, at) in arrivals.iter().enumerate() {
            r.record(at * ms, &packet(2, i as u16, i as u32 * 160));
        }
        let mut errors = Vec::new();
        pacing_errors_us(&r.streams[0].samples, &mut errors);
        assert_eq!(errors, vec![0, 0, 0, 0]);
        errors.clear();
        pacing_errors_us(&r.streams[1].samples, &mut errors);
        assert_eq!(errors, vec![1000, 3000, 0, 0]);

        let mut jitter = Vec::new();
        jitter_us(&r.streams[1], &mut jitter);
        assert_eq!(jitter, vec![2000, 3000, 0]);
    }

    #[test]
    fn report_counts_loss_and_timestamp_jumps() {
        let mut r = Recorder::new(Limits {
            max_streams: 1,
            samples_per_stream: 16,
        });
        let ms = 1_000_000u64;
        r.record(0, &packet(5, 100, 0));
        r.record(20 * ms, &packet(5, 101, 160));
        r.record(60 * ms, &packet(5, 103, 480));
        r.record(80 * ms, &packet(5, 104, 9999));
        let v = report(
            &r,
            &Context {
                window_s: 1.0,
                rcvbuf_bytes: 0,
                kernel_drops: Some(0),
                datagrams_before_window: 0,
            },
        );
        assert_eq!(v["streams"], 1);
        assert_eq!(v["loss"]["lost"], 1);
        assert_eq!(v["loss"]["timestamp_jumps"], 1);
        // The stretch after the jump is measured on its own clock.
        assert_eq!(v["pacing_error"]["count"], 3);
        assert_eq!(v["pacing_error_after_timestamp_jump"]["count"], 1);
        assert_eq!(v["frames"]["silent_share"], 1.0);
    }
}
