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
    (
        "[MASK] me, x[SEP]y and [mask]",
        &[
            101, 103, 2033, 1010, 1060, 102, 1061, 1998, 1031, 7308, 1033, 102,
        ],
        [
            -0.028531, 0.004483, 0.031812, -0.060261, -0.008745, 0.029164, 0.156624, -0.045815,
        ],
    ),
    (
        "ΟΔΟΣ ΚΑΙ ΣΟΦΟΣ",
        &[
            101, 1169, 29722, 29730, 29733, 1164, 14608, 18199, 1173, 29730, 29736, 29730, 29733,
            102,
        ],
        [
            0.0261, 0.102879, 0.053414, 0.002639, -0.073956, -0.009967, 0.1307, 0.012448,
        ],
    ),
    (
        "a\u{2028}b\u{2029}c\u{85}d",
        &[101, 1037, 1038, 3729, 102],
        [
            -0.021675, 0.044925, -0.033879, 0.005447, -0.116377, 0.060125, 0.114903, 0.013353,
        ],
    ),
    (
        "x\u{e000}y \u{200b}zero\u{ad}width 😀 emoji",
        &[
            101, 1060, 2100, 5717, 9148, 11927, 2232, 100, 7861, 29147, 2072, 102,
        ],
        [
            0.001505, 0.007853, 0.061708, 0.002211, -0.007977, -0.061312, 0.089416, -0.009485,
        ],
    ),
    (
        "pneumonoultramicroscopicultramicroscopicultramicroscopicultramicroscopicultramicroscopicultramicroscopic silicovolcanoconiosis",
        &[
            101, 100, 9033, 10415, 16059, 15472, 6761, 8663, 10735, 2483, 102,
        ],
        [
            -0.054708, -0.019036, -0.031293, -0.001954, 0.008584, 0.000914, 0.053756, 0.079546,
        ],
    ),
    (
        "\u{200b}\u{200e}\u{ad}",
        &[101, 102],
        [
            -0.118838, 0.048299, -0.002548, -0.011011, 0.051951, 0.010292, 0.115433, 0.000701,
        ],
    ),
];

/// The cosine similarity of every pair, as `tests/reference.py` printed it.
const SIMILARITY: [[f32; 12]; 12] = [
    [
        1.0, 0.755337, -0.104958, 0.247402, 0.047603, 0.08863, 0.045667, -0.024033, 0.002806,
        -0.034603, 0.075138, 0.02534,
    ],
    [
        0.755337, 1.0, -0.061017, 0.144184, 0.036239, 0.127936, 0.096403, 0.045535, 0.113269,
        -0.069327, 0.074665, -0.001983,
    ],
    [
        -0.104958, -0.061017, 1.0, -0.108835, 0.023125, -0.035924, -0.028032, 0.041692, 0.009484,
        -0.051005, 0.017681, -0.056295,
    ],
    [
        0.247402, 0.144184, -0.108835, 1.0, 0.082071, -0.01815, 0.03035, 0.058548, 0.008576,
        0.026728, -0.000464, 0.008811,
    ],
    [
        0.047603, 0.036239, 0.023125, 0.082071, 1.0, -0.012311, -0.019946, -0.068064, 0.158279,
        0.00423, 0.038775, 0.008114,
    ],
    [
        0.08863, 0.127936, -0.035924, -0.01815, -0.012311, 1.0, 0.128611, 0.111246, 0.124547,
        0.19518, 0.158062, 0.103139,
    ],
    [
        0.045667, 0.096403, -0.028032, 0.03035, -0.019946, 0.128611, 1.0, 0.190267, 0.159625,
        0.319892, 0.143715, 0.191445,
    ],
    [
        -0.024033, 0.045535, 0.041692, 0.058548, -0.068064, 0.111246, 0.190267, 1.0, 0.089637,
        0.126992, 0.315361, 0.137371,
    ],
    [
        0.002806, 0.113269, 0.009484, 0.008576, 0.158279, 0.124547, 0.159625, 0.089637, 1.0,
        0.110648, 0.050555, 0.21191,
    ],
    [
        -0.034603, -0.069327, -0.051005, 0.026728, 0.00423, 0.19518, 0.319892, 0.126992, 0.110648,
        1.0, 0.218104, 0.271563,
    ],
    [
        0.075138, 0.074665, 0.017681, -0.000464, 0.038775, 0.158062, 0.143715, 0.315361, 0.050555,
        0.218104, 1.0, 0.126904,
    ],
    [
        0.02534, -0.001983, -0.056295, 0.008811, 0.008114, 0.103139, 0.191445, 0.137371, 0.21191,
        0.271563, 0.126904, 1.0,
    ],
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
    // the five plain sentences, and one about something else scores near
    // zero.
    let eating = similarity(&vectors[0], &vectors[1]);
    assert!((eating - 0.7553).abs() < 1e-3, "{eating}");
    for (i, a) in vectors.iter().enumerate().take(5) {
        for (j, b) in vectors.iter().enumerate().take(5).skip(i + 1) {
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
    let many_heads = config.replace(
        "\"num_attention_heads\": 12",
        "\"num_attention_heads\": 192",
    );
    assert!(refused(weights.clone(), &many_heads, &vocab).contains("num_attention_heads"));
    let one_position = config.replace(
        "\"max_position_embeddings\": 512",
        "\"max_position_embeddings\": 1",
    );
    assert!(refused(weights.clone(), &one_position, &vocab).contains("at least 2"));
    let relu = config.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"relu\"");
    assert!(refused(weights.clone(), &relu, &vocab).contains("hidden_act"));
    assert!(refused(weights.clone(), "{", &vocab).starts_with("config.json"));

    let longer = format!("{vocab}extra\n");
    assert!(refused(weights.clone(), &config, &longer).contains("more than the model's"));
    let no_unk = vocab.replace("[UNK]", "[UNKNOWN]");
    assert!(refused(weights, &config, &no_unk).contains("[UNK]"));
}
