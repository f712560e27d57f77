use std::fmt;
use std::path::Path;
use std::str::FromStr;

use bytes::BufMut;
use commonware_codec::{Buf, Error as CodecError, FixedSize, Read, Write};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use crate::WireError;
use crate::id::{hex, parse_hex32};

/// An ed25519 public key. Cairn uses it directly as a node's identity.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

/// A node's identity: its ed25519 public key, nothing more, so any message a
/// node signs proves which node sent it.
pub type NodeId = PublicKey;

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

/// An ed25519 signing key together with its public key.
#[derive(Clone)]
pub struct Keypair {
    secret: SigningKey,
    public: PublicKey,
}

impl Keypair {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system has no randomness source");
        Self::from_seed(seed)
    }

    /// The key derived from a 32-byte seed; the same seed always gives the
    /// same key (tests and simulations rely on this).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let secret = SigningKey::from_bytes(&seed);
        let public = PublicKey(secret.verifying_key().to_bytes());
        Self { secret, public }
    }

    /// Loads the key stored at `path`, or creates one there (readable by the
    /// owner only) if the file does not exist; a key file others may read is
    /// refused (see [`load_or_create_secret`](crate::load_or_create_secret)).
    pub fn load_or_create(path: &Path) -> Result<Self, WireError> {
        crate::secret::load_or_create_secret(path).map(Self::from_seed)
    }

    /// The 32-byte secret seed, for handing the same identity to another
    /// library (the consensus engine's key type). Never log or send it.
    pub fn secret_seed(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// This key's public half, which is also the node id.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.secret.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret half.
        write!(f, "Keypair({})", self.public)
    }
}

impl PublicKey {
    /// The all-zero key: the least key in byte order, for range bounds. It is
    /// not a valid signer.
    pub const MIN: PublicKey = PublicKey([0; 32]);

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Checks `signature` over `message`. Strict verification rejects
    /// malleable signatures and weak keys, so one message has one valid
    /// signature per key and replay detection by signature bytes is sound.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &signature).is_ok()
    }

    /// A short prefix for logs; never use it to compare keys.
    pub fn short(&self) -> String {
        hex(&self.0[..6])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl FromStr for PublicKey {
    type Err = WireError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse_hex32(input, "public key").map(Self)
    }
}

impl Signature {
    /// The raw 64 bytes.
    pub const fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex(&self.0[..6]))
    }
}

/// Batches smaller than this are checked one by one.
const BATCH_FROM: usize = 8;

/// Verifies many signatures at once, faster than one by one. True only if
/// every signature is valid; on false, check individually to find the bad
/// ones. Unlike [`PublicKey::verify`], batch verification is not strict:
/// it can accept a signature the strict check refuses (a key or nonce
/// with a small-order part, whose weight in the batch cancels it), so
/// anything kept as evidence, or deduplicated by its signature bytes, must
/// be checked strictly.
pub fn verify_batch(items: &[(&[u8], &PublicKey, &Signature)]) -> bool {
    // A batch pays for random scalars and a multi-scalar multiplication
    // over every point: below a handful of signatures that costs more than
    // checking each.
    if items.len() < BATCH_FROM {
        return items
            .iter()
            .all(|(message, key, signature)| key.verify(message, signature));
    }
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (message, key, signature) in items {
        let Ok(key) = VerifyingKey::from_bytes(&key.0) else {
            return false;
        };
        messages.push(*message);
        signatures.push(ed25519_dalek::Signature::from_bytes(&signature.0));
        keys.push(key);
    }
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

macro_rules! fixed_bytes_codec {
    ($ty:ident, $len:literal) => {
        impl Write for $ty {
            fn write(&self, buf: &mut impl BufMut) {
                self.0.write(buf);
            }
        }

        impl FixedSize for $ty {
            const SIZE: usize = $len;
        }

        impl Read for $ty {
            type Cfg = ();

            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
                <[u8; $len]>::read_cfg(buf, &()).map(Self)
            }
        }
    };
}

fixed_bytes_codec!(PublicKey, 32);
fixed_bytes_codec!(Signature, 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_determines_key() {
        assert_eq!(
            Keypair::from_seed([1; 32]).public(),
            Keypair::from_seed([1; 32]).public()
        );
        assert_ne!(
            Keypair::from_seed([1; 32]).public(),
            Keypair::from_seed([2; 32]).public()
        );
    }

    #[test]
    fn signature_binds_message_and_key() {
        let key = Keypair::from_seed([3; 32]);
        let signature = key.sign(b"lease 9");
        assert!(key.public().verify(b"lease 9", &signature));
        assert!(!key.public().verify(b"lease 8", &signature));
        let other = Keypair::from_seed([4; 32]);
        assert!(!other.public().verify(b"lease 9", &signature));
    }

    #[test]
    fn batch_verification_finds_a_bad_signature() {
        // Checked one by one below `BATCH_FROM`, in a batch from it.
        for n in [1u8, 4, BATCH_FROM as u8, 12] {
            let keys: Vec<Keypair> = (0..n).map(|i| Keypair::from_seed([i; 32])).collect();
            let messages: Vec<Vec<u8>> = (0..n).map(|i| vec![i; 10]).collect();
            let signatures: Vec<Signature> =
                keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
            let publics: Vec<PublicKey> = keys.iter().map(Keypair::public).collect();
            let items: Vec<(&[u8], &PublicKey, &Signature)> = messages
                .iter()
                .zip(&publics)
                .zip(&signatures)
                .map(|((m, k), s)| (m.as_slice(), k, s))
                .collect();
            assert!(verify_batch(&items), "{n} valid");
            let mut tampered = items.clone();
            tampered[n as usize / 2].0 = b"forged";
            assert!(!verify_batch(&tampered), "{n} with one forged");
        }
    }

    #[test]
    fn key_file_round_trip_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/node.key");
        let created = Keypair::load_or_create(&path).unwrap();
        let loaded = Keypair::load_or_create(&path).unwrap();
        assert_eq!(created.public(), loaded.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let folder = std::fs::metadata(path.parent().unwrap()).unwrap();
            assert_eq!(folder.permissions().mode() & 0o777, 0o700);
        }
    }

    #[test]
    fn corrupt_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        std::fs::write(&path, "not a key").unwrap();
        private(&path);
        let err = Keypair::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("does not hold a key"), "{err}");
        assert!(
            !err.contains("not a key"),
            "the content is never shown: {err}"
        );
    }

    #[cfg(unix)]
    fn private(path: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused_and_the_fix_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let created = Keypair::load_or_create(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Keypair::load_or_create(&path).unwrap_err().to_string();
            assert!(err.contains(&format!("mode {mode:03o}")), "{err}");
            assert!(err.contains("chmod 600"), "{err}");
        }
        private(&path);
        assert_eq!(
            Keypair::load_or_create(&path).unwrap().public(),
            created.public()
        );
    }
}
