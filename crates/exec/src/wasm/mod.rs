//! The deterministic WebAssembly runtime.

mod cache;
mod checkpoint;
mod host;
mod nan;
mod pause;
mod tamper;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_wire::ContentId;
use wasmtime::{
    Config, Engine, Instance, InstancePre, Linker, Module, Mutability, OptLevel, Store, Trap,
    TypedFunc, Val,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::manifest::{collect_outputs, outputs_of};
use crate::snapshot::{Snapshot, StateHash, StateParts};
use crate::{ExecError, Manifest, Outcome, Runtime, Task, TaskResult};
pub use cache::ModuleCache;
use checkpoint::{GLOBAL_EXPORT_PREFIX, STEP_EXPORT};
pub use checkpoint::{Trace, Transition};
use host::{
    Budget, Files, Host, HostState, LimitExceeded, Limiter, VirtualMonotonicClock, VirtualWallClock,
};
pub use tamper::Tamper;

/// How often the watchdog of an unmetered runtime advances the engine's
/// epoch. The wall-clock limit is enforced to within one tick.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Fuel between two looks at the wall clock in a metered runtime: about a
/// millisecond of work (15 Gfuel/s on a 2-core laptop), and a look costs a
/// fiber switch and a clock read.
const FUEL_PER_WATCHDOG_LOOK: u64 = 10_000_000;

/// The program name a task sees as `argv[0]`, the same everywhere.
const PROGRAM_NAME: &str = "task";

/// A fingerprint of the load-time rewrites ([`rewrite`]): their source and
/// the pinned versions of the crates they are built on. Part of every
/// compiled-module cache key, so machine code compiled from other rewrites
/// (an older release, or a developer's edit) is never loaded.
fn rewrite_fingerprint() -> &'static [u8; 32] {
    static FINGERPRINT: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    FINGERPRINT.get_or_init(|| {
        let mut hasher = blake3::Hasher::new_derive_key("cairn wasm rewrites v1");
        for source in [
            include_str!("mod.rs"),
            include_str!("nan.rs"),
            include_str!("checkpoint.rs"),
            include_str!("pause.rs"),
            include_str!("../../Cargo.toml"),
        ] {
            hasher.update(&(source.len() as u64).to_le_bytes());
            hasher.update(source.as_bytes());
        }
        *hasher.finalize().as_bytes()
    })
}

/// What every node runs in place of `bytes`: NaN canonicalisation at
/// observation points (unless Cranelift's pass does it), pausing at fuel
/// boundaries for a module without steps of its own (see `pause`), and the
/// module's globals exported for checkpoints.
fn rewrite(
    bytes: &[u8],
    config: &WasmConfig,
    variant: pause::Variant,
) -> Result<Vec<u8>, ExecError> {
    if let Some(name) = pause::imports_from_pause(bytes) {
        return Err(ExecError::UnknownImport {
            module: pause::PAUSE_MODULE.to_string(),
            name,
        });
    }
    if let Some(name) = pause::reserved_export(bytes) {
        return Err(ExecError::InvalidModule(format!(
            "the export '{}' is named like the runtime's own (cairn:…)",
            name.escape_debug()
        )));
    }
    let canonical;
    let input = match config.nan_canonicalization {
        NanCanonicalization::AtObservation => {
            canonical = nan::canonicalize_nans(bytes).map_err(ExecError::InvalidModule)?;
            &canonical[..]
        }
        NanCanonicalization::EveryOperation => bytes,
    };
    // A module the rewrite cannot pause runs as it is: a dispute over it
    // re-runs it whole. Whether it can is decided by the variant that
    // stops (past an implementation limit, such as a function's size, its
    // output would not load), so both variants agree.
    let valid = |paused: &Vec<u8>| wasmparser::Validator::new().validate_all(paused).is_ok();
    let stopping = config
        .pause
        .then(|| pause::make_pausable(input, pause::Variant::Stopping).ok())
        .flatten()
        .filter(valid);
    let pausable = match (stopping, variant) {
        (Some(stopping), pause::Variant::Stopping) => Some(stopping),
        (Some(_), pause::Variant::Plain) => Some(
            pause::make_pausable(input, pause::Variant::Plain)
                .map_err(|e| ExecError::InvalidModule(e.to_string()))?,
        ),
        (None, _) => None,
    };
    checkpoint::export_globals(pausable.as_deref().unwrap_or(input))
        .map_err(ExecError::InvalidModule)
}

/// Settings of a [`WasmRuntime`].
#[derive(Clone, Copy, Debug)]
pub struct WasmConfig {
    /// Meter fuel. Always on in production: fuel is how work is limited,
    /// priced and bisected. Off only to measure what metering costs.
    pub metered: bool,
    /// Where NaNs are made canonical. Both make every result bit-for-bit
    /// reproducible; they differ in speed and in fuel.
    pub nan_canonicalization: NanCanonicalization,
    /// Rewrite modules without steps so they can pause at fuel boundaries
    /// (see `pause`). Always on in production: a dispute over such a
    /// program then re-runs one segment, not the whole task. Off only to
    /// measure what it costs.
    pub pause: bool,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            metered: true,
            nan_canonicalization: NanCanonicalization::AtObservation,
            pause: true,
        }
    }
}

