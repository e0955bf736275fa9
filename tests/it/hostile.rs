//! What a hostile client of the proxy, a hostile gateway or a hostile argument
//! can do (issue 13): each test covers a class of input, not one payload.

use crate::common::*;
use crate::proxy::Gate;
use serde_json::Value;
use std::io::{Read, Write};

/// Sends `request` (a whole HTTP/1.1 request, byte for byte) to `base`; returns
/// the status and the body. Clients would normalise what these tests send.
pub fn raw(base: &str, request: &[u8]) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    conn.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A GET of `path` with no token, as sent by a client that does not normalise.
fn anonymous_get(base: &str, path: &str) -> u16 {
    let host = base.trim_start_matches("http://");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw(base, req.as_bytes()).0
}

/// Every character a terminal would act on or hide, encoded into a path: C0
/// (ESC, BEL, CR, LF, TAB, BS), DEL, C1 (CSI, OSC), bidi overrides and
/// isolates, zero-width and other invisible format characters.
const HOSTILE_PATH: &str = "/x%1b%5d0%3bOWNED%07%1b%5b2J%0a2030-01-01T00:00:00Z%20%20create%20%20tk_forged%0d%09%08%7f%c2%9b%c2%9d%e2%80%ae%e2%81%a6%e2%80%8b%e2%80%8d%ef%bb%bf%c2%ad/end";

/// No character of `out` that a terminal would act on or hide, except the
/// newlines that end its lines (and the tabs between TSV fields).
fn assert_terminal_safe(what: &str, out: &str) {
    let tsv = what.ends_with("tsv");
    for line in out.lines() {
        let fields: Vec<&str> = if tsv {
            line.split('\t').collect()
        } else {
            vec![line]
        };
        assert!(
            !fields.iter().any(|f| tok::text::has_unsafe(f)),
            "{what} printed a raw control or invisible character: {line:?}"
        );
    }
}

