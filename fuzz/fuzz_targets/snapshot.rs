//! A task's state at a checkpoint, as a referee fetches it from a
//! disputing provider and restores it.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The fuzzer's inputs are far smaller; the limit is checked on its own.
const SNAPSHOT_BYTES_MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = cairn_exec::Snapshot::from_bytes(data, SNAPSHOT_BYTES_MAX) else {
        return;
    };
    // Canonical: a snapshot's bytes are content-addressed as a blob.
    assert_eq!(
        snapshot.to_bytes(),
        data,
        "a decoded snapshot re-encodes differently"
    );
    let _ = snapshot.hash();
});
