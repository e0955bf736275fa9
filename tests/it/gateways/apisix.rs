//! The apisix driver against the APISIX 3.11 Admin API double.

use super::{create, env_for, inspect_secret, list_all};
use crate::common::*;
use crate::doubles::apisix::Apisix;

const ADMIN: &str = "edd1c9f034335f136f87ad84b625c8f1";

const VARS: [(&str, &str); 2] = [("APISIX_ADMIN_KEY", ADMIN), ("TOK_OWNER", "jack")];

fn setup() -> (Apisix, Env) {
    let gw = Apisix::start(ADMIN, &["jack", "kate"]);
    let env = env_for("apisix", gw.url(), &VARS);
    (gw, env)
}

#[test]
fn apisix_lifecycle_create_list_inspect_rotate_revoke() {
    let (gw, env) = setup();
    let (secret, err) = create(
        &env,
        &[
            "--no-expiry",
            "--description",
            "ci runner",
            "--label",
            "env=ci",
        ],
    );
    assert!(secret.starts_with("tok_"));
    assert!(
        err.contains("never expires") && err.contains("revoke it when done"),
        "{err}"
    );

    let held = gw.credentials();
    assert_eq!(held.len(), 1);
    let (key, value) = &held[0];
    assert!(
        key.starts_with("/apisix/consumers/jack/credentials/tok-"),
        "{key}"
    );
    assert_eq!(value["plugins"]["key-auth"]["key"], secret.as_str());
    assert_eq!(value["desc"], "ci runner");
    assert_eq!(value["labels"]["env"], "ci");
    let id = key
        .trim_start_matches("/apisix/consumers/")
        .replace("/credentials/", "/");

    let list = list_all(&env, &[&secret]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["description"], "ci runner");
    assert_eq!(list[0]["expires_at"], serde_json::Value::Null);
    assert_eq!(list[0]["state"], "active");

    assert_eq!(env.inspect_json(&id)["id"], id.as_str());
    assert_eq!(
        env.inspect_json("jack/tok")["id"],
        id.as_str(),
        "a prefix will do"
    );
    assert_eq!(inspect_secret(&env, &secret)["id"], id.as_str());

    let o = env.run(&["rotate", &id]);
    assert_success(&o, &["rotate"]);
    let new_secret = stdout(&o).trim_end().to_string();
    let held = gw.credentials();
    assert_eq!(held.len(), 1, "the old credential is gone");
    assert_eq!(held[0].1["plugins"]["key-auth"]["key"], new_secret.as_str());
    assert_eq!(held[0].1["desc"], "ci runner");
    let new_id = held[0]
        .0
        .trim_start_matches("/apisix/consumers/")
        .replace("/credentials/", "/");
    assert_ne!(new_id, id);

    let o = env.run(&["revoke", &new_id, "--yes"]);
    assert_success(&o, &["revoke"]);
    assert!(
        gw.credentials().is_empty(),
        "APISIX holds nothing afterwards"
    );
}

#[test]
fn apisix_refuses_names_and_bad_labels_before_any_request() {
    let (gw, env) = setup();
    let o = env.run(&["create", "--no-expiry", "--name", "x"]);
    assert_fails(&o, exit::UNSUPPORTED, &["no name field"]);
    let o = env.run(&["create", "--no-expiry", "--label", "note=two words"]);
    assert_fails(&o, exit::USAGE, &["without white space"]);
    let o = env.run(&["create", "--label", "tok-expires-at=never"]);
    assert_fails(&o, exit::USAGE, &["--ttl"]);
    assert!(
        gw.server.control.requests().is_empty(),
        "no request was sent"
    );
}

/// Seconds from now until the expiry label APISIX holds for `key`.
fn held_expiry(gw: &Apisix, key: &str) -> i64 {
    let held = gw.credentials();
    let (_, v) = held
        .iter()
        .find(|(_, v)| v["plugins"]["key-auth"]["key"] == key)
        .expect("APISIX holds the key");
    super::secs_until(&v["labels"]["tok-expires-at"])
}

