//! The route of a request: direct, forwarded through an HTTP proxy, or tunnelled with CONNECT.
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

/// Chooses the route for `url`. `force_tunnel` is curl's `-p/--proxytunnel` (tunnel http
/// URLs too).
pub fn choose_route(url: &Url, config: &ProxyConfig, force_tunnel: bool) -> Decision {
    let _ = (url, config, force_tunnel);
    todo!()
}
