//! The ledger state and the rules that change it.

use std::collections::{BTreeMap, BTreeSet};

use cairn_wire::{ContentId, PublicKey, Signed};

use crate::fraud::{Commit, REVEAL_WINDOW_BLOCKS, Verdict, WHOLE_TASK};
use crate::table::{Keys, Table};
use crate::tx::{Acceptance, Amount, Capabilities, Evidence, Lease, Receipt, TxKind, VerifiedTx};
use crate::{Proof, TxError, root};

/// Blocks after a lease expires during which it can still be paid on or
/// proven against (settlement, evidence, challenges). Then the lease and
/// everything recorded per task under it leave the state, so the state
/// holds the leases of a bounded past rather than of all time: twice the
/// life a lease may have ([`LEASE_BLOCKS_MAX`]).
pub const EVIDENCE_WINDOW_BLOCKS: u64 = 200_000;

/// The longest a lease may live from the block that records it. Without a
/// bound, a requester could record a lease that never expires and so hold
/// its provider liable, its unbonding stake locked, for ever.
pub const LEASE_BLOCKS_MAX: u64 = 100_000;

/// Protocol parameters, fixed at genesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Stake a provider needs to register and to bid.
    pub stake_min: Amount,
    /// Blocks between unstaking and getting the stake back.
    pub unbonding_blocks: u64,
    /// Protocol fee on every payment, in basis points.
    pub fee_bps: u16,
    /// Share of a provider's stake slashed per proven offence, in basis points.
    pub slash_bps: u16,
    /// Share of a slash paid to the honest side of a dispute, in basis
    /// points (only with that side's own receipt for the task).
    pub slash_reward_bps: u16,
    /// Share of a wrong result's slash paid, in equal parts, to the
    /// validators whose signatures attest its verdict: what judging cost
    /// them. With `slash_reward_bps`, at most all of it; the rest is
    /// burned.
    pub judge_reward_bps: u16,
    /// How long a challenged provider has to reveal, in milliseconds of
    /// block time (and at least [`REVEAL_WINDOW_BLOCKS`] blocks): long
    /// enough that a provider rebooted, moved or offline overnight is not
    /// slashed by a requester who challenges while it is away.
    pub reveal_window_ms: u64,
    /// µCAIRN a challenger locks with each challenge: burned if the provider
    /// reveals (the challenge was without cause), returned if it does not.
    /// Challenging an honest provider costs, so a flood of challenges does.
    pub challenge_bond: Amount,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            stake_min: 1_000_000_000,
            unbonding_blocks: 1_000,
            fee_bps: 100,
            slash_bps: 5_000,
            slash_reward_bps: 5_000,
            judge_reward_bps: 1_000,
            reveal_window_ms: 6 * 60 * 60 * 1_000,
            challenge_bond: 100_000,
        }
    }
}

/// An account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Spendable µCAIRN.
    pub balance: Amount,
    /// Transactions applied so far; the next must carry this nonce.
    pub nonce: u64,
}

/// A registered provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    /// Bonded stake (slashable).
    pub stake: Amount,
    /// What it offers.
    pub capabilities: Capabilities,
    /// Where it is reached.
    pub endpoint: String,
    /// Its record.
    pub reputation: Reputation,
    /// The height until which one of its leases can still be proven
    /// against (the latest lease's expiry plus the evidence window): stake
    /// unbonded before then returns only then, so a cheat cannot unstake
    /// and leave before its evidence arrives.
    pub liable_until: u64,
    /// The block time before which a challenge against it may still be
    /// claimed as withheld (0: never challenged): a reveal window is a
    /// time, which a fast chain can outlast in blocks, so stake due before
    /// then is held back until then.
    pub liable_until_ms: u64,
}

/// A provider's record, kept by the ledger so anyone can check it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reputation {
    /// Receipts paid.
    pub tasks_settled: u64,
    /// Fuel paid for.
    pub fuel_settled: u64,
    /// Proven offences.
    pub slashes: u64,
}

/// A job's locked budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Escrow {
    /// Who locked it and gets the rest back.
    pub owner: PublicKey,
    /// What is left.
    pub balance: Amount,
    /// The last height at which a lease on the job is live. Its owner may
    /// take the rest back only after it: providers working under a lease
    /// see the escrow they work for until the lease ends.
    pub leases_until: u64,
    /// Its owner asked to close it: no lease may be recorded on it, and
    /// leases end within [`CLOSE_NOTICE_BLOCKS`], after which a second
    /// `CloseEscrow` returns the rest.
    pub closing: bool,
}

/// How many blocks after a `CloseEscrow` the job's leases end at the latest:
/// notice for its providers, who stop taking its work when they see the
/// escrow closing.
pub const CLOSE_NOTICE_BLOCKS: u64 = 50;

/// What a claim did with each result, in order: a payment
/// may be the difference for a result paid before for less fuel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Paid: `paid` to the provider and `fee` to the fee pool.
    Paid {
        /// To the provider.
        paid: Amount,
        /// To the fee pool.
        fee: Amount,
    },
    /// Not paid, and why.
    Refused(&'static str),
}

/// An open reveal challenge: the provider must post the receipt that
/// opens `commitment` before the window closes, once the chain is past both
/// `deadline` and `deadline_ms`. The requester then has as long again to
/// claim it as withheld (`NoReveal`); until that claim period is over too,
/// the lease and the provider's stake stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The provider's commitment to open.
    pub commitment: [u8; 32],
    /// The last height at which the receipt is accepted for sure.
    pub deadline: u64,
    /// The last block time (ms since the epoch) at which it is accepted
    /// for sure.
    pub deadline_ms: u64,
    /// What the challenger (the lease's requester) locked.
    pub bond: Amount,
}

impl Challenge {
    /// Whether the window is over at (`height`, `time_ms`).
    fn window_over(&self, height: u64, time_ms: u64) -> bool {
        height > self.deadline && time_ms > self.deadline_ms
    }

    /// The first block time at which a withheld reveal can no longer be
    /// claimed, given the chain's reveal window (the claim period's end in
    /// blocks, `REVEAL_WINDOW_BLOCKS` after the deadline, is within the
    /// lease's evidence window).
    fn claimable_before_ms(&self, window_ms: u64) -> u64 {
        self.deadline_ms.saturating_add(window_ms).saturating_add(1)
    }

    /// Whether a withheld reveal can no longer be claimed.
    fn claims_over(&self, height: u64, time_ms: u64, window_ms: u64) -> bool {
        height > self.deadline.saturating_add(REVEAL_WINDOW_BLOCKS)
            && time_ms >= self.claimable_before_ms(window_ms)
    }
}

/// The first height after `height` at which `lease` is looked at to be
/// forgotten: once its evidence window has passed, then every
/// [`REVEAL_WINDOW_BLOCKS`] while a challenge holds it. A function of the
/// lease and the height alone, so a state restored from its rows (which
/// do not hold the schedule) looks when the state it was saved from does.
fn forget_look_after(lease: &Lease, height: u64) -> u64 {
    let first = lease.expires_height.saturating_add(EVIDENCE_WINDOW_BLOCKS);
    if height < first {
        return first;
    }
    let looks = (height - first) / REVEAL_WINDOW_BLOCKS + 1;
    first.saturating_add(looks.saturating_mul(REVEAL_WINDOW_BLOCKS))
}

