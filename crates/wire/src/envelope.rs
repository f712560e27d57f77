use bytes::BufMut;
use commonware_codec::{
    Buf, Copying, Decode, Encode, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write,
};

use crate::{Keypair, PublicKey, Signature, WIRE_VERSION, WireError};

/// A payload signed by a node.
///
/// The signature covers the wire version, a namespace chosen by the protocol
/// that uses the envelope (`b"cairn/lease"`, `b"cairn/receipt"`, …) and the
/// canonical encoding of the payload. The namespace keeps a signature made
/// for one purpose from being replayed as another; it is not sent, since the
/// receiver knows what it expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed<T> {
    signer: PublicKey,
    signature: Signature,
    payload: T,
}

impl<T: Encode> Signed<T> {
    /// Signs `payload` with `key` under `namespace`.
    pub fn sign(key: &Keypair, namespace: &[u8], payload: T) -> Self {
        let signature = key.sign(&signing_bytes(namespace, &payload));
        Self {
            signer: key.public(),
            signature,
            payload,
        }
    }

    /// The payload, once its signature has been checked under `namespace`.
    pub fn verify(&self, namespace: &[u8]) -> Result<&T, WireError> {
        if self
            .signer
            .verify(&signing_bytes(namespace, &self.payload), &self.signature)
        {
            Ok(&self.payload)
        } else {
            Err(WireError::BadSignature {
                signer: self.signer.to_string(),
            })
        }
    }

    /// The payload *without* checking the signature: for code that holds
    /// proof of an earlier [`Signed::verify`] (a verified-transaction type,
    /// say) or that only routes the envelope.
    pub fn payload_unchecked(&self) -> &T {
        &self.payload
    }

    /// The bytes the signature covers under `namespace`, for a
    /// [`Batch`](crate::Batch).
    pub fn signing_bytes(&self, namespace: &[u8]) -> Vec<u8> {
        signing_bytes(namespace, &self.payload)
    }

    /// Who claims to have signed it (checked only by [`Signed::verify`]).
    pub fn signer(&self) -> PublicKey {
        self.signer
    }

    /// The signature bytes. Not an envelope's identity: its signer can sign
    /// the same payload again with other bytes (any nonce will do).
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The canonical bytes of the whole envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode().to_vec()
    }
}

impl<T: Read + Encode> Signed<T> {
    /// Decodes an envelope, refusing unknown versions, trailing bytes and
    /// payloads outside the limits in `cfg`. The signature is *not* checked
    /// here: call [`Signed::verify`].
    pub fn from_bytes(bytes: &[u8], cfg: &T::Cfg) -> Result<Self, WireError> {
        if let Some(&found) = bytes.first()
            && found != WIRE_VERSION
        {
            return Err(WireError::UnsupportedVersion {
                found,
                expected: WIRE_VERSION,
            });
        }
        Self::decode_cfg(Copying(bytes), cfg).map_err(|source| WireError::Malformed {
            what: "signed envelope",
            source,
        })
    }
}

/// The bytes a signature covers.
fn signing_bytes<T: Encode>(namespace: &[u8], payload: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + namespace.len() + payload.encode_size());
    out.extend_from_slice(b"cairn");
    out.push(WIRE_VERSION);
    // Length-prefix the namespace so ("ab", "c…") and ("a", "bc…") differ.
    out.extend_from_slice(&(namespace.len() as u16).to_be_bytes());
    out.extend_from_slice(namespace);
    payload.write(&mut out);
    out
}

impl<T: Write> Write for Signed<T> {
    fn write(&self, buf: &mut impl BufMut) {
        WIRE_VERSION.write(buf);
        self.signer.write(buf);
        self.signature.write(buf);
        self.payload.write(buf);
    }
}

impl<T: EncodeSize> EncodeSize for Signed<T> {
    fn encode_size(&self) -> usize {
        u8::SIZE + PublicKey::SIZE + Signature::SIZE + self.payload.encode_size()
    }
}

impl<T: Read> Read for Signed<T> {
    type Cfg = T::Cfg;

