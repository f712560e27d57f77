use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_wire::{ContentId, ToolRequest};
use toml::Spanned;

use crate::JobError;
use crate::raw::{RawJob, RawLimits, RawMarket, RawTasks, RawVerify, RawVideo};
use crate::rules::{
    ARGS_MAX, EXPANDED_BYTES_MAX, FUEL_RANGE, GPU_MEMORY_MIB_RANGE, GPUS_RANGE, INPUTS_MAX,
    MEMORY_MIB_RANGE, OUTPUT_MIB_RANGE, OUTPUTS_MAX, STDOUT_KIB_RANGE, WALL_TIME_S_RANGE,
};
use crate::template::Template;
use crate::tiles::{Grid, Tile, parse_tile_name};
use crate::video::{self, Rendition, Video};

/// Modules named `cairn:<name>` are workloads built into the `cairn` binary.
pub const BUILTIN_PREFIX: &str = "cairn:";

/// Limits on a job file itself. Each is far above honest use and far below
/// what would hurt the machine that checks it. What a job may ask for is in
/// `rules`, shared with jobs that arrive over a node's API.
const JOB_FILE_BYTES_MAX: u64 = 1 << 20;
const MODULE_BYTES_MAX: u64 = 256 << 20;
/// What one rendered string costs besides its bytes, for
/// [`EXPANDED_BYTES_MAX`].
const STRING_OVERHEAD: u64 = std::mem::size_of::<String>() as u64;

/// A loaded, validated job.
#[derive(Clone, Debug)]
pub struct Job {
    /// The job file it came from.
    pub path: PathBuf,
    /// A human name (defaults to the file's stem).
    pub name: String,
    /// Which runtime executes the tasks.
    pub runtime: Runtime,
    /// The program every task runs.
    pub module: ModuleRef,
    /// Files every task can read under `/input`.
    pub inputs: Vec<InputFile>,
    /// Per-task limits.
    pub limits: Limits,
    /// What the requester is willing to pay.
    pub market: Market,
    /// How results are checked.
    pub verify: VerifyPolicy,
    /// Seeds each task's randomness (together with the task's value).
    pub seed: u64,
    /// How long the requester has to approve each result before it is paid
    /// (`[approval] window_s`): `None` pays every accepted result when the
    /// job ends.
    pub approval: Option<Duration>,
    /// A video job's clip and ladder: its tasks and inputs come from the
    /// clip's segments ([`Job::segmented`]), and it has none before.
    pub video: Option<Video>,
    pub(crate) tasks: Vec<TaskSpec>,
}

/// A runtime that executes tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// Deterministic WebAssembly (WASI preview 1).
    Wasm,
    /// A tool installed on the provider (Blender, ffmpeg), run in a
    /// sandbox; `module` names it.
    Tool,
}

/// Where a job's module comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleRef {
    /// A workload built into the `cairn` binary (`cairn:render`).
    Builtin(String),
    /// A module file on disk.
    File(PathBuf),
    /// An installed tool (`ffmpeg@5.1`), for [`Runtime::Tool`].
    Tool(ToolRequest),
}

impl ModuleRef {
    /// The runtime name the market matches providers by: `wasm`, or the
    /// tool request.
    pub fn runtime_name(&self) -> String {
        match self {
            ModuleRef::Tool(request) => request.to_string(),
            ModuleRef::Builtin(_) | ModuleRef::File(_) => "wasm".into(),
        }
    }
}

/// One input file, visible to every task at `/input/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    /// The name the guest sees under `/input`.
    pub name: String,
    /// Where it is on this machine.
    pub host_path: PathBuf,
    /// Its content id at load time.
    pub id: ContentId,
    /// Its size in bytes.
    pub size_bytes: u64,
}

/// What one task may consume. Running out of fuel is a deterministic result;
/// the wall-clock limit only guards against hangs and is never part of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wasm fuel (roughly one unit per instruction).
    pub fuel: u64,
    /// Linear memory, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock watchdog.
    pub wall_time: Duration,
    /// Bytes the task may write to `/output`, in total.
    pub output_bytes: u64,
    /// Bytes the task may write to stdout, and separately to stderr.
    pub stdout_bytes: u64,
    /// GPUs the task needs, and is lent (a tool task only).
    pub gpus: u32,
    /// Memory each of those GPUs must have, MiB (0: any).
    pub gpu_memory_mib: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            memory_bytes: 256 << 20,
            wall_time: Duration::from_secs(600),
            output_bytes: 64 << 20,
            stdout_bytes: 64 << 10,
            gpus: 0,
            gpu_memory_mib: 0,
        }
    }
}

