//! The outbox against a real ledger (no consensus; blocks sealed here):
//! refusals, restarts and another signer using the same nonces.

use cairn_chain::Ledger;
use cairn_ledger::Genesis;
use cairn_wire::PublicKey;

use super::*;

const BALANCE: u64 = 1_000_000;

fn keypair(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

/// A ledger where `funded` holds [`BALANCE`], sealing no blocks by itself.
fn ledger(funded: &Keypair) -> Ledger {
    let genesis = Genesis::with_balances("outbox", &[funded.public()], BALANCE)
        .state()
        .unwrap();
    Ledger::open(genesis, None).unwrap()
}

/// Seals a block every few milliseconds until the task is aborted.
fn seal_blocks(ledger: &Ledger) -> tokio::task::JoinHandle<()> {
    let ledger = ledger.clone();
    tokio::spawn(async move {
        for timestamp in 1.. {
            ledger.seal_alone(timestamp).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

fn db(dir: &tempfile::TempDir) -> Db {
    Db::open(&dir.path().join("market.redb")).unwrap()
}

/// The ticket's fate, or a failure naming the wedge if none comes.
async fn fate(ticket: Ticket) -> Fate {
    tokio::time::timeout(Duration::from_secs(60), ticket.fate())
        .await
        .expect("the outbox is wedged: no fate within a minute")
}

fn job(name: &str) -> ContentId {
    ContentId::of(name.as_bytes())
}

fn balance(ledger: &Ledger, who: &PublicKey) -> u64 {
    ledger.view(|state| state.account(who).balance)
}

#[tokio::test]
async fn a_refused_transaction_does_not_stop_the_ones_after_it() {
    let me = keypair(1);
    let other = keypair(2).public();
    let ledger = ledger(&me);
    let sealer = seal_blocks(&ledger);
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::start(LedgerLink::Local(ledger.clone()), me.clone(), db(&dir))
        .await
        .unwrap();

    // Refused at admission: more than the balance.
    let too_big = outbox
        .send(TxKind::OpenEscrow {
            job: job("too big"),
            amount: 2 * BALANCE,
        })
        .unwrap();
    let escrow = outbox
        .send(TxKind::OpenEscrow {
            job: job("fits"),
            amount: 100,
        })
        .unwrap();
    // Admitted, refused by the block: no such escrow.
    let no_escrow = outbox
        .send(TxKind::CloseEscrow {
            job: job("never opened"),
        })
        .unwrap();
    let transfer = outbox
        .send(TxKind::Transfer {
            to: other,
            amount: 5,
        })
        .unwrap();

    let refused = fate(too_big).await.unwrap_err();
    assert!(refused.contains("balance"), "{refused}");
    fate(escrow).await.unwrap();
    let refused = fate(no_escrow).await.unwrap_err();
    assert!(refused.contains("no open escrow"), "{refused}");
    fate(transfer).await.unwrap();
    sealer.abort();

    ledger.view(|state| {
        // Three took nonces; the one refused at admission took none.
        assert_eq!(state.account(&me.public()).nonce, 3);
        assert_eq!(state.escrow(&job("fits")).unwrap().balance, 100);
        assert!(state.escrow(&job("too big")).is_none());
    });
    assert_eq!(balance(&ledger, &other), 5);
    assert_eq!(balance(&ledger, &me.public()), BALANCE - 105);
    assert_eq!(outbox.open(), 0);
    assert!(outbox.db.scan(Table::Outbox, &[]).unwrap().is_empty());
}

#[tokio::test]
async fn a_restarted_node_sends_what_its_outbox_held_exactly_once() {
    let me = keypair(1);
    let other = keypair(2).public();
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir);
    // The first ledger never seals a block; the node stops with its
    // transactions queued, and the validator forgets its mempool too.
    let forgetful = ledger(&me);
    {
        let outbox = Outbox::start(LedgerLink::Local(forgetful), me.clone(), db.clone())
            .await
            .unwrap();
        for amount in [3, 4] {
            drop(outbox.send(TxKind::Transfer { to: other, amount }).unwrap());
        }
        assert_eq!(outbox.open(), 2);
    }

    let ledger = ledger(&me);
    let sealer = seal_blocks(&ledger);
    let outbox = Outbox::start(LedgerLink::Local(ledger.clone()), me.clone(), db)
        .await
        .unwrap();
    assert_eq!(outbox.open(), 2);
    // Something queued after the restart follows what came before.
    let queued = outbox
        .send(TxKind::Transfer {
            to: other,
            amount: 5,
        })
        .unwrap();
    fate(queued).await.unwrap();
    sealer.abort();
    assert_eq!(outbox.open(), 0);
    assert_eq!(balance(&ledger, &other), 3 + 4 + 5);
    assert_eq!(ledger.view(|s| s.account(&me.public()).nonce), 3);
}

#[tokio::test]
async fn a_nonce_another_signer_took_is_given_up_and_the_transaction_signed_again() {
    let me = keypair(1);
    let other = keypair(2).public();
    let ledger = ledger(&me);
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::start(LedgerLink::Local(ledger.clone()), me.clone(), db(&dir))
        .await
        .unwrap();
    let queued = outbox
        .send(TxKind::Transfer {
            to: other,
            amount: 7,
        })
        .unwrap();
    // Another program holding the key (`cairn wallet`, say) takes nonce 0
    // for itself and a block carries it, before the outbox (whose task runs
    // only when this single-threaded test awaits) sends its own copy.
    let wallet = TxBody {
        chain: ledger.chain(),
        nonce: 0,
        kind: TxKind::Transfer {
            to: other,
            amount: 11,
        },
    }
    .sign(&me)
    .to_bytes();
    ledger.submit(wallet.clone()).unwrap();
    ledger.seal_alone(1).unwrap();
    assert_eq!(
        ledger.outcome(&me.public(), 0).unwrap().tx,
        ContentId::of(&wallet),
        "the wallet took nonce 0"
    );
    let sealer = seal_blocks(&ledger);
    fate(queued).await.unwrap();
    sealer.abort();
    // Both applied, each once.
    assert_eq!(balance(&ledger, &other), 11 + 7);
    assert_eq!(ledger.view(|s| s.account(&me.public()).nonce), 2);
}
