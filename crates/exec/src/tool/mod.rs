//! Installed tools (Blender, ffmpeg) as a runtime: a task runs this
//! machine's own binary of a tool, confined by bubblewrap.
//!
//! A job names a tool and the version it needs (`ffmpeg@5.1`); that
//! request is the job's module. A provider offers the tools it has,
//! declared as [`Tool`]s: name, version, the BLAKE3 digest of the binary,
//! the CPU's ISA level and the threads it allows. [`ToolRuntime::load`]
//! refuses a request this machine cannot serve, with the reason.
//!
//! What is and is not a result, unlike Wasm:
//! - The digest binds the outcome and the output files. A tool's stdout
//!   and stderr are its log (Blender prints timings and memory use): kept
//!   and returned, never compared, so the manifest holds the empty
//!   stream's hash for both.
//! - There is no fuel. The work a task is paid for is the amount its job
//!   declares (`limits.fuel`, in the job's own unit such as megapixel
//!   samples), the same on every replica and fixed in the lease before a
//!   provider bids, so no provider can inflate it; every tool result
//!   reports exactly that. A provider prices the declared unit in its bid.
//! - Running past the wall-clock or CPU-time limit, or being killed by
//!   the host, is an [`ExecError`]: how long a tool takes depends on the
//!   machine, so it is never a result. A signal the tool raised itself
//!   (a crash) and the output size limit are results.
//!
//! The sandbox is described in [`sandbox`].

mod cgroup;
pub mod gpu;
mod sandbox;
mod seccomp;
pub mod video;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Instant;

use cairn_wire::{ContentId, ToolRequest};

use crate::manifest::outputs_of;
use crate::{ExecError, Manifest, Runtime, Task, TaskResult};
use gpu::Gpus;
use sandbox::Sandbox;

/// A tool this runtime can offer: how to find its version.
struct Known {
    name: &'static str,
    /// Arguments that print the version.
    version_args: &'static [&'static str],
    /// What the version line starts with; the version is the next word.
    prefix: &'static str,
    /// How to find the GPU backends it can use, if it can use any.
    gpu_probe: Option<GpuProbe>,
}

/// How a tool says which GPU backends it can use with the GPUs it is lent.
enum GpuProbe {
    /// These arguments print [`GPU_MARK`] and a backend (`CUDA`) for each
    /// backend it finds a device of.
    Prints(&'static [&'static str]),
    /// These arguments succeed only where it can use this backend.
    Succeeds(&'static [&'static str], &'static str),
}

/// What a GPU probe prints before each backend it can use.
const GPU_MARK: &str = "cairn-gpu ";

/// Blender's GPU probe: the Cycles backends with which it renders a
/// few pixels on a device here. Listing devices is not enough: Cycles
/// lists a GPU it has no kernels for. OptiX needs an RTX-class GPU; CUDA
/// runs on any NVIDIA GPU Cycles takes.
const BLENDER_GPU_PROBE: &str = "\
import os
import bpy
prefs = bpy.context.preferences.addons['cycles'].preferences
if hasattr(prefs, 'refresh_devices'):
    prefs.refresh_devices()
scene = bpy.context.scene
scene.render.engine = 'CYCLES'
scene.render.resolution_x = scene.render.resolution_y = 8
scene.render.image_settings.file_format = 'BMP'
scene.cycles.samples = 1
scene.cycles.device = 'GPU'
for kind in ('CUDA', 'OPTIX'):
    try:
        prefs.compute_device_type = kind
        devices = prefs.get_devices_for_type(kind)
        if not any(d.type == kind for d in devices):
            continue
        for d in devices:
            d.use = d.type == kind
        out = '/tmp/probe-' + kind + '.bmp'
        scene.render.filepath = out
        bpy.ops.render.render(write_still=True)
        if os.path.getsize(out) > 0:
            print('cairn-gpu', kind)
    except Exception:
        pass
";

