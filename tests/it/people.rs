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

#[test]
fn data_dir_typed_beats_tok_url_from_the_environment() {
    let server = crate::server::Server::start();
    let mut env = server.client();
    // As after `eval "$(tok serve --dev)"`: TOK_URL and TOK_ADMIN_TOKEN are set.
    env.create(&["--ttl", "5m", "--name", "remote"]);
    let o = env.run(&[
        "--data-dir",
        "./srv",
        "create",
        "--ttl",
        "5m",
        "--name",
        "here",
    ]);
    assert_success(&o, &["--data-dir", "./srv", "create"]);
    assert!(env.home().join("srv").join("tok.db").is_file());
    let local: Vec<_> = env
        .list_json(&["--data-dir", "./srv"])
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(local, ["here"]);
    let remote: Vec<_> = env
        .list_json(&[])
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        remote,
        ["admin", "remote"],
        "the server got nothing from the --data-dir create"
    );

    // Two of the same strength, or a network driver with --data-dir: refused.
    assert_fails(
        &env.run(&["--url", &server.url, "--data-dir", "./srv", "list"]),
        exit::USAGE,
        &["from --url", "from --data-dir", "give one of them"],
    );
    env.set("TOK_DATA_DIR", "./srv");
    assert_fails(
        &env.run(&["list"]),
        exit::USAGE,
        &["from TOK_URL", "from TOK_DATA_DIR"],
    );
    assert_fails(
        &env.run(&["--driver", "tok", "--data-dir", "./srv", "list"]),
        exit::USAGE,
        &["--data-dir is for the local driver, but the driver is tok (from --driver)"],
    );
    // Serving a store is not opening a driver: TOK_URL does not get in the way.
    let o = env.run(&["serve", "init", "--data-dir", "./other"]);
    assert_success(&o, &["serve", "init"]);
}

#[test]
fn errors_name_the_source_of_the_url_and_the_credential() {
    let server = crate::server::Server::start();
    let mut env = server.client();
    env.set("TOK_ADMIN_TOKEN", "tok_notarealtoken");
    let o = env.run(&["list"]);
    assert_fails(
        &o,
        exit::AUTH,
        &[
            &format!(
                "the credential from TOK_ADMIN_TOKEN was rejected by {}",
                server.url
            ),
            "(URL from TOK_URL)",
            "hint: TOK_ADMIN_TOKEN is set, and",
        ],
    );
    assert!(
        !stderr(&o).contains("set TOK_ADMIN_TOKEN to one"),
        "{}",
        stderr(&o)
    );

    // A profile's URL, as the default profile, with https:// to a plain-HTTP server.
    let env = Env::new();
    let https = server.url.replacen("http://", "https://", 1);
    env.ok(&["profile", "add", "prod", "--url", &https, "--default"]);
    let mut env = env;
    env.set("TOK_ADMIN_TOKEN", &server.admin);
    let o = env.run(&["list"]);
    assert_fails(
        &o,
        exit::FAILURE,
        &[
            "URL from profile `prod` (the default profile)",
            "answered in plain HTTP, not TLS",
        ],
    );
    assert!(!stderr(&o).contains("--ca-cert"), "{}", stderr(&o));

    // A missing profile says where its name came from.
    env.set("TOK_PROFILE", "nope");
    assert_fails(
        &env.run(&["list"]),
        exit::NOT_FOUND,
        &["profile `nope` (from TOK_PROFILE)"],
    );
}

#[test]
fn auth_token_prints_the_credential_for_scripts() {
    let server = crate::server::Server::start();
    let env = server.client();
    let o = env.run(&["auth", "token"]);
    assert_success(&o, &["auth", "token"]);
    assert_eq!(stdout(&o), format!("{}\n", server.admin));
    assert!(stderr(&o).contains("TOK_ADMIN_TOKEN"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(&server.admin));

    let local = Env::new();
    assert_fails(
        &local.run(&["auth", "token"]),
        exit::USAGE,
        &["local driver"],
    );
    let mut nothing = Env::new();
    nothing.set("TOK_URL", &server.url);
    assert_fails(
        &nothing.run(&["auth", "token"]),
        exit::AUTH,
        &["no credential for"],
    );
}
