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
        &["only for create and rotate"],
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

#[test]
fn a_closed_stdout_exits_quietly() {
    let env = Env::new();
    for i in 0..3 {
        env.create(&["--ttl", "1h", "--name", &format!("t{i}")]);
    }
    let mut child = env
        .std_cmd()
        .args(["list", "-o", "jsonl"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader went away, as with `| head -0`
    let o = child.wait_with_output().unwrap();
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
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
