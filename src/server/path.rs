//! The one path the proxy routes by and forwards: how a request path is made
//! canonical before route matching, and encoded again for the upstream.
//! docs/proxy.md ("Path normalisation") states what the upstream may assume.

/// The path a request is routed and forwarded by: percent-decoded, with `.`,
/// `..` and empty segments resolved, so that `/public/../admin` and
/// `/%61dmin` meet the rules for `/admin`. None when it cannot be made safe
/// (an encoded `/` or `\`, a NUL, or `..` above the root).
pub fn canonical_path(raw: &str) -> Option<String> {
    let mut segs: Vec<String> = Vec::new();
    for seg in raw.split('/').skip(1) {
        let decoded = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .ok()?;
        if decoded.contains(['/', '\\', '\0']) {
            return None;
        }
        match &*decoded {
            "" | "." => {}
            ".." => {
                segs.pop()?;
            }
            s => segs.push(s.to_string()),
        }
    }
    let trailing = raw.len() > 1 && raw.ends_with('/') && !segs.is_empty();
    let mut path = format!("/{}", segs.join("/"));
    if trailing {
        path.push('/');
    }
    Some(path)
}

/// The canonical path, encoded again for the upstream's request line.
pub fn encode_path(path: &str) -> String {
    /// What a path segment may hold unencoded (RFC 3986 pchar, minus `/`).
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'%')
        .add(b'/')
        .add(b'\\')
        .add(b'^')
        .add(b'|')
        .add(b'[')
        .add(b']');
    path.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// A path as the audit trail keeps it: at most 512 characters, a segment that
/// looks like a tok secret masked (as in the admin API's log), never a query.
pub fn audit_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    super::router::redact_path(path).chars().take(512).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_canonical_before_routing() {
        assert_eq!(canonical_path("/admin/x").as_deref(), Some("/admin/x"));
        assert_eq!(
            canonical_path("/public/../admin/x").as_deref(),
            Some("/admin/x")
        );
        assert_eq!(
            canonical_path("/public/%2e%2e/admin/x").as_deref(),
            Some("/admin/x")
        );
        assert_eq!(canonical_path("/%61dmin/x").as_deref(), Some("/admin/x"));
        assert_eq!(
            canonical_path("//admin//x/./").as_deref(),
            Some("/admin/x/")
        );
        assert_eq!(canonical_path("/").as_deref(), Some("/"));
        assert_eq!(canonical_path("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(canonical_path("/../etc"), None);
        assert_eq!(canonical_path("/a%2Fb"), None);
        assert_eq!(canonical_path("/a%5Cb"), None);
        assert_eq!(canonical_path("/a%00"), None);
        assert_eq!(encode_path("/a b/c?d"), "/a%20b/c%3Fd");
    }
}
