//! Values at the ends of their ranges: heights, nonces, amounts, prices and
//! fuel near `u64::MAX` are refused or handled, never wrapped or panicked on.
//! Heights and nonces cannot get there by counting, so these tests put the
//! state there directly.

use cairn_wire::{ContentId, Keypair, Signed};
use proptest::prelude::*;

use super::*;
use crate::{ACCEPTANCE_NAMESPACE, Genesis, TxBody, admit};

const CAPABILITIES: Capabilities = Capabilities {
    cores: 1,
    memory_mib: 1,
    gpus: 0,
    score: 1,
};

struct World {
    state: State,
    requester: Keypair,
    provider: Keypair,
}

impl World {
    /// A requester and a registered provider, with a quarter of the largest
    /// supply each, so every sum stays within reach of the top.
    fn new() -> Self {
        let requester = Keypair::from_seed([1; 32]);
        let provider = Keypair::from_seed([2; 32]);
        let state = Genesis::with_balances(
            "extremes",
            &[requester.public(), provider.public()],
            u64::MAX / 4,
        )
        .state()
        .unwrap();
        let mut world = Self {
            state,
            requester,
            provider,
        };
        let stake = world.state.params.stake_min;
        world
            .send(
                false,
                TxKind::RegisterProvider {
                    capabilities: CAPABILITIES,
                    endpoint: String::new(),
                    stake,
                },
            )
            .unwrap();
        world
    }

    /// Applies `kind` signed by the requester (or the provider), checking
    /// that a refusal changed nothing and that the supply is conserved.
    fn send(&mut self, by_requester: bool, kind: TxKind) -> Result<(), TxError> {
        let key = if by_requester {
            &self.requester
        } else {
            &self.provider
        };
        let tx = TxBody {
            chain: self.state.chain,
            nonce: self.state.account(&key.public()).nonce,
            kind,
        }
        .sign(key);
        let before = self.state.clone();
        let result = self.state.apply(&admit(tx).unwrap()).map(drop);
        if result.is_err() {
            assert_eq!(self.state, before, "a refusal changed the state");
        }
        assert_eq!(
            self.state.total_accounted(),
            u128::from(self.state.supply())
        );
        result
    }

    fn lease(&self, job: ContentId, price: Amount, fuel_max: u64, expires: u64) -> Lease {
        Lease {
            job,
            requester: self.requester.public(),
            provider: self.provider.public(),
            price_ucairn_per_gfuel: price,
            fuel_per_task_max: fuel_max,
            expires_height: expires,
        }
    }

    /// Opens `job`'s escrow with `amount`, moves to block 1 and records a
    /// lease on it at `price`, up to `fuel_max` a task, until `expires`.
    fn escrowed_lease(
        &mut self,
        job: ContentId,
        amount: Amount,
        price: Amount,
        fuel_max: u64,
        expires: u64,
    ) -> Lease {
        self.send(true, TxKind::OpenEscrow { job, amount }).unwrap();
        self.state.begin_block(1, 0);
        let lease = self.lease(job, price, fuel_max, expires);
        let provider_signature = lease.sign(&self.provider);
        self.send(
            true,
            TxKind::RecordLease {
                lease: lease.clone(),
                provider_signature,
            },
        )
        .unwrap();
        lease
    }

    /// A claim of the requester's acceptance of `results` (task, fuel)
    /// under `lease`.
    fn claim(&self, lease: &Lease, results: &[(u64, u64)]) -> TxKind {
        TxKind::Claim {
            acceptances: vec![self.acceptance(lease, results)],
        }
    }

    /// The requester's acceptance of `results` (task, fuel) under `lease`.
    fn acceptance(&self, lease: &Lease, results: &[(u64, u64)]) -> Signed<Acceptance> {
        Signed::sign(
            &self.requester,
            ACCEPTANCE_NAMESPACE,
            Acceptance {
                lease: lease.clone(),
                results: results
                    .iter()
                    .map(|&(task, fuel_used)| crate::Accepted {
                        task,
                        digest: ContentId::of(&[0]),
                        fuel_used,
                    })
                    .collect(),
            },
        )
    }
}

