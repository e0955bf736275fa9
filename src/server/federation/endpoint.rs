//! `POST /oauth/token` (RFC 8693 token exchange) and `GET /v1/federation`
//! (what a client needs to know before it asks: the audience and the
//! endpoint). Neither takes an admin credential: the subject token is the
//! credential. Every exchange, allowed or refused, leaves an audit entry
//! (`event: exchange`) with the issuer and subject once the signature holds,
//! the policy that matched, and why it was refused.

use super::{Ask, Federation, Refusal, Trail, SUBJECT_TOKEN_MAX};
use crate::secret::Secret;
use crate::server::audit_writer::AuditSink;
use crate::server::oauth::oauth_error as error;
use crate::store::any::AnyStore;
use crate::store::audit::{Decision, Entry, Event};
use crate::store::backend::{self, Backend};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

pub const TOKEN_PATH: &str = "/oauth/token";
pub const INFO_PATH: &str = "/v1/federation";
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The largest request body read; a bigger one is refused unread.
const BODY_MAX: usize = 64 * 1024;

/// The most of `subject (issuer)` an audit entry or `created_by` keeps.
const ACTOR_MAX: usize = 512;

pub struct Exchange {
    pub federation: Arc<Federation>,
    pub store: Arc<AnyStore>,
    pub audit: AuditSink,
}

pub fn router(state: Arc<Exchange>) -> axum::Router {
    axum::Router::new()
        .route(TOKEN_PATH, axum::routing::post(token))
        .route(INFO_PATH, axum::routing::get(info))
        .with_state(state)
}

async fn info(State(state): State<Arc<Exchange>>) -> Response {
    let cfg = state.federation.policies();
    Json(json!({
        "audience": cfg.audience,
        "token_endpoint": TOKEN_PATH,
        "grant_types_supported": [GRANT_TYPE],
        "subject_token_types_supported": [ID_TOKEN_TYPE, JWT_TYPE],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
    .into_response()
}

/// The answer to a refusal: a fixed message per kind, so that the caller
/// learns nothing about the policies (the reason is in the audit entry).
fn refusal(r: &Refusal) -> Response {
    match r {
        Refusal::Request(why) => error(StatusCode::BAD_REQUEST, "invalid_request", why),
        Refusal::GrantType => error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "tok serve takes grant_type=urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        Refusal::Target => error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "tok serve issues tokens for its own proxy only; leave out `resource` and `audience`",
        ),
        Refusal::Grant(_) => error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the subject token was not accepted",
        ),
        Refusal::Scope(_) => error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "the requested scope is not granted to this subject",
        ),
        Refusal::Unavailable(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the exchange cannot be decided now; try again later",
        ),
    }
}

fn reason(r: &Refusal) -> String {
    match r {
        Refusal::Request(s) | Refusal::Grant(s) | Refusal::Scope(s) | Refusal::Unavailable(s) => {
            s.clone()
        }
        Refusal::GrantType => "unsupported grant_type".into(),
        Refusal::Target => "`resource` or `audience` asked for".into(),
    }
}

/// The form of a token-exchange request. No `Debug`: it holds the ID token.
#[derive(Default)]
struct Form {
    subject_token: Option<String>,
    ask: Ask,
}

/// Reads the form: each parameter at most once (RFC 6749 §3.2), the RFC 8693
/// ones checked, tok's `expires_in` and `max_uses` as numbers.
fn parse(body: &[u8]) -> Result<Form, Refusal> {
    let req = |s: &str| Refusal::Request(s.to_string());
    let mut seen: Vec<String> = Vec::new();
    let mut f = Form::default();
    let mut grant_type = None;
    let mut token_type = None;
    for (k, v) in form_urlencoded::parse(body) {
        if seen.iter().any(|s| *s == k) {
            return Err(Refusal::Request(format!(
                "parameter `{k}` is given more than once"
            )));
        }
        seen.push(k.to_string());
        let number = |what: &str| -> Result<u64, Refusal> {
            v.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                Refusal::Request(format!("`{what}` is not a whole number of at least 1"))
            })
        };
        match &*k {
            "grant_type" => grant_type = Some(v.into_owned()),
            "subject_token" => f.subject_token = Some(v.into_owned()),
            "subject_token_type" => token_type = Some(v.into_owned()),
            "scope" => f.ask.scopes = v.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            "requested_token_type" if v != ACCESS_TOKEN_TYPE => {
                return Err(req("tok serve issues requested_token_type urn:ietf:params:oauth:token-type:access_token only"))
            }
            "resource" | "audience" => return Err(Refusal::Target),
            "actor_token" | "actor_token_type" => {
                return Err(req("tok serve does not take an actor_token (no delegation)"))
            }
            "expires_in" => f.ask.ttl_secs = Some(number("expires_in")?),
            "max_uses" => f.ask.max_uses = Some(number("max_uses")?),
            _ => {}
        }
    }
    match grant_type.as_deref() {
        Some(GRANT_TYPE) => {}
        Some(_) => return Err(Refusal::GrantType),
        None => return Err(req("`grant_type` is missing")),
    }
    match token_type.as_deref() {
        Some(ID_TOKEN_TYPE) | Some(JWT_TYPE) => {}
        Some(_) => {
            return Err(req(
                "`subject_token_type` must be urn:ietf:params:oauth:token-type:id_token (or :jwt)",
            ))
        }
        None => return Err(req("`subject_token_type` is missing")),
    }
    match &f.subject_token {
        None => return Err(req("`subject_token` is missing")),
        Some(t) if t.len() > SUBJECT_TOKEN_MAX => {
            return Err(Refusal::Request(format!(
                "`subject_token` is larger than {} KiB",
                SUBJECT_TOKEN_MAX / 1024
            )))
        }
        _ => {}
    }
    Ok(f)
}

