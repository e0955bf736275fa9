//! Man pages: `tok.1` and one page per subcommand, rendered by clap_mangen from
//! `Cli::command()` (so new commands get a page without edits here), with the
//! EXIT STATUS, ENVIRONMENT, FILES and EXAMPLES sections that man readers expect.

use crate::cli::{Cli, EXIT_CODES_HELP};
use crate::drivers::DriverKind;
use clap::{CommandFactory, ValueEnum};
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;
use std::io::Write;

/// One rendered page: its file name in `man/` and its roff source.
pub struct Page {
    pub file_name: String,
    pub roff: String,
}

/// Environment variables that no option carries (those with an `env` twin are
/// read off the command tree). A test checks that every name in src/env.rs is
/// documented, here or there.
const OTHER_ENV: &[(&str, &str)] = &[
    (
        crate::env::CONFIG_DIR,
        "The directory of config.toml [default: $XDG_CONFIG_HOME/tok].",
    ),
    (
        crate::env::COMPLETE,
        "Set by the completion scripts (to bash, zsh, fish, powershell or elvish) to ask tok for completions instead of running a command.",
    ),
    (
        crate::env::COMPLETE_TIMEOUT,
        "How long shell completion waits for live token ids before it answers from its cache [default: 1s].",
    ),
    (
        crate::env::KEYRING_TIMEOUT,
        "How long tok waits for one OS keyring call (a locked or hung keyring) before it fails with exit status 4 [default: 10s].",
    ),
    (
        "DBUS_SESSION_BUS_ADDRESS",
        "On Linux, the D-Bus session bus where tok finds the Secret Service (gnome-keyring, KeePassXC) that holds credentials stored by tok login.",
    ),
    (
        crate::env::VAULT_ADDR,
        "The vault driver's server address when neither --url, $TOK_URL nor the profile gives one, as Vault's own CLI reads it.",
    ),
    (
        crate::env::AUTH_SECRET,
        "tok serve --auth-listen: a shared secret that forward-auth callers must send in X-Tok-Auth-Secret (see docs/forward-auth.md).",
    ),
    (
        crate::env::NO_COLOR,
        "When set and not empty, no colour (--color always still colours).",
    ),
    (
        crate::env::CLICOLOR_FORCE,
        "When set and not 0, colour even off a terminal (NO_COLOR wins).",
    ),
    (
        crate::env::GITHUB_ACTIONS,
        "When true, create and rotate also print ::add-mask:: for the new secret on stderr, so that GitHub Actions hides it in logs.",
    ),
    (
        "XDG_CONFIG_HOME",
        "Base of the config directory [default: ~/.config].",
    ),
    (
        "XDG_DATA_HOME",
        "Base of the local driver's data directory [default: ~/.local/share].",
    ),
    (
        "XDG_CACHE_HOME",
        "Base of the completion cache [default: ~/.cache].",
    ),
];

/// Every page, `tok.1` first, then the subcommands depth first.
pub fn pages() -> Vec<Page> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = Vec::new();
    walk(&root, &root, None, &mut pages);
    pages
}

fn walk(root: &clap::Command, cmd: &clap::Command, parent: Option<&str>, out: &mut Vec<Page>) {
    out.push(page(root, cmd, parent));
    let name = display_name(cmd);
    for sub in visible_subcommands(cmd) {
        walk(root, sub, Some(&name), out);
    }
}

fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

fn display_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

