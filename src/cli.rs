//! clap types only: the command tree, global options and each command's args.

use crate::completion;
use crate::drivers::DriverKind;
use crate::duration::Ttl;
use crate::env;
use crate::model::StateFilter;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::engine::ArgValueCompleter;
use std::net::SocketAddr;
use std::path::PathBuf;

pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success (an empty list included)
  1  failure
  2  usage error: a bad flag, value or input
  3  not found: no token, profile or file by that name
  4  authentication failed: a missing, wrong or expired credential
  5  partial failure: some items of a bulk operation failed
  6  unsupported: the driver cannot do this
  7  cancelled: the answer at a prompt was no";

/// Where `tok --help` points for the exit codes.
const EXIT_CODES_POINTER: &str = "Exit codes: run `tok help exit-codes` (and see man tok).";

/// Create, list, inspect, revoke and rotate bearer tokens
///
/// With nothing configured, tok keeps tokens in an embedded store in your data
/// directory; profiles and --url point it at a tok server.
#[derive(Debug, Parser)]
#[command(name = "tok", version, propagate_version = true, after_long_help = EXIT_CODES_POINTER)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Use this profile from the config file.
    #[arg(long, global = true, env = env::PROFILE, value_name = "NAME",
          add = ArgValueCompleter::new(completion::profile_name))]
    pub profile: Option<String>,

    /// Which gateway driver to use [default: local, or tok when --url is given].
    #[arg(long, global = true, env = env::DRIVER, value_enum)]
    pub driver: Option<DriverKind>,

    /// URL of the gateway's admin API, Vault's address, or the OAuth 2 issuer
    /// (implies the tok driver when no driver is named).
    #[arg(long, global = true, env = env::URL)]
    pub url: Option<String>,

    /// Where the local driver keeps its store [default: $XDG_DATA_HOME/tok].
    #[arg(long, global = true, env = env::DATA_DIR, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Output format [default: a table on a terminal, plain rows otherwise; the secret alone for create].
    #[arg(short, long, global = true, env = env::OUTPUT, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,

    /// When to use colour.
    #[arg(long, global = true, env = env::COLOR, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Print nothing on stderr but errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say more on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Trust the CA certificates in this PEM file too.
    #[arg(long, global = true, env = env::CA_CERT, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Do not verify TLS certificates (dangerous; tok warns every time).
    #[arg(long, global = true)]
    pub insecure: bool,

    /// Give up on a gateway request after this long.
    #[arg(long, global = true, env = env::TIMEOUT, value_name = "DURATION")]
    pub timeout: Option<Ttl>,

    /// apipark: the app (its id) whose keys to manage.
    #[arg(long, global = true, env = env::APP, value_name = "APP_ID", help_heading = "Driver options")]
    pub app: Option<String>,

    /// kong, apisix: the consumer that keys belong to; new keys go to it, and
    /// list shows only its keys.
    #[arg(long, global = true, env = env::OWNER, value_name = "CONSUMER", help_heading = "Driver options")]
    pub owner: Option<String>,

    /// vault: where token auth is mounted [default: auth/token].
    #[arg(long, global = true, env = env::VAULT_MOUNT, value_name = "PATH", help_heading = "Driver options")]
    pub vault_mount: Option<String>,

    /// vault: the namespace to work in (OpenBao, Vault Enterprise).
    #[arg(long, global = true, env = env::VAULT_NAMESPACE, value_name = "NS", help_heading = "Driver options")]
    pub vault_namespace: Option<String>,

    /// oauth2: the client id (its secret comes from TOK_CLIENT_SECRET).
    #[arg(long, global = true, env = env::CLIENT_ID, value_name = "ID", help_heading = "Driver options")]
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people, fitted to the terminal, with relative times.
    Table,
    /// A table with every column, not fitted.
    Wide,
    /// Aligned rows with exact (RFC 3339) times: the default off a terminal.
    Plain,
    /// JSON: an object, or an array for lists (schema: docs/json-output.md).
    Json,
    /// One JSON object per line, streamed.
    Jsonl,
    /// Tab-separated values with a header row.
    Tsv,
    /// `NAME=value` lines: `TOK_TOKEN=...` for `>> $GITHUB_ENV` (create,
    /// rotate), `TOK_ID=...` and more for inspect.
    Env,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless NO_COLOR is set.
    Auto,
    /// Always colour (tables only; JSON is never coloured).
    Always,
    /// Never colour.
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Create(CreateArgs),
    List(ListArgs),
    Inspect(InspectArgs),
    Revoke(RevokeArgs),
    Rotate(RotateArgs),
    Renew(RenewArgs),
    #[command(subcommand)]
    Profile(ProfileCommand),
    Drivers(DriversArgs),
    Login(LoginArgs),
    Logout(LogoutArgs),
    #[command(subcommand)]
    Auth(AuthCommand),
    #[command(subcommand)]
    Dpop(DpopCommand),
    Serve(Box<ServeArgs>),
    Audit(AuditArgs),
    #[command(subcommand)]
    Store(StoreCommand),
    Completions(CompletionsArgs),
    #[command(name = "__generate", hide = true)]
    Generate(GenerateArgs),
    #[command(name = "__complete", hide = true)]
    Complete(CompleteArgs),
}