#[test]
fn the_last_height_releases_unbonding_stake_without_wrapping() {
    let mut world = World::new();
    let provider = world.provider.public();
    world.state.begin_block(u64::MAX - 10, 0);
    world.state.params.unbonding_blocks = 10;
    world.send(false, TxKind::Unstake { amount: 7 }).unwrap();
    assert_eq!(world.state.unbonding_of(&provider), 7);
    let balance = world.state.account(&provider).balance;
    world.state.begin_block(u64::MAX, 0);
    assert_eq!(world.state.unbonding_of(&provider), 0);
    assert_eq!(world.state.account(&provider).balance, balance + 7);
    assert_eq!(
        world.state.total_accounted(),
        u128::from(world.state.supply())
    );
}

#[test]
fn unbonding_past_the_last_height_is_refused() {
    let mut world = World::new();
    world.state.begin_block(u64::MAX - 1, 0);
    assert_eq!(
        world.send(false, TxKind::Unstake { amount: 1 }),
        Err(TxError::Overflow("release height"))
    );
}

#[test]
fn the_last_nonce_is_refused_rather_than_wrapped_to_zero() {
    let mut world = World::new();
    let requester = world.requester.public();
    world.state.accounts.get_mut(&requester).unwrap().nonce = u64::MAX;
    let to = world.provider.public();
    assert_eq!(
        world.send(true, TxKind::Transfer { to, amount: 1 }),
        Err(TxError::Overflow("nonce"))
    );
    assert_eq!(world.state.account(&requester).nonce, u64::MAX);
}

#[test]
fn a_payment_above_the_largest_amount_is_refused_whole() {
    let mut world = World::new();
    let job = ContentId::of(b"job");
    let lease = world.escrowed_lease(job, 1_000, u64::MAX, u64::MAX, 100);
    // u64::MAX fuel at u64::MAX per 10^9 fuel is far above any amount.
    let claim = world.claim(&lease, &[(0, 1), (1, u64::MAX)]);
    assert_eq!(world.send(true, claim), Err(TxError::Overflow("payment")));
    // A lease that never expires still ends after the notice once its
    // escrow is closing.
    world.send(true, TxKind::CloseEscrow { job }).unwrap();
    assert_eq!(
        world.send(true, TxKind::CloseEscrow { job }),
        Err(TxError::LeasesOutstanding {
            until: world.state.height() + crate::CLOSE_NOTICE_BLOCKS
        })
    );
}

/// A result whose payment a conviction took back is paid nothing more,
/// even on an acceptance of more fuel. Once the lease its provider was slashed
/// under is forgotten, nothing else marks that provider, while what was
/// clawed back under a lease that lives longer stays: the clawback's own
/// mark is then the only guard.
#[test]
fn a_result_whose_payment_was_taken_back_is_not_paid_again() {
    let mut world = World::new();
    let job = ContentId::of(b"job");
    let lease = world.escrowed_lease(job, 1_000_000, 1_000, 10_000_000_000, 100);
    let settle = |world: &mut World, fuel| {
        let claim = world.claim(&lease, &[(0, fuel)]);
        world.send(true, claim).unwrap();
    };
    settle(&mut world, 1_000_000_000);
    assert_eq!(world.state.paid_fuel(&lease.id(), 0), Some(1_000_000_000));
    // More fuel pays the difference...
    settle(&mut world, 2_000_000_000);
    assert_eq!(world.state.paid_fuel(&lease.id(), 0), Some(2_000_000_000));
    // ...unless a conviction took the payment back (its clawback, put here
    // directly).
    world.state.clawed.extend([(lease.id(), 0)]);
    let balance = world.state.account(&world.provider.public()).balance;
    settle(&mut world, 3_000_000_000);
    assert_eq!(world.state.paid_fuel(&lease.id(), 0), Some(2_000_000_000));
    assert_eq!(
        world.state.account(&world.provider.public()).balance,
        balance
    );
}