/// Where the runtime makes NaNs canonical (see the `nan` module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NanCanonicalization {
    /// Where a program can observe a NaN's bits (stores, reinterpretation,
    /// `copysign`, entering a vector); vector operations where they produce
    /// one. The default: float code runs at nearly native speed.
    AtObservation,
    /// After every float operation (Cranelift's own pass). Kept to measure
    /// the difference.
    EveryOperation,
}

/// Compiled modules kept in memory, ready to instantiate.
const LOADED_MODULES_MAX: usize = 64;

/// Runs WebAssembly (WASI preview 1) deterministically. Cheap to share:
/// modules are compiled once and instantiated per task from a cache.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<Host>,
    provided: HashSet<(String, String)>,
    /// Loaded modules, each with when it was loaded (a sequence number):
    /// the oldest is set aside first.
    modules: Mutex<HashMap<ContentId, (InstancePre<Host>, u64)>>,
    loads: std::sync::atomic::AtomicU64,
    /// Modules being loaded, each behind a lock its loaders share.
    loading: Mutex<HashMap<ContentId, Arc<Mutex<()>>>>,
    cache: Option<ModuleCache>,
    config: WasmConfig,
    /// The rewrites' fingerprint with this configuration's choice of them.
    fingerprint: [u8; 32],
    /// The same for the variant that stops (`pause::Variant::Stopping`).
    fingerprint_stopping: [u8; 32],
    /// Loaded modules' variants that stop, built when a trace needs one.
    stopping: Mutex<HashMap<ContentId, InstancePre<Host>>>,
    /// Loaded pausable modules' bytes, to build that variant from.
    sources: Mutex<HashMap<ContentId, Arc<Vec<u8>>>>,
    _watchdog: Option<Watchdog>,
}

