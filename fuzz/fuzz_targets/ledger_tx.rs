//! Transactions as the ledger reads them from outside: the bodies POSTed to
//! `/v1/txs` and the transactions inside a proposed block both go through
//! `cairn_ledger::decode`, then `admit`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tx) = cairn_ledger::decode(data) else {
        return;
    };
    // Canonical: a transaction's id and signature are over these bytes.
    assert_eq!(
        tx.to_bytes(),
        data,
        "a decoded transaction re-encodes differently"
    );
    let _ = cairn_ledger::admit(tx);
});
