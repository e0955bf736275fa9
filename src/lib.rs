//! tok: the whole life of bearer tokens.
//!
//! The binary is a thin shell over this library; see `main.rs`.

pub mod cli;
pub mod commands;
pub mod completion;
pub mod config;
pub mod credentials;
pub mod drivers;
pub mod duration;
pub mod env;
pub mod error;
pub mod help;
pub mod jose;
pub mod jq;
pub mod limits;
pub mod man;
pub mod model;
pub mod output;
pub mod registry;
pub mod secret;
pub mod server;
pub mod store;
pub mod text;
pub mod url;
pub mod wire;
