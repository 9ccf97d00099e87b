//! A connected byte stream, plain TCP or TLS, with cached socket timeouts and an idle
//! liveness check.
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use socket2::SockRef;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A connection to a server: plain TCP or TLS over TCP.
pub struct Stream {
    inner: Inner,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// TLS to the origin inside a tunnel through a TLS proxy.
    Nested(Box<StreamOwned<ClientConnection, Stream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("tls", &self.is_tls())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl Stream {
    /// A plain TCP stream.
    pub fn plain(tcp: TcpStream) -> Self {
        Stream {
            inner: Inner::Plain(tcp),
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// A TLS stream whose handshake is complete.
    pub fn tls(tls: StreamOwned<ClientConnection, TcpStream>) -> Self {
        Stream {
            inner: Inner::Tls(Box::new(tls)),
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// Whether this stream is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_) | Inner::Nested(_))
    }

    /// The underlying TCP stream.
    pub fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Plain(t) => t,
            Inner::Tls(s) => &s.sock,
            Inner::Nested(s) => s.sock.tcp(),
        }
    }

    /// The negotiated TLS version and cipher suite, for verbose output.
    pub fn tls_info(&self) -> Option<(String, String)> {
        let conn = match &self.inner {
            Inner::Plain(_) => return None,
            Inner::Tls(s) => &s.conn,
            Inner::Nested(s) => &s.conn,
        };
        let v = conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        let c = conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default();
        Some((v, c))
    }

    /// Runs a TLS handshake with `host` over this stream: plain TCP becomes TLS, and a TLS
    /// stream to a proxy (a tunnel through an HTTPS proxy) gets TLS to the origin inside it.
    pub fn start_tls(
        self,
        host: &str,
        config: std::sync::Arc<ClientConfig>,
        timeout: Duration,
        deadline: Option<std::time::Instant>,
    ) -> Result<Stream, super::TransportError> {
        use super::{wait_budget, Phase, TransportError};
        match self.inner {
            Inner::Plain(tcp) => Ok(Stream::tls(super::connect_tls(
                tcp, host, config, timeout, deadline,
            )?)),
            inner => {
                let mut outer = Stream {
                    inner,
                    read_timeout: None,
                    write_timeout: None,
                };
                let name =
                    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
                        TransportError::Tls(rustls::Error::General("invalid server name".into()))
                    })?;
                let mut conn =
                    ClientConnection::new(config, name).map_err(TransportError::from_tls)?;
                while conn.is_handshaking() {
                    let budget = wait_budget(timeout, deadline, std::time::Instant::now())
                        .ok_or(TransportError::Timeout(Phase::Tls))?;
                    outer
                        .set_read_timeout(budget)
                        .and_then(|_| outer.set_write_timeout(budget))
                        .map_err(|e| TransportError::from_io(Phase::Tls, e))?;
                    match conn.complete_io(&mut outer) {
                        Ok((0, 0)) if conn.is_handshaking() => {
                            return Err(TransportError::Closed(Phase::Tls))
                        }
                        Ok(_) => {}
                        Err(e) => return Err(TransportError::from_io(Phase::Tls, e)),
                    }
                }
                Ok(Stream {
                    inner: Inner::Nested(Box::new(StreamOwned::new(conn, outer))),
                    read_timeout: None,
                    write_timeout: None,
                })
            }
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// Sets the read timeout, skipping the system call when it is unchanged.
    pub fn set_read_timeout(&mut self, t: Duration) -> io::Result<()> {
        if self.read_timeout != Some(t) {
            self.tcp().set_read_timeout(Some(t))?;
            self.read_timeout = Some(t);
        }
        Ok(())
    }

    /// Sets the write timeout, skipping the system call when it is unchanged.
    pub fn set_write_timeout(&mut self, t: Duration) -> io::Result<()> {
        if self.write_timeout != Some(t) {
            self.tcp().set_write_timeout(Some(t))?;
            self.write_timeout = Some(t);
        }
        Ok(())
    }

    /// Whether an idle connection may be reused: nothing unsolicited is waiting and the peer has
    /// not closed. TLS records that carry no application data (session tickets, key updates)
    /// are processed and do not count; a close_notify does.
    pub fn is_idle_alive(&mut self) -> bool {
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        let peeked = SockRef::from(self.tcp())
            .recv_with_flags(&mut probe, libc::MSG_PEEK | libc::MSG_DONTWAIT);
        match peeked {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Ok(0) | Err(_) => false,
            Ok(_) => match &mut self.inner {
                Inner::Plain(_) => false,
                Inner::Tls(s) => tls_idle_alive(s),
                // Pending bytes may be only the outer TLS layer's housekeeping, but telling
                // needs both layers processed: be conservative and do not reuse.
                Inner::Nested(_) => false,
            },
        }
    }

    /// Shuts down both directions (best effort), for a connection that must not be reused.
    pub fn shutdown(&mut self) {
        match &mut self.inner {
            Inner::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.write_tls(&mut s.sock);
            }
            Inner::Nested(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.write_tls(&mut s.sock);
            }
            Inner::Plain(_) => {}
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Both);
    }
}

fn tls_idle_alive(s: &mut StreamOwned<ClientConnection, TcpStream>) -> bool {
    if s.sock.set_nonblocking(true).is_err() {
        return false;
    }
    let alive = (|| {
        // Bounded: each pass consumes socket bytes, and an idle peer has sent little.
        for _ in 0..64 {
            match s.conn.read_tls(&mut s.sock) {
                Ok(0) => return false,
                Ok(_) => {
                    if s.conn.process_new_packets().is_err() {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        let mut one = [0u8; 1];
        matches!(s.conn.reader().read(&mut one), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    })();
    alive && s.sock.set_nonblocking(false).is_ok()
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(t) => t.read(buf),
            Inner::Tls(s) => s.read(buf),
            Inner::Nested(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(t) => t.write(buf),
            Inner::Tls(s) => s.write(buf),
            Inner::Nested(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(t) => t.write_vectored(bufs),
            Inner::Tls(s) => s.write_vectored(bufs),
            Inner::Nested(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(t) => t.flush(),
            Inner::Tls(s) => s.flush(),
            Inner::Nested(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (Stream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (Stream::plain(c), s)
    }

    fn settle() {
        std::thread::sleep(Duration::from_millis(50));
    }

    #[test]
    fn idle_connection_is_alive() {
        let (mut c, _server) = pair();
        assert!(c.is_idle_alive());
        // The check does not consume or block: still alive, still usable.
        assert!(c.is_idle_alive());
    }

    #[test]
    fn unsolicited_bytes_make_it_dead() {
        let (mut c, mut server) = pair();
        server
            .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .unwrap();
        settle();
        assert!(!c.is_idle_alive());
    }

    #[test]
    fn peer_close_makes_it_dead() {
        let (mut c, server) = pair();
        drop(server);
        settle();
        assert!(!c.is_idle_alive());
    }

    #[test]
    fn timeouts_are_cached_and_applied() {
        let (mut c, _server) = pair();
        c.set_read_timeout(Duration::from_millis(100)).unwrap();
        c.set_read_timeout(Duration::from_millis(100)).unwrap();
        assert_eq!(
            c.tcp().read_timeout().unwrap(),
            Some(Duration::from_millis(100))
        );
        let start = std::time::Instant::now();
        let mut b = [0u8; 1];
        let e = c.read(&mut b).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
