use cairn_wire::{ContentId, PublicKey};

use crate::Amount;

/// Why a transaction was refused. A refused transaction changes nothing,
/// not even the signer's nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// A signature in the transaction does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The transaction names another chain.
    #[error("transaction is for chain {found}, this is chain {expected}")]
    WrongChain {
        /// This chain.
        expected: ContentId,
        /// The transaction's chain.
        found: ContentId,
    },
    /// The nonce is not the signer's next one (a replay, or out of order).
    #[error("nonce {found} is not the account's next nonce {expected}")]
    BadNonce {
        /// The next nonce.
        expected: u64,
        /// The transaction's nonce.
        found: u64,
    },
    /// An amount of zero where something must move.
    #[error("amount must be greater than zero")]
    ZeroAmount,
    /// Not enough funds.
    #[error("insufficient {what}: needs {needed} µCAIRN, has {available}")]
    Insufficient {
        /// Which funds: balance, stake, escrow.
        what: &'static str,
        /// How much was needed.
        needed: Amount,
        /// How much there is.
        available: Amount,
    },
    /// A sum would overflow.
    #[error("amount overflows: {0}")]
    Overflow(&'static str),
    /// The account is not a registered provider.
    #[error("{0} is not a registered provider")]
    NotProvider(PublicKey),
    /// Registration would leave the provider below the minimum stake.
    #[error("stake {stake} is below the minimum {minimum}")]
    BelowMinimumStake {
        /// The stake it would have.
        stake: Amount,
        /// The minimum.
        minimum: Amount,
    },
    /// A field is out of its allowed range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An escrow for this job already exists.
    #[error("an escrow for job {0} already exists")]
    EscrowExists(ContentId),
    /// No escrow for this job.
    #[error("no open escrow for job {0}")]
    UnknownEscrow(ContentId),
    /// The escrow is closing: no new lease may draw on it.
    #[error("the escrow of job {0} is closing; it takes no new leases")]
    EscrowClosing(ContentId),
    /// Only the escrow's owner may do this.
    #[error("only the escrow's owner {owner} may do this")]
    NotEscrowOwner {
        /// The owner.
        owner: PublicKey,
    },
    /// The escrow is closing and still backs a lease that has not expired.
    #[error(
        "the escrow is closing; its leases end at height {until}, and it returns the rest after that"
    )]
    LeasesOutstanding {
        /// The last height at which a lease is live.
        until: u64,
    },
    /// The lease is already recorded.
    #[error("lease {0} is already recorded")]
    LeaseExists(ContentId),
    /// The evidence does not prove misbehaviour.
    #[error("evidence rejected: {0}")]
    BadEvidence(&'static str),
}
