//! A `--routes` file: any text either parses or gets a message, and matching
//! a parsed file against any path never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tok::server::routes::Routes;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (file, path) = s.split_once('\u{0}').unwrap_or((s, "/"));
    if let Ok(routes) = Routes::parse(file) {
        for m in ["GET", "POST", "DELETE"] {
            let _ = routes.find(m, path);
        }
    }
});
