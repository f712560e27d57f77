//! The deterministic WebAssembly runtime.

mod host;
mod nan;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_wire::ContentId;
use wasmtime::{Config, Engine, InstancePre, Linker, Module, OptLevel, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::manifest::collect_outputs;
use crate::{ExecError, Manifest, Outcome, Runtime, Task, TaskResult};
use host::{Budget, Host, LimitExceeded, Limiter, VirtualMonotonicClock, VirtualWallClock};

/// How often the watchdog advances the engine's epoch. The wall-clock limit
/// is enforced to within one tick.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The program name a task sees as `argv[0]`, the same everywhere.
const PROGRAM_NAME: &str = "task";

/// Settings of a [`WasmRuntime`].
#[derive(Clone, Copy, Debug)]
pub struct WasmConfig {
    /// Meter fuel. Always on in production: fuel is how work is limited,
    /// priced and bisected. Off only to measure what metering costs.
    pub metered: bool,
    /// Where NaNs are made canonical. Both make every result bit-for-bit
    /// reproducible; they differ in speed and in fuel.
    pub nan_canonicalization: NanCanonicalization,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            metered: true,
            nan_canonicalization: NanCanonicalization::AtObservation,
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

/// Runs WebAssembly (WASI preview 1) deterministically. Cheap to share:
/// modules are compiled once and instantiated per task from a cache.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<Host>,
    provided: HashSet<(String, String)>,
    modules: Mutex<HashMap<ContentId, InstancePre<Host>>>,
    config: WasmConfig,
    _watchdog: Watchdog,
}

impl WasmRuntime {
    /// A runtime with `config`.
    pub fn new(config: WasmConfig) -> Result<Self, ExecError> {
        let mut wasmtime = Config::new();
        wasmtime
            .consume_fuel(config.metered)
            // Only a watchdog against hangs; never part of a result.
            .epoch_interruption(true)
            // NaN bits are the one thing CPUs disagree on: make them
            // canonical, here or in `load` (see `NanCanonicalization`).
            .cranelift_nan_canonicalization(
                config.nan_canonicalization == NanCanonicalization::EveryOperation,
            )
            .wasm_simd(true)
            .wasm_relaxed_simd(true)
            .relaxed_simd_deterministic(true)
            .cranelift_opt_level(OptLevel::Speed);
        // Threads are not compiled into this build (no `threads` feature), so
        // shared memories and atomics-based parallelism cannot validate.
        let engine = Engine::new(&wasmtime).map_err(|e| ExecError::Host(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |host: &mut Host| &mut host.wasi)
            .map_err(|e| ExecError::Host(format!("{e:#}")))?;
        host::add_wrappers(&mut linker).map_err(|e| ExecError::Host(format!("{e:#}")))?;

        let mut store = Store::new(&engine, empty_host());
        let provided = linker
            .iter(&mut store)
            .map(|(module, name, _)| (module.to_string(), name.to_string()))
            .collect();
        drop(store);

        Ok(Self {
            _watchdog: Watchdog::start(engine.clone()),
            engine,
            linker,
            provided,
            modules: Mutex::new(HashMap::new()),
            config,
        })
    }

    fn instance_pre(&self, module: &ContentId) -> Result<InstancePre<Host>, ExecError> {
        self.modules
            .lock()
            .unwrap()
            .get(module)
            .cloned()
            .ok_or_else(|| ExecError::NotLoaded(module.to_string()))
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
            return Ok(id);
        }
        let rewritten;
        let compiled = match self.config.nan_canonicalization {
            NanCanonicalization::AtObservation => {
                rewritten = nan::canonicalize_nans(bytes).map_err(ExecError::InvalidModule)?;
                &rewritten[..]
            }
            NanCanonicalization::EveryOperation => bytes,
        };
        let module = Module::new(&self.engine, compiled)
            .map_err(|e| ExecError::InvalidModule(format!("{e:#}")))?;
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
            .instantiate_pre(&module)
            .map_err(|e| ExecError::InvalidModule(format!("{e:#}")))?;
        self.modules.lock().unwrap().insert(id, pre);
        Ok(id)
    }

    fn run(&self, task: &Task<'_>) -> Result<TaskResult, ExecError> {
        let started = Instant::now();
        let pre = self.instance_pre(&task.module)?;
        let limits = task.limits;

        let stdout = MemoryOutputPipe::new(limits.stdout_bytes as usize);
        let stderr = MemoryOutputPipe::new(limits.stdout_bytes as usize);
        let (secure, insecure, insecure_seed) = host::random_streams(task.seed);
        let mut wasi = WasiCtxBuilder::new();
        wasi.arg(PROGRAM_NAME)
            .args(task.args)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(VirtualWallClock::new())
            .monotonic_clock(VirtualMonotonicClock::new())
            .secure_random(secure)
            .insecure_random(insecure)
            .insecure_random_seed(insecure_seed)
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
            &self.engine,
            Host {
                wasi: wasi.build_p1(),
                limiter: Limiter {
                    memory_bytes_max: limits.memory_bytes,
                },
                budget: Budget::new(limits.output_bytes, limits.stdout_bytes),
            },
        );
        store.limiter(|host| &mut host.limiter);
        if self.config.metered {
            store.set_fuel(limits.fuel).map_err(host_error)?;
        }
        let ticks = limits
            .wall_time
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis()) as u64;
        store.set_epoch_deadline(ticks.max(1));
        store.epoch_deadline_trap();

        let ended = pre.instantiate(&mut store).and_then(|instance| {
            instance
                .get_typed_func::<(), ()>(&mut store, "_start")?
                .call(&mut store, ())
        });
        let fuel_left = if self.config.metered {
            store.get_fuel().map_err(host_error)?
        } else {
            limits.fuel
        };
        let fuel_used = limits.fuel - fuel_left;
        let mut outcome = match ended {
            Ok(()) => Outcome::Exited(0),
            Err(error) => classify(error, &limits)?,
        };
        drop(store);

        let stdout = stdout.contents().to_vec();
        let stderr = stderr.contents().to_vec();
        let outputs = match collect_outputs(task.output_dir, limits.output_bytes)? {
            Ok(outputs) => outputs,
            Err(broken) => {
                if outcome.is_success() {
                    outcome = broken;
                }
                Vec::new()
            }
        };
        if outcome.is_success()
            && let Some(missing) = task
                .expected_outputs
                .iter()
                .find(|path| !outputs.iter().any(|o| &o.path == *path))
        {
            outcome = Outcome::MissingOutput(missing.clone());
        }
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
        })
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
