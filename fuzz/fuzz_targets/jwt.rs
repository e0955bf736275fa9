//! `tok inspect -` with a JWT: decoding hostile text never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = tok::commands::inspect::decode_jwt(s);
    }
});
