//! A bounded on-disk cache of compiled modules, shared by every node on a
//! machine.
//!
//! Compiling a module is the largest fixed cost of a provider's first task:
//! about a second per few megabytes of Wasm on one core, paid again on every
//! start and by every node on the machine. wasmtime can serialize a compiled
//! module and load it back in milliseconds, so this cache keeps them on disk.
//!
//! - **Key.** An entry is named by BLAKE3 over the module's content id, a
//!   fingerprint of Cairn's load-time rewrites (NaN canonicalisation,
//!   exported globals: their source and the pinned versions of the crates
//!   they use, so any change to them is a miss) and the engine's
//!   compatibility hash (wasmtime's own digest of its version and every
//!   setting that changes machine code). A hit needs no rewriting and no
//!   compiling: the module is ready in milliseconds.
//! - **Integrity.** Loading machine code runs it, so nothing unchecked is
//!   loaded: an entry carries a magic, its key and the BLAKE3 of its payload,
//!   and wasmtime checks the payload's own version and settings again. An
//!   entry that fails any check (torn write, bit rot, another engine's or
//!   another module's file) is deleted and the module is compiled afresh.
//! - **Bound.** The folder holds at most `bytes_max`; the least recently
//!   used entries go first (use updates an entry's modification time).
//! - **Once per machine.** A per-entry lock file makes concurrent loaders
//!   (threads or processes) of the same module wait for the one compiling it
//!   instead of compiling it again: three providers on one machine compile a
//!   new module once.
//!
//! Entries are trusted once their checksums match, like the node's own
//! binary, so the folder must be private: it is created owner-only, and one
//! that others could write to (or that another user owns) is refused.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cairn_wire::ContentId;
use wasmtime::{Engine, Module};

use crate::ExecError;

/// Marks a cache entry, and its format's version.
const MAGIC: &[u8; 8] = b"cairnmc1";
/// Magic, key, digest of the payload.
const HEADER_BYTES: usize = MAGIC.len() + 32 + 32;
const ENTRY_SUFFIX: &str = "cwasm";
const LOCK_SUFFIX: &str = "lock";
const TMP_SUFFIX: &str = "tmp";
/// A module's own bytes, kept so a module loaded compiled can still be
/// rewritten for a trace (see `pause::Variant`).
const SOURCE_SUFFIX: &str = "wasm";
/// A temporary file older than this was left by a crashed writer.
const TMP_AGE_MAX: Duration = Duration::from_secs(3_600);

/// A folder of compiled modules (see the module docs).
#[derive(Clone, Debug)]
pub struct ModuleCache {
    dir: PathBuf,
    bytes_max: u64,
    /// Modules loaded from the folder, and compiled, by this handle.
    counts: Arc<[AtomicU64; 2]>,
}

impl ModuleCache {
    /// Opens (creating it owner-only if needed) the cache in `dir`, holding
    /// at most `bytes_max` bytes of entries. A folder another user owns, or
    /// that others may write to, is refused: its entries could run as code.
    pub fn open(dir: impl Into<PathBuf>, bytes_max: u64) -> Result<Self, ExecError> {
        let dir = dir.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(ExecError::io(format!("creating {}", dir.display())))?;
        let meta = std::fs::metadata(&dir)
            .map_err(ExecError::io(format!("inspecting {}", dir.display())))?;
        // `/proc/self` belongs to the process's effective user.
        let me = std::fs::metadata("/proc/self").map_or(meta.uid(), |m| m.uid());
        if meta.uid() != me || meta.mode() & 0o022 != 0 {
            return Err(ExecError::Host(format!(
                "the module cache {} must be owned by this user and writable by nobody else \
                 (its compiled code is run as trusted); fix it with `chmod 700 {}`, or choose \
                 another folder",
                dir.display(),
                dir.display()
            )));
        }
        Ok(Self {
            dir,
            bytes_max,
            counts: Arc::default(),
        })
    }

