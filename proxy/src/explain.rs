//! The proxy security policy and its explanation (`ferry proxy explain`).
use crate::config::ProxyConfig;
use ferry_auth::AutologonLevel;
use url::Url;

/// Proxy security settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProxyPolicy {
    /// `basic_over_cleartext_proxy`: whether Basic proxy credentials may cross a plain-TCP
    /// connection to the proxy (anyone on the path can read them). Default `true`, as curl and
    /// WinHTTP; [`ProxyPolicy::STRICT`] refuses.
    pub basic_over_cleartext_proxy: bool,
}

impl Default for ProxyPolicy {
    fn default() -> Self {
        ProxyPolicy {
            basic_over_cleartext_proxy: true,
        }
    }
}

impl ProxyPolicy {
    /// Refuses Basic proxy credentials over a cleartext proxy connection.
    pub const STRICT: ProxyPolicy = ProxyPolicy {
        basic_over_cleartext_proxy: false,
    };
}

/// What `explain` needs besides the configuration.
#[derive(Debug, Clone)]
pub struct ExplainInput<'a> {
    /// The URL.
    pub url: &'a Url,
    /// The configuration in force.
    pub config: &'a ProxyConfig,
    /// `-p/--proxytunnel`.
    pub force_tunnel: bool,
    /// The proxy policy.
    pub policy: ProxyPolicy,
    /// The autologon level (ambient credentials).
    pub autologon: AutologonLevel,
    /// Whether proxy credentials were given (`--proxy-user` or the proxy URL).
    pub proxy_credentials: bool,
    /// Whether the Basic scheme is allowed for the proxy credentials.
    pub proxy_basic_allowed: bool,
    /// Whether server credentials were given (`-u`).
    pub server_credentials: bool,
    /// Whether ambient (default) credentials exist.
    pub ambient_credentials: bool,
}

/// The explanation: first a PAC-style line (`DIRECT`, `PROXY host:port` or `HTTPS host:port`),
/// then one line per decision: the source of the proxy, the bypass rule that matched (or that
/// none did), which credentials may be sent where, and why.
pub fn explain(input: &ExplainInput<'_>) -> Vec<String> {
    let _ = input;
    todo!()
}