fn page(root: &clap::Command, cmd: &clap::Command, parent: Option<&str>) -> Page {
    let name = display_name(cmd);
    let version = root.get_version().unwrap_or_default();
    let man = Man::new(cmd.clone());
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut section = |f: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut buf = Vec::new();
        f(&mut buf).expect("writing to a Vec cannot fail");
        parts.push(buf);
    };
    let (description, examples) = split_examples(cmd);
    // Written by hand: the roff crate drops an empty date argument, which
    // would shift the source into the date's place.
    section(&|w| {
        writeln!(
            w,
            ".TH \"{}\" \"1\" \"\" \"tok {version}\" \"tok manual\"",
            name.to_uppercase()
        )
    });
    section(&|w| man.render_name_section(w));
    section(&|w| roff_synopsis(root, cmd, parent).to_writer(w));
    section(&|w| roff_description(&description).to_writer(w));
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        section(&|w| man.render_options_section(w));
    }
    if visible_subcommands(cmd).next().is_some() {
        section(&|w| man.render_subcommands_section(w));
    }
    section(&|w| roff_exit_status().to_writer(w));
    section(&|w| roff_environment(root, cmd, parent.is_none()).to_writer(w));
    section(&|w| roff_files().to_writer(w));
    let examples = if examples.is_empty() {
        subcommand_examples(cmd)
    } else {
        examples
    };
    if !examples.is_empty() {
        section(&|w| roff_examples(&examples).to_writer(w));
    }
    section(&|w| roff_see_also(cmd, parent).to_writer(w));
    section(&|w| man.render_version_section(w));
    Page {
        file_name: format!("{name}.1"),
        roff: join_roff(parts),
    }
}

/// clap_mangen starts each rendered part with the same apostrophe preamble;
/// a page needs it once, at the top.
fn join_roff(parts: Vec<Vec<u8>>) -> String {
    let texts: Vec<String> = parts
        .into_iter()
        .map(|p| String::from_utf8(p).expect("roff is UTF-8"))
        .collect();
    let preamble = Roff::new().render();
    let mut out = preamble.clone();
    for t in &texts {
        out.push_str(t.strip_prefix(&preamble).unwrap_or(t));
    }
    out
}

/// The long help, split at its `Examples:` line into the description and the
/// example lines (unindented).
fn split_examples(cmd: &clap::Command) -> (String, Vec<String>) {
    let text = cmd
        .get_long_about()
        .or_else(|| cmd.get_about())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let mut description = Vec::new();
    let mut examples = Vec::new();
    let mut in_examples = false;
    for line in text.lines() {
        if line.trim() == "Examples:" {
            in_examples = true;
        } else if in_examples && (line.starts_with(' ') || line.trim().is_empty()) {
            if !line.trim().is_empty() {
                examples.push(line.trim().to_string());
            }
        } else {
            in_examples = false;
            description.push(line);
        }
    }
    (description.join("\n").trim().to_string(), examples)
}

/// For a command with subcommands: the first example of each one.
fn subcommand_examples(cmd: &clap::Command) -> Vec<String> {
    visible_subcommands(cmd)
        .filter_map(|sub| {
            let (_, ex) = split_examples(sub);
            ex.into_iter()
                .next()
                .or_else(|| subcommand_examples(sub).into_iter().next())
        })
        .collect()
}

/// Plain lines are filled into paragraphs; indented lines are kept as they are.
/// `tok list [--state STATE] [--name GLOB] ... [GLOBAL OPTIONS]`: the
/// command's own options with their value names, then its arguments; the
/// global options, listed on `tok.1`, stand as one item.
fn roff_synopsis(root: &clap::Command, cmd: &clap::Command, parent: Option<&str>) -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["SYNOPSIS"]);
    // `tok-profile` (the display name of the parent page) is typed `tok profile`.
    let name = match parent {
        Some(p) => format!("{} {}", p.replace('-', " "), cmd.get_name()),
        None => display_name(cmd),
    };
    let mut line = vec![bold(name)];
    let own = |a: &&clap::Arg| {
        !a.is_hide_set()
            && (parent.is_none() || !a.is_global_set())
            && !matches!(a.get_id().as_str(), "help" | "version")
    };
    let value = |a: &clap::Arg| {
        a.get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| a.get_id().as_str().to_uppercase())
    };
    for a in cmd
        .get_arguments()
        .filter(own)
        .filter(|a| !a.is_positional())
    {
        let flag = match (a.get_short(), a.get_long()) {
            (_, Some(l)) => format!("--{l}"),
            (Some(c), None) => format!("-{c}"),
            _ => continue,
        };
        line.push(roman(" ["));
        line.push(bold(flag));
        if a.get_action().takes_values() {
            line.push(roman(" "));
            line.push(italic(value(a)));
        }
        line.push(roman("]"));
        if matches!(
            a.get_action(),
            clap::ArgAction::Append | clap::ArgAction::Count
        ) {
            line.push(roman("..."));
        }
    }
    for a in cmd.get_positionals().filter(own) {
        let v = value(a);
        line.push(roman(" "));
        line.push(if a.is_required_set() {
            italic(v)
        } else {
            roman(format!("[{v}]"))
        });
        if matches!(a.get_action(), clap::ArgAction::Append) {
            line.push(roman("..."));
        }
    }
    if parent.is_some() && root.get_arguments().any(|a| a.is_global_set()) {
        line.push(roman(" ["));
        line.push(italic("GLOBAL OPTIONS"));
        line.push(roman("]"));
    }
    if cmd.has_subcommands() {
        line.push(roman(" "));
        line.push(italic("COMMAND"));
    }
    r.text(line);
    r
}

