//! What a hostile client of the proxy, a hostile gateway or a hostile argument
//! can do (issue 13): each test covers a class of input, not one payload.

use crate::common::*;
use crate::proxy::Gate;
use serde_json::Value;
use std::io::{Read, Write};

/// Sends `request` (a whole HTTP/1.1 request, byte for byte) to `base`; returns
/// the status (0 when the connection closed without one) and the body. Clients
/// would normalise what these tests send. `hang_up` closes the sending side
/// after the request, so that a body cut short ends instead of waiting for more.
pub fn send(base: &str, request: &[u8], hang_up: bool) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    conn.write_all(request).unwrap();
    if hang_up {
        conn.shutdown(std::net::Shutdown::Write).unwrap();
    }
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

pub fn raw(base: &str, request: &[u8]) -> (u16, String) {
    send(base, request, false)
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
    assert_eq!(
        anonymous_get(&gate.proxy, "/bidi%e2%80%ae%e2%80%8b%c2%adOWNED"),
        400
    );
    let entries = gate.audit_until(|e| e.iter().filter(|e| e["event"] == "request").count() == 2);
    let env = gate.server.local();
    let count = entries.len();
    for args in [&["audit"][..], &["audit", "-o", "tsv"]] {
        let out = env.ok(args);
        assert_terminal_safe(&args.join(" "), &out);
        // One line per entry and the header: the forged line stays inside.
        assert_eq!(out.lines().count(), count + 1, "{out}");
        assert!(out.contains("OWNED"), "{out}");
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
        ..Default::default()
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
    // The audit trail's create entry names the hostile actor.
    for args in [&["audit"][..], &["audit", "-o", "tsv"]] {
        let out = env.ok(args);
        assert_terminal_safe(&args.join(" "), &out);
        assert!(out.contains("\\u{001b}]0;OWNED\\u{0007}"), "{out}");
        assert!(out.contains("\\u{202e}forged"), "{out}");
    }
    let trail: Vec<Value> = serde_json::from_str(&env.ok(&["audit", "-o", "json"])).unwrap();
    assert_eq!(
        trail.last().unwrap()["actor"],
        hostile,
        "JSON keeps the exact value"
    );
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
    assert!(!contains_bytes(&bytes, &other.as_bytes()[4..]));
    assert!(!contains_bytes(&bytes, b"access_token"));
}

/// A request with `secret` for `path`, sent byte for byte, with extra header lines.
fn request(base: &str, method: &str, path: &str, secret: &str, extra: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n{extra}Connection: close\r\n\r\n"
    );
    raw(base, req.as_bytes())
}

#[test]
fn route_scopes_hold_whatever_path_rules_the_upstream_has() {
    let gate = Gate::start(Some(
        "[[route]]\npath = \"/admin/**\"\nscopes = [\"admin\"]\n[[route]]\npath = \"/public/**\"\n",
    ));
    let (_, plain) = gate.token(&["--ttl", "1h"]);
    let (_, admin) = gate.token(&["--ttl", "1h", "--scope", "admin"]);
    // Each reaches /admin on some upstream: servlet `;` parameters, case-
    // insensitive routing, Windows trailing dots and spaces, double decoding,
    // a trailing slash or none.
    let bypasses = [
        "/admin",
        "/admin/",
        "/admin/x",
        "/admin;/x",
        "/admin;",
        "/admin;jsessionid=1/x",
        "/public/..;/admin",
        "/public/%2e%2e;/admin",
        "/ADMIN",
        "/Admin/x",
        "/aDmIn/",
        "/admin.",
        "/admin%2e",
        "/admin%2E/x",
        "/admin%20",
        "/admin%09",
        "/admin%0a",
        "/admin%c2%a0",
        "/admin%e2%80%8b",
        "/%2561dmin",
        "/admin%252e",
        "/admin%3bx/y",
        "/public/../admin",
        "/public/%2e%2e/ADMIN/x",
        "//admin//x",
    ];
    for path in bypasses {
        let (status, body) = request(&gate.proxy, "GET", path, &plain, "");
        assert!(status == 400 || status == 403, "{path}: {status} {body}");
    }
    assert_eq!(gate.upstream.hits(), 0, "nothing reached the upstream");
    // What the rules let through still goes through.
    assert_eq!(request(&gate.proxy, "GET", "/Admin/x/", &admin, "").0, 200);
    assert_eq!(
        request(&gate.proxy, "GET", "/public/a:b/v1.2", &plain, "").0,
        200
    );

    // Rewrite and forwarding headers from the client never reach the upstream.
    let (status, body) = request(
        &gate.proxy,
        "GET",
        "/public/x",
        &plain,
        "X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-Forwarded-Prefix: /admin\r\nX-Forwarded-For: 203.0.113.9\r\nX-Real-IP: 203.0.113.9\r\n",
    );
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    let headers = &echo["headers"];
    for h in [
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-prefix",
        "x-real-ip",
    ] {
        assert!(
            headers.get(h).is_none(),
            "{h} reached the upstream: {headers}"
        );
    }
    assert_eq!(
        headers["x-forwarded-for"], "127.0.0.1",
        "replaced, not appended to"
    );
}

