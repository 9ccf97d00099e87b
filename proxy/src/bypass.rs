//! Bypass lists: hosts that go direct.
//!
//! # curl's `NO_PROXY` ([`NoProxy`])
//! The rules of curl's `lib/noproxy.c`, numbered as [`NoProxy::parse`] and [`NoProxy::matches`]
//! apply them:
//! 1. The list is split at commas; blanks (space, tab) around an entry are trimmed. As in curl, a
//!    blank *inside* the list that is not followed by a comma ends the list: `a b,c` is `a`.
//! 2. `*` as the whole value, or as an entry, matches every host.
//! 3. Case-insensitive. One leading dot and one trailing dot of a name entry are ignored, and
//!    so is one trailing dot of the host: `.example.com.` is `example.com`.
//! 4. A name matches itself and its subdomains at a label boundary: `example.com` matches
//!    `example.com` and `a.example.com`, never `notexample.com`; `ample.com` never matches
//!    `example.com`. No other wildcard: `*.example.com` is a literal that matches nothing, as in
//!    curl.
//! 5. IPv4 and IPv6 literal entries (IPv6 with or without brackets: `::1`, `[::1]`) match only IP
//!    hosts equal to them; CIDR entries (`10.0.0.0/8`, `::1/128`, `fe80::/10`) match IP hosts in
//!    the range. IP entries never match names and name entries never match IP hosts. The prefix
//!    length must be decimal and in range (`/0` matches the whole family; curl's `atoi` makes it
//!    an exact match, a quirk we do not copy).
//! 6. Entries with a port (`host:8080`, `10.0.0.1:80`, `[::1]:8080`) never match, exactly as in
//!    curl: the bypass decision has no port, and matching the host alone would send direct
//!    traffic for ports the user did not name. Such requests keep using the proxy.
//! 7. Hosts that are neither a valid IP literal nor a plain name (anything with `:`, `%`, `/`,
//!    brackets or blanks, such as an IPv6 zone id `::1%.example.com`) never match: Go's
//!    CVE-2025-22870 matched a zone id as a name label.
//! 8. Non-ASCII entries are converted with IDNA, so `bücher.example` matches the punycode host
//!    that the URL parser produces.
//!
//! # WinHTTP's bypass list ([`WinHttpBypass`])
//! 1. Entries are separated by `;` or whitespace; empty entries are ignored.
//! 2. `<local>` (any case) matches a host without a dot that is not an IP literal, the same
//!    "intranet name" test as the autologon policy ([`ferry_auth::policy::is_intranet_host`]):
//!    `localhost`, `wiki`, but neither `::1` nor `2130706433`.
//! 3. `*` is a wildcard for any run of characters, anywhere in an entry (a glob): `*.corp.example`
//!    matches `a.corp.example` but not `corp.example`; `10.*` matches `10.1.2.3`; `*` matches
//!    every host. Without `*` an entry matches its host exactly (no subdomains).
//! 4. Case-insensitive; one trailing dot is ignored on both sides; IPv6 entries may be
//!    bracketed (`[::1]`) and compare with the host's text as written (compressed form).
//! 5. A scheme prefix (`http://`, `https://`) is stripped and the entry then applies to every
//!    scheme: ferry's bypass decision is per host. Entries with a port never match (as 6 above).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed curl-style `NO_PROXY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<Entry>,
}

/// One `NO_PROXY` entry: its text as given (trimmed) and what it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    raw: String,
    rule: Rule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// `*`: every host.
    All,
    /// A name, lowercased, without its leading and trailing dot.
    Name(String),
    /// An address and a prefix length (32 or 128 for a plain literal).
    Net(IpAddr, u8),
    /// Cannot match anything (a port, a bad prefix, an empty name, ...).
    Never,
}

/// Blanks as curl's `ISBLANK`.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

