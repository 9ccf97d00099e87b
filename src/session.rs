//! The session (WinHTTP's `HINTERNET` session): defaults, the connection pool, TLS
//! configurations, and the request loop (connect or reuse, exchange, redirects).
use crate::auth::{self, AuthRequest, DigestCache};
use crate::body::Body;
use crate::error::Error;
use crate::event::{Event, EventHandler};
use crate::key::{PoolKey, Route};
use crate::redirect::{self, RedirectPolicy, Rewrite, MAX_REDIRECTS};
use crate::request::{RequestBuilder, RequestOptions};
use crate::response::{BodyReader, Response};
use crate::tunnel;
use ferry_auth::{AuthPolicy, Credentials, Identity, NtlmBound, SchemeSet};
use ferry_http::io::{
    connect_tcp, resolve, ClientConfig, Conn, Phase, Stream, Timeouts, TlsSettings, TransportError,
};
use ferry_http::proto::{
    body_framing, write_request_head, BodyDecoder, BodyFraming, BodyLength, CloseReason,
    HeadParser, Limits, ParseConfig, Parsed, RequestHead, ResponseHead, TargetForm,
};
use ferry_pool::{Lease, Pool};
use ferry_proxy::{ProxyConfig, ProxyPolicy};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use std::collections::HashMap;
use std::io::{IoSlice, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use url::Url;

mod exchange;

/// Bytes of an unread body drained so its connection can be reused (more closes it).
pub const DRAIN_LIMIT: u64 = 1024 * 1024;
/// Request bodies larger than this (or of unknown length) are sent with
/// `Expect: 100-continue`, as curl does.
pub const EXPECT_CONTINUE_THRESHOLD: u64 = 1024 * 1024;
/// How long to wait for `100 Continue` before sending the body anyway (curl: 1 s).
pub const EXPECT_CONTINUE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bodies up to this size go out in the same write as the head.
const COALESCE_BODY_MAX: usize = 16 * 1024;
/// Block size for streaming request bodies from a reader.
const UPLOAD_BLOCK: usize = 64 * 1024;

/// A pooled connection: the driver plus its sequence number in the session.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) conn: Conn,
    pub(crate) id: u64,
    /// Set once an NTLM handshake completed on this connection: it then belongs to that
    /// identity for the rest of its life (checked again at every checkout).
    pub(crate) bound: Option<NtlmBound>,
}

/// State shared by a session's clones and its responses.
pub(crate) struct Shared {
    timeouts: Timeouts,
    total_timeout: Option<Duration>,
    tls: TlsSettings,
    redirect_policy: RedirectPolicy,
    max_redirects: u32,
    /// `User-Agent` and `Accept`, sent unless the request sets its own.
    default_headers: HeaderMap,
    parse: ParseConfig,
    limits: Limits,
    expect_threshold: u64,
    expect_timeout: Duration,
    pub(crate) drain_limit: u64,
    pool: Pool<PoolKey, Connection>,
    tls_configs: Mutex<HashMap<TlsSettings, (u64, Arc<ClientConfig>)>>,
    /// The entry of `tls_configs` for `tls`, set once at build.
    default_tls: OnceLock<(u64, Arc<ClientConfig>)>,
    next_conn_id: AtomicU64,
    events: Option<EventHandler>,
    auth_policy: AuthPolicy,
    /// Ambient (default) credentials, used where the autologon level allows.
    ambient: Option<Credentials>,
    /// Credentials and tag for every request that sets none of its own.
    pub(crate) default_auth: AuthRequest,
    pub(crate) digests: DigestCache,
    proxy: ProxyConfig,
    pub(crate) proxy_policy: ProxyPolicy,
    proxy_auth: Option<(Credentials, SchemeSet)>,
    force_tunnel: bool,
}

impl Shared {
    pub(crate) fn emit(&self, e: &Event<'_>) {
        if let Some(h) = &self.events {
            h(e);
        }
    }
}

/// A session: connection pool and defaults shared by its requests. Cheap to clone; clones
/// share the pool. Safe to use from several threads.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("idle", &self.shared.pool.idle_count())
            .finish()
    }
}

