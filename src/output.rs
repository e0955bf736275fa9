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

mod rows;
pub mod table;

use crate::cli::{ColorChoice, OutputFormat};
use crate::duration;
use crate::error::UserError;
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

/// Where a column appears in tables and plain rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Always.
    Always,
    /// In plain rows, and in tables when the terminal is wide enough.
    Fit,
    /// Only with `-o wide` (and in TSV and JSON, as every column is).
    Wide,
    /// Never in tables: TSV and JSON only.
    Data,
}

/// One column of a row kind: its field name (the TSV header and the JSON key),
/// its table header, where it shows, and its place among the table's columns.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub key: &'static str,
    pub header: &'static str,
    pub show: Show,
    /// Order in tables and plain rows (TSV keeps the declared order).
    pub pos: u8,
}

pub const fn col(key: &'static str, header: &'static str, show: Show, pos: u8) -> Column {
    Column {
        key,
        header,
        show,
        pos,
    }
}

/// A field's value, as each format shows it.
#[derive(Debug, Clone)]
pub enum Cell {
    /// Text, possibly untrusted; `""` shows as `-` to people.
    Text(String),
    /// A time: relative in tables, RFC 3339 elsewhere; None shows as the word.
    Time(Option<DateTime<Utc>>, &'static str),
    /// A token state, coloured in tables and plain rows when colour is on.
    State(State),
}

impl Cell {
    pub fn opt(s: Option<&str>) -> Cell {
        Cell::Text(s.unwrap_or_default().to_string())
    }
}

/// A kind of row that the emitter can print.
pub trait Record: Serialize {
    /// Its columns, in TSV order; JSON keys and TSV headers are `key`s.
    const COLUMNS: &'static [Column];
    /// What an empty listing says on stderr.
    const NONE: &'static str;
    /// The value of `COLUMNS[i]` for people (`human`: tables and plain rows)
    /// or for TSV, where a few columns read differently (`uses` is `3/10` to
    /// people and `3` in TSV, beside `max_uses`).
    fn cell(&self, i: usize, human: bool) -> Cell;
    /// `NAME=value` lines for `-o env`, where that makes sense for one record.
    fn env(&self) -> Option<Vec<(String, String)>> {
        None
    }
}

/// The format a printer writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Table { wide: bool },
    Plain,
    Json,
    Jsonl,
    Tsv,
    Env,
}

impl Out {
    /// The mode for a listing, or a usage error for `-o env` typed on one (from
    /// TOK_OUTPUT it is ignored: it was set for create and rotate).
    pub fn list_mode(&self) -> Result<Mode, UserError> {
        self.mode(false)
    }

    /// The mode for one record (inspect), where `-o env` is allowed.
    pub fn one_mode(&self) -> Result<Mode, UserError> {
        self.mode(true)
    }

    fn mode(&self, env_ok: bool) -> Result<Mode, UserError> {
        if self.fields.is_some() || self.jq.is_some() {
            return Ok(match self.format {
                Some(OutputFormat::Jsonl) => Mode::Jsonl,
                _ => Mode::Json,
            });
        }
        Ok(match self.format {
            Some(OutputFormat::Table) => Mode::Table { wide: false },
            Some(OutputFormat::Wide) => Mode::Table { wide: true },
            Some(OutputFormat::Plain) => Mode::Plain,
            Some(OutputFormat::Json) => Mode::Json,
            Some(OutputFormat::Jsonl) => Mode::Jsonl,
            Some(OutputFormat::Tsv) => Mode::Tsv,
            Some(OutputFormat::Env) if env_ok => Mode::Env,
            Some(OutputFormat::Env) if !self.format_from_env => {
                return Err(UserError::usage(
                    "`-o env` is for one token (create, rotate, inspect), not a list",
                )
                .hint("use -o json, jsonl, tsv, plain, table or wide"))
            }
            None | Some(OutputFormat::Env) if self.stdout_tty => Mode::Table { wide: false },
            None | Some(OutputFormat::Env) => Mode::Plain,
        })
    }

