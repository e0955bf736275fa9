//! DPoP (RFC 9449) against a real `tok serve` in front of a real upstream: a
//! token bound with `tok create --dpop-key` passes with a good proof, and each
//! bad one is refused with the RFC's challenge before it costs the token a
//! use; the forward-auth endpoint enforces the same and never lets a 200 be
//! cached; introspection returns `cnf`; `tok dpop keygen` writes its key
//! safely and `tok dpop proof` output works with curl.
//!
//! Proofs for the refusal cases are made with the library's own signer
//! (`tok::dpop::SigningKey`), so that one claim at a time can be wrong.

use crate::common::*;
use crate::proxy::{challenge, Gate};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use tok::dpop::{KeyAlg, SigningKey};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `tok dpop keygen DIR/name`: the thumbprint it printed.
fn keygen(env: &Env, dir: &Path, name: &str, alg: &str) -> String {
    let file = dir.join(name);
    let out = env.ok(&["dpop", "keygen", file.to_str().unwrap(), "--alg", alg]);
    out.trim().to_string()
}

fn load(dir: &Path, name: &str) -> SigningKey {
    SigningKey::from_pem(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

struct Bound {
    gate: Gate,
    id: String,
    secret: String,
    key: SigningKey,
    jkt: String,
    _dir: tempfile::TempDir,
}

fn bound(extra: &[&str], alg: &str) -> Bound {
    let gate = Gate::start_with(None, extra);
    let dir = tempfile::tempdir().unwrap();
    let env = gate.server.client();
    let jkt = keygen(&env, dir.path(), "client.key", alg);
    let jwk = dir.path().join("client.key.jwk");
    let (id, secret) = env.create_json(&[
        "--ttl",
        "1h",
        "--uses",
        "100",
        "--dpop-key",
        jwk.to_str().unwrap(),
    ]);
    let key = load(dir.path(), "client.key");
    assert_eq!(key.jkt(), jkt);
    Bound {
        gate,
        id,
        secret,
        key,
        jkt,
        _dir: dir,
    }
}

impl Bound {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gate.proxy)
    }

    /// GET `path` as `scheme` with `proof` (if any).
    fn get(&self, path: &str, scheme: &str, proof: Option<&str>) -> reqwest::blocking::Response {
        let mut r = self
            .gate
            .http
            .get(self.url(path))
            .header("Authorization", format!("{scheme} {}", self.secret));
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        r.send().unwrap()
    }

    fn proof(&self, method: &str, path: &str) -> String {
        self.key
            .proof(method, &self.url(path), Some(&self.secret), now())
            .unwrap()
    }

    fn uses(&self) -> u64 {
        self.gate.server.local().inspect_json(&self.id)["uses"]
            .as_u64()
            .unwrap()
    }
}

#[track_caller]
fn refused(r: reqwest::blocking::Response, error: &str) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&r);
    assert!(c.starts_with("DPoP algs=\"ES256 EdDSA RS256\""), "{c}");
    assert!(c.contains(&format!("error=\"{error}\"")), "{c}");
}