impl WasmRuntime {
    /// A runtime with `config`.
    pub fn new(config: WasmConfig) -> Result<Self, ExecError> {
        let mut wasmtime = Config::new();
        wasmtime
            .consume_fuel(config.metered)
            // The watchdog against hangs, never part of a result. Metered
            // code already counts fuel in every block: it yields to the
            // runner every `FUEL_PER_WATCHDOG_LOOK`, which looks at the
            // clock (see `drive`), so it needs no epoch check on every loop
            // header and function entry (measured at 1% to 15% of the path
            // tracer's time: docs/runtime.md); only unmetered code, which
            // has no fuel to yield on, keeps one.
            .epoch_interruption(!config.metered)
            // NaN bits are the one thing CPUs disagree on: make them
            // canonical, here or in `load` (see `NanCanonicalization`).
            .cranelift_nan_canonicalization(
                config.nan_canonicalization == NanCanonicalization::EveryOperation,
            )
            .wasm_simd(true)
            .wasm_relaxed_simd(true)
            .relaxed_simd_deterministic(true)
            .max_wasm_stack(pause::WASM_STACK_BYTES)
            .cranelift_opt_level(OptLevel::Speed);
        // Threads are not compiled into this build (no `threads` feature), so
        // shared memories and atomics-based parallelism cannot validate.
        let engine = Engine::new(&wasmtime).map_err(|e| ExecError::Host(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |host: &mut Host| &mut host.wasi)
            .map_err(|e| ExecError::Host(format!("{e:#}")))?;
        host::add_wrappers(&mut linker).map_err(|e| ExecError::Host(format!("{e:#}")))?;
        pause::add_to_linker(&mut linker).map_err(|e| ExecError::Host(format!("{e:#}")))?;

        let mut store = Store::new(&engine, empty_host());
        let provided = linker
            .iter(&mut store)
            .map(|(module, name, _)| (module.to_string(), name.to_string()))
            .collect();
        drop(store);

        Ok(Self {
            _watchdog: (!config.metered).then(|| Watchdog::start(engine.clone())),
            engine,
            linker,
            provided,
            modules: Mutex::new(HashMap::new()),
            loads: std::sync::atomic::AtomicU64::new(0),
            loading: Mutex::new(HashMap::new()),
            cache: None,
            fingerprint: *blake3::Hasher::new_derive_key("cairn wasm rewrites chosen v1")
                .update(rewrite_fingerprint())
                .update(&[u8::from(config.pause)])
                .finalize()
                .as_bytes(),
            fingerprint_stopping: *blake3::Hasher::new_derive_key("cairn wasm rewrites chosen v1")
                .update(rewrite_fingerprint())
                .update(&[u8::from(config.pause), 1])
                .finalize()
                .as_bytes(),
            stopping: Mutex::new(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
            config,
        })
    }

    /// Keeps compiled modules in `cache`, so a module compiled once on this
    /// machine (by this node or another) loads in milliseconds.
    pub fn with_cache(mut self, cache: ModuleCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Whether `module` is loaded and ready to run.
    pub fn is_loaded(&self, module: &ContentId) -> bool {
        self.modules.lock().unwrap().contains_key(module)
    }

    /// Whether `module` can run without compiling: loaded already, or
    /// compiled in the cache.
    pub fn is_compiled(&self, module: &ContentId) -> bool {
        self.is_loaded(module)
            || self
                .cache
                .as_ref()
                .is_some_and(|cache| cache.contains(&self.engine, module, &self.fingerprint))
    }

    /// Rewrites `bytes` as every node does (NaN canonicalisation, pausing,
    /// exported globals for checkpoints) and compiles the result.
    fn compile(&self, bytes: &[u8], variant: pause::Variant) -> Result<Module, ExecError> {
        let compiled = rewrite(bytes, &self.config, variant)?;
        Module::new(&self.engine, &compiled).map_err(|e| ExecError::InvalidModule(format!("{e:#}")))
    }

    /// What a run that stops at pause points instantiates: the module's
    /// variant with the rewinding copies, built from its bytes (kept in
    /// memory, or beside the compiled-module cache) the first time a trace
    /// or a referee needs it. A module that cannot pause is its own.
    fn stopping_pre(&self, module: &ContentId) -> Result<InstancePre<Host>, ExecError> {
        let plain = self.instance_pre(module)?;
        if plain.module().get_export(pause::STATE_EXPORT).is_none() {
            return Ok(plain);
        }
        if let Some(pre) = self.stopping.lock().unwrap().get(module) {
            return Ok(pre.clone());
        }
        if let Some(cache) = &self.cache
            && let Some(compiled) = cache.get(&self.engine, module, &self.fingerprint_stopping)?
        {
            let pre = self
                .linker
                .instantiate_pre(&compiled)
                .map_err(|e| ExecError::InvalidModule(format!("{e:#}")))?;
            self.stopping.lock().unwrap().insert(*module, pre.clone());
            return Ok(pre);
        }
        let source = self.sources.lock().unwrap().get(module).cloned();
        let source = match source {
            Some(bytes) => bytes,
            None => self
                .cache
                .as_ref()
                .and_then(|cache| cache.source(module))
                .map(Arc::new)
                .ok_or_else(|| {
                    ExecError::NotLoaded(format!("{module} (its bytes, to trace it)"))
                })?,
        };
        let compile = || self.compile(&source, pause::Variant::Stopping);
        let compiled = match &self.cache {
            Some(cache) => {
                cache.get_or_compile(&self.engine, module, &self.fingerprint_stopping, compile)?
            }
            None => compile()?,
        };
        let pre = self
            .linker
            .instantiate_pre(&compiled)
            .map_err(|e| ExecError::InvalidModule(format!("{e:#}")))?;
        self.stopping.lock().unwrap().insert(*module, pre.clone());
        Ok(pre)
    }

    fn instance_pre(&self, module: &ContentId) -> Result<InstancePre<Host>, ExecError> {
        let loaded = self
            .modules
            .lock()
            .unwrap()
            .get(module)
            .map(|(pre, _)| pre.clone());
        match loaded {
            Some(pre) => Ok(pre),
            // Set aside to make room for others: back from the disk cache,
            // without compiling, if it is still there.
            None if self.load_compiled(module)? => self.instance_pre(module),
            None => Err(ExecError::NotLoaded(module.to_string())),
        }
    }
}

impl Runtime for WasmRuntime {
    fn load(&self, bytes: &[u8]) -> Result<ContentId, ExecError> {
        if !bytes.starts_with(b"\0asm") {
            let shown: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
            return Err(ExecError::NotWasm(format!(
                "expected the magic bytes 00 61 73 6d, found [{}]",
                shown.join(" ")
            )));
        }
        let id = ContentId::of(bytes);
        if self.modules.lock().unwrap().contains_key(&id) {
            // Loaded compiled, perhaps, without its bytes: a trace needs them.
            let pausable = self
                .instance_pre(&id)?
                .module()
                .get_export(pause::STATE_EXPORT)
                .is_some();
            if pausable {
                self.keep_source(id, bytes);
            }
            return Ok(id);
        }
        // One load per module at a time: a second caller (a provider
        // prefetching while its lease arrives) waits for the first rather
        // than compiling the same bytes again. The lock guards no data, so
        // one a panicking loader poisoned is as good as any.
        let loading = self.loading.lock().unwrap().entry(id).or_default().clone();
        let turn = loading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let loaded = if self.modules.lock().unwrap().contains_key(&id) {
            Ok(())
        } else {
            self.load_new(id, bytes)
        };
        drop(turn);
        // The last one out forgets the lock; a failed load leaves nothing.
        let mut all = self.loading.lock().unwrap();
        if all
            .get(&id)
            .is_some_and(|l| Arc::ptr_eq(l, &loading) && Arc::strong_count(l) == 2)
        {
            all.remove(&id);
        }
        loaded.map(|()| id)
    }

    fn run(&self, task: &Task<'_>) -> Result<TaskResult, ExecError> {
        self.run_tampered(task, None)
    }
}

impl WasmRuntime {
    /// Compiles (or takes from the cache) a module not loaded yet, checks
    /// what it imports and exports, and keeps it ready to instantiate.
    fn load_new(&self, id: ContentId, bytes: &[u8]) -> Result<(), ExecError> {
        let compile = || self.compile(bytes, pause::Variant::Plain);
        let module = match &self.cache {
            Some(cache) => cache.get_or_compile(&self.engine, &id, &self.fingerprint, compile)?,
            None => compile()?,
        };
        self.admit(id, &module)?;
        if module.get_export(pause::STATE_EXPORT).is_some() {
            self.keep_source(id, bytes);
        }
        Ok(())
    }

    /// Keeps a pausable module's bytes, for a trace, which needs the
    /// variant that stops.
    fn keep_source(&self, id: ContentId, bytes: &[u8]) {
        self.sources
            .lock()
            .unwrap()
            .entry(id)
            .or_insert_with(|| Arc::new(bytes.to_vec()));
        if let Some(cache) = &self.cache {
            cache.keep_source(&id, bytes);
        }
    }

    /// Loads `module` from memory or the compiled-module cache without its
    /// bytes: a provider that compiled it before need not download it
    /// again. Returns whether it is now loaded; `false` means the bytes are
    /// needed ([`Runtime::load`]).
    pub fn load_compiled(&self, module: &ContentId) -> Result<bool, ExecError> {
        if self.is_loaded(module) {
            return Ok(true);
        }
        let Some(cache) = &self.cache else {
            return Ok(false);
        };
        match cache.get(&self.engine, module, &self.fingerprint)? {
            Some(compiled) => self.admit(*module, &compiled).map(|()| true),
            None => Ok(false),
        }
    }

    /// Checks what a compiled module imports and exports and keeps it ready
    /// to instantiate as `id`.
    fn admit(&self, id: ContentId, module: &Module) -> Result<(), ExecError> {
        for import in module.imports() {
            if !self
                .provided
                .contains(&(import.module().to_string(), import.name().to_string()))
            {
                return Err(ExecError::UnknownImport {
                    module: import.module().to_string(),
                    name: import.name().to_string(),
                });
            }
        }
        if !matches!(
            module.get_export("_start"),
            Some(wasmtime::ExternType::Func(_))
        ) {
            return Err(ExecError::NoEntryPoint);
        }
        let pre = self
            .linker
            .instantiate_pre(module)
            .map_err(|e| ExecError::InvalidModule(format!("{e:#}")))?;
        let mut modules = self.modules.lock().unwrap();
        // Every order a provider bids on loads its module: memory is
        // bounded by a count, and a module set aside comes back from the
        // disk cache when a task needs it.
        if modules.len() >= LOADED_MODULES_MAX
            && let Some(oldest) = modules
                .iter()
                .filter(|(k, _)| **k != id)
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| *k)
        {
            modules.remove(&oldest);
            self.sources.lock().unwrap().remove(&oldest);
            self.stopping.lock().unwrap().remove(&oldest);
        }
        let at = self
            .loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        modules.insert(id, (pre, at));
        Ok(())
    }

    /// Runs `task` and records the state hash after start-up and after
    /// every step: what a provider answers a dispute from. Costs one run
    /// plus hashing memory at each step.
    pub fn trace(&self, task: &Task<'_>) -> Result<Trace, ExecError> {
        self.trace_tampered(task, None)
    }

    /// Runs `task` as [`Runtime::run`] does, with `tamper` changing it
    /// between steps: what a provider built to test verification does.
    pub fn run_tampered(
        &self,
        task: &Task<'_>,
        mut tamper: Option<&mut dyn Tamper>,
    ) -> Result<TaskResult, ExecError> {
        let started = Instant::now();
        let mut session = Session::new(self, task, false)?;
        session.start()?;
        for step in 0.. {
            session.tamper(step, &mut tamper)?;
            if session.halted.is_some() {
                break;
            }
            session.step()?;
        }
        session.finish(started)
    }

    /// Traces `task` as [`WasmRuntime::trace`] does, with `tamper` changing
    /// it between steps as in [`WasmRuntime::run_tampered`], so that a
    /// cheat's trace ends in the result it reported.
    pub fn trace_tampered(
        &self,
        task: &Task<'_>,
        mut tamper: Option<&mut dyn Tamper>,
    ) -> Result<Trace, ExecError> {
        let started = Instant::now();
        let mut session = Session::new(self, task, true)?;
        let mut states = Vec::new();
        let mut fuel = Vec::new();
        session.start()?;
        for step in 0.. {
            session.tamper(step, &mut tamper)?;
            states.push(session.state_hash()?);
            fuel.push(session.fuel_used()?);
            if session.halted.is_some() {
                break;
            }
            session.step()?;
        }
        let result = session.finish(started)?;
        Ok(Trace {
            states,
            fuel,
            digest: result.digest,
        })
    }

    /// The full state at trace position `position` (1 is after start-up),
    /// for a referee: re-runs the task up to it.
    pub fn snapshot_at(&self, task: &Task<'_>, position: u64) -> Result<Snapshot, ExecError> {
        if position == 0 {
            return Err(ExecError::Host("position 0 is the task itself".into()));
        }
        let mut session = Session::new(self, task, true)?;
        session.start()?;
        for _ in 1..position {
            if session.halted.is_some() {
                return Err(ExecError::Host(format!(
                    "the task halts before position {position}"
                )));
            }
            session.step()?;
        }
        session.snapshot()
    }

    /// The referee's move: from the agreed state (`None`: the task itself)
    /// computes the next position's hash, executing at most one step. The
    /// caller checks `from.hash()` against the agreed hash first.
    pub fn referee(
        &self,
        task: &Task<'_>,
        from: Option<&Snapshot>,
    ) -> Result<Transition, ExecError> {
        let started = Instant::now();
        let mut session = Session::new(self, task, true)?;
        let Some(from) = from else {
            session.start()?;
            return Ok(Transition {
                hash: session.state_hash()?,
                fuel_executed: session.fuel_used()?,
            });
        };
        session.restore(from)?;
        if session.halted.is_some() {
            let result = session.finish(started)?;
            return Ok(Transition {
                hash: *result.digest.as_bytes(),
                fuel_executed: 0,
            });
        }
        session.step()?;
        Ok(Transition {
            hash: session.state_hash()?,
            fuel_executed: session.fuel_used()?.saturating_sub(from.fuel_used),
        })
    }
}

/// One execution of a task: the store, the instance, and the host state
/// outside them, advanced one call at a time.
struct Session<'r, 't> {
    runtime: &'r WasmRuntime,
    task: &'t Task<'t>,
    store: Store<Host>,
    instance: Option<Instance>,
    step: Option<TypedFunc<(), i32>>,
    /// Whether the module was rewritten to pause (it has no steps).
    pausable: bool,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// Output written before a restored snapshot (the pipes hold the rest).
    stdout_before: Vec<u8>,
    stderr_before: Vec<u8>,
    host: HostState,
    /// How the task ended, once it has.
    halted: Option<Outcome>,
    /// When its wall-clock limit runs out.
    deadline: Instant,
}

impl<'r, 't> Session<'r, 't> {
    /// Builds the sandbox and instantiates the module (running nothing).
    fn new(runtime: &'r WasmRuntime, task: &'t Task<'t>, stops: bool) -> Result<Self, ExecError> {
        let pre = match stops {
            true => runtime.stopping_pre(&task.module)?,
            false => runtime.instance_pre(&task.module)?,
        };
        let limits = task.limits;
        let stdout = MemoryOutputPipe::new(limits.stdout_bytes as usize);
        let stderr = MemoryOutputPipe::new(limits.stdout_bytes as usize);
        let host = HostState::new(task.seed);
        let mut wasi = WasiCtxBuilder::new();
        wasi.arg(PROGRAM_NAME)
            .args(task.args)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(VirtualWallClock(host.wall.clone()))
            .monotonic_clock(VirtualMonotonicClock(host.monotonic.clone()))
            .secure_random(host.secure.clone())
            .insecure_random(host.insecure.clone())
            .insecure_random_seed(host.insecure_seed)
            // File operations run on this worker thread rather than being
            // handed to a thread pool: the worker pool already bounds them.
            .allow_blocking_current_thread(true);
        if let Some(input) = task.input_dir {
            wasi.preopened_dir(input, "/input", FsPerms::ReadOnly)
                .map_err(|e| ExecError::Host(format!("opening {}: {e:#}", input.display())))?;
        }
        wasi.preopened_dir(task.output_dir, "/output", FsPerms::ReadWrite)
            .map_err(|e| {
                ExecError::Host(format!("opening {}: {e:#}", task.output_dir.display()))
            })?;

        let mut store = Store::new(
            &runtime.engine,
            Host {
                wasi: wasi.build_p1(),
                limiter: Limiter {
                    memory_bytes_max: limits.memory_bytes,
                },
                budget: Budget::new(limits.output_bytes, limits.stdout_bytes),
                files: Files::default(),
                pause: pause::Pause::new(
                    if runtime.config.metered {
                        limits.fuel
                    } else {
                        0
                    },
                    stops,
                ),
            },
        );
        store.limiter(|host| &mut host.limiter);
        store.data_mut().files.preopens = match task.input_dir {
            Some(_) => vec![(3, "/input".into()), (4, "/output".into())],
            None => vec![(3, "/output".into())],
        };
        if runtime.config.metered {
            store.set_fuel(limits.fuel).map_err(host_error)?;
            store
                .fuel_async_yield_interval(Some(FUEL_PER_WATCHDOG_LOOK))
                .map_err(host_error)?;
        } else {
            let ticks = limits
                .wall_time
                .as_millis()
                .div_ceil(EPOCH_TICK.as_millis()) as u64;
            store.set_epoch_deadline(ticks.max(1));
            store.epoch_deadline_trap();
        }
        // Far enough that an absurd limit does not overflow the clock.
        let deadline = Instant::now()
            .checked_add(limits.wall_time)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 86_400));

        let mut session = Self {
            runtime,
            task,
            store,
            instance: None,
            step: None,
            pausable: false,
            stdout,
            stderr,
            stdout_before: Vec::new(),
            stderr_before: Vec::new(),
            host,
            halted: None,
            deadline,
        };
        let instantiated = drive(pre.instantiate_async(&mut session.store), deadline, &limits)?;
        let files = &mut session.store.data_mut().files;
        files.held_before_start = files.holds_any();
        match instantiated {
            Ok(instance) => {
                session.step = instance
                    .get_typed_func::<(), i32>(&mut session.store, STEP_EXPORT)
                    .ok();
                session.pausable = instance
                    .get_global(&mut session.store, pause::STATE_EXPORT)
                    .is_some();
                session.instance = Some(instance);
            }
            Err(error) => session.halted = Some(classify(error, &limits)?),
        }
        Ok(session)
    }