/// The requester's terms for the market (used once the job goes to the
/// network). Amounts are in µCAIRN, the ledger's smallest unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Market {
    /// The most the whole job may cost.
    pub budget_ucairn: Option<u64>,
    /// The highest acceptable price per 10^9 fuel.
    pub price_max_ucairn_per_gfuel: Option<u64>,
}

/// How results are verified.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VerifyPolicy {
    /// Trust the provider.
    None,
    /// Run every task on `replicas` providers and compare digests.
    Replicate {
        /// How many providers run each task.
        replicas: u32,
    },
    /// Re-run a random share of tasks elsewhere.
    Spot {
        /// The share of tasks re-run, in (0, 1].
        probability: f64,
    },
    /// Replicate by provider reputation until the requested confidence.
    Adaptive {
        /// The required probability that an accepted result is right.
        confidence: f64,
    },
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self::Adaptive { confidence: 0.999 }
    }
}

/// One task of a job, with its templates filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    /// Position in the job's task set (0-based).
    pub index: u32,
    /// The task's value (the frame number, say), substituted for `{task}`.
    pub value: u64,
    /// The module's arguments (after the program name).
    pub args: Vec<String>,
    /// Paths under `/output` the task must produce.
    pub outputs: Vec<String>,
    /// Seeds the task's randomness: the same on every machine.
    pub seed: [u8; 32],
    /// The task's own fuel, where it is less than the job's `limits.fuel`:
    /// the most a Wasm task may use, and the work a tool task declares
    /// and is paid for (a video's 240p task is paid for its own pixels,
    /// not its 720p sibling's). None: the job's.
    pub fuel: Option<u64>,
    /// Files of its own under `/input`, beside the job's (a video's
    /// segment).
    pub inputs: Vec<InputFile>,
}

impl TaskSpec {
    /// The limits this task runs under: the job's, with its own fuel.
    pub fn limits(&self, job: &Limits) -> Limits {
        Limits {
            fuel: self.fuel.map_or(job.fuel, |fuel| fuel.min(job.fuel)),
            ..*job
        }
    }
}

impl Job {
    /// Loads and validates the job file at `path`. `builtins` lists the names
    /// accepted after `cairn:` in `module`. The module and inputs must lie
    /// in the job file's folder (see [`Job::load_allowing`]).
    pub fn load(path: &Path, builtins: &[&str]) -> Result<Self, JobError> {
        Self::load_allowing(path, builtins, &[])
    }

    /// [`Job::load`], also accepting a module and inputs from the folders
    /// in `allowed`: a job file from someone else can then not send a file
    /// the user did not allow (such as `/etc/passwd` or `~/.ssh/id_ed25519`).
    pub fn load_allowing(
        path: &Path,
        builtins: &[&str],
        allowed: &[PathBuf],
    ) -> Result<Self, JobError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| JobError::file(path, format!("cannot read job file: {e}")))?;
        if meta.len() > JOB_FILE_BYTES_MAX {
            return Err(JobError::file(
                path,
                format!(
                    "job file is {} bytes; the limit is {JOB_FILE_BYTES_MAX}",
                    meta.len()
                ),
            ));
        }
        let source = std::fs::read_to_string(path)
            .map_err(|e| JobError::file(path, format!("cannot read job file: {e}")))?;
        Self::parse_allowing(path, &source, builtins, allowed)
    }

    /// Validates `source` as if it were the file at `path` (relative paths
    /// inside it resolve against `path`'s folder).
    pub fn parse(path: &Path, source: &str, builtins: &[&str]) -> Result<Self, JobError> {
        Self::parse_allowing(path, source, builtins, &[])
    }

    /// [`Job::parse`] with the folders of [`Job::load_allowing`].
    pub fn parse_allowing(
        path: &Path,
        source: &str,
        builtins: &[&str],
        allowed: &[PathBuf],
    ) -> Result<Self, JobError> {
        let raw: RawJob = toml::from_str(source).map_err(|e| {
            JobError::at(
                path,
                source,
                e.span(),
                "",
                e.message().trim_end().to_string(),
            )
        })?;
        Checker {
            path,
            source,
            allowed,
        }
        .check(raw, builtins)
    }

    /// The job's tasks, in order.
    pub fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }
}

