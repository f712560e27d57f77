//! cairn-embed against an independent all-MiniLM-L6-v2: `tests/reference.py`,
//! NumPy in float64 with Hugging Face's own tokenizer. Token ids must be
//! equal; embeddings and similarities agree within float32 rounding.

use cairn_embed::{Embedder, example_model, similarity};

/// What `tests/reference.py` printed: each sentence, its token ids and the
/// first eight dimensions of its embedding.
const SENTENCES: &[(&str, &[u32], [f32; 8])] = &[
    (
        "A man is eating food.",
        &[101, 1037, 2158, 2003, 5983, 2833, 1012, 102],
        [
            0.033242, 0.004406, -0.006277, 0.048379, -0.138702, -0.033617, 0.101128, -0.054385,
        ],
    ),
    (
        "A man is eating a piece of bread.",
        &[
            101, 1037, 2158, 2003, 5983, 1037, 3538, 1997, 7852, 1012, 102,
        ],
        [
            0.052518, 0.055241, -0.011188, -0.005745, -0.127208, -0.022252, 0.076879, 0.013185,
        ],
    ),
    (
        "The girl is carrying a baby.",
        &[101, 1996, 2611, 2003, 4755, 1037, 3336, 1012, 102],
        [
            -0.036309, -0.035653, -0.027223, 0.03832, 0.070778, -0.01658, 0.061681, 0.054438,
        ],
    ),
    (
        "A man is riding a horse.",
        &[101, 1037, 2158, 2003, 5559, 1037, 3586, 1012, 102],
        [
            -0.004625, -0.014133, 0.041003, 0.027542, -0.112541, -0.01823, 0.101276, 0.027456,
        ],
    ),
    (
        "A monkey is playing drums.",
        &[101, 1037, 10608, 2003, 2652, 3846, 1012, 102],
        [
            0.023465, -0.058529, 0.055992, -0.046667, -0.065652, 0.028978, 0.014365, 0.0563,
        ],
    ),
    (
        "Crème brûlée, naïve café — ÉCOLE! 中文 $5",
        &[
            101, 13675, 21382, 7987, 9307, 2063, 1010, 15743, 7668, 1517, 12431, 999, 1746, 1861,
            1002, 1019, 102,
        ],
        [
            0.005275, -0.025141, 0.02499, 0.006424, -0.01292, 0.011754, 0.042144, -0.004212,
        ],
    ),
];

/// The cosine similarity of every pair, as `tests/reference.py` printed it.
const SIMILARITY: [[f32; 6]; 6] = [
    [1.0, 0.755337, -0.104958, 0.247402, 0.047603, 0.08863],
    [0.755337, 1.0, -0.061017, 0.144184, 0.036239, 0.127936],
    [-0.104958, -0.061017, 1.0, -0.108835, 0.023125, -0.035924],
    [0.247402, 0.144184, -0.108835, 1.0, 0.082071, -0.01815],
    [0.047603, 0.036239, 0.023125, 0.082071, 1.0, -0.012311],
    [0.08863, 0.127936, -0.035924, -0.01815, -0.012311, 1.0],
];
/// float32 arithmetic against float64: the difference stays far below what
/// would change a ranking.
const TOLERANCE: f32 = 1e-4;

fn model() -> Embedder {
    let dir = example_model().expect("the example model installs");
    Embedder::from_dir(&dir).expect("the example model loads")
}

#[test]
fn token_ids_are_those_of_hugging_faces_tokenizer() {
    let dir = example_model().expect("the example model installs");
    let vocab = std::fs::read_to_string(dir.join(cairn_embed::VOCAB_FILE)).unwrap();
    let tokenizer = cairn_embed::tokenizer::Tokenizer::from_vocab(&vocab).unwrap();
    for (text, ids, _) in SENTENCES {
        assert_eq!(tokenizer.encode(text, 512).ids, *ids, "{text}");
    }
}

