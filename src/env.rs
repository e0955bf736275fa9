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
/// The shared secret forward-auth callers must send (`tok serve --auth-listen`).
pub const AUTH_SECRET: &str = "TOK_AUTH_SECRET";
pub const KEYRING_TIMEOUT: &str = "TOK_KEYRING_TIMEOUT";
pub const LISTEN: &str = "TOK_LISTEN";
pub const APP: &str = "TOK_APP";
/// `tok serve`: a PostgreSQL store URL (may carry a password) and the node name.
pub const STORE: &str = "TOK_STORE";
pub const NODE_NAME: &str = "TOK_NODE_NAME";
/// `tok store copy`: the stores, which may be URLs with a password.
pub const COPY_FROM: &str = "TOK_COPY_FROM";
pub const COPY_TO: &str = "TOK_COPY_TO";
pub const OWNER: &str = "TOK_OWNER";
/// Gateway-specific admin credentials, tried before TOK_ADMIN_TOKEN.
pub const APIPARK_API_KEY: &str = "APIPARK_API_KEY";
pub const KONG_ADMIN_TOKEN: &str = "KONG_ADMIN_TOKEN";
pub const APISIX_ADMIN_KEY: &str = "APISIX_ADMIN_KEY";
pub const TYK_SECRET: &str = "TYK_SECRET";
pub const VAULT_MOUNT: &str = "TOK_VAULT_MOUNT";
pub const VAULT_NAMESPACE: &str = "TOK_VAULT_NAMESPACE";
/// Vault's own variables, read by the vault driver as Vault's CLI reads them.
pub const VAULT_TOKEN: &str = "VAULT_TOKEN";
pub const VAULT_ADDR: &str = "VAULT_ADDR";
pub const CLIENT_ID: &str = "TOK_CLIENT_ID";
pub const CLIENT_SECRET: &str = "TOK_CLIENT_SECRET";
pub const COMPLETE: &str = "TOK_COMPLETE";
pub const COMPLETE_TIMEOUT: &str = "TOK_COMPLETE_TIMEOUT";
pub const NO_COLOR: &str = "NO_COLOR";
pub const CLICOLOR_FORCE: &str = "CLICOLOR_FORCE";
pub const GITHUB_ACTIONS: &str = "GITHUB_ACTIONS";
