//! Identity: a keyed fingerprint of everything that decides who a request is made as.
//!
//! The fingerprint is HMAC-SHA-256 under a key drawn at random once per process, over
//! length-prefixed, tagged fields, so it can be compared and hashed (it is part of the pool key)
//! but reveals nothing about the secrets, even to someone who can guess them offline from a
//! leaked fingerprint in another process.
use crate::credentials::{Credentials, Scheme, Secret};
use std::fmt;

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
#[derive(Default)]
pub struct IdentityBuilder {
    fields: Vec<u8>,
}

impl fmt::Debug for IdentityBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityBuilder(***)")
    }
}

impl IdentityBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        IdentityBuilder::default()
    }

    /// Server credentials and the schemes they may be used with.
    pub fn server_credentials(&mut self, schemes: &[Scheme], creds: &Credentials) -> &mut Self {
        let _ = (schemes, creds);
        todo!()
    }

    /// A bearer token for the server.
    pub fn bearer(&mut self, token: &Secret) -> &mut Self {
        let _ = token;
        todo!()
    }

    /// Ambient (default) credentials that may answer challenges on this route.
    pub fn ambient(&mut self, creds: &Credentials) -> &mut Self {
        let _ = creds;
        todo!()
    }

    /// Proxy credentials used on this route.
    pub fn proxy_credentials(&mut self, creds: &Credentials) -> &mut Self {
        let _ = creds;
        todo!()
    }

    /// A client certificate (DER), when one is presented.
    pub fn client_certificate(&mut self, der: &[u8]) -> &mut Self {
        let _ = der;
        todo!()
    }

    /// A caller-supplied isolation tag (for example a local user id).
    pub fn isolation_tag(&mut self, tag: &str) -> &mut Self {
        let _ = tag;
        todo!()
    }

    /// The fingerprint.
    pub fn finish(&self) -> Identity {
        let _ = &self.fields;
        todo!()
    }
}
