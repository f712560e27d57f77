//! `cairn checkpoint`: checks the outputs of a `cairn:train` run against
//! each other before the weights are trusted: the delivered checkpoint is
//! the state the last commitment names, the loss curve has every step and
//! agrees with the commitments, and (with `--data`) the run trained on the
//! data the owner holds.
//!
//! This catches a delivery patched together after the fact (weights from
//! fewer steps behind made-up commitments); a provider that lies
//! consistently is caught by replication and disputes instead. With
//! `--sample`, the checked model then writes some text.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use cairn_train::checkpoint::{CHECKPOINT_BYTES_MAX, hex};
use cairn_train::{COMMITMENTS_FILE, LOSS_FILE, WEIGHTS_FILE, check_run, read_bounded};

/// Commitments and loss curves are text of a line per checkpoint or step.
const TEXT_BYTES_MAX: u64 = 1 << 30;

/// Arguments of `cairn checkpoint`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  \
    cairn run examples/train/job.toml --local\n  \
    cairn checkpoint out/train --data examples/train/seed.txt\n  \
    cairn checkpoint out/train --sample 300 --prompt \"Decentralized computing \"")]
pub struct CheckpointArgs {
    /// The folder a `cairn:train` run's outputs are in
    /// (`weights.safetensors`, `loss.csv`, `commitments.jsonl`).
    results: PathBuf,
    /// The data the run was to train on: its BLAKE3 must be the one the
    /// checkpoint names.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print the findings as one JSON object.
    #[arg(long)]
    json: bool,
    /// Then write this many bytes of text from the checked model.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sample: Option<u32>,
    /// The text the sample continues.
    #[arg(long, default_value = "")]
    prompt: String,
    /// How adventurous the sample is: 0 takes the likeliest byte each
    /// time, 1 the model's own odds.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Seeds the sample's draws.
    #[arg(long, default_value_t = 0)]
    sample_seed: u64,
}

pub fn checkpoint(args: CheckpointArgs) -> anyhow::Result<ExitCode> {
    let read = |name: &str, max: u64| {
        read_bounded(&args.results.join(name), max).map_err(anyhow::Error::msg)
    };
    let text = |name: &str| -> anyhow::Result<String> {
        String::from_utf8(read(name, TEXT_BYTES_MAX)?)
            .with_context(|| format!("{name} is not UTF-8"))
    };
    let weights = read(WEIGHTS_FILE, CHECKPOINT_BYTES_MAX)?;
    let sample = || -> anyhow::Result<Option<String>> {
        let Some(count) = args.sample else {
            return Ok(None);
        };
        let checkpoint =
            cairn_train::Checkpoint::from_bytes(&weights).map_err(anyhow::Error::msg)?;
        let bytes = cairn_train::generate(
            &checkpoint,
            args.prompt.as_bytes(),
            count as usize,
            args.temperature,
            args.sample_seed,
        )
        .map_err(anyhow::Error::msg)?;
        // The model writes bytes: shown as text, control characters
        // escaped (a model's output reaches a terminal).
        let text = String::from_utf8_lossy(&bytes);
        Ok(Some(
            text.chars()
                .map(|c| match c {
                    '\n' | '\t' => c.to_string(),
                    c if c.is_control() => c.escape_debug().to_string(),
                    c => c.to_string(),
                })
                .collect(),
        ))
    };
    // The provider's bytes can reach the message (a field's name, a
    // tensor's): escaped, so no terminal escape sequence gets through.
    let run = check_run(&weights, &text(COMMITMENTS_FILE)?, &text(LOSS_FILE)?)
        .map_err(|e| anyhow::anyhow!("{}", e.escape_debug()))
        .with_context(|| format!("the run in {}", args.results.display()))?;
    if let Some(data) = &args.data {
        let mut hasher = blake3::Hasher::new();
        let mut file =
            std::fs::File::open(data).with_context(|| format!("reading {}", data.display()))?;
        std::io::copy(&mut file, &mut hasher)
            .with_context(|| format!("reading {}", data.display()))?;
        if *hasher.finalize().as_bytes() != run.position.data {
            bail!(
                "the run trained on data {}, not on {} ({})",
                hex(&run.position.data),
                data.display(),
                hasher.finalize()
            );
        }
    }
    let sampled = sample()?;
    let settings = run.position.settings;
    let shape = settings.shape;
    if args.json {
        let summary = serde_json::json!({
            "steps": run.position.steps,
            "seed": settings.seed,
            "batch": settings.batch,
            "learning_rate": settings.learning_rate,
            "weight_decay": settings.weight_decay,
            "root": hex(&run.root),
            "data": hex(&run.position.data),
            "commitments": run.commitments,
            "context": shape.context,
            "embed": shape.embed,
            "hidden": shape.hidden,
            "first_step": run.steps.0,
            "loss_first": run.loss.0,
            "loss_last": run.loss.1,
            "from": run.from.map(|root| hex(&root)),
            "sample": sampled,
        });
        println!("{summary}");
    } else {
        println!(
            "{}: the checkpoint is the state after step {} (root {}), as the last of {} \
             commitments says",
            args.results.display(),
            run.position.steps,
            hex(&run.root),
            run.commitments
        );
        let ((first, last), (from, to)) = (run.steps, run.loss);
        println!("loss curve: steps {first}..={last}, loss {from:.4} -> {to:.4}");
        if let Some(parent) = run.from {
            println!("continued from the checkpoint with root {}", hex(&parent));
        }
        println!(
            "model: context {}, embedding {}, hidden {}; batch {}, learning rate {}, weight \
             decay {}, seed {}; data {}{}",
            shape.context,
            shape.embed,
            shape.hidden,
            settings.batch,
            settings.learning_rate,
            settings.weight_decay,
            settings.seed,
            hex(&run.position.data),
            if args.data.is_some() {
                " (matches --data)"
            } else {
                ""
            }
        );
    }
    if let (false, Some(text)) = (args.json, sampled) {
        println!("sample:\n{}{text}", args.prompt);
    }
    Ok(ExitCode::SUCCESS)
}
