//! `cairn job stream`: a live video transcoded as it is produced, as
//! Livepeer's broadcasters use it. The stream comes in on a pipe (or a
//! FIFO); ffmpeg cuts it at its keyframes into segments of about the job
//! file's `segment_s` as it goes; each segment is uploaded and its
//! renditions added to the running job (`POST /v1/jobs/{id}/tasks`), where
//! the leased providers pull them; each rendition's segment comes back
//! verified and is listed in that rendition's live playlist, in order.
//! When the stream ends the job is ended (`POST /v1/jobs/{id}/end`), paid
//! per segment delivered, and its playlists written whole and checked as
//! a clip's are.

use std::collections::BTreeSet;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cairn_api as api;
use cairn_client::Client;
use cairn_exec::tool::ToolConfig;
use cairn_exec::tool::video::{LiveSegments, VideoTools, live_master, live_playlist};
use cairn_job::video::{Picture, Segment, Video, segment_output};
use cairn_job::{Job, TaskSpec};
use cairn_wire::ContentId;

/// The longest stream: ffmpeg's segmenter is stopped after it.
const STREAM_TIME_MAX: Duration = Duration::from_secs(24 * 3600);
/// How often the segmenter's list is looked at while nothing else comes.
const LOOK_EVERY: Duration = Duration::from_millis(50);
/// A live picture's size is not known when the job is submitted: its
/// tasks' work is reckoned against a 1080p picture of this aspect, and a
/// segment may run this many times `segment_s` (a keyframe comes late).
const ASSUMED_PICTURE: Picture = Picture {
    width: 1920,
    height: 1080,
};
const SEGMENT_STRETCH: f64 = 2.0;

