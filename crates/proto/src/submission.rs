//! A job as a node's API receives it (the JSON body of `POST /v1/jobs`),
//! and the rules it meets before anything is stored or escrowed: the job
//! file's own (`cairn_job::rules`, the output-path and job-name
//! rules), applied to a job that arrives already expanded into tasks. A
//! caller of the API could otherwise ask for what no job file may: a wall
//! time that overflows the requester's deadline arithmetic, a billion
//! tasks, outputs that climb out of the results folder.

use std::collections::BTreeSet;
use std::time::Duration;

use cairn_job::VerifyPolicy;
use cairn_job::rules::{self, ARGS_MAX, INPUTS_MAX, OUTPUTS_MAX, TASK_INPUTS_MAX};
use cairn_wire::ContentId;
use serde::{Deserialize, Serialize};

/// A file named in a submission.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmittedFile {
    /// Its name (under `/input`, for inputs).
    pub name: String,
    /// Its content id (hex in JSON); the blob must be uploaded first.
    pub id: ContentId,
    /// Its size.
    pub size: u64,
}

/// One task of a submission.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmittedTask {
    /// Arguments.
    pub args: Vec<String>,
    /// Outputs it must write.
    pub outputs: Vec<String>,
    /// Seed of its randomness (hex).
    pub seed: String,
    /// The task's own fuel, at most `limits.fuel`: the most a Wasm task
    /// may use, and the work a tool task declares and is paid for. None:
    /// the job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Files of its own under `/input`, beside the job's (a video's
    /// segment); each blob must be uploaded first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<SubmittedFile>,
}

/// Per-task limits of a submission.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmittedLimits {
    /// Fuel.
    pub fuel: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Wall-clock watchdog in ms.
    pub wall_time_ms: u64,
    /// Output bytes.
    pub output_bytes: u64,
    /// Stdout bytes.
    pub stdout_bytes: u64,
    /// GPUs a task is lent (a tool job only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpus: u32,
    /// Memory each of them must have, MiB (0: any).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpu_memory_mib: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A job as the API receives it: the job file already expanded into tasks
/// (by `cairn job submit`), its module and inputs uploaded as blobs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submission {
    /// The job's name.
    pub name: String,
    /// The runtime: `wasm`, or an installed tool (`ffmpeg@5.1`) whose
    /// request is also the module's bytes.
    pub runtime: String,
    /// The program.
    pub module: SubmittedFile,
    /// Files every task sees.
    pub inputs: Vec<SubmittedFile>,
    /// The tasks, in order.
    pub tasks: Vec<SubmittedTask>,
    /// Per-task limits.
    pub limits: SubmittedLimits,
    /// Escrowed budget.
    pub budget_ucairn: u64,
    /// Highest price accepted.
    pub price_max_ucairn_per_gfuel: u64,
    /// How results are verified (the job file's `[verify]`).
    #[serde(default)]
    pub verify: SubmittedVerify,
    /// Seconds the requester has to approve each result before it is paid
    /// (a result not judged by then is approved); none: every accepted
    /// result is paid when the job ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_window_s: Option<u64>,
    /// A live stream: its tasks come while it runs (`POST
    /// /v1/jobs/{id}/tasks`, none needed at first) until it is ended
    /// (`POST /v1/jobs/{id}/end`); none: every task is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<SubmittedStream>,
}

/// What a live stream's auctions ask providers for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmittedStream {
    /// Tasks it keeps running at once (a segment's renditions), 1 to
    /// [`STREAM_TASKS_AT_ONCE_MAX`]: its auctions lease for that many
    /// however few are waiting, so a segment finds providers ready.
    pub tasks_at_once: u32,
}

/// The most tasks a stream may keep running at once.
pub const STREAM_TASKS_AT_ONCE_MAX: u32 = 1_024;

/// The most tasks a stream takes in all: 91 minutes of Livepeer's ladder
/// in 2 s segments, well within a lease's life. Its record, rewritten
/// with each segment, stays a few megabytes; a longer broadcast is
/// several streams.
pub const STREAM_TASKS_MAX: usize = 8_192;

/// A job's verification policy as the API receives it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmittedVerify {
    /// `none`, `replicate`, `spot` or `adaptive`.
    pub policy: String,
    /// Providers per task, for `replicate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Share of tasks re-run, for `spot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Required probability that an accepted result is right, for
    /// `adaptive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

