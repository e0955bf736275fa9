//! The `tok` driver: tok's own admin API (`tok serve`, docs/admin-api.md),
//! with the same behaviour and output as the `local` driver.

use super::http_client::{read_json, redact_url, snippet, Http};
use super::{DriverError, DriverKind, Gateway, Identity, Result, Revoked, Settings};
use crate::model::{check_new_token, Created, Filter, NewToken, StateFilter, Token};
use crate::secret::Secret;
use crate::store::audit::{AuditFilter, Entry};
use crate::store::ID_PREFIX;
use crate::wire::{
    code, principal_of, AuditPage, CreateRequest, CreatedResponse, ErrorBody, ListResponse,
    LookupRequest, RevokeRequest, RevokeResponse, RotateRequest, RotateResponse, WireSecret,
    ID_MAX, PAGE_MAX,
};
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{CONTENT_TYPE, LOCATION};

/// Page size the driver asks for while streaming a list.
const PAGE: u64 = 500;
/// How many prefix matches are fetched to report an ambiguous prefix.
const CANDIDATES: u64 = 11;

pub struct TokDriver {
    http: Http,
    secret: Secret,
}

/// What a request was about, to name it when the server says 404.
enum Subject<'a> {
    Id(&'a str),
    Secret(&'a Secret),
    Nothing,
}

impl TokDriver {
    pub fn new(settings: &Settings) -> Result<TokDriver> {
        let http = Http::new(&settings.http)?;
        let secret = match &settings.credential {
            Some(c) => c.secret.clone(),
            None => {
                return Err(DriverError::Unauthorized(format!(
                    "no admin token for {}",
                    http.base()
                )))
            }
        };
        Ok(TokDriver { http, secret })
    }

    fn request(&self, method: reqwest::Method, path: &[&str]) -> RequestBuilder {
        let mut url = reqwest::Url::parse(self.http.base()).expect("the base URL was checked");
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(path);
        }
        self.http
            .client()
            .request(method, url)
            .bearer_auth(self.secret.expose())
    }

    /// Sends `req`; a non-2xx answer becomes the matching `DriverError`.
    fn send(&self, req: RequestBuilder, subject: Subject<'_>) -> Result<Response> {
        let resp = self.http.send(req)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.failure(resp, subject))
    }

    fn failure(&self, resp: Response, subject: Subject<'_>) -> DriverError {
        let status = resp.status().as_u16();
        let url = redact_url(resp.url().as_str());
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(redact_url);
        let json_body = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        let bytes = resp.bytes().unwrap_or_default();
        let error = json_body
            .then(|| serde_json::from_slice::<ErrorBody>(&bytes).ok())
            .flatten()
            .map(|b| b.error);
        let not_tok = || DriverError::Protocol {
            url: url.clone(),
            message: format!(
                "HTTP {status} with a body that is not a tok API error: {} (is {} a tok server?)",
                snippet(&bytes),
                self.http.base()
            ),
        };
        if (300..400).contains(&status) {
            return DriverError::Protocol {
                url: url.clone(),
                message: format!(
                    "HTTP {status} redirect to {}; tok does not follow redirects with a credential, so point --url at the final address",
                    location.as_deref().unwrap_or("(no Location)")
                ),
            };
        }
        let Some(error) = error else {
            return match status {
                401 => DriverError::Unauthorized(format!("HTTP 401 from {url}")),
                403 => DriverError::Forbidden(format!("HTTP 403 from {url}")),
                s if s >= 500 => DriverError::Http {
                    status,
                    url,
                    body: snippet(&bytes),
                },
                _ => not_tok(),
            };
        };
        match (status, error.code.as_str()) {
            (401, _) => DriverError::Unauthorized(error.message),
            (403, _) => DriverError::Forbidden(error.message),
            (404, code::NOT_FOUND) => match subject {
                Subject::Id(id) => DriverError::NotFound(id.to_string()),
                Subject::Secret(s) => DriverError::UnknownSecret {
                    fingerprint: s.fingerprint(),
                },
                Subject::Nothing => DriverError::Http {
                    status,
                    url,
                    body: error.message,
                },
            },
            // Revoked tokens cannot be rotated: a usage error, as with `local`.
            (409, code::TOKEN_REVOKED) => DriverError::Invalid(error.message),
            (409, _) => DriverError::Conflict(error.message),
            (400 | 413 | 415 | 422, _) => {
                DriverError::Invalid(format!("the server refused the request: {}", error.message))
            }
            _ => DriverError::Http {
                status,
                url,
                body: format!("{} ({})", error.message, error.code),
            },
        }
    }

    /// One page of a list.
    fn page(&self, filter: &Filter, limit: u64, cursor: Option<&str>) -> Result<ListResponse> {
        let mut q: Vec<(&str, String)> = vec![
            ("state", filter.state.as_str().to_string()),
            ("limit", limit.to_string()),
        ];
        if let Some(n) = &filter.name {
            q.push(("name", n.clone()));
        }
        for (k, v) in &filter.labels {
            q.push(("label", format!("{k}={v}")));
        }
        for s in &filter.scopes {
            q.push(("scope", s.clone()));
        }
        if let Some(w) = filter.expiring_within {
            q.push(("expiring_within", w.to_string()));
        }
        if let Some(c) = &filter.created_by {
            q.push(("created_by", c.clone()));
        }
        if let Some(p) = &filter.id_prefix {
            q.push(("id_prefix", p.clone()));
        }
        if let Some(c) = cursor {
            q.push(("cursor", c.to_string()));
        }
        let req = self
            .request(reqwest::Method::GET, &["v1", "tokens"])
            .query(&q);
        read_json(self.send(req, Subject::Nothing)?)
    }
}

