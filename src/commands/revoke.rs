//! `tok revoke`: by id, by id or secret on stdin, or by filter (bulk).

use super::{inspect::not_an_id, list::to_filter, read_stdin, Ctx};
use crate::cli::RevokeArgs;
use crate::drivers::{DriverError, Gateway, Op};
use crate::error::{Partial, UserError};
use crate::model::{limits, RevokeOutcome, StateFilter, Token};
use crate::output::{col, Cell, Column, Mode, Printer, Record, Show};
use crate::secret::{self, Secret};
use anyhow::Result;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;

/// What the user named: an id (or prefix), or a secret read from stdin.
enum Target {
    Id(String),
    Secret(Secret),
    /// Neither shaped like an id of this driver nor a secret it knows: perhaps
    /// another gateway's secret, so it is never sent as an id nor shown whole.
    Unknown(Secret),
}

impl Target {
    fn of(gw: &dyn Gateway, input: &str) -> Target {
        if gw.is_secret(input) {
            Target::Secret(Secret::new(input))
        } else if gw.looks_like_id(input) {
            Target::Id(input.to_string())
        } else {
            Target::Unknown(Secret::new(input))
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Id(id) => id.clone(),
            Target::Secret(s) | Target::Unknown(s) => s.fingerprint(),
        }
    }
}

/// What became of one token: `-o json`, `jsonl` and `tsv` print one each.
#[derive(Serialize)]
struct Report {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Record for Report {
    const COLUMNS: &'static [Column] = &[
        col("id", "ID", Show::Always, 0),
        col("name", "NAME", Show::Always, 1),
        col("outcome", "OUTCOME", Show::Always, 2),
        col("error", "ERROR", Show::Always, 3),
    ];
    const NONE: &'static str = "nothing was revoked";

    fn cell(&self, i: usize, _human: bool) -> Cell {
        match i {
            0 => Cell::Text(self.id.clone()),
            1 => Cell::opt(self.name.as_deref()),
            2 => Cell::Text(self.outcome.into()),
            _ => Cell::opt(self.error.as_deref()),
        }
    }
}

