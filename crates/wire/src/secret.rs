//! 32-byte secrets kept in files only their owner may read: a node's key
//! ([`Keypair::load_or_create`](crate::Keypair::load_or_create)) and its
//! HTTP API token. One loader, so every secret file is created, checked and
//! refused the same way.

use std::io::Write as _;
use std::path::Path;

use crate::WireError;
use crate::id::{hex, parse_hex32};

/// Loads the secret stored at `path` (64 hex digits), or creates a random
/// one there if the file does not exist. The file is created readable by
/// the owner only, in a folder made owner-only if it has to be made; an
/// existing file that others may read is refused, as ssh refuses such keys.
pub fn load_or_create_secret(path: &Path) -> Result<[u8; 32], WireError> {
    match load_secret(path) {
        Err(WireError::KeyFile { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).expect("the operating system has no randomness source");
            create(path, &secret)?;
            Ok(secret)
        }
        other => other,
    }
}

/// A seed no one else can guess, from the operating system: for draws
/// a peer must not predict (which results are checked).
pub fn random_seed() -> u64 {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).expect("the operating system has no randomness source");
    u64::from_le_bytes(seed)
}

/// Loads the secret stored at `path`, refusing a file others may read.
/// A missing file is an error: whoever reads a secret it did not create
/// (a client reading a node's token) must not make one up.
pub fn load_secret(path: &Path) -> Result<[u8; 32], WireError> {
    let io = |source| WireError::KeyFile {
        path: path.display().to_string(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(WireError::KeyFileExposed {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    // The error names the file, never its content: a secret.
    parse_hex32(text.trim(), "key file").map_err(|_| WireError::KeyFileInvalid {
        path: path.display().to_string(),
    })
}

/// Makes `path` a folder only its owner may enter (0700), creating it and
/// its missing parents, and taking group and other access away from one
/// that exists: a node's data folder holds its ledger, its jobs and its
/// requesters' inputs.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    let mut folder = std::fs::DirBuilder::new();
    folder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut folder, 0o700);
    folder.create(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

fn create(path: &Path, secret: &[u8; 32]) -> Result<(), WireError> {
    let io = |source| WireError::KeyFile {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        // A folder made for a secret holds secrets: owner-only.
        let mut folder = std::fs::DirBuilder::new();
        folder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut folder, 0o700);
        folder.create(parent).map_err(io)?;
    }
    // Write to a temporary name and rename so a crash never leaves a
    // half-written secret behind.
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    writeln!(file, "{}", hex(secret)).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn data_folders_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b/data");
        private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
    }
}
