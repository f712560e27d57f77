//! train: Train a character-level language model, one optimiser step per `cairn_step`.
//!
//! The guest program of Cairn's training workload, run under WASI preview 1
//! where only `/input` is readable and `/output` writable. Start-up reads
//! the settings, hashes the data and draws the initial weights from the
//! seed (or continues a checkpoint given with `--init`); each `cairn_step`
//! then takes one AdamW step. The runtime checkpoints the guest between
//! steps, so a dispute over a run is settled by re-executing one step.
//!
//! Every `--every` steps, and after start-up and the last step, it writes to
//! the output folder:
//!
//! - `weights.safetensors`: the whole state (weights, optimiser moments,
//!   position), which `--init` continues;
//! - `loss.csv`: `step,loss` for every step so far;
//! - `commitments.jsonl`: one line per checkpoint, `{"steps", "root",
//!   "loss"}`, the root being the Merkle root of that state.
//!
//! Run natively it trains to the end by itself. Errors go to stderr as
//! `train: <message>` with exit code 2.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use cairn_train::checkpoint::{CHECKPOINT_BYTES_MAX, hex};
use cairn_train::{
    COMMITMENTS_FILE, Checkpoint, Commitment, LOSS_FILE, STEPS_MAX, Settings, Shape, Trainer,
    WEIGHTS_FILE, read_bounded,
};

const USAGE: &str = "usage: train --data <path> --out <dir> --steps <n> [--every <n>] \
[--seed <n>] [--batch <n>] [--lr <x>] [--weight-decay <x>] \
[--context <n>] [--embed <n>] [--hidden <n>] [--init <checkpoint.safetensors>]";

/// The run in progress: between steps it lives here, in linear memory, so
/// the runtime's checkpoints hold all of it.
struct Run {
    trainer: Trainer,
    out: PathBuf,
    steps: u64,
    every: u64,
    done: u64,
    /// `step,loss` lines not yet written.
    pending: String,
    /// The root of the checkpoint the run continues, for its first
    /// commitment.
    from: Option<[u8; 32]>,
    first_loss: Option<f32>,
    last_loss: Option<f32>,
}

static RUN: Mutex<Option<Run>> = Mutex::new(None);

fn main() -> ExitCode {
    match start() {
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some(run)) => {
            *RUN.lock().unwrap_or_else(|p| p.into_inner()) = Some(run);
            // Under Cairn the runtime now calls `cairn_step` until it
            // returns 0; anywhere else, this program does.
            #[cfg(not(target_family = "wasm"))]
            while cairn_step() != 0 {}
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("train: {message}");
            ExitCode::from(2)
        }
    }
}

/// One optimiser step; returns 0 once the run is done and written.
#[unsafe(no_mangle)]
pub extern "C" fn cairn_step() -> i32 {
    let mut guard = RUN.lock().unwrap_or_else(|p| p.into_inner());
    let Some(run) = guard.as_mut() else {
        return 0;
    };
    match step(run) {
        Ok(true) => 1,
        Ok(false) => {
            println!(
                "trained {} steps (to step {}): loss {:.4} -> {:.4}; weights, loss.csv and \
                 commitments.jsonl in {}",
                run.done,
                run.trainer.steps(),
                run.first_loss.unwrap_or(f32::NAN),
                run.last_loss.unwrap_or(f32::NAN),
                run.out.display()
            );
            0
        }
        Err(message) => {
            eprintln!("train: {message}");
            std::process::exit(2);
        }
    }
}

/// Takes one step; returns whether more remain.
fn step(run: &mut Run) -> Result<bool, String> {
    if run.done < run.steps {
        let loss = run.trainer.step()?;
        run.done += 1;
        run.first_loss.get_or_insert(loss);
        run.last_loss = Some(loss);
        run.pending
            .push_str(&format!("{},{loss}\n", run.trainer.steps()));
        // Checkpoints fall on multiples of `every` counted from
        // initialisation, so a resumed run commits where the whole run
        // would have.
        if run.trainer.steps().is_multiple_of(run.every) || run.done == run.steps {
            checkpoint(run)?;
        } else if run.pending.len() >= PENDING_BYTES_MAX {
            append(&run.out.join(LOSS_FILE), &run.pending)?;
            run.pending.clear();
        }
    }
    Ok(run.done < run.steps)
}

