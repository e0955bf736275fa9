//! Edge cases of issue 13 outside the proxy: huge and non-UTF-8 input, forged
//! cursors, limits the CLI and the admin API share, damaged and read-only
//! stores, OAuth error bodies and racing rotations. Each test covers a class.

use crate::common::*;
use crate::server::Server;
use serde_json::{json, Value};

/// stderr holds no run of `c` as long as `n`: the argument was not echoed.
fn assert_not_echoed(o: &std::process::Output, c: char, n: usize) {
    let err = stderr(o);
    assert!(
        !err.contains(&c.to_string().repeat(n)),
        "echoed in full: {} bytes of stderr",
        err.len()
    );
    assert!(err.len() < 2_000, "stderr is {} bytes", err.len());
}

#[test]
fn huge_arguments_and_zero_limits_are_usage_errors_without_an_echo() {
    let env = Env::new();
    env.create(&["--ttl", "1h", "--name", "a"]);
    let huge = "x".repeat(120_000);
    let long = "y".repeat(3_000);
    for args in [
        vec!["list", "--name", &huge],
        vec!["list", "--name", &long],
        vec!["revoke", "--name", &long, "--yes"],
        vec!["create", "--ttl", "1h", "--description", &huge],
        vec!["create", "--ttl", "1h", "--name", &long],
        vec!["create", "--ttl", &long],
        vec!["inspect", &huge],
        vec!["list", "--label", &huge],
    ] {
        let o = env.run(&args);
        assert_eq!(code(&o), exit::USAGE, "{:?}: {}", &args[..2], stderr(&o));
        assert_not_echoed(&o, args.last().unwrap().chars().next().unwrap(), 200);
    }
    for args in [vec!["list", "--limit", "0"], vec!["audit", "--limit", "0"]] {
        assert_fails(&env.run(&args), exit::USAGE, &["--limit"]);
    }
    // A name pattern as long as a name is fine.
    let fits = "z".repeat(128);
    assert_success(&env.run(&["list", "--name", &fits]), &["list"]);
}

#[test]
fn the_admin_api_refuses_what_its_docs_refuse() {
    let server = Server::start();
    let client = server.client();
    for i in 0..3 {
        client.create(&["--ttl", "1h", "--name", &format!("t{i}")]);
    }
    let http = server.http();
    let get = |q: &str| {
        let r = http
            .get(server.api(&format!("/v1/tokens?{q}")))
            .bearer_auth(&server.admin)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap())
    };
    // A real cursor works; forged ones do not.
    let (status, page) = get("limit=1");
    assert_eq!(status, 200);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(get(&format!("limit=1&cursor={cursor}")).0, 200);
    let (ms, id) = cursor.split_once('.').unwrap();
    for forged in [
        "0.tk_a".to_string(),
        format!("{}.{id}", ms.parse::<i64>().unwrap() + 1),
        format!("{ms}.tk_zzzzzzzzzzzz"),
        format!("-1.{id}"),
    ] {
        let (status, body) = get(&format!("cursor={forged}"));
        assert_eq!(status, 400, "{forged}: {body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cursor"));
    }
    // Bytes that are not UTF-8, in a value or a name, in either query.
    for q in [
        "name=%ff",
        "name=a%C3",
        "label=k%ff=v",
        "scope=%fe",
        "%ff=1",
        "state=%c0%af",
    ] {
        let (status, body) = get(q);
        assert_eq!(status, 400, "{q}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("UTF-8"),
            "{body}"
        );
    }
    let r = http
        .get(server.api("/v1/audit?token_id=%ff"))
        .bearer_auth(&server.admin)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // A huge unknown parameter is named, not echoed.
    let (status, body) = get(&format!("{}=1", "q".repeat(20_000)));
    assert_eq!(status, 400);
    assert!(
        body.to_string().len() < 1_000,
        "{} bytes",
        body.to_string().len()
    );
}

#[test]
fn lifetimes_and_scopes_are_checked_alike_in_the_cli_and_the_api() {
    let env = Env::new();
    for args in [
        vec!["create", "--expires-at", "2100-01-01T00:00:00Z"],
        vec!["create", "--ttl", "1h", "--scope", "a", "--scope", "a"],
        vec![
            "create", "--ttl", "1h", "--scope", "a", "--scope", "b", "--scope", "a",
        ],
    ] {
        assert_fails(&env.run(&args), exit::USAGE, &["cannot create"]);
    }
    assert!(env.list_json(&["--state", "all"]).is_empty());

    let server = Server::start();
    let http = server.http();
    for body in [
        json!({"expires_at": "2100-01-01T00:00:00Z"}),
        json!({"expires_at": "9999-12-31T23:59:59Z"}),
        json!({"expires_at": null, "scopes": ["a", "a"]}),
    ] {
        let r = http
            .post(server.api("/v1/tokens"))
            .bearer_auth(&server.admin)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{body}");
    }
    // Through the tok driver too.
    let o = server
        .client()
        .run(&["create", "--expires-at", "2100-01-01T00:00:00Z"]);
    assert_eq!(code(&o), exit::USAGE, "{}", stderr(&o));
    // The longest --ttl is still accepted.
    env.create(&["--ttl", "520w"]);
}

