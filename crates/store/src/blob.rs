//! Content-addressed blobs with verified, chunked, resumable transfer.
//!
//! A blob (a Wasm module, a task input, a rendered frame) is named by its
//! [`ContentId`], the BLAKE3 hash of its bytes. Next to each blob the store
//! keeps its *outboard*: the interior hashes of the BLAKE3 tree over 16 KiB
//! chunk groups, computed once when the blob enters the store. With it a
//! server proves any aligned range of a blob against the id alone, so a client
//! downloading from an untrusted peer verifies every range as it arrives
//! instead of only after the last byte.
//!
//! Nothing here touches the network. The serving side calls
//! [`BlobStore::encode_range`]; the fetching side opens a [`Download`], asks
//! it for the [next missing range](Download::next_range), feeds the peer's
//! answer to [`Download::accept`] and finally calls [`Download::finish`].
//!
//! ```
//! use cairn_store::BlobStore;
//!
//! # fn main() -> Result<(), cairn_store::BlobError> {
//! let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
//! let server = BlobStore::open(a.path(), 1 << 30)?;
//! let client = BlobStore::open(b.path(), 1 << 30)?;
//! let id = server.put(&vec![7u8; 100_000])?;
//!
//! let size = server.size(&id).unwrap(); // in practice: from an announcement
//! let mut download = client.download(id, size)?;
//! while let Some((offset, len)) = download.next_range(64 * 1024) {
//!     let (_, encoded) = server.encode_range(&id, offset, len)?; // over the network
//!     download.accept(offset, len, &encoded)?;
//! }
//! assert_eq!(download.finish()?, id);
//! assert_eq!(client.read(&id)?, vec![7u8; 100_000]);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout on disk
//!
//! ```text
//! <dir>/<hex id>                     the blob's bytes
//! <dir>/<hex id>.obao                its pre-order bao outboard (no size prefix)
//! <dir>/partial/<hex id>             verified prefix of a download in progress
//! <dir>/partial/<hex id>.progress    how long that prefix is, and the blob size
//! <dir>/tmp/                         files being written; renamed into place
//! ```
//!
//! Every blob is written to `tmp/`, fsynced and renamed, outboard first, so a
//! blob that exists always has its outboard. A store directory belongs to one
//! process at a time: [`BlobStore::open`] clears `tmp/`.

use std::collections::HashSet;
use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Cursor, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bao_tree::io::outboard::{PreOrderMemOutboard, PreOrderOutboard};
use bao_tree::io::sync::{
    DecodeResponseIter, Outboard, ReadAt, WriteAt, encode_ranges_validated, outboard,
    truncate_ranges,
};
use bao_tree::io::{BaoContentItem, EncodeError};
use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use cairn_wire::ContentId;
use tempfile::NamedTempFile;

/// Bytes in a chunk group, the unit of verification: ranges start at
/// multiples of it, and the outboard stores one hash pair per group.
///
/// 16 KiB groups keep the outboard at 1/256 of the blob while a range still
/// verifies in pieces small enough to hash with SIMD at full speed.
pub const CHUNK_GROUP_BYTES: u64 = 16 * 1024;

/// The longest range [`BlobStore::encode_range`] serves and
/// [`Download::accept`] takes, so neither side buffers more than this for a
/// request from an untrusted peer.
pub const RANGE_BYTES_MAX: u64 = 16 * 1024 * 1024;

const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);
const _: () = assert!(BLOCK_SIZE.bytes() as u64 == CHUNK_GROUP_BYTES);
const _: () = assert!(RANGE_BYTES_MAX.is_multiple_of(CHUNK_GROUP_BYTES));

/// Buffer size for streaming whole blobs through the hasher.
const IO_BUFFER_BYTES: usize = 1 << 20;
const PARTIAL_DIR: &str = "partial";
const TMP_DIR: &str = "tmp";
const PROGRESS_MAGIC: &[u8; 8] = b"cairndl1";
const PROGRESS_BYTES: usize = 32;

