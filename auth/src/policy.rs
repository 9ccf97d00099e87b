//! Policy: which scheme to answer with, where credentials may go, and the autologon levels.
//! Mechanism (the other modules) never decides these.
use crate::challenge::Challenge;
use crate::credentials::{Scheme, SchemeSet};
use crate::digest::DigestChallenge;
use std::net::{IpAddr, Ipv4Addr};

/// WinHTTP's autologon security level: where ambient (default) credentials may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AutologonLevel {
    /// Nowhere, proxies included (`WINHTTP_AUTOLOGON_SECURITY_LEVEL_HIGH`).
    High,
    /// Any host (`…_LOW`).
    Low,
    /// Intranet hosts only: names without a dot, or hosts on the proxy bypass list
    /// (`…_MEDIUM`, the default).
    #[default]
    Medium,
}

/// An origin: scheme, host, port (RFC 6454).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// The host, lowercased.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// Settings that decide what may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthPolicy {
    /// `basic_over_cleartext`: whether Basic credentials may be sent over plain HTTP (they are
    /// readable by anyone on the path). Default `true`, as curl and WinHTTP do when the caller
    /// asks for Basic explicitly; ambient credentials never use Basic whatever this says.
    pub basic_over_cleartext: bool,
    /// The autologon level for ambient credentials. Default [`AutologonLevel::Medium`].
    pub autologon: AutologonLevel,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            basic_over_cleartext: true,
            autologon: AutologonLevel::Medium,
        }
    }
}

impl AuthPolicy {
    /// A preset that refuses Basic over cleartext and uses ambient credentials nowhere.
    pub const STRICT: AuthPolicy = AuthPolicy {
        basic_over_cleartext: false,
        autologon: AutologonLevel::High,
    };
}

/// Whether `host` is an intranet name for the autologon policy: no dot, and not an IP literal.
///
/// IP literals include what URL parsers turn into IPv4 addresses from one label (`2130706433`,
/// `0x7f000001`: WHATWG URL's IPv4 number forms), and anything with a `:` (IPv6, bracketed or
/// not). `localhost` is an intranet name, as it is for WinHTTP.
pub fn is_intranet_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('.') || host.contains(':') {
        return false;
    }
    if host.parse::<IpAddr>().is_ok() || host.parse::<Ipv4Addr>().is_ok() {
        return false;
    }
    !is_ipv4_number(host)
}

/// A WHATWG URL IPv4 number: decimal digits, or `0x` followed by hex digits (possibly none).
fn is_ipv4_number(label: &str) -> bool {
    let b = label.as_bytes();
    match b {
        [b'0', b'x' | b'X', rest @ ..] => rest.iter().all(u8::is_ascii_hexdigit),
        _ => !b.is_empty() && b.iter().all(u8::is_ascii_digit),
    }
}

/// Whether ambient credentials may answer a challenge from `host` at `level`. `bypasses_proxy`
/// says whether the host is on the proxy bypass list; `is_proxy` whether the challenger is a
/// proxy. Returns the decision and its reason, for `explain`.
///
/// For a proxy at [`AutologonLevel::Medium`], `host` is the proxy's host and the answer is yes
/// only when that is an intranet name: a proxy on the internet is no more trusted than an
/// origin there, and "bypasses the proxy" has no meaning for the proxy itself.
pub fn ambient_allowed(
    level: AutologonLevel,
    host: &str,
    bypasses_proxy: bool,
    is_proxy: bool,
) -> (bool, &'static str) {
    match (level, is_proxy) {
        (AutologonLevel::High, _) => (
            false,
            "Autologon level high: ambient credentials are never sent.",
        ),
        (AutologonLevel::Low, false) => (
            true,
            "Autologon level low: ambient credentials may go to any host.",
        ),
        (AutologonLevel::Low, true) => (
            true,
            "Autologon level low: ambient credentials may go to any proxy.",
        ),
        (AutologonLevel::Medium, true) if is_intranet_host(host) => (
            true,
            "Autologon level medium: the proxy has an intranet name (no dots).",
        ),
        (AutologonLevel::Medium, true) => (
            false,
            "Autologon level medium: the proxy is not on the intranet (its name has dots or \
             is an IP address).",
        ),
        (AutologonLevel::Medium, false) if is_intranet_host(host) => (
            true,
            "Autologon level medium: the host has an intranet name (no dots).",
        ),
        (AutologonLevel::Medium, false) if bypasses_proxy => (
            true,
            "Autologon level medium: the host is on the proxy bypass list, so it is intranet.",
        ),
        (AutologonLevel::Medium, false) => (
            false,
            "Autologon level medium: the host is not on the intranet (its name has dots or is \
             an IP address, and it does not bypass the proxy).",
        ),
    }
}

