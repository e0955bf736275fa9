//! Profiles in `$XDG_CONFIG_HOME/tok/config.toml` (`TOK_CONFIG_DIR` overrides),
//! the data directory of the embedded store, and the run's settings resolved
//! once from flags, environment and profile ([`Resolved`]), each remembering
//! where it came from so that an error can say "from TOK_URL" or "from
//! profile `prod`" (ripgrep's lowargs → hiargs shape).

use crate::error::UserError;
use crate::registry::DriverKind;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.toml";

/// Where a setting came from, strongest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Typed on the command line (the flag's name).
    Flag(&'static str),
    /// An environment variable (its name).
    Env(&'static str),
    /// A profile, and whether it is in use because it is the default one.
    Profile { name: String, default: bool },
    /// tok's own default.
    Default,
}

impl Source {
    /// Flag > environment > profile > default.
    fn rank(&self) -> u8 {
        match self {
            Source::Flag(_) => 3,
            Source::Env(_) => 2,
            Source::Profile { .. } => 1,
            Source::Default => 0,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "{flag}"),
            Source::Env(var) => write!(f, "{var}"),
            Source::Profile {
                name,
                default: true,
            } => write!(f, "profile `{name}` (the default profile)"),
            Source::Profile { name, .. } => write!(f, "profile `{name}`"),
            Source::Default => write!(f, "tok's default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    pub fn new(value: T, source: Source) -> Self {
        Sourced { value, source }
    }
}

/// Which gateway this run talks to, decided once before any command runs.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The profile in use: from --profile, TOK_PROFILE or the config's default.
    pub profile: Option<Sourced<String>>,
    pub driver: Sourced<DriverKind>,
    pub url: Option<Sourced<String>>,
    /// The local store's directory when given; else `default_data_dir()`.
    pub data_dir: Option<Sourced<PathBuf>>,
    /// Settings that contradict each other; refused when a driver is opened
    /// (so that `tok serve --data-dir` and `tok profile add` still work).
    pub conflict: Option<(String, String)>,
}

/// The global options that choose the gateway, with the source clap saw for
/// each (flag or environment variable).
pub struct Given {
    pub profile: Option<Sourced<String>>,
    pub driver: Option<Sourced<DriverKind>>,
    pub url: Option<Sourced<String>>,
    pub data_dir: Option<Sourced<PathBuf>>,
}

impl Resolved {
    /// Resolves the gateway settings: flag > environment > profile > default.
    ///
    /// With no driver named, a URL means the tok driver and a data directory
    /// the local one; when both are given, the stronger source wins
    /// (`--data-dir` typed beats `TOK_URL` from the environment), and two of
    /// the same strength are refused.
    pub fn new(given: Given, config: &Config, profile: &Profile) -> Resolved {
        let profile_name = given.profile.clone().or_else(|| {
            config.default_profile.clone().map(|n| {
                Sourced::new(
                    n.clone(),
                    Source::Profile {
                        name: n,
                        default: true,
                    },
                )
            })
        });
        let from_profile = || match &profile_name {
            Some(p) => Source::Profile {
                name: p.value.clone(),
                default: matches!(p.source, Source::Profile { .. }),
            },
            None => Source::Default,
        };
        let url = given
            .url
            .or_else(|| profile.url.clone().map(|u| Sourced::new(u, from_profile())));
        let data_dir = given.data_dir.or_else(|| {
            profile
                .data_dir
                .clone()
                .map(|d| Sourced::new(d, from_profile()))
        });
        let driver = given
            .driver
            .or_else(|| profile.driver.map(|d| Sourced::new(d, from_profile())));
        let mut conflict = None;
        let driver = match driver {
            Some(d) => {
                if let Some(dir) = data_dir
                    .as_ref()
                    .filter(|d| matches!(d.source, Source::Flag(_)))
                {
                    if d.value != DriverKind::Local {
                        conflict = Some((
                            format!(
                                "{} is for the local driver, but the driver is {} (from {})",
                                dir.source,
                                d.value.as_str(),
                                d.source
                            ),
                            "drop --data-dir, or pass --driver local".to_string(),
                        ));
                    }
                }
                d
            }
            None => match (&url, &data_dir) {
                (None, None) => Sourced::new(DriverKind::Local, Source::Default),
                (Some(u), None) => Sourced::new(DriverKind::Tok, u.source.clone()),
                (None, Some(d)) => Sourced::new(DriverKind::Local, d.source.clone()),
                (Some(u), Some(d)) if d.source.rank() > u.source.rank() => {
                    Sourced::new(DriverKind::Local, d.source.clone())
                }
                (Some(u), Some(d)) => {
                    if u.source.rank() == d.source.rank() && u.source.rank() >= 2 {
                        conflict = Some((
                            format!(
                                "both a URL (from {}) and a data directory (from {}) are given: the first means the tok server there, the second the local store",
                                u.source, d.source
                            ),
                            "give one of them, or name the driver with --driver".to_string(),
                        ));
                    }
                    Sourced::new(DriverKind::Tok, u.source.clone())
                }
            },
        };
        Resolved {
            profile: profile_name,
            driver,
            url,
            data_dir,
            conflict,
        }
    }

    /// What this run talks to and where each part came from, for errors:
    /// "URL https://… from profile `prod` (the default profile)".
    pub fn describe(&self) -> String {
        match (&self.driver.value, &self.url) {
            (DriverKind::Local, _) => match &self.data_dir {
                Some(d) => format!(
                    "the local store in {} (from {})",
                    d.value.display(),
                    d.source
                ),
                None => "the local store in the default data directory".to_string(),
            },
            (kind, Some(u)) => format!(
                "the {} driver (from {}) at {} (URL from {})",
                kind.as_str(),
                self.driver.source,
                crate::url::display(&u.value),
                u.source
            ),
            (kind, None) => format!("the {} driver (from {})", kind.as_str(), self.driver.source),
        }
    }
}

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The profile used when neither `--profile` nor `TOK_PROFILE` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    #[serde(default, rename = "profile")]
    pub profiles: BTreeMap<String, Profile>,
}

