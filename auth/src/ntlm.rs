//! NTLMv2 (MS-NLMP) through ntlmclient, hardened: every type-2 message is validated here before
//! ntlmclient sees it, so offsets or lengths past the end, or target info near 64 KiB (which
//! makes ntlmclient 0.2.0 panic while building the type-3), give an error, never a panic.
//!
//! ```text
//!  start() ──"NTLM <type1>"──► server
//!  ExpectNtlmType2 ◄──401 "NTLM <type2>"── server
//!  on_challenge() ──"NTLM <type3>"──► server   ⇒ NtlmBound (the connection is now this identity's)
//! ```
//!
//! # What is checked before ntlmclient sees a type-2 (MS-NLMP §2.2.1.2)
//! 1. At most [`MAX_NTLM_MESSAGE_BYTES`] decoded (and the base64 no longer than that implies).
//! 2. Signature `NTLMSSP\0`, MessageType 2, the 48-byte fixed part (56 with a Version) present.
//! 3. TargetNameFields and TargetInfoFields: a non-empty buffer lies wholly inside the message,
//!    after the fixed part, for both its Len and its MaxLen (the spec says MaxLen is ignored on
//!    receipt; we still refuse one that points past the end, as a sign of a hostile peer).
//! 4. NTLMv2 needs target info: without NEGOTIATE_TARGET_INFO or with none, [`NtlmV1Refused`].
//! 5. Target info at most [`MAX_NTLM_TARGET_INFO_BYTES`], so the type-3 (which carries it) stays
//!    far below ntlmclient's 16-bit length fields (curl CVE-2019-3822 was this overflow).
//! 6. The AV pairs walk cleanly: every header and value inside the buffer, even lengths,
//!    MsvAvTimestamp exactly 8 bytes, MsvAvEOL last with length 0 and nothing after it.
//!
//! ntlmclient then parses the message and computes the response inside `catch_unwind`, as a last
//! line of defence: a panic there becomes [`AuthError::NtlmMalformed`], never an unwind into the
//! caller.
//!
//! [`NtlmV1Refused`]: AuthError::NtlmV1Refused
use crate::credentials::Credentials;
use crate::error::AuthError;
use crate::identity::Identity;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ntlmclient::{Flags, Message};
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Largest NTLM message accepted from a server, decoded. Type-2 messages are a few hundred bytes
/// in practice; target info is bounded well below where ntlmclient's 16-bit fields overflow.
pub const MAX_NTLM_MESSAGE_BYTES: usize = 8 * 1024;

/// Largest target info accepted in a type-2. Windows and Samba send a few hundred bytes; the
/// type-3 carries the target info inside a 16-bit-length field, so this keeps it far from 64 KiB.
pub const MAX_NTLM_TARGET_INFO_BYTES: usize = 4096;

/// Longest user or domain name, in UTF-16 code units, put in a type-3 (ntlmclient `expect`s
/// each field below 64 KiB; curl CVE-2005-3185 was a long user name). UPNs stay far below this.
pub const MAX_NTLM_NAME_CHARS: usize = 1024;

/// The workstation name sent in the type-3: a fixed name reveals nothing about the host.
const WORKSTATION: &str = "FERRY";

/// Flags of our type-1: Unicode, NTLM with NTLMv2 (extended session security and target info),
/// and the key-strength bits that servers expect to see offered.
const TYPE1_FLAGS: Flags = Flags::NEGOTIATE_UNICODE
    .union(Flags::REQUEST_TARGET)
    .union(Flags::NEGOTIATE_NTLM)
    .union(Flags::NEGOTIATE_ALWAYS_SIGN)
    .union(Flags::NEGOTIATE_NTLM2_KEY)
    .union(Flags::NEGOTIATE_TARGET_INFO)
    .union(Flags::NEGOTIATE_128BIT)
    .union(Flags::NEGOTIATE_56BIT);

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// The type-2 fixed part without and with the Version field.
const TYPE2_FIXED: usize = 48;
const TYPE2_FIXED_WITH_VERSION: usize = 56;
/// AV pair ids (MS-NLMP §2.2.2.1).
const MSV_AV_EOL: u16 = 0;
const MSV_AV_TIMESTAMP: u16 = 7;

/// The handshake after the type-1 message was sent: waiting for the server's type-2.
#[derive(Debug)]
pub struct ExpectNtlmType2 {
    creds: Credentials,
}