/// Loss lines kept in memory before they are written, when checkpoints
/// are far apart.
const PENDING_BYTES_MAX: usize = 1 << 20;

/// Writes the state, the loss lines so far and the state's commitment.
fn checkpoint(run: &mut Run) -> Result<(), String> {
    let state = run.trainer.checkpoint()?;
    let weights = run.out.join(WEIGHTS_FILE);
    std::fs::write(&weights, state.to_bytes()?).map_err(|e| write_error(&weights, e))?;
    let line = Commitment {
        steps: state.position.steps,
        root: hex(&state.root()),
        loss: run.last_loss,
        from: run.from.take().map(|root| hex(&root)),
    };
    let line = serde_json::to_string(&line).map_err(|e| e.to_string())?;
    append(&run.out.join(COMMITMENTS_FILE), &format!("{line}\n"))?;
    append(&run.out.join(LOSS_FILE), &run.pending)?;
    run.pending.clear();
    Ok(())
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| write_error(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| write_error(path, e))
}

fn write_error(path: &Path, e: std::io::Error) -> String {
    format!("cannot write '{}': {e}", path.display())
}

/// Reads the arguments and sets the run up; `None` means help was asked for.
fn start() -> Result<Option<Run>, String> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        return Ok(None);
    };
    let init = match &args.init {
        Some(path) => Some(Checkpoint::from_bytes(&read_bounded(
            Path::new(path),
            CHECKPOINT_BYTES_MAX,
        )?)?),
        None => None,
    };
    let given = args.settings;
    // Continuing a checkpoint, what is not given is the checkpoint's, so
    // that `--init` alone continues the run exactly.
    let base = init
        .as_ref()
        .map_or(Settings::default(), |i| i.position.settings);
    if let Some(init) = &init
        && given
            .shape
            .is_some_and(|shape| shape != init.position.settings.shape)
    {
        return Err(format!(
            "the model's dimensions are the checkpoint's ({:?}); leave them out",
            init.position.settings.shape
        ));
    }
    let settings = Settings {
        shape: given.shape.unwrap_or(base.shape),
        batch: given.batch.unwrap_or(base.batch),
        learning_rate: given.learning_rate.unwrap_or(base.learning_rate),
        weight_decay: given.weight_decay.unwrap_or(base.weight_decay),
        seed: given.seed.unwrap_or(base.seed),
    };
    let trainer = Trainer::new(settings, Path::new(&args.data), init.as_ref())?;
    let from = init.map(|init| init.root());
    let out = PathBuf::from(&args.out);
    std::fs::create_dir_all(&out).map_err(|e| write_error(&out, e))?;
    let header = out.join(LOSS_FILE);
    std::fs::write(&header, "step,loss\n").map_err(|e| write_error(&header, e))?;
    let commitments = out.join(COMMITMENTS_FILE);
    std::fs::write(&commitments, "").map_err(|e| write_error(&commitments, e))?;
    let mut run = Run {
        trainer,
        out,
        steps: args.steps,
        every: args.every.unwrap_or(args.steps),
        done: 0,
        pending: String::new(),
        from,
        first_loss: None,
        last_loss: None,
    };
    // The state the run starts from is committed too.
    checkpoint(&mut run)?;
    Ok(Some(run))
}

#[derive(Debug)]
struct Args {
    data: String,
    out: String,
    steps: u64,
    every: Option<u64>,
    settings: Given,
    init: Option<String>,
}

/// The settings given on the command line.
#[derive(Clone, Copy, Debug)]
struct Given {
    shape: Option<Shape>,
    batch: Option<usize>,
    learning_rate: Option<f64>,
    weight_decay: Option<f64>,
    seed: Option<u64>,
}

