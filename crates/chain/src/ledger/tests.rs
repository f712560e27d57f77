//! Admission and block filling against senders who try to take more than
//! their share: the mempool squatter (many future nonces, with or without
//! funds) and the block hog (one funded key, or many, with many
//! transactions).

use std::collections::{BTreeMap, BTreeSet};

use cairn_ledger::{Genesis, TxBody, TxError, TxKind};
use cairn_wire::{ContentId, Keypair, PublicKey};

use super::*;
use crate::TXS_PER_BLOCK_MAX;

fn key(seed: u16) -> Keypair {
    let mut bytes = [0; 32];
    bytes[..2].copy_from_slice(&seed.to_le_bytes());
    bytes[31] = 1;
    Keypair::from_seed(bytes)
}

/// A ledger where each of `funded` holds 1,000,000 µCAIRN.
fn ledger(funded: &[&Keypair]) -> Ledger {
    let publics: Vec<PublicKey> = funded.iter().map(|k| k.public()).collect();
    let genesis = Genesis::with_balances("mempool", &publics, 1_000_000)
        .state()
        .unwrap();
    Ledger::open(genesis, None).unwrap()
}

fn transfer(chain: ContentId, from: &Keypair, nonce: u64, to: PublicKey) -> Vec<u8> {
    TxBody {
        chain,
        nonce,
        kind: TxKind::Transfer { to, amount: 1 },
    }
    .sign(from)
    .to_bytes()
}

/// Signers of the transactions in `block`, in order, with their nonces.
fn senders(block: &[Vec<u8>]) -> Vec<(PublicKey, u64)> {
    block
        .iter()
        .map(|bytes| {
            let tx = cairn_ledger::decode(bytes).unwrap();
            (tx.signer(), tx.payload_unchecked().nonce)
        })
        .collect()
}

#[test]
fn mempool_squatter_without_funds_gets_nothing_admitted() {
    let honest = key(1);
    let squatter = key(2);
    let ledger = ledger(&[&honest]);
    let chain = ledger.chain();
    for nonce in 0..3_000 {
        let result = ledger.submit(transfer(chain, &squatter, nonce, honest.public()));
        assert!(
            matches!(result, Err(SubmitError::Unfunded(k)) if k == squatter.public()),
            "nonce {nonce}: {result:?}"
        );
    }
    assert_eq!(ledger.pending(), 0);
    // The refusal is a lookup: a forged signature is never looked at.
    let mut forged = transfer(chain, &squatter, 0, honest.public());
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(matches!(
        ledger.submit(forged),
        Err(SubmitError::Unfunded(_))
    ));
    // While a funded sender's forgery reaches the signature check.
    let mut forged = transfer(chain, &honest, 0, squatter.public());
    forged[last] ^= 1;
    assert!(matches!(
        ledger.submit(forged),
        Err(SubmitError::Refused(TxError::BadSignature(_)))
    ));
}

#[test]
fn mempool_squatter_with_funds_holds_at_most_its_window() {
    let squatter = key(3);
    let other = key(4);
    let ledger = ledger(&[&squatter, &other]);
    let chain = ledger.chain();
    let mut admitted = 0;
    // Future nonces only: nonce 0 is never sent.
    for nonce in 1..3_000 {
        match ledger.submit(transfer(chain, &squatter, nonce, other.public())) {
            Ok(()) => admitted += 1,
            Err(SubmitError::NonceTooFar { next: 0, found }) => {
                assert_eq!(found, nonce);
                assert!(nonce >= SENDER_PENDING_MAX);
            }
            Err(e) => panic!("nonce {nonce}: {e}"),
        }
    }
    assert_eq!(admitted, SENDER_PENDING_MAX - 1);
    assert_eq!(ledger.pending() as u64, SENDER_PENDING_MAX - 1);
    // None of them can apply before nonce 0, so none takes block space.
    assert!(
        ledger
            .select(TXS_PER_BLOCK_MAX, &BTreeSet::new())
            .is_empty()
    );
    // Nonce 0 unblocks the whole run, in order.
    ledger
        .submit(transfer(chain, &squatter, 0, other.public()))
        .unwrap();
    let block = senders(&ledger.select(TXS_PER_BLOCK_MAX, &BTreeSet::new()));
    let nonces: Vec<u64> = block.iter().map(|(_, n)| *n).collect();
    assert_eq!(nonces, (0..SENDER_PENDING_MAX).collect::<Vec<_>>());
}

#[test]
fn a_sender_cannot_queue_more_than_its_balance() {
    let spender = key(5);
    let other = key(6);
    let ledger = ledger(&[&spender]);
    let chain = ledger.chain();
    let send = |nonce, amount| {
        ledger.submit(
            TxBody {
                chain,
                nonce,
                kind: TxKind::Transfer {
                    to: other.public(),
                    amount,
                },
            }
            .sign(&spender)
            .to_bytes(),
        )
    };
    send(0, 600_000).unwrap();
    assert!(matches!(
        send(1, 500_000),
        Err(SubmitError::CannotPay {
            needed: 1_100_000,
            available: 1_000_000
        })
    ));
    // Replacing a queued transaction frees what it would have taken.
    send(0, 400_000).unwrap();
    send(1, 600_000).unwrap();
    assert_eq!(ledger.pending(), 2);
    assert!(matches!(
        send(2, u64::MAX),
        Err(SubmitError::CannotPay { .. })
    ));
}

