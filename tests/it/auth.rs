//! `tok login`, `tok logout`, `tok auth status` and the credential path, against
//! a real Secret Service (gnome-keyring on private D-Bus session buses, started
//! by scripts/setup/10-keyring.sh) and an in-process gateway that counts requests.

use crate::auth_server::{Admin, AuthServer};
use crate::common::*;
use chrono::{TimeDelta, Utc};
use std::process::Output;

/// A bus address from the setup script; the tests cannot run without it.
fn bus(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: the keyring tests need a real Secret Service. Run them through \
             scripts/test, which starts D-Bus session buses with gnome-keyring \
             (scripts/setup/10-keyring.sh)"
        )
    })
}

fn secret_tool(bus: &str, args: &[&str]) -> Output {
    std::process::Command::new("secret-tool")
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .output()
        .unwrap_or_else(|e| {
            panic!("could not run secret-tool ({e}); scripts/setup/10-keyring.sh installs libsecret-tools")
        })
}

/// What the keyring holds for tok's `account`, read by libsecret, not by tok.
fn keyring_lookup(bus: &str, account: &str) -> Option<String> {
    let o = secret_tool(bus, &["lookup", "service", "tok", "username", account]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// An Env whose tok talks to the Secret Service on `bus`.
fn env_on(bus: &str) -> Env {
    let mut env = Env::new();
    env.set("DBUS_SESSION_BUS_ADDRESS", bus);
    env
}

/// Takes the D-Bus session away from this Env's tok (as in an SSH session).
fn drop_bus(env: &mut Env) {
    env.vars.retain(|(k, _)| k != "DBUS_SESSION_BUS_ADDRESS");
}

fn add_profile(env: &Env, name: &str, url: &str) {
    env.ok(&["profile", "add", name, "--url", url]);
}

fn login(env: &Env, profile: &str, secret: &str) -> Output {
    env.run_stdin(
        &["login", "--profile", profile, "--with-token"],
        &format!("{secret}\n"),
    )
}

/// `tok login --profile P --with-token --insecure-storage`, the secret on stdin.
fn login_to_file(env: &Env, profile: &str, secret: &str) -> Output {
    env.run_stdin(
        &[
            "login",
            "--profile",
            profile,
            "--with-token",
            "--insecure-storage",
        ],
        &format!("{secret}\n"),
    )
}

fn status_json(env: &Env, args: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let mut all = vec!["auth", "status", "-o", "json"];
    all.extend_from_slice(args);
    let o = env.run(&all);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("auth status json ({e}): {}\n{}", stdout(&o), stderr(&o)));
    (o, v)
}

#[test]
fn login_stores_the_credential_in_the_secret_service_under_documented_attributes() {
    let bus = bus("TOK_TEST_DBUS");
    let server =
        AuthServer::start(vec![Admin::new("adm-one-s3cret", "tk_admin1", "ops")
            .expiring(Utc::now() + TimeDelta::days(30))]);
    let env = env_on(&bus);
    add_profile(&env, "prod", &format!("{}/", server.url));

    let o = login(&env, "prod", "adm-one-s3cret");
    assert_success(&o, &["login"]);
    assert_eq!(stdout(&o), "", "login prints nothing on stdout");
    let err = stderr(&o);
    assert!(err.contains("logged in to profile `prod`"), "{err}");
    assert!(err.contains("tk_admin1 (ops)"), "{err}");
    assert!(err.contains("in the OS keyring"), "{err}");
    assert!(!err.contains("adm-one-s3cret"), "the secret leaked: {err}");
    assert!(
        !err.contains("expires at"),
        "30 days away is no warning: {err}"
    );
    assert_eq!(server.requests(), 1, "one whoami before saving");

    // tok notes where it stored the credential, and nothing secret.
    let logins = std::fs::read_to_string(env.config_dir().join("logins.toml")).unwrap();
    assert!(logins.contains("store = \"keyring\""), "{logins}");
    assert!(!logins.contains("adm-one-s3cret"), "{logins}");

    // The account is keyed by profile and the normalised URL (no trailing slash).
    let account = format!("prod@{}", server.url);
    assert_eq!(
        keyring_lookup(&bus, &account).as_deref(),
        Some("adm-one-s3cret")
    );
    let found = secret_tool(&bus, &["search", "--all", "tok_url", &server.url]);
    let attrs = format!("{}{}", stdout(&found), stderr(&found));
    for needle in [
        "attribute.service = tok".to_string(),
        format!("attribute.username = {account}"),
        "attribute.application = tok".to_string(),
        "attribute.tok_profile = prod".to_string(),
        format!("attribute.tok_url = {}", server.url),
        "attribute.target = default".to_string(),
        format!("label = tok credential for profile `prod` ({})", server.url),
    ] {
        assert!(attrs.contains(&needle), "{needle:?} not in:\n{attrs}");
    }

    let (o, rows) = status_json(&env, &[]);
    assert_success(&o, &["auth", "status"]);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["profile"], "prod");
    // `profile add` stored the URL normalised (no trailing slash).
    assert_eq!(r["url"], server.url);
    assert_eq!(r["driver"], "tok");
    assert_eq!(r["credential"], "keyring");
    assert_eq!(r["ok"], true);
    assert_eq!(r["principal"], "tk_admin1 (ops)");
    assert!(r["expires_at"].as_str().unwrap().ends_with('Z'), "{r}");
    assert_eq!(server.requests(), 2);

    let o = env.run(&["logout", "--profile", "prod"]);
    assert_success(&o, &["logout"]);
    assert!(
        stderr(&o).contains("removed the credential"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        keyring_lookup(&bus, &account),
        None,
        "logout removed the item"
    );

    let (o, rows) = status_json(&env, &[]);
    assert_fails(&o, exit::AUTH, &["1 of 1 cannot authenticate"]);
    assert_eq!(rows[0]["credential"], "none");
    assert_eq!(rows[0]["ok"], false);
    assert_eq!(server.requests(), 2, "no request without a credential");
}

#[test]
fn two_profiles_on_one_gateway_keep_their_own_credentials() {
    let bus = bus("TOK_TEST_DBUS");
    let server = AuthServer::start(vec![
        Admin::new("adm-two-a", "tk_a", "alice"),
        Admin::new("adm-two-b", "tk_b", "bob"),
    ]);
    let env = env_on(&bus);
    add_profile(&env, "alice", &server.url);
    add_profile(&env, "bob", &server.url);
    assert_success(&login(&env, "alice", "adm-two-a"), &["login alice"]);
    assert_success(&login(&env, "bob", "adm-two-b"), &["login bob"]);

    assert_eq!(
        keyring_lookup(&bus, &format!("alice@{}", server.url)).as_deref(),
        Some("adm-two-a")
    );
    assert_eq!(
        keyring_lookup(&bus, &format!("bob@{}", server.url)).as_deref(),
        Some("adm-two-b")
    );

    let (o, rows) = status_json(&env, &[]);
    assert_success(&o, &["auth", "status"]);
    let principal = |p: &str| {
        rows.iter()
            .find(|r| r["profile"] == p)
            .map(|r| r["principal"].clone())
            .unwrap()
    };
    assert_eq!(principal("alice"), "tk_a (alice)");
    assert_eq!(principal("bob"), "tk_b (bob)");

    // --profile narrows the status to one; the table form names the source.
    let table = env.ok(&["auth", "status", "--profile", "bob"]);
    assert!(table.starts_with("bob\n"), "{table}");
    assert!(table.contains("credential: OS keyring"), "{table}");
    assert!(table.contains("ok, as tk_b (bob)"), "{table}");

    env.ok(&["logout", "--profile", "alice"]);
    assert_eq!(keyring_lookup(&bus, &format!("alice@{}", server.url)), None);
    assert_eq!(
        keyring_lookup(&bus, &format!("bob@{}", server.url)).as_deref(),
        Some("adm-two-b"),
        "logging one profile out leaves the other"
    );
}

#[test]
fn a_rejected_credential_is_not_saved() {
    let bus = bus("TOK_TEST_DBUS");
    let server = AuthServer::start(vec![Admin::new("adm-right", "tk_r", "right")]);
    let env = env_on(&bus);
    add_profile(&env, "prod", &server.url);
    let o = login(&env, "prod", "adm-wrong-guess");
    assert_fails(&o, exit::AUTH, &["nothing was saved", "not authenticated"]);
    assert!(!stderr(&o).contains("adm-wrong-guess"), "{}", stderr(&o));
    assert_eq!(server.requests(), 1);
    assert_eq!(keyring_lookup(&bus, &format!("prod@{}", server.url)), None);
}

#[test]
fn login_reads_the_credential_from_stdin_or_a_terminal_only() {
    let bus = bus("TOK_TEST_DBUS");
    let server = AuthServer::start(vec![Admin::new("adm-in", "tk_in", "in")]);
    let env = env_on(&bus);
    add_profile(&env, "prod", &server.url);

    // No terminal and no --with-token: nothing to ask on.
    let o = env.run(&["login", "--profile", "prod"]);
    assert_fails(&o, exit::USAGE, &["no terminal", "--with-token"]);
    // Never from argv.
    let o = env.run(&["login", "--profile", "prod", "adm-in"]);
    assert_fails(&o, exit::USAGE, &["unexpected argument"]);
    let o = env.run_stdin(&["login", "--profile", "prod", "--with-token"], " \n");
    assert_fails(&o, exit::USAGE, &["the credential is empty"]);
    let o = env.run_stdin(&["login", "--profile", "prod", "--with-token"], "a\nb\n");
    assert_fails(&o, exit::USAGE, &["more than one line"]);
    // The local driver has nothing to log in to.
    let o = env.run_stdin(&["login", "--with-token"], "x\n");
    assert_fails(&o, exit::USAGE, &["the local driver needs no credential"]);
    assert_eq!(server.requests(), 0);

    // No profile: the account is the URL alone.
    let o = env.run_stdin(&["login", "--url", &server.url, "--with-token"], "adm-in");
    assert_success(&o, &["login --url"]);
    assert_eq!(keyring_lookup(&bus, &server.url).as_deref(), Some("adm-in"));
    let (o, rows) = status_json(&env, &["--url", &server.url]);
    assert_fails(&o, exit::AUTH, &["1 of 2 cannot authenticate"]);
    let none = rows.iter().find(|r| r["profile"].is_null()).unwrap();
    assert_eq!(none["ok"], true, "{none}");
    assert_eq!(none["credential"], "keyring");
    let prod = rows.iter().find(|r| r["profile"] == "prod").unwrap();
    assert_eq!(prod["credential"], "none", "{prod}");
    env.ok(&["logout", "--url", &server.url]);
    assert_eq!(keyring_lookup(&bus, &server.url), None);
}

#[test]
fn without_a_d_bus_session_every_path_fails_with_auth_and_sends_nothing() {
    let bus = bus("TOK_TEST_DBUS");
    let server = AuthServer::start(vec![Admin::new("adm-nobus", "tk_n", "n")]);
    let mut env = env_on(&bus);
    add_profile(&env, "prod", &server.url);
    add_profile(&env, "fresh", &server.url);
    assert_success(&login(&env, "prod", "adm-nobus"), &["login"]);
    assert_eq!(server.requests(), 1);

    // Later, in a session without D-Bus (no address, no $XDG_RUNTIME_DIR/bus).
    drop_bus(&mut env);
    for args in [
        &["--profile", "prod", "list"][..],
        &["--profile", "prod", "create", "--ttl", "1m"][..],
    ] {
        let o = env.run(args);
        assert_fails(
            &o,
            exit::AUTH,
            &[
                "could not read the credential for profile `prod`",
                "dbus session",
                "TOK_ADMIN_TOKEN",
                "--insecure-storage",
            ],
        );
    }
    let o = login(&env, "fresh", "adm-nobus");
    assert_fails(
        &o,
        exit::AUTH,
        &[
            "could not store the credential for profile `fresh`",
            "dbus session",
            "TOK_ADMIN_TOKEN",
            "--insecure-storage",
        ],
    );
    let (o, rows) = status_json(&env, &[]);
    assert_fails(&o, exit::AUTH, &["2 of 2 cannot authenticate"]);
    let row = |p: &str| rows.iter().find(|r| r["profile"] == p).unwrap().clone();
    assert_eq!(row("prod")["credential"], "error");
    assert!(row("prod")["error"]
        .as_str()
        .unwrap()
        .contains("dbus session"));
    // A profile that never logged in does not need a keyring to say so.
    assert_eq!(row("fresh")["credential"], "none");
    assert_eq!(server.requests(), 1, "no request after a keyring failure");
    assert!(
        !env.config_dir().join("credentials").exists(),
        "no silent fallback to a plaintext file"
    );
}

#[test]
fn a_locked_keyring_fails_with_auth_and_sends_nothing() {
    let bus = bus("TOK_TEST_DBUS_LOCKED");
    let server = AuthServer::start(vec![Admin::new("adm-lock", "tk_l", "l")]);
    let env = env_on(&bus);
    add_profile(&env, "prod", &server.url);
    add_profile(&env, "other", &server.url);
    let o = login(&env, "prod", "adm-lock");
    assert!(
        o.status.success(),
        "login on {bus} failed; if it is locked from an earlier run, run the tests through \
         scripts/test, which starts a fresh keyring: {}",
        stderr(&o)
    );
    assert_eq!(server.requests(), 1);

    let lock = std::process::Command::new("dbus-send")
        .args([
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            "array:objpath:/org/freedesktop/secrets/collection/login",
        ])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus)
        .output()
        .expect("dbus-send (dbus-bin)");
    assert!(lock.status.success(), "{}", stderr(&lock));
    let o = secret_tool(
        &bus,
        &[
            "lookup",
            "service",
            "tok",
            "username",
            &format!("prod@{}", server.url),
        ],
    );
    assert!(!o.status.success(), "the keyring is locked now");

    let o = env.run(&["--profile", "prod", "list"]);
    assert_fails(
        &o,
        exit::AUTH,
        &[
            "from the OS keyring",
            "prompt dismissed",
            "TOK_ADMIN_TOKEN",
            "--insecure-storage",
        ],
    );
    let o = login(&env, "other", "adm-lock");
    assert_fails(
        &o,
        exit::AUTH,
        &[
            "in the OS keyring",
            "locked",
            "TOK_ADMIN_TOKEN",
            "--insecure-storage",
        ],
    );
    assert_eq!(
        server.requests(),
        1,
        "nothing reached the gateway after the lock"
    );
}

