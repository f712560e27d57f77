//! Blob store and verified transfer, through the public API only.

use std::fs;
use std::path::Path;

use bao_tree::BlockSize;
use bao_tree::io::outboard::{PostOrderMemOutboard, PreOrderMemOutboard};
use cairn_store::{BlobError, BlobStore, CHUNK_GROUP_BYTES, Download, encoded_range_bytes};
use cairn_wire::ContentId;
use proptest::prelude::*;
use tempfile::TempDir;

const MIB: u64 = 1 << 20;
const BLOB_BYTES_MAX: u64 = 64 * MIB;

/// Deterministic pseudo-random bytes.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn store() -> (TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), BLOB_BYTES_MAX).unwrap();
    (dir, store)
}

/// Feeds `download` ranges of `chunk_bytes` from `server` until complete;
/// returns how many ranges it took.
fn pump(server: &BlobStore, download: &mut Download, chunk_bytes: u64) -> usize {
    let mut ranges = 0;
    while let Some((offset, len)) = download.next_range(chunk_bytes) {
        let (size, encoded) = server.encode_range(&download.id(), offset, len).unwrap();
        assert_eq!(size, download.size());
        assert_eq!(
            encoded.len() as u64,
            encoded_range_bytes(size, offset, len).unwrap()
        );
        download.accept(offset, len, &encoded).unwrap();
        ranges += 1;
    }
    ranges
}

fn partial_path(dir: &Path, id: &ContentId) -> std::path::PathBuf {
    dir.join("partial").join(id.to_string())
}

#[test]
fn bao_root_is_the_blake3_hash_for_any_size_and_block_size() {
    let sizes = [
        0usize,
        1,
        1023,
        1024,
        1025,
        16383,
        16384,
        16385,
        32768,
        49153,
        100_000,
        1 << 20,
        (1 << 20) + 7,
        (5 << 20) + 12345,
    ];
    for size in sizes {
        let data = random_bytes(size as u64, size);
        let expected = blake3::hash(&data);
        for chunk_log in [0, 1, 4, 6] {
            let block_size = BlockSize::from_chunk_log(chunk_log);
            assert_eq!(
                PreOrderMemOutboard::create(&data, block_size).root,
                expected,
                "pre-order, size {size}, chunk log {chunk_log}"
            );
            assert_eq!(
                PostOrderMemOutboard::create(&data, block_size).root,
                expected,
                "post-order, size {size}, chunk log {chunk_log}"
            );
        }
    }
}

#[test]
fn round_trip_range_by_range() {
    let (_a, server) = store();
    let (_b, client) = store();
    let data = random_bytes(1, (5 * MIB + 123) as usize);
    let id = server.put(&data).unwrap();
    assert_eq!(id, ContentId::of(&data));
    assert!(server.has(&id));
    assert_eq!(server.size(&id), Some(data.len() as u64));

    // A fresh client learns the size from the first answer.
    let (size, _) = server.encode_range(&id, 0, 0).unwrap();
    let mut download = client.download(id, size).unwrap();
    assert_eq!(pump(&server, &mut download, MIB), 6);
    assert!(download.is_complete());
    assert_eq!(download.finish().unwrap(), id);
    assert!(client.read(&id).unwrap() == data);
    assert_eq!(
        fs::read(client.path(&id).unwrap()).unwrap().len(),
        data.len()
    );
    assert!(!partial_path(client.dir(), &id).exists());

    // The outboard computed at finish serves as well as the original: a
    // third store downloads from the client, in odd-sized ranges.
    let (_c, third) = store();
    let mut download = third.download(id, size).unwrap();
    pump(&client, &mut download, 3 * CHUNK_GROUP_BYTES + 5);
    assert_eq!(download.finish().unwrap(), id);
    assert!(third.read(&id).unwrap() == data);
}

#[test]
fn corrupt_ranges_are_rejected_and_the_download_recovers() {
    let (_a, server) = store();
    let (b, client) = store();
    let data = random_bytes(2, (3 * MIB + 999) as usize);
    let id = server.put(&data).unwrap();
    let mut download = client.download(id, data.len() as u64).unwrap();
    pump_one(&server, &mut download);

    let (offset, len) = download.next_range(MIB).unwrap();
    let (_, good) = server.encode_range(&id, offset, len).unwrap();
    // Flip a byte in the leading proof hashes, in the middle of the data and
    // in the very last byte; then truncate and extend.
    let mut bad = Vec::new();
    for at in [0, 70, good.len() / 2, good.len() - 1] {
        let mut encoded = good.clone();
        encoded[at] ^= 0x40;
        bad.push(encoded);
    }
    bad.push(good[..good.len() - 1].to_vec());
    bad.push([good.as_slice(), &[0]].concat());
    let partial_len = fs::metadata(partial_path(b.path(), &id)).unwrap().len();
    for encoded in &bad {
        let err = download.accept(offset, len, encoded).unwrap_err();
        assert!(matches!(err, BlobError::Corrupt(_)), "{err}");
        assert_eq!(download.verified_bytes(), offset);
        assert_eq!(
            fs::metadata(partial_path(b.path(), &id)).unwrap().len(),
            partial_len,
            "a rejected range writes nothing"
        );
    }
    download.accept(offset, len, &good).unwrap();
    pump(&server, &mut download, MIB);
    assert_eq!(download.finish().unwrap(), id);
    assert!(client.read(&id).unwrap() == data);
}