/// One result to pay: (lease id, the lease, task, fuel), or why it is
/// refused already.
type Payable = Result<(ContentId, Lease, u64, u64), &'static str>;

/// The whole ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub(crate) chain: ContentId,
    pub(crate) params: Params,
    pub(crate) height: u64,
    /// The last block's time (ms since the epoch, as its proposer stated
    /// and the validators bounded).
    pub(crate) time_ms: u64,
    pub(crate) supply: Amount,
    pub(crate) accounts: Table<PublicKey, Account>,
    pub(crate) providers: Table<PublicKey, Provider>,
    /// Stake on its way out, keyed by (release height, owner).
    pub(crate) unbonding: Table<(u64, PublicKey), Amount>,
    pub(crate) escrows: Table<ContentId, Escrow>,
    pub(crate) leases: Table<ContentId, Lease>,
    /// (lease, task) pairs already paid, with the fuel they were paid for
    /// (what was paid follows from the lease's price: [`State::charge`]).
    pub(crate) settled: Table<(ContentId, u64), u64>,
    /// (lease, task) pairs already punished.
    pub(crate) slashed: Keys<(ContentId, u64)>,
    /// (lease, task) pairs whose payment was taken back.
    pub(crate) clawed: Keys<(ContentId, u64)>,
    /// Open reveal challenges, by (lease, task).
    pub(crate) challenges: Table<(ContentId, u64), Challenge>,
    /// When each lease is next looked at to leave the state: (height,
    /// lease), see [`forget_look_after`]. Derived from `leases` and the
    /// height: not in the snapshot nor the state root.
    pub(crate) forgotten_at: BTreeSet<(u64, ContentId)>,
    pub(crate) fee_pool: Amount,
    pub(crate) burned: Amount,
    /// The validators, fixed at genesis: who attests dispute verdicts.
    pub(crate) validators: Keys<PublicKey>,
    /// The state root's tree over the rows of all of the above, brought up
    /// to date with the rows each block changed.
    pub(crate) tree: root::Tree,
}

impl State {
    /// An empty ledger for `chain` (use [`crate::Genesis`] for a real one).
    pub(crate) fn empty(chain: ContentId, params: Params) -> Self {
        Self {
            chain,
            params,
            height: 0,
            time_ms: 0,
            supply: 0,
            accounts: Table::default(),
            providers: Table::default(),
            unbonding: Table::default(),
            escrows: Table::default(),
            leases: Table::default(),
            settled: Table::default(),
            slashed: Keys::default(),
            clawed: Keys::default(),
            challenges: Table::default(),
            forgotten_at: BTreeSet::new(),
            fee_pool: 0,
            burned: 0,
            validators: Keys::default(),
            tree: root::Tree::default(),
        }
    }

