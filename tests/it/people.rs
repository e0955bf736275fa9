//! What a person meets first: the default profile set and cleared, where the
//! store is when flags, environment and profile disagree, and errors that say
//! which source a setting came from.

use crate::common::*;

#[test]
fn profile_use_sets_and_clears_the_default() {
    let env = Env::new();
    env.ok(&["profile", "add", "dev", "--data-dir", "dev-store"]);
    env.ok(&[
        "profile",
        "add",
        "prod",
        "--url",
        "http://127.0.0.1:9",
        "--default",
    ]);
    let default = |env: &Env| -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&env.ok(&["profile", "list", "-o", "json"])).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|p| p["default"] == true)
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(default(&env), ["prod"]);

    let o = env.run(&["profile", "use", "--none"]);
    assert_success(&o, &["profile", "use", "--none"]);
    assert!(
        stderr(&o).contains("no default profile (was `prod`)"),
        "{}",
        stderr(&o)
    );
    assert!(default(&env).is_empty());
    // With no default, a create goes to the local store again.
    env.create(&["--ttl", "5m"]);
    assert_eq!(env.list_json(&[]).len(), 1);

    env.ok(&["profile", "use", "dev"]);
    assert_eq!(default(&env), ["dev"]);
    env.create(&["--ttl", "5m"]);
    assert!(env.home().join("dev-store").join("tok.db").exists());

    let o = env.run(&["profile", "use", "nope"]);
    assert_fails(&o, exit::NOT_FOUND, &["no profile named `nope`"]);
    assert_eq!(default(&env), ["dev"]);
    let o = env.run(&["profile", "use"]);
    assert_fails(&o, exit::USAGE, &["--none"]);
    let o = env.run(&["profile", "use", "dev", "--none"]);
    assert_eq!(code(&o), exit::USAGE);
}
