//! Admin API request bodies: any bytes are refused or give a request that the
//! model's checks accept or refuse with a message, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tok::model::check_new_token;
use tok::server::wire::{CreateRequest, LookupRequest, RevokeRequest, RotateRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<CreateRequest>(data) {
        let expires_at = req.expires_at.flatten();
        let new = req.into_new_token(expires_at);
        if check_new_token(&new).is_ok() {
            // What the checks let in is safe to print as it is.
            let texts = new.name.iter().chain(&new.description).chain(&new.scopes);
            let labels = new.labels.iter().flat_map(|(k, v)| [k, v]);
            for s in texts.chain(labels) {
                assert!(!tok::text::has_unsafe(s), "{s:?}");
            }
            let mut scopes = new.scopes.clone();
            scopes.sort();
            scopes.dedup();
            assert_eq!(scopes.len(), new.scopes.len(), "duplicate scopes let in");
        }
    }
    let _ = serde_json::from_slice::<LookupRequest>(data);
    let _ = serde_json::from_slice::<RevokeRequest>(data);
    let _ = serde_json::from_slice::<RotateRequest>(data);
});