    /// Runs `_start`; the task halts there unless it has steps or stopped
    /// at a pause point.
    fn start(&mut self) -> Result<(), ExecError> {
        let Some(instance) = self.instance else {
            return Ok(());
        };
        let ended = match instance.get_typed_func::<(), ()>(&mut self.store, "_start") {
            Ok(start) => drive(
                start.call_async(&mut self.store, ()),
                self.deadline,
                &self.task.limits,
            )?,
            Err(error) => Err(error),
        };
        match ended {
            Ok(()) if self.pause_state() == Some(pause::REWINDING) => {
                // A rewind that never reached the call that stopped: the
                // stack it was handed is not this program's.
                return Err(ExecError::Host(
                    "the program returned while rewinding: the saved stack does not fit it".into(),
                ));
            }
            Ok(()) if self.step.is_some() || self.stopped() => {}
            Ok(()) => self.halted = Some(Outcome::Exited(0)),
            Err(error) => self.halted = Some(classify(error, &self.task.limits)?),
        }
        Ok(())
    }

    /// Whether the program stopped at a pause point (its stack unwound).
    fn stopped(&mut self) -> bool {
        self.pause_state() == Some(pause::UNWINDING)
    }

    fn pause_state(&mut self) -> Option<i32> {
        let global = self
            .instance?
            .get_global(&mut self.store, pause::STATE_EXPORT)?;
        global.get(&mut self.store).i32()
    }

