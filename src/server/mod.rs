//! `tok serve`: the HTTP admin API over the same store as the `local` driver,
//! the enforcing proxy, and their shared parts.
//!
//! Layout: `router.rs` assembles the routes and layers,
//! `api.rs` holds the `/v1` admin handlers, `auth.rs` the bearer extractor
//! (`Auth<Admin>`, `Auth<Read>`), `state.rs` the shared state (the store),
//! `extract.rs` strict bodies and queries, `admission.rs` and `cache.rs` the
//! proxy's token decisions and their cache, `error.rs` the one error shape,
//! `wire.rs` the JSON types the `tok` driver shares, `tls.rs` HTTPS.

pub mod admission;
pub mod api;
pub mod audit_writer;
pub mod auth;
pub mod cache;
pub mod dpop;
pub mod error;
pub mod extract;
pub mod federation;
pub mod forward_auth;
pub mod limiter;
pub mod listen;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod oauth;
pub mod ops;
pub mod path;
pub mod proxy;
mod reload;
pub mod request_id;
pub mod router;
pub mod routes;
pub mod settings;
pub mod state;
pub mod tls;
/// The admin API's wire types live beside the server, shared with the `tok` driver.
pub use crate::wire;

use crate::duration::Ttl;
use crate::error::{Kind, UserError};
use crate::model::{Created, Filter, NewToken, StateFilter, Token};
use crate::store::any::Spec;
use crate::store::backend::{self, Backend};
use anyhow::{Context, Result};
use chrono::Utc;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// How a server is started.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A PostgreSQL store shared with other nodes, instead of the SQLite
    /// store in `data_dir`.
    pub store: Option<Box<crate::store::postgres::Target>>,
    /// This node's name in the audit entries it writes to PostgreSQL.
    pub node_name: String,
    /// PEM certificate chain and key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The enforcing reverse proxy, when asked for.
    pub proxy: Option<ProxyConfig>,
    /// The forward-auth endpoint, when asked for.
    pub forward_auth: Option<ForwardAuthConfig>,
    pub retention: crate::store::audit::Retention,
    /// How many audit entries may wait for the writer (`--audit-queue`).
    pub audit_queue: usize,
    /// How long a client may take to send a request's headers (both listeners).
    pub header_timeout: Duration,
    /// Record metrics (`/metrics` answers either way).
    pub metrics: bool,
    /// Serve `/metrics` and the health routes without a token here too.
    pub metrics_listen: Option<SocketAddr>,
    /// `--federation FILE`: trust policies for token exchange, read again on SIGHUP.
    pub federation: Option<PathBuf>,
}

/// Reads the settings again for SIGHUP (the config file, then the flags).
pub type Reload = Box<dyn Fn() -> Result<Config> + Send + Sync>;

/// `--proxy-listen`, `--upstream`, `--routes`, `--upstream-timeout`.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// Base URL without a trailing slash.
    pub upstream: String,
    pub routes: routes::Routes,
    pub upstream_timeout: Duration,
    /// `--trusted-proxy`: hops whose `X-Forwarded-For` the proxy believes.
    pub trusted: Vec<ipnet::IpNet>,
}

/// `--auth-listen`, `--auth-allow`, `--auth-cache-ttl`, `TOK_AUTH_SECRET`,
/// `--auth-tls-cert`/`--auth-tls-key`, `--auth-client-ca`.
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    pub listen: SocketAddr,
    /// A certificate and key of its own; None: the admin listener's, if any.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// mTLS: callers must present a certificate issued by a CA in this file.
    pub client_ca: Option<PathBuf>,
    pub allow: Vec<ipnet::IpNet>,
    pub secret: Option<crate::secret::Secret>,
    /// Zero: a proxy may not cache an answer.
    pub cache_ttl: Duration,
    pub routes: routes::Routes,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event with key=value fields, for people.
    #[default]
    Text,
    /// One JSON object per line (time, level, message, fields), for log pipelines.
    Json,
}