/// Why a blob operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// The blob is larger than this store accepts.
    #[error("blob of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The blob's size in bytes.
        size: u64,
        /// The store's limit in bytes.
        max: u64,
    },
    /// Bytes failed verification against their content id: a peer sent a
    /// wrong or damaged range, or a stored file was damaged on disk.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The blob is not in the store.
    #[error("blob {0} is not in the store")]
    NotFound(ContentId),
    /// A range is misaligned, empty, too long or outside the blob.
    #[error("invalid range of {len} bytes at offset {offset} for a blob of {size} bytes: {reason}")]
    BadRange {
        /// The range's first byte.
        offset: u64,
        /// The range's requested length in bytes.
        len: u64,
        /// The blob's size in bytes.
        size: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`Download::accept`] got a range other than the next missing one.
    #[error("range at offset {offset} is out of order: the download needs offset {expected} next")]
    OutOfOrder {
        /// The offset that was offered.
        offset: u64,
        /// The offset the download needs next.
        expected: u64,
    },
    /// [`Download::finish`] was called before every byte was verified.
    #[error("download of {id} is incomplete: {verified_bytes} of {size} bytes verified")]
    Incomplete {
        /// The blob being downloaded.
        id: ContentId,
        /// Bytes verified so far.
        verified_bytes: u64,
        /// The blob's size in bytes.
        size: u64,
    },
    /// Another [`Download`] of the same blob is open in this store.
    #[error("blob {0} is already being downloaded")]
    Busy(ContentId),
    /// The file system failed; the message names the operation and the path.
    #[error("io error: {0}")]
    Io(String),
}

/// Maps an I/O error to [`BlobError::Io`], naming what was being done.
fn io_err(what: impl Display) -> impl FnOnce(io::Error) -> BlobError {
    move |e| BlobError::Io(format!("{what}: {e}"))
}

/// A directory of content-addressed blobs, each stored with its outboard.
///
/// Cheap to clone; clones share the directory and the set of open downloads.
#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
    blob_bytes_max: u64,
    downloads_open: Arc<Mutex<HashSet<ContentId>>>,
}

