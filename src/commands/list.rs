//! `tok list`.

use super::{driver, Ctx};
use crate::cli::{FilterArgs, ListArgs};
use crate::drivers::Op;
use crate::model::{Filter, StateFilter};
use crate::output::Printer;
use anyhow::Result;
use std::io::BufWriter;

pub fn run(ctx: &Ctx, args: ListArgs) -> Result<()> {
    let filter = to_filter(&args.filter, args.state, args.limit);
    let gw = ctx.gateway()?;
    gw.require(Op::List)?;
    let stdout = std::io::stdout().lock();
    let mut writer = Printer::new(&ctx.out, Box::new(BufWriter::new(stdout)))?;
    driver(gw.list(&filter, &mut |t| Ok(writer.push(t)?)), || {
        "could not list tokens".into()
    })?;
    writer.finish()?;
    Ok(())
}

pub fn to_filter(f: &FilterArgs, state: StateFilter, limit: Option<u64>) -> Filter {
    Filter {
        state,
        name: f.name.clone(),
        labels: f.labels.clone(),
        scopes: f.scopes.clone(),
        expiring_within: f.expiring_within.map(|t| t.as_secs()),
        created_by: f.created_by.clone(),
        id_prefix: None,
        limit,
    }
}
