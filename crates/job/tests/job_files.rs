//! Job files: what loads, and the exact error for each kind of mistake.

use std::path::{Path, PathBuf};

use cairn_job::{Job, JobError, ModuleRef, Runtime, VerifyPolicy};

const BUILTINS: &[&str] = &["render", "hashsearch"];

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        let dir = Self(tempfile::tempdir().unwrap());
        std::fs::write(dir.path().join("scene.json"), "{}").unwrap();
        std::fs::write(dir.path().join("prog.wasm"), b"\0asm\x01\0\0\0").unwrap();
        dir
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn job(&self, text: &str) -> PathBuf {
        let path = self.path().join("job.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load(&self, text: &str) -> Result<Job, JobError> {
        Job::load(&self.job(text), BUILTINS)
    }

    fn error(&self, text: &str) -> JobError {
        self.load(text)
            .expect_err("the job should have been refused")
    }
}

const GOOD: &str = r#"
[job]
name = "orbit"
module = "cairn:render"
args = ["--frame", "{task}", "--out", "/output/frame-{task:04}.png"]
seed = 7

[tasks]
range = [0, 3]

[inputs]
files = ["scene.json"]

[outputs]
paths = ["frame-{task:04}.png"]

[limits]
fuel = 1000000
memory_mib = 64
wall_time_s = 30
output_mib = 2
stdout_kib = 8

[market]
budget_ucairn = 1000
price_max_ucairn_per_gfuel = 50

[verify]
policy = "replicate"
replicas = 3
"#;

#[test]
fn a_complete_job_loads_and_expands() {
    let dir = Dir::new();
    let job = dir.load(GOOD).unwrap();
    assert_eq!(job.name, "orbit");
    assert_eq!(job.module, ModuleRef::Builtin("render".into()));
    assert_eq!(job.tasks().len(), 3);
    let task = &job.tasks()[2];
    assert_eq!(task.value, 2);
    assert_eq!(
        task.args,
        ["--frame", "2", "--out", "/output/frame-0002.png"]
    );
    assert_eq!(task.outputs, ["frame-0002.png"]);
    assert_ne!(job.tasks()[0].seed, job.tasks()[1].seed);
    assert_eq!(job.limits.memory_bytes, 64 << 20);
    assert_eq!(job.limits.output_bytes, 2 << 20);
    assert_eq!(job.limits.stdout_bytes, 8 << 10);
    assert_eq!(job.inputs[0].name, "scene.json");
    assert_eq!(job.inputs[0].size_bytes, 2);
    assert_eq!(job.verify, VerifyPolicy::Replicate { replicas: 3 });
    assert_eq!(job.market.budget_ucairn, Some(1000));
}

#[test]
fn task_seeds_depend_on_job_seed_and_value_only() {
    let dir = Dir::new();
    let a = dir.load(GOOD).unwrap();
    let b = dir
        .load(&GOOD.replace("range = [0, 3]", "list = [2, 0]"))
        .unwrap();
    assert_eq!(a.tasks()[2].seed, b.tasks()[0].seed);
    let c = dir.load(&GOOD.replace("seed = 7", "seed = 8")).unwrap();
    assert_ne!(a.tasks()[0].seed, c.tasks()[0].seed);
}

#[test]
fn module_path_is_relative_to_the_job_file() {
    let dir = Dir::new();
    let job = dir
        .load("[job]\nmodule = \"prog.wasm\"\n[tasks]\nlist = [5]\n")
        .unwrap();
    assert_eq!(job.module, ModuleRef::File(dir.path().join("prog.wasm")));
    assert_eq!(job.verify, VerifyPolicy::Adaptive { confidence: 0.999 });
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let dir = Dir::new();
    let err = dir.error(&GOOD.replace("wall_time_s = 30", "wall_time = 30"));
    let text = err.to_string();
    assert_eq!(err.location.map(|l| l.0), Some(20), "{text}");
    assert!(text.contains("unknown field `wall_time`"), "{text}");
    assert!(
        text.contains("wall_time_s"),
        "the error should list what was expected: {text}"
    );
    assert!(
        text.starts_with(&dir.path().join("job.toml").display().to_string()),
        "{text}"
    );
}