impl Default for SubmittedVerify {
    fn default() -> Self {
        Self::from(VerifyPolicy::default())
    }
}

impl From<VerifyPolicy> for SubmittedVerify {
    fn from(policy: VerifyPolicy) -> Self {
        let mut out = Self {
            policy: String::new(),
            replicas: None,
            probability: None,
            confidence: None,
        };
        out.policy = match policy {
            VerifyPolicy::None => "none",
            VerifyPolicy::Replicate { replicas } => {
                out.replicas = Some(replicas);
                "replicate"
            }
            VerifyPolicy::Spot { probability } => {
                out.probability = Some(probability);
                "spot"
            }
            VerifyPolicy::Adaptive { confidence } => {
                out.confidence = Some(confidence);
                "adaptive"
            }
        }
        .into();
        out
    }
}

impl SubmittedVerify {
    /// The policy, or why it is not one.
    pub fn policy(&self) -> Result<VerifyPolicy, String> {
        let policy = match self.policy.as_str() {
            "none" => VerifyPolicy::None,
            "replicate" => VerifyPolicy::Replicate {
                replicas: self.replicas.ok_or("verify.replicas is missing")?,
            },
            "spot" => VerifyPolicy::Spot {
                probability: self.probability.ok_or("verify.probability is missing")?,
            },
            "adaptive" => VerifyPolicy::Adaptive {
                confidence: self.confidence.unwrap_or(0.999),
            },
            other => {
                return Err(format!(
                    "unknown verify policy '{other}'; expected none, replicate, spot or adaptive"
                ));
            }
        };
        // The job file's bounds, so a policy one accepts the other does too.
        policy.check()?;
        Ok(policy)
    }
}

impl Submission {
    /// Checks the job against the rules a job file is held to; the message
    /// names the field at fault and what was expected. The node's
    /// `Market::submit` calls it before anything else, so every way in is
    /// checked.
    pub fn check(&self) -> Result<(), String> {
        cairn_job::check_job_name(&self.name).map_err(|m| format!("name: {m}"))?;
        if self.runtime != "wasm" {
            // An installed tool: the module is the request itself, so a
            // provider loads the tool the order named.
            cairn_wire::ToolRequest::parse(&self.runtime).map_err(|m| {
                format!("runtime: expected \"wasm\" or an installed tool (ffmpeg@5.1): {m}")
            })?;
            if self.module.id != ContentId::of(self.runtime.as_bytes())
                || self.module.size != self.runtime.len() as u64
            {
                return Err(format!(
                    "module: a tool job's module is the blob of its request '{}'",
                    self.runtime
                ));
            }
            if !matches!(
                self.verify.policy()?,
                VerifyPolicy::Replicate { .. } | VerifyPolicy::Spot { .. }
            ) {
                return Err(format!("verify.policy: {}", cairn_job::TOOL_POLICY_REASON));
            }
        } else if self.limits.gpus > 0 {
            return Err(format!("limits.gpus: {}", cairn_job::WASM_GPU_REASON));
        }
        if let Some(window) = self.approval_window_s {
            rules::check_range(window, &rules::APPROVAL_WINDOW_S_RANGE)
                .map_err(|m| format!("approval_window_s: {m}"))?;
        }
        match &self.stream {
            // A stream may start with no task; it grows by `check_more`.
            Some(stream) => {
                if !(1..=STREAM_TASKS_AT_ONCE_MAX).contains(&stream.tasks_at_once) {
                    return Err(format!(
                        "stream.tasks_at_once: {}; expected 1 to {STREAM_TASKS_AT_ONCE_MAX}",
                        stream.tasks_at_once
                    ));
                }
                if self.approval_window_s.is_some() {
                    return Err(
                        "approval_window_s: a stream's segments are paid once delivered and \
                         accepted; approval is for jobs whose tasks are all known"
                            .into(),
                    );
                }
                if self.tasks.len() > STREAM_TASKS_MAX {
                    return Err(format!(
                        "tasks: a stream takes at most {STREAM_TASKS_MAX} tasks in all"
                    ));
                }
            }
            None => rules::check_task_count(self.tasks.len() as u64)
                .map_err(|m| format!("tasks: {m}"))?,
        }
        if self.inputs.len() > INPUTS_MAX {
            return Err(format!(
                "inputs: {} files; at most {INPUTS_MAX}",
                self.inputs.len()
            ));
        }
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for input in &self.inputs {
            cairn_job::check_input_name(&input.name).map_err(|m| format!("inputs: {m}"))?;
            if !names.insert(input.name.as_str()) {
                return Err(format!(
                    "inputs: two inputs are named '{}'; tasks see inputs by name under /input",
                    input.name
                ));
            }
        }
        for (index, task) in self.tasks.iter().enumerate() {
            self.check_task(index, task, &names)?;
        }
        cairn_job::Limits {
            fuel: self.limits.fuel,
            memory_bytes: self.limits.memory_bytes,
            // Any u64 of milliseconds is a valid Duration: the range check
            // sees the value as sent, never a wrapped one.
            wall_time: Duration::from_millis(self.limits.wall_time_ms),
            output_bytes: self.limits.output_bytes,
            stdout_bytes: self.limits.stdout_bytes,
            gpus: self.limits.gpus,
            gpu_memory_mib: self.limits.gpu_memory_mib,
        }
        .check()?;
        self.verify.policy()?;
        Ok(())
    }

