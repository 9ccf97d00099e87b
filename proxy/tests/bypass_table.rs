//! Table tests of bypass matching (curl's `NO_PROXY`, WinHTTP's bypass list), proxy parsing and
//! the environment, httpoxy included. Each row is a named test (httparse's `req!` style).
use ferry_proxy::{
    choose_route, BypassList, NoProxy, ProxyConfig, ProxyError, ProxyScheme, ProxySource, Route,
    WinHttpBypass,
};

/// `name: list, host => matching entry (or None);`
macro_rules! no_proxy {
    ($($name:ident: $list:expr, $host:expr => $want:expr;)*) => {$(
        #[test]
        fn $name() {
            let want: Option<&str> = $want;
            assert_eq!(NoProxy::parse($list).matches($host), want, "NO_PROXY={:?} host={:?}", $list, $host);
        }
    )*};
}

/// `name: list, host => matching entry (or None);`
macro_rules! winhttp {
    ($($name:ident: $list:expr, $host:expr => $want:expr;)*) => {$(
        #[test]
        fn $name() {
            let want: Option<&str> = $want;
            assert_eq!(WinHttpBypass::parse($list).matches($host), want, "bypass={:?} host={:?}", $list, $host);
        }
    )*};
}

mod no_proxy {
    use super::*;

