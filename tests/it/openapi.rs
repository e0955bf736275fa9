//! docs/openapi.yaml checked against a real `tok serve` with schemathesis
//! (installed by scripts/setup/20-schemathesis.sh, found via TOK_SCHEMATHESIS):
//! every documented status, header and body shape, generated valid and invalid
//! requests, unknown methods, missing auth, and no 5xx.

use crate::common::*;
use crate::server::Server;

/// Examples per operation and phase: enough to hit every limit, small enough
/// to keep the run well under a minute.
const MAX_EXAMPLES: &str = "30";

#[test]
fn openapi_contract_holds_against_a_running_server() {
    let st = std::env::var("TOK_SCHEMATHESIS").unwrap_or_default();
    assert!(
        !st.is_empty() && std::path::Path::new(&st).is_file(),
        "TOK_SCHEMATHESIS does not name the schemathesis `st` command ({st:?}); run the tests \
         with scripts/test, which installs it (scripts/setup/20-schemathesis.sh)"
    );
    let server = Server::start();
    let client = server.client();
    let (target, _) = client.create_json(&["--ttl", "1h", "--name", "contract-target"]);

    let root = env!("CARGO_MANIFEST_DIR");
    let work = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(&st)
        .current_dir(work.path())
        .env("TOK_CONTRACT_TOKEN", &server.admin)
        .env("TOK_CONTRACT_ID", &target)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .arg("--config-file")
        .arg(format!("{root}/tests/contract/schemathesis.toml"))
        .arg("run")
        .arg(format!("{root}/docs/openapi.yaml"))
        .args(["--url", &server.url])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--generation-database", "none"])
        .arg("--no-color")
        .output()
        .expect("run schemathesis");
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        o.status.success(),
        "docs/openapi.yaml and the server disagree (schemathesis exit {:?}):\n{out}\n\
         server log:\n{}",
        o.status.code(),
        server.logs()
    );
    assert!(out.contains("passed"), "{out}");
    let logs = server.logs();
    assert!(!logs.contains("status=500"), "a 5xx:\n{logs}");
    // The run was authenticated (a run that only ever got 401s proves nothing).
    let authenticated = logs
        .lines()
        .filter(|l| l.contains("status=2") && l.contains("who=\"tk_"))
        .count();
    assert!(
        authenticated > 20,
        "only {authenticated} requests got a 2xx as admin; is schemathesis's auth set?\n{out}"
    );
    assert!(!logs.contains(&server.admin), "the admin token in the log");
    // The run revoked and rotated only its own target: the admin still works.
    assert!(!client.list_json(&["--state", "all"]).is_empty());
}
