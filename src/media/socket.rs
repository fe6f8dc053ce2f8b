//! An RTP socket registered with the reactor for *readable* events only.
//!
//! tokio's `UdpSocket` registers for readable and writable readiness. Every
//! datagram the pacer sends frees send-buffer space, which the kernel reports
//! as a writable edge, waking a reactor thread for nothing: about 50,000
//! useless wake-ups a second at 1,000 calls (measured, docs/performance.md).
//! Sends here never wait (they are non-blocking and dropped on `WouldBlock`),
//! so writable readiness is never needed.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, ReadBuf};

#[derive(Debug)]
pub struct RtpSocket {
    inner: AsyncFd<std::net::UdpSocket>,
}

impl RtpSocket {
    /// Wraps a bound socket; must be called inside a tokio runtime.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<RtpSocket> {
        socket.set_nonblocking(true)?;
        // SAFETY: a `std::net::UdpSocket` owns its file descriptor and returns
        // that same descriptor from `as_raw_fd` until it is dropped, which
        // happens only when this `AsyncFd` is; the socket is never replaced
        // (no `get_mut` is used).
        let inner = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(RtpSocket { inner })
    }

    /// Sends without waiting: `WouldBlock` when the send buffer is full.
    pub fn try_send_to(&self, packet: &[u8], destination: SocketAddr) -> io::Result<usize> {
        self.inner.get_ref().send_to(packet, destination)
    }

    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<SocketAddr>> {
        loop {
            let mut guard = match self.inner.poll_read_ready(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|inner| inner.get_ref().recv_from(unfilled)) {
                Ok(Ok((len, from))) => {
                    buf.advance(len);
                    return Poll::Ready(Ok(from));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}
