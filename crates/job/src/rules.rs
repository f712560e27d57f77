//! What a job may ask for, however it arrives: the job-file parser
//! ([`Job::load`](crate::Job::load)) and a node taking an expanded job over
//! its API apply these same bounds, so no job reaches a node that a job
//! file could not have said. Each bound is far above honest use and far
//! below what would hurt the machine that checks or runs the job.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::{Limits, VerifyPolicy};

/// The most tasks in one job.
pub const TASKS_MAX: u64 = 1_000_000;
/// The most arguments of a task.
pub const ARGS_MAX: usize = 256;
/// The most input files of a job.
pub const INPUTS_MAX: usize = 1024;
/// The most output paths of a task.
pub const OUTPUTS_MAX: usize = 1024;
/// The most input files of a task's own (a video segment), beside the
/// job's.
pub const TASK_INPUTS_MAX: usize = 16;

/// The most bytes a job's tasks may expand to: every task's rendered
/// arguments and output paths, each counted with a `String`'s own size.
/// Without it a small job file (256 arguments of `{task}` over a million
/// tasks) expands to gigabytes in the parser.
pub const EXPANDED_BYTES_MAX: u64 = 256 << 20;

/// Fuel per task.
pub const FUEL_RANGE: RangeInclusive<u64> = 1..=10_000_000_000_000;
/// Linear memory per task, MiB.
pub const MEMORY_MIB_RANGE: RangeInclusive<u64> = 1..=4096;
/// Wall-clock watchdog per task, seconds.
pub const WALL_TIME_S_RANGE: RangeInclusive<u64> = 1..=86_400;
/// Bytes written to `/output` per task, MiB.
pub const OUTPUT_MIB_RANGE: RangeInclusive<u64> = 1..=4096;
/// Bytes written to stdout (and again to stderr) per task, KiB.
pub const STDOUT_KIB_RANGE: RangeInclusive<u64> = 1..=16_384;
/// GPUs per task (a tool task only).
pub const GPUS_RANGE: RangeInclusive<u64> = 0..=16;
/// Memory each of a task's GPUs must have, MiB (0: any).
pub const GPU_MEMORY_MIB_RANGE: RangeInclusive<u64> = 0..=1 << 20;
/// Providers per task under `replicate`. The top is the most replicas a
/// node's verifier asks for (`cairn_verify::Params::replicas_max`): a job
/// wanting more could never finish.
pub const REPLICAS_RANGE: RangeInclusive<u64> = 2..=8;
/// Seconds a requester may take to approve a job's results: a minute to
/// thirty days.
pub const APPROVAL_WINDOW_S_RANGE: RangeInclusive<u64> = 60..=30 * 86_400;

/// `value` if it lies in `range`, else what was expected.
pub fn check_range(value: u64, range: &RangeInclusive<u64>) -> Result<u64, String> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{value} is out of range; expected {}..={}",
            range.start(),
            range.end()
        ))
    }
}

/// Accepts a task count of 1 to [`TASKS_MAX`].
pub fn check_task_count(count: u64) -> Result<(), String> {
    if count == 0 {
        return Err("the task set is empty; expected at least one task".into());
    }
    if count > TASKS_MAX {
        return Err(format!("{count} tasks; the limit is {TASKS_MAX}"));
    }
    Ok(())
}

/// Accepts a replica count in [`REPLICAS_RANGE`].
pub fn check_replicas(replicas: u64) -> Result<u32, String> {
    // The range's top is far below u32::MAX, so the cast keeps the value.
    check_range(replicas, &REPLICAS_RANGE).map(|r| r as u32)
}

/// Accepts a spot-check probability in (0, 1].
pub fn check_probability(probability: f64) -> Result<f64, String> {
    if probability > 0.0 && probability <= 1.0 {
        Ok(probability)
    } else {
        Err(format!(
            "{probability} is out of range; expected a probability in (0, 1]"
        ))
    }
}

/// Accepts an adaptive confidence in [0.5, 1): below one half a coin
/// would do, and certainty is `replicate`.
pub fn check_confidence(confidence: f64) -> Result<f64, String> {
    if (0.5..1.0).contains(&confidence) {
        Ok(confidence)
    } else {
        Err(format!(
            "{confidence} is out of range; expected [0.5, 1) (certainty is 'replicate')"
        ))
    }
}

/// `value` of `unit` bytes each if it lies in `range` of units, else what
/// was expected; u128 so no bound overflows.
fn check_scaled(
    key: &str,
    value: u64,
    unit: u64,
    range: &RangeInclusive<u64>,
    unit_name: &str,
) -> Result<(), String> {
    let (low, high) = (
        u128::from(*range.start()) * u128::from(unit),
        u128::from(*range.end()) * u128::from(unit),
    );
    if (low..=high).contains(&u128::from(value)) {
        Ok(())
    } else {
        Err(format!(
            "{key}: {value} bytes is out of range; expected {}..={} {unit_name}",
            range.start(),
            range.end()
        ))
    }
}

