//! rtp-probe: a benchmark receiver for the RTP the service sends.
//!
//! Every benchmark call's SDP names one probe port, so all streams land on
//! one socket and are told apart by SSRC. For one window the probe records
//! arrival time, sequence number and timestamp of every packet, then prints
//! a JSON report: pacing error against each stream's own RTP clock,
//! inter-arrival jitter, loss, and the share of silent vs audible frames.
//!
//! `rtp-probe send` is a synthetic sender with a perfect schedule, for
//! checking the probe (and measuring its own noise floor).

#[path = "probe/mod.rs"]
mod probe;

use clap::{Parser, Subcommand};
use probe::listen::{self, ListenOptions};
use probe::recorder::Limits;
use probe::send::{self, SendOptions};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "rtp-probe", about = "Benchmark receiver for RTP pacing")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Record one window of RTP and print the report as JSON.
    Listen {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Window length in seconds (at most 300).
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// Open the window when a `start` line arrives on stdin; `stop` (or
        /// end of input) ends it early, and after the report ends the probe.
        #[arg(long)]
        start_on_stdin: bool,
        /// Seconds to wait for `start` before giving up.
        #[arg(long, default_value_t = 900.0)]
        max_wait: f64,
        /// Streams recorded; packets from further SSRCs are only counted.
        #[arg(long, default_value_t = 6000)]
        max_streams: usize,
        /// Requested SO_RCVBUF in bytes (the kernel may grant less).
        #[arg(long, default_value_t = 64 << 20)]
        rcvbuf: usize,
        /// Write the JSON here instead of stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Send every datagram back to where it came from, so each call's
        /// caller leg also receives 50 packets a second, as from a real phone.
        #[arg(long)]
        echo: bool,
    },
    /// Write a pcap of one 20 ms PCMU tone stream (for sipp's play_pcap_audio).
    Pcap {
        #[arg(long)]
        out: std::path::PathBuf,
        /// Length in seconds (at most 3600).
        #[arg(long, default_value_t = 20)]
        seconds: u32,
    },
    /// Send synthetic 20 ms PCMU streams with a perfect schedule.
    Send {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 100)]
        streams: u32,
        /// Seconds (at most 3600).
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Skip every n-th packet of each stream (0: no loss).
        #[arg(long, default_value_t = 0)]
        loss_every: u64,
    },
}

fn seconds(value: f64, max: f64, what: &str) -> Result<Duration, String> {
    if value.is_finite() && value > 0.0 && value <= max {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("{what} must be between 0 and {max} seconds"))
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Listen {
            listen,
            duration,
            start_on_stdin,
            max_wait,
            max_streams,
            rcvbuf,
            out,
            echo,
        } => {
            let window = seconds(duration, 300.0, "--duration")?;
            // Room for 1.5x the nominal 50 packets/s, so a bursty sender is
            // still recorded in full; memory stays max_streams x this.
            let samples_per_stream = (window.as_secs_f64() * 75.0).ceil() as usize + 16;
            let options = ListenOptions {
                listen,
                window,
                start_on_stdin,
                max_wait: seconds(max_wait, 86_400.0, "--max-wait")?,
                limits: Limits {
                    max_streams: max_streams.clamp(1, 100_000),
                    samples_per_stream,
                },
                rcvbuf_bytes: rcvbuf,
                echo,
            };
            listen::run(&options, |report| {
                let text = serde_json::to_string_pretty(&report)? + "\n";
                match &out {
                    Some(path) => std::fs::write(path, text),
                    None => std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()),
                }
            })
            .map_err(|e| format!("listen: {e}"))
        }
        Command::Pcap { out, seconds } => {
            if seconds == 0 || seconds > 3600 {
                return Err("--seconds must be between 1 and 3600".into());
            }
            probe::pcap::write(&out, seconds).map_err(|e| format!("pcap: {e}"))
        }
        Command::Send {
            to,
            streams,
            duration,
            loss_every,
        } => {
            let options = SendOptions {
                to,
                streams: streams.clamp(1, 100_000),
                duration: seconds(duration, 3600.0, "--duration")?,
                loss_every,
            };
            let sent = send::run(&options).map_err(|e| format!("send: {e}"))?;
            eprintln!("rtp-probe: sent {sent} datagrams");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rtp-probe: {message}");
            ExitCode::FAILURE
        }
    }
}
