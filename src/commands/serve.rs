//! `tok serve`, `tok serve --dev` and `tok serve init`.

use super::Ctx;
use crate::cli::{ServeArgs, ServeCommand, ServeInitArgs};
use crate::error::UserError;
use crate::server::routes::Routes;
use crate::server::{self, Config, ForwardAuthConfig, ProxyConfig};
use crate::store::audit::Retention;
use crate::store::Store;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;

pub fn run(ctx: &Ctx, args: ServeArgs) -> Result<()> {
    if let Some(ServeCommand::Init(a)) = args.command {
        return init(ctx, a);
    }
    let routes = routes(&args)?;
    let proxy = proxy_config(&args, &routes)?;
    let forward_auth = forward_auth_config(&args, &routes)?;
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
        forward_auth,
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

/// The route rules, read and checked before anything starts.
fn routes(args: &ServeArgs) -> Result<Routes> {
    Ok(match &args.routes {
        Some(path) => Routes::load(path).map_err(|e| {
            UserError::usage(format!("bad --routes file: {e}"))
                .hint("see docs/routes.example.toml for the format")
        })?,
        None => Routes::default(),
    })
}

/// The proxy settings, checked before anything starts.
fn proxy_config(args: &ServeArgs, routes: &Routes) -> Result<Option<ProxyConfig>> {
    let (Some(listen), Some(upstream)) = (args.proxy_listen, &args.upstream) else {
        return Ok(None);
    };
    let upstream = crate::drivers::http_client::normalize_url(upstream).map_err(|e| {
        UserError::usage(format!("--upstream: {e}"))
            .hint("give the service's base URL, e.g. --upstream http://127.0.0.1:3000")
    })?;
    Ok(Some(ProxyConfig {
        listen,
        upstream,
        routes: routes.clone(),
        upstream_timeout: std::time::Duration::from_secs(args.upstream_timeout.as_secs()),
    }))
}

/// The forward-auth settings; the shared secret comes from TOK_AUTH_SECRET.
fn forward_auth_config(args: &ServeArgs, routes: &Routes) -> Result<Option<ForwardAuthConfig>> {
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
    Ok(Some(ForwardAuthConfig {
        listen,
        allow: if args.auth_allow.is_empty() {
            crate::server::forward_auth::loopback()
        } else {
            args.auth_allow.clone()
        },
        secret,
        cache_ttl: std::time::Duration::from_secs(args.auth_cache_ttl.map_or(0, |t| t.as_secs())),
        routes: routes.clone(),
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
