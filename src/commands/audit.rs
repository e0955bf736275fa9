//! `tok audit`: the audit trail, filtered, optionally followed.

use super::inspect::{not_an_id, refuse_secret_arg, secret_in_argv};
use super::{driver, Ctx};
use crate::cli::AuditArgs;
use crate::error::UserError;
use crate::output::{Mode, Printer};
use crate::secret;
use crate::store::audit::{AuditFilter, Entry};
use anyhow::Result;
use chrono::Utc;
use std::io::BufWriter;
use std::time::Duration;

/// How often --follow asks for new entries.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

pub fn run(ctx: &Ctx, args: AuditArgs) -> Result<()> {
    let mode = ctx.out.list_mode()?;
    if args.follow && mode == Mode::Json {
        return Err(
            UserError::usage("`-o json` prints one array, which --follow never closes")
                .hint("use -o jsonl with --follow")
                .into(),
        );
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
    let mut w: Printer<Entry> =
        Printer::with_mode(&ctx.out, Box::new(BufWriter::new(stdout)), mode)?;
    let mut last = None;
    // Prints what `filter` selects and remembers the last sequence number.
    let mut read = |filter: &AuditFilter, w: &mut Printer<Entry>| {
        driver(
            gw.audit(filter, &mut |e| {
                last = Some(e.seq);
                Ok(w.push(e)?)
            }),
            || "could not read the audit trail".into(),
        )
        .map(|()| last)
    };
    let mut seen = read(&filter, &mut w)?;
    if !args.follow {
        w.finish()?;
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
