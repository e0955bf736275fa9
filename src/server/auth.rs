//! Admin authentication: `Authorization: Bearer <tok secret>`, checked through
//! the store (hash lookup, constant-time compare, one use spent atomically),
//! and a scope check that the handler's signature fixes at compile time:
//! `Auth<Admin>` or `Auth<Read>`.

use super::error::ApiError;
use super::state::AppState;
use crate::model::Token;
use crate::secret::Secret;
use crate::store::{Admission, Refusal, Spend};
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use chrono::Utc;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// Grants every admin API call.
pub const SCOPE_ADMIN: &str = "tok:admin";
/// Grants the calls that only read: list, get, lookup, whoami.
pub const SCOPE_READ: &str = "tok:read";

/// A level of access a route needs.
pub trait Need: Send + Sync + 'static {
    /// The scope named in a 403.
    const SCOPE: &'static str;
    fn granted_by(scopes: &[String]) -> bool;
}

/// Needs `tok:admin`.
pub struct Admin;
/// Needs `tok:read` or `tok:admin`.
pub struct Read;

impl Need for Admin {
    const SCOPE: &'static str = SCOPE_ADMIN;
    fn granted_by(scopes: &[String]) -> bool {
        scopes.iter().any(|s| s == SCOPE_ADMIN)
    }
}

impl Need for Read {
    const SCOPE: &'static str = SCOPE_READ;
    fn granted_by(scopes: &[String]) -> bool {
        scopes.iter().any(|s| s == SCOPE_ADMIN || s == SCOPE_READ)
    }
}

/// The authenticated caller: the admin token that signed the request.
pub struct Auth<N: Need> {
    pub token: Token,
    need: PhantomData<N>,
}

impl<N: Need> Auth<N> {
    /// How the caller is recorded in created_by and revoked_by: `tk_abc (ci-admin)`.
    pub fn principal(&self) -> String {
        principal_of(&self.token)
    }
}

pub use crate::wire::principal_of;

/// Where the request log finds out who made a request (set once authenticated).
#[derive(Clone, Default)]
pub struct PrincipalSlot(pub Arc<Mutex<Option<String>>>);

impl PrincipalSlot {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set(&self, who: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(who);
    }
}

impl<N: Need> FromRequestParts<AppState> for Auth<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts)?;
        // The scope is checked before a use is spent: a refused call costs nothing.
        let admission =
            crate::store::backend::admit(state.store(), &secret, Utc::now(), Spend::Always, |t| {
                N::granted_by(&t.scopes)
            })
            .await?;
        let token = match admission {
            Admission::Admitted(t) => t,
            Admission::Forbidden(t) => {
                if let Some(slot) = parts.extensions.get::<PrincipalSlot>() {
                    slot.set(principal_of(&t));
                }
                return Err(ApiError::insufficient_scope(
                    N::SCOPE,
                    format!(
                        "the bearer token {} lacks the scope `{}` this call needs",
                        t.id,
                        N::SCOPE
                    ),
                ));
            }
            Admission::Refused(refusal) => {
                return Err(ApiError::invalid_token(match refusal {
                    Refusal::Unknown => "the bearer token is not a token this server knows",
                    Refusal::Expired => "the bearer token has expired",
                    Refusal::Revoked => "the bearer token is revoked",
                    Refusal::Exhausted => "the bearer token is used up",
                }))
            }
        };
        if let Some(slot) = parts.extensions.get::<PrincipalSlot>() {
            slot.set(principal_of(&token));
        }
        Ok(Auth {
            token,
            need: PhantomData,
        })
    }
}

/// The secret from `Authorization: Bearer <secret>` (the scheme in any case).
fn bearer(parts: &Parts) -> Result<Secret, ApiError> {
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::invalid_token("no credential: send `Authorization: Bearer <admin token>`")
    })?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::invalid_token("the Authorization header is not readable text"))?;
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    let secret = rest.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || secret.is_empty() {
        return Err(ApiError::invalid_token(
            "the Authorization header is not `Bearer <admin token>`",
        ));
    }
    Ok(Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_is_granted_by_read_or_admin() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(Read::granted_by(&s(&["tok:read"])));
        assert!(Read::granted_by(&s(&["x", "tok:admin"])));
        assert!(!Read::granted_by(&s(&["tok:reader"])));
        assert!(Admin::granted_by(&s(&["tok:admin"])));
        assert!(!Admin::granted_by(&s(&["tok:read"])));
    }
}