/// Create a token and print its secret on stdout
///
/// The secret is printed once, alone, followed by a newline; a summary (id,
/// expiry in UTC) goes to stderr. The store keeps only a hash of the secret.
///
/// Examples:
///   tok create --ttl 15m --scope orders:read
///   TOKEN=$(tok create --ttl 10m --name deploy-$RUN_ID)
///   tok create --ttl 1h -o env >> "$GITHUB_ENV"
///   tok create --expires-at 2030-01-01T00:00:00Z --label team=payments
///   tok create --ttl 10m --single-use --rate 10/s --allow-ip 10.8.0.0/16   # a CI job's token
///   TOKEN=$(tok create --federated --ttl 10m --scope deploy)   # CI job, no admin credential
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CreateArgs {
    /// Lifetime, with units s, m, h, d, w (15m, 1h30m) [default: 1h, or the profile's default_ttl].
    #[arg(long, value_name = "DURATION", group = "lifetime")]
    pub ttl: Option<Ttl>,

    /// Expiry time, RFC 3339 (2030-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time, group = "lifetime")]
    pub expires_at: Option<DateTime<Utc>>,

    /// Make a token that never expires (only when asked for).
    #[arg(long, group = "lifetime")]
    pub no_expiry: bool,

    /// A scope the token grants (repeatable).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,

    /// A key=value label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// A name for people and filters (need not be unique).
    #[arg(long)]
    pub name: Option<String>,

    /// A longer description.
    #[arg(long)]
    pub description: Option<String>,

    /// How many times the token may be used.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "single_use")]
    pub uses: Option<u64>,

    /// The token may be used once (same as --uses 1).
    #[arg(long)]
    pub single_use: bool,

    /// Requests per second, minute or hour the proxy lets through: N/s, N/m, N/h (docs/reuse.md).
    #[arg(long, value_name = "N/UNIT", help_heading = "Limits")]
    pub rate: Option<crate::limits::RateArg>,

    /// How many requests may arrive at once under --rate [default: N of the rate].
    #[arg(long, value_name = "N", requires = "rate", value_parser = clap::value_parser!(u64).range(1..=crate::limits::MAX_COUNT as i64 as u64), help_heading = "Limits")]
    pub burst: Option<u64>,

    /// Requests the proxy lets through per period, counted from creation: N/PERIOD (10000/30d).
    #[arg(long, value_name = "N/PERIOD", help_heading = "Limits")]
    pub quota: Option<crate::limits::Quota>,

    /// Admit the token only from this client address range, IPv4 or IPv6 (repeatable; CIDR or one address).
    #[arg(long = "allow-ip", value_name = "CIDR", value_parser = crate::limits::parse_cidr, help_heading = "Limits")]
    pub allow_ip: Vec<ipnet::IpNet>,

    /// Bind the token to a DPoP key by its RFC 7638 thumbprint (as `tok dpop keygen` prints).
    #[arg(
        long = "dpop-jkt",
        value_name = "THUMBPRINT",
        help_heading = "Limits",
        conflicts_with = "dpop_key"
    )]
    pub dpop_jkt: Option<String>,

    /// Bind the token to the DPoP key in FILE: a public JWK or PEM public key, P-256 or Ed25519.
    #[arg(long = "dpop-key", value_name = "FILE", help_heading = "Limits")]
    pub dpop_key: Option<std::path::PathBuf>,

    /// Do not print a newline after the secret.
    #[arg(long)]
    pub no_newline: bool,

    /// Trade this CI job's OIDC ID token for the token at a tok serve, with no
    /// admin credential: github, gitlab, file:PATH or env:NAME; alone, detect the platform (docs/federation.md).
    #[arg(long, value_name = "SOURCE", num_args = 0..=1, default_missing_value = "auto",
          conflicts_with_all = ["expires_at", "no_expiry", "name", "description", "labels"],
          help_heading = "Federation")]
    pub federated: Option<crate::commands::federated::IdTokenSource>,

    /// With --federated github: the audience to ask GitHub for [default: the one the server names].
    #[arg(
        long,
        value_name = "AUD",
        requires = "federated",
        help_heading = "Federation"
    )]
    pub audience: Option<String>,
}

/// `--json FIELDS` and `--jq EXPR`, as gh has them, on every command that
/// lists or shows records.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "JSON")]
pub struct JsonArgs {
    /// Print JSON with only these fields (comma-separated; give none to list them).
    #[arg(long = "json", value_name = "FIELDS", value_delimiter = ',', num_args = 0..=1)]
    pub fields: Option<Vec<String>>,

    /// Filter the JSON through this jq program (e.g. '.[].id').
    #[arg(long, value_name = "EXPR")]
    pub jq: Option<String>,
}

