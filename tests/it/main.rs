//! One integration binary: every test runs the real `tok` binary in a hermetic
//! environment (cleared env, temp HOME and XDG dirs, fixed COLUMNS, NO_COLOR).

mod admission;
mod audit;
mod auth;
mod auth_server;
mod common;
mod completions;
mod conformance;
mod doubles;
mod dpop;
mod edges;
mod errors;
mod federation;
mod forward_auth;
mod gateways;
mod help;
mod hostile;
mod lifecycle;
mod nodes;
mod oauth2;
mod openapi;
mod operating;
mod output;
mod people;
mod pg;
mod postgres;
mod proxy;
mod readme;
mod reuse;
mod schema;
mod serve;
mod server;
mod servers;
mod tty;
mod upstream;
mod vault;
