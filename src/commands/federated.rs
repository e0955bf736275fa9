//! `tok create --federated`: a CI job trades its platform's OIDC ID token for a
//! tok token at a `tok serve` (RFC 8693), with no admin credential at all.
//!
//! Where the ID token comes from:
//! - GitHub Actions: a job with `permissions: id-token: write` has
//!   `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`; a
//!   GET of the URL with `&audience=AUD` and the request token as a bearer
//!   credential answers `{"value": "<JWT>"}` (GitHub Docs, "Configuring OpenID
//!   Connect in cloud providers" / "About security hardening with OpenID
//!   Connect"). The audience is `--audience`, else the one the server names at
//!   `GET /v1/federation`.
//! - GitLab CI: the job's `id_tokens:` block puts the token in a variable of the
//!   job's choosing, with the `aud` it names (GitLab Docs, "OpenID Connect
//!   (OIDC) Authentication Using ID Tokens"); tok reads `TOK_ID_TOKEN`, the name
//!   docs/federation.md uses, or `env:NAME`.
//! - Anything else: `file:PATH` or `env:NAME`.

use super::{check_secret_output, emit_secret, Ctx};
use crate::cli::CreateArgs;
use crate::drivers::http_client::{read_json, Http};
use crate::drivers::{DriverError, DriverKind};
use crate::error::{Kind, UserError};
use crate::model::{Created, Token};
use crate::secret::Secret;
use crate::server::federation::endpoint::{GRANT_TYPE, ID_TOKEN_TYPE, INFO_PATH, TOKEN_PATH};
use anyhow::{Context, Result};
use serde::Deserialize;
use std::str::FromStr;

/// The variable a GitLab job's `id_tokens:` block names in docs/federation.md.
pub const GITLAB_VAR: &str = "TOK_ID_TOKEN";
pub const GITHUB_REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub const GITHUB_REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";
pub const GITLAB_CI: &str = "GITLAB_CI";

/// Where `--federated` finds the job's ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdTokenSource {
    /// Detect GitHub Actions or GitLab CI from the environment.
    Auto,
    Github,
    Gitlab,
    File(std::path::PathBuf),
    Env(String),
}

impl FromStr for IdTokenSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "auto" => Ok(IdTokenSource::Auto),
            "github" => Ok(IdTokenSource::Github),
            "gitlab" => Ok(IdTokenSource::Gitlab),
            _ => {
                if let Some(p) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
                    Ok(IdTokenSource::File(p.into()))
                } else if let Some(v) = s.strip_prefix("env:").filter(|v| !v.is_empty()) {
                    Ok(IdTokenSource::Env(v.into()))
                } else {
                    Err(format!(
                        "`{}` is not an ID token source; use github, gitlab, file:PATH or env:NAME",
                        cut(s, 64)
                    ))
                }
            }
        }
    }
}