fn roff_description(text: &str) -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["DESCRIPTION"]);
    let mut verbatim = false;
    for line in text.lines() {
        let indented = line.starts_with(' ');
        if indented && !verbatim {
            r.control("nf", []);
            verbatim = true;
        } else if !indented && verbatim {
            r.control("fi", []);
            verbatim = false;
        }
        if line.trim().is_empty() {
            r.control("PP", []);
        } else if indented {
            r.text([roman(line.strip_prefix("  ").unwrap_or(line))]);
        } else {
            r.text([roman(line)]);
        }
    }
    if verbatim {
        r.control("fi", []);
    }
    r
}

/// The exit codes, from the same text `tok --help` shows.
pub fn exit_codes() -> Vec<(String, String)> {
    EXIT_CODES_HELP
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (code, text) = line.trim().split_once(char::is_whitespace)?;
            code.parse::<u8>().ok()?;
            Some((code.to_string(), text.trim().to_string()))
        })
        .collect()
}

fn roff_exit_status() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["EXIT STATUS"]);
    for (code, text) in exit_codes() {
        r.control("TP", []).text([bold(code)]).text([roman(text)]);
    }
    r
}

/// The variables of the options on this page (on tok.1, of every command),
/// the driver credentials, and the rest.
fn roff_environment(root: &clap::Command, cmd: &clap::Command, all: bool) -> Roff {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut add = |name: String, text: String| {
        if !vars.iter().any(|(n, _)| *n == name) {
            vars.push((name, text));
        }
    };
    let mut commands = vec![cmd];
    if all {
        let mut stack = vec![root];
        while let Some(c) = stack.pop() {
            if !std::ptr::eq(c, root) {
                commands.push(c);
            }
            stack.extend(visible_subcommands(c));
        }
    }
    for c in commands {
        for arg in c.get_arguments().filter(|a| !a.is_hide_set()) {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let whose = if arg.is_global_set() || std::ptr::eq(c, cmd) {
                format!("--{long}")
            } else {
                format!("{} --{long}", c.get_bin_name().unwrap_or(c.get_name()))
            };
            add(
                env.to_string_lossy().into_owned(),
                format!("{}. Same as {whose}.", help.trim_end_matches('.')),
            );
        }
    }
    for kind in DriverKind::value_variants() {
        for var in crate::credentials::env_vars(*kind) {
            let drivers: Vec<&str> = DriverKind::value_variants()
                .iter()
                .filter(|k| crate::credentials::env_vars(**k).contains(var))
                .map(|k| k.as_str())
                .collect();
            add(
                var.to_string(),
                format!(
                    "The admin credential for the {} driver{}. Read from the environment, never from the command line; it comes before a credential stored by tok login.",
                    drivers.join(", "),
                    if drivers.len() > 1 { "s" } else { "" }
                ),
            );
        }
    }
    for (name, text) in OTHER_ENV {
        add(name.to_string(), text.to_string());
    }
    let mut r = Roff::new();
    r.control("SH", ["ENVIRONMENT"]);
    for (name, text) in vars {
        r.control("TP", []).text([bold(name)]).text([roman(text)]);
    }
    r
}