impl NoProxy {
    /// Parses a `NO_PROXY` value. Never fails: unusable entries never match.
    pub fn parse(s: &str) -> Self {
        let mut entries = Vec::new();
        // Rule 1: curl's tokenizer. Skip blanks, read up to a blank or a comma, skip blanks; a
        // comma continues the list, anything else ends it.
        let mut rest = s;
        loop {
            rest = rest.trim_start_matches(is_blank);
            let end = rest.find(|c| is_blank(c) || c == ',').unwrap_or(rest.len());
            let (token, after) = rest.split_at(end);
            if !token.is_empty() {
                entries.push(Entry {
                    raw: token.to_owned(),
                    rule: Rule::of(token),
                });
            }
            let after = after.trim_start_matches(is_blank);
            match after.strip_prefix(',') {
                Some(next) => rest = next.trim_start_matches(','),
                None => break,
            }
        }
        NoProxy { entries }
    }

    /// The entry that matches `host` (IPv6 without brackets), if any.
    pub fn matches(&self, host: &str) -> Option<&str> {
        let host = HostKind::of(host)?;
        self.entries
            .iter()
            .find(|e| e.rule.matches(&host))
            .map(|e| e.raw.as_str())
    }

    /// Whether the list has no entries at all (an empty or blank value).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Rule {
    fn of(token: &str) -> Rule {
        // Rule 2.
        if token == "*" {
            return Rule::All;
        }
        // Rule 5: IP literals and CIDR, IPv6 possibly bracketed.
        if let Some(net) = parse_net(token) {
            return net;
        }
        // Rule 6 (ports) and anything else that cannot be a name.
        if token.contains([':', '/', '[', ']', '%']) {
            return Rule::Never;
        }
        // Rule 3.
        let name = token.strip_suffix('.').unwrap_or(token);
        let name = name.strip_prefix('.').unwrap_or(name);
        if name.is_empty() {
            return Rule::Never;
        }
        // Rule 8.
        let name = if name.is_ascii() {
            name.to_ascii_lowercase()
        } else {
            match url::Host::parse(name) {
                Ok(url::Host::Domain(d)) => d,
                _ => return Rule::Never,
            }
        };
        Rule::Name(name)
    }

    fn matches(&self, host: &HostKind<'_>) -> bool {
        match (self, host) {
            (Rule::All, _) => true,
            // Rule 4: itself, or a subdomain at a label boundary.
            (Rule::Name(n), HostKind::Name(h)) => {
                h.len() >= n.len()
                    && h.is_char_boundary(h.len() - n.len())
                    && h[h.len() - n.len()..].eq_ignore_ascii_case(n)
                    && (h.len() == n.len() || h.as_bytes()[h.len() - n.len() - 1] == b'.')
            }
            (Rule::Net(net, prefix), HostKind::Ip(ip)) => in_net(*ip, *net, *prefix),
            _ => false,
        }
    }
}

/// Parses `addr`, `addr/prefix`, `[v6]` or `[v6]/prefix`.
fn parse_net(token: &str) -> Option<Rule> {
    let (addr, prefix) = match token.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (token, None),
    };
    let addr = match addr.strip_prefix('[') {
        Some(inner) => IpAddr::V6(inner.strip_suffix(']')?.parse().ok()?),
        None => addr.parse::<IpAddr>().ok()?,
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        // A bad prefix makes an IP entry that never matches (it is not a name either).
        Some(p) => match parse_prefix(p, max) {
            Some(p) => p,
            None => return Some(Rule::Never),
        },
    };
    Some(Rule::Net(addr, prefix))
}

fn parse_prefix(p: &str, max: u8) -> Option<u8> {
    if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u8>().ok().filter(|&n| n <= max)
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            (u32::from(a) ^ u32::from(b)) & mask == 0
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            (u128::from(a) ^ u128::from(b)) & mask == 0
        }
        _ => false,
    }
}

/// A host as the matchers see it.
enum HostKind<'a> {
    /// An IP literal.
    Ip(IpAddr),
    /// A name without its trailing dot (case preserved: comparisons ignore case).
    Name(&'a str),
}

