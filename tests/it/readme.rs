//! The README as a test: every shell block marked `<!-- readme-test: runs -->`
//! runs with bash, top to bottom, in one clean HOME, against a real
//! `tok serve --dev` (its two `export` lines set as the README says to paste
//! them), with the built `tok` first on PATH. A block that fails, or a marker
//! without a block, fails the test with the block and its output.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

const MARKER: &str = "<!-- readme-test: runs -->";

/// The marked blocks, each with its line number, indentation removed.
fn marked_blocks(readme: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != MARKER {
            continue;
        }
        let fence = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
        assert_eq!(
            fence,
            "```sh",
            "README line {}: the marker must precede a ```sh block",
            i + 1
        );
        let indent = lines[i + 1].len() - lines[i + 1].trim_start().len();
        let body: Vec<&str> = lines[i + 2..]
            .iter()
            .take_while(|l| l.trim() != "```")
            .map(|l| l.get(indent..).unwrap_or("").trim_end())
            .collect();
        blocks.push((i + 3, body.join("\n")));
    }
    blocks
}

/// `tok serve --dev` on a free port; stopped with SIGTERM (which deletes its
/// temporary store) when dropped.
struct DevServer {
    child: std::process::Child,
    exports: Vec<(String, String)>,
}

impl DevServer {
    fn start(env: &Env) -> DevServer {
        let mut child = env
            .std_cmd()
            .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tok serve --dev");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut exports = Vec::new();
        while exports.len() < 2 {
            let line = lines
                .next()
                .expect("tok serve --dev prints two export lines")
                .unwrap();
            let (k, v) = line
                .strip_prefix("export ")
                .and_then(|kv| kv.split_once('='))
                .unwrap_or_else(|| panic!("not an export line: {line}"));
            exports.push((k.to_string(), v.to_string()));
        }
        DevServer { child, exports }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

#[test]
fn examples_run_top_to_bottom() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = marked_blocks(&readme);
    assert!(
        blocks.len() >= 5,
        "the README's runnable examples: {}",
        blocks.len()
    );
    let env = Env::new();
    let server = DevServer::start(&env);
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_tok"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (line, block) in &blocks {
        let o = std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", block])
            .env_clear()
            .envs(
                env.std_cmd()
                    .get_envs()
                    .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
            )
            .envs(server.exports.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PATH", &path)
            .env("RUN_ID", "42")
            .current_dir(env.home())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "README block at line {line} failed ({:?}):\n{block}\n--- stdout\n{}--- stderr\n{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
    }
    // What the examples did is on the server: the CI job's token, revoked.
    let mut client = Env::new();
    for (k, v) in &server.exports {
        client.set(k, v);
    }
    let tokens = client.list_json(&["--state", "all"]);
    let ci = tokens
        .iter()
        .find(|t| t["name"] == "deploy-42")
        .expect("the CI example's token is on the server");
    assert_eq!(ci["state"], "revoked");
    assert_eq!(ci["revoke_reason"], "job done");
}
