//! The transfer engine's [`Fetch`] over a [`Session`]: builds each request the engine asks for
//! (`Range`, `If-Range`, `HEAD`, custom headers), and maps [`Error`] kinds to transient or
//! final failures.
//!
//! Transient (retried after a delay): connection, resolution, send and receive failures,
//! timeouts, an empty reply, a body cut short, TLS failures other than the certificate, pool
//! exhaustion, and a proxy's 5xx. Final: certificate failures, refused credentials, bad URLs or
//! input, redirect failures, limits, other protocol violations.
use crate::error::{Error, ErrorKind};
use crate::redirect::RedirectPolicy;
use crate::request::RequestBuilder;
use crate::response::Response;
use crate::session::Session;
use ferry_auth::{Credentials, SchemeSet};
use ferry_http::io::TlsSettings;
use ferry_http::proto::Violation;
use ferry_proxy::{BypassList, ProxyConfig, WinHttpBypass};
use ferry_transfer::fetch::{ErrorClass, Fetch, FetchError, FetchHead, FetchRequest};
use ferry_transfer::job::{
    AuthScheme as JobScheme, CredentialTarget, Job, ProxyChoice, RedirectPolicy as JobRedirect,
};
use ferry_transfer::queue::Connector;
use http::Method;
use std::time::Duration;

/// A [`Fetch`] over a [`Session`], with per-request settings the session does not carry.
#[derive(Debug, Clone)]
pub struct SessionFetch {
    session: Session,
    tls: Option<TlsSettings>,
    redirect_policy: Option<RedirectPolicy>,
    connect_timeout: Option<Duration>,
    headers: Vec<(String, String)>,
    bearer: Option<String>,
}

impl SessionFetch {
    /// Fetches through `session` with its defaults.
    pub fn new(session: Session) -> SessionFetch {
        SessionFetch {
            session,
            tls: None,
            redirect_policy: None,
            connect_timeout: None,
            headers: Vec::new(),
            bearer: None,
        }
    }

    /// A bearer token (RFC 6750) for every request, sent only to each request's origin.
    pub fn bearer(mut self, token: impl Into<String>) -> SessionFetch {
        self.bearer = Some(token.into());
        self
    }

    /// TLS settings for every request.
    pub fn tls(mut self, tls: TlsSettings) -> SessionFetch {
        self.tls = Some(tls);
        self
    }

    /// The redirect policy for every request.
    pub fn redirect_policy(mut self, p: RedirectPolicy) -> SessionFetch {
        self.redirect_policy = Some(p);
        self
    }

    /// The connect timeout for every request.
    pub fn connect_timeout(mut self, t: Duration) -> SessionFetch {
        self.connect_timeout = Some(t);
        self
    }

    /// A header added to every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> SessionFetch {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `req`, returning the response or the session's error (for callers that want the
    /// [`ErrorKind`], such as the CLI's exit codes).
    pub fn send(&self, req: &FetchRequest<'_>) -> Result<Response, Error> {
        let method = if req.head { Method::HEAD } else { Method::GET };
        let mut b = self.session.request_url(method, req.url.clone());
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if let Some(t) = &self.tls {
            b = b.tls(t.clone());
        }
        if let Some(p) = self.redirect_policy {
            b = b.redirect_policy(p);
        }
        if let Some(t) = self.connect_timeout {
            b = b.connect_timeout(t);
        }
        if let Some(t) = &self.bearer {
            b = b.bearer_auth(t.clone());
        }
        with_fetch_request(b, req).send()
    }
}

/// Adds what `req` asks for (its headers, `Range`, `If-Range`) to a request being built.
pub fn with_fetch_request(mut b: RequestBuilder, req: &FetchRequest<'_>) -> RequestBuilder {
    for (k, v) in &req.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    if let Some(range) = req.range_header() {
        b = b.header("range", range);
        if let Some(v) = &req.if_range {
            b = b.header("if-range", v.as_str());
        }
    }
    b
}

