//! DPoP (RFC 9449): tokens bound to a client's key, and the proofs that go
//! with them. Both sides live here: what `tok serve` checks (`verify`) and
//! what `tok dpop keygen` / `tok dpop proof` make, so they cannot drift apart.
//! The per-request check (headers, replay cache, binding) is `server::dpop`.
//!
//! Followed:
//! - RFC 9449 §4.2 the proof's header (`typ` `dpop+jwt`, an asymmetric `alg`,
//!   the public `jwk`) and claims (`jti`, `htm`, `htu`, `iat`, `ath`);
//!   §4.3 its checks, in order: one well-formed JWT, the required claims,
//!   `typ`, `alg` never `none` nor symmetric, the signature by the header's
//!   key, no private key in it, `htm`, `htu` compared without query and
//!   fragment after RFC 3986 §6.2.2 and §6.2.3 normalisation, `iat` within a
//!   window, and for a protected resource `ath` = base64url(SHA-256(token))
//!   and the key's thumbprint equal to the token's binding; nonces (§8, §9)
//!   are not used; §6.1 the binding, `cnf.jkt`; §11.1 a `jti` is remembered
//!   only as long as its proof would pass the `iat` window.
//! - RFC 7638 §3 the JWK SHA-256 thumbprint (`jose::Jwk::thumbprint`).
//! - RFC 5480 §2 and RFC 8410 §4 the SubjectPublicKeyInfo of P-256 and
//!   Ed25519 public keys (`--dpop-key FILE.pem`); RFC 5958 PKCS #8 for the
//!   private key `tok dpop keygen` writes (PEM, RFC 7468).

use crate::jose::{self, Alg, Jwk};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest;

/// The algorithms a proof may be signed with (RFC 9449 §4.3 step 5).
pub const ALGS: [Alg; 3] = [Alg::Es256, Alg::EdDsa, Alg::Rs256];
/// The `algs` of the `WWW-Authenticate: DPoP` challenge (§7.1).
pub const ALGS_CHALLENGE: &str = "ES256 EdDSA RS256";
/// The largest `DPoP` header accepted; a bigger one is refused unread.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// How old a proof's `iat` may be, in seconds.
pub const MAX_AGE_SECS: i64 = 60;
/// How far ahead of the server's clock a proof's `iat` may be, in seconds.
pub const MAX_AHEAD_SECS: i64 = 5;
/// The longest `jti` accepted.
const MAX_JTI: usize = 256;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `ath`: base64url(SHA-256(token)) (RFC 9449 §4.2).
pub fn ath(token: &str) -> String {
    b64(&sha2::Sha256::digest(token.as_bytes()))
}

/// Checks a `--dpop-jkt`: a base64url SHA-256 thumbprint (43 characters).
pub fn check_jkt(s: &str) -> Result<(), String> {
    let ok = s.len() == 43
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .is_ok_and(|b| b.len() == 32);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a JWK thumbprint: 43 base64url characters (SHA-256, RFC 7638), as `tok dpop keygen` prints",
            crate::error::shorten(s, 60)
        ))
    }
}

/// Why a proof was not accepted: said in `error_description` and the audit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the DPoP proof is larger than 8 KiB")]
    TooLarge,
    #[error("send exactly one DPoP header")]
    NotOne,
    #[error("the DPoP proof is not valid: {0}")]
    Jose(jose::JoseError),
    #[error("the DPoP proof's typ is not dpop+jwt")]
    Typ,
    #[error("the DPoP proof has no usable public jwk: {0}")]
    Key(String),
    #[error("the DPoP proof lacks the claim {0}")]
    Missing(&'static str),
    #[error("the DPoP proof is for another method")]
    Method,
    #[error("the DPoP proof is for another URL")]
    Url,
    #[error("the DPoP proof's iat is outside the accepted window")]
    Iat,
    #[error("the DPoP proof's ath does not match the token")]
    Ath,
}

/// A proof that passed every check that needs no state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The thumbprint of the key that signed it.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<f64>,
    ath: Option<String>,
}

