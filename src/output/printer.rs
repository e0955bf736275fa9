//! The emitter: one [`Printer`] writes every row kind ([`Record`]) as a
//! table, plain rows, JSON, JSONL, TSV or env lines, and makes every field of
//! a line format safe for a terminal, once.

use super::{duration, rfc3339, table, text, write_json, write_json_pretty, Out};
use crate::cli::OutputFormat;
use crate::error::UserError;
use crate::model::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::io::{self, Write};

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
