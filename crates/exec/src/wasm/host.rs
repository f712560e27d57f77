//! The host side of a Wasm task: WASI preview 1 made deterministic, plus the
//! limits wasmtime does not enforce by itself.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng, TryRng};
use wasmtime::{Caller, Linker, ResourceLimiter};
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::Outcome;

/// WASI preview 1's module name.
pub(crate) const WASI: &str = "wasi_snapshot_preview1";

pub(crate) use crate::manifest::ENTRIES_MAX;

/// Tables may hold this many elements, whatever the memory limit.
const TABLE_ELEMENTS_MAX: usize = 1 << 20;

/// `wasi_snapshot_preview1` errno for "not supported".
const ERRNO_NOTSUP: i32 = 58;
/// `oflags` bit that creates a file.
const OFLAGS_CREAT: i32 = 1;

/// Per-store state.
pub(crate) struct Host {
    pub wasi: WasiP1Ctx,
    pub limiter: Limiter,
    pub budget: Budget,
    pub files: Files,
    pub pause: super::pause::Pause,
}

/// Fails a task that grows memory or tables past its limits. Failing (a
/// trap) rather than refusing the growth (`memory.grow` returning -1) turns
/// the usual "allocation failed" abort inside the guest into a precise error.
pub(crate) struct Limiter {
    pub memory_bytes_max: u64,
}

/// Raised through wasmtime when a limit in this module is crossed; the
/// runner turns it back into an [`Outcome`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct LimitExceeded(pub Outcome);

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes_max {
            return Err(wasmtime::Error::new(LimitExceeded(Outcome::MemoryLimit {
                limit: self.memory_bytes_max,
                requested: desired as u64,
            })));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > TABLE_ELEMENTS_MAX {
            return Err(wasmtime::Error::new(LimitExceeded(Outcome::MemoryLimit {
                limit: TABLE_ELEMENTS_MAX as u64,
                requested: desired as u64,
            })));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}

/// What a task may still write, counted as it asks to write. Counting the
/// requests (not the final sizes) keeps a task from filling the host's disk
/// before the run ends; the final sizes are checked again afterwards.
pub(crate) struct Budget {
    pub output_bytes_max: u64,
    pub stdout_bytes_max: u64,
    pub output_bytes: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub entries: u64,
}

impl Budget {
    /// Nothing spent yet of the given allowances.
    pub(crate) fn new(output_bytes_max: u64, stdout_bytes_max: u64) -> Self {
        Self {
            output_bytes_max,
            stdout_bytes_max,
            output_bytes: 0,
            stdout_bytes: 0,
            stderr_bytes: 0,
            entries: 0,
        }
    }

    fn charge_write(&mut self, fd: i32, bytes: u64) -> wasmtime::Result<()> {
        let (used, max, stream) = match fd {
            1 => (&mut self.stdout_bytes, self.stdout_bytes_max, "stdout"),
            2 => (&mut self.stderr_bytes, self.stdout_bytes_max, "stderr"),
            _ => (&mut self.output_bytes, self.output_bytes_max, "output"),
        };
        *used = used.saturating_add(bytes);
        if *used > max {
            return Err(wasmtime::Error::new(LimitExceeded(Outcome::OutputLimit {
                stream,
                limit: max,
            })));
        }
        Ok(())
    }

    /// Fails a task that would make a file reach past `output_bytes_max`
    /// (`None`: past `u64::MAX`), however few bytes it writes to get there.
    /// A hole costs the host no disk, but its size is what filesystems
    /// limit (ext4 at 16 TiB, tmpfs far beyond): unbounded offsets would
    /// let one write succeed on one host and fail on another.
    fn check_extent(&self, end: Option<u64>) -> wasmtime::Result<()> {
        if end.is_none_or(|end| end > self.output_bytes_max) {
            return Err(wasmtime::Error::new(LimitExceeded(Outcome::OutputLimit {
                stream: "output",
                limit: self.output_bytes_max,
            })));
        }
        Ok(())
    }

    fn charge_entry(&mut self) -> wasmtime::Result<()> {
        self.entries += 1;
        if self.entries > ENTRIES_MAX {
            return Err(wasmtime::Error::new(LimitExceeded(Outcome::EntriesLimit {
                limit: ENTRIES_MAX,
            })));
        }
        Ok(())
    }
}

/// Calls WASI preview 1's own implementation of `$func` the way wasmtime's
/// generated bindings do, from inside a wrapper that has done its
/// accounting first.
macro_rules! forward {
    ($caller:ident, $func:ident ( $($arg:expr),* )) => {{
        use wasmtime::AsContextMut as _;
        use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1 as _};
        let fuel = $caller.as_context_mut().hostcall_fuel();
        let Some(wasmtime::Extern::Memory(memory)) = $caller.get_export("memory") else {
            return Err(wasmtime::format_err!("missing required memory export"));
        };
        let (data, host) = memory.data_and_store_mut(&mut $caller);
        host.wasi.set_hostcall_fuel(fuel);
        let mut guest = wiggle::GuestMemory::Unshared(data);
        wasmtime_wasi::runtime::in_tokio(p1::$func(&mut host.wasi, &mut guest, $($arg),*))
    }};
}

