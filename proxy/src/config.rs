//! Proxy configuration and its sources.
use crate::bypass::BypassList;
use crate::error::ProxyError;
use ferry_auth::Credentials;

/// How the client talks to the proxy itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyScheme {
    /// Plain TCP to the proxy.
    Http,
    /// TLS to the proxy (then, for https origins, TLS inside the tunnel).
    Https,
}

/// One proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyEndpoint {
    /// Plain or TLS to the proxy.
    pub scheme: ProxyScheme,
    /// Host name or IP literal (IPv6 without brackets), lowercased.
    pub host: String,
    /// Port (default 1080 as curl, when the URL gives none; 443 for https proxies).
    pub port: u16,
    /// Credentials given in the proxy URL's userinfo (percent-decoded), if any.
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for ProxyEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}://{}:{}", self.scheme, self.host, self.port)?;
        if self.credentials.is_some() {
            f.write_str(" (with credentials)")?;
        }
        Ok(())
    }
}

/// Where a proxy setting came from, for explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySource {
    /// `-x/--proxy` or the API.
    Explicit,
    /// An environment variable (its name).
    Environment(&'static str),
    /// WinHTTP's per-scheme list (`http=host:port;https=host:port`).
    PerSchemeList,
}

/// The proxy configuration of a session or request.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// The proxy for `http://` URLs.
    pub http: Option<(ProxyEndpoint, ProxySource)>,
    /// The proxy for `https://` URLs.
    pub https: Option<(ProxyEndpoint, ProxySource)>,
    /// Hosts that go direct, and where the list came from (for explanations).
    pub bypass: BypassList,
    /// Why the environment was ignored, if it was (httpoxy: `REQUEST_METHOD` set).
    pub ignored_environment: Option<&'static str>,
}

impl ProxyConfig {
    /// No proxy.
    pub fn none() -> Self {
        ProxyConfig::default()
    }

    /// One proxy for every scheme (curl's `-x URL`): `[scheme://][user:pass@]host[:port]`;
    /// schemes `http` and `https`; anything else is [`ProxyError::UnsupportedScheme`].
    pub fn explicit(url: &str) -> Result<Self, ProxyError> {
        let _ = url;
        todo!()
    }

    /// WinHTTP's proxy list: `host:port` for every scheme, or per scheme
    /// `http=host:port;https=host:port` (`;` or whitespace separated).
    pub fn per_scheme_list(list: &str) -> Result<Self, ProxyError> {
        let _ = list;
        todo!()
    }

    /// The environment, through `lookup` (the caller reads the real environment): `http_proxy`
    /// (lowercase only: `HTTP_PROXY` can be set by a CGI client's `Proxy:` header),
    /// `HTTPS_PROXY`/`https_proxy`, `ALL_PROXY`/`all_proxy` for schemes without their own, and
    /// `NO_PROXY`/`no_proxy` (lowercase wins when both are set, as curl). When `REQUEST_METHOD`
    /// is set, no proxy variable is used (httpoxy) and `ignored_environment` says why.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ProxyError> {
        let _ = lookup;
        todo!()
    }

    /// Replaces the bypass list (`--noproxy` overrides the environment's).
    pub fn with_bypass(mut self, bypass: BypassList) -> Self {
        self.bypass = bypass;
        self
    }
}