    /// Runs one `cairn_step`, or on to the next pause point.
    fn step(&mut self) -> Result<(), ExecError> {
        if self.pausable {
            return self.resume();
        }
        let step = self.step.clone().expect("only stepped tasks step");
        self.store.data_mut().files.end_step();
        let stepped = drive(
            step.call_async(&mut self.store, ()),
            self.deadline,
            &self.task.limits,
        )?;
        match stepped {
            Ok(0) => self.halted = Some(Outcome::Exited(0)),
            Ok(_) => {}
            Err(error) => self.halted = Some(classify(error, &self.task.limits)?),
        }
        Ok(())
    }

    /// Rewinds a stopped program and runs it to its next pause point.
    fn resume(&mut self) -> Result<(), ExecError> {
        let instance = self.instance.expect("a stopped program has an instance");
        let state = instance
            .get_global(&mut self.store, pause::STATE_EXPORT)
            .expect("a pausable module exports its state");
        state
            .set(&mut self.store, Val::I32(pause::REWINDING))
            .map_err(host_error)?;
        if self.runtime.config.metered {
            let fuel = self.store.data().pause.resume_fuel();
            self.store.set_fuel(fuel).map_err(host_error)?;
        }
        self.start()
    }

    /// Lets `tamper` change the state after start-up (`step` 0) or after
    /// step `step`, unless the task has halted.
    fn tamper(&mut self, step: u64, tamper: &mut Option<&mut dyn Tamper>) -> Result<(), ExecError> {
        let (Some(tamper), None, Some(instance)) = (tamper.as_mut(), &self.halted, self.instance)
        else {
            return Ok(());
        };
        let task = self.task;
        let memory = instance
            .get_memory(&mut self.store, "memory")
            .ok_or_else(|| ExecError::Host("the module exports no memory".into()))?;
        if !tamper.between_steps(step, memory.data_mut(&mut self.store), task) {
            self.halted = Some(Outcome::Exited(0));
        }
        Ok(())
    }

