//! `cairn run --local` end to end, through the real binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

fn cairn(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("running cairn")
}

/// `cairn run <job> --local -o <out>`, with the human summary.
fn run_into(job: &Path, out: &Path) -> Output {
    cairn(&[
        "run",
        job.to_str().unwrap(),
        "--local",
        "-o",
        out.to_str().unwrap(),
    ])
}

fn scene() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/render/scene.json")
}

/// A small render job (tiny frames) in a fresh folder.
fn render_job(dir: &Path) -> PathBuf {
    std::fs::copy(scene(), dir.join("scene.json")).unwrap();
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        r#"
[job]
name = "tiny-orbit"
module = "cairn:render"
args = ["--scene", "/input/scene.json", "--frame", "{task}", "--width", "32", "--height", "24", "--spp", "2", "--out", "/output/frame-{task:04}.png"]
[tasks]
range = [0, 4]
[inputs]
files = ["scene.json"]
[outputs]
paths = ["frame-{task:04}.png"]
"#,
    )
    .unwrap();
    job
}

fn run_json(job: &Path, out: &Path, workers: &str) -> Value {
    let output = cairn(&[
        "run",
        job.to_str().unwrap(),
        "--local",
        "--json",
        "-j",
        workers,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "cairn failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON object")
}

fn digests_and_fuel(summary: &Value) -> Vec<(String, u64)> {
    summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["digest"].as_str().unwrap().to_string(),
                r["fuel_used"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn render_job_runs_and_is_identical_with_one_or_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let job = render_job(dir.path());
    let one = run_json(&job, &dir.path().join("out1"), "1");
    let two = run_json(&job, &dir.path().join("out2"), "2");
    assert_eq!(one["tasks"], 4);
    assert_eq!(one["succeeded"], 4);
    assert_eq!(digests_and_fuel(&one), digests_and_fuel(&two));
    // Frames differ from each other: the camera moves.
    let digests = digests_and_fuel(&one);
    assert_ne!(digests[0].0, digests[1].0);
    for frame in 0..4 {
        let name = format!("frame-{frame:04}.png");
        let a = std::fs::read(dir.path().join("out1").join(&name)).unwrap();
        let b = std::fs::read(dir.path().join("out2").join(&name)).unwrap();
        assert!(a.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(a, b);
        let listed = &one["results"][frame]["outputs"][0];
        assert_eq!(listed["path"], name.as_str());
        assert_eq!(listed["id"], cairn_wire::ContentId::of(&a).to_string());
    }
    // The summary is also left beside the outputs, and no scratch remains.
    assert!(dir.path().join("out1/cairn-summary.json").exists());
    assert!(!dir.path().join("out1/.cairn-work").exists());
}

#[test]
fn malformed_job_is_refused_with_its_location_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let job = render_job(dir.path());
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace("range = [0, 4]", "range = [0, 4]\n[limits]\nfuel = 0"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = run_into(&job, &out);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("cairn: "), "{stderr}");
    assert!(
        stderr.contains("job.toml:9:8: limits.fuel: 0 is out of range"),
        "{stderr}"
    );
    assert!(
        !out.exists(),
        "nothing may be written for a job that did not load"
    );
}

/// Writes `job` as a job file in `dir`, runs it with `--json` and the
/// extra `args`, and returns the exit status and the summary.
fn run_job_json(dir: &Path, job: &str, args: &[&str]) -> (Option<i32>, Value) {
    let path = dir.join("job.toml");
    std::fs::write(&path, job).unwrap();
    let out = dir.join("out");
    let mut all = vec![
        "run",
        path.to_str().unwrap(),
        "--local",
        "--json",
        "-o",
        out.to_str().unwrap(),
    ];
    all.extend(args);
    let output = cairn(&all);
    (
        output.status.code(),
        serde_json::from_slice(&output.stdout).unwrap(),
    )
}

#[test]
fn failing_tasks_are_reported_and_the_rest_complete() {
    let dir = tempfile::tempdir().unwrap();
    // Task 0 exits 0; task 1 exits with status 1.
    let (code, summary) = run_job_json(
        dir.path(),
        "[job]\nmodule = \"cairn:hostile\"\nargs = [\"exit\", \"{task}\"]\n[tasks]\nlist = [0, 1]\n",
        &[],
    );
    assert_eq!(code, Some(1));
    assert_eq!(summary["succeeded"], 1);
    assert_eq!(summary["failed"], 1);
    assert_eq!(summary["results"][1]["outcome"], "exited with status 1");
}

#[test]
fn every_tasks_stdout_is_saved_and_linked_from_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    // Each task prints `value` bytes to stdout and writes no file at all.
    let (code, summary) = run_job_json(
        dir.path(),
        "[job]\nmodule = \"cairn:hostile\"\nargs = [\"stdout\", \"{task}\"]\n[tasks]\nlist = [5, 7]\n",
        &[],
    );
    assert_eq!(code, Some(0), "{summary}");
    for (index, bytes) in [(0, 5), (1, 7)] {
        let result = &summary["results"][index];
        let linked = &result["stdout"];
        let path = format!("cairn-logs/task-{index}.stdout");
        assert_eq!(linked["path"], path.as_str(), "{summary}");
        assert_eq!(linked["size_bytes"], bytes);
        let saved = std::fs::read(dir.path().join("out").join(&path)).unwrap();
        assert_eq!(saved, vec![b'x'; bytes]);
        assert_eq!(linked["id"], cairn_wire::ContentId::of(&saved).to_string());
        // Nothing went to stderr, so there is no file and no link.
        assert!(result["stderr"].is_null(), "{summary}");
        assert!(
            !dir.path()
                .join(format!("out/cairn-logs/task-{index}.stderr"))
                .exists()
        );
    }
    let written: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/cairn-summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        written["results"][1]["stdout"],
        summary["results"][1]["stdout"]
    );
}

