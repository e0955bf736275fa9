//! `tok serve --config FILE`: every serve setting in one TOML file
//! (docs/serve.example.toml), with flags and their environment variables
//! overriding it, resolved once into a [`Config`] before anything starts.
//!
//! Errors name the file, the line and the key, from the spans the toml
//! crate keeps (`toml::de::Error::span`, `toml::Spanned`). Relative paths in
//! the file are taken from the file's directory, so a unit's
//! `--config /etc/tok/serve.toml` finds `routes = "routes.toml"` beside it.
//!
//! New settings (the store, a node name, federation) are one more field
//! here and one more line in [`resolve`].

use super::routes::{Routes, Spec};
use super::{Config, LogFormat, ProxyConfig};
use crate::duration::Ttl;
use crate::store::audit::Retention;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8270";
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_AUDIT_QUEUE: u32 = 10_000;
/// The most `--audit-queue` (and `queue` under [audit]) may be.
pub const MAX_AUDIT_QUEUE: u32 = 1_000_000;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL store that several nodes share (postgres://USER@HOST:PORT/DB),
    /// never with a password: that comes from PGPASSWORD, .pgpass or TOK_STORE.
    pub store: Option<Spanned<String>>,
    /// This node's name in the audit trail (default: the host name).
    pub node_name: Option<String>,
    pub listen: Option<SocketAddr>,
    pub header_timeout: Option<Dur>,
    pub log_format: Option<LogFormat>,
    /// Record metrics (default true).
    pub metrics: Option<bool>,
    /// Serve `/metrics` without a token on this address too.
    pub metrics_listen: Option<SocketAddr>,
    pub tls: Option<TlsFile>,
    /// Trust policies for token exchange (docs/federation.md).
    pub federation: Option<PathBuf>,
    pub proxy: Option<ProxyFile>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<Spec>>,
    pub audit: Option<AuditFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    pub listen: Option<SocketAddr>,
    pub upstream: Option<Spanned<String>>,
    pub upstream_timeout: Option<Dur>,
    /// A routes file, instead of `[[route]]` tables here.
    pub routes: Option<PathBuf>,
    /// Hops whose X-Forwarded-For the proxy believes (CIDR list).
    #[serde(default, deserialize_with = "crate::limits::cidrs::deserialize")]
    pub trusted_proxy: Vec<ipnet::IpNet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    pub max_age: Option<Dur>,
    pub max_rows: Option<u64>,
    /// Admin actions (create, revoke, rotate) are kept apart from requests.
    pub admin_max_age: Option<Dur>,
    pub admin_max_rows: Option<u64>,
    /// How many entries may wait for the writer.
    pub queue: Option<u32>,
}

/// A duration written as tok writes them elsewhere (`30s`, `90d`).
#[derive(Debug, Clone, Copy)]
pub struct Dur(pub Ttl);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Dur).map_err(serde::de::Error::custom)
    }
}

/// A config file read and parsed, with what is needed to point at its lines.
pub struct Loaded {
    pub path: PathBuf,
    text: String,
    pub file: File,
}

/// Reads and parses `path`; the error names the line and the key.
pub fn load(path: &Path) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("could not read the config file {}: {e}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        located(path, &text, at, e.message())
    })?;
    Ok(Loaded {
        path: path.to_path_buf(),
        text,
        file,
    })
}

impl Loaded {
    fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn path_of(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir().join(p)
        }
    }

    fn error(&self, at: usize, message: impl std::fmt::Display) -> String {
        located(&self.path, &self.text, at, message)
    }
}

/// `FILE line N, key `K`: message`, with the key read from the line itself.
fn located(path: &Path, text: &str, at: usize, message: impl std::fmt::Display) -> String {
    let at = at.min(text.len());
    let line_no = text[..at].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let key = match line.split_once('=') {
        Some((k, _)) if !line.starts_with('[') => format!(", key `{}`", k.trim()),
        _ if line.starts_with('[') => format!(", in `{line}`"),
        _ => String::new(),
    };
    let message = message.to_string();
    format!(
        "{} line {line_no}{key}: {}",
        path.display(),
        message.trim_end()
    )
}