/// Validation with access to the source for error positions.
struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
    /// Folders besides the job's own that files may come from.
    allowed: &'a [PathBuf],
}

impl Checker<'_> {
    fn err<T>(&self, value: &Spanned<T>, key: &str, message: impl Into<String>) -> JobError {
        JobError::at(self.path, self.source, Some(value.span()), key, message)
    }

    fn folder(&self) -> &Path {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }
    }

    fn check(&self, raw: RawJob, builtins: &[&str]) -> Result<Job, JobError> {
        let header = raw.job;
        let runtime = match header.runtime.as_ref().map(|r| r.get_ref().as_str()) {
            None | Some("wasm") => Runtime::Wasm,
            Some("tool") => Runtime::Tool,
            Some(other) => {
                return Err(self.err(
                    header.runtime.as_ref().unwrap(),
                    "job.runtime",
                    format!(
                        "runtime '{other}' is not supported by this build; expected \"wasm\" or \"tool\""
                    ),
                ));
            }
        };
        let module = match runtime {
            Runtime::Wasm => self.check_module(&header.module, builtins)?,
            Runtime::Tool => ToolRequest::parse(header.module.get_ref())
                .map(ModuleRef::Tool)
                .map_err(|reason| {
                    self.err(
                        &header.module,
                        "job.module",
                        format!(
                            "{reason} (with runtime = \"tool\", module names an installed tool)"
                        ),
                    )
                })?,
        };
        if header.args.len() > ARGS_MAX {
            return Err(self.err(
                &header.args[ARGS_MAX],
                "job.args",
                format!("at most {ARGS_MAX} arguments"),
            ));
        }
        let args = header
            .args
            .iter()
            .map(|arg| Template::parse(arg.get_ref()).map_err(|m| self.err(arg, "job.args", m)))
            .collect::<Result<Vec<_>, _>>()?;
        let video = match (&raw.video, &raw.tasks) {
            (Some(video), _) => {
                let given = [
                    ("[tasks]", raw.tasks.is_some()),
                    ("job.args", !header.args.is_empty()),
                    ("[inputs]", !raw.inputs.files.is_empty()),
                    ("[outputs]", !raw.outputs.paths.is_empty()),
                ];
                let fuel_declared = raw.limits.fuel.is_some();
                Some(self.check_video(video, &header.module, &module, &given, fuel_declared)?)
            }
            (None, Some(_)) => None,
            (None, None) => {
                return Err(JobError::file(
                    self.path,
                    "missing table [tasks] (or [video], for a clip encoded into a ladder)",
                ));
            }
        };
        let values = match &raw.tasks {
            Some(tasks) => self.check_tasks(tasks)?,
            None => Vec::new(),
        };
        let outputs = self.check_outputs(&raw.outputs.paths)?;
        let grid = match &raw.tasks {
            Some(tasks) => self.check_tiles(tasks, runtime, &outputs, values.len())?,
            None => None,
        };
        let inputs = self.check_inputs(&raw.inputs.files)?;
        let mut limits = self.check_limits(&raw.limits)?;
        if let (Some(gpus), Runtime::Wasm) = (&raw.limits.gpus, runtime)
            && limits.gpus > 0
        {
            return Err(self.err(gpus, "limits.gpus", WASM_GPU_REASON));
        }
        if let (Some(memory), 0) = (&raw.limits.gpu_memory_mib, limits.gpus)
            && limits.gpu_memory_mib > 0
        {
            return Err(self.err(
                memory,
                "limits.gpu_memory_mib",
                "GPU memory is asked for, but no GPU (limits.gpus)",
            ));
        }
        if video.is_some() && raw.limits.memory_mib.is_none() {
            // Address space: ffmpeg maps far more than it touches.
            limits.memory_bytes = video::MEMORY_MIB_DEFAULT << 20;
        }
        if let Some(grid) = grid {
            // `limits.fuel` is a frame's work; each tile declares its share,
            // and that is what every bidder and lease sees.
            limits.fuel = limits.fuel.div_ceil(u64::from(grid.count()));
        }
        let market = self.check_market(&raw.market, &limits)?;
        let verify = match (&raw.verify, runtime) {
            (Some(verify), Runtime::Wasm) => self.check_verify(verify)?,
            (None, Runtime::Wasm) => VerifyPolicy::default(),
            (Some(verify), Runtime::Tool) => {
                let policy = self.check_verify(verify)?;
                if !matches!(
                    policy,
                    VerifyPolicy::Replicate { .. } | VerifyPolicy::Spot { .. }
                ) {
                    return Err(self.err(
                        &verify.get_ref().policy,
                        "verify.policy",
                        TOOL_POLICY_REASON,
                    ));
                }
                policy
            }
            (None, Runtime::Tool) => VerifyPolicy::Replicate { replicas: 2 },
        };

        let per_task: u64 = args
            .iter()
            .chain(&outputs)
            .map(|t| t.rendered_len_max() + STRING_OVERHEAD)
            .sum();
        let tiles: Vec<Option<Tile>> = match grid {
            Some(grid) => grid.tiles().map(Some).collect(),
            None => vec![None],
        };
        let task_count = values.len() as u64 * tiles.len() as u64;
        let expanded = per_task.saturating_mul(task_count);
        if let (Some(tasks), true) = (&raw.tasks, expanded > EXPANDED_BYTES_MAX) {
            return Err(self.err(
                tasks,
                "tasks",
                format!(
                    "{} tasks of up to {per_task} bytes of arguments and output paths each \
                     expand to {expanded} bytes; the limit is {EXPANDED_BYTES_MAX}: \
                     use fewer or shorter arguments, or split the job",
                    task_count
                ),
            ));
        }
        // A frame's tiles one after another, so a frame is done early.
        let tasks = values
            .iter()
            .flat_map(|&value| tiles.iter().map(move |&tile| (value, tile)))
            .enumerate()
            .map(|(index, (value, tile))| TaskSpec {
                index: index as u32,
                value,
                args: args.iter().map(|t| t.render(value, tile)).collect(),
                outputs: outputs.iter().map(|t| t.render(value, tile)).collect(),
                // A tile is a part of its frame's render: the frame's seed.
                seed: task_seed(header.seed, value),
                fuel: None,
                inputs: Vec::new(),
            })
            .collect();
        let name = match &header.name {
            Some(name) => {
                crate::check_job_name(name.get_ref())
                    .map_err(|reason| self.err(name, "job.name", reason))?;
                name.get_ref().clone()
            }
            None => self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|stem| crate::check_job_name(stem).is_ok())
                .unwrap_or_else(|| "job".into()),
        };
        Ok(Job {
            path: self.path.to_path_buf(),
            name,
            runtime,
            module,
            inputs,
            limits,
            market,
            verify,
            seed: header.seed,
            approval: match &raw.approval {
                Some(approval) => Some(Duration::from_secs(
                    crate::rules::check_range(
                        *approval.window_s.get_ref(),
                        &crate::rules::APPROVAL_WINDOW_S_RANGE,
                    )
                    .map_err(|reason| self.err(&approval.window_s, "approval.window_s", reason))?,
                )),
                None => None,
            },
            video,
            tasks,
        })
    }

    /// A `[video]`: an ffmpeg job with no task set, arguments, inputs or
    /// outputs of its own (they all come from the clip's segments).
    fn check_video(
        &self,
        video: &Spanned<RawVideo>,
        module_text: &Spanned<String>,
        module: &ModuleRef,
        given: &[(&str, bool)],
        fuel_declared: bool,
    ) -> Result<Video, JobError> {
        match module {
            ModuleRef::Tool(request) if request.name == "ffmpeg" => {}
            _ => {
                return Err(self.err(
                    module_text,
                    "job.module",
                    "a [video] job runs ffmpeg: runtime = \"tool\", module = \"ffmpeg@5\"",
                ));
            }
        }
        if let Some((what, _)) = given.iter().find(|(_, given)| *given) {
            return Err(self.err(
                video,
                "video",
                format!(
                    "a [video] job's tasks, arguments, inputs and outputs come from its clip's \
                     segments: remove {what}"
                ),
            ));
        }
        let raw_video = video.get_ref();
        let input = match &raw_video.input {
            Some(input) => Some(
                self.check_inputs(std::slice::from_ref(input))
                    .map_err(|mut e| {
                        e.key = "video.input".into();
                        e
                    })?
                    .remove(0),
            ),
            None => None,
        };
        let segment_s = match &raw_video.segment_s {
            None => video::SEGMENT_S_DEFAULT,
            Some(seconds) => match u32::try_from(*seconds.get_ref()) {
                Ok(s) if (1..=video::SEGMENT_S_MAX).contains(&s) => s,
                _ => {
                    return Err(self.err(
                        seconds,
                        "video.segment_s",
                        format!("expected 1 to {} seconds", video::SEGMENT_S_MAX),
                    ));
                }
            },
        };
        let renditions = match &raw_video.renditions {
            None => video::LADDER
                .iter()
                .map(|r| Rendition::parse(r).expect("the default ladder parses"))
                .collect(),
            Some(list) => {
                if list.get_ref().is_empty() || list.get_ref().len() > video::RENDITIONS_MAX {
                    return Err(self.err(
                        list,
                        "video.renditions",
                        format!("expected 1 to {} renditions", video::RENDITIONS_MAX),
                    ));
                }
                let mut renditions: Vec<Rendition> = Vec::new();
                for text in list.get_ref() {
                    let rendition = Rendition::parse(text.get_ref())
                        .map_err(|reason| self.err(text, "video.renditions", reason))?;
                    if renditions
                        .iter()
                        .any(|r| r.to_string() == rendition.to_string())
                    {
                        return Err(self.err(
                            text,
                            "video.renditions",
                            format!("two renditions are named {rendition}"),
                        ));
                    }
                    renditions.push(rendition);
                }
                renditions
            }
        };
        Ok(Video {
            input,
            segment_s,
            renditions,
            fuel_declared,
        })
    }

    fn check_module(
        &self,
        module: &Spanned<String>,
        builtins: &[&str],
    ) -> Result<ModuleRef, JobError> {
        let text = module.get_ref();
        if let Some(name) = text.strip_prefix(BUILTIN_PREFIX) {
            if builtins.contains(&name) {
                return Ok(ModuleRef::Builtin(name.to_string()));
            }
            let known: Vec<String> = builtins.iter().map(|b| format!("cairn:{b}")).collect();
            return Err(self.err(
                module,
                "job.module",
                format!(
                    "no built-in module '{text}'; expected one of {} or a path to a .wasm file",
                    known.join(", ")
                ),
            ));
        }
        if text.is_empty() {
            return Err(self.err(module, "job.module", "expected a path to a .wasm file"));
        }
        let path = crate::path::input_path(self.folder(), text, self.allowed)
            .map_err(|reason| self.err(module, "job.module", reason))?;
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() <= MODULE_BYTES_MAX => {
                Ok(ModuleRef::File(path))
            }
            Ok(meta) if meta.is_file() => Err(self.err(
                module,
                "job.module",
                format!(
                    "module is {} bytes; the limit is {MODULE_BYTES_MAX}",
                    meta.len()
                ),
            )),
            Ok(_) => Err(self.err(
                module,
                "job.module",
                format!("'{}' is not a file", path.display()),
            )),
            Err(e) => Err(self.err(
                module,
                "job.module",
                format!("cannot read module '{}': {e}", path.display()),
            )),
        }
    }

    fn check_tasks(&self, tasks: &Spanned<RawTasks>) -> Result<Vec<u64>, JobError> {
        let raw = tasks.get_ref();
        let given = [
            raw.range.is_some(),
            raw.list.is_some(),
            raw.frames.is_some(),
        ];
        match given.iter().filter(|g| **g).count() {
            0 => {
                return Err(self.err(
                    tasks,
                    "tasks",
                    "expected one of 'range = [start, end]', 'list = [values…]' or \
                     'frames = \"1-10, 15\"'",
                ));
            }
            1 => {}
            _ => {
                return Err(self.err(
                    tasks,
                    "tasks",
                    "give one of 'range', 'list' or 'frames', not several",
                ));
            }
        }
        if let Some(range) = &raw.range {
            let &[start, end] = range.get_ref().as_slice() else {
                return Err(self.err(
                    range,
                    "tasks.range",
                    "expected two numbers [start, end] (end excluded)",
                ));
            };
            if end <= start {
                return Err(self.err(
                    range,
                    "tasks.range",
                    format!("the task set [{start}, {end}) is empty; expected start < end"),
                ));
            }
            crate::rules::check_task_count(end - start)
                .map_err(|reason| self.err(range, "tasks.range", reason))?;
            return Ok((start..end).collect());
        }
        let (values, at, key) = match (&raw.list, &raw.frames) {
            (Some(list), _) => (list.get_ref().clone(), list.span(), "tasks.list"),
            (None, Some(frames)) => (
                parse_frames(frames.get_ref())
                    .map_err(|reason| self.err(frames, "tasks.frames", reason))?,
                frames.span(),
                "tasks.frames",
            ),
            (None, None) => unreachable!("one form is given"),
        };
        let err =
            |message: String| JobError::at(self.path, self.source, Some(at.clone()), key, message);
        if values.is_empty() {
            return Err(err(
                "the task set is empty; expected at least one value".into()
            ));
        }
        crate::rules::check_task_count(values.len() as u64).map_err(err)?;
        let mut seen = BTreeSet::new();
        for value in &values {
            if !seen.insert(*value) {
                return Err(err(format!(
                    "task value {value} appears twice; each task needs its own"
                )));
            }
        }
        Ok(values)
    }

    /// `[tasks] tiles`: only for a tool's frames, each output naming its
    /// tile, and the tasks of every frame's tiles within the task limit.
    fn check_tiles(
        &self,
        tasks: &Spanned<RawTasks>,
        runtime: Runtime,
        outputs: &[Template],
        frames: usize,
    ) -> Result<Option<Grid>, JobError> {
        let Some(tiles) = &tasks.get_ref().tiles else {
            return Ok(None);
        };
        let err = |reason: String| self.err(tiles, "tasks.tiles", reason);
        let grid = Grid::parse(tiles.get_ref()).map_err(err)?;
        if runtime != Runtime::Tool {
            // A Wasm task's `limits.fuel` bounds it; a tile's share of it
            // would stop the task, not pay for it.
            return Err(err(
                "tiles split a renderer's frames: only with runtime = \"tool\"".into(),
            ));
        }
        // Each output names its tile just before its extension, so that
        // the tiles of a frame write files of their own, and whoever
        // writes the results joins them from their names alone.
        // A BMP: what the tiles are joined into.
        let names_its_tile = |template: &Template| {
            template.render(0, None).to_lowercase().ends_with(".bmp")
                && grid.tiles().all(|tile| {
                    parse_tile_name(&template.render(0, Some(tile)))
                        == Some((template.render(0, None), tile))
                })
        };
        if outputs.is_empty() || !outputs.iter().all(names_its_tile) {
            return Err(err(
                "each of outputs.paths must be a BMP that names its tile with '{tile}' just \
                 before its extension (\"frame-{task:04}{tile}.bmp\"): the tiles of a frame \
                 write files of their own, joined into the frame as a BMP"
                    .into(),
            ));
        }
        crate::rules::check_task_count(frames as u64 * u64::from(grid.count())).map_err(
            |reason| {
                err(format!(
                    "{frames} frames of {} tiles each: {reason}",
                    grid.count()
                ))
            },
        )?;
        Ok(Some(grid))
    }

    fn check_outputs(&self, paths: &[Spanned<String>]) -> Result<Vec<Template>, JobError> {
        if paths.len() > OUTPUTS_MAX {
            return Err(self.err(
                &paths[OUTPUTS_MAX],
                "outputs.paths",
                format!("at most {OUTPUTS_MAX} outputs"),
            ));
        }
        paths
            .iter()
            .map(|path| {
                let template = Template::parse(path.get_ref())
                    .map_err(|m| self.err(path, "outputs.paths", m))?;
                // Templates insert only digits, a tile's suffix (digits,
                // letters, dashes) and a border (digits, dots, commas), so
                // if the whole frame's and a tile's renderings are safe
                // output paths, all are.
                // The longest suffix, and the longest fractions.
                let tiles = [
                    Grid { cols: 16, rows: 16 }.tiles().last(),
                    Grid { cols: 3, rows: 3 }.tiles().nth(4),
                ];
                for tile in std::iter::once(None).chain(tiles) {
                    if let Err(reason) = crate::check_output_path(&template.render(0, tile)) {
                        return Err(self.err(path, "outputs.paths", reason));
                    }
                }
                Ok(template)
            })
            .collect()
    }

    fn check_inputs(&self, files: &[Spanned<String>]) -> Result<Vec<InputFile>, JobError> {
        if files.len() > INPUTS_MAX {
            return Err(self.err(
                &files[INPUTS_MAX],
                "inputs.files",
                format!("at most {INPUTS_MAX} input files"),
            ));
        }
        let mut names = BTreeSet::new();
        let mut inputs = Vec::with_capacity(files.len());
        for file in files {
            let host_path = crate::path::input_path(self.folder(), file.get_ref(), self.allowed)
                .map_err(|reason| self.err(file, "inputs.files", reason))?;
            let name = host_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| self.err(file, "inputs.files", "expected a file path"))?;
            if !names.insert(name.clone()) {
                return Err(self.err(
                    file,
                    "inputs.files",
                    format!(
                        "two inputs are named '{name}'; tasks see inputs by file name under /input"
                    ),
                ));
            }
            let bytes = std::fs::read(&host_path).map_err(|e| {
                self.err(
                    file,
                    "inputs.files",
                    format!("cannot read input '{}': {e}", host_path.display()),
                )
            })?;
            inputs.push(InputFile {
                name,
                host_path,
                id: ContentId::of(&bytes),
                size_bytes: bytes.len() as u64,
            });
        }
        Ok(inputs)
    }

    fn check_limits(&self, raw: &RawLimits) -> Result<Limits, JobError> {
        let defaults = Limits::default();
        let within = |value: &Option<Spanned<u64>>,
                      key: &str,
                      range: RangeInclusive<u64>,
                      default: u64|
         -> Result<u64, JobError> {
            match value {
                None => Ok(default),
                Some(v) => crate::rules::check_range(*v.get_ref(), &range)
                    .map_err(|reason| self.err(v, key, reason)),
            }
        };
        Ok(Limits {
            fuel: within(&raw.fuel, "limits.fuel", FUEL_RANGE, defaults.fuel)?,
            memory_bytes: within(
                &raw.memory_mib,
                "limits.memory_mib",
                MEMORY_MIB_RANGE,
                defaults.memory_bytes >> 20,
            )? << 20,
            wall_time: Duration::from_secs(within(
                &raw.wall_time_s,
                "limits.wall_time_s",
                WALL_TIME_S_RANGE,
                defaults.wall_time.as_secs(),
            )?),
            output_bytes: within(
                &raw.output_mib,
                "limits.output_mib",
                OUTPUT_MIB_RANGE,
                defaults.output_bytes >> 20,
            )? << 20,
            stdout_bytes: within(
                &raw.stdout_kib,
                "limits.stdout_kib",
                STDOUT_KIB_RANGE,
                defaults.stdout_bytes >> 10,
            )? << 10,
            gpus: within(&raw.gpus, "limits.gpus", GPUS_RANGE, 0)? as u32,
            gpu_memory_mib: within(
                &raw.gpu_memory_mib,
                "limits.gpu_memory_mib",
                GPU_MEMORY_MIB_RANGE,
                0,
            )? as u32,
        })
    }

    fn check_market(&self, raw: &RawMarket, limits: &Limits) -> Result<Market, JobError> {
        let market = Market {
            budget_ucairn: raw.budget_ucairn.as_ref().map(|b| *b.get_ref()),
            price_max_ucairn_per_gfuel: raw
                .price_max_ucairn_per_gfuel
                .as_ref()
                .map(|p| *p.get_ref()),
        };
        if let (Some(budget), Some(price)) = (&raw.budget_ucairn, market.price_max_ucairn_per_gfuel)
        {
            // A budget that cannot pay for one task at full fuel and the
            // highest price would strand the job after its first bid.
            let one_task = (u128::from(limits.fuel) * u128::from(price)).div_ceil(1_000_000_000);
            if u128::from(*budget.get_ref()) < one_task {
                return Err(self.err(
                    budget,
                    "market.budget_ucairn",
                    format!(
                        "{} cannot pay for one task at the maximum price ({one_task} µCAIRN for {} fuel at {price} per 10^9); raise the budget or lower limits.fuel",
                        budget.get_ref(),
                        limits.fuel
                    ),
                ));
            }
        }
        Ok(market)
    }

    fn check_verify(&self, verify: &Spanned<RawVerify>) -> Result<VerifyPolicy, JobError> {
        let raw = verify.get_ref();
        let only = |field: bool, key: &str, policy: &str| -> Result<(), JobError> {
            if field {
                Err(self.err(
                    &raw.policy,
                    key,
                    format!("only valid with policy = \"{policy}\""),
                ))
            } else {
                Ok(())
            }
        };
        let policy = raw.policy.get_ref().as_str();
        if !["none", "replicate", "spot", "adaptive"].contains(&policy) {
            return Err(self.err(
                &raw.policy,
                "verify.policy",
                format!(
                    "unknown policy '{policy}'; expected \"none\", \"replicate\", \"spot\" or \"adaptive\""
                ),
            ));
        }
        if policy != "replicate" {
            only(raw.replicas.is_some(), "verify.replicas", "replicate")?;
        }
        if policy != "spot" {
            only(raw.probability.is_some(), "verify.probability", "spot")?;
        }
        if policy != "adaptive" {
            only(raw.confidence.is_some(), "verify.confidence", "adaptive")?;
        }
        match policy {
            "none" => Ok(VerifyPolicy::None),
            "replicate" => {
                let replicas = raw.replicas.as_ref().map_or(Ok(2), |r| {
                    crate::rules::check_replicas(*r.get_ref())
                        .map_err(|reason| self.err(r, "verify.replicas", reason))
                })?;
                Ok(VerifyPolicy::Replicate { replicas })
            }
            "spot" => {
                let probability = raw.probability.as_ref().map_or(Ok(0.05), |p| {
                    crate::rules::check_probability(*p.get_ref())
                        .map_err(|reason| self.err(p, "verify.probability", reason))
                })?;
                Ok(VerifyPolicy::Spot { probability })
            }
            "adaptive" => {
                let confidence = raw.confidence.as_ref().map_or(Ok(0.999), |c| {
                    crate::rules::check_confidence(*c.get_ref())
                        .map_err(|reason| self.err(c, "verify.confidence", reason))
                })?;
                Ok(VerifyPolicy::Adaptive { confidence })
            }
            _ => unreachable!("policy names were checked above"),
        }
    }
}

