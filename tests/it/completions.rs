//! Shell completion and man pages: the committed files are up to date, and the
//! completion scripts work in real bash, zsh and fish, installed where the
//! README says, against a store the test filled (live token ids included).
//! `scripts/setup/30-shells.sh` installs the shells and man-db.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const HINT: &str = "run: cargo run -- __generate";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn committed(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {HINT}", path.display()))
}

/// Relative paths and contents of every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn generated_files_are_up_to_date() {
    let env = Env::new();
    let out = env.home().join("gen");
    env.ok(&["__generate", "--dir", out.to_str().unwrap()]);
    for sub in ["completions", "man"] {
        let fresh = files_under(&out.join(sub));
        let old = files_under(&repo().join(sub));
        assert!(!fresh.is_empty(), "__generate wrote nothing in {sub}/");
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&old),
            names(&fresh),
            "{sub}/ holds other files than tok generates; {HINT}"
        );
        for ((name, a), (_, b)) in old.iter().zip(&fresh) {
            assert!(a == b, "{sub}/{name} is out of date; {HINT}");
        }
    }
}

#[test]
fn completions_prints_the_committed_script_for_each_shell() {
    let env = Env::new();
    for (shell, file) in [
        ("bash", "tok.bash"),
        ("zsh", "_tok"),
        ("fish", "tok.fish"),
        ("powershell", "_tok.ps1"),
        ("elvish", "tok.elv"),
    ] {
        let script = env.ok(&["completions", shell]);
        assert_eq!(script, committed(&format!("completions/{file}")), "{shell}");
        assert!(script.contains("TOK_COMPLETE"), "{shell}: {script}");
    }
    let o = env.run(&["completions", "tcsh"]);
    assert_fails(&o, exit::USAGE, &["tcsh", "bash", "zsh", "fish"]);
    assert!(stdout(&o).is_empty());
    let help = env.ok(&["completions", "--help"]);
    for needle in [
        "~/.local/share/bash-completion/completions/tok",
        "~/.zfunc/_tok",
        "~/.config/fish/completions/tok.fish",
        "$PROFILE",
        "rc.elv",
    ] {
        assert!(
            help.contains(needle),
            "install help lacks {needle}:\n{help}"
        );
    }
}

// ---------------------------------------------------------------------------
// Driving real shells.

/// A child process that is killed if the test panics while it runs.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// `program` in the Env's hermetic environment, with the tok under test first
/// in PATH (the scripts call `tok` from PATH).
fn shell(env: &Env, program: &str) -> Command {
    let tok = assert_cmd::cargo::cargo_bin("tok");
    let bin_dir = tok.parent().unwrap().to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", path)
        .env("HOME", env.home())
        .env("XDG_DATA_HOME", env.home().join("data"))
        .env("XDG_CONFIG_HOME", env.home().join("config"))
        .env("XDG_CACHE_HOME", env.home().join("cache"))
        .env("XDG_RUNTIME_DIR", env.home().join("run"))
        .env("COLUMNS", "120")
        .env("NO_COLOR", "1")
        .env("USER", "tester")
        .env("LANG", "C.UTF-8")
        .env("TERM", "xterm")
        // A busy machine must not turn live ids into cached ones; the test
        // of an unanswering gateway sets its own.
        .env("TOK_COMPLETE_TIMEOUT", "60s")
        .current_dir(env.home());
    for (k, v) in &env.vars {
        c.env(k, v);
    }
    c
}

/// Runs `cmd` to the end, its output in files (no pipe can fill up). The
/// deadline only keeps a broken shell from hanging the test run.
fn finish(mut cmd: Command, what: &str) -> Finished {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run {what}: {e}; scripts/test installs it (scripts/setup/30-shells.sh)")
    });
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = running.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "{what} still runs after 120s");
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

/// One completion candidate: the value and its description (empty in bash).
#[derive(Debug)]
struct Candidate {
    value: String,
    help: String,
}

fn values(c: &[Candidate]) -> Vec<&str> {
    c.iter().map(|c| c.value.as_str()).collect()
}

fn has(c: &[Candidate], value: &str) -> bool {
    c.iter().any(|c| c.value == value)
}