#[test]
fn apisix_keys_live_as_long_as_their_ttl() {
    let (gw, env) = setup();
    // tok's default lifetime (1h), an explicit --ttl, and --expires-at all
    // become leases that APISIX ends by itself.
    let (hour, _) = create(&env, &[]);
    assert!((3590..=3600).contains(&held_expiry(&gw, &hour)));
    let (short, _) = create(&env, &["--ttl", "3s", "--label", "env=ci"]);
    let list = list_all(&env, &[&hour, &short]);
    assert_eq!(list.len(), 2);
    let listed = inspect_secret(&env, &short);
    assert!(super::secs_until(&listed["expires_at"]) <= 3);
    assert_eq!(listed["labels"], serde_json::json!({ "env": "ci" }));
    let put = gw
        .server
        .control
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PUT "))
        .count();
    assert_eq!(put, 2);
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(gw.credentials().len(), 1, "the 3s key's lease ended");
    let o = env.run_stdin(&["inspect", "-"], &short);
    assert_fails(&o, exit::NOT_FOUND, &["no token has that secret"]);
    assert_eq!(list_all(&env, &[]).len(), 1);

    // Renew and rotate --grace write a new lease.
    let id = inspect_secret(&env, &hour)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = env.run(&["renew", &id, "--increment", "2h", "-o", "json"]);
    assert_success(&o, &["renew"]);
    assert!((7190..=7200).contains(&held_expiry(&gw, &hour)));
    let o = env.run(&["rotate", &id, "--grace", "5m"]);
    assert_success(&o, &["rotate"]);
    let new_secret = stdout(&o).trim_end().to_string();
    assert!(
        (290..=300).contains(&held_expiry(&gw, &hour)),
        "the old key has 5m left"
    );
    // The old key's lifetime, counted from its creation, is now about 2h.
    assert!(
        (7190..=7215).contains(&held_expiry(&gw, &new_secret)),
        "same lifetime as the old"
    );
    let o = env.run(&["create", "--expires-at", "2031-01-01T00:00:00Z"]);
    assert_success(&o, &["create"]);
}

#[test]
fn apisix_consumers_without_keys_list_empty() {
    let (gw, env) = setup();
    let all = env_for("apisix", gw.url(), &[("APISIX_ADMIN_KEY", ADMIN)]);
    // Nobody holds a key yet: APISIX answers 404 for every credentials list.
    assert!(list_all(&env, &[]).is_empty(), "jack has none");
    assert!(list_all(&all, &[]).is_empty(), "nor does anyone");
    let (secret, _) = create(&env, &["--no-expiry"]);
    // kate has none while jack has one.
    let list = list_all(&all, &[&secret]);
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(inspect_secret(&all, &secret)["id"], id.as_str());
    assert_eq!(
        all.inspect_json("jack/")["id"],
        id.as_str(),
        "a prefix will do"
    );
    let kate = env_for(
        "apisix",
        gw.url(),
        &[("APISIX_ADMIN_KEY", ADMIN), ("TOK_OWNER", "kate")],
    );
    assert!(list_all(&kate, &[]).is_empty());
    let o = all.run(&["revoke", "jack/tok", "--yes"]);
    assert_success(&o, &["revoke"]);
    assert!(gw.credentials().is_empty());
    assert!(
        list_all(&env, &[]).is_empty(),
        "after the last key is revoked"
    );
    assert!(list_all(&all, &[]).is_empty());
    let o = env.run(&["list", "--owner", "nobody"]);
    assert_fails(&o, exit::NOT_FOUND, &["no consumer `nobody`"]);
}

#[test]
fn apisix_lists_across_pages_and_finds_secrets_by_walking() {
    let (gw, env) = setup();
    gw.seed("jack", 620);
    gw.seed("kate", 12);
    let all = env_for("apisix", gw.url(), &[("APISIX_ADMIN_KEY", ADMIN)]);
    let (secret, _) = create(&env, &["--no-expiry"]);
    let list = list_all(&all, &[&secret]);
    assert_eq!(list.len(), 633);
    let seen = gw.server.control.requests();
    let jack_pages = seen
        .iter()
        .filter(|r| *r == "GET /apisix/admin/consumers/jack/credentials")
        .count();
    assert_eq!(jack_pages, 2, "500 per page");
    let found = inspect_secret(&all, &secret);
    assert!(found["id"].as_str().unwrap().starts_with("jack/tok-"));
    assert_eq!(list_all(&env, &[]).len(), 621, "--owner narrows to jack");
}

#[test]
fn apisix_unknown_consumer_exits_3() {
    let (_gw, env) = setup();
    let o = env.run(&["create", "--no-expiry", "--owner", "nobody"]);
    assert_fails(&o, exit::NOT_FOUND, &["no consumer `nobody`"]);
}