    no_proxy! {
        exact: "example.com", "example.com" => Some("example.com");
        subdomain: "example.com", "www.example.com" => Some("example.com");
        deep_subdomain: "example.com", "a.b.c.example.com" => Some("example.com");
        lookalike_suffix: "ample.com", "example.com" => None;
        lookalike_prefix: "example.com", "notexample.com" => None;
        lookalike_longer_tld: "example.com", "example.com.evil" => None;
        parent_not_matched: "www.example.com", "example.com" => None;
        single_label_entry: "com", "example.com" => Some("com");
        localhost: "localhost", "localhost" => Some("localhost");
        localhost_not_prefix: "localhost", "localhost.localdomain" => None;
        leading_dot_apex: ".example.com", "example.com" => Some(".example.com");
        leading_dot_subdomain: ".example.com", "a.example.com" => Some(".example.com");
        leading_dot_lookalike: ".example.com", "badexample.com" => None;
        two_leading_dots: "..example.com", "a.example.com" => None;
        case_entry: "EXAMPLE.com", "www.example.com" => Some("EXAMPLE.com");
        case_host: "example.com", "WWW.Example.COM" => Some("example.com");
        trailing_dot_host: "example.com", "example.com." => Some("example.com");
        trailing_dot_entry: "example.com.", "www.example.com" => Some("example.com.");
        trailing_dot_both: ".example.com.", "example.com." => Some(".example.com.");
        trailing_dot_lookalike: "ample.com.", "example.com." => None;
        star_alone: "*", "anything.example" => Some("*");
        star_blanks: " * ", "anything.example" => Some("*");
        star_matches_ipv4: "*", "10.0.0.1" => Some("*");
        star_matches_ipv6: "*", "::1" => Some("*");
        star_entry_in_list: "foo.example, *", "x.test" => Some("*");
        star_prefix_is_literal: "*.example.com", "www.example.com" => None;
        star_suffix_is_literal: "example.*", "example.com" => None;
        list_trimmed: "a.com , example.com", "example.com" => Some("example.com");
        list_tabs: "a.com,\texample.com\t", "www.example.com" => Some("example.com");
        list_empty_entries: ",,a.com,,,example.com,", "example.com" => Some("example.com");
        list_first_match_wins: "example.com,.example.com", "www.example.com" => Some("example.com");
        blank_ends_list_as_curl: "a.com example.com", "example.com" => None;
        blank_ends_list_first_kept: "a.com example.com", "a.com" => Some("a.com");
        empty_list: "", "example.com" => None;
        only_commas: " , ,, ", "example.com" => None;
        empty_host: "example.com", "" => None;
        dot_entry: ".", "example.com" => None;
        dot_host: ".", "." => None;
        host_with_blank: "example.com", "a example.com" => None;
        ipv4_exact: "10.0.0.1", "10.0.0.1" => Some("10.0.0.1");
        ipv4_other: "10.0.0.1", "10.0.0.2" => None;
        ipv4_cidr_8: "10.0.0.0/8", "10.1.2.3" => Some("10.0.0.0/8");
        ipv4_cidr_8_out: "10.0.0.0/8", "11.0.0.1" => None;
        ipv4_cidr_24_edge: "192.168.1.0/24", "192.168.1.255" => Some("192.168.1.0/24");
        ipv4_cidr_24_out: "192.168.1.0/24", "192.168.2.0" => None;
        ipv4_cidr_host_bits: "10.1.2.3/8", "10.200.0.1" => Some("10.1.2.3/8");
        ipv4_cidr_32: "10.0.0.1/32", "10.0.0.1" => Some("10.0.0.1/32");
        ipv4_cidr_0_is_everything: "0.0.0.0/0", "8.8.8.8" => Some("0.0.0.0/0");
        ipv4_cidr_too_long: "10.0.0.0/33", "10.0.0.0" => None;
        ipv4_cidr_junk: "10.0.0.0/8x", "10.0.0.1" => None;
        ipv4_cidr_empty_prefix: "10.0.0.0/", "10.0.0.0" => None;
        ipv4_cidr_never_matches_names: "10.0.0.0/8", "10.example" => None;
        ipv4_entry_never_matches_names: "10.0.0.1", "x.10.0.0.1.example" => None;
        name_entry_never_matches_ipv4: "0.0.1", "10.0.0.1" => None;
        label_entry_never_matches_ipv4: "1", "10.0.0.1" => None;
        mapped_ipv6_is_not_ipv4: "::ffff:10.0.0.1", "10.0.0.1" => None;
        ipv4_cidr_not_ipv6: "0.0.0.0/0", "::1" => None;
        ipv6_exact: "::1", "::1" => Some("::1");
        ipv6_host_bracketed: "::1", "[::1]" => Some("::1");
        ipv6_entry_bracketed: "[::1]", "::1" => Some("[::1]");
        ipv6_uncompressed_entry: "0:0:0:0:0:0:0:1", "::1" => Some("0:0:0:0:0:0:0:1");
        ipv6_case: "FE80::A", "fe80::a" => Some("FE80::A");
        ipv6_other: "::1", "::2" => None;
        ipv6_cidr_128: "::1/128", "::1" => Some("::1/128");
        ipv6_cidr_10: "fe80::/10", "fe80::1234" => Some("fe80::/10");
        ipv6_cidr_10_edge: "fe80::/10", "febf:ffff::1" => Some("fe80::/10");
        ipv6_cidr_10_out: "fe80::/10", "fec0::1" => None;
        ipv6_cidr_64: "2001:db8::/64", "2001:db8::ffff" => Some("2001:db8::/64");
        ipv6_cidr_64_out: "2001:db8::/64", "2001:db8:0:1::1" => None;
        ipv6_cidr_bracketed: "[2001:db8::]/32", "2001:db8:1::1" => Some("[2001:db8::]/32");
        ipv6_cidr_too_long: "::1/129", "::1" => None;
        ipv6_zone_id_is_not_a_name: "example.com", "::1%.example.com" => None;
        ipv6_zone_id_bracketed: "example.com", "[::1%25.example.com]" => None;
        port_entry_name: "example.com:8080", "example.com" => None;
        port_entry_ipv4: "10.0.0.1:80", "10.0.0.1" => None;
        port_entry_ipv6: "[::1]:8080", "::1" => None;
        port_entry_does_not_spoil_list: "example.com:8080,example.com", "example.com" => Some("example.com");
        host_with_port_never_matches: "example.com", "example.com:8080" => None;
        idn_entry: "bücher.example", "xn--bcher-kva.example" => Some("bücher.example");
        idn_entry_subdomain: ".Bücher.example", "www.xn--bcher-kva.example" => Some(".Bücher.example");
    }
}

mod winhttp {
    use super::*;

