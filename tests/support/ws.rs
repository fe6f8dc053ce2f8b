//! A minimal WebSocket client (RFC 6455) of the tests' own: handshake, then
//! text frames from the server (which are never masked).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct WsClient {
    reader: BufReader<TcpStream>,
}

impl WsClient {
    /// Connects; `Err(status)` when the server refuses the upgrade.
    pub fn connect(addr: SocketAddr, path: &str) -> Result<WsClient, u16> {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .expect("write");
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        let end = Instant::now() + Duration::from_secs(5);
        while status_line.is_empty() && Instant::now() < end {
            let _ = reader.read_line(&mut status_line);
        }
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(_) if line == "\r\n" => break,
                Ok(0) => break,
                Ok(_) => {}
                Err(_) if Instant::now() < end => {}
                Err(_) => break,
            }
        }
        if status != 101 {
            return Err(status);
        }
        Ok(WsClient { reader })
    }

    /// Sends a text frame, masked as RFC 6455 requires of clients.
    pub fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.reader.get_mut().write_all(&frame).expect("ws send");
    }

    /// The next text frame, or `None` after `timeout`.
    pub fn next_text(&mut self, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        let mut header = [0u8; 2];
        loop {
            match self.reader.read_exact(&mut header) {
                Ok(()) => break,
                Err(_) if Instant::now() < end => continue,
                Err(_) => return None,
            }
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .ok()?;
        let opcode = header[0] & 0x0f;
        let mut len = u64::from(header[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            self.reader.read_exact(&mut b).ok()?;
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            self.reader.read_exact(&mut b).ok()?;
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        self.reader.read_exact(&mut payload).ok()?;
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .ok()?;
        match opcode {
            1 => String::from_utf8(payload).ok(),
            8 => None,
            _ => self.next_text(end.saturating_duration_since(Instant::now())),
        }
    }

    /// Reads events until one of `kind` arrives (earlier ones are passed over).
    pub fn wait_for(&mut self, kind: &str, timeout: Duration) -> serde_json::Value {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let Some(text) = self.next_text(end.saturating_duration_since(Instant::now())) else {
                break;
            };
            let v: serde_json::Value = serde_json::from_str(&text).expect("json event");
            if v["type"] == kind {
                return v;
            }
        }
        panic!("no {kind} event within {timeout:?}");
    }
}