#[test]
fn a_good_proof_passes_and_each_bad_one_is_refused_without_spending_a_use() {
    let b = bound(&[], "ES256");
    let t = b.gate.server.client().inspect_json(&b.id);
    assert_eq!(t["cnf"]["jkt"], b.jkt.as_str());
    let details = b.gate.server.client().ok(&["inspect", &b.id]);
    assert!(details.contains(&b.jkt), "{details}");

    // Good: passes, and spends one use.
    let good = b.proof("GET", "/x?q=1");
    let r = b.get("/x?q=1", "DPoP", Some(&good));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(b.uses(), 1);
    assert_eq!(b.gate.upstream.hits(), 1);

    // The same proof again.
    refused(b.get("/x?q=1", "DPoP", Some(&good)), "invalid_dpop_proof");
    // A proof for another method, and for another URL.
    refused(
        b.get("/x", "DPoP", Some(&b.proof("POST", "/x"))),
        "invalid_dpop_proof",
    );
    refused(
        b.get("/x", "DPoP", Some(&b.proof("GET", "/y"))),
        "invalid_dpop_proof",
    );
    // An old iat.
    let old = b
        .key
        .proof("GET", &b.url("/x"), Some(&b.secret), now() - 300)
        .unwrap();
    refused(b.get("/x", "DPoP", Some(&old)), "invalid_dpop_proof");
    // Another key's proof, however good otherwise.
    let other = SigningKey::generate(KeyAlg::EdDsa).unwrap().0;
    let foreign = other
        .proof("GET", &b.url("/x"), Some(&b.secret), now())
        .unwrap();
    refused(b.get("/x", "DPoP", Some(&foreign)), "invalid_dpop_proof");
    // alg=none, unsigned, with the bound key's jwk.
    let enc = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = json!({"jti": "n1", "htm": "GET", "htu": b.url("/x"), "iat": now(),
                        "ath": tok::dpop::ath(&b.secret)});
    let none = format!(
        "{}.{}.",
        enc(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": b.key.public_jwk()})),
        enc(&claims)
    );
    refused(b.get("/x", "DPoP", Some(&none)), "invalid_dpop_proof");
    // No ath, and the ath of another token.
    let no_ath = b.key.proof("GET", &b.url("/x"), None, now()).unwrap();
    refused(b.get("/x", "DPoP", Some(&no_ath)), "invalid_dpop_proof");
    let wrong_ath = b
        .key
        .proof("GET", &b.url("/x"), Some("tok_other"), now())
        .unwrap();
    refused(b.get("/x", "DPoP", Some(&wrong_ath)), "invalid_dpop_proof");
    // The bound token as Bearer, with or without a proof; as DPoP without one.
    refused(b.get("/x", "Bearer", None), "invalid_token");
    refused(
        b.get("/x", "Bearer", Some(&b.proof("GET", "/x"))),
        "invalid_token",
    );
    refused(b.get("/x", "DPoP", None), "invalid_dpop_proof");
    // A proof over 8 KiB, otherwise good.
    let mut big = claims.clone();
    big["jti"] = json!("big");
    big["pad"] = json!("x".repeat(9 * 1024));
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": b.key.public_jwk()});
    let large = b.key.sign(&header, &big).unwrap();
    refused(b.get("/x", "DPoP", Some(&large)), "invalid_dpop_proof");

    // None of it reached the upstream or spent a use; each is audited.
    assert_eq!(b.gate.upstream.hits(), 1);
    assert_eq!(b.uses(), 1);
    // Identical denials in one batch are audited as one entry with a count.
    let needles = [
        "used before",
        "another method",
        "another URL",
        "iat",
        "another key",
        "`none` is not allowed",
        "lacks the claim ath",
        "ath does not match",
        "DPoP-bound",
        "exactly one DPoP header",
        "larger than 8 KiB",
    ];
    let reasons = |e: &[Value]| -> Vec<String> {
        e.iter()
            .filter(|e| e["decision"] == "deny")
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    };
    let entries = b.gate.audit_until(|e| {
        let r = reasons(e);
        needles.iter().all(|n| r.iter().any(|r| r.contains(n)))
    });
    let found = reasons(&entries);
    for needle in needles {
        assert!(
            found.iter().any(|r| r.contains(needle)),
            "{needle} in {found:?}"
        );
    }
    // An unbound token sent as DPoP claims a binding it does not have.
    let (_, plain) = b.gate.token(&["--ttl", "1h"]);
    let p = b
        .key
        .proof("GET", &b.url("/x"), Some(&plain), now())
        .unwrap();
    let r = b
        .gate
        .http
        .get(b.url("/x"))
        .header("Authorization", format!("DPoP {plain}"))
        .header("DPoP", p)
        .send()
        .unwrap();
    refused(r, "invalid_token");
}

#[test]
fn ed25519_keys_and_pem_public_keys_bind_too_and_introspection_returns_cnf() {
    let b = bound(&[], "EdDSA");
    let r = b.get("/", "DPoP", Some(&b.proof("GET", "/")));
    assert_eq!(r.status(), StatusCode::OK);

    let client = b.gate.server.client();
    let (cid, csecret) = client.create_json(&["--no-expiry", "--scope", "tok:introspect"]);
    let v: Value = b
        .gate
        .http
        .post(b.gate.server.api("/oauth/introspect"))
        .basic_auth(&cid, Some(&csecret))
        .form(&[("token", b.secret.as_str())])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["token_type"], "DPoP");
    assert_eq!(v["cnf"]["jkt"], b.jkt.as_str());

    // A PEM public key (SubjectPublicKeyInfo) gives the same binding as the JWK.
    let jwk = b.key.public_jwk();
    use base64::Engine;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap())
        .unwrap();
    let spki = [
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ][..],
        &x,
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("pub.pem");
    std::fs::write(&pem, tok::dpop::pem_encode("PUBLIC KEY", &spki)).unwrap();
    let (id, _) = client.create_json(&["--ttl", "1h", "--dpop-key", pem.to_str().unwrap()]);
    assert_eq!(client.inspect_json(&id)["cnf"]["jkt"], b.jkt.as_str());
    let (id, _) = client.create_json(&["--ttl", "1h", "--dpop-jkt", &b.jkt]);
    assert_eq!(client.inspect_json(&id)["cnf"]["jkt"], b.jkt.as_str());

    // Bad bindings are usage errors, before any request.
    let o = client.run(&["create", "--ttl", "1h", "--dpop-jkt", "short"]);
    assert_fails(&o, 2, &["not a JWK thumbprint"]);
    let private = dir.path().join("k");
    client.ok(&["dpop", "keygen", private.to_str().unwrap()]);
    let o = client.run(&[
        "create",
        "--ttl",
        "1h",
        "--dpop-key",
        private.to_str().unwrap(),
    ]);
    assert_fails(&o, 2, &["private key", ".jwk"]);
}

