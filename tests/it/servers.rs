//! Real servers for the driver tests, one per test on a free loopback port,
//! stopped when dropped: OpenBao (`bao server -dev`) and oidc-provider
//! (tests/oidc/provider.mjs). scripts/setup/40-vault-oauth.sh installs both
//! and says where through TOK_TEST_BAO, TOK_TEST_OIDC_DIR and TOK_TEST_NODE.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to come up before the test fails.
const STARTUP: Duration = Duration::from_secs(30);

fn tool(var: &str, what: &str) -> PathBuf {
    let path = std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set, so there is no {what} to test against. Run the tests with \
             `scripts/test` (it installs {what} through scripts/setup/40-vault-oauth.sh), \
             or source that script yourself before `cargo test`."
        )
    });
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{var}={} does not exist; run `scripts/test` to install {what}",
        path.display()
    );
    path
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn random(n: usize) -> String {
    tok::secret::random_handle(n)
}

/// Kills and reaps a child, ignoring one that has already gone.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads a child's stderr as it comes, so that a chatty server never blocks
/// on a full pipe; the text is kept for failure messages.
pub fn drain(child: &mut Child) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    if let Some(mut e) = child.stderr.take() {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = e.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut l = log.lock().unwrap();
                // Keep the last part only; the start-up banner is not the news.
                if l.len() > 64 * 1024 {
                    let cut = l.len() - 32 * 1024;
                    let cut = (cut..l.len()).find(|i| l.is_char_boundary(*i)).unwrap_or(0);
                    l.replace_range(..cut, "…");
                }
                l.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    log
}

fn text(log: &Arc<Mutex<String>>) -> String {
    // Give the reader a moment to catch the last words of a dead process.
    std::thread::sleep(Duration::from_millis(100));
    log.lock().unwrap().clone()
}

/// A blocking HTTP client for checking what a server holds, apart from tok.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// `bao server -dev` with a random root token, in memory.
pub struct Bao {
    child: Child,
    pub addr: String,
    pub root: String,
}

impl Bao {
    pub fn start() -> Bao {
        let bin = tool("TOK_TEST_BAO", "OpenBao");
        let mut last = String::new();
        // A port found free can be taken before bao binds it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let root = format!("root-{}", random(20));
            let mut child = Command::new(&bin)
                .args([
                    "server",
                    "-dev",
                    &format!("-dev-root-token-id={root}"),
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                    "-dev-no-store-token",
                ])
                .env_clear()
                .env("HOME", std::env::temp_dir())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
            let log = drain(&mut child);
            let addr = format!("http://127.0.0.1:{port}");
            let client = http();
            let started = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    last = text(&log);
                    break;
                }
                let ready = client
                    .get(format!("{addr}/v1/sys/health"))
                    .send()
                    .is_ok_and(|r| r.status().as_u16() == 200);
                if ready {
                    return Bao { child, addr, root };
                }
                if started.elapsed() > STARTUP {
                    stop(&mut child);
                    panic!("OpenBao did not come up on {addr}: {}", text(&log));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("OpenBao would not start: {last}");
    }

    /// A request to Vault's API as `token`; (status, JSON body or Null).
    pub fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        self.api_ns(method, path, token, None, body)
    }

    pub fn api_ns(
        &self,
        method: &str,
        path: &str,
        token: &str,
        namespace: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = http()
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", token);
        if let Some(ns) = namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("request to OpenBao");
        let status = resp.status().as_u16();
        let text = resp.text().expect("body");
        let v = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON from OpenBao")
        };
        (status, v)
    }

    /// `lookup-accessor` as root: the token's data, or None once Vault forgot it.
    pub fn lookup_accessor(&self, accessor: &str) -> Option<Value> {
        let (status, v) = self.api(
            "POST",
            "auth/token/lookup-accessor",
            &self.root,
            Some(serde_json::json!({ "accessor": accessor })),
        );
        match status {
            200 => Some(v["data"].clone()),
            400 => None,
            s => panic!("lookup-accessor: HTTP {s}: {v}"),
        }
    }

    /// The token's own `lookup-self` status: 200 while it works, 403 after.
    /// Each call spends one of the token's uses.
    pub fn self_status(&self, token: &str) -> u16 {
        self.api("GET", "auth/token/lookup-self", token, None).0
    }

    /// Every accessor the server holds.
    pub fn accessors(&self) -> Vec<String> {
        let (status, v) = self.api("LIST", "auth/token/accessors", &self.root, None);
        assert_eq!(status, 200, "{v}");
        v["data"]["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// oidc-provider with one confidential client, on a free port.
pub struct Oidc {
    child: Child,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub ttl: u64,
}

pub const OIDC_SCOPES: &str = "orders:read orders:write";

impl Oidc {
    pub fn start() -> Oidc {
        let dir = tool("TOK_TEST_OIDC_DIR", "oidc-provider");
        let node = std::env::var("TOK_TEST_NODE").unwrap_or_else(|_| "node".into());
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let client_id = format!("ci-{}", random(6));
            let client_secret = random(32);
            let ttl = 600;
            let mut child = Command::new(&node)
                .arg(&script)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("OIDC_MODULES", dir.join("node_modules"))
                .env("OIDC_PORT", port.to_string())
                .env("OIDC_CLIENT_ID", &client_id)
                .env("OIDC_CLIENT_SECRET", &client_secret)
                .env("OIDC_SCOPES", OIDC_SCOPES)
                .env("OIDC_TOKEN_TTL", ttl.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("could not start node ({node}): {e}"));
            let log = drain(&mut child);
            let stdout = child.stdout.take().expect("stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.starts_with("ready ") {
                        let _ = tx.send(line);
                    }
                }
            });
            match rx.recv_timeout(STARTUP) {
                Ok(line) => {
                    let issuer = line["ready ".len()..].trim().to_string();
                    return Oidc {
                        child,
                        issuer,
                        client_id,
                        client_secret,
                        ttl,
                    };
                }
                Err(_) => {
                    stop(&mut child);
                    last = text(&log);
                }
            }
        }
        panic!("oidc-provider would not start: {last}");
    }

    /// RFC 7662 introspection as the client, apart from tok.
    pub fn introspect(&self, token: &str) -> Value {
        let resp = http()
            .post(format!("{}/token/introspection", self.issuer))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token)])
            .send()
            .expect("introspection");
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().expect("introspection JSON")
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