    winhttp! {
        local_dotless: "<local>", "intranet" => Some("<local>");
        local_any_case: "<LOCAL>", "wiki" => Some("<LOCAL>");
        local_localhost: "<local>", "localhost" => Some("<local>");
        local_trailing_dot: "<local>", "intranet." => Some("<local>");
        local_not_dotted: "<local>", "wiki.corp" => None;
        local_not_ipv4: "<local>", "10.0.0.1" => None;
        local_not_ipv6: "<local>", "::1" => None;
        local_not_ipv4_number: "<local>", "2130706433" => None;
        wildcard_subdomain: "*.corp.example", "a.corp.example" => Some("*.corp.example");
        wildcard_deep: "*.corp.example", "a.b.corp.example" => Some("*.corp.example");
        wildcard_not_apex: "*.corp.example", "corp.example" => None;
        wildcard_lookalike: "*.corp.example", "evilcorp.example" => None;
        wildcard_ip_prefix: "10.*", "10.1.2.3" => Some("10.*");
        wildcard_ip_prefix_lookalike: "10.*", "110.1.2.3" => None;
        wildcard_middle: "www.*.com", "www.example.com" => Some("www.*.com");
        wildcard_alone: "*", "anything.example" => Some("*");
        wildcard_case: "*.Corp.Example", "A.CORP.example" => Some("*.Corp.Example");
        exact_only: "example.com", "example.com" => Some("example.com");
        exact_no_subdomains: "example.com", "www.example.com" => None;
        semicolons: "a.com;b.com", "b.com" => Some("b.com");
        whitespace: "a.com b.com\tc.com", "c.com" => Some("c.com");
        mixed_separators: "a.com; <local> ;*.x", "y.x" => Some("*.x");
        empty_entries: ";; ;", "x" => None;
        empty_host: "*", "" => None;
        scheme_prefix_http: "http://*.example.com", "a.example.com" => Some("http://*.example.com");
        scheme_prefix_https: "https://example.com", "example.com" => Some("https://example.com");
        ipv6_entry_bracketed: "[::1]", "::1" => Some("[::1]");
        ipv6_host_bracketed: "::1", "[::1]" => Some("::1");
        ipv6_glob: "fe80::*", "fe80::1" => Some("fe80::*");
        port_entry: "example.com:8080", "example.com" => None;
        trailing_dot_entry: "example.com.", "example.com" => Some("example.com.");
        trailing_dot_host: "example.com", "example.com." => Some("example.com");
    }
}

/// A lookup closure over a fixed environment.
fn env(vars: &[(&str, &str)]) -> Result<ProxyConfig, ProxyError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ProxyConfig::from_env(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
}

/// `"host:port from SOURCE"` or `"none"`, for one scheme of a configuration.
fn show(p: &Option<(ferry_proxy::ProxyEndpoint, ProxySource)>) -> String {
    match p {
        None => "none".to_owned(),
        Some((e, ProxySource::Environment(n))) => format!("{} from {n}", e.url()),
        Some((e, s)) => format!("{} from {s:?}", e.url()),
    }
}

/// `name: [(var, value), ...] => (http, https);`
macro_rules! environment {
    ($($name:ident: $vars:expr => ($http:expr, $https:expr);)*) => {$(
        #[test]
        fn $name() {
            let c = env(&$vars).unwrap();
            assert_eq!((show(&c.http).as_str(), show(&c.https).as_str()), ($http, $https));
        }
    )*};
}

mod environment {
    use super::*;