/// Checks `proof` for a request `method` `htu` carrying `token`, at `now`
/// (seconds since the epoch): RFC 9449 §4.3 but for the binding and the
/// replay check, which need the token and the server's memory.
pub fn verify(
    proof: &str,
    method: &str,
    htu: &str,
    token: &str,
    now: i64,
) -> Result<Proof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofError::TooLarge);
    }
    let jws = jose::decode(proof).map_err(ProofError::Jose)?;
    if jws.header.typ.as_deref() != Some("dpop+jwt") {
        return Err(ProofError::Typ);
    }
    let alg = jws.alg(&ALGS).map_err(ProofError::Jose)?;
    let jwk = jws.header.jwk.as_ref().ok_or(ProofError::Missing("jwk"))?;
    let key = Jwk::from_json(jwk).map_err(ProofError::Key)?;
    if !key.fits(alg) {
        return Err(ProofError::Key(format!(
            "the jwk does not fit {}",
            alg.as_str()
        )));
    }
    jws.verify(alg, std::slice::from_ref(&key))
        .map_err(ProofError::Jose)?;
    let c: Claims = serde_json::from_slice(&jws.payload)
        .map_err(|_| ProofError::Jose(jose::JoseError::Malformed))?;
    let jti = c.jti.filter(|j| !j.is_empty() && j.len() <= MAX_JTI);
    let jti = jti.ok_or(ProofError::Missing("jti"))?;
    let htm = c.htm.ok_or(ProofError::Missing("htm"))?;
    let claimed = c.htu.ok_or(ProofError::Missing("htu"))?;
    let iat = c.iat.ok_or(ProofError::Missing("iat"))?;
    let sent_ath = c.ath.ok_or(ProofError::Missing("ath"))?;
    if htm != method {
        return Err(ProofError::Method);
    }
    match (normalize_htu(&claimed), normalize_htu(htu)) {
        (Some(a), Some(b)) if a == b => {}
        _ => return Err(ProofError::Url),
    }
    let iat = iat as i64;
    if iat < now - MAX_AGE_SECS || iat > now + MAX_AHEAD_SECS {
        return Err(ProofError::Iat);
    }
    if sent_ath != ath(token) {
        return Err(ProofError::Ath);
    }
    Ok(Proof {
        jkt: key.thumbprint(),
        jti,
        iat,
    })
}

/// `htu` as compared (RFC 9449 §4.3 step 9): without query and fragment, the
/// scheme and host in lower case, the default port dropped, an empty path
/// as `/`, percent-encodings in upper case and unreserved ones decoded, and
/// dot segments removed (RFC 3986 §6.2.2, §6.2.3). None for what is not an
/// absolute http(s) URL, or carries userinfo.
pub fn normalize_htu(u: &str) -> Option<String> {
    let u = u.split(['?', '#']).next()?;
    let (scheme, rest) = u.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let mut host = authority.to_ascii_lowercase();
    if let Some(h) = host.strip_suffix(default_port) {
        host = h.to_string();
    }
    if let Some(h) = host.strip_suffix(':') {
        host = h.to_string();
    }
    Some(format!(
        "{scheme}://{host}{}",
        remove_dots(&normalize_percent(path))
    ))
}

