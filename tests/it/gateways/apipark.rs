//! The apipark driver against the APIPark v1.9.6 double.

use super::{create, env_for, inspect_secret, list_all, secs_until};
use crate::common::*;
use crate::doubles::apipark::Apipark;
use crate::doubles::Fault;

const KEY: &str = "sys-key-4c1d8e";
const APP: &str = "7a0c51e2-app";

const VARS: [(&str, &str); 2] = [("APIPARK_API_KEY", KEY), ("TOK_APP", APP)];

fn setup() -> (Apipark, Env) {
    let gw = Apipark::start(KEY, &[APP, "other-app"]);
    let env = env_for("apipark", gw.url(), &VARS);
    (gw, env)
}

#[test]
fn apipark_lifecycle_create_list_inspect_rotate_revoke() {
    let (gw, env) = setup();
    let flags: Vec<&str> = "--ttl 15m --name deploy --label team=payments"
        .split(' ')
        .collect();
    let (secret, err) = create(&env, &flags);
    assert!(
        secret.starts_with("tok_") && secret.len() == 53,
        "tok's own format"
    );
    assert!(
        err.contains("created ") && err.contains("(deploy)"),
        "{err}"
    );
    assert!(
        err.contains("`Authorization` header, without `Bearer `"),
        "says how clients send the key:\n{err}"
    );

    // What APIPark holds: an apikey authorization with tok's key and expiry.
    let held = gw.auths(APP);
    assert_eq!(held.len(), 1);
    let a = &held[0];
    assert_eq!(a.driver, "apikey");
    assert_eq!(a.name, "deploy");
    assert_eq!(a.token_name, "Authorization");
    assert_eq!(a.position, "Header");
    assert_eq!(a.config["apikey"], secret.as_str());
    assert_eq!(a.config["label"]["team"], "payments");
    let left = a.expire_time - chrono::Utc::now().timestamp();
    assert!(
        (880..=905).contains(&left),
        "expire_time is 15 minutes out: {left}"
    );
    let id = a.id.clone();

    let list = list_all(&env, &[&secret]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["name"], "deploy");
    assert_eq!(list[0]["state"], "active");
    assert_eq!(list[0]["labels"]["team"], "payments");
    assert_eq!(
        list[0]["fingerprint"],
        format!("tok_{}…", &secret[4..10]).as_str()
    );
    assert!((880..=905).contains(&secs_until(&list[0]["expires_at"])));

    let by_prefix = env.inspect_json(&id[..8]);
    assert_eq!(by_prefix["id"], id.as_str());
    let by_secret = inspect_secret(&env, &secret);
    assert_eq!(by_secret["id"], id.as_str());

    let o = env.run(&["rotate", &id]);
    assert_success(&o, &["rotate"]);
    let new_secret = stdout(&o).trim_end().to_string();
    assert!(new_secret.starts_with("tok_") && new_secret != secret);
    assert!(
        stderr(&o).contains(&format!("revoked {id}")),
        "{}",
        stderr(&o)
    );
    let held = gw.auths(APP);
    assert_eq!(held.len(), 1, "the old authorization is gone");
    assert_ne!(held[0].id, id);
    assert_eq!(held[0].name, "deploy");
    assert_eq!(held[0].config["apikey"], new_secret.as_str());
    let new_id = held[0].id.clone();

    let o = env.run(&["revoke", &new_id, "--yes"]);
    assert_success(&o, &["revoke"]);
    assert!(stderr(&o).contains(&format!("revoked {new_id} (deploy)")));
    assert!(gw.auths(APP).is_empty(), "APIPark holds nothing afterwards");
    assert!(list_all(&env, &[]).is_empty());
}

#[test]
fn apipark_rotate_with_grace_keeps_the_old_key_until_then() {
    let (gw, env) = setup();
    let (_, _) = create(&env, &["--ttl", "2h", "--name", "svc"]);
    let old_id = gw.auths(APP)[0].id.clone();
    let o = env.run(&["rotate", &old_id, "--grace", "10m"]);
    assert_success(&o, &["rotate"]);
    let held = gw.auths(APP);
    assert_eq!(held.len(), 2);
    let old = held.iter().find(|a| a.id == old_id).unwrap();
    let left = old.expire_time - chrono::Utc::now().timestamp();
    assert!(
        (580..=605).contains(&left),
        "old key now ends in 10m: {left}"
    );
    assert!(
        old.config["apikey"].as_str().unwrap().starts_with("tok_"),
        "the edit re-sent the key"
    );
}

