//! `tok create`.

use super::{check_secret_output, deliver_secret, driver, Ctx};
use crate::cli::CreateArgs;
use crate::drivers::Op;
use crate::duration;
use crate::error::UserError;
use crate::model::{check_new_token, NewToken};
use crate::output::rfc3339;
use anyhow::Result;
use chrono::Utc;
use std::collections::BTreeMap;

pub fn run(ctx: &Ctx, mut args: CreateArgs) -> Result<()> {
    if let Some(source) = args.federated.take() {
        return super::federated::run(ctx, args, source);
    }
    let now = Utc::now();
    let explicit_lifetime = args.no_expiry || args.expires_at.is_some() || args.ttl.is_some();
    // A TTL is kept as a TTL until the gateway is open: opening one (TLS roots,
    // a keyring) takes time that must not come off the lifetime asked for.
    let ttl = match (args.no_expiry, args.expires_at, args.ttl) {
        (false, None, Some(t)) => Some(t),
        (false, None, None) => Some(ctx.default_ttl()?),
        _ => None,
    };
    let expires_at = if args.no_expiry {
        None
    } else if let Some(t) = args.expires_at {
        if t <= now {
            return Err(
                UserError::usage(format!("--expires-at {} is in the past", rfc3339(t)))
                    .hint(format!("give a time after {}, or use --ttl", rfc3339(now)))
                    .into(),
            );
        }
        Some(t)
    } else {
        ttl.map(|t| now + t.delta())
    };
    let new = NewToken {
        name: args.name,
        description: args.description,
        scopes: args.scopes,
        labels: labels_map(args.labels)?,
        expires_at,
        max_uses: if args.single_use { Some(1) } else { args.uses },
        rate: args.rate.map(|r| r.with_burst(args.burst)),
        quota: args.quota,
        allow_ip: args.allow_ip,
    };
    check_new_token(&new).map_err(|e| UserError::usage(format!("cannot create the token: {e}")))?;

    check_secret_output(ctx)?;
    let gw = ctx.gateway()?;
    gw.require(Op::Create)?;
    let mut new = new;
    if let Some(t) = ttl {
        new.expires_at = Some(Utc::now() + t.delta());
    }
    if !new.scopes.is_empty() {
        gw.require(Op::Scopes)?;
    }
    if !new.labels.is_empty() {
        gw.require(Op::Labels)?;
    }
    if new.max_uses.is_some() {
        gw.require(Op::UseLimits)?;
    }
    if new.rate.is_some() {
        gw.require(Op::RateLimits)?;
    }
    if new.quota.is_some() {
        gw.require(Op::Quotas)?;
    }
    if !new.allow_ip.is_empty() {
        gw.require(Op::IpRanges)?;
    }
    let caps = gw.capabilities();
    if args.no_expiry {
        gw.require(Op::NoExpiry)?;
    } else if explicit_lifetime {
        gw.require(Op::Expiry)?;
    } else if !caps.expiry && caps.no_expiry {
        // No expiry can be set and a token made without one lives until it is
        // revoked (APISIX): tok's default TTL is not dropped in silence.
        gw.require(Op::Expiry)?;
    } else if !caps.expiry {
        // The gateway chooses the lifetime (an OAuth 2 server does); tok's
        // default TTL is no request the user made, so nothing is refused.
        new.expires_at = None;
    }
    if new.name.is_some() {
        gw.require(Op::Names)?;
    }
    if new.description.is_some() {
        gw.require(Op::Descriptions)?;
    }
    let created = driver(gw.create(&new), || "could not create a token".into())?;
    deliver_secret(ctx, gw.as_ref(), &created, args.no_newline)?;
    summary(ctx, "created", &created.token);
    if let Some(note) = gw.usage_note() {
        ctx.out.info(note);
    }
    Ok(())
}

/// The stderr summary of a new token: id, name, expiry in UTC and relative.
pub fn summary(ctx: &Ctx, verb: &str, t: &crate::model::Token) {
    let now = Utc::now();
    let name = t
        .name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let expiry = match t.expires_at {
        Some(e) => format!("expires {} ({})", rfc3339(e), duration::relative(e, now)),
        None => "never expires".into(),
    };
    let mut line = format!("{verb} {}{name}, {expiry}", t.id);
    if !t.scopes.is_empty() {
        line.push_str(&format!(", scopes {}", t.scopes.join(" ")));
    }
    if let Some(m) = t.max_uses {
        line.push_str(&format!(", {m} use{}", if m == 1 { "" } else { "s" }));
    }
    if let Some(r) = &t.rate {
        line.push_str(&format!(", rate {}", r.describe()));
    }
    if let Some(q) = &t.quota {
        line.push_str(&format!(", quota {q}"));
    }
    if !t.allow_ip.is_empty() {
        let ranges: Vec<String> = t.allow_ip.iter().map(|n| n.to_string()).collect();
        line.push_str(&format!(", from {}", ranges.join(" ")));
    }
    ctx.out.info(line);
}

/// Repeated `--label k=v` into a map; a key given twice is an error.
pub fn labels_map(labels: Vec<(String, String)>) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (k, v) in labels {
        if map.insert(k.clone(), v).is_some() {
            return Err(UserError::usage(format!("label `{k}` is given twice"))
                .hint("give each label key once")
                .into());
        }
    }
    Ok(map)
}
