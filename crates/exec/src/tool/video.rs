//! The requester's side of a video job (see `cairn_job::video`): the clip
//! split at its keyframes into segments before the job is submitted, and
//! the renditions' segments read and assembled into HLS playlists once
//! they are back.
//!
//! Both run this machine's ffmpeg and ffprobe in the tools' sandbox: the
//! clip may come from anywhere, and the segments come from providers.
//!
//! Assembly checks what it lists, as Livepeer's broadcaster does: every
//! segment of a rendition has the rendition's height and one width, and
//! every rendition of a segment starts where the others do and lasts as
//! long (to a frame), so a transcoder that encoded a smaller picture,
//! dropped frames or returned another segment is named, and nothing is
//! listed. The pixels each rendition holds are counted (width × height ×
//! frames), to set against what the job paid for.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cairn_job::video::{Picture, Rendition, Segment};
use cairn_job::{InputFile, check_input_name};
use cairn_wire::ContentId;

use super::ToolConfig;
use super::sandbox::Sandbox;
use crate::ExecError;

/// The splitter's list of what it wrote, in `/output`.
const SEGMENT_LIST: &str = "segments.csv";

/// The largest segment of a live stream: a file ffmpeg writes past it is
/// cut off, and the stream fails.
const SEGMENT_BYTES_MAX: u64 = 1 << 30;

/// The segments a live split ([`VideoTools::split_live`]) has finished,
/// read as its list grows: each once, in order, checked as a clip's are.
pub struct LiveSegments {
    folder: PathBuf,
    /// Bytes of the list read (up to its last whole line).
    read: usize,
    /// Segments read.
    count: usize,
}

impl LiveSegments {
    /// The segments a live split writes into `folder`.
    pub fn new(folder: &Path) -> Self {
        Self {
            folder: folder.to_path_buf(),
            read: 0,
            count: 0,
        }
    }

    /// Segments finished since the last call, in order (none while the
    /// list is not there yet).
    pub fn finished(&mut self) -> Result<Vec<Segment>, ExecError> {
        use std::io::{Read as _, Seek as _};
        let path = self.folder.join(SEGMENT_LIST);
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ExecError::io(format!("reading {}", path.display()))(e)),
        };
        // Only what was added since: the list grows with the stream.
        let mut list = Vec::new();
        file.seek(std::io::SeekFrom::Start(self.read as u64))
            .and_then(|_| file.read_to_end(&mut list))
            .map_err(ExecError::io(format!("reading {}", path.display())))?;
        let Some(whole) = list.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let new = &list[..whole + 1];
        let text = std::str::from_utf8(new)
            .map_err(|_| ExecError::Media("ffmpeg's segment list is not text".into()))?;
        let mut segments = Vec::new();
        for line in text.lines() {
            segments.push(listed_segment(&self.folder, self.count, line)?);
            self.count += 1;
        }
        self.read += whole + 1;
        Ok(segments)
    }
}

/// Line `index` of ffmpeg's list of the segments it wrote into `folder`
/// (`name,start,end`), checked: the name due, times that go forward, and
/// a plain file (not a link ffmpeg left to one elsewhere, which would be
/// sent to providers).
fn listed_segment(folder: &Path, index: usize, line: &str) -> Result<Segment, ExecError> {
    let fields: Vec<&str> = line.split(',').collect();
    let (&[name, start, end], expected) = (fields.as_slice(), segment_name(index)) else {
        return Err(ExecError::Media(format!(
            "ffmpeg's segment list has a line of {} fields",
            fields.len()
        )));
    };
    let (Some(start), Some(end)) = (seconds(start), seconds(end)) else {
        return Err(ExecError::Media(format!(
            "ffmpeg's segment list gives {name} no times"
        )));
    };
    if name != expected || check_input_name(name).is_err() || end <= start {
        return Err(ExecError::Media(format!(
            "ffmpeg's segment list names {name} from {start} s to {end} s, \
             where {expected} was due"
        )));
    }
    let host_path = folder.join(name);
    if !std::fs::symlink_metadata(&host_path).is_ok_and(|m| m.is_file()) {
        return Err(ExecError::Media(format!(
            "ffmpeg's segment {name} is not a plain file"
        )));
    }
    let bytes = std::fs::read(&host_path)
        .map_err(ExecError::io(format!("reading {}", host_path.display())))?;
    Ok(Segment {
        file: InputFile {
            name: name.to_owned(),
            host_path,
            id: ContentId::of(&bytes),
            size_bytes: bytes.len() as u64,
        },
        duration_s: end - start,
    })
}