#[test]
fn wrong_type_is_named() {
    let dir = Dir::new();
    let err = dir.error(&GOOD.replace("fuel = 1000000", "fuel = \"lots\""));
    let text = err.to_string();
    assert_eq!(err.location.map(|l| l.0), Some(18), "{text}");
    assert!(text.contains("invalid type"), "{text}");
    assert!(
        text.contains("fuel = \"lots\""),
        "the offending line is shown: {text}"
    );
}

#[test]
fn missing_module_key_is_named() {
    let dir = Dir::new();
    let err = dir.error("[job]\nargs = []\n[tasks]\nrange = [0, 1]\n");
    assert!(err.to_string().contains("missing field `module`"), "{err}");
}

#[test]
fn missing_module_file_is_named() {
    let dir = Dir::new();
    let err = dir.error("[job]\nmodule = \"nope.wasm\"\n[tasks]\nrange = [0, 1]\n");
    assert_eq!(err.key, "job.module");
    assert_eq!(err.location, Some((2, 10)));
    assert!(err.message.contains("cannot read"), "{err}");
    assert!(err.message.contains("nope.wasm"), "{err}");
}

#[test]
fn unknown_builtin_lists_the_known_ones() {
    let dir = Dir::new();
    let err = dir.error("[job]\nmodule = \"cairn:blender\"\n[tasks]\nrange = [0, 1]\n");
    assert_eq!(err.key, "job.module");
    assert!(
        err.message.contains("cairn:render, cairn:hashsearch"),
        "{err}"
    );
}

#[test]
fn empty_task_sets_are_refused() {
    let dir = Dir::new();
    let err = dir.error(&GOOD.replace("range = [0, 3]", "range = [3, 3]"));
    assert_eq!(err.key, "tasks.range");
    assert!(err.message.contains("empty"), "{err}");
    let err = dir.error(&GOOD.replace("range = [0, 3]", "list = []"));
    assert_eq!(err.key, "tasks.list");
    assert!(err.message.contains("empty"), "{err}");
    let err = dir.error(&GOOD.replace("range = [0, 3]", ""));
    assert_eq!(err.key, "tasks");
}

#[test]
fn malformed_task_sets_are_refused() {
    let dir = Dir::new();
    let err = dir.error(&GOOD.replace("range = [0, 3]", "range = [0, 3, 4]"));
    assert!(err.message.contains("two numbers"), "{err}");
    let err = dir.error(&GOOD.replace("range = [0, 3]", "list = [1, 2, 1]"));
    assert!(err.message.contains("appears twice"), "{err}");
    let err = dir.error(&GOOD.replace("range = [0, 3]", "range = [0, 3]\nlist = [1]"));
    assert!(err.message.contains("not several"), "{err}");
    let err = dir.error(&GOOD.replace("range = [0, 3]", "range = [0, 2000000]"));
    assert!(err.message.contains("the limit is 1000000"), "{err}");
}

#[test]
fn limits_out_of_range_are_refused() {
    let dir = Dir::new();
    for (from, to, key) in [
        ("fuel = 1000000", "fuel = 0", "limits.fuel"),
        ("memory_mib = 64", "memory_mib = 5000", "limits.memory_mib"),
        ("wall_time_s = 30", "wall_time_s = 0", "limits.wall_time_s"),
        ("output_mib = 2", "output_mib = 0", "limits.output_mib"),
        ("stdout_kib = 8", "stdout_kib = 999999", "limits.stdout_kib"),
    ] {
        let err = dir.error(&GOOD.replace(from, to));
        assert_eq!(err.key, key, "{err}");
        assert!(err.message.contains("out of range; expected"), "{err}");
        assert!(err.to_string().contains(to), "the line is shown: {err}");
    }
    let err = dir.error(&GOOD.replace("fuel = 1000000", "fuel = -5"));
    assert!(err.to_string().contains("fuel = -5"), "{err}");
}

