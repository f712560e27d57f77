//! A bounded on-disk cache of compiled modules, shared by every node on a
//! machine.
//!
//! Compiling a module is the largest fixed cost of a provider's first task:
//! about a second per few megabytes of Wasm on one core, paid again on every
//! start and by every node on the machine. wasmtime can serialize a compiled
//! module and load it back in milliseconds, so this cache keeps them on disk.
//!
//! - **Key.** An entry is named by BLAKE3 over the module's content id, the
//!   version of Cairn's load-time rewrites (NaN canonicalisation, exported
//!   globals; bumped whenever their output changes, which a test watches)
//!   and the engine's compatibility hash (wasmtime's own digest of its
//!   version and every setting that changes machine code). A hit needs no
//!   rewriting and no compiling: the module is ready in milliseconds.
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
//! The folder must be private to the node's user: entries are trusted once
//! their checksums match, like the node's own binary.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use cairn_wire::ContentId;
use wasmtime::{Engine, Module};

use crate::ExecError;

/// Marks a cache entry, and its format's version.
const MAGIC: &[u8; 8] = b"cairnmc1";
/// Magic, key, digest of the payload.
const HEADER_BYTES: usize = MAGIC.len() + 32 + 32;
const ENTRY_SUFFIX: &str = "cwasm";

/// A folder of compiled modules (see the module docs).
#[derive(Clone, Debug)]
pub struct ModuleCache {
    dir: PathBuf,
    bytes_max: u64,
    /// Modules loaded from the folder, and compiled, by this handle.
    counts: Arc<[AtomicU64; 2]>,
}

impl ModuleCache {
    /// Opens (creating it if needed) the cache in `dir`, holding at most
    /// `bytes_max` bytes of entries.
    pub fn open(dir: impl Into<PathBuf>, bytes_max: u64) -> Result<Self, ExecError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(ExecError::io(format!("creating {}", dir.display())))?;
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

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `module`, rewritten by rewrite version `rewrite` and compiled
    /// by `engine`, is here (without checking it): what a provider's estimate
    /// of its start-up time rests on.
    pub(crate) fn contains(&self, engine: &Engine, module: &ContentId, rewrite: u32) -> bool {
        self.entry_path(&key(engine, module, rewrite)).exists()
    }

    /// The compiled module for `module` under rewrite version `rewrite`:
    /// loaded from the cache when a sound entry exists, otherwise compiled
    /// by `compile` and stored.
    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        module: &ContentId,
        rewrite: u32,
        compile: impl FnOnce() -> Result<Module, ExecError>,
    ) -> Result<Module, ExecError> {
        let key = key(engine, module, rewrite);
        let path = self.entry_path(&key);
        // Held while this process compiles, so others wait and then load.
        let lock = self.lock(&key)?;
        if let Some(module) = self.load(engine, &path, &key) {
            drop(lock);
            self.counts[0].fetch_add(1, Ordering::Relaxed);
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
        let path = self.dir.join(format!("{}.lock", cairn_wire::hex(key)));
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

    /// The entry at `path` if every check passes; a failing entry is removed.
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

    fn store(&self, path: &Path, key: &[u8; 32], payload: &[u8]) -> std::io::Result<()> {
        if payload.len() as u64 + HEADER_BYTES as u64 > self.bytes_max {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(key)?;
        file.write_all(blake3::hash(payload).as_bytes())?;
        file.write_all(payload)?;
        file.sync_all()?;
        // Renamed into place whole: a reader sees the old entry, none, or
        // this one, never half of it.
        std::fs::rename(&tmp, path)
    }

    /// Removes the least recently used entries until the folder fits.
    fn evict(&self) {
        let Ok(listing) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = listing
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == ENTRY_SUFFIX))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.bytes_max {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                let _ = std::fs::remove_file(path.with_extension("lock"));
                total -= len;
            }
        }
    }
}

/// An entry's key: the module, the rewrites it went through, and everything
/// about the engine that changes the machine code compiled from it.
fn key(engine: &Engine, module: &ContentId, rewrite: u32) -> [u8; 32] {
    use std::hash::{Hash, Hasher};
    // wasmtime exposes its compatibility hash only through `Hash`; SipHash
    // with the default keys is fixed for a given build, which is all a
    // machine-local cache needs.
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let mut key = blake3::Hasher::new_derive_key("cairn compiled module cache v1");
    key.update(module.as_bytes());
    key.update(&rewrite.to_le_bytes());
    key.update(&hasher.finish().to_le_bytes());
    key.update(env!("CARGO_PKG_VERSION").as_bytes());
    *key.finalize().as_bytes()
}