/// The filters shared by `list` and bulk `revoke`.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Tokens whose name matches this glob (`deploy-*`).
    #[arg(long, value_name = "GLOB", value_parser = parse_name_glob)]
    pub name: Option<String>,

    /// Tokens with this label (repeatable; all must match).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Tokens that carry this scope (repeatable; all must match).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,

    /// Active tokens that expire within this long.
    #[arg(long, value_name = "DURATION")]
    pub expiring_within: Option<Ttl>,

    /// Tokens created by this principal.
    #[arg(long, value_name = "WHO")]
    pub created_by: Option<String>,
}

impl FilterArgs {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.labels.is_empty()
            && self.scopes.is_empty()
            && self.expiring_within.is_none()
            && self.created_by.is_none()
    }
}

/// List tokens (active ones unless --state says otherwise)
///
/// Never shows a secret: the fingerprint column identifies a token safely.
///
/// Examples:
///   tok list
///   tok list --state all --name 'deploy-*'
///   tok list --expiring-within 24h -o json
///   tok list --label team=payments -o tsv | cut -f1
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ListArgs {
    /// Which states to show.
    #[arg(long, value_enum, default_value_t = StateFilter::Active)]
    pub state: StateFilter,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Show at most this many tokens.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,

    #[command(flatten)]
    pub json: JsonArgs,
}

/// Show every field of a token, by id, id prefix, or secret on stdin
///
/// A secret is never taken from the command line: pass `-` and pipe it in.
/// A JWT on stdin is decoded offline; its signature is not verified.
///
/// Examples:
///   tok inspect tk_3f9a2c
///   tok inspect 3f9            # a unique prefix will do
///   printf %s "$TOKEN" | tok inspect -
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct InspectArgs {
    /// Token id, unique id prefix, or `-` to read a secret from stdin.
    #[arg(value_name = "ID|-", add = ArgValueCompleter::new(completion::any_token_id))]
    pub id: String,

    #[command(flatten)]
    pub json: JsonArgs,
}

/// Revoke tokens by id, by secret on stdin, or by filter
///
/// Asks for confirmation on a terminal; elsewhere --yes is required. Revoking
/// a revoked token succeeds and says so.
///
/// Examples:
///   tok revoke tk_3f9a2c --reason "leaked in a log"
///   printf %s "$TOKEN" | tok revoke - --yes
///   tok revoke --name 'deploy-*' --dry-run
///   tok revoke --label env=ci --yes
///   tok revoke --state expired --created-by local:ci --yes
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RevokeArgs {
    /// Token ids or prefixes; `-` reads ids or secrets from stdin, one per line.
    #[arg(value_name = "ID|-", add = ArgValueCompleter::new(completion::active_token_id))]
    pub ids: Vec<String>,

    /// With filters: tokens in this state [default: active].
    #[arg(long, value_enum)]
    pub state: Option<StateFilter>,

    #[command(flatten)]
    pub filter: FilterArgs,

    /// Show what would be revoked, and revoke nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,

    /// Why the tokens are revoked (kept with them).
    #[arg(long)]
    pub reason: Option<String>,

    #[command(flatten)]
    pub json: JsonArgs,
}

/// Replace a token with a new one of the same name, scopes, labels and lifetime
///
/// The new secret is printed as `create` prints it. The old token is revoked
/// at once, or stays valid for --grace so that clients can switch over.
///
/// Examples:
///   tok rotate tk_3f9a2c
///   NEW=$(tok rotate tk_3f9a2c --grace 10m)
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RotateArgs {
    /// Token id or unique id prefix.
    #[arg(add = ArgValueCompleter::new(completion::active_token_id))]
    pub id: String,

    /// Keep the old token valid this much longer.
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<Ttl>,

    /// Do not print a newline after the secret.
    #[arg(long)]
    pub no_newline: bool,
}

/// Extend a live token's lifetime, on gateways that can (vault, apipark, kong, apisix, tyk)
///
/// The token keeps its secret; the gateway sets its new expiry, at most its
/// maximum lifetime (a capped renewal is reported on stderr). Prints the
/// token's new state with -o json, jsonl or tsv.
///
/// Examples:
///   tok --driver vault renew 3LHw5AbKm9q0Lq8jXkTfJ7xN --increment 1h
///   tok renew 3LHw --increment 30m -o json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RenewArgs {
    /// Token id or unique id prefix.
    #[arg(add = ArgValueCompleter::new(completion::active_token_id))]
    pub id: String,

    /// The new lifetime, counted from now [default: the gateway's, e.g. the token's original TTL].
    #[arg(long, value_name = "DURATION")]
    pub increment: Option<Ttl>,
}

/// Manage profiles: named gateways with their settings.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    Add(ProfileAddArgs),
    /// List the profiles; `*` marks the default one
    ///
    /// Examples:
    ///   tok profile list
    ///   tok profile list -o json
    #[command(verbatim_doc_comment)]
    List(ProfileListArgs),
    /// Show a profile's settings (a profile holds no secret)
    ///
    /// Examples:
    ///   tok profile show prod
    ///   tok profile show prod -o json
    #[command(verbatim_doc_comment)]
    Show(ProfileNameArg),
    /// Remove a profile from the config file
    ///
    /// Examples:
    ///   tok profile remove staging
    #[command(verbatim_doc_comment)]
    Remove(ProfileNameArg),
    Use(ProfileUseArgs),
}