#[test]
fn bad_templates_and_paths_are_refused() {
    let dir = Dir::new();
    let err = dir.error(&GOOD.replace("\"{task}\"", "\"{frame}\""));
    assert_eq!(err.key, "job.args");
    assert!(
        err.message.contains("unknown placeholder '{frame}'"),
        "{err}"
    );
    let err = dir.error(&GOOD.replace("paths = [\"frame", "paths = [\"../frame"));
    assert!(err.message.contains("leaves the output folder"), "{err}");
    for (bad, why) in [
        ("cairn-summary.json", "reserved for Cairn's own files"),
        ("cairn-logs/task-0.stdout", "reserved for Cairn's own files"),
        ("./cairn-logs/task-0.stdout", "empty or '.' part"),
        ("a//b.png", "empty or '.' part"),
        ("/etc/passwd", "is absolute"),
    ] {
        let err = dir.error(&GOOD.replace(
            "paths = [\"frame-{task:04}.png",
            &format!("paths = [\"{bad}"),
        ));
        assert_eq!(err.key, "outputs.paths", "{err}");
        assert!(err.message.contains(why), "{bad}: {err}");
    }
    let err = dir.error(&GOOD.replace("paths = [\"frame", "paths = [\"/frame"));
    assert!(err.message.contains("absolute"), "{err}");
}

#[test]
fn inputs_must_exist_and_be_distinct() {
    let dir = Dir::new();
    let err = dir.error(&GOOD.replace("files = [\"scene.json\"]", "files = [\"missing.json\"]"));
    assert_eq!(err.key, "inputs.files");
    assert!(err.message.contains("missing.json"), "{err}");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/scene.json"), "{}").unwrap();
    let err = dir.error(&GOOD.replace(
        "files = [\"scene.json\"]",
        "files = [\"scene.json\", \"sub/scene.json\"]",
    ));
    assert!(
        err.message.contains("two inputs are named 'scene.json'"),
        "{err}"
    );
}

/// A job file from someone else that tries to send the user's files to
/// providers: every way out of the job's folder is refused, with the flag
/// that allows it, and the flag allows exactly the folder it names.
#[test]
fn host_file_reader_job_is_refused() {
    let dir = Dir::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "secret").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
    let secret = outside.path().join("secret").display().to_string();
    let climbing = format!(
        "../{}/secret",
        outside.path().file_name().unwrap().to_string_lossy()
    );
    for file in ["/etc/passwd", climbing.as_str(), secret.as_str(), "link"] {
        let err = dir.error(&GOOD.replace("\"scene.json\"", &format!("{file:?}")));
        assert_eq!(err.key, "inputs.files", "{file}");
        assert!(err.message.contains("--allow-inputs-from"), "{err}");
    }
    let err = dir.error(&GOOD.replace("\"cairn:render\"", "\"/etc/passwd\""));
    assert_eq!(err.key, "job.module");
    assert!(err.message.contains("outside the job's folder"), "{err}");

    let text = GOOD.replace("\"scene.json\"", &format!("{secret:?}"));
    let path = dir.job(&text);
    let job = Job::load_allowing(&path, BUILTINS, &[outside.path().to_path_buf()]).unwrap();
    assert_eq!(job.inputs[0].name, "secret");
    let err = Job::load_allowing(
        &dir.job(&GOOD.replace("\"scene.json\"", "\"/etc/passwd\"")),
        BUILTINS,
        &[outside.path().to_path_buf()],
    )
    .unwrap_err();
    assert_eq!(err.key, "inputs.files");
}

/// A job name names the results folder: one that climbs out is refused.
#[test]
fn folder_escaping_job_name_is_refused() {
    let dir = Dir::new();
    for name in ["../../etc", "a/b", ".", ""] {
        let err = dir.error(&GOOD.replace("name = \"orbit\"", &format!("name = {name:?}")));
        assert_eq!(err.key, "job.name", "{name}");
    }
}

