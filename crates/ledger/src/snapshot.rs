//! The state as rows: the header and each entry of each table is one
//! (key, value) pair of canonical bytes, the key led by its table's tag.
//! Rows are what a node stores (only those a block changed), what the state
//! root hashes (one leaf per row), and, all together, a snapshot.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BufMut;
use cairn_wire::codec::{Copying, Error as CodecError, ReadExt, Write};
use cairn_wire::{ContentId, PublicKey, text};

use crate::table::{Keys, Table};
use crate::tx::{Capabilities, ENDPOINT_BYTES_MAX, Lease};
use crate::{Account, Challenge, Escrow, Params, Provider, Reputation, State, root};

/// Version of the snapshot format (7: a settled result's row holds the
/// fuel it was paid for, not the amount).
const SNAPSHOT_VERSION: u8 = 7;

/// The most rows a snapshot may say it has before they are read (each row
/// is at least a few bytes, so a real snapshot's count is bounded by its
/// length).
const ROW_BYTES_MIN: u64 = 2;

/// Table tags: the first byte of every row's key.
mod tag {
    pub const HEADER: u8 = 0;
    pub const VALIDATOR: u8 = 1;
    pub const ACCOUNT: u8 = 2;
    pub const PROVIDER: u8 = 3;
    pub const UNBONDING: u8 = 4;
    pub const ESCROW: u8 = 5;
    pub const LEASE: u8 = 6;
    pub const SETTLED: u8 = 7;
    pub const SLASHED: u8 = 8;
    pub const CLAWED: u8 = 9;
    pub const CHALLENGE: u8 = 10;
}

/// One changed row: its key, and its value (`None`: the row was removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The row's key: its table's tag, then the entry's key.
    pub key: Vec<u8>,
    /// The row's value, or `None` if the entry left the state.
    pub value: Option<Vec<u8>>,
}

fn row_key(tag: u8, key: &impl Write) -> Vec<u8> {
    let mut out = vec![tag];
    key.write(&mut out);
    out
}

fn bytes_of(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out);
    out
}

/// The row of `key`'s account: what a proof of a balance opens.
pub(crate) fn account_row(key: &PublicKey, account: &Account) -> (Vec<u8>, Vec<u8>) {
    (row_key(tag::ACCOUNT, key), account_value(account))
}

fn account_value(account: &Account) -> Vec<u8> {
    bytes_of(|buf| {
        account.balance.write(buf);
        account.nonce.write(buf);
    })
}

fn amount_value(amount: &u64) -> Vec<u8> {
    bytes_of(|buf| amount.write(buf))
}

fn header_value(state: &State) -> Vec<u8> {
    bytes_of(|buf| {
        state.chain.write(buf);
        let p = &state.params;
        p.stake_min.write(buf);
        p.unbonding_blocks.write(buf);
        p.fee_bps.write(buf);
        p.slash_bps.write(buf);
        p.slash_reward_bps.write(buf);
        p.judge_reward_bps.write(buf);
        p.reveal_window_ms.write(buf);
        p.challenge_bond.write(buf);
        state.height.write(buf);
        state.time_ms.write(buf);
        state.supply.write(buf);
        state.fee_pool.write(buf);
        state.burned.write(buf);
    })
}

fn provider_value(p: &Provider) -> Vec<u8> {
    bytes_of(|buf| {
        p.stake.write(buf);
        p.capabilities.write(buf);
        text::write(&p.endpoint, buf);
        p.reputation.tasks_settled.write(buf);
        p.reputation.fuel_settled.write(buf);
        p.reputation.slashes.write(buf);
        p.liable_until.write(buf);
        p.liable_until_ms.write(buf);
    })
}

fn escrow_value(e: &Escrow) -> Vec<u8> {
    bytes_of(|buf| {
        e.owner.write(buf);
        e.balance.write(buf);
        e.leases_until.write(buf);
        e.closing.write(buf);
    })
}

