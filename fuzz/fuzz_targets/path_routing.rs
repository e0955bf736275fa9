//! Path canonicalisation and route matching, with the property of
//! docs/proxy.md: a path tok accepts is canonical (canonical again gives the
//! same), survives its encoding for the upstream, and no reading an upstream
//! with other path rules may make of it (`upstream_readings`) meets a route
//! that needs a scope the matched route did not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tok::server::path::{canonical_path, check_readings, encode_path, PROPERTY_ROUTES};
use tok::server::routes::Routes;

fn routes() -> &'static Routes {
    static R: OnceLock<Routes> = OnceLock::new();
    R.get_or_init(|| Routes::parse(PROPERTY_ROUTES).expect("the property routes parse"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let raw = format!("/{}", raw.trim_start_matches('/'));
    let Ok(c) = canonical_path(&raw) else {
        return;
    };
    assert!(c.starts_with('/'));
    assert!(!c.contains("//"), "{c:?}");
    assert_eq!(canonical_path(&c).as_deref(), Ok(c.as_str()), "not stable");
    let sent = encode_path(&c);
    assert_eq!(canonical_path(&sent).as_deref(), Ok(c.as_str()), "{sent:?}");
    if let Err(counterexample) = check_readings(routes(), &raw) {
        panic!("{counterexample}");
    }
});