#[test]
fn unsupported_runtime_is_named() {
    let dir = Dir::new();
    let err = dir.error(&GOOD.replace("[job]\n", "[job]\nruntime = \"container\"\n"));
    assert_eq!(err.key, "job.runtime");
    assert!(
        err.message.contains("'container' is not supported"),
        "{err}"
    );
}

#[test]
fn a_tool_job_names_an_installed_tool_and_nothing_else() {
    let dir = Dir::new();
    let tool = GOOD.replace("[job]\n", "[job]\nruntime = \"tool\"\n");
    let job = dir
        .load(&tool.replace("\"cairn:render\"", "\"ffmpeg@5.1\""))
        .unwrap();
    assert_eq!(job.runtime, Runtime::Tool);
    assert_eq!(job.module.runtime_name(), "ffmpeg@5.1");
    // The example file asks for three replicas; a tool job may also be
    // spot-checked, never taken on one provider's word nor on trust built
    // elsewhere, and is checked by two when it says nothing.
    assert_eq!(job.verify, VerifyPolicy::Replicate { replicas: 3 });
    let policy = |to: &str| {
        tool.replace("policy = \"replicate\"\nreplicas = 3", to)
            .replace("\"cairn:render\"", "\"ffmpeg@5.1\"")
    };
    let spot = dir
        .load(&policy("policy = \"spot\"\nprobability = 0.25"))
        .unwrap();
    assert_eq!(spot.verify, VerifyPolicy::Spot { probability: 0.25 });
    for refused in ["policy = \"none\"", "policy = \"adaptive\""] {
        let err = dir.error(&policy(refused));
        assert_eq!(err.key, "verify.policy", "{err}");
        assert!(
            err.message.contains("never taken on one provider's word"),
            "{err}"
        );
    }
    let silent = tool.replace("[verify]\npolicy = \"replicate\"\nreplicas = 3\n", "");
    let job = dir
        .load(&silent.replace("\"cairn:render\"", "\"ffmpeg@5.1\""))
        .unwrap();
    assert_eq!(job.verify, VerifyPolicy::Replicate { replicas: 2 });
    // A path or a built-in is not a tool, and a version is whole numbers.
    for module in ["\"cairn:render\"", "\"/usr/bin/ffmpeg\"", "\"ffmpeg@5.x\""] {
        let err = dir.error(&tool.replace("\"cairn:render\"", module));
        assert_eq!(err.key, "job.module", "{module}");
        assert!(err.message.contains("installed tool"), "{err}");
    }
}

#[test]
fn frames_in_flamencos_syntax_expand_in_order() {
    let dir = Dir::new();
    let frames = |spec: &str| GOOD.replace("range = [0, 3]", &format!("frames = {spec:?}"));
    let job = dir.load(&frames("1-3, 10,7 - 8")).unwrap();
    let values: Vec<u64> = job.tasks().iter().map(|t| t.value).collect();
    assert_eq!(values, [1, 2, 3, 10, 7, 8]);
    for bad in [
        "",
        "3-1",
        "1-3, 2",
        "a-b",
        "1-",
        "0-99999999999999",
        "1, 0-18446744073709551615",
    ] {
        let err = dir.error(&frames(bad));
        assert_eq!(err.key, "tasks.frames", "{bad}: {err}");
    }
    let both = GOOD.replace("range = [0, 3]", "range = [0, 3]\nframes = \"1\"");
    assert_eq!(dir.error(&both).key, "tasks");
}

/// The Blender example's job file, its frames split as `tiles` says.
fn blender_example(tiles: Option<&str>) -> String {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/blender");
    let text = std::fs::read_to_string(folder.join("job.toml")).unwrap();
    let text = text.replace("files = [\"scene.py\"]", "files = []");
    match tiles {
        Some(tiles) => text.replace("# tiles = \"2x2\"", &format!("tiles = {tiles:?}")),
        None => text,
    }
}

