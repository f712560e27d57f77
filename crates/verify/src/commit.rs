//! Commit–reveal of result digests.
//!
//! A provider first sends a commitment to `(digest, its own key, a salt)` and
//! reveals the digest and salt only once every replica of the task has
//! committed. Seeing another provider's commitment tells a copier nothing
//! (the salt hides the digest), and a revealed digest cannot be copied
//! afterwards: the copier's own commitment is already fixed, and it binds the
//! copier's key, so replaying someone else's commitment does not open either.
//!
//! The salt is derived from the provider's secret and the (lease, task), not
//! drawn at random: a provider that runs the same task twice (a re-issued
//! task, a restart) commits and opens identically, so a requester holding two
//! of its statements never holds two that disagree, and an honest provider
//! cannot be framed for equivocating or for a reveal that does not open.

use cairn_wire::{ContentId, Keypair, PublicKey};

/// Domain separation for commitments.
const COMMIT_DOMAIN: &[u8] = b"cairn/commit/v1";
/// Domain separation for the key that derives salts.
const SALT_DOMAIN: &str = "cairn 2026-12 commitment salt v1";

/// A binding, hiding commitment to a result digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Commitment(pub [u8; 32]);

/// What opens a [`Commitment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reveal {
    /// The result digest.
    pub digest: ContentId,
    /// The salt chosen at commit time ([`salt`] for an honest provider).
    pub salt: [u8; 32],
}

/// The salt `provider` uses for `task` under `lease`: unpredictable to
/// anyone without its secret, and the same every time it is derived.
pub fn salt(provider: &Keypair, lease: &ContentId, task: u64) -> [u8; 32] {
    let key = blake3::derive_key(SALT_DOMAIN, &provider.secret_seed());
    let mut hasher = blake3::Hasher::new_keyed(&key);
    hasher.update(lease.as_bytes());
    hasher.update(&task.to_be_bytes());
    *hasher.finalize().as_bytes()
}

impl Commitment {
    /// The commitment of `provider` to `reveal`.
    pub fn new(provider: &PublicKey, reveal: &Reveal) -> Self {
        let mut bytes = Vec::with_capacity(COMMIT_DOMAIN.len() + 96);
        bytes.extend_from_slice(COMMIT_DOMAIN);
        bytes.extend_from_slice(reveal.digest.as_bytes());
        bytes.extend_from_slice(provider.as_bytes());
        bytes.extend_from_slice(&reveal.salt);
        Self(*ContentId::of(&bytes).as_bytes())
    }

    /// Whether `reveal` by `provider` opens this commitment.
    pub fn opens(&self, provider: &PublicKey, reveal: &Reveal) -> bool {
        Self::new(provider, reveal) == *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_wire::Keypair;

    #[test]
    fn a_commitment_opens_only_for_its_digest_salt_and_provider() {
        let honest = Keypair::from_seed([1; 32]).public();
        let copier = Keypair::from_seed([2; 32]).public();
        let reveal = Reveal {
            digest: ContentId::of(b"result"),
            salt: [7; 32],
        };
        let commitment = Commitment::new(&honest, &reveal);
        assert!(commitment.opens(&honest, &reveal));
        // The copier replays the honest commitment and reveal as its own.
        assert!(!commitment.opens(&copier, &reveal));
        let other_digest = Reveal {
            digest: ContentId::of(b"other"),
            ..reveal
        };
        assert!(!commitment.opens(&honest, &other_digest));
        let other_salt = Reveal {
            salt: [8; 32],
            ..reveal
        };
        assert!(!commitment.opens(&honest, &other_salt));
        // Hiding: the same digest under two salts gives unrelated commitments.
        assert_ne!(commitment, Commitment::new(&honest, &other_salt));
    }

    /// A provider asked twice for the same task derives the same salt, so
    /// its two commitments are one; other tasks, leases and providers get
    /// other salts.
    #[test]
    fn salts_are_derived_once_per_provider_lease_and_task() {
        let provider = Keypair::from_seed([1; 32]);
        let other = Keypair::from_seed([2; 32]);
        let lease = ContentId::of(b"lease");
        let first = salt(&provider, &lease, 3);
        assert_eq!(first, salt(&provider, &lease, 3));
        assert_ne!(first, salt(&provider, &lease, 4));
        assert_ne!(first, salt(&provider, &ContentId::of(b"other lease"), 3));
        assert_ne!(first, salt(&other, &lease, 3));
    }
}
