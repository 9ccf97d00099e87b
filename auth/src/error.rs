//! Authentication errors: what went wrong, never with a secret in the message.
use std::fmt;

/// An authentication failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// A challenge the client cannot answer: why.
    BadChallenge(&'static str),
    /// A Basic user-id containing `:` (RFC 7617 §2), or a user/domain with control bytes.
    InvalidUser,
    /// A bearer token that is not token68 (RFC 6750 §2.1).
    InvalidToken,
    /// A named limit was exceeded (challenge size, NTLM message size).
    Limit {
        /// The limit's name.
        name: &'static str,
        /// Its value.
        max: u64,
    },
    /// A malformed or hostile NTLM message from the server: why.
    NtlmMalformed(&'static str),
    /// The server asked for NTLMv1 only (or LM); ferry answers with NTLMv2 or not at all.
    NtlmV1Refused,
    /// The system's random source failed.
    Random,
    /// A Digest algorithm or qop the client does not implement.
    Unsupported(&'static str),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::BadChallenge(why) => write!(f, "unusable authentication challenge: {why}"),
            AuthError::InvalidUser => f.write_str("invalid user name for this scheme"),
            AuthError::InvalidToken => f.write_str("bearer token is not token68"),
            AuthError::Limit { name, max } => write!(f, "limit {name} ({max}) exceeded"),
            AuthError::NtlmMalformed(why) => write!(f, "malformed NTLM message: {why}"),
            AuthError::NtlmV1Refused => f.write_str("server offers only NTLMv1, which is refused"),
            AuthError::Random => f.write_str("the system random source failed"),
            AuthError::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for AuthError {}
