//! `tok rotate`.

use super::{check_secret_output, create::summary, deliver_secret, driver, Ctx};
use crate::cli::RotateArgs;
use crate::drivers::Op;
use crate::output::rfc3339;
use anyhow::Result;

pub fn run(ctx: &Ctx, args: RotateArgs) -> Result<()> {
    check_secret_output(ctx)?;
    let gw = ctx.gateway()?;
    super::inspect::refuse_secret_arg(gw.as_ref(), &args.id)?;
    gw.require(Op::Rotate)?;
    if args.grace.is_some() {
        // A grace period is an expiry time on the old token.
        gw.require(Op::Expiry)?;
    }
    let old = driver(gw.get(&args.id), || {
        format!("could not rotate token {}", args.id)
    })?;
    let (created, old) = driver(gw.rotate(&old.id, args.grace.map(|g| g.as_secs())), || {
        format!("could not rotate token {}", old.id)
    })?;
    deliver_secret(ctx, gw.as_ref(), &created, args.no_newline)?;
    summary(ctx, "created", &created.token);
    match (old.revoked_at, old.expires_at) {
        (Some(_), _) => ctx.out.info(format!("revoked {}", old.id)),
        (None, Some(e)) => ctx.out.info(format!(
            "{} stays valid until {} (grace)",
            old.id,
            rfc3339(e)
        )),
        (None, None) => ctx.out.info(format!("{} stays valid", old.id)),
    }
    if let Some(note) = gw.usage_note() {
        ctx.out.info(note);
    }
    Ok(())
}
