//! `tok serve` as a gateway: a real upstream behind a real `tok serve` proxy,
//! each RFC 6750 decision, scopes per route, exact use limits, revocation,
//! expiry, streaming, the RFC 7662/7009 endpoints, the audit trail, and
//! durability under SIGKILL.

use crate::common::*;
use crate::each_store;
use crate::server::Server;
use crate::upstream::Upstream;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;
use std::io::Write;

/// A real upstream behind a real `tok serve --proxy-listen`.
pub struct Gate {
    pub server: Server,
    pub upstream: Upstream,
    pub proxy: String,
    pub http: Client,
}

impl Gate {
    pub fn start(routes: Option<&str>) -> Gate {
        Self::start_with(routes, &[])
    }

    pub fn start_with(routes: Option<&str>, extra: &[&str]) -> Gate {
        let upstream = Upstream::start();
        let routes_file = routes.map(|r| {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(r.as_bytes()).unwrap();
            f.into_temp_path()
        });
        let url = upstream.url();
        let mut args = vec!["--proxy-listen", "127.0.0.1:0", "--upstream", &url];
        if let Some(p) = &routes_file {
            args.push("--routes");
            args.push(p.to_str().unwrap());
        }
        args.extend_from_slice(extra);
        let server = Server::start_with(&args);
        // The routes file is read at start; it may go now.
        drop(routes_file);
        let proxy = server.proxy_url();
        Gate {
            server,
            upstream,
            proxy,
            http: Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// A token from the admin API; returns (id, secret).
    pub fn token(&self, args: &[&str]) -> (String, String) {
        self.server.client().create_json(args)
    }

    pub fn get(&self, path: &str, secret: Option<&str>) -> reqwest::blocking::Response {
        let mut r = self.http.get(format!("{}{path}", self.proxy));
        if let Some(s) = secret {
            r = r.bearer_auth(s);
        }
        r.send().unwrap()
    }

    /// The audit trail once `ready` holds for it: the writer batches, so the
    /// test waits for what it expects (up to a guard against hanging).
    pub fn audit_until(&self, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let env = self.server.local();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let entries: Vec<Value> =
                serde_json::from_str(&env.ok(&["audit", "-o", "json"])).unwrap();
            if ready(&entries) || std::time::Instant::now() > deadline {
                return entries;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// A GET sent byte for byte as written (HTTP clients resolve `..` and `%2e`
/// before sending, which would hide what the proxy must handle). Returns the
/// status and body.
pub(crate) fn raw_get(base: &str, path: &str, secret: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\nConnection: close\r\n\r\n"
    );
    crate::hostile::raw(base, request.as_bytes())
}

pub(crate) fn challenge(r: &reqwest::blocking::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

each_store!(each_decision_has_its_status_and_challenge);
fn each_decision_has_its_status_and_challenge() {
    let gate = Gate::start(Some(
        "[[route]]\npath = \"/orders/**\"\nscopes = [\"orders:read\"]\n",
    ));
    // No token.
    let r = gate.get("/orders/1", None);
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&r), "Bearer realm=\"tok\"");
    // Malformed (a broken checksum) and unknown tokens.
    let r = gate.get("/orders/1", Some("tok_not-a-token"));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains("error=\"invalid_token\""));
    let other = Env::new().create(&["--ttl", "1h"]);
    let r = gate.get("/orders/1", Some(&other));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains("error=\"invalid_token\""));
    // Missing scope.
    let (_, weak) = gate.token(&["--ttl", "1h", "--scope", "orders:write"]);
    let r = gate.get("/orders/1", Some(&weak));
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        challenge(&r).contains("error=\"insufficient_scope\""),
        "{}",
        challenge(&r)
    );
    assert!(challenge(&r).contains("scope=\"orders:read\""));
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "insufficient_scope");
    // Exhausted.
    let (_, once) = gate.token(&["--ttl", "1h", "--single-use", "--scope", "orders:read"]);
    assert_eq!(gate.get("/orders/1", Some(&once)).status(), StatusCode::OK);
    let r = gate.get("/orders/1", Some(&once));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains("used up"), "{}", challenge(&r));
    // None of the refused requests reached the upstream.
    assert_eq!(gate.upstream.hits(), 1);
}

