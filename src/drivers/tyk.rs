//! The `tyk` driver: keys of a Tyk Gateway, through its Gateway API under
//! `/tyk/` (Tyk Gateway 5.x: `gateway/api.go`, `storage/storage.go`).
//!
//! Tyk makes the key; tok never puts a secret of its own in a URL. The token id
//! is the key's hash, as Tyk stores it when `hash_keys` is on (Tyk's default):
//! that is what `GET /tyk/keys` lists and what `?hashed=true` takes, and it is
//! not a secret. A gateway that does not hash keys would list raw keys, so tok
//! refuses to work with one (it deletes the key it just made and says why).
//! `alias` is the name, `meta_data` the labels, and the scopes are the API ids
//! of `access_rights` (plus `policy:<id>` for `apply_policies`); a key with no
//! access rights would reach every API, so create wants at least one scope.
//!
//! `whoami` asks for `GET /tyk/keys`, the one read every gateway serves (even
//! a worker in RPC mode, which has no /tyk/apis): checkIsAPIOwner guards every
//! /tyk/ route, so a wrong secret gets 403 before any handler; a right one gets
//! the list, or Tyk's own 404 saying that hashed key listing is off.

use super::http_client::{encode_segment, AdminApi, Dialect, Req};
use super::keys::{self, KeyGateway, Reach};
use super::{DriverError, DriverKind, Identity, Result, Settings};
use crate::error::Kind;
use crate::model::{Created, NewToken, Token};
use crate::secret::Secret;
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const POLICY: &str = "policy:";
const KEYS: &str = "/tyk/keys";
const LISTING_OFF: &str = "enable_hashed_keys_listing";

static DIALECT: Dialect = Dialect {
    refusals: &[(400, Kind::Usage)],
    admin_api: "Tyk's Gateway API (`listen_port` or `control_api_port`)",
    ..Dialect::new(DriverKind::Tyk, "Tyk", "x-tyk-authorization")
};

pub struct Tyk {
    api: AdminApi,
}

#[derive(Deserialize)]
struct Added {
    key: String,
    key_hash: Option<String>,
}

#[derive(Deserialize)]
struct Keys {
    #[serde(default)]
    keys: Vec<String>,
}

/// A key's hash, and its session once read.
type Raw = (String, Option<Map<String, Value>>);

impl Tyk {
    pub fn new(settings: Settings) -> Result<Tyk> {
        Ok(Tyk {
            api: AdminApi::needing(&settings, &DIALECT, "")?,
        })
    }

    /// The hashes of every key.
    fn hashes(&self) -> Result<Vec<String>> {
        let answer = self.api.expect(Req::get(KEYS), |_| {
            let m = format!("{}/tyk/keys answered 404", self.api.base());
            DriverError::gateway(
                Kind::Failure,
                format!("Tyk does not list hashed keys ({m})"),
                Some(&format!("set `{LISTING_OFF}: true` in tyk.conf (TYK_GW_ENABLEHASHEDKEYSLISTING=true); inspect by id still works")),
            )
        })?;
        Ok(answer.json::<Keys>()?.keys)
    }

    /// A key's session by its hash; None when Tyk no longer has it.
    fn session(&self, hash: &str) -> Result<Option<Map<String, Value>>> {
        let path = key_path(hash);
        let answer = self
            .api
            .get_opt(Req::get(&path).query(&[("hashed", "true")]))?;
        answer.map(|a| a.json()).transpose()
    }

    /// A request about the key whose hash is `hash`, which must exist; a
    /// write keeps the key's quota (`suppress_reset`).
    fn on_hash(&self, method: Method, hash: &str, body: Option<&Value>) -> Result<()> {
        let query: &[_] = match body {
            Some(_) => &[("hashed", "true"), ("suppress_reset", "1")],
            None => &[("hashed", "true")],
        };
        let path = key_path(hash);
        self.api
            .on_key(Req::new(method, &path).query(query).body(body), hash)?;
        Ok(())
    }

