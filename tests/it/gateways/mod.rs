//! The apipark, kong, apisix and tyk drivers, run through the tok binary
//! against the contract doubles in `doubles/`.

mod apipark;
mod apisix;
mod kong;
mod tyk;

use crate::common::*;
use serde_json::Value;

/// An Env that talks to `driver` at `url` with these extra variables.
pub fn env_for(driver: &str, url: &str, vars: &[(&str, &str)]) -> Env {
    let mut env = Env::new();
    env.set("TOK_DRIVER", driver).set("TOK_URL", url);
    for (k, v) in vars {
        env.set(k, v);
    }
    env
}

/// `tok create ARGS`: asserts the secret alone on stdout, returns (secret, stderr).
pub fn create(env: &Env, args: &[&str]) -> (String, String) {
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    let o = env.run(&all);
    assert_success(&o, &all);
    let out = stdout(&o);
    assert!(
        out.ends_with('\n') && out.lines().count() == 1,
        "stdout holds the secret alone: {out:?}"
    );
    let secret = out.trim_end().to_string();
    let err = stderr(&o);
    assert!(
        !err.contains(&secret),
        "the secret leaked to stderr:\n{err}"
    );
    (secret, err)
}

/// `tok list --state all -o json`, asserting no secret in it.
pub fn list_all(env: &Env, secrets: &[&str]) -> Vec<Value> {
    let o = env.run(&["list", "--state", "all", "-o", "json"]);
    assert_success(&o, &["list"]);
    for s in secrets {
        assert!(!stdout(&o).contains(s), "a secret is in the list output");
    }
    serde_json::from_str(&stdout(&o)).expect("list json")
}

/// `printf %s SECRET | tok inspect - -o json`.
pub fn inspect_secret(env: &Env, secret: &str) -> Value {
    let o = env.run_stdin(&["inspect", "-", "-o", "json"], secret);
    assert_success(&o, &["inspect", "-"]);
    assert!(!stdout(&o).contains(secret) && !stderr(&o).contains(secret));
    serde_json::from_str(&stdout(&o)).expect("inspect json")
}

/// Seconds from now until an RFC 3339 time.
pub fn secs_until(t: &Value) -> i64 {
    let t = chrono::DateTime::parse_from_rfc3339(t.as_str().expect("a time")).expect("rfc3339");
    (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds()
}

#[test]
fn drivers_lists_the_gateways_and_what_they_cannot_do() {
    let env = Env::new();
    let v: Vec<Value> = serde_json::from_str(&env.ok(&["drivers", "-o", "json"])).unwrap();
    let caps = |d: &str| {
        v.iter()
            .find(|x| x["driver"] == d)
            .unwrap_or_else(|| panic!("{d} listed"))["capabilities"]
            .clone()
    };
    assert_eq!(caps("apipark")["scopes"], false);
    assert_eq!(caps("apipark")["expiry"], true);
    assert_eq!(caps("kong")["names"], false);
    assert_eq!(caps("apisix")["expiry"], true);
    assert_eq!(caps("apisix")["renew"], true);
    assert_eq!(caps("apisix")["descriptions"], true);
    assert_eq!(caps("tyk")["scopes"], true);
    for d in ["apipark", "kong", "apisix", "tyk"] {
        assert_eq!(caps(d)["use_limits"], false, "{d}");
    }
}

#[test]
fn owner_flags_are_refused_where_they_mean_nothing() {
    let env = env_for("tyk", "http://127.0.0.1:9", &[("TYK_SECRET", "s")]);
    let o = env.run(&["list", "--app", "a1"]);
    assert_fails(&o, exit::USAGE, &["--app is for the apipark driver"]);
    let env = env_for("apipark", "http://127.0.0.1:9", &[("APIPARK_API_KEY", "k")]);
    let o = env.run(&["list", "--owner", "alice"]);
    assert_fails(
        &o,
        exit::USAGE,
        &["--owner is for the kong and apisix", "--app APP_ID"],
    );
}

#[test]
fn a_profile_keeps_the_app_and_the_owner() {
    let gw = crate::doubles::apipark::Apipark::start("k", &["app-1"]);
    let mut env = Env::new();
    env.set("APIPARK_API_KEY", "k");
    env.ok(&[
        "profile",
        "add",
        "gw",
        "--driver",
        "apipark",
        "--url",
        gw.url(),
        "--app",
        "app-1",
        "--default",
    ]);
    let shown = env.ok(&["profile", "show", "gw"]);
    assert!(shown.contains("app = \"app-1\""), "{shown}");
    let (secret, _) = create(&env, &["--ttl", "15m"]);
    assert_eq!(gw.auths("app-1")[0].config["apikey"], secret.as_str());

    let kong = crate::doubles::kong::Kong::start(None, &["alice"]);
    env.ok(&[
        "profile",
        "add",
        "k",
        "--driver",
        "kong",
        "--url",
        kong.url(),
        "--owner",
        "alice",
    ]);
    env.set("TOK_PROFILE", "k");
    create(&env, &["--ttl", "15m"]);
    assert_eq!(kong.creds()[0].consumer, kong.consumer_id("alice"));
}