each_store!(an_allowed_request_reaches_the_upstream_with_identity_not_the_secret);
fn an_allowed_request_reaches_the_upstream_with_identity_not_the_secret() {
    let gate = Gate::start(None);
    let (id, secret) = gate.token(&["--ttl", "1h", "--scope", "a", "--scope", "b"]);
    let r = gate
        .http
        .post(format!("{}/things?x=1", gate.proxy))
        .bearer_auth(&secret)
        .header("x-tok-token-id", "tk_forged")
        .header("x-custom", "kept")
        .body("hello")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let echo: Value = r.json().unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/things?x=1");
    assert_eq!(echo["body_len"], 5);
    let h = &echo["headers"];
    assert_eq!(
        h["x-tok-token-id"],
        id.as_str(),
        "the forged header was replaced"
    );
    assert_eq!(h["x-tok-scopes"], "a b");
    assert_eq!(h["x-custom"], "kept");
    assert!(
        h.get("authorization").is_none(),
        "the secret must not reach the upstream"
    );
    assert!(h["x-forwarded-for"].as_str().unwrap().contains("127.0.0.1"));
}

each_store!(scopes_and_upstreams_per_route);
fn scopes_and_upstreams_per_route() {
    let second = Upstream::start();
    let routes = format!(
        "[[route]]\nmethods = [\"GET\"]\npath = \"/orders/*\"\nscopes = [\"orders:read\"]\n\n\
         [[route]]\nmethods = [\"POST\", \"DELETE\"]\npath = \"/orders/*\"\nscopes = [\"orders:write\"]\n\n\
         [[route]]\npath = \"/reports/**\"\nscopes = [\"reports\"]\nupstream = \"{}\"\n",
        second.url()
    );
    let gate = Gate::start(Some(&routes));
    let (_, reader) = gate.token(&[
        "--ttl",
        "1h",
        "--scope",
        "orders:read",
        "--scope",
        "reports",
    ]);
    let (_, writer) = gate.token(&["--ttl", "1h", "--scope", "orders:write"]);
    let post = |s: &str| {
        gate.http
            .post(format!("{}/orders/7", gate.proxy))
            .bearer_auth(s)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(
        gate.get("/orders/7", Some(&reader)).status(),
        StatusCode::OK
    );
    assert_eq!(post(&reader), StatusCode::FORBIDDEN);
    assert_eq!(
        gate.get("/orders/7", Some(&writer)).status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(post(&writer), StatusCode::OK);
    // `*` is one segment: a deeper path matches no route, and needs no scope.
    assert_eq!(
        gate.get("/orders/7/items", Some(&writer)).status(),
        StatusCode::OK
    );
    assert_eq!(gate.upstream.hits(), 3);
    // The reports route goes to its own upstream.
    assert_eq!(
        gate.get("/reports/q1/x", Some(&reader)).status(),
        StatusCode::OK
    );
    assert_eq!(second.hits(), 1);
    assert_eq!(gate.upstream.hits(), 3);
}

each_store!(a_single_use_token_admits_exactly_one_of_fifty_concurrent_requests);
fn a_single_use_token_admits_exactly_one_of_fifty_concurrent_requests() {
    let gate = Gate::start(None);
    let (id, once) = gate.token(&["--ttl", "1h", "--single-use"]);
    let statuses: Vec<StatusCode> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| s.spawn(|| gate.get("/x", Some(&once)).status()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|s| s.is_success()).count();
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| s.is_success() || *s == StatusCode::UNAUTHORIZED));
    assert_eq!(gate.upstream.hits(), 1);
    let t = gate.server.local().inspect_json(&id);
    assert_eq!(t["uses"], 1);
    assert_eq!(t["state"], "exhausted");
}

