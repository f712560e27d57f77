//! Runs every task of a job on this machine with a bounded pool of workers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_job::TaskSpec;
use cairn_wire::ContentId;

use crate::{ExecError, Limits, Runtime, Task, TaskResult};

/// A job ready to run locally.
pub struct LocalJob<'a> {
    /// The loaded module.
    pub module: ContentId,
    /// The tasks.
    pub tasks: &'a [TaskSpec],
    /// Mounted read-only at `/input` for every task (beside a task's own
    /// inputs, for a task that has some).
    pub input_dir: Option<&'a Path>,
    /// Each task writes to `<work_dir>/<task index>/`.
    pub work_dir: &'a Path,
    /// Per-task limits.
    pub limits: Limits,
}

/// One finished task.
pub struct Finished<'a> {
    /// The task.
    pub task: &'a TaskSpec,
    /// Where its outputs are.
    pub output_dir: PathBuf,
    /// What happened.
    pub result: Result<TaskResult, ExecError>,
}

/// Runs `job` on `workers` threads, calling `on_finished` as each task ends
/// (from the calling thread, in completion order). Returns the results in
/// task order. A failing task never stops the others. If `cancel` becomes
/// true no new task starts.
pub fn run<'a>(
    runtime: &dyn Runtime,
    job: &LocalJob<'a>,
    workers: usize,
    cancel: &AtomicBool,
    mut on_finished: impl FnMut(&Finished<'a>),
) -> Vec<Finished<'a>> {
    assert!(workers > 0, "at least one worker");
    let workers = workers.min(job.tasks.len().max(1));
    // Bounded queues: the pool never holds more than a few tasks beyond the
    // ones running, whatever the size of the job.
    let (todo_tx, todo_rx) = crossbeam_channel::bounded::<&'a TaskSpec>(workers * 2);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<Finished<'a>>(workers * 2);
    let mut finished: Vec<Option<Finished<'a>>> = (0..job.tasks.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let todo_rx = todo_rx.clone();
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                for spec in todo_rx {
                    let done = run_one(runtime, job, spec);
                    if done_tx.send(done).is_err() {
                        break;
                    }
                }
            });
        }
        drop(todo_rx);
        drop(done_tx);
        scope.spawn(move || {
            for spec in job.tasks {
                if cancel.load(Ordering::Relaxed) || todo_tx.send(spec).is_err() {
                    break;
                }
            }
        });
        for done in done_rx {
            on_finished(&done);
            let index = done.task.index as usize;
            finished[index] = Some(done);
        }
    });
    finished.into_iter().flatten().collect()
}

fn run_one<'a>(runtime: &dyn Runtime, job: &LocalJob<'a>, spec: &'a TaskSpec) -> Finished<'a> {
    let output_dir = job.work_dir.join(spec.index.to_string());
    let inputs = task_inputs(job, spec);
    let result = prepare_output(&output_dir).and(inputs).and_then(|inputs| {
        runtime.run(&Task {
            module: job.module,
            args: &spec.args,
            seed: spec.seed,
            input_dir: inputs.as_deref().or(job.input_dir),
            output_dir: &output_dir,
            expected_outputs: &spec.outputs,
            limits: spec.limits(&job.limits),
        })
    });
    Finished {
        task: spec,
        output_dir,
        result,
    }
}

/// A folder of its own for a task with inputs of its own: the job's
/// inputs linked in, its own copied and checked against the ids the job
/// file read. `None` for a task without (it sees the job's folder).
fn task_inputs(job: &LocalJob<'_>, spec: &TaskSpec) -> Result<Option<PathBuf>, ExecError> {
    if spec.inputs.is_empty() {
        return Ok(None);
    }
    let dir = job.work_dir.join(format!("{}-input", spec.index));
    prepare_output(&dir)?;
    if let Some(shared) = job.input_dir {
        let entries = std::fs::read_dir(shared)
            .map_err(ExecError::io(format!("reading {}", shared.display())))?;
        for entry in entries {
            let entry = entry.map_err(ExecError::io(format!("reading {}", shared.display())))?;
            let target = dir.join(entry.file_name());
            if std::fs::hard_link(entry.path(), &target).is_err() {
                std::fs::copy(entry.path(), &target)
                    .map_err(ExecError::io(format!("copying {}", entry.path().display())))?;
            }
        }
    }
    for input in &spec.inputs {
        let path = &input.host_path;
        let bytes =
            std::fs::read(path).map_err(ExecError::io(format!("reading {}", path.display())))?;
        if ContentId::of(&bytes) != input.id {
            return Err(ExecError::Host(format!(
                "input {} changed since the job file was read",
                path.display()
            )));
        }
        let target = cairn_job::input_name_path(&dir, &input.name).map_err(ExecError::Host)?;
        if target.exists() {
            return Err(ExecError::Host(format!(
                "input '{}' is named twice",
                input.name
            )));
        }
        std::fs::write(&target, &bytes)
            .map_err(ExecError::io(format!("writing {}", target.display())))?;
    }
    Ok(Some(dir))
}

/// Gives the task an empty output folder (a leftover from an interrupted run
/// is removed, so a result never mixes two runs).
fn prepare_output(dir: &Path) -> Result<(), ExecError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(ExecError::io(format!("clearing {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(ExecError::io(format!("creating {}", dir.display())))
}
