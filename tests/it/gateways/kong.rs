//! The kong driver against the Kong 3.9 Admin API double.

use super::{create, env_for, inspect_secret, list_all, secs_until};
use crate::common::*;
use crate::doubles::kong::Kong;

fn setup() -> (Kong, Env) {
    let gw = Kong::start(None, &["alice", "bob"]);
    let env = env_for("kong", gw.url(), &[("TOK_OWNER", "alice")]);
    (gw, env)
}

#[test]
fn kong_lifecycle_create_list_inspect_rotate_revoke() {
    let (gw, env) = setup();
    let (secret, err) = create(&env, &["--ttl", "15m", "--label", "env=ci"]);
    assert!(secret.starts_with("tok_"), "tok supplies its own key");
    assert!(err.contains("`apikey` header"), "{err}");

    let held = gw.creds();
    assert_eq!(held.len(), 1);
    let c = &held[0];
    assert_eq!(c.key, secret);
    assert_eq!(c.consumer, gw.consumer_id("alice"));
    assert_eq!(c.tags.as_deref(), Some(&["env=ci".to_string()][..]));
    let left = c.expires_at.unwrap() - chrono::Utc::now().timestamp();
    assert!((880..=905).contains(&left), "ttl of 15 minutes: {left}");
    let id = c.id.clone();

    // Kong reports the ttl left; tok turns it back into an expiry time.
    let list = list_all(&env, &[&secret]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["labels"]["env"], "ci");
    assert_eq!(list[0]["state"], "active");
    assert!((880..=905).contains(&secs_until(&list[0]["expires_at"])));

    assert_eq!(env.inspect_json(&id)["id"], id.as_str());
    assert_eq!(env.inspect_json(&id[..6])["id"], id.as_str());
    assert_eq!(inspect_secret(&env, &secret)["id"], id.as_str());
    let seen = gw.server.control.requests();
    assert!(
        seen.iter()
            .any(|r| r == &format!("GET /key-auths/{secret}")),
        "inspect by secret asks Kong by key"
    );

    // Rotation with grace: a new key with the same tags, the old one cut short.
    let o = env.run(&["rotate", &id, "--grace", "5m"]);
    assert_success(&o, &["rotate"]);
    let new_secret = stdout(&o).trim_end().to_string();
    let held = gw.creds();
    assert_eq!(held.len(), 2);
    let old = held.iter().find(|c| c.id == id).unwrap();
    let left = old.expires_at.unwrap() - chrono::Utc::now().timestamp();
    assert!(
        (280..=305).contains(&left),
        "old key ends within the grace: {left}"
    );
    let new = held.iter().find(|c| c.id != id).unwrap();
    assert_eq!(new.key, new_secret);
    assert_eq!(new.tags.as_deref(), Some(&["env=ci".to_string()][..]));
    let new_id = new.id.clone();

    let o = env.run(&["revoke", &id, &new_id, "--yes"]);
    assert_success(&o, &["revoke"]);
    assert!(gw.creds().is_empty(), "Kong holds nothing afterwards");
    assert!(list_all(&env, &[]).is_empty());
}

#[test]
fn kong_expired_credentials_vanish() {
    let (gw, env) = setup();
    create(&env, &["--ttl", "1h"]);
    let id = gw.creds()[0].id.clone();
    gw.expire(&id);
    let o = env.run(&["inspect", &id]);
    assert_fails(&o, exit::NOT_FOUND, &[&format!("no token matches `{id}`")]);
    assert!(list_all(&env, &[]).is_empty(), "Kong no longer returns it");
}

#[test]
fn kong_lists_across_pages_and_consumers() {
    let (gw, env) = setup();
    gw.seed("bob", 1500);
    gw.seed("alice", 20);
    let all = env_for("kong", gw.url(), &[]);
    let list = list_all(&all, &[]);
    assert_eq!(list.len(), 1520);
    let mut ids: Vec<&str> = list.iter().map(|t| t["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1520, "no credential twice");
    let pages = gw
        .server
        .control
        .requests()
        .iter()
        .filter(|r| *r == "GET /key-auths")
        .count();
    assert_eq!(pages, 2, "1000 per page");
    let created: Vec<&str> = list
        .iter()
        .map(|t| t["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(created, sorted, "oldest first");

    // --owner narrows the list to that consumer.
    assert_eq!(list_all(&env, &[]).len(), 20);
}

#[test]
fn kong_needs_an_owner_to_create_and_refuses_what_it_cannot_hold() {
    let (gw, _) = setup();
    let env = env_for("kong", gw.url(), &[]);
    let o = env.run(&["create", "--ttl", "15m"]);
    assert_fails(&o, exit::USAGE, &["belongs to a consumer", "--owner"]);
    let o = env.run(&[
        "create", "--ttl", "15m", "--name", "deploy", "--owner", "alice",
    ]);
    assert_fails(
        &o,
        exit::UNSUPPORTED,
        &["cannot give a token a name", "--label"],
    );
    let o = env.run(&[
        "create", "--ttl", "15m", "--scope", "read", "--owner", "alice",
    ]);
    assert_fails(&o, exit::UNSUPPORTED, &["ACL groups"]);
    let o = env.run(&[
        "create", "--ttl", "15m", "--label", "path=/v1", "--owner", "alice",
    ]);
    assert_fails(&o, exit::USAGE, &["cannot be a Kong tag"]);
    let o = env.run(&["create", "--ttl", "1500d", "--owner", "alice"]);
    assert_fails(&o, exit::USAGE, &["at most 100000000 seconds"]);
    assert!(gw.server.control.requests().is_empty(), "nothing sent");

    let o = env.run(&["create", "--ttl", "15m", "--owner", "carol"]);
    assert_fails(&o, exit::NOT_FOUND, &["no consumer `carol`"]);
}

#[test]
fn kong_renew_sets_a_new_ttl() {
    let (gw, env) = setup();
    create(&env, &["--ttl", "15m"]);
    let id = gw.creds()[0].id.clone();
    // Without --increment: the original lifetime again, from now.
    let o = env.run(&["renew", &id]);
    assert_success(&o, &["renew"]);
    let left = gw.creds()[0].expires_at.unwrap() - chrono::Utc::now().timestamp();
    assert!((880..=905).contains(&left), "{left}");
    let o = env.run(&["renew", &id, "--increment", "1d"]);
    assert_success(&o, &["renew"]);
    let left = gw.creds()[0].expires_at.unwrap() - chrono::Utc::now().timestamp();
    assert!((86380..=86405).contains(&left), "{left}");
}
