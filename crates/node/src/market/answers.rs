//! A provider's answers to reveal challenges.
//!
//! A requester holding one of the provider's signed commits can post it on
//! the ledger as a `Challenge`; if no `Reveal` opens it within the window,
//! the commit becomes `NoReveal` evidence and the provider is slashed. So
//! the provider keeps, for every commitment it made, the signed receipt
//! that opens it, persisted in the same batch as the report before the commit is sent, and
//! a watcher answers every open challenge against it, the earliest
//! deadline first and many in one transaction. An answer is kept until
//! its lease can no longer be challenged (it expired, and its evidence
//! window passed) and no challenge on it is open: on a fast chain a
//! challenge's window, a time, outlasts the evidence window in blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_ledger::{EVIDENCE_WINDOW_BLOCKS, REVEALS_PER_TX_MAX, Receipt, TxKind};
use cairn_store::{Op, Table};
use cairn_wire::codec::Encode;
use cairn_wire::{ContentId, Signed};

use super::Shared;

/// How often the provider looks for challenges: a small part of the reveal
/// window (at least 100 blocks), so an answer is never late.
const POLL: Duration = Duration::from_secs(2);
/// Blocks between sweeps of answers whose challenge window has passed.
const PRUNE_EVERY_BLOCKS: u64 = 100;
/// Blocks after which a challenge answered and still open is answered
/// again: the reveal may have been lost or refused on the way (its
/// transaction's fate is not followed), and a fifth of the reveal window
/// leaves four more tries.
const REVEAL_AGAIN_BLOCKS: u64 = 20;

/// The signed receipt that opens a commitment, kept while the ledger keeps
/// its lease (which lives until `expires_height`).
pub(super) fn keep(receipt: &Signed<Receipt>, expires_height: u64) -> Op {
    let r = receipt.payload_unchecked();
    let mut value = expires_height.to_be_bytes().to_vec();
    value.extend_from_slice(&receipt.encode());
    Op::Put(Table::Answers, key(&r.lease, r.task), value)
}

fn key(lease: &ContentId, task: u64) -> Vec<u8> {
    let mut key = lease.as_bytes().to_vec();
    key.extend_from_slice(&task.to_be_bytes());
    key
}

/// A stored answer: the receipt and the lease's expiry height.
fn decode(value: &[u8]) -> Option<(Signed<Receipt>, u64)> {
    let expires: [u8; 8] = value.get(..8)?.try_into().ok()?;
    let receipt = Signed::<Receipt>::from_bytes(value.get(8..)?, &()).ok()?;
    Some((receipt, u64::from_be_bytes(expires)))
}

/// The digest this provider committed to for `task` of `lease`, if it
/// still keeps it.
pub(super) fn committed(shared: &Shared, lease: &ContentId, task: u64) -> Option<ContentId> {
    let stored = shared.db.get(Table::Answers, &key(lease, task)).ok()??;
    decode(&stored).map(|(receipt, _)| receipt.payload_unchecked().digest)
}

/// Answers every open challenge against this provider, for as long as the
/// node runs.
pub(super) async fn watch(shared: Arc<Shared>) {
    let me = shared.key.public();
    let mut answered = BTreeMap::new();
    let mut pruned_at = 0;
    loop {
        tokio::time::sleep(POLL).await;
        let listed = match shared.ledger.link().open_challenges(&me).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!("looking for challenges: {e}");
                continue;
            }
        };
        let height = listed.height;
        let open = listed
            .challenges
            .iter()
            .map(|c| (c.lease, c.task, c.deadline))
            .collect();
        let mut receipts = Vec::new();
        for (lease, task, deadline) in unanswered(&mut answered, open, height) {
            let stored = shared.db.get(Table::Answers, &key(&lease, task));
            let Some((receipt, _)) = stored.ok().flatten().as_deref().and_then(decode) else {
                // Not a commit this node made, or one made before answers
                // were kept: nothing can open it.
                tracing::error!(
                    "challenged on task {task} of lease {} with nothing to open it",
                    lease.short()
                );
                continue;
            };
            tracing::info!(
                "answering a challenge on task {task} of lease {} (due after block {deadline})",
                lease.short()
            );
            receipts.push((deadline, receipt));
        }
        // The earliest deadlines first, as listed.
        for chunk in receipts.chunks(REVEALS_PER_TX_MAX) {
            let reveal = TxKind::Reveal {
                receipts: chunk.iter().map(|(_, r)| r.clone()).collect(),
            };
            if let Err(e) = shared.ledger.send(reveal) {
                tracing::warn!("revealing {} commitments: {e}", chunk.len());
                for (deadline, r) in chunk {
                    let r = r.payload_unchecked();
                    answered.remove(&(r.lease, r.task, *deadline));
                }
            }
        }
        // Only when every open challenge is listed, so none is forgotten.
        let complete = listed.open as usize <= listed.challenges.len();
        if complete && height >= pruned_at + PRUNE_EVERY_BLOCKS {
            pruned_at = height;
            let challenged = listed.challenges.iter().map(|c| c.lease).collect();
            // A scan of the whole table: off the async workers.
            let shared = shared.clone();
            let pruning = move || prune(&shared, height, &challenged);
            if let Err(e) = tokio::task::spawn_blocking(pruning).await {
                tracing::warn!("forgetting old answers: {e}");
            }
        }
    }
}