fn pump_one(server: &BlobStore, download: &mut Download) {
    let (offset, len) = download.next_range(MIB).unwrap();
    let (_, encoded) = server.encode_range(&download.id(), offset, len).unwrap();
    download.accept(offset, len, &encoded).unwrap();
}

#[test]
fn a_range_of_another_blob_is_rejected() {
    let (_a, server) = store();
    let (_b, client) = store();
    let wanted = random_bytes(3, (2 * MIB) as usize);
    let other = random_bytes(4, (2 * MIB) as usize);
    let wanted_id = server.put(&wanted).unwrap();
    let other_id = server.put(&other).unwrap();
    let mut download = client.download(wanted_id, wanted.len() as u64).unwrap();
    for offset in [0, MIB] {
        let (_, encoded) = server.encode_range(&other_id, offset, MIB).unwrap();
        if offset == MIB {
            pump_one(&server, &mut download);
        }
        let err = download.accept(offset, MIB, &encoded).unwrap_err();
        assert!(matches!(err, BlobError::Corrupt(_)), "{err}");
    }
    pump(&server, &mut download, MIB);
    assert_eq!(download.finish().unwrap(), wanted_id);
}

#[test]
fn a_lying_size_fails_verification() {
    let (_a, server) = store();
    let (_b, client) = store();
    let data = random_bytes(5, (3 * MIB) as usize);
    let id = server.put(&data).unwrap();
    // The tree for 2 MiB has another shape, so no range of the real one fits.
    let mut download = client.download(id, 2 * MIB).unwrap();
    let (_, encoded) = server.encode_range(&id, 0, MIB).unwrap();
    let err = download.accept(0, MIB, &encoded).unwrap_err();
    assert!(matches!(err, BlobError::Corrupt(_)), "{err}");
    drop(download);
    // Starting over with the true size works.
    let mut download = client.download(id, data.len() as u64).unwrap();
    pump(&server, &mut download, MIB);
    assert_eq!(download.finish().unwrap(), id);
}

#[test]
fn a_download_resumes_after_a_restart() {
    let (_a, server) = store();
    let (b, client) = store();
    let data = random_bytes(6, (5 * MIB + 4321) as usize);
    let size = data.len() as u64;
    let id = server.put(&data).unwrap();
    let mut download = client.download(id, size).unwrap();
    pump_one(&server, &mut download);
    pump_one(&server, &mut download);
    assert_eq!(download.verified_bytes(), 2 * MIB);
    drop(download);
    drop(client);

    // Bytes written past the recorded prefix (a crash between the write and
    // the record) must not count.
    let mut junk = fs::read(partial_path(b.path(), &id)).unwrap();
    junk.extend_from_slice(&[0xAA; 100_000]);
    fs::write(partial_path(b.path(), &id), junk).unwrap();

    let client = BlobStore::open(b.path(), BLOB_BYTES_MAX).unwrap();
    let mut download = client.download(id, size).unwrap();
    assert_eq!(download.verified_bytes(), 2 * MIB);
    assert_eq!(download.next_range(MIB), Some((2 * MIB, MIB)));
    assert_eq!(pump(&server, &mut download, MIB), 4);
    assert_eq!(download.finish().unwrap(), id);
    assert!(client.read(&id).unwrap() == data);
    assert!(
        !b.path()
            .join("partial")
            .join(format!("{id}.progress"))
            .exists()
    );
}

#[test]
fn a_crash_between_checkpoints_resumes_from_the_last_one() {
    let (_a, server) = store();
    let (b, client) = store();
    let data = random_bytes(7, (3 * MIB) as usize);
    let id = server.put(&data).unwrap();
    let mut download = client.download(id, data.len() as u64).unwrap();
    pump_one(&server, &mut download);
    const { assert!(MIB < cairn_store::CHECKPOINT_BYTES) };
    // A crash: no drop, so no checkpoint; the verified MiB was never
    // recorded and must not be trusted.
    std::mem::forget(download);
    let client = BlobStore::open(b.path(), BLOB_BYTES_MAX).unwrap();
    let mut download = client.download(id, data.len() as u64).unwrap();
    assert_eq!(download.verified_bytes(), 0);
    pump(&server, &mut download, MIB);
    assert_eq!(download.finish().unwrap(), id);
    assert!(client.read(&id).unwrap() == data);
}