    fn fuel_used(&mut self) -> Result<u64, ExecError> {
        let limit = self.task.limits.fuel;
        if !self.runtime.config.metered {
            return Ok(0);
        }
        // A stopped program holds lent fuel until it resumes.
        if self.stopped() {
            return Ok(limit.saturating_sub(self.store.data().pause.fuel_left));
        }
        Ok(limit.saturating_sub(self.store.get_fuel().map_err(host_error)?))
    }

    fn memory(&mut self) -> &[u8] {
        match self
            .instance
            .and_then(|i| i.get_memory(&mut self.store, "memory"))
        {
            Some(memory) => memory.data(&self.store),
            None => &[],
        }
    }

    fn globals(&mut self) -> Vec<(u8, u128)> {
        let Some(instance) = self.instance else {
            return Vec::new();
        };
        let mut globals = Vec::new();
        for index in 0.. {
            let name = format!("{GLOBAL_EXPORT_PREFIX}{index}");
            let Some(global) = instance.get_global(&mut self.store, &name) else {
                break;
            };
            globals.push(match global.get(&mut self.store) {
                Val::I32(v) => (0, u128::from(v as u32)),
                Val::I64(v) => (1, u128::from(v as u64)),
                // NaN bits are the CPU's until a program observes them.
                Val::F32(v) if f32::from_bits(v).is_nan() => (2, 0x7fc0_0000),
                Val::F64(v) if f64::from_bits(v).is_nan() => (3, 0x7ff8_0000_0000_0000),
                Val::F32(v) => (2, u128::from(v)),
                Val::F64(v) => (3, u128::from(v)),
                Val::V128(v) => (4, v.as_u128()),
                // References are not part of checkpointable state.
                _ => (5, 0),
            });
        }
        globals
    }

    fn budget(&self) -> [u64; 4] {
        let b = &self.store.data().budget;
        [b.output_bytes, b.stdout_bytes, b.stderr_bytes, b.entries]
    }

    fn written(&self) -> (Vec<u8>, Vec<u8>) {
        let join = |before: &[u8], pipe: &MemoryOutputPipe| {
            let mut all = before.to_vec();
            all.extend_from_slice(&pipe.contents());
            all
        };
        (
            join(&self.stdout_before, &self.stdout),
            join(&self.stderr_before, &self.stderr),
        )
    }

    /// The hash of the current state, without copying memory.
    fn state_hash(&mut self) -> Result<StateHash, ExecError> {
        let fuel_used = self.fuel_used()?;
        let globals = self.globals();
        let (stdout, stderr) = self.written();
        let outputs = collect_outputs(self.task.output_dir, self.task.limits.output_bytes)?;
        let (clocks, random) = self.host.save();
        let budget = self.budget();
        let halted = self.halted.clone();
        let saved = std::mem::take(&mut self.store.data_mut().pause.saved);
        let descriptors = host::descriptors(self.store.data_mut());
        let freed_fd = host::freed(self.store.data());
        let memory = self.memory();
        let hash = StateParts {
            memory,
            globals: &globals,
            saved: &saved,
            descriptors: &descriptors,
            freed_fd,
            stdout: ContentId::of(&stdout),
            stderr: ContentId::of(&stderr),
            outputs,
            fuel_used,
            clocks,
            random,
            budget,
            halted: halted.as_ref(),
        }
        .hash();
        self.store.data_mut().pause.saved = saved;
        Ok(hash)
    }