/// ffmpeg's arguments that read `input` (its flags) and cut it with `-c
/// copy` at its keyframes into MPEG-TS segments of about `segment_s`
/// seconds in `/output`, keeping its timestamps, listed in
/// [`SEGMENT_LIST`]; `live`: each line written once its segment is
/// closed.
fn segmenter_args(input: &[&str], segment_s: u32, live: bool) -> Vec<String> {
    let head = ["-hide_banner", "-loglevel", "error"];
    let flags: &[&str] = if live {
        &["-segment_list_flags", "+live"]
    } else {
        &[]
    };
    let segment_s = segment_s.to_string();
    let list = format!("/output/{SEGMENT_LIST}");
    let tail = [
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-c",
        "copy",
        "-f",
        "segment",
        "-segment_time",
        &segment_s,
        "-segment_format",
        "mpegts",
        "-segment_list",
        &list,
        "-segment_list_type",
        "csv",
    ];
    let names = ["-reset_timestamps", "0", "/output/seg-%04d.ts"];
    head.iter()
        .chain(input)
        .chain(tail.iter())
        .chain(flags)
        .chain(names.iter())
        .map(|a| (*a).to_owned())
        .collect()
}

/// A segment's file name: `seg-0003.ts`.
fn segment_name(index: usize) -> String {
    format!("seg-{index:04}.ts")
}

/// ffmpeg and ffprobe, confined.
pub struct VideoTools {
    sandbox: Sandbox,
    ffmpeg: PathBuf,
    ffprobe: PathBuf,
}

/// What [`VideoTools::probe`] read of one file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    /// The first video stream's picture.
    pub picture: Picture,
    /// Its frames (packets, as ffprobe counts them without decoding).
    pub frames: u64,
    /// When it starts, in seconds of the clip.
    pub start_s: f64,
    /// How long it lasts, in seconds.
    pub duration_s: f64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// One rendition as assembled.
#[derive(Clone, Debug, PartialEq)]
pub struct Assembled {
    /// Its name (`240p30`), and its playlist `240p30.m3u8`.
    pub name: String,
    /// Its picture.
    pub picture: Picture,
    /// Segments listed.
    pub segments: usize,
    /// Frames in all of them.
    pub frames: u64,
    /// Pixels encoded: width × height × frames.
    pub pixels: u64,
    /// Seconds listed.
    pub duration_s: f64,
    /// The highest bitrate of a segment, bits per second (HLS's BANDWIDTH).
    pub peak_bps: u64,
    /// The mean bitrate, bits per second.
    pub average_bps: u64,
}

