//! `cairn bench media`: the seed's media workloads with the real tools.
//!
//! Livepeer's: a generated clip is encoded into the ladder three ways, in
//! one run: by one ffmpeg process doing the whole ladder (what a user
//! would run on this machine), by the video job's segment tasks run
//! locally (`cairn run --local`: what splitting into segments costs), and
//! through a devnet of N providers (what the market, the sandbox and
//! verification add).
//!
//! Render Network's: the Blender example's frames rendered directly by
//! Blender (as many at once as the machine has cores, one thread each, as
//! the job's tasks run), as a job run locally, and through the same
//! devnets; then split into tiles, locally and through the first devnet.

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
    /// Providers that encode each segment or render each frame (a tool
    /// job is verified by at least two).
    #[arg(long, default_value_t = 2)]
    pub replicas: u32,
    /// Frames of the Blender example to render (0: none, and Blender is
    /// not needed).
    #[arg(long, default_value_t = 12)]
    pub frames: u32,
    /// The same frames again, each split into tiles (`COLUMNSxROWS`), run
    /// locally and on the first devnet; their joined frames must be the
    /// whole frames' bits ("none": not measured).
    #[arg(long, default_value = "2x2")]
    pub tiles: String,
    /// The tiled frames once more on the first devnet, each tile rendered
    /// once and re-rendered elsewhere with this probability (`policy =
    /// "spot"`: crop checks on the tile grid) rather than by every replica
    /// (0: not measured).
    #[arg(long, default_value_t = 0.25)]
    pub spot: f64,
    /// Seconds of a live stream, produced in real time, that a devnet of
    /// three providers transcodes into the ladder as it goes (`cairn job
    /// stream`, verified as `--spot` says); then once more while one of
    /// the providers is killed half way (0: not measured).
    #[arg(long, default_value_t = 20)]
    pub live_seconds: u32,
}

/// Providers of the live stream's devnet: Livepeer's case as the issue
/// measures it.
const LIVE_PROVIDERS: u64 = 3;

/// The Blender example, which the frames half renders.
const BLENDER_JOB: &str = include_str!("../../../../examples/blender/job.toml");
const BLENDER_SCENE: &str = include_str!("../../../../examples/blender/scene.py");

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
    if args.tiles != "none" {
        cairn_job::tiles::Grid::parse(&args.tiles)
            .map_err(|reason| anyhow::anyhow!("--tiles: {reason}"))?;
    }
    if args.frames > 0 && which("blender").is_none() {
        bail!("blender is not installed (apt-get install blender), or pass --frames 0");
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

    let one = one_process(&clip, &scratch.path().join("one"))?;
    figures.push(figure("one_ffmpeg_ladder".into(), one.as_secs_f64(), "s"));

    let local_wall = run_locally(&job, &scratch.path().join("local"))?;
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
        let out = scratch.path().join(format!("out-{providers}"));
        // As the local run: split, encoded, fetched and assembled.
        let (wall, _) = on_devnet(
            &scratch.path().join(format!("devnet-{providers}")),
            providers,
            tasks,
            &out,
            || crate::video::load(&job, &[]),
        )?;
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
        figures.extend(market_cost(
            "devnet",
            providers,
            wall,
            local_wall,
            tasks,
            args.replicas,
        ));
    }
    if args.frames > 0 {
        figures.extend(frames(args, &scratch.path().join("frames"))?);
    }
    if args.live_seconds > 0 {
        figures.extend(live(args, &scratch.path().join("live"))?);
    }
    Ok(figures)
}

