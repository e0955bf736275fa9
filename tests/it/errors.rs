//! Every bad input gets a clear message, a hint where one helps, and its
//! documented exit code; never a panic.

use crate::common::*;

#[test]
fn bad_ttls_are_usage_errors_that_say_what_to_write() {
    let env = Env::new();
    assert_fails(
        &env.run(&["create", "--ttl", "15"]),
        exit::USAGE,
        &["no unit", "15m"],
    );
    assert_fails(
        &env.run(&["create", "--ttl", "15y"]),
        exit::USAGE,
        &["unknown unit `y`"],
    );
    assert_fails(
        &env.run(&["create", "--ttl", "0s"]),
        exit::USAGE,
        &["positive"],
    );
    assert_fails(
        &env.run(&["list", "--expiring-within", "5y"]),
        exit::USAGE,
        &["unknown unit"],
    );
    assert_eq!(
        env.list_json(&["--state", "all"]).len(),
        0,
        "nothing was created"
    );
}

#[test]
fn expires_at_must_be_rfc3339_and_in_the_future() {
    let env = Env::new();
    assert_fails(
        &env.run(&["create", "--expires-at", "2001-01-01T00:00:00Z"]),
        exit::USAGE,
        &["in the past", "hint:"],
    );
    assert_fails(
        &env.run(&["create", "--expires-at", "tomorrow"]),
        exit::USAGE,
        &["RFC 3339", "2030-01-01T00:00:00Z"],
    );
}