/// Whether credentials given for `given_for` may be sent to `target` (invariant I2): only to the
/// same origin, unless the caller trusts every location (`--location-trusted`).
pub fn may_send_credentials(given_for: &Origin, target: &Origin, location_trusted: bool) -> bool {
    if location_trusted {
        return true;
    }
    // Exact match only (Go CVE-2023-45289 shows what "or a subdomain" leads to). Scheme and
    // host compare without case, though callers are expected to lowercase already.
    given_for.scheme.eq_ignore_ascii_case(&target.scheme)
        && given_for.host.eq_ignore_ascii_case(&target.host)
        && given_for.port == target.port
}

/// Picks the strongest challenge the caller allows and policy permits: NTLM and Digest SHA-256
/// (and SHA-512-256) above Digest MD5 above Basic. `cleartext` says the connection is not TLS.
/// Returns the scheme and the index of the chosen challenge in `challenges`.
///
/// NTLM wins a tie with Digest SHA-2 (it is what WinHTTP picks, and servers offering both are
/// Windows servers); among equals the first offered wins. Unknown schemes, Digest challenges
/// that cannot be answered (unknown algorithm, no nonce, …) and Bearer are skipped: a bearer
/// token is sent up front, never chosen from a challenge.
pub fn choose(
    challenges: &[Challenge],
    allowed: SchemeSet,
    cleartext: bool,
    policy: &AuthPolicy,
) -> Option<(Scheme, usize)> {
    let mut best: Option<(u8, Scheme, usize)> = None;
    for (i, c) in challenges.iter().enumerate() {
        let candidate = if c.is("ntlm") && allowed.ntlm {
            Some((4, Scheme::Ntlm))
        } else if c.is("digest") && allowed.digest {
            match DigestChallenge::from_challenge(c) {
                Ok(d) if d.algorithm.is_sha2() => Some((3, Scheme::Digest)),
                Ok(_) => Some((2, Scheme::Digest)),
                Err(_) => None,
            }
        } else if c.is("basic") && allowed.basic && (!cleartext || policy.basic_over_cleartext) {
            Some((1, Scheme::Basic))
        } else {
            None
        };
        match (candidate, best) {
            (Some((rank, _)), Some((r, _, _))) if rank <= r => {}
            (Some((rank, scheme)), _) => best = Some((rank, scheme, i)),
            (None, _) => {}
        }
    }
    best.map(|(_, scheme, i)| (scheme, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::parse_challenges;

    #[test]
    fn intranet_hosts() {
        for host in ["localhost", "intranet", "wiki-01", "FILESERVER"] {
            assert!(is_intranet_host(host), "{host}");
        }
        for host in [
            "example.com",
            "intranet.",
            "127.0.0.1",
            "::1",
            "[::1]",
            "fe80::1%eth0",
            "2130706433",
            "0x7f000001",
            "0X",
            "",
        ] {
            assert!(!is_intranet_host(host), "{host}");
        }
    }

    #[test]
    fn autologon_high_never() {
        for (host, bypass, proxy) in [("intranet", true, false), ("intranet", false, true)] {
            assert!(!ambient_allowed(AutologonLevel::High, host, bypass, proxy).0);
        }
    }

    #[test]
    fn autologon_low_anywhere() {
        assert!(ambient_allowed(AutologonLevel::Low, "example.com", false, false).0);
        assert!(ambient_allowed(AutologonLevel::Low, "proxy.example.com", false, true).0);
    }

    #[test]
    fn autologon_medium_intranet_or_bypass() {
        let m = AutologonLevel::Medium;
        assert!(ambient_allowed(m, "intranet", false, false).0);
        assert!(ambient_allowed(m, "wiki.corp.example", true, false).0);
        assert!(!ambient_allowed(m, "example.com", false, false).0);
        assert!(!ambient_allowed(m, "10.0.0.1", false, false).0);
        assert!(ambient_allowed(m, "10.0.0.1", true, false).0);
        // Proxies: only an intranet proxy name; the bypass flag does not apply.
        assert!(ambient_allowed(m, "proxy", false, true).0);
        assert!(!ambient_allowed(m, "proxy.example.com", true, true).0);
        assert_eq!(AutologonLevel::default(), m);
    }

    #[test]
    fn reasons_are_sentences() {
        for level in [
            AutologonLevel::High,
            AutologonLevel::Low,
            AutologonLevel::Medium,
        ] {
            for host in ["intranet", "example.com"] {
                for bypass in [false, true] {
                    for proxy in [false, true] {
                        let (_, why) = ambient_allowed(level, host, bypass, proxy);
                        assert!(why.ends_with('.') && why.len() < 140, "{why}");
                    }
                }
            }
        }
    }

    fn origin(scheme: &str, host: &str, port: u16) -> Origin {
        Origin {
            scheme: scheme.into(),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn credentials_stay_with_their_origin() {
        let a = origin("https", "a.example", 443);
        assert!(may_send_credentials(
            &a,
            &origin("https", "a.example", 443),
            false
        ));
        assert!(may_send_credentials(
            &a,
            &origin("https", "A.EXAMPLE", 443),
            false
        ));
        for other in [
            origin("http", "a.example", 443),
            origin("https", "a.example", 8443),
            origin("https", "b.example", 443),
            origin("https", "sub.a.example", 443),
            origin("https", "a.example.evil", 443),
        ] {
            assert!(!may_send_credentials(&a, &other, false), "{other:?}");
            assert!(may_send_credentials(&a, &other, true), "{other:?}");
        }
    }

    fn challenges(values: &[&str]) -> Vec<Challenge> {
        parse_challenges(values.iter().map(|v| v.as_bytes())).0
    }

    const SHA: &str = "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256";
    const MD5: &str = "Digest realm=\"r\", nonce=\"n\"";

    #[test]
    fn ranking() {
        let p = AuthPolicy::default();
        let all = challenges(&["Basic realm=\"r\"", MD5, SHA, "NTLM"]);
        assert_eq!(
            choose(&all, SchemeSet::ANY, false, &p),
            Some((Scheme::Ntlm, 3))
        );
        let no_ntlm = SchemeSet {
            ntlm: false,
            ..SchemeSet::ANY
        };
        assert_eq!(choose(&all, no_ntlm, false, &p), Some((Scheme::Digest, 2)));
        let c = challenges(&["Basic realm=\"r\"", MD5]);
        assert_eq!(
            choose(&c, SchemeSet::ANY, false, &p),
            Some((Scheme::Digest, 1))
        );
        assert_eq!(
            choose(&c, SchemeSet::BASIC, false, &p),
            Some((Scheme::Basic, 0))
        );
        assert_eq!(choose(&c, SchemeSet::NTLM, false, &p), None);
        // Ties: NTLM over Digest SHA-2 whatever the order; otherwise the first offered.
        let c = challenges(&[SHA, "NTLM"]);
        assert_eq!(
            choose(&c, SchemeSet::ANY, false, &p),
            Some((Scheme::Ntlm, 1))
        );
        let c = challenges(&[MD5, SHA]);
        assert_eq!(
            choose(&c, SchemeSet::ANY, false, &p),
            Some((Scheme::Digest, 1))
        );
        let c = challenges(&[
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256-sess",
            SHA,
        ]);
        assert_eq!(
            choose(&c, SchemeSet::ANY, false, &p),
            Some((Scheme::Digest, 0))
        );
    }

    #[test]
    fn skips_unknown_unparsable_and_bearer() {
        let p = AuthPolicy::default();
        let c = challenges(&[
            "Negotiate",
            "Bearer realm=\"r\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-1",
            "Digest realm=\"r\"",
            "Basic realm=\"r\"",
        ]);
        assert_eq!(
            choose(&c, SchemeSet::ANY, false, &p),
            Some((Scheme::Basic, 4))
        );
        let c = challenges(&["Bearer", "Negotiate"]);
        assert_eq!(choose(&c, SchemeSet::ANY, false, &p), None);
        assert_eq!(choose(&[], SchemeSet::ANY, false, &p), None);
    }

    #[test]
    fn basic_over_cleartext() {
        let c = challenges(&["Basic realm=\"r\""]);
        let strict = AuthPolicy::STRICT;
        assert_eq!(choose(&c, SchemeSet::ANY, true, &strict), None);
        assert_eq!(
            choose(&c, SchemeSet::ANY, false, &strict),
            Some((Scheme::Basic, 0))
        );
        let default = AuthPolicy::default();
        assert_eq!(
            choose(&c, SchemeSet::ANY, true, &default),
            Some((Scheme::Basic, 0))
        );
    }
}
