//! The whole state as bytes, for storage: a node persists a snapshot with
//! each block it applies and loads it on restart.

use bytes::BufMut;
use cairn_wire::codec::{Copying, Error as CodecError, ReadExt, Write};
use cairn_wire::{ContentId, PublicKey, text};

use crate::tx::{Capabilities, ENDPOINT_BYTES_MAX, Lease};
use crate::{Account, Escrow, Params, Provider, Reputation, State};

/// Version of the snapshot format.
const SNAPSHOT_VERSION: u8 = 4;

impl State {
    /// The canonical bytes of the whole state.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        SNAPSHOT_VERSION.write(&mut buf);
        self.chain.write(&mut buf);
        let p = &self.params;
        p.stake_min.write(&mut buf);
        p.unbonding_blocks.write(&mut buf);
        p.fee_bps.write(&mut buf);
        p.slash_bps.write(&mut buf);
        p.slash_reward_bps.write(&mut buf);
        self.height.write(&mut buf);
        self.supply.write(&mut buf);
        self.fee_pool.write(&mut buf);
        self.burned.write(&mut buf);
        (self.validators.len() as u64).write(&mut buf);
        for key in &self.validators {
            key.write(&mut buf);
        }
        write_map(&mut buf, &self.accounts, |buf, k, a| {
            k.write(buf);
            a.balance.write(buf);
            a.nonce.write(buf);
        });
        write_map(&mut buf, &self.providers, |buf, k, p| {
            k.write(buf);
            p.stake.write(buf);
            p.capabilities.write(buf);
            text::write(&p.endpoint, buf);
            p.reputation.tasks_settled.write(buf);
            p.reputation.fuel_settled.write(buf);
            p.reputation.slashes.write(buf);
            p.liable_until.write(buf);
        });
        write_map(&mut buf, &self.unbonding, |buf, (height, k), amount| {
            height.write(buf);
            k.write(buf);
            amount.write(buf);
        });
        write_map(&mut buf, &self.escrows, |buf, job, e| {
            job.write(buf);
            e.owner.write(buf);
            e.balance.write(buf);
            e.leases_until.write(buf);
            e.closing.write(buf);
        });
        write_map(&mut buf, &self.leases, |buf, _, lease| lease.write(buf));
        write_map(&mut buf, &self.settled, |buf, (lease, task), paid| {
            lease.write(buf);
            task.write(buf);
            paid.write(buf);
        });
        write_set(&mut buf, &self.slashed);
        write_set(&mut buf, &self.clawed);
        write_map(
            &mut buf,
            &self.challenges,
            |buf, (lease, task), (commitment, deadline)| {
                lease.write(buf);
                task.write(buf);
                commitment.write(buf);
                deadline.write(buf);
            },
        );
        buf
    }

    /// Reads a snapshot written by [`State::to_snapshot`].
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, CodecError> {
        let buf = &mut Copying(bytes);
        if u8::read(buf)? != SNAPSHOT_VERSION {
            return Err(CodecError::Invalid("snapshot", "unknown version"));
        }
        let chain = ContentId::read(buf)?;
        let params = Params {
            stake_min: u64::read(buf)?,
            unbonding_blocks: u64::read(buf)?,
            fee_bps: u16::read(buf)?,
            slash_bps: u16::read(buf)?,
            slash_reward_bps: u16::read(buf)?,
        };
        let mut state = State::empty(chain, params);
        state.height = u64::read(buf)?;
        state.supply = u64::read(buf)?;
        state.fee_pool = u64::read(buf)?;
        state.burned = u64::read(buf)?;
        for _ in 0..u64::read(buf)? {
            state.validators.insert(PublicKey::read(buf)?);
        }
        for _ in 0..u64::read(buf)? {
            let key = PublicKey::read(buf)?;
            let account = Account {
                balance: u64::read(buf)?,
                nonce: u64::read(buf)?,
            };
            state.accounts.insert(key, account);
        }
        for _ in 0..u64::read(buf)? {
            let key = PublicKey::read(buf)?;
            let provider = Provider {
                stake: u64::read(buf)?,
                capabilities: Capabilities::read(buf)?,
                endpoint: text::read(buf, ENDPOINT_BYTES_MAX)?,
                reputation: Reputation {
                    tasks_settled: u64::read(buf)?,
                    fuel_settled: u64::read(buf)?,
                    slashes: u64::read(buf)?,
                },
                liable_until: u64::read(buf)?,
            };
            state.providers.insert(key, provider);
        }
        for _ in 0..u64::read(buf)? {
            let height = u64::read(buf)?;
            let key = PublicKey::read(buf)?;
            state.unbonding.insert((height, key), u64::read(buf)?);
        }
        for _ in 0..u64::read(buf)? {
            let job = ContentId::read(buf)?;
            let escrow = Escrow {
                owner: PublicKey::read(buf)?,
                balance: u64::read(buf)?,
                leases_until: u64::read(buf)?,
                closing: bool::read(buf)?,
            };
            state.escrows.insert(job, escrow);
        }
        for _ in 0..u64::read(buf)? {
            let lease = Lease::read(buf)?;
            state.schedule_forgetting(lease.id(), &lease);
            state.leases.insert(lease.id(), lease);
        }
        for _ in 0..u64::read(buf)? {
            let key = (ContentId::read(buf)?, u64::read(buf)?);
            state.settled.insert(key, u64::read(buf)?);
        }
        for _ in 0..u64::read(buf)? {
            state
                .slashed
                .insert((ContentId::read(buf)?, u64::read(buf)?));
        }
        for _ in 0..u64::read(buf)? {
            state
                .clawed
                .insert((ContentId::read(buf)?, u64::read(buf)?));
        }
        for _ in 0..u64::read(buf)? {
            let key = (ContentId::read(buf)?, u64::read(buf)?);
            let value = (<[u8; 32]>::read(buf)?, u64::read(buf)?);
            state.challenges.insert(key, value);
        }
        if !buf.0.is_empty() {
            return Err(CodecError::ExtraData(buf.0.len()));
        }
        if state.total_accounted() != u128::from(state.supply) {
            return Err(CodecError::Invalid("snapshot", "supply does not add up"));
        }
        Ok(state)
    }
}

