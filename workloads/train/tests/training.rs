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
        seed: half.position.seed,
        ..fresh_settings
    };
    let (_, resumed) = train(resumed_settings, &corpus(), Some(&half), 10);
    assert_eq!(resumed.position.steps, 20);
    assert_eq!(
        resumed.position.shape,
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
