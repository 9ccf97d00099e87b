//! Challenge parsing (RFC 9110 §11.2, §11.6.1): `WWW-Authenticate` and `Proxy-Authenticate`.
//!
//! ```text
//! challenge   = auth-scheme [ 1*SP ( token68 / [ auth-param *( OWS "," OWS auth-param ) ] ) ]
//! auth-param  = token BWS "=" BWS ( token / quoted-string )
//! token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//! Several challenges may share one field value, separated by commas, and span several fields.

/// Bytes of all challenge field values of one response considered; more is a malformed
/// challenge, never an allocation without bound. 16 KiB: NTLM type-2 messages with large target
/// info are the largest legitimate challenges.
pub const MAX_CHALLENGE_BYTES: usize = 16 * 1024;

/// One challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`basic`, `digest`, `ntlm`, `bearer`, …).
    pub scheme: String,
    /// The token68 form, if used (NTLM type-2 messages, for example).
    pub token68: Option<String>,
    /// Parameters: lowercased names, unquoted and unescaped values, in order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The first value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the scheme is `scheme` (case-insensitive).
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

/// A challenge that was skipped, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// Why it was skipped.
    pub reason: &'static str,
}

/// Parses every challenge in `values` (the field values of all `WWW-Authenticate` or
/// `Proxy-Authenticate` fields, in order). Malformed challenges are skipped with a reason; the
/// rest are returned. Never panics.
pub fn parse_challenges<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Challenge>, Vec<Malformed>) {
    let _ = values.into_iter();
    todo!("challenge parser")
}
