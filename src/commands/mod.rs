//! One file per verb. Each takes the run's context and its own args.

pub mod audit;
pub mod auth;
pub mod complete;
pub mod completions;
pub mod create;
pub mod dpop;
pub mod drivers;
pub mod federated;
pub mod generate;
pub mod inspect;
pub mod list;
pub mod login;
pub mod logout;
pub mod profile;
pub mod renew;
pub mod revoke;
pub mod rotate;
pub mod serve;
pub mod store;

use crate::cli::{Cli, Command, GlobalArgs, OutputFormat};
use crate::config::{self, Config, Given, Profile, Resolved, Source, Sourced};
use crate::credentials;
use crate::drivers::http_client::HttpSettings;
use crate::drivers::{
    local::Local, DriverError, DriverKind, Gateway, Opening, Scope, Settings, Warn,
};
use crate::duration::Ttl;
use crate::error::{self, UserError};
use crate::model::Created;
use crate::output::{self, Out};
use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use std::io::Write;
use std::path::PathBuf;

/// The default lifetime of a token created without --ttl or a profile default.
pub const DEFAULT_TTL: Ttl = Ttl::from_secs(3600);

/// Everything a command needs: resolved options, the profile, output settings.
pub struct Ctx {
    pub global: GlobalArgs,
    pub matches: ArgMatches,
    pub config: Config,
    pub profile_name: Option<String>,
    pub profile: Profile,
    pub out: Out,
    /// Which gateway, resolved once, with the source of each part.
    pub resolved: Resolved,
    /// Where the credential in use came from and where it goes, once a
    /// network driver is opened; errors name it.
    pub credential_note: std::cell::RefCell<Option<(credentials::Source, String)>>,
}

/// Parses argv, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    crate::completion::handle_env();
    let args = match error::bounded_args(std::env::args_os()) {
        Ok(args) => args,
        Err(e) => return error::report(&e.into(), None),
    };
    if args.len() == 3 && args[1] == "help" && args[2] == "exit-codes" {
        println!("{}", crate::cli::EXIT_CODES_HELP);
        return error::exit::SUCCESS;
    }
    let matches = match crate::help::command_for(&args).try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => return usage_error(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let mut out = Out::new(
        cli.global.output,
        cli.global.color,
        cli.global.quiet,
        cli.global.verbose,
    );
    out.format_from_env = source_of(&matches, "output") == Some(ValueSource::EnvVariable);
    if let Some(j) = cli.command.json_args() {
        out.fields = j.fields.clone();
        out.jq = j.jq.clone();
    }
    let ctx = match check_json_flags(&out).and_then(|()| Ctx::new(cli.global, matches, out)) {
        Ok(ctx) => ctx,
        Err(e) => return error::report(&e, None),
    };
    match run(&ctx, cli.command) {
        Ok(()) => error::exit::SUCCESS,
        Err(e) => error::report(&e, Some(&ctx.sources())),
    }
}

/// Prints clap's error (help and version go to stdout and exit 0), never
/// echoing a huge argument whole, and with a tip for gh's `--json`/`--jq`
/// habits on a command that has neither.
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !e.use_stderr() {
        let _ = e.print();
        return error::exit::SUCCESS;
    }
    let text = e.render().to_string();
    let _ = write!(std::io::stderr(), "{}", error::shorten_words(&text));
    let json_flag = e.kind() == ErrorKind::UnknownArgument
        && matches!(e.get(ContextKind::InvalidArg), Some(ContextValue::String(a))
            if a.starts_with("--json") || a.starts_with("--jq"));
    if json_flag {
        let _ = writeln!(
            std::io::stderr(),
            "\ntip: this command has no --json or --jq; use -o json (list, inspect, audit, drivers, profile list and auth status have --json FIELDS and --jq EXPR)"
        );
    }
    e.exit_code()
}

