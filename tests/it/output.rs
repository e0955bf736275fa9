//! The one renderer: every row kind in every format (insta snapshots), tables
//! that fit 80 and 120 columns without cutting an id, TSV headers, colour
//! choices, `--json FIELDS` and `--jq`.
//!
//! Ids, fingerprints and absolute times differ per run; `normalise` replaces
//! them with stand-ins of the same width, so the snapshots keep the layout.

use crate::common::*;
use serde_json::Value;

/// Tokens with long names and several scopes, made in a fixed order.
fn populated() -> Env {
    let env = Env::new();
    env.create(&[
        "--ttl",
        "15m",
        "--name",
        "deploy-orders-service-production-eu-west",
        "--scope",
        "orders:read",
        "--scope",
        "orders:write",
        "--scope",
        "payments:read",
    ]);
    env.create(&["--ttl", "1d", "--name", "ci", "--uses", "10"]);
    env.create(&[
        "--ttl",
        "2h",
        "--label",
        "team=web",
        "--description",
        "for the web team",
    ]);
    env
}

/// `text` with every token id, fingerprint and RFC 3339 time of `env`
/// replaced by stand-ins of the same width.
fn normalise(env: &Env, text: &str) -> String {
    let tokens = env.list_json(&["--state", "all"]);
    let mut out = text.to_string();
    for (n, t) in tokens.iter().enumerate() {
        let id = t["id"].as_str().unwrap();
        out = out.replace(id, &format!("tk_{:0>width$}", n + 1, width = id.len() - 3));
        let fp = t["fingerprint"].as_str().unwrap();
        let stand_in: String = format!("tok_{:0>6}", n + 1);
        let rest: String = fp.chars().skip(stand_in.chars().count()).collect();
        out = out.replace(fp, &format!("{stand_in}{rest}"));
    }
    replace_times(&out)
}

