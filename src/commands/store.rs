//! `tok store copy`: SQLite to PostgreSQL and back.

use super::Ctx;
use crate::cli::{StoreCommand, StoreCopyArgs};
use crate::error::{Kind, UserError};
use crate::store::any::{AnyStore, Spec};
use crate::store::copy::{copy, Report};
use crate::store::postgres;
use anyhow::Result;
use clap::parser::ValueSource;

pub fn run(ctx: &Ctx, c: StoreCommand) -> Result<()> {
    match c {
        StoreCommand::Copy(a) => copy_cmd(ctx, a),
    }
}

fn copy_cmd(ctx: &Ctx, a: StoreCopyArgs) -> Result<()> {
    let from_env = |arg: &str| {
        ctx.matches
            .subcommand_matches("store")
            .and_then(|m| m.subcommand_matches("copy"))
            .and_then(|m| m.value_source(arg))
            == Some(ValueSource::EnvVariable)
    };
    let from = spec(&a.from, from_env("from"), "--from")?;
    let to = spec(&a.to, from_env("to"), "--to")?;
    if let Spec::Sqlite(dir) = &from {
        if !dir.join(crate::store::DB_FILE).is_file() {
            return Err(UserError::new(
                Kind::NotFound,
                format!("--from: there is no tok store at {}", a.from),
            )
            .hint("give the data directory that holds tok.db, or a postgres:// URL")
            .into());
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let node = postgres::default_node_name();
    let Report { source, added, .. } = rt.block_on(async {
        let from = open(from, &node, "--from").await?;
        let to = open(to, &node, "--to").await?;
        copy::<AnyStore, AnyStore>(&from, &to, a.force)
            .await
            .map_err(|e| crate::server::store_error(e, "could not copy the store"))
    })?;
    if !ctx.global.quiet {
        eprintln!(
            "copied {} of {} tokens and {} of {} audit entries (the rest were there already); \
             verified",
            added.tokens, source.tokens, added.audit, source.audit
        );
    }
    Ok(())
}

fn spec(s: &str, from_env: bool, flag: &str) -> Result<Spec> {
    Spec::parse(s, from_env).map_err(|e| crate::server::store_error(e, &format!("bad {flag}")))
}

async fn open(spec: Spec, node: &str, flag: &str) -> Result<AnyStore> {
    spec.open(node).await.map_err(|e| {
        crate::server::store_error(e, &format!("could not open the store given in {flag}"))
    })
}
