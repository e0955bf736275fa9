//! `tok audit`: the audit trail, filtered, optionally followed.

use super::inspect::{not_an_id, refuse_secret_arg, secret_in_argv};
use super::{driver, Ctx};
use crate::cli::{AuditArgs, OutputFormat};
use crate::error::UserError;
use crate::output::{self, rfc3339};
use crate::secret;
use crate::store::audit::{AuditFilter, Entry};
use anyhow::Result;
use chrono::Utc;
use std::io::{BufWriter, Write};
use std::time::Duration;

/// How often --follow asks for new entries.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

pub fn run(ctx: &Ctx, args: AuditArgs) -> Result<()> {
    if args.follow && ctx.global.output == Some(OutputFormat::Json) {
        return Err(
            UserError::usage("`-o json` prints one array, which --follow never closes")
                .hint("use -o jsonl with --follow")
                .into(),
        );
    }
    if ctx.global.output == Some(OutputFormat::Env) {
        return Err(UserError::usage("`-o env` is only for create and rotate")
            .hint("use -o json, jsonl, tsv or table")
            .into());
    }
    if args.token.as_deref().is_some_and(secret::looks_like_secret) {
        return Err(secret_in_argv(ctx.driver_kind()).into());
    }
    let gw = ctx.gateway()?;
    let token_id = match &args.token {
        Some(t) => {
            refuse_secret_arg(gw.as_ref(), t)?;
            if !gw.looks_like_id(t) {
                let e = anyhow::Error::new(not_an_id(gw.kind()));
                return Err(e.context(format!(
                    "could not find token {}",
                    secret::fingerprint_of(t)
                )));
            }
            Some(driver(gw.get(t), || format!("could not find token {t}"))?.id)
        }
        None => None,
    };
    let mut filter = AuditFilter {
        token_id,
        since: args.since.map(|s| s.resolve(Utc::now())),
        decision: args.decision,
        after_seq: None,
        limit: args.limit,
    };
    let stdout = std::io::stdout().lock();
    let mut w = AuditWriter::new(ctx.global.output, BufWriter::new(stdout));
    let mut last = None;
    // Prints what `filter` selects and remembers the last sequence number.
    let mut read = |filter: &AuditFilter, w: &mut AuditWriter<_>| {
        driver(
            gw.audit(filter, &mut |e| {
                last = Some(e.seq);
                Ok(w.push(&e)?)
            }),
            || "could not read the audit trail".into(),
        )
        .map(|()| last)
    };
    let mut seen = read(&filter, &mut w)?;
    if !args.follow {
        w.finish()?;
        if w.count == 0 {
            ctx.out.info("no audit entries match");
        }
        return Ok(());
    }
    w.flush()?;
    filter.limit = None;
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        filter.after_seq = seen.or(Some(0));
        seen = read(&filter, &mut w)?;
        w.flush()?;
    }
}

const COLUMNS: [&str; 13] = [
    "seq",
    "at",
    "event",
    "token_id",
    "decision",
    "method",
    "path",
    "upstream_status",
    "latency_ms",
    "client",
    "actor",
    "reason",
    "request_id",
];

fn cells(e: &Entry) -> [String; 13] {
    let o = |s: &Option<String>| s.clone().unwrap_or_default();
    [
        e.seq.to_string(),
        rfc3339(e.at),
        e.event.as_str().into(),
        o(&e.token_id),
        e.decision
            .map(|d| d.as_str().to_string())
            .unwrap_or_default(),
        o(&e.method),
        o(&e.path),
        e.upstream_status.map(|s| s.to_string()).unwrap_or_default(),
        e.latency_ms.map(|s| s.to_string()).unwrap_or_default(),
        o(&e.client),
        o(&e.actor),
        o(&e.reason),
        o(&e.request_id),
    ]
}

/// One line for people: what happened to which token, then the details.
fn plain(e: &Entry) -> String {
    let mut line = format!(
        "{}  {:<10}  {:<15}",
        rfc3339(e.at),
        e.event.as_str(),
        e.token_id.as_deref().unwrap_or("-")
    );
    if let Some(d) = e.decision {
        line.push_str(&format!("  {:<5}", d.as_str()));
    }
    if let (Some(m), Some(p)) = (&e.method, &e.path) {
        line.push_str(&format!("  {m} {p}"));
    }
    if let Some(s) = e.upstream_status {
        line.push_str(&format!(" -> {s}"));
    }
    if let Some(l) = e.latency_ms {
        line.push_str(&format!(" {l}ms"));
    }
    if let Some(c) = &e.client {
        line.push_str(&format!(" from {c}"));
    }
    if let Some(a) = &e.actor {
        line.push_str(&format!("  by {a}"));
    }
    if let Some(r) = &e.reason {
        line.push_str(&format!("  ({r})"));
    }
    line
}

/// Streams entries: plain rows (fixed order, `-` for empty), JSON, JSONL or TSV.
struct AuditWriter<W: Write> {
    format: Option<OutputFormat>,
    w: W,
    count: usize,
}

impl<W: Write> AuditWriter<W> {
    fn new(format: Option<OutputFormat>, w: W) -> Self {
        AuditWriter {
            format,
            w,
            count: 0,
        }
    }

    fn push(&mut self, e: &Entry) -> std::io::Result<()> {
        match self.format {
            Some(OutputFormat::Json) => {
                self.w
                    .write_all(if self.count == 0 { b"[\n  " } else { b",\n  " })?;
                output::write_json(&mut self.w, e)?;
            }
            Some(OutputFormat::Jsonl) => {
                output::write_json(&mut self.w, e)?;
                self.w.write_all(b"\n")?;
            }
            Some(OutputFormat::Tsv) => {
                if self.count == 0 {
                    writeln!(self.w, "{}", COLUMNS.join("\t"))?;
                }
                let row: Vec<String> = cells(e)
                    .iter()
                    .map(|c| c.replace('\t', "\\t").replace('\n', "\\n"))
                    .collect();
                writeln!(self.w, "{}", row.join("\t"))?;
            }
            _ => writeln!(self.w, "{}", plain(e))?,
        }
        self.count += 1;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if self.format == Some(OutputFormat::Json) {
            self.w
                .write_all(if self.count == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        self.w.flush()
    }
}
