//! The auth glue: which credentials may be used on a hop (and so who the hop is made as), the
//! preemptive `Authorization`, and the answer to a 401 challenge. Mechanisms and policy are
//! ferry-auth's; this module only applies them to a request.
use crate::error::Error;
use ferry_auth::policy::{self, Origin};
use ferry_auth::{
    basic, parse_challenges, AuthPolicy, Credentials, DigestChallenge, DigestSession, Identity,
    IdentityBuilder, Scheme, SchemeSet, Secret,
};
use http::{header, HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::sync::Mutex;
use url::Url;

/// Authentication rounds answered per hop: a Digest nonce may go stale once, so two answers
/// plus the first try; more means the server keeps refusing, and its 401 is returned.
pub(crate) const MAX_AUTH_ROUNDS: u32 = 3;

/// What the caller gave for one request: explicit credentials (for the origin of the request's
/// first URL), a bearer token, and how far they may travel.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthRequest {
    pub(crate) creds: Option<(Credentials, SchemeSet)>,
    pub(crate) bearer: Option<Secret>,
    pub(crate) location_trusted: bool,
    pub(crate) isolation_tag: Option<String>,
}

/// What may be used on one hop, decided before checkout. The identity is a function of exactly
/// these, so two hops with equal plans may share connections and no others do.
#[derive(Debug, Clone)]
pub(crate) struct HopAuth {
    pub(crate) identity: Identity,
    /// Credentials that may answer challenges here, and with which schemes.
    pub(crate) creds: Option<(Credentials, SchemeSet)>,
    /// Whether `creds` are the session's ambient credentials (never sent as Basic).
    pub(crate) ambient: bool,
    pub(crate) bearer: Option<Secret>,
    /// Credentials for the proxy on this route, and with which schemes (I3: sent only to it).
    pub(crate) proxy_creds: Option<(Credentials, SchemeSet)>,
    /// Whether `proxy_creds` are the ambient credentials.
    pub(crate) proxy_ambient: bool,
}

/// The proxy of a hop and the credentials given for it.
pub(crate) struct ProxyHop<'a> {
    /// The proxy's host, for the autologon decision.
    pub(crate) host: &'a str,
    /// Explicit proxy credentials (`--proxy-user`, or the proxy URL's userinfo).
    pub(crate) creds: Option<&'a (Credentials, SchemeSet)>,
}

/// The origin of a URL.
pub(crate) fn origin(url: &Url) -> Origin {
    Origin {
        scheme: url.scheme().to_owned(),
        host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
        port: url.port_or_known_default().unwrap_or(0),
    }
}

/// Decides the credentials and identity of a hop to `url`, for a request whose explicit
/// credentials were given for `given_for` (I2), with the session's ambient credentials allowed
/// only where the autologon level says (I4). `bypasses_proxy`: the host matches the proxy
/// bypass list (intranet at MEDIUM, as `ferry proxy explain` says).
pub(crate) fn plan(
    req: &AuthRequest,
    given_for: &Origin,
    url: &Url,
    ambient: Option<&Credentials>,
    policy: &AuthPolicy,
    proxy: Option<&ProxyHop<'_>>,
    bypasses_proxy: bool,
) -> HopAuth {
    let target = origin(url);
    let explicit_ok = policy::may_send_credentials(given_for, &target, req.location_trusted);
    let mut id = IdentityBuilder::new();
    let mut creds = None;
    let mut is_ambient = false;
    let mut bearer = None;
    if explicit_ok {
        if let Some((c, schemes)) = &req.creds {
            id.server_credentials(&scheme_list(*schemes), c);
            creds = Some((c.clone(), *schemes));
        }
        if let Some(t) = &req.bearer {
            id.bearer(t);
            bearer = Some(t.clone());
        }
    }
    if creds.is_none() && bearer.is_none() {
        if let Some(a) = ambient {
            let (allowed, _why) =
                policy::ambient_allowed(policy.autologon, &target.host, bypasses_proxy, false);
            if allowed {
                id.ambient(a);
                // Ambient credentials answer only challenge-response schemes, never Basic.
                let schemes = SchemeSet {
                    basic: false,
                    digest: true,
                    ntlm: true,
                };
                creds = Some((a.clone(), schemes));
                is_ambient = true;
            }
        }
    }
    let mut proxy_creds = None;
    let mut proxy_ambient = false;
    if let Some(p) = proxy {
        if let Some((c, schemes)) = p.creds {
            id.proxy_credentials(c);
            proxy_creds = Some((c.clone(), *schemes));
        } else if let Some(a) = ambient {
            // I4: ambient credentials reach a proxy only as the autologon level allows (HIGH:
            // never), and only for challenge-response schemes.
            if policy::ambient_allowed(policy.autologon, p.host, false, true).0 {
                id.proxy_credentials(a);
                let schemes = SchemeSet {
                    basic: false,
                    digest: true,
                    ntlm: true,
                };
                proxy_creds = Some((a.clone(), schemes));
                proxy_ambient = true;
            }
        }
    }
    if let Some(tag) = &req.isolation_tag {
        id.isolation_tag(tag);
    }
    HopAuth {
        identity: id.finish(),
        creds,
        ambient: is_ambient,
        bearer,
        proxy_creds,
        proxy_ambient,
    }
}

