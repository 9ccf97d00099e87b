//! NTLM type-2 handling: fuzzer bytes as the decoded message (base64-encoded for the API) and as
//! the raw token68 string. Never panics. libFuzzer's panic hook aborts before `catch_unwind` can
//! catch, so a validation gap that lets ntlmclient panic shows up here as a crash.
#![no_main]
use base64::{engine::general_purpose::STANDARD, Engine as _};
use ferry_auth::{ntlm, Credentials, Identity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let creds = Credentials::new("DOMAIN\\user", "password");
    let (_, expect) = ntlm::start(&creds);
    let _ = expect.on_challenge(&STANDARD.encode(data), &Identity::ANONYMOUS);
    let (_, expect) = ntlm::start(&creds);
    let _ = expect.on_challenge(&String::from_utf8_lossy(data), &Identity::ANONYMOUS);
});