/// Each `YYYY-MM-DDTHH:MM:SS[.fff]Z` becomes `2030-01-01T00:00:00Z` padded to
/// its own length.
fn replace_times(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|k| b.get(k).is_some_and(u8::is_ascii_digit));
    while i < b.len() {
        let shape = digits(i..i + 4)
            && b.get(i + 4) == Some(&b'-')
            && b.get(i + 10) == Some(&b'T')
            && b.get(i + 13) == Some(&b':')
            && digits(i + 17..i + 19);
        if shape {
            let mut j = i + 19;
            if b.get(j) == Some(&b'.') {
                j += 1;
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
            }
            if b.get(j) == Some(&b'Z') {
                let len = j + 1 - i;
                let mut stand_in = "2030-01-01T00:00:00".to_string();
                if len > 20 {
                    stand_in.push('.');
                    stand_in.push_str(&"0".repeat(len - 21));
                }
                stand_in.push('Z');
                out.push_str(&stand_in);
                i = j + 1;
                continue;
            }
        }
        let c = s[i..].chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// `tok ARGS` with COLUMNS set, asserting success; its stdout.
fn at_width(env: &Env, columns: &str, args: &[&str]) -> String {
    let o = env
        .cmd()
        .env("COLUMNS", columns)
        .args(args)
        .output()
        .unwrap();
    assert_success(&o, args);
    stdout(&o)
}

/// Every format of one command, one section each, for one snapshot. Tables
/// show times relative to now, so the snapshots of kinds whose tables show
/// a past time (`now`, `1s ago`) leave them out (`tables`: false) and the
/// tests check their tables' shape instead.
fn every_format(env: &Env, args: &[&str]) -> String {
    every_format_of(env, args, true)
}

fn every_format_of(env: &Env, args: &[&str], tables: bool) -> String {
    let mut all = String::new();
    let formats: &[&str] = if tables {
        &["table", "wide", "plain", "tsv", "json", "jsonl"]
    } else {
        &["plain", "tsv", "json", "jsonl"]
    };
    for &format in formats {
        let mut a = args.to_vec();
        a.extend(["-o", format]);
        all.push_str(&format!("--- -o {format}\n{}", at_width(env, "120", &a)));
    }
    normalise(env, &all)
}

#[test]
fn list_fits_80_columns_and_never_cuts_an_id() {
    let env = populated();
    let ids: Vec<String> = env
        .list_json(&[])
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    for columns in ["80", "120"] {
        let table = at_width(&env, columns, &["list", "-o", "table"]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "one line per token, no wrapping:\n{table}");
        for line in &lines {
            assert!(line.chars().count() <= columns.parse().unwrap(), "{line}");
        }
        for id in &ids {
            assert!(
                lines.iter().any(|l| l.starts_with(id.as_str())),
                "{id} whole:\n{table}"
            );
        }
        for header in ["ID", "NAME", "STATE", "EXPIRES", "SCOPES"] {
            assert!(lines[0].contains(header), "{header} at {columns}:\n{table}");
        }
    }
    // Narrower than the id column needs: still whole.
    let narrow = at_width(&env, "30", &["list", "-o", "table"]);
    for id in &ids {
        assert!(narrow.contains(id.as_str()), "{narrow}");
    }
    insta::assert_snapshot!(
        "list_80",
        normalise(&env, &at_width(&env, "80", &["list", "-o", "table"]))
    );
    insta::assert_snapshot!(
        "list_120",
        normalise(&env, &at_width(&env, "120", &["list", "-o", "table"]))
    );
}

#[test]
fn tokens_in_every_format() {
    let env = populated();
    insta::assert_snapshot!("tokens", every_format_of(&env, &["list"], false));
    let wide = at_width(&env, "80", &["list", "-o", "wide"]);
    let header = wide.lines().next().unwrap();
    for h in [
        "ID",
        "LAST USED",
        "CREATED BY",
        "FINGERPRINT",
        "CREATED",
        "LABELS",
        "DESCRIPTION",
        "REVOKED BY",
        "REASON",
    ] {
        assert!(header.contains(h), "-o wide shows every column: {header}");
    }
    assert!(
        wide.contains("for the web team") && wide.contains("team=web"),
        "{wide}"
    );
    let id = env.list_json(&["--name", "ci"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut one = String::new();
    for format in ["tsv", "json", "jsonl", "env"] {
        one.push_str(&format!(
            "--- -o {format}\n{}",
            env.ok(&["inspect", &id, "-o", format])
        ));
    }
    insta::assert_snapshot!("token_one", normalise(&env, &one));
}

#[test]
fn audit_entries_in_every_format() {
    let env = populated();
    let snap = every_format_of(&env, &["audit"], false);
    let table = at_width(&env, "80", &["audit", "-o", "table"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("AT ") && lines[0].contains("EVENT") && lines[0].contains("TOKEN"),
        "{table}"
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{table}");
    insta::assert_snapshot!("audit", snap);
}

#[test]
fn revoke_reports_profiles_drivers_and_auth_status_in_every_format() {
    let env = populated();
    let ci = env.list_json(&["--name", "ci"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut reports = String::new();
    for format in ["tsv", "json", "jsonl"] {
        let (id, _) = env.create_json(&["--ttl", "1h", "--name", &format!("r-{format}")]);
        reports.push_str(&format!(
            "--- -o {format}\n{}",
            env.ok(&["revoke", &id, &ci, "--yes", "-o", format])
        ));
    }
    insta::assert_snapshot!("revoke_reports", normalise(&env, &reports));

    env.ok(&[
        "profile",
        "add",
        "dev",
        "--data-dir",
        "data/tok",
        "--default",
    ]);
    env.ok(&["profile", "add", "prod", "--url", "https://tok.example.com"]);
    insta::assert_snapshot!("profiles", every_format(&env, &["profile", "list"]));
    insta::assert_snapshot!("drivers", every_format(&env, &["drivers"]));
    insta::assert_snapshot!(
        "drivers_80",
        at_width(&env, "80", &["drivers", "-o", "table"])
    );

    env.ok(&["profile", "remove", "prod"]);
    let mut status = String::new();
    for format in ["table", "plain", "tsv", "json"] {
        status.push_str(&format!(
            "--- -o {format}\n{}",
            at_width(&env, "120", &["auth", "status", "-o", format])
        ));
    }
    insta::assert_snapshot!("auth_status", status);
}

#[test]
fn tsv_always_has_its_header_and_env_from_the_environment_is_ignored_by_lists() {
    let env = Env::new();
    let tsv = env.ok(&["list", "-o", "tsv"]);
    assert!(tsv.starts_with("id\tname\tstate\t"), "{tsv:?}");
    assert_eq!(tsv.lines().count(), 1);
    let audit = env.ok(&["audit", "-o", "tsv"]);
    assert!(audit.starts_with("seq\tat\tevent"), "{audit:?}");

    // TOK_OUTPUT=env is for create in CI; a list in the same job still works.
    let mut env = populated();
    env.set("TOK_OUTPUT", "env");
    let secret = env.ok(&["create", "--ttl", "1m"]);
    assert!(secret.starts_with("TOK_TOKEN=tok_"), "{secret}");
    let list = env.ok(&["list"]);
    assert!(list.starts_with("ID "), "{list}");
    assert_fails(
        &env.run(&["list", "-o", "env"]),
        exit::USAGE,
        &["not a list"],
    );
}

#[test]
fn colour_follows_the_flag_then_the_environment() {
    let env = populated();
    let esc = |o: &std::process::Output| stdout(o).contains('\u{1b}');
    // NO_COLOR is set by the harness: --color always still wins, off a terminal too.
    let always = env.run(&["list", "--color", "always"]);
    assert!(esc(&always), "{}", stdout(&always));
    assert!(
        stdout(&always).contains("\u{1b}[32mactive"),
        "{}",
        stdout(&always)
    );
    let never = env
        .cmd()
        .env("CLICOLOR_FORCE", "1")
        .args(["list", "--color", "never"])
        .output()
        .unwrap();
    assert!(!esc(&never));
    // Auto: NO_COLOR beats CLICOLOR_FORCE; without NO_COLOR, CLICOLOR_FORCE colours a pipe.
    let no_color = env
        .cmd()
        .env("CLICOLOR_FORCE", "1")
        .arg("list")
        .output()
        .unwrap();
    assert!(!esc(&no_color), "{}", stdout(&no_color));
    let forced = env
        .cmd()
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .arg("list")
        .output()
        .unwrap();
    assert!(esc(&forced), "{}", stdout(&forced));
    let json = env.run(&["list", "--color", "always", "-o", "json"]);
    assert!(!esc(&json), "JSON is never coloured");
}

#[test]
fn json_fields_and_jq_work_like_gh() {
    let env = populated();
    let v: Value = serde_json::from_str(&env.ok(&["list", "--json", "id,name"])).unwrap();
    let first = v[0].as_object().unwrap();
    assert_eq!(first.keys().collect::<Vec<_>>(), ["id", "name"]);
    assert_eq!(v.as_array().unwrap().len(), 3);

    let names = env.ok(&[
        "list",
        "--jq",
        ".[] | select(.uses == 0 and .max_uses == 10) | .name",
    ]);
    assert_eq!(names, "ci\n");
    let count = env.ok(&["list", "--json", "id", "--jq", "length"]);
    assert_eq!(count, "3\n");
    let lines = env.ok(&["list", "-o", "jsonl", "--jq", ".state"]);
    assert_eq!(lines, "active\nactive\nactive\n");
    let id = v[0]["id"].as_str().unwrap();
    assert_eq!(env.ok(&["inspect", id, "--jq", ".id"]), format!("{id}\n"));
    let one: Value = serde_json::from_str(&env.ok(&["inspect", id, "--json", "state"])).unwrap();
    assert_eq!(one, serde_json::json!({"state": "active"}));
    let drivers = env.ok(&["drivers", "--jq", ".[0].driver"]);
    assert_eq!(drivers, "local\n");

    assert_fails(
        &env.run(&["list", "--json", "id,nmae"]),
        exit::USAGE,
        &[
            "unknown JSON field: nmae",
            "available fields: id,name,state",
        ],
    );
    assert_fails(
        &env.run(&["list", "--json"]),
        exit::USAGE,
        &["--json needs the fields", "id,name"],
    );
    assert_fails(
        &env.run(&["list", "--jq", ".["]),
        exit::USAGE,
        &["--jq", "not a jq program"],
    );
    assert_fails(
        &env.run(&["list", "--jq", ".[0].id.x"]),
        exit::USAGE,
        &["the --jq program failed"],
    );
    assert_fails(
        &env.run(&["list", "--json", "id", "-o", "tsv"]),
        exit::USAGE,
        &["--json and --jq print JSON"],
    );
    // A command without --json points to -o json.
    assert_fails(
        &env.run(&["create", "--ttl", "1m", "--json", "id"]),
        exit::USAGE,
        &["-o json"],
    );
    // A bad --jq refuses before anything is revoked.
    assert_fails(
        &env.run(&["revoke", id, "--yes", "--jq", ".["]),
        exit::USAGE,
        &["--jq"],
    );
    assert_eq!(env.inspect_json(id)["state"], "active");
}

#[test]
fn limit_zero_is_refused_and_a_huge_argument_is_not_echoed() {
    let env = Env::new();
    assert_fails(
        &env.run(&["list", "--limit", "0"]),
        exit::USAGE,
        &["--limit"],
    );
    assert_fails(
        &env.run(&["audit", "--limit", "0"]),
        exit::USAGE,
        &["--limit"],
    );
    let huge = "x".repeat(120_000);
    for (args, expected) in [
        (vec!["create", "--ttl", huge.as_str()], exit::USAGE),
        (vec!["list", "--json", huge.as_str()], exit::USAGE),
        (
            vec!["create", "--ttl", "1m", "--name", huge.as_str()],
            exit::USAGE,
        ),
        (vec!["list", "--state", huge.as_str()], exit::USAGE),
        (vec!["inspect", huge.as_str()], exit::USAGE),
    ] {
        let o = env.run(&args);
        assert_eq!(code(&o), expected, "{:?}: {}", &args[..2], stderr(&o));
        assert!(
            stderr(&o).len() < 2_000,
            "{:?} echoed {} bytes",
            &args[..2],
            stderr(&o).len()
        );
    }
}
