//! `tok logout`: remove the stored credential of a profile (or of --url) from
//! the OS keyring and from the --insecure-storage file.

use super::Ctx;
use crate::cli::LogoutArgs;
use crate::credentials::{
    self, expiry, keyring_failure, Account, FileStore, OsKeyring, SecretStore,
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
    let file = FileStore::default_location()?;
    let from_keyring = OsKeyring::system()?.delete(&account);
    let from_file = file.delete(&account)?;
    expiry::forget(&account);

    let mut removed = from_file;
    match from_keyring {
        Ok(true) => {
            removed = true;
            ctx.out.info(format!(
                "removed the credential for {} from the OS keyring",
                account.describe()
            ));
        }
        Ok(false) => {}
        Err(e) if from_file => ctx.out.warn(format!(
            "could not check the OS keyring for a credential of {} too: {e}",
            account.describe()
        )),
        Err(e) => return Err(keyring_failure(kind, &account, "remove", &e).into()),
    }
    if from_file {
        ctx.out.info(format!(
            "removed the credential for {} from {}",
            account.describe(),
            file.path().display()
        ));
    }
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
