use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use bytes::BufMut;
use commonware_codec::{Buf, Error as CodecError, FixedSize, Read, Write};
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_zebra::{SigningKey, VerificationKey, VerificationKeyBytes, batch};
use zeroize::Zeroize;

use crate::WireError;
use crate::checked::Entry;
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

/// An ed25519 signing key together with its public key. Clones share the
/// secret, which is wiped when the last one is dropped.
#[derive(Clone)]
pub struct Keypair {
    secret: Arc<Secret>,
    public: PublicKey,
}

struct Secret(SigningKey);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
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
        let secret = SigningKey::from(seed);
        let public = PublicKey(VerificationKeyBytes::from(&secret).into());
        Self {
            secret: Arc::new(Secret(secret)),
            public,
        }
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
        self.secret.0.to_bytes()
    }

    /// This key's public half, which is also the node id.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.secret.0.sign(message).to_bytes())
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

    /// Checks `signature` over `message` by the one rule every check in
    /// Cairn uses, alone or in a [`Batch`], so that the two never disagree
    /// (ZIP-215's, described at [`Batch`]): a requester keeps as evidence
    /// only what the ledger will take, and validators agree on every
    /// transaction whichever way each checks it. A signature this process
    /// found valid before is a lookup ([`crate::checked`]).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        if self.is_weak() {
            return false;
        }
        let entry = Entry::of(&self.0, &signature.0, message);
        if entry.as_ref().is_some_and(Entry::is_known) {
            return true;
        }
        let Ok(key) = VerificationKey::try_from(self.0) else {
            return false;
        };
        let valid = key
            .verify(&ed25519_zebra::Signature::from_bytes(&signature.0), message)
            .is_ok();
        if valid && let Some(entry) = entry {
            entry.remember();
        }
        valid
    }

    /// Whether this is a point of small order, which satisfies the
    /// verification equation for any message with a signature anyone can
    /// make. Such a key signs nothing. (Bytes that are no point at all are
    /// refused by the check itself.)
    fn is_weak(&self) -> bool {
        SMALL_ORDER_ENCODINGS.contains(&self.0)
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

/// Every 32 bytes that decode to a point of small order: each of the eight
/// such points encoded with either sign of its `x` and with its `y` as is
/// or plus the field's prime `p` (ZIP-215 takes both), where that decodes
/// to the point. Found once, so that judging a key costs a few
/// comparisons, not a point decompression.
static SMALL_ORDER_ENCODINGS: LazyLock<Vec<[u8; 32]>> = LazyLock::new(|| {
    // p = 2^255 - 19, little-endian.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut found = Vec::new();
    for point in EIGHT_TORSION {
        let canonical = point.compress().to_bytes();
        let mut plus_p = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            // `y` sits in the low 255 bits; the top bit is the sign.
            let y = if i == 31 {
                canonical[i] & 0x7f
            } else {
                canonical[i]
            };
            let sum = u16::from(y) + u16::from(p[i]) + carry;
            plus_p[i] = sum as u8;
            carry = sum >> 8;
        }
        // Past 2^255 there is no such encoding.
        let wraps = carry != 0 || plus_p[31] & 0x80 != 0;
        let mut candidates = vec![canonical];
        if !wraps {
            candidates.push(plus_p);
        }
        for bytes in candidates {
            for sign in [0, 0x80] {
                let mut encoding = bytes;
                encoding[31] = (encoding[31] & 0x7f) | sign;
                if decodes_to_small_order(&encoding) && !found.contains(&encoding) {
                    found.push(encoding);
                }
            }
        }
    }
    found
});

/// Whether `encoding` decodes, as ZIP-215 decodes a key, to a point of
/// small order.
fn decodes_to_small_order(encoding: &[u8; 32]) -> bool {
    CompressedEdwardsY(*encoding)
        .decompress()
        .is_some_and(|point| point.is_small_order())
}

/// Signatures checked together, for less than one by one from two on (a
/// pull's reports, a block's transactions), since one multi-scalar
/// multiplication checks them all and signatures by the same key share
/// their key's term.
///
/// A batch is true exactly when [`PublicKey::verify`] is true for every
/// signature in it: both follow [ZIP-215]'s rules (a canonical `s`, the
/// cofactored equation `[8][s]B = [8]R + [8][k]A`, any encoding of a
/// point for `R` and the key), under which, unlike RFC 8032's strict
/// check, the random weights of a batch cannot cancel a crafted
/// signature's small-order part. The equation needs the signer's secret
/// for each signature, so one seen cannot be turned into another. On
/// false, check one by one to find which is bad. Signatures this process
/// found valid before are not checked again ([`crate::checked`]).
///
/// [ZIP-215]: https://zips.z.cash/zip-0215
#[derive(Default)]
pub struct Batch {
    queued: batch::Verifier,
    /// The first signature queued, checked alone if it stays the only one
    /// (a batch of one costs more than a plain check).
    first: Option<batch::Item>,
    /// How many signatures are queued.
    queued_count: usize,
    /// Their cache entries, remembered if the batch passes (none while
    /// the cache is off).
    entries: Vec<Entry>,
    weak: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `signature` by `key` over `message`; the message is hashed
    /// now, so it need not outlive the call.
    pub fn add(&mut self, key: &PublicKey, message: &[u8], signature: &Signature) {
        self.weak |= key.is_weak();
        let entry = Entry::of(&key.0, &signature.0, message);
        if entry.as_ref().is_some_and(Entry::is_known) {
            return;
        }
        let item = batch::Item::from((
            VerificationKeyBytes::from(key.0),
            ed25519_zebra::Signature::from_bytes(&signature.0),
            message,
        ));
        if self.queued_count == 0 {
            self.first = Some(item.clone());
        }
        self.queued.queue(item);
        self.queued_count += 1;
        self.entries.extend(entry);
    }

