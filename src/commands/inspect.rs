//! `tok inspect`: by id, unique prefix, or a secret (or JWT) on stdin.

use super::{driver, read_stdin, Ctx};
use crate::cli::{InspectArgs, OutputFormat};
use crate::drivers::{DriverKind, Gateway, Op};
use crate::error::{Kind, UserError};
use crate::model::Token;
use crate::output::{self, rfc3339};
use crate::secret::{self, Secret};
use anyhow::Result;
use base64::Engine;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use std::io::Write;

pub fn run(ctx: &Ctx, args: InspectArgs) -> Result<()> {
    if args.id == "-" {
        let input = read_stdin(ctx, Some("Secret"))?;
        let text = input.trim();
        if text.is_empty() {
            return Err(UserError::usage("stdin was empty; expected a secret")
                .hint("pipe the secret in: `printf %s \"$TOKEN\" | tok inspect -`")
                .into());
        }
        // An OAuth 2 server can say whether its JWTs are live (introspection);
        // everywhere else a JWT is decoded offline.
        if ctx.driver_kind() != DriverKind::Oauth2 {
            if let Some(jwt) = decode_jwt(text) {
                return print_jwt(ctx, &jwt);
            }
        }
        if secret::looks_like_secret(text) {
            secret::validate(text).map_err(|e| {
                UserError::usage(format!("that is not a valid tok secret: {e}"))
                    .hint("copy the whole secret again; tok secrets are checked offline")
            })?;
        }
        let gw = ctx.gateway()?;
        gw.require(Op::InspectBySecret)?;
        let secret = Secret::new(text);
        let t = driver(gw.lookup(&secret), || {
            format!("could not look up the token {}", secret.fingerprint())
        })?;
        return print_token(ctx, &t);
    }
    if secret::looks_like_secret(&args.id) {
        return Err(UserError::usage("a secret was given on the command line")
            .hint("secrets end up in shell history; pipe it in instead: `printf %s \"$TOKEN\" | tok inspect -`, and consider rotating it")
            .into());
    }
    let gw = ctx.gateway()?;
    refuse_secret_arg(gw.as_ref(), &args.id)?;
    gw.require(Op::InspectById)?;
    let t = driver(gw.get(&args.id), || {
        format!("could not inspect token {}", args.id)
    })?;
    print_token(ctx, &t)
}

/// Refuses a secret typed where a token id belongs (tok's format, or one this
/// driver knows): argv ends up in shell history and `ps`, and the id would be
/// echoed in messages. Nothing of it is shown.
pub fn refuse_secret_arg(gw: &dyn Gateway, arg: &str) -> Result<(), UserError> {
    if secret::looks_like_secret(arg) || gw.is_secret(arg) {
        return Err(secret_in_argv(gw.kind()));
    }
    Ok(())
}

/// For input that is neither shaped like an id of this driver nor a secret it
/// knows: perhaps another gateway's secret, so it is not looked up (no request
/// carries it) and the caller shows only its fingerprint.
pub fn not_an_id(kind: DriverKind) -> UserError {
    let driver = kind.as_str();
    UserError::new(
        Kind::NotFound,
        format!("it is neither a token id of the {driver} driver nor a secret that driver knows"),
    )
    .hint("ids look like those `tok list` shows; if it is another gateway's secret, pick that gateway with --profile or --driver")
}

/// The refusal of a gateway's secret given as an argument.
pub fn secret_in_argv(kind: DriverKind) -> UserError {
    UserError::usage(format!(
        "that looks like a {} token's secret, given on the command line",
        kind.as_str()
    ))
    .hint("secrets end up in shell history and `ps`; pipe it in instead: `printf %s \"$TOKEN\" | tok inspect -`, and consider rotating it")
}

pub fn print_token(ctx: &Ctx, t: &Token) -> Result<()> {
    output::print_one(&ctx.out, t.clone(), |w| {
        output::write_details(w, t, Utc::now())
    })
}

/// A JWT's decoded header and claims. The signature is not checked.
#[derive(Debug)]
pub struct Jwt {
    pub header: Value,
    pub claims: Value,
}

pub fn decode_jwt(s: &str) -> Option<Jwt> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 3 || !parts[0].starts_with("eyJ") {
        return None;
    }
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let part = |p: &str| -> Option<Value> {
        let bytes = engine.decode(p.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    Some(Jwt {
        header: part(parts[0])?,
        claims: part(parts[1])?,
    })
}

fn print_jwt(ctx: &Ctx, jwt: &Jwt) -> Result<()> {
    let now = Utc::now();
    let time = |k: &str| {
        jwt.claims
            .get(k)
            .and_then(Value::as_i64)
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
    };
    let exp = time("exp");
    let state = match exp {
        Some(e) if e <= now => "expired",
        Some(_) => "not expired",
        None => "no expiry claim",
    };
    let mut stdout = std::io::stdout().lock();
    match ctx.global.output {
        Some(OutputFormat::Json) | Some(OutputFormat::Jsonl) => {
            let v = json!({
                "jwt": {
                    "header": jwt.header,
                    "claims": jwt.claims,
                    "expires_at": exp.map(rfc3339),
                    "expired": exp.is_some_and(|e| e <= now),
                    "signature_verified": false,
                }
            });
            output::write_json_pretty(&mut stdout, &v)?;
        }
        _ => {
            writeln!(stdout, "JWT (decoded offline; signature NOT verified)")?;
            writeln!(
                stdout,
                "header: {}",
                serde_json::to_string_pretty(&jwt.header)?
            )?;
            writeln!(
                stdout,
                "claims: {}",
                serde_json::to_string_pretty(&jwt.claims)?
            )?;
            for (label, key) in [("issued", "iat"), ("not before", "nbf"), ("expires", "exp")] {
                if let Some(t) = time(key) {
                    writeln!(
                        stdout,
                        "{label}: {} ({})",
                        rfc3339(t),
                        crate::duration::relative(t, now)
                    )?;
                }
            }
            writeln!(stdout, "state: {state}")?;
        }
    }
    ctx.out
        .info("note: the JWT's signature was not verified; do not trust its claims");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_jwt_without_verifying() {
        // {"alg":"HS256","typ":"JWT"}.{"sub":"1234567890","exp":1700000000}
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiZXhwIjoxNzAwMDAwMDAwfQ.sig";
        let jwt = decode_jwt(t).unwrap();
        assert_eq!(jwt.header["alg"], "HS256");
        assert_eq!(jwt.claims["exp"], 1_700_000_000);
        assert!(decode_jwt("tok_abc").is_none());
        assert!(decode_jwt("eyJ.x.y").is_none());
    }
}
