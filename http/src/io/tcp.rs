//! Name resolution and TCP connect: every resolved address is tried in the resolver's order
//! (RFC 6724 sorting by getaddrinfo), each with its own connect timeout.
use super::error::{Phase, TransportError};
use super::wait_budget;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Idle time before TCP keepalive probes start on a pooled connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// Resolves `host:port`. IP literals (IPv6 without brackets) skip the resolver. With a
/// `timeout`, the system resolver runs on a helper thread so the wait can be bounded (the
/// libc resolver itself cannot be cancelled; the thread finishes in the background).
pub fn resolve(
    host: &str,
    port: u16,
    timeout: Option<Duration>,
) -> Result<Vec<SocketAddr>, TransportError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = move |h: String| -> Result<Vec<SocketAddr>, std::io::Error> {
        (h.as_str(), port).to_socket_addrs().map(|it| it.collect())
    };
    let result = match timeout {
        None => lookup(host.to_owned()),
        Some(t) => {
            let (tx, rx) = mpsc::channel();
            let h = host.to_owned();
            std::thread::Builder::new()
                .name("ferry-resolve".into())
                .spawn(move || {
                    let _ = tx.send(lookup(h));
                })
                .map_err(|e| TransportError::Resolve {
                    host: host.to_owned(),
                    source: Some(e),
                })?;
            match rx.recv_timeout(t) {
                Ok(r) => r,
                Err(_) => return Err(TransportError::Timeout(Phase::Resolve)),
            }
        }
    };
    match result {
        Ok(addrs) if addrs.is_empty() => Err(TransportError::Resolve {
            host: host.to_owned(),
            source: None,
        }),
        Ok(addrs) => Ok(addrs),
        Err(e) => Err(TransportError::Resolve {
            host: host.to_owned(),
            source: Some(e),
        }),
    }
}

/// Connects to the first address of `addrs` that accepts, with `timeout` per address (capped
/// by `deadline`). The socket gets TCP_NODELAY and keepalive.
pub fn connect_tcp(
    addrs: &[SocketAddr],
    timeout: Duration,
    deadline: Option<Instant>,
) -> Result<TcpStream, TransportError> {
    let mut last: Option<TransportError> = None;
    for addr in addrs {
        let Some(budget) = wait_budget(timeout, deadline, Instant::now()) else {
            return Err(TransportError::Timeout(Phase::Connect));
        };
        match connect_one(*addr, budget) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(TransportError::Timeout(Phase::Connect)))
}

fn connect_one(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, TransportError> {
    let wrap = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            TransportError::Timeout(Phase::Connect)
        }
        _ => TransportError::Connect { addr, source },
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(wrap)?;
    socket
        .connect_timeout(&addr.into(), timeout)
        .map_err(wrap)?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true).map_err(wrap)?;
    // Keepalive failing is not worth failing the request over.
    let _ =
        SockRef::from(&stream).set_tcp_keepalive(&TcpKeepalive::new().with_time(KEEPALIVE_IDLE));
    Ok(stream)
}