async fn token(
    State(state): State<Arc<Exchange>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: Body,
) -> Response {
    let mut trail = Trail::default();
    let result = exchange(&state, body, &mut trail).await;
    let mut entry = Entry::new(Event::Exchange, Utc::now());
    entry.method = Some("POST".into());
    entry.path = Some(TOKEN_PATH.into());
    entry.client = Some(client.ip().to_string());
    entry.actor = match (&trail.subject, &trail.issuer) {
        (Some(s), Some(i)) => Some(format!("{s} ({i})")),
        (None, Some(i)) => Some(format!("({i})")),
        _ => None,
    }
    .map(|a| a.chars().take(ACTOR_MAX).collect());
    let policy = trail.policy.as_deref().map(|p| format!("policy {p}"));
    let resp = match result {
        Ok((resp, id)) => {
            entry.decision = Some(Decision::Allow);
            entry.token_id = Some(id);
            entry.reason = policy;
            resp
        }
        Err(r) => {
            entry.decision = Some(Decision::Deny);
            let why = reason(&r);
            entry.reason = Some(match policy {
                Some(p) => format!("{p}: {why}"),
                None => why,
            });
            tracing::info!(
                reason = entry.reason.as_deref().unwrap_or(""),
                "token exchange refused"
            );
            refusal(&r)
        }
    };
    state.audit.entry(entry).await;
    resp
}

async fn exchange(
    state: &Exchange,
    body: Body,
    trail: &mut Trail,
) -> Result<(Response, String), Refusal> {
    let body = axum::body::to_bytes(body, BODY_MAX).await.map_err(|_| {
        Refusal::Request(format!(
            "the request body is larger than {} KiB",
            BODY_MAX / 1024
        ))
    })?;
    let form = parse(&body)?;
    let subject_token = form.subject_token.unwrap_or_default();
    let now = Utc::now();
    let (new, jti) = state
        .federation
        .decide(&subject_token, &form.ask, now, trail)
        .await?;
    let by = format!(
        "{} ({}) by policy {}",
        trail.subject.as_deref().unwrap_or("-"),
        trail.issuer.as_deref().unwrap_or("-"),
        trail.policy.as_deref().unwrap_or("-")
    );
    let by: String = by.chars().take(ACTOR_MAX).collect();
    let created = state
        .store
        .create(&new, Some(&by), now)
        .await
        .map_err(|e: backend::Error| {
            state.federation.unspend(&jti);
            tracing::error!(error = %e, "could not store the minted token");
            Refusal::Unavailable(format!("the store: {e}"))
        })?;
    let t = &created.token;
    let expires_in = t
        .expires_at
        .map(|e| (e - now).num_seconds().max(0))
        .unwrap_or(0);
    tracing::info!(id = %t.id, policy = trail.policy.as_deref().unwrap_or(""), "token minted by exchange");
    let secret: &Secret = &created.secret;
    let mut resp = Json(json!({
        "access_token": secret.expose(),
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": t.scopes.join(" "),
        "token": t,
    }))
    .into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok((resp, t.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(extra: &str) -> String {
        format!(
            "grant_type={GRANT_TYPE}&subject_token=a.b.c&subject_token_type={ID_TOKEN_TYPE}{extra}"
        )
    }

    #[test]
    fn requests_are_read_strictly() {
        let f = parse(form("&scope=a%20b&expires_in=600&max_uses=3").as_bytes()).unwrap();
        assert_eq!(f.ask.scopes, ["a", "b"]);
        assert_eq!((f.ask.ttl_secs, f.ask.max_uses), (Some(600), Some(3)));
        for (extra, want) in [
            ("&scope=a&scope=b", "more than once"),
            ("&expires_in=0", "expires_in"),
            ("&expires_in=10m", "expires_in"),
            ("&actor_token=x", "actor_token"),
            ("&requested_token_type=urn:x", "access_token"),
        ] {
            match parse(form(extra).as_bytes()) {
                Err(Refusal::Request(m)) => assert!(m.contains(want), "{extra}: {m}"),
                other => panic!("{extra}: {:?}", other.map(|_| ())),
            }
        }
        assert!(matches!(
            parse(form("&resource=https://x").as_bytes()),
            Err(Refusal::Target)
        ));
        assert!(matches!(
            parse(b"grant_type=client_credentials"),
            Err(Refusal::GrantType)
        ));
        let body = format!(
            "grant_type={GRANT_TYPE}&subject_token_type={ID_TOKEN_TYPE}&subject_token={}",
            "a".repeat(SUBJECT_TOKEN_MAX + 1)
        );
        assert!(matches!(parse(body.as_bytes()), Err(Refusal::Request(m)) if m.contains("KiB")));
        assert!(matches!(
            parse(format!("grant_type={GRANT_TYPE}&subject_token=a").as_bytes()),
            Err(Refusal::Request(m)) if m.contains("subject_token_type")
        ));
    }
}