/// Make a profile the default, or (with --none) have no default
///
/// The default profile is used when neither --profile nor TOK_PROFILE names
/// one. With no default, tok uses the local store (or --url / TOK_URL).
///
/// Examples:
///   tok profile use prod
///   tok profile use --none
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
#[group(required = true, multiple = false)]
pub struct ProfileUseArgs {
    /// The profile to use by default.
    #[arg(add = ArgValueCompleter::new(completion::profile_name))]
    pub name: Option<String>,

    /// Clear the default profile.
    #[arg(long)]
    pub none: bool,
}

/// Add or replace a profile.
///
/// The profile takes the global options given on this command line: --driver,
/// --url, --data-dir, --timeout, --ca-cert, --insecure, --vault-mount,
/// --vault-namespace, --client-id, --app and --owner (never from the
/// environment, so a stray TOK_URL does not end up in the file). Secrets never
/// go in a profile.
///
/// Examples:
///   tok profile add dev --driver local --data-dir ~/tok-dev --default-ttl 15m
///   tok profile add prod --url https://tok.example.com --default
///   tok profile add bao --driver vault --url https://bao.example:8200
///   tok profile add idp --driver oauth2 --url https://idp.example --client-id ci
///   tok profile add gw --driver apipark --url https://apipark.example --app 9f1c...
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ProfileAddArgs {
    pub name: String,
    /// Lifetime of tokens created without --ttl.
    #[arg(long, value_name = "DURATION")]
    pub default_ttl: Option<Ttl>,
    /// Make this the default profile.
    #[arg(long)]
    pub default: bool,
    /// oauth2: the token endpoint, instead of discovery.
    #[arg(long, value_name = "URL")]
    pub token_endpoint: Option<String>,
    /// oauth2: the RFC 7662 introspection endpoint, instead of discovery.
    #[arg(long, value_name = "URL")]
    pub introspection_endpoint: Option<String>,
    /// oauth2: the RFC 7009 revocation endpoint, instead of discovery.
    #[arg(long, value_name = "URL")]
    pub revocation_endpoint: Option<String>,
}

#[derive(Debug, Args)]
pub struct ProfileListArgs {
    #[command(flatten)]
    pub json: JsonArgs,
}

#[derive(Debug, Args)]
pub struct ProfileNameArg {
    #[arg(add = ArgValueCompleter::new(completion::profile_name))]
    pub name: String,
}

/// Show the audit trail: every authorization decision and admin action
///
/// Entries come from the local store, or from `tok serve` through its admin
/// API. Oldest first; --follow keeps printing new entries as they come.
///
/// Examples:
///   tok audit --since 1h
///   tok audit --token tk_3f9a2c --decision deny -o json
///   tok audit --follow -o jsonl
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct AuditArgs {
    /// Entries about this token (id or unique prefix).
    #[arg(long, value_name = "ID", add = ArgValueCompleter::new(completion::any_token_id))]
    pub token: Option<String>,

    /// Entries from this long ago (1h) or since this RFC 3339 time.
    #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
    pub since: Option<Since>,

    /// Only allowed or only denied requests.
    #[arg(long, value_enum)]
    pub decision: Option<crate::store::audit::Decision>,

    /// At most the newest N entries.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,

    /// Keep running and print new entries as they are recorded.
    #[arg(short, long)]
    pub follow: bool,

    #[command(flatten)]
    pub json: JsonArgs,
}

/// `--since`: a duration back from now, or a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(Ttl),
    At(DateTime<Utc>),
}

impl Command {
    /// The --json / --jq options of this command, when it has them.
    pub fn json_args(&self) -> Option<&JsonArgs> {
        match self {
            Command::List(a) => Some(&a.json),
            Command::Inspect(a) => Some(&a.json),
            Command::Revoke(a) => Some(&a.json),
            Command::Audit(a) => Some(&a.json),
            Command::Drivers(a) => Some(&a.json),
            Command::Profile(ProfileCommand::List(a)) => Some(&a.json),
            Command::Auth(AuthCommand::Status(a)) => Some(&a.json),
            _ => None,
        }
    }
}

impl Since {
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::Ago(d) => now - d.delta(),
            Since::At(t) => t,
        }
    }
}

pub fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Since::At(t.with_timezone(&Utc)));
    }
    s.parse::<Ttl>()
        .map(Since::Ago)
        .map_err(|e| format!("{e}; or give an RFC 3339 time such as 2030-01-01T00:00:00Z"))
}

/// List the drivers and what each can do
///
/// Examples:
///   tok drivers
///   tok drivers -o json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DriversArgs {
    #[command(flatten)]
    pub json: JsonArgs,
}

