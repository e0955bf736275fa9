//! `tok renew`: extend a live token's lifetime, where the gateway can.

use super::{create::summary, driver, inspect::print_token, Ctx};
use crate::cli::{OutputFormat, RenewArgs};
use crate::drivers::Op;
use anyhow::Result;

pub fn run(ctx: &Ctx, args: RenewArgs) -> Result<()> {
    let gw = ctx.gateway()?;
    super::inspect::refuse_secret_arg(gw.as_ref(), &args.id)?;
    gw.require(Op::Renew)?;
    let t = driver(
        gw.renew(&args.id, args.increment.map(|i| i.as_secs())),
        || format!("could not renew token {}", args.id),
    )?;
    // The gateway may have capped the increment; the summary shows the expiry
    // it actually set, and any warning it gave is already on stderr.
    summary(ctx, "renewed", &t);
    if matches!(
        ctx.global.output,
        Some(OutputFormat::Json | OutputFormat::Jsonl | OutputFormat::Tsv)
    ) {
        print_token(ctx, &t)?;
    }
    Ok(())
}
