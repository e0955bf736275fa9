//! Request extractors that answer in the API's error shape: a strict JSON body
//! (size cap, content type, unknown fields refused) and the list query.

use super::error::ApiError;
use super::wire::{code, BODY_MAX, ID_MAX, PAGE_DEFAULT, PAGE_MAX};
use crate::model::{limits, Filter, StateFilter};
use crate::store::audit::{AuditFilter, Decision};
use crate::store::{Cursor, ID_PREFIX};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

/// A JSON body of type `T`. An empty body is `T::default()` where `T` allows
/// it (`OptionalBody`); otherwise the body must be `application/json`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + EmptyBody,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_string());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        code::PAYLOAD_TOO_LARGE,
                        format!("the request body is larger than the limit of {BODY_MAX} bytes"),
                    )
                } else {
                    ApiError::bad_request(format!("could not read the request body: {e}"))
                }
            })?;
        // Only a body that is not there reads as absent: white space alone is
        // not JSON, and says the client sent something else than it meant.
        if bytes.is_empty() {
            if let Some(empty) = T::empty() {
                return Ok(JsonBody(empty));
            }
            return Err(ApiError::bad_request(
                "the request needs a JSON body; see docs/admin-api.md",
            ));
        }
        let is_json = content_type.as_deref().is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
        });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON with `Content-Type: application/json`",
            ));
        }
        // serde would also read a struct from a JSON array (`[]`): refuse it.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request(
                "the JSON body must be an object (`{...}`); see docs/admin-api.md",
            ));
        }
        // serde names the field and what was expected; it never echoes a string
        // value here, since no body field takes another type from a string.
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("the JSON body is not valid: {e}")))
    }
}

/// What an absent body means: `None` when a body is required.
pub trait EmptyBody: Sized {
    fn empty() -> Option<Self>;
}

/// A body that may be left out, meaning `T::default()`.
macro_rules! optional_body {
    ($($t:ty),*) => {$(
        impl EmptyBody for $t {
            fn empty() -> Option<Self> { Some(<$t>::default()) }
        }
    )*};
}
/// A body that must be there.
macro_rules! required_body {
    ($($t:ty),*) => {$(
        impl EmptyBody for $t {
            fn empty() -> Option<Self> { None }
        }
    )*};
}

use super::wire::{CreateRequest, LookupRequest, RevokeRequest, RotateRequest};
optional_body!(RevokeRequest, RotateRequest);
required_body!(CreateRequest, LookupRequest);

/// The pairs of a query string, `+` and `%XX` decoded. Unlike
/// `form_urlencoded::parse`, bytes that do not decode to UTF-8 are refused
/// rather than replaced with U+FFFD: a filter must mean what was sent.
fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |part: &str, what: &str| -> Result<String, ApiError> {
        let plus = part.replace('+', " ");
        percent_encoding::percent_decode_str(&plus)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "the query {what} `{}` is not UTF-8 once percent-decoded",
                    crate::text::clipped(part)
                ))
            })
    };
    let mut out = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k, "parameter")?;
        let v = decode(v, &format!("parameter `{}`", crate::text::clipped(&k)))?;
        out.push((k, v));
    }
    Ok(out)
}

/// The parsed query of `GET /v1/tokens`.
#[derive(Debug)]
pub struct ListQuery {
    pub filter: Filter,
    pub page: u64,
    pub cursor: Option<Cursor>,
}

const LIST_PARAMS: &str =
    "state, name, label, scope, expiring_within, created_by, id_prefix, limit, cursor";