/// Proof that an NTLM handshake completed for an identity. Only this crate can create one; a
/// connection that carries it belongs to that identity for the rest of its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtlmBound {
    identity: Identity,
}

impl NtlmBound {
    /// The identity the connection is bound to.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

/// Starts a handshake: the `Authorization` value carrying the type-1 (negotiate) message.
pub fn start(creds: &Credentials) -> (String, ExpectNtlmType2) {
    let value = format!("NTLM {}", STANDARD.encode(type1()));
    (
        value,
        ExpectNtlmType2 {
            creds: creds.clone(),
        },
    )
}

/// The type-1 message (MS-NLMP §2.2.1.1), built by hand so that it cannot fail: no domain, no
/// workstation (both empty buffers at offset 40), a zero Version field, as ntlmclient lays it out.
fn type1() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&TYPE1_FLAGS.bits().to_le_bytes());
    for _ in 0..2 {
        // DomainNameFields, WorkstationFields: Len 0, MaxLen 0, Offset 40.
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&40u32.to_le_bytes());
    }
    m.extend_from_slice(&[0; 8]);
    m
}

impl ExpectNtlmType2 {
    /// Answers the server's type-2 message (`token68`, base64) with the type-3 `Authorization`
    /// value, binding the connection to `identity`.
    pub fn on_challenge(
        self,
        token68: &str,
        identity: &Identity,
    ) -> Result<(String, NtlmBound), AuthError> {
        let type2 = decode_type2(token68)?;
        let info = validate_type2(&type2)?;
        let creds = ntlm_credentials(&self.creds)?;
        // MS-NLMP §3.1.5.1.2: with MsvAvTimestamp, use the server's time and send Z(24) as the
        // LM response; otherwise our own clock.
        let time = info.timestamp.unwrap_or_else(ntlm_time_now);
        let target_info = type2.get(info.target_info.clone()).unwrap_or_default();
        let type3 = guarded(|| build_type3(&type2, target_info, time, &info, &creds))?;
        Ok((
            format!("NTLM {}", STANDARD.encode(type3)),
            NtlmBound {
                identity: *identity,
            },
        ))
    }
}

/// What validation learnt about a type-2.
#[derive(Debug)]
struct Type2Info {
    flags: Flags,
    /// Where the target info lies in the message.
    target_info: Range<usize>,
    /// MsvAvTimestamp, if the server sent one.
    timestamp: Option<i64>,
}

/// Base64 as servers send it: standard alphabet, padding optional.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode_type2(token68: &str) -> Result<Vec<u8>, AuthError> {
    let limit = AuthError::Limit {
        name: "max_ntlm_message_bytes",
        max: MAX_NTLM_MESSAGE_BYTES as u64,
    };
    let b64 = token68.trim_matches(|c| c == ' ' || c == '\t');
    // Refuse before decoding: 4 characters per 3 bytes, plus padding.
    if b64.len() > MAX_NTLM_MESSAGE_BYTES.div_ceil(3) * 4 {
        return Err(limit);
    }
    let bytes = LENIENT_BASE64
        .decode(b64)
        .map_err(|_| AuthError::NtlmMalformed("not base64"))?;
    if bytes.len() > MAX_NTLM_MESSAGE_BYTES {
        return Err(limit);
    }
    Ok(bytes)
}

fn u16_at(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(m.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(m: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(m.get(at..at + 4)?.try_into().ok()?))
}

/// A security buffer (Len, MaxLen, Offset) at `at`, checked against the message; the range of
/// its bytes (empty when Len is 0, wherever Offset points).
fn security_buffer(m: &[u8], at: usize, fixed: usize) -> Result<Range<usize>, AuthError> {
    let truncated = AuthError::NtlmMalformed("truncated security buffer");
    let len = usize::from(u16_at(m, at).ok_or(truncated)?);
    let max_len = usize::from(u16_at(m, at + 2).ok_or(truncated)?);
    let offset = u32_at(m, at + 4).ok_or(truncated)?;
    if len == 0 {
        return Ok(0..0);
    }
    let offset = usize::try_from(offset)
        .map_err(|_| AuthError::NtlmMalformed("security buffer offset past the end"))?;
    if offset < fixed {
        return Err(AuthError::NtlmMalformed(
            "security buffer overlaps the fixed header",
        ));
    }
    // usize arithmetic on values below 2^32 + 2^16: no overflow on 64-bit, checked anyway.
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= m.len())
        .ok_or(AuthError::NtlmMalformed("security buffer past the end"))?;
    if offset
        .checked_add(max_len)
        .filter(|&e| e <= m.len())
        .is_none()
    {
        return Err(AuthError::NtlmMalformed(
            "security buffer MaxLen past the end",
        ));
    }
    Ok(offset..end)
}