/// Where the value of global option `id` came from: the command line beats
/// the environment, wherever on the line it was typed.
pub fn source_of(matches: &ArgMatches, id: &str) -> Option<ValueSource> {
    let mut best = None;
    let mut m = Some(matches);
    while let Some(cur) = m {
        if let Ok(Some(src)) = cur.try_get_raw(id).map(|v| v.and(cur.value_source(id))) {
            if best.is_none_or(|b| src > b) {
                best = Some(src);
            }
        }
        m = cur.subcommand().map(|(_, sub)| sub);
    }
    best
}

/// `--json` and `--jq` print JSON: with `-o` typed as anything else, the
/// user meant two things at once.
fn check_json_flags(out: &Out) -> Result<()> {
    let json = out.fields.is_some() || out.jq.is_some();
    let other = !matches!(
        out.format,
        None | Some(OutputFormat::Json | OutputFormat::Jsonl)
    );
    if json && other && !out.format_from_env {
        return Err(
            UserError::usage("--json and --jq print JSON, not another -o format")
                .hint("drop -o, or use -o json or -o jsonl with them")
                .into(),
        );
    }
    Ok(())
}

fn run(ctx: &Ctx, command: Command) -> Result<()> {
    match command {
        Command::Create(a) => create::run(ctx, a),
        Command::List(a) => list::run(ctx, a),
        Command::Inspect(a) => inspect::run(ctx, a),
        Command::Revoke(a) => revoke::run(ctx, a),
        Command::Rotate(a) => rotate::run(ctx, a),
        Command::Renew(a) => renew::run(ctx, a),
        Command::Profile(c) => profile::run(ctx, c),
        Command::Drivers(a) => drivers::run(ctx, a),
        Command::Login(a) => login::run(ctx, a),
        Command::Logout(a) => logout::run(ctx, a),
        Command::Auth(c) => auth::run(ctx, c),
        Command::Dpop(c) => dpop::run(ctx, c),
        Command::Serve(a) => serve::run(ctx, *a),
        Command::Audit(a) => audit::run(ctx, a),
        Command::Store(c) => store::run(ctx, c),
        Command::Completions(a) => completions::run(ctx, a),
        Command::Generate(a) => generate::run(ctx, a),
        Command::Complete(a) => complete::run(ctx, a),
    }
}

impl Ctx {
    pub fn new(global: GlobalArgs, matches: ArgMatches, out: Out) -> Result<Ctx> {
        let config = Config::load()?;
        let profile_name = global
            .profile
            .clone()
            .or_else(|| config.default_profile.clone());
        let profile = match &profile_name {
            Some(name) => config
                .profile(name)
                .map_err(|e| {
                    // Name where the profile's name came from.
                    let from = match source_of(&matches, "profile") {
                        Some(ValueSource::CommandLine) => "--profile".to_string(),
                        Some(ValueSource::EnvVariable) => crate::env::PROFILE.to_string(),
                        _ => format!(
                            "default_profile in {}",
                            Config::path()
                                .map(|p| p.display().to_string())
                                .unwrap_or_default()
                        ),
                    };
                    e.context(format!(
                        "profile `{name}` (from {from}) is not in the config"
                    ))
                })?
                .clone(),
            None => Profile::default(),
        };
        let view = Ctx::view(global, matches, config, profile_name, profile, out);
        Ok(view)
    }

    /// A context for `profile` with these options: `tok auth status` checks
    /// each profile through one.
    pub fn view(
        global: GlobalArgs,
        matches: ArgMatches,
        config: Config,
        profile_name: Option<String>,
        profile: Profile,
        out: Out,
    ) -> Ctx {
        let resolved = resolve(&global, &matches, &config, &profile);
        Ctx {
            global,
            matches,
            config,
            profile_name,
            profile,
            out,
            resolved,
            credential_note: Default::default(),
        }
    }

    /// What this run talks to, and whence, for an error report.
    pub fn sources(&self) -> error::Sources {
        error::Sources {
            target: self.resolved.describe(),
            credential: self.credential_note.borrow().clone(),
        }
    }

    pub fn url(&self) -> Option<&str> {
        self.resolved.url.as_ref().map(|u| u.value.as_str())
    }

    /// flag > environment > profile; with no driver named, a URL means tok
    /// and a data directory the local driver (see `Resolved::new`).
    pub fn driver_kind(&self) -> DriverKind {
        self.resolved.driver.value
    }

