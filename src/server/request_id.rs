//! Request ids: one per request on either listener, answered as
//! `X-Request-Id`, sent to the upstream, and carried in the request's log
//! lines and audit entry so the three can be joined.
//!
//! An id is 16 hex digits: 8 random ones drawn once per process, then a
//! counter. Unique within a process and, with overwhelming odds, across
//! restarts; no system call per request. A client's own `X-Request-Id` is
//! never trusted (it would let one client forge another's trail).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::OnceLock;

pub const HEADER: &str = "x-request-id";

static PREFIX: OnceLock<u32> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A request's id, in the request's extensions for handlers that audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn next() -> RequestId {
        let prefix = *PREFIX.get_or_init(|| {
            let mut b = [0u8; 4];
            // Without randomness the ids are still unique within the process.
            let _ = getrandom::fill(&mut b);
            u32::from_le_bytes(b)
        });
        RequestId(format!("{prefix:08x}{:08x}", NEXT.fetch_add(1, Relaxed)))
    }

    pub fn header_value(&self) -> axum::http::HeaderValue {
        axum::http::HeaderValue::from_str(&self.0)
            .unwrap_or_else(|_| axum::http::HeaderValue::from_static("-"))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sixteen_hex_digits_and_differ() {
        let a = RequestId::next();
        let b = RequestId::next();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.0.len(), 16);
            assert!(id.0.bytes().all(|c| c.is_ascii_hexdigit()));
        }
        assert_eq!(a.0[..8], b.0[..8]);
    }
}
