//! Readiness for systemd's `Type=notify` (sd_notify(3)): one datagram of
//! `KEY=VALUE` lines to the AF_UNIX socket named by `$NOTIFY_SOCKET`, where a
//! leading `@` names a Linux abstract socket. `READY=1` once every listener
//! accepts, `RELOADING=1` ... `READY=1` around a SIGHUP reload, `STOPPING=1`
//! when shutdown starts. Without `$NOTIFY_SOCKET` (not under systemd) it
//! does nothing. std has both address kinds since Rust 1.70, so no crate
//! and no unsafe code.

/// Sends `state` (newline-separated assignments); failures are logged, never
/// fatal: a server that cannot tell systemd it is ready still serves.
pub fn notify(state: &str) {
    #[cfg(target_os = "linux")]
    {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        if let Err(e) = send(&path, state) {
            tracing::warn!(error = %e, "could not notify systemd (NOTIFY_SOCKET)");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = state;
}

#[cfg(target_os = "linux")]
fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}
