//! Shell completion at TAB time. The shell scripts (`tok completions SHELL`)
//! call `TOK_COMPLETE=SHELL tok -- WORDS`, and clap_complete's engine answers from
//! `Cli::command()`, so every command and flag completes without regenerating
//! a script. Token ids and profile names come from the live store, gateway or
//! config through the value completers below.
//!
//! A completion must never print into the command line or hang the shell:
//! token ids are fetched by a child `tok __complete tokens` whose stderr goes
//! to /dev/null and which is killed after [`fetch_timeout`]; what it found is
//! cached (ids, names and states, never a secret) under `$XDG_CACHE_HOME/tok`
//! and answered when the gateway is slow or unreachable.

use crate::cli::{Cli, ColorChoice, CompletionShell, GlobalArgs};
use crate::commands::Ctx;
use crate::config::{self, Config};
use crate::drivers::DriverKind;
use crate::model::State;
use crate::output::Out;
use chrono::{DateTime, Utc};
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory};
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
use clap_complete::CompleteEnv;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The environment variable that turns a tok run into a completion request
/// (tok's own name, so that a stray `COMPLETE=1` cannot hijack a run).
pub const VAR: &str = crate::env::COMPLETE;
/// The command the scripts complete, and call back for completions (from PATH).
pub const BIN: &str = "tok";

/// How long a TAB waits for the live token list before answering from the
/// cache, unless `TOK_COMPLETE_TIMEOUT` says otherwise.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// A cached list this young is answered without asking a network gateway again
/// (pressing TAB twice should not wait twice). The local store is always asked.
const FRESH: Duration = Duration::from_secs(10);
/// A cached list older than this is not answered even when the gateway is down.
const STALE: Duration = Duration::from_secs(24 * 3600);
/// At most this many tokens (the newest) are offered and cached.
const MAX_TOKENS: usize = 1000;
const CACHE_VERSION: u32 = 1;

/// Answers a completion request and exits, when `COMPLETE` is set; returns at
/// once otherwise. Must run before anything is written to stdout.
pub fn handle_env() {
    // Only a shell that the scripts name makes this a completion request.
    let shell = std::env::var(VAR).unwrap_or_default();
    let name = std::path::Path::new(&shell)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if clap_complete::env::Shells::builtins()
        .completer(&name)
        .is_none()
    {
        return;
    }
    // Whatever goes wrong, the shell gets no candidates and no text on stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let done = CompleteEnv::with_factory(Cli::command)
        .var(VAR)
        .bin(BIN)
        .completer(BIN)
        .try_complete(std::env::args_os(), std::env::current_dir().ok().as_deref());
    match done {
        Ok(true) => std::process::exit(0),
        Ok(false) => {}
        Err(_) => std::process::exit(1),
    }
}

/// The script that registers tok's completion in `shell`.
pub fn registration(shell: CompletionShell) -> String {
    let completer: &dyn EnvCompleter = match shell {
        CompletionShell::Bash => &Bash,
        CompletionShell::Zsh => &Zsh,
        CompletionShell::Fish => &Fish,
        CompletionShell::Powershell => &Powershell,
        CompletionShell::Elvish => &Elvish,
    };
    let mut buf = Vec::new();
    completer
        .write_registration(VAR, BIN, BIN, BIN, &mut buf)
        .expect("writing to a Vec cannot fail");
    let script = String::from_utf8(buf).expect("the registration script is UTF-8");
    let header = format!(
        "# tok completion for {name}: `tok completions {name}` wrote this; see `tok completions --help`.\n\
         # It asks `tok` (from PATH) at each TAB, so new commands and live token ids complete.\n",
        name = shell.name()
    );
    match shell {
        CompletionShell::Zsh => zsh_for_fpath(&script, &header),
        _ => format!("{header}{}\n", script.trim()),
    }
}

