//! A clip split, encoded into a ladder through the tool runtime, and
//! assembled; then the transcoders an attacker would run, each named by
//! assembly before anything is listed. These need bubblewrap and ffmpeg
//! (see `install_test_tools`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cairn_job::Job;

use super::*;
use crate::tool::{ToolRuntime, install_test_tools};
use crate::{Runtime, Task};

/// A 6 s clip split into 2 s segments, encoded into 180p30 and 360p30
/// through the tool runtime, each task on its own, into one folder: what
/// a requester has once every result is back. Made once; each test
/// works on a copy.
fn encoded() -> &'static Path {
    static ENCODED: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &ENCODED
        .get_or_init(|| {
            install_test_tools();
            let dir = tempfile::tempdir().unwrap();
            generate_clip(&dir.path().join("clip.mp4"), 6, 320, 180).unwrap();
            let job_file = dir.path().join("job.toml");
            std::fs::write(
                &job_file,
                "[job]\nruntime = \"tool\"\nmodule = \"ffmpeg@5\"\n\
                 [video]\ninput = \"clip.mp4\"\nrenditions = [\"180p30:300k\", \"360p30:600k\"]\n",
            )
            .unwrap();
            let job = Job::load(&job_file, &[]).unwrap();
            let segments_dir = dir.path().join("segments");
            std::fs::create_dir(&segments_dir).unwrap();
            let tools = VideoTools::new(&ToolConfig::default()).unwrap();
            let (segments, picture) = tools
                .split(
                    &job.video
                        .as_ref()
                        .unwrap()
                        .input
                        .as_ref()
                        .unwrap()
                        .host_path,
                    2,
                    &segments_dir,
                )
                .unwrap();
            assert_eq!(
                picture,
                Picture {
                    width: 320,
                    height: 180
                }
            );
            assert_eq!(segments.len(), 3, "{segments:?}");
            let total: f64 = segments.iter().map(|s| s.duration_s).sum();
            assert!((total - 6.0).abs() < 0.1, "{segments:?}");
            let job = job.segmented(segments, picture).unwrap();
            assert_eq!(job.tasks().len(), 6);

            let runtime = ToolRuntime::new(ToolConfig::default()).unwrap();
            let module = runtime.load(b"ffmpeg@5").unwrap();
            let out = dir.path().join("out");
            std::fs::create_dir(&out).unwrap();
            for task in job.tasks() {
                let own = dir.path().join(format!("task-{}", task.index));
                std::fs::create_dir(&own).unwrap();
                let result = runtime
                    .run(&Task {
                        module,
                        args: &task.args,
                        seed: task.seed,
                        input_dir: Some(&segments_dir),
                        output_dir: &own,
                        expected_outputs: &task.outputs,
                        limits: job.limits,
                    })
                    .unwrap();
                assert!(
                    result.outcome.is_success(),
                    "task {}: {}",
                    task.index,
                    String::from_utf8_lossy(&result.stderr)
                );
                let name = &task.outputs[0];
                std::fs::rename(own.join(name), out.join(name)).unwrap();
            }
            (dir, out)
        })
        .1
}

/// A copy of [`encoded`]'s folder to tamper with.
fn copy_of_encoded() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(encoded()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    copy
}

