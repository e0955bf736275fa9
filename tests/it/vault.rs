//! The vault driver against a real OpenBao 2.7 dev server, one per test.

use crate::common::*;
use crate::servers::Bao;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

fn env_for(bao: &Bao) -> Env {
    let mut env = Env::new();
    env.set("TOK_DRIVER", "vault")
        .set("TOK_URL", &bao.addr)
        .set("VAULT_TOKEN", &bao.root);
    env
}

/// A request to the server as root that must answer `want`; its body.
fn as_root(bao: &Bao, (method, path): (&str, &str), body: Value, want: u16) -> Value {
    let (status, v) = bao.api(method, path, &bao.root, Some(body));
    assert_eq!(status, want, "{method} {path}: {v}");
    v
}

/// The accessor of `secret`, asked of the server as root (spends no use).
fn accessor_of(bao: &Bao, secret: &str) -> String {
    let lookup = ("POST", "auth/token/lookup");
    let v = as_root(bao, lookup, json!({ "token": secret }), 200);
    v["data"]["accessor"].as_str().unwrap().to_string()
}

/// A server, tok pointed at it, and a ten-minute token: its secret and accessor.
fn with_a_token() -> (Bao, Env, String, String) {
    let bao = Bao::start();
    let env = env_for(&bao);
    let secret = env.create(&["--ttl", "10m", "--scope", "default"]);
    let acc = accessor_of(&bao, &secret);
    (bao, env, secret, acc)
}