/// Builds a [`Session`].
#[derive(Clone)]
pub struct SessionBuilder {
    timeouts: Timeouts,
    total_timeout: Option<Duration>,
    tls: TlsSettings,
    pool: ferry_pool::Config,
    redirect_policy: RedirectPolicy,
    max_redirects: u32,
    user_agent: String,
    parse: ParseConfig,
    limits: Limits,
    expect_threshold: u64,
    expect_timeout: Duration,
    drain_limit: u64,
    events: Option<EventHandler>,
    auth_policy: AuthPolicy,
    ambient: Option<Credentials>,
    default_auth: AuthRequest,
    proxy: ProxyConfig,
    proxy_policy: ProxyPolicy,
    proxy_auth: Option<(Credentials, SchemeSet)>,
    force_tunnel: bool,
}

impl Default for SessionBuilder {
    fn default() -> Self {
        SessionBuilder {
            timeouts: Timeouts::default(),
            total_timeout: None,
            tls: TlsSettings::default(),
            pool: ferry_pool::Config::default(),
            redirect_policy: RedirectPolicy::default(),
            max_redirects: MAX_REDIRECTS,
            user_agent: concat!("ferry/", env!("CARGO_PKG_VERSION")).to_owned(),
            parse: ParseConfig::default(),
            limits: Limits::default(),
            expect_threshold: EXPECT_CONTINUE_THRESHOLD,
            expect_timeout: EXPECT_CONTINUE_TIMEOUT,
            drain_limit: DRAIN_LIMIT,
            events: None,
            auth_policy: AuthPolicy::default(),
            ambient: None,
            default_auth: AuthRequest::default(),
            proxy: ProxyConfig::default(),
            proxy_policy: ProxyPolicy::default(),
            proxy_auth: None,
            force_tunnel: false,
        }
    }
}

