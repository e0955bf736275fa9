//! `tok completions SHELL`: print the completion script for one shell.

use super::Ctx;
use crate::cli::CompletionsArgs;
use crate::completion;
use anyhow::{Context, Result};
use std::io::Write;

pub fn run(_ctx: &Ctx, args: CompletionsArgs) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(completion::registration(args.shell).as_bytes())
        .and_then(|()| stdout.flush())
        .context("could not write the completion script")
}
