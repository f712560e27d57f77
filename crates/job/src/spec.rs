use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_wire::ContentId;
use toml::Spanned;

use crate::JobError;
use crate::raw::{RawJob, RawLimits, RawMarket, RawTasks, RawVerify};
use crate::template::Template;

/// Modules named `cairn:<name>` are workloads built into the `cairn` binary.
pub const BUILTIN_PREFIX: &str = "cairn:";

/// Limits on a job file and what it may ask for. Each is far above honest
/// use and far below what would hurt the machine that checks it.
const JOB_FILE_BYTES_MAX: u64 = 1 << 20;
const TASKS_MAX: u64 = 1_000_000;
const ARGS_MAX: usize = 256;
const INPUTS_MAX: usize = 1024;
const OUTPUTS_MAX: usize = 1024;
const MODULE_BYTES_MAX: u64 = 256 << 20;
/// Output paths may not start with this: Cairn writes its own files
/// (summaries, each task's stdout and stderr) beside a job's outputs.
const RESERVED_OUTPUT_PREFIX: &str = "cairn-";
/// The longest output path.
pub const OUTPUT_PATH_BYTES_MAX: usize = 1024;

const FUEL_RANGE: RangeInclusive<u64> = 1..=10_000_000_000_000;
const MEMORY_MIB_RANGE: RangeInclusive<u64> = 1..=4096;
const WALL_TIME_S_RANGE: RangeInclusive<u64> = 1..=86_400;
const OUTPUT_MIB_RANGE: RangeInclusive<u64> = 1..=4096;
const STDOUT_KIB_RANGE: RangeInclusive<u64> = 1..=16_384;
const REPLICAS_RANGE: RangeInclusive<u64> = 2..=16;

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
    tasks: Vec<TaskSpec>,
}

/// A runtime that executes tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// Deterministic WebAssembly (WASI preview 1).
    Wasm,
}

/// Where a job's module comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleRef {
    /// A workload built into the `cairn` binary (`cairn:render`).
    Builtin(String),
    /// A module file on disk.
    File(PathBuf),
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            memory_bytes: 256 << 20,
            wall_time: Duration::from_secs(600),
            output_bytes: 64 << 20,
            stdout_bytes: 64 << 10,
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
}

impl Job {
    /// Loads and validates the job file at `path`. `builtins` lists the names
    /// accepted after `cairn:` in `module`.
    pub fn load(path: &Path, builtins: &[&str]) -> Result<Self, JobError> {
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
        Self::parse(path, &source, builtins)
    }

    /// Validates `source` as if it were the file at `path` (relative paths
    /// inside it resolve against `path`'s folder).
    pub fn parse(path: &Path, source: &str, builtins: &[&str]) -> Result<Self, JobError> {
        let raw: RawJob = toml::from_str(source).map_err(|e| {
            JobError::at(
                path,
                source,
                e.span(),
                "",
                e.message().trim_end().to_string(),
            )
        })?;
        Checker { path, source }.check(raw, builtins)
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
}

impl Checker<'_> {
    fn err<T>(&self, value: &Spanned<T>, key: &str, message: impl Into<String>) -> JobError {
        JobError::at(self.path, self.source, Some(value.span()), key, message)
    }

