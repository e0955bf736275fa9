//! `tok store copy`: SQLite to PostgreSQL and back.

use super::Ctx;
use crate::cli::{StoreCommand, StoreCopyArgs};
use crate::error::UserError;
use crate::store::backend;
use crate::store::copy::{copy, Report};
use crate::store::postgres::{self, PgStore, Target};
use crate::store::sqlite::Sqlite;
use anyhow::Result;
use clap::parser::ValueSource;
use std::path::{Path, PathBuf};

pub fn run(ctx: &Ctx, c: StoreCommand) -> Result<()> {
    match c {
        StoreCommand::Copy(a) => copy_cmd(ctx, a),
    }
}

/// An opened store of either kind.
enum Opened {
    Sqlite(Sqlite),
    Postgres(Box<PgStore>),
}

fn copy_cmd(ctx: &Ctx, a: StoreCopyArgs) -> Result<()> {
    let from_env = |arg: &str| {
        ctx.matches
            .subcommand_matches("store")
            .and_then(|m| m.subcommand_matches("copy"))
            .and_then(|m| m.value_source(arg))
            == Some(ValueSource::EnvVariable)
    };
    let (from_env, to_env) = (from_env("from"), from_env("to"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let from = open(&a.from, from_env, "--from", true).await?;
        let to = open(&a.to, to_env, "--to", false).await?;
        let r = match (&from, &to) {
            (Opened::Sqlite(f), Opened::Sqlite(t)) => copy(f, t, a.force).await,
            (Opened::Sqlite(f), Opened::Postgres(t)) => copy(f, &**t, a.force).await,
            (Opened::Postgres(f), Opened::Sqlite(t)) => copy(&**f, t, a.force).await,
            (Opened::Postgres(f), Opened::Postgres(t)) => copy(&**f, &**t, a.force).await,
        };
        r.map_err(|e| user_error(e, "could not copy the store"))
    })?;
    let Report { source, added, .. } = report;
    if !ctx.global.quiet {
        eprintln!(
            "copied {} of {} tokens and {} of {} audit entries (the rest were there already); \
             verified",
            added.tokens, source.tokens, added.audit, source.audit
        );
    }
    Ok(())
}

async fn open(spec: &str, from_env: bool, flag: &str, must_exist: bool) -> Result<Opened> {
    let what = format!("could not open the store given in {flag}");
    if postgres::is_url(spec) {
        let target = Target::parse(spec, from_env).map_err(|e| user_error(e, &what))?;
        let store = PgStore::open(target, postgres::default_node_name())
            .await
            .map_err(|e| user_error(e, &what))?;
        return Ok(Opened::Postgres(Box::new(store)));
    }
    let dir = sqlite_dir(Path::new(spec));
    if must_exist && !dir.join(crate::store::DB_FILE).is_file() {
        return Err(UserError::new(
            crate::error::Kind::NotFound,
            format!("{flag}: there is no tok store at {}", spec),
        )
        .hint("give the data directory that holds tok.db, or a postgres:// URL")
        .into());
    }
    let store = Sqlite::open(&dir).map_err(|e| user_error(e, &what))?;
    Ok(Opened::Sqlite(store))
}

/// A data directory, or the directory of a tok.db named directly.
fn sqlite_dir(p: &Path) -> PathBuf {
    if p.file_name() == Some(std::ffi::OsStr::new(crate::store::DB_FILE)) && !p.is_dir() {
        p.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    } else {
        p.to_path_buf()
    }
}

fn user_error(e: backend::Error, what: &str) -> anyhow::Error {
    let mut u = UserError::new(e.kind(), format!("{what}: {e}"));
    if let Some(h) = e.hint() {
        u = u.hint(h);
    }
    u.into()
}
