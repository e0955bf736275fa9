//! Defences against token reuse (docs/reuse.md), each against a real `tok
//! serve` in front of a real upstream: a rate limit that lets exactly its
//! burst through out of many concurrent requests, answers the rest with 429,
//! `Retry-After` and the httpapi draft's fields, audits them aggregated and
//! lets requests through again once the bucket refills; a quota that survives
//! a restart; and drivers that cannot hold a limit refusing it before any
//! request; tokens bound to address ranges, IPv4 and IPv6, directly and
//! behind a trusted proxy.

use crate::common::*;
use crate::each_store;
use crate::proxy::Gate;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How many requests each aggregated 429 entry says it stands for.
fn refused_in(entries: &[Value], token: &str) -> u64 {
    entries
        .iter()
        .filter(|e| e["token_id"] == token && e["decision"] == "deny")
        .filter_map(|e| {
            let reason = e["reason"].as_str()?;
            let (_, rest) = reason.split_once(": ")?;
            if !rest.contains("refused with 429") {
                return None;
            }
            rest.split(' ').next()?.parse::<u64>().ok()
        })
        .sum()
}

each_store!(a_rate_of_five_per_second_lets_five_of_fifty_concurrent_requests_through);
fn a_rate_of_five_per_second_lets_five_of_fifty_concurrent_requests_through() {
    let gate = Gate::start(None);
    let (id, secret) = gate.token(&["--ttl", "1h", "--rate", "5/s", "--burst", "5"]);
    let t = gate.server.client().inspect_json(&id);
    assert_eq!(t["rate"]["requests"], 5);
    assert_eq!(t["rate"]["per_secs"], 1);
    assert_eq!(t["rate"]["burst"], 5);
    // Connections are opened first, so the fifty arrive together.
    let clients: Vec<reqwest::blocking::Client> = (0..50)
        .map(|_| {
            reqwest::blocking::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
        })
        .collect();
    let barrier = std::sync::Barrier::new(50);
    let started = Instant::now();
    let answers: Vec<(StatusCode, reqwest::header::HeaderMap)> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .map(|c| {
                let (barrier, secret, url) = (&barrier, &secret, &gate.proxy);
                s.spawn(move || {
                    barrier.wait();
                    let r = c
                        .get(format!("{url}/x"))
                        .bearer_auth(secret)
                        .send()
                        .unwrap();
                    (r.status(), r.headers().clone())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let ok = answers.iter().filter(|(s, _)| s.is_success()).count();
    // The bucket refills one request every 200 ms: exactly the burst passes
    // unless the fifty took longer than that to arrive on a loaded machine,
    // and then no more than the refill allows.
    let refill = (elapsed.as_millis() / 200) as usize;
    assert!(
        ok >= 5 && ok <= 5 + refill,
        "{ok} passed in {elapsed:?}: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    if elapsed < Duration::from_millis(200) {
        assert_eq!(ok, 5);
    }
    assert_eq!(gate.upstream.hits(), ok);
    let refused: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(refused.len(), 50 - ok, "every other answer is a 429");
    for (_, h) in &refused {
        let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
        assert_eq!(retry, 1, "one request refills in 200 ms: retry after 1 s");
        assert_eq!(h["ratelimit-policy"], "\"rate\";q=5;w=1");
        assert_eq!(h["ratelimit"], "\"rate\";r=0;t=1");
    }
    let passed = answers.iter().find(|(s, _)| s.is_success()).unwrap();
    assert_eq!(passed.1["ratelimit-policy"], "\"rate\";q=5;w=1");

    // A second later the bucket is full again.
    std::thread::sleep(Duration::from_millis(1100));
    let r = gate.get("/again", Some(&secret));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["ratelimit"], "\"rate\";r=4;t=1");

    // Every 429 is in the trail, in a few aggregated entries rather than one each.
    let want = refused.len() as u64;
    let entries = gate.audit_until(|e| refused_in(e, &id) >= want);
    assert_eq!(refused_in(&entries, &id), want, "{entries:#?}");
    let aggregated = entries
        .iter()
        .filter(|e| {
            e["token_id"] == id.as_str()
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("refused with 429"))
        })
        .count();
    assert!(
        aggregated < refused.len(),
        "{aggregated} entries for {want} refusals"
    );
    let allowed = entries
        .iter()
        .filter(|e| e["token_id"] == id.as_str() && e["decision"] == "allow")
        .count();
    assert!(allowed >= ok, "each pass has its own entry");
}

each_store!(a_quota_survives_a_restart);
fn a_quota_survives_a_restart() {
    let mut gate = Gate::start(None);
    let (id, secret) = gate.token(&["--ttl", "1h", "--quota", "3/1h"]);
    assert_eq!(
        gate.server.client().inspect_json(&id)["quota"],
        serde_json::json!({"limit": 3, "period_secs": 3600})
    );
    for _ in 0..2 {
        let r = gate.get("/x", Some(&secret));
        assert_eq!(r.status(), StatusCode::OK);
    }
    let proxies = |logs: &str| -> Vec<String> {
        logs.lines()
            .filter(|l| l.contains("proxy listening"))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("url=")))
            .map(str::to_string)
            .collect()
    };
    let before = proxies(&gate.server.logs()).len();
    gate.server.restart();
    // The log holds both runs: wait for the new proxy's line.
    let deadline = Instant::now() + Duration::from_secs(30);
    let proxy = loop {
        let seen = proxies(&gate.server.logs());
        if seen.len() > before {
            break seen.last().unwrap().clone();
        }
        assert!(Instant::now() < deadline, "{}", gate.server.logs());
        std::thread::sleep(Duration::from_millis(20));
    };
    let get = || {
        gate.http
            .get(format!("{proxy}/x"))
            .bearer_auth(&secret)
            .send()
            .unwrap()
    };
    let r = get();
    assert_eq!(r.status(), StatusCode::OK, "the third of three");
    assert_eq!(r.headers()["ratelimit-policy"], "\"quota\";q=3;w=3600");
    assert!(r.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"quota\";r=0;t="));
    let r = get();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "quota_exhausted");
    assert_eq!(gate.upstream.hits(), 3);
}