    fn folder(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn check(&self, raw: RawJob, builtins: &[&str]) -> Result<Job, JobError> {
        let header = raw.job;
        let runtime = match header.runtime.as_ref().map(|r| r.get_ref().as_str()) {
            None | Some("wasm") => Runtime::Wasm,
            Some(other) => {
                return Err(self.err(
                    header.runtime.as_ref().unwrap(),
                    "job.runtime",
                    format!("runtime '{other}' is not supported by this build; expected \"wasm\""),
                ));
            }
        };
        let module = self.check_module(&header.module, builtins)?;
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
        let values = self.check_tasks(&raw.tasks)?;
        let outputs = self.check_outputs(&raw.outputs.paths)?;
        let inputs = self.check_inputs(&raw.inputs.files)?;
        let limits = self.check_limits(&raw.limits)?;
        let market = self.check_market(&raw.market, &limits)?;
        let verify = match &raw.verify {
            Some(verify) => self.check_verify(verify)?,
            None => VerifyPolicy::default(),
        };

        let tasks = values
            .iter()
            .enumerate()
            .map(|(index, &value)| TaskSpec {
                index: index as u32,
                value,
                args: args.iter().map(|t| t.render(value)).collect(),
                outputs: outputs.iter().map(|t| t.render(value)).collect(),
                seed: task_seed(header.seed, value),
            })
            .collect();
        let name = header.name.unwrap_or_else(|| {
            self.path
                .file_stem()
                .map_or("job".into(), |s| s.to_string_lossy().into_owned())
        });
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
            tasks,
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
        let path = self.folder().join(text);
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
        match (&raw.range, &raw.list) {
            (Some(_), Some(list)) => {
                Err(self.err(list, "tasks", "give either 'range' or 'list', not both"))
            }
            (None, None) => Err(self.err(
                tasks,
                "tasks",
                "expected 'range = [start, end]' or 'list = [values…]'",
            )),
            (Some(range), None) => {
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
                if end - start > TASKS_MAX {
                    return Err(self.err(
                        range,
                        "tasks.range",
                        format!("{} tasks; the limit is {TASKS_MAX}", end - start),
                    ));
                }
                Ok((start..end).collect())
            }
            (None, Some(list)) => {
                let values = list.get_ref();
                if values.is_empty() {
                    return Err(self.err(
                        list,
                        "tasks.list",
                        "the task set is empty; expected at least one value",
                    ));
                }
                if values.len() as u64 > TASKS_MAX {
                    return Err(self.err(
                        list,
                        "tasks.list",
                        format!("{} tasks; the limit is {TASKS_MAX}", values.len()),
                    ));
                }
                let mut seen = BTreeSet::new();
                for value in values {
                    if !seen.insert(value) {
                        return Err(self.err(
                            list,
                            "tasks.list",
                            format!("task value {value} appears twice; each task needs its own"),
                        ));
                    }
                }
                Ok(values.clone())
            }
        }
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
                // Check the shape with a sample value: templates only insert
                // digits, so if one rendering is a safe relative path all are.
                // Templates only insert digits, so if one rendering is a
                // safe output path all are.
                if let Err(reason) = check_output_path(&template.render(0)) {
                    return Err(self.err(path, "outputs.paths", reason));
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
            let host_path = self.folder().join(file.get_ref());
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
                Some(v) if range.contains(v.get_ref()) => Ok(*v.get_ref()),
                Some(v) => Err(self.err(
                    v,
                    key,
                    format!(
                        "{} is out of range; expected {}..={}",
                        v.get_ref(),
                        range.start(),
                        range.end()
                    ),
                )),
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
                    if REPLICAS_RANGE.contains(r.get_ref()) {
                        Ok(*r.get_ref())
                    } else {
                        Err(self.err(
                            r,
                            "verify.replicas",
                            format!(
                                "{} is out of range; expected {}..={}",
                                r.get_ref(),
                                REPLICAS_RANGE.start(),
                                REPLICAS_RANGE.end()
                            ),
                        ))
                    }
                })?;
                Ok(VerifyPolicy::Replicate {
                    replicas: replicas as u32,
                })
            }
            "spot" => {
                let probability = raw.probability.as_ref().map_or(Ok(0.05), |p| {
                    let value = *p.get_ref();
                    if value > 0.0 && value <= 1.0 {
                        Ok(value)
                    } else {
                        Err(self.err(
                            p,
                            "verify.probability",
                            format!("{value} is out of range; expected a probability in (0, 1]"),
                        ))
                    }
                })?;
                Ok(VerifyPolicy::Spot { probability })
            }
            "adaptive" => {
                let confidence = raw.confidence.as_ref().map_or(Ok(0.999), |c| {
                    let value = *c.get_ref();
                    if (0.5..1.0).contains(&value) {
                        Ok(value)
                    } else {
                        Err(self.err(
                            c,
                            "verify.confidence",
                            format!("{value} is out of range; expected [0.5, 1) (certainty is 'replicate')"),
                        ))
                    }
                })?;
                Ok(VerifyPolicy::Adaptive { confidence })
            }
            _ => unreachable!("policy names were checked above"),
        }
    }
}

/// Accepts a path that stays inside the folder it is relative to.
/// The rule for a path under a task's `/output` (and so under the folder
/// its outputs are saved to), wherever it comes from: a job file, or a
/// provider's report passed on by a node. `/`-separated, relative, no empty,
/// `.` or `..` part, no NUL, at most [`OUTPUT_PATH_BYTES_MAX`] bytes, and not
/// starting with `cairn-`, which names Cairn's own files beside the outputs
/// (`cairn-summary.json`, `cairn-results.json`, `cairn-logs/`).
pub fn check_output_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("expected a relative path, found an empty string".into());
    }
    if path.len() > OUTPUT_PATH_BYTES_MAX {
        return Err(format!(
            "a path of {} bytes is longer than {OUTPUT_PATH_BYTES_MAX}",
            path.len()
        ));
    }
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(format!(
            "'{path}' is absolute; expected a path relative to /output"
        ));
    }
    for part in path.split('/') {
        match part {
            ".." => return Err(format!("'{path}' leaves the output folder ('..')")),
            "" | "." => {
                return Err(format!(
                    "'{path}' has an empty or '.' part; write it as a plain relative path"
                ));
            }
            _ => {}
        }
    }
    if path.starts_with(RESERVED_OUTPUT_PREFIX) {
        return Err(format!(
            "'{path}' starts with '{RESERVED_OUTPUT_PREFIX}', which is reserved for Cairn's own \
             files beside the outputs (cairn-summary.json, cairn-results.json, cairn-logs/)"
        ));
    }
    Ok(())
}

/// The seed of the task with `value` in a job seeded with `job_seed`.
fn task_seed(job_seed: u64, value: u64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("cairn task seed v1");
    hasher.update(&job_seed.to_be_bytes());
    hasher.update(&value.to_be_bytes());
    *hasher.finalize().as_bytes()
}