#[test]
fn unknown_id_is_not_found() {
    let env = Env::new();
    env.create(&["--ttl", "15m"]);
    let o = env.run(&["inspect", "tk_nosuchtoken"]);
    assert_fails(
        &o,
        exit::NOT_FOUND,
        &[
            "no token matches `tk_nosuchtoken`",
            "hint: run `tok list --state all`",
        ],
    );
    assert_fails(
        &env.run(&["revoke", "tk_nosuchtoken", "--yes"]),
        exit::NOT_FOUND,
        &["tk_nosuchtoken"],
    );
    assert_fails(
        &env.run(&["rotate", "tk_nosuchtoken"]),
        exit::NOT_FOUND,
        &["tk_nosuchtoken"],
    );
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates() {
    let env = Env::new();
    let (a, _) = env.create_json(&["--ttl", "15m", "--name", "first"]);
    let (b, _) = env.create_json(&["--ttl", "15m", "--name", "second"]);
    let o = env.run(&["inspect", "tk_"]);
    assert_fails(
        &o,
        exit::USAGE,
        &[
            "matches 2 tokens",
            &a,
            &b,
            "(first)",
            "type more characters",
        ],
    );
}

#[test]
fn an_ambiguous_prefix_gives_the_true_count_and_shows_ten() {
    let env = Env::new();
    for i in 0..13 {
        env.create(&["--ttl", "15m", "--name", &format!("t{i}")]);
    }
    let o = env.run(&["inspect", "tk_"]);
    assert_fails(&o, exit::USAGE, &["matches 13 tokens", "(first 10 shown)"]);
    // The prefix twice (the command and the cause), then ten ids.
    assert_eq!(stderr(&o).matches("tk_").count(), 2 + 10, "{}", stderr(&o));
}

#[test]
fn a_mistyped_secret_is_caught_offline() {
    let env = Env::new();
    let secret = env.create(&["--ttl", "15m"]);
    let mut chars: Vec<char> = secret.chars().collect();
    chars[12] = if chars[12] == 'x' { 'y' } else { 'x' };
    let typo: String = chars.into_iter().collect();
    let o = env.run_stdin(&["inspect", "-"], &typo);
    assert_fails(&o, exit::USAGE, &["checksum does not match"]);
    assert!(
        !stderr(&o).contains(&typo),
        "the error must not echo the secret"
    );

    let o = env.run_stdin(&["inspect", "-"], &secret[..secret.len() - 3]);
    assert_fails(&o, exit::USAGE, &["truncated"]);

    let o = env.run_stdin(&["revoke", "-", "--yes"], &typo);
    assert_fails(&o, exit::USAGE, &["checksum"]);
}

#[test]
fn an_unknown_secret_is_not_found_without_echoing_it() {
    let env = Env::new();
    let other = Env::new();
    let secret = other.create(&["--ttl", "15m"]);
    env.create(&["--ttl", "15m"]);
    let o = env.run_stdin(&["inspect", "-"], &secret);
    assert_fails(&o, exit::NOT_FOUND, &["no token has that secret"]);
    assert!(!stderr(&o).contains(&secret));
}

#[test]
fn unknown_output_format_and_misplaced_formats() {
    let env = Env::new();
    assert_fails(
        &env.run(&["list", "-o", "yaml"]),
        exit::USAGE,
        &["invalid value 'yaml'", "json"],
    );
    assert_fails(
        &env.run(&["list", "-o", "env"]),
        exit::USAGE,
        &["not a list"],
    );
    assert_fails(
        &env.run(&["create", "--ttl", "1m", "-o", "tsv"]),
        exit::USAGE,
        &["-o tsv"],
    );
}

#[test]
fn stdin_dash_reads_stdin_and_empty_input_is_an_error() {
    let env = Env::new();
    assert_fails(
        &env.run_stdin(&["inspect", "-"], "  \n"),
        exit::USAGE,
        &["empty"],
    );
}

#[test]
fn a_corrupt_store_is_reported_with_a_way_out() {
    let env = Env::new();
    std::fs::create_dir_all(env.data_dir()).unwrap();
    std::fs::write(env.data_dir().join("tok.db"), vec![0x42u8; 8192]).unwrap();
    let o = env.run(&["list"]);
    assert_fails(
        &o,
        exit::FAILURE,
        &["not a tok database or is damaged", "hint: move"],
    );
    // And nothing was overwritten.
    assert_eq!(
        std::fs::read(env.data_dir().join("tok.db")).unwrap(),
        vec![0x42u8; 8192]
    );
}

#[test]
fn an_unusable_data_dir_is_reported() {
    let mut env = Env::new();
    let file = env.home().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    env.set("TOK_DATA_DIR", file.to_str().unwrap());
    let o = env.run(&["create", "--ttl", "1m"]);
    assert_fails(
        &o,
        exit::FAILURE,
        &["could not open the token store", "TOK_DATA_DIR"],
    );
    assert_eq!(
        stdout(&o),
        "",
        "no secret is printed when nothing was stored"
    );
}

#[test]
fn an_unknown_profile_is_not_found() {
    let env = Env::new();
    assert_fails(
        &env.run(&["--profile", "nope", "list"]),
        exit::NOT_FOUND,
        &["no profile named `nope`", "tok profile add"],
    );
}

#[test]
fn a_broken_config_file_is_a_usage_error() {
    let env = Env::new();
    std::fs::create_dir_all(env.config_dir()).unwrap();
    std::fs::write(
        env.config_dir().join("config.toml"),
        "[profile.x]\ndrvier = 'tok'\n",
    )
    .unwrap();
    assert_fails(
        &env.run(&["list"]),
        exit::USAGE,
        &["not a valid tok config", "drvier"],
    );
}

#[test]
fn labels_and_limits_are_checked() {
    let env = Env::new();
    assert_fails(
        &env.run(&["create", "--label", "novalue"]),
        exit::USAGE,
        &["KEY=VALUE"],
    );
    assert_fails(
        &env.run(&["create", "--label", "a=1", "--label", "a=2"]),
        exit::USAGE,
        &["given twice"],
    );
    let long = "n".repeat(300);
    assert_fails(
        &env.run(&["create", "--name", &long]),
        exit::USAGE,
        &["longer than 128"],
    );
    assert_fails(
        &env.run(&["create", "--uses", "0"]),
        exit::USAGE,
        &["--uses"],
    );
    assert_fails(
        &env.run(&["create", "--uses", "2", "--single-use"]),
        exit::USAGE,
        &["cannot be used with"],
    );
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_exits_quietly() {
    use std::os::unix::net::UnixStream;
    let env = Env::new();
    for i in 0..3 {
        env.create(&["--ttl", "1h", "--name", &format!("t{i}")]);
    }
    let (id, _) = env.create_json(&["--ttl", "1h"]);
    let dir = env.data_dir();
    env.ok(&[
        "profile",
        "add",
        "here",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    for args in [
        vec!["list", "-o", "jsonl"],
        vec!["list", "-o", "json"],
        vec!["list", "-o", "tsv"],
        vec!["list"],
        vec!["list", "-o", "table"],
        vec!["inspect", &id],
        vec!["inspect", &id, "-o", "json"],
        vec!["audit"],
        vec!["audit", "-o", "jsonl"],
        vec!["drivers"],
        vec!["profile", "list"],
        vec!["auth", "status", "-o", "json"],
        vec!["completions", "bash"],
    ] {
        // The reader is gone before tok writes a byte (as with `| head -0`
        // after it exited), so every write fails with EPIPE, whatever the timing.
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(ours);
        let o = env
            .std_cmd()
            .args(&args)
            .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                theirs,
            )))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            (code(&o), stderr(&o).as_str()),
            (0, ""),
            "tok {args:?}: a closed stdout is not an error worth a word"
        );
    }
}

