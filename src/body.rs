//! Request bodies: bytes (replayable), a reader with a known length, or a chunked reader.
use std::fmt;
use std::io::Read;

/// A request body.
#[derive(Default)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// Bytes in memory; can be sent again after a redirect or a stale connection.
    Bytes(Vec<u8>),
    /// A reader whose length is known (`Content-Length`); sent once.
    Reader {
        /// The source.
        reader: Box<dyn Read + Send>,
        /// Exactly how many bytes it yields.
        len: u64,
    },
    /// A reader of unknown length, sent with `Transfer-Encoding: chunked`; sent once.
    Chunked(Box<dyn Read + Send>),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Body::Reader { len, .. } => write!(f, "Body::Reader({len} bytes)"),
            Body::Chunked(_) => f.write_str("Body::Chunked"),
        }
    }
}

impl Body {
    /// Whether the body can be sent again (redirects, retries on a stale connection).
    pub fn is_replayable(&self) -> bool {
        matches!(self, Body::Empty | Body::Bytes(_))
    }

    /// The length on the wire, if known.
    pub fn len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Reader { len, .. } => Some(*len),
            Body::Chunked(_) => None,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::Bytes(v)
    }
}

impl From<&[u8]> for Body {
    fn from(v: &[u8]) -> Self {
        Body::Bytes(v.to_vec())
    }
}

impl From<String> for Body {
    fn from(v: String) -> Self {
        Body::Bytes(v.into_bytes())
    }
}

impl From<&str> for Body {
    fn from(v: &str) -> Self {
        Body::Bytes(v.as_bytes().to_vec())
    }
}