impl<'a> HostKind<'a> {
    /// Classifies `host`; `None` for hosts that must never match (rule 7).
    fn of(host: &'a str) -> Option<HostKind<'a>> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(v6) = bare.parse::<Ipv6Addr>() {
            return Some(HostKind::Ip(IpAddr::V6(v6)));
        }
        if let Ok(v4) = host.parse::<Ipv4Addr>() {
            return Some(HostKind::Ip(IpAddr::V4(v4)));
        }
        let name = host.strip_suffix('.').unwrap_or(host);
        if name.is_empty()
            || name.starts_with('.')
            || name.contains(|c: char| {
                c.is_whitespace() || c.is_control() || matches!(c, ':' | '%' | '/' | '[' | ']')
            })
        {
            return None;
        }
        Some(HostKind::Name(name))
    }
}

/// A parsed WinHTTP-style bypass list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WinHttpBypass {
    entries: Vec<WinEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct WinEntry {
    raw: String,
    rule: WinRule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum WinRule {
    /// `<local>`.
    Local,
    /// A lowercase glob (`*` = any run of characters), without scheme, brackets or trailing dot.
    Glob(String),
}

impl WinHttpBypass {
    /// Parses a bypass list. Never fails.
    pub fn parse(s: &str) -> Self {
        let entries = s
            .split(|c: char| c == ';' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .map(|raw| WinEntry {
                raw: raw.to_owned(),
                rule: WinRule::of(raw),
            })
            .collect();
        WinHttpBypass { entries }
    }

    /// The entry that matches `host`, if any.
    pub fn matches(&self, host: &str) -> Option<&str> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let bare = bare.strip_suffix('.').unwrap_or(bare);
        if bare.is_empty() || bare.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let lower = bare.to_ascii_lowercase();
        self.entries
            .iter()
            .find(|e| match &e.rule {
                WinRule::Local => ferry_auth::policy::is_intranet_host(&lower),
                WinRule::Glob(g) => glob_matches(g.as_bytes(), lower.as_bytes()),
            })
            .map(|e| e.raw.as_str())
    }

    /// Whether the list has no entries at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl WinRule {
    fn of(raw: &str) -> WinRule {
        if raw.eq_ignore_ascii_case("<local>") {
            return WinRule::Local;
        }
        let lower = raw.to_ascii_lowercase();
        let mut e = lower.as_str();
        for scheme in ["http://", "https://"] {
            if let Some(rest) = e.strip_prefix(scheme) {
                e = rest;
                break;
            }
        }
        // `[::1]` is `::1`; `[::1]:80` keeps its port text and so never matches.
        if let Some(inner) = e.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            e = inner;
        }
        let e = e.strip_suffix('.').unwrap_or(e);
        WinRule::Glob(e.to_owned())
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of bytes (possibly empty).
/// Iterative with one backtrack point: O(len(pattern) * len(text)) at worst, never exponential.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
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

    /// The list's source (`no_proxy`, `--noproxy`, ...), or `None` when there is no list.
    pub fn source(&self) -> Option<&'static str> {
        match self {
            BypassList::None => None,
            BypassList::Curl(_, src) | BypassList::WinHttp(_, src) => Some(src),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        for (p, t, m) in [
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "ab", false),
            ("*.x", "a.x", true),
            ("*.x", "x", false),
            ("**", "a", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("", "", true),
            ("", "a", false),
        ] {
            assert_eq!(glob_matches(p.as_bytes(), t.as_bytes()), m, "{p} {t}");
        }
    }

    #[test]
    fn glob_is_not_exponential() {
        let p = "*a".repeat(50) + "b";
        let t = "a".repeat(5000);
        assert!(!glob_matches(p.as_bytes(), t.as_bytes()));
    }

    #[test]
    fn tokenizer_is_curls() {
        let l = NoProxy::parse(" a , ,, b\t,c d,e");
        let raws: Vec<&str> = l.entries.iter().map(|e| e.raw.as_str()).collect();
        assert_eq!(raws, ["a", "b", "c"]);
        assert!(NoProxy::parse("").is_empty());
        assert!(NoProxy::parse(" , ").is_empty());
    }

    #[test]
    fn source() {
        assert_eq!(BypassList::None.source(), None);
        let l = BypassList::Curl(NoProxy::parse("a"), "NO_PROXY");
        assert_eq!(l.source(), Some("NO_PROXY"));
        assert_eq!(l.matches("x.a"), Some(("a", "NO_PROXY")));
    }
}