#[test]
fn an_empty_store_file_is_damaged_not_new() {
    let env = Env::new();
    std::fs::create_dir_all(env.data_dir()).unwrap();
    let db = env.data_dir().join("tok.db");
    std::fs::write(&db, b"").unwrap();
    for args in [vec!["list"], vec!["create", "--ttl", "1h"], vec!["audit"]] {
        assert_fails(
            &env.run(&args),
            exit::FAILURE,
            &["empty (0 bytes)", "backup"],
        );
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "left as it was");
    // The server refuses to start on it as well.
    let o = env.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert_fails(&o, exit::FAILURE, &["empty (0 bytes)"]);
}

#[test]
fn a_read_only_store_can_still_be_listed() {
    let env = Env::new();
    let (id, _) = env.create_json(&["--ttl", "1h", "--name", "ro"]);
    // A store this user may read but not write: another user's directory
    // (when the tests run as root, tok runs as nobody), or a read-only one.
    let shared = tempfile::tempdir().unwrap();
    let store = shared.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::copy(env.data_dir().join("tok.db"), store.join("tok.db")).unwrap();
    let cfg = shared.path().join("cfg");
    std::fs::create_dir(&cfg).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path, m| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(shared.path(), 0o755);
    mode(&store, 0o555);
    mode(&store.join("tok.db"), 0o444);
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        == b"0\n";
    let run = |args: &[&str]| {
        let mut c = if root {
            let mut c = std::process::Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_tok"),
            ]);
            c
        } else {
            std::process::Command::new(env!("CARGO_BIN_EXE_tok"))
        };
        c.env_clear()
            .env("HOME", shared.path())
            .env("XDG_CONFIG_HOME", &cfg)
            .env("XDG_CACHE_HOME", &cfg)
            .env("NO_COLOR", "1")
            .env("TOK_DATA_DIR", &store)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["list", "-o", "json"]);
    assert_success(&o, &["list"]);
    let listed: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_success(&run(&["inspect", &id]), &["inspect"]);
    // A write says why it cannot happen.
    let o = run(&["create", "--ttl", "1h"]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("read"), "{}", stderr(&o));
}

#[test]
fn text_that_is_not_utf8_is_a_usage_error() {
    let env = Env::new();
    let o = env
        .cmd()
        .args(["inspect", "-"])
        .write_stdin(vec![b't', b'o', b'k', b'_', 0xff, 0xfe])
        .output()
        .unwrap();
    assert_fails(&o, exit::USAGE, &["stdin is not UTF-8"]);
    let o = env
        .cmd()
        .args([
            "login",
            "--with-token",
            "--insecure-storage",
            "--url",
            "http://127.0.0.1:9",
        ])
        .write_stdin(vec![0xc0, 0xaf])
        .output()
        .unwrap();
    assert_fails(&o, exit::USAGE, &["not UTF-8"]);
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(
        env.config_dir().join("config.toml"),
        b"[profile.a]\nurl = \"\xff\"\n",
    )
    .unwrap();
    assert_fails(
        &env.run(&["list"]),
        exit::USAGE,
        &["config.toml is not UTF-8"],
    );
}

#[test]
fn oauth_errors_are_json() {
    let server = Server::start();
    // A fresh connection for each request: the server closes the one it
    // answered 413 on, and a pooled client could try to reuse it.
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = server.api("/oauth/introspect");
    for r in [
        http.post(&url)
            .bearer_auth(&server.admin)
            .header("content-type", "text/plain")
            .body("token=x"),
        http.post(&url)
            .bearer_auth(&server.admin)
            .json(&json!({"token": "x"})),
        http.post(&url)
            .bearer_auth(&server.admin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=%ff%ff&token=a"),
        http.post(&url)
            .bearer_auth(&server.admin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![b'x'; 2 << 20]),
        http.post(server.api("/oauth/revoke"))
            .bearer_auth(&server.admin)
            .header("content-type", "text/plain")
            .body("token=x"),
        http.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=x"),
    ] {
        let r = r.send().unwrap();
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "{status}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/json"), "{status}: {ct}");
        let body: Value = r.json().unwrap();
        assert!(body["error"].is_string(), "{body}");
    }
}

#[test]
fn racing_rotations_with_grace_leave_one_successor() {
    let env = Env::new();
    let (id, _) = env.create_json(&["--ttl", "1h", "--name", "racer"]);
    let server = Server::start();
    let client = server.client();
    let (sid, _) = client.create_json(&["--ttl", "1h", "--name", "racer"]);
    for (env, id) in [(&env, &id), (&client, &sid)] {
        let outcomes: Vec<std::process::Output> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        env.std_cmd()
                            .args(["rotate", id, "--grace", "1h"])
                            .output()
                            .unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = outcomes.iter().filter(|o| o.status.success()).count();
        assert_eq!(won, 1, "exactly one rotation wins");
        for o in outcomes.iter().filter(|o| !o.status.success()) {
            assert!(stderr(o).contains("already rotated"), "{}", stderr(o));
        }
        let racers = env.list_json(&["--state", "all", "--name", "racer"]).len();
        assert_eq!(racers, 2, "the token and one successor");
    }
}