impl SessionBuilder {
    /// Name-resolution timeout (default: none, as WinHTTP).
    pub fn resolve_timeout(mut self, t: Option<Duration>) -> Self {
        self.timeouts.resolve = t;
        self
    }
    /// Connect timeout per address tried (default 60 s, as WinHTTP).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.timeouts.connect = t;
        self
    }
    /// Send timeout per write (default 30 s, as WinHTTP).
    pub fn send_timeout(mut self, t: Duration) -> Self {
        self.timeouts.send = t;
        self
    }
    /// Receive timeout per read (default 30 s, as WinHTTP).
    pub fn receive_timeout(mut self, t: Duration) -> Self {
        self.timeouts.receive = t;
        self
    }
    /// Total deadline per request, redirects included (default none).
    pub fn total_timeout(mut self, t: Option<Duration>) -> Self {
        self.total_timeout = t;
        self
    }
    /// TLS settings (roots, verification).
    pub fn tls(mut self, tls: TlsSettings) -> Self {
        self.tls = tls;
        self
    }
    /// Adds trusted CA certificates (PEM) to the webpki roots.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Self {
        self.tls
            .extra_ca_pem
            .get_or_insert_with(Vec::new)
            .extend_from_slice(pem);
        self
    }
    /// Accepts any server certificate. Dangerous; for testing only.
    pub fn danger_accept_invalid_certs(mut self, yes: bool) -> Self {
        self.tls.danger_accept_invalid_certs = yes;
        self
    }
    /// Pool limits.
    pub fn pool(mut self, config: ferry_pool::Config) -> Self {
        self.pool = config;
        self
    }
    /// Redirect policy (default: follow, except https → http).
    pub fn redirect_policy(mut self, p: RedirectPolicy) -> Self {
        self.redirect_policy = p;
        self
    }
    /// Maximum redirects per request (default 10).
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.max_redirects = n;
        self
    }
    /// The `User-Agent` sent unless a request sets its own.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }
    /// Parser leniencies (default strict).
    pub fn parse_config(mut self, c: ParseConfig) -> Self {
        self.parse = c;
        self
    }
    /// Parser limits.
    pub fn limits(mut self, l: Limits) -> Self {
        self.limits = l;
        self
    }
    /// Bodies above this many bytes (or of unknown length) are sent with
    /// `Expect: 100-continue`; `u64::MAX` never does.
    pub fn expect_continue_threshold(mut self, bytes: u64) -> Self {
        self.expect_threshold = bytes;
        self
    }
    /// How long to wait for `100 Continue` before sending the body anyway.
    pub fn expect_continue_timeout(mut self, t: Duration) -> Self {
        self.expect_timeout = t;
        self
    }
    /// A callback for events (connects, reuse, heads), for verbose output.
    pub fn on_event(mut self, h: EventHandler) -> Self {
        self.events = Some(h);
        self
    }

    /// Credentials for every request that sets none, answering challenges with `schemes`
    /// (preemptively when `schemes` is Basic alone). Each request sends them only to the
    /// origin of its first URL, unless [`SessionBuilder::location_trusted`].
    pub fn credentials(mut self, creds: Credentials, schemes: SchemeSet) -> Self {
        self.default_auth.creds = Some((creds, schemes));
        self
    }
    /// Lets explicit credentials follow redirects to other origins (curl's
    /// `--location-trusted`). Off by default (invariant I2).
    pub fn location_trusted(mut self, yes: bool) -> Self {
        self.default_auth.location_trusted = yes;
        self
    }
    /// Ambient (default) credentials, like a service's machine account: they answer NTLM or
    /// Digest challenges where the autologon level allows, never Basic.
    pub fn default_credentials(mut self, creds: Credentials) -> Self {
        self.ambient = Some(creds);
        self
    }
    /// The authentication policy (autologon level, Basic over cleartext).
    pub fn auth_policy(mut self, p: AuthPolicy) -> Self {
        self.auth_policy = p;
        self
    }
    /// An isolation tag for every request (for example a local user id): requests with
    /// different tags never share a connection.
    pub fn isolation_tag(mut self, tag: impl Into<String>) -> Self {
        self.default_auth.isolation_tag = Some(tag.into());
        self
    }

    /// The proxy configuration (default: none; the CLI reads the environment into one with
    /// [`ProxyConfig::from_env`]).
    pub fn proxy(mut self, config: ProxyConfig) -> Self {
        self.proxy = config;
        self
    }
    /// Credentials for the proxy, answering its 407 challenges with `schemes` (Basic alone is
    /// sent preemptively). They go only to the proxy (I3).
    pub fn proxy_credentials(mut self, creds: Credentials, schemes: SchemeSet) -> Self {
        self.proxy_auth = Some((creds, schemes));
        self
    }
    /// The proxy security policy.
    pub fn proxy_policy(mut self, policy: ProxyPolicy) -> Self {
        self.proxy_policy = policy;
        self
    }
    /// Tunnel `http://` URLs through the proxy with CONNECT too (curl's `-p`).
    pub fn proxy_tunnel(mut self, yes: bool) -> Self {
        self.force_tunnel = yes;
        self
    }

    /// Builds the session; fails if the TLS settings are unusable (for example a CA bundle
    /// without certificates).
    pub fn build(self) -> Result<Session, Error> {
        let user_agent = HeaderValue::from_str(&self.user_agent).map_err(|_| {
            Error::Http(ferry_http::Error::Local(
                ferry_http::proto::Misuse::BadHeaderValue,
            ))
        })?;
        let mut default_headers = HeaderMap::with_capacity(2);
        default_headers.insert(header::USER_AGENT, user_agent);
        default_headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        let shared = Shared {
            timeouts: self.timeouts,
            total_timeout: self.total_timeout,
            tls: self.tls.clone(),
            redirect_policy: self.redirect_policy,
            max_redirects: self.max_redirects,
            default_headers,
            parse: self.parse,
            limits: self.limits,
            expect_threshold: self.expect_threshold,
            expect_timeout: self.expect_timeout,
            drain_limit: self.drain_limit,
            pool: Pool::new(self.pool),
            tls_configs: Mutex::new(HashMap::new()),
            default_tls: OnceLock::new(),
            next_conn_id: AtomicU64::new(0),
            events: self.events,
            auth_policy: self.auth_policy,
            ambient: self.ambient,
            default_auth: self.default_auth,
            digests: DigestCache::default(),
            proxy: self.proxy,
            proxy_policy: self.proxy_policy,
            proxy_auth: self.proxy_auth,
            force_tunnel: self.force_tunnel,
        };
        let session = Session {
            shared: Arc::new(shared),
        };
        // Build the default TLS configuration now so a bad CA bundle fails here, not later.
        session.tls_config(&self.tls)?;
        Ok(session)
    }
}

