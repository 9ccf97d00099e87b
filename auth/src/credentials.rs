//! Credentials and secrets. A [`Secret`] never appears in `Debug` output or logs.
use std::fmt;

/// A secret (password or token): `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the mechanisms that must send or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A user name, optional domain, and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (without the domain).
    pub user: String,
    /// The NTLM domain, if given as `DOMAIN\user`.
    pub domain: Option<String>,
    /// The password.
    pub password: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("domain", &self.domain)
            .field("password", &self.password)
            .finish()
    }
}

impl Credentials {
    /// Credentials from a user (`DOMAIN\user` splits off the domain) and a password.
    pub fn new(user: &str, password: impl Into<String>) -> Self {
        let (domain, user) = match user.split_once('\\') {
            Some((d, u)) => (Some(d.to_owned()), u.to_owned()),
            None => (None, user.to_owned()),
        };
        Credentials {
            user,
            domain,
            password: Secret::new(password),
        }
    }

    /// Parses curl's `-u USER:PASSWORD` (split at the first `:`; no `:` means an empty password).
    pub fn parse_user_password(s: &str) -> Self {
        match s.split_once(':') {
            Some((u, p)) => Credentials::new(u, p),
            None => Credentials::new(s, ""),
        }
    }
}

/// An HTTP authentication scheme ferry implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// RFC 7617.
    Basic,
    /// RFC 6750.
    Bearer,
    /// RFC 7616.
    Digest,
    /// MS-NLMP, v2 only.
    Ntlm,
}

/// A set of schemes the caller allows (curl's `--basic`, `--digest`, `--ntlm`, `--anyauth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SchemeSet {
    /// Basic allowed.
    pub basic: bool,
    /// Digest allowed.
    pub digest: bool,
    /// NTLM allowed.
    pub ntlm: bool,
}

impl SchemeSet {
    /// Every scheme that answers a challenge with a password (`--anyauth`).
    pub const ANY: SchemeSet = SchemeSet {
        basic: true,
        digest: true,
        ntlm: true,
    };
    /// Basic only.
    pub const BASIC: SchemeSet = SchemeSet {
        basic: true,
        digest: false,
        ntlm: false,
    };
    /// Digest only.
    pub const DIGEST: SchemeSet = SchemeSet {
        basic: false,
        digest: true,
        ntlm: false,
    };
    /// NTLM only.
    pub const NTLM: SchemeSet = SchemeSet {
        basic: false,
        digest: false,
        ntlm: true,
    };

    /// Whether `scheme` is in the set.
    pub fn contains(&self, scheme: Scheme) -> bool {
        match scheme {
            Scheme::Basic => self.basic,
            Scheme::Digest => self.digest,
            Scheme::Ntlm => self.ntlm,
            Scheme::Bearer => false,
        }
    }
}