/// The tools Cairn knows how to declare. Each is found as `/usr/bin/<name>`
/// (or under [`ToolConfig::search`]).
const KNOWN: &[Known] = &[
    Known {
        name: "blender",
        version_args: &["--factory-startup", "--version"],
        prefix: "Blender ",
        gpu_probe: Some(GpuProbe::Prints(&[
            "-b",
            "--factory-startup",
            "--python-expr",
            BLENDER_GPU_PROBE,
        ])),
    },
    Known {
        name: "ffmpeg",
        version_args: &["-hide_banner", "-version"],
        prefix: "ffmpeg version ",
        // Opens a CUDA device and passes a frame through it: what NVDEC,
        // NVENC and the CUDA filters start from.
        gpu_probe: Some(GpuProbe::Succeeds(
            &[
                "-hide_banner",
                "-loglevel",
                "error",
                "-init_hw_device",
                "cuda=gpu",
                "-f",
                "lavfi",
                "-i",
                "nullsrc=s=64x64:d=0.04",
                "-vf",
                "hwupload_cuda",
                "-f",
                "null",
                "-",
            ],
            "CUDA",
        )),
    },
];

/// A tool installed on this machine, as a provider declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    /// Its name, as jobs ask for it (`ffmpeg`).
    pub name: String,
    /// Its version, numbers and dots (`5.1.9`).
    pub version: String,
    /// BLAKE3 of the executable: replicas are comparable when it agrees.
    pub binary: ContentId,
    /// The CPU's instruction-set level (`x86-64-v3`): a tool may take other
    /// code paths, and give other bits, on another level.
    pub isa: String,
    /// Threads a task of it may use here.
    pub threads: u32,
    /// The GPU backends it found devices of among the GPUs this machine
    /// lends, `+`-separated (`CUDA+OPTIX`); none if it can use none.
    pub gpu: Option<String>,
    /// Where the executable is.
    pub path: PathBuf,
}

/// How the runtime finds and confines tools.
#[derive(Clone, Debug)]
pub struct ToolConfig {
    /// The bubblewrap executable.
    pub bwrap: PathBuf,
    /// Folders searched for tools, in order.
    pub search: Vec<PathBuf>,
    /// Threads a task may use (declared; the job's arguments choose).
    pub threads: u32,
    /// Whether to lend this machine's NVIDIA GPUs ([`gpu::Gpus::find`]) to
    /// the tasks that ask for them.
    pub gpus: bool,
}

impl Default for ToolConfig {
    fn default() -> Self {
        Self {
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            search: vec![PathBuf::from("/usr/bin")],
            threads: 1,
            gpus: false,
        }
    }
}

/// Runs installed tools in a sandbox. See the module documentation.
pub struct ToolRuntime {
    sandbox: Sandbox,
    tools: Vec<Tool>,
    gpus: Gpus,
    /// Loaded requests: module id → index into `tools`.
    loaded: RwLock<BTreeMap<ContentId, usize>>,
}

impl ToolRuntime {
    /// Finds bubblewrap and every known tool installed here. Fails when
    /// bubblewrap is missing or cannot make a sandbox (no tool can then
    /// run safely); a tool that is missing, or whose version cannot be
    /// read inside the sandbox, is left out.
    pub fn new(config: ToolConfig) -> Result<Self, ExecError> {
        let sandbox = Sandbox::new(&config.bwrap)?;
        // A GPU task's memory is bounded by its group only (see
        // `Sandbox::run`): without groups, no GPU is lent.
        let gpus = if config.gpus && sandbox.has_groups() {
            Gpus::find()
        } else {
            Gpus::default()
        };
        let isa = isa_level();
        let mut tools = Vec::new();
        for known in KNOWN {
            let Some(path) = config
                .search
                .iter()
                .map(|dir| dir.join(known.name))
                .find(|p| p.is_file())
            else {
                continue;
            };
            let Ok(version) = sandbox.version(&path, known.version_args, known.prefix) else {
                continue;
            };
            let mut hasher = blake3::Hasher::new();
            hasher
                .update_mmap(&path)
                .map_err(ExecError::io(format!("hashing {}", path.display())))?;
            let gpu = match &known.gpu_probe {
                Some(probe) if !gpus.all().is_empty() => {
                    gpu_backends(&sandbox, &path, probe, &gpus.every_node())
                }
                _ => None,
            };
            tools.push(Tool {
                name: known.name.to_owned(),
                version,
                binary: hasher.finalize().into(),
                isa: isa.to_owned(),
                threads: config.threads.max(1),
                gpu,
                path,
            });
        }
        Ok(Self {
            sandbox,
            tools,
            gpus,
            loaded: RwLock::default(),
        })
    }