/// Why a Wasm job cannot ask for GPUs.
pub const WASM_GPU_REASON: &str =
    "a Wasm task cannot use a GPU; GPUs are lent to installed tools (runtime = \"tool\")";

/// Why a tool job's verify policy is `replicate` or `spot`.
pub const TOOL_POLICY_REASON: &str = "a tool job's results are compared with other providers' \
     (policy = \"replicate\", or \"spot\" with a probability), never taken on one provider's \
     word alone, nor on trust it built elsewhere (\"adaptive\"): no referee can re-run a tool \
     step by step, so a disagreement is decided by a vote";

/// The task values of a frame list in Flamenco's syntax: numbers and
/// inclusive ranges separated by commas (`"1-10, 15"` is 1 to 10, then 15).
/// The count is checked before anything is expanded, so `"0-99999999999"`
/// costs nothing.
pub fn parse_frames(text: &str) -> Result<Vec<u64>, String> {
    let number = |word: &str| -> Result<u64, String> {
        word.trim()
            .parse()
            .map_err(|_| format!("'{}' is not a frame number", word.trim()))
    };
    let mut spans = Vec::new();
    let mut count: u64 = 0;
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(part)?;
                (n, n)
            }
        };
        if last < first {
            return Err(format!(
                "'{}' runs backwards; expected first-last with first <= last",
                part.trim()
            ));
        }
        count = count.saturating_add((last - first).saturating_add(1));
        crate::rules::check_task_count(count)?;
        spans.push(first..=last);
    }
    Ok(spans.into_iter().flatten().collect())
}

/// The seed of the task with `value` in a job seeded with `job_seed`.
pub(crate) fn task_seed(job_seed: u64, value: u64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("cairn task seed v1");
    hasher.update(&job_seed.to_be_bytes());
    hasher.update(&value.to_be_bytes());
    *hasher.finalize().as_bytes()
}
