//! The pool key: everything that decides whether an idle connection may carry a request.
//!
//! A connection stores its key from birth and the pool hands it only to a request with an
//! equal key (invariant I1). The key is built in exactly one place, [`PoolKey::new`], and
//! [`PoolKey::parts`] destructures it exhaustively, so a field added here without a thought for
//! how it is compared fails to compile there. curl's `url_match_conn` is the checklist of what
//! belongs in it: scheme, host, port, route (proxy and its credentials), credentials, TLS
//! options.
use std::fmt;
use url::Url;

/// Who a request is made as. Anonymous until authentication lands; then a keyed fingerprint of
/// the credentials (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Identity {
    /// No credentials.
    #[default]
    Anonymous,
}

/// How the connection reaches the origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Route {
    /// Straight to the origin.
    #[default]
    Direct,
}

/// The exact key under which a connection is pooled.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    scheme: Scheme,
    host: String,
    port: u16,
    route: Route,
    identity: Identity,
    tls_profile: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scheme {
    Http,
    Https,
}

impl PoolKey {
    /// The one constructor. `tls_profile` identifies the TLS configuration (roots, verification
    /// switches); plain-HTTP keys carry it too, so a change of TLS settings never matters less
    /// than it should.
    pub(crate) fn new(
        url: &Url,
        route: Route,
        identity: Identity,
        tls_profile: u64,
    ) -> Option<Self> {
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        };
        Some(PoolKey {
            scheme,
            // `url` already lowercases and IDNA-encodes domain names.
            host: url.host_str()?.to_owned(),
            port: url.port_or_known_default()?,
            route,
            identity,
            tls_profile,
        })
    }

    /// The parts of the key, named; exhaustive so that a new field must be listed.
    pub fn parts(&self) -> (&str, &str, u16, &Route, &Identity, u64) {
        let PoolKey {
            scheme,
            host,
            port,
            route,
            identity,
            tls_profile,
        } = self;
        let scheme = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        (scheme, host, *port, route, identity, *tls_profile)
    }

    /// Whether the connection is TLS to the origin.
    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::Https
    }

    /// The host (without brackets for IPv6).
    pub fn host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Debug for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, host, port, route, identity, tls) = self.parts();
        write!(
            f,
            "PoolKey({scheme}://{host}:{port} via {route:?} as {identity:?}, tls#{tls})"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(u: &str, tls: u64) -> PoolKey {
        PoolKey::new(
            &Url::parse(u).unwrap(),
            Route::Direct,
            Identity::Anonymous,
            tls,
        )
        .unwrap()
    }

    #[test]
    fn equal_only_when_every_part_is() {
        assert_eq!(key("http://h/a", 1), key("http://H:80/b?c", 1));
        assert_ne!(key("http://h/", 1), key("https://h/", 1));
        assert_ne!(key("http://h/", 1), key("http://h:81/", 1));
        assert_ne!(key("http://h/", 1), key("http://g/", 1));
        assert_ne!(key("https://h/", 1), key("https://h/", 2));
        assert_eq!(key("http://[::1]:8/", 1).host(), "::1");
        assert!(PoolKey::new(
            &Url::parse("ftp://h/").unwrap(),
            Route::Direct,
            Identity::Anonymous,
            0
        )
        .is_none());
    }
}