each_store!(a_revoke_refuses_the_very_next_request_whoever_revoked);
fn a_revoke_refuses_the_very_next_request_whoever_revoked() {
    let gate = Gate::start(None);
    // Through the admin API.
    let (id, secret) = gate.token(&["--ttl", "1h"]);
    assert_eq!(gate.get("/x", Some(&secret)).status(), StatusCode::OK);
    gate.server.client().ok(&["revoke", &id, "--yes"]);
    let r = gate.get("/x", Some(&secret));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains("revoked"));
    // Through the local driver, another process on the same store (on
    // PostgreSQL, where another node's revoke holds within the propagation
    // bound, through this node again).
    let (id, secret) = gate.token(&["--ttl", "1h"]);
    assert_eq!(gate.get("/x", Some(&secret)).status(), StatusCode::OK);
    gate.server.at_once().ok(&["revoke", &id, "--yes"]);
    assert_eq!(
        gate.get("/x", Some(&secret)).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gate.upstream.hits(), 2);
}

each_store!(a_short_lived_token_works_then_is_refused);
fn a_short_lived_token_works_then_is_refused() {
    let gate = Gate::start(None);
    // Long enough that a loaded machine still gets the first request in.
    let v: Value = serde_json::from_str(
        &gate
            .server
            .client()
            .ok(&["create", "--ttl", "5s", "-o", "json"]),
    )
    .unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    let expires = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(gate.get("/x", Some(&secret)).status(), StatusCode::OK);
    // Wait past the expiry the server set (a wait, not a measurement).
    while chrono::Utc::now() <= expires + chrono::TimeDelta::milliseconds(100) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = gate.get("/x", Some(&secret));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains("expired"));
}

each_store!(dot_segments_and_encodings_cannot_dodge_a_route);
fn dot_segments_and_encodings_cannot_dodge_a_route() {
    let gate = Gate::start(Some(
        "[[route]]\npath = \"/admin/**\"\nscopes = [\"admin\"]\n",
    ));
    let (_, plain) = gate.token(&["--ttl", "1h"]);
    for path in [
        "/admin/x",
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/%61dmin/x",
        "//admin/x",
        "/./admin/x",
    ] {
        let (status, _) = raw_get(&gate.proxy, path, &plain);
        assert_eq!(status, 403, "{path} got past the admin route");
    }
    for path in ["/a%2Fb", "/x/%5C..", "/%2e%2e/%2e%2e/etc", "/.."] {
        let (status, body) = raw_get(&gate.proxy, path, &plain);
        assert_eq!(status, 400, "{path}: {body}");
    }
    assert_eq!(gate.upstream.hits(), 0);
    // What is let through goes to the upstream in the form it was checked in.
    let (_, admin) = gate.token(&["--ttl", "1h", "--scope", "admin"]);
    let (status, body) = raw_get(&gate.proxy, "/public/../admin/%78?q=1", &admin);
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
        // A chunked body: the JSON sits between the chunk-size lines.
        let json = body.lines().find(|l| l.starts_with('{')).unwrap();
        serde_json::from_str(json).unwrap()
    });
    assert_eq!(echo["uri"], "/admin/x?q=1");
}

