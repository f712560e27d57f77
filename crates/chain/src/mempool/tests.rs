//! The mempool's limits and fairness, without signatures: bodies are
//! checked and inserted directly.

use cairn_ledger::{
    COMMIT_NAMESPACE, Capabilities, Commit, Genesis, Lease, State, TxBody, TxKind, admit,
};
use cairn_wire::{ContentId, Signed};
use cairn_wire::{Keypair, PublicKey};

use super::*;

fn keys(n: u8) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = (1..=n)
        .map(|i| Keypair::from_seed([i; 32]).public())
        .collect();
    keys.sort();
    keys
}

fn state(funded: &[PublicKey]) -> State {
    Genesis::with_balances("mempool", funded, 1_000_000)
        .state()
        .unwrap()
}

fn body(state: &State, nonce: u64) -> TxBody {
    TxBody {
        chain: state.chain(),
        nonce,
        kind: TxKind::Unstake { amount: 1 },
    }
}

/// Checks and inserts a transaction of `len` bytes.
fn offer(
    pool: &mut Mempool,
    state: &State,
    signer: PublicKey,
    nonce: u64,
    len: usize,
) -> Result<(), SubmitError> {
    let body = body(state, nonce);
    let admission = pool.check(state, signer, &body, len)?;
    pool.insert((signer, nonce), vec![0; len], admission);
    Ok(())
}

fn held(pool: &Mempool, signer: PublicKey) -> Vec<u64> {
    pool.sender_txs(signer).map(|((_, n), _)| *n).collect()
}

#[test]
fn a_full_pool_displaces_the_tail_of_the_largest_holder_down_to_a_fair_share() {
    let [a, b, c] = keys(3)[..] else {
        unreachable!()
    };
    let state = state(&[a, b, c]);
    let mut pool = Mempool::with_limits(10, MEMPOOL_BYTES_MAX);
    for nonce in 0..10 {
        offer(&mut pool, &state, a, nonce, 100).unwrap();
    }
    // B displaces A's last transactions, one at a time...
    for nonce in 0..5 {
        offer(&mut pool, &state, b, nonce, 100).unwrap();
    }
    assert_eq!(held(&pool, a), (0..5).collect::<Vec<_>>());
    // ...but not below its own share.
    assert!(matches!(
        offer(&mut pool, &state, b, 5, 100),
        Err(SubmitError::Full)
    ));
    // C, holding nothing, still gets in; the largest holder may not.
    offer(&mut pool, &state, c, 0, 100).unwrap();
    assert_eq!(pool.len(), 10);
    let largest = pool.by_count.last().unwrap().1;
    assert!(matches!(
        offer(&mut pool, &state, largest, 5, 100),
        Err(SubmitError::Full)
    ));
    // Replacing a held transaction needs no room.
    offer(&mut pool, &state, c, 0, 100).unwrap();
    assert_eq!(pool.len(), 10);
}

#[test]
fn a_pool_full_of_bytes_displaces_as_many_as_it_takes_or_none() {
    let [a, b] = keys(2)[..] else { unreachable!() };
    let state = state(&[a, b]);
    let mut pool = Mempool::with_limits(1_000, 10 * TX_BYTES_MAX);
    for nonce in 0..40 {
        offer(&mut pool, &state, a, nonce, TX_BYTES_MAX / 4).unwrap();
    }
    // One large transaction displaces four small ones.
    offer(&mut pool, &state, b, 0, TX_BYTES_MAX).unwrap();
    assert_eq!(held(&pool, a).len(), 36);
    assert_eq!(pool.bytes, 10 * TX_BYTES_MAX);
    // When the largest holder cannot make room without falling below the
    // newcomer's share, nothing is displaced.
    let mut pool = Mempool::with_limits(1_000, 2 * TX_BYTES_MAX);
    let quarter = TX_BYTES_MAX / 2;
    for nonce in 0..3 {
        offer(&mut pool, &state, a, nonce, quarter).unwrap();
    }
    offer(&mut pool, &state, b, 0, quarter).unwrap();
    assert!(matches!(
        offer(&mut pool, &state, b, 1, TX_BYTES_MAX),
        Err(SubmitError::Full)
    ));
    assert_eq!(held(&pool, a), vec![0, 1, 2]);
    assert_eq!(held(&pool, b), vec![0]);
}

#[test]
fn blocks_take_turns_across_senders_and_resume_where_the_last_one_stopped() {
    let senders = keys(5);
    let state = state(&senders);
    let mut pool = Mempool::default();
    for &signer in &senders {
        for nonce in 0..3 {
            offer(&mut pool, &state, signer, nonce, 100).unwrap();
        }
    }
    let none = BTreeSet::new();
    let taken = |pool: &mut Mempool, max| -> Vec<Vec<u8>> {
        pool.select(&state, max, MEMPOOL_BYTES_MAX, &none)
    };
    // Three transactions: the first three senders' first ones.
    assert_eq!(taken(&mut pool, 3).len(), 3);
    assert_eq!(pool.cursor, Some(senders[2]));
    // The next block starts with the fourth sender.
    pool.select(&state, 1, MEMPOOL_BYTES_MAX, &none);
    assert_eq!(pool.cursor, Some(senders[3]));
    // Bytes bound a block as well as the count.
    assert_eq!(pool.select(&state, 100, 250, &none).len(), 2);
    assert_eq!(pool.select(&state, 100, MEMPOOL_BYTES_MAX, &none).len(), 15);
}

