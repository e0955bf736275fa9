//! `--jq EXPR`: filters JSON output through a jq program, as `gh --jq` does,
//! with jaq (a Rust implementation of jq: `jaq-core` compiles and runs,
//! `jaq-std` and `jaq-json` bring jq's standard library), following the
//! embedding example in jaq-core 2.2's crate documentation.
//!
//! Each output of the program is written on its own line: a string raw (so
//! `--jq '.[].id'` gives ids ready for `xargs`), anything else as compact JSON.

use crate::error::UserError;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, RcIter};
use jaq_json::Val;
use std::io::{self, Write};

/// A compiled jq program.
pub struct Filter(jaq_core::Filter<Native<Val>>);

impl Filter {
    /// Parses and compiles `code`; a usage error says what is wrong with it.
    pub fn new(code: &str) -> Result<Filter, UserError> {
        let bad = |what: &str, detail: String| {
            UserError::usage(format!(
                "--jq {}: {what}: {}",
                crate::error::shorten(code, 60),
                crate::error::shorten(&detail, 200)
            ))
            .hint("--jq takes a jq program, e.g. --jq '.[] | select(.state == \"active\") | .id'")
        };
        let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errs| {
                bad(
                    "not a jq program",
                    format!("{:?}", errs.first().map(|e| &e.1)),
                )
            })?;
        let filter = Compiler::default()
            .with_funs(jaq_std::funs().chain(jaq_json::funs()))
            .compile(modules)
            .map_err(|errs| {
                bad(
                    "cannot be compiled",
                    format!("{:?}", errs.first().map(|e| &e.1)),
                )
            })?;
        Ok(Filter(filter))
    }

    /// Runs the program on `input` and writes each output on its own line.
    pub fn run(&self, input: serde_json::Value, w: &mut dyn Write) -> io::Result<()> {
        let inputs = RcIter::new(core::iter::empty());
        for out in self.0.run((Ctx::new([], &inputs), Val::from(input))) {
            let v = out
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, JqError(e.to_string())))?;
            match serde_json::Value::from(v) {
                serde_json::Value::String(s) => writeln!(w, "{}", crate::text::terminal_safe(&s))?,
                v => {
                    crate::output::write_json(w, &v)?;
                    writeln!(w)?;
                }
            }
        }
        Ok(())
    }
}

/// An error raised by the jq program while it ran (`error("...")`, `.a` of a
/// number): a usage error, as jq's own exit code 5 is for the program.
#[derive(Debug)]
pub struct JqError(pub String);

impl std::fmt::Display for JqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the --jq program failed: {}",
            crate::error::shorten(&self.0, 200)
        )
    }
}

impl std::error::Error for JqError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(code: &str, input: serde_json::Value) -> String {
        let mut out = Vec::new();
        Filter::new(code).unwrap().run(input, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn runs_jq_programs() {
        let list = json!([{"id": "tk_a", "state": "active"}, {"id": "tk_b", "state": "revoked"}]);
        assert_eq!(run(".[].id", list.clone()), "tk_a\ntk_b\n");
        assert_eq!(
            run(r#"map(select(.state == "active")) | length"#, list.clone()),
            "1\n"
        );
        assert_eq!(
            run(".[0]", list),
            "{\"id\":\"tk_a\",\"state\":\"active\"}\n"
        );
        assert!(Filter::new(".[").is_err());
        assert!(Filter::new("nosuchfunction(1)").is_err());
        let mut out = Vec::new();
        let err = Filter::new(".a")
            .unwrap()
            .run(json!(3), &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("--jq"), "{err}");
    }
}