/// Every file name in `folder`: what a requester wrote there.
fn names(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn tools() -> VideoTools {
    install_test_tools();
    VideoTools::new(&ToolConfig::default()).unwrap()
}

/// Re-encodes `file` in `folder` in place with the video filter `filter`,
/// keeping its timestamps: a transcoder's own idea of the segment.
fn reencode(folder: &Path, file: &str, filter: &str) {
    let tampered = folder.join("tampered.ts");
    let done = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-copyts", "-i"])
        .arg(folder.join(file))
        .args([
            "-vf",
            filter,
            "-fps_mode",
            "passthrough",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args([
            "-c:a",
            "copy",
            "-muxdelay",
            "0",
            "-muxpreload",
            "0",
            "-f",
            "mpegts",
        ])
        .arg(&tampered)
        .status()
        .unwrap();
    assert!(done.success());
    std::fs::rename(tampered, folder.join(file)).unwrap();
}

/// Asserts assembly refused `folder`, saying `why`, and listed nothing.
fn assert_refused(folder: &Path, why: &str) {
    let refused = tools()
        .assemble(folder, &names(folder))
        .unwrap_err()
        .to_string();
    assert!(refused.contains(why), "{refused}");
    for listed in ["master.m3u8", "180p30.m3u8", "360p30.m3u8"] {
        assert!(!folder.join(listed).exists(), "{listed} was written");
    }
}

#[test]
fn an_honest_ladder_assembles_into_playlists_that_play_every_frame_of_the_clip() {
    let folder = copy_of_encoded();
    let assembled = tools()
        .assemble(folder.path(), &names(folder.path()))
        .unwrap();
    let summary: Vec<_> = assembled
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.picture.width,
                r.picture.height,
                r.segments,
                r.frames,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("180p30", 320, 180, 3, 180), ("360p30", 640, 360, 3, 180)]
    );
    assert_eq!(assembled[1].pixels, 640 * 360 * 180);
    let master = std::fs::read_to_string(folder.path().join("master.m3u8")).unwrap();
    assert!(
        master.contains("RESOLUTION=640x360,FRAME-RATE=30.000\n360p30.m3u8"),
        "{master}"
    );
    for (name, size) in [("180p30", "320,180"), ("360p30", "640,360")] {
        let played = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "stream=width,height,nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(folder.path().join(format!("{name}.m3u8")))
            .output()
            .unwrap();
        let played = String::from_utf8_lossy(&played.stdout);
        assert_eq!(
            played.lines().next(),
            Some(format!("{size},180").as_str()),
            "{name}"
        );
    }
}

#[test]
fn a_transcoder_that_encodes_a_smaller_picture_is_named() {
    let folder = copy_of_encoded();
    reencode(folder.path(), "360p30_0001.ts", "scale=-2:180");
    assert_refused(folder.path(), "segment 1 of 360p30 is 320x180, not 640x360");
}

#[test]
fn a_transcoder_that_drops_frames_is_named() {
    let folder = copy_of_encoded();
    reencode(folder.path(), "180p30_0002.ts", "select='not(mod(n\\,2))'");
    assert_refused(folder.path(), "frames dropped, or another part of the clip");
}

#[test]
fn a_transcoder_that_returns_another_segment_is_named() {
    let folder = copy_of_encoded();
    std::fs::copy(
        folder.path().join("360p30_0000.ts"),
        folder.path().join("360p30_0002.ts"),
    )
    .unwrap();
    assert_refused(folder.path(), "segment 2 of 360p30");
}

#[test]
fn a_missing_segment_is_named() {
    let folder = copy_of_encoded();
    std::fs::remove_file(folder.path().join("180p30_0001.ts")).unwrap();
    assert_refused(folder.path(), "rendition 180p30 has no segment 1");
}

#[test]
fn a_file_that_is_no_video_is_refused_by_name() {
    let folder = copy_of_encoded();
    std::fs::write(folder.path().join("180p30_0001.ts"), b"not a video").unwrap();
    assert_refused(folder.path(), "ffprobe cannot read 180p30_0001.ts");
}

#[test]
fn a_folder_without_segments_assembles_to_nothing() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("frame-0001.bmp"), b"BM").unwrap();
    assert!(
        tools()
            .assemble(folder.path(), &names(folder.path()))
            .unwrap()
            .is_empty()
    );
    assert!(!folder.path().join("master.m3u8").exists());
}

#[test]
fn only_segment_names_of_a_rendition_are_read() {
    for (file, is) in [
        ("240p30_0003.ts", true),
        ("240p30_003.ts", false),
        ("240p30_0003.mp4", false),
        ("241p30_0003.ts", false),
        ("0240p30_0003.ts", false),
        ("../240p30_0003.ts", false),
        ("240p30_000a.ts", false),
        ("240p30_12345.ts", true),
        ("240p30_01234.ts", false),
        ("240p30_+123.ts", false),
    ] {
        assert_eq!(is_segment_output(file), is, "{file}");
    }
}