    /// True if every signature queued is valid (so, an empty batch too).
    pub fn verify(self) -> bool {
        if self.weak {
            return false;
        }
        let valid = match (self.queued_count, self.first) {
            (0, _) => true,
            (1, Some(item)) => item.verify_single().is_ok(),
            _ => self.queued.verify(BatchRng::new()).is_ok(),
        };
        if valid {
            for entry in self.entries {
                entry.remember();
            }
        }
        valid
    }
}

/// The random weights of a batch: a BLAKE3 stream from a fresh seed, so a
/// signer cannot predict them and a batch costs one call for randomness.
struct BatchRng(blake3::OutputReader);

impl BatchRng {
    fn new() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system has no randomness source");
        Self(blake3::Hasher::new_keyed(&seed).finalize_xof())
    }
}

impl rand_core_06::RngCore for BatchRng {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.0.fill(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        self.0.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl rand_core_06::CryptoRng for BatchRng {}

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

    /// `n` signatures over distinct messages by `keys` keys in turn.
    fn signed(n: u8, keys: u8) -> Vec<(PublicKey, Vec<u8>, Signature)> {
        (0..n)
            .map(|i| {
                let key = Keypair::from_seed([i % keys; 32]);
                let message = vec![i; 10];
                let signature = key.sign(&message);
                (key.public(), message, signature)
            })
            .collect()
    }

    fn batch_of(items: &[(PublicKey, Vec<u8>, Signature)]) -> bool {
        let mut batch = Batch::new();
        for (key, message, signature) in items {
            batch.add(key, message, signature);
        }
        batch.verify()
    }

    #[test]
    fn batch_verification_finds_a_bad_signature() {
        assert!(Batch::new().verify(), "nothing to refuse");
        // First with the good signatures remembered once checked (a bad one
        // among them is then checked alone), then with every signature
        // checked anew each time (a bad one among good ones in one
        // equation).
        for anew in [false, true] {
            if anew {
                crate::checked::tests::bypass();
            }
            // One alone, few, and many by few keys (their terms shared).
            for (n, keys) in [(1, 1), (2, 2), (5, 5), (12, 3), (40, 1)] {
                let items = signed(n, keys);
                assert!(batch_of(&items), "{n} valid");
                for bad in [0, n as usize / 2, n as usize - 1] {
                    let mut forged = items.clone();
                    forged[bad].1 = b"forged".to_vec();
                    assert!(!batch_of(&forged), "{n} with #{bad} forged");
                    let mut stolen = items.clone();
                    stolen[bad].0 = Keypair::from_seed([99; 32]).public();
                    assert!(!batch_of(&stolen), "{n} with #{bad} claimed by another");
                    assert!(batch_of(&items), "{n} valid, again");
                }
            }
        }
    }

    /// What a signer who knows the curve might send, made by hand: a key
    /// or nonce with a small-order part, a key that is all small order, a
    /// point not on the curve, an `s` past the group's order.
    mod crafted {
        use super::*;
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
        use curve25519_dalek::{EdwardsPoint, Scalar};
        use sha2::{Digest, Sha512};

        const MESSAGE: &[u8] = b"a receipt";

        /// A signature by secret `a` under the key `a·B + key_torsion`,
        /// with nonce `r·B + nonce_torsion`.
        fn sign(key_torsion: usize, nonce_torsion: usize, r: u64) -> (PublicKey, Signature) {
            let a = Scalar::from(0x5eed_u64);
            let key = a * B + EIGHT_TORSION[key_torsion];
            let r = Scalar::from(r);
            let nonce = (r * B + EIGHT_TORSION[nonce_torsion]).compress();
            let key_bytes = key.compress().to_bytes();
            let k = Scalar::from_hash(
                Sha512::new()
                    .chain_update(nonce.as_bytes())
                    .chain_update(key_bytes)
                    .chain_update(MESSAGE),
            );
            let s = r + k * a;
            let mut signature = [0; 64];
            signature[..32].copy_from_slice(nonce.as_bytes());
            signature[32..].copy_from_slice(s.as_bytes());
            (PublicKey(key_bytes), Signature(signature))
        }

        /// Every crafted signature, with whether the rule takes it.
        fn all() -> Vec<(&'static str, PublicKey, Signature, bool)> {
            let mut out = Vec::new();
            for (torsion, point) in EIGHT_TORSION.iter().enumerate() {
                // A small-order key: its equation holds for any message.
                let weak = PublicKey(point.compress().to_bytes());
                let mut any = [0; 64];
                any[..32].copy_from_slice(EdwardsPoint::default().compress().as_bytes());
                out.push(("small-order key", weak, Signature(any), false));
                // The identity adds no small-order part.
                if torsion == 0 {
                    continue;
                }
                for r in 1..4 {
                    let (key, sig) = sign(torsion, 0, r);
                    out.push(("mixed-order key", key, sig, true));
                    let (key, sig) = sign(0, torsion, r);
                    out.push(("mixed-order nonce", key, sig, true));
                }
            }
            let (key, mut sig) = sign(0, 0, 5);
            // `s + ℓ`: the same scalar, not in canonical form.
            let mut order = [0u8; 32];
            order[..16].copy_from_slice(&[
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
                0xde, 0x14,
            ]);
            order[31] = 0x10;
            assert_eq!(
                Scalar::from_bytes_mod_order(order),
                Scalar::ZERO,
                "ℓ itself"
            );
            let s: [u8; 32] = sig.0[32..].try_into().unwrap();
            let mut wide = [0u8; 32];
            let mut carry = 0u16;
            for i in 0..32 {
                let sum = u16::from(s[i]) + u16::from(order[i]) + carry;
                wide[i] = sum as u8;
                carry = sum >> 8;
            }
            assert_eq!(
                Scalar::from_bytes_mod_order(wide),
                Scalar::from_bytes_mod_order(s)
            );
            sig.0[32..].copy_from_slice(&wide);
            out.push(("non-canonical s", key, sig, false));
            let mut off_curve = [0xff; 32];
            off_curve[31] = 0x7f;
            out.push((
                "key off the curve",
                PublicKey(off_curve),
                sign(0, 0, 6).1,
                false,
            ));
            out
        }

        /// The list of small-order encodings, against decoding each
        /// candidate: `y` near 0 and near `p`, with and without `p` added,
        /// both signs, and unrelated bytes.
        #[test]
        fn a_key_is_weak_exactly_when_it_decodes_to_a_point_of_small_order() {
            let mut candidates: Vec<[u8; 32]> = Vec::new();
            let mut p = [0xffu8; 32];
            p[0] = 0xed;
            p[31] = 0x7f;
            let add = |a: [u8; 32], b: u32| {
                let mut out = a;
                let mut carry = b;
                for byte in &mut out {
                    let sum = u32::from(*byte) + (carry & 0xff);
                    *byte = sum as u8;
                    carry = (carry >> 8) + (sum >> 8);
                }
                out
            };
            for small in 0..40u32 {
                candidates.push(add([0; 32], small));
                candidates.push(add(p, small));
            }
            // p - 20 to p - 1.
            let mut below = p;
            below[0] -= 20;
            for small in 0..20u32 {
                candidates.push(add(below, small));
            }
            for point in EIGHT_TORSION {
                candidates.push(point.compress().to_bytes());
            }
            for i in 0..64u8 {
                candidates.push(*blake3::hash(&[i]).as_bytes());
            }
            let mut weak = 0;
            for candidate in candidates {
                for sign in [0, 0x80] {
                    let mut bytes = candidate;
                    bytes[31] = (bytes[31] & 0x7f) | sign;
                    let small = decodes_to_small_order(&bytes);
                    assert_eq!(PublicKey(bytes).is_weak(), small, "{}", hex(&bytes));
                    weak += usize::from(small);
                }
            }
            assert!(weak >= SMALL_ORDER_ENCODINGS.len(), "each listed one found");
            assert_eq!(SMALL_ORDER_ENCODINGS.len(), 14);
        }

        #[test]
        fn one_by_one_and_in_a_batch_judge_every_crafted_signature_alike() {
            // A signature one path remembered, the other would only look up.
            crate::checked::tests::bypass();
            let honest = signed(6, 2);
            for (what, key, signature, taken) in all() {
                assert_eq!(key.verify(MESSAGE, &signature), taken, "{what} alone");
                let mut items = honest.clone();
                items.insert(3, (key, MESSAGE.to_vec(), signature));
                // Each batch draws fresh weights: many draws, one verdict.
                for _ in 0..16 {
                    assert_eq!(batch_of(&items), taken, "{what} in a batch");
                }
                assert_eq!(batch_of(&items[3..4]), taken, "{what} in a batch of one");
            }
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