fn normalize_percent(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let c = (h * 16 + l) as u8;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(c as char);
                } else {
                    out.push_str(&format!("%{c:02X}"));
                }
                i += 3;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dots(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let last = segs.len().saturating_sub(1);
    for (i, s) in segs.iter().enumerate() {
        match *s {
            "." | ".." => {
                if *s == ".." {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// The key types `tok dpop keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlg {
    /// ECDSA on P-256 with SHA-256 (the most widely supported).
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

/// A client's private key, for signing proofs.
pub enum SigningKey {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(redacted)")
    }
}

impl SigningKey {
    /// A new key and its PKCS #8 encoding.
    pub fn generate(alg: KeyAlg) -> Result<(SigningKey, Vec<u8>), String> {
        let rng = SystemRandom::new();
        let fail = |_| "could not generate a key".to_string();
        let pkcs8 = match alg {
            KeyAlg::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(fail)?,
            KeyAlg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng).map_err(fail)?,
        };
        let der = pkcs8.as_ref().to_vec();
        Ok((Self::from_pkcs8(&der)?, der))
    }

    /// A P-256 or Ed25519 key in PKCS #8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, String> {
        let rng = SystemRandom::new();
        if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng) {
            return Ok(SigningKey::Es256(k));
        }
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(SigningKey::EdDsa)
            .map_err(|_| "the key is neither a P-256 nor an Ed25519 PKCS #8 private key".into())
    }

    /// A `-----BEGIN PRIVATE KEY-----` file.
    pub fn from_pem(text: &str) -> Result<SigningKey, String> {
        let der = pem_decode(text, "PRIVATE KEY").ok_or(
            "the file is not a PEM private key (-----BEGIN PRIVATE KEY-----, as tok dpop keygen writes)",
        )?;
        Self::from_pkcs8(&der)
    }

    pub fn alg(&self) -> Alg {
        match self {
            SigningKey::Es256(_) => Alg::Es256,
            SigningKey::EdDsa(_) => Alg::EdDsa,
        }
    }

    /// The public half as a JWK.
    pub fn public_jwk(&self) -> Value {
        match self {
            SigningKey::Es256(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..])})
            }
            SigningKey::EdDsa(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        }
    }

    /// The RFC 7638 thumbprint of the public half.
    pub fn jkt(&self) -> String {
        Jwk::from_json(&self.public_jwk())
            .expect("tok's own public JWK parses")
            .thumbprint()
    }

    /// A compact JWS of `header` and `claims`, signed with this key.
    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, String> {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match self {
            SigningKey::Es256(k) => k
                .sign(&SystemRandom::new(), input.as_bytes())
                .map_err(|_| "could not sign")?
                .as_ref()
                .to_vec(),
            SigningKey::EdDsa(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
        };
        Ok(format!("{input}.{}", b64(&sig)))
    }

    /// A proof for `method` `url`, with `ath` when a token is given, issued
    /// at `iat` with a random `jti` (RFC 9449 §4.2).
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        iat: i64,
    ) -> Result<String, String> {
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| "no randomness for the jti")?;
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let header =
            json!({"typ": "dpop+jwt", "alg": self.alg().as_str(), "jwk": self.public_jwk()});
        let mut claims = json!({"jti": b64(&jti), "htm": method, "htu": htu, "iat": iat});
        if let Some(t) = token {
            claims["ath"] = json!(ath(t));
        }
        self.sign(&header, &claims)
    }
}

