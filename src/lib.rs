//! ferry: a non-interactive HTTP/1.1 client for services, in the manner of WinHTTP.
//!
//! Owns: the [`Session`] (defaults, the connection pool, TLS configurations), requests and
//! responses, redirects, the pool key, and the glue between the codec ([`ferry_http`]) and the
//! pool ([`ferry_pool`]). The `ferry` binary (in `src/bin/ferry/`) is a curl-like CLI over it.
//!
//! Does not own: HTTP/1.1 parsing or sockets (ferry-http), pooling mechanics (ferry-pool).
//!
//! ```no_run
//! let session = ferry::Session::builder().build()?;
//! let mut resp = session.get("https://example.com/")?.send()?;
//! assert!(resp.status().is_success());
//! let text = resp.text(1 << 20)?;
//! # let _ = text;
//! # Ok::<(), ferry::Error>(())
//! ```
#![forbid(unsafe_code)]

mod auth;
mod body;
mod error;
mod event;
mod fetcher;
// Crate-private internals for the cargo-fuzz targets in `fuzz/` (a separate workspace, which
// sees only public items); thin wrappers, hidden so the public API does not grow.
#[doc(hidden)]
pub mod fuzzing;
mod key;
mod redirect;
mod request;
mod response;
mod session;
mod tunnel;

pub use body::Body;
pub use error::{Error, ErrorKind};
pub use event::{Event, EventHandler};
pub use ferry_auth::{
    AuthPolicy, AutologonLevel, Credentials, Identity, Scheme as AuthScheme, SchemeSet, Secret,
};
pub use ferry_proxy::{ProxyConfig, ProxyPolicy};
pub use fetcher::{
    error_class, fetch_error, fetch_head, with_fetch_request, JobConnector, SessionFetch,
};
pub use key::{PoolKey, Route};
pub use redirect::{RedirectPolicy, MAX_REDIRECTS};
pub use request::RequestBuilder;
pub use response::Response;
pub use session::{
    Session, SessionBuilder, DRAIN_LIMIT, EXPECT_CONTINUE_THRESHOLD, EXPECT_CONTINUE_TIMEOUT,
};

pub use ferry_http::io::{Timeouts, TlsSettings};
pub use ferry_http::proto::{Limits, ParseConfig};
pub use ferry_pool::Config as PoolConfig;
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
pub use url::Url;
