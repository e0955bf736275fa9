//! The one path the proxy routes by and forwards: how a request path is made
//! canonical before route matching, and encoded again for the upstream.
//! docs/proxy.md ("Path normalisation") states what the upstream may assume.

/// Why a path is refused (400), in words for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// An encoded `/` or a `\`: one server would split there, another not.
    Separator,
    /// `..` above the root.
    AboveRoot,
    /// A `;` path parameter, which servlet containers strip before routing.
    Parameter,
    /// A control character, white space or an invisible format character.
    Invisible,
    /// A segment ending in `.`, which Windows file systems drop.
    TrailingDot,
    /// A `%` and two hex digits left after decoding: double encoding.
    DoubleEncoded,
    /// Percent-encoded bytes that are not UTF-8.
    NotUtf8,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::Separator => "the path has an encoded `/` or a `\\`",
            Refused::AboveRoot => "the path has `..` above the root",
            Refused::Parameter => "the path has a `;` parameter; tok refuses path parameters",
            Refused::Invisible => {
                "the path has a control character, white space or an invisible character"
            }
            Refused::TrailingDot => "a path segment ends in `.`",
            Refused::DoubleEncoded => "the path is percent-encoded twice",
            Refused::NotUtf8 => "the path's percent-encoded bytes are not UTF-8",
        }
    }
}

/// The path a request is routed and forwarded by: percent-decoded once, with
/// `.`, `..` and empty segments resolved, so that `/public/../admin` and
/// `/%61dmin` meet the rules for `/admin`.
///
/// Refused, rather than guessed at, is any path that another server could read
/// as a different one: an encoded `/` or a `\`, `..` above the root, a `;`
/// parameter (`/admin;/x`, `/public/..;/admin`), a control, white space or
/// invisible character (`/admin%20`, `/admin%09`), a segment ending in `.`
/// (`/admin.`, `/admin%2e`), and a `%XX` left after decoding (`/%2561dmin`).
/// docs/proxy.md lists these as what the upstream may assume.
pub fn canonical_path(raw: &str) -> Result<String, Refused> {
    let mut segs: Vec<String> = Vec::new();
    for seg in raw.split('/').skip(1) {
        let decoded = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| Refused::NotUtf8)?;
        check_segment(&decoded)?;
        match &*decoded {
            "" | "." => {}
            ".." => {
                segs.pop().ok_or(Refused::AboveRoot)?;
            }
            s => segs.push(s.to_string()),
        }
    }
    let trailing = raw.len() > 1 && raw.ends_with('/') && !segs.is_empty();
    let mut path = format!("/{}", segs.join("/"));
    if trailing {
        path.push('/');
    }
    Ok(path)
}

fn check_segment(s: &str) -> Result<(), Refused> {
    if s.contains(['/', '\\']) {
        return Err(Refused::Separator);
    }
    if s.contains(';') {
        return Err(Refused::Parameter);
    }
    if s.chars()
        .any(|c| c.is_whitespace() || crate::text::is_unsafe(c))
    {
        return Err(Refused::Invisible);
    }
    if s.ends_with('.') && s != "." && s != ".." {
        return Err(Refused::TrailingDot);
    }
    let b = s.as_bytes();
    if b.windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
    {
        return Err(Refused::DoubleEncoded);
    }
    Ok(())
}

/// What routes are matched against: the canonical path with ASCII letters
/// folded to lower case and without a trailing `/`, so that `/ADMIN`,
/// `/Admin/x` and `/orders/42/` meet the rules for `/admin`, `/admin/x` and
/// `/orders/42` on upstreams that ignore case or a trailing slash. Route
/// patterns are folded the same way when the file is read.
pub fn match_key(canonical: &str) -> String {
    let mut key = canonical.to_ascii_lowercase();
    if key.len() > 1 && key.ends_with('/') {
        key.pop();
    }
    key
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

/// The ways an upstream with other path rules may read a forwarded path:
/// decoding it once more, dropping `;` parameters, resolving dot segments,
/// ignoring ASCII case, a trailing slash, and trailing dots and spaces. The
/// property test and the `path_routing` fuzz target check that none of them
/// meets a stricter route than the one tok matched.
pub fn upstream_readings(forwarded: &str) -> Vec<String> {
    let once = |p: &str| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    };
    let decoded = once(forwarded);
    let twice = once(&decoded);
    let mut out = Vec::new();
    for base in [decoded, twice] {
        let segs: Vec<String> = base
            .split(['/', '\\'])
            .map(|s| s.split(';').next().unwrap_or_default())
            .map(|s| s.trim_end_matches(['.', ' ']).to_string())
            .collect();
        let mut resolved: Vec<String> = Vec::new();
        for s in segs {
            match s.as_str() {
                "" | "." => {}
                ".." => {
                    resolved.pop();
                }
                _ => resolved.push(s),
            }
        }
        let p = format!("/{}", resolved.join("/"));
        out.push(p.to_ascii_lowercase());
        out.push(p);
    }
    out
}

