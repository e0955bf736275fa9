//! A hostile gateway: what comes back from a gateway's admin API, decoded as
//! the drivers decode it (the tok driver's wire types; the shared helpers that
//! every driver's error path uses), then shown as tok shows it. Nothing
//! panics, and nothing a gateway sends reaches a terminal raw: the rendered
//! token and the error snippet hold no control, bidi or invisible character.
//!
//! The other drivers' decoders are private to their modules (src/drivers/);
//! their answers reach the terminal through the same renderers checked here.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tok::drivers::http_client::{display_url, normalize_url, redact_url, snippet};
use tok::server::wire::{AuditPage, CreatedResponse, ErrorBody, ListResponse, RotateResponse};
use tok::text::has_unsafe;

fn shown_safely(t: &tok::model::Token) {
    let mut out = Vec::new();
    tok::output::write_details(&mut out, t, chrono::Utc::now()).expect("write to a Vec");
    let out = String::from_utf8(out).expect("rendered as UTF-8");
    for line in out.lines() {
        assert!(!has_unsafe(line), "{line:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let s = snippet(data);
    assert!(!has_unsafe(&s), "{s:?}");
    if let Ok(list) = serde_json::from_slice::<ListResponse>(data) {
        list.tokens.iter().for_each(shown_safely);
    }
    if let Ok(c) = serde_json::from_slice::<CreatedResponse>(data) {
        shown_safely(&c.token);
    }
    if let Ok(r) = serde_json::from_slice::<RotateResponse>(data) {
        shown_safely(&r.token);
        shown_safely(&r.old);
    }
    let _ = serde_json::from_slice::<AuditPage>(data);
    let _ = serde_json::from_slice::<ErrorBody>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = normalize_url(text);
        let _ = display_url(text);
        assert!(!redact_url(text).contains("?") || redact_url(text).ends_with("?…"));
    }
});
