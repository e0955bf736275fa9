//! `tok drivers`: each driver and what it supports.

use super::Ctx;
use crate::cli::DriversArgs;
use crate::drivers::{Capabilities, DriverKind};
use crate::output::{col, Cell, Column, Printer, Record, Show};
use anyhow::Result;
use clap::ValueEnum;
use serde::Serialize;

/// One line of `tok drivers`.
#[derive(Serialize)]
struct Row {
    driver: &'static str,
    capabilities: Capabilities,
    about: &'static str,
}

impl Record for Row {
    const COLUMNS: &'static [Column] = &[
        col("driver", "DRIVER", Show::Always, 0),
        col("capabilities", "CAN", Show::Always, 1),
        col("about", "ABOUT", Show::Fit, 2),
    ];
    const NONE: &'static str = "no drivers";

    fn cell(&self, i: usize, _human: bool) -> Cell {
        match i {
            0 => Cell::Text(self.driver.into()),
            1 => Cell::Text(self.capabilities.names().join(",")),
            _ => Cell::Text(self.about.into()),
        }
    }
}

pub fn run(ctx: &Ctx, _args: DriversArgs) -> Result<()> {
    let stdout = std::io::stdout().lock();
    let mut w = Printer::new(&ctx.out, Box::new(stdout))?;
    for k in DriverKind::value_variants() {
        w.push(Row {
            driver: k.as_str(),
            about: k.about(),
            capabilities: k.capabilities(),
        })?;
    }
    w.finish()?;
    Ok(())
}
