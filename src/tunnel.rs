//! Proxies on the wire: the CONNECT handshake (with proxy authentication on one connection to
//! the proxy) and the credentials a proxy may receive. Route choice and the CONNECT grammar are
//! ferry-proxy's; the mechanisms are ferry-auth's.
use crate::auth::{self, Answer, Challenged, DigestCache};
use crate::error::Error;
use crate::event::Event;
use crate::session::Shared;
use ferry_auth::policy::Origin;
use ferry_auth::{basic, AuthPolicy, Credentials, Identity, NtlmBound, Scheme, SchemeSet};
use ferry_http::io::{Conn, Stream, Timeouts};
use ferry_http::proto::{body_framing, BodyDecoder, HeadParser, Limits, ParseConfig, Parsed};
use ferry_proxy::connect::{tunnel_reply, write_connect_request, TunnelReply};
use ferry_proxy::{ProxyEndpoint, ProxyPolicy, ProxyScheme};
use http::{header, HeaderValue, Method};
use std::time::Instant;

/// Bytes of a refused CONNECT's body read (and discarded) so the proxy connection can carry
/// the next attempt; more closes it.
const PROXY_BODY_DRAIN: u64 = 64 * 1024;

/// The origin form of a proxy's address, for Digest conversations with it.
fn proxy_origin(p: &ProxyEndpoint) -> Origin {
    Origin {
        scheme: match p.scheme {
            ProxyScheme::Http => "http".into(),
            ProxyScheme::Https => "https".into(),
        },
        host: p.host.clone(),
        port: p.port,
    }
}

/// The proxy as the target of a 407 challenge.
pub(crate) fn challenged_proxy<'a>(
    p: &ProxyEndpoint,
    creds: &'a (Credentials, SchemeSet),
    ambient: bool,
    identity: Identity,
    policy: &ProxyPolicy,
) -> Challenged<'a> {
    Challenged {
        creds,
        ambient,
        identity,
        challenges: header::PROXY_AUTHENTICATE,
        origin: proxy_origin(p),
        cleartext: p.scheme == ProxyScheme::Http,
        basic_over_cleartext: policy.basic_over_cleartext_proxy,
    }
}

/// `Proxy-Authorization: Basic …` before any challenge, when Basic alone is allowed for the
/// proxy credentials (curl's default for `--proxy-user`), unless policy forbids Basic over a
/// cleartext proxy connection.
pub(crate) fn preemptive_proxy_basic(
    p: &ProxyEndpoint,
    creds: &(Credentials, SchemeSet),
    ambient: bool,
    policy: &ProxyPolicy,
) -> Result<Option<HeaderValue>, Error> {
    if creds.1 != SchemeSet::BASIC || ambient {
        return Ok(None);
    }
    if p.scheme == ProxyScheme::Http && !policy.basic_over_cleartext_proxy {
        return Err(Error::Auth(ferry_auth::AuthError::BadChallenge(
            "Basic proxy credentials over a cleartext proxy connection are refused by policy",
        )));
    }
    let v = basic::basic_authorization(&creds.0).map_err(Error::Auth)?;
    auth::header_value(v).map(Some)
}

/// What a tunnel handshake needs.
pub(crate) struct TunnelRequest<'a> {
    pub(crate) proxy: &'a ProxyEndpoint,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) creds: Option<&'a (Credentials, SchemeSet)>,
    pub(crate) ambient: bool,
    pub(crate) identity: Identity,
    pub(crate) policy: &'a ProxyPolicy,
    pub(crate) auth_policy: &'a AuthPolicy,
    pub(crate) digests: &'a DigestCache,
    pub(crate) timeouts: Timeouts,
    pub(crate) deadline: Option<Instant>,
    pub(crate) parse: ParseConfig,
    pub(crate) limits: Limits,
    /// Reports the CONNECT heads (for `-v`).
    pub(crate) shared: &'a Shared,
}

