//! Route rules for the proxy (`--routes FILE`): which scopes a method and path
//! need, and optionally which upstream serves them. First match wins.
//!
//! ```toml
//! [[route]]
//! methods = ["GET", "HEAD"]       # optional; any method when left out
//! path = "/orders/**"             # `*` is one path segment, `**` any number
//! scopes = ["orders:read"]        # every one is required
//!
//! [[route]]
//! path = "/admin/**"
//! scopes = ["admin"]
//! upstream = "http://127.0.0.1:9002"   # optional; else --upstream
//! ```
//! A request that matches no route needs a valid token and no scope.

use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "route")]
    routes: Vec<Spec>,
}

/// One `[[route]]` table as written, in a routes file or in `tok serve`'s
/// config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    methods: Option<Vec<String>>,
    path: String,
    #[serde(default)]
    scopes: Vec<String>,
    upstream: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Upper-case method names; None matches any method.
    pub methods: Option<Vec<String>>,
    /// The pattern as written in the file.
    pub path: String,
    /// The pattern as matched: ASCII lower case, no trailing slash.
    pub pattern: String,
    pub scopes: Vec<String>,
    /// Base URL without a trailing slash.
    pub upstream: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routes {
    pub routes: Vec<Route>,
}

impl Routes {
    pub fn load(path: &Path) -> Result<Routes, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Routes, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        Self::from_specs(file.routes).map_err(|(_, e)| e)
    }

    /// Checks the routes as written; an error names the route's index (from 0).
    pub fn from_specs(specs: Vec<Spec>) -> Result<Routes, (usize, String)> {
        let mut routes = Vec::new();
        for (i, s) in specs.into_iter().enumerate() {
            routes.push(check(i + 1, s).map_err(|e| (i, e))?);
        }
        Ok(Routes { routes })
    }

    /// The first route that matches the canonical `path`, if any. Matching
    /// ignores ASCII case and a trailing slash (`path::match_key`).
    pub fn find(&self, method: &str, path: &str) -> Option<&Route> {
        let key = super::path::match_key(path);
        self.routes.iter().find(|r| {
            r.methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
                && path_match(&r.pattern, &key)
        })
    }
}

/// One route as written, checked; `n` counts from 1 for messages.
fn check(n: usize, s: Spec) -> Result<Route, String> {
    if !s.path.starts_with('/') {
        return Err(format!("route {n}: path `{}` must start with `/`", s.path));
    }
    // One `**` keeps matching linear in the path; more would let a long
    // request path cost polynomial time.
    if s.path.matches("**").count() > 1 || s.path.contains("***") {
        return Err(format!(
            "route {n}: path `{}` has more than one `**`; one is enough to span any depth",
            s.path
        ));
    }
    let methods = match s.methods {
        None => None,
        Some(ms) if ms.is_empty() => {
            return Err(format!(
                "route {n}: `methods` is empty; leave it out to match any"
            ))
        }
        Some(ms) => {
            let mut up = Vec::new();
            for m in ms {
                let m = m.to_ascii_uppercase();
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(format!("route {n}: `{m}` is not an HTTP method"));
                }
                up.push(m);
            }
            Some(up)
        }
    };
    let upstream = match s.upstream {
        None => None,
        Some(u) => Some(
            crate::drivers::http_client::normalize_url(&u)
                .map_err(|e| format!("route {n}: upstream: {e}"))?,
        ),
    };
    Ok(Route {
        methods,
        pattern: super::path::match_key(&s.path),
        path: s.path,
        scopes: s.scopes,
        upstream,
    })
}

/// `*` matches within one segment (no `/`); `**` matches across segments, and
/// a trailing `/**` matches no segment too (`/admin/**` covers `/admin`).
pub fn path_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'/') if &p[1..] == b"**" && s.is_empty() => true,
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = &p[2..];
                (0..=s.len()).any(|i| go(rest, &s[i..]))
            }
            Some(b'*') => {
                let rest = &p[1..];
                let mut i = 0;
                loop {
                    if go(rest, &s[i..]) {
                        return true;
                    }
                    if i == s.len() || s[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some(&c) => s.first() == Some(&c) && go(&p[1..], &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(path_match("/orders/*", "/orders/42"));
        assert!(!path_match("/orders/*", "/orders/42/items"));
        assert!(path_match("/orders/**", "/orders/42/items"));
        assert!(path_match("/orders/*/items", "/orders/42/items"));
        assert!(!path_match("/orders", "/orders/1"));
        assert!(path_match("/**", "/"));
        assert!(path_match("/a*b", "/axxb"));
        assert!(path_match("/admin/**", "/admin"));
        assert!(!path_match("/admin/**", "/administrator"));
    }

    #[test]
    fn first_match_wins_and_methods_filter() {
        let r = Routes::parse(
            r#"
            [[route]]
            methods = ["get"]
            path = "/orders/**"
            scopes = ["orders:read"]
            [[route]]
            path = "/orders/**"
            scopes = ["orders:write"]
            upstream = "http://127.0.0.1:9/"
            "#,
        )
        .unwrap();
        assert_eq!(r.find("GET", "/orders/1").unwrap().scopes, ["orders:read"]);
        let post = r.find("POST", "/orders/1").unwrap();
        assert_eq!(post.scopes, ["orders:write"]);
        assert_eq!(post.upstream.as_deref(), Some("http://127.0.0.1:9"));
        assert!(r.find("GET", "/other").is_none());
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(Routes::parse("[[route]]\npath = 'x'\n")
            .unwrap_err()
            .contains("start with `/`"));
        assert!(Routes::parse("[[route]]\npath = '/x'\nmethods = []\n")
            .unwrap_err()
            .contains("empty"));
        assert!(Routes::parse("[[route]]\npath = '/x'\nscope = ['a']\n")
            .unwrap_err()
            .contains("scope"));
        assert!(Routes::parse("[[route]]\npath = '/x'\nupstream = 'nope'\n")
            .unwrap_err()
            .contains("upstream"));
    }
}