each_store!(a_refused_request_spends_no_use);
fn a_refused_request_spends_no_use() {
    let gate = Gate::start(Some(
        "[[route]]\npath = \"/private/**\"\nscopes = [\"p\"]\n",
    ));
    let (id, secret) = gate.token(&["--ttl", "1h", "--uses", "2"]);
    for _ in 0..3 {
        assert_eq!(
            gate.get("/private/x", Some(&secret)).status(),
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(gate.server.local().inspect_json(&id)["uses"], 0);
    assert_eq!(gate.get("/open", Some(&secret)).status(), StatusCode::OK);
    assert_eq!(gate.get("/open", Some(&secret)).status(), StatusCode::OK);
    assert_eq!(
        gate.get("/open", Some(&secret)).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gate.server.local().inspect_json(&id)["uses"], 2);
}

/// The peak resident memory of a process, in KiB (Linux).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

each_store!(fifty_mebibytes_stream_both_ways_in_bounded_memory);
fn fifty_mebibytes_stream_both_ways_in_bounded_memory() {
    const SIZE: usize = 50 * 1024 * 1024;
    let gate = Gate::start(None);
    let (_, secret) = gate.token(&["--ttl", "1h"]);
    // Warm up, then take the baseline.
    assert_eq!(gate.get("/x", Some(&secret)).status(), StatusCode::OK);
    let before = peak_rss_kib(gate.server.pid());

    let mut r = gate.get(&format!("/download?bytes={SIZE}"), Some(&secret));
    assert_eq!(r.status(), StatusCode::OK);
    let mut sink = std::io::sink();
    let n = std::io::copy(&mut r, &mut sink).unwrap();
    assert_eq!(n as usize, SIZE);

    // An upload streamed from a reader that never holds the whole body.
    struct Gen(usize);
    impl std::io::Read for Gen {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.min(buf.len());
            buf[..n].fill(b'y');
            self.0 -= n;
            Ok(n)
        }
    }
    let r = gate
        .http
        .post(format!("{}/upload", gate.proxy))
        .bearer_auth(&secret)
        .body(reqwest::blocking::Body::sized(Gen(SIZE), SIZE as u64))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().unwrap();
    assert_eq!(v["bytes"], SIZE);

    let growth_mib = (peak_rss_kib(gate.server.pid()).saturating_sub(before)) / 1024;
    assert!(
        growth_mib < 25,
        "the server's peak memory grew by {growth_mib} MiB moving 2 x 50 MiB: bodies are buffered"
    );
}

each_store!(upstream_down_is_502_and_slow_is_504);
fn upstream_down_is_502_and_slow_is_504() {
    let gate = Gate::start_with(None, &["--upstream-timeout", "1s"]);
    let (_, secret) = gate.token(&["--ttl", "1h"]);
    let r = gate.get("/slow", Some(&secret));
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "upstream_timeout");

    let Gate {
        server,
        upstream,
        proxy,
        http,
    } = gate;
    drop(upstream);
    let r = http
        .get(format!("{proxy}/x"))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let v: Value = r.json().unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("could not be reached"));
    drop(server);
}