#[test]
fn block_hog_does_not_starve_another_sender() {
    // Key order used to decide who went first: make the hog's key the
    // smaller, as it was in the attack.
    let (mut hog, mut victim) = (key(7), key(8));
    if hog.public() > victim.public() {
        std::mem::swap(&mut hog, &mut victim);
    }
    let ledger = ledger(&[&hog, &victim]);
    let chain = ledger.chain();
    for nonce in 0..3_000 {
        let _ = ledger.submit(transfer(chain, &hog, nonce, victim.public()));
    }
    ledger
        .submit(transfer(chain, &victim, 0, hog.public()))
        .unwrap();
    let block = senders(&ledger.select(TXS_PER_BLOCK_MAX, &BTreeSet::new()));
    assert!(
        block.contains(&(victim.public(), 0)),
        "the other sender's transaction is in the next block"
    );
    // Even a block with room for two takes one from each.
    let block = senders(&ledger.select(2, &BTreeSet::new()));
    assert!(block.contains(&(victim.public(), 0)), "{block:?}");
}

#[test]
fn block_hogs_with_more_than_a_block_share_it_round_robin() {
    // 20 funded hogs queue their full window: 1,280 transactions, more
    // than a block; the victim's key sorts after all of theirs.
    let mut keys: Vec<Keypair> = (100..121).map(key).collect();
    keys.sort_by_key(Keypair::public);
    let victim = keys.pop().unwrap();
    let hogs = keys;
    let funded: Vec<&Keypair> = hogs.iter().chain([&victim]).collect();
    let ledger = ledger(&funded);
    let chain = ledger.chain();
    for hog in &hogs {
        for nonce in 0..SENDER_PENDING_MAX {
            ledger
                .submit(transfer(chain, hog, nonce, victim.public()))
                .unwrap();
        }
    }
    ledger
        .submit(transfer(chain, &victim, 0, hogs[0].public()))
        .unwrap();
    let first = senders(&ledger.select(TXS_PER_BLOCK_MAX, &BTreeSet::new()));
    assert_eq!(first.len(), TXS_PER_BLOCK_MAX);
    assert!(first.contains(&(victim.public(), 0)));
    // Each sender's transactions in nonce order, and the first round takes
    // one from every sender.
    let mut next: BTreeMap<PublicKey, u64> = BTreeMap::new();
    for (signer, nonce) in &first {
        let expected = next.entry(*signer).or_default();
        assert_eq!(nonce, expected, "{signer}'s transactions out of order");
        *expected += 1;
    }
    let round: BTreeSet<PublicKey> = first[..funded.len()].iter().map(|(s, _)| *s).collect();
    assert_eq!(round.len(), funded.len());
    // The next block (the first not yet final) takes the rest.
    let exclude: BTreeSet<_> = first.iter().copied().collect();
    let second = senders(&ledger.select(TXS_PER_BLOCK_MAX, &exclude));
    assert_eq!(
        first.len() + second.len(),
        hogs.len() * SENDER_PENDING_MAX as usize + 1
    );
    assert!(second.iter().all(|tx| !exclude.contains(tx)));
}

#[test]
fn a_transaction_refused_in_a_block_takes_its_nonce_and_the_next_one_applies() {
    let sender = key(1);
    let other = key(2);
    let ledger = ledger(&[&sender]);
    let chain = ledger.chain();
    // Admitted (it takes nothing from the balance), refused when applied:
    // there is no such escrow.
    let doomed = TxBody {
        chain,
        nonce: 0,
        kind: TxKind::CloseEscrow {
            job: ContentId::of(b"no such job"),
        },
    }
    .sign(&sender)
    .to_bytes();
    let next = transfer(chain, &sender, 1, other.public());
    ledger.submit(doomed.clone()).unwrap();
    ledger.submit(next.clone()).unwrap();
    let height = ledger.seal_alone(1).unwrap();
    assert_eq!(height, 1);

    let refused = ledger.outcome(&sender.public(), 0).unwrap();
    assert_eq!(refused.tx, ContentId::of(&doomed));
    assert!(
        matches!(&refused.outcome, TxOutcome::Refused(1, reason) if reason.contains("no open escrow")),
        "{refused:?}"
    );
    let applied = ledger.outcome(&sender.public(), 1).unwrap();
    assert_eq!(
        applied,
        TxRecord {
            tx: ContentId::of(&next),
            outcome: TxOutcome::Applied(1)
        }
    );
    ledger.view(|state| {
        assert_eq!(state.account(&sender.public()).nonce, 2);
        assert_eq!(state.account(&other.public()).balance, 1);
    });
    assert_eq!(ledger.pending(), 0);
    // Blocks sealed alone chain on each other.
    assert_eq!(ledger.seal_alone(2).unwrap(), 2);
    assert_ne!(
        ledger.block(2).unwrap().digest,
        ledger.block(1).unwrap().digest
    );
}

