//! `tok __complete tokens` (hidden): the live token list that shell completion
//! asks for (see src/completion.rs). Ids, states and names only: never a secret.

use super::{driver, Ctx};
use crate::cli::{CompleteArgs, CompleteKind};
use crate::completion::{token_line, Known, Newest};
use crate::drivers::{DriverKind, Op};
use crate::model::{Filter, StateFilter};
use anyhow::Result;
use std::io::Write;

pub fn run(ctx: &Ctx, args: CompleteArgs) -> Result<()> {
    match args.kind {
        CompleteKind::Tokens => tokens(ctx),
    }
}

fn tokens(ctx: &Ctx) -> Result<()> {
    // Completing must not create a store where there is none.
    if ctx.driver_kind() == DriverKind::Local
        && !ctx.data_dir()?.join(crate::store::DB_FILE).is_file()
    {
        return Ok(());
    }
    let gateway = ctx.gateway()?;
    driver(gateway.require(Op::List), || "cannot list tokens".into())?;
    let filter = Filter {
        state: StateFilter::All,
        ..Filter::default()
    };
    let mut newest = Newest::new();
    driver(
        gateway.list(&filter, &mut |t| {
            newest.push(Known {
                id: t.id,
                name: t.name,
                state: t.state,
            });
            Ok(())
        }),
        || "could not list tokens".into(),
    )?;
    let mut stdout = std::io::stdout().lock();
    for k in newest.into_vec() {
        writeln!(stdout, "{}", token_line(&k))?;
    }
    stdout.flush()?;
    Ok(())
}