    /// The chain's id (the genesis digest).
    pub fn chain(&self) -> ContentId {
        self.chain
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The height of the last block begun.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The time of the last block begun (ms since the epoch).
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// Tokens created at genesis; constant forever.
    pub fn supply(&self) -> Amount {
        self.supply
    }

    /// An account (all zero if never used).
    pub fn account(&self, key: &PublicKey) -> Account {
        self.accounts.get(key).copied().unwrap_or_default()
    }

    /// A provider, if registered.
    pub fn provider(&self, key: &PublicKey) -> Option<&Provider> {
        self.providers.get(key)
    }

    /// Whether `key` may bid: registered with at least the minimum stake.
    pub fn can_bid(&self, key: &PublicKey) -> bool {
        self.providers
            .get(key)
            .is_some_and(|p| p.stake >= self.params.stake_min)
    }

    /// How many providers may bid ([`State::can_bid`]).
    pub fn bidders(&self) -> u64 {
        let min = self.params.stake_min;
        self.providers.values().filter(|p| p.stake >= min).count() as u64
    }

    /// A job's escrow, if open.
    pub fn escrow(&self, job: &ContentId) -> Option<&Escrow> {
        self.escrows.get(job)
    }

    /// The validators: who attests dispute verdicts.
    pub fn validators(&self) -> &BTreeSet<PublicKey> {
        &self.validators
    }

    /// How many validators must attest a verdict: all but the `f` a BFT
    /// chain of `n = 3f + 1` tolerates, so honest validators are a majority
    /// of every quorum. With no validators, no verdict counts.
    pub fn verdict_quorum(&self) -> usize {
        let n = self.validators.len();
        if n == 0 {
            return 1;
        }
        n - (n - 1) / 3
    }

    /// A recorded lease.
    pub fn lease(&self, id: &ContentId) -> Option<&Lease> {
        self.leases.get(id)
    }

    /// The open challenges against `provider`'s commits, the earliest
    /// deadline first: (lease, task, the challenge). A provider watches
    /// these and answers each, so that no requester can turn a commit it
    /// holds into `NoReveal` evidence against an honest provider.
    pub fn open_challenges(&self, provider: &PublicKey) -> Vec<(ContentId, u64, Challenge)> {
        let mut open: Vec<_> = self
            .challenges
            .iter()
            .filter(|((lease, _), _)| {
                self.leases
                    .get(lease)
                    .is_some_and(|lease| &lease.provider == provider)
            })
            .map(|(&(lease, task), &challenge)| (lease, task, challenge))
            .collect();
        open.sort_by_key(|&(lease, task, c)| (c.deadline_ms, c.deadline, lease, task));
        open
    }

    /// Stake of `key` still unbonding.
    pub fn unbonding_of(&self, key: &PublicKey) -> Amount {
        self.unbonding
            .iter()
            .filter(|((_, owner), _)| owner == key)
            .map(|(_, amount)| amount)
            .sum()
    }

    /// The fuel the provider of `lease` was paid for `task`, if it was paid.
    pub fn paid_fuel(&self, lease: &ContentId, task: u64) -> Option<u64> {
        self.settled.get(&(*lease, task)).copied()
    }

    /// What the provider of `lease` was paid for `task`, if it was paid.
    pub fn paid(&self, lease: &ContentId, task: u64) -> Option<Amount> {
        let fuel = *self.settled.get(&(*lease, task))?;
        let (price, fee) = self.charge(self.leases.get(lease)?, fuel).ok()?;
        Some(price - fee)
    }

    /// What `fuel` under `lease` costs its payer, and the protocol's fee
    /// out of that: `fuel × price / 10^9`, and `fee_bps` of it. Both grow
    /// with the fuel, as does what the provider keeps.
    fn charge(&self, lease: &Lease, fuel: u64) -> Result<(Amount, Amount), TxError> {
        let price = u128::from(fuel) * u128::from(lease.price_ucairn_per_gfuel) / 1_000_000_000;
        let price = Amount::try_from(price).map_err(|_| TxError::Overflow("payment"))?;
        let fee = Amount::try_from(u128::from(price) * u128::from(self.params.fee_bps) / 10_000)
            .expect("a fee is at most the price");
        Ok((price, fee))
    }

    /// Protocol fees collected.
    pub fn fee_pool(&self) -> Amount {
        self.fee_pool
    }

    /// Tokens destroyed by slashing.
    pub fn burned(&self) -> Amount {
        self.burned
    }

    /// Every token, wherever it is, plus those burned. Always equals
    /// [`State::supply`]; a difference is a bug.
    pub fn total_accounted(&self) -> u128 {
        let sum = |it: &mut dyn Iterator<Item = Amount>| it.map(u128::from).sum::<u128>();
        sum(&mut self.accounts.values().map(|a| a.balance))
            + sum(&mut self.providers.values().map(|p| p.stake))
            + sum(&mut self.unbonding.values().copied())
            + sum(&mut self.escrows.values().map(|e| e.balance))
            + sum(&mut self.challenges.values().map(|c| c.bond))
            + u128::from(self.fee_pool)
            + u128::from(self.burned)
    }

    /// Starts block `height`, made at `time_ms` (its timestamp, ms since
    /// the epoch): stake whose unbonding delay has passed returns to its
    /// owner's balance, and leases whose evidence window has passed are
    /// forgotten.
    pub fn begin_block(&mut self, height: u64, time_ms: u64) {
        assert!(height > self.height, "blocks are applied in order");
        self.height = height;
        // Consensus makes timestamps increase; a state never goes back.
        self.time_ms = self.time_ms.max(time_ms);
        // Heights come from blocks, so the last one must not wrap: at
        // `u64::MAX` everything still unbonding is due.
        let due = self.unbonding.take_below(
            height
                .checked_add(1)
                .map(|next| (next, PublicKey::MIN))
                .as_ref(),
        );
        for ((_, owner), amount) in due {
            let challenged = self
                .providers
                .get(&owner)
                .is_some_and(|p| self.time_ms < p.liable_until_ms);
            if challenged {
                // A challenge's claim period in blocks is within the
                // evidence window; in time it may end later: look again a
                // window on.
                let later = (height.saturating_add(REVEAL_WINDOW_BLOCKS), owner);
                let held = self.unbonding.get(&later).copied().unwrap_or(0);
                // Cannot overflow: both were part of the fixed supply.
                let held = held.checked_add(amount).expect("stake fits the supply");
                self.unbonding.insert(later, held);
                continue;
            }
            let account = self.accounts.get_or_default(owner);
            // Cannot overflow: the amount was part of the fixed supply.
            account.balance = account
                .balance
                .checked_add(amount)
                .expect("balances fit the supply");
        }
        let later = match height.checked_add(1) {
            Some(next) => self
                .forgotten_at
                .split_off(&(next, ContentId::from_digest([0; 32]))),
            None => BTreeSet::new(),
        };
        for (_, lease) in std::mem::replace(&mut self.forgotten_at, later) {
            self.forget_lease(&lease);
        }
    }

    /// Removes `lease` and what is recorded per task under it: no payment,
    /// evidence or challenge about it is taken any more. A lease with a
    /// challenge that can still be answered or claimed stays until it
    /// cannot (the window is a time, the evidence window a number of
    /// blocks); a challenge never claimed returns its bond.
    fn forget_lease(&mut self, id: &ContentId) {
        let under = (*id, 0)..=(*id, u64::MAX);
        let challenged: Vec<_> = self
            .challenges
            .range(under.clone())
            .map(|(k, c)| (*k, *c))
            .collect();
        let window_ms = self.params.reveal_window_ms;
        let Some(lease) = self.leases.get(id) else {
            return;
        };
        if challenged
            .iter()
            .any(|(_, c)| !c.claims_over(self.height, self.time_ms, window_ms))
        {
            let later = forget_look_after(lease, self.height);
            self.forgotten_at.insert((later, *id));
            return;
        }
        let lease = self.leases.remove(id).expect("looked up above");
        for (key, challenge) in challenged {
            self.challenges.remove(&key);
            let account = self.accounts.get_or_default(lease.requester);
            // Cannot overflow: the bond was part of the fixed supply.
            account.balance = account
                .balance
                .checked_add(challenge.bond)
                .expect("balances fit the supply");
        }
        let settled: Vec<_> = self.settled.range(under.clone()).map(|(k, _)| *k).collect();
        for key in settled {
            self.settled.remove(&key);
        }
        for set in [&mut self.slashed, &mut self.clawed] {
            let keys: Vec<_> = set.range(under.clone()).copied().collect();
            for key in keys {
                set.remove(&key);
            }
        }
    }

    /// Schedules `lease`'s removal at its next look (see
    /// [`forget_look_after`]).
    pub(crate) fn schedule_forgetting(&mut self, id: ContentId, lease: &Lease) {
        let at = forget_look_after(lease, self.height);
        self.forgotten_at.insert((at, id));
    }

    /// Applies a transaction a finalized block carries: as [`State::apply`],
    /// except that a refusal for any reason but its chain or nonce still
    /// takes its nonce. A sender's later transactions then follow a refused
    /// one instead of waiting forever for a nonce nothing will fill.
    pub fn apply_in_block(&mut self, tx: &VerifiedTx) -> Result<Vec<SettleOutcome>, TxError> {
        let outcome = self.apply(tx);
        if let Err(e) = &outcome
            && !matches!(
                e,
                TxError::WrongChain { .. } | TxError::BadNonce { .. } | TxError::Overflow("nonce")
            )
        {
            let account = self.accounts.get_or_default(tx.tx().signer());
            // Cannot overflow: `apply` refused a nonce that would.
            account.nonce += 1;
        }
        outcome
    }

    /// Applies a verified transaction completely, or refuses it and changes
    /// nothing. A claim returns what happened to each result.
    pub fn apply(&mut self, tx: &VerifiedTx) -> Result<Vec<SettleOutcome>, TxError> {
        let tx = tx.tx();
        let body = tx.payload_unchecked();
        let signer = tx.signer();
        if body.chain != self.chain {
            return Err(TxError::WrongChain {
                expected: self.chain,
                found: body.chain,
            });
        }
        let account = self.account(&signer);
        if body.nonce != account.nonce {
            return Err(TxError::BadNonce {
                expected: account.nonce,
                found: body.nonce,
            });
        }
        // Unreachable by counting alone, but a wrapped nonce would make every
        // earlier transaction of the account valid again.
        let nonce_next = account
            .nonce
            .checked_add(1)
            .ok_or(TxError::Overflow("nonce"))?;
        // Every handler checks everything before it changes anything.
        let outcomes = match &body.kind {
            TxKind::Transfer { to, amount } => self.transfer(signer, *to, *amount)?,
            TxKind::RegisterProvider {
                capabilities,
                endpoint,
                stake,
            } => self.register(signer, *capabilities, endpoint, *stake)?,
            TxKind::Stake { amount } => self.stake(signer, *amount)?,
            TxKind::Unstake { amount } => self.unstake(signer, *amount)?,
            TxKind::OpenEscrow { job, amount } => self.open_escrow(signer, *job, *amount)?,
            TxKind::TopUpEscrow { job, amount } => self.top_up(signer, *job, *amount)?,
            TxKind::CloseEscrow { job } => self.close_escrow(signer, *job)?,
            TxKind::RecordLease { lease, .. } => self.record_lease(signer, lease)?,
            TxKind::Slash { evidence } => self.slash(signer, evidence)?,
            TxKind::Challenge { commit } => self.challenge(signer, commit)?,
            TxKind::Reveal { receipts } => self.reveal(receipts)?,
            TxKind::Claim { acceptances } => self.claim(acceptances)?,
        };
        self.accounts.get_or_default(signer).nonce = nonce_next;
        Ok(outcomes)
    }

    fn debit(&self, who: &PublicKey, amount: Amount) -> Result<Amount, TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        let balance = self.account(who).balance;
        balance.checked_sub(amount).ok_or(TxError::Insufficient {
            what: "balance",
            needed: amount,
            available: balance,
        })
    }