impl Gateway for TokDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Tok
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        check_new_token(new).map_err(DriverError::Invalid)?;
        let body = CreateRequest {
            name: new.name.clone(),
            description: new.description.clone(),
            scopes: new.scopes.clone(),
            labels: new.labels.clone(),
            expires_at: Some(new.expires_at),
            max_uses: new.max_uses,
            rate: new.rate,
            quota: new.quota,
            allow_ip: new.allow_ip.clone(),
        };
        let req = self
            .request(reqwest::Method::POST, &["v1", "tokens"])
            .json(&body);
        let r: CreatedResponse = read_json(self.send(req, Subject::Nothing)?)?;
        Ok(Created {
            token: r.token,
            secret: r.secret.0,
        })
    }

    fn list(&self, filter: &Filter, sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()> {
        let mut seen: u64 = 0;
        let mut cursor: Option<String> = None;
        loop {
            let want = match filter.limit {
                Some(l) if seen >= l => return Ok(()),
                Some(l) => (l - seen).min(PAGE),
                None => PAGE,
            }
            .min(PAGE_MAX);
            let page = self.page(filter, want, cursor.as_deref())?;
            for t in page.tokens {
                seen += 1;
                sink(t)?;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// The exact id first, then a unique prefix, as the store resolves them.
    fn get(&self, id_or_prefix: &str) -> Result<Token> {
        let wanted = if id_or_prefix.starts_with(ID_PREFIX) {
            id_or_prefix.to_string()
        } else {
            format!("{ID_PREFIX}{id_or_prefix}")
        };
        let req = self.request(reqwest::Method::GET, &["v1", "tokens", &wanted]);
        let resp = self.http.send(req)?;
        if resp.status().is_success() {
            return read_json(resp);
        }
        // Only tok's own 404 means "no such id": a 404 page from something
        // else (a wrong URL) is reported as such.
        match self.failure(resp, Subject::Id(id_or_prefix)) {
            DriverError::NotFound(_) => {}
            other => return Err(other),
        }
        if wanted.chars().count() > ID_MAX {
            return Err(DriverError::NotFound(id_or_prefix.to_string()));
        }
        let filter = Filter {
            state: StateFilter::All,
            id_prefix: Some(wanted),
            limit: Some(CANDIDATES),
            ..Filter::default()
        };
        let mut found = self.page(&filter, CANDIDATES, None)?.tokens;
        match found.len() {
            0 => Err(DriverError::NotFound(id_or_prefix.to_string())),
            1 => Ok(found.remove(0)),
            _ => Err(DriverError::Ambiguous {
                prefix: id_or_prefix.to_string(),
                // The page holds one more than is shown: a full page only
                // says "more than".
                total: (found.len() < CANDIDATES as usize).then_some(found.len()),
                candidates: found.iter().map(principal_of).collect(),
            }),
        }
    }

    fn looks_like_id(&self, s: &str) -> bool {
        crate::store::looks_like_id(s)
    }

    fn lookup(&self, secret: &Secret) -> Result<Token> {
        super::check_tok_secret(secret)?;
        let body = LookupRequest {
            secret: WireSecret(secret.clone()),
        };
        let req = self
            .request(reqwest::Method::POST, &["v1", "tokens", "lookup"])
            .json(&body);
        read_json(self.send(req, Subject::Secret(secret))?)
    }

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<Revoked> {
        let body = RevokeRequest {
            reason: reason.map(str::to_string),
        };
        let req = self
            .request(reqwest::Method::POST, &["v1", "tokens", id, "revoke"])
            .json(&body);
        let r: RevokeResponse = read_json(self.send(req, Subject::Id(id))?)?;
        Ok((r.token, r.outcome))
    }

    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)> {
        let body = RotateRequest {
            grace_seconds: grace,
        };
        let req = self
            .request(reqwest::Method::POST, &["v1", "tokens", id, "rotate"])
            .json(&body);
        let r: RotateResponse = read_json(self.send(req, Subject::Id(id))?)?;
        Ok((
            Created {
                token: r.token,
                secret: r.secret.0,
            },
            r.old,
        ))
    }

    /// `--limit N` up to the page cap is one request for the newest N; else
    /// the trail is paged forward (keeping the last N when a limit is set).
    fn audit(&self, filter: &AuditFilter, sink: &mut dyn FnMut(Entry) -> Result<()>) -> Result<()> {
        let mut base: Vec<(&str, String)> = Vec::new();
        if let Some(t) = &filter.token_id {
            base.push(("token_id", t.clone()));
        }
        if let Some(s) = filter.since {
            base.push(("since", crate::output::rfc3339(s)));
        }
        if let Some(d) = filter.decision {
            base.push(("decision", d.as_str().to_string()));
        }
        let fetch = |extra: &[(&str, String)]| -> Result<AuditPage> {
            let req = self
                .request(reqwest::Method::GET, &["v1", "audit"])
                .query(&base)
                .query(extra);
            read_json(self.send(req, Subject::Nothing)?)
        };
        if let Some(n) = filter
            .limit
            .filter(|&n| n <= PAGE_MAX && filter.after_seq.is_none())
        {
            if n == 0 {
                return Ok(());
            }
            for e in fetch(&[("newest", n.to_string())])?.entries {
                sink(e)?;
            }
            return Ok(());
        }
        let keep = filter.limit.map(|n| n as usize);
        let mut tail = std::collections::VecDeque::new();
        let mut after = filter.after_seq;
        loop {
            let mut extra = vec![("limit", PAGE_MAX.to_string())];
            if let Some(a) = after {
                extra.push(("after_seq", a.to_string()));
            }
            let page = fetch(&extra)?;
            for e in page.entries {
                match keep {
                    None => sink(e)?,
                    Some(k) => {
                        tail.push_back(e);
                        if tail.len() > k {
                            tail.pop_front();
                        }
                    }
                }
            }
            match page.next_after_seq {
                Some(s) => after = Some(s),
                None => break,
            }
        }
        for e in tail {
            sink(e)?;
        }
        Ok(())
    }

    fn whoami(&self) -> Result<Identity> {
        let req = self.request(reqwest::Method::GET, &["v1", "auth", "self"]);
        let t: Token = read_json(self.send(req, Subject::Nothing)?)?;
        Ok(Identity {
            principal: principal_of(&t),
            expires_at: t.expires_at,
            scopes: t.scopes,
            checked: true,
        })
    }
}