fn scheme_list(s: SchemeSet) -> Vec<Scheme> {
    [Scheme::Basic, Scheme::Digest, Scheme::Ntlm]
        .into_iter()
        .filter(|x| s.contains(*x))
        .collect()
}

/// Digest conversations of a session, by origin and identity, so later requests answer the
/// current nonce preemptively with the next nonce count.
#[derive(Default)]
pub(crate) struct DigestCache {
    map: Mutex<HashMap<(Origin, Identity), DigestSession>>,
}

/// Digest conversations kept per session; beyond this the oldest is forgotten.
const MAX_DIGEST_SESSIONS: usize = 256;

impl DigestCache {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<(Origin, Identity), DigestSession>) -> T) -> T {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map)
    }
}

/// The request-line target Digest hashes (`uri`): path and query, as sent.
pub(crate) fn digest_uri(url: &Url) -> String {
    let mut s = url.path().to_owned();
    if let Some(q) = url.query() {
        s.push('?');
        s.push_str(q);
    }
    s
}

/// The `Authorization` value to send before any challenge: Bearer always, Basic when it is the
/// only scheme allowed (curl's `-u` default), Digest when a conversation with this origin and
/// identity is under way.
pub(crate) fn preemptive(
    hop: &HopAuth,
    url: &Url,
    method: &str,
    body: Option<&[u8]>,
    policy: &AuthPolicy,
    digests: &DigestCache,
) -> Result<Option<HeaderValue>, Error> {
    if let Some(t) = &hop.bearer {
        return header_value(basic::bearer_authorization(t).map_err(Error::Auth)?).map(Some);
    }
    let Some((creds, schemes)) = &hop.creds else {
        return Ok(None);
    };
    if *schemes == SchemeSet::BASIC && !hop.ambient {
        if url.scheme() == "http" && !policy.basic_over_cleartext {
            return Err(Error::Auth(ferry_auth::AuthError::BadChallenge(
                "Basic over cleartext HTTP is refused by policy (basic_over_cleartext)",
            )));
        }
        return header_value(basic::basic_authorization(creds).map_err(Error::Auth)?).map(Some);
    }
    if schemes.digest {
        let key = (origin(url), hop.identity);
        let answer = digests.with(|m| {
            m.get_mut(&key)
                .map(|d| d.respond(creds, method, &digest_uri(url), body, None))
        });
        if let Some(a) = answer {
            return header_value(a.map_err(Error::Auth)?).map(Some);
        }
    }
    Ok(None)
}

/// How to answer a 401.
pub(crate) enum Answer {
    /// Send the request again with this `Authorization`.
    Retry(HeaderValue),
    /// Run the NTLM handshake on one connection.
    Ntlm,
    /// Give the 401 to the caller.
    GiveUp,
}

/// Decides the answer to a 401 whose challenges are in `headers`. `sent` is the scheme of the
/// `Authorization` already sent on this hop, if any: the same scheme is not tried twice, except
/// Digest after `stale=true`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn answer(
    hop: &HopAuth,
    headers: &HeaderMap,
    sent: Option<Scheme>,
    url: &Url,
    method: &str,
    body: Option<&[u8]>,
    policy: &AuthPolicy,
    digests: &DigestCache,
) -> Result<Answer, Error> {
    let Some(creds) = &hop.creds else {
        return Ok(Answer::GiveUp);
    };
    let target = Challenged {
        creds,
        ambient: hop.ambient,
        identity: hop.identity,
        challenges: header::WWW_AUTHENTICATE,
        origin: origin(url),
        cleartext: url.scheme() == "http",
        basic_over_cleartext: policy.basic_over_cleartext,
    };
    answer_challenge(
        &target,
        headers,
        sent,
        &digest_uri(url),
        method,
        body,
        policy,
        digests,
    )
}

/// Who is being challenged: the origin (401) or the proxy (407).
pub(crate) struct Challenged<'a> {
    pub(crate) creds: &'a (Credentials, SchemeSet),
    pub(crate) ambient: bool,
    pub(crate) identity: Identity,
    /// `WWW-Authenticate` or `Proxy-Authenticate`.
    pub(crate) challenges: header::HeaderName,
    /// Whose Digest conversation this is (the origin's, or the proxy's address).
    pub(crate) origin: Origin,
    /// Whether the connection to the challenger is cleartext.
    pub(crate) cleartext: bool,
    /// Whether Basic may cross that cleartext connection.
    pub(crate) basic_over_cleartext: bool,
}

