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
    let steps: Vec<(&str, &str)> = match wait_for {
        Some(w) => vec![(w, keys)],
        None => vec![("", keys)],
    };
    shell_on_tty(env, &tok_line(args), &steps)
}

/// `tok ARGS` quoted for `sh`.
fn tok_line(args: &[&str]) -> String {
    std::iter::once(env!("CARGO_BIN_EXE_tok"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the shell command `line` on a pty; for each step, once the screen
/// shows its text (the whole screen so far), types its keys.
fn shell_on_tty(env: &Env, line: &str, steps: &[(&str, &str)]) -> (i32, String) {
    let mut script = std::process::Command::new("script");
    script.env_clear();
    for (k, v) in env.std_cmd().get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    let mut child = script
        .args(["-qec", line, "/dev/null"])
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
    for (prompt, keys) in steps {
        // Type only once the prompt is up, as a person does.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !String::from_utf8_lossy(&screen.lock().unwrap()).contains(prompt) {
            assert!(
                std::time::Instant::now() < deadline,
                "no prompt {prompt:?} on the screen: {}",
                String::from_utf8_lossy(&screen.lock().unwrap())
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        stdin.write_all(keys.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
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
    // After tok, the shell reads the next line typed: what tok left unread
    // would be the shell's next command.
    let line = format!(
        "{}; echo \"rc=$?\"; IFS= read -r next; echo \"shell read [$next]\"",
        tok_line(&["revoke", &id])
    );
    let (code, screen) = shell_on_tty(&env, &line, &[("[y/N]", "n\r"), ("rc=", "ls\r")]);
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains(&format!("Revoke {id} (svc)? [y/N]")),
        "{screen}"
    );
    assert!(screen.contains("cancelled"), "{screen}");
    assert!(
        screen.contains(&format!("rc={}", exit::CANCELLED)),
        "{screen}"
    );
    assert!(screen.contains("shell read [ls]"), "{screen}");
    assert_eq!(env.inspect_json(&id)["state"], "active");

    // A word that is not an answer asks again; `yes` is read whole.
    let (code, screen) = shell_on_tty(
        &env,
        &line,
        &[
            ("[y/N]", "maybe\r"),
            ("yes or no", "yes\r"),
            ("rc=", "ls\r"),
        ],
    );
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains(&format!("revoked {id}")), "{screen}");
    assert!(screen.contains("rc=0"), "{screen}");
    assert!(screen.contains("shell read [ls]"), "{screen}");
    assert_eq!(env.inspect_json(&id)["state"], "revoked");
}

#[test]
fn bulk_revoke_on_a_terminal_says_how_many_and_sums_up() {
    let env = Env::new();
    let ids: Vec<String> = (0..7)
        .map(|i| {
            env.create_json(&["--ttl", "1h", "--name", &format!("bulk-{i}")])
                .0
        })
        .collect();
    let (code, screen) = on_tty(&env, &["revoke", "--name", "bulk-*"], Some("[y/N]"), "y\r");
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("Revoke 7 tokens (5 shown above)? [y/N]"),
        "{screen}"
    );
    assert!(screen.contains("... and 2 more"), "{screen}");
    assert!(
        screen.contains("done: 7 revoked, 0 already revoked, 0 failed"),
        "{screen}"
    );
    for id in &ids {
        assert_eq!(env.inspect_json(id)["state"], "revoked");
    }
}

#[test]
fn a_terminal_gets_a_table_with_relative_times() {
    let env = Env::new();
    env.create(&["--ttl", "2h", "--name", "web"]);
    let (code, screen) = on_tty(&env, &["list"], None, "");
    assert_eq!(code, 0, "{screen}");
    // Borderless, as kubectl and gh print them.
    assert!(screen.starts_with("ID  "), "a table: {screen}");
    assert!(!screen.contains('│') && !screen.contains('─'), "{screen}");
    assert!(screen.contains("in 2h"), "{screen}");
    assert!(
        !screen.contains("\u{1b}["),
        "NO_COLOR is set, so no colour: {screen}"
    );
}

#[test]
fn auth_token_is_not_shown_on_a_terminal_without_yes() {
    let server = crate::server::Server::start();
    let env = server.client();
    let (code, screen) = on_tty(&env, &["auth", "token"], None, "");
    assert_eq!(code, exit::USAGE, "{screen}");
    assert!(!screen.contains(&server.admin), "{screen}");
    assert!(screen.contains("--yes"), "{screen}");
    let (code, screen) = on_tty(&env, &["auth", "token", "--yes"], None, "");
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains(&server.admin), "{screen}");
}
