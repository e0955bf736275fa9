//! `tok dpop keygen` and `tok dpop proof`: a client's side of DPoP (RFC 9449),
//! for scripts and curl. The formats and claims are `crate::dpop`'s.

use super::{read_stdin, Ctx};
use crate::cli::{DpopCommand, DpopKeygenArgs, DpopProofArgs};
use crate::dpop::{pem_encode, SigningKey};
use crate::error::UserError;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn run(ctx: &Ctx, cmd: DpopCommand) -> Result<()> {
    match cmd {
        DpopCommand::Keygen(a) => keygen(ctx, a),
        DpopCommand::Proof(a) => proof(ctx, a),
    }
}

fn public_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".jwk");
    PathBuf::from(s)
}

fn keygen(ctx: &Ctx, args: DpopKeygenArgs) -> Result<()> {
    let public = public_path(&args.file);
    if !args.force {
        for p in [&args.file, &public] {
            if p.exists() {
                return Err(UserError::usage(format!("{} already exists", p.display()))
                    .hint("choose another file, or give --force to replace it")
                    .into());
            }
        }
    }
    let (key, der) = SigningKey::generate(args.alg).map_err(anyhow::Error::msg)?;
    let jwk = key.public_jwk().to_string() + "\n";
    // The public key first: a private key is never left without its pair.
    write_atomic(&public, jwk.as_bytes(), args.force, 0o644)?;
    write_atomic(
        &args.file,
        pem_encode("PRIVATE KEY", &der).as_bytes(),
        args.force,
        0o600,
    )?;
    ctx.out.info(format!(
        "wrote the private key to {} (0600) and the public key to {}",
        args.file.display(),
        public.display()
    ));
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", key.jkt())?;
    out.flush()?;
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// renamed into place: never a half-written file, never over an existing one
/// unless `replace`.
fn write_atomic(path: &Path, bytes: &[u8], replace: bool, mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("could not write in {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    let done = if replace {
        tmp.persist(path).map(|_| ())
    } else {
        tmp.persist_noclobber(path).map(|_| ())
    };
    done.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            UserError::usage(format!("{} already exists", path.display()))
                .hint("choose another file, or give --force to replace it")
                .into()
        } else {
            anyhow::Error::new(e.error).context(format!("could not write {}", path.display()))
        }
    })
}

fn proof(ctx: &Ctx, args: DpopProofArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("could not read the key {}", args.key.display()))?;
    let key = SigningKey::from_pem(&text).map_err(|e| {
        UserError::usage(format!("{}: {e}", args.key.display()))
            .hint("give the private key file `tok dpop keygen` wrote")
    })?;
    let method = args.method.to_ascii_uppercase();
    if crate::dpop::normalize_htu(&args.url).is_none() {
        return Err(UserError::usage(format!(
            "`{}` is not an absolute http(s) URL",
            crate::error::shorten(&args.url, 80)
        ))
        .hint("give the whole URL of the request, e.g. https://api.example/v1/items")
        .into());
    }
    let token = if args.token_stdin {
        let t = read_stdin(ctx, Some("Token"))?;
        let t = t.trim().to_string();
        if t.is_empty() {
            return Err(UserError::usage("stdin held no token")
                .hint("pipe the token in: printf %s \"$TOKEN\" | tok dpop proof ... --token-stdin")
                .into());
        }
        Some(t)
    } else {
        None
    };
    let now = chrono::Utc::now().timestamp();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..args.count {
        let proof = key
            .proof(&method, &args.url, token.as_deref(), now)
            .map_err(anyhow::Error::msg)?;
        writeln!(out, "{proof}")?;
    }
    out.flush()?;
    Ok(())
}