/// The answer to a challenge from `target`; `uri` is the request target Digest hashes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn answer_challenge(
    target: &Challenged<'_>,
    headers: &HeaderMap,
    sent: Option<Scheme>,
    uri: &str,
    method: &str,
    body: Option<&[u8]>,
    policy: &AuthPolicy,
    digests: &DigestCache,
) -> Result<Answer, Error> {
    let (creds, schemes) = target.creds;
    let values = headers.get_all(&target.challenges);
    let (challenges, _malformed) = parse_challenges(values.iter().map(|v| v.as_bytes()));
    let cleartext = target.cleartext;
    let mut allowed = *schemes;
    if target.ambient {
        allowed.basic = false;
    }
    let policy = &AuthPolicy {
        basic_over_cleartext: target.basic_over_cleartext,
        ..*policy
    };
    let Some((scheme, index)) = policy::choose(&challenges, allowed, cleartext, policy) else {
        return Ok(Answer::GiveUp);
    };
    match scheme {
        Scheme::Basic if sent == Some(Scheme::Basic) => Ok(Answer::GiveUp),
        Scheme::Basic => {
            let v = basic::basic_authorization(creds).map_err(Error::Auth)?;
            Ok(Answer::Retry(header_value(v)?))
        }
        Scheme::Digest => {
            let Ok(challenge) = DigestChallenge::from_challenge(&challenges[index]) else {
                return Ok(Answer::GiveUp);
            };
            let key = (target.origin.clone(), target.identity);
            // The realm our answer was for (the conversation under way with this origin).
            let answered_realm = digests.with(|m| m.get(&key).map(|d| d.challenge().realm.clone()));
            let same_space = answered_realm.as_deref() == Some(challenge.realm.as_str());
            if sent == Some(Scheme::Digest) && !challenge.stale && same_space {
                // The server refused our answer to a fresh nonce of the same realm: wrong
                // credentials. Another realm (another protection space on this origin, RFC
                // 9110 §11.5) gets its own answer.
                return Ok(Answer::GiveUp);
            }
            let v = digests.with(|m| {
                if m.len() >= MAX_DIGEST_SESSIONS && !m.contains_key(&key) {
                    m.clear();
                }
                let d = m
                    .entry(key)
                    .and_modify(|d| d.renew(challenge.clone()))
                    .or_insert_with(|| DigestSession::new(challenge.clone()));
                d.respond(creds, method, uri, body, None)
            });
            Ok(Answer::Retry(header_value(v.map_err(Error::Auth)?)?))
        }
        Scheme::Ntlm if sent == Some(Scheme::Ntlm) => Ok(Answer::GiveUp),
        Scheme::Ntlm => Ok(Answer::Ntlm),
        Scheme::Bearer => Ok(Answer::GiveUp),
    }
}

/// The scheme of an `Authorization` value we produced.
pub(crate) fn scheme_of(v: &HeaderValue) -> Option<Scheme> {
    let b = v.as_bytes();
    let word = b.split(|c| *c == b' ').next()?;
    [
        ("basic", Scheme::Basic),
        ("digest", Scheme::Digest),
        ("ntlm", Scheme::Ntlm),
        ("bearer", Scheme::Bearer),
    ]
    .into_iter()
    .find(|(n, _)| word.eq_ignore_ascii_case(n.as_bytes()))
    .map(|(_, s)| s)
}

/// The NTLM token68 in a 401's `WWW-Authenticate` (or a 407's `Proxy-Authenticate`) fields, if
/// the server sent a type-2. A bare `NTLM` (the server declining) is `Ok(None)`; an NTLM
/// challenge that cannot be read (not token68, or fields over `max_challenge_bytes`) is a broken
/// or hostile type-2, an `Auth` error like any other bad type-2.
pub(crate) fn ntlm_token(
    headers: &HeaderMap,
    challenges: &header::HeaderName,
) -> Result<Option<String>, Error> {
    let values = headers.get_all(challenges);
    let (parsed, malformed) = parse_challenges(values.iter().map(|v| v.as_bytes()));
    if let Some(t) = parsed
        .into_iter()
        .find(|c| c.is("ntlm"))
        .and_then(|c| c.token68)
    {
        return Ok(Some(t));
    }
    if malformed.iter().any(|m| m.reason == "too large") {
        return Err(Error::Auth(ferry_auth::AuthError::Limit {
            name: "max_challenge_bytes",
            max: ferry_auth::challenge::MAX_CHALLENGE_BYTES as u64,
        }));
    }
    let unreadable = values.iter().any(|v| {
        let v = v.as_bytes().trim_ascii();
        v.len() > 5
            && v[..5].eq_ignore_ascii_case(b"ntlm ")
            && !v[5..].trim_ascii().starts_with(b",")
    });
    if unreadable {
        return Err(Error::Auth(ferry_auth::AuthError::NtlmMalformed(
            "type-2 message is not token68",
        )));
    }
    Ok(None)
}

pub(crate) fn header_value(s: String) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(&s).map_err(|_| {
        Error::Http(ferry_http::Error::Local(
            ferry_http::proto::Misuse::BadHeaderValue,
        ))
    })?;
    v.set_sensitive(true);
    Ok(v)
}
