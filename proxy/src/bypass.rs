//! Bypass lists: hosts that go direct.
//!
//! curl's `NO_PROXY`: comma-separated, trimmed, case-insensitive; a name matches itself and its
//! subdomains at a label boundary (`ample.com` never matches `example.com`); a leading dot is
//! the same as none; `*` alone matches everything; IPv4 and IPv6 literals (no brackets) and
//! CIDR ranges match IP hosts; a trailing dot is ignored on both sides.
//!
//! WinHTTP's bypass list: entries separated by `;` or whitespace; `<local>` matches names
//! without a dot; `*` is a wildcard anywhere in an entry (`*.corp.example`, `10.*`);
//! case-insensitive.

/// A parsed curl-style `NO_PROXY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<String>,
}

impl NoProxy {
    /// Parses a `NO_PROXY` value. Never fails: unusable entries never match.
    pub fn parse(s: &str) -> Self {
        let _ = s;
        todo!()
    }

    /// The entry that matches `host` (IPv6 without brackets), if any.
    pub fn matches(&self, host: &str) -> Option<&str> {
        let _ = (host, &self.entries);
        todo!()
    }
}

/// A parsed WinHTTP-style bypass list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WinHttpBypass {
    entries: Vec<String>,
}

impl WinHttpBypass {
    /// Parses a bypass list. Never fails.
    pub fn parse(s: &str) -> Self {
        let _ = s;
        todo!()
    }

    /// The entry that matches `host`, if any.
    pub fn matches(&self, host: &str) -> Option<&str> {
        let _ = (host, &self.entries);
        todo!()
    }
}

/// A bypass list of either style, with where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BypassList {
    /// Nothing bypasses the proxy.
    #[default]
    None,
    /// curl-style, with its source (`NO_PROXY`, `no_proxy`, `--noproxy`).
    Curl(NoProxy, &'static str),
    /// WinHTTP-style, with its source.
    WinHttp(WinHttpBypass, &'static str),
}

impl BypassList {
    /// The matching rule and the list's source, if `host` bypasses the proxy.
    pub fn matches(&self, host: &str) -> Option<(&str, &'static str)> {
        match self {
            BypassList::None => None,
            BypassList::Curl(l, src) => l.matches(host).map(|r| (r, *src)),
            BypassList::WinHttp(l, src) => l.matches(host).map(|r| (r, *src)),
        }
    }
}
