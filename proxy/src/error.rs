//! Proxy configuration errors.
use std::fmt;

/// A proxy setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL or `host:port` could not be parsed: the offending text and why.
    BadProxy {
        /// What was given (credentials removed).
        given: String,
        /// Why it is unusable.
        why: &'static str,
    },
    /// A proxy scheme ferry does not speak (for example `socks5`).
    UnsupportedScheme(String),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::BadProxy { given, why } => write!(f, "bad proxy '{given}': {why}"),
            ProxyError::UnsupportedScheme(s) => write!(f, "unsupported proxy scheme '{s}'"),
        }
    }
}

impl std::error::Error for ProxyError {}