/// The engine's view of a response head.
pub fn fetch_head(resp: &Response) -> FetchHead {
    FetchHead {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        final_url: resp.url().clone(),
    }
}

/// Whether a session error is worth retrying.
pub fn error_class(e: &Error) -> ErrorClass {
    if matches!(
        e.violation(),
        Some(Violation::IncompleteBody | Violation::IncompleteHead)
    ) {
        return ErrorClass::Transient;
    }
    match e {
        Error::Proxy { status } if *status >= 500 => return ErrorClass::Transient,
        _ => {}
    }
    match e.kind() {
        ErrorKind::Connect
        | ErrorKind::Resolve
        | ErrorKind::Timeout
        | ErrorKind::EmptyReply
        | ErrorKind::Receive
        | ErrorKind::Send
        | ErrorKind::Tls
        | ErrorKind::PoolExhausted => ErrorClass::Transient,
        _ => ErrorClass::Final,
    }
}

/// The engine's view of a session error: class, message (with the hint), and the proxy's
/// status when a proxy refused.
pub fn fetch_error(e: &Error) -> FetchError {
    let message = match e.hint() {
        Some(h) => format!("{e}; hint: {h}"),
        None => e.to_string(),
    };
    FetchError {
        kind: error_class(e),
        message,
        status: match e {
            Error::Proxy { status } => Some(*status),
            _ => None,
        },
        retry_after: None,
    }
}

impl Fetch for SessionFetch {
    type Body = Response;

    fn fetch(&self, req: &FetchRequest<'_>) -> Result<(FetchHead, Response), FetchError> {
        let resp = self.send(req).map_err(|e| fetch_error(&e))?;
        Ok((fetch_head(&resp), resp))
    }
}

impl Fetch for Session {
    type Body = Response;

    fn fetch(&self, req: &FetchRequest<'_>) -> Result<(FetchHead, Response), FetchError> {
        let method = if req.head { Method::HEAD } else { Method::GET };
        let b = self.request_url(method, req.url.clone());
        let resp = with_fetch_request(b, req)
            .send()
            .map_err(|e| fetch_error(&e))?;
        Ok((fetch_head(&resp), resp))
    }
}

/// Builds each job's [`SessionFetch`] for the transfer queue: the job's credentials (server
/// and proxy; Basic to an origin only over https, as BITS), its proxy choice, its redirect
/// policy, and an isolation tag naming the owner, so that no two owners ever share a
/// connection (DESIGN: owner isolation).
#[derive(Debug, Clone)]
pub struct JobConnector {
    proxy: ProxyConfig,
    tls: Option<TlsSettings>,
    receive_timeout: Option<Duration>,
}

impl JobConnector {
    /// A connector whose "session" proxy choice means `proxy` (the service's configuration).
    pub fn new(proxy: ProxyConfig) -> JobConnector {
        JobConnector {
            proxy,
            tls: None,
            receive_timeout: None,
        }
    }

    /// The receive timeout of every job's requests (default: the session's, 30 s): how long a
    /// stalled server holds a job before it becomes a transient error.
    pub fn receive_timeout(mut self, t: Duration) -> JobConnector {
        self.receive_timeout = Some(t);
        self
    }

    /// TLS settings for every job (extra roots, for instance).
    pub fn tls(mut self, tls: TlsSettings) -> JobConnector {
        self.tls = Some(tls);
        self
    }

