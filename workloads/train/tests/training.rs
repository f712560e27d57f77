//! Training natively with the library: the loss falls, runs repeat bit for
//! bit, a resumed run continues exactly, and the commitments name the
//! state delivered.

use std::path::{Path, PathBuf};

use cairn_train::{Checkpoint, Settings, Shape, Trainer};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/train/seed.txt")
}

fn small() -> Settings {
    Settings {
        shape: Shape {
            context: 8,
            embed: 8,
            hidden: 32,
        },
        batch: 16,
        learning_rate: 1e-2,
        seed: 11,
        ..Settings::default()
    }
}

fn train(
    settings: Settings,
    data: &Path,
    init: Option<&Checkpoint>,
    steps: u64,
) -> (Vec<f32>, Checkpoint) {
    let mut trainer = Trainer::new(settings, data, init).unwrap();
    let losses = (0..steps).map(|_| trainer.step().unwrap()).collect();
    (losses, trainer.checkpoint().unwrap())
}

#[test]
fn the_loss_falls_and_two_runs_agree_bit_for_bit() {
    let (losses, end) = train(small(), &corpus(), None, 60);
    let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
    // Uniform guessing over 256 bytes costs ln 256 = 5.55.
    assert!(losses[0] > 5.0, "{losses:?}");
    assert!(mean(&losses[50..]) < 3.5, "{losses:?}");
    let (again, end_again) = train(small(), &corpus(), None, 60);
    assert_eq!(
        losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        again.iter().map(|l| l.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(end.root(), end_again.root());
    let other_seed = Settings {
        seed: 12,
        ..small()
    };
    assert_ne!(
        train(other_seed, &corpus(), None, 1).1.root(),
        train(small(), &corpus(), None, 1).1.root()
    );
}

#[test]
fn a_run_resumed_from_its_checkpoint_ends_where_the_whole_run_does() {
    let (_, whole) = train(small(), &corpus(), None, 20);
    let (_, half) = train(small(), &corpus(), None, 10);
    // Through the file, as a job hands it over.
    let half = Checkpoint::from_bytes(&half.to_bytes().unwrap()).unwrap();
    let fresh_settings = Settings {
        seed: 999,
        shape: Shape::default(),
        ..small()
    };
    // The seed given is ignored by `Trainer::new` only if the caller passes
    // the checkpoint's: the guest does; here the checkpoint's is kept.
    let resumed_settings = Settings {
        seed: half.position.settings.seed,
        ..fresh_settings
    };
    let (_, resumed) = train(resumed_settings, &corpus(), Some(&half), 10);
    assert_eq!(resumed.position.steps, 20);
    assert_eq!(
        resumed.position.settings.shape,
        small().shape,
        "the checkpoint's shape is kept"
    );
    assert_eq!(resumed.root(), whole.root());
    assert_eq!(resumed, whole);
}

#[test]
fn fine_tuning_on_other_data_names_that_data() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.txt");
    std::fs::write(
        &other,
        "the quick brown fox jumps over the lazy dog. ".repeat(50),
    )
    .unwrap();
    let (_, base) = train(small(), &corpus(), None, 10);
    let (losses, tuned) = train(small(), &other, Some(&base), 30);
    assert_ne!(tuned.position.data, base.position.data);
    assert_eq!(
        tuned.position.data,
        *blake3::hash(&std::fs::read(&other).unwrap()).as_bytes()
    );
    assert!(losses[29] < losses[0] * 0.8, "{losses:?}");
}

#[test]
fn data_too_short_for_the_context_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "12345678").unwrap();
    let err = Trainer::new(small(), &short, None).err().unwrap();
    assert!(err.contains("more than the context"), "{err}");
    let err = Trainer::new(small(), &dir.path().join("absent"), None)
        .err()
        .unwrap();
    assert!(err.contains("cannot read"), "{err}");
}

