//! The receive loop: one UDP socket with a large kernel buffer, timestamps
//! taken on the monotonic clock as each datagram is read.

use super::analysis::{self, Context};
use super::recorder::{Limits, Recorder};
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, BufRead};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the listener runs.
pub struct ListenOptions {
    pub listen: SocketAddr,
    pub window: Duration,
    /// Wait for a `start` line on stdin before opening the window
    /// (datagrams before that are read and discarded so none go stale).
    pub start_on_stdin: bool,
    /// Give up waiting for `start` after this long.
    pub max_wait: Duration,
    pub limits: Limits,
    pub rcvbuf_bytes: usize,
    /// Return every datagram to its sender (best effort: a full send buffer
    /// drops the echo, never the measurement).
    pub echo: bool,
}

const WAITING: u8 = 0;
const START: u8 = 1;
const STOP: u8 = 2;

/// Reads `start` / `stop` lines; anything else is ignored.
fn spawn_control(phase: Arc<AtomicU8>) {
    std::thread::spawn(move || {
        let stdin = io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { return };
            match line.trim() {
                "start" => {
                    let _ =
                        phase.compare_exchange(WAITING, START, Ordering::SeqCst, Ordering::SeqCst);
                }
                "stop" => phase.store(STOP, Ordering::SeqCst),
                _ => {}
            }
        }
        // Whoever drives the probe has gone: stop too.
        phase.store(STOP, Ordering::SeqCst);
    });
}

fn bind(options: &ListenOptions) -> io::Result<(UdpSocket, usize)> {
    let socket = Socket::new(
        Domain::for_address(options.listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // The kernel clamps this to net.core.rmem_max (and doubles it); the
    // granted size is reported so a short buffer is visible in the results.
    socket.set_recv_buffer_size(options.rcvbuf_bytes)?;
    socket.bind(&options.listen.into())?;
    let granted = socket.recv_buffer_size()?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok((socket, granted))
}

/// Datagrams the kernel dropped on this socket (`drops` column of
/// /proc/net/udp), `None` where that file is unavailable.
fn kernel_drops(local: SocketAddr) -> Option<u64> {
    let file = if local.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    let text = std::fs::read_to_string(file).ok()?;
    let port = format!(":{:04X}", local.port());
    text.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let local_field = fields.nth(1)?;
        if !local_field.ends_with(&port) {
            return None;
        }
        line.split_whitespace().last()?.parse().ok()
    })
}

/// Listens, records one window and hands the report to `deliver`. Driven
/// from stdin, it then keeps reading (and discarding) until `stop`, so
/// senders never meet a closed port while their calls wind down.
pub fn run(
    options: &ListenOptions,
    deliver: impl FnOnce(Value) -> io::Result<()>,
) -> io::Result<()> {
    let (socket, rcvbuf) = bind(options)?;
    let local = socket.local_addr()?;
    eprintln!("rtp-probe: listening on {local} rcvbuf={rcvbuf}");

    let phase = Arc::new(AtomicU8::new(WAITING));
    if options.start_on_stdin {
        spawn_control(Arc::clone(&phase));
    }
    let mut recorder = Recorder::new(options.limits);
    let mut buffer = [0u8; 2048];
    let bound_at = Instant::now();
    let mut recording = !options.start_on_stdin;
    let mut window_start = bound_at;
    let mut drops_at_start = kernel_drops(local);
    let mut before_window = 0u64;

    let window_end = loop {
        let now = Instant::now();
        let requested = phase.load(Ordering::Relaxed);
        if recording {
            if now >= window_start + options.window || requested == STOP {
                break now;
            }
        } else if requested == START {
            recording = true;
            window_start = Instant::now();
            drops_at_start = kernel_drops(local);
            eprintln!("rtp-probe: window open ({before_window} datagrams before it)");
        } else if requested == STOP || now >= bound_at + options.max_wait {
            window_start = now;
            break now;
        }
        match socket.recv_from(&mut buffer) {
            Ok((len, from)) => {
                let arrived = Instant::now();
                if options.echo {
                    let _ = socket.send_to(buffer.get(..len).unwrap_or(&[]), from);
                }
                if recording {
                    let at = arrived.saturating_duration_since(window_start).as_nanos();
                    let datagram = buffer.get(..len).unwrap_or(&[]);
                    recorder.record(u64::try_from(at).unwrap_or(u64::MAX), datagram);
                } else {
                    before_window += 1;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };

    let drops = match (drops_at_start, kernel_drops(local)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let context = Context {
        window_s: window_end
            .saturating_duration_since(window_start)
            .as_secs_f64(),
        rcvbuf_bytes: rcvbuf,
        kernel_drops: drops,
        datagrams_before_window: before_window,
    };
    deliver(analysis::report(&recorder, &context))?;
    drop(recorder);

    if options.start_on_stdin {
        let give_up = Instant::now() + options.max_wait;
        while phase.load(Ordering::Relaxed) != STOP && Instant::now() < give_up {
            match socket.recv_from(&mut buffer) {
                Ok((len, from)) => {
                    if options.echo {
                        let _ = socket.send_to(buffer.get(..len).unwrap_or(&[]), from);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