    /// How many modules this handle loaded from the folder, and how many it
    /// compiled.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts[0].load(Ordering::Relaxed),
            self.counts[1].load(Ordering::Relaxed),
        )
    }

    /// Whether `module`, rewritten as `rewrite` fingerprints and compiled
    /// by `engine`, is here (without checking it): what a provider's estimate
    /// of its start-up time rests on.
    pub(crate) fn contains(&self, engine: &Engine, module: &ContentId, rewrite: &[u8; 32]) -> bool {
        self.entry_path(&key(engine, module, rewrite)).exists()
    }

    /// The compiled module for `module`, rewritten as `rewrite`
    /// fingerprints, if a sound entry is here.
    pub(crate) fn get(
        &self,
        engine: &Engine,
        module: &ContentId,
        rewrite: &[u8; 32],
    ) -> Result<Option<Module>, ExecError> {
        let key = key(engine, module, rewrite);
        let path = self.entry_path(&key);
        if !path.exists() {
            return Ok(None);
        }
        // Wait for a writer of this entry to finish.
        let _lock = self.lock(&key)?;
        let loaded = self.load(engine, &path, &key);
        if loaded.is_some() {
            // Its bytes, if kept, are as recently used as it is.
            touch(&self.source_path(module));
        }
        Ok(loaded)
    }

    /// The compiled module for `module`, rewritten as `rewrite`
    /// fingerprints: loaded from the cache when a sound entry exists,
    /// otherwise compiled by `compile` and stored.
    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        module: &ContentId,
        rewrite: &[u8; 32],
        compile: impl FnOnce() -> Result<Module, ExecError>,
    ) -> Result<Module, ExecError> {
        let key = key(engine, module, rewrite);
        let path = self.entry_path(&key);
        // Held while this process compiles, so others wait and then load.
        let lock = self.lock(&key)?;
        if let Some(module) = self.load(engine, &path, &key) {
            return Ok(module);
        }
        let module = compile()?;
        self.counts[1].fetch_add(1, Ordering::Relaxed);
        match module.serialize() {
            Ok(payload) => {
                if let Err(e) = self.store(&path, &key, &payload) {
                    // A full disk costs speed, never a task.
                    eprintln!("cairn: module cache: storing {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("cairn: module cache: serializing: {e:#}"),
        }
        drop(lock);
        self.evict();
        Ok(module)
    }

    fn entry_path(&self, key: &[u8; 32]) -> PathBuf {
        self.dir
            .join(format!("{}.{ENTRY_SUFFIX}", cairn_wire::hex(key)))
    }

    fn lock(&self, key: &[u8; 32]) -> Result<File, ExecError> {
        let path = self
            .dir
            .join(format!("{}.{LOCK_SUFFIX}", cairn_wire::hex(key)));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ExecError::io(format!("opening {}", path.display())))?;
        file.lock()
            .map_err(ExecError::io(format!("locking {}", path.display())))?;
        Ok(file)
    }

    /// The entry at `path` if every check passes (counted as loaded); a
    /// failing entry is removed.
    fn load(&self, engine: &Engine, path: &Path, key: &[u8; 32]) -> Option<Module> {
        let bytes = std::fs::read(path).ok()?;
        let sound = bytes.len() > HEADER_BYTES
            && bytes[..MAGIC.len()] == MAGIC[..]
            && bytes[MAGIC.len()..][..32] == key[..]
            && bytes[MAGIC.len() + 32..][..32] == *blake3::hash(&bytes[HEADER_BYTES..]).as_bytes();
        let module = sound
            .then(|| {
                // SAFETY: the payload is byte for byte what this cache wrote
                // from `Module::serialize` (its BLAKE3 matches the header, in
                // a folder private to this user), and wasmtime checks that it
                // was made by a compatible engine before using it.
                unsafe { Module::deserialize(engine, &bytes[HEADER_BYTES..]) }.ok()
            })
            .flatten();
        match module {
            Some(module) => {
                self.counts[0].fetch_add(1, Ordering::Relaxed);
                // Recently used: the last to be evicted.
                let _ = File::options()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                Some(module)
            }
            None => {
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    /// Keeps `bytes`, the module `module`, beside its compiled entries.
    pub(crate) fn keep_source(&self, module: &ContentId, bytes: &[u8]) {
        let path = self.source_path(module);
        if path.exists() {
            touch(&path);
            return;
        }
        if bytes.len() as u64 > self.bytes_max {
            return;
        }
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = path.with_extension(format!(
            "{}-{}.{TMP_SUFFIX}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        self.evict();
    }

    /// The module `module`'s bytes, if they are here and are its bytes.
    pub(crate) fn source(&self, module: &ContentId) -> Option<Vec<u8>> {
        let path = self.source_path(module);
        let bytes = std::fs::read(&path).ok()?;
        touch(&path);
        (ContentId::of(&bytes) == *module).then_some(bytes)
    }

    fn source_path(&self, module: &ContentId) -> PathBuf {
        self.dir.join(format!(
            "{}.{SOURCE_SUFFIX}",
            cairn_wire::hex(module.as_bytes())
        ))
    }

    fn store(&self, path: &Path, key: &[u8; 32], payload: &[u8]) -> std::io::Result<()> {
        if payload.len() as u64 + HEADER_BYTES as u64 > self.bytes_max {
            return Ok(());
        }
        // A name of its own, created fresh (never through a link someone
        // left there), so concurrent writers never share a file.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = path.with_extension(format!(
            "{}-{}.{TMP_SUFFIX}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(key)?;
        file.write_all(blake3::hash(payload).as_bytes())?;
        file.write_all(payload)?;
        file.sync_all()?;
        // Renamed into place whole: a reader sees the old entry, none, or
        // this one, never half of it.
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// Removes the least recently used entries until the folder fits, and
    /// what crashed writers left behind.
    fn evict(&self) {
        let Ok(listing) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for entry in listing.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let Ok(modified) = meta.modified() else {
                continue;
            };
            match path.extension().and_then(|x| x.to_str()) {
                Some(ENTRY_SUFFIX | SOURCE_SUFFIX) => entries.push((modified, meta.len(), path)),
                Some(TMP_SUFFIX)
                    if now.duration_since(modified).unwrap_or_default() > TMP_AGE_MAX =>
                {
                    let _ = std::fs::remove_file(&path);
                }
                _ => {}
            }
        }
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.bytes_max {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                // The lock goes too unless someone holds it (compiling this
                // module again right now): lock files stay as few as entries.
                let lock = path.with_extension(LOCK_SUFFIX);
                if let Ok(file) = File::open(&lock)
                    && file.try_lock().is_ok()
                {
                    let _ = std::fs::remove_file(&lock);
                }
            }
        }
    }
}

/// Marks `path` recently used (the last to be evicted), if it is there.
fn touch(path: &Path) {
    let _ = File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
}

/// An entry's key: the module, the rewrites it went through, and everything
/// about the engine that changes the machine code compiled from it.
fn key(engine: &Engine, module: &ContentId, rewrite: &[u8; 32]) -> [u8; 32] {
    use std::hash::{Hash, Hasher};
    // wasmtime exposes its compatibility hash only through `Hash`; SipHash
    // with the default keys is fixed for a given build, which is all a
    // machine-local cache needs.
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let mut key = blake3::Hasher::new_derive_key("cairn compiled module cache v1");
    key.update(module.as_bytes());
    key.update(rewrite);
    key.update(&hasher.finish().to_le_bytes());
    key.update(env!("CARGO_PKG_VERSION").as_bytes());
    *key.finalize().as_bytes()
}
