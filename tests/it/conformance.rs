//! One suite, every driver (in the manner of jj's `TestEnvironment`): the same
//! scenarios run against `local`, `tok` (a real `tok serve`), `vault` (a real
//! OpenBao), `oauth2` (oidc-provider) and the apipark, kong, apisix and tyk
//! contract doubles. What a driver cannot do is skipped by the capabilities it
//! declares (`tok::registry`), and the refusal itself is asserted: exit 6, with
//! the URL pointing where nothing listens, so that any request would have
//! failed with exit 1 instead.
//!
//! Each scenario is one function over a `Rig`; `suite!` makes one test per
//! scenario and driver, so a failure names both.

use crate::common::*;
use crate::doubles::{dead_url, Control, Double, Fault};
use serde_json::Value;
use std::sync::Arc;
use tok::registry::{Capabilities, DriverKind, Op};

/// A driver, ready to use, and what the suite must know of it.
pub struct Rig {
    pub driver: &'static str,
    pub env: Env,
    pub caps: Capabilities,
    /// The variables that point tok at the gateway (empty for local).
    vars: Vec<(String, String)>,
    /// A scope the gateway accepts.
    scope: &'static str,
    /// Whether every create must name a scope (Vault would copy the admin
    /// token's policies, Tyk would make a key for every API).
    needs_scope: bool,
    /// Whether a revoked token is still shown (as revoked) rather than gone.
    keeps_revoked: bool,
    /// The variable with a wrong credential, and what the refusal must say.
    bad_credential: Option<(&'static str, Vec<&'static str>)>,
    /// An id and an id prefix that match nothing, and what tok says of a
    /// secret that matches nothing.
    unknown: (&'static str, &'static str, Vec<&'static str>),
    /// What tok says, before any request, when no credential is set.
    no_credential: Vec<&'static str>,
    /// Canned failures of the gateway and what tok must say of each.
    faults: Vec<(Fault, Vec<&'static str>)>,
    /// What the double saw, where the gateway is a double.
    control: Option<Arc<Control>>,
    _keep: Box<dyn std::any::Any>,
}

impl Rig {
    fn new(driver: &'static str, vars: Vec<(String, String)>, keep: Box<dyn std::any::Any>) -> Rig {
        let mut env = Env::new();
        for (k, v) in &vars {
            env.set(k, v);
        }
        Rig {
            driver,
            env,
            caps: DriverKind::from_name(driver)
                .expect("a driver")
                .capabilities(),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            scope: "orders:read",
            needs_scope: false,
            keeps_revoked: false,
            bad_credential: None,
            no_credential: Vec::new(),
            unknown: ("abc123", "abc12", Vec::new()),
            faults: Vec::new(),
            control: None,
            _keep: keep,
        }
    }

    /// The rig's variables with some replaced, in a fresh home.
    fn env_with(&self, overrides: &[(&str, &str)]) -> Env {
        let mut env = Env::new();
        for (k, v) in &self.vars {
            env.set(k, v);
        }
        for (k, v) in overrides {
            env.set(k, v);
        }
        env
    }

    fn can(&self, op: Op) -> bool {
        self.caps.supports(op)
    }

    /// The lifetime flags a create gets here: `--ttl TTL` where the driver
    /// keeps an expiry, `--no-expiry` where it only keeps keys forever.
    fn lifetime(&self, ttl: &'static str) -> Vec<&'static str> {
        if self.can(Op::Expiry) {
            vec!["--ttl", ttl]
        } else if self.can(Op::NoExpiry) {
            vec!["--no-expiry"]
        } else {
            Vec::new()
        }
    }

    /// `tok create` with what this driver needs, the secret alone on stdout.
    fn create(&self, ttl: &'static str, extra: &[&str]) -> (String, String) {
        let mut args = vec!["create"];
        args.extend(self.lifetime(ttl));
        if self.needs_scope {
            args.extend(["--scope", self.scope]);
        }
        args.extend_from_slice(extra);
        let o = self.env.run(&args);
        assert_success(&o, &args);
        let out = stdout(&o);
        assert!(out.ends_with('\n') && out.lines().count() == 1, "{out:?}");
        let secret = out.trim_end().to_string();
        assert!(!stderr(&o).contains(&secret), "the secret leaked to stderr");
        (secret, stderr(&o))
    }

    /// `tok inspect - -o json` with the secret on stdin.
    fn by_secret(&self, secret: &str) -> Result<Value, std::process::Output> {
        let o = self.env.run_stdin(&["inspect", "-", "-o", "json"], secret);
        assert!(!stdout(&o).contains(secret) && !stderr(&o).contains(secret));
        match code(&o) {
            0 => Ok(serde_json::from_str(&stdout(&o)).expect("inspect json")),
            _ => Err(o),
        }
    }

    /// Asserts the token of `secret` is revoked: shown so, or gone (exit 3).
    fn assert_revoked(&self, secret: &str) {
        match self.by_secret(secret) {
            Ok(t) => {
                assert!(self.keeps_revoked, "{}: still there: {t}", self.driver);
                assert_eq!(t["state"], "revoked", "{t}");
            }
            Err(o) => assert_eq!(code(&o), exit::NOT_FOUND, "{}", stderr(&o)),
        }
    }

    fn revoke(&self, id: &str, secret: &str) {
        let o = if self.can(Op::InspectById) {
            self.env.run(&["revoke", id, "--yes"])
        } else {
            self.env.run_stdin(&["revoke", "-", "--yes"], secret)
        };
        assert_success(&o, &["revoke", id]);
        assert!(
            stderr(&o).contains(&format!("revoked {id}")),
            "{}",
            stderr(&o)
        );
    }
}

/// Seconds from now until an RFC 3339 time.
fn secs_until(t: &Value) -> i64 {
    let t = chrono::DateTime::parse_from_rfc3339(t.as_str().expect("a time")).expect("rfc3339");
    (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds()
}

fn owned<V: AsRef<str>>(vars: &[(&str, V)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.as_ref().to_string()))
        .collect()
}

/// A rig for a gateway double at `url`, with its credential and owner.
fn double<S: Send + 'static>(driver: &'static str, vars: &[(&str, &str)], d: Double<S>) -> Rig {
    let mut all = owned(&[("TOK_DRIVER", driver), ("TOK_URL", d.url())]);
    all.extend(owned(vars));
    Rig {
        control: Some(d.server.control.clone()),
        ..Rig::new(driver, all, Box::new(d))
    }
}

impl Rig {
    /// How the gateway refuses a wrong credential in `var`, and how tok
    /// refuses to go without one.
    fn refusing(mut self, var: &'static str, wrong: &[&'static str], none: &[&'static str]) -> Rig {
        self.bad_credential = Some((var, [wrong, &[var]].concat()));
        self.no_credential = [none, &[var]].concat();
        self
    }

    /// A canned failure and what tok must say of it.
    fn failing(mut self, fault: Fault, says: [&'static str; 2]) -> Rig {
        self.faults.push((fault, says.to_vec()));
        self
    }
}

fn rig(driver: &'static str) -> Rig {
    use crate::doubles::{apipark::Apipark, apisix::Apisix, kong::Kong, tyk::Tyk};
    match driver {
        "local" => Rig {
            keeps_revoked: true,
            ..Rig::new("local", Vec::new(), Box::new(()))
        },
        "tok" => {
            let server = crate::server::Server::start();
            let vars = [
                ("TOK_URL", server.url.clone()),
                ("TOK_ADMIN_TOKEN", server.admin.clone()),
            ];
            let vars = owned(&vars);
            Rig {
                keeps_revoked: true,
                ..Rig::new("tok", vars, Box::new(server))
            }
            .refusing(
                "TOK_ADMIN_TOKEN",
                &["not a token this server knows"],
                &["no admin token"],
            )
        }
        "vault" => {
            let bao = crate::servers::Bao::start();
            let vars = [
                ("TOK_DRIVER", "vault"),
                ("TOK_URL", &bao.addr),
                ("VAULT_TOKEN", &bao.root),
            ];
            let vars = owned(&vars);
            Rig {
                scope: "default",
                needs_scope: true,
                ..Rig::new("vault", vars, Box::new(bao))
            }
            .refusing("VAULT_TOKEN", &["permission denied"], &["no Vault token"])
        }
        "oauth2" => {
            let op = crate::servers::Oidc::start();
            let vars = [
                ("TOK_DRIVER", "oauth2"),
                ("TOK_URL", &op.issuer),
                ("TOK_CLIENT_ID", &op.client_id),
                ("TOK_CLIENT_SECRET", &op.client_secret),
            ];
            let vars = owned(&vars);
            Rig::new("oauth2", vars, Box::new(op)).refusing(
                "TOK_CLIENT_SECRET",
                &["invalid_client"],
                &["no client secret"],
            )
        }
        "apipark" => {
            let d = Apipark::start("sys-key-4c1d8e", &["7a0c51e2-app"]);
            let unknown = ("no-such-id", "no-such", vec!["no token has that secret"]);
            let vars = [
                ("APIPARK_API_KEY", "sys-key-4c1d8e"),
                ("TOK_APP", "7a0c51e2-app"),
            ];
            Rig {
                unknown,
                ..double(driver, &vars, d)
            }
            .refusing(
                "APIPARK_API_KEY",
                &["invalid token", "HTTP 403"],
                &["no admin credential", "APIPARK_API_KEY or TOK_ADMIN_TOKEN"],
            )
            .failing(
                Fault::status(502, r#"{"message":"bad gateway"}"#),
                ["HTTP 502", "try again later"],
            )
            .failing(
                Fault::garbage(),
                ["not APIPark's JSON envelope", "HTTP 200"],
            )
        }
        "kong" => {
            let d = Kong::start(Some("rbac-token-1"), &["alice", "bob"]);
            let uuid = "4e3ad2e4-0bc4-4638-8e34-c84a417ba39b";
            let unknown = (uuid, "4e3a", vec!["no token has that secret"]);
            let vars = [("KONG_ADMIN_TOKEN", "rbac-token-1"), ("TOK_OWNER", "alice")];
            let error = r#"{"message":"An unexpected error occurred"}"#;
            Rig {
                unknown,
                ..double(driver, &vars, d)
            }
            .refusing(
                "KONG_ADMIN_TOKEN",
                &["HTTP 401", "Invalid credentials"],
                &["refused the admin credential", "HTTP 401"],
            )
            .failing(
                Fault::status(500, error),
                ["HTTP 500", "An unexpected error occurred"],
            )
            .failing(Fault::garbage(), ["not the JSON expected", "HTTP 200"])
        }
        "apisix" => {
            let key = "edd1c9f034335f136f87ad84b625c8f1";
            let d = Apisix::start(key, &["jack", "kate"]);
            let unknown = ("jack/nope", "jack/no", vec!["no token has that secret"]);
            let vars = [("APISIX_ADMIN_KEY", key), ("TOK_OWNER", "jack")];
            let error = r#"{"error_msg":"has no healthy etcd endpoint available"}"#;
            Rig {
                unknown,
                ..double(driver, &vars, d)
            }
            .refusing(
                "APISIX_ADMIN_KEY",
                &["HTTP 401", "failed to check token"],
                &["no admin credential", "APISIX_ADMIN_KEY or TOK_ADMIN_TOKEN"],
            )
            .failing(
                Fault::status(503, error),
                ["HTTP 503", "no healthy etcd endpoint"],
            )
            .failing(Fault::garbage(), ["not the JSON expected", "HTTP 200"])
        }
        "tyk" => {
            let secret = "352d20ee67be67f6340b4c0605b044b7";
            let d = Tyk::start(secret, true, true);
            let error = r#"{"status":"error","message":"Failed to create key, ensure security settings are correct."}"#;
            Rig {
                scope: "orders-api",
                needs_scope: true,
                ..double(driver, &[("TYK_SECRET", secret)], d)
            }
            .refusing(
                "TYK_SECRET",
                &["HTTP 403", "invalid or missing key"],
                &["no admin credential", "TYK_SECRET or TOK_ADMIN_TOKEN"],
            )
            .failing(
                Fault::status(500, error),
                ["HTTP 500", "ensure security settings"],
            )
            .failing(Fault::garbage(), ["not the JSON expected", "HTTP 200"])
        }
        other => panic!("no rig for {other}"),
    }
}

/// Create with every field the driver holds, then find the token by secret,
/// id and prefix, list it with filters, and revoke it.
fn lifecycle(r: &Rig) {
    let mut extra = Vec::new();
    if r.can(Op::Labels) {
        extra.extend(["--label", "team=payments"]);
    }
    if r.can(Op::Scopes) && !r.needs_scope {
        extra.extend(["--scope", r.scope]);
    }
    if r.can(Op::Names) {
        extra.extend(["--name", "deploy-1"]);
    }
    if r.can(Op::Descriptions) {
        extra.extend(["--description", "ci-runner"]);
    }
    if r.can(Op::UseLimits) {
        extra.extend(["--uses", "3"]);
    }
    let (secret, err) = r.create("15m", &extra);
    let t = r.by_secret(&secret).expect("found by its secret");
    let id = t["id"].as_str().expect("an id").to_string();
    assert!(err.contains(&id), "the summary names {id}: {err}");
    assert_eq!(t["state"], "active", "{t}");
    if r.can(Op::Expiry) {
        let left = secs_until(&t["expires_at"]);
        assert!((880..=905).contains(&left), "15 minutes: {left}");
    }
    if r.can(Op::Labels) {
        assert_eq!(t["labels"]["team"], "payments", "{t}");
    }
    if r.can(Op::Scopes) {
        assert!(t["scopes"].to_string().contains(r.scope), "{t}");
    }
    if r.can(Op::Names) {
        assert_eq!(t["name"], "deploy-1", "{t}");
    }
    if r.can(Op::Descriptions) {
        assert_eq!(t["description"], "ci-runner", "{t}");
    }
    if r.can(Op::UseLimits) {
        assert_eq!(t["max_uses"], 3, "{t}");
    }
    if r.can(Op::InspectById) {
        assert_eq!(r.env.inspect_json(&id)["id"], id.as_str());
        let prefix = &id[..id.len() - 3];
        assert_eq!(
            r.env.inspect_json(prefix)["id"],
            id.as_str(),
            "a prefix will do"
        );
    }
    if r.can(Op::List) {
        let o = r.env.run(&["list", "--state", "all", "-o", "json"]);
        assert_success(&o, &["list"]);
        assert!(!stdout(&o).contains(&secret), "no secret in a list");
        let all: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
        assert!(all.iter().any(|x| x["id"] == id.as_str()), "{all:?}");
        if r.can(Op::Labels) {
            let ids = |label: &str| -> Vec<Value> {
                r.env
                    .list_json(&["--label", label])
                    .iter()
                    .map(|x| x["id"].clone())
                    .collect()
            };
            assert!(ids("team=payments").contains(&Value::from(id.as_str())));
            assert!(ids("team=nobody").is_empty());
        }
    }
    r.revoke(&id, &secret);
    r.assert_revoked(&secret);
}

/// Everything the driver cannot do is refused before any request.
fn refusals(r: &Rig) {
    let mut env = r.env_with(&[]);
    if !r.vars.is_empty() {
        env.set("TOK_URL", &dead_url());
    } else {
        env = Env::new();
    }
    let create = |flags: &[&'static str]| {
        let mut args = vec!["create"];
        // A lifetime the driver takes, so that only `flags` can be refused.
        if !flags.iter().any(|f| f.contains("expir") || *f == "--ttl") {
            args.extend(r.lifetime("15m"));
        }
        args.extend_from_slice(flags);
        args
    };
    let cases: Vec<(Op, Vec<&str>)> = vec![
        (Op::List, vec!["list"]),
        (Op::InspectById, vec!["inspect", "abc123"]),
        (Op::Rotate, vec!["rotate", "abc123"]),
        (Op::Renew, vec!["renew", "abc123", "--increment", "1h"]),
        (Op::Scopes, create(&["--scope", "x"])),
        (Op::Labels, create(&["--label", "a=b"])),
        (Op::Expiry, create(&["--ttl", "5m"])),
        (Op::NoExpiry, create(&["--no-expiry"])),
        (Op::UseLimits, create(&["--uses", "2"])),
        (Op::Names, create(&["--name", "x"])),
        (Op::Descriptions, create(&["--description", "x"])),
    ];
    let mut refused = 0;
    for (op, args) in cases.into_iter().filter(|(op, _)| !r.can(*op)) {
        let o = env.run(&args);
        assert_fails(
            &o,
            exit::UNSUPPORTED,
            &[&format!("cannot {}", op.describe())],
        );
        refused += 1;
    }
    if let Some(c) = &r.control {
        assert!(c.requests().is_empty(), "nothing reached the gateway");
    }
    let all_caps = r.caps == Capabilities::ALL;
    assert!(refused > 0 || all_caps || r.driver == "local" || r.driver == "tok");
}

/// Rotate: a new token like the old one; the old one goes at once, or after
/// a grace period.
fn rotate(r: &Rig) {
    if !r.can(Op::Rotate) {
        return;
    }
    let mut extra = Vec::new();
    for (op, flags) in [
        (Op::Names, ["--name", "svc"]),
        (Op::Labels, ["--label", "k=v"]),
        (Op::UseLimits, ["--uses", "5"]),
    ] {
        if r.can(op) {
            extra.extend(flags);
        }
    }
    if r.can(Op::Scopes) && !r.needs_scope {
        extra.extend(["--scope", "x"]);
    }
    let (old_secret, _) = r.create("2h", &extra);
    let old = r.by_secret(&old_secret).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = r.env.run(&["rotate", &old]);
    assert_success(&o, &["rotate", &old]);
    let new_secret = stdout(&o).trim().to_string();
    assert_ne!(new_secret, old_secret);
    assert_eq!(stdout(&o).lines().count(), 1);
    if old_secret.starts_with("tok_") {
        assert!(new_secret.starts_with("tok_"), "tok makes the new one too");
    }
    assert!(
        stderr(&o).contains(&format!("revoked {old}")),
        "{}",
        stderr(&o)
    );
    let new = r.by_secret(&new_secret).expect("the new token");
    assert_eq!(new["state"], "active");
    let same = |field: &str, op: Op, want: Value| {
        if r.can(op) && !(op == Op::Scopes && r.needs_scope) {
            assert_eq!(new[field], want, "{field} carries over: {new}");
        }
    };
    same("name", Op::Names, "svc".into());
    same("scopes", Op::Scopes, serde_json::json!(["x"]));
    same("max_uses", Op::UseLimits, 5.into());
    if r.can(Op::Labels) {
        assert_eq!(new["labels"]["k"], "v", "{new}");
    }
    if r.can(Op::Expiry) {
        let at = |f: &str| chrono::DateTime::parse_from_rfc3339(new[f].as_str().unwrap()).unwrap();
        let life = (at("expires_at") - at("created_at")).num_seconds();
        assert!((life - 7200).abs() <= 5, "the same lifetime: {life}");
    }
    r.assert_revoked(&old_secret);
    if r.keeps_revoked {
        let old_t = r.env.inspect_json(&old);
        assert!(old_t["revoke_reason"]
            .as_str()
            .unwrap()
            .contains(new["id"].as_str().unwrap()));
        // A revoked token cannot be rotated: a usage error.
        assert_fails(&r.env.run(&["rotate", &old]), exit::USAGE, &["revoked"]);
    }

    if r.can(Op::Expiry) {
        let (old, _) = r.create("2h", &[]);
        let id = r.by_secret(&old).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let o = r.env.run(&["rotate", &id, "--grace", "10m", "-o", "json"]);
        assert_success(&o, &["rotate", "--grace"]);
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert!(v["secret"].as_str().is_some_and(|s| s != old), "{v}");
        let kept = r
            .by_secret(&old)
            .expect("the old token lives on for a while");
        assert_eq!(kept["state"], "active", "{kept}");
        let left = secs_until(&kept["expires_at"]);
        assert!((590..=600).contains(&left), "within the grace: {left}");
    }
}

/// Every list format carries the same tokens, and never a secret.
fn formats(r: &Rig) {
    if !r.can(Op::List) {
        return;
    }
    let mut extra = vec![];
    if r.can(Op::Names) {
        extra.extend(["--name", "deploy-1"]);
    }
    let (s1, _) = r.create("15m", &extra);
    let (s2, _) = r.create("2h", &[]);
    let json = r.env.list_json(&[]);
    let ids: Vec<&str> = json.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert!(ids.len() >= 2, "{json:?}");
    let plain = r.env.ok(&["list"]);
    let [tsv, jsonl, table] = ["tsv", "jsonl", "table"].map(|f| r.env.ok(&["list", "-o", f]));
    for out in [&plain, &tsv, &jsonl, &table] {
        // The boxed table wraps a long id over lines (the output issue, #15).
        let whole = !std::ptr::eq(out, &table) || ids.iter().all(|i| i.len() <= 24);
        for id in ids.iter().filter(|_| whole) {
            assert!(out.contains(id), "{out}");
        }
        assert!(
            !out.contains(&s1) && !out.contains(&s2),
            "a secret leaked into list output"
        );
    }
    assert!(plain.starts_with("ID "), "{plain}");
    if r.can(Op::Names) {
        assert!(plain.contains("deploy-1"), "{plain}");
    }
    if r.can(Op::Expiry) {
        assert!(
            plain.contains('T') && plain.contains('Z'),
            "RFC 3339 times off a TTY: {plain}"
        );
        assert!(
            table.contains("in 1h") || table.contains("in 2h"),
            "relative times: {table}"
        );
    }
    assert!(tsv.starts_with("id\t"), "{tsv}");
    assert_eq!(tsv.lines().count(), ids.len() + 1);
    assert_eq!(jsonl.lines().count(), ids.len());
    if s1.starts_with("tok_") {
        for line in jsonl.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(
                v["fingerprint"].as_str().unwrap().starts_with("tok_"),
                "{v}"
            );
        }
    }
}

/// Bulk revoke by a filter, dry run first, and a partial failure.
fn bulk_revoke(r: &Rig) {
    if !r.can(Op::List) {
        return;
    }
    let (flag, value, mine, other) = if r.can(Op::Names) {
        ("--name", "deploy-*", ["deploy-1", "deploy-2"], "web")
    } else {
        (
            "--label",
            "group=deploy",
            ["group=deploy", "group=deploy"],
            "group=web",
        )
    };
    let make = |v: &str| {
        let (secret, _) = r.create("15m", &[flag, v]);
        let id = r.by_secret(&secret).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        (id, secret)
    };
    let (a, b, c) = (make(mine[0]), make(mine[1]), make(other));
    let o = r
        .env
        .run(&["revoke", flag, value, "--dry-run", "-o", "json"]);
    assert_success(&o, &["revoke --dry-run"]);
    let would: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let mut would: Vec<&str> = would.iter().map(|t| t["id"].as_str().unwrap()).collect();
    if !r.keeps_revoked {
        // Gateways keep creation times to the second: ties go by id.
        would.sort_unstable();
    }
    let mut want = [a.0.as_str(), b.0.as_str()];
    if !r.keeps_revoked {
        want.sort_unstable();
    }
    assert_eq!(would, want);
    assert!(
        stderr(&o).contains("would revoke 2 tokens"),
        "{}",
        stderr(&o)
    );
    for (_, secret) in [&a, &b, &c] {
        let t = r.by_secret(secret).expect("dry run revoked nothing");
        assert_eq!(t["state"], "active");
    }
    let o = r.env.run(&["revoke", flag, value, "--yes", "-o", "json"]);
    assert_success(&o, &["revoke", flag]);
    let report: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report.len(), 2);
    assert!(
        report.iter().all(|x| x["outcome"] == "revoked"),
        "{report:?}"
    );
    r.assert_revoked(&a.1);
    r.assert_revoked(&b.1);
    assert_eq!(r.by_secret(&c.1).unwrap()["state"], "active");

    // One good id and one missing: partial failure.
    let missing = if r.keeps_revoked {
        "tk_doesnotexist"
    } else {
        "abc123"
    };
    let o = r
        .env
        .run_stdin(&["revoke", "-", "--yes"], &format!("{}\n{missing}\n", c.0));
    assert_fails(&o, exit::PARTIAL, &[missing, "1 of 2 failed"]);
    r.assert_revoked(&c.1);
}

/// Renew gives a live token a new lifetime.
fn renew(r: &Rig) {
    if !r.can(Op::Renew) {
        return;
    }
    let (secret, _) = r.create("15m", &[]);
    let id = r.by_secret(&secret).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = r.env.run(&["renew", &id, "--increment", "2h"]);
    assert_success(&o, &["renew", &id]);
    assert!(
        stderr(&o).contains(&format!("renewed {id}")),
        "{}",
        stderr(&o)
    );
    let left = secs_until(&r.by_secret(&secret).unwrap()["expires_at"]);
    assert!((7100..=7205).contains(&left), "two hours now: {left}");
}

/// How a failing gateway reads: a wrong credential (exit 4), an unknown
/// token (exit 3), 5xx and bodies that are not JSON, nothing listening, and
/// no answer in time (exit 1).
fn errors(r: &Rig) {
    let unknown = tok::secret::Secret::generate();
    let o = r.env.run_stdin(&["inspect", "-"], unknown.expose());
    assert_fails(&o, exit::NOT_FOUND, &r.unknown.2);
    if r.can(Op::InspectById) {
        let (id, prefix, _) = r.unknown;
        let o = r.env.run(&["inspect", id]);
        assert_fails(&o, exit::NOT_FOUND, &[&format!("no token matches `{id}`")]);
        for wanted in [id, prefix] {
            let o = r.env.run(&["revoke", wanted, "--yes"]);
            assert_fails(&o, exit::NOT_FOUND, &[wanted]);
        }
    }
    if r.vars.is_empty() {
        return;
    }
    if let Some((var, says)) = &r.bad_credential {
        let mut none = Env::new();
        for (k, v) in r.vars.iter().filter(|(k, _)| k != var) {
            none.set(k, v);
        }
        let sent = r.control.as_ref().map(|c| c.requests().len());
        let o = none.run_stdin(&["inspect", "-"], unknown.expose());
        assert_fails(&o, exit::AUTH, &r.no_credential);
        if DriverKind::from_name(r.driver).is_some_and(|k| k.needs_credential()) {
            let now = r.control.as_ref().map(|c| c.requests().len());
            assert_eq!(now, sent, "nothing sent without a credential");
        }

        let o = r
            .env_with(&[(var, "wrong-credential-0123456789")])
            .run_stdin(&["inspect", "-"], unknown.expose());
        assert_fails(&o, exit::AUTH, says);
        assert!(
            !stderr(&o).contains("wrong-credential"),
            "the credential is not echoed"
        );

        // TOK_ADMIN_TOKEN stands in for the driver's own variable.
        let spec = DriverKind::from_name(r.driver).expect("a driver").spec();
        if spec.credential_env.last() == Some(&tok::env::ADMIN_TOKEN)
            && *var != tok::env::ADMIN_TOKEN
        {
            let (_, value) = r.vars.iter().find(|(k, _)| k == var).expect("set");
            none.set(tok::env::ADMIN_TOKEN, value);
            let o = none.run_stdin(&["inspect", "-"], unknown.expose());
            assert_fails(&o, exit::NOT_FOUND, &r.unknown.2);
        }
    }
    let mut create = vec!["create"];
    create.extend(r.lifetime("15m"));
    create.extend(["--scope", r.scope].iter().filter(|_| r.can(Op::Scopes)));
    let list = [&["list"][..]];
    let every = |run: &dyn Fn(&[&str]) -> std::process::Output, says: &[&str]| {
        let o = run(&["inspect", "-"]);
        assert_fails(&o, exit::FAILURE, says);
        let o = run(&create);
        assert_fails(&o, exit::FAILURE, says);
        assert!(
            stdout(&o).is_empty(),
            "no secret printed for a failed create"
        );
        for args in list.iter().filter(|_| r.can(Op::List)) {
            assert_fails(&run(args), exit::FAILURE, says);
        }
    };
    if let Some(c) = &r.control {
        for (fault, says) in &r.faults {
            c.fail_with(fault.clone());
            every(&|args| r.env.run_stdin(args, unknown.expose()), says);
        }
        c.heal();
    }
    let down = r.env_with(&[("TOK_URL", &dead_url())]);
    let says = ["connection refused", "is the server running"];
    every(&|args| down.run_stdin(args, unknown.expose()), &says);

    // A server that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let slow = r.env_with(&[("TOK_URL", &url), ("TOK_TIMEOUT", "1s")]);
    let o = slow.run_stdin(&["inspect", "-"], unknown.expose());
    assert_fails(&o, exit::FAILURE, &["no answer within 1s", "--timeout"]);
}

macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test] fn local() { super::$scenario(&super::rig("local")) }
            #[test] fn tok() { super::$scenario(&super::rig("tok")) }
            #[test] fn vault() { super::$scenario(&super::rig("vault")) }
            #[test] fn oauth2() { super::$scenario(&super::rig("oauth2")) }
            #[test] fn apipark() { super::$scenario(&super::rig("apipark")) }
            #[test] fn kong() { super::$scenario(&super::rig("kong")) }
            #[test] fn apisix() { super::$scenario(&super::rig("apisix")) }
            #[test] fn tyk() { super::$scenario(&super::rig("tyk")) }
        }
    )*};
}

suite!(
    lifecycle,
    formats,
    refusals,
    rotate,
    renew,
    bulk_revoke,
    errors
);