impl BlobStore {
    /// Opens (creating if needed) the store in `dir`, which accepts blobs of
    /// at most `blob_bytes_max` bytes.
    ///
    /// Removes files left in `tmp/` by an interrupted write: a write that
    /// completed was renamed out of there.
    pub fn open(dir: &Path, blob_bytes_max: u64) -> Result<Self, BlobError> {
        for sub in [dir.to_path_buf(), dir.join(PARTIAL_DIR), dir.join(TMP_DIR)] {
            fs::create_dir_all(&sub).map_err(io_err(format_args!("create {}", sub.display())))?;
        }
        let tmp = dir.join(TMP_DIR);
        let entries = fs::read_dir(&tmp).map_err(io_err(format_args!("list {}", tmp.display())))?;
        for entry in entries {
            let path = entry
                .map_err(io_err(format_args!("list {}", tmp.display())))?
                .path();
            fs::remove_file(&path).map_err(io_err(format_args!("remove {}", path.display())))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            blob_bytes_max,
            downloads_open: Arc::default(),
        })
    }

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest blob this store accepts, in bytes.
    pub fn blob_bytes_max(&self) -> u64 {
        self.blob_bytes_max
    }

    /// Stores `bytes` and returns their content id. Storing a blob that is
    /// already present does nothing.
    pub fn put(&self, bytes: &[u8]) -> Result<ContentId, BlobError> {
        self.check_size(bytes.len() as u64)?;
        let ob = PreOrderMemOutboard::create(bytes, BLOCK_SIZE);
        let id = ContentId::from_digest(*ob.root.as_bytes());
        if self.has(&id) {
            return Ok(id);
        }
        let mut temp = self.temp_file()?;
        let temp_path = temp.path().to_path_buf();
        temp.write_all(bytes)
            .and_then(|()| temp.as_file().sync_all())
            .map_err(io_err(format_args!("write {}", temp_path.display())))?;
        self.install(id, &ob.data, |to| persist(temp, to))?;
        Ok(id)
    }

    /// Copies the file at `path` into the store and returns its content id,
    /// hashing it in the same pass, so memory stays at about 1/256 of the
    /// file's size.
    pub fn put_file(&self, path: &Path) -> Result<ContentId, BlobError> {
        let source = File::open(path).map_err(io_err(format_args!("open {}", path.display())))?;
        let size = source
            .metadata()
            .map_err(io_err(format_args!("stat {}", path.display())))?
            .len();
        self.check_size(size)?;
        let mut temp = self.temp_file()?;
        let tree = BaoTree::new(size, BLOCK_SIZE);
        let mut ob = empty_outboard(tree);
        let root = {
            let mut tee = Tee {
                source: BufReader::with_capacity(IO_BUFFER_BYTES, source.take(size)),
                copy: BufWriter::with_capacity(IO_BUFFER_BYTES, temp.as_file_mut()),
            };
            // Reading exactly `size` bytes: a file that shrinks meanwhile
            // fails here, one that grows is stored up to its size at `stat`.
            outboard(&mut tee, tree, &mut ob)
                .and_then(|root| tee.copy.flush().map(|()| root))
                .map_err(io_err(format_args!(
                    "copy {} into the store",
                    path.display()
                )))?
        };
        let id = ContentId::from_digest(*root.as_bytes());
        if self.has(&id) {
            return Ok(id);
        }
        temp.as_file()
            .sync_all()
            .map_err(io_err(format_args!("sync {}", temp.path().display())))?;
        self.install(id, &ob.data, |to| persist(temp, to))?;
        Ok(id)
    }

    /// Deletes a blob: its bytes first, then its outboard, so a blob that
    /// exists still always has its outboard. True if it was here. A reader
    /// that opened it already keeps reading what it opened.
    pub fn remove(&self, id: &ContentId) -> Result<bool, BlobError> {
        match fs::remove_file(self.data_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(format_args!("remove {id}"))(e)),
        }
        match fs::remove_file(self.outboard_path(id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(io_err(format_args!("remove the outboard of {id}"))(e)),
        }
    }

    /// Whether the blob is in the store.
    pub fn has(&self, id: &ContentId) -> bool {
        self.data_path(id).is_file()
    }

    /// The blob's size in bytes, if it is in the store.
    pub fn size(&self, id: &ContentId) -> Option<u64> {
        fs::metadata(self.data_path(id))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Reads the whole blob, checking it against its id so that damage on
    /// disk is reported rather than passed on.
    pub fn read(&self, id: &ContentId) -> Result<Vec<u8>, BlobError> {
        let path = self.data_path(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::NotFound(*id)),
            Err(e) => return Err(io_err(format_args!("read {}", path.display()))(e)),
        };
        if ContentId::of(&bytes) != *id {
            return Err(BlobError::Corrupt(format!(
                "stored blob {id} does not hash to its id"
            )));
        }
        Ok(bytes)
    }

    /// The path of the blob's bytes, if it is in the store. The file is not
    /// checked; [`read`](Self::read) does.
    pub fn path(&self, id: &ContentId) -> Option<PathBuf> {
        let path = self.data_path(id);
        path.is_file().then_some(path)
    }

    /// Serving side: the bao encoding of `[offset, offset + len)` of a stored
    /// blob (the bytes interleaved with the hashes that prove them against
    /// `id`) and the blob's size, so a client that knows only the id learns
    /// it.
    ///
    /// `offset` must be a multiple of [`CHUNK_GROUP_BYTES`] and at most the
    /// size; the range is clipped at the end of the blob and must otherwise
    /// end on a chunk group; `len` is at most [`RANGE_BYTES_MAX`]. An empty
    /// range (`offset == size` or `len == 0`) encodes to nothing. The stored
    /// bytes are hashed on the way out, so a damaged file is reported as
    /// [`BlobError::Corrupt`] instead of being served.
    pub fn encode_range(
        &self,
        id: &ContentId,
        offset: u64,
        len: u64,
    ) -> Result<(u64, Vec<u8>), BlobError> {
        let data_path = self.data_path(id);
        let data = match File::open(&data_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::NotFound(*id)),
            Err(e) => return Err(io_err(format_args!("open {}", data_path.display()))(e)),
        };
        let size = data
            .metadata()
            .map_err(io_err(format_args!("stat {}", data_path.display())))?
            .len();
        let end = check_range(size, offset, len)?;
        if end == offset {
            return Ok((size, Vec::new()));
        }
        let outboard_path = self.outboard_path(id);
        let outboard_file = File::open(&outboard_path)
            .map_err(io_err(format_args!("open {}", outboard_path.display())))?;
        let tree = BaoTree::new(size, BLOCK_SIZE);
        let outboard_len = outboard_file
            .metadata()
            .map_err(io_err(format_args!("stat {}", outboard_path.display())))?
            .len();
        if outboard_len != tree.outboard_size() {
            return Err(BlobError::Corrupt(format!(
                "outboard of {id} has {outboard_len} bytes, expected {}",
                tree.outboard_size()
            )));
        }
        // One read for the whole range rather than one per chunk group.
        let mut window = vec![0u8; usize_of(end - offset)];
        data.read_exact_at(offset, &mut window)
            .map_err(io_err(format_args!("read {}", data_path.display())))?;
        let ob = PreOrderOutboard {
            root: blake3::Hash::from_bytes(*id.as_bytes()),
            tree,
            data: outboard_file,
        };
        let mut encoded = Vec::with_capacity(usize_of(encoded_bytes(size, offset, end)));
        encode_into(
            Window {
                start: offset,
                bytes: &window,
            },
            &ob,
            id,
            offset,
            end,
            &mut encoded,
        )?;
        Ok((size, encoded))
    }

    /// Fetching side: starts, or resumes after a restart, a download of `id`,
    /// whose size is `size` bytes.
    ///
    /// The size comes from an announcement or the first response and is not
    /// trusted: a wrong size makes ranges fail verification (at the latest
    /// the last one). If the store already has the blob, the download is
    /// complete at once. Progress recorded for a different size is dropped.
    pub fn download(&self, id: ContentId, size: u64) -> Result<Download, BlobError> {
        self.check_size(size)?;
        let open = OpenDownload::register(&self.downloads_open, id)?;
        if let Some(stored) = self.size(&id) {
            if stored != size {
                return Err(BlobError::Corrupt(format!(
                    "announced size {size} of {id} differs from the stored size {stored}"
                )));
            }
            return Ok(Download {
                store: self.clone(),
                id,
                size,
                verified_bytes: size,
                recorded_bytes: size,
                partial: None,
                _open: open,
            });
        }
        let data_path = self.partial_data_path(&id);
        let progress_path = self.progress_path(&id);
        let recorded = read_progress(&progress_path)
            .filter(|progress| progress.size == size)
            .map_or(0, |progress| progress.verified_bytes);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(io_err(format_args!("open {}", data_path.display())))?;
        let len = file
            .metadata()
            .map_err(io_err(format_args!("stat {}", data_path.display())))?
            .len();
        // The data is fsynced before the progress that covers it, so a file
        // shorter than the record means the record is not to be believed.
        let verified_bytes = if len < recorded { 0 } else { recorded };
        // Bytes past the verified prefix were written but never recorded as
        // verified; they go.
        file.set_len(verified_bytes)
            .map_err(io_err(format_args!("truncate {}", data_path.display())))?;
        Ok(Download {
            store: self.clone(),
            id,
            size,
            verified_bytes,
            recorded_bytes: verified_bytes,
            partial: Some(file),
            _open: open,
        })
    }

    fn check_size(&self, size: u64) -> Result<(), BlobError> {
        if size > self.blob_bytes_max {
            return Err(BlobError::TooLarge {
                size,
                max: self.blob_bytes_max,
            });
        }
        Ok(())
    }

    fn data_path(&self, id: &ContentId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn outboard_path(&self, id: &ContentId) -> PathBuf {
        self.dir.join(format!("{id}.obao"))
    }

    fn partial_data_path(&self, id: &ContentId) -> PathBuf {
        self.dir.join(PARTIAL_DIR).join(id.to_string())
    }

    fn progress_path(&self, id: &ContentId) -> PathBuf {
        self.dir.join(PARTIAL_DIR).join(format!("{id}.progress"))
    }

    fn temp_file(&self) -> Result<NamedTempFile, BlobError> {
        let tmp = self.dir.join(TMP_DIR);
        NamedTempFile::new_in(&tmp)
            .map_err(io_err(format_args!("create a file in {}", tmp.display())))
    }

    /// Writes `outboard` for `id` durably, then has `move_data` put the
    /// already fsynced bytes at the blob's path. The outboard goes first so
    /// that a blob that exists always has one.
    fn install(
        &self,
        id: ContentId,
        outboard: &[u8],
        move_data: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<(), BlobError> {
        let outboard_path = self.outboard_path(&id);
        let mut temp = self.temp_file()?;
        temp.write_all(outboard)
            .and_then(|()| temp.as_file().sync_all())
            .and_then(|()| persist(temp, &outboard_path))
            .map_err(io_err(format_args!("write {}", outboard_path.display())))?;
        let data_path = self.data_path(&id);
        move_data(&data_path).map_err(io_err(format_args!("write {}", data_path.display())))?;
        sync_dir(&self.dir)
    }
}

/// A download in progress: the verified prefix of one blob, kept on disk.
///
/// Ranges are taken in order. Each accepted range is verified against the
/// blob's id and written. Progress is made durable at checkpoints (every
/// [`CHECKPOINT_BYTES`], at the end, and when the `Download` is dropped):
/// the data is fsynced before the record covers it, so after a crash
/// [`BlobStore::download`] resumes after the last checkpoint and fetches at
/// most `CHECKPOINT_BYTES` again. An fsync per range would cap transfers at
/// the disk's sync rate.
#[derive(Debug)]
pub struct Download {
    store: BlobStore,
    id: ContentId,
    size: u64,
    verified_bytes: u64,
    /// Bytes covered by the durable progress record.
    recorded_bytes: u64,
    /// The partial data file; `None` when the store already had the blob.
    partial: Option<File>,
    _open: OpenDownload,
}

/// Verified bytes a download may hold beyond its durable record.
pub const CHECKPOINT_BYTES: u64 = 64 << 20;

impl Download {
    /// The blob being downloaded.
    pub fn id(&self) -> ContentId {
        self.id
    }

    /// The blob's size in bytes, as given to [`BlobStore::download`].
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes verified and stored so far, all from the start of the blob.
    pub fn verified_bytes(&self) -> u64 {
        self.verified_bytes
    }

    /// Whether every byte is verified, so [`finish`](Self::finish) will work.
    pub fn is_complete(&self) -> bool {
        self.verified_bytes == self.size
    }

    /// The next range to request, as `(offset, len)`, or `None` when the
    /// download is complete. `chunk_bytes` is rounded down to whole chunk
    /// groups (at least one) and capped at [`RANGE_BYTES_MAX`].
    pub fn next_range(&self, chunk_bytes: u64) -> Option<(u64, u64)> {
        if self.is_complete() {
            return None;
        }
        let chunk_bytes = (chunk_bytes / CHUNK_GROUP_BYTES * CHUNK_GROUP_BYTES)
            .clamp(CHUNK_GROUP_BYTES, RANGE_BYTES_MAX);
        let len = chunk_bytes.min(self.size - self.verified_bytes);
        Some((self.verified_bytes, len))
    }

    /// Verifies `encoded`, a peer's answer to a request for
    /// `[offset, offset + len)`, against the blob's id and stores it.
    ///
    /// A range that fails verification is rejected with
    /// [`BlobError::Corrupt`] and nothing is written; the download carries on
    /// with the next answer. The range must be the next missing one
    /// ([`BlobError::OutOfOrder`] otherwise).
    pub fn accept(&mut self, offset: u64, len: u64, encoded: &[u8]) -> Result<(), BlobError> {
        let size = self.size;
        let bad = |reason| BlobError::BadRange {
            offset,
            len,
            size,
            reason,
        };
        let Some(file) = self.partial.as_mut().filter(|_| self.verified_bytes < size) else {
            return Err(bad("the download is already complete"));
        };
        if offset != self.verified_bytes {
            return Err(BlobError::OutOfOrder {
                offset,
                expected: self.verified_bytes,
            });
        }
        let end = check_range(size, offset, len)?;
        if end == offset {
            return Err(bad("the range is empty"));
        }
        let bytes = verify_range(&self.id, size, offset, len, encoded)?;
        let data_path = self.store.partial_data_path(&self.id);
        file.write_all_at(offset, &bytes)
            .map_err(io_err(format_args!("write {}", data_path.display())))?;
        self.verified_bytes = end;
        if end == size || end - self.recorded_bytes >= CHECKPOINT_BYTES {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Makes the verified bytes durable, then the record that covers them.
    fn checkpoint(&mut self) -> Result<(), BlobError> {
        let Some(file) = self.partial.as_ref() else {
            return Ok(());
        };
        if self.recorded_bytes == self.verified_bytes {
            return Ok(());
        }
        let data_path = self.store.partial_data_path(&self.id);
        file.sync_data()
            .map_err(io_err(format_args!("sync {}", data_path.display())))?;
        // Only now, with the bytes durable, does the record cover them.
        write_progress(&self.store, &self.id, self.size, self.verified_bytes)?;
        self.recorded_bytes = self.verified_bytes;
        Ok(())
    }

    /// Completes the download: checks the whole blob once more against its
    /// id while computing its outboard, moves both into the store and
    /// returns the id.
    ///
    /// A blob that fails this check (its partial file was damaged on disk
    /// between sessions) is discarded and reported as
    /// [`BlobError::Corrupt`].
    pub fn finish(mut self) -> Result<ContentId, BlobError> {
        let id = self.id;
        if !self.is_complete() {
            return Err(BlobError::Incomplete {
                id,
                verified_bytes: self.verified_bytes,
                size: self.size,
            });
        }
        let Some(mut file) = self.partial.take() else {
            return Ok(id);
        };
        let store = &self.store;
        let data_path = store.partial_data_path(&id);
        let progress_path = store.progress_path(&id);
        if store.has(&id) {
            drop(file);
            discard(&[&data_path, &progress_path])?;
            return Ok(id);
        }
        let tree = BaoTree::new(self.size, BLOCK_SIZE);
        let mut ob = empty_outboard(tree);
        let root = file
            .rewind()
            .and_then(|()| {
                let reader = BufReader::with_capacity(IO_BUFFER_BYTES, (&file).take(self.size));
                outboard(reader, tree, &mut ob)
            })
            .map_err(io_err(format_args!("read {}", data_path.display())))?;
        drop(file);
        if root.as_bytes() != id.as_bytes() {
            discard(&[&data_path, &progress_path])?;
            return Err(BlobError::Corrupt(format!(
                "downloaded data does not hash to {id}; discarded"
            )));
        }
        store.install(id, &ob.data, |to| fs::rename(&data_path, to))?;
        discard(&[&progress_path])?;
        Ok(id)
    }
}

impl Drop for Download {
    /// Keeps what was verified so far for the next `download` of this blob.
    fn drop(&mut self) {
        // On failure there is nobody to tell: the next download starts
        // from the last checkpoint instead.
        let _ = self.checkpoint();
    }
}

/// Fetching side, without a store: checks `encoded`, the bao encoding of
/// `[offset, offset + len)` of the blob `id` of `size` bytes, and returns the
/// range's bytes.
///
/// The same rules as [`BlobStore::encode_range`] apply to the range. Besides
/// [`Download::accept`], this lets a client check a range it requests out of
/// order, such as the last chunk group, which proves `size`.
pub fn verify_range(
    id: &ContentId,
    size: u64,
    offset: u64,
    len: u64,
    encoded: &[u8],
) -> Result<Vec<u8>, BlobError> {
    let end = check_range(size, offset, len)?;
    let expected = encoded_bytes(size, offset, end);
    if encoded.len() as u64 != expected {
        return Err(BlobError::Corrupt(format!(
            "range [{offset}, {end}) of {id}: expected {expected} encoded bytes, got {}",
            encoded.len()
        )));
    }
    if end == offset {
        return Ok(Vec::new());
    }
    let tree = BaoTree::new(size, BLOCK_SIZE);
    let ranges = chunk_ranges(offset, end);
    let root = blake3::Hash::from_bytes(*id.as_bytes());
    let mut bytes = Vec::with_capacity(usize_of(end - offset));
    for item in DecodeResponseIter::new(root, tree, Cursor::new(encoded), &ranges) {
        let item = item.map_err(|e| {
            BlobError::Corrupt(format!(
                "range [{offset}, {end}) of {id} fails verification: {e}"
            ))
        })?;
        if let BaoContentItem::Leaf(leaf) = item {
            // Leaves come in order and only from the requested groups: the
            // tree's shape, not the peer, decides where they go.
            assert_eq!(leaf.offset, offset + bytes.len() as u64);
            bytes.extend_from_slice(&leaf.data);
        }
    }
    assert_eq!(bytes.len() as u64, end - offset);
    Ok(bytes)
}

/// The exact length of the encoding of `[offset, offset + len)` of a blob of
/// `size` bytes, so a client can refuse an oversized answer before reading
/// it.
pub fn encoded_range_bytes(size: u64, offset: u64, len: u64) -> Result<u64, BlobError> {
    let end = check_range(size, offset, len)?;
    Ok(encoded_bytes(size, offset, end))
}

/// Checks a range against the rules of [`BlobStore::encode_range`] and
/// returns its end, clipped to the blob.
fn check_range(size: u64, offset: u64, len: u64) -> Result<u64, BlobError> {
    let bad = |reason| {
        Err(BlobError::BadRange {
            offset,
            len,
            size,
            reason,
        })
    };
    if !offset.is_multiple_of(CHUNK_GROUP_BYTES) {
        return bad("the offset is not a multiple of the 16 KiB chunk group");
    }
    if offset > size {
        return bad("the offset lies past the end of the blob");
    }
    if len > RANGE_BYTES_MAX {
        return bad("the length exceeds RANGE_BYTES_MAX");
    }
    let end = offset.saturating_add(len).min(size);
    if end != size && !end.is_multiple_of(CHUNK_GROUP_BYTES) {
        return bad("the range ends neither on a 16 KiB chunk group nor at the end of the blob");
    }
    Ok(end)
}

/// The chunks of a checked range.
fn chunk_ranges(offset: u64, end: u64) -> ChunkRanges {
    ChunkRanges::from(ChunkNum::full_chunks(offset)..ChunkNum::chunks(end))
}

/// The length of the encoding of a checked range: its bytes plus one hash
/// pair for every tree node above them.
fn encoded_bytes(size: u64, offset: u64, end: u64) -> u64 {
    if end == offset {
        return 0;
    }
    let tree = BaoTree::new(size, BLOCK_SIZE);
    let ranges = chunk_ranges(offset, end);
    let parents = tree
        .ranges_pre_order_chunks_iter_ref(truncate_ranges(&ranges, size), 0)
        .filter(|item| matches!(item, BaoChunk::Parent { .. }))
        .count() as u64;
    (end - offset) + parents * 64
}

/// Appends the encoding of the checked range `[offset, end)` to `out`,
/// hashing the data on the way so corruption is caught before it is sent.
fn encode_into(
    data: impl ReadAt,
    ob: impl Outboard,
    id: &ContentId,
    offset: u64,
    end: u64,
    out: &mut Vec<u8>,
) -> Result<(), BlobError> {
    let ranges = chunk_ranges(offset, end);
    encode_ranges_validated(data, ob, &ranges, out).map_err(|e| match e {
        EncodeError::ParentHashMismatch(_) | EncodeError::LeafHashMismatch(_) => {
            BlobError::Corrupt(format!(
                "stored blob {id} fails verification in [{offset}, {end}): {e}"
            ))
        }
        e => BlobError::Io(format!("encode [{offset}, {end}) of {id}: {e}")),
    })
}

/// An outboard of the right size for `tree`, hashes not yet computed.
fn empty_outboard(tree: BaoTree) -> PreOrderMemOutboard {
    PreOrderMemOutboard {
        root: blake3::Hash::from_bytes([0; 32]),
        tree,
        data: vec![0; usize_of(tree.outboard_size())],
    }
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).expect("a blob range fits in memory")
}

/// A slice that stands in for the bytes `[start, start + bytes.len())` of a
/// blob.
struct Window<'a> {
    start: u64,
    bytes: &'a [u8],
}

impl ReadAt for Window<'_> {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let pos = pos.checked_sub(self.start).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "read before the start of the window",
            )
        })?;
        self.bytes.read_at(pos, buf)
    }
}

