//! The pool key: everything that decides whether an idle connection may carry a request.
//!
//! A connection stores its key from birth and the pool hands it only to a request with an
//! equal key (invariant I1). The key is built in exactly one place, [`PoolKey::new`], and
//! [`PoolKey::parts`] destructures it exhaustively, so a field added here without a thought for
//! how it is compared fails to compile there. curl's `url_match_conn` is the checklist of what
//! belongs in it: scheme, host, port, route (proxy and its credentials), credentials (the
//! [`Identity`]), TLS options.
use ferry_auth::Identity;
use std::fmt;
use std::hash::{Hash, Hasher};
use url::Url;

/// How a pooled connection reaches the origin: the route's kind and the proxy's address.
/// Proxy credentials are not here but in the [`Identity`], like every other credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Route {
    /// Straight to the origin.
    #[default]
    Direct,
    /// Requests in absolute form to an HTTP proxy.
    Forward {
        /// Whether the connection to the proxy is TLS.
        tls: bool,
        /// The proxy host.
        host: String,
        /// The proxy port.
        port: u16,
    },
    /// A CONNECT tunnel through a proxy.
    Tunnel {
        /// Whether the connection to the proxy is TLS.
        tls: bool,
        /// The proxy host.
        host: String,
        /// The proxy port.
        port: u16,
    },
}

impl Route {
    /// The pool-key form of a proxy route.
    pub fn from_proxy(route: &ferry_proxy::Route) -> Route {
        use ferry_proxy::{ProxyScheme, Route as R};
        let part = |p: &ferry_proxy::ProxyEndpoint| {
            (p.scheme == ProxyScheme::Https, p.host.clone(), p.port)
        };
        match route {
            R::Direct => Route::Direct,
            R::Forward(p) => {
                let (tls, host, port) = part(p);
                Route::Forward { tls, host, port }
            }
            R::Tunnel(p) => {
                let (tls, host, port) = part(p);
                Route::Tunnel { tls, host, port }
            }
        }
    }
}

/// The exact key under which a connection is pooled.
#[derive(Clone)]
pub struct PoolKey {
    scheme: Scheme,
    host: String,
    port: u16,
    route: Route,
    identity: Identity,
    tls_profile: u64,
    /// Hash of all of the above, computed once: the pool hashes a key on every checkout and
    /// return.
    hash: u64,
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
        let mut key = PoolKey {
            scheme,
            // `url` already lowercases and IDNA-encodes domain names.
            host: url.host_str()?.to_owned(),
            port: url.port_or_known_default()?,
            route,
            identity,
            tls_profile,
            hash: 0,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.parts().hash(&mut h);
        key.hash = h.finish();
        Some(key)
    }

    /// The parts of the key, named; exhaustive so that a new field must be listed (and so be
    /// compared and hashed).
    #[allow(clippy::type_complexity)]
    pub fn parts(&self) -> (&str, &str, u16, &Route, &Identity, u64) {
        let PoolKey {
            scheme,
            host,
            port,
            route,
            identity,
            tls_profile,
            hash: _,
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

    /// Who connections under this key are made as.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

impl PartialEq for PoolKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.parts() == other.parts()
    }
}

impl Eq for PoolKey {}

impl Hash for PoolKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
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
    use ferry_auth::{Credentials, IdentityBuilder, Scheme as AuthScheme};

    fn key(u: &str, tls: u64) -> PoolKey {
        key_as(u, tls, Identity::ANONYMOUS)
    }

    fn key_as(u: &str, tls: u64, id: Identity) -> PoolKey {
        PoolKey::new(&Url::parse(u).unwrap(), Route::Direct, id, tls).unwrap()
    }

    #[test]
    fn equal_only_when_every_part_is() {
        assert_eq!(key("http://h/a", 1), key("http://H:80/b?c", 1));
        assert_ne!(key("http://h/", 1), key("https://h/", 1));
        assert_ne!(key("http://h/", 1), key("http://h:81/", 1));
        assert_ne!(key("http://h/", 1), key("http://g/", 1));
        assert_ne!(key("https://h/", 1), key("https://h/", 2));
        assert_eq!(key("http://[::1]:8/", 1).host(), "::1");
        let ftp = Url::parse("ftp://h/").unwrap();
        assert!(PoolKey::new(&ftp, Route::Direct, Identity::ANONYMOUS, 0).is_none());
    }

    #[test]
    fn identity_is_part_of_the_key() {
        let a = IdentityBuilder::new()
            .server_credentials(&[AuthScheme::Ntlm], &Credentials::new("a", "x"))
            .finish();
        let b = IdentityBuilder::new()
            .server_credentials(&[AuthScheme::Ntlm], &Credentials::new("b", "y"))
            .finish();
        assert_ne!(key_as("http://h/", 1, a), key_as("http://h/", 1, b));
        assert_ne!(key_as("http://h/", 1, a), key("http://h/", 1));
        assert_eq!(key_as("http://h/", 1, a), key_as("http://h/x", 1, a));
    }
}