    /// The session and fetch settings for `job`.
    pub fn fetch_for(&self, job: &Job) -> Result<SessionFetch, FetchError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            FetchError::fatal(format!("the job's {what} is unusable: {e}"))
        };
        let proxy = match job.proxy() {
            ProxyChoice::Session => self.proxy.clone(),
            ProxyChoice::None => ProxyConfig::none(),
            ProxyChoice::Override { proxy, bypass } => {
                let mut c = ProxyConfig::per_scheme_list(proxy).map_err(|e| bad("proxy", &e))?;
                if !bypass.is_empty() {
                    c = c.with_bypass(BypassList::WinHttp(
                        WinHttpBypass::parse(bypass),
                        "the job's bypass list",
                    ));
                }
                c
            }
        };
        // BITS sends Basic only over https (its credentials reference): a job's password never
        // crosses the network in clear, whatever the session default.
        let policy = ferry_auth::AuthPolicy {
            basic_over_cleartext: false,
            ..ferry_auth::AuthPolicy::default()
        };
        let mut b = Session::builder()
            .proxy(proxy)
            .auth_policy(policy)
            .isolation_tag(format!("uid:{}", job.owner_uid()));
        let mut bearer = None;
        for target in [CredentialTarget::Server, CredentialTarget::Proxy] {
            let Some(c) = job.credentials(target) else {
                continue;
            };
            let schemes = match c.scheme {
                JobScheme::Basic => SchemeSet::BASIC,
                JobScheme::Digest => SchemeSet::DIGEST,
                JobScheme::Ntlm => SchemeSet::NTLM,
                JobScheme::Negotiate => {
                    return Err(FetchError::fatal(
                        "Negotiate (Kerberos) credentials are not supported; use NTLM",
                    ))
                }
                JobScheme::Bearer => {
                    if target == CredentialTarget::Proxy {
                        return Err(FetchError::fatal(
                            "a bearer token cannot authenticate to a proxy",
                        ));
                    }
                    bearer = Some(c.secret.expose().to_owned());
                    continue;
                }
            };
            let creds = Credentials::new(&c.user, c.secret.expose());
            b = match target {
                CredentialTarget::Server => b.credentials(creds, schemes),
                CredentialTarget::Proxy => b.proxy_credentials(creds, schemes),
            };
        }
        if let Some(t) = &self.tls {
            b = b.tls(t.clone());
        }
        if let Some(t) = self.receive_timeout {
            b = b.receive_timeout(t);
        }
        let session = b.build().map_err(|e| fetch_error(&e))?;
        let policy = match job.redirect_policy() {
            JobRedirect::Disallow => RedirectPolicy::Never,
            _ if job.allow_https_to_http() => RedirectPolicy::Always,
            _ => RedirectPolicy::NoHttpsToHttp,
        };
        let mut f = SessionFetch::new(session).redirect_policy(policy);
        if let Some(t) = bearer {
            f = f.bearer(t);
        }
        Ok(f)
    }
}

impl Connector for JobConnector {
    type Fetch = SessionFetch;

    fn connect(&self, job: &Job) -> Result<SessionFetch, FetchError> {
        self.fetch_for(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_http::io::{Phase, TransportError};

    #[test]
    fn classes() {
        let t = |e: Error| error_class(&e);
        assert_eq!(
            t(Error::Transport(TransportError::Closed(Phase::Receive))),
            ErrorClass::Transient
        );
        assert_eq!(
            t(Error::Http(ferry_http::Error::Remote(
                Violation::IncompleteBody
            ))),
            ErrorClass::Transient
        );
        assert_eq!(
            t(Error::Http(ferry_http::Error::Remote(
                Violation::BadChunkSize
            ))),
            ErrorClass::Final
        );
        assert_eq!(t(Error::Url("x")), ErrorClass::Final);
        assert_eq!(t(Error::Proxy { status: 502 }), ErrorClass::Transient);
        assert_eq!(t(Error::Proxy { status: 407 }), ErrorClass::Final);
        assert_eq!(t(Error::TooManyRedirects { max: 1 }), ErrorClass::Final);
    }

    fn assert_sync<T: Sync + Send>() {}

    #[test]
    fn fetchers_can_run_segments() {
        assert_sync::<SessionFetch>();
        assert_sync::<Session>();
    }
}
