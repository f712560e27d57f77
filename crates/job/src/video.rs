//! Video jobs, as Livepeer's broadcasters use them: a job file's `[video]`
//! names a clip and a ladder of renditions; the clip is split at its
//! keyframes into segments of about `segment_s` seconds (by the caller,
//! which has ffmpeg: see `cairn_exec::tool::video`), and each task encodes
//! one segment into one rendition with x264 settings that make its bytes
//! repeatable, so replicas compare by digest. The requester assembles an
//! HLS playlist per rendition from the results.
//!
//! ```toml
//! [video]
//! input = "clip.mp4"
//! segment_s = 2                                        # the default
//! renditions = ["240p30:600k", "360p30:1200k", "720p30:4000k"]   # the default, Livepeer's
//! ```
//!
//! Without `input`, the job is a live stream: `cairn job stream` feeds it
//! segments as they are produced, each segment's renditions added to the
//! running job ([`Video::segment_tasks`]).

use std::fmt;

use crate::spec::{InputFile, Job, TaskSpec, task_seed};

/// Livepeer's default ladder.
pub const LADDER: &[&str] = &["240p30:600k", "360p30:1200k", "720p30:4000k"];

/// Segment length when the job file gives none, in seconds: Livepeer's.
pub const SEGMENT_S_DEFAULT: u32 = 2;

/// The longest segment a job may ask for: a task encodes one.
pub const SEGMENT_S_MAX: u32 = 60;

/// Address space a task may map when the job file does not say, in MiB:
/// ffmpeg maps far more than it touches.
pub const MEMORY_MIB_DEFAULT: u64 = 1024;

/// The most renditions in a ladder.
pub const RENDITIONS_MAX: usize = 16;

/// Fuel-equivalents a task is paid per pixel it encodes: x264 at
/// `veryfast` takes roughly a thousand instructions a pixel.
pub const FUEL_PER_PIXEL: u64 = 1_000;

/// Bits per second of each rendition's audio (AAC, stereo).
pub const AUDIO_KBPS: u32 = 96;

/// One rendition of the ladder: `240p30:600k` is 240 lines, 30 frames a
/// second, 600 kb/s of video.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rendition {
    /// Lines (the width follows the clip's aspect ratio, rounded to even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate, kb/s.
    pub kbps: u32,
}

impl Rendition {
    /// Parses `240p30:600k`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("rendition '{text}' is not of the form HEIGHTpFPS:KBPSk, as \"240p30:600k\"")
        };
        let (size, rate) = text.split_once(':').ok_or_else(bad)?;
        let (height, fps) = size.split_once('p').ok_or_else(bad)?;
        let kbps = rate.strip_suffix('k').ok_or_else(bad)?;
        let number = |digits: &str, what: &str, range: std::ops::RangeInclusive<u32>| {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match digits.parse::<u32>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(format!(
                    "rendition '{text}': {what} must be {} to {}",
                    range.start(),
                    range.end()
                )),
            }
        };
        let height = number(height, "the height", 16..=4320)?;
        if height % 2 != 0 {
            return Err(format!(
                "rendition '{text}': the height must be even (x264 encodes 4:2:0)"
            ));
        }
        Ok(Self {
            height,
            fps: number(fps, "the frame rate", 1..=120)?,
            kbps: number(kbps, "the bitrate", 16..=100_000)?,
        })
    }

    /// Its width for a clip of `width` × `height`: the aspect ratio kept,
    /// rounded to even, as ffmpeg's `scale=-2:H` does.
    pub fn width_for(&self, width: u32, height: u32) -> u32 {
        let (h, w, ih) = (
            u64::from(self.height),
            u64::from(width),
            u64::from(height.max(1)),
        );
        // ffmpeg rounds h × w / ih to the nearest multiple of two.
        let even = (h * w + ih) / (2 * ih) * 2;
        u32::try_from(even).unwrap_or(u32::MAX).max(2)
    }
}

impl Rendition {
    /// The work a task declares for encoding `duration_s` seconds of a
    /// `picture` into this rendition: [`FUEL_PER_PIXEL`] per pixel of its
    /// picture and frames, within the fuel a task may declare.
    pub fn work(&self, duration_s: f64, picture: Picture) -> u64 {
        let frames = (duration_s * f64::from(self.fps)).ceil().max(1.0) as u64;
        let pixels =
            u64::from(self.width_for(picture.width, picture.height)) * u64::from(self.height);
        pixels
            .saturating_mul(frames)
            .saturating_mul(FUEL_PER_PIXEL)
            .clamp(
                *crate::rules::FUEL_RANGE.start(),
                *crate::rules::FUEL_RANGE.end(),
            )
    }
}

impl Video {
    /// Segment number `s`'s tasks, one per rendition, numbered from
    /// `first`: each with the segment as its own input and the pixels it
    /// encodes as its declared work (at most the job's `limits.fuel`; the
    /// job's figure when the job file declares it).
    pub fn segment_tasks(
        &self,
        job_seed: u64,
        limits: &crate::Limits,
        first: u32,
        s: usize,
        segment: &Segment,
        picture: Picture,
    ) -> Vec<TaskSpec> {
        self.renditions
            .iter()
            .zip(first..)
            .map(|(rendition, index)| {
                let output = segment_output(rendition, s);
                let work = rendition.work(segment.duration_s, picture).min(limits.fuel);
                TaskSpec {
                    index,
                    value: u64::from(index),
                    args: encode_args(&segment.file.name, rendition, self.segment_s, &output),
                    outputs: vec![output],
                    seed: task_seed(job_seed, u64::from(index)),
                    fuel: (!self.fuel_declared).then_some(work),
                    inputs: vec![segment.file.clone()],
                }
            })
            .collect()
    }
}

