//! train: A character-level language model trained one optimiser step at a time in candle, its whole state committed by Merkle root, the same code compiled to Wasm and natively.
//!
//! The guest program `cairn:train` (`src/main.rs`) runs this library under
//! WASI, where each `cairn_step` is one optimiser step, so replicas agree bit
//! for bit and a dispute over a run settles by re-executing one step.
//! `cairn bench ml` runs it natively for comparison.
//!
//! The model reads the last [`Shape::context`] bytes of text and predicts the
//! next byte: an embedding per byte, one hidden `tanh` layer, and logits over
//! the 256 byte values, trained with AdamW on cross-entropy. Everything that
//! decides a run is explicit: the initial weights and the order of the data
//! come from the seed, and the batch of step `t` is a function of the seed
//! and `t` alone, so a run resumed from a checkpoint continues exactly as the
//! uninterrupted run would have.
//!
//! A [`Checkpoint`] holds the weights, the optimiser's moments and the
//! position (steps taken, seed, the data's digest); its [`Checkpoint::root`]
//! is a Merkle root over them, which the guest records every `every` steps,
//! so the owner of the weights can check any delivered checkpoint against
//! the run's commitments.

pub mod checkpoint;
pub mod outputs;

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

pub use checkpoint::{Checkpoint, Position};
pub use outputs::{COMMITMENTS_FILE, Commitment, LOSS_FILE, RunCheck, WEIGHTS_FILE, check_run};

/// Byte values: the model's vocabulary.
pub const VOCAB: usize = 256;

/// The model's dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Bytes of text the model reads to predict the next.
    pub context: usize,
    /// Width of each byte's embedding.
    pub embed: usize,
    /// Width of the hidden layer.
    pub hidden: usize,
}

/// Bounds that keep a run inside a guest's memory and a task's time.
pub const CONTEXT_MAX: usize = 256;
/// The widest embedding.
pub const EMBED_MAX: usize = 512;
/// The widest hidden layer.
pub const HIDDEN_MAX: usize = 8192;
/// The largest batch.
pub const BATCH_MAX: usize = 4096;
/// Most parameters a model may have: 64 MiB of float32, and with the
/// optimiser's moments, the gradients and the update's temporaries several
/// times that in guest memory (which the job's memory limit bounds).
pub const PARAMETERS_MAX: usize = 16 << 20;
/// Most numbers in one layer's activations for a batch (`batch × context ×
/// embed` at the input, `batch × hidden` after the hidden layer).
pub const ACTIVATIONS_MAX: usize = 16 << 20;
/// Most optimiser steps a run may take.
pub const STEPS_MAX: u64 = 100_000_000;
/// Most steps a chain of runs may reach from initialisation (a checkpoint
/// claiming more is refused, so the count never overflows).
pub const TOTAL_STEPS_MAX: u64 = 1 << 48;

impl Default for Shape {
    fn default() -> Self {
        Self {
            context: 16,
            embed: 24,
            hidden: 256,
        }
    }
}

impl Shape {
    /// The parameters' names and shapes, in a fixed order.
    pub fn parameters(&self) -> [(&'static str, Vec<usize>); 5] {
        [
            ("embed", vec![VOCAB, self.embed]),
            (
                "hidden.weight",
                vec![self.context * self.embed, self.hidden],
            ),
            ("hidden.bias", vec![self.hidden]),
            ("out.weight", vec![self.hidden, VOCAB]),
            ("out.bias", vec![VOCAB]),
        ]
    }

    /// How many numbers the model has.
    pub fn parameter_count(&self) -> usize {
        self.parameters()
            .iter()
            .map(|(_, dims)| dims.iter().product::<usize>())
            .sum()
    }

    /// Checks the bounds.
    pub fn check(&self) -> Result<(), String> {
        let within = |what: &str, value: usize, max: usize| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(format!("{what} must be in 1..={max}, got {value}"))
            }
        };
        within("the context", self.context, CONTEXT_MAX)?;
        within("the embedding width", self.embed, EMBED_MAX)?;
        within("the hidden width", self.hidden, HIDDEN_MAX)?;
        within(
            "the parameter count",
            self.parameter_count(),
            PARAMETERS_MAX,
        )
    }
}