/// One hop of a request: what goes on the wire and how long it may take.
#[derive(Clone, Copy)]
struct Hop<'a> {
    method: &'a Method,
    url: &'a Url,
    headers: &'a HeaderMap,
    suppressed: &'a [HeaderName],
    timeouts: Timeouts,
    deadline: Option<Instant>,
    /// Who the hop is made as: part of the pool key.
    identity: Identity,
    /// The `Authorization` to send, unless the caller set one.
    authorization: Option<&'a HeaderValue>,
    /// How the hop reaches the origin.
    route: &'a ferry_proxy::Route,
    /// The `Proxy-Authorization` for a forward proxy (never sent anywhere else).
    proxy_authorization: Option<&'a HeaderValue>,
    /// Credentials for the proxy (CONNECT authentication), and whether they are ambient.
    proxy_creds: Option<&'a (Credentials, SchemeSet)>,
    proxy_ambient: bool,
}

/// Where one exchange stands when it fails: whether a retry on a new connection is safe.
struct Attempt {
    reused: bool,
    response_bytes_seen: bool,
}

impl Session {
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// A builder with WinHTTP's defaults.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    /// A request with `method` to `url`.
    pub fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, Error> {
        let url = parse_url(url)?;
        Ok(self.request_url(method, url))
    }

    /// A request with `method` to an already parsed URL.
    pub fn request_url(&self, method: Method, url: Url) -> RequestBuilder {
        RequestBuilder {
            session: self.clone(),
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            options: RequestOptions::default(),
            invalid: None,
        }
    }

    /// A GET request.
    pub fn get(&self, url: &str) -> Result<RequestBuilder, Error> {
        self.request(Method::GET, url)
    }

    /// A HEAD request.
    pub fn head(&self, url: &str) -> Result<RequestBuilder, Error> {
        self.request(Method::HEAD, url)
    }

    /// A POST request.
    pub fn post(&self, url: &str) -> Result<RequestBuilder, Error> {
        self.request(Method::POST, url)
    }

    /// A PUT request.
    pub fn put(&self, url: &str) -> Result<RequestBuilder, Error> {
        self.request(Method::PUT, url)
    }

    /// Idle connections in the pool.
    pub fn idle_connections(&self) -> usize {
        self.shared.pool.idle_count()
    }

    /// Connections opened by this session so far.
    pub fn connections_opened(&self) -> u64 {
        self.shared.next_conn_id.load(Ordering::Relaxed)
    }

    /// Closes every idle connection.
    pub fn close_idle(&self) {
        self.shared.pool.clear();
    }

    fn tls_config(&self, s: &TlsSettings) -> Result<(u64, Arc<ClientConfig>), Error> {
        // The session's own settings are looked up on every request: skip hashing them.
        if let Some(default) = self.shared.default_tls.get() {
            if std::ptr::eq(s, &self.shared.tls) || *s == self.shared.tls {
                return Ok(default.clone());
            }
        }
        let mut map = self
            .shared
            .tls_configs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(found) = map.get(s) {
            return Ok(found.clone());
        }
        let config = s.build()?;
        let id = map.len() as u64 + 1;
        map.insert(s.clone(), (id, config.clone()));
        if *s == self.shared.tls {
            let _ = self.shared.default_tls.set((id, config.clone()));
        }
        Ok((id, config))
    }

