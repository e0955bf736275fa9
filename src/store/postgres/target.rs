//! From a store URL to a connection config: where, as whom, with which
//! password, over which TLS.
//!
//! The URL is libpq's (PostgreSQL docs, "Connection URIs"), parsed by
//! tokio-postgres, which knows neither `verify-full` nor `sslrootcert`: tok
//! takes those two out first. The password is looked up as libpq does
//! ("The Password File", "Environment Variables"): the URL, then PGPASSWORD,
//! then PGPASSFILE or ~/.pgpass (ignored unless 0600). A URL with a password
//! is only taken from the environment, never from argv, where every user of
//! the machine could read it.

use super::super::backend::{Error, Result};
use super::tls;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};
use tokio_rustls::rustls::ClientConfig;

/// How the store connects.
#[derive(Clone)]
pub enum Tls {
    /// Plaintext (`sslmode=disable`, or the default on loopback).
    Disable,
    /// rustls, verified.
    Verify(Arc<ClientConfig>),
}

#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: Tls,
    /// postgres://USER@HOST:PORT/DB, never with a password.
    pub display: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// Whether `s` names a PostgreSQL store rather than a SQLite directory.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl Target {
    /// Parses `url`. `from_env` says whether it came from the environment
    /// (TOK_STORE), the only place a password in it is accepted.
    pub fn parse(url: &str, from_env: bool) -> Result<Target> {
        if !is_url(url) {
            return Err(Error::Config(
                "a PostgreSQL store URL starts with postgres:// or postgresql://".into(),
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut sslmode = None;
        let mut rootcert = None;
        let mut rest = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "sslmode" => sslmode = Some(v.into_owned()),
                "sslrootcert" => rootcert = Some(PathBuf::from(v.into_owned())),
                "password" => {
                    return Err(Error::Config(
                        "give the password in PGPASSWORD or a .pgpass file, not in the URL's query"
                            .into(),
                    ))
                }
                _ => {
                    rest.append_pair(&k, &v);
                }
            }
        }
        let rest = rest.finish();
        let rebuilt = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{rest}")
        };
        let mut config = tokio_postgres::Config::from_str(&rebuilt)
            .map_err(|e| Error::Config(format!("{e} (in {})", redact(url))))?;
        if config.get_user().is_none() {
            return Err(Error::Config(format!(
                "{} names no user: postgres://USER@HOST:PORT/DB",
                redact(url)
            )));
        }
        if config.get_hosts().is_empty() {
            return Err(Error::Config(format!(
                "{} names no host: postgres://USER@HOST:PORT/DB",
                redact(url)
            )));
        }
        if config.get_password().is_some() && !from_env {
            return Err(Error::Config(
                "a password in the store URL would be readable by others (--store shows \
                 in the process list, a config file is read by whoever can read it): put \
                 the URL in TOK_STORE, or the password in PGPASSWORD or a .pgpass file"
                    .into(),
            ));
        }
        let display = display_of(&config);
        if config.get_password().is_none() {
            if let Some(p) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
                config.password(p.into_encoded_bytes());
            } else if let Some(p) = pgpass(&config) {
                config.password(p);
            }
        }
        let loopback = config.get_hosts().iter().all(|h| match h {
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            #[cfg(unix)]
            Host::Unix(_) => true,
        });
        let tls = match sslmode.as_deref() {
            None if loopback => Tls::Disable,
            Some("disable") => {
                if !loopback {
                    eprintln!(
                        "warning: sslmode=disable: the connection to {display} is NOT encrypted; \
                         passwords and token hashes cross the network in the clear"
                    );
                }
                Tls::Disable
            }
            None | Some("verify-full") => Tls::Verify(Arc::new(client(rootcert.as_deref(), true)?)),
            Some("require" | "verify-ca") => {
                Tls::Verify(Arc::new(client(rootcert.as_deref(), false)?))
            }
            Some(m @ ("allow" | "prefer")) => {
                return Err(Error::Config(format!(
                    "sslmode={m} would accept an unverified connection: use verify-full \
                     (or require), or disable to say plainly that there is no TLS"
                )))
            }
            Some(other) => {
                return Err(Error::Config(format!(
                    "unknown sslmode `{other}`: use verify-full, verify-ca, require or disable"
                )))
            }
        };
        config.ssl_mode(match tls {
            Tls::Disable => SslMode::Disable,
            Tls::Verify(_) => SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("tok");
        }
        Ok(Target {
            config,
            tls,
            display,
        })
    }
}

fn client(rootcert: Option<&std::path::Path>, check_host: bool) -> Result<ClientConfig> {
    tls::client_config(rootcert, check_host).map_err(Error::Config)
}

fn display_of(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => String::new(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        c.get_user().unwrap_or(""),
        c.get_dbname().unwrap_or(c.get_user().unwrap_or(""))
    )
}

/// A URL for messages: any password replaced.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, tail) = match rest.split_once('@') {
        Some((a, t)) => (a, t),
        None => return url.to_string(),
    };
    let user = auth.split_once(':').map_or(auth, |(u, _)| u);
    format!("{scheme}://{user}@{tail}")
}

/// The password for this host, port, database and user from the password
/// file: `host:port:db:user:password` lines, `*` matching anything, `\`
/// escaping `:` and `\`. Like libpq, a file others can read is ignored.
fn pgpass(c: &tokio_postgres::Config) -> Option<Vec<u8>> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: ignoring {}: it can be read by others (chmod 0600 it)",
                path.display()
            );
            return None;
        }
    }
    let _ = meta;
    let text = std::fs::read_to_string(&path).ok()?;
    let host = match c.get_hosts().first()? {
        Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        Host::Unix(_) => "localhost".to_string(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = c.get_user()?.to_string();
    let db = c.get_dbname().map_or_else(|| user.clone(), str::to_string);
    let wanted = [host, port, db, user];
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let fields = split_pgpass(line);
            if fields.len() != 5 {
                return None;
            }
            let hit = fields[..4]
                .iter()
                .zip(&wanted)
                .all(|(f, w)| f == "*" || f == w);
            hit.then(|| fields[4].clone().into_bytes())
        })
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut().expect("one field").push(ch),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_argv_is_refused_and_never_echoed() {
        let e = Target::parse("postgres://u:hunter2@db.example:5432/tok", false).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("TOK_STORE"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let e = Target::parse("postgres://u@h/db?password=hunter2", true).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("hunter2"));
    }

    #[test]
    fn sslmode_spellings() {
        let t = Target::parse("postgres://u@127.0.0.1:5/db", false).unwrap();
        assert!(matches!(t.tls, Tls::Disable));
        assert_eq!(t.display, "postgres://u@127.0.0.1:5/db");
        for bad in ["prefer", "allow", "verify-everything"] {
            let url = format!("postgres://u@127.0.0.1/db?sslmode={bad}");
            assert!(matches!(Target::parse(&url, false), Err(Error::Config(_))));
        }
        let e = Target::parse("mysql://u@h/db", false).unwrap_err();
        assert!(matches!(e, Error::Config(_)));
        let e = Target::parse(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn pgpass_fields_unescape() {
        assert_eq!(
            split_pgpass(r"h:5432:*:u:pa\:ss\\w:rd"),
            ["h", "5432", "*", "u", r"pa:ss\w:rd"]
        );
    }

    #[test]
    fn redaction_drops_the_password() {
        assert_eq!(redact("postgres://u:secret@h:1/db"), "postgres://u@h:1/db");
    }
}