/// Runs CONNECT on `stream` (a connection to the proxy) until the tunnel is up, answering 407
/// challenges on the same connection. Returns the stream, now carrying bytes to the origin, and
/// the NTLM binding if the proxy authenticated the connection with NTLM. Only a 2xx establishes
/// the tunnel: any other reply is an error, and its body is never read as the origin's.
pub(crate) fn open_tunnel(
    stream: Stream,
    t: &TunnelRequest<'_>,
) -> Result<(Stream, Option<NtlmBound>), Error> {
    let mut conn = Conn::new(stream, t.timeouts);
    conn.set_timeouts(t.timeouts, t.deadline);
    let mut proxy_authorization = match t.creds {
        Some(c) => preemptive_proxy_basic(t.proxy, c, t.ambient, t.policy)?,
        None => None,
    };
    let mut ntlm: Option<ferry_auth::ExpectNtlmType2> = None;
    // NTLM as the only scheme: start the handshake with the first CONNECT (as curl does).
    if let Some((c, schemes)) = t.creds {
        if *schemes == SchemeSet::NTLM {
            let (type1, expect) = ferry_auth::ntlm::start(c);
            proxy_authorization = Some(auth::header_value(type1)?);
            ntlm = Some(expect);
        }
    }
    let mut bound = None;
    let mut sent: Option<Scheme> = None;
    for _round in 0..=auth::MAX_AUTH_ROUNDS + 1 {
        let mut out = Vec::with_capacity(128);
        let authz = proxy_authorization.as_ref().and_then(|v| v.to_str().ok());
        if !write_connect_request(t.host, t.port, t.user_agent, authz, &mut out) {
            return Err(Error::Url("host cannot be written in a CONNECT request"));
        }
        t.shared.emit(&Event::RequestHead(&out));
        conn.write_all(&out)?;
        let mut parser = HeadParser::new(t.parse, t.limits, false);
        let head = loop {
            match conn.read_head(&mut parser, None)? {
                Some(Parsed::Final(h)) => break h,
                Some(Parsed::Interim(_)) | None => continue,
            }
        };
        t.shared.emit(&Event::ResponseHead {
            version: head.version,
            status: head.status,
            reason: &head.reason,
            headers: &head.headers,
        });
        match tunnel_reply(head.status) {
            TunnelReply::Established => {
                let (stream, rest) = conn.into_parts();
                if !rest.is_empty() {
                    // The origin cannot have spoken yet: these bytes are the proxy's.
                    return Err(Error::Proxy {
                        status: head.status.as_u16(),
                    });
                }
                return Ok((stream, bound));
            }
            TunnelReply::Refused(status) => {
                return Err(Error::Proxy {
                    status: status.as_u16(),
                })
            }
            TunnelReply::ProxyAuthRequired => {}
        }
        // 407: read the body away (never the origin's), keeping the connection if we can.
        let framing = body_framing(&Method::CONNECT, &head, &t.parse)?;
        let mut decoder = BodyDecoder::new(framing.body, t.parse, t.limits);
        let persistent = framing.close.is_none()
            && matches!(conn.drain_body(&mut decoder, PROXY_BODY_DRAIN), Ok(true));
        let fail = Error::Proxy { status: 407 };
        let Some(creds) = t.creds else {
            return Err(fail);
        };
        if !persistent {
            // Another connection would lose an NTLM handshake, and Basic/Digest attempts are
            // rare enough not to reconnect for: report the refusal.
            return Err(fail);
        }
        if let Some(expect) = ntlm.take() {
            let token =
                auth::ntlm_token(&head.headers, &header::PROXY_AUTHENTICATE)?.ok_or(fail)?;
            let (type3, b) = expect.on_challenge(&token, &t.identity)?;
            proxy_authorization = Some(auth::header_value(type3)?);
            bound = Some(b);
            sent = Some(Scheme::Ntlm);
            continue;
        }
        if sent == Some(Scheme::Ntlm) {
            return Err(fail);
        }
        let target = challenged_proxy(t.proxy, creds, t.ambient, t.identity, t.policy);
        let authority = format!("{}:{}", t.host, t.port);
        let answer = auth::answer_challenge(
            &target,
            &head.headers,
            sent,
            &authority,
            "CONNECT",
            Some(&[]),
            t.auth_policy,
            t.digests,
        )?;
        match answer {
            Answer::GiveUp => return Err(fail),
            Answer::Retry(v) => {
                sent = auth::scheme_of(&v);
                proxy_authorization = Some(v);
            }
            Answer::Ntlm => {
                let (type1, expect) = ferry_auth::ntlm::start(&creds.0);
                proxy_authorization = Some(auth::header_value(type1)?);
                ntlm = Some(expect);
            }
        }
    }
    Err(Error::Proxy { status: 407 })
}
