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
