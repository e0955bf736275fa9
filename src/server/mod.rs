//! `tok serve`: the admin API, the enforcing proxy, and their shared parts.

pub mod audit_writer;
pub mod oauth;
pub mod proxy;
pub mod routes;
