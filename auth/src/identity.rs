//! Identity: a keyed fingerprint of everything that decides who a request is made as.
//!
//! The fingerprint is HMAC-SHA-256 under a key drawn at random once per process, over
//! length-prefixed, tagged fields, so it can be compared and hashed (it is part of the pool key)
//! but reveals nothing about the secrets, even to someone who can guess them offline from a
//! leaked fingerprint in another process.
//!
//! # Encoding
//! Each field is a tag byte, a big-endian u32 length and the bytes, so no two different sets of
//! fields encode alike. Fields are sorted by tag before hashing (stably, so two values of the
//! same kind keep their order): the identity does not depend on the order in which different
//! kinds of fields were added. A domain of `None` adds no field, so it differs from `Some("")`.
//!
//! # The key
//! 32 bytes from `getrandom`, once per process. If the system random source fails, the key is
//! derived from the time, the process id and some addresses instead: identities are then still
//! distinct from one another (the isolation the pool needs), only less secret against an
//! offline guess. Building an identity never panics.
use crate::credentials::{Credentials, Scheme, Secret};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::OnceLock;

/// Who a request is made as. Equal identities may share connections; different ones never do.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity([u8; 32]);

impl Identity {
    /// No credentials at all.
    pub const ANONYMOUS: Identity = Identity([0; 32]);

    /// Whether this is the anonymous identity.
    pub fn is_anonymous(&self) -> bool {
        *self == Identity::ANONYMOUS
    }
}

impl Default for Identity {
    fn default() -> Self {
        Identity::ANONYMOUS
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_anonymous() {
            return f.write_str("Identity(anonymous)");
        }
        write!(
            f,
            "Identity({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// Builds an [`Identity`] from the parts that decide it. Adding nothing gives
/// [`Identity::ANONYMOUS`].
#[derive(Default, Clone)]
pub struct IdentityBuilder {
    /// (tag, bytes), in the order added; sorted by tag when hashed.
    fields: Vec<(Tag, Vec<u8>)>,
}

impl fmt::Debug for IdentityBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityBuilder(***)")
    }
}

/// Field tags. The numbers are part of the encoding: never reuse one for another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Tag {
    Schemes = 1,
    User = 2,
    Domain = 3,
    Password = 4,
    Bearer = 5,
    AmbientUser = 6,
    AmbientDomain = 7,
    AmbientPassword = 8,
    ProxyUser = 9,
    ProxyDomain = 10,
    ProxyPassword = 11,
    ClientCertificate = 12,
    Isolation = 13,
}