    environment! {
        http_proxy_lowercase: [("http_proxy", "p:3128")] => ("http://p:3128 from http_proxy", "none");
        http_proxy_uppercase_ignored: [("HTTP_PROXY", "http://evil:80")] => ("none", "none");
        https_proxy_lowercase: [("https_proxy", "http://p:8080")] => ("none", "http://p:8080 from https_proxy");
        https_proxy_uppercase: [("HTTPS_PROXY", "http://p:8080")] => ("none", "http://p:8080 from HTTPS_PROXY");
        https_lowercase_wins: [("HTTPS_PROXY", "http://up:1"), ("https_proxy", "http://low:2")] => ("none", "http://low:2 from https_proxy");
        all_proxy_both: [("all_proxy", "https://p")] => ("https://p:443 from all_proxy", "https://p:443 from all_proxy");
        all_proxy_uppercase: [("ALL_PROXY", "p")] => ("http://p:1080 from ALL_PROXY", "http://p:1080 from ALL_PROXY");
        all_proxy_lowercase_wins: [("ALL_PROXY", "up"), ("all_proxy", "low")] => ("http://low:1080 from all_proxy", "http://low:1080 from all_proxy");
        all_proxy_only_fills_gaps: [("http_proxy", "h:1"), ("ALL_PROXY", "a:2")] => ("http://h:1 from http_proxy", "http://a:2 from ALL_PROXY");
        uppercase_http_never_even_with_all: [("HTTP_PROXY", "evil:1"), ("all_proxy", "a:2")] => ("http://a:2 from all_proxy", "http://a:2 from all_proxy");
        empty_means_unset: [("http_proxy", ""), ("https_proxy", " "), ("all_proxy", "a:2")] => ("http://a:2 from all_proxy", "http://a:2 from all_proxy");
        nothing: [] => ("none", "none");
        httpoxy: [("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://evil"), ("http_proxy", "p"), ("https_proxy", "p"), ("ALL_PROXY", "p")] => ("none", "none");
        httpoxy_empty_method_still_cgi: [("REQUEST_METHOD", ""), ("http_proxy", "p")] => ("none", "none");
    }

    #[test]
    fn httpoxy_reason_and_bypass_still_parsed() {
        let c = env(&[
            ("REQUEST_METHOD", "POST"),
            ("HTTP_PROXY", "http://attacker:80"),
            ("NO_PROXY", "internal.example"),
        ])
        .unwrap();
        assert_eq!(
            c.ignored_environment,
            Some("REQUEST_METHOD is set (CGI): proxy variables ignored (httpoxy)")
        );
        assert_eq!(
            c.bypass.matches("a.internal.example"),
            Some(("internal.example", "NO_PROXY"))
        );
        let url = url::Url::parse("http://victim.example/").unwrap();
        assert_eq!(choose_route(&url, &c, false).route, Route::Direct);
    }

    #[test]
    fn httpoxy_does_not_hide_bad_values() {
        // The ignored values are never parsed, so a garbage one is no error either.
        let c = env(&[("REQUEST_METHOD", "GET"), ("http_proxy", "socks5://x")]).unwrap();
        assert!(c.http.is_none() && c.ignored_environment.is_some());
    }

    #[test]
    fn no_proxy_sources() {
        let c = env(&[("no_proxy", "a.example"), ("NO_PROXY", "b.example")]).unwrap();
        assert_eq!(
            c.bypass,
            BypassList::Curl(NoProxy::parse("a.example"), "no_proxy")
        );
        let c = env(&[("NO_PROXY", "b.example")]).unwrap();
        assert_eq!(
            c.bypass.matches("b.example"),
            Some(("b.example", "NO_PROXY"))
        );
        let c = env(&[("no_proxy", ""), ("NO_PROXY", "b.example")]).unwrap();
        assert_eq!(c.bypass.source(), Some("NO_PROXY"));
        let c = env(&[("http_proxy", "p")]).unwrap();
        assert_eq!(c.bypass, BypassList::None);
        assert_eq!(c.ignored_environment, None);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(matches!(
            env(&[("all_proxy", "socks5h://p:1080")]),
            Err(ProxyError::UnsupportedScheme(s)) if s == "socks5h"
        ));
        assert!(matches!(
            env(&[("https_proxy", "http://u:hunter2@p:99999")]),
            Err(ProxyError::BadProxy { given, .. }) if !given.contains("hunter2")
        ));
    }

    #[test]
    fn noproxy_overrides_environment() {
        let c = env(&[("http_proxy", "p"), ("no_proxy", "*")])
            .unwrap()
            .with_bypass(BypassList::Curl(
                NoProxy::parse("other.example"),
                "--noproxy",
            ));
        let url = url::Url::parse("http://example.com/").unwrap();
        assert!(matches!(
            choose_route(&url, &c, false).route,
            Route::Forward(_)
        ));
    }
}

