//! RFC 7662 token introspection and RFC 7009 token revocation, so that other
//! gateways (Kong, APISIX, Envoy, ...) can use tok serve as their token
//! authority.
//!
//! The calling client authenticates with a tok token that has the scope
//! `tok:introspect` (or `tok:admin`): as `Authorization: Bearer <secret>`, or
//! as HTTP Basic (client_secret_basic) with the token's id as client_id and its
//! secret as client_secret.

use super::audit_writer::AuditSink;
use super::state::AppState;
use crate::model::Token;
use crate::secret::{self, Secret};
use crate::store::audit::{Decision, Entry, Event};
use crate::store::backend::{self, Backend};
use crate::store::{Admission, Spend};
use axum::extract::rejection::FormRejection;
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub const SCOPE_INTROSPECT: &str = "tok:introspect";
pub const INTROSPECT_PATH: &str = "/oauth/introspect";
pub const REVOKE_PATH: &str = "/oauth/revoke";

pub struct OAuth {
    pub state: AppState,
    pub audit: AuditSink,
}

pub fn router(state: Arc<OAuth>) -> axum::Router {
    axum::Router::new()
        .route(INTROSPECT_PATH, axum::routing::post(introspect))
        .route(REVOKE_PATH, axum::routing::post(revoke))
        .with_state(state)
}

/// The form of both endpoints. No `Debug`: `token` is a secret.
#[derive(Deserialize)]
pub struct TokenForm {
    token: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// An RFC 6749 §5.2 error answer, never cached (the token endpoint uses it too).
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tok\", Bearer realm=\"tok\""),
        );
    }
    r
}

/// A body that is not a form these endpoints read, answered in the JSON error
/// shape of RFC 6749 5.2 (as RFC 7662 2.3 and RFC 7009 2.2.1 ask), never as
/// axum's plain-text rejection.
fn form_refused(e: &FormRejection) -> Response {
    let description = if e.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        "send the parameters as application/x-www-form-urlencoded".to_string()
    } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "the request body is too large".to_string()
    } else {
        "the body is not a valid form with a `token` parameter".to_string()
    };
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &description)
}

/// 503 `temporarily_unavailable` when the store fails; the cause goes to the log.
fn unavailable(what: &str, e: &backend::Error, description: &str) -> Response {
    tracing::error!(error = %e, "{what} failed");
    oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        description,
    )
}

/// The client's credential from Bearer or Basic, and the client id it claims.
fn client_credential(h: &HeaderMap) -> Option<(Secret, Option<String>)> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some((Secret::new(rest.trim()), None));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (id, secret) = text.split_once(':')?;
        // RFC 6749 2.3.1: both parts are form-urlencoded.
        let decode = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((Secret::new(decode(secret)?), Some(decode(id)?)));
    }
    None
}

/// Authenticates the calling client; on failure, the response to send.
async fn authenticate(state: &OAuth, h: &HeaderMap) -> Result<Token, Response> {
    let unauthorized = |why: &str| oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why);
    let Some((secret, claimed_id)) = client_credential(h) else {
        return Err(unauthorized(
            "authenticate with a tok token that has the tok:introspect scope (Bearer or Basic)",
        ));
    };
    let id_matches = move |t: &Token| {
        claimed_id
            .as_deref()
            .is_none_or(|id| secret::ct_eq(id.as_bytes(), t.id.as_bytes()))
    };
    let may = |t: &Token| {
        t.scopes
            .iter()
            .any(|s| s == SCOPE_INTROSPECT || s == "tok:admin")
    };
    // Checked before a use is spent: a refused client call costs nothing.
    let checked = backend::admit(
        state.state.store(),
        &secret,
        Utc::now(),
        Spend::Always,
        |t| id_matches(t) && may(t),
    )
    .await;
    match checked {
        Ok(Admission::Admitted(t)) => Ok(t),
        Ok(Admission::Forbidden(t)) if !may(&t) => Err(oauth_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the client token needs the tok:introspect or tok:admin scope",
        )),
        Ok(Admission::Forbidden(_)) => {
            Err(unauthorized("client_id does not match the client secret"))
        }
        Ok(Admission::Refused(r)) => Err(unauthorized(&format!(
            "client credential refused: {}",
            r.as_str()
        ))),
        Err(e) => Err(unavailable(
            "client authentication",
            &e,
            "the token store is not available",
        )),
    }
}

