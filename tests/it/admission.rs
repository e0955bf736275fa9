//! The guarantees of the proxy's admission cache (docs/proxy.md), each against
//! a real `tok serve` in front of a real upstream: revocation by any process
//! refuses every request that starts after the revoke returned, use limits stay
//! exact under 200 concurrent requests, every decision is audited (and the
//! proxy pushes back rather than lose one), and a flood of unknown secrets
//! keeps memory bounded. Expiry from a cached row is in
//! `proxy::a_short_lived_token_works_then_is_refused`.

use crate::common::Env;
use crate::each_store;
use crate::proxy::Gate;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Every audit entry in the store of `env`, oldest first.
pub fn audit_entries(env: &Env) -> Vec<Value> {
    env.ok(&["audit", "--limit", "1000000", "-o", "jsonl"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

fn audit_requests(gate: &Gate) -> Vec<Value> {
    let mut entries = audit_entries(&gate.server.local());
    entries.retain(|e| e["event"] == "request");
    entries
}

/// Runs `f` on `n` threads at once and gathers what each returned.
pub fn concurrently<T: Send>(n: usize, f: impl Fn() -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n).map(|_| s.spawn(&f)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

each_store!(a_revoke_from_another_process_refuses_every_request_that_starts_after_it);
fn a_revoke_from_another_process_refuses_every_request_that_starts_after_it() {
    let gate = Gate::start(None);
    let (id, secret) = gate.token(&["--ttl", "1h"]);
    assert_eq!(gate.get("/warm", Some(&secret)).status(), StatusCode::OK);
    let stop = AtomicBool::new(false);
    let (revoked_at, seen) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let status = gate.get("/hot", Some(&secret)).status();
                        seen.push((started, status));
                    }
                    seen
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // `tok revoke` with the local driver: another process, on the same
        // store (on PostgreSQL, through this node).
        gate.server.at_once().ok(&["revoke", &id, "--yes"]);
        let revoked_at = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let seen: Vec<(Instant, StatusCode)> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        (revoked_at, seen)
    });
    let before = seen.iter().filter(|(t, _)| *t < revoked_at).count();
    let after: Vec<StatusCode> = seen
        .iter()
        .filter(|(t, _)| *t > revoked_at)
        .map(|(_, s)| *s)
        .collect();
    assert!(before > 0, "the token was in use before the revoke");
    assert!(!after.is_empty(), "requests ran after the revoke");
    assert!(
        after.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "a request that started after the revoke returned was let through: {after:?}"
    );
}

each_store!(a_rotated_token_is_refused_at_once_and_its_successor_admitted);
fn a_rotated_token_is_refused_at_once_and_its_successor_admitted() {
    let gate = Gate::start(None);
    let (id, old) = gate.token(&["--ttl", "1h"]);
    assert_eq!(gate.get("/x", Some(&old)).status(), StatusCode::OK);
    let rotated: Value =
        serde_json::from_str(&gate.server.at_once().ok(&["rotate", &id, "-o", "json"])).unwrap();
    let new = rotated["secret"].as_str().unwrap();
    assert_eq!(
        gate.get("/x", Some(&old)).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gate.get("/x", Some(new)).status(), StatusCode::OK);
}

each_store!(two_hundred_concurrent_requests_with_a_five_use_token_pass_exactly_five);
fn two_hundred_concurrent_requests_with_a_five_use_token_pass_exactly_five() {
    let gate = Gate::start(None);
    let (id, secret) = gate.token(&["--ttl", "1h", "--uses", "5"]);
    let statuses: Vec<StatusCode> = concurrently(200, || gate.get("/x", Some(&secret)).status());
    let ok = statuses.iter().filter(|s| s.is_success()).count();
    assert_eq!(ok, 5, "{statuses:?}");
    assert!(statuses
        .iter()
        .all(|s| s.is_success() || *s == StatusCode::UNAUTHORIZED));
    assert_eq!(gate.upstream.hits(), 5);
    let t = gate.server.local().inspect_json(&id);
    assert_eq!(
        (t["uses"].as_u64(), t["state"].as_str()),
        (Some(5), Some("exhausted"))
    );
}

each_store!(after_a_load_run_the_audit_rows_equal_the_requests_sent);
fn after_a_load_run_the_audit_rows_equal_the_requests_sent() {
    let mut gate = Gate::start(Some(
        "[[route]]\npath = \"/private/**\"\nscopes = [\"p\"]\n",
    ));
    let (id, secret) = gate.token(&["--ttl", "1h"]);
    let unknown = tok::secret::Secret::generate();
    const THREADS: usize = 8;
    const EACH: usize = 250;
    let allowed: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (gate, secret, unknown) = (&gate, &secret, unknown.expose());
                s.spawn(move || {
                    let mut allowed = 0;
                    for i in 0..EACH {
                        let r = match (t + i) % 4 {
                            0 => gate.get("/public", Some(secret)),
                            1 => gate.get("/private/x", Some(secret)),
                            2 => gate.get("/public", Some(unknown)),
                            _ => gate.get("/public", None),
                        };
                        allowed += usize::from(r.status() == StatusCode::OK);
                    }
                    allowed
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(allowed, THREADS * EACH / 4);
    // A graceful stop drains the writer: everything is written when it exits.
    assert!(gate.server.stop().success());
    let rows = audit_requests(&gate);
    // Identical denials that arrive together share a row with their `count`
    // (issue 13); every request sent is still recorded.
    let recorded: u64 = rows.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(
        recorded,
        (THREADS * EACH) as u64,
        "every request sent is recorded"
    );
    let allow_rows = rows.iter().filter(|e| e["decision"] == "allow").count();
    assert_eq!(allow_rows, allowed);
    // The batched use counts add up too.
    assert_eq!(
        gate.server.local().inspect_json(&id)["uses"].as_u64(),
        Some(allowed as u64)
    );
}

#[test]
fn a_stuck_audit_writer_makes_requests_wait_or_get_503_and_loses_nothing() {
    let gate = Gate::start_with(None, &["--audit-queue", "2"]);
    let (_, secret) = gate.token(&["--ttl", "1h"]);
    // Another process holds the store's write lock, so the writer cannot commit.
    let db = gate.server.data_dir.join("tok.db");
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The writer takes this entry and blocks writing it.
    assert_eq!(gate.get("/first", Some(&secret)).status(), StatusCode::OK);
    std::thread::sleep(Duration::from_millis(500));
    let statuses: Vec<StatusCode> = concurrently(8, || gate.get("/x", Some(&secret)).status());
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(ok + refused, statuses.len(), "{statuses:?}");
    assert!(refused >= 1, "the queue of 2 was full: {statuses:?}");
    assert!(ok >= 2, "the queue's room was used: {statuses:?}");
    assert!(gate.server.logs().contains("the audit trail is behind"));
    // Every request that was answered other than 503 has its row.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rows = audit_requests(&gate);
    while rows.len() < ok + 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        rows = audit_requests(&gate);
    }
    assert_eq!(rows.len(), ok + 1, "{rows:#?}");
}

/// The resident memory of a process now, in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

each_store!(a_flood_of_random_secrets_keeps_memory_bounded_and_valid_tokens_working);
fn a_flood_of_random_secrets_keeps_memory_bounded_and_valid_tokens_working() {
    let gate = Gate::start(None);
    let (_, secret) = gate.token(&["--ttl", "1h"]);
    assert_eq!(gate.get("/x", Some(&secret)).status(), StatusCode::OK);
    let flood = |n: usize| {
        concurrently(8, || {
            for _ in 0..n / 8 {
                let wrong = tok::secret::Secret::generate();
                assert_eq!(
                    gate.get("/x", Some(wrong.expose())).status(),
                    StatusCode::UNAUTHORIZED
                );
            }
        })
    };
    // Past the cache's bound for unknown secrets (20,000), then four times as many.
    flood(25_000);
    let plateau = rss_kib(gate.server.pid());
    flood(75_000);
    let after = rss_kib(gate.server.pid());
    assert!(
        after < plateau + 16 * 1024,
        "RSS grew from {plateau} KiB to {after} KiB over 75,000 more unknown secrets"
    );
    assert_eq!(gate.get("/x", Some(&secret)).status(), StatusCode::OK);
}