/// Parses the command line; `Ok(None)` means help was asked for.
fn parse_args(mut raw: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut given: std::collections::BTreeMap<String, String> = Default::default();
    while let Some(flag) = raw.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        // Accept both `--flag value` and `--flag=value`.
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (flag.clone(), None),
        };
        if !matches!(
            name.as_str(),
            "--data"
                | "--out"
                | "--steps"
                | "--every"
                | "--seed"
                | "--batch"
                | "--lr"
                | "--weight-decay"
                | "--context"
                | "--embed"
                | "--hidden"
                | "--init"
        ) {
            return Err(format!("unknown argument '{flag:.80}'\n{USAGE}"));
        }
        let value = inline
            .or_else(|| raw.next())
            .ok_or_else(|| format!("option '{name:.80}' needs a value\n{USAGE}"))?;
        if given.insert(name.clone(), value).is_some() {
            return Err(format!("option '{name}' given twice"));
        }
    }
    let mut take = |name: &str| given.remove(name);
    fn number<T: std::str::FromStr>(
        name: &str,
        value: Option<String>,
    ) -> Result<Option<T>, String> {
        value
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("option '{name}' needs a number, got '{v:.40}'"))
            })
            .transpose()
    }
    let missing = |name: &str| format!("missing required option '{name}'\n{USAGE}");
    let data = take("--data").ok_or_else(|| missing("--data"))?;
    let out = take("--out").ok_or_else(|| missing("--out"))?;
    let steps: u64 = number("--steps", take("--steps"))?.ok_or_else(|| missing("--steps"))?;
    if !(1..=STEPS_MAX).contains(&steps) {
        return Err(format!("--steps must be in 1..={STEPS_MAX}, got {steps}"));
    }
    let every: Option<u64> = number("--every", take("--every"))?;
    if every.is_some_and(|k| k == 0) {
        return Err("--every must be at least 1".into());
    }
    let defaults = Settings::default();
    let dims = [
        number::<usize>("--context", take("--context"))?,
        number::<usize>("--embed", take("--embed"))?,
        number::<usize>("--hidden", take("--hidden"))?,
    ];
    let shape = dims.iter().any(Option::is_some).then(|| Shape {
        context: dims[0].unwrap_or(defaults.shape.context),
        embed: dims[1].unwrap_or(defaults.shape.embed),
        hidden: dims[2].unwrap_or(defaults.shape.hidden),
    });
    let settings = Given {
        shape,
        batch: number("--batch", take("--batch"))?,
        learning_rate: number("--lr", take("--lr"))?,
        weight_decay: number("--weight-decay", take("--weight-decay"))?,
        seed: number("--seed", take("--seed"))?,
    };
    Ok(Some(Args {
        data,
        out,
        steps,
        every,
        settings,
        init: take("--init"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_every_option_and_refuses_what_is_wrong() {
        let args = parse(&[
            "--data",
            "/input/d.txt",
            "--out=/output",
            "--steps",
            "40",
            "--every",
            "10",
            "--seed",
            "7",
            "--batch",
            "8",
            "--lr",
            "0.01",
            "--hidden",
            "64",
        ])
        .unwrap()
        .unwrap();
        let given = args.settings;
        assert_eq!(
            (args.steps, args.every, given.seed),
            (40, Some(10), Some(7))
        );
        assert_eq!((given.batch, given.learning_rate), (Some(8), Some(0.01)));
        assert_eq!(given.weight_decay, None);
        assert_eq!(given.shape.unwrap().hidden, 64);
        assert_eq!(given.shape.unwrap().context, Shape::default().context);
        assert!(
            parse(&["--data", "d", "--out", "o"])
                .unwrap_err()
                .contains("--steps")
        );
        assert!(parse(&["--data", "d", "--out", "o", "--steps", "0"]).is_err());
        assert!(parse(&["--data", "d", "--out", "o", "--steps", "1", "--every", "0"]).is_err());
        assert!(parse(&["--steps", "x"]).is_err());
        assert!(
            parse(&["--seed", "1", "--seed", "2"])
                .unwrap_err()
                .contains("twice")
        );
        assert!(parse(&["--bogus", "1"]).unwrap_err().contains("unknown"));
        assert!(parse(&["-h"]).unwrap().is_none());
    }
}