    fn transfer(
        &mut self,
        from: PublicKey,
        to: PublicKey,
        amount: Amount,
    ) -> Result<Vec<SettleOutcome>, TxError> {
        let from_after = self.debit(&from, amount)?;
        if from != to {
            let to_after = self
                .account(&to)
                .balance
                .checked_add(amount)
                .ok_or(TxError::Overflow("recipient balance"))?;
            self.accounts.get_or_default(from).balance = from_after;
            self.accounts.get_or_default(to).balance = to_after;
        }
        Ok(Vec::new())
    }

    fn register(
        &mut self,
        who: PublicKey,
        capabilities: Capabilities,
        endpoint: &str,
        stake: Amount,
    ) -> Result<Vec<SettleOutcome>, TxError> {
        let current = self.providers.get(&who).map_or(0, |p| p.stake);
        let total = current
            .checked_add(stake)
            .ok_or(TxError::Overflow("stake"))?;
        if total < self.params.stake_min {
            return Err(TxError::BelowMinimumStake {
                stake: total,
                minimum: self.params.stake_min,
            });
        }
        let balance = if stake > 0 {
            self.debit(&who, stake)?
        } else {
            self.account(&who).balance
        };
        self.accounts.get_or_default(who).balance = balance;
        let provider = self.providers.get_or_insert_with(who, || Provider {
            stake: 0,
            capabilities,
            endpoint: String::new(),
            reputation: Reputation::default(),
            liable_until: 0,
            liable_until_ms: 0,
        });
        provider.stake = total;
        provider.capabilities = capabilities;
        provider.endpoint = endpoint.to_string();
        Ok(Vec::new())
    }

    fn stake(&mut self, who: PublicKey, amount: Amount) -> Result<Vec<SettleOutcome>, TxError> {
        let provider = self.providers.get(&who).ok_or(TxError::NotProvider(who))?;
        let stake = provider
            .stake
            .checked_add(amount)
            .ok_or(TxError::Overflow("stake"))?;
        let balance = self.debit(&who, amount)?;
        self.accounts.get_or_default(who).balance = balance;
        self.providers.get_mut(&who).unwrap().stake = stake;
        Ok(Vec::new())
    }

