//! Shared test harness: a hermetic environment per test and helpers to run tok.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// A temp HOME with its own XDG dirs; removed when dropped.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Extra environment variables for every command run in this Env.
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        Env {
            dir,
            vars: Vec::new(),
        }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }
    pub fn data_dir(&self) -> PathBuf {
        self.home().join("data").join("tok")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.home().join("config").join("tok")
    }

    pub fn set(&mut self, k: &str, v: &str) -> &mut Self {
        self.vars.retain(|(x, _)| x != k);
        self.vars.push((k.into(), v.into()));
        self
    }

    /// `tok` with a cleared environment pointing at this Env's dirs.
    pub fn cmd(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.std_cmd())
    }

    /// The same as `cmd`, as a plain `std::process::Command`.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tok"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("XDG_DATA_HOME", self.home().join("data"))
            .env("XDG_CONFIG_HOME", self.home().join("config"))
            .env("XDG_CACHE_HOME", self.home().join("cache"))
            .env("XDG_RUNTIME_DIR", self.home().join("run"))
            .env("COLUMNS", "120")
            .env("NO_COLOR", "1")
            .env("USER", "tester")
            .current_dir(self.home());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    /// Runs tok with `args` (and no stdin).
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run tok")
    }

    /// Runs tok with `args` and `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        self.cmd()
            .args(args)
            .write_stdin(input.to_string())
            .output()
            .expect("run tok")
    }

    /// Runs tok and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_success(&o, args);
        stdout(&o)
    }

    /// `tok create ARGS`, asserting success; returns the secret.
    pub fn create(&self, args: &[&str]) -> String {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        assert!(out.ends_with('\n'), "secret ends with one newline");
        let secret = out.trim_end_matches('\n').to_string();
        assert!(
            !secret.contains('\n'),
            "stdout holds the secret alone: {out:?}"
        );
        secret
    }

    /// `tok create ARGS -o json`; returns (id, secret).
    pub fn create_json(&self, args: &[&str]) -> (String, String) {
        let mut all = vec!["create", "-o", "json"];
        all.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&self.ok(&all)).expect("json");
        (
            v["id"].as_str().unwrap().to_string(),
            v["secret"].as_str().unwrap().to_string(),
        )
    }

    /// `tok list ARGS -o json` as parsed values.
    pub fn list_json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["list", "-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("list json")
    }

    /// `tok inspect ID -o json` as a parsed value.
    pub fn inspect_json(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["inspect", id, "-o", "json"])).expect("inspect json")
    }
}

/// `processes` tok processes at once, each running `tok create ARGS --name pP-I`
/// `per_process` times in a row; every create must succeed. Returns the secrets.
pub fn create_concurrently(
    env: &Env,
    processes: usize,
    per_process: usize,
    args: &[&str],
) -> Vec<String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..processes)
            .map(|p| {
                scope.spawn(move || {
                    (0..per_process)
                        .map(|i| {
                            let o = env
                                .std_cmd()
                                .arg("create")
                                .args(args)
                                .arg("--name")
                                .arg(format!("p{p}-{i}"))
                                .output()
                                .unwrap();
                            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                            String::from_utf8(o.stdout).unwrap().trim().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

pub fn assert_success(o: &Output, what: &[&str]) {
    assert!(
        o.status.success(),
        "tok {what:?} failed with {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Asserts exit `code` and that stderr contains each of `needles`.
pub fn assert_fails(o: &Output, expected: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(expected),
        "exit code; stdout: {}\nstderr: {err}",
        stdout(o)
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "tok panicked:\n{err}");
}

/// Exit codes, as documented.
pub mod exit {
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const AUTH: i32 = 4;
    pub const PARTIAL: i32 = 5;
    pub const UNSUPPORTED: i32 = 6;
    pub const CANCELLED: i32 = 7;
}

/// Every byte of every file under `dir`.
pub fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.extend(b);
            }
        }
    }
    out
}

pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
