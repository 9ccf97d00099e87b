//! The blocking driver: one connection's read buffer and the loops that move bytes between the
//! socket and the sans-IO core. It applies timeouts and nothing else; every protocol decision
//! is the core's.
use super::error::{Phase, TransportError};
use super::stream::Stream;
use super::{wait_budget, Timeouts};
use crate::proto::{BodyDecoder, HeadParser, Parsed};
use std::io::{self, IoSlice, Read, Write};
use std::ops::Range;
use std::time::{Duration, Instant};

/// Size of a connection's read buffer. Bulk bodies move fastest at 64–96 KiB per system call
/// (measured: hyper reads ≈ 95 KiB at a time, curl 4 KiB); bodies bigger than a caller's
/// buffer bypass it entirely.
pub const READ_BUF_SIZE: usize = 64 * 1024;

/// Below this size a caller's buffer is filled from our buffer rather than directly from the
/// socket, so small reads do not each cost a system call.
const DIRECT_READ_MIN: usize = 8 * 1024;

/// An error while exchanging on a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnError {
    /// The peer broke HTTP/1.1 or a limit was hit.
    Protocol(crate::Error),
    /// The transport failed (timeout, reset, close, TLS).
    Transport(TransportError),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Protocol(e) => e.fmt(f),
            ConnError::Transport(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnError::Protocol(e) => Some(e),
            ConnError::Transport(e) => Some(e),
        }
    }
}

impl From<crate::Error> for ConnError {
    fn from(e: crate::Error) -> Self {
        ConnError::Protocol(e)
    }
}

impl From<TransportError> for ConnError {
    fn from(e: TransportError) -> Self {
        ConnError::Transport(e)
    }
}