#[test]
fn frames_split_into_tiles_are_a_task_each_paid_for_its_share() {
    let dir = Dir::new();
    let whole = dir.load(&blender_example(None)).unwrap();
    let tiled = dir.load(&blender_example(Some("3x2"))).unwrap();
    assert_eq!(whole.tasks().len(), 12);
    assert_eq!(tiled.tasks().len(), 12 * 6);
    // A whole frame names no tile and renders the whole border.
    let frame = &whole.tasks()[0];
    assert_eq!(frame.outputs, ["frame-0001.bmp"]);
    assert_eq!(
        frame.args[frame.args.len() - 2..],
        ["/output/frame-0001.bmp", "0,1,0,1"]
    );
    // A frame's tiles follow one another, top row first, left to right,
    // each with its frame's value and seed.
    let tiles: Vec<_> = tiled.tasks().iter().filter(|t| t.value == 2).collect();
    assert_eq!(tiles.len(), 6);
    assert_eq!(tiles[0].index, 6);
    assert_eq!(tiles[0].outputs, ["frame-0002-tile-0-0-of-3x2.bmp"]);
    assert_eq!(tiles[0].args.last().unwrap(), "0,0.3333333333333333,0.5,1");
    assert_eq!(tiles[5].outputs, ["frame-0002-tile-2-1-of-3x2.bmp"]);
    assert_eq!(tiles[5].args.last().unwrap(), "0.6666666666666666,1,0,0.5");
    assert!(tiles.iter().all(|t| t.seed == whole.tasks()[1].seed));
    // Each tile declares its share of the frame's work, and nothing more
    // is offered to bidders.
    assert_eq!(tiled.limits.fuel, whole.limits.fuel.div_ceil(6));
    assert!(
        tiled
            .tasks()
            .iter()
            .all(|t| t.limits(&tiled.limits).fuel == tiled.limits.fuel)
    );
}

#[test]
fn tiles_that_would_split_nothing_or_collide_are_refused() {
    let dir = Dir::new();
    for (tiles, reason) in [
        ("1x1", "splits nothing"),
        ("0x2", "1 to 16 columns"),
        ("2x17", "1 to 16 rows"),
        ("2 by 2", "COLUMNSxROWS"),
    ] {
        let err = dir.error(&blender_example(Some(tiles)));
        assert_eq!(err.key, "tasks.tiles", "{tiles}: {err}");
        assert!(err.message.contains(reason), "{tiles}: {err}");
    }
    // Frames times tiles within the task limit.
    let err = dir.error(&blender_example(Some("16x16")).replace("\"1-12\"", "\"1-4000\""));
    assert_eq!(err.key, "tasks.tiles");
    assert!(
        err.message
            .contains("4000 frames of 256 tiles each: 1024000 tasks"),
        "{err}"
    );
    // Outputs that do not name their tile would be one file per frame;
    // ones that name it elsewhere than before the extension would not be
    // joined.
    for output in [
        "frame-{task:04}.bmp",
        "f{tile}-{task}.bmp",
        "f{tile}/x.bmp",
        "{tile}.bmp",
        "frame-{task:04}{tile}.png",
    ] {
        let text = blender_example(Some("2x2"))
            .replace("\"frame-{task:04}{tile}.bmp\"]", &format!("{output:?}]"));
        let err = dir.error(&text);
        assert_eq!(err.key, "tasks.tiles", "{output}: {err}");
        assert!(err.message.contains("'{tile}'"), "{output}: {err}");
    }
    // A Wasm task's fuel bounds it: a tile's share would stop it.
    let err = dir.error(&GOOD.replace("range = [0, 3]", "range = [0, 3]\ntiles = \"2x2\""));
    assert_eq!(err.key, "tasks.tiles");
    assert!(err.message.contains("runtime = \"tool\""), "{err}");
    let err = dir.error(&GOOD.replace("{task:04}.png\"]", "{tsak}.png\"]"));
    assert!(err.message.contains("'{tile}' or '{border}'"), "{err}");
}