/// The challenges in `open` (lease, task, deadline) to answer at
/// `height`: those not in `answered` (challenge → height answered at), and
/// those answered [`REVEAL_AGAIN_BLOCKS`] ago and still open. `answered`
/// then holds exactly `open`. A challenge is known by its deadline too: a
/// commitment opened can be challenged again, and a second challenge that
/// arrives between two looks must not pass for the first, already answered
/// (the simulation's framing requester found honest providers slashed that
/// way).
fn unanswered(
    answered: &mut BTreeMap<(ContentId, u64, u64), u64>,
    open: Vec<(ContentId, u64, u64)>,
    height: u64,
) -> Vec<(ContentId, u64, u64)> {
    answered.retain(|key, _| open.contains(key));
    open.into_iter()
        .filter(|key| match answered.get(key) {
            Some(&at) if height < at.saturating_add(REVEAL_AGAIN_BLOCKS) => false,
            _ => {
                answered.insert(*key, height);
                true
            }
        })
        .collect()
}

/// Forgets answers no challenge can ask for any more (`challenged`: the
/// leases with a challenge open).
fn prune(shared: &Shared, height: u64, challenged: &BTreeSet<ContentId>) {
    let Ok(all) = shared.db.scan(Table::Answers, b"") else {
        return;
    };
    if let Err(e) = shared.db.write(&stale(all, height, challenged)) {
        tracing::warn!("forgetting old answers: {e}");
    }
}

/// Deletions of the answers in `all` that no challenge can reach at
/// `height`: their lease can no longer be challenged and has no challenge
/// open (one of `challenged`), or the record is unreadable.
fn stale(all: Vec<cairn_store::Record>, height: u64, challenged: &BTreeSet<ContentId>) -> Vec<Op> {
    all.into_iter()
        .filter(|(key, value)| {
            let lease = key.get(..32).and_then(|id| <[u8; 32]>::try_from(id).ok());
            let open = lease.is_some_and(|id| challenged.contains(&ContentId::from_digest(id)));
            decode(value).is_none_or(|(_, expires)| {
                expires.saturating_add(EVIDENCE_WINDOW_BLOCKS) < height && !open
            })
        })
        .map(|(key, _)| Op::Delete(Table::Answers, key))
        .collect()
}

#[cfg(test)]
mod tests {
    use cairn_ledger::RECEIPT_NAMESPACE;
    use cairn_wire::Keypair;

    use super::*;

    fn receipt(lease: &[u8]) -> Signed<Receipt> {
        Signed::sign(
            &Keypair::from_seed([3; 32]),
            RECEIPT_NAMESPACE,
            Receipt {
                lease: ContentId::of(lease),
                task: 3,
                digest: ContentId::of(b"d"),
                fuel_used: 9,
                salt: [5; 32],
                run: [0; 32],
            },
        )
    }

    fn record(lease: &[u8], expires: u64) -> cairn_store::Record {
        let Op::Put(_, key, value) = keep(&receipt(lease), expires) else {
            unreachable!("keep puts")
        };
        (key, value)
    }

    /// Each challenge is answered once while open, again if it is still
    /// open a while later (a reveal lost on the way), and a commitment
    /// challenged again, even between two looks, is answered again.
    #[test]
    fn a_commitment_challenged_again_is_answered_again() {
        let (lease, other) = (ContentId::of(b"lease"), ContentId::of(b"other"));
        let mut answered = BTreeMap::new();
        let first = vec![(lease, 3, 110), (other, 0, 112)];
        assert_eq!(unanswered(&mut answered, first.clone(), 10), first);
        assert!(
            unanswered(&mut answered, first, 11).is_empty(),
            "answered once"
        );
        // Opened, then challenged again before the next look.
        let again = vec![(lease, 3, 160), (other, 0, 112)];
        assert_eq!(
            unanswered(&mut answered, again.clone(), 12),
            vec![(lease, 3, 160)]
        );
        assert!(unanswered(&mut answered, again.clone(), 13).is_empty());
        // Still open a while after its answer: its reveal was lost.
        assert_eq!(
            unanswered(&mut answered, again.clone(), 10 + REVEAL_AGAIN_BLOCKS),
            vec![(other, 0, 112)]
        );
        assert!(unanswered(&mut answered, again, 11 + REVEAL_AGAIN_BLOCKS).is_empty());
        // Gone from the list, then challenged again with the same deadline.
        assert!(unanswered(&mut answered, Vec::new(), 40).is_empty());
        assert_eq!(
            unanswered(&mut answered, vec![(other, 0, 112)], 41),
            vec![(other, 0, 112)]
        );
    }

    /// An answer is kept while its lease can be challenged, and while a
    /// challenge on it is open; then it goes, as does an unreadable one.
    #[test]
    fn answers_outlive_their_lease_by_the_evidence_window_and_their_challenges() {
        let (_, value) = record(b"a", 50);
        assert_eq!(decode(&value), Some((receipt(b"a"), 50)));
        let all = vec![
            record(b"expired long ago", 10),
            record(b"in its window", 50),
            record(b"live", 1_000),
            (b"junk".to_vec(), vec![1, 2, 3]),
            record(b"expired, challenged", 10),
        ];
        let height = 50 + EVIDENCE_WINDOW_BLOCKS;
        let challenged = BTreeSet::from([ContentId::of(b"expired, challenged")]);
        let gone: Vec<Vec<u8>> = stale(all.clone(), height, &challenged)
            .into_iter()
            .map(|op| match op {
                Op::Delete(Table::Answers, key) => key,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(gone, vec![all[0].0.clone(), all[3].0.clone()]);
    }
}