/// One connection: its stream, a read buffer, and the timeouts in force.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Decoded body data not yet handed to the caller; lies before `start`.
    pending: Range<usize>,
    timeouts: Timeouts,
    deadline: Option<Instant>,
    bytes_read: u64,
    bytes_written: u64,
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(stream: Stream, timeouts: Timeouts) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            pending: 0..0,
            timeouts,
            deadline: None,
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    /// The stream.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The stream, mutably (for liveness checks and shutdown).
    pub fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }

    /// Sets the timeouts and total deadline for the next operations.
    pub fn set_timeouts(&mut self, timeouts: Timeouts, deadline: Option<Instant>) {
        self.timeouts = timeouts;
        self.deadline = deadline;
    }

    /// Brings the total deadline forward to `at` if it is later (or unset): for bounded
    /// best-effort work such as draining an unread body.
    pub fn cap_deadline(&mut self, at: Instant) {
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    /// Bytes read from and written to the socket so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.bytes_read, self.bytes_written)
    }

    /// Bytes received but not yet consumed (for example, bytes after a response that nobody
    /// asked for: such a connection must not be reused).
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Whether an idle connection may carry another request.
    pub fn is_idle_alive(&mut self) -> bool {
        self.start == self.end && self.pending.is_empty() && self.stream.is_idle_alive()
    }

    /// Writes all of `bufs` (gathered), within the send timeout per write.
    pub fn write_all_vectored(&mut self, bufs: &mut [IoSlice<'_>]) -> Result<(), ConnError> {
        let mut bufs = bufs;
        while !bufs.is_empty() {
            let budget = self.budget(self.timeouts.send, Phase::Send)?;
            self.stream
                .set_write_timeout(budget)
                .map_err(|e| TransportError::from_io(Phase::Send, e))?;
            match self.stream.write_vectored(bufs) {
                Ok(0) => return Err(TransportError::Closed(Phase::Send).into()),
                Ok(n) => {
                    self.bytes_written += n as u64;
                    IoSlice::advance_slices(&mut bufs, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TransportError::from_io(Phase::Send, e).into()),
            }
        }
        self.stream
            .flush()
            .map_err(|e| TransportError::from_io(Phase::Send, e))?;
        Ok(())
    }

    /// Writes all of `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.write_all_vectored(&mut [IoSlice::new(bytes)])
    }

    /// Writes one chunk of a chunked request body (nothing for empty `data`: the last chunk is
    /// [`Conn::finish_chunked`]).
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<(), ConnError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut size = [0u8; 18];
        let n = hex_line(data.len() as u64, &mut size);
        self.write_all_vectored(&mut [
            IoSlice::new(&size[..n]),
            IoSlice::new(data),
            IoSlice::new(b"\r\n"),
        ])
    }

    /// Writes the last chunk and an empty trailer section.
    pub fn finish_chunked(&mut self) -> Result<(), ConnError> {
        self.write_all(b"0\r\n\r\n")
    }

    /// Reads until `parser` yields an interim or final head. `Ok(None)` means the receive
    /// timeout given by `wait` expired with no complete head (used for `Expect: 100-continue`);
    /// without `wait`, a timeout is an error.
    pub fn read_head(
        &mut self,
        parser: &mut HeadParser,
        wait: Option<Duration>,
    ) -> Result<Option<Parsed>, ConnError> {
        let wait_until = wait.map(|w| Instant::now() + w);
        let mut received_any = self.start != self.end;
        loop {
            if self.start != self.end {
                if let Some((n, parsed)) = parser.try_parse(&self.buf[self.start..self.end])? {
                    self.consume(n);
                    return Ok(Some(parsed));
                }
            }
            let op = match wait_until {
                Some(t) => match t.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Ok(None),
                },
                None => self.timeouts.receive,
            };
            match self.fill(op) {
                Ok(0) if received_any => {
                    return Err(
                        crate::Error::Remote(crate::proto::Violation::IncompleteHead).into(),
                    )
                }
                Ok(0) => return Err(TransportError::Closed(Phase::Receive).into()),
                Ok(_) => received_any = true,
                Err(ConnError::Transport(TransportError::Timeout(_))) if wait_until.is_some() => {
                    if self.deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(TransportError::Timeout(Phase::Receive).into());
                    }
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads body bytes into `out`; `Ok(0)` means the body is complete (or `out` is empty).
    pub fn read_body(
        &mut self,
        decoder: &mut BodyDecoder,
        out: &mut [u8],
    ) -> Result<usize, ConnError> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(out.len());
                let from = self.pending.start;
                out[..n].copy_from_slice(&self.buf[from..from + n]);
                self.pending.start += n;
                return Ok(n);
            }
            if decoder.is_done() {
                return Ok(0);
            }
            if self.start != self.end {
                let d = decoder.decode(&self.buf[self.start..self.end])?;
                let base = self.start;
                self.start += d.consumed;
                if !d.data.is_empty() {
                    self.pending = base + d.data.start..base + d.data.end;
                    continue;
                }
                if d.consumed > 0 {
                    continue;
                }
            }
            if decoder.is_passthrough() && out.len() >= DIRECT_READ_MIN {
                // Straight into the caller's buffer: no copy for bulk bodies.
                let want = match decoder.remaining_length() {
                    Some(r) => out.len().min(usize::try_from(r).unwrap_or(usize::MAX)),
                    None => out.len(),
                };
                let n = self.read_some(&mut out[..want])?;
                if n == 0 {
                    decoder.on_eof()?;
                    return Ok(0);
                }
                let d = decoder.decode(&out[..n])?;
                debug_assert_eq!(d.data, 0..n, "passthrough decoders return their input");
                return Ok(d.data.len());
            }
            if self.fill(self.timeouts.receive)? == 0 {
                decoder.on_eof()?;
            }
        }
    }

    /// Reads and discards the rest of the body, at most `max` bytes. Returns whether the body
    /// ended within the bound (the connection may then be reused).
    pub fn drain_body(&mut self, decoder: &mut BodyDecoder, max: u64) -> Result<bool, ConnError> {
        let mut scratch = [0u8; 16 * 1024];
        let mut total = 0u64;
        while !decoder.is_done() || !self.pending.is_empty() {
            let n = self.read_body(decoder, &mut scratch)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > max {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Takes the stream and any bytes read past the last consumed position (for a tunnel).
    pub fn into_parts(self) -> (Stream, Vec<u8>) {
        let rest = self.buf[self.start..self.end].to_vec();
        (self.stream, rest)
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end && self.pending.is_empty() {
            self.start = 0;
            self.end = 0;
        }
    }

    fn budget(&self, op: Duration, phase: Phase) -> Result<Duration, TransportError> {
        wait_budget(op, self.deadline, Instant::now()).ok_or(TransportError::Timeout(phase))
    }

    /// Reads more bytes into the buffer; returns 0 at EOF.
    fn fill(&mut self, op: Duration) -> Result<usize, ConnError> {
        if self.buf.is_empty() {
            self.buf.resize(READ_BUF_SIZE, 0);
        }
        if self.pending.is_empty() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // The core bounds what it buffers (head and trailer limits), so growth is bounded.
            let grow = self.buf.len();
            self.buf.resize(self.buf.len() + grow, 0);
        }
        let budget = self.budget(op, Phase::Receive)?;
        self.stream
            .set_read_timeout(budget)
            .map_err(|e| TransportError::from_io(Phase::Receive, e))?;
        let end = self.end;
        let n = loop {
            match self.stream.read(&mut self.buf[end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A TLS peer that closes without close_notify: treat as EOF; framing decides
                // whether the body was complete.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break 0,
                Err(e) => return Err(TransportError::from_io(Phase::Receive, e).into()),
            }
        };
        self.end += n;
        self.bytes_read += n as u64;
        Ok(n)
    }

    fn read_some(&mut self, out: &mut [u8]) -> Result<usize, ConnError> {
        let budget = self.budget(self.timeouts.receive, Phase::Receive)?;
        self.stream
            .set_read_timeout(budget)
            .map_err(|e| TransportError::from_io(Phase::Receive, e))?;
        loop {
            match self.stream.read(out) {
                Ok(n) => {
                    self.bytes_read += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(TransportError::from_io(Phase::Receive, e).into()),
            }
        }
    }
}

/// Writes `n` in hex followed by CRLF into `out`; returns the length.
fn hex_line(n: u64, out: &mut [u8; 18]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = if n == 0 {
        1
    } else {
        (64 - n.leading_zeros() as usize).div_ceil(4)
    };
    for i in 0..digits {
        out[digits - 1 - i] = HEX[((n >> (4 * i)) & 0xf) as usize];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    digits + 2
}

#[cfg(test)]
mod tests {
    use super::hex_line;

    #[test]
    fn hex_lines() {
        let mut b = [0u8; 18];
        for (n, s) in [
            (0u64, "0\r\n"),
            (15, "f\r\n"),
            (16, "10\r\n"),
            (u64::MAX, "ffffffffffffffff\r\n"),
        ] {
            let len = hex_line(n, &mut b);
            assert_eq!(&b[..len], s.as_bytes());
        }
    }
}
