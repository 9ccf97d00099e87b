//! The proxy security policy and its explanation (`ferry proxy explain`).
//!
//! The first line is what a PAC script would return: `DIRECT`, `PROXY host:port` for a plain
//! proxy or `HTTPS host:port` for a TLS proxy. Each further line is one decision, in this order:
//! 1. where the proxy comes from, or why there is none (httpoxy, nothing configured);
//! 2. the bypass rule that matched the host, or that none did;
//! 3. the route: direct, forwarded in absolute form, or a CONNECT tunnel;
//! 4. proxy credentials: where `Proxy-Authorization` goes (I3), and whether Basic may cross the
//!    connection to the proxy (`basic_over_cleartext_proxy`);
//! 5. server credentials: only to the origin (I2), never on CONNECT;
//! 6. ambient credentials: the autologon level's verdict for the proxy and the origin (I4);
//! 7. for tunnels: the origin's `Authorization` and custom headers never go on CONNECT.
use crate::config::{ProxyConfig, ProxyScheme};
use crate::route::{choose_route, route_host, target_authority, Route};
use ferry_auth::policy::ambient_allowed;
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
    let url = input.url;
    let config = input.config;
    let decision = choose_route(url, config, input.force_tunnel);
    let host = route_host(url).unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(0);
    let origin = format!("{}://{}", url.scheme(), target_authority(&host, port));
    let scheme = url.scheme();
    let configured = match scheme {
        "http" => config.http.as_ref(),
        "https" => config.https.as_ref(),
        _ => None,
    };
    let bypass = config.bypass.matches(&host);

    let mut lines = vec![match decision.route.proxy() {
        None => "DIRECT".to_owned(),
        Some(p) if p.scheme == ProxyScheme::Https => format!("HTTPS {}", p.authority()),
        Some(p) => format!("PROXY {}", p.authority()),
    }];

    // 1. The source.
    if let Some(why) = config.ignored_environment {
        lines.push(why.to_owned());
    }
    match configured {
        Some((p, source)) => lines.push(format!(
            "proxy {} chosen for {scheme} URLs from {}",
            p.url(),
            source.describe()
        )),
        None if scheme == "http" || scheme == "https" => {
            lines.push(format!("no proxy configured for {scheme}: direct"))
        }
        None => lines.push(format!("{scheme} URLs are never proxied: direct")),
    }
    // 2. The bypass list.
    match (bypass, config.bypass.source()) {
        (Some((rule, list)), _) => lines.push(format!(
            "{list} rule \"{rule}\" matched host \"{host}\"{}",
            if configured.is_some() { ": direct" } else { "" }
        )),
        (None, Some(list)) => lines.push(format!(
            "no bypass rule matched host \"{host}\" (list from {list})"
        )),
        (None, None) => lines.push(format!(
            "no bypass rule matched host \"{host}\" (there is no bypass list)"
        )),
    }
    // 3. The route.
    let proxy = decision.route.proxy();
    let to_proxy = |p: &crate::ProxyEndpoint| match p.scheme {
        ProxyScheme::Https => format!("TLS to proxy {}", p.authority()),
        ProxyScheme::Http => format!("plain TCP to proxy {}", p.authority()),
    };
    lines.push(match &decision.route {
        Route::Direct => format!("route: direct connection to {origin}"),
        Route::Forward(p) => format!(
            "route: forward: {}, then the request in absolute form ({url})",
            to_proxy(p)
        ),
        Route::Tunnel(p) => format!(
            "route: CONNECT tunnel: {}, then CONNECT {}{}",
            to_proxy(p),
            target_authority(&host, port),
            if scheme == "https" {
                ", then TLS to the origin inside the tunnel"
            } else {
                ", then plain HTTP inside the tunnel (--proxytunnel)"
            }
        ),
    });
    // 4. Proxy credentials.
    let proxy_credentials =
        input.proxy_credentials || configured.is_some_and(|(p, _)| p.credentials.is_some());
    match (proxy, proxy_credentials) {
        (Some(p), true) => {
            lines.push(format!(
                "Proxy-Authorization is sent only to proxy {} (never to the origin, never \
                 inside the tunnel)",
                p.url()
            ));
            lines.push(if !input.proxy_basic_allowed {
                "Basic is not among the schemes allowed for the proxy credentials".to_owned()
            } else if p.is_tls() {
                "Basic may be used to the proxy: the connection to the proxy is TLS".to_owned()
            } else if input.policy.basic_over_cleartext_proxy {
                "Basic may be used to the proxy over this cleartext connection \
                 (basic_over_cleartext_proxy = true): anyone on the path can read it"
                    .to_owned()
            } else {
                "Basic to the proxy over this cleartext connection is refused by the strict \
                 policy (basic_over_cleartext_proxy = false)"
                    .to_owned()
            });
        }
        (None, true) => lines.push(
            "proxy credentials are not used: the request does not go through a proxy, so no \
             Proxy-Authorization is sent"
                .to_owned(),
        ),
        (_, false) => lines.push("no proxy credentials are given".to_owned()),
    }
    // 5. Server credentials.
    if input.server_credentials {
        lines.push(match &decision.route {
            Route::Tunnel(_) => {
                format!("server credentials (-u) go only to origin {origin}, never on CONNECT")
            }
            Route::Forward(p) => format!(
                "server credentials (-u) go only to origin {origin}, carried through proxy {} \
                 in the forwarded request",
                p.authority()
            ),
            Route::Direct => format!("server credentials (-u) go only to origin {origin}"),
        });
    }
    // 6. Ambient credentials.
    if input.ambient_credentials {
        if let Some(p) = proxy {
            let (ok, why) = ambient_allowed(input.autologon, &p.host, false, true);
            lines.push(format!(
                "ambient credentials to proxy {}: {}: {why}",
                p.authority(),
                if ok { "allowed" } else { "refused" }
            ));
        }
        let (ok, why) = ambient_allowed(input.autologon, &host, bypass.is_some(), false);
        lines.push(format!(
            "ambient credentials to origin {origin}: {}: {why}",
            if ok { "allowed" } else { "refused" }
        ));
    } else {
        lines.push("no ambient (default) credentials are configured".to_owned());
    }
    // 7. CONNECT carries nothing of the origin's.
    if let Route::Tunnel(_) = decision.route {
        lines.push("the origin's Authorization and custom headers never go on CONNECT".to_owned());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bypass::{BypassList, NoProxy};
    use url::Url;

    fn input<'a>(url: &'a Url, config: &'a ProxyConfig) -> ExplainInput<'a> {
        ExplainInput {
            url,
            config,
            force_tunnel: false,
            policy: ProxyPolicy::default(),
            autologon: AutologonLevel::Medium,
            proxy_credentials: false,
            proxy_basic_allowed: true,
            server_credentials: false,
            ambient_credentials: false,
        }
    }

    fn has(lines: &[String], needle: &str) -> bool {
        lines.iter().skip(1).any(|l| l.contains(needle))
    }

    #[track_caller]
    fn assert_has(lines: &[String], needle: &str) {
        assert!(has(lines, needle), "{needle:?} not in {lines:#?}");
    }

    #[test]
    fn direct_without_proxy() {
        let url = Url::parse("https://example.com/").unwrap();
        let config = ProxyConfig::none();
        let lines = explain(&input(&url, &config));
        assert_eq!(lines[0], "DIRECT");
        assert_has(&lines, "no proxy configured for https: direct");
        assert_has(&lines, "no bypass rule matched host \"example.com\"");
        assert_has(
            &lines,
            "route: direct connection to https://example.com:443",
        );
        assert!(!has(&lines, "CONNECT"));
    }

    #[test]
    fn tunnel_through_plain_proxy_with_credentials() {
        let url = Url::parse("https://h.example/").unwrap();
        let config = ProxyConfig::explicit("http://u:secret@proxy.corp:3128").unwrap();
        let mut i = input(&url, &config);
        i.server_credentials = true;
        i.ambient_credentials = true;
        let lines = explain(&i);
        assert_eq!(lines[0], "PROXY proxy.corp:3128");
        assert_has(
            &lines,
            "proxy http://proxy.corp:3128 chosen for https URLs from the explicit proxy setting",
        );
        assert_has(&lines, "CONNECT tunnel: plain TCP to proxy proxy.corp:3128");
        assert_has(
            &lines,
            "Proxy-Authorization is sent only to proxy http://proxy.corp:3128 (never to the \
             origin, never inside the tunnel)",
        );
        assert_has(&lines, "(basic_over_cleartext_proxy = true)");
        assert_has(
            &lines,
            "server credentials (-u) go only to origin https://h.example:443, never on CONNECT",
        );
        assert_has(
            &lines,
            "ambient credentials to proxy proxy.corp:3128: refused: ",
        );
        assert_has(
            &lines,
            "ambient credentials to origin https://h.example:443: refused: ",
        );
        assert_has(
            &lines,
            "the origin's Authorization and custom headers never go on CONNECT",
        );
        assert!(lines.iter().all(|l| !l.contains("secret")));

        i.policy = ProxyPolicy::STRICT;
        let lines = explain(&i);
        assert_has(&lines, "refused by the strict policy");
        i.proxy_basic_allowed = false;
        let lines = explain(&i);
        assert_has(&lines, "Basic is not among the schemes allowed");
    }

    #[test]
    fn tls_proxy_forward() {
        let url = Url::parse("http://h.example:8080/a?b").unwrap();
        let config = ProxyConfig::from_env(|k| {
            (k == "all_proxy").then(|| "https://tls-proxy.example".to_owned())
        })
        .unwrap();
        let mut i = input(&url, &config);
        i.proxy_credentials = true;
        i.policy = ProxyPolicy::STRICT;
        i.server_credentials = true;
        let lines = explain(&i);
        assert_eq!(lines[0], "HTTPS tls-proxy.example:443");
        assert_has(&lines, "chosen for http URLs from all_proxy");
        assert_has(&lines, "route: forward: TLS to proxy tls-proxy.example:443");
        assert_has(&lines, "absolute form (http://h.example:8080/a?b)");
        assert_has(
            &lines,
            "Basic may be used to the proxy: the connection to the proxy is TLS",
        );
        assert_has(&lines, "carried through proxy tls-proxy.example:443");
        assert!(!has(&lines, "never go on CONNECT"));

        i.force_tunnel = true;
        let lines = explain(&i);
        assert_eq!(lines[0], "HTTPS tls-proxy.example:443");
        assert_has(
            &lines,
            "CONNECT h.example:8080, then plain HTTP inside the tunnel",
        );
        assert_has(&lines, "never go on CONNECT");
    }

    #[test]
    fn bypassed_intranet_host_and_ambient() {
        let url = Url::parse("http://wiki.corp.example/").unwrap();
        let config = ProxyConfig::explicit("proxy:8080")
            .unwrap()
            .with_bypass(BypassList::Curl(
                NoProxy::parse("corp.example"),
                "--noproxy",
            ));
        let mut i = input(&url, &config);
        i.ambient_credentials = true;
        i.proxy_credentials = true;
        let lines = explain(&i);
        assert_eq!(lines[0], "DIRECT");
        assert_has(
            &lines,
            "--noproxy rule \"corp.example\" matched host \"wiki.corp.example\": direct",
        );
        assert_has(&lines, "no Proxy-Authorization is sent");
        assert_has(
            &lines,
            "ambient credentials to origin http://wiki.corp.example:80: allowed: Autologon level \
             medium: the host is on the proxy bypass list",
        );
        assert!(!has(&lines, "ambient credentials to proxy"));

        // Not bypassed: the intranet proxy may get ambient credentials at medium, never at high.
        let url = Url::parse("http://www.example/").unwrap();
        let mut i = input(&url, &config);
        i.ambient_credentials = true;
        let lines = explain(&i);
        assert_eq!(lines[0], "PROXY proxy:8080");
        assert_has(
            &lines,
            "no bypass rule matched host \"www.example\" (list from --noproxy)",
        );
        assert_has(&lines, "ambient credentials to proxy proxy:8080: allowed: ");
        assert_has(
            &lines,
            "ambient credentials to origin http://www.example:80: refused: ",
        );
        i.autologon = AutologonLevel::High;
        let lines = explain(&i);
        assert_has(&lines, "ambient credentials to proxy proxy:8080: refused: ");
    }

    #[test]
    fn httpoxy_explained() {
        let url = Url::parse("http://example.com/").unwrap();
        let config = ProxyConfig::from_env(|k| match k {
            "REQUEST_METHOD" => Some("POST".into()),
            "http_proxy" | "HTTP_PROXY" => Some("http://attacker:80".into()),
            _ => None,
        })
        .unwrap();
        let lines = explain(&input(&url, &config));
        assert_eq!(lines[0], "DIRECT");
        assert_has(
            &lines,
            "REQUEST_METHOD is set (CGI): proxy variables ignored (httpoxy)",
        );
        assert_has(&lines, "no proxy configured for http: direct");
    }

    #[test]
    fn ipv6_proxy_and_origin() {
        let url = Url::parse("https://[2001:db8::2]:8443/").unwrap();
        let config = ProxyConfig::explicit("[::1]:3128").unwrap();
        let lines = explain(&input(&url, &config));
        assert_eq!(lines[0], "PROXY [::1]:3128");
        assert_has(
            &lines,
            "then CONNECT [2001:db8::2]:8443, then TLS to the origin",
        );
    }
}
