//! A real `tok serve` process for tests: started on a free port of 127.0.0.1
//! (port 0; the URL is read from its "listening" log line), with a store made
//! by `tok serve init`, and stopped (SIGTERM, then kill) when dropped.
//!
//! `server.client()` is an `Env` whose `tok` talks to it through the tok driver
//! (TOK_URL + TOK_ADMIN_TOKEN); `server.local()` reads the same store directly
//! with the local driver, to check what the server holds.
//!
//! One suite, two stores: the store a test's servers keep their tokens in is
//! chosen here, in one place. A test written once and declared with
//! [`each_store!`] runs twice, as `NAME::sqlite` (the SQLite store in the
//! server's data directory) and `NAME::postgres` (a database of its own in
//! the test cluster, made from a migrated template and dropped at the end).

use crate::common::*;
use crate::pg::TestDb;
use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a server may take to say it is listening before the test gives up
/// (a guard against hanging, not a measurement).
const START_GUARD: Duration = Duration::from_secs(60);

/// Where a test's servers keep their tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The SQLite store in the server's data directory (the default).
    Sqlite,
    /// A PostgreSQL database of the test's own (`tok serve --store URL`).
    Postgres,
}

thread_local! {
    static STORE: Cell<Store> = const { Cell::new(Store::Sqlite) };
}

/// The store this test's servers use.
pub fn store() -> Store {
    STORE.with(Cell::get)
}

/// Runs the test `f` with its servers on `store`.
pub fn on_store(store: Store, f: fn()) {
    STORE.with(|s| s.set(store));
    f()
}

/// Declares a test function (written without `#[test]`) as two tests, one
/// per store: `each_store!(name);` above `fn name() { ... }` makes
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! each_store {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                $crate::server::on_store($crate::server::Store::Sqlite, super::$name)
            }
            #[test]
            fn postgres() {
                $crate::server::on_store($crate::server::Store::Postgres, super::$name)
            }
        }
    };
}

pub struct Server {
    /// The server's own hermetic home; its store is in `data_dir`.
    pub env: Env,
    /// On PostgreSQL, a second node on the same database, started when the
    /// store is read while this server is stopped (see `local`).
    sidecar: std::sync::OnceLock<Box<Server>>,
    /// On PostgreSQL, the test's database (dropped after the server stops).
    pub db: Option<TestDb>,
    pub data_dir: PathBuf,
    pub url: String,
    /// The admin token `tok serve init` printed.
    pub admin: String,
    extra: Vec<String>,
    child: Option<Child>,
    reader: Option<std::thread::JoinHandle<()>>,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// A new store with an admin token, served over HTTP.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Like `start`, with extra `tok serve` arguments (e.g. TLS files).
    pub fn start_with(extra: &[&str]) -> Server {
        Self::start_env(extra, &[])
    }

    /// Like `start_with`, with environment variables for the server process.
    /// The store is the test's ([`store`]).
    pub fn start_env(extra: &[&str], vars: &[(&str, &str)]) -> Server {
        let mut env = Env::new();
        for (k, v) in vars {
            env.set(k, v);
        }
        let data_dir = env.home().join("server-store");
        let mut all: Vec<String> = Vec::new();
        let db = match store() {
            Store::Sqlite => None,
            Store::Postgres => {
                let db = TestDb::migrated();
                env.set("PGPASSWORD", &db.password);
                all.extend(["--store".to_string(), db.url.clone()]);
                Some(db)
            }
        };
        let o = match &db {
            None => env.run(&["serve", "init", "--data-dir", data_dir.to_str().unwrap()]),
            Some(db) => env.run(&["serve", "init", "--store", &db.url]),
        };
        assert_success(&o, &["serve", "init"]);
        all.extend(extra.iter().map(|s| s.to_string()));
        let admin = stdout(&o).trim_end_matches('\n').to_string();
        assert!(
            admin.starts_with("tok_") && !admin.contains('\n'),
            "{admin:?}"
        );
        let mut s = Server {
            env,
            sidecar: std::sync::OnceLock::new(),
            db,
            data_dir,
            url: String::new(),
            admin,
            extra: all,
            child: None,
            reader: None,
            log: Arc::new(Mutex::new(String::new())),
        };
        s.spawn();
        s
    }