/// How a run trains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// The model's dimensions (taken from the checkpoint when continuing one).
    pub shape: Shape,
    /// Windows of text per step.
    pub batch: usize,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Decides the initial weights and the data order.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            shape: Shape::default(),
            batch: 32,
            learning_rate: 3e-3,
            weight_decay: 0.0,
            seed: 0,
        }
    }
}

impl Settings {
    /// Checks the bounds.
    pub fn check(&self) -> Result<(), String> {
        self.shape.check()?;
        if !(1..=BATCH_MAX).contains(&self.batch) {
            return Err(format!(
                "the batch must be in 1..={BATCH_MAX}, got {}",
                self.batch
            ));
        }
        // Each factor is bounded above, so these products fit in a u64.
        let shape = self.shape;
        let widest = [shape.context * shape.embed, shape.hidden, VOCAB]
            .into_iter()
            .max()
            .unwrap_or(0);
        if self.batch * widest > ACTIVATIONS_MAX {
            return Err(format!(
                "a batch of {} with a layer {widest} wide is over the {ACTIVATIONS_MAX} \
                 activations allowed",
                self.batch
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return Err(format!(
                "the learning rate must be in (0, 1], got {}",
                self.learning_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.weight_decay) {
            return Err(format!(
                "the weight decay must be in [0, 1], got {}",
                self.weight_decay
            ));
        }
        Ok(())
    }
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;

/// The training data: a file read a batch at a time, so its size does not
/// bound the guest's memory.
#[derive(Debug)]
struct Data {
    path: PathBuf,
    len: u64,
    digest: [u8; 32],
}

/// Most bytes of training data (the file is read a window at a time).
pub const DATA_BYTES_MAX: u64 = 1 << 40;

impl Data {
    fn open(path: &Path, context: usize) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("cannot read '{}': {e}", path.display());
        let mut file = std::fs::File::open(path).map_err(fail)?;
        // The digest names the data in every commitment: hashed in pieces,
        // it costs one pass and no more memory than a piece.
        let mut hasher = blake3::Hasher::new();
        let mut piece = vec![0u8; 64 << 10];
        let mut len = 0u64;
        loop {
            let read = file.read(&mut piece).map_err(fail)?;
            if read == 0 {
                break;
            }
            hasher.update(&piece[..read]);
            len += read as u64;
            if len > DATA_BYTES_MAX {
                return Err(format!(
                    "'{}' is more than the {DATA_BYTES_MAX} bytes allowed",
                    path.display()
                ));
            }
        }
        if len <= context as u64 {
            return Err(format!(
                "'{}' has {len} bytes; training needs more than the context of {context}",
                path.display()
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            len,
            digest: *hasher.finalize().as_bytes(),
        })
    }

    /// The windows of `context + 1` bytes at `starts`.
    fn windows(&self, starts: &[u64], context: usize) -> Result<Vec<u8>, String> {
        let fail = |e: std::io::Error| format!("cannot read '{}': {e}", self.path.display());
        let mut file = std::fs::File::open(&self.path).map_err(fail)?;
        let mut out = vec![0u8; starts.len() * (context + 1)];
        for (start, window) in starts.iter().zip(out.chunks_exact_mut(context + 1)) {
            file.seek(SeekFrom::Start(*start)).map_err(fail)?;
            file.read_exact(window).map_err(|e| {
                // The file changed since it was opened: the run cannot go on
                // with data other than what its commitments name.
                format!("cannot read '{}': {e}", self.path.display())
            })?;
        }
        Ok(out)
    }
}

/// SplitMix64: small, fast and the same everywhere.
#[derive(Clone, Copy, Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64, stream: u64) -> Self {
        Self(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[-1, 1)`, from the top 24 bits (exact in float32).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u32 << 23) as f32 - 1.0
    }
}

/// Where the batch of step `step` starts in data of `len` bytes: a function
/// of the seed and the step alone.
pub fn batch_starts(seed: u64, step: u64, batch: usize, len: u64, context: usize) -> Vec<u64> {
    let span = len - context as u64;
    let mut rng = SplitMix::new(seed, step.wrapping_add(1));
    (0..batch).map(|_| rng.below(span)).collect()
}

/// One parameter and its optimiser state.
struct Parameter {
    name: &'static str,
    value: Var,
    first_moment: Var,
    second_moment: Var,
}

/// A run in progress: the model, the optimiser and the position in the data.
pub struct Trainer {
    settings: Settings,
    parameters: Vec<Parameter>,
    /// Optimiser steps taken since initialisation (across resumed runs):
    /// the data position, and AdamW's bias-correction count.
    steps: u64,
    data: Data,
}

impl Trainer {
    /// A run on the data at `data`, from `init` (continuing its weights,
    /// optimiser state and step count) or from weights drawn from the seed.
    pub fn new(
        mut settings: Settings,
        data: &Path,
        init: Option<&Checkpoint>,
    ) -> Result<Self, String> {
        if let Some(init) = init {
            settings.shape = init.position.settings.shape;
        }
        settings.check()?;
        let data = Data::open(data, settings.shape.context)?;
        let device = Device::Cpu;
        let mut parameters = Vec::new();
        let mut rng = SplitMix::new(settings.seed, 0);
        for (name, dims) in settings.shape.parameters() {
            let count = dims.iter().product::<usize>();
            let tensor = |values: Vec<f32>| {
                Tensor::from_vec(values, dims.as_slice(), &device).map_err(|e| e.to_string())
            };
            let (value, first, second) = match init {
                Some(init) => (
                    init.get(&format!("param.{name}"), &dims)?,
                    init.get(&format!("adam.m.{name}"), &dims)?,
                    init.get(&format!("adam.v.{name}"), &dims)?,
                ),
                None => {
                    // Uniform in ±1/√fan-in for the weights (±1 for the
                    // embedding), zero for the biases.
                    let scale = match dims.as_slice() {
                        [_, _] if name == "embed" => 1.0,
                        [fan_in, _] => 1.0 / (*fan_in as f32).sqrt(),
                        _ => 0.0,
                    };
                    let values = (0..count).map(|_| rng.unit() * scale).collect();
                    (values, vec![0.0; count], vec![0.0; count])
                }
            };
            let var = |values| Var::from_tensor(&tensor(values)?).map_err(|e| e.to_string());
            parameters.push(Parameter {
                name,
                value: var(value)?,
                first_moment: var(first)?,
                second_moment: var(second)?,
            });
        }
        Ok(Self {
            settings,
            parameters,
            steps: init.map_or(0, |init| init.position.steps),
            data,
        })
    }

    /// The settings in force (the shape is the checkpoint's when continuing).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Optimiser steps taken since initialisation.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The data's BLAKE3 digest.
    pub fn data_digest(&self) -> [u8; 32] {
        self.data.digest
    }

    /// One optimiser step on the next batch; returns the batch's loss
    /// before the update.
    pub fn step(&mut self) -> Result<f32, String> {
        let shape = self.settings.shape;
        let batch = self.settings.batch;
        let starts = batch_starts(
            self.settings.seed,
            self.steps,
            batch,
            self.data.len,
            shape.context,
        );
        let windows = self.data.windows(&starts, shape.context)?;
        let mut inputs = Vec::with_capacity(batch * shape.context);
        let mut targets = Vec::with_capacity(batch);
        for window in windows.chunks_exact(shape.context + 1) {
            inputs.extend(window[..shape.context].iter().map(|&b| u32::from(b)));
            targets.push(u32::from(window[shape.context]));
        }
        let (loss, grads) = self
            .loss_and_gradients(inputs, targets)
            .map_err(|e| e.to_string())?;
        self.steps = self
            .steps
            .checked_add(1)
            .filter(|&s| s <= TOTAL_STEPS_MAX)
            .ok_or("the run has reached the most steps a run may")?;
        self.apply(&grads).map_err(|e| e.to_string())?;
        if !loss.is_finite() {
            return Err(format!(
                "the loss at step {} is {loss}: lower the learning rate",
                self.steps
            ));
        }
        Ok(loss)
    }

    fn loss_and_gradients(
        &self,
        inputs: Vec<u32>,
        targets: Vec<u32>,
    ) -> candle_core::Result<(f32, candle_core::backprop::GradStore)> {
        let batch = targets.len();
        let parameters = [0, 1, 2, 3, 4].map(|i| self.parameters[i].value.as_tensor());
        let logits = logits(self.settings.shape, parameters, inputs)?;
        let targets = Tensor::from_vec(targets, batch, &Device::Cpu)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
        let grads = loss.backward()?;
        Ok((loss.to_scalar::<f32>()?, grads))
    }

    /// AdamW, written out so that its moments are state this crate owns:
    /// committed, checkpointed and restored like the weights.
    fn apply(&self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
        let lr = self.settings.learning_rate;
        let t = i32::try_from(self.steps).unwrap_or(i32::MAX);
        let scale_m = 1.0 / (1.0 - BETA1.powi(t));
        let scale_v = 1.0 / (1.0 - BETA2.powi(t));
        let decay = 1.0 - lr * self.settings.weight_decay;
        for p in &self.parameters {
            let Some(g) = grads.get(p.value.as_tensor()) else {
                continue;
            };
            let m = ((p.first_moment.as_tensor() * BETA1)? + (g * (1.0 - BETA1))?)?;
            let v = ((p.second_moment.as_tensor() * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let update = ((&m * scale_m)? / (((&v * scale_v)?.sqrt()? + EPSILON)?))?;
            let next = ((p.value.as_tensor() * decay)? - (update * lr)?)?;
            p.first_moment.set(&m)?;
            p.second_moment.set(&v)?;
            p.value.set(&next)?;
        }
        Ok(())
    }

    /// The run's whole state as a checkpoint.
    pub fn checkpoint(&self) -> Result<Checkpoint, String> {
        let mut checkpoint = Checkpoint::new(Position {
            settings: self.settings,
            steps: self.steps,
            data: self.data.digest,
        });
        for p in &self.parameters {
            for (prefix, var) in [
                ("param", &p.value),
                ("adam.m", &p.first_moment),
                ("adam.v", &p.second_moment),
            ] {
                let tensor = var.as_tensor();
                let values = tensor
                    .flatten_all()
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(|e| e.to_string())?;
                checkpoint.insert(
                    format!("{prefix}.{}", p.name),
                    tensor.dims().to_vec(),
                    values,
                );
            }
        }
        Ok(checkpoint)
    }
}

/// The model: the logits of the next byte after each window of
/// `shape.context` bytes in `inputs`, from the parameters in
/// [`Shape::parameters`]'s order.
fn logits(shape: Shape, parameters: [&Tensor; 5], inputs: Vec<u32>) -> candle_core::Result<Tensor> {
    let [embed, hidden_w, hidden_b, out_w, out_b] = parameters;
    let batch = inputs.len() / shape.context;
    let inputs = Tensor::from_vec(inputs, batch * shape.context, &Device::Cpu)?;
    let x = embed
        .index_select(&inputs, 0)?
        .reshape((batch, shape.context * shape.embed))?;
    let hidden = x.matmul(hidden_w)?.broadcast_add(hidden_b)?.tanh()?;
    hidden.matmul(out_w)?.broadcast_add(out_b)
}

/// Most bytes [`generate`] writes in one call.
pub const GENERATE_MAX: usize = 1 << 20;

/// Text from a checkpoint's model: `count` bytes after `prompt`, each drawn
/// from the model's distribution at `temperature` (0 takes the likeliest
/// byte) with the draws seeded by `seed`. A prompt shorter than the
/// context is padded with spaces on the left.
pub fn generate(
    checkpoint: &Checkpoint,
    prompt: &[u8],
    count: usize,
    temperature: f32,
    seed: u64,
) -> Result<Vec<u8>, String> {
    if count > GENERATE_MAX {
        return Err(format!(
            "at most {GENERATE_MAX} bytes at a time, not {count}"
        ));
    }
    if !(0.0..=10.0).contains(&temperature) {
        return Err(format!(
            "the temperature must be in [0, 10], got {temperature}"
        ));
    }
    let shape = checkpoint.position.settings.shape;
    let mut tensors = Vec::new();
    for (name, dims) in shape.parameters() {
        let values = checkpoint.get(&format!("param.{name}"), &dims)?;
        tensors.push(
            Tensor::from_vec(values, dims.as_slice(), &Device::Cpu).map_err(|e| e.to_string())?,
        );
    }
    let parameters = [0, 1, 2, 3, 4].map(|i| &tensors[i]);
    let mut text: Vec<u8> = std::iter::repeat_n(b' ', shape.context.saturating_sub(prompt.len()))
        .chain(prompt.iter().copied())
        .collect();
    let mut rng = SplitMix::new(seed, u64::MAX);
    for _ in 0..count {
        let window = text[text.len() - shape.context..]
            .iter()
            .map(|&b| u32::from(b))
            .collect();
        let scores = logits(shape, parameters, window)
            .and_then(|l| l.flatten_all())
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        let next = if temperature == 0.0 {
            scores
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        } else {
            let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let weights: Vec<f64> = scores
                .iter()
                .map(|s| f64::from((s - top) / temperature).exp())
                .collect();
            let mut pick =
                (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * weights.iter().sum::<f64>();
            weights
                .iter()
                .position(|w| {
                    pick -= w;
                    pick < 0.0
                })
                .unwrap_or(VOCAB - 1)
        };
        text.push(next as u8);
    }
    Ok(text[text.len() - count..].to_vec())
}

/// Reads `path` if it is at most `max` bytes; never reads more than that.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    let claimed = file.metadata().map(|m| m.len()).unwrap_or(0).min(max);
    let mut bytes = Vec::with_capacity(usize::try_from(claimed).unwrap_or(0).saturating_add(1));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "'{}' is more than the {max} bytes allowed",
            path.display()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_depend_on_the_seed_and_the_step_only_and_stay_inside_the_data() {
        let a = batch_starts(7, 3, 64, 1_000, 16);
        assert_eq!(a, batch_starts(7, 3, 64, 1_000, 16));
        assert_ne!(a, batch_starts(7, 4, 64, 1_000, 16));
        assert_ne!(a, batch_starts(8, 3, 64, 1_000, 16));
        assert!(a.iter().all(|&s| s + 16 < 1_000));
        assert_eq!(batch_starts(1, 0, 8, 17, 16), vec![0; 8]);
    }

    #[test]
    fn bounds_refuse_what_would_not_fit() {
        assert!(Settings::default().check().is_ok());
        let mut s = Settings::default();
        s.shape.context = 0;
        assert!(s.check().unwrap_err().contains("context"));
        let mut s = Settings::default();
        s.shape.hidden = HIDDEN_MAX;
        s.shape.context = CONTEXT_MAX;
        s.shape.embed = EMBED_MAX;
        assert!(s.check().unwrap_err().contains("parameter count"));
        let mut s = Settings {
            learning_rate: f64::NAN,
            ..Settings::default()
        };
        assert!(s.check().is_err());
        s.learning_rate = 0.0;
        assert!(s.check().is_err());
        let s = Settings {
            batch: 0,
            ..Settings::default()
        };
        assert!(s.check().is_err());
        let s = Settings {
            batch: BATCH_MAX,
            shape: Shape {
                context: CONTEXT_MAX,
                embed: 64,
                hidden: 64,
            },
            ..Settings::default()
        };
        assert!(s.check().unwrap_err().contains("activations"));
    }
}
