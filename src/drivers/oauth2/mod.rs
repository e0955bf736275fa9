//! The `oauth2` driver: an OAuth 2 authorization server. Tokens are minted by
//! the client_credentials grant (RFC 6749 §4.4), inspected by introspection
//! (RFC 7662) and revoked by revocation (RFC 7009). Endpoints come from the
//! profile or from discovery (OpenID Connect Discovery, RFC 8414).
//!
//! OAuth 2 servers know a token only by its secret: there is no id to inspect
//! or revoke by, and no standard way to list tokens.

mod model;

pub use model::handle_of;

use super::http_client::{cut_off, form_encode, normalize_url, redact_url, snippet, Http};
use super::{DriverError, DriverKind, Gateway, Identity, Op, Result, Revoked, Warn};
use crate::credentials::Credential;
use crate::model::{check_new_token, Created, Filter, NewToken, RevokeOutcome, State, Token};
use crate::secret::Secret;
use base64::Engine;
use chrono::{DateTime, Utc};
use model::{discovery_urls, expiry_after, to_token, Introspection, Metadata, TokenAnswer};
use reqwest::blocking::Response;
use serde_json::Value;
use std::sync::OnceLock;

const CREDENTIAL_HINT: &str =
    "check --client-id and the client secret in TOK_CLIENT_SECRET (or TOK_ADMIN_TOKEN)";

const CAN_DO: &str = "the oauth2 driver can create a token (client_credentials grant), inspect one by its secret (`printf %s \"$TOKEN\" | tok inspect -`) and revoke one by its secret (`printf %s \"$TOKEN\" | tok revoke - --yes`); OAuth 2 has no standard way to list tokens or to look one up by id";

/// The endpoints this driver uses.
#[derive(Debug, Clone, Default)]
struct Endpoints {
    token: Option<String>,
    introspection: Option<String>,
    revocation: Option<String>,
    /// client_secret_post only when the server does not take client_secret_basic.
    form_auth: bool,
    scopes_supported: Vec<String>,
}

pub struct OAuth2 {
    http: Http,
    client_id: Option<String>,
    credential: Option<Credential>,
    explicit: Endpoints,
    discovered: OnceLock<Endpoints>,
    /// --insecure (or the profile's): also lets discovery name plain http
    /// endpoints for an https issuer.
    insecure: bool,
    warn: Warn,
}

