//! JWS signature checks over JWKs, with `ring` (already in the tree through
//! rustls): the one place tok verifies a signed JWT or proof. `tok serve`'s
//! token exchange (server/federation) uses it for CI ID tokens; DPoP proofs can
//! use it the same way.
//!
//! Followed:
//! - RFC 7515 (JWS) §3.1 compact serialization, §4.1.11 `crit`, §5.2 validation;
//! - RFC 7517 (JWK) §4 parameters (`kty`, `use`, `alg`, `kid`);
//! - RFC 7518 (JWA) §3.3 RS256 (RSASSA-PKCS1-v1_5 SHA-256, keys of 2048 bits
//!   or more), §3.4 ES256 (P-256, the signature is R‖S, 64 bytes), §6.2.1.1
//!   EC public keys (`crv`, `x`, `y`);
//! - RFC 8037 §2 Ed25519 keys (`kty` OKP, `crv` Ed25519) for `EdDSA`;
//! - RFC 8725 (JWT BCP) §3.1: the caller names the algorithms it allows, the
//!   header only picks among them; `none` and the HMAC family are never
//!   verified here (a public key used as an HMAC secret is the classic
//!   confusion), and a key is used only with the algorithm its type fits.

use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

/// The signature algorithms tok can verify. Anything else, `none` and `HS*`
/// included, does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// Why a JWS was not accepted. The messages are for logs and the audit
/// trail; none quotes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("the JOSE header is not valid JSON with an `alg`")]
    BadHeader,
    #[error("algorithm `{0}` is not allowed")]
    AlgNotAllowed(String),
    #[error("the header has `crit` extensions, none of which tok understands")]
    Critical,
    #[error("no key with that `kid` fits the algorithm")]
    NoKey,
    #[error("the signature does not verify")]
    BadSignature,
}

/// The JOSE header fields tok reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    /// A public JWK in the header (DPoP proofs carry one).
    pub jwk: Option<Value>,
    crit: Option<Value>,
}

/// A compact JWS split and decoded, not yet verified.
#[derive(Debug)]
pub struct Jws<'a> {
    pub header: Header,
    pub payload: Vec<u8>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

fn b64(s: &str) -> Result<Vec<u8>, JoseError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JoseError::Malformed)
}

/// Splits a compact JWS into its parts, refusing any header that asks for an
/// extension (`crit`), as RFC 7515 §4.1.11 requires of a verifier that
/// understands none.
pub fn decode(compact: &str) -> Result<Jws<'_>, JoseError> {
    let mut parts = compact.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Malformed);
    };
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| JoseError::BadHeader)?;
    if header.crit.is_some() {
        return Err(JoseError::Critical);
    }
    Ok(Jws {
        header,
        payload: b64(p)?,
        signing_input: &compact[..h.len() + 1 + p.len()],
        signature: b64(s)?,
    })
}

impl Jws<'_> {
    /// The header's algorithm, if it is one of `allowed`.
    pub fn alg(&self, allowed: &[Alg]) -> Result<Alg, JoseError> {
        Alg::parse(&self.header.alg)
            .filter(|a| allowed.contains(a))
            .ok_or_else(|| {
                // Echoed into logs and the audit trail: short and printable only.
                let shown = self.header.alg.chars().take(16);
                JoseError::AlgNotAllowed(
                    shown
                        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                        .collect(),
                )
            })
    }

    /// Verifies the signature with a key of `keys` that fits `alg` and the
    /// header's `kid` (any fitting key when the header names none). At most
    /// `TRIES` keys are tried, so a large key set cannot make one token cost
    /// hundreds of signature checks.
    pub fn verify(&self, alg: Alg, keys: &[Jwk]) -> Result<(), JoseError> {
        const TRIES: usize = 4;
        let mut candidates = keys
            .iter()
            .filter(|k| k.fits(alg))
            .filter(|k| match &self.header.kid {
                Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
                None => true,
            })
            .take(TRIES)
            .peekable();
        if candidates.peek().is_none() {
            return Err(JoseError::NoKey);
        }
        if candidates.any(|k| k.verify(alg, self.signing_input.as_bytes(), &self.signature)) {
            Ok(())
        } else {
            Err(JoseError::BadSignature)
        }
    }
}

/// A public key from a JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point 0x04 ‖ x ‖ y.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// A public JWK tok can verify with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`, which then must match.
    alg: Option<String>,
    key: Key,
}

