//! Operating `tok serve`: Prometheus metrics scraped by a real Prometheus
//! (Debian's package, scripts/setup/50-prometheus.sh) and linted by
//! `promtool`, JSON logs with request ids, readiness, the config file and
//! its checker, SIGHUP reloads, sd_notify readiness, and the systemd unit
//! checked by `systemd-analyze verify`.

use crate::common::*;
use crate::server::Server;
use crate::servers::{drain, free_port};
use crate::upstream::Upstream;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A guard against hanging, never a measurement.
const GUARD: Duration = Duration::from_secs(60);

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET `url`, with `token` as the bearer when given.
fn get(url: &str, token: Option<&str>) -> reqwest::blocking::Response {
    let mut r = http().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().unwrap()
}

/// Polls `f` until it gives Some, or fails with `what` after GUARD.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + GUARD;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `tok serve` started by the test itself, for what `Server` cannot do:
/// JSON logs and an environment of its own (NOTIFY_SOCKET).
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// `tok serve` on `dir` at a free loopback port, with JSON logs.
    fn start(env: &Env, dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Proc {
        let mut cmd = env.std_cmd();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start tok serve");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Proc { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first JSON log line whose message is `message`.
    fn json_line(&self, message: &str) -> Value {
        wait_for(&format!("a log line {message:?}"), || {
            self.lines().iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["message"] == message).then_some(v)
            })
        })
    }

    fn signal(&self, s: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, s).unwrap();
    }

    fn stop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}\n{:?}", self.lines());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A store with an admin token, in `env`; returns (data dir, admin secret).
fn init_store(env: &Env) -> (PathBuf, String) {
    let dir = env.home().join("store");
    let o = env.run(&["serve", "init", "--data-dir", dir.to_str().unwrap()]);
    assert_success(&o, &["serve init"]);
    (dir, stdout(&o).trim().to_string())
}

/// The address after `url=` on the text log line holding `what`.
fn url_in_log(server: &Server, what: &str) -> String {
    server.wait_for_log(what);
    server
        .logs()
        .lines()
        .filter(|l| l.contains(what))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("url=")))
        .unwrap()
        .to_string()
}

/// Known traffic through the proxy: 3 allowed, 4 denied (2 unknown tokens,
/// 1 without a token, 1 lacking a scope), 1 error (a dead upstream).
fn known_traffic(proxy: &str, valid: &str) {
    let h = http();
    for _ in 0..3 {
        let r = get(&format!("{proxy}/ok"), Some(valid));
        assert_eq!(r.status(), 200);
    }
    for _ in 0..2 {
        let r = get(&format!("{proxy}/ok"), Some("tok_not_a_real_one"));
        assert_eq!(r.status(), 401);
    }
    assert_eq!(h.get(format!("{proxy}/ok")).send().unwrap().status(), 401);
    let r = get(&format!("{proxy}/admin/x"), Some(valid));
    assert_eq!(r.status(), 403);
    let r = get(&format!("{proxy}/dead/x"), Some(valid));
    assert_eq!(r.status(), 502);
}

fn routes_with_dead_upstream() -> String {
    format!(
        "[[route]]\npath = \"/admin/**\"\nscopes = [\"admin\"]\n\n[[route]]\npath = \"/dead/**\"\nupstream = \"http://127.0.0.1:{}\"\n",
        free_port()
    )
}

