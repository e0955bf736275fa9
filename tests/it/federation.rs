//! Token exchange (`tok serve --federation`, `tok create --federated`) against
//! a local OIDC issuer: keys made per run (ES256 with ring; RS256 with the
//! test-only key in tests/fixtures/oidc), discovery and JWKS served on
//! loopback, and a stand-in for GitHub's ID-token request endpoint
//! (`ACTIONS_ID_TOKEN_REQUEST_URL`). Every hostile token is refused with the
//! same answer and leaves its own audit entry.

use crate::common::*;
use crate::doubles;
use crate::server::Server;
use crate::upstream::Upstream;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const AUDIENCE: &str = "https://tok.test/federation";
const GITLAB_AUDIENCE: &str = "https://tok.test/gitlab";
const REQUEST_TOKEN: &str = "github-request-token-for-this-job";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

enum Signer {
    Es(EcdsaKeyPair),
    Rs(RsaKeyPair),
}

/// A signing key of the test issuer and its public JWK.
struct Key {
    kid: String,
    signer: Signer,
    jwk: Value,
}

impl Key {
    fn es256(kid: &str) -> Arc<Key> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let p = kp.public_key().as_ref().to_vec();
        Arc::new(Key {
            kid: kid.into(),
            signer: Signer::Es(kp),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                        "x": b64(&p[1..33]), "y": b64(&p[33..])}),
        })
    }

    /// The committed test-only RSA key (ring makes no RSA keys).
    fn rs256(kid: &str) -> Arc<Key> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/oidc");
        let pem = std::fs::read_to_string(format!("{dir}/rsa-key.pem")).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let kp = RsaKeyPair::from_pkcs8(&der).unwrap();
        let mut jwk: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}/rsa-public.jwk.json")).unwrap(),
        )
        .unwrap();
        jwk["kid"] = json!(kid);
        Arc::new(Key {
            kid: kid.into(),
            signer: Signer::Rs(kp),
            jwk,
        })
    }

    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Es(_) => "ES256",
            Signer::Rs(_) => "RS256",
        }
    }

    /// A compact JWS of `claims` with this key, `header` merged over the usual one.
    fn sign_with(&self, header: Value, claims: &Value) -> String {
        let mut h = json!({"alg": self.alg(), "kid": self.kid, "typ": "JWT"});
        for (k, v) in header.as_object().unwrap() {
            h[k] = v.clone();
        }
        let input = format!(
            "{}.{}",
            b64(h.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match &self.signer {
            Signer::Es(kp) => kp.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Rs(kp) => {
                let mut s = vec![0; kp.public().modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut s)
                    .unwrap();
                s
            }
        };
        format!("{input}.{}", b64(&sig))
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(json!({}), claims)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    /// The JWKS endpoint answers only after a long while.
    Hang,
    /// The JWKS endpoint answers 200 with HTML.
    Garbage,
}

struct IssuerState {
    published: Vec<Arc<Key>>,
    signing: Arc<Key>,
    mode: Mode,
    jwks_hits: usize,
    /// The `audience` of each ID-token request GitHub's stand-in answered.
    audiences: Vec<String>,
    /// Claims the GitHub stand-in puts in its tokens (besides iss, aud, times, jti).
    claims: Value,
}

/// A local OIDC issuer: discovery, JWKS, and GitHub's ID-token endpoint.
struct Issuer {
    url: String,
    state: Arc<Mutex<IssuerState>>,
    _server: doubles::Server,
}

fn host_url(h: &HeaderMap) -> String {
    format!("http://{}", h.get("host").unwrap().to_str().unwrap())
}

async fn discovery(h: HeaderMap) -> Json<Value> {
    let url = host_url(&h);
    Json(json!({"issuer": url, "jwks_uri": format!("{url}/jwks"),
                "id_token_signing_alg_values_supported": ["RS256", "ES256"]}))
}

async fn jwks(State(s): State<Arc<Mutex<IssuerState>>>) -> Response {
    let (mode, keys) = {
        let mut st = s.lock().unwrap();
        st.jwks_hits += 1;
        (
            st.mode,
            st.published
                .iter()
                .map(|k| k.jwk.clone())
                .collect::<Vec<_>>(),
        )
    };
    match mode {
        Mode::Normal => Json(json!({ "keys": keys })).into_response(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Json(json!({ "keys": keys })).into_response()
        }
        Mode::Garbage => (
            [("content-type", "application/json")],
            "<html>captive portal</html>",
        )
            .into_response(),
    }
}

async fn github_id_token(
    State(s): State<Arc<Mutex<IssuerState>>>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // The scheme is case-insensitive (RFC 7235 §2.1); GitHub's docs write `bearer`.
    let presented = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !presented.eq_ignore_ascii_case(&format!("bearer {REQUEST_TOKEN}")) {
        return (axum::http::StatusCode::UNAUTHORIZED, "bad request token").into_response();
    }
    assert_eq!(q.get("api-version").map(String::as_str), Some("2.0"));
    let aud = q.get("audience").cloned().unwrap_or_default();
    let (key, mut claims) = {
        let mut st = s.lock().unwrap();
        st.audiences.push(aud.clone());
        (st.signing.clone(), st.claims.clone())
    };
    let now = doubles::now();
    for (k, v) in [
        ("iss", json!(host_url(&h))),
        ("aud", json!(aud)),
        ("iat", json!(now)),
        ("nbf", json!(now)),
        ("exp", json!(now + 300)),
        ("jti", json!(doubles::uuid4())),
    ] {
        claims[k] = v;
    }
    Json(json!({"count": 1, "value": key.sign(&claims)})).into_response()
}

impl Issuer {
    fn start(key: Arc<Key>, mode: Mode) -> Issuer {
        let state = Arc::new(Mutex::new(IssuerState {
            published: vec![key.clone()],
            signing: key,
            mode,
            jwks_hits: 0,
            audiences: Vec::new(),
            claims: github_claims(),
        }));
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/github/idtoken", get(github_id_token))
            .with_state(state.clone());
        let server = doubles::Server::start(router);
        Issuer {
            url: server.url.clone(),
            state,
            _server: server,
        }
    }

    fn key(&self) -> Arc<Key> {
        self.state.lock().unwrap().signing.clone()
    }

    fn jwks_hits(&self) -> usize {
        self.state.lock().unwrap().jwks_hits
    }

    /// Publishes only `key` from now on and signs with it.
    fn rotate_to(&self, key: Arc<Key>) {
        let mut st = self.state.lock().unwrap();
        st.published = vec![key.clone()];
        st.signing = key;
    }

    /// Claims for a token of this issuer: `extra` over iss/aud/times/jti.
    fn claims(&self, aud: &str, extra: Value) -> Value {
        let now = doubles::now();
        let mut c = json!({"iss": self.url, "aud": aud, "iat": now, "nbf": now,
                           "exp": now + 300, "jti": doubles::uuid4()});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }
}

fn github_claims() -> Value {
    json!({
        "sub": "repo:octo/app:environment:prod",
        "repository": "octo/app",
        "repository_owner": "octo",
        "ref": "refs/heads/release-1",
        "environment": "prod",
        "job_workflow_ref": "octo/app/.github/workflows/deploy.yml@refs/heads/release-1",
        "run_id": "42",
    })
}

fn gitlab_claims() -> Value {
    json!({
        "sub": "project_path:group/app:ref_type:branch:ref:main",
        "project_path": "group/app",
        "namespace_path": "group",
        "ref": "main",
        "ref_type": "branch",
        "ref_protected": "true",
        "pipeline_id": "7001",
    })
}

fn policy_file(dir: &std::path::Path, gh: &str, gl: &str, more: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
audience = "{AUDIENCE}"
leeway = "5s"
jwks_timeout = "1s"
jwks_refresh_min = "1s"

[[policy]]
name = "gh-deploy"
issuer = "{gh}"
scopes = ["deploy", "read"]
max_ttl = "15m"
token_name = "gh-{{repository}}-{{run_id}}"
labels = {{ repo = "repository", run = "run_id" }}
[policy.claims]
repository = "octo/app"
ref = {{ glob = "refs/heads/release-*" }}
environment = "prod"

[[policy]]
name = "gl-deploy"
issuer = "{gl}"
audience = "{GITLAB_AUDIENCE}"
scopes = ["deploy"]
max_ttl = "10m"
max_uses = 5
token_name = "gl-{{project_path}}-{{pipeline_id}}"
labels = {{ project = "project_path" }}
[policy.claims]
project_path = "group/app"
ref_type = "branch"
ref_protected = "true"
{more}
"#
    );
    let path = dir.join("federation.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const ROUTES: &str = r#"
[[route]]
path = "/deploy/**"
scopes = ["deploy"]
[[route]]
path = "/admin/**"
scopes = ["admin"]
"#;

/// Two issuers (GitHub-like ES256, GitLab-like RS256), an upstream, and a
/// tok serve trusting both with its proxy in front of the upstream.
struct Setup {
    gh: Issuer,
    gl: Issuer,
    policies: std::path::PathBuf,
    server: Server,
    _upstream: Upstream,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start(more: impl FnOnce(&Issuer, &Issuer) -> String) -> Setup {
        let gh = Issuer::start(Key::es256("gh-1"), Mode::Normal);
        let gl = Issuer::start(Key::rs256("gl-1"), Mode::Normal);
        let dir = tempfile::tempdir().unwrap();
        let policies = policy_file(dir.path(), &gh.url, &gl.url, &more(&gh, &gl));
        let routes = dir.path().join("routes.toml");
        std::fs::write(&routes, ROUTES).unwrap();
        let upstream = Upstream::start();
        let server = Server::start_with(&[
            "--federation",
            policies.to_str().unwrap(),
            "--proxy-listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.url(),
            "--routes",
            routes.to_str().unwrap(),
        ]);
        Setup {
            gh,
            gl,
            policies,
            server,
            _upstream: upstream,
            _dir: dir,
        }
    }

    /// A CI job's environment: the server's URL and no admin credential.
    fn job(&self) -> Env {
        let mut env = Env::new();
        env.set("TOK_URL", &self.server.url);
        env
    }

    fn github_job(&self) -> Env {
        let mut env = self.job();
        env.set("GITHUB_ACTIONS", "true");
        env.set(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            &format!("{}/github/idtoken?api-version=2.0", self.gh.url),
        );
        env.set("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN);
        env
    }

    /// POSTs a token exchange for `token`; returns status and JSON body.
    fn exchange(&self, token: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
            ("subject_token", token),
        ];
        form.extend_from_slice(extra);
        let r = self
            .server
            .http()
            .post(self.server.api("/oauth/token"))
            .form(&form)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// The exchange entries of the audit trail, once `n` are there.
    fn exchanges(&self, n: usize) -> Vec<Value> {
        let local = self.server.local();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let all: Vec<Value> =
                serde_json::from_str(&local.ok(&["audit", "-o", "json"])).unwrap();
            let ex: Vec<Value> = all
                .into_iter()
                .filter(|e| e["event"] == "exchange")
                .collect();
            if ex.len() >= n || std::time::Instant::now() > deadline {
                assert_eq!(ex.len(), n, "exchange audit entries: {ex:#?}");
                return ex;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn proxy_status(&self, secret: &str, path: &str) -> u16 {
        self.server
            .http()
            .get(format!("{}{path}", self.server.proxy_url()))
            .bearer_auth(secret)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }
}

#[test]
fn a_github_job_mints_a_token_that_works_at_the_proxy_with_exactly_its_scopes() {
    let s = Setup::start(|_, _| String::new());
    let job = s.github_job();
    // More than the policy's max_ttl is capped to it.
    let o = job.run(&["create", "--federated", "--scope", "deploy", "--ttl", "1h"]);
    assert_success(&o, &["create", "--federated"]);
    let secret = stdout(&o).trim_end().to_string();
    assert!(
        secret.starts_with("tok_") && !secret.contains('\n'),
        "{secret:?}"
    );
    let err = stderr(&o);
    assert!(
        err.contains("minted tk_") && err.contains("(gh-octo/app-42)"),
        "{err}"
    );
    assert!(err.contains("::add-mask::tok_"), "{err}");
    assert_eq!(s.gh.state.lock().unwrap().audiences, [AUDIENCE]);

    let listed = s.server.local().list_json(&["--name", "gh-*"]);
    let t = s
        .server
        .local()
        .inspect_json(listed[0]["id"].as_str().unwrap());
    assert_eq!(t["name"], "gh-octo/app-42");
    assert_eq!(t["scopes"], json!(["deploy"]));
    assert_eq!(t["labels"], json!({"repo": "octo/app", "run": "42"}));
    let created = chrono::DateTime::parse_from_rfc3339(t["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(t["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        (expires - created).num_seconds(),
        15 * 60,
        "capped at max_ttl"
    );
    let by = t["created_by"].as_str().unwrap();
    assert!(
        by.contains("repo:octo/app:environment:prod")
            && by.contains(&s.gh.url)
            && by.contains("gh-deploy"),
        "{by}"
    );

    assert_eq!(s.proxy_status(&secret, "/deploy/now"), 200);
    assert_eq!(s.proxy_status(&secret, "/admin/users"), 403);

    // A short one expires on time, and no scope asked means the policy's.
    let o = job.run(&[
        "create",
        "--federated",
        "github",
        "--ttl",
        "2s",
        "-o",
        "json",
    ]);
    assert_success(&o, &["create", "--federated", "github"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let short = v["secret"].as_str().unwrap().to_string();
    assert_eq!(v["scopes"], json!(["deploy", "read"]));
    assert_eq!(s.proxy_status(&short, "/deploy/now"), 200);
    let exp = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    while chrono::Utc::now() <= exp {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(s.proxy_status(&short, "/deploy/now"), 401);

    // The request log has the exchanges, and never a secret or an ID token.
    let logs = s.server.logs();
    assert!(logs.contains("path=/oauth/token status=200"), "{logs}");
    assert!(!logs.contains("tok_") && !logs.contains("eyJ"), "{logs}");

    let ex = s.exchanges(2);
    for e in &ex {
        assert_eq!(e["decision"], "allow");
        assert_eq!(e["reason"], "policy gh-deploy");
        let actor = e["actor"].as_str().unwrap();
        assert_eq!(
            actor,
            format!("repo:octo/app:environment:prod ({})", s.gh.url)
        );
        assert!(e["token_id"].as_str().unwrap().starts_with("tk_"));
    }
}

#[test]
fn a_gitlab_job_reads_its_id_token_from_a_variable_or_a_file() {
    let s = Setup::start(|_, _| String::new());
    let token = || {
        s.gl.key()
            .sign(&s.gl.claims(GITLAB_AUDIENCE, gitlab_claims()))
    };
    let mut job = s.job();
    job.set("GITLAB_CI", "true");
    job.set("TOK_ID_TOKEN", &token());
    // Detected from GITLAB_CI; the use limit asked is capped at the policy's.
    let (id, secret) = job.create_json(&["--federated", "--uses", "9"]);
    let t = s.server.local().inspect_json(&id);
    assert_eq!(t["name"], "gl-group/app-7001");
    assert_eq!(t["max_uses"], 5);
    assert_eq!(t["labels"], json!({"project": "group/app"}));
    assert_eq!(s.proxy_status(&secret, "/deploy/x"), 200);

    let mut other = s.job();
    other.set("MY_JWT", &token());
    let (id2, _) = other.create_json(&["--federated", "env:MY_JWT", "--single-use"]);
    assert_eq!(s.server.local().inspect_json(&id2)["max_uses"], 1);

    let file = other.home().join("id-token");
    std::fs::write(&file, format!("{}\n", token())).unwrap();
    let src = format!("file:{}", file.display());
    other.create_json(&["--federated", &src]);

    let ex = s.exchanges(3);
    assert!(ex
        .iter()
        .all(|e| e["decision"] == "allow" && e["reason"] == "policy gl-deploy"));
}

/// HS256 over the header and claims with `secret` as the HMAC key.
fn hs256(header: Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        input.as_bytes(),
    );
    format!("{input}.{}", b64(tag.as_ref()))
}

/// What is tried, the subject token, extra form fields, and what the audit
/// reason must say.
type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn hostile_tokens_are_refused_alike_and_each_is_audited() {
    let hang = Issuer::start(Key::es256("h-1"), Mode::Hang);
    let junk = Issuer::start(Key::es256("j-1"), Mode::Garbage);
    let (hang_url, junk_url) = (hang.url.clone(), junk.url.clone());
    let s = Setup::start(move |_, _| {
        format!(
            r#"
[[policy]]
name = "hangs"
issuer = "{hang_url}"
scopes = ["x"]
max_ttl = "5m"
[[policy]]
name = "garbage"
issuer = "{junk_url}"
scopes = ["x"]
max_ttl = "5m"
"#
        )
    });
    let key = s.gh.key();
    let good = |extra: Value| {
        let mut c = github_claims();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        s.gh.claims(AUDIENCE, c)
    };
    let now = doubles::now();
    let stranger = Key::es256("gh-1");
    let replayed = key.sign(&good(json!({})));
    let mut cases: Vec<Case> = vec![
        (
            "wrong aud",
            key.sign(&s.gh.claims("https://elsewhere", github_claims())),
            &[],
            "audience",
        ),
        (
            "aud array without ours",
            key.sign(&good(json!({"aud": ["a", "b"]}))),
            &[],
            "audience",
        ),
        (
            "untrusted iss",
            key.sign(&good(json!({"iss": "https://evil.example"}))),
            &[],
            "trusts",
        ),
        (
            "another issuer's key, same kid",
            stranger.sign(&good(json!({}))),
            &[],
            "signature",
        ),
        (
            "expired",
            key.sign(&good(
                json!({"exp": now - 600, "iat": now - 900, "nbf": now - 900}),
            )),
            &[],
            "expired",
        ),
        (
            "not yet valid",
            key.sign(&good(json!({"nbf": now + 600}))),
            &[],
            "not valid yet",
        ),
        (
            "issued in the future",
            key.sign(&good(json!({"iat": now + 600}))),
            &[],
            "future",
        ),
        ("no exp", key.sign(&good(json!({"exp": null}))), &[], "exp"),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(good(json!({})).to_string().as_bytes())
            ),
            &[],
            "`none`",
        ),
        (
            "HS256 with the public key as secret",
            hs256(
                json!({"alg": "HS256", "kid": "gh-1"}),
                &good(json!({})),
                key.jwk.to_string().as_bytes(),
            ),
            &[],
            "`HS256`",
        ),
        (
            "typed as a DPoP proof",
            key.sign_with(json!({"typ": "dpop+jwt"}), &good(json!({}))),
            &[],
            "typ",
        ),
        (
            "unknown kid",
            key.sign_with(json!({"kid": "nobody"}), &good(json!({}))),
            &[],
            "kid",
        ),
        (
            "repository one short",
            key.sign(&good(json!({"repository": "octo/ap"}))),
            &[],
            "no policy",
        ),
        (
            "repository one long",
            key.sign(&good(json!({"repository": "octo/app2"}))),
            &[],
            "no policy",
        ),
        (
            "repository case",
            key.sign(&good(json!({"repository": "Octo/app"}))),
            &[],
            "no policy",
        ),
        (
            "glob prefix missed",
            key.sign(&good(json!({"ref": "refs/heads/release"}))),
            &[],
            "no policy",
        ),
        (
            "glob not anchored",
            key.sign(&good(json!({"ref": "xrefs/heads/release-1"}))),
            &[],
            "no policy",
        ),
        (
            "environment missing",
            key.sign(&good(json!({"environment": null}))),
            &[],
            "no policy",
        ),
        (
            "claim as an array",
            key.sign(&good(json!({"environment": ["prod"]}))),
            &[],
            "no policy",
        ),
        ("no jti", key.sign(&good(json!({"jti": null}))), &[], "jti"),
        ("garbage", "not.a.jwt".into(), &[], "compact JWS"),
        ("1 MB token", "a".repeat(1 << 20), &[], "KiB"),
        (
            "scope beyond the policy",
            key.sign(&good(json!({}))),
            &[("scope", "deploy admin")],
            "beyond",
        ),
        (
            "jwks hangs",
            hang.key().sign(&hang.claims(AUDIENCE, github_claims())),
            &[],
            "no answer",
        ),
        (
            "jwks is garbage",
            junk.key().sign(&junk.claims(AUDIENCE, github_claims())),
            &[],
            "not JSON",
        ),
    ];
    let (st, _) = s.exchange(&replayed, &[]);
    assert_eq!(st, 200, "the first use of a token is fine");
    cases.push(("replayed jti", replayed.clone(), &[], "already exchanged"));

    let mut grant_bodies = Vec::new();
    for (what, token, extra, _) in &cases {
        let (status, body) = s.exchange(token, extra);
        let code = body["error"].as_str().unwrap_or_default().to_string();
        let expect = match *what {
            "scope beyond the policy" => (400, "invalid_scope"),
            "jwks hangs" | "jwks is garbage" => (503, "temporarily_unavailable"),
            "1 MB token" => (400, "invalid_request"),
            _ => (400, "invalid_grant"),
        };
        assert_eq!((status, code.as_str()), expect, "{what}: {body}");
        if code == "invalid_grant" {
            grant_bodies.push(body);
        }
    }
    // Nothing in the answer tells one refusal from another.
    assert!(
        grant_bodies.windows(2).all(|w| w[0] == w[1]),
        "{grant_bodies:#?}"
    );

    let ex = s.exchanges(cases.len() + 1);
    assert_eq!(ex[0]["decision"], "allow");
    for (e, (what, _, _, reason)) in ex[1..].iter().zip(&cases) {
        assert_eq!(e["decision"], "deny", "{what}: {e}");
        let r = e["reason"].as_str().unwrap_or_default();
        assert!(r.contains(reason), "{what}: reason {r:?} lacks {reason:?}");
    }
    // Issuer and subject are recorded once the signature holds, never before.
    let by_case = |w: &str| &ex[1 + cases.iter().position(|c| c.0 == w).unwrap()];
    assert_eq!(by_case("alg none")["actor"], Value::Null);
    assert_eq!(
        by_case("another issuer's key, same kid")["actor"],
        Value::Null
    );
    assert_eq!(
        by_case("expired")["actor"],
        format!("repo:octo/app:environment:prod ({})", s.gh.url)
    );
    assert!(by_case("scope beyond the policy")["reason"]
        .as_str()
        .unwrap()
        .starts_with("policy gh-deploy: "));
    // No refusal minted anything.
    assert_eq!(s.server.local().list_json(&["--name", "gh-*"]).len(), 1);

    // One token sent eight times at once is exchanged once.
    let once = key.sign(&good(json!({})));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| s.exchange(&once, &[]).0))
            .collect();
        racers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&c| c == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&c| c == 400).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(s.server.local().list_json(&["--name", "gh-*"]).len(), 2);
}

#[test]
fn keys_are_refetched_for_a_new_kid_at_a_limited_rate_and_rotation_retires_the_old_one() {
    let s = Setup::start(|_, _| String::new());
    let old = s.gh.key();
    let token = |k: &Key| k.sign(&s.gh.claims(AUDIENCE, github_claims()));
    assert_eq!(s.exchange(&token(&old), &[]).0, 200);
    assert_eq!(s.gh.jwks_hits(), 1);
    assert_eq!(s.exchange(&token(&old), &[]).0, 200);
    assert_eq!(s.gh.jwks_hits(), 1, "cached");

    // A kid nobody published: one fetch, then none within jwks_refresh_min.
    let fake = Key::es256("made-up");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(s.exchange(&token(&fake), &[]).0, 400);
    assert_eq!(s.gh.jwks_hits(), 2);
    assert_eq!(s.exchange(&token(&Key::es256("made-up-2")), &[]).0, 400);
    assert_eq!(s.gh.jwks_hits(), 2, "rate-limited");

    // The issuer rotates: the new key is fetched, the old one is gone.
    let new = Key::es256("gh-2");
    s.gh.rotate_to(new.clone());
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(s.exchange(&token(&new), &[]).0, 200);
    assert_eq!(s.gh.jwks_hits(), 3);
    assert_eq!(s.exchange(&token(&old), &[]).0, 400);
    let ex = s.exchanges(6);
    let decisions: Vec<&str> = ex.iter().map(|e| e["decision"].as_str().unwrap()).collect();
    assert_eq!(
        decisions,
        ["allow", "allow", "deny", "deny", "allow", "deny"]
    );
}

#[test]
fn sighup_reloads_the_policies_and_a_bad_file_keeps_the_old_ones() {
    let mut s = Setup::start(|_, _| String::new());
    let token = || s.gh.key().sign(&s.gh.claims(AUDIENCE, github_claims()));
    assert_eq!(s.exchange(&token(), &[]).0, 200);

    std::fs::write(&s.policies, "this is = not [valid").unwrap();
    s.server.signal(nix::sys::signal::Signal::SIGHUP);
    s.server.wait_for_log("federation policies not reloaded");
    assert_eq!(s.exchange(&token(), &[]).0, 200, "the old policies stay");

    let text = policy_file(s._dir.path(), &s.gh.url, &s.gl.url, "");
    let moved = std::fs::read_to_string(&text)
        .unwrap()
        .replace("\"octo/app\"", "\"octo/other\"");
    std::fs::write(&s.policies, moved).unwrap();
    s.server.signal(nix::sys::signal::Signal::SIGHUP);
    s.server.wait_for_log("federation policies reloaded");
    assert_eq!(
        s.exchange(&token(), &[]).0,
        400,
        "octo/app is no longer trusted"
    );
    let status = s.server.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_cli_says_what_is_missing() {
    let s = Setup::start(|_, _| String::new());
    let job = s.job();
    let o = job.run(&["create", "--federated"]);
    assert_fails(
        &o,
        exit::USAGE,
        &[
            "no CI platform",
            "--federated github, gitlab, file:PATH or env:NAME",
        ],
    );
    let mut gh = s.job();
    gh.set("GITHUB_ACTIONS", "true");
    let o = gh.run(&["create", "--federated"]);
    assert_fails(
        &o,
        exit::USAGE,
        &["ACTIONS_ID_TOKEN_REQUEST_URL", "id-token: write"],
    );
    let o = job.run(&["create", "--federated", "gitlab"]);
    assert_fails(&o, exit::USAGE, &["TOK_ID_TOKEN", "id_tokens"]);
    let o = Env::new().run(&["create", "--federated", "github"]);
    assert_fails(&o, exit::USAGE, &["not the local driver", "TOK_URL"]);
    let o = job.run(&["create", "--federated", "gitlab", "--audience", "x"]);
    assert_fails(
        &o,
        exit::USAGE,
        &["--audience is for --federated github", "id_tokens"],
    );
    let o = job.run(&["create", "--federated", "gh"]);
    assert_fails(&o, exit::USAGE, &["not an ID token source"]);
    let o = job.run(&["create", "--federated", "github", "--name", "x"]);
    assert_fails(&o, exit::USAGE, &["--name"]);

    // A token the server refuses: exit 4 and where to look.
    let mut bad = s.job();
    bad.set(
        "TOK_ID_TOKEN",
        &s.gl.key().sign(
            &s.gl
                .claims(GITLAB_AUDIENCE, json!({"project_path": "group/other"})),
        ),
    );
    let o = bad.run(&["create", "--federated", "gitlab"]);
    assert_fails(
        &o,
        exit::AUTH,
        &["invalid_grant", "tok audit --decision deny"],
    );
    assert!(stdout(&o).is_empty());

    // --audience overrides the server's: GitHub is asked for it, and this
    // server's policies do not accept it.
    let o = s.github_job().run(&[
        "create",
        "--federated",
        "--audience",
        "https://tok.test/other",
    ]);
    assert_fails(&o, exit::AUTH, &["invalid_grant"]);
    assert_eq!(
        s.gh.state
            .lock()
            .unwrap()
            .audiences
            .last()
            .map(String::as_str),
        Some("https://tok.test/other")
    );

    // A bad policy file stops the server before it listens.
    let bad_file = job.home().join("bad.toml");
    std::fs::write(
        &bad_file,
        "[[policy]]\nname = 'p'\nissuer = 'http://example.com'\n",
    )
    .unwrap();
    let o = job.run(&[
        "serve",
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--federation",
        bad_file.to_str().unwrap(),
    ]);
    assert_fails(
        &o,
        exit::USAGE,
        &["bad --federation file", "docs/federation.md"],
    );

    // A server without --federation.
    let plain = Server::start();
    let mut env = Env::new();
    env.set("TOK_URL", &plain.url);
    env.set("GITHUB_ACTIONS", "true");
    env.set(
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        &format!("{}/github/idtoken?api-version=2.0", s.gh.url),
    );
    env.set("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN);
    let o = env.run(&["create", "--federated"]);
    assert_fails(
        &o,
        exit::USAGE,
        &["takes no token exchange", "--federation FILE"],
    );
}

/// `scripts/oidc-test-issuer`, stopped when dropped; `vars` are the export
/// lines it printed.
struct ScriptIssuer {
    child: std::process::Child,
    vars: Vec<(String, String)>,
}

impl ScriptIssuer {
    fn start(args: &[&str]) -> ScriptIssuer {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/oidc-test-issuer");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs scripts/oidc-test-issuer (scripts/setup installs python3)");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let vars = (0..4)
            .map(|_| {
                let line = lines.next().expect("an export line").unwrap();
                let (k, v) = line
                    .strip_prefix("export ")
                    .unwrap()
                    .split_once('=')
                    .unwrap();
                (k.to_string(), v.trim_matches('\'').to_string())
            })
            .collect();
        ScriptIssuer { child, vars }
    }

    fn var(&self, k: &str) -> &str {
        &self.vars.iter().find(|(n, _)| n == k).unwrap().1
    }
}

impl Drop for ScriptIssuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_quick_try_in_docs_federation_md_mints_a_token_with_no_stored_secret() {
    let doc = include_str!("../../docs/federation.md");
    let start = doc
        .find("cat > federation.toml <<EOF\n")
        .expect("the quick try's policy")
        + 28;
    let policy = &doc[start..start + doc[start..].find("\nEOF\n").unwrap()];

    let issuer = ScriptIssuer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("federation.toml");
    std::fs::write(
        &path,
        policy.replace("$TOK_TEST_ISSUER", issuer.var("TOK_TEST_ISSUER")),
    )
    .unwrap();
    let server = Server::start_with(&["--federation", path.to_str().unwrap()]);

    let job = |issuer: &ScriptIssuer| {
        let mut env = Env::new();
        for (k, v) in &issuer.vars {
            env.set(k, v);
        }
        env.set("TOK_URL", &server.url);
        env
    };
    let o = job(&issuer).run(&["create", "--federated", "--ttl", "10m", "--scope", "deploy"]);
    assert_success(&o, &["create", "--federated"]);
    assert!(stdout(&o).starts_with("tok_"));
    assert!(stderr(&o).contains("(gh-octo/app-4242)"), "{}", stderr(&o));
    let t = &server.local().list_json(&["--name", "gh-*"])[0];
    assert_eq!(t["labels"], json!({"repo": "octo/app"}));

    let dev = ScriptIssuer::start(&["--claim", "ref=refs/heads/dev"]);
    std::fs::write(
        &path,
        policy.replace("$TOK_TEST_ISSUER", dev.var("TOK_TEST_ISSUER")),
    )
    .unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_log("federation policies reloaded");
    let o = job(&dev).run(&["create", "--federated", "--ttl", "10m", "--scope", "deploy"]);
    assert_fails(&o, exit::AUTH, &["invalid_grant"]);
}