#[test]
fn ambiguous_requests_are_refused_before_any_token_is_checked() {
    let gate = Gate::start(None);
    let (_, secret) = gate.token(&["--ttl", "1h"]);
    let host = gate.proxy.trim_start_matches("http://").to_string();
    let auth = format!("Authorization: Bearer {secret}\r\n");
    let chunked = "Transfer-Encoding: chunked\r\n";
    // (what, request line, header lines, body, expected status)
    let cases: [(&str, String, String, &str, u16); 8] = [
        (
            "two Authorization headers",
            "GET /x".into(),
            format!("Host: {host}\r\n{auth}Authorization: Bearer tok_other\r\n"),
            "",
            400,
        ),
        (
            "two Authorization headers, the valid one last",
            "GET /x".into(),
            format!("Host: {host}\r\nAuthorization: Basic eDp5\r\n{auth}"),
            "",
            400,
        ),
        ("no Host", "GET /x".into(), auth.clone(), "", 400),
        (
            "two Host headers",
            "GET /x".into(),
            format!("Host: {host}\r\nHost: evil.example\r\n{auth}"),
            "",
            400,
        ),
        (
            "TRACE",
            "TRACE /x".into(),
            format!("Host: {host}\r\n{auth}"),
            "",
            405,
        ),
        (
            "CONNECT",
            format!("CONNECT {host}"),
            format!("Host: {host}\r\n{auth}"),
            "",
            405,
        ),
        (
            "a malformed chunked body",
            "POST /upload".into(),
            format!("Host: {host}\r\n{auth}{chunked}"),
            "4\r\nabcd\r\nzz\r\nnot hex\r\n0\r\n\r\n",
            400,
        ),
        (
            "a chunked body cut off",
            "POST /upload".into(),
            format!("Host: {host}\r\n{auth}{chunked}"),
            "10\r\nabcd",
            400,
        ),
    ];
    for (what, line, headers, body, expected) in cases {
        let req =
            format!("{line} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n{body}").into_bytes();
        let before = gate.upstream.hits();
        let (status, body) = if what.contains("cut off") {
            // The client hangs up mid-body: it may get its 400, or the
            // connection may close first (hyper does not keep half-closed
            // connections); never a 502 that blames the upstream.
            let (status, body) = send(&gate.proxy, &req, true);
            (if status == 0 { expected } else { status }, body)
        } else {
            raw(&gate.proxy, &req)
        };
        assert_eq!(status, expected, "{what}: {body}");
        // A body is streamed, so the upstream may have seen its start.
        if !what.contains("body") {
            assert_eq!(gate.upstream.hits(), before, "{what} reached the upstream");
        }
    }
    // The refusals are recorded.
    let recorded = |e: &[Value]| -> u64 {
        e.iter()
            .filter(|e| e["event"] == "request")
            .map(|e| e["count"].as_u64().unwrap())
            .sum()
    };
    let entries = gate.audit_until(|e| recorded(e) >= 8);
    assert_eq!(recorded(&entries), 8, "every refusal is recorded");
    for reason in [
        "Authorization",
        "Host",
        "CONNECT or TRACE",
        "malformed or was cut off",
    ] {
        assert!(
            entries
                .iter()
                .any(|e| e["reason"].as_str().is_some_and(|r| r.contains(reason))),
            "no entry says {reason:?}"
        );
    }
    // Nothing blamed the upstream.
    assert!(entries.iter().all(|e| e["upstream_status"] != 502));
}