/// Parses the list query; repeated `label` and `scope` add up, every other
/// parameter may be given once, and an unknown one is refused by name.
pub fn list_query(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut filter = Filter::default();
    let mut page = None;
    let mut cursor = None;
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in query_pairs(raw)? {
        let repeatable = k == "label" || k == "scope";
        if !repeatable && seen.contains(&k) {
            return Err(ApiError::bad_request(format!(
                "the query parameter `{}` is given twice",
                crate::text::clipped(&k)
            )));
        }
        seen.push(k.clone());
        let text = |max: usize| -> Result<String, ApiError> {
            if v.chars().count() > max {
                return Err(ApiError::bad_request(format!(
                    "`{k}` is longer than {max} characters"
                )));
            }
            Ok(v.clone())
        };
        match k.as_str() {
            "state" => {
                filter.state = match v.as_str() {
                    "active" => StateFilter::Active,
                    "expired" => StateFilter::Expired,
                    "revoked" => StateFilter::Revoked,
                    "exhausted" => StateFilter::Exhausted,
                    "all" => StateFilter::All,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                        "`state` must be one of active, expired, revoked, exhausted, all, not `{}`",
                        crate::text::clipped(&v)
                    )))
                    }
                }
            }
            "name" => filter.name = Some(text(limits::NAME_MAX)?),
            "label" => {
                let (lk, lv) = v
                    .split_once('=')
                    .filter(|(lk, _)| !lk.is_empty())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "`label` must be KEY=VALUE, not `{}`",
                            crate::text::clipped(&v)
                        ))
                    })?;
                if filter.labels.len() >= limits::LABELS_PER_TOKEN {
                    return Err(ApiError::bad_request(format!(
                        "more than {} `label` filters",
                        limits::LABELS_PER_TOKEN
                    )));
                }
                text(limits::LABEL_KEY_MAX + 1 + limits::LABEL_VALUE_MAX)?;
                filter.labels.push((lk.to_string(), lv.to_string()));
            }
            "scope" => {
                if filter.scopes.len() >= limits::SCOPES_PER_TOKEN {
                    return Err(ApiError::bad_request(format!(
                        "more than {} `scope` filters",
                        limits::SCOPES_PER_TOKEN
                    )));
                }
                filter.scopes.push(text(limits::SCOPE_MAX)?);
            }
            "expiring_within" => {
                filter.expiring_within = Some(number(&k, &v)?);
            }
            "created_by" => filter.created_by = Some(text(limits::NAME_MAX * 2)?),
            "id_prefix" => filter.id_prefix = Some(text(ID_MAX)?),
            "limit" => {
                let n = number(&k, &v)?;
                if n == 0 || n > PAGE_MAX {
                    return Err(ApiError::bad_request(format!(
                        "`limit` must be between 1 and the page size cap of {PAGE_MAX}, not {n}"
                    )));
                }
                page = Some(n);
            }
            "cursor" => {
                let c = Cursor::decode(&v).filter(|c| is_id(&c.id)).ok_or_else(|| {
                    ApiError::bad_request(
                        "`cursor` is not one this server gave out; pass next_cursor back as it came",
                    )
                })?;
                cursor = Some(c);
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{}`; known: {LIST_PARAMS}",
                    crate::text::clipped(&k)
                )))
            }
        }
    }
    Ok(ListQuery {
        filter,
        page: page.unwrap_or(PAGE_DEFAULT),
        cursor,
    })
}

/// The parsed query of `GET /v1/audit`.
#[derive(Debug)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    /// Page size when paging forward (`newest` not given).
    pub page: u64,
}

const AUDIT_PARAMS: &str = "token_id, since, decision, after_seq, limit, newest";

/// Parses the audit query: filters, then either a forward page (`after_seq`,
/// `limit`) or the `newest` N entries.
pub fn audit_query(raw: Option<&str>) -> Result<AuditQuery, ApiError> {
    let mut filter = AuditFilter::default();
    let mut page = None;
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in query_pairs(raw)? {
        if seen.contains(&k) {
            return Err(ApiError::bad_request(format!(
                "the query parameter `{}` is given twice",
                crate::text::clipped(&k)
            )));
        }
        seen.push(k.clone());
        let capped = |k: &str, v: &str| -> Result<u64, ApiError> {
            let n = number(k, v)?;
            if n == 0 || n > PAGE_MAX {
                return Err(ApiError::bad_request(format!(
                    "`{k}` must be between 1 and the page size cap of {PAGE_MAX}, not {n}"
                )));
            }
            Ok(n)
        };
        match k.as_str() {
            "token_id" => {
                if v.chars().count() > ID_MAX {
                    return Err(ApiError::bad_request(format!(
                        "`token_id` is longer than {ID_MAX} characters"
                    )));
                }
                filter.token_id = Some(v);
            }
            "since" => {
                let t = chrono::DateTime::parse_from_rfc3339(&v).map_err(|_| {
                    ApiError::bad_request(format!(
                        "`since` must be an RFC 3339 time such as 2030-01-01T00:00:00Z, not `{}`",
                        crate::text::clipped(&v)
                    ))
                })?;
                filter.since = Some(t.with_timezone(&chrono::Utc));
            }
            "decision" => {
                filter.decision = Some(match v.as_str() {
                    "allow" => Decision::Allow,
                    "deny" => Decision::Deny,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "`decision` must be allow or deny, not `{}`",
                            crate::text::clipped(&v)
                        )))
                    }
                })
            }
            "after_seq" => {
                let n = number(&k, &v)?;
                filter.after_seq = Some(i64::try_from(n).map_err(|_| {
                    ApiError::bad_request("`after_seq` is larger than any sequence number")
                })?);
            }
            "limit" => page = Some(capped(&k, &v)?),
            "newest" => filter.limit = Some(capped(&k, &v)?),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{}`; known: {AUDIT_PARAMS}",
                    crate::text::clipped(&k)
                )))
            }
        }
    }
    if filter.limit.is_some() && (page.is_some() || filter.after_seq.is_some()) {
        return Err(ApiError::bad_request(
            "`newest` cannot be combined with `limit` or `after_seq`",
        ));
    }
    Ok(AuditQuery {
        filter,
        page: page.unwrap_or(PAGE_MAX),
    })
}