/// Logs on stderr, one line per event. `-q` keeps warnings and errors, `-v`
/// adds debug, `-vv` trace. No line carries a secret or a query string: every
/// line goes through `log::Redacting`, and request lines log the redacted
/// path only (router.rs, proxy.rs).
pub fn init_logging(quiet: bool, verbose: u8, format: LogFormat) {
    use tracing::Level;
    let level = match (quiet, verbose) {
        (true, _) => Level::WARN,
        (false, 0) => Level::INFO,
        (false, 1) => Level::DEBUG,
        _ => Level::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(log::Redacting)
        .with_max_level(level);
    let _ = match format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os(crate::env::NO_COLOR).is_none_or(|v| v.is_empty());
            builder.with_ansi(ansi).try_init()
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// An active token with the `tok:admin` scope, if the store has one.
pub async fn active_admin<B: Backend>(store: &B) -> Result<Option<Token>, backend::Error> {
    let filter = Filter {
        state: StateFilter::Active,
        scopes: vec![auth::SCOPE_ADMIN.to_string()],
        limit: Some(1),
        ..Filter::default()
    };
    Ok(store
        .list(&filter, None, Utc::now())
        .await?
        .into_iter()
        .next())
}

/// Makes an admin token (`tok:admin`), never expiring unless `ttl` is given.
pub async fn create_admin<B: Backend>(
    store: &B,
    name: &str,
    ttl: Option<Ttl>,
    by: &str,
) -> Result<Created> {
    let now = Utc::now();
    let new = NewToken {
        name: Some(name.to_string()),
        description: Some("admin token for tok serve".into()),
        scopes: vec![auth::SCOPE_ADMIN.to_string()],
        expires_at: ttl.map(|t| now + t.delta()),
        ..NewToken::default()
    };
    crate::model::check_new_token(&new)
        .map_err(|e| UserError::usage(format!("cannot create the admin token: {e}")))?;
    store
        .create(&new, Some(by), now)
        .await
        .map_err(|e| store_error(e, "could not create the admin token"))
}

/// A store error as a classified error for the command line.
pub fn store_error(e: backend::Error, what: &str) -> anyhow::Error {
    let mut u = UserError::new(e.kind(), format!("{what}: {e}"));
    if let Some(h) = e.hint() {
        u = u.hint(h);
    }
    u.into()
}

/// The URL clients use for a bound address: a wildcard address becomes loopback.
pub fn url_for(addr: SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// Runs the server until SIGINT or SIGTERM, then lets the requests in flight
/// finish. `on_listening` gets the URL once the sockets are bound. SIGHUP
/// calls `reload` and applies what can change without a restart.
pub fn run(config: Config, reload: Option<Reload>, on_listening: impl FnOnce(&str)) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tok-serve")
        .build()
        .context("could not start the async runtime")?;
    let result = rt.block_on(serve(config, reload, on_listening));
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn serve(
    config: Config,
    reload: Option<Reload>,
    on_listening: impl FnOnce(&str),
) -> Result<()> {
    metrics::set_enabled(config.metrics);
    let federation = match &config.federation {
        Some(path) => Some(federation_from(path)?),
        None => None,
    };
    let spec = match config.store.clone() {
        Some(t) => Spec::Postgres(t),
        None => Spec::Sqlite(config.data_dir.clone()),
    };
    let store = std::sync::Arc::new(
        spec.open(&config.node_name)
            .await
            .map_err(|e| store_error(e, "could not open the store"))?,
    );
    let where_ = store.describe();
    let init_hint = match &config.store {
        Some(t) => format!("tok serve init --store {}", t.display),
        None => format!("tok serve init --data-dir {}", config.data_dir.display()),
    };
    // One admission cache for the proxy and the forward-auth endpoint; the
    // admin API clears a token from it when it revokes or rotates one.
    let admitter = std::sync::Arc::new(admission::Admitter::new(
        std::sync::Arc::clone(&store),
        cache::Bounds::default(),
    )?);
    let state = state::AppState::new(std::sync::Arc::clone(&store), admitter.clone());
    let certs: Option<tls::Certs> = match &config.tls {
        Some((cert, key)) => Some(std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(
            tls::config(cert, key)?,
        ))),
        None => None,
    };
    // The forward-auth listener's TLS: its own certificate or the admin
    // listener's, with client certificates required when a client CA is set.
    let auth_certs: Option<tls::Certs> = match &config.forward_auth {
        Some(f) if f.tls.is_some() || f.client_ca.is_some() => {
            let (cert, key) = f.tls.as_ref().or(config.tls.as_ref()).ok_or_else(|| {
                anyhow::anyhow!(
                    "--auth-client-ca needs a certificate for the forward-auth listener"
                )
            })?;
            Some(std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(
                tls::config_for_clients(cert, key, f.client_ca.as_deref())?,
            )))
        }
        _ => certs.clone(),
    };
    let tcp = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| bind_error("--listen", config.listen, e))?;
    let local = tcp.local_addr()?;
    let url = url_for(local, certs.is_some());
    let proxy_tcp = match &config.proxy {
        Some(p) => Some(
            tokio::net::TcpListener::bind(p.listen)
                .await
                .map_err(|e| bind_error("--proxy-listen", p.listen, e))?,
        ),
        None => None,
    };
    let auth_tcp = match &config.forward_auth {
        Some(f) => Some(
            tokio::net::TcpListener::bind(f.listen)
                .await
                .map_err(|e| bind_error("--auth-listen", f.listen, e))?,
        ),
        None => None,
    };
    let metrics_tcp = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| bind_error("--metrics-listen", addr, e))?,
        ),
        None => None,
    };
    // Installed before anything is ready: SIGHUP's default would end the process.
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("could not handle SIGHUP")?;

    let admin = active_admin(&*store)
        .await
        .map_err(|e| store_error(e, "could not read the store"))?;
    if admin.is_none() {
        tracing::warn!(
            "the store has no active token with the tok:admin scope, so no request can authenticate; make one with `{init_hint}`"
        );
    }
    let (retention_tx, retention_rx) = tokio::sync::watch::channel(config.retention);
    let (audit, writer) = audit_writer::spawn(
        std::sync::Arc::clone(&store),
        retention_rx,
        config.audit_queue,
    );
    let ops = std::sync::Arc::new(ops::Ops::new(std::sync::Arc::clone(&store), audit.clone()));

    // One signal stops every listener; each finishes its requests in flight.
    let signal = shutdown_signal()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let spawn_with = |listener: tokio::net::TcpListener,
                      app: axum::Router,
                      certs: Option<&tls::Certs>|
     -> Result<tokio::task::JoinHandle<()>> {
        let stop = stopped();
        Ok(match certs {
            None => tokio::spawn(listen::serve(listener, app, config.header_timeout, stop)),
            Some(c) => {
                let listener = tls::TlsListener::new(listener, c.clone())?;
                tokio::spawn(listen::serve(listener, app, config.header_timeout, stop))
            }
        })
    };
    let spawn_on = |listener: tokio::net::TcpListener,
                    app: axum::Router|
     -> Result<tokio::task::JoinHandle<()>> {
        spawn_with(listener, app, certs.as_ref())
    };

    if certs.is_none() && !local.ip().is_loopback() {
        tracing::warn!(%url, "the admin API is reachable from other hosts without TLS: admin tokens cross the network in clear; use --tls-cert and --tls-key");
    }
    match &config.store {
        Some(_) => tracing::info!(
            %url,
            store = %where_,
            node = %config.node_name,
            tls = certs.is_some(),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        ),
        None => tracing::info!(
            %url,
            data_dir = %config.data_dir.display(),
            tls = certs.is_some(),
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        ),
    }
    let mut tasks = Vec::new();
    // Refusals over a rate or quota reach the audit trail aggregated, every
    // second and once more after the listeners stopped.
    let mut limits = None;
    let mut admission = || -> Result<std::sync::Arc<admission::Admitter>> {
        if limits.is_none() {
            let limiter = admitter.limiter();
            tokio::spawn(std::sync::Arc::clone(&limiter).run(audit.clone(), stopped()));
            limits = Some((limiter, audit.clone()));
        }
        Ok(std::sync::Arc::clone(&admitter))
    };
    // One set of routes for the proxy and forward auth: SIGHUP swaps it for both.
    let routes = config
        .proxy
        .as_ref()
        .map(|p| &p.routes)
        .or(config.forward_auth.as_ref().map(|f| &f.routes))
        .map(|r| std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(r.clone())));
    let mut proxy = None;
    if let (Some(p), Some(listener)) = (&config.proxy, proxy_tcp) {
        let proxy_addr = listener.local_addr()?;
        let proxy_url = url_for(proxy_addr, certs.is_some());
        if certs.is_none() && !proxy_addr.ip().is_loopback() {
            tracing::warn!(url = %proxy_url, "the proxy takes bearer tokens over plain HTTP from other hosts; use --tls-cert and --tls-key");
        }
        tracing::info!(
            url = %proxy_url,
            upstream = %p.upstream,
            routes = p.routes.routes.len(),
            "proxy listening"
        );
        let shared = std::sync::Arc::new(proxy::Proxy {
            admission: admission()?,
            routes: std::sync::Arc::clone(routes.as_ref().expect("set with the proxy")),
            upstream: p.upstream.clone(),
            client: proxy::upstream_client(p.upstream_timeout),
            upstream_timeout: p.upstream_timeout,
            audit: audit.clone(),
            trusted: p.trusted.clone(),
            tls: certs.is_some(),
        });
        // The proxy speaks TLS with the admin API's certificate when given one.
        tasks.push(spawn_on(listener, proxy::router(shared.clone()))?);
        proxy = Some(shared);
    }
    if let (Some(f), Some(listener)) = (&config.forward_auth, auth_tcp) {
        let auth_addr = listener.local_addr()?;
        let auth_url = url_for(auth_addr, auth_certs.is_some());
        if f.secret.is_none()
            && f.client_ca.is_none()
            && f.allow.iter().any(|n| !n.addr().is_loopback())
        {
            tracing::warn!(url = %auth_url, "forward auth trusts callers by address alone; set TOK_AUTH_SECRET or --auth-client-ca too");
        }
        tracing::info!(
            url = %auth_url,
            allow = %f.allow.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
            shared_secret = f.secret.is_some(),
            client_certificates = f.client_ca.is_some(),
            cache_ttl_secs = f.cache_ttl.as_secs(),
            "forward auth listening"
        );
        let app = forward_auth::router(std::sync::Arc::new(forward_auth::ForwardAuth {
            admission: admission()?,
            routes: std::sync::Arc::clone(routes.as_ref().expect("set with forward auth")),
            allow: f.allow.clone(),
            secret: f.secret.clone(),
            cache_ttl: f.cache_ttl,
            audit: audit.clone(),
        }));
        tasks.push(spawn_with(listener, app, auth_certs.as_ref())?);
    }
    if let Some(listener) = metrics_tcp {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "/metrics is served without a token to other hosts; keep --metrics-listen on a private address");
        }
        tracing::info!(url = %url_for(addr, certs.is_some()), "metrics listening");
        tasks.push(spawn_on(listener, ops::open_routes(ops.clone()))?);
    }
    let exchange = federation.map(|f| {
        std::sync::Arc::new(federation::endpoint::Exchange {
            federation: f,
            store: state.shared(),
            audit: audit.clone(),
        })
    });
    let oauth = std::sync::Arc::new(oauth::OAuth {
        state: state.clone(),
        audit,
    });
    let app = router::router(
        state,
        oauth,
        ops.clone(),
        exchange.map(federation::endpoint::router),
    );
    tasks.push(spawn_on(tcp, app)?);
    ops.listening
        .store(true, std::sync::atomic::Ordering::Release);
    notify::notify(&format!("READY=1\nSTATUS=listening on {url}"));
    on_listening(&url);

    let mut current = config;
    loop {
        #[cfg(unix)]
        let hup = hangup.recv();
        #[cfg(not(unix))]
        let hup = std::future::pending::<Option<()>>();
        tokio::select! {
            () = stopped() => break,
            _ = hup => {
                notify::notify("RELOADING=1");
                match &reload {
                    None => tracing::info!("SIGHUP: nothing to reload"),
                    Some(f) => match f() {
                        Ok(new) => {
                            reload::apply(&mut current, new, routes.as_deref(), certs.as_ref(), &retention_tx);
                        }
                        Err(e) => {
                            metrics::METRICS.reload_failures.inc();
                            tracing::error!(error = %format!("{e:#}"), "SIGHUP: the new settings are refused; the old ones stay");
                        }
                    },
                }
                notify::notify("READY=1");
            }
        }
    }
    ops.listening
        .store(false, std::sync::atomic::Ordering::Release);
    notify::notify("STOPPING=1");
    for task in tasks {
        task.await
            .map_err(|e| anyhow::anyhow!("a listener task failed: {e}"))?;
    }
    if let Some((limiter, audit)) = limits {
        limiter.flush(&audit).await;
    }
    // Every sender is gone with the routers: the writer drains and stops.
    drop((proxy, ops));
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "the audit writer did not finish");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Loads the trust policies and reloads them on SIGHUP, keeping the old ones
/// when the file has become bad.
fn federation_from(path: &std::path::Path) -> Result<std::sync::Arc<federation::Federation>> {
    let policies = federation::policy::Policies::load(path).map_err(|e| {
        UserError::usage(format!("bad --federation file: {e}"))
            .hint("see docs/federation.md for the format")
    })?;
    tracing::info!(
        file = %path.display(),
        policies = policies.policies.len(),
        "federation policies loaded"
    );
    let fed = std::sync::Arc::new(
        federation::Federation::new(path.to_path_buf(), policies)
            .context("could not set up the client for issuers' keys")?,
    );
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("could not handle SIGHUP")?;
        let f = std::sync::Arc::clone(&fed);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match f.reload() {
                    Ok(n) => tracing::info!(policies = n, "federation policies reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "federation policies not reloaded; the previous ones stay in force")
                    }
                }
            }
        });
    }
    Ok(fed)
}