/// Routes of every kind the property check needs: open, scoped by a `**`
/// prefix, by a `*` segment, and written in mixed case.
#[doc(hidden)]
pub const PROPERTY_ROUTES: &str = r#"
[[route]]
path = "/public/**"
[[route]]
path = "/admin/**"
scopes = ["admin"]
[[route]]
path = "/orders/*"
scopes = ["orders:read"]
[[route]]
path = "/orders/*/items"
scopes = ["orders:read"]
[[route]]
path = "/Mixed/Case"
scopes = ["mixed"]
"#;

/// The property docs/proxy.md promises, for one raw request path: refused,
/// or no reading of what is forwarded (`upstream_readings`) meets a route
/// that needs a scope the matched route did not. Ok(true) when the path was
/// accepted and holds, Ok(false) when it was refused, Err with the
/// counterexample otherwise. The unit test and the `path_routing` fuzz target
/// both call it.
#[doc(hidden)]
pub fn check_readings(routes: &super::routes::Routes, raw: &str) -> Result<bool, String> {
    let Ok(canonical) = canonical_path(raw) else {
        return Ok(false);
    };
    let scopes = |p: &str| {
        routes
            .find("GET", p)
            .map(|r| r.scopes.clone())
            .unwrap_or_default()
    };
    let allowed = scopes(&canonical);
    let sent = encode_path(&canonical);
    for reading in upstream_readings(&sent) {
        let needs = scopes(&reading);
        if !needs.iter().all(|s| allowed.contains(s)) {
            return Err(format!(
                "{raw:?} was routed as {canonical:?} needing {allowed:?}, \
                 but an upstream may read {sent:?} as {reading:?}, which needs {needs:?}"
            ));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::routes::Routes;

    #[test]
    fn paths_are_made_canonical_before_routing() {
        let ok = |raw: &str| canonical_path(raw).unwrap();
        assert_eq!(ok("/admin/x"), "/admin/x");
        assert_eq!(ok("/public/../admin/x"), "/admin/x");
        assert_eq!(ok("/public/%2e%2e/admin/x"), "/admin/x");
        assert_eq!(ok("/%61dmin/x"), "/admin/x");
        assert_eq!(ok("//admin//x/./"), "/admin/x/");
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/caf%C3%A9/%25zz/v1.2/a:b"), "/café/%zz/v1.2/a:b");
        assert_eq!(encode_path("/a b/c?d"), "/a%20b/c%3Fd");
    }

    #[test]
    fn paths_another_server_could_read_otherwise_are_refused() {
        use Refused::*;
        for (raw, why) in [
            ("/../etc", AboveRoot),
            ("/a%2Fb", Separator),
            ("/a%5Cb", Separator),
            ("/a\\b", Separator),
            ("/admin;/x", Parameter),
            ("/admin;", Parameter),
            ("/public/..;/admin", Parameter),
            ("/admin%3bx", Parameter),
            ("/a%00", Invisible),
            ("/admin%20", Invisible),
            ("/admin%09", Invisible),
            ("/admin%0a", Invisible),
            ("/admin%c2%a0", Invisible),
            ("/admin%e2%80%8b", Invisible),
            ("/admin%e2%80%ae", Invisible),
            ("/a%20b", Invisible),
            ("/admin.", TrailingDot),
            ("/admin%2e", TrailingDot),
            ("/admin.../x", TrailingDot),
            ("/%2561dmin", DoubleEncoded),
            ("/admin%252e", DoubleEncoded),
            ("/a%ff", NotUtf8),
        ] {
            assert_eq!(canonical_path(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn routes_match_without_case_or_a_trailing_slash() {
        assert_eq!(match_key("/ADMIN/X/"), "/admin/x");
        assert_eq!(match_key("/"), "/");
    }

    /// Every path built from pieces that servers read differently: tok either
    /// refuses it, or no reading of what it forwards meets a stricter route.
    #[test]
    fn the_upstream_never_receives_a_path_a_stricter_route_would_match() {
        let routes = Routes::parse(PROPERTY_ROUTES).unwrap();
        let pieces = [
            "",
            "admin",
            "ADMIN",
            "Admin",
            "aDmin",
            "public",
            "orders",
            "42",
            "items",
            "mixed",
            "MIXED",
            "case",
            ".",
            "..",
            ";",
            ";x",
            "..;",
            "%2e",
            "%2e%2e",
            "%2E",
            "%252e",
            "%2561dmin",
            "%61dmin",
            "%3b",
            "%2f",
            "%5c",
            "%20",
            "%09",
            "%00",
            "admin.",
            "admin%2e",
            "admin%20",
            "admin;",
            "%e2%80%8b",
            "a%2fb",
        ];
        let (mut checked, mut refused) = (0, 0);
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for raw in [
                        format!("/{a}/{b}/{c}"),
                        format!("/{a}{b}/{c}"),
                        format!("/{a}/{b}{c}/"),
                    ] {
                        match check_readings(&routes, &raw) {
                            Ok(true) => checked += 1,
                            Ok(false) => refused += 1,
                            Err(counterexample) => panic!("{counterexample}"),
                        }
                    }
                }
            }
        }
        assert!(
            checked > 10_000 && refused > 10_000,
            "{checked} checked, {refused} refused"
        );
    }
}
