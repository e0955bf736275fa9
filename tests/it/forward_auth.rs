//! Forward auth (`tok serve --auth-listen`) behind a real nginx and a real Caddy
//! from Debian's packages, each started here on loopback with the config
//! printed in docs/forward-auth.md (only the ports changed), in front of a test
//! upstream. Traefik and Envoy are not packaged: their requests are replayed
//! against the endpoint with the headers their docs say they send.

use crate::admission::{audit_entries, concurrently};
use crate::server::Server;
use crate::servers::free_port;
use crate::upstream::Upstream;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;
use std::io::Write;
use std::process::{Child, Command, Stdio};

const ROUTES: &str = "[[route]]\npath = \"/admin/**\"\nscopes = [\"admin\"]\n";

/// The fenced blocks of `lang` in docs/forward-auth.md, in order.
fn doc_blocks(lang: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/forward-auth.md"),
    )
    .unwrap();
    let open = format!("```{lang}\n");
    let mut blocks = Vec::new();
    let mut rest = doc.as_str();
    while let Some(at) = rest.find(&open) {
        rest = &rest[at + open.len()..];
        let end = rest.find("```").unwrap();
        blocks.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    assert!(
        !blocks.is_empty(),
        "docs/forward-auth.md has a {lang} block"
    );
    blocks
}

/// tok serve with forward auth, an upstream, and one front proxy before them.
struct Guarded {
    server: Server,
    upstream: Upstream,
    front: Front,
    http: Client,
}

struct Front {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Nginx,
    /// With the doc's `proxy_cache` lines on the auth subrequest.
    NginxCaching,
    /// With the doc's `proxy_ssl_*` lines: a client certificate for tok.
    NginxMtls,
    Caddy,
}