fn bind_error(flag: &str, addr: SocketAddr, e: std::io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            format!("another program (another tok serve?) has that port; pick another with {flag} 127.0.0.1:PORT, or port 0 for any free one")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("ports below 1024 need privileges; give {flag} a higher port")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("that address is not one of this machine's; give {flag} 127.0.0.1 or 0.0.0.0")
        }
        _ => format!("check {flag}"),
    };
    UserError::new(Kind::Failure, format!("could not listen on {addr}: {e}"))
        .hint(hint)
        .into()
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when first polled, so a signal sent as soon as the server says
/// it is listening already stops it gracefully.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).context("could not handle SIGINT")?,
            signal(SignalKind::terminate()).context("could not handle SIGTERM")?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        let which = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        #[cfg(not(unix))]
        let which = match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        };
        tracing::info!(
            signal = which,
            "shutting down; finishing the requests in flight"
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_become_loopback_urls() {
        assert_eq!(
            url_for("0.0.0.0:8270".parse().unwrap(), false),
            "http://127.0.0.1:8270"
        );
        assert_eq!(url_for("[::]:1".parse().unwrap(), true), "https://[::1]:1");
        assert_eq!(
            url_for("10.1.2.3:99".parse().unwrap(), false),
            "http://10.1.2.3:99"
        );
    }
}
