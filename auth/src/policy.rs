//! Policy: which scheme to answer with, where credentials may go, and the autologon levels.
//! Mechanism (the other modules) never decides these.
use crate::challenge::Challenge;
use crate::credentials::{Scheme, SchemeSet};

/// WinHTTP's autologon security level: where ambient (default) credentials may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AutologonLevel {
    /// Nowhere, proxies included (`WINHTTP_AUTOLOGON_SECURITY_LEVEL_HIGH`).
    High,
    /// Any host (`…_LOW`).
    Low,
    /// Intranet hosts only: names without a dot, or hosts on the proxy bypass list
    /// (`…_MEDIUM`, the default).
    #[default]
    Medium,
}

/// An origin: scheme, host, port (RFC 6454).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// The host, lowercased.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// Settings that decide what may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthPolicy {
    /// `basic_over_cleartext`: whether Basic credentials may be sent over plain HTTP (they are
    /// readable by anyone on the path). Default `true`, as curl and WinHTTP do when the caller
    /// asks for Basic explicitly; ambient credentials never use Basic whatever this says.
    pub basic_over_cleartext: bool,
    /// The autologon level for ambient credentials. Default [`AutologonLevel::Medium`].
    pub autologon: AutologonLevel,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            basic_over_cleartext: true,
            autologon: AutologonLevel::Medium,
        }
    }
}

impl AuthPolicy {
    /// A preset that refuses Basic over cleartext and uses ambient credentials nowhere.
    pub const STRICT: AuthPolicy = AuthPolicy {
        basic_over_cleartext: false,
        autologon: AutologonLevel::High,
    };
}

/// Whether `host` is an intranet name for the autologon policy: no dot, and not an IP literal.
pub fn is_intranet_host(host: &str) -> bool {
    let _ = host;
    todo!()
}

/// Whether ambient credentials may answer a challenge from `host` at `level`. `bypasses_proxy`
/// says whether the host is on the proxy bypass list; `is_proxy` whether the challenger is a
/// proxy. Returns the decision and its reason, for `explain`.
pub fn ambient_allowed(
    level: AutologonLevel,
    host: &str,
    bypasses_proxy: bool,
    is_proxy: bool,
) -> (bool, &'static str) {
    let _ = (level, host, bypasses_proxy, is_proxy);
    todo!()
}

/// Whether credentials given for `given_for` may be sent to `target` (invariant I2): only to the
/// same origin, unless the caller trusts every location (`--location-trusted`).
pub fn may_send_credentials(given_for: &Origin, target: &Origin, location_trusted: bool) -> bool {
    let _ = (given_for, target, location_trusted);
    todo!()
}

/// Picks the strongest challenge the caller allows and policy permits: NTLM and Digest SHA-256
/// (and SHA-512-256) above Digest MD5 above Basic. `cleartext` says the connection is not TLS.
/// Returns the scheme and the index of the chosen challenge in `challenges`.
pub fn choose(
    challenges: &[Challenge],
    allowed: SchemeSet,
    cleartext: bool,
    policy: &AuthPolicy,
) -> Option<(Scheme, usize)> {
    let _ = (challenges, allowed, cleartext, policy);
    todo!()
}
