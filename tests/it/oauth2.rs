//! The oauth2 driver against a real OAuth 2 server (oidc-provider 9.13), one
//! per test.

use crate::common::*;
use crate::servers::{free_port, Oidc};
use chrono::{DateTime, Utc};
use serde_json::Value;

fn env_for(op: &Oidc) -> Env {
    let mut env = Env::new();
    env.set("TOK_DRIVER", "oauth2")
        .set("TOK_URL", &op.issuer)
        .set("TOK_CLIENT_ID", &op.client_id)
        .set("TOK_CLIENT_SECRET", &op.client_secret);
    env
}

/// `env_for` without the variable `var`.
fn env_without(op: &Oidc, var: &str) -> Env {
    let mut env = env_for(op);
    env.vars.retain(|(k, _)| k != var);
    env
}

fn printed_expiry(stderr: &str) -> i64 {
    let at = stderr.find("expires ").expect("an expiry in the summary") + "expires ".len();
    let end = stderr[at..].find(' ').unwrap() + at;
    DateTime::parse_from_rfc3339(&stderr[at..end])
        .unwrap()
        .with_timezone(&Utc)
        .timestamp()
}

#[test]
fn oauth2_create_inspect_revoke() {
    let op = Oidc::start();
    let env = env_for(&op);

    let o = env.run(&["create", "--scope", "orders:read"]);
    assert_success(&o, &["create"]);
    let secret = stdout(&o).trim_end().to_string();
    assert_eq!(stdout(&o), format!("{secret}\n"), "the access token alone");

    // The server's own view: active, with the scope, for the lifetime it set,
    // which is what tok printed.
    let i = op.introspect(&secret);
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["scope"], "orders:read");
    assert_eq!(i["client_id"], op.client_id.as_str());
    let exp = i["exp"].as_i64().unwrap();
    assert_eq!(exp - i["iat"].as_i64().unwrap(), op.ttl as i64);
    assert_eq!(printed_expiry(&stderr(&o)), exp);

    // tok inspect - introspects, and reports the same.
    let o = env.run_stdin(&["inspect", "-", "-o", "json"], &secret);
    assert_success(&o, &["inspect", "-"]);
    let t: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(t["state"], "active");
    assert_eq!(t["scopes"], serde_json::json!(["orders:read"]));
    assert_eq!(t["created_by"], op.client_id.as_str());
    let expires = DateTime::parse_from_rfc3339(t["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires.timestamp(), exp);
    assert!(t["id"].as_str().unwrap().starts_with("sha256:"));
    assert!(!stdout(&o).contains(&secret) && !stderr(&o).contains(&secret));

    // Revoked by its secret on stdin; the server itself then says inactive.
    let o = env.run_stdin(&["revoke", "-", "--yes"], &format!("{secret}\n"));
    assert_success(&o, &["revoke", "-"]);
    assert!(stderr(&o).contains("revoked sha256:"), "{}", stderr(&o));
    assert_eq!(
        op.introspect(&secret),
        serde_json::json!({ "active": false })
    );

    let o = env.run_stdin(&["inspect", "-"], &secret);
    assert_fails(&o, exit::NOT_FOUND, &["not active"]);
    let o = env.run_stdin(&["revoke", "-", "--yes"], &secret);
    assert_fails(&o, exit::NOT_FOUND, &["not active"]);
    assert!(!stderr(&o).contains(&secret));
}

#[test]
fn oauth2_scopes_the_server_drops_are_refused() {
    let op = Oidc::start();
    let env = env_for(&op);
    let o = env.run(&[
        "create",
        "--scope",
        "orders:read",
        "--scope",
        "orders:delete",
    ]);
    assert_fails(
        &o,
        exit::USAGE,
        &[
            "did not grant `orders:delete`",
            "granted: orders:read",
            "was revoked",
            "orders:write",
        ],
    );
    assert_eq!(stdout(&o), "", "no secret is handed out");

    // Declared scopes work together.
    let secret = env.create(&["--scope", "orders:read", "--scope", "orders:write"]);
    assert_eq!(op.introspect(&secret)["scope"], "orders:read orders:write");
}

#[test]
fn oauth2_unsupported_fails_before_any_request() {
    let op = Oidc::start();
    // Nothing listens here: any request would fail with exit 1, not 6.
    let mut env = env_for(&op);
    env.set("TOK_URL", &format!("http://127.0.0.1:{}", free_port()));
    for (args, needle) in [
        (vec!["list"], "cannot list tokens"),
        (
            vec!["inspect", "sha256:0011223344"],
            "cannot inspect a token by id",
        ),
        (
            vec!["revoke", "abc", "--yes"],
            "cannot inspect a token by id",
        ),
        (vec!["rotate", "abc"], "cannot rotate tokens"),
        (
            vec!["renew", "abc", "--increment", "1h"],
            "cannot renew tokens",
        ),
        (
            vec!["create", "--ttl", "5m"],
            "cannot give a token an expiry time",
        ),
        (vec!["create", "--uses", "2"], "cannot limit how often"),
        (vec!["create", "--label", "a=b"], "cannot attach labels"),
    ] {
        let o = env.run(&args);
        assert_fails(&o, exit::UNSUPPORTED, &[needle]);
        let err = stderr(&o);
        assert!(
            err.contains("tok inspect -") || err.contains("chooses a token's lifetime"),
            "{args:?}: says what the driver can do: {err}"
        );
    }
}

#[test]
fn oauth2_client_credentials() {
    let op = Oidc::start();
    let mut env = env_for(&op);

    env.set("TOK_CLIENT_SECRET", "not-the-secret");
    let o = env.run(&["create", "--scope", "orders:read"]);
    assert_fails(&o, exit::AUTH, &["invalid_client", "TOK_CLIENT_SECRET"]);
    assert!(!stderr(&o).contains("not-the-secret"));
    let o = env.run_stdin(&["inspect", "-"], "some-opaque-token-value-123");
    assert_fails(&o, exit::AUTH, &["invalid_client"]);

    // TOK_ADMIN_TOKEN serves as the client secret too; TOK_CLIENT_SECRET wins.
    let mut admin = env_without(&op, "TOK_CLIENT_SECRET");
    admin.set("TOK_ADMIN_TOKEN", &op.client_secret);
    admin.create(&["--scope", "orders:read"]);
    admin.set("TOK_CLIENT_SECRET", "not-the-secret");
    assert_fails(&admin.run(&["create"]), exit::AUTH, &["invalid_client"]);

    let o = env_without(&op, "TOK_CLIENT_SECRET").run(&["create"]);
    assert_fails(&o, exit::AUTH, &["no client secret", "TOK_CLIENT_SECRET"]);

    let no_id = env_without(&op, "TOK_CLIENT_ID");
    let o = no_id.run(&["create"]);
    assert_fails(&o, exit::USAGE, &["no OAuth 2 client id", "--client-id"]);
    // --client-id on the command line does it.
    let o = no_id.run(&["create", "--client-id", &op.client_id]);
    assert_success(&o, &["create"]);
}

#[test]
fn oauth2_explicit_endpoints_in_a_profile() {
    let op = Oidc::start();
    let mut env = Env::new();
    env.set("TOK_CLIENT_SECRET", &op.client_secret);
    // The URL has no discovery document; the profile names every endpoint.
    let base = format!("{}/no-discovery-here", op.issuer);
    env.ok(&[
        "profile",
        "add",
        "idp",
        "--driver",
        "oauth2",
        "--url",
        &base,
        "--client-id",
        &op.client_id,
        "--token-endpoint",
        &format!("{}/token", op.issuer),
        "--introspection-endpoint",
        &format!("{}/token/introspection", op.issuer),
        "--revocation-endpoint",
        &format!("{}/token/revocation", op.issuer),
        "--default",
    ]);
    let text = std::fs::read_to_string(env.config_dir().join("config.toml")).unwrap();
    assert!(text.contains("introspection_endpoint"), "{text}");
    assert!(
        !text.contains(&op.client_secret),
        "no secret in the profile"
    );

    let secret = env.create(&["--scope", "orders:write"]);
    assert_eq!(op.introspect(&secret)["active"], true);
    let o = env.run_stdin(&["revoke", "-", "--yes"], &secret);
    assert_success(&o, &["revoke", "-"]);
    assert_eq!(op.introspect(&secret)["active"], false);

    // Without the endpoints, discovery at that URL fails with a way out.
    let mut bare = Env::new();
    bare.set("TOK_DRIVER", "oauth2")
        .set("TOK_URL", &base)
        .set("TOK_CLIENT_ID", &op.client_id)
        .set("TOK_CLIENT_SECRET", &op.client_secret);
    let o = bare.run(&["create"]);
    assert_fails(
        &o,
        exit::NOT_FOUND,
        &["OAuth 2 metadata", "--token-endpoint"],
    );
}

#[test]
fn oauth2_output_formats() {
    let op = Oidc::start();
    let env = env_for(&op);

    let o = env.ok(&["create", "--scope", "orders:read", "-o", "json"]);
    let v: Value = serde_json::from_str(&o).unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    assert_eq!(op.introspect(&secret)["active"], true);
    assert_eq!(v["scopes"], serde_json::json!(["orders:read"]));

    // The same fields as the local driver.
    let local = Env::new();
    let (local_id, _) = local.create_json(&["--ttl", "5m"]);
    let local_t = local.inspect_json(&local_id);
    let mut local_keys: Vec<&String> = local_t.as_object().unwrap().keys().collect();
    let mut keys: Vec<&String> = v
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "secret")
        .collect();
    local_keys.sort();
    keys.sort();
    assert_eq!(keys, local_keys);

    let o = env.run_stdin(&["inspect", "-", "-o", "jsonl"], &secret);
    assert_success(&o, &["inspect"]);
    assert_eq!(stdout(&o).lines().count(), 1);
    let t: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(t["id"], v["id"]);

    let o = env.run_stdin(&["inspect", "-", "-o", "tsv"], &secret);
    assert_success(&o, &["inspect"]);
    let local_tsv = local.ok(&["inspect", &local_id, "-o", "tsv"]);
    assert_eq!(
        stdout(&o).lines().next(),
        local_tsv.lines().next(),
        "the same TSV header"
    );
    assert_eq!(stdout(&o).lines().count(), 2);

    let o = env.run_stdin(&["inspect", "-"], &secret);
    assert_success(&o, &["inspect"]);
    assert!(stdout(&o).contains("orders:read"));

    let o = env.ok(&["create", "-o", "env"]);
    let secret = o.strip_prefix("TOK_TOKEN=").unwrap().trim_end();
    assert_eq!(op.introspect(secret)["active"], true);

    // A JWT goes to the server (not decoded offline) with this driver; this
    // server introspects only its opaque tokens, and tok passes that on.
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4IiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2ln";
    let o = env.run_stdin(&["inspect", "-"], jwt);
    assert_fails(
        &o,
        exit::USAGE,
        &["unsupported_token_type", "--driver local inspect -"],
    );
}