#[test]
fn a_failing_tasks_stderr_is_shown_and_saved() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        "[job]\nmodule = \"cairn:hostile\"\nargs = [\"panic\"]\n[tasks]\nrange = [0, 1]\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    // A stale stream from an earlier run must not survive into this one.
    std::fs::create_dir_all(out.join("cairn-logs")).unwrap();
    std::fs::write(out.join("cairn-logs/task-0.stdout"), "stale").unwrap();
    let output = run_into(&job, &out);
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("FAILED"), "{printed}");
    assert!(
        printed.contains("| thread 'main'"),
        "the stderr tail is shown: {printed}"
    );
    assert!(printed.contains("asked to panic"), "{printed}");
    assert!(printed.contains("cairn-logs/task-0.stderr"), "{printed}");
    let saved = std::fs::read_to_string(out.join("cairn-logs/task-0.stderr")).unwrap();
    assert!(saved.contains("asked to panic"), "{saved}");
    assert!(!out.join("cairn-logs/task-0.stdout").exists());
}

#[test]
fn outputs_that_collide_fail_the_later_task() {
    let dir = tempfile::tempdir().unwrap();
    let (code, summary) = run_job_json(
        dir.path(),
        "[job]\nmodule = \"cairn:hostile\"\nargs = [\"write\", \"10\"]\n[tasks]\nrange = [0, 2]\n",
        &["-j", "1"],
    );
    assert_eq!(code, Some(1));
    assert_eq!(summary["succeeded"], 1);
    let failure = summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ok"] == false)
        .unwrap();
    assert!(
        failure["outcome"]
            .as_str()
            .unwrap()
            .contains("'big.bin' was also written by task")
    );
}