/// Where each setting comes from on the command line; None when not given.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub data_dir: Option<PathBuf>,
    /// `--store` or TOK_STORE, and whether it came from the environment (the
    /// only place its URL may carry a password).
    pub store: Option<(String, bool)>,
    pub node_name: Option<String>,
    pub listen: Option<SocketAddr>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub header_timeout: Option<Ttl>,
    pub log_format: Option<LogFormat>,
    pub no_metrics: bool,
    pub metrics_listen: Option<SocketAddr>,
    pub proxy_listen: Option<SocketAddr>,
    pub upstream: Option<String>,
    pub routes: Option<PathBuf>,
    pub upstream_timeout: Option<Ttl>,
    /// `--trusted-proxy`; replaces the file's list when given.
    pub trusted_proxy: Vec<ipnet::IpNet>,
    pub audit_max_age: Option<Ttl>,
    pub audit_max_rows: Option<u64>,
    pub audit_admin_max_age: Option<Ttl>,
    pub audit_admin_max_rows: Option<u64>,
    pub audit_queue: Option<u32>,
    pub federation: Option<PathBuf>,
    /// `--auth-listen`: forward auth reads the route rules too.
    pub auth_listen: Option<SocketAddr>,
}

/// Every serve setting, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub log_format: LogFormat,
}

/// Flags over the file over the defaults. `default_data_dir` is asked only
/// when neither gives one. Errors are ready for the user: usage errors.
pub fn resolve(
    flags: &Flags,
    file: Option<&Loaded>,
    default_data_dir: impl FnOnce() -> anyhow::Result<PathBuf>,
) -> anyhow::Result<Resolved> {
    let empty = File::default();
    let f = file.map(|l| &l.file).unwrap_or(&empty);
    let path_of = |p: &Path| match file {
        Some(l) => l.path_of(p),
        None => p.to_path_buf(),
    };
    let usage = |m: String| -> anyhow::Error { crate::error::UserError::usage(m).into() };

    let data_dir = match (&flags.data_dir, &f.data_dir) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => path_of(d),
        (None, None) => default_data_dir()?,
    };
    let store = match (&flags.store, file.zip(f.store.as_ref())) {
        (Some((url, from_env)), _) => Some(store_of(url, *from_env, |e| {
            crate::error::UserError::usage(format!("bad --store: {e}"))
        })?),
        (None, Some((l, url))) => Some(store_of(url.get_ref(), false, |e| {
            crate::error::UserError::usage(l.error(url.span().start, e))
        })?),
        (None, None) => None,
    };
    let node_name = flags
        .node_name
        .clone()
        .or(f.node_name.clone())
        .unwrap_or_else(crate::store::postgres::default_node_name);
    let listen = flags
        .listen
        .or(f.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address"));
    let tls = match (&flags.tls, &f.tls) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(t)) => Some((path_of(&t.cert), path_of(&t.key))),
        (None, None) => None,
    };
    let header_timeout = flags
        .header_timeout
        .or(f.header_timeout.map(|d| d.0))
        .map(|t| Duration::from_secs(t.as_secs()))
        .unwrap_or(DEFAULT_HEADER_TIMEOUT);
    let retention = {
        let d = Retention::default();
        let a = f.audit.as_ref();
        Retention {
            max_age_secs: flags
                .audit_max_age
                .or(a.and_then(|a| a.max_age.map(|d| d.0)))
                .map(Ttl::as_secs)
                .unwrap_or(d.max_age_secs),
            max_rows: flags
                .audit_max_rows
                .or(a.and_then(|a| a.max_rows))
                .unwrap_or(d.max_rows),
            admin_max_age_secs: flags
                .audit_admin_max_age
                .or(a.and_then(|a| a.admin_max_age.map(|d| d.0)))
                .map(Ttl::as_secs)
                .unwrap_or(d.admin_max_age_secs),
            admin_max_rows: flags
                .audit_admin_max_rows
                .or(a.and_then(|a| a.admin_max_rows))
                .unwrap_or(d.admin_max_rows),
        }
    };
    let audit_queue = flags
        .audit_queue
        .or(f.audit.as_ref().and_then(|a| a.queue))
        .unwrap_or(DEFAULT_AUDIT_QUEUE);
    if !(1..=MAX_AUDIT_QUEUE).contains(&audit_queue) {
        let m = format!("must be from 1 to {MAX_AUDIT_QUEUE}");
        return Err(usage(match file {
            Some(l) if flags.audit_queue.is_none() => l.error(l.text.find("queue").unwrap_or(0), m),
            _ => format!("--audit-queue {m}"),
        }));
    }
    if retention.max_rows == 0 {
        return Err(usage(match file {
            Some(l) if flags.audit_max_rows.is_none() => {
                l.error(l.text.find("max_rows").unwrap_or(0), "must be at least 1")
            }
            _ => "--audit-max-rows must be at least 1".into(),
        }));
    }

    let p = f.proxy.as_ref();
    let proxy_listen = flags.proxy_listen.or(p.and_then(|p| p.listen));
    let upstream = match (&flags.upstream, p.and_then(|p| p.upstream.as_ref())) {
        (Some(u), _) => Some((u.clone(), None)),
        (None, Some(u)) => Some((u.get_ref().clone(), Some(u.span().start))),
        (None, None) => None,
    };
    let has_routes =
        flags.routes.is_some() || p.is_some_and(|p| p.routes.is_some()) || !f.routes.is_empty();
    let proxy = match (proxy_listen, upstream) {
        (None, None)
            if (!has_routes || flags.auth_listen.is_some()) && flags.upstream_timeout.is_none() =>
        {
            None
        }
        (None, _) => {
            return Err(crate::error::UserError::usage(
                "proxy settings (--upstream, --routes, --upstream-timeout) without an address to listen on",
            )
            .hint("give --proxy-listen ADDR (or `listen` under [proxy] in the config file), or --auth-listen ADDR for forward auth")
            .into())
        }
        (Some(_), None) => {
            return Err(crate::error::UserError::usage(
                "the proxy needs an upstream to send requests to",
            )
            .hint("give --upstream URL (or `upstream` under [proxy] in the config file), e.g. --upstream http://127.0.0.1:3000")
            .into())
        }
        (Some(listen), Some((upstream, at))) => {
            let upstream =
                crate::drivers::http_client::normalize_url(&upstream).map_err(|e| {
                    match (file, at) {
                        (Some(l), Some(at)) => usage(l.error(at, e)),
                        _ => crate::error::UserError::usage(format!("--upstream: {e}"))
                            .hint("give the service's base URL, e.g. --upstream http://127.0.0.1:3000")
                            .into(),
                    }
                })?;
            let routes = routes_of(flags, file)?;
            let upstream_timeout = flags
                .upstream_timeout
                .or(p.and_then(|p| p.upstream_timeout.map(|d| d.0)))
                .map(|t| Duration::from_secs(t.as_secs()))
                .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT);
            let trusted = if flags.trusted_proxy.is_empty() {
                p.map(|p| p.trusted_proxy.clone()).unwrap_or_default()
            } else {
                flags.trusted_proxy.clone()
            };
            Some(ProxyConfig {
                listen,
                upstream,
                routes,
                upstream_timeout,
                trusted,
            })
        }
    };
    Ok(Resolved {
        config: Config {
            listen,
            data_dir,
            store,
            node_name,
            tls,
            proxy,
            forward_auth: None,
            retention,
            audit_queue: audit_queue as usize,
            federation: match (&flags.federation, &f.federation) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(p)) => Some(path_of(p)),
                (None, None) => None,
            },
            header_timeout,
            metrics: !flags.no_metrics && f.metrics.unwrap_or(true),
            metrics_listen: flags.metrics_listen.or(f.metrics_listen),
        },
        log_format: flags.log_format.or(f.log_format).unwrap_or_default(),
    })
}

