//! Table tests of the environment and the bypass list together, through the public API the CLI
//! uses: [`ProxyConfig::from_env`] with a lookup closure, `--noproxy` as
//! [`ProxyConfig::with_bypass`], then [`choose_route`] on a URL (which the URL parser has
//! normalised: lowercase, punycode, IPv4 number forms, compressed IPv6).
//!
//! `proxy/tests/bypass_table.rs` has the matcher alone (`NoProxy::matches` on raw host strings),
//! the proxy URL parser and the per-scheme list; these rows are about what a request does given
//! an environment: which variable wins, which bypass rule sends it direct, and what the
//! explanation says. Each row is one test.
//!
//! A row's expectation is one of:
//! - `"direct"`: no proxy for the scheme (or none at all);
//! - `"direct: SOURCE \"RULE\""`: a proxy exists, but RULE of the list from SOURCE matched;
//! - `"forward URL (SOURCE)"` / `"tunnel URL (SOURCE)"`: the route, the proxy, where it came from.

use ferry::Url;
use ferry_proxy::route::route_host;
use ferry_proxy::{
    choose_route, BypassList, NoProxy, ProxyConfig, ProxyEndpoint, ProxySource, Route,
};

/// The configuration from `vars`, with `--noproxy LIST` when `noproxy` is given.
fn config(vars: &[(&str, &str)], noproxy: Option<&str>) -> ProxyConfig {
    let owned: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let c =
        ProxyConfig::from_env(move |k| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .unwrap_or_else(|e| panic!("from_env({vars:?}): {e}"));
    match noproxy {
        Some(list) => c.with_bypass(BypassList::Curl(NoProxy::parse(list), "--noproxy")),
        None => c,
    }
}

fn source(s: &ProxySource) -> &'static str {
    match s {
        ProxySource::Environment(name) => name,
        ProxySource::Explicit => "explicit",
        ProxySource::PerSchemeList => "per-scheme list",
    }
}

/// The route of `url` under `vars` (and `--noproxy`, `-p`), as a row's expectation spells it,
/// after checking that the explanation agrees.
fn route(vars: &[(&str, &str)], noproxy: Option<&str>, tunnel: bool, url: &str) -> String {
    let c = config(vars, noproxy);
    let url = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let d = choose_route(&url, &c, tunnel);
    let configured = match url.scheme() {
        "http" => c.http.as_ref(),
        "https" => c.https.as_ref(),
        _ => None,
    };
    let via = |p: &ProxyEndpoint| {
        let (e, src) = configured.expect("a proxy route has a configured proxy");
        assert_eq!(e, p, "the route's proxy is the scheme's");
        assert!(
            d.reasons
                .iter()
                .any(|r| r == &format!("proxy {} chosen from {}", p.url(), src.describe())),
            "{:?}",
            d.reasons
        );
        format!("{} ({})", p.url(), source(src))
    };
    match &d.route {
        Route::Forward(p) => format!("forward {}", via(p)),
        Route::Tunnel(p) => format!("tunnel {}", via(p)),
        Route::Direct => {
            let host = route_host(&url).unwrap_or_default();
            match (configured, c.bypass.matches(&host)) {
                (Some(_), Some((rule, list))) => {
                    let why = format!("{list} rule \"{rule}\" matched host \"{host}\": direct");
                    assert!(d.reasons.contains(&why), "{why:?} not in {:?}", d.reasons);
                    format!("direct: {list} \"{rule}\"")
                }
                _ => "direct".to_owned(),
            }
        }
    }
}

/// `name: [(VAR, value), ...], URL => expectation;` with optional `, noproxy LIST` and
/// `, tunnel true` (curl's `-p`) after the URL.
macro_rules! routes {
    ($($name:ident: $vars:expr, $url:literal $(, noproxy $np:literal)? $(, tunnel $t:tt)? => $want:expr;)*) => {$(
        #[test]
        fn $name() {
            let noproxy: Option<&str> = None $(.or(Some($np)))?;
            let tunnel = false $(|| $t)?;
            let vars: &[(&str, &str)] = &$vars;
            assert_eq!(
                route(vars, noproxy, tunnel, $url),
                $want,
                "env={vars:?} noproxy={noproxy:?} tunnel={tunnel} url={}",
                $url
            );
        }
    )*};
}

mod variables {
    use super::*;