impl Jwk {
    /// Reads one JWK. Keys of other types, keys marked for encryption
    /// (`use` other than `sig`) and keys with private parts are refused.
    pub fn from_json(v: &Value) -> Result<Jwk, String> {
        let s = |name: &str| v.get(name).and_then(Value::as_str);
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let text = s(name).ok_or_else(|| format!("the JWK has no `{name}`"))?;
            b64(text).map_err(|_| format!("the JWK's `{name}` is not base64url"))
        };
        if s("use").is_some_and(|u| u != "sig") {
            return Err("the JWK is not for signatures".into());
        }
        if v.get("d").is_some() {
            return Err("the JWK holds a private key".into());
        }
        let key = match (s("kty"), s("crv")) {
            (Some("RSA"), _) => Key::Rsa {
                n: bytes("n")?,
                e: bytes("e")?,
            },
            (Some("EC"), Some("P-256")) => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("a P-256 JWK's `x` and `y` are 32 bytes each".into());
                }
                let mut point = vec![4];
                point.extend(x);
                point.extend(y);
                Key::P256(point)
            }
            (Some("OKP"), Some("Ed25519")) => Key::Ed25519(bytes("x")?),
            (kty, crv) => {
                return Err(format!(
                    "tok does not verify with `kty` {} `crv` {}",
                    kty.unwrap_or("(none)"),
                    crv.unwrap_or("(none)")
                ))
            }
        };
        Ok(Jwk {
            kid: s("kid").map(str::to_string),
            alg: s("alg").map(str::to_string),
            key,
        })
    }

    /// Whether this key may be used with `alg`: its type fits the algorithm
    /// and its own `alg`, if any, is that one.
    pub fn fits(&self, alg: Alg) -> bool {
        let kind = matches!(
            (&self.key, alg),
            (Key::Rsa { .. }, Alg::Rs256)
                | (Key::P256(_), Alg::Es256)
                | (Key::Ed25519(_), Alg::EdDsa)
        );
        kind && self.alg.as_deref().is_none_or(|a| a == alg.as_str())
    }

    fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match &self.key {
            Key::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                .is_ok(),
            Key::P256(point) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok(),
            Key::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(msg, sig)
                .is_ok(),
        }
    }
}

/// The usable keys of a JWK Set (RFC 7517 §5); keys tok cannot use are
/// skipped, as §5 allows.
pub fn key_set(v: &Value) -> Result<Vec<Jwk>, String> {
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWK Set has no `keys` array")?;
    Ok(keys.iter().filter_map(|k| Jwk::from_json(k).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn enc(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn es256() -> (EcdsaKeyPair, Jwk) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let p = kp.public_key().as_ref();
        let jwk = Jwk::from_json(&serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "k1",
            "x": enc(&p[1..33]), "y": enc(&p[33..]),
        }))
        .unwrap();
        (kp, jwk)
    }

    fn sign(kp: &EcdsaKeyPair, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", enc(header.as_bytes()), enc(payload.as_bytes()));
        let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", enc(sig.as_ref()))
    }

    #[test]
    fn es256_verifies_and_a_changed_payload_does_not() {
        let (kp, jwk) = es256();
        let t = sign(&kp, r#"{"alg":"ES256","kid":"k1"}"#, r#"{"a":1}"#);
        let jws = decode(&t).unwrap();
        assert_eq!(jws.alg(&[Alg::Es256]).unwrap(), Alg::Es256);
        jws.verify(Alg::Es256, std::slice::from_ref(&jwk)).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], enc(br#"{"a":2}"#), parts[2]);
        assert_eq!(
            decode(&forged).unwrap().verify(Alg::Es256, &[jwk]),
            Err(JoseError::BadSignature)
        );
    }

    #[test]
    fn none_hmac_and_unlisted_algorithms_are_refused() {
        for alg in ["none", "HS256", "RS512", "ES256K", ""] {
            let t = format!(
                "{}.{}.",
                enc(format!(r#"{{"alg":"{alg}"}}"#).as_bytes()),
                enc(b"{}")
            );
            let jws = decode(&t).unwrap();
            assert!(matches!(
                jws.alg(&[Alg::Rs256, Alg::Es256]),
                Err(JoseError::AlgNotAllowed(_))
            ));
        }
        let t = format!("{}.{}.", enc(br#"{"alg":"EdDSA"}"#), enc(b"{}"));
        assert!(decode(&t).unwrap().alg(&[Alg::Es256]).is_err());
    }

    #[test]
    fn keys_fit_only_their_algorithm_and_kid() {
        let (kp, jwk) = es256();
        let t = sign(&kp, r#"{"alg":"ES256","kid":"other"}"#, "{}");
        assert_eq!(
            decode(&t)
                .unwrap()
                .verify(Alg::Es256, std::slice::from_ref(&jwk)),
            Err(JoseError::NoKey)
        );
        assert!(!jwk.fits(Alg::Rs256));
        assert!(!jwk.fits(Alg::EdDsa));
    }

    #[test]
    fn malformed_tokens_and_crit_are_refused() {
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.", "e30.e30"] {
            assert!(decode(bad).is_err(), "{bad}");
        }
        let t = format!(
            "{}.{}.",
            enc(br#"{"alg":"ES256","crit":["b64"]}"#),
            enc(b"{}")
        );
        assert_eq!(decode(&t).unwrap_err(), JoseError::Critical);
    }

    #[test]
    fn jwks_skip_unusable_keys_and_refuse_private_ones() {
        let set = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "use": "enc"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"},
        ]});
        let keys = key_set(&set).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("r"));
        assert!(key_set(&serde_json::json!({"k": []})).is_err());
    }
}