/// One sample of the exposition: `name{labels} value`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn prometheus_scrapes_request_counts_by_decision_and_promtool_passes_the_exposition() {
    let upstream = Upstream::start();
    let env = Env::new();
    let routes = env.home().join("routes.toml");
    write(&routes, &routes_with_dead_upstream());
    let server = Server::start_with(&[
        "--proxy-listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url(),
        "--routes",
        routes.to_str().unwrap(),
    ]);
    let proxy = server.proxy_url();
    let client = server.client();
    let (_, valid) = client.create_json(&["--ttl", "1h"]);
    let (_, scraper) = client.create_json(&["--scope", "tok:metrics", "--name", "prometheus"]);
    known_traffic(&proxy, &valid);

    // The exposition itself, read with the scraper's token, passes promtool.
    let text = get(&server.api("/metrics"), Some(&scraper)).text().unwrap();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup/50-prometheus.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(&valid) && !text.contains("tk_"), "{text}");

    // A real Prometheus scrapes it with the token from a 0600 file.
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("scrape.token");
    write(&cred, &scraper);
    let target = server.url.trim_start_matches("http://");
    let config = dir.path().join("prometheus.yml");
    write(
        &config,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tok\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
            cred.display()
        ),
    );
    let port = free_port();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prometheus (scripts/setup/50-prometheus.sh installs it)");
    let prom_log = drain(&mut child);
    let prom = Kill(child);

    let query = "sum by (decision) (tok_requests_total{listener=\"proxy\"})";
    let want = [("allow", 3.0), ("deny", 4.0), ("error", 1.0)];
    let mut last = Value::Null;
    let deadline = Instant::now() + GUARD;
    let found = loop {
        let got = http()
            .get(format!("http://127.0.0.1:{port}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok());
        if let Some(v) = got {
            let by: Vec<(String, f64)> = v["data"]["result"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            (
                                r["metric"]["decision"].as_str().unwrap_or("").to_string(),
                                r["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0.0),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if want
                .iter()
                .all(|(d, n)| by.iter().any(|(bd, bn)| bd == d && bn == n))
            {
                break true;
            }
            last = v;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        found,
        "Prometheus never saw allow=3 deny=4 error=1; last answer {last}\nprometheus log:\n{}",
        prom_log.lock().unwrap()
    );
    // The scrape target is healthy, so the token in the file was accepted.
    let targets: Value = http()
        .get(format!("http://127.0.0.1:{port}/api/v1/targets"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        targets["data"]["activeTargets"][0]["health"], "up",
        "{targets}"
    );
    drop(prom);
}

#[test]
fn metrics_need_a_metrics_or_admin_token_unless_on_the_metrics_listener() {
    let upstream = Upstream::start();
    let server = Server::start_with(&[
        "--proxy-listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let client = server.client();
    let (_, reader) = client.create_json(&["--scope", "tok:read"]);
    let (_, metrics) = client.create_json(&["--scope", "tok:metrics"]);
    let h = http();
    let metrics_url = server.api("/metrics");
    let scrape = |token: Option<&str>| get(&metrics_url, token);
    assert_eq!(scrape(None).status(), 401);
    let r = scrape(Some(&reader));
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("tok:metrics"));
    let r = scrape(Some(&metrics));
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert_eq!(scrape(Some(&server.admin)).status(), 200);

    // Known traffic, then the counts on the open listener.
    let proxy = server.proxy_url();
    let r = get(&format!("{proxy}/x"), Some(&metrics));
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 16, "{id}");
    let echoed: Value = r.json().unwrap();
    assert_eq!(
        echoed["headers"]["x-request-id"],
        id.as_str(),
        "the upstream gets the id"
    );
    // The same token again: the admission cache answers.
    assert_eq!(get(&format!("{proxy}/y"), Some(&metrics)).status(), 200);
    let r = h
        .get(format!("{proxy}/x"))
        .header("x-request-id", "forged")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_ne!(r.headers()["x-request-id"], "forged");

    let open = url_in_log(&server, "metrics listening");
    let text = h
        .get(format!("{open}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let n = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        n("tok_requests_total{listener=\"proxy\",decision=\"allow\",reason=\"ok\"}"),
        2.0
    );
    assert_eq!(n("tok_admission_cache_misses_total"), 1.0);
    assert_eq!(n("tok_admission_cache_hits_total"), 1.0);
    assert!(n("tok_store_duration_seconds_count{op=\"lookup\"}") >= 1.0);
    assert_eq!(
        n("tok_requests_total{listener=\"proxy\",decision=\"deny\",reason=\"missing_token\"}"),
        1.0
    );
    // 401, 403, then the two 200s above.
    assert_eq!(
        n("tok_requests_total{listener=\"admin\",decision=\"deny\",reason=\"unauthorized\"}"),
        1.0
    );
    assert_eq!(
        n("tok_requests_total{listener=\"admin\",decision=\"deny\",reason=\"forbidden\"}"),
        1.0
    );
    assert_eq!(n("tok_proxy_request_duration_seconds_count"), 3.0);
    assert_eq!(n("tok_upstream_duration_seconds_count"), 2.0);
    // admin, reader, metrics: all active.
    assert_eq!(n("tok_tokens{state=\"active\"}"), 3.0);
    assert_eq!(n("tok_build_info{version=\"0.1.0\"}"), 1.0);
    let ready = h.get(format!("{open}/v1/health/ready")).send().unwrap();
    assert_eq!(ready.status(), 200);
}

#[test]
fn json_logs_parse_hold_no_secret_and_join_requests_to_audit_entries() {
    let upstream = Upstream::start();
    let env = Env::new();
    let (dir, admin) = init_store(&env);
    let mut srv = Proc::start(
        &env,
        &dir,
        &[
            "--proxy-listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.url(),
            "-v",
        ],
        &[],
    );
    let url = srv.json_line("listening")["url"]
        .as_str()
        .unwrap()
        .to_string();
    let proxy = srv.json_line("proxy listening")["url"]
        .as_str()
        .unwrap()
        .to_string();
    let h = http();
    // A token made through the API: its secret crosses the server.
    let created: Value = h
        .post(format!("{url}/v1/tokens"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "app", "expires_at": null}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let secret = created["secret"].as_str().expect("a secret").to_string();
    let r = get(
        &format!("{proxy}/orders?api_key=querysecret123"),
        Some(&secret),
    );
    assert_eq!(r.status(), 200);
    let proxy_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let r = get(
        &format!("{url}/v1/tokens?name=querysecret456"),
        Some(&admin),
    );
    assert_eq!(r.status(), 200);
    let admin_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(admin_id, proxy_id);

    // The audit entry of the proxied request carries its id.
    let audit = wait_for("the audit entry", || {
        let o = env.run(&[
            "--driver",
            "local",
            "--data-dir",
            dir.to_str().unwrap(),
            "audit",
            "-o",
            "jsonl",
        ]);
        stdout(&o)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["event"] == "request")
    });
    assert_eq!(audit["request_id"], proxy_id.as_str(), "{audit}");

    srv.stop();
    let lines = srv.lines();
    let mut seen_admin = false;
    let mut seen_proxy = false;
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{l}");
        for s in [&secret, &admin, "querysecret123", "querysecret456"] {
            assert!(!l.contains(s), "a log line holds a secret or a query: {l}");
        }
        seen_admin |= v["request_id"] == admin_id.as_str() && v["status"] == 200;
        seen_proxy |= v["request_id"] == proxy_id.as_str();
    }
    assert!(seen_admin && seen_proxy, "{lines:#?}");
}

#[test]
fn readiness_follows_the_store_and_liveness_does_not() {
    let server = Server::start();
    let h = http();
    let get = |p: &str| {
        let r = h.get(server.api(p)).send().unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap())
    };
    assert_eq!(
        get("/v1/health/ready"),
        (200, serde_json::json!({"status": "ready"}))
    );
    assert_eq!(get("/v1/health/live").0, 200);

    let db = server.data_dir.join("tok.db");
    let away = server.data_dir.join("tok.db.away");
    std::fs::rename(&db, &away).unwrap();
    let (status, body) = get("/v1/health/ready");
    std::fs::rename(&away, &db).unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("the store cannot be read"),
        "{body}"
    );
    assert_eq!(get("/v1/health/live").0, 200);
    let (status, health) = get("/v1/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");

    let (status, body) = get("/v1/health/ready");
    assert_eq!(status, 200, "back: {body}");
}

#[test]
fn the_example_config_is_valid_and_bad_configs_name_the_key_and_line() {
    let env = Env::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/serve.example.toml");
    let o = env.run(&["serve", "check-config", example.to_str().unwrap()]);
    assert_success(&o, &["check-config example"]);
    assert!(
        stderr(&o).contains("ok (listen 127.0.0.1:8270, data_dir /var/lib/tok, proxy on 127.0.0.1:8080 to http://127.0.0.1:3000 with 3 route(s))"),
        "{}",
        stderr(&o)
    );

    let bad = env.home().join("bad.toml");
    for (text, needles) in [
        (
            "listen = \"127.0.0.1:0\"\nheader_timout = \"5s\"\n",
            vec!["line 2, key `header_timout`", "unknown field"],
        ),
        (
            "[audit]\nmax_age = \"forever\"\n",
            vec!["line 2, key `max_age`"],
        ),
        (
            "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"ftp://x\"\n",
            vec!["line 3, key `upstream`"],
        ),
        (
            "[proxy]\nlisten = \"127.0.0.1:0\"\n",
            vec!["needs an upstream", "--upstream"],
        ),
        (
            "listen = \"not an address\"\n",
            vec!["line 1, key `listen`"],
        ),
    ] {
        write(&bad, text);
        let o = env.run(&["serve", "check-config", bad.to_str().unwrap()]);
        let mut all = needles.clone();
        all.push("bad.toml");
        if needles[0].starts_with("needs") {
            all.pop();
        }
        assert_fails(&o, exit::USAGE, &all);
        // `tok serve --config` refuses the same file before it listens.
        let o = env.run(&[
            "serve",
            "--config",
            bad.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]);
        assert_fails(&o, exit::USAGE, &needles);
    }

    // The TLS files are loaded by the checker.
    write(
        &bad,
        "[tls]\ncert = \"missing-cert.pem\"\nkey = \"missing-key.pem\"\n",
    );
    let o = env.run(&["serve", "check-config", bad.to_str().unwrap()]);
    assert_fails(&o, exit::USAGE, &["[tls]", "missing-cert.pem"]);
}

/// An upstream that answers after `pause`, to hold a request in flight.
fn slow_upstream(pause: Duration) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                std::thread::sleep(pause);
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                );
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn sighup_swaps_routes_without_dropping_requests_in_flight_and_names_what_it_ignored() {
    let upstream = Upstream::start();
    let slow = slow_upstream(Duration::from_secs(2));
    let env = Env::new();
    let config = env.home().join("serve.toml");
    let routes = |scope: &str, port: u16| {
        format!(
            "metrics_listen = \"127.0.0.1:{port}\"\n[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n\n[[route]]\npath = \"/slow\"\nupstream = \"{slow}\"\n\n[[route]]\npath = \"/orders/**\"\nscopes = [\"{scope}\"]\n",
            upstream.url()
        )
    };
    let port = free_port();
    write(&config, &routes("orders:read", port));
    let mut server = Server::start_with(&["--config", config.to_str().unwrap()]);
    let proxy = server.proxy_url();
    let (_, token) = server.client().create_json(&["--scope", "orders:write"]);
    let orders = || get(&format!("{proxy}/orders/1"), Some(&token)).status();
    assert_eq!(orders(), 403);

    // A request in flight through the old routes while the reload happens.
    let in_flight = {
        let (proxy, token) = (proxy.clone(), token.clone());
        std::thread::spawn(move || {
            let r = get(&format!("{proxy}/slow"), Some(&token));
            (r.status(), r.text().unwrap())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    write(&config, &routes("orders:write", free_port()));
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_log("SIGHUP: reloaded");
    assert_eq!(orders(), 200, "the new route applies");
    let (status, body) = in_flight.join().unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "slow"));
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("SIGHUP: reloaded"))
        .unwrap();
    assert!(
        line.contains("routes") && line.contains("ignored=metrics_listen"),
        "{line}"
    );

    // A broken file is refused whole: the running routes stay.
    write(&config, "[proxy]\nlisten = 5\n");
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_log("the new settings are refused");
    assert_eq!(orders(), 200);
    let status = server.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn systemd_hears_ready_after_the_listeners_then_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let env = Env::new();
    let (dir, _) = init_store(&env);
    let sock_path = env.home().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(GUARD)).unwrap();
    let mut srv = Proc::start(
        &env,
        &dir,
        &[],
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 4096];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notification from tok serve");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let ready = next();
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    // Ready means accepting: the admin API answers at once.
    let url = srv.json_line("listening")["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ready.contains(&url), "{ready:?}");
    let r = http().get(format!("{url}/v1/health/ready")).send().unwrap();
    assert_eq!(r.status(), 200);

    srv.signal(nix::sys::signal::Signal::SIGHUP);
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    srv.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    srv.stop_waiting();
}

impl Proc {
    fn stop_waiting(&mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}\n{:?}", self.lines());
    }
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify_and_is_sandboxed() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/tok-serve.service"),
    )
    .unwrap();
    for directive in [
        "Type=notify",
        "User=tok",
        "StateDirectory=tok",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive:?}");
    }
    // verify checks that ExecStart's binary exists: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("tok-serve.service");
    write(
        &copy,
        &unit.replace(
            "ExecStart=/usr/bin/tok",
            &format!("ExecStart={}", env!("CARGO_BIN_EXE_tok")),
        ),
    );
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze (scripts/setup/50-prometheus.sh installs systemd)");
    let err = String::from_utf8_lossy(&o.stderr);
    // Unknown or misspelt keys are only warnings: any output is a failure here.
    assert!(
        o.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{err}",
        o.status
    );
}

