//! Names of every environment variable tok reads, in one place.

pub const PROFILE: &str = "TOK_PROFILE";
pub const DRIVER: &str = "TOK_DRIVER";
pub const URL: &str = "TOK_URL";
pub const OUTPUT: &str = "TOK_OUTPUT";
pub const COLOR: &str = "TOK_COLOR";
pub const TIMEOUT: &str = "TOK_TIMEOUT";
pub const CA_CERT: &str = "TOK_CA_CERT";
pub const DATA_DIR: &str = "TOK_DATA_DIR";
pub const CONFIG_DIR: &str = "TOK_CONFIG_DIR";
pub const ADMIN_TOKEN: &str = "TOK_ADMIN_TOKEN";
pub const LISTEN: &str = "TOK_LISTEN";
pub const COMPLETE: &str = "TOK_COMPLETE";
pub const COMPLETE_TIMEOUT: &str = "TOK_COMPLETE_TIMEOUT";
pub const NO_COLOR: &str = "NO_COLOR";
pub const CLICOLOR_FORCE: &str = "CLICOLOR_FORCE";
pub const GITHUB_ACTIONS: &str = "GITHUB_ACTIONS";
