//! Blocks: an ordered batch of ledger transactions on top of a parent.

use bytes::BufMut;
use commonware_codec::{
    Buf, Encode, EncodeSize, Error as CodecError, FixedSize, RangeCfg, Read, ReadExt, Write,
};
use commonware_consensus::types::Height;
use commonware_consensus::{Block as BlockTrait, BoundedBlock, Heightable};
use commonware_cryptography::{Digestible, Hasher, Sha256, sha256};

/// A block's digest.
pub type Digest = sha256::Digest;

/// Transactions in one block, at most.
pub const TXS_PER_BLOCK_MAX: usize = 1024;
/// Bytes of one transaction in a block, at most.
pub const TX_BYTES_MAX: usize = 8 << 10;
/// Bytes of all transactions in one block, at most: a quarter of what the
/// count and size limits alone allow, which bounds the work of executing one
/// block (1024 transfers take 178 KiB).
pub const BLOCK_TX_BYTES_MAX: usize = 2 << 20;
/// How far a block's timestamp may run ahead of the clock of the validator
/// checking it. Bounds clock skew between honest validators; a leader whose
/// clock runs further ahead sees its proposals refused.
pub const TIMESTAMP_AHEAD_MS_MAX: u64 = 10_000;

/// Why a validator refuses to vote for a proposed block.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BlockError {
    #[error("parent is {found}, expected {expected}")]
    Parent { expected: Digest, found: Digest },
    #[error("height {found} does not follow its parent's height {parent}")]
    Height { parent: u64, found: u64 },
    #[error("timestamp {found_ms} ms is not after its parent's {parent_ms} ms")]
    TimestampNotAfterParent { parent_ms: u64, found_ms: u64 },
    #[error(
        "timestamp {found_ms} ms is more than {TIMESTAMP_AHEAD_MS_MAX} ms ahead of this \
         validator's clock ({now_ms} ms)"
    )]
    TimestampAhead { now_ms: u64, found_ms: u64 },
    #[error("{0} transactions; a block takes at most {TXS_PER_BLOCK_MAX}")]
    TooManyTxs(usize),
    #[error(
        "transaction {index} is {bytes} bytes; a block takes at most {TX_BYTES_MAX} per transaction"
    )]
    TxTooLarge { index: usize, bytes: usize },
    #[error("transactions take {0} bytes; a block takes at most {BLOCK_TX_BYTES_MAX}")]
    TooManyBytes(usize),
    #[error("transaction {index}: {reason}")]
    Tx { index: usize, reason: String },
    #[error("transaction {index} repeats an earlier one's signer and nonce")]
    DuplicateTx { index: usize },
}

/// A block of the ledger chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The parent's digest.
    pub parent: Digest,
    /// Distance from genesis (genesis is 0).
    pub height: Height,
    /// Milliseconds since the Unix epoch, as the proposer saw it; strictly
    /// increasing along the chain.
    pub timestamp_ms: u64,
    /// Encoded, signed ledger transactions.
    pub txs: Vec<Vec<u8>>,
}

impl Block {
    /// The genesis block of the ledger whose chain id is `chain`: the
    /// ledger's identity is built into the consensus chain's first block.
    pub fn genesis(chain: &cairn_wire::ContentId) -> Self {
        Self {
            parent: Sha256::hash(&[chain.as_bytes()]),
            height: Height::zero(),
            timestamp_ms: 0,
            txs: Vec::new(),
        }
    }
}

