//! The server's log writer: whatever a log line says, it never carries a
//! query string or a secret-shaped value. Call sites already leave them out
//! (`redact_path`, `reqwest::Error::without_url`); this writer is the net
//! under them, for every line at every level, including the messages of
//! errors from libraries that name a URL.

use std::borrow::Cow;
use std::io::{self, Write};

/// Where the mask goes instead of a value.
const MASK: &str = "(redacted)";

/// `line` with every query string of a URL cut to `?…`, every tok secret
/// (`tok_` and 8 or more letters or digits) and the credential after
/// `Bearer ` masked. Borrowed when there is nothing to mask.
pub fn redact(line: &str) -> Cow<'_, str> {
    let lower = line.to_ascii_lowercase();
    if !lower.contains(crate::secret::PREFIX) && !line.contains('?') && !lower.contains("bearer ") {
        return Cow::Borrowed(line);
    }
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    let mut in_url = false;
    while i < b.len() {
        let rest = &lower[i..];
        let word_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if rest.starts_with("http://") || rest.starts_with("https://") {
            in_url = true;
        }
        if is_url_end(b[i]) {
            in_url = false;
        }
        if in_url && b[i] == b'?' {
            out.push_str("?…");
            i += 1;
            while i < b.len() && !is_url_end(b[i]) {
                i += 1;
            }
            in_url = false;
            continue;
        }
        if word_start && rest.starts_with(crate::secret::PREFIX) {
            let run = b[i + 4..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            if run >= 8 {
                out.push_str(MASK);
                i += 4 + run;
                continue;
            }
        }
        if word_start && rest.starts_with("bearer ") {
            let skip = 7 + b[i + 7..].iter().take_while(|c| !is_url_end(**c)).count();
            out.push_str(&line[i..i + 7]);
            out.push_str(MASK);
            i += skip;
            continue;
        }
        let ch = line[i..].chars().next().expect("i is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    Cow::Owned(out)
}

/// What ends a URL or a credential inside a log line.
fn is_url_end(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b')' | b'>' | b',' | b'`')
}

/// A writer that masks each line (tracing's formatter writes an event in one
/// call) before it reaches stderr.
pub struct Redacting;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Redacting {
    type Writer = RedactingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter
    }
}

pub struct RedactingWriter;

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_secrets_never_reach_the_log() {
        let secret = crate::secret::Secret::generate();
        let s = secret.expose();
        for (line, gone) in [
            (
                format!("WARN upstream failed error=error sending request for url (http://127.0.0.1:9/x?access_token={s})"),
                s.to_string(),
            ),
            (format!("path=/v1/tokens/{s}/revoke"), s.to_string()),
            (format!("msg=\"{}\"", s.to_uppercase()), s.to_uppercase()),
            ("https://gw/a?apikey=k3y&x=1 next".into(), "k3y".into()),
            ("authorization: Bearer abc.def.ghi".into(), "abc.def".into()),
        ] {
            let r = redact(&line);
            assert!(!r.contains(&gone), "{r}");
        }
        assert_eq!(
            redact("url=https://gw/a?apikey=k3y next"),
            "url=https://gw/a?… next"
        );
        assert_eq!(redact("is this ok? yes"), "is this ok? yes");
        assert_eq!(
            redact("token tk_abc id=tok_short"),
            "token tk_abc id=tok_short"
        );
        assert!(matches!(redact("plain line ü"), Cow::Borrowed(_)));
    }
}