    fn read_cfg(buf: &mut impl Buf, cfg: &T::Cfg) -> Result<Self, CodecError> {
        let version = u8::read(buf)?;
        if version != WIRE_VERSION {
            return Err(CodecError::Invalid("Signed", "unsupported wire version"));
        }
        Ok(Self {
            signer: PublicKey::read(buf)?,
            signature: Signature::read(buf)?,
            payload: T::read_cfg(buf, cfg)?,
        })
    }
}

/// The most signatures one [`Attested`] envelope carries: more than any
/// validator set a chain of this kind runs.
pub const ATTESTATIONS_MAX: usize = 256;

/// A payload signed by several nodes under one namespace: a quorum's
/// statement, such as validators' verdict on a dispute. Whoever checks it
/// decides whose signatures count and how many are enough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attested<T> {
    payload: T,
    signatures: Vec<(PublicKey, Signature)>,
}

impl<T: Encode> Attested<T> {
    /// `payload`, signed by no one yet.
    pub fn new(payload: T) -> Self {
        Self {
            payload,
            signatures: Vec::new(),
        }
    }

    /// `key`'s signature over `payload` under `namespace`, for a signer
    /// that sends its signature to whoever gathers them.
    pub fn signature(key: &Keypair, namespace: &[u8], payload: &T) -> Signature {
        key.sign(&signing_bytes(namespace, payload))
    }

    /// Adds `signer`'s signature if it is valid and the signer has not
    /// signed yet; says whether it was added.
    pub fn add(&mut self, namespace: &[u8], signer: PublicKey, signature: Signature) -> bool {
        if self.signatures.len() >= ATTESTATIONS_MAX
            || self.signatures.iter().any(|(k, _)| *k == signer)
            || !signer.verify(&signing_bytes(namespace, &self.payload), &signature)
        {
            return false;
        }
        self.signatures.push((signer, signature));
        true
    }

    /// The signers, once every signature has been checked under
    /// `namespace` and no signer appears twice.
    pub fn verify(&self, namespace: &[u8]) -> Result<Vec<PublicKey>, WireError> {
        let message = signing_bytes(namespace, &self.payload);
        let mut signers = Vec::with_capacity(self.signatures.len());
        for (signer, signature) in &self.signatures {
            if !signer.verify(&message, signature) || signers.contains(signer) {
                return Err(WireError::BadSignature {
                    signer: signer.to_string(),
                });
            }
            signers.push(*signer);
        }
        Ok(signers)
    }

    /// The payload *without* checking any signature.
    pub fn payload_unchecked(&self) -> &T {
        &self.payload
    }

    /// The bytes every signature covers under `namespace`, for a
    /// [`Batch`](crate::Batch).
    pub fn signing_bytes(&self, namespace: &[u8]) -> Vec<u8> {
        signing_bytes(namespace, &self.payload)
    }

    /// Each signer with its signature, *unchecked*, in the order added.
    pub fn signatures_unchecked(&self) -> impl Iterator<Item = (PublicKey, &Signature)> + '_ {
        self.signatures.iter().map(|(k, s)| (*k, s))
    }

    /// Who claims to have signed it (checked only by [`Attested::verify`]).
    pub fn signers_unchecked(&self) -> impl Iterator<Item = PublicKey> + '_ {
        self.signatures.iter().map(|(k, _)| *k)
    }
}

impl<T: Write> Write for Attested<T> {
    fn write(&self, buf: &mut impl BufMut) {
        self.payload.write(buf);
        (self.signatures.len() as u16).write(buf);
        for (signer, signature) in &self.signatures {
            signer.write(buf);
            signature.write(buf);
        }
    }
}

impl<T: EncodeSize> EncodeSize for Attested<T> {
    fn encode_size(&self) -> usize {
        self.payload.encode_size()
            + u16::SIZE
            + self.signatures.len() * (PublicKey::SIZE + Signature::SIZE)
    }
}

impl<T: Read> Read for Attested<T> {
    type Cfg = T::Cfg;