/// At most `n` characters of untrusted text, safe for a terminal.
fn cut(s: &str, n: usize) -> String {
    crate::text::terminal_safe(&s.chars().take(n).collect::<String>()).into_owned()
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The platform this job runs on, or a hint for the user.
fn detect() -> Result<IdTokenSource> {
    if var(crate::env::GITHUB_ACTIONS).as_deref() == Some("true") {
        return Ok(IdTokenSource::Github);
    }
    if var(GITLAB_CI).as_deref() == Some("true") {
        return Ok(IdTokenSource::Gitlab);
    }
    Err(UserError::usage("--federated found no CI platform: neither GITHUB_ACTIONS nor GITLAB_CI is `true`")
        .hint("name where the ID token is: --federated github, gitlab, file:PATH or env:NAME (docs/federation.md)")
        .into())
}

#[derive(Deserialize)]
struct Info {
    audience: Option<String>,
}

#[derive(Deserialize)]
struct Exchanged {
    access_token: String,
    token: Token,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

pub fn run(ctx: &Ctx, args: CreateArgs, source: IdTokenSource) -> Result<()> {
    check_secret_output(ctx)?;
    let kind = ctx.driver_kind();
    if kind != DriverKind::Tok {
        return Err(UserError::usage(format!(
            "--federated trades an ID token at a tok serve, not the {} driver",
            kind.as_str()
        ))
        .hint("give the server's URL with --url or TOK_URL")
        .into());
    }
    let http = Http::new(&ctx.http_settings(DriverKind::Tok)?)?;
    let source = match source {
        IdTokenSource::Auto => detect()?,
        s => s,
    };
    if args.audience.is_some() && source != IdTokenSource::Github {
        return Err(UserError::usage(
            "--audience is for --federated github: other ID tokens arrive with their audience set",
        )
        .hint("set the audience where the token is made (GitLab: the `aud` of the job's id_tokens: block)")
        .into());
    }
    let id_token = id_token(ctx, &http, &source, args.audience.as_deref())?;
    let mut form: Vec<(&str, String)> = vec![
        ("grant_type", GRANT_TYPE.into()),
        ("subject_token_type", ID_TOKEN_TYPE.into()),
        ("subject_token", id_token.expose().to_string()),
    ];
    if !args.scopes.is_empty() {
        form.push(("scope", args.scopes.join(" ")));
    }
    if let Some(t) = args.ttl {
        form.push(("expires_in", t.as_secs().to_string()));
    }
    let uses = if args.single_use { Some(1) } else { args.uses };
    if let Some(n) = uses {
        form.push(("max_uses", n.to_string()));
    }
    let url = http.url(TOKEN_PATH);
    let resp = http.send(http.client().post(&url).form(&form))?;
    let status = resp.status().as_u16();
    if status == 404 {
        return Err(no_exchange(&http));
    }
    if status != 200 {
        return Err(refused(&url, status, resp));
    }
    let got: Exchanged = read_json(resp)?;
    let created = Created {
        token: got.token,
        secret: Secret::new(got.access_token),
    };
    emit_secret(ctx, &created, args.no_newline).with_context(|| {
        format!(
            "token {} was minted but its secret could not be written; it expires by itself",
            created.token.id
        )
    })?;
    super::create::summary(ctx, "minted", &created.token);
    Ok(())
}

/// An RFC 6749 error answer as a user error with a hint per code.
fn refused(url: &str, status: u16, resp: reqwest::blocking::Response) -> anyhow::Error {
    let Ok(e) = read_json::<OAuthError>(resp) else {
        return DriverError::Http {
            status,
            url: url.into(),
            body: "not an OAuth error".into(),
        }
        .into();
    };
    let said = cut(e.error_description.as_deref().unwrap_or(""), 200);
    let (kind, hint) = match e.error.as_str() {
        "invalid_grant" => (
            Kind::Auth,
            "no trust policy accepted this job's ID token; the server's audit trail says why (`tok audit --decision deny`)",
        ),
        "invalid_scope" => (Kind::Auth, "ask only for scopes the server's policy grants this job"),
        "temporarily_unavailable" => (Kind::Failure, "try again shortly; the server could not reach the issuer's keys or its store"),
        _ => (Kind::Usage, "see docs/federation.md"),
    };
    UserError::new(
        kind,
        format!("the exchange was refused: {} ({said})", cut(&e.error, 64)),
    )
    .hint(hint)
    .into()
}

/// The job's ID token from `source`.
fn id_token(
    ctx: &Ctx,
    http: &Http,
    source: &IdTokenSource,
    audience: Option<&str>,
) -> Result<Secret> {
    let token = match source {
        IdTokenSource::Auto => unreachable!("detected before"),
        IdTokenSource::Github => github(ctx, http, audience)?,
        IdTokenSource::Gitlab => var(GITLAB_VAR).ok_or_else(|| {
            UserError::usage(format!("{GITLAB_VAR} is not set, so there is no GitLab ID token"))
                .hint(format!(
                    "add to the job:  id_tokens: {{ {GITLAB_VAR}: {{ aud: <the server's audience> }} }}  or name your variable with --federated env:NAME"
                ))
        })?,
        IdTokenSource::Env(name) => var(name).ok_or_else(|| {
            UserError::usage(format!("environment variable {name} is not set or empty"))
                .hint("set it to the job's OIDC ID token (a JWT)")
        })?,
        IdTokenSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| UserError::usage(format!("could not read the ID token from {}: {e}", path.display())))?,
    };
    let token = token.trim().to_string();
    if token.split('.').count() != 3 {
        return Err(
            UserError::usage("the ID token is not a JWT (three dot-separated parts)")
                .hint("check where --federated reads it from")
                .into(),
        );
    }
    Ok(Secret::new(token))
}

/// Asks GitHub's ID-token endpoint for a token with the server's audience.
fn github(ctx: &Ctx, http: &Http, audience: Option<&str>) -> Result<String> {
    let (Some(url), Some(bearer)) = (var(GITHUB_REQUEST_URL), var(GITHUB_REQUEST_TOKEN)) else {
        return Err(UserError::usage(format!(
            "{GITHUB_REQUEST_URL} and {GITHUB_REQUEST_TOKEN} are not set, so GitHub gives this job no ID token"
        ))
        .hint("give the job `permissions: id-token: write` (docs/federation.md)")
        .into());
    };
    let audience = match audience {
        Some(a) => a.to_string(),
        None => server_audience(http)?,
    };
    ctx.debug(format!(
        "asking GitHub for an ID token with audience {audience}"
    ));
    let mut u = reqwest::Url::parse(&url)
        .map_err(|e| UserError::usage(format!("{GITHUB_REQUEST_URL} is not a URL: {e}")))?;
    u.query_pairs_mut().append_pair("audience", &audience);
    // Its own client: --ca-cert and --insecure are about the tok server, not GitHub.
    let github = reqwest::blocking::Client::builder()
        .timeout(crate::drivers::http_client::DEFAULT_TIMEOUT)
        .user_agent(concat!("tok/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("could not set up the HTTP client for GitHub")?;
    let resp = github
        .get(u)
        .bearer_auth(bearer)
        .send()
        .map_err(|e| {
            crate::drivers::http_client::transport_error(
                GITHUB_REQUEST_URL,
                e,
                crate::drivers::http_client::DEFAULT_TIMEOUT,
            )
        })
        .context("could not get the job's ID token from GitHub")?;
    if !resp.status().is_success() {
        return Err(DriverError::Http {
            status: resp.status().as_u16(),
            url: GITHUB_REQUEST_URL.into(),
            body: "GitHub gave no ID token".into(),
        })
        .context("could not get the job's ID token from GitHub");
    }
    #[derive(Deserialize)]
    struct Value {
        value: String,
    }
    let v: Value = read_json(resp).context("could not read GitHub's ID token answer")?;
    Ok(v.value)
}

fn no_exchange(http: &Http) -> anyhow::Error {
    UserError::usage(format!("{} takes no token exchange", http.base()))
        .hint("start it with `tok serve --federation FILE`, or check --url")
        .into()
}

/// The audience the server tells clients to ask for.
fn server_audience(http: &Http) -> Result<String> {
    let url = http.url(INFO_PATH);
    let resp = http.send(http.client().get(&url))?;
    if resp.status().as_u16() == 404 {
        return Err(no_exchange(http));
    }
    let info: Info = read_json(resp).context("could not read the server's federation settings")?;
    info.audience.ok_or_else(|| {
        UserError::usage("the server names no audience for ID tokens")
            .hint("pass --audience with the audience of the server's policy")
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!("".parse(), Ok(IdTokenSource::Auto));
        assert_eq!("github".parse(), Ok(IdTokenSource::Github));
        assert_eq!("gitlab".parse(), Ok(IdTokenSource::Gitlab));
        assert_eq!(
            "file:/t/id".parse(),
            Ok(IdTokenSource::File("/t/id".into()))
        );
        assert_eq!(
            "env:CI_JOB_JWT".parse(),
            Ok(IdTokenSource::Env("CI_JOB_JWT".into()))
        );
        for bad in ["gh", "file:", "env:", "GitHub"] {
            assert!(bad.parse::<IdTokenSource>().is_err(), "{bad}");
        }
    }
}
