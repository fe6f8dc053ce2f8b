//! Measures the RTP pacer alone: opens many streams of comfort silence to
//! sockets that never read (so no receiver competes for the CPU), runs for a
//! while and prints the pacer's own figures. Capture the packets to see what a
//! receiver would (see docs/performance.md, "Pacer alone").
//!
//! cargo run --release --example pacer_measure -- [--streams N] [--seconds S]
//!     [--sink-port P] [--rtp-ports LO-HI]

use hotline::media::{Codec, MediaConfig, MediaEngine, StreamParams};
use hotline::metrics::Metrics;
use hotline::sip::CallId;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Streams share this many sink sockets, one port each from `--sink-port` on.
const SINKS: u16 = 10;

struct Options {
    streams: u64,
    seconds: u64,
    sink_port: u16,
    rtp_min: u16,
    rtp_max: u16,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        streams: 1_000,
        seconds: 10,
        sink_port: 39_000,
        rtp_min: 41_000,
        rtp_max: 45_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{arg} {v}: {e}"));
        match arg.as_str() {
            "--streams" => options.streams = number(&value)?,
            "--seconds" => options.seconds = number(&value)?,
            "--sink-port" => {
                options.sink_port = value.parse().map_err(|e| format!("{arg}: {e}"))?
            }
            "--rtp-ports" => {
                let (lo, hi) = value.split_once('-').ok_or("--rtp-ports LO-HI")?;
                options.rtp_min = lo.parse().map_err(|e| format!("{arg}: {e}"))?;
                options.rtp_max = hi.parse().map_err(|e| format!("{arg}: {e}"))?;
            }
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    Ok(options)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sinks = Vec::new();
    for k in 0..SINKS {
        match std::net::UdpSocket::bind((LOCALHOST, options.sink_port.saturating_add(k))) {
            Ok(socket) => sinks.push(socket),
            Err(e) => {
                eprintln!("cannot bind sink port: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (engine, _events) = MediaEngine::start(
        MediaConfig {
            bind_ip: LOCALHOST,
            port_min: options.rtp_min,
            port_max: options.rtp_max,
        },
        Arc::new(Metrics::new()),
    );
    for k in 0..options.streams {
        let sink = match sinks
            .get((k % u64::from(SINKS)) as usize)
            .map(|s| s.local_addr())
        {
            Some(Ok(addr)) => addr,
            _ => SocketAddr::new(LOCALHOST, options.sink_port),
        };
        let params = StreamParams {
            remote: sink,
            codec: Codec::Pcma,
            telephone_event_pt: Some(101),
            send: true,
        };
        if let Err(e) = engine.open(CallId(k), params) {
            eprintln!("stream {k}: {e}");
            return ExitCode::FAILURE;
        }
    }
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    let stats = engine.stats();
    println!(
        "streams {}, sent {}, dropped {}, skipped {}, pacer wake delay mean {:?} max {:?}",
        stats.streams,
        stats.packets_sent,
        stats.packets_dropped,
        stats.frames_skipped,
        stats.mean_wake_delay,
        stats.max_wake_delay
    );
    ExitCode::SUCCESS
}
