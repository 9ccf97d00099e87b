//! Content-Disposition: the sanitised name is one path component that never escapes the
//! directory (no separators, no `.`/`..`, no NUL or control bytes, no leading dot or dash, no
//! blank at either end) and is at most `MAX_NAME` (255) bytes; sanitising it again changes
//! nothing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(name) = ferry_transfer::disposition::filename(data)
        .and_then(|n| ferry_transfer::disposition::sanitize(&n))
    {
        assert!(!name.is_empty() && name != "." && name != "..");
        assert!(!name.contains(['/', '\\', '\0']) && !name.starts_with(['.', '-']));
        assert!(!name.starts_with(char::is_whitespace) && !name.ends_with(char::is_whitespace));
        assert!(!name.chars().any(char::is_control));
        assert_eq!(std::path::Path::new(&name).components().count(), 1);
        assert!(
            name.len() <= ferry_transfer::disposition::MAX_NAME,
            "{} bytes",
            name.len()
        );
        assert_eq!(
            ferry_transfer::disposition::sanitize(&name).as_deref(),
            Some(name.as_str())
        );
    }
});
