//! Several `tok serve` nodes on one PostgreSQL database (a database of its own
//! per test in the cluster of scripts/setup/50-postgres.sh), each with its
//! enforcing proxy in front of the same upstream.

use crate::common::{assert_success, stdout, Env};
use crate::pg::TestDb;
use crate::server::Server;
use crate::upstream::Upstream;
use std::time::{Duration, Instant};

/// A guard against a test hanging, not a measurement.
const GUARD: Duration = Duration::from_secs(30);

struct Cluster {
    db: TestDb,
    admin: String,
    nodes: Vec<Server>,
    _upstream: Upstream,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let db = TestDb::new();
        let mut env = Env::new();
        env.set("PGPASSWORD", &db.password);
        let o = env.run(&["serve", "init", "--store", &db.url]);
        assert_success(&o, &["serve", "init", "--store"]);
        let admin = stdout(&o).trim().to_string();
        let upstream = Upstream::start();
        let nodes = (0..n)
            .map(|i| {
                let name = format!("node-{}", (b'a' + i as u8) as char);
                Server::start_on_store(
                    &db.url,
                    &db.password,
                    &admin,
                    &[
                        "--node-name",
                        &name,
                        "--proxy-listen",
                        "127.0.0.1:0",
                        "--upstream",
                        &upstream.url(),
                    ],
                )
            })
            .collect();
        Cluster {
            db,
            admin,
            nodes,
            _upstream: upstream,
        }
    }

    /// A token made through node `i`'s admin API: (id, secret).
    fn create(&self, i: usize, args: &[&str]) -> (String, String) {
        self.nodes[i].client_with(&self.admin).create_json(args)
    }
}

/// The status of one request through a node's proxy.
fn through(node: &Server, secret: &str) -> u16 {
    node.http()
        .get(format!("{}/anything", node.proxy_url()))
        .bearer_auth(secret)
        .send()
        .expect("the proxy answers")
        .status()
        .as_u16()
}

#[test]
fn a_token_made_on_one_node_works_on_the_others_and_a_revoke_anywhere_holds_everywhere() {
    let c = Cluster::start(3);
    let (id, secret) = c.create(0, &["--ttl", "1h"]);
    // Made on A, admitted on B and C (and A).
    for node in &c.nodes {
        assert_eq!(through(node, &secret), 200);
    }
    // Every node has it cached now. Revoke on C.
    let env = c.nodes[2].client_with(&c.admin);
    assert_success(&env.run(&["revoke", &id, "--yes"]), &["revoke"]);
    // C refuses at once; A and B once the notification arrives, and from then
    // on never admit it again.
    assert_eq!(through(&c.nodes[2], &secret), 401);
    for node in &c.nodes[..2] {
        let start = Instant::now();
        loop {
            let s = through(node, &secret);
            if s == 401 {
                break;
            }
            assert_eq!(s, 200);
            assert!(start.elapsed() < GUARD, "never refused");
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..20 {
            assert_eq!(through(node, &secret), 401);
        }
    }
    // One audit trail, each entry naming its node.
    let nodes = c.db.query_text(
        "SELECT string_agg(DISTINCT node, ',' ORDER BY node) FROM audit WHERE event = 'request'",
    );
    assert_eq!(nodes, "node-a,node-b,node-c");
    // Each node's metrics time its store calls and count the shared tokens
    // (the admin token and the revoked one).
    let m = c.nodes[1]
        .http()
        .get(c.nodes[1].api("/metrics"))
        .bearer_auth(&c.admin)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let value = |series: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{m}"))
    };
    assert!(value("tok_store_duration_seconds_count{op=\"lookup\"}") >= 1.0);
    assert_eq!(value("tok_tokens{state=\"revoked\"}"), 1.0);
    assert_eq!(value("tok_tokens{state=\"active\"}"), 1.0);
}

