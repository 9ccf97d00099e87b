//! Basic (RFC 7617) and Bearer (RFC 6750) credentials: header values, nothing else.
use crate::credentials::{Credentials, Secret};
use crate::error::AuthError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The `Authorization` value for Basic: `Basic base64(user ":" password)`, UTF-8 encoded
/// (RFC 7617 §2.1, `charset=UTF-8`). The domain, if any, is sent as `DOMAIN\user`.
/// A user containing `:` or a control byte is refused, and so is a password with a control byte
/// (RFC 7617 §2 forbids them in both), as [`AuthError::InvalidUser`].
pub fn basic_authorization(creds: &Credentials) -> Result<String, AuthError> {
    // RFC 7617 §2: "a user-id containing a colon character is invalid", and control characters
    // are not allowed in either part; a password may hold ':' (the first colon splits).
    let domain = creds.domain.as_deref().unwrap_or("");
    if creds.user.contains(':') || has_control(&creds.user) || has_control(domain) {
        return Err(AuthError::InvalidUser);
    }
    if has_control(creds.password.expose()) {
        return Err(AuthError::InvalidUser);
    }
    let mut pass = String::new();
    if !domain.is_empty() {
        pass.push_str(domain);
        pass.push('\\');
    }
    pass.push_str(&creds.user);
    pass.push(':');
    pass.push_str(creds.password.expose());
    Ok(format!("Basic {}", STANDARD.encode(pass.as_bytes())))
}

/// The `Authorization` value for Bearer: `Bearer TOKEN`; the token must be token68.
pub fn bearer_authorization(token: &Secret) -> Result<String, AuthError> {
    if !is_token68(token.expose()) {
        return Err(AuthError::InvalidToken);
    }
    Ok(format!("Bearer {}", token.expose()))
}

/// `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 9110 §11.2).
pub fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// RFC 7617 §2: CTL = %x00-1F / %x7F; also the C1 controls, which no user name needs.
fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7617_example() {
        // RFC 7617 §2: Aladdin / open sesame.
        let c = Credentials::new("Aladdin", "open sesame");
        assert_eq!(
            basic_authorization(&c).unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn rfc7617_utf8_example() {
        // RFC 7617 §2.1: "test" / "123£" with charset=UTF-8.
        let c = Credentials::new("test", "123\u{a3}");
        assert_eq!(basic_authorization(&c).unwrap(), "Basic dGVzdDoxMjPCow==");
    }

    #[test]
    fn domain_is_prefixed() {
        let c = Credentials::new("CORP\\alice", "pw");
        let v = basic_authorization(&c).unwrap();
        let decoded = STANDARD.decode(v.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(decoded, b"CORP\\alice:pw");
    }

    #[test]
    fn password_may_contain_colon() {
        let c = Credentials::new("u", "a:b");
        let v = basic_authorization(&c).unwrap();
        assert_eq!(STANDARD.decode(&v[6..]).unwrap(), b"u:a:b");
    }

    #[test]
    fn invalid_users() {
        for user in ["a:b", "a\nb", "a\rb", "a\0b", "a\u{7f}"] {
            let c = Credentials {
                user: user.to_owned(),
                domain: None,
                password: Secret::new("p"),
            };
            assert_eq!(
                basic_authorization(&c),
                Err(AuthError::InvalidUser),
                "{user:?}"
            );
        }
        let c = Credentials {
            user: "u".to_owned(),
            domain: Some("D\r\n".to_owned()),
            password: Secret::new("p"),
        };
        assert_eq!(basic_authorization(&c), Err(AuthError::InvalidUser));
        let c = Credentials::new("u", "p\n");
        assert_eq!(basic_authorization(&c), Err(AuthError::InvalidUser));
    }

    #[test]
    fn bearer() {
        let ok = Secret::new("mF_9.B5f-4.1JqM/+~==");
        assert_eq!(
            bearer_authorization(&ok).unwrap(),
            "Bearer mF_9.B5f-4.1JqM/+~=="
        );
        for bad in ["", "=", "a b", "a\r\nX: y", "a=b", "tök", "a,b", "\"a\""] {
            assert_eq!(
                bearer_authorization(&Secret::new(bad)),
                Err(AuthError::InvalidToken),
                "{bad:?}"
            );
        }
    }
}