    /// Checks `more` tasks for a stream that passed [`Submission::check`],
    /// to follow its own: each as `check` holds a task, and the whole
    /// within the job file's task count.
    pub fn check_more(&self, more: &[SubmittedTask]) -> Result<(), String> {
        if self.stream.is_none() {
            return Err("the job is not a stream: its tasks were all given".into());
        }
        if more.is_empty() {
            return Err("tasks: no task given".into());
        }
        let total = self.tasks.len().saturating_add(more.len());
        if total > STREAM_TASKS_MAX {
            return Err(format!(
                "tasks: a stream takes at most {STREAM_TASKS_MAX} tasks in all; it has {}: \
                 start another",
                self.tasks.len()
            ));
        }
        let names = self.inputs.iter().map(|f| f.name.as_str()).collect();
        for (offset, task) in more.iter().enumerate() {
            self.check_task(self.tasks.len() + offset, task, &names)?;
        }
        Ok(())
    }

    /// Checks task `index` against the job's limits and inputs.
    fn check_task(
        &self,
        index: usize,
        task: &SubmittedTask,
        shared: &BTreeSet<&str>,
    ) -> Result<(), String> {
        if task.args.len() > ARGS_MAX {
            return Err(format!(
                "tasks[{index}].args: {} arguments; at most {ARGS_MAX}",
                task.args.len()
            ));
        }
        if task.outputs.len() > OUTPUTS_MAX {
            return Err(format!(
                "tasks[{index}].outputs: {} outputs; at most {OUTPUTS_MAX}",
                task.outputs.len()
            ));
        }
        let mut outputs = BTreeSet::new();
        for output in &task.outputs {
            cairn_job::check_output_path(output)
                .map_err(|m| format!("tasks[{index}].outputs: {m}"))?;
            if !outputs.insert(output.as_str()) {
                return Err(format!("tasks[{index}].outputs: '{output}' is named twice"));
            }
        }
        cairn_wire::parse_hex32(&task.seed, "task seed")
            .map_err(|m| format!("tasks[{index}].seed: {m}"))?;
        if task.inputs.len() > TASK_INPUTS_MAX {
            return Err(format!(
                "tasks[{index}].inputs: {} files; at most {TASK_INPUTS_MAX}",
                task.inputs.len()
            ));
        }
        let mut own = BTreeSet::new();
        for input in &task.inputs {
            cairn_job::check_input_name(&input.name)
                .map_err(|m| format!("tasks[{index}].inputs: {m}"))?;
            if shared.contains(input.name.as_str()) || !own.insert(input.name.as_str()) {
                return Err(format!(
                    "tasks[{index}].inputs: '{}' is named twice among the inputs the task sees",
                    input.name
                ));
            }
        }
        if let Some(fuel) = task.fuel
            && !(1..=self.limits.fuel).contains(&fuel)
        {
            return Err(format!(
                "tasks[{index}].fuel: {fuel}; a task's fuel is from 1 to the job's limits.fuel ({})",
                self.limits.fuel
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Submission {
        Submission {
            name: "search".into(),
            runtime: "wasm".into(),
            module: SubmittedFile {
                name: "module.wasm".into(),
                id: ContentId::from_digest([0; 32]),
                size: 1,
            },
            inputs: vec![SubmittedFile {
                name: "scene.json".into(),
                id: ContentId::from_digest([0x11; 32]),
                size: 1,
            }],
            tasks: vec![SubmittedTask {
                args: vec!["--frame".into(), "0".into()],
                outputs: vec!["frame-0000.png".into()],
                seed: "22".repeat(32),
                fuel: None,
                inputs: Vec::new(),
            }],
            limits: SubmittedLimits {
                fuel: 1_000_000,
                memory_bytes: 16 << 20,
                wall_time_ms: 2_000,
                output_bytes: 1 << 20,
                stdout_bytes: 1 << 10,
                gpus: 0,
                gpu_memory_mib: 0,
            },
            budget_ucairn: 1_000_000,
            price_max_ucairn_per_gfuel: 100,
            verify: cairn_job::VerifyPolicy::None.into(),
            approval_window_s: None,
            stream: None,
        }
    }

    /// An `overflowing_submitter` sends what no job file may say; each is
    /// refused with the field named.
    #[test]
    fn overflowing_submitter_is_refused_field_by_field() {
        good().check().unwrap();
        let refused = |change: &dyn Fn(&mut Submission), field: &str| {
            let mut submission = good();
            change(&mut submission);
            let err = submission.check().unwrap_err();
            assert!(err.starts_with(field), "expected '{field}…', got: {err}");
        };
        refused(&|s| s.limits.wall_time_ms = u64::MAX, "limits.wall_time_s");
        refused(&|s| s.limits.wall_time_ms = 0, "limits.wall_time_s");
        refused(&|s| s.limits.memory_bytes = u64::MAX, "limits.memory_mib");
        refused(&|s| s.limits.fuel = 0, "limits.fuel");
        refused(&|s| s.limits.output_bytes = u64::MAX, "limits.output_mib");
        refused(&|s| s.limits.stdout_bytes = 0, "limits.stdout_kib");
        refused(&|s| s.tasks.clear(), "tasks");
        refused(
            &|s| s.tasks[0].outputs = vec!["../../x".into()],
            "tasks[0].outputs",
        );
        refused(
            &|s| s.tasks[0].outputs = vec!["/etc/passwd".into()],
            "tasks[0].outputs",
        );
        refused(
            &|s| s.tasks[0].outputs = vec!["cairn-results.json".into()],
            "tasks[0].outputs",
        );
        refused(
            &|s| s.tasks[0].args = vec![String::new(); ARGS_MAX + 1],
            "tasks[0].args",
        );
        refused(
            &|s| s.tasks[0].outputs = vec!["a.png".into(), "a.png".into()],
            "tasks[0].outputs",
        );
        refused(&|s| s.tasks[0].seed = "zz".into(), "tasks[0].seed");
        refused(&|s| s.name = "../escape".into(), "name");
        refused(&|s| s.runtime = "container@x".into(), "runtime");
        // A tool job's module is its request, byte for byte in size.
        refused(&|s| s.runtime = "ffmpeg@5.1".into(), "module");
        let mut tool = good();
        tool.runtime = "ffmpeg@5.1".into();
        tool.module.id = ContentId::of(b"ffmpeg@5.1");
        tool.module.size = 10;
        // Compared with other providers', never taken on one's word.
        assert!(tool.check().unwrap_err().starts_with("verify.policy"));
        tool.verify = cairn_job::VerifyPolicy::Spot { probability: 0.25 }.into();
        assert_eq!(tool.check(), Ok(()));
        tool.verify = cairn_job::VerifyPolicy::Replicate { replicas: 2 }.into();
        assert_eq!(tool.check(), Ok(()));
        // A tool task may be lent GPUs, within bounds; a Wasm task none.
        tool.limits.gpus = 2;
        tool.limits.gpu_memory_mib = 8192;
        assert_eq!(tool.check(), Ok(()));
        tool.limits.gpus = 17;
        assert!(tool.check().unwrap_err().starts_with("limits.gpus"));
        tool.limits.gpus = 0;
        assert!(
            tool.check()
                .unwrap_err()
                .starts_with("limits.gpu_memory_mib")
        );
        tool.limits.gpu_memory_mib = 0;
        refused(&|s| s.limits.gpus = 1, "limits.gpus");
        tool.module.id = ContentId::of(b"blender@3");
        assert!(tool.check().unwrap_err().starts_with("module"));
        refused(&|s| s.inputs[0].name = "../x".into(), "inputs");
        refused(&|s| s.tasks[0].fuel = Some(0), "tasks[0].fuel");
        refused(&|s| s.tasks[0].fuel = Some(1_000_001), "tasks[0].fuel");
        refused(&|s| s.inputs.push(s.inputs[0].clone()), "inputs");
        // A task's own inputs: plain names, none the job's or twice, at
        // most TASK_INPUTS_MAX (a name the provider's decoder would refuse
        // is refused here, where the user sees why: one rule for both).
        let segment = |name: &str| SubmittedFile {
            name: name.into(),
            id: ContentId::of(name.as_bytes()),
            size: 1,
        };
        let mut own = good();
        own.tasks[0].inputs = vec![segment("seg-0001.ts")];
        assert_eq!(own.check(), Ok(()));
        refused(
            &|s| s.tasks[0].inputs = vec![segment("../x")],
            "tasks[0].inputs",
        );
        refused(
            &|s| s.tasks[0].inputs = vec![segment("scene.json")],
            "tasks[0].inputs",
        );
        refused(
            &|s| s.tasks[0].inputs = vec![segment("a.ts"), segment("a.ts")],
            "tasks[0].inputs",
        );
        refused(
            &|s| s.tasks[0].inputs = (0..17).map(|i| segment(&format!("s{i}"))).collect(),
            "tasks[0].inputs",
        );
        refused(
            &|s| s.inputs[0].name = "n".repeat(cairn_job::OUTPUT_PATH_BYTES_MAX),
            "inputs",
        );
        refused(
            &|s| s.verify = cairn_job::VerifyPolicy::Replicate { replicas: 1000 }.into(),
            "verify.replicas",
        );
        refused(
            &|s| s.verify = cairn_job::VerifyPolicy::Adaptive { confidence: 0.1 }.into(),
            "verify.confidence",
        );
    }

    /// A stream may start with no task, keeps a bounded number running,
    /// asks for no approval, and grows by tasks held to its first's rules,
    /// up to `STREAM_TASKS_MAX` in all; a job that is no stream does not
    /// grow.
    #[test]
    fn a_stream_starts_empty_and_grows_within_its_bounds() {
        let mut stream = good();
        stream.tasks.clear();
        stream.stream = Some(SubmittedStream { tasks_at_once: 3 });
        assert_eq!(stream.check(), Ok(()));
        let more = good().tasks;
        assert_eq!(stream.check_more(&more), Ok(()));
        assert!(stream.check_more(&[]).unwrap_err().starts_with("tasks"));
        let mut greedy = more.clone();
        greedy[0].fuel = Some(stream.limits.fuel + 1);
        assert!(
            stream
                .check_more(&greedy)
                .unwrap_err()
                .starts_with("tasks[0].fuel")
        );
        stream.tasks = vec![more[0].clone(); STREAM_TASKS_MAX];
        assert!(
            stream
                .check_more(&more)
                .unwrap_err()
                .contains("at most 8192 tasks")
        );
        for (change, field) in [
            (SubmittedStream { tasks_at_once: 0 }, "stream.tasks_at_once"),
            (
                SubmittedStream {
                    tasks_at_once: STREAM_TASKS_AT_ONCE_MAX + 1,
                },
                "stream.tasks_at_once",
            ),
        ] {
            let mut bad = good();
            bad.stream = Some(change);
            assert!(bad.check().unwrap_err().starts_with(field));
        }
        let mut approved = good();
        approved.stream = Some(SubmittedStream { tasks_at_once: 1 });
        approved.approval_window_s = Some(60);
        assert!(
            approved
                .check()
                .unwrap_err()
                .starts_with("approval_window_s")
        );
        assert!(
            good()
                .check_more(&more)
                .unwrap_err()
                .contains("not a stream")
        );
    }

    /// More tasks than a job file may list are refused before any is
    /// looked at (tasks without arguments keep the vector small).
    #[test]
    fn more_tasks_than_a_job_file_may_list_are_refused() {
        let mut submission = good();
        let task = SubmittedTask {
            args: Vec::new(),
            outputs: Vec::new(),
            seed: String::new(),
            fuel: None,
            inputs: Vec::new(),
        };
        submission.tasks = vec![task; rules::TASKS_MAX as usize + 1];
        let err = submission.check().unwrap_err();
        assert!(err.contains("the limit is 1000000"), "{err}");
    }

    /// The job rules' top replica count is one the node's verifier can
    /// reach; a job asking for more could never finish.
    #[test]
    fn the_replica_bound_is_one_the_verifier_reaches() {
        assert!(
            *rules::REPLICAS_RANGE.end() <= u64::from(cairn_verify::Params::default().replicas_max)
        );
    }
}