#[test]
fn a_hung_keyring_times_out_with_auth_and_sends_nothing() {
    let server = AuthServer::start(vec![Admin::new("adm-hung", "tk_h", "h")]);
    let mut env = env_on(&bus("TOK_TEST_DBUS"));
    add_profile(&env, "prod", &server.url);
    add_profile(&env, "later", &server.url);
    assert_success(&login(&env, "prod", "adm-hung"), &["login"]);
    assert_eq!(server.requests(), 1);

    // The Secret Service on this bus owns its name but never answers.
    env.set("DBUS_SESSION_BUS_ADDRESS", &bus("TOK_TEST_DBUS_HUNG"));
    env.set("TOK_KEYRING_TIMEOUT", "1s");
    let o = env.run(&["--profile", "prod", "list"]);
    assert_fails(
        &o,
        exit::AUTH,
        &[
            "did not answer within 1s",
            "TOK_ADMIN_TOKEN",
            "--insecure-storage",
        ],
    );
    let o = login(&env, "later", "adm-hung");
    assert_fails(&o, exit::AUTH, &["did not answer within 1s"]);
    assert_eq!(server.requests(), 1, "nothing reached the gateway");

    // The environment comes first and never touches the keyring.
    env.set("TOK_ADMIN_TOKEN", "adm-hung");
    let (o, rows) = status_json(&env, &["--profile", "prod"]);
    assert_success(&o, &["auth", "status"]);
    assert_eq!(rows[0]["credential"], "env");
    assert_eq!(rows[0]["credential_detail"], "TOK_ADMIN_TOKEN");
    assert_eq!(rows[0]["principal"], "tk_h (h)");
}