impl OAuth2 {
    pub fn new(settings: &super::Settings, warn: Warn) -> Result<OAuth2> {
        let p = &settings.profile;
        let endpoint = |name: &str, v: &Option<String>| -> Result<Option<String>> {
            v.as_deref()
                .map(|u| {
                    normalize_url(u)
                        .map_err(|e| DriverError::Invalid(format!("the profile's {name}: {e}")))
                })
                .transpose()
        };
        Ok(OAuth2 {
            http: Http::new(&settings.http)?,
            client_id: p
                .client_id
                .clone()
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty()),
            credential: settings.credential.clone(),
            explicit: Endpoints {
                token: endpoint("token_endpoint", &p.token_endpoint)?,
                introspection: endpoint("introspection_endpoint", &p.introspection_endpoint)?,
                revocation: endpoint("revocation_endpoint", &p.revocation_endpoint)?,
                form_auth: false,
                scopes_supported: Vec::new(),
            },
            discovered: OnceLock::new(),
            insecure: settings.http.insecure,
            warn,
        })
    }

    /// The endpoint for `which`, from the profile or else from discovery.
    fn endpoint(&self, which: fn(&Endpoints) -> &Option<String>, name: &str) -> Result<String> {
        if let Some(u) = which(&self.explicit) {
            return Ok(u.clone());
        }
        let found = self.discover()?;
        which(found).clone().ok_or_else(|| {
            DriverError::Unsupported {
                driver: "oauth2",
                op: match name {
                    "token" => Op::Create,
                    "introspection" => Op::InspectBySecret,
                    _ => Op::Revoke,
                },
            }
            .with_hint(format!(
                "the server's metadata names no {name}_endpoint; if it has one, set it: `tok profile add NAME --driver oauth2 --url ISSUER --{name}-endpoint URL`"
            ))
        })
    }

    fn form_auth(&self) -> bool {
        self.discovered.get().is_some_and(|d| d.form_auth)
    }

    /// Fetches the server's metadata once.
    fn discover(&self) -> Result<&Endpoints> {
        if let Some(d) = self.discovered.get() {
            return Ok(d);
        }
        let base = self.http.base().to_string();
        let candidates = discovery_urls(&base)?;
        let mut tried = Vec::new();
        for url in &candidates {
            let resp = self.http.send(self.http.client().get(url))?;
            if resp.status().as_u16() == 404 {
                tried.push(url.clone());
                continue;
            }
            let meta: Metadata = self.json_ok(resp)?;
            if !base.contains("/.well-known/") {
                let issuer = meta.issuer.as_deref().unwrap_or("").trim_end_matches('/');
                if issuer != base {
                    return Err(DriverError::Protocol {
                        url: url.clone(),
                        message: format!(
                            "the metadata names issuer `{issuer}`, not `{base}`"
                        ),
                    }
                    .with_hint("use the issuer exactly as the server names it for --url (RFC 8414 §3.3 forbids mixing them)"));
                }
            }
            let methods = meta
                .token_endpoint_auth_methods_supported
                .unwrap_or_default();
            let check = |name: &str, v: Option<String>| -> Result<Option<String>> {
                v.map(|u| discovered_endpoint(&base, url, name, &u, self.insecure))
                    .transpose()
            };
            let found = Endpoints {
                token: check("token_endpoint", meta.token_endpoint)?,
                introspection: check("introspection_endpoint", meta.introspection_endpoint)?,
                revocation: check("revocation_endpoint", meta.revocation_endpoint)?,
                form_auth: !methods.is_empty()
                    && !methods.iter().any(|m| m == "client_secret_basic")
                    && methods.iter().any(|m| m == "client_secret_post"),
                scopes_supported: meta.scopes_supported.unwrap_or_default(),
            };
            return Ok(self.discovered.get_or_init(|| found));
        }
        Err(DriverError::NotFound(format!("OAuth 2 metadata at {}", tried.join(" or ")))
            .with_hint("give the issuer URL with --url, or set the endpoints in a profile: `tok profile add NAME --driver oauth2 --url ISSUER --token-endpoint URL --introspection-endpoint URL --revocation-endpoint URL`"))
    }

    /// The client's id and secret, or why they are missing.
    fn client(&self) -> Result<(&str, &Secret)> {
        let id = self.client_id.as_deref().ok_or_else(|| {
            DriverError::Invalid("no OAuth 2 client id".into())
                .with_hint("pass --client-id ID (or TOK_CLIENT_ID), or keep it in the profile")
        })?;
        let secret = self.credential.as_ref().map(|c| &c.secret).ok_or_else(|| {
            DriverError::Unauthorized(format!("no client secret for client `{id}`"))
                .with_hint("set TOK_CLIENT_SECRET (or TOK_ADMIN_TOKEN) to the client's secret")
        })?;
        Ok((id, secret))
    }

    /// A form POST to `url`, the client authenticated as the server prefers.
    fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Result<Response> {
        let (id, secret) = self.client()?;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        let mut req = self.http.client().post(url);
        if self.form_auth() {
            form.push(("client_id", id));
            form.push(("client_secret", secret.expose()));
        } else {
            // RFC 6749 §2.3.1: both parts are form-encoded before base64.
            let pair = format!("{}:{}", form_encode(id), form_encode(secret.expose()));
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            let v = super::http_client::sensitive(&basic, "the client id")?;
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        req = req
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        self.http.send(req)
    }

    /// A successful JSON answer as `T`; an OAuth 2 error answer mapped onto
    /// tok's kinds. A success may hold a secret, so its body is never quoted.
    fn json_ok<T: serde::de::DeserializeOwned>(&self, resp: Response) -> Result<T> {
        let url = redact_url(resp.url().as_str());
        let status = resp.status();
        let bytes = resp.bytes().map_err(|e| cut_off(&url, e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| DriverError::Protocol {
                url,
                message: format!(
                    "HTTP {status} with a body that is not the expected JSON ({e}); is this an OAuth 2 server?"
                ),
            });
        }
        let err: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = err.get("error").and_then(Value::as_str).unwrap_or("");
        let desc = err
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("");
        let said = match (code, desc) {
            ("", _) => format!("HTTP {status}: {}", snippet(&bytes)),
            (c, "") => c.to_string(),
            (c, d) => format!("{c}: {d}"),
        };
        let client = self.client_id.as_deref().unwrap_or("?");
        Err(match code {
            "invalid_client" => DriverError::Unauthorized(format!(
                "the server rejected client `{client}` ({said})"
            ))
            .with_hint(CREDENTIAL_HINT),
            "unauthorized_client" | "access_denied" => DriverError::Forbidden(format!(
                "client `{client}` may not do this ({said})"
            ))
            .with_hint("allow the client_credentials grant (and introspection, revocation) for this client on the server"),
            "invalid_scope" => {
                DriverError::Invalid(format!("the server refused the scopes ({said})"))
                    .with_hint(self.scope_hint())
            }
            "unsupported_grant_type" => {
                DriverError::Invalid(format!("the server does not offer the client_credentials grant ({said})"))
                    .with_hint("enable the client_credentials grant on the server")
            }
            "unsupported_token_type" => {
                DriverError::Invalid(format!("the server cannot do this with that token ({said})"))
                    .with_hint("a JWT can be decoded offline, unverified, with `tok --driver local inspect -`")
            }
            "invalid_request" | "invalid_grant" => {
                DriverError::Invalid(format!("the server refused the request ({said})"))
            }
            _ if status.as_u16() == 401 => {
                DriverError::Unauthorized(format!("HTTP 401 from {url} ({said})"))
                    .with_hint(CREDENTIAL_HINT)
            }
            _ => DriverError::Http {
                status: status.as_u16(),
                url,
                body: said,
            },
        })
    }

    fn scope_hint(&self) -> String {
        match self.discovered.get().map(|d| &d.scopes_supported) {
            Some(s) if !s.is_empty() => {
                format!("the server declares these scopes: {}", s.join(" "))
            }
            _ => "ask only for scopes the server declares and allows this client".into(),
        }
    }

    /// `secret` posted, as an access token, to the endpoint `which` (RFC 7662
    /// introspection, RFC 7009 revocation).
    fn post_token(
        &self,
        which: fn(&Endpoints) -> &Option<String>,
        name: &str,
        secret: &Secret,
    ) -> Result<Response> {
        let url = self.endpoint(which, name)?;
        let hint = ("token_type_hint", "access_token");
        self.post_form(&url, &[("token", secret.expose()), hint])
    }

    fn introspect(&self, secret: &Secret) -> Result<Introspection> {
        let resp = self.post_token(|e| &e.introspection, "introspection", secret)?;
        self.json_ok(resp)
    }

    /// Revokes a token just issued that tok will not hand out, and says how
    /// that went, for the error that follows.
    fn take_back(&self, secret: &Secret, expires_at: Option<DateTime<Utc>>) -> String {
        match self.revoke_at_server(secret) {
            Ok(()) => "the token it issued was revoked".to_string(),
            Err(e) => {
                (self.warn)(&format!(
                    "could not revoke the token the server issued: {e}"
                ));
                match expires_at {
                    Some(e) => format!(
                        "the token it issued could not be revoked and stays valid until {}",
                        crate::output::rfc3339(e)
                    ),
                    None => "the token it issued could not be revoked".into(),
                }
            }
        }
    }

    fn revoke_at_server(&self, secret: &Secret) -> Result<()> {
        let resp = self.post_token(|e| &e.revocation, "revocation", secret)?;
        if resp.status().is_success() {
            return Ok(());
        }
        self.json_ok::<Value>(resp).map(|_| ())
    }

    fn not_active(secret: &Secret) -> DriverError {
        DriverError::UnknownSecret {
            fingerprint: secret.fingerprint(),
        }
        .with_hint("the server says this token is not active: it was revoked, it expired, or this server did not issue it")
    }
}

