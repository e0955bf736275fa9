//! The token lifecycle on the embedded store: create, list, inspect, revoke, rotate.

use crate::common::*;

#[test]
fn create_prints_the_secret_alone_and_a_summary_on_stderr() {
    let env = Env::new();
    let o = env.run(&["create", "--ttl", "15m", "--scope", "orders:read"]);
    assert_success(&o, &["create"]);
    let out = stdout(&o);
    assert!(out.starts_with("tok_") && out.ends_with('\n'));
    assert_eq!(out.lines().count(), 1);
    let err = stderr(&o);
    assert!(
        err.contains("created tk_") && err.contains("Z (in 1"),
        "{err}"
    );
}