fn help_of<'a>(c: &'a [Candidate], value: &str) -> &'a str {
    &c.iter()
        .find(|c| c.value == value)
        .unwrap_or_else(|| panic!("no candidate {value} in {:?}", values(c)))
        .help
}

fn parse_candidates(text: &str) -> Vec<Candidate> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (value, help) = l.split_once('\t').unwrap_or((l, ""));
            Candidate {
                value: value.to_string(),
                help: help.to_string(),
            }
        })
        .collect()
}

fn expect_clean(f: &Finished, what: &str) {
    assert!(
        f.status.success(),
        "{what} failed: {:?}\nstdout: {}\nstderr: {}",
        f.status,
        f.stdout,
        f.stderr
    );
    assert!(
        f.stderr.is_empty(),
        "{what} printed on stderr (it would land in the command line):\n{}",
        f.stderr
    );
}

/// Installs the committed bash script where the README says (the
/// bash-completion user directory) and completes `line` as a TAB at its end.
fn bash(env: &Env, line: &str) -> Vec<Candidate> {
    let dir = env.home().join("data/bash-completion/completions");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tok"), committed("completions/tok.bash")).unwrap();
    let script = env.home().join("complete.bash");
    std::fs::write(
        &script,
        r#"
main=/usr/share/bash-completion/bash_completion
[[ -r $main ]] || { echo "bash-completion is not installed ($main)" >&2; exit 90; }
source "$main"
# bash-completion loads the script from its user directory on demand.
__load_completion tok || { echo "bash-completion did not load tok's script" >&2; exit 91; }
func=$(complete -p tok | sed -E 's/.* -F ([^ ]+) .*/\1/')
line=$1
read -ra COMP_WORDS <<< "$line"
[[ $line == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE=$line COMP_POINT=${#line} COMP_TYPE=9
COMPREPLY=()
"$func" tok "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#,
    )
    .unwrap();
    let mut c = shell(env, "bash");
    c.arg("--noprofile").arg("--norc").arg(&script).arg(line);
    let f = finish(c, "bash");
    expect_clean(&f, &format!("bash completing {line:?}"));
    parse_candidates(&f.stdout)
}

/// Installs the committed fish script in ~/.config/fish/completions and asks
/// fish what it completes for `line`.
fn fish(env: &Env, line: &str) -> Vec<Candidate> {
    let dir = env.home().join("config/fish/completions");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tok.fish"), committed("completions/tok.fish")).unwrap();
    let mut c = shell(env, "fish");
    c.arg("-c")
        .arg("complete -C $TOK_LINE")
        .env("TOK_LINE", line);
    let f = finish(c, "fish");
    expect_clean(&f, &format!("fish completing {line:?}"));
    parse_candidates(&f.stdout)
}

/// An interactive zsh in a pseudo-terminal (zpty) with the committed `_tok` in
/// `~/.zfunc` on fpath and compinit run, as the README says; TAB is pressed at
/// the end of `line`, and a compadd wrapper records what zsh would offer.
fn zsh(env: &Env, line: &str) -> Vec<Candidate> {
    let zfunc = env.home().join(".zfunc");
    std::fs::create_dir_all(&zfunc).unwrap();
    std::fs::write(zfunc.join("_tok"), committed("completions/_tok")).unwrap();
    let init = env.home().join("init.zsh");
    std::fs::write(
        &init,
        r#"
PS1='' PROMPT='' RPROMPT=''
fpath=(~/.zfunc $fpath)
autoload -Uz compinit && compinit -u -D
zstyle ':completion:*' list-grouped false
zstyle ':completion:*' insert-tab false
bindkey '^I' complete-word
# Record the matches of every compadd that adds matches, with descriptions.
compadd() {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
    builtin compadd "$@"
    return $?
  fi
  typeset -a __hits __dscr __tmp
  if (( $@[(I)-d] )); then
    __tmp=${@[$[${@[(i)-d]}+1]]}
    if [[ $__tmp == \(* ]]; then eval "__dscr=$__tmp"; else __dscr=( "${(@P)__tmp}" ); fi
  fi
  builtin compadd -A __hits -D __dscr "$@"
  local i
  for i in {1..$#__hits}; do
    print -r -- "${__hits[$i]}	${__dscr[$i]}" >> $TOK_CAPTURE
  done
}
_tok_capture_done() { print -r -- '<<done>>'; exit }
comppostfuncs=(_tok_capture_done)
"#,
    )
    .unwrap();
    let drive = env.home().join("drive.zsh");
    std::fs::write(
        &drive,
        r#"
zmodload zsh/zpty || exit 92
zpty z zsh -f -i
zpty -w z "source ${TOK_INIT}"
zpty -w z "${TOK_LINE}"$'\t'
zpty -r z out '*<<done>>*'
"#,
    )
    .unwrap();
    let capture = env.home().join("zsh-capture");
    let _ = std::fs::remove_file(&capture);
    let mut c = shell(env, "zsh");
    c.arg("-f")
        .arg(&drive)
        .env("TOK_INIT", &init)
        .env("TOK_LINE", line)
        .env("TOK_CAPTURE", &capture);
    let f = finish(c, "zsh");
    expect_clean(&f, &format!("zsh completing {line:?}"));
    let text = std::fs::read_to_string(&capture).unwrap_or_default();
    // zsh shows `value  -- description`; keep the description.
    parse_candidates(&text)
        .into_iter()
        .map(|c| Candidate {
            help: c
                .help
                .split_once(" -- ")
                .map(|(_, h)| h.to_string())
                .unwrap_or_default(),
            value: c.value,
        })
        .collect()
}

/// A store with two active tokens and a revoked one; returns their ids.
fn filled(env: &Env) -> (String, String, String, String) {
    let (deploy, secret) = env.create_json(&["--name", "deploy-7", "--ttl", "1h"]);
    let (other, _) = env.create_json(&["--ttl", "1h"]);
    let (gone, _) = env.create_json(&["--name", "old-ci", "--ttl", "1h"]);
    env.ok(&["revoke", &gone, "--yes"]);
    (deploy, other, gone, secret)
}

#[test]
fn bash_completes_commands_flags_values_and_live_token_ids() {
    let env = Env::new();
    let (deploy, other, gone, secret) = filled(&env);

    assert_eq!(values(&bash(&env, "tok cre")), ["create"]);
    let c = bash(&env, "tok revoke --dr");
    assert!(has(&c, "--dry-run") && has(&c, "--driver"), "{c:?}");
    let c = bash(&env, "tok list --st");
    assert_eq!(values(&c), ["--state"]);
    let c = bash(&env, "tok revoke --st");
    assert_eq!(values(&c), ["--state"]);
    let c = bash(&env, "tok list --state ");
    assert_eq!(
        values(&c),
        ["active", "expired", "revoked", "exhausted", "all"]
    );
    let c = bash(&env, "tok revoke ");
    assert!(has(&c, &deploy) && has(&c, &other), "{c:?}");
    assert!(!has(&c, &gone), "revoke offers a revoked token: {c:?}");
    assert!(has(&c, "--dry-run"), "flags complete too: {c:?}");
    let c = bash(&env, "tok inspect tk_");
    assert!(has(&c, &deploy) && has(&c, &gone), "{c:?}");
    assert!(c.iter().all(|c| c.value.starts_with("tk_")), "{c:?}");
    let c = bash(&env, &format!("tok rotate {}", &deploy[..deploy.len() - 1]));
    assert_eq!(values(&c), [deploy.as_str()]);

    // The cache holds ids and names, never a secret.
    let cache = all_bytes_under(&env.home().join("cache/tok"));
    assert!(
        contains_bytes(&cache, deploy.as_bytes()),
        "no cache written"
    );
    assert!(contains_bytes(&cache, b"deploy-7"));
    assert!(
        !contains_bytes(&cache, secret.as_bytes()),
        "a secret in the cache"
    );
}

#[test]
fn fish_completes_with_token_names_as_descriptions() {
    let env = Env::new();
    let (deploy, other, gone, _) = filled(&env);

    let c = fish(&env, "tok cre");
    assert_eq!(values(&c), ["create"]);
    assert!(help_of(&c, "create").starts_with("Create a token"), "{c:?}");
    let c = fish(&env, "tok revoke --dr");
    assert!(has(&c, "--dry-run") && has(&c, "--driver"), "{c:?}");
    assert!(has(&fish(&env, "tok revoke --st"), "--state"));
    let c = fish(&env, "tok list --state ");
    assert!(has(&c, "revoked") && has(&c, "all"), "{c:?}");
    assert_eq!(help_of(&c, "all"), "Every token, whatever its state");
    let c = fish(&env, "tok revoke ");
    assert_eq!(help_of(&c, &deploy), "deploy-7");
    assert_eq!(help_of(&c, &other), "(no name)");
    assert!(!has(&c, &gone), "{c:?}");
    let c = fish(&env, "tok inspect ");
    assert_eq!(help_of(&c, &gone), "old-ci (revoked)");
    let c = fish(&env, "tok --driver ");
    assert!(has(&c, "local") && has(&c, "tok"), "{c:?}");
}

#[test]
fn zsh_completes_from_fpath_on_the_first_tab() {
    let env = Env::new();
    let (deploy, _, gone, _) = filled(&env);

    let c = zsh(&env, "tok cre");
    assert_eq!(values(&c), ["create"]);
    assert!(help_of(&c, "create").starts_with("Create a token"), "{c:?}");
    let c = zsh(&env, "tok revoke --dr");
    assert!(has(&c, "--dry-run") && has(&c, "--driver"), "{c:?}");
    assert!(has(&zsh(&env, "tok revoke --st"), "--state"));
    let c = zsh(&env, "tok list --state ");
    assert!(has(&c, "exhausted") && has(&c, "all"), "{c:?}");
    let c = zsh(&env, "tok revoke ");
    assert_eq!(help_of(&c, &deploy), "deploy-7");
    assert!(!has(&c, &gone), "{c:?}");
}

#[test]
fn profiles_and_the_store_on_the_command_line_complete() {
    let env = Env::new();
    let elsewhere = env.home().join("elsewhere");
    let dir = elsewhere.to_str().unwrap();
    env.ok(&["profile", "add", "side", "--data-dir", dir]);
    env.ok(&["profile", "add", "prod", "--url", "https://tok.example"]);
    env.ok(&["profile", "add", "home", "--default"]);
    let (far, _) = env.create_json(&["--profile", "side", "--name", "far-away"]);
    let (near, _) = env.create_json(&["--name", "near"]);

    let c = bash(&env, "tok --profile ");
    assert_eq!(values(&c), ["home", "prod", "side"]);
    let c = fish(&env, "tok profile show ");
    assert_eq!(help_of(&c, "prod"), "tok https://tok.example");
    assert_eq!(help_of(&c, "home"), "local (default)");
    assert_eq!(values(&bash(&env, "tok profile remove s")), ["side"]);

    // The ids come from the store the line points at, by flag or profile.
    let c = bash(&env, "tok revoke ");
    assert!(has(&c, &near) && !has(&c, &far), "{c:?}");
    let c = bash(&env, &format!("tok --data-dir {dir} revoke "));
    assert!(has(&c, &far) && !has(&c, &near), "{c:?}");
    let c = fish(&env, "tok revoke --profile side ");
    assert_eq!(help_of(&c, &far), "far-away");
    assert!(!has(&c, &near), "{c:?}");
}

#[test]
fn completion_never_prints_an_error_nor_creates_a_store() {
    let mut env = Env::new();
    env.set("TOK_COMPLETE_TIMEOUT", "1s");
    // No store yet: flags only, and completing does not create one.
    let c = bash(&env, "tok revoke ");
    assert!(has(&c, "--yes") && !c.iter().any(|c| c.value.starts_with("tk_")));
    assert!(!env.data_dir().exists(), "completion created the store");

    // A gateway that cannot answer: no ids, no error in the command line.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let c = bash(&env, &format!("tok --url {url} revoke "));
    assert!(!c.iter().any(|c| c.value.starts_with("tk_")), "{c:?}");
    let c = fish(&env, &format!("tok --url {url} --profile nope inspect "));
    assert!(!c.iter().any(|c| c.value.starts_with("tk_")), "{c:?}");

    // A broken config file: still no error, commands still complete.
    let config = env.config_dir();
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("config.toml"), "this is [not toml").unwrap();
    assert_eq!(values(&bash(&env, "tok rot")), ["rotate"]);
    assert!(bash(&env, "tok --profile ").is_empty());
}

#[test]
fn a_store_that_fails_is_answered_from_the_cache() {
    let env = Env::new();
    let (deploy, _, _, secret) = filled(&env);
    assert!(has(&bash(&env, "tok revoke "), &deploy));
    // The store breaks: completion answers what it last saw, silently.
    std::fs::write(env.data_dir().join("tok.db"), "not a database").unwrap();
    let o = env.run(&["list"]);
    assert_ne!(code(&o), 0, "the broken store fails for real commands");
    let c = bash(&env, "tok revoke ");
    assert!(has(&c, &deploy), "{c:?}");
    let c = zsh(&env, "tok inspect ");
    assert_eq!(help_of(&c, &deploy), "deploy-7");
    let cache = all_bytes_under(&env.home().join("cache"));
    assert!(!contains_bytes(&cache, secret.as_bytes()));
}

// ---------------------------------------------------------------------------
// Man pages.

fn man_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("man"))
        .unwrap_or_else(|e| panic!("no man/ directory ({e}); {HINT}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    pages
}

fn render(env: &Env, page: &Path) -> String {
    let mut c = shell(env, "man");
    c.env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .args(["--warnings", "-l"])
        .arg(page);
    let f = finish(c, "man");
    expect_clean(&f, &format!("man --warnings -l {}", page.display()));
    f.stdout
}

#[test]
fn every_man_page_renders_without_warnings_with_its_sections() {
    let env = Env::new();
    let pages = man_pages();
    for name in [
        "tok.1",
        "tok-create.1",
        "tok-revoke.1",
        "tok-profile-show.1",
    ] {
        assert!(
            pages.iter().any(|p| p.ends_with(name)),
            "man/{name} is missing; {HINT}"
        );
    }
    for page in &pages {
        let text = render(&env, page);
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "EXAMPLES",
            "SEE ALSO",
        ] {
            assert!(
                text.lines().any(|l| l == section),
                "{} has no {section} section (a command without examples needs an \
                 `Examples:` block in its doc comment in src/cli.rs):\n{text}",
                page.display()
            );
        }
    }
    let create = render(&env, &repo().join("man/tok-create.1"));
    assert!(create.contains("tok create --ttl 15m --scope orders:read"));
    assert!(create.contains("tok.db"));
}

#[test]
fn tok_1_documents_every_variable_and_exit_code() {
    let env = Env::new();
    let text = render(&env, &repo().join("man/tok.1"));
    let env_rs = std::fs::read_to_string(repo().join("src/env.rs")).unwrap();
    let names: Vec<&str> = env_rs
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const"))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    let environment = text
        .split("\nENVIRONMENT\n")
        .nth(1)
        .expect("an ENVIRONMENT section");
    for name in names {
        assert!(
            environment.contains(name),
            "{name} (src/env.rs) is not in tok.1's ENVIRONMENT; describe it in src/man.rs"
        );
    }
    let exit = text.split("\nEXIT STATUS\n").nth(1).unwrap();
    for code in ["0", "1", "2", "3", "4", "5", "6"] {
        assert!(
            exit.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "exit code {code} missing:\n{exit}"
        );
    }
    for file in ["config.toml", "tok.db", "completion"] {
        assert!(text.contains(file), "FILES lacks {file}");
    }
}

#[test]
fn man_finds_the_pages_installed_where_the_readme_says() {
    let env = Env::new();
    let bin = env.home().join(".local/bin");
    let man1 = env.home().join(".local/share/man/man1");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&man1).unwrap();
    for page in man_pages() {
        std::fs::copy(&page, man1.join(page.file_name().unwrap())).unwrap();
    }
    // man-db finds ~/.local/share/man through ~/.local/bin on PATH.
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (name, needle) in [
        ("tok", "tok-create(1)"),
        ("tok-create", "tok create --ttl 15m --scope orders:read"),
    ] {
        let mut c = shell(&env, "man");
        c.env("PATH", &path)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .args(["--warnings", name]);
        let f = finish(c, "man");
        expect_clean(&f, &format!("man {name}"));
        assert!(f.stdout.contains(needle), "man {name}:\n{}", f.stdout);
    }
}