    /// A full copy of the current state.
    fn snapshot(&mut self) -> Result<Snapshot, ExecError> {
        let fuel_used = self.fuel_used()?;
        let globals = self.globals();
        let (stdout, stderr) = self.written();
        let files = match collect_outputs(self.task.output_dir, self.task.limits.output_bytes)? {
            Ok(files) => files,
            Err(broken) => {
                return Err(ExecError::Host(format!(
                    "the outputs at this checkpoint cannot be copied: {broken}"
                )));
            }
        };
        let mut outputs = Vec::with_capacity(files.len());
        for file in files {
            let path = self.task.output_dir.join(&file.path);
            let bytes = std::fs::read(&path)
                .map_err(ExecError::io(format!("reading {}", path.display())))?;
            outputs.push((file.path, bytes));
        }
        let (clocks, random) = self.host.save();
        Ok(Snapshot {
            memory: self.memory().to_vec(),
            globals,
            saved: self.store.data().pause.saved.clone(),
            descriptors: host::descriptors(self.store.data_mut()),
            freed_fd: host::freed(self.store.data()),
            stdout,
            stderr,
            outputs,
            fuel_used,
            clocks,
            random,
            budget: self.budget(),
            halted: self.halted.clone(),
        })
    }

    /// Makes this fresh session's state `snapshot`.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), ExecError> {
        let instance = self
            .instance
            .ok_or_else(|| ExecError::Host("the module did not instantiate".into()))?;
        if snapshot.fuel_used > self.task.limits.fuel {
            return Err(ExecError::Host(
                "a snapshot that used more fuel than the task may".into(),
            ));
        }
        if snapshot.saved.len() > pause::SAVED_MAX || (!snapshot.saved.is_empty() && !self.pausable)
        {
            return Err(ExecError::Host(
                "a snapshot's saved stack does not fit this module".into(),
            ));
        }
        if let Some(memory) = instance.get_memory(&mut self.store, "memory") {
            let page = memory.page_size(&self.store) as usize;
            let have = memory.data_size(&self.store);
            if snapshot.memory.len() < have || !snapshot.memory.len().is_multiple_of(page) {
                return Err(ExecError::Host(format!(
                    "a snapshot of {} bytes of memory cannot follow the module's {have}",
                    snapshot.memory.len()
                )));
            }
            memory
                .grow(
                    &mut self.store,
                    ((snapshot.memory.len() - have) / page) as u64,
                )
                .map_err(host_error)?;
            memory
                .data_mut(&mut self.store)
                .copy_from_slice(&snapshot.memory);
        }
        for (index, (tag, bits)) in snapshot.globals.iter().enumerate() {
            let name = format!("{GLOBAL_EXPORT_PREFIX}{index}");
            let global = instance.get_global(&mut self.store, &name).ok_or_else(|| {
                ExecError::Host(format!("the snapshot has a global {index} too many"))
            })?;
            if global.ty(&self.store).mutability() == Mutability::Const {
                continue;
            }
            let value = match tag {
                0 => Val::I32(*bits as u32 as i32),
                1 => Val::I64(*bits as u64 as i64),
                2 => Val::F32(*bits as u32),
                3 => Val::F64(*bits as u64),
                4 => Val::V128((*bits).into()),
                _ => continue,
            };
            global.set(&mut self.store, value).map_err(host_error)?;
        }
        for (path, bytes) in &snapshot.outputs {
            let host_path =
                cairn_job::output_path(self.task.output_dir, path).map_err(ExecError::Host)?;
            if let Some(parent) = host_path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(ExecError::io(format!("creating {}", parent.display())))?;
            }
            std::fs::write(&host_path, bytes)
                .map_err(ExecError::io(format!("writing {}", host_path.display())))?;
        }
        if self.runtime.config.metered {
            let left = self.task.limits.fuel.saturating_sub(snapshot.fuel_used);
            self.store.set_fuel(left).map_err(host_error)?;
        }
        self.host.restore(snapshot.clocks, snapshot.random);
        // A halted state runs nothing more: its files need not be open.
        if snapshot.halted.is_none() {
            host::reopen(
                self.store.data_mut(),
                &snapshot.descriptors,
                snapshot.freed_fd,
            )
            .map_err(ExecError::Host)?;
        }
        let pause = &mut self.store.data_mut().pause;
        pause.saved = snapshot.saved.clone();
        pause.since = snapshot.fuel_used;
        pause.fuel_left = self.task.limits.fuel.saturating_sub(snapshot.fuel_used);
        let budget = &mut self.store.data_mut().budget;
        [
            budget.output_bytes,
            budget.stdout_bytes,
            budget.stderr_bytes,
            budget.entries,
        ] = snapshot.budget;
        self.stdout_before = snapshot.stdout.clone();
        self.stderr_before = snapshot.stderr.clone();
        self.halted = snapshot.halted.clone();
        Ok(())
    }

    /// The result of a halted session.
    fn finish(mut self, started: Instant) -> Result<TaskResult, ExecError> {
        let fuel_used = self.fuel_used()?;
        let outcome = self.halted.clone().expect("finish follows a halt");
        let (stdout, stderr) = self.written();
        let task = self.task;
        drop(self);
        let (outcome, outputs) = outputs_of(task, outcome)?;
        let manifest = Manifest {
            outcome,
            fuel_used,
            stdout: ContentId::of(&stdout),
            stderr: ContentId::of(&stderr),
            outputs,
        };
        Ok(TaskResult {
            digest: manifest.digest(),
            outcome: manifest.outcome,
            fuel_used,
            stdout,
            stderr,
            outputs: manifest.outputs,
            wall_time: started.elapsed(),
            cpu_time: None,
        })
    }
}