    routes! {
        http_proxy_forwards_http: [("http_proxy", "p:3128")], "http://a.example/" => "forward http://p:3128 (http_proxy)";
        http_proxy_not_for_https: [("http_proxy", "p:3128")], "https://a.example/" => "direct";
        uppercase_http_proxy_ignored: [("HTTP_PROXY", "http://evil:80")], "http://a.example/" => "direct";
        uppercase_http_proxy_ignored_for_https: [("HTTP_PROXY", "http://evil:80")], "https://a.example/" => "direct";
        lowercase_http_proxy_beside_uppercase: [("HTTP_PROXY", "evil:1"), ("http_proxy", "good:2")], "http://a.example/" => "forward http://good:2 (http_proxy)";
        uppercase_http_proxy_never_beats_all_proxy: [("HTTP_PROXY", "evil:1"), ("ALL_PROXY", "all:3")], "http://a.example/" => "forward http://all:3 (ALL_PROXY)";
        uppercase_http_proxy_garbage_is_not_even_parsed: [("HTTP_PROXY", "socks5://x y")], "http://a.example/" => "direct";
        https_proxy_tunnels_https: [("https_proxy", "p:8080")], "https://a.example/" => "tunnel http://p:8080 (https_proxy)";
        https_proxy_uppercase_tunnels_https: [("HTTPS_PROXY", "p:8080")], "https://a.example/" => "tunnel http://p:8080 (HTTPS_PROXY)";
        https_proxy_lowercase_wins: [("HTTPS_PROXY", "up:1"), ("https_proxy", "low:2")], "https://a.example/" => "tunnel http://low:2 (https_proxy)";
        https_proxy_not_for_http: [("https_proxy", "p:8080")], "http://a.example/" => "direct";
        https_proxy_blank_falls_back_to_uppercase: [("https_proxy", "  "), ("HTTPS_PROXY", "up:1"), ("all_proxy", "a:9")], "https://a.example/" => "tunnel http://up:1 (HTTPS_PROXY)";
        https_proxy_tls_proxy: [("https_proxy", "https://tls.proxy")], "https://a.example:8443/" => "tunnel https://tls.proxy:443 (https_proxy)";
        http_proxy_tls_proxy_forwards: [("http_proxy", "https://tls.proxy:8443")], "http://a.example/" => "forward https://tls.proxy:8443 (http_proxy)";
        all_proxy_forwards_http: [("all_proxy", "a:9")], "http://a.example/" => "forward http://a:9 (all_proxy)";
        all_proxy_tunnels_https: [("ALL_PROXY", "a:9")], "https://a.example/" => "tunnel http://a:9 (ALL_PROXY)";
        all_proxy_lowercase_wins: [("ALL_PROXY", "up:1"), ("all_proxy", "low:2")], "https://a.example/" => "tunnel http://low:2 (all_proxy)";
        all_proxy_fills_https_only: [("http_proxy", "h:1"), ("all_proxy", "a:2")], "https://a.example/" => "tunnel http://a:2 (all_proxy)";
        all_proxy_does_not_beat_http_proxy: [("http_proxy", "h:1"), ("all_proxy", "a:2")], "http://a.example/" => "forward http://h:1 (http_proxy)";
        all_proxy_fills_http_only: [("https_proxy", "s:1"), ("ALL_PROXY", "a:2")], "http://a.example/" => "forward http://a:2 (ALL_PROXY)";
        empty_http_proxy_is_unset: [("http_proxy", ""), ("all_proxy", "a:2")], "http://a.example/" => "forward http://a:2 (all_proxy)";
        default_port_is_curls: [("http_proxy", "http://p")], "http://a.example/" => "forward http://p:1080 (http_proxy)";
        no_variables: [], "http://a.example/" => "direct";
        other_schemes_never_proxied: [("all_proxy", "a:2")], "ftp://a.example/" => "direct";
        ws_never_proxied: [("all_proxy", "a:2")], "ws://a.example/" => "direct";
        proxytunnel_tunnels_http: [("http_proxy", "p:3128")], "http://a.example/", tunnel true => "tunnel http://p:3128 (http_proxy)";
        proxytunnel_without_proxy: [("https_proxy", "p:3128")], "http://a.example/", tunnel true => "direct";
    }
}

mod httpoxy {
    use super::*;