    /// The terminal's width for tables: COLUMNS, else the terminal's own, else
    /// none (no fitting) off a terminal.
    fn columns(&self) -> Option<usize> {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|w| *w > 0)
            .or_else(|| terminal_size::terminal_size().map(|(w, _)| w.0 as usize))
            .filter(|w| *w >= 20)
    }
}

/// How many rows a table or plain listing holds before it writes them out:
/// enough to align columns, small enough that memory does not grow with the store.
const CHUNK: usize = 500;

/// Streams records of one kind in the chosen format.
pub struct Printer<'a, R: Record> {
    out: &'a Out,
    w: Box<dyn Write + 'a>,
    mode: Mode,
    count: usize,
    pending: Vec<R>,
    /// Column layout, fixed by the first rows written.
    layout: Option<Vec<(usize, usize)>>,
    /// JSON values held for --jq over a whole array.
    held: Vec<serde_json::Value>,
    filter: Option<crate::jq::Filter>,
    now: DateTime<Utc>,
}

impl<'a, R: Record> Printer<'a, R> {
    /// A printer for a listing.
    pub fn new(out: &'a Out, w: Box<dyn Write + 'a>) -> Result<Self, UserError> {
        let mode = out.list_mode()?;
        Self::with_mode(out, w, mode)
    }

    pub fn with_mode(out: &'a Out, w: Box<dyn Write + 'a>, mode: Mode) -> Result<Self, UserError> {
        if let Some(fields) = &out.fields {
            check_fields::<R>(fields)?;
        }
        let filter = out.jq.as_deref().map(crate::jq::Filter::new).transpose()?;
        Ok(Printer {
            out,
            w,
            mode,
            count: 0,
            pending: Vec::new(),
            layout: None,
            held: Vec::new(),
            filter,
            now: Utc::now(),
        })
    }

    /// The record as JSON, with only --json's fields when given.
    fn json(&self, r: &R) -> io::Result<serde_json::Value> {
        let v = serde_json::to_value(r).map_err(io::Error::from)?;
        Ok(match &self.out.fields {
            Some(fields) => select(v, fields),
            None => v,
        })
    }

    /// One record as compact JSON: its fields in declared order, or only
    /// --json's.
    fn write_record(&mut self, r: &R) -> io::Result<()> {
        match &self.out.fields {
            None => write_json(&mut self.w, r),
            Some(_) => {
                let v = self.json(r)?;
                write_json(&mut self.w, &v)
            }
        }
    }

    pub fn push(&mut self, r: R) -> io::Result<()> {
        match self.mode {
            Mode::Json => {
                if self.filter.is_some() {
                    let v = self.json(&r)?;
                    self.held.push(v);
                } else {
                    self.w
                        .write_all(if self.count == 0 { b"[\n  " } else { b",\n  " })?;
                    self.write_record(&r)?;
                }
            }
            Mode::Jsonl => match &self.filter {
                Some(f) => {
                    let v = self.json(&r)?;
                    f.run(v, &mut self.w)?
                }
                None => {
                    self.write_record(&r)?;
                    self.w.write_all(b"\n")?;
                }
            },
            Mode::Tsv => {
                if self.count == 0 {
                    self.tsv_header()?;
                }
                let row: Vec<String> = (0..R::COLUMNS.len())
                    .map(|i| self.text(&r.cell(i, false), false).into_owned())
                    .collect();
                writeln!(self.w, "{}", row.join("\t"))?;
            }
            Mode::Env => {
                for (k, v) in r.env().unwrap_or_default() {
                    writeln!(self.w, "{k}={}", text::terminal_safe(&v))?;
                }
            }
            Mode::Table { .. } | Mode::Plain => {
                self.pending.push(r);
                if self.pending.len() >= CHUNK {
                    self.flush_pending()?;
                }
            }
        }
        self.count += 1;
        Ok(())
    }