    fn unstake(&mut self, who: PublicKey, amount: Amount) -> Result<Vec<SettleOutcome>, TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        let provider = self.providers.get(&who).ok_or(TxError::NotProvider(who))?;
        let stake = provider
            .stake
            .checked_sub(amount)
            .ok_or(TxError::Insufficient {
                what: "stake",
                needed: amount,
                available: provider.stake,
            })?;
        let release = self
            .height
            .checked_add(self.params.unbonding_blocks)
            .ok_or(TxError::Overflow("release height"))?
            .max(provider.liable_until);
        let entry = self.unbonding.get(&(release, who)).copied().unwrap_or(0);
        let entry = entry
            .checked_add(amount)
            .ok_or(TxError::Overflow("unbonding"))?;
        self.providers.get_mut(&who).unwrap().stake = stake;
        self.unbonding.insert((release, who), entry);
        Ok(Vec::new())
    }

    fn open_escrow(
        &mut self,
        who: PublicKey,
        job: ContentId,
        amount: Amount,
    ) -> Result<Vec<SettleOutcome>, TxError> {
        if self.escrows.contains_key(&job) {
            return Err(TxError::EscrowExists(job));
        }
        let balance = self.debit(&who, amount)?;
        self.accounts.get_or_default(who).balance = balance;
        self.escrows.insert(
            job,
            Escrow {
                owner: who,
                balance: amount,
                leases_until: 0,
                closing: false,
            },
        );
        Ok(Vec::new())
    }

    fn owned_escrow(&self, who: &PublicKey, job: &ContentId) -> Result<Escrow, TxError> {
        let escrow = *self.escrows.get(job).ok_or(TxError::UnknownEscrow(*job))?;
        if escrow.owner != *who {
            return Err(TxError::NotEscrowOwner {
                owner: escrow.owner,
            });
        }
        Ok(escrow)
    }

    fn top_up(
        &mut self,
        who: PublicKey,
        job: ContentId,
        amount: Amount,
    ) -> Result<Vec<SettleOutcome>, TxError> {
        let escrow = self.owned_escrow(&who, &job)?;
        let escrow_after = escrow
            .balance
            .checked_add(amount)
            .ok_or(TxError::Overflow("escrow"))?;
        let balance = self.debit(&who, amount)?;
        self.accounts.get_or_default(who).balance = balance;
        self.escrows.get_mut(&job).unwrap().balance = escrow_after;
        Ok(Vec::new())
    }

    fn close_escrow(
        &mut self,
        who: PublicKey,
        job: ContentId,
    ) -> Result<Vec<SettleOutcome>, TxError> {
        let escrow = self.owned_escrow(&who, &job)?;
        if escrow.leases_until >= self.height && escrow.leases_until > 0 {
            // Leases are live: they end after the notice (or sooner, as
            // signed), and the rest returns on a later `CloseEscrow`.
            if escrow.closing {
                return Err(TxError::LeasesOutstanding {
                    until: escrow.leases_until,
                });
            }
            let until = escrow
                .leases_until
                .min(self.height.saturating_add(CLOSE_NOTICE_BLOCKS));
            let escrow = self.escrows.get_mut(&job).expect("owned above");
            escrow.leases_until = until;
            escrow.closing = true;
            return Ok(Vec::new());
        }
        let balance = self
            .account(&who)
            .balance
            .checked_add(escrow.balance)
            .ok_or(TxError::Overflow("balance"))?;
        self.accounts.get_or_default(who).balance = balance;
        self.escrows.remove(&job);
        Ok(Vec::new())
    }

    fn record_lease(
        &mut self,
        who: PublicKey,
        lease: &Lease,
    ) -> Result<Vec<SettleOutcome>, TxError> {
        let escrow = self.owned_escrow(&who, &lease.job)?;
        if escrow.closing {
            return Err(TxError::EscrowClosing(lease.job));
        }
        if lease.requester != who {
            return Err(TxError::Invalid {
                field: "lease.requester",
                reason: "must be the signer of the transaction".into(),
            });
        }
        if !self.can_bid(&lease.provider) {
            return Err(TxError::Invalid {
                field: "lease.provider",
                reason: "not a provider with the minimum stake".into(),
            });
        }
        if lease.expires_height <= self.height {
            return Err(TxError::Invalid {
                field: "lease.expires_height",
                reason: format!("already expired at height {}", self.height),
            });
        }
        if lease.expires_height > self.height.saturating_add(LEASE_BLOCKS_MAX) {
            return Err(TxError::Invalid {
                field: "lease.expires_height",
                reason: format!(
                    "more than {LEASE_BLOCKS_MAX} blocks after height {}",
                    self.height
                ),
            });
        }
        let id = lease.id();
        if self.leases.contains_key(&id) {
            return Err(TxError::LeaseExists(id));
        }
        self.keep_lease(id, lease);
        Ok(Vec::new())
    }

    /// Keeps a lease, recorded or taken from an acceptance: its provider's
    /// stake stays liable until its evidence window closes, its job's
    /// escrow (if its requester's, and not closing) returns nothing before
    /// it ends, and it is forgotten once no evidence about it is taken.
    fn keep_lease(&mut self, id: ContentId, lease: &Lease) {
        if let Some(provider) = self.providers.get_mut(&lease.provider) {
            provider.liable_until = provider
                .liable_until
                .max(lease.expires_height.saturating_add(EVIDENCE_WINDOW_BLOCKS));
        }
        if let Some(escrow) = self.escrows.get_mut(&lease.job)
            && escrow.owner == lease.requester
            && !escrow.closing
        {
            escrow.leases_until = escrow.leases_until.max(lease.expires_height);
        }
        self.leases.insert(id, lease.clone());
        self.schedule_forgetting(id, lease);
    }

    /// Pays the results a lease's requester signed as accepted, to the
    /// lease's provider, whoever posts them: what the requester settles is
    /// then only a shortcut, never the provider's only way to be paid. What
    /// the escrow cannot pay, the requester's balance does. A provider
    /// slashed under any lease of the same requester claims nothing from it
    /// (its results can no longer be trusted). Each result is paid or
    /// refused on its own.
    ///
    /// An acceptance names its lease's terms, signed by the requester: a
    /// lease the requester never recorded (or whose `RecordLease` has not
    /// reached a block yet) is taken from it, while the lease could still
    /// be on the ledger had it been recorded. Before that, a claim that
    /// overtook its lease's record was refused and its payment lost, and
    /// a requester that never recorded its leases had their work for free.
    fn claim(&mut self, acceptances: &[Signed<Acceptance>]) -> Result<Vec<SettleOutcome>, TxError> {
        let mut items = Vec::new();
        // Each item's lease, where it is taken from the acceptance.
        let mut taking: Vec<Option<(ContentId, Lease)>> = Vec::new();
        for signed in acceptances {
            let acceptance = signed.payload_unchecked();
            let lease = &acceptance.lease;
            let id = lease.id();
            let known = self.leases.contains_key(&id);
            let refusal = if signed.signer() != lease.requester {
                Some("not signed by the lease's requester")
            } else if !known && let Err(why) = self.adoptable(lease) {
                Some(why)
            } else if self.convicted_for(&lease.provider, &lease.requester) {
                Some("its provider was slashed on a lease of this requester")
            } else {
                None
            };
            let adopt = (refusal.is_none() && !known).then(|| (id, lease.clone()));
            for r in &acceptance.results {
                items.push(match refusal {
                    None => Ok((id, lease.clone(), r.task, r.fuel_used)),
                    Some(reason) => Err(reason),
                });
                taking.push(adopt.clone());
            }
        }
        let outcomes = self.pay(items)?;
        // Kept as a recorded lease is, if it paid anything: what it paid
        // stays marked paid until it is forgotten (a replayed claim then
        // finds it too late), and its provider's stake stays liable.
        for (outcome, taken) in outcomes.iter().zip(taking) {
            if let (SettleOutcome::Paid { .. }, Some((id, lease))) = (outcome, taken)
                && !self.leases.contains_key(&id)
            {
                self.keep_lease(id, &lease);
            }
        }
        Ok(outcomes)
    }

    /// Whether a lease the ledger does not know may be taken from an
    /// acceptance: only if a `RecordLease` could have recorded it but for
    /// the escrow's state (its provider staked, so its stake answers for
    /// the work; its job's escrow, if open, its requester's; an expiry a
    /// lease may have), and only while it would still be known had it
    /// been recorded (a lease is forgotten `EVIDENCE_WINDOW_BLOCKS` after
    /// it expires, and what was paid under it with it).
    fn adoptable(&self, lease: &Lease) -> Result<(), &'static str> {
        if !self.can_bid(&lease.provider) {
            return Err("unknown lease, whose provider is not staked");
        }
        if self
            .escrows
            .get(&lease.job)
            .is_some_and(|e| e.owner != lease.requester)
        {
            return Err("unknown lease, for another requester's job");
        }
        if self.height >= lease.expires_height.saturating_add(EVIDENCE_WINDOW_BLOCKS)
            || lease.expires_height > self.height.saturating_add(LEASE_BLOCKS_MAX)
        {
            return Err("unknown lease, too late (or too far ahead) to take from its acceptance");
        }
        Ok(())
    }

    /// Whether `provider` was slashed under a lease from `requester`: its
    /// results for that requester can no longer be trusted, so claims on
    /// what was accepted from it before pay nothing. Slashes are few, and
    /// each leaves the state with its lease.
    fn convicted_for(&self, provider: &PublicKey, requester: &PublicKey) -> bool {
        self.slashed.iter().any(|(lease, _)| {
            self.leases
                .get(lease)
                .is_some_and(|l| l.provider == *provider && l.requester == *requester)
        })
    }

    /// Pays each (lease, task, fuel) not refused already: `fuel × price /
    /// 10^9` from the lease's job's escrow to its provider, the protocol fee
    /// to the fee pool. What the escrow cannot pay (closed, drained, or
    /// reopened by someone else under the same job id) comes from the
    /// requester's balance: its acceptance is its promise to pay. A pair
    /// already paid for as much fuel or more, fuel above the lease's
    /// maximum, or funds that cannot cover it pay nothing. A pair paid for
    /// less fuel is paid the difference: each result is paid for the most
    /// fuel its requester signed in an acceptance, so a requester that
    /// signs a second, smaller acceptance of a result and claims it first
    /// does not shortchange its provider, whose claim of the first pays the
    /// rest.
    fn pay(&mut self, items: Vec<Payable>) -> Result<Vec<SettleOutcome>, TxError> {
        use std::collections::btree_map::Entry;
        // Plan every payment against copies, then commit: the transaction
        // applies wholly or not at all, even if a later receipt overflows.
        // One working balance per account, debits and credits alike, so an
        // account that pays under one lease and is paid under another in
        // the same transaction ends with both.
        let mut escrows: BTreeMap<ContentId, Escrow> = BTreeMap::new();
        let mut balances: BTreeMap<PublicKey, Amount> = BTreeMap::new();
        let mut paid_now: BTreeMap<(ContentId, u64), u64> = BTreeMap::new();
        let mut payments: BTreeMap<PublicKey, (Amount, u64, u64)> = BTreeMap::new();
        let mut fees: Amount = 0;
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let refuse = |reason| SettleOutcome::Refused(reason);
            let (lease_id, lease, task, fuel_used) = match item {
                Ok(item) => item,
                Err(reason) => {
                    outcomes.push(refuse(reason));
                    continue;
                }
            };
            let key = (lease_id, task);
            if self.clawed.contains(&key) {
                // Judged wrong: what it was paid went back, and nothing
                // more is paid for it.
                outcomes.push(refuse("its payment was taken back"));
                continue;
            }
            let paid_fuel = paid_now.get(&key).or(self.settled.get(&key)).copied();
            if paid_fuel.is_some_and(|paid| paid >= fuel_used) {
                outcomes.push(refuse("already settled"));
                continue;
            }
            if fuel_used > lease.fuel_per_task_max {
                outcomes.push(refuse("fuel above the lease's per-task maximum"));
                continue;
            }
            let (mut price, mut fee) = self.charge(&lease, fuel_used)?;
            if let Some(paid) = paid_fuel {
                // What the fuel paid for before cost; the charge only grows
                // with the fuel, so neither difference is negative.
                let (paid_price, paid_fee) = self.charge(&lease, paid)?;
                price -= paid_price;
                fee -= paid_fee;
            }
            let escrow = match escrows.entry(lease.job) {
                Entry::Occupied(e) => Some(e.into_mut()),
                Entry::Vacant(e) => self.escrows.get(&lease.job).map(|x| e.insert(*x)),
            };
            let escrow_pays = escrow
                .as_ref()
                .is_some_and(|e| e.owner == lease.requester && e.balance >= price);
            if let (true, Some(escrow)) = (escrow_pays, escrow) {
                escrow.balance -= price;
            } else if lease.requester != lease.provider {
                // Its acceptance is the requester's promise to pay; closing
                // the escrow only returned the budget to its balance.
                let balance = match balances.entry(lease.requester) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(self.account(&lease.requester).balance),
                };
                if *balance < price {
                    outcomes.push(refuse("neither the escrow nor the requester can pay"));
                    continue;
                }
                *balance -= price;
            } else {
                outcomes.push(refuse(if self.escrows.contains_key(&lease.job) {
                    "escrow exhausted"
                } else {
                    "the job's escrow is closed"
                }));
                continue;
            }
            fees = fees.checked_add(fee).ok_or(TxError::Overflow("fees"))?;
            let entry = payments.entry(lease.provider).or_default();
            entry.0 = entry
                .0
                .checked_add(price - fee)
                .ok_or(TxError::Overflow("payment"))?;
            // At most one per item, and items are bounded per transaction;
            // a difference paid is no new task, and only its fuel is new.
            entry.1 += u64::from(paid_fuel.is_none());
            entry.2 = entry.2.saturating_add(fuel_used - paid_fuel.unwrap_or(0));
            paid_now.insert(key, fuel_used);
            outcomes.push(SettleOutcome::Paid {
                paid: price - fee,
                fee,
            });
        }
        // Check every credit fits before making any.
        let fee_pool = self
            .fee_pool
            .checked_add(fees)
            .ok_or(TxError::Overflow("fee pool"))?;
        for (provider, (amount, _, _)) in &payments {
            let balance = match balances.entry(*provider) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(self.account(provider).balance),
            };
            *balance = balance
                .checked_add(*amount)
                .ok_or(TxError::Overflow("provider balance"))?;
        }
        for (account, balance) in balances {
            self.accounts.get_or_default(account).balance = balance;
        }
        for (provider, (_, tasks, fuel)) in payments {
            if let Some(p) = self.providers.get_mut(&provider) {
                // A counter, not money: it stops at the top rather than wrap.
                p.reputation.tasks_settled = p.reputation.tasks_settled.saturating_add(tasks);
                p.reputation.fuel_settled = p.reputation.fuel_settled.saturating_add(fuel);
            }
        }
        self.fee_pool = fee_pool;
        for (job, escrow) in escrows {
            self.escrows.insert(job, escrow);
        }
        self.settled.extend(paid_now);
        Ok(outcomes)
    }

    fn slash(
        &mut self,
        reporter: PublicKey,
        evidence: &Evidence,
    ) -> Result<Vec<SettleOutcome>, TxError> {
        match evidence {
            Evidence::Equivocation { first, second } => {
                let (a, b) = (first.payload_unchecked(), second.payload_unchecked());
                let offender = first.signer();
                if second.signer() != offender {
                    return Err(TxError::BadEvidence("the receipts have different signers"));
                }
                if (a.lease, a.task) != (b.lease, b.task) {
                    return Err(TxError::BadEvidence("the receipts are for different tasks"));
                }
                if (a.digest, a.fuel_used) == (b.digest, b.fuel_used) {
                    return Err(TxError::BadEvidence("the receipts agree"));
                }
                self.offence(offender, a.lease, a.task)?;
                self.punish(offender, a.lease, a.task, None, &[], &[])
            }
            Evidence::WrongResult {
                receipt,
                verdict,
                clawback,
                winner_receipt,
            } => {
                let offender = receipt.signer();
                let r = receipt.payload_unchecked();
                let v = verdict.payload_unchecked();
                let lease = self.offence(offender, r.lease, r.task)?;
                // No party judges its own case: the validators do, and a
                // verdict counts only with a quorum of them.
                let signers: BTreeSet<PublicKey> = verdict.signers_unchecked().collect();
                let validators = signers.intersection(&self.validators).count();
                if validators < self.verdict_quorum() || validators < signers.len() {
                    return Err(TxError::BadEvidence(
                        "the verdict is not attested by a quorum of the validators",
                    ));
                }
                if (v.job, v.task, v.wrong) != (lease.job, r.task, r.digest) {
                    return Err(TxError::BadEvidence(
                        "the verdict is about another task or digest",
                    ));
                }
                if (v.accused, v.lease) != (offender, r.lease) {
                    return Err(TxError::BadEvidence(
                        "the verdict convicts another provider",
                    ));
                }
                // The validators judged the run the provider signed, and
                // no other.
                if v.run != r.run {
                    return Err(TxError::BadEvidence(
                        "the verdict is about another run than the receipt",
                    ));
                }
                let mut keys = BTreeSet::new();
                for key in clawback {
                    let lease = self
                        .leases
                        .get(&key.0)
                        .ok_or(TxError::BadEvidence("clawback: unknown lease"))?;
                    if lease.provider != offender {
                        return Err(TxError::BadEvidence("clawback: not the offender's lease"));
                    }
                    if lease.requester != reporter {
                        return Err(TxError::BadEvidence("clawback: another requester's job"));
                    }
                    if !self.settled.contains_key(key)
                        || self.clawed.contains(key)
                        || !keys.insert(*key)
                    {
                        return Err(TxError::BadEvidence(
                            "clawback: a receipt not paid, or already taken back",
                        ));
                    }
                }
                let winner = match winner_receipt {
                    Some(winner) => {
                        self.winner(&lease, r, v, winner)?;
                        Some(v.winner)
                    }
                    None => None,
                };
                // A validator that is a party (the requester, either side)
                // is not paid for judging: its part is burned.
                let parties = [lease.requester, offender, v.winner];
                let judges: Vec<Option<PublicKey>> = signers
                    .iter()
                    .map(|judge| (!parties.contains(judge)).then_some(*judge))
                    .collect();
                self.punish(offender, r.lease, r.task, winner, &judges, clawback)
            }
            Evidence::BadReveal { commit, receipt } => {
                let offender = commit.signer();
                let (c, r) = (commit.payload_unchecked(), receipt.payload_unchecked());
                if receipt.signer() != offender {
                    return Err(TxError::BadEvidence(
                        "commit and receipt by different signers",
                    ));
                }
                if (c.lease, c.task) != (r.lease, r.task) {
                    return Err(TxError::BadEvidence(
                        "commit and receipt for different tasks",
                    ));
                }
                if r.opens(&offender, &c.commitment) {
                    return Err(TxError::BadEvidence("the receipt opens the commit"));
                }
                self.offence(offender, c.lease, c.task)?;
                self.punish(offender, c.lease, c.task, None, &[], &[])
            }
            Evidence::MisstatedFuel { receipt, manifest } => {
                let offender = receipt.signer();
                let r = receipt.payload_unchecked();
                if manifest.digest() != r.digest {
                    return Err(TxError::BadEvidence(
                        "the manifest is not the receipt's result",
                    ));
                }
                if manifest.fuel_used == r.fuel_used {
                    return Err(TxError::BadEvidence(
                        "the receipt states the manifest's fuel",
                    ));
                }
                self.offence(offender, r.lease, r.task)?;
                self.punish(offender, r.lease, r.task, None, &[], &[])
            }
            Evidence::NoReveal { lease, task } => {
                let challenge = *self
                    .challenges
                    .get(&(*lease, *task))
                    .ok_or(TxError::BadEvidence("no open challenge for this task"))?;
                if !challenge.window_over(self.height, self.time_ms) {
                    return Err(TxError::BadEvidence("the reveal window is still open"));
                }
                let recorded = self
                    .leases
                    .get(lease)
                    .ok_or(TxError::BadEvidence("unknown lease"))?;
                let (offender, requester) = (recorded.provider, recorded.requester);
                self.offence(offender, *lease, *task)?;
                let requester_balance = self
                    .account(&requester)
                    .balance
                    .checked_add(challenge.bond)
                    .ok_or(TxError::Overflow("balance"))?;
                let outcomes = self.punish(offender, *lease, *task, None, &[], &[])?;
                self.challenges.remove(&(*lease, *task));
                // The challenge had cause: its bond goes back.
                self.accounts.get_or_default(requester).balance = requester_balance;
                Ok(outcomes)
            }
        }
    }

    /// Checks that `winner` is the receipt of the provider `verdict` names
    /// as the honest side against `receipt` (under `lease`): another
    /// provider of the same job, for the same task, with another digest,
    /// and not the job's requester, who gains nothing from a conviction.
    fn winner(
        &self,
        lease: &Lease,
        receipt: &Receipt,
        verdict: &Verdict,
        winner: &Signed<Receipt>,
    ) -> Result<(), TxError> {
        let w = winner.payload_unchecked();
        let winner_lease = self.leases.get(&w.lease).ok_or(TxError::BadEvidence(
            "the winner's receipt is under an unknown lease",
        ))?;
        if winner.signer() != verdict.winner || winner_lease.provider != verdict.winner {
            return Err(TxError::BadEvidence(
                "the winner's receipt is not the verdict's winner's",
            ));
        }
        if winner_lease.job != lease.job || w.task != receipt.task || w.run != receipt.run {
            return Err(TxError::BadEvidence(
                "the winner's receipt is for another task",
            ));
        }
        // Re-running the whole task reached a result: the winner's.
        if verdict.position == WHOLE_TASK && verdict.reached != *w.digest.as_bytes() {
            return Err(TxError::BadEvidence(
                "the winner did not return the result the validators reached",
            ));
        }
        if w.digest == receipt.digest || verdict.winner == lease.provider {
            return Err(TxError::BadEvidence("the winner returned the same result"));
        }
        if verdict.winner == lease.requester {
            return Err(TxError::BadEvidence(
                "the job's requester cannot win its dispute",
            ));
        }
        Ok(())
    }

    /// Checks that `offender` is the provider of `lease` and has not been
    /// punished for this task yet; returns the lease.
    fn offence(&self, offender: PublicKey, lease: ContentId, task: u64) -> Result<Lease, TxError> {
        let lease = self
            .leases
            .get(&lease)
            .ok_or(TxError::BadEvidence("unknown lease"))?;
        if lease.provider != offender {
            return Err(TxError::BadEvidence("not the lease's provider"));
        }
        if self.slashed.contains(&(lease.id(), task)) {
            return Err(TxError::BadEvidence("this offence was already punished"));
        }
        if !self.providers.contains_key(&offender) {
            return Err(TxError::NotProvider(offender));
        }
        Ok(lease.clone())
    }

    /// Slashes `offender` for its offence on (`lease`, `task`): a share of
    /// its stake (unbonding stake included) is taken, part rewarded to
    /// `beneficiary` (the honest side of a dispute, if proven), part shared
    /// by the `judges` that attested a verdict (a seat of `None`, a party's,
    /// is not paid) and the rest burned; then what it was paid for each
    /// receipt in `clawback` returns to that job's escrow (or, if the escrow
    /// is gone, its owner) from what stake remains.
    fn punish(
        &mut self,
        offender: PublicKey,
        lease: ContentId,
        task: u64,
        beneficiary: Option<PublicKey>,
        judges: &[Option<PublicKey>],
        clawback: &[(ContentId, u64)],
    ) -> Result<Vec<SettleOutcome>, TxError> {
        let provider = &self.providers[&offender];
        let at_stake = u128::from(provider.stake) + u128::from(self.unbonding_of(&offender));
        let penalty = Amount::try_from(at_stake * u128::from(self.params.slash_bps) / 10_000)
            .expect("a share of the supply fits");
        let reward = match beneficiary {
            Some(_) => Amount::try_from(
                u128::from(penalty) * u128::from(self.params.slash_reward_bps) / 10_000,
            )
            .expect("a share of the penalty fits"),
            None => 0,
        };
        // Each judge's equal part; what does not divide is burned.
        let judged = match u64::try_from(judges.len()) {
            Ok(n @ 1..) => {
                let share = u128::from(penalty) * u128::from(self.params.judge_reward_bps)
                    / 10_000
                    / u128::from(n);
                Amount::try_from(share).expect("a share of the penalty fits")
            }
            _ => 0,
        };
        // One credit per account, even if the winner also judged.
        let mut credits: BTreeMap<PublicKey, Amount> = BTreeMap::new();
        let payees = beneficiary.map(|who| (who, reward)).into_iter();
        for (who, amount) in payees.chain(judges.iter().flatten().map(|&who| (who, judged))) {
            let credit = credits.entry(who).or_default();
            *credit = credit
                .checked_add(amount)
                .ok_or(TxError::Overflow("reward"))?;
        }
        let mut balances = Vec::with_capacity(credits.len());
        let mut paid: Amount = 0;
        for (who, credit) in credits {
            paid = paid
                .checked_add(credit)
                .ok_or(TxError::Overflow("reward"))?;
            let balance = self.account(&who).balance.checked_add(credit);
            balances.push((who, balance.ok_or(TxError::Overflow("reward"))?));
        }
        // The genesis keeps the shares within the whole.
        let burn = penalty
            .checked_sub(paid)
            .ok_or(TxError::Overflow("rewards above the penalty"))?;
        // What each clawed-back task paid the offender, and where it goes.
        let refunds = clawback
            .iter()
            .map(|key| {
                let lease = &self.leases[&key.0];
                let (price, fee) = self.charge(lease, self.settled[key])?;
                Ok((lease.job, lease.requester, price - fee))
            })
            .collect::<Result<Vec<(ContentId, PublicKey, Amount)>, TxError>>()?;
        let refund_total: u128 = refunds.iter().map(|(_, _, a)| u128::from(*a)).sum();
        let take_total = Amount::try_from((u128::from(penalty) + refund_total).min(at_stake))
            .expect("bounded by the stake");

        // Take from stake first, then from unbonding stake.
        let mut left = take_total;
        let provider = self.providers.get_mut(&offender).expect("checked");
        let from_stake = left.min(provider.stake);
        provider.stake -= from_stake;
        provider.reputation.slashes = provider.reputation.slashes.saturating_add(1);
        left -= from_stake;
        let keys: Vec<(u64, PublicKey)> = self
            .unbonding
            .keys()
            .filter(|(_, owner)| *owner == offender)
            .copied()
            .collect();
        for key in keys {
            if left == 0 {
                break;
            }
            let amount = self.unbonding.get_mut(&key).unwrap();
            let take = left.min(*amount);
            *amount -= take;
            left -= take;
            if *amount == 0 {
                self.unbonding.remove(&key);
            }
        }
        debug_assert_eq!(left, 0, "the take is at most what is at stake");
        for (who, balance) in balances {
            self.accounts.get_or_default(who).balance = balance;
        }
        // Every sum below is part of the fixed supply, which fits an
        // Amount: overflow would be a broken invariant, not bad input.
        self.burned = self
            .burned
            .checked_add(burn)
            .expect("burned tokens fit the supply");
        // Refunds come out of what remains after the penalty, in order,
        // until it runs out.
        let mut refundable = take_total - penalty;
        // Each to the escrow that paid it, if its requester still has it
        // open under the job's id, else to that requester's balance: never
        // to an escrow someone else opened under the same id since.
        for (job, requester, amount) in refunds {
            let amount = amount.min(refundable);
            refundable -= amount;
            match self.escrows.get_mut(&job) {
                Some(escrow) if escrow.owner == requester => {
                    escrow.balance = escrow
                        .balance
                        .checked_add(amount)
                        .expect("an escrow fits the supply");
                }
                _ => {
                    let account = self.accounts.get_or_default(requester);
                    account.balance = account
                        .balance
                        .checked_add(amount)
                        .expect("a balance fits the supply");
                }
            }
        }
        self.clawed.extend(clawback.iter().copied());
        self.slashed.insert((lease, task));
        Ok(Vec::new())
    }

    fn challenge(
        &mut self,
        signer: PublicKey,
        commit: &Signed<Commit>,
    ) -> Result<Vec<SettleOutcome>, TxError> {
        let c = commit.payload_unchecked();
        let lease = self
            .leases
            .get(&c.lease)
            .ok_or(TxError::BadEvidence("unknown lease"))?;
        if lease.requester != signer {
            return Err(TxError::BadEvidence(
                "only the lease's requester may challenge",
            ));
        }
        if commit.signer() != lease.provider {
            return Err(TxError::BadEvidence("the commit is not the provider's"));
        }
        // A provider keeps what opens its commits while their lease lives
        // and a reveal window after; a later challenge could find it gone.
        if self.height > lease.expires_height {
            return Err(TxError::BadEvidence("the lease has expired"));
        }
        let key = (c.lease, c.task);
        if self.challenges.contains_key(&key) || self.slashed.contains(&key) {
            return Err(TxError::BadEvidence("already challenged or punished"));
        }
        let challenge = Challenge {
            commitment: c.commitment,
            deadline: self
                .height
                .checked_add(REVEAL_WINDOW_BLOCKS)
                .ok_or(TxError::Overflow("deadline"))?,
            deadline_ms: self
                .time_ms
                .checked_add(self.params.reveal_window_ms)
                .ok_or(TxError::Overflow("deadline"))?,
            bond: self.params.challenge_bond,
        };
        let provider = lease.provider;
        let liable_until_ms = self
            .providers
            .get(&provider)
            .ok_or(TxError::NotProvider(provider))?
            .liable_until_ms
            .max(challenge.claimable_before_ms(self.params.reveal_window_ms));
        let balance = if challenge.bond == 0 {
            self.account(&signer).balance
        } else {
            self.debit(&signer, challenge.bond)?
        };
        self.accounts.get_or_default(signer).balance = balance;
        self.providers.get_mut(&provider).unwrap().liable_until_ms = liable_until_ms;
        self.challenges.insert(key, challenge);
        Ok(Vec::new())
    }

    /// Closes the challenges `receipts` answer in time, burning their
    /// bonds. A receipt for a
    /// challenge answered already, whose window is over (it can only be
    /// claimed as withheld now: a late reveal must not race the claim), or
    /// that does not open the challenged commitment is skipped, so one bad
    /// receipt does not hold up the others; with none left, the
    /// transaction is refused.
    fn reveal(&mut self, receipts: &[Signed<Receipt>]) -> Result<Vec<SettleOutcome>, TxError> {
        let mut closing = BTreeMap::new();
        let mut wrong = false;
        for receipt in receipts {
            let r = receipt.payload_unchecked();
            let key = (r.lease, r.task);
            let Some(challenge) = self.challenges.get(&key) else {
                continue;
            };
            if challenge.window_over(self.height, self.time_ms) {
                continue;
            }
            let provider = self.leases[&r.lease].provider;
            if receipt.signer() != provider || !r.opens(&provider, &challenge.commitment) {
                wrong = true;
                continue;
            }
            closing.insert(key, challenge.bond);
        }
        if closing.is_empty() {
            return Err(TxError::BadEvidence(match wrong {
                true => "the receipt does not open the commit",
                false => "no challenge open to these receipts",
            }));
        }
        let burned = closing
            .values()
            .try_fold(self.burned, |sum, bond| sum.checked_add(*bond))
            .ok_or(TxError::Overflow("burned"))?;
        for key in closing.keys() {
            self.challenges.remove(key);
        }
        // The challenges were without cause.
        self.burned = burned;
        Ok(Vec::new())
    }

    /// The Merkle root over the whole state, with the rows changed since
    /// the last look folded in (and kept for [`State::take_changes`] once
    /// anything took changes).
    pub fn root(&mut self) -> ContentId {
        let changes = self.fold();
        self.tree.keep(changes);
        self.tree.root()
    }

    /// A proof of `key`'s account against [`State::root`], or `None` if the
    /// account does not exist.
    pub fn prove(&mut self, key: &PublicKey) -> Option<(Account, Proof)> {
        self.root();
        let account = *self.accounts.get(key)?;
        let (row, _) = crate::snapshot::account_row(key, &account);
        Some((account, self.tree.prove(&row)?))
    }
}

#[cfg(test)]
mod tests;