/// The program, natively (it trains to the end by itself), on the founding
/// document into `out`, with `args`.
fn program(out: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--data", corpus().to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

/// A small run of `steps` steps, checkpointed every 6.
fn run_program(out: &Path, steps: u64) {
    let steps = steps.to_string();
    let output = program(
        out,
        &[
            "--steps",
            &steps,
            "--every",
            "6",
            "--seed",
            "4",
            "--batch",
            "8",
            "--context",
            "8",
            "--embed",
            "8",
            "--hidden",
            "32",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn check(dir: &Path) -> Result<cairn_train::RunCheck, String> {
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    cairn_train::check_run(
        &read(cairn_train::WEIGHTS_FILE),
        &String::from_utf8(read(cairn_train::COMMITMENTS_FILE)).unwrap(),
        &String::from_utf8(read(cairn_train::LOSS_FILE)).unwrap(),
    )
}

/// A run's outputs check out against each other; each way of patching a
/// delivery together (weights from fewer steps behind made-up commitments,
/// a loss curve missing a step, another run's weights) does not.
#[test]
fn a_runs_outputs_check_out_and_patched_deliveries_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (full, half) = (dir.path().join("full"), dir.path().join("half"));
    run_program(&full, 24);
    run_program(&half, 12);
    let ok = check(&full).unwrap();
    assert_eq!(ok.position.steps, 24);
    assert_eq!(ok.commitments, 5, "start-up and every 6 steps");
    assert_eq!(ok.steps, (1, 24));
    assert_eq!(ok.from, None);
    assert_eq!(
        ok.position.data,
        *blake3::hash(&std::fs::read(corpus()).unwrap()).as_bytes()
    );

    // An early stopper: the half run's weights behind the full run's
    // commitments and curve.
    let patched = dir.path().join("patched");
    std::fs::create_dir(&patched).unwrap();
    for name in [cairn_train::COMMITMENTS_FILE, cairn_train::LOSS_FILE] {
        std::fs::copy(full.join(name), patched.join(name)).unwrap();
    }
    std::fs::copy(
        half.join(cairn_train::WEIGHTS_FILE),
        patched.join(cairn_train::WEIGHTS_FILE),
    )
    .unwrap();
    let err = check(&patched).unwrap_err();
    assert!(err.contains("step 12"), "{err}");

    // A curve missing a step.
    let curve = std::fs::read_to_string(full.join(cairn_train::LOSS_FILE)).unwrap();
    let gap: Vec<&str> = curve.lines().filter(|l| !l.starts_with("7,")).collect();
    std::fs::write(patched.join(cairn_train::LOSS_FILE), gap.join("\n")).unwrap();
    std::fs::copy(
        full.join(cairn_train::WEIGHTS_FILE),
        patched.join(cairn_train::WEIGHTS_FILE),
    )
    .unwrap();
    let err = check(&patched).unwrap_err();
    assert!(err.contains("step 8 where step 7 was due"), "{err}");

    // A curve whose loss at a checkpoint is not the committed one.
    let nudged = curve.replace("\n12,", "\n12,9");
    std::fs::write(patched.join(cairn_train::LOSS_FILE), nudged).unwrap();
    let err = check(&patched).unwrap_err();
    assert!(err.contains("step 12"), "{err}");

    // Numbers at the edge of a u64 are refused, not overflowed.
    let edge = format!("step,loss\n{},1\n0,1\n", u64::MAX);
    std::fs::write(patched.join(cairn_train::LOSS_FILE), edge).unwrap();
    assert!(check(&patched).is_err());

    // A delivery committing to nothing but its state, with no curve: the
    // one line anyone can compute from the weights is not a run.
    let bare = dir.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    std::fs::copy(
        full.join(cairn_train::WEIGHTS_FILE),
        bare.join(cairn_train::WEIGHTS_FILE),
    )
    .unwrap();
    let last = std::fs::read_to_string(full.join(cairn_train::COMMITMENTS_FILE)).unwrap();
    let last = last.lines().last().unwrap().to_string();
    std::fs::write(bare.join(cairn_train::COMMITMENTS_FILE), last + "\n").unwrap();
    std::fs::write(bare.join(cairn_train::LOSS_FILE), "step,loss\n").unwrap();
    let err = check(&bare).unwrap_err();
    assert!(err.contains("start only"), "{err}");

    // Continuing the half run with --init alone (its settings are the
    // checkpoint's) ends where the full run does.
    let resumed = dir.path().join("resumed");
    let init = half.join(cairn_train::WEIGHTS_FILE);
    let init = init.to_str().unwrap();
    let output = program(&resumed, &["--steps", "12", "--every", "6", "--init", init]);
    assert!(output.status.success());
    let resumed_check = check(&resumed).unwrap();
    assert_eq!(resumed_check.root, ok.root);
    assert_eq!(
        resumed_check.from,
        Some(check(&half).unwrap().root),
        "it names its parent"
    );
    // It committed at the whole run's steps (12, 18, 24).
    let whole = std::fs::read_to_string(full.join(cairn_train::COMMITMENTS_FILE)).unwrap();
    let part = std::fs::read_to_string(resumed.join(cairn_train::COMMITMENTS_FILE)).unwrap();
    let roots = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<cairn_train::Commitment>(l)
                    .unwrap()
                    .root
            })
            .collect()
    };
    assert_eq!(roots(&part), roots(&whole)[2..].to_vec());
    // Dimensions other than the checkpoint's are refused.
    let output = program(
        &resumed,
        &["--steps", "1", "--hidden", "64", "--init", init],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("checkpoint's"));
}

/// The trained model writes text: the same for the same seed, the
/// likeliest bytes at temperature 0, and more like the training text than
/// the untrained model's.
#[test]
fn a_trained_model_writes_text_more_like_its_data_than_an_untrained_one() {
    let (_, untrained) = train(small(), &corpus(), None, 0);
    let (_, trained) = train(small(), &corpus(), None, 150);
    let prompt = b"computing power ";
    let a = cairn_train::generate(&trained, prompt, 200, 0.7, 1).unwrap();
    assert_eq!(a.len(), 200);
    assert_eq!(
        a,
        cairn_train::generate(&trained, prompt, 200, 0.7, 1).unwrap()
    );
    assert_ne!(
        a,
        cairn_train::generate(&trained, prompt, 200, 0.7, 2).unwrap()
    );
    let greedy = cairn_train::generate(&trained, prompt, 50, 0.0, 9).unwrap();
    assert_eq!(
        greedy,
        cairn_train::generate(&trained, prompt, 50, 0.0, 3).unwrap()
    );
    // Lower-case letters and spaces make up most of the document; the
    // untrained model draws bytes all but uniformly.
    let letters = |t: &[u8]| {
        t.iter()
            .filter(|b| b.is_ascii_lowercase() || **b == b' ')
            .count()
    };
    let before = cairn_train::generate(&untrained, prompt, 200, 0.7, 1).unwrap();
    assert!(letters(&a) > 150, "{}", String::from_utf8_lossy(&a));
    assert!(
        letters(&before) < 100,
        "{}",
        String::from_utf8_lossy(&before)
    );
    assert!(cairn_train::generate(&trained, prompt, 10, -1.0, 1).is_err());
}