#[cfg(unix)]
#[test]
fn insecure_storage_is_a_private_file_refused_when_others_can_read_it() {
    use std::os::unix::fs::PermissionsExt;
    let server = AuthServer::start(vec![Admin::new("adm-file", "tk_f", "f")]);
    // No D-Bus session: the file is what the user chose, not a fallback.
    let env = Env::new();
    add_profile(&env, "lab", &server.url);
    let o = login_to_file(&env, "lab", "adm-file");
    assert_success(&o, &["login --insecure-storage"]);
    let err = stderr(&o);
    assert!(
        err.contains("warning:") && err.contains("PLAINTEXT"),
        "{err}"
    );

    let file = env
        .config_dir()
        .join("credentials")
        .join("credentials.toml");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("secret = \"adm-file\""), "{text}");
    assert!(
        text.contains(&format!("[credential.\"lab@{}\"]", server.url)),
        "{text}"
    );

    let (o, rows) = status_json(&env, &[]);
    assert_success(&o, &["auth", "status"]);
    assert_eq!(rows[0]["credential"], "file");
    assert_eq!(rows[0]["credential_detail"], file.display().to_string());
    assert_eq!(rows[0]["ok"], true);
    assert_eq!(server.requests(), 2);

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = env.run(&["--profile", "lab", "list"]);
    assert_fails(&o, exit::AUTH, &["refusing to use", "0644", "chmod 600"]);
    let (o, rows) = status_json(&env, &[]);
    assert_fails(&o, exit::AUTH, &["cannot authenticate"]);
    assert!(
        rows[0]["error"].as_str().unwrap().contains("0644"),
        "{}",
        rows[0]
    );
    assert_eq!(server.requests(), 2, "a refused file sends nothing");

    // Writing again warns again and makes the file private again.
    let o = login_to_file(&env, "lab", "adm-file");
    assert_success(&o, &["login --insecure-storage"]);
    assert!(stderr(&o).contains("PLAINTEXT"));
    assert_eq!(mode(&file), 0o600);

    env.ok(&["logout", "--profile", "lab"]);
    assert!(!file.exists(), "logout removed the last entry and the file");
}

