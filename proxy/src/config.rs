//! Proxy configuration and its sources.
//!
//! # Formats
//! - One proxy ([`ProxyEndpoint::parse`], curl's `-x`, the environment's values):
//!   `[scheme://][user:password@]host[:port][/anything]`. The scheme is `http` (the default) or
//!   `https` (TLS to the proxy); `socks4`, `socks5h` and every other scheme are
//!   [`ProxyError::UnsupportedScheme`]. The port defaults to 1080 for a plain proxy, as curl's
//!   does, and to 443 for an https proxy. IPv6 hosts are bracketed (`[::1]:3128`). The user
//!   information is percent-decoded and split at its first `:`; `DOMAIN%5Cuser` (or a raw
//!   `DOMAIN\user`) gives an NTLM domain. The userinfo ends at the authority's last `@`, so an
//!   unencoded `@` in a password still works. A path, query or fragment is ignored, as curl
//!   does. Errors never show the user information: everything before the last `@` is `***`.
//! - WinHTTP's list ([`ProxyConfig::per_scheme_list`]): items separated by `;` or whitespace;
//!   `host:port` (or a proxy URL) for every scheme, `http=…` and `https=…` for one scheme (the
//!   value may be a proxy URL, `https=https://p` being a TLS proxy). A scheme's own item wins
//!   over a general one, and the first of each kind wins. Other keys (`ftp=`, `socks=`) are
//!   ignored. The port defaults to 80, as WinHTTP's does (443 for an `https://` proxy URL).
//! - The environment ([`ProxyConfig::from_env`]): see there.
use crate::bypass::{BypassList, NoProxy};
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

/// curl's default proxy port, used when a proxy URL gives none (`-x`, the environment).
pub const CURL_DEFAULT_PORT: u16 = 1080;
/// WinHTTP's default proxy port, used by [`ProxyConfig::per_scheme_list`].
pub const WINHTTP_DEFAULT_PORT: u16 = 80;
/// The default port of an `https://` (TLS) proxy, whatever the source.
pub const HTTPS_PROXY_DEFAULT_PORT: u16 = 443;
/// Why the environment's proxies are ignored in a CGI context (httpoxy, CVE-2016-5385 and
/// friends: a client's `Proxy:` request header becomes the CGI variable `HTTP_PROXY`).
pub const HTTPOXY_REASON: &str = "REQUEST_METHOD is set (CGI): proxy variables ignored (httpoxy)";

impl ProxyEndpoint {
    /// Parses one proxy, `[scheme://][user:password@]host[:port]`, with curl's default port
    /// (1080 for a plain proxy, 443 for an https proxy).
    pub fn parse(s: &str) -> Result<Self, ProxyError> {
        parse_endpoint(s, CURL_DEFAULT_PORT)
    }

    /// `host:port`, with an IPv6 host in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The proxy as a URL without credentials: `http://host:port` or `https://host:port`.
    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            ProxyScheme::Http => "http",
            ProxyScheme::Https => "https",
        };
        format!("{scheme}://{}", self.authority())
    }

    /// Whether the connection to the proxy itself is TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == ProxyScheme::Https
    }
}

impl ProxySource {
    /// How an explanation names the source: the variable's name, `--proxy`, or the list.
    pub fn describe(&self) -> &'static str {
        match self {
            ProxySource::Explicit => "the explicit proxy setting (-x/--proxy)",
            ProxySource::Environment(name) => name,
            ProxySource::PerSchemeList => "the per-scheme proxy list",
        }
    }
}

impl ProxyConfig {
    /// No proxy.
    pub fn none() -> Self {
        ProxyConfig::default()
    }

    /// One proxy for every scheme (curl's `-x URL`): `[scheme://][user:pass@]host[:port]`;
    /// schemes `http` and `https`; anything else is [`ProxyError::UnsupportedScheme`].
    pub fn explicit(url: &str) -> Result<Self, ProxyError> {
        let endpoint = ProxyEndpoint::parse(url)?;
        Ok(ProxyConfig {
            http: Some((endpoint.clone(), ProxySource::Explicit)),
            https: Some((endpoint, ProxySource::Explicit)),
            ..ProxyConfig::default()
        })
    }

    /// WinHTTP's proxy list: `host:port` for every scheme, or per scheme
    /// `http=host:port;https=host:port` (`;` or whitespace separated).
    pub fn per_scheme_list(list: &str) -> Result<Self, ProxyError> {
        let (mut all, mut http, mut https) = (None, None, None);
        let mut items = 0;
        for item in list
            .split(|c: char| c == ';' || c.is_whitespace())
            .filter(|i| !i.is_empty())
        {
            items += 1;
            // `key=value` only when the key is a bare word: a proxy URL's password may hold `=`.
            let keyed = item
                .split_once('=')
                .filter(|(k, _)| k.bytes().all(|b| b.is_ascii_alphanumeric()));
            let (slot, value) = match keyed {
                Some((k, v)) if k.is_empty() || v.is_empty() => {
                    return Err(ProxyError::BadProxy {
                        given: redact(item),
                        why:
                            "a per-scheme entry needs both a scheme and a proxy (scheme=host:port)",
                    })
                }
                Some((k, v)) if k.eq_ignore_ascii_case("http") => (&mut http, v),
                Some((k, v)) if k.eq_ignore_ascii_case("https") => (&mut https, v),
                Some(_) => continue, // ftp=, socks=, …: not ours.
                None => (&mut all, item),
            };
            if slot.is_none() {
                *slot = Some(parse_endpoint(value, WINHTTP_DEFAULT_PORT)?);
            }
        }
        if items == 0 {
            return Err(ProxyError::BadProxy {
                given: String::new(),
                why: "the proxy list is empty",
            });
        }
        let with_source = |e: ProxyEndpoint| (e, ProxySource::PerSchemeList);
        Ok(ProxyConfig {
            http: http.or_else(|| all.clone()).map(with_source),
            https: https.or(all).map(with_source),
            ..ProxyConfig::default()
        })
    }