#[test]
fn a_client_cannot_write_to_the_terminal_through_the_audit_trail() {
    let gate = Gate::start(None);
    // Refused either way (no token, or a path the proxy will not route); the
    // attempt is recorded, which is the point.
    assert!([400, 401].contains(&anonymous_get(&gate.proxy, HOSTILE_PATH)));
    // Format characters alone are valid in a path: stored decoded.
    assert_eq!(
        anonymous_get(&gate.proxy, "/bidi%e2%80%ae%e2%80%8b%c2%adOWNED"),
        401
    );
    let entries = gate.audit_until(|e| e.iter().filter(|e| e["event"] == "request").count() == 2);
    // JSON keeps the exact value, escaped by JSON's own rules.
    let paths: Vec<&str> = entries.iter().filter_map(|e| e["path"].as_str()).collect();
    assert!(
        paths.iter().any(|p| p.contains("\u{202e}\u{200b}")),
        "{paths:?}"
    );
    let env = gate.server.local();
    let count = entries.len();
    for args in [&["audit"][..], &["audit", "-o", "tsv"]] {
        let out = env.ok(args);
        assert_terminal_safe(&args.join(" "), &out);
        // One line per entry (and the TSV header): the forged line stays inside.
        let header = usize::from(args.len() > 1);
        assert_eq!(out.lines().count(), count + header, "{out}");
        assert!(out.contains("OWNED"), "{out}");
        assert!(
            out.contains("bidi\\u{202e}\\u{200b}\\u{00ad}OWNED"),
            "{out}"
        );
    }
    // --follow prints through the same writer.
    let mut child = env
        .std_cmd()
        .args(["audit", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(child.stdout.take().unwrap());
        while first.lines().count() < count {
            if r.read_line(&mut first).unwrap() == 0 {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_terminal_safe("audit --follow", &first);
    assert!(first.contains("OWNED"), "{first}");
}

/// Names, descriptions, scopes and labels with a character that shows one
/// thing and holds another.
const INVISIBLE: [&str; 7] = [
    "pay\u{202e}lanif",
    "a\u{200b}b",
    "a\u{200d}b",
    "a\u{2066}b",
    "\u{feff}ops",
    "x\u{1b}[31m",
    "a\u{9b}b",
];

#[test]
fn names_that_hide_or_reorder_text_are_refused_at_create() {
    let env = Env::new();
    for bad in INVISIBLE {
        for args in [
            vec!["create", "--ttl", "1h", "--name", bad],
            vec!["create", "--ttl", "1h", "--description", bad],
            vec!["create", "--ttl", "1h", "--scope", bad],
            vec!["create", "--ttl", "1h", "--label", &format!("k={bad}")],
        ] {
            let o = env.run(&args);
            assert_fails(&o, 2, &["U+"]);
        }
    }
    assert!(env.list_json(&["--state", "all"]).is_empty());

    // The admin API refuses them too (the checks live in the model).
    let server = crate::server::Server::start();
    let http = server.http();
    for bad in INVISIBLE {
        let r = http
            .post(server.api("/v1/tokens"))
            .bearer_auth(&server.admin)
            .json(&serde_json::json!({"name": bad, "expires_at": null}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad:?}");
        let body: Value = r.json().unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("U+"));
    }
}

#[test]
fn what_a_gateway_returns_is_made_safe_before_printing() {
    // A store written by something other than tok's checks (an older tok, or
    // a gateway's own admin API) may hold anything.
    let env = Env::new();
    env.create(&["--ttl", "1h", "--name", "seed"]);
    let store = tok::store::Store::open(&env.data_dir()).unwrap();
    let hostile = "evil\u{1b}]0;OWNED\u{7}\u{1b}[2J\n\u{202e}forged";
    let new = tok::model::NewToken {
        name: Some(hostile.into()),
        description: Some(hostile.into()),
        scopes: vec![format!("s{hostile}")],
        labels: [("k".to_string(), hostile.to_string())].into(),
        expires_at: None,
        max_uses: None,
    };
    let created = store
        .create(&new, Some(hostile), chrono::Utc::now())
        .unwrap();
    drop(store);
    let id = created.token.id;
    for args in [
        vec!["list"],
        vec!["list", "-o", "tsv"],
        vec!["list", "-o", "table"],
        vec!["inspect", &id],
    ] {
        let out = env.ok(&args);
        assert_terminal_safe(&args.join(" "), &out);
        assert!(out.contains("OWNED"), "{args:?}: {out}");
    }
    let json = env.inspect_json(&id);
    assert_eq!(json["name"], hostile);
}

#[test]
fn anonymous_traffic_never_erases_admin_history() {
    let mut gate = Gate::start_with(None, &["--audit-max-rows", "5"]);
    let (a, _) = gate.token(&["--ttl", "1h", "--name", "a"]);
    let (b, _) = gate.token(&["--ttl", "1h", "--name", "b"]);
    for i in 0..30 {
        assert_eq!(anonymous_get(&gate.proxy, &format!("/n{i}")), 401);
    }
    for _ in 0..50 {
        assert_eq!(anonymous_get(&gate.proxy, "/same"), 401);
    }
    let counted = |e: &[Value], path: Option<&str>| -> u64 {
        e.iter()
            .filter(|e| e["event"] == "request" && path.is_none_or(|p| e["path"] == p))
            .map(|e| e["count"].as_u64().unwrap())
            .sum()
    };
    let entries = gate.audit_until(|e| counted(e, None) == 80);
    assert_eq!(counted(&entries, None), 80, "every denial is counted");
    assert_eq!(counted(&entries, Some("/same")), 50);
    // The repeated denial is kept as fewer rows than requests.
    let same_rows = entries.iter().filter(|e| e["path"] == "/same").count();
    assert!(same_rows < 50, "{same_rows} rows for 50 identical denials");

    // Retention runs on its own timer: at start, with no traffic at all.
    gate.server.restart();
    let requests = |e: &[Value]| e.iter().filter(|e| e["event"] == "request").count();
    let entries = gate.audit_until(|e| requests(e) <= 5);
    assert_eq!(requests(&entries), 5, "the request cap applies");
    let created: Vec<&str> = entries
        .iter()
        .filter(|e| e["event"] == "create")
        .filter_map(|e| e["token_id"].as_str())
        .collect();
    // `tok serve init`'s admin token, then a and b.
    assert_eq!(created.len(), 3, "admin actions stay: {created:?}");
    assert_eq!(created[1..], [a.as_str(), b.as_str()]);
}

#[test]
fn secrets_in_urls_reach_neither_the_log_nor_the_audit_trail() {
    // Routes to a port nobody listens on: the upstream fails, which is when
    // the log used to name the full URL.
    let closed = crate::servers::free_port();
    let gate = Gate::start_with(
        Some(&format!(
            "[[route]]\npath = \"/down/**\"\nupstream = \"http://127.0.0.1:{closed}\"\n"
        )),
        &["-vv"],
    );
    let (_, secret) = gate.token(&["--ttl", "1h"]);
    let (_, other) = gate.token(&["--ttl", "1h"]);
    let upper = other.to_uppercase();
    for path in [
        format!("/down/x?access_token={other}"),
        format!("/down/{other}/y?k=v"),
        format!("/down/a%2F{other}"),
        format!("/up/{upper}?q={other}"),
        format!("/up/%74ok_{}", &other[4..]),
    ] {
        let r = gate.get(&path, Some(&secret));
        assert!(
            r.status().as_u16() >= 400 || path.starts_with("/up"),
            "{path}"
        );
    }
    let entries = gate.audit_until(|e| e.iter().filter(|e| e["event"] == "request").count() >= 5);
    let trail = serde_json::to_string(&entries).unwrap();
    let logs = gate.server.logs();
    assert!(logs.contains("upstream failed"), "{logs}");
    for (what, text) in [("audit trail", &trail), ("server log", &logs)] {
        for needle in [&other[4..], &upper[4..], "access_token", "k=v"] {
            assert!(
                !text.contains(needle),
                "the {what} holds {needle:?}:\n{text}"
            );
        }
    }
    // Nor the store's files, the WAL included.
    let bytes = all_bytes_under(&gate.server.data_dir);
    assert!(!contains_bytes(&bytes, other[4..].as_bytes()));
    assert!(!contains_bytes(&bytes, b"access_token"));
}
