//! `tok drivers`: each driver and what it supports.

use super::Ctx;
use crate::cli::{DriversArgs, OutputFormat};
use crate::drivers::{DriverKind, Op};
use crate::output;
use anyhow::Result;
use clap::ValueEnum;
use serde_json::json;
use std::io::Write;

const OPS: [(Op, &str); 12] = [
    (Op::Create, "create"),
    (Op::List, "list"),
    (Op::InspectById, "inspect"),
    (Op::InspectBySecret, "inspect-secret"),
    (Op::Revoke, "revoke"),
    (Op::Rotate, "rotate"),
    (Op::Scopes, "scopes"),
    (Op::Labels, "labels"),
    (Op::Expiry, "expiry"),
    (Op::UseLimits, "use-limits"),
    (Op::Names, "names"),
    (Op::Descriptions, "descriptions"),
];

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
                let caps = k.capabilities();
                let can: Vec<&str> = OPS
                    .iter()
                    .filter(|(op, _)| caps.supports(*op))
                    .map(|(_, n)| *n)
                    .collect();
                writeln!(stdout, "{}\t{}\t{}", k.as_str(), can.join(","), k.about())?;
            }
        }
    }
    Ok(())
}