impl fmt::Display for Rendition {
    /// `240p30`: the rendition's name in file names and playlists.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}p{}", self.height, self.fps)
    }
}

/// A job file's `[video]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Video {
    /// The clip; none for a live stream.
    pub input: Option<InputFile>,
    /// About how long each segment is, in seconds.
    pub segment_s: u32,
    /// The ladder, in the job file's order.
    pub renditions: Vec<Rendition>,
    /// Whether the job file set `limits.fuel`, every task's figure
    /// (otherwise each task's is reckoned from its segment and rendition:
    /// [`FUEL_PER_PIXEL`] per pixel it encodes).
    pub fuel_declared: bool,
}

/// One segment of the clip, as the splitter wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// The file, seen by tasks under `/input`.
    pub file: InputFile,
    /// Its length in seconds.
    pub duration_s: f64,
}

/// The clip's picture size, as the splitter read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Picture {
    /// Pixels across.
    pub width: u32,
    /// Lines.
    pub height: u32,
}

/// The output a task writes: `240p30_0003.ts`, segment 3 of rendition
/// 240p30.
pub fn segment_output(rendition: &Rendition, segment: usize) -> String {
    format!("{rendition}_{segment:04}.ts")
}

/// The arguments of ffmpeg that encode `input` (a segment under `/input`)
/// into `rendition`, written to `/output/<output>`. x264 on one thread with
/// the bit-exact flags gives the same bytes on every run of one ffmpeg
/// build; timestamps are the clip's (`-copyts`), so the segments of a
/// rendition play one after another.
pub fn encode_args(
    input: &str,
    rendition: &Rendition,
    segment_s: u32,
    output: &str,
) -> Vec<String> {
    let kbps = rendition.kbps;
    let gop = rendition.fps.saturating_mul(segment_s).max(1);
    [
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "warning",
        "-copyts",
        "-i",
        &format!("/input/{input}"),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-vf",
        &format!("scale=-2:{}", rendition.height),
        "-r",
        &rendition.fps.to_string(),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-threads",
        "1",
        "-b:v",
        &format!("{kbps}k"),
        "-maxrate",
        &format!("{kbps}k"),
        "-bufsize",
        &format!("{}k", kbps.saturating_mul(2)),
        "-g",
        &gop.to_string(),
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        &format!("{AUDIO_KBPS}k"),
        "-ac",
        "2",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-map_metadata",
        "-1",
        "-muxdelay",
        "0",
        "-muxpreload",
        "0",
        "-f",
        "mpegts",
        &format!("/output/{output}"),
    ]
    .map(str::to_owned)
    .to_vec()
}

impl Job {
    /// The job's tasks once its clip is split into `segments` of a picture
    /// `picture` in size: one task per segment and rendition, segment by
    /// segment (so the start of the clip is ready first), each task with
    /// its segment as its own input (a provider fetches the segments of
    /// the tasks it runs, not the whole clip). A job without `[video]` is
    /// returned as it is.
    pub fn segmented(mut self, segments: Vec<Segment>, picture: Picture) -> Result<Job, String> {
        let Some(video) = self.video.clone() else {
            return Ok(self);
        };
        if segments.is_empty() {
            return Err("the clip has no video to split".into());
        }
        let tasks = segments.len().saturating_mul(video.renditions.len());
        crate::rules::check_task_count(tasks as u64)?;
        // The job's limit is its largest task's, which an order shows
        // bidders (a job file's own `limits.fuel` is every task's figure).
        if !video.fuel_declared {
            self.limits.fuel = segments
                .iter()
                .flat_map(|s| {
                    video
                        .renditions
                        .iter()
                        .map(move |r| r.work(s.duration_s, picture))
                })
                .max()
                .unwrap_or(*crate::rules::FUEL_RANGE.start());
        }
        self.tasks = Vec::with_capacity(tasks);
        for (s, segment) in segments.iter().enumerate() {
            let first = self.tasks.len() as u32;
            let more = video.segment_tasks(self.seed, &self.limits, first, s, segment, picture);
            self.tasks.extend(more);
        }
        self.inputs = Vec::new();
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renditions_parse_as_livepeer_writes_them_and_refuse_the_rest() {
        assert_eq!(
            Rendition::parse("240p30:600k"),
            Ok(Rendition {
                height: 240,
                fps: 30,
                kbps: 600
            })
        );
        assert_eq!(
            Rendition::parse("720p60:4000k").unwrap().to_string(),
            "720p60"
        );
        for bad in [
            "",
            "240p30",
            "240:600k",
            "p30:600k",
            "240p:600k",
            "240p30:600",
            "240p30:k",
            "241p30:600k",
            "240p0:600k",
            "240p30:1k",
            "99999p30:600k",
            "240p30:+6k",
            "240p3000000000:600k",
        ] {
            assert!(Rendition::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn widths_keep_the_aspect_ratio_and_are_even() {
        let r = |h| Rendition {
            height: h,
            fps: 30,
            kbps: 600,
        };
        assert_eq!(r(240).width_for(1920, 1080), 426);
        assert_eq!(r(360).width_for(640, 360), 640);
        assert_eq!(r(720).width_for(640, 360), 1280);
        assert_eq!(r(240).width_for(1, 4000), 2);
    }
}
