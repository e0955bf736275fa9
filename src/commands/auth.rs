//! `tok auth status`: for each profile (and the --url / TOK_URL gateway when no
//! profile is in use), the gateway, the driver, where the credential comes from,
//! whether it works now (the driver's whoami), and when it expires.
//!
//! Only the gateway this run uses gets the run's credential from the
//! environment and its typed connection options (--insecure, --ca-cert,
//! --timeout, ...): they were given for that gateway. Every other profile is
//! checked as configured, with the credential `tok login` stored for it, so a
//! `TOK_ADMIN_TOKEN` meant for one gateway never reaches another.

use super::Ctx;
use crate::cli::{AuthCommand, AuthStatusArgs, AuthTokenArgs, GlobalArgs};
use crate::config::Profile;
use crate::credentials::{expiry, Account, Source};
use crate::drivers::http_client::display_url;
use crate::drivers::DriverKind;
use crate::error::{Kind, UserError};
use crate::output::{col, rfc3339, Cell, Column, Mode, Printer, Record, Show};
use crate::text;
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::io::Write;

pub fn run(ctx: &Ctx, cmd: AuthCommand) -> Result<()> {
    match cmd {
        AuthCommand::Status(a) => status(ctx, a),
        AuthCommand::Token(a) => token(ctx, a),
    }
}

/// `tok auth token`: the credential alone on stdout, as `gh auth token`.
fn token(ctx: &Ctx, args: AuthTokenArgs) -> Result<()> {
    let kind = ctx.driver_kind();
    if kind == DriverKind::Local {
        return Err(UserError::usage(format!(
            "the local driver (from {}) uses no credential",
            ctx.resolved.driver.source
        ))
        .hint("pick a gateway with --profile NAME or --url URL")
        .into());
    }
    if ctx.out.stdout_tty && !args.yes {
        return Err(
            UserError::usage("refusing to print a credential on a terminal")
                .hint("pipe it or capture it (`$(tok auth token)`), or pass --yes to show it here")
                .into(),
        );
    }
    let url = ctx.require_url(kind)?;
    let credential =
        crate::credentials::resolve(kind, ctx.profile_name.as_deref(), Some(&url))?.ok_or_else(
            || {
                UserError::new(Kind::Auth, format!("no credential for {}", display_url(&url))).hint(
                "store one with `tok login`, or set TOK_ADMIN_TOKEN (or the driver's own variable)",
            )
            },
        )?;
    let secret = credential.secret.expose();
    if std::env::var(crate::env::GITHUB_ACTIONS).as_deref() == Ok("true") {
        eprintln!("::add-mask::{secret}");
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{secret}")?;
    stdout.flush()?;
    ctx.out.info(format!(
        "the credential from the {} for {}",
        credential.source,
        display_url(&url)
    ));
    Ok(())
}

/// One line of `tok auth status -o json`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The profile, or null for the --url / TOK_URL gateway without one.
    pub profile: Option<String>,
    /// Whether this is the profile commands use when none is named.
    pub default: bool,
    pub url: Option<String>,
    pub driver: &'static str,
    /// env, keyring, file, none (nothing found), error (could not look), or
    /// not-needed (the local driver).
    pub credential: &'static str,
    /// The variable or file the credential came from.
    pub credential_detail: Option<String>,
    /// Whether the gateway accepted the credential just now.
    pub ok: bool,
    pub principal: Option<String>,
    pub scopes: Vec<String>,
    /// When the credential expires, where the gateway says so.
    pub expires_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// Something the user should know, e.g. that the environment's credential
    /// was not sent to this profile's gateway.
    pub note: Option<String>,
}