#[test]
fn progress_for_another_size_is_dropped() {
    let (_a, server) = store();
    let (_b, client) = store();
    let data = random_bytes(7, (3 * MIB) as usize);
    let id = server.put(&data).unwrap();
    let mut download = client.download(id, 3 * MIB).unwrap();
    pump_one(&server, &mut download);
    drop(download);
    let download = client.download(id, 3 * MIB + 1).unwrap();
    assert_eq!(download.verified_bytes(), 0);
}

#[test]
fn a_damaged_partial_file_is_caught_at_finish() {
    let (_a, server) = store();
    let (b, client) = store();
    let data = random_bytes(8, (2 * MIB) as usize);
    let id = server.put(&data).unwrap();
    let mut download = client.download(id, data.len() as u64).unwrap();
    pump_one(&server, &mut download);
    drop(download);
    let mut partial = fs::read(partial_path(b.path(), &id)).unwrap();
    partial[12345] ^= 1;
    fs::write(partial_path(b.path(), &id), partial).unwrap();
    let mut download = client.download(id, data.len() as u64).unwrap();
    pump(&server, &mut download, MIB);
    let err = download.finish().unwrap_err();
    assert!(matches!(err, BlobError::Corrupt(_)), "{err}");
    assert!(!client.has(&id));
    // The damaged data was discarded, so a new attempt starts clean.
    let mut download = client.download(id, data.len() as u64).unwrap();
    assert_eq!(download.verified_bytes(), 0);
    pump(&server, &mut download, MIB);
    assert_eq!(download.finish().unwrap(), id);
}

#[test]
fn sizes_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), MIB).unwrap();
    let at_limit = random_bytes(9, MIB as usize);
    let over = random_bytes(10, MIB as usize + 1);
    assert!(store.put(&at_limit).is_ok());
    let err = store.put(&over).unwrap_err();
    assert!(
        matches!(err, BlobError::TooLarge { size, max } if size == MIB + 1 && max == MIB),
        "{err}"
    );
    let file = dir.path().join("over.bin");
    fs::write(&file, &over).unwrap();
    assert!(matches!(
        store.put_file(&file),
        Err(BlobError::TooLarge { .. })
    ));
    let id = ContentId::of(&over);
    assert!(matches!(
        store.download(id, MIB + 1),
        Err(BlobError::TooLarge { size, max }) if size == MIB + 1 && max == MIB
    ));
    assert!(!store.has(&id));
}

#[test]
fn empty_and_small_blobs() {
    let (_a, server) = store();
    let (_b, client) = store();
    for size in [0usize, 1, 1000, 16383, 16384, 16385] {
        let data = random_bytes(size as u64, size);
        let id = server.put(&data).unwrap();
        assert_eq!(id, ContentId::of(&data));
        let (announced, _) = server.encode_range(&id, 0, MIB).unwrap();
        assert_eq!(announced, size as u64);
        let mut download = client.download(id, announced).unwrap();
        let ranges = pump(&server, &mut download, MIB);
        assert_eq!(ranges, usize::from(size > 0));
        assert_eq!(download.finish().unwrap(), id, "size {size}");
        assert_eq!(client.read(&id).unwrap(), data);
    }
}

#[test]
fn put_file_matches_put_and_put_is_idempotent() {
    let (dir, store) = store();
    let data = random_bytes(11, (3 * MIB + 17) as usize);
    let file = dir.path().join("input.bin");
    fs::write(&file, &data).unwrap();
    let id = store.put_file(&file).unwrap();
    assert_eq!(id, ContentId::of(&data));
    assert_eq!(store.put(&data).unwrap(), id);
    assert_eq!(store.put_file(&file).unwrap(), id);
    assert!(store.read(&id).unwrap() == data);
    assert!(dir.path().join(format!("{id}.obao")).is_file());
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    // A put_file blob serves verifiable ranges.
    let (_b, client) = self::store();
    let mut download = client.download(id, data.len() as u64).unwrap();
    pump(&store, &mut download, MIB);
    assert_eq!(download.finish().unwrap(), id);
}

