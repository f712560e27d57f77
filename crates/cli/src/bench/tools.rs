//! `cairn bench tools`: what the sandbox costs an installed tool. The same
//! command runs directly and under the tool runtime (bubblewrap, rlimits,
//! watchdog, outputs hashed), alternately, and the figures are medians and
//! their ratio, taken in one run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_exec::{Limits, Outcome, Runtime as _, Task, ToolConfig, ToolRuntime};

use super::Figure;

/// The Blender example's scene script: one of its frames is the render
/// measured.
const BLENDER_SCENE: &str = include_str!("../../../../examples/blender/scene.py");

/// Arguments of `cairn bench tools`.
#[derive(clap::Args)]
pub struct ToolsArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    pub(super) json: bool,
    /// Runs of each command, each way.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
}

/// One command, with `/input` and `/output` standing for its folders.
struct Case {
    metric: &'static str,
    tool: &'static str,
    args: Vec<String>,
}

pub(super) fn tools(args: &ToolsArgs) -> anyhow::Result<Vec<Figure>> {
    let runtime = ToolRuntime::new(ToolConfig::default())
        .context("the tool runtime needs bubblewrap (apt-get install bubblewrap)")?;
    let work = tempfile::tempdir()?;
    let input = work.path().join("input");
    std::fs::create_dir_all(&input)?;
    std::fs::write(input.join("scene.py"), BLENDER_SCENE)?;
    let has = |name: &str| runtime.tools().iter().any(|t| t.name == name);
    if !has("ffmpeg") {
        bail!("ffmpeg is not installed (apt-get install ffmpeg)");
    }
    // Four seconds of ffmpeg's test picture, the transcoding example's
    // input, made here so the figure needs nothing from a checkout.
    let made = Command::new("/usr/bin/ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-f", "lavfi"])
        .args(["-i", "testsrc=size=640x360:rate=30", "-t", "4"])
        .args(["-c:v", "libx264", "-crf", "30", "-g", "60", "-threads", "1"])
        .arg(input.join("clip.mp4"))
        .status()?;
    if !made.success() {
        bail!("ffmpeg could not make the input clip");
    }
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
    let mut cases = vec![
        Case {
            metric: "start",
            tool: "ffmpeg",
            args: strings(&["-hide_banner", "-version"]),
        },
        Case {
            metric: "transcode_720p",
            tool: "ffmpeg",
            args: strings(&[
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                "/input/clip.mp4",
                "-vf",
                "scale=-2:720",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-threads",
                "1",
                "-y",
                "/output/out.mp4",
            ]),
        },
    ];
    if has("blender") {
        cases.push(Case {
            metric: "blender_frame",
            tool: "blender",
            args: super::blender_frame_args("/input/scene.py", 5, "/output/frame.bmp"),
        });
    }

    let mut figures = Vec::new();
    for case in &cases {
        let module = runtime.load(case.tool.as_bytes())?;
        let (mut direct, mut sandboxed) = (Vec::new(), Vec::new());
        for run in 0..args.runs {
            let output = work.path().join(format!("{}-{run}", case.metric));
            std::fs::create_dir_all(output.join("direct"))?;
            std::fs::create_dir_all(output.join("sandboxed"))?;
            direct.push(run_direct(case, &input, &output.join("direct"))?);
            let started = Instant::now();
            let result = runtime.run(&Task {
                module,
                args: &case.args,
                seed: [0; 32],
                input_dir: Some(&input),
                output_dir: &output.join("sandboxed"),
                expected_outputs: &[],
                limits: Limits {
                    fuel: 1,
                    memory_bytes: 4 << 30,
                    wall_time: Duration::from_secs(600),
                    output_bytes: 256 << 20,
                    stdout_bytes: 64 << 10,
                    gpus: 0,
                    gpu_memory_mib: 0,
                },
            })?;
            sandboxed.push(started.elapsed());
            if result.outcome != Outcome::Exited(0) {
                bail!("{} in the sandbox: {}", case.metric, result.outcome);
            }
        }
        let (direct, sandboxed) = (median(direct), median(sandboxed));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        figures.push(Figure {
            suite: "tools",
            metric: format!("{}_direct", case.metric),
            value: ms(direct),
            unit: "ms",
        });
        figures.push(Figure {
            suite: "tools",
            metric: format!("{}_sandboxed", case.metric),
            value: ms(sandboxed),
            unit: "ms",
        });
        figures.push(Figure {
            suite: "tools",
            metric: format!("{}_sandboxed_over_direct", case.metric),
            value: ms(sandboxed) / ms(direct).max(1e-9),
            unit: "x",
        });
    }
    Ok(figures)
}

/// Runs `case` without the sandbox, its folders given by their host paths.
fn run_direct(case: &Case, input: &Path, output: &Path) -> anyhow::Result<Duration> {
    let args: Vec<String> = case
        .args
        .iter()
        .map(|a| {
            a.replace("/input", &input.display().to_string())
                .replace("/output", &output.display().to_string())
        })
        .collect();
    let started = Instant::now();
    let status = Command::new(format!("/usr/bin/{}", case.tool))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let took = started.elapsed();
    if !status.success() {
        bail!("{} without the sandbox: {status}", case.metric);
    }
    Ok(took)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