/// What this driver cannot do, with what it can.
/// An endpoint named in the metadata at `metadata_url`, checked before the
/// client secret goes there: a URL, and not plain http for an https issuer
/// (a downgrade that would send the secret in the clear) unless `insecure`.
fn discovered_endpoint(
    issuer: &str,
    metadata_url: &str,
    name: &str,
    raw: &str,
    insecure: bool,
) -> Result<String> {
    let u = normalize_url(raw).map_err(|e| DriverError::Protocol {
        url: metadata_url.to_string(),
        message: format!("its {name} is not usable: {e}"),
    })?;
    if issuer.starts_with("https://") && u.starts_with("http://") && !insecure {
        return Err(DriverError::Invalid(format!(
            "the server's metadata ({metadata_url}) names {name} {u}, plain http for an https issuer; tok will not send the client secret there in the clear"
        ))
        .with_hint(format!(
            "have the server advertise https endpoints, set the endpoint in the profile (`tok profile add NAME --driver oauth2 --url {issuer} --{}-endpoint https://...`), or pass --insecure to send it anyway",
            name.trim_end_matches("_endpoint")
        )));
    }
    Ok(u)
}

fn unsupported(op: Op) -> DriverError {
    let e = DriverError::Unsupported {
        driver: "oauth2",
        op,
    };
    match op {
        Op::Expiry | Op::NoExpiry => e.with_hint("an OAuth 2 server chooses a token's lifetime itself; drop --ttl, --expires-at and --no-expiry, and tok reports the expiry the server set"),
        _ => e.with_hint(CAN_DO),
    }
}