    /// The environment, through `lookup` (the caller reads the real environment): `http_proxy`
    /// (lowercase only: `HTTP_PROXY` can be set by a CGI client's `Proxy:` header),
    /// `HTTPS_PROXY`/`https_proxy`, `ALL_PROXY`/`all_proxy` for schemes without their own, and
    /// `NO_PROXY`/`no_proxy` (lowercase wins when both are set, as curl). When `REQUEST_METHOD`
    /// is set, no proxy variable is used (httpoxy) and `ignored_environment` says why.
    ///
    /// Empty (or blank) values count as unset, except `REQUEST_METHOD`, which counts as set
    /// whatever its value. The bypass list is still read in a CGI context: it can only make
    /// requests go direct, and there is no proxy to bypass anyway.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ProxyError> {
        let get = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (v, name))
        };
        let bypass = match get("no_proxy").or_else(|| get("NO_PROXY")) {
            Some((v, name)) => BypassList::Curl(NoProxy::parse(&v), name),
            None => BypassList::None,
        };
        if lookup("REQUEST_METHOD").is_some() {
            return Ok(ProxyConfig {
                bypass,
                ignored_environment: Some(HTTPOXY_REASON),
                ..ProxyConfig::default()
            });
        }
        let read = |found: Option<(String, &'static str)>| {
            found
                .map(|(v, name)| {
                    ProxyEndpoint::parse(&v).map(|e| (e, ProxySource::Environment(name)))
                })
                .transpose()
        };
        let all = || get("all_proxy").or_else(|| get("ALL_PROXY"));
        // Never `HTTP_PROXY`: see the doc above.
        let http = read(get("http_proxy").or_else(all))?;
        let https = read(
            get("https_proxy")
                .or_else(|| get("HTTPS_PROXY"))
                .or_else(all),
        )?;
        Ok(ProxyConfig {
            http,
            https,
            bypass,
            ignored_environment: None,
        })
    }

    /// Replaces the bypass list (`--noproxy` overrides the environment's).
    pub fn with_bypass(mut self, bypass: BypassList) -> Self {
        self.bypass = bypass;
        self
    }
}

/// `s` with everything before its last `@` (the user information, and whatever else a
/// malformed URL put there) replaced by `***`, keeping a leading `scheme://`.
fn redact(s: &str) -> String {
    let Some(at) = s.rfind('@') else {
        return s.to_owned();
    };
    let start = match s.find("://") {
        Some(i) if i < at && is_scheme(&s[..i]) => i + 3,
        _ => 0,
    };
    format!("{}***{}", &s[..start], &s[at..])
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Percent-decodes `s` (a `%` not followed by two hex digits stays as is, as WHATWG URL does).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                // Two hex digits are at most 0xff.
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses one proxy; `plain_default` is the port of a plain proxy that gives none.
fn parse_endpoint(s: &str, plain_default: u16) -> Result<ProxyEndpoint, ProxyError> {
    let s = s.trim();
    let bad = |why: &'static str| ProxyError::BadProxy {
        given: redact(s),
        why,
    };
    if s.is_empty() {
        return Err(bad("no proxy given"));
    }
    if s.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(bad("blanks or control characters in a proxy URL"));
    }
    let (scheme, rest) = match s.find("://") {
        Some(i) if is_scheme(&s[..i]) => {
            let scheme = match s[..i].to_ascii_lowercase().as_str() {
                "http" => ProxyScheme::Http,
                "https" => ProxyScheme::Https,
                other => return Err(ProxyError::UnsupportedScheme(other.to_owned())),
            };
            (scheme, &s[i + 3..])
        }
        Some(0) => return Err(bad("empty proxy scheme")),
        _ => (ProxyScheme::Http, s),
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let credentials = match userinfo {
        Some(info) => {
            let (user, password) = info.split_once(':').unwrap_or((info, ""));
            let user = percent_decode(user).ok_or_else(|| bad("proxy user is not UTF-8"))?;
            let password =
                percent_decode(password).ok_or_else(|| bad("proxy password is not UTF-8"))?;
            // `http://@proxy` and `http://:@proxy` carry no credentials, as in curl.
            (!user.is_empty() || !password.is_empty()).then(|| Credentials::new(&user, password))
        }
        None => None,
    };
    let (host, port) = if hostport.starts_with('[') {
        let close = hostport
            .find(']')
            .ok_or_else(|| bad("unclosed '[' in the proxy's IPv6 address"))?;
        let port = match &hostport[close + 1..] {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("junk after the proxy's IPv6 address"))?,
            ),
        };
        (&hostport[..=close], port)
    } else {
        match hostport.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(bad("an IPv6 proxy address needs brackets ([::1]:3128)"))
            }
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no proxy host"));
    }
    let default = match scheme {
        ProxyScheme::Http => plain_default,
        ProxyScheme::Https => HTTPS_PROXY_DEFAULT_PORT,
    };
    let port = match port {
        None | Some("") => default,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(n) if n != 0 => n,
                _ => return Err(bad("proxy port out of range (1-65535)")),
            }
        }
        Some(_) => return Err(bad("proxy port is not a number")),
    };
    let host = match url::Host::parse(host) {
        Ok(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Ok(url::Host::Ipv4(a)) => a.to_string(),
        Ok(url::Host::Ipv6(a)) => a.to_string(),
        Err(_) => return Err(bad("bad proxy host name")),
    };
    Ok(ProxyEndpoint {
        scheme,
        host,
        port,
        credentials,
    })
}