/// A reader that copies what it reads into `copy`.
struct Tee<R, W> {
    source: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.source.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn persist(temp: NamedTempFile, to: &Path) -> io::Result<()> {
    temp.persist(to).map(drop).map_err(|e| e.error)
}

/// Makes renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format_args!("sync {}", dir.display())))
}

fn discard(paths: &[&Path]) -> Result<(), BlobError> {
    for path in paths {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format_args!("remove {}", path.display()))(e)),
        }
    }
    Ok(())
}

/// What a `.progress` file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    size: u64,
    verified_bytes: u64,
}

fn encode_progress(progress: Progress) -> [u8; PROGRESS_BYTES] {
    let mut out = [0u8; PROGRESS_BYTES];
    out[..8].copy_from_slice(PROGRESS_MAGIC);
    out[8..16].copy_from_slice(&progress.size.to_le_bytes());
    out[16..24].copy_from_slice(&progress.verified_bytes.to_le_bytes());
    let check = blake3::hash(&out[..24]);
    out[24..].copy_from_slice(&check.as_bytes()[..8]);
    out
}

/// Reads a progress record; anything unreadable or implausible counts as no
/// progress, which costs a re-download and never trusts unverified bytes.
fn read_progress(path: &Path) -> Option<Progress> {
    let bytes: [u8; PROGRESS_BYTES] = fs::read(path).ok()?.try_into().ok()?;
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let progress = Progress {
        size: word(8),
        verified_bytes: word(16),
    };
    let plausible = progress.verified_bytes <= progress.size
        && (progress.verified_bytes.is_multiple_of(CHUNK_GROUP_BYTES)
            || progress.verified_bytes == progress.size);
    (encode_progress(progress) == bytes && plausible).then_some(progress)
}