/// The zsh script from clap_complete only calls `compdef` at the end, which is
/// right when it is sourced but loses the first TAB when compinit autoloads it
/// from `$fpath` as `_tok`: then the file is the body of `_tok`, which must
/// complete, too (the same test clap_complete's static zsh scripts make).
fn zsh_for_fpath(script: &str, header: &str) -> String {
    let compdef = format!("compdef _clap_dynamic_completer_{BIN} {BIN}");
    let (head, rest) = script
        .trim()
        .split_once('\n')
        .expect("the zsh script starts with #compdef");
    let body = rest.trim_end();
    let body = body
        .strip_suffix(&compdef)
        .expect("the zsh script ends with its compdef line");
    format!(
        "{head}\n{header}{body}if [ \"$funcstack[1]\" = \"_{BIN}\" ]; then\n    _clap_dynamic_completer_{BIN} \"$@\"\nelse\n    {compdef}\nfi\n"
    )
}

impl CompletionShell {
    pub fn name(self) -> &'static str {
        match self {
            CompletionShell::Bash => "bash",
            CompletionShell::Zsh => "zsh",
            CompletionShell::Fish => "fish",
            CompletionShell::Powershell => "powershell",
            CompletionShell::Elvish => "elvish",
        }
    }

    /// The file name in `completions/`, as each shell looks for it.
    pub fn file_name(self) -> &'static str {
        match self {
            CompletionShell::Bash => "tok.bash",
            CompletionShell::Zsh => "_tok",
            CompletionShell::Fish => "tok.fish",
            CompletionShell::Powershell => "_tok.ps1",
            CompletionShell::Elvish => "tok.elv",
        }
    }
}

// ---------------------------------------------------------------------------
// Value completers, attached to args in cli.rs.

/// Ids of tokens in any state (for `inspect`), the newest first, with names.
pub fn any_token_id(current: &OsStr) -> Vec<CompletionCandidate> {
    token_candidates(current, false)
}

/// Ids of active tokens (for `revoke` and `rotate`), the newest first.
pub fn active_token_id(current: &OsStr) -> Vec<CompletionCandidate> {
    token_candidates(current, true)
}

/// Profile names from the config file, with their driver and URL.
pub fn profile_name(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else {
        return Vec::new();
    };
    let Ok(config) = Config::load() else {
        return Vec::new();
    };
    config
        .profiles
        .iter()
        .filter(|(name, _)| name.starts_with(current))
        .map(|(name, p)| {
            let driver = p.driver.unwrap_or(if p.url.is_some() {
                DriverKind::Tok
            } else {
                DriverKind::Local
            });
            let mut help = driver.as_str().to_string();
            if let Some(url) = &p.url {
                help = format!("{help} {url}");
            }
            if config.default_profile.as_deref() == Some(name) {
                help.push_str(" (default)");
            }
            CompletionCandidate::new(name).help(Some(help.into()))
        })
        .collect()
}

fn token_candidates(current: &OsStr, active_only: bool) -> Vec<CompletionCandidate> {
    let Some(current) = current.to_str() else {
        return Vec::new();
    };
    let words = words_being_completed();
    let tokens = known_tokens(&words).unwrap_or_default();
    tokens
        .iter()
        .rev()
        .filter(|t| t.id.starts_with(current))
        .filter(|t| !active_only || t.state == State::Active)
        .map(|t| {
            let name = t.name.as_deref().unwrap_or("(no name)");
            let help = if t.state == State::Active {
                name.to_string()
            } else {
                format!("{name} ({})", t.state.as_str())
            };
            CompletionCandidate::new(&t.id).help(Some(help.into()))
        })
        .collect()
}

/// The command line being completed, as the shell script passed it after `--`,
/// without the word under the cursor.
fn words_being_completed() -> Vec<OsString> {
    let mut words: Vec<OsString> = std::env::args_os()
        .skip_while(|a| a != "--")
        .skip(1)
        .collect();
    let index = std::env::var("_CLAP_COMPLETE_INDEX")
        .ok()
        .and_then(|i| i.parse::<usize>().ok())
        .unwrap_or(words.len().saturating_sub(1));
    if index < words.len() {
        words.remove(index);
    }
    words
}