/// Livepeer's live case: a stream of `args.live_seconds` produced in real
/// time (ffmpeg's test source, a keyframe a second) piped into a stream
/// job of Livepeer's ladder on a devnet of three providers. Each segment's
/// latency is from when it was cut to when every rendition of it was
/// listed; its p99 against the segment's length is the figure Livepeer's
/// broadcasters care about. Then again, with one provider killed half way.
fn live(args: &MediaArgs, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    std::fs::create_dir_all(dir)?;
    let job = dir.join("live.toml");
    let segment_s = cairn_job::video::SEGMENT_S_DEFAULT;
    // Livepeer checks a share of segments, not all: so does this stream
    // with `--spot` (each task run once, and again elsewhere with that
    // probability); `--spot 0` replicates every one.
    let verify = match args.spot {
        0.0 => format!("policy = \"replicate\"\nreplicas = {}", args.replicas),
        p => format!("policy = \"spot\"\nprobability = {p}"),
    };
    std::fs::write(
        &job,
        format!(
            "[job]\nname = \"live\"\nruntime = \"tool\"\nmodule = \"ffmpeg@5\"\n\
             [video]\nsegment_s = {segment_s}\n\
             [market]\nbudget_ucairn = 1_000_000_000\nprice_max_ucairn_per_gfuel = 200\n\
             [verify]\n{verify}\n"
        ),
    )?;
    let devnet = dir.join("devnet");
    with_devnet_flags(&devnet, LIVE_PROVIDERS, &["--tools"], |node, _| {
        let mut figures = Vec::new();
        for (prefix, lose) in [("live", false), ("live_provider_lost", true)] {
            // The last provider, killed half way through the stream.
            let victim = lose
                .then(|| provider_pid(&devnet, LIVE_PROVIDERS - 1))
                .transpose()?;
            let out = dir.join(prefix);
            let streamed = stream_generated(node, &job, args.live_seconds, &out, victim)?;
            if streamed.state != api::JobState::Done || !streamed.split_ok {
                bail!("the live stream ended {:?}", streamed.state);
            }
            if streamed.latencies.len() != streamed.segments {
                bail!(
                    "{} of {} segments were listed while the stream ran",
                    streamed.latencies.len(),
                    streamed.segments
                );
            }
            let mut latencies = streamed.latencies;
            let p50 = super::percentile(&mut latencies, 0.5);
            let p99 = super::percentile(&mut latencies, 0.99);
            let max = latencies.iter().copied().max().unwrap_or_default();
            let segment = Duration::from_secs(u64::from(segment_s));
            figures.push(figure(
                format!("{prefix}_segments"),
                streamed.segments as f64,
                "segments",
            ));
            figures.push(figure(
                format!("{prefix}_latency_p50"),
                super::ms(p50),
                "ms",
            ));
            figures.push(figure(
                format!("{prefix}_latency_p99"),
                super::ms(p99),
                "ms",
            ));
            figures.push(figure(
                format!("{prefix}_latency_max"),
                super::ms(max),
                "ms",
            ));
            figures.push(figure(
                format!("{prefix}_p99_over_segment"),
                super::ratio(p99, segment),
                "ratio",
            ));
        }
        Ok(figures)
    })
}

/// The process id of provider `index` of the devnet in `dir`.
fn provider_pid(dir: &Path, index: u64) -> anyhow::Result<u32> {
    let list: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("devnet.json"))?)?;
    let name = format!("p{index}");
    list["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == name.as_str()))
        .and_then(|n| n["pid"].as_u64())
        .map(|pid| pid as u32)
        .with_context(|| format!("devnet.json lists no {name}"))
}