#[test]
fn verify_policies_are_checked() {
    let dir = Dir::new();
    let err = dir.error(&GOOD.replace("policy = \"replicate\"", "policy = \"vibes\""));
    assert_eq!(err.key, "verify.policy");
    let err = dir.error(&GOOD.replace("replicas = 3", "replicas = 1"));
    assert_eq!(err.key, "verify.replicas");
    let err = dir.error(&GOOD.replace("policy = \"replicate\"", "policy = \"spot\""));
    assert_eq!(err.key, "verify.replicas");
    assert!(
        err.message
            .contains("only valid with policy = \"replicate\""),
        "{err}"
    );
    let spot = GOOD.replace(
        "policy = \"replicate\"\nreplicas = 3",
        "policy = \"spot\"\nprobability = 1.5",
    );
    assert_eq!(dir.error(&spot).key, "verify.probability");
}

#[test]
fn budget_that_cannot_pay_for_one_task_is_refused() {
    let dir = Dir::new();
    let err = dir.error(&GOOD.replace("budget_ucairn = 1000", "budget_ucairn = 0"));
    assert_eq!(err.key, "market.budget_ucairn");
    assert!(err.message.contains("cannot pay for one task"), "{err}");
}

#[test]
fn syntax_errors_point_at_the_line() {
    let dir = Dir::new();
    let err = dir.error("[job]\nmodule = \"cairn:render\n[tasks]\n");
    assert_eq!(err.location.map(|l| l.0), Some(2), "{err}");
}

#[test]
fn unreadable_job_file_is_an_error_not_a_panic() {
    let err = Job::load(Path::new("/nonexistent/job.toml"), BUILTINS).unwrap_err();
    assert!(err.to_string().contains("cannot read job file"), "{err}");
}