/// PEM (RFC 7468) of `der` under `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text.split_once(&begin)?.1.split_once(&end)?.0;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// DER prefixes of the two SubjectPublicKeyInfo shapes read: P-256
/// (id-ecPublicKey, prime256v1, an uncompressed point) and Ed25519.
const SPKI_P256: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];
const SPKI_ED25519: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The thumbprint of a public key file: a JWK (as `tok dpop keygen` writes
/// next to the private key) or a PEM public key, P-256 or Ed25519.
pub fn jkt_of_public_key(text: &str) -> Result<String, String> {
    let t = text.trim();
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).map_err(|e| format!("not a JSON JWK: {e}"))?;
        let key = Jwk::from_json(&v)?;
        if !ALGS.iter().any(|a| key.fits(*a)) {
            return Err("the JWK's `alg` is not one DPoP proofs are checked with".into());
        }
        return Ok(key.thumbprint());
    }
    if t.contains("PRIVATE KEY-----") {
        return Err("this is a private key: give the public one (the .jwk file tok dpop keygen wrote next to it)".into());
    }
    let der = pem_decode(t, "PUBLIC KEY")
        .ok_or("neither a JWK nor a PEM public key (-----BEGIN PUBLIC KEY-----)")?;
    let jwk = if let Some(point) = der.strip_prefix(SPKI_P256).filter(|p| p.len() == 64) {
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[..32]), "y": b64(&point[32..])})
    } else if let Some(x) = der.strip_prefix(SPKI_ED25519).filter(|x| x.len() == 32) {
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(x)})
    } else {
        return Err("the PEM public key is neither P-256 nor Ed25519".into());
    };
    Ok(Jwk::from_json(&jwk)?.thumbprint())
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://api.example/v1/items";

    fn key(alg: KeyAlg) -> SigningKey {
        SigningKey::generate(alg).unwrap().0
    }

    #[test]
    fn a_proof_verifies_for_its_request_and_token_with_either_key() {
        for alg in [KeyAlg::Es256, KeyAlg::EdDsa] {
            let k = key(alg);
            let p = k
                .proof(
                    "GET",
                    "https://API.example:443/v1/./items?x=1",
                    Some("tok_a"),
                    1000,
                )
                .unwrap();
            let v = verify(&p, "GET", URL, "tok_a", 1000).unwrap();
            assert_eq!(v.jkt, k.jkt());
            assert_eq!(
                verify(&p, "POST", URL, "tok_a", 1000),
                Err(ProofError::Method)
            );
            assert_eq!(
                verify(&p, "GET", "https://api.example/v1/other", "tok_a", 1000),
                Err(ProofError::Url)
            );
            assert_eq!(verify(&p, "GET", URL, "tok_b", 1000), Err(ProofError::Ath));
            assert_eq!(
                verify(&p, "GET", URL, "tok_a", 1000 + 61),
                Err(ProofError::Iat)
            );
            assert_eq!(
                verify(&p, "GET", URL, "tok_a", 1000 - 6),
                Err(ProofError::Iat)
            );
        }
    }

    #[test]
    fn proofs_without_ath_none_or_another_typ_are_refused() {
        let k = key(KeyAlg::Es256);
        let p = k.proof("GET", URL, None, 1000).unwrap();
        assert_eq!(
            verify(&p, "GET", URL, "t", 1000),
            Err(ProofError::Missing("ath"))
        );
        let claims = json!({"jti": "j", "htm": "GET", "htu": URL, "iat": 1000, "ath": ath("t")});
        let jwt = k
            .sign(
                &json!({"typ": "JWT", "alg": "ES256", "jwk": k.public_jwk()}),
                &claims,
            )
            .unwrap();
        assert_eq!(verify(&jwt, "GET", URL, "t", 1000), Err(ProofError::Typ));
        let none = format!(
            "{}.{}.",
            b64(
                json!({"typ": "dpop+jwt", "alg": "none", "jwk": k.public_jwk()})
                    .to_string()
                    .as_bytes()
            ),
            b64(claims.to_string().as_bytes())
        );
        assert!(matches!(
            verify(&none, "GET", URL, "t", 1000),
            Err(ProofError::Jose(jose::JoseError::AlgNotAllowed(_)))
        ));
        // Signed by one key, claiming another's.
        let other = key(KeyAlg::Es256);
        let forged = k
            .sign(
                &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": other.public_jwk()}),
                &claims,
            )
            .unwrap();
        assert!(matches!(
            verify(&forged, "GET", URL, "t", 1000),
            Err(ProofError::Jose(jose::JoseError::BadSignature))
        ));
        let big = format!("{p}{}", "A".repeat(MAX_PROOF_BYTES));
        assert_eq!(
            verify(&big, "GET", URL, "t", 1000),
            Err(ProofError::TooLarge)
        );
    }

    #[test]
    fn rfc_9449s_example_proof_verifies_but_for_ath() {
        // §4.2 Figure 2: a proof for a token request (no `ath`).
        let p = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
        assert_eq!(
            verify(
                p,
                "POST",
                "https://server.example.com/token",
                "t",
                1562262616
            ),
            Err(ProofError::Missing("ath"))
        );
    }

    #[test]
    fn htu_normalisation() {
        let n = |s| normalize_htu(s).unwrap();
        assert_eq!(n("HTTPS://Example.COM:443"), "https://example.com/");
        assert_eq!(n("http://h:80/a/%7e/%2f?q#f"), "http://h/a/~/%2F");
        assert_eq!(n("http://h:8080/a/b/../c/."), "http://h:8080/a/c/");
        assert_eq!(n("http://[::1]:80/x"), "http://[::1]/x");
        for bad in ["/x", "ftp://h/x", "http:///x", "http://u:p@h/x"] {
            assert!(normalize_htu(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn public_key_files_give_the_thumbprint() {
        let k = key(KeyAlg::EdDsa);
        assert_eq!(
            jkt_of_public_key(&k.public_jwk().to_string()).unwrap(),
            k.jkt()
        );
        let spki = [
            SPKI_ED25519,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(k.public_jwk()["x"].as_str().unwrap())
                .unwrap(),
        ]
        .concat();
        assert_eq!(
            jkt_of_public_key(&pem_encode("PUBLIC KEY", &spki)).unwrap(),
            k.jkt()
        );
        let (k, der) = SigningKey::generate(KeyAlg::Es256).unwrap();
        let pem = pem_encode("PRIVATE KEY", &der);
        assert!(jkt_of_public_key(&pem).unwrap_err().contains("private"));
        assert_eq!(SigningKey::from_pem(&pem).unwrap().jkt(), k.jkt());
        check_jkt(&k.jkt()).unwrap();
        assert!(check_jkt("abc").is_err());
    }
}
