//! Response-head parsing with httparse, with named limits and 1xx handling.
use crate::proto::config::{Limits, ParseConfig};
use crate::proto::error::Error;
use http::{HeaderMap, StatusCode, Version};

/// A parsed final (non-1xx) response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// The status code.
    pub status: StatusCode,
    /// The reason phrase as sent (may be empty; not necessarily UTF-8, lossily converted).
    pub reason: String,
    /// Header fields in order received.
    pub headers: HeaderMap,
}

/// One step of head parsing.
#[derive(Debug)]
pub enum Parsed {
    /// A 1xx interim response was consumed (100, 102, 103, …); keep parsing after it.
    Interim(StatusCode),
    /// The final response head.
    Final(ResponseHead),
}

/// Parses response heads, counting interim responses against the limit.
#[derive(Debug, Clone)]
pub struct HeadParser {
    config: ParseConfig,
    limits: Limits,
    interim_seen: usize,
    upgrade_requested: bool,
}

impl HeadParser {
    /// A parser for one exchange. `upgrade_requested` says whether the request asked for a
    /// protocol switch (otherwise a 101 is an error).
    pub fn new(config: ParseConfig, limits: Limits, upgrade_requested: bool) -> Self {
        HeadParser { config, limits, interim_seen: 0, upgrade_requested }
    }

    /// Tries to parse one head from the start of `input`.
    ///
    /// `Ok(None)` means more bytes are needed (and `input` is still within
    /// `max_head_bytes`); `Ok(Some((n, parsed)))` consumed `n` bytes.
    pub fn try_parse(&mut self, input: &[u8]) -> Result<Option<(usize, Parsed)>, Error> {
        let _ = (input, &self.config, &self.limits, self.interim_seen, self.upgrade_requested);
        todo!("head")
    }
}