#[test]
fn bad_requests_are_refused() {
    let (_a, server) = store();
    let (_b, client) = store();
    let data = random_bytes(12, (MIB + 100) as usize);
    let id = server.put(&data).unwrap();
    let size = data.len() as u64;
    let bad_range = |r: Result<(u64, Vec<u8>), BlobError>| {
        assert!(matches!(r, Err(BlobError::BadRange { .. })), "{r:?}")
    };
    bad_range(server.encode_range(&id, 1000, 16384));
    bad_range(server.encode_range(&id, 0, 1000));
    bad_range(server.encode_range(&id, 2 * MIB, 16384));
    bad_range(server.encode_range(&id, 0, 64 * MIB));
    let unknown = ContentId::of(b"nope");
    assert!(matches!(
        server.encode_range(&unknown, 0, 16384),
        Err(BlobError::NotFound(missing)) if missing == unknown
    ));
    assert!(matches!(server.read(&unknown), Err(BlobError::NotFound(_))));

    let mut download = client.download(id, size).unwrap();
    assert!(matches!(client.download(id, size), Err(BlobError::Busy(_))));
    let (_, encoded) = server.encode_range(&id, MIB, MIB).unwrap();
    assert!(matches!(
        download.accept(MIB, MIB, &encoded),
        Err(BlobError::OutOfOrder { offset, expected: 0 }) if offset == MIB
    ));
    assert!(matches!(
        download.accept(0, 0, &[]),
        Err(BlobError::BadRange { .. })
    ));
    pump_one(&server, &mut download);
    let mut unfinished = download;
    assert_eq!(unfinished.verified_bytes(), MIB);
    let err = unfinished.accept(MIB, 0, &[]).unwrap_err();
    assert!(matches!(err, BlobError::BadRange { .. }), "{err}");
    let err = unfinished.finish().unwrap_err();
    assert!(matches!(err, BlobError::Incomplete { verified_bytes, .. } if verified_bytes == MIB));
    // The dropped download no longer blocks a new one.
    let mut download = client.download(id, size).unwrap();
    pump(&server, &mut download, MIB);
    let (_, encoded) = server.encode_range(&id, 0, MIB).unwrap();
    assert!(matches!(
        download.accept(0, MIB, &encoded),
        Err(BlobError::BadRange { .. })
    ));
    assert_eq!(download.finish().unwrap(), id);

    // Already stored: complete at once, but a wrong size is still caught.
    let download = client.download(id, size).unwrap();
    assert_eq!(download.next_range(MIB), None);
    assert_eq!(download.finish().unwrap(), id);
    assert!(matches!(
        client.download(id, size + 1),
        Err(BlobError::Corrupt(_))
    ));
}

#[test]
fn damage_on_disk_is_not_served() {
    let (dir, server) = store();
    let data = random_bytes(13, (2 * MIB) as usize);
    let id = server.put(&data).unwrap();
    let path = server.path(&id).unwrap();
    let mut damaged = data.clone();
    damaged[MIB as usize + 5] ^= 1;
    fs::write(&path, &damaged).unwrap();
    assert!(matches!(server.read(&id), Err(BlobError::Corrupt(_))));
    assert!(
        server.encode_range(&id, 0, MIB).is_ok(),
        "the first MiB is intact"
    );
    assert!(matches!(
        server.encode_range(&id, MIB, MIB),
        Err(BlobError::Corrupt(_))
    ));
    fs::write(dir.path().join(format!("{id}.obao")), [0u8; 64]).unwrap();
    assert!(matches!(
        server.encode_range(&id, 0, MIB),
        Err(BlobError::Corrupt(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any size, any transfer chunk: the bytes arrive intact.
    #[test]
    fn round_trip_any_size(size in 0usize..300_000, groups in 1u64..6, seed: u64) {
        let (_a, server) = store();
        let (_b, client) = store();
        let data = random_bytes(seed, size);
        let id = server.put(&data).unwrap();
        let mut download = client.download(id, size as u64).unwrap();
        pump(&server, &mut download, groups * CHUNK_GROUP_BYTES);
        prop_assert_eq!(download.finish().unwrap(), id);
        prop_assert_eq!(client.read(&id).unwrap(), data);
    }
}

#[test]
fn stores_and_downloads_move_between_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    fn sendable<T: Send + 'static>() {}
    shareable::<BlobStore>();
    sendable::<Download>();
    shareable::<BlobError>();
}

#[test]
fn a_removed_blob_is_gone_with_its_outboard_and_can_come_back() {
    let (dir, store) = store();
    let bytes = random_bytes(5, 100_000);
    let id = store.put(&bytes).unwrap();
    assert!(store.remove(&id).unwrap());
    assert!(!store.has(&id));
    assert!(store.encode_range(&id, 0, 16_384).is_err());
    assert!(!dir.path().join(format!("{id}.obao")).exists());
    assert!(!store.remove(&id).unwrap(), "removing twice is a no-op");
    assert_eq!(store.put(&bytes).unwrap(), id);
    assert_eq!(store.read(&id).unwrap(), bytes);
}