fn status(ctx: &Ctx, _args: AuthStatusArgs) -> Result<()> {
    ctx.out.list_mode()?;
    let rows: Vec<Status> = targets(ctx).iter().map(|t| check(ctx, t)).collect();
    if rows.is_empty() {
        ctx.out.info(
            "no profiles and no --url or TOK_URL: the local driver needs no credential; add a gateway with `tok profile add NAME --url URL`",
        );
        return Ok(());
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    let total = rows.len();
    print(ctx, rows)?;
    if failed > 0 {
        return Err(UserError::new(
            Kind::Auth,
            format!("{failed} of {total} cannot authenticate"),
        )
        .hint("run `tok login --profile NAME` (or `tok login --url URL`) for each, or set TOK_ADMIN_TOKEN")
        .into());
    }
    Ok(())
}

/// A gateway to check, and whether it is the one this run uses.
struct Target {
    ctx: Ctx,
    /// Only the gateway in use gets the environment's credential and this
    /// run's connection options.
    in_use: bool,
}

/// What to check: the named profile alone; else every profile (the one in use
/// with this run's options, the others as configured) and the --url gateway
/// when no profile is in use.
fn targets(ctx: &Ctx) -> Vec<Target> {
    let view = |name: Option<String>, profile: Profile, global: GlobalArgs| {
        Ctx::view(
            global,
            ctx.matches.clone(),
            ctx.config.clone(),
            name,
            profile,
            ctx.out.clone(),
        )
    };
    let current = || Target {
        ctx: view(
            ctx.profile_name.clone(),
            ctx.profile.clone(),
            ctx.global.clone(),
        ),
        in_use: true,
    };
    if ctx.global.profile.is_some() {
        return vec![current()];
    }
    let mut out = Vec::new();
    for (name, p) in &ctx.config.profiles {
        if ctx.profile_name.as_deref() == Some(name) {
            out.push(current());
        } else {
            out.push(Target {
                ctx: view(
                    Some(name.clone()),
                    p.clone(),
                    presentation_only(&ctx.global),
                ),
                in_use: false,
            });
        }
    }
    if ctx.profile_name.is_none() && ctx.global.url.is_some() {
        out.push(current());
    }
    out
}

/// This run's global options as they apply to a profile it does not use: how
/// to print, and nothing about which gateway, how to reach it or what to do
/// there, which were typed for the gateway in use. (A struct literal, so that
/// a new global option has to be placed on one side or the other.)
fn presentation_only(g: &GlobalArgs) -> GlobalArgs {
    GlobalArgs {
        output: g.output,
        color: g.color,
        quiet: g.quiet,
        verbose: g.verbose,
        profile: None,
        driver: None,
        url: None,
        data_dir: None,
        ca_cert: None,
        insecure: false,
        timeout: None,
        app: None,
        owner: None,
        vault_mount: None,
        vault_namespace: None,
        client_id: None,
    }
}

fn check(ctx: &Ctx, target: &Target) -> Status {
    let t = &target.ctx;
    let kind = t.driver_kind();
    let mut s = Status {
        profile: t.profile_name.clone(),
        default: t.profile_name.is_some() && t.config.default_profile == t.profile_name,
        url: t.url().map(display_url),
        driver: kind.as_str(),
        credential: "none",
        credential_detail: None,
        ok: false,
        principal: None,
        scopes: Vec::new(),
        expires_at: None,
        error: None,
        note: None,
    };
    if kind == DriverKind::Local {
        s.credential = "not-needed";
        s.ok = true;
        s.principal = Some(crate::drivers::local::local_principal());
        return s;
    }
    if !target.in_use {
        s.note = env_not_sent(ctx, kind);
    }
    let settings = if target.in_use {
        t.settings(kind)
    } else {
        t.stored_settings(kind)
    };
    let settings = match settings {
        Ok(settings) => settings,
        Err(e) => {
            if crate::error::classify(&e).0 == Kind::Auth {
                s.credential = "error";
            }
            s.error = Some(format!("{e:#}"));
            return s;
        }
    };
    let cred = settings.credential.clone();
    if cred.is_none() && kind.needs_credential() {
        let login = format!(
            "tok login{}",
            t.profile_name
                .as_deref()
                .map(|p| format!(" --profile {p}"))
                .unwrap_or_default()
        );
        s.error = Some(if target.in_use {
            format!(
                "no credential: run `{login}` or set {}",
                crate::credentials::env_names(kind)
            )
        } else {
            format!("no credential stored for this profile: run `{login}`")
        });
        return s;
    }
    if let Some(cred) = &cred {
        s.credential = cred.source.as_str();
        s.credential_detail = match &cred.source {
            Source::Env(v) => Some(v.to_string()),
            Source::File(p) => Some(p.display().to_string()),
            Source::Keyring | Source::Login => None,
        };
    }
    let whoami = t
        .gateway_with(kind, settings.clone())
        .and_then(|g| g.whoami().map_err(anyhow::Error::new));
    match whoami {
        Ok(id) => {
            if let (Some(cred), Ok(account)) = (
                &cred,
                Account::new(t.profile_name.as_deref(), &settings.http.base_url),
            ) {
                expiry::record(&t.out, &account, &cred.secret, &id);
            }
            s.ok = true;
            s.principal = Some(id.principal);
            s.scopes = id.scopes;
            s.expires_at = id.expires_at;
        }
        Err(e) => s.error = Some(format!("{e:#}")),
    }
    s
}

/// For a profile this run does not use: the environment variable holding a
/// credential that was therefore not sent to it, if one is set.
fn env_not_sent(ctx: &Ctx, kind: DriverKind) -> Option<String> {
    let Source::Env(var) = crate::credentials::from_env(kind)?.source else {
        return None;
    };
    let in_use = match (&ctx.profile_name, ctx.url()) {
        (Some(p), _) => format!("profile `{p}`"),
        (None, Some(url)) => format!("--url {}", display_url(url)),
        (None, None) => "none: no default profile and no --url".to_string(),
    };
    Some(format!(
        "{var} was not sent here: a credential from the environment goes only to the gateway this run uses ({in_use})"
    ))
}

impl Record for Status {
    const COLUMNS: &'static [Column] = &[
        col("profile", "PROFILE", Show::Always, 0),
        col("default", "DEFAULT", Show::Always, 1),
        col("url", "GATEWAY", Show::Always, 2),
        col("driver", "DRIVER", Show::Always, 3),
        col("credential", "CREDENTIAL", Show::Always, 4),
        col("ok", "OK", Show::Always, 5),
        col("principal", "PRINCIPAL", Show::Fit, 6),
        col("expires_at", "EXPIRES", Show::Fit, 7),
        col("error", "ERROR", Show::Fit, 8),
        col("note", "NOTE", Show::Wide, 9),
        col("credential_detail", "FROM", Show::Wide, 10),
        col("scopes", "SCOPES", Show::Wide, 11),
    ];
    const NONE: &'static str = "nothing to check";

    fn cell(&self, i: usize, _human: bool) -> Cell {
        match Self::COLUMNS[i].key {
            "profile" => Cell::opt(self.profile.as_deref()),
            "default" => Cell::Text(self.default.to_string()),
            "url" => Cell::opt(self.url.as_deref()),
            "driver" => Cell::Text(self.driver.into()),
            "credential" => Cell::Text(self.credential.into()),
            "ok" => Cell::Text(self.ok.to_string()),
            "principal" => Cell::opt(self.principal.as_deref()),
            "expires_at" => Cell::Time(self.expires_at, "-"),
            "error" => Cell::opt(self.error.as_deref()),
            "note" => Cell::opt(self.note.as_deref()),
            "credential_detail" => Cell::opt(self.credential_detail.as_deref()),
            _ => Cell::Text(self.scopes.join(",")),
        }
    }
}

