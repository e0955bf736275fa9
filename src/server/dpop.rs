//! The DPoP check of a request to the proxy or the forward-auth endpoint
//! (RFC 9449 §7): the proof is verified before the token is looked up
//! ([`proof`], every stateless check of §4.3 in `crate::dpop`), then
//! admission matches it against the token's binding and remembers its `jti`
//! ([`bind`]) before anything is spent, so a refused proof costs the token
//! neither a use nor its rate.
//!
//! - A token bound to a key (`cnf.jkt`) passes only as `Authorization: DPoP`
//!   with a proof signed by that key (§7.1); sent as `Bearer` it is refused
//!   (§7.2), whatever else comes with it.
//! - An unbound token sent as `DPoP` is refused too: the scheme claims a
//!   binding the token does not have.
//! - Refusals are 401 with `WWW-Authenticate: DPoP algs="…", error=…`:
//!   `invalid_dpop_proof` for the proof, `invalid_token` for the token (§7.1).
//! - The replay cache (§11.1) keeps a `jti`, per key, for as long as its
//!   proof's `iat` stays in the window, at most [`REPLAY_CAPACITY`] of them;
//!   when full of live entries a new proof is refused (fail closed) rather
//!   than an old `jti` forgotten. It is per process: several `tok serve`
//!   nodes each keep their own (docs/reuse.md).

use crate::dpop::{Proof, ProofError, MAX_AGE_SECS, MAX_PROOF_BYTES};
use crate::model::Token;
use axum::http::HeaderMap;
use sha2::Digest;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// The request a proof must name: `htm` and the parts of `htu`.
pub struct Target<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    pub authority: &'a str,
    /// The path as the client sent it; a query is cut off.
    pub path: &'a str,
}

impl Target<'_> {
    fn htu(&self) -> String {
        let path = self.path.split(['?', '#']).next().unwrap_or("/");
        format!("{}://{}{path}", self.scheme, self.authority)
    }
}

/// The `Authorization` scheme a token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Dpop,
}

/// The verified proof of a request sent as `DPoP`; None for `Bearer`.
pub fn proof(
    headers: &HeaderMap,
    scheme: Scheme,
    token: &str,
    target: &Target<'_>,
    now: i64,
) -> Result<Option<Proof>, ProofError> {
    if scheme == Scheme::Bearer {
        return Ok(None);
    }
    let mut values = headers.get_all("dpop").iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return Err(ProofError::NotOne);
    };
    if v.len() > MAX_PROOF_BYTES {
        return Err(ProofError::TooLarge);
    }
    let v = v
        .to_str()
        .map_err(|_| ProofError::Jose(crate::jose::JoseError::Malformed))?;
    crate::dpop::verify(v.trim(), target.method, &target.htu(), token, now).map(Some)
}

/// Why a token and its proof do not go together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbound {
    /// A bound token sent as `Bearer`.
    Bearer,
    /// An unbound token sent as `DPoP`.
    NotBound,
    /// The proof is signed by another key than the token's.
    OtherKey,
    /// The proof's `jti` was seen before.
    Replayed,
    /// The replay cache is full of live entries.
    Busy,
}

impl Unbound {
    /// Whether the fault is the proof's (`invalid_dpop_proof`) rather than
    /// the token's (`invalid_token`).
    pub fn is_proof(self) -> bool {
        matches!(self, Unbound::OtherKey | Unbound::Replayed | Unbound::Busy)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unbound::Bearer => {
                "the token is DPoP-bound: send it as `Authorization: DPoP` with a proof"
            }
            Unbound::NotBound => "the token is not DPoP-bound: send it as `Authorization: Bearer`",
            Unbound::OtherKey => {
                "the DPoP proof is signed by another key than the token is bound to"
            }
            Unbound::Replayed => "the DPoP proof was used before; make a new one for each request",
            Unbound::Busy => "too many DPoP proofs to remember; try again",
        }
    }
}

/// Matches `proof` against `token`'s binding and remembers its `jti`.
pub fn bind(
    token: &Token,
    proof: Option<&Proof>,
    replay: &Replay,
    now: i64,
) -> Result<(), Unbound> {
    match (&token.cnf, proof) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(Unbound::Bearer),
        (None, Some(_)) => Err(Unbound::NotBound),
        (Some(c), Some(p)) => {
            if c.jkt != p.jkt {
                return Err(Unbound::OtherKey);
            }
            replay.first_use(p, now)
        }
    }
}

/// The most proofs remembered at once.
pub const REPLAY_CAPACITY: usize = 500_000;

/// The `jti`s of accepted proofs, each until its proof would be too old.
pub struct Replay {
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    keys: HashSet<u128>,
    /// (forget at, key), in the order they came.
    order: VecDeque<(i64, u128)>,
}

impl Default for Replay {
    fn default() -> Self {
        Replay::with_capacity(REPLAY_CAPACITY)
    }
}

impl Replay {
    pub fn with_capacity(capacity: usize) -> Replay {
        Replay {
            capacity,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Ok the first time a key's `jti` is seen while its proof is live.
    fn first_use(&self, p: &Proof, now: i64) -> Result<(), Unbound> {
        let digest = sha2::Sha256::new()
            .chain_update(p.jkt.as_bytes())
            .chain_update([0])
            .chain_update(p.jti.as_bytes())
            .finalize();
        let key = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
        let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Entries come in about the order they expire; one that lingers a
        // little past its time costs only memory.
        while let Some(&(until, k)) = s.order.front() {
            if until >= now {
                break;
            }
            s.order.pop_front();
            s.keys.remove(&k);
        }
        if s.keys.contains(&key) {
            return Err(Unbound::Replayed);
        }
        if s.keys.len() >= self.capacity {
            return Err(Unbound::Busy);
        }
        s.keys.insert(key);
        s.order.push_back((p.iat + MAX_AGE_SECS, key));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(jti: &str, iat: i64) -> Proof {
        Proof {
            jkt: "k".into(),
            jti: jti.into(),
            iat,
        }
    }

    #[test]
    fn a_jti_passes_once_while_live_and_the_cache_stays_bounded() {
        let r = Replay::with_capacity(2);
        assert_eq!(r.first_use(&p("a", 100), 100), Ok(()));
        assert_eq!(r.first_use(&p("a", 100), 120), Err(Unbound::Replayed));
        let other_key = Proof {
            jkt: "other".into(),
            ..p("a", 100)
        };
        assert_eq!(r.first_use(&other_key, 100), Ok(()));
        assert_eq!(r.first_use(&p("b", 100), 100), Err(Unbound::Busy));
        // Once "a" would be too old anyway, its room is free again.
        assert_eq!(r.first_use(&p("b", 161), 161), Ok(()));
    }
}