    pub fn data_dir(&self) -> Result<PathBuf> {
        match &self.resolved.data_dir {
            Some(d) => Ok(d.value.clone()),
            None => config::default_data_dir(),
        }
    }

    /// Refuses settings that contradict each other, before a driver opens.
    fn check_conflict(&self) -> Result<()> {
        match &self.resolved.conflict {
            Some((msg, hint)) => Err(UserError::usage(msg.clone()).hint(hint.clone()).into()),
            None => Ok(()),
        }
    }

    pub fn default_ttl(&self) -> Result<Ttl> {
        match &self.profile.default_ttl {
            None => Ok(DEFAULT_TTL),
            Some(s) => s.parse().map_err(|e| {
                UserError::usage(format!(
                    "profile `{}` has a bad default_ttl: {e}",
                    self.profile_name.as_deref().unwrap_or("?")
                ))
                .hint("fix it with `tok profile add NAME --default-ttl 1h`")
                .into()
            }),
        }
    }

    /// The driver this run talks to.
    pub fn gateway(&self) -> Result<Box<dyn Gateway>> {
        self.check_conflict()?;
        let kind = self.driver_kind();
        self.check_owner_flags(kind)?;
        if kind == DriverKind::Local {
            let dir = self.data_dir()?;
            self.debug(format!("driver local, store {}", dir.display()));
            return Ok(Box::new(Local::open(&dir)?));
        }
        let settings = self.settings(kind)?;
        self.debug(format!(
            "driver {}, url {}, profile {}",
            kind.as_str(),
            settings.http.base_url,
            self.profile_name.as_deref().unwrap_or("-")
        ));
        self.gateway_with(kind, settings)
    }

    /// The driver `kind` with these settings (`tok login` passes the credential
    /// it is about to check).
    pub fn gateway_with(&self, kind: DriverKind, settings: Settings) -> Result<Box<dyn Gateway>> {
        let data_dir = match kind {
            DriverKind::Local => Some(self.data_dir()?),
            _ => None,
        };
        Ok(crate::drivers::open(
            kind,
            Opening {
                settings,
                data_dir,
                owner: self.global.owner.clone().or(self.profile.owner.clone()),
                app: self.global.app.clone().or(self.profile.app.clone()),
                warn: self.warner(),
            },
        )?)
    }

    /// Lets a driver pass the gateway's own warnings to stderr.
    fn warner(&self) -> Warn {
        let out = self.out.clone();
        std::sync::Arc::new(move |msg: &str| out.warn(msg))
    }