impl Block {
    /// Checks every field that needs no signature check against its bound:
    /// it must extend `parent` (whose digest is `parent_digest`) by one
    /// height, its timestamp must be after the parent's and at most
    /// [`TIMESTAMP_AHEAD_MS_MAX`] past `now_ms` (the checking validator's
    /// clock), and its transactions must fit the count and size limits.
    /// Every value here comes from a peer, so nothing may overflow.
    pub(crate) fn check_bounds(
        &self,
        parent: &Block,
        parent_digest: &Digest,
        now_ms: u64,
    ) -> Result<(), BlockError> {
        if self.parent != *parent_digest {
            return Err(BlockError::Parent {
                expected: *parent_digest,
                found: self.parent,
            });
        }
        if parent.height.get().checked_add(1) != Some(self.height.get()) {
            return Err(BlockError::Height {
                parent: parent.height.get(),
                found: self.height.get(),
            });
        }
        if self.timestamp_ms <= parent.timestamp_ms {
            return Err(BlockError::TimestampNotAfterParent {
                parent_ms: parent.timestamp_ms,
                found_ms: self.timestamp_ms,
            });
        }
        if self.timestamp_ms > now_ms.saturating_add(TIMESTAMP_AHEAD_MS_MAX) {
            return Err(BlockError::TimestampAhead {
                now_ms,
                found_ms: self.timestamp_ms,
            });
        }
        if self.txs.len() > TXS_PER_BLOCK_MAX {
            return Err(BlockError::TooManyTxs(self.txs.len()));
        }
        let mut bytes = 0usize;
        for (index, tx) in self.txs.iter().enumerate() {
            if tx.len() > TX_BYTES_MAX {
                return Err(BlockError::TxTooLarge {
                    index,
                    bytes: tx.len(),
                });
            }
            bytes = bytes.saturating_add(tx.len());
        }
        if bytes > BLOCK_TX_BYTES_MAX {
            return Err(BlockError::TooManyBytes(bytes));
        }
        Ok(())
    }

    /// Checks every transaction: well formed, for `chain`, correctly signed,
    /// and no two with the same signer and nonce. A block that fails this is
    /// invalid forever. (Whether each still applies is decided when the
    /// block is executed.)
    pub(crate) fn check_txs(&self, chain: &cairn_wire::ContentId) -> Result<(), BlockError> {
        let mut txs = Vec::with_capacity(self.txs.len());
        let mut seen = std::collections::BTreeSet::new();
        for (index, bytes) in self.txs.iter().enumerate() {
            let tx = cairn_ledger::decode(bytes).map_err(|e| BlockError::Tx {
                index,
                reason: e.to_string(),
            })?;
            let found = tx.payload_unchecked().chain;
            if found != *chain {
                return Err(BlockError::Tx {
                    index,
                    reason: format!("for chain {found}, this is chain {chain}"),
                });
            }
            if !seen.insert(crate::ledger::tx_key(&tx)) {
                return Err(BlockError::DuplicateTx { index });
            }
            txs.push(tx);
        }
        // What costs no signature check first, then the whole block's
        // signatures in one batch.
        for (index, tx) in cairn_ledger::admit_batch(txs).into_iter().enumerate() {
            tx.map_err(|e| BlockError::Tx {
                index,
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.parent.write(buf);
        self.height.write(buf);
        self.timestamp_ms.write(buf);
        self.txs.write(buf);
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.parent.encode_size()
            + self.height.encode_size()
            + self.timestamp_ms.encode_size()
            + self.txs.encode_size()
    }
}

impl Read for Block {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let parent = Digest::read(buf)?;
        let height = Height::read(buf)?;
        let timestamp_ms = u64::read(buf)?;
        let cfg: (RangeCfg<usize>, (RangeCfg<usize>, ())) = (
            (0..=TXS_PER_BLOCK_MAX).into(),
            ((0..=TX_BYTES_MAX).into(), ()),
        );
        let txs = Vec::<Vec<u8>>::read_cfg(buf, &cfg)?;
        Ok(Self {
            parent,
            height,
            timestamp_ms,
            txs,
        })
    }
}

impl Digestible for Block {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        Sha256::hash(&[self.encode().as_ref()])
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        self.height
    }
}

impl BlockTrait for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

impl BoundedBlock for Block {
    fn max_encode_size(_: &()) -> usize {
        // Length prefixes are varints of at most 5 bytes.
        Digest::SIZE + 10 + u64::SIZE + 5 + TXS_PER_BLOCK_MAX * (5 + TX_BYTES_MAX)
    }
}

#[cfg(test)]
mod tests {
    use cairn_ledger::{TxBody, TxKind};
    use cairn_wire::{ContentId, Keypair};