/// Arguments of `cairn job stream`.
#[derive(clap::Args)]
pub struct StreamArgs {
    /// The job file: a `[video]` without an input (its ladder, segment
    /// length, limits, market and verification).
    job: PathBuf,
    /// Where the stream comes from: `-` for standard input, or a FIFO or
    /// file read to its end (MPEG-TS, or any container ffmpeg reads from
    /// a pipe).
    #[arg(long, default_value = "-")]
    from: String,
    /// Where the playlists and segments go [default: out/<job name>].
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Also send the module found in this folder (by default only files
    /// in the job file's own folder are sent).
    #[arg(long, value_name = "DIR")]
    allow_inputs_from: Vec<PathBuf>,
}

/// One segment of the stream, from when it was cut to when every
/// rendition of it was listed.
struct Cut {
    duration_s: f64,
    /// Its tasks, one per rendition, in the ladder's order.
    tasks: std::ops::Range<u32>,
    cut: Instant,
    listed: Option<Duration>,
}

pub fn stream(node: &Client, args: StreamArgs) -> anyhow::Result<ExitCode> {
    let source = open_source(&args.from)?;
    eprintln!("reading the stream from {}", args.from);
    let streamed = run(
        node,
        &args.job,
        &args.allow_inputs_from,
        source,
        args.out.as_deref(),
        |id| println!("{id}"),
    )?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut latencies = streamed.latencies.clone();
    let (p50, p99) = (
        ms(crate::bench::percentile(&mut latencies, 0.5)),
        ms(crate::bench::percentile(&mut latencies, 0.99)),
    );
    if args.json {
        let summary = serde_json::json!({
            "job": streamed.id,
            "state": streamed.state,
            "segments": streamed.segments,
            "segments_listed_live": streamed.latencies.len(),
            "segment_s": streamed.segment_s,
            "latency_ms": {
                "p50": p50,
                "p99": p99,
                "max": ms(streamed.latencies.iter().copied().max().unwrap_or_default()),
            },
            "out": streamed.out,
        });
        println!("{summary}");
    } else {
        println!("{}", streamed.fetched);
        println!(
            "{} segments, {} listed live; segment to playlist p50 {p50:.0} ms, p99 {p99:.0} ms \
             (segments of about {} s)",
            streamed.segments,
            streamed.latencies.len(),
            streamed.segment_s
        );
    }
    Ok(match (streamed.state, streamed.split_ok) {
        (api::JobState::Done, true) => ExitCode::SUCCESS,
        _ => ExitCode::from(crate::EXIT_TASKS_FAILED),
    })
}

/// What a stream did.
pub struct Streamed {
    /// Its job.
    pub id: ContentId,
    /// The job's state at the end.
    pub state: api::JobState,
    /// Segments cut.
    pub segments: usize,
    /// From cut to listed, for each segment listed while the stream ran.
    pub latencies: Vec<Duration>,
    /// About how long a segment is.
    pub segment_s: u32,
    /// Whether the stream was read to its end without error.
    pub split_ok: bool,
    /// Where the playlists are.
    pub out: PathBuf,
    /// What fetching the job's results whole said.
    pub fetched: String,
}

/// Streams `source` through the job file at `path` (its `[video]` without
/// an input) on `node`, into `out` [default: out/<job name>];
/// `submitted` is told the job's id as soon as there is one.
pub fn run(
    node: &Client,
    path: &Path,
    allowed: &[PathBuf],
    source: std::fs::File,
    out: Option<&Path>,
    submitted: impl FnOnce(&ContentId),
) -> anyhow::Result<Streamed> {
    let job =
        Job::load_allowing(path, &cairn_workloads::names(), allowed).map_err(anyhow::Error::msg)?;
    let Some(video) = job.video.clone() else {
        bail!("{}: a stream is a [video] job", path.display());
    };
    if video.input.is_some() {
        bail!(
            "{}: [video] names an input: a clip is sent whole with `cairn job submit`; a live \
             stream's job file names none",
            path.display()
        );
    }
    let out = match out {
        Some(out) => out.to_path_buf(),
        None => crate::default_out_dir(&job.name),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let tools = VideoTools::new(&ToolConfig::default())?;

    // The job goes up for auction before the first segment is cut, so
    // providers are leased by the time it is.
    let mut limits = job.limits;
    if !video.fuel_declared {
        let longest = f64::from(video.segment_s) * SEGMENT_STRETCH;
        limits.fuel = video
            .renditions
            .iter()
            .map(|r| r.work(longest, ASSUMED_PICTURE))
            .max()
            .unwrap_or(limits.fuel);
    }
    let (module, inputs) = node.upload_job(&job)?;
    let mut submission = cairn_client::submission(&job, module, inputs);
    submission.tasks = Vec::new();
    submission.limits.fuel = limits.fuel;
    submission.stream = Some(api::SubmittedStream {
        tasks_at_once: video.renditions.len() as u32,
    });
    let id = node.submit(&submission)?;
    submitted(&id);
    eprintln!(
        "stream {id}: segments of about {} s into {} renditions",
        video.segment_s,
        video.renditions.len()
    );

    let segments_dir = tempfile::Builder::new()
        .prefix("cairn-stream-")
        .tempdir()
        .context("a folder for the stream's segments")?;
    let (split_tx, split_rx) = mpsc::channel();
    let split_into = segments_dir.path().to_path_buf();
    let segment_s = video.segment_s;
    std::thread::spawn(move || {
        let split = tools.split_live(source, segment_s, &split_into, STREAM_TIME_MAX);
        let _ = split_tx.send(split);
    });
    let (status_tx, status_rx) = mpsc::channel::<api::JobStatus>();
    let follower = node.clone();
    std::thread::spawn(move || {
        let _ = follower.follow(&id, |status| {
            let _ = status_tx.send(status.clone());
        });
    });

    let mut live = Live {
        node,
        id,
        video: &video,
        job: &job,
        limits,
        out: &out,
        tools: VideoTools::new(&ToolConfig::default())?,
        picture: None,
        cuts: Vec::new(),
        fetched: BTreeSet::new(),
        from: 0,
        listed: 0,
    };
    let mut list = LiveSegments::new(segments_dir.path());
    let mut split_done = None;
    let mut ended = false;
    // Why the node took no more segments (a stream at its task cap, or
    // ended for want of them): the stream ends there.
    let mut refused: Option<String> = None;
    let started = Instant::now();
    let mut drive = || -> anyhow::Result<api::JobStatus> {
        loop {
            let status = match status_rx.recv_timeout(LOOK_EVERY) {
                Ok(status) => Some(status),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The follower stops when the job is over, or when the
                    // node cannot be followed.
                    let status = node.job(&id)?;
                    if !status.state.is_over() {
                        bail!("the job's events stopped before it was over");
                    }
                    return Ok(status);
                }
            };
            if refused.is_none() {
                for segment in list.finished()? {
                    live.add_or_refuse(segment, &mut refused)?;
                    if refused.is_some() {
                        break;
                    }
                }
            }
            if split_done.is_none()
                && let Ok(split) = split_rx.try_recv()
            {
                // The last segments are listed when ffmpeg exits.
                if refused.is_none() {
                    for segment in list.finished()? {
                        live.add_or_refuse(segment, &mut refused)?;
                        if refused.is_some() {
                            break;
                        }
                    }
                }
                if let Err(e) = &split {
                    eprintln!("cairn: the stream stopped: {e}");
                }
                split_done = Some(split.is_ok());
            }
            if (split_done.is_some() || refused.is_some()) && !ended {
                // Ended by the node already (its idle end) is ended.
                if let Err(e) = node.end_stream(&id) {
                    eprintln!("cairn: ending stream {id}: {e}");
                }
                ended = true;
                eprintln!(
                    "{:>6.1}s  the stream ended after {} segments; the job settles once they are in",
                    started.elapsed().as_secs_f64(),
                    live.cuts.len()
                );
            }
            // A result accepted changes the job's status: its event says so.
            if status.is_some() {
                live.collect()?;
            }
            if let Some(status) = status
                && status.state.is_over()
            {
                return Ok(status);
            }
        }
    };
    let last = match drive() {
        Ok(last) => last,
        Err(e) => {
            // Not left open: its providers are released, and what was
            // delivered is paid.
            if !ended && let Err(end) = node.end_stream(&id) {
                eprintln!("cairn: ending stream {id}: {end}");
            }
            return Err(e);
        }
    };
    // What the stream delivered, fetched whole, checked and listed as a
    // clip's renditions are (the playlists' VOD form, ended).
    let fetched = crate::job::results(node, &id, Some(out.clone()))?;
    Ok(Streamed {
        id,
        state: last.state,
        segments: live.cuts.len(),
        latencies: live.cuts.iter().filter_map(|c| c.listed).collect(),
        segment_s: video.segment_s,
        split_ok: split_done == Some(true) && refused.is_none(),
        out,
        fetched,
    })
}

/// Opens the stream: standard input, or a FIFO or file.
fn open_source(from: &str) -> anyhow::Result<std::fs::File> {
    if from == "-" {
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("reading standard input")?;
        return Ok(std::fs::File::from(fd));
    }
    std::fs::File::open(from).with_context(|| format!("opening {from}"))
}

/// What the stream keeps while it runs.
struct Live<'a> {
    node: &'a Client,
    id: ContentId,
    video: &'a Video,
    job: &'a Job,
    limits: cairn_job::Limits,
    out: &'a Path,
    tools: VideoTools,
    /// The stream's picture, read from its first segment.
    picture: Option<Picture>,
    cuts: Vec<Cut>,
    /// Tasks from `from` on whose outputs are here.
    fetched: BTreeSet<u32>,
    /// The first task not fetched yet.
    from: u32,
    /// Segments listed in the playlists, from the first.
    listed: usize,
}

