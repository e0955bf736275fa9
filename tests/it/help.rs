//! Help for people: usage before examples, a subcommand's own options with a
//! pointer to the global ones, the exit codes in `tok help exit-codes`
//! (insta snapshots of the texts).

use crate::common::*;

fn help(args: &[&str]) -> String {
    let env = Env::new();
    env.ok(args)
}

#[test]
fn a_subcommand_help_lists_its_own_options_then_examples() {
    for args in [
        vec!["create", "--help"],
        vec!["list", "--help"],
        vec!["help", "revoke"],
        vec!["--profile", "x", "inspect", "-h"],
    ] {
        let text = help(&args);
        let usage = text.find("Usage:").expect("a usage line");
        if let Some(examples) = text.find("Examples:") {
            assert!(usage < examples, "{args:?}: usage comes first:\n{text}");
            assert!(
                text.find("Options:").unwrap() < examples,
                "{args:?}:\n{text}"
            );
        }
        for global in [
            "--vault-mount",
            "--ca-cert",
            "--data-dir <DIR>",
            "Global options:",
        ] {
            assert!(!text.contains(global), "{args:?} lists {global}:\n{text}");
        }
        assert!(
            text.contains("apply too: see `tok --help`"),
            "{args:?}:\n{text}"
        );
    }
    // The full list stays in `tok --help`.
    let root = help(&["--help"]);
    for global in [
        "--vault-mount",
        "--ca-cert",
        "--data-dir <DIR>",
        "Global options:",
    ] {
        assert!(root.contains(global), "{global}:\n{root}");
    }
    assert!(root.contains("tok help exit-codes"), "{root}");
    insta::assert_snapshot!("help_root", root);
    insta::assert_snapshot!("help_create", help(&["create", "--help"]));
    insta::assert_snapshot!("help_list_short", help(&["list", "-h"]));
    insta::assert_snapshot!("help_revoke", help(&["revoke", "--help"]));
    insta::assert_snapshot!("help_profile_use", help(&["profile", "use", "--help"]));
}

#[test]
fn exit_codes_have_their_own_help_and_match_the_readme() {
    let text = help(&["help", "exit-codes"]);
    insta::assert_snapshot!("help_exit_codes", text);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for line in text.lines().skip(1) {
        let (code, _) = line.trim().split_once("  ").unwrap();
        assert!(
            readme.contains(&format!("| {code} |")),
            "README lacks exit code {code}"
        );
    }
    let man = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/tok.1")).unwrap();
    assert!(man.contains("cancelled"), "man tok lists the exit codes");
}