#[test]
fn commands_warn_when_the_credential_expires_within_a_day_without_asking_again() {
    let bus = bus("TOK_TEST_DBUS");
    let server = AuthServer::start(vec![
        Admin::new("adm-soon", "tk_s", "soon").expiring(Utc::now() + TimeDelta::hours(2))
    ]);
    let env = env_on(&bus);
    add_profile(&env, "prod", &server.url);
    let o = login(&env, "prod", "adm-soon");
    assert_success(&o, &["login"]);
    assert!(
        stderr(&o).contains("warning: this credential expires at"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server.auth_self_requests(), 1);

    // Any command that uses the credential warns, from what login learnt.
    let o = env.run(&["--profile", "prod", "list"]);
    let err = stderr(&o);
    assert!(
        err.contains("warning: the credential for profile `prod`")
            && err.contains("(from OS keyring) expires at")
            && err.contains("run `tok login`"),
        "{err}"
    );
    assert!(!stdout(&o).contains("warning"), "warnings stay off stdout");
    assert_eq!(
        server.auth_self_requests(),
        1,
        "no extra whoami for the warning"
    );

    // A different credential (here from the environment) for the same account
    // does not inherit that expiry.
    let mut env = env;
    env.set("TOK_ADMIN_TOKEN", "adm-other");
    let o = env.run(&["--profile", "prod", "list"]);
    assert!(!stderr(&o).contains("expires at"), "{}", stderr(&o));
}

#[test]
fn log_in_once_then_create_with_no_credential_in_sight() {
    // A real gateway whose driver is merged: OpenBao through the vault driver.
    let bao = crate::servers::Bao::start();
    let env = env_on(&bus("TOK_TEST_DBUS"));
    env.ok(&[
        "profile",
        "add",
        "bao",
        "--driver",
        "vault",
        "--url",
        &bao.addr,
        "--default",
    ]);
    let o = env.run_stdin(&["login", "--with-token"], &bao.root);
    assert_success(&o, &["login"]);
    assert!(
        stderr(&o).contains("logged in to profile `bao`"),
        "{}",
        stderr(&o)
    );

    let before = bao.accessors().len();
    let secret = env.create(&["--ttl", "10m", "--scope", "default"]);
    assert!(
        secret.starts_with("s.") || secret.starts_with("hvs."),
        "{secret}"
    );
    assert_eq!(
        bao.accessors().len(),
        before + 1,
        "the token exists on the server"
    );

    let (o, rows) = status_json(&env, &[]);
    assert_success(&o, &["auth", "status"]);
    assert_eq!(rows[0]["driver"], "vault");
    assert_eq!(rows[0]["credential"], "keyring");
    assert_eq!(rows[0]["default"], true);

    env.ok(&["logout"]);
    let o = env.run(&["list"]);
    assert_fails(&o, exit::AUTH, &["VAULT_TOKEN"]);
}

/// A gateway driver's double, the right admin credential, and what `tok login`
/// and `tok auth status` should call the principal.
struct GatewayCase {
    driver: &'static str,
    url: String,
    control: std::sync::Arc<crate::doubles::Control>,
    right: &'static str,
    /// As the double sees the right credential (APIPark's carries `Bearer `).
    sent: String,
    principal: &'static str,
    extra: Vec<&'static str>,
    /// Keeps the double running for the test.
    _double: Box<dyn std::any::Any>,
}

fn gateway_cases() -> Vec<GatewayCase> {
    use crate::doubles::{apipark::Apipark, apisix::Apisix, kong::Kong, tyk::Tyk};
    let apipark = Apipark::start("apipark-sys-key-right", &["app-1"]);
    let kong = Kong::start(Some("kong-rbac-token-right"), &["alice"]);
    let apisix = Apisix::start("apisix-admin-key-right", &["jack"]);
    let tyk = Tyk::start("tyk-gw-secret-right", true, true);
    vec![
        GatewayCase {
            driver: "apipark",
            url: apipark.url().to_string(),
            control: apipark.server.control.clone(),
            right: "apipark-sys-key-right",
            sent: "Bearer apipark-sys-key-right".into(),
            principal: "APIPark system API key, for app `app-1` (0 apikey authorizations)",
            extra: vec!["--app", "app-1"],
            _double: Box::new(apipark),
        },
        GatewayCase {
            driver: "kong",
            url: kong.url().to_string(),
            control: kong.server.control.clone(),
            right: "kong-rbac-token-right",
            sent: "kong-rbac-token-right".into(),
            principal: "Kong Admin API 3.9.0.0, RBAC token",
            extra: vec![],
            _double: Box::new(kong),
        },
        GatewayCase {
            driver: "apisix",
            url: apisix.url().to_string(),
            control: apisix.server.control.clone(),
            right: "apisix-admin-key-right",
            sent: "apisix-admin-key-right".into(),
            principal: "APISIX Admin API key",
            extra: vec![],
            _double: Box::new(apisix),
        },
        GatewayCase {
            driver: "tyk",
            url: tyk.url().to_string(),
            control: tyk.server.control.clone(),
            right: "tyk-gw-secret-right",
            sent: "tyk-gw-secret-right".into(),
            principal: "Tyk Gateway API secret",
            extra: vec![],
            _double: Box::new(tyk),
        },
    ]
}

#[test]
fn gateway_drivers_log_in_only_with_a_credential_the_gateway_accepts() {
    for case in gateway_cases() {
        let d = case.driver;
        // No D-Bus session: the plaintext file is what the user chose.
        let env = Env::new();
        let mut add = vec!["profile", "add", "gw", "--driver", d, "--url", &case.url];
        add.extend(case.extra.iter().copied());
        add.push("--default");
        env.ok(&add);
        let file = env
            .config_dir()
            .join("credentials")
            .join("credentials.toml");
        let login = |secret: &str| {
            env.run_stdin(
                &["login", "--with-token", "--insecure-storage"],
                &format!("{secret}\n"),
            )
        };

        // A wrong credential: the gateway refuses it, and nothing is stored.
        let o = login("wrong-guess-for-the-gateway");
        assert_fails(
            &o,
            exit::AUTH,
            &["nothing was saved", "refused the admin credential"],
        );
        let err = stderr(&o);
        assert!(err.contains("copied whole"), "{d}: {err}");
        assert!(
            !err.contains("wrong-guess"),
            "{d}: the secret leaked: {err}"
        );
        assert!(!file.exists(), "{d}: a refused credential was stored");
        assert!(!env.config_dir().join("logins.toml").exists(), "{d}");
        assert_eq!(
            case.control.credentials(),
            [match d {
                "apipark" => "Bearer wrong-guess-for-the-gateway",
                _ => "wrong-guess-for-the-gateway",
            }],
            "{d}: one whoami request, with the typed credential"
        );

        // The right one is checked, then stored.
        let o = login(case.right);
        assert_success(&o, &[d, "login"]);
        let err = stderr(&o);
        assert!(
            err.contains(&format!(
                "logged in to profile `gw` ({}) as {}",
                case.url, case.principal
            )),
            "{d}: {err}"
        );
        assert!(!err.contains(case.right), "{d}: the secret leaked: {err}");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains(&format!("secret = \"{}\"", case.right)),
            "{d}: {text}"
        );
        assert_eq!(case.control.credentials().len(), 2, "{d}");

        // Later commands, with no credential in the environment, use it.
        let o = env.run(&["list", "-o", "json"]);
        assert_success(&o, &[d, "list"]);
        assert_eq!(stdout(&o).trim(), "[]", "{d}");
        let seen = case.control.credentials();
        assert!(seen.len() > 2, "{d}: list sent nothing");
        assert!(
            seen[2..].iter().all(|c| *c == case.sent),
            "{d}: list sent {seen:?}"
        );

        // And auth status says it works, and as whom.
        let (o, rows) = status_json(&env, &[]);
        assert_success(&o, &[d, "auth status"]);
        assert_eq!(rows.len(), 1, "{d}");
        let r = &rows[0];
        assert_eq!(r["driver"], d);
        assert_eq!(r["credential"], "file", "{d}: {r}");
        assert_eq!(r["ok"], true, "{d}: {r}");
        assert_eq!(r["principal"], case.principal, "{d}: {r}");
        assert_eq!(r["expires_at"], serde_json::Value::Null, "{d}: {r}");
        let table = env.ok(&["auth", "status"]);
        assert!(
            table.contains(&format!("status:     ok, as {}", case.principal))
                && table.contains("expires:    never, or the gateway does not say"),
            "{d}: {table}"
        );
        assert_eq!(
            case.control.credentials().last().unwrap(),
            &case.sent,
            "{d}"
        );
    }
}

