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
    /// Mounted read-only at `/input` for every task.
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
    let result = prepare_output(&output_dir).and_then(|()| {
        runtime.run(&Task {
            module: job.module,
            args: &spec.args,
            seed: spec.seed,
            input_dir: job.input_dir,
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

/// Gives the task an empty output folder (a leftover from an interrupted run
/// is removed, so a result never mixes two runs).
fn prepare_output(dir: &Path) -> Result<(), ExecError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(ExecError::io(format!("clearing {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir).map_err(ExecError::io(format!("creating {}", dir.display())))
}