#[test]
fn three_hundred_requests_over_three_nodes_spend_a_ten_use_token_exactly() {
    let c = Cluster::start(3);
    let (id, secret) = c.create(1, &["--ttl", "1h", "--uses", "10"]);
    let urls: Vec<String> = c.nodes.iter().map(|n| n.proxy_url()).collect();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..30)
            .map(|t| {
                let (urls, secret) = (&urls, &secret);
                s.spawn(move || {
                    let http = reqwest::blocking::Client::builder()
                        .no_proxy()
                        .build()
                        .unwrap();
                    (0..10)
                        .map(|i| {
                            http.get(format!("{}/x", urls[(t + i) % 3]))
                                .bearer_auth(secret)
                                .send()
                                .unwrap()
                                .status()
                                .as_u16()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    // Exactly ten pass. The rest are refused as used up, or, on a machine
    // too loaded to open a connection in time, refused with 503: never let
    // through.
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 401 || **s == 503).count();
    assert_eq!((ok, refused), (10, 290), "{statuses:?}");
    assert_eq!(
        c.db.query_text(&format!("SELECT uses FROM tokens WHERE id = '{id}'")),
        "10"
    );
}

#[test]
fn a_node_killed_mid_load_loses_nothing_it_acknowledged() {
    let mut c = Cluster::start(2);
    let a = c.nodes[0].client_with(&c.admin);
    let acked: std::sync::Mutex<Vec<(String, bool)>> = Default::default();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0.. {
                let out = a.run(&["create", "--ttl", "1h", "-o", "json"]);
                if !out.status.success() {
                    break;
                }
                let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
                let id = v["id"].as_str().unwrap().to_string();
                acked.lock().unwrap().push((id.clone(), false));
                if i % 2 == 0 {
                    if !a.run(&["revoke", &id, "--yes"]).status.success() {
                        break;
                    }
                    acked.lock().unwrap().last_mut().unwrap().1 = true;
                }
            }
        });
        // Let some work be acknowledged, then kill A without warning.
        let start = Instant::now();
        while acked.lock().unwrap().len() < 6 {
            assert!(start.elapsed() < GUARD);
            std::thread::sleep(Duration::from_millis(10));
        }
        c.nodes[0].stop_with(nix::sys::signal::Signal::SIGKILL);
    });
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() >= 6);
    // B has every acknowledged create, and every acknowledged revoke.
    let b = c.nodes[1].client_with(&c.admin);
    for (id, revoked) in &acked {
        let out = b.run(&["inspect", id, "-o", "json"]);
        assert_success(&out, &["inspect", id]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        if *revoked {
            assert_eq!(v["state"], "revoked", "{id}");
        }
    }
}