#[test]
fn audit_refuses_a_secret_as_its_token() {
    let env = Env::new();
    let secret = env.create(&["--ttl", "1h"]);
    let o = env.run(&["audit", "--token", &secret]);
    assert_fails(&o, exit::USAGE, &["given on the command line", "inspect -"]);
    let body = secret.trim_start_matches("tok_");
    assert!(!stderr(&o).contains(&body[6..]), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
}

/// A Vault token: a secret, but not one the local driver knows.
const FOREIGN: &str = "hvs.CAESIForeignSecretThatMustNeverBeEchoed0123";

#[test]
fn a_secret_of_another_gateway_is_never_echoed_nor_looked_up_as_an_id() {
    let env = Env::new();
    let (id, _) = env.create_json(&["--ttl", "1h"]);
    let hidden = &FOREIGN[8..];

    // Piped to revoke with a real id: that one goes, the other is a failure
    // shown by its fingerprint only.
    let o = env.run_stdin(&["revoke", "-", "--yes"], &format!("{FOREIGN}\n{id}\n"));
    assert_fails(
        &o,
        exit::PARTIAL,
        &[
            "hvs.CAES…",
            "neither a token id of the local driver",
            "1 of 2 failed",
        ],
    );
    assert!(!stderr(&o).contains(hidden), "{}", stderr(&o));
    assert_eq!(env.inspect_json(&id)["state"], "revoked");

    // Alone, on stdin or the command line: not found, and still masked.
    for o in [
        env.run_stdin(&["revoke", "-", "--yes"], FOREIGN),
        env.run(&["revoke", FOREIGN, "--yes"]),
        env.run(&["audit", "--token", FOREIGN]),
    ] {
        assert_fails(&o, exit::NOT_FOUND, &["hvs.CAES…", "neither a token id"]);
        assert!(!stderr(&o).contains(hidden), "{}", stderr(&o));
        assert!(!stdout(&o).contains(hidden), "{}", stdout(&o));
    }
}

#[test]
fn a_url_with_a_password_is_refused_and_never_printed() {
    let env = Env::new();
    let config = env.config_dir().join("config.toml");
    let o = env.run(&[
        "profile",
        "add",
        "prod",
        "--url",
        "https://admin:pa55word@gw.example",
        "--insecure",
    ]);
    assert_fails(&o, exit::USAGE, &["--url", "user name or password"]);
    assert!(!stderr(&o).contains("pa55word"), "{}", stderr(&o));
    assert!(
        !std::fs::read_to_string(&config)
            .unwrap_or_default()
            .contains("pa55word"),
        "the config holds no secret"
    );

    // Stored as tok will use it.
    env.ok(&["profile", "add", "prod", "--url", " https://gw.example/ "]);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("url = \"https://gw.example\""), "{text}");

    // Typed for one run: refused before any warning could print it.
    let o = env.run(&[
        "--url",
        "https://admin:pa55word@127.0.0.1:9",
        "--insecure",
        "list",
    ]);
    assert_fails(&o, exit::USAGE, &["user name or password"]);
    assert!(!stderr(&o).contains("pa55word"), "{}", stderr(&o));
}

#[test]
fn a_secret_that_cannot_be_written_leaves_no_live_token() {
    let env = Env::new();
    // A format that cannot carry a secret is refused before anything is made.
    assert_fails(
        &env.run(&["create", "--ttl", "1m", "-o", "tsv"]),
        exit::USAGE,
        &["-o tsv"],
    );
    let (id, _) = env.create_json(&["--ttl", "1h", "--name", "old"]);
    assert_fails(
        &env.run(&["-o", "tsv", "rotate", &id]),
        exit::USAGE,
        &["-o tsv"],
    );
    assert_eq!(
        env.inspect_json(&id)["state"],
        "active",
        "the refused rotate changed nothing"
    );
    assert_eq!(env.list_json(&["--state", "all"]).len(), 1);

    // stdout that fails (a full disk): the new token is revoked, and tok says so.
    let o = env
        .std_cmd()
        .args(["create", "--ttl", "1h", "--name", "lost"])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_fails(
        &o,
        exit::FAILURE,
        &["could not be written", "so it was revoked"],
    );
    let lost: Vec<_> = env
        .list_json(&["--state", "all", "--name", "lost"])
        .into_iter()
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0]["state"], "revoked");
    assert_eq!(lost[0]["revoke_reason"], "its secret could not be written");
}