#[test]
fn the_output_path_rule_refuses_every_escape_and_collision() {
    use cairn_job::{OUTPUT_PATH_BYTES_MAX, check_output_path};
    for good in [
        "frame.png",
        "a/b/c.txt",
        "frames/0001.png",
        "..hidden",
        "x/cairn-y",
    ] {
        assert!(check_output_path(good).is_ok(), "{good}");
    }
    let long = "a".repeat(OUTPUT_PATH_BYTES_MAX + 1);
    for bad in [
        "",
        "/abs",
        "..",
        "../up",
        "a/../../up",
        "a/./b",
        "a//b",
        "a/",
        "nul\0byte",
        "cairn-results.json",
        "cairn-summary.json",
        "cairn-logs/task-0.stdout",
        long.as_str(),
    ] {
        assert!(check_output_path(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn an_argument_multiplier_is_refused_before_it_expands() {
    // 256 arguments of `{task}` over 100,000 tasks: a 3 KiB job file that
    // would expand to over a gigabyte of strings.
    let args = vec!["\"{task}\""; 256].join(", ");
    let text = GOOD
        .replace(
            r#"args = ["--frame", "{task}", "--out", "/output/frame-{task:04}.png"]"#,
            &format!("args = [{args}]"),
        )
        .replace("range = [0, 3]", "range = [0, 100000]");
    assert!(text.len() < 4096);
    let err = Dir::new().error(&text);
    assert!(err.message.contains("the limit is 268435456"), "{err}");
    assert!(err.message.contains("split the job"), "{err}");
}

const VIDEO: &str = r#"
[job]
name = "ladder"
runtime = "tool"
module = "ffmpeg@5"

[video]
input = "scene.json"
"#;

#[test]
fn a_video_job_takes_livepeers_ladder_and_has_no_tasks_until_its_clip_is_split() {
    let dir = Dir::new();
    let job = dir.load(VIDEO).unwrap();
    let video = job.video.as_ref().unwrap();
    assert_eq!(video.segment_s, 2);
    let ladder: Vec<String> = video.renditions.iter().map(|r| r.to_string()).collect();
    assert_eq!(ladder, ["240p30", "360p30", "720p30"]);
    assert_eq!(video.renditions[2].kbps, 4000);
    assert!(!video.fuel_declared);
    assert!(job.tasks().is_empty() && job.inputs.is_empty());
    assert_eq!(
        job.limits.memory_bytes,
        1024 << 20,
        "ffmpeg's address space"
    );
    assert_eq!(job.verify, VerifyPolicy::Replicate { replicas: 2 });
}

#[test]
fn a_split_video_job_has_a_task_per_segment_and_rendition_each_paid_for_its_own_pixels() {
    let dir = Dir::new();
    let text = VIDEO.replace(
        "input = \"scene.json\"",
        "input = \"scene.json\"\nrenditions = [\"180p30:300k\", \"360p25:800k\"]",
    );
    let segment = |name: &str, duration_s: f64| cairn_job::Segment {
        file: cairn_job::InputFile {
            name: name.into(),
            host_path: dir.path().join(name),
            id: cairn_wire::ContentId::of(name.as_bytes()),
            size_bytes: 1,
        },
        duration_s,
    };
    let picture = cairn_job::Picture {
        width: 1920,
        height: 1080,
    };
    let split = |text: &str| {
        dir.load(text)
            .unwrap()
            .segmented(
                vec![segment("seg-0000.ts", 2.0), segment("seg-0001.ts", 2.1)],
                picture,
            )
            .unwrap()
    };
    let job = split(&text);
    let outputs: Vec<&str> = job.tasks().iter().map(|t| t.outputs[0].as_str()).collect();
    assert_eq!(
        outputs,
        [
            "180p30_0000.ts",
            "360p25_0000.ts",
            "180p30_0001.ts",
            "360p25_0001.ts"
        ]
    );
    let args = &job.tasks()[3].args;
    let after = |flag: &str| &args[args.iter().position(|a| a == flag).unwrap() + 1];
    assert_eq!(after("-i"), "/input/seg-0001.ts");
    assert_eq!(after("-vf"), "scale=-2:360");
    assert_eq!(after("-r"), "25");
    assert_eq!(after("-b:v"), "800k");
    assert_eq!(
        after("-threads"),
        "1",
        "x264 repeats its bytes on one thread"
    );
    assert_eq!(args.last().unwrap(), "/output/360p25_0001.ts");
    // Each task has its segment as its own input, and nothing else: a
    // provider fetches what the tasks it runs encode, not the whole clip.
    assert!(job.inputs.is_empty());
    let own: Vec<Vec<&str>> = job
        .tasks()
        .iter()
        .map(|t| t.inputs.iter().map(|f| f.name.as_str()).collect())
        .collect();
    assert_eq!(
        own,
        [
            ["seg-0000.ts"],
            ["seg-0000.ts"],
            ["seg-0001.ts"],
            ["seg-0001.ts"]
        ]
    );
    // Each task declares the pixels it encodes, a thousand fuel each: its
    // rendition's picture times its segment's frames.
    let fuel: Vec<Option<u64>> = job.tasks().iter().map(|t| t.fuel).collect();
    assert_eq!(
        fuel,
        [
            Some(320 * 180 * 60 * 1_000),
            Some(640 * 360 * 50 * 1_000),
            Some(320 * 180 * 63 * 1_000),
            Some(640 * 360 * 53 * 1_000),
        ]
    );
    // The job's limit, which its order shows bidders, is the largest:
    // 640×360 × 53 frames (2.1 s at 25) beats 320×180 × 63 at 30.
    assert_eq!(job.limits.fuel, 640 * 360 * 53 * 1_000);
    assert_eq!(
        job.tasks()[0].limits(&job.limits).fuel,
        320 * 180 * 60 * 1_000
    );
    // A job file that declares the work declares every task's.
    let declared = split(&format!("{text}\n[limits]\nfuel = 5_000_000_000\n"));
    assert!(declared.tasks().iter().all(|t| t.fuel.is_none()));
    assert_eq!(
        declared.tasks()[0].limits(&declared.limits).fuel,
        5_000_000_000
    );
}

#[test]
fn a_video_job_with_tasks_of_its_own_is_refused() {
    let dir = Dir::new();
    for (extra, named) in [
        ("[tasks]\nlist = [1]\n", "remove [tasks]"),
        ("[outputs]\npaths = [\"a.ts\"]\n", "remove [outputs]"),
        ("[inputs]\nfiles = [\"prog.wasm\"]\n", "remove [inputs]"),
    ] {
        let err = dir.error(&format!("{VIDEO}{extra}"));
        assert_eq!(err.key, "video");
        assert!(err.message.contains(named), "{err}");
    }
    let err = dir.error(&VIDEO.replace(
        "module = \"ffmpeg@5\"",
        "module = \"ffmpeg@5\"\nargs = [\"-i\"]",
    ));
    assert!(err.message.contains("remove job.args"), "{err}");
}

#[test]
fn a_video_job_runs_ffmpeg_and_a_sane_ladder() {
    let dir = Dir::new();
    let err = dir.error(&VIDEO.replace("ffmpeg@5", "blender@3"));
    assert_eq!(err.key, "job.module");
    for (video, key, says) in [
        (
            "renditions = []",
            "video.renditions",
            "expected 1 to 16 renditions",
        ),
        (
            "renditions = [\"240p30\"]",
            "video.renditions",
            "HEIGHTpFPS:KBPSk",
        ),
        ("renditions = [\"241p30:600k\"]", "video.renditions", "even"),
        (
            "renditions = [\"240p30:600k\", \"240p30:900k\"]",
            "video.renditions",
            "two renditions are named 240p30",
        ),
        (
            "segment_s = 0",
            "video.segment_s",
            "expected 1 to 60 seconds",
        ),
        (
            "segment_s = 61",
            "video.segment_s",
            "expected 1 to 60 seconds",
        ),
    ] {
        let err = dir.error(&format!("{VIDEO}{video}\n"));
        assert_eq!(err.key, key, "{err}");
        assert!(err.message.contains(says), "{err}");
    }
    let err = dir.error(&VIDEO.replace("scene.json", "missing.mp4"));
    assert_eq!(err.key, "video.input");
    let err = dir.error(&VIDEO.replace("[video]\ninput = \"scene.json\"\n", ""));
    assert!(err.message.contains("missing table [tasks]"), "{err}");
}

#[test]
fn the_gpu_example_asks_each_task_for_a_gpu_and_a_wasm_job_may_not() {
    let dir = Dir::new();
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/blender");
    let text = std::fs::read_to_string(folder.join("gpu.toml"))
        .unwrap()
        .replace("files = [\"scene.py\"]", "files = []");
    let job = dir.load(&text).unwrap();
    assert_eq!((job.limits.gpus, job.limits.gpu_memory_mib), (1, 4096));
    assert_eq!(job.tasks().len(), 12);
    assert_eq!(job.tasks()[0].args.last().unwrap(), "CUDA");
    // Without the keys, no GPU.
    let cpu = dir.load(&blender_example(None)).unwrap();
    assert_eq!((cpu.limits.gpus, cpu.limits.gpu_memory_mib), (0, 0));

    // A Wasm task cannot use one.
    let err = dir.error(&GOOD.replace("stdout_kib = 8", "stdout_kib = 8\ngpus = 1"));
    assert_eq!(err.key, "limits.gpus", "{err}");
    assert!(err.message.contains("cannot use a GPU"), "{err}");
    // Zero GPUs is no GPU, for Wasm too.
    assert!(
        dir.load(&GOOD.replace("stdout_kib = 8", "stdout_kib = 8\ngpus = 0"))
            .is_ok()
    );
    // Memory without a GPU, and counts out of range, are refused.
    for (from, to, key) in [
        ("gpus = 1 ", "gpus = 0 ", "limits.gpu_memory_mib"),
        ("gpus = 1 ", "gpus = 17 ", "limits.gpus"),
        (
            "gpu_memory_mib = 4096",
            "gpu_memory_mib = 9999999",
            "limits.gpu_memory_mib",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let err = dir.error(&text.replace(from, to));
        assert_eq!(err.key, key, "{to}: {err}");
    }
}