    fn add(&self, body: &Value) -> Result<Created> {
        let answer = self
            .api
            .expect(Req::new(Method::POST, KEYS).body(body), |m| {
                let m = format!("Tyk answered 404 to POST /tyk/keys: {m}");
                DriverError::gateway(Kind::Failure, m, None)
            })?;
        let added: Added = answer.json()?;
        let secret = Secret::new(added.key);
        let Some(hash) = added.key_hash.filter(|h| !h.is_empty()) else {
            // Without hashing, the listing would show keys: undo and refuse.
            let undone = self
                .api
                .call_with_secret(Method::DELETE, "/tyk/keys/", &secret)
                .is_ok_and(|a| a.ok());
            let undone = if undone {
                "the key it made was deleted again"
            } else {
                "and the key it made could not be deleted: remove it in Tyk"
            };
            return Err(DriverError::gateway(
                Kind::Unsupported,
                format!("Tyk answered without `key_hash`: this gateway does not hash keys, and tok will not show keys as ids ({undone})"),
                Some("set `hash_keys: true` in tyk.conf (Tyk's default)"),
            ));
        };
        let session = self
            .session(&hash)?
            .unwrap_or_else(|| body.as_object().cloned().unwrap_or_default());
        let mut token = to_token(&hash, &session);
        if token.created_at.timestamp() == 0 {
            token.created_at = Utc::now();
        }
        Ok(Created { token, secret })
    }
}

impl KeyGateway for Tyk {
    type Raw = Raw;

    fn api(&self) -> &AdminApi {
        &self.api
    }

    /// Every key, with its session unless only ids are wanted; keys that went
    /// away meanwhile are skipped.
    fn list_raw(&self, reach: Reach) -> Result<Vec<Raw>> {
        let hashes = match (self.hashes(), reach) {
            // Without listing there is no prefix to match: it is just not there.
            (Err(DriverError::Gateway { .. }), Reach::Ids) => Vec::new(),
            (h, _) => h?,
        };
        if reach == Reach::Ids {
            return Ok(hashes.into_iter().map(|h| (h, None)).collect());
        }
        let mut out = Vec::new();
        for h in hashes {
            if let Some(s) = self.session(&h)? {
                out.push((h, Some(s)));
            }
        }
        Ok(out)
    }

    fn fetch(&self, id: &str) -> Result<Option<Raw>> {
        if id.is_empty() {
            return Ok(None);
        }
        Ok(self.session(id)?.map(|s| (id.to_string(), Some(s))))
    }

    fn complete(&self, (hash, _): Raw) -> Result<Raw> {
        let s = self
            .session(&hash)?
            .ok_or_else(|| DriverError::NotFound(hash.clone()))?;
        Ok((hash, Some(s)))
    }

    fn id_of(&self, raw: &Raw) -> Option<String> {
        Some(raw.0.clone())
    }