#[test]
fn forward_auth_enforces_dpop_from_the_proxys_headers_and_never_lets_a_200_be_cached() {
    let b = bound(&["--auth-listen", "127.0.0.1:0"], "ES256");
    let auth = b.gate.server.auth_url();
    // What the calling proxy saw: https://api.example/orders/1?q (Traefik's headers).
    let ask = |scheme: &str, proof: Option<&str>| {
        let mut r = b
            .gate
            .http
            .get(format!("{auth}/"))
            .header("Authorization", format!("{scheme} {}", b.secret))
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "api.example")
            .header("X-Forwarded-Uri", "/orders/1?q=2");
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        r.send().unwrap()
    };
    let proof = |url: &str| b.key.proof("GET", url, Some(&b.secret), now()).unwrap();
    let r = ask("DPoP", Some(&proof("https://api.example/orders/1")));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-tok-token-id"], b.id.as_str());
    refused(
        ask("DPoP", Some(&proof("http://api.example/orders/1"))),
        "invalid_dpop_proof",
    );
    refused(ask("Bearer", None), "invalid_token");
}

#[test]
fn tok_dpop_proof_works_with_curl_against_the_proxy() {
    let gate = Gate::start(None);
    let env = gate.server.client();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ci.key");
    keygen(&env, dir.path(), "ci.key", "ES256");
    let jwk = dir.path().join("ci.key.jwk");
    let (_, secret) = env.create_json(&["--ttl", "10m", "--dpop-key", jwk.to_str().unwrap()]);
    let url = format!("{}/deploy?env=prod", gate.proxy);
    let make = |count: &str| {
        let args = [
            "dpop",
            "proof",
            "--key",
            key.to_str().unwrap(),
            "--url",
            &url,
            "--token-stdin",
            "--count",
            count,
        ];
        let out = env.run_stdin(&args, &secret);
        assert_success(&out, &args);
        assert!(!stdout(&out).contains(&secret) && !stderr(&out).contains(&secret));
        stdout(&out)
            .lines()
            .map(String::from)
            .collect::<Vec<String>>()
    };
    let proof = make("1").remove(0);
    let curl = |proof: &str| {
        let o = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--noproxy",
                "*",
            ])
            .args(["-H", &format!("Authorization: DPoP {secret}")])
            .args(["-H", &format!("DPoP: {proof}")])
            .arg(&url)
            .output()
            .expect("curl (scripts/setup/55-curl.sh installs it)");
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(curl(&proof), "200");
    assert_eq!(curl(&proof), "401", "a proof is good once");
    assert_eq!(gate.upstream.hits(), 1);
    // --count N: N proofs, each good once.
    let proofs = make("2");
    assert_eq!(proofs.len(), 2);
    assert_ne!(proofs[0], proofs[1]);
    for p in &proofs {
        assert_eq!(curl(p), "200");
    }
    assert_eq!(gate.upstream.hits(), 3);
}

#[test]
fn keygen_writes_a_0600_private_key_and_never_over_an_existing_file() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k");
    let jkt = keygen(&env, dir.path(), "k", "EdDSA");
    tok::dpop::check_jkt(&jkt).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert_eq!(load(dir.path(), "k").jkt(), jkt);
    let before = std::fs::read(&file).unwrap();
    let o = env.run(&["dpop", "keygen", file.to_str().unwrap()]);
    assert_fails(&o, 2, &["already exists", "--force"]);
    assert_eq!(std::fs::read(&file).unwrap(), before, "left as it was");
    let again = env.ok(&["dpop", "keygen", file.to_str().unwrap(), "--force"]);
    assert_ne!(again.trim(), jkt);
    assert_eq!(load(dir.path(), "k").jkt(), again.trim());
    // A proof from a file that is not a private key is a usage error.
    let o = env.run(&[
        "dpop",
        "proof",
        "--key",
        dir.path().join("k.jwk").to_str().unwrap(),
        "--url",
        "https://api.example/x",
    ]);
    assert_fails(&o, 2, &["not a PEM private key"]);
    let o = env.run(&[
        "dpop",
        "proof",
        "--key",
        file.to_str().unwrap(),
        "--url",
        "/x",
    ]);
    assert_fails(&o, 2, &["not an absolute http(s) URL"]);
}