/// Validates a raw type-2 message; see the module documentation for the rules.
fn validate_type2(m: &[u8]) -> Result<Type2Info, AuthError> {
    if m.len() < 12 {
        return Err(AuthError::NtlmMalformed("truncated message"));
    }
    if m.get(..8) != Some(&SIGNATURE[..]) {
        return Err(AuthError::NtlmMalformed("bad signature"));
    }
    if u32_at(m, 8) != Some(2) {
        return Err(AuthError::NtlmMalformed("not a type-2 (challenge) message"));
    }
    let flags_bits = u32_at(m, 20).ok_or(AuthError::NtlmMalformed("truncated message"))?;
    let flags = Flags::from_bits_retain(flags_bits);
    let fixed = if flags.contains(Flags::NEGOTIATE_VERSION) {
        TYPE2_FIXED_WITH_VERSION
    } else {
        TYPE2_FIXED
    };
    if m.len() < fixed {
        return Err(AuthError::NtlmMalformed("truncated message"));
    }
    let _target_name = security_buffer(m, 12, fixed)?;
    let target_info = security_buffer(m, 40, fixed)?;
    if !flags.contains(Flags::NEGOTIATE_TARGET_INFO) || target_info.is_empty() {
        return Err(AuthError::NtlmV1Refused);
    }
    if target_info.len() > MAX_NTLM_TARGET_INFO_BYTES {
        return Err(AuthError::Limit {
            name: "max_ntlm_target_info_bytes",
            max: MAX_NTLM_TARGET_INFO_BYTES as u64,
        });
    }
    let ti = m.get(target_info.clone()).unwrap_or_default();
    let timestamp = walk_av_pairs(ti)?;
    Ok(Type2Info {
        flags,
        target_info,
        timestamp,
    })
}

/// Walks the AV pairs (MS-NLMP §2.2.2.1); returns MsvAvTimestamp if present.
fn walk_av_pairs(ti: &[u8]) -> Result<Option<i64>, AuthError> {
    let mut pos = 0usize;
    let mut timestamp = None;
    loop {
        let (Some(id), Some(len)) = (u16_at(ti, pos), u16_at(ti, pos + 2)) else {
            return Err(AuthError::NtlmMalformed(
                "target info not terminated by MsvAvEOL",
            ));
        };
        let len = usize::from(len);
        let value = ti
            .get(pos + 4..pos + 4 + len)
            .ok_or(AuthError::NtlmMalformed(
                "AV pair past the end of target info",
            ))?;
        match id {
            MSV_AV_EOL => {
                if len != 0 {
                    return Err(AuthError::NtlmMalformed("MsvAvEOL with a value"));
                }
                if pos + 4 != ti.len() {
                    return Err(AuthError::NtlmMalformed("bytes after MsvAvEOL"));
                }
                return Ok(timestamp);
            }
            MSV_AV_TIMESTAMP => {
                let t: [u8; 8] = value
                    .try_into()
                    .map_err(|_| AuthError::NtlmMalformed("MsvAvTimestamp not 8 bytes"))?;
                timestamp = Some(i64::from_le_bytes(t));
            }
            _ => {}
        }
        // Every defined value is even-length (UTF-16 names, 4/8/16/48-byte structures), and
        // ntlmclient refuses odd ones: say so here, with a reason.
        if len % 2 != 0 {
            return Err(AuthError::NtlmMalformed("odd AV pair length"));
        }
        pos += 4 + len;
    }
}

/// The credentials as ntlmclient wants them, with name lengths bounded.
fn ntlm_credentials(creds: &Credentials) -> Result<ntlmclient::Credentials, AuthError> {
    let domain = creds.domain.clone().unwrap_or_default();
    for name in [&creds.user, &domain] {
        if name.encode_utf16().count() > MAX_NTLM_NAME_CHARS {
            return Err(AuthError::Limit {
                name: "max_ntlm_name_chars",
                max: MAX_NTLM_NAME_CHARS as u64,
            });
        }
    }
    Ok(ntlmclient::Credentials {
        username: creds.user.clone(),
        password: creds.password.expose().to_owned(),
        domain,
    })
}

