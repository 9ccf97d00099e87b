//! CONNECT (RFC 9110 §9.3.6), sans-IO: the request head, and what a reply means. Only a 2xx
//! establishes the tunnel; any other reply is the proxy's, and its body is never read as the
//! origin's response.
use http::StatusCode;

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
pub fn write_connect_request(
    host: &str,
    port: u16,
    user_agent: Option<&str>,
    proxy_authorization: Option<&str>,
    out: &mut Vec<u8>,
) -> bool {
    let _ = (host, port, user_agent, proxy_authorization, out);
    todo!()
}
