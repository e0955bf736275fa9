//! `tok profile add|list|show|remove`.

use super::Ctx;
use crate::cli::{OutputFormat, ProfileAddArgs, ProfileCommand, ProfileNameArg, ProfileUseArgs};
use crate::config::{Config, Profile};
use crate::drivers::http_client::display_url;
use crate::error::{Kind, UserError};
use crate::output::{self, col, Cell, Column, Printer, Record, Show};
use anyhow::Result;
use clap::parser::ValueSource;
use serde::Serialize;
use std::io::Write;

pub fn run(ctx: &Ctx, cmd: ProfileCommand) -> Result<()> {
    match cmd {
        ProfileCommand::Add(a) => add(ctx, a),
        ProfileCommand::List(_) => list(ctx),
        ProfileCommand::Show(a) => show(ctx, a),
        ProfileCommand::Remove(a) => remove(ctx, a),
        ProfileCommand::Use(a) => use_default(ctx, a),
    }
}

/// Whether global option `id` was typed on this command line (not from env).
fn typed(ctx: &Ctx, id: &str) -> bool {
    let sub = ctx
        .matches
        .subcommand_matches("profile")
        .and_then(|m| m.subcommand_matches("add"));
    [Some(&ctx.matches), sub]
        .into_iter()
        .flatten()
        .any(|m| m.value_source(id) == Some(ValueSource::CommandLine))
}

fn valid_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(
            UserError::usage(format!("`{name}` is not a valid profile name"))
                .hint("use letters, digits, `-`, `_` and `.` (at most 64)")
                .into(),
        )
    }
}

fn add(ctx: &Ctx, a: ProfileAddArgs) -> Result<()> {
    valid_name(&a.name)?;
    let g = &ctx.global;
    let mut p = Profile {
        default_ttl: a.default_ttl.map(|t| t.to_string()),
        ..Profile::default()
    };
    if typed(ctx, "driver") {
        p.driver = g.driver;
    }
    if typed(ctx, "url") {
        // Normalised, which also refuses a user name or password: the config
        // file holds no secret.
        p.url = g
            .url
            .as_deref()
            .map(|u| checked_url("--url", u))
            .transpose()?;
    }
    if typed(ctx, "data_dir") {
        p.data_dir = g.data_dir.clone();
    }
    if typed(ctx, "timeout") {
        p.timeout = g.timeout.map(|t| t.to_string());
    }
    if typed(ctx, "ca_cert") {
        p.ca_cert = g.ca_cert.clone();
    }
    if typed(ctx, "app") {
        p.app = g.app.clone();
    }
    if typed(ctx, "owner") {
        p.owner = g.owner.clone();
    }
    if typed(ctx, "vault_mount") {
        p.vault_mount = g.vault_mount.clone();
    }
    if typed(ctx, "vault_namespace") {
        p.vault_namespace = g.vault_namespace.clone();
    }
    if typed(ctx, "client_id") {
        p.client_id = g.client_id.clone();
    }
    let endpoint =
        |name: &str, v: &Option<String>| v.as_deref().map(|u| checked_url(name, u)).transpose();
    p.token_endpoint = endpoint("--token-endpoint", &a.token_endpoint)?;
    p.introspection_endpoint = endpoint("--introspection-endpoint", &a.introspection_endpoint)?;
    p.revocation_endpoint = endpoint("--revocation-endpoint", &a.revocation_endpoint)?;
    p.insecure = g.insecure;
    if p.insecure {
        ctx.out.warn(format!(
            "profile `{}` skips TLS certificate verification; anyone on the path can read its traffic",
            a.name
        ));
    }
    let mut config = Config::load()?;
    let replaced = config.profiles.insert(a.name.clone(), p).is_some();
    if a.default {
        config.default_profile = Some(a.name.clone());
    }
    config.save()?;
    ctx.out.info(format!(
        "{} profile `{}` in {}",
        if replaced { "replaced" } else { "added" },
        a.name,
        Config::path()?.display()
    ));
    Ok(())
}

