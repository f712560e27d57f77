//! `cairn search`: semantic search over the embeddings a `cairn:embed` job
//! wrote: the query is embedded with the same model and the corpus lines
//! closest to it in meaning are listed.
//!
//! The query is embedded natively, not in Wasm: its rounding differs from
//! the guest's by about 1e-7 a dimension (see `docs/ml.md`), far below
//! what separates two lines' scores, and it answers in milliseconds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use cairn_embed::{Embedder, Record, similarity};

/// An embeddings file larger than this is refused.
const FILE_BYTES_MAX: u64 = 256 << 20;
/// Embeddings files read from one folder.
const FILES_MAX: usize = 100_000;
/// Records read from one folder, in all: each is kept in memory (about
/// 2 KB for 384 dimensions, plus its text).
const RECORDS_MAX: usize = 2_000_000;
/// How far from 1 an embedding's length may be: the guest writes unit
/// vectors, and a longer one would outscore every honest line.
const NORM_TOLERANCE: f32 = 1e-3;

/// Arguments of `cairn search`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  \
    cairn run examples/embed/job.toml --local\n  \
    cairn search out/embed \"when does the bread go in the oven?\"")]
pub struct SearchArgs {
    /// The folder a `cairn:embed` job's results are in (its
    /// `embeddings-*.jsonl` files, written by providers: each is checked).
    results: PathBuf,
    /// What to look for, in words.
    query: String,
    /// The model the job used: a folder with `model.safetensors`,
    /// `config.json` and `vocab.txt` (relative to the current folder).
    #[arg(long, default_value = "examples/embed/model")]
    model: PathBuf,
    /// How many lines to list.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    top: u32,
    /// Print one JSON object per match (`score`, `line`, `text`).
    #[arg(long)]
    json: bool,
}

pub fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let embedder = Embedder::from_dir(&args.model)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("loading the model in {}", args.model.display()))?;
    let records = read_records(&args.results, embedder.dimensions())?;
    if records.is_empty() {
        bail!(
            "no embeddings in {} (expected the embeddings-*.jsonl files of a cairn:embed job)",
            args.results.display()
        );
    }
    let query = embedder.embed(&args.query).map_err(anyhow::Error::msg)?;
    if query.truncated {
        eprintln!(
            "cairn: warning: the query is longer than the model reads; only its first {} tokens count",
            query.tokens
        );
    }
    let mut scored: Vec<(f32, &Record)> = records
        .iter()
        .map(|record| (similarity(&query.vector, &record.embedding), record))
        .collect();
    // Best first; equal scores in corpus order.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.line.cmp(&b.1.line)));
    for (score, record) in scored.into_iter().take(args.top as usize) {
        if args.json {
            let line = serde_json::json!({
                "score": score,
                "line": record.line,
                "text": record.text,
            });
            println!("{line}");
        } else {
            // A provider wrote the text: no escape sequence reaches the
            // terminal.
            let text: String = record.text.escape_debug().collect();
            println!("{score:.3}  {:>6}  {text}", record.line);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every record of the `embeddings-*.jsonl` files in `dir`, checked: the
/// model's dimensions, unit length, each line once.
fn read_records(dir: &Path, dimensions: usize) -> anyhow::Result<Vec<Record>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("embeddings-") && n.ends_with(".jsonl"));
        if named && path.is_file() {
            files.push(path);
        }
        if files.len() > FILES_MAX {
            bail!("{} has more than {FILES_MAX} .jsonl files", dir.display());
        }
    }
    files.sort();
    let mut records = Vec::new();
    let mut lines = std::collections::BTreeSet::new();
    for file in files {
        let text = cairn_embed::read_text(&file, FILE_BYTES_MAX).map_err(anyhow::Error::msg)?;
        for (number, json) in text.lines().enumerate() {
            let at = || format!("{}, line {}", file.display(), number + 1);
            let record: Record = serde_json::from_str(json).with_context(at)?;
            if record.embedding.len() != dimensions {
                bail!(
                    "{}: an embedding of {} dimensions, the model's have {dimensions} \
                     (was the job run with another model?)",
                    at(),
                    record.embedding.len()
                );
            }
            let norm = similarity(&record.embedding, &record.embedding).sqrt();
            // NaN fails this too.
            let unit = (norm - 1.0).abs() <= NORM_TOLERANCE;
            if !unit {
                bail!(
                    "{}: an embedding of length {norm}, not 1: not what cairn:embed writes",
                    at()
                );
            }
            if !lines.insert(record.line) {
                bail!("{}: corpus line {} appears twice", at(), record.line);
            }
            if records.len() == RECORDS_MAX {
                bail!("{} holds more than {RECORDS_MAX} embeddings", dir.display());
            }
            records.push(record);
        }
    }
    Ok(records)
}