pub fn run(ctx: &Ctx, args: RevokeArgs) -> Result<()> {
    // What --json and --jq will print: reports, or tokens for --dry-run.
    if args.dry_run {
        crate::output::check_json::<Token>(&ctx.out)?;
    } else {
        crate::output::check_json::<Report>(&ctx.out)?;
    }
    ctx.out.list_mode()?;
    if let Some(r) = &args.reason {
        if r.chars().count() > limits::REASON_MAX {
            return Err(UserError::usage(format!(
                "--reason is longer than {} characters",
                limits::REASON_MAX
            ))
            .into());
        }
    }
    let has_filter = !args.filter.is_empty() || args.state.is_some();
    if args.ids.is_empty() && !has_filter {
        return Err(UserError::usage("nothing to revoke")
            .hint("name token ids, `-` to read ids or secrets from stdin, or filters such as --name 'deploy-*'")
            .into());
    }
    if !args.ids.is_empty() && has_filter {
        return Err(UserError::usage("give ids or filters, not both")
            .hint("run one revoke for the ids and another for the filters")
            .into());
    }
    // The driver knows what its secrets look like (a Vault token, an opaque
    // OAuth 2 token); opening it sends no request.
    let gw = ctx.gateway()?;
    let mut targets = Vec::new();
    for id in &args.ids {
        if id == "-" {
            let input = read_stdin(ctx, None)?;
            for line in input.lines().map(str::trim).filter(|l| !l.is_empty()) {
                targets.push(Target::of(gw.as_ref(), line));
            }
        } else if secret::looks_like_secret(id) || gw.is_secret(id) {
            return Err(UserError::usage("a secret was given on the command line")
                .hint("secrets end up in shell history; pipe it in: `printf %s \"$TOKEN\" | tok revoke - --yes`")
                .into());
        } else {
            targets.push(Target::of(gw.as_ref(), id));
        }
    }

    gw.require(Op::Revoke)?;

    // Resolve every target to a token first, so the prompt can say what goes.
    let mut tokens: Vec<Token> = Vec::new();
    // Tokens named by their secret are revoked by it: some gateways (RFC 7009)
    // know no other handle.
    let mut by_secret: HashMap<String, Secret> = HashMap::new();
    let mut failures: Vec<(String, anyhow::Error)> = Vec::new();
    if has_filter {
        gw.require(Op::List)?;
        let filter = to_filter(
            &args.filter,
            args.state.unwrap_or(StateFilter::Active),
            None,
        );
        super::driver(
            gw.list(&filter, &mut |t| {
                tokens.push(t);
                Ok(())
            }),
            || "could not list the tokens to revoke".into(),
        )?;
    }
    for target in &targets {
        match resolve(gw.as_ref(), target) {
            Ok(t) if tokens.iter().any(|x| x.id == t.id) => {}
            Ok(t) => {
                if let Target::Secret(s) = target {
                    by_secret.insert(t.id.clone(), s.clone());
                }
                tokens.push(t)
            }
            Err(e) => failures.push((target.describe(), e)),
        }
    }
    let total = tokens.len() + failures.len();
    // A lone failure is reported once, as the command's error; in bulk, each is
    // reported as it happens and the exit code says partial failure.
    let bulk = total > 1;
    if bulk {
        for (what, e) in &failures {
            let _ = writeln!(std::io::stderr(), "error: {what}: {e:#}");
        }
    }

    if args.dry_run {
        let stdout = std::io::stdout().lock();
        let mut w = Printer::new(&ctx.out, Box::new(std::io::BufWriter::new(stdout)))?;
        for t in &tokens {
            w.push(t.clone())?;
        }
        w.finish()?;
        ctx.out.info(format!(
            "dry run: would revoke {} token{}; nothing was revoked",
            tokens.len(),
            plural(tokens.len())
        ));
        return finish(failures, total);
    }

    if tokens.is_empty() {
        if failures.is_empty() {
            ctx.out.info("no tokens match; nothing to revoke");
            return Ok(());
        }
        return finish(failures, total);
    }

    if !args.yes {
        if !ctx.out.interactive() {
            return Err(UserError::usage(format!(
                "refusing to revoke {} token{} without confirmation",
                tokens.len(),
                plural(tokens.len())
            ))
            .hint("pass --yes to revoke without a prompt (or --dry-run to see what would go)")
            .into());
        }
        let label = |t: &Token| match &t.name {
            Some(n) => format!("{} ({})", t.id, crate::text::terminal_safe(n)),
            None => t.id.clone(),
        };
        let question = if tokens.len() == 1 {
            format!("Revoke {}?", label(&tokens[0]))
        } else {
            let shown = tokens.len().min(PROMPT_SHOWN);
            for t in &tokens[..shown] {
                ctx.out.info(format!("  {}", label(t)));
            }
            if tokens.len() > shown {
                ctx.out
                    .info(format!("  ... and {} more", tokens.len() - shown));
            }
            format!(
                "Revoke {} tokens ({} shown above)?",
                tokens.len(),
                if shown == tokens.len() {
                    "all".to_string()
                } else {
                    shown.to_string()
                }
            )
        };
        if !ctx.out.confirm(&question)? {
            return Err(UserError::new(
                crate::error::Kind::Cancelled,
                "revoke cancelled; nothing was revoked",
            )
            .into());
        }
    }

    let bar = (ctx.out.stderr_tty && !ctx.out.quiet && tokens.len() > 1).then(|| {
        let b = indicatif::ProgressBar::new(tokens.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} revoking")
                .expect("valid template"),
        );
        b
    });
    let say = |msg: String| match &bar {
        Some(b) => b.println(msg),
        None => ctx.out.info(msg),
    };
    let mut reports = Vec::new();
    for t in &tokens {
        let r = match by_secret.get(&t.id) {
            Some(s) => gw.revoke_secret(s, t, args.reason.as_deref()),
            None => gw.revoke(&t.id, args.reason.as_deref()),
        };
        let label = match &t.name {
            Some(n) => format!("{} ({n})", t.id),
            None => t.id.clone(),
        };
        match r {
            Ok((_, RevokeOutcome::Revoked)) => {
                say(format!("revoked {label}"));
                reports.push(Report {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    outcome: "revoked",
                    error: None,
                });
            }
            Ok((_, RevokeOutcome::AlreadyRevoked)) => {
                say(format!("{label} was already revoked"));
                reports.push(Report {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    outcome: "already_revoked",
                    error: None,
                });
            }
            Err(e) => {
                let e = anyhow::Error::new(e);
                if bulk {
                    say(format!("error: could not revoke {label}: {e:#}"));
                }
                reports.push(Report {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    outcome: "failed",
                    error: Some(format!("{e:#}")),
                });
                failures.push((label, e));
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if bulk {
        let count = |o: &str| reports.iter().filter(|r| r.outcome == o).count();
        ctx.out.info(format!(
            "done: {} revoked, {} already revoked, {} failed",
            count("revoked"),
            count("already_revoked"),
            failures.len()
        ));
    }
    // People read the lines on stderr; scripts asked for a format get reports.
    let mode = ctx.out.list_mode()?;
    if matches!(mode, Mode::Json | Mode::Jsonl | Mode::Tsv) {
        let stdout = std::io::stdout().lock();
        let mut w = Printer::with_mode(&ctx.out, Box::new(std::io::BufWriter::new(stdout)), mode)?;
        for r in reports {
            w.push(r)?;
        }
        w.finish()?;
    }
    finish(failures, total)
}

fn resolve(gw: &dyn Gateway, target: &Target) -> Result<Token> {
    let found = match target {
        Target::Id(id) => gw.get(id),
        Target::Secret(s) => {
            // Only tok's own secrets carry a checksum to check offline.
            if secret::looks_like_secret(s.expose()) {
                if let Err(e) = s.validate() {
                    return Err(DriverError::Invalid(format!(
                        "that is not a valid tok secret: {e}"
                    ))
                    .into());
                }
            }
            gw.require(Op::InspectBySecret).and_then(|()| gw.lookup(s))
        }
        // Not sent: it is not an id, and may be another gateway's secret.
        Target::Unknown(_) => return Err(not_an_id(gw.kind()).into()),
    };
    Ok(found?)
}

/// One item that failed alone keeps its own error (and exit code); several
/// items with any failure are a partial failure.
fn finish(mut failures: Vec<(String, anyhow::Error)>, total: usize) -> Result<()> {
    match (failures.len(), total) {
        (0, _) => Ok(()),
        (1, 1) => {
            let (what, e) = failures.remove(0);
            Err(e.context(format!("could not revoke {what}")))
        }
        (n, total) => Err(anyhow::Error::new(Partial { failed: n, total })
            .context("some tokens could not be revoked")),
    }
}

/// How many tokens a bulk revoke prompt names before asking.
const PROMPT_SHOWN: usize = 5;

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
