//! The token lifecycle on the embedded store: create, list, inspect, revoke, rotate.

use crate::common::*;
use serde_json::Value;

#[test]
fn create_prints_the_secret_alone_and_a_summary_on_stderr() {
    let env = Env::new();
    let o = env.run(&["create", "--ttl", "15m", "--scope", "orders:read"]);
    assert_success(&o, &["create"]);
    let out = stdout(&o);
    assert!(out.starts_with("tok_") && out.ends_with('\n'));
    assert_eq!(out.lines().count(), 1);
    let err = stderr(&o);
    assert!(err.contains("created tk_"), "{err}");
    assert!(
        err.contains("Z (in 14m") || err.contains("Z (in 15m"),
        "{err}"
    );
    assert!(err.contains("scopes orders:read"), "{err}");
}

#[test]
fn create_no_newline_env_and_json_forms() {
    let env = Env::new();
    let bare = env.ok(&["create", "--ttl", "10m", "--no-newline"]);
    assert!(bare.starts_with("tok_") && !bare.ends_with('\n'));

    let line = env.ok(&["create", "--ttl", "10m", "-o", "env"]);
    assert!(line.starts_with("TOK_TOKEN=tok_") && line.ends_with('\n'));
    assert_eq!(line.lines().count(), 1);

    let v: Value = serde_json::from_str(&env.ok(&[
        "create",
        "--ttl",
        "1h30m",
        "-o",
        "json",
        "--name",
        "ci",
        "--label",
        "team=pay",
        "--scope",
        "a",
        "--scope",
        "b",
        "--uses",
        "3",
        "--description",
        "for CI",
    ]))
    .unwrap();
    assert!(v["secret"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(v["name"], "ci");
    assert_eq!(v["labels"]["team"], "pay");
    assert_eq!(v["scopes"], serde_json::json!(["a", "b"]));
    assert_eq!(v["max_uses"], 3);
    assert_eq!(v["state"], "active");
    assert_eq!(v["description"], "for CI");
    let created = chrono::DateTime::parse_from_rfc3339(v["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    let lifetime = (expires - created).num_seconds();
    assert!((5399..=5400).contains(&lifetime), "{lifetime}");
}

#[test]
fn default_lifetime_is_one_hour_and_no_expiry_is_explicit() {
    let env = Env::new();
    let (id, _) = env.create_json(&[]);
    let t = env.inspect_json(&id);
    let c = chrono::DateTime::parse_from_rfc3339(t["created_at"].as_str().unwrap()).unwrap();
    let e = chrono::DateTime::parse_from_rfc3339(t["expires_at"].as_str().unwrap()).unwrap();
    assert!(((e - c).num_seconds() - 3600).abs() <= 1);

    let (id, _) = env.create_json(&["--no-expiry"]);
    assert_eq!(env.inspect_json(&id)["expires_at"], Value::Null);

    let o = env.run(&["create", "--no-expiry", "--ttl", "1h"]);
    assert_fails(&o, exit::USAGE, &["cannot be used with"]);
}

#[test]
fn github_actions_masks_the_secret_on_stderr() {
    let mut env = Env::new();
    env.set("GITHUB_ACTIONS", "true");
    let o = env.run(&["create", "--ttl", "10m"]);
    assert_success(&o, &["create"]);
    let secret = stdout(&o).trim().to_string();
    assert!(stderr(&o).contains(&format!("::add-mask::{secret}")));
    assert_eq!(
        stdout(&o).lines().count(),
        1,
        "stdout stays the secret alone"
    );
}

#[test]
fn a_profile_sets_the_default_ttl() {
    let env = Env::new();
    env.ok(&[
        "profile",
        "add",
        "short",
        "--default-ttl",
        "5m",
        "--default",
    ]);
    let (id, _) = env.create_json(&[]);
    let t = env.inspect_json(&id);
    let c = chrono::DateTime::parse_from_rfc3339(t["created_at"].as_str().unwrap()).unwrap();
    let e = chrono::DateTime::parse_from_rfc3339(t["expires_at"].as_str().unwrap()).unwrap();
    assert!(((e - c).num_seconds() - 300).abs() <= 1);
    let list = env.ok(&["profile", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("short") && l.contains(" * ")),
        "{list}"
    );
}

#[test]
fn an_empty_list_succeeds() {
    let env = Env::new();
    let o = env.run(&["list", "-o", "json"]);
    assert_success(&o, &["list"]);
    assert_eq!(stdout(&o).trim(), "[]");
    let o = env.run(&["list"]);
    assert_success(&o, &["list"]);
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("no tokens match"));
}

#[test]
fn list_filters() {
    let mut env = Env::new();
    env.create(&[
        "--ttl", "10m", "--name", "deploy-1", "--label", "env=ci", "--scope", "a",
    ]);
    env.create(&[
        "--ttl", "3h", "--name", "deploy-2", "--label", "env=prod", "--scope", "a", "--scope", "b",
    ]);
    env.set("USER", "alice");
    env.create(&["--ttl", "3h", "--name", "web", "--label", "env=ci"]);
    let names = |args: &[&str]| -> Vec<String> {
        env.list_json(args)
            .iter()
            .map(|t| t["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(names(&["--name", "deploy-*"]), ["deploy-1", "deploy-2"]);
    assert_eq!(names(&["--label", "env=ci"]), ["deploy-1", "web"]);
    assert_eq!(names(&["--label", "env=ci", "--name", "w*"]), ["web"]);
    assert_eq!(names(&["--scope", "b"]), ["deploy-2"]);
    assert_eq!(names(&["--scope", "a", "--scope", "b"]), ["deploy-2"]);
    assert_eq!(names(&["--expiring-within", "1h"]), ["deploy-1"]);
    assert_eq!(names(&["--created-by", "local:alice"]), ["web"]);
    assert_eq!(names(&["--limit", "2"]).len(), 2);
}

#[test]
fn inspect_by_id_prefix_and_secret_on_stdin() {
    let env = Env::new();
    let (id, secret) = env.create_json(&["--ttl", "15m", "--name", "x", "--uses", "2"]);
    let full = env.ok(&["inspect", &id]);
    for field in [
        "id",
        "name",
        "state",
        "fingerprint",
        "expires",
        "lifetime left",
        "uses",
        "last used",
    ] {
        assert!(full.contains(field), "{field} missing: {full}");
    }
    assert!(full.contains("0 of 2 (2 left)"), "{full}");
    assert!(!full.contains(&secret));

    let prefix = &id[..7];
    assert_eq!(env.inspect_json(prefix)["id"], id.as_str());
    let without_tk = &id[3..9];
    assert_eq!(env.inspect_json(without_tk)["id"], id.as_str());

    let o = env.run_stdin(&["inspect", "-", "-o", "json"], &format!("{secret}\n"));
    assert_success(&o, &["inspect", "-"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["id"], id.as_str());
    assert!(!stdout(&o).contains(&secret));
}

#[test]
fn inspect_refuses_a_secret_in_argv() {
    let env = Env::new();
    let secret = env.create(&["--ttl", "15m"]);
    let o = env.run(&["inspect", &secret]);
    assert_fails(&o, exit::USAGE, &["command line", "inspect -"]);
    assert!(!stderr(&o).contains(&secret), "the error echoes the secret");
}

#[test]
fn inspect_decodes_a_jwt_offline_and_says_it_is_unverified() {
    let env = Env::new();
    // {"alg":"HS256","typ":"JWT"} . {"sub":"ci","exp":1700000000} . signature
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjaSIsImV4cCI6MTcwMDAwMDAwMH0.c2ln";
    let o = env.run_stdin(&["inspect", "-"], jwt);
    assert_success(&o, &["inspect", "-"]);
    let out = stdout(&o);
    assert!(out.contains("NOT verified"), "{out}");
    assert!(out.contains("\"sub\": \"ci\""), "{out}");
    assert!(out.contains("2023-11-14T22:13:20Z"), "{out}");
    assert!(out.contains("state: expired"), "{out}");
    let o = env.run_stdin(&["inspect", "-", "-o", "json"], jwt);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["jwt"]["signature_verified"], false);
    assert_eq!(v["jwt"]["claims"]["sub"], "ci");
}

#[test]
fn revoke_needs_confirmation_off_a_tty_and_is_idempotent() {
    let env = Env::new();
    let (id, secret) = env.create_json(&["--ttl", "15m", "--name", "one"]);
    let o = env.run(&["revoke", &id]);
    assert_fails(&o, exit::USAGE, &["--yes"]);
    assert_eq!(
        env.inspect_json(&id)["state"],
        "active",
        "nothing was revoked"
    );

    let o = env.run(&["revoke", &id, "--yes", "--reason", "leaked"]);
    assert_success(&o, &["revoke"]);
    assert!(stderr(&o).contains(&format!("revoked {id} (one)")));
    assert_eq!(stdout(&o), "", "stdout is data only");
    let t = env.inspect_json(&id);
    assert_eq!(t["state"], "revoked");
    assert_eq!(t["revoke_reason"], "leaked");
    assert_eq!(t["revoked_by"], "local:tester");

    let o = env.run(&["revoke", &id, "--yes"]);
    assert_success(&o, &["revoke again"]);
    assert!(stderr(&o).contains("already revoked"), "{}", stderr(&o));

    // By secret on stdin.
    let (id2, s2) = env.create_json(&["--ttl", "15m"]);
    let o = env.run_stdin(&["revoke", "-", "--yes"], &format!("{s2}\n"));
    assert_success(&o, &["revoke -"]);
    assert_eq!(env.inspect_json(&id2)["state"], "revoked");
    let _ = secret;
}

#[test]
fn bulk_revoke_by_state_takes_the_tokens_in_that_state() {
    let env = Env::new();
    let (short, _) = env.create_json(&["--ttl", "1s", "--name", "short"]);
    let (live, _) = env.create_json(&["--ttl", "1h", "--name", "live"]);
    // Wait for the short one to expire (a wait, not a measurement).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while env.list_json(&["--state", "expired"]).is_empty() {
        assert!(std::time::Instant::now() < deadline, "never expired");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = env.run(&["revoke", "--state", "expired", "--dry-run", "-o", "json"]);
    assert_success(&o, &["revoke --state expired --dry-run"]);
    let would: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let would: Vec<&str> = would.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(would, [short.as_str()]);
    // With ids, a state is a filter too, and the two do not mix.
    assert_fails(
        &env.run(&["revoke", &live, "--state", "all", "--yes"]),
        exit::USAGE,
        &["not both"],
    );
    env.ok(&["revoke", "--state", "expired", "--yes"]);
    assert_eq!(env.inspect_json(&short)["state"], "revoked");
    assert_eq!(env.inspect_json(&live)["state"], "active");
}

#[test]
fn revoke_with_nothing_named_is_a_usage_error() {
    let env = Env::new();
    assert_fails(
        &env.run(&["revoke", "--yes"]),
        exit::USAGE,
        &["nothing to revoke", "hint:"],
    );
}

#[test]
fn the_store_holds_no_secret_and_is_private() {
    let env = Env::new();
    let secrets: Vec<String> = (0..5)
        .map(|i| env.create(&["--ttl", "15m", "--name", &format!("t{i}")]))
        .collect();
    // A revoke and a rotate write too.
    let (id, rotated_away) = env.create_json(&["--ttl", "15m"]);
    let new = env.ok(&["rotate", &id]).trim().to_string();
    let bytes = all_bytes_under(&env.data_dir());
    assert!(!bytes.is_empty());
    for s in secrets.iter().chain([&rotated_away, &new]) {
        assert!(
            !contains_bytes(&bytes, s.as_bytes()),
            "a secret is in the store"
        );
        // Not even the random part without the prefix.
        assert!(!contains_bytes(&bytes, &s.as_bytes()[4..30]));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&env.data_dir()), 0o700);
        assert_eq!(mode(&env.data_dir().join("tok.db")), 0o600);
    }
}

#[test]
fn eight_processes_creating_at_once_all_land() {
    let env = Env::new();
    env.ok(&["list"]); // the store exists before the race, as it would for a user
    let mut secrets = create_concurrently(&env, 8, 25, &["--ttl", "1h"]);
    assert_eq!(secrets.len(), 200);
    secrets.sort();
    secrets.dedup();
    assert_eq!(secrets.len(), 200, "all distinct");
    assert_eq!(env.list_json(&[]).len(), 200, "all landed");
}
