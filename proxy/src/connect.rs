//! CONNECT (RFC 9110 §9.3.6), sans-IO: the request head, and what a reply means. Only a 2xx
//! establishes the tunnel; any other reply is the proxy's, and its body is never read as the
//! origin's response.
use http::StatusCode;
use std::net::Ipv6Addr;

/// What a reply to CONNECT means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelReply {
    /// 2xx: the tunnel is up; bytes after the head belong to the origin.
    Established,
    /// 407: the proxy wants credentials.
    ProxyAuthRequired,
    /// Any other status: the proxy refused.
    Refused(StatusCode),
}

/// Classifies a reply status.
pub fn tunnel_reply(status: StatusCode) -> TunnelReply {
    if status.is_success() {
        TunnelReply::Established
    } else if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        TunnelReply::ProxyAuthRequired
    } else {
        TunnelReply::Refused(status)
    }
}

/// Appends a CONNECT request head for `host:port` to `out`: the request line, `Host`, the
/// `User-Agent` if given, and `Proxy-Authorization` if given. Nothing else: the origin's
/// `Authorization` and custom headers never go on a CONNECT. Host names with CR, LF, NUL,
/// spaces or other control bytes are refused (returns false, appends nothing).
///
/// Also refused: an empty host, port 0, a host with authority delimiters (`/ ? # @ [ ] \`) or
/// with `:` unless it is an IPv6 literal (given with or without brackets; written in brackets
/// in the request target and in `Host`), and header values with control bytes other than HTAB.
///
/// ```
/// let mut out = Vec::new();
/// assert!(ferry_proxy::connect::write_connect_request("::1", 443, None, None, &mut out));
/// assert_eq!(out, b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n");
/// ```
pub fn write_connect_request(
    host: &str,
    port: u16,
    user_agent: Option<&str>,
    proxy_authorization: Option<&str>,
    out: &mut Vec<u8>,
) -> bool {
    let Some(authority) = connect_authority(host, port) else {
        return false;
    };
    if !user_agent.is_none_or(is_field_value) || !proxy_authorization.is_none_or(is_field_value) {
        return false;
    }
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in [
        ("User-Agent", user_agent),
        ("Proxy-Authorization", proxy_authorization),
    ] {
        if let Some(v) = value {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    true
}

/// `host:port` for the request target (RFC 9110 §9.3.6: authority-form), or `None` when the
/// host cannot be written safely.
fn connect_authority(host: &str, port: u16) -> Option<String> {
    if port == 0 || host.is_empty() {
        return None;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.contains(':') {
        // Only a real IPv6 literal may hold a colon (no zone id: `%` is not allowed in a
        // request target without encoding, and a zone means nothing to the proxy).
        let v6: Ipv6Addr = bare.parse().ok()?;
        return Some(format!("[{v6}]:{port}"));
    }
    let bytes = bare.as_bytes();
    let safe = bytes.len() == host.len()
        && bytes.iter().all(|&b| {
            b > 0x20 && b != 0x7f && !matches!(b, b'/' | b'?' | b'#' | b'@' | b'[' | b']' | b'\\')
        });
    safe.then(|| format!("{bare}:{port}"))
}

/// RFC 9110 §5.5 `field-value`: visible characters, SP, HTAB and obs-text; no CR, LF, NUL or
/// other controls (invariant I6).
fn is_field_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(host: &str, port: u16, ua: Option<&str>, pa: Option<&str>) -> Option<Vec<u8>> {
        let mut out = b"prefix".to_vec();
        if write_connect_request(host, port, ua, pa, &mut out) {
            assert!(out.starts_with(b"prefix"));
            Some(out.split_off(6))
        } else {
            assert_eq!(out, b"prefix", "nothing appended on refusal");
            None
        }
    }

    #[test]
    fn exact_bytes() {
        assert_eq!(
            connect("example.com", 443, None, None).unwrap(),
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        assert_eq!(
            connect("example.com", 8443, Some("ferry/0.1"), Some("Basic dTpw")).unwrap(),
            b"CONNECT example.com:8443 HTTP/1.1\r\nHost: example.com:8443\r\n\
              User-Agent: ferry/0.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        assert_eq!(
            connect("10.0.0.1", 80, None, Some("NTLM TlRMTVNTUAABAAAA")).unwrap(),
            b"CONNECT 10.0.0.1:80 HTTP/1.1\r\nHost: 10.0.0.1:80\r\n\
              Proxy-Authorization: NTLM TlRMTVNTUAABAAAA\r\n\r\n"
        );
    }

    #[test]
    fn ipv6_in_brackets() {
        let want = b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n";
        assert_eq!(connect("2001:db8::1", 443, None, None).unwrap(), want);
        assert_eq!(connect("[2001:db8::1]", 443, None, None).unwrap(), want);
        assert_eq!(connect("2001:DB8:0::1", 443, None, None).unwrap(), want);
    }

    #[test]
    fn refusals() {
        for host in [
            "",
            "a b",
            "a\r\nX-Evil: 1",
            "a\0",
            "a\nb",
            "a\tb",
            "a\x7f",
            "a:80",
            "a/b",
            "a@b",
            "a?b",
            "a#b",
            "[a]",
            "[::1",
            "::1%eth0",
            "fe80::1%25eth0",
            "[::1]:80",
            "a\\b",
        ] {
            assert_eq!(connect(host, 443, None, None), None, "{host:?}");
        }
        assert_eq!(connect("a", 0, None, None), None);
        for bad in ["x\r\nHost: evil", "x\n", "x\r", "x\0", "\x01", "x\x7f"] {
            assert_eq!(connect("a", 1, Some(bad), None), None, "{bad:?}");
            assert_eq!(connect("a", 1, None, Some(bad)), None, "{bad:?}");
        }
        // HTAB and obs-text are field-value characters.
        assert!(connect("a", 1, Some("ferry\t1 (é)"), None).is_some());
    }

    #[test]
    fn replies() {
        assert_eq!(tunnel_reply(StatusCode::OK), TunnelReply::Established);
        assert_eq!(
            tunnel_reply(StatusCode::PROXY_AUTHENTICATION_REQUIRED),
            TunnelReply::ProxyAuthRequired
        );
        for s in [301, 401, 403, 502] {
            let s = StatusCode::from_u16(s).unwrap();
            assert_eq!(tunnel_reply(s), TunnelReply::Refused(s));
        }
    }
}