/// Store the gateway's admin credential in the OS keyring, once
///
/// tok asks for the credential without echo on a terminal, or reads it from
/// stdin with --with-token; never from the command line. It checks the
/// credential against the gateway first and saves only one that works: in the
/// OS keyring (service `tok`, one entry per profile and gateway URL), or, only
/// with --insecure-storage, in a plaintext file readable by you alone.
///
/// Where a command finds its credential: TOK_ADMIN_TOKEN (or the driver's own
/// variable) > the OS keyring > the --insecure-storage file. CI should set
/// TOK_ADMIN_TOKEN and never log in.
///
/// Examples:
///   tok login --profile prod
///   printf %s "$ADMIN_TOKEN" | tok login --profile prod --with-token
///   tok login --url http://127.0.0.1:8270
///   tok login --profile lab --insecure-storage    # no keyring on this host
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LoginArgs {
    /// Read the credential from stdin instead of a prompt.
    #[arg(long)]
    pub with_token: bool,

    /// Keep the credential in a plaintext file (0600) instead of the OS keyring.
    #[arg(long)]
    pub insecure_storage: bool,
}

/// Remove the stored credential of a profile (or of --url)
///
/// Removes it from the OS keyring and from the --insecure-storage file. It does
/// not revoke the credential on the gateway.
///
/// Examples:
///   tok logout --profile prod
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LogoutArgs {}

/// DPoP keys and proofs, for clients of tokens bound with --dpop-key (RFC 9449)
#[derive(Debug, Subcommand)]
pub enum DpopCommand {
    Keygen(DpopKeygenArgs),
    Proof(DpopProofArgs),
}

/// Write a new DPoP key pair and print its thumbprint
///
/// FILE gets the private key (PKCS #8 PEM, mode 0600), FILE.jwk the public
/// key as a JWK; the thumbprint (for `tok create --dpop-jkt`) goes to stdout.
/// An existing file is never overwritten without --force.
///
/// Examples:
///   tok dpop keygen ci.key
///   tok create --ttl 1h --dpop-key ci.key.jwk
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DpopKeygenArgs {
    /// Where to write the private key; the public one goes to FILE.jwk.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,

    /// The key's algorithm.
    #[arg(long, value_enum, default_value = "ES256")]
    pub alg: crate::dpop::KeyAlg,

    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// Print a DPoP proof for one request, for curl
///
/// A proof is good for one request, to one method and URL, for about a
/// minute. With --token-stdin the token is read from stdin and the proof
/// carries its hash (`ath`), as a protected resource requires.
///
/// Examples:
///   printf %s "$TOKEN" | tok dpop proof --key ci.key --url https://api.example/v1/x --token-stdin
///   curl -H "Authorization: DPoP $TOKEN" -H "DPoP: $(printf %s "$TOKEN" | tok dpop proof --key ci.key --url https://api.example/v1/x --token-stdin)" https://api.example/v1/x
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DpopProofArgs {
    /// The private key file (as `tok dpop keygen` writes).
    #[arg(long, value_name = "FILE")]
    pub key: std::path::PathBuf,

    /// The request's method.
    #[arg(long, default_value = "GET")]
    pub method: String,

    /// The request's URL (a query and fragment are left out of the proof).
    #[arg(long)]
    pub url: String,

    /// Read the token from stdin and bind the proof to it (`ath`).
    #[arg(long)]
    pub token_stdin: bool,

    /// Print N proofs, one a line, each with its own `jti` (for load tests).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub count: u32,
}

/// Credentials: where each profile's comes from and whether it works
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    Status(AuthStatusArgs),
    Token(AuthTokenArgs),
}

/// Print the credential this run would send to its gateway, for scripts
///
/// The credential is found as every command finds it: TOK_ADMIN_TOKEN (or the
/// driver's own variable) > the OS keyring > the --insecure-storage file. It
/// goes to stdout alone, with one newline, only when stdout is not a terminal
/// (a pipe, a file, `$(...)`), or with --yes; where it came from goes to stderr.
///
/// Examples:
///   curl -H "Authorization: Bearer $(tok auth token --profile prod)" https://tok.example.com/v1/tokens
///   tok auth token --profile prod | docker login --password-stdin ...
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct AuthTokenArgs {
    /// Print it on a terminal too.
    #[arg(short, long)]
    pub yes: bool,
}

