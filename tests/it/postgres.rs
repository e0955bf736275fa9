//! The PostgreSQL store against a real PostgreSQL (Debian's packages, started
//! by scripts/setup/50-postgres.sh): migrations, the tokens, admission and
//! audit rooms, notifications between nodes, failing closed, and
//! `tok store copy` both ways.

use crate::common::{assert_fails, assert_success, stderr, stdout, Env};
use crate::pg::TestDb;
use chrono::Utc;
use std::time::Duration;
use tok::model::{Filter, NewToken, RevokeOutcome, State, StateFilter};
use tok::store::audit::{AuditFilter, Decision, Entry, Event, Retention};
use tok::store::backend::{self, Backend, Error};
use tok::store::postgres::notify::{Change, Follower, Listener};
use tok::store::postgres::{PgStore, Target};
use tok::store::{Admission, Refusal, Spend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_starting_at_once_migrate_an_empty_database_once() {
    let db = TestDb::new();
    let (a, b) = tokio::join!(
        PgStore::open(db.target(), "a".into()),
        PgStore::open(db.target(), "b".into())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let versions =
        db.query_text("SELECT string_agg(version::text, ',' ORDER BY version) FROM tok_schema");
    assert_eq!(versions, "1,2,3");
    // Both work on the one schema.
    let c = a
        .create(&NewToken::default(), None, Utc::now())
        .await
        .unwrap();
    assert!(b.get(&c.token.id, Utc::now()).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_this_tok_is_refused() {
    let db = TestDb::new();
    drop(db.store("a").await);
    db.exec("INSERT INTO tok_schema (version) VALUES (99)");
    let e = PgStore::open(db.target(), "a".into()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooNew {
                found: 99,
                known: 3,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.hint().unwrap().contains("upgrade tok"));
    assert!(!e.to_string().contains(&db.password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_room_create_list_resolve_revoke_rotate() {
    let db = TestDb::new();
    let s = db.store("a").await;
    let now = Utc::now();
    let mk = |name: &str, scopes: &[&str], label: (&str, &str)| NewToken {
        name: Some(name.into()),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        labels: [(label.0.to_string(), label.1.to_string())].into(),
        expires_at: Some(now + chrono::TimeDelta::hours(1)),
        ..NewToken::default()
    };
    let ci = s
        .create(
            &mk("ci-deploy", &["orders:read"], ("team", "pay")),
            Some("alice"),
            now,
        )
        .await
        .unwrap();
    let web = s
        .create(&mk("web", &["orders:write"], ("team", "web")), None, now)
        .await
        .unwrap();
    assert_eq!(ci.token.created_by.as_deref(), Some("alice"));
    assert_eq!(ci.token.state, State::Active);

    let names = |f: Filter| {
        let s = &s;
        async move {
            s.list(&f, None, Utc::now())
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.name.unwrap_or_default())
                .collect::<Vec<_>>()
        }
    };
    let f = |g: fn(&mut Filter)| {
        let mut f = Filter::default();
        g(&mut f);
        f
    };
    assert_eq!(
        names(f(|f| f.name = Some("ci-*".into()))).await,
        ["ci-deploy"]
    );
    assert_eq!(names(f(|f| f.name = Some("w?b".into()))).await, ["web"]);
    assert_eq!(
        names(f(|f| f.labels = vec![("team".into(), "web".into())])).await,
        ["web"]
    );
    assert_eq!(
        names(f(|f| f.scopes = vec!["orders:read".into()])).await,
        ["ci-deploy"]
    );
    assert_eq!(
        names(f(|f| f.created_by = Some("alice".into()))).await,
        ["ci-deploy"]
    );
    assert_eq!(names(f(|_| {})).await.len(), 2);

    // Pagination by cursor, in (created_at, id) order.
    let first = s
        .list(&f(|f| f.limit = Some(1)), None, Utc::now())
        .await
        .unwrap();
    let cursor = tok::store::Cursor::of(&first[0]);
    let rest = s
        .list(&Filter::default(), Some(&cursor), Utc::now())
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_ne!(rest[0].id, first[0].id);

    let (t, o) = s
        .revoke(&web.token.id, Some("bob"), Some("leaked"), now)
        .await
        .unwrap();
    assert_eq!((t.state, o), (State::Revoked, RevokeOutcome::Revoked));
    let (_, o) = s.revoke(&web.token.id, None, None, now).await.unwrap();
    assert_eq!(o, RevokeOutcome::AlreadyRevoked);
    assert_eq!(names(f(|f| f.state = StateFilter::Revoked)).await, ["web"]);

    // Rotation with grace keeps the old one alive a while; without, revokes it.
    let (new, old) = s
        .rotate(&ci.token.id, Some(60), Some("alice"), now)
        .await
        .unwrap();
    assert_eq!(old.state, State::Active);
    assert!(old.expires_at.unwrap() <= now + chrono::TimeDelta::seconds(61));
    assert_eq!(new.token.scopes, ["orders:read"]);
    assert_eq!(new.token.labels, ci.token.labels);
    let (_, old2) = s.rotate(&new.token.id, None, None, now).await.unwrap();
    assert_eq!(old2.state, State::Revoked);
    let e = s.rotate(&web.token.id, None, None, now).await.unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");

    // The secret is not stored; its hash is, and finds the token.
    let found = s.lookup(&new.secret, now).await.unwrap().unwrap();
    assert_eq!(found.id, new.token.id);
    let stored = db.query_text(
        "SELECT count(*) FROM tokens WHERE secret_hash = sha256(convert_to(fingerprint, 'UTF8'))",
    );
    assert_eq!(stored, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_limits_are_exact_across_three_nodes() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let db = TestDb::new();
    let nodes = [
        db.store("a").await,
        db.store("b").await,
        db.store("c").await,
    ];
    let new = NewToken {
        max_uses: Some(10),
        ..NewToken::default()
    };
    let c = nodes[0].create(&new, None, Utc::now()).await.unwrap();
    let nodes = std::sync::Arc::new(nodes);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let nodes = std::sync::Arc::clone(&nodes);
        let secret = c.secret.clone();
        tasks.push(tokio::spawn(async move {
            let node = &nodes[i % 3];
            backend::admit(node, &secret, Utc::now(), Spend::Limited, |_| true).await
        }));
    }
    // Exactly ten are admitted; the rest are refused as used up or, on a
    // machine too loaded to hand out a connection in time, as unavailable.
    let mut admitted = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Admission::Admitted(_)) => admitted += 1,
            Ok(Admission::Refused(Refusal::Exhausted)) | Err(Error::Unavailable { .. }) => {
                refused += 1
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((admitted, refused), (10, 290));
    let t = nodes[1]
        .get(&c.token.id, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.uses, t.state), (10, State::Exhausted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_nodes_hear_of_revokes_rotations_and_spent_tokens() {
    let db = TestDb::new();
    let a = db.store("a").await;
    let listener = Listener::start(db.target());
    let mut rx = listener.subscribe();
    // The first message says the listener is live and caches start clean.
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, Change::Resync);
    assert!(listener.is_live());

    let c = a
        .create(&NewToken::default(), None, Utc::now())
        .await
        .unwrap();
    let once = a
        .create(
            &NewToken {
                max_uses: Some(1),
                ..NewToken::default()
            },
            None,
            Utc::now(),
        )
        .await
        .unwrap();
    let rot = a
        .create(&NewToken::default(), None, Utc::now())
        .await
        .unwrap();
    a.revoke(&c.token.id, None, None, Utc::now()).await.unwrap();
    backend::admit(&a, &once.secret, Utc::now(), Spend::Limited, |_| true)
        .await
        .unwrap();
    a.rotate(&rot.token.id, None, None, Utc::now())
        .await
        .unwrap();

    let mut heard = Vec::new();
    let mut creates = 0;
    while heard.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Change::Token { op, .. } if op == "create" => creates += 1,
            Change::Token { op, id, hash, .. } => heard.push((op, id, hash)),
            Change::Resync => {}
        }
    }
    assert_eq!(
        heard,
        [
            ("revoke".to_string(), c.token.id.clone(), c.secret.hash()),
            (
                "spent".to_string(),
                once.token.id.clone(),
                once.secret.hash()
            ),
            (
                "rotate".to_string(),
                rot.token.id.clone(),
                rot.secret.hash()
            ),
        ]
    );
    // Three creates and the rotation's successor, each before what follows it.
    assert_eq!(creates, 4);
    // A change of a token's limits is an admission change too.
    db.exec(&format!(
        "UPDATE tokens SET limits = '{{\"allow_ip\":[\"10.0.0.0/8\"]}}' WHERE id = '{}'",
        once.token.id
    ));
    match tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap()
    {
        Change::Token { op, id, .. } => assert_eq!((op.as_str(), id), ("limits", once.token.id)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_connection_says_so_and_comes_back() {
    let db = TestDb::new();
    let _a = db.store("a").await;
    let listener = Listener::start(db.target());
    let mut rx = listener.subscribe();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap(),
        Change::Resync
    );
    assert!(listener.is_live());
    // Kill the listening session from the server side.
    kill_listeners(&db);
    // Lost (Resync, not live), then back (Resync, live).
    let lost = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lost, Change::Resync);
    let back = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, Change::Resync);
    assert!(listener.is_live());
}

fn kill_listeners(db: &TestDb) {
    db.exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = '{}' AND application_name = 'tok listen'",
        db.name
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_applies_changes_and_refuses_while_not_hearing() {
    let db = TestDb::new();
    let a = db.store("a").await;
    let f = Follower::start(db.target());
    let mut seen = Vec::new();
    // Not live yet, or live: either way the first catch-up drops everything.
    for _ in 0..200 {
        if f.catch_up(|c| seen.push(c)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(f.is_live());
    assert!(seen.contains(&Change::Resync), "{seen:?}");
    let c = a
        .create(&NewToken::default(), None, Utc::now())
        .await
        .unwrap();
    a.revoke(&c.token.id, None, None, Utc::now()).await.unwrap();
    let mut ops = Vec::new();
    for _ in 0..200 {
        f.catch_up(|c| {
            if let Change::Token { op, .. } = c {
                ops.push(op)
            }
        })
        .unwrap();
        if ops.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ops, ["create", "revoke"]);
    // Lost: catch-up fails (read through) and says to drop everything.
    kill_listeners(&db);
    let mut refused = false;
    for _ in 0..200 {
        let mut resync = false;
        if f.catch_up(|c| resync |= c == Change::Resync).is_err() {
            assert!(resync);
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused);
    // And back.
    let mut back = false;
    for _ in 0..400 {
        if f.catch_up(|_| {}).is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back && f.is_live());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_room_names_nodes_filters_and_prunes_on_one_node() {
    let db = TestDb::new();
    let (a, b) = (db.store("node-a").await, db.store("node-b").await);
    let now = Utc::now();
    let c = a
        .create(&NewToken::default(), Some("admin"), now)
        .await
        .unwrap();
    let mut deny = Entry::new(Event::Request, now);
    deny.token_id = Some(c.token.id.clone());
    deny.decision = Some(Decision::Deny);
    deny.reason = Some("token revoked".into());
    deny.count = 3;
    deny.request_id = Some("req-1".into());
    let mut allow = Entry::new(Event::Request, now);
    allow.decision = Some(Decision::Allow);
    allow.upstream_status = Some(200);
    allow.latency_ms = Some(3);
    // Quota use goes in the same batch, and adds up across nodes within a
    // window; a later window starts again, a late older one changes nothing.
    let id = c.token.id.clone();
    b.write_batch(
        &[deny, allow],
        &[(id.clone(), 5, now)],
        &[(id.clone(), 1000, 3)],
    )
    .await
    .unwrap();
    assert_eq!(a.get(&id, now).await.unwrap().unwrap().uses, 5);
    a.write_batch(&[], &[], &[(id.clone(), 1000, 2)])
        .await
        .unwrap();
    assert_eq!(b.quota_used(&id, 1000).await.unwrap(), 5);
    a.write_batch(&[], &[], &[(id.clone(), 2000, 1)])
        .await
        .unwrap();
    b.write_batch(&[], &[], &[(id.clone(), 1000, 4)])
        .await
        .unwrap();
    assert_eq!(a.quota_used(&id, 2000).await.unwrap(), 1);
    assert_eq!(a.quota_used(&id, 1000).await.unwrap(), 0);

    let all = a.audit(&AuditFilter::default(), None).await.unwrap();
    let events: Vec<_> = all.iter().map(|e| e.event).collect();
    assert_eq!(events, [Event::Create, Event::Request, Event::Request]);
    assert_eq!(all[2].upstream_status, Some(200));
    let nodes = db.query_text("SELECT string_agg(node, ',' ORDER BY seq) FROM audit");
    assert_eq!(nodes, "node-a,node-b,node-b");
    let denied = b
        .audit(
            &AuditFilter {
                decision: Some(Decision::Deny),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].reason.as_deref(), Some("token revoked"));
    assert_eq!(denied[0].count, 3);
    assert_eq!(denied[0].request_id.as_deref(), Some("req-1"));
    let newest = b
        .audit(
            &AuditFilter {
                limit: Some(1),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(newest[0].seq, all[2].seq);

    // Two nodes prune at once: the entries go once, and the counts add up.
    // Request entries go by their own cap; the admin action (the create)
    // stays, whatever the traffic.
    let r = Retention {
        max_age_secs: 86_400,
        max_rows: 1,
        ..Retention::default()
    };
    let (x, y) = tokio::join!(a.prune_audit(r, now), b.prune_audit(r, now));
    assert_eq!(x.unwrap() + y.unwrap(), 1);
    let left: Vec<_> = a
        .audit(&AuditFilter::default(), None)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(left, [Event::Create, Event::Request]);
    let r = Retention {
        admin_max_age_secs: 0,
        ..r
    };
    assert_eq!(
        a.prune_audit(r, now + chrono::TimeDelta::seconds(1))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_closed_at_once_with_a_retry_time() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = Target::parse(&format!("postgres://tok@127.0.0.1:{port}/tok"), false).unwrap();
    let e = PgStore::open(target, "a".into()).await.unwrap_err();
    match &e {
        Error::Unavailable {
            retry_after,
            target,
            ..
        } => {
            assert!(*retry_after >= Duration::from_secs(1));
            assert_eq!(target, &format!("postgres://tok@127.0.0.1:{port}/tok"));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.hint().unwrap().contains("backoff"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_fails_closed_and_recovers() {
    let db = TestDb::new();
    let a = db.store("a").await;
    let c = a
        .create(&NewToken::default(), None, Utc::now())
        .await
        .unwrap();
    // Refuse new connections to this database and end the open ones.
    db.exec_admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
        db.name
    ));
    db.exec_admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        db.name
    ));
    let mut refused = 0;
    for _ in 0..3 {
        match backend::admit(&a, &c.secret, Utc::now(), Spend::Never, |_| true).await {
            Err(Error::Unavailable { retry_after, .. }) => {
                assert!(retry_after >= Duration::from_secs(1));
                refused += 1;
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
    assert_eq!(refused, 3);
    assert!(!a.is_up());
    db.exec_admin(&format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        db.name
    ));
    // Back after the backoff (at most 5 s); acknowledged writes are there.
    let mut back = None;
    for _ in 0..100 {
        if let Ok(r) = backend::admit(&a, &c.secret, Utc::now(), Spend::Never, |_| true).await {
            back = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(back, Some(Admission::Admitted(_))), "{back:?}");
    assert!(a.is_up());
}

/// Creates tokens in a SQLite store with the real binary; returns their ids
/// and one secret.
/// A quota window's start (ms), as the proxy would record it.
const QUOTA_WINDOW: i64 = 1_700_000_000_000;

fn seed_sqlite(env: &Env) -> (Vec<String>, String) {
    let secret = env.create(&[
        "--ttl", "1h", "--name", "first", "--scope", "a:b", "--label", "k=v",
    ]);
    env.create(&[
        "--no-expiry",
        "--name",
        "second",
        "--uses",
        "3",
        "--rate",
        "10/s",
        "--quota",
        "100/1d",
        "--allow-ip",
        "10.0.0.0/8",
    ]);
    let third = env.create(&["--ttl", "2h", "--name", "third"]);
    let list = env.list_json(&["--state", "all"]);
    let third_id = list.iter().find(|t| t["name"] == "third").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_success(
        &env.run(&["revoke", &third_id, "--reason", "test", "--yes"]),
        &["revoke"],
    );
    let _ = third;
    // What the proxy's batch writer adds: quota use, and an aggregated
    // denial with its request id.
    let second_id = list.iter().find(|t| t["name"] == "second").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = tok::store::Store::open(&env.data_dir()).unwrap();
    let mut e = Entry::new(Event::Request, Utc::now());
    e.token_id = Some(second_id.clone());
    e.decision = Some(Decision::Deny);
    e.count = 7;
    e.request_id = Some("req-copied".into());
    store
        .write_batch(&[e], &[], &[(second_id, QUOTA_WINDOW, 4)])
        .unwrap();
    (
        list.iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect(),
        secret,
    )
}

#[test]
fn store_copy_round_trip_sqlite_postgres_sqlite() {
    let db = TestDb::new();
    let mut env = Env::new();
    env.set("PGPASSWORD", &db.password);
    let (ids, secret) = seed_sqlite(&env);
    let src = env.data_dir();
    let src = src.to_str().unwrap();

    let out = env.run(&["store", "copy", "--from", src, "--to", &db.url]);
    assert_success(&out, &["store", "copy"]);
    assert!(
        stderr(&out).contains("copied 3 of 3 tokens"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
    assert_eq!(db.query_text("SELECT count(*) FROM tokens"), "3");
    let audit_n = db.query_text("SELECT count(*) FROM audit");
    assert_eq!(audit_n, "5", "3 creates, a revoke and a request");
    // The newer columns came along: limits, quota use, count, request id.
    assert_eq!(
        db.query_text(
            "SELECT (limits::jsonb -> 'allow_ip' ->> 0) || ' ' || (limits::jsonb ? 'rate')
                || ' ' || (limits::jsonb ? 'quota') FROM tokens WHERE name = 'second'"
        ),
        "10.0.0.0/8 true true"
    );
    assert_eq!(
        db.query_text(&format!(
            "SELECT used FROM quota_use WHERE window_start = {QUOTA_WINDOW}"
        )),
        "4"
    );
    assert_eq!(
        db.query_text("SELECT count || ' ' || request_id FROM audit WHERE event = 'request'"),
        "7 req-copied"
    );

    // Not again without --force; with it, nothing is added and all verifies.
    let out = env.run(&["store", "copy", "--from", src, "--to", &db.url]);
    assert_fails(&out, 2, &["already holds 3 tokens", "--force"]);
    let out = env.run(&["store", "copy", "--from", src, "--to", &db.url, "--force"]);
    assert_success(&out, &["store", "copy", "--force"]);
    assert!(
        stderr(&out).contains("copied 0 of 3 tokens and 0 of 5"),
        "{}",
        stderr(&out)
    );

    // The secret made on SQLite works against PostgreSQL: hashes moved.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let found = rt.block_on(async {
        let s = db.store("check").await;
        s.lookup(&tok::secret::Secret::new(secret.clone()), Utc::now())
            .await
            .unwrap()
    });
    assert_eq!(found.unwrap().name.as_deref(), Some("first"));

    // And back into a new SQLite store: field by field the same as the source.
    let back = Env::new();
    let back_dir = back.data_dir();
    let out = env.run(&[
        "store",
        "copy",
        "--from",
        &db.url,
        "--to",
        back_dir.to_str().unwrap(),
    ]);
    assert_success(&out, &["store", "copy", "back"]);
    let before = env.list_json(&["--state", "all"]);
    let after = back.list_json(&["--state", "all"]);
    assert_eq!(before, after);
    assert_eq!(before.len(), ids.len());
    let audit_before = stdout(&env.run(&["audit", "-o", "json"]));
    let audit_after = stdout(&back.run(&["audit", "-o", "json"]));
    assert_eq!(audit_before, audit_after);
    assert!(audit_after.contains("req-copied"), "{audit_after}");
    let quota = tok::store::Store::open(&back_dir)
        .unwrap()
        .quota_used(
            before.iter().find(|t| t["name"] == "second").unwrap()["id"]
                .as_str()
                .unwrap(),
            QUOTA_WINDOW,
        )
        .unwrap();
    assert_eq!(quota, 4);
}

#[test]
fn store_copy_takes_no_password_from_argv_and_names_a_missing_source() {
    let db = TestDb::new();
    let env = Env::new();
    let with_pw = db.url_with_password();
    let out = env.run(&[
        "store",
        "copy",
        "--from",
        "/nonexistent/tok",
        "--to",
        &db.url,
    ]);
    assert_fails(&out, 3, &["no tok store at /nonexistent/tok"]);
    let data = env.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let out = env.run(&[
        "store",
        "copy",
        "--from",
        &with_pw,
        "--to",
        data.to_str().unwrap(),
    ]);
    assert_fails(&out, 2, &["TOK_STORE"]);
    assert!(!stderr(&out).contains(&db.password));
    // Through the environment it is accepted.
    let out = env
        .cmd()
        .env("TOK_COPY_FROM", &with_pw)
        .args(["store", "copy", "--to", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out, &["store", "copy", "(from env)"]);
    assert!(
        stderr(&out).contains("copied 0 of 0 tokens"),
        "{}",
        stderr(&out)
    );
}

fn tls_url(db: &TestDb, host: &str, query: &str) -> String {
    let port = db
        .url
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap();
    format!(
        "postgres://tok:{}@{host}:{port}/{}?{query}",
        db.password, db.name
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_with_rustls() {
    let db = TestDb::new();
    let ca =
        std::env::var("TOK_TEST_PG_CA").expect("TOK_TEST_PG_CA (scripts/setup/50-postgres.sh)");
    let other = std::env::var("TOK_TEST_PG_OTHER_CA").expect("TOK_TEST_PG_OTHER_CA");
    for host in ["127.0.0.1", "localhost"] {
        let url = tls_url(&db, host, &format!("sslmode=verify-full&sslrootcert={ca}"));
        let s = PgStore::open(Target::parse(&url, true).unwrap(), "tls".into())
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        s.schema_check().await.unwrap();
        let all_tls = db.query_text(&format!(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = '{}' AND a.application_name = 'tok'",
            db.name
        ));
        assert_eq!(all_tls, "t", "{host}: every connection of the store is TLS");
    }
    for mode in ["verify-full", "require"] {
        let url = tls_url(
            &db,
            "127.0.0.1",
            &format!("sslmode={mode}&sslrootcert={other}"),
        );
        let e = PgStore::open(Target::parse(&url, true).unwrap(), "tls".into())
            .await
            .unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.to_lowercase().contains("certificate"),
            "{mode}: {shown}"
        );
        assert!(!shown.contains(&db.password), "{shown}");
    }
}

#[test]
fn serve_init_makes_one_admin_token_in_a_postgres_store() {
    let db = TestDb::new();
    let mut env = Env::new();
    env.set("PGPASSWORD", &db.password);
    let out = env.run(&["serve", "init", "--store", &db.url, "--name", "root"]);
    assert_success(&out, &["serve", "init", "--store"]);
    let secret = stdout(&out);
    assert!(secret.trim().starts_with("tok_"), "{secret}");
    assert!(
        stderr(&out).contains(&format!("tok serve --store {}", db.url)),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        db.query_text("SELECT name || ' ' || scopes::text FROM tokens"),
        r#"root ["tok:admin"]"#
    );
    // Only hashes are stored.
    let all = db.query_text("SELECT string_agg(t::text, '') FROM tokens t");
    assert!(!all.contains(secret.trim()));
    // A second init refuses, naming the store.
    let out = env.run(&["serve", "init", "--store", &db.url]);
    assert_fails(&out, 2, &["already has an active admin token", &db.url]);
    // TOK_STORE works the same, and may carry the password.
    let mut env2 = Env::new();
    env2.set("TOK_STORE", &db.url_with_password());
    let out = env2.run(&["serve", "init"]);
    assert_fails(&out, 2, &["already has an active admin token"]);
    assert!(!stderr(&out).contains(&db.password));
    // A password on the command line is refused before anything connects.
    let out = env.run(&["serve", "init", "--store", &db.url_with_password()]);
    assert_fails(&out, 2, &["TOK_STORE", "PGPASSWORD"]);
    assert!(!stderr(&out).contains(&db.password));
    let out = env.run(&["serve", "init", "--store", "./some/dir"]);
    assert_fails(&out, 2, &["--store takes a postgres:// URL", "--data-dir"]);
}

#[test]
fn a_config_files_store_key_picks_postgresql_but_never_holds_a_password() {
    let db = TestDb::new();
    let env = Env::new();
    let file = env.home().join("serve.toml");
    std::fs::write(
        &file,
        format!("store = \"{}\"\nnode_name = \"node-a\"\n", db.url),
    )
    .unwrap();
    let o = env.run(&["serve", "check-config", file.to_str().unwrap()]);
    assert_success(&o, &["serve", "check-config"]);
    assert!(
        stderr(&o).contains(&format!("store {}", db.url)),
        "{}",
        stderr(&o)
    );

    std::fs::write(&file, format!("store = \"{}\"\n", db.url_with_password())).unwrap();
    for args in [
        vec!["serve", "check-config", file.to_str().unwrap()],
        vec!["serve", "--config", file.to_str().unwrap()],
    ] {
        let o = env.run(&args);
        assert_fails(
            &o,
            2,
            &["line 1, key `store`", "PGPASSWORD", ".pgpass", "TOK_STORE"],
        );
        assert!(!stderr(&o).contains(&db.password), "{}", stderr(&o));
    }
}