/// A block per gateway for people (as `inspect` shows a token); the columns
/// above for -o json, jsonl, tsv, table and wide.
fn print(ctx: &Ctx, rows: Vec<Status>) -> Result<()> {
    let mode = ctx.out.list_mode()?;
    let mut w = std::io::stdout().lock();
    if mode == Mode::Plain || (mode == Mode::Table { wide: false } && ctx.out.format.is_none()) {
        let now = Utc::now();
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                writeln!(w)?;
            }
            write_block(&mut w, r, now)?;
        }
        w.flush()?;
        return Ok(());
    }
    let mut p = Printer::with_mode(&ctx.out, Box::new(w), mode)?;
    for r in rows {
        p.push(r)?;
    }
    p.finish()?;
    Ok(())
}

fn write_block(w: &mut dyn Write, r: &Status, now: DateTime<Utc>) -> std::io::Result<()> {
    let title = match &r.profile {
        Some(p) if r.default => format!("{p} (default)"),
        Some(p) => p.clone(),
        None => "(no profile)".into(),
    };
    writeln!(w, "{}", text::terminal_safe(&title))?;
    let credential = match (r.credential, &r.credential_detail) {
        ("env", Some(v)) => format!("environment ({v})"),
        ("keyring", _) => "OS keyring".into(),
        ("file", Some(p)) => format!("plaintext file {p}"),
        ("not-needed", _) => "not needed (local driver)".into(),
        ("error", _) => "could not be read".into(),
        _ => "none".into(),
    };
    let status = if r.ok {
        format!("ok, as {}", r.principal.as_deref().unwrap_or("?"))
    } else {
        format!("FAILED: {}", r.error.as_deref().unwrap_or("unknown"))
    };
    let expires = match r.expires_at {
        Some(at) => format!("{} ({})", rfc3339(at), crate::duration::relative(at, now)),
        None if r.ok && r.driver != "local" => "never, or the gateway does not say".into(),
        None => "-".into(),
    };
    let rows = [
        ("gateway", r.url.clone().unwrap_or_else(|| "-".into())),
        ("driver", r.driver.to_string()),
        ("credential", credential),
        ("status", status),
        ("expires", expires),
    ];
    let note = r.note.as_ref().map(|n| ("note", n.clone()));
    for (k, v) in rows.into_iter().chain(note) {
        // Errors and principals come from the gateway: made safe to show.
        writeln!(w, "  {:<11} {}", format!("{k}:"), text::terminal_safe(&v))?;
    }
    Ok(())
}