/// Keys of each table: those a block changed, or all of them.
#[derive(Default)]
struct Keysets {
    validators: BTreeSet<PublicKey>,
    accounts: BTreeSet<PublicKey>,
    providers: BTreeSet<PublicKey>,
    unbonding: BTreeSet<(u64, PublicKey)>,
    escrows: BTreeSet<ContentId>,
    leases: BTreeSet<ContentId>,
    settled: BTreeSet<(ContentId, u64)>,
    slashed: BTreeSet<(ContentId, u64)>,
    clawed: BTreeSet<(ContentId, u64)>,
    challenges: BTreeSet<(ContentId, u64)>,
}

/// Appends the rows of `table`'s entries at `keys` (removed ones as `None`).
fn rows_of<K: Ord + Write, V>(
    tag: u8,
    table: &BTreeMap<K, V>,
    keys: BTreeSet<K>,
    value: impl Fn(&V) -> Vec<u8>,
    out: &mut Vec<Change>,
) {
    out.extend(keys.into_iter().map(|k| Change {
        key: row_key(tag, &k),
        value: table.get(&k).map(&value),
    }));
}

fn rows_of_keys<K: Ord + Write>(
    tag: u8,
    set: &BTreeSet<K>,
    keys: BTreeSet<K>,
    out: &mut Vec<Change>,
) {
    out.extend(keys.into_iter().map(|k| Change {
        key: row_key(tag, &k),
        value: set.contains(&k).then(Vec::new),
    }));
}

impl State {
    /// The header's row and the rows of the entries at `keys`.
    fn rows_at(&self, keys: Keysets) -> Vec<Change> {
        let mut out = vec![Change {
            key: vec![tag::HEADER],
            value: Some(header_value(self)),
        }];
        rows_of_keys(tag::VALIDATOR, &self.validators, keys.validators, &mut out);
        rows_of(
            tag::ACCOUNT,
            &self.accounts,
            keys.accounts,
            account_value,
            &mut out,
        );
        rows_of(
            tag::PROVIDER,
            &self.providers,
            keys.providers,
            provider_value,
            &mut out,
        );
        rows_of(
            tag::UNBONDING,
            &self.unbonding,
            keys.unbonding,
            amount_value,
            &mut out,
        );
        rows_of(
            tag::ESCROW,
            &self.escrows,
            keys.escrows,
            escrow_value,
            &mut out,
        );
        let lease_value = |l: &Lease| bytes_of(|buf| l.write(buf));
        rows_of(tag::LEASE, &self.leases, keys.leases, lease_value, &mut out);
        rows_of(
            tag::SETTLED,
            &self.settled,
            keys.settled,
            amount_value,
            &mut out,
        );
        rows_of_keys(tag::SLASHED, &self.slashed, keys.slashed, &mut out);
        rows_of_keys(tag::CLAWED, &self.clawed, keys.clawed, &mut out);
        let challenge_value = |c: &Challenge| {
            bytes_of(|buf| {
                c.commitment.write(buf);
                c.deadline.write(buf);
                c.deadline_ms.write(buf);
                c.bond.write(buf);
            })
        };
        rows_of(
            tag::CHALLENGE,
            &self.challenges,
            keys.challenges,
            challenge_value,
            &mut out,
        );
        out
    }

    /// The rows changed since the last call (the header always, as every
    /// block moves the height), in the order they changed: what a node
    /// writes to its store with each block. Once a state's changes have
    /// been taken, [`State::root`] keeps the rows it folds for the next
    /// call; before, it forgets them (a state nothing stores).
    pub fn take_changes(&mut self) -> Vec<Change> {
        let mut out = self.tree.take_unsaved();
        out.extend(self.fold());
        out
    }