#[test]
fn limits_show_in_inspect_and_bad_ones_are_refused_with_a_reason() {
    let env = Env::new();
    let (id, _) = env.create_json(&["--rate", "100/m", "--burst", "20", "--quota", "10000/30d"]);
    let out = env.ok(&["inspect", &id]);
    assert!(out.contains("100/m, burst 20"), "{out}");
    assert!(out.contains("10000/30d"), "{out}");
    let t = env.inspect_json(&id);
    assert_eq!(t["quota"]["period_secs"], 30 * 86_400);
    for (args, needle) in [
        (vec!["create", "--rate", "10/d"], "is not a rate"),
        (vec!["create", "--rate", "0/s"], "1 to"),
        (vec!["create", "--quota", "10"], "is not a quota"),
        (vec!["create", "--burst", "3"], "--rate"),
        (
            vec!["create", "--allow-ip", "10.0.0.0/33"],
            "not an address range",
        ),
    ] {
        assert_fails(&env.run(&args), exit::USAGE, &[needle]);
    }
}

#[test]
fn a_driver_that_cannot_hold_a_limit_refuses_it_before_any_request() {
    let mut env = Env::new();
    // Nothing listens here: any request would fail with exit 1, not 6.
    env.set("TOK_DRIVER", "kong")
        .set(
            "TOK_URL",
            &format!("http://127.0.0.1:{}", crate::servers::free_port()),
        )
        .set("TOK_OWNER", "ci");
    for (args, needle) in [
        (
            vec!["create", "--no-expiry", "--rate", "5/s"],
            "limit a token's request rate",
        ),
        (
            vec!["create", "--no-expiry", "--quota", "5/1d"],
            "request quota",
        ),
    ] {
        assert_fails(&env.run(&args), exit::UNSUPPORTED, &[needle]);
    }
    let drivers = env.ok(&["drivers"]);
    let local = drivers
        .lines()
        .find(|l| l.split_whitespace().next() == Some("local"))
        .unwrap();
    assert!(
        local.contains("rate-limits") && local.contains("quotas"),
        "{local}"
    );
    let kong = drivers
        .lines()
        .find(|l| l.split_whitespace().next() == Some("kong"))
        .unwrap();
    assert!(!kong.contains("rate-limits"), "{kong}");
}

/// A GET through the gate with an `X-Forwarded-For` header.
fn get_from(gate: &Gate, secret: &str, forwarded_for: &str) -> reqwest::blocking::Response {
    gate.http
        .get(format!("{}/x", gate.proxy))
        .bearer_auth(secret)
        .header("x-forwarded-for", forwarded_for)
        .send()
        .unwrap()
}

