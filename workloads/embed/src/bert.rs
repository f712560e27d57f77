//! A BERT encoder in candle: embeddings, then self-attention layers.
//!
//! Sequences are encoded one at a time, with no padding and so no attention
//! mask: a text's embedding then depends on the text alone, never on the
//! texts batched with it, so a query embedded by itself equals the same text
//! embedded in a corpus, bit for bit.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of a Hugging Face `config.json` a BERT encoder needs.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Attention heads per layer; `hidden_size` is a multiple of it.
    pub num_attention_heads: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Width of each layer's feed-forward block.
    pub intermediate_size: usize,
    /// The longest sequence the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Token types (segments) the embeddings know.
    pub type_vocab_size: usize,
    /// Entries in the word embeddings.
    pub vocab_size: usize,
    /// Layer normalisation's epsilon.
    pub layer_norm_eps: f64,
    /// The feed-forward activation; only `gelu` (erf) is supported.
    pub hidden_act: String,
}

/// Bounds on a configuration, so a hostile one cannot ask for absurd work
/// or memory before a tensor is read.
const HIDDEN_MAX: usize = 8192;
const LAYERS_MAX: usize = 128;
const POSITIONS_MAX: usize = 8192;
/// Attention's memory grows with heads × length², not with the weights:
/// bounding the heads bounds what a small file can make a task allocate.
const HEADS_MAX: usize = 128;

impl Config {
    /// Checks the configuration is one this encoder runs.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act '{:.40}' is not supported (only 'gelu')",
                self.hidden_act
            ));
        }
        let sized = |name: &str, value: usize, max: usize| {
            if value == 0 || value > max {
                Err(format!("{name} {value} is outside 1..={max}"))
            } else {
                Ok(())
            }
        };
        sized("hidden_size", self.hidden_size, HIDDEN_MAX)?;
        sized("intermediate_size", self.intermediate_size, 4 * HIDDEN_MAX)?;
        sized("num_hidden_layers", self.num_hidden_layers, LAYERS_MAX)?;
        sized(
            "num_attention_heads",
            self.num_attention_heads,
            HEADS_MAX.min(self.hidden_size),
        )?;
        sized(
            "max_position_embeddings",
            self.max_position_embeddings,
            POSITIONS_MAX,
        )?;
        if self.max_position_embeddings < 2 {
            return Err("max_position_embeddings must be at least 2 ([CLS] and [SEP])".into());
        }
        sized("type_vocab_size", self.type_vocab_size, 16)?;
        sized("vocab_size", self.vocab_size, 1 << 20)?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return Err(format!(
                "layer_norm_eps {} is outside (0, 1)",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }
}

struct Embeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            words: candle_nn::embedding(config.vocab_size, hidden, vb.pp("word_embeddings"))?,
            positions: candle_nn::embedding(
                config.max_position_embeddings,
                hidden,
                vb.pp("position_embeddings"),
            )?,
            token_types: candle_nn::embedding(
                config.type_vocab_size,
                hidden,
                vb.pp("token_type_embeddings"),
            )?,
            norm: candle_nn::layer_norm(hidden, config.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// `(seq, hidden)` for a single segment's ids (token type 0).
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let len = ids.dim(0)? as u32;
        let device = ids.device();
        let positions = Tensor::arange(0u32, len, device)?;
        let types = Tensor::zeros(len as usize, DType::U32, device)?;
        let sum = ((self.words.forward(ids)? + self.positions.forward(&positions)?)?
            + self.token_types.forward(&types)?)?;
        self.norm.forward(&sum)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    out: Linear,
    out_norm: LayerNorm,
    heads: usize,
}

impl Layer {
    fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        let hidden = config.hidden_size;
        let inner = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let attention = vb.pp("attention");
        Ok(Self {
            query: candle_nn::linear(hidden, hidden, attention.pp("self.query"))?,
            key: candle_nn::linear(hidden, hidden, attention.pp("self.key"))?,
            value: candle_nn::linear(hidden, hidden, attention.pp("self.value"))?,
            attention_out: candle_nn::linear(hidden, hidden, attention.pp("output.dense"))?,
            attention_norm: candle_nn::layer_norm(hidden, eps, attention.pp("output.LayerNorm"))?,
            intermediate: candle_nn::linear(hidden, inner, vb.pp("intermediate.dense"))?,
            out: candle_nn::linear(inner, hidden, vb.pp("output.dense"))?,
            out_norm: candle_nn::layer_norm(hidden, eps, vb.pp("output.LayerNorm"))?,
            heads: config.num_attention_heads,
        })
    }

    /// One layer over `(seq, hidden)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (len, hidden) = x.dims2()?;
        let head = hidden / self.heads;
        // (seq, hidden) → (heads, seq, head)
        let split = |t: Tensor| {
            t.reshape((len, self.heads, head))?
                .transpose(0, 1)?
                .contiguous()
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (head as f64).sqrt())?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights
            .matmul(&v)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((len, hidden))?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + x)?)?;
        let inner = self.intermediate.forward(&attended)?.gelu_erf()?;
        self.out_norm
            .forward(&(self.out.forward(&inner)? + attended)?)
    }
}

/// A BERT encoder.
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    device: Device,
}

impl Bert {
    /// Loads the weights under `embeddings.*` and `encoder.layer.<n>.*`.
    pub fn load(config: &Config, vb: VarBuilder) -> Result<Self> {
        let embeddings = Embeddings::load(config, vb.pp("embeddings"))?;
        let layers = (0..config.num_hidden_layers)
            .map(|n| Layer::load(config, vb.pp(format!("encoder.layer.{n}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings,
            layers,
            device: vb.device().clone(),
        })
    }

    /// The mean of the last hidden states of `ids`, L2-normalised: the
    /// sentence embedding of sentence-transformers' mean pooling and
    /// `Normalize` modules.
    pub fn embed(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let ids = Tensor::new(ids, &self.device)?;
        let mut x = self.embeddings.forward(&ids)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        let mean = x.mean(0)?;
        let norm = mean.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
        // sentence-transformers divides by max(norm, 1e-12).
        let norm = norm.maximum(1e-12)?;
        mean.broadcast_div(&norm)?.to_vec1()
    }
}
