//! The chunked transfer coding decoder (RFC 9112 §7.1): a small state machine with named
//! limits on extensions and trailers.
use crate::proto::config::{Limits, ParseConfig};

/// Incremental chunked decoder; see [`crate::proto::BodyDecoder`] for the public entry.
#[derive(Debug)]
pub struct Dechunker {
    config: ParseConfig,
    limits: Limits,
}

impl Dechunker {
    /// A decoder at the start of a chunked body.
    pub fn new(config: ParseConfig, limits: Limits) -> Self {
        Dechunker { config, limits }
    }
}