#[test]
fn pruning_drops_used_nonces_and_keeps_the_books() {
    let pair = Keypair::from_seed([1; 32]);
    let a = pair.public();
    let b = Keypair::from_seed([2; 32]).public();
    let mut state = state(&[a, b]);
    let mut pool = Mempool::default();
    for nonce in 0..4 {
        offer(&mut pool, &state, a, nonce, 100).unwrap();
        offer(&mut pool, &state, b, nonce, 100).unwrap();
    }
    // A's first three transactions are applied elsewhere (say, in a block
    // proposed by another validator).
    state.begin_block(1, 0);
    for nonce in 0..3 {
        let tx = TxBody {
            chain: state.chain(),
            nonce,
            kind: TxKind::Transfer { to: b, amount: 1 },
        }
        .sign(&pair);
        state.apply(&cairn_ledger::admit(tx).unwrap()).unwrap();
    }
    pool.prune(&state);
    assert_eq!(held(&pool, a), vec![3]);
    assert_eq!(held(&pool, b), vec![0, 1, 2, 3]);
    assert_eq!(pool.bytes, 500);
    assert_eq!(
        pool.by_count.iter().copied().collect::<Vec<_>>(),
        vec![(1, a), (4, b)]
    );
    // What A's pruned transactions would have taken is no longer counted.
    assert_eq!(pool.senders[&a].debit, 0);
}

/// Applies `kind` signed by `key` to `state`.
fn apply(state: &mut State, key: &Keypair, kind: TxKind) {
    let body = TxBody {
        chain: state.chain(),
        nonce: state.account(&key.public()).nonce,
        kind,
    };
    state.apply(&admit(body.sign(key)).unwrap()).unwrap();
}

/// A provider that staked its whole balance, took a lease and then
/// unbonded everything has nothing left in its account, but is still
/// liable: a challenge against it may come, and it must be able to answer
/// (a reveal costs nothing), or it would be slashed for a silence the
/// mempool forced on it. Only that; and once nothing holds it liable, an
/// empty account is refused again.
#[test]
fn a_provider_with_nothing_but_liable_stake_may_still_reveal() {
    let requester = Keypair::from_seed([1; 32]);
    let provider = Keypair::from_seed([2; 32]);
    let idle = Keypair::from_seed([3; 32]);
    let mut state = Genesis::with_balances(
        "mempool",
        &[requester.public(), provider.public(), idle.public()],
        1_000_000_000,
    )
    .state()
    .unwrap();
    let stake = state.params().stake_min;
    for key in [&provider, &idle] {
        apply(
            &mut state,
            key,
            TxKind::RegisterProvider {
                capabilities: Capabilities {
                    cores: 2,
                    memory_mib: 4096,
                    gpus: 0,
                    score: 10,
                },
                endpoint: "/ip4/127.0.0.1/tcp/7000".into(),
                stake,
            },
        );
    }
    let job = ContentId::of(b"job");
    apply(
        &mut state,
        &requester,
        TxKind::OpenEscrow { job, amount: 1_000 },
    );
    let lease = Lease {
        job,
        requester: requester.public(),
        provider: provider.public(),
        price_ucairn_per_gfuel: 1_000,
        fuel_per_task_max: 1_000_000,
        expires_height: 10,
    };
    let provider_signature = lease.sign(&provider);
    apply(
        &mut state,
        &requester,
        TxKind::RecordLease {
            lease,
            provider_signature,
        },
    );
    for key in [&provider, &idle] {
        apply(&mut state, key, TxKind::Unstake { amount: stake });
        assert_eq!(state.account(&key.public()).balance, 0);
    }
    let pool = Mempool::default();
    let tx = |key: &Keypair, kind: TxKind| TxBody {
        chain: state.chain(),
        nonce: state.account(&key.public()).nonce,
        kind,
    };
    let reveal = || TxKind::Reveal {
        receipts: Vec::new(),
    };
    pool.check(&state, provider.public(), &tx(&provider, reveal()), 100)
        .expect("a liable provider may answer");
    // Only answer: anything else waits until it has a balance again.
    assert!(matches!(
        pool.check(
            &state,
            provider.public(),
            &tx(&provider, TxKind::Unstake { amount: 1 }),
            100
        ),
        Err(SubmitError::Unfunded(_))
    ));
    assert!(matches!(
        pool.check(&state, idle.public(), &tx(&idle, reveal()), 100),
        Err(SubmitError::Unfunded(_))
    ));
}

/// A challenge locks a bond from its signer's balance: a requester cannot
/// queue more challenges than its balance can bond (each would be refused
/// in its block, after taking the mempool's room).
#[test]
fn queued_challenges_must_each_be_bondable() {
    let [requester] = keys(1)[..] else {
        unreachable!()
    };
    let provider = Keypair::from_seed([9; 32]);
    let state = state(&[requester]);
    let bond = state.params().challenge_bond;
    let balance = state.account(&requester).balance;
    let mut pool = Mempool::default();
    let challenge = |nonce: u64| TxBody {
        chain: state.chain(),
        nonce,
        kind: TxKind::Challenge {
            commit: Signed::sign(
                &provider,
                COMMIT_NAMESPACE,
                Commit {
                    lease: ContentId::of(b"lease"),
                    task: nonce,
                    commitment: [0; 32],
                },
            ),
        },
    };
    let bondable = balance / bond;
    for nonce in 0..bondable.min(SENDER_PENDING_MAX - 1) {
        let admission = pool
            .check(&state, requester, &challenge(nonce), 100)
            .unwrap();
        pool.insert((requester, nonce), vec![0; 100], admission);
    }
    assert!(
        bondable < SENDER_PENDING_MAX,
        "the test's balance bonds {bondable}"
    );
    assert!(matches!(
        pool.check(&state, requester, &challenge(bondable), 100),
        Err(SubmitError::CannotPay { .. })
    ));
}