/// `tok create ARGS`, which must succeed and say `says` on stderr.
fn created_saying(env: &Env, args: &[&str], says: &str) -> std::process::Output {
    let o = env.run(&[&["create"], args].concat());
    assert_success(&o, &["create"]);
    assert!(stderr(&o).contains(says), "{}", stderr(&o));
    o
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// The expiry that tok's stderr summary printed (`expires 2030-...Z (in 14m)`).
fn printed_expiry(stderr: &str) -> DateTime<Utc> {
    let at = stderr.find("expires ").expect("an expiry in the summary") + "expires ".len();
    let end = stderr[at..].find(' ').unwrap() + at;
    DateTime::parse_from_rfc3339(&stderr[at..end])
        .unwrap()
        .with_timezone(&Utc)
}

/// Two server timestamps that Vault derives from slightly different clocks
/// reads (token issue and lease start) agree to within a second.
fn assert_close(a: DateTime<Utc>, b: DateTime<Utc>) {
    assert!((a - b).num_milliseconds().abs() < 1000, "{a} vs {b}");
}

/// Asserts that the summary on stderr printed `expires`, to the second.
fn assert_printed(o: &std::process::Output, expires: DateTime<Utc>) {
    let printed = printed_expiry(&stderr(o));
    assert_eq!(printed.timestamp(), expires.timestamp());
}

#[test]
fn vault_ttl_round_trip() {
    let bao = Bao::start();
    let env = env_for(&bao);
    let o = env.run(&["create", "--ttl", "15m", "--scope", "default"]);
    assert_success(&o, &["create"]);
    let secret = stdout(&o).trim_end().to_string();
    assert_eq!(stdout(&o), format!("{secret}\n"), "the secret alone");
    assert!(
        secret.starts_with("s.") || secret.starts_with("hvs."),
        "{secret}"
    );
    let acc = accessor_of(&bao, &secret);
    assert!(
        stderr(&o).contains(&format!("created {acc}")),
        "{}",
        stderr(&o)
    );

    // The server's own record: a lifetime of exactly what tok asked for...
    let data = bao.lookup_accessor(&acc).expect("the token exists");
    let issued = time(&data["issue_time"]);
    let expires = time(&data["expire_time"]);
    assert_eq!(data["creation_ttl"], 900);
    assert_close(expires, issued + TimeDelta::seconds(900));
    // ...and the expiry tok printed and reports is the server's.
    assert_printed(&o, expires);
    let t = env.inspect_json(&acc);
    assert_eq!(time(&t["expires_at"]), expires);
    assert_eq!(t["state"], "active");
    assert_eq!(t["scopes"], json!(["default"]));
}

#[test]
fn vault_create_keeps_policies_meta_name_and_uses() {
    let bao = Bao::start();
    let env = env_for(&bao);
    let secret = env.create(&[
        "--ttl",
        "1h",
        "--scope",
        "default",
        "--scope",
        "deployer",
        "--label",
        "team=payments",
        "--name",
        "deploy-42",
        "--uses",
        "3",
    ]);
    let acc = accessor_of(&bao, &secret);
    let data = bao.lookup_accessor(&acc).unwrap();
    assert_eq!(data["policies"], json!(["default", "deployer"]));
    assert_eq!(data["display_name"], "token-deploy-42");
    assert_eq!(data["num_uses"], 3);
    assert_eq!(data["renewable"], true);
    assert_eq!(data["meta"]["team"], "payments");
    assert_eq!(data["meta"]["tok_max_uses"], "3");

    let t = env.inspect_json(&acc);
    assert_eq!(t["name"], "deploy-42");
    assert_eq!(t["labels"], json!({ "team": "payments" }));
    assert_eq!(t["max_uses"], 3);
    assert_eq!(t["uses"], 0);
    assert_eq!(
        t["fingerprint"], "-",
        "Vault never returns a secret by accessor"
    );

    // Looking a token up by its secret (stdin) finds the same one.
    let o = env.run_stdin(&["inspect", "-", "-o", "json"], &secret);
    assert_success(&o, &["inspect", "-"]);
    let by_secret: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(by_secret["id"], acc.as_str());
    assert!(!stdout(&o).contains(&secret) && !stderr(&o).contains(&secret));
    // ... without spending one of its uses.
    assert_eq!(bao.lookup_accessor(&acc).unwrap()["num_uses"], 3);

    // A unique prefix of the accessor will do.
    let t = env.inspect_json(&acc[..6]);
    assert_eq!(t["id"], acc.as_str());
}

#[test]
fn vault_use_limit_runs_out() {
    let bao = Bao::start();
    let env = env_for(&bao);
    let secret = env.create(&["--ttl", "10m", "--scope", "default", "--uses", "2"]);
    let acc = accessor_of(&bao, &secret);

    assert_eq!(bao.self_status(&secret), 200, "first use");
    let t = env.inspect_json(&acc);
    assert_eq!(
        (t["uses"].as_u64(), t["max_uses"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(bao.lookup_accessor(&acc).unwrap()["num_uses"], 1);

    assert_eq!(bao.self_status(&secret), 200, "second and last use");
    assert_eq!(
        bao.self_status(&secret),
        403,
        "used up: the server refuses it"
    );
    assert!(bao.lookup_accessor(&acc).is_none(), "Vault forgot it");

    let o = env.run(&["inspect", &acc]);
    assert_fails(
        &o,
        exit::NOT_FOUND,
        &[&acc, "no record of revoked, expired or used-up"],
    );
    let listed: Vec<String> = env
        .list_json(&["--state", "all"])
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!listed.contains(&acc));
}

#[test]
fn vault_revoke_then_the_server_rejects_the_token() {
    let (bao, env, secret, acc) = with_a_token();
    assert_eq!(bao.self_status(&secret), 200);

    let o = env.run(&["revoke", &acc, "--yes"]);
    assert_success(&o, &["revoke"]);
    assert!(
        stderr(&o).contains(&format!("revoked {acc}")),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");
    assert_eq!(bao.self_status(&secret), 403, "lookup-self after revoke");
    assert!(bao.lookup_accessor(&acc).is_none());

    // Again: Vault cannot tell revoked from never-existed, and tok says so.
    let o = env.run(&["revoke", &acc, "--yes"]);
    assert_fails(&o, exit::NOT_FOUND, &[&acc, "no record of revoked"]);

    // By secret on stdin, with a JSON report of what happened.
    let other = env.create(&["--ttl", "10m", "--scope", "default"]);
    let other_acc = accessor_of(&bao, &other);
    let o = env.run_stdin(
        &["revoke", "-", "--yes", "-o", "json"],
        &format!("{other}\n"),
    );
    assert_success(&o, &["revoke", "-"]);
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report[0]["id"], other_acc.as_str());
    assert_eq!(report[0]["outcome"], "revoked");
    assert!(!stdout(&o).contains(&other) && !stderr(&o).contains(&other));
    assert_eq!(bao.self_status(&other), 403);

    // A revoked token's secret is unknown to the server.
    let o = env.run_stdin(&["inspect", "-"], &other);
    assert_fails(&o, exit::NOT_FOUND, &["no live token"]);
    assert!(!stderr(&o).contains(&other));

    // A Vault token on the command line is refused before it is sent anywhere.
    let o = env.run(&["revoke", &other, "--yes"]);
    assert_fails(&o, exit::USAGE, &["secret was given on the command line"]);
    assert!(!stderr(&o).contains(&other));
}

#[test]
fn vault_renew_and_its_cap() {
    let (bao, env, _, acc) = with_a_token();

    let before = Utc::now();
    let o = env.run(&["renew", &acc, "--increment", "1h"]);
    let after = Utc::now();
    assert_success(&o, &["renew"]);
    assert_eq!(
        stdout(&o),
        "",
        "stdout is data only; the summary is on stderr"
    );
    let expires = time(&bao.lookup_accessor(&acc).unwrap()["expire_time"]);
    assert!(
        expires >= before + TimeDelta::seconds(3599) && expires <= after + TimeDelta::seconds(3601),
        "renewed to an hour from now: {expires}"
    );
    assert!(stderr(&o).contains(&format!("renewed {acc}")));
    assert_printed(&o, expires);

    // The mount's max TTL caps a renewal; Vault's warning reaches stderr.
    let tune = ("POST", "sys/auth/token/tune");
    as_root(&bao, tune, json!({ "max_lease_ttl": "2h" }), 204);
    let o = env.run(&["renew", &acc, "--increment", "5h", "-o", "json"]);
    assert_success(&o, &["renew"]);
    // Vault names the cap left from the lease's start: "2h", or "1h59m59s" on a
    // machine slow enough for a second to pass.
    assert!(
        stderr(&o).contains("warning: Vault: TTL of \"5h\" exceeded the effective max_ttl of \""),
        "{}",
        stderr(&o)
    );
    let data = bao.lookup_accessor(&acc).unwrap();
    let capped = time(&data["expire_time"]);
    // Vault counts the cap from its lease's start, a moment after issue_time.
    assert_close(capped, time(&data["issue_time"]) + TimeDelta::hours(2));
    let t: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(time(&t["expires_at"]), capped);

    // A token made non-renewable cannot be renewed, and tok says why.
    let v = as_root(
        &bao,
        ("POST", "auth/token/create"),
        json!({ "ttl": "10m", "renewable": false, "policies": ["default"] }),
        200,
    );
    let fixed = v["auth"]["accessor"].as_str().unwrap();
    let o = env.run(&["renew", fixed, "--increment", "1h"]);
    assert_fails(&o, exit::FAILURE, &["not renewable", "tok rotate"]);

    // Drivers that cannot renew refuse before any request.
    let mut local = Env::new();
    local.set("TOK_DRIVER", "local");
    let o = local.run(&["renew", "tk_anything", "--increment", "1h"]);
    assert_fails(&o, exit::UNSUPPORTED, &["cannot renew tokens"]);
}

#[test]
fn vault_rotate_with_and_without_grace() {
    let bao = Bao::start();
    let env = env_for(&bao);
    let old = env.create(&[
        "--ttl", "20m", "--scope", "default", "--scope", "ci", "--name", "ci-bot", "--label",
        "env=prod", "--uses", "5",
    ]);
    let old_acc = accessor_of(&bao, &old);

    let o = env.run(&["rotate", &old_acc]);
    assert_success(&o, &["rotate"]);
    let new = stdout(&o).trim_end().to_string();
    assert_ne!(new, old);
    assert!(
        stderr(&o).contains(&format!("revoked {old_acc}")),
        "{}",
        stderr(&o)
    );
    assert_eq!(bao.self_status(&old), 403, "the old token is dead");
    let new_acc = accessor_of(&bao, &new);
    let d = bao.lookup_accessor(&new_acc).unwrap();
    assert_eq!(d["policies"], json!(["ci", "default"]));
    assert_eq!(d["display_name"], "token-ci-bot");
    assert_eq!(d["meta"]["env"], "prod");
    assert_eq!(d["num_uses"], 5);
    assert_eq!(d["creation_ttl"], 1200);

    // With a grace period the old token is renewed to exactly that much.
    let before = Utc::now();
    let o = env.run(&["rotate", &new_acc, "--grace", "1m"]);
    let after = Utc::now();
    assert_success(&o, &["rotate"]);
    assert!(stderr(&o).contains("(grace)"), "{}", stderr(&o));
    let d = bao
        .lookup_accessor(&new_acc)
        .expect("still alive in its grace period");
    let until = time(&d["expire_time"]);
    assert!(until >= before + TimeDelta::seconds(59) && until <= after + TimeDelta::seconds(61));
    assert_eq!(bao.self_status(&new), 200);

    // A non-renewable token cannot be cut to a grace period: refused, nothing made.
    let v = as_root(
        &bao,
        ("POST", "auth/token/create"),
        json!({ "ttl": "10m", "renewable": false, "policies": ["default"] }),
        200,
    );
    let fixed = v["auth"]["accessor"].as_str().unwrap().to_string();
    let count = bao.accessors().len();
    let o = env.run(&["rotate", &fixed, "--grace", "1m"]);
    assert_fails(&o, exit::USAGE, &["not renewable", "without --grace"]);
    assert_eq!(stdout(&o), "");
    assert_eq!(bao.accessors().len(), count, "no new token");
}

#[test]
fn vault_bad_policy_ttl_and_scope() {
    let bao = Bao::start();
    let env = env_for(&bao);
    let count = bao.accessors().len();

    // tok refuses what it can judge itself, before any request.
    let o = env.run(&["create", "--ttl", "15", "--scope", "default"]);
    assert_fails(&o, exit::USAGE, &["no unit"]);
    let o = env.run(&["create", "--ttl", "15m"]);
    assert_fails(&o, exit::USAGE, &["--scope", "root"]);
    let o = env.run(&["create", "--no-expiry", "--scope", "default"]);
    assert_fails(&o, exit::UNSUPPORTED, &["never expires"]);
    let o = env.run(&[
        "create",
        "--ttl",
        "1h",
        "--scope",
        "default",
        "--description",
        "x",
    ]);
    assert_fails(&o, exit::UNSUPPORTED, &["description"]);
    assert_eq!(bao.accessors().len(), count, "nothing was created");

    // A policy that does not exist: Vault makes the token and warns.
    let policy = ["--ttl", "15m", "--scope", "no-such-policy"];
    let warning = "warning: Vault: Policy \"no-such-policy\" does not exist";
    created_saying(&env, &policy, warning);

    // A TTL above the mount's max: capped by Vault, and tok shows the real expiry.
    let o = env.run(&["create", "--ttl", "900h", "--scope", "default"]);
    assert_success(&o, &["create"]);
    assert!(stderr(&o).contains("capped"), "{}", stderr(&o));
    let acc = accessor_of(&bao, stdout(&o).trim_end());
    let d = bao.lookup_accessor(&acc).unwrap();
    let expires = time(&d["expire_time"]);
    assert_close(expires, time(&d["issue_time"]) + TimeDelta::hours(768));
    assert_printed(&o, expires);

    // An admin token may only give the policies it holds.
    let policy = r#"path "auth/token/create" { capabilities = ["create", "update"] }"#;
    as_root(
        &bao,
        ("PUT", "sys/policies/acl/minter"),
        json!({ "policy": policy }),
        204,
    );
    let v = as_root(
        &bao,
        ("POST", "auth/token/create"),
        json!({ "policies": ["minter"], "ttl": "1h" }),
        200,
    );
    let minter = v["auth"]["client_token"].as_str().unwrap().to_string();
    let mut limited = env_for(&bao);
    limited.set("VAULT_TOKEN", &minter);
    let o = limited.run(&["create", "--ttl", "10m", "--scope", "admin"]);
    assert_fails(
        &o,
        exit::USAGE,
        &[
            "child policies must be subset of parent",
            "policies it holds",
        ],
    );
    // It can mint within its own policies, though not read tokens back.
    let minted = ["--ttl", "10m", "--scope", "minter"];
    let o = created_saying(&limited, &minted, "could not read it back");
    assert_eq!(bao.self_status(stdout(&o).trim_end()), 200);
}

#[test]
fn vault_admin_credential() {
    let bao = Bao::start();
    let mut env = env_for(&bao);

    env.set("VAULT_TOKEN", "s.wrongwrongwrongwrongwron");
    let o = env.run(&["list"]);
    assert_fails(&o, exit::AUTH, &["permission denied", "VAULT_TOKEN"]);
    assert!(
        !stderr(&o).contains("wrongwrong"),
        "the credential is not echoed"
    );
    let o = env.run(&["create", "--ttl", "1m", "--scope", "default"]);
    assert_fails(&o, exit::AUTH, &["permission denied"]);

    // None at all: refused before any request.
    let mut none = Env::new();
    none.set("TOK_DRIVER", "vault").set("TOK_URL", &bao.addr);
    let o = none.run(&["list"]);
    assert_fails(&o, exit::AUTH, &["no Vault token", "VAULT_TOKEN"]);

    // TOK_ADMIN_TOKEN serves when VAULT_TOKEN is unset; VAULT_TOKEN wins.
    none.set("TOK_ADMIN_TOKEN", &bao.root);
    none.ok(&["list"]);
    none.set("VAULT_TOKEN", "s.wrongwrongwrongwrongwron");
    assert_fails(
        &none.run(&["list"]),
        exit::AUTH,
        &["environment (VAULT_TOKEN)"],
    );

    // Vault's own VAULT_ADDR is read when tok has no URL.
    let mut native = Env::new();
    native
        .set("TOK_DRIVER", "vault")
        .set("VAULT_ADDR", &bao.addr)
        .set("VAULT_TOKEN", &bao.root);
    native.ok(&["list"]);
}

#[test]
fn vault_list_filters_and_output_formats() {
    let bao = Bao::start();
    let env = env_for(&bao);
    let root_acc = bao.accessors();
    let mut made = Vec::new();
    for i in 0..12 {
        let team = if i % 3 == 0 {
            "team=payments"
        } else {
            "team=search"
        };
        let s = env.create(&[
            "--ttl",
            "30m",
            "--scope",
            "default",
            "--name",
            &format!("deploy-{i}"),
            "--label",
            team,
        ]);
        made.push(accessor_of(&bao, &s));
    }

    // Every token, details fetched concurrently, oldest first.
    let all = env.list_json(&[]);
    assert_eq!(all.len(), made.len() + root_acc.len());
    let ids: Vec<&str> = all.iter().map(|t| t["id"].as_str().unwrap()).collect();
    for a in &made {
        assert!(ids.contains(&a.as_str()));
    }
    let times: Vec<DateTime<Utc>> = all.iter().map(|t| time(&t["created_at"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");

    let payments = env.list_json(&["--label", "team=payments"]);
    assert_eq!(payments.len(), 4);
    assert!(payments.iter().all(|t| t["labels"]["team"] == "payments"));
    assert_eq!(env.list_json(&["--name", "deploy-1*"]).len(), 3);
    assert_eq!(env.list_json(&["--limit", "5"]).len(), 5);
    assert_eq!(env.list_json(&["--state", "revoked"]).len(), 0);

    // The same fields as the local driver, in every format.
    let local = Env::new();
    local.create(&["--ttl", "30m"]);
    let local_keys: Vec<String> = local.list_json(&[])[0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let vault_keys: Vec<String> = all[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(vault_keys, local_keys);

    let jsonl = env.ok(&["list", "-o", "jsonl", "--label", "team=payments"]);
    assert_eq!(jsonl.lines().count(), 4);
    for line in jsonl.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["labels"]["team"], "payments");
    }

    let tsv = env.ok(&["list", "-o", "tsv", "--label", "team=payments"]);
    let local_tsv = local.ok(&["list", "-o", "tsv"]);
    let header = tsv.lines().next().unwrap();
    assert_eq!(header, local_tsv.lines().next().unwrap());
    assert_eq!(tsv.lines().count(), 5);
    let cols: Vec<&str> = header.split('\t').collect();
    let row: Vec<&str> = tsv.lines().nth(1).unwrap().split('\t').collect();
    assert_eq!(row.len(), cols.len());
    let at = |name: &str| row[cols.iter().position(|c| *c == name).unwrap()];
    assert!(made.contains(&at("id").to_string()));
    assert_eq!(at("state"), "active");
    assert_eq!(at("labels"), "team=payments");

    let plain = env.ok(&["list", "--label", "team=payments"]);
    assert!(plain.starts_with("ID "), "{plain}");
    assert_eq!(plain.lines().count(), 5);

    // inspect in each format.
    let one = &made[0];
    let v: Value = serde_json::from_str(&env.ok(&["inspect", one, "-o", "jsonl"])).unwrap();
    assert_eq!(v["id"], one.as_str());
    let t = env.ok(&["inspect", one, "-o", "tsv"]);
    assert_eq!(t.lines().next().unwrap(), header);
    let details = env.ok(&["inspect", one]);
    assert!(details.contains("deploy-0") && details.contains("team=payments"));

    // Bulk revoke by label: a dry run changes nothing, --yes revokes them all.
    let o = env.run(&[
        "revoke",
        "--label",
        "team=payments",
        "--dry-run",
        "-o",
        "json",
    ]);
    assert_success(&o, &["revoke", "--dry-run"]);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&stdout(&o))
            .unwrap()
            .len(),
        4
    );
    assert_eq!(env.list_json(&["--label", "team=payments"]).len(), 4);
    let o = env.run(&["revoke", "--label", "team=payments", "--yes"]);
    assert_success(&o, &["revoke", "--label"]);
    assert_eq!(stderr(&o).matches("revoked ").count(), 4, "{}", stderr(&o));
    for (i, a) in made.iter().enumerate() {
        assert_eq!(bao.lookup_accessor(a).is_none(), i % 3 == 0, "token {i}");
    }

    // create -o json carries the secret with the token; -o env a TOK_TOKEN line.
    let o = env.ok(&["create", "--ttl", "5m", "--scope", "default", "-o", "json"]);
    let v: Value = serde_json::from_str(&o).unwrap();
    let secret = v["secret"].as_str().unwrap();
    assert_eq!(accessor_of(&bao, secret), v["id"].as_str().unwrap());
    let o = env.ok(&["create", "--ttl", "5m", "--scope", "default", "-o", "env"]);
    let secret = o.strip_prefix("TOK_TOKEN=").unwrap().trim_end();
    assert_eq!(bao.self_status(secret), 200);
}

#[test]
fn vault_mount_namespace_and_profile() {
    let bao = Bao::start();
    let env = env_for(&bao);

    let o = env.run(&["--vault-mount", "auth/nothing-here", "list"]);
    assert_fails(&o, exit::USAGE, &["no token auth at", "--vault-mount"]);

    // OpenBao has namespaces: a token made in one lives there only.
    as_root(&bao, ("POST", "sys/namespaces/team-a"), json!({}), 200);
    let secret = env.create(&[
        "--vault-namespace",
        "team-a",
        "--ttl",
        "5m",
        "--scope",
        "default",
    ]);
    let (status, v) = bao.api_ns(
        "POST",
        "auth/token/lookup",
        &bao.root,
        Some("team-a"),
        Some(json!({ "token": secret })),
    );
    assert_eq!(status, 200, "{v}");
    let acc = v["data"]["accessor"].as_str().unwrap().to_string();
    let listed = env.list_json(&["--vault-namespace", "team-a"]);
    assert!(listed.iter().any(|t| t["id"] == acc.as_str()));
    assert!(!env.list_json(&[]).iter().any(|t| t["id"] == acc.as_str()));

    // A profile keeps the driver, address, mount and namespace (no secret).
    let mut p = Env::new();
    p.set("VAULT_TOKEN", &bao.root);
    p.ok(&[
        "profile",
        "add",
        "bao",
        "--driver",
        "vault",
        "--url",
        &bao.addr,
        "--vault-mount",
        "auth/token/",
        "--vault-namespace",
        "team-a",
        "--default",
    ]);
    let text = std::fs::read_to_string(p.config_dir().join("config.toml")).unwrap();
    assert!(text.contains("vault_namespace = \"team-a\""), "{text}");
    assert!(!text.contains(&bao.root));
    assert!(p.list_json(&[]).iter().any(|t| t["id"] == acc.as_str()));
}

#[test]
fn drivers_lists_vault_and_oauth2() {
    let env = Env::new();
    let out = env.ok(&["drivers", "-o", "tsv"]);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("no {name} line in {out}"))
            .to_string()
    };
    assert!(line("vault").contains("\tcreate,list,inspect,inspect-secret,revoke,rotate,renew,"));
    let oauth2 = line("oauth2");
    assert!(
        oauth2.contains("\tcreate,inspect-secret,revoke,scopes\t"),
        "{oauth2}"
    );
    assert!(!line("local").contains("renew"));
    let v: Value = serde_json::from_str(&env.ok(&["drivers", "-o", "json"])).unwrap();
    let o = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["driver"] == "oauth2")
        .unwrap();
    assert_eq!(o["capabilities"]["list"], false);
    assert_eq!(o["capabilities"]["renew"], false);
}
