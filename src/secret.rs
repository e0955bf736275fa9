//! The secret format: `tok_` + 43 base62 characters (256 bits from the OS) + a
//! 6-character base62 checksum, as GitHub's `ghp_` tokens do. Scanners find the
//! prefix; the checksum lets tok reject a mistyped or truncated secret offline.

use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

pub const PREFIX: &str = "tok_";
const BODY_LEN: usize = 43;
const CHECK_LEN: usize = 6;
pub const SECRET_LEN: usize = PREFIX.len() + BODY_LEN + CHECK_LEN;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A bearer secret. Its `Debug` and `Display` never show it; call `expose`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret from any source (stdin, env, keyring) without checking it.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// A fresh tok secret from the OS random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source failed");
        let body = base62_fixed(&bytes, BODY_LEN);
        let check = checksum(&body);
        Secret(format!("{PREFIX}{body}{check}"))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the secret: what stores keep instead of the secret.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// A masked form that is safe to show: the prefix and the first characters.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.0)
    }

    /// Checks the shape and checksum of a tok secret, offline.
    pub fn validate(&self) -> Result<(), FormatError> {
        validate(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret((redacted))")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// Why a string is not a well-formed tok secret. Never includes the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("it does not start with `{PREFIX}`")]
    Prefix,
    #[error(
        "it is {0} characters long, a tok secret has {SECRET_LEN} (truncated or extended copy?)"
    )]
    Length(usize),
    #[error("it contains a character that is not a letter or digit")]
    Charset,
    #[error("its checksum does not match (a mistyped or altered copy)")]
    Checksum,
}

pub fn validate(s: &str) -> Result<(), FormatError> {
    let rest = s.strip_prefix(PREFIX).ok_or(FormatError::Prefix)?;
    if s.len() != SECRET_LEN {
        return Err(FormatError::Length(s.chars().count()));
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(FormatError::Charset);
    }
    let (body, check) = rest.split_at(BODY_LEN);
    if checksum(body).as_bytes().ct_eq(check.as_bytes()).into() {
        Ok(())
    } else {
        Err(FormatError::Checksum)
    }
}

/// True when `s` looks like a tok secret (prefix), whether or not it is valid.
pub fn looks_like_secret(s: &str) -> bool {
    s.starts_with(PREFIX)
}

/// A masked form of any secret. A tok secret shows its prefix and 6 of its 43
/// random characters; another gateway's secret (`hvs.…`, an opaque OAuth 2
/// token) shows its type prefix, if any, and at most 4 characters, and nothing
/// of a secret too short to spare them.
pub fn fingerprint_of(s: &str) -> String {
    if let Some(rest) = s.strip_prefix(PREFIX) {
        let shown: String = rest.chars().take(6).collect();
        return format!("{PREFIX}{shown}…");
    }
    // A short type prefix such as `hvs.`, `s.` or `glpat-` names the kind of
    // secret and is not secret itself.
    let prefix_len = s
        .char_indices()
        .take(8)
        .find(|(_, c)| !c.is_ascii_alphabetic())
        .filter(|(i, c)| *i > 0 && matches!(c, '.' | '_' | '-'))
        .map(|(i, _)| i + 1)
        .unwrap_or(0);
    let (prefix, rest) = s.split_at(prefix_len);
    let shown: String = if rest.chars().count() >= 16 {
        rest.chars().take(4).collect()
    } else {
        String::new()
    };
    format!("{prefix}{shown}…")
}

fn checksum(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    base62_fixed(&digest[..4], CHECK_LEN)
}

/// Big-endian base62 of `bytes`, left-padded with '0' to exactly `len` characters.
fn base62_fixed(bytes: &[u8], len: usize) -> String {
    let mut num = bytes.to_vec();
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let mut rem = 0u32;
        for b in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 62) as u8;
            rem = acc % 62;
        }
        out.push(ALPHABET[rem as usize]);
    }
    debug_assert!(
        num.iter().all(|&b| b == 0),
        "value did not fit in {len} digits"
    );
    out.reverse();
    String::from_utf8(out).expect("alphabet is ASCII")
}

/// A random lowercase base36 string, for ids and other non-secret handles.
pub fn random_handle(len: usize) -> String {
    const LOWER: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    // 252 is the largest multiple of 36 below 256: reject above it to stay unbiased.
    let mut out = String::with_capacity(len);
    let mut pool = bytes.into_iter();
    while out.len() < len {
        let b = match pool.next() {
            Some(b) => b,
            None => {
                let mut one = [0u8; 1];
                getrandom::fill(&mut one).expect("the OS random source failed");
                one[0]
            }
        };
        if b < 252 {
            out.push(LOWER[(b % 36) as usize] as char);
        }
    }
    out
}

/// Compares two secrets (or hashes) in constant time.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_validate_and_differ() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_eq!(a.expose().len(), SECRET_LEN);
        assert!(a.expose().starts_with("tok_"));
        assert_eq!(a.validate(), Ok(()));
        assert_ne!(a, b);
    }

    #[test]
    fn mistyped_and_truncated_are_rejected() {
        let s = Secret::generate();
        let text = s.expose().to_string();
        let mut chars: Vec<char> = text.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(validate(&typo), Err(FormatError::Checksum));
        assert_eq!(
            validate(&text[..text.len() - 1]),
            Err(FormatError::Length(SECRET_LEN - 1))
        );
        assert_eq!(validate("ghp_abc"), Err(FormatError::Prefix));
        let bad = format!("{}-{}", &text[..20], &text[21..]);
        assert_eq!(validate(&bad), Err(FormatError::Charset));
    }

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::generate();
        assert!(!format!("{s:?}").contains(s.expose()));
        assert!(!format!("{s}").contains(s.expose()));
        assert!(!s.fingerprint().contains(&s.expose()[4..20]));
    }

    #[test]
    fn foreign_secrets_are_masked() {
        assert_eq!(fingerprint_of("s.VabI4UKVu4BfJIXootLceCTY"), "s.VabI…");
        assert_eq!(
            fingerprint_of("cjHPslqRAZxp97TbAAaXk4rsYl9galFgiKFopSjUmMy"),
            "cjHP…"
        );
        assert_eq!(fingerprint_of("short"), "…");
        assert_eq!(fingerprint_of("hvs.abc"), "hvs.…");
        // Digits before a dash: random characters, not a type prefix.
        assert_eq!(fingerprint_of("X48H-b1GIih-y9n5ZzrVhbC4qjB"), "X48H…");
    }

    #[test]
    fn base62_is_fixed_width() {
        assert_eq!(base62_fixed(&[0, 0, 0, 0], 6), "000000");
        assert_eq!(base62_fixed(&[0, 0, 0, 61], 6), "00000z");
        assert_eq!(base62_fixed(&[0xff; 32], 43).len(), 43);
    }

    #[test]
    fn handles_are_lowercase_alphanumeric() {
        let h = random_handle(12);
        assert_eq!(h.len(), 12);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
    }
}
