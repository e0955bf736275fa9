//! A hostile gateway: what comes back from a gateway's admin API, decoded as
//! the drivers decode it (`http_client::Answer`, which every gateway driver
//! reads its answers through, and the tok driver's wire types), then shown as
//! tok shows it. Nothing panics; nothing a gateway sends reaches a terminal
//! raw (rendered tokens and error snippets hold no control, bidi or invisible
//! character); and an error never quotes the secret the request carried.
//!
//! The drivers' own field mappings are private to their modules
//! (src/drivers/); their answers reach the terminal through the same
//! renderers checked here.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tok::drivers::http_client::{normalize_url, snippet, Answer};
use tok::secret::Secret;
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

/// The secret a driver sent; the seeds put it in answers, as a gateway that
/// echoes its input would.
const SENT: &str = "tok_FuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuz0000";

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => (200, data),
    };
    let answer = Answer {
        status,
        body: body.to_vec(),
        url: "https://gw.example/admin".into(),
    };
    let sent = Secret::new(SENT);
    let s = answer.snippet(&[&sent]);
    assert!(!has_unsafe(&s), "{s:?}");
    assert!(!s.contains(SENT), "{s:?}");
    let e = answer.http_error(&[&sent]).to_string();
    assert!(!e.contains(SENT), "{e:?}");
    let _ = answer.value();
    let _ = answer
        .json::<serde_json::Value>()
        .map_err(|e| e.to_string());
    assert!(!has_unsafe(&snippet(body)));
    if let Ok(list) = serde_json::from_slice::<ListResponse>(body) {
        list.tokens.iter().for_each(shown_safely);
    }
    if let Ok(c) = serde_json::from_slice::<CreatedResponse>(body) {
        shown_safely(&c.token);
    }
    if let Ok(r) = serde_json::from_slice::<RotateResponse>(body) {
        shown_safely(&r.token);
        shown_safely(&r.old);
    }
    let _ = serde_json::from_slice::<AuditPage>(body);
    let _ = serde_json::from_slice::<ErrorBody>(body);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = normalize_url(text);
    }
});
