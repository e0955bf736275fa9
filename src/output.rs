//! Rendering, in one place: every kind of row (token, audit entry, revoke
//! report, auth status, profile, driver) declares its columns once, as a
//! [`Record`], and one emitter, [`Printer`], writes it as a table, plain rows,
//! JSON, JSONL, TSV or env lines. Colour and TTY decisions live here, and every
//! field of a terminal or line format passes through [`text::terminal_safe`]
//! here, once; JSON keeps the exact values.
//!
//! stdout is data only; everything for people goes to stderr.
//!
//! Tables follow kubectl's and gh's (`cli/go-gh` tableprinter): borderless,
//! fitted to the terminal, the id never cut (see `table`).

mod printer;
mod rows;
pub mod table;

pub use printer::{check_json, col, print_one, Cell, Column, Mode, Printer, Record, Show};

use crate::cli::{ColorChoice, OutputFormat};
use crate::duration;
use crate::model::{State, Token};
use crate::text;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::io::{self, IsTerminal, Write};

/// Output settings, decided once per run.
#[derive(Debug, Clone)]
pub struct Out {
    pub format: Option<OutputFormat>,
    /// The format came from TOK_OUTPUT, not from `-o`: a command that has no
    /// such form falls back to its default instead of failing.
    pub format_from_env: bool,
    /// `--json FIELDS`: only these fields, in JSON.
    pub fields: Option<Vec<String>>,
    /// `--jq EXPR`: JSON filtered through jq (jaq).
    pub jq: Option<String>,
    pub color: bool,
    pub stdout_tty: bool,
    pub stderr_tty: bool,
    pub stdin_tty: bool,
    pub quiet: bool,
    pub verbose: u8,
}

impl Out {
    pub fn new(format: Option<OutputFormat>, choice: ColorChoice, quiet: bool, verbose: u8) -> Out {
        let stdout_tty = io::stdout().is_terminal();
        Out {
            format,
            format_from_env: false,
            fields: None,
            jq: None,
            color: use_color(choice, stdout_tty),
            stdout_tty,
            stderr_tty: io::stderr().is_terminal(),
            stdin_tty: io::stdin().is_terminal(),
            quiet,
            verbose,
        }
    }

    /// A message for people, on stderr, unless --quiet.
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            let _ = writeln!(io::stderr(), "{}", msg.as_ref());
        }
    }

    /// A warning on stderr, shown even with --quiet.
    pub fn warn(&self, msg: impl AsRef<str>) {
        let _ = writeln!(io::stderr(), "warning: {}", msg.as_ref());
    }

    /// Prompts are allowed only when a person can see and answer them.
    pub fn interactive(&self) -> bool {
        self.stdin_tty && self.stderr_tty
    }

    /// Asks a yes/no question on stderr and reads a whole line from stdin.
    pub fn confirm(&self, question: &str) -> io::Result<bool> {
        confirm(&mut io::stdin().lock(), &mut io::stderr(), question)
    }
}

/// Asks `question` and reads whole lines: `y`/`yes` is yes, `n`/`no`, an empty
/// line or the end of input is no (any case); anything else asks again.
/// Reading the line in the terminal's own line mode (no raw single key, as
/// dialoguer's Confirm does) leaves nothing typed for the shell: `yes⏎` is
/// consumed whole.
pub fn confirm(
    input: &mut dyn io::BufRead,
    tty: &mut dyn Write,
    question: &str,
) -> io::Result<bool> {
    loop {
        write!(tty, "{question} [y/N] ")?;
        tty.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(tty)?;
            return Ok(false);
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Ok(true),
            "" | "n" | "no" => return Ok(false),
            _ => writeln!(tty, "please answer yes or no")?,
        }
    }
}

/// `--color` > `NO_COLOR` (non-empty) > `CLICOLOR_FORCE` > TTY detection.
pub fn use_color(choice: ColorChoice, tty: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            let set = |v: &str| std::env::var(v).is_ok_and(|x| !x.is_empty());
            if set(crate::env::NO_COLOR) {
                false
            } else if set(crate::env::CLICOLOR_FORCE)
                && std::env::var(crate::env::CLICOLOR_FORCE).as_deref() != Ok("0")
            {
                true
            } else {
                tty
            }
        }
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn labels(t: &Token) -> String {
    t.labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes a JSON value compactly; JSON is never coloured.
// `io::Error::from` gives back the writer's own error (a closed stdout stays a
// BrokenPipe, which exits quietly); `io::Error::other` would hide its kind.
pub fn write_json<T: Serialize + ?Sized>(w: &mut dyn Write, v: &T) -> io::Result<()> {
    serde_json::to_writer(&mut *w, v).map_err(io::Error::from)
}

pub fn write_json_pretty<T: Serialize + ?Sized>(w: &mut dyn Write, v: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, v).map_err(io::Error::from)?;
    writeln!(w)
}