    /// The GPUs this machine lends (none unless [`ToolConfig::gpus`]).
    pub fn gpus(&self) -> &Gpus {
        &self.gpus
    }

    /// The tools this machine offers.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// Whether a request with this id is loaded.
    pub fn is_loaded(&self, module: &ContentId) -> bool {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(module)
    }

    /// The name of the tool a loaded request runs (`blender`).
    pub fn name_of(&self, module: &ContentId) -> Option<String> {
        self.loaded(module).ok().map(|tool| tool.name.clone())
    }

    fn loaded(&self, module: &ContentId) -> Result<&Tool, ExecError> {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded
            .get(module)
            .map(|&i| &self.tools[i])
            .ok_or_else(|| ExecError::NotLoaded(module.to_string()))
    }
}

impl Runtime for ToolRuntime {
    /// `module` is a tool request (`ffmpeg@5.1`); its id is the id of
    /// those bytes, the same on every machine.
    fn load(&self, module: &[u8]) -> Result<ContentId, ExecError> {
        let text = std::str::from_utf8(module)
            .map_err(|_| ExecError::UnknownTool("a tool request is UTF-8 text".into()))?;
        let request = ToolRequest::parse(text.trim()).map_err(ExecError::UnknownTool)?;
        let Some(index) = self
            .tools
            .iter()
            .position(|t| request.matches(&t.name, &t.version))
        else {
            let have: Vec<String> = self
                .tools
                .iter()
                .map(|t| format!("{}@{}", t.name, t.version))
                .collect();
            return Err(ExecError::UnknownTool(format!(
                "this machine has no {request} (it has {})",
                if have.is_empty() {
                    "no tools".to_owned()
                } else {
                    have.join(", ")
                }
            )));
        };
        let id = ContentId::of(module);
        self.loaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, index);
        Ok(id)
    }

    fn run(&self, task: &Task<'_>) -> Result<TaskResult, ExecError> {
        let tool = self.loaded(&task.module)?;
        let wanted = task.limits.gpus;
        if wanted > 0 && tool.gpu.is_none() {
            return Err(ExecError::Gpu(format!(
                "the task needs {wanted} GPU(s), and {} here can use none",
                tool.name
            )));
        }
        let held = self
            .gpus
            .hold(wanted, task.limits.wall_time)
            .map_err(ExecError::Gpu)?;
        let started = Instant::now();
        let ran = self
            .sandbox
            .run(&tool.path, task, tool.threads, &held.nodes())?;
        drop(held);
        let (outcome, outputs) = outputs_of(task, ran.outcome)?;
        let fuel_used = task.limits.fuel;
        let manifest = Manifest {
            outcome,
            fuel_used,
            stdout: ContentId::of(b""),
            stderr: ContentId::of(b""),
            outputs,
        };
        Ok(TaskResult {
            digest: manifest.digest(),
            outcome: manifest.outcome,
            fuel_used,
            stdout: ran.stdout,
            stderr: ran.stderr,
            outputs: manifest.outputs,
            wall_time: started.elapsed(),
            cpu_time: ran.cpu_time,
        })
    }
}