    /// The rows changed since the last fold, folded into the state root's
    /// tree.
    pub(crate) fn fold(&mut self) -> Vec<Change> {
        let keys = Keysets {
            validators: self.validators.take_changed(),
            accounts: self.accounts.take_changed(),
            providers: self.providers.take_changed(),
            unbonding: self.unbonding.take_changed(),
            escrows: self.escrows.take_changed(),
            leases: self.leases.take_changed(),
            settled: self.settled.take_changed(),
            slashed: self.slashed.take_changed(),
            clawed: self.clawed.take_changed(),
            challenges: self.challenges.take_changed(),
        };
        let changes = self.rows_at(keys);
        for change in &changes {
            self.tree.set(&change.key, change.value.as_deref());
        }
        changes
    }

    /// Every row of the state, in key order.
    pub fn rows(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let keys = Keysets {
            validators: (*self.validators).clone(),
            accounts: self.accounts.keys().copied().collect(),
            providers: self.providers.keys().copied().collect(),
            unbonding: self.unbonding.keys().copied().collect(),
            escrows: self.escrows.keys().copied().collect(),
            leases: self.leases.keys().copied().collect(),
            settled: self.settled.keys().copied().collect(),
            slashed: (*self.slashed).clone(),
            clawed: (*self.clawed).clone(),
            challenges: self.challenges.keys().copied().collect(),
        };
        let mut rows: Vec<(Vec<u8>, Vec<u8>)> = self
            .rows_at(keys)
            .into_iter()
            .filter_map(|c| Some((c.key, c.value?)))
            .collect();
        rows.sort();
        rows
    }

    /// The state stored as `rows` (in any order), checked: every row
    /// decodes whole, none is repeated, the header is there, and the supply
    /// adds up. Nothing is marked changed.
    pub fn from_rows<'a>(
        rows: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<Self, CodecError> {
        let mut header = None;
        let mut validators = BTreeSet::new();
        let mut accounts = BTreeMap::new();
        let mut providers = BTreeMap::new();
        let mut unbonding = BTreeMap::new();
        let mut escrows = BTreeMap::new();
        let mut leases = BTreeMap::new();
        let mut settled = BTreeMap::new();
        let mut slashed = BTreeSet::new();
        let mut clawed = BTreeSet::new();
        let mut challenges = BTreeMap::new();
        let mut tree = root::Tree::default();
        for (key, value) in rows {
            let (&tag, rest) = key
                .split_first()
                .ok_or(CodecError::Invalid("state row", "empty key"))?;
            let k = &mut Copying(rest);
            let v = &mut Copying(value);
            let fresh = match tag {
                tag::HEADER => header.replace(read_header(v)?).is_none(),
                tag::VALIDATOR => validators.insert(PublicKey::read(k)?),
                tag::ACCOUNT => {
                    let account = Account {
                        balance: u64::read(v)?,
                        nonce: u64::read(v)?,
                    };
                    accounts.insert(PublicKey::read(k)?, account).is_none()
                }
                tag::PROVIDER => {
                    let provider = Provider {
                        stake: u64::read(v)?,
                        capabilities: Capabilities::read(v)?,
                        endpoint: text::read(v, ENDPOINT_BYTES_MAX)?,
                        reputation: Reputation {
                            tasks_settled: u64::read(v)?,
                            fuel_settled: u64::read(v)?,
                            slashes: u64::read(v)?,
                        },
                        liable_until: u64::read(v)?,
                        liable_until_ms: u64::read(v)?,
                    };
                    providers.insert(PublicKey::read(k)?, provider).is_none()
                }
                tag::UNBONDING => {
                    let key = (u64::read(k)?, PublicKey::read(k)?);
                    unbonding.insert(key, u64::read(v)?).is_none()
                }
                tag::ESCROW => {
                    let escrow = Escrow {
                        owner: PublicKey::read(v)?,
                        balance: u64::read(v)?,
                        leases_until: u64::read(v)?,
                        closing: bool::read(v)?,
                    };
                    escrows.insert(ContentId::read(k)?, escrow).is_none()
                }
                tag::LEASE => {
                    let id = ContentId::read(k)?;
                    let lease = Lease::read(v)?;
                    if lease.id() != id {
                        return Err(CodecError::Invalid("state row", "lease under another id"));
                    }
                    leases.insert(id, lease).is_none()
                }
                tag::SETTLED => settled.insert(per_task(k)?, u64::read(v)?).is_none(),
                tag::SLASHED => slashed.insert(per_task(k)?),
                tag::CLAWED => clawed.insert(per_task(k)?),
                tag::CHALLENGE => {
                    let value = Challenge {
                        commitment: <[u8; 32]>::read(v)?,
                        deadline: u64::read(v)?,
                        deadline_ms: u64::read(v)?,
                        bond: u64::read(v)?,
                    };
                    challenges.insert(per_task(k)?, value).is_none()
                }
                _ => return Err(CodecError::Invalid("state row", "unknown table")),
            };
            if !fresh {
                return Err(CodecError::Invalid("state row", "repeated"));
            }
            for rest in [k.0, v.0] {
                if !rest.is_empty() {
                    return Err(CodecError::ExtraData(rest.len()));
                }
            }
            tree.set(key, Some(value));
        }
        let (chain, params, [height, time_ms, supply, fee_pool, burned]) =
            header.ok_or(CodecError::Invalid("state rows", "no header"))?;
        let mut state = State::empty(chain, params);
        state.height = height;
        state.time_ms = time_ms;
        state.supply = supply;
        state.fee_pool = fee_pool;
        state.burned = burned;
        state.validators = Keys::loaded(validators);
        state.accounts = Table::loaded(accounts);
        state.providers = Table::loaded(providers);
        state.unbonding = Table::loaded(unbonding);
        state.escrows = Table::loaded(escrows);
        for (id, lease) in &leases {
            state.schedule_forgetting(*id, lease);
        }
        state.leases = Table::loaded(leases);
        state.settled = Table::loaded(settled);
        state.slashed = Keys::loaded(slashed);
        state.clawed = Keys::loaded(clawed);
        state.challenges = Table::loaded(challenges);
        state.tree = tree;
        if state.total_accounted() != u128::from(state.supply) {
            return Err(CodecError::Invalid("state rows", "supply does not add up"));
        }
        Ok(state)
    }