/// Every field of one token, for `inspect` without `-o`.
pub fn write_details(w: &mut dyn Write, t: &Token, now: DateTime<Utc>) -> io::Result<()> {
    let rel = |x: Option<DateTime<Utc>>, none: &str| match x {
        Some(x) => format!("{} ({})", rfc3339(x), duration::relative(x, now)),
        None => none.to_string(),
    };
    let dash = |s: &Option<String>| match s {
        Some(s) => text::terminal_safe(s).into_owned(),
        None => "-".into(),
    };
    let mut rows: Vec<(&str, String)> = vec![
        ("id", t.id.clone()),
        ("name", dash(&t.name)),
        ("state", t.state.as_str().into()),
        ("fingerprint", t.fingerprint.clone()),
        ("description", dash(&t.description)),
        (
            "scopes",
            if t.scopes.is_empty() {
                "-".into()
            } else {
                text::terminal_safe(&t.scopes.join(", ")).into_owned()
            },
        ),
        (
            "labels",
            if t.labels.is_empty() {
                "-".into()
            } else {
                text::terminal_safe(&labels(t)).into_owned()
            },
        ),
        ("created", rel(Some(t.created_at), "-")),
        ("created by", dash(&t.created_by)),
        ("expires", rel(t.expires_at, "never")),
    ];
    if t.state == State::Active {
        if let Some(e) = t.expires_at {
            let left = (e - now).num_seconds().max(0) as u64;
            rows.push(("lifetime left", duration::rough(left)));
        }
    }
    rows.push((
        "uses",
        match t.max_uses {
            Some(m) => format!("{} of {m} ({} left)", t.uses, m.saturating_sub(t.uses)),
            None => format!("{} (no limit)", t.uses),
        },
    ));
    if let Some(r) = &t.rate {
        rows.push(("rate", r.describe()));
    }
    if let Some(q) = &t.quota {
        rows.push(("quota", q.to_string()));
    }
    if !t.allow_ip.is_empty() {
        let ranges: Vec<String> = t.allow_ip.iter().map(|n| n.to_string()).collect();
        rows.push(("allowed from", ranges.join(", ")));
    }
    rows.push(("last used", rel(t.last_used_at, "never")));
    if t.revoked_at.is_some() {
        rows.push(("revoked", rel(t.revoked_at, "-")));
        rows.push(("revoked by", dash(&t.revoked_by)));
        rows.push(("revoke reason", dash(&t.revoke_reason)));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        writeln!(w, "{k:<width$}  {}", crate::text::terminal_safe(&v))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(format: OutputFormat) -> Out {
        Out {
            format: Some(format),
            format_from_env: false,
            fields: None,
            jq: None,
            color: false,
            stdout_tty: false,
            stderr_tty: false,
            stdin_tty: false,
            quiet: true,
            verbose: 0,
        }
    }

    fn hostile() -> Token {
        let now = Utc::now();
        Token {
            id: "tk_0123456789ab".into(),
            name: Some("x\u{1b}]0;OWNED\u{7}\u{1b}[2J\n\u{202e}forged".into()),
            description: Some("tab\there".into()),
            scopes: vec!["a\u{9b}b".into()],
            labels: [("k".to_string(), "v\r".to_string())].into(),
            created_at: now,
            created_by: Some("local:\u{200b}me".into()),
            expires_at: None,
            max_uses: None,
            uses: 0,
            last_used_at: None,
            state: State::Active,
            revoked_at: None,
            revoked_by: None,
            revoke_reason: Some("\u{1b}[31mred".into()),
            fingerprint: "tok_abcdef…".into(),
            rate: None,
            quota: None,
            allow_ip: Vec::new(),
        }
    }

    #[test]
    fn untrusted_fields_are_made_safe_in_every_line_format_and_exact_in_json() {
        for format in [
            OutputFormat::Table,
            OutputFormat::Wide,
            OutputFormat::Plain,
            OutputFormat::Tsv,
        ] {
            let o = out(format);
            let mut buf = Vec::new();
            let mut p = Printer::new(&o, Box::new(&mut buf)).unwrap();
            p.push(hostile()).unwrap();
            p.finish().unwrap();
            let text = String::from_utf8(buf).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{format:?}: {text}");
            assert!(
                !text
                    .chars()
                    .any(|c| c != '\n' && c != '\t' && text::is_unsafe(c)),
                "{format:?}: {text:?}"
            );
            assert!(text.contains("\\u{001b}]0;OWNED"), "{format:?}: {text}");
        }
        let o = out(OutputFormat::Json);
        let mut buf = Vec::new();
        let mut p = Printer::new(&o, Box::new(&mut buf)).unwrap();
        p.push(hostile()).unwrap();
        p.finish().unwrap();
        let v: Vec<Token> = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v[0], hostile_at(v[0].created_at));
    }

    fn hostile_at(at: DateTime<Utc>) -> Token {
        Token {
            created_at: at,
            ..hostile()
        }
    }

    #[test]
    fn confirm_reads_whole_lines() {
        let ask = |typed: &str| {
            let mut screen = Vec::new();
            let answer = confirm(&mut typed.as_bytes(), &mut screen, "Go?").unwrap();
            (answer, String::from_utf8(screen).unwrap())
        };
        for yes in ["y\n", "yes\n", "YES\n", " Yes \r\n", "maybe\ny\n"] {
            assert!(ask(yes).0, "{yes:?}");
        }
        for no in ["\n", "n\n", "No\n", "", "nope\n\n"] {
            assert!(!ask(no).0, "{no:?}");
        }
        let (_, screen) = ask("maybe\nn\n");
        assert_eq!(screen, "Go? [y/N] please answer yes or no\nGo? [y/N] ");
    }
}
