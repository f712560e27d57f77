//! Transactions and their canonical encoding.

use bytes::BufMut;
use cairn_wire::codec::{
    Buf, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write,
};
use cairn_wire::{
    Attested, Batch, ContentId, Keypair, PublicKey, ResultManifest, Signature, Signed, WireError,
    text,
};

use crate::fraud::{COMMIT_NAMESPACE, Commit, VERDICT_NAMESPACE, Verdict};
use crate::{Params, TxError};

/// An amount of µCAIRN, the ledger's smallest unit.
pub type Amount = u64;

/// Signatures over transaction bodies use this namespace.
pub const TX_NAMESPACE: &[u8] = b"cairn/tx";
/// A provider's signature over lease terms uses this namespace.
pub const LEASE_NAMESPACE: &[u8] = b"cairn/lease";
/// A provider's signature over a task receipt uses this namespace.
pub const RECEIPT_NAMESPACE: &[u8] = b"cairn/receipt";
/// A requester's signature over an [`Acceptance`] uses this namespace.
pub const ACCEPTANCE_NAMESPACE: &[u8] = b"cairn/acceptance";

/// Results one claim pays, at most (over all its acceptances).
pub const RESULTS_PER_CLAIM_MAX: usize = 4096;
/// Acceptances one claim carries, at most.
pub const ACCEPTANCES_PER_CLAIM_MAX: usize = 64;

/// Most receipts one `Reveal` carries: 32 signed receipts (241 bytes
/// each) and the transaction's own fields fit the 8 KiB a block takes of
/// one transaction (`cairn_chain::TX_BYTES_MAX`).
pub const REVEALS_PER_TX_MAX: usize = 32;
/// Results one acceptance names, at most: a claim of one full acceptance
/// (128 × 48 bytes, with its signature and the transaction's) fits the
/// 8 KiB a block takes of one transaction (`cairn_chain::TX_BYTES_MAX`).
pub const ACCEPTANCE_RESULTS_MAX: usize = 128;
/// Longest provider endpoint, in bytes.
pub const ENDPOINT_BYTES_MAX: usize = 256;
/// The largest encoded transaction accepted.
pub const TX_BYTES_MAX: usize = 1 << 20;

/// A signed transaction.
pub type Tx = Signed<TxBody>;

/// What a transaction says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxBody {
    /// The chain it is for (its genesis digest), so it cannot be replayed on
    /// another chain.
    pub chain: ContentId,
    /// The signer's next nonce, so it cannot be replayed on this one.
    pub nonce: u64,
    /// What to do.
    pub kind: TxKind,
}

/// The operations of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxKind {
    /// Move `amount` from the signer to `to`.
    Transfer {
        /// The recipient.
        to: PublicKey,
        /// How much.
        amount: Amount,
    },
    /// Register (or update) the signer as a provider, staking `stake` more.
    RegisterProvider {
        /// What it offers.
        capabilities: Capabilities,
        /// Where requesters reach it (a multiaddress, say).
        endpoint: String,
        /// Added to its stake from its balance.
        stake: Amount,
    },
    /// Add to the signer's provider stake.
    Stake {
        /// How much.
        amount: Amount,
    },
    /// Start unbonding stake; it returns to the balance after the unbonding
    /// delay, and stays slashable until then.
    Unstake {
        /// How much.
        amount: Amount,
    },
    /// Lock a job's budget.
    OpenEscrow {
        /// The job.
        job: ContentId,
        /// The budget.
        amount: Amount,
    },
    /// Add to a job's escrow.
    TopUpEscrow {
        /// The job.
        job: ContentId,
        /// How much.
        amount: Amount,
    },
    /// End a job: the unspent budget returns to its owner.
    CloseEscrow {
        /// The job.
        job: ContentId,
    },
    /// Record a lease that both requester (the signer) and provider signed.
    RecordLease {
        /// The terms.
        lease: Lease,
        /// The provider's signature over the terms.
        provider_signature: Signature,
    },
    /// Slash a provider on evidence of misbehaviour.
    Slash {
        /// The proof (boxed: it is far larger than other transactions).
        evidence: Box<Evidence>,
    },
    /// Demand on chain that a provider reveal what it committed to (the
    /// signer must be the lease's requester).
    Challenge {
        /// The provider's signed commitment.
        commit: Signed<Commit>,
    },
    /// Answer challenges (anyone may post a provider's receipts): each
    /// receipt that opens a commitment still challenged closes its
    /// challenge; one whose challenge is closed or past its window, or that
    /// does not open its commitment, is passed over, and a transaction with
    /// none that answers is refused. Many in one transaction, so that a
    /// provider answers a flood of challenges at the pace they come.
    Reveal {
        /// Signed receipts, at most [`REVEALS_PER_TX_MAX`].
        receipts: Vec<Signed<Receipt>>,
    },
    /// Pay for results their requester accepted: each acceptance, signed
    /// by its lease's requester, pays the lease's provider for the results
    /// it names that are not paid yet, and the difference for those paid
    /// for less fuel (anyone may post it: the requester settling its job,
    /// or the provider when its requester does not).
    Claim {
        /// The requester's signed acceptances.
        acceptances: Vec<Signed<Acceptance>>,
    },
}