/// A PostgreSQL store URL, checked: the error (with the hint of where a
/// password goes) is made by `err` so that it can name the flag or the line.
fn store_of(
    url: &str,
    from_env: bool,
    err: impl FnOnce(String) -> crate::error::UserError,
) -> anyhow::Result<Box<crate::store::postgres::Target>> {
    use crate::store::postgres::{is_url, Target};
    if !is_url(url) {
        return Err(err(format!("the store is a postgres:// URL, not `{url}`"))
            .hint("the SQLite store is chosen with --data-dir (or `data_dir`)")
            .into());
    }
    Target::parse(url, from_env).map(Box::new).map_err(|e| {
        let mut u = err(e.to_string());
        if let Some(h) = e.hint() {
            u = u.hint(h);
        }
        u.into()
    })
}

/// `--routes FILE`, else `routes = FILE` under [proxy], else the file's
/// own `[[route]]` tables.
pub fn routes_of(flags: &Flags, file: Option<&Loaded>) -> anyhow::Result<Routes> {
    let from_file = |path: &Path, what: &str| -> anyhow::Result<Routes> {
        Routes::load(path).map_err(|e| {
            crate::error::UserError::usage(format!("bad {what}: {e}"))
                .hint("see docs/routes.example.toml for the format")
                .into()
        })
    };
    if let Some(path) = &flags.routes {
        return from_file(path, "--routes file");
    }
    let Some(l) = file else {
        return Ok(Routes::default());
    };
    let in_file = &l.file.routes;
    match l.file.proxy.as_ref().and_then(|p| p.routes.as_ref()) {
        Some(path) if !in_file.is_empty() => Err(crate::error::UserError::usage(l.error(
            in_file[0].span().start,
            format!(
                "[[route]] tables and `routes = \"{}\"` under [proxy] both give routes; keep one",
                path.display()
            ),
        ))
        .into()),
        Some(path) => from_file(&l.path_of(path), "routes file"),
        None => {
            let specs = in_file.iter().map(|s| s.get_ref().clone()).collect();
            Routes::from_specs(specs).map_err(|(i, e)| {
                crate::error::UserError::usage(l.error(in_file[i].span().start, e)).into()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(text: &str) -> Result<Loaded, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    fn resolved(text: &str, flags: &Flags) -> anyhow::Result<Resolved> {
        let l = loaded(text).map_err(anyhow::Error::msg)?;
        resolve(flags, Some(&l), || Ok(PathBuf::from("/default")))
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let e = loaded("listen = \"127.0.0.1:1\"\nheader_timeout = \"10\"\n")
            .err()
            .unwrap();
        assert!(e.contains("line 2, key `header_timeout`"), "{e}");
        assert!(e.contains("no unit"), "{e}");
        let e = loaded("[proxy]\nlisten = \"127.0.0.1:0\"\nupstrem = \"x\"\n")
            .err()
            .unwrap();
        assert!(e.contains("line 3, key `upstrem`"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
        let e = resolved(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"nope\"\n",
            &Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3, key `upstream`"), "{e}");
        let e = resolved(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n\n[[route]]\npath = \"/a\"\n\n[[route]]\npath = \"b\"\n",
            &Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 8") && e.contains("route 2"), "{e}");
    }

    #[test]
    fn flags_override_the_file_and_the_file_the_defaults() {
        let text = "listen = \"127.0.0.1:9000\"\nheader_timeout = \"3s\"\nlog_format = \"json\"\n[audit]\nmax_rows = 5\n";
        let r = resolved(text, &Flags::default()).unwrap();
        assert_eq!(r.config.listen.port(), 9000);
        assert_eq!(r.config.header_timeout, Duration::from_secs(3));
        assert_eq!(r.config.retention.max_rows, 5);
        assert_eq!(r.log_format, LogFormat::Json);
        assert_eq!(r.config.data_dir, PathBuf::from("/default"));
        let flags = Flags {
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            audit_max_rows: Some(7),
            ..Flags::default()
        };
        let r = resolved(text, &flags).unwrap();
        assert_eq!(r.config.listen.port(), 9001);
        assert_eq!(r.config.retention.max_rows, 7);
        assert_eq!(r.config.header_timeout, Duration::from_secs(3));
    }

    #[test]
    fn the_store_comes_from_the_flag_or_the_file_and_never_with_a_password_from_the_file() {
        let r = resolved(
            "store = \"postgres://tok@127.0.0.1:5432/tok\"\nnode_name = \"a\"\n",
            &Flags::default(),
        )
        .unwrap();
        let t = r.config.store.expect("a PostgreSQL store");
        assert_eq!(t.display, "postgres://tok@127.0.0.1:5432/tok");
        assert_eq!(r.config.node_name, "a");
        let flags = Flags {
            store: Some(("postgres://other@127.0.0.1:5433/tok".into(), false)),
            node_name: Some("b".into()),
            ..Flags::default()
        };
        let r = resolved("store = \"postgres://tok@127.0.0.1:5432/tok\"\n", &flags).unwrap();
        assert_eq!(
            r.config.store.unwrap().display,
            "postgres://other@127.0.0.1:5433/tok"
        );
        assert_eq!(r.config.node_name, "b");

        let e = resolved(
            "listen = \"127.0.0.1:1\"\nstore = \"postgres://tok:hunter2@127.0.0.1/tok\"\n",
            &Flags::default(),
        )
        .unwrap_err();
        let u = e.downcast_ref::<crate::error::UserError>().unwrap();
        let shown = format!("{} {}", u.message, u.hint.clone().unwrap_or_default());
        assert!(shown.contains("line 2, key `store`"), "{shown}");
        assert!(
            shown.contains("PGPASSWORD") && shown.contains(".pgpass"),
            "{shown}"
        );
        assert!(shown.contains("TOK_STORE"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let e = resolved("store = \"/var/lib/tok\"\n", &Flags::default()).unwrap_err();
        assert!(e.to_string().contains("postgres://"), "{e}");
    }

    #[test]
    fn relative_paths_are_taken_from_the_files_directory() {
        let l = loaded("data_dir = \"state\"\n").unwrap();
        let r = resolve(&Flags::default(), Some(&l), || unreachable!()).unwrap();
        assert_eq!(r.config.data_dir, l.dir().join("state"));
    }
}
