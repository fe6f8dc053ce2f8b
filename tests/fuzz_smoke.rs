//! The fuzz targets' entry points on stable Rust: every seed in fuzz/corpus
//! and a fixed number of deterministic mutations of each go through the same
//! calls the cargo-fuzz targets make. A panic fails the test.

use hotline::flow::{load_sources, Sources};
use hotline::sip::admission::AdmissionConfig;
use hotline::sip::{EndpointConfig, SipEndpoint, Transport};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../fuzz/shared/rtp_dtmf.rs"]
mod rtp_dtmf_stream;

const MUTATIONS_PER_SEED: usize = 200;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b":",
    b";",
    b",",
    b"\"",
    b"<",
    b">",
    b" ",
    b"\t",
    b"\0",
    b"%",
    b"=",
    b"4294967296",
    b"-1",
    b"Content-Length: 99999\r\n",
    b"l: 3\r\n",
    b"\xff\xfe",
    b"\xe2\x80\xae",
];

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                if let Some(b) = out.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 if !out.is_empty() => {
                let end = (at + rng.below(32)).min(out.len());
                out.drain(at.min(end)..end);
            }
            2 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, piece.iter().copied());
            }
            3 if !out.is_empty() => {
                let from = rng.below(out.len());
                let end = (from + rng.below(64)).min(out.len());
                let copy: Vec<u8> = out.get(from..end).unwrap_or(&[]).to_vec();
                out.splice(at..at, copy);
            }
            4 => out.truncate(at),
            _ => {
                let i = rng.below(out.len().max(1));
                if let Some(b) = out.get_mut(i) {
                    *b = rng.next() as u8;
                }
            }
        }
    }
    out
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    seeds
}

fn run(target: &str, mut entry: impl FnMut(&[u8])) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    for seed in seeds(target) {
        entry(&seed);
        for _ in 0..MUTATIONS_PER_SEED {
            entry(&mutate(&seed, &mut rng));
        }
    }
}

#[test]
fn sip_message() {
    let config = EndpointConfig {
        local_addr: "127.0.0.1:5060".parse().expect("addr"),
        user_agent: "hotline-fuzz".into(),
        max_message_size: 16 * 1024,
        max_calls: 16,
        max_transactions: 64,
    };
    let mut endpoint = SipEndpoint::new(config);
    endpoint.set_admission(AdmissionConfig::default());
    let start = Instant::now();
    let mut now = start;
    let peer = "127.0.0.1:5070".parse().expect("addr");
    run("sip_message", |data| {
        now += Duration::from_millis(7);
        endpoint.handle_input(now, Transport::Udp, peer, data);
        endpoint.handle_input(now, Transport::Tcp, peer, data);
        endpoint.handle_timeout(now);
        while endpoint.poll_transmit().is_some() {}
        while endpoint.poll_event().is_some() {}
    });
}

#[test]
fn sdp() {
    run("sdp", |data| {
        if let Ok(text) = std::str::from_utf8(data) {
            if let Ok(offer) = hotline::sdp::Offer::parse(text) {
                let _ = hotline::sdp::negotiate(&offer);
            }
        }
    });
}

#[test]
fn rtp_dtmf() {
    // The fuzz target's own calls: datagrams framed by a length byte, one
    // stream.
    let mut presses = 0;
    run("rtp_dtmf", |data| presses += rtp_dtmf_stream::feed(data));
    // The framed seeds hold real presses (5, then 0; and a lone 5).
    assert!(presses >= 3, "{presses} key presses in the seeds");
}

#[test]
fn flow_load() {
    run("flow_load", |data| {
        let sources = Sources {
            dir: PathBuf::from("flows"),
            files: vec![(
                PathBuf::from("flows/main.yaml"),
                String::from_utf8_lossy(data).into_owned(),
            )],
            catalogue: None,
            audio: None,
            unreadable: false,
        };
        let _ = load_sources(&sources);
    });
}
