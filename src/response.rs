//! The response: status, version, headers, and a streaming body that returns its connection to
//! the pool when read to the end.
use crate::error::Error;
use crate::event::Event;
use crate::key::PoolKey;
use crate::session::{Connection, Shared};
use ferry_http::proto::{BodyDecoder, CloseReason, ResponseHead};
use ferry_pool::Lease;
use http::{HeaderMap, StatusCode, Version};
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// The longest a dropped response waits to drain its unread body (within
/// [`crate::DRAIN_LIMIT`]) so its connection can be reused; past it the connection is closed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A response whose head has arrived; the body is read through [`Read`], [`Response::bytes`]
/// or [`Response::text`].
pub struct Response {
    pub(crate) head: ResponseHead,
    pub(crate) url: Url,
    pub(crate) redirects: u32,
    pub(crate) connects: u32,
    pub(crate) body: BodyReader,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.head.status)
            .field("version", &self.head.version)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The HTTP version of the response.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The reason phrase as sent.
    pub fn reason(&self) -> &str {
        &self.head.reason
    }

    /// The header fields.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The URL that produced this response, after redirects (curl's `url_effective`).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// How many redirects were followed.
    pub fn redirect_count(&self) -> u32 {
        self.redirects
    }

    /// How many new connections were opened for this request, redirects included.
    pub fn connect_count(&self) -> u32 {
        self.connects
    }

    /// Trailer fields, once a chunked body has been read to its end.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.body.decoder.trailers()
    }

    /// Reads the whole body, failing with [`crate::ErrorKind::BodyTooLarge`] past `limit` bytes.
    ///
    /// Borrows the response, so trailers stay readable afterwards; [`Response::bytes`] is the
    /// consuming form.
    pub fn read_to_vec(&mut self, limit: u64) -> Result<Vec<u8>, Error> {
        if let Some(len) = self.body.decoder.remaining_length() {
            if len > limit {
                return Err(Error::BodyTooLarge { limit });
            }
        }
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = self.body.read_inner(&mut chunk)?;
            if n == 0 {
                return Ok(out);
            }
            if (out.len() + n) as u64 > limit {
                return Err(Error::BodyTooLarge { limit });
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the whole body, failing past `limit` bytes.
    ///
    /// Takes `self` so that it is not shadowed by [`Read::bytes`] when `Read` is in scope.
    pub fn bytes(mut self, limit: u64) -> Result<Vec<u8>, Error> {
        self.read_to_vec(limit)
    }

    /// Reads the whole body as text (invalid UTF-8 replaced), capped at `limit` bytes.
    pub fn text(mut self, limit: u64) -> Result<String, Error> {
        let bytes = self.read_to_vec(limit)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read_inner(buf).map_err(io::Error::from)
    }
}

/// The body half of a response: owns the connection's lease until the body ends.
pub(crate) struct BodyReader {
    pub(crate) lease: Option<Lease<PoolKey, Connection>>,
    pub(crate) decoder: BodyDecoder,
    pub(crate) close: Option<CloseReason>,
    pub(crate) shared: Arc<Shared>,
}

impl BodyReader {
    fn read_inner(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let Some(lease) = self.lease.as_mut() else {
            return Ok(0);
        };
        let Some(c) = lease.conn() else {
            self.lease = None;
            return Ok(0);
        };
        match c.conn.read_body(&mut self.decoder, buf) {
            Ok(0) => {
                self.finish();
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => {
                self.close = Some(CloseReason::Error);
                self.finish();
                Err(e.into())
            }
        }
    }

    /// Returns the connection to the pool if the exchange ended cleanly, else closes it.
    pub(crate) fn finish(&mut self) {
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        let Some(c) = lease.conn() else {
            return;
        };
        let id = c.id;
        let why = if let Some(r) = self.close {
            Some(r)
        } else if !self.decoder.is_done() {
            Some(CloseReason::UnreadBody)
        } else if !c.conn.buffered().is_empty() {
            // Bytes after the response that nobody asked for: the stream is out of step.
            Some(CloseReason::Error)
        } else {
            None
        };
        match why {
            None => {
                self.shared.emit(&Event::Kept { id });
                lease.release(Instant::now());
            }
            Some(r) => {
                c.conn.stream_mut().shutdown();
                self.shared.emit(&Event::Closed {
                    id,
                    why: &r.to_string(),
                });
                lease.discard();
            }
        }
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        if self.lease.is_none() {
            return;
        }
        if self.close.is_none() && !self.decoder.is_done() {
            let limit = self.shared.drain_limit;
            // Length-delimited bodies within the limit, and chunked bodies up to the limit, are
            // drained so the connection can be reused; anything else closes.
            let drainable = match self.decoder.remaining_length() {
                Some(r) => r <= limit,
                None => !self.decoder.is_passthrough(),
            };
            if drainable {
                if let Some(c) = self.lease.as_mut().and_then(|l| l.conn()) {
                    // Bounded in time too: a server that drips its body must not hold the
                    // caller in `drop` for up to drain-limit × receive-timeout (I7).
                    c.conn.cap_deadline(Instant::now() + DRAIN_TIMEOUT);
                    if !matches!(c.conn.drain_body(&mut self.decoder, limit), Ok(true)) {
                        self.close = Some(CloseReason::UnreadBody);
                    }
                }
            }
        }
        self.finish();
    }
}
