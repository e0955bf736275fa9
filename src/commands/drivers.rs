//! `tok drivers`: each driver and what it supports.

use super::Ctx;
use crate::cli::{DriversArgs, OutputFormat};
use crate::drivers::DriverKind;
use crate::output;
use anyhow::Result;
use clap::ValueEnum;
use serde_json::json;
use std::io::Write;

pub fn run(ctx: &Ctx, _args: DriversArgs) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let kinds = DriverKind::value_variants();
    match ctx.global.output {
        Some(OutputFormat::Json | OutputFormat::Jsonl) => {
            let v: Vec<_> = kinds
                .iter()
                .map(|k| {
                    json!({
                        "driver": k.as_str(),
                        "about": k.about(),
                        "capabilities": k.capabilities(),
                    })
                })
                .collect();
            output::write_json_pretty(&mut stdout, &v)?;
        }
        _ => {
            for k in kinds {
                let can = k.capabilities().names();
                writeln!(stdout, "{}\t{}\t{}", k.as_str(), can.join(","), k.about())?;
            }
        }
    }
    Ok(())
}