    routes! {
        cgi_ignores_http_proxy: [("REQUEST_METHOD", "GET"), ("http_proxy", "p:1")], "http://a.example/" => "direct";
        cgi_ignores_uppercase_http_proxy: [("REQUEST_METHOD", "POST"), ("HTTP_PROXY", "http://evil:80")], "http://a.example/" => "direct";
        cgi_ignores_https_proxy: [("REQUEST_METHOD", "GET"), ("https_proxy", "p:1")], "https://a.example/" => "direct";
        cgi_ignores_uppercase_https_proxy: [("REQUEST_METHOD", "GET"), ("HTTPS_PROXY", "p:1")], "https://a.example/" => "direct";
        cgi_ignores_all_proxy: [("REQUEST_METHOD", "HEAD"), ("all_proxy", "p:1"), ("ALL_PROXY", "p:2")], "https://a.example/" => "direct";
        cgi_empty_method_still_cgi: [("REQUEST_METHOD", ""), ("http_proxy", "p:1")], "http://a.example/" => "direct";
        cgi_with_proxytunnel: [("REQUEST_METHOD", "GET"), ("http_proxy", "p:1")], "http://a.example/", tunnel true => "direct";
        cgi_with_noproxy_override: [("REQUEST_METHOD", "GET"), ("http_proxy", "p:1")], "http://a.example/", noproxy "other.example" => "direct";
        lowercase_request_method_is_not_cgi: [("request_method", "GET"), ("http_proxy", "p:1")], "http://a.example/" => "forward http://p:1 (http_proxy)";
    }

    #[test]
    fn cgi_reason_comes_first_and_bad_values_are_not_errors() {
        let c = config(
            &[
                ("REQUEST_METHOD", "GET"),
                ("http_proxy", "socks5://never-parsed"),
                ("https_proxy", "http://u:secret@p:99999"),
                ("no_proxy", "a.example"),
            ],
            None,
        );
        let d = choose_route(&Url::parse("https://b.example/").unwrap(), &c, false);
        assert_eq!(d.route, Route::Direct);
        assert_eq!(
            d.reasons,
            [
                "REQUEST_METHOD is set (CGI): proxy variables ignored (httpoxy)",
                "no proxy configured for https: direct"
            ]
        );
        // Outside CGI the same values are errors, and the password is not in the message.
        let e = ProxyConfig::from_env(|k| {
            (k == "https_proxy").then(|| "http://u:secret@p:99999".to_owned())
        })
        .unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}

mod no_proxy_variables {
    use super::*;

    routes! {
        lowercase_wins_its_host_direct: [("http_proxy", "p:1"), ("no_proxy", "a.example"), ("NO_PROXY", "b.example")], "http://a.example/" => "direct: no_proxy \"a.example\"";
        lowercase_wins_uppercase_ignored: [("http_proxy", "p:1"), ("no_proxy", "a.example"), ("NO_PROXY", "b.example")], "http://b.example/" => "forward http://p:1 (http_proxy)";
        uppercase_alone: [("https_proxy", "p:1"), ("NO_PROXY", "b.example")], "https://b.example/" => "direct: NO_PROXY \"b.example\"";
        empty_lowercase_is_unset: [("http_proxy", "p:1"), ("no_proxy", ""), ("NO_PROXY", "b.example")], "http://b.example/" => "direct: NO_PROXY \"b.example\"";
        applies_to_https_too: [("all_proxy", "p:1"), ("no_proxy", "a.example")], "https://www.a.example/" => "direct: no_proxy \"a.example\"";
        applies_to_proxytunnel: [("http_proxy", "p:1"), ("no_proxy", "a.example")], "http://a.example/", tunnel true => "direct: no_proxy \"a.example\"";
        no_proxy_without_proxy: [("no_proxy", "a.example")], "http://a.example/" => "direct";
    }
}

mod hosts {
    use super::*;

    const P: (&str, &str) = ("all_proxy", "p:1");