    fn tsv_header(&mut self) -> io::Result<()> {
        let header: Vec<&str> = R::COLUMNS.iter().map(|c| c.key).collect();
        writeln!(self.w, "{}", header.join("\t"))
    }

    /// A cell as text: terminal-safe, `-` for nothing to people.
    fn text<'c>(&self, cell: &'c Cell, table: bool) -> std::borrow::Cow<'c, str> {
        let human = !matches!(self.mode, Mode::Tsv);
        match cell {
            Cell::Text(s) if s.is_empty() && human => "-".into(),
            Cell::Text(s) => text::terminal_safe(s),
            Cell::Time(Some(t), _) if table => duration::relative(*t, self.now).into(),
            Cell::Time(Some(t), _) => rfc3339(*t).into(),
            Cell::Time(None, word) if human => (*word).into(),
            Cell::Time(None, _) => "".into(),
            Cell::State(s) => s.as_str().into(),
        }
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        let rows = std::mem::take(&mut self.pending);
        let (table, wide) = match self.mode {
            Mode::Table { wide } => (true, wide),
            _ => (false, false),
        };
        // The columns this format shows, in table order.
        let mut idx: Vec<usize> = (0..R::COLUMNS.len())
            .filter(|&i| match R::COLUMNS[i].show {
                Show::Always | Show::Fit => true,
                Show::Wide => wide,
                Show::Data => false,
            })
            .collect();
        idx.sort_by_key(|&i| R::COLUMNS[i].pos);
        let cols: Vec<table::Col> = idx
            .iter()
            .map(|&i| table::Col {
                header: R::COLUMNS[i].header,
                keep: R::COLUMNS[i].key == "id" || R::COLUMNS[i].pos == 0,
                optional: table && !wide && R::COLUMNS[i].show == Show::Fit,
            })
            .collect();
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                idx.iter()
                    .map(|&i| self.text(&r.cell(i, true), table).into_owned())
                    .collect()
            })
            .collect();
        let states: Vec<Vec<Option<State>>> = rows
            .iter()
            .map(|r| {
                idx.iter()
                    .map(|&i| match r.cell(i, true) {
                        Cell::State(s) => Some(s),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let first = self.layout.is_none();
        let limit = if table && !wide {
            self.out.columns()
        } else {
            None
        };
        let shown = self
            .layout
            .get_or_insert_with(|| table::layout(&cols, &cells, limit))
            .clone();
        let color = self.out.color;
        if first {
            let header: Vec<String> = cols.iter().map(|c| c.header.to_string()).collect();
            let bold = |_: usize, s: String| {
                if color {
                    format!("\x1b[1m{s}\x1b[0m")
                } else {
                    s
                }
            };
            writeln!(self.w, "{}", table::line(&shown, &header, &bold))?;
        }
        for (row, states) in cells.iter().zip(&states) {
            let paint = |i: usize, s: String| match (color, states[i]) {
                (true, Some(st)) => format!("\x1b[{}m{s}\x1b[0m", state_color(st)),
                _ => s,
            };
            writeln!(self.w, "{}", table::line(&shown, row, &paint))?;
        }
        Ok(())
    }

    /// Writes what is held (for `--follow`, between polls).
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.flush_pending()?;
        }
        self.w.flush()
    }

    /// Ends the listing; returns how many records were written.
    pub fn finish(mut self) -> io::Result<usize> {
        match self.mode {
            Mode::Json => match self.filter.take() {
                Some(f) => f.run(
                    serde_json::Value::Array(std::mem::take(&mut self.held)),
                    &mut self.w,
                )?,
                None => self
                    .w
                    .write_all(if self.count == 0 { b"[]\n" } else { b"\n]\n" })?,
            },
            // A header even for no rows, so that a script can read the columns.
            Mode::Tsv if self.count == 0 => self.tsv_header()?,
            Mode::Table { .. } | Mode::Plain if !self.pending.is_empty() => self.flush_pending()?,
            _ => {}
        }
        self.w.flush()?;
        if self.count == 0 && matches!(self.mode, Mode::Table { .. } | Mode::Plain) {
            self.out.info(R::NONE);
        }
        Ok(self.count)
    }
}