#[test]
fn the_real_keyring_holds_a_gateway_credential_that_login_checked() {
    let bus = bus("TOK_TEST_DBUS");
    let gw = crate::doubles::apisix::Apisix::start("apisix-key-for-keyring", &["jack"]);
    let env = env_on(&bus);
    env.ok(&[
        "profile",
        "add",
        "six",
        "--driver",
        "apisix",
        "--url",
        gw.url(),
        "--default",
    ]);
    let o = env.run_stdin(&["login", "--with-token"], "apisix-key-wrong\n");
    assert_fails(
        &o,
        exit::AUTH,
        &["nothing was saved", "failed to check token"],
    );
    let account = format!("six@{}", gw.url());
    assert_eq!(keyring_lookup(&bus, &account), None);

    let o = env.run_stdin(&["login", "--with-token"], "apisix-key-for-keyring\n");
    assert_success(&o, &["login"]);
    assert!(stderr(&o).contains("in the OS keyring"), "{}", stderr(&o));
    assert_eq!(
        keyring_lookup(&bus, &account).as_deref(),
        Some("apisix-key-for-keyring")
    );
    let secret = env.create(&["--no-expiry", "--owner", "jack"]);
    assert!(
        gw.credentials()
            .iter()
            .any(|(_, v)| v["plugins"]["key-auth"]["key"] == secret.as_str()),
        "the key exists on the gateway"
    );
    assert!(gw
        .server
        .control
        .credentials()
        .iter()
        .skip(1)
        .all(|c| c == "apisix-key-for-keyring"));
    env.ok(&["logout"]);
    assert_eq!(keyring_lookup(&bus, &account), None);
}