/// `(scheme, host, port, user, domain, password)` of an endpoint, for comparisons.
type Shown = (
    ProxyScheme,
    String,
    u16,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn endpoint(s: &str) -> Result<Shown, ProxyError> {
    let c = ProxyConfig::explicit(s)?;
    let (e, src) = c.http.clone().unwrap();
    assert_eq!(src, ProxySource::Explicit);
    assert_eq!(c.https.map(|(e, _)| e), Some(e.clone()));
    let cred = e.credentials.as_ref();
    Ok((
        e.scheme,
        e.host.clone(),
        e.port,
        cred.map(|c| c.user.clone()),
        cred.and_then(|c| c.domain.clone()),
        cred.map(|c| c.password.expose().to_owned()),
    ))
}

/// `name: input => scheme, host, port [, user, domain, password];` or `name: input => error(why);`
macro_rules! explicit {
    ($($name:ident: $input:expr => ($($want:tt)*);)*) => {$(
        #[test]
        fn $name() {
            explicit!(@check $input, $($want)*);
        }
    )*};
    (@check $input:expr, bad) => {
        match endpoint($input) {
            Err(ProxyError::BadProxy { given, .. }) => {
                assert!(!given.contains("secret"), "{given}");
            }
            other => panic!("{:?}: {other:?}", $input),
        }
    };
    (@check $input:expr, unsupported($s:expr)) => {
        assert_eq!(endpoint($input), Err(ProxyError::UnsupportedScheme($s.to_owned())));
    };
    (@check $input:expr, $scheme:ident, $host:expr, $port:expr) => {
        assert_eq!(endpoint($input).unwrap(), (ProxyScheme::$scheme, $host.to_owned(), $port, None, None, None));
    };
    (@check $input:expr, $scheme:ident, $host:expr, $port:expr, $user:expr, $domain:expr, $pass:expr) => {
        let domain: Option<&str> = $domain;
        assert_eq!(
            endpoint($input).unwrap(),
            (ProxyScheme::$scheme, $host.to_owned(), $port, Some($user.to_owned()), domain.map(str::to_owned), Some($pass.to_owned()))
        );
    };
}

mod explicit {
    use super::*;

    explicit! {
        bare_host: "proxy" => (Http, "proxy", 1080);
        host_port: "proxy:3128" => (Http, "proxy", 3128);
        empty_port_is_default: "proxy:" => (Http, "proxy", 1080);
        http_scheme: "http://proxy" => (Http, "proxy", 1080);
        https_scheme: "https://proxy" => (Https, "proxy", 443);
        case_and_path: "HTTPS://Proxy.Example:8443/ignored?x#y" => (Https, "proxy.example", 8443);
        surrounding_blanks: "  http://p:1  " => (Http, "p", 1);
        ipv4: "10.0.0.1:3128" => (Http, "10.0.0.1", 3128);
        ipv4_number_form: "http://0x7f.1:3128" => (Http, "127.0.0.1", 3128);
        ipv6: "[::1]:3128" => (Http, "::1", 3128);
        ipv6_default_port: "http://[2001:DB8::1]" => (Http, "2001:db8::1", 1080);
        port_max: "p:65535" => (Http, "p", 65535);
        userinfo: "http://u:p@proxy:8080" => (Http, "proxy", 8080, "u", None, "p");
        userinfo_no_scheme: "u:p@proxy" => (Http, "proxy", 1080, "u", None, "p");
        userinfo_percent: "http://DOM%5Cuser:p%40ss%3A@proxy" => (Http, "proxy", 1080, "user", Some("DOM"), "p@ss:");
        userinfo_raw_backslash: "http://DOM\\user:pw@proxy" => (Http, "proxy", 1080, "user", Some("DOM"), "pw");
        userinfo_unencoded_at: "http://user:p@ss@proxy" => (Http, "proxy", 1080, "user", None, "p@ss");
        userinfo_no_password: "http://user@proxy" => (Http, "proxy", 1080, "user", None, "");
        userinfo_empty: "http://@proxy" => (Http, "proxy", 1080);
        socks5: "socks5://proxy" => (unsupported("socks5"));
        socks5h: "SOCKS5H://proxy:1080" => (unsupported("socks5h"));
        socks4: "socks4://proxy" => (unsupported("socks4"));
        ftp: "ftp://proxy" => (unsupported("ftp"));
        empty: "" => (bad);
        blank: "   " => (bad);
        scheme_only: "http://" => (bad);
        empty_scheme: "://proxy" => (bad);
        port_zero: "proxy:0" => (bad);
        port_too_big: "proxy:65536" => (bad);
        port_not_number: "proxy:abc" => (bad);
        port_plus: "proxy:+80" => (bad);
        ipv6_without_brackets: "::1" => (bad);
        ipv6_unclosed: "[::1" => (bad);
        ipv6_junk_after: "[::1]x" => (bad);
        ipv6_zone: "[fe80::1%25eth0]:80" => (bad);
        inner_blank: "pro xy" => (bad);
        crlf: "proxy\r\nX: y" => (bad);
        bad_host_secret_hidden: "http://u:secret@bad host" => (bad);
        no_host_secret_hidden: "http://u:secret@:80" => (bad);
        bad_port_secret_hidden: "http://u:secret@p:99999" => (bad);
        forbidden_host_char: "http://p<x>:80" => (bad);
        invalid_ipv4: "999.1.1.1" => (bad);
    }

    #[test]
    fn redaction_keeps_scheme_and_host() {
        match ProxyConfig::explicit("http://alice:secret@p:0") {
            Err(ProxyError::BadProxy { given, .. }) => assert_eq!(given, "http://***@p:0"),
            other => panic!("{other:?}"),
        }
        let e = ProxyConfig::explicit("http://alice:s3cr3t@p").unwrap();
        let debug = format!("{e:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }
}

/// `name: list => (http, https);` or `name: list => error;`
macro_rules! per_scheme {
    ($($name:ident: $list:expr => $want:tt;)*) => {$(
        #[test]
        fn $name() {
            per_scheme!(@check $list, $want);
        }
    )*};
    (@check $list:expr, error) => {
        assert!(ProxyConfig::per_scheme_list($list).is_err(), "{:?}", $list);
    };
    (@check $list:expr, ($http:expr, $https:expr)) => {
        let c = ProxyConfig::per_scheme_list($list).unwrap();
        let url = |p: &Option<(ferry_proxy::ProxyEndpoint, ProxySource)>| match p {
            Some((e, src)) => {
                assert_eq!(*src, ProxySource::PerSchemeList);
                e.url()
            }
            None => "none".to_owned(),
        };
        assert_eq!((url(&c.http).as_str(), url(&c.https).as_str()), ($http, $https));
    };
}

mod per_scheme_list {
    use super::*;

    per_scheme! {
        one_for_all: "proxy:8080" => ("http://proxy:8080", "http://proxy:8080");
        winhttp_default_port: "proxy" => ("http://proxy:80", "http://proxy:80");
        per_scheme: "http=p1:81;https=p2:82" => ("http://p1:81", "http://p2:82");
        whitespace: " http=p1:81 \t https=p2:82 " => ("http://p1:81", "http://p2:82");
        https_only: "https=p2:82" => ("none", "http://p2:82");
        ftp_ignored: "ftp=f:21;http=p1" => ("http://p1:80", "none");
        unknown_bad_value_ignored: "socks=socks5://x;http=p1" => ("http://p1:80", "none");
        general_then_specific: "p0:8080;https=p2" => ("http://p0:8080", "http://p2:80");
        specific_then_general: "https=p2;p0:8080" => ("http://p0:8080", "http://p2:80");
        first_wins: "http=a;http=b" => ("http://a:80", "none");
        key_any_case: "HTTP=p1;HTTPS=p2" => ("http://p1:80", "http://p2:80");
        https_value_as_tls_url: "https=https://tls:8443" => ("none", "https://tls:8443");
        https_value_as_plain_url: "https=http://p:3128" => ("none", "http://p:3128");
        https_url_default_port: "https=https://tls" => ("none", "https://tls:443");
        url_with_equals_in_password: "http://u:a=b@p:1" => ("http://p:1", "http://p:1");
        ipv6: "http=[::1]:3128" => ("http://[::1]:3128", "none");
        empty: "" => error;
        separators_only: " ; ;" => error;
        no_key: "=p" => error;
        no_value: "http=" => error;
        bad_port: "http=p:0" => error;
        unsupported: "http=socks5://x" => error;
    }
}
