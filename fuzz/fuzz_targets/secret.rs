//! The secret format and the text guards: validation, the masked fingerprint
//! (never more than a few characters of the input) and `terminal_safe`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tok::secret;
use tok::text;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let valid = secret::validate(s).is_ok();
    if valid {
        assert!(secret::looks_like_secret(s));
    }
    let fp = secret::fingerprint_of(s);
    // A fingerprint shows a type prefix and a few characters, never the whole
    // of a secret long enough to matter.
    if s.chars().count() >= 16 {
        assert!(fp.chars().count() < s.chars().count(), "{fp:?}");
    }
    let safe = text::terminal_safe(s);
    assert!(!text::has_unsafe(&safe), "{safe:?}");
    assert!(!safe.contains('\n'));
});