    /// A line on stderr with -v.
    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.out.verbose > 0 {
            self.out.info(format!("tok: {}", msg.as_ref()));
        }
    }

    /// `--app` and `--owner` mean something to some drivers only.
    fn check_owner_flags(&self, kind: DriverKind) -> Result<()> {
        crate::drivers::check_scopes(
            kind,
            &[
                (Scope::App, self.global.app.is_some()),
                (Scope::Owner, self.global.owner.is_some()),
            ],
        )?;
        Ok(())
    }

    /// Connection settings for a network driver: URL, TLS, timeout, credential.
    pub fn settings(&self, kind: DriverKind) -> Result<Settings> {
        self.settings_from(kind, true)
    }

    /// As `settings`, with only the credential `tok login` stored for this
    /// profile, never one from the environment: for a profile this run does
    /// not use, whose gateway the environment's credential is not meant for.
    pub fn stored_settings(&self, kind: DriverKind) -> Result<Settings> {
        self.settings_from(kind, false)
    }

    fn settings_from(&self, kind: DriverKind, env: bool) -> Result<Settings> {
        let http = self.http_settings(kind)?;
        let profile = self.profile_name.as_deref();
        let credential = if env {
            credentials::resolve(kind, profile, Some(&http.base_url))?
        } else {
            credentials::resolve_login(kind, profile, &http.base_url)?
        };
        if let Some(c) = &credential {
            *self.credential_note.borrow_mut() = Some((c.source.clone(), http.base_url.clone()));
            // From what login or auth status learnt: no request just for this.
            credentials::expiry::warn_if_expiring(
                &self.out,
                self.profile_name.as_deref(),
                &http.base_url,
                c,
            );
        }
        Ok(self.settings_with(http, credential))
    }

    /// Settings with this credential (`tok login` checks the one it was given).
    pub fn settings_with(
        &self,
        http: HttpSettings,
        credential: Option<credentials::Credential>,
    ) -> Settings {
        Settings {
            http,
            credential,
            profile: self.effective_profile(),
        }
    }

    /// The URL of the gateway this run talks to, normalised (so never with a
    /// user name or password, which are refused), or a usage error naming the
    /// ways to give one.
    pub fn require_url(&self, kind: DriverKind) -> Result<String> {
        // Vault's own VAULT_ADDR serves when tok is told nothing else.
        let vault_addr = (kind == DriverKind::Vault)
            .then(|| std::env::var(crate::env::VAULT_ADDR).ok())
            .flatten()
            .filter(|a| !a.trim().is_empty());
        let url = self
            .url()
            .map(str::to_string)
            .or(vault_addr)
            .ok_or_else(|| {
                UserError::usage(format!(
                    "the {} driver (from {}) needs a URL",
                    kind.as_str(),
                    self.resolved.driver.source
                ))
                .hint(
                    "pass --url, set TOK_URL, or add a profile with `tok profile add NAME --url URL`",
                )
            })?;
        Ok(crate::drivers::http_client::normalize_url(&url)?)
    }

    /// URL, TLS and timeout for a network driver, without its credential.
    pub fn http_settings(&self, kind: DriverKind) -> Result<HttpSettings> {
        let url = self.require_url(kind)?;
        let insecure = self.global.insecure || self.profile.insecure;
        if insecure {
            self.out.warn(format!(
                "TLS certificate verification is OFF for {url} (--insecure); anyone on the path can read and change this traffic"
            ));
        }
        let timeout = match (self.global.timeout, &self.profile.timeout) {
            (Some(t), _) => std::time::Duration::from_secs(t.as_secs()),
            (None, Some(s)) => {
                let t: Ttl = s.parse().map_err(|e| {
                    UserError::usage(format!("the profile's timeout is not a duration: {e}"))
                })?;
                std::time::Duration::from_secs(t.as_secs())
            }
            (None, None) => crate::drivers::http_client::DEFAULT_TIMEOUT,
        };
        Ok(HttpSettings {
            base_url: url,
            timeout,
            ca_cert: self.global.ca_cert.clone().or(self.profile.ca_cert.clone()),
            insecure,
        })
    }

    /// The profile with this run's driver flags (and their env twins) on top.
    fn effective_profile(&self) -> Profile {
        let g = &self.global;
        let mut p = self.profile.clone();
        if g.vault_mount.is_some() {
            p.vault_mount = g.vault_mount.clone();
        }
        if g.vault_namespace.is_some() {
            p.vault_namespace = g.vault_namespace.clone();
        }
        if g.client_id.is_some() {
            p.client_id = g.client_id.clone();
        }
        p
    }
}

/// The gateway settings of `global` and `profile`, each with its source.
fn resolve(
    global: &GlobalArgs,
    matches: &ArgMatches,
    config: &Config,
    profile: &Profile,
) -> Resolved {
    let source = |id: &str, flag: &'static str, var: &'static str| match source_of(matches, id) {
        Some(ValueSource::EnvVariable) => Source::Env(var),
        _ => Source::Flag(flag),
    };
    use crate::env;
    Resolved::new(
        Given {
            profile: global
                .profile
                .clone()
                .map(|p| Sourced::new(p, source("profile", "--profile", env::PROFILE))),
            driver: global
                .driver
                .map(|d| Sourced::new(d, source("driver", "--driver", env::DRIVER))),
            url: global
                .url
                .clone()
                .map(|u| Sourced::new(u, source("url", "--url", env::URL))),
            data_dir: global
                .data_dir
                .clone()
                .map(|d| Sourced::new(d, source("data_dir", "--data-dir", env::DATA_DIR))),
        },
        config,
        profile,
    )
}

