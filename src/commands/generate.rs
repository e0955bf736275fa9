//! `tok __generate [--dir DIR]` (hidden): writes the completion scripts and the
//! man pages that the repository ships, so they come from this binary's
//! command tree. A test regenerates them and fails when they differ.

use super::Ctx;
use crate::cli::{CompletionShell, GenerateArgs};
use crate::{completion, man};
use anyhow::{Context, Result};
use clap::ValueEnum;
use std::path::Path;

pub fn run(ctx: &Ctx, args: GenerateArgs) -> Result<()> {
    let completions = args.dir.join("completions");
    let man_dir = args.dir.join("man");
    let mut written = 0;
    for shell in CompletionShell::value_variants() {
        write(
            &completions.join(shell.file_name()),
            &completion::registration(*shell),
        )?;
        written += 1;
    }
    let pages = man::pages();
    // A page of a command that is gone must go too.
    if let Ok(entries) = std::fs::read_dir(&man_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with("tok") && name.ends_with(".1");
            if ours && !pages.iter().any(|p| p.file_name == name) {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("could not remove {}", e.path().display()))?;
            }
        }
    }
    for p in &pages {
        write(&man_dir.join(&p.file_name), &p.roff)?;
        written += 1;
    }
    ctx.out.info(format!(
        "wrote {written} files in {} and {}",
        completions.display(),
        man_dir.display()
    ));
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("could not write {}", path.display()))
}