/// One named gateway and its settings. Holds no secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Lifetime of a token created without --ttl, --expires-at or --no-expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ttl: Option<String>,
    /// Where the `local` driver keeps its store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// A PEM file of extra CA certificates to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// Skip TLS verification (tok warns every time).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// Request timeout, as a duration (`30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The APIPark app (its id) whose keys tok manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The Kong or APISIX consumer that new keys belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// vault: where token auth is mounted [default: auth/token].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_mount: Option<String>,
    /// vault: the Enterprise namespace (sent as X-Vault-Namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_namespace: Option<String>,
    /// oauth2: the client id; its secret goes through the credential path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// oauth2: endpoints, when the server offers no discovery document (or
    /// to override it). `url` is the issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
}

/// The config directory: `TOK_CONFIG_DIR`, else `$XDG_CONFIG_HOME/tok`.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(d) = non_empty_env(crate::env::CONFIG_DIR) {
        return Ok(PathBuf::from(d));
    }
    xdg_dir("XDG_CONFIG_HOME", ".config", dirs::config_dir)
}

/// The default data directory, `$XDG_DATA_HOME/tok` (`--data-dir` and
/// `TOK_DATA_DIR`, resolved by clap, and a profile's `data_dir` come first).
pub fn default_data_dir() -> Result<PathBuf> {
    xdg_dir("XDG_DATA_HOME", ".local/share", dirs::data_dir)
}

/// The cache directory, for completion caches: `$XDG_CACHE_HOME/tok`.
pub fn cache_dir() -> Result<PathBuf> {
    xdg_dir("XDG_CACHE_HOME", ".cache", dirs::cache_dir)
}

