//! The audit trail of admin actions on the embedded store, and `tok audit`.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[test]
fn admin_actions_are_recorded_with_who_did_them() {
    let mut env = Env::new();
    env.set("USER", "alice");
    let (id, _) = env.create_json(&["--ttl", "1h", "--name", "a"]);
    env.ok(&["revoke", &id, "--yes", "--reason", "leaked"]);
    env.ok(&["revoke", &id, "--yes"]); // idempotent: no second entry
    let (id2, _) = env.create_json(&["--ttl", "1h"]);
    env.ok(&["rotate", &id2, "--grace", "1m"]);

    let entries: Vec<Value> = serde_json::from_str(&env.ok(&["audit", "-o", "json"])).unwrap();
    let events: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["token_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events[..4],
        [
            ("create", id.as_str()),
            ("revoke", id.as_str()),
            ("create", id2.as_str()),
            ("rotate", id2.as_str())
        ]
    );
    assert!(entries.iter().all(|e| e["actor"] == "local:alice"));
    assert_eq!(entries[1]["reason"], "leaked");
    assert!(entries[3]["reason"]
        .as_str()
        .unwrap()
        .contains("rotated to tk_"));

    let only: Vec<Value> =
        serde_json::from_str(&env.ok(&["audit", "--token", &id, "-o", "json"])).unwrap();
    assert_eq!(only.len(), 2);
    let last: Vec<Value> =
        serde_json::from_str(&env.ok(&["audit", "--limit", "1", "-o", "json"])).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["seq"], entries.last().unwrap()["seq"]);
    let future: Vec<Value> =
        serde_json::from_str(&env.ok(&["audit", "--since", "2999-01-01T00:00:00Z", "-o", "json"]))
            .unwrap();
    assert!(future.is_empty());
    let tsv = env.ok(&["audit", "-o", "tsv"]);
    assert!(tsv.starts_with("seq\tat\tevent\ttoken_id"));
}

#[test]
fn follow_sees_a_new_entry() {
    let env = Env::new();
    env.create(&["--ttl", "1h", "--name", "before"]);
    let mut child = env
        .std_cmd()
        .args(["audit", "--follow", "-o", "jsonl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let _guard = Kill(child);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let first: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(first["event"], "create");

    let (id, _) = env.create_json(&["--ttl", "1h", "--name", "after"]);
    line.clear();
    reader.read_line(&mut line).unwrap();
    let next: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(next["token_id"], id.as_str());
}

#[test]
fn follow_refuses_json_arrays() {
    let env = Env::new();
    assert_fails(
        &env.run(&["audit", "--follow", "-o", "json"]),
        exit::USAGE,
        &["-o jsonl"],
    );
}