impl Gateway for OAuth2 {
    fn kind(&self) -> DriverKind {
        DriverKind::Oauth2
    }

    fn require(&self, op: Op) -> Result<()> {
        if self.capabilities().supports(op) {
            Ok(())
        } else {
            Err(unsupported(op))
        }
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        check_new_token(new).map_err(DriverError::Invalid)?;
        if new.name.is_some() || new.description.is_some() {
            return Err(DriverError::Invalid(
                "OAuth 2 access tokens have no name or description".into(),
            )
            .with_hint("drop --name and --description"));
        }
        for (op, asked) in [
            (Op::Labels, !new.labels.is_empty()),
            (Op::UseLimits, new.max_uses.is_some()),
            (Op::Expiry, new.expires_at.is_some()),
        ] {
            if asked {
                self.require(op)?;
            }
        }
        self.client()?;
        let url = self.endpoint(|e| &e.token, "token")?;
        let scope = new.scopes.join(" ");
        let mut fields = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            fields.push(("scope", scope.as_str()));
        }
        let resp = self.post_form(&url, &fields)?;
        let answer: TokenAnswer = self.json_ok(resp)?;
        let secret = Secret::new(answer.access_token);
        let now = Utc::now();
        // The server's own record, where it can be read, over the answer.
        let has_introspection = self.explicit.introspection.is_some()
            || self.discover().is_ok_and(|d| d.introspection.is_some());
        let token =
            if has_introspection {
                match self.introspect(&secret) {
                    Ok(i) if i.active => to_token(&secret, &i, now),
                    Ok(_) => return Err(DriverError::Protocol {
                        url,
                        message:
                            "the server issued a token that its introspection says is not active"
                                .into(),
                    }),
                    Err(e) => return Err(e),
                }
            } else {
                let (id, _) = self.client()?;
                let exp = match answer.expires_in {
                    None => None,
                    Some(e) => match expiry_after(now, e) {
                        Some(exp) => Some(exp),
                        None => {
                            let undo = self.take_back(&secret, None);
                            return Err(DriverError::Protocol {
                                url,
                                message: format!(
                                    "its expires_in of {e} seconds is past any date; {undo}"
                                ),
                            });
                        }
                    },
                };
                to_token(
                    &secret,
                    &Introspection {
                        active: true,
                        // RFC 6749 §5.1: no scope in the answer means the scope asked for.
                        scope: answer.scope.clone().or(Some(scope.clone())),
                        client_id: Some(id.to_string()),
                        username: None,
                        token_type: None,
                        exp,
                        iat: Some(now.timestamp()),
                        sub: None,
                        aud: None,
                        iss: None,
                    },
                    now,
                )
            };
        let dropped: Vec<&String> = new
            .scopes
            .iter()
            .filter(|s| !token.scopes.contains(s))
            .collect();
        if !dropped.is_empty() {
            // A token without the scopes asked for is not what the caller
            // wants: take it back rather than hand it out.
            let undo = self.take_back(&secret, token.expires_at);
            return Err(DriverError::Invalid(format!(
                "the server did not grant {} (granted: {}); {undo}",
                dropped
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if token.scopes.is_empty() {
                    "none".to_string()
                } else {
                    token.scopes.join(" ")
                }
            ))
            .with_hint(self.scope_hint()));
        }
        Ok(Created { token, secret })
    }

    fn list(&self, _filter: &Filter, _sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()> {
        Err(unsupported(Op::List))
    }

    fn get(&self, _id_or_prefix: &str) -> Result<Token> {
        Err(unsupported(Op::InspectById))
    }

    fn lookup(&self, secret: &Secret) -> Result<Token> {
        let i = self.introspect(secret)?;
        if !i.active {
            return Err(Self::not_active(secret));
        }
        Ok(to_token(secret, &i, Utc::now()))
    }

    fn revoke(&self, _id: &str, _reason: Option<&str>) -> Result<Revoked> {
        Err(unsupported(Op::InspectById))
    }

    fn revoke_secret(&self, secret: &Secret, t: &Token, reason: Option<&str>) -> Result<Revoked> {
        if reason.is_some() {
            (self.warn)("OAuth 2 revocation takes no reason; --reason was not recorded");
        }
        self.revoke_at_server(secret)?;
        let mut t = t.clone();
        t.revoked_at = Some(Utc::now());
        t.state = State::Revoked;
        Ok((t, RevokeOutcome::Revoked))
    }

    fn rotate(&self, _id: &str, _grace: Option<u64>) -> Result<(Created, Token)> {
        Err(unsupported(Op::Rotate))
    }

    /// Checks the client's credentials with an introspection of a token that
    /// cannot exist: a valid client gets `active:false`, a wrong one 401.
    fn whoami(&self) -> Result<Identity> {
        let (id, _) = self.client()?;
        let id = id.to_string();
        let probe = Secret::new("tok-credential-check");
        self.introspect(&probe)?;
        Ok(Identity {
            principal: format!("client {id}"),
            expires_at: None,
            scopes: Vec::new(),
            checked: true,
        })
    }

    fn is_secret(&self, s: &str) -> bool {
        // No ids exist here; anything long enough to be a token is treated as one.
        !s.starts_with("sha256:") && s.len() >= 16
    }

    /// The handles tok shows (`sha256:` and hex), though no operation takes one.
    fn looks_like_id(&self, s: &str) -> bool {
        super::id_shaped(s, 64, "-_:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "https://id.example/.well-known/openid-configuration";

    #[test]
    fn discovery_refuses_plain_http_endpoints_for_an_https_issuer() {
        let issuer = "https://id.example";
        let e = discovered_endpoint(
            issuer,
            META,
            "token_endpoint",
            "http://id.example/token",
            false,
        )
        .unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Usage);
        let msg = e.to_string();
        assert!(
            msg.contains("token_endpoint http://id.example/token"),
            "{msg}"
        );
        assert!(msg.contains("plain http for an https issuer"), "{msg}");
        assert!(e.hint().unwrap().contains("--insecure"), "{:?}", e.hint());
        assert!(
            e.hint().unwrap().contains("--token-endpoint"),
            "{:?}",
            e.hint()
        );
        // Case does not matter to the scheme check: the URL is normalised first.
        assert!(discovered_endpoint(
            issuer,
            META,
            "revocation_endpoint",
            "HTTP://id.example/r",
            false
        )
        .is_err());

        // --insecure lets it through; https, and any endpoint of an http issuer, pass.
        assert_eq!(
            discovered_endpoint(
                issuer,
                META,
                "token_endpoint",
                "http://id.example/token",
                true
            )
            .unwrap(),
            "http://id.example/token"
        );
        assert_eq!(
            discovered_endpoint(
                issuer,
                META,
                "introspection_endpoint",
                "https://id.example/i/",
                false
            )
            .unwrap(),
            "https://id.example/i"
        );
        assert!(discovered_endpoint(
            "http://127.0.0.1:3000",
            META,
            "token_endpoint",
            "http://127.0.0.1:3000/t",
            false
        )
        .is_ok());
        let e =
            discovered_endpoint(issuer, META, "token_endpoint", "not a url", false).unwrap_err();
        assert!(matches!(e, DriverError::Protocol { .. }), "{e}");
    }
}