/// A live split's list is read as it grows: a line is taken once whole,
/// each once, in order; a line naming another segment than the one due,
/// or a segment that is a link, stops the stream with its name.
#[test]
fn a_live_splits_segments_are_read_once_whole_and_checked() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let list = dir.join(SEGMENT_LIST);
    let mut live = LiveSegments::new(dir);
    assert!(live.finished().unwrap().is_empty(), "no list yet");
    std::fs::write(dir.join("seg-0000.ts"), b"first").unwrap();
    std::fs::write(&list, "seg-0000.ts,0.000000,2.0").unwrap();
    assert!(live.finished().unwrap().is_empty(), "a line not whole yet");
    std::fs::write(
        &list,
        "seg-0000.ts,0.000000,2.000000
",
    )
    .unwrap();
    let first = live.finished().unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].file.name, "seg-0000.ts");
    assert_eq!(first[0].file.id, ContentId::of(b"first"));
    assert!((first[0].duration_s - 2.0).abs() < 1e-9);
    assert!(live.finished().unwrap().is_empty(), "each once");
    std::fs::write(dir.join("seg-0001.ts"), b"second").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("seg-0002.ts")).unwrap();
    let mut text = std::fs::read_to_string(&list).unwrap();
    text.push_str(
        "seg-0001.ts,2.000000,4.000000
",
    );
    std::fs::write(&list, &text).unwrap();
    assert_eq!(live.finished().unwrap()[0].file.name, "seg-0001.ts");
    text.push_str(
        "seg-0002.ts,4.000000,6.000000
",
    );
    std::fs::write(&list, &text).unwrap();
    let refused = live.finished().unwrap_err().to_string();
    assert!(
        refused.contains("seg-0002.ts is not a plain file"),
        "{refused}"
    );

    let mut skipped = LiveSegments::new(dir);
    std::fs::write(
        &list,
        "seg-0001.ts,0.000000,2.000000
",
    )
    .unwrap();
    let refused = skipped.finished().unwrap_err().to_string();
    assert!(refused.contains("where seg-0000.ts was due"), "{refused}");
}

#[test]
fn a_file_that_is_no_video_cannot_be_split() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    std::fs::write(&clip, b"not a video").unwrap();
    let into = dir.path().join("segments");
    std::fs::create_dir(&into).unwrap();
    let refused = tools().split(&clip, 2, &into).unwrap_err().to_string();
    assert!(refused.contains("ffprobe cannot read clip"), "{refused}");
}

#[test]
fn a_transcoder_that_squashes_the_picture_is_named() {
    let folder = copy_of_encoded();
    for segment in 0..3 {
        reencode(
            folder.path(),
            &format!("360p30_{segment:04}.ts"),
            "scale=480:360",
        );
    }
    assert_refused(
        folder.path(),
        "segment 0 of 360p30 is 480x360, not the shape of 180p30",
    );
}

#[test]
fn a_playlist_passed_off_as_a_segment_is_not_read_as_one() {
    let folder = copy_of_encoded();
    std::fs::write(
        folder.path().join("180p30_0001.ts"),
        "#EXTM3U\n#EXTINF:2.0,\n180p30_0001.ts\n#EXTINF:2.0,\n180p30_0000.ts\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    assert_refused(folder.path(), "ffprobe cannot read 180p30_0001.ts");
}

/// A download into a folder an earlier one used: only the files written
/// now are listed, not a segment left from before.
#[test]
fn a_segment_left_in_the_folder_from_before_is_not_listed() {
    let folder = copy_of_encoded();
    let written = names(folder.path());
    std::fs::copy(
        folder.path().join("180p30_0002.ts"),
        folder.path().join("180p30_0003.ts"),
    )
    .unwrap();
    let assembled = tools().assemble(folder.path(), &written).unwrap();
    assert_eq!(assembled[0].segments, 3);
    let playlist = std::fs::read_to_string(folder.path().join("180p30.m3u8")).unwrap();
    assert!(!playlist.contains("180p30_0003.ts"), "{playlist}");
}
