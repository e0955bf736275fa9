//! `tok serve` and the tok driver, against a real server process per test:
//! the lifecycle through the driver, admin auth, restart, concurrency, limits,
//! error mapping, TLS, bootstrap and `--dev`.

use crate::common::*;
use crate::each_store;
use crate::server::Server;
use reqwest::blocking::Response;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

fn admin_id(server: &Server) -> String {
    let o = server
        .client()
        .run_stdin(&["inspect", "-", "-o", "json"], &server.admin);
    assert_success(&o, &["inspect admin"]);
    serde_json::from_str::<Value>(&stdout(&o)).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn body(r: Response) -> Value {
    r.json().expect("a JSON body")
}

/// The error code of an API error answer, checking its one shape.
fn error_code(r: Response) -> (StatusCode, String, String) {
    let status = r.status();
    let v = body(r);
    let e = v["error"].as_object().expect("{error:{code,message}}");
    assert_eq!(e.len(), 2, "{v}");
    (
        status,
        e["code"].as_str().unwrap().to_string(),
        e["message"].as_str().unwrap().to_string(),
    )
}

each_store!(serve_lifecycle_create_and_list_formats);
fn serve_lifecycle_create_and_list_formats() {
    let server = Server::start();
    let env = server.client();
    let s1 = env.create(&[
        "--ttl",
        "15m",
        "--name",
        "deploy-1",
        "--scope",
        "orders:read",
    ]);
    let (id2, s2) = env.create_json(&[
        "--ttl", "2h", "--name", "web", "--label", "team=web", "--uses", "3",
    ]);
    let o = env.run(&["create", "--ttl", "15m"]);
    assert_success(&o, &["create"]);
    assert_eq!(stdout(&o).lines().count(), 1, "the secret alone on stdout");
    assert!(stderr(&o).contains("created tk_"), "{}", stderr(&o));

    let admin = admin_id(&server);
    let list = env.list_json(&["--name", "*"]);
    let names: Vec<&str> = list.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "deploy-1", "web"]);
    let web = &list[2];
    assert_eq!(web["id"], id2.as_str());
    assert_eq!(web["labels"]["team"], "web");
    assert_eq!(web["max_uses"], 3);
    assert_eq!(web["created_by"], format!("{admin} (admin)").as_str());

    let tsv = env.ok(&["list", "-o", "tsv", "--label", "team=web"]);
    assert_eq!(tsv.lines().count(), 2, "{tsv}");
    assert!(tsv.lines().next().unwrap().starts_with("id\tname\tstate"));
    assert!(tsv.contains(&id2));
    let plain = env.ok(&["list"]);
    for out in [&plain, &tsv] {
        assert!(
            !out.contains(&s1) && !out.contains(&s2),
            "a secret in a list"
        );
    }
    assert!(plain.starts_with("ID "), "{plain}");

    // What the server's store holds, read directly.
    let held = server.local().list_json(&["--label", "team=web"]);
    assert_eq!(ids(&held), std::slice::from_ref(&id2));
    assert_eq!(held[0]["created_by"], format!("{admin} (admin)").as_str());

    // Filters are applied by the server, as the local driver applies them.
    let names = |args: &[&str]| -> Vec<String> {
        env.list_json(args)
            .iter()
            .map(|t| t["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(names(&["--scope", "orders:read"]), ["deploy-1"]);
    assert_eq!(names(&["--expiring-within", "1h"]), ["deploy-1", ""]);
    assert_eq!(names(&["--name", "d*"]), ["deploy-1"]);
    assert_eq!(
        names(&["--created-by", &format!("{admin} (admin)")]).len(),
        3
    );
    assert_eq!(names(&["--limit", "2"]).len(), 2);
}

each_store!(serve_lifecycle_inspect_by_id_prefix_and_secret);
fn serve_lifecycle_inspect_by_id_prefix_and_secret() {
    let server = Server::start();
    let env = server.client();
    let (id, secret) = env.create_json(&["--ttl", "15m", "--name", "x", "--uses", "2"]);
    let full = env.ok(&["inspect", &id]);
    assert!(full.contains("0 of 2 (2 left)"), "{full}");
    assert!(!full.contains(&secret));
    assert_eq!(env.inspect_json(&id[..7])["id"], id.as_str());
    assert_eq!(env.inspect_json(&id[3..9])["id"], id.as_str());

    let o = env.run_stdin(&["inspect", "-", "-o", "json"], &format!("{secret}\n"));
    assert_success(&o, &["inspect -"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert!(!stdout(&o).contains(&secret));

    let o = env.run(&["inspect", "tk_doesnotexist"]);
    assert_fails(&o, exit::NOT_FOUND, &["tk_doesnotexist", "hint:"]);
    let long = "a".repeat(100);
    assert_fails(
        &env.run(&["inspect", &long]),
        exit::NOT_FOUND,
        &["no token matches"],
    );
    assert_fails(&env.run(&["inspect", "a/b?c"]), exit::NOT_FOUND, &["a/b?c"]);

    // `tk_` matches every token: ambiguous, with the candidates named.
    let o = env.run(&["inspect", "tk_"]);
    assert_fails(&o, exit::USAGE, &["matches", &id, "(admin)"]);

    // A well-formed secret nobody has.
    let other = Env::new().create(&["--ttl", "1m"]);
    let o = env.run_stdin(&["inspect", "-"], &other);
    assert_fails(&o, exit::NOT_FOUND, &["no token has that secret"]);
    assert!(!stderr(&o).contains(&other));
}

each_store!(serve_lifecycle_revoke_is_idempotent);
fn serve_lifecycle_revoke_is_idempotent() {
    let server = Server::start();
    let env = server.client();
    let admin = admin_id(&server);
    let (id, _) = env.create_json(&["--ttl", "15m", "--name", "one"]);
    let o = env.run(&["revoke", &id, "--yes", "--reason", "leaked"]);
    assert_success(&o, &["revoke"]);
    assert!(stderr(&o).contains(&format!("revoked {id} (one)")));
    assert_eq!(stdout(&o), "");
    let t = server.local().inspect_json(&id);
    assert_eq!(t["state"], "revoked");
    assert_eq!(t["revoke_reason"], "leaked");
    assert_eq!(t["revoked_by"], format!("{admin} (admin)").as_str());

    let o = env.run(&["revoke", &id, "--yes"]);
    assert_success(&o, &["revoke again"]);
    assert!(stderr(&o).contains("already revoked"), "{}", stderr(&o));
    assert_eq!(server.local().inspect_json(&id)["revoke_reason"], "leaked");

    // By secret on stdin.
    let (id2, s2) = env.create_json(&["--ttl", "15m"]);
    let o = env.run_stdin(&["revoke", "-", "--yes"], &format!("{s2}\n"));
    assert_success(&o, &["revoke -"]);
    assert_eq!(server.local().inspect_json(&id2)["state"], "revoked");
}

each_store!(serve_list_pages_with_a_cursor);
fn serve_list_pages_with_a_cursor() {
    let server = Server::start();
    let env = server.client();
    let made: Vec<String> = (0..5)
        .map(|i| {
            env.create_json(&["--ttl", "1h", "--name", &format!("p{i}")])
                .0
        })
        .collect();
    let http = server.http();
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut req = http
            .get(server.api("/v1/tokens"))
            .bearer_auth(&server.admin)
            .query(&[("limit", "2"), ("name", "p*")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let v = body(req.send().unwrap());
        pages += 1;
        let page = v["tokens"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(ids(page));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, made, "every token once, oldest first");
    assert_eq!(pages, 3);
}

each_store!(admin_auth_matrix);
fn admin_auth_matrix() {
    let server = Server::start();
    let http = server.http();
    let env = server.client();
    let list = server.api("/v1/tokens");
    let check = |auth: Option<&str>, status: StatusCode, code: &str, challenge: &str| {
        let mut req = http.get(&list);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().unwrap();
        let www = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let (s, c, msg) = error_code(r);
        assert_eq!((s, c.as_str()), (status, code), "{auth:?}: {msg}");
        assert!(www.contains(challenge), "{auth:?}: {www}");
        assert!(www.contains(r#"realm="tok""#), "{www}");
        msg
    };
    let invalid = r#"error="invalid_token""#;
    check(None, StatusCode::UNAUTHORIZED, "invalid_token", invalid);
    check(
        Some("Basic YTpi"),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        invalid,
    );
    check(
        Some("Bearer"),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        invalid,
    );
    check(
        Some("Bearer not-a-token"),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        invalid,
    );
    let unknown = Env::new().create(&["--ttl", "1h", "--scope", "tok:admin"]);
    let msg = check(
        Some(&format!("Bearer {unknown}")),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        invalid,
    );
    assert!(!msg.contains(&unknown));

    // A revoked admin token.
    let (rid, revoked) = env.create_json(&["--ttl", "1h", "--scope", "tok:admin"]);
    env.ok(&["revoke", &rid, "--yes"]);
    let msg = check(
        Some(&format!("Bearer {revoked}")),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        invalid,
    );
    assert!(msg.contains("revoked"), "{msg}");

    // An expired admin token: rotated with no grace, it expires at once.
    let (eid, expired) = env.create_json(&["--ttl", "1h", "--scope", "tok:admin"]);
    let r = http
        .post(server.api(&format!("/v1/tokens/{eid}/rotate")))
        .bearer_auth(&server.admin)
        .json(&json!({"grace_seconds": 0}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let msg = check(
        Some(&format!("Bearer {expired}")),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        invalid,
    );
    assert!(msg.contains("expired"), "{msg}");

    // A used-up admin token: one use, spent by its first request.
    let (_, once) = env.create_json(&["--ttl", "1h", "--scope", "tok:admin", "--uses", "1"]);
    let r = http.get(&list).bearer_auth(&once).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let msg = check(
        Some(&format!("Bearer {once}")),
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        invalid,
    );
    assert!(msg.contains("used up"), "{msg}");

    // tok:read may read, not write.
    let (_, reader) = env.create_json(&["--ttl", "1h", "--scope", "tok:read"]);
    let (victim, _) = env.create_json(&["--ttl", "1h", "--name", "victim"]);
    let ro = server.client_with(&reader);
    assert!(ro.list_json(&[]).len() >= 2);
    assert_eq!(ro.inspect_json(&victim)["name"], "victim");
    let who = body(
        http.get(server.api("/v1/auth/self"))
            .bearer_auth(&reader)
            .send()
            .unwrap(),
    );
    assert_eq!(who["scopes"], json!(["tok:read"]));
    let o = ro.run(&["create", "--ttl", "1h"]);
    assert_fails(&o, exit::AUTH, &["tok:admin", "hint:"]);
    let o = ro.run(&["revoke", &victim, "--yes"]);
    assert_fails(&o, exit::AUTH, &["tok:admin"]);
    assert_eq!(server.local().inspect_json(&victim)["state"], "active");
    let r = http
        .post(server.api("/v1/tokens"))
        .bearer_auth(&reader)
        .json(&json!({"expires_at": null}))
        .send()
        .unwrap();
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.contains(r#"error="insufficient_scope""#), "{www}");
    assert!(www.contains(r#"scope="tok:admin""#), "{www}");
    assert_eq!(error_code(r).1, "insufficient_scope");

    // The CLI's side: no token, a wrong one.
    let mut none = Env::new();
    none.set("TOK_URL", &server.url);
    assert_fails(
        &none.run(&["list"]),
        exit::AUTH,
        &["no admin token", "TOK_ADMIN_TOKEN"],
    );
    let wrong = server.client_with(&unknown);
    assert_fails(
        &wrong.run(&["list"]),
        exit::AUTH,
        &["not a token this server knows", "TOK_ADMIN_TOKEN"],
    );
    assert!(!stderr(&wrong.run(&["list"])).contains(&unknown));
}

each_store!(restart_keeps_every_token_and_state);
fn restart_keeps_every_token_and_state() {
    let mut server = Server::start();
    let env = server.client();
    let (active, active_secret) =
        env.create_json(&["--ttl", "1h", "--label", "set=a", "--uses", "3"]);
    let (revoked, _) = env.create_json(&["--ttl", "1h", "--label", "set=a"]);
    env.ok(&["revoke", &revoked, "--yes", "--reason", "test"]);
    let (rotated, _) = env.create_json(&["--ttl", "1h", "--label", "set=a"]);
    env.ok(&["rotate", &rotated, "--grace", "30m"]);
    let before = env.list_json(&["--state", "all", "--label", "set=a"]);
    assert_eq!(before.len(), 4);

    server.restart();
    let env = server.client();
    let after = env.list_json(&["--state", "all", "--label", "set=a"]);
    assert_eq!(before, after, "every token and state survives a restart");
    let o = env.run_stdin(&["inspect", "-", "-o", "json"], &active_secret);
    assert_success(&o, &["inspect"]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()["id"],
        active.as_str()
    );
    // The admin token from before the restart still works: it made this token.
    env.create(&["--ttl", "1m"]);
}

each_store!(eight_cli_processes_creating_through_the_server_all_land);
fn eight_cli_processes_creating_through_the_server_all_land() {
    let server = Server::start();
    let env = server.client();
    let mut secrets = create_concurrently(&env, 8, 5, &["--ttl", "1h", "--label", "race=1"]);
    assert_eq!(secrets.len(), 40);
    secrets.sort();
    secrets.dedup();
    assert_eq!(secrets.len(), 40, "all distinct");
    let held = server.local().list_json(&["--label", "race=1"]);
    assert_eq!(held.len(), 40, "all landed");
    let mut names: Vec<&str> = held.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 40);
}

each_store!(graceful_stop_on_sigterm_and_sigint);
fn graceful_stop_on_sigterm_and_sigint() {
    let mut server = Server::start();
    server.client().create(&["--ttl", "1m"]);
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let logs = server.logs();
    assert!(
        logs.contains("shutting down") && logs.contains("SIGTERM"),
        "{logs}"
    );
    assert!(logs.contains("stopped"), "{logs}");

    server.restart();
    let status = server.stop_with(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "{status:?}");
    assert!(server.logs().contains("SIGINT"));
}

each_store!(sigterm_lets_a_request_in_flight_finish);
fn sigterm_lets_a_request_in_flight_finish() {
    let mut server = Server::start_with(&["-v"]);
    let addr = server.url.trim_start_matches("http://").to_string();
    let body = r#"{"expires_at":null,"name":"in-flight"}"#;
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /v1/tokens HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        server.admin,
        body.len()
    );
    // Headers and half the body: the server has begun, and waits for the rest.
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&body.as_bytes()[..10]).unwrap();
    server.wait_for_log("request started method=POST path=/v1/tokens");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_for_log("shutting down");
    conn.write_all(&body.as_bytes()[10..]).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let status = server.stop_with_wait();
    assert!(status.success(), "{status:?}");
    let held = server.local().list_json(&["--name", "in-flight"]);
    assert_eq!(held.len(), 1, "the request in flight was answered and kept");
}

#[test]
fn the_server_log_and_store_hold_no_secret() {
    let server = Server::start();
    let env = server.client();
    let (id, s1) = env.create_json(&["--ttl", "1h", "--name", "a"]);
    env.run_stdin(&["inspect", "-"], &s1);
    let s2 = env.ok(&["rotate", &id]).trim().to_string();
    // A secret pasted into a URL by mistake is not logged either.
    let r = server
        .http()
        .get(server.api(&format!("/v1/tokens/{s2}")))
        .bearer_auth(&server.admin)
        .send()
        .unwrap();
    assert_eq!(error_code(r).0, StatusCode::BAD_REQUEST);
    let logs = server.logs();
    assert!(logs.contains("request"), "requests are logged: {logs}");
    assert!(logs.contains(&id), "{logs}");
    let bytes = all_bytes_under(&server.data_dir);
    for s in [&server.admin, &s1, &s2] {
        assert!(!logs.contains(s.as_str()), "a secret in the log:\n{logs}");
        assert!(!logs.contains(&s[4..30]));
        assert!(
            !contains_bytes(&bytes, s.as_bytes()),
            "a secret in the store"
        );
    }
}

each_store!(api_limits_each_name_the_limit);
fn api_limits_each_name_the_limit() {
    let server = Server::start();
    let http = server.http();
    let post = |path: &str, v: Value| {
        http.post(server.api(path))
            .bearer_auth(&server.admin)
            .json(&v)
            .send()
            .unwrap()
    };
    let bad = |r: Response, needle: &str| {
        let (status, code, msg) = error_code(r);
        assert!(status.is_client_error(), "{status}");
        assert!(msg.contains(needle), "{code}: {msg} lacks {needle:?}");
        code
    };
    // Body size cap.
    let big = "x".repeat(70 * 1024);
    let r = post(
        "/v1/tokens",
        json!({"expires_at": null, "description": big}),
    );
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(bad(r, "65536"), "payload_too_large");
    // Unknown fields.
    let r = post("/v1/tokens", json!({"expires_at": null, "nmae": "x"}));
    assert_eq!(bad(r, "unknown field `nmae`"), "invalid_request");
    // expires_at must be said, and in the future.
    bad(post("/v1/tokens", json!({})), "expires_at");
    bad(
        post("/v1/tokens", json!({"expires_at": "2001-01-01T00:00:00Z"})),
        "not in the future",
    );
    // Length and count limits.
    bad(
        post(
            "/v1/tokens",
            json!({"expires_at": null, "name": "n".repeat(129)}),
        ),
        "128",
    );
    let scopes: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    bad(
        post("/v1/tokens", json!({"expires_at": null, "scopes": scopes})),
        "64 scopes",
    );
    bad(
        post(
            "/v1/tokens",
            json!({"expires_at": null, "labels": {"k": "v".repeat(257)}}),
        ),
        "256",
    );
    bad(
        post("/v1/tokens", json!({"expires_at": null, "max_uses": 0})),
        "at least 1",
    );
    bad(
        post(
            "/v1/tokens",
            json!({"expires_at": null, "max_uses": 9223372036854775808u64}),
        ),
        "at most 9223372036854775807",
    );
    // Page size cap.
    let r = http
        .get(server.api("/v1/tokens?limit=5000"))
        .bearer_auth(&server.admin)
        .send()
        .unwrap();
    bad(r, "page size cap of 1000");
    let r = http
        .get(server.api("/v1/tokens?colour=red"))
        .bearer_auth(&server.admin)
        .send()
        .unwrap();
    bad(r, "unknown query parameter `colour`");
    // Not JSON.
    let r = http
        .post(server.api("/v1/tokens"))
        .bearer_auth(&server.admin)
        .header("content-type", "text/plain")
        .body("{\"expires_at\":null}")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = http
        .post(server.api("/v1/tokens"))
        .bearer_auth(&server.admin)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .unwrap();
    bad(r, "not valid");
    // A JSON array is not an object, even where every field is optional.
    let (target, _) = server.client().create_json(&["--ttl", "1h"]);
    let r = post(&format!("/v1/tokens/{target}/revoke"), json!([]));
    bad(r, "must be an object");
    assert_eq!(server.local().inspect_json(&target)["state"], "active");
    // Reason length.
    let (id, _) = server.client().create_json(&["--ttl", "1h"]);
    bad(
        post(
            &format!("/v1/tokens/{id}/revoke"),
            json!({"reason": "r".repeat(513)}),
        ),
        "512",
    );
    // Unknown paths and methods answer in the same shape.
    let r = http.get(server.api("/nope")).send().unwrap();
    assert_eq!(error_code(r).1, "not_found");
    let r = http.delete(server.api("/v1/tokens")).send().unwrap();
    assert_eq!(error_code(r).1, "method_not_allowed");
    // Nothing above made a token.
    assert_eq!(server.local().list_json(&["--state", "all"]).len(), 3);
}

each_store!(health_and_whoami);
fn health_and_whoami() {
    let server = Server::start();
    let http = server.http();
    let v = body(http.get(server.api("/v1/health")).send().unwrap());
    assert_eq!(v["status"], "ok");
    let who = body(
        http.get(server.api("/v1/auth/self"))
            .bearer_auth(&server.admin)
            .send()
            .unwrap(),
    );
    assert_eq!(who["name"], "admin");
    assert_eq!(who["scopes"], json!(["tok:admin"]));
    assert_eq!(who["expires_at"], Value::Null);
    assert!(!who.to_string().contains(&server.admin));
}

/// A TCP server that answers every request with `reply` (or never, if None).
fn fake_server(reply: Option<&'static str>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            match reply {
                Some(r) => {
                    let _ = stream.write_all(r.as_bytes());
                }
                None => held.push(stream),
            }
        }
    });
    url
}

#[test]
fn transport_and_protocol_errors_are_mapped() {
    let mut server = Server::start();
    let env = server.client();
    env.create(&["--ttl", "1m"]);
    server.stop();
    let o = env.run(&["list"]);
    assert_fails(
        &o,
        exit::FAILURE,
        &["connection refused", "is the server running"],
    );

    let mut e = Env::new();
    e.set("TOK_ADMIN_TOKEN", &server.admin);
    let with_url = |url: &str, args: &[&str]| {
        let mut e = Env::new();
        e.set("TOK_URL", url);
        e.set("TOK_ADMIN_TOKEN", &server.admin);
        e.run(args)
    };
    let html = fake_server(Some(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\nconnection: close\r\n\r\n<html></html>",
    ));
    assert_fails(
        &with_url(&html, &["list"]),
        exit::FAILURE,
        &["not the expected JSON", "<html>"],
    );
    let broken = fake_server(Some(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops",
    ));
    assert_fails(
        &with_url(&broken, &["create", "--ttl", "1m"]),
        exit::FAILURE,
        &["HTTP 500", "try again later"],
    );
    let nginx404 = fake_server(Some(
        "HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot here.",
    ));
    assert_fails(
        &with_url(&nginx404, &["inspect", "tk_abc"]),
        exit::FAILURE,
        &["is", "a tok server?"],
    );
    let silent = fake_server(None);
    assert_fails(
        &with_url(&silent, &["--timeout", "1s", "list"]),
        exit::FAILURE,
        &["no answer within 1s", "--timeout"],
    );
    assert_fails(
        &with_url("http://tok.invalid:8270", &["--timeout", "5s", "list"]),
        exit::FAILURE,
        &["could not reach", "hint:"],
    );
    assert_fails(
        &with_url("127.0.0.1:8270", &["list"]),
        exit::USAGE,
        &["not a URL"],
    );
    // A redirect is not followed with the credential.
    let redirect = fake_server(Some(
        "HTTP/1.1 302 Found\r\nlocation: http://elsewhere.example/v1/tokens\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ));
    assert_fails(
        &with_url(&redirect, &["list"]),
        exit::FAILURE,
        &["redirect", "elsewhere.example"],
    );
    drop(e);
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

each_store!(https_with_a_ca_file_and_a_clear_tls_failure_without);
fn https_with_a_ca_file_and_a_clear_tls_failure_without() {
    let server = Server::start_with(&[
        "--tls-cert",
        &fixture("cert.pem"),
        "--tls-key",
        &fixture("key.pem"),
    ]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let mut env = server.client();
    let o = env.run(&["list"]);
    assert_fails(&o, exit::FAILURE, &["TLS", "--ca-cert"]);
    env.set("TOK_CA_CERT", &fixture("ca.pem"));
    let secret = env.create(&["--ttl", "15m", "--name", "over-tls"]);
    assert!(secret.starts_with("tok_"));
    assert_eq!(server.local().list_json(&["--name", "over-tls"]).len(), 1);

    let insecure = server.client();
    let o = insecure.run(&["--insecure", "list"]);
    assert_success(&o, &["--insecure list"]);
    assert!(stderr(&o).contains("warning: TLS certificate verification is OFF"));

    let o = Env::new().run(&["serve", "--tls-cert", &fixture("cert.pem")]);
    assert_fails(&o, exit::USAGE, &["--tls-key"]);
    let o = Env::new().run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &fixture("key.pem"),
        "--tls-key",
        &fixture("key.pem"),
    ]);
    assert_fails(&o, exit::FAILURE, &["no PEM certificate"]);
}

#[test]
fn serve_init_prints_one_admin_token_and_refuses_a_second() {
    let env = Env::new();
    let dir = env.home().join("srv");
    let o = env.run(&[
        "serve",
        "init",
        "--data-dir",
        dir.to_str().unwrap(),
        "--ttl",
        "30d",
    ]);
    assert_success(&o, &["serve init"]);
    let out = stdout(&o);
    assert!(out.starts_with("tok_") && out.ends_with('\n') && out.lines().count() == 1);
    assert!(stderr(&o).contains("scopes tok:admin"), "{}", stderr(&o));
    let mut local = Env::new();
    local.set("TOK_DATA_DIR", dir.to_str().unwrap());
    let t = local.list_json(&[]);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["scopes"], json!(["tok:admin"]));
    assert!(t[0]["expires_at"].is_string(), "--ttl gives an expiry");

    let o = env.run(&["serve", "init", "--data-dir", dir.to_str().unwrap()]);
    assert_fails(
        &o,
        exit::USAGE,
        &["already has an active admin token", "hint:"],
    );
    assert_eq!(stdout(&o), "");
    assert_eq!(local.list_json(&[]).len(), 1);
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let env = Env::new();
    let o = env.run(&["serve", "--listen", &addr, "--data-dir", "store"]);
    assert_fails(&o, exit::FAILURE, &["could not listen on", "--listen"]);
    let o = env.run(&["serve", "--listen", "localhost"]);
    assert_fails(&o, exit::USAGE, &["--listen"]);
}

#[test]
fn dev_mode_prints_the_two_export_lines_and_works_from_another_shell() {
    let env = Env::new();
    let mut child = env
        .std_cmd()
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut guard = Kill(child);
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("export TOK_URL=")
        .expect(&first)
        .to_string();
    let token = second
        .strip_prefix("export TOK_ADMIN_TOKEN=")
        .expect(&second)
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"));

    // "Another terminal": a fresh environment with just those two variables.
    let mut other = Env::new();
    other.set("TOK_URL", &url);
    other.set("TOK_ADMIN_TOKEN", &token);
    let secret = other.create(&["--ttl", "15m"]);
    assert!(secret.starts_with("tok_"));
    assert_eq!(
        other.list_json(&[]).len(),
        2,
        "the dev admin and the new token"
    );

    let pid = nix::unistd::Pid::from_raw(guard.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let err = err_reader.join().unwrap();
    assert!(err.contains("deleted when it stops"), "{err}");
    assert!(!err.contains(&token), "the admin token is on stdout only");
    let store = err
        .split_whitespace()
        .find(|w| w.starts_with("data_dir="))
        .map(|w| w.trim_start_matches("data_dir=").to_string())
        .expect("the log names the data dir");
    assert!(
        !std::path::Path::new(&store).exists(),
        "the temporary store is gone: {store}"
    );
}

each_store!(the_audit_trail_through_the_server_names_the_admin_token);
fn the_audit_trail_through_the_server_names_the_admin_token() {
    let server = Server::start();
    let env = server.client();
    let admin = format!("{} (admin)", admin_id(&server));
    let (id, _) = env.create_json(&["--ttl", "1h", "--name", "a"]);
    env.ok(&["revoke", &id, "--yes", "--reason", "leaked"]);
    let (id2, _) = env.create_json(&["--ttl", "1h"]);
    env.ok(&["rotate", &id2, "--grace", "1m"]);

    let entries: Vec<Value> = serde_json::from_str(&env.ok(&["audit", "-o", "json"])).unwrap();
    let events: Vec<&str> = entries
        .iter()
        .filter(|e| e["token_id"] == id.as_str() || e["token_id"] == id2.as_str())
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["create", "revoke", "create", "rotate"]);
    assert!(entries
        .iter()
        .filter(|e| e["token_id"] == id.as_str())
        .all(|e| e["actor"] == admin.as_str()));
    // The same trail as the store holds, read directly.
    let local: Vec<Value> =
        serde_json::from_str(&server.local().ok(&["audit", "-o", "json"])).unwrap();
    assert_eq!(entries, local);

    let only: Vec<Value> =
        serde_json::from_str(&env.ok(&["audit", "--token", &id, "-o", "json"])).unwrap();
    assert_eq!(only.len(), 2);
    let last: Vec<Value> =
        serde_json::from_str(&env.ok(&["audit", "--limit", "1", "-o", "json"])).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["seq"], entries.last().unwrap()["seq"]);
    let many: Vec<Value> =
        serde_json::from_str(&env.ok(&["audit", "--limit", "5000", "-o", "json"])).unwrap();
    assert_eq!(many, entries);

    // Forward pages through the API.
    let http = server.http();
    let page = |q: &str| {
        body(
            http.get(server.api(&format!("/v1/audit?{q}")))
                .bearer_auth(&server.admin)
                .send()
                .unwrap(),
        )
    };
    let first = page("limit=2");
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let next = first["next_after_seq"].as_i64().unwrap();
    let rest = page(&format!("after_seq={next}"));
    assert_eq!(
        first["entries"].as_array().unwrap().len() + rest["entries"].as_array().unwrap().len(),
        entries.len()
    );
    assert_eq!(rest["next_after_seq"], Value::Null);

    // Reading the trail takes tok:admin.
    let (_, reader) = env.create_json(&["--ttl", "1h", "--scope", "tok:read"]);
    assert_fails(
        &server.client_with(&reader).run(&["audit"]),
        exit::AUTH,
        &["tok:admin"],
    );
}