impl Live<'_> {
    /// Sends a segment just cut: uploaded, and its renditions added to the
    /// job.
    fn add(&mut self, segment: Segment) -> anyhow::Result<()> {
        let cut = Instant::now();
        let s = self.cuts.len();
        let picture = match self.picture {
            Some(picture) => picture,
            None => {
                let folder = segment.file.host_path.parent().unwrap_or(Path::new("."));
                let probe = self
                    .tools
                    .probe_file(folder, &segment.file.name, Some("mpegts"))?;
                let master = live_master(&self.video.renditions, probe.picture);
                write_atomic(&self.out.join("master.m3u8"), master.as_bytes())?;
                self.picture = Some(probe.picture);
                probe.picture
            }
        };
        self.node.upload_input(&segment.file)?;
        let first = self.cuts.last().map_or(0, |c| c.tasks.end);
        let tasks: Vec<TaskSpec> =
            self.video
                .segment_tasks(self.job.seed, &self.limits, first, s, &segment, picture);
        let added = self.node.add_tasks(&self.id, &tasks)?;
        if added.first != first {
            bail!(
                "the node numbered segment {s}'s tasks from {}, not {first}: another client \
                 adds tasks to this stream",
                added.first
            );
        }
        self.cuts.push(Cut {
            duration_s: segment.duration_s,
            tasks: first..first + tasks.len() as u32,
            cut,
            listed: None,
        });
        // The segment itself is the providers' now, not this machine's.
        let _ = std::fs::remove_file(&segment.file.host_path);
        Ok(())
    }

    /// [`Live::add`], but a segment the node refuses ends the stream
    /// (saying why) rather than failing it: what was delivered is still
    /// fetched and listed. Errors of this machine's own still fail it.
    fn add_or_refuse(
        &mut self,
        segment: Segment,
        refused: &mut Option<String>,
    ) -> anyhow::Result<()> {
        match self.add(segment) {
            Ok(()) => Ok(()),
            Err(e) if e.downcast_ref::<cairn_client::Error>().is_some() => {
                eprintln!("cairn: the node took no more of the stream: {e:#}");
                *refused = Some(format!("{e:#}"));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches the results that came in, and lists every segment whose
    /// renditions are all here (in order: a player reads them so).
    fn collect(&mut self) -> anyhow::Result<()> {
        // Every finished task from the first not fetched on: those not
        // fetched yet are written (outputs checked by content id).
        let mut cursor = self.from;
        loop {
            let page = self.node.results_page(&self.id, cursor)?;
            for result in &page.results {
                if result.task < self.from || self.fetched.contains(&result.task) {
                    continue;
                }
                for output in &result.outputs {
                    let path =
                        cairn_job::output_path(self.out, &output.name).map_err(|reason| {
                            anyhow::anyhow!(
                                "the node listed an output that cannot be saved: {reason}"
                            )
                        })?;
                    write_atomic(&path, &self.node.blob(&output.id)?)?;
                }
                self.fetched.insert(result.task);
            }
            match page.next {
                Some(next) if next > cursor => cursor = next,
                _ => break,
            }
        }
        while self.fetched.remove(&self.from) {
            self.from += 1;
        }
        let before = self.listed;
        while let Some(cut) = self.cuts.get_mut(self.listed) {
            if cut.tasks.end > self.from {
                break;
            }
            cut.listed = Some(cut.cut.elapsed());
            self.listed += 1;
        }
        if self.listed > before {
            let durations: Vec<f64> = self.cuts[..self.listed]
                .iter()
                .map(|c| c.duration_s)
                .collect();
            for rendition in &self.video.renditions {
                let path = self.out.join(format!("{rendition}.m3u8"));
                let playlist = live_playlist(rendition, &durations, false);
                write_atomic(&path, playlist.as_bytes())?;
            }
            for s in before..self.listed {
                let names: Vec<String> = self
                    .video
                    .renditions
                    .iter()
                    .map(|r| segment_output(r, s))
                    .collect();
                eprintln!(
                    "segment {s} listed {:.0} ms after it was cut: {}",
                    self.cuts[s].listed.unwrap_or_default().as_secs_f64() * 1e3,
                    names.join(", ")
                );
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` whole or not at all: a player reading a
/// playlist never sees half of it, nor of a segment it lists.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut partial = PathBuf::from(path);
    partial.as_mut_os_string().push(".partial");
    std::fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}