/// One token as the completion cache keeps it: no secret, no fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Known {
    pub id: String,
    pub name: Option<String>,
    pub state: State,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cache {
    version: u32,
    fetched_at: DateTime<Utc>,
    tokens: Vec<Known>,
}

/// The tokens of the gateway that `words` point at: live when it answers in
/// time, else from the cache; None when neither is there.
fn known_tokens(words: &[OsString]) -> Option<Vec<Known>> {
    let matches = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(words)
        .ok()?;
    let global = <GlobalArgs as clap::FromArgMatches>::from_arg_matches(&matches).ok()?;
    let out = Out::new(None, ColorChoice::Never, true, 0);
    let ctx = Ctx::new(global, matches.clone(), out).ok()?;
    let cache = cache_path(&ctx)?;
    let cached = read_cache(&cache);
    let age = |c: &Cache| {
        (Utc::now() - c.fetched_at)
            .to_std()
            .unwrap_or(Duration::MAX)
    };
    if ctx.driver_kind() != DriverKind::Local {
        if let Some(c) = cached.as_ref().filter(|c| age(c) < FRESH) {
            return Some(c.tokens.clone());
        }
    }
    match fetch(&typed_globals(&matches)) {
        Some(tokens) => {
            let c = Cache {
                version: CACHE_VERSION,
                fetched_at: Utc::now(),
                tokens,
            };
            if let Ok(json) = serde_json::to_vec(&c) {
                let _ = config::write_private_atomic(&cache, &json);
            }
            Some(c.tokens)
        }
        None => cached.filter(|c| age(c) < STALE).map(|c| c.tokens),
    }
}

/// The global options typed on the command line, to hand to the child as they
/// were (the child reads the same environment and config by itself).
fn typed_globals(matches: &clap::ArgMatches) -> Vec<OsString> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    for arg in cmd.get_arguments().filter(|a| a.is_global_set()) {
        let (id, Some(long)) = (arg.get_id().as_str(), arg.get_long()) else {
            continue;
        };
        if matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        match arg.get_action() {
            ArgAction::Set | ArgAction::Append => {
                if let Ok(Some(values)) = matches.try_get_raw(id) {
                    for v in values {
                        let mut flag = OsString::from(format!("--{long}="));
                        flag.push(v);
                        out.push(flag);
                    }
                }
            }
            ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count => {
                out.push(format!("--{long}").into());
            }
            _ => {}
        }
    }
    out
}

/// `TOK_COMPLETE_TIMEOUT` (a duration such as 3s), else [`FETCH_TIMEOUT`].
fn fetch_timeout() -> Duration {
    std::env::var(crate::env::COMPLETE_TIMEOUT)
        .ok()
        .and_then(|v| v.parse::<crate::duration::Ttl>().ok())
        .map(|t| Duration::from_secs(t.as_secs()))
        .unwrap_or(FETCH_TIMEOUT)
}

/// Runs `tok GLOBALS __complete tokens` and reads its answer, giving up after
/// [`fetch_timeout`] (the child is killed then).
fn fetch(globals: &[OsString]) -> Option<Vec<Known>> {
    let exe = std::env::current_exe().ok()?;
    let mut child = Command::new(exe)
        .args(globals)
        .args(["__complete", "tokens"])
        .env_remove(VAR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let read = stdout.read_to_string(&mut text).map(|_| text);
        let _ = tx.send(read);
    });
    match rx.recv_timeout(fetch_timeout()) {
        Ok(Ok(text)) => {
            let status = child.wait().ok()?;
            if !status.success() {
                return None;
            }
            Some(parse_token_lines(&text))
        }
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

/// One line per token: `ID<TAB>STATE<TAB>NAME` (no name: nothing after the
/// second tab). This is what `tok __complete tokens` prints.
pub fn token_line(t: &Known) -> String {
    let clean = |s: &str| s.replace(|c: char| c.is_control(), " ");
    format!(
        "{}\t{}\t{}",
        clean(&t.id),
        t.state.as_str(),
        t.name.as_deref().map(clean).unwrap_or_default()
    )
}

fn parse_token_lines(text: &str) -> Vec<Known> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            let id = parts.next()?.to_string();
            let state = match parts.next()? {
                "active" => State::Active,
                "expired" => State::Expired,
                "revoked" => State::Revoked,
                "exhausted" => State::Exhausted,
                _ => return None,
            };
            let name = parts.next().filter(|n| !n.is_empty()).map(str::to_string);
            (!id.is_empty()).then_some(Known { id, name, state })
        })
        .collect()
}