#[test]
fn sighup_loads_a_renewed_tls_certificate_for_new_connections() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let env = Env::new();
    let (cert, key) = (env.home().join("cert.pem"), env.home().join("key.pem"));
    std::fs::copy(fixtures.join("cert.pem"), &cert).unwrap();
    std::fs::copy(fixtures.join("key.pem"), &key).unwrap();
    let config = env.home().join("serve.toml");
    write(&config, "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n");
    let server = Server::start_with(&["--config", config.to_str().unwrap()]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    // A new client, so a new connection and handshake, trusting only `root`.
    let health = |root: &str| {
        let pem = std::fs::read(fixtures.join(root)).unwrap();
        reqwest::blocking::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap()
            .get(server.api("/v1/health"))
            .send()
            .map(|r| r.status().as_u16())
    };
    assert_eq!(health("ca.pem").unwrap(), 200);
    assert!(health("renewed-cert.pem").is_err());

    std::fs::copy(fixtures.join("renewed-cert.pem"), &cert).unwrap();
    std::fs::copy(fixtures.join("renewed-key.pem"), &key).unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_log("SIGHUP: reloaded");
    assert!(
        server.logs().contains("tls certificate"),
        "{}",
        server.logs()
    );
    assert_eq!(health("renewed-cert.pem").unwrap(), 200);
    assert!(health("ca.pem").is_err());
}