    /// Tyk lists hashes, never keys; lookup asks Tyk itself.
    fn key_of<'a>(&self, _: &'a Raw) -> Option<&'a str> {
        None
    }

    fn to_token(&self, (hash, s): &Raw) -> Result<Token> {
        Ok(to_token(hash, s.as_ref().unwrap_or(&Map::new())))
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        if new.scopes.is_empty() {
            return Err(DriverError::gateway(
                Kind::Usage,
                "a Tyk key without access rights reaches every API (a master key)",
                Some("name what the key may reach: --scope API_ID (repeatable), or --scope policy:POLICY_ID"),
            ));
        }
        let mut rights = Map::new();
        let mut policies = Vec::new();
        for s in &new.scopes {
            match s.strip_prefix(POLICY) {
                Some(p) => policies.push(p.to_string()),
                None => {
                    rights.insert(
                        s.clone(),
                        json!({ "api_id": s, "api_name": "", "versions": ["Default"] }),
                    );
                }
            }
        }
        let mut body = json!({
            "expires": new.expires_at.map_or(0, |e| e.timestamp()),
            "quota_max": -1,
            "access_rights": rights,
            "meta_data": new.labels,
        });
        if !policies.is_empty() {
            body["apply_policies"] = json!(policies);
        }
        if let Some(n) = &new.name {
            body["alias"] = json!(n);
        }
        self.add(&body)
    }

    /// The new key is the old session (rights, limits, policies, meta data)
    /// with a fresh start and the same lifetime.
    fn recreate(&self, (_, session): &Raw, like: &NewToken) -> Result<Created> {
        let mut body = session.clone().unwrap_or_default();
        for k in [
            "date_created",
            "last_updated",
            "quota_renews",
            "quota_remaining",
            "key_id",
        ] {
            body.remove(k);
        }
        body.insert(
            "expires".into(),
            json!(like.expires_at.map_or(0, |e| e.timestamp())),
        );
        self.add(&Value::Object(body))
    }

    fn delete(&self, (hash, _): &Raw) -> Result<()> {
        self.on_hash(Method::DELETE, hash, None)
    }

    /// Writes the session back with a new `expires`, keeping quotas and rates.
    fn set_expiry(&self, (hash, session): Raw, until: DateTime<Utc>) -> Result<Token> {
        let mut session = session.unwrap_or_default();
        session.insert("expires".into(), json!(until.timestamp()));
        let body = Value::Object(session.clone());
        self.on_hash(Method::PUT, &hash, Some(&body))?;
        Ok(to_token(&hash, &session))
    }

    fn lookup(&self, secret: &Secret) -> Result<Option<Token>> {
        let answer = keys::look_up(&self.api, "/tyk/keys/", secret)?;
        let session: Map<String, Value> = answer.json()?;
        Ok(Some(to_token(&key_hash(secret.expose()), &session)))
    }

    fn whoami(&self) -> Result<Identity> {
        let answer = self.api.call(Req::get(KEYS))?;
        let message = answer
            .value()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
            .unwrap_or_default();
        if answer.status == 404 && message.contains(LISTING_OFF) {
            return Ok(Identity::checked(format!("Tyk Gateway API secret (hashed key listing is off: `tok list` needs `{LISTING_OFF}: true`)")));
        }
        let answer = self
            .api
            .check(answer, &[], |m| self.api.not_admin(KEYS, m))?;
        // Only the shape is checked; the list itself is not needed.
        let _: Keys = answer.json()?;
        Ok(Identity::checked("Tyk Gateway API secret"))
    }

    /// Tyk keys are base64 JSON (`{"org":..,"id":..,"h":..}`) or tok's own format.
    fn is_secret(&self, s: &str) -> bool {
        crate::secret::looks_like_secret(s) || is_tyk_key(s)
    }

    /// Key hashes: hex (murmur3 or sha256).
    fn looks_like_id(&self, s: &str) -> bool {
        super::hex_shaped(s, 64)
    }
}

fn key_path(hash: &str) -> String {
    format!("{KEYS}/{}", encode_segment(hash))
}

/// A key's session as a token.
pub fn to_token(hash: &str, s: &Map<String, Value>) -> Token {
    let str_of = |k: &str| s.get(k).and_then(Value::as_str);
    let created_at = str_of("date_created")
        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |d| d.with_timezone(&Utc));
    let expires_at = s
        .get("expires")
        .and_then(Value::as_i64)
        .and_then(keys::from_unix);
    let mut t = Token::bare(hash.to_string(), created_at, expires_at);
    t.name = str_of("alias").filter(|a| !a.is_empty()).map(String::from);
    let mut scopes: Vec<String> = s
        .get("access_rights")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    scopes.sort();
    if let Some(p) = s.get("apply_policies").and_then(Value::as_array) {
        scopes.extend(
            p.iter()
                .filter_map(Value::as_str)
                .map(|p| format!("{POLICY}{p}")),
        );
    }
    t.scopes = scopes;
    t.labels = keys::labels(s.get("meta_data"));
    if s.get("is_inactive").and_then(Value::as_bool) == Some(true) {
        let at = str_of("last_updated")
            .and_then(|u| u.parse::<i64>().ok())
            .and_then(keys::from_unix)
            .unwrap_or_else(Utc::now);
        t.revoked_at = Some(at);
        t.revoke_reason = Some("marked inactive in Tyk (is_inactive)".into());
        t.state = crate::model::State::Revoked;
    }
    t
}

