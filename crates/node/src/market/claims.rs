//! A provider's claims on the ledger for what its requesters accepted.
//!
//! An answer to a pull may carry the requester's signed acceptance of
//! results the provider delivered (`cairn_roles::lease_work`). The provider
//! keeps each one, and once the lease's work is over posts them as `Claim`
//! transactions: the ledger pays each result from the job's escrow unless
//! the requester's own settlement paid it already for as much fuel. So a requester that takes
//! results and never settles, or closes its escrow instead, still pays for
//! what it accepted. The rows leave in the same write that queues the
//! transaction in the outbox: a crash neither loses a claim nor sends one
//! twice, and a restart claims what a lease that ended before it kept.
//!
//! A requester settles a finished job the same way, with claims of its own
//! acceptances of what it pays for ([`pack`] packs both).

use std::collections::BTreeSet;

use cairn_ledger::{ACCEPTANCES_PER_CLAIM_MAX, Acceptance, TxKind};
use cairn_store::{Op, Table};
use cairn_wire::codec::EncodeSize;
use cairn_wire::{ContentId, Signed};

/// Bytes of acceptances one claim carries, at most: what a block takes of
/// one transaction, less the transaction's own fields and signature.
const CLAIM_BYTES_MAX: usize = cairn_chain::TX_BYTES_MAX - 512;

use super::Shared;

/// Keeps `acceptance`, received under `lease`, until it is claimed.
pub(super) fn keep(lease: &ContentId, acceptance: &Signed<Acceptance>) -> Op {
    let bytes = acceptance.to_bytes();
    let mut key = lease.as_bytes().to_vec();
    key.extend_from_slice(ContentId::of(&bytes).as_bytes());
    Op::Put(Table::Acceptances, key, bytes)
}

/// The leases with acceptances kept and not yet claimed.
pub(super) fn leases(shared: &Shared) -> BTreeSet<ContentId> {
    let rows = shared.db.scan(Table::Acceptances, b"").unwrap_or_default();
    rows.iter()
        .filter_map(|(key, _)| key.get(..32)?.try_into().ok())
        .map(ContentId::from_digest)
        .collect()
}

/// Claims on the ledger every acceptance kept under `lease`, in
/// transactions within the ledger's bounds, and waits for each to apply.
pub(super) async fn claim(shared: &Shared, lease: ContentId) {
    let rows = match shared.db.scan(Table::Acceptances, lease.as_bytes()) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!("reading lease {}'s acceptances: {e}", lease.short());
            return;
        }
    };
    let mut kept = Vec::new();
    for (key, bytes) in rows {
        let Ok(acceptance) = Signed::<Acceptance>::from_bytes(&bytes, &()) else {
            tracing::error!(
                "an unreadable acceptance under lease {}; dropped",
                lease.short()
            );
            if let Err(e) = shared.db.write(&[Op::Delete(Table::Acceptances, key)]) {
                tracing::warn!("dropping it: {e}");
            }
            continue;
        };
        kept.push((acceptance, Op::Delete(Table::Acceptances, key)));
    }
    let (batches, too_large) = pack(kept);
    if !too_large.is_empty() {
        // No requester's core signs one this large (it names at most
        // `ACCEPTANCE_RESULTS_MAX` results), and no block would take it.
        tracing::error!(
            "{} acceptances too large to claim under lease {}; dropped",
            too_large.len(),
            lease.short()
        );
        if let Err(e) = shared.db.write(&too_large) {
            tracing::warn!("dropping them: {e}");
        }
    }
    for (acceptances, ops) in batches {
        let count = acceptances.len();
        let ticket = match shared.ledger.send_with(TxKind::Claim { acceptances }, ops) {
            Ok(ticket) => ticket,
            Err(e) => {
                tracing::error!("claiming lease {}'s accepted results: {e}", lease.short());
                return;
            }
        };
        match ticket.fate().await {
            Ok(()) => tracing::debug!(
                lease = %lease.short(),
                "{count} acceptances claimed (what a settlement paid already is not paid again)"
            ),
            Err(e) => tracing::warn!(lease = %lease.short(), "a claim was refused: {e}"),
        }
    }
}

/// One claim's acceptances, with what came with each.
pub(super) type Claim<T> = (Vec<Signed<Acceptance>>, Vec<T>);

/// `acceptances` packed into claims within the ledger's bounds (at most
/// [`ACCEPTANCES_PER_CLAIM_MAX`], and [`CLAIM_BYTES_MAX`] of them), each
/// with what came with its acceptances (`T`), in order; and what came with
/// any acceptance too large for any claim.
pub(super) fn pack<T>(
    acceptances: impl IntoIterator<Item = (Signed<Acceptance>, T)>,
) -> (Vec<Claim<T>>, Vec<T>) {
    let mut batches: Vec<Claim<T>> = Vec::new();
    let mut too_large = Vec::new();
    let mut batch_bytes = 0;
    for (acceptance, with) in acceptances {
        let size = acceptance.encode_size();
        if size > CLAIM_BYTES_MAX {
            too_large.push(with);
            continue;
        }
        let full = batches.last().is_none_or(|(batch, _)| {
            batch.len() == ACCEPTANCES_PER_CLAIM_MAX || batch_bytes + size > CLAIM_BYTES_MAX
        });
        if full {
            batches.push((Vec::new(), Vec::new()));
            batch_bytes = 0;
        }
        let (batch, withs) = batches.last_mut().expect("pushed above");
        batch.push(acceptance);
        withs.push(with);
        batch_bytes += size;
    }
    (batches, too_large)
}
