//! Base URLs as tok takes and shows them: checked, normalised, and never
//! shown with a user name, a password or a query (which may carry a key).

use crate::error::UserError;

/// Checks a base URL and drops a trailing slash. A URL with a user name or
/// password is refused (a credential has its own ways in); errors show the
/// input without either, nor its query.
pub fn normalize(raw: &str) -> Result<String, UserError> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| {
        UserError::usage(format!(
            "`{}` is not a URL ({e}); write e.g. http://127.0.0.1:8270",
            without_credentials(raw)
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UserError::usage(format!(
            "`{}` is not an http or https URL",
            without_credentials(raw)
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UserError::usage(
            "the URL carries a user name or password; give credentials another way",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A URL as tok shows it: normalised, or where it is not a usable base URL,
/// as given with any user name, password and query taken out.
pub fn display(raw: &str) -> String {
    normalize(raw).unwrap_or_else(|_| without_credentials(raw))
}

/// `raw` with the userinfo of its authority (`user:pass@`) and its query
/// replaced by `…`, read as text so that it works on what is not a URL too.
fn without_credentials(raw: &str) -> String {
    let raw = raw.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), raw),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => authority.to_string(),
    };
    redact(&format!("{scheme}{authority}{tail}"))
}

/// Drops any query string, which may carry a key (`?apikey=`), from a URL.
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_normalized() {
        assert_eq!(
            normalize("http://127.0.0.1:8270/").unwrap(),
            "http://127.0.0.1:8270"
        );
        assert!(normalize("127.0.0.1:8270").is_err());
        assert!(normalize("ftp://x").is_err());
        assert!(normalize("https://u:p@x").is_err());
        for raw in [
            "https://admin:pa55word@gw.example/x",
            "https://admin:pa55 word@gw.example",
            "ftp://admin:pa55word@gw.example",
            "admin:pa55word@gw.example?k=v",
        ] {
            let e = normalize(raw).unwrap_err().to_string();
            assert!(!e.contains("pa55") && !e.contains("admin"), "{e}");
            let shown = display(raw);
            assert!(
                !shown.contains("pa55") && !shown.contains("admin"),
                "{shown}"
            );
            assert!(shown.contains("gw.example"), "{shown}");
        }
        assert_eq!(display("https://gw.example/a/"), "https://gw.example/a");
        assert_eq!(
            display("https://u@gw.example/p?apikey=s"),
            "https://…@gw.example/p?…"
        );
        assert_eq!(redact("http://x/a?apikey=s"), "http://x/a?…");
    }
}
