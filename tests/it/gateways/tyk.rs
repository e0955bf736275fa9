//! The tyk driver against the Tyk Gateway 5.14 double (hash_keys on,
//! hash_key_function sha256).

use super::{create, env_for, inspect_secret, list_all, secs_until};
use crate::common::*;
use crate::doubles::tyk::{sha256_hex, Tyk};

const SECRET: &str = "352d20ee67be67f6340b4c0605b044b7";

fn setup(listing: bool) -> (Tyk, Env) {
    let gw = Tyk::start(SECRET, true, listing);
    let env = env_for("tyk", gw.url(), &[("TYK_SECRET", SECRET)]);
    (gw, env)
}

#[test]
fn tyk_lifecycle_create_list_inspect_rotate_revoke() {
    let (gw, env) = setup(true);
    let (key, err) = create(
        &env,
        &[
            "--ttl",
            "15m",
            "--name",
            "ci",
            "--scope",
            "orders-api",
            "--label",
            "team=payments",
        ],
    );
    assert!(key.starts_with("ey"), "Tyk made the key");
    assert!(err.contains("`Authorization` header"), "{err}");
    let hash = sha256_hex(&key);
    let held = gw.sessions();
    assert_eq!(
        held.keys().collect::<Vec<_>>(),
        vec![&hash],
        "Tyk stores the hash only"
    );
    let s = &held[&hash];
    assert_eq!(s["alias"], "ci");
    assert_eq!(s["meta_data"]["team"], "payments");
    assert!(s["access_rights"]["orders-api"].is_object());
    let left = s["expires"].as_i64().unwrap() - chrono::Utc::now().timestamp();
    assert!((880..=905).contains(&left), "expires in 15 minutes: {left}");

    // The listing holds hashes; tok shows them as ids, never a key.
    let list = list_all(&env, &[&key]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], hash.as_str());
    assert_eq!(list[0]["name"], "ci");
    assert_eq!(list[0]["scopes"], serde_json::json!(["orders-api"]));
    assert_eq!(list[0]["labels"]["team"], "payments");
    assert!((880..=905).contains(&secs_until(&list[0]["expires_at"])));

    assert_eq!(env.inspect_json(&hash)["id"], hash.as_str());
    assert_eq!(env.inspect_json(&hash[..10])["id"], hash.as_str());
    // By secret: Tyk looks the key up, tok works out its hash the way Tyk does.
    assert_eq!(inspect_secret(&env, &key)["id"], hash.as_str());

    let o = env.run(&["rotate", &hash, "--grace", "5m"]);
    assert_success(&o, &["rotate"]);
    let new_key = stdout(&o).trim_end().to_string();
    let new_hash = sha256_hex(&new_key);
    let held = gw.sessions();
    assert_eq!(held.len(), 2);
    assert_eq!(held[&new_hash]["alias"], "ci", "the session carries over");
    assert!(held[&new_hash]["access_rights"]["orders-api"].is_object());
    let old_left = held[&hash]["expires"].as_i64().unwrap() - chrono::Utc::now().timestamp();
    assert!(
        (280..=305).contains(&old_left),
        "old key cut to the grace: {old_left}"
    );

    let o = env.run(&["revoke", &hash, &new_hash, "--yes"]);
    assert_success(&o, &["revoke"]);
    assert!(gw.sessions().is_empty(), "Tyk holds nothing afterwards");
}

#[test]
fn tyk_policies_as_scopes_and_expired_keys() {
    let (gw, env) = setup(true);
    gw.add_policy("gold", &["billing-api"]);
    create(&env, &["--ttl", "1h", "--scope", "policy:gold"]);
    let list = list_all(&env, &[]);
    assert_eq!(
        list[0]["scopes"],
        serde_json::json!(["billing-api", "policy:gold"]),
        "the policy's APIs and the policy itself"
    );
    let hash = list[0]["id"].as_str().unwrap().to_string();
    gw.expire(&hash);
    let expired = env.list_json(&["--state", "expired"]);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["state"], "expired");
    assert!(env.list_json(&[]).is_empty(), "not active any more");
}

#[test]
fn tyk_refuses_a_key_for_every_api_before_any_request() {
    let (gw, env) = setup(true);
    let o = env.run(&["create", "--ttl", "15m"]);
    assert_fails(&o, exit::USAGE, &["master key", "--scope API_ID"]);
    let o = env.run(&[
        "create",
        "--ttl",
        "15m",
        "--scope",
        "a",
        "--description",
        "d",
    ]);
    assert_fails(&o, exit::UNSUPPORTED, &["description"]);
    assert!(gw.server.control.requests().is_empty());
}

#[test]
fn tyk_listing_disabled_still_inspects_by_id() {
    let (gw, env) = setup(false);
    let (key, _) = create(&env, &["--ttl", "15m", "--scope", "a"]);
    let o = env.run(&["list"]);
    assert_fails(
        &o,
        exit::FAILURE,
        &["does not list hashed keys", "enable_hashed_keys_listing"],
    );
    let hash = sha256_hex(&key);
    assert_eq!(env.inspect_json(&hash)["id"], hash.as_str());
    let o = env.run(&["inspect", "abc"]);
    assert_fails(&o, exit::NOT_FOUND, &["no token matches `abc`"]);
    drop(gw);
}

#[test]
fn tyk_without_hashed_keys_is_refused_and_rolled_back() {
    let gw = Tyk::start(SECRET, false, true);
    let env = env_for("tyk", gw.url(), &[("TYK_SECRET", SECRET)]);
    let o = env.run(&["create", "--ttl", "15m", "--scope", "a"]);
    assert_fails(
        &o,
        exit::UNSUPPORTED,
        &["does not hash keys", "deleted again", "hash_keys: true"],
    );
    assert!(stdout(&o).is_empty(), "no key handed out");
    assert!(gw.sessions().is_empty(), "the key made was removed");
}

/// A wrong secret, unknown ids and tok-shaped keys are the conformance
/// suite's; this is a key in Tyk's own shape that Tyk does not know.
#[test]
fn tyk_unknown_tyk_key_exits_3() {
    let (_gw, env) = setup(true);
    let o = env.run_stdin(
        &["inspect", "-"],
        "eyJvcmciOiIiLCJpZCI6Im5vcGUiLCJoIjoic2hhMjU2In0=",
    );
    assert_fails(&o, exit::NOT_FOUND, &["no token has that secret"]);
}

#[test]
fn tyk_renew_and_keys_stay_off_the_command_line() {
    let (gw, env) = setup(true);
    let (key, _) = create(&env, &["--ttl", "15m", "--scope", "a"]);
    let hash = sha256_hex(&key);
    let o = env.run(&["renew", &hash, "--increment", "3h"]);
    assert_success(&o, &["renew"]);
    let left = gw.sessions()[&hash]["expires"].as_i64().unwrap() - chrono::Utc::now().timestamp();
    assert!((10780..=10805).contains(&left), "{left}");

    let before = gw.server.control.requests().len();
    for cmd in ["inspect", "revoke"] {
        let o = env.run(&[cmd, &key]);
        assert_fails(&o, exit::USAGE, &["secret"]);
        assert!(!stderr(&o).contains(&key), "the key is not echoed");
    }
    assert_eq!(gw.server.control.requests().len(), before, "nothing sent");
}
