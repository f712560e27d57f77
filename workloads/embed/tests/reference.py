"""An independent all-MiniLM-L6-v2 in NumPy, to check cairn-embed against.

It uses Hugging Face's own tokenizer (the `tokenizers` package, reading the
model's vocab.txt as a BertWordPiece tokenizer) and the safetensors weights,
and prints, as JSON, each sentence's token ids, the first eight dimensions of
its embedding (float64 arithmetic throughout), and the cosine similarity of
every pair. tests/reference.rs holds its output for the sentences below; to
regenerate it:

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy tokenizers safetensors
    /tmp/ref/bin/python workloads/embed/tests/reference.py examples/embed/model
"""

import json
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import BertWordPieceTokenizer

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A monkey is playing drums.",
    "Crème brûlée, naïve café — ÉCOLE! 中文 $5",
    # The tokenizer's edges: special tokens written out, Greek final sigma,
    # line and paragraph separators, private-use and format characters, a
    # word longer than 100 characters, a line of nothing but controls.
    "[MASK] me, x[SEP]y and [mask]",
    "ΟΔΟΣ ΚΑΙ ΣΟΦΟΣ",
    "a\u2028b\u2029c\u0085d",
    "x\ue000y \u200bzero\u00adwidth \U0001F600 emoji",
    "pneumono" + "ultramicroscopic" * 6 + " silicovolcanoconiosis",
    "\u200b\u200e\u00ad",
]


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu(x):
    from math import erf

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))


def embed(t, config, ids):
    g = lambda name: t[name].astype(np.float64)
    n = len(ids)
    x = g("embeddings.word_embeddings.weight")[ids]
    x = x + g("embeddings.position_embeddings.weight")[:n]
    x = x + g("embeddings.token_type_embeddings.weight")[0]
    eps = config["layer_norm_eps"]
    x = layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
    heads = config["num_attention_heads"]
    d = config["hidden_size"] // heads
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda v, name: v @ g(p + name + ".weight").T + g(p + name + ".bias")
        split = lambda v: v.reshape(n, heads, d).transpose(1, 0, 2)
        q = split(lin(x, "attention.self.query"))
        k = split(lin(x, "attention.self.key"))
        v = split(lin(x, "attention.self.value"))
        s = q @ k.transpose(0, 2, 1) / np.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, heads * d)
        a = layer_norm(
            lin(ctx, "attention.output.dense") + x,
            g(p + "attention.output.LayerNorm.weight"),
            g(p + "attention.output.LayerNorm.bias"),
            eps,
        )
        h = gelu(lin(a, "intermediate.dense"))
        x = layer_norm(
            lin(h, "output.dense") + a,
            g(p + "output.LayerNorm.weight"),
            g(p + "output.LayerNorm.bias"),
            eps,
        )
    m = x.mean(0)
    return m / max(np.linalg.norm(m), 1e-12)


def main():
    folder = sys.argv[1]
    t = load_file(f"{folder}/model.safetensors")
    config = json.load(open(f"{folder}/config.json"))
    tok = BertWordPieceTokenizer(f"{folder}/vocab.txt", lowercase=True)
    out = {"sentences": []}
    vectors = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        e = embed(t, config, ids)
        vectors.append(e)
        out["sentences"].append({"text": s, "ids": ids, "head": [round(float(v), 6) for v in e[:8]]})
    out["similarity"] = [[round(float(a @ b), 6) for b in vectors] for a in vectors]
    print(json.dumps(out, ensure_ascii=False, indent=1))


main()