impl IdentityBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        IdentityBuilder::default()
    }

    fn add(&mut self, tag: Tag, bytes: &[u8]) -> &mut Self {
        self.fields.push((tag, bytes.to_vec()));
        self
    }

    fn add_credentials(
        &mut self,
        creds: &Credentials,
        [user, domain, password]: [Tag; 3],
    ) -> &mut Self {
        self.add(user, creds.user.as_bytes());
        if let Some(d) = &creds.domain {
            self.add(domain, d.as_bytes());
        }
        self.add(password, creds.password.expose().as_bytes())
    }

    /// Server credentials and the schemes they may be used with.
    pub fn server_credentials(&mut self, schemes: &[Scheme], creds: &Credentials) -> &mut Self {
        // The scheme set is part of who we are: curl CVE-2014-0015 reused an NTLM connection
        // for a request that allowed other schemes. Sorted and deduplicated: a set, not a list.
        let mut set: Vec<u8> = schemes.iter().map(|s| scheme_byte(*s)).collect();
        set.sort_unstable();
        set.dedup();
        self.add(Tag::Schemes, &set);
        self.add_credentials(creds, [Tag::User, Tag::Domain, Tag::Password])
    }

    /// A bearer token for the server.
    pub fn bearer(&mut self, token: &Secret) -> &mut Self {
        self.add(Tag::Bearer, token.expose().as_bytes())
    }

    /// Ambient (default) credentials that may answer challenges on this route.
    pub fn ambient(&mut self, creds: &Credentials) -> &mut Self {
        self.add_credentials(
            creds,
            [Tag::AmbientUser, Tag::AmbientDomain, Tag::AmbientPassword],
        )
    }

    /// Proxy credentials used on this route.
    pub fn proxy_credentials(&mut self, creds: &Credentials) -> &mut Self {
        self.add_credentials(
            creds,
            [Tag::ProxyUser, Tag::ProxyDomain, Tag::ProxyPassword],
        )
    }

    /// A client certificate (DER), when one is presented.
    pub fn client_certificate(&mut self, der: &[u8]) -> &mut Self {
        self.add(Tag::ClientCertificate, der)
    }

    /// A caller-supplied isolation tag (for example a local user id).
    pub fn isolation_tag(&mut self, tag: &str) -> &mut Self {
        self.add(Tag::Isolation, tag.as_bytes())
    }

    /// The fingerprint.
    pub fn finish(&self) -> Identity {
        if self.fields.is_empty() {
            return Identity::ANONYMOUS;
        }
        let mut fields: Vec<&(Tag, Vec<u8>)> = self.fields.iter().collect();
        fields.sort_by_key(|(tag, _)| *tag); // stable: same-kind fields keep their order
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key())
            .expect("HMAC accepts keys of any length, and this one is 32 bytes");
        for (tag, bytes) in fields {
            mac.update(&[*tag as u8]);
            // Lengths above u32::MAX saturate; the bytes still go in whole, so nothing merges
            // unless two fields of more than 4 GiB differ only beyond that, which no caller has.
            mac.update(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
            mac.update(bytes);
        }
        let mut out: [u8; 32] = mac.finalize().into_bytes().into();
        // An all-zero MAC (probability 2^-256) would read as anonymous: keep it apart.
        if out == [0; 32] {
            out[31] = 1;
        }
        Identity(out)
    }
}

fn scheme_byte(s: Scheme) -> u8 {
    match s {
        Scheme::Basic => 1,
        Scheme::Bearer => 2,
        Scheme::Digest => 3,
        Scheme::Ntlm => 4,
    }
}

/// The process-wide HMAC key.
fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        match getrandom::getrandom(&mut key) {
            Ok(()) => key,
            Err(_) => fallback_key(),
        }
    })
}