/// A ledger kept in a store writes only what each block changed, and
/// reopened it has the same state and root as the one that kept running,
/// whichever rows those blocks added, changed or removed.
#[test]
fn a_reopened_store_holds_the_state_and_root_its_blocks_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let keys: Vec<Keypair> = (1..=4).map(key).collect();
    let publics: Vec<PublicKey> = keys.iter().map(|k| k.public()).collect();
    let genesis = Genesis::with_balances("store", &publics, 1_000_000)
        .state()
        .unwrap();
    let ledger = Ledger::open(genesis.clone(), Some(StateStore::open(&path).unwrap())).unwrap();
    let chain = ledger.chain();
    let newcomer = key(9).public();
    for (block, (nonce, from)) in [(0, &keys[0]), (0, &keys[1]), (1, &keys[0])]
        .into_iter()
        .enumerate()
    {
        ledger
            .submit(transfer(chain, from, nonce, newcomer))
            .unwrap();
        ledger.seal_alone(block as u64 + 1).unwrap();
    }
    // An escrow opened and closed again (its row added, then removed), and
    // one left open.
    let sign = |nonce, kind| TxBody { chain, nonce, kind }.sign(&keys[2]).to_bytes();
    let (gone, open) = (ContentId::of(b"closed job"), ContentId::of(b"open job"));
    for (nonce, kind) in [
        (
            0,
            TxKind::OpenEscrow {
                job: gone,
                amount: 10,
            },
        ),
        (
            1,
            TxKind::OpenEscrow {
                job: open,
                amount: 20,
            },
        ),
        (2, TxKind::CloseEscrow { job: gone }),
    ] {
        ledger.submit(sign(nonce, kind)).unwrap();
        ledger.seal_alone(nonce + 4).unwrap();
    }
    ledger.view(|state| {
        assert!(state.escrow(&gone).is_none());
        assert!(state.escrow(&open).is_some());
    });
    let (height, root) = ledger.head();
    assert_eq!(height, 6);
    let kept = ledger.state();
    drop(ledger);

    let reopened = Ledger::open(genesis, Some(StateStore::open(&path).unwrap())).unwrap();
    assert_eq!(reopened.head(), (height, root));
    assert_eq!(reopened.state(), kept);
    reopened.view(|state| {
        assert_eq!(state.account(&newcomer).balance, 3);
        assert!(state.escrow(&gone).is_none(), "a removed row stays removed");
        assert_eq!(state.escrow(&open).map(|e| e.balance), Some(20));
    });
}

/// A store written by a release that kept the state as one snapshot is
/// refused with what to do, not read as an empty ledger.
#[test]
fn a_store_of_the_old_snapshot_format_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let old: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("ledger_state");
        txn.open_table(old).unwrap().insert(0, &[4u8][..]).unwrap();
        txn.commit().unwrap();
    }
    let genesis = Genesis::with_balances("store", &[key(1).public()], 1)
        .state()
        .unwrap();
    let Err(e) = Ledger::open(genesis, Some(StateStore::open(&path).unwrap())) else {
        panic!("an old store was opened");
    };
    assert!(e.to_string().contains("remove it"), "{e}");
}

/// Rows of another format (or of none, as every store had before rows
/// carried one) are refused by name, not decoded into a wrong state; the
/// store's own rows reopen.
#[test]
fn rows_of_another_format_are_refused_and_the_stores_own_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let genesis = Genesis::with_balances("store", &[key(1).public()], 1)
        .state()
        .unwrap();
    {
        let mut state = genesis.clone();
        let store = StateStore::open(&path).unwrap();
        store.save(&state.take_changes()).unwrap();
    }
    assert!(Ledger::open(genesis.clone(), Some(StateStore::open(&path).unwrap())).is_ok());
    let set_format = |format: Option<u8>| {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&[u8], &[u8]> =
                redb::TableDefinition::new("ledger_meta");
            let mut meta = txn.open_table(meta).unwrap();
            match format {
                Some(v) => meta.insert(&b"row_version"[..], &[v][..]).map(drop),
                None => meta.remove(&b"row_version"[..]).map(drop),
            }
            .unwrap();
        }
        txn.commit().unwrap();
    };
    for (format, says) in [(Some(9), "row format 9"), (None, "rows without a format")] {
        set_format(format);
        let Err(e) = Ledger::open(genesis.clone(), Some(StateStore::open(&path).unwrap())) else {
            panic!("a store of {says} was opened");
        };
        assert!(e.to_string().contains(says), "{e}");
    }
}