/// Refuses, before any request, an output format that cannot carry a secret:
/// a token must never be made whose secret then has nowhere to go.
pub fn check_secret_output(ctx: &Ctx) -> Result<()> {
    if ctx.global.output == Some(OutputFormat::Tsv) {
        return Err(UserError::usage("`-o tsv` does not apply to a new secret")
            .hint("use -o json, -o env, or no -o for the secret alone")
            .into());
    }
    Ok(())
}

/// Prints a new secret (see `emit_secret`). When it cannot be written (a
/// closed pipe, a full disk), the new token is revoked rather than left alive
/// with a secret nobody has, and the error says so; it is never a quiet exit.
pub fn deliver_secret(
    ctx: &Ctx,
    gw: &dyn Gateway,
    created: &Created,
    no_newline: bool,
) -> Result<()> {
    let Err(e) = emit_secret(ctx, created, no_newline) else {
        return Ok(());
    };
    let id = &created.token.id;
    let undo = if gw.capabilities().revoke {
        gw.revoke(id, Some("its secret could not be written"))
            .is_ok()
    } else {
        false
    };
    let what = if undo {
        format!("token {id} was made but its secret could not be written, so it was revoked")
    } else {
        format!("token {id} was made but its secret could not be written; revoke it with `tok revoke {id}`")
    };
    Err(e.context(error::SecretNotDelivered).context(what))
}

/// Prints a new secret as `create` and `rotate` do: alone on stdout with one
/// newline (or none), as JSON with the token, or as a `TOK_TOKEN=` line.
pub fn emit_secret(ctx: &Ctx, created: &Created, no_newline: bool) -> Result<()> {
    check_secret_output(ctx)?;
    let secret = created.secret.expose();
    if std::env::var(crate::env::GITHUB_ACTIONS).as_deref() == Ok("true") {
        // The runner reads workflow commands from stderr too; stdout stays data.
        eprintln!("::add-mask::{secret}");
    }
    let mut stdout = std::io::stdout().lock();
    match ctx.global.output {
        None
        | Some(
            OutputFormat::Table | OutputFormat::Wide | OutputFormat::Plain | OutputFormat::Tsv,
        ) => {
            stdout.write_all(secret.as_bytes())?;
            if !no_newline {
                stdout.write_all(b"\n")?;
            }
        }
        Some(OutputFormat::Env) => writeln!(stdout, "TOK_TOKEN={secret}")?,
        Some(f @ (OutputFormat::Json | OutputFormat::Jsonl)) => {
            let mut v = serde_json::to_value(&created.token)?;
            v["secret"] = serde_json::Value::String(secret.to_string());
            if f == OutputFormat::Json {
                output::write_json_pretty(&mut stdout, &v)?;
            } else {
                output::write_json(&mut stdout, &v)?;
                writeln!(stdout)?;
            }
        }
    }
    stdout.flush().context("could not write the secret")?;
    Ok(())
}

/// Reads all of stdin, for secrets and id lists; refuses a terminal with a hint
/// unless `prompt` is given, in which case it asks without echo.
pub fn read_stdin(ctx: &Ctx, prompt: Option<&str>) -> Result<String> {
    use std::io::Read;
    if ctx.out.stdin_tty {
        if let (Some(p), true) = (prompt, ctx.out.stderr_tty) {
            return Ok(dialoguer::Password::new()
                .with_prompt(p)
                .allow_empty_password(false)
                .interact()?);
        }
        return Err(
            UserError::usage("`-` reads from stdin, but stdin is a terminal")
                .hint("pipe the input in, e.g. `printf %s \"$TOKEN\" | tok inspect -`")
                .into(),
        );
    }
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("could not read stdin")?;
    Ok(crate::text::utf8_text(buf, "stdin")?)
}

/// Maps a driver error to anyhow with context, keeping its kind for the exit code.
pub fn driver<T>(r: Result<T, DriverError>, what: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| anyhow::Error::new(e).context(what()))
}