/// A key from whatever entropy is at hand when the system random source fails: distinct per
/// process and run, but guessable by someone who knows the time and pid.
fn fallback_key() -> [u8; 32] {
    let mut h = Sha256::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(now.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let stack = 0u8;
    h.update((&stack as *const u8 as usize).to_le_bytes());
    h.update((fallback_key as fn() -> [u8; 32] as usize).to_le_bytes());
    let heap = Box::new(0u8);
    h.update((&*heap as *const u8 as usize).to_le_bytes());
    h.update(format!("{:?}", std::thread::current().id()).as_bytes());
    h.update(format!("{:?}", std::time::Instant::now()).as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, pw: &str) -> Credentials {
        Credentials::new(user, pw)
    }

    fn server(user: &str, pw: &str) -> Identity {
        IdentityBuilder::new()
            .server_credentials(&[Scheme::Ntlm], &creds(user, pw))
            .finish()
    }

    #[test]
    fn anonymous_only_when_empty() {
        assert!(IdentityBuilder::new().finish().is_anonymous());
        assert_eq!(Identity::default(), Identity::ANONYMOUS);
        assert!(!IdentityBuilder::new()
            .isolation_tag("")
            .finish()
            .is_anonymous());
        assert!(!server("", "").is_anonymous());
        assert!(!IdentityBuilder::new()
            .bearer(&Secret::new(""))
            .finish()
            .is_anonymous());
    }

    #[test]
    fn equal_inputs_equal_identities() {
        assert_eq!(server("u", "p"), server("u", "p"));
        let a = IdentityBuilder::new()
            .server_credentials(&[Scheme::Ntlm, Scheme::Basic], &creds("D\\u", "p"))
            .proxy_credentials(&creds("pu", "pp"))
            .client_certificate(b"der")
            .isolation_tag("1000")
            .finish();
        let b = IdentityBuilder::new()
            .server_credentials(
                &[Scheme::Basic, Scheme::Ntlm, Scheme::Basic],
                &creds("D\\u", "p"),
            )
            .proxy_credentials(&creds("pu", "pp"))
            .client_certificate(b"der")
            .isolation_tag("1000")
            .finish();
        assert_eq!(a, b);
    }

    /// Every field set, with the one named by `change` given another value.
    fn full(change: &str) -> Identity {
        let pick =
            |field: &str, a: &'static str, b: &'static str| if change == field { b } else { a };
        let schemes: &[Scheme] = if change == "schemes" {
            &[Scheme::Ntlm, Scheme::Basic]
        } else {
            &[Scheme::Ntlm]
        };
        let server_user = match change {
            "user" => "D\\v",
            "domain" => "E\\u",
            "no domain" => "u",
            "empty domain" => "\\u",
            _ => "D\\u",
        };
        IdentityBuilder::new()
            .server_credentials(schemes, &creds(server_user, pick("password", "p", "q")))
            .bearer(&Secret::new(pick("bearer", "t", "t2")))
            .ambient(&creds(
                pick("ambient user", "A\\au", "A\\av"),
                pick("ambient", "ap", "ap2"),
            ))
            .proxy_credentials(&creds(
                pick("proxy user", "P\\pu", "P\\pv"),
                pick("proxy", "pp", "pp2"),
            ))
            .client_certificate(pick("cert", "c", "d").as_bytes())
            .isolation_tag(pick("tag", "1", "2"))
            .finish()
    }

    #[test]
    fn each_field_changes_it() {
        let mut seen = vec![full("")];
        for change in [
            "user",
            "password",
            "domain",
            "no domain",
            "empty domain",
            "schemes",
            "bearer",
            "ambient user",
            "ambient",
            "proxy user",
            "proxy",
            "cert",
            "tag",
        ] {
            let id = full(change);
            assert!(!seen.contains(&id), "{change} did not change the identity");
            seen.push(id);
        }
        assert_eq!(full(""), full(""));
    }

    #[test]
    fn server_and_proxy_credentials_differ() {
        let s = IdentityBuilder::new()
            .server_credentials(&[], &creds("u", "p"))
            .finish();
        let p = IdentityBuilder::new()
            .proxy_credentials(&creds("u", "p"))
            .finish();
        let a = IdentityBuilder::new().ambient(&creds("u", "p")).finish();
        assert_ne!(s, p);
        assert_ne!(p, a);
        assert_ne!(s, a);
    }

    #[test]
    fn field_boundaries_matter() {
        // "ab" + "c" must not equal "a" + "bc".
        let a = IdentityBuilder::new()
            .server_credentials(&[], &creds("ab", "c"))
            .finish();
        let b = IdentityBuilder::new()
            .server_credentials(&[], &creds("a", "bc"))
            .finish();
        assert_ne!(a, b);
    }

    #[test]
    fn order_independent_across_kinds() {
        let a = IdentityBuilder::new()
            .isolation_tag("t")
            .proxy_credentials(&creds("pu", "pp"))
            .client_certificate(b"c")
            .server_credentials(&[Scheme::Digest], &creds("u", "p"))
            .finish();
        let b = IdentityBuilder::new()
            .server_credentials(&[Scheme::Digest], &creds("u", "p"))
            .client_certificate(b"c")
            .proxy_credentials(&creds("pu", "pp"))
            .isolation_tag("t")
            .finish();
        assert_eq!(a, b);
    }

    #[test]
    fn debug_shows_no_secret() {
        let mut b = IdentityBuilder::new();
        b.server_credentials(&[Scheme::Basic], &creds("alice", "hunter2"))
            .bearer(&Secret::new("tok3n"));
        let text = format!("{b:?} {:?}", b.finish());
        for secret in ["alice", "hunter2", "tok3n"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(format!("{:?}", Identity::ANONYMOUS).contains("anonymous"));
    }

    #[test]
    fn fallback_key_is_usable() {
        assert_ne!(fallback_key(), [0; 32]);
        assert_ne!(fallback_key(), fallback_key());
    }
}