/// Now in NTLM time: 100 ns units since 1601-01-01 UTC. Computed here with saturating
/// arithmetic rather than with `ntlmclient::get_ntlm_time`, which multiplies the whole span since
/// 1601 by 10^7 as a chrono `TimeDelta` (beyond `TimeDelta::MAX`; it only works because chrono
/// 0.4.45's `checked_mul` checks the seconds against i64, and it `expect`s the result).
fn ntlm_time_now() -> i64 {
    const UNIX_TO_1601_SECS: i64 = 11_644_473_600;
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since_unix.as_secs()).unwrap_or(0);
    (secs + UNIX_TO_1601_SECS)
        .saturating_mul(10_000_000)
        .saturating_add(i64::from(since_unix.subsec_nanos() / 100))
}

/// Runs ntlmclient code; a panic becomes an error instead of unwinding into the caller.
fn guarded<T>(f: impl FnOnce() -> Result<T, AuthError>) -> Result<T, AuthError> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or(Err(AuthError::NtlmMalformed("ntlmclient panicked")))
}

/// ntlmclient parses the (validated) type-2 and builds the NTLMv2 type-3.
fn build_type3(
    type2: &[u8],
    target_info: &[u8],
    time: i64,
    info: &Type2Info,
    creds: &ntlmclient::Credentials,
) -> Result<Vec<u8>, AuthError> {
    let challenge = match Message::try_from(type2) {
        Ok(Message::Challenge(c)) => c,
        Ok(_) => return Err(AuthError::NtlmMalformed("not a type-2 (challenge) message")),
        Err(_) => {
            return Err(AuthError::NtlmMalformed(
                "ntlmclient refused the type-2 message",
            ))
        }
    };
    // The target info goes back byte for byte as the server sent it (MS-NLMP §3.1.5.1.2), not
    // as ntlmclient would re-encode it.
    let mut response =
        ntlmclient::respond_challenge_ntlm_v2(challenge.challenge, target_info, time, creds);
    // ntlmclient puts the session base key in EncryptedRandomSessionKey. Without
    // NEGOTIATE_KEY_EXCH (never requested) that field is unused, and sending the key in clear
    // would only help an eavesdropper: send it empty.
    response.session_key.clear();
    if info.timestamp.is_some() {
        response.lm_response = vec![0; 24];
    }
    // The negotiated flags: what we offered and the server accepted. OEM is kept only as
    // ntlmclient's fallback string encoding when the server refuses Unicode.
    let flags = (TYPE1_FLAGS | Flags::NEGOTIATE_OEM) & info.flags;
    let type3 = response
        .to_message(creds, WORKSTATION, flags)
        .to_bytes()
        .map_err(|_| AuthError::NtlmMalformed("server accepted neither Unicode nor OEM"))?;
    Ok(type3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityBuilder;
    use hmac::{Hmac, Mac};
    use md5::Md5;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// MS-NLMP §4.2.4.3: the CHALLENGE_MESSAGE of the NTLMv2 example (target name "Server",
    /// flags e28a8233, Version 6.0.6000 rev 15, AV pairs NbDomainName "Domain", NbComputerName
    /// "Server", EOL).
    const SPEC_TYPE2: &str = "4e544c4d53535000 02000000 0c000c00 38000000 33828ae2
        0123456789abcdef 0000000000000000 24002400 44000000 060070170000000f
        530065007200760065007200
        02000c0044006f006d00610069006e00 01000c00530065007200760065007200 00000000";

    fn spec_type2() -> Vec<u8> {
        let m = unhex(SPEC_TYPE2);
        assert_eq!(m.len(), 104);
        m
    }

    fn spec_target_info() -> Vec<u8> {
        spec_type2()[0x44..].to_vec()
    }

    fn spec_creds() -> Credentials {
        Credentials::new("Domain\\User", "Password")
    }

    fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
        let mut mac = <Hmac<Md5> as Mac>::new_from_slice(key).unwrap();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// MS-NLMP §3.3.2: temp = 0x01 0x01 Z(6) Time ClientChallenge Z(4) ServerName Z(4).
    fn temp(time: i64, client_challenge: &[u8], target_info: &[u8]) -> Vec<u8> {
        let mut t = vec![1, 1, 0, 0, 0, 0, 0, 0];
        t.extend_from_slice(&time.to_le_bytes());
        t.extend_from_slice(client_challenge);
        t.extend_from_slice(&[0; 4]);
        t.extend_from_slice(target_info);
        t.extend_from_slice(&[0; 4]);
        t
    }

    fn ntowfv2() -> [u8; 16] {
        ntlmclient::ntlm_v2_password_func(&ntlm_credentials(&spec_creds()).unwrap())
    }

    #[test]
    fn kat_ms_nlmp_4_2_4() {
        let server_challenge = unhex("0123456789abcdef");
        let client_challenge = [0xaa; 8];
        // §4.2.4.1.1 NTOWFv2.
        assert_eq!(
            ntowfv2().to_vec(),
            unhex("0c868a403bfd7a93a3001ef22ef02e3f")
        );
        // §4.2.4.2.2 NTProofStr, time 0.
        let t = temp(0, &client_challenge, &spec_target_info());
        let proof = hmac_md5(&ntowfv2(), &[&server_challenge, &t]);
        assert_eq!(proof.to_vec(), unhex("68cd0ab851e51c96aabc927bebef6a1c"));
        // §4.2.4.1.2 SessionBaseKey and §4.2.4.2.1 LMv2 response.
        assert_eq!(
            hmac_md5(&ntowfv2(), &[&proof]).to_vec(),
            unhex("8de40ccadbc14a82f15cb0ad0de95ca3")
        );
        assert_eq!(
            hmac_md5(&ntowfv2(), &[&server_challenge, &client_challenge]).to_vec(),
            unhex("86c35097ac9cec102554764a57cccc19")
        );
    }

    fn identity() -> Identity {
        IdentityBuilder::new()
            .server_credentials(&[crate::Scheme::Ntlm], &spec_creds())
            .finish()
    }

    fn answer(type2: &[u8]) -> Result<(String, NtlmBound), AuthError> {
        let (_, expect) = start(&spec_creds());
        expect.on_challenge(&STANDARD.encode(type2), &identity())
    }

    fn parse_type3(value: &str) -> ntlmclient::AuthenticateMessage {
        let b64 = value.strip_prefix("NTLM ").unwrap();
        match Message::try_from(STANDARD.decode(b64).unwrap().as_slice()).unwrap() {
            Message::Authenticate(a) => a,
            other => panic!("{other:?}"),
        }
    }

    /// ntlmclient's type-3 for the spec's type-2 verifies against our own computation.
    #[test]
    fn type3_verifies_against_own_computation() {
        let (value, bound) = answer(&spec_type2()).unwrap();
        assert_eq!(bound.identity(), &identity());
        let a = parse_type3(&value);
        assert_eq!(a.user_name, "User");
        assert_eq!(a.domain_name, "Domain");
        assert_eq!(a.workstation_name, "FERRY");
        assert!(a.session_key.is_empty());
        assert!(a
            .flags
            .contains(Flags::NEGOTIATE_UNICODE | Flags::NEGOTIATE_NTLM));
        assert!(a
            .flags
            .contains(Flags::NEGOTIATE_NTLM2_KEY | Flags::NEGOTIATE_TARGET_INFO));
        assert!(!a.flags.contains(Flags::NEGOTIATE_KEY_EXCHANGE));
        assert!(!a.flags.contains(Flags::NEGOTIATE_SEAL));
        let (proof, blob) = a.ntlm_response.split_at(16);
        assert_eq!(&blob[..8], &[1, 1, 0, 0, 0, 0, 0, 0]);
        let time = i64::from_le_bytes(blob[8..16].try_into().unwrap());
        assert!(time > 130_000_000_000_000_000, "time {time}"); // after 2012
        let client_challenge = &blob[16..24];
        assert_eq!(&blob[28..blob.len() - 4], &spec_target_info()[..]);
        let expected = temp(time, client_challenge, &spec_target_info());
        assert_eq!(blob, &expected[..]);
        let sc = unhex("0123456789abcdef");
        assert_eq!(proof, hmac_md5(&ntowfv2(), &[&sc, blob]));
        // No MsvAvTimestamp in the spec's target info: an LMv2 response.
        let mut lm = hmac_md5(&ntowfv2(), &[&sc, client_challenge]).to_vec();
        lm.extend_from_slice(client_challenge);
        assert_eq!(a.lm_response, lm);
    }

    /// Builds a type-2 around `target_info` (Unicode, target info flag, no version).
    fn type2_with(target_info: &[u8], flags: Flags) -> Vec<u8> {
        let name: Vec<u8> = "Server".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut m = Vec::new();
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&2u32.to_le_bytes());
        m.extend_from_slice(&(name.len() as u16).to_le_bytes());
        m.extend_from_slice(&(name.len() as u16).to_le_bytes());
        m.extend_from_slice(&48u32.to_le_bytes());
        m.extend_from_slice(&flags.bits().to_le_bytes());
        m.extend_from_slice(&unhex("0123456789abcdef"));
        m.extend_from_slice(&[0; 8]);
        let ti_len = target_info.len() as u16;
        m.extend_from_slice(&ti_len.to_le_bytes());
        m.extend_from_slice(&ti_len.to_le_bytes());
        m.extend_from_slice(&(48 + name.len() as u32).to_le_bytes());
        m.extend_from_slice(&name);
        m.extend_from_slice(target_info);
        m
    }

    const V2_FLAGS: Flags = Flags::NEGOTIATE_UNICODE
        .union(Flags::NEGOTIATE_NTLM)
        .union(Flags::NEGOTIATE_TARGET_INFO)
        .union(Flags::NEGOTIATE_NTLM2_KEY);

    fn av(id: u16, value: &[u8]) -> Vec<u8> {
        let mut v = id.to_le_bytes().to_vec();
        v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn built_type2_answers() {
        let mut ti = av(2, &[b'D', 0]);
        ti.extend(av(0, &[]));
        assert!(answer(&type2_with(&ti, V2_FLAGS)).is_ok());
        // With version flag but a 48-byte fixed part, the name would overlap the Version.
        assert!(answer(&type2_with(&ti, V2_FLAGS | Flags::NEGOTIATE_VERSION)).is_err());
    }

    #[test]
    fn timestamp_is_echoed_and_lm_is_zero() {
        let stamp = 0x01d2_3456_789a_bcdei64;
        let mut ti = av(2, &[b'D', 0]);
        ti.extend(av(7, &stamp.to_le_bytes()));
        ti.extend(av(0, &[]));
        let (value, _) = answer(&type2_with(&ti, V2_FLAGS)).unwrap();
        let a = parse_type3(&value);
        assert_eq!(a.lm_response, vec![0; 24]);
        let time = i64::from_le_bytes(a.ntlm_response[24..32].try_into().unwrap());
        assert_eq!(time, stamp);
    }

    #[test]
    fn type1_matches_ntlmclient() {
        let (value, _) = start(&spec_creds());
        let b64 = value.strip_prefix("NTLM ").unwrap();
        let ours = STANDARD.decode(b64).unwrap();
        let theirs = Message::Negotiate(ntlmclient::NegotiateMessage {
            flags: TYPE1_FLAGS,
            supplied_domain: String::new(),
            supplied_workstation: String::new(),
            os_version: Default::default(),
        })
        .to_bytes()
        .unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 40);
        assert_eq!(&ours[12..16], &TYPE1_FLAGS.bits().to_le_bytes());
        // ntlmclient cannot read back the 40-byte type-1 it writes (its parser wants 44 bytes):
        // a quirk, harmless since servers, not ntlmclient, read it.
        assert!(Message::try_from(ours.as_slice()).is_err());
    }

    fn malformed(r: Result<(String, NtlmBound), AuthError>) -> &'static str {
        match r {
            Err(AuthError::NtlmMalformed(why)) => why,
            other => panic!("expected NtlmMalformed, got {other:?}"),
        }
    }

    #[test]
    fn hostile_type2s() {
        let good = spec_type2();
        // Truncated at every length.
        for n in 0..good.len() {
            assert!(answer(&good[..n]).is_err(), "prefix {n}");
        }
        // Wrong signature, types 1 and 3.
        let mut m = good.clone();
        m[0] = b'X';
        assert_eq!(malformed(answer(&m)), "bad signature");
        for t in [1u8, 3, 0, 0xff] {
            let mut m = good.clone();
            m[8] = t;
            assert_eq!(malformed(answer(&m)), "not a type-2 (challenge) message");
        }
        // Target info offset past the end, and wrapping.
        for offset in [104u32, 105, 0xffff_fff0, u32::MAX] {
            let mut m = good.clone();
            m[44..48].copy_from_slice(&offset.to_le_bytes());
            assert!(malformed(answer(&m)).contains("past the end"), "{offset}");
        }
        // Offset into the header.
        let mut m = good.clone();
        m[44..48].copy_from_slice(&4u32.to_le_bytes());
        assert_eq!(
            malformed(answer(&m)),
            "security buffer overlaps the fixed header"
        );
        // Lengths past the end (target name, target info, MaxLen).
        for (at, len) in [(12usize, 0x4000u16), (40, 37), (40, 0xffff), (42, 0xffff)] {
            let mut m = good.clone();
            m[at..at + 2].copy_from_slice(&len.to_le_bytes());
            assert!(malformed(answer(&m)).contains("past the end"), "{at} {len}");
        }
    }

    #[test]
    fn bad_av_pairs() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (av(2, &[b'D', 0]), "target info not terminated by MsvAvEOL"),
            (
                [av(2, &[b'D', 0]), vec![0, 0]].concat(),
                "target info not terminated by MsvAvEOL",
            ),
            (
                [av(2, &[b'D', 0]), vec![1, 0, 0x40, 0]].concat(),
                "AV pair past the end of target info",
            ),
            ([av(2, b"D"), av(0, &[])].concat(), "odd AV pair length"),
            (
                [av(7, &[0; 4]), av(0, &[])].concat(),
                "MsvAvTimestamp not 8 bytes",
            ),
            ([av(0, &[0, 0])].concat(), "MsvAvEOL with a value"),
            (
                [av(0, &[]), av(2, &[b'D', 0])].concat(),
                "bytes after MsvAvEOL",
            ),
        ];
        for (ti, why) in cases {
            assert_eq!(malformed(answer(&type2_with(&ti, V2_FLAGS))), why);
        }
    }

    #[test]
    fn ntlm_v1_refused() {
        let ti = [av(2, &[b'D', 0]), av(0, &[])].concat();
        let no_flag = V2_FLAGS.difference(Flags::NEGOTIATE_TARGET_INFO);
        assert_eq!(
            answer(&type2_with(&ti, no_flag)).unwrap_err(),
            AuthError::NtlmV1Refused
        );
        assert_eq!(
            answer(&type2_with(&[], V2_FLAGS)).unwrap_err(),
            AuthError::NtlmV1Refused
        );
    }

    #[test]
    fn not_base64_and_too_large() {
        let (_, e) = start(&spec_creds());
        assert_eq!(
            e.on_challenge("not base64!", &identity()).unwrap_err(),
            AuthError::NtlmMalformed("not base64")
        );
        // ~64 KiB of target info: refused by size before anything parses it.
        let huge = [av(2, &vec![b'D'; 65_000]), av(0, &[])].concat();
        assert_eq!(
            answer(&type2_with(&huge, V2_FLAGS)).unwrap_err(),
            AuthError::Limit {
                name: "max_ntlm_message_bytes",
                max: MAX_NTLM_MESSAGE_BYTES as u64
            }
        );
        let (_, e) = start(&spec_creds());
        let long = "A".repeat(MAX_NTLM_MESSAGE_BYTES * 2);
        assert!(matches!(
            e.on_challenge(&long, &identity()),
            Err(AuthError::Limit { .. })
        ));
        // Just over the target info limit, within the message limit.
        let big = [av(2, &vec![b'D'; MAX_NTLM_TARGET_INFO_BYTES]), av(0, &[])].concat();
        assert_eq!(
            answer(&type2_with(&big, V2_FLAGS)).unwrap_err(),
            AuthError::Limit {
                name: "max_ntlm_target_info_bytes",
                max: MAX_NTLM_TARGET_INFO_BYTES as u64
            }
        );
        // And validation alone refuses the 64 KiB one too.
        assert!(validate_type2(&type2_with(&huge, V2_FLAGS)).is_err());
    }

    #[test]
    fn padding_optional_and_whitespace_trimmed() {
        let b64 = STANDARD.encode(spec_type2());
        let (_, e) = start(&spec_creds());
        assert!(e
            .on_challenge(&format!(" {} ", b64.trim_end_matches('=')), &identity())
            .is_ok());
    }

    #[test]
    fn long_names_refused() {
        let creds = Credentials::new(&"u".repeat(MAX_NTLM_NAME_CHARS + 1), "p");
        let (_, e) = start(&creds);
        assert!(matches!(
            e.on_challenge(&STANDARD.encode(spec_type2()), &identity()),
            Err(AuthError::Limit {
                name: "max_ntlm_name_chars",
                ..
            })
        ));
        // 40 000 characters would make ntlmclient panic ("buffer too long for u16 length").
        let creds = Credentials::new(&"u".repeat(40_000), "p");
        let (_, e) = start(&creds);
        assert!(e
            .on_challenge(&STANDARD.encode(spec_type2()), &identity())
            .is_err());
    }

    /// The panic this module guards against: ntlmclient 0.2.0 with ~64 KiB of target info.
    #[test]
    fn ntlmclient_panics_on_huge_target_info_and_the_guard_catches_it() {
        let creds = ntlm_credentials(&spec_creds()).unwrap();
        let r = guarded(|| {
            let resp = ntlmclient::respond_challenge_ntlm_v2([0; 8], &[0u8; 65_500], 0, &creds);
            resp.to_message(&creds, WORKSTATION, TYPE1_FLAGS)
                .to_bytes()
                .map_err(|_| AuthError::NtlmMalformed("storing"))
        });
        assert_eq!(r, Err(AuthError::NtlmMalformed("ntlmclient panicked")));
    }

    /// Our clock agrees with ntlmclient's (to within a minute).
    #[test]
    fn own_ntlm_time_agrees_with_ntlmclient() {
        let theirs = ntlmclient::get_ntlm_time();
        let ours = ntlm_time_now();
        assert!((theirs - ours).abs() < 600_000_000, "{theirs} {ours}");
        assert!(ours > 133_000_000_000_000_000); // after 2022
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn mutate(rng: &mut Rng, m: &mut Vec<u8>) {
        const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xfe, 0xff, 0x24, 0x44];
        for _ in 0..1 + rng.below(4) {
            match rng.below(6) {
                0 => {
                    let i = rng.below(m.len());
                    if let Some(b) = m.get_mut(i) {
                        *b ^= 1 << rng.below(8);
                    }
                }
                1 => {
                    let i = rng.below(m.len());
                    if let Some(b) = m.get_mut(i) {
                        *b = INTERESTING[rng.below(INTERESTING.len())];
                    }
                }
                2 => m.truncate(rng.below(m.len() + 1)),
                3 => {
                    let n = rng.below(64);
                    m.extend((0..n).map(|_| rng.next() as u8));
                }
                4 => {
                    // A security buffer or AV header field: length, MaxLen or offset.
                    let at =
                        [12usize, 14, 16, 40, 42, 44, 0x44, 0x46, 0x54, 0x56, 0x66][rng.below(11)];
                    let v = rng.next() as u16;
                    if let Some(s) = m.get_mut(at..at + 2) {
                        s.copy_from_slice(&v.to_le_bytes());
                    }
                }
                _ => {
                    // Flags.
                    let v = rng.next() as u32;
                    if let Some(s) = m.get_mut(20..24) {
                        s.copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
    }

    /// 20 000 random mutations of a valid type-2: no panic escapes, and whatever passes
    /// validation is handled by ntlmclient without panicking (the guard is never needed).
    #[test]
    fn random_mutations_never_panic() {
        let good = spec_type2();
        let creds = ntlm_credentials(&spec_creds()).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut passed = 0;
        for _ in 0..20_000 {
            let mut m = good.clone();
            mutate(&mut rng, &mut m);
            if let Ok(info) = validate_type2(&m) {
                passed += 1;
                let ti = &m[info.target_info.clone()];
                // Unguarded on purpose: a panic here fails the test.
                let _ = build_type3(&m, ti, 0, &info, &creds);
            }
            let _ = answer(&m);
            let (_, e) = start(&spec_creds());
            let _ = e.on_challenge(&String::from_utf8_lossy(&m), &identity());
        }
        assert!(passed > 100, "only {passed} mutations passed validation");
    }
}