#[test]
fn kong_without_rbac_needs_no_login_and_stores_no_unchecked_token() {
    let kong = crate::doubles::kong::Kong::start(None, &["alice"]);
    let env = Env::new();
    env.ok(&[
        "profile",
        "add",
        "oss",
        "--driver",
        "kong",
        "--url",
        kong.url(),
        "--default",
    ]);

    // Kong OSS answers any token, so accepting one proves nothing.
    let o = env.run_stdin(
        &["login", "--with-token", "--insecure-storage"],
        "any-token-at-all\n",
    );
    assert_fails(
        &o,
        exit::UNSUPPORTED,
        &[
            "nothing was saved",
            "accepts any credential",
            "Kong OSS, or RBAC off",
            "works without a credential",
        ],
    );
    assert!(!stderr(&o).contains("any-token-at-all"), "{}", stderr(&o));
    assert!(!env.config_dir().join("credentials").exists());
    assert!(!env.config_dir().join("logins.toml").exists());
    assert_eq!(kong.server.control.requests(), ["GET /"]);

    // Without a credential the driver works, and auth status says so.
    let (o, rows) = status_json(&env, &[]);
    assert_success(&o, &["auth", "status"]);
    assert_eq!(rows[0]["credential"], "none", "{}", rows[0]);
    assert_eq!(rows[0]["ok"], true, "{}", rows[0]);
    assert_eq!(
        rows[0]["principal"],
        "Kong Admin API 3.9.0, without an admin token"
    );
    assert_eq!(
        kong.server.control.credentials(),
        ["any-token-at-all", ""],
        "login sent the typed token; status sent none"
    );

    // A token from the environment works there too, and status says Kong did not check it.
    let mut env = env;
    env.set("KONG_ADMIN_TOKEN", "env-token");
    let (o, rows) = status_json(&env, &[]);
    assert_success(&o, &["auth", "status"]);
    assert_eq!(rows[0]["credential"], "env");
    assert_eq!(
        rows[0]["principal"],
        "Kong Admin API 3.9.0, which checks no admin token (Kong OSS, or RBAC off)"
    );
}