    fn read_cfg(buf: &mut impl Buf, cfg: &T::Cfg) -> Result<Self, CodecError> {
        let payload = T::read_cfg(buf, cfg)?;
        let count = usize::from(u16::read(buf)?);
        if count > ATTESTATIONS_MAX {
            return Err(CodecError::Invalid("Attested", "too many signatures"));
        }
        let mut signatures = Vec::with_capacity(count);
        for _ in 0..count {
            signatures.push((PublicKey::read(buf)?, Signature::read(buf)?));
        }
        Ok(Self {
            payload,
            signatures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::RangeCfg;
    use proptest::prelude::*;

    const NS: &[u8] = b"cairn/test";

    fn limit(n: usize) -> (RangeCfg<usize>, ()) {
        ((0..=n).into(), ())
    }

    #[test]
    fn sign_encode_decode_verify() {
        let key = Keypair::from_seed([9; 32]);
        let signed = Signed::sign(&key, NS, vec![1u8, 2, 3]);
        let back = Signed::<Vec<u8>>::from_bytes(&signed.to_bytes(), &limit(16)).unwrap();
        assert_eq!(back, signed);
        assert_eq!(back.verify(NS).unwrap(), &vec![1, 2, 3]);
        assert_eq!(back.signer(), key.public());
    }

    #[test]
    fn wrong_namespace_fails() {
        let key = Keypair::from_seed([9; 32]);
        let signed = Signed::sign(&key, NS, 5u64);
        let err = signed.verify(b"cairn/other").unwrap_err();
        assert!(matches!(err, WireError::BadSignature { .. }));
    }

    #[test]
    fn tampered_payload_fails() {
        let key = Keypair::from_seed([9; 32]);
        let mut bytes = Signed::sign(&key, NS, 5u64).to_bytes();
        *bytes.last_mut().unwrap() ^= 1;
        let back = Signed::<u64>::from_bytes(&bytes, &()).unwrap();
        assert!(back.verify(NS).is_err());
    }

    #[test]
    fn unknown_version_is_named() {
        let key = Keypair::from_seed([9; 32]);
        let mut bytes = Signed::sign(&key, NS, 5u64).to_bytes();
        bytes[0] = 200;
        let err = Signed::<u64>::from_bytes(&bytes, &())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported wire version 200"), "{err}");
    }

    #[test]
    fn oversized_payload_is_refused() {
        let key = Keypair::from_seed([9; 32]);
        let bytes = Signed::sign(&key, NS, vec![0u8; 100]).to_bytes();
        assert!(Signed::<Vec<u8>>::from_bytes(&bytes, &limit(99)).is_err());
    }

    /// A quorum envelope counts each valid signer once and refuses a forged
    /// or repeated signature, after a round trip through its encoding.
    #[test]
    fn attested_counts_each_valid_signer_once() {
        let keys: Vec<Keypair> = (1..=3).map(|i| Keypair::from_seed([i; 32])).collect();
        let mut attested = Attested::new(7u64);
        for key in &keys[..2] {
            let signature = Attested::signature(key, NS, &7u64);
            assert!(attested.add(NS, key.public(), signature));
            assert!(!attested.add(NS, key.public(), signature), "twice");
        }
        let forged = Attested::signature(&keys[2], b"cairn/other", &7u64);
        assert!(!attested.add(NS, keys[2].public(), forged));
        let bytes = attested.encode().to_vec();
        let back = Attested::<u64>::decode_cfg(Copying(&bytes[..]), &()).unwrap();
        assert_eq!(back, attested);
        assert_eq!(
            back.verify(NS).unwrap(),
            vec![keys[0].public(), keys[1].public()]
        );
        assert!(back.verify(b"cairn/other").is_err());
        // A signature listed twice on the wire is refused, not counted twice.
        let mut repeated = attested.clone();
        repeated.signatures.push(repeated.signatures[0]);
        assert!(repeated.verify(NS).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(env) = Signed::<Vec<u8>>::from_bytes(&bytes, &limit(256)) {
                // Whatever decodes re-encodes to exactly the input.
                prop_assert_eq!(env.to_bytes(), bytes);
                let _ = env.verify(NS);
            }
        }

        #[test]
        fn trailing_bytes_are_refused(extra in 1usize..8) {
            let key = Keypair::from_seed([9; 32]);
            let mut bytes = Signed::sign(&key, NS, 5u64).to_bytes();
            bytes.extend(std::iter::repeat_n(0, extra));
            prop_assert!(Signed::<u64>::from_bytes(&bytes, &()).is_err());
        }
    }
}