mod files;

pub(crate) use files::{Files, descriptors, freed, reopen, reproducible};

/// Replaces the WASI functions whose cost fuel does not capture with
/// accounting wrappers, the ones that show the host with deterministic
/// answers, and the ones that would break determinism or block the worker
/// with refusals.
pub(crate) fn add_wrappers(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    files::add_wrappers(linker)?;
    // Sleeping would block a worker thread where the watchdog cannot reach
    // it, and a task has no real time to wait for: refuse it.
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |_: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32| -> i32 { ERRNO_NOTSUP },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A wall clock that starts at 2000-01-01T00:00:00Z and advances one
/// microsecond each time it is read, so programs that measure time see it
/// move, identically on every machine. The counter is shared with the
/// runner, which saves and restores it at checkpoints.
pub(crate) struct VirtualWallClock(pub Arc<AtomicU64>);

/// A monotonic clock with the same rules, starting at zero.
pub(crate) struct VirtualMonotonicClock(pub Arc<AtomicU64>);

/// Where the wall clock starts.
pub(crate) const EPOCH_2000_NS: u64 = 946_684_800 * 1_000_000_000;
const TICK_NS: u64 = 1_000;

impl HostWallClock for VirtualWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(TICK_NS)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.fetch_add(TICK_NS, Ordering::Relaxed))
    }
}

impl HostMonotonicClock for VirtualMonotonicClock {
    fn resolution(&self) -> u64 {
        TICK_NS
    }

    fn now(&self) -> u64 {
        self.0.fetch_add(TICK_NS, Ordering::Relaxed)
    }
}

/// A seeded random stream whose position the runner can read and set, so
/// a checkpoint captures it.
#[derive(Clone)]
pub(crate) struct SharedRng(pub Arc<Mutex<ChaCha20Rng>>);

impl TryRng for SharedRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.lock().unwrap().next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.lock().unwrap().next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.lock().unwrap().fill_bytes(dst);
        Ok(())
    }
}

/// The host state outside the store that a task's execution changes: the
/// clocks and the random streams.
#[derive(Clone)]
pub(crate) struct HostState {
    pub wall: Arc<AtomicU64>,
    pub monotonic: Arc<AtomicU64>,
    pub secure: SharedRng,
    pub insecure: SharedRng,
    pub insecure_seed: u128,
}

impl HostState {
    /// Fresh clocks, and random streams all derived from the task seed.
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        let derive = |purpose: &str| blake3::derive_key(purpose, &seed);
        let insecure_seed = derive("cairn wasi insecure random seed v1");
        let stream = |purpose| {
            SharedRng(Arc::new(Mutex::new(ChaCha20Rng::from_seed(derive(
                purpose,
            )))))
        };
        Self {
            wall: Arc::new(AtomicU64::new(EPOCH_2000_NS)),
            monotonic: Arc::new(AtomicU64::new(0)),
            secure: stream("cairn wasi secure random v1"),
            insecure: stream("cairn wasi insecure random v1"),
            insecure_seed: u128::from_le_bytes(insecure_seed[..16].try_into().unwrap()),
        }
    }

    /// Clocks and random positions, in a fixed order.
    pub(crate) fn save(&self) -> ([u64; 2], [u128; 2]) {
        (
            [
                self.wall.load(Ordering::Relaxed),
                self.monotonic.load(Ordering::Relaxed),
            ],
            [
                self.secure.0.lock().unwrap().get_word_pos(),
                self.insecure.0.lock().unwrap().get_word_pos(),
            ],
        )
    }

    /// Puts back what [`HostState::save`] returned.
    pub(crate) fn restore(&self, clocks: [u64; 2], random: [u128; 2]) {
        self.wall.store(clocks[0], Ordering::Relaxed);
        self.monotonic.store(clocks[1], Ordering::Relaxed);
        self.secure.0.lock().unwrap().set_word_pos(random[0]);
        self.insecure.0.lock().unwrap().set_word_pos(random[1]);
    }
}