/// Replaces the progress record atomically. The directory is not fsynced:
/// after a crash an older record is harmless, it only covers less.
fn write_progress(
    store: &BlobStore,
    id: &ContentId,
    size: u64,
    verified_bytes: u64,
) -> Result<(), BlobError> {
    let path = store.progress_path(id);
    let mut temp = store.temp_file()?;
    let record = encode_progress(Progress {
        size,
        verified_bytes,
    });
    temp.write_all(&record)
        .and_then(|()| temp.as_file().sync_all())
        .and_then(|()| persist(temp, &path))
        .map_err(io_err(format_args!("write {}", path.display())))
}

/// Marks a blob as being downloaded in one store for as long as it lives.
#[derive(Debug)]
struct OpenDownload {
    open: Arc<Mutex<HashSet<ContentId>>>,
    id: ContentId,
}

impl OpenDownload {
    fn register(open: &Arc<Mutex<HashSet<ContentId>>>, id: ContentId) -> Result<Self, BlobError> {
        // The set holds plain ids, so a panic elsewhere cannot leave it
        // inconsistent; carry on past a poisoned lock.
        let mut set = open.lock().unwrap_or_else(PoisonError::into_inner);
        if !set.insert(id) {
            return Err(BlobError::Busy(id));
        }
        Ok(Self {
            open: Arc::clone(open),
            id,
        })
    }
}