#[test]
fn while_the_database_is_unreachable_nodes_answer_503_and_never_admit_a_revoked_token() {
    let c = Cluster::start(2);
    let (_, good) = c.create(0, &["--ttl", "1h"]);
    let (bad_id, bad) = c.create(0, &["--ttl", "1h"]);
    for node in &c.nodes {
        assert_eq!(through(node, &good), 200);
        assert_eq!(through(node, &bad), 200);
    }
    let env = c.nodes[0].client_with(&c.admin);
    assert_success(&env.run(&["revoke", &bad_id, "--yes"]), &["revoke"]);
    // The database goes away: no new connections, the open ones ended.
    c.db.exec_admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
        c.db.name
    ));
    c.db.exec_admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        c.db.name
    ));
    let mut unavailable = 0;
    for _ in 0..40 {
        for node in &c.nodes {
            let r = node
                .http()
                .get(format!("{}/x", node.proxy_url()))
                .bearer_auth(&bad)
                .send()
                .unwrap();
            assert_ne!(r.status().as_u16(), 200, "a revoked token was admitted");
            if r.status().as_u16() == 503 {
                assert!(r.headers().contains_key("retry-after"));
                let body: serde_json::Value = r.json().unwrap();
                assert_eq!(body["error"]["code"], "unavailable");
                unavailable += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(unavailable > 0, "the outage was never noticed");
    // Health says so, with the reason, for a load balancer to stop sending.
    for node in &c.nodes {
        let (status, body) = ready(node);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "not_ready", "{body}");
        assert!(
            body["reason"].as_str().unwrap().contains("unavailable"),
            "{body}"
        );
    }
    // Back: both nodes admit the good token again and still refuse the bad one.
    c.db.exec_admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        c.db.name
    ));
    for node in &c.nodes {
        let start = Instant::now();
        while through(node, &good) != 200 {
            assert!(start.elapsed() < GUARD, "never recovered");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(through(node, &bad), 401);
        let start = Instant::now();
        while ready(node).0 != 200 {
            assert!(
                start.elapsed() < GUARD,
                "never ready again: {}",
                ready(node).1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `/v1/health/ready` of a node: status and body.
fn ready(node: &Server) -> (u16, serde_json::Value) {
    let r = node
        .http()
        .get(node.api("/v1/health/ready"))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

#[test]
fn two_nodes_starting_at_once_on_an_empty_database_migrate_it_once() {
    let db = TestDb::new();
    let mut env = Env::new();
    env.set("PGPASSWORD", &db.password);
    let spawn = || {
        env.std_cmd()
            .args(["serve", "init", "--store", &db.url])
            .output()
            .unwrap()
    };
    let (x, y) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    // Both migrated-or-waited; one made the admin token, the other found it
    // (or both made one, if neither saw the other's yet): never an error
    // about the schema.
    for o in [&x, &y] {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            !e.contains("schema") && !e.contains("already exists"),
            "{e}"
        );
    }
    assert_eq!(
        db.query_text("SELECT string_agg(version::text, ',' ORDER BY version) FROM tok_schema"),
        "1,2,3"
    );
}

#[test]
fn the_readmes_more_than_one_node_section_runs_as_written() {
    // The README's block, run by bash as a new user would type it: two nodes
    // on one database, a token made on a, admitted on b, revoked on a, then
    // refused on b. Only the ports, the database and its password are this
    // test's; and where a person would wait for a server to start before the
    // next line, the script waits for its readiness.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## More than one node\n")
        .nth(1)
        .expect("the README has a `More than one node` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the section has a shell block");
    let db = TestDb::new();
    let upstream = Upstream::start();
    let mut script = String::from(
        "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n\
         ready() { until curl -sf \"http://$1/v1/health/ready\" >/dev/null; do sleep 0.1; done; }\n",
    );
    let mut body = block
        .replace("postgres://tok@127.0.0.1:5432/tok", &db.url)
        .replace(
            "export PGPASSWORD=...",
            &format!("export PGPASSWORD='{}'", db.password),
        )
        .replace("http://127.0.0.1:3000", &upstream.url());
    for port in ["8270", "8271", "8080", "8081"] {
        let free = crate::servers::free_port().to_string();
        body = body.replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{free}"));
    }
    for line in body.lines() {
        script.push_str(line);
        script.push('\n');
        if line.trim_end().ends_with('&') {
            let admin = body
                .lines()
                .rev()
                .skip_while(|l| *l != line)
                .skip(1)
                .find_map(|l| l.split("--listen ").nth(1))
                .and_then(|l| l.split_whitespace().next())
                .expect("the node's --listen address, on the line before");
            script.push_str(&format!("ready {admin}\n"));
        }
    }
    let env = Env::new();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_tok"))
        .parent()
        .unwrap();
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env_clear()
        .envs(
            env.std_cmd()
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .current_dir(env.home())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (o, e) = (stdout(&out), crate::common::stderr(&out));
    assert!(
        out.status.success(),
        "{script}\n--- stdout\n{o}--- stderr\n{e}"
    );
    // Admitted on b once (the upstream saw it), then refused there.
    assert_eq!(upstream.hits(), 1, "{o}");
    assert!(o.contains("HTTP/1.1 401"), "{o}");
    assert!(o.contains("revoked"), "{o}");
}