fn principal(t: &Token) -> String {
    match &t.name {
        Some(n) => format!("{} ({n})", t.id),
        None => t.id.clone(),
    }
}

/// The introspected token, if usable. A gateway that hears `active: true`
/// lets its request through, so a use-limited token spends a use here, exactly
/// as it would at tok's own proxy; other tokens are only looked at.
async fn admit(state: &OAuth, token: &str) -> Result<Admission, backend::Error> {
    let secret = Secret::new(token);
    backend::admit(
        state.state.store(),
        &secret,
        Utc::now(),
        Spend::Limited,
        |_| true,
    )
    .await
}

/// What both endpoints need first: an authenticated client and the `token`.
async fn client_and_token(
    state: &OAuth,
    headers: &HeaderMap,
    form: TokenForm,
) -> Result<(Token, String), Response> {
    let client = authenticate(state, headers).await?;
    match form.token.filter(|t| !t.is_empty()) {
        Some(token) => Ok((client, token)),
        None => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the `token` parameter is missing",
        )),
    }
}

/// RFC 7662: `{"active": false}` for anything that is not a usable token.
async fn introspect(
    AxState(state): AxState<Arc<OAuth>>,
    headers: HeaderMap,
    id: Option<axum::Extension<super::request_id::RequestId>>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, Response> {
    let Form(form) = form.map_err(|e| form_refused(&e))?;
    let (client, token) = client_and_token(&state, &headers, form).await?;
    let admitted = admit(&state, &token)
        .await
        .map_err(|e| unavailable("introspection", &e, "the token store is not available"))?;
    let mut entry = Entry::new(Event::Introspect, Utc::now());
    entry.actor = Some(principal(&client));
    entry.request_id = id.map(|axum::Extension(id)| id.0);
    let body: Value = match admitted {
        Admission::Admitted(t) | Admission::Forbidden(t) => {
            entry.token_id = Some(t.id.clone());
            entry.decision = Some(Decision::Allow);
            let mut v = json!({
                "active": true,
                "scope": t.scopes.join(" "),
                "client_id": t.id,
                "sub": t.id,
                "token_type": "Bearer",
                "iat": t.created_at.timestamp(),
                "iss": "tok",
            });
            if let Some(e) = t.expires_at {
                v["exp"] = json!(e.timestamp());
            }
            if let Some(n) = &t.name {
                v["username"] = json!(n);
            }
            // RFC 9449 §6.2: a bound token is introspected with its key.
            if let Some(c) = &t.cnf {
                v["cnf"] = json!({"jkt": c.jkt});
                v["token_type"] = json!("DPoP");
            }
            v
        }
        Admission::Refused(r) => {
            entry.decision = Some(Decision::Deny);
            entry.reason = Some(r.as_str().to_string());
            json!({"active": false})
        }
    };
    state.audit.entry(entry).await;
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// RFC 7009: 200 whether or not the token was known or already revoked.
async fn revoke(
    AxState(state): AxState<Arc<OAuth>>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, Response> {
    let Form(form) = form.map_err(|e| form_refused(&e))?;
    let (client, token) = client_and_token(&state, &headers, form).await?;
    let by = principal(&client);
    let secret = Secret::new(token);
    if secret.validate().is_ok() {
        let done = async {
            let now = Utc::now();
            if let Some(t) = state.state.store().lookup(&secret, now).await? {
                state
                    .state
                    .store()
                    .revoke(&t.id, Some(&by), Some("revoked through RFC 7009"), now)
                    .await?;
                state.state.changed(&t.id);
            }
            Ok::<_, backend::Error>(())
        }
        .await;
        let not_revoked = "the token store is not available; the token was not revoked";
        done.map_err(|e| unavailable("revocation", &e, not_revoked))?;
    }
    Ok(StatusCode::OK.into_response())
}