/// Show each profile's gateway, driver, credential source and expiry, and whether it works
///
/// Where the credential comes from: env, keyring or file. Checks every profile (or only --profile), and the --url / TOK_URL gateway
/// when no profile is in use. Exits 4 when a credential is missing or fails.
///
/// Examples:
///   tok auth status
///   tok auth status --profile prod -o json
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct AuthStatusArgs {
    #[command(flatten)]
    pub json: JsonArgs,
}
/// Run tok's HTTP admin API, and optionally the enforcing proxy, over a token store
///
/// Serves the store in --data-dir (by default the local driver's store) at
/// --listen, for the `tok` driver (`--url`, TOK_URL) and any HTTP client; see
/// docs/admin-api.md. Requests authenticate with a tok token that has the
/// `tok:admin` scope (or `tok:read` to read); `tok serve init` makes the first.
/// Logs go to stderr and never hold a secret. Ctrl-C or SIGTERM stops the
/// server after the requests in flight are answered.
///
/// `--dev` starts on a temporary store (deleted when the server stops), makes
/// an admin token, and prints on stdout the two lines that point the CLI at it:
///   export TOK_URL=http://127.0.0.1:8270
///   export TOK_ADMIN_TOKEN=tok_...
///
/// With --proxy-listen and --upstream, tok serve also guards a service: it lets
/// through only requests with a valid bearer token that has the scopes the
/// route needs (--routes), streams them to the upstream, and records every
/// decision in the audit trail (`tok audit`). See docs/proxy.md.
///
/// With --auth-listen it answers the same decisions for a proxy you already run
/// (nginx, Caddy, Traefik, Envoy), which then guards the service itself. See
/// docs/forward-auth.md.
///
/// Every setting can live in one TOML file (--config, docs/serve.example.toml);
/// flags override it. SIGHUP reloads the routes, the audit retention and the
/// TLS certificate. Operators get /metrics (Prometheus), /v1/health/live and
/// /v1/health/ready, JSON logs and systemd readiness: see docs/operating.md.
///
/// With --federation, CI jobs trade their OIDC ID token for a short-lived token
/// at POST /oauth/token, as the trust policies allow; SIGHUP rereads the file.
/// See docs/federation.md.
///
/// Examples:
///   tok serve --dev                                  # try tok in a second terminal
///   tok serve init --data-dir /var/lib/tok > admin.token
///   PGPASSWORD=... tok serve init --store postgres://tok@db:5432/tok > admin.token
///   tok serve --data-dir /var/lib/tok --listen 0.0.0.0:8270 \
///       --tls-cert /etc/tok/cert.pem --tls-key /etc/tok/key.pem
///   tok serve --data-dir ./srv --proxy-listen 127.0.0.1:8080 \
///       --upstream http://127.0.0.1:3000 --routes routes.toml
///   tok serve --data-dir ./srv --auth-listen 127.0.0.1:8271   # for nginx auth_request
///   tok serve --config /etc/tok/serve.toml --log-format json
///   tok serve check-config /etc/tok/serve.toml
///   tok serve --data-dir /var/lib/tok --federation /etc/tok/federation.toml
#[derive(Debug, Args)]
#[command(
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true,
    group = clap::ArgGroup::new("listeners").args(["proxy_listen", "auth_listen"]).multiple(true)
)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub command: Option<ServeCommand>,

    /// Read the serve settings from this TOML file; flags override it (docs/serve.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on (port 0 picks a free port; the log says which) [default: 127.0.0.1:8270].
    #[arg(long, value_name = "ADDR", env = env::LISTEN)]
    pub listen: Option<SocketAddr>,

    /// Serve a temporary store with a new admin token, and print the
    /// `export TOK_URL=...` and `export TOK_ADMIN_TOKEN=...` lines on stdout.
    #[arg(long)]
    pub dev: bool,

    /// A PostgreSQL store that several nodes share, postgres://USER@HOST:PORT/DB
    /// [default: the SQLite store in the data directory]. The password comes from
    /// PGPASSWORD, a .pgpass file, or a URL in TOK_STORE; never from this flag.
    #[arg(long, value_name = "URL", env = env::STORE)]
    pub store: Option<String>,

    /// This node's name in the audit entries it writes [default: the host name].
    #[arg(long, value_name = "NAME", env = env::NODE_NAME)]
    pub node_name: Option<String>,

    /// Serve HTTPS (the admin API and the proxy) with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Close a connection whose request headers have not all arrived after this long [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub header_timeout: Option<Ttl>,

    /// How log lines are written on stderr [default: text].
    #[arg(long, value_name = "FORMAT", help_heading = "Operating")]
    pub log_format: Option<crate::server::LogFormat>,

    /// Also serve /metrics and the health routes, without a token, on this address.
    #[arg(long, value_name = "ADDR", help_heading = "Operating")]
    pub metrics_listen: Option<SocketAddr>,

    /// Record no metrics (/metrics still answers, with every count at 0).
    #[arg(long, help_heading = "Operating")]
    pub no_metrics: bool,

    /// Also run the enforcing reverse proxy on this address (needs an upstream).
    #[arg(long, value_name = "ADDR", help_heading = "Proxy")]
    pub proxy_listen: Option<SocketAddr>,

    /// Where the proxy sends the requests it lets through.
    #[arg(long, value_name = "URL", help_heading = "Proxy")]
    pub upstream: Option<String>,

    /// Route rules (TOML): the scopes each method and path needs, and their upstreams (docs/routes.example.toml); for the proxy and forward auth.
    #[arg(long, value_name = "FILE", help_heading = "Proxy")]
    pub routes: Option<PathBuf>,

    /// Give up on the upstream after this long without an answer (504) [default: 30s].
    #[arg(long, value_name = "DURATION", help_heading = "Proxy")]
    pub upstream_timeout: Option<Ttl>,

    /// A proxy in front of this one whose X-Forwarded-For names the client (repeatable; CIDR), read right to left as nginx's realip does (docs/reuse.md).
    #[arg(
        long,
        value_name = "CIDR",
        value_parser = crate::limits::parse_cidr,
        help_heading = "Proxy"
    )]
    pub trusted_proxy: Vec<ipnet::IpNet>,

    /// Also answer forward-auth checks on this address: nginx auth_request, Caddy forward_auth, Traefik ForwardAuth, Envoy ext_authz (docs/forward-auth.md). When TOK_AUTH_SECRET is set, callers must send it in X-Tok-Auth-Secret.
    #[arg(long, value_name = "ADDR", help_heading = "Forward auth")]
    pub auth_listen: Option<SocketAddr>,

    /// Only callers in this address range may ask (repeatable) [default: 127.0.0.0/8 and ::1].
    #[arg(
        long = "auth-allow",
        value_name = "CIDR",
        requires = "auth_listen",
        value_parser = crate::limits::parse_cidr,
        help_heading = "Forward auth"
    )]
    pub auth_allow: Vec<ipnet::IpNet>,

    /// Let the proxy cache an allowed answer this long (Cache-Control), trading revocation delay for speed; never for use-limited tokens [default: never].
    #[arg(
        long,
        value_name = "DURATION",
        requires = "auth_listen",
        help_heading = "Forward auth"
    )]
    pub auth_cache_ttl: Option<Ttl>,

    /// Serve forward auth over HTTPS with this PEM certificate chain (needs --auth-tls-key) [default: --tls-cert's, if given].
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["auth_listen", "auth_tls_key"],
        help_heading = "Forward auth"
    )]
    pub auth_tls_cert: Option<PathBuf>,

    /// The PEM private key of --auth-tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        requires = "auth_tls_cert",
        help_heading = "Forward auth"
    )]
    pub auth_tls_key: Option<PathBuf>,

    /// Require callers to present a client certificate issued by a CA in this PEM file (mTLS; needs --auth-tls-cert or --tls-cert).
    #[arg(
        long,
        value_name = "FILE",
        requires = "auth_listen",
        help_heading = "Forward auth"
    )]
    pub auth_client_ca: Option<PathBuf>,

    /// Delete request entries (proxy, introspection and exchange decisions) older than this [default: 90d].
    #[arg(long, value_name = "DURATION", help_heading = "Audit trail")]
    pub audit_max_age: Option<Ttl>,

    /// Trust policies (TOML) for CI jobs that trade their OIDC ID token for a
    /// tok token at POST /oauth/token; read again on SIGHUP (docs/federation.md).
    #[arg(long, value_name = "FILE", help_heading = "Federation")]
    pub federation: Option<PathBuf>,

    /// Keep at most this many request entries (the oldest go first) [default: 1000000].
    ///
    /// Admin actions are counted apart and never evicted by requests.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Audit trail")]
    pub audit_max_rows: Option<u64>,

    /// Delete admin actions (create, revoke, rotate) older than this [default: 730d].
    #[arg(long, value_name = "DURATION", help_heading = "Audit trail")]
    pub audit_admin_max_age: Option<Ttl>,

    /// Keep at most this many admin actions (the oldest go first) [default: 1000000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Audit trail")]
    pub audit_admin_max_rows: Option<u64>,

    /// How many audit entries may wait for the writer; when that many wait, a proxy request waits up to 5s for room, then gets 503 [default: 10000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000), help_heading = "Audit trail")]
    pub audit_queue: Option<u32>,
}