#[test]
fn apipark_reads_console_keys_and_skips_other_authorization_kinds() {
    let (gw, env) = setup();
    let console_key = "3f6f2a8e-9a61-4bcb-9d1e-0b6a5c2e7d10";
    let id = gw.seed(APP, "from-console", "apikey", console_key, 0);
    gw.seed(APP, "basic-one", "basic", "", 0);
    let list = list_all(&env, &[console_key]);
    assert_eq!(list.len(), 1, "only apikey authorizations are tokens");
    assert_eq!(list[0]["expires_at"], serde_json::Value::Null);
    assert_eq!(list[0]["fingerprint"], "3f6f2a…");
    assert_eq!(inspect_secret(&env, console_key)["id"], id.as_str());
    let o = env.run_stdin(&["inspect", "-"], "3f6f2a8e-0000-0000-0000-000000000000");
    assert_fails(&o, exit::NOT_FOUND, &["no token has that secret"]);
}

#[test]
fn apipark_scope_is_refused_before_any_request() {
    let (gw, env) = setup();
    let o = env.run(&["create", "--ttl", "15m", "--scope", "orders:read"]);
    assert_fails(
        &o,
        exit::UNSUPPORTED,
        &["cannot attach scopes", "service subscriptions"],
    );
    let o = env.run(&["create", "--ttl", "15m", "--uses", "3"]);
    assert_fails(&o, exit::UNSUPPORTED, &["limit how often"]);
    let o = env.run(&["create", "--ttl", "15m", "--description", "x"]);
    assert_fails(&o, exit::UNSUPPORTED, &["description"]);
    assert!(
        gw.server.control.requests().is_empty(),
        "no request was sent"
    );
    assert!(gw.auths(APP).is_empty());
}

#[test]
fn apipark_unknown_app_exits_3_and_a_missing_one_is_a_usage_error() {
    let (gw, env) = setup();

    let env2 = env_for(
        "apipark",
        gw.url(),
        &[("APIPARK_API_KEY", KEY), ("TOK_APP", "ghost")],
    );
    let o = env2.run(&["create", "--ttl", "15m"]);
    assert_fails(&o, exit::NOT_FOUND, &["no app `ghost`", "--app"]);

    let env3 = env_for("apipark", gw.url(), &[("APIPARK_API_KEY", KEY)]);
    let o = env3.run(&["list"]);
    assert_fails(&o, exit::USAGE, &["needs the app", "--app APP_ID"]);
    drop(env);
}

#[test]
fn apipark_http_200_envelope_failure_is_an_error() {
    let (gw, env) = setup();
    gw.server.control.fail_with(Fault::status(
        200,
        r#"{"code":-1,"success":"fail","msg":"Error 1205: Lock wait timeout exceeded"}"#,
    ));
    let o = env.run(&["create", "--ttl", "15m"]);
    assert_fails(
        &o,
        exit::FAILURE,
        &["code -1", "HTTP 200", "Lock wait timeout exceeded"],
    );
    assert!(
        stdout(&o).is_empty(),
        "no secret printed for a failed create"
    );
}

#[test]
fn apipark_renew_sets_a_new_expire_time() {
    let (gw, env) = setup();
    create(&env, &["--ttl", "15m"]);
    let id = gw.auths(APP)[0].id.clone();
    let o = env.run(&["renew", &id, "--increment", "2h"]);
    assert_success(&o, &["renew"]);
    assert!(
        stderr(&o).contains(&format!("renewed {id}")),
        "{}",
        stderr(&o)
    );
    let a = &gw.auths(APP)[0];
    let left = a.expire_time - chrono::Utc::now().timestamp();
    assert!((7180..=7205).contains(&left), "two hours now: {left}");
    assert!(
        a.config["apikey"].as_str().unwrap().starts_with("tok_"),
        "the key stays"
    );
}
