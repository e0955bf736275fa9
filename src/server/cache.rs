//! The admission cache: what the store said about a secret, kept in memory so
//! that a request whose token was seen before needs no store read.
//!
//! Keyed by the SHA-256 of the secret, as the store is. Two bounded maps:
//! - *known* secrets hold their token row (whatever its state: expiry, revocation
//!   and use limits are decided from it per request, against the clock);
//! - *unknown* secrets are remembered as such, so that repeating a wrong token
//!   costs no store read either.
//!
//! They are bounded apart, oldest entry out first, so a flood of random secrets
//! only ever cycles the unknown map and never evicts a valid token.
//!
//! The cache never decides on its own what is current: a `Freshness` source
//! tells it which tokens changed ([`Change`]) before each use. SQLite's follower
//! is in `admission.rs`; another store (PostgreSQL's LISTEN/NOTIFY, say) pushes
//! the same `Change`s through [`Cache::forget`].
//!
//! A read that raced a change must not put back what the change took out: each
//! insert carries the [`Cache::epoch`] read before its store read, and is
//! dropped when a change was applied since.

use crate::model::Token;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// SHA-256 of a secret.
pub type Key = [u8; 32];

/// What a change source reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The token with this id changed (created, revoked, expiry, scopes or use
    /// limit set): its entry goes, and so do all unknown entries, since a new
    /// token's secret may be one of them.
    Token(String),
    /// Anything may have changed (the source lost track): everything goes.
    All,
}

/// Where the cache learns of changes committed elsewhere.
pub trait Freshness: Send + Sync {
    /// Applies to `cache`, through [`Cache::forget`], every change committed
    /// before this call began. Called before each use of the cache, so it must
    /// be cheap when nothing changed. On an error the caller reads the store.
    fn catch_up(&self, cache: &Cache) -> Result<(), crate::store::StoreError>;
}

/// What the cache holds for a secret.
pub enum Hit {
    Known(Arc<Token>),
    Unknown,
    Miss,
}

/// Sizes of the two maps.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub known: usize,
    pub unknown: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        // About 1 KiB per known token and 100 B per unknown secret at most.
        Bounds {
            known: 50_000,
            unknown: 20_000,
        }
    }
}

pub struct Cache {
    inner: Mutex<Inner>,
    epoch: AtomicU64,
    bounds: Bounds,
}

#[derive(Default)]
struct Inner {
    known: HashMap<Key, Arc<Token>, KeyHash>,
    known_order: VecDeque<Key>,
    by_id: HashMap<String, Key>,
    unknown: HashSet<Key, KeyHash>,
    unknown_order: VecDeque<Key>,
}

impl Cache {
    pub fn new(bounds: Bounds) -> Cache {
        Cache {
            inner: Mutex::new(Inner::default()),
            epoch: AtomicU64::new(0),
            bounds,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &Key) -> Hit {
        let inner = self.lock();
        if let Some(t) = inner.known.get(key) {
            return Hit::Known(Arc::clone(t));
        }
        if inner.unknown.contains(key) {
            return Hit::Unknown;
        }
        Hit::Miss
    }

    /// Read before a store read whose result will be inserted.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps what the store said about `key` (None: no such secret), unless a
    /// change was applied after `epoch` was read.
    pub fn insert(&self, epoch: u64, key: Key, token: Option<Arc<Token>>) {
        let mut guard = self.lock();
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        let Inner {
            known,
            known_order,
            by_id,
            unknown,
            unknown_order,
        } = &mut *guard;
        match token {
            Some(t) => {
                if let Some(old) = by_id.insert(t.id.clone(), key) {
                    if old != key {
                        known.remove(&old);
                    }
                }
                if known.insert(key, t).is_none() {
                    known_order.push_back(key);
                }
                while known.len() > self.bounds.known {
                    let Some(k) = known_order.pop_front() else {
                        break;
                    };
                    if let Some(t) = known.remove(&k) {
                        by_id.remove(&t.id);
                    }
                }
                compact(known_order, self.bounds.known, |k| known.contains_key(k));
            }
            None => {
                if unknown.insert(key) {
                    unknown_order.push_back(key);
                }
                while unknown.len() > self.bounds.unknown {
                    let Some(k) = unknown_order.pop_front() else {
                        break;
                    };
                    unknown.remove(&k);
                }
            }
        }
    }

    /// Applies a change: see [`Change`].
    pub fn forget(&self, change: &Change) {
        let mut inner = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match change {
            Change::Token(id) => {
                if let Some(k) = inner.by_id.remove(id) {
                    inner.known.remove(&k);
                }
            }
            Change::All => {
                inner.known.clear();
                inner.known_order.clear();
                inner.by_id.clear();
            }
        }
        inner.unknown.clear();
        inner.unknown_order.clear();
        let bound = self.bounds.known;
        let Inner {
            known, known_order, ..
        } = &mut *inner;
        compact(known_order, bound, |k| known.contains_key(k));
    }

    /// How many (known, unknown) entries are held.
    pub fn len(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.known.len(), inner.unknown.len())
    }
}