    use super::*;

    const NOW_MS: u64 = 1_800_000_000_000;

    fn parent() -> Block {
        Block {
            parent: Sha256::hash(&[b"grandparent"]),
            height: Height::new(7),
            timestamp_ms: NOW_MS - 1_000,
            txs: Vec::new(),
        }
    }

    /// A block on `parent` with `edit` applied, and its check.
    fn check(parent: &Block, edit: impl FnOnce(&mut Block)) -> Result<(), BlockError> {
        let mut block = Block {
            parent: parent.digest(),
            height: Height::new(parent.height.get() + 1),
            timestamp_ms: NOW_MS,
            txs: Vec::new(),
        };
        edit(&mut block);
        block.check_bounds(parent, &parent.digest(), NOW_MS)
    }

    /// A provider's claim of one full acceptance fits a block's
    /// transaction, so no acceptance a requester signs is too large to
    /// claim.
    #[test]
    fn a_claim_of_the_largest_acceptance_fits_a_transaction() {
        let acceptance = cairn_wire::Signed::sign(
            &Keypair::from_seed([1; 32]),
            cairn_ledger::ACCEPTANCE_NAMESPACE,
            cairn_ledger::Acceptance {
                lease: cairn_ledger::Lease {
                    job: ContentId::of(b"job"),
                    requester: Keypair::from_seed([1; 32]).public(),
                    provider: Keypair::from_seed([2; 32]).public(),
                    price_ucairn_per_gfuel: u64::MAX,
                    fuel_per_task_max: u64::MAX,
                    expires_height: u64::MAX,
                },
                results: (0..cairn_ledger::ACCEPTANCE_RESULTS_MAX as u64)
                    .map(|task| cairn_ledger::Accepted {
                        task,
                        digest: ContentId::of(&task.to_be_bytes()),
                        fuel_used: u64::MAX,
                    })
                    .collect(),
            },
        );
        // A provider packs acceptances into claims of at most 512 bytes
        // under the limit (`market/claims.rs`).
        let size = acceptance.to_bytes().len();
        assert!(size + 512 <= TX_BYTES_MAX, "{size} bytes");
        let tx = TxBody {
            chain: ContentId::of(b"chain"),
            nonce: u64::MAX,
            kind: TxKind::Claim {
                acceptances: vec![acceptance],
            },
        }
        .sign(&Keypair::from_seed([2; 32]));
        let bytes = tx.to_bytes().len();
        assert!(bytes <= size + 512, "{bytes} bytes");
    }

    /// A reveal of [`cairn_ledger::REVEALS_PER_TX_MAX`] receipts fits a
    /// block's transaction, with every field at its largest.
    #[test]
    fn a_reveal_of_the_most_receipts_fits_a_transaction() {
        let receipt = cairn_wire::Signed::sign(
            &Keypair::from_seed([2; 32]),
            cairn_ledger::RECEIPT_NAMESPACE,
            cairn_ledger::Receipt {
                lease: ContentId::of(b"lease"),
                task: u64::MAX,
                digest: ContentId::of(b"result"),
                fuel_used: u64::MAX,
                salt: [0xff; 32],
                run: [0xff; 32],
            },
        );
        let tx = TxBody {
            chain: ContentId::of(b"chain"),
            nonce: u64::MAX,
            kind: TxKind::Reveal {
                receipts: vec![receipt; cairn_ledger::REVEALS_PER_TX_MAX],
            },
        }
        .sign(&Keypair::from_seed([1; 32]));
        let bytes = tx.to_bytes().len();
        assert!(bytes <= TX_BYTES_MAX, "{bytes} bytes");
    }

