//! `tok serve`, `tok serve --dev` and `tok serve init`.

use super::Ctx;
use crate::cli::{ServeArgs, ServeCommand, ServeInitArgs};
use crate::error::UserError;
use crate::server::settings::{self, Flags, Resolved};
use crate::server::{self, Config, ForwardAuthConfig};
use crate::store::any::Spec;
use crate::store::backend::Backend;
use crate::store::sqlite::Sqlite;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn run(ctx: &Ctx, args: ServeArgs) -> Result<()> {
    match args.command {
        Some(ServeCommand::Init(a)) => return init(ctx, a),
        Some(ServeCommand::CheckConfig(a)) => return check_config(ctx, &a.file),
        None => {}
    }
    let flags = flags(ctx, &args);
    let file = args.config.as_deref().map(load).transpose()?;
    let forward_auth = forward_auth_config(&args, &flags, file.as_ref())?;
    if args.dev {
        let mut resolved = settings::resolve(&flags, file.as_ref(), || Ok(PathBuf::new()))?;
        if resolved.config.store.is_some() {
            return Err(UserError::usage(
                "--dev serves a temporary SQLite store; drop --store (or `store` in the config file)",
            )
            .into());
        }
        resolved.config.forward_auth = forward_auth;
        return dev(ctx, resolved);
    }
    let mut resolved = settings::resolve(&flags, file.as_ref(), || ctx.data_dir())?;
    resolved.config.forward_auth = forward_auth;
    server::init_logging(ctx.global.quiet, ctx.global.verbose, resolved.log_format);
    // SIGHUP reads the file again, with the same flags over it.
    let default_dir = resolved.config.data_dir.clone();
    let reload: server::Reload = Box::new(move || {
        let file = args.config.as_deref().map(load).transpose()?;
        let dir = default_dir.clone();
        let mut config = settings::resolve(&flags, file.as_ref(), move || Ok(dir))?.config;
        // Forward auth's routes are read again too (they are the proxy's).
        config.forward_auth = forward_auth_config(&args, &flags, file.as_ref())?;
        Ok(config)
    });
    server::run(resolved.config, Some(reload), |_| {})
}

/// The forward-auth settings (flags and `TOK_AUTH_SECRET`), with the route
/// rules the proxy uses.
fn forward_auth_config(
    args: &ServeArgs,
    flags: &Flags,
    file: Option<&settings::Loaded>,
) -> Result<Option<ForwardAuthConfig>> {
    let Some(listen) = args.auth_listen else {
        return Ok(None);
    };
    let secret = match std::env::var(crate::env::AUTH_SECRET) {
        Ok(s) if s.trim().is_empty() => {
            return Err(
                UserError::usage(format!("{} is set but empty", crate::env::AUTH_SECRET))
                    .hint(format!(
                        "unset {} or give it a long random value",
                        crate::env::AUTH_SECRET
                    ))
                    .into(),
            )
        }
        Ok(s) => Some(crate::secret::Secret::new(s.trim())),
        Err(_) => None,
    };
    if args.auth_client_ca.is_some() && args.auth_tls_cert.is_none() && flags.tls.is_none() {
        let tls_in_file = file.is_some_and(|l| l.file.tls.is_some());
        if !tls_in_file {
            return Err(UserError::usage(
                "--auth-client-ca needs the forward-auth listener to speak TLS",
            )
            .hint("give --auth-tls-cert FILE and --auth-tls-key FILE (or --tls-cert and --tls-key, which it then shares)")
            .into());
        }
    }
    Ok(Some(ForwardAuthConfig {
        listen,
        tls: args.auth_tls_cert.clone().zip(args.auth_tls_key.clone()),
        client_ca: args.auth_client_ca.clone(),
        allow: if args.auth_allow.is_empty() {
            crate::server::forward_auth::loopback()
        } else {
            args.auth_allow.clone()
        },
        secret,
        cache_ttl: std::time::Duration::from_secs(args.auth_cache_ttl.map_or(0, |t| t.as_secs())),
        routes: settings::routes_of(flags, file)?,
    }))
}

/// The command line's serve settings; None where not given.
fn flags(ctx: &Ctx, args: &ServeArgs) -> Flags {
    let from_env = ctx
        .matches
        .subcommand_matches("serve")
        .and_then(|m| m.value_source("store"))
        == Some(clap::parser::ValueSource::EnvVariable);
    Flags {
        data_dir: ctx.global.data_dir.clone(),
        store: args.store.clone().map(|s| (s, from_env)),
        node_name: args.node_name.clone(),
        listen: args.listen,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        header_timeout: args.header_timeout,
        log_format: args.log_format,
        no_metrics: args.no_metrics,
        metrics_listen: args.metrics_listen,
        proxy_listen: args.proxy_listen,
        upstream: args.upstream.clone(),
        routes: args.routes.clone(),
        upstream_timeout: args.upstream_timeout,
        trusted_proxy: args.trusted_proxy.clone(),
        audit_max_age: args.audit_max_age,
        audit_max_rows: args.audit_max_rows,
        audit_admin_max_age: args.audit_admin_max_age,
        audit_admin_max_rows: args.audit_admin_max_rows,
        audit_queue: args.audit_queue,
        federation: args.federation.clone(),
        auth_listen: args.auth_listen,
    }
}

fn load(path: &Path) -> Result<settings::Loaded> {
    settings::load(path).map_err(|e| {
        UserError::usage(e)
            .hint("see docs/serve.example.toml for every key; `tok serve check-config FILE` checks a file")
            .into()
    })
}

/// `tok serve check-config FILE`: everything `tok serve` checks before it
/// binds a socket, TLS files included.
fn check_config(ctx: &Ctx, path: &Path) -> Result<()> {
    let file = load(path)?;
    let resolved = settings::resolve(&Flags::default(), Some(&file), || ctx.data_dir())?;
    let c = &resolved.config;
    if let Some((cert, key)) = &c.tls {
        server::tls::config(cert, key).map_err(|e| {
            UserError::usage(format!("{}: [tls]: {e:#}", path.display()))
                .hint("give `cert` and `key` as PEM files the server can read")
        })?;
    }
    let proxy = match &c.proxy {
        Some(p) => format!(
            "proxy on {} to {} with {} route(s)",
            p.listen,
            p.upstream,
            p.routes.routes.len()
        ),
        None => "no proxy".into(),
    };
    let store = match &c.store {
        Some(t) => format!("store {}", t.display),
        None => format!("data_dir {}", c.data_dir.display()),
    };
    ctx.out.info(format!(
        "{}: ok (listen {}, {store}, {proxy})",
        path.display(),
        c.listen,
    ));
    Ok(())
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

/// The store `tok serve init` works on: --store (a PostgreSQL URL), or the
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

fn dev(ctx: &Ctx, resolved: Resolved) -> Result<()> {
    let base = resolved.config;
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
    server::init_logging(ctx.global.quiet, ctx.global.verbose, resolved.log_format);
    let out = &ctx.out;
    let result = server::run(
        Config {
            data_dir: data_dir.clone(),
            ..base
        },
        None,
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