/// What a provider offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// CPU cores.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// GPUs.
    pub gpus: u32,
    /// Benchmark score (fuel per second, in millions).
    pub score: u32,
}

/// The terms under which a provider works on a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job: ContentId,
    /// Who pays.
    pub requester: PublicKey,
    /// Who works.
    pub provider: PublicKey,
    /// Price per 10^9 fuel.
    pub price_ucairn_per_gfuel: Amount,
    /// The most fuel one task may be paid for.
    pub fuel_per_task_max: u64,
    /// The last block height at which the lease is live.
    pub expires_height: u64,
}

impl Lease {
    /// The lease's id: the digest of its canonical encoding.
    pub fn id(&self) -> ContentId {
        let mut buf = Vec::with_capacity(self.encode_size());
        self.write(&mut buf);
        ContentId::of(&buf)
    }
}

/// A provider's signed statement that it ran one task under a lease, with
/// this result: what settlement pays on, and, since it carries the salt,
/// the opening of the provider's commitment to the result (one signature
/// for both, where a separate opening cost a signature and its checks per
/// execution).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The lease's id.
    pub lease: ContentId,
    /// The task's index in the job.
    pub task: u64,
    /// The result digest.
    pub digest: ContentId,
    /// Fuel the task used.
    pub fuel_used: u64,
    /// The salt of the provider's commitment to `digest`.
    pub salt: [u8; 32],
    /// What it ran: the digest of the job's terms and the task's
    /// assignment as it was handed them (`cairn_proto::run_digest`). Its
    /// signature binds the result to one run, so validators can re-run
    /// that run, and no other, against it: a side that lost a dispute by
    /// silence is judged so, and no one can make an honest provider's
    /// result look wrong by naming another run.
    pub run: [u8; 32],
}

impl Receipt {
    /// Whether this receipt, by `provider`, opens `commitment`.
    pub fn opens(&self, provider: &PublicKey, commitment: &[u8; 32]) -> bool {
        let reveal = cairn_verify::Reveal {
            digest: self.digest,
            salt: self.salt,
        };
        cairn_verify::Commitment(*commitment).opens(provider, &reveal)
    }
}

/// A requester's signed statement that it accepted these results of one
/// lease: its promise to pay for them, which the lease's provider can
/// redeem on the ledger by itself (`TxKind::Claim`). It names the lease's
/// terms, not only its id, so that a claim pays even if the requester's
/// `RecordLease` never reached a block (or comes after the claim).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptance {
    /// The lease the results were returned under.
    pub lease: Lease,
    /// The results accepted.
    pub results: Vec<Accepted>,
}

/// One accepted result: the task, its digest and the fuel it is paid for
/// (the fuel its manifest states, which the requester checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The task's index in the job.
    pub task: u64,
    /// The result's digest.
    pub digest: ContentId,
    /// Fuel the task used.
    pub fuel_used: u64,
}

/// Receipts one wrong-result conviction may claw back, at most.
pub const CLAWBACK_MAX: usize = 1024;