/// Runs `call` into the guest to its end, or until the wall clock passes
/// `deadline` at one of its fuel yields (then the call is dropped, which
/// unwinds the guest, and the task has failed: how far a task gets in a
/// given time differs between machines, so this cannot be a result). Host
/// functions are synchronous, so the call is pending only at a yield and
/// is polled again at once.
fn drive<T>(
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
    deadline: Instant,
    limits: &crate::Limits,
) -> Result<wasmtime::Result<T>, ExecError> {
    let mut call = std::pin::pin!(call);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(ended) = call.as_mut().poll(&mut context) {
            return Ok(ended);
        }
        if Instant::now() >= deadline {
            return Err(ExecError::WallTimeExceeded {
                seconds: limits.wall_time.as_secs(),
            });
        }
    }
}

/// Sorts a failed run into a deterministic [`Outcome`] or an [`ExecError`].
fn classify(error: wasmtime::Error, limits: &crate::Limits) -> Result<Outcome, ExecError> {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Ok(Outcome::Exited(exit.0));
    }
    if let Some(LimitExceeded(outcome)) = error.downcast_ref::<LimitExceeded>() {
        return Ok(outcome.clone());
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Ok(Outcome::FuelExhausted { limit: limits.fuel }),
        Some(Trap::Interrupt) => Err(ExecError::WallTimeExceeded {
            seconds: limits.wall_time.as_secs(),
        }),
        Some(Trap::StackOverflow) => Err(ExecError::StackExhausted),
        Some(trap) => Ok(Outcome::Trap(trap.to_string())),
        None => Err(host_error(error)),
    }
}

fn host_error(error: wasmtime::Error) -> ExecError {
    ExecError::Host(format!("{error:#}"))
}

/// State for the throwaway store used to list what the linker provides.
fn empty_host() -> Host {
    Host {
        wasi: WasiCtxBuilder::new().build_p1(),
        limiter: Limiter {
            memory_bytes_max: 0,
        },
        budget: Budget::new(0, 0),
        files: Files::default(),
        pause: pause::Pause::new(0, false),
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Watchdog {
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("cairn-wasm-watchdog".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the watchdog thread");
        Self { stop }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module with every construct the rewrites touch: float stores,
    /// reinterpretations, `copysign`, vector splats and arithmetic,
    /// mutable and immutable globals, and a loop and a call that can pause
    /// with a value kept under it.
    const REWRITTEN: &str = r#"(module
      (memory (export "memory") 1)
      (global $g (mut f64) (f64.const 0))
      (global $k i32 (i32.const 7))
      (func $spin (param i32) (result i32)
        (loop $l
          (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))
        (local.get 0))
      (func (export "_start")
        (local f32 f64 v128)
        (drop (i32.add (i32.const 5) (call $spin (i32.const 3))))
        (local.set 0 (f32.div (f32.const 0) (f32.const 0)))
        (local.set 1 (f64.sqrt (f64.const -1)))
        (f32.store (i32.const 0) (local.get 0))
        (f64.store (i32.const 8) (f64.copysign (local.get 1) (f64.const -2)))
        (i64.store (i32.const 16) (i64.reinterpret_f64 (local.get 1)))
        (local.set 2 (f64x2.mul (f64x2.splat (local.get 1)) (f64x2.splat (f64.const 3))))
        (v128.store (i32.const 32) (f32x4.replace_lane 1 (local.get 2) (local.get 0)))
        (global.set $g (f64.add (global.get $g) (local.get 1)))
        (drop (global.get $k))))"#;

    /// What the rewrites make of [`REWRITTEN`]. The rewrites decide fuel
    /// and NaN bits, so a change of their output is a network-wide upgrade
    /// (every built-in module's fuel may change): if this fails because a
    /// rewrite changed on purpose, say so in the release notes and pin the
    /// new digests.
    #[test]
    fn rewrite_output_is_pinned() {
        let wasm = wat::parse_str(REWRITTEN).unwrap();
        let found = [
            NanCanonicalization::AtObservation,
            NanCanonicalization::EveryOperation,
        ]
        .map(|nan| {
            let config = WasmConfig {
                nan_canonicalization: nan,
                ..WasmConfig::default()
            };
            let rewritten = rewrite(&wasm, &config, pause::Variant::Plain).unwrap();
            wasmparser::Validator::new()
                .validate_all(&rewritten)
                .expect("the rewrites' output is valid");
            blake3::hash(&rewritten).to_hex().to_string()
        });
        assert_eq!(
            found.each_ref().map(String::as_str),
            [
                "520f2bda0aaeb1ade4b5fd3069e39bba52ae93d059bedf1465baeafa163e349a",
                "09e7f8e4b9c427facd9a0d7f471485b27429983f58156ef1142497e8b7f2c7a2",
            ],
            "the rewrites' output changed: a network-wide upgrade; pin the new digests"
        );
    }
}