#[test]
fn auth_status_sends_the_environment_credential_only_to_the_gateway_in_use() {
    let used = AuthServer::start(vec![Admin::new("adm-env-for-used", "tk_u", "used")]);
    let other = AuthServer::start(vec![Admin::new("adm-other-stored", "tk_o", "other")]);
    let bare = AuthServer::start(vec![Admin::new("adm-env-for-used", "tk_b", "bare")]);
    // No D-Bus session: `other` keeps its credential in the file it chose.
    let mut env = Env::new();
    env.ok(&["profile", "add", "used", "--url", &used.url, "--default"]);
    add_profile(&env, "other", &other.url);
    add_profile(&env, "bare", &bare.url);
    let o = login_to_file(&env, "other", "adm-other-stored");
    assert_success(&o, &["login --profile other"]);
    env.set("TOK_ADMIN_TOKEN", "adm-env-for-used");

    let (o, rows) = status_json(&env, &["--insecure"]);
    // `bare` would accept the environment's secret: it fails because it never gets it.
    assert_fails(&o, exit::AUTH, &["1 of 3 cannot authenticate"]);
    let row = |p: &str| rows.iter().find(|r| r["profile"] == p).unwrap().clone();
    let (u, ot, b) = (row("used"), row("other"), row("bare"));
    assert_eq!((&u["ok"], &u["credential"]), (&true.into(), &"env".into()));
    assert_eq!(u["note"], serde_json::Value::Null, "{u}");
    assert_eq!(
        (&ot["ok"], &ot["credential"]),
        (&true.into(), &"file".into())
    );
    assert_eq!(ot["principal"], "tk_o (other)");
    assert_eq!(b["ok"], false);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("no credential stored"),
        "{b}"
    );
    for r in [&ot, &b] {
        let note = r["note"].as_str().unwrap_or_else(|| panic!("no note: {r}"));
        assert!(
            note.contains("TOK_ADMIN_TOKEN was not sent") && note.contains("profile `used`"),
            "{note}"
        );
    }
    assert_eq!(used.authorizations(), ["Bearer adm-env-for-used"]);
    // One request from login, one from status, each with the stored credential.
    assert_eq!(other.authorizations(), ["Bearer adm-other-stored"; 2]);
    assert_eq!(bare.requests(), 0);
    // --insecure was typed for the gateway in use, not for the others.
    let err = stderr(&o);
    assert!(err.contains(&used.url), "{err}");
    assert!(
        !err.contains(&other.url) && !err.contains(&bare.url),
        "{err}"
    );

    // So was --ca-cert: it breaks the gateway in use only.
    let (o, rows) = status_json(&env, &["--ca-cert", "/nonexistent/ca.pem"]);
    assert_fails(&o, exit::AUTH, &["2 of 3 cannot authenticate"]);
    let row = |p: &str| rows.iter().find(|r| r["profile"] == p).unwrap().clone();
    assert!(
        row("used")["error"]
            .as_str()
            .unwrap()
            .contains("could not read CA file"),
        "{}",
        row("used")
    );
    assert_eq!(row("other")["ok"], true, "{}", row("other"));
    assert_eq!(other.authorizations(), ["Bearer adm-other-stored"; 3]);
    assert_eq!(bare.requests(), 0);

    // The table says so too.
    let o = env.run(&["auth", "status"]);
    let out = stdout(&o);
    assert!(
        out.contains("note:       TOK_ADMIN_TOKEN was not sent here"),
        "{out}"
    );
    assert_eq!(bare.requests(), 0);
    assert!(!other
        .authorizations()
        .iter()
        .any(|a| a.contains("adm-env-for-used")));
}

#[cfg(unix)]
#[test]
fn a_broken_credential_file_is_reported_without_its_secret() {
    use std::os::unix::fs::PermissionsExt;
    let server = AuthServer::start(vec![Admin::new("adm-broken-s3cret", "tk_x", "x")]);
    let env = Env::new();
    add_profile(&env, "lab", &server.url);
    let o = login_to_file(&env, "lab", "adm-broken-s3cret");
    assert_success(&o, &["login --insecure-storage"]);
    let file = env
        .config_dir()
        .join("credentials")
        .join("credentials.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("secret = "))
        .unwrap()
        + 1;
    // A hand edit that lost the closing quote of the secret.
    std::fs::write(
        &file,
        text.replace("\"adm-broken-s3cret\"", "\"adm-broken-s3cret"),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = env.run(&["--profile", "lab", "list"]);
    assert_fails(
        &o,
        exit::USAGE,
        &["is not a tok credential file", &format!("(line {line})")],
    );
    assert!(!stderr(&o).contains("s3cret"), "{}", stderr(&o));
    assert_eq!(
        server.requests(),
        1,
        "only login's check reached the gateway"
    );
}