/// The newest [`MAX_TOKENS`] of a stream of tokens, oldest first.
pub struct Newest(std::collections::VecDeque<Known>);

impl Newest {
    pub fn new() -> Newest {
        Newest(std::collections::VecDeque::new())
    }
    pub fn push(&mut self, k: Known) {
        if self.0.len() == MAX_TOKENS {
            self.0.pop_front();
        }
        self.0.push_back(k);
    }
    pub fn into_vec(self) -> Vec<Known> {
        self.0.into()
    }
}

impl Default for Newest {
    fn default() -> Self {
        Newest::new()
    }
}

/// `$XDG_CACHE_HOME/tok/completion/tokens-<key>.json`, one file per gateway
/// (driver, URL or data directory, and profile, which may carry its own credential).
fn cache_path(ctx: &Ctx) -> Option<PathBuf> {
    let kind = ctx.driver_kind();
    let target = match kind {
        DriverKind::Local => ctx.data_dir().ok()?.display().to_string(),
        _ => ctx.url().unwrap_or_default().to_string(),
    };
    let mut h = Sha256::new();
    for part in [
        kind.as_str(),
        &target,
        ctx.profile_name.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let key: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(
        config::cache_dir()
            .ok()?
            .join("completion")
            .join(format!("tokens-{key}.json")),
    )
}

fn read_cache(path: &std::path::Path) -> Option<Cache> {
    let bytes = std::fs::read(path).ok()?;
    let c: Cache = serde_json::from_slice(&bytes).ok()?;
    (c.version == CACHE_VERSION).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lines_round_trip_and_drop_control_characters() {
        let t = Known {
            id: "tk_1".into(),
            name: Some("a\tb\nc".into()),
            state: State::Revoked,
        };
        let line = token_line(&t);
        assert_eq!(line, "tk_1\trevoked\ta b c");
        let back = parse_token_lines(&format!("{line}\ntk_2\tactive\t\nbad line\n"));
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].name.as_deref(), Some("a b c"));
        assert_eq!(back[1].name, None);
        assert_eq!(back[1].state, State::Active);
    }

    #[test]
    fn newest_keeps_the_last_tokens() {
        let mut n = Newest::new();
        for i in 0..MAX_TOKENS + 5 {
            n.push(Known {
                id: format!("tk_{i}"),
                name: None,
                state: State::Active,
            });
        }
        let v = n.into_vec();
        assert_eq!(v.len(), MAX_TOKENS);
        assert_eq!(v[0].id, "tk_5");
        assert_eq!(v.last().unwrap().id, format!("tk_{}", MAX_TOKENS + 4));
    }

    #[test]
    fn zsh_script_completes_on_the_first_tab_from_fpath() {
        let s = registration(CompletionShell::Zsh);
        assert!(s.starts_with("#compdef tok\n"), "{s}");
        assert!(
            s.contains("if [ \"$funcstack[1]\" = \"_tok\" ]; then"),
            "{s}"
        );
        assert_eq!(
            s.matches("compdef _clap_dynamic_completer_tok tok").count(),
            1
        );
    }

    #[test]
    fn every_script_calls_tok_from_path() {
        for shell in <CompletionShell as clap::ValueEnum>::value_variants() {
            let s = registration(*shell);
            assert!(s.contains("TOK_COMPLETE"), "{s}");
            assert!(!s.contains("target/"), "no build path in {s}");
        }
    }
}
