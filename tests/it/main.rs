//! One integration binary: every test runs the real `tok` binary in a hermetic
//! environment (cleared env, temp HOME and XDG dirs, fixed COLUMNS, NO_COLOR).

mod common;
mod lifecycle;
mod oauth2;
mod servers;
mod vault;
