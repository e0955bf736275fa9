//! The config file and the plaintext credential file: any text loads or gets
//! a message, and a credential file's message never quotes a value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = toml::from_str::<tok::config::Config>(s);
    if let Err(message) = tok::credentials::file::parse_text(s) {
        // Every quoted string in the message is masked with `…`.
        assert!(!message.contains("secret = \"tok_"), "{message}");
    }
});
