//! `tok serve`, `tok serve --dev` and `tok serve init`.

use super::Ctx;
use crate::cli::{ServeArgs, ServeCommand, ServeInitArgs};
use crate::error::UserError;
use crate::server::routes::Routes;
use crate::server::{self, Config, ProxyConfig};
use crate::store::audit::Retention;
use crate::store::Store;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;

pub fn run(ctx: &Ctx, args: ServeArgs) -> Result<()> {
    if let Some(ServeCommand::Init(a)) = args.command {
        return init(ctx, a);
    }
    let proxy = proxy_config(&args)?;
    let retention = Retention {
        max_age_secs: args.audit_max_age.as_secs(),
        max_rows: args.audit_max_rows,
        admin_max_age_secs: args.audit_admin_max_age.as_secs(),
        admin_max_rows: args.audit_admin_max_rows,
    };
    let tls = args.tls_cert.zip(args.tls_key);
    let base = Config {
        listen: args.listen,
        data_dir: PathBuf::new(),
        tls,
        proxy,
        retention,
        audit_queue: args.audit_queue as usize,
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
    let dir = ctx.data_dir()?;
    let store = Store::open(&dir)?;
    if let Some(t) = server::active_admin(&store)? {
        return Err(UserError::usage(format!(
            "the store in {} already has an active admin token, {}",
            dir.display(),
            server::auth::principal_of(&t)
        ))
        .hint(format!(
            "make another with `tok --driver local --data-dir {} create --scope tok:admin --no-expiry --name admin-2`",
            dir.display()
        ))
        .into());
    }
    let created = server::create_admin(&store, &a.name, a.ttl, "tok serve init")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", created.secret.expose())?;
    stdout.flush().context("could not write the admin token")?;
    super::create::summary(ctx, "created admin token", &created.token);
    ctx.out.info(format!(
        "start the server with `tok serve --data-dir {}`",
        dir.display()
    ));
    Ok(())
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
    let store = Store::open(&data_dir)?;
    let admin = server::create_admin(&store, "dev-admin", None, "tok serve --dev")?;
    drop(store);
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