    /// The canonical bytes of the whole state: every row, in key order.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let rows = self.rows();
        let mut buf = Vec::new();
        SNAPSHOT_VERSION.write(&mut buf);
        (rows.len() as u64).write(&mut buf);
        for (key, value) in &rows {
            write_bytes(&mut buf, key);
            write_bytes(&mut buf, value);
        }
        buf
    }

    /// Reads a snapshot written by [`State::to_snapshot`].
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, CodecError> {
        let buf = &mut Copying(bytes);
        if u8::read(buf)? != SNAPSHOT_VERSION {
            return Err(CodecError::Invalid("snapshot", "unknown version"));
        }
        let count = u64::read(buf)?;
        if count > bytes.len() as u64 / ROW_BYTES_MIN {
            return Err(CodecError::Invalid("snapshot", "more rows than bytes"));
        }
        let mut rows = Vec::new();
        for _ in 0..count {
            let key = read_bytes(buf)?;
            let value = read_bytes(buf)?;
            rows.push((key, value));
        }
        if !buf.0.is_empty() {
            return Err(CodecError::ExtraData(buf.0.len()));
        }
        State::from_rows(rows)
    }
}

type Header = (ContentId, Params, [u64; 5]);

/// A (lease, task) key.
fn per_task(k: &mut Copying<'_>) -> Result<(ContentId, u64), CodecError> {
    Ok((ContentId::read(k)?, u64::read(k)?))
}

fn read_header(v: &mut Copying<'_>) -> Result<Header, CodecError> {
    let chain = ContentId::read(v)?;
    let params = Params {
        stake_min: u64::read(v)?,
        unbonding_blocks: u64::read(v)?,
        fee_bps: u16::read(v)?,
        slash_bps: u16::read(v)?,
        slash_reward_bps: u16::read(v)?,
        judge_reward_bps: u16::read(v)?,
        reveal_window_ms: u64::read(v)?,
        challenge_bond: u64::read(v)?,
    };
    let counts = [
        u64::read(v)?,
        u64::read(v)?,
        u64::read(v)?,
        u64::read(v)?,
        u64::read(v)?,
    ];
    Ok((chain, params, counts))
}