fn wait_port(port: u16, child: &mut Child, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before listening");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never listened on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl Front {
    fn start(kind: Kind, auth: &str, upstream: &str, pki: Option<&Pki>) -> Front {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let fill = |s: String| {
            s.replace("127.0.0.1:8271", auth)
                .replace("127.0.0.1:3000", upstream)
                .replace("127.0.0.1:8080", &listen)
        };
        let mut child = match kind {
            Kind::Nginx | Kind::NginxCaching | Kind::NginxMtls => {
                let nginx = doc_blocks("nginx");
                let mut site = fill(nginx[0].clone());
                let mut cache = String::new();
                if let Kind::NginxCaching = kind {
                    let anchor = "location = /_tok_auth {\n";
                    site = site.replace(anchor, &format!("{anchor}{}", nginx[1]));
                    cache = format!("  proxy_cache_path {d}/cache keys_zone=tok_auth:1m;\n");
                }
                if let (Kind::NginxMtls, Some(pki)) = (kind, pki) {
                    let mtls = nginx[2]
                        .replace("/etc/nginx/tok-client.pem", &pki.path("client.pem"))
                        .replace("/etc/nginx/tok-client.key", &pki.path("client.key"))
                        .replace("/etc/nginx/tok-ca.pem", &pki.path("ca1.pem"));
                    site = site.replace("        proxy_pass http://tok_auth;\n", &mtls);
                }
                let conf = format!(
                    "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                     error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
                     http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
                     proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                     uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{cache}{site}\n}}\n"
                );
                std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
                Command::new("nginx")
                    .args(["-p", &d, "-e", &format!("{d}/error.log"), "-c"])
                    .arg(dir.path().join("nginx.conf"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nginx (scripts/setup/50-forward-auth.sh installs it)")
            }
            Kind::Caddy => {
                let conf = format!(
                    "{{\n\tadmin off\n\tauto_https off\n}}\n\n{}",
                    fill(doc_blocks("caddyfile")[0].clone())
                );
                std::fs::write(dir.path().join("Caddyfile"), conf).unwrap();
                Command::new("caddy")
                    .args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(dir.path().join("Caddyfile"))
                    .env("HOME", dir.path())
                    .env("XDG_CONFIG_HOME", dir.path())
                    .env("XDG_DATA_HOME", dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("caddy (scripts/setup/50-forward-auth.sh installs it)")
            }
        };
        wait_port(port, &mut child, &format!("{kind:?}"));
        Front {
            url: format!("http://{listen}"),
            child,
            _dir: dir,
        }
    }
}

impl Guarded {
    fn start(kind: Kind, extra: &[&str]) -> Guarded {
        let upstream = Upstream::start();
        let mut routes = tempfile::NamedTempFile::new().unwrap();
        routes.write_all(ROUTES.as_bytes()).unwrap();
        let mut args = vec![
            "--auth-listen",
            "127.0.0.1:0",
            "--auth-allow",
            "127.0.0.1/32",
            "--routes",
            routes.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let server = Server::start_with(&args);
        let auth = server.auth_url();
        let front = Front::start(
            kind,
            auth.trim_start_matches("http://"),
            &upstream.addr.to_string(),
            None,
        );
        Guarded {
            server,
            upstream,
            front,
            http: Client::builder().no_proxy().build().unwrap(),
        }
    }

    fn get(
        &self,
        path: &str,
        secret: Option<&str>,
        extra: &[(&str, &str)],
    ) -> reqwest::blocking::Response {
        let mut r = self.http.get(format!("{}{path}", self.front.url));
        if let Some(s) = secret {
            r = r.bearer_auth(s);
        }
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        r.send().unwrap()
    }
}

fn challenge(r: &reqwest::blocking::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Every scenario of the issue, through one front proxy.
fn guards_a_service(kind: Kind) {
    let g = Guarded::start(kind, &[]);
    let client = g.server.client();

    // No token: 401 with the challenge reaching the client; nothing upstream.
    let r = g.get("/hello", None, &[]);
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{kind:?}");
    assert!(
        challenge(&r).starts_with("Bearer realm=\"tok\""),
        "{kind:?}: {}",
        challenge(&r)
    );
    assert_eq!(g.upstream.hits(), 0);

    // A valid token reaches the upstream with the identity headers, not the secret,
    // whatever X-Tok-* headers the client made up.
    let (id, secret) = client.create_json(&["--ttl", "1h", "--scope", "read"]);
    let r = g.get(
        "/hello?x=1",
        Some(&secret),
        &[("X-Tok-Token-Id", "tk_spoofed"), ("X-Tok-Scopes", "admin")],
    );
    assert_eq!(r.status(), StatusCode::OK, "{kind:?}");
    let seen: Value = r.json().unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-tok-token-id"], id.as_str(), "{kind:?}: {seen}");
    assert_eq!(h["x-tok-scopes"], "read", "{kind:?}: {seen}");
    assert!(
        h.get("authorization").is_none(),
        "{kind:?}: the secret went upstream: {seen}"
    );
    assert_eq!(seen["uri"], "/hello?x=1");
    assert_eq!(g.upstream.hits(), 1);

    // A spoofed identity without a token gets nowhere.
    let r = g.get(
        "/hello",
        None,
        &[("X-Tok-Token-Id", &id), ("X-Tok-Scopes", "admin")],
    );
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(g.upstream.hits(), 1);

    // A missing scope on a route: 403 with insufficient_scope.
    let r = g.get("/admin/users", Some(&secret), &[]);
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{kind:?}");
    assert!(
        challenge(&r).contains("insufficient_scope"),
        "{kind:?}: {}",
        challenge(&r)
    );
    assert_eq!(g.upstream.hits(), 1);

    // Revoke, then the next request is refused.
    client.ok(&["revoke", &id, "--yes"]);
    let r = g.get("/hello", Some(&secret), &[]);
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{kind:?}");
    assert!(
        challenge(&r).contains("revoked"),
        "{kind:?}: {}",
        challenge(&r)
    );
    assert_eq!(g.upstream.hits(), 1);

    // A --uses 3 token under 50 concurrent requests: exactly 3 pass.
    let (limited_id, limited) = client.create_json(&["--ttl", "1h", "--uses", "3"]);
    let statuses: Vec<StatusCode> =
        concurrently(50, || g.get("/limited", Some(&limited), &[]).status());
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 3, "{kind:?}: {statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED));
    assert_eq!(g.upstream.hits(), 4);
    assert_eq!(g.server.local().inspect_json(&limited_id)["uses"], 3);

    // Every decision is in the audit trail, marked as forward auth (identical
    // denials in one batch share a row and say how many they were).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let count = || {
        audit_entries(&g.server.local())
            .iter()
            .filter(|e| e["event"] == "request" && e["actor"] == "forward-auth via 127.0.0.1")
            .map(|e| e["count"].as_u64().unwrap_or(1))
            .sum::<u64>()
    };
    let mut n = count();
    while n < 55 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        n = count();
    }
    assert_eq!(n, 55, "{kind:?}: 5 single requests and 50 concurrent ones");

    // A token over its rate: the burst passes, the rest get tok's 429 with
    // Retry-After at the client (nginx through the doc's @tok_error, not a 500),
    // and never reach the upstream. 2/m rather than 2/s, so that a stalled
    // machine cannot refill the bucket between the ten requests.
    let (_, rated) = client.create_json(&["--ttl", "1h", "--rate", "2/m", "--burst", "2"]);
    let before = g.upstream.hits();
    let mut passed = 0;
    for i in 0..10 {
        let r = g.get("/rated", Some(&rated), &[]);
        if r.status() == StatusCode::OK {
            passed += 1;
            continue;
        }
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{kind:?}: request {i}"
        );
        let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap());
        let secs: u64 = retry
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{kind:?}: request {i}: Retry-After {retry:?}"));
        assert!((1..=60).contains(&secs), "{kind:?}: Retry-After {secs}");
        assert!(
            r.headers().contains_key("ratelimit"),
            "{kind:?}: {:?}",
            r.headers()
        );
    }
    assert_eq!(passed, 2, "{kind:?}");
    assert_eq!(g.upstream.hits(), before + 2, "{kind:?}");
}

