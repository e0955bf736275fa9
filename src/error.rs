//! Error kinds, hints and exit codes. Every failure is classified once, in
//! `report`, into a kind that fixes the exit code.

use crate::drivers::DriverError;
use std::fmt;
use std::io::Write;

/// Documented exit codes (README, man page, `tok --help`).
pub mod exit {
    pub const SUCCESS: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const AUTH: i32 = 4;
    pub const PARTIAL: i32 = 5;
    pub const UNSUPPORTED: i32 = 6;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failure,
    Usage,
    NotFound,
    Auth,
    Partial,
    Unsupported,
}

impl Kind {
    pub fn code(self) -> i32 {
        match self {
            Kind::Failure => exit::FAILURE,
            Kind::Usage => exit::USAGE,
            Kind::NotFound => exit::NOT_FOUND,
            Kind::Auth => exit::AUTH,
            Kind::Partial => exit::PARTIAL,
            Kind::Unsupported => exit::UNSUPPORTED,
        }
    }
}

/// An error raised by tok itself with a known kind and an optional hint.
#[derive(Debug)]
pub struct UserError {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UserError {}

impl UserError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        UserError {
            kind,
            message: message.into(),
            hint: None,
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A bulk operation in which some items failed; each was already reported.
#[derive(Debug)]
pub struct Partial {
    pub failed: usize,
    pub total: usize,
}

impl fmt::Display for Partial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} failed", self.failed, self.total)
    }
}

impl std::error::Error for Partial {}

/// Marks an error in which a new secret did not reach stdout: never a quiet
/// exit, even for a closed pipe.
#[derive(Debug)]
pub struct SecretNotDelivered;

impl fmt::Display for SecretNotDelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the secret was not delivered")
    }
}

impl std::error::Error for SecretNotDelivered {}

/// The kind and hint of an error: the first classified error in its chain wins.
pub fn classify(err: &anyhow::Error) -> (Kind, Option<String>) {
    for cause in err.chain() {
        if let Some(u) = cause.downcast_ref::<UserError>() {
            return (u.kind, u.hint.clone());
        }
        if cause.downcast_ref::<Partial>().is_some() {
            return (Kind::Partial, None);
        }
        if let Some(d) = cause.downcast_ref::<DriverError>() {
            return (d.kind(), d.hint());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return (Kind::Failure, None);
            }
        }
    }
    (Kind::Failure, None)
}

/// True when the error is a closed stdout (`tok list | head`): exit quietly.
/// Not when a new secret was lost with it.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    if err.chain().any(|c| c.is::<SecretNotDelivered>()) {
        return false;
    }
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `text` with its line breaks kept (multi-line messages, such as a TOML
/// parser's, stay readable) and every line made safe for a terminal.
fn safe_lines(text: &str) -> String {
    text.split('\n')
        .map(|l| crate::text::terminal_safe(l.strip_suffix('\r').unwrap_or(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints the error, its causes and its hint on stderr; returns the exit code.
pub fn report(err: &anyhow::Error) -> i32 {
    if is_broken_pipe(err) {
        return exit::SUCCESS;
    }
    let (kind, hint) = classify(err);
    let mut out = std::io::stderr().lock();
    // Causes can quote a gateway's answer or a stored name: shown through
    // `text::terminal_safe`, so none of their characters acts on the terminal.
    let _ = writeln!(out, "error: {}", safe_lines(&err.to_string()));
    let mut last = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        // anyhow chains often repeat the inner message; show each once.
        if text != last && !last.ends_with(&text) {
            let _ = writeln!(out, "  caused by: {}", safe_lines(&text));
        }
        last = text;
    }
    if let Some(h) = hint {
        let _ = writeln!(out, "\nhint: {h}");
    }
    kind.code()
}

/// The longest single argument tok takes. A longer one is refused before
/// parsing, without echoing it (a name, a description and a label all fit).
pub const ARG_MAX: usize = 4096;

/// The command line, refused when an argument is longer than `ARG_MAX`.
pub fn bounded_args(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, UserError> {
    let args: Vec<std::ffi::OsString> = args.collect();
    for (i, a) in args.iter().enumerate().skip(1) {
        if a.len() > ARG_MAX {
            return Err(UserError::usage(format!(
                "argument {i} is {} bytes long; tok takes at most {ARG_MAX} in one argument",
                a.len()
            ))
            .hint("pass long text through a file or stdin"));
        }
    }
    Ok(args)
}

/// Exits for a clap error as clap would (same stream, same exit code), with
/// any value it quotes clipped (`text::clip_quoted`).
pub fn clap_exit(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let quotes_much = !matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) && e
        .render()
        .to_string()
        .lines()
        .any(|l| l.chars().count() > 2 * crate::text::SHOWN_MAX);
    if !quotes_much {
        e.exit()
    }
    eprint!("{}", crate::text::clip_quoted(&e.render().to_string()));
    std::process::exit(e.exit_code())
}