    routes! {
        // IPv6 literals.
        ipv6_entry_bare: [P, ("no_proxy", "::1")], "http://[::1]:8080/" => "direct: no_proxy \"::1\"";
        ipv6_entry_bracketed: [P, ("no_proxy", "[::1]")], "https://[::1]/" => "direct: no_proxy \"[::1]\"";
        ipv6_other_address: [P, ("no_proxy", "::1")], "http://[::2]/" => "forward http://p:1 (all_proxy)";
        ipv6_url_uncompressed: [P, ("no_proxy", "::1")], "http://[0:0:0:0:0:0:0:1]/" => "direct: no_proxy \"::1\"";
        ipv6_entry_uppercase: [P, ("no_proxy", "FE80::1")], "http://[fe80::1]/" => "direct: no_proxy \"FE80::1\"";
        ipv6_with_port_entry: [P, ("no_proxy", "[::1]:8080")], "http://[::1]:8080/" => "forward http://p:1 (all_proxy)";
        ipv4_mapped_url_is_ipv6: [P, ("no_proxy", "127.0.0.1")], "http://[::ffff:127.0.0.1]/" => "forward http://p:1 (all_proxy)";
        ipv4_mapped_entry_is_ipv6: [P, ("no_proxy", "::ffff:127.0.0.1")], "http://127.0.0.1/" => "forward http://p:1 (all_proxy)";
        ipv6_name_entry_never_matches: [P, ("no_proxy", "localhost")], "http://[::1]/" => "forward http://p:1 (all_proxy)";
        // CIDR.
        cidr_loopback: [P, ("no_proxy", "127.0.0.0/8")], "http://127.1.2.3/" => "direct: no_proxy \"127.0.0.0/8\"";
        cidr_edge: [P, ("no_proxy", "10.0.0.0/8")], "http://10.255.255.255/" => "direct: no_proxy \"10.0.0.0/8\"";
        cidr_outside: [P, ("no_proxy", "10.0.0.0/8")], "http://11.0.0.0/" => "forward http://p:1 (all_proxy)";
        cidr_https_with_port: [P, ("NO_PROXY", "192.168.0.0/16")], "https://192.168.77.1:8443/" => "direct: NO_PROXY \"192.168.0.0/16\"";
        cidr_never_matches_names: [P, ("no_proxy", "127.0.0.0/8")], "http://localhost/" => "forward http://p:1 (all_proxy)";
        cidr_url_hex_ipv4: [P, ("no_proxy", "127.0.0.0/8")], "http://0x7f.1/" => "direct: no_proxy \"127.0.0.0/8\"";
        cidr_url_decimal_ipv4: [P, ("no_proxy", "127.0.0.1")], "http://2130706433/" => "direct: no_proxy \"127.0.0.1\"";
        cidr_url_octal_ipv4: [P, ("no_proxy", "10.0.0.8/29")], "http://012.0.0.010/" => "direct: no_proxy \"10.0.0.8/29\"";
        cidr_ipv6_all: [P, ("no_proxy", "::/0")], "http://[2001:db8::1]/" => "direct: no_proxy \"::/0\"";
        cidr_ipv6_prefix: [P, ("no_proxy", "2001:db8::/32")], "https://[2001:db8:ffff::1]/" => "direct: no_proxy \"2001:db8::/32\"";
        cidr_ipv6_outside: [P, ("no_proxy", "2001:db8::/32")], "https://[2001:db9::1]/" => "tunnel http://p:1 (all_proxy)";
        cidr_ipv4_not_ipv6: [P, ("no_proxy", "0.0.0.0/0")], "http://[::1]/" => "forward http://p:1 (all_proxy)";
        // Ports in entries never match; the URL's port never matters.
        port_entry_name: [P, ("no_proxy", "localhost:8080")], "http://localhost:8080/" => "forward http://p:1 (all_proxy)";
        port_entry_ipv4: [P, ("no_proxy", "127.0.0.1:80")], "http://127.0.0.1/" => "forward http://p:1 (all_proxy)";
        port_entry_then_plain: [P, ("no_proxy", "example.com:443, example.com")], "https://example.com/" => "direct: no_proxy \"example.com\"";
        url_port_irrelevant: [P, ("no_proxy", "example.com")], "http://example.com:8080/" => "direct: no_proxy \"example.com\"";
        // Leading dots.
        leading_dot_apex: [P, ("no_proxy", ".example.com")], "http://example.com/" => "direct: no_proxy \".example.com\"";
        leading_dot_subdomain: [P, ("no_proxy", ".example.com")], "https://www.example.com/" => "direct: no_proxy \".example.com\"";
        leading_dot_lookalike: [P, ("no_proxy", ".example.com")], "http://wwwexample.com/" => "forward http://p:1 (all_proxy)";
        // `*`.
        star_https: [P, ("no_proxy", "*")], "https://anything.example/" => "direct: no_proxy \"*\"";
        star_ipv6: [P, ("NO_PROXY", "*")], "http://[::1]/" => "direct: NO_PROXY \"*\"";
        star_in_list: [P, ("no_proxy", "foo.example,*")], "http://bar.example/" => "direct: no_proxy \"*\"";
        star_blanks: [P, ("no_proxy", " * ")], "http://bar.example/" => "direct: no_proxy \"*\"";
        star_glob_is_literal: [P, ("no_proxy", "*.example.com")], "http://www.example.com/" => "forward http://p:1 (all_proxy)";
        // Look-alike suffixes.
        lookalike_prefix: [P, ("no_proxy", "example.com")], "http://notexample.com/" => "forward http://p:1 (all_proxy)";
        lookalike_longer: [P, ("no_proxy", "example.com")], "http://example.com.evil.test/" => "forward http://p:1 (all_proxy)";
        lookalike_suffix_entry: [P, ("no_proxy", "ample.com")], "https://example.com/" => "tunnel http://p:1 (all_proxy)";
        lookalike_label: [P, ("no_proxy", "corp")], "http://corp.example/" => "forward http://p:1 (all_proxy)";
        lookalike_shorter_tld: [P, ("no_proxy", "example.com")], "http://example.co/" => "forward http://p:1 (all_proxy)";
        single_label_suffix: [P, ("no_proxy", "test")], "http://a.b.test/" => "direct: no_proxy \"test\"";
        // Case.
        case_entry_and_url: [P, ("no_proxy", "EXAMPLE.COM")], "http://Www.Example.Com/" => "direct: no_proxy \"EXAMPLE.COM\"";
        case_idn_url: [P, ("no_proxy", "bücher.example")], "http://BÜCHER.example/" => "direct: no_proxy \"bücher.example\"";
        // Trailing dots.
        trailing_dot_url: [P, ("no_proxy", "example.com")], "http://example.com./" => "direct: no_proxy \"example.com\"";
        trailing_dot_entry: [P, ("no_proxy", "example.com.")], "http://www.example.com/" => "direct: no_proxy \"example.com.\"";
        trailing_dot_both: [P, ("no_proxy", ".example.com.")], "https://example.com./" => "direct: no_proxy \".example.com.\"";
        trailing_dot_lookalike: [P, ("no_proxy", "ample.com.")], "http://example.com./" => "forward http://p:1 (all_proxy)";
        // curl's tokenizer: a blank inside the list ends it.
        blank_ends_list: [P, ("no_proxy", "a.example b.example")], "http://b.example/" => "forward http://p:1 (all_proxy)";
    }
}

mod noproxy_option {
    use super::*;

