//! The route of a request: direct, forwarded through an HTTP proxy, or tunnelled with CONNECT.
//!
//! The rules, in the order [`choose_route`] applies them:
//! 1. Only `http` and `https` URLs are proxied (the proxy for `http` or for `https`); a URL
//!    without a host or with another scheme goes direct.
//! 2. No proxy configured for the scheme (including: the environment was ignored, httpoxy):
//!    direct.
//! 3. The host (lowercase, without IPv6 brackets, without a trailing dot) matches the bypass
//!    list: direct.
//! 4. `https`: a CONNECT tunnel to `host:port`. `http`: forwarded in absolute form, or a tunnel
//!    with `force_tunnel` (curl's `-p/--proxytunnel`).
use crate::config::{ProxyConfig, ProxyEndpoint};
use url::Url;

/// How a request reaches its origin.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Route {
    /// Straight to the origin.
    #[default]
    Direct,
    /// An `http://` URL sent to the proxy in absolute form.
    Forward(ProxyEndpoint),
    /// A CONNECT tunnel through the proxy (https, or http with `--proxytunnel`).
    Tunnel(ProxyEndpoint),
}

/// A route and the reasons for it, one sentence each.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The route.
    pub route: Route,
    /// Why: which source chose the proxy, which bypass rule matched.
    pub reasons: Vec<String>,
}

impl Route {
    /// The proxy this route goes through, if any.
    pub fn proxy(&self) -> Option<&ProxyEndpoint> {
        match self {
            Route::Direct => None,
            Route::Forward(p) | Route::Tunnel(p) => Some(p),
        }
    }
}

/// The host of `url` as bypass lists and explanations see it: lowercase, IPv6 without
/// brackets, no trailing dot. `None` for URLs without a host.
pub fn route_host(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    Some(host.to_ascii_lowercase())
}

/// `host:port` of `url`'s origin (IPv6 in brackets), for CONNECT and explanations.
pub(crate) fn target_authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Chooses the route for `url`. `force_tunnel` is curl's `-p/--proxytunnel` (tunnel http
/// URLs too).
pub fn choose_route(url: &Url, config: &ProxyConfig, force_tunnel: bool) -> Decision {
    let mut reasons = Vec::new();
    if let Some(why) = config.ignored_environment {
        reasons.push(why.to_owned());
    }
    let direct = |mut reasons: Vec<String>, why: String| {
        reasons.push(why);
        Decision {
            route: Route::Direct,
            reasons,
        }
    };
    // Rule 1.
    let scheme = url.scheme();
    let chosen = match scheme {
        "http" => &config.http,
        "https" => &config.https,
        other => return direct(reasons, format!("{other} URLs are never proxied: direct")),
    };
    let Some(host) = route_host(url) else {
        return direct(reasons, "the URL has no host: direct".to_owned());
    };
    // Rule 2.
    let Some((proxy, source)) = chosen else {
        return direct(reasons, format!("no proxy configured for {scheme}: direct"));
    };
    // Rule 3.
    if let Some((rule, list)) = config.bypass.matches(&host) {
        return direct(
            reasons,
            format!("{list} rule \"{rule}\" matched host \"{host}\": direct"),
        );
    }
    reasons.push(format!(
        "proxy {} chosen from {}",
        proxy.url(),
        source.describe()
    ));
    // Rule 4.
    let port = url.port_or_known_default().unwrap_or(0);
    let route = if scheme == "https" || force_tunnel {
        let why = if scheme == "https" {
            "https URL"
        } else {
            "--proxytunnel"
        };
        reasons.push(format!(
            "{why}: CONNECT tunnel to {} through the proxy",
            target_authority(&host, port)
        ));
        Route::Tunnel(proxy.clone())
    } else {
        reasons.push("http URL: forwarded to the proxy in absolute form".to_owned());
        Route::Forward(proxy.clone())
    };
    Decision { route, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bypass::{BypassList, NoProxy};

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> ProxyConfig {
        ProxyConfig::from_env(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    #[test]
    fn http_forward_https_tunnel() {
        let c = env(&[("http_proxy", "http://p:3128")]);
        let d = choose_route(&url("http://a.example/x"), &c, false);
        assert!(matches!(d.route, Route::Forward(ref p) if p.host == "p" && p.port == 3128));
        assert_eq!(d.reasons[0], "proxy http://p:3128 chosen from http_proxy");
        let d = choose_route(&url("http://a.example/x"), &c, true);
        assert!(matches!(d.route, Route::Tunnel(_)));
        assert_eq!(
            d.reasons[1],
            "--proxytunnel: CONNECT tunnel to a.example:80 through the proxy"
        );
        let d = choose_route(&url("https://a.example/x"), &c, false);
        assert_eq!(d.route, Route::Direct);
        assert_eq!(d.reasons, ["no proxy configured for https: direct"]);

        let c = env(&[("https_proxy", "https://tls.proxy")]);
        let d = choose_route(&url("https://[::1]:8443/"), &c, false);
        assert!(matches!(d.route, Route::Tunnel(ref p) if p.port == 443 && p.is_tls()));
        assert_eq!(
            d.reasons,
            [
                "proxy https://tls.proxy:443 chosen from https_proxy",
                "https URL: CONNECT tunnel to [::1]:8443 through the proxy"
            ]
        );
    }

    #[test]
    fn bypass_goes_direct() {
        let c = ProxyConfig::explicit("p:3128")
            .unwrap()
            .with_bypass(BypassList::Curl(NoProxy::parse(".example.com"), "no_proxy"));
        let d = choose_route(&url("https://A.Example.COM./"), &c, false);
        assert_eq!(d.route, Route::Direct);
        assert_eq!(
            d.reasons,
            ["no_proxy rule \".example.com\" matched host \"a.example.com\": direct"]
        );
        let d = choose_route(&url("https://ample.com/"), &c, false);
        assert!(matches!(d.route, Route::Tunnel(_)));
        assert_eq!(
            d.reasons[0],
            "proxy http://p:3128 chosen from the explicit proxy setting (-x/--proxy)"
        );
        let c = c.with_bypass(BypassList::Curl(NoProxy::parse("::1"), "--noproxy"));
        let d = choose_route(&url("http://[::1]:8080/"), &c, false);
        assert_eq!(d.route, Route::Direct);
    }

    #[test]
    fn httpoxy_and_other_schemes() {
        let c = env(&[
            ("REQUEST_METHOD", "GET"),
            ("http_proxy", "http://attacker"),
            ("HTTP_PROXY", "http://attacker"),
        ]);
        let d = choose_route(&url("http://a.example/"), &c, false);
        assert_eq!(d.route, Route::Direct);
        assert_eq!(
            d.reasons,
            [
                "REQUEST_METHOD is set (CGI): proxy variables ignored (httpoxy)",
                "no proxy configured for http: direct"
            ]
        );
        let c = ProxyConfig::explicit("p").unwrap();
        let d = choose_route(&url("ftp://a.example/"), &c, false);
        assert_eq!(d.route, Route::Direct);
        assert_eq!(d.reasons, ["ftp URLs are never proxied: direct"]);
    }

    #[test]
    fn route_hosts() {
        assert_eq!(route_host(&url("http://[::1]/")).as_deref(), Some("::1"));
        assert_eq!(
            route_host(&url("http://EX.com./")).as_deref(),
            Some("ex.com")
        );
        assert_eq!(route_host(&url("data:text/plain,x")), None);
    }
}