/// The GPU backends `tool` can use with `nodes` bound, as its `probe`
/// says (`CUDA+OPTIX`); none if it can use none.
fn gpu_backends(
    sandbox: &Sandbox,
    tool: &std::path::Path,
    probe: &GpuProbe,
    nodes: &[(PathBuf, PathBuf)],
) -> Option<String> {
    match probe {
        GpuProbe::Prints(args) => {
            let ran = sandbox.probe(tool, args, nodes).ok()?;
            parse_gpu_backends(&String::from_utf8_lossy(&ran.stdout))
        }
        GpuProbe::Succeeds(args, backend) => {
            let ran = sandbox.probe(tool, args, nodes).ok()?;
            ran.outcome.is_success().then(|| (*backend).to_owned())
        }
    }
}

/// The backends named on [`GPU_MARK`] lines, known ones only, in a fixed
/// order.
fn parse_gpu_backends(output: &str) -> Option<String> {
    let found: Vec<&str> = ["CUDA", "OPTIX"]
        .into_iter()
        .filter(|backend| {
            output
                .lines()
                .any(|l| l.trim().strip_prefix(GPU_MARK) == Some(*backend))
        })
        .collect();
    (!found.is_empty()).then(|| found.join("+"))
}

/// The x86-64 micro-architecture level this CPU reaches (`x86-64-v1` to
/// `v4`), or the architecture's name elsewhere.
pub fn isa_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let v2 = has!("cmpxchg16b")
            && has!("popcnt")
            && has!("sse3")
            && has!("sse4.1")
            && has!("sse4.2")
            && has!("ssse3");
        let v3 = v2
            && has!("avx")
            && has!("avx2")
            && has!("bmi1")
            && has!("bmi2")
            && has!("f16c")
            && has!("fma")
            && has!("lzcnt")
            && has!("movbe");
        let v4 = v3
            && has!("avx512f")
            && has!("avx512bw")
            && has!("avx512cd")
            && has!("avx512dq")
            && has!("avx512vl");
        match (v2, v3, v4) {
            (_, _, true) => "x86-64-v4",
            (_, true, _) => "x86-64-v3",
            (true, ..) => "x86-64-v2",
            _ => "x86-64-v1",
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH
    }
}

/// The version in a tool's version output: the first word after
/// `prefix` on the line that starts with it, cut to its leading numbers
/// and dots (`5.1.9-0+deb12u1` is `5.1.9`).
fn parse_version(output: &str, prefix: &str) -> Option<String> {
    let rest = output.lines().find_map(|l| l.trim().strip_prefix(prefix))?;
    let word = rest.split_whitespace().next()?;
    let end = word
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(word.len());
    let version = word[..end].trim_end_matches('.');
    (!version.is_empty() && version.starts_with(|c: char| c.is_ascii_digit()))
        .then(|| version.to_owned())
}

/// Debian packages the tool tests need, by the program each provides.
#[cfg(any(test, feature = "testing"))]
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("/usr/bin/bwrap", "bubblewrap"),
    ("/usr/bin/ffmpeg", "ffmpeg"),
    ("/usr/bin/blender", "blender"),
];

/// Installs bubblewrap, ffmpeg and Blender from Debian when missing,
/// saying so, for the tests (the test command installs what it needs, as
/// it adds the wasm32-wasip1 target). Needs root; otherwise it panics with the
/// command to run. Once per process.
#[cfg(any(test, feature = "testing"))]
pub fn install_test_tools() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let missing: Vec<&str> = TEST_PACKAGES
            .iter()
            .filter(|(program, _)| !std::path::Path::new(program).exists())
            .map(|(_, package)| *package)
            .collect();
        if missing.is_empty() {
            return;
        }
        println!(
            "installing {} from Debian, for the tool tests",
            missing.join(" ")
        );
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "the tool tests need {0}: apt-get install {0}",
            missing.join(" ")
        );
        let apt = |args: &[&str]| {
            let status = std::process::Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .expect("running apt-get");
            assert!(status.success(), "apt-get {args:?} failed");
        };
        apt(&["update", "-q"]);
        let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
        install.extend(&missing);
        apt(&install);
    });
}

#[cfg(test)]
mod tests;