fn write_bytes(buf: &mut impl BufMut, bytes: &[u8]) {
    (bytes.len() as u32).write(buf);
    buf.put_slice(bytes);
}

fn read_bytes<'a>(buf: &mut Copying<'a>) -> Result<&'a [u8], CodecError> {
    let len = u32::read(buf)? as usize;
    if buf.0.len() < len {
        return Err(CodecError::EndOfBuffer);
    }
    let (bytes, rest) = buf.0.split_at(len);
    buf.0 = rest;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Genesis;
    use cairn_wire::Keypair;

    fn state() -> State {
        let keys: Vec<_> = (0..3u8)
            .map(|i| Keypair::from_seed([i; 32]).public())
            .collect();
        Genesis::with_balances("snap", &keys, 77)
            .with_validators(&keys[..1])
            .state()
            .unwrap()
    }

    /// A block's changes are its rows and no others: a new state's are all
    /// of its rows; then a transfer to a new account changes the header and
    /// the two accounts' rows, even if the root was looked at before the
    /// store took them.
    #[test]
    fn a_block_changes_the_rows_it_wrote_and_no_others() {
        let mut state = state();
        let all: Vec<Change> = state
            .rows()
            .into_iter()
            .map(|(key, value)| Change {
                key,
                value: Some(value),
            })
            .collect();
        let mut first = state.take_changes();
        first.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(first, all);
        assert_eq!(state.take_changes().len(), 1, "the header only");

        let from = Keypair::from_seed([0; 32]);
        let newcomer = Keypair::from_seed([9; 32]).public();
        state.begin_block(1, 0);
        let tx = crate::TxBody {
            chain: state.chain(),
            nonce: 0,
            kind: crate::TxKind::Transfer {
                to: newcomer,
                amount: 5,
            },
        };
        state.apply(&crate::admit(tx.sign(&from)).unwrap()).unwrap();
        // A look at the root in between folds the rows in but keeps them
        // for the store.
        let root = state.root();
        let changed: Vec<Vec<u8>> = state.take_changes().into_iter().map(|c| c.key).collect();
        assert_eq!(state.root(), root);
        let account = |key: &PublicKey| account_row(key, &Account::default()).0;
        assert_eq!(
            changed.iter().collect::<BTreeSet<_>>(),
            BTreeSet::from([
                &vec![tag::HEADER],
                &account(&from.public()),
                &account(&newcomer)
            ])
        );
    }

    #[test]
    fn round_trip_and_corruption() {
        let mut state = state();
        let bytes = state.to_snapshot();
        let mut restored = State::from_snapshot(&bytes).unwrap();
        assert_eq!(restored, state);
        assert_eq!(restored.root(), state.root());
        assert!(State::from_snapshot(&bytes[..bytes.len() - 1]).is_err());
        // A snapshot that mints (one byte of an account's balance changed)
        // is refused.
        let rows = state.rows();
        let (i, _) = rows
            .iter()
            .enumerate()
            .find(|(_, (k, _))| k[0] == tag::ACCOUNT)
            .unwrap();
        let mut inflated = rows.clone();
        inflated[i].1[7] ^= 1;
        // A repeated row, a row of no table, a row with bytes left over and
        // rows without a header are refused too.
        let mut repeated = rows.clone();
        repeated.push(rows[i].clone());
        let mut unknown = rows.clone();
        unknown.push((vec![99, 1], Vec::new()));
        let mut longer = rows.clone();
        longer[i].1.push(0);
        let mut no_header = rows.clone();
        no_header.retain(|(k, _)| k[0] != tag::HEADER);
        for bad in [inflated, repeated, unknown, longer, no_header] {
            assert!(State::from_rows(bad.iter().map(|(k, v)| (&k[..], &v[..]))).is_err());
        }
    }
}