fn roff_files() -> Roff {
    let config = format!("$XDG_CONFIG_HOME/tok/{}", crate::config::CONFIG_FILE);
    let db = format!("$XDG_DATA_HOME/tok/{}", crate::store::DB_FILE);
    let mut r = Roff::new();
    r.control("SH", ["FILES"]);
    r.control("TP", []).text([italic(config)]).text([roman(
        "Profiles (tok profile add). $TOK_CONFIG_DIR moves it; without XDG_CONFIG_HOME it is ~/.config/tok/config.toml. Holds no secret.",
    )]);
    r.control("TP", []).text([italic(db)]).text([roman(
        "The local driver's SQLite store, with its -wal and -shm files beside it. --data-dir, $TOK_DATA_DIR or a profile's data_dir move it; without XDG_DATA_HOME it is in ~/.local/share/tok. It keeps hashes of secrets, never a secret.",
    )]);
    r.control("TP", [])
        .text([italic("$XDG_CONFIG_HOME/tok/logins.toml")])
        .text([roman(
            "Where tok login stored each credential (OS keyring or file), by profile and gateway URL. No secret. tok asks the keyring only for credentials listed here.",
        )]);
    r.control("TP", [])
        .text([italic("$XDG_CONFIG_HOME/tok/credentials/credentials.toml")])
        .text([roman(
            "Admin credentials in plaintext, only when stored with tok login --insecure-storage: mode 0600 in a 0700 directory, refused when group or others may read it. Without that flag tok login uses the OS keyring (service tok) and writes no file.",
        )]);
    r.control("TP", [])
        .text([italic("$XDG_CACHE_HOME/tok/credential-expiry.json")])
        .text([roman(
            "When each stored credential expires, as tok login and tok auth status last heard from the gateway, for the warning 24 hours before. No secret. Safe to delete.",
        )]);
    r.control("TP", []).text([italic("$XDG_CACHE_HOME/tok/completion/")]).text([roman(
        "The completion cache: token ids, names and states per gateway, never a secret. Safe to delete.",
    )]);
    r
}

fn roff_examples(lines: &[String]) -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["EXAMPLES"]).control("nf", []);
    for line in lines {
        r.text([roman(line.as_str())]);
    }
    r.control("fi", []);
    r
}

fn roff_see_also(cmd: &clap::Command, parent: Option<&str>) -> Roff {
    let name = display_name(cmd);
    let mut refs: Vec<String> = Vec::new();
    if let Some(p) = parent {
        if p != "tok" {
            refs.push("tok".into());
        }
        refs.push(p.to_string());
    }
    refs.extend(visible_subcommands(cmd).map(|s| format!("{name}-{}", s.get_name())));
    let mut r = Roff::new();
    r.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, page) in refs.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(page.as_str()));
        line.push(roman("(1)"));
    }
    r.text(line);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_come_from_the_help_text() {
        let codes = exit_codes();
        assert_eq!(codes.first().map(|c| c.0.as_str()), Some("0"));
        assert!(codes
            .iter()
            .any(|(c, t)| c == "3" && t.starts_with("not found")));
    }

    #[test]
    fn examples_are_split_off_the_description() {
        let root = Cli::command();
        let create = root.find_subcommand("create").unwrap();
        let (desc, ex) = split_examples(create);
        assert!(!desc.contains("Examples:"));
        assert!(ex[0].starts_with("tok create --ttl 15m"), "{ex:?}");
    }

    #[test]
    fn hidden_commands_get_no_page() {
        let names: Vec<String> = pages().into_iter().map(|p| p.file_name).collect();
        assert!(names.contains(&"tok.1".to_string()));
        assert!(names.contains(&"tok-profile-show.1".to_string()));
        assert!(!names.iter().any(|n| n.contains("__")), "{names:?}");
    }
}
