//! The blocking transport: TCP through socket2, TLS through rustls, WinHTTP-style timeouts,
//! and the driver ([`Conn`]) that moves bytes between a socket and the sans-IO core.
//!
//! Timeouts follow WinHTTP's `WinHttpSetTimeouts`: resolve, connect (per address tried), send
//! and receive (per operation: the longest wait for one write or one read to make progress),
//! plus an optional total deadline that caps every wait.
mod conn;
mod error;
mod stream;
mod tcp;
mod tls;

pub use conn::{Conn, ConnError, READ_BUF_SIZE};
pub use error::{Phase, TransportError};
/// The rustls client configuration built from [`TlsSettings`].
pub use rustls::ClientConfig;
pub use stream::Stream;
pub use tcp::{connect_tcp, resolve};
pub use tls::{connect_tls, TlsSettings};

use std::time::{Duration, Instant};

/// Per-operation timeouts and an optional total deadline (WinHTTP's four timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Name resolution; `None` waits as long as the system resolver does (WinHTTP default: 0,
    /// meaning infinite).
    pub resolve: Option<Duration>,
    /// Each TCP connect attempt, per resolved address. Default 60 s (WinHTTP).
    pub connect: Duration,
    /// Each write making progress. Default 30 s (WinHTTP).
    pub send: Duration,
    /// Each read making progress. Default 30 s (WinHTTP).
    pub receive: Duration,
}

impl Timeouts {
    /// WinHTTP's default connect timeout.
    pub const CONNECT: Duration = Duration::from_secs(60);
    /// WinHTTP's default send timeout.
    pub const SEND: Duration = Duration::from_secs(30);
    /// WinHTTP's default receive timeout.
    pub const RECEIVE: Duration = Duration::from_secs(30);
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            resolve: None,
            connect: Self::CONNECT,
            send: Self::SEND,
            receive: Self::RECEIVE,
        }
    }
}

/// The time an operation may wait: its own timeout, capped by the total deadline.
///
/// `None` when the deadline has passed already.
pub fn wait_budget(op: Duration, deadline: Option<Instant>, now: Instant) -> Option<Duration> {
    match deadline {
        None => Some(op),
        Some(d) => {
            let left = d.checked_duration_since(now)?;
            if left.is_zero() {
                None
            } else {
                Some(op.min(left))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_winhttps() {
        let t = Timeouts::default();
        assert_eq!(t.connect, Duration::from_secs(60));
        assert_eq!(t.send, Duration::from_secs(30));
        assert_eq!(t.receive, Duration::from_secs(30));
        assert_eq!(t.resolve, None);
    }

    #[test]
    fn budget_is_capped_by_the_deadline() {
        let now = Instant::now();
        let op = Duration::from_secs(30);
        assert_eq!(wait_budget(op, None, now), Some(op));
        let soon = now + Duration::from_millis(250);
        assert_eq!(
            wait_budget(op, Some(soon), now),
            Some(Duration::from_millis(250))
        );
        let later = now + Duration::from_secs(100);
        assert_eq!(wait_budget(op, Some(later), now), Some(op));
        assert_eq!(wait_budget(op, Some(now), now), None);
        assert_eq!(
            wait_budget(op, Some(now), now + Duration::from_secs(1)),
            None
        );
    }
}