    #[test]
    fn every_field_is_held_to_its_bound() {
        let parent = parent();
        assert_eq!(check(&parent, |_| {}), Ok(()));
        assert_eq!(
            check(&parent, |b| b.timestamp_ms =
                NOW_MS + TIMESTAMP_AHEAD_MS_MAX),
            Ok(())
        );
        assert!(matches!(
            check(&parent, |b| b.parent = Sha256::hash(&[b"elsewhere"])),
            Err(BlockError::Parent { .. })
        ));
        for height in [0, 7, 9, u64::MAX] {
            assert!(matches!(
                check(&parent, |b| b.height = Height::new(height)),
                Err(BlockError::Height { parent: 7, found }) if found == height
            ));
        }
        for timestamp_ms in [0, parent.timestamp_ms] {
            assert!(matches!(
                check(&parent, |b| b.timestamp_ms = timestamp_ms),
                Err(BlockError::TimestampNotAfterParent { .. })
            ));
        }
        for timestamp_ms in [NOW_MS + TIMESTAMP_AHEAD_MS_MAX + 1, u64::MAX] {
            assert!(matches!(
                check(&parent, |b| b.timestamp_ms = timestamp_ms),
                Err(BlockError::TimestampAhead { .. })
            ));
        }
        assert_eq!(
            check(&parent, |b| b.txs = vec![Vec::new(); TXS_PER_BLOCK_MAX + 1]),
            Err(BlockError::TooManyTxs(TXS_PER_BLOCK_MAX + 1))
        );
        assert_eq!(
            check(&parent, |b| b.txs =
                vec![Vec::new(), vec![0; TX_BYTES_MAX + 1]]),
            Err(BlockError::TxTooLarge {
                index: 1,
                bytes: TX_BYTES_MAX + 1
            })
        );
        let count = BLOCK_TX_BYTES_MAX / TX_BYTES_MAX + 1;
        assert_eq!(
            check(&parent, |b| b.txs = vec![vec![0; TX_BYTES_MAX]; count]),
            Err(BlockError::TooManyBytes(count * TX_BYTES_MAX))
        );
    }

    #[test]
    fn a_parent_at_the_end_of_the_range_has_no_valid_child() {
        let mut parent = parent();
        parent.height = Height::new(u64::MAX);
        parent.timestamp_ms = u64::MAX;
        let child = Block {
            parent: parent.digest(),
            height: Height::new(u64::MAX),
            timestamp_ms: u64::MAX,
            txs: Vec::new(),
        };
        assert!(matches!(
            child.check_bounds(&parent, &parent.digest(), u64::MAX),
            Err(BlockError::Height { .. })
        ));
    }

    #[test]
    fn transactions_must_decode_be_signed_for_this_chain_and_not_repeat() {
        let chain = ContentId::of(b"this chain");
        let key = Keypair::from_seed([1; 32]);
        let tx = |chain, nonce| {
            TxBody {
                chain,
                nonce,
                kind: TxKind::Unstake { amount: 1 },
            }
            .sign(&key)
            .to_bytes()
        };
        let block = |txs| Block {
            parent: Sha256::hash(&[b"parent"]),
            height: Height::new(1),
            timestamp_ms: 1,
            txs,
        };
        assert_eq!(
            block(vec![tx(chain, 0), tx(chain, 1)]).check_txs(&chain),
            Ok(())
        );
        assert!(matches!(
            block(vec![tx(chain, 0), vec![1, 2, 3]]).check_txs(&chain),
            Err(BlockError::Tx { index: 1, .. })
        ));
        assert!(matches!(
            block(vec![tx(ContentId::of(b"another"), 0)]).check_txs(&chain),
            Err(BlockError::Tx { index: 0, .. })
        ));
        let mut forged = tx(chain, 0);
        *forged.last_mut().unwrap() ^= 1;
        assert!(matches!(
            block(vec![forged]).check_txs(&chain),
            Err(BlockError::Tx { index: 0, .. })
        ));
        // Behind good ones, the batch fails and the bad one is named.
        let mut forged = tx(chain, 2);
        *forged.last_mut().unwrap() ^= 1;
        assert!(matches!(
            block(vec![tx(chain, 0), tx(chain, 1), forged]).check_txs(&chain),
            Err(BlockError::Tx { index: 2, .. })
        ));
        assert_eq!(
            block(vec![tx(chain, 0), tx(chain, 0)]).check_txs(&chain),
            Err(BlockError::DuplicateTx { index: 1 })
        );
    }
}