/// Prints one record (inspect, renew): an object in JSON, one line in JSONL,
/// a header and a row in TSV, env lines, or `details` for people.
pub fn print_one<R: Record>(
    out: &Out,
    r: R,
    details: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<()> {
    let mode = out.one_mode()?;
    let mut stdout = io::stdout().lock();
    match mode {
        Mode::Table { .. } | Mode::Plain => details(&mut stdout)?,
        Mode::Env if r.env().is_none() => {
            return Err(UserError::usage("`-o env` does not apply here")
                .hint("use -o json")
                .into())
        }
        Mode::Json => {
            let p = Printer::<R>::with_mode(out, Box::new(io::sink()), mode)?;
            match (&p.filter, &out.fields) {
                (Some(f), _) => f.run(p.json(&r)?, &mut stdout)?,
                (None, Some(_)) => write_json_pretty(&mut stdout, &p.json(&r)?)?,
                (None, None) => write_json_pretty(&mut stdout, &r)?,
            }
        }
        _ => {
            let mut p = Printer::with_mode(out, Box::new(&mut stdout), mode)?;
            p.push(r)?;
            p.finish()?;
        }
    }
    stdout.flush()?;
    Ok(())
}

/// Checks --json's fields and compiles --jq for row kind `R` before a
/// command acts, so that a typo never comes after a revoke.
pub fn check_json<R: Record>(out: &Out) -> Result<(), UserError> {
    if let Some(fields) = &out.fields {
        check_fields::<R>(fields)?;
    }
    if let Some(code) = &out.jq {
        crate::jq::Filter::new(code)?;
    }
    Ok(())
}

/// Refuses a --json field the row kind does not have, naming those it has.
fn check_fields<R: Record>(fields: &[String]) -> Result<(), UserError> {
    let known: Vec<&str> = R::COLUMNS.iter().map(|c| c.key).collect();
    if fields.is_empty() {
        return Err(UserError::usage("--json needs the fields to print")
            .hint(format!("name some of: {}", known.join(","))));
    }
    let unknown: Vec<&str> = fields
        .iter()
        .map(String::as_str)
        .filter(|f| !known.contains(f))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(UserError::usage(format!(
        "unknown JSON field{}: {}",
        if unknown.len() == 1 { "" } else { "s" },
        unknown
            .iter()
            .map(|f| text::terminal_safe(&crate::error::shorten(f, 40)).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .hint(format!("available fields: {}", known.join(","))))
}

/// `v` with only `fields`, in that order.
fn select(v: serde_json::Value, fields: &[String]) -> serde_json::Value {
    match v {
        serde_json::Value::Object(mut m) => serde_json::Value::Object(
            fields
                .iter()
                .map(|f| (f.clone(), m.remove(f).unwrap_or(serde_json::Value::Null)))
                .collect(),
        ),
        v => v,
    }
}

/// ANSI SGR colour numbers; colour never carries meaning alone (the state's
/// name is always there).
fn state_color(s: State) -> u8 {
    match s {
        State::Active => 32,
        State::Expired => 33,
        State::Revoked => 31,
        State::Exhausted => 35,
    }
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
    rows.push(("last used", rel(t.last_used_at, "never")));
    if t.revoked_at.is_some() {
        rows.push(("revoked", rel(t.revoked_at, "-")));
        rows.push(("revoked by", dash(&t.revoked_by)));
        rows.push(("revoke reason", dash(&t.revoke_reason)));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        writeln!(w, "{k:<width$}  {v}")?;
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
