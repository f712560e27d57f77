//! `cairn bench media`: Livepeer's workload. A generated clip is encoded
//! into the ladder three ways, in one run: by one ffmpeg process doing the
//! whole ladder (what a user would run on this machine), by the video
//! job's segment tasks run locally (`cairn run --local`: what splitting
//! into segments costs), and through a devnet of N providers (what the
//! market, the sandbox and verification add).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_api as api;

use super::Figure;
use super::net::{wait_done, with_devnet_flags};

/// Arguments of `cairn bench media`.
#[derive(clap::Args)]
pub struct MediaArgs {
    /// Print one JSON object per figure (`suite`, `metric`, `value`, `unit`).
    #[arg(long)]
    pub json: bool,
    /// Seconds of the generated clip.
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
    /// Devnet sizes to measure, in providers (at least `--replicas`: the
    /// replicas of a task run on different providers).
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    pub providers: Vec<u64>,
    /// Providers that encode each segment (a tool job is verified by at
    /// least two).
    #[arg(long, default_value_t = 2)]
    pub replicas: u32,
}

pub fn media(args: &MediaArgs) -> anyhow::Result<Vec<Figure>> {
    if args.seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    if let Some(few) = args
        .providers
        .iter()
        .find(|&&n| n < u64::from(args.replicas))
    {
        bail!(
            "a devnet of {few} cannot run {} replicas of a task on different providers",
            args.replicas
        );
    }
    let scratch = tempfile::tempdir()?;
    let clip = scratch.path().join("clip.mp4");
    // ffmpeg's test sources: nothing downloaded.
    cairn_exec::tool::video::generate_clip(&clip, args.seconds, 640, 360)?;
    let job = scratch.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"ladder\"\nruntime = \"tool\"\nmodule = \"ffmpeg@5\"\n\
             [video]\ninput = \"clip.mp4\"\n\
             [market]\nbudget_ucairn = 1_000_000_000\nprice_max_ucairn_per_gfuel = 200\n\
             [verify]\npolicy = \"replicate\"\nreplicas = {}\n",
            args.replicas
        ),
    )?;
    let mut figures = Vec::new();
    let figure = |metric: String, value: f64, unit: &'static str| Figure {
        suite: "media",
        metric,
        value,
        unit,
    };

    let one = one_process(&clip, &scratch.path().join("one"))?;
    figures.push(figure("one_ffmpeg_ladder".into(), one.as_secs_f64(), "s"));

    let started = Instant::now();
    let local = Command::new(std::env::current_exe()?)
        .arg("run")
        .arg(&job)
        .args(["--local", "--json", "-o"])
        .arg(scratch.path().join("local"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let local_wall = started.elapsed();
    if !local.status.success() {
        bail!(
            "the local run failed: {}",
            String::from_utf8_lossy(&local.stderr)
        );
    }
    figures.push(figure(
        "segments_local".into(),
        local_wall.as_secs_f64(),
        "s",
    ));
    figures.push(figure(
        "segments_local_over_one_ffmpeg".into(),
        super::ratio(local_wall, one),
        "ratio",
    ));

    let tasks = crate::video::load(&job, &[])?.job.tasks().len() as f64;
    figures.push(figure("tasks".into(), tasks, "tasks"));
    for &providers in &args.providers {
        let dir = scratch.path().join(format!("devnet-{providers}"));
        let out = scratch.path().join(format!("out-{providers}"));
        // As the local run: split, encoded, fetched and assembled.
        let wall = with_devnet_flags(&dir, providers, &["--tools"], |node, _| {
            let started = Instant::now();
            let loaded = crate::video::load(&job, &[])?;
            let id = node.submit_job(&loaded.job)?;
            let status: api::JobStatus = wait_done(node, &id, Duration::from_millis(100))?;
            if status.total as f64 != tasks {
                bail!("the job has {} tasks, not {tasks}", status.total);
            }
            crate::job::results(node, &id, Some(out.clone()))?;
            Ok(started.elapsed())
        })?;
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("cairn-results.json"))?)?;
        if summary["hls"]["master"] != "master.m3u8" {
            bail!("the devnet's results were not assembled into playlists");
        }
        figures.push(figure(
            format!("devnet_{providers}_ladder"),
            wall.as_secs_f64(),
            "s",
        ));
        figures.push(figure(
            format!("devnet_{providers}_speedup_over_one_ffmpeg"),
            super::ratio(one, wall),
            "ratio",
        ));
        // The devnet runs every task `replicas` times, on the same two
        // cores as the local run: what the market, the sandbox per
        // provider and verification add to that much work.
        let executions = local_wall.mul_f64(f64::from(args.replicas));
        figures.push(figure(
            format!("devnet_{providers}_over_local_executions"),
            super::ratio(wall, executions),
            "ratio",
        ));
        figures.push(figure(
            format!("devnet_{providers}_overhead_per_execution"),
            (wall.as_secs_f64() - executions.as_secs_f64()) * 1e3
                / (tasks * f64::from(args.replicas)),
            "ms",
        ));
    }
    Ok(figures)
}

/// One ffmpeg process encoding `clip` into the whole ladder, as HLS, with
/// the video job's settings and x264's own choice of threads.
fn one_process(clip: &Path, out: &Path) -> anyhow::Result<Duration> {
    std::fs::create_dir_all(out)?;
    let mut command = Command::new("ffmpeg");
    command
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(clip);
    // The video job's default ladder, with its x264 settings except the
    // thread count, which one process chooses for itself.
    let ladder = cairn_job::video::LADDER
        .iter()
        .map(|r| cairn_job::Rendition::parse(r).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let split: Vec<String> = (0..ladder.len()).map(|i| format!("[v{i}]")).collect();
    let mut graph = format!("[0:v]split={}{}", ladder.len(), split.concat());
    for (i, r) in ladder.iter().enumerate() {
        graph.push_str(&format!(";[v{i}]scale=-2:{}[s{i}]", r.height));
    }
    command.args(["-filter_complex", &graph]);
    for (i, r) in ladder.iter().enumerate() {
        let kbps = r.kbps;
        command
            .args(["-map", &format!("[s{i}]"), "-map", "0:a:0?"])
            .args(["-r", &r.fps.to_string()])
            .args(["-c:v", "libx264", "-preset", "veryfast"])
            .args(["-b:v", &format!("{kbps}k"), "-maxrate", &format!("{kbps}k")])
            .args(["-bufsize", &format!("{}k", kbps * 2)])
            .args([
                "-g",
                &(r.fps * cairn_job::video::SEGMENT_S_DEFAULT).to_string(),
            ])
            .args(["-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac"])
            .args([
                "-b:a",
                &format!("{}k", cairn_job::video::AUDIO_KBPS),
                "-ac",
                "2",
            ])
            .args(["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"])
            .arg(out.join(format!("{r}.m3u8")));
    }
    let started = Instant::now();
    let output = command
        .output()
        .context("running ffmpeg (the media benchmark needs it)")?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "one ffmpeg process could not encode the ladder: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(took)
}
