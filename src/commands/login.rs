//! `tok login`: read a credential (hidden prompt or stdin, never argv), check it
//! against the gateway, and only then store it: in the OS keyring, or with
//! `--insecure-storage` in the plaintext file. A keyring that cannot store it is
//! an error; tok never falls back to the file on its own.

use super::Ctx;
use crate::cli::LoginArgs;
use crate::credentials::{
    self, expiry, keyring_failure, Account, Credential, FileStore, Index, OsKeyring, SecretStore,
    Source, Store,
};
use crate::drivers::{DriverError, DriverKind};
use crate::error::{Kind, UserError};
use crate::secret::Secret;
use anyhow::{Context, Result};

pub fn run(ctx: &Ctx, args: LoginArgs) -> Result<()> {
    let kind = ctx.driver_kind();
    if kind == DriverKind::Local {
        return Err(UserError::usage("the local driver needs no credential")
            .hint("log in to a gateway: `tok login --profile NAME` for a profile with a URL, or `tok login --url URL`")
            .into());
    }
    let account = Account::new(ctx.profile_name.as_deref(), &ctx.require_url(kind)?)?;
    let keyring = OsKeyring::system()?;
    let file = FileStore::default_location()?;

    let input = input(ctx, &args)?;
    if !args.insecure_storage {
        // Find out that the keyring is unusable before asking for the credential
        // and before any request.
        keyring
            .ready_to_store(&account)
            .map_err(|e| keyring_failure(kind, &account, "store", &e))?;
    }
    let secret = read_credential(input, &account)?;
    let settings = ctx.settings_with(
        ctx.http_settings(kind)?,
        Some(Credential {
            secret: secret.clone(),
            source: Source::Login,
        }),
    );
    let identity = ctx.gateway_with(kind, settings)?.whoami().map_err(|e| {
        // The drivers' own hints name the environment variables; here the
        // credential came from stdin or the prompt.
        let hint = match e {
            _ if e.kind() == Kind::Auth => Some(
                "check that this is a working admin credential for this gateway, copied whole"
                    .to_string(),
            ),
            DriverError::Unsupported {
                op: crate::drivers::Op::Whoami,
                ..
            } => Some(format!(
                "tok login stores only a credential it could check; set {} instead",
                credentials::env_names(kind)
            )),
            _ => e.hint(),
        };
        UserError {
            kind: e.kind(),
            message: format!(
                "could not log in to {}; nothing was saved: {e}",
                account.describe()
            ),
            hint,
        }
    })?;
    if !identity.checked {
        return Err(UserError::new(
            Kind::Unsupported,
            format!(
                "could not log in to {}; nothing was saved: the gateway ({}) accepts any credential, so tok cannot tell whether this one works",
                account.describe(),
                identity.principal
            ),
        )
        .hint(format!(
            "the {} driver works without a credential there; if the gateway starts checking admin credentials, log in then",
            kind.as_str()
        ))
        .into());
    }

    let index = Index::default_location()?;
    let before = index.get(&account)?;
    let place = if args.insecure_storage {
        file.set(&account, &secret)?;
        index.set(&account, Store::File)?;
        ctx.out.warn(format!(
            "the credential for {} is stored in PLAINTEXT in {}; anyone who can read that file can use it. Prefer the OS keyring (`tok login` without --insecure-storage), or {} in CI",
            account.describe(),
            file.path().display(),
            crate::env::ADMIN_TOKEN
        ));
        if before == Some(Store::Keyring) {
            // The older copy is no longer used; do not leave it behind.
            match keyring.delete(&account) {
                Ok(_) => ctx.out.info(format!(
                    "removed the older credential for {} from the OS keyring",
                    account.describe()
                )),
                Err(e) => ctx.out.warn(format!(
                    "could not remove the older credential for {} from the OS keyring: {e}",
                    account.describe()
                )),
            }
        }
        format!("in {}", file.path().display())
    } else {
        keyring
            .set(&account, &secret)
            .map_err(|e| keyring_failure(kind, &account, "store", &e))?;
        index.set(&account, Store::Keyring)?;
        if file
            .delete(&account)
            .context("could not remove the older plaintext copy")?
        {
            ctx.out.info(format!(
                "removed the older plaintext copy from {}",
                file.path().display()
            ));
        }
        "in the OS keyring".to_string()
    };
    expiry::record(&ctx.out, &account, &secret, &identity);

    ctx.out.info(format!(
        "logged in to {} as {}; the credential is stored {place}",
        account.describe(),
        identity.principal
    ));
    if let Some(at) = identity.expires_at {
        if let Some(w) = expiry::warning("this credential", at, chrono::Utc::now()) {
            ctx.out.warn(w);
        }
    }
    if let Some(c) = credentials::from_env(kind) {
        ctx.out.warn(format!(
            "{} is set here, and commands use it before the stored credential",
            match c.source {
                Source::Env(v) => v,
                _ => crate::env::ADMIN_TOKEN,
            }
        ));
    }
    Ok(())
}

const PIPE_HINT: &str = "pipe it in: `printf %s \"$TOKEN\" | tok login --with-token`";

/// Where the credential will come from.
#[derive(Clone, Copy)]
enum Input {
    Stdin,
    Prompt,
}

/// Decides, before anything else happens, whether the credential can be read.
fn input(ctx: &Ctx, args: &LoginArgs) -> Result<Input> {
    if args.with_token {
        if ctx.out.stdin_tty {
            return Err(UserError::usage(
                "--with-token reads the credential from stdin, but stdin is a terminal",
            )
            .hint(format!(
                "{PIPE_HINT}, or leave out --with-token to be asked"
            ))
            .into());
        }
        Ok(Input::Stdin)
    } else if ctx.out.interactive() {
        Ok(Input::Prompt)
    } else {
        Err(
            UserError::usage("there is no terminal to ask for the credential on")
                .hint(PIPE_HINT)
                .into(),
        )
    }
}

/// The credential from stdin (`--with-token`) or a hidden prompt on a terminal.
fn read_credential(input: Input, account: &Account) -> Result<Secret> {
    let raw = match input {
        Input::Stdin => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("could not read the credential from stdin")?;
            crate::text::utf8_text(buf, "the credential on stdin")?
        }
        Input::Prompt => dialoguer::Password::new()
            .with_prompt(format!("Admin credential for {}", account.describe()))
            .allow_empty_password(false)
            .interact()
            .context("could not read the credential from the terminal")?,
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(UserError::usage("the credential is empty")
            .hint(PIPE_HINT)
            .into());
    }
    if trimmed.contains(['\n', '\r']) {
        return Err(
            UserError::usage("stdin holds more than one line; give the credential alone")
                .hint(PIPE_HINT)
                .into(),
        );
    }
    Ok(Secret::new(trimmed))
}