/// Streams `seconds` of ffmpeg's test source, produced in real time, as
/// a camera would, through the stream job file `job`; kills `victim` (a
/// provider's process) half way.
fn stream_generated(
    node: &cairn_client::Client,
    job: &Path,
    seconds: u32,
    out: &Path,
    victim: Option<u32>,
) -> anyhow::Result<crate::stream::Streamed> {
    let mut source = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "30"])
        .args(["-c:a", "aac", "-f", "mpegts", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting ffmpeg's test source")?;
    let pipe = source.stdout.take().context("ffmpeg's output")?;
    let pipe = std::fs::File::from(std::os::fd::OwnedFd::from(pipe));
    let killer = victim.map(|pid| {
        let half = Duration::from_secs(u64::from(seconds)) / 2;
        std::thread::spawn(move || {
            // The stream's own clock: half way through it.
            std::thread::sleep(half);
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        })
    });
    let streamed = crate::stream::run(node, job, &[], pipe, Some(out), |_| {});
    let _ = source.kill();
    let _ = source.wait();
    if let Some(killer) = killer {
        let _ = killer.join();
    }
    streamed
}

/// A figure of this suite.
fn figure(metric: String, value: f64, unit: &'static str) -> Figure {
    Figure {
        suite: "media",
        metric,
        value,
        unit,
    }
}

/// Runs `job` locally (`cairn run --local`), its outputs into `out`: its
/// wall time.
fn run_locally(job: &Path, out: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let local = Command::new(std::env::current_exe()?)
        .arg("run")
        .arg(job)
        .args(["--local", "--json", "-o"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let wall = started.elapsed();
    if !local.status.success() {
        bail!(
            "the local run of {} failed: {}",
            job.display(),
            String::from_utf8_lossy(&local.stderr)
        );
    }
    Ok(wall)
}

/// Runs the job `load` gives on a devnet of `providers` with tools, to its
/// results in `out`: its wall time, from submission (splitting a clip
/// included) to the last file fetched, and the executions it took.
fn on_devnet(
    dir: &Path,
    providers: u64,
    tasks: f64,
    out: &Path,
    load: impl FnOnce() -> anyhow::Result<crate::video::Loaded>,
) -> anyhow::Result<(Duration, u64)> {
    with_devnet_flags(dir, providers, &["--tools"], |node, _| {
        let started = Instant::now();
        // Loaded (a clip split) as part of the run; its segments live
        // until the job is submitted.
        let loaded = load()?;
        let id = node.submit_job(&loaded.job)?;
        let status: api::JobStatus = wait_done(node, &id, Duration::from_millis(100))?;
        if status.total as f64 != tasks {
            bail!("the job has {} tasks, not {tasks}", status.total);
        }
        crate::job::results(node, &id, Some(out.to_path_buf()))?;
        Ok((started.elapsed(), status.executions))
    })
}

/// What a devnet's run costs beyond its work: the devnet runs every task
/// `replicas` times, on the same cores as the local run, so its wall time
/// against the local run's times the replicas is what the market, the
/// sandbox per provider and verification add, and the difference per
/// execution.
fn market_cost(
    prefix: &str,
    providers: u64,
    wall: Duration,
    local: Duration,
    tasks: f64,
    replicas: u32,
) -> Vec<Figure> {
    let executions = local.mul_f64(f64::from(replicas));
    vec![
        figure(
            format!("{prefix}_{providers}_over_local_executions"),
            super::ratio(wall, executions),
            "ratio",
        ),
        figure(
            format!("{prefix}_{providers}_overhead_per_execution"),
            (wall.as_secs_f64() - executions.as_secs_f64()) * 1e3 / (tasks * f64::from(replicas)),
            "ms",
        ),
    ]
}

/// Render Network's half: the Blender example's first `args.frames`
/// frames rendered directly, as a local job, and through each devnet.
fn frames(args: &MediaArgs, dir: &Path) -> anyhow::Result<Vec<Figure>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("scene.py"), BLENDER_SCENE)?;
    let job = dir.join("job.toml");
    let text = BLENDER_JOB
        .replace(
            "frames = \"1-12\"",
            &format!("frames = \"1-{}\"", args.frames),
        )
        .replace("replicas = 2", &format!("replicas = {}", args.replicas));
    if !text.contains(&format!("frames = \"1-{}\"", args.frames)) {
        bail!("the Blender example no longer names its frames as this benchmark expects");
    }
    std::fs::write(&job, &text)?;
    let tasks = f64::from(args.frames);
    let mut figures = vec![figure("blender_frames".into(), tasks, "frames")];

    let direct = render_directly(dir, args.frames)?;
    figures.push(figure("blender_direct".into(), direct.as_secs_f64(), "s"));

    let local_wall = run_locally(&job, &dir.join("local"))?;
    figures.push(figure(
        "blender_local".into(),
        local_wall.as_secs_f64(),
        "s",
    ));
    figures.push(figure(
        "blender_local_over_direct".into(),
        super::ratio(local_wall, direct),
        "ratio",
    ));
    for &providers in &args.providers {
        let out = dir.join(format!("out-{providers}"));
        let (wall, _) = on_devnet(
            &dir.join(format!("devnet-{providers}")),
            providers,
            tasks,
            &out,
            || crate::video::load(&job, &[]),
        )?;
        same_frames(dir, &out, args.frames, "the devnet's")?;
        figures.push(figure(
            format!("blender_devnet_{providers}"),
            wall.as_secs_f64(),
            "s",
        ));
        figures.push(figure(
            format!("blender_devnet_{providers}_frames_per_minute"),
            tasks * 60.0 / wall.as_secs_f64(),
            "frames/min",
        ));
        figures.extend(market_cost(
            "blender_devnet",
            providers,
            wall,
            local_wall,
            tasks,
            args.replicas,
        ));
    }
    if args.tiles != "none" {
        figures.extend(tiled(args, dir, &text, local_wall)?);
    }
    Ok(figures)
}

/// The same frames split into tiles: run locally and on the first devnet,
/// replicated and then spot-checked, each joined frame the local whole
/// frame's bits, and what tiles cost against whole frames (every tile
/// loads the scene again) and checks against the frames' own work.
fn tiled(args: &MediaArgs, dir: &Path, text: &str, whole: Duration) -> anyhow::Result<Vec<Figure>> {
    let job = dir.join("tiled.toml");
    let tiled = text.replace("# tiles = \"2x2\"", &format!("tiles = \"{}\"", args.tiles));
    if tiled == text {
        bail!("the Blender example no longer offers its tiles line as this benchmark expects");
    }
    std::fs::write(&job, &tiled)?;
    let local = run_locally(&job, &dir.join("tiled-local"))?;
    same_frames(
        dir,
        &dir.join("tiled-local"),
        args.frames,
        "the tiled local run's",
    )?;
    let mut figures = vec![
        figure("blender_tiled_local".into(), local.as_secs_f64(), "s"),
        figure(
            "blender_tiled_local_over_whole".into(),
            super::ratio(local, whole),
            "ratio",
        ),
    ];
    let Some(&providers) = args.providers.first() else {
        return Ok(figures);
    };
    let replicated = format!("policy = \"replicate\"\nreplicas = {}", args.replicas);
    let spot = format!("policy = \"spot\"\nprobability = {:?}", args.spot);
    if !tiled.contains(&replicated) {
        bail!("the Blender example no longer names its verify policy as this benchmark expects");
    }
    let runs = [("tiled", tiled.clone())]
        .into_iter()
        .chain((args.spot > 0.0).then(|| ("tiled_spot", tiled.replace(&replicated, &spot))));
    for (name, text) in runs {
        let job = dir.join(format!("{name}.toml"));
        std::fs::write(&job, text)?;
        let loaded = crate::video::load(&job, &[])?;
        let tasks = loaded.job.tasks().len() as f64;
        let out = dir.join(format!("{name}-out-{providers}"));
        let (wall, executions) = on_devnet(
            &dir.join(format!("{name}-devnet-{providers}")),
            providers,
            tasks,
            &out,
            || Ok(loaded),
        )?;
        same_frames(dir, &out, args.frames, &format!("the {name} devnet's"))?;
        figures.push(figure(
            format!("blender_{name}_devnet_{providers}"),
            wall.as_secs_f64(),
            "s",
        ));
        figures.push(figure(
            format!("blender_{name}_devnet_{providers}_frames_per_minute"),
            f64::from(args.frames) * 60.0 / wall.as_secs_f64(),
            "frames/min",
        ));
        // What checking cost, as a share of the frames' own work: the
        // executions beyond one a tile (a replicated job's replicas, a
        // spot-checked one's checks and votes).
        figures.push(figure(
            format!("blender_{name}_check_share"),
            (executions as f64 - tasks) / tasks,
            "ratio",
        ));
    }
    Ok(figures)
}

/// Checks that the first `frames` frames in `out` (`what`'s) are byte for
/// byte the whole-frame local run's, in `dir/local`.
fn same_frames(dir: &Path, out: &Path, frames: u32, what: &str) -> anyhow::Result<()> {
    for frame in 1..=frames {
        let name = format!("frame-{frame:04}.bmp");
        let got = std::fs::read(out.join(&name)).with_context(|| format!("{what} {name}"))?;
        if got != std::fs::read(dir.join("local").join(&name))? {
            bail!("{what} {name} differs from the local run's whole frame");
        }
    }
    Ok(())
}

/// The frames rendered by Blender itself, no sandbox and no market: as
/// many at once as the machine has cores, one thread each (as the job's
/// tasks and a local run's workers are).
fn render_directly(dir: &Path, frames: u32) -> anyhow::Result<Duration> {
    let out = dir.join("direct");
    std::fs::create_dir_all(&out)?;
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let next = std::sync::atomic::AtomicU32::new(1);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let render = || -> anyhow::Result<()> {
            loop {
                let frame = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if frame > frames {
                    return Ok(());
                }
                let scene = dir.join("scene.py");
                let image = out.join(format!("frame-{frame:04}.bmp"));
                let output = Command::new("blender")
                    .args(super::blender_frame_args(
                        &scene.to_string_lossy(),
                        frame,
                        &image.to_string_lossy(),
                    ))
                    .stdin(Stdio::null())
                    .output()
                    .context("running blender")?;
                if !output.status.success() {
                    bail!(
                        "blender could not render frame {frame}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
            }
        };
        let workers: Vec<_> = (0..workers).map(|_| scope.spawn(render)).collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("a render thread panicked"))?
        })
    })?;
    Ok(started.elapsed())
}

/// The path of `program` on `PATH`, if it is there.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
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
