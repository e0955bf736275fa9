//! One integration binary: every test runs the real `tok` binary in a hermetic
//! environment (cleared env, temp HOME and XDG dirs, fixed COLUMNS, NO_COLOR).

mod common;
mod errors;
mod lifecycle;
mod openapi;
mod serve;
mod server;