#[derive(Clone, Debug)]
enum Op {
    NextBlock(u64),
    Transfer(Amount),
    Stake(Amount),
    Unstake(Amount),
    Open(u8, Amount),
    TopUp(u8, Amount),
    Close(u8),
    Lease {
        job: u8,
        price: Amount,
        fuel_max: u64,
        expires: u64,
    },
    Claim {
        job: u8,
        task: u64,
        fuel: u64,
    },
    Challenge(u64),
}

/// Values that sit at the edges of `u64` (and a few ordinary ones).
fn edge() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(u64::MAX / 2),
        Just(u64::MAX / 4 + 1),
        1u64..1_000_000,
        any::<u64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let job = 0u8..3;
    prop_oneof![
        edge().prop_map(Op::NextBlock),
        edge().prop_map(Op::Transfer),
        edge().prop_map(Op::Stake),
        edge().prop_map(Op::Unstake),
        (job.clone(), edge()).prop_map(|(j, a)| Op::Open(j, a)),
        (job.clone(), edge()).prop_map(|(j, a)| Op::TopUp(j, a)),
        job.clone().prop_map(Op::Close),
        (job.clone(), edge(), edge(), edge()).prop_map(|(job, price, fuel_max, expires)| {
            Op::Lease {
                job,
                price,
                fuel_max,
                expires,
            }
        }),
        (job, edge(), edge()).prop_map(|(job, task, fuel)| Op::Claim { job, task, fuel }),
        edge().prop_map(Op::Challenge),
    ]
}

proptest! {
    /// From any height, with any unbonding delay, under any sequence of
    /// transactions whose amounts, prices, fuel and heights sit at the edges
    /// of their range: nothing panics, refusals change nothing, and the
    /// supply is conserved.
    #[test]
    fn edge_values_are_refused_or_applied_never_wrapped(
        start in edge(),
        unbonding_blocks in edge(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let mut world = World::new();
        world.state.params.unbonding_blocks = unbonding_blocks;
        if start > 0 {
            world.state.begin_block(start, 0);
        }
        let mut leases: Vec<Lease> = Vec::new();
        let to = world.provider.public();
        for op in ops {
            // Results are not checked here: `send` checks that a refusal
            // changed nothing and that the supply holds after each step.
            let _ = match op {
                Op::NextBlock(delta) => {
                    let height = world.state.height.saturating_add(delta.max(1));
                    if height > world.state.height {
                        world.state.begin_block(height, 0);
                    }
                    Ok(())
                }
                Op::Transfer(amount) => world.send(true, TxKind::Transfer { to, amount }),
                Op::Stake(amount) => world.send(false, TxKind::Stake { amount }),
                Op::Unstake(amount) => world.send(false, TxKind::Unstake { amount }),
                Op::Open(j, amount) => {
                    world.send(true, TxKind::OpenEscrow { job: ContentId::of(&[j]), amount })
                }
                Op::TopUp(j, amount) => {
                    world.send(true, TxKind::TopUpEscrow { job: ContentId::of(&[j]), amount })
                }
                Op::Close(j) => world.send(true, TxKind::CloseEscrow { job: ContentId::of(&[j]) }),
                Op::Lease { job, price, fuel_max, expires } => {
                    let lease = world.lease(ContentId::of(&[job]), price, fuel_max, expires);
                    let provider_signature = lease.sign(&world.provider);
                    let result = world.send(
                        true,
                        TxKind::RecordLease { lease: lease.clone(), provider_signature },
                    );
                    if result.is_ok() {
                        leases.push(lease);
                    }
                    result
                }
                Op::Claim { job, task, fuel } => {
                    let job = ContentId::of(&[job]);
                    let acceptances = leases
                        .iter()
                        .filter(|l| l.job == job)
                        .map(|l| world.acceptance(l, &[(task, fuel)]))
                        .collect();
                    world.send(true, TxKind::Claim { acceptances })
                }
                Op::Challenge(task) => match leases.first() {
                    Some(lease) => {
                        let commit = Signed::sign(
                            &world.provider,
                            crate::COMMIT_NAMESPACE,
                            crate::Commit {
                                lease: lease.id(),
                                task,
                                commitment: [0; 32],
                            },
                        );
                        world.send(true, TxKind::Challenge { commit })
                    }
                    None => Ok(()),
                },
            };
        }
    }
}
