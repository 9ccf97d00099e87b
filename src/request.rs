//! The request builder: method, URL, headers, body, and per-request overrides.
use crate::auth::AuthRequest;
use crate::body::Body;
use crate::error::Error;
use crate::redirect::RedirectPolicy;
use crate::response::Response;
use crate::session::Session;
use ferry_auth::{Credentials, SchemeSet, Secret};
use ferry_http::io::TlsSettings;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::io::Read;
use std::time::Duration;
use url::Url;

/// A request being built on a [`Session`]; [`RequestBuilder::send`] runs it.
#[derive(Debug)]
pub struct RequestBuilder {
    pub(crate) session: Session,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) options: RequestOptions,
    /// The first invalid header given, reported at `send` (builders do not fail midway).
    pub(crate) invalid: Option<Error>,
}

/// Settings a request may override from its session.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestOptions {
    pub(crate) total_timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) redirect_policy: Option<RedirectPolicy>,
    pub(crate) max_redirects: Option<u32>,
    pub(crate) tls: Option<TlsSettings>,
    /// Default headers (`User-Agent`, `Accept`) not to send.
    pub(crate) suppressed: Vec<HeaderName>,
    /// This request's credentials, replacing the session's.
    pub(crate) auth: Option<AuthRequest>,
    /// This request's proxy configuration, replacing the session's.
    pub(crate) proxy: Option<ferry_proxy::ProxyConfig>,
    /// This request's proxy credentials (`Some(None)`: none, whatever the session has).
    pub(crate) proxy_auth: Option<Option<(Credentials, SchemeSet)>>,
    /// Tunnel `http://` URLs too.
    pub(crate) force_tunnel: Option<bool>,
}

impl RequestBuilder {
    /// Adds a header (after earlier ones of the same name). Invalid names or values (for example
    /// with CR, LF or NUL) make [`RequestBuilder::send`] fail before anything is sent.
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        match (name.try_into(), value.try_into()) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            (Err(_), _) => {
                self.invalid
                    .get_or_insert(Error::Http(ferry_http::Error::Local(
                        ferry_http::proto::Misuse::BadHeaderName,
                    )));
            }
            (_, Err(_)) => {
                self.invalid
                    .get_or_insert(Error::Http(ferry_http::Error::Local(
                        ferry_http::proto::Misuse::BadHeaderValue,
                    )));
            }
        }
        self
    }

    /// Credentials for this request (replacing the session's), answering challenges with
    /// `schemes`; Basic alone is sent preemptively (curl's `-u`). They go only to the origin of
    /// this request's URL unless [`RequestBuilder::location_trusted`].
    pub fn credentials(mut self, creds: Credentials, schemes: SchemeSet) -> Self {
        self.auth_mut().creds = Some((creds, schemes));
        self
    }

    /// Basic credentials, sent preemptively.
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        self.credentials(Credentials::new(user, password), SchemeSet::BASIC)
    }

    /// A bearer token (RFC 6750), sent preemptively to this request's origin.
    pub fn bearer_auth(mut self, token: impl Into<String>) -> Self {
        self.auth_mut().bearer = Some(Secret::new(token));
        self
    }

    /// Lets this request's credentials follow redirects to other origins.
    pub fn location_trusted(mut self, yes: bool) -> Self {
        self.auth_mut().location_trusted = yes;
        self
    }

    /// An isolation tag for this request: requests with different tags never share a
    /// connection.
    pub fn isolation_tag(mut self, tag: impl Into<String>) -> Self {
        self.auth_mut().isolation_tag = Some(tag.into());
        self
    }

    /// The proxy configuration for this request, replacing the session's.
    pub fn proxy(mut self, config: ferry_proxy::ProxyConfig) -> Self {
        self.options.proxy = Some(config);
        self
    }

    /// Proxy credentials for this request (replacing the session's).
    pub fn proxy_credentials(mut self, creds: Credentials, schemes: SchemeSet) -> Self {
        self.options.proxy_auth = Some(Some((creds, schemes)));
        self
    }

    /// Tunnel this request through the proxy with CONNECT even for an `http://` URL.
    pub fn proxy_tunnel(mut self, yes: bool) -> Self {
        self.options.force_tunnel = Some(yes);
        self
    }

    fn auth_mut(&mut self) -> &mut AuthRequest {
        let session_default = &self.session.shared().default_auth;
        self.options
            .auth
            .get_or_insert_with(|| session_default.clone())
    }

    /// Sends no header called `name`: removes any added so far and suppresses the session's
    /// default (`User-Agent`, `Accept`), as curl's `-H 'Name:'` does.
    pub fn without_header(mut self, name: HeaderName) -> Self {
        self.headers.remove(&name);
        self.options.suppressed.push(name);
        self
    }

    /// Replaces all headers.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends `len` bytes read from `reader` with `Content-Length`.
    pub fn body_reader(mut self, reader: impl Read + Send + 'static, len: u64) -> Self {
        self.body = Body::Reader {
            reader: Box::new(reader),
            len,
        };
        self
    }

    /// Sends everything `reader` yields with `Transfer-Encoding: chunked`.
    pub fn body_chunked(mut self, reader: impl Read + Send + 'static) -> Self {
        self.body = Body::Chunked(Box::new(reader));
        self
    }

    /// A total deadline for this request, redirects included (curl's `--max-time`).
    pub fn timeout(mut self, total: Duration) -> Self {
        self.options.total_timeout = Some(total);
        self
    }

    /// The connect timeout for this request.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.options.connect_timeout = Some(t);
        self
    }

    /// The redirect policy for this request.
    pub fn redirect_policy(mut self, p: RedirectPolicy) -> Self {
        self.options.redirect_policy = Some(p);
        self
    }

    /// The redirect limit for this request.
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.options.max_redirects = Some(n);
        self
    }

    /// TLS settings for this request (a connection made under other settings is never reused
    /// for it).
    pub fn tls(mut self, tls: TlsSettings) -> Self {
        self.options.tls = Some(tls);
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends the request and returns the response once its head has arrived.
    pub fn send(self) -> Result<Response, Error> {
        let session = self.session.clone();
        session.execute(self)
    }
}