impl Limits {
    /// Checks every limit against the bounds a job file is held to;
    /// the message names the job-file key at fault.
    pub fn check(&self) -> Result<(), String> {
        check_range(self.fuel, &FUEL_RANGE).map_err(|m| format!("limits.fuel: {m}"))?;
        check_scaled(
            "limits.memory_mib",
            self.memory_bytes,
            1 << 20,
            &MEMORY_MIB_RANGE,
            "MiB",
        )?;
        check_scaled(
            "limits.output_mib",
            self.output_bytes,
            1 << 20,
            &OUTPUT_MIB_RANGE,
            "MiB",
        )?;
        check_scaled(
            "limits.stdout_kib",
            self.stdout_bytes,
            1 << 10,
            &STDOUT_KIB_RANGE,
            "KiB",
        )?;
        let (low, high) = (
            Duration::from_secs(*WALL_TIME_S_RANGE.start()),
            Duration::from_secs(*WALL_TIME_S_RANGE.end()),
        );
        if !(low..=high).contains(&self.wall_time) {
            return Err(format!(
                "limits.wall_time_s: {} ms is out of range; expected {}..={} s",
                self.wall_time.as_millis(),
                WALL_TIME_S_RANGE.start(),
                WALL_TIME_S_RANGE.end()
            ));
        }
        check_range(u64::from(self.gpus), &GPUS_RANGE).map_err(|m| format!("limits.gpus: {m}"))?;
        check_range(u64::from(self.gpu_memory_mib), &GPU_MEMORY_MIB_RANGE)
            .map_err(|m| format!("limits.gpu_memory_mib: {m}"))?;
        if self.gpu_memory_mib > 0 && self.gpus == 0 {
            return Err(
                "limits.gpu_memory_mib: GPU memory is asked for, but no GPU (limits.gpus)".into(),
            );
        }
        Ok(())
    }
}

impl VerifyPolicy {
    /// Checks the policy's value against the bounds a job file is held to;
    /// the message names the job-file key at fault.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Self::None => Ok(()),
            Self::Replicate { replicas } => check_replicas(u64::from(replicas))
                .map(|_| ())
                .map_err(|m| format!("verify.replicas: {m}")),
            Self::Spot { probability } => check_probability(probability)
                .map(|_| ())
                .map_err(|m| format!("verify.probability: {m}")),
            Self::Adaptive { confidence } => check_confidence(confidence)
                .map(|_| ())
                .map_err(|m| format!("verify.confidence: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_meet_the_rules() {
        Limits::default().check().unwrap();
        VerifyPolicy::default().check().unwrap();
    }

    /// Limits far past the bounds, in the units an API caller sends
    /// (bytes, a Duration from milliseconds), are refused without
    /// overflowing.
    #[test]
    fn overflowing_limits_are_refused_by_key() {
        let refused = |limits: Limits, key: &str| {
            let err = limits.check().unwrap_err();
            assert!(err.starts_with(key), "{err}");
        };
        let ok = Limits::default();
        refused(
            Limits {
                wall_time: Duration::from_millis(u64::MAX),
                ..ok
            },
            "limits.wall_time_s",
        );
        refused(
            Limits {
                wall_time: Duration::from_millis(999),
                ..ok
            },
            "limits.wall_time_s",
        );
        refused(Limits { fuel: 0, ..ok }, "limits.fuel");
        refused(
            Limits {
                fuel: u64::MAX,
                ..ok
            },
            "limits.fuel",
        );
        refused(
            Limits {
                memory_bytes: u64::MAX,
                ..ok
            },
            "limits.memory_mib",
        );
        refused(
            Limits {
                memory_bytes: (4096 << 20) + 1,
                ..ok
            },
            "limits.memory_mib",
        );
        refused(
            Limits {
                output_bytes: 0,
                ..ok
            },
            "limits.output_mib",
        );
        refused(
            Limits {
                stdout_bytes: u64::MAX,
                ..ok
            },
            "limits.stdout_kib",
        );
        Limits {
            memory_bytes: 4096 << 20,
            wall_time: Duration::from_secs(86_400),
            ..ok
        }
        .check()
        .unwrap();
    }

    #[test]
    fn task_counts_and_policies_are_bounded() {
        assert!(check_task_count(0).is_err());
        assert!(
            check_task_count(1_000_000_000)
                .unwrap_err()
                .contains("the limit is 1000000")
        );
        check_task_count(TASKS_MAX).unwrap();
        for bad in [
            VerifyPolicy::Replicate { replicas: 1 },
            VerifyPolicy::Replicate { replicas: 9 },
            VerifyPolicy::Spot { probability: 0.0 },
            VerifyPolicy::Spot {
                probability: f64::NAN,
            },
            VerifyPolicy::Adaptive { confidence: 1.0 },
            VerifyPolicy::Adaptive { confidence: 0.1 },
        ] {
            assert!(bad.check().is_err(), "{bad:?} was accepted");
        }
    }
}