/// Proof that a provider misbehaved.
// Always boxed where it is held (`TxKind::Slash`), so its variants' sizes
// cost nothing elsewhere.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Two receipts for the same task under the same lease with different
    /// results. Execution is deterministic, so at least one is a lie.
    Equivocation {
        /// One receipt.
        first: Signed<Receipt>,
        /// The other.
        second: Signed<Receipt>,
    },
    /// The provider's receipt for a digest a dispute proved wrong. What it
    /// was paid for `clawback` (its other settled tasks in the signer's
    /// jobs, whose results can no longer be trusted) returns to their
    /// escrows from its stake.
    WrongResult {
        /// The provider's receipt for the wrong digest.
        receipt: Signed<Receipt>,
        /// The verdict, attested by a quorum of the validators.
        verdict: Attested<Verdict>,
        /// (lease, task) of its settled results to take back.
        clawback: Vec<(ContentId, u64)>,
        /// The verdict's winner's receipt for the same task with another
        /// digest, under its own lease on the job: what entitles it to the
        /// reward. Without it (no other side reached the validators'
        /// state) the reward is burned too.
        winner_receipt: Option<Signed<Receipt>>,
    },
    /// A receipt that does not open the same provider's commit: it
    /// revealed something other than what it committed to.
    BadReveal {
        /// The provider's commit.
        commit: Signed<Commit>,
        /// The provider's receipt.
        receipt: Signed<Receipt>,
    },
    /// A challenged commit left unopened past the reveal window.
    NoReveal {
        /// The lease.
        lease: ContentId,
        /// The task.
        task: u64,
    },
    /// A receipt whose digest is this manifest's, stating other fuel than
    /// the manifest does: the provider claimed to be paid for fuel its own
    /// result says it did not use.
    MisstatedFuel {
        /// The provider's receipt.
        receipt: Signed<Receipt>,
        /// The result the receipt's digest names (from a replica's report
        /// with the same digest).
        manifest: ResultManifest,
    },
}

/// Output files a manifest in evidence may list: as many as a task may
/// write.
pub const EVIDENCE_OUTPUTS_MAX: usize = 1_024;

/// A transaction whose signatures have all been checked ([`admit`]).
#[derive(Clone, Debug)]
pub struct VerifiedTx(pub(crate) Tx);

impl VerifiedTx {
    /// The transaction.
    pub fn tx(&self) -> &Tx {
        &self.0
    }
}

impl TxKind {
    /// What this transaction takes from its signer's balance, at most, if it
    /// applies under `params`. Lets a mempool refuse a sender whose queued
    /// transactions could not all be paid for, with a lookup instead of an
    /// execution.
    pub fn balance_debit(&self, params: &Params) -> Amount {
        match self {
            Self::Transfer { amount, .. }
            | Self::Stake { amount }
            | Self::OpenEscrow { amount, .. }
            | Self::TopUpEscrow { amount, .. } => *amount,
            Self::RegisterProvider { stake, .. } => *stake,
            Self::Challenge { .. } => params.challenge_bond,
            Self::Unstake { .. }
            | Self::CloseEscrow { .. }
            | Self::RecordLease { .. }
            | Self::Slash { .. }
            | Self::Reveal { .. }
            | Self::Claim { .. } => 0,
        }
    }
}

impl TxBody {
    /// Signs this body with `key`.
    pub fn sign(self, key: &Keypair) -> Tx {
        Signed::sign(key, TX_NAMESPACE, self)
    }
}

/// Decodes a transaction from bytes received from a peer, within limits.
pub fn decode(bytes: &[u8]) -> Result<Tx, WireError> {
    if bytes.len() > TX_BYTES_MAX {
        return Err(WireError::Malformed {
            what: "transaction",
            source: CodecError::InvalidLength(bytes.len()),
        });
    }
    Tx::from_bytes(bytes, &())
}

/// Checks every signature in `tx`: the signer's, and those of the
/// providers, requesters and validators whose leases, receipts,
/// acceptances or evidence it carries, together in one [`Batch`] (a claim's
/// acceptances, all by its requester, share their key's term).
pub fn admit(tx: Tx) -> Result<VerifiedTx, TxError> {
    let mut batch = Batch::new();
    queue(&tx, &mut batch)?;
    if batch.verify() {
        Ok(VerifiedTx(tx))
    } else {
        Err(first_bad(&tx))
    }
}