each_store!(introspection_and_revocation_follow_rfc_7662_and_7009);
fn introspection_and_revocation_follow_rfc_7662_and_7009() {
    let gate = Gate::start(None);
    let client = gate.server.client();
    let (client_id, client_secret) =
        client.create_json(&["--no-expiry", "--scope", "tok:introspect", "--name", "kong"]);
    let (id, secret) =
        client.create_json(&["--ttl", "1h", "--scope", "orders:read", "--name", "svc"]);
    let introspect = gate.server.api("/oauth/introspect");
    let revoke = gate.server.api("/oauth/revoke");
    let http = &gate.http;

    // client_secret_basic.
    let v: Value = http
        .post(&introspect)
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[
            ("token", secret.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "orders:read");
    assert_eq!(v["sub"], id.as_str());
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["username"], "svc");
    assert!(v["exp"].as_i64().unwrap() > v["iat"].as_i64().unwrap());

    // Unknown and malformed tokens are simply inactive.
    for t in ["tok_garbage", "no-prefix-at-all"] {
        let v: Value = http
            .post(&introspect)
            .bearer_auth(&client_secret)
            .form(&[("token", t)])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(v, serde_json::json!({"active": false}));
    }

    // Client authentication is required, and must match.
    let r = http
        .post(&introspect)
        .form(&[("token", secret.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .post(&introspect)
        .basic_auth("tk_someoneelse", Some(&client_secret))
        .form(&[("token", secret.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .post(&introspect)
        .bearer_auth(&secret) // a token without tok:introspect
        .form(&[("token", secret.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(&introspect)
        .bearer_auth(&client_secret)
        .form(&[("x", "y")])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().unwrap()["error"], "invalid_request");

    // Revocation: 200 for a token, for an unknown token, and again.
    for t in [secret.as_str(), "tok_unknown", secret.as_str()] {
        let r = http
            .post(&revoke)
            .basic_auth(&client_id, Some(&client_secret))
            .form(&[("token", t)])
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let t = gate.server.local().inspect_json(&id);
    assert_eq!(t["state"], "revoked");
    assert!(t["revoked_by"].as_str().unwrap().contains(&client_id));
    let v: Value = http
        .post(&introspect)
        .bearer_auth(&client_secret)
        .form(&[("token", secret.as_str())])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["active"], false);
    assert_eq!(
        gate.get("/x", Some(&secret)).status(),
        StatusCode::UNAUTHORIZED
    );
}

each_store!(the_audit_trail_records_every_request_and_admin_action);
fn the_audit_trail_records_every_request_and_admin_action() {
    let gate = Gate::start(Some(
        "[[route]]\npath = \"/private/**\"\nscopes = [\"p\"]\n",
    ));
    let (id, secret) = gate.token(&["--ttl", "1h", "--name", "audited"]);
    assert_eq!(gate.get("/public", Some(&secret)).status(), StatusCode::OK);
    assert_eq!(
        gate.get("/private/x", Some(&secret)).status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(gate.get("/public", None).status(), StatusCode::UNAUTHORIZED);
    gate.server
        .client()
        .ok(&["revoke", &id, "--yes", "--reason", "done"]);

    let entries = gate.audit_until(|es| {
        es.iter().filter(|e| e["event"] == "request").count() >= 3
            && es.iter().any(|e| e["event"] == "revoke")
    });
    let requests: Vec<&Value> = entries.iter().filter(|e| e["event"] == "request").collect();
    assert_eq!(requests.len(), 3, "{entries:#?}");
    let allowed = requests.iter().find(|e| e["decision"] == "allow").unwrap();
    assert_eq!(allowed["token_id"], id.as_str());
    assert_eq!(allowed["method"], "GET");
    assert_eq!(allowed["path"], "/public");
    assert_eq!(allowed["client"], "127.0.0.1");
    assert_eq!(allowed["upstream_status"], 200);
    assert!(allowed["latency_ms"].is_u64());
    let scope_denied = requests.iter().find(|e| e["path"] == "/private/x").unwrap();
    assert_eq!(scope_denied["decision"], "deny");
    assert!(scope_denied["reason"].as_str().unwrap().contains("scope p"));
    let revoke = entries.iter().find(|e| e["event"] == "revoke").unwrap();
    assert!(revoke["actor"].as_str().unwrap().contains("(admin)"));
    assert_eq!(revoke["reason"], "done");
    let create = entries
        .iter()
        .find(|e| e["event"] == "create" && e["token_id"] == id.as_str())
        .unwrap();
    assert!(create["actor"].as_str().unwrap().starts_with("tk_"));

    // last_used_at and the use count are kept current (batched, so wait for them).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut t = gate.server.local().inspect_json(&id);
    while t["uses"] != 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        t = gate.server.local().inspect_json(&id);
    }
    assert_eq!(t["uses"], 1);
    assert!(t["last_used_at"].is_string());

    // --follow through the admin API sees a new entry.
    let mut follow = gate
        .server
        .client()
        .std_cmd()
        .args(["audit", "--follow", "-o", "jsonl", "--limit", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let out = follow.stdout.take().unwrap();
    let _guard = Kill(follow);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
    let _last = lines.next().unwrap().unwrap();
    let (_, s2) = gate.token(&["--ttl", "1h", "--name", "later"]);
    assert_eq!(gate.get("/public", Some(&s2)).status(), StatusCode::OK);
    let mut saw_request = false;
    for _ in 0..4 {
        let e: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if e["event"] == "request" {
            saw_request = true;
            break;
        }
    }
    assert!(saw_request, "--follow printed the new request");
}

each_store!(sigkill_loses_no_acknowledged_create_or_revoke);
fn sigkill_loses_no_acknowledged_create_or_revoke() {
    let mut gate = Gate::start(None);
    let client = gate.server.client();
    let (victim, _) = client.create_json(&["--ttl", "1h"]);
    client.ok(&["revoke", &victim, "--yes"]);
    let acknowledged = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        let creator = s.spawn(|| loop {
            let o = client.run(&["create", "--ttl", "1h", "-o", "json"]);
            if !o.status.success() {
                break; // the server is gone
            }
            let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
            acknowledged
                .lock()
                .unwrap()
                .push(v["id"].as_str().unwrap().to_string());
        });
        // Kill it in the middle of the traffic.
        while acknowledged.lock().unwrap().len() < 20 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        gate.server.stop_with(nix::sys::signal::Signal::SIGKILL);
        creator.join().unwrap();
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    assert!(acknowledged.len() >= 20);
    gate.server.restart();
    let client = gate.server.client();
    let all: Vec<String> = client
        .list_json(&["--state", "all"])
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    for id in &acknowledged {
        assert!(all.contains(id), "{id} was acknowledged but is gone");
    }
    assert_eq!(client.inspect_json(&victim)["state"], "revoked");
    // The store is intact.
    let o = gate
        .server
        .local()
        .run(&["list", "--state", "all", "-o", "json"]);
    assert_success(&o, &["list after SIGKILL"]);
}

#[test]
fn bad_proxy_settings_are_refused_before_anything_starts() {
    let env = Env::new();
    let o = env.run(&["serve", "--data-dir", "s", "--proxy-listen", "127.0.0.1:0"]);
    assert_fails(&o, exit::USAGE, &["--upstream"]);
    let o = env.run(&[
        "serve",
        "--data-dir",
        "s",
        "--proxy-listen",
        "127.0.0.1:0",
        "--upstream",
        "nope",
    ]);
    assert_fails(&o, exit::USAGE, &["--upstream", "not a URL"]);
    std::fs::write(
        env.home().join("r.toml"),
        "[[route]]\npath = \"no-slash\"\n",
    )
    .unwrap();
    let o = env.run(&[
        "serve",
        "--data-dir",
        "s",
        "--proxy-listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9",
        "--routes",
        "r.toml",
    ]);
    assert_fails(
        &o,
        exit::USAGE,
        &["bad --routes file", "start with `/`", "routes.example.toml"],
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = env.run(&[
        "serve",
        "--data-dir",
        "s",
        "--listen",
        "127.0.0.1:0",
        "--proxy-listen",
        &addr,
        "--upstream",
        "http://127.0.0.1:9",
    ]);
    assert_fails(
        &o,
        exit::FAILURE,
        &["could not listen on", "--proxy-listen"],
    );
}

each_store!(a_client_that_trickles_its_headers_is_cut_off);
fn a_client_that_trickles_its_headers_is_cut_off() {
    use std::io::Read;
    let gate = Gate::start_with(None, &["--header-timeout", "1s"]);
    for base in [gate.server.url.clone(), gate.proxy.clone()] {
        let host = base.trim_start_matches("http://").to_string();
        let mut conn = std::net::TcpStream::connect(&host).unwrap();
        // A guard against hanging, not a measurement: the server must act first.
        conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        write!(conn, "GET /v1/health HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").unwrap();
        let mut buf = [0u8; 512];
        let n = conn
            .read(&mut buf)
            .expect("the server closes the connection");
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(
            n == 0 || answer.starts_with("HTTP/1.1 408"),
            "{base}: {answer}"
        );
    }
    // Whole requests still work.
    let (_, secret) = gate.token(&["--ttl", "1h"]);
    assert_eq!(gate.get("/x", Some(&secret)).status(), StatusCode::OK);
}

each_store!(with_a_certificate_the_proxy_speaks_tls_too);
fn with_a_certificate_the_proxy_speaks_tls_too() {
    let fixture = |name: &str| format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
    let (cert, key) = (fixture("cert.pem"), fixture("key.pem"));
    let gate = Gate::start_with(None, &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(
        gate.proxy.starts_with("https://127.0.0.1:"),
        "{}",
        gate.proxy
    );
    let mut env = gate.server.client();
    env.set("TOK_CA_CERT", &fixture("ca.pem"));
    let secret = env.create(&["--ttl", "1h"]);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.pem")).unwrap()).unwrap();
    let https = Client::builder()
        .no_proxy()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let r = https
        .get(format!("{}/x", gate.proxy))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(gate.upstream.hits(), 1);
    // Plain HTTP to the TLS port is not served.
    let plain = gate.proxy.replace("https://", "http://");
    let r = gate
        .http
        .get(format!("{plain}/x"))
        .bearer_auth(&secret)
        .send();
    assert!(r.map_or(true, |r| !r.status().is_success()));
    assert_eq!(gate.upstream.hits(), 1);
}
