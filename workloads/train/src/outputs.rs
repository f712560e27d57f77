//! What a run writes, and the check that its outputs agree with each other.

use serde::{Deserialize, Serialize};

use crate::Position;
use crate::checkpoint::{Checkpoint, unhex};

/// The whole state at the last checkpoint.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The loss of every step: `step,loss` lines under that header.
pub const LOSS_FILE: &str = "loss.csv";
/// One [`Commitment`] per line, a line per checkpoint.
pub const COMMITMENTS_FILE: &str = "commitments.jsonl";

/// A line of `commitments.jsonl`: the state after `steps` steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commitment {
    /// Optimiser steps taken since initialisation.
    pub steps: u64,
    /// The state's Merkle root ([`Checkpoint::root`]), in hex.
    pub root: String,
    /// The loss of the last step (none for the state a run starts from).
    pub loss: Option<f32>,
    /// On the first line of a run that continued a checkpoint: that
    /// checkpoint's root, so a chain of runs can be followed back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// What [`check_run`] found in a run's outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunCheck {
    /// The delivered state.
    pub position: Position,
    /// Its Merkle root, equal to the last commitment's.
    pub root: [u8; 32],
    /// The root of the checkpoint the run continued, if it did.
    pub from: Option<[u8; 32]>,
    /// Commitments in the file.
    pub commitments: usize,
    /// The first and the last step of the loss curve.
    pub steps: (u64, u64),
    /// The loss at the first and the last step.
    pub loss: (f32, f32),
}

/// Checks that a run's outputs agree with each other: the delivered
/// checkpoint is the state the last commitment names, there is a
/// commitment to the start and at least one after it, their steps rise,
/// the loss curve has one finite loss for every step after the first
/// commitment up to the last, and each commitment's loss is the curve's at
/// its step. A consistent lie passes (replicas and disputes catch those);
/// a delivery patched together after the fact does not. Every number is
/// the provider's: nothing here may overflow or take more than linear
/// time.
pub fn check_run(weights: &[u8], commitments: &str, loss_csv: &str) -> Result<RunCheck, String> {
    let checkpoint = Checkpoint::from_bytes(weights)?;
    let root = checkpoint.root();
    let mut lines: Vec<(u64, [u8; 32], Option<f32>)> = Vec::new();
    let mut from = None;
    for (n, line) in commitments.lines().enumerate() {
        let at = |what: String| format!("{COMMITMENTS_FILE} line {}: {what}", n + 1);
        let c: Commitment = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        let digest = |hex: &str| unhex(hex).ok_or_else(|| at("a root of 64 hex digits".into()));
        if let Some(parent) = &c.from {
            if n > 0 {
                return Err(at(
                    "only a run's first line names where it continued from".into()
                ));
            }
            from = Some(digest(parent)?);
        }
        if lines.last().is_some_and(|(steps, _, _)| *steps >= c.steps) {
            return Err(at(format!(
                "step {} does not follow the line before",
                c.steps
            )));
        }
        lines.push((c.steps, digest(&c.root)?, c.loss));
    }
    let (Some(&(start, _, _)), Some(&(last_steps, last_root, _))) = (lines.first(), lines.last())
    else {
        return Err(format!("{COMMITMENTS_FILE} is empty"));
    };
    if lines.len() < 2 {
        return Err(format!(
            "{COMMITMENTS_FILE} commits to the start only; a run commits after its steps too"
        ));
    }
    if last_steps != checkpoint.position.steps || last_root != root {
        return Err(format!(
            "the delivered weights are the state at step {} (root {}), but the last commitment \
             names step {last_steps} (root {})",
            checkpoint.position.steps,
            crate::checkpoint::hex(&root),
            crate::checkpoint::hex(&last_root)
        ));
    }

    let mut rows = loss_csv.lines();
    if rows.next() != Some("step,loss") {
        return Err(format!("{LOSS_FILE} does not start with 'step,loss'"));
    }
    // The curve must run from the step after the first commitment to the
    // last, one row a step: each row's step is known before it is read.
    let mut curve = Vec::new();
    let mut expected = start.checked_add(1);
    for (n, row) in rows.enumerate() {
        let parsed = row
            .split_once(',')
            .and_then(|(s, l)| Some((s.parse::<u64>().ok()?, l.parse::<f32>().ok()?)));
        let Some((step, loss)) = parsed.filter(|(_, l)| l.is_finite()) else {
            return Err(format!("{LOSS_FILE} line {}: not 'step,loss'", n + 2));
        };
        if Some(step) != expected || step > last_steps {
            return Err(format!(
                "{LOSS_FILE} line {}: step {step} where step {} was due (the commitments run \
                 from {start} to {last_steps})",
                n + 2,
                expected.map_or("none".into(), |e| e.to_string())
            ));
        }
        curve.push(loss);
        expected = step.checked_add(1);
    }
    if curve.len() as u64 != last_steps - start {
        return Err(format!(
            "{LOSS_FILE} has {} steps; the commitments run from {start} to {last_steps}",
            curve.len()
        ));
    }
    for &(steps, _, loss) in &lines[1..] {
        // Within the curve: start < steps <= last_steps.
        let on_curve = curve.get((steps - start - 1) as usize).copied();
        if loss != on_curve {
            return Err(format!(
                "the commitment at step {steps} states loss {loss:?}, the curve {on_curve:?}"
            ));
        }
    }
    Ok(RunCheck {
        position: checkpoint.position,
        root,
        from,
        commitments: lines.len(),
        steps: (start + 1, last_steps),
        loss: (curve[0], curve[curve.len() - 1]),
    })
}
