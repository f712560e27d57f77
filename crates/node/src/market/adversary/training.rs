//! The training adversaries of [`Misbehave`](super::Misbehave): providers that rent out
//! training and cheat the way such a provider would, by changing a stepped
//! task between its steps (`cairn_exec::Tamper`), and that defend what they
//! report with a trace of the same tampered run.
//!
//! They know the program they cheat (`cairn:train` is built in and its
//! source is public): its arguments say how many steps it takes and how
//! often it checkpoints, and the checkpoint it writes after start-up holds
//! the initial weights, whose bytes find the weights in the guest's memory
//! (of the copies there, the one the first step changed a little). On a
//! task without the training program's arguments they are honest.

use std::path::{Path, PathBuf};

use cairn_exec::{ExecError, Tamper, Task};
use cairn_wire::ContentId;

use super::Misbehave;

/// The step after which a cheat that departs early does so.
const FIRST_CHEAT_STEP: u64 = 2;

/// Where a tensor of weights lies in the guest's memory.
#[derive(Clone, Copy, Debug)]
struct Region {
    at: usize,
    len: usize,
}

/// One tampered run of a training task.
pub(crate) struct TrainingCheat {
    how: Misbehave,
    /// `--steps` and `--every` of the task, if it is a training task.
    steps: u64,
    every: u64,
    /// The data file's name under `/input`.
    data: Option<String>,
    /// The folder the run writes to, under `/output` (checked by the one
    /// path rule; `None` when it is `/output` itself).
    out: Option<String>,
    /// Where the initial weights were found after start-up, each tensor's
    /// copies; the first step tells the live one from stale ones.
    candidates: Vec<Vec<Region>>,
    weights: Vec<Region>,
    /// The weights as they were after the previous step (the skipper).
    saved: Vec<Vec<u8>>,
}

impl TrainingCheat {
    /// The cheat `how` on a task with `args`, if `how` is a training cheat.
    pub(crate) fn new(how: Option<Misbehave>, args: &[String]) -> Option<Self> {
        let how = how.filter(|how| {
            matches!(
                how,
                Misbehave::StepSkipper
                    | Misbehave::DataSwapper
                    | Misbehave::EarlyStopper
                    | Misbehave::WeightNudger
            )
        })?;
        // `--flag value` or `--flag=value`, as the program reads them.
        let flag = |name: &str| {
            args.iter().enumerate().find_map(|(i, a)| {
                if a == name {
                    args.get(i + 1).map(String::as_str)
                } else {
                    a.strip_prefix(name)?.strip_prefix('=')
                }
            })
        };
        let steps = flag("--steps")?.parse().ok()?;
        Some(Self {
            how,
            steps,
            every: flag("--every")
                .and_then(|k| k.parse().ok())
                .unwrap_or(steps),
            data: flag("--data")
                .and_then(|d| d.strip_prefix("/input/"))
                .filter(|name| cairn_job::check_input_name(name).is_ok())
                .map(str::to_string),
            out: match flag("--out").map(|o| o.trim_end_matches('/')) {
                Some("/output") | None => None,
                Some(out) => Some(
                    out.strip_prefix("/output/")
                        .filter(|o| cairn_job::check_output_path(o).is_ok())?
                        .to_string(),
                ),
            },
            candidates: Vec::new(),
            weights: Vec::new(),
            saved: Vec::new(),
        })
    }

    /// Whether the run needs its own copy of the inputs (to swap the data
    /// in without touching the shared ones).
    fn swaps_inputs(&self) -> bool {
        self.how == Misbehave::DataSwapper
    }

