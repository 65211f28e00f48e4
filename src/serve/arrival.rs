//! When a request really arrived: the kernel's receive timestamp of its bytes (SO_TIMESTAMPNS), so time a
//! request spends queued before its handler runs (in the socket while every core is busy, or in tokio's run
//! queue) counts against its latency budget. Without it a CPU-saturated server sees only its own batch queues
//! and routes requests that have already waited milliseconds as if they had just come in.
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A delay longer than this is taken for a stale or bogus timestamp and ignored.
const MAX_PLAUSIBLE_DELAY: Duration = Duration::from_secs(60);

/// Accepts TCP connections with TCP_NODELAY and kernel receive timestamps switched on.
pub struct StampedListener(pub TcpListener);

/// The receive time (ns since the Unix epoch, 0 = none yet) of the last bytes read from one connection.
#[derive(Clone, Default, Debug)]
pub struct RxClock(Arc<AtomicU64>);

impl RxClock {
    /// The request's arrival as an `Instant`: now minus the time since the kernel received its last bytes.
    pub fn arrival(&self) -> Instant {
        let now = Instant::now();
        let rx_ns = self.0.load(Ordering::Relaxed);
        let Ok(since_epoch) = SystemTime::now().duration_since(UNIX_EPOCH) else { return now };
        match since_epoch.checked_sub(Duration::from_nanos(rx_ns)) {
            Some(waited) if rx_ns > 0 && waited < MAX_PLAUSIBLE_DELAY => now.checked_sub(waited).unwrap_or(now),
            _ => now,
        }
    }
}

pub struct StampedStream {
    tcp: TcpStream,
    clock: RxClock,
}

impl Listener for StampedListener {
    type Io = StampedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.0).await;
        // Small JSON answers go out at once instead of waiting on Nagle for the previous segment's ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        if let Err(e) = enable_rx_timestamps(&tcp) {
            tracing::debug!(error = %e, "SO_TIMESTAMPNS not set: arrival = handler start");
        }
        (StampedStream { tcp, clock: RxClock::default() }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, StampedListener>> for RxClock {
    fn connect_info(stream: IncomingStream<'_, StampedListener>) -> Self {
        stream.io().clock.clone()
    }
}

fn enable_rx_timestamps(tcp: &TcpStream) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `recvmsg` into `buf`: (bytes read, receive timestamp in ns since the epoch if the kernel attached one).
fn recv_stamped(fd: libc::c_int, buf: &mut [MaybeUninit<u8>]) -> io::Result<(usize, Option<u64>)> {
    // Room for one cmsg carrying a timespec (CMSG_SPACE(16) = 32 on 64-bit Linux), u64-aligned.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; the fields set below point at live buffers of the stated lengths.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: fd is an open socket; iov and control outlive the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control buffer the kernel filled, with the libc CMSG helpers.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

impl AsyncRead for StampedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.tcp.poll_read_ready(cx))?;
            let fd = this.tcp.as_raw_fd();
            // SAFETY: recvmsg only writes initialised bytes into the unfilled part, and we mark exactly those.
            let unfilled = unsafe { buf.unfilled_mut() };
            match this.tcp.try_io(Interest::READABLE, || recv_stamped(fd, unfilled)) {
                Ok((n, stamp)) => {
                    // No stamp (the kernel turns them on lazily): 0, so arrival falls back to "now", not stale.
                    this.clock.0.store(stamp.unwrap_or(0), Ordering::Relaxed);
                    // SAFETY: the kernel initialised n bytes of the unfilled region.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for StampedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, data)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes that sat in the socket for 30 ms before being read arrive 30 ms in the past.
    #[tokio::test]
    async fn arrival_counts_time_spent_in_the_socket() {
        let mut listener = StampedListener(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await;
        // The kernel switches receive timestamps on asynchronously after the first SO_TIMESTAMPNS: let it.
        client.write_all(b"w").await.unwrap();
        server.read_exact(&mut [0u8; 1]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.write_all(b"hello").await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        let waited = server.clock.arrival().elapsed();
        assert!(waited >= Duration::from_millis(29), "waited only {waited:?}");
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    }
}