/// `raw` normalised for the config file, or a usage error naming `flag`.
fn checked_url(flag: &str, raw: &str) -> Result<String, UserError> {
    crate::drivers::http_client::normalize_url(raw)
        .map_err(|e| UserError::usage(format!("{flag}: {e}")))
}

/// One line of `tok profile list`.
#[derive(Serialize)]
struct Row {
    name: String,
    default: bool,
    driver: &'static str,
    url: Option<String>,
}

impl Record for Row {
    const COLUMNS: &'static [Column] = &[
        col("name", "NAME", Show::Always, 0),
        col("default", "DEFAULT", Show::Always, 1),
        col("driver", "DRIVER", Show::Always, 2),
        col("url", "URL", Show::Always, 3),
    ];
    const NONE: &'static str = "no profiles; add one with `tok profile add NAME --url URL`";

    fn cell(&self, i: usize, human: bool) -> Cell {
        match i {
            0 => Cell::Text(self.name.clone()),
            1 if human => Cell::Text(if self.default { "*" } else { "" }.into()),
            1 => Cell::Text(self.default.to_string()),
            2 => Cell::Text(self.driver.into()),
            _ => Cell::opt(self.url.as_deref()),
        }
    }
}

fn list(ctx: &Ctx) -> Result<()> {
    let config = &ctx.config;
    let stdout = std::io::stdout().lock();
    let mut w = Printer::new(&ctx.out, Box::new(stdout))?;
    for (name, p) in &config.profiles {
        let driver = p.driver.unwrap_or(if p.url.is_some() {
            crate::drivers::DriverKind::Tok
        } else {
            crate::drivers::DriverKind::Local
        });
        w.push(Row {
            name: name.clone(),
            default: config.default_profile.as_deref() == Some(name),
            driver: driver.as_str(),
            url: p.url.as_deref().map(display_url),
        })?;
    }
    w.finish()?;
    Ok(())
}

fn show(ctx: &Ctx, a: ProfileNameArg) -> Result<()> {
    let mut p = ctx.config.profile(&a.name)?.clone();
    // As everywhere tok prints one: a hand-edited URL may carry a password.
    p.url = p.url.as_deref().map(display_url);
    let mut stdout = std::io::stdout().lock();
    match ctx.global.output {
        Some(OutputFormat::Json | OutputFormat::Jsonl) => {
            output::write_json_pretty(&mut stdout, &p)?
        }
        _ => {
            let text = toml::to_string_pretty(&p)?;
            writeln!(stdout, "[profile.{}]", a.name)?;
            stdout.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

fn remove(ctx: &Ctx, a: ProfileNameArg) -> Result<()> {
    let mut config = Config::load()?;
    if config.profiles.remove(&a.name).is_none() {
        return Err(
            UserError::new(Kind::NotFound, format!("no profile named `{}`", a.name))
                .hint("run `tok profile list` to see the profiles")
                .into(),
        );
    }
    if config.default_profile.as_deref() == Some(&a.name) {
        config.default_profile = None;
    }
    config.save()?;
    ctx.out.info(format!("removed profile `{}`", a.name));
    Ok(())
}

fn use_default(ctx: &Ctx, a: ProfileUseArgs) -> Result<()> {
    let mut config = Config::load()?;
    let before = config.default_profile.clone();
    match &a.name {
        Some(name) => {
            config.profile(name)?;
            config.default_profile = Some(name.clone());
        }
        None => config.default_profile = None,
    }
    config.save()?;
    ctx.out.info(match (&a.name, before) {
        (Some(name), _) => format!("`{name}` is now the default profile"),
        (None, Some(old)) => format!("no default profile (was `{old}`)"),
        (None, None) => "no default profile (there was none)".to_string(),
    });
    Ok(())
}