#[test]
fn a_module_that_is_not_wasm_is_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("evil.wasm"), "#!/bin/sh\necho pwned\n").unwrap();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        "[job]\nmodule = \"evil.wasm\"\n[tasks]\nrange = [0, 1]\n",
    )
    .unwrap();
    let output = cairn(&["run", job.to_str().unwrap(), "--local"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("job.module: not a WebAssembly module"),
        "{stderr}"
    );
}

#[test]
fn running_without_local_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    let job = render_job(dir.path());
    let output = cairn(&["run", job.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("add --local"));
}

/// Issue 13's inference locally: the example embedding job gives the same
/// bits with one worker or two; the guest's embeddings are native candle's
/// within float rounding, for every line of the corpus in order; a search
/// over them puts the line a question is about first; and results that are
/// not a unit embedding of the model's width are refused.
#[test]
fn the_embedding_job_repeats_its_bits_matches_native_candle_and_search_ranks_by_meaning() {
    let model = cairn_embed::example_model().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/embed");
    let job = examples.join("job.toml");
    let dir = tempfile::tempdir().unwrap();
    let one = run_json(&job, &dir.path().join("out1"), "1");
    let two = run_json(&job, &dir.path().join("out2"), "2");
    assert_eq!(one["succeeded"], 5, "{one}");
    assert_eq!(digests_and_fuel(&one), digests_and_fuel(&two));

    let corpus = std::fs::read_to_string(examples.join("corpus.txt")).unwrap();
    let native = cairn_embed::Embedder::from_dir(&model).unwrap();
    let mut line = 0;
    for task in 0..5 {
        let name = format!("embeddings-{task:04}.jsonl");
        let text = std::fs::read_to_string(dir.path().join("out1").join(name)).unwrap();
        for json in text.lines() {
            let record: cairn_embed::Record = serde_json::from_str(json).unwrap();
            line += 1;
            assert_eq!(record.line, line);
            assert_eq!(record.text, corpus.lines().nth(line - 1).unwrap());
            let expected = native.embed(&record.text).unwrap();
            assert_eq!(record.tokens, expected.tokens);
            let furthest = record
                .embedding
                .iter()
                .zip(&expected.vector)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            // docs/ml.md: Wasm and native round differently, by about 1e-7.
            assert!(furthest < 1e-5, "line {line}: {furthest}");
        }
    }
    assert_eq!(line, 120);

    let out1 = dir.path().join("out1");
    for (query, expected) in [
        ("when does the bread go in the oven?", 1),
        ("What happens to a star when it dies?", 17),
        ("Which sea creature can change how it looks?", 52),
        ("will it snow this weekend?", 110),
    ] {
        let output = cairn(&[
            "search",
            out1.to_str().unwrap(),
            query,
            "--model",
            model.to_str().unwrap(),
            "--top",
            "2",
            "--json",
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let matches: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(matches.len(), 2);
        assert_eq!(matches[0]["line"], expected, "{query}: {matches:?}");
        assert!(matches[0]["score"].as_f64() > matches[1]["score"].as_f64());
    }
    // Results a provider wrote are checked: `refused` searches a folder
    // holding only `record` and returns what cairn said, having failed.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let refused = |record: &str| {
        std::fs::write(other.join("embeddings-0000.jsonl"), record).unwrap();
        let output = cairn(&[
            "search",
            other.to_str().unwrap(),
            "x",
            "--model",
            model.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(2));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // Embeddings of another model are refused, not compared.
    let narrow =
        refused(r#"{"line":1,"text":"x","tokens":3,"truncated":false,"embedding":[1.0,0.0]}"#);
    assert!(narrow.contains("2 dimensions"), "{narrow}");
    // A provider's vector longer than a unit one would win every query.
    let loud = vec![1.0e3f32; 384];
    let record = serde_json::json!({
        "line": 1, "text": "buy now", "tokens": 4, "truncated": false, "embedding": loud,
    });
    let loud = refused(&record.to_string());
    assert!(loud.contains("not 1"), "{loud}");
}

#[test]
fn example_jobs_load() {
    // The shipped examples stay valid as the job format evolves.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for job in [
        examples.join("render/job.toml"),
        examples.join("hashsearch.toml"),
        examples.join("embed/job.toml"),
    ] {
        if job.ends_with("embed/job.toml") {
            cairn_embed::example_model().unwrap();
        }
        let loaded = cairn_job::Job::load(&job, &cairn_workloads::names());
        assert!(loaded.is_ok(), "{}: {}", job.display(), loaded.unwrap_err());
    }
}

#[test]
fn completions_cover_every_command_and_an_unknown_shell_is_refused() {
    for shell in ["bash", "zsh", "fish"] {
        let out = cairn(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in [
            "devnet",
            "wallet",
            "init",
            "market",
            "cancel",
            "completions",
            "tools",
            "allow-inputs-from",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = cairn(&["completions", "cmd.exe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

/// The tools benchmark measures each command both ways and prints every
/// figure, with a ratio that is a ratio (its parts are printed beside it).
#[test]
fn the_tools_benchmark_runs_each_command_both_ways() {
    cairn_exec::tool::install_test_tools();
    let out = cairn(&["bench", "tools", "--runs", "1", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let value = |metric: &str| -> f64 {
        let figure = figures
            .iter()
            .find(|f| f["metric"] == metric)
            .unwrap_or_else(|| panic!("no {metric} in {figures:?}"));
        assert_eq!(figure["suite"], "tools");
        figure["value"].as_f64().unwrap()
    };
    for case in ["start", "transcode_720p", "blender_frame"] {
        let (direct, sandboxed) = (
            value(&format!("{case}_direct")),
            value(&format!("{case}_sandboxed")),
        );
        assert!(direct > 0.0 && sandboxed > 0.0, "{case}");
        let ratio = value(&format!("{case}_sandboxed_over_direct"));
        assert!((ratio - sandboxed / direct).abs() < 1e-6 * ratio, "{case}");
    }
}

/// `cairn init` makes a data folder only its owner can read, with a key, a
/// token and a config file whose every setting is a flag `cairn` knows; a
/// second `init` changes nothing.
#[test]
fn init_makes_a_private_data_folder_whose_config_cairn_reads() {
    use std::os::unix::fs::PermissionsExt as _;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let dir_arg = dir.to_str().unwrap();
    let out = cairn(&["init", "--provide", "--data-dir", dir_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains("cairn node --config"), "{said}");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for file in ["node.key", "api.token", "cairn.toml"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    let config = dir.join("cairn.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nprovide = true"), "{text}");
    // Every setting is a flag: a config naming an unknown one is refused.
    let out = cairn(&["--config", config.to_str().unwrap(), "completions", "bash"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(tmp.path().join("bad.toml"), "no_such_flag = 1\n").unwrap();
    let bad = tmp.path().join("bad.toml");
    let out = cairn(&["--config", bad.to_str().unwrap(), "completions", "bash"]);
    assert_eq!(out.status.code(), Some(2));

    let key = std::fs::read(dir.join("node.key")).unwrap();
    let again = cairn(&["init", "--data-dir", dir_arg]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    assert_eq!(std::fs::read(dir.join("node.key")).unwrap(), key);
}

/// The commands that talk to a node say what is wrong with a bad id, a
/// missing token or a node that is not there, and exit 2.
#[test]
fn node_commands_refuse_bad_ids_missing_tokens_and_absent_nodes_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let out = cairn(&["job", "--data-dir", dir, "cancel", "not-an-id"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hex"));
    let out = cairn(&["market", "--data-dir", dir]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("cairn: ") && stderr.contains("api.token"),
        "{stderr}"
    );
    // A port nothing listens on (bound, then let go).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let token = "ab".repeat(32);
    for args in [
        vec!["market", "--node", &url],
        vec!["job", "--node", &url, "list"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(&args)
            .env("CAIRN_API_TOKEN", &token)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("cannot reach the node at {url}")),
            "{stderr}"
        );
    }
}

/// `cairn checkpoint <dir> --data <file> --json`.
fn checkpoint(dir: &Path, data: &Path) -> Output {
    cairn(&[
        "checkpoint",
        dir.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
    ])
}

/// [`checkpoint`], which must succeed: what it found.
fn checked(dir: &Path, data: &Path) -> Value {
    let output = checkpoint(dir, data);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The training example: the run repeats its bits, its loss curve is
/// native candle's within float rounding, `cairn checkpoint` finds its
/// outputs consistent and trained on the given data; the fine-tuning
/// example continues it on other text to step 600, and a check against the
/// wrong data fails.
#[test]
fn the_training_job_repeats_its_bits_checks_out_and_fine_tunes() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/train");
    let job = examples.join("job.toml");
    let dir = tempfile::tempdir().unwrap();
    let (out1, out2) = (dir.path().join("out1"), dir.path().join("out2"));
    let one = run_json(&job, &out1, "1");
    let two = run_json(&job, &out2, "1");
    assert_eq!(one["succeeded"], 1, "{one}");
    assert_eq!(digests_and_fuel(&one), digests_and_fuel(&two));

    let seed = examples.join("seed.txt");
    let found = checked(&out1, &seed);
    assert_eq!(
        (found["steps"].as_u64(), found["commitments"].as_u64()),
        (Some(400), Some(9))
    );
    assert!(found["loss_last"].as_f64().unwrap() < 2.6, "{found}");
    let sampled = |seed: &str| {
        let output = cairn(&[
            "checkpoint",
            out1.to_str().unwrap(),
            "--json",
            "--sample",
            "80",
            "--prompt",
            "computing ",
            "--sample-seed",
            seed,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let found: Value = serde_json::from_slice(&output.stdout).unwrap();
        found["sample"].as_str().unwrap().to_string()
    };
    assert_eq!(sampled("1"), sampled("1"), "a seeded sample repeats");
    assert!(!sampled("1").is_empty());

    // Native candle, the example's settings: the same curve within
    // rounding (docs/ml.md).
    let mut native = cairn_train::Trainer::new(
        cairn_train::Settings {
            batch: 32,
            learning_rate: 3e-3,
            seed: 7,
            ..cairn_train::Settings::default()
        },
        &seed,
        None,
    )
    .unwrap();
    let curve = std::fs::read_to_string(out1.join("loss.csv")).unwrap();
    for line in curve.lines().skip(1) {
        let guest: f32 = line.split(',').nth(1).unwrap().parse().unwrap();
        let here = native.step().unwrap();
        assert!((guest - here).abs() < 1e-3, "{line}: native {here}");
    }

    // Fine-tuning, as examples/train/finetune.toml says, from this run.
    let tune = dir.path().join("tune");
    std::fs::create_dir(&tune).unwrap();
    std::fs::copy(examples.join("tune.txt"), tune.join("tune.txt")).unwrap();
    std::fs::copy(
        out1.join("weights.safetensors"),
        tune.join("weights.safetensors"),
    )
    .unwrap();
    let spec = std::fs::read_to_string(examples.join("finetune.toml")).unwrap();
    let spec = spec.replace(
        "\"../../out/train/weights.safetensors\"",
        "\"weights.safetensors\"",
    );
    std::fs::write(tune.join("finetune.toml"), spec).unwrap();
    let tuned = tune.join("out");
    let summary = run_json(&tune.join("finetune.toml"), &tuned, "1");
    assert_eq!(summary["succeeded"], 1, "{summary}");
    let found = checked(&tuned, &examples.join("tune.txt"));
    assert_eq!(
        (found["steps"].as_u64(), found["first_step"].as_u64()),
        (Some(600), Some(401))
    );
    let output = checkpoint(&tuned, &seed);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not on"));
}