/// Move a token store between SQLite and PostgreSQL
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    Copy(StoreCopyArgs),
}

/// Copy tokens (hashes only) and the audit trail from one store to another
///
/// A store is a SQLite data directory (or its tok.db) or a PostgreSQL URL,
/// postgres://USER@HOST:PORT/DB?sslmode=verify-full. No secret is needed or
/// moved: tokens keep working with the secrets they were given. Rows already in
/// the target are kept, so a second run adds nothing; afterwards every row is
/// read back and compared, and the counts checked. A target that holds anything
/// is refused without --force. The password comes from PGPASSWORD, a .pgpass
/// file, or a URL given in TOK_COPY_FROM / TOK_COPY_TO, never from argv.
///
/// Examples:
///   tok store copy --from ~/.local/share/tok --to postgres://tok@db:5432/tok
///   PGPASSWORD=... tok store copy --from postgres://tok@db/tok --to ./backup
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StoreCopyArgs {
    /// The store to copy from: a data directory, a tok.db file or a postgres:// URL.
    #[arg(long, value_name = "PATH_OR_URL", env = crate::env::COPY_FROM)]
    pub from: String,

    /// The store to copy into (created and migrated if need be).
    #[arg(long, value_name = "PATH_OR_URL", env = crate::env::COPY_TO)]
    pub to: String,

    /// Copy into a store that already holds tokens or audit entries.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    Init(ServeInitArgs),
    CheckConfig(CheckConfigArgs),
}

