//! workloads: The guest programs built into `cairn`, compiled from `workloads/` for wasm32-wasip1.
//!
//! A job names one as `module = "cairn:<name>"`, and the module's content id
//! becomes part of the job's identity on the network, so every node must
//! carry the same bytes whatever compiler built it. The modules are therefore
//! committed under `wasm/`, built once with the pinned toolchain and
//! path-independent flags; `tests/reproducible.rs` rebuilds them from source
//! and compares byte for byte (`CAIRN_BLESS=1` writes new bytes after a
//! source change). Building `cairn` needs no WebAssembly target.
#![deny(missing_docs)]

/// A built-in guest program.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// The name after `cairn:`.
    pub name: &'static str,
    /// What it does.
    pub about: &'static str,
    /// The WebAssembly module.
    pub wasm: &'static [u8],
}

/// The path tracer: renders one frame (or tile) of a JSON scene to PNG.
pub const RENDER: Workload = Workload {
    name: "render",
    about: "path tracer: renders a frame of a JSON scene to PNG",
    wasm: include_bytes!("../wasm/render.wasm"),
};

/// A BLAKE3 proof-of-work search over a range of nonces.
pub const HASHSEARCH: Workload = Workload {
    name: "hashsearch",
    about: "searches a nonce range for BLAKE3 digests with leading zero bits",
    wasm: include_bytes!("../wasm/hashsearch.wasm"),
};

/// A guest that misbehaves on request (loops, memory bombs, escapes,
/// floods), used to test the sandbox.
pub const HOSTILE: Workload = Workload {
    name: "hostile",
    about: "misbehaves on request; used to test the sandbox",
    wasm: include_bytes!("../wasm/hostile.wasm"),
};

/// Sentence embeddings with a BERT model (all-MiniLM-L6-v2) in candle: the
/// model's files and a corpus are inputs, each task embeds its lines.
pub const EMBED: Workload = Workload {
    name: "embed",
    about: "embeds a task's lines of a text corpus with a sentence-embedding model (candle)",
    wasm: include_bytes!("../wasm/embed.wasm"),
};

/// A character-level language model trained one optimiser step per
/// `cairn_step` (candle): the data, and a checkpoint to continue, are
/// inputs; the weights, the loss curve and the state's commitments are the
/// outputs.
pub const TRAIN: Workload = Workload {
    name: "train",
    about: "trains a character-level language model, one optimiser step per cairn_step (candle)",
    wasm: include_bytes!("../wasm/train.wasm"),
};

/// Every built-in workload.
pub const ALL: &[Workload] = &[RENDER, HASHSEARCH, HOSTILE, EMBED, TRAIN];

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static Workload> {
    ALL.iter().find(|w| w.name == name)
}

/// The names of all workloads.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|w| w.name).collect()
}
