//! Behaviour on a terminal, driven through a pseudo-terminal made by `script`
//! (util-linux): the revoke prompt, and tables for people.

use crate::common::*;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// Runs `tok ARGS` on a pty; once the screen shows `wait_for` (if given),
/// types `keys`. Returns the exit code and what the terminal showed (stdout and
/// stderr together, as a person sees them).
fn on_tty(env: &Env, args: &[&str], wait_for: Option<&str>, keys: &str) -> (i32, String) {
    let line = std::iter::once(env!("CARGO_BIN_EXE_tok"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = std::process::Command::new("script");
    script.env_clear();
    for (k, v) in env.std_cmd().get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    let mut child = script
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("`script` from util-linux runs tok on a pty");
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut out = child.stdout.take().unwrap();
    let reader = {
        let screen = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    if let Some(prompt) = wait_for {
        // Type only once the prompt is up: keys typed earlier may be flushed
        // when the prompt puts the terminal into raw mode.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !String::from_utf8_lossy(&screen.lock().unwrap()).contains(prompt) {
            assert!(
                std::time::Instant::now() < deadline,
                "no prompt {prompt:?} on the screen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    stdin.write_all(keys.as_bytes()).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let text = String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    (status.code().unwrap_or(-1), text)
}

#[test]
fn revoke_asks_on_a_terminal_and_honours_the_answer() {
    let env = Env::new();
    let (id, _) = env.create_json(&["--ttl", "1h", "--name", "svc"]);
    let (code, screen) = on_tty(&env, &["revoke", &id], Some("[y/N]"), "n");
    assert_eq!(code, exit::USAGE, "{screen}");
    assert!(screen.contains(&format!("Revoke {id} (svc)?")), "{screen}");
    assert!(screen.contains("cancelled"), "{screen}");
    assert_eq!(env.inspect_json(&id)["state"], "active");

    let (code, screen) = on_tty(&env, &["revoke", &id], Some("[y/N]"), "y");
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains(&format!("revoked {id}")), "{screen}");
    assert_eq!(env.inspect_json(&id)["state"], "revoked");
}

#[test]
fn a_terminal_gets_a_table_with_relative_times() {
    let env = Env::new();
    env.create(&["--ttl", "2h", "--name", "web"]);
    let (code, screen) = on_tty(&env, &["list"], None, "");
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains('┌') || screen.contains('│'),
        "a table: {screen}"
    );
    assert!(
        screen.contains("in 1h") || screen.contains("in 2h"),
        "{screen}"
    );
    assert!(
        !screen.contains("\u{1b}["),
        "NO_COLOR is set, so no colour: {screen}"
    );
}