/// Check a `tok serve` config file without starting anything
///
/// Reads FILE as `tok serve --config FILE` would and checks every setting: addresses, durations, the upstream
/// URL, the routes, and that the TLS certificate and key load. Errors name
/// the line and the key; exits 2 when something is wrong.
///
/// Examples:
///   tok serve check-config /etc/tok/serve.toml
///   tok serve check-config docs/serve.example.toml
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CheckConfigArgs {
    /// The config file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Create the server's store and print a first admin token alone on stdout
///
/// The token has the `tok:admin` scope and never expires unless --ttl is
/// given. Refuses when the store already has an active admin token.
///
/// Examples:
///   tok serve init --data-dir /var/lib/tok > admin.token
///   TOK_ADMIN_TOKEN=$(tok serve init --data-dir ./srv --ttl 30d)
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ServeInitArgs {
    /// Lifetime of the admin token [default: it never expires].
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<Ttl>,

    /// Name of the admin token.
    #[arg(long, default_value = "admin")]
    pub name: String,

    /// Initialise this PostgreSQL store (as `tok serve --store`) instead of
    /// the SQLite store in the data directory.
    #[arg(long, value_name = "URL", env = env::STORE)]
    pub store: Option<String>,
}

/// Print the shell completion script for SHELL
///
/// The script asks `tok` itself (from PATH) at each TAB, so commands, flags and
/// values complete as the installed tok knows them, and token ids and profile
/// names come live from the store or gateway that the command line points at
/// (--profile, --url, --data-dir). A slow or unreachable gateway does not block
/// the shell: after 1s (TOK_COMPLETE_TIMEOUT) tok answers from a small cache of
/// ids and names in $XDG_CACHE_HOME/tok, and it never prints an error into the
/// command line.
///
/// Install, then start a new shell:
///   bash (with the bash-completion package):
///     tok completions bash > ~/.local/share/bash-completion/completions/tok
///   zsh (with ~/.zfunc in fpath: in ~/.zshrc, before compinit,
///   put fpath=(~/.zfunc $fpath)):
///     tok completions zsh > ~/.zfunc/_tok
///   fish:
///     tok completions fish > ~/.config/fish/completions/tok.fish
///   PowerShell:
///     tok completions powershell >> $PROFILE
///   elvish:
///     tok completions elvish >> ~/.config/elvish/rc.elv
///
/// Or load the script in each new shell, e.g. in ~/.bashrc or ~/.zshrc:
///   source <(tok completions bash)
///
/// Examples:
///   tok completions bash > ~/.local/share/bash-completion/completions/tok
///   tok completions zsh > ~/.zfunc/_tok
///   tok completions fish > ~/.config/fish/completions/tok.fish
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CompletionsArgs {
    /// The shell to print the script for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// A shell that `tok completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// GNU Bash 4.4 or later.
    Bash,
    /// Z shell, through compinit.
    Zsh,
    /// fish 3.
    Fish,
    /// PowerShell 7 (pwsh) or Windows PowerShell 5.1.
    Powershell,
    /// Elvish.
    Elvish,
}

/// Write the completion scripts (completions/) and man pages (man/) the
/// repository ships; a test checks that they are up to date
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Write completions/ and man/ in this directory.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// Print live values for the completion scripts
#[derive(Debug, Args)]
pub struct CompleteArgs {
    #[arg(value_enum)]
    pub kind: CompleteKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompleteKind {
    /// `ID<TAB>STATE<TAB>NAME` for each token (the newest 1000), oldest first.
    Tokens,
}

/// RFC 3339 time, e.g. 2030-01-01T00:00:00Z.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("`{s}` is not an RFC 3339 time ({e}); write e.g. 2030-01-01T00:00:00Z")
        })
}

/// A name glob, at most as long as a name (as the admin API caps it).
pub fn parse_name_glob(s: &str) -> Result<String, String> {
    let max = crate::model::limits::NAME_MAX;
    let n = s.chars().count();
    if n > max {
        return Err(format!(
            "the pattern is {n} characters long; a name has at most {max}"
        ));
    }
    Ok(s.to_string())
}

/// `key=value`.
/// A client range: `10.0.0.0/8`, `::1/128`, or one address.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE (e.g. team=payments)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn label_and_time_parsers() {
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_label("=x").is_err());
        assert!(parse_label("nokey").is_err());
        assert!(parse_time("2030-01-01T00:00:00Z").is_ok());
        assert!(parse_time("2030-01-01").is_err());
    }

    #[test]
    fn cidr_parser() {
        let net = |s: &str| crate::limits::parse_cidr(s).map(|n| n.to_string());
        assert_eq!(net("10.0.0.0/8").unwrap(), "10.0.0.0/8");
        assert_eq!(
            net("10.1.2.3/8").unwrap(),
            "10.0.0.0/8",
            "host bits dropped"
        );
        assert_eq!(net("192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(net("::1").unwrap(), "::1/128");
        assert_eq!(net("fd00::/8").unwrap(), "fd00::/8");
        for bad in ["", "10.0.0.0/33", "localhost", "10.0.0/8"] {
            assert!(
                net(bad).unwrap_err().contains("not an address range"),
                "{bad}"
            );
        }
    }
}
