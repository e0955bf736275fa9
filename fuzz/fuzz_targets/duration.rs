//! TTL and time parsing (`--ttl`, `--since`, `--expires-at`): never a panic,
//! and an accepted TTL renders back to the same span.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tok::duration::{self, Ttl, MAX_SECONDS};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = s.parse::<Ttl>() {
        assert!(t.as_secs() > 0 && t.as_secs() <= MAX_SECONDS);
        let again: Ttl = t.to_string().parse().expect("a rendered TTL parses");
        assert_eq!(again, t);
        let now = chrono::Utc::now();
        let _ = duration::relative(now + t.delta(), now);
        let _ = duration::rough(t.as_secs());
    }
    let _ = tok::cli::parse_since(s);
    let _ = tok::cli::parse_time(s);
    let _ = tok::cli::parse_label(s);
});