fn write_map<K, V>(
    buf: &mut Vec<u8>,
    map: &std::collections::BTreeMap<K, V>,
    mut entry: impl FnMut(&mut Vec<u8>, &K, &V),
) {
    (map.len() as u64).write(buf);
    for (k, v) in map {
        entry(buf, k, v);
    }
}

fn write_set(buf: &mut impl BufMut, set: &std::collections::BTreeSet<(ContentId, u64)>) {
    (set.len() as u64).write(buf);
    for (id, n) in set {
        id.write(buf);
        n.write(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Genesis;
    use cairn_wire::Keypair;

    #[test]
    fn round_trip_and_corruption() {
        let keys: Vec<_> = (0..3u8)
            .map(|i| Keypair::from_seed([i; 32]).public())
            .collect();
        let state = Genesis::with_balances("snap", &keys, 77)
            .with_validators(&keys[..1])
            .state()
            .unwrap();
        let bytes = state.to_snapshot();
        assert_eq!(State::from_snapshot(&bytes).unwrap(), state);
        assert!(State::from_snapshot(&bytes[..bytes.len() - 1]).is_err());
        let mut inflated = bytes.clone();
        // The first account's balance (after the header, one validator and
        // the account count): a snapshot that mints is refused.
        let offset = 1 + 32 + 8 + 8 + 2 + 2 + 2 + 8 + 8 + 8 + 8 + (8 + 32) + 8 + 32;
        inflated[offset + 7] ^= 1;
        assert!(State::from_snapshot(&inflated).is_err());
    }
}
