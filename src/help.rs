//! Help for people, laid out from the clap tree in `cli`: each command's
//! examples after its usage and options, and a subcommand's help with its own
//! options only and a pointer to the global ones (`tok --help` and the man
//! pages keep the full list).

use crate::cli::Cli;

/// The last line of a subcommand's help, which lists only its own options.
const GLOBAL_POINTER: &str =
    "Global options (--profile, --url, --driver, --data-dir, -o, --color, -q, -v, ...) apply too: see `tok --help`.";

/// The command as tok runs it for `args`: each command's examples after its
/// usage and options, and, when the help of a subcommand is asked for, the
/// global options left out of it but for a one-line pointer (`tok --help`
/// and the man pages keep the full list).
pub fn command_for(args: &[std::ffi::OsString]) -> clap::Command {
    let cmd = examples_last(<Cli as clap::CommandFactory>::command());
    if !wants_subcommand_help(args, &cmd) {
        return cmd;
    }
    let globals: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.get_id().to_string())
        .collect();
    let mut cmd = cmd;
    for g in globals {
        cmd = cmd.mut_arg(g, |a| a.hide(true));
    }
    each_subcommand(cmd, with_global_pointer)
}

/// Whether `args` ask for a subcommand's help: `tok SUB ... --help`, `-h`,
/// or `tok help SUB`.
fn wants_subcommand_help(args: &[std::ffi::OsString], cmd: &clap::Command) -> bool {
    let words: Vec<&str> = args.iter().skip(1).filter_map(|a| a.to_str()).collect();
    let is_sub = |w: &str| cmd.get_subcommands().any(|s| s.get_name() == w);
    match words.iter().position(|w| is_sub(w) || *w == "help") {
        Some(i) if words[i] == "help" => words.len() > i + 1,
        Some(_) => words.iter().any(|w| *w == "-h" || *w == "--help"),
        None => false,
    }
}

fn with_global_pointer(cmd: clap::Command) -> clap::Command {
    let long = match cmd.get_after_long_help() {
        Some(after) => format!("{after}\n\n{GLOBAL_POINTER}"),
        None => GLOBAL_POINTER.to_string(),
    };
    let cmd = cmd.after_help(GLOBAL_POINTER).after_long_help(long);
    each_subcommand(cmd, with_global_pointer)
}

/// Moves a command's `Examples:` from its description to after its options,
/// so that `--help` reads: what it does, usage, options, then examples.
fn examples_last(mut cmd: clap::Command) -> clap::Command {
    if let Some(text) = cmd.get_long_about().map(|s| s.to_string()) {
        if let Some(i) = text.find("\nExamples:\n") {
            let (about, examples) = text.split_at(i);
            cmd = cmd
                .long_about(about.trim_end().to_string())
                .after_long_help(examples.trim().to_string());
        }
    }
    each_subcommand(cmd, examples_last)
}

/// `cmd` with `f` applied to each of its direct subcommands.
fn each_subcommand(mut cmd: clap::Command, f: fn(clap::Command) -> clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for n in names {
        cmd = cmd.mut_subcommand(n, f);
    }
    cmd
}