/// `tk_` and up to 40 lowercase letters and digits: the shape of a token id.
fn is_id(s: &str) -> bool {
    s.strip_prefix(ID_PREFIX).is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 40
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

fn number(k: &str, v: &str) -> Result<u64, ApiError> {
    v.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "`{k}` must be a whole number of at most 20 digits, not `{}`",
            crate::text::clipped(v)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_parses_filters_and_refuses_what_it_does_not_know() {
        let q = list_query(Some(
            "state=all&label=team%3Dpay&label=env=ci&scope=a&scope=b&limit=5&id_prefix=tk_a",
        ))
        .unwrap();
        assert_eq!(q.filter.state, StateFilter::All);
        assert_eq!(
            q.filter.labels,
            vec![("team".into(), "pay".into()), ("env".into(), "ci".into())]
        );
        assert_eq!(q.filter.scopes, vec!["a", "b"]);
        assert_eq!(q.page, 5);
        assert_eq!(q.filter.id_prefix.as_deref(), Some("tk_a"));
        assert_eq!(list_query(None).unwrap().page, PAGE_DEFAULT);

        let msg = |q: &str| list_query(Some(q)).unwrap_err().message;
        assert!(msg("limit=1001").contains("1000"));
        assert!(msg("limit=0").contains("between 1"));
        assert!(msg("nmae=x").contains("unknown query parameter `nmae`"));
        assert!(msg("state=gone").contains("state"));
        assert!(msg("name=a&name=b").contains("twice"));
        assert!(msg("label=novalue").contains("KEY=VALUE"));
        assert!(msg("cursor=zzz").contains("cursor"));
        assert!(msg("cursor=0.5").contains("cursor"));
        let a = |q: &str| audit_query(Some(q)).map(|q| (q.filter, q.page));
        let (f, page) = a("token_id=tk_a&decision=deny&after_seq=7&limit=10").unwrap();
        assert_eq!((f.after_seq, page, f.limit), (Some(7), 10, None));
        assert_eq!(a("newest=5").unwrap().0.limit, Some(5));
        assert!(a("newest=5&after_seq=1")
            .unwrap_err()
            .message
            .contains("newest"));
        assert!(a("limit=5000").unwrap_err().message.contains("1000"));
        assert!(a("since=yesterday")
            .unwrap_err()
            .message
            .contains("RFC 3339"));
        assert!(list_query(Some("cursor=1700000000000.tk_abc")).is_ok());
        assert!(msg("expiring_within=1h").contains("whole number"));
    }
}