/// [`admit`] for many transactions (a block's); returns each one's verdict
/// in order. All their signatures are checked in one batch, which agrees
/// with checking each (see [`Batch`]); a batch with a bad signature falls
/// back to admitting each, so only the transactions that hold one are
/// refused.
pub fn admit_batch(txs: Vec<Tx>) -> Vec<Result<VerifiedTx, TxError>> {
    let mut batch = Batch::new();
    let formed = txs.iter().all(|tx| queue(tx, &mut batch).is_ok());
    if formed && batch.verify() {
        txs.into_iter().map(|tx| Ok(VerifiedTx(tx))).collect()
    } else {
        txs.into_iter().map(admit).collect()
    }
}

/// Queues every signature `tx` holds in `batch`; an error for what is
/// wrong whatever the signatures (a verdict signed twice by one
/// validator).
fn queue(tx: &Tx, batch: &mut Batch) -> Result<(), TxError> {
    batch.add(
        &tx.signer(),
        &tx.signing_bytes(TX_NAMESPACE),
        tx.signature(),
    );
    each_signature(
        &tx.payload_unchecked().kind,
        &mut |_, key, message, signature| batch.add(key, message, signature),
    )
}

/// Why `tx`, whose batch failed, is refused: its first bad signature,
/// checked one by one.
fn first_bad(tx: &Tx) -> TxError {
    if let Err(e) = tx.verify(TX_NAMESPACE) {
        return TxError::BadSignature(e.to_string());
    }
    let mut bad = None;
    let formed = each_signature(
        &tx.payload_unchecked().kind,
        &mut |what, key, message, signature| {
            if bad.is_none() && !key.verify(message, signature) {
                bad = Some(format!("{what}: a bad signature by {key}"));
            }
        },
    );
    match (formed, bad) {
        (Err(e), _) => e,
        (Ok(()), Some(bad)) => TxError::BadSignature(bad),
        // Not reached: the batch and the one-by-one check follow one rule,
        // and signatures that are each valid always pass a batch.
        (Ok(()), None) => TxError::BadSignature("a signature its batch refused".into()),
    }
}

/// What [`each_signature`] hands each signature to: what it is (for
/// errors), who signed, the bytes signed, the signature.
type EachSignature<'a> = dyn FnMut(&'static str, &PublicKey, &[u8], &Signature) + 'a;