#[test]
fn nginx_auth_request_guards_a_service_with_tok_tokens() {
    guards_a_service(Kind::Nginx);
}

#[test]
fn caddy_forward_auth_guards_a_service_with_tok_tokens() {
    guards_a_service(Kind::Caddy);
}

/// A client of the endpoint itself, from a chosen loopback address.
fn direct(from: &str) -> Client {
    Client::builder()
        .no_proxy()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[test]
fn a_caller_outside_auth_allow_is_refused_and_spends_nothing() {
    let server = Server::start_with(&[
        "--auth-listen",
        "127.0.0.1:0",
        "--auth-allow",
        "127.0.0.1/32",
    ]);
    let auth = server.auth_url();
    let (id, secret) = server.client().create_json(&["--ttl", "1h", "--uses", "2"]);
    let r = direct("127.0.0.2")
        .get(format!("{auth}/"))
        .bearer_auth(&secret)
        .header("X-Original-URI", "/x")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("x-tok-token-id").is_none());
    server.wait_for_log("not in --auth-allow");
    assert_eq!(server.local().inspect_json(&id)["uses"], 0);
    // From an allowed address the same request passes and spends a use.
    let r = direct("127.0.0.1")
        .get(format!("{auth}/"))
        .bearer_auth(&secret)
        .header("X-Original-URI", "/x")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-tok-token-id"], id.as_str());
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(server.local().inspect_json(&id)["uses"], 1);
}

#[test]
fn with_a_shared_secret_only_callers_that_send_it_are_answered() {
    // The secret comes from the environment, never argv.
    let shared = tok::secret::random_handle(32);
    let mut server = Server::start_env(
        &["--auth-listen", "127.0.0.1:0"],
        &[("TOK_AUTH_SECRET", &shared)],
    );
    let auth = server.auth_url();
    let (_, secret) = server.client().create_json(&["--ttl", "1h"]);
    let http = direct("127.0.0.1");
    let ask = |extra: Option<&str>| {
        let mut r = http.get(format!("{auth}/")).bearer_auth(&secret);
        if let Some(v) = extra {
            r = r.header("X-Tok-Auth-Secret", v);
        }
        r.send().unwrap().status()
    };
    assert_eq!(ask(None), StatusCode::FORBIDDEN);
    assert_eq!(ask(Some("wrong")), StatusCode::FORBIDDEN);
    assert_eq!(ask(Some(&shared)), StatusCode::OK);
    assert!(server.logs().contains("shared secret"));
    assert!(
        !server.logs().contains(&shared),
        "the secret is never logged"
    );
    server.stop();
}

