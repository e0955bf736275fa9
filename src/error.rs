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
    pub const CANCELLED: i32 = 7;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failure,
    Usage,
    NotFound,
    Auth,
    Partial,
    Unsupported,
    /// The user answered no at a prompt.
    Cancelled,
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
            Kind::Cancelled => exit::CANCELLED,
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

/// `s` for an error message: whole when short, else its first `max`
/// characters and how long it was, so that a 120 kB argument is never echoed.
pub fn shorten(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}… ({n} characters)")
}

/// Longest word an error message shows whole; longer ones (a 120 kB argument
/// echoed back) are cut by `shorten_words`.
const LONGEST_WORD: usize = 200;

/// `text` with each whitespace-separated word longer than `LONGEST_WORD`
/// characters shortened: errors name what was wrong without echoing it whole.
pub fn shorten_words(text: &str) -> String {
    if text.len() <= LONGEST_WORD {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len().min(4096));
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(&shorten(word, LONGEST_WORD));
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
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
            if io.get_ref().is_some_and(|e| e.is::<crate::jq::JqError>()) {
                return (
                    Kind::Usage,
                    Some("check the --jq program against `-o json` output".into()),
                );
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

/// What a run talked to, and where each part came from, for errors.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `Resolved::describe`: the driver, URL or store, and their sources.
    pub target: String,
    /// Where the credential came from and the URL it was sent to.
    pub credential: Option<(crate::credentials::Source, String)>,
}

/// Whether a gateway's answer (or silence) is behind the error: then the
/// report says which gateway, and where its URL and credential came from.
fn from_gateway(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<DriverError>()
            .is_some_and(|d| matches!(d.kind(), Kind::Auth | Kind::Failure))
    })
}

/// A TLS handshake answered in plain HTTP (rustls: "received corrupt message
/// of type InvalidContentType"): an https:// URL to an http:// server.
fn plain_http_answer(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|c| c.to_string().contains("InvalidContentType"))
}

/// Prints the error, its causes and its hint on stderr, with what the run
/// talked to when a gateway is involved; returns the exit code.
pub fn report(err: &anyhow::Error, sources: Option<&Sources>) -> i32 {
    if is_broken_pipe(err) {
        return exit::SUCCESS;
    }
    let (kind, mut hint) = classify(err);
    let mut out = std::io::stderr().lock();
    let _ = writeln!(
        out,
        "error: {}",
        safe_lines(&shorten_words(&err.to_string()))
    );
    let mut last = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        // anyhow chains often repeat the inner message; show each once.
        if text != last && !last.ends_with(&text) {
            let _ = writeln!(out, "  caused by: {}", safe_lines(&shorten_words(&text)));
        }
        last = text;
    }
    if let Some(src) = sources.filter(|_| from_gateway(err)) {
        use crate::credentials::Source as Cred;
        let _ = writeln!(out, "  talking to: {}", src.target);
        // Rejected (401): the credential itself is wrong; forbidden (403):
        // it works but may not do this, and the driver's hint says why.
        let rejected = err.chain().any(|c| {
            matches!(
                c.downcast_ref::<DriverError>(),
                Some(DriverError::Unauthorized(_))
            )
        });
        match &src.credential {
            Some((Cred::Env(var), url)) if rejected => {
                let url = crate::drivers::http_client::display_url(url);
                let _ = writeln!(out, "  the credential from {var} was rejected by {url}");
                hint = Some(format!(
                    "{var} is set, and {url} does not accept it: check its value, or unset {var} to use the credential `tok login` stored"
                ));
            }
            Some((source, url)) if rejected => {
                let url = crate::drivers::http_client::display_url(url);
                let _ = writeln!(
                    out,
                    "  the credential from the {source} was rejected by {url}"
                );
                hint = Some(format!(
                    "store a working one with `tok login` for {url}, or set TOK_ADMIN_TOKEN"
                ));
            }
            Some((source, _)) if kind == Kind::Auth => {
                let _ = writeln!(out, "  credential: from the {source}");
            }
            _ => {}
        }
        if plain_http_answer(err) {
            hint = Some(
                "the server answered in plain HTTP, not TLS: use its http:// URL (or give it a certificate with `tok serve --tls-cert`)"
                    .into(),
            );
        }
    }
    if let Some(h) = hint {
        let _ = writeln!(out, "\nhint: {}", shorten_words(&h));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_words_are_shortened_and_short_text_is_kept() {
        assert_eq!(shorten_words("a short message"), "a short message");
        let huge = "x".repeat(120_000);
        let msg = shorten_words(&format!("`{huge}` is not a duration; use 15m"));
        assert!(msg.len() < 300, "{}", msg.len());
        assert!(
            msg.ends_with("(120002 characters) is not a duration; use 15m"),
            "{msg}"
        );
        assert_eq!(shorten("abcdef", 3), "abc… (6 characters)");
    }
}
