//! Signed envelopes as peers send them: an order gossiped on the orders
//! topic, and the bids, receipts, commitments, acceptances, trace claims and
//! validator-attested verdicts that ride inside market messages and
//! transactions. The first byte picks the payload type; the rest is the
//! envelope.
#![no_main]

use cairn_ledger::{Acceptance, Commit, Receipt, Verdict};
use cairn_market::{Bid, Order};
use cairn_proto::TraceClaim;
use cairn_wire::codec::{Copying, Decode, Encode, Read};
use cairn_wire::{Attested, Signed};
use libfuzzer_sys::fuzz_target;

/// Decodes `bytes` as a `Signed<T>`; whatever decodes must re-encode to
/// exactly `bytes` (the encoding is canonical: signatures and content ids
/// are taken over it), and checking its signature must not panic.
fn check<T: Read<Cfg = ()> + Encode>(bytes: &[u8]) {
    let Ok(signed) = Signed::<T>::from_bytes(bytes, &()) else {
        return;
    };
    assert_eq!(
        signed.to_bytes(),
        bytes,
        "a decoded envelope re-encodes differently"
    );
    let _ = signed.verify(b"cairn/fuzz");
}

/// The same for a quorum's envelope: canonical, and checking every
/// signature must not panic.
fn check_attested<T: Read<Cfg = ()> + Encode>(bytes: &[u8]) {
    let Ok(attested) = Attested::<T>::decode_cfg(Copying(bytes), &()) else {
        return;
    };
    assert_eq!(
        attested.encode().to_vec(),
        bytes,
        "a decoded attestation re-encodes differently"
    );
    let _ = attested.verify(b"cairn/fuzz");
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 7 {
        0 => check::<Order>(bytes),
        1 => check::<Bid>(bytes),
        2 => check::<Receipt>(bytes),
        3 => check::<Commit>(bytes),
        4 => check::<Acceptance>(bytes),
        5 => check_attested::<Verdict>(bytes),
        _ => check::<TraceClaim>(bytes),
    }
});
