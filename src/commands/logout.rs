//! `tok logout`: remove the stored credential of a profile (or of --url) from
//! where `tok login` stored it, and forget the login.

use super::Ctx;
use crate::cli::LogoutArgs;
use crate::credentials::{
    self, expiry, keyring_failure, Account, FileStore, Index, OsKeyring, SecretStore, Store,
};
use crate::drivers::DriverKind;
use crate::error::UserError;
use anyhow::Result;

pub fn run(ctx: &Ctx, _args: LogoutArgs) -> Result<()> {
    let kind = ctx.driver_kind();
    if kind == DriverKind::Local {
        return Err(UserError::usage("the local driver keeps no credential")
            .hint("name the gateway: `tok logout --profile NAME` or `tok logout --url URL`")
            .into());
    }
    let account = Account::new(ctx.profile_name.as_deref(), &ctx.require_url(kind)?)?;
    let index = Index::default_location()?;
    let file = FileStore::default_location()?;
    let keyring = OsKeyring::system()?;
    let login = index.get(&account)?;

    let mut removed = false;
    if file.delete(&account)? {
        removed = true;
        ctx.out.info(format!(
            "removed the credential for {} from {}",
            account.describe(),
            file.path().display()
        ));
    }
    // A file login left nothing in the keyring (login removed any older copy).
    if login != Some(Store::File) {
        match (keyring.delete(&account), login) {
            (Ok(true), _) => {
                removed = true;
                ctx.out.info(format!(
                    "removed the credential for {} from the OS keyring",
                    account.describe()
                ));
            }
            (Ok(false), _) => {}
            // tok put it there: not knowing whether it is gone is a failure (and
            // the login stays recorded, so that logout can be tried again).
            (Err(e), Some(Store::Keyring)) => {
                return Err(keyring_failure(kind, &account, "remove", &e).into())
            }
            // tok did not put it there; a look that fails is only worth a note.
            (Err(e), _) => {
                if ctx.out.verbose > 0 {
                    ctx.out
                        .info(format!("did not look in the OS keyring as well: {e}"));
                }
            }
        }
    }
    index.remove(&account)?;
    expiry::forget(&account);
    if !removed {
        ctx.out.info(format!(
            "no stored credential for {}; nothing to remove",
            account.describe()
        ));
    }
    if let Some(c) = credentials::from_env(kind) {
        ctx.out.warn(format!(
            "the credential in the environment ({}) still applies",
            c.source
        ));
    }
    Ok(())
}
