//! Video jobs on the requester's side: the clip split into segments before
//! a job is run or submitted, and the renditions assembled into HLS
//! playlists once the results are written (`cairn_exec::tool::video`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_exec::tool::ToolConfig;
use cairn_exec::tool::video::{VideoTools, is_segment_output};
use cairn_job::Job;
use serde_json::{Value, json};

/// A job file loaded, with a video job's segments, which live as long as
/// this does.
pub struct Loaded {
    /// The job, its tasks expanded.
    pub job: Job,
    /// Where a video job's segments are.
    _segments: Option<tempfile::TempDir>,
}

/// Loads the job file at `path` (module and inputs from its folder or
/// `allowed`); a video job's clip is split at its keyframes first.
pub fn load(path: &Path, allowed: &[PathBuf]) -> anyhow::Result<Loaded> {
    let job =
        Job::load_allowing(path, &cairn_workloads::names(), allowed).map_err(anyhow::Error::msg)?;
    let Some(video) = job.video.clone() else {
        return Ok(Loaded {
            job,
            _segments: None,
        });
    };
    let Some(input) = &video.input else {
        anyhow::bail!(
            "{}: a [video] without an input is a live stream: run it with `cairn job stream`",
            path.display()
        );
    };
    let folder = tempfile::Builder::new()
        .prefix("cairn-segments-")
        .tempdir()
        .context("a folder for the clip's segments")?;
    let tools = VideoTools::new(&ToolConfig::default())?;
    let (segments, picture) = tools
        .split(&input.host_path, video.segment_s, folder.path())
        .with_context(|| format!("{}: video.input", path.display()))?;
    eprintln!(
        "{}: {} segments of about {} s, {}x{}, into {} renditions",
        input.host_path.display(),
        segments.len(),
        video.segment_s,
        picture.width,
        picture.height,
        video.renditions.len()
    );
    let job = job
        .segmented(segments, picture)
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
    Ok(Loaded {
        job,
        _segments: Some(folder),
    })
}

/// When `outputs` (names written into `out`) hold renditions' segments:
/// checks them against each other and writes a playlist per rendition and
/// `master.m3u8` into `out`, says so, and returns what each rendition
/// holds. Only the files named are read (not what an earlier download
/// left in `out`). A check that fails is said, and returned as the
/// `error`: the files stay, for the user to look at.
pub fn assemble<'a>(out: &Path, outputs: impl Iterator<Item = &'a str>) -> Option<Value> {
    let files: Vec<String> = outputs
        .filter(|name| is_segment_output(name))
        .map(str::to_owned)
        .collect();
    if files.is_empty() {
        return None;
    }
    let assembled =
        VideoTools::new(&ToolConfig::default()).and_then(|tools| tools.assemble(out, &files));
    let renditions = match assembled {
        Ok(renditions) => renditions,
        Err(e) => {
            eprintln!("cairn: warning: the renditions were not assembled into HLS playlists: {e}");
            return Some(json!({ "error": e.to_string() }));
        }
    };
    let mut listed = Vec::new();
    for r in &renditions {
        eprintln!(
            "  {}.m3u8: {} segments, {:.1} s, {}x{}, {} frames, {:.1} Mpixels, peak {} kb/s",
            r.name,
            r.segments,
            r.duration_s,
            r.picture.width,
            r.picture.height,
            r.frames,
            r.pixels as f64 / 1e6,
            r.peak_bps / 1000
        );
        listed.push(json!({
            "rendition": r.name,
            "playlist": format!("{}.m3u8", r.name),
            "width": r.picture.width,
            "height": r.picture.height,
            "segments": r.segments,
            "frames": r.frames,
            "pixels": r.pixels,
            "duration_s": r.duration_s,
            "peak_bps": r.peak_bps,
            "average_bps": r.average_bps,
        }));
    }
    eprintln!("HLS: {}", out.join("master.m3u8").display());
    Some(json!({ "master": "master.m3u8", "renditions": listed }))
}
