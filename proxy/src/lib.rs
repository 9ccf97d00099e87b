//! ferry-proxy: which proxy (if any) a request goes through, and what may be sent to it.
//!
//! Owns: proxy configuration from its sources (explicit, WinHTTP's per-scheme list, the
//! environment read through a lookup closure, none), bypass lists (curl's `NO_PROXY` and
//! WinHTTP's `<local>`/wildcard lists), the route choice (`Direct`, `Forward`, `Tunnel`), the
//! sans-IO CONNECT request and reply rules, and the proxy security policy with an explanation
//! of every decision (`ferry proxy explain`).
//!
//! Does not own: sockets, TLS, the auth mechanisms (ferry-auth), the session. The environment
//! is read at the edge: every parser here takes strings.
#![forbid(unsafe_code)]

pub mod bypass;
pub mod config;
pub mod connect;
pub mod error;
pub mod explain;
pub mod route;

pub use bypass::{BypassList, NoProxy, WinHttpBypass};
pub use config::{ProxyConfig, ProxyEndpoint, ProxyScheme, ProxySource, HTTPOXY_REASON};
pub use error::ProxyError;
pub use explain::{explain, ExplainInput, ProxyPolicy};
pub use route::{choose_route, route_host, Decision, Route};