    pub(crate) fn execute(&self, req: RequestBuilder) -> Result<Response, Error> {
        if let Some(e) = req.invalid {
            return Err(e);
        }
        let RequestBuilder {
            method,
            mut url,
            mut headers,
            mut body,
            options,
            ..
        } = req;
        // CONNECT opens a tunnel that would go back to the pool as if it were a connection to
        // the origin; ferry makes tunnels itself (proxies), never on a caller's behalf.
        if method == Method::CONNECT {
            return Err(Error::Method(
                "CONNECT is not a request method here (ferry opens proxy tunnels itself)",
            ));
        }
        // Credentials in the URL would be silently dropped: say so instead.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Url(
                "user name or password in the URL; pass credentials with the request instead",
            ));
        }
        let sh = &self.shared;
        let deadline = options
            .total_timeout
            .or(sh.total_timeout)
            .map(|t| Instant::now() + t);
        let mut timeouts = sh.timeouts;
        if let Some(c) = options.connect_timeout {
            timeouts.connect = c;
        }
        let policy = options.redirect_policy.unwrap_or(sh.redirect_policy);
        let max_redirects = options.max_redirects.unwrap_or(sh.max_redirects);
        let tls = options.tls.as_ref().unwrap_or(&sh.tls);
        let (tls_id, tls_config) = self.tls_config(tls)?;
        let mut method = method;
        let mut redirects = 0u32;
        let mut connects = 0u32;
        let auth_req = options.auth.as_ref().unwrap_or(&sh.default_auth);
        let proxy_config = options.proxy.as_ref().unwrap_or(&sh.proxy);
        let force_tunnel = options.force_tunnel.unwrap_or(sh.force_tunnel);
        let given_for = auth::origin(&url);
        // Set once a hop leaves the origin the explicit credentials were given for: the request's
        // auth without them, for the rest of the request, even if a later hop returns there (I2;
        // as with the headers in `redirect::strip_cross_origin`). Ambient credentials still go
        // where the autologon policy allows.
        let mut left_origin: Option<AuthRequest> = None;
        loop {
            check_url(&url)?;
            let hop_req = left_origin.as_ref().unwrap_or(auth_req);
            // Without any proxy the route is direct: skip the decision's explanations, which
            // only `ferry proxy explain` reads (they cost allocations on every request).
            let route = if proxy_config.http.is_none() && proxy_config.https.is_none() {
                ferry_proxy::Route::Direct
            } else {
                ferry_proxy::choose_route(&url, proxy_config, force_tunnel).route
            };
            let endpoint = match &route {
                ferry_proxy::Route::Direct => None,
                ferry_proxy::Route::Forward(p) | ferry_proxy::Route::Tunnel(p) => Some(p),
            };
            // Proxy credentials: the request's, the session's, or the proxy URL's (Basic, as
            // curl). They belong to this proxy only (I3).
            let url_proxy_creds = endpoint
                .and_then(|p| p.credentials.clone())
                .map(|c| (c, SchemeSet::BASIC));
            let proxy_given = match &options.proxy_auth {
                Some(p) => p.clone(),
                None => sh.proxy_auth.clone().or(url_proxy_creds),
            };
            let proxy_hop = endpoint.map(|p| auth::ProxyHop {
                host: &p.host,
                creds: proxy_given.as_ref(),
            });
            // I4: a host on the bypass list is intranet at MEDIUM (as `explain` says).
            let bypasses_proxy = proxy_config.bypass != ferry_proxy::BypassList::None
                && ferry_proxy::route::route_host(&url)
                    .is_some_and(|h| proxy_config.bypass.matches(&h).is_some());
            let hop_auth = auth::plan(
                hop_req,
                &given_for,
                &url,
                sh.ambient.as_ref(),
                &sh.auth_policy,
                proxy_hop.as_ref(),
                bypasses_proxy,
            );
            let body_bytes = match &body {
                Body::Bytes(b) => Some(b.as_slice()),
                Body::Empty => Some(&[][..]),
                _ => None,
            };
            let mut authorization = auth::preemptive(
                &hop_auth,
                &url,
                method.as_str(),
                body_bytes,
                &sh.auth_policy,
                &sh.digests,
            )?;
            let forward = matches!(route, ferry_proxy::Route::Forward(_));
            let mut proxy_authorization = match (&route, &hop_auth.proxy_creds) {
                (ferry_proxy::Route::Forward(p), Some(pc)) => {
                    tunnel::preemptive_proxy_basic(p, pc, hop_auth.proxy_ambient, &sh.proxy_policy)?
                }
                _ => None,
            };
            let mut rounds = 0u32;
            // The scheme already tried on this hop with no success, if any.
            let mut tried_ntlm = false;
            let mut tried_proxy_ntlm = false;
            let mut resp = loop {
                let hop = Hop {
                    method: &method,
                    url: &url,
                    headers: &headers,
                    suppressed: &options.suppressed,
                    timeouts,
                    deadline,
                    identity: hop_auth.identity,
                    authorization: authorization.as_ref(),
                    route: &route,
                    proxy_authorization: proxy_authorization.as_ref(),
                    proxy_creds: hop_auth.proxy_creds.as_ref(),
                    proxy_ambient: hop_auth.proxy_ambient,
                };
                // With NTLM as the only scheme the handshake starts at once (as curl does),
                // saving the round trip that would only fetch the challenge.
                let ntlm_first = rounds == 0
                    && authorization.is_none()
                    && !headers.contains_key(header::AUTHORIZATION)
                    && body.is_replayable()
                    && matches!(&hop_auth.creds, Some((_, s)) if *s == SchemeSet::NTLM);
                let proxy_ntlm_first = rounds == 0
                    && forward
                    && proxy_authorization.is_none()
                    && body.is_replayable()
                    && matches!(&hop_auth.proxy_creds, Some((_, s)) if *s == SchemeSet::NTLM);
                let resp = match (&hop_auth.creds, &hop_auth.proxy_creds) {
                    (_, Some((pcreds, _))) if proxy_ntlm_first => {
                        rounds += 1;
                        tried_proxy_ntlm = true;
                        self.ntlm_exchange(
                            &hop,
                            pcreds,
                            true,
                            &mut body,
                            tls_id,
                            &tls_config,
                            &mut connects,
                        )?
                    }
                    (Some((creds, _)), _) if ntlm_first => {
                        rounds += 1;
                        tried_ntlm = true;
                        self.ntlm_exchange(
                            &hop,
                            creds,
                            false,
                            &mut body,
                            tls_id,
                            &tls_config,
                            &mut connects,
                        )?
                    }
                    _ => self.exchange(&hop, &mut body, tls_id, &tls_config, &mut connects)?,
                };
                let resp = if forward
                    && resp.status() == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED
                    && rounds < auth::MAX_AUTH_ROUNDS
                    && body.is_replayable()
                {
                    // A forward proxy's challenge: answered with Proxy-Authorization, to it only.
                    let (Some(pc), ferry_proxy::Route::Forward(p)) =
                        (&hop_auth.proxy_creds, &route)
                    else {
                        break resp;
                    };
                    let sent = match &proxy_authorization {
                        Some(a) => auth::scheme_of(a),
                        None if tried_proxy_ntlm => Some(ferry_auth::Scheme::Ntlm),
                        None => None,
                    };
                    let target = tunnel::challenged_proxy(
                        p,
                        pc,
                        hop_auth.proxy_ambient,
                        hop_auth.identity,
                        &sh.proxy_policy,
                    );
                    let answer = auth::answer_challenge(
                        &target,
                        resp.headers(),
                        sent,
                        url.as_str(),
                        method.as_str(),
                        replay_bytes(&body),
                        &sh.auth_policy,
                        &sh.digests,
                    )?;
                    rounds += 1;
                    match answer {
                        auth::Answer::GiveUp => break resp,
                        auth::Answer::Retry(v) => {
                            drop(resp);
                            proxy_authorization = Some(v);
                            continue;
                        }
                        auth::Answer::Ntlm => {
                            drop(resp);
                            tried_proxy_ntlm = true;
                            let r = self.ntlm_exchange(
                                &hop,
                                &pc.0,
                                true,
                                &mut body,
                                tls_id,
                                &tls_config,
                                &mut connects,
                            )?;
                            // The connection is now the proxy identity's; the origin may still
                            // challenge, below.
                            r
                        }
                    }
                } else {
                    resp
                };
                if resp.status() != http::StatusCode::UNAUTHORIZED
                    || rounds >= auth::MAX_AUTH_ROUNDS
                    || headers.contains_key(header::AUTHORIZATION)
                {
                    break resp;
                }
                let sent = match &authorization {
                    Some(a) => auth::scheme_of(a),
                    None if tried_ntlm => Some(ferry_auth::Scheme::Ntlm),
                    None => None,
                };
                let answer = auth::answer(
                    &hop_auth,
                    resp.headers(),
                    sent,
                    &url,
                    method.as_str(),
                    replay_bytes(&body),
                    &sh.auth_policy,
                    &sh.digests,
                )?;
                rounds += 1;
                match answer {
                    auth::Answer::GiveUp => break resp,
                    _ if !body.is_replayable() => break resp,
                    auth::Answer::Retry(v) => {
                        drop(resp);
                        authorization = Some(v);
                    }
                    // answer() offers NTLM only when the hop has credentials.
                    auth::Answer::Ntlm => {
                        let Some((creds, _)) = &hop_auth.creds else {
                            break resp;
                        };
                        drop(resp);
                        break self.ntlm_exchange(
                            &hop,
                            creds,
                            false,
                            &mut body,
                            tls_id,
                            &tls_config,
                            &mut connects,
                        )?;
                    }
                }
            };
            resp.redirects = redirects;
            resp.connects = connects;
            let Some(rewrite) = redirect::rewrite_for(resp.status(), &method) else {
                return Ok(resp);
            };
            if policy == RedirectPolicy::Never {
                return Ok(resp);
            }
            // An empty Location (nginx's `return 302;` sends one) is no target: resolving it
            // would redirect to the same URL until the hop limit. curl ignores it too.
            let Some(location) = resp
                .headers()
                .get(header::LOCATION)
                .filter(|v| !v.as_bytes().trim_ascii().is_empty())
            else {
                return Ok(resp);
            };
            let next =
                redirect::resolve_location(&url, location.as_bytes()).ok_or(Error::BadLocation)?;
            if !matches!(next.scheme(), "http" | "https") {
                sh.emit(&Event::RedirectRefused {
                    to: &next,
                    why: "unsupported scheme",
                });
                return Ok(resp);
            }
            if policy == RedirectPolicy::NoHttpsToHttp
                && url.scheme() == "https"
                && next.scheme() == "http"
            {
                sh.emit(&Event::RedirectRefused {
                    to: &next,
                    why: "https to http not allowed",
                });
                return Ok(resp);
            }
            if redirects >= max_redirects {
                return Err(Error::TooManyRedirects { max: max_redirects });
            }
            match rewrite {
                Rewrite::ToGet => {
                    if method != Method::HEAD {
                        method = Method::GET;
                    }
                    body = Body::Empty;
                    redirect::strip_body_headers(&mut headers);
                }
                Rewrite::Keep if !body.is_replayable() => return Err(Error::BodyNotReplayable),
                Rewrite::Keep => {}
            }
            if !redirect::same_origin(&url, &next) {
                redirect::strip_cross_origin(&mut headers);
            }
            if left_origin.is_none()
                && !auth_req.location_trusted
                && auth::origin(&next) != given_for
            {
                left_origin = Some(AuthRequest {
                    creds: None,
                    bearer: None,
                    ..auth_req.clone()
                });
            }
            sh.emit(&Event::Redirect { to: &next });
            // Dropping the 3xx drains its (small) body so the connection can serve the next hop.
            drop(resp);
            url = next;
            redirects += 1;
        }
    }
}

/// The body's bytes when they can be hashed and sent again (Digest `auth-int`).
fn replay_bytes(body: &Body) -> Option<&[u8]> {
    match body {
        Body::Bytes(b) => Some(b.as_slice()),
        Body::Empty => Some(&[][..]),
        _ => None,
    }
}

pub(crate) fn parse_url(s: &str) -> Result<Url, Error> {
    // Refuse control bytes before the URL parser silently strips tabs and newlines (I6).
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(Error::Url(
            "control characters (CR, LF, NUL, tab) in the URL",
        ));
    }
    let url = Url::parse(s).map_err(|_| Error::Url("not a valid absolute URL"))?;
    check_url(&url)?;
    Ok(url)
}

fn check_url(url: &Url) -> Result<(), Error> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Url("only http and https are supported"));
    }
    match url.host_str() {
        None | Some("") => return Err(Error::Url("no host")),
        Some(_) => {}
    }
    if url.port_or_known_default() == Some(0) {
        return Err(Error::Url("port 0"));
    }
    Ok(())
}
