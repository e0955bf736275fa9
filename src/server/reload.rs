//! SIGHUP: the settings read again are applied where that is safe while
//! requests are in flight (the routes, the audit retention, the TLS
//! certificate) and every other change is named in the log as ignored until
//! the next restart.

use super::routes::Routes;
use super::{metrics, tls, Config, ProxyConfig};
use crate::store::audit::Retention;
use std::sync::Arc;

/// Applies what a reload may change in place: the routes (`routes`, shared
/// by the proxy and forward auth), the audit retention and the TLS
/// certificate. Requests in flight keep what they
/// started with. Every other change is named in the log and waits for a
/// restart.
pub fn apply(
    current: &mut Config,
    new: Config,
    routes: Option<&arc_swap::ArcSwap<Routes>>,
    certs: Option<&tls::Certs>,
    retention: &tokio::sync::watch::Sender<Retention>,
) {
    let mut applied = Vec::new();
    let mut ignored = Vec::new();
    // TLS first: a certificate that does not load refuses the whole reload.
    match (certs, &new.tls) {
        (Some(c), Some((cert, key))) => match tls::config(cert, key) {
            Ok(cfg) => {
                c.store(Arc::new(cfg));
                applied.push("tls certificate");
            }
            Err(e) => {
                metrics::METRICS.reload_failures.inc();
                tracing::error!(error = %format!("{e:#}"), "SIGHUP: the TLS certificate does not load; nothing was changed");
                return;
            }
        },
        (None, None) => {}
        _ => ignored.push("tls (turning TLS on or off)"),
    }
    let new_routes = new
        .proxy
        .as_ref()
        .map(|p| &p.routes)
        .or(new.forward_auth.as_ref().map(|f| &f.routes));
    if let (Some(r), Some(n)) = (routes, new_routes) {
        r.store(Arc::new(n.clone()));
        applied.push("routes");
    }
    match (&new.proxy, &current.proxy) {
        (Some(n), Some(c)) => {
            ignore_changed(
                &mut ignored,
                [
                    ("proxy listen", n.listen != c.listen),
                    ("proxy upstream", n.upstream != c.upstream),
                    (
                        "proxy upstream_timeout",
                        n.upstream_timeout != c.upstream_timeout,
                    ),
                ],
            );
        }
        (None, None) => {}
        _ => ignored.push("proxy (turning the proxy on or off)"),
    }
    retention.send_replace(new.retention);
    applied.push("audit retention");
    ignore_changed(
        &mut ignored,
        [
            ("listen", new.listen != current.listen),
            ("data_dir", new.data_dir != current.data_dir),
            (
                "header_timeout",
                new.header_timeout != current.header_timeout,
            ),
            ("metrics", new.metrics != current.metrics),
            (
                "metrics_listen",
                new.metrics_listen != current.metrics_listen,
            ),
        ],
    );
    metrics::METRICS.reloads.inc();
    let routes = new_routes.map_or(0, |r| r.routes.len());
    if ignored.is_empty() {
        tracing::info!(applied = %applied.join(", "), routes, "SIGHUP: reloaded");
    } else {
        tracing::warn!(applied = %applied.join(", "), routes, ignored = %ignored.join(", "), "SIGHUP: reloaded; the ignored settings take effect at the next restart");
    }
    // What was ignored stays as running, so the next reload reports it again.
    let keep_proxy = current.proxy.take();
    *current = Config {
        proxy: match (keep_proxy, new.proxy) {
            (Some(old), Some(n)) => Some(ProxyConfig {
                routes: n.routes,
                ..old
            }),
            (old, _) => old,
        },
        retention: new.retention,
        tls: if certs.is_some() {
            new.tls.or(current.tls.take())
        } else {
            current.tls.take()
        },
        ..current.clone()
    };
}

fn ignore_changed<const N: usize>(
    ignored: &mut Vec<&'static str>,
    changes: [(&'static str, bool); N],
) {
    ignored.extend(
        changes
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| *name),
    );
}