impl Drop for OpenDownload {
    fn drop(&mut self) {
        let mut set = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = set.remove(&self.id);
        debug_assert!(removed, "an open download is registered");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut out);
        out
    }

    #[test]
    fn progress_record_round_trips_and_rejects_damage() {
        let progress = Progress {
            size: 5 << 20,
            verified_bytes: 2 << 20,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        fs::write(&path, encode_progress(progress)).unwrap();
        assert_eq!(read_progress(&path), Some(progress));
        let mut bytes = encode_progress(progress);
        bytes[17] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert_eq!(read_progress(&path), None);
        fs::write(&path, &encode_progress(progress)[..31]).unwrap();
        assert_eq!(read_progress(&path), None);
    }

    #[test]
    fn encoded_bytes_matches_the_encoder() {
        for size in [1u64, 16384, 16385, 100_000, 1 << 20, (3 << 20) + 5] {
            let data = random_bytes(size, usize_of(size));
            let ob = PreOrderMemOutboard::create(&data, BLOCK_SIZE);
            let id = ContentId::of(&data);
            for (offset, len) in [(0, 16384), (0, size), (16384, 65536), (16384 * 3, 1 << 20)] {
                let Ok(end) = check_range(size, offset, len) else {
                    continue;
                };
                let mut out = Vec::new();
                if end > offset {
                    encode_into(data.as_slice(), &ob, &id, offset, end, &mut out).unwrap();
                }
                assert_eq!(out.len() as u64, encoded_bytes(size, offset, end));
            }
        }
    }

    /// Encode + verify of a 256 MiB blob in memory in 4 MiB ranges, against
    /// plain BLAKE3 over the same bytes measured in the same run; then the
    /// same transfer through two stores on disk (fsync per range included).
    ///
    /// `cargo test -p cairn-store --release -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark"]
    fn bench_transfer_256_mib() {
        const SIZE: usize = 256 << 20;
        const RANGE: u64 = 4 << 20;
        let mb = |secs: f64| SIZE as f64 / 1e6 / secs;
        let data = random_bytes(1, SIZE);

        let started = Instant::now();
        let hash = blake3::hash(&data);
        let baseline = mb(started.elapsed().as_secs_f64());
        let id = ContentId::from(hash);

        let started = Instant::now();
        let ob = PreOrderMemOutboard::create(&data, BLOCK_SIZE);
        let outboard_rate = mb(started.elapsed().as_secs_f64());
        assert_eq!(ob.root, hash);

        // Encode and verify range by range, timing each side; the verified
        // bytes are compared with the original rather than collected, so the
        // loop measures the transfer and not page faults of a 256 MiB buffer.
        let mut encoded = Vec::new();
        let (mut encode_secs, mut verify_secs) = (0.0, 0.0);
        let mut offset = 0;
        while offset < SIZE as u64 {
            let end = check_range(SIZE as u64, offset, RANGE).unwrap();
            let started = Instant::now();
            encoded.clear();
            encode_into(data.as_slice(), &ob, &id, offset, end, &mut encoded).unwrap();
            let encoded_at = Instant::now();
            let bytes = verify_range(&id, SIZE as u64, offset, RANGE, &encoded).unwrap();
            verify_secs += encoded_at.elapsed().as_secs_f64();
            encode_secs += (encoded_at - started).as_secs_f64();
            assert!(bytes == data[usize_of(offset)..usize_of(end)]);
            offset = end;
        }
        let memory = mb(encode_secs + verify_secs);

        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let server = BlobStore::open(a.path(), SIZE as u64).unwrap();
        let client = BlobStore::open(b.path(), SIZE as u64).unwrap();
        let started = Instant::now();
        assert_eq!(server.put(&data).unwrap(), id);
        let put = mb(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let mut download = client.download(id, SIZE as u64).unwrap();
        let mut serve_secs = 0.0;
        while let Some((offset, len)) = download.next_range(RANGE) {
            let serve_started = Instant::now();
            let (_, encoded) = server.encode_range(&id, offset, len).unwrap();
            serve_secs += serve_started.elapsed().as_secs_f64();
            download.accept(offset, len, &encoded).unwrap();
        }
        let accepted = started.elapsed().as_secs_f64();
        assert_eq!(download.finish().unwrap(), id);
        let finished = started.elapsed().as_secs_f64();

        println!("blob transfer, 256 MiB in 4 MiB ranges:");
        println!("  blake3::hash (baseline)            {baseline:8.0} MB/s");
        println!(
            "  outboard creation                  {outboard_rate:8.0} MB/s ({:.2}x baseline)",
            outboard_rate / baseline
        );
        println!(
            "  encode + verify, in memory         {memory:8.0} MB/s ({:.2}x baseline)",
            memory / baseline
        );
        println!(
            "    encode alone                     {:8.0} MB/s",
            mb(encode_secs)
        );
        println!(
            "    verify alone                     {:8.0} MB/s",
            mb(verify_secs)
        );
        println!("  put, on disk                       {put:8.0} MB/s");
        println!(
            "  encode_range alone, from disk      {:8.0} MB/s",
            mb(serve_secs)
        );
        println!(
            "  encode_range + accept, on disk     {:8.0} MB/s",
            mb(accepted)
        );
        println!(
            "  ... + finish (rehash, outboard)    {:8.0} MB/s",
            mb(finished)
        );
    }
}