/// Calls `each` with every signature `kind` carries besides its signer's:
/// what it is (for errors), who signed, the bytes signed, the signature.
fn each_signature(kind: &TxKind, each: &mut EachSignature<'_>) -> Result<(), TxError> {
    match kind {
        TxKind::RecordLease {
            lease,
            provider_signature,
        } => each(
            "the provider's signature over the lease",
            &lease.provider,
            &lease.signing_bytes(),
            provider_signature,
        ),
        TxKind::Reveal { receipts } => {
            for receipt in receipts {
                envelope(each, "receipt", receipt, RECEIPT_NAMESPACE);
            }
        }
        TxKind::Slash { evidence } => match &**evidence {
            Evidence::Equivocation { first, second } => {
                envelope(each, "evidence", first, RECEIPT_NAMESPACE);
                envelope(each, "evidence", second, RECEIPT_NAMESPACE);
            }
            Evidence::WrongResult {
                receipt,
                verdict,
                winner_receipt,
                ..
            } => {
                envelope(each, "receipt", receipt, RECEIPT_NAMESPACE);
                // Whether the signers are enough validators is the state's
                // question; here every signature must hold, each signer
                // once.
                let message = verdict.signing_bytes(VERDICT_NAMESPACE);
                let mut signers = Vec::new();
                for (signer, signature) in verdict.signatures_unchecked() {
                    if signers.contains(&signer) {
                        return Err(TxError::BadSignature(format!(
                            "verdict: signed twice by {signer}"
                        )));
                    }
                    signers.push(signer);
                    each("verdict", &signer, &message, signature);
                }
                if let Some(winner) = winner_receipt {
                    envelope(each, "winner_receipt", winner, RECEIPT_NAMESPACE);
                }
            }
            Evidence::BadReveal { commit, receipt } => {
                envelope(each, "commit", commit, COMMIT_NAMESPACE);
                envelope(each, "receipt", receipt, RECEIPT_NAMESPACE);
            }
            Evidence::NoReveal { .. } => {}
            Evidence::MisstatedFuel { receipt, .. } => {
                envelope(each, "receipt", receipt, RECEIPT_NAMESPACE);
            }
        },
        TxKind::Challenge { commit } => envelope(each, "commit", commit, COMMIT_NAMESPACE),
        TxKind::Claim { acceptances } => {
            for acceptance in acceptances {
                envelope(each, "acceptance", acceptance, ACCEPTANCE_NAMESPACE);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Hands `each` the signature of one envelope under `namespace`.
fn envelope<T: Encode>(
    each: &mut EachSignature<'_>,
    what: &'static str,
    signed: &Signed<T>,
    namespace: &[u8],
) {
    each(
        what,
        &signed.signer(),
        &signed.signing_bytes(namespace),
        signed.signature(),
    );
}

impl Lease {
    /// What a provider signs to agree to this lease.
    fn signing_bytes(&self) -> Vec<u8> {
        let mut out = LEASE_NAMESPACE.to_vec();
        self.write(&mut out);
        out
    }

    /// The provider's signature agreeing to this lease.
    pub fn sign(&self, provider: &Keypair) -> Signature {
        provider.sign(&self.signing_bytes())
    }

    /// Whether `signature` is the lease's provider agreeing to it: what
    /// the ledger checks before it records the lease.
    pub fn signed_by_provider(&self, signature: &Signature) -> bool {
        self.provider.verify(&self.signing_bytes(), signature)
    }
}

// ---- canonical encoding ----

const KIND_TRANSFER: u8 = 0;
const KIND_REGISTER: u8 = 1;
const KIND_STAKE: u8 = 2;
const KIND_UNSTAKE: u8 = 3;
const KIND_OPEN_ESCROW: u8 = 4;
const KIND_TOP_UP: u8 = 5;
const KIND_CLOSE_ESCROW: u8 = 6;
const KIND_LEASE: u8 = 7;
// 8 was a settlement of the providers' receipts, which claims of the
// requester's acceptances replaced; it is not reused.
const KIND_SLASH: u8 = 9;
const KIND_CHALLENGE: u8 = 10;
const KIND_REVEAL: u8 = 11;
const KIND_CLAIM: u8 = 12;

impl Write for TxBody {
    fn write(&self, buf: &mut impl BufMut) {
        self.chain.write(buf);
        self.nonce.write(buf);
        match &self.kind {
            TxKind::Transfer { to, amount } => {
                KIND_TRANSFER.write(buf);
                to.write(buf);
                amount.write(buf);
            }
            TxKind::RegisterProvider {
                capabilities,
                endpoint,
                stake,
            } => {
                KIND_REGISTER.write(buf);
                capabilities.write(buf);
                text::write(endpoint, buf);
                stake.write(buf);
            }
            TxKind::Stake { amount } => {
                KIND_STAKE.write(buf);
                amount.write(buf);
            }
            TxKind::Unstake { amount } => {
                KIND_UNSTAKE.write(buf);
                amount.write(buf);
            }
            TxKind::OpenEscrow { job, amount } => {
                KIND_OPEN_ESCROW.write(buf);
                job.write(buf);
                amount.write(buf);
            }
            TxKind::TopUpEscrow { job, amount } => {
                KIND_TOP_UP.write(buf);
                job.write(buf);
                amount.write(buf);
            }
            TxKind::CloseEscrow { job } => {
                KIND_CLOSE_ESCROW.write(buf);
                job.write(buf);
            }
            TxKind::RecordLease {
                lease,
                provider_signature,
            } => {
                KIND_LEASE.write(buf);
                lease.write(buf);
                provider_signature.write(buf);
            }
            TxKind::Slash { evidence } => {
                KIND_SLASH.write(buf);
                match &**evidence {
                    Evidence::Equivocation { first, second } => {
                        0u8.write(buf);
                        first.write(buf);
                        second.write(buf);
                    }
                    Evidence::WrongResult {
                        receipt,
                        verdict,
                        clawback,
                        winner_receipt,
                    } => {
                        1u8.write(buf);
                        receipt.write(buf);
                        verdict.write(buf);
                        (clawback.len() as u32).write(buf);
                        for (lease, task) in clawback {
                            lease.write(buf);
                            task.write(buf);
                        }
                        winner_receipt.write(buf);
                    }
                    Evidence::BadReveal { commit, receipt } => {
                        2u8.write(buf);
                        commit.write(buf);
                        receipt.write(buf);
                    }
                    Evidence::NoReveal { lease, task } => {
                        3u8.write(buf);
                        lease.write(buf);
                        task.write(buf);
                    }
                    Evidence::MisstatedFuel { receipt, manifest } => {
                        4u8.write(buf);
                        receipt.write(buf);
                        manifest.write(buf);
                    }
                }
            }
            TxKind::Challenge { commit } => {
                KIND_CHALLENGE.write(buf);
                commit.write(buf);
            }
            TxKind::Reveal { receipts } => {
                KIND_REVEAL.write(buf);
                receipts.write(buf);
            }
            TxKind::Claim { acceptances } => {
                KIND_CLAIM.write(buf);
                acceptances.write(buf);
            }
        }
    }
}

impl EncodeSize for TxBody {
    fn encode_size(&self) -> usize {
        let mut buf = Vec::new();
        self.write(&mut buf);
        buf.len()
    }
}

impl Read for TxBody {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let chain = ContentId::read(buf)?;
        let nonce = u64::read(buf)?;
        let kind = match u8::read(buf)? {
            KIND_TRANSFER => TxKind::Transfer {
                to: PublicKey::read(buf)?,
                amount: u64::read(buf)?,
            },
            KIND_REGISTER => TxKind::RegisterProvider {
                capabilities: Capabilities::read(buf)?,
                endpoint: text::read(buf, ENDPOINT_BYTES_MAX)?,
                stake: u64::read(buf)?,
            },
            KIND_STAKE => TxKind::Stake {
                amount: u64::read(buf)?,
            },
            KIND_UNSTAKE => TxKind::Unstake {
                amount: u64::read(buf)?,
            },
            KIND_OPEN_ESCROW => TxKind::OpenEscrow {
                job: ContentId::read(buf)?,
                amount: u64::read(buf)?,
            },
            KIND_TOP_UP => TxKind::TopUpEscrow {
                job: ContentId::read(buf)?,
                amount: u64::read(buf)?,
            },
            KIND_CLOSE_ESCROW => TxKind::CloseEscrow {
                job: ContentId::read(buf)?,
            },
            KIND_LEASE => TxKind::RecordLease {
                lease: Lease::read(buf)?,
                provider_signature: Signature::read(buf)?,
            },
            KIND_SLASH => {
                let evidence = match u8::read(buf)? {
                    0 => Evidence::Equivocation {
                        first: Signed::<Receipt>::read(buf)?,
                        second: Signed::<Receipt>::read(buf)?,
                    },
                    1 => {
                        let receipt = Signed::<Receipt>::read(buf)?;
                        let verdict = Attested::<Verdict>::read(buf)?;
                        let count = u32::read(buf)? as usize;
                        if count > CLAWBACK_MAX {
                            return Err(CodecError::InvalidLength(count));
                        }
                        let mut clawback = Vec::with_capacity(count);
                        for _ in 0..count {
                            clawback.push((ContentId::read(buf)?, u64::read(buf)?));
                        }
                        Evidence::WrongResult {
                            receipt,
                            verdict,
                            clawback,
                            winner_receipt: Option::<Signed<Receipt>>::read(buf)?,
                        }
                    }
                    2 => Evidence::BadReveal {
                        commit: Signed::<Commit>::read(buf)?,
                        receipt: Signed::<Receipt>::read(buf)?,
                    },
                    3 => Evidence::NoReveal {
                        lease: ContentId::read(buf)?,
                        task: u64::read(buf)?,
                    },
                    4 => Evidence::MisstatedFuel {
                        receipt: Signed::<Receipt>::read(buf)?,
                        manifest: ResultManifest::read_cfg(buf, &EVIDENCE_OUTPUTS_MAX)?,
                    },
                    other => return Err(CodecError::InvalidEnum(other)),
                };
                TxKind::Slash {
                    evidence: Box::new(evidence),
                }
            }
            KIND_CHALLENGE => TxKind::Challenge {
                commit: Signed::<Commit>::read(buf)?,
            },
            KIND_REVEAL => {
                let range: RangeCfg<usize> = (1..=REVEALS_PER_TX_MAX).into();
                TxKind::Reveal {
                    receipts: Vec::<Signed<Receipt>>::read_cfg(buf, &(range, ()))?,
                }
            }
            KIND_CLAIM => {
                let range: RangeCfg<usize> = (0..=ACCEPTANCES_PER_CLAIM_MAX).into();
                let acceptances = Vec::<Signed<Acceptance>>::read_cfg(buf, &(range, ()))?;
                let results: usize = acceptances
                    .iter()
                    .map(|a| a.payload_unchecked().results.len())
                    .sum();
                if results > RESULTS_PER_CLAIM_MAX {
                    return Err(CodecError::InvalidLength(results));
                }
                TxKind::Claim { acceptances }
            }
            other => return Err(CodecError::InvalidEnum(other)),
        };
        Ok(Self { chain, nonce, kind })
    }
}

impl Write for Capabilities {
    fn write(&self, buf: &mut impl BufMut) {
        self.cores.write(buf);
        self.memory_mib.write(buf);
        self.gpus.write(buf);
        self.score.write(buf);
    }
}

impl Read for Capabilities {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            cores: u32::read(buf)?,
            memory_mib: u32::read(buf)?,
            gpus: u32::read(buf)?,
            score: u32::read(buf)?,
        })
    }
}

