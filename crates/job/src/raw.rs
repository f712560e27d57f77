//! The job file exactly as written, before validation. Every table refuses
//! unknown keys so a misspelt key is an error rather than a silent default.
//! Values that need range checks keep their position (`Spanned`) so the
//! error can point at them.

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
    pub job: RawHeader,
    pub tasks: Option<Spanned<RawTasks>>,
    pub video: Option<Spanned<RawVideo>>,
    #[serde(default)]
    pub inputs: RawInputs,
    #[serde(default)]
    pub outputs: RawOutputs,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub market: RawMarket,
    pub verify: Option<Spanned<RawVerify>>,
    pub approval: Option<RawApproval>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApproval {
    pub window_s: Spanned<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeader {
    pub name: Option<Spanned<String>>,
    pub runtime: Option<Spanned<String>>,
    pub module: Spanned<String>,
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTasks {
    pub range: Option<Spanned<Vec<u64>>>,
    pub list: Option<Spanned<Vec<u64>>>,
    /// Flamenco's frame syntax: `"1-10, 15"`.
    pub frames: Option<Spanned<String>>,
    /// Each frame split into tiles: `"2x2"`.
    pub tiles: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVideo {
    pub input: Option<Spanned<String>>,
    pub segment_s: Option<Spanned<u64>>,
    pub renditions: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInputs {
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutputs {
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub fuel: Option<Spanned<u64>>,
    pub memory_mib: Option<Spanned<u64>>,
    pub wall_time_s: Option<Spanned<u64>>,
    pub output_mib: Option<Spanned<u64>>,
    pub stdout_kib: Option<Spanned<u64>>,
    pub gpus: Option<Spanned<u64>>,
    pub gpu_memory_mib: Option<Spanned<u64>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMarket {
    pub budget_ucairn: Option<Spanned<u64>>,
    pub price_max_ucairn_per_gfuel: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerify {
    pub policy: Spanned<String>,
    pub replicas: Option<Spanned<u64>>,
    pub probability: Option<Spanned<f64>>,
    pub confidence: Option<Spanned<f64>>,
}