/// The hash Tyk keeps for `key` (storage.HashStr): the algorithm named in a
/// base64 JSON key's `h`, else murmur32; lowercase hex of the digest.
pub fn key_hash(key: &str) -> String {
    let algo = tyk_key(key)
        .and_then(|v| v.get("h").and_then(Value::as_str).map(String::from))
        .unwrap_or_default();
    let data = key.as_bytes();
    match algo.as_str() {
        "sha256" => hex(&Sha256::digest(data)),
        "murmur64" => hex(&murmur3_x64_128(data).0.to_be_bytes()),
        "murmur128" => {
            let (h1, h2) = murmur3_x64_128(data);
            let mut b = h1.to_be_bytes().to_vec();
            b.extend_from_slice(&h2.to_be_bytes());
            hex(&b)
        }
        // "", "murmur32", and anything Tyk does not know (it falls back too).
        _ => hex(&murmur3_x86_32(data).to_be_bytes()),
    }
}

/// The JSON inside a key as Tyk makes them when a hash function is set
/// (base64 of a JSON object, so it starts with `ey`).
fn tyk_key(s: &str) -> Option<Value> {
    let json = s
        .strip_prefix("ey")
        .and(base64::engine::general_purpose::STANDARD.decode(s).ok())?;
    serde_json::from_slice(&json).ok()
}

/// A key as Tyk makes them: its JSON has `org` and `id`.
fn is_tyk_key(s: &str) -> bool {
    tyk_key(s).is_some_and(|v| v.get("id").is_some() && v.get("org").is_some())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// MurmurHash3 x86_32, seed 0 (the `murmur3` crate; reading a slice cannot fail).
fn murmur3_x86_32(mut data: &[u8]) -> u32 {
    murmur3::murmur3_32(&mut data, 0).unwrap_or_default()
}

/// MurmurHash3 x64_128, seed 0: (h1, h2), as Go's spaolacci/murmur3 sums them.
fn murmur3_x64_128(mut data: &[u8]) -> (u64, u64) {
    let h = murmur3::murmur3_x64_128(&mut data, 0).unwrap_or_default();
    (h as u64, (h >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from the C++ smhasher code (as Python's mmh3 computes).
    #[test]
    fn murmur3_matches_reference() {
        assert_eq!(murmur3_x86_32(b""), 0);
        assert_eq!(murmur3_x86_32(b"hello"), 0x248b_fa47);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
        assert_eq!(
            murmur3_x64_128(b"hello"),
            (0xcbd8_a7b3_41bd_9b02, 0x5b1e_906a_48ae_1d19)
        );
        assert_eq!(murmur3_x64_128(b""), (0, 0));
        // A tail longer than 8 bytes, and one of 3 bytes.
        assert_eq!(
            murmur3_x64_128(b"0123456789abcdefXYZ"),
            (0x99d3_7502_6c4a_901d, 0x4e69_e256_eaf8_9cf3)
        );
        assert_eq!(murmur3_x86_32(b"0123456"), 0x0aef_31a8);
    }

    #[test]
    fn key_hash_follows_the_key_s_algorithm() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let k64 = b64(r#"{"org":"o1","id":"abc","h":"murmur64"}"#);
        assert_eq!(key_hash(&k64).len(), 16);
        let k128 = b64(r#"{"org":"o1","id":"abc","h":"murmur128"}"#);
        assert_eq!(key_hash(&k128).len(), 32);
        let ksha = b64(r#"{"org":"o1","id":"abc","h":"sha256"}"#);
        assert_eq!(key_hash(&ksha).len(), 64);
        assert_eq!(key_hash("hello"), "248bfa47");
    }
}
