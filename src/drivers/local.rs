//! The `local` driver: the embedded SQLite store, no server needed.

use super::{DriverError, DriverKind, Gateway, Result, Revoked};
use crate::model::{check_new_token, Created, Filter, NewToken, Token};
use crate::secret::Secret;
use crate::store::Store;
use chrono::Utc;
use std::path::Path;

pub struct Local {
    store: Store,
    /// Who this process acts as: `local:<OS user>`, kept as created_by/revoked_by.
    principal: String,
}

impl Local {
    pub fn open(dir: &Path) -> Result<Local> {
        Ok(Local {
            store: Store::open(dir)?,
            principal: local_principal(),
        })
    }
}

/// `local:<user>` from the OS user name, or `local` when none is known.
pub fn local_principal() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .map(|u| format!("local:{u}"))
        .unwrap_or_else(|| "local".into())
}

impl Gateway for Local {
    fn kind(&self) -> DriverKind {
        DriverKind::Local
    }

    fn create(&self, new: &NewToken) -> Result<Created> {
        check_new_token(new).map_err(DriverError::Invalid)?;
        Ok(self.store.create(new, Some(&self.principal), Utc::now())?)
    }

    fn list(&self, filter: &Filter, sink: &mut dyn FnMut(Token) -> Result<()>) -> Result<()> {
        self.store.list(filter, None, Utc::now(), sink)
    }

    fn get(&self, id_or_prefix: &str) -> Result<Token> {
        Ok(self.store.resolve(id_or_prefix, Utc::now())?)
    }

    fn looks_like_id(&self, s: &str) -> bool {
        crate::store::looks_like_id(s)
    }

    fn lookup(&self, secret: &Secret) -> Result<Token> {
        super::check_tok_secret(secret)?;
        self.store
            .lookup(secret, Utc::now())?
            .ok_or_else(|| DriverError::UnknownSecret {
                fingerprint: secret.fingerprint(),
            })
    }

    fn revoke(&self, id: &str, reason: Option<&str>) -> Result<Revoked> {
        Ok(self
            .store
            .revoke(id, Some(&self.principal), reason, Utc::now())?)
    }

    fn whoami(&self) -> Result<super::Identity> {
        Ok(super::Identity::checked(self.principal.clone()))
    }

    fn audit(
        &self,
        filter: &crate::store::audit::AuditFilter,
        sink: &mut dyn FnMut(crate::store::audit::Entry) -> Result<()>,
    ) -> Result<()> {
        self.store.audit(filter, sink)
    }

    fn rotate(&self, id: &str, grace: Option<u64>) -> Result<(Created, Token)> {
        Ok(self
            .store
            .rotate(id, grace, Some(&self.principal), Utc::now())?)
    }
}