#[test]
fn embeddings_and_similarities_match_an_independent_implementation() {
    let model = model();
    let vectors: Vec<Vec<f32>> = SENTENCES
        .iter()
        .map(|(text, ids, head)| {
            let embedding = model.embed(text).unwrap();
            assert_eq!(embedding.tokens, ids.len(), "{text}");
            assert_eq!(embedding.vector.len(), 384);
            let norm: f32 = embedding.vector.iter().map(|v| v * v).sum();
            assert!((norm - 1.0).abs() < 1e-5, "{text}: |v|² = {norm}");
            for (i, (got, want)) in embedding.vector.iter().zip(head).enumerate() {
                assert!(
                    (got - want).abs() < TOLERANCE,
                    "{text}: dimension {i} is {got}, the reference {want}"
                );
            }
            embedding.vector
        })
        .collect();
    for (i, a) in vectors.iter().enumerate() {
        for (j, b) in vectors.iter().enumerate() {
            let got = similarity(a, b);
            assert!(
                (got - SIMILARITY[i][j]).abs() < TOLERANCE,
                "similarity of {i} and {j} is {got}, the reference {}",
                SIMILARITY[i][j]
            );
        }
    }
    // What the model is for: the paraphrase pair is by far the closest of
    // these, and a sentence about something else scores near zero.
    let eating = similarity(&vectors[0], &vectors[1]);
    assert!((eating - 0.7553).abs() < 1e-3, "{eating}");
    for (i, a) in vectors.iter().enumerate() {
        for (j, b) in vectors.iter().enumerate().skip(i + 1) {
            if (i, j) != (0, 1) {
                assert!(similarity(a, b) < eating - 0.4, "{i} and {j}");
            }
        }
    }
    assert!(similarity(&vectors[0], &vectors[2]) < 0.0);
}

#[test]
fn a_text_longer_than_the_model_reads_is_cut_and_says_so() {
    let model = model();
    let long = "the cat sat on the mat ".repeat(100);
    let embedding = model.embed(&long).unwrap();
    assert_eq!(embedding.tokens, cairn_embed::MAX_TOKENS);
    assert!(embedding.truncated);
}

/// Model files from anywhere are checked: each fault is a clear error, never
/// a panic, and names the file at fault.
#[test]
fn a_damaged_or_mismatched_model_is_refused_with_the_file_at_fault() {
    let dir = example_model().expect("the example model installs");
    let weights = std::fs::read(dir.join(cairn_embed::WEIGHTS_FILE)).unwrap();
    let config = std::fs::read_to_string(dir.join(cairn_embed::CONFIG_FILE)).unwrap();
    let vocab = std::fs::read_to_string(dir.join(cairn_embed::VOCAB_FILE)).unwrap();
    let refused = |weights: Vec<u8>, config: &str, vocab: &str| {
        Embedder::load(weights, config, vocab)
            .err()
            .expect("the model is refused")
    };

    let truncated = refused(weights[..weights.len() / 2].to_vec(), &config, &vocab);
    assert!(truncated.starts_with("model.safetensors"), "{truncated}");
    let garbage = refused(vec![0xff; 64], &config, &vocab);
    assert!(garbage.starts_with("model.safetensors"), "{garbage}");

    let wider = config.replace("\"hidden_size\": 384", "\"hidden_size\": 768");
    assert_ne!(wider, config);
    let mismatch = refused(weights.clone(), &wider, &vocab);
    assert!(mismatch.starts_with("model.safetensors"), "{mismatch}");

    let huge = config.replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": 100000");
    let absurd = refused(weights.clone(), &huge, &vocab);
    assert!(absurd.contains("num_hidden_layers"), "{absurd}");
    let relu = config.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"relu\"");
    assert!(refused(weights.clone(), &relu, &vocab).contains("hidden_act"));
    assert!(refused(weights.clone(), "{", &vocab).starts_with("config.json"));

    let longer = format!("{vocab}extra\n");
    assert!(refused(weights.clone(), &config, &longer).contains("more than the model's"));
    let no_unk = vocab.replace("[UNK]", "[UNKNOWN]");
    assert!(refused(weights, &config, &no_unk).contains("[UNK]"));
}
