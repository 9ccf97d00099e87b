//! Basic (RFC 7617) and Bearer (RFC 6750) credentials: header values, nothing else.
use crate::credentials::{Credentials, Secret};
use crate::error::AuthError;

/// The `Authorization` value for Basic: `Basic base64(user ":" password)`, UTF-8 encoded
/// (RFC 7617 §2.1, `charset=UTF-8`). The domain, if any, is sent as `DOMAIN\user`.
/// A user containing `:` or a control byte is refused.
pub fn basic_authorization(creds: &Credentials) -> Result<String, AuthError> {
    let _ = creds;
    todo!("basic")
}

/// The `Authorization` value for Bearer: `Bearer TOKEN`; the token must be token68.
pub fn bearer_authorization(token: &Secret) -> Result<String, AuthError> {
    let _ = token;
    todo!("bearer")
}