/// Forgotten keys stay in the eviction order until they reach its front; when
/// they make up most of it, it is rebuilt, so it stays within twice the bound.
fn compact(order: &mut VecDeque<Key>, bound: usize, live: impl Fn(&Key) -> bool) {
    if order.len() > 2 * bound.max(1) {
        order.retain(|k| live(k));
    }
}

/// Keys are SHA-256 outputs, uniform already and not chosen by a client
/// (finding a secret whose hash collides with another's in a map is as hard as
/// a preimage): their first eight bytes are the map's hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

type KeyHash = BuildHasherDefault<KeyHasher>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{State, Token};
    use chrono::Utc;

    /// An active token with no scopes, expiry or use limit.
    pub(crate) fn token(id: &str) -> Arc<Token> {
        Arc::new(Token {
            id: id.into(),
            name: None,
            description: None,
            scopes: vec![],
            labels: Default::default(),
            created_at: Utc::now(),
            created_by: None,
            expires_at: None,
            max_uses: None,
            uses: 0,
            last_used_at: None,
            state: State::Active,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: None,
            fingerprint: String::new(),
            rate: None,
            quota: None,
            allow_ip: Vec::new(),
        })
    }

    fn key(i: u64) -> Key {
        use sha2::Digest;
        sha2::Sha256::digest(i.to_le_bytes()).into()
    }

    #[test]
    fn a_flood_of_unknown_secrets_neither_evicts_known_ones_nor_grows() {
        let c = Cache::new(Bounds {
            known: 100,
            unknown: 1_000,
        });
        for i in 0..50 {
            c.insert(c.epoch(), key(i), Some(token(&format!("tk_{i}"))));
        }
        for i in 1_000..101_000 {
            c.insert(c.epoch(), key(i), None);
        }
        assert_eq!(c.len(), (50, 1_000));
        for i in 0..50 {
            assert!(matches!(c.get(&key(i)), Hit::Known(t) if t.id == format!("tk_{i}")));
        }
        assert!(matches!(c.get(&key(100_999)), Hit::Unknown));
        assert!(
            matches!(c.get(&key(1_000)), Hit::Miss),
            "the oldest went first"
        );
        let inner = c.lock();
        assert!(inner.unknown_order.len() <= 1_000);
    }

    #[test]
    fn known_entries_are_bounded_too() {
        let c = Cache::new(Bounds {
            known: 10,
            unknown: 10,
        });
        for i in 0..1_000 {
            c.insert(c.epoch(), key(i), Some(token(&format!("tk_{i}"))));
            if i % 3 == 0 {
                c.forget(&Change::Token(format!("tk_{i}")));
            }
        }
        assert!(c.len().0 <= 10);
        let inner = c.lock();
        assert!(inner.by_id.len() == inner.known.len());
        assert!(inner.known_order.len() <= 20);
    }

    #[test]
    fn a_change_removes_its_token_and_every_unknown_entry() {
        let c = Cache::new(Bounds::default());
        c.insert(c.epoch(), key(1), Some(token("tk_a")));
        c.insert(c.epoch(), key(2), Some(token("tk_b")));
        c.insert(c.epoch(), key(3), None);
        c.forget(&Change::Token("tk_a".into()));
        assert!(matches!(c.get(&key(1)), Hit::Miss));
        assert!(matches!(c.get(&key(2)), Hit::Known(_)));
        assert!(matches!(c.get(&key(3)), Hit::Miss));
        c.forget(&Change::All);
        assert_eq!(c.len(), (0, 0));
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let c = Cache::new(Bounds::default());
        let before = c.epoch();
        c.forget(&Change::Token("tk_a".into()));
        c.insert(before, key(1), Some(token("tk_a")));
        c.insert(before, key(2), None);
        assert_eq!(c.len(), (0, 0));
        c.insert(c.epoch(), key(1), Some(token("tk_a")));
        assert_eq!(c.len(), (1, 0));
    }
}