/// XDG rules on every Unix (the variable, else `~/<fallback>`), the platform's
/// own place elsewhere.
fn xdg_dir(var: &str, fallback: &str, platform: fn() -> Option<PathBuf>) -> Result<PathBuf> {
    let base = if cfg!(unix) {
        match non_empty_env(var) {
            Some(v) if Path::new(&v).is_absolute() => Some(PathBuf::from(v)),
            _ => dirs::home_dir().map(|h| h.join(fallback)),
        }
    } else {
        platform()
    };
    base.map(|b| b.join("tok")).ok_or_else(|| {
        UserError::usage(format!("cannot find a home directory for {var}"))
            .hint(format!("set HOME or {var}"))
            .into()
    })
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    pub fn path() -> Result<PathBuf> {
        Ok(config_dir()?.join(CONFIG_FILE))
    }

    /// Loads the config; a missing file is an empty config.
    pub fn load() -> Result<Config> {
        let path = Self::path()?;
        Self::load_from(&path)
    }

    pub fn load_from(path: &Path) -> Result<Config> {
        let text = match std::fs::read(path) {
            Ok(t) => crate::text::utf8_text(t, &path.display().to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
        };
        toml::from_str(&text).map_err(|e| {
            UserError::usage(format!("{} is not a valid tok config: {e}", path.display()))
                .hint("fix the file, or remove it and add profiles again with `tok profile add`")
                .into()
        })
    }

    /// Writes the config atomically (temp file + rename), 0600 in a 0700 dir.
    pub fn save(&self) -> Result<()> {
        let path = Self::path()?;
        let text = toml::to_string_pretty(self).context("could not serialize the config")?;
        write_private_atomic(&path, text.as_bytes())
    }

    pub fn profile(&self, name: &str) -> Result<&Profile> {
        self.profiles.get(name).ok_or_else(|| {
            UserError::new(
                crate::error::Kind::NotFound,
                format!("no profile named `{name}`"),
            )
            .hint("run `tok profile list` to see the profiles, or `tok profile add` to make one")
            .into()
        })
    }
}

/// Creates `dir` (and its parents) when missing; the directory tok creates is
/// 0700. An existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` so that readers see the old file or the new one,
/// never half of one; the file is 0600 and its directory 0700 when created.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .context("a file path without a parent directory")?;
    create_private_dir(dir).with_context(|| format!("could not create {}", dir.display()))?;
    // tempfile creates 0600 files on Unix.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("could not write in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("could not replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given() -> Given {
        Given {
            profile: None,
            driver: None,
            url: None,
            data_dir: None,
        }
    }

    #[test]
    fn the_stronger_source_picks_the_store() {
        let url = |src| Some(Sourced::new("http://127.0.0.1:1".to_string(), src));
        let dir = |src| Some(Sourced::new(PathBuf::from("./srv"), src));
        let c = Config::default();
        let p = Profile::default();
        // --data-dir typed beats TOK_URL from the environment.
        let r = Resolved::new(
            Given {
                url: url(Source::Env("TOK_URL")),
                data_dir: dir(Source::Flag("--data-dir")),
                ..given()
            },
            &c,
            &p,
        );
        assert_eq!(r.driver.value, DriverKind::Local);
        assert_eq!(r.driver.source, Source::Flag("--data-dir"));
        assert!(r.conflict.is_none());
        // Both typed: refused, naming both.
        let r = Resolved::new(
            Given {
                url: url(Source::Flag("--url")),
                data_dir: dir(Source::Flag("--data-dir")),
                ..given()
            },
            &c,
            &p,
        );
        let (msg, _) = r.conflict.unwrap();
        assert!(msg.contains("--url") && msg.contains("--data-dir"), "{msg}");
        // A profile's URL and the default: the tok driver, from the profile.
        let c = Config {
            default_profile: Some("prod".into()),
            ..Config::default()
        };
        let p = Profile {
            url: Some("https://tok.example".into()),
            ..Profile::default()
        };
        let r = Resolved::new(given(), &c, &p);
        assert_eq!(r.driver.value, DriverKind::Tok);
        assert_eq!(
            r.url.unwrap().source.to_string(),
            "profile `prod` (the default profile)"
        );
        // --driver vault with --data-dir typed: refused.
        let r = Resolved::new(
            Given {
                driver: Some(Sourced::new(DriverKind::Vault, Source::Flag("--driver"))),
                data_dir: dir(Source::Flag("--data-dir")),
                ..given()
            },
            &Config::default(),
            &Profile::default(),
        );
        assert!(r.conflict.unwrap().0.contains("local driver"));
    }

    #[test]
    fn round_trips_and_rejects_unknown_keys() {
        let mut c = Config::default();
        c.profiles.insert(
            "prod".into(),
            Profile {
                driver: Some(DriverKind::Tok),
                url: Some("https://tok.example".into()),
                default_ttl: Some("15m".into()),
                ..Profile::default()
            },
        );
        let text = toml::to_string_pretty(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
        assert!(toml::from_str::<Config>("[profile.x]\ndrvier = 'tok'\n").is_err());
    }
}
