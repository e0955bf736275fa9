//! Rendering: tables, plain rows, JSON, JSONL, TSV and the bare secret; colour
//! and TTY decisions. stdout is data only; everything for people goes to stderr.

use crate::cli::{ColorChoice, OutputFormat};
use crate::duration;
use crate::model::{State, Token};
use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{presets, Cell, Color, ContentArrangement, Table};
use serde::Serialize;
use std::io::{self, IsTerminal, Write};

/// Output settings, decided once per run.
#[derive(Debug, Clone)]
pub struct Out {
    pub format: Option<OutputFormat>,
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

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(rfc3339).unwrap_or_else(|| "-".into())
}

fn rel_time(t: Option<DateTime<Utc>>, none: &str, now: DateTime<Utc>) -> String {
    t.map(|t| duration::relative(t, now))
        .unwrap_or_else(|| none.into())
}

fn uses(t: &Token) -> String {
    match t.max_uses {
        Some(m) => format!("{}/{m}", t.uses),
        None => t.uses.to_string(),
    }
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

const TSV_HEADER: &[&str] = &[
    "id",
    "name",
    "state",
    "scopes",
    "labels",
    "created_at",
    "created_by",
    "expires_at",
    "last_used_at",
    "uses",
    "max_uses",
    "fingerprint",
    "description",
    "revoked_at",
    "revoked_by",
    "revoke_reason",
];

/// One TSV field: tab, newline, backslash and every other unsafe character
/// escaped (`crate::text::terminal_safe`).
fn tsv_field(s: &str) -> String {
    crate::text::terminal_safe(s).into_owned()
}

fn tsv_row(t: &Token) -> String {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    let time = |t: Option<DateTime<Utc>>| t.map(rfc3339).unwrap_or_default();
    [
        t.id.clone(),
        opt(&t.name),
        t.state.as_str().to_string(),
        t.scopes.join(","),
        labels(t),
        rfc3339(t.created_at),
        opt(&t.created_by),
        time(t.expires_at),
        time(t.last_used_at),
        t.uses.to_string(),
        t.max_uses.map(|m| m.to_string()).unwrap_or_default(),
        t.fingerprint.clone(),
        opt(&t.description),
        time(t.revoked_at),
        opt(&t.revoked_by),
        opt(&t.revoke_reason),
    ]
    .iter()
    .map(|f| tsv_field(f))
    .collect::<Vec<_>>()
    .join("\t")
}

const PLAIN_HEADER: [&str; 9] = [
    "ID",
    "NAME",
    "STATE",
    "EXPIRES",
    "LAST USED",
    "USES",
    "SCOPES",
    "CREATED BY",
    "FINGERPRINT",
];

fn plain_cells(t: &Token) -> [String; 9] {
    let dash = |s: String| if s.is_empty() { "-".into() } else { s };
    [
        t.id.clone(),
        t.name.clone().unwrap_or_else(|| "-".into()),
        t.state.as_str().into(),
        opt_time(t.expires_at),
        opt_time(t.last_used_at),
        uses(t),
        dash(t.scopes.join(",")),
        t.created_by.clone().unwrap_or_else(|| "-".into()),
        t.fingerprint.clone(),
    ]
    .map(|c| crate::text::terminal_safe(&c).into_owned())
}

fn table_cells(t: &Token, now: DateTime<Utc>) -> [String; 9] {
    let mut c = plain_cells(t);
    c[3] = rel_time(t.expires_at, "never", now);
    c[4] = rel_time(t.last_used_at, "never", now);
    c
}

fn state_color(s: State) -> Color {
    match s {
        State::Active => Color::Green,
        State::Expired => Color::Yellow,
        State::Revoked => Color::Red,
        State::Exhausted => Color::Magenta,
    }
}

/// How many rows a table or plain listing holds before it writes them out:
/// enough to align columns, small enough that memory does not grow with the store.
const CHUNK: usize = 500;

/// Streams a list of tokens in the chosen format.
pub struct ListWriter<'a> {
    out: &'a Out,
    w: Box<dyn Write + 'a>,
    mode: ListMode,
    count: usize,
    pending: Vec<Token>,
    widths: Option<Vec<usize>>,
    now: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ListMode {
    Table,
    Plain,
    Json,
    Jsonl,
    Tsv,
}

impl<'a> ListWriter<'a> {
    pub fn new(out: &'a Out, w: Box<dyn Write + 'a>) -> Result<Self, crate::error::UserError> {
        let mode = match out.format {
            None if out.stdout_tty => ListMode::Table,
            None => ListMode::Plain,
            Some(OutputFormat::Table) => ListMode::Table,
            Some(OutputFormat::Json) => ListMode::Json,
            Some(OutputFormat::Jsonl) => ListMode::Jsonl,
            Some(OutputFormat::Tsv) => ListMode::Tsv,
            Some(OutputFormat::Env) => {
                return Err(crate::error::UserError::usage(
                    "`-o env` is only for create and rotate",
                )
                .hint("use -o json, jsonl, tsv or table"))
            }
        };
        Ok(ListWriter {
            out,
            w,
            mode,
            count: 0,
            pending: Vec::new(),
            widths: None,
            now: Utc::now(),
        })
    }

    pub fn push(&mut self, t: Token) -> io::Result<()> {
        match self.mode {
            ListMode::Json => {
                self.w
                    .write_all(if self.count == 0 { b"[\n  " } else { b",\n  " })?;
                write_json(&mut self.w, &t)?;
            }
            ListMode::Jsonl => {
                write_json(&mut self.w, &t)?;
                self.w.write_all(b"\n")?;
            }
            ListMode::Tsv => {
                if self.count == 0 {
                    writeln!(self.w, "{}", TSV_HEADER.join("\t"))?;
                }
                writeln!(self.w, "{}", tsv_row(&t))?;
            }
            ListMode::Table | ListMode::Plain => {
                self.pending.push(t);
                if self.pending.len() >= CHUNK {
                    self.flush_pending()?;
                }
            }
        }
        self.count += 1;
        Ok(())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        let rows = std::mem::take(&mut self.pending);
        match self.mode {
            ListMode::Table => {
                let mut table = Table::new();
                table
                    .load_preset(presets::UTF8_BORDERS_ONLY)
                    .set_content_arrangement(ContentArrangement::Dynamic)
                    .set_header(PLAIN_HEADER);
                if self.out.color {
                    table.enforce_styling();
                }
                // A pty may report no width (or 0): then use COLUMNS, or do not wrap.
                let columns = std::env::var("COLUMNS")
                    .ok()
                    .and_then(|c| c.parse::<u16>().ok());
                match columns.or(table.width()).filter(|w| *w >= 40) {
                    Some(w) => {
                        table.set_width(w);
                    }
                    None => {
                        table.set_content_arrangement(ContentArrangement::Disabled);
                    }
                }
                for t in &rows {
                    let cells = table_cells(t, self.now);
                    let mut row: Vec<Cell> = cells.into_iter().map(Cell::new).collect();
                    if self.out.color {
                        row[2] = Cell::new(t.state.as_str()).fg(state_color(t.state));
                    }
                    table.add_row(row);
                }
                writeln!(self.w, "{table}")?;
            }
            ListMode::Plain => {
                let cells: Vec<[String; 9]> = rows.iter().map(plain_cells).collect();
                let widths = self.widths.get_or_insert_with(|| {
                    let mut w: Vec<usize> = PLAIN_HEADER.iter().map(|h| h.len()).collect();
                    for row in &cells {
                        for (i, c) in row.iter().enumerate() {
                            w[i] = w[i].max(c.chars().count());
                        }
                    }
                    w
                });
                let line = |cols: &[&str]| {
                    let mut s = String::new();
                    for (i, c) in cols.iter().enumerate() {
                        if i + 1 == cols.len() {
                            s.push_str(c);
                        } else {
                            s.push_str(&format!("{c:<w$}  ", w = widths[i]));
                        }
                    }
                    s
                };
                if self.count == rows.len() {
                    writeln!(self.w, "{}", line(&PLAIN_HEADER))?;
                }
                for row in &cells {
                    let refs: Vec<&str> = row.iter().map(String::as_str).collect();
                    writeln!(self.w, "{}", line(&refs))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends the listing; returns how many tokens were written.
    pub fn finish(mut self) -> io::Result<usize> {
        match self.mode {
            ListMode::Json => {
                self.w
                    .write_all(if self.count == 0 { b"[]\n" } else { b"\n]\n" })?;
            }
            ListMode::Table | ListMode::Plain if !self.pending.is_empty() => {
                self.flush_pending()?;
            }
            _ => {}
        }
        self.w.flush()?;
        if self.count == 0 && matches!(self.mode, ListMode::Table | ListMode::Plain) {
            self.out.info("no tokens match");
        }
        Ok(self.count)
    }
}

/// Every field of one token, for `inspect` without `-o`.
pub fn write_details(w: &mut dyn Write, t: &Token, now: DateTime<Utc>) -> io::Result<()> {
    let rel = |x: Option<DateTime<Utc>>, none: &str| match x {
        Some(x) => format!("{} ({})", rfc3339(x), duration::relative(x, now)),
        None => none.to_string(),
    };
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
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
                t.scopes.join(", ")
            },
        ),
        (
            "labels",
            if t.labels.is_empty() {
                "-".into()
            } else {
                labels(t)
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
        writeln!(w, "{k:<width$}  {}", crate::text::terminal_safe(&v))?;
    }
    Ok(())
}