impl VideoTools {
    /// Finds ffmpeg and ffprobe where `config` searches for tools, and a
    /// sandbox to run them in.
    pub fn new(config: &ToolConfig) -> Result<Self, ExecError> {
        let find = |name: &str| {
            config
                .search
                .iter()
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    ExecError::Media(format!(
                        "a video job needs {name} on this machine (Debian: apt-get install ffmpeg)"
                    ))
                })
        };
        Ok(Self {
            ffmpeg: find("ffmpeg")?,
            ffprobe: find("ffprobe")?,
            sandbox: Sandbox::new(&config.bwrap)?,
        })
    }

    /// Splits `clip` at its keyframes into segments of about `segment_s`
    /// seconds, written into `into` (which must exist and be empty), and
    /// reads the clip's picture size. The segments keep the clip's
    /// timestamps.
    pub fn split(
        &self,
        clip: &Path,
        segment_s: u32,
        into: &Path,
    ) -> Result<(Vec<Segment>, Picture), ExecError> {
        // Only a copy of the clip is shown to ffmpeg, in a folder of its
        // own: not the folder it lies in, nor (through /output) the clip.
        let source = clip_folder(into)?;
        let _removed = Removed(source.clone());
        let staged = source.join("clip");
        std::fs::copy(clip, &staged)
            .map_err(ExecError::io(format!("reading {}", clip.display())))?;
        let clip_bytes = std::fs::metadata(&staged)
            .map_err(ExecError::io(format!("reading {}", clip.display())))?
            .len();
        let probe = self.probe_file(&source, "clip", None)?;
        let args = segmenter_args(&["-nostdin", "-i", "/input/clip"], segment_s, false);
        let ran = self.sandbox.run_program(
            &self.ffmpeg,
            &args,
            &source,
            Some(into),
            clip_bytes.saturating_mul(2).saturating_add(16 << 20),
        )?;
        if !ran.outcome.is_success() {
            return Err(ExecError::Media(format!(
                "ffmpeg could not split {} ({}): {}",
                clip.display(),
                ran.outcome,
                String::from_utf8_lossy(&ran.stderr).trim()
            )));
        }
        let list_path = into.join(SEGMENT_LIST);
        if !std::fs::symlink_metadata(&list_path).is_ok_and(|m| m.is_file()) {
            return Err(ExecError::Media(
                "ffmpeg wrote no list of its segments".into(),
            ));
        }
        let list = std::fs::read_to_string(&list_path)
            .map_err(ExecError::io(format!("reading {}", list_path.display())))?;
        std::fs::remove_file(&list_path).ok();
        let segments = list
            .lines()
            .enumerate()
            .map(|(index, line)| listed_segment(into, index, line))
            .collect::<Result<Vec<_>, _>>()?;
        if segments.is_empty() {
            return Err(ExecError::Media(format!(
                "{} holds no video to split",
                clip.display()
            )));
        }
        Ok((segments, probe.picture))
    }

    /// Splits a live stream read from `source` (a pipe, a FIFO, or a file
    /// read to its end) at its keyframes into segments of about
    /// `segment_s` seconds, written into `into` (which must exist and be
    /// empty) as the stream goes; [`LiveSegments`] reads each once it is
    /// whole. Returns when the stream ends, or after `wall_time`.
    pub fn split_live(
        &self,
        source: std::fs::File,
        segment_s: u32,
        into: &Path,
        wall_time: std::time::Duration,
    ) -> Result<(), ExecError> {
        // A second of the stream tells its streams apart: the first
        // segment is not held back by five seconds of probing.
        let input = ["-analyzeduration", "1000000", "-i", "pipe:0"];
        let args = segmenter_args(&input, segment_s, true);
        let ran = self.sandbox.run_program_reading(
            &self.ffmpeg,
            &args,
            source,
            into,
            SEGMENT_BYTES_MAX,
            wall_time,
        )?;
        if !ran.outcome.is_success() {
            return Err(ExecError::Media(format!(
                "ffmpeg could not split the stream ({}): {}",
                ran.outcome,
                String::from_utf8_lossy(&ran.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Reads the first video stream of `folder/name` with ffprobe, as
    /// `format` (`mpegts`) when given, rather than whatever the bytes say
    /// they are (a playlist naming other files, say).
    pub fn probe_file(
        &self,
        folder: &Path,
        name: &str,
        format: Option<&str>,
    ) -> Result<Probe, ExecError> {
        let mut args: Vec<String> = Vec::new();
        if let Some(format) = format {
            args.extend(["-f".to_owned(), format.to_owned()]);
        }
        args.extend(
            [
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-count_packets",
                "-show_entries",
                "stream=width,height,nb_read_packets:format=start_time,duration,size",
                "-of",
                "default=noprint_wrappers=1",
                &format!("/input/{name}"),
            ]
            .map(str::to_owned),
        );
        let ran = self
            .sandbox
            .run_program(&self.ffprobe, &args, folder, None, 1 << 20)?;
        let unreadable = |why: String| {
            ExecError::Media(format!(
                "ffprobe cannot read {name}: {why} {}",
                String::from_utf8_lossy(&ran.stderr).trim()
            ))
        };
        if !ran.outcome.is_success() {
            return Err(unreadable(ran.outcome.to_string()));
        }
        let text = String::from_utf8_lossy(&ran.stdout);
        let fields: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .collect();
        let number = |key: &str| -> Result<u64, ExecError> {
            fields
                .get(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| unreadable(format!("no {key} in a video stream;")))
        };
        let time = |key: &str| -> Result<f64, ExecError> {
            fields
                .get(key)
                .and_then(|v| seconds(v))
                .ok_or_else(|| unreadable(format!("no {key};")))
        };
        let dimension = |key: &str| -> Result<u32, ExecError> {
            u32::try_from(number(key)?)
                .ok()
                .filter(|d| *d > 0)
                .ok_or_else(|| unreadable(format!("{key} out of range;")))
        };
        Ok(Probe {
            picture: Picture {
                width: dimension("width")?,
                height: dimension("height")?,
            },
            frames: number("nb_read_packets")?,
            start_s: time("start_time")?,
            duration_s: time("duration")?,
            bytes: number("size")?,
        })
    }

    /// Reads the renditions' segments in `folder` (files named
    /// `240p30_0003.ts`), checks them against each other, and writes a
    /// playlist per rendition (`240p30.m3u8`) and `master.m3u8` beside
    /// them. Nothing is written if a check fails. No segments, no
    /// playlists: `Ok` of nothing.
    pub fn assemble(&self, folder: &Path, files: &[String]) -> Result<Vec<Assembled>, ExecError> {
        let renditions = self.read_renditions(folder, files)?;
        if renditions.is_empty() {
            return Ok(Vec::new());
        }
        check_renditions(&renditions)?;
        let mut master = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
        let mut assembled = Vec::new();
        // Smallest first, as players expect of a ladder.
        let mut ladder: Vec<(&String, &Vec<Probe>)> = renditions.iter().collect();
        ladder.sort_by_key(|(name, _)| rendition_named(name).map(|r| (r.height, r.fps)));
        for (name, probes) in ladder {
            let fps = rendition_named(name).map_or(30, |r| r.fps);
            let (playlist, report) = playlist(name, probes);
            let path = folder.join(format!("{name}.m3u8"));
            std::fs::write(&path, playlist)
                .map_err(ExecError::io(format!("writing {}", path.display())))?;
            let _ = write!(
                master,
                "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},FRAME-RATE={}.000\n{name}.m3u8\n",
                report.peak_bps,
                report.average_bps,
                report.picture.width,
                report.picture.height,
                fps,
            );
            assembled.push(report);
        }
        let path = folder.join("master.m3u8");
        std::fs::write(&path, master)
            .map_err(ExecError::io(format!("writing {}", path.display())))?;
        Ok(assembled)
    }

    /// Every rendition's segments in `folder`, probed, in order.
    fn read_renditions(
        &self,
        folder: &Path,
        files: &[String],
    ) -> Result<BTreeMap<String, Vec<Probe>>, ExecError> {
        let mut named: BTreeMap<String, BTreeMap<usize, String>> = BTreeMap::new();
        for file in files {
            let Some((name, index)) = parse_segment_output(file) else {
                continue;
            };
            named.entry(name).or_default().insert(index, file.clone());
        }
        let mut renditions = BTreeMap::new();
        for (name, files) in named {
            let mut probes = Vec::with_capacity(files.len());
            for (expected, (index, file)) in files.iter().enumerate() {
                if *index != expected {
                    return Err(ExecError::Media(format!(
                        "rendition {name} has no segment {expected} (its next is {file})"
                    )));
                }
                probes.push(self.probe_file(folder, file, Some("mpegts"))?);
            }
            renditions.insert(name, probes);
        }
        Ok(renditions)
    }
}

/// Writes a clip of `seconds` at `width`×`height` to `path`, 30 frames a
/// second with a keyframe a second, and sound, from ffmpeg's test sources
/// (for tests and benchmarks: nothing is downloaded). Runs this machine's
/// ffmpeg directly: its input is ffmpeg's own.
pub fn generate_clip(path: &Path, seconds: u32, width: u32, height: u32) -> Result<(), ExecError> {
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={width}x{height}:rate=30"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "30"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(path)
        .status()
        .map_err(ExecError::io("running ffmpeg (apt-get install ffmpeg)"))?;
    if !status.success() {
        return Err(ExecError::Media(format!(
            "ffmpeg could not generate {}",
            path.display()
        )));
    }
    Ok(())
}

/// Whether `file` is named as a rendition's segment (`240p30_0003.ts`).
pub fn is_segment_output(file: &str) -> bool {
    parse_segment_output(file).is_some()
}

/// `240p30_0003.ts` → (`240p30`, 3); anything else → `None`.
fn parse_segment_output(file: &str) -> Option<(String, usize)> {
    let stem = file.strip_suffix(".ts")?;
    let (name, digits) = stem.rsplit_once('_')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Written as `segment_output` writes it: four digits at least (a
    // stream may run past 9,999 segments), and no other.
    let index: usize = digits.parse().ok()?;
    if format!("{index:04}") != digits {
        return None;
    }
    rendition_named(name)?;
    Some((name.to_owned(), index))
}

/// The rendition a name such as `240p30` stands for (its bitrate unknown),
/// if it is written exactly as [`Rendition`]'s `Display` writes it.
fn rendition_named(name: &str) -> Option<Rendition> {
    let rendition = Rendition::parse(&format!("{name}:16k")).ok()?;
    (rendition.to_string() == name).then_some(rendition)
}

/// The checks of [`VideoTools::assemble`]: each rendition's height and
/// one width; every rendition of a segment starting together and lasting
/// as long, to a frame.
fn check_renditions(renditions: &BTreeMap<String, Vec<Probe>>) -> Result<(), ExecError> {
    let mut counts = renditions.iter().map(|(name, p)| (name, p.len()));
    let (first, count) = counts.next().expect("at least one rendition");
    if let Some((name, other)) = counts.find(|(_, n)| *n != count) {
        return Err(ExecError::Media(format!(
            "rendition {first} has {count} segments and {name} has {other}"
        )));
    }
    // One picture's shape: each rendition's width is what the first's
    // aspect ratio gives its height, as ffmpeg rounds it.
    let (reference, first) = renditions.iter().next().expect("at least one rendition");
    let shape = first[0].picture;
    for (name, probes) in renditions {
        let Some(rendition) = rendition_named(name) else {
            continue;
        };
        let height = rendition.height;
        let width = probes[0].picture.width;
        let shaped = rendition.width_for(shape.width, shape.height);
        if width.abs_diff(shaped) > 2 {
            return Err(ExecError::Media(format!(
                "segment 0 of {name} is {width}x{}, not the shape of {reference} ({}x{})",
                probes[0].picture.height, shape.width, shape.height
            )));
        }
        for (index, probe) in probes.iter().enumerate() {
            if probe.picture.height != height || probe.picture.width != width {
                return Err(ExecError::Media(format!(
                    "segment {index} of {name} is {}x{}, not {width}x{height}",
                    probe.picture.width, probe.picture.height
                )));
            }
        }
    }
    for index in 0..count {
        let mut of_segment = renditions.iter().map(|(name, p)| (name, p[index]));
        let (reference, first) = of_segment.next().expect("at least one rendition");
        let first_fps = fps_of(reference);
        for (name, probe) in of_segment {
            // A frame of the slower of the two: the encoders start and end
            // on frame boundaries of their own rates.
            let frame = 1.0 / first_fps.min(fps_of(name));
            let length = |p: &Probe, fps: f64| p.frames as f64 / fps;
            let (starts, lasts) = (
                (probe.start_s - first.start_s).abs(),
                (length(&probe, fps_of(name)) - length(&first, first_fps)).abs(),
            );
            if starts > frame * 1.5 || lasts > frame * 1.5 {
                return Err(ExecError::Media(format!(
                    "segment {index} of {name} ({} frames from {:.3} s) does not match {reference} \
                     ({} frames from {:.3} s): frames dropped, or another part of the clip",
                    probe.frames, probe.start_s, first.frames, first.start_s
                )));
            }
        }
    }
    Ok(())
}

/// The frame rate a rendition's name gives.
fn fps_of(name: &str) -> f64 {
    rendition_named(name).map_or(30.0, |r| f64::from(r.fps))
}

/// A rendition's playlist, and what it lists. A segment lasts until the
/// next starts (the last, as ffprobe measured it).
fn playlist(name: &str, probes: &[Probe]) -> (String, Assembled) {
    let durations: Vec<f64> = probes
        .iter()
        .enumerate()
        .map(|(i, p)| match probes.get(i + 1) {
            Some(next) if next.start_s > p.start_s => next.start_s - p.start_s,
            _ => p.duration_s,
        })
        .collect();
    let target = durations.iter().fold(1.0_f64, |a, d| a.max(d.round()));
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target:.0}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    );
    let mut peak_bps = 0u64;
    for (index, duration) in durations.iter().enumerate() {
        let _ = write!(text, "#EXTINF:{duration:.6},\n{name}_{index:04}.ts\n");
        let bps = (probes[index].bytes as f64 * 8.0 / duration.max(1e-3)) as u64;
        peak_bps = peak_bps.max(bps);
    }
    text.push_str("#EXT-X-ENDLIST\n");
    let duration_s: f64 = durations.iter().sum();
    let bytes: u64 = probes.iter().map(|p| p.bytes).sum();
    let frames: u64 = probes.iter().map(|p| p.frames).sum();
    let picture = probes[0].picture;
    let report = Assembled {
        name: name.to_owned(),
        picture,
        segments: probes.len(),
        frames,
        pixels: frames
            .saturating_mul(u64::from(picture.width))
            .saturating_mul(u64::from(picture.height)),
        duration_s,
        peak_bps,
        average_bps: (bytes as f64 * 8.0 / duration_s.max(1e-3)) as u64,
    };
    (text, report)
}

/// A live rendition's playlist: `durations` are its segments' so far, in
/// order, and it ends with `#EXT-X-ENDLIST` only once the stream has
/// (a player keeps asking for more until then).
pub fn live_playlist(rendition: &Rendition, durations: &[f64], ended: bool) -> String {
    let target = durations.iter().fold(1.0_f64, |a, d| a.max(d.ceil()));
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target:.0}\n#EXT-X-MEDIA-SEQUENCE:0\n"
    );
    for (index, duration) in durations.iter().enumerate() {
        let _ = write!(text, "#EXTINF:{duration:.6},\n{rendition}_{index:04}.ts\n");
    }
    if ended {
        text.push_str("#EXT-X-ENDLIST\n");
    }
    text
}

/// A live stream's master playlist: each rendition of `ladder` (smallest
/// first) of a clip of `picture`, with the bandwidth it was asked for.
pub fn live_master(ladder: &[Rendition], picture: Picture) -> String {
    let mut ladder = ladder.to_vec();
    ladder.sort_by_key(|r| (r.height, r.fps));
    let mut master = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    for r in ladder {
        let bandwidth = u64::from(r.kbps + cairn_job::video::AUDIO_KBPS) * 1000;
        let _ = write!(
            master,
            "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={}x{},FRAME-RATE={}\n{r}.m3u8\n",
            r.width_for(picture.width, picture.height),
            r.height,
            r.fps,
        );
    }
    master
}

/// A folder removed, with what is in it, when this is dropped.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new empty folder beside `into` (on the same file system) for the
/// clip's copy; the split removes it.
fn clip_folder(into: &Path) -> Result<PathBuf, ExecError> {
    let parent = into.parent().unwrap_or(Path::new("."));
    for attempt in 0..100u32 {
        let dir = parent.join(format!(".cairn-clip-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ExecError::io(format!("creating {}", dir.display()))(e)),
        }
    }
    Err(ExecError::Media(format!(
        "no folder for the clip could be made in {}",
        parent.display()
    )))
}

/// A time ffmpeg printed (`2.002000`): finite and not negative.
fn seconds(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
}

#[cfg(test)]
mod tests;