    /// A node on a shared PostgreSQL store (`tok serve --store`), whose
    /// admin token `tok serve init --store` made; the password from
    /// PGPASSWORD. `local()` does not apply: read the database instead.
    pub fn start_on_store(url: &str, password: &str, admin: &str, extra: &[&str]) -> Server {
        let mut env = Env::new();
        env.set("PGPASSWORD", password);
        let data_dir = env.home().join("unused-sqlite-store");
        let mut all = vec!["--store".to_string(), url.to_string()];
        all.extend(extra.iter().map(|s| s.to_string()));
        let mut s = Server {
            env,
            sidecar: std::sync::OnceLock::new(),
            db: None,
            data_dir,
            url: String::new(),
            admin: admin.to_string(),
            extra: all,
            child: None,
            reader: None,
            log: Arc::new(Mutex::new(String::new())),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = self.env.std_cmd();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start tok serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log = Arc::clone(&self.log);
        self.reader = Some(std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening") {
                    if let Some(url) = line.split_whitespace().find_map(|w| w.strip_prefix("url="))
                    {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(url.to_string());
                        }
                    }
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        }));
        self.child = Some(child);
        match rx.recv_timeout(START_GUARD) {
            Ok(url) => self.url = url,
            Err(_) => {
                let status = self.child.as_mut().unwrap().try_wait();
                panic!(
                    "tok serve did not start ({status:?}); its log:\n{}",
                    self.logs()
                );
            }
        }
    }

    /// The URL of the proxy listener (`--proxy-listen 127.0.0.1:0`), from its log line.
    pub fn proxy_url(&self) -> String {
        self.logged_url("proxy listening")
    }

    /// The URL of the forward-auth listener (`--auth-listen 127.0.0.1:0`).
    pub fn auth_url(&self) -> String {
        self.logged_url("forward auth listening")
    }

    /// The `url=` of the log line that says `message`, once there is one.
    fn logged_url(&self, message: &str) -> String {
        self.wait_for_log(message);
        self.logs()
            .lines()
            .filter(|l| l.contains(message))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("url=")))
            .unwrap_or_else(|| panic!("the server logs a url with {message:?}"))
            .to_string()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// Waits until the log holds `needle` (or the server is gone).
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = std::time::Instant::now() + START_GUARD;
        while !self.logs().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "the server never logged {needle:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` without waiting for the server to exit.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("the server is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the server");
    }

    /// An Env whose tok uses the tok driver against this server, as admin.
    pub fn client(&self) -> Env {
        self.client_with(&self.admin)
    }

    /// An Env whose tok uses this server with `token` as its admin credential.
    pub fn client_with(&self, token: &str) -> Env {
        let mut env = Env::new();
        env.set("TOK_URL", &self.url);
        env.set("TOK_ADMIN_TOKEN", token);
        env
    }

    /// An Env whose tok reads the server's store directly (local driver). On
    /// PostgreSQL, which the local driver does not read, it asks a second
    /// node on the same database (started on first use), so that what it
    /// reads is what the store holds, whether this server runs or not.
    pub fn local(&self) -> Env {
        if let Some(db) = &self.db {
            let other = self.sidecar.get_or_init(|| {
                Box::new(Server::start_on_store(
                    &db.url,
                    &db.password,
                    &self.admin,
                    &[],
                ))
            });
            return other.client_with(&self.admin);
        }
        let mut env = Env::new();
        env.set("TOK_DRIVER", "local");
        env.set("TOK_DATA_DIR", self.data_dir.to_str().unwrap());
        env
    }

    /// An Env whose tok changes the store from outside this server in a way
    /// the server must enforce at once: on SQLite another process (the local
    /// driver); on PostgreSQL this node's own admin API, since a change made
    /// on another node holds there within the propagation bound instead
    /// (tests/it/nodes.rs, docs/scale-out.md).
    pub fn at_once(&self) -> Env {
        match self.db {
            Some(_) => self.client(),
            None => self.local(),
        }
    }

    /// Everything the server wrote on stderr so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` and waits for the server to exit.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> ExitStatus {
        self.signal(signal);
        self.stop_with_wait()
    }

    /// Waits for a server that was told to stop to exit.
    pub fn stop_with_wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let status = child.wait().expect("wait for the server");
        // The log reader ends when the process's stderr closes.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }

    /// SIGTERM, then wait: a graceful stop.
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// Starts the server again on the same store (on a new port).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "stop: {status:?}\n{}", self.logs());
        }
        self.spawn();
    }

    /// A blocking HTTP client for raw API calls (no proxy from the test's env).
    pub fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .expect("http client")
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