each_store!(a_token_bound_to_address_ranges_is_refused_elsewhere_and_a_forged_forward_is_ignored);
fn a_token_bound_to_address_ranges_is_refused_elsewhere_and_a_forged_forward_is_ignored() {
    let gate = Gate::start(None);
    let (home, near) = gate.token(&["--ttl", "1h", "--allow-ip", "127.0.0.0/8"]);
    let (away, far) = gate.token(&["--ttl", "1h", "--allow-ip", "203.0.113.0/24"]);
    assert_eq!(
        gate.server.client().inspect_json(&away)["allow_ip"],
        serde_json::json!(["203.0.113.0/24"])
    );
    assert_eq!(gate.get("/x", Some(&near)).status(), StatusCode::OK);
    let r = gate.get("/x", Some(&far));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let body = r.text().unwrap();
    assert!(
        !body.contains("range") && !body.contains("127.0.0.1"),
        "{body}"
    );
    // No --trusted-proxy: the client's own X-Forwarded-For counts for nothing.
    assert_eq!(
        get_from(&gate, &far, "203.0.113.5").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gate.upstream.hits(), 1);
    // Identical denials in one batch are one entry with a count.
    let denied = |e: &[serde_json::Value]| -> u64 {
        e.iter()
            .filter(|e| e["token_id"] == away.as_str() && e["decision"] == "deny")
            .map(|e| e["count"].as_u64().unwrap_or(1))
            .sum()
    };
    let entries = gate.audit_until(|e| denied(e) >= 2);
    assert_eq!(denied(&entries), 2);
    let reasons: Vec<&str> = entries
        .iter()
        .filter(|e| e["token_id"] == away.as_str())
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        !reasons.is_empty()
            && reasons
                .iter()
                .all(|r| *r == "client address 127.0.0.1 is outside the token's allowed ranges"),
        "the audit says why: {reasons:?}"
    );
    assert!(entries
        .iter()
        .any(|e| e["token_id"] == home.as_str() && e["decision"] == "allow"));
}

each_store!(behind_a_trusted_proxy_the_forwarded_address_counts_for_ipv4_and_ipv6);
fn behind_a_trusted_proxy_the_forwarded_address_counts_for_ipv4_and_ipv6() {
    let gate = Gate::start_with(None, &["--trusted-proxy", "127.0.0.1"]);
    let (_, v6) = gate.token(&["--ttl", "1h", "--allow-ip", "2001:db8::/32"]);
    let (_, v4) = gate.token(&["--ttl", "1h", "--allow-ip", "198.51.100.0/24"]);
    assert_eq!(get_from(&gate, &v6, "2001:db8::5").status(), StatusCode::OK);
    assert_eq!(
        get_from(&gate, &v6, "2001:db9::5").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_from(&gate, &v4, "198.51.100.7").status(),
        StatusCode::OK
    );
    // A forged address left of the one the trusted hop added is not believed.
    assert_eq!(
        get_from(&gate, &v4, "198.51.100.7, 192.0.2.1").status(),
        StatusCode::UNAUTHORIZED
    );
    // Without the header the trusted hop itself is the client.
    assert_eq!(gate.get("/x", Some(&v4)).status(), StatusCode::UNAUTHORIZED);
    assert_eq!(gate.upstream.hits(), 2);
}

each_store!(the_readme_ci_token_works_once_from_its_range);
fn the_readme_ci_token_works_once_from_its_range() {
    // The README's CI example: single-use, bound to the runner's range, ten
    // minutes, ten requests a second. The test's "runner" is 127.0.0.0/8.
    let gate = Gate::start(None);
    let env = gate.server.client();
    let o = env.run(&[
        "create",
        "--ttl",
        "10m",
        "--single-use",
        "--allow-ip",
        "127.0.0.0/8",
        "--rate",
        "10/s",
    ]);
    assert_success(&o, &["create"]);
    let token = stdout(&o).trim().to_string();
    let summary = stderr(&o);
    assert!(
        summary.contains("1 use")
            && summary.contains("rate 10/s")
            && summary.contains("from 127.0.0.0/8"),
        "{summary}"
    );
    let r = gate.get("/deploy", Some(&token));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["ratelimit-policy"], "\"rate\";q=10;w=1");
    assert_eq!(
        gate.get("/deploy", Some(&token)).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gate.upstream.hits(), 1);
    // The same kind of token for another range is refused from here.
    let o = env.run(&[
        "create",
        "--ttl",
        "10m",
        "--single-use",
        "--allow-ip",
        "10.8.0.0/16",
        "--rate",
        "10/s",
    ]);
    let elsewhere = stdout(&o).trim().to_string();
    assert_eq!(
        gate.get("/deploy", Some(&elsewhere)).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(gate.upstream.hits(), 1);
}