    /// Runs `f` (a run or a trace) on `task` tampered by this cheat, on a
    /// private copy of the inputs made under `scratch` if it changes them.
    pub(crate) fn play<T>(
        mut self,
        task: &Task<'_>,
        scratch: &Path,
        f: impl FnOnce(&Task<'_>, &mut dyn Tamper) -> Result<T, ExecError>,
    ) -> Result<T, ExecError> {
        let copy = match task.input_dir {
            Some(dir) if self.swaps_inputs() => Some(
                InputCopy::new(dir, scratch)
                    .map_err(|e| ExecError::Host(format!("copying the inputs: {e}")))?,
            ),
            _ => None,
        };
        let task = Task {
            input_dir: copy.as_ref().map(|c| c.path()).or(task.input_dir),
            ..*task
        };
        f(&task, &mut self)
    }

    /// The folder the run writes its files to.
    fn run_dir(&self, output_dir: &Path) -> PathBuf {
        match &self.out {
            Some(out) => output_dir.join(out),
            None => output_dir.to_path_buf(),
        }
    }

    /// Finds every copy of the initial weights in `memory` (after
    /// start-up), from the checkpoint the guest wrote then.
    fn find_copies(&mut self, memory: &[u8], output_dir: &Path) {
        let Ok(file) = std::fs::read(self.run_dir(output_dir).join("weights.safetensors")) else {
            return;
        };
        for bytes in weight_tensors(&file) {
            // Only tensors whose first bytes say where they are (biases
            // start at zero, which is everywhere).
            let Some(needle) = bytes.get(..64).filter(|n| n.iter().any(|b| *b != 0)) else {
                continue;
            };
            let copies = (0..memory.len().saturating_sub(bytes.len()))
                .step_by(4)
                .filter(|&at| {
                    &memory[at..at + 64] == needle && &memory[at..at + bytes.len()] == bytes
                })
                .map(|at| Region {
                    at,
                    len: bytes.len(),
                })
                .collect::<Vec<_>>();
            if !copies.is_empty() {
                self.candidates.push(copies);
            }
        }
        self.saved = self
            .candidates
            .iter()
            .flat_map(|copies| copies.first())
            .map(|r| memory[r.at..r.at + r.len].to_vec())
            .collect();
    }

    /// After the first step: of each tensor's copies, the live weights are
    /// the one the step moved, and by little (AdamW moves a weight by
    /// about the learning rate); a stale copy is unchanged, or reused for
    /// something else entirely.
    fn pick_live(&mut self, memory: &[u8]) {
        for (copies, before) in self.candidates.iter().zip(&self.saved) {
            let live = copies.iter().find(|r| {
                let now = &memory[r.at..r.at + r.len];
                now != before.as_slice()
                    && now
                        .chunks_exact(4)
                        .zip(before.chunks_exact(4))
                        .all(|(a, b)| {
                            let a = f32::from_le_bytes([a[0], a[1], a[2], a[3]]);
                            let b = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                            (a - b).abs() < 0.1
                        })
            });
            self.weights.extend(live.copied());
        }
        if self.weights.is_empty() {
            tracing::warn!("{:?}: found no weights to tamper with", self.how);
        }
        self.saved = self
            .weights
            .iter()
            .map(|r| memory[r.at..r.at + r.len].to_vec())
            .collect();
    }

    /// Appends a made-up loss curve and made-up commitments from step
    /// `from` to the run's end, as if it had trained that far.
    fn forge_the_rest(&self, from: u64, output_dir: &Path) {
        let output_dir = self.run_dir(output_dir);
        let loss_path = output_dir.join("loss.csv");
        let curve = std::fs::read_to_string(&loss_path).unwrap_or_default();
        let mut loss = curve
            .lines()
            .last()
            .and_then(|l| l.split(',').nth(1))
            .and_then(|l| l.parse::<f32>().ok())
            .unwrap_or(2.0);
        let mut lines = String::new();
        let mut commitments = String::new();
        for step in from + 1..=self.steps {
            loss *= 0.999;
            lines.push_str(&format!("{step},{loss}\n"));
            if step % self.every.max(1) == 0 || step == self.steps {
                let root = ContentId::of(format!("made up at {step}").as_bytes());
                commitments.push_str(&format!(
                    "{{\"loss\":{loss},\"root\":\"{root}\",\"steps\":{step}}}\n"
                ));
            }
        }
        append(&loss_path, &lines);
        append(&output_dir.join("commitments.jsonl"), &commitments);
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(path) {
        let _ = file.write_all(text.as_bytes());
    }
}

impl Tamper for TrainingCheat {
    fn between_steps(&mut self, step: u64, memory: &mut [u8], task: &Task<'_>) -> bool {
        match step {
            0 => self.find_copies(memory, task.output_dir),
            1 => self.pick_live(memory),
            _ => {}
        }
        match self.how {
            // Drops the update of every fourth step from the third on,
            // keeping the step count, the data position and the loss curve.
            Misbehave::StepSkipper if step >= 1 => {
                for (region, saved) in self.weights.iter().zip(&mut self.saved) {
                    let now = &mut memory[region.at..region.at + region.len];
                    if step >= FIRST_CHEAT_STEP && step % 4 == 3 {
                        now.copy_from_slice(saved);
                    } else {
                        saved.copy_from_slice(now);
                    }
                }
            }
            // From the third step on, trains on other text of the same
            // length (every byte of the data shifted by one) while its
            // commitments still name the data it was given.
            Misbehave::DataSwapper if step == FIRST_CHEAT_STEP => {
                let swapped = match (&self.data, task.input_dir) {
                    (Some(name), Some(dir)) => {
                        let path = dir.join(name);
                        std::fs::read(&path).and_then(|text| {
                            std::fs::write(
                                &path,
                                text.iter().map(|b| b.wrapping_add(1)).collect::<Vec<_>>(),
                            )
                        })
                    }
                    _ => Err(std::io::ErrorKind::NotFound.into()),
                };
                if let Err(e) = swapped {
                    tracing::warn!("data swapper: no data to swap ({e})");
                }
            }
            // Trains to the last checkpoint before half-way, then stops,
            // and delivers those weights with a loss curve and commitments
            // made up for the rest.
            Misbehave::EarlyStopper => {
                let half = self.steps / 2;
                // With no checkpoint before half-way, half-way itself.
                let last_checkpoint = match half - half % self.every.max(1) {
                    0 => half,
                    at => at,
                };
                if step > 0 && step == last_checkpoint {
                    self.forge_the_rest(step, task.output_dir);
                    return false;
                }
            }
            // Before the last step, nudges every 64th weight by one unit in
            // the last place: a change no tolerance would notice.
            Misbehave::WeightNudger if step + 1 == self.steps => {
                for region in &self.weights {
                    for word in memory[region.at..region.at + region.len]
                        .chunks_exact_mut(4)
                        .step_by(64)
                    {
                        let bits = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                        word.copy_from_slice(&(bits ^ 1).to_le_bytes());
                    }
                }
            }
            _ => {}
        }
        true
    }
}

/// The bytes of each `param.*` tensor of a safetensors file, if it is one.
fn weight_tensors(file: &[u8]) -> Vec<&[u8]> {
    let Some((len, rest)) = file.split_first_chunk::<8>() else {
        return Vec::new();
    };
    let Some((header, data)) = usize::try_from(u64::from_le_bytes(*len))
        .ok()
        .filter(|&n| n <= rest.len())
        .map(|n| rest.split_at(n))
    else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Object(header)) = serde_json::from_slice(header) else {
        return Vec::new();
    };
    header
        .iter()
        .filter(|(name, _)| name.starts_with("param."))
        .filter_map(|(_, info)| {
            let offsets = info["data_offsets"].as_array()?;
            let start = usize::try_from(offsets.first()?.as_u64()?).ok()?;
            let end = usize::try_from(offsets.get(1)?.as_u64()?).ok()?;
            data.get(start..end)
        })
        .collect()
}

/// A private copy of the files of `inputs`, for a run that changes them;
/// removed when dropped.
pub(crate) struct InputCopy(PathBuf);

impl InputCopy {
    pub(super) fn new(inputs: &Path, under: &Path) -> std::io::Result<Self> {
        static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = under.join(format!("cheat-inputs-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(inputs)? {
            let entry = entry?;
            std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
        }
        Ok(Self(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for InputCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_exec::{Limits, Runtime as _, WasmConfig, WasmRuntime};

    const STEPS: u64 = 24;

    fn args() -> Vec<String> {
        [
            "--data",
            "/input/seed.txt",
            "--out",
            "/output/run-00",
            "--steps",
            "24",
            "--every",
            "6",
            "--seed",
            "3",
            "--batch",
            "8",
            "--context",
            "8",
            "--embed",
            "8",
            "--hidden",
            "64",
        ]
        .map(str::to_string)
        .to_vec()
    }

    /// Runs (or traces) the training task in fresh folders, tampered by `how`.
    fn execute<T>(
        rt: &WasmRuntime,
        how: Option<Misbehave>,
        f: impl FnOnce(&WasmRuntime, &Task<'_>, Option<&mut dyn Tamper>) -> T,
    ) -> T {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("in"), dir.path().join("out"));
        std::fs::create_dir_all(&input).unwrap();
        std::fs::create_dir_all(&output).unwrap();
        let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/train/seed.txt");
        std::fs::copy(seed, input.join("seed.txt")).unwrap();
        let args = args();
        let task = Task {
            module: ContentId::of(cairn_workloads::TRAIN.wasm),
            args: &args,
            seed: [0; 32],
            input_dir: Some(&input),
            output_dir: &output,
            expected_outputs: &[],
            limits: Limits {
                fuel: 2_000_000_000,
                memory_bytes: 64 << 20,
                wall_time: std::time::Duration::from_secs(60),
                output_bytes: 16 << 20,
                stdout_bytes: 16 << 10,
                gpus: 0,
                gpu_memory_mib: 0,
            },
        };
        let mut cheat = TrainingCheat::new(how, &args);
        f(rt, &task, cheat.as_mut().map(|c| c as &mut dyn Tamper))
    }

    /// Each cheat changes the result, reports what its own trace ends in
    /// (so it can defend it), and departs from the honest trace at the
    /// step it cheats at: position `p` is the state after step `p - 1`.
    #[test]
    fn each_training_cheat_departs_at_its_step_and_its_trace_ends_in_its_result() {
        let rt = WasmRuntime::new(WasmConfig::default()).unwrap();
        rt.load(cairn_workloads::TRAIN.wasm).unwrap();
        let honest = execute(&rt, None, |rt, task, _| rt.trace(task).unwrap());
        let honest_file = execute(&rt, None, |rt, task, _| {
            rt.run(task).unwrap();
            std::fs::read(task.output_dir.join("run-00/weights.safetensors")).unwrap()
        });
        let honest_weights = weight_tensors(&honest_file);
        assert_eq!(honest_weights.len(), 5, "every parameter");
        assert_eq!(
            honest.positions(),
            STEPS + 3,
            "task, start-up, 24 steps, digest"
        );
        for (how, departs) in [
            (Misbehave::StepSkipper, 4),
            (Misbehave::DataSwapper, 4),
            (Misbehave::EarlyStopper, 13),
            (Misbehave::WeightNudger, STEPS),
        ] {
            let (result, weights) = execute(&rt, Some(how), |rt, task, tamper| {
                let result = rt.run_tampered(task, tamper).unwrap();
                let weights = std::fs::read(task.output_dir.join("run-00/weights.safetensors"));
                (result, weights.unwrap())
            });
            // What it delivers is wrong where it matters: the weights.
            let delivered = weight_tensors(&weights);
            assert_eq!(delivered.len(), honest_weights.len(), "{how:?}");
            assert_ne!(
                delivered, honest_weights,
                "{how:?} delivered honest weights"
            );
            assert!(result.outcome.is_success(), "{how:?}: {:?}", result.outcome);
            let trace = execute(&rt, Some(how), |rt, task, tamper| {
                rt.trace_tampered(task, tamper).unwrap()
            });
            assert_eq!(
                trace.digest, result.digest,
                "{how:?} defends what it reported"
            );
            assert_ne!(trace.digest, honest.digest, "{how:?} changed nothing");
            let first = (1..honest.positions())
                .find(|&p| trace.hash_at(p) != honest.hash_at(p))
                .unwrap();
            assert_eq!(first, departs, "{how:?}");
        }
        let none = TrainingCheat::new(Some(Misbehave::Liar), &args());
        assert!(none.is_none(), "not a training cheat");
        let escape = ["--steps", "4", "--out", "/output/../x"].map(str::to_string);
        let cheat = TrainingCheat::new(Some(Misbehave::EarlyStopper), &escape);
        assert!(cheat.is_none(), "the one path rule");
        let joined = ["--steps=4", "--data=/input/d.txt"].map(str::to_string);
        let cheat = TrainingCheat::new(Some(Misbehave::DataSwapper), &joined).unwrap();
        assert_eq!((cheat.steps, cheat.data.as_deref()), (4, Some("d.txt")));
    }
}