#[test]
fn traefik_and_envoy_requests_are_understood_as_their_docs_describe_them() {
    let mut routes = tempfile::NamedTempFile::new().unwrap();
    routes.write_all(ROUTES.as_bytes()).unwrap();
    let server = Server::start_with(&[
        "--auth-listen",
        "127.0.0.1:0",
        "--routes",
        routes.path().to_str().unwrap(),
        "--auth-cache-ttl",
        "30s",
    ]);
    let auth = server.auth_url();
    let (id, reader) = server
        .client()
        .create_json(&["--ttl", "1h", "--scope", "read"]);
    let (_, admin) = server
        .client()
        .create_json(&["--ttl", "1h", "--scope", "admin"]);
    let http = direct("127.0.0.1");

    // Traefik ForwardAuth: a GET to `address` with X-Forwarded-{Method,Proto,Host,Uri,For}
    // and the client's headers (doc.traefik.io, middlewares/http/forwardauth).
    let traefik = |secret: &str, method: &str, uri: &str| {
        http.get(format!("{auth}/"))
            .bearer_auth(secret)
            .header("X-Forwarded-Method", method)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "app.example")
            .header("X-Forwarded-Uri", uri)
            .header("X-Forwarded-For", "203.0.113.7")
            .send()
            .unwrap()
    };
    let r = traefik(&reader, "GET", "/orders?page=2");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-tok-token-id"], id.as_str());
    assert_eq!(r.headers()["x-tok-scopes"], "read");
    assert_eq!(r.headers()["cache-control"], "max-age=30, s-maxage=30");
    let r = traefik(&reader, "DELETE", "/admin/users/7");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("scope=\"admin\""));
    assert_eq!(
        traefik(&admin, "DELETE", "/public/../admin/users/7").status(),
        StatusCode::OK
    );

    // Envoy ext_authz, HTTP service without path_prefix: the original method and
    // path, with Host, Authorization and Content-Length: 0, no body
    // (envoyproxy.io, ext_authz.proto, HttpService and AuthorizationRequest).
    let envoy = |secret: Option<&str>, method: reqwest::Method, path: &str| {
        let mut r = http
            .request(method, format!("{auth}{path}"))
            .header("Host", "app.example")
            .header("Content-Length", "0")
            .header("X-Forwarded-Proto", "https")
            .header("x-envoy-expected-rq-timeout-ms", "1000");
        if let Some(s) = secret {
            r = r.bearer_auth(s);
        }
        r.send().unwrap()
    };
    assert_eq!(
        envoy(Some(&reader), reqwest::Method::POST, "/orders").status(),
        StatusCode::OK
    );
    assert_eq!(
        envoy(Some(&reader), reqwest::Method::PUT, "/admin/x").status(),
        StatusCode::FORBIDDEN
    );
    let r = envoy(None, reqwest::Method::GET, "/orders");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tok\"");
    assert_eq!(r.headers()["cache-control"], "no-store");

    // The audit trail has the original client and path.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = server.local().ok(&["audit", "--token", &id, "-o", "jsonl"]);
        let entries: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if let Some(e) = entries
            .iter()
            .find(|e| e["path"] == "/orders" && e["method"] == "GET")
        {
            assert_eq!(e["client"], "203.0.113.7");
            assert_eq!(e["decision"], "allow");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{entries:#?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn bad_forward_auth_settings_are_refused_before_anything_starts() {
    use crate::common::*;
    let mut env = Env::new();
    let serve = |env: &Env, extra: &[&str]| {
        let mut args = vec!["serve", "--data-dir", "s", "--auth-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    let o = serve(&env, &["--auth-allow", "office"]);
    assert_fails(
        &o,
        exit::USAGE,
        &["--auth-allow", "not an address range", "10.0.0.0/8"],
    );
    let o = env.run(&["serve", "--data-dir", "s", "--auth-allow", "10.0.0.0/8"]);
    assert_fails(&o, exit::USAGE, &["--auth-listen"]);
    let o = env.run(&["serve", "--data-dir", "s", "--routes", "r.toml"]);
    assert_fails(
        &o,
        exit::USAGE,
        &["--routes", "--proxy-listen", "--auth-listen"],
    );
    env.set("TOK_AUTH_SECRET", " ");
    let o = serve(&env, &[]);
    assert_fails(&o, exit::USAGE, &["TOK_AUTH_SECRET is set but empty"]);

    // mTLS needs a certificate to serve, and one that loads.
    let pki = Pki::new();
    env.set("TOK_AUTH_SECRET", &tok::secret::random_handle(32));
    let o = serve(&env, &["--auth-client-ca", &pki.path("ca1.pem")]);
    assert_fails(&o, exit::USAGE, &["--auth-client-ca", "--auth-tls-cert"]);
    // A key file that holds no key.
    let args = pki.serve_args("server.pem");
    let o = serve(
        &env,
        &args[2..].iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("could not read a PEM private key"),
        "{o:?}"
    );
}

#[test]
fn nginx_caches_an_allowed_answer_for_auth_cache_ttl_but_never_a_use_limited_one() {
    let g = Guarded::start(Kind::NginxCaching, &["--auth-cache-ttl", "1h"]);
    let client = g.server.client();
    let asked = |id: &str| {
        audit_entries(&g.server.local())
            .iter()
            .filter(|e| e["token_id"] == id && e["event"] == "request")
            .count()
    };
    let (id, secret) = client.create_json(&["--ttl", "1h"]);
    for _ in 0..3 {
        assert_eq!(g.get("/same", Some(&secret), &[]).status(), StatusCode::OK);
    }
    assert_eq!(g.upstream.hits(), 3);
    // The documented trade-off: a revoke waits for the cached answer to age out.
    client.ok(&["revoke", &id, "--yes"]);
    assert_eq!(g.get("/same", Some(&secret), &[]).status(), StatusCode::OK);
    // Another path is another key: asked, and refused.
    assert_eq!(
        g.get("/other", Some(&secret), &[]).status(),
        StatusCode::UNAUTHORIZED
    );

    let (limited_id, limited) = client.create_json(&["--ttl", "1h", "--uses", "2"]);
    let statuses: Vec<StatusCode> = (0..3)
        .map(|_| g.get("/same", Some(&limited), &[]).status())
        .collect();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::OK, StatusCode::UNAUTHORIZED]
    );
    assert_eq!(g.server.local().inspect_json(&limited_id)["uses"], 2);

    // tok was asked once for the cached token's path (and once for the other
    // path), three times for the use-limited one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while (asked(&id), asked(&limited_id)) != (2, 3) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!((asked(&id), asked(&limited_id)), (2, 3));
}

/// The proxy's request rules hold at the endpoint too, with 403 where the
/// proxy answers 400 or 405: two `Authorization` headers (which one counts
/// depends on who reads), CONNECT and TRACE, a path that cannot be made
/// canonical. None spends a use, and each is in the audit trail.
#[test]
fn the_proxys_request_rules_hold_for_forward_auth() {
    let server = Server::start_with(&["--auth-listen", "127.0.0.1:0"]);
    let auth = server.auth_url();
    let (id, secret) = server.client().create_json(&["--ttl", "1h", "--uses", "5"]);
    let (_, other) = server.client().create_json(&["--ttl", "1h"]);
    let http = direct("127.0.0.1");
    let ask = |method: &str, uri: &str, bearers: &[&str]| {
        let mut r = http
            .get(format!("{auth}/"))
            .header("X-Original-Method", method)
            .header("X-Original-URI", uri);
        for b in bearers {
            r = r.header("Authorization", format!("Bearer {b}"));
        }
        r.send().unwrap()
    };
    let refused = [
        (
            ask("GET", "/x", &[&secret, &other]),
            "invalid_request",
            "more than one Authorization header",
        ),
        (
            ask("CONNECT", "/x", &[&secret]),
            "method_not_allowed",
            "CONNECT or TRACE",
        ),
        (
            ask("TRACE", "/x", &[&secret]),
            "method_not_allowed",
            "CONNECT or TRACE",
        ),
        (
            ask("GET", "/a/%2e%2e/%2e%2e/x", &[&secret]),
            "invalid_request",
            "above the root",
        ),
    ];
    for (r, code, why) in refused {
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{why}");
        assert!(r.headers().get("x-tok-token-id").is_none());
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body: Value = r.json().unwrap();
        assert_eq!(body["error"]["code"], code);
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{body}"
        );
    }
    // The same token alone passes, and only that spent a use.
    assert_eq!(ask("GET", "/x", &[&secret]).status(), StatusCode::OK);
    assert_eq!(server.local().inspect_json(&id)["uses"], 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let entries = audit_entries(&server.local());
        let denied: Vec<&Value> = entries
            .iter()
            .filter(|e| e["event"] == "request" && e["decision"] == "deny")
            .collect();
        if denied.len() >= 4 {
            assert!(denied.iter().any(|e| e["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("more than one Authorization header")
                && e["method"] == "GET"
                && e["path"] == "/x"));
            assert!(denied.iter().any(|e| e["method"] == "CONNECT"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{entries:#?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// SIGHUP reads the routes again for forward auth as for the proxy: a route's
/// scope changed in the file changes the answer, on both listeners at once.
#[test]
fn sighup_changes_the_routes_forward_auth_decides_by() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, ROUTES).unwrap();
    let server = Server::start_with(&[
        "--auth-listen",
        "127.0.0.1:0",
        "--proxy-listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("http://{}", upstream.addr),
        "--routes",
        routes.to_str().unwrap(),
    ]);
    let auth = server.auth_url();
    let proxy = server.proxy_url();
    let (_, ops) = server
        .client()
        .create_json(&["--ttl", "1h", "--scope", "ops"]);
    let http = direct("127.0.0.1");
    let answers = || {
        let fa = http
            .get(format!("{auth}/"))
            .bearer_auth(&ops)
            .header("X-Original-URI", "/admin/users")
            .send()
            .unwrap()
            .status();
        let px = http
            .get(format!("{proxy}/admin/users"))
            .bearer_auth(&ops)
            .send()
            .unwrap()
            .status();
        (fa, px)
    };
    assert_eq!(answers(), (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN));

    std::fs::write(&routes, ROUTES.replace("\"admin\"", "\"ops\"")).unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_log("SIGHUP: reloaded");
    assert_eq!(answers(), (StatusCode::OK, StatusCode::OK));
    assert_eq!(upstream.hits(), 1);

    // Forward auth alone (no proxy) reloads its routes too.
    std::fs::write(&routes, ROUTES).unwrap();
    let alone = Server::start_with(&[
        "--auth-listen",
        "127.0.0.1:0",
        "--routes",
        routes.to_str().unwrap(),
    ]);
    let (_, ops) = alone
        .client()
        .create_json(&["--ttl", "1h", "--scope", "ops"]);
    let ask = || {
        http.get(format!("{}/", alone.auth_url()))
            .bearer_auth(&ops)
            .header("X-Forwarded-Uri", "/admin/users")
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(ask(), StatusCode::FORBIDDEN);
    std::fs::write(&routes, ROUTES.replace("\"admin\"", "\"ops\"")).unwrap();
    alone.signal(nix::sys::signal::Signal::SIGHUP);
    alone.wait_for_log("SIGHUP: reloaded");
    assert!(alone.logs().contains("routes"));
    assert_eq!(ask(), StatusCode::OK);
}

/// A throwaway PKI made with the openssl CLI (scripts/setup/50-forward-auth.sh
/// installs it): two CAs, a server certificate for 127.0.0.1 from the first,
/// and a client certificate from each.
struct Pki {
    dir: tempfile::TempDir,
}

/// A new P-256 key, unencrypted.
const NEW_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        for ca in ["ca1", "ca2"] {
            pki.openssl(&format!(
                "req -x509 {NEW_KEY} -keyout {ca}.key -out {ca}.pem -days 2 -subj /CN=tok-test-{ca} \
                 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
            ));
        }
        pki.leaf(
            "server",
            "ca1",
            "subjectAltName=IP:127.0.0.1,DNS:tok.internal\nextendedKeyUsage=serverAuth",
        );
        pki.leaf("client", "ca1", "extendedKeyUsage=clientAuth");
        pki.leaf("stranger", "ca2", "extendedKeyUsage=clientAuth");
        pki
    }

    /// Runs `openssl` with the white-space separated `args` in the PKI's directory.
    fn openssl(&self, args: &str) {
        let o = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(self.dir.path())
            .output()
            .expect("openssl (scripts/setup/50-forward-auth.sh installs it)");
        assert!(
            o.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn leaf(&self, name: &str, ca: &str, ext: &str) {
        std::fs::write(
            self.dir.path().join(format!("{name}.ext")),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}\n"),
        )
        .unwrap();
        self.openssl(&format!(
            "req {NEW_KEY} -keyout {name}.key -out {name}.csr -subj /CN={name}"
        ));
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial \
             -out {name}.pem -days 2 -extfile {name}.ext"
        ));
    }

    /// `tok serve` arguments for forward auth over mTLS, with `key` as the key file.
    fn serve_args(&self, key: &str) -> Vec<String> {
        [
            "--auth-listen",
            "127.0.0.1:0",
            "--auth-tls-cert",
            &self.path("server.pem"),
            "--auth-tls-key",
            &self.path(key),
            "--auth-client-ca",
            &self.path("ca1.pem"),
        ]
        .map(String::from)
        .to_vec()
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    /// A client that trusts the first CA, presenting `who`'s certificate.
    fn client(&self, who: Option<&str>) -> Client {
        let mut b = Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.read("ca1.pem")).unwrap());
        if let Some(who) = who {
            let pem = [
                self.read(&format!("{who}.pem")),
                self.read(&format!("{who}.key")),
            ]
            .concat();
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }
}

/// mTLS: with --auth-client-ca only a caller with a certificate from that CA
/// gets an answer; one without a certificate or with one from another CA
/// fails its handshake and spends nothing.
#[test]
fn with_a_client_ca_only_callers_with_its_certificates_are_answered() {
    let pki = Pki::new();
    let args = pki.serve_args("server.key");
    let server = Server::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let auth = server.auth_url();
    assert!(auth.starts_with("https://127.0.0.1:"), "{auth}");
    assert!(server.logs().contains("client_certificates=true"));
    assert!(!server.logs().contains("by address alone"));
    let (id, secret) = server.client().create_json(&["--ttl", "1h", "--uses", "3"]);
    let ask = |who: Option<&str>| {
        pki.client(who)
            .get(format!("{auth}/"))
            .bearer_auth(&secret)
            .header("X-Original-URI", "/x")
            .send()
    };
    for who in [None, Some("stranger")] {
        let r = ask(who);
        assert!(r.is_err(), "{who:?} got an answer: {r:?}");
    }
    assert_eq!(server.local().inspect_json(&id)["uses"], 0);
    let r = ask(Some("client")).unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-tok-token-id"], id.as_str());
    assert_eq!(server.local().inspect_json(&id)["uses"], 1);
    // The admin API stays plain HTTP: the certificate is the auth listener's own.
    assert!(server.url.starts_with("http://"));

    // nginx with the doc's proxy_ssl_* lines is let in, and guards a service.
    let upstream = Upstream::start();
    let front = Front::start(
        Kind::NginxMtls,
        auth.trim_start_matches("https://"),
        &upstream.addr.to_string(),
        Some(&pki),
    );
    let http = Client::builder().no_proxy().build().unwrap();
    let r = http
        .get(format!("{}/y", front.url))
        .bearer_auth(&secret)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(upstream.hits(), 1);
    assert_eq!(server.local().inspect_json(&id)["uses"], 2);
    let r = http.get(format!("{}/y", front.url)).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.hits(), 1);
}
