//! `tok serve`, `tok serve --dev` and `tok serve init`.

use super::Ctx;
use crate::cli::{ServeArgs, ServeCommand, ServeInitArgs};
use crate::error::UserError;
use crate::server::routes::Routes;
use crate::server::{self, Config, ProxyConfig};
use crate::store::any::Spec;
use crate::store::audit::Retention;
use crate::store::backend::Backend;
use crate::store::sqlite::Sqlite;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;

pub fn run(ctx: &Ctx, args: ServeArgs) -> Result<()> {
    if let Some(ServeCommand::Init(a)) = args.command {
        return init(ctx, a);
    }
    let from_env = ctx
        .matches
        .subcommand_matches("serve")
        .and_then(|m| m.value_source("store"))
        == Some(clap::parser::ValueSource::EnvVariable);
    let store = match store_spec(ctx, args.store.as_deref(), from_env)? {
        Spec::Postgres(t) if args.dev => {
            drop(t);
            return Err(
                UserError::usage("--dev serves a temporary SQLite store; drop --store").into(),
            );
        }
        Spec::Postgres(t) => Some(t),
        Spec::Sqlite(_) => None,
    };
    let proxy = proxy_config(&args)?;
    let retention = Retention {
        max_age_secs: args.audit_max_age.as_secs(),
        max_rows: args.audit_max_rows,
    };
    let tls = args.tls_cert.zip(args.tls_key);
    let base = Config {
        listen: args.listen,
        data_dir: PathBuf::new(),
        tls,
        proxy,
        retention,
        audit_queue: args.audit_queue as usize,
        store,
        node_name: node_name(args.node_name.as_deref()),
        header_timeout: std::time::Duration::from_secs(args.header_timeout.as_secs()),
        federation: args.federation,
    };
    if args.dev {
        return dev(ctx, base);
    }
    server::init_logging(ctx.global.quiet, ctx.global.verbose);
    server::run(
        Config {
            data_dir: ctx.data_dir()?,
            ..base
        },
        |_| {},
    )
}

/// The proxy settings, checked before anything starts.
fn proxy_config(args: &ServeArgs) -> Result<Option<ProxyConfig>> {
    let (Some(listen), Some(upstream)) = (args.proxy_listen, &args.upstream) else {
        return Ok(None);
    };
    let upstream = crate::drivers::http_client::normalize_url(upstream).map_err(|e| {
        UserError::usage(format!("--upstream: {e}"))
            .hint("give the service's base URL, e.g. --upstream http://127.0.0.1:3000")
    })?;
    let routes = match &args.routes {
        Some(path) => Routes::load(path).map_err(|e| {
            UserError::usage(format!("bad --routes file: {e}"))
                .hint("see docs/routes.example.toml for the format")
        })?,
        None => Routes::default(),
    };
    Ok(Some(ProxyConfig {
        listen,
        upstream,
        routes,
        upstream_timeout: std::time::Duration::from_secs(args.upstream_timeout.as_secs()),
    }))
}

fn init(ctx: &Ctx, a: ServeInitArgs) -> Result<()> {
    let from_env = ctx
        .matches
        .subcommand_matches("serve")
        .and_then(|m| m.subcommand_matches("init"))
        .and_then(|m| m.value_source("store"))
        == Some(clap::parser::ValueSource::EnvVariable);
    let spec = store_spec(ctx, a.store.as_deref(), from_env)?;
    let start = match &spec {
        Spec::Sqlite(dir) => format!("tok serve --data-dir {}", dir.display()),
        Spec::Postgres(t) => format!("tok serve --store {}", t.display),
    };
    let another = match &spec {
        Spec::Sqlite(dir) => format!(
            "make another with `tok --driver local --data-dir {} create --scope tok:admin --no-expiry --name admin-2`",
            dir.display()
        ),
        Spec::Postgres(_) => "make another through a running node's admin API: \
             `tok create --scope tok:admin --no-expiry --name admin-2`"
            .to_string(),
    };
    let rt = runtime()?;
    let created = rt.block_on(async {
        let store = spec
            .open(&node_name(None))
            .await
            .map_err(|e| server::store_error(e, "could not open the store"))?;
        let admin = server::active_admin(&store)
            .await
            .map_err(|e| server::store_error(e, "could not read the store"))?;
        if let Some(t) = admin {
            return Err(anyhow::Error::from(
                UserError::usage(format!(
                    "the store {} already has an active admin token, {}",
                    store.describe(),
                    server::auth::principal_of(&t)
                ))
                .hint(another),
            ));
        }
        server::create_admin(&store, &a.name, a.ttl, "tok serve init").await
    })?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", created.secret.expose())?;
    stdout.flush().context("could not write the admin token")?;
    super::create::summary(ctx, "created admin token", &created.token);
    ctx.out.info(format!("start the server with `{start}`"));
    Ok(())
}

/// The store a serve command works on: --store (a PostgreSQL URL), or the
/// SQLite store in the data directory.
fn store_spec(ctx: &Ctx, store: Option<&str>, from_env: bool) -> Result<Spec> {
    match store {
        Some(url) => {
            if !crate::store::postgres::is_url(url) {
                return Err(UserError::usage(format!(
                    "--store takes a postgres:// URL, not `{url}`"
                ))
                .hint("the SQLite store is chosen with --data-dir")
                .into());
            }
            Spec::parse(url, from_env).map_err(|e| server::store_error(e, "bad --store"))
        }
        None => Ok(Spec::Sqlite(ctx.data_dir()?)),
    }
}

/// --node-name, or the host name.
fn node_name(given: Option<&str>) -> String {
    given.map_or_else(crate::store::postgres::default_node_name, str::to_string)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

fn dev(ctx: &Ctx, base: Config) -> Result<()> {
    if ctx.global.data_dir.is_some() {
        ctx.out
            .warn("--dev serves a new temporary store; --data-dir and TOK_DATA_DIR are ignored");
    }
    let tmp = tempfile::Builder::new()
        .prefix("tok-dev-")
        .tempdir()
        .context("could not make a temporary directory for the dev store")?;
    let data_dir = tmp.path().join("store");
    let admin = runtime()?.block_on(async {
        let store = Sqlite::open(&data_dir)
            .map_err(|e| server::store_error(e, "could not open the dev store"))?;
        server::create_admin(&store, "dev-admin", None, "tok serve --dev").await
    })?;
    server::init_logging(ctx.global.quiet, ctx.global.verbose);
    let out = &ctx.out;
    let result = server::run(
        Config {
            data_dir: data_dir.clone(),
            ..base
        },
        |url| {
            out.info(format!(
                "tok serve --dev: a throwaway server at {url} on a temporary store in {}, deleted when it stops.\n\
                 Paste the two lines below (stdout) into another terminal, then try `tok create --ttl 15m`:",
                data_dir.display()
            ));
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "export {}={url}", crate::env::URL);
            let _ = writeln!(
                stdout,
                "export {}={}",
                crate::env::ADMIN_TOKEN,
                admin.secret.expose()
            );
            let _ = stdout.flush();
        },
    );
    drop(tmp);
    result
}