impl Write for Lease {
    fn write(&self, buf: &mut impl BufMut) {
        self.job.write(buf);
        self.requester.write(buf);
        self.provider.write(buf);
        self.price_ucairn_per_gfuel.write(buf);
        self.fuel_per_task_max.write(buf);
        self.expires_height.write(buf);
    }
}

impl EncodeSize for Lease {
    fn encode_size(&self) -> usize {
        32 + 32 + 32 + 8 + 8 + 8
    }
}

impl Read for Lease {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            job: ContentId::read(buf)?,
            requester: PublicKey::read(buf)?,
            provider: PublicKey::read(buf)?,
            price_ucairn_per_gfuel: u64::read(buf)?,
            fuel_per_task_max: u64::read(buf)?,
            expires_height: u64::read(buf)?,
        })
    }
}

impl Write for Receipt {
    fn write(&self, buf: &mut impl BufMut) {
        self.lease.write(buf);
        self.task.write(buf);
        self.digest.write(buf);
        self.fuel_used.write(buf);
        self.salt.write(buf);
        self.run.write(buf);
    }
}

impl EncodeSize for Receipt {
    fn encode_size(&self) -> usize {
        32 + 8 + 32 + 8 + 32 + 32
    }
}

impl Read for Receipt {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            lease: ContentId::read(buf)?,
            task: u64::read(buf)?,
            digest: ContentId::read(buf)?,
            fuel_used: u64::read(buf)?,
            salt: <[u8; 32]>::read(buf)?,
            run: <[u8; 32]>::read(buf)?,
        })
    }
}

impl Write for Accepted {
    fn write(&self, buf: &mut impl BufMut) {
        self.task.write(buf);
        self.digest.write(buf);
        self.fuel_used.write(buf);
    }
}

impl EncodeSize for Accepted {
    fn encode_size(&self) -> usize {
        8 + 32 + 8
    }
}

impl Read for Accepted {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            task: u64::read(buf)?,
            digest: ContentId::read(buf)?,
            fuel_used: u64::read(buf)?,
        })
    }
}

impl Write for Acceptance {
    fn write(&self, buf: &mut impl BufMut) {
        self.lease.write(buf);
        self.results.write(buf);
    }
}

impl EncodeSize for Acceptance {
    fn encode_size(&self) -> usize {
        self.lease.encode_size() + self.results.encode_size()
    }
}

impl Read for Acceptance {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let range: RangeCfg<usize> = (0..=ACCEPTANCE_RESULTS_MAX).into();
        Ok(Self {
            lease: Lease::read(buf)?,
            results: Vec::<Accepted>::read_cfg(buf, &(range, ()))?,
        })
    }
}