    const P: (&str, &str) = ("http_proxy", "p:1");

    routes! {
        overrides_environment_star: [P, ("no_proxy", "*")], "http://a.example/", noproxy "other.example" => "forward http://p:1 (http_proxy)";
        overrides_uppercase_too: [P, ("NO_PROXY", "a.example")], "http://a.example/", noproxy "other.example" => "forward http://p:1 (http_proxy)";
        empty_list_bypasses_nothing: [P, ("no_proxy", "a.example")], "http://a.example/", noproxy "" => "forward http://p:1 (http_proxy)";
        own_rule_matches: [P], "http://www.a.example/", noproxy "a.example" => "direct: --noproxy \"a.example\"";
        star: [P], "http://a.example/", noproxy "*" => "direct: --noproxy \"*\"";
        with_proxytunnel: [P], "http://a.example/", noproxy "a.example", tunnel true => "direct: --noproxy \"a.example\"";
        cidr: [("all_proxy", "p:1")], "https://127.0.0.1:8443/", noproxy "127.0.0.0/8,::1" => "direct: --noproxy \"127.0.0.0/8\"";
        ipv6: [("all_proxy", "p:1")], "https://[::1]:8443/", noproxy "127.0.0.0/8,::1" => "direct: --noproxy \"::1\"";
        no_match_keeps_proxy: [("all_proxy", "p:1")], "https://localhost/", noproxy "127.0.0.0/8,::1" => "tunnel http://p:1 (all_proxy)";
    }

    #[test]
    fn explicit_proxy_keeps_the_bypass_it_is_given() {
        // `-x` with `--noproxy`: the CLI puts the list on the explicit configuration.
        let c = ProxyConfig::explicit("http://x:3128")
            .unwrap()
            .with_bypass(BypassList::Curl(NoProxy::parse("localhost"), "--noproxy"));
        let direct = choose_route(&Url::parse("http://localhost:1/").unwrap(), &c, false);
        assert_eq!(direct.route, Route::Direct);
        let forward = choose_route(&Url::parse("http://127.0.0.1:1/").unwrap(), &c, false);
        assert!(matches!(forward.route, Route::Forward(ref p) if p.port == 3128));
    }
}
