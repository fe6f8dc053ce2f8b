//! Debian's Kamailio in front of hotline nodes, with the shipped
//! `deploy/kamailio/kamailio.cfg` and a dispatcher list naming the nodes;
//! killed when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Kamailio {
    pub sip: SocketAddr,
    child: Child,
    log: super::Lines,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// Kamailio on a free loopback port in front of `nodes`.
    pub fn start(nodes: &[SocketAddr]) -> Kamailio {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = dir.path().join("dispatcher.list");
        let lines: String = nodes.iter().map(|n| format!("1 sip:{n}\n")).collect();
        std::fs::write(&list, lines).expect("dispatcher list");
        let port = super::free_sip_port();
        let sip: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut child = Command::new("kamailio")
            // Its own process group: its children die with it.
            .process_group(0)
            .arg("-f")
            .arg(super::repo().join("deploy/kamailio/kamailio.cfg"))
            .args(["-DD", "-E", "-m", "32", "-M", "4"])
            .arg("-A")
            .arg(format!("LISTEN=udp:{sip}"))
            .arg("-A")
            .arg(format!("DISPATCHER_LIST=\"{}\"", list.display()))
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-Y")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kamailio (Debian package kamailio) starts");
        let log = super::Lines::default();
        log.collect(child.stderr.take().expect("stderr"));
        let kamailio = Kamailio {
            sip,
            child,
            log,
            _dir: dir,
        };
        kamailio.wait_listening();
        kamailio
    }

    /// Waits until Kamailio answers an OPTIONS of its own.
    fn wait_listening(&self) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let local = socket.local_addr().expect("addr");
        let end = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        loop {
            n += 1;
            let options = format!(
                "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-up{n}\r\n\
                 From: <sip:probe@{local}>;tag=up\r\nTo: <sip:{}>\r\nCall-ID: up-{n}@test\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                self.sip, self.sip
            );
            let _ = socket.send_to(options.as_bytes(), self.sip);
            let mut buf = [0u8; 2048];
            if let Ok((len, _)) = socket.recv_from(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
            assert!(
                Instant::now() < end,
                "kamailio did not answer; log:\n{}",
                self.log.all().join("\n")
            );
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.all()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // Kamailio forks workers: the whole group goes.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.child.wait();
    }
}
